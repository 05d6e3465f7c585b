//! A route's delivery as compiled: sync (forward now) or queued (store, answer, deliver
//! later with retries, to each of its destinations), and where queued events are stored.

use std::time::Duration;

use http::StatusCode;

/// How a route delivers what passed its checks.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// Forward now and relay the app's answer (the default).
    Sync,
    /// Store durably, answer the sender, deliver later.
    Queued(QueuePolicy),
}

/// A queued route's settings (`queue:` and `destinations:` on the route).
#[derive(Clone, Debug)]
pub struct QueuePolicy {
    /// What the sender gets once the event is on disk.
    pub answer_status: StatusCode,
    pub answer_body: String,
    /// Where its events go, in the configuration's order, never empty: the one destination
    /// [`UNNAMED`] of a route with `upstream:`, or the route's `destinations:`.
    pub destinations: Vec<Destination>,
}

impl QueuePolicy {
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }
}

/// The name of the one destination of a queued route with `upstream:` rather than
/// `destinations:` (every queued route before destinations): the store's rows of such a
/// route, and a pause of the whole route, carry it.
pub const UNNAMED: &str = "";

/// One app a queued route delivers to, with its own delivery state and settings (its
/// `destinations:` entry over the route's `queue:`).
#[derive(Clone, Debug)]
pub struct Destination {
    /// Unique in the route; [`UNNAMED`] for a route with `upstream:`.
    pub name: String,
    pub upstream: super::Upstream,
    /// Time for this app to answer in full once the request is sent.
    pub upstream_timeout: Duration,
    /// `Some`: only the events that match are delivered here.
    pub filter: Option<super::filter::Filter>,
    pub pace: Pace,
}

/// How a destination is delivered to: in flight at once, per second, broken off, retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Deliveries to the app in flight at once (protects a slow app). 1 also delivers in
    /// order of arrival, unless an event has to be retried.
    pub concurrency: usize,
    /// Deliveries started per second, at most (`None`: as fast as the slots allow).
    pub rate_limit: Option<RateLimit>,
    /// The circuit breaker (`None`: none; pacing alone reacts to an app that is down).
    pub breaker: Option<BreakerPolicy>,
    pub retry: RetryPolicy,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace {
            concurrency: 16,
            rate_limit: None,
            breaker: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// `queue.breaker`: open when `failure_rate_percent` of at least `min_attempts` attempts over
/// `window` failed; closed again after `probes` successes in a row once `open_for` is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failure_rate_percent: u32,
    pub window: std::time::Duration,
    pub min_attempts: u32,
    pub open_for: std::time::Duration,
    pub probes: u32,
}

impl Default for BreakerPolicy {
    fn default() -> BreakerPolicy {
        BreakerPolicy {
            failure_rate_percent: 50,
            window: std::time::Duration::from_secs(60),
            min_attempts: 20,
            open_for: std::time::Duration::from_secs(30),
            probes: 3,
        }
    }
}

/// `queue.rate_limit`: a token bucket of `burst` tokens refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Thousandths of a token a second (whole numbers compare exactly: a reload that keeps
    /// the rate keeps the bucket).
    pub milli_per_second: u64,
    pub burst: u32,
}

impl RateLimit {
    pub fn per_second(self) -> f64 {
        self.milli_per_second as f64 / 1000.0
    }
}

/// Where queued events live (`queue_store:`), built only if some route is queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueStoreConfig {
    /// One directory on this machine, one gateway process at a time.
    Embedded {
        path: std::path::PathBuf,
        /// Bound on the database file; past it new events are refused with 503.
        max_bytes: Option<u64>,
        retention: Retention,
    },
    /// One PostgreSQL database shared by every replica.
    Postgres {
        url: String,
        /// Connections kept open to it, at most.
        pool_size: usize,
        /// Bound on each call; past it the store counts as unavailable (503 on ingest).
        timeout: Duration,
        /// CA certificates for TLS to the server, instead of the system's trust roots.
        ca_file: Option<std::path::PathBuf>,
        retention: Retention,
    },
}

impl QueueStoreConfig {
    pub fn retention(&self) -> Retention {
        match self {
            QueueStoreConfig::Embedded { retention, .. }
            | QueueStoreConfig::Postgres { retention, .. } => *retention,
        }
    }
}

/// How long finished events stay in the store, for inspection and replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Delivered events (their bodies included), after delivery.
    pub delivered: Duration,
    /// Dead letters, after they died, unless retried or dropped first.
    pub dead: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            delivered: Duration::from_secs(24 * 3600),
            dead: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// A queued route's retry settings (`queue.retry:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt; each further failure doubles it.
    pub initial_interval: Duration,
    /// The longest wait between two attempts (before jitter and `Retry-After`).
    pub max_interval: Duration,
    /// An event not delivered this long after it was received is dead. The default is the
    /// longest retry window among the seed senders (72 h): past it, the sender would have
    /// given up too.
    pub max_age: Duration,
    /// `Some(n)`: dead after n attempts, however young.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(3600),
            max_age: Duration::from_secs(72 * 3600),
            max_attempts: None,
        }
    }
}
