//! What one delivery attempt's result means for its event: delivered, try again at a given
//! time, or dead. A pure function of the policy, the event's age and attempt count, the
//! answer, the clock and a jitter draw, so it is tested with all of them pinned.

use std::time::Duration;

use http::StatusCode;

use crate::model::RetryPolicy;

use crate::delivery::time::UnixMs;

/// How an attempt went, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The app answered.
    Answered {
        status: StatusCode,
        /// Its `Retry-After`, if any and well formed.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, TLS failure, timeout.
    NoAnswer,
}

/// What becomes of the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again at this Unix millisecond.
    RetryAt(i64),
    Dead(DeadReason),
}

/// Why an event became a dead letter (`hookgate_dead_letters_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadReason {
    /// A 4xx that retrying cannot change (not 408, 409, 425 or 429).
    Refused,
    /// Older than `max_age` before it could be delivered.
    Expired,
    /// `max_attempts` reached.
    Attempts,
    /// The stored request could not be read back (a damaged row).
    Unreadable,
}

impl DeadReason {
    pub const ALL: [DeadReason; 4] = [
        DeadReason::Refused,
        DeadReason::Expired,
        DeadReason::Attempts,
        DeadReason::Unreadable,
    ];

    pub fn parse(label: &str) -> Option<DeadReason> {
        DeadReason::ALL.into_iter().find(|r| r.label() == label)
    }

    pub fn label(self) -> &'static str {
        match self {
            DeadReason::Refused => "refused",
            DeadReason::Expired => "expired",
            DeadReason::Attempts => "max_attempts",
            DeadReason::Unreadable => "unreadable",
        }
    }
}

/// A 4xx that may succeed later: timeout, conflict, too early, too many requests.
fn retryable_4xx(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 425 | 429)
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts (1 or more), before jitter:
    /// `initial_interval * 2^(attempts-1)`, at most `max_interval`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(40);
        self.initial_interval
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max_interval)
    }

    /// Judges attempt number `attempts` (1 for the first) of an event received at
    /// `received_ms`, made at `now_ms`. `jitter` is a draw in `[0, 1)`: the wait is
    /// between half and all of the backoff ("equal jitter"), so senders' retries of one
    /// outage do not all come back at once, and the wait still grows.
    pub fn judge(
        &self,
        attempt: Attempt,
        attempts: u32,
        received_ms: i64,
        now_ms: i64,
        jitter: f64,
    ) -> Verdict {
        let retry_after = match attempt {
            Attempt::Answered { status, .. } if status.is_success() => return Verdict::Delivered,
            Attempt::Answered { status, .. }
                if status.is_client_error() && !retryable_4xx(status) =>
            {
                return Verdict::Dead(DeadReason::Refused)
            }
            Attempt::Answered { retry_after, .. } => retry_after,
            Attempt::NoAnswer => None,
        };
        if self.max_attempts.is_some_and(|max| attempts >= max) {
            return Verdict::Dead(DeadReason::Attempts);
        }
        let backoff = self.backoff(attempts);
        let jittered = backoff.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        // The app's own word on when to come back wins when it asks for longer.
        let wait = retry_after.map_or(jittered, |ra| ra.max(jittered));
        let at = UnixMs(now_ms).after(wait);
        let expires = UnixMs(received_ms).after(self.max_age);
        if at > expires {
            return Verdict::Dead(DeadReason::Expired);
        }
        Verdict::RetryAt(at.as_i64())
    }
}

/// Reads `Retry-After` as seconds (`120`) or an HTTP date, relative to `now`.
pub fn parse_retry_after(
    value: &http::HeaderValue,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate(text)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only date form RFC 9110 requires a
/// sender to generate.
fn httpdate(text: &str) -> Option<std::time::SystemTime> {
    let rest = text.get(5..)?.strip_suffix(" GMT")?;
    let mut it = rest.split(' ');
    let (day, month, year, time) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    let iso = format!("{year}-{month:02}-{day}T{time}Z");
    humantime::parse_rfc3339(&iso).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial_interval: Duration::from_secs(10),
            max_interval: Duration::from_secs(600),
            max_age: Duration::from_secs(3600),
            max_attempts: None,
        }
    }

    fn answered(code: u16) -> Attempt {
        Attempt::Answered {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after: None,
        }
    }

    #[test]
    fn backoff_doubles_from_the_initial_interval_up_to_the_maximum() {
        let p = policy();
        let waits: Vec<u64> = (1..=8).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(600));
    }

    #[test]
    fn jitter_waits_between_half_and_all_of_the_backoff() {
        let p = policy();
        // Third attempt failed: backoff 40 s.
        let now = 100 * S;
        assert_eq!(
            p.judge(Attempt::NoAnswer, 3, 0, now, 0.0),
            Verdict::RetryAt(now + 20 * S)
        );
        assert_eq!(
            p.judge(Attempt::NoAnswer, 3, 0, now, 0.5),
            Verdict::RetryAt(now + 30 * S)
        );
        assert_eq!(
            p.judge(Attempt::NoAnswer, 3, 0, now, 0.999_999),
            Verdict::RetryAt(now + 40 * S - 1)
        );
    }

    #[test]
    fn answers_are_judged_by_status() {
        let p = policy();
        let table = [
            (200, Verdict::Delivered),
            (204, Verdict::Delivered),
            (400, Verdict::Dead(DeadReason::Refused)),
            (401, Verdict::Dead(DeadReason::Refused)),
            (404, Verdict::Dead(DeadReason::Refused)),
            (422, Verdict::Dead(DeadReason::Refused)),
            (408, Verdict::RetryAt(10 * S)),
            (409, Verdict::RetryAt(10 * S)),
            (425, Verdict::RetryAt(10 * S)),
            (429, Verdict::RetryAt(10 * S)),
            (500, Verdict::RetryAt(10 * S)),
            (503, Verdict::RetryAt(10 * S)),
            (302, Verdict::RetryAt(10 * S)),
        ];
        for (code, want) in table {
            assert_eq!(p.judge(answered(code), 1, 0, 0, 1.0), want, "{code}");
        }
    }

    #[test]
    fn retry_after_is_honoured_when_longer_than_the_backoff() {
        let p = policy();
        let with = |secs| Attempt::Answered {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(p.judge(with(120), 1, 0, 0, 1.0), Verdict::RetryAt(120 * S));
        // Shorter than the backoff: the backoff stands.
        assert_eq!(p.judge(with(1), 1, 0, 0, 1.0), Verdict::RetryAt(10 * S));
    }

    #[test]
    fn an_event_that_would_be_retried_past_its_max_age_is_dead() {
        let p = policy();
        // Received at 0, max age 1 h; a retry due at 3590 s + 20 s is past it.
        assert_eq!(
            p.judge(Attempt::NoAnswer, 2, 0, 3590 * S, 1.0),
            Verdict::Dead(DeadReason::Expired)
        );
        assert_eq!(
            p.judge(Attempt::NoAnswer, 2, 0, 3500 * S, 1.0),
            Verdict::RetryAt(3520 * S)
        );
        // Retry-After past the max age: dead now, not stuck waiting.
        let far = Attempt::Answered {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(Duration::from_secs(7200)),
        };
        assert_eq!(
            p.judge(far, 1, 0, 0, 1.0),
            Verdict::Dead(DeadReason::Expired)
        );
    }

    #[test]
    fn max_attempts_ends_retries() {
        let p = RetryPolicy {
            max_attempts: Some(3),
            ..policy()
        };
        assert_eq!(
            p.judge(Attempt::NoAnswer, 2, 0, 0, 1.0),
            Verdict::RetryAt(20 * S)
        );
        assert_eq!(
            p.judge(Attempt::NoAnswer, 3, 0, 0, 1.0),
            Verdict::Dead(DeadReason::Attempts)
        );
        // A success on the last attempt is still a success.
        assert_eq!(p.judge(answered(200), 3, 0, 0, 1.0), Verdict::Delivered);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let v = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert_eq!(
            parse_retry_after(&v("120"), now),
            Some(Duration::from_secs(120))
        );
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(
            parse_retry_after(&v("Sun, 06 Nov 1994 08:50:37 GMT"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after(&v("Sun, 06 Nov 1994 08:40:37 GMT"), now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-5", "soon", "1.5", "Sun, 06 Nov 1994 08:50:37"] {
            assert_eq!(parse_retry_after(&v(bad), now), None, "{bad:?}");
        }
    }
}
