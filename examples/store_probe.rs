//! The embedded queue store alone, as the gateway drives it: 32 concurrent senders, each
//! event (1 KiB body) ingested leased (the in-memory handoff) then settled delivered. Prints
//! events/s and the process's CPU per event (writer thread included), for work on the store
//! without HTTP in the way. Run it pinned to one core, on the disk the store will use:
//!
//!   cargo build --release --example store_probe
//!   taskset -c 0 target/release/examples/store_probe target/probe-store 20000
//!
//! `PROBE_DEFAULT_MALLOC=1` leaves glibc's trimming as it is by default (see
//! `body::keep_freed_memory_nearby`); compare page faults with `/usr/bin/time -v`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hookgate::delivery::embedded::Embedded;
use hookgate::delivery::event::{Lease, NewDelivery, NewEvent};
use hookgate::delivery::store::Settle;

fn cpu_us() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    (u.ru_utime.tv_sec as f64 + u.ru_stime.tv_sec as f64) * 1e6
        + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) as f64
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("DIR"));
    let n: usize = std::env::args()
        .nth(2)
        .map_or(20000, |s| s.parse().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    if std::env::var_os("PROBE_DEFAULT_MALLOC").is_none() {
        hookgate::body::keep_freed_memory_nearby();
    }
    let metrics = Arc::new(hookgate::metrics::Metrics::new());
    let store = Arc::new(Embedded::open(&dir, None, metrics).unwrap());
    let body = Bytes::from(vec![b'x'; 1024]);
    let headers = b"content-type: application/json\r\nx-hub-signature-256: sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\nx-github-delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\nx-forwarded-for: 127.0.0.1\r\n".to_vec();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (c0, t0) = (cpu_us(), Instant::now());
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (store, next, body, headers) =
            (store.clone(), next.clone(), body.clone(), headers.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let now = hookgate::delivery::UnixMs::from(std::time::SystemTime::now());
                let lease = Lease {
                    token: format!("lease{i:024}"),
                    until_ms: now.after(std::time::Duration::from_secs(60)),
                };
                let ev = NewEvent {
                    id: format!("{i:032x}"),
                    route: "queued".into(),
                    dedup_key: None,
                    dedup_until: None,
                    idempotency_key: format!("{i:032x}"),
                    received_ms: now,
                    verified_key: Some(0),
                    method: "POST".into(),
                    target: "/queued".into(),
                    headers: headers.clone(),
                    body: body.clone(),
                    deliveries: vec![NewDelivery {
                        destination: String::new(),
                        idempotency_key: format!("{i:032x}"),
                        lease: Some(lease.clone()),
                    }],
                };
                let leased = ev.leased_copy(&ev.deliveries[0], &lease, None);
                store.ingest(ev).await.unwrap();
                store
                    .settle(&leased, Settle::Delivered { status: 200 }, now)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (cpu, wall) = (cpu_us() - c0, t0.elapsed().as_secs_f64());
    println!(
        "{n} events: {:.0} events/s, {:.1} us CPU per event",
        n as f64 / wall,
        cpu / n as f64
    );
}
