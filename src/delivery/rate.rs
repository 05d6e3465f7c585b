//! A queued route's delivery rate limit (`queue.rate_limit`): a token bucket, as a pure
//! value the gate keeps and the worker and the pipeline draw from, the clock passed in.
//!
//! Each attempt takes a token as it is started (leased with a free slot, started at
//! ingest, or, for an event leased while every slot was busy, once it has its slot); the
//! bucket refills at `per_second` up to `burst`. Concurrency bounds how many deliveries are at the app at once; the rate bounds
//! how many start each second, whatever the app's speed.

use std::time::Duration;

use crate::delivery::UnixMs;
use crate::model::RateLimit;

/// Tokens, refilled continuously.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: UnixMs,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn new(limit: RateLimit, now: UnixMs) -> Bucket {
        Bucket {
            limit,
            tokens: f64::from(limit.burst),
            at: now,
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    fn refill(&mut self, now: UnixMs) {
        if now > self.at {
            let secs = now.since(self.at).as_secs_f64();
            let refill = secs * self.limit.per_second();
            self.tokens = (self.tokens + refill).min(f64::from(self.limit.burst));
            self.at = now;
        }
    }

    /// Takes up to `n` whole tokens at `now`; returns how many.
    pub fn take(&mut self, n: usize, now: UnixMs) -> usize {
        self.refill(now);
        let whole = self.tokens.floor().max(0.0) as usize;
        let taken = whole.min(n);
        self.tokens -= taken as f64;
        taken
    }

    /// Gives back `n` tokens taken and not used (a lease found fewer events than it took
    /// tokens for); never above the burst.
    pub fn give_back(&mut self, n: usize) {
        self.tokens = (self.tokens + n as f64).min(f64::from(self.limit.burst));
    }

    /// How long from `now` until one token is there (zero if one is).
    pub fn wait(&mut self, now: UnixMs) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.limit.per_second())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit {
            milli_per_second: (per_second * 1000.0) as u64,
            burst,
        }
    }

    #[test]
    fn a_full_bucket_gives_its_burst_then_one_token_per_interval() {
        let t0 = UnixMs(1_000_000);
        let mut b = Bucket::new(limit(10.0, 5), t0);
        assert_eq!(b.take(8, t0), 5, "the burst");
        assert_eq!(b.take(1, t0), 0);
        assert_eq!(b.wait(t0), Duration::from_millis(100));
        // 250 ms: two and a half tokens; two whole ones are taken, the half stays.
        let t1 = t0.after(Duration::from_millis(250));
        assert_eq!(b.take(10, t1), 2);
        assert_eq!(b.wait(t1), Duration::from_millis(50));
        // Never more than the burst, however long the bucket waited.
        let later = t1.after(Duration::from_secs(3600));
        assert_eq!(b.take(100, later), 5);
    }

    #[test]
    fn tokens_given_back_are_kept_up_to_the_burst() {
        let t0 = UnixMs(0);
        let mut b = Bucket::new(limit(1.0, 3), t0);
        assert_eq!(b.take(3, t0), 3);
        b.give_back(2);
        assert_eq!(b.take(3, t0), 2);
        b.give_back(10);
        assert_eq!(b.take(10, t0), 3, "capped at the burst");
    }

    #[test]
    fn a_slow_rate_waits_whole_seconds_and_a_clock_going_back_adds_nothing() {
        let t0 = UnixMs(10_000);
        let mut b = Bucket::new(limit(0.5, 1), t0);
        assert_eq!(b.take(1, t0), 1);
        assert_eq!(b.wait(t0), Duration::from_secs(2));
        assert_eq!(
            b.take(1, UnixMs(5_000)),
            0,
            "an earlier time refills nothing"
        );
        assert_eq!(b.take(1, t0.after(Duration::from_secs(2))), 1);
    }
}
