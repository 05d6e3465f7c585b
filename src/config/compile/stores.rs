//! The top-level stores: `replay_store:` (memory or Redis) and `queue_store:` (embedded
//! SQLite or PostgreSQL).
//!
//! The file's structs (`RawReplayStore`, `RawQueueStore`) take the fields of every `type:` at
//! once, so that a field of the other type is reported as "only for `type: postgres`" where
//! it is written, rather than as serde's "unknown field" listing every field of the block. The
//! typing is done here, one step after serde: [`replay_store_kind`] and [`queue_store_kind`]
//! turn the raw block into one type's settings ([`ReplayStoreKind`], [`QueueStoreKind`]),
//! reporting any field of another type, and each type is then compiled on its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::parse_duration;
use super::Report;
use crate::config::file::{RawDuration, RawQueueStore, RawReplayStore};
use crate::config::secret;
use crate::model::{QueueStoreConfig, ReplayStoreConfig, Retention};

/// `replay_store:` typed: the fields of its `type:` only.
enum ReplayStoreKind<'a> {
    Memory {
        max_entries: Option<u64>,
    },
    Redis {
        /// `None`: missing (reported when compiled, with the rest of the block).
        url: Option<&'a str>,
        prefix: Option<&'a str>,
        timeout: Option<&'a RawDuration>,
    },
}

/// `queue_store:` typed: the fields of its `type:` only, the required ones present.
enum QueueStoreKind<'a> {
    Embedded {
        path: &'a Path,
        max_bytes: Option<u64>,
    },
    Postgres {
        url: &'a str,
        pool_size: Option<u64>,
        timeout: Option<&'a RawDuration>,
        ca_file: Option<&'a Path>,
    },
}

/// Reports each field in `set` (given, name) as belonging to `type: {kind}` only.
fn only_for(kind: &str, loc: &str, set: &[(bool, &str)], r: &mut Report) {
    for (given, field) in set {
        if *given {
            r.error(format!("{loc}.{field}"), format!("only for `type: {kind}`"));
        }
    }
}

/// `replay_store:`; the default (memory) when absent.
pub(super) fn compile_replay_store(
    raw: Option<&RawReplayStore>,
    env: &dyn Fn(&str) -> Option<String>,
    r: &mut Report,
) -> ReplayStoreConfig {
    let Some(raw) = raw else {
        return ReplayStoreConfig::default();
    };
    match replay_store_kind(raw, r) {
        Some(ReplayStoreKind::Memory { max_entries }) => compile_memory(max_entries, r),
        Some(ReplayStoreKind::Redis {
            url,
            prefix,
            timeout,
        }) => compile_redis(url, prefix, timeout, env, r),
        None => ReplayStoreConfig::default(),
    }
}

fn replay_store_kind<'a>(raw: &'a RawReplayStore, r: &mut Report) -> Option<ReplayStoreKind<'a>> {
    let loc = "replay_store";
    match raw.kind.as_str() {
        "memory" => {
            let other = [
                (raw.url.is_some(), "url"),
                (raw.prefix.is_some(), "prefix"),
                (raw.timeout.is_some(), "timeout"),
            ];
            only_for("redis", loc, &other, r);
            Some(ReplayStoreKind::Memory {
                max_entries: raw.max_entries,
            })
        }
        "redis" => {
            only_for(
                "memory",
                loc,
                &[(raw.max_entries.is_some(), "max_entries")],
                r,
            );
            Some(ReplayStoreKind::Redis {
                url: raw.url.as_deref(),
                prefix: raw.prefix.as_deref(),
                timeout: raw.timeout.as_ref(),
            })
        }
        other => {
            r.error(
                format!("{loc}.type"),
                format!("unknown store `{other}`; use memory or redis"),
            );
            None
        }
    }
}

fn compile_memory(max_entries: Option<u64>, r: &mut Report) -> ReplayStoreConfig {
    let max_entries = match max_entries {
        Some(0) => {
            r.error("replay_store.max_entries", "must be greater than 0");
            1
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => 100_000,
    };
    ReplayStoreConfig::Memory { max_entries }
}

fn compile_redis(
    url: Option<&str>,
    prefix: Option<&str>,
    timeout: Option<&RawDuration>,
    env: &dyn Fn(&str) -> Option<String>,
    r: &mut Report,
) -> ReplayStoreConfig {
    let loc = "replay_store";
    let url = match url {
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
    let timeout = match timeout {
        None => Duration::from_millis(500),
        Some(t) => {
            parse_duration(t, &format!("{loc}.timeout"), r).unwrap_or(Duration::from_millis(500))
        }
    };
    ReplayStoreConfig::Redis {
        url,
        prefix: prefix.unwrap_or("hookgate:").to_owned(),
        timeout,
    }
}

/// `queue_store:`; `None` when absent (no route may be queued then).
pub(super) fn compile_queue_store(
    raw: Option<&RawQueueStore>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    r: &mut Report,
) -> Option<QueueStoreConfig> {
    let raw = raw?;
    let retention = compile_retention(raw, r);
    match queue_store_kind(raw, r)? {
        QueueStoreKind::Embedded { path, max_bytes } => {
            compile_embedded(base.join(path), max_bytes, retention, r)
        }
        QueueStoreKind::Postgres {
            url,
            pool_size,
            timeout,
            ca_file,
        } => {
            let ca_file = ca_file.map(|f| r.file(base.join(f)));
            compile_postgres(url, pool_size, timeout, ca_file, retention, env, r)
        }
    }
}

/// `retention` and `dead_retention`, for either type.
fn compile_retention(raw: &RawQueueStore, r: &mut Report) -> Retention {
    let mut retention = Retention::default();
    if let Some(d) = raw
        .retention
        .as_deref()
        .and_then(|s| parse_duration(s, "queue_store.retention", r))
    {
        retention.delivered = d;
    }
    if let Some(d) = raw
        .dead_retention
        .as_deref()
        .and_then(|s| parse_duration(s, "queue_store.dead_retention", r))
    {
        retention.dead = d;
    }
    retention
}

/// `None`: an unknown type, or the type's required field missing (reported).
fn queue_store_kind<'a>(raw: &'a RawQueueStore, r: &mut Report) -> Option<QueueStoreKind<'a>> {
    let loc = "queue_store";
    match raw.kind.as_deref() {
        None | Some("embedded") => {
            let other = [
                (raw.url.is_some(), "url"),
                (raw.pool_size.is_some(), "pool_size"),
                (raw.timeout.is_some(), "timeout"),
                (raw.ca_file.is_some(), "ca_file"),
            ];
            only_for("postgres", loc, &other, r);
            let Some(path) = &raw.path else {
                r.error(
                    format!("{loc}.path"),
                    "missing: the directory the queue lives in (e.g. /var/lib/hookgate/queue)",
                );
                return None;
            };
            Some(QueueStoreKind::Embedded {
                path,
                max_bytes: raw.max_bytes,
            })
        }
        Some("postgres") => {
            let other = [
                (raw.path.is_some(), "path"),
                (raw.max_bytes.is_some(), "max_bytes"),
            ];
            only_for("embedded", loc, &other, r);
            let Some(url) = &raw.url else {
                r.error(
                    format!("{loc}.url"),
                    "missing (e.g. \"${DATABASE_URL}\" holding postgres://hookgate@db:5432/hookgate)",
                );
                return None;
            };
            Some(QueueStoreKind::Postgres {
                url,
                pool_size: raw.pool_size,
                timeout: raw.timeout.as_ref(),
                ca_file: raw.ca_file.as_deref(),
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

fn compile_embedded(
    path: PathBuf,
    max_bytes: Option<u64>,
    retention: Retention,
    r: &mut Report,
) -> Option<QueueStoreConfig> {
    let max_bytes = match max_bytes {
        Some(n) if n < 64 * 1024 => {
            r.error(
                "queue_store.max_bytes",
                "less than 64 KiB: no room for events",
            );
            None
        }
        n => n,
    };
    Some(QueueStoreConfig::Embedded {
        path,
        max_bytes,
        retention,
    })
}

fn compile_postgres(
    url: &str,
    pool_size: Option<u64>,
    timeout: Option<&RawDuration>,
    ca_file: Option<PathBuf>,
    retention: Retention,
    env: &dyn Fn(&str) -> Option<String>,
    r: &mut Report,
) -> Option<QueueStoreConfig> {
    let loc = "queue_store";
    let url = match secret::resolve_value(url, env) {
        Ok((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            r.error(format!("{loc}.url"), e);
            return None;
        }
    };
    // The message never repeats the URL: it may carry a password.
    if crate::delivery::postgres::parse_url(&url).is_err() {
        r.error(
            format!("{loc}.url"),
            "not a PostgreSQL URL (postgres://user[:password]@host:port/database)",
        );
    }
    let pool_size = match pool_size {
        Some(0) => {
            r.error(format!("{loc}.pool_size"), "must be at least 1");
            1
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(1024),
        None => 16,
    };
    let timeout = match timeout {
        None => Duration::from_secs(5),
        Some(t) => {
            parse_duration(t, &format!("{loc}.timeout"), r).unwrap_or(Duration::from_secs(5))
        }
    };
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
