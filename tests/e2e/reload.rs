//! Reload: a new configuration takes effect whole, for new requests, while requests in
//! flight finish on the old one; a broken one changes nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::support::*;

/// Writes the configuration: one Stripe-style route with the given secret file and upstream.
fn write_config(dir: &Path, secret_file: &str, upstream: &str) -> PathBuf {
    write_config_with(dir, secret_file, upstream, "", "")
}

/// [`write_config`] with `top` lines before `routes:` and `route` lines in the route.
fn write_config_with(
    dir: &Path,
    secret_file: &str,
    upstream: &str,
    top: &str,
    route: &str,
) -> PathBuf {
    let path = dir.join("gateway.yaml");
    let text = Yaml::new().top(top).routes(&format!(
        "  - name: stripe\n    path: /hooks/stripe\n    upstream: {upstream}\n    verify: {{ preset: stripe, secret_file: {secret_file} }}\n{route}"
    ));
    // Written whole then renamed, as editors and ConfigMaps do.
    let tmp = dir.join("gateway.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// A Stripe signature header carrying one `v1` entry per secret: valid under either.
fn stripe_sig(secrets: &[&str], body: &[u8]) -> String {
    let t = now_unix().to_string();
    let mut v = format!("t={t}");
    for s in secrets {
        let mac = hmac_sha256(s, &[t.as_bytes(), b".", body]);
        v += &format!(",v1={}", hex::encode(mac));
    }
    v
}

/// A fresh directory `tag` holding `a.secret` ("secret-a") and the configuration of one
/// Stripe route to `upstream` with it, and a gateway started from that file.
async fn start_with_secret_a(tag: &str, upstream: &str) -> (PathBuf, PathBuf, Hookgate) {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("a.secret"), "secret-a\n").unwrap();
    let path = write_config(&dir, "a.secret", upstream);
    let gw = Hookgate::start_file(&path).await;
    (dir, path, gw)
}

/// Posts `body` to the Stripe route, signed with `secret`.
async fn post_signed(gw: &Hookgate, secret: &str, body: &[u8]) -> Answer {
    let sig = stripe_sig(&[secret], body);
    post(
        &gw.url("/hooks/stripe"),
        &[("stripe-signature", &sig)],
        body,
    )
    .await
}

/// The metrics of one refused reload: counted, and the last one unsuccessful.
fn refused_once(gw: &Hookgate) {
    assert_eq!(
        gw.counter("hookgate_config_reloads_total", &[("result", "failure")]),
        1.0
    );
    assert_eq!(
        gw.counter("hookgate_config_last_reload_successful", &[]),
        0.0
    );
}

#[tokio::test]
async fn twenty_reloads_under_load_fail_no_request_and_each_takes_effect() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let dir = temp_dir("reload-load");
    std::fs::write(dir.join("a.secret"), "secret-a\n").unwrap();
    std::fs::write(dir.join("b.secret"), "secret-b\n").unwrap();
    let path = write_config(&dir, "a.secret", &a.url());
    let gw = Hookgate::start_file(&path).await;
    let url = gw.url("/hooks/stripe");

    // Continuous load, signed for both secrets, so that every request verifies whichever
    // configuration serves it: any failure is the reload's fault.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (url, stop, sent) = (url.clone(), stop.clone(), sent.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let body = br#"{"id":"evt_load"}"#;
                let sig = stripe_sig(&["secret-a", "secret-b"], body);
                let answer = post(&url, &[("stripe-signature", &sig)], body).await;
                sent.fetch_add(1, Ordering::SeqCst);
                if answer.status != StatusCode::OK {
                    failures.push(format!("{} {}", answer.status, answer.body));
                }
            }
            failures
        }));
    }

    for i in 0..20 {
        let (secret, upstream, other) = if i % 2 == 0 {
            ("secret-b", &b, "secret-a")
        } else {
            ("secret-a", &a, "secret-b")
        };
        let file = format!("{}.secret", &secret[7..]);
        let path = write_config(&dir, &file, &upstream.url());
        assert!(gw.reload(&path).await, "reload {i}");
        // In effect at once: the new secret verifies and reaches the new upstream; the old
        // one alone no longer verifies.
        let body = format!("{{\"id\":\"evt_{i}\"}}");
        let before = upstream.count();
        let answer = post(
            &url,
            &[("stripe-signature", &stripe_sig(&[secret], body.as_bytes()))],
            body.as_bytes(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "reload {i}: {}", answer.body);
        assert!(upstream.count() > before);
        assert!(
            upstream
                .received()
                .iter()
                .any(|r| r.body == body.as_bytes()),
            "reload {i}"
        );
        let answer = post(
            &url,
            &[("stripe-signature", &stripe_sig(&[other], body.as_bytes()))],
            body.as_bytes(),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "reload {i}: old secret"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for l in load {
        failures.extend(l.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:?}",
        failures.len(),
        sent.load(Ordering::SeqCst)
    );
    assert!(sent.load(Ordering::SeqCst) > 100, "the load ran throughout");
    assert_eq!(
        gw.counter("hookgate_config_reloads_total", &[("result", "success")]),
        20.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_broken_reload_keeps_the_running_configuration_and_says_so() {
    let up = Upstream::start().await;
    let (dir, path, gw) = start_with_secret_a("reload-broken", &up.url()).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let sha = |t: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t.as_bytes()));
    assert_eq!(
        gw.counter("hookgate_config_info", &[("sha256", &sha(&text))]),
        1.0
    );

    // A secret file that does not exist, and an unknown preset: both errors, nothing changes.
    std::fs::write(
        &path,
        text.replace("a.secret", "missing.secret")
            .replace("preset: stripe", "preset: stripey"),
    )
    .unwrap();
    assert!(!gw.reload(&path).await);
    refused_once(&gw);
    assert_eq!(
        gw.counter("hookgate_config_info", &[("sha256", &sha(&text))]),
        1.0
    );
    let body = b"{}";
    let answer = post_signed(&gw, "secret-a", body).await;
    assert_eq!(answer.status, StatusCode::OK, "still the old configuration");

    // A rotated secret file under the same configuration text: re-read on reload.
    std::fs::write(&path, &text).unwrap();
    std::fs::write(dir.join("a.secret"), "secret-rotated\n").unwrap();
    assert!(gw.reload(&path).await);
    assert_eq!(
        gw.counter("hookgate_config_last_reload_successful", &[]),
        1.0
    );
    let answer = post_signed(&gw, "secret-rotated", body).await;
    assert_eq!(answer.status, StatusCode::OK);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_configuration_it_started_with() {
    let slow = Upstream::start_with(Reply {
        delay: Duration::from_millis(500),
        ..Reply::default()
    })
    .await;
    let other = Upstream::start().await;
    let (dir, _, gw) = start_with_secret_a("reload-inflight", &slow.url()).await;
    let url = gw.url("/hooks/stripe");
    let body = b"{\"id\":1}";
    let sig = stripe_sig(&["secret-a"], body);
    let in_flight = {
        let (url, sig) = (url.clone(), sig.clone());
        tokio::spawn(async move { post(&url, &[("stripe-signature", &sig)], body).await })
    };
    eventually("in flight", || slow.count() == 1).await;
    let path = write_config(&dir, "a.secret", &other.url());
    assert!(gw.reload(&path).await);
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "accepted by app");
    // New requests go to the new upstream.
    assert_eq!(
        post(&url, &[("stripe-signature", &sig)], body).await.status,
        StatusCode::OK
    );
    assert_eq!(slow.count(), 1);
    assert_eq!(other.count(), 1);
    gw.shutdown().await;
}

/// A route made queued by a reload, with the first `queue_store:` of this process: the
/// reload opens the store and starts its delivery worker.
#[tokio::test]
async fn a_reload_that_first_configures_a_queue_store_opens_it_and_delivers_from_it() {
    let app = Upstream::start().await;
    let (dir, _, gw) = start_with_secret_a("reload-queue-open", &app.url()).await;
    let (status, _) = crate::queue_admin::admin(&gw, "GET", "/queue/events", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no queue yet");

    let store = dir.join("queue");
    let queued = |store: &Path| {
        write_config_with(
            &dir,
            "a.secret",
            &app.url(),
            &format!("queue_store:\n  path: {}\n", store.display()),
            "    delivery: queued\n",
        )
    };
    // Nothing kept: the store the reload opened is the new configuration's (and its
    // upkeep, the purge of finished events, reads it from there).
    assert_eq!(gw.reload_kept(&queued(&store)).await, Vec::<&str>::new());
    assert_eq!(gw.reload_kept(&queued(&store)).await, Vec::<&str>::new());
    let body = br#"{"id":"evt_queued_by_reload"}"#;
    let answer = post_signed(&gw, "secret-a", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "queued\n");
    assert_eq!(gw.outcome("stripe", "queued"), 1.0);
    eventually_within("the app gets the event", Duration::from_secs(5), || {
        app.count() == 1
    })
    .await;
    let got = &app.received()[0];
    assert_eq!(got.body, &body[..]);
    assert!(got.headers.contains_key("idempotency-key"));
    let mode = std::fs::metadata(&store).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    // The admin API serves the store the reload opened.
    eventually_within("delivered", Duration::from_secs(5), || {
        gw.counter(
            "hookgate_delivery_attempts_total",
            &[("route", "stripe"), ("outcome", "delivered")],
        ) == 1.0
    })
    .await;
    let (status, list) =
        crate::queue_admin::admin(&gw, "GET", "/queue/events?route=stripe", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["events"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["events"][0]["state"], "delivered", "{list}");

    // Once open, the store stays: another path is kept until a restart, and not created.
    let elsewhere = dir.join("queue-elsewhere");
    assert_eq!(gw.reload_kept(&queued(&elsewhere)).await, ["queue_store"]);
    let body = br#"{"id":"evt_after_second_reload"}"#;
    let answer = post_signed(&gw, "secret-a", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    eventually_within("the second event", Duration::from_secs(5), || {
        app.count() == 2
    })
    .await;
    assert!(!elsewhere.exists(), "a second store was opened");
    let (_, list) = crate::queue_admin::admin(&gw, "GET", "/queue/events?route=stripe", None).await;
    assert_eq!(list["events"].as_array().unwrap().len(), 2, "{list}");
    gw.shutdown().await;
}

/// A reload whose `queue_store:` cannot open fails whole: the route stays as it was
/// (here sync), nothing is answered from a store that is not there.
#[tokio::test]
async fn a_reload_whose_queue_store_cannot_open_changes_nothing() {
    let app = Upstream::start().await;
    let (dir, _, gw) = start_with_secret_a("reload-queue-broken", &app.url()).await;
    // A directory cannot be made under a regular file.
    std::fs::write(dir.join("not-a-dir"), "").unwrap();
    let broken = write_config_with(
        &dir,
        "a.secret",
        &app.url(),
        &format!(
            "queue_store:\n  path: {}\n",
            dir.join("not-a-dir").join("queue").display()
        ),
        "    delivery: queued\n",
    );
    assert!(!gw.reload(&broken).await);
    refused_once(&gw);
    let body = br#"{"id":"evt_still_sync"}"#;
    let answer = post_signed(&gw, "secret-a", body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body, "accepted by app",
        "forwarded as before the reload"
    );
    assert_eq!(gw.outcome("stripe", "forwarded"), 1.0);
    assert_eq!(app.count(), 1);
    gw.shutdown().await;
}

/// An event stored in a queue store a reload opened, while the app is down, outlives a
/// shutdown (which waits for the reload's worker and closes the store) and is delivered
/// by the next start.
#[tokio::test]
async fn an_event_queued_after_a_reload_opened_the_store_is_delivered_after_a_restart() {
    // An app that is down: every attempt gets 503 (a live server, so no other test can
    // take its port and answer in its place).
    let down = Upstream::start_with(Reply {
        status: StatusCode::SERVICE_UNAVAILABLE,
        ..Reply::default()
    })
    .await;
    let (dir, _, gw) = start_with_secret_a("reload-queue-restart", &down.url()).await;
    let queued = |upstream: &str| {
        write_config_with(
            &dir,
            "a.secret",
            upstream,
            &format!("queue_store:\n  path: {}\n", dir.join("queue").display()),
            "    delivery: queued\n    queue:\n      retry: { initial_interval: 50ms, max_interval: 200ms }\n",
        )
    };
    assert!(gw.reload(&queued(&down.url())).await);
    let body = br#"{"id":"evt_outlives_restart"}"#;
    let answer = post_signed(&gw, "secret-a", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    eventually_within("an attempt fails", Duration::from_secs(5), || {
        gw.counter(
            "hookgate_delivery_attempts_total",
            &[("route", "stripe"), ("outcome", "retry")],
        ) >= 1.0
    })
    .await;
    gw.shutdown().await;

    let app = Upstream::start().await;
    let gw = Hookgate::start_file(&queued(&app.url())).await;
    eventually_within(
        "delivered after the restart",
        Duration::from_secs(5),
        || app.count() == 1,
    )
    .await;
    assert_eq!(app.received()[0].body, &body[..]);
    gw.shutdown().await;
}
