//! The model: the compiled configuration as the runtime reads it. Every type here is a
//! plain value that `config/` builds from `gateway.yaml` once, with every check done; nothing
//! here imports the runtime (server, gateway, delivery worker, stores), so every runtime
//! module can depend on it and it on none of them.
//!
//! - this file: the gateway, its listeners, limits, log settings, routes and upstreams;
//! - `routes.rs`: the route table (method + normalized path -> route);
//! - `delivery.rs`: a route's delivery (sync or queued), its retry policy, the queue store;
//! - `replay.rs`: a route's replay policy and the replay store;
//! - `handshake.rs`: a route's handshake (the questions a sender asks apart from events).

pub mod delivery;
pub mod filter;
pub mod handshake;
pub mod key_fetch;
pub mod replay;
pub mod routes;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::Method;
use ipnet::IpNet;

pub use delivery::{
    BreakerPolicy, Delivery, Destination, Pace, QueuePolicy, QueueStoreConfig, RateLimit,
    Retention, RetryPolicy, UNNAMED,
};
pub use replay::{KeySource, OnStoreError, ReplayPolicy, ReplayStoreConfig};
pub use routes::{Match, PathPattern, RouteTable};

use crate::scheme::Scheme;

/// The compiled, immutable gateway configuration, shared as `Arc<Gateway>`.
#[derive(Debug)]
pub struct Gateway {
    /// Runtime worker threads for `hookgate run`.
    pub workers: usize,
    /// How the workers share the connections (with more than one worker).
    pub runtime: RuntimeModel,
    pub listeners: Vec<Listener>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub admin: SocketAddr,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
    pub routes: RouteTable,
    /// Where replay keys live (used only if some route has `replay:`).
    pub replay_store: ReplayStoreConfig,
    /// Where queued routes keep their events; `Some` whenever a route is queued.
    pub queue_store: Option<QueueStoreConfig>,
    /// The bearer token the admin queue API requires (`admin.token_file`).
    pub admin_token: Option<AdminToken>,
    /// How log lines are written.
    pub log: LogSettings,
    /// How keys that live on the network are fetched and kept.
    pub key_fetch: key_fetch::KeyFetch,
}

/// `log:`: the format of log lines and which are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A checked filter (`log_filter.rs`); `HOOKGATE_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` pairs after a message, for people.
    Text,
    /// One JSON object per line, every field at the top level, for log collectors.
    Json,
}

/// One address the gateway accepts webhooks on.
#[derive(Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    /// `Some` for HTTPS (HTTP/1.1 and HTTP/2 by ALPN), `None` for plain HTTP/1.1.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// When the certificate expires, in Unix seconds (TLS listeners).
    pub cert_expires: Option<i64>,
    /// Every connection starts with a PROXY protocol header (from `trusted_proxies` only).
    pub proxy_protocol: bool,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("proxy_protocol", &self.proxy_protocol)
            .finish()
    }
}

/// How `workers > 1` threads serve connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeModel {
    /// Each worker is a thread with its own single-threaded runtime, its own listening
    /// sockets (SO_REUSEPORT: the kernel spreads new connections over them) and its own
    /// upstream connections. No task ever moves between threads. The default on Linux.
    PerCore,
    /// One tokio multi-thread runtime: work-stealing over all workers. Evens out load when a
    /// few connections carry most of it; the default where SO_REUSEPORT does not balance.
    Shared,
}

impl RuntimeModel {
    pub const DEFAULT: RuntimeModel = if cfg!(target_os = "linux") {
        RuntimeModel::PerCore
    } else {
        RuntimeModel::Shared
    };
}

/// Bounds on everything a client or upstream can make the gateway wait for or hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body read; larger is refused with 413 while reading.
    pub max_body_bytes: u64,
    /// All request bodies held in memory at once, across every connection; a request whose
    /// body would go over it is refused with 503 and `Retry-After`.
    pub max_buffered_body_bytes: u64,
    /// Largest request head (HTTP/1.1 read buffer; HTTP/2 header list).
    pub max_header_bytes: u64,
    /// Largest upstream response passed back; larger is a 502.
    pub max_response_bytes: u64,
    /// Open client connections at once; further accepts wait.
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 /64 counts as one address); trusted
    /// proxies are exempt. Further connections from it are closed at once.
    pub max_connections_per_ip: usize,
    /// Time for a client to send the request head (also the keep-alive idle limit).
    pub header_read_timeout: Duration,
    /// Time for a client to send the whole body once the head is in.
    pub body_read_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    /// Time for the upstream to answer in full once the request is sent (else 504).
    pub upstream_timeout: Duration,
    /// Idle keep-alive connections kept per upstream `host:port` and per worker pool (0: a
    /// new connection per request).
    pub upstream_keepalive: usize,
    /// On SIGTERM/SIGINT, how long `/readyz` answers 503 while requests are still served,
    /// before the listeners stop (the time a load balancer needs to stop sending).
    pub drain_delay: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_buffered_body_bytes: 256 * 1024 * 1024,
            max_header_bytes: 16 * 1024,
            max_response_bytes: 1024 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(30),
            upstream_keepalive: 128,
            drain_delay: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// One route: where matching requests come from, how they are checked, where they go.
#[derive(Debug)]
pub struct Route {
    /// Position in the route table (set by `RouteTable::new`); indexes per-route metrics.
    pub index: usize,
    pub name: String,
    pub path: PathPattern,
    pub methods: Vec<Method>,
    pub upstream: Upstream,
    /// `Some`: only clients inside these networks may use the route.
    pub allow_ips: Option<Vec<IpNet>>,
    /// `Some`: requests must carry a valid signature. A route has a scheme, an allowlist or
    /// both; never neither.
    pub scheme: Option<Scheme>,
    /// `false`: shadow mode. Checks run and are logged and counted, but the request is
    /// forwarded even when they fail.
    pub enforce: bool,
    /// `Some`: each event is delivered at most once (see `replay.rs`).
    pub replay: Option<ReplayPolicy>,
    /// The top-level limits with this route's own `limits:` laid over them.
    pub limits: RouteLimits,
    /// Forward now, or store, answer and deliver later.
    pub delivery: Delivery,
    /// `Some`: the sender's handshake, answered by the gateway.
    pub handshake: Option<handshake::Handshake>,
    /// `Some`: the body the sender requires in a success (Adyen's `[accepted]`; a queued
    /// route's own `queue.body`): the gateway answers every duplicate with it too, or the
    /// sender would retry what was already taken.
    pub acknowledgement: Option<String>,
}

impl Route {
    /// Whether its requests claim event keys in the replay store: a sync route with
    /// `replay:`. A queued route's events are deduplicated by the queue store, in the insert.
    pub fn uses_replay_store(&self) -> bool {
        self.replay.is_some() && matches!(self.delivery, Delivery::Sync)
    }
}

/// The admin API's bearer token; compared in constant time, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(Vec<u8>);

impl AdminToken {
    pub fn new(token: Vec<u8>) -> AdminToken {
        AdminToken(token)
    }

    /// The token itself, for `hookgate queue` to present (never logged).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn admits(&self, authorization: Option<&http::HeaderValue>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(given) = authorization.and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")) else {
            return false;
        };
        given.len() == self.0.len() && bool::from(given.ct_eq(&self.0))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// The limits that may differ per route; every other limit protects the whole process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLimits {
    pub max_body_bytes: u64,
    pub body_read_timeout: Duration,
    pub upstream_timeout: Duration,
}

impl Limits {
    /// What a route without its own `limits:` gets.
    pub fn for_routes(&self) -> RouteLimits {
        RouteLimits {
            max_body_bytes: self.max_body_bytes,
            body_read_timeout: self.body_read_timeout,
            upstream_timeout: self.upstream_timeout,
        }
    }
}

/// A parsed `http(s)://host:port[/base]` upstream.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub authority: Authority,
    /// Prepended to the request path; empty or starting with `/`, never ending with `/`.
    pub base_path: String,
    /// `Some` for `https://`: how the connection to the app is secured.
    pub tls: Option<UpstreamTls>,
    /// Names the keep-alive pool: routes share connections only if they share this (same
    /// scheme, authority and TLS settings).
    pub pool_key: String,
}

impl Upstream {
    /// The default port of the scheme when the URL names none.
    pub fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 })
    }
}

/// TLS to an upstream: the trust roots (the system's, or `ca_file`), an optional client
/// certificate (mTLS), and the name the certificate must carry.
#[derive(Clone)]
pub struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The trust anchors `config` verifies with (`ca_file`'s, or the system's): the key
    /// fetcher also chains signing certificates to them.
    pub roots: Arc<rustls::RootCertStore>,
    pub server_name: rustls::pki_types::ServerName<'static>,
    /// Hex SHA-256 of `server_name` and the CA and client files' contents: a file replaced in
    /// place changes it, so connections made under the old one are not pooled with new ones.
    pub fingerprint: String,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}
