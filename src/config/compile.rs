//! Raw file structs -> the runtime model. Collects every error with its location instead of
//! stopping at the first, so an operator fixes a file in one pass.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, Method};
use ipnet::IpNet;

use super::file::{
    RawConfig, RawDuration, RawLimits, RawLog, RawPart, RawQueue, RawQueueStore, RawReplay,
    RawReplayKey, RawReplayStore, RawRoute, RawRouteLimits, RawTimestamp, RawUpstreamTls,
    RawVerify,
};
use super::presets;
use super::secret::{self, Origin};
use super::{ConfigError, ConfigErrors, Loaded};
use crate::model::{
    AdminToken, Delivery, Gateway, KeySource, Limits, Listener, LogFormat, LogSettings,
    OnStoreError, PathPattern, QueuePolicy, QueueStoreConfig, ReplayPolicy, ReplayStoreConfig,
    Retention, Route, RouteLimits, RouteTable, RuntimeModel, Upstream,
};
use crate::scheme::{
    Algorithm, Encoding, Entries, KeyEncoding, Keys, Part, Scheme, SignatureSpec, TimestampSource,
    TimestampSpec, TimestampUnit, Window,
};

/// Accumulates errors and warnings while compiling.
#[derive(Default)]
struct Report {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Report {
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

/// The methods a route may list: those a webhook sender or its handshake uses. Anything else
/// (`POTS`, `CONNECT`, `TRACE`) is a typo or a mistake, not a method to forward.
const KNOWN_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// How soon before its expiry a listener's certificate earns a warning (the alert's window,
/// deploy/prometheus/alerts.yaml).
const CERT_WARN_BEFORE: Duration = Duration::from_secs(14 * 86_400);

/// The admin listener must not take a webhook listener's address (one of the two would fail
/// to bind, or take the other's traffic); off loopback it is worth a warning even with a token.
fn check_admin_addr(admin: SocketAddr, listeners: &[Listener], r: &mut Report) {
    for (i, l) in listeners.iter().enumerate() {
        let same_port = admin.port() != 0 && admin.port() == l.addr.port();
        let overlap = admin.ip() == l.addr.ip()
            || admin.ip().is_unspecified()
            || l.addr.ip().is_unspecified();
        if same_port && overlap {
            r.error(
                "admin.addr",
                format!(
                    "{admin} is also listeners[{i}]'s address ({}): give the admin listener a \
                     port of its own",
                    l.addr
                ),
            );
        }
    }
    if !admin.ip().is_loopback() {
        r.warn(
            "admin.addr",
            format!(
                "{admin} is not loopback: /metrics, /healthz and /readyz answer anyone who can \
                 reach it (the queue API needs the token); keep it on a private network"
            ),
        );
    }
}

/// A listener's certificate that has expired, or expires within [`CERT_WARN_BEFORE`], earns
/// a warning (`check --strict` fails on it).
fn check_certificates(listeners: &[Listener], now: std::time::SystemTime, r: &mut Report) {
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for (i, l) in listeners.iter().enumerate() {
        let Some(expires) = l.cert_expires else {
            continue;
        };
        let left = expires.saturating_sub(now);
        let loc = format!("listeners[{i}].tls.cert");
        if left <= 0 {
            // A warning, not an error: refusing to start (or to reload) would take the plain
            // listeners and every other route down with it.
            r.warn(
                loc,
                format!(
                    "the certificate expired {} ago: every TLS handshake fails; renew it, then \
                     reload",
                    humantime::format_duration(Duration::from_secs(left.unsigned_abs()))
                ),
            );
        } else if left < CERT_WARN_BEFORE.as_secs() as i64 {
            r.warn(
                loc,
                format!(
                    "the certificate expires in {}: renew it, then reload",
                    humantime::format_duration(Duration::from_secs(left.unsigned_abs()))
                ),
            );
        }
    }
}

/// A route name is a metric label, a log field, a queue API path segment and part of replay
/// keys (`name:hash`): 1 to 64 letters, digits, `-`, `_` or `.`. The empty name is the label
/// of requests that matched no route.
fn check_route_name(name: &str, label: &str, r: &mut Report) {
    // `.` and `..` are path segments a URL-normalising proxy would rewrite (queue API).
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        r.error(
            format!("{label}.name"),
            format!(
                "`{name}`: use 1 to 64 letters, digits, `-`, `_` or `.`, not `.` or `..` alone \
                 (the name is a metric label, a URL segment of the queue API and part of replay \
                 keys; the empty name is reserved for requests that match no route)"
            ),
        );
    }
}

/// Routes that an earlier route makes unreachable (errors) or partly unreachable (warnings).
fn check_reachability(routes: &[Route], labels: &[String], r: &mut Report) {
    let table: Vec<(&PathPattern, &[Method])> = routes
        .iter()
        .map(|route| (&route.path, route.methods.as_slice()))
        .collect();
    for (i, route) in routes.iter().enumerate() {
        match super::overlap::shadow(&table, i) {
            None => {}
            Some(super::overlap::Shadow::Unreachable(by)) => r.error(
                &labels[i],
                format!(
                    "unreachable: every request it matches ({} {}) goes to {} first (routes are \
                     tried in order); move it above, or narrow the earlier path or methods",
                    route
                        .methods
                        .iter()
                        .map(Method::as_str)
                        .collect::<Vec<_>>()
                        .join("|"),
                    route.path,
                    by.iter()
                        .map(|&b| labels[b].as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(super::overlap::Shadow::Methods(taken)) => {
                for (by, methods) in taken {
                    r.warn(
                        &labels[i],
                        format!(
                            "{} {} goes to {} first: this route only gets its other methods",
                            methods
                                .iter()
                                .map(Method::as_str)
                                .collect::<Vec<_>>()
                                .join("|"),
                            route.path,
                            labels[by]
                        ),
                    );
                }
            }
        }
    }
}

/// Compiles configuration text. `base` resolves relative paths; `env` looks up `${VARS}`.
pub fn compile(
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let (raw, mut r, unread) = match serde_yaml::from_str::<RawConfig>(text) {
        Ok(raw) => (raw, Report::default(), Vec::new()),
        Err(e) => match readable_part(text, &e) {
            Ok((raw, errors, unread)) => (
                raw,
                Report {
                    errors,
                    warnings: Vec::new(),
                },
                unread,
            ),
            Err(errors) => {
                return Err(ConfigErrors {
                    errors,
                    warnings: Vec::new(),
                })
            }
        },
    };
    // The type errors of keys that could not be read; what the compile finds is after them.
    let type_errors_found = r.errors.len();

    let listeners = compile_listeners(&raw, base, &mut r);
    let workers = match raw.workers {
        Some(0) => {
            r.error("workers", "must be at least 1");
            1
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(1024),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let runtime = match raw.runtime.as_deref() {
        None => RuntimeModel::DEFAULT,
        Some("per_core") if cfg!(unix) => RuntimeModel::PerCore,
        Some("per_core") => {
            r.error("runtime", "per_core needs SO_REUSEPORT (unix); use shared");
            RuntimeModel::Shared
        }
        Some("shared") => RuntimeModel::Shared,
        Some(other) => {
            r.error(
                "runtime",
                format!("unknown runtime {other:?}: use per_core or shared"),
            );
            RuntimeModel::DEFAULT
        }
    };
    let admin = match &raw.admin {
        None => Some(super::DEFAULT_ADMIN_ADDR),
        Some(a) => parse_addr(&a.addr, "admin.addr", &mut r),
    };
    let trusted_proxies = raw
        .client_ip
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, s)| parse_net(s, &format!("client_ip.trusted_proxies[{i}]"), &mut r))
        .collect();
    let limits = compile_limits(&raw.limits, &mut r);
    let replay_store = compile_replay_store(raw.replay_store.as_ref(), env, &mut r);
    let queue_store = compile_queue_store(raw.queue_store.as_ref(), base, env, &mut r);
    let admin_token = raw
        .admin
        .as_ref()
        .and_then(|a| a.token_file.as_deref())
        .and_then(|f| read_admin_token(&base.join(f), &mut r));
    if let (Some(addr), None) = (admin, &admin_token) {
        if !addr.ip().is_loopback() {
            r.error(
                "admin.token_file",
                format!(
                    "required when the admin listener is not on loopback ({addr}): the queue \
                     API changes state"
                ),
            );
        }
    }
    if let Some(admin) = admin {
        check_admin_addr(admin, &listeners, &mut r);
    }
    check_certificates(&listeners, std::time::SystemTime::now(), &mut r);
    let log = compile_log(raw.log.as_ref(), &mut r);

    let mut routes = Vec::new();
    let mut names = HashSet::new();
    // Each compiled route's location (`routes[i] (name)`), for the checks across routes.
    let mut labels = Vec::new();
    if raw.routes.is_empty() {
        r.error(
            "routes",
            "no routes: the gateway would refuse every request",
        );
    }
    for (i, value) in raw.routes.into_iter().enumerate() {
        let label = route_label(i, &value);
        let raw_route = match raw_route(&value, &label) {
            Ok(rr) => rr,
            Err(found) => {
                r.errors.extend(found);
                continue;
            }
        };
        if !names.insert(raw_route.name.clone()) {
            r.error(&label, format!("duplicate route name `{}`", raw_route.name));
        }
        check_route_name(&raw_route.name, &label, &mut r);
        let stores = Stores {
            // An unreadable `queue_store:` is reported already; its routes are not wrong too.
            queue: queue_store.is_some() || unread.iter().any(|k| k == "queue_store"),
        };
        if let Some(route) = compile_route(raw_route, &label, base, env, &limits, stores, &mut r) {
            routes.push(route);
            labels.push(label);
        }
    }
    check_reachability(&routes, &labels, &mut r);

    // A key that could not be read was compiled as if absent: what that absence causes below
    // it (`listeners`: "no listeners") is not news.
    let mut i = 0;
    r.errors.retain(|e| {
        i += 1;
        i <= type_errors_found || !unread.iter().any(|key| is_under(&e.location, key))
    });
    if !r.errors.is_empty() {
        return Err(ConfigErrors {
            errors: r.errors,
            warnings: r.warnings,
        });
    }
    Ok(Loaded {
        gateway: Gateway {
            workers,
            runtime,
            listeners,
            admin: admin.expect("admin address error would have been reported"),
            trusted_proxies,
            limits,
            routes: RouteTable::new(routes),
            replay_store,
            queue_store,
            admin_token,
            log,
        },
        warnings: r.warnings,
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
    })
}

fn compile_log(raw: Option<&RawLog>, r: &mut Report) -> LogSettings {
    let mut out = LogSettings::default();
    let Some(raw) = raw else { return out };
    match raw.format.as_deref() {
        None | Some("text") => {}
        Some("json") => out.format = LogFormat::Json,
        Some(other) => r.error(
            "log.format",
            format!("unknown format `{other}`; use text or json"),
        ),
    }
    if let Some(level) = &raw.level {
        match crate::log_filter::check(level) {
            Ok(l) => out.level = l.to_owned(),
            Err(e) => r.error("log.level", e),
        }
    }
    out
}

/// For a file that does not deserialize as a whole: every type error in it (not only the first
/// one serde stops at), and the rest of the file without what failed (a field of a top-level
/// block, or the whole key), with the names of what was left out, so that the compile goes on
/// and reports the file's other errors and its warnings in the same pass. `Err`: not even that
/// much reads (not YAML, not a mapping).
fn readable_part(
    text: &str,
    e: &serde_yaml::Error,
) -> Result<(RawConfig, Vec<ConfigError>, Vec<String>), Vec<ConfigError>> {
    use serde_yaml::{Mapping, Value};
    let whole = || ConfigError {
        location: yaml_location(e),
        message: e.to_string(),
    };
    let Ok(doc) = serde_yaml::from_str::<Mapping>(text) else {
        return Err(vec![whole()]);
    };
    let mut errors = Vec::new();
    type_errors::<RawConfig>(
        &Mapping::new(),
        &[],
        &Value::Mapping(doc.clone()),
        None,
        &mut errors,
    );
    match errors.as_mut_slice() {
        [] => errors.push(whole()),
        // The one error serde stopped at also knows its line and column: keep them.
        [one] => {
            // Without the path serde puts first: the location says it already.
            let message = e.to_string();
            one.message = match message.split_once(": ") {
                Some((path, rest)) if is_under(&one.location, path) => rest.to_owned(),
                _ => message,
            };
        }
        _ => {}
    }
    // Each key alone, read from text as the whole file is (where `30` may be a string); a
    // block (`limits:`) loses only the fields that fail, as long as the rest of it reads.
    // `None`: it reads; `Some(field)`: it fails, at this field of the block if one is named.
    let failure = |key: &Value, value: &Value| -> Option<Option<String>> {
        let mut alone = Mapping::new();
        alone.insert(key.clone(), value.clone());
        let text = serde_yaml::to_string(&alone).ok()?;
        let e = serde_path_to_error::deserialize::<_, RawConfig>(
            serde_yaml::Deserializer::from_str(&text),
        )
        .err()?;
        Some(match e.path().iter().nth(1) {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
            _ => None,
        })
    };
    let mut rest = Mapping::new();
    let mut unread = Vec::new();
    for (key, mut value) in doc {
        // Not a field name: reported as an unknown field, and nothing to compile.
        let Some(name) = key.as_str().map(str::to_owned) else {
            continue;
        };
        let read = loop {
            let field = match failure(&key, &value) {
                None => break true,
                Some(field) => field,
            };
            let removed = field.as_ref().is_some_and(|f| {
                value
                    .as_mapping_mut()
                    .is_some_and(|m| m.remove(f.as_str()).is_some())
            });
            match field {
                Some(f) if removed => unread.push(format!("{name}.{f}")),
                _ => break false,
            }
        };
        if read {
            rest.insert(key, value);
        } else {
            unread.push(name);
        }
    }
    match serde_yaml::to_string(&rest).map(|t| serde_yaml::from_str::<RawConfig>(&t)) {
        Ok(Ok(raw)) => Ok((raw, errors, unread)),
        _ => Err(errors),
    }
}

/// Whether `location` (`limits.upstream_timeout`, `listeners[0].addr`) is `key` or below it.
fn is_under(location: &str, key: &str) -> bool {
    location
        .strip_prefix(key)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// `routes[i] (name)`, or `routes[i]` for a route without a readable name.
fn route_label(i: usize, value: &serde_yaml::Value) -> String {
    value
        .get("name")
        .and_then(|n| n.as_str())
        .map(|n| format!("routes[{i}] ({n})"))
        .unwrap_or_else(|| format!("routes[{i}]"))
}

/// One route as the file has it, or every field that is wrong (each located; serde alone
/// would stop at the first).
fn raw_route(value: &serde_yaml::Value, label: &str) -> Result<RawRoute, Vec<ConfigError>> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let mut found = Vec::new();
        if let Some(m) = value.as_mapping() {
            for (key, inner) in m {
                type_errors::<RawRoute>(
                    &route_stand_ins(),
                    std::slice::from_ref(key),
                    inner,
                    Some(label),
                    &mut found,
                );
            }
            // A required field missing from the route itself.
            if found.is_empty() {
                let mut required = route_stand_ins();
                required.retain(|k, _| !m.contains_key(k));
                for (k, _) in required {
                    found.push(ConfigError {
                        location: label.to_owned(),
                        message: format!("missing field `{}`", k.as_str().unwrap_or_default()),
                    });
                }
            }
        }
        if found.is_empty() {
            found.push(route_error(e, label));
        }
        found
    })
}

/// A route's deserialization error, located inside the route. serde quotes the offending
/// value; for a secret that would print it, so secrets get a message of their own.
fn route_error(e: serde_path_to_error::Error<serde_yaml::Error>, label: &str) -> ConfigError {
    let path = e.path().to_string();
    let location = if path == "." {
        label.to_owned()
    } else {
        format!("{label}.{path}")
    };
    let message = if path.contains("secret") {
        "must be a quoted string (\"${ENV_VAR}\" or a literal)".to_string()
    } else {
        e.into_inner().to_string()
    };
    ConfigError { location, message }
}

/// Every type error in a YAML mapping, not only the first one serde stops at. `value`, at
/// `path` below the root, is deserialized into `T` alone beside `base` (stand-ins for the
/// root's required fields, so a lone key is not blamed for their absence); when that fails
/// and `value` is a mapping, each of its keys is tried alone the same way, deeper first. A
/// lone key failing only because a mapping above it misses a field is not blamed: that
/// error is reported once, for the mapping that lacks the field. `label` locates a route's keys (and
/// hides secret values); top-level keys are their own location.
fn type_errors<T: serde::de::DeserializeOwned>(
    base: &serde_yaml::Mapping,
    path: &[serde_yaml::Value],
    value: &serde_yaml::Value,
    label: Option<&str>,
    out: &mut Vec<ConfigError>,
) {
    use serde_yaml::{Mapping, Value};
    // The document to try: `base`, with `value` at `path` (or merged into the root).
    let mut doc = base.clone();
    match path.split_first() {
        None => {
            if let Some(m) = value.as_mapping() {
                doc.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        Some((first, rest)) => {
            let nested = rest.iter().rev().fold(value.clone(), |inner, key| {
                let mut m = Mapping::new();
                m.insert(key.clone(), inner);
                Value::Mapping(m)
            });
            doc.insert(first.clone(), nested);
        }
    }
    let Err(e) = serde_path_to_error::deserialize::<_, T>(Value::Mapping(doc)) else {
        return;
    };
    // A field missing from a mapping above this key (only this key was put there).
    let above = e.path().iter().count() < path.len();
    if let Some(m) = value.as_mapping().filter(|m| !m.is_empty()) {
        let before = out.len();
        for (key, inner) in m {
            let mut deeper = path.to_vec();
            deeper.push(key.clone());
            type_errors::<T>(base, &deeper, inner, label, out);
        }
        if out.len() > before {
            return;
        }
    }
    let error = match label {
        Some(label) => route_error(e, label),
        None => {
            let location = e.path().to_string();
            ConfigError {
                location: if location == "." {
                    "gateway.yaml".to_owned()
                } else {
                    location
                },
                message: e.into_inner().to_string(),
            }
        }
    };
    if above && error.message.starts_with("missing field") {
        return;
    }
    if !out.contains(&error) {
        out.push(error);
    }
}

/// Stand-ins for a route's required fields, for trying its other keys alone.
fn route_stand_ins() -> serde_yaml::Mapping {
    let mut m = serde_yaml::Mapping::new();
    m.insert("name".into(), "x".into());
    m.insert("path".into(), "/x".into());
    m.insert("upstream".into(), "http://x".into());
    m
}

fn yaml_location(e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(l) => format!("line {} column {}", l.line(), l.column()),
        None => "gateway.yaml".into(),
    }
}

fn compile_listeners(raw: &RawConfig, base: &Path, r: &mut Report) -> Vec<Listener> {
    if raw.listeners.is_empty() {
        r.error(
            "listeners",
            "no listeners: add at least one `- addr: HOST:PORT`",
        );
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let loc = format!("listeners[{i}]");
        let Some(addr) = parse_addr(&l.addr, &format!("{loc}.addr"), r) else {
            continue;
        };
        if addr.port() != 0 && !seen.insert(addr) {
            r.error(format!("{loc}.addr"), format!("{addr} is listed twice"));
        }
        let tls = match &l.tls {
            None => None,
            Some(t) => match crate::tls::server_config(&base.join(&t.cert), &base.join(&t.key)) {
                Ok(cfg) => {
                    if let Some(exposed) = secret::exposure(&base.join(&t.key)) {
                        r.warn(format!("{loc}.tls.key"), exposed);
                    }
                    Some(cfg)
                }
                Err(e) => {
                    r.error(format!("{loc}.tls"), e);
                    continue;
                }
            },
        };
        let (tls, cert_expires) = match tls {
            Some(t) => (Some(t.config), t.expires),
            None => (None, None),
        };
        let proxy_protocol = l.proxy_protocol.unwrap_or(false);
        if proxy_protocol && raw.client_ip.trusted_proxies.is_empty() {
            r.error(
                format!("{loc}.proxy_protocol"),
                "needs client_ip.trusted_proxies: the header is believed only from those \
                 peers (your load balancer), so no connection could be accepted",
            );
        }
        out.push(Listener {
            addr,
            tls,
            cert_expires,
            proxy_protocol,
        });
    }
    out
}

fn compile_limits(raw: &RawLimits, r: &mut Report) -> Limits {
    let d = Limits::default();
    let dur = |v: &Option<RawDuration>, field: &str, default: Duration, r: &mut Report| match v {
        None => default,
        Some(s) => parse_duration(s, &format!("limits.{field}"), r).unwrap_or(default),
    };
    let positive = |v: Option<u64>, field: &str, default: u64, r: &mut Report| match v {
        Some(0) => {
            r.error(format!("limits.{field}"), "must be greater than 0");
            default
        }
        Some(n) => n,
        None => default,
    };
    let max_header_bytes = positive(
        raw.max_header_bytes,
        "max_header_bytes",
        d.max_header_bytes,
        r,
    );
    if max_header_bytes < 8192 {
        r.error(
            "limits.max_header_bytes",
            "must be at least 8192 (the HTTP/1.1 read buffer's minimum)",
        );
    }
    let max_body_bytes = positive(raw.max_body_bytes, "max_body_bytes", d.max_body_bytes, r);
    let max_buffered_body_bytes = positive(
        raw.max_buffered_body_bytes,
        "max_buffered_body_bytes",
        d.max_buffered_body_bytes,
        r,
    );
    if max_buffered_body_bytes < max_body_bytes {
        r.error(
            "limits.max_buffered_body_bytes",
            format!(
                "{max_buffered_body_bytes} is less than max_body_bytes ({max_body_bytes}): a \
                 body of the largest allowed size could never be read"
            ),
        );
    }
    Limits {
        max_body_bytes,
        max_buffered_body_bytes,
        max_header_bytes,
        max_response_bytes: positive(
            raw.max_response_bytes,
            "max_response_bytes",
            d.max_response_bytes,
            r,
        ),
        max_connections: positive(
            raw.max_connections,
            "max_connections",
            d.max_connections as u64,
            r,
        ) as usize,
        max_connections_per_ip: positive(
            raw.max_connections_per_ip,
            "max_connections_per_ip",
            d.max_connections_per_ip as u64,
            r,
        ) as usize,
        header_read_timeout: dur(
            &raw.header_read_timeout,
            "header_read_timeout",
            d.header_read_timeout,
            r,
        ),
        body_read_timeout: dur(
            &raw.body_read_timeout,
            "body_read_timeout",
            d.body_read_timeout,
            r,
        ),
        upstream_connect_timeout: dur(
            &raw.upstream_connect_timeout,
            "upstream_connect_timeout",
            d.upstream_connect_timeout,
            r,
        ),
        upstream_timeout: dur(
            &raw.upstream_timeout,
            "upstream_timeout",
            d.upstream_timeout,
            r,
        ),
        upstream_keepalive: raw
            .upstream_keepalive
            .map_or(d.upstream_keepalive, |n| n.min(usize::MAX as u64) as usize),
        // Zero is allowed here: no load balancer in front, stop serving at once.
        drain_delay: match raw.drain_delay.as_deref() {
            None => d.drain_delay,
            Some(s) if humantime::parse_duration(s).is_ok_and(|d| d.is_zero()) => Duration::ZERO,
            Some(s) => parse_duration(s, "limits.drain_delay", r).unwrap_or(d.drain_delay),
        },
        shutdown_grace: dur(&raw.shutdown_grace, "shutdown_grace", d.shutdown_grace, r),
    }
}

/// Which top-level stores a route may use.
#[derive(Clone, Copy)]
struct Stores {
    queue: bool,
}

fn compile_route(
    raw: RawRoute,
    label: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    limits: &Limits,
    stores: Stores,
    r: &mut Report,
) -> Option<Route> {
    let errors_before = r.errors.len();
    let route_limits = compile_route_limits(raw.limits.as_ref(), limits, label, r);
    let path = PathPattern::parse(&raw.path);
    let star = raw.path.find('*');
    if star.is_some() && (raw.path.matches('*').count() > 1 || !raw.path.ends_with("/*")) {
        r.error(
            format!("{label}.path"),
            format!(
                "`{}`: `*` is only allowed as the whole last segment (`/prefix/*`, which \
                 matches the prefix and everything below it); hookgate has no wildcards \
                 inside a path",
                raw.path
            ),
        );
    } else if path.is_none() {
        r.error(
            format!("{label}.path"),
            format!(
                "`{}` is not a normalized absolute path (use `/exact` or `/prefix/*`)",
                raw.path
            ),
        );
    }
    let methods: Vec<Method> = match &raw.methods {
        None => vec![Method::POST],
        Some(list) if list.is_empty() => {
            r.error(
                format!("{label}.methods"),
                "empty list: the route would match nothing",
            );
            vec![]
        }
        Some(list) => list
            .iter()
            .filter_map(|m| {
                match KNOWN_METHODS
                    .iter()
                    .find(|known| known.as_str().eq_ignore_ascii_case(m))
                {
                    Some(known) => Some(known.clone()),
                    None => {
                        r.error(
                            format!("{label}.methods"),
                            format!(
                                "`{m}` is not an HTTP method a webhook uses (one of {})",
                                KNOWN_METHODS
                                    .iter()
                                    .map(Method::as_str)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                        None
                    }
                }
            })
            .collect(),
    };
    let upstream = parse_upstream(
        &raw.upstream,
        raw.upstream_tls.as_ref(),
        base,
        &format!("{label}.upstream"),
        r,
    );
    let allow_ips = raw.allow_ips.as_ref().map(|list| {
        if list.is_empty() {
            r.error(
                format!("{label}.allow_ips"),
                "empty list would refuse every client; remove it to allow any address",
            );
        }
        list.iter()
            .enumerate()
            .filter_map(|(i, s)| parse_net(s, &format!("{label}.allow_ips[{i}]"), r))
            .collect::<Vec<_>>()
    });
    let public_url = raw
        .public_url
        .as_deref()
        .and_then(|u| parse_public_url(u, &format!("{label}.public_url"), r));
    let ctx = Ctx {
        base,
        env,
        public_url: public_url.as_deref(),
        shape_only: false,
    };
    let preset = raw.verify.as_ref().and_then(|v| v.preset.clone());
    let raw_had_verify = raw.verify.is_some();
    let scheme = match raw.verify {
        None => {
            match &allow_ips {
                None => r.error(
                    label,
                    "route has neither `verify` nor `allow_ips`: it would let anything through",
                ),
                Some(nets) if nets.iter().any(|n| n.prefix_len() == 0) => r.error(
                    format!("{label}.allow_ips"),
                    "contains 0.0.0.0/0 or ::/0 and the route has no `verify`: every address \
                     is allowed, so the route would let anything through",
                ),
                Some(_) => {}
            }
            None
        }
        Some(v) => compile_verify(v, &format!("{label}.verify"), &ctx, r),
    };
    // A verify block that failed has been reported; checking the replay key against the
    // missing scheme would only add a misleading second error.
    let verify_failed = raw_had_verify && scheme.is_none();
    let replay = raw
        .replay
        .as_ref()
        .filter(|_| !verify_failed)
        .and_then(|rp| {
            compile_replay(
                rp,
                &format!("{label}.replay"),
                preset.as_deref(),
                scheme.as_ref(),
                r,
            )
        });
    let enforce = raw.enforce.unwrap_or(true);
    let delivery = compile_delivery(
        raw.delivery.as_deref(),
        raw.queue.as_ref(),
        label,
        preset.as_deref(),
        enforce,
        stores,
        r,
    );
    if r.errors.len() > errors_before {
        return None;
    }
    Some(Route {
        index: 0,
        name: raw.name,
        path: path?,
        methods,
        upstream: upstream?,
        allow_ips,
        scheme,
        enforce,
        replay,
        limits: route_limits,
        delivery,
    })
}

/// A route's `delivery:` and `queue:`.
fn compile_delivery(
    mode: Option<&str>,
    queue: Option<&RawQueue>,
    label: &str,
    preset: Option<&str>,
    enforce: bool,
    stores: Stores,
    r: &mut Report,
) -> Delivery {
    let loc = format!("{label}.delivery");
    match mode {
        None | Some("sync") => {
            if queue.is_some() {
                r.error(
                    format!("{label}.queue"),
                    "only for `delivery: queued`; this route forwards synchronously",
                );
            }
            return Delivery::Sync;
        }
        Some("queued") => {}
        Some(other) => {
            r.error(
                loc,
                format!("unknown delivery `{other}`; use sync or queued"),
            );
            return Delivery::Sync;
        }
    }
    if !stores.queue {
        r.error(
            &loc,
            "queued delivery needs a top-level `queue_store:` (e.g. { type: embedded, path: \
             /var/lib/hookgate/queue })",
        );
    }
    if !enforce {
        r.error(
            &loc,
            "a queued route cannot be in shadow mode (enforce: false): the store would hold \
             requests that failed their checks; try the route in sync mode first",
        );
    }
    if let Some(why) = preset.and_then(|name| presets::find(name)?.needs_app_answer) {
        r.warn(
            &loc,
            format!("queued, but this sender needs the app's answer ({why}); keep it sync"),
        );
    }
    let mut policy = QueuePolicy::default();
    let Some(q) = queue else {
        return Delivery::Queued(policy);
    };
    let qloc = |field: &str| format!("{label}.queue.{field}");
    if let Some(status) = q.status {
        match http::StatusCode::from_u16(status) {
            Ok(s) if s.is_success() => policy.answer_status = s,
            _ => r.error(
                qloc("status"),
                format!("{status} is not a 2xx: the sender must see success once it is stored"),
            ),
        }
    }
    if let Some(body) = &q.body {
        if body.len() > 4096 {
            r.error(
                qloc("body"),
                "longer than 4096 bytes; keep the answer short",
            );
        } else {
            policy.answer_body = body.clone();
        }
    }
    match q.concurrency {
        Some(0) => r.error(qloc("concurrency"), "must be at least 1"),
        Some(n) if n > 4096 => r.error(qloc("concurrency"), "more than 4096"),
        Some(n) => policy.concurrency = n as usize,
        None => {}
    }
    if let Some(retry) = &q.retry {
        let rloc = |field: &str| format!("{label}.queue.retry.{field}");
        let p = &mut policy.retry;
        let mut set = |raw: &Option<RawDuration>, field: &str, out: &mut Duration| {
            if let Some(d) = raw
                .as_deref()
                .and_then(|s| parse_duration(s, &rloc(field), r))
            {
                *out = d;
            }
        };
        set(
            &retry.initial_interval,
            "initial_interval",
            &mut p.initial_interval,
        );
        set(&retry.max_interval, "max_interval", &mut p.max_interval);
        set(&retry.max_age, "max_age", &mut p.max_age);
        if p.max_interval < p.initial_interval {
            r.error(rloc("max_interval"), "shorter than initial_interval");
        }
        match retry.max_attempts {
            Some(0) => r.error(rloc("max_attempts"), "must be at least 1"),
            n => p.max_attempts = n,
        }
    }
    Delivery::Queued(policy)
}

/// `queue_store:`; `None` when absent (no route may be queued then).
fn compile_queue_store(
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

/// The admin bearer token: the file's content without surrounding whitespace, at least 16
/// bytes (a guessable token on a state-changing API is no protection).
fn read_admin_token(path: &Path, r: &mut Report) -> Option<AdminToken> {
    let loc = "admin.token_file";
    match std::fs::read(path) {
        Ok(bytes) => {
            let token = bytes.trim_ascii();
            if token.len() < 16 {
                r.error(
                    loc,
                    format!("{}: the token must be at least 16 bytes", path.display()),
                );
                return None;
            }
            if !token.iter().all(|b| b.is_ascii_graphic()) {
                r.error(
                    loc,
                    format!("{}: the token must be visible ASCII", path.display()),
                );
                return None;
            }
            if let Some(exposed) = secret::exposure(path) {
                r.warn(loc, exposed);
            }
            Some(AdminToken::new(token.to_vec()))
        }
        Err(e) => {
            r.error(loc, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// A route's `limits:` over the top-level ones. Its bodies still count against the
/// process-wide `max_buffered_body_bytes`, so one must fit in it.
fn compile_route_limits(
    raw: Option<&RawRouteLimits>,
    top: &Limits,
    label: &str,
    r: &mut Report,
) -> RouteLimits {
    let mut out = top.for_routes();
    let Some(raw) = raw else {
        return out;
    };
    let loc = |field: &str| format!("{label}.limits.{field}");
    match raw.max_body_bytes {
        Some(0) => r.error(loc("max_body_bytes"), "must be greater than 0"),
        Some(n) if n > top.max_buffered_body_bytes => r.error(
            loc("max_body_bytes"),
            format!(
                "{n} is more than limits.max_buffered_body_bytes ({}): such a body could \
                 never be read; raise that too",
                top.max_buffered_body_bytes
            ),
        ),
        Some(n) => out.max_body_bytes = n,
        None => {}
    }
    if let Some(s) = &raw.body_read_timeout {
        if let Some(d) = parse_duration(s, &loc("body_read_timeout"), r) {
            out.body_read_timeout = d;
        }
    }
    if let Some(s) = &raw.upstream_timeout {
        if let Some(d) = parse_duration(s, &loc("upstream_timeout"), r) {
            out.upstream_timeout = d;
        }
    }
    out
}

fn compile_replay(
    raw: &RawReplay,
    loc: &str,
    preset: Option<&str>,
    scheme: Option<&Scheme>,
    r: &mut Report,
) -> Option<ReplayPolicy> {
    let key = raw
        .key
        .clone()
        .or_else(|| preset.and_then(presets::find)?.default_replay_key())
        .unwrap_or(RawReplayKey::Signature);
    let key = match key {
        RawReplayKey::Header(names) => {
            let hloc = format!("{loc}.key.header");
            if names.is_empty() {
                r.error(&hloc, "empty list");
                return None;
            }
            let parsed: Vec<HeaderName> = names
                .iter()
                .filter_map(|n| parse_header(n, &hloc, r))
                .collect();
            if parsed.len() != names.len() {
                return None;
            }
            // Listed twice, every request would carry "two copies" and be refused.
            if let Some(twice) = parsed
                .iter()
                .enumerate()
                .find_map(|(i, n)| parsed[..i].contains(n).then_some(n))
            {
                r.error(&hloc, format!("`{twice}` is listed twice"));
                return None;
            }
            KeySource::Header(parsed)
        }
        RawReplayKey::Json(p) if p.is_empty() || p == "/" => {
            r.error(format!("{loc}.key.json"), "empty JSON pointer");
            return None;
        }
        RawReplayKey::Json(p) if p.starts_with('/') => KeySource::Json(p),
        RawReplayKey::Json(p) => KeySource::Json(format!("/{p}")),
        RawReplayKey::Signature => match scheme {
            None => {
                r.error(
                    format!("{loc}.key"),
                    "`signature` needs a `verify` block; use a header or JSON key on an \
                     allowlist-only route",
                );
                return None;
            }
            Some(s) if s.algorithm == Algorithm::Token => {
                r.error(
                    format!("{loc}.key"),
                    "a token is the same on every request: use a header or JSON key",
                );
                return None;
            }
            Some(_) => KeySource::Signature,
        },
    };
    let ttl = match &raw.ttl {
        None => Duration::from_secs(72 * 3600),
        Some(t) => parse_duration(t, &format!("{loc}.ttl"), r)?,
    };
    let on_store_error = match raw.on_store_error.as_deref() {
        None | Some("reject") => OnStoreError::Reject,
        Some("allow") => OnStoreError::Allow,
        Some(other) => {
            r.error(
                format!("{loc}.on_store_error"),
                format!("unknown value `{other}`; use reject or allow"),
            );
            return None;
        }
    };
    Some(ReplayPolicy {
        key,
        ttl,
        on_store_error,
    })
}

fn compile_replay_store(
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

/// What compiling a `verify:` block needs from its surroundings.
struct Ctx<'a> {
    /// Relative `secret_file`/`public_key_file` paths are resolved against this.
    base: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The route's `public_url`, for `url` message parts.
    public_url: Option<&'a str>,
    /// Compile the scheme's shape only, without keys (for `hookgate presets`).
    shape_only: bool,
}

/// Expands the preset (if any) under the route's own fields, then compiles the result.
pub fn expand_preset(v: RawVerify, loc: &str, r_errors: &mut Vec<ConfigError>) -> RawVerify {
    match v.preset.clone() {
        None => v,
        Some(name) => match presets::find(&name) {
            Some(p) => v.overlay(p.raw_verify()),
            None => {
                r_errors.push(ConfigError {
                    location: format!("{loc}.preset"),
                    message: format!(
                        "unknown preset `{name}`; known presets: {}",
                        presets::names().join(", ")
                    ),
                });
                v
            }
        },
    }
}

/// Compiles one `verify:` block on its own (used by unit tests and tools); `loc` prefixes
/// error locations.
pub fn compile_scheme(
    v: RawVerify,
    loc: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    public_url: Option<&str>,
) -> Result<Scheme, Vec<ConfigError>> {
    let mut r = Report {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let ctx = Ctx {
        base,
        env,
        public_url,
        shape_only: false,
    };
    match compile_verify(v, loc, &ctx, &mut r) {
        Some(s) if r.errors.is_empty() => Ok(s),
        _ => Err(r.errors),
    }
}

/// A preset's scheme without keys, for `hookgate presets`.
pub fn preset_shape(name: &str) -> Result<Scheme, Vec<ConfigError>> {
    let mut r = Report {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let ctx = Ctx {
        base: Path::new("."),
        env: &|_| None,
        public_url: Some("https://hooks.example.com"),
        shape_only: true,
    };
    let v = RawVerify {
        preset: Some(name.to_owned()),
        ..RawVerify::default()
    };
    match compile_verify(v, name, &ctx, &mut r) {
        Some(s) if r.errors.is_empty() => Ok(s),
        _ => Err(r.errors),
    }
}

fn compile_verify(v: RawVerify, loc: &str, ctx: &Ctx<'_>, r: &mut Report) -> Option<Scheme> {
    let errors_before = r.errors.len();
    // A preset's own message is the provider's design (Twilio signs the URL and the form side
    // by side); only a message or timestamp the route wrote itself earns the warning below.
    let own_message = match v.preset.as_deref().and_then(presets::find) {
        None => true,
        // Written out as the preset has it (as `check --expand` prints it) is still the
        // preset's.
        Some(preset) => {
            let p = preset.raw_verify();
            v.message
                .as_ref()
                .is_some_and(|m| Some(m) != p.message.as_ref())
                || v.timestamp
                    .as_ref()
                    .is_some_and(|t| Some(t) != p.timestamp.as_ref())
        }
    };
    let v = expand_preset(v, loc, &mut r.errors);
    if r.errors.len() > errors_before {
        // The scheme's shape is unknown, but its key sources can still be checked, so that
        // one run of `check` reports those problems too.
        if !ctx.shape_only {
            let _ = resolve_key_sources(&v, loc, ctx, r);
        }
        return None;
    }

    let algorithm = match v.algorithm.as_deref() {
        None => Some(Algorithm::HmacSha256),
        Some(s) => Algorithm::parse(s).or_else(|| {
            r.error(
                format!("{loc}.algorithm"),
                format!(
                    "unknown algorithm `{s}`; use hmac-sha256, hmac-sha1, hmac-sha512, token, \
                     ed25519 or ecdsa-p256-sha256"
                ),
            );
            None
        }),
    };

    let signature = match &v.signature {
        None => {
            r.error(format!("{loc}.signature"), "missing (or set `preset:`)");
            None
        }
        Some(s) => {
            let hloc = format!("{loc}.signature.header");
            let headers: Vec<HeaderName> = match &s.header {
                None => {
                    r.error(&hloc, "missing");
                    Vec::new()
                }
                Some(h) => {
                    let names = h.to_vec();
                    if names.is_empty() {
                        r.error(&hloc, "empty list");
                    }
                    let parsed: Vec<HeaderName> = names
                        .iter()
                        .filter_map(|n| parse_header(n, &hloc, r))
                        .collect();
                    for (i, n) in parsed.iter().enumerate() {
                        if parsed[..i].contains(n) {
                            r.error(&hloc, format!("`{n}` is listed twice"));
                        }
                    }
                    parsed
                }
            };
            let header = headers.first().cloned();
            let also = headers.get(1..).unwrap_or_default().to_vec();
            let names = s
                .encoding
                .as_ref()
                .map(|e| e.to_vec())
                .unwrap_or_else(|| vec!["hex".into()]);
            let mut encodings = Vec::new();
            for name in &names {
                match Encoding::parse(name) {
                    Some(e) if !encodings.contains(&e) => encodings.push(e),
                    Some(_) => {}
                    None => r.error(
                        format!("{loc}.signature.encoding"),
                        format!("unknown encoding `{name}`; use hex or base64"),
                    ),
                }
            }
            if names.is_empty() {
                r.error(format!("{loc}.signature.encoding"), "empty list");
            }
            let prefix = s.prefix.clone().unwrap_or_default();
            let entries = s.entries.as_ref().and_then(|e| {
                let eloc = format!("{loc}.signature.entries");
                if e.separator.is_empty() || e.assign.is_empty() || e.key.is_empty() {
                    r.error(&eloc, "separator, assign and key must not be empty");
                    return None;
                }
                if !prefix.is_empty() {
                    r.error(&eloc, "set `prefix` or `entries`, not both");
                }
                Some(Entries {
                    separator: e.separator.clone(),
                    assign: e.assign.clone(),
                    key: e.key.clone(),
                })
            });
            header.map(|header| SignatureSpec {
                header,
                also,
                prefix,
                encodings,
                entries,
            })
        }
    };
    let has_entries = signature.as_ref().is_some_and(|s| s.entries.is_some())
        || v.signature.as_ref().is_some_and(|s| s.entries.is_some());

    let message: Vec<Part> = match &v.message {
        None => vec![Part::Body],
        Some(parts) => parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let ploc = format!("{loc}.message[{i}]");
                match p {
                    RawPart::Body => Some(Part::Body),
                    RawPart::Url => {
                        if ctx.public_url.is_none() {
                            r.error(
                                ploc,
                                "`url` needs the route's `public_url` (the URL senders call)",
                            );
                            return None;
                        }
                        Some(Part::Url)
                    }
                    RawPart::FormParamsSorted => Some(Part::FormParamsSorted),
                    RawPart::Literal(s) => Some(Part::Literal(s.as_bytes().to_vec())),
                    RawPart::Header(h) => {
                        parse_header(h, &format!("{ploc}.header"), r).map(Part::Header)
                    }
                    RawPart::SignatureEntry(e) => {
                        if !has_entries {
                            r.error(ploc, "`signature_entry` needs `signature.entries`");
                            return None;
                        }
                        Some(Part::SignatureEntry(e.clone()))
                    }
                }
            })
            .collect(),
    };
    // The body must be covered: directly, or (Twilio) by the sorted form parameters plus a
    // body hash in the URL for other bodies. A token scheme signs nothing.
    let covers_body = message.contains(&Part::Body)
        || (message.contains(&Part::FormParamsSorted) && v.body_hash_param.is_some());
    if algorithm != Some(Algorithm::Token) && !covers_body && v.message.is_some() {
        r.error(
            format!("{loc}.message"),
            "the signed message must include `body` (or `form_params_sorted` with \
             `body_hash_param`), or the body could be swapped",
        );
    }

    let timestamp = v
        .timestamp
        .as_ref()
        .and_then(|t| compile_timestamp(t, &format!("{loc}.timestamp"), has_entries, r));

    let keys = match algorithm {
        Some(alg) if ctx.shape_only => Some(Keys::new(alg, &[]).expect("no keys to reject")),
        Some(alg) => compile_keys(&v, alg, loc, ctx, r),
        None => {
            let _ = resolve_key_sources(&v, loc, ctx, r);
            None
        }
    };

    if r.errors.len() > errors_before {
        return None;
    }
    let scheme = Scheme {
        algorithm: algorithm?,
        signature: signature?,
        message,
        timestamp,
        public_url: ctx.public_url.map(str::to_owned),
        body_hash_param: v.body_hash_param.clone(),
        keys: keys?,
    };
    // A route overriding a preset's timestamp can leave a signed header unpinned next to the
    // body, so an override counts as the route's own message.
    if own_message {
        warn_adjacent_parts(&scheme, loc, r);
    }
    Some(scheme)
}

fn compile_timestamp(
    t: &RawTimestamp,
    loc: &str,
    has_entries: bool,
    r: &mut Report,
) -> Option<TimestampSpec> {
    let sources = [
        t.header.is_some(),
        t.json.is_some(),
        t.signature_entry.is_some(),
    ];
    let source = match sources.iter().filter(|s| **s).count() {
        0 => {
            r.error(
                loc,
                "missing `header`, `json` or `signature_entry`: where is the timestamp?",
            );
            None
        }
        1 => {
            if let Some(h) = &t.header {
                parse_header(h, &format!("{loc}.header"), r).map(TimestampSource::Header)
            } else if let Some(field) = &t.json {
                if field.is_empty() || field == "/" {
                    r.error(
                        format!("{loc}.json"),
                        "empty field name; give a name (`timestamp`) or a JSON pointer (`/data/ts`)",
                    );
                    None
                } else if field.starts_with('/') {
                    Some(TimestampSource::JsonField(field.clone()))
                } else {
                    Some(TimestampSource::JsonField(format!("/{field}")))
                }
            } else {
                let entry = t.signature_entry.clone().unwrap_or_default();
                if !has_entries {
                    r.error(
                        format!("{loc}.signature_entry"),
                        "needs `signature.entries` (a structured signature header)",
                    );
                    None
                } else {
                    Some(TimestampSource::SignatureEntry(entry))
                }
            }
        }
        _ => {
            r.error(
                loc,
                "set one of `header`, `json` or `signature_entry`, not several",
            );
            None
        }
    };
    let unit = match t.unit.as_deref() {
        None => Some(TimestampUnit::Seconds),
        Some(u) => TimestampUnit::parse(u).or_else(|| {
            r.error(
                format!("{loc}.unit"),
                format!("unknown unit `{u}`; use seconds, milliseconds or rfc3339"),
            );
            None
        }),
    };
    // `tolerance: none`: no freshness window, but the timestamp is still read and must be
    // canonical (it is part of the signed message).
    let window = match t.tolerance.as_deref() {
        None => {
            r.error(format!("{loc}.tolerance"), "missing (e.g. `5m`, or `none`)");
            None
        }
        Some("none") => {
            if t.future_tolerance.is_some() {
                r.error(
                    format!("{loc}.future_tolerance"),
                    "set together with `tolerance: none`; give both a duration or neither",
                );
            }
            Some(None)
        }
        Some(s) => {
            let past = parse_duration(s, &format!("{loc}.tolerance"), r);
            let future = match &t.future_tolerance {
                None => past,
                Some(s) => parse_duration(s, &format!("{loc}.future_tolerance"), r),
            };
            past.zip(future)
                .map(|(past, future)| Some(Window { past, future }))
        }
    };
    Some(TimestampSpec {
        source: source?,
        unit: unit?,
        window: window?,
    })
}

/// Warns about a custom message with two variable parts side by side (no literal between
/// them): bytes can then move from one part to the other without changing the signed
/// message, so what the app reads is not pinned by the signature. A timestamp in seconds or
/// milliseconds is exempt: it is read only in its canonical form, of one fixed length.
fn warn_adjacent_parts(scheme: &Scheme, loc: &str, r: &mut Report) {
    let fixed_length = |part: &Part| {
        let Some(ts) = &scheme.timestamp else {
            return false;
        };
        let integer = matches!(
            ts.unit,
            TimestampUnit::Seconds | TimestampUnit::Milliseconds
        );
        integer
            && match (part, &ts.source) {
                (Part::Header(h), TimestampSource::Header(t)) => h == t,
                (Part::SignatureEntry(e), TimestampSource::SignatureEntry(t)) => e == t,
                _ => false,
            }
    };
    // An empty literal separates nothing.
    let parts: Vec<(usize, &Part)> = scheme
        .message
        .iter()
        .enumerate()
        .filter(|(_, p)| !matches!(p, Part::Literal(l) if l.is_empty()))
        .collect();
    for pair in parts.windows(2) {
        let [(i, a), (j, b)] = pair else { continue };
        let (i, a, b) = (*i, *a, *b);
        let variable = |p: &Part| !matches!(p, Part::Literal(_));
        if variable(a) && variable(b) && !fixed_length(a) && !fixed_length(b) {
            r.warn(
                format!("{loc}.message[{i}..{j}]"),
                format!(
                    "{} and {} are signed side by side with no literal between them: bytes \
                     can move from one to the other under the same signature. If the sender \
                     signs a separator, add it as {{ literal: ... }}",
                    part_name(a),
                    part_name(b)
                ),
            );
        }
    }
}

fn part_name(part: &Part) -> String {
    match part {
        Part::Body => "body".into(),
        Part::Url => "url".into(),
        Part::FormParamsSorted => "form_params_sorted".into(),
        Part::Header(h) => format!("header {h}"),
        Part::SignatureEntry(e) => format!("signature entry {e}"),
        Part::Literal(_) => "a literal".into(),
    }
}

/// Resolves the key strings (secrets or public keys, as the algorithm needs), decodes them
/// with `key_encoding`, and builds the verification keys. Every problem names its field.
fn compile_keys(
    v: &RawVerify,
    algorithm: Algorithm,
    loc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> Option<Keys> {
    let errors_before = r.errors.len();
    let wants_public = algorithm.is_asymmetric();
    let has_secret = v.secret.is_some() || v.secret_file.is_some() || v.secrets.is_some();
    let has_public =
        v.public_key.is_some() || v.public_key_file.is_some() || v.public_keys.is_some();
    if wants_public && has_secret {
        r.error(
            loc,
            format!(
                "{} verifies with public keys: use `public_key`, `public_key_file` or \
                 `public_keys`, not a secret",
                algorithm.name()
            ),
        );
    }
    if !wants_public && has_public {
        r.error(
            loc,
            format!(
                "{} uses a shared secret: use `secret`, `secret_file` or `secrets`, not a \
                 public key",
                algorithm.name()
            ),
        );
    }
    let encoding = match v.key_encoding.as_deref() {
        None if wants_public => Some(KeyEncoding::Base64),
        None => Some(KeyEncoding::Raw),
        Some(e) => KeyEncoding::parse(e).or_else(|| {
            r.error(
                format!("{loc}.key_encoding"),
                format!(
                    "unknown key encoding `{e}`; use raw, base64, hex, whsec_base64 or whpk_base64"
                ),
            );
            None
        }),
    };
    let sources = resolve_key_sources(v, loc, ctx, r);
    if r.errors.len() > errors_before {
        return None;
    }
    let encoding = encoding?;
    let mut decoded = Vec::new();
    for (text, field) in &sources {
        match encoding.decode(text) {
            Ok(bytes) if bytes.is_empty() => r.error(field, "key is empty after decoding"),
            Ok(bytes) => decoded.push(bytes),
            Err(e) => r.error(field, format!("{e} (key_encoding: {})", encoding.name())),
        }
    }
    if r.errors.len() > errors_before {
        return None;
    }
    match Keys::new(algorithm, &decoded) {
        Ok(keys) => Some(keys),
        Err((i, e)) => {
            r.error(&sources[i].1, e);
            None
        }
    }
}

/// Reads every configured key string: `secret`/`public_key` (an `${ENV}` or a literal),
/// `*_file`, or the `secrets`/`public_keys` list. Returns each with its field location.
fn resolve_key_sources(
    v: &RawVerify,
    loc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> Vec<(Vec<u8>, String)> {
    let sources = [
        v.secret.is_some(),
        v.secret_file.is_some(),
        v.secrets.is_some(),
        v.public_key.is_some(),
        v.public_key_file.is_some(),
        v.public_keys.is_some(),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => {
            r.error(
                loc,
                "no key: set `secret: \"${ENV_VAR}\"`, `secret_file: PATH` or `secrets: [...]` \
                 (or `public_key`/`public_key_file`/`public_keys` for asymmetric schemes)",
            );
            return vec![];
        }
        1 => {}
        _ => {
            r.error(
                loc,
                "set only one of `secret`, `secret_file`, `secrets`, `public_key`, \
                 `public_key_file` and `public_keys`",
            );
            return vec![];
        }
    }
    let mut out = Vec::new();
    let mut take = |res: Result<(Vec<u8>, Origin), String>, field: String, r: &mut Report| {
        match res {
            Ok((bytes, origin)) => {
                // Public keys are not secret; only a literal shared secret deserves a warning.
                if field.contains("public_key") {
                    // Public keys are not secret.
                } else if origin == Origin::Literal {
                    r.warn(
                        &field,
                        "literal secret in the configuration file; prefer \"${ENV_VAR}\" or secret_file",
                    );
                } else if origin == Origin::DollarLiteral {
                    // The value is not repeated: it may be the secret itself.
                    r.warn(
                        &field,
                        "written like an environment reference without braces (`$NAME`): it is \
                         used literally, as written; for the variable write \"${NAME}\"",
                    );
                }
                out.push((bytes, field));
            }
            Err(e) => r.error(field, e),
        }
    };
    for (single, name) in [(&v.secret, "secret"), (&v.public_key, "public_key")] {
        if let Some(s) = single {
            take(
                secret::resolve_value(s, ctx.env),
                format!("{loc}.{name}"),
                r,
            );
        }
    }
    for (file, name) in [
        (&v.secret_file, "secret_file"),
        (&v.public_key_file, "public_key_file"),
    ] {
        if let Some(p) = file {
            let path = ctx.base.join(p);
            let resolved = secret::resolve_file(&path);
            // A public key may be read by anyone.
            if let (Ok(_), "secret_file") = (&resolved, name) {
                if let Some(exposed) = secret::exposure(&path) {
                    r.warn(format!("{loc}.{name}"), exposed);
                }
            }
            take(resolved, format!("{loc}.{name}"), r);
        }
    }
    for (list, name) in [(&v.secrets, "secrets"), (&v.public_keys, "public_keys")] {
        if let Some(list) = list {
            if list.is_empty() {
                r.error(format!("{loc}.{name}"), "empty list");
            }
            for (i, s) in list.iter().enumerate() {
                take(
                    secret::resolve_value(s, ctx.env),
                    format!("{loc}.{name}[{i}]"),
                    r,
                );
            }
        }
    }
    out
}

/// `https://hooks.example.com[/prefix]`: the scheme, host and any path prefix that senders
/// use, before a load balancer rewrites anything. Stored without a trailing slash.
fn parse_public_url(s: &str, loc: &str, r: &mut Report) -> Option<String> {
    let ok = s
        .parse::<http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
        .filter(|u| u.authority().is_some_and(|a| !a.host().is_empty()))
        .filter(|u| u.query().is_none());
    if ok.is_none() {
        r.error(
            loc,
            format!("`{s}` is not an http(s) URL without a query (e.g. https://hooks.example.com)"),
        );
        return None;
    }
    Some(s.trim_end_matches('/').to_owned())
}

fn parse_addr(s: &str, loc: &str, r: &mut Report) -> Option<SocketAddr> {
    s.parse().ok().or_else(|| {
        r.error(
            loc,
            format!("`{s}` is not an IP:PORT address (e.g. 0.0.0.0:8080, [::]:8443)"),
        );
        None
    })
}

/// A CIDR, or a bare address meaning that one host.
fn parse_net(s: &str, loc: &str, r: &mut Report) -> Option<IpNet> {
    let parsed = s
        .parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from));
    parsed.map(|n| n.trunc()).or_else(|| {
        r.error(
            loc,
            format!("`{s}` is not an IP network (e.g. 203.0.113.0/24, 2001:db8::/32)"),
        );
        None
    })
}

fn parse_header(s: &str, loc: &str, r: &mut Report) -> Option<HeaderName> {
    HeaderName::from_bytes(s.as_bytes()).ok().or_else(|| {
        r.error(loc, format!("`{s}` is not a valid header name"));
        None
    })
}

fn parse_duration(s: &str, loc: &str, r: &mut Report) -> Option<Duration> {
    // Ten years: far beyond any timeout or TTL, and safely inside `Instant` arithmetic.
    const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    match humantime::parse_duration(s) {
        Ok(d) if d > MAX => {
            r.error(loc, "longer than ten years; nothing here needs that");
            None
        }
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            r.error(loc, "must be greater than zero");
            None
        }
        // A bare number (`timeout: 30`): the unit is what is missing; hookgate guesses none.
        Err(_) if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            r.error(
                loc,
                format!(
                    "`{s}` is not a duration: write it with its unit, e.g. `{s}s` (or `{s}ms`, \
                     `{s}m`)"
                ),
            );
            None
        }
        Err(e) => {
            r.error(
                loc,
                format!("`{s}` is not a duration (e.g. 10s, 500ms, 15m): {e}"),
            );
            None
        }
    }
}

fn parse_upstream(
    s: &str,
    tls: Option<&RawUpstreamTls>,
    base: &Path,
    loc: &str,
    r: &mut Report,
) -> Option<Upstream> {
    let uri: http::Uri = match s.parse() {
        Ok(u) => u,
        Err(e) => {
            r.error(loc, format!("`{s}` is not a URL: {e}"));
            return None;
        }
    };
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            r.error(
                loc,
                format!("`{s}`: upstream must be an http:// or https:// URL (the app behind the gateway)"),
            );
            return None;
        }
    };
    if uri.query().is_some() {
        r.error(loc, "upstream URL must not have a query");
        return None;
    }
    let Some(authority) = uri.authority().cloned().filter(|a| !a.host().is_empty()) else {
        r.error(loc, format!("`{s}` has no host"));
        return None;
    };
    if authority.as_str().contains('@') {
        r.error(
            loc,
            "credentials in the upstream URL are not supported (they would never be sent)",
        );
        return None;
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    if !base_path.is_empty() && !crate::model::routes::is_clean_path(&base_path) {
        r.error(
            loc,
            format!(
                "upstream path `{}` is not a normalized absolute path",
                uri.path()
            ),
        );
        return None;
    }
    let tls_loc = loc.replace(".upstream", ".upstream_tls");
    let (tls, pool_key) = match (https, tls) {
        (false, Some(_)) => {
            r.error(
                &tls_loc,
                "set for an http:// upstream; use https:// to use TLS",
            );
            return None;
        }
        (false, None) => (None, format!("http://{authority}")),
        (true, raw) => {
            let default = RawUpstreamTls::default();
            let raw = raw.unwrap_or(&default);
            let tls = crate::tls::upstream_config(
                authority.host(),
                raw.server_name.as_deref(),
                raw.ca_file.as_ref().map(|p| base.join(p)).as_deref(),
                raw.client_cert_file
                    .as_ref()
                    .map(|p| base.join(p))
                    .as_deref(),
                raw.client_key_file
                    .as_ref()
                    .map(|p| base.join(p))
                    .as_deref(),
            );
            match tls {
                Ok(tls) => {
                    if let Some(exposed) = raw
                        .client_key_file
                        .as_ref()
                        .and_then(|p| secret::exposure(&base.join(p)))
                    {
                        r.warn(format!("{tls_loc}.client_key_file"), exposed);
                    }
                    // Routes share a pool only with the same TLS settings, by content: a CA
                    // or client certificate replaced in place and reloaded must not keep
                    // serving connections set up under the old one.
                    let key = format!("https://{authority}#{}", tls.fingerprint);
                    (Some(tls), key)
                }
                Err(e) => {
                    r.error(&tls_loc, e);
                    return None;
                }
            }
        }
    };
    Some(Upstream {
        authority,
        base_path,
        tls,
        pool_key,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
