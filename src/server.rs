//! Listeners and connections: accept loops with a connection limit, TLS handshakes, HTTP/1.1
//! (plain and TLS) and HTTP/2 (TLS, by ALPN), header read timeouts, and graceful shutdown.
//!
//! [`start`] binds everything and returns a [`Running`] handle with the bound addresses
//! (listeners may ask for port 0), which `main.rs` and the integration tests both use.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::delivery::{Queue, QueueSlot, QueueStore, QueueStoreError};
use crate::gateway;
use crate::metrics::{Metrics, RouteMetrics};
use crate::model::{Gateway, RuntimeModel};
use crate::replay::Store;
use crate::runtime::InForce;
use crate::runtime::{Clock, Conn, CutOff, Shared};

/// A started gateway.
pub struct Running {
    /// Bound address of each configured listener, in configuration order.
    pub listen_addrs: Vec<SocketAddr>,
    /// Bound address of the admin listener.
    pub admin_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    /// Stops the webhook listeners (the admin listener has its own, sent last).
    shutdown: watch::Sender<bool>,
    admin_shutdown: watch::Sender<bool>,
    ready: Arc<admin::Readiness>,
    cut_off: Arc<CutOff>,
    /// How long `/readyz` says 503 before the listeners stop (`limits.drain_delay`).
    drain_delay: Duration,
    tasks: Vec<JoinHandle<()>>,
    admin: JoinHandle<()>,
    /// Per-core worker threads, each reporting when its listeners are closed and whatever
    /// the grace period cut off has been dropped.
    workers: Vec<tokio::sync::oneshot::Receiver<()>>,
    /// Each worker's state; a reload swaps the configuration in every one.
    shared: Vec<Arc<Shared>>,
    /// The delivery worker's configuration, swapped with the others.
    delivery_config: Arc<crate::runtime::ConfigSlot>,
    per_ip: Arc<PerIp>,
    body_budget: Arc<crate::body::BodyBudget>,
    /// The queue store, once open (at start, or by the reload that first configures one),
    /// and what its delivery worker needs when a reload starts it.
    queue: Arc<QueueSlot>,
    clock: Clock,
    shutdown_rx: watch::Receiver<bool>,
    /// Tasks started after [`start`] (a reload's delivery worker); stopped with the rest.
    later_tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Held by a reload from start to end.
    reloading: tokio::sync::Mutex<()>,
}

/// How a shutdown went.
#[derive(Clone)]
pub struct Stopped {
    metrics: Arc<Metrics>,
    cut_off: Arc<CutOff>,
    /// `hookgate_requests_total` summed when the shutdown began.
    requests_at_signal: u64,
}

impl Stopped {
    /// Requests answered since the shutdown began.
    pub fn completed(&self) -> u64 {
        self.metrics
            .requests_total()
            .saturating_sub(self.requests_at_signal)
    }

    /// Requests still running when `shutdown_grace` ran out. Complete only once the runtime
    /// that ran them has been dropped (that is what cuts them off).
    pub fn cut_off(&self) -> u64 {
        self.cut_off.cut_off.load(Ordering::SeqCst)
    }
}

impl Running {
    /// The configuration in force.
    pub fn in_force(&self) -> Arc<Gateway> {
        self.shared[0].config.load().gateway.clone()
    }

    /// Whether a queue store is open (at start, or by an earlier reload).
    pub fn queue_is_open(&self) -> bool {
        self.queue.get().is_some()
    }

    /// Held by a reload from its start to its end: one at a time, so a second reload sees
    /// the store the first opened.
    pub async fn reload_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.reloading.lock().await
    }

    /// Opens the queue store `config` names and puts it in the slot, before the
    /// configuration that queues a route is in force, so that no request of that route finds
    /// the slot empty. Its delivery worker starts with [`Running::put_in_force`].
    pub async fn open_queue_store(
        &self,
        config: &crate::model::QueueStoreConfig,
    ) -> Result<Arc<Queue>, QueueStoreError> {
        let queue = open_queue(config, &self.metrics).await?;
        let _ = self.queue.set(queue.clone());
        Ok(queue)
    }

    /// Puts `next` in force in every worker at once: requests already in flight finish on
    /// the one they started with, new ones get this one. Idle upstream connections are kept
    /// for every upstream it still uses; no connection is closed. `next` must already be
    /// what the reload policy kept (`reload::restart_only`). A queue store `opened` for it
    /// gets its delivery worker now, after the swap, so the worker starts on the
    /// configuration that queues routes (events handed to it meanwhile wait in its channel).
    pub fn put_in_force(&self, next: Gateway, opened: Option<Arc<Queue>>) {
        self.per_ip.set(
            next.limits.max_connections_per_ip,
            next.trusted_proxies.clone(),
        );
        self.body_budget
            .set_limit(next.limits.max_buffered_body_bytes);
        let next = Arc::new(next);
        let route_metrics = crate::runtime::route_metrics(&next, &self.metrics);
        for slot in self
            .shared
            .iter()
            .map(|s| &s.config)
            .chain([&self.delivery_config])
        {
            let previous = slot.load_full();
            slot.store(Arc::new(InForce::new(
                next.clone(),
                route_metrics.clone(),
                Some(&previous.upstreams),
            )));
        }
        if let Some(queue) = opened {
            let tasks = delivery_tasks(
                &queue,
                &self.delivery_config,
                &self.metrics,
                self.clock,
                &self.shutdown_rx,
            );
            self.later_tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(tasks);
        }
    }

    /// A graceful stop, as on SIGTERM: `/readyz` answers 503 at once while requests are
    /// still served for `limits.drain_delay` (the time a load balancer needs to stop sending;
    /// cut short when `skip` completes, e.g. on a second signal), then [`Running::shutdown`].
    pub async fn drain(self, skip: impl std::future::Future<Output = ()>) -> Stopped {
        self.ready.set_draining();
        let at_signal = self.metrics.requests_total();
        tracing::info!(
            drain_delay = ?self.drain_delay,
            "draining: /readyz answers 503 (draining); still serving until the load balancer \
             stops sending"
        );
        tokio::select! {
            _ = tokio::time::sleep(self.drain_delay) => {}
            _ = skip => tracing::info!("drain delay cut short"),
        }
        self.stop(at_signal).await
    }

    /// Stops accepting, lets in-flight requests finish (up to `limits.shutdown_grace`) and
    /// returns when every listener is closed. The admin listener serves until the end.
    pub async fn shutdown(self) -> Stopped {
        self.ready.set_draining();
        let at_signal = self.metrics.requests_total();
        self.stop(at_signal).await
    }

    /// The stop itself; requests answered since `requests_at_signal` count as completed.
    async fn stop(self, requests_at_signal: u64) -> Stopped {
        tracing::info!("no new connections; finishing in-flight requests");
        let _ = self.shutdown.send(true);
        let later =
            std::mem::take(&mut *self.later_tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in self.tasks.into_iter().chain(later) {
            let _ = task.await;
        }
        for done in self.workers {
            let _ = done.await;
        }
        let _ = self.admin_shutdown.send(true);
        let _ = self.admin.await;
        // Last: nothing uses the store any more. Undelivered events stay in it.
        if let Some(queue) = self.queue.get() {
            queue.store.close().await;
        }
        Stopped {
            metrics: self.metrics,
            cut_off: self.cut_off,
            requests_at_signal,
        }
    }
}

/// Binds all listeners and the admin listener and starts serving.
///
/// With `workers > 1` and `runtime: per_core`, each worker is a thread running its own
/// current-thread runtime with its own SO_REUSEPORT copy of every listener and its own
/// upstream pool; otherwise the accept loops run on the calling runtime. The admin listener
/// runs on the calling runtime either way.
pub async fn start(gateway: Gateway, metrics: Arc<Metrics>, clock: Clock) -> io::Result<Running> {
    let gateway = Arc::new(gateway);
    let process = ProcessWide::open(&gateway, metrics, clock).await?;
    let per_core = gateway.workers > 1 && gateway.runtime == RuntimeModel::PerCore;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (admin_shutdown, admin_shutdown_rx) = watch::channel(false);
    let (first, listen_addrs) = bind_listeners(&gateway, per_core)?;
    let admin_listener = bind_admin(gateway.admin).await?;
    let route_metrics = crate::runtime::route_metrics(&gateway, &process.metrics);
    let worker_shared = || process.worker_shared(&gateway, &route_metrics);
    for (addr, l) in listen_addrs.iter().zip(&gateway.listeners) {
        tracing::info!(%addr, tls = l.tls.is_some(), workers = gateway.workers, "listening");
    }
    let mut tasks = Vec::new();
    let (all_shared, workers) = if per_core {
        let sets = bind_worker_copies(first, &listen_addrs, gateway.workers)?;
        start_per_core_workers(sets, &worker_shared, &process, &shutdown_rx)?
    } else {
        let listeners = attach(first)?;
        let shared = worker_shared();
        tasks.push(tokio::spawn(serve(
            listeners,
            shared.clone(),
            process.connections.clone(),
            process.per_ip.clone(),
            shutdown_rx.clone(),
        )));
        (vec![shared], Vec::new())
    };

    let admin_addr = admin_listener.local_addr()?;
    log_admin_listening(admin_addr, process.queue.get().is_some());
    tasks.extend(upkeep_tasks(&process, &shutdown_rx));
    let (delivery_config, delivery) =
        start_delivery(&gateway, &route_metrics, &process, &shutdown_rx);
    tasks.extend(delivery);
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        Arc::new(admin::Admin {
            metrics: process.metrics.clone(),
            ready: process.ready.clone(),
            queue: process.queue.clone(),
            config: delivery_config.clone(),
            keys: process.keys.clone(),
        }),
        gateway.limits.header_read_timeout,
        admin_shutdown_rx,
    ));
    process.ready.set_ready();
    Ok(Running {
        listen_addrs,
        admin_addr,
        metrics: process.metrics,
        shutdown,
        admin_shutdown,
        ready: process.ready,
        cut_off: process.cut_off,
        drain_delay: gateway.limits.drain_delay,
        tasks,
        admin,
        workers,
        shared: all_shared,
        delivery_config,
        per_ip: process.per_ip,
        body_budget: process.body_budget,
        queue: process.queue,
        clock,
        shutdown_rx,
        later_tasks: std::sync::Mutex::new(Vec::new()),
        reloading: tokio::sync::Mutex::new(()),
    })
}

/// What `start` builds once for the whole process and every worker shares: the stores, the
/// limits that protect the process (not a port), readiness and the shutdown cut-off.
struct ProcessWide {
    metrics: Arc<Metrics>,
    clock: Clock,
    /// Built even when no route has `replay:` yet, so that a reload can add one.
    replay_store: Option<Arc<Store>>,
    queue: Arc<QueueSlot>,
    cut_off: Arc<CutOff>,
    ready: Arc<admin::Readiness>,
    /// One limit across all listeners and workers: it protects the process, not a port.
    connections: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    body_budget: Arc<crate::body::BodyBudget>,
    /// Keys fetched from the network, one cache for the process.
    keys: Arc<crate::remote_keys::cache::KeyCache>,
}

impl ProcessWide {
    /// Opens the replay store and the queue store (when `queue_store:` names one) and sets
    /// the process-wide limits from `gateway`.
    async fn open(
        gateway: &Gateway,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> io::Result<ProcessWide> {
        let replay_store = Some(Arc::new(open_replay_store(gateway, &metrics)?));
        let queue = Arc::new(QueueSlot::new());
        if let Some(config) = &gateway.queue_store {
            let opened = open_queue(config, &metrics)
                .await
                .map_err(|e| io::Error::other(e.to_string()))?;
            let _ = queue.set(opened);
        }
        let body_budget = crate::body::BodyBudget::new(
            gateway.limits.max_buffered_body_bytes,
            metrics.body_buffered.clone(),
        );
        let keys = Arc::new(open_key_cache(gateway, &metrics, clock)?);
        Ok(ProcessWide {
            keys,
            clock,
            replay_store,
            queue,
            cut_off: Arc::new(CutOff::default()),
            ready: Arc::new(admin::Readiness::default()),
            connections: Arc::new(Semaphore::new(gateway.limits.max_connections)),
            per_ip: Arc::new(PerIp::new(
                gateway.limits.max_connections_per_ip,
                gateway.trusted_proxies.clone(),
            )),
            body_budget,
            metrics,
        })
    }

    /// One worker's state, serving `gateway` from the start.
    fn worker_shared(&self, gateway: &Arc<Gateway>, route_metrics: &[RouteMetrics]) -> Arc<Shared> {
        Arc::new(Shared {
            config: Arc::new(ArcSwap::from_pointee(InForce::new(
                gateway.clone(),
                route_metrics.to_vec(),
                None,
            ))),
            metrics: self.metrics.clone(),
            clock: self.clock,
            replay_store: self.replay_store.clone(),
            body_budget: self.body_budget.clone(),
            cut_off: self.cut_off.clone(),
            queue: self.queue.clone(),
            keys: self.keys.clone(),
        })
    }
}

/// The key cache `key_fetch:` describes. Its TLS trusts `key_fetch.ca_file` or the system's
/// roots; without either, it starts only if no route fetches a key (and fetches nothing).
fn open_key_cache(
    gateway: &Gateway,
    metrics: &Metrics,
    clock: Clock,
) -> io::Result<crate::remote_keys::cache::KeyCache> {
    let config = &gateway.key_fetch;
    let fetches = gateway
        .routes
        .routes()
        .iter()
        .any(|r| r.scheme.as_ref().is_some_and(|s| s.fetches_key()));
    let (tls, roots) =
        match crate::tls::upstream_config("keys", None, config.ca_file.as_deref(), None, None) {
            Ok(tls) => (tls.config, tls.roots),
            Err(e) if fetches => return Err(io::Error::other(format!("key_fetch: {e}"))),
            Err(_) => (
                Arc::new(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| io::Error::other(format!("TLS setup: {e}")))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                ),
                Arc::new(rustls::RootCertStore::empty()),
            ),
        };
    let counters = crate::remote_keys::cache::KeyMetrics {
        fetches: metrics.keys.fetches.clone(),
        lookups: metrics.keys.lookups.clone(),
    };
    Ok(crate::remote_keys::cache_for(
        config, tls, roots, counters, clock,
    ))
}

/// The replay store `replay_store:` names; says so when a route uses it.
fn open_replay_store(gateway: &Gateway, metrics: &Arc<Metrics>) -> io::Result<Store> {
    let store = Store::new(&gateway.replay_store, metrics.clone())
        .map_err(|e| io::Error::other(format!("replay store: {e}")))?;
    if gateway
        .routes
        .routes()
        .iter()
        .any(|r| r.uses_replay_store())
    {
        tracing::info!(store = store.kind(), "replay protection on");
    }
    Ok(store)
}

/// The first set of listeners, one per `listeners:` entry, and the addresses they are bound
/// to. It fixes the ports (a listener may ask for port 0); per-core workers bind their
/// copies to the same ports.
fn bind_listeners(
    gateway: &Gateway,
    per_core: bool,
) -> io::Result<(Vec<std::net::TcpListener>, Vec<SocketAddr>)> {
    let mut first = Vec::new();
    for l in &gateway.listeners {
        let listener = if per_core {
            bind_first_of_shared_port(l.addr)?
        } else {
            bind(l.addr, false).map_err(|e| cannot_listen(l.addr, e))?
        };
        first.push(listener);
    }
    let listen_addrs = first
        .iter()
        .map(|l| l.local_addr())
        .collect::<io::Result<Vec<_>>>()?;
    Ok((first, listen_addrs))
}

/// Binds `addr` with SO_REUSEPORT, after checking that no other socket holds it.
fn bind_first_of_shared_port(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let cannot = |e| cannot_listen(addr, e);
    // SO_REUSEPORT would let this bind succeed next to another process of this user on the
    // same port (a stale instance), silently splitting its traffic. Bound once without it
    // first, an address in use is refused as usual.
    // Port 0: between the probe and the bind another process may take the port the kernel
    // picked; pick again rather than fail.
    let mut tries = if addr.port() == 0 { 5 } else { 1 };
    loop {
        let probe = bind(addr, false).map_err(cannot)?;
        let bound = probe.local_addr()?;
        drop(probe);
        match bind(bound, true) {
            Ok(listener) => return Ok(listener),
            Err(e) if tries > 1 && e.kind() == io::ErrorKind::AddrInUse => tries -= 1,
            Err(e) => return Err(cannot(e)),
        }
    }
}

async fn bind_admin(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on admin {addr}: {e}")))
}

/// One set of listeners per worker: `first`, then a SO_REUSEPORT copy of it for each other
/// worker.
fn bind_worker_copies(
    first: Vec<std::net::TcpListener>,
    listen_addrs: &[SocketAddr],
    workers: usize,
) -> io::Result<Vec<Vec<std::net::TcpListener>>> {
    let mut sets = vec![first];
    for _ in 1..workers {
        let mut set = Vec::new();
        for addr in listen_addrs {
            set.push(bind(*addr, true).map_err(|e| cannot_listen(*addr, e))?);
        }
        sets.push(set);
    }
    Ok(sets)
}

/// Told when a per-core worker is done: its listeners closed, what the grace period cut
/// off dropped.
type WorkerDone = tokio::sync::oneshot::Receiver<()>;

/// Starts one worker thread per set of listeners, each with its own current-thread runtime.
/// Returns each worker's state and a receiver told when that worker is done.
fn start_per_core_workers(
    sets: Vec<Vec<std::net::TcpListener>>,
    worker_shared: &dyn Fn() -> Arc<Shared>,
    process: &ProcessWide,
    shutdown_rx: &watch::Receiver<bool>,
) -> io::Result<(Vec<Arc<Shared>>, Vec<WorkerDone>)> {
    let mut all_shared = Vec::new();
    let mut workers = Vec::new();
    // Every worker's runtime keeps running until all workers have drained: a task one of
    // them started for all (the Redis store's connection) must outlive the others' last
    // requests.
    let all_drained = Arc::new(tokio::sync::Barrier::new(sets.len()));
    for (i, set) in sets.into_iter().enumerate() {
        // Built here, so that a worker that cannot start fails `start`.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listeners = {
            let _in_worker = rt.enter();
            attach(set)?
        };
        let shared = worker_shared();
        all_shared.push(shared.clone());
        let connections = process.connections.clone();
        let per_ip = process.per_ip.clone();
        let shutdown_rx = shutdown_rx.clone();
        let all_drained = all_drained.clone();
        let (done, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("hookgate-worker-{i}"))
            .spawn(move || {
                rt.block_on(async {
                    serve(listeners, shared, connections, per_ip, shutdown_rx).await;
                    all_drained.wait().await;
                });
                // Drops what the grace period cut off (each logs itself) before saying
                // this worker is done.
                drop(rt);
                let _ = done.send(());
            })?;
        workers.push(done_rx);
    }
    Ok((all_shared, workers))
}

fn log_admin_listening(admin_addr: SocketAddr, queued: bool) {
    if queued {
        tracing::info!(addr = %admin_addr, "admin listening (/metrics /healthz /readyz /queue/)");
    } else {
        tracing::info!(addr = %admin_addr, "admin listening (/metrics /healthz /readyz)");
    }
}

/// The process's own upkeep: giving memory back after floods, probing the replay store.
fn upkeep_tasks(process: &ProcessWide, shutdown_rx: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(trim_after_floods(
        process.body_budget.clone(),
        shutdown_rx.clone(),
    ))];
    if let Some(store) = &process.replay_store {
        tasks.push(tokio::spawn(probe_replay_store(
            store.clone(),
            shutdown_rx.clone(),
        )));
    }
    tasks
}

/// The delivery worker's configuration and, when a queue store is open, its tasks. It runs
/// here, with upstream pools of its own on this runtime.
fn start_delivery(
    gateway: &Arc<Gateway>,
    route_metrics: &[RouteMetrics],
    process: &ProcessWide,
    shutdown_rx: &watch::Receiver<bool>,
) -> (Arc<crate::runtime::ConfigSlot>, Vec<JoinHandle<()>>) {
    let delivery_config = Arc::new(ArcSwap::from_pointee(InForce::new(
        gateway.clone(),
        route_metrics.to_vec(),
        None,
    )));
    let mut tasks = Vec::new();
    if let Some(queue) = process.queue.get() {
        tasks.extend(delivery_tasks(
            queue,
            &delivery_config,
            &process.metrics,
            process.clock,
            shutdown_rx,
        ));
    }
    (delivery_config, tasks)
}

/// Opens the queue store `queue_store:` names.
async fn open_queue(
    config: &crate::model::QueueStoreConfig,
    metrics: &Arc<Metrics>,
) -> Result<Arc<Queue>, QueueStoreError> {
    let store = QueueStore::open(config, metrics.clone()).await?;
    tracing::info!(store = store.kind(), "queued delivery on");
    Ok(Arc::new(Queue::new(store)))
}

/// Starts the delivery worker of `queue` (and its upkeep: purges, depth gauges; and the
/// bulk replays) on this runtime, with upstream pools of its own; all end on `shutdown`.
fn delivery_tasks(
    queue: &Arc<Queue>,
    live: &Arc<crate::runtime::ConfigSlot>,
    metrics: &Arc<Metrics>,
    clock: Clock,
    shutdown: &watch::Receiver<bool>,
) -> [JoinHandle<()>; 3] {
    [
        tokio::spawn(crate::delivery::worker::run(
            queue.clone(),
            live.clone(),
            metrics.clone(),
            clock,
            shutdown.clone(),
        )),
        tokio::spawn(crate::delivery::worker::maintain(
            queue.clone(),
            live.clone(),
            metrics.clone(),
            clock,
            shutdown.clone(),
        )),
        tokio::spawn(crate::delivery::replays::run(
            queue.clone(),
            live.clone(),
            metrics.clone(),
            clock,
            shutdown.clone(),
        )),
    ]
}

fn cannot_listen(addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
}

/// Open connections per client address (`limits.max_connections_per_ip`), shared by every
/// listener and worker. An IPv6 client is counted by its /64, the block one host usually
/// has. Trusted proxies are exempt: every client behind a load balancer shares its address.
pub struct PerIp {
    state: std::sync::Mutex<PerIpState>,
}

struct PerIpState {
    limit: usize,
    exempt: Vec<ipnet::IpNet>,
    open: HashMap<IpAddr, usize>,
}

impl PerIp {
    pub fn new(limit: usize, exempt: Vec<ipnet::IpNet>) -> PerIp {
        PerIp {
            state: std::sync::Mutex::new(PerIpState {
                limit,
                exempt,
                open: HashMap::new(),
            }),
        }
    }

    /// A reload's new limit and trusted proxies; connections already open stay.
    pub fn set(&self, limit: usize, exempt: Vec<ipnet::IpNet>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.limit = limit;
        state.exempt = exempt;
    }

    fn limit(&self) -> usize {
        self.state.lock().map_or(0, |s| s.limit)
    }

    /// [`PerIp::admit`], with a refusal logged and counted (the connection is to be closed).
    fn admit_or_count(
        self: &Arc<Self>,
        client: SocketAddr,
        metrics: &Metrics,
    ) -> Option<PerIpSlot> {
        let slot = self.admit(client.ip());
        if slot.is_none() {
            tracing::warn!(%client, limit = self.limit(), "too many connections from this address; closed");
            count_error(metrics, "per_ip_limit");
        }
        slot
    }

    /// A slot for one more connection from `peer`, or `None` at its limit.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<PerIpSlot> {
        let peer = crate::client_ip::canonical(peer);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if crate::client_ip::is_in(peer, &state.exempt) {
            return Some(PerIpSlot(None));
        }
        let key = crate::client_ip::limit_key(peer);
        let limit = state.limit;
        let n = state.open.entry(key).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(PerIpSlot(Some((self.clone(), key))))
    }
}

/// One admitted connection; gives its slot back when dropped.
pub struct PerIpSlot(Option<(Arc<PerIp>, IpAddr)>);

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        if let Some((per_ip, key)) = self.0.take() {
            let mut state = per_ip.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = state.open.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    state.open.remove(&key);
                }
            }
        }
    }
}

/// A listening socket, not yet attached to a runtime. With `reuse_port`, several sockets
/// (one per worker) share the address and the kernel spreads connections over them.
fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    #[cfg(not(unix))]
    let _ = reuse_port;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    listener.into_std()
}

/// Registers listening sockets with the runtime entered (the worker's), each with its index
/// in `listeners:` (which finds its TLS settings in the configuration in force).
fn attach(set: Vec<std::net::TcpListener>) -> io::Result<Vec<(usize, TcpListener)>> {
    set.into_iter()
        .enumerate()
        .map(|(i, l)| Ok((i, TcpListener::from_std(l)?)))
        .collect()
}

/// One worker's share of the work: an accept loop per listener and the upstream sweeper,
/// until shutdown has closed every listener and drained their connections.
async fn serve(
    listeners: Vec<(usize, TcpListener)>,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    shutdown: watch::Receiver<bool>,
) {
    let mut loops = Vec::new();
    for (index, listener) in listeners {
        loops.push(tokio::spawn(accept_loop(
            listener,
            index,
            shared.clone(),
            connections.clone(),
            per_ip.clone(),
            shutdown.clone(),
        )));
    }
    let sweeper = tokio::spawn(sweep_upstreams(shared.clone(), shutdown));
    for l in loops {
        let _ = l.await;
    }
    let _ = sweeper.await;
}

/// Gives memory back to the system once a burst of large bodies has passed (see
/// `BodyBudget::trim`); the trim itself runs on a blocking thread.
async fn trim_after_floods(
    budget: Arc<crate::body::BodyBudget>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => if budget.trim_due() {
                let budget = budget.clone();
                let _ = tokio::task::spawn_blocking(move || budget.trim()).await;
                tracing::debug!("request bodies released; freed memory returned");
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Asks the replay store whether it answers every few seconds, so `hookgate_replay_store_up`
/// (and the alert on it) says how the store is now, not how it was at the last request.
async fn probe_replay_store(store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => store.probe().await,
            _ = shutdown.changed() => return,
        }
    }
}

/// Closes upstream connections left idle too long even when no request comes to reuse them.
async fn sweep_upstreams(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(crate::upstream::IDLE_TIMEOUT / 4);
    loop {
        tokio::select! {
            _ = tick.tick() => shared.config.load().upstreams.sweep(),
            _ = shutdown.changed() => return,
        }
    }
}

/// Accepts connections on one listener until shutdown, each served on a task of its own,
/// then gives those connections `limits.shutdown_grace` to finish.
async fn accept_loop(
    listener: TcpListener,
    index: usize,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let Some((stream, peer)) = accept_next(&listener, &mut shutdown).await else {
            break;
        };
        // One client cannot take every slot: past its share its connections are closed at
        // once, before they hold a slot or a buffer.
        let Some(ip_slot) = per_ip.admit_or_count(peer, &shared.metrics) else {
            drop(stream);
            continue;
        };
        let Some(permit) = connection_slot(&connections, &mut shutdown).await else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let shared = shared.clone();
        let (tls, proxy_protocol) = listener_settings(&shared, index);
        let conn_shutdown = shutdown.clone();
        let per_ip_for_proxied = per_ip.clone();
        tokio::spawn(async move {
            let _permit = (permit, ip_slot);
            let mut stream = stream;
            let (conn, _client_slot) = if proxy_protocol {
                match proxied_conn(&mut stream, peer, &shared, &per_ip_for_proxied).await {
                    Some(admitted) => admitted,
                    None => return,
                }
            } else {
                let conn = Conn {
                    peer,
                    tls: false,
                    proxied: false,
                };
                (conn, None)
            };
            serve_connection(stream, conn, tls, shared, watcher, conn_shutdown).await;
        });
    }
    drop(listener);
    finish_connections(graceful, &shared).await;
}

/// The next connection, or `None` once shutdown has begun.
async fn accept_next(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => return Some(x),
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => return None,
        }
    }
}

/// A slot under the process-wide connection limit, or `None` once shutdown has begun.
///
/// The slot is taken after accepting, not before: a loop must never hold a slot while
/// waiting on a socket the kernel may not send any connection to (several listeners, or
/// per-core copies of one, share the limit). At the limit this loop stops accepting; further
/// connections wait in the kernel's backlog.
async fn connection_slot(
    connections: &Arc<Semaphore>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::select! {
        p = connections.clone().acquire_owned() => p.ok(),
        _ = shutdown.changed() => None,
    }
}

/// The TLS acceptor and PROXY-protocol setting of listener `index` in the configuration in
/// force now: a reload's new certificate serves the next handshake.
fn listener_settings(shared: &Shared, index: usize) -> (Option<TlsAcceptor>, bool) {
    let live = shared.config.load();
    let listener = &live.gateway.listeners[index];
    (
        listener.tls.clone().map(TlsAcceptor::from),
        listener.proxy_protocol,
    )
}

/// On a PROXY listener: the connection as the carried client's, with the per-address slot
/// that client takes of its own (the balancer's is exempt as a trusted proxy), or `None`
/// when the connection is to be closed (logged and counted).
async fn proxied_conn(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    per_ip: &Arc<PerIp>,
) -> Option<(Conn, Option<PerIpSlot>)> {
    let client = proxied_peer(stream, peer, shared).await?;
    let conn = Conn {
        peer: client,
        tls: false,
        proxied: true,
    };
    let slot = per_ip.admit_or_count(client, &shared.metrics)?;
    Some((conn, Some(slot)))
}

/// Waits up to `limits.shutdown_grace` for this listener's connections to finish; past it,
/// marks what still runs as cut off.
async fn finish_connections(graceful: GracefulShutdown, shared: &Shared) {
    let grace = shared.config.load().gateway.limits.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        shared.cut_off.cutting_off.store(true, Ordering::SeqCst);
        tracing::warn!(
            in_flight = shared.metrics.in_flight.get(),
            "shutdown grace period over; cutting off what is still running"
        );
    }
}

/// On a PROXY-protocol listener: the client address the trusted proxy's header carries (or
/// the proxy itself, for its own health checks), or `None` when the connection must be
/// closed: a peer that is not a trusted proxy, or no valid header in time. Both are logged
/// and counted.
async fn proxied_peer(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<SocketAddr> {
    let (trusted, timeout) = {
        let live = shared.config.load();
        let g = &live.gateway;
        (
            crate::client_ip::is_in(crate::client_ip::canonical(peer.ip()), &g.trusted_proxies),
            g.limits.header_read_timeout,
        )
    };
    if !trusted {
        tracing::warn!(%peer, "PROXY protocol listener: peer is not a trusted proxy; closed");
        count_error(&shared.metrics, "proxy_untrusted");
        return None;
    }
    match crate::proxy_protocol::read_header(stream, timeout).await {
        Ok(Some(client)) => Some(client),
        Ok(None) => Some(peer),
        Err(e) => {
            tracing::warn!(%peer, error = ?e, "no valid PROXY protocol header; closed");
            count_error(&shared.metrics, "proxy_protocol");
            None
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    conn: Conn,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    watcher: Watcher,
    shutdown: watch::Receiver<bool>,
) {
    let metrics = shared.metrics.clone();
    metrics.connections.inc();
    match tls {
        None => serve_http1(TokioIo::new(stream), conn, &shared, watcher).await,
        // Boxed: the handshake, the TLS stream and an HTTP/2 connection are several KiB that a
        // plain-HTTP connection's task would otherwise carry (and touch) for its whole life.
        Some(acceptor) => {
            Box::pin(serve_tls(
                stream, conn, acceptor, &shared, watcher, shutdown,
            ))
            .await
        }
    }
    metrics.connections.dec();
}

async fn serve_tls(
    stream: TcpStream,
    conn: Conn,
    acceptor: TlsAcceptor,
    shared: &Arc<Shared>,
    watcher: Watcher,
    shutdown: watch::Receiver<bool>,
) {
    // The handshake gets the same budget as a request head.
    let budget = shared.config.load().gateway.limits.header_read_timeout;
    match tokio::time::timeout(budget, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let conn = Conn { tls: true, ..conn };
            if h2 {
                serve_http2(TokioIo::new(stream), conn, shared, watcher, shutdown).await;
            } else {
                serve_http1(TokioIo::new(stream), conn, shared, watcher).await;
            }
        }
        Ok(Err(e)) => {
            tracing::debug!(peer = %conn.peer, error = %e, "TLS handshake failed");
            count_error(&shared.metrics, "tls_handshake");
        }
        Err(_) => {
            tracing::debug!(peer = %conn.peer, "TLS handshake timed out");
            count_error(&shared.metrics, "tls_handshake");
        }
    }
}

async fn serve_http1<I>(io: I, conn: Conn, shared: &Arc<Shared>, watcher: Watcher)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // The limits in force when the connection was accepted apply to it for its life.
    let limits = shared.config.load().gateway.limits.clone();
    let svc_shared = shared.clone();
    // Requests begun on this connection: tells a slow first head from an idle keep-alive.
    let served = Arc::new(AtomicU64::new(0));
    let svc_served = served.clone();
    let service = service_fn(move |req| {
        let shared = svc_shared.clone();
        svc_served.fetch_add(1, Ordering::Relaxed);
        handle_boxed(shared, conn, req)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes as usize)
        .serve_connection(io, service);
    if let Err(e) = watcher.watch(connection).await {
        if e.is_timeout() && served.load(Ordering::Relaxed) > 0 {
            // hyper uses the same timer for the wait between keep-alive requests; closing an
            // idle connection after a served request is housekeeping, not a client fault.
            tracing::debug!(peer = %conn.peer, "idle keep-alive connection closed");
        } else {
            connection_error(shared, conn.peer, &e);
        }
    }
}

/// HTTP/2 has no header read timeout in hyper, and keep-alive pings start only after the
/// client's preface, so a client could hold a connection (and a `max_connections` slot)
/// forever by sending nothing. This loop closes (GOAWAY) a connection that has had no request
/// in flight for `header_read_timeout`, and on shutdown.
async fn serve_http2<I>(
    io: I,
    conn: Conn,
    shared: &Arc<Shared>,
    watcher: Watcher,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let limits = shared.config.load().gateway.limits.clone();
    let activity = Arc::new(Activity::new());
    let svc_shared = shared.clone();
    let svc_activity = activity.clone();
    let service = service_fn(move |req| {
        let shared = svc_shared.clone();
        let guard = svc_activity.start();
        let fut = handle_boxed(shared, conn, req);
        async move {
            let response = fut.await;
            drop(guard);
            response
        }
    });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        // Detect dead peers holding a connection open.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .serve_connection(io, service);
    tokio::pin!(connection);
    let idle_limit = limits.header_read_timeout;
    let mut tick = tokio::time::interval((idle_limit / 4).max(Duration::from_millis(50)));
    // Once closing, the connection gets a bounded time to finish before it is dropped.
    let mut deadline: Option<tokio::time::Instant> = None;
    let result = loop {
        tokio::select! {
            r = connection.as_mut() => break r,
            _ = shutdown.changed(), if deadline.is_none() => {
                connection.as_mut().graceful_shutdown();
                deadline = Some(tokio::time::Instant::now() + limits.shutdown_grace);
            }
            _ = tick.tick() => match deadline {
                Some(d) if tokio::time::Instant::now() >= d => break Ok(()),
                Some(_) => {}
                None if activity.idle_for() >= idle_limit => {
                    tracing::debug!(peer = %conn.peer, "idle HTTP/2 connection closed");
                    connection.as_mut().graceful_shutdown();
                    deadline = Some(tokio::time::Instant::now() + idle_limit);
                }
                None => {}
            },
        }
    };
    // Held until here so that a gateway shutdown waits for this connection too.
    drop(watcher);
    if let Err(e) = result {
        connection_error(shared, conn.peer, &e);
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    idle_since: std::sync::Mutex<std::time::Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            idle_since: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    fn start(self: &Arc<Self>) -> ActivityGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        ActivityGuard(self.clone())
    }

    /// Zero while a request is in flight.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.idle_since
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or(Duration::ZERO)
    }
}

struct ActivityGuard(Arc<Activity>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        if let Ok(mut t) = self.0.idle_since.lock() {
            *t = std::time::Instant::now();
        }
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The request future, boxed: hyper keeps a slot the size of the service's future for every
/// connection, idle or not, so an unboxed pipeline future would cost each idle keep-alive
/// connection its full size. Boxed, the slot is a pointer and the state exists only while a
/// request is in flight.
type HandleFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<http_body_util::Full<bytes::Bytes>>, Infallible>,
            > + Send,
    >,
>;

fn handle_boxed(
    shared: Arc<Shared>,
    conn: Conn,
    req: http::Request<hyper::body::Incoming>,
) -> HandleFuture {
    Box::pin(async move { Ok::<_, Infallible>(gateway::handle(&shared, conn, req).await) })
}

/// Logs and counts a connection that ended on an error outside a request handler. A request
/// head not received in time closes the connection, as nginx does for `client_header_timeout`:
/// the sender sees no response and retries.
fn connection_error(shared: &Shared, peer: SocketAddr, e: &hyper::Error) {
    if e.is_timeout() {
        tracing::warn!(%peer, status = 408, outcome = "header_timeout", "request head not received in time; connection closed");
        count_error(&shared.metrics, "header_timeout");
    } else if e.is_parse() || e.is_parse_too_large() {
        tracing::warn!(%peer, error = %e, "malformed request head");
        count_error(&shared.metrics, "protocol");
    } else {
        tracing::debug!(%peer, error = %e, "connection error");
    }
}

fn count_error(metrics: &Metrics, reason: &str) {
    metrics.connection_errors.with_label_values(&[reason]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, without calling it.
    fn future_size<F, Fut>(_: F) -> usize
    where
        F: FnOnce(
            TcpStream,
            Conn,
            Option<TlsAcceptor>,
            Arc<Shared>,
            Watcher,
            watch::Receiver<bool>,
        ) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every connection's task holds this future (spawning copies all of it into the task) for
    /// as long as the connection is open, so an idle keep-alive connection costs at least this
    /// much. The TLS and HTTP/2 states are boxed out of it; inline, they made it 7 KiB.
    #[test]
    fn a_plain_connection_task_stays_small() {
        let size = future_size(serve_connection);
        assert!(size <= 2048, "serve_connection future is {size} bytes");
    }

    #[test]
    fn per_ip_limit_counts_each_address_and_ipv6_by_its_64() {
        let per_ip = Arc::new(PerIp::new(2, vec!["10.0.0.0/8".parse().unwrap()]));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a1 = per_ip.admit(ip("192.0.2.1")).unwrap();
        let _a2 = per_ip.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert!(
            per_ip.admit(ip("192.0.2.1")).is_none(),
            "third from one address"
        );
        assert!(
            per_ip.admit(ip("192.0.2.2")).is_some(),
            "another address has its own"
        );
        let _b1 = per_ip.admit(ip("2001:db8::1")).unwrap();
        let _b2 = per_ip.admit(ip("2001:db8::ffff:2")).unwrap();
        assert!(per_ip.admit(ip("2001:db8::3")).is_none(), "same /64");
        assert!(per_ip.admit(ip("2001:db8:0:1::1")).is_some(), "another /64");
        let proxies: Vec<_> = (0..5)
            .map(|_| per_ip.admit(ip("10.1.2.3")).unwrap())
            .collect();
        assert_eq!(proxies.len(), 5, "trusted proxies are exempt");
        drop(a1);
        assert!(
            per_ip.admit(ip("192.0.2.1")).is_some(),
            "a closed connection frees its slot"
        );
        drop(proxies);
        let state = per_ip.state.lock().unwrap();
        assert!(!state.open.contains_key(&ip("10.1.2.3")));
    }
}
