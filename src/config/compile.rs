//! Raw file structs -> the runtime model. Collects every error with its location instead of
//! stopping at the first, so an operator fixes a file in one pass.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, Method};
use ipnet::IpNet;

use super::file::{RawConfig, RawLimits, RawPart, RawRoute, RawTimestamp, RawVerify};
use super::secret::{self, Origin};
use super::{ConfigError, ConfigErrors, Gateway, Limits, Listener, Loaded, Route, Upstream};
use crate::routes::{PathPattern, RouteTable};
use crate::scheme::{
    presets, Algorithm, Encoding, Part, Scheme, SignatureSpec, TimestampSource, TimestampSpec,
    TimestampUnit,
};

/// Accumulates errors and warnings while compiling.
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

/// Compiles configuration text. `base` resolves relative paths; `env` looks up `${VARS}`.
pub fn compile(
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            location: yaml_location(&e),
            message: e.to_string(),
        }])
    })?;
    let mut r = Report {
        errors: Vec::new(),
        warnings: Vec::new(),
    };

    let listeners = compile_listeners(&raw, base, &mut r);
    let admin = match &raw.admin {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
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

    let mut routes = Vec::new();
    let mut names = HashSet::new();
    if raw.routes.is_empty() {
        r.error(
            "routes",
            "no routes: the gateway would refuse every request",
        );
    }
    for (i, value) in raw.routes.into_iter().enumerate() {
        let label = value
            .get("name")
            .and_then(|n| n.as_str())
            .map(|n| format!("routes[{i}] ({n})"))
            .unwrap_or_else(|| format!("routes[{i}]"));
        // serde_path_to_error names the field inside the route that is wrong.
        let raw_route: RawRoute = match serde_path_to_error::deserialize(value) {
            Ok(rr) => rr,
            Err(e) => {
                let path = e.path().to_string();
                let location = if path == "." {
                    label
                } else {
                    format!("{label}.{path}")
                };
                r.error(location, e.into_inner().to_string());
                continue;
            }
        };
        if !names.insert(raw_route.name.clone()) {
            r.error(&label, format!("duplicate route name `{}`", raw_route.name));
        }
        if let Some(route) = compile_route(raw_route, &label, base, env, &mut r) {
            routes.push(route);
        }
    }

    if !r.errors.is_empty() {
        return Err(ConfigErrors(r.errors));
    }
    Ok(Loaded {
        gateway: Gateway {
            listeners,
            admin: admin.expect("admin address error would have been reported"),
            trusted_proxies,
            limits,
            routes: RouteTable::new(routes),
        },
        warnings: r.warnings,
    })
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
                Ok(cfg) => Some(cfg),
                Err(e) => {
                    r.error(format!("{loc}.tls"), e);
                    continue;
                }
            },
        };
        out.push(Listener { addr, tls });
    }
    out
}

fn compile_limits(raw: &RawLimits, r: &mut Report) -> Limits {
    let d = Limits::default();
    let dur = |v: &Option<String>, field: &str, default: Duration, r: &mut Report| match v {
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
    Limits {
        max_body_bytes: positive(raw.max_body_bytes, "max_body_bytes", d.max_body_bytes, r),
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
        shutdown_grace: dur(&raw.shutdown_grace, "shutdown_grace", d.shutdown_grace, r),
    }
}

fn compile_route(
    raw: RawRoute,
    label: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    r: &mut Report,
) -> Option<Route> {
    let errors_before = r.errors.len();
    let path = PathPattern::parse(&raw.path);
    if path.is_none() {
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
            .filter_map(
                |m| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        r.error(
                            format!("{label}.methods"),
                            format!("`{m}` is not an HTTP method"),
                        );
                        None
                    }
                },
            )
            .collect(),
    };
    let upstream = parse_upstream(&raw.upstream, &format!("{label}.upstream"), r);
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
    let scheme = match raw.verify {
        None => {
            if allow_ips.is_none() {
                r.error(
                    label,
                    "route has neither `verify` nor `allow_ips`: it would let anything through",
                );
            }
            None
        }
        Some(v) => compile_verify(v, &format!("{label}.verify"), base, env, r),
    };
    if r.errors.len() > errors_before {
        return None;
    }
    Some(Route {
        name: raw.name,
        path: path?,
        methods,
        upstream: upstream?,
        allow_ips,
        scheme,
    })
}

/// Expands the preset (if any) under the route's own fields, then compiles the result.
pub fn expand_preset(v: RawVerify, loc: &str, r_errors: &mut Vec<ConfigError>) -> RawVerify {
    match v.preset.clone() {
        None => v,
        Some(name) => match presets::preset(&name) {
            Some(p) => v.overlay(p),
            None => {
                r_errors.push(ConfigError {
                    location: format!("{loc}.preset"),
                    message: format!(
                        "unknown preset `{name}`; known presets: {}",
                        presets::NAMES.join(", ")
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
) -> Result<Scheme, Vec<ConfigError>> {
    let mut r = Report {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    match compile_verify(v, loc, base, env, &mut r) {
        Some(s) if r.errors.is_empty() => Ok(s),
        _ => Err(r.errors),
    }
}

fn compile_verify(
    v: RawVerify,
    loc: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    r: &mut Report,
) -> Option<Scheme> {
    let errors_before = r.errors.len();
    let v = expand_preset(v, loc, &mut r.errors);
    if r.errors.len() > errors_before {
        // The scheme's shape is unknown, but its secrets can still be checked, so that one
        // run of `check` reports those problems too.
        let _ = resolve_secrets(&v, loc, base, env, r);
        return None;
    }

    let algorithm = match v.algorithm.as_deref() {
        None => Some(Algorithm::HmacSha256),
        Some(s) => Algorithm::parse(s).or_else(|| {
            r.error(
                format!("{loc}.algorithm"),
                format!("unknown algorithm `{s}`; use hmac-sha256, hmac-sha1 or hmac-sha512"),
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
            let header = match &s.header {
                None => {
                    r.error(format!("{loc}.signature.header"), "missing");
                    None
                }
                Some(h) => parse_header(h, &format!("{loc}.signature.header"), r),
            };
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
            header.map(|header| SignatureSpec {
                header,
                prefix: s.prefix.clone().unwrap_or_default(),
                encodings,
            })
        }
    };

    let message: Vec<Part> = match &v.message {
        None => vec![Part::Body],
        Some(parts) => {
            if !parts.contains(&RawPart::Body) {
                r.error(
                    format!("{loc}.message"),
                    "the signed message must include `body`, or the body could be swapped",
                );
            }
            parts
                .iter()
                .enumerate()
                .filter_map(|(i, p)| match p {
                    RawPart::Body => Some(Part::Body),
                    RawPart::Literal(s) => Some(Part::Literal(s.as_bytes().to_vec())),
                    RawPart::Header(h) => {
                        parse_header(h, &format!("{loc}.message[{i}].header"), r).map(Part::Header)
                    }
                })
                .collect()
        }
    };

    let timestamp = v
        .timestamp
        .as_ref()
        .and_then(|t| compile_timestamp(t, &format!("{loc}.timestamp"), r));

    let secrets = resolve_secrets(&v, loc, base, env, r);

    if r.errors.len() > errors_before {
        return None;
    }
    Some(Scheme::new(
        algorithm?, signature?, message, timestamp, &secrets,
    ))
}

fn compile_timestamp(t: &RawTimestamp, loc: &str, r: &mut Report) -> Option<TimestampSpec> {
    let source = match (&t.header, &t.json) {
        (Some(h), None) => {
            parse_header(h, &format!("{loc}.header"), r).map(TimestampSource::Header)
        }
        (None, Some(field)) if field.is_empty() || field == "/" => {
            r.error(
                format!("{loc}.json"),
                "empty field name; give a name (`timestamp`) or a JSON pointer (`/data/ts`)",
            );
            None
        }
        (None, Some(field)) => {
            let pointer = if field.starts_with('/') {
                field.clone()
            } else {
                format!("/{field}")
            };
            Some(TimestampSource::JsonField(pointer))
        }
        (Some(_), Some(_)) => {
            r.error(loc, "set one of `header` or `json`, not both");
            None
        }
        (None, None) => {
            r.error(loc, "missing `header` or `json`: where is the timestamp?");
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
    let past = match &t.tolerance {
        None => {
            r.error(format!("{loc}.tolerance"), "missing (e.g. `5m`)");
            None
        }
        Some(s) => parse_duration(s, &format!("{loc}.tolerance"), r),
    };
    let future = match &t.future_tolerance {
        None => past,
        Some(s) => parse_duration(s, &format!("{loc}.future_tolerance"), r),
    };
    Some(TimestampSpec {
        source: source?,
        unit: unit?,
        past: past?,
        future: future?,
    })
}

fn resolve_secrets(
    v: &RawVerify,
    loc: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    r: &mut Report,
) -> Vec<Vec<u8>> {
    let sources = [
        v.secret.is_some(),
        v.secret_file.is_some(),
        v.secrets.is_some(),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => {
            r.error(
                loc,
                "no secret: set `secret: \"${ENV_VAR}\"`, `secret_file: PATH` or `secrets: [...]`",
            );
            return vec![];
        }
        1 => {}
        _ => {
            r.error(loc, "set only one of `secret`, `secret_file` and `secrets`");
            return vec![];
        }
    }
    let mut out = Vec::new();
    let mut take = |res: Result<(Vec<u8>, Origin), String>, field: String, r: &mut Report| match res
    {
        Ok((bytes, origin)) => {
            if origin == Origin::Literal {
                r.warn(
                    &field,
                    "literal secret in the configuration file; prefer \"${ENV_VAR}\" or secret_file",
                );
            }
            out.push(bytes);
        }
        Err(e) => r.error(field, e),
    };
    if let Some(s) = &v.secret {
        take(secret::resolve_value(s, env), format!("{loc}.secret"), r);
    }
    if let Some(p) = &v.secret_file {
        take(
            secret::resolve_file(&base.join(p)),
            format!("{loc}.secret_file"),
            r,
        );
    }
    if let Some(list) = &v.secrets {
        if list.is_empty() {
            r.error(format!("{loc}.secrets"), "empty list");
        }
        for (i, s) in list.iter().enumerate() {
            take(
                secret::resolve_value(s, env),
                format!("{loc}.secrets[{i}]"),
                r,
            );
        }
    }
    out
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
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            r.error(loc, "must be greater than zero");
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

fn parse_upstream(s: &str, loc: &str, r: &mut Report) -> Option<Upstream> {
    let uri: http::Uri = match s.parse() {
        Ok(u) => u,
        Err(e) => {
            r.error(loc, format!("`{s}` is not a URL: {e}"));
            return None;
        }
    };
    if uri.scheme_str() != Some("http") {
        r.error(
            loc,
            format!("`{s}`: upstream must be an http:// URL (the app behind the gateway)"),
        );
        return None;
    }
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
    if !base_path.is_empty() && !crate::routes::is_clean_path(&base_path) {
        r.error(
            loc,
            format!(
                "upstream path `{}` is not a normalized absolute path",
                uri.path()
            ),
        );
        return None;
    }
    Some(Upstream {
        authority,
        base_path,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
