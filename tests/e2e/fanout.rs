//! One queued route, three apps: each verified event is stored once and delivered to every
//! destination whose filter takes it, each destination with its own state, pace, pause and
//! breaker; each scenario on the embedded store and on PostgreSQL, and two PostgreSQL
//! replicas sharing the work (a replica killed mid-replay: `queued_postgres.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use http::StatusCode;

use crate::queue_admin::admin;
use crate::queued::{header, store, within, ENV};
use crate::support::*;

/// The route `shop` at `/shop`, queued to `billing` (events whose `/event` starts with
/// `invoice.`), `analytics` (every event but a `ping`) and `audit` (events whose
/// `x-tenant` header is `acme`), each with `extra` lines (indented six spaces) under it.
fn shop_route(billing: &str, analytics: &str, audit: &str, extra: [&str; 3]) -> String {
    format!(
        "  - name: shop\n    path: /shop\n\
         \x20   verify: {{ preset: laso, secret: \"${{LASO_SECRET}}\" }}\n\
         \x20   delivery: queued\n\
         \x20   queue: {{ retry: {{ initial_interval: 50ms, max_interval: 200ms }} }}\n\
         \x20   destinations:\n\
         \x20     - name: billing\n        upstream: {billing}\n\
         \x20       filter: {{ json: /event, prefix: invoice. }}\n{}\
         \x20     - name: analytics\n        upstream: {analytics}\n\
         \x20       filter: {{ not: {{ json: /event, equals: ping }} }}\n{}\
         \x20     - name: audit\n        upstream: {audit}\n\
         \x20       filter: {{ header: x-tenant, one_of: [acme] }}\n{}",
        extra[0], extra[1], extra[2]
    )
}

async fn shop_gateway(top: &str, apps: &[String; 3], extra: [&str; 3]) -> Hookgate {
    let yaml = Yaml::new()
        .top(top)
        .routes(&shop_route(&apps[0], &apps[1], &apps[2], extra));
    Hookgate::start(&yaml, ENV).await
}

/// Which store a test runs on.
#[derive(Clone, Copy)]
enum On {
    Embedded,
    Postgres,
}

/// A scratch directory, the `queue_store:` lines for `on`, and the PostgreSQL server if
/// any (stopped when dropped).
async fn setup(
    on: On,
    tag: &str,
) -> (
    std::path::PathBuf,
    String,
    Option<crate::pg_server::PostgresServer>,
) {
    let dir = temp_dir(tag);
    match on {
        On::Embedded => {
            let top = store(&dir);
            (dir, top, None)
        }
        On::Postgres => {
            let pg = crate::pg_server::PostgresServer::start().await;
            let top = format!(
                "queue_store:\n  type: postgres\n  url: \"{}\"\n  timeout: 2s\n",
                pg.url()
            );
            (dir, top, Some(pg))
        }
    }
}

/// Each scenario on the embedded store and on PostgreSQL.
macro_rules! on_both {
    ($($body:ident => $embedded:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $embedded() {
            $body(On::Embedded).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            $body(On::Postgres).await
        }
    )*};
}

on_both! {
    filters_send_each_event_to_its_apps_only_and_an_event_none_takes_is_kept_on => filters_send_each_event_to_its_apps_only_and_an_event_none_takes_is_kept, filters_send_each_event_to_its_apps_only_and_an_event_none_takes_is_kept_on_postgres;
    one_app_down_does_not_slow_the_others_and_gets_everything_once_it_is_back_on => one_app_down_does_not_slow_the_others_and_gets_everything_once_it_is_back, one_app_down_does_not_slow_the_others_and_gets_everything_once_it_is_back_on_postgres;
    a_paused_destination_holds_while_the_others_deliver_and_drains_once_on_resume_on => a_paused_destination_holds_while_the_others_deliver_and_drains_once_on_resume, a_paused_destination_holds_while_the_others_deliver_and_drains_once_on_resume_on_postgres;
    a_destination_breaker_opens_on_its_failure_rate_while_the_others_deliver_on => a_destination_breaker_opens_on_its_failure_rate_while_the_others_deliver, a_destination_breaker_opens_on_its_failure_rate_while_the_others_deliver_on_postgres;
    a_bulk_replay_counts_first_then_sends_each_event_again_once_with_its_key_and_a_marker_on => a_bulk_replay_counts_first_then_sends_each_event_again_once_with_its_key_and_a_marker, a_bulk_replay_counts_first_then_sends_each_event_again_once_with_its_key_and_a_marker_on_postgres;
    a_cancelled_replay_stops_and_its_numbers_are_what_was_sent_on => a_cancelled_replay_stops_and_its_numbers_are_what_was_sent, a_cancelled_replay_stops_and_its_numbers_are_what_was_sent_on_postgres;
}

/// Billing, analytics and audit: three fast apps.
async fn three_apps() -> (Upstream, Upstream, Upstream) {
    (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    )
}

/// Posts event `n` of type `kind` (with `x-tenant: tenant` if given); returns its id.
async fn send_event(gw: &Hookgate, n: usize, kind: &str, tenant: Option<&str>) -> String {
    let body = format!(r#"{{"event":"{kind}","n":{n}}}"#).into_bytes();
    let mut headers = sign_as("laso", secret_of("laso"), &body, now_unix());
    if let Some(t) = tenant {
        headers.push(("x-tenant".into(), t.into()));
    }
    let answer = post(&gw.url("/shop"), &as_refs(&headers), &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.headers["hookgate-event-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// How many times the app got each `n`.
fn counts(app: &Upstream) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for r in app.received() {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        *out.entry(v["n"].as_u64().unwrap()).or_default() += 1;
    }
    out
}

fn once_each(ns: impl IntoIterator<Item = u64>) -> BTreeMap<u64, usize> {
    ns.into_iter().map(|n| (n, 1)).collect()
}

fn delivered(gw: &Hookgate, destination: &str) -> f64 {
    gw.counter(
        "hookgate_delivery_attempts_total",
        &[
            ("route", "shop"),
            ("destination", destination),
            ("outcome", "delivered"),
        ],
    )
}

async fn filters_send_each_event_to_its_apps_only_and_an_event_none_takes_is_kept_on(on: On) {
    let (dir, top, _pg) = setup(on, "fanout-filters").await;
    let (billing, analytics, audit) = three_apps().await;
    let apps = [billing.url(), analytics.url(), audit.url()];
    let gw = shop_gateway(&top, &apps, ["", "", ""]).await;

    let paid = send_event(&gw, 1, "invoice.paid", Some("acme")).await;
    send_event(&gw, 2, "booking.created", None).await;
    send_event(&gw, 3, "invoice.voided", Some("other")).await;
    let ping = send_event(&gw, 4, "ping", None).await;

    within(5, "every app has its events", || {
        billing.count() == 2 && analytics.count() == 3 && audit.count() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts(&billing), once_each([1, 3]));
    assert_eq!(counts(&analytics), once_each([1, 2, 3]));
    assert_eq!(counts(&audit), once_each([1]));

    // One event, one id; each app its own Idempotency-Key, the same bytes.
    let to = |app: &Upstream| {
        app.received()
            .into_iter()
            .find(|r| r.body.starts_with(br#"{"event":"invoice.paid""#))
            .expect("event 1")
    };
    for (app, name) in [
        (&billing, "billing"),
        (&analytics, "analytics"),
        (&audit, "audit"),
    ] {
        let got = to(app);
        assert_eq!(header(&got, "idempotency-key"), format!("{paid}:{name}"));
        assert_eq!(header(&got, "hookgate-attempt"), "1");
        assert_eq!(got.path_and_query, "/shop");
    }
    assert_eq!(to(&billing).body, to(&audit).body);

    // Stored once, with a delivery per destination that took it.
    let (status, event) = admin(&gw, "GET", &format!("/queue/events/{paid}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let deliveries: Vec<(&str, &str)> = event["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["destination"].as_str().unwrap(),
                d["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        deliveries,
        [
            ("analytics", "delivered"),
            ("audit", "delivered"),
            ("billing", "delivered")
        ]
    );
    // The ping went nowhere, and is kept as such: acknowledged, never lost.
    let (_, event) = admin(&gw, "GET", &format!("/queue/events/{ping}"), None).await;
    assert_eq!(event["state"], "filtered");
    assert_eq!(event["deliveries"].as_array().unwrap().len(), 1);
    let (_, listed) = admin(&gw, "GET", "/queue/events?route=shop&state=filtered", None).await;
    assert_eq!(listed["events"].as_array().unwrap().len(), 1);

    for (name, n) in [("billing", 2.0), ("analytics", 3.0), ("audit", 1.0)] {
        within(2, "the attempts are counted", || delivered(&gw, name) == n).await;
    }
    // The route's view shows each destination.
    let (_, route) = admin(&gw, "GET", "/queue/routes/shop", None).await;
    let names: Vec<&str> = route["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["destination"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["billing", "analytics", "audit"]);
    assert_eq!(route["concurrency"], 48);

    // A filter tried on what is stored: billing's, then one given.
    let (status, test) = admin(
        &gw,
        "GET",
        "/queue/filter-test?route=shop&destination=billing&since=1h",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{test}");
    assert_eq!(
        (test["examined"].clone(), test["matched"].clone()),
        (4.into(), 2.into())
    );
    assert!(test["matched_ids"]
        .as_array()
        .unwrap()
        .contains(&paid.as_str().into()));
    let (token, addr) = (dir.join("token"), gw.admin.to_string());
    std::fs::write(&token, "unused").unwrap();
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["filter", "--admin", &addr, "--token-file"])
            .arg(&token)
            .args([
                "test",
                "--route",
                "shop",
                "--filter",
                "{ json: /event, equals: ping }",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let test: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(test["matched_ids"], serde_json::json!([ping]));
    assert_eq!(test["not_matched"], 3);
}

async fn one_app_down_does_not_slow_the_others_and_gets_everything_once_it_is_back_on(on: On) {
    let (_dir, top, _pg) = setup(on, "fanout-down").await;
    let (analytics, audit) = (Upstream::start().await, Upstream::start().await);
    let billing_addr = rebindable_addr().await;
    let apps = [
        format!("http://{billing_addr}"),
        analytics.url(),
        audit.url(),
    ];
    let gw = shop_gateway(&top, &apps, ["", "", ""]).await;
    for n in 0..20 {
        send_event(&gw, n, "invoice.paid", Some("acme")).await;
    }
    within(5, "the apps that answer have every event", || {
        analytics.count() == 20 && audit.count() == 20
    })
    .await;
    assert_eq!(counts(&analytics), once_each(0..20));
    let (_, route) = admin(&gw, "GET", "/queue/routes/shop", None).await;
    let billing_view = &route["destinations"][0];
    assert_eq!(billing_view["destination"], "billing");
    assert_eq!(billing_view["held_back"], true, "{billing_view}");
    assert_eq!(route["destinations"][1]["held_back"], false);
    assert_eq!(
        gw.counter(
            "hookgate_queue_held_back",
            &[("route", "shop"), ("destination", "billing")]
        ),
        1.0
    );

    // Billing comes up: everything it missed, once each.
    let billing = Upstream::start_at(billing_addr, Reply::default()).await;
    within(30, "billing catches up", || billing.count() >= 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts(&billing), once_each(0..20));
    assert_eq!(counts(&analytics), once_each(0..20), "nothing twice");
}

async fn a_paused_destination_holds_while_the_others_deliver_and_drains_once_on_resume_on(on: On) {
    let (_dir, top, _pg) = setup(on, "fanout-pause").await;
    let (billing, analytics, audit) = three_apps().await;
    let apps = [billing.url(), analytics.url(), audit.url()];
    let gw = shop_gateway(&top, &apps, ["", "", ""]).await;
    let (status, paused) = admin(
        &gw,
        "POST",
        "/queue/routes/shop/pause?destination=analytics",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(paused["destination"], "analytics");
    let (status, _) = admin(
        &gw,
        "POST",
        "/queue/routes/shop/pause?destination=nope",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a typo pauses nothing");
    for n in 0..10 {
        send_event(&gw, n, "invoice.paid", Some("acme")).await;
    }
    within(5, "the others deliver", || {
        billing.count() == 10 && audit.count() == 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(analytics.count(), 0, "paused: nothing delivered");
    let (_, route) = admin(&gw, "GET", "/queue/routes/shop", None).await;
    assert!(route["destinations"][1]["paused_since"].is_string());
    assert!(route["destinations"][0]["paused_since"].is_null());
    assert!(route["paused_since"].is_null(), "the route is not paused");
    assert_eq!(route["destinations"][1]["depth"]["queued"], 10);
    assert_eq!(
        gw.counter(
            "hookgate_queue_paused",
            &[("route", "shop"), ("destination", "analytics")]
        ),
        1.0
    );

    let (status, _) = admin(
        &gw,
        "POST",
        "/queue/routes/shop/resume?destination=analytics",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    within(5, "analytics drains", || analytics.count() >= 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts(&analytics), once_each(0..10));
    assert_eq!(counts(&billing), once_each(0..10));
}

async fn a_destination_breaker_opens_on_its_failure_rate_while_the_others_deliver_on(on: On) {
    let (_dir, top, _pg) = setup(on, "fanout-breaker").await;
    // Billing fails its first eight attempts with 500 (which pacing alone lets through).
    let billing = Upstream::start_with(Reply::scripted(&[500; 8])).await;
    let (analytics, audit) = (Upstream::start().await, Upstream::start().await);
    let apps = [billing.url(), analytics.url(), audit.url()];
    let breaker = "        breaker: { failure_rate: 50, window: 10s, min_attempts: 4, \
                   open_for: 500ms, probes: 1 }\n";
    let gw = shop_gateway(&top, &apps, [breaker, "", ""]).await;
    for n in 0..6 {
        send_event(&gw, n, "invoice.paid", None).await;
    }
    within(5, "analytics is not held up", || analytics.count() == 6).await;
    let opened = |gw: &Hookgate| {
        gw.counter(
            "hookgate_queue_breaker_transitions_total",
            &[
                ("route", "shop"),
                ("destination", "billing"),
                ("to", "open"),
            ],
        )
    };
    within(5, "billing's breaker opens", || opened(&gw) >= 1.0).await;
    assert_eq!(
        gw.counter(
            "hookgate_queue_breaker_transitions_total",
            &[
                ("route", "shop"),
                ("destination", "analytics"),
                ("to", "open")
            ],
        ),
        0.0
    );
    within(30, "billing gets every event after probes close it", || {
        delivered(&gw, "billing") == 6.0
    })
    .await;
    within(5, "closed again", || {
        gw.counter(
            "hookgate_queue_breaker_state",
            &[("route", "shop"), ("destination", "billing")],
        ) == 0.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        billing.count(),
        8 + 6,
        "each event delivered once after the failures"
    );
    assert_eq!(counts(&billing).len(), 6);
}

/// Two gateways on one PostgreSQL, the three apps behind each: every event reaches each
/// app that takes it exactly once, whichever replica stored or delivered it; a pause of
/// one destination made on one replica holds on both, and the other destinations go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_deliver_each_event_once_to_each_app_that_takes_it() {
    let (_dir, top, _pg) = setup(On::Postgres, "fanout-replicas").await;
    let (billing, analytics, audit) = three_apps().await;
    let yaml = Yaml::new().top(&top).routes(&shop_route(
        &billing.url(),
        &analytics.url(),
        &audit.url(),
        ["", "", ""],
    ));
    let a = Hookgate::start(&yaml, ENV).await;
    let b = Hookgate::start(&yaml, ENV).await;
    let (status, _) = admin(
        &a,
        "POST",
        "/queue/routes/shop/pause?destination=audit",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The other replica reads the pauses every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for n in 0..30 {
        let gw = if n % 2 == 0 { &a } else { &b };
        let kind = if n % 3 == 0 {
            "booking.created"
        } else {
            "invoice.paid"
        };
        send_event(gw, n as usize, kind, Some("acme")).await;
    }
    let invoices: Vec<u64> = (0..30).filter(|n| n % 3 != 0).collect();
    within(15, "billing and analytics have theirs", || {
        billing.count() >= invoices.len() && analytics.count() >= 30
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(counts(&billing), once_each(invoices.iter().copied()));
    assert_eq!(counts(&analytics), once_each(0..30));
    assert_eq!(audit.count(), 0, "paused on every replica");

    // Resumed on the other replica: audit drains, once each.
    let (status, _) = admin(
        &b,
        "POST",
        "/queue/routes/shop/resume?destination=audit",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    within(15, "audit drains", || audit.count() >= 30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(counts(&audit), once_each(0..30));
    a.shutdown().await;
    b.shutdown().await;
}

/// Waits until replay job `id` is over, and returns it.
pub async fn job_over(gw: &Hookgate, id: &str, secs: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, job) = admin(gw, "GET", &format!("/queue/replays/{id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if job["state"] != "running" {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job still running: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_bulk_replay_counts_first_then_sends_each_event_again_once_with_its_key_and_a_marker_on(
    on: On,
) {
    let (_dir, top, _pg) = setup(on, "fanout-replay").await;
    let (billing, analytics, audit) = three_apps().await;
    let apps = [billing.url(), analytics.url(), audit.url()];
    let gw = shop_gateway(&top, &apps, ["", "", ""]).await;
    for n in 0..12 {
        let kind = if n < 8 {
            "invoice.paid"
        } else {
            "booking.created"
        };
        send_event(&gw, n, kind, None).await;
    }
    within(5, "delivered", || {
        billing.count() == 8 && analytics.count() == 12
    })
    .await;

    // A dry run counts and sends nothing.
    let q = "/queue/replays?route=shop&destination=billing&since=1h";
    let (status, dry) = admin(&gw, "POST", &format!("{q}&dry_run=true"), None).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["matched"], 8);
    for (bad, why) in [
        (
            "/queue/replays?route=shop&since=1h&to=https%3A%2F%2Fevil.example",
            "no destination",
        ),
        ("/queue/replays?route=nope&since=1h", "no queued route"),
        (
            "/queue/replays?route=shop&since=1h&state=filtered",
            "give to=",
        ),
        (
            "/queue/replays?route=shop&since=1h&filter=%7Bjson%3A%20%2Fa%7D",
            "exactly one test",
        ),
    ] {
        let (status, answer) = admin(&gw, "POST", bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(why), "{answer}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(billing.count(), 8, "a dry run sends nothing");

    // The job: billing's 8 again, once each, with the key they had and the marker.
    let (status, job) = admin(&gw, "POST", q, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job = job_over(&gw, job["id"].as_str().unwrap(), 10).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (job["matched"].clone(), job["replayed"].clone()),
        (8.into(), 8.into())
    );
    within(5, "billing gets them again", || billing.count() == 16).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = billing.received();
    let (first, again) = received.split_at(8);
    for r in again {
        assert_eq!(header(r, "hookgate-replay"), "1");
        let original = first
            .iter()
            .find(|f| f.body == r.body)
            .expect("the same event");
        assert_eq!(
            header(r, "idempotency-key"),
            header(original, "idempotency-key")
        );
        assert_eq!(header(original, "hookgate-replay"), "");
    }
    assert_eq!(counts(&billing), (0..8).map(|n| (n, 2)).collect());
    assert_eq!(analytics.count(), 12, "another destination is not replayed");

    // To another destination, through a filter: analytics' events 1 and 9 go to audit,
    // which never took them, with audit's own key.
    let filter = "%7B%20json%3A%20%2Fn%2C%20one_of%3A%20%5B1%2C%209%5D%20%7D";
    let q = format!(
        "/queue/replays?route=shop&destination=analytics&to=audit&since=1h&filter={filter}"
    );
    let (status, job) = admin(&gw, "POST", &q, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["matched"], 2);
    let job = job_over(&gw, job["id"].as_str().unwrap(), 10).await;
    assert_eq!(
        (job["state"].clone(), job["replayed"].clone()),
        ("done".into(), 2.into())
    );
    within(5, "audit gets them", || audit.count() == 2).await;
    assert_eq!(counts(&audit), once_each([1, 9]));
    for r in audit.received() {
        assert!(header(&r, "idempotency-key").ends_with(":audit"));
        assert_eq!(header(&r, "hookgate-replay"), "1");
    }
    let (_, jobs) = admin(&gw, "GET", "/queue/replays", None).await;
    assert_eq!(jobs["replays"].as_array().unwrap().len(), 2);

    // An event no destination took, replayed to one: it gets that destination's key.
    let ping = send_event(&gw, 99, "ping", None).await;
    let q = "/queue/replays?route=shop&to=analytics&state=filtered&since=1h";
    let (status, job) = admin(&gw, "POST", q, None).await;
    assert_eq!(
        (status, job["matched"].clone()),
        (StatusCode::ACCEPTED, 1.into()),
        "{job}"
    );
    let job = job_over(&gw, job["id"].as_str().unwrap(), 10).await;
    assert_eq!(job["replayed"], 1, "{job}");
    within(5, "analytics gets the ping", || analytics.count() == 13).await;
    let got = analytics.received().pop().unwrap();
    assert_eq!(header(&got, "idempotency-key"), format!("{ping}:analytics"));
    assert_eq!(header(&got, "hookgate-replay"), "1");
}

async fn a_cancelled_replay_stops_and_its_numbers_are_what_was_sent_on(on: On) {
    let (_dir, top, _pg) = setup(on, "fanout-replay-cancel").await;
    let (billing, analytics, audit) = three_apps().await;
    let apps = [billing.url(), analytics.url(), audit.url()];
    let one = "        concurrency: 1\n";
    let gw = shop_gateway(&top, &apps, [one, "", ""]).await;
    for n in 0..40 {
        send_event(&gw, n, "invoice.paid", None).await;
    }
    within(10, "delivered", || billing.count() == 40).await;
    // Paused, billing takes nothing: the job makes its window due (10: twice its
    // concurrency, at least 10) and waits.
    admin(
        &gw,
        "POST",
        "/queue/routes/shop/pause?destination=billing",
        None,
    )
    .await;
    let (_, job) = admin(
        &gw,
        "POST",
        "/queue/replays?route=shop&destination=billing&since=1h",
        None,
    )
    .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, job) = admin(&gw, "GET", &format!("/queue/replays/{id}"), None).await;
        if job["replayed"] == 10 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never marked: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It holds there: the destination has its window pending.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, cancelled) =
        admin(&gw, "POST", &format!("/queue/replays/{id}/cancel"), None).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let replayed = cancelled["replayed"].as_u64().unwrap();
    assert_eq!(replayed, 10, "{cancelled}");
    admin(
        &gw,
        "POST",
        "/queue/routes/shop/resume?destination=billing",
        None,
    )
    .await;
    within(10, "what was marked is sent", || billing.count() == 40 + 10).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(billing.count(), 50, "nothing after the cancel");
    let (status, _) = admin(&gw, "POST", &format!("/queue/replays/{id}/cancel"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not running any more");
}
