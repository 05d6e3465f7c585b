//! `key_fetch:` into [`KeyFetch`]: the trust roots for key hosts (a `ca_file` is read and
//! checked now, so `check` reports a bad one), private addresses, `connect_to`, the cache's
//! lifetimes and bounds.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::values::{parse_addr, parse_duration};
use super::Report;
use crate::config::file::{RawDuration, RawKeyFetch};
use crate::model::key_fetch::KeyFetch;
use crate::scheme::pin::HostPattern;

pub(super) fn compile_key_fetch(
    raw: Option<&RawKeyFetch>,
    base: &Path,
    r: &mut Report,
) -> KeyFetch {
    let d = KeyFetch::default();
    let Some(raw) = raw else { return d };
    let duration = |v: &Option<RawDuration>, field: &str, default: Duration, r: &mut Report| match v
    {
        None => default,
        Some(s) => parse_duration(s, &format!("key_fetch.{field}"), r).unwrap_or(default),
    };
    let size = |v: Option<u64>, field: &str, default: usize, r: &mut Report| match v {
        None => default,
        Some(0) => {
            r.error(format!("key_fetch.{field}"), "must be greater than 0");
            default
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let ca_file = raw.ca_file.as_ref().map(|f| r.file(base.join(f)));
    if let Some(path) = &ca_file {
        if let Err(e) = crate::tls::upstream_config("keys", None, Some(path), None, None) {
            r.error("key_fetch.ca_file", e);
        }
    }
    let connect_to = compile_connect_to(raw, r);
    let fetch = KeyFetch {
        ca_file,
        allow_private_addresses: raw.allow_private_addresses.unwrap_or(false),
        connect_to,
        min_ttl: duration(&raw.min_ttl, "min_ttl", d.min_ttl, r),
        max_ttl: duration(&raw.max_ttl, "max_ttl", d.max_ttl, r),
        default_ttl: duration(&raw.default_ttl, "default_ttl", d.default_ttl, r),
        failure_backoff: duration(
            &raw.failure_backoff,
            "failure_backoff",
            d.failure_backoff,
            r,
        ),
        connect_timeout: duration(
            &raw.connect_timeout,
            "connect_timeout",
            d.connect_timeout,
            r,
        ),
        timeout: duration(&raw.timeout, "timeout", d.timeout, r),
        max_document_bytes: size(
            raw.max_document_bytes,
            "max_document_bytes",
            d.max_document_bytes,
            r,
        ),
        max_entries: size(raw.max_entries, "max_entries", d.max_entries, r),
        max_cache_bytes: size(raw.max_cache_bytes, "max_cache_bytes", d.max_cache_bytes, r),
        max_fetches_per_second: u32::try_from(size(
            raw.max_fetches_per_second,
            "max_fetches_per_second",
            d.max_fetches_per_second as usize,
            r,
        ))
        .unwrap_or(u32::MAX),
    };
    if fetch.min_ttl > fetch.max_ttl
        || !(fetch.min_ttl..=fetch.max_ttl).contains(&fetch.default_ttl)
    {
        r.error(
            "key_fetch",
            "the lifetimes must hold min_ttl <= default_ttl <= max_ttl",
        );
    }
    if fetch.failure_backoff.is_zero() {
        r.error(
            "key_fetch.failure_backoff",
            "must be greater than 0: a key host that is down would be asked on every request",
        );
    }
    fetch
}

/// `key_fetch.connect_to`: DNS host names, each with the `ip:port` it is reached at.
fn compile_connect_to(raw: &RawKeyFetch, r: &mut Report) -> Vec<(String, SocketAddr)> {
    let mut connect_to = Vec::new();
    for (host, addr) in raw.connect_to.iter().flatten() {
        let loc = format!("key_fetch.connect_to.{host}");
        if HostPattern::parse(host).is_none() || host.contains('*') {
            r.error(&loc, "not a lower-case DNS host name");
        }
        if let Some(addr) = parse_addr(addr, &loc, r) {
            connect_to.push((host.clone(), addr));
        }
    }
    connect_to
}
