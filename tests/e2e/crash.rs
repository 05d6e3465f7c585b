//! The crash proof: the real `hookgate` binary with a queued route, killed with SIGKILL
//! several times while signed events pour in and the app flaps between up, slow and down.
//! Every event the sender got a 2xx for must reach the app (at least once, and exactly once
//! after deduplicating by `Idempotency-Key`), and nothing unverified may reach it.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::support::*;

/// What the app saw, by idempotency key: how many times, and the body.
#[derive(Default)]
struct Seen {
    by_key: HashMap<String, (usize, Bytes)>,
    forged: usize,
}

/// An app that cycles up (answers 200 at once), slow (answers after 300 ms, past the
/// gateway's upstream timeout some of the time) and down (not listening), until `steady`.
fn flapping_app(addr: SocketAddr, seen: Arc<Mutex<Seen>>, steady: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut phase = 0usize;
        loop {
            let up = steady.load(Ordering::SeqCst) || phase % 3 != 2;
            let slow = !steady.load(Ordering::SeqCst) && phase % 3 == 1;
            phase += 1;
            if !up {
                tokio::time::sleep(Duration::from_millis(400)).await;
                continue;
            }
            let listener = loop {
                match TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            let until = Instant::now() + Duration::from_millis(400);
            let mut conns = Vec::new();
            while steady.load(Ordering::SeqCst) || Instant::now() < until {
                let accepted =
                    tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
                let Ok(Ok((stream, _))) = accepted else {
                    continue;
                };
                let seen = seen.clone();
                conns.push(tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let key = req
                                .headers()
                                .get("idempotency-key")
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            {
                                let mut s = seen.lock().unwrap();
                                if body.windows(6).any(|w| w == b"forged") {
                                    s.forged += 1;
                                }
                                let e = s.by_key.entry(key).or_insert((0, body));
                                e.0 += 1;
                            }
                            // Slow: the app took the event, but answers after the gateway
                            // gave up; the retry is a second delivery of the same key.
                            if slow {
                                tokio::time::sleep(Duration::from_millis(300)).await;
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }));
            }
            // Down: the listener and every open connection go away.
            drop(listener);
            for c in conns {
                c.abort();
            }
        }
    });
}

/// `hookgate run -c CONFIG`, its log appended to `log`; not waited for (the senders find it
/// down at first, as after each kill).
pub fn start_gateway(config: &std::path::Path, log: &std::path::Path) -> KillOnDrop {
    spawn(&mut run(config), append_to(log))
}

/// One signed (or forged) event posted; `Some(true)` for a 2xx, `None` if there was no
/// answer (the gateway was down).
async fn send_event(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    url: &str,
    body: &[u8],
    forged: bool,
) -> Option<bool> {
    let secret = if forged {
        "not-the-secret"
    } else {
        secret_of("laso")
    };
    let headers = sign_as("laso", secret, body, now_unix());
    let mut req = Request::builder().method("POST").uri(url);
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .ok()?
        .ok()?;
    let ok = resp.status().is_success();
    let _ = resp.into_body().collect().await;
    Some(ok)
}

/// Where the gateways under test keep their queue.
enum Store<'a> {
    /// One gateway, an embedded store in this directory.
    Embedded(&'a std::path::Path),
    /// Two gateways on one PostgreSQL.
    Postgres(&'a str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_and_a_flapping_app() {
    let dir = temp_dir("crash-proof");
    crash_proof(&dir, Store::Embedded(&dir.join("queue"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_survive_sigkill_and_a_flapping_app() {
    let pg = crate::pg_server::PostgresServer::start().await;
    let dir = temp_dir("crash-proof-pg");
    crash_proof(&dir, Store::Postgres(&pg.url())).await;
}

/// Signed events (and forged ones) pour into the gateways while the app flaps; one gateway
/// is killed with SIGKILL four times (on PostgreSQL, the replicas take turns) and restarted.
/// Every acknowledged event must then reach the app without another restart.
async fn crash_proof(dir: &std::path::Path, store: Store<'_>) {
    // Ports that are bound again after a kill or a flap: outside the ephemeral range.
    let app = rebindable_addr().await;
    let (store_yaml, replicas, label) = match store {
        Store::Embedded(path) => (format!("  path: {}\n", path.display()), 1, "embedded"),
        // Leases run out after connect (300 ms) + upstream (250 ms) + 5 s.
        Store::Postgres(url) => (
            format!("  type: postgres\n  url: \"{url}\"\n  timeout: 2s\n"),
            2,
            "postgres, 2 replicas",
        ),
    };
    let mut configs = Vec::new();
    let mut urls = Vec::new();
    for r in 0..replicas {
        let listen = rebindable_addr().await;
        let admin = rebindable_addr().await;
        let config = dir.join(format!("gateway-{r}.yaml"));
        let yaml = Yaml::new()
            .listeners(&format!("  - addr: {listen}\n"))
            .admin(&format!("  addr: {admin}\n"))
            .top(&format!(
                "workers: 2\n\
                 limits:\n  upstream_connect_timeout: 300ms\n  upstream_timeout: 250ms\n\
                 \x20 shutdown_grace: 1s\n  drain_delay: 0s\n\
                 queue_store:\n{store_yaml}"
            ))
            .routes(&format!(
                "  - name: laso\n    path: /laso\n    upstream: http://{app}\n\
                 \x20   verify: {{ preset: laso, secret: \"laso_whsec_3f1c9a\" }}\n\
                 \x20   delivery: queued\n    queue:\n      concurrency: 8\n\
                 \x20     retry: {{ initial_interval: 50ms, max_interval: 300ms }}\n"
            ));
        std::fs::write(&config, yaml).unwrap();
        configs.push(config);
        urls.push(format!("http://{listen}/laso"));
    }
    let log = dir.join("gateway.log");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let steady = Arc::new(AtomicBool::new(false));
    flapping_app(app, seen.clone(), steady.clone());

    // Killed when dropped, however the test ends.
    let mut gateways: Vec<KillOnDrop> = configs.iter().map(|c| start_gateway(c, &log)).collect();
    let acked = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..8 {
        // Senders spread over the replicas.
        let url = urls[s % urls.len()].clone();
        let (acked, sent, stop) = (acked.clone(), sent.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http::<Full<Bytes>>();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                // One forged request in ten: it must never reach the app.
                if n % 10 == 0 {
                    let _ =
                        send_event(&client, &url, format!("forged {s}-{n}").as_bytes(), true).await;
                    continue;
                }
                let body = format!(r#"{{"event":"booking.created","id":"{s}-{n}"}}"#).into_bytes();
                sent.fetch_add(1, Ordering::SeqCst);
                match send_event(&client, &url, &body, false).await {
                    Some(true) => acked.lock().unwrap().push(body),
                    // Refused or no answer: like a real sender, it would retry later; this
                    // one moves on (only acknowledged events are owed to the app).
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }

    // Kill -9 a gateway four times mid-load, restarting it each time.
    let mut kills = 0;
    for k in 0..4 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let victim = k % gateways.len();
        let g = &mut gateways[victim];
        signal(g, Signal::Kill);
        g.wait().unwrap();
        kills += 1;
        std::thread::sleep(Duration::from_millis(100));
        *g = start_gateway(&configs[victim], &log);
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    // The app steadies; everything acknowledged must arrive without another restart.
    steady.store(true, Ordering::SeqCst);
    let acked: Vec<Vec<u8>> = acked.lock().unwrap().clone();
    let acked_set: HashSet<&[u8]> = acked.iter().map(|b| b.as_slice()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let arrived: HashSet<Vec<u8>> = seen
            .lock()
            .unwrap()
            .by_key
            .values()
            .map(|(_, b)| b.to_vec())
            .collect();
        let missing = acked_set.iter().filter(|b| !arrived.contains(**b)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged events never reached the app; log: {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap();
    let deliveries: usize = seen.by_key.values().map(|(n, _)| n).sum();
    let unique = seen.by_key.len();
    let redelivered = seen.by_key.values().filter(|(n, _)| *n > 1).count();
    // Each idempotency key stands for one body: deduplicated by key, each event once.
    let bodies: HashSet<&Bytes> = seen.by_key.values().map(|(_, b)| b).collect();
    assert_eq!(bodies.len(), unique, "one key, one event");
    assert_eq!(seen.forged, 0, "nothing unverified reached the app");
    assert!(
        !seen.by_key.contains_key(""),
        "every delivery had an Idempotency-Key"
    );
    println!(
        "crash proof ({label}): {kills} SIGKILLs; {} events sent, {} acknowledged, {unique} distinct \
         events delivered ({deliveries} deliveries, {redelivered} events delivered more than \
         once), 0 acknowledged lost, 0 forged delivered",
        sent.load(Ordering::SeqCst),
        acked.len()
    );
    assert!(
        acked.len() >= 50,
        "the load was real: {} acknowledged",
        acked.len()
    );
}
