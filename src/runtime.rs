//! The runtime's shared state, below everything that serves requests (`server.rs`,
//! `gateway.rs`, `admin.rs`, the delivery worker) and above the model they serve:
//!
//! - [`Clock`]: where "now" comes from;
//! - [`InForce`] and its [`ConfigSlot`]: the configuration in force, loaded once per request
//!   and swapped whole by a reload;
//! - [`Shared`]: what every connection of a worker shares (metrics, stores, budgets);
//! - [`Conn`]: what is known about one connection;
//! - [`CutOff`]: what a shutdown cut off.
//!
//! Nothing here serves or reloads; it only holds. State that must outlive a reload lives in
//! [`Shared`] beside the slot, not in [`InForce`]: the replay store, the counters, the queue,
//! and the idle upstream connections, which a new `InForce` takes over for every upstream it
//! still uses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::body::BodyBudget;
use crate::delivery::QueueSlot;
use crate::metrics::{Metrics, RouteMetrics};
use crate::model::Gateway;
use crate::replay::Store;
use crate::upstream::Upstreams;

/// Where "now" comes from; tests pin it to replay recorded vectors.
pub type Clock = fn() -> SystemTime;

/// Everything a request needs, shared by all connections.
pub struct Shared {
    /// The configuration in force; a request loads it once and keeps it to its end.
    pub config: Arc<ConfigSlot>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// `Some` when any route has `replay:`.
    pub replay_store: Option<Arc<Store>>,
    /// Request bodies in memory, across all workers.
    pub body_budget: Arc<BodyBudget>,
    /// Whether a shutdown is cutting requests off, and how many it has.
    pub cut_off: Arc<CutOff>,
    /// Where queued routes store their events, once a `queue_store:` is open.
    pub queue: Arc<QueueSlot>,
    /// Keys fetched from the network (`remote_keys/`), one cache for the process.
    pub keys: Arc<crate::remote_keys::cache::KeyCache>,
}

/// What is known about the connection a request came in on.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer was read from a PROXY protocol header (or is the balancer itself, on its
    /// own `LOCAL` connections). No `X-Forwarded-For` is believed on such a connection: an
    /// L4 balancer adds none, so any there came from the client.
    pub proxied: bool,
}

impl Conn {
    /// The peers whose `X-Forwarded-For` this connection may believe: none on a PROXY
    /// protocol connection.
    pub fn trusted_proxies<'a>(&self, gateway: &'a Gateway) -> &'a [ipnet::IpNet] {
        if self.proxied {
            &[]
        } else {
            &gateway.trusted_proxies
        }
    }
}

/// One worker's view of the configuration in force.
pub struct InForce {
    pub gateway: Arc<Gateway>,
    /// Each route's series, by `Route::index`.
    pub route_metrics: Vec<RouteMetrics>,
    /// This worker's keep-alive connections, one pool per upstream `host:port`.
    pub upstreams: Arc<Upstreams>,
}

/// The metric handles of a configuration's routes, made once per configuration (at start,
/// on each reload) and shared by every worker's [`InForce`]; the listeners' certificate expiry
/// is set at the same time.
pub fn route_metrics(gateway: &Gateway, metrics: &Metrics) -> Vec<RouteMetrics> {
    metrics.listeners_loaded(&gateway.listeners);
    metrics.init_routes(gateway.routes.routes().iter().map(|r| r.as_ref()))
}

impl InForce {
    /// Builds what one worker needs to serve `gateway`; idle connections are taken over from
    /// `previous` for every upstream both use.
    pub fn new(
        gateway: Arc<Gateway>,
        route_metrics: Vec<RouteMetrics>,
        previous: Option<&Upstreams>,
    ) -> InForce {
        let limits = &gateway.limits;
        // Every route's upstream, and every destination's of a queued route.
        let upstreams = gateway.routes.routes().iter().flat_map(|r| {
            let destinations = match &r.delivery {
                crate::model::Delivery::Queued(p) => p.destinations.as_slice(),
                crate::model::Delivery::Sync => &[],
            };
            std::iter::once(&r.upstream).chain(destinations.iter().map(|d| &d.upstream))
        });
        let upstreams = Arc::new(Upstreams::new(
            upstreams,
            limits.upstream_connect_timeout,
            limits.upstream_keepalive,
            previous,
        ));
        InForce {
            gateway,
            route_metrics,
            upstreams,
        }
    }
}

/// The swappable slot a worker's requests load [`InForce`] from.
pub type ConfigSlot = ArcSwap<InForce>;

/// What a shutdown cut off, shared by every worker.
#[derive(Debug, Default)]
pub struct CutOff {
    /// Set when `shutdown_grace` ran out: a request dropped from now on was cut off.
    pub cutting_off: AtomicBool,
    /// Requests cut off so far (each is logged).
    pub cut_off: AtomicU64,
}
