//! Queued delivery through the running gateway with the embedded store: the sender is
//! answered once the event is on disk, the app gets it later with an idempotency key,
//! retries follow the policy, and what cannot be delivered becomes a dead letter.

use std::time::Duration;

use http::StatusCode;

use crate::support::*;

pub const ENV: &[(&str, &str)] = &[
    ("LASO_SECRET", "laso_whsec_3f1c9a"),
    ("LOMI_SECRET", "whsec_lomi_51b0"),
];

/// The embedded store in `dir`.
pub fn store(dir: &std::path::Path) -> String {
    format!("queue_store:\n  path: {}\n", dir.display())
}

/// One queued laso route at `/laso` and a queued lomi route with replay at `/lomi`, with
/// `queue` lines under each route's `queue:`.
pub fn routes(upstream: &str, queue: &str) -> String {
    format!(
        "  - name: laso\n    path: /laso\n    upstream: {upstream}\n\
         \x20   verify: {{ preset: laso, secret: \"${{LASO_SECRET}}\" }}\n\
         \x20   delivery: queued\n    queue:\n{queue}\
         \x20 - name: lomi\n    path: /lomi\n    upstream: {upstream}\n\
         \x20   verify: {{ preset: lomi, secret: \"${{LOMI_SECRET}}\" }}\n\
         \x20   replay: {{}}\n    delivery: queued\n    queue:\n{queue}"
    )
}

/// A gateway with the embedded store in `dir` and the laso and lomi routes queued to
/// `upstream`, with `queue` lines under each route's `queue:`.
pub async fn queued_gateway(dir: &std::path::Path, upstream: &str, queue: &str) -> Hookgate {
    Hookgate::start(
        &Yaml::new()
            .top(&store(dir))
            .routes(&routes(upstream, queue)),
        ENV,
    )
    .await
}

/// Fast retries for tests: 50 ms doubling up to 200 ms.
pub const FAST: &str = "      retry: { initial_interval: 50ms, max_interval: 200ms }\n";

pub fn laso_event(n: usize) -> (Vec<u8>, Vec<(String, String)>) {
    let body =
        format!(r#"{{"event":"booking.created","n":{n},"time":1733000000000}}"#).into_bytes();
    let headers = sign_as("laso", secret_of("laso"), &body, now_unix());
    (body, headers)
}

/// Waits up to `secs` for `f`.
pub async fn within(secs: u64, what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn a_queued_event_is_answered_once_stored_then_delivered_byte_for_byte() {
    let dir = temp_dir("queued-basic");
    let upstream = Upstream::start().await;
    let gw = queued_gateway(&dir, &upstream.url(), FAST).await;
    let (body, headers) = laso_event(1);
    let answer = post(&gw.url("/laso?tenant=7"), &as_refs(&headers), &body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "queued\n");
    let id = answer.headers["hookgate-event-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32);

    within(5, "the app receives the event", || upstream.count() == 1).await;
    let got = &upstream.received()[0];
    assert_eq!(got.body, body, "the exact bytes that were verified");
    assert_eq!(got.method, "POST");
    assert_eq!(got.path_and_query, "/laso?tenant=7");
    assert_eq!(
        header(got, "idempotency-key"),
        id,
        "no replay key: the event id"
    );
    assert_eq!(header(got, "hookgate-attempt"), "1");
    assert_eq!(
        header(got, "x-signature"),
        headers[0].1,
        "the signature reaches the app"
    );
    assert_eq!(header(got, "x-forwarded-for"), "127.0.0.1");
    assert_eq!(gw.outcome("laso", "queued"), 1.0);
    within(2, "the attempt is counted", || {
        gw.counter(
            "hookgate_delivery_attempts_total",
            &[("route", "laso"), ("outcome", "delivered")],
        ) == 1.0
    })
    .await;
    assert!(
        gw.counter("hookgate_queue_commit_batch_size_count", &[]) >= 2.0,
        "ingest and settle were committed"
    );
    // The store is one directory, readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert!(dir.join("queue.sqlite3").exists());
    assert_eq!(mode & 0o077, 0, "others cannot read stored payloads");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_unverified_request_on_a_queued_route_is_refused_and_never_stored() {
    let dir = temp_dir("queued-forged");
    let upstream = Upstream::start().await;
    let gw = queued_gateway(&dir, &upstream.url(), FAST).await;
    let (body, _) = laso_event(1);
    let forged = sign_as("laso", "not-the-secret", &body, now_unix());
    let answer = post(&gw.url("/laso"), &as_refs(&forged), &body).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.headers.get("hookgate-event-id").is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.count(), 0);
    assert_eq!(gw.outcome("laso", "signature_mismatch"), 1.0);
    assert_eq!(gw.outcome("laso", "queued"), 0.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn while_the_app_is_down_senders_get_2xx_and_the_app_gets_every_event_when_it_is_up() {
    let dir = temp_dir("queued-down");
    let app = rebindable_addr().await;
    let gw = queued_gateway(&dir, &format!("http://{app}"), FAST).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let (body, headers) = laso_event(n);
        let answer = post(&gw.url("/laso"), &as_refs(&headers), &body).await;
        assert_eq!(answer.status, StatusCode::OK, "stored, so acknowledged");
        ids.push(
            answer.headers["hookgate-event-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Attempts fail while nothing listens.
    within(5, "attempts are made and fail", || {
        gw.counter(
            "hookgate_delivery_attempts_total",
            &[("route", "laso"), ("outcome", "retry")],
        ) >= 1.0
    })
    .await;
    // The operator sees why the events wait: the route is held back, its app down.
    within(5, "the route is held back", || {
        gw.counter("hookgate_queue_held_back", &[("route", "laso")]) == 1.0
    })
    .await;
    let (status, route) = crate::queue_admin::admin(&gw, "GET", "/queue/routes/laso", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(route["held_back"], true, "{route}");
    assert!(route["app_down_since"].is_string(), "{route}");
    assert!(route["next_probe_at"].is_string(), "{route}");
    let waiting = route["depth"]["queued"].as_u64().unwrap_or(0)
        + route["depth"]["retrying"].as_u64().unwrap_or(0)
        + route["depth"]["delivering"].as_u64().unwrap_or(0);
    assert_eq!(waiting, 5, "{route}");
    let upstream = Upstream::start_at(app, Reply::default()).await;
    within(10, "every event arrives once the app is up", || {
        upstream.count() >= 5
    })
    .await;
    within(5, "the route is no longer held back", || {
        gw.counter("hookgate_queue_held_back", &[("route", "laso")]) == 0.0
    })
    .await;
    let (_, route) = crate::queue_admin::admin(&gw, "GET", "/queue/routes/laso", None).await;
    assert_eq!(route["held_back"], false, "{route}");
    assert_eq!(route["app_down_since"], serde_json::Value::Null, "{route}");
    let mut keys: Vec<String> = upstream
        .received()
        .iter()
        .map(|r| header(r, "idempotency-key").to_owned())
        .collect();
    keys.sort();
    ids.sort();
    assert_eq!(keys, ids, "each event once, under its own key");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_final_4xx_is_a_dead_letter_but_429_is_retried() {
    let dir = temp_dir("queued-dead");
    let upstream = Upstream::start_with(Reply::scripted(&[429, 422])).await;
    let gw = queued_gateway(&dir, &upstream.url(), FAST).await;
    let (body, headers) = laso_event(1);
    let answer = post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    assert_eq!(answer.status, StatusCode::OK);
    within(5, "the event dies on the 422", || {
        gw.counter(
            "hookgate_dead_letters_total",
            &[("route", "laso"), ("reason", "refused")],
        ) == 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = upstream.received();
    assert_eq!(got.len(), 2, "429 retried, 422 final: no third attempt");
    assert_eq!(header(&got[0], "hookgate-attempt"), "1");
    assert_eq!(header(&got[1], "hookgate-attempt"), "2");
    assert_eq!(
        header(&got[0], "idempotency-key"),
        header(&got[1], "idempotency-key")
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn retry_after_from_the_app_is_honoured() {
    let dir = temp_dir("queued-retry-after");
    let reply = Reply {
        retry_after: Some("1"),
        ..Reply::scripted(&[503])
    };
    let upstream = Upstream::start_with(reply).await;
    let gw = queued_gateway(&dir, &upstream.url(), FAST).await;
    let (body, headers) = laso_event(1);
    post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    within(5, "the retry arrives", || upstream.count() == 2).await;
    let got = upstream.received();
    let waited = got[1].at - got[0].at;
    assert!(
        waited >= Duration::from_millis(990),
        "Retry-After: 1 waited only {waited:?} (backoff alone is 50 ms)"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_event_that_outlives_max_age_is_a_dead_letter() {
    let dir = temp_dir("queued-expired");
    let upstream = Upstream::start_with(Reply {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        ..Reply::default()
    })
    .await;
    let queue = "      retry: { initial_interval: 50ms, max_interval: 100ms, max_age: 400ms }\n";
    let gw = queued_gateway(&dir, &upstream.url(), queue).await;
    let (body, headers) = laso_event(1);
    post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    within(5, "the event expires", || {
        gw.counter(
            "hookgate_dead_letters_total",
            &[("route", "laso"), ("reason", "expired")],
        ) == 1.0
    })
    .await;
    let attempts = upstream.count();
    assert!(attempts >= 2, "retried before expiring ({attempts})");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(upstream.count(), attempts, "nothing after it died");
    gw.shutdown().await;
}

#[tokio::test]
async fn max_attempts_ends_retries() {
    let dir = temp_dir("queued-attempts");
    let upstream = Upstream::start_with(Reply {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        ..Reply::default()
    })
    .await;
    let queue = "      retry: { initial_interval: 20ms, max_interval: 40ms, max_attempts: 3 }\n";
    let gw = queued_gateway(&dir, &upstream.url(), queue).await;
    let (body, headers) = laso_event(1);
    post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    within(5, "three attempts, then dead", || {
        gw.counter(
            "hookgate_dead_letters_total",
            &[("route", "laso"), ("reason", "max_attempts")],
        ) == 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(upstream.count(), 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_on_a_queued_route_is_recognized_by_the_store_and_delivered_once() {
    let dir = temp_dir("queued-dup");
    let upstream = Upstream::start().await;
    let gw = queued_gateway(&dir, &upstream.url(), FAST).await;
    let body = br#"{"id":"evt_q_1","event":"PAYMENT_SUCCEEDED"}"#;
    let headers = sign_as("lomi", secret_of("lomi"), body, now_unix());
    let first = post(&gw.url("/lomi"), &as_refs(&headers), body).await;
    let again = post(&gw.url("/lomi"), &as_refs(&headers), body).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        again.status,
        StatusCode::OK,
        "the sender must stop retrying"
    );
    assert_eq!(again.headers["x-hookgate-duplicate"], "true");
    assert_eq!(
        again.headers["hookgate-event-id"], first.headers["hookgate-event-id"],
        "the duplicate names the event it duplicates"
    );
    within(5, "delivered", || upstream.count() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.count(), 1, "delivered once");
    assert_eq!(
        header(&upstream.received()[0], "idempotency-key"),
        "evt_q_1",
        "the replay key is the idempotency key"
    );
    // Said as it is: the second copy came while the first was on its way; a third, after
    // delivery, is told the first was delivered.
    let state = again.headers["hookgate-event-state"]
        .to_str()
        .unwrap()
        .to_owned();
    if state == "delivered" {
        assert!(again.body.contains("already delivered"), "{}", again.body);
    } else {
        assert!(
            ["queued", "delivering", "retrying"].contains(&state.as_str()),
            "{state}"
        );
        assert!(
            again.body.contains("already stored and will be delivered"),
            "{}",
            again.body
        );
    }
    let third = post(&gw.url("/lomi"), &as_refs(&headers), body).await;
    assert_eq!(third.status, StatusCode::OK);
    assert_eq!(third.headers["hookgate-event-state"], "delivered");
    assert_eq!(
        third.body, "duplicate: this event was already delivered\n",
        "a delivered event is said to be delivered"
    );
    assert_eq!(gw.outcome("lomi", "duplicate"), 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn undelivered_events_survive_a_restart_and_are_delivered_after_it() {
    let dir = temp_dir("queued-restart");
    let app = rebindable_addr().await;
    let yaml = Yaml::new()
        .top(&store(&dir))
        .routes(&routes(&format!("http://{app}"), FAST));
    let gw = Hookgate::start(&yaml, ENV).await;
    for n in 0..3 {
        let (body, headers) = laso_event(n);
        assert_eq!(
            post(&gw.url("/laso"), &as_refs(&headers), &body)
                .await
                .status,
            StatusCode::OK
        );
    }
    gw.shutdown().await;

    let upstream = Upstream::start_at(app, Reply::default()).await;
    let gw = Hookgate::start(&yaml, ENV).await;
    within(10, "the stored events are delivered", || {
        upstream.count() == 3
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_second_gateway_cannot_open_the_same_embedded_store() {
    let dir = temp_dir("queued-lock");
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top(&store(&dir))
        .routes(&routes(&upstream.url(), FAST));
    let gw = Hookgate::start(&yaml, ENV).await;
    let loaded = hookgate::config::compile::compile(&yaml, std::path::Path::new("."), &|n| {
        ENV.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let second = hookgate::server::start(
        loaded.gateway,
        std::sync::Arc::new(hookgate::metrics::Metrics::new()),
        std::time::SystemTime::now,
    )
    .await;
    let err = second.err().expect("the directory is taken").to_string();
    assert!(err.contains("in use by another hookgate"), "{err}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_full_store_refuses_with_503_and_acknowledges_only_what_it_kept() {
    let dir = temp_dir("queued-full");
    let app = rebindable_addr().await;
    // 256 KiB for the whole database: room for some 2 KiB events, not for 400.
    let yaml = Yaml::new()
        .top(&format!(
            "queue_store:\n  max_bytes: 262144\n  path: {}\n",
            dir.display()
        ))
        .routes(&routes(&format!("http://{app}"), FAST));
    let gw = Hookgate::start(&yaml, ENV).await;
    let mut acked = Vec::new();
    let mut refused = 0;
    for n in 0..400 {
        let body = format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(2048)).into_bytes();
        let headers = sign_as("laso", secret_of("laso"), &body, now_unix());
        let answer = post(&gw.url("/laso"), &as_refs(&headers), &body).await;
        match answer.status {
            StatusCode::OK => acked.push(body),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(answer.headers.contains_key("retry-after"));
                assert!(answer.headers.get("hookgate-event-id").is_none());
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    assert!(refused > 0, "the store filled up");
    assert!(
        !acked.is_empty(),
        "the store took events before it filled up"
    );
    assert_eq!(
        gw.outcome("laso", "queue_store_unavailable"),
        refused as f64
    );
    assert!(gw.counter("hookgate_queue_store_errors_total", &[("op", "ingest")]) >= refused as f64);

    // The app comes up: exactly the acknowledged events arrive, each once.
    let upstream = Upstream::start_at(app, Reply::default()).await;
    within(20, "every acknowledged event arrives", || {
        upstream.count() >= acked.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got: Vec<Vec<u8>> = upstream
        .received()
        .iter()
        .map(|r| r.body.to_vec())
        .collect();
    got.sort();
    acked.sort();
    assert_eq!(
        got, acked,
        "what was acknowledged, nothing that was refused"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_slow_but_healthy_app_gets_each_event_once() {
    // Each answer takes 7.5 s (inside upstream_timeout, 8 s); with one slot, the second
    // event waits 7.5 s for it, then takes 7.5 s: its lease must outlast both.
    let dir = temp_dir("queued-slow-app");
    let upstream = Upstream::start_with(Reply {
        delay: Duration::from_millis(7500),
        ..Reply::default()
    })
    .await;
    let yaml = Yaml::new()
        .top("limits:\n  upstream_connect_timeout: 200ms\n  upstream_timeout: 8s\n")
        .top(&store(&dir))
        .routes(&routes(&upstream.url(), "      concurrency: 1\n"));
    let gw = Hookgate::start(&yaml, ENV).await;
    for n in 0..2 {
        let (body, headers) = laso_event(n);
        assert_eq!(
            post(&gw.url("/laso"), &as_refs(&headers), &body)
                .await
                .status,
            StatusCode::OK
        );
    }
    within(25, "both answered and settled", || {
        gw.counter(
            "hookgate_delivery_attempts_total",
            &[("route", "laso"), ("outcome", "delivered")],
        ) == 2.0
    })
    .await;
    // A lease that ran out while the second event waited for the slot would have been taken
    // again, and that copy sent the moment the slot freed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(upstream.count(), 2, "each event once");
    gw.shutdown().await;
}

/// `queue.rate_limit` spaces a backlog's deliveries out, whatever the concurrency: 30 events
/// at 20 a second (burst 1) take about 1.5 s, and no half second holds more than its share.
#[tokio::test]
async fn a_rate_limit_spaces_a_backlogs_deliveries() {
    let dir = temp_dir("queued-rate");
    let upstream = Upstream::start().await;
    let queue = "      concurrency: 16\n      rate_limit: { per_second: 20, burst: 1 }\n";
    let gw = queued_gateway(&dir, &upstream.url(), queue).await;
    for n in 0..30 {
        let (body, headers) = laso_event(n);
        let a = post(&gw.url("/laso"), &as_refs(&headers), &body).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    within(10, "every event is delivered", || upstream.count() == 30).await;
    let mut at: Vec<std::time::Instant> = upstream.received().iter().map(|r| r.at).collect();
    at.sort();
    let span = at[29] - at[0];
    assert!(
        span >= Duration::from_millis(1300),
        "30 events at 20/s came in {span:?}"
    );
    // In any half second, at most its 10 tokens and the one of the burst (and one of slack
    // for the clock's edges).
    for (i, start) in at.iter().enumerate() {
        let within_half = at[i..]
            .iter()
            .take_while(|t| **t - *start < Duration::from_millis(500))
            .count();
        assert!(within_half <= 12, "{within_half} deliveries within 500 ms");
    }
    gw.shutdown().await;
}

/// An app's `Retry-After` on a 429 holds its whole route back, not only the event that got
/// it: the other events wait too, then all arrive.
#[tokio::test]
async fn retry_after_on_a_429_holds_the_whole_route_back() {
    let dir = temp_dir("queued-route-retry-after");
    let reply = Reply {
        retry_after: Some("2"),
        ..Reply::scripted(&[429])
    };
    let upstream = Upstream::start_with(reply).await;
    let gw = queued_gateway(&dir, &upstream.url(), FAST).await;
    let (body, headers) = laso_event(0);
    post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    // Once the gateway has the 429 (the app records the request before it answers).
    within(5, "the 429 holds the route back", || {
        gw.counter("hookgate_queue_held_back", &[("route", "laso")]) == 1.0
    })
    .await;
    for n in 1..4 {
        let (body, headers) = laso_event(n);
        post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    }
    within(10, "every event arrives", || upstream.count() == 5).await;
    let got = upstream.received();
    let after_429: Vec<Duration> = got[1..].iter().map(|r| r.at - got[0].at).collect();
    assert!(
        after_429.iter().all(|d| *d >= Duration::from_millis(1900)),
        "the route waited the app's Retry-After: 2: {after_429:?}"
    );
    gw.shutdown().await;
}

/// The circuit breaker opens on a failure rate (here 4 of 4 attempts answered 500, which
/// pacing alone does not hold back), delivers nothing while open, probes when half-open,
/// and closes on a success; each change is counted once, and every event is delivered.
#[tokio::test]
async fn the_breaker_opens_on_a_failure_rate_probes_and_closes() {
    let dir = temp_dir("queued-breaker");
    let upstream = Upstream::start_with(Reply::scripted(&[500, 500, 500, 500])).await;
    let queue = "      concurrency: 4\n      retry: { initial_interval: 50ms, max_interval: 100ms }\n      \
                 breaker: { failure_rate: 50, window: 10s, min_attempts: 4, open_for: 1s, probes: 1 }\n";
    let gw = queued_gateway(&dir, &upstream.url(), queue).await;
    let transitions = |to: &str| {
        gw.counter(
            "hookgate_queue_breaker_transitions_total",
            &[("route", "laso"), ("to", to)],
        )
    };
    for n in 0..4 {
        let (body, headers) = laso_event(n);
        post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    }
    within(5, "the breaker opens", || transitions("open") == 1.0).await;
    assert_eq!(
        gw.counter("hookgate_queue_breaker_state", &[("route", "laso")]),
        1.0
    );
    let (_, route) = crate::queue_admin::admin(&gw, "GET", "/queue/routes/laso", None).await;
    assert_eq!(route["breaker"], "open", "{route}");
    // Open: no attempt for the rest of `open_for`, though the retries' backoff is 50 ms.
    let at_open = upstream.count();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(upstream.count(), at_open, "nothing delivered while open");
    within(5, "every event is delivered", || {
        gw.counter(
            "hookgate_delivery_attempts_total",
            &[("route", "laso"), ("outcome", "delivered")],
        ) == 4.0
    })
    .await;
    assert_eq!(
        (
            transitions("open"),
            transitions("half_open"),
            transitions("closed")
        ),
        (1.0, 1.0, 1.0)
    );
    assert_eq!(
        gw.counter("hookgate_queue_breaker_state", &[("route", "laso")]),
        0.0
    );
    gw.shutdown().await;
}

/// A half-open probe that the app refuses with a final 4xx (it says nothing of the app's
/// health) frees its probe all the same: the next probe goes, closes the breaker, and
/// every event is delivered; the breaker never sticks half-open.
#[tokio::test]
async fn a_refused_probe_does_not_leave_the_breaker_stuck_half_open() {
    let dir = temp_dir("queued-breaker-refused-probe");
    let upstream = Upstream::start_with(Reply::scripted(&[500, 500, 500, 500, 400])).await;
    let queue = "      concurrency: 4\n      retry: { initial_interval: 50ms, max_interval: 100ms }\n      \
                 breaker: { failure_rate: 50, window: 10s, min_attempts: 4, open_for: 1s, probes: 1 }\n";
    let gw = queued_gateway(&dir, &upstream.url(), queue).await;
    for n in 0..4 {
        let (body, headers) = laso_event(n);
        post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    }
    within(5, "the probe is refused", || upstream.count() >= 5).await;
    for n in 10..12 {
        let (body, headers) = laso_event(n);
        post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    }
    // The refused one is a dead letter; the other 3 and the 2 new ones are delivered.
    within(10, "the rest is delivered", || {
        gw.counter(
            "hookgate_delivery_attempts_total",
            &[("route", "laso"), ("outcome", "delivered")],
        ) == 5.0
    })
    .await;
    assert_eq!(
        gw.counter("hookgate_queue_breaker_state", &[("route", "laso")]),
        0.0,
        "closed again"
    );
    gw.shutdown().await;
}
