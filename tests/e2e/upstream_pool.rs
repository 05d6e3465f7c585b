//! The gateway's keep-alive pool to the upstream: connections are reused, bounded by
//! `limits.upstream_keepalive`, and an upstream that closes connections (idle or with
//! `Connection: close`) loses no request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// A route that needs no signature (loopback allowlist only), so these tests are about the
/// forwarding alone.
fn app_route(upstream: &str) -> String {
    format!(
        "  - name: app\n    path: /hook\n    upstream: {upstream}\n    allow_ips: [127.0.0.0/8]\n"
    )
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let upstream = Upstream::start().await;
    // One worker: per-core workers each keep their own pool.
    let gw = Hookgate::start(
        &Yaml::new()
            .top("workers: 1\n")
            .routes(&app_route(&upstream.url())),
        &[],
    )
    .await;
    for i in 0..10 {
        let body = format!("{{\"n\":{i}}}");
        let a = post(&gw.url("/hook?x=1"), &[], body.as_bytes()).await;
        assert_eq!(a.status, 200, "request {i}");
    }
    let got = upstream.received();
    assert_eq!(got.len(), 10);
    assert!(
        got.iter().all(|r| r.conn == 0),
        "all on the first connection"
    );
    // Origin-form target and the sender's Host header, as the app would see them directly.
    assert_eq!(got[0].path_and_query, "/hook?x=1");
    assert_eq!(got[0].headers["host"], gw.addr.to_string());
    assert_eq!(&got[3].body[..], b"{\"n\":3}");
}

#[tokio::test]
async fn keepalive_zero_opens_a_connection_per_request() {
    let upstream = Upstream::start().await;
    let limits = "limits:\n  upstream_keepalive: 0\n";
    let gw = Hookgate::start(
        &Yaml::new().top(limits).routes(&app_route(&upstream.url())),
        &[],
    )
    .await;
    for _ in 0..4 {
        assert_eq!(post(&gw.url("/hook"), &[], b"{}").await.status, 200);
    }
    let conns: Vec<usize> = upstream.received().iter().map(|r| r.conn).collect();
    assert_eq!(conns, vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn concurrent_requests_are_all_delivered_over_bounded_idle_connections() {
    let upstream = Upstream::start().await;
    let limits = "workers: 1\nlimits:\n  upstream_keepalive: 2\n";
    let gw = Hookgate::start(
        &Yaml::new().top(limits).routes(&app_route(&upstream.url())),
        &[],
    )
    .await;
    let url = gw.url("/hook");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { post(&url, &[], format!("{i}").as_bytes()).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let mut bodies: Vec<String> = upstream
        .received()
        .iter()
        .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
        .collect();
    bodies.sort_by_key(|b| b.parse::<u32>().unwrap());
    assert_eq!(bodies, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
    // At most 2 idle connections are kept: the next sequential requests reuse them rather
    // than opening new ones each time.
    let before = upstream.received().iter().map(|r| r.conn).max().unwrap();
    for _ in 0..5 {
        assert_eq!(post(&url, &[], b"{}").await.status, 200);
    }
    let after = upstream.received().iter().map(|r| r.conn).max().unwrap();
    assert_eq!(
        before, after,
        "sequential requests reused a pooled connection"
    );
}

#[tokio::test]
async fn a_host_name_upstream_is_resolved() {
    let upstream = Upstream::start().await;
    // `localhost` may resolve to ::1 first, where nothing listens: the next address is tried.
    let url = format!("http://localhost:{}", upstream.addr.port());
    let gw = Hookgate::start(&Yaml::new().routes(&app_route(&url)), &[]).await;
    assert_eq!(post(&gw.url("/hook"), &[], b"{}").await.status, 200);
    assert_eq!(upstream.count(), 1);
}

/// How the raw upstream ends a connection after each answer.
#[derive(Clone, Copy)]
enum Close {
    /// Answers `Connection: close` and closes.
    Announced,
    /// Answers as keep-alive, then closes the idle connection shortly after.
    WhileIdle,
}

/// A hand-written HTTP/1.1 upstream answering one request per connection.
async fn closing_upstream(close: Close) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                if read_request(&mut s).await.is_none() {
                    return;
                }
                count.fetch_add(1, Ordering::SeqCst);
                let head = match close {
                    Close::Announced => {
                        "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
                    }
                    Close::WhileIdle => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                };
                s.write_all(head.as_bytes()).await.unwrap();
                if let Close::WhileIdle = close {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
    });
    (url, served)
}

/// Reads one request with a Content-Length body; `None` at end of stream.
async fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf);
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn an_upstream_closing_connections_loses_no_request() {
    for close in [Close::Announced, Close::WhileIdle] {
        let (url, served) = closing_upstream(close).await;
        let gw = Hookgate::start(&Yaml::new().routes(&app_route(&url)), &[]).await;
        for i in 0..6 {
            let a = post(&gw.url("/hook"), &[], b"{}").await;
            assert_eq!(a.status, 200, "request {i}");
            assert_eq!(a.body, "ok");
            // Give the idle close time to land before the next request.
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert_eq!(served.load(Ordering::SeqCst), 6);
        assert_eq!(gw.outcome("app", "forwarded"), 6.0);
        gw.shutdown().await;
    }
}
