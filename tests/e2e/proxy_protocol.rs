//! PROXY protocol listeners: the client address a trusted load balancer writes ahead of the
//! connection is the client for allowlists, logs and X-Forwarded-For; anyone else, or a
//! connection without a valid header, is closed and counted.

use std::time::Duration;

use crate::support::*;

/// The listener every test here uses: PROXY protocol on.
const LISTENER: &str = "  - addr: 127.0.0.1:0\n    proxy_protocol: true\n";

/// A lahza route open only to clients in 203.0.113.0/24, in front of `upstream`.
fn lahza_route(upstream: &str) -> String {
    format!(
        "  - name: lahza\n    path: /hooks/lahza\n    upstream: {upstream}\n    allow_ips: [203.0.113.0/24]\n    verify: {{ preset: lahza, secret: \"${{LAHZA}}\" }}\n"
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
    let gw = Hookgate::start(
        &Yaml::new()
            .listeners(LISTENER)
            .top("client_ip:\n  trusted_proxies: [127.0.0.1/32]\n")
            .routes(&lahza_route(&upstream.url())),
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
    // The balancer's own connections (v2 LOCAL, v1 UNKNOWN): the peer is the balancer, and
    // the X-Forwarded-For on them (which an L4 balancer never writes, so the client did) is
    // not believed: the allowlist sees the balancer.
    let mut bytes = v2([0, 0, 0, 0], true);
    bytes.extend(request());
    assert!(raw(gw.addr, &bytes, wait).await.starts_with("HTTP/1.1 403"));
    let mut bytes = b"PROXY UNKNOWN\r\n".to_vec();
    bytes.extend(request());
    assert!(raw(gw.addr, &bytes, wait).await.starts_with("HTTP/1.1 403"));
    assert_eq!(gw.outcome("lahza", "ip_not_allowed"), 3.0);

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
    assert_eq!(upstream.count(), 2);
    gw.shutdown().await;
}

/// A header split after the source port (the v1 line arrives in two segments) is waited
/// for, not refused; and the carried client, not the balancer, is what
/// max_connections_per_ip counts.
#[tokio::test]
async fn split_headers_are_awaited_and_carried_clients_are_counted_per_address() {
    use tokio::io::AsyncWriteExt;
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .listeners(LISTENER)
        .top("client_ip:\n  trusted_proxies: [127.0.0.1/32]\n")
        .top("limits:\n  max_connections_per_ip: 2\n")
        .routes(&lahza_route(&upstream.url()));
    let gw = Hookgate::start(&yaml, &[("LAHZA", "lahza-secret")]).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 ")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut rest = b"443\r\n".to_vec();
    rest.extend(request());
    s.write_all(&rest).await.unwrap();
    let answer = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Three connections carrying one client: the third is closed.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        // A keep-alive request answered on it proves its header was read and the
        // connection admitted (counting open sockets would race with the header parsing).
        s.write_all(
            b"PROXY TCP4 198.51.100.1 10.0.0.1 5555 443\r\nGET /nothing HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = [0u8; 12];
        tokio::time::timeout(
            Duration::from_secs(3),
            tokio::io::AsyncReadExt::read_exact(&mut s, &mut head),
        )
        .await
        .expect("answered in time")
        .unwrap();
        assert!(head.starts_with(b"HTTP/1.1 "), "{head:?}");
        held.push(s);
    }
    eventually("two carried connections open", || {
        gw.counter("hookgate_connections_open", &[]) == 2.0
    })
    .await;
    let mut bytes = b"PROXY TCP4 198.51.100.1 10.0.0.1 5555 443\r\n".to_vec();
    bytes.extend(request());
    assert_eq!(raw(gw.addr, &bytes, Duration::from_secs(3)).await, "");
    eventually("counted", || {
        gw.counter(
            "hookgate_connection_errors_total",
            &[("reason", "per_ip_limit")],
        ) == 1.0
    })
    .await;
    drop(held);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_never_believed() {
    let upstream = Upstream::start().await;
    // Loopback is not a trusted proxy here.
    let gw = Hookgate::start(
        &Yaml::new()
            .listeners(LISTENER)
            .top("client_ip:\n  trusted_proxies: [10.0.0.0/8]\n")
            .routes(&lahza_route(&upstream.url())),
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
