//! PROXY protocol listeners: the client address a trusted load balancer writes ahead of the
//! connection is the client for allowlists, logs and X-Forwarded-For; anyone else, or a
//! connection without a valid header, is closed and counted.

use std::time::Duration;

use crate::support::*;

fn config(upstream: &str, trusted: &str) -> String {
    format!(
        "listeners:\n  - addr: 127.0.0.1:0\n    proxy_protocol: true\nadmin:\n  addr: 127.0.0.1:0\nclient_ip:\n  trusted_proxies: [{trusted}]\nroutes:\n  - name: lahza\n    path: /hooks/lahza\n    upstream: {upstream}\n    allow_ips: [203.0.113.0/24]\n    verify: {{ preset: lahza, secret: \"${{LAHZA}}\" }}\n"
    )
}

const BODY: &[u8] = b"{\"id\":1}";

fn request() -> Vec<u8> {
    let sig = hex::encode(hmac_sha256("lahza-secret", &[BODY]));
    format!(
        "POST /hooks/lahza HTTP/1.1\r\nHost: a\r\nx-lahza-signature: {sig}\r\nx-forwarded-for: 203.0.113.99\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        BODY.len(),
        String::from_utf8_lossy(BODY)
    )
    .into_bytes()
}

/// A v2 header (PROXY command, TCP over IPv4) for `source`, or LOCAL.
fn v2(source: [u8; 4], local: bool) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(if local { 0x20 } else { 0x21 });
    h.push(0x11);
    h.extend(12u16.to_be_bytes());
    h.extend(source);
    h.extend([10, 0, 0, 1]);
    h.extend(51234u16.to_be_bytes());
    h.extend(443u16.to_be_bytes());
    h
}

#[tokio::test]
async fn the_address_a_trusted_balancer_sends_is_the_client() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(
        &config(&upstream.url(), "127.0.0.1/32"),
        &[("LAHZA", "lahza-secret")],
    )
    .await;
    let wait = Duration::from_secs(3);

    // v1, an allowed client.
    let mut bytes = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n".to_vec();
    bytes.extend(request());
    let answer = raw(gw.addr, &bytes, wait).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // v2, another allowed client.
    let mut bytes = v2([203, 0, 113, 8], false);
    bytes.extend(request());
    let answer = raw(gw.addr, &bytes, wait).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = upstream.received();
    assert_eq!(got.len(), 2);
    // The carried address, not the balancer's, and not what the client wrote in XFF.
    assert_eq!(got[0].headers["x-forwarded-for"], "203.0.113.7");
    assert_eq!(got[1].headers["x-forwarded-for"], "203.0.113.8");

    // A client outside the allowlist, by the carried address.
    let mut bytes = b"PROXY TCP4 198.51.100.1 10.0.0.1 51234 443\r\n".to_vec();
    bytes.extend(request());
    assert!(raw(gw.addr, &bytes, wait).await.starts_with("HTTP/1.1 403"));
    assert_eq!(gw.outcome("lahza", "ip_not_allowed"), 1.0);
    // The balancer's own connection (LOCAL): the peer is the balancer itself, a trusted
    // proxy, whose X-Forwarded-For is then believed as from any trusted proxy.
    let mut bytes = v2([0, 0, 0, 0], true);
    bytes.extend(request());
    assert!(raw(gw.addr, &bytes, wait).await.starts_with("HTTP/1.1 200"));
    assert_eq!(
        upstream.received()[2].headers["x-forwarded-for"],
        "203.0.113.99, 127.0.0.1"
    );

    // No header: closed, nothing served.
    assert_eq!(raw(gw.addr, &request(), wait).await, "");
    let mut bytes = b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n".to_vec();
    bytes.extend(request());
    assert_eq!(raw(gw.addr, &bytes, wait).await, "");
    eventually("counted", || {
        gw.counter(
            "hookgate_connection_errors_total",
            &[("reason", "proxy_protocol")],
        ) == 2.0
    })
    .await;
    assert_eq!(upstream.count(), 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_never_believed() {
    let upstream = Upstream::start().await;
    // Loopback is not a trusted proxy here.
    let gw = Gateway::start(
        &config(&upstream.url(), "10.0.0.0/8"),
        &[("LAHZA", "lahza-secret")],
    )
    .await;
    let mut bytes = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n".to_vec();
    bytes.extend(request());
    assert_eq!(raw(gw.addr, &bytes, Duration::from_secs(3)).await, "");
    eventually("counted", || {
        gw.counter(
            "hookgate_connection_errors_total",
            &[("reason", "proxy_untrusted")],
        ) == 1.0
    })
    .await;
    assert_eq!(upstream.count(), 0);
    gw.shutdown().await;
}
