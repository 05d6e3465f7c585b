//! The delivery worker: one task per process that leases due events from the queue store,
//! sends each to its route's upstream with the same forward code as sync mode, and settles
//! it as delivered, to be retried, or dead.
//!
//! - **Per route, bounded.** At most `queue.concurrency` deliveries of a route are at its app
//!   at once; twice as many are leased, so the next event is at hand when an answer comes,
//!   and an attempt is settled after its slot is free (settles are batched by the store).
//! - **Paced when the app is down.** When an attempt gets no answer (refused, reset,
//!   timeout) or a 429/502/503/504, the route pauses (the retry backoff, at most
//!   [`MAX_PAUSE`]), then sends one probe at a time until an attempt gets through: no hot
//!   loop of refused connections while the app is deploying.
//! - **Handed over, woken, polling.** An event the pipeline stored already leased to this
//!   process (the route's `Gate` had room) arrives in memory, body and parsed headers
//!   included; for one stored `queued`, the pipeline wakes the worker, which leases it. The
//!   worker also polls once a second for events that became due (retries, expired leases,
//!   other replicas' events on a shared store).
//! - **Leases.** An event is leased for longer than it can wait for a slot plus one attempt
//!   (`delivery::lease_for`); if this process dies mid-attempt, the lease runs out
//!   and the event is due again (the embedded store releases it at once on the next start).
//! - On shutdown it leases nothing more and waits for its attempts in flight, up to
//!   `limits.shutdown_grace`; undelivered events stay in the store for the next start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio::sync::{mpsc, watch};

use crate::body::RawBody;
use crate::config::Route;
use crate::delivery::event::Event;
use crate::delivery::retry::{self, Attempt, Verdict};
use crate::delivery::store::Settle;
use crate::delivery::{unix_ms, Delivery, Queue, QueuePolicy, ATTEMPT_HEADER, IDEMPOTENCY_KEY};
use crate::forward::{self, Outgoing};
use crate::gateway::Clock;
use crate::metrics::Metrics;
use crate::reload::{Current, Live};

/// The longest a route whose app is down waits before its next probe.
pub const MAX_PAUSE: Duration = Duration::from_secs(30);
/// How often due events are looked for when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(1);
/// How often the depth and age gauges are refreshed.
const DEPTHS_EVERY: Duration = Duration::from_secs(5);
/// How often finished events past their retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// A route's delivery state in this worker.
struct RouteState {
    /// Events this process holds leased and the app has not yet answered (settling happens
    /// after), against the most it may; shared with the pipeline, which stores events
    /// already leased when there is room.
    gate: Arc<crate::delivery::Gate>,
    /// `queue.concurrency` permits: an attempt holds one while it talks to the app. Twice
    /// as many events are leased, so the next ones are at hand when an answer comes.
    slots: Arc<tokio::sync::Semaphore>,
    slots_size: usize,
    /// Attempts in a row that found the app down; 0 when it is up.
    down_streak: u32,
    /// No lease for this route before this.
    paused_until: Option<Instant>,
}

impl RouteState {
    fn new(concurrency: usize, gate: Arc<crate::delivery::Gate>) -> RouteState {
        RouteState {
            gate,
            slots: Arc::new(tokio::sync::Semaphore::new(concurrency)),
            slots_size: concurrency,
            down_streak: 0,
            paused_until: None,
        }
    }
}

/// How an attempt went, for pacing.
struct Done {
    route: Arc<Route>,
    app_down: bool,
}

/// Runs the worker until `shutdown` turns true. `live` is the worker's own view of the
/// configuration (its upstream pools live on this runtime); reloads swap it.
pub async fn run(
    queue: Arc<Queue>,
    live: Arc<Current>,
    metrics: Arc<Metrics>,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut routes: HashMap<String, RouteState> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut attempts = tokio::task::JoinSet::new();
    let Some(mut handoff) = queue.take_handoff() else {
        tracing::error!("delivery worker started twice; this one stops");
        return;
    };
    // One attempt at `event`, holding one of `slots` while the app has it.
    let spawn = |attempts: &mut tokio::task::JoinSet<()>,
                 live: &Arc<Live>,
                 route: &Arc<Route>,
                 policy: &QueuePolicy,
                 slots: &Arc<tokio::sync::Semaphore>,
                 event: Event| {
        let job = Attempting {
            queue: queue.clone(),
            live: live.clone(),
            route: route.clone(),
            retry: policy.retry,
            metrics: metrics.clone(),
            clock,
        };
        let (done_tx, slots) = (done_tx.clone(), slots.clone());
        attempts.spawn(async move { job.deliver(event, &slots, &done_tx).await });
    };
    loop {
        // Finished attempts are reaped here, all of them: one per wake-up would fall behind
        // thousands of deliveries a second, and each would stay allocated.
        while attempts.try_join_next().is_some() {}
        let now = Instant::now();
        let current = live.load_full();
        let mut wake_at = now + POLL;
        for route in current.gateway.routes.routes() {
            let Delivery::Queued(policy) = &route.delivery else {
                continue;
            };
            let state = route_state(&mut routes, route, policy, &queue);
            if state.slots_size != policy.concurrency {
                // A reload changed it: attempts holding the old permits finish as they are.
                state.slots = Arc::new(tokio::sync::Semaphore::new(policy.concurrency));
                state.slots_size = policy.concurrency;
            }
            if let Some(until) = state.paused_until {
                if until > now {
                    state.gate.set_limit(0);
                    wake_at = wake_at.min(until);
                    continue;
                }
            }
            // A route whose app is down gets one probe at a time.
            state.gate.set_limit(if state.down_streak > 0 {
                1
            } else {
                policy.concurrency.saturating_mul(2)
            });
            let room = state.gate.take(usize::MAX);
            if room == 0 {
                continue;
            }
            let now_ms = unix_ms(clock());
            let lease = crate::delivery::lease_for(&current.gateway.limits, route);
            let lease_until = now_ms + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
            let leased = match queue
                .store
                .lease(&route.name, room, now_ms, lease_until)
                .await
            {
                Ok(events) => {
                    state.gate.release(room - events.len());
                    events
                }
                Err(e) => {
                    state.gate.release(room);
                    tracing::error!(route = route.name.as_str(), error = %e, "queue store: cannot lease events");
                    metrics.queue.store_error(crate::metrics::StoreOp::Lease);
                    continue;
                }
            };
            if !leased.is_empty() {
                // Their answers wake the loop, which leases again.
            } else if let Ok(Some(due_ms)) = queue.store.next_due(&route.name).await {
                let wait = u64::try_from(due_ms.saturating_sub(unix_ms(clock()))).unwrap_or(0);
                wake_at = wake_at.min(now + Duration::from_millis(wait));
            }
            for event in leased {
                spawn(&mut attempts, &current, route, policy, &state.slots, event);
            }
        }
        tokio::select! {
            _ = queue.wake.notified() => {}
            Some(event) = handoff.recv() => {
                // Stored leased to this process: its gate was taken by the pipeline.
                let mut events = vec![event];
                while let Ok(more) = handoff.try_recv() {
                    events.push(more);
                }
                for event in events {
                    let Some((route, policy)) = queued_route(&current, &event.route) else {
                        // A reload removed the route: the lease runs out and the event
                        // waits, stored, for a configuration that has it again.
                        queue.gate(&event.route).release(1);
                        continue;
                    };
                    let state = route_state(&mut routes, route, policy, &queue);
                    spawn(&mut attempts, &current, route, policy, &state.slots, event);
                }
            }
            Some(done) = done_rx.recv() => {
                settle_pace(&mut routes, done, &current);
                // Take every other finished attempt too before leasing again.
                while let Ok(done) = done_rx.try_recv() {
                    settle_pace(&mut routes, done, &current);
                }
            }
            _ = tokio::time::sleep_until(wake_at.into()) => {}
            _ = shutdown.changed() => break,
        }
    }
    let grace = live.load().gateway.limits.shutdown_grace;
    let in_flight = attempts.len();
    if in_flight > 0 {
        tracing::info!(
            in_flight,
            "delivery stopping: waiting for attempts in flight"
        );
    }
    let waited = tokio::time::timeout(grace, async {
        while attempts.join_next().await.is_some() {}
    })
    .await;
    if waited.is_err() {
        // Their leases run out; the events are delivered again after the next start.
        tracing::warn!(
            cut_off = attempts.len(),
            "delivery attempts still running when shutdown_grace ran out"
        );
        attempts.abort_all();
    }
}

/// `route`'s delivery state, made on first use (looked up by name without allocating one:
/// this runs for every event).
fn route_state<'a>(
    routes: &'a mut HashMap<String, RouteState>,
    route: &Route,
    policy: &QueuePolicy,
    queue: &Queue,
) -> &'a mut RouteState {
    if !routes.contains_key(&route.name) {
        let state = RouteState::new(policy.concurrency, queue.gate(&route.name));
        routes.insert(route.name.clone(), state);
    }
    routes
        .get_mut(&route.name)
        .expect("the route's state was inserted above")
}

/// The queued route named `name` in `live`, with its policy.
fn queued_route<'a>(live: &'a Live, name: &str) -> Option<(&'a Arc<Route>, &'a QueuePolicy)> {
    live.gateway
        .routes
        .routes()
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| match &r.delivery {
            Delivery::Queued(p) => Some((r, p)),
            Delivery::Sync => None,
        })
}

/// Counts a finished attempt and paces its route.
fn settle_pace(routes: &mut HashMap<String, RouteState>, done: Done, live: &Live) {
    let Some(state) = routes.get_mut(&done.route.name) else {
        return;
    };
    state.gate.release(1);
    if !done.app_down {
        if state.down_streak > 0 {
            tracing::info!(
                route = done.route.name.as_str(),
                "app answering again; delivery resumes"
            );
        }
        state.down_streak = 0;
        state.paused_until = None;
        return;
    }
    state.down_streak = state.down_streak.saturating_add(1);
    let backoff = queued_route(live, &done.route.name)
        .map_or(MAX_PAUSE, |(_, p)| p.retry.backoff(state.down_streak))
        .min(MAX_PAUSE);
    if state.down_streak == 1 {
        tracing::warn!(
            route = done.route.name.as_str(),
            "app not answering; pausing delivery, then probing one event at a time"
        );
    }
    state.paused_until = Some(Instant::now() + backoff);
}

/// One leased event on its way.
struct Attempting {
    queue: Arc<Queue>,
    live: Arc<Live>,
    route: Arc<Route>,
    /// The route's retry policy when the attempt started.
    retry: retry::RetryPolicy,
    metrics: Arc<Metrics>,
    clock: Clock,
}

impl Attempting {
    /// Sends the event (holding one of the route's `slots` while the app has it), reports
    /// on `done` whether the app looked down (for pacing), then judges the answer and
    /// settles the event.
    async fn deliver(
        &self,
        mut event: Event,
        slots: &tokio::sync::Semaphore,
        done: &mpsc::UnboundedSender<Done>,
    ) {
        let route = self.route.name.as_str();
        let report = |app_down| {
            let _ = done.send(Done {
                route: self.route.clone(),
                app_down,
            });
        };
        let sent = {
            // Closed only if the worker is gone; then sending anyway is harmless.
            let _slot = slots.acquire().await;
            // Boxed: the exchange's future is most of an attempt's size, and a task's
            // future is copied whole when spawned and again when it completes.
            Box::pin(self.send(&mut event)).await
        };
        let (attempt, status, cause) = match sent {
            Ok(sent) => sent,
            Err(unreadable) => {
                report(false);
                tracing::error!(route, event = event.id.as_str(), error = %unreadable, "stored event cannot be sent; dead letter");
                let settle = Settle::Dead {
                    reason: retry::DeadReason::Unreadable,
                    status: None,
                    error: unreadable.to_string(),
                };
                self.finish(&event, settle, "dead", Some(retry::DeadReason::Unreadable))
                    .await;
                return;
            }
        };
        let app_down = match attempt {
            Attempt::NoAnswer => true,
            Attempt::Answered { status, .. } => matches!(status.as_u16(), 429 | 502 | 503 | 504),
        };
        report(app_down);
        let now = (self.clock)();
        let verdict = self.retry.judge(
            attempt,
            event.attempts,
            event.age_from_ms,
            unix_ms(now),
            jitter(),
        );
        // Written out only for an attempt that failed (most succeed).
        let failure = move || {
            cause.unwrap_or_else(|| match status {
                Some(s) => format!("app answered {s}"),
                None => "no answer".into(),
            })
        };
        let (settle, outcome, dead) = match verdict {
            Verdict::Delivered => (
                Settle::Delivered {
                    status: status.unwrap_or(200),
                },
                "delivered",
                None,
            ),
            Verdict::RetryAt(at_ms) => (
                Settle::Retry {
                    at_ms,
                    status,
                    error: failure(),
                },
                "retry",
                None,
            ),
            Verdict::Dead(reason) => (
                Settle::Dead {
                    reason,
                    status,
                    error: failure(),
                },
                "dead",
                Some(reason),
            ),
        };
        match &settle {
            Settle::Delivered { .. } => tracing::info!(
                route,
                event = event.id.as_str(),
                attempt = event.attempts,
                status = status.unwrap_or(0),
                "delivered"
            ),
            Settle::Retry { error, .. } | Settle::Dead { error, .. } => {
                let at = match &settle {
                    Settle::Retry { at_ms, .. } => *at_ms,
                    _ => 0,
                };
                tracing::warn!(
                    route,
                    event = event.id.as_str(),
                    attempt = event.attempts,
                    status = status.unwrap_or(0),
                    outcome,
                    reason = dead.map_or("", |d| d.label()),
                    error = error.as_str(),
                    retry_in_ms = at.saturating_sub(unix_ms(now)).max(0),
                    "delivery attempt failed"
                );
            }
        }
        self.finish(&event, settle, outcome, dead).await;
    }

    /// Settles the event and counts the attempt.
    async fn finish(
        &self,
        event: &Event,
        settle: Settle,
        outcome: &str,
        dead: Option<retry::DeadReason>,
    ) {
        let route = self.route.name.as_str();
        let q = &self.metrics.queue;
        match self
            .queue
            .store
            .settle(event, settle, unix_ms((self.clock)()))
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                route,
                event = event.id.as_str(),
                "lease ran out before the attempt was settled; another attempt owns the event"
            ),
            Err(e) => {
                // The lease runs out and the event is tried again: at least once, not lost.
                tracing::error!(route, event = event.id.as_str(), error = %e, "queue store: cannot settle; the event will be delivered again");
                q.store_error(crate::metrics::StoreOp::Settle);
            }
        }
        // Counted once the store says so, so the metrics never run ahead of the queue API.
        q.attempts.with_label_values(&[route, outcome]).inc();
        if let Some(reason) = dead {
            q.dead_letters
                .with_label_values(&[route, reason.label()])
                .inc();
        }
    }

    /// One attempt: the stored request, with `Idempotency-Key` and `Hookgate-Attempt`, sent
    /// as sync mode sends. Returns how it went, the status if any, and the failure's cause.
    async fn send(
        &self,
        event: &mut Event,
    ) -> Result<(Attempt, Option<u16>, Option<String>), crate::delivery::event::Unreadable> {
        let (method, target, mut headers) = event.request_head()?;
        let key = HeaderValue::from_str(&event.idempotency_key)
            .map_err(|_| crate::delivery::event::Unreadable::new("bad idempotency key"))?;
        headers.insert(IDEMPOTENCY_KEY, key);
        headers.insert(ATTEMPT_HEADER, HeaderValue::from(event.attempts));
        let body = RawBody::from(event.body.clone().unwrap_or_default());
        let outgoing = Outgoing {
            method,
            target,
            headers,
        };
        let exchange = forward::send(
            &self.live.upstreams,
            &self.route,
            outgoing,
            body,
            &self.live.gateway.limits,
            &self.live.route_metrics[self.route.index],
        )
        .await;
        let status = exchange.call.status;
        let attempt = match (status, &exchange.result) {
            (Some(status), Ok(response)) => Attempt::Answered {
                status,
                retry_after: response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| retry::parse_retry_after(v, (self.clock)())),
            },
            // The app answered with a status, then the answer broke: its status still says
            // whether it took the event.
            (Some(status), Err(_)) => Attempt::Answered {
                status,
                retry_after: None,
            },
            (None, _) => Attempt::NoAnswer,
        };
        Ok((attempt, status.map(|s| s.as_u16()), exchange.call.cause))
    }
}

/// A draw in `[0, 1)` for retry jitter; not for anything secret.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(unix_ms(std::time::SystemTime::now()) as u64);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The store's housekeeping, in a task of its own so that a slow query never holds up
/// delivery: the depth and age gauges every few seconds, and the purge of finished events
/// past their retention every minute. Runs until `shutdown` turns true.
pub async fn maintain(
    queue: Arc<Queue>,
    live: Arc<Current>,
    metrics: Arc<Metrics>,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut depths = tokio::time::interval(DEPTHS_EVERY);
    let mut purges = tokio::time::interval(PURGE_EVERY);
    depths.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    purges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut orphans_warned: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = depths.tick() => {
                let current = live.load_full();
                refresh_depths(&queue, &current, &metrics, clock, &mut orphans_warned).await;
            }
            _ = purges.tick() => {
                let current = live.load_full();
                purge(&queue, &current, &metrics, clock, &shutdown).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Refreshes `hookgate_queue_events` and `hookgate_queue_oldest_event_age_seconds` (every
/// state but `delivered`, whose count would cost a scan of the retained events). Warns,
/// once a minute, of pending events whose route is no longer queued in the configuration.
async fn refresh_depths(
    queue: &Queue,
    live: &Live,
    metrics: &Metrics,
    clock: Clock,
    orphans_warned: &mut Option<Instant>,
) {
    let depths = match queue.store.depths().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "queue store: cannot read queue depths");
            metrics.queue.store_error(crate::metrics::StoreOp::Depths);
            return;
        }
    };
    let q = &metrics.queue;
    // A queued route's states that emptied read zero rather than keep their last value.
    // `delivered` is not counted, so it gets no series (a constant 0 would read as "none").
    use crate::delivery::event::State;
    for route in live.gateway.routes.routes() {
        if let Delivery::Queued(_) = route.delivery {
            for state in State::ALL.into_iter().filter(|s| *s != State::Delivered) {
                let labels = [route.name.as_str(), state.as_str()];
                q.events.with_label_values(&labels).set(0);
                q.oldest_age.with_label_values(&labels).set(0.0);
            }
        }
    }
    let now_ms = unix_ms(clock());
    let warn_orphans = orphans_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
    for d in depths {
        let pending = d.state != State::Dead;
        if warn_orphans && pending && queued_route(live, &d.route).is_none() {
            *orphans_warned = Some(Instant::now());
            tracing::warn!(
                route = d.route.as_str(),
                events = d.count,
                "events wait in the queue store for a route that is not queued in this \
                 configuration; they are not delivered until it is again"
            );
        }
        let labels = [d.route.as_str(), d.state.as_str()];
        q.events
            .with_label_values(&labels)
            .set(i64::try_from(d.count).unwrap_or(i64::MAX));
        q.oldest_age
            .with_label_values(&labels)
            .set(now_ms.saturating_sub(d.oldest_received_ms).max(0) as f64 / 1000.0);
    }
}

/// Deletes finished events past their retention, in batches (each one store operation)
/// until a batch comes back short: a minute's purge keeps up with any delivery rate.
async fn purge(
    queue: &Queue,
    live: &Live,
    metrics: &Metrics,
    clock: Clock,
    shutdown: &watch::Receiver<bool>,
) {
    let Some(config) = &live.gateway.queue_store else {
        return;
    };
    let retention = config.retention();
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let mut total = 0;
    loop {
        let now_ms = unix_ms(clock());
        let purged = queue
            .store
            .purge(
                now_ms - ms(retention.delivered),
                now_ms - ms(retention.dead),
                now_ms,
            )
            .await;
        match purged {
            Ok(n) => {
                total += n;
                if n < crate::delivery::store::PURGE_BATCH || *shutdown.borrow() {
                    break;
                }
                // Room for the requests between two batches.
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "queue store: cannot purge");
                metrics.queue.store_error(crate::metrics::StoreOp::Purge);
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(
            events = total,
            "purged finished events past their retention"
        );
    }
}
