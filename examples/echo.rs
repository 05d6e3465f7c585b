//! A stand-in upstream app for trying hookgate: answers every request with 200 and prints
//! one line per request (method, path, body size, the signature-looking headers it got, and
//! what queued delivery adds: `Idempotency-Key`, `Hookgate-Attempt`, `Hookgate-Event-Id`).
//!
//! `cargo run --release --example echo [ADDR]` (default 127.0.0.1:3000).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use hookgate::delivery::{ATTEMPT_HEADER, EVENT_ID_HEADER, IDEMPOTENCY_KEY};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("echo upstream listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let queued = [&IDEMPOTENCY_KEY, &ATTEMPT_HEADER, &EVENT_ID_HEADER];
                let interesting: Vec<String> = parts
                    .headers
                    .iter()
                    .filter(|(name, _)| {
                        let n = name.as_str();
                        n.contains("signature")
                            || n.contains("timestamp")
                            || n.starts_with("x-forwarded")
                    })
                    // Queued delivery's headers last, in this order, where present.
                    .chain(
                        queued
                            .into_iter()
                            .filter_map(|name| parts.headers.get(name).map(|value| (name, value))),
                    )
                    .map(|(name, value)| format!("{name}={}", value.to_str().unwrap_or("?")))
                    .collect();
                let size = body.len();
                println!(
                    "{} {} {size} byte{} {}",
                    parts.method,
                    parts.uri,
                    if size == 1 { "" } else { "s" },
                    interesting.join(" ")
                );
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
