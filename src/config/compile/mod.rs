//! Raw file structs -> the runtime model. Collects every error with its location instead of
//! stopping at the first, so an operator fixes a file in one pass.
//!
//! This file reads the file and compiles its top level in order, one step per section:
//!
//! - `readable.rs`: every type error of the YAML, and the readable rest of a broken file;
//! - `listeners.rs`: listeners, the admin listener and its token, certificates, `log:`;
//! - `limits.rs`: `limits:`, and a route's own over them;
//! - `stores.rs`: `replay_store:` and `queue_store:`;
//! - `routes.rs`: each route and the checks across routes, with `upstream.rs` (its URL and
//!   TLS), `verify.rs` and `keys.rs` (its scheme), `delivery.rs` (sync or queued, replay);
//! - `values.rs`: addresses, networks, header names, durations, URLs;
//! - `sender.rs`: one route's keys and verify token as its sender holds them (`hookgate
//!   sign`), read with the same readers.
//!
//! What two of them share (`Report`, `Stores`, `Ctx`) lives here, below them all, so that no
//! section imports one that imports it back.

mod delivery;
mod filter;
mod handshake;
mod jwt;
mod key_fetch;
mod keys;
mod limits;
mod listeners;
mod readable;
mod routes;
mod sender;
mod stores;
mod upstream;
mod values;
mod verify;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::file::RawConfig;
use super::{ConfigError, ConfigErrors, Loaded};
use crate::model::key_fetch::KeyFetch;
use crate::model::{
    AdminToken, Gateway, Limits, Listener, LogSettings, QueueStoreConfig, ReplayStoreConfig,
    RouteTable, RuntimeModel,
};
use limits::compile_limits;
use listeners::{
    check_certificates, compile_admin_token, compile_listeners, compile_log, compile_runtime,
    compile_workers,
};
use readable::{is_under, readable_part};
use routes::compile_routes;
use stores::{compile_queue_store, compile_replay_store};
use values::{parse_addr, parse_net};

pub use sender::{sender_secrets, SenderSecrets};

/// A destination filter written on its own (`hookgate filter test`, a replay's `--filter`):
/// `{ json: /type, prefix: invoice. }`; or every mistake in it, located, in one message.
pub fn parse_filter(text: &str) -> Result<crate::model::filter::Filter, String> {
    let raw: crate::config::file::RawFilter =
        serde_yaml::from_str(text).map_err(|e| format!("filter: {e}"))?;
    let mut r = Report::default();
    match filter::compile_filter(&raw, "filter", &mut r) {
        Some(f) if r.errors.is_empty() => Ok(f),
        _ => Err(r
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")),
    }
}
pub use verify::{compile_scheme, expand_preset, preset_shape};

/// Accumulates errors and warnings while compiling, and the files read.
#[derive(Default)]
struct Report {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    /// Every file the compile reads (or tries to), in order, once each: see [`Loaded::files`].
    files: Vec<PathBuf>,
}

impl Report {
    /// Records `path` as a file the compile reads, and gives it back to be read. Every file
    /// the compiler opens goes through here, so that `--watch` watches exactly those.
    fn file(&mut self, path: PathBuf) -> PathBuf {
        if !self.files.contains(&path) {
            self.files.push(path.clone());
        }
        path
    }

    fn error(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            location: location.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(ConfigError {
            location: location.into(),
            message: message.into(),
        });
    }
}

/// Which top-level stores a route may use.
#[derive(Clone, Copy)]
struct Stores {
    queue: bool,
}

/// What compiling a `verify:` block needs from its surroundings (`verify.rs`, `keys.rs`).
#[derive(Clone, Copy)]
struct Ctx<'a> {
    /// Relative `secret_file`/`public_key_file` paths are resolved against this.
    base: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The route's `public_url`, for `url` message parts.
    public_url: Option<&'a str>,
    /// Compile the scheme's shape only, without keys (for `hookgate presets`).
    shape_only: bool,
    /// The route's `verify.key_id`, for `key_id` message parts (set by `compile_verify`).
    key_id: Option<&'a str>,
}

impl<'a> Ctx<'a> {
    /// The same context for a `verify:` block whose `key_id` is `key_id`.
    fn with_key_id(&self, key_id: Option<&'a str>) -> Ctx<'a> {
        Ctx { key_id, ..*self }
    }
}

/// Compiles configuration text. `base` resolves relative paths; `env` looks up `${VARS}`.
pub fn compile(
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let (raw, mut r, unread) = read(text)?;
    // The type errors of keys that could not be read; what the compile finds is after them.
    let type_errors_found = r.errors.len();
    let top = compile_top_level(&raw, base, env, &mut r);
    let stores = Stores {
        // An unreadable `queue_store:` is reported already; its routes are not wrong too.
        queue: top.queue_store.is_some() || unread.iter().any(|k| k == "queue_store"),
    };
    let routes = compile_routes(raw.routes, base, env, &top.limits, stores, &mut r);
    drop_consequences_of_unread(&mut r, type_errors_found, &unread);
    if !r.errors.is_empty() {
        return Err(ConfigErrors {
            errors: r.errors,
            warnings: r.warnings,
            files: r.files,
        });
    }
    Ok(Loaded {
        gateway: Gateway {
            workers: top.workers,
            runtime: top.runtime,
            listeners: top.listeners,
            admin: top
                .admin
                .expect("admin address error would have been reported"),
            trusted_proxies: top.trusted_proxies,
            limits: top.limits,
            routes: RouteTable::new(routes),
            replay_store: top.replay_store,
            queue_store: top.queue_store,
            admin_token: top.admin_token,
            log: top.log,
            key_fetch: top.key_fetch,
        },
        warnings: r.warnings,
        files: r.files,
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
    })
}

/// The file as serde reads it, or, when it does not deserialize as a whole, its readable part
/// with every type error found (in the report) and the keys left out. `Err`: not even that.
fn read(text: &str) -> Result<(RawConfig, Report, Vec<String>), ConfigErrors> {
    match serde_yaml::from_str::<RawConfig>(text) {
        Ok(raw) => Ok((raw, Report::default(), Vec::new())),
        Err(e) => match readable_part(text, &e) {
            Ok((raw, errors, unread)) => Ok((
                raw,
                Report {
                    errors,
                    ..Report::default()
                },
                unread,
            )),
            Err(errors) => Err(ConfigErrors {
                errors,
                warnings: Vec::new(),
                files: Vec::new(),
            }),
        },
    }
}

/// Everything but the routes, compiled (and its errors reported) in this order.
struct TopLevel {
    workers: usize,
    runtime: RuntimeModel,
    listeners: Vec<Listener>,
    /// `None` when `admin.addr` is wrong (reported).
    admin: Option<SocketAddr>,
    trusted_proxies: Vec<IpNet>,
    limits: Limits,
    replay_store: ReplayStoreConfig,
    queue_store: Option<QueueStoreConfig>,
    admin_token: Option<AdminToken>,
    log: LogSettings,
    key_fetch: KeyFetch,
}

fn compile_top_level(
    raw: &RawConfig,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    r: &mut Report,
) -> TopLevel {
    let listeners = compile_listeners(raw, base, r);
    let workers = compile_workers(raw.workers, r);
    let runtime = compile_runtime(raw.runtime.as_deref(), r);
    let admin = match &raw.admin {
        None => Some(super::DEFAULT_ADMIN_ADDR),
        Some(a) => parse_addr(&a.addr, "admin.addr", r),
    };
    let trusted_proxies = raw
        .client_ip
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, s)| parse_net(s, &format!("client_ip.trusted_proxies[{i}]"), r))
        .collect();
    let limits = compile_limits(&raw.limits, r);
    let replay_store = compile_replay_store(raw.replay_store.as_ref(), env, r);
    let queue_store = compile_queue_store(raw.queue_store.as_ref(), base, env, r);
    let admin_token = compile_admin_token(raw.admin.as_ref(), admin, &listeners, base, r);
    check_certificates(&listeners, std::time::SystemTime::now(), r);
    let log = compile_log(raw.log.as_ref(), r);
    let key_fetch = key_fetch::compile_key_fetch(raw.key_fetch.as_ref(), base, r);
    TopLevel {
        workers,
        runtime,
        listeners,
        admin,
        trusted_proxies,
        limits,
        replay_store,
        queue_store,
        admin_token,
        log,
        key_fetch,
    }
}

/// A key that could not be read was compiled as if absent: what that absence causes below it
/// (`listeners`: "no listeners") is not news. The first `type_errors_found` errors are the
/// type errors themselves and stay.
fn drop_consequences_of_unread(r: &mut Report, type_errors_found: usize, unread: &[String]) {
    let mut i = 0;
    r.errors.retain(|e| {
        i += 1;
        i <= type_errors_found || !unread.iter().any(|key| is_under(&e.location, key))
    });
}

#[cfg(test)]
mod tests;
