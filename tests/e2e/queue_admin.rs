//! Operating the queue: the admin listener's `/queue/` API, its bearer token, and the
//! `hookgate queue` command over it.

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::queued::{header, laso_event, routes, store, within, ENV, FAST};
use crate::support::*;

const TOKEN: &str = "s3cret-admin-token-for-tests-0123";

pub async fn admin(
    gw: &Hookgate,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let answer = send(method, &format!("http://{}{path}", gw.admin), &headers, b"").await;
    let json = serde_json::from_str(&answer.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", answer.body));
    (answer.status, json)
}

/// Posts one laso event and waits until it is a dead letter (the app answers 422 first).
async fn one_dead_event(gw: &Hookgate, n: usize, dead_so_far: f64) -> String {
    let (body, headers) = laso_event(n);
    let answer = post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    assert_eq!(answer.status, StatusCode::OK);
    within(5, "the event is dead", || {
        gw.counter(
            "hookgate_dead_letters_total",
            &[("route", "laso"), ("reason", "refused")],
        ) == dead_so_far + 1.0
    })
    .await;
    answer.headers["hookgate-event-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_dead_letter_is_listed_shown_and_retried_through_the_admin_api() {
    let dir = temp_dir("queue-api");
    let upstream = Upstream::start_with(Reply::scripted(&[422])).await;
    let gw = Hookgate::start(
        &Yaml::new()
            .top(&store(&dir))
            .routes(&routes(&upstream.url(), FAST)),
        ENV,
    )
    .await;
    let id = one_dead_event(&gw, 1, 0.0).await;

    let (status, list) = admin(&gw, "GET", "/queue/events?route=laso&state=dead", None).await;
    assert_eq!(status, StatusCode::OK);
    let events = list["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], id.as_str());
    assert_eq!(events[0]["state"], "dead");
    assert_eq!(events[0]["attempts"], 1);
    assert_eq!(events[0]["last_status"], 422);
    assert_eq!(events[0]["dead_reason"], "refused");
    assert!(events[0].get("body").is_none(), "no bodies in listings");
    assert!(events[0].get("headers").is_none());

    // The depth gauges (refreshed every 5 s) show the dead letter and its age.
    within(8, "hookgate_queue_events shows the dead letter", || {
        gw.counter(
            "hookgate_queue_events",
            &[("route", "laso"), ("state", "dead")],
        ) == 1.0
    })
    .await;
    assert_eq!(
        gw.counter(
            "hookgate_queue_events",
            &[("route", "laso"), ("state", "queued")],
        ),
        0.0
    );
    assert!(
        gw.counter(
            "hookgate_queue_oldest_event_age_seconds",
            &[("route", "laso"), ("state", "dead")],
        ) > 0.0,
        "the dead letter has an age"
    );

    let (status, shown) = admin(&gw, "GET", &format!("/queue/events/{id}?body=true"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (body, _) = laso_event(1);
    assert_eq!(shown["body"], String::from_utf8(body.clone()).unwrap());
    assert_eq!(shown["target"], "/laso");

    let (status, _) = admin(&gw, "POST", &format!("/queue/events/{id}/retry"), None).await;
    assert_eq!(status, StatusCode::OK);
    within(5, "the retried event is delivered", || {
        upstream.count() == 2
    })
    .await;
    let got = upstream.received();
    assert_eq!(got[1].body, body);
    assert_eq!(header(&got[1], "idempotency-key"), id);
    assert_eq!(
        header(&got[1], "hookgate-attempt"),
        "2",
        "the app is told of every attempt made, the one before the retry included"
    );
    within(5, "delivered", || {
        gw.counter(
            "hookgate_delivery_attempts_total",
            &[("route", "laso"), ("outcome", "delivered")],
        ) == 1.0
    })
    .await;
    let (_, shown) = admin(&gw, "GET", &format!("/queue/events/{id}"), None).await;
    assert_eq!(shown["state"], "delivered");
    assert_eq!(shown["attempts"], 2);
    assert_eq!(
        shown["attempts_since_retry"], 1,
        "max_attempts counts from the retry"
    );
    assert_eq!(shown["dead_reason"], serde_json::Value::Null);
    assert!(shown.get("body").is_none(), "no body unless asked");

    // A delivered event cannot be retried; an unknown one is 404.
    let (status, _) = admin(&gw, "POST", &format!("/queue/events/{id}/retry"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin(&gw, "GET", "/queue/events/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, err) = admin(&gw, "GET", "/queue/events?state=lost", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().contains("unknown state"));
    gw.shutdown().await;
}

#[tokio::test]
async fn every_dead_letter_of_a_route_is_retried_at_once_and_one_can_be_dropped() {
    let dir = temp_dir("queue-api-bulk");
    let upstream = Upstream::start_with(Reply::scripted(&[422, 422, 422])).await;
    let gw = Hookgate::start(
        &Yaml::new()
            .top(&store(&dir))
            .routes(&routes(&upstream.url(), FAST)),
        ENV,
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(one_dead_event(&gw, n, n as f64).await);
    }
    let (status, _) = admin(&gw, "DELETE", &format!("/queue/events/{}", ids[0]), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin(&gw, "GET", &format!("/queue/events/{}", ids[0]), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "dropped");

    let (status, done) = admin(&gw, "POST", "/queue/routes/laso/retry-dead", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(done["retried"], 2);
    within(5, "both are delivered", || upstream.count() == 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delivered: Vec<String> = upstream.received()[3..]
        .iter()
        .map(|r| header(r, "idempotency-key").to_owned())
        .collect();
    assert!(
        !delivered.contains(&ids[0]),
        "the dropped event stays dropped"
    );
    assert_eq!(upstream.count(), 5);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_queue_api_needs_the_bearer_token_when_one_is_set() {
    let dir = temp_dir("queue-api-token");
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let upstream = Upstream::start_with(Reply::scripted(&[422])).await;
    let admin_lines = format!(
        "  addr: 127.0.0.1:0\n  token_file: {}\n",
        dir.join("token").display()
    );
    let yaml = Yaml::new()
        .admin(&admin_lines)
        .top(&store(&dir.join("q")))
        .routes(&routes(&upstream.url(), FAST));
    let gw = Hookgate::start(&yaml, ENV).await;
    let id = one_dead_event(&gw, 1, 0.0).await;

    for token in [None, Some("wrong-token-wrong-token-wrong"), Some("")] {
        let (status, err) = admin(&gw, "POST", &format!("/queue/events/{id}/retry"), token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(err["error"].as_str().unwrap().contains("bearer token"));
        let (status, _) = admin(&gw, "GET", "/queue/events", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(upstream.count(), 1, "nothing retried without the token");
    // Metrics and health stay open to scrapers and probes.
    let metrics = send("GET", &format!("http://{}/metrics", gw.admin), &[], b"").await;
    assert_eq!(metrics.status, StatusCode::OK);

    let (status, _) = admin(
        &gw,
        "POST",
        &format!("/queue/events/{id}/retry"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    within(5, "retried with the token", || upstream.count() == 2).await;
    gw.shutdown().await;
}

#[test]
fn an_admin_listener_off_loopback_needs_a_token_file() {
    let yaml = "admin:\n  addr: 0.0.0.0:9090\nroutes:\n  - name: a\n    path: /a\n    \
                upstream: http://127.0.0.1:1\n    allow_ips: [127.0.0.1/32]\n";
    let err = hookgate::config::compile::compile(yaml, std::path::Path::new("."), &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin.token_file"), "{err}");
    assert!(err.contains("not on loopback"), "{err}");
}

#[tokio::test]
async fn hookgate_queue_lists_and_retries_dead_letters() {
    let dir = temp_dir("queue-cli");
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let upstream = Upstream::start_with(Reply::scripted(&[422])).await;
    let admin_lines = format!(
        "  addr: 127.0.0.1:0\n  token_file: {}\n",
        dir.join("token").display()
    );
    let yaml = Yaml::new()
        .admin(&admin_lines)
        .top(&store(&dir.join("q")))
        .routes(&routes(&upstream.url(), FAST));
    let gw = Hookgate::start(&yaml, ENV).await;
    let id = one_dead_event(&gw, 1, 0.0).await;
    let addr = gw.admin.to_string();
    let token_file = dir.join("token");
    let cli = move |args: &[&str]| {
        let out = bin()
            .args(["queue", "--admin", &addr, "--token-file"])
            .arg(&token_file)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let list = cli.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || list(&["list", "--state", "dead"]))
        .await
        .unwrap();
    assert!(ok, "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["events"][0]["id"], id.as_str());

    // Off a terminal the output is the API's JSON: the route's view, with its dead letter.
    let routes = cli.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || routes(&["routes", "laso"]))
        .await
        .unwrap();
    assert!(ok, "{out}");
    let route: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(route["route"], "laso");
    assert_eq!(route["depth"]["dead"], 1, "{out}");
    assert_eq!(route["held_back"], false, "{out}");
    // An unknown route or event is an error, with a non-zero exit.
    for args in [
        &["routes", "nope"][..],
        &["list", "--route", "nope"],
        &["show", "0000"],
        &["retry", "0000"],
        &["retry-dead", "--route", "nope"],
        &["pause", "--route", "nope"],
        &["resume", "--route", "nope"],
    ] {
        let run = cli.clone();
        let (ok, out) = tokio::task::spawn_blocking(move || run(args))
            .await
            .unwrap();
        assert!(!ok, "{args:?} succeeded: {out}");
    }

    let retry = cli.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || retry(&["retry-dead", "--route", "laso"]))
        .await
        .unwrap();
    assert!(ok, "{out}");
    within(5, "the CLI's retry is delivered", || upstream.count() == 2).await;

    // Pause and resume from the command line.
    let pause = cli.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || pause(&["pause", "--route", "laso"]))
        .await
        .unwrap();
    assert!(ok, "{out}");
    let paused: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(paused["paused"], true, "{out}");
    let resume = cli.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || resume(&["resume", "--route", "laso"]))
        .await
        .unwrap();
    assert!(ok, "{out}");
    let resumed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (resumed["paused"].as_bool(), resumed["changed"].as_bool()),
        (Some(false), Some(true)),
        "{out}"
    );

    // A wrong token is refused and the command fails.
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "not-the-token-not-the-token").unwrap();
    let addr = gw.admin.to_string();
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["queue", "--admin", &addr, "--token-file"])
            .arg(&wrong)
            .args(["list"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    gw.shutdown().await;
}

/// A pause that holds: events are taken and stored while the route is paused, none reaches
/// the app, the pause survives a restart, the events do not age into dead letters while
/// paused, and resuming delivers each of them once.
#[tokio::test]
async fn a_paused_route_stores_events_delivers_none_and_drains_once_on_resume() {
    let dir = temp_dir("queue-pause");
    // The lomi event's 200, then each paused event fails its first attempt once: retried only
    // if the pause did not count against its max_age.
    let upstream = Upstream::start_with(Reply::scripted(&[200, 500, 500, 500, 500, 500])).await;
    // A short max_age: the pause outlasts it, and no event may die of it.
    let queue = "      retry: { initial_interval: 50ms, max_interval: 200ms, max_age: 1500ms }\n";
    let yaml = Yaml::new()
        .top(&store(&dir))
        .routes(&routes(&upstream.url(), queue));
    let gw = Hookgate::start(&yaml, ENV).await;
    let (status, paused) = admin(&gw, "POST", "/queue/routes/laso/pause", None).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(
        (paused["paused"].as_bool(), paused["changed"].as_bool()),
        (Some(true), Some(true))
    );
    let (status, again) = admin(&gw, "POST", "/queue/routes/laso/pause", None).await;
    assert_eq!(
        (status, again["changed"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    assert_eq!(
        again["paused_since"], paused["paused_since"],
        "the pause keeps its start"
    );
    let (status, _) = admin(&gw, "POST", "/queue/routes/nope/pause", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for n in 0..5 {
        let (body, headers) = laso_event(n);
        let a = post(&gw.url("/laso"), &as_refs(&headers), &body).await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "stored and acknowledged while paused"
        );
    }
    // The other queued route is not paused.
    let lomi = b"{\"id\":\"evt_1\",\"type\":\"charge.success\"}".to_vec();
    let lomi_headers = sign_as("lomi", secret_of("lomi"), &lomi, now_unix());
    post(&gw.url("/lomi"), &as_refs(&lomi_headers), &lomi).await;
    within(5, "the unpaused route delivers", || upstream.count() == 1).await;
    within(5, "the pause shows in the metrics", || {
        gw.counter("hookgate_queue_paused", &[("route", "laso")]) == 1.0
    })
    .await;
    let (_, route) = admin(&gw, "GET", "/queue/routes/laso", None).await;
    assert_eq!(route["depth"]["queued"], 5, "{route}");
    assert!(route["paused_since"].is_string(), "{route}");
    gw.shutdown().await;

    // Restarted: still paused, and nothing goes out.
    let gw = Hookgate::start(&yaml, ENV).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        upstream.count(),
        1,
        "nothing of the paused route was delivered"
    );
    let (_, route) = admin(&gw, "GET", "/queue/routes/laso", None).await;
    assert!(
        route["paused_since"].is_string(),
        "the pause survives a restart: {route}"
    );
    assert_eq!(route["depth"]["queued"], 5, "{route}");

    // Resumed, past max_age: the first attempts fail, and every event is retried (the
    // pause is not counted in its age) and delivered; none is dead.
    let (status, resumed) = admin(&gw, "POST", "/queue/routes/laso/resume", None).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["changed"].as_bool(), Some(true));
    within(10, "what waited is delivered", || upstream.count() == 11).await;
    let keys: std::collections::HashSet<String> = upstream
        .received()
        .iter()
        .map(|r| header(r, "idempotency-key").to_owned())
        .collect();
    assert_eq!(keys.len(), 6, "six events, each retried at most once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.count(), 11, "nothing after each was delivered");
    assert_eq!(
        gw.counter(
            "hookgate_dead_letters_total",
            &[("route", "laso"), ("reason", "expired")]
        ),
        0.0
    );
    let (_, again) = admin(&gw, "POST", "/queue/routes/laso/resume", None).await;
    assert_eq!(again["changed"].as_bool(), Some(false));
    within(5, "the metric reads unpaused", || {
        gw.counter("hookgate_queue_paused", &[("route", "laso")]) == 0.0
    })
    .await;
    gw.shutdown().await;
}
