//! One route: its name, path, methods, upstream, allowlist and the verify, replay and
//! delivery blocks (compiled by `verify.rs`, `delivery.rs`), and the checks across routes
//! (names, which route shadows which).

use std::collections::HashSet;
use std::path::Path;

use http::Method;
use ipnet::IpNet;

use super::delivery::{compile_delivery, compile_replay, DeliveryInput};
use super::handshake::{compile_handshake, HandshakeFor};
use super::limits::compile_route_limits;
use super::readable::{raw_route, route_label};
use super::upstream::parse_upstream;
use super::values::{parse_net, parse_public_url};
use super::verify::compile_verify;
use super::{Ctx, Report, Stores};
use crate::config::file::RawRoute;
use crate::model::{Limits, PathPattern, Route};

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
        match crate::config::overlap::shadow(&table, i) {
            None => {}
            Some(crate::config::overlap::Shadow::Unreachable(by)) => r.error(
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
            Some(crate::config::overlap::Shadow::Methods(taken)) => {
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

/// `routes:`: each route read on its own (a broken one is reported and skipped, the others
/// still compiled), then the checks across them.
pub(super) fn compile_routes(
    values: Vec<serde_yaml::Value>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    limits: &Limits,
    stores: Stores,
    r: &mut Report,
) -> Vec<Route> {
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    // Each compiled route's location (`routes[i] (name)`), for the checks across routes.
    let mut labels = Vec::new();
    if values.is_empty() {
        r.error(
            "routes",
            "no routes: the gateway would refuse every request",
        );
    }
    for (i, value) in values.into_iter().enumerate() {
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
        check_route_name(&raw_route.name, &label, r);
        if let Some(route) = compile_route(raw_route, &label, base, env, limits, stores, r) {
            routes.push(route);
            labels.push(label);
        }
    }
    check_reachability(&routes, &labels, r);
    routes
}

fn compile_route(
    mut raw: RawRoute,
    label: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    limits: &Limits,
    stores: Stores,
    r: &mut Report,
) -> Option<Route> {
    let errors_before = r.errors.len();
    let route_limits = compile_route_limits(raw.limits.as_ref(), limits, label, r);
    let path = compile_path(&raw.path, label, r);
    let mut methods = compile_methods(raw.methods.as_deref(), label, r);
    let upstream = route_upstream(&raw, base, label, r);
    let allow_ips = compile_allow_ips(raw.allow_ips.as_deref(), label, r);
    let public_url = raw
        .public_url
        .as_deref()
        .and_then(|u| parse_public_url(u, &format!("{label}.public_url"), r));
    let ctx = Ctx {
        base,
        env,
        public_url: public_url.as_deref(),
        shape_only: false,
        key_id: None,
    };
    let preset = raw.verify.as_ref().and_then(|v| v.preset.clone());
    let (scheme, replay) = compile_checks(
        raw.verify.take(),
        raw.replay.as_ref(),
        allow_ips.as_deref(),
        &ctx,
        label,
        r,
    );
    let enforce = raw.enforce.unwrap_or(true);
    let input = DeliveryInput::of(&raw, upstream.as_ref(), route_limits.upstream_timeout, base);
    let delivery = compile_delivery(input, label, preset.as_deref(), enforce, stores, r);
    let handshake = compile_handshake(
        raw.handshake.as_ref(),
        HandshakeFor {
            preset: preset.as_deref(),
            scheme: scheme.as_ref(),
            queued: matches!(delivery, crate::model::Delivery::Queued(_)),
        },
        &mut methods,
        label,
        &ctx,
        r,
    );
    if r.errors.len() > errors_before {
        return None;
    }
    let upstream = upstream.or_else(|| first_destination(&delivery));
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
        handshake,
        acknowledgement: acknowledgement(raw.queue.as_ref(), preset.as_deref()),
    })
}

/// A route with `destinations:` shows its first one where one upstream is asked for.
fn first_destination(delivery: &crate::model::Delivery) -> Option<crate::model::Upstream> {
    match delivery {
        crate::model::Delivery::Queued(p) => Some(p.destinations.first()?.upstream.clone()),
        crate::model::Delivery::Sync => None,
    }
}

/// The route's `upstream:`, compiled; or, with `destinations:` instead, nothing (each
/// destination has its own). Exactly one of the two.
fn route_upstream(
    raw: &RawRoute,
    base: &Path,
    label: &str,
    r: &mut Report,
) -> Option<crate::model::Upstream> {
    let uloc = format!("{label}.upstream");
    match (&raw.upstream, &raw.destinations) {
        (Some(u), None) => parse_upstream(u, raw.upstream_tls.as_ref(), base, &uloc, r),
        (Some(_), Some(_)) => {
            r.error(
                format!("{label}.destinations"),
                "a route has `upstream:` or `destinations:`, not both",
            );
            None
        }
        (None, Some(_)) => {
            if raw.upstream_tls.is_some() {
                r.error(
                    format!("{label}.upstream_tls"),
                    "for `upstream:`; give each destination its own `upstream_tls:`",
                );
            }
            None
        }
        (None, None) => {
            r.error(
                uloc,
                "missing: where the app is (`upstream: http://127.0.0.1:3000`), or a queued \
                 route's `destinations:`",
            );
            None
        }
    }
}

/// The body the sender requires in a success: the route's own `queue.body`, or its preset's
/// acknowledgement (Adyen's `[accepted]`).
fn acknowledgement(
    queue: Option<&crate::config::file::RawQueue>,
    preset: Option<&str>,
) -> Option<String> {
    queue.and_then(|q| q.body.clone()).or_else(|| {
        let preset = crate::config::presets::find(preset?)?;
        preset.acknowledgement.map(str::to_owned)
    })
}

/// The route's checks: its `verify:` scheme (or, without one, an allowlist that is not
/// everyone) and its `replay:` policy.
fn compile_checks(
    verify: Option<crate::config::file::RawVerify>,
    raw_replay: Option<&crate::config::file::RawReplay>,
    allow_ips: Option<&[IpNet]>,
    ctx: &Ctx<'_>,
    label: &str,
    r: &mut Report,
) -> (
    Option<crate::scheme::Scheme>,
    Option<crate::model::ReplayPolicy>,
) {
    let preset = verify.as_ref().and_then(|v| v.preset.clone());
    let raw_had_verify = verify.is_some();
    let scheme = match verify {
        None => {
            check_unverified(allow_ips, label, r);
            None
        }
        Some(v) => compile_verify(v, &format!("{label}.verify"), ctx, r),
    };
    if let Some(s) = &scheme {
        check_strength(s, allow_ips, label, r);
    }
    // A verify block that failed has been reported; checking the replay key against the
    // missing scheme would only add a misleading second error.
    let verify_failed = raw_had_verify && scheme.is_none();
    let replay = match raw_replay {
        Some(rp) if !verify_failed => {
            let loc = format!("{label}.replay");
            compile_replay(rp, &loc, preset.as_deref(), scheme.as_ref(), r)
        }
        _ => None,
    };
    (scheme, replay)
}

/// `path:`: `/exact` or `/prefix/*`, normalized.
fn compile_path(raw: &str, label: &str, r: &mut Report) -> Option<PathPattern> {
    let path = PathPattern::parse(raw);
    let star = raw.find('*');
    if star.is_some() && (raw.matches('*').count() > 1 || !raw.ends_with("/*")) {
        r.error(
            format!("{label}.path"),
            format!(
                "`{raw}`: `*` is only allowed as the whole last segment (`/prefix/*`, which \
                 matches the prefix and everything below it); hookgate has no wildcards \
                 inside a path"
            ),
        );
    } else if path.is_none() {
        r.error(
            format!("{label}.path"),
            format!("`{raw}` is not a normalized absolute path (use `/exact` or `/prefix/*`)"),
        );
    }
    path
}

/// `methods:` (default POST), each one of [`KNOWN_METHODS`].
fn compile_methods(raw: Option<&[String]>, label: &str, r: &mut Report) -> Vec<Method> {
    let list = match raw {
        None => return vec![Method::POST],
        Some([]) => {
            r.error(
                format!("{label}.methods"),
                "empty list: the route would match nothing",
            );
            return vec![];
        }
        Some(list) => list,
    };
    list.iter()
        .filter_map(|m| {
            let known = KNOWN_METHODS
                .iter()
                .find(|known| known.as_str().eq_ignore_ascii_case(m));
            if known.is_none() {
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
            }
            known.cloned()
        })
        .collect()
}

/// `allow_ips:`: the networks allowed to use the route; never an empty list.
fn compile_allow_ips(raw: Option<&[String]>, label: &str, r: &mut Report) -> Option<Vec<IpNet>> {
    let list = raw?;
    if list.is_empty() {
        r.error(
            format!("{label}.allow_ips"),
            "empty list would refuse every client; remove it to allow any address",
        );
    }
    Some(
        list.iter()
            .enumerate()
            .filter_map(|(i, s)| parse_net(s, &format!("{label}.allow_ips[{i}]"), r))
            .collect(),
    )
}

/// A shared secret signs nothing: anyone who sees one request (a log, a proxy, the sender's
/// dashboard) can send any other. Without an allowlist that is the route's only check.
fn check_strength(
    scheme: &crate::scheme::Scheme,
    allow_ips: Option<&[IpNet]>,
    label: &str,
    r: &mut Report,
) {
    let open = allow_ips.is_none_or(|nets| nets.iter().any(|n| n.prefix_len() == 0));
    if scheme.strength() == crate::scheme::Strength::SharedSecret && open {
        r.warn(
            format!("{label}.verify"),
            "a shared secret (`token`) signs nothing, and this route has no `allow_ips`: anyone \
             who sees one request can send any other. Add the sender's published addresses to \
             `allow_ips`",
        );
    }
}

/// A route without `verify:` must be closed by its allowlist, one that is not everyone.
fn check_unverified(allow_ips: Option<&[IpNet]>, label: &str, r: &mut Report) {
    match allow_ips {
        None => r.error(
            label,
            "route has neither `verify` nor `allow_ips`: it would let anything through",
        ),
        Some(nets) if nets.iter().any(|n| n.prefix_len() == 0) => r.error(
            format!("{label}.allow_ips"),
            "contains 0.0.0.0/0 or ::/0 and the route has no `verify`: every address is \
             allowed, so the route would let anything through",
        ),
        Some(_) => {}
    }
}
