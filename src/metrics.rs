//! Every metric the gateway exports, defined in one place on its own registry (so several
//! gateways in one process, as in tests, never share counters). Names follow Prometheus
//! conventions: `hookgate_` prefix, `_total` for counters, `_seconds` for durations.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::model::Route;
use crate::refusal::Refusal;

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "";

/// Latency buckets from 100 µs to 30 s: a verified forward on loopback is sub-millisecond,
/// a slow upstream can take the whole upstream timeout.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    /// Requests by route and outcome (`forwarded` or a refusal label).
    pub requests: IntCounterVec,
    /// Whole-request latency, first byte of the head to the response, by route.
    pub request_duration: HistogramVec,
    /// Time from sending to the upstream until its full response, by route.
    pub upstream_duration: HistogramVec,
    /// Upstream answers by route and status class (`2xx` ... `5xx`).
    pub upstream_responses: IntCounterVec,
    /// Requests being handled right now.
    pub in_flight: IntGauge,
    /// Open client connections right now.
    pub connections: IntGauge,
    /// Request body bytes held in memory right now (the `max_buffered_body_bytes` budget).
    pub body_buffered: IntGauge,
    /// Connections that ended in an error before or between requests, by reason
    /// (`header_timeout`, `tls_handshake`, `protocol`).
    pub connection_errors: IntCounterVec,
    /// Verified requests by route and index of the matching secret (rotation visibility).
    pub verified: IntCounterVec,
    /// 1 per route, labelled with how strongly it checks its senders (`Strength`):
    /// `signature`, `signed_fields`, `shared_secret` or `allowlist_only`.
    pub route_verification: IntGaugeVec,
    /// Requests on shadow-mode routes that failed a check and were forwarded anyway, by route
    /// and the outcome they would have had.
    pub shadow_refusals: IntCounterVec,
    /// Duplicates answered without forwarding, by route.
    pub replay_duplicates: IntCounterVec,
    /// Copies refused with 409 while another copy was being forwarded, by route.
    pub replay_in_flight: IntCounterVec,
    /// Replay store failures by route and what followed (`rejected`, `allowed`, `delivered`,
    /// `release`).
    pub replay_store_errors: IntCounterVec,
    /// Store round trips by operation (`claim`, `delivered`, `release`).
    pub replay_store_duration: HistogramVec,
    /// Keys held by the memory store.
    pub replay_memory_entries: IntGauge,
    /// 1 while the replay store answers (the memory store always does), 0 after a failed
    /// round trip until the next good one.
    pub replay_store_up: IntGauge,
    /// Latency of forwarded requests only, by route: an SLO on deliveries is not diluted by
    /// refusals answered in microseconds.
    pub forwarded_duration: HistogramVec,
    /// Configuration reloads by `result` (`success`, `failure`).
    pub config_reloads: IntCounterVec,
    /// 1 if the last reload succeeded (or none was tried), 0 if it failed.
    pub config_last_reload_successful: IntGauge,
    /// When the configuration in force was loaded (start or last successful reload).
    pub config_last_reload_success: prometheus::Gauge,
    /// 1, labelled with the SHA-256 of the configuration in force.
    pub config_info: IntGaugeVec,
    /// Each TLS listener's certificate notAfter, by listener address.
    pub cert_expiry: IntGaugeVec,
    /// The process's own figures, read from /proc at each scrape (Linux).
    process: ProcessMetrics,
    /// Keys the memory store dropped to stay within `max_entries`.
    pub replay_memory_evictions: prometheus::IntCounter,
    /// Scrape-time constant 1 with the version label.
    pub build_info: IntGaugeVec,
    /// Time spent verifying signatures, all routes together.
    pub verify_duration: Histogram,
    /// Log lines dropped because stderr was not being drained (see `logbuf`).
    pub log_lines_dropped: prometheus::IntCounter,
    /// Queued delivery: the store and the delivery worker.
    pub queue: QueueMetrics,
    /// Keys fetched from the network (`remote_keys/`).
    pub keys: KeyFetchMetrics,
}

/// The metrics of keys fetched from the network (`remote_keys/cache.rs` moves them).
pub struct KeyFetchMetrics {
    /// Fetches by result: `ok`, or `resolve`, `address_not_allowed`, `connect`, `tls`,
    /// `redirect`, `status`, `too_large`, `timeout`, `http`.
    pub fetches: IntCounterVec,
    /// Lookups by requests by result: `hit`, `fetched`, `unavailable`.
    pub lookups: IntCounterVec,
    /// How long ago the oldest document held was fetched, set at each scrape.
    pub oldest_age: IntGauge,
}

impl KeyFetchMetrics {
    fn new() -> KeyFetchMetrics {
        let fetches = IntCounterVec::new(
            Opts::new(
                "hookgate_key_fetches_total",
                "Fetches of keys and certificates from their hosts, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        for result in [
            "ok",
            "resolve",
            "address_not_allowed",
            "connect",
            "tls",
            "redirect",
            "status",
            "too_large",
            "timeout",
            "http",
        ] {
            fetches.with_label_values(&[result]);
        }
        let lookups = IntCounterVec::new(
            Opts::new(
                "hookgate_key_lookups_total",
                "Requests' lookups of a fetched key, by result: hit (cached), fetched, \
                 unavailable (refused with 503).",
            ),
            &["result"],
        )
        .expect("valid metric");
        for result in ["hit", "fetched", "unavailable"] {
            lookups.with_label_values(&[result]);
        }
        let oldest_age = IntGauge::new(
            "hookgate_key_oldest_age_seconds",
            "How long ago the oldest key or certificate held was fetched (0: none held).",
        )
        .expect("valid metric");
        KeyFetchMetrics {
            fetches,
            lookups,
            oldest_age,
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.fetches.clone()),
            Box::new(self.lookups.clone()),
            Box::new(self.oldest_age.clone()),
        ]
    }
}

/// The metrics of queued delivery (`delivery/`).
pub struct QueueMetrics {
    /// Events in the store by route and state (`queued`, `delivering`, `retrying`,
    /// `delivered`, `dead`), refreshed every few seconds.
    pub events: IntGaugeVec,
    /// Age of the oldest event by route and state, in seconds.
    pub oldest_age: prometheus::GaugeVec,
    /// Delivery attempts by route and outcome (`delivered`, `retry`, `dead`).
    pub attempts: IntCounterVec,
    /// Events that became dead letters, by route and reason: once per event that became
    /// one (a settle that changed nothing is not counted).
    pub dead_letters: IntCounterVec,
    /// Events this process holds leased, by route, right now (at most about twice the
    /// route's concurrency, whatever the backlog).
    pub leased: IntGaugeVec,
    /// Leases this process lost before it could start or settle an attempt, by route: 0 in
    /// a healthy process (a lease runs out only if its process stalled or the store was
    /// unreachable for longer than the lease).
    pub leases_lost: IntCounterVec,
    /// 1 while a route's delivery is held back because its app looks down (probing one
    /// event at a time), by route.
    pub held_back: IntGaugeVec,
    /// 1 while an operator has paused a route's delivery (`hookgate queue pause`), by route.
    pub paused: IntGaugeVec,
    /// A route's circuit breaker: 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGaugeVec,
    /// Changes of a route's circuit breaker, by the state it went to.
    pub breaker_transitions: IntCounterVec,
    /// Time for one store commit (embedded: one transaction with its fsync).
    pub commit_duration: Histogram,
    /// Operations per commit (group commit at work).
    pub commit_batch: Histogram,
    /// Store failures by operation.
    pub store_errors: IntCounterVec,
    /// Embedded store: bytes of its database holding data (what `max_bytes` bounds).
    pub store_used_bytes: IntGauge,
    /// Embedded store: `max_bytes`, when set.
    pub store_max_bytes: IntGauge,
    /// Embedded store: the WAL's length, and how much of it is not yet copied into the
    /// database (a checkpoint held back by a reader, or failing, makes both grow).
    pub wal_bytes: IntGauge,
    pub wal_behind_bytes: IntGauge,
}

/// What the queue store was doing when it failed: the `op` label of
/// `hookgate_queue_store_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Storing a new event (the sender got a 503).
    Ingest,
    /// One operation of a group commit (embedded).
    Write,
    /// A whole group commit (embedded).
    Commit,
    /// Copying the WAL into the database file (embedded).
    Checkpoint,
    Lease,
    /// Counting an attempt as it starts.
    Start,
    /// Keeping held leases alive.
    Renew,
    /// Giving leases back as the worker stops.
    Release,
    Settle,
    /// Reading the depth and age gauges.
    Depths,
    Purge,
    /// Reading the operators' pauses.
    Pauses,
    /// A bulk replay's look-up or batch.
    Replay,
}

impl StoreOp {
    pub const ALL: [StoreOp; 13] = [
        StoreOp::Ingest,
        StoreOp::Write,
        StoreOp::Commit,
        StoreOp::Checkpoint,
        StoreOp::Lease,
        StoreOp::Start,
        StoreOp::Renew,
        StoreOp::Release,
        StoreOp::Settle,
        StoreOp::Depths,
        StoreOp::Purge,
        StoreOp::Pauses,
        StoreOp::Replay,
    ];

    pub fn label(self) -> &'static str {
        match self {
            StoreOp::Ingest => "ingest",
            StoreOp::Write => "write",
            StoreOp::Commit => "commit",
            StoreOp::Checkpoint => "checkpoint",
            StoreOp::Lease => "lease",
            StoreOp::Start => "start",
            StoreOp::Renew => "renew",
            StoreOp::Release => "release",
            StoreOp::Settle => "settle",
            StoreOp::Depths => "depths",
            StoreOp::Purge => "purge",
            StoreOp::Pauses => "pauses",
            StoreOp::Replay => "replay",
        }
    }
}

impl QueueMetrics {
    /// Counts a store failure.
    pub fn store_error(&self, op: StoreOp) {
        self.store_errors.with_label_values(&[op.label()]).inc();
    }

    fn new() -> QueueMetrics {
        QueueMetrics {
            events: IntGaugeVec::new(
                Opts::new(
                    "hookgate_queue_events",
                    "Events in the queue store by route, destination and state.",
                ),
                &["route", "destination", "state"],
            )
            .expect("valid metric"),
            oldest_age: prometheus::GaugeVec::new(
                Opts::new(
                    "hookgate_queue_oldest_event_age_seconds",
                    "Age of the oldest event in the queue store by route, destination and state.",
                ),
                &["route", "destination", "state"],
            )
            .expect("valid metric"),
            attempts: IntCounterVec::new(
                Opts::new(
                    "hookgate_delivery_attempts_total",
                    "Delivery attempts of queued events by route, destination and outcome.",
                ),
                &["route", "destination", "outcome"],
            )
            .expect("valid metric"),
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "hookgate_dead_letters_total",
                    "Queued events that became dead letters, by route, destination and reason.",
                ),
                &["route", "destination", "reason"],
            )
            .expect("valid metric"),
            leased: IntGaugeVec::new(
                Opts::new(
                    "hookgate_queue_leased",
                    "Queued events this process holds leased, by route and destination.",
                ),
                &["route", "destination"],
            )
            .expect("valid metric"),
            leases_lost: IntCounterVec::new(
                Opts::new(
                    "hookgate_queue_leases_lost_total",
                    "Leases that ran out before their attempt was started or settled, by route and destination.",
                ),
                &["route", "destination"],
            )
            .expect("valid metric"),
            held_back: IntGaugeVec::new(
                Opts::new(
                    "hookgate_queue_held_back",
                    "1 while delivery to a route's destination is held back because its app looks down.",
                ),
                &["route", "destination"],
            )
            .expect("valid metric"),
            breaker_state: IntGaugeVec::new(
                Opts::new(
                    "hookgate_queue_breaker_state",
                    "A route's destination's circuit breaker: 0 closed, 1 open (nothing delivered), 2 half-open (probing).",
                ),
                &["route", "destination"],
            )
            .expect("valid metric"),
            breaker_transitions: IntCounterVec::new(
                Opts::new(
                    "hookgate_queue_breaker_transitions_total",
                    "Changes of a route's destination's circuit breaker, by the state it went to.",
                ),
                &["route", "destination", "to"],
            )
            .expect("valid metric"),
            paused: IntGaugeVec::new(
                Opts::new(
                    "hookgate_queue_paused",
                    "1 while an operator has paused delivery to a route's destination (events are still stored).",
                ),
                &["route", "destination"],
            )
            .expect("valid metric"),
            commit_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "hookgate_queue_commit_duration_seconds",
                    "Time for one queue store commit, fsync included.",
                )
                .buckets(BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            commit_batch: Histogram::with_opts(
                HistogramOpts::new(
                    "hookgate_queue_commit_batch_size",
                    "Store operations committed together (group commit).",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
                ]),
            )
            .expect("valid metric"),
            store_errors: IntCounterVec::new(
                Opts::new(
                    "hookgate_queue_store_errors_total",
                    "Queue store failures by operation.",
                ),
                &["op"],
            )
            .expect("valid metric"),
            store_used_bytes: IntGauge::new(
                "hookgate_queue_store_used_bytes",
                "Embedded queue store: bytes of the database holding data (max_bytes bounds it).",
            )
            .expect("valid metric"),
            store_max_bytes: IntGauge::new(
                "hookgate_queue_store_max_bytes",
                "Embedded queue store: its max_bytes (0: unbounded).",
            )
            .expect("valid metric"),
            wal_bytes: IntGauge::new(
                "hookgate_queue_wal_bytes",
                "Embedded queue store: the write-ahead log's length since it last started over.",
            )
            .expect("valid metric"),
            wal_behind_bytes: IntGauge::new(
                "hookgate_queue_wal_behind_bytes",
                "Embedded queue store: write-ahead log bytes not yet copied into the database.",
            )
            .expect("valid metric"),
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.events.clone()),
            Box::new(self.oldest_age.clone()),
            Box::new(self.attempts.clone()),
            Box::new(self.dead_letters.clone()),
            Box::new(self.leased.clone()),
            Box::new(self.leases_lost.clone()),
            Box::new(self.held_back.clone()),
            Box::new(self.paused.clone()),
            Box::new(self.breaker_state.clone()),
            Box::new(self.breaker_transitions.clone()),
            Box::new(self.commit_duration.clone()),
            Box::new(self.commit_batch.clone()),
            Box::new(self.store_errors.clone()),
            Box::new(self.store_used_bytes.clone()),
            Box::new(self.store_max_bytes.clone()),
            Box::new(self.wal_bytes.clone()),
            Box::new(self.wal_behind_bytes.clone()),
        ]
    }

    /// The series of a queued route's destination, at zero, so a dashboard shows them
    /// before any event.
    pub fn init_destination(&self, route: &str, destination: &str) {
        for op in StoreOp::ALL {
            self.store_errors.with_label_values(&[op.label()]);
        }
        for outcome in ["delivered", "retry", "dead"] {
            self.attempts
                .with_label_values(&[route, destination, outcome]);
        }
        for reason in crate::delivery::retry::DeadReason::ALL {
            self.dead_letters
                .with_label_values(&[route, destination, reason.label()]);
        }
        let labels = [route, destination];
        self.leased.with_label_values(&labels);
        self.leases_lost.with_label_values(&labels);
        self.held_back.with_label_values(&labels);
        self.paused.with_label_values(&labels);
        self.breaker_state.with_label_values(&labels);
        for to in ["open", "half_open", "closed"] {
            self.breaker_transitions
                .with_label_values(&[route, destination, to]);
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("hookgate_requests_total", "Requests by route and outcome."),
            &["route", "outcome"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "hookgate_request_duration_seconds",
                "Time to handle a request, from its head to the response.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "hookgate_upstream_duration_seconds",
                "Time for the upstream to answer a forwarded request.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let upstream_responses = IntCounterVec::new(
            Opts::new(
                "hookgate_upstream_responses_total",
                "Upstream responses by route and status class.",
            ),
            &["route", "class"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new("hookgate_requests_in_flight", "Requests being handled.")
            .expect("valid metric");
        let connections = IntGauge::new("hookgate_connections_open", "Open client connections.")
            .expect("valid metric");
        let body_buffered = IntGauge::new(
            "hookgate_body_buffered_bytes",
            "Request body bytes held in memory (budget: limits.max_buffered_body_bytes).",
        )
        .expect("valid metric");
        let connection_errors = IntCounterVec::new(
            Opts::new(
                "hookgate_connection_errors_total",
                "Client connections closed on an error outside a request, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let route_verification = IntGaugeVec::new(
            Opts::new(
                "hookgate_route_verification",
                "1 per route, by how its senders are checked: signature, signed_fields (the \
                 body is not signed), shared_secret (nothing is signed) or allowlist_only.",
            ),
            &["route", "kind"],
        )
        .expect("valid metric");
        let verified = IntCounterVec::new(
            Opts::new(
                "hookgate_verified_total",
                "Requests whose signature verified, by route and matching secret index.",
            ),
            &["route", "secret_index"],
        )
        .expect("valid metric");
        let shadow_refusals = IntCounterVec::new(
            Opts::new(
                "hookgate_shadow_refusals_total",
                "Requests that failed a check on a route with enforce: false and were forwarded anyway.",
            ),
            &["route", "outcome"],
        )
        .expect("valid metric");
        let replay_duplicates = IntCounterVec::new(
            Opts::new(
                "hookgate_replay_duplicates_total",
                "Requests answered as duplicates of an event already delivered.",
            ),
            &["route"],
        )
        .expect("valid metric");
        let replay_in_flight = IntCounterVec::new(
            Opts::new(
                "hookgate_replay_in_flight_conflicts_total",
                "Requests refused (409) while another copy of the event was in flight.",
            ),
            &["route"],
        )
        .expect("valid metric");
        let replay_store_errors = IntCounterVec::new(
            Opts::new(
                "hookgate_replay_store_errors_total",
                "Replay store failures by route and what the gateway did.",
            ),
            &["route", "action"],
        )
        .expect("valid metric");
        let replay_store_duration = HistogramVec::new(
            HistogramOpts::new(
                "hookgate_replay_store_duration_seconds",
                "Replay store round trips by operation.",
            )
            .buckets(BUCKETS.to_vec()),
            &["op"],
        )
        .expect("valid metric");
        let replay_memory_entries = IntGauge::new(
            "hookgate_replay_memory_entries",
            "Event keys held by the in-memory replay store.",
        )
        .expect("valid metric");
        let replay_memory_evictions = prometheus::IntCounter::new(
            "hookgate_replay_memory_evictions_total",
            "Event keys dropped by the in-memory replay store to stay within max_entries.",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("hookgate_build_info", "Build information; always 1."),
            &["version"],
        )
        .expect("valid metric");
        let verify_duration = Histogram::with_opts(
            HistogramOpts::new(
                "hookgate_verify_duration_seconds",
                "Time spent checking signatures and timestamps.",
            )
            .buckets(vec![
                0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                0.001, 0.0025, 0.01,
            ]),
        )
        .expect("valid metric");
        let replay_store_up = IntGauge::new(
            "hookgate_replay_store_up",
            "1 while the replay store answers, 0 after a failed round trip until a good one.",
        )
        .expect("valid metric");
        let forwarded_duration = HistogramVec::new(
            HistogramOpts::new(
                "hookgate_forwarded_duration_seconds",
                "Whole-request latency of forwarded requests only (2xx..5xx from the app), by route.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "hookgate_config_reloads_total",
                "Configuration reloads (SIGHUP or --watch), by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        let config_last_reload_successful = IntGauge::new(
            "hookgate_config_last_reload_successful",
            "1 if the last configuration reload succeeded (or none was tried), 0 if it failed.",
        )
        .expect("valid metric");
        config_last_reload_successful.set(1);
        let config_last_reload_success = prometheus::Gauge::new(
            "hookgate_config_last_reload_success_timestamp_seconds",
            "When the configuration in force was loaded, in Unix seconds.",
        )
        .expect("valid metric");
        let config_info = IntGaugeVec::new(
            Opts::new(
                "hookgate_config_info",
                "1, labelled with the SHA-256 of the configuration in force.",
            ),
            &["sha256"],
        )
        .expect("valid metric");
        let cert_expiry = IntGaugeVec::new(
            Opts::new(
                "hookgate_tls_certificate_expiry_timestamp_seconds",
                "When each TLS listener's certificate expires (notAfter), in Unix seconds.",
            ),
            &["listener"],
        )
        .expect("valid metric");
        let process = ProcessMetrics::new();
        let queue = QueueMetrics::new();
        let keys = KeyFetchMetrics::new();
        let log_lines_dropped = prometheus::IntCounter::new(
            "hookgate_log_lines_dropped_total",
            "Log lines dropped because stderr was not keeping up.",
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(upstream_responses.clone()),
            Box::new(in_flight.clone()),
            Box::new(connections.clone()),
            Box::new(body_buffered.clone()),
            Box::new(connection_errors.clone()),
            Box::new(route_verification.clone()),
            Box::new(verified.clone()),
            Box::new(shadow_refusals.clone()),
            Box::new(replay_duplicates.clone()),
            Box::new(replay_in_flight.clone()),
            Box::new(replay_store_errors.clone()),
            Box::new(replay_store_duration.clone()),
            Box::new(replay_memory_entries.clone()),
            Box::new(replay_memory_evictions.clone()),
            Box::new(build_info.clone()),
            Box::new(verify_duration.clone()),
            Box::new(log_lines_dropped.clone()),
            Box::new(config_reloads.clone()),
            Box::new(replay_store_up.clone()),
            Box::new(forwarded_duration.clone()),
            Box::new(config_last_reload_successful.clone()),
            Box::new(config_last_reload_success.clone()),
            Box::new(config_info.clone()),
            Box::new(cert_expiry.clone()),
            Box::new(process.cpu.clone()),
            Box::new(process.resident.clone()),
            Box::new(process.virtual_memory.clone()),
            Box::new(process.open_fds.clone()),
            Box::new(process.max_fds.clone()),
            Box::new(process.start_time.clone()),
        ]
        .into_iter()
        .chain(queue.collectors())
        .chain(keys.collectors())
        {
            registry.register(c).expect("metric names are unique");
        }
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            upstream_responses,
            in_flight,
            connections,
            body_buffered,
            connection_errors,
            route_verification,
            verified,
            shadow_refusals,
            replay_duplicates,
            replay_in_flight,
            replay_store_errors,
            replay_store_duration,
            replay_memory_entries,
            replay_memory_evictions,
            replay_store_up,
            forwarded_duration,
            config_reloads,
            config_last_reload_successful,
            config_last_reload_success,
            config_info,
            cert_expiry,
            process,
            build_info,
            verify_duration,
            log_lines_dropped,
            queue,
            keys,
        }
    }

    /// Creates the series for every configured route at zero, so dashboards and alerts see
    /// them before the first request, and resolves each route's hot-path series (in
    /// route-table order, so `Route::index` finds a route's own).
    pub fn init_routes<'a>(&self, routes: impl Iterator<Item = &'a Route>) -> Vec<RouteMetrics> {
        let mut resolved = Vec::new();
        // The routes in force now, and only those.
        self.route_verification.reset();
        for r in routes {
            resolved.push(self.resolve(r));
            let route = r.name.as_str();
            let kind = r
                .scheme
                .as_ref()
                .map_or("allowlist_only", |s| s.strength().label());
            self.route_verification
                .with_label_values(&[route, kind])
                .set(1);
            self.requests.with_label_values(&[route, "forwarded"]);
            self.requests.with_label_values(&[route, "duplicate"]);
            self.requests.with_label_values(&[route, "client_closed"]);
            if r.handshake.is_some() {
                self.requests.with_label_values(&[route, "handshake"]);
            }
            if let crate::model::Delivery::Queued(p) = &r.delivery {
                self.requests.with_label_values(&[route, "queued"]);
                for d in &p.destinations {
                    self.queue.init_destination(route, &d.name);
                }
            }
            // Only the outcomes a request that matched this route can have.
            for label in Refusal::LABELS {
                if !Refusal::BEFORE_ROUTING.contains(label) {
                    self.requests.with_label_values(&[route, label]);
                    if !r.enforce {
                        self.shadow_refusals.with_label_values(&[route, label]);
                    }
                }
            }
            // A counter that first appears at 1 is invisible to increase() and rate(): the
            // alerts on these need them at zero from the start.
            if r.replay.is_some() {
                self.replay_duplicates.with_label_values(&[route]);
                self.replay_in_flight.with_label_values(&[route]);
                for action in ["rejected", "allowed", "delivered", "release"] {
                    self.replay_store_errors.with_label_values(&[route, action]);
                }
            }
        }
        // ... and the ones a request that matched no route can.
        for label in Refusal::BEFORE_ROUTING {
            self.requests.with_label_values(&[NO_ROUTE, label]);
        }
        for reason in [
            "header_timeout",
            "tls_handshake",
            "protocol",
            "per_ip_limit",
        ] {
            self.connection_errors.with_label_values(&[reason]);
        }
        resolved
    }

    fn resolve(&self, r: &Route) -> RouteMetrics {
        let route = r.name.as_str();
        let keys = r.scheme.as_ref().map_or(0, |s| s.secret_count());
        RouteMetrics {
            forwarded: self.requests.with_label_values(&[route, "forwarded"]),
            request_duration: self.request_duration.with_label_values(&[route]),
            forwarded_duration: self.forwarded_duration.with_label_values(&[route]),
            upstream_duration: self.upstream_duration.with_label_values(&[route]),
            upstream_class: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|c| self.upstream_responses.with_label_values(&[route, c])),
            verified: (0..keys)
                .map(|i| self.verified.with_label_values(&[route, &i.to_string()]))
                .collect(),
        }
    }

    /// Records that the configuration with this SHA-256 is now in force.
    pub fn config_loaded(&self, sha256: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[sha256]).set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.config_last_reload_success.set(now);
    }

    /// Every request answered so far, over all routes and outcomes.
    pub fn requests_total(&self) -> u64 {
        use prometheus::core::Collector as _;
        self.requests
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// Text exposition for `/metrics`.
    /// Sets each TLS listener's certificate expiry (at start and on every reload).
    pub fn listeners_loaded(&self, listeners: &[crate::model::Listener]) {
        self.cert_expiry.reset();
        for l in listeners {
            if let Some(t) = l.cert_expires {
                self.cert_expiry
                    .with_label_values(&[&l.addr.to_string()])
                    .set(t);
            }
        }
    }

    pub fn render(&self) -> Vec<u8> {
        self.process.update();
        // The log buffer counts its drops itself; bring the counter up to date.
        let dropped = crate::logbuf::dropped();
        let counted = self.log_lines_dropped.get();
        if dropped > counted {
            self.log_lines_dropped.inc_by(dropped - counted);
        }
        let mut out = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// One route's per-request series, resolved when its configuration is loaded, so a request
/// does not hash label values or take a family's lock.
#[derive(Clone)]
pub struct RouteMetrics {
    pub forwarded: prometheus::IntCounter,
    pub request_duration: Histogram,
    pub forwarded_duration: Histogram,
    pub upstream_duration: Histogram,
    /// `hookgate_upstream_responses_total` for 1xx..5xx.
    pub upstream_class: [prometheus::IntCounter; 5],
    /// `hookgate_verified_total` per secret index.
    pub verified: Vec<prometheus::IntCounter>,
}

impl RouteMetrics {
    /// Counts a verification by the key at `index`.
    pub fn verified_by(&self, index: usize) {
        if let Some(c) = self.verified.get(index) {
            c.inc();
        }
    }
}

impl RouteMetrics {
    pub fn upstream_status(&self, status: http::StatusCode) {
        let i = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.upstream_class[i].inc();
    }
}

/// The standard `process_*` metrics, read from `/proc/self` when `/metrics` is scraped:
/// nothing on the request path. Elsewhere than Linux they stay at zero.
struct ProcessMetrics {
    /// A counter, brought up to the kernel's figure at each scrape.
    cpu: prometheus::Counter,
    resident: IntGauge,
    virtual_memory: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start_time: IntGauge,
}

impl ProcessMetrics {
    fn new() -> ProcessMetrics {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        ProcessMetrics {
            cpu: prometheus::Counter::with_opts(Opts::new(
                "process_cpu_seconds_total",
                "User and system CPU time spent, in seconds.",
            ))
            .expect("valid metric"),
            resident: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_memory: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            open_fds: gauge("process_open_fds", "Open file descriptors."),
            max_fds: gauge("process_max_fds", "Maximum open file descriptors."),
            start_time: gauge(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
            ),
        }
    }

    fn update(&self) {
        #[cfg(target_os = "linux")]
        {
            if let Some(stat) = read_stat() {
                let behind = stat.cpu_seconds - self.cpu.get();
                if behind > 0.0 {
                    self.cpu.inc_by(behind);
                }
                self.resident.set(stat.resident_bytes);
                self.virtual_memory.set(stat.virtual_bytes);
                self.start_time.set(stat.start_time);
            }
            if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
                self.open_fds.set(dir.count() as i64);
            }
            if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
                let max = limits
                    .lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|n| n.parse().ok());
                if let Some(max) = max {
                    self.max_fds.set(max);
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
struct Stat {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    start_time: i64,
}

/// `/proc/self/stat` (proc(5)): fields after the `)` that ends the command name.
#[cfg(target_os = "linux")]
fn read_stat() -> Option<Stat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Field n of proc(5) is fields[n - 3] here (fields 1 and 2 are before the `)`).
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    // SAFETY (both): sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<f64>()
        .ok()?;
    if ticks <= 0.0 || page <= 0.0 {
        return None;
    }
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        virtual_bytes: field(23)? as i64,
        resident_bytes: (field(24)? * page) as i64,
        start_time: (boot + field(22)? / ticks) as i64,
    })
}
