//! Everything the gateway must refuse: each case asserts the status, that the upstream received
//! nothing, and that the matching outcome counter moved.

use std::time::Duration;

use http::StatusCode;

use crate::support::*;

const BODY: &[u8] = br#"{"event":"charge.success","data":{"id":302961,"amount":10000}}"#;

/// The route most tests here use, in front of `upstream`.
fn lahza_route(upstream: &str) -> String {
    format!(
        "  - name: lahza\n    path: /hooks/lahza\n    upstream: {upstream}\n    verify:\n      preset: lahza\n      secret: \"${{LAHZA_SECRET}}\"\n"
    )
}

const ENV: &[(&str, &str)] = &[("LAHZA_SECRET", "sk_live_lahza_8c2e")];

fn good_sig(body: &[u8]) -> String {
    hex::encode(hmac_sha256("sk_live_lahza_8c2e", &[body]))
}

#[tokio::test]
async fn bad_signatures_are_refused_with_401_and_never_forwarded() {
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(&Yaml::new().routes(&lahza_route(&upstream.url())), ENV).await;
    let url = gw.url("/hooks/lahza");
    let good = good_sig(BODY);
    let wrong_secret = hex::encode(hmac_sha256("not-the-secret", &[BODY]));
    let tampered = br#"{"event":"charge.success","data":{"id":302961,"amount":1}}"#;
    // (what, headers, body, expected outcome label)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a [u8], &'a str);
    let cases: Vec<Case> = vec![
        (
            "tampered body",
            vec![("x-lahza-signature", &good)],
            tampered,
            "signature_mismatch",
        ),
        (
            "wrong secret",
            vec![("x-lahza-signature", &wrong_secret)],
            BODY,
            "signature_mismatch",
        ),
        ("missing header", vec![], BODY, "signature_missing"),
        (
            "wrong header",
            vec![("x-signature", &good)],
            BODY,
            "signature_missing",
        ),
        (
            "empty header",
            vec![("x-lahza-signature", "")],
            BODY,
            "signature_malformed",
        ),
        (
            "not hex",
            vec![("x-lahza-signature", "zz")],
            BODY,
            "signature_malformed",
        ),
        (
            "truncated",
            vec![("x-lahza-signature", &good[..40])],
            BODY,
            "signature_malformed",
        ),
        (
            "prefixed",
            vec![("x-lahza-signature", "sha256=abc")],
            BODY,
            "signature_malformed",
        ),
    ];
    for (what, headers, body, outcome) in &cases {
        let before = gw.outcome("lahza", outcome);
        let answer = post(&url, headers, body).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(!answer.body.is_empty(), "{what}: a reason is given");
        assert!(
            !answer.body.contains(&good),
            "{what}: never leaks the expected MAC"
        );
        assert_eq!(gw.outcome("lahza", outcome), before + 1.0, "{what}");
    }
    assert_eq!(upstream.count(), 0, "nothing unverified reached the app");
    // And the same route still forwards a good request.
    assert_eq!(
        post(&url, &[("x-lahza-signature", &good)], BODY)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(upstream.count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn routing_refusals_404_405_400() {
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(&Yaml::new().routes(&lahza_route(&upstream.url())), ENV).await;
    let sig = good_sig(BODY);
    let h = [("x-lahza-signature", sig.as_str())];
    assert_eq!(
        post(&gw.url("/nope"), &h, BODY).await.status,
        StatusCode::NOT_FOUND
    );
    let answer = send("PUT", &gw.url("/hooks/lahza"), &h, BODY).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.headers["allow"], "POST");
    let answer = raw(
        gw.addr,
        b"POST /hooks/x/../lahza HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(upstream.count(), 0);
    assert_eq!(gw.outcome("", "no_route"), 1.0);
    assert_eq!(gw.outcome("lahza", "method_not_allowed"), 1.0);
    assert_eq!(gw.outcome("", "bad_path"), 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn disallowed_ip_is_refused_even_with_a_valid_signature() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new().routes(&lahza_route(&upstream.url())).replace(
        "    verify:",
        "    allow_ips: [203.0.113.0/24, 2001:db8::/32]\n    verify:",
    );
    let gw = Hookgate::start(&yaml, ENV).await;
    let sig = good_sig(BODY);
    let answer = post(
        &gw.url("/hooks/lahza"),
        &[("x-lahza-signature", &sig)],
        BODY,
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let answer = post(
        &gw.url("/hooks/lahza"),
        &[
            ("x-lahza-signature", &sig),
            ("x-forwarded-for", "203.0.113.10"),
        ],
        BODY,
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(upstream.count(), 0);
    assert_eq!(gw.outcome("lahza", "ip_not_allowed"), 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn ip_allowlist_alone_guards_a_route_without_signatures() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new().routes(&format!(
        "  - name: open-to-loopback\n    path: /hooks/ip/*\n    upstream: {u}\n    allow_ips: [127.0.0.0/8]\n  - name: closed\n    path: /hooks/closed\n    upstream: {u}\n    allow_ips: [10.0.0.0/8]\n",
        u = upstream.url()
    ));
    let gw = Hookgate::start(&yaml, &[]).await;
    let answer = post(&gw.url("/hooks/ip/lahza"), &[], BODY).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(upstream.received()[0].path_and_query, "/hooks/ip/lahza");
    assert_eq!(
        post(&gw.url("/hooks/closed"), &[], BODY).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(upstream.count(), 1);
    assert_eq!(gw.outcome("open-to-loopback", "forwarded"), 1.0);
    assert_eq!(gw.outcome("closed", "ip_not_allowed"), 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn trusted_proxy_forwarded_for_is_used_from_the_right() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top("client_ip:\n  trusted_proxies: [127.0.0.1/32]\n")
        .routes(&lahza_route(&upstream.url()))
        .replace(
            "    verify:",
            "    allow_ips: [203.0.113.0/24]\n    verify:",
        );
    let gw = Hookgate::start(&yaml, ENV).await;
    let sig = good_sig(BODY);
    let url = gw.url("/hooks/lahza");
    let ok = post(
        &url,
        &[
            ("x-lahza-signature", &sig),
            ("x-forwarded-for", "203.0.113.10"),
        ],
        BODY,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let got = upstream.received();
    assert_eq!(got[0].headers["x-forwarded-for"], "203.0.113.10, 127.0.0.1");
    // The leftmost entry is the client's own claim; the rightmost untrusted one decides.
    let spoofed = post(
        &url,
        &[
            ("x-lahza-signature", &sig),
            ("x-forwarded-for", "203.0.113.10, 198.51.100.7"),
        ],
        BODY,
    )
    .await;
    assert_eq!(spoofed.status, StatusCode::FORBIDDEN);
    assert_eq!(upstream.count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_and_without_content_length() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top("limits:\n  max_body_bytes: 1024\n")
        .routes(&lahza_route(&upstream.url()));
    let gw = Hookgate::start(&yaml, ENV).await;
    let big = vec![b'a'; 4096];
    let sig = good_sig(&big);
    let answer = post(
        &gw.url("/hooks/lahza"),
        &[("x-lahza-signature", &sig)],
        &big,
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked, no Content-Length: the limit is enforced while reading.
    let mut req = format!(
        "POST /hooks/lahza HTTP/1.1\r\nHost: t\r\nx-lahza-signature: {sig}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in big.chunks(512) {
        req.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend(chunk);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    let answer = raw(gw.addr, &req, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Exactly at the limit is fine.
    let fits = vec![b'b'; 1024];
    let answer = post(
        &gw.url("/hooks/lahza"),
        &[("x-lahza-signature", &good_sig(&fits))],
        &fits,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(upstream.count(), 1);
    assert_eq!(upstream.received()[0].body.len(), 1024);
    assert_eq!(gw.outcome("lahza", "body_too_large"), 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_body_gets_408_and_slow_head_is_cut_off() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top("limits:\n  body_read_timeout: 300ms\n  header_read_timeout: 300ms\n")
        .routes(&lahza_route(&upstream.url()));
    let gw = Hookgate::start(&yaml, ENV).await;
    let sig = good_sig(BODY);
    let head = format!(
        "POST /hooks/lahza HTTP/1.1\r\nHost: t\r\nx-lahza-signature: {sig}\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    );
    let mut partial = head.into_bytes();
    partial.extend(&BODY[..10]);
    let answer = raw(gw.addr, &partial, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(gw.outcome("lahza", "body_timeout"), 1.0);

    // A head that never completes: the connection is closed, counted as a header timeout.
    let started = std::time::Instant::now();
    let answer = raw(
        gw.addr,
        b"POST /hooks/lahza HTTP/1.1\r\nHost: t\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed by the gateway, not the test"
    );
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    eventually("header timeout counted", || {
        gw.counter(
            "hookgate_connection_errors_total",
            &[("reason", "header_timeout")],
        ) == 1.0
    })
    .await;
    assert_eq!(upstream.count(), 0);

    // An idle keep-alive connection after a served request is closed too, but it is not a
    // client fault and is not counted as one.
    let mut full = format!(
        "POST /hooks/lahza HTTP/1.1\r\nHost: t\r\nx-lahza-signature: {sig}\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    full.extend(BODY);
    let started = std::time::Instant::now();
    let answer = raw(gw.addr, &full, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "idle connection closed"
    );
    assert_eq!(upstream.count(), 1);
    // Time for a (wrong) count to land, which the worker does after the close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gw.counter(
            "hookgate_connection_errors_total",
            &[("reason", "header_timeout")]
        ),
        1.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_down_is_502_and_upstream_too_slow_is_504() {
    let dead = dead_addr().await;
    let slow = Upstream::start_with(Reply {
        delay: Duration::from_secs(3),
        ..Reply::default()
    })
    .await;
    let yaml = Yaml::new()
        .top("limits:\n  upstream_timeout: 300ms\n")
        .routes(&format!(
            "  - name: down\n    path: /down\n    upstream: http://{dead}\n    verify: {{ preset: lahza, secret: \"${{LAHZA_SECRET}}\" }}\n  - name: slow\n    path: /slow\n    upstream: {}\n    verify: {{ preset: lahza, secret: \"${{LAHZA_SECRET}}\" }}\n",
            slow.url()
        ));
    let gw = Hookgate::start(&yaml, ENV).await;
    let sig = good_sig(BODY);
    let h = [("x-lahza-signature", sig.as_str())];
    let answer = post(&gw.url("/down"), &h, BODY).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(gw.outcome("down", "upstream_unreachable"), 1.0);
    let answer = post(&gw.url("/slow"), &h, BODY).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(gw.outcome("slow", "upstream_timeout"), 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_reach_the_app() {
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(&Yaml::new().routes(&lahza_route(&upstream.url())), ENV).await;
    let sig = good_sig(BODY);
    let req = format!(
        "POST /hooks/lahza HTTP/1.1\r\nHost: hooks.example\r\nx-lahza-signature: {sig}\r\nConnection: close, x-hop-secret, x-lahza-signature\r\nx-hop-secret: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    );
    let mut bytes = req.into_bytes();
    bytes.extend(BODY);
    let answer = raw(gw.addr, &bytes, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = &upstream.received()[0];
    assert!(got.headers.get("x-hop-secret").is_none());
    // A verified header named in Connection is still delivered: the app sees what was checked.
    assert_eq!(got.headers["x-lahza-signature"], sig.as_str());
    assert!(got.headers.get("keep-alive").is_none());
    assert_eq!(got.headers["host"], "hooks.example");
    assert_eq!(got.headers["x-forwarded-host"], "hooks.example");
    assert_eq!(&got.body[..], BODY);
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_base_path_is_prefixed_to_the_request_path() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .routes(&lahza_route(&format!("{}/app/", upstream.url())))
        .replace("path: /hooks/lahza", "path: /hooks/*");
    let gw = Hookgate::start(&yaml, ENV).await;
    let sig = good_sig(BODY);
    let answer = post(
        &gw.url("/hooks/lahza/x?attempt=2"),
        &[("x-lahza-signature", &sig)],
        BODY,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        upstream.received()[0].path_and_query,
        "/app/hooks/lahza/x?attempt=2"
    );
    gw.shutdown().await;
}

/// A body that arrives in many pieces (chunked, written with pauses) is verified over the
/// pieces in order and forwarded byte for byte; a change in the last piece is caught.
#[tokio::test]
async fn a_body_arriving_in_pieces_is_verified_and_forwarded_exactly() {
    use tokio::io::AsyncWriteExt;
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(&Yaml::new().routes(&lahza_route(&upstream.url())), ENV).await;
    let body: Vec<u8> = (0..300_000u32)
        .map(|i| b"0123456789abcdef"[(i % 16) as usize])
        .collect();
    let sig = good_sig(&body);
    let send = |body: Vec<u8>| {
        let sig = sig.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
            let head = format!(
                "POST /hooks/lahza HTTP/1.1\r\nHost: t\r\nx-lahza-signature: {sig}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            for piece in body.chunks(70_001) {
                s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await
                    .unwrap();
                s.write_all(piece).await.unwrap();
                s.write_all(b"\r\n").await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            s.write_all(b"0\r\n\r\n").await.unwrap();
            read_until_close(&mut s, Duration::from_secs(5)).await
        }
    };
    let answer = send(body.clone()).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    let got = upstream.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.len(), body.len());
    assert!(got[0].body[..] == body[..], "forwarded byte for byte");
    assert_eq!(got[0].headers["content-length"], body.len().to_string());

    let mut tampered = body.clone();
    *tampered.last_mut().unwrap() = b'X';
    let answer = send(tampered).await;
    assert!(
        answer.starts_with("HTTP/1.1 401"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_eq!(upstream.count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_route_can_have_larger_bodies_and_a_shorter_upstream_timeout_than_the_rest() {
    let upstream = Upstream::start_with(Reply {
        delay: Duration::from_millis(400),
        ..Reply::default()
    })
    .await;
    let route = |name: &str, limits: &str| {
        format!(
            "  - name: {name}\n    path: /hooks/{name}\n    upstream: {}\n    verify: {{ preset: lahza, secret: \"${{LAHZA_SECRET}}\" }}\n{limits}",
            upstream.url()
        )
    };
    let yaml = Yaml::new()
        .top("limits:\n  max_body_bytes: 1024\n")
        .routes(&format!(
            "{}{}{}",
            route("large", "    limits: { max_body_bytes: 8192 }\n"),
            route("hasty", "    limits: { upstream_timeout: 100ms }\n"),
            route("plain", "")
        ));
    let gw = Hookgate::start(&yaml, ENV).await;
    let body = vec![b'a'; 4096];
    let h = [("x-lahza-signature", good_sig(&body))];
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        post(&gw.url("/hooks/large"), &h, &body).await.status,
        StatusCode::OK
    );
    assert_eq!(
        post(&gw.url("/hooks/plain"), &h, &body).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let small = b"{}";
    let h = [("x-lahza-signature", good_sig(small))];
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        post(&gw.url("/hooks/hasty"), &h, small).await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        post(&gw.url("/hooks/plain"), &h, small).await.status,
        StatusCode::OK
    );
    assert_eq!(gw.outcome("large", "forwarded"), 1.0);
    assert_eq!(gw.outcome("plain", "body_too_large"), 1.0);
    assert_eq!(gw.outcome("hasty", "upstream_timeout"), 1.0);
    let got = upstream.received();
    assert_eq!(got.iter().filter(|r| r.body.len() == 4096).count(), 1);
    gw.shutdown().await;
}
