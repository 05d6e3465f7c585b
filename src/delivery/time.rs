//! [`UnixMs`]: a point in time as the queue store keeps it, milliseconds since 1970 (UTC).
//!
//! Both engines store times as 64-bit integers (`received_at`, `next_attempt_at`,
//! `leased_until`, ...), which an operator reads in the `sqlite3` shell or `psql` as they
//! are. In the code a time is this type, not a bare `i64`: a duration in milliseconds or a
//! count cannot be passed where a time is due, and the conversion from `SystemTime` and the
//! saturating arithmetic are written once, here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMs(pub i64);

impl UnixMs {
    /// The epoch itself; also what a time before 1970 reads as.
    pub const EPOCH: UnixMs = UnixMs(0);

    /// The integer stored in the database.
    pub const fn as_i64(self) -> i64 {
        self.0
    }

    /// `d` later, saturating (a duration past `i64::MAX` ms is "never").
    pub fn after(self, d: Duration) -> UnixMs {
        UnixMs(self.0.saturating_add(millis(d)))
    }

    /// `d` earlier, saturating.
    pub fn before(self, d: Duration) -> UnixMs {
        UnixMs(self.0.saturating_sub(millis(d)))
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn since(self, earlier: UnixMs) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl From<SystemTime> for UnixMs {
    /// `t` in milliseconds (the epoch for a time before it).
    fn from(t: SystemTime) -> UnixMs {
        UnixMs(t.duration_since(UNIX_EPOCH).map_or(0, millis))
    }
}

/// The integer, as stored (and as an operator reads it in the database).
impl std::fmt::Display for UnixMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<UnixMs> for i64 {
    fn from(t: UnixMs) -> i64 {
        t.0
    }
}

/// `d` in whole milliseconds, saturating at `i64::MAX`.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = UnixMs(1_700_000_000_000);
        assert_eq!(
            t.after(Duration::from_millis(1_500)),
            UnixMs(1_700_000_001_500)
        );
        assert_eq!(t.before(Duration::from_secs(1)), UnixMs(1_699_999_999_000));
        assert_eq!(t.after(Duration::MAX), UnixMs(i64::MAX));
        assert_eq!(
            UnixMs(i64::MAX).after(Duration::from_millis(1)),
            UnixMs(i64::MAX)
        );
        assert_eq!(UnixMs(i64::MIN + 1).before(Duration::MAX), UnixMs(i64::MIN));
    }

    #[test]
    fn since_is_zero_for_a_time_not_after() {
        let t = UnixMs(10_000);
        assert_eq!(t.since(UnixMs(7_500)), Duration::from_millis(2_500));
        assert_eq!(t.since(t), Duration::ZERO);
        assert_eq!(t.since(UnixMs(20_000)), Duration::ZERO);
        assert_eq!(
            UnixMs(i64::MAX).since(UnixMs(i64::MIN)),
            Duration::from_millis(u64::MAX >> 1)
        );
    }

    #[test]
    fn system_times_convert_to_whole_milliseconds_and_not_before_the_epoch() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_999);
        assert_eq!(UnixMs::from(t), UnixMs(1_700_000_000_123));
        assert_eq!(
            UnixMs::from(UNIX_EPOCH - Duration::from_secs(5)),
            UnixMs::EPOCH
        );
    }
}
