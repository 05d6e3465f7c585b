//! A queued route's circuit breaker (`queue.breaker`), as a pure state machine the worker
//! feeds with each attempt's result and asks before leasing, the clock passed in.
//!
//! Pacing (`pacing.rs`) reacts to an app that does not answer at all; the breaker reacts to
//! one that answers badly too often: when, over the last `window`, at least `min_attempts`
//! were made and `failure_rate` of them failed, it **opens**, and the route delivers nothing
//! for `open_for`. Then it is **half-open**: up to `probes` attempts go out; as many
//! successes in a row close it, one failure opens it again. A failure is what the retry
//! policy retries (no answer, a 5xx, 408/409/425/429); a 2xx is a success; a final 4xx
//! (the app refused that one event) says nothing of the app's health and is not counted.
//!
//! The window is kept as ten buckets of a tenth of it each, so its memory is fixed.

use std::time::Duration;

use crate::delivery::UnixMs;
use crate::model::BreakerPolicy;

const BUCKETS: usize = 10;

/// Where the breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Nothing goes out until `until`.
    Open {
        until: UnixMs,
    },
    /// Probing: `in_flight` probes out, `passed` of them succeeded so far.
    HalfOpen {
        in_flight: u32,
        passed: u32,
    },
}

/// A breaker's state without its details: what operators are shown, and what the gate
/// keeps for the pipeline and the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Closed,
    Open,
    HalfOpen,
}

impl Phase {
    /// As the API, the log and the `to` label say it.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open => "open",
            Phase::HalfOpen => "half_open",
        }
    }

    /// The `hookgate_queue_breaker_state` gauge's value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            Phase::Closed => 0,
            Phase::Open => 1,
            Phase::HalfOpen => 2,
        }
    }

    /// Back from [`Phase::gauge`] (anything else reads closed).
    pub fn from_gauge(value: i64) -> Phase {
        match value {
            1 => Phase::Open,
            2 => Phase::HalfOpen,
            _ => Phase::Closed,
        }
    }
}

impl BreakerState {
    pub fn phase(self) -> Phase {
        match self {
            BreakerState::Closed => Phase::Closed,
            BreakerState::Open { .. } => Phase::Open,
            BreakerState::HalfOpen { .. } => Phase::HalfOpen,
        }
    }

    /// As the `hookgate_queue_breaker_state` gauge and the API say it.
    pub fn label(self) -> &'static str {
        self.phase().label()
    }

    /// The gauge's value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        self.phase().gauge()
    }
}

/// What an attempt's result meant to the app's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Success,
    Failure,
    /// Neither (a final 4xx: that event was refused).
    Neutral,
}

/// A route's breaker.
#[derive(Clone, Debug, PartialEq)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: BreakerState,
    /// (successes, failures) per bucket, the current bucket being `bucket_at`'s.
    buckets: [(u32, u32); BUCKETS],
    bucket_at: i64,
    /// Since when it is in its state, for operators.
    pub since: UnixMs,
}

/// A change of state, for the log line and the transition counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    /// The failure rate over the window when it opened from closed.
    pub failure_rate: Option<u32>,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy, now: UnixMs) -> Breaker {
        Breaker {
            policy,
            state: BreakerState::Closed,
            buckets: [(0, 0); BUCKETS],
            bucket_at: Self::bucket_index(&policy, now),
            since: now,
        }
    }

    pub fn policy(&self) -> BreakerPolicy {
        self.policy
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    fn bucket_len(policy: &BreakerPolicy) -> i64 {
        (i64::try_from(policy.window.as_millis()).unwrap_or(i64::MAX) / BUCKETS as i64).max(1)
    }

    fn bucket_index(policy: &BreakerPolicy, now: UnixMs) -> i64 {
        now.as_i64() / Self::bucket_len(policy)
    }

    /// Moves the window to `now`: buckets older than it are emptied.
    fn roll(&mut self, now: UnixMs) {
        let at = Self::bucket_index(&self.policy, now);
        if at <= self.bucket_at {
            return;
        }
        let steps = (at - self.bucket_at).min(BUCKETS as i64);
        for i in 1..=steps {
            let slot = (self.bucket_at + i).rem_euclid(BUCKETS as i64) as usize;
            self.buckets[slot] = (0, 0);
        }
        self.bucket_at = at;
    }

    fn totals(&self) -> (u32, u32) {
        self.buckets
            .iter()
            .fold((0, 0), |(s, f), (bs, bf)| (s + bs, f + bf))
    }

    /// How many attempts may start now: none while open (until it turns half-open), the
    /// probes not yet out while half-open, any number while closed (`None`).
    pub fn allowed(&mut self, now: UnixMs) -> (Option<u32>, Option<Transition>) {
        let mut change = None;
        if let BreakerState::Open { until } = self.state {
            if now < until {
                return (Some(0), None);
            }
            change = Some(self.enter(
                BreakerState::HalfOpen {
                    in_flight: 0,
                    passed: 0,
                },
                now,
                None,
            ));
        }
        match self.state {
            BreakerState::HalfOpen { in_flight, .. } => {
                (Some(self.policy.probes.saturating_sub(in_flight)), change)
            }
            _ => (None, change),
        }
    }

    /// A probe that ended without an attempt's verdict (its lease given back or lost, or a
    /// final 4xx): another may go.
    pub fn probe_done(&mut self) {
        if let BreakerState::HalfOpen { in_flight, passed } = self.state {
            self.state = BreakerState::HalfOpen {
                in_flight: in_flight.saturating_sub(1),
                passed,
            };
        }
    }

    /// Counts `n` probes as sent (half-open only).
    pub fn probing(&mut self, n: u32) {
        if let BreakerState::HalfOpen { in_flight, passed } = self.state {
            self.state = BreakerState::HalfOpen {
                in_flight: in_flight + n,
                passed,
            };
        }
    }

    /// Records an attempt's result at `now`; the change of state it caused, if any.
    pub fn record(&mut self, health: Health, now: UnixMs) -> Option<Transition> {
        self.roll(now);
        let slot = self.bucket_at.rem_euclid(BUCKETS as i64) as usize;
        match health {
            Health::Success => self.buckets[slot].0 += 1,
            Health::Failure => self.buckets[slot].1 += 1,
            Health::Neutral => {
                // A probe that says nothing of the app's health is done all the same.
                self.probe_done();
                return None;
            }
        }
        match self.state {
            BreakerState::Closed => {
                let (successes, failures) = self.totals();
                let total = successes + failures;
                let rate = failures.saturating_mul(100) / total.max(1);
                (health == Health::Failure
                    && total >= self.policy.min_attempts
                    && rate >= self.policy.failure_rate_percent)
                    .then(|| self.open(now, Some(rate)))
            }
            BreakerState::HalfOpen { in_flight, passed } => match health {
                Health::Failure => Some(self.open(now, None)),
                _ if passed + 1 >= self.policy.probes => {
                    // Closed with a clean window: the failures that opened it are history.
                    self.buckets = [(0, 0); BUCKETS];
                    Some(self.enter(BreakerState::Closed, now, None))
                }
                _ => {
                    self.state = BreakerState::HalfOpen {
                        in_flight: in_flight.saturating_sub(1),
                        passed: passed + 1,
                    };
                    None
                }
            },
            // A late answer from before it opened changes nothing.
            BreakerState::Open { .. } => None,
        }
    }

    fn open(&mut self, now: UnixMs, failure_rate: Option<u32>) -> Transition {
        let until = now.after(self.policy.open_for);
        self.enter(BreakerState::Open { until }, now, failure_rate)
    }

    fn enter(&mut self, to: BreakerState, now: UnixMs, failure_rate: Option<u32>) -> Transition {
        let from = self.state;
        self.state = to;
        self.since = now;
        Transition {
            from,
            to,
            failure_rate,
        }
    }

    /// When an open breaker turns half-open (for the worker's next wake-up).
    pub fn reopens_in(&self, now: UnixMs) -> Option<Duration> {
        match self.state {
            BreakerState::Open { until } => Some(until.since(now)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failure_rate_percent: 50,
            window: Duration::from_secs(10),
            min_attempts: 4,
            open_for: Duration::from_secs(30),
            probes: 2,
        }
    }

    fn at(ms: i64) -> UnixMs {
        UnixMs(ms)
    }

    #[test]
    fn it_opens_on_the_failure_rate_only_past_the_minimum_attempts() {
        let mut b = Breaker::new(policy(), at(0));
        assert_eq!(b.record(Health::Failure, at(100)), None);
        assert_eq!(b.record(Health::Failure, at(200)), None);
        assert_eq!(
            b.record(Health::Failure, at(300)),
            None,
            "3 attempts: too few"
        );
        let opened = b.record(Health::Failure, at(400)).expect("opens");
        assert_eq!(opened.to, BreakerState::Open { until: at(30_400) });
        assert_eq!(opened.failure_rate, Some(100));
        assert_eq!(b.allowed(at(10_000)), (Some(0), None));
    }

    #[test]
    fn successes_keep_it_closed_and_final_4xx_count_for_nothing() {
        let mut b = Breaker::new(policy(), at(0));
        for i in 0..3 {
            assert_eq!(b.record(Health::Success, at(i)), None);
        }
        for i in 0..20 {
            assert_eq!(b.record(Health::Neutral, at(10 + i)), None);
        }
        assert_eq!(b.record(Health::Failure, at(50)), None, "1 in 4 fail");
        assert_eq!(
            b.record(Health::Failure, at(60)),
            None,
            "2 in 5: under 50 %"
        );
        assert!(b.record(Health::Failure, at(70)).is_some(), "3 in 6: 50 %");
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let mut b = Breaker::new(policy(), at(0));
        for i in 0..3 {
            b.record(Health::Failure, at(i * 100));
        }
        // 11 s later the window (10 s) holds none of them.
        assert_eq!(b.record(Health::Failure, at(11_000)), None);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_probe_without_a_verdict_lets_another_go() {
        let mut b = Breaker::new(policy(), at(0));
        for i in 0..4 {
            b.record(Health::Failure, at(i));
        }
        assert_eq!(b.allowed(at(30_003)).0, Some(2));
        b.probing(2);
        assert_eq!(b.allowed(at(30_004)).0, Some(0));
        // A final 4xx, and a lease given back: neither judges the app, both end a probe.
        assert_eq!(b.record(Health::Neutral, at(30_005)), None);
        b.probe_done();
        assert_eq!(b.allowed(at(30_006)).0, Some(2), "the probes may go again");
        assert_eq!(b.state().label(), "half_open");
    }

    #[test]
    fn half_open_probes_close_it_and_a_failed_probe_opens_it_again() {
        let mut b = Breaker::new(policy(), at(0));
        for i in 0..4 {
            b.record(Health::Failure, at(i));
        }
        let (allowed, change) = b.allowed(at(30_003));
        assert_eq!(allowed, Some(2));
        assert_eq!(change.unwrap().to.label(), "half_open");
        b.probing(2);
        assert_eq!(b.allowed(at(30_004)).0, Some(0), "both probes out");
        assert_eq!(b.record(Health::Success, at(30_100)), None);
        let closed = b.record(Health::Success, at(30_200)).expect("closes");
        assert_eq!(closed.to, BreakerState::Closed);
        assert_eq!(b.allowed(at(30_300)).0, None);
        // Opened again, a failed probe opens it for another `open_for`.
        for i in 0..4 {
            b.record(Health::Failure, at(40_000 + i));
        }
        b.allowed(at(70_010));
        b.probing(1);
        let reopened = b.record(Health::Failure, at(70_020)).expect("reopens");
        assert_eq!(reopened.to, BreakerState::Open { until: at(100_020) });
        assert_eq!(b.reopens_in(at(70_020)), Some(Duration::from_secs(30)));
    }
}
