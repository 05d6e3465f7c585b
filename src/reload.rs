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

use crate::config::Gateway;
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::Upstreams;

/// One worker's view of the configuration in force.
pub struct Live {
    pub gateway: Arc<Gateway>,
    /// Each route's series, by `Route::index`.
    pub route_metrics: Vec<RouteMetrics>,
    /// This worker's keep-alive connections, one pool per upstream `host:port`.
    pub upstreams: Arc<Upstreams>,
}

impl Live {
    /// Builds what serving `gateway` needs; idle connections are taken over from `previous`
    /// for every upstream both use.
    pub fn new(gateway: Arc<Gateway>, metrics: &Metrics, previous: Option<&Upstreams>) -> Live {
        let route_metrics = metrics.init_routes(gateway.routes.routes().iter().map(|r| r.as_ref()));
        let limits = &gateway.limits;
        let authorities = gateway
            .routes
            .routes()
            .iter()
            .map(|r| &r.upstream.authority);
        let upstreams = Arc::new(Upstreams::new(
            authorities,
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
/// `hookgate_config_last_reload_successful` say so. Returns whether it took effect.
pub fn reload_file(running: &crate::server::Running, path: &std::path::Path) -> bool {
    let metrics = &running.metrics;
    let loaded = match crate::config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!("{}: {e}", path.display());
            }
            tracing::error!(
                errors = errors.0.len(),
                "reload failed; still serving the previous configuration"
            );
            metrics.config_reloads.with_label_values(&["failure"]).inc();
            metrics.config_last_reload_successful.set(0);
            return false;
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{}: {w}", path.display());
    }
    let kept = running.reload(loaded.gateway);
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
    true
}
