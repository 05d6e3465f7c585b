//! A backlog on a queued route, as a newcomer first met it: a healthy but slow app (200
//! after 20 ms), `concurrency: 4`, and eight keep-alive senders that store events far
//! faster than the app takes them. Nothing fails and nothing is killed, so everything must
//! come out exactly once: no lease may run out, no attempt may be counted that was not
//! made, and the backlog must stay in the store, not in the gateway's memory.
//!
//! The real binary runs (its RSS is its own), in front of a recording upstream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::queued::{header, within};
use crate::support::*;

const CONCURRENCY: usize = 4;
const SENDERS: usize = 8;
/// The load stops at whichever comes first.
const LOAD_FOR: Duration = Duration::from_secs(3);
const MOST_EVENTS: usize = 1_500;

/// Peak resident memory of `pid` so far (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A GET on the admin listener: its status and body.
async fn admin_get(admin: std::net::SocketAddr, path: &str) -> (http::StatusCode, String) {
    hookgate::delivery::api::call(
        &admin.to_string(),
        None,
        http::Method::GET,
        path,
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_default()
}

async fn scrape(admin: std::net::SocketAddr) -> String {
    admin_get(admin, "/metrics").await.1
}

/// `GET /queue/routes/laso`: the route's depth by state, read from the store.
async fn route_view(admin: std::net::SocketAddr) -> serde_json::Value {
    let (status, body) = admin_get(admin, "/queue/routes/laso").await;
    assert_eq!(status, http::StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_behind_a_slow_app_is_delivered_exactly_once_with_leases_bounded_by_slots() {
    let dir = temp_dir("backlog");
    let store = format!("  path: {}\n", dir.join("queue").display());
    backlog(&dir, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_on_postgres_is_delivered_exactly_once_with_leases_bounded_by_slots() {
    let dir = temp_dir("backlog-pg");
    let pg = crate::pg_server::PostgresServer::start().await;
    let store = format!("  type: postgres\n  url: \"{}\"\n", pg.url());
    backlog(&dir, &store).await;
    drop(pg);
}

/// The scenario, with `store` the lines under `queue_store:`.
async fn backlog(dir: &std::path::Path, store: &str) {
    let upstream = Upstream::start_with(Reply {
        delay: Duration::from_millis(20),
        ..Reply::default()
    })
    .await;
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .top(&format!("queue_store:\n{store}"))
            .routes(&format!(
                "  - name: laso\n    path: /laso\n    upstream: {}\n\
                 \x20   verify: {{ preset: laso, secret: \"${{LASO_SECRET}}\" }}\n\
                 \x20   delivery: queued\n    queue:\n      concurrency: {CONCURRENCY}\n",
                upstream.url()
            )),
    )
    .unwrap();
    // Killed if the test fails before the end.
    let started = start(
        run(&config).env("LASO_SECRET", secret_of("laso")),
        Ready {
            admin: true,
            no_errors: false,
        },
    );
    let child = started.process;
    let pid = child.id();
    let (addr, admin) = (started.addr, started.admin.expect("admin address"));
    // Keep reading its log so it never blocks on a full pipe.
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let log_sink = log.clone();
    let lines = started.lines;
    std::thread::spawn(move || {
        for line in lines.iter() {
            log_sink.lock().unwrap().push(line);
        }
    });

    // Watch the leases this process holds and its memory, all along.
    let watching = Arc::new(AtomicBool::new(true));
    let peak_leased = Arc::new(Mutex::new(0f64));
    let watcher = {
        let (watching, peak_leased) = (watching.clone(), peak_leased.clone());
        tokio::spawn(async move {
            while watching.load(Ordering::SeqCst) {
                // The gateway's own count, and the store's: events in `delivering`.
                let text = scrape(admin).await;
                let leased = metric_value(&text, "hookgate_queue_leased", &[("route", "laso")]);
                let delivering = route_view(admin).await["depth"]["delivering"]
                    .as_f64()
                    .unwrap_or(0.0);
                {
                    let mut peak = peak_leased.lock().unwrap();
                    *peak = peak.max(leased).max(delivering);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    // Eight keep-alive senders, each event distinct and signed as Laso signs.
    let (acked, refused) = send_load(&format!("http://{addr}/laso"), LOAD_FOR, MOST_EVENTS).await;
    assert_eq!(refused, 0, "every event was stored");
    assert!(
        acked.len() > 200,
        "a backlog needs more events than the app takes in the load's time: {}",
        acked.len()
    );
    let backlog = acked.len().saturating_sub(upstream.count());
    assert!(backlog > 8 * CONCURRENCY, "no backlog formed: {backlog}");

    // 4 slots of 20 ms: about 200 deliveries a second.
    let drain = Duration::from_secs(10 + (acked.len() / 100) as u64);
    within(
        drain.as_secs(),
        "every acknowledged event reached the app",
        || upstream.count() >= acked.len(),
    )
    .await;
    // Late duplicates, if any, would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    watching.store(false, Ordering::SeqCst);
    watcher.await.unwrap();

    let got = upstream.received();
    let mut times: HashMap<String, usize> = HashMap::new();
    for r in &got {
        *times
            .entry(header(r, "idempotency-key").to_owned())
            .or_default() += 1;
        assert_eq!(
            header(r, "hookgate-attempt"),
            "1",
            "a healthy app's events are each sent once, as attempt 1"
        );
    }
    for id in &acked {
        assert_eq!(times.get(id), Some(&1), "event {id} reached the app once");
    }
    assert_eq!(got.len(), acked.len(), "nothing reached the app twice");

    let text = scrape(admin).await;
    let peak = *peak_leased.lock().unwrap();
    assert!(
        peak <= (2 * CONCURRENCY) as f64,
        "{peak} events were leased at once; the bound is twice the concurrency"
    );
    assert!(peak >= 1.0, "the watcher saw leases at all");
    let lost = metric_value(
        &text,
        "hookgate_queue_leases_lost_total",
        &[("route", "laso")],
    );
    assert_eq!(lost, 0.0, "no lease ran out in a healthy process");
    for reason in ["refused", "expired", "max_attempts", "unreadable"] {
        let dead = metric_value(
            &text,
            "hookgate_dead_letters_total",
            &[("route", "laso"), ("reason", reason)],
        );
        assert_eq!(dead, 0.0, "no dead letters ({reason})");
    }
    let delivered = metric_value(
        &text,
        "hookgate_delivery_attempts_total",
        &[("route", "laso"), ("outcome", "delivered")],
    );
    assert_eq!(delivered, acked.len() as f64, "one attempt per event");
    let rss = peak_rss(pid);
    assert!(
        rss < 96 * 1024 * 1024,
        "peak RSS {} MiB with a backlog of {backlog}: the backlog must stay in the store",
        rss / (1024 * 1024)
    );
    // The operator's view agrees: nothing waits, nothing is held back.
    let route = route_view(admin).await;
    let body = route.to_string();
    for state in ["queued", "delivering", "retrying", "dead"] {
        assert_eq!(route["depth"][state], 0, "{state}: {body}");
    }
    assert_eq!(route["held_back"], false, "{body}");
    let warned: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("lease ran out"))
        .cloned()
        .collect();
    assert!(warned.is_empty(), "leases ran out: {warned:?}");
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}

/// Three apps behind one route, with concurrency 2, 4 and 8, each slow (20 ms): the
/// backlog's invariants hold per destination. Each holds at most twice its concurrency
/// leased, each app gets every event exactly once as attempt 1, no lease runs out, and
/// each destination's delivered count is the number of events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_fanned_out_to_three_apps_is_bounded_and_counted_per_destination() {
    let dir = temp_dir("backlog-fanout");
    let store = format!("  path: {}\n", dir.join("queue").display());
    fanned_backlog(&dir, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_fanned_out_on_postgres_is_bounded_and_counted_per_destination() {
    let dir = temp_dir("backlog-fanout-pg");
    let pg = crate::pg_server::PostgresServer::start().await;
    let store = format!("  type: postgres\n  url: \"{}\"\n", pg.url());
    fanned_backlog(&dir, &store).await;
    drop(pg);
}

const FANNED: [(&str, usize); 3] = [("a", 2), ("b", 4), ("c", 8)];

async fn fanned_backlog(dir: &std::path::Path, store: &str) {
    let mut apps = Vec::new();
    let mut destinations = String::new();
    for (name, concurrency) in FANNED {
        let app = Upstream::start_with(Reply {
            delay: Duration::from_millis(20),
            ..Reply::default()
        })
        .await;
        destinations += &format!(
            "      - {{ name: {name}, upstream: \"{}\", concurrency: {concurrency} }}\n",
            app.url()
        );
        apps.push(app);
    }
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .top(&format!("queue_store:\n{store}"))
            .routes(&format!(
                "  - name: laso\n    path: /laso\n\
                 \x20   verify: {{ preset: laso, secret: \"${{LASO_SECRET}}\" }}\n\
                 \x20   delivery: queued\n    destinations:\n{destinations}"
            )),
    )
    .unwrap();
    let started = start(
        run(&config).env("LASO_SECRET", secret_of("laso")),
        Ready {
            admin: true,
            no_errors: false,
        },
    );
    let child = started.process;
    let (addr, admin) = (started.addr, started.admin.expect("admin address"));
    let lines = started.lines;
    std::thread::spawn(move || for _ in lines.iter() {});

    // The most each destination held leased, by the gateway's count and the store's.
    let watching = Arc::new(AtomicBool::new(true));
    let peaks = Arc::new(Mutex::new([0f64; 3]));
    let watcher = {
        let (watching, peaks) = (watching.clone(), peaks.clone());
        tokio::spawn(async move {
            while watching.load(Ordering::SeqCst) {
                let text = scrape(admin).await;
                let view = route_view(admin).await;
                {
                    let mut peaks = peaks.lock().unwrap();
                    for (i, (name, _)) in FANNED.iter().enumerate() {
                        let labels = [("route", "laso"), ("destination", *name)];
                        let leased = metric_value(&text, "hookgate_queue_leased", &labels);
                        let delivering = view["destinations"][i]["depth"]["delivering"]
                            .as_f64()
                            .unwrap_or(0.0);
                        peaks[i] = peaks[i].max(leased).max(delivering);
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let (acked, refused) =
        send_load(&format!("http://{addr}/laso"), Duration::from_secs(2), 600).await;
    assert_eq!(refused, 0, "every event was stored");
    assert!(acked.len() > 100, "{} events", acked.len());
    // The slowest destination: 2 slots of 20 ms, about 100 a second.
    let drain = 10 + (acked.len() / 50) as u64;
    within(drain, "every app has every event", || {
        apps.iter().all(|a| a.count() >= acked.len())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    watching.store(false, Ordering::SeqCst);
    watcher.await.unwrap();

    let text = scrape(admin).await;
    let peaks = *peaks.lock().unwrap();
    for (i, (name, concurrency)) in FANNED.iter().enumerate() {
        let got = apps[i].received();
        let mut times: HashMap<String, usize> = HashMap::new();
        for r in &got {
            *times
                .entry(header(r, "idempotency-key").to_owned())
                .or_default() += 1;
            assert_eq!(header(r, "hookgate-attempt"), "1", "{name}");
        }
        for id in &acked {
            let key = format!("{id}:{name}");
            assert_eq!(times.get(&key), Some(&1), "{key} reached {name} once");
        }
        assert_eq!(got.len(), acked.len(), "nothing reached {name} twice");
        assert!(
            peaks[i] <= (2 * concurrency) as f64 && peaks[i] >= 1.0,
            "{name}: {} leased at once, the bound is {}",
            peaks[i],
            2 * concurrency
        );
        let labels = [("route", "laso"), ("destination", *name)];
        assert_eq!(
            metric_value(&text, "hookgate_queue_leases_lost_total", &labels),
            0.0
        );
        let delivered = [
            ("route", "laso"),
            ("destination", *name),
            ("outcome", "delivered"),
        ];
        assert_eq!(
            metric_value(&text, "hookgate_delivery_attempts_total", &delivered),
            acked.len() as f64,
            "{name}: one attempt per event"
        );
    }
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}

/// Eight keep-alive senders posting distinct signed events to `url` for `secs` (or until
/// `most` are stored): the ids of the events acknowledged, and how many were not.
async fn send_load(url: &str, secs: Duration, most: usize) -> (Vec<String>, usize) {
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused = Arc::new(Mutex::new(0usize));
    let until = Instant::now() + secs;
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (url, acked, refused) = (url.to_owned(), acked.clone(), refused.clone());
        senders.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Full<Bytes>>();
            let mut n = 0;
            while Instant::now() < until && acked.lock().unwrap().len() < most {
                n += 1;
                let body = format!(
                    r#"{{"event":"booking.created","sender":{s},"n":{n},"time":1733000000000}}"#
                );
                let mut req = http::Request::builder().method("POST").uri(&url);
                for (k, v) in sign_as("laso", secret_of("laso"), body.as_bytes(), now_unix()) {
                    req = req.header(k, v);
                }
                let resp = client
                    .request(req.body(Full::new(Bytes::from(body))).unwrap())
                    .await
                    .expect("the gateway answers");
                let ok = resp.status().is_success();
                let id = resp
                    .headers()
                    .get("hookgate-event-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let _ = resp.into_body().collect().await;
                match (ok, id) {
                    (true, Some(id)) => acked.lock().unwrap().push(id),
                    _ => *refused.lock().unwrap() += 1,
                }
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let refused = *refused.lock().unwrap();
    (acked, refused)
}
