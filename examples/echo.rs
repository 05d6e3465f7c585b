//! A stand-in upstream app for trying hookgate: answers every request with 200 and prints
//! one line per request (method, path, body size, and the signature-looking headers it got).
//!
//! `cargo run --release --example echo [ADDR]` (default 127.0.0.1:3000).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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
                let interesting: Vec<String> = parts
                    .headers
                    .iter()
                    .filter(|(name, _)| {
                        let n = name.as_str();
                        n.contains("signature")
                            || n.contains("timestamp")
                            || n.starts_with("x-forwarded")
                    })
                    .map(|(name, value)| format!("{name}={}", value.to_str().unwrap_or("?")))
                    .collect();
                println!(
                    "{} {} {} bytes {}",
                    parts.method,
                    parts.uri,
                    body.len(),
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
