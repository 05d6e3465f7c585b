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

/// How often `--watch` looks at the files.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// `hookgate run --watch`: asks for a reload (a message on `reload`) when the configuration
/// file, or a secret, key or certificate file it names (`watched_files`), changes.
///
/// The files are read by path every half second and compared by content, not watched by
/// inode: editors save by writing a new file and renaming it over the old one, and
/// Kubernetes updates a mounted ConfigMap or Secret by swapping a symlink, both of which an
/// inode watch misses; polling by path sees them on any filesystem. A change is acted on
/// once two looks in a row agree (debounce: an editor's or `kubectl`'s several writes make
/// one reload), and a change back to what was last loaded asks for nothing.
pub async fn watch(path: std::path::PathBuf, reload: tokio::sync::mpsc::Sender<()>) {
    let mut loaded = fingerprint(&path);
    let mut last_seen = loaded;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        let path2 = path.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&path2)).await else {
            continue;
        };
        if now != loaded && now == last_seen {
            tracing::info!(config = %path.display(), "--watch: a watched file changed");
            loaded = now;
            if reload.send(()).await.is_err() {
                return;
            }
        }
        last_seen = now;
    }
}

/// SHA-256 over the configuration file and every file it names, in order; a missing file
/// counts as empty (its absence is the compiler's to report).
fn fingerprint(path: &std::path::Path) -> [u8; 32] {
    use sha2::Digest as _;
    // Only regular files are read: a FIFO would block this thread for good.
    let read = |p: &std::path::Path| match std::fs::metadata(p) {
        Ok(m) if m.is_file() => std::fs::read(p).unwrap_or_default(),
        Ok(_) => b"(not a regular file)".to_vec(),
        Err(_) => Vec::new(),
    };
    let mut hash = sha2::Sha256::new();
    let text = read(path);
    hash.update(&text);
    for file in watched_files(path, &text) {
        hash.update(file.as_os_str().as_encoded_bytes());
        hash.update(read(&file));
    }
    hash.finalize().into()
}

/// The files a configuration names: each listener's TLS `cert` and `key`, and each route's
/// `verify.secret_file`, `verify.public_key_file` and `upstream_tls` files, relative to the
/// configuration's
/// directory. Read from the YAML as written, so even a configuration that does not compile
/// is watched for its fix.
fn watched_files(path: &std::path::Path, text: &[u8]) -> Vec<std::path::PathBuf> {
    use serde_yaml::Value;
    let base = path.parent().unwrap_or_else(|| std::path::Path::new("."));
    let Ok(doc) = serde_yaml::from_slice::<Value>(text) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    let mut push = |v: Option<&Value>| {
        if let Some(p) = v.and_then(Value::as_str) {
            files.push(base.join(p));
        }
    };
    let list = |key: &str| {
        doc.get(key)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default()
    };
    for l in list("listeners") {
        push(l.get("tls").and_then(|t| t.get("cert")));
        push(l.get("tls").and_then(|t| t.get("key")));
    }
    for r in list("routes") {
        push(r.get("verify").and_then(|v| v.get("secret_file")));
        push(r.get("verify").and_then(|v| v.get("public_key_file")));
        for file in ["ca_file", "client_cert_file", "client_key_file"] {
            push(r.get("upstream_tls").and_then(|t| t.get(file)));
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_a_configuration_names_are_watched_and_changes_are_seen() {
        let dir = std::env::temp_dir().join(format!("hookgate-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("gateway.yaml");
        let text = "listeners:\n  - addr: 127.0.0.1:0\n    tls: { cert: tls/c.pem, key: tls/k.pem }\nroutes:\n  - name: a\n    verify: { preset: lahza, secret_file: a.secret }\n  - name: b\n    verify: { preset: discord, public_key_file: /etc/b.pub }\n    upstream_tls: { ca_file: ca.pem }\n";
        std::fs::write(&config, text).unwrap();
        let files = watched_files(&config, text.as_bytes());
        assert_eq!(
            files,
            [
                dir.join("tls/c.pem"),
                dir.join("tls/k.pem"),
                dir.join("a.secret"),
                std::path::PathBuf::from("/etc/b.pub"),
                dir.join("ca.pem"),
            ]
        );
        let before = fingerprint(&config);
        assert_eq!(before, fingerprint(&config), "stable while nothing changes");
        // A secret file appearing, then replaced by rename, changes the fingerprint.
        std::fs::write(dir.join("a.secret"), "one").unwrap();
        let one = fingerprint(&config);
        assert_ne!(one, before);
        std::fs::write(dir.join("a.secret.new"), "two").unwrap();
        std::fs::rename(dir.join("a.secret.new"), dir.join("a.secret")).unwrap();
        assert_ne!(fingerprint(&config), one);
        // Broken YAML: the file itself is still watched.
        assert!(watched_files(&config, b"routes: [").is_empty());
    }
}
