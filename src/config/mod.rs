//! Configuration: `gateway.yaml` in two levels.
//!
//! - `file.rs`: the file's shape (serde structs, unknown keys rejected).
//! - `compile.rs`: turns that into the immutable runtime model below ([`Gateway`]): parsed
//!   addresses, CIDRs, durations, TLS configs, and compiled signature schemes with their
//!   secrets resolved. Every problem is collected with its location (route name and field)
//!   and reported together; a gateway with any error never starts.
//! - `secret.rs`: `${ENV_VAR}`, `secret_file:` and literal secrets.
//!
//! The request path reads only the compiled model and never re-checks what load time checked.

pub mod compile;
pub mod file;
pub mod overlap;
pub mod secret;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::Method;
use ipnet::IpNet;

use crate::delivery::{Delivery, QueueStoreConfig};
use crate::replay::{ReplayPolicy, StoreConfig};
use crate::routes::{PathPattern, RouteTable};
use crate::scheme::Scheme;

/// The compiled, immutable gateway configuration, shared as `Arc<Gateway>`.
#[derive(Debug)]
pub struct Gateway {
    /// Runtime worker threads for `hookgate run`.
    pub workers: usize,
    /// How the workers share the connections (with more than one worker).
    pub runtime: RuntimeModel,
    pub listeners: Vec<Listener>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub admin: SocketAddr,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
    pub routes: RouteTable,
    /// Where replay keys live (used only if some route has `replay:`).
    pub replay_store: StoreConfig,
    /// Where queued routes keep their events; `Some` whenever a route is queued.
    pub queue_store: Option<QueueStoreConfig>,
    /// The bearer token the admin queue API requires (`admin.token_file`).
    pub admin_token: Option<AdminToken>,
    /// How log lines are written.
    pub log: LogSettings,
}

/// `log:`: the format of log lines and which are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A checked filter (`log_filter.rs`); `HOOKGATE_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` pairs after a message, for people.
    Text,
    /// One JSON object per line, every field at the top level, for log collectors.
    Json,
}

/// One address the gateway accepts webhooks on.
#[derive(Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    /// `Some` for HTTPS (HTTP/1.1 and HTTP/2 by ALPN), `None` for plain HTTP/1.1.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// When the certificate expires, in Unix seconds (TLS listeners).
    pub cert_expires: Option<i64>,
    /// Every connection starts with a PROXY protocol header (from `trusted_proxies` only).
    pub proxy_protocol: bool,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("proxy_protocol", &self.proxy_protocol)
            .finish()
    }
}

/// How `workers > 1` threads serve connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeModel {
    /// Each worker is a thread with its own single-threaded runtime, its own listening
    /// sockets (SO_REUSEPORT: the kernel spreads new connections over them) and its own
    /// upstream connections. No task ever moves between threads. The default on Linux.
    PerCore,
    /// One tokio multi-thread runtime: work-stealing over all workers. Evens out load when a
    /// few connections carry most of it; the default where SO_REUSEPORT does not balance.
    Shared,
}

impl RuntimeModel {
    pub const DEFAULT: RuntimeModel = if cfg!(target_os = "linux") {
        RuntimeModel::PerCore
    } else {
        RuntimeModel::Shared
    };
}

/// Bounds on everything a client or upstream can make the gateway wait for or hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body read; larger is refused with 413 while reading.
    pub max_body_bytes: u64,
    /// All request bodies held in memory at once, across every connection; a request whose
    /// body would go over it is refused with 503 and `Retry-After`.
    pub max_buffered_body_bytes: u64,
    /// Largest request head (HTTP/1.1 read buffer; HTTP/2 header list).
    pub max_header_bytes: u64,
    /// Largest upstream response passed back; larger is a 502.
    pub max_response_bytes: u64,
    /// Open client connections at once; further accepts wait.
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 /64 counts as one address); trusted
    /// proxies are exempt. Further connections from it are closed at once.
    pub max_connections_per_ip: usize,
    /// Time for a client to send the request head (also the keep-alive idle limit).
    pub header_read_timeout: Duration,
    /// Time for a client to send the whole body once the head is in.
    pub body_read_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    /// Time for the upstream to answer in full once the request is sent (else 504).
    pub upstream_timeout: Duration,
    /// Idle keep-alive connections kept per upstream `host:port` and per worker pool (0: a
    /// new connection per request).
    pub upstream_keepalive: usize,
    /// On SIGTERM/SIGINT, how long `/readyz` answers 503 while requests are still served,
    /// before the listeners stop (the time a load balancer needs to stop sending).
    pub drain_delay: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_buffered_body_bytes: 256 * 1024 * 1024,
            max_header_bytes: 16 * 1024,
            max_response_bytes: 1024 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(30),
            upstream_keepalive: 128,
            drain_delay: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// One route: where matching requests come from, how they are checked, where they go.
#[derive(Debug)]
pub struct Route {
    /// Position in the route table (set by `RouteTable::new`); indexes per-route metrics.
    pub index: usize,
    pub name: String,
    pub path: PathPattern,
    pub methods: Vec<Method>,
    pub upstream: Upstream,
    /// `Some`: only clients inside these networks may use the route.
    pub allow_ips: Option<Vec<IpNet>>,
    /// `Some`: requests must carry a valid signature. A route has a scheme, an allowlist or
    /// both; never neither.
    pub scheme: Option<Scheme>,
    /// `false`: shadow mode. Checks run and are logged and counted, but the request is
    /// forwarded even when they fail.
    pub enforce: bool,
    /// `Some`: each event is delivered at most once (see `replay.rs`).
    pub replay: Option<ReplayPolicy>,
    /// The top-level limits with this route's own `limits:` laid over them.
    pub limits: RouteLimits,
    /// Forward now, or store, answer and deliver later.
    pub delivery: Delivery,
}

impl Route {
    /// Whether its requests claim event keys in the replay store: a sync route with
    /// `replay:`. A queued route's events are deduplicated by the queue store, in the insert.
    pub fn uses_replay_store(&self) -> bool {
        self.replay.is_some() && matches!(self.delivery, Delivery::Sync)
    }
}

/// The admin API's bearer token; compared in constant time, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(Vec<u8>);

impl AdminToken {
    pub fn new(token: Vec<u8>) -> AdminToken {
        AdminToken(token)
    }

    /// The token itself, for `hookgate queue` to present (never logged).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn admits(&self, authorization: Option<&http::HeaderValue>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(given) = authorization.and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")) else {
            return false;
        };
        given.len() == self.0.len() && bool::from(given.ct_eq(&self.0))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// The limits that may differ per route; every other limit protects the whole process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLimits {
    pub max_body_bytes: u64,
    pub body_read_timeout: Duration,
    pub upstream_timeout: Duration,
}

impl Limits {
    /// What a route without its own `limits:` gets.
    pub fn for_routes(&self) -> RouteLimits {
        RouteLimits {
            max_body_bytes: self.max_body_bytes,
            body_read_timeout: self.body_read_timeout,
            upstream_timeout: self.upstream_timeout,
        }
    }
}

/// A parsed `http(s)://host:port[/base]` upstream.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub authority: Authority,
    /// Prepended to the request path; empty or starting with `/`, never ending with `/`.
    pub base_path: String,
    /// `Some` for `https://`: how the connection to the app is secured.
    pub tls: Option<UpstreamTls>,
    /// Names the keep-alive pool: routes share connections only if they share this (same
    /// scheme, authority and TLS settings).
    pub pool_key: String,
}

impl Upstream {
    /// The default port of the scheme when the URL names none.
    pub fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 })
    }
}

/// TLS to an upstream: the trust roots (the system's, or `ca_file`), an optional client
/// certificate (mTLS), and the name the certificate must carry.
#[derive(Clone)]
pub struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: rustls::pki_types::ServerName<'static>,
    /// Hex SHA-256 of `server_name` and the CA and client files' contents: a file replaced in
    /// place changes it, so connections made under the old one are not pooled with new ones.
    pub fingerprint: String,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// One configuration problem and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// e.g. `routes[2] (lahza).verify.secret` or `line 12 column 3`.
    pub location: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found in a configuration that does not compile: its errors, and the
/// warnings it would deserve even once they are fixed (reported in the same pass).
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl ConfigErrors {
    /// One error (a file that cannot be read), no warnings.
    pub fn one(location: impl Into<String>, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors {
            errors: vec![ConfigError {
                location: location.into(),
                message: message.into(),
            }],
            warnings: Vec::new(),
        }
    }
}

/// The errors only, as `hookgate check` prints them after the warnings.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} in configuration:",
            counted(self.errors.len(), "error", "errors")
        )?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// `1 error`, `2 errors`: a count with its noun, for messages.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A loaded configuration and the warnings it deserves (e.g. a literal secret in the file).
#[derive(Debug)]
pub struct Loaded {
    pub gateway: Gateway,
    pub warnings: Vec<ConfigError>,
    /// Hex SHA-256 of the configuration text (`hookgate_config_info`), to tell which
    /// version is running.
    pub sha256: String,
}

/// Reads and compiles a configuration file, resolving secrets from the process environment.
/// Relative paths inside it (`secret_file`, TLS files) are relative to the file's directory.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::one(
            path.display().to_string(),
            format!("cannot read configuration: {e}"),
        )
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    compile::compile(&text, base, &|name| std::env::var(name).ok())
}

/// Where the admin listener binds when the file has no `admin:`.
pub const DEFAULT_ADMIN_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9090,
));

/// The admin listener's address as the file gives it (default 127.0.0.1:9090), without
/// compiling the rest: for `hookgate healthcheck`, which must keep answering for the running
/// gateway while the file on disk has an edit that does not compile yet (or names a secret
/// the checking process cannot read).
pub fn admin_addr(path: &Path) -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
    #[derive(serde::Deserialize)]
    struct AdminOnly {
        admin: Option<AdminAddr>,
    }
    #[derive(serde::Deserialize)]
    struct AdminAddr {
        addr: String,
    }
    let raw: AdminOnly = serde_yaml::from_str(&text)
        .map_err(|e| format!("{}: not valid YAML: {e}", path.display()))?;
    match raw.admin {
        None => Ok(DEFAULT_ADMIN_ADDR),
        Some(a) => a.addr.parse().map_err(|_| {
            format!(
                "{}: admin.addr `{}` is not an IP:PORT address",
                path.display(),
                a.addr
            )
        }),
    }
}

/// The algorithm and public-key encoding of a route's scheme, read from the file without
/// compiling it (for `hookgate keygen`: the route may have no key yet), or of a preset when
/// `route` is `None`.
pub fn key_spec(
    path: &Path,
    route: Option<&str>,
    preset: Option<&str>,
) -> Result<(crate::scheme::Algorithm, crate::scheme::KeyEncoding), String> {
    let verify = match (route, preset) {
        (_, Some(name)) => file::RawVerify {
            preset: Some(name.to_owned()),
            ..file::RawVerify::default()
        },
        (Some(name), None) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
            let doc: serde_yaml::Value = serde_yaml::from_str(&text)
                .map_err(|e| format!("{}: not valid YAML: {e}", path.display()))?;
            let found = doc
                .get("routes")
                .and_then(|r| r.as_sequence())
                .and_then(|routes| {
                    routes
                        .iter()
                        .find(|r| r.get("name").and_then(|n| n.as_str()) == Some(name))
                })
                .ok_or_else(|| format!("{}: no route named `{name}`", path.display()))?;
            let verify = found
                .get("verify")
                .cloned()
                .ok_or_else(|| format!("route `{name}` has no `verify:` block"))?;
            serde_yaml::from_value(verify).map_err(|e| format!("route `{name}`: verify: {e}"))?
        }
        (None, None) => return Err("give --route NAME or --preset NAME".into()),
    };
    let mut errors = Vec::new();
    let verify = compile::expand_preset(verify, "verify", &mut errors);
    if let Some(e) = errors.first() {
        return Err(e.to_string());
    }
    let algorithm = verify
        .algorithm
        .as_deref()
        .and_then(crate::scheme::Algorithm::parse)
        .ok_or("the scheme names no known algorithm")?;
    if !matches!(
        algorithm,
        crate::scheme::Algorithm::Ed25519 | crate::scheme::Algorithm::EcdsaP256Sha256
    ) {
        return Err(format!(
            "{} verifies with a shared secret, not a key pair; any long random string will do \
             (e.g. `openssl rand -hex 32`)",
            algorithm.name()
        ));
    }
    let encoding = match verify.key_encoding.as_deref() {
        None => crate::scheme::KeyEncoding::Base64,
        Some(e) => crate::scheme::KeyEncoding::parse(e)
            .ok_or_else(|| format!("unknown key_encoding `{e}`"))?,
    };
    if encoding == crate::scheme::KeyEncoding::Raw {
        return Err(
            "key_encoding raw cannot hold a public key (it is binary): use base64 or hex".into(),
        );
    }
    Ok((algorithm, encoding))
}

/// Written in place of a literal secret by [`expand`]: never printed, and an unset variable
/// if pasted back, so the copy fails to load instead of verifying with a wrong key.
pub const LITERAL_SECRET_PLACEHOLDER: &str = "${PUT_THE_LITERAL_SECRET_BACK}";

/// Written in place of a store URL with credentials by [`expand`], for the same reason.
pub const LITERAL_URL_PLACEHOLDER: &str = "${PUT_THE_LITERAL_URL_BACK}";

/// The configuration file with each route's defaults written out (`hookgate check
/// --expand`): beside its preset's name, every field the preset sets (key encoding, message,
/// encodings, timestamp); its methods; its replay key, window and store policy. Valid YAML
/// that reads back to the same gateway, warnings included. Comments are not kept.
/// `loaded` is the file compiled. Returns the YAML and notes for the operator (literal
/// secrets and store URLs with credentials left out).
pub fn expand(path: &Path, loaded: &Loaded) -> Result<(String, Vec<String>), String> {
    use serde_yaml::Value;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
    let mut doc: Value = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    let routes = doc
        .get_mut("routes")
        .and_then(Value::as_sequence_mut)
        .ok_or("no routes")?;
    for (i, value) in routes.iter_mut().enumerate() {
        let Some(m) = value.as_mapping_mut() else {
            continue;
        };
        let Some(route) = m
            .get("name")
            .and_then(Value::as_str)
            .and_then(|n| loaded.gateway.routes.get(n))
        else {
            continue;
        };
        let loc = format!("routes[{i}] ({})", route.name);
        m.insert(
            "methods".into(),
            Value::Sequence(route.methods.iter().map(|m| m.as_str().into()).collect()),
        );
        if let Some(raw) = m.get("verify") {
            let raw: file::RawVerify =
                serde_yaml::from_value(raw.clone()).map_err(|e| e.to_string())?;
            let mut errors = Vec::new();
            // The preset's name stays (its warnings, e.g. a sender that needs the app's
            // answer, still apply); every field it sets is written out beside it.
            let mut v = compile::expand_preset(raw, &loc, &mut errors);
            // The defaults the compiler applies, written out.
            let asymmetric = v
                .algorithm
                .as_deref()
                .and_then(crate::scheme::Algorithm::parse)
                .is_some_and(crate::scheme::Algorithm::is_asymmetric);
            v.key_encoding
                .get_or_insert_with(|| if asymmetric { "base64" } else { "raw" }.into());
            v.message.get_or_insert_with(|| vec![file::RawPart::Body]);
            if let Some(s) = v.signature.as_mut() {
                s.prefix.get_or_insert_with(String::new);
                s.encoding
                    .get_or_insert_with(|| file::OneOrMany::One("hex".into()));
            }
            let literal = v
                .secret
                .iter()
                .chain(v.secrets.iter().flatten())
                .any(|s| !s.starts_with("${"));
            if literal {
                notes.push(format!(
                    "{loc}.verify: a literal secret is not printed; {LITERAL_SECRET_PLACEHOLDER} \
                     stands in for it"
                ));
            }
            m.insert("verify".into(), v.to_yaml(LITERAL_SECRET_PLACEHOLDER));
        }
        if let Some(replay) = &route.replay {
            let key = match &replay.key {
                crate::replay::KeySource::Header(h) => {
                    file::RawReplayKey::Header(h.iter().map(|n| n.to_string()).collect())
                }
                crate::replay::KeySource::Json(p) => file::RawReplayKey::Json(p.clone()),
                crate::replay::KeySource::Signature => file::RawReplayKey::Signature,
            };
            let mut r = serde_yaml::Mapping::new();
            r.insert("key".into(), key.to_yaml());
            r.insert(
                "ttl".into(),
                humantime::format_duration(replay.ttl).to_string().into(),
            );
            r.insert(
                "on_store_error".into(),
                match replay.on_store_error {
                    crate::replay::OnStoreError::Reject => "reject",
                    crate::replay::OnStoreError::Allow => "allow",
                }
                .into(),
            );
            m.insert("replay".into(), Value::Mapping(r));
        }
    }
    // Store URLs may carry a password: a literal one is not printed either.
    for store in ["replay_store", "queue_store"] {
        let Some(url) = doc.get_mut(store).and_then(|s| s.get_mut("url")) else {
            continue;
        };
        let credentials = url.as_str().is_some_and(|u| {
            !u.starts_with("${")
                && u.split_once("://")
                    .and_then(|(_, rest)| rest.split('/').next())
                    .is_some_and(|authority| authority.contains('@'))
        });
        if credentials {
            *url = LITERAL_URL_PLACEHOLDER.into();
            notes.push(format!(
                "{store}.url: a literal URL with credentials is not printed; \
                 {LITERAL_URL_PLACEHOLDER} stands in for it"
            ));
        }
    }
    let yaml = serde_yaml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok((yaml, notes))
}
