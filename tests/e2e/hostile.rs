//! Hostile requests: what an attacker would send, one test per class. Each asserts what the
//! upstream app received, byte for byte, or that it received nothing.
//!
//! Classes: a signed value moved between parts (signature confusion), a header the scheme
//! reads sent twice, path encodings, Host, client-address headers, request smuggling and
//! desync over HTTP/1.1, HTTP/2 field rules, memory floods, and refusals the client can read.

use std::time::Duration;

use base64::Engine as _;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const LISTRAK_SECRET: &str = "LTK-secret-99";
const ACME_SECRET: &str = "acme-secret";

/// One route per scheme under test, all in front of `upstream`.
fn routes(upstream: &str) -> String {
    format!(
        r#"  - name: listrak
    path: /hooks/listrak
    upstream: {upstream}
    verify: {{ preset: listrak, secret: "${{LISTRAK}}" }}
    replay: {{}}
  - name: acme
    path: /hooks/acme
    upstream: {upstream}
    verify:
      signature: {{ header: X-Acme-Signature, prefix: "sha256=", encoding: hex }}
      message: [{{ header: X-Acme-Timestamp }}, {{ literal: "." }}, body]
      timestamp: {{ header: X-Acme-Timestamp, unit: seconds, tolerance: 5m }}
      secret: "${{ACME}}"
  - name: stripe
    path: /hooks/stripe
    upstream: {upstream}
    verify: {{ preset: stripe, secret: "${{STRIPE}}" }}
  - name: webhooks
    path: /hooks/standard
    upstream: {upstream}
    verify: {{ preset: standard-webhooks, secret: "${{STD}}" }}
    replay: {{}}
  - name: github
    path: /hooks/github
    upstream: {upstream}
    verify: {{ preset: github, secret: "${{GITHUB}}" }}
    replay: {{}}
  - name: lahza
    path: /hooks/lahza/*
    upstream: {upstream}
    verify: {{ preset: lahza, secret: "${{LAHZA}}" }}
"#
    )
}

const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ENV: &[(&str, &str)] = &[
    ("LISTRAK", LISTRAK_SECRET),
    ("ACME", ACME_SECRET),
    ("STRIPE", "whsec_stripe_test"),
    ("STD", STD_SECRET),
    ("GITHUB", "gh-secret"),
    ("LAHZA", "sk_live_lahza_8c2e"),
];

async fn start(extra_top: &str) -> (Upstream, Hookgate) {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new().top(extra_top).routes(&routes(&upstream.url()));
    let gw = Hookgate::start(&yaml, ENV).await;
    (upstream, gw)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn lahza_sig(body: &[u8]) -> String {
    hex::encode(hmac_sha256("sk_live_lahza_8c2e", &[body]))
}

fn acme_headers(ts: &str, body: &[u8]) -> Vec<(String, String)> {
    let mac = hmac_sha256(ACME_SECRET, &[ts.as_bytes(), b".", body]);
    vec![
        ("X-Acme-Timestamp".into(), ts.into()),
        (
            "X-Acme-Signature".into(),
            format!("sha256={}", hex::encode(mac)),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// 1. A signed value has one meaning

/// Listrak signs body + LTK-Timestamp with no separator. A captured request whose body ends in
/// `0`, re-sent with that zero moved to the front of the timestamp, has the same MAC input; it
/// must not reach the app, nor take the genuine event's replay key.
#[tokio::test]
async fn a_digit_moved_from_the_body_into_a_listrak_timestamp_is_refused() {
    let (upstream, gw) = start("").await;
    let url = gw.url("/hooks/listrak");
    let ts = now_unix().to_string();
    let body = br#"{"event":"order","amount":100}0"#;
    let mac = hmac_sha256(LISTRAK_SECRET, &[body, ts.as_bytes()]);
    let sig = b64(&mac);

    let moved_ts = format!("0{ts}");
    let shorter = &body[..body.len() - 1];
    let answer = post(
        &url,
        &[("LTK-Timestamp", &moved_ts), ("LTK-HmacSignature", &sig)],
        shorter,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(gw.outcome("listrak", "timestamp_malformed"), 1.0);
    assert_eq!(
        upstream.count(),
        0,
        "the altered body never reached the app"
    );

    // The genuine delivery still goes through: the altered copy did not take its key.
    let answer = post(
        &url,
        &[("LTK-Timestamp", &ts), ("LTK-HmacSignature", &sig)],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let got = upstream.received();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], &body[..]);
    assert_eq!(got[0].headers["ltk-timestamp"], ts.as_str());
    gw.shutdown().await;
}

#[tokio::test]
async fn non_canonical_timestamps_are_refused_however_they_are_padded() {
    let (upstream, gw) = start("").await;
    let url = gw.url("/hooks/acme");
    let now = now_unix();
    for ts in [
        format!("0{now}"),
        format!(" {now}"),
        format!("+{now}"),
        format!("{now}.0"),
    ] {
        let headers = acme_headers(&ts, b"{}");
        let answer = post(&url, &as_refs(&headers), b"{}").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{ts:?}");
    }
    assert_eq!(upstream.count(), 0);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. A header the scheme reads is read once

#[tokio::test]
async fn a_second_copy_of_a_signed_header_is_refused() {
    let (upstream, gw) = start("").await;
    let now = now_unix().to_string();
    let body = br#"{"id":"evt_1"}"#;

    // The first copy genuine and signed, the second `1`: the app must never get `1`.
    let mut headers = acme_headers(&now, body);
    headers.push(("X-Acme-Timestamp".into(), "1".into()));
    let answer = post(&gw.url("/hooks/acme"), &as_refs(&headers), body).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.outcome("acme", "header_repeated"), 1.0);

    // Listrak's timestamp twice.
    let mac = hmac_sha256(LISTRAK_SECRET, &[body, now.as_bytes()]);
    let answer = post(
        &gw.url("/hooks/listrak"),
        &[
            ("LTK-Timestamp", &now),
            ("LTK-Timestamp", "1"),
            ("LTK-HmacSignature", &b64(&mac)),
        ],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.outcome("listrak", "header_repeated"), 1.0);

    // Standard Webhooks: webhook-id (signed, and the replay key) and webhook-timestamp.
    let key = base64::engine::general_purpose::STANDARD
        .decode(STD_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let signed = [b"msg_1" as &[u8], b".", now.as_bytes(), b".", body].concat();
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&key).unwrap();
    hmac::Mac::update(&mut mac, &signed);
    let sig = format!("v1,{}", b64(&hmac::Mac::finalize(mac).into_bytes()));
    for (name, extra) in [("webhook-id", "msg_2"), ("webhook-timestamp", "1")] {
        let mut h = vec![
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", now.as_str()),
            ("webhook-signature", sig.as_str()),
        ];
        h.push((name, extra));
        let answer = post(&gw.url("/hooks/standard"), &h, body).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name}");
    }
    assert_eq!(gw.outcome("webhooks", "header_repeated"), 2.0);

    // GitHub's X-GitHub-Delivery is not signed but is the replay key: read once too.
    let gh = format!("sha256={}", hex::encode(hmac_sha256("gh-secret", &[body])));
    let answer = post(
        &gw.url("/hooks/github"),
        &[
            ("x-hub-signature-256", &gh),
            ("x-github-delivery", "d-1"),
            ("x-github-delivery", "d-2"),
        ],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.outcome("github", "header_repeated"), 1.0);
    assert_eq!(upstream.count(), 0);

    // The same requests with each header once are delivered as sent.
    let answer = post(
        &gw.url("/hooks/standard"),
        &[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &now),
            ("webhook-signature", &sig),
        ],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let got = upstream.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers.get_all("webhook-id").iter().count(), 1);
    assert_eq!(&got[0].body[..], body);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_repeated_entry_in_stripe_signature_is_refused() {
    let (upstream, gw) = start("").await;
    let now = now_unix().to_string();
    let body = br#"{"id":"evt_1"}"#;
    let mac = hmac_sha256("whsec_stripe_test", &[now.as_bytes(), b".", body]);
    let good = format!("t={now},v1={}", hex::encode(mac));
    let answer = post(
        &gw.url("/hooks/stripe"),
        &[("stripe-signature", &format!("{good},t=1"))],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.outcome("stripe", "signature_malformed"), 1.0);
    assert_eq!(upstream.count(), 0);
    let answer = post(
        &gw.url("/hooks/stripe"),
        &[("stripe-signature", &good)],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        upstream.received()[0].headers["stripe-signature"],
        good.as_str()
    );
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Paths an app could read another way

/// A signed request to `/hooks/lahza/<path>`, as raw HTTP/1.1.
fn lahza_raw(path: &str, host: &str) -> Vec<u8> {
    let body = b"{}";
    format!(
        "POST /hooks/lahza/{path} HTTP/1.1\r\nHost: {host}\r\nx-lahza-signature: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
        lahza_sig(body)
    )
    .into_bytes()
}

#[tokio::test]
async fn encoded_semicolons_double_and_legacy_encodings_are_bad_paths() {
    let (upstream, gw) = start("").await;
    let paths = [
        "x/..%3b/admin",
        "x/..%3Bfoo/admin",
        "%252e%252e/admin",
        "x%252fadmin",
        "%c0%ae%c0%ae/admin",
        "%C1%9C",
        "%e0%80%ae%e0%80%ae/admin",
        "%u002e%u002e/admin",
        "x%zz",
        "x%00",
        // Nested double encoding, control characters, padded dot segments (review round 2).
        "%25%32%65%25%32%65/admin",
        "%25%33%62",
        "a%0d%0aX-Injected:%201",
        "x%20/..%20/admin",
        ".../admin",
    ];
    for path in paths {
        let answer = raw(
            gw.addr,
            &lahza_raw(path, "hooks.example"),
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("not in normal form"), "{path}: {answer}");
    }
    assert_eq!(gw.outcome("", "bad_path"), paths.len() as f64);
    assert_eq!(upstream.count(), 0);
    // A plain encoded character in a segment is still fine, and reaches the app as sent.
    let answer = raw(
        gw.addr,
        &lahza_raw("caf%C3%A9;v=1", "hooks.example"),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        upstream.received()[0].path_and_query,
        "/hooks/lahza/caf%C3%A9;v=1"
    );
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Host (RFC 9112 §3.2)

#[tokio::test]
async fn http1_host_must_be_one_valid_value_matching_the_target() {
    let (upstream, gw) = start("").await;
    let sig = lahza_sig(b"{}");
    let heads = [
        // no Host
        format!("POST /hooks/lahza/a HTTP/1.1\r\nx-lahza-signature: {sig}\r\n"),
        // two
        format!("POST /hooks/lahza/a HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nx-lahza-signature: {sig}\r\n"),
        // invalid values
        format!("POST /hooks/lahza/a HTTP/1.1\r\nHost: user@a.example\r\nx-lahza-signature: {sig}\r\n"),
        format!("POST /hooks/lahza/a HTTP/1.1\r\nHost: a.example/../x\r\nx-lahza-signature: {sig}\r\n"),
        format!("POST /hooks/lahza/a HTTP/1.1\r\nHost: a.example:80:81\r\nx-lahza-signature: {sig}\r\n"),
        // absolute-form naming another host
        format!("POST http://b.example/hooks/lahza/a HTTP/1.1\r\nHost: a.example\r\nx-lahza-signature: {sig}\r\n"),
    ];
    for head in &heads {
        let request = format!("{head}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}");
        let answer = raw(gw.addr, request.as_bytes(), Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
    }
    assert_eq!(gw.outcome("", "bad_host"), heads.len() as f64);
    assert_eq!(upstream.count(), 0);

    // Absolute-form with the same authority: forwarded in origin-form with that Host.
    let request = format!(
        "POST http://a.example/hooks/lahza/a HTTP/1.1\r\nHost: a.example\r\nx-lahza-signature: {sig}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let answer = raw(gw.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = upstream.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path_and_query, "/hooks/lahza/a");
    assert_eq!(got[0].headers["host"], "a.example");
    assert_eq!(got[0].headers.get_all("host").iter().count(), 1);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Client-address headers and Connection

#[tokio::test]
async fn an_untrusted_peers_forwarded_and_x_real_ip_never_reach_the_app() {
    let (upstream, gw) = start("").await;
    let body = b"{}";
    let sig = lahza_sig(body);
    let answer = post(
        &gw.url("/hooks/lahza/a"),
        &[
            ("x-lahza-signature", &sig),
            ("forwarded", "for=203.0.113.10;proto=https"),
            ("x-real-ip", "203.0.113.10"),
            ("x-forwarded-for", "203.0.113.10"),
            ("true-client-ip", "203.0.113.10"),
            ("cf-connecting-ip", "203.0.113.10"),
            ("x-client-ip", "203.0.113.10"),
            // What CGI-style servers fold into X-Forwarded-For and X-Real-IP.
            ("x_forwarded_for", "203.0.113.10"),
            ("x-real_ip", "203.0.113.10"),
        ],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let got = &upstream.received()[0];
    for name in [
        "forwarded",
        "x-real-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-client-ip",
        "x_forwarded_for",
        "x-real_ip",
    ] {
        assert!(got.headers.get(name).is_none(), "{name}: {:?}", got.headers);
    }
    assert_eq!(got.headers["x-forwarded-for"], "127.0.0.1");

    // An underscore twin of a signed header never reaches the app as a second copy.
    let now = now_unix().to_string();
    let mut headers = acme_headers(&now, body);
    headers.push(("X-Acme_Timestamp".into(), "1".into()));
    let answer = post(&gw.url("/hooks/acme"), &as_refs(&headers), body).await;
    assert_eq!(answer.status, StatusCode::OK);
    let got = &upstream.received()[1];
    assert_eq!(got.headers["x-acme-timestamp"], now.as_str());
    assert!(
        got.headers.get("x-acme_timestamp").is_none(),
        "{:?}",
        got.headers
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn naming_a_relied_on_header_in_connection_changes_nothing() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top("client_ip:\n  trusted_proxies: [127.0.0.1/32]\n")
        .routes(&routes(&upstream.url()))
        .replace(
            "    verify: { preset: lahza",
            "    allow_ips: [203.0.113.0/24]\n    verify: { preset: lahza",
        );
    let gw = Hookgate::start(&yaml, ENV).await;
    let body = b"{}";
    let sig = lahza_sig(body);
    // The allowlist decision used the trusted proxy's X-Forwarded-For; the app must get the
    // same chain, whatever Connection names.
    let answer = post(
        &gw.url("/hooks/lahza/a"),
        &[
            ("x-lahza-signature", &sig),
            ("x-forwarded-for", "203.0.113.10"),
            ("x-real-ip", "203.0.113.10"),
            (
                "connection",
                "x-forwarded-for, x-real-ip, x-lahza-signature, x-private",
            ),
            ("x-private", "1"),
        ],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let got = &upstream.received()[0];
    assert_eq!(got.headers["x-forwarded-for"], "203.0.113.10, 127.0.0.1");
    assert_eq!(
        got.headers["x-real-ip"], "203.0.113.10",
        "a trusted proxy's, kept"
    );
    assert_eq!(got.headers["x-lahza-signature"], sig.as_str());
    assert!(
        got.headers.get("x-private").is_none(),
        "other named headers still go"
    );
    assert!(got.headers.get("connection").is_none());

    // A signed header named in Connection reaches the app as verified.
    let now = now_unix().to_string();
    let mut headers = acme_headers(&now, body);
    headers.push(("Connection".into(), "X-Acme-Timestamp".into()));
    let answer = post(&gw.url("/hooks/acme"), &as_refs(&headers), body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        upstream.received()[1].headers["x-acme-timestamp"],
        now.as_str()
    );
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Request smuggling and desync over HTTP/1.1 (these already held; kept as regressions)

#[tokio::test]
async fn ambiguous_framing_is_refused_and_nothing_is_smuggled() {
    let (upstream, gw) = start("").await;
    let sig = lahza_sig(b"{}");
    let smuggled = "POST /hooks/lahza/evil HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    let cases = [
        // CL.TE
        format!("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        // TE.CL
        format!("Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{smuggled}"),
        // obfuscated Transfer-Encoding
        "Transfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_string(),
        "Transfer-Encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_string(),
        // a coding besides chunked: would reach the app still coded, under Content-Length
        "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_string(),
        "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_string(),
        // two different Content-Lengths
        "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x".to_string(),
        // chunk-size tricks
        "Transfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n".to_string(),
        format!("Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\nX: 1{smuggled}"),
        "Transfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n".to_string(),
    ];
    for case in &cases {
        let request = format!(
            "POST /hooks/lahza/a HTTP/1.1\r\nHost: a\r\nx-lahza-signature: {sig}\r\n{case}"
        );
        let answer = raw(gw.addr, request.as_bytes(), Duration::from_millis(800)).await;
        // Each answer is the only one on its connection: nothing after the first request
        // is ever read as a second one.
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{case:?}: {answer}");
        // A 200 is only ever the signed `{}` read as chunks (below); with Content-Length
        // too, hyper follows Transfer-Encoding (RFC 9112 §6.1) and closes the connection.
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 4"),
            "{case:?}: {answer}"
        );
        let head = case.split("\r\n\r\n").next().unwrap_or_default();
        if answer.starts_with("HTTP/1.1 200") && head.contains("Content-Length") {
            assert!(
                answer.to_ascii_lowercase().contains("connection: close"),
                "{answer}"
            );
        }
    }
    // `identity` then `chunked`, and `gzip, chunked`: refused by the gateway itself.
    assert_eq!(gw.outcome("", "bad_framing"), 2.0);
    let got = upstream.received();
    for r in &got {
        assert_eq!(r.path_and_query, "/hooks/lahza/a");
        assert_eq!(&r.body[..], b"{}", "only the signed chunked body");
        assert!(r.headers.get("transfer-encoding").is_none());
        assert_eq!(r.headers["content-length"], "2");
    }
    gw.shutdown().await;
}

/// A request line inside a body is body: forwarded as bytes, never run as a request.
#[tokio::test]
async fn a_request_inside_a_body_stays_body() {
    let (upstream, gw) = start("").await;
    let inner = "POST /hooks/lahza/evil HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    let sig = lahza_sig(inner.as_bytes());
    let request = format!(
        "POST /hooks/lahza/a HTTP/1.1\r\nHost: a\r\nx-lahza-signature: {sig}\r\nContent-Length: {}\r\n\r\n{inner}",
        inner.len()
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Nothing more comes back on the connection: there was one request.
    let more = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
    assert!(more.is_err() || more.unwrap().unwrap_or(0) == 0);
    let got = upstream.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path_and_query, "/hooks/lahza/a");
    assert_eq!(&got[0].body[..], inner.as_bytes());
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4b. HTTP/2 field rules (RFC 9113 §8.2.1, §8.3.1), sent as raw frames

/// An HPACK literal header field without indexing, new name, no Huffman coding: the name
/// goes on the wire exactly as given (upper case included), which no HTTP/2 library sends.
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    assert!(name.len() < 127 && value.len() < 127);
    out.push(0x00);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Sends one HTTP/2 request made of these header fields and a body over TLS; returns the
/// frame types the server sent back on stream 1 or the connection (HEADERS 1, RST_STREAM 3,
/// GOAWAY 7) within a second.
async fn h2_raw(
    addr: std::net::SocketAddr,
    tls: &crate::tls::Tls,
    fields: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = crate::tls::connector(tls, b"h2")
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let mut block = Vec::new();
    for (k, v) in fields {
        hpack_literal(&mut block, k, v);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(4, 0, 0, &[])); // SETTINGS
    out.extend(h2_frame(1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    out.extend(h2_frame(0, 0x1, 1, body)); // DATA, END_STREAM
    s.write_all(&out).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len = ((buf[0] as usize) << 16) | ((buf[1] as usize) << 8) | buf[2] as usize;
            if buf.len() < 9 + len {
                break;
            }
            let kind = buf[3];
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            if (stream == 1 && matches!(kind, 1 | 3)) || kind == 7 {
                seen.push(kind);
            }
            buf.drain(..9 + len);
        }
        if seen.iter().any(|k| matches!(k, 3 | 7)) || seen.contains(&1) {
            break;
        }
    }
    seen
}

#[tokio::test]
async fn http2_host_must_agree_with_authority_and_names_must_be_lower_case() {
    let tls = crate::tls::make_cert("hostile-h2");
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .listeners(&crate::tls::tls_listener(&tls))
        .routes(&routes(&upstream.url()));
    let gw = Hookgate::start(&yaml, ENV).await;
    let body = b"{}";
    let sig = lahza_sig(body);
    let request = |extra: &[(&'static str, &'static str)]| {
        let mut f = vec![
            (":method", "POST"),
            (":scheme", "https"),
            (":path", "/hooks/lahza/a"),
            (":authority", "localhost"),
        ];
        f.extend_from_slice(extra);
        f
    };
    let sig_field: &'static str = Box::leak(sig.clone().into_boxed_str());

    // The control: a well-formed request is answered and forwarded.
    let seen = h2_raw(
        gw.addr,
        &tls,
        &request(&[("x-lahza-signature", sig_field)]),
        body,
    )
    .await;
    assert_eq!(seen, [1], "HEADERS back");
    assert_eq!(upstream.count(), 1);
    assert_eq!(upstream.received()[0].headers["host"], "localhost");

    // `host` disagreeing with `:authority`: malformed, 400 bad_host.
    let seen = h2_raw(
        gw.addr,
        &tls,
        &request(&[("host", "evil.example"), ("x-lahza-signature", sig_field)]),
        body,
    )
    .await;
    assert_eq!(seen, [1]);
    assert_eq!(gw.outcome("", "bad_host"), 1.0);

    // An upper-case field name: malformed (RFC 9113 §8.2.1); the stream or connection is
    // reset and no request is made of it.
    let seen = h2_raw(
        gw.addr,
        &tls,
        &request(&[("X-Lahza-Signature", sig_field)]),
        body,
    )
    .await;
    assert!(
        seen.iter().any(|k| matches!(k, 3 | 7)),
        "reset or GOAWAY, got {seen:?}"
    );
    assert!(!seen.contains(&1), "no response: no request was made of it");
    assert_eq!(upstream.count(), 1, "nothing more reached the app");
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Memory under unauthenticated floods

/// A lahza route alone, in front of `upstream`.
fn lahza_only(upstream: &str) -> String {
    format!(
        "  - name: lahza\n    path: /hooks/lahza\n    upstream: {upstream}\n    verify: {{ preset: lahza, secret: \"${{LAHZA}}\" }}\n"
    )
}

/// A request with `head` (ending in its blank line) and `body` sent in chunks of `size`.
fn chunked(head: &str, body: &[u8], size: usize) -> Vec<u8> {
    let mut req = head.as_bytes().to_vec();
    for c in body.chunks(size) {
        req.extend(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend(c);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    req
}

/// A connection from another loopback address, as another sender would have.
async fn connect_from(addr: std::net::SocketAddr, source: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends a request on a fresh connection from `source` and returns the status line.
async fn status_from(addr: std::net::SocketAddr, source: &str, request: &[u8]) -> String {
    let mut s = connect_from(addr, source).await;
    s.write_all(request).await.unwrap();
    let answer = read_until_close(&mut s, Duration::from_secs(5)).await;
    answer.lines().next().unwrap_or_default().to_owned()
}

fn lahza_post(body: &[u8], framing: &str) -> String {
    format!(
        "POST /hooks/lahza HTTP/1.1\r\nHost: a\r\nx-lahza-signature: {}\r\n{framing}Connection: close\r\n\r\n",
        lahza_sig(body)
    )
}

#[tokio::test]
async fn bodies_over_the_memory_budget_get_503_with_retry_after() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top("limits:\n  max_body_bytes: 4096\n  max_buffered_body_bytes: 6000\n")
        .routes(&lahza_only(&upstream.url()));
    let gw = Hookgate::start(&yaml, ENV).await;
    // A stalled 4000-byte body holds the 3999 bytes it sent.
    let big = vec![b'x'; 4000];
    let mut stalled = connect_from(gw.addr, "127.0.0.2").await;
    let head = lahza_post(&big, "Content-Length: 4000\r\n");
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&big[..3999]).await.unwrap();
    eventually("the stalled body is charged what it sent", || {
        gw.counter("hookgate_body_buffered_bytes", &[]) == 3999.0
    })
    .await;

    // Another sender's 4000 declared bytes cannot fit: 503 with Retry-After, unread.
    let mut declared = lahza_post(&big, "Content-Length: 4000\r\n").into_bytes();
    declared.extend(&big);
    let mut s = connect_from(gw.addr, "127.0.0.3").await;
    s.write_all(&declared).await.unwrap();
    let answer = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 5"),
        "{answer}"
    );
    assert_eq!(gw.outcome("lahza", "body_budget_full"), 1.0);
    // A chunked body is charged as it arrives, and refused when a chunk would go over.
    let req = chunked(
        &lahza_post(&big, "Transfer-Encoding: chunked\r\n"),
        &big,
        1000,
    );
    assert_eq!(
        status_from(gw.addr, "127.0.0.4", &req).await,
        "HTTP/1.1 503 Service Unavailable"
    );
    assert_eq!(gw.outcome("lahza", "body_budget_full"), 2.0);
    assert_eq!(upstream.count(), 0);

    // The stalled sender finishes: it is delivered, and the budget is free again.
    stalled.write_all(&big[3999..]).await.unwrap();
    let mut buf = [0u8; 12];
    stalled.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    eventually("budget given back", || {
        gw.counter("hookgate_body_buffered_bytes", &[]) == 0.0
    })
    .await;
    assert_eq!(
        status_from(gw.addr, "127.0.0.3", &declared).await,
        "HTTP/1.1 200 OK"
    );
    let got = upstream.received();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.body[..] == big[..]));
    gw.shutdown().await;
}

/// The hostile review held the whole budget with request heads alone (256 connections, each
/// declaring 1 MiB and sending nothing): heads hold nothing now, and what one address does
/// send is capped at its share, so another sender is still served.
#[tokio::test]
async fn one_address_cannot_starve_the_budget_with_heads_or_bodies() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top("limits:\n  max_body_bytes: 4096\n  max_buffered_body_bytes: 65536\n")
        .routes(&lahza_only(&upstream.url()));
    let gw = Hookgate::start(&yaml, ENV).await;
    let big = vec![b'x'; 4000];
    let head = lahza_post(&big, "Content-Length: 4000\r\n");
    let mut attacker = Vec::new();
    for _ in 0..40 {
        let mut s = connect_from(gw.addr, "127.0.0.9").await;
        s.write_all(head.as_bytes()).await.unwrap();
        attacker.push(s);
    }
    eventually("40 heads in", || {
        gw.counter("hookgate_requests_in_flight", &[]) == 40.0
    })
    .await;
    assert_eq!(
        gw.counter("hookgate_body_buffered_bytes", &[]),
        0.0,
        "heads hold nothing"
    );
    // Bodies from the attacker: it gets one share (one 4096-byte body at most), no more.
    attacker[0].write_all(&big[..3999]).await.unwrap();
    // Charged before the second body arrives; otherwise the second may take the share
    // first and be served (the order is the race, not the cap).
    eventually("the first body is charged", || {
        gw.counter("hookgate_body_buffered_bytes", &[]) == 3999.0
    })
    .await;
    attacker[1].write_all(&big).await.unwrap();
    let mut second = [0u8; 12];
    attacker[1].read_exact(&mut second).await.unwrap();
    assert_eq!(&second, b"HTTP/1.1 503", "over its share");
    // Another sender is served meanwhile.
    let mut request = lahza_post(&big, "Content-Length: 4000\r\n").into_bytes();
    request.extend(&big);
    assert_eq!(
        status_from(gw.addr, "127.0.0.77", &request).await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(upstream.count(), 1);
    drop(attacker);
    gw.shutdown().await;
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_connections() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top("limits:\n  max_connections_per_ip: 2\n")
        .routes(&lahza_only(&upstream.url()));
    let gw = Hookgate::start(&yaml, ENV).await;
    let first = TcpStream::connect(gw.addr).await.unwrap();
    let _second = TcpStream::connect(gw.addr).await.unwrap();
    eventually("two connections open", || {
        gw.counter("hookgate_connections_open", &[]) == 2.0
    })
    .await;
    // The third is closed at once, without an answer.
    let answer = raw(
        gw.addr,
        b"POST /hooks/lahza HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(answer, "");
    eventually("counted", || {
        gw.counter(
            "hookgate_connection_errors_total",
            &[("reason", "per_ip_limit")],
        ) == 1.0
    })
    .await;
    // Closing one frees its slot.
    drop(first);
    eventually("slot freed", || {
        gw.counter("hookgate_connections_open", &[]) == 1.0
    })
    .await;
    let body = b"{}";
    let answer = post(
        &gw.url("/hooks/lahza"),
        &[("x-lahza-signature", &lahza_sig(body))],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(upstream.count(), 1);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Refusals the client can read

/// Sends the whole request, then reads the answer's head, as a sender's HTTP library does.
/// A small send buffer keeps most of the body out of the kernel's buffers, so the client is
/// still sending when the gateway answers: a reset then fails the write.
async fn send_all_then_read(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(16 * 1024).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    if let Err(e) = s.write_all(request).await {
        panic!("reset while sending the body: {e}");
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            other => panic!("no answer: {other:?}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn an_oversized_body_gets_a_413_the_client_can_read() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top("limits:\n  max_body_bytes: 1024\n")
        .routes(&lahza_only(&upstream.url()));
    let gw = Hookgate::start(&yaml, ENV).await;
    let big = vec![b'a'; 1024 * 1024];
    let sig = lahza_sig(&big);

    // Chunked, refused while the client is still sending.
    let head = format!(
        "POST /hooks/lahza HTTP/1.1\r\nHost: a\r\nx-lahza-signature: {sig}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let req = chunked(&head, &big, 16 * 1024);
    let answer = send_all_then_read(gw.addr, &req).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Content-Length over the limit, without Expect: the body comes anyway.
    let mut req = format!(
        "POST /hooks/lahza HTTP/1.1\r\nHost: a\r\nx-lahza-signature: {sig}\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend(&big);
    let answer = send_all_then_read(gw.addr, &req).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // With Expect: 100-continue the client waits; it gets the 413 and sends nothing.
    let req = format!(
        "POST /hooks/lahza HTTP/1.1\r\nHost: a\r\nx-lahza-signature: {sig}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        big.len()
    );
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert_eq!(gw.outcome("lahza", "body_too_large"), 3.0);
    assert_eq!(upstream.count(), 0);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Signature confusion and protocol upgrades (these already held; kept as regressions)

#[tokio::test]
async fn a_signature_does_not_transfer_between_routes_entries_or_messages() {
    let (upstream, gw) = start("").await;
    let body = br#"{"id":"evt_1"}"#;
    let now = now_unix().to_string();
    // A valid Lahza MAC presented to GitHub's route (another secret).
    let lahza = lahza_sig(body);
    let answer = post(
        &gw.url("/hooks/github"),
        &[("x-hub-signature-256", &format!("sha256={lahza}"))],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.outcome("github", "signature_mismatch"), 1.0);
    // Stripe: a valid MAC under an entry name that is not v1 is no candidate.
    let mac = hex::encode(hmac_sha256(
        "whsec_stripe_test",
        &[now.as_bytes(), b".", body],
    ));
    let answer = post(
        &gw.url("/hooks/stripe"),
        &[("stripe-signature", &format!("t={now},v0={mac}"))],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.outcome("stripe", "signature_malformed"), 1.0);
    // Stripe: the same MAC with another timestamp.
    let other = (now.parse::<u64>().unwrap() - 1).to_string();
    let answer = post(
        &gw.url("/hooks/stripe"),
        &[("stripe-signature", &format!("t={other},v1={mac}"))],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // Listrak: a MAC over the body alone, without the timestamp it must cover.
    let body_only = b64(&hmac_sha256(LISTRAK_SECRET, &[body]));
    let answer = post(
        &gw.url("/hooks/listrak"),
        &[("LTK-Timestamp", &now), ("LTK-HmacSignature", &body_only)],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // A truncated MAC (a prefix of the right one) is malformed, never a partial match.
    let answer = post(
        &gw.url("/hooks/lahza/a"),
        &[("x-lahza-signature", &lahza[..32])],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.outcome("lahza", "signature_malformed"), 1.0);
    assert_eq!(upstream.count(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn an_upgrade_request_is_forwarded_as_a_plain_request_or_not_at_all() {
    let (upstream, gw) = start("").await;
    let body = b"{}";
    let sig = lahza_sig(body);
    for upgrade in ["h2c", "websocket"] {
        let request = format!(
            "POST /hooks/lahza/a HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nx-lahza-signature: {sig}\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        let answer = raw(gw.addr, request.as_bytes(), Duration::from_millis(800)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{upgrade}: {answer}");
        // No 101 anywhere in the exchange (a random request id may hold the digits 101).
        assert!(!answer.contains(" 101 "), "{answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("switching protocols"),
            "{answer}"
        );
    }
    // Unsigned, the upgrade reaches nothing.
    let request = "GET /hooks/lahza/a HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let answer = raw(gw.addr, request.as_bytes(), Duration::from_millis(800)).await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let got = upstream.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert!(r.headers.get("upgrade").is_none(), "{:?}", r.headers);
        assert!(
            r.headers.get("http2-settings").is_none(),
            "named in Connection: dropped"
        );
        assert!(r.headers.get("connection").is_none());
        assert_eq!(&r.body[..], body);
    }
    gw.shutdown().await;
}
