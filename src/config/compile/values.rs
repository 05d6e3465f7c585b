//! The scalar values of the file: addresses, networks, header names, durations and URLs,
//! each parsed with an error that says what would be right.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use super::Report;

/// `https://hooks.example.com[/prefix]`: the scheme, host and any path prefix that senders
/// use, before a load balancer rewrites anything. Stored without a trailing slash.
pub(super) fn parse_public_url(s: &str, loc: &str, r: &mut Report) -> Option<String> {
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

pub(super) fn parse_addr(s: &str, loc: &str, r: &mut Report) -> Option<SocketAddr> {
    s.parse().ok().or_else(|| {
        r.error(
            loc,
            format!("`{s}` is not an IP:PORT address (e.g. 0.0.0.0:8080, [::]:8443)"),
        );
        None
    })
}

/// A CIDR, or a bare address meaning that one host.
pub(super) fn parse_net(s: &str, loc: &str, r: &mut Report) -> Option<IpNet> {
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

pub(super) fn parse_header(s: &str, loc: &str, r: &mut Report) -> Option<HeaderName> {
    HeaderName::from_bytes(s.as_bytes()).ok().or_else(|| {
        r.error(loc, format!("`{s}` is not a valid header name"));
        None
    })
}

/// A duration that may be zero (a leeway): `0s` is none.
pub(super) fn parse_duration_or_zero(s: &str, loc: &str, r: &mut Report) -> Option<Duration> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Some(d),
        _ => parse_duration(s, loc, r),
    }
}

pub(super) fn parse_duration(s: &str, loc: &str, r: &mut Report) -> Option<Duration> {
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
