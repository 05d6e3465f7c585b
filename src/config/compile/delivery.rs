//! What happens to a route's verified request: `delivery:` (sync, or queued with the
//! `queue:` answer, concurrency and retries) and `replay:` (each event delivered at most
//! once: its key, how long it is remembered, what a store failure does).

use std::time::Duration;

use http::HeaderName;

use super::values::{parse_duration, parse_header};
use super::{Report, Stores};
use crate::config::file::{RawDuration, RawQueue, RawReplay, RawReplayKey, RawRetry};
use crate::config::presets;
use crate::model::{Delivery, KeySource, OnStoreError, QueuePolicy, ReplayPolicy, RetryPolicy};
use crate::scheme::{Algorithm, Scheme};

/// A route's `delivery:` and `queue:`.
pub(super) fn compile_delivery(
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
    check_queued(&loc, preset, enforce, stores, r);
    Delivery::Queued(queue.map_or_else(QueuePolicy::default, |q| compile_queue_policy(q, label, r)))
}

/// What a queued route needs around it: a queue store, enforcement, and (a warning) a
/// sender that does not need the app's own answer.
fn check_queued(loc: &str, preset: Option<&str>, enforce: bool, stores: Stores, r: &mut Report) {
    if !stores.queue {
        r.error(
            loc,
            "queued delivery needs a top-level `queue_store:` (e.g. { type: embedded, path: \
             /var/lib/hookgate/queue })",
        );
    }
    if !enforce {
        r.error(
            loc,
            "a queued route cannot be in shadow mode (enforce: false): the store would hold \
             requests that failed their checks; try the route in sync mode first",
        );
    }
    if let Some(why) = preset.and_then(|name| presets::find(name)?.needs_app_answer) {
        r.warn(
            loc,
            format!("queued, but this sender needs the app's answer ({why}); keep it sync"),
        );
    }
}

/// `queue:`: the answer the sender gets, the deliveries in flight, the retries.
fn compile_queue_policy(q: &RawQueue, label: &str, r: &mut Report) -> QueuePolicy {
    let mut policy = QueuePolicy::default();
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
    if let Some(rate) = &q.rate_limit {
        let per_second = rate.per_second;
        if !per_second.is_finite() || !(0.001..=100_000.0).contains(&per_second) {
            r.error(
                qloc("rate_limit.per_second"),
                "from 0.001 (one a quarter hour) to 100000 deliveries a second",
            );
        } else {
            let burst = rate.burst.unwrap_or(per_second.ceil() as u32).max(1);
            if rate.burst == Some(0) {
                r.error(qloc("rate_limit.burst"), "must be at least 1");
            }
            policy.rate_limit = Some(crate::model::RateLimit {
                milli_per_second: (per_second * 1000.0).round() as u64,
                burst,
            });
        }
    }
    if let Some(breaker) = &q.breaker {
        policy.breaker = Some(compile_breaker(breaker, label, r));
    }
    if let Some(retry) = &q.retry {
        compile_retry(retry, &mut policy.retry, label, r);
    }
    policy
}

/// `queue.breaker:` over the breaker's defaults.
fn compile_breaker(
    b: &crate::config::file::RawBreaker,
    label: &str,
    r: &mut Report,
) -> crate::model::BreakerPolicy {
    let bloc = |field: &str| format!("{label}.queue.breaker.{field}");
    let mut p = crate::model::BreakerPolicy::default();
    let mut set = |raw: &Option<RawDuration>, field: &str, out: &mut Duration| {
        if let Some(d) = raw
            .as_deref()
            .and_then(|s| parse_duration(s, &bloc(field), r))
        {
            if d.is_zero() {
                r.error(bloc(field), "must be longer than 0s");
            } else {
                *out = d;
            }
        }
    };
    set(&b.window, "window", &mut p.window);
    set(&b.open_for, "open_for", &mut p.open_for);
    match b.failure_rate {
        Some(n @ 1..=100) => p.failure_rate_percent = n,
        Some(_) => r.error(bloc("failure_rate"), "a percentage from 1 to 100"),
        None => {}
    }
    match b.min_attempts {
        Some(0) => r.error(bloc("min_attempts"), "must be at least 1"),
        Some(n) => p.min_attempts = n,
        None => {}
    }
    match b.probes {
        Some(n @ 1..=100) => p.probes = n,
        Some(_) => r.error(bloc("probes"), "from 1 to 100"),
        None => {}
    }
    p
}

/// `queue.retry:` over the default retry policy.
fn compile_retry(retry: &RawRetry, p: &mut RetryPolicy, label: &str, r: &mut Report) {
    let rloc = |field: &str| format!("{label}.queue.retry.{field}");
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

pub(super) fn compile_replay(
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
    let key = compile_replay_key(key, loc, scheme, r)?;
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

/// `replay.key` (given, or the preset's, or `signature`) as a key source.
fn compile_replay_key(
    key: RawReplayKey,
    loc: &str,
    scheme: Option<&Scheme>,
    r: &mut Report,
) -> Option<KeySource> {
    match key {
        RawReplayKey::Header(names) => replay_header_key(&names, &format!("{loc}.key.header"), r),
        RawReplayKey::Json(p) if p.is_empty() || p == "/" => {
            r.error(format!("{loc}.key.json"), "empty JSON pointer");
            None
        }
        RawReplayKey::Json(p) if p.starts_with('/') => Some(KeySource::Json(p)),
        RawReplayKey::Json(p) => Some(KeySource::Json(format!("/{p}"))),
        RawReplayKey::Signature => match scheme {
            None => {
                r.error(
                    format!("{loc}.key"),
                    "`signature` needs a `verify` block; use a header or JSON key on an \
                     allowlist-only route",
                );
                None
            }
            Some(s) if s.algorithm == Algorithm::Token => {
                r.error(
                    format!("{loc}.key"),
                    "a token is the same on every request: use a header or JSON key",
                );
                None
            }
            Some(_) => Some(KeySource::Signature),
        },
    }
}

/// `{ header: NAME }` or `{ header: [A, B] }`: valid names, none twice.
fn replay_header_key(names: &[String], hloc: &str, r: &mut Report) -> Option<KeySource> {
    if names.is_empty() {
        r.error(hloc, "empty list");
        return None;
    }
    let parsed: Vec<HeaderName> = names
        .iter()
        .filter_map(|n| parse_header(n, hloc, r))
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
        r.error(hloc, format!("`{twice}` is listed twice"));
        return None;
    }
    Some(KeySource::Header(parsed))
}
