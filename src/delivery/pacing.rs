//! Pacing a queued route by how its app answers, as pure decisions the worker acts on. When an
//! attempt finds the app down (no answer, or a 429/502/503/504), the route pauses for the
//! retry backoff of the attempts in a row that found it down (at most [`MAX_PAUSE`]), then
//! sends one probe at a time until one gets through; then it resumes at full rate. No hot
//! loop of refused connections while an app deploys, and no thundering herd when it is back.

use std::time::Duration;

use crate::delivery::UnixMs;
use crate::model::RetryPolicy;

/// The longest a route whose app is down waits before its next probe.
pub const MAX_PAUSE: Duration = Duration::from_secs(30);

/// The longest an app's `Retry-After` holds its whole route back.
pub const MAX_RETRY_AFTER_PAUSE: Duration = Duration::from_secs(600);

/// A pause lengthened to the app's `Retry-After` (on a 429 or 503 that says how long to
/// wait), so that the whole route waits, not only the event that got it; at most
/// [`MAX_RETRY_AFTER_PAUSE`]. Any other step is as it was.
pub fn honour_retry_after(step: Step, retry_after: Option<Duration>) -> Step {
    match (step, retry_after) {
        (Step::Pause { pause, first }, Some(asked)) if asked > pause => Step::Pause {
            pause: asked.min(MAX_RETRY_AFTER_PAUSE),
            first,
        },
        _ => step,
    }
}

/// What the worker knows of a route's app, from its attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppState {
    /// Attempts in a row that found the app down; 0 while it answers.
    pub down_streak: u32,
    /// Since when it looks down, for operators.
    pub down_since: Option<UnixMs>,
}

/// What one attempt's result does to a route's pacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// It answers, as it did: nothing changes.
    Steady,
    /// It answers again after being down: resume at full rate (said once, in the log).
    Recovered,
    /// It is down: lease nothing for `pause`, then probe one event at a time. `first` when
    /// this attempt is the one that found it down (said once, in the log).
    Pause { pause: Duration, first: bool },
}

impl AppState {
    /// The app's state after an attempt made at `now` that found it down or not, and what
    /// that does to the route. `retry` is the route's retry policy (`None` if a reload
    /// removed the route: the longest pause).
    pub fn after_attempt(
        self,
        app_down: bool,
        now: UnixMs,
        retry: Option<&RetryPolicy>,
    ) -> (AppState, Step) {
        if !app_down {
            let step = if self.down_streak > 0 {
                Step::Recovered
            } else {
                Step::Steady
            };
            return (AppState::default(), step);
        }
        let down_streak = self.down_streak.saturating_add(1);
        let pause = retry
            .map_or(MAX_PAUSE, |r| r.backoff(down_streak))
            .min(MAX_PAUSE);
        let first = self.down_streak == 0;
        let state = AppState {
            down_streak,
            down_since: if first { Some(now) } else { self.down_since },
        };
        (state, Step::Pause { pause, first })
    }

    /// How many of the route's events this process may hold leased: none while `paused`,
    /// one probe at a time while its app is down, and twice its concurrency while it
    /// answers (the next events are at hand when an answer comes).
    pub fn lease_limit(&self, paused: bool, concurrency: usize) -> usize {
        match (paused, self.down_streak) {
            (true, _) => 0,
            (false, 0) => concurrency.saturating_mul(2),
            (false, _) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> RetryPolicy {
        RetryPolicy {
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(3600),
            ..RetryPolicy::default()
        }
    }

    fn at(ms: i64) -> UnixMs {
        UnixMs(ms)
    }

    #[test]
    fn retry_after_holds_the_whole_route_back_up_to_ten_minutes() {
        let pause = |secs| Step::Pause {
            pause: Duration::from_secs(secs),
            first: true,
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(honour_retry_after(pause(1), secs(20)), pause(20));
        assert_eq!(
            honour_retry_after(pause(5), secs(2)),
            pause(5),
            "never shorter"
        );
        assert_eq!(honour_retry_after(pause(1), secs(7200)), pause(600));
        assert_eq!(honour_retry_after(pause(1), None), pause(1));
        assert_eq!(honour_retry_after(Step::Steady, secs(20)), Step::Steady);
    }

    #[test]
    fn an_app_that_answers_is_leased_at_twice_its_concurrency() {
        let (up, step) = AppState::default().after_attempt(false, at(1), Some(&retry()));
        assert_eq!(step, Step::Steady);
        assert_eq!(up, AppState::default());
        assert_eq!(up.lease_limit(false, 8), 16);
    }

    #[test]
    fn an_app_found_down_pauses_the_route_then_gets_one_probe_at_a_time() {
        let (down, step) = AppState::default().after_attempt(true, at(1_000), Some(&retry()));
        assert_eq!(
            step,
            Step::Pause {
                pause: Duration::from_secs(1),
                first: true
            }
        );
        assert_eq!(down.down_since, Some(at(1_000)));
        assert_eq!(down.lease_limit(true, 8), 0, "paused: nothing leased");
        assert_eq!(down.lease_limit(false, 8), 1, "then one probe");
    }

    #[test]
    fn the_pause_grows_with_each_failed_probe_up_to_the_maximum() {
        let mut state = AppState::default();
        let mut pauses = Vec::new();
        for i in 0..8 {
            let (next, step) = state.after_attempt(true, at(1_000 + i), Some(&retry()));
            let Step::Pause { pause, first } = step else {
                panic!("{step:?}")
            };
            assert_eq!(first, i == 0);
            pauses.push(pause.as_secs());
            state = next;
        }
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(state.down_since, Some(at(1_000)), "since the first");
        assert_eq!(state.down_streak, 8);
    }

    #[test]
    fn a_probe_that_gets_through_resumes_at_full_rate() {
        let (down, _) = AppState::default().after_attempt(true, at(1), Some(&retry()));
        let (up, step) = down.after_attempt(false, at(2), Some(&retry()));
        assert_eq!(step, Step::Recovered);
        assert_eq!(up, AppState::default());
        assert_eq!(up.lease_limit(false, 3), 6);
    }

    #[test]
    fn a_route_a_reload_removed_pauses_the_longest() {
        let (_, step) = AppState::default().after_attempt(true, at(1), None);
        assert_eq!(
            step,
            Step::Pause {
                pause: MAX_PAUSE,
                first: true
            }
        );
    }
}
