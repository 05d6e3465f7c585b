//! A reload (SIGHUP, `--watch`, the tests): compile the file whole, decide what of it can
//! take effect while running, and put that in force at once.
//!
//! The decision is [`restart_only`], a pure function from the configuration in force and the
//! newly compiled one to the one that is put in force, plus the names of what was kept as it
//! runs because it needs a restart. The rest ([`Running::reload`], [`reload_file`]) is I/O:
//! reading files off the runtime's threads, opening a newly configured queue store, the swap
//! itself (`server.rs`: [`Running::put_in_force`]), logs and metrics.
//!
//! Above `server.rs` (it drives a [`Running`]); nothing below imports it.

use std::net::SocketAddr;

use crate::delivery::QueueStoreError;
use crate::model::{AdminToken, Gateway};
use crate::server::Running;

/// What the reload policy needs to know of the running process besides its configuration.
#[derive(Clone, Copy, Debug)]
pub struct Facts {
    /// Where the admin listener is actually bound.
    pub admin_addr: SocketAddr,
    /// A queue store was open before this reload (not one it opened itself).
    pub store_was_open: bool,
}

/// The configuration a reload puts in force, and what of the new file it kept as running.
#[derive(Debug)]
pub struct Decision {
    pub gateway: Gateway,
    /// What needs a restart, by name, as the operator is told (empty: all took effect).
    pub kept: Vec<&'static str>,
}

/// What cannot change without a restart is kept as it runs: adding or removing listeners or
/// switching their TLS or PROXY protocol, the admin address, `workers`, `runtime`,
/// `max_connections`, the replay store, an open queue store, the log format, `key_fetch`. Everything
/// else comes from `next`: routes, secrets and keys (files were re-read by the compiler),
/// TLS certificates, allowlists, trusted proxies, replay settings of routes, and the other
/// limits (a connection's head and keep-alive limits from its next accept).
pub fn restart_only(running: &Gateway, mut next: Gateway, facts: Facts) -> Decision {
    let mut kept = Vec::new();
    let (listeners, unmatched) = keep_listeners(running, &next);
    next.listeners = listeners;
    if unmatched {
        kept.push("listeners (addresses, TLS on or off, proxy_protocol)");
    }
    if next.admin != running.admin {
        kept.push("admin");
        next.admin = running.admin;
    }
    // The token requirement follows the address actually bound, not the one the new file
    // names: a reload must not open a public admin listener's queue API.
    if let Some(token) = admin_token_after_reload(
        facts.admin_addr,
        next.admin_token.as_ref(),
        running.admin_token.as_ref(),
    ) {
        kept.push("admin.token_file (required: the admin listener is not on loopback)");
        next.admin_token = Some(token);
    }
    if next.workers != running.workers || next.runtime != running.runtime {
        kept.push("workers/runtime");
        next.workers = running.workers;
        next.runtime = running.runtime;
    }
    if next.limits.max_connections != running.limits.max_connections {
        kept.push("limits.max_connections");
        next.limits.max_connections = running.limits.max_connections;
    }
    if next.replay_store != running.replay_store {
        kept.push("replay_store");
        next.replay_store = running.replay_store.clone();
    }
    // Only a store open before this reload is kept; one the reload opened is the new
    // configuration's own.
    if facts.store_was_open && next.queue_store != running.queue_store {
        kept.push("queue_store");
        next.queue_store = running.queue_store.clone();
    }
    // One key cache serves the process, built at start from these settings.
    if next.key_fetch != running.key_fetch {
        kept.push("key_fetch");
        next.key_fetch = running.key_fetch.clone();
    }
    // The level changes live (the caller swaps the filter); the format does not.
    if next.log.format != running.log.format {
        kept.push("log.format");
        next.log.format = running.log.format;
    }
    Decision {
        gateway: next,
        kept,
    }
}

/// Listeners stay where they are (their accept loops index them by position); each keeps its
/// place and takes its new settings (a renewed certificate) if the new configuration has one
/// at the same address, with TLS and proxy_protocol as before. Also whether any did not
/// match (one added, removed or switched).
fn keep_listeners(running: &Gateway, next: &Gateway) -> (Vec<crate::model::Listener>, bool) {
    let mut unmatched = running.listeners.len() != next.listeners.len();
    let listeners = running
        .listeners
        .iter()
        .map(|old| {
            let same = next.listeners.iter().find(|n| {
                n.addr == old.addr
                    && n.tls.is_some() == old.tls.is_some()
                    && n.proxy_protocol == old.proxy_protocol
            });
            match same {
                Some(n) => n.clone(),
                None => {
                    unmatched = true;
                    old.clone()
                }
            }
        })
        .collect();
    (listeners, unmatched)
}

/// The token to keep when a reload would leave the admin listener bound at `bound` (not
/// loopback) without one: the running configuration's. `None`: the new configuration's
/// token (or its absence) stands.
fn admin_token_after_reload(
    bound: SocketAddr,
    next: Option<&AdminToken>,
    running: Option<&AdminToken>,
) -> Option<AdminToken> {
    if bound.ip().is_loopback() || next.is_some() {
        return None;
    }
    running.cloned()
}

impl Running {
    /// Puts a newly compiled configuration in force, in every worker at once, as far as
    /// [`restart_only`] allows; returns what it kept as running, by name, so the caller can
    /// say so.
    ///
    /// The queue store is opened by the first configuration that has a `queue_store:`,
    /// whether at start or by a reload (then its delivery worker starts with it); if it
    /// cannot open, the reload fails as a whole and nothing changes. An open store stays
    /// as it is: a changed `queue_store:` is kept until a restart.
    pub async fn reload(&self, next: Gateway) -> Result<Vec<&'static str>, QueueStoreError> {
        let _one_at_a_time = self.reload_turn().await;
        let store_was_open = self.queue_is_open();
        let opened = match (store_was_open, &next.queue_store) {
            (false, Some(config)) => Some(self.open_queue_store(config).await?),
            _ => None,
        };
        let facts = Facts {
            admin_addr: self.admin_addr,
            store_was_open,
        };
        let Decision { gateway, kept } = restart_only(&self.in_force(), next, facts);
        self.put_in_force(gateway, opened);
        Ok(kept)
    }
}

/// Reloads the configuration file at `path` into `running` (SIGHUP, `--watch`): compiled
/// whole first; on any error the running configuration stays, each error is logged as
/// `hookgate check` prints it and `hookgate_config_reloads_total{result="failure"}` and
/// `hookgate_config_last_reload_successful` say so. Returns the log settings now in force
/// if it took effect (the caller owns the log filter, and applies the level).
pub async fn reload_file(
    running: &Running,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The running file: one listener, one route, the defaults.
    const RUNNING: &str = r#"
listeners:
  - addr: 127.0.0.1:8080
routes:
  - name: lahza
    path: /webhooks/lahza
    upstream: http://127.0.0.1:3000
    verify: { preset: lahza, secret: "${LAHZA_SECRET}" }
"#;

    fn compiled(text: &str) -> Gateway {
        let env = |name: &str| (name == "LAHZA_SECRET").then(|| "s3cret".to_owned());
        match crate::config::compile::compile(text, std::path::Path::new("."), &env) {
            Ok(loaded) => loaded.gateway,
            Err(e) => panic!("{e}\n{text}"),
        }
    }

    const LOOPBACK: Facts = Facts {
        admin_addr: SocketAddr::V4(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::LOCALHOST,
            9090,
        )),
        store_was_open: false,
    };

    /// `RUNNING` reloaded as `next`: what was kept, and what is now in force.
    fn reload(next: &str, facts: Facts) -> Decision {
        restart_only(&compiled(RUNNING), compiled(next), facts)
    }

    #[test]
    fn routes_secrets_and_limits_take_effect_and_nothing_is_kept() {
        let next = RUNNING.replace("3000", "3001") + "limits: { max_body_bytes: 1234 }\n";
        let d = reload(&next, LOOPBACK);
        assert!(d.kept.is_empty(), "{:?}", d.kept);
        let route = d.gateway.routes.get("lahza").expect("the route");
        assert_eq!(route.upstream.authority.as_str(), "127.0.0.1:3001");
        assert_eq!(d.gateway.limits.max_body_bytes, 1234);
    }

    #[test]
    fn what_needs_a_restart_is_kept_as_it_runs_and_named() {
        let cases: &[(&str, &str)] = &[
            ("listeners:\n  - addr: 127.0.0.1:8081", "listeners"),
            ("admin: { addr: 127.0.0.1:9191 }", "admin"),
            ("workers: 3", "workers/runtime"),
            ("limits: { max_connections: 7 }", "limits.max_connections"),
            (
                "replay_store: { type: memory, max_entries: 10 }",
                "replay_store",
            ),
            ("log: { format: json }", "log.format"),
        ];
        let running = compiled(RUNNING);
        for (change, kept) in cases {
            let next = if change.starts_with("listeners:") {
                RUNNING.replace("listeners:\n  - addr: 127.0.0.1:8080", change)
            } else {
                format!("{RUNNING}{change}\n")
            };
            let d = reload(&next, LOOPBACK);
            assert_eq!(d.kept.len(), 1, "{change}: {:?}", d.kept);
            assert!(d.kept[0].starts_with(kept), "{change}: {:?}", d.kept);
            // What is in force is what ran, for that part.
            assert_eq!(d.gateway.listeners.len(), running.listeners.len());
            assert_eq!(d.gateway.listeners[0].addr, running.listeners[0].addr);
            assert_eq!(d.gateway.admin, running.admin);
            assert_eq!(d.gateway.workers, running.workers);
            assert_eq!(
                d.gateway.limits.max_connections,
                running.limits.max_connections
            );
            assert_eq!(d.gateway.replay_store, running.replay_store);
            assert_eq!(d.gateway.log.format, running.log.format);
        }
    }

    #[test]
    fn a_queue_store_is_kept_only_once_open() {
        let dir = std::env::temp_dir().join(format!("hookgate-reload-{}", std::process::id()));
        let next = format!("{RUNNING}queue_store: {{ path: {} }}\n", dir.display());
        // First configured by this reload: it is the new configuration's own.
        let d = reload(&next, LOOPBACK);
        assert!(d.kept.is_empty(), "{:?}", d.kept);
        assert!(d.gateway.queue_store.is_some());
        // Open before (the running file had none, yet one is open): a change waits.
        let open = Facts {
            store_was_open: true,
            ..LOOPBACK
        };
        let d = reload(&next, open);
        assert_eq!(d.kept, vec!["queue_store"]);
        assert!(d.gateway.queue_store.is_none());
    }

    #[test]
    fn a_reload_cannot_drop_the_token_of_a_public_admin_listener() {
        let public: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let old = AdminToken::new(b"old-token-old-token".to_vec());
        let new = AdminToken::new(b"new-token-new-token".to_vec());
        // Public, and the new file has no token: the running one is kept.
        assert_eq!(
            admin_token_after_reload(public, None, Some(&old)),
            Some(old.clone())
        );
        // Public with a new token: the new one stands (rotation).
        assert_eq!(
            admin_token_after_reload(public, Some(&new), Some(&old)),
            None
        );
        // Loopback: the new file decides, token or none.
        assert_eq!(admin_token_after_reload(loopback, None, Some(&old)), None);
    }
}
