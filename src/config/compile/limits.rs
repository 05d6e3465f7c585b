//! `limits:` at the top level (every bound on what a client or upstream can make the gateway
//! hold or wait for), and a route's own `limits:` laid over them.

use std::time::Duration;

use super::values::parse_duration;
use super::Report;
use crate::config::file::{RawDuration, RawLimits, RawRouteLimits};
use crate::model::{Limits, RouteLimits};

pub(super) fn compile_limits(raw: &RawLimits, r: &mut Report) -> Limits {
    let mut limits = compile_sizes(raw, r);
    compile_timeouts(raw, &mut limits, r);
    limits
}

/// A size or count of `limits:`: the default when absent, never 0.
fn positive(v: Option<u64>, field: &str, default: u64, r: &mut Report) -> u64 {
    match v {
        Some(0) => {
            r.error(format!("limits.{field}"), "must be greater than 0");
            default
        }
        Some(n) => n,
        None => default,
    }
}

/// A duration of `limits:`: the default when absent or wrong (reported).
fn duration(v: &Option<RawDuration>, field: &str, default: Duration, r: &mut Report) -> Duration {
    match v {
        None => default,
        Some(s) => parse_duration(s, &format!("limits.{field}"), r).unwrap_or(default),
    }
}

/// The sizes and counts of `limits:`, and how they must fit together; the durations are the
/// defaults, for [`compile_timeouts`].
fn compile_sizes(raw: &RawLimits, r: &mut Report) -> Limits {
    let d = Limits::default();
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
    let max_response_bytes = positive(
        raw.max_response_bytes,
        "max_response_bytes",
        d.max_response_bytes,
        r,
    );
    let max_connections = positive(
        raw.max_connections,
        "max_connections",
        d.max_connections as u64,
        r,
    ) as usize;
    let max_connections_per_ip = positive(
        raw.max_connections_per_ip,
        "max_connections_per_ip",
        d.max_connections_per_ip as u64,
        r,
    ) as usize;
    Limits {
        max_body_bytes,
        max_buffered_body_bytes,
        max_header_bytes,
        max_response_bytes,
        max_connections,
        max_connections_per_ip,
        upstream_keepalive: raw
            .upstream_keepalive
            .map_or(d.upstream_keepalive, |n| n.min(usize::MAX as u64) as usize),
        ..d
    }
}

/// The durations of `limits:` over `limits`' defaults.
fn compile_timeouts(raw: &RawLimits, limits: &mut Limits, r: &mut Report) {
    let l = limits;
    l.header_read_timeout = duration(
        &raw.header_read_timeout,
        "header_read_timeout",
        l.header_read_timeout,
        r,
    );
    l.body_read_timeout = duration(
        &raw.body_read_timeout,
        "body_read_timeout",
        l.body_read_timeout,
        r,
    );
    l.upstream_connect_timeout = duration(
        &raw.upstream_connect_timeout,
        "upstream_connect_timeout",
        l.upstream_connect_timeout,
        r,
    );
    l.upstream_timeout = duration(
        &raw.upstream_timeout,
        "upstream_timeout",
        l.upstream_timeout,
        r,
    );
    // Zero is allowed here: no load balancer in front, stop serving at once.
    l.drain_delay = match raw.drain_delay.as_deref() {
        None => l.drain_delay,
        Some(s) if humantime::parse_duration(s).is_ok_and(|d| d.is_zero()) => Duration::ZERO,
        Some(s) => parse_duration(s, "limits.drain_delay", r).unwrap_or(l.drain_delay),
    };
    l.shutdown_grace = duration(&raw.shutdown_grace, "shutdown_grace", l.shutdown_grace, r);
}

/// A route's `limits:` over the top-level ones. Its bodies still count against the
/// process-wide `max_buffered_body_bytes`, so one must fit in it.
pub(super) fn compile_route_limits(
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
