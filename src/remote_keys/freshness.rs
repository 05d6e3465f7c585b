//! How long a fetched key is kept, and when a fetch may be made: pure decisions, the clock
//! passed in. A key is kept as its `Cache-Control` says, within the operator's minimum and
//! maximum (a key host cannot make the gateway fetch on every request, nor keep a key for
//! ever), refreshed ahead of expiry; a failed fetch is remembered for a while (negative
//! caching), and a `kid` that is not in the cache starts at most one fetch per interval, so
//! forged `kid`s cannot make the gateway hammer the key host.
//!
//! Neighbours: the fetcher (next, in this module) asks [`Policy::keep_for`] after each fetch and
//! [`Policy::may_fetch`] before each one.

use std::time::{Duration, SystemTime};

/// The operator's bounds on caching (`keys:` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Kept at least this long, whatever the key host says (`no-store` included).
    pub min: Duration,
    /// Kept at most this long.
    pub max: Duration,
    /// Kept this long when the key host says nothing.
    pub default: Duration,
    /// A failed fetch is not retried sooner than this.
    pub failure_backoff: Duration,
    /// Unknown `kid`s start at most one fetch per this interval.
    pub unknown_kid_interval: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            min: Duration::from_secs(60),
            max: Duration::from_secs(24 * 3600),
            default: Duration::from_secs(3600),
            failure_backoff: Duration::from_secs(10),
            unknown_kid_interval: Duration::from_secs(30),
        }
    }
}

/// What the cache holds for one URL when a fetch is considered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Nothing yet.
    Nothing,
    /// Keys fetched at `at`, kept until `until`.
    Keys { at: SystemTime, until: SystemTime },
    /// The last fetch failed at `at`.
    Failed { at: SystemTime },
}

/// Why a fetch is or is not made now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// Fetch now (nothing held, expired, about to expire, or a `kid` not held).
    Now,
    /// What is held serves.
    NotNeeded,
    /// Too soon after the last failure or the last fetch for an unknown `kid`: the request
    /// is refused with 503 and `Retry-After` this long.
    Wait(Duration),
}

impl Policy {
    /// How long keys fetched with this `Cache-Control` value are kept.
    pub fn keep_for(&self, cache_control: Option<&str>) -> Duration {
        let said = cache_control.and_then(max_age);
        said.unwrap_or(self.default).clamp(self.min, self.max)
    }

    /// Whether to fetch at `now`, given what is held and whether the `kid` asked for (if
    /// any) is among the held keys. Keys are refreshed in the last tenth of their time.
    pub fn may_fetch(&self, held: Held, kid_known: bool, now: SystemTime) -> Fetch {
        let since = |at: SystemTime| now.duration_since(at).unwrap_or(Duration::ZERO);
        match held {
            Held::Nothing => Fetch::Now,
            Held::Failed { at } => match self.failure_backoff.checked_sub(since(at)) {
                Some(left) if !left.is_zero() => Fetch::Wait(left),
                _ => Fetch::Now,
            },
            Held::Keys { at, until } => {
                let lifetime = until.duration_since(at).unwrap_or(Duration::ZERO);
                let refresh_at = until.checked_sub(lifetime / 10).unwrap_or(until);
                if now >= refresh_at {
                    return Fetch::Now;
                }
                if kid_known {
                    return Fetch::NotNeeded;
                }
                match self.unknown_kid_interval.checked_sub(since(at)) {
                    Some(left) if !left.is_zero() => Fetch::Wait(left),
                    _ => Fetch::Now,
                }
            }
        }
    }
}

/// `max-age` (or `s-maxage`, which a shared cache such as a gateway follows first) of a
/// `Cache-Control` value; `no-store` and `no-cache` are zero (then the minimum applies).
fn max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    let mut shared = None;
    for directive in value.split(',').map(str::trim) {
        let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
        let seconds = || arg.trim_matches('"').parse::<u64>().ok();
        match name.trim().to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" => return Some(Duration::ZERO),
            "max-age" => max_age = seconds(),
            "s-maxage" => shared = seconds(),
            _ => {}
        }
    }
    shared.or(max_age).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn keys_are_kept_as_the_host_says_within_the_operators_bounds() {
        let p = Policy::default();
        for (header, kept) in [
            (None, S(3600)),
            (Some("public, max-age=21600, must-revalidate"), S(21600)),
            (Some("max-age=5"), S(60)),
            (Some("max-age=9999999"), S(24 * 3600)),
            (Some("no-store"), S(60)),
            (Some("max-age=600, s-maxage=1200"), S(1200)),
            (Some("max-age=\"300\""), S(300)),
            (Some("max-age=abc"), S(3600)),
            (Some("private"), S(3600)),
        ] {
            assert_eq!(p.keep_for(header), kept, "{header:?}");
        }
    }

    #[test]
    fn fetches_are_made_when_needed_and_never_in_a_storm() {
        let p = Policy::default();
        let t = |s: u64| UNIX_EPOCH + S(1_800_000_000 + s);
        let held = Held::Keys {
            at: t(0),
            until: t(1000),
        };
        use Fetch::*;
        for (held, kid_known, now, want) in [
            (Held::Nothing, false, t(0), Now),
            (held, true, t(10), NotNeeded),
            // Refreshed in the last tenth of the keys' time, and after it.
            (held, true, t(899), NotNeeded),
            (held, true, t(900), Now),
            (held, true, t(2000), Now),
            // A forged `kid` starts at most one fetch per 30 s.
            (held, false, t(10), Wait(S(20))),
            (held, false, t(30), Now),
            // After a failure, 10 s of 503 with Retry-After, then one more try.
            (Held::Failed { at: t(0) }, false, t(3), Wait(S(7))),
            (Held::Failed { at: t(0) }, false, t(10), Now),
            // A clock that went back does not block fetching for ever.
            (Held::Failed { at: t(100) }, false, t(0), Wait(S(10))),
        ] {
            assert_eq!(
                p.may_fetch(held, kid_known, now),
                want,
                "{held:?} {kid_known} {now:?}"
            );
        }
    }
}
