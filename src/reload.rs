//! The configuration in force, as one value swapped whole.
//!
//! [`Live`] is the compiled [`Gateway`] together with what is built from it to serve it: each
//! route's metric handles and the worker's upstream pools. Every request loads the current
//! `Live` once, at its start, and keeps it to its end; a reload builds a complete new one and
//! swaps it in at once (`arc_swap`), so a request never sees half of two configurations.
//! State that must outlive a reload lives beside it, not in it: the replay store, the
//! counters, and the idle upstream connections, which a new `Live` takes over for every
//! upstream it still uses.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::metrics::{Metrics, RouteMetrics};
use crate::model::Gateway;
use crate::upstream::Upstreams;

/// One worker's view of the configuration in force.
pub struct Live {
    pub gateway: Arc<Gateway>,
    /// Each route's series, by `Route::index`.
    pub route_metrics: Vec<RouteMetrics>,
    /// This worker's keep-alive connections, one pool per upstream `host:port`.
    pub upstreams: Arc<Upstreams>,
}

/// The metric handles of a configuration's routes, made once per configuration (at start,
/// on each reload) and shared by every worker's [`Live`]; the listeners' certificate expiry
/// is set at the same time.
pub fn route_metrics(gateway: &Gateway, metrics: &Metrics) -> Vec<RouteMetrics> {
    metrics.listeners_loaded(&gateway.listeners);
    metrics.init_routes(gateway.routes.routes().iter().map(|r| r.as_ref()))
}

impl Live {
    /// Builds what one worker needs to serve `gateway`; idle connections are taken over from
    /// `previous` for every upstream both use.
    pub fn new(
        gateway: Arc<Gateway>,
        route_metrics: Vec<RouteMetrics>,
        previous: Option<&Upstreams>,
    ) -> Live {
        let limits = &gateway.limits;
        let upstreams = gateway.routes.routes().iter().map(|r| &r.upstream);
        let upstreams = Arc::new(Upstreams::new(
            upstreams,
            limits.upstream_connect_timeout,
            limits.upstream_keepalive,
            previous,
        ));
        Live {
            gateway,
            route_metrics,
            upstreams,
        }
    }
}

/// The swappable slot a worker's requests load [`Live`] from.
pub type Current = ArcSwap<Live>;

/// Reloads the configuration file at `path` into `running` (SIGHUP, `--watch`): compiled
/// whole first; on any error the running configuration stays, each error is logged as
/// `hookgate check` prints it and `hookgate_config_reloads_total{result="failure"}` and
/// `hookgate_config_last_reload_successful` say so. Returns the log settings now in force
/// if it took effect (the caller owns the log filter, and applies the level).
pub async fn reload_file(
    running: &crate::server::Running,
    path: &std::path::Path,
) -> Option<crate::model::LogSettings> {
    let metrics = &running.metrics;
    let failed = |why: &str| {
        tracing::error!("reload failed ({why}); still serving the previous configuration");
        metrics.config_reloads.with_label_values(&["failure"]).inc();
        metrics.config_last_reload_successful.set(0);
        None
    };
    // Files are read off the runtime's threads, and not forever: a secret on a stalled
    // network mount must not stop the gateway serving.
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || crate::config::load(&owned));
    let loaded = match tokio::time::timeout(RELOAD_READ_LIMIT, read).await {
        Err(_) => return failed("reading the configuration and its files took over 10 s"),
        Ok(Err(_)) => return failed("the reading thread failed"),
        Ok(Ok(Err(problems))) => {
            for e in &problems.errors {
                tracing::error!("{}: {e}", path.display());
            }
            for w in &problems.warnings {
                tracing::warn!("{}: {w}", path.display());
            }
            let errors = crate::config::counted(problems.errors.len(), "error", "errors");
            return failed(&errors);
        }
        Ok(Ok(Ok(loaded))) => loaded,
    };
    for w in &loaded.warnings {
        tracing::warn!("{}: {w}", path.display());
    }
    let log = loaded.gateway.log.clone();
    let kept = match running.reload(loaded.gateway).await {
        Ok(kept) => kept,
        Err(e) => {
            tracing::error!("{}: queue_store: {e}", path.display());
            return failed("the queue store it configures cannot open");
        }
    };
    metrics.config_reloads.with_label_values(&["success"]).inc();
    metrics.config_last_reload_successful.set(1);
    metrics.config_loaded(&loaded.sha256);
    if kept.is_empty() {
        tracing::info!(sha256 = %loaded.sha256, "configuration reloaded");
    } else {
        tracing::warn!(
            sha256 = %loaded.sha256,
            "configuration reloaded, except {}: those need a restart and still run as before",
            kept.join(", ")
        );
    }
    Some(log)
}

/// How long a reload may take to read the configuration and its files.
const RELOAD_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
