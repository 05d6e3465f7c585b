//! Stopping like nginx behind a load balancer: `/readyz` says 503 at once, requests are still
//! served for `drain_delay`, in-flight requests finish within `shutdown_grace`, and the admin
//! listener answers until the end.

use std::time::Duration;

use http::StatusCode;

use crate::support::*;

/// The one route, in front of `upstream`.
fn lahza_route(upstream: &str) -> String {
    format!(
        "  - name: lahza\n    path: /hooks/lahza\n    upstream: {upstream}\n    verify: {{ preset: lahza, secret: \"${{LAHZA}}\" }}\n"
    )
}

const BODY: &[u8] = b"{\"id\":1}";

fn signed() -> Vec<(String, String)> {
    vec![(
        "x-lahza-signature".into(),
        hex::encode(hmac_sha256("lahza-secret", &[BODY])),
    )]
}

#[tokio::test]
async fn a_drain_says_503_at_once_keeps_serving_and_lets_requests_finish() {
    let upstream = Upstream::start_with(Reply {
        delay: Duration::from_millis(700),
        ..Reply::default()
    })
    .await;
    let yaml = Yaml::new()
        .top("limits:\n  drain_delay: 400ms\n  shutdown_grace: 5s\n")
        .routes(&lahza_route(&upstream.url()));
    let mut gw = Hookgate::start(&yaml, &[("LAHZA", "lahza-secret")]).await;
    let url = gw.url("/hooks/lahza");
    let readyz = format!("http://{}/readyz", gw.admin);
    assert_eq!(send("GET", &readyz, &[], b"").await.status, StatusCode::OK);

    let slow = {
        let url = url.clone();
        tokio::spawn(async move { post(&url, &as_refs(&signed()), BODY).await })
    };
    eventually("the slow request is in flight", || {
        gw.counter("hookgate_requests_in_flight", &[]) == 1.0
    })
    .await;
    let running = gw.take_running();
    let drain = tokio::spawn(running.drain(std::future::pending()));

    // At once (well inside the 1.5 s drain delay): not ready, but still serving.
    let flipped = std::time::Instant::now();
    while send("GET", &readyz, &[], b"").await.status != StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            flipped.elapsed() < Duration::from_millis(200),
            "readyz still 200"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // It says why: draining, not starting up.
    assert_eq!(send("GET", &readyz, &[], b"").await.body, "draining\n");
    let during = {
        let url = url.clone();
        tokio::spawn(async move { post(&url, &as_refs(&signed()), BODY).await })
    };
    eventually("the request sent during the drain is in flight", || {
        gw.counter("hookgate_requests_in_flight", &[]) == 2.0
    })
    .await;
    // The admin listener still answers while in-flight requests finish.
    let scrape = send("GET", &format!("http://{}/metrics", gw.admin), &[], b"").await;
    assert_eq!(scrape.status, StatusCode::OK);
    let during = during.await.unwrap();
    assert_eq!(during.status, StatusCode::OK, "served during drain_delay");

    assert_eq!(
        slow.await.unwrap().status,
        StatusCode::OK,
        "in flight: completed"
    );
    let stopped = drain.await.unwrap();
    assert_eq!(stopped.completed(), 2);
    assert_eq!(stopped.cut_off(), 0);
    assert_eq!(upstream.count(), 2);
    // After the drain, nothing listens.
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err());
}

#[tokio::test]
async fn a_request_still_running_at_the_grace_deadline_is_cut_off_and_counted() {
    let upstream = Upstream::start_with(Reply {
        delay: Duration::from_secs(3),
        ..Reply::default()
    })
    .await;
    let yaml = Yaml::new()
        .top("workers: 2\nruntime: per_core\n")
        .top("limits:\n  drain_delay: 0s\n  shutdown_grace: 300ms\n")
        .routes(&lahza_route(&upstream.url()));
    let mut gw = Hookgate::start(&yaml, &[("LAHZA", "lahza-secret")]).await;
    let url = gw.url("/hooks/lahza");
    let slow = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(
            url.trim_start_matches("http://").split('/').next().unwrap(),
        )
        .await
        .unwrap();
        let sig = &signed()[0].1;
        let req = format!(
            "POST /hooks/lahza HTTP/1.1\r\nHost: a\r\nx-lahza-signature: {sig}\r\nContent-Length: {}\r\n\r\n{}",
            BODY.len(),
            String::from_utf8_lossy(BODY)
        );
        tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes())
            .await
            .unwrap();
        read_until_close(&mut s, Duration::from_secs(10)).await
    });
    eventually("in flight", || {
        gw.counter("hookgate_requests_in_flight", &[]) == 1.0
    })
    .await;
    let started = std::time::Instant::now();
    let stopped = gw.take_running().drain(std::future::pending()).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "grace, not the upstream's 3 s"
    );
    assert_eq!(stopped.cut_off(), 1);
    assert_eq!(stopped.completed(), 0);
    let answer = slow.await.unwrap();
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "cut off, never answered 200: {answer}"
    );
}
