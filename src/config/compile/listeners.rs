//! The process's outward side: the webhook listeners (addresses, TLS, PROXY protocol), the
//! admin listener and its bearer token, certificate expiry, the workers and runtime that
//! serve them, and the log settings.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::values::parse_addr;
use super::Report;
use crate::config::file::{RawAdmin, RawConfig, RawLog};
use crate::config::secret;
use crate::model::{AdminToken, Listener, LogFormat, LogSettings, RuntimeModel};

/// How soon before its expiry a listener's certificate earns a warning (the alert's window,
/// deploy/prometheus/alerts.yaml).
const CERT_WARN_BEFORE: Duration = Duration::from_secs(14 * 86_400);

/// `workers:`, at least 1 and at most 1024; by default one per available core.
pub(super) fn compile_workers(raw: Option<u64>, r: &mut Report) -> usize {
    match raw {
        Some(0) => {
            r.error("workers", "must be at least 1");
            1
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(1024),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// `runtime:`: `per_core` (unix only) or `shared`.
pub(super) fn compile_runtime(raw: Option<&str>, r: &mut Report) -> RuntimeModel {
    match raw {
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
    }
}

/// `admin.token_file`, read; required off loopback. Then the admin address against the
/// listeners'. `admin`: the parsed `admin.addr` (`None` if wrong, reported already).
pub(super) fn compile_admin_token(
    raw: Option<&RawAdmin>,
    admin: Option<SocketAddr>,
    listeners: &[Listener],
    base: &Path,
    r: &mut Report,
) -> Option<AdminToken> {
    let admin_token = raw
        .and_then(|a| a.token_file.as_deref())
        .and_then(|f| read_admin_token(&r.file(base.join(f)), r));
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
        check_admin_addr(admin, listeners, r);
    }
    admin_token
}

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
pub(super) fn check_certificates(
    listeners: &[Listener],
    now: std::time::SystemTime,
    r: &mut Report,
) {
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

pub(super) fn compile_listeners(raw: &RawConfig, base: &Path, r: &mut Report) -> Vec<Listener> {
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
            Some(t) => {
                let (cert, key) = (r.file(base.join(&t.cert)), r.file(base.join(&t.key)));
                match crate::tls::server_config(&cert, &key) {
                    Ok(cfg) => {
                        if let Some(exposed) = secret::exposure(&key) {
                            r.warn(format!("{loc}.tls.key"), exposed);
                        }
                        Some(cfg)
                    }
                    Err(e) => {
                        r.error(format!("{loc}.tls"), e);
                        continue;
                    }
                }
            }
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

pub(super) fn compile_log(raw: Option<&RawLog>, r: &mut Report) -> LogSettings {
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
