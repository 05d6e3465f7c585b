//! What happens to a route's verified request: `delivery:` (sync, or queued with the
//! `queue:` answer, concurrency and retries, to its `upstream:` or each of its
//! `destinations:`) and `replay:` (each event delivered at most once: its key, how long it
//! is remembered, what a store failure does).

use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::filter::compile_filter;
use super::upstream::parse_upstream;
use super::values::{parse_duration, parse_header};
use super::{Report, Stores};
use crate::config::file::{
    RawBreaker, RawDestination, RawDuration, RawQueue, RawRateLimit, RawReplay, RawReplayKey,
    RawRetry,
};
use crate::config::presets;
use crate::model::{
    Delivery, Destination, KeySource, OnStoreError, Pace, QueuePolicy, ReplayPolicy, RetryPolicy,
    Upstream, UNNAMED,
};
use crate::scheme::{Algorithm, Scheme};

/// What a route's `delivery:` is compiled from.
pub(super) struct DeliveryInput<'a> {
    pub mode: Option<&'a str>,
    pub queue: Option<&'a RawQueue>,
    /// The route's `upstream:`, compiled (`None`: absent, or in error and reported).
    pub upstream: Option<&'a Upstream>,
    pub destinations: Option<&'a [RawDestination]>,
    /// The route's `limits.upstream_timeout` (or the top level's).
    pub upstream_timeout: Duration,
    /// Relative `upstream_tls` files are read from here.
    pub base: &'a Path,
}

impl<'a> DeliveryInput<'a> {
    pub fn of(
        raw: &'a crate::config::file::RawRoute,
        upstream: Option<&'a Upstream>,
        upstream_timeout: Duration,
        base: &'a Path,
    ) -> DeliveryInput<'a> {
        DeliveryInput {
            mode: raw.delivery.as_deref(),
            queue: raw.queue.as_ref(),
            upstream,
            destinations: raw.destinations.as_deref(),
            upstream_timeout,
            base,
        }
    }
}

/// A route's `delivery:`, `queue:` and `destinations:`.
pub(super) fn compile_delivery(
    input: DeliveryInput<'_>,
    label: &str,
    preset: Option<&str>,
    enforce: bool,
    stores: Stores,
    r: &mut Report,
) -> Delivery {
    let loc = format!("{label}.delivery");
    match input.mode {
        None | Some("sync") => {
            if input.queue.is_some() {
                r.error(
                    format!("{label}.queue"),
                    "only for `delivery: queued`; this route forwards synchronously",
                );
            }
            if input.destinations.is_some() {
                r.error(
                    format!("{label}.destinations"),
                    "only for `delivery: queued`: a synchronous route has one `upstream:`, \
                     whose answer is the sender's",
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
    let mut policy = QueuePolicy {
        answer_status: http::StatusCode::OK,
        answer_body: "queued\n".into(),
        destinations: Vec::new(),
    };
    let pace = match input.queue {
        Some(q) => compile_queue(q, &mut policy, label, r),
        None => Pace::default(),
    };
    policy.destinations = match (input.upstream, input.destinations) {
        (Some(upstream), None) => vec![Destination {
            name: UNNAMED.to_owned(),
            upstream: upstream.clone(),
            upstream_timeout: input.upstream_timeout,
            filter: None,
            pace,
        }],
        (None, Some(list)) => compile_destinations(list, pace, &input, label, r),
        // Neither, or both: reported with the route's upstream.
        _ => Vec::new(),
    };
    Delivery::Queued(policy)
}

/// `destinations:`: each over the route's `queue:` settings (`pace`), named uniquely.
fn compile_destinations(
    list: &[RawDestination],
    pace: Pace,
    input: &DeliveryInput<'_>,
    label: &str,
    r: &mut Report,
) -> Vec<Destination> {
    let loc = format!("{label}.destinations");
    if list.is_empty() || list.len() > MAX_DESTINATIONS {
        r.error(&loc, format!("list 1 to {MAX_DESTINATIONS} destinations"));
        return Vec::new();
    }
    let mut out: Vec<Destination> = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        let dloc = format!("{loc}[{i}] ({})", raw.name);
        if !is_destination_name(&raw.name) {
            r.error(
                format!("{dloc}.name"),
                "1 to 64 of a-z, 0-9, `_` and `-`, starting with a letter or digit (it names \
                 the destination in metrics, the queue API and Idempotency-Key)",
            );
        } else if list[..i].iter().any(|d| d.name == raw.name) {
            r.error(format!("{dloc}.name"), "another destination has this name");
        }
        let upstream = parse_upstream(
            &raw.upstream,
            raw.upstream_tls.as_ref(),
            input.base,
            &format!("{dloc}.upstream"),
            r,
        );
        let upstream_timeout = raw
            .upstream_timeout
            .as_deref()
            .and_then(|t| parse_duration(t, &format!("{dloc}.upstream_timeout"), r))
            .unwrap_or(input.upstream_timeout);
        let filter = raw
            .filter
            .as_ref()
            .and_then(|f| compile_filter(f, &format!("{dloc}.filter"), r));
        let fields = PaceFields {
            concurrency: raw.concurrency,
            rate_limit: raw.rate_limit.as_ref(),
            breaker: raw.breaker.as_ref(),
            retry: raw.retry.as_ref(),
        };
        let pace = compile_pace(fields, pace, &dloc, r);
        if let Some(upstream) = upstream {
            out.push(Destination {
                name: raw.name.clone(),
                upstream,
                upstream_timeout,
                filter,
                pace,
            });
        }
    }
    out
}

/// The most destinations one route may list.
pub const MAX_DESTINATIONS: usize = 16;

/// A destination's name: what metrics, the queue API and `Idempotency-Key` carry.
fn is_destination_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=64).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
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

/// `queue:`: the answer the sender gets (into `policy`), and the deliveries in flight, the
/// rate, the breaker and the retries every destination starts from.
fn compile_queue(q: &RawQueue, policy: &mut QueuePolicy, label: &str, r: &mut Report) -> Pace {
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
    let fields = PaceFields {
        concurrency: q.concurrency,
        rate_limit: q.rate_limit.as_ref(),
        breaker: q.breaker.as_ref(),
        retry: q.retry.as_ref(),
    };
    compile_pace(fields, Pace::default(), &format!("{label}.queue"), r)
}

/// The pace fields of a `queue:` or of a destination.
struct PaceFields<'a> {
    concurrency: Option<u64>,
    rate_limit: Option<&'a RawRateLimit>,
    breaker: Option<&'a RawBreaker>,
    retry: Option<&'a RawRetry>,
}

/// `fields` (at `loc`) laid over `pace`: the concurrency and rate limit replace it, the
/// breaker's and the retry's fields replace its fields one by one.
fn compile_pace(fields: PaceFields<'_>, mut pace: Pace, loc: &str, r: &mut Report) -> Pace {
    let at = |field: &str| format!("{loc}.{field}");
    match fields.concurrency {
        Some(0) => r.error(at("concurrency"), "must be at least 1"),
        Some(n) if n > 4096 => r.error(at("concurrency"), "more than 4096"),
        Some(n) => pace.concurrency = n as usize,
        None => {}
    }
    if let Some(rate) = fields.rate_limit {
        let per_second = rate.per_second;
        if !per_second.is_finite() || !(0.001..=100_000.0).contains(&per_second) {
            r.error(
                at("rate_limit.per_second"),
                "from 0.001 (one a quarter hour) to 100000 deliveries a second",
            );
        } else {
            let burst = rate.burst.unwrap_or(per_second.ceil() as u32).max(1);
            if rate.burst == Some(0) {
                r.error(at("rate_limit.burst"), "must be at least 1");
            }
            pace.rate_limit = Some(crate::model::RateLimit {
                milli_per_second: (per_second * 1000.0).round() as u64,
                burst,
            });
        }
    }
    if let Some(breaker) = fields.breaker {
        let base = pace.breaker.unwrap_or_default();
        pace.breaker = Some(compile_breaker(breaker, base, &at("breaker"), r));
    }
    if let Some(retry) = fields.retry {
        compile_retry(retry, &mut pace.retry, &at("retry"), r);
    }
    pace
}

/// `breaker:` (at `loc`) over `p`.
fn compile_breaker(
    b: &RawBreaker,
    mut p: crate::model::BreakerPolicy,
    loc: &str,
    r: &mut Report,
) -> crate::model::BreakerPolicy {
    let bloc = |field: &str| format!("{loc}.{field}");
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

/// `retry:` (at `loc`) over `p`.
fn compile_retry(retry: &RawRetry, p: &mut RetryPolicy, loc: &str, r: &mut Report) {
    let rloc = |field: &str| format!("{loc}.{field}");
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
