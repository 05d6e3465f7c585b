//! The top-level stores: `replay_store:` (memory or Redis) and `queue_store:` (embedded
//! SQLite or PostgreSQL), each with the fields of its `type:` only.

use std::path::Path;
use std::time::Duration;

use super::values::parse_duration;
use super::Report;
use crate::config::file::{RawQueueStore, RawReplayStore};
use crate::config::secret;
use crate::model::{QueueStoreConfig, ReplayStoreConfig, Retention};

/// `queue_store:`; `None` when absent (no route may be queued then).
pub(super) fn compile_queue_store(
    raw: Option<&RawQueueStore>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    r: &mut Report,
) -> Option<QueueStoreConfig> {
    let raw = raw?;
    let loc = "queue_store";
    let mut retention = Retention::default();
    if let Some(d) = raw
        .retention
        .as_deref()
        .and_then(|s| parse_duration(s, &format!("{loc}.retention"), r))
    {
        retention.delivered = d;
    }
    if let Some(d) = raw
        .dead_retention
        .as_deref()
        .and_then(|s| parse_duration(s, &format!("{loc}.dead_retention"), r))
    {
        retention.dead = d;
    }
    let only = |set: bool, field: &str, kind: &str, r: &mut Report| {
        if set {
            r.error(format!("{loc}.{field}"), format!("only for `type: {kind}`"));
        }
    };
    match raw.kind.as_deref() {
        None | Some("embedded") => {
            only(raw.url.is_some(), "url", "postgres", r);
            only(raw.pool_size.is_some(), "pool_size", "postgres", r);
            only(raw.timeout.is_some(), "timeout", "postgres", r);
            only(raw.ca_file.is_some(), "ca_file", "postgres", r);
            let Some(path) = &raw.path else {
                r.error(
                    format!("{loc}.path"),
                    "missing: the directory the queue lives in (e.g. /var/lib/hookgate/queue)",
                );
                return None;
            };
            let max_bytes = match raw.max_bytes {
                Some(n) if n < 64 * 1024 => {
                    r.error(
                        format!("{loc}.max_bytes"),
                        "less than 64 KiB: no room for events",
                    );
                    None
                }
                n => n,
            };
            Some(QueueStoreConfig::Embedded {
                path: base.join(path),
                max_bytes,
                retention,
            })
        }
        Some("postgres") => {
            only(raw.path.is_some(), "path", "embedded", r);
            only(raw.max_bytes.is_some(), "max_bytes", "embedded", r);
            let url = match &raw.url {
                None => {
                    r.error(
                        format!("{loc}.url"),
                        "missing (e.g. \"${DATABASE_URL}\" holding postgres://hookgate@db:5432/hookgate)",
                    );
                    return None;
                }
                Some(u) => match secret::resolve_value(u, env) {
                    Ok((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(e) => {
                        r.error(format!("{loc}.url"), e);
                        return None;
                    }
                },
            };
            // The message never repeats the URL: it may carry a password.
            if crate::delivery::postgres::parse_url(&url).is_err() {
                r.error(
                    format!("{loc}.url"),
                    "not a PostgreSQL URL (postgres://user[:password]@host:port/database)",
                );
            }
            let pool_size = match raw.pool_size {
                Some(0) => {
                    r.error(format!("{loc}.pool_size"), "must be at least 1");
                    1
                }
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(1024),
                None => 16,
            };
            let timeout = match &raw.timeout {
                None => Duration::from_secs(5),
                Some(t) => parse_duration(t, &format!("{loc}.timeout"), r)
                    .unwrap_or(Duration::from_secs(5)),
            };
            let ca_file = raw.ca_file.as_ref().map(|f| base.join(f));
            if let Some(f) = &ca_file {
                if let Err(e) = crate::tls::postgres_config(Some(f)) {
                    r.error(format!("{loc}.ca_file"), e);
                }
            }
            Some(QueueStoreConfig::Postgres {
                url,
                pool_size,
                timeout,
                ca_file,
                retention,
            })
        }
        Some(other) => {
            r.error(
                format!("{loc}.type"),
                format!("unknown store `{other}`; use embedded or postgres"),
            );
            None
        }
    }
}

pub(super) fn compile_replay_store(
    raw: Option<&RawReplayStore>,
    env: &dyn Fn(&str) -> Option<String>,
    r: &mut Report,
) -> ReplayStoreConfig {
    let Some(raw) = raw else {
        return ReplayStoreConfig::default();
    };
    let loc = "replay_store";
    match raw.kind.as_str() {
        "memory" => {
            for (set, field) in [
                (raw.url.is_some(), "url"),
                (raw.prefix.is_some(), "prefix"),
                (raw.timeout.is_some(), "timeout"),
            ] {
                if set {
                    r.error(format!("{loc}.{field}"), "only for `type: redis`");
                }
            }
            let max_entries = match raw.max_entries {
                Some(0) => {
                    r.error(format!("{loc}.max_entries"), "must be greater than 0");
                    1
                }
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                None => 100_000,
            };
            ReplayStoreConfig::Memory { max_entries }
        }
        "redis" => {
            if raw.max_entries.is_some() {
                r.error(format!("{loc}.max_entries"), "only for `type: memory`");
            }
            let url = match &raw.url {
                None => {
                    r.error(
                        format!("{loc}.url"),
                        "missing (e.g. redis://127.0.0.1:6379)",
                    );
                    String::new()
                }
                Some(u) => match secret::resolve_value(u, env) {
                    Ok((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(e) => {
                        r.error(format!("{loc}.url"), e);
                        String::new()
                    }
                },
            };
            if !url.is_empty() {
                if let Err(e) = redis::Client::open(url.as_str()) {
                    r.error(format!("{loc}.url"), format!("not a Redis URL: {e}"));
                }
            }
            let timeout = match &raw.timeout {
                None => Duration::from_millis(500),
                Some(t) => parse_duration(t, &format!("{loc}.timeout"), r)
                    .unwrap_or(Duration::from_millis(500)),
            };
            ReplayStoreConfig::Redis {
                url,
                prefix: raw.prefix.clone().unwrap_or_else(|| "hookgate:".into()),
                timeout,
            }
        }
        other => {
            r.error(
                format!("{loc}.type"),
                format!("unknown store `{other}`; use memory or redis"),
            );
            ReplayStoreConfig::default()
        }
    }
}
