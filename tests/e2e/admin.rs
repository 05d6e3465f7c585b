//! The admin listener: /metrics shows what the tests caused; /healthz and /readyz answer.

use http::StatusCode;

use crate::support::*;

#[tokio::test]
async fn metrics_endpoint_shows_the_counts_requests_caused() {
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(&seed_config(&upstream.url(), ""), &env_secrets()).await;
    let body = b"{\"type\":\"response.created\"}";
    let signed = sign_as("ltvboost", secret_of("ltvboost"), body, now_unix());
    for _ in 0..3 {
        let a = post(&gw.url("/hooks/ltvboost"), &as_refs(&signed), body).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let a = post(
        &gw.url("/hooks/ltvboost"),
        &[("x-ltvboost-signature", "sha256=00")],
        body,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    let admin = |p: &str| format!("http://{}{}", gw.admin, p);
    let scrape = send("GET", &admin("/metrics"), &[], b"").await;
    assert_eq!(scrape.status, StatusCode::OK);
    assert!(scrape.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = scrape.body;
    let v = |name: &str, labels: &[(&str, &str)]| metric_value(&text, name, labels);
    assert_eq!(
        v(
            "hookgate_requests_total",
            &[("route", "ltvboost"), ("outcome", "forwarded")]
        ),
        3.0
    );
    assert_eq!(
        v(
            "hookgate_requests_total",
            &[("route", "ltvboost"), ("outcome", "signature_malformed")]
        ),
        1.0
    );
    // Forwarded requests have their own latency series; refusals stay out of it.
    assert_eq!(
        v(
            "hookgate_forwarded_duration_seconds_count",
            &[("route", "ltvboost")]
        ),
        3.0
    );
    // Outcomes decided before routing exist under route="" only.
    assert_eq!(
        v(
            "hookgate_requests_total",
            &[("route", ""), ("outcome", "no_route")]
        ),
        0.0
    );
    assert!(!text.contains("route=\"ltvboost\",outcome=\"no_route\""));
    assert!(!text.contains("outcome=\"no_route\",route=\"ltvboost\""));
    // The process's own figures, read at the scrape.
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_virtual_memory_bytes",
    ] {
        assert!(v(name, &[]) > 0.0, "{name}");
    }
    assert!(v("process_cpu_seconds_total", &[]) >= 0.0);
    // Other routes' series exist at zero before their first request.
    assert_eq!(
        v(
            "hookgate_requests_total",
            &[("route", "listrak"), ("outcome", "forwarded")]
        ),
        0.0
    );
    assert_eq!(
        v(
            "hookgate_upstream_responses_total",
            &[("route", "ltvboost"), ("class", "2xx")]
        ),
        3.0
    );
    assert_eq!(
        v(
            "hookgate_request_duration_seconds_count",
            &[("route", "ltvboost")]
        ),
        4.0
    );
    assert_eq!(
        v(
            "hookgate_upstream_duration_seconds_count",
            &[("route", "ltvboost")]
        ),
        3.0
    );
    assert_eq!(v("hookgate_requests_in_flight", &[]), 0.0);
    assert_eq!(
        v(
            "hookgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    assert_eq!(
        send("GET", &admin("/healthz"), &[], b"").await.status,
        StatusCode::OK
    );
    assert_eq!(
        send("GET", &admin("/readyz"), &[], b"").await.status,
        StatusCode::OK
    );
    assert_eq!(
        send("GET", &admin("/nope"), &[], b"").await.status,
        StatusCode::NOT_FOUND
    );
    // The admin listener serves no webhooks, and the webhook listener no metrics.
    assert_eq!(
        send("GET", &gw.url("/metrics"), &[], b"").await.status,
        StatusCode::NOT_FOUND
    );
    gw.shutdown().await;
}

/// A sender that hangs up before the answer still leaves a trace: counted as
/// `client_closed` (nginx's 499), with the app's copy delivered all the same.
#[tokio::test]
async fn a_sender_hanging_up_mid_request_is_counted() {
    use tokio::io::AsyncWriteExt;
    let upstream = Upstream::start_with(Reply {
        delay: std::time::Duration::from_millis(800),
        ..Reply::default()
    })
    .await;
    let gw = Hookgate::start(&seed_config(&upstream.url(), ""), &env_secrets()).await;
    let body = b"{\"type\":\"response.created\"}";
    let signed = sign_as("ltvboost", secret_of("ltvboost"), body, now_unix());
    let mut request = format!(
        "POST /hooks/ltvboost HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in &signed {
        request += &format!("{k}: {v}\r\n");
    }
    request += "\r\n";
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    eventually("forwarding", || upstream.count() == 1).await;
    drop(s);
    eventually("counted as client_closed", || {
        gw.outcome("ltvboost", "client_closed") == 1.0
    })
    .await;
    assert_eq!(gw.counter("hookgate_requests_in_flight", &[]), 0.0);
    gw.shutdown().await;
}
