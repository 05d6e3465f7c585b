//! A closed-loop HTTP/1.1 load generator that times every request with the monotonic
//! clock: the benchmark's second opinion on latency beside wrk.
//!
//! `cargo run --release --example loadgen -- URL SECONDS CONNECTIONS BODY_FILE [HEADER: VALUE]...`
//!
//! Each connection sends one POST (the body from BODY_FILE, the headers given), reads the
//! whole answer, records the time from the first byte written to the last byte read, and
//! sends the next. One thread. Prints one JSON line: requests, seconds, requests/s, mean
//! and percentiles in microseconds, and answers that were not 2xx.
//!
//! Why: in the queued benchmark wrk's latency figures disagreed with its own throughput
//! (a mean of 9.9 ms at 9,700 requests/s over 32 connections, where Little's law allows at
//! most 3.3 ms). A closed loop that times each request from its first byte written to its
//! answer's last byte read satisfies that law by construction (a connection's latencies add
//! up to at most the run); the check below only guards this tool's own arithmetic.
//!
//! Like wrk, it is a closed loop: while an answer is late its connection sends nothing, so
//! a stall delays one request per connection, not every request that independent senders
//! would have sent meanwhile (coordinated omission). Its tail is that of 32 senders that
//! each wait for their answer.
//!
//! It reads answers with a `Content-Length` only (what hookgate and the bench upstream
//! send), and fails loudly on anything else, a closed connection included.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: loadgen URL SECONDS CONNECTIONS BODY_FILE [HEADER: VALUE]...");
        std::process::exit(2);
    }
    let url = &args[1];
    let seconds: f64 = args[2].parse().expect("SECONDS is a number");
    let connections: usize = args[3].parse().expect("CONNECTIONS is a number");
    let body = std::fs::read(&args[4]).expect("BODY_FILE is readable");
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for header in &args[5..] {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(&body);

    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (authority, request) = (authority.to_owned(), request.clone());
        tasks.push(tokio::spawn(async move {
            connection(&authority, &request, until).await
        }));
    }
    let (mut latencies, mut not_2xx) = (Vec::new(), 0u64);
    for t in tasks {
        let (l, n) = t.await.expect("connection task");
        latencies.extend(l);
        not_2xx += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let n = latencies.len();
    let pct = |p: f64| {
        latencies
            .get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let mean = latencies.iter().map(|&l| l as f64).sum::<f64>() / n.max(1) as f64;
    let rate = n as f64 / elapsed;
    // Little's law: connections in flight = rate x mean latency, at most `connections`
    // (true by construction; a failure here is a bug in this tool's sums).
    let in_flight = rate * mean / 1e6;
    assert!(
        in_flight <= connections as f64 * 1.01,
        "inconsistent figures: {in_flight:.1} requests in flight on {connections} connections"
    );
    println!(
        "{{\"requests\": {n}, \"seconds\": {elapsed:.3}, \"rps\": {rate:.1}, \"mean_us\": {mean:.0}, \
         \"p50_us\": {}, \"p90_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"max_us\": {}, \
         \"not_2xx\": {not_2xx}, \"in_flight\": {in_flight:.2}}}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        latencies.last().copied().unwrap_or(0)
    );
}

/// One connection's requests until `until`: latencies in microseconds, and how many
/// answers were not 2xx.
async fn connection(authority: &str, request: &[u8], until: Instant) -> (Vec<u32>, u64) {
    let mut stream = TcpStream::connect(authority).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut not_2xx = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < until {
        let t0 = Instant::now();
        stream.write_all(request).await.expect("write");
        let mut have = 0;
        loop {
            if have == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = stream.read(&mut buf[have..]).await.expect("read");
            assert!(n > 0, "the server closed the connection");
            have += n;
            if let Some(end) = complete(&buf[..have]) {
                assert_eq!(end, have, "one answer at a time");
                if !buf.starts_with(b"HTTP/1.1 2") {
                    not_2xx += 1;
                }
                break;
            }
        }
        latencies.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    (latencies, not_2xx)
}

/// The length of a complete answer at the start of `buf` (head plus `Content-Length`).
/// Panics on an answer it cannot delimit that way.
fn complete(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).expect("an answer head in UTF-8");
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| {
                value
                    .trim()
                    .parse::<usize>()
                    .expect("a numeric Content-Length")
            })
        })
        .unwrap_or_else(|| panic!("an answer without Content-Length: {head:?}"));
    (buf.len() >= head_end + length).then_some(head_end + length)
}
