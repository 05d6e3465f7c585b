//! Test harness: a recording upstream, the real gateway started from inline YAML on
//! 127.0.0.1:0, clients (plain, TLS with HTTP/1.1 or HTTP/2, raw TCP), signing exactly as each
//! seed sender does (written here independently of the gateway's scheme engine), and metric
//! reading.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use hookgate::config::compile::compile;
use hookgate::metrics::Metrics;
use hookgate::runtime::Clock;
use hookgate::server::{self, Running};

// ---------------------------------------------------------------------------------------------
// Upstream

/// One request as the upstream app received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Which TCP connection it came on: 0 for the first the upstream accepted, and so on.
    pub conn: usize,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// How the upstream answers.
#[derive(Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: &'static str,
    pub delay: Duration,
    /// Statuses for the first requests, in order; `status` after they run out.
    pub script: Arc<Mutex<std::collections::VecDeque<StatusCode>>>,
    /// A `Retry-After` value sent with every answer that is not 2xx.
    pub retry_after: Option<&'static str>,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            status: StatusCode::OK,
            body: "accepted by app",
            delay: Duration::ZERO,
            script: Arc::default(),
            retry_after: None,
        }
    }
}

impl Reply {
    /// Answers the first requests with `first`, in order, then 200.
    pub fn scripted(first: &[u16]) -> Reply {
        Reply {
            script: Arc::new(Mutex::new(
                first
                    .iter()
                    .map(|s| StatusCode::from_u16(*s).unwrap())
                    .collect(),
            )),
            ..Reply::default()
        }
    }
}

/// A loopback HTTP/1.1 server that records every request it receives.
pub struct Upstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Upstream::start_with(Reply::default()).await
    }

    pub async fn start_with(reply: Reply) -> Upstream {
        Upstream::start_inner(reply, None).await
    }

    /// An HTTPS upstream: every connection goes through `tls` first (a handshake that fails
    /// records nothing).
    pub async fn start_tls(tls: tokio_rustls::TlsAcceptor) -> Upstream {
        Upstream::start_inner(Reply::default(), Some(tls)).await
    }

    /// An upstream on a given address (e.g. one the gateway was already pointed at while
    /// nothing listened there: the app coming up).
    pub async fn start_at(addr: SocketAddr, reply: Reply) -> Upstream {
        let listener = TcpListener::bind(addr).await.unwrap();
        Upstream::serve(listener, reply, None)
    }

    async fn start_inner(reply: Reply, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Upstream::serve(listener, reply, tls)
    }

    fn serve(
        listener: TcpListener,
        reply: Reply,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        tokio::spawn(async move {
            for conn in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let rec = rec.clone();
                let reply = reply.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let rec = rec.clone();
                        let reply = reply.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            rec.lock().unwrap().push(Received {
                                method: parts.method.to_string(),
                                path_and_query: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                headers: parts.headers,
                                body,
                                conn,
                                at: std::time::Instant::now(),
                            });
                            tokio::time::sleep(reply.delay).await;
                            let status = reply
                                .script
                                .lock()
                                .unwrap()
                                .pop_front()
                                .unwrap_or(reply.status);
                            let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
                            *resp.status_mut() = status;
                            resp.headers_mut()
                                .insert("x-upstream", "recorded".parse().unwrap());
                            if let (false, Some(ra)) = (status.is_success(), reply.retry_after) {
                                resp.headers_mut()
                                    .insert("retry-after", ra.parse().unwrap());
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Upstream { addr, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// A fresh, empty directory under the system's temp dir, unique to this process and `tag`.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hookgate-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An address on which nothing listens (bound, then closed).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A free loopback address for a server that a test stops and starts again on the same port
/// (a gateway restarted after SIGKILL, an app that flaps). Chosen below the kernel's
/// ephemeral range: a port from [`dead_addr`] can be taken, while the server is down, as the
/// local port of some other test's outgoing connection, and then never binds again.
pub async fn rebindable_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU16, Ordering};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Spread processes (pid) and calls (counter) over [10000, low).
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = low.saturating_sub(10_000).max(1);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000
            + ((std::process::id() as u64 * 7919 + u64::from(n) * 104_729) % u64::from(span))
                as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)).await {
            return l.local_addr().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// A `gateway.yaml` as the tests write it: what comes before `routes:` (by default one plain
/// listener and the admin listener, both on 127.0.0.1:0), then the test's own routes, written
/// out in the test. Only what a test changes is named at its call, e.g.
/// `Yaml::new().top("limits:\n  drain_delay: 0s\n").routes(&routes)`.
#[derive(Clone, Debug)]
pub struct Yaml {
    /// The items under `listeners:`.
    listeners: String,
    /// The lines under `admin:`; `None` for no admin listener.
    admin: Option<String>,
    /// Other top-level keys, written as given, after `admin:`.
    top: String,
}

impl Default for Yaml {
    fn default() -> Self {
        Yaml {
            listeners: "  - addr: 127.0.0.1:0\n".into(),
            admin: Some("  addr: 127.0.0.1:0\n".into()),
            top: String::new(),
        }
    }
}

impl Yaml {
    pub fn new() -> Yaml {
        Yaml::default()
    }

    /// The items under `listeners:` instead of the one plain listener (TLS, PROXY protocol,
    /// several listeners, a fixed address), each line ending in `\n`.
    pub fn listeners(mut self, items: &str) -> Yaml {
        self.listeners = items.into();
        self
    }

    /// The lines under `admin:` instead of `addr: 127.0.0.1:0` (a token file, a fixed port).
    pub fn admin(mut self, lines: &str) -> Yaml {
        self.admin = Some(lines.into());
        self
    }

    /// No admin listener (a file only `hookgate check` reads).
    pub fn no_admin(mut self) -> Yaml {
        self.admin = None;
        self
    }

    /// More top-level keys (`limits:`, `queue_store:`, `workers:`, ...), each line ending in
    /// `\n`; added after those of earlier calls.
    pub fn top(mut self, keys: &str) -> Yaml {
        self.top += keys;
        self
    }

    /// The whole file: the preamble, then `routes:` with `routes` (its items) under it.
    pub fn routes(&self, routes: &str) -> String {
        let admin = match &self.admin {
            Some(lines) => format!("admin:\n{lines}"),
            None => String::new(),
        };
        format!(
            "listeners:\n{}{admin}{}routes:\n{routes}",
            self.listeners, self.top
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway under test

/// The real gateway, started in this process on `127.0.0.1:0` (the compiled configuration
/// is `hookgate::model::Gateway`; this is the running server around it).
pub struct Hookgate {
    pub addr: SocketAddr,
    /// Every listener's bound address, in configuration order (`addr` is the first).
    pub listen_addrs: Vec<SocketAddr>,
    pub admin: SocketAddr,
    pub metrics: Arc<Metrics>,
    running: Option<Running>,
}

impl Hookgate {
    /// Starts the real server from YAML; `env` supplies `${VARS}`.
    pub async fn start(yaml: &str, env: &[(&str, &str)]) -> Hookgate {
        Hookgate::start_with_clock(yaml, env, SystemTime::now).await
    }

    pub async fn start_with_clock(yaml: &str, env: &[(&str, &str)], clock: Clock) -> Hookgate {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let loaded = compile(yaml, Path::new("."), &move |n| env.get(n).cloned())
            .unwrap_or_else(|e| panic!("test config must compile: {e}"));
        Hookgate::serve(loaded, clock).await
    }

    /// Starts the real server from a configuration file, as `hookgate run -c FILE` does.
    pub async fn start_file(path: &Path) -> Hookgate {
        let loaded = hookgate::config::load(path)
            .unwrap_or_else(|e| panic!("test config must compile: {e}"));
        Hookgate::serve(loaded, SystemTime::now).await
    }

    async fn serve(loaded: hookgate::config::Loaded, clock: Clock) -> Hookgate {
        let metrics = Arc::new(Metrics::new());
        metrics.config_loaded(&loaded.sha256);
        let running = server::start(loaded.gateway, metrics.clone(), clock)
            .await
            .unwrap();
        Hookgate {
            addr: running.listen_addrs[0],
            listen_addrs: running.listen_addrs.clone(),
            admin: running.admin_addr,
            metrics,
            running: Some(running),
        }
    }

    /// Reloads from `path`, as SIGHUP does; whether it took effect.
    pub async fn reload(&self, path: &Path) -> bool {
        hookgate::reload::reload_file(self.running.as_ref().expect("running"), path)
            .await
            .is_some()
    }

    /// Reloads from `path` through [`Running::reload`] itself, and returns what the reload
    /// kept as it was (needs a restart); panics if the reload fails.
    pub async fn reload_kept(&self, path: &Path) -> Vec<&'static str> {
        let loaded = hookgate::config::load(path)
            .unwrap_or_else(|e| panic!("test config must compile: {e}"));
        self.running
            .as_ref()
            .expect("running")
            .reload(loaded.gateway)
            .await
            .unwrap_or_else(|e| panic!("reload failed: {e}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Value of one series in the gateway's own registry, e.g.
    /// `counter("hookgate_requests_total", &[("route","lahza"),("outcome","forwarded")])`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(
            &String::from_utf8(self.metrics.render()).unwrap(),
            name,
            labels,
        )
    }

    pub fn outcome(&self, route: &str, outcome: &str) -> f64 {
        self.counter(
            "hookgate_requests_total",
            &[("route", route), ("outcome", outcome)],
        )
    }

    /// The running server itself, to stop it another way (`drain`); `shutdown` then does
    /// nothing.
    pub fn take_running(&mut self) -> Running {
        self.running.take().expect("still running")
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Waits up to 2 s for `f` to become true. For what the gateway records after the client
/// has already seen the connection close (workers run on their own threads).
pub async fn eventually(what: &str, f: impl Fn() -> bool) {
    eventually_within(what, Duration::from_secs(2), f).await
}

/// [`eventually`] for something that takes longer than usual (a periodic probe, a restart).
pub async fn eventually_within(what: &str, within: Duration, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads one sample from Prometheus text: the line for `name` whose labels include all of
/// `labels`. Panics if absent, so a test cannot pass on a metric that does not exist.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_part, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let end = r.find('}').unwrap();
                (&r[..end], r[end + 1..].trim())
            }
            None if rest.starts_with(' ') => ("", rest.trim()),
            None => continue,
        };
        if labels
            .iter()
            .all(|(k, v)| label_part.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
        {
            return value.parse().unwrap();
        }
    }
    panic!("metric {name} {labels:?} not found in:\n{text}");
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A plain HTTP/1.1 response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub async fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    send("POST", url, headers, body).await
}

pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Writes raw bytes to `addr`, then reads until the server closes or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_until_close(&mut s, wait).await
}

pub async fn read_until_close(s: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Senders: each signs the way its own docs say (see tests/vectors and ../shared/senders.md).

pub fn hmac_sha256(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The headers a seed sender attaches to `body` (listrak at timestamp `ts`).
pub fn sign_as(sender: &str, secret: &str, body: &[u8], ts: u64) -> Vec<(String, String)> {
    let mac = hmac_sha256(secret, &[body]);
    match sender {
        "laso" => vec![("x-signature".into(), hex::encode(mac))],
        "lahza" => vec![("x-lahza-signature".into(), hex::encode(mac))],
        "lomi" => vec![("X-Lomi-Signature".into(), hex::encode(mac))],
        "ltvboost" => vec![(
            "x-ltvboost-signature".into(),
            format!("sha256={}", hex::encode(mac)),
        )],
        // Listrak's Python/C# examples: base64(HMAC(body + timestamp)).
        "listrak" => {
            let ts = ts.to_string();
            let mac = hmac_sha256(secret, &[body, ts.as_bytes()]);
            vec![
                ("LTK-Timestamp".into(), ts),
                (
                    "LTK-HmacSignature".into(),
                    base64::engine::general_purpose::STANDARD.encode(mac),
                ),
            ]
        }
        other => panic!("unknown sender {other}"),
    }
}

pub fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Each seed sender's test secret (the values from tests/vectors/seed-senders.json).
pub const SECRETS: &[(&str, &str, &str)] = &[
    ("laso", "LASO_SECRET", "laso_whsec_3f1c9a"),
    ("lahza", "LAHZA_SECRET", "sk_live_lahza_8c2e"),
    ("lomi", "LOMI_SECRET", "whsec_lomi_51b0"),
    ("ltvboost", "LTVBOOST_SECRET", "ltv_secret_a7"),
    ("listrak", "LISTRAK_SECRET", "LTK-secret-99"),
];

pub fn secret_of(sender: &str) -> &'static str {
    SECRETS.iter().find(|s| s.0 == sender).unwrap().2
}

pub fn env_secrets() -> Vec<(&'static str, &'static str)> {
    SECRETS.iter().map(|(_, var, val)| (*var, *val)).collect()
}

/// A config with one route per seed sender at `/hooks/<sender>`, all to `upstream`.
pub fn seed_config(upstream: &str, extra_top: &str) -> String {
    let mut routes = String::new();
    for (sender, var, _) in SECRETS {
        routes += &format!(
            "  - name: {sender}\n    path: /hooks/{sender}\n    upstream: {upstream}\n    verify:\n      preset: {sender}\n      secret: \"${{{var}}}\"\n"
        );
    }
    Yaml::new().top(extra_top).routes(&routes)
}

// ---------------------------------------------------------------------------------------------
// Redis: a real redis-server on a loopback port chosen here, started and stopped by the test.

pub struct RedisServer {
    pub port: u16,
    /// The server while it runs; killed when dropped.
    child: Option<KillOnDrop>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let port = rebindable_addr().await.port();
        let mut r = RedisServer { port, child: None };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts redis-server on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("redis-server");
        let child = Command::new(binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it: apt-get install redis-server")
            });
        self.child = Some(KillOnDrop(child));
        for _ in 0..100 {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)).await {
                let _ = s.write_all(b"PING\r\n").await;
                let mut buf = [0u8; 7];
                if s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n" {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not come up on port {}", self.port);
    }

    /// Kills the server and waits until the port is closed.
    pub async fn stop(&mut self) {
        drop(self.child.take());
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary, as a child process

/// The `hookgate` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_hookgate");

/// A `hookgate` command line (`check`, `sign`, `queue`, ... run to their end with `output()`;
/// `run` started with [`spawn`] or [`start`]).
pub fn bin() -> Command {
    Command::new(BIN)
}

/// `hookgate run -c CONFIG`, for [`start`] or [`spawn`]: `start(run(&config).env(..), ..)`.
pub fn run(config: &Path) -> Command {
    let mut command = bin();
    command.args(["run", "-c"]).arg(config);
    command
}

/// A signal for [`signal`].
#[derive(Clone, Copy, Debug)]
pub enum Signal {
    /// Drain and stop (hookgate); what `docker stop` and systemd send.
    Term,
    /// Reload (hookgate); what `systemctl reload` sends.
    Hup,
    /// PostgreSQL's fast shutdown.
    Int,
    /// PostgreSQL's immediate shutdown.
    Quit,
    /// No cleanup at all: a crash.
    Kill,
}

/// Sends `sig` to `child`, a process this test started. Nothing is sent once it has exited and
/// been reaped (its pid may then be another process's); panics if kill(2) fails.
pub fn signal(child: &mut Child, sig: Signal) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let number = match sig {
        Signal::Term => libc::SIGTERM,
        Signal::Hup => libc::SIGHUP,
        Signal::Int => libc::SIGINT,
        Signal::Quit => libc::SIGQUIT,
        Signal::Kill => libc::SIGKILL,
    };
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let sent = unsafe { libc::kill(pid, number) };
    assert_eq!(
        sent,
        0,
        "kill({pid}, {sig:?}): {}",
        std::io::Error::last_os_error()
    );
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves none
/// behind. Derefs to the [`Child`] to signal it, wait for it or read its pid.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        signal(&mut self.0, Signal::Kill);
        let _ = self.0.wait();
    }
}

/// Spawns `command` (a `hookgate` command line: [`run`], or one wrapped in `setpriv`) with
/// stdout discarded and stderr to `stderr`, logging at info unless the command sets or removes
/// `HOOKGATE_LOG` itself. Returns at once: [`start`] waits for the listeners.
pub fn spawn(command: &mut Command, stderr: Stdio) -> KillOnDrop {
    if !command.get_envs().any(|(k, _)| k == "HOOKGATE_LOG") {
        command.env("HOOKGATE_LOG", "info");
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    KillOnDrop(child)
}

/// Stderr appended to `path` (a log several runs of a gateway share), for [`spawn`].
pub fn append_to(path: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into()
}

/// What [`start`] waits for in the child's log before it returns.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ready {
    /// The admin listener too (else only the first plain listener).
    pub admin: bool,
    /// Fail on an error logged before then.
    pub no_errors: bool,
}

/// A started `hookgate run`: the process (killed when dropped) and what it logged.
pub struct Started {
    pub process: KillOnDrop,
    /// Its first listener without TLS.
    pub addr: SocketAddr,
    /// Its admin listener, if [`Ready::admin`] asked for it.
    pub admin: Option<SocketAddr>,
    /// Every log line after the ones `start` waited for.
    pub lines: std::sync::mpsc::Receiver<String>,
}

/// [`spawn`]s `command` with stderr piped and waits until it has logged its listeners (so a
/// configuration can use port 0), as `ready` says.
pub fn start(command: &mut Command, ready: Ready) -> Started {
    let mut process = spawn(command, Stdio::piped());
    let log = watch_start(&mut process, ready.admin, ready.no_errors);
    Started {
        process,
        addr: log.addr,
        admin: log.admin,
        lines: log.lines,
    }
}

/// What a started `hookgate run` child (with `HOOKGATE_LOG=info` and stderr piped) logged:
/// its first listener without TLS, its admin listener, and every line after the one that
/// completed them.
struct StartLog {
    pub addr: SocketAddr,
    /// `None` unless asked for.
    pub admin: Option<SocketAddr>,
    pub lines: std::sync::mpsc::Receiver<String>,
}

/// Reads `child`'s stderr until it has logged its first plain listener (and, with
/// `want_admin`, its admin listener), so a configuration can use port 0. Panics after 20 s,
/// or, with `fail_on_error`, on an error logged before then.
fn watch_start(child: &mut Child, want_admin: bool, fail_on_error: bool) -> StartLog {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().expect("hookgate's stderr is piped");
    let (started_tx, started) = std::sync::mpsc::channel();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut addr, mut admin): (Option<SocketAddr>, Option<SocketAddr>) = (None, None);
        let mut done = false;
        // What the child said before it was up, for the failure message if it never is.
        let mut early: Vec<String> = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if done {
                let _ = lines_tx.send(line);
                continue;
            }
            let logged = || {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.trim_matches('"').parse::<SocketAddr>().ok())
            };
            if line.contains("admin listening") {
                admin = logged();
                if admin.is_none() {
                    let _ = started_tx.send(Err(format!("no address in {line:?}")));
                    return;
                }
            } else if line.contains("listening") && line.contains("tls=false") {
                if addr.is_none() {
                    addr = logged();
                    if addr.is_none() {
                        let _ = started_tx.send(Err(format!("no address in {line:?}")));
                        return;
                    }
                }
            } else if fail_on_error && (line.contains("ERROR") || line.contains("error")) {
                let _ = started_tx.send(Err(format!("error logged at start: {line:?}")));
                return;
            }
            if let Some(a) = addr.filter(|_| admin.is_some() || !want_admin) {
                let _ = started_tx.send(Ok((a, admin)));
                done = true;
            } else {
                early.push(line);
            }
        }
        if !done {
            let tail = early[early.len().saturating_sub(20)..].join("\n");
            let _ = started_tx.send(Err(format!("exited before listening; it said:\n{tail}")));
        }
    });
    match started.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok((addr, admin))) => StartLog { addr, admin, lines },
        Ok(Err(why)) => panic!("hookgate did not start: {why}"),
        Err(_) => panic!("hookgate did not log its listeners within 20 s"),
    }
}
