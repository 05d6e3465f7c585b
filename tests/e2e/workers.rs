//! Several workers: per-core runtimes sharing each port through SO_REUSEPORT, and tokio's
//! shared multi-thread runtime. Both serve every connection, share one connection limit and
//! shut down cleanly.

use std::time::Duration;

use crate::support::*;

const BODY: &[u8] = br#"{"event":"charge.success","data":{"id":7}}"#;

/// Three workers of the `runtime` model.
fn workers(runtime: &str) -> String {
    format!("workers: 3\nruntime: {runtime}\n")
}

/// Two listeners, so a worker can take connections from either.
const TWO_LISTENERS: &str = "  - addr: 127.0.0.1:0\n  - addr: 127.0.0.1:0\n";

fn lahza_route(upstream: &str) -> String {
    format!(
        "  - name: lahza\n    path: /hooks/lahza\n    upstream: {upstream}\n    verify: {{ preset: lahza, secret: \"${{LAHZA_SECRET}}\" }}\n"
    )
}

const ENV: &[(&str, &str)] = &[("LAHZA_SECRET", "sk_live_lahza_8c2e")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_model_serves_all_connections_on_every_listener() {
    let sig = hex::encode(hmac_sha256("sk_live_lahza_8c2e", &[BODY]));
    for runtime in ["per_core", "shared"] {
        let upstream = Upstream::start().await;
        let gw = Hookgate::start(
            &Yaml::new()
                .listeners(TWO_LISTENERS)
                .top(&workers(runtime))
                .routes(&lahza_route(&upstream.url())),
            ENV,
        )
        .await;
        let second = format!("http://{}/hooks/lahza", gw_listen_addr(&gw, 1));
        // 40 connections (a new one per request) over both listeners, some forged.
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let url = if i % 2 == 0 {
                    gw.url("/hooks/lahza")
                } else {
                    second.clone()
                };
                let sig = if i % 5 == 0 {
                    "00".repeat(32)
                } else {
                    sig.clone()
                };
                tokio::spawn(async move {
                    post(&url, &[("x-lahza-signature", &sig)], BODY)
                        .await
                        .status
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap().as_u16() {
                200 => ok += 1,
                401 => {}
                s => panic!("{runtime}: unexpected status {s}"),
            }
        }
        assert_eq!(ok, 32, "{runtime}");
        assert_eq!(
            upstream.count(),
            32,
            "{runtime}: only verified requests forwarded"
        );
        assert_eq!(gw.outcome("lahza", "forwarded"), 32.0, "{runtime}");
        assert_eq!(gw.outcome("lahza", "signature_mismatch"), 8.0, "{runtime}");
        tokio::time::timeout(Duration::from_secs(10), gw.shutdown())
            .await
            .unwrap_or_else(|_| panic!("{runtime}: shutdown did not finish"));
    }
}

/// `max_connections` is one limit across all workers and listeners: at the limit, no worker
/// holds the slot while waiting for a connection that goes to another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_limit_is_shared_by_all_workers() {
    let sig = hex::encode(hmac_sha256("sk_live_lahza_8c2e", &[BODY]));
    for runtime in ["per_core", "shared"] {
        let upstream = Upstream::start().await;
        let limits = "limits:\n  max_connections: 1\n";
        let gw = Hookgate::start(
            &Yaml::new()
                .listeners(TWO_LISTENERS)
                .top(&workers(runtime))
                .top(limits)
                .routes(&lahza_route(&upstream.url())),
            ENV,
        )
        .await;
        let second = format!("http://{}/hooks/lahza", gw_listen_addr(&gw, 1));
        for i in 0..12 {
            let url = if i % 2 == 0 {
                gw.url("/hooks/lahza")
            } else {
                second.clone()
            };
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                post(&url, &[("x-lahza-signature", &sig)], BODY),
            )
            .await
            .unwrap_or_else(|_| panic!("{runtime}: request {i} was never served"));
            assert_eq!(answer.status, 200, "{runtime}: request {i}");
        }
        assert_eq!(upstream.count(), 12);
        gw.shutdown().await;
    }
}

fn gw_listen_addr(gw: &Hookgate, i: usize) -> std::net::SocketAddr {
    gw.listen_addrs[i]
}

/// SO_REUSEPORT must not let a per-core gateway start next to another socket already
/// listening on its port (a stale instance): that would silently split the traffic.
#[tokio::test]
async fn a_port_in_use_is_refused_even_with_reuse_port() {
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.set_reuseport(true).unwrap();
    other.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let other = other.listen(16).unwrap();
    let port = other.local_addr().unwrap().port();
    let yaml = Yaml::new()
        .listeners(&format!(
            "  - addr: 127.0.0.1:{port}\n  - addr: 127.0.0.1:0\n"
        ))
        .top(&workers("per_core"))
        .routes(&lahza_route("http://127.0.0.1:9"));
    let env: std::collections::HashMap<String, String> = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let loaded = hookgate::config::compile::compile(&yaml, std::path::Path::new("."), &move |n| {
        env.get(n).cloned()
    })
    .unwrap();
    let metrics = std::sync::Arc::new(hookgate::metrics::Metrics::new());
    let started =
        hookgate::server::start(loaded.gateway, metrics, std::time::SystemTime::now).await;
    let err = started.err().expect("the port is taken");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    drop(other);
}
