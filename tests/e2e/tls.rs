//! HTTPS listeners: a certificate generated in the test, HTTP/1.1 and HTTP/2 chosen by ALPN.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::*;

pub struct Tls {
    pub dir: std::path::PathBuf,
    cert_der: rustls::pki_types::CertificateDer<'static>,
}

pub fn make_cert(tag: &str) -> Tls {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("hookgate-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.key_pair.serialize_pem()).unwrap();
    Tls {
        dir,
        cert_der: ck.cert.der().clone(),
    }
}

/// A listener on 127.0.0.1:0 serving HTTPS with `tls`'s certificate (an item of
/// [`Yaml::listeners`]).
pub fn tls_listener(tls: &Tls) -> String {
    format!(
        "  - addr: 127.0.0.1:0\n    tls:\n      cert: {}\n      key: {}\n",
        tls.dir.join("cert.pem").display(),
        tls.dir.join("key.pem").display()
    )
}

pub fn connector(tls: &Tls, alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(tls.cert_der.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// Sends one request over TLS with the given ALPN; returns status, body and negotiated ALPN.
async fn tls_post(
    gw: &Hookgate,
    tls: &Tls,
    alpn: &[u8],
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> (StatusCode, String, Option<Vec<u8>>) {
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let stream = connector(tls, alpn)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let negotiated = stream.get_ref().1.alpn_protocol().map(|p| p.to_vec());
    let mut req = Request::post(format!("https://localhost:{}/hooks/lahza", gw.addr.port()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from_static(body))).unwrap();
    let io = TokioIo::new(stream);
    let resp = if alpn == b"h2" {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut().insert(
            "host",
            format!("localhost:{}", gw.addr.port()).parse().unwrap(),
        );
        sender.send_request(req).await.unwrap()
    };
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        negotiated,
    )
}

const BODY: &[u8] = br#"{"event":"charge.success","data":{"id":1}}"#;

#[tokio::test]
async fn https_with_http1_and_http2_forwards_verified_and_refuses_tampered() {
    let tls = make_cert("h1h2");
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .listeners(&tls_listener(&tls))
        .routes(&format!(
            "  - name: lahza\n    path: /hooks/lahza\n    upstream: {}\n    verify: {{ preset: lahza, secret: \"${{LAHZA_SECRET}}\" }}\n",
            upstream.url()
        ));
    let gw = Hookgate::start(&yaml, &[("LAHZA_SECRET", "sk_live_lahza_8c2e")]).await;
    let sig = hex::encode(hmac_sha256("sk_live_lahza_8c2e", &[BODY]));
    let good = [("x-lahza-signature", sig.as_str())];
    let tampered: &[u8] = br#"{"event":"charge.success","data":{"id":2}}"#;

    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let before = upstream.count();
        let (status, body, negotiated) = tls_post(&gw, &tls, alpn, &good, BODY).await;
        assert_eq!(negotiated.as_deref(), Some(alpn));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, "accepted by app");
        assert_eq!(upstream.count(), before + 1);
        let got = upstream.received().pop().unwrap();
        assert_eq!(&got.body[..], BODY);
        assert_eq!(got.headers["x-lahza-signature"], sig.as_str());
        assert_eq!(got.headers["x-forwarded-proto"], "https");
        assert_eq!(
            got.headers["host"],
            format!("localhost:{}", gw.addr.port()).as_str()
        );

        let (status, _, _) = tls_post(&gw, &tls, alpn, &good, tampered).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            upstream.count(),
            before + 1,
            "tampered request not forwarded"
        );
    }
    assert_eq!(gw.outcome("lahza", "forwarded"), 2.0);
    assert_eq!(gw.outcome("lahza", "signature_mismatch"), 2.0);

    // A client that does not speak TLS is counted as a failed handshake.
    let answer = raw(
        gw.addr,
        b"POST /hooks/lahza HTTP/1.1\r\nHost: t\r\n\r\n",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    eventually("failed handshake counted", || {
        gw.counter(
            "hookgate_connection_errors_total",
            &[("reason", "tls_handshake")],
        ) == 1.0
    })
    .await;
    gw.shutdown().await;
}

/// A client that negotiates HTTP/2 and then says nothing must not hold a connection slot
/// forever: with `max_connections: 1`, the next client still gets served.
#[tokio::test]
async fn a_silent_http2_connection_gives_its_slot_back() {
    let tls = make_cert("h2idle");
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .listeners(&tls_listener(&tls))
        .top("limits:\n  max_connections: 1\n  header_read_timeout: 400ms\n")
        .routes(&format!(
            "  - name: lahza\n    path: /hooks/lahza\n    upstream: {}\n    verify: {{ preset: lahza, secret: \"${{LAHZA_SECRET}}\" }}\n",
            upstream.url()
        ));
    let gw = Hookgate::start(&yaml, &[("LAHZA_SECRET", "sk_live_lahza_8c2e")]).await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let silent = connector(&tls, b"h2")
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(silent.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let sig = hex::encode(hmac_sha256("sk_live_lahza_8c2e", &[BODY]));
    let next = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tls_post(&gw, &tls, b"http/1.1", &[("x-lahza-signature", &sig)], BODY),
    )
    .await
    .expect("the silent connection was closed and its slot reused");
    assert_eq!(next.0, StatusCode::OK);
    assert_eq!(upstream.count(), 1);
    drop(silent);
    gw.shutdown().await;
}

/// A certificate replaced on disk (renewed) is served on the next TLS handshake after a
/// reload, with no restart.
#[tokio::test]
async fn a_renewed_certificate_is_served_after_a_reload() {
    let old = make_cert("renew-old");
    let new = make_cert("renew-new");
    let upstream = Upstream::start().await;
    let dir = old.dir.clone();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .listeners("  - addr: 127.0.0.1:0\n    tls: { cert: cert.pem, key: key.pem }\n")
            .routes(&format!(
                "  - name: lahza\n    path: /hooks/lahza\n    upstream: {}\n    verify: {{ preset: lahza, secret_file: lahza.secret }}\n",
                upstream.url()
            )),
    )
    .unwrap();
    std::fs::write(dir.join("lahza.secret"), "sk_live_lahza_8c2e").unwrap();
    let gw = Hookgate::start_file(&config).await;
    let handshake = |tls: &Tls| {
        let connector = connector(tls, b"http/1.1");
        let addr = gw.addr;
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .is_ok()
        }
    };
    assert!(handshake(&old).await);
    assert!(
        !handshake(&new).await,
        "the new certificate is not served yet"
    );

    std::fs::copy(new.dir.join("cert.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(new.dir.join("key.pem"), dir.join("key.pem")).unwrap();
    // The same reload also adds a listener, which needs a restart: the existing listener
    // still takes its renewed certificate.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "admin:",
            "  - addr: 127.0.0.1:0
admin:",
        ),
    )
    .unwrap();
    assert!(gw.reload(&config).await);
    assert!(handshake(&new).await, "served on the next handshake");
    assert!(!handshake(&old).await);
    // The expiry metric follows the certificate in force.
    let expiry = gw.counter(
        "hookgate_tls_certificate_expiry_timestamp_seconds",
        &[(
            "listener",
            &gw.addr
                .to_string()
                .replace(&gw.addr.port().to_string(), "0"),
        )],
    );
    assert!(expiry > now_unix() as f64, "{expiry}");
    gw.shutdown().await;
}
