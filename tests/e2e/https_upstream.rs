//! HTTPS upstreams: verified against a private CA or the system's roots, with a client
//! certificate for apps that require mTLS, pooled like plain ones; a TLS failure is a 502.

use std::path::PathBuf;
use std::sync::Arc;

use http::StatusCode;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use crate::support::*;

struct Pki {
    dir: PathBuf,
    roots: rustls::RootCertStore,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
}

/// A CA, a server certificate for `localhost` and a client certificate, both signed by it,
/// written as PEM files into a directory of their own.
fn pki(tag: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("hookgate-pki-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert, key)
    };
    let (server, server_key) = leaf("localhost");
    let (client, client_key) = leaf("hookgate-client");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    Pki {
        dir,
        roots,
        server_chain: vec![server.der().clone()],
        server_key: rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
    }
}

/// The app's side: TLS with the server certificate, requiring a client certificate from
/// the CA if `mtls`.
fn app_tls(pki: &Pki, mtls: bool) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if mtls {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(pki.roots.clone()),
            provider,
        )
        .build()
        .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn route(name: &str, upstream: &str, tls: &str) -> String {
    format!(
        "  - name: {name}\n    path: /hooks/{name}\n    upstream: {upstream}\n    verify: {{ preset: lahza, secret: \"${{LAHZA}}\" }}\n{tls}"
    )
}

#[tokio::test]
async fn https_upstreams_are_verified_pooled_and_fail_as_502() {
    let pki = pki("https");
    let app = Upstream::start_tls(app_tls(&pki, false)).await;
    let mtls_app = Upstream::start_tls(app_tls(&pki, true)).await;
    let ca = pki.dir.join("ca.pem").display().to_string();
    let client = format!(
        "client_cert_file: {}, client_key_file: {}",
        pki.dir.join("client.pem").display(),
        pki.dir.join("client.key").display()
    );
    let port = app.addr.port();
    let mport = mtls_app.addr.port();
    // One worker: each worker has its own pool, and the reuse below is within one.
    let yaml = Yaml::new().top("workers: 1\n").routes(&format!(
        "{}{}{}{}{}",
        route(
            "private-ca",
            &format!("https://localhost:{port}"),
            &format!("    upstream_tls: {{ ca_file: {ca} }}\n")
        ),
        route(
            "by-ip",
            &format!("https://127.0.0.1:{port}"),
            &format!("    upstream_tls: {{ ca_file: {ca}, server_name: localhost }}\n")
        ),
        route("system-roots", &format!("https://localhost:{port}"), ""),
        route(
            "mtls",
            &format!("https://localhost:{mport}"),
            &format!("    upstream_tls: {{ ca_file: {ca}, {client} }}\n")
        ),
        route(
            "mtls-no-cert",
            &format!("https://localhost:{mport}"),
            &format!("    upstream_tls: {{ ca_file: {ca} }}\n")
        ),
    ));
    let gw = Hookgate::start(&yaml, &[("LAHZA", "lahza-secret")]).await;
    let body = b"{\"id\":1}";
    let sig = hex::encode(hmac_sha256("lahza-secret", &[body]));
    let h = [("x-lahza-signature", sig.as_str())];

    // A private CA: delivered, twice over one pooled connection.
    for _ in 0..2 {
        let answer = post(&gw.url("/hooks/private-ca"), &h, body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    let got = app.received();
    assert_eq!(got.len(), 2);
    assert_eq!(&got[0].body[..], body);
    assert_eq!(
        got[1].conn, got[0].conn,
        "the TLS connection was kept alive"
    );
    // By IP address, verifying the certificate's name given as server_name.
    assert_eq!(
        post(&gw.url("/hooks/by-ip"), &h, body).await.status,
        StatusCode::OK
    );
    // The system's roots do not know the test CA: refused, never sent.
    let answer = post(&gw.url("/hooks/system-roots"), &h, body).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(gw.outcome("system-roots", "upstream_unreachable"), 1.0);
    assert_eq!(app.count(), 3);

    // mTLS: with the client certificate delivered, without it refused by the app.
    assert_eq!(
        post(&gw.url("/hooks/mtls"), &h, body).await.status,
        StatusCode::OK
    );
    assert_eq!(mtls_app.count(), 1);
    let answer = post(&gw.url("/hooks/mtls-no-cert"), &h, body).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(mtls_app.count(), 1);
    gw.shutdown().await;
}

#[test]
fn upstream_tls_settings_are_checked_at_load() {
    let errors = |yaml: &str| match hookgate::config::compile::compile(
        yaml,
        std::path::Path::new("."),
        &|_| Some("s".into()),
    ) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    };
    let head = Yaml::new().no_admin().routes("");
    // (upstream, upstream_tls, what the error must say)
    let cases = [
        (
            "http://127.0.0.1:3000",
            "{ ca_file: ca.pem }",
            "routes[0] (r).upstream_tls: set for an http:// upstream",
        ),
        (
            "https://127.0.0.1:3000",
            "{ ca_file: /nonexistent/ca.pem }",
            "cannot read ca_file /nonexistent/ca.pem",
        ),
        // No way to turn verification off.
        (
            "https://127.0.0.1:3000",
            "{ insecure: true }",
            "unknown field `insecure`",
        ),
    ];
    for (upstream, tls, needle) in cases {
        let errs = errors(&format!(
            "{head}{}",
            route("r", upstream, &format!("    upstream_tls: {tls}\n"))
        ));
        assert!(errs[0].contains(needle), "{needle}: {errs:?}");
    }
}

/// A CA file replaced in place and reloaded: no connection made under the old CA is used
/// again (the pool is keyed by the files' contents, not their paths).
#[tokio::test]
async fn a_replaced_ca_file_does_not_keep_old_connections_after_a_reload() {
    let a = pki("reload-a");
    let b = pki("reload-b");
    let app = Upstream::start_tls(app_tls(&a, false)).await;
    let dir = a.dir.join("conf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(a.dir.join("ca.pem"), dir.join("ca.pem")).unwrap();
    std::fs::write(dir.join("lahza.secret"), "lahza-secret").unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new().top("workers: 1\n").routes(&format!(
            "  - name: app\n    path: /hooks/app\n    upstream: https://localhost:{}\n    upstream_tls: {{ ca_file: ca.pem }}\n    verify: {{ preset: lahza, secret_file: lahza.secret }}\n",
            app.addr.port()
        )),
    )
    .unwrap();
    let gw = Hookgate::start_file(&config).await;
    let body = b"{\"id\":1}";
    let sig = hex::encode(hmac_sha256("lahza-secret", &[body]));
    let h = [("x-lahza-signature", sig.as_str())];
    assert_eq!(
        post(&gw.url("/hooks/app"), &h, body).await.status,
        StatusCode::OK
    );

    std::fs::copy(b.dir.join("ca.pem"), dir.join("ca.pem")).unwrap();
    assert!(gw.reload(&config).await);
    let answer = post(&gw.url("/hooks/app"), &h, body).await;
    assert_eq!(
        answer.status,
        StatusCode::BAD_GATEWAY,
        "verified anew, under the new CA"
    );
    assert_eq!(app.count(), 1);
    gw.shutdown().await;
}
