//! Replay and duplicate protection through the running gateway, with the memory store and with
//! a real Redis shared by two gateway instances.

use std::time::Duration;

use http::StatusCode;

use crate::support::*;

/// A lomi. event: the preset's replay key is the body's `id`.
fn lomi_event(id: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let body = format!(r#"{{"id":"{id}","event":"PAYMENT_SUCCEEDED","data":{{"amount":1}}}}"#)
        .into_bytes();
    let headers = sign_as("lomi", secret_of("lomi"), &body, now_unix());
    (body, headers)
}

fn lomi_route(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    path: /{name}\n    upstream: {upstream}\n    verify: {{ preset: lomi, secret: \"${{LOMI_SECRET}}\" }}\n    replay: {{ {extra} }}\n"
    )
}

const ENV: &[(&str, &str)] = &[("LOMI_SECRET", "whsec_lomi_51b0")];

#[tokio::test]
async fn a_duplicate_after_a_2xx_is_answered_but_not_forwarded() {
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(
        &Yaml::new().routes(&lomi_route("lomi", &upstream.url(), "")),
        ENV,
    )
    .await;
    let (body, headers) = lomi_event("evt_dup_1");
    let first = post(&gw.url("/lomi"), &as_refs(&headers), &body).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.headers.get("x-hookgate-duplicate").is_none());
    assert_eq!(first.body, "accepted by app");

    // The sender retries the same event (a new signature would not matter: the key is the id).
    let again = post(&gw.url("/lomi"), &as_refs(&headers), &body).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "the sender must stop retrying"
    );
    assert_eq!(again.headers["x-hookgate-duplicate"], "true");
    assert_eq!(upstream.count(), 1, "delivered exactly once");
    assert_eq!(gw.outcome("lomi", "duplicate"), 1.0);
    assert_eq!(
        gw.counter("hookgate_replay_duplicates_total", &[("route", "lomi")]),
        1.0
    );

    // Another event id is a new delivery; a forged copy never reaches the store.
    let (body2, headers2) = lomi_event("evt_dup_2");
    assert_eq!(
        post(&gw.url("/lomi"), &as_refs(&headers2), &body2)
            .await
            .status,
        StatusCode::OK
    );
    let forged = post(&gw.url("/lomi"), &[("x-lomi-signature", "00")], &body2).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.count(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_retry_after_a_failed_delivery_is_forwarded() {
    let upstream = Upstream::start_with(Reply::scripted(&[500, 503])).await;
    let gw = Hookgate::start(
        &Yaml::new().routes(&lomi_route("lomi", &upstream.url(), "")),
        ENV,
    )
    .await;
    let (body, headers) = lomi_event("evt_retry");
    let url = gw.url("/lomi");
    assert_eq!(
        post(&url, &as_refs(&headers), &body).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        post(&url, &as_refs(&headers), &body).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let third = post(&url, &as_refs(&headers), &body).await;
    assert_eq!(third.status, StatusCode::OK);
    assert!(third.headers.get("x-hookgate-duplicate").is_none());
    assert_eq!(upstream.count(), 3, "each failed delivery was retried");
    let fourth = post(&url, &as_refs(&headers), &body).await;
    assert_eq!(fourth.headers["x-hookgate-duplicate"], "true");
    assert_eq!(upstream.count(), 3);
    gw.shutdown().await;
}

/// Fires `n` copies of one event at once, spread over `urls`; returns their statuses.
async fn burst(
    urls: &[String],
    headers: &[(String, String)],
    body: &[u8],
    n: usize,
) -> Vec<StatusCode> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let url = urls[i % urls.len()].clone();
        let headers = headers.to_vec();
        let body = body.to_vec();
        tasks.push(tokio::spawn(async move {
            post(&url, &as_refs(&headers), &body).await.status
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn assert_one_delivery(statuses: &[StatusCode]) {
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::OK));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_copies_make_exactly_one_delivery() {
    let upstream = Upstream::start_with(Reply {
        delay: Duration::from_millis(200),
        ..Reply::default()
    })
    .await;
    let gw = Hookgate::start(
        &Yaml::new().routes(&lomi_route("lomi", &upstream.url(), "")),
        ENV,
    )
    .await;
    let (body, headers) = lomi_event("evt_burst");
    let statuses = burst(&[gw.url("/lomi")], &headers, &body, 50).await;
    assert_one_delivery(&statuses);
    assert_eq!(upstream.count(), 1, "{statuses:?}");
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!(
        gw.counter(
            "hookgate_replay_in_flight_conflicts_total",
            &[("route", "lomi")]
        ),
        conflicts as f64
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_unique_events_keeps_the_memory_store_bounded() {
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(
        &Yaml::new()
            .top("replay_store:\n  type: memory\n  max_entries: 50\n")
            .routes(&lomi_route("lomi", &upstream.url(), "")),
        ENV,
    )
    .await;
    for i in 0..300 {
        let (body, headers) = lomi_event(&format!("evt_flood_{i}"));
        assert_eq!(
            post(&gw.url("/lomi"), &as_refs(&headers), &body)
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(upstream.count(), 300);
    assert_eq!(gw.counter("hookgate_replay_memory_entries", &[]), 50.0);
    assert_eq!(
        gw.counter("hookgate_replay_memory_evictions_total", &[]),
        250.0
    );
    // The most recent events are still remembered.
    let (body, headers) = lomi_event("evt_flood_299");
    let again = post(&gw.url("/lomi"), &as_refs(&headers), &body).await;
    assert_eq!(again.headers["x-hookgate-duplicate"], "true");
    gw.shutdown().await;
}

#[tokio::test]
async fn signature_and_header_keys_and_a_missing_key() {
    let upstream = Upstream::start().await;
    let routes = format!(
        "  - name: lahza\n    path: /lahza\n    upstream: {u}\n    verify: {{ preset: lahza, secret: \"${{LAHZA_SECRET}}\" }}\n    replay: {{ key: signature }}\n  - name: byheader\n    path: /byheader\n    upstream: {u}\n    verify: {{ preset: lahza, secret: \"${{LAHZA_SECRET}}\" }}\n    replay: {{ key: {{ header: x-event-id }}, ttl: 1h }}\n",
        u = upstream.url()
    );
    let gw = Hookgate::start(&Yaml::new().routes(&routes), &[("LAHZA_SECRET", "k")]).await;
    let body = br#"{"event":"charge.success"}"#;
    let sig = hex::encode(hmac_sha256("k", &[body]));
    // Signature key: a captured request replayed, even with the hex re-cased, is a duplicate.
    let a = post(&gw.url("/lahza"), &[("x-lahza-signature", &sig)], body).await;
    assert_eq!(a.status, StatusCode::OK);
    let upper = sig.to_uppercase();
    let b = post(&gw.url("/lahza"), &[("x-lahza-signature", &upper)], body).await;
    assert_eq!(b.headers["x-hookgate-duplicate"], "true");
    assert_eq!(upstream.count(), 1);

    // Header key: the same body under two ids is two events; a missing id is refused.
    let h = |id: &'static str| {
        vec![
            ("x-lahza-signature", sig.clone()),
            ("x-event-id", id.to_string()),
        ]
    };
    for (id, dup) in [("e1", false), ("e2", false), ("e1", true)] {
        let hs = h(id);
        let refs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = post(&gw.url("/byheader"), &refs, body).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers.contains_key("x-hookgate-duplicate"), dup, "{id}");
    }
    let r = post(&gw.url("/byheader"), &[("x-lahza-signature", &sig)], body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(gw.outcome("byheader", "replay_key_missing"), 1.0);
    assert_eq!(upstream.count(), 3);
    gw.shutdown().await;
}

fn redis_store(redis: &RedisServer, prefix: &str) -> String {
    format!(
        "replay_store:\n  type: redis\n  url: {}\n  prefix: \"{prefix}\"\n  timeout: 300ms\n",
        redis.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_deliver_each_event_once() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::start_with(Reply {
        delay: Duration::from_millis(200),
        ..Reply::default()
    })
    .await;
    let yaml = Yaml::new()
        .top(&redis_store(&redis, "t1:"))
        .routes(&lomi_route("lomi", &upstream.url(), ""));
    let a = Hookgate::start(&yaml, ENV).await;
    let b = Hookgate::start(&yaml, ENV).await;
    let urls = [a.url("/lomi"), b.url("/lomi")];

    let (body, headers) = lomi_event("evt_shared");
    let statuses = burst(&urls, &headers, &body, 40).await;
    assert_one_delivery(&statuses);
    assert_eq!(upstream.count(), 1, "{statuses:?}");
    // Later copies on either instance are duplicates.
    for url in &urls {
        let r = post(url, &as_refs(&headers), &body).await;
        assert_eq!(r.headers["x-hookgate-duplicate"], "true");
    }
    assert_eq!(upstream.count(), 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn redis_down_rejects_or_allows_as_configured_and_recovers() {
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    let routes = lomi_route("strict", &upstream.url(), "")
        + &lomi_route("lenient", &upstream.url(), "on_store_error: allow");
    let gw = Hookgate::start(
        &Yaml::new().top(&redis_store(&redis, "t2:")).routes(&routes),
        ENV,
    )
    .await;

    let (body, headers) = lomi_event("evt_before");
    assert_eq!(
        post(&gw.url("/strict"), &as_refs(&headers), &body)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(upstream.count(), 1);

    redis.stop().await;
    let (body, headers) = lomi_event("evt_during");
    let strict = post(&gw.url("/strict"), &as_refs(&headers), &body).await;
    assert_eq!(
        strict.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        strict.body
    );
    assert_eq!(
        upstream.count(),
        1,
        "reject: nothing forwarded without the duplicate check"
    );
    let lenient = post(&gw.url("/lenient"), &as_refs(&headers), &body).await;
    assert_eq!(lenient.status, StatusCode::OK);
    assert_eq!(upstream.count(), 2, "allow: forwarded without dedup");
    assert_eq!(gw.outcome("strict", "replay_store_unavailable"), 1.0);
    assert_eq!(
        gw.counter(
            "hookgate_replay_store_errors_total",
            &[("route", "strict"), ("action", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        gw.counter(
            "hookgate_replay_store_errors_total",
            &[("route", "lenient"), ("action", "allowed")]
        ),
        1.0
    );

    assert_eq!(
        gw.counter("hookgate_replay_store_up", &[]),
        0.0,
        "down, and says so"
    );

    // Redis returns (empty: it kept nothing on disk): the sender's retry now goes through once.
    redis.restart().await;
    let mut recovered = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        recovered = post(&gw.url("/strict"), &as_refs(&headers), &body)
            .await
            .status;
        if recovered != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(recovered, StatusCode::OK);
    assert_eq!(gw.counter("hookgate_replay_store_up", &[]), 1.0);
    assert_eq!(upstream.count(), 3);
    let again = post(&gw.url("/strict"), &as_refs(&headers), &body).await;
    assert_eq!(again.headers["x-hookgate-duplicate"], "true");
    assert_eq!(upstream.count(), 3);
    gw.shutdown().await;
}

/// `hookgate_replay_store_up` follows the store with no request at all (a probe every 5 s),
/// so the alert on it neither misses an outage on a quiet route nor keeps firing after one.
#[tokio::test]
async fn the_replay_store_gauge_follows_redis_without_any_request() {
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(
        &Yaml::new()
            .top(&redis_store(&redis, "t-probe:"))
            .routes(&lomi_route("quiet", &upstream.url(), "")),
        ENV,
    )
    .await;
    let up = || gw.counter("hookgate_replay_store_up", &[]);
    eventually("up at start", || up() == 1.0).await;
    // The store is probed every 5 s.
    redis.stop().await;
    eventually_within("down", Duration::from_secs(12), || up() == 0.0).await;
    redis.restart().await;
    eventually_within("back up", Duration::from_secs(12), || up() == 1.0).await;
    assert_eq!(upstream.count(), 0, "no request was needed");
    gw.shutdown().await;
}

/// The sender gives up mid-forward; the app still takes the event. The claim must record the
/// app's answer, so the sender's retry is a duplicate, not a second delivery.
#[tokio::test]
async fn a_sender_hanging_up_mid_forward_does_not_cause_a_second_delivery() {
    use tokio::io::AsyncWriteExt;
    let upstream = Upstream::start_with(Reply {
        delay: Duration::from_millis(800),
        ..Reply::default()
    })
    .await;
    let gw = Hookgate::start(
        &Yaml::new().routes(&lomi_route("lomi", &upstream.url(), "")),
        ENV,
    )
    .await;
    let (body, headers) = lomi_event("evt_hangup");
    let mut request = format!(
        "POST /lomi HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in &headers {
        request += &format!("{k}: {v}\r\n");
    }
    request += "\r\n";
    let mut bytes = request.into_bytes();
    bytes.extend(&body);
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s); // the sender's timeout

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(upstream.count(), 1, "the app took the first copy");
    let retry = post(&gw.url("/lomi"), &as_refs(&headers), &body).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.headers["x-hookgate-duplicate"], "true");
    assert_eq!(upstream.count(), 1, "delivered once");
    gw.shutdown().await;
}

/// A request is served by the configuration in force when it arrived, its replay claim
/// included: a reload while its body is still arriving does not change how long the claim
/// holds (`upstream_connect_timeout + upstream_timeout + 5 s` of the request's own
/// configuration), which Redis shows as the claim's remaining time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_claim_lasts_as_the_requests_own_configuration_says_across_a_reload() {
    use tokio::io::AsyncWriteExt;
    let redis = RedisServer::start().await;
    let slow = Upstream::start_with(Reply {
        delay: Duration::from_secs(3),
        ..Reply::default()
    })
    .await;
    let dir = temp_dir("replay-claim-reload");
    let file = dir.join("gateway.yaml");
    let yaml = |connect: &str| {
        Yaml::new()
            .top(&format!(
                "limits:\n  upstream_connect_timeout: {connect}\n  upstream_timeout: 4s\n"
            ))
            .top(&redis_store(&redis, "claim:"))
            .routes(&format!(
                "  - name: lomi\n    path: /lomi\n    upstream: {}\n\
                 \x20   verify: {{ preset: lomi, secret: \"whsec_lomi_51b0\" }}\n    replay: {{}}\n",
                slow.url()
            ))
    };
    // A claim of 1 + 4 + 5 = 10 s.
    std::fs::write(&file, yaml("1s")).unwrap();
    let gw = Hookgate::start_file(&file).await;

    let (body, headers) = lomi_event("evt_claim_ttl");
    let mut head = format!(
        "POST /lomi HTTP/1.1\r\nhost: gw\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Meanwhile the configuration changes: its claims would hold 60 + 4 + 5 = 69 s.
    std::fs::write(&file, yaml("60s")).unwrap();
    assert!(gw.reload(&file).await, "the reload takes effect");
    conn.write_all(&body[5..]).await.unwrap();
    eventually("the request reached the app", || slow.count() == 1).await;

    let client = redis::Client::open(redis.url()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("claim:*")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let left_ms: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(
        (1..=10_000).contains(&left_ms),
        "the claim holds {left_ms} ms; the request's own configuration says at most 10 s"
    );
    drop(conn);
    gw.shutdown().await;
}
