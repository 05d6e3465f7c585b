//! Queued delivery on a real PostgreSQL shared by several gateways: each event is delivered
//! once whichever replica took it, a copy sent to two replicas is stored once, a store that
//! is down means 503 and nothing acknowledged, and a replica killed mid-delivery loses its
//! leases to another without a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::crash::start_gateway;
use crate::pg_server::PostgresServer;
use crate::queued::{header, laso_event, within, ENV};
use crate::support::*;

/// The PostgreSQL store at `url`, with `more` lines under `queue_store:`.
fn store(url: &str, more: &str) -> String {
    format!("queue_store:\n  type: postgres\n  url: \"{url}\"\n  timeout: 1s\n{more}")
}

/// Queued laso and lomi (with replay) routes to `upstream`.
fn routes(upstream: &str) -> String {
    format!(
        "  - name: laso\n    path: /laso\n    upstream: {upstream}\n\
         \x20   verify: {{ preset: laso, secret: \"${{LASO_SECRET}}\" }}\n\
         \x20   delivery: queued\n    queue:\n      retry: {{ initial_interval: 50ms, max_interval: 200ms }}\n\
         \x20 - name: lomi\n    path: /lomi\n    upstream: {upstream}\n\
         \x20   verify: {{ preset: lomi, secret: \"${{LOMI_SECRET}}\" }}\n\
         \x20   replay: {{}}\n    delivery: queued\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_postgres_deliver_each_event_once() {
    let pg = PostgresServer::start().await;
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top(&store(&pg.url(), ""))
        .routes(&routes(&upstream.url()));
    let a = Hookgate::start(&yaml, ENV).await;
    let b = Hookgate::start(&yaml, ENV).await;
    let mut ids = Vec::new();
    for n in 0..40 {
        let gw = if n % 2 == 0 { &a } else { &b };
        let (body, headers) = laso_event(n);
        let answer = post(&gw.url("/laso"), &as_refs(&headers), &body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        ids.push(
            answer.headers["hookgate-event-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    within(10, "all 40 delivered", || upstream.count() >= 40).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut keys: Vec<String> = upstream
        .received()
        .iter()
        .map(|r| header(r, "idempotency-key").to_owned())
        .collect();
    keys.sort();
    ids.sort();
    assert_eq!(keys, ids, "each event once, by one replica or the other");

    // One event's copies arrive at both replicas: stored once, duplicate at the other.
    let body = br#"{"id":"evt_pg_1","event":"PAYMENT_SUCCEEDED"}"#;
    let headers = sign_as("lomi", secret_of("lomi"), body, now_unix());
    let first = post(&a.url("/lomi"), &as_refs(&headers), body).await;
    let second = post(&b.url("/lomi"), &as_refs(&headers), body).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.headers["x-hookgate-duplicate"], "true");
    assert_eq!(
        second.headers["hookgate-event-id"],
        first.headers["hookgate-event-id"]
    );
    within(10, "the lomi event arrives", || upstream.count() == 41).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.count(), 41, "once");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_events_are_refused_with_503_and_none_acknowledged() {
    let mut pg = PostgresServer::start().await;
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(
        &Yaml::new()
            .top(&store(&pg.url(), ""))
            .routes(&routes(&upstream.url())),
        ENV,
    )
    .await;
    pg.stop();
    let (body, headers) = laso_event(1);
    let answer = post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert!(answer.headers.contains_key("retry-after"));
    assert!(answer.headers.get("hookgate-event-id").is_none());
    assert_eq!(gw.outcome("laso", "queue_store_unavailable"), 1.0);

    // Back up: the sender's retry is stored and delivered.
    pg.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = post(&gw.url("/laso"), &as_refs(&headers), &body).await;
        if answer.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never stored after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    within(10, "delivered once stored", || upstream.count() == 1).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_delivery_loses_its_leases_to_the_other() {
    let pg = PostgresServer::start().await;
    let dir = temp_dir("pg-crash");
    // A slow app: each delivery takes 400 ms, so events are leased and in flight.
    let upstream = Upstream::start_with(Reply {
        delay: Duration::from_millis(400),
        ..Reply::default()
    })
    .await;
    // Killed when dropped, however the test ends.
    let mut children: Vec<KillOnDrop> = Vec::new();
    let mut urls = Vec::new();
    for name in ["a", "b"] {
        let listen = rebindable_addr().await;
        let admin = rebindable_addr().await;
        let yaml = Yaml::new()
            .listeners(&format!("  - addr: {listen}\n"))
            .admin(&format!("  addr: {admin}\n"))
            .top(&format!(
                "workers: 1\n\
                 limits:\n  upstream_connect_timeout: 500ms\n  upstream_timeout: 1s\n\
                 queue_store:\n  type: postgres\n  url: \"{}\"\n",
                pg.url()
            ))
            .routes(&format!(
                "  - name: laso\n    path: /laso\n    upstream: {}\n\
                 \x20   verify: {{ preset: laso, secret: \"laso_whsec_3f1c9a\" }}\n\
                 \x20   delivery: queued\n    queue:\n      concurrency: 4\n",
                upstream.url()
            ));
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        children.push(start_gateway(&path, &dir.join(format!("{name}.log"))));
        urls.push(format!("http://{listen}/laso"));
    }
    // Wait for both to listen.
    for url in &urls {
        wait_listening(url).await;
    }
    // Events go to replica a only; its worker leases them (b's worker may take some too).
    let mut acked = Vec::new();
    for n in 0..30 {
        let (body, headers) = laso_event(1000 + n);
        let answer = post(&urls[0], &as_refs(&headers), &body).await;
        assert_eq!(answer.status, StatusCode::OK);
        acked.push(
            answer.headers["hookgate-event-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Kill a while it has deliveries in flight.
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let a = &mut children[0];
        signal(a, Signal::Kill);
        a.wait().unwrap();
    }
    let killed_at = Instant::now();
    // b takes over a's leases once they run out (connect 0.5 s + upstream 1 s + 5 s margin).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: HashMap<String, usize> =
            upstream.received().iter().fold(HashMap::new(), |mut m, r| {
                *m.entry(header(r, "idempotency-key").to_owned())
                    .or_default() += 1;
                m
            });
        if acked.iter().all(|id| got.contains_key(id)) {
            let again = got.values().filter(|n| **n > 1).count();
            println!(
                "postgres takeover: 30 acknowledged, all delivered {:.1} s after the kill; \
                 {again} delivered twice (attempts cut by the kill), {} deliveries",
                killed_at.elapsed().as_secs_f64(),
                got.values().sum::<usize>()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged events never delivered after the kill; logs in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1, as PEM: (CA,
/// server chain, server key).
fn pg_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), server.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_speaks_verified_tls_when_the_url_requires_it() {
    let mut pg = PostgresServer::start().await;
    let (ca, cert, key) = pg_pki();
    pg.enable_tls(&cert, &key).await;
    let dir = temp_dir("pg-tls");
    std::fs::write(dir.join("ca.pem"), &ca).unwrap();
    let upstream = Upstream::start().await;
    let url = format!("{}?sslmode=require", pg.url());

    // Verified against the CA it was given: events are stored and delivered.
    let ca_file = format!("  ca_file: {}\n", dir.join("ca.pem").display());
    let with_ca = Yaml::new()
        .top(&store(&url, &ca_file))
        .routes(&routes(&upstream.url()));
    let gw = Hookgate::start(&with_ca, ENV).await;
    let (body, headers) = laso_event(1);
    let answer = post(&gw.url("/laso"), &as_refs(&headers), &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    within(10, "delivered through a TLS store", || {
        upstream.count() == 1
    })
    .await;
    gw.shutdown().await;

    // Without the CA the server's certificate is not trusted: the gateway does not start.
    let loaded = hookgate::config::compile::compile(
        &Yaml::new()
            .top(&store(&url, ""))
            .routes(&routes(&upstream.url())),
        std::path::Path::new("."),
        &|n| {
            ENV.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        },
    )
    .unwrap();
    let err = hookgate::server::start(
        loaded.gateway,
        Arc::new(hookgate::metrics::Metrics::new()),
        std::time::SystemTime::now,
    )
    .await
    .err()
    .expect("an untrusted certificate is refused")
    .to_string();
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("TLS"),
        "the error names the TLS failure: {err}"
    );
}

/// A pause made on one replica holds on the other: events taken by either are stored, none
/// delivered, until a resume (made on the other replica) drains each of them once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_on_one_replica_holds_on_every_replica_until_resumed() {
    let pg = PostgresServer::start().await;
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top(&store(&pg.url(), ""))
        .routes(&routes(&upstream.url()));
    let a = Hookgate::start(&yaml, ENV).await;
    let b = Hookgate::start(&yaml, ENV).await;
    let pause = send(
        "POST",
        &format!("http://{}/queue/routes/laso/pause", a.admin),
        &[],
        b"",
    )
    .await;
    assert_eq!(pause.status, StatusCode::OK, "{}", pause.body);
    // The other replica reads the pause within a second.
    within(5, "replica b sees the pause", || {
        b.counter("hookgate_queue_paused", &[("route", "laso")]) == 1.0
    })
    .await;
    for n in 0..10 {
        let gw = if n % 2 == 0 { &a } else { &b };
        let (body, headers) = laso_event(n);
        let answer = post(&gw.url("/laso"), &as_refs(&headers), &body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        upstream.count(),
        0,
        "no replica delivers a paused route's events"
    );
    let routes = send(
        "GET",
        &format!("http://{}/queue/routes/laso", b.admin),
        &[],
        b"",
    )
    .await;
    let route: serde_json::Value = serde_json::from_str(&routes.body).unwrap();
    assert_eq!(route["depth"]["queued"], 10, "{route}");
    assert!(route["paused_since"].is_string(), "{route}");
    let resume = send(
        "POST",
        &format!("http://{}/queue/routes/laso/resume", b.admin),
        &[],
        b"",
    )
    .await;
    assert_eq!(resume.status, StatusCode::OK, "{}", resume.body);
    within(10, "both replicas deliver again", || upstream.count() >= 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let keys: std::collections::HashSet<String> = upstream
        .received()
        .iter()
        .map(|r| header(r, "idempotency-key").to_owned())
        .collect();
    assert_eq!((upstream.count(), keys.len()), (10, 10), "each event once");
    a.shutdown().await;
    b.shutdown().await;
}

/// A bulk replay whose process is killed mid-job: the job's hold runs out, the other
/// replica takes it from its cursor, and it ends with every event replayed, its numbers
/// saying exactly that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_whose_replica_is_killed_is_resumed_by_the_other_from_its_cursor() {
    let pg = PostgresServer::start().await;
    let dir = temp_dir("pg-replay-kill");
    // A slow app, one delivery at a time: the replay is still going when the kill comes.
    let upstream = Upstream::start_with(Reply {
        delay: Duration::from_millis(100),
        ..Reply::default()
    })
    .await;
    let mut children: Vec<KillOnDrop> = Vec::new();
    let (mut urls, mut admins) = (Vec::new(), Vec::new());
    let mut configs = Vec::new();
    for name in ["a", "b"] {
        let (listen, admin) = (rebindable_addr().await, rebindable_addr().await);
        let yaml = Yaml::new()
            .listeners(&format!("  - addr: {listen}\n"))
            .admin(&format!("  addr: {admin}\n"))
            .top(&format!(
                "workers: 1\n\
                 limits:\n  upstream_connect_timeout: 500ms\n  upstream_timeout: 1s\n\
                 queue_store:\n  type: postgres\n  url: \"{}\"\n",
                pg.url()
            ))
            .routes(&format!(
                "  - name: laso\n    path: /laso\n    upstream: {}\n\
                 \x20   verify: {{ preset: laso, secret: \"laso_whsec_3f1c9a\" }}\n\
                 \x20   delivery: queued\n    queue:\n      concurrency: 1\n",
                upstream.url()
            ));
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        configs.push(path);
        urls.push(format!("http://{listen}/laso"));
        admins.push(admin);
    }
    // Only a runs at first: it takes the job.
    children.push(start_gateway(&configs[0], &dir.join("a.log")));
    wait_listening(&urls[0]).await;
    for n in 0..40 {
        let (body, headers) = laso_event(2000 + n);
        let answer = post(&urls[0], &as_refs(&headers), &body).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    within(20, "all 40 delivered", || upstream.count() == 40).await;
    let admin_a = format!("http://{}", admins[0]);
    // And settled as delivered (the app has the last one before its answer is recorded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = send("GET", &format!("{admin_a}/queue/routes/laso"), &[], b"").await;
        let route: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        let depth = &route["depth"];
        if depth["queued"] == 0 && depth["delivering"] == 0 && depth["retrying"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never settled: {route}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = send(
        "POST",
        &format!("{admin_a}/queue/replays?route=laso&since=1h"),
        &[],
        b"",
    )
    .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let job: serde_json::Value = serde_json::from_str(&started.body).unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["matched"], 40);
    // Kill a once the replay is under way, not done.
    within(10, "the replay is under way", || upstream.count() > 42).await;
    {
        let a = &mut children[0];
        signal(a, Signal::Kill);
        a.wait().unwrap();
    }
    let at_kill = upstream.count() - 40;
    assert!(
        at_kill < 40,
        "the replay was over before the kill ({at_kill})"
    );
    children.push(start_gateway(&configs[1], &dir.join("b.log")));
    wait_listening(&urls[1]).await;
    let admin_b = format!("http://{}", admins[1]);
    // b takes the job once a's hold (15 s) runs out, and finishes it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let answer = send("GET", &format!("{admin_b}/queue/replays/{id}"), &[], b"").await;
        let job: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        if job["state"] != "running" {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "never resumed: {job}; logs in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["replayed"], 40, "every event once: {job}");
    assert_eq!(job["skipped"], 0, "{job}");
    within(30, "every event replayed", || {
        let replayed: std::collections::HashSet<String> = upstream
            .received()
            .iter()
            .filter(|r| header(r, "hookgate-replay") == "1")
            .map(|r| header(r, "idempotency-key").to_owned())
            .collect();
        replayed.len() == 40
    })
    .await;
    println!(
        "replay takeover: {at_kill} replayed before the kill, {} deliveries in all",
        upstream.count()
    );
}

/// Waits for a gateway started as a process to listen at `url`.
async fn wait_listening(url: &str) {
    let addr: std::net::SocketAddr = url[7..url.len() - 5].parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "gateway did not start: {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
