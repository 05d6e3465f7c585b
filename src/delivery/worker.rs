//! The delivery worker: one task per process that leases due events from the queue store,
//! sends each to its route's upstream with the same forward code as sync mode, and settles
//! it as delivered, to be retried, or dead.
//!
//! - **Per route, bounded by slots, not by the backlog.** At most `queue.concurrency`
//!   deliveries of a route are at its app at once (its delivery slots), and this process
//!   holds at most twice as many of its events leased (its `Gate`): the next events are at
//!   hand when an answer comes, and the rest of a backlog stays `queued` in the store, not in
//!   memory. A lease is given back to the gate only once its attempt is settled.
//! - **An attempt counts when it is made.** Events leased while the route has free delivery
//!   slots are leased with their attempt counted, each with its slot, and sent at once;
//!   the rest wait for a slot, leased, and the store counts each one's attempt (`start`,
//!   durable) just before it is sent. `Hookgate-Attempt` carries that count. A lease alone
//!   is never an attempt.
//! - **Leases do not run out in a healthy process.** The worker renews every lease it holds
//!   every `RENEW_EVERY`, and an attempt's start renews its own, so a lease runs out only if
//!   this process died or stalled (counted in `hookgate_queue_leases_lost_total`).
//! - **A 2xx wins.** A settle that fails (the store is unreachable) is tried again, with the
//!   lease kept alive, until it is recorded or the process stops; the store records a 2xx
//!   whatever raced with it.
//! - **Paced when the app is down.** When an attempt gets no answer (refused, reset,
//!   timeout) or a 429/502/503/504, the route pauses, then sends one probe at a time until
//!   an attempt gets through: no hot loop of refused connections while the app is
//!   deploying. What to do is decided in `pacing.rs`, as pure functions; this acts on it.
//! - **Handed over, woken, polling.** An event the pipeline stored with its first attempt
//!   started (a slot was free) arrives in memory with its slot, body and parsed headers; for
//!   one stored `queued`, the pipeline wakes the worker, which leases it. The worker also
//!   polls once a second for events that became due (retries, expired leases, other
//!   replicas' events on a shared store).
//! - On shutdown it leases nothing more and waits for its attempts in flight, up to
//!   `limits.shutdown_grace`, then gives back the leases it still holds, so another worker
//!   (or the next start) takes those events at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use crate::body::RawBody;
use crate::delivery::breaker::{Breaker, Health, Transition};
use crate::delivery::event::{Event, Unreadable};
use crate::delivery::pacing::{AppState, Step};
use crate::delivery::retry::{self, Attempt, Verdict};
use crate::delivery::store::Settle;
use crate::delivery::{
    queued_destination, Gate, Pacing, Queue, UnixMs, ATTEMPT_HEADER, IDEMPOTENCY_KEY, RENEW_EVERY,
    REPLAY_HEADER,
};
use crate::forward::{self, Outgoing};
use crate::metrics::{Metrics, StoreOp};
use crate::model::{Delivery, Destination, Route};
use crate::runtime::Clock;
use crate::runtime::{ConfigSlot, InForce};

/// How often due events are looked for when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(1);
/// How often the depth and age gauges are refreshed.
const DEPTHS_EVERY: Duration = Duration::from_secs(5);
/// How often finished events past their retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// The longest wait between two tries of a settle the store did not take.
const SETTLE_RETRY_MAX: Duration = Duration::from_secs(5);

/// A destination's delivery state in this worker (of a route: its one, or each of its
/// `destinations:`).
struct RouteState {
    /// Events this process holds leased, against the most it may, and the destination's
    /// delivery slots; shared with the pipeline, which stores an event with its first
    /// attempt started when both have room.
    gate: Arc<Gate>,
    /// Whether its app looks down, from its attempts.
    app: AppState,
    /// No lease for this route before this.
    paused_until: Option<Instant>,
    /// Its circuit breaker, if it has one.
    breaker: Option<Breaker>,
    /// Until when the app's last `Retry-After` holds the route back.
    retry_after_until: Option<Instant>,
}

/// Each destination's state, by route and destination name (looked up without allocating).
type States = HashMap<String, HashMap<String, RouteState>>;

/// How an attempt went, for pacing.
struct Done {
    route: String,
    destination: String,
    /// `None`: no attempt was made (the lease was lost, or the store could not count it).
    app_down: Option<bool>,
    /// The app's `Retry-After`, when it said one.
    retry_after: Option<Duration>,
    /// What the attempt said of the app's health, for its breaker.
    health: Option<Health>,
}

/// The leases this worker holds, by event id and destination (an event's deliveries to two
/// destinations are two leases; one lease call gives one token to all the rows it takes),
/// with each one's token; renewed together.
type Held = Mutex<HashMap<(String, String), String>>;

/// Runs the worker until `shutdown` turns true. `live` is the worker's own view of the
/// configuration (its upstream pools live on this runtime); reloads swap it.
pub async fn run(
    queue: Arc<Queue>,
    live: Arc<ConfigSlot>,
    metrics: Arc<Metrics>,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut routes: States = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut attempts = Attempts {
        running: tokio::task::JoinSet::new(),
        held: Arc::default(),
        queue: queue.clone(),
        metrics: metrics.clone(),
        clock,
        done_tx,
    };
    let Some(mut handoff) = queue.take_handoff() else {
        tracing::error!("delivery worker started twice; this one stops");
        return;
    };
    let mut renewals = tokio::time::interval(RENEW_EVERY);
    renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pauses_read: Option<Instant> = None;
    loop {
        // Finished attempts are reaped here, all of them: one per wake-up would fall behind
        // thousands of deliveries a second, and each would stay allocated.
        while attempts.running.try_join_next().is_some() {}
        let current = live.load_full();
        if pauses_read.is_none_or(|at| at.elapsed() >= POLL) {
            read_pauses(&queue, &mut routes, &current, &metrics).await;
            pauses_read = Some(Instant::now());
        }
        let wake_at = lease_due(&mut routes, &current, &mut attempts).await;
        for (route, destinations) in &routes {
            for (destination, state) in destinations {
                let leased = i64::try_from(state.gate.outstanding()).unwrap_or(i64::MAX);
                let labels = [route.as_str(), destination.as_str()];
                metrics.queue.leased.with_label_values(&labels).set(leased);
            }
        }
        tokio::select! {
            _ = queue.wake.notified() => {}
            Some(first) = handoff.recv() => {
                // Stored with its first attempt started: its lease and slot were taken by
                // the pipeline.
                let mut handed = vec![first];
                while let Ok(more) = handoff.try_recv() {
                    handed.push(more);
                }
                for h in handed {
                    attempts.take_handoff(&mut routes, &current, h);
                }
            }
            Some(done) = done_rx.recv() => {
                pace(&mut routes, done, &current, &metrics, clock);
                // Take every other finished attempt too before leasing again.
                while let Ok(done) = done_rx.try_recv() {
                    pace(&mut routes, done, &current, &metrics, clock);
                }
            }
            _ = renewals.tick() => renew(&queue, &current, &attempts.held, &metrics, clock).await,
            _ = tokio::time::sleep_until(wake_at.into()) => {}
            _ = shutdown.changed() => break,
        }
    }
    let current = live.load_full();
    finish_in_flight(&mut routes, &current, &mut attempts, &mut handoff).await;
    drop(handoff);
    give_back_held(&queue, &attempts.held, &metrics).await;
}

/// The worker's attempts in flight, and what starting one needs.
struct Attempts {
    running: tokio::task::JoinSet<()>,
    held: Arc<Held>,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// Each attempt reports here how it went, for pacing.
    done_tx: mpsc::UnboundedSender<Done>,
}

impl Attempts {
    /// One attempt at `event`, leased to this worker; `slot` if it holds one already, in
    /// which case its attempt was counted when it was stored or leased.
    fn spawn(
        &mut self,
        live: &Arc<InForce>,
        (route, destination): (&Arc<Route>, usize),
        gate: &Arc<Gate>,
        event: Event,
        slot: Option<OwnedSemaphorePermit>,
    ) {
        if let Some(lease) = &event.lease {
            self.held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((event.id.clone(), event.destination.clone()), lease.clone());
        }
        let job = Attempting {
            queue: self.queue.clone(),
            live: live.clone(),
            route: route.clone(),
            destination,
            gate: gate.clone(),
            held: self.held.clone(),
            metrics: self.metrics.clone(),
            clock: self.clock,
        };
        let done_tx = self.done_tx.clone();
        self.running
            .spawn(async move { job.deliver(event, slot, &done_tx).await });
    }

    /// Starts the attempt of an event handed over by the pipeline (see [`take_handoff`]).
    fn take_handoff(
        &mut self,
        routes: &mut States,
        current: &Arc<InForce>,
        h: crate::delivery::Handoff,
    ) {
        let queue = self.queue.clone();
        take_handoff(routes, current, &queue, h, |target, gate, event, slot| {
            self.spawn(current, target, gate, event, Some(slot));
        });
    }
}

/// Leases, for every destination of every queued route, not paused, as many due events as
/// its gate has room for, and starts their attempts. Returns when the loop is to look again
/// at the latest.
async fn lease_due(
    routes: &mut States,
    current: &Arc<InForce>,
    attempts: &mut Attempts,
) -> Instant {
    let mut wake_at = Instant::now() + POLL;
    for route in current.gateway.routes.routes() {
        let Delivery::Queued(policy) = &route.delivery else {
            continue;
        };
        for index in 0..policy.destinations.len() {
            if let Some(wake) = lease_destination(routes, current, (route, index), attempts).await {
                wake_at = wake_at.min(wake);
            }
        }
    }
    wake_at
}

/// [`lease_due`] for one destination of a queued route: when to look again, if sooner
/// than the next poll.
async fn lease_destination(
    routes: &mut States,
    current: &Arc<InForce>,
    (route, index): (&Arc<Route>, usize),
    attempts: &mut Attempts,
) -> Option<Instant> {
    let (queue, metrics, clock) = (
        attempts.queue.clone(),
        attempts.metrics.clone(),
        attempts.clock,
    );
    let dest = destination_of(route, index)?;
    let now = Instant::now();
    let state = route_state(routes, route, &dest.name, &queue);
    let (limit, mut wake_at) = lease_limit(state, route, dest, &metrics, clock);
    state.gate.set_limit(limit);
    if state.gate.operator_pause().is_some() {
        // Paused while the limit was worked out: the pause's limit stands.
        state.gate.set_limit(0);
        return wake_at;
    }
    let room = if limit == 0 {
        0
    } else {
        state.gate.take(usize::MAX)
    };
    if room == 0 {
        return wake_at;
    }
    // Each event leased is an attempt started soon: one token of the rate limit each.
    let allowed = state.gate.take_tokens(room);
    state.gate.release(room - allowed);
    if allowed == 0 {
        return Some(now + state.gate.token_wait());
    }
    let leased = lease(
        &queue,
        current,
        (route, dest),
        &state.gate,
        allowed,
        &metrics,
        clock,
    )
    .await;
    if let Some(b) = state.breaker.as_mut() {
        b.probing(u32::try_from(leased.len()).unwrap_or(u32::MAX));
    }
    state.gate.release(allowed - leased.len());
    // Tokens go with attempts as they start: those of events found missing, and of
    // events that wait for a slot (each takes one when it gets its slot), go back.
    let waiting = leased.iter().filter(|(_, slot)| slot.is_none()).count();
    state
        .gate
        .give_back_tokens(allowed - leased.len() + waiting);
    let sooner = |at: Option<Instant>, w: Instant| Some(at.map_or(w, |at| at.min(w)));
    if allowed < room && leased.len() == allowed {
        // Short of tokens, not of events: come back when the next token is there.
        let next_token = now + state.gate.token_wait().max(Duration::from_millis(1));
        wake_at = sooner(wake_at, next_token);
    }
    if !leased.is_empty() {
        // Their settles wake the loop, which leases again.
    } else if let Ok(Some(due_ms)) = queue.store.next_due((&route.name, &dest.name)).await {
        wake_at = sooner(wake_at, now + due_ms.since(UnixMs::from(clock())));
    }
    let gate = state.gate.clone();
    for (event, slot) in leased {
        attempts.spawn(current, (route, index), &gate, event, slot);
    }
    wake_at
}

/// The route's destination at `index`, if it is queued and has one.
fn destination_of(route: &Route, index: usize) -> Option<&Destination> {
    match &route.delivery {
        Delivery::Queued(policy) => policy.destinations.get(index),
        Delivery::Sync => None,
    }
}

/// Reads the operators' pauses from the store (every replica's, on a shared one) into each
/// queued route's gate, and `hookgate_queue_paused`. A store that cannot be read keeps the
/// pauses as they were.
async fn read_pauses(queue: &Queue, routes: &mut States, current: &InForce, metrics: &Metrics) {
    let epoch = queue.pause_epoch();
    let pauses = match queue.store.pauses().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "queue store: cannot read the pauses; keeping them as they were");
            metrics.queue.store_error(StoreOp::Pauses);
            return;
        }
    };
    for route in current.gateway.routes.routes() {
        if let Delivery::Queued(policy) = &route.delivery {
            for d in &policy.destinations {
                route_state(routes, route, &d.name, queue);
            }
        }
    }
    // A pause or resume made here while the store was read is newer than what was read.
    queue.apply_pauses(&pauses, epoch);
    for (route, destinations) in routes.iter() {
        for (destination, state) in destinations {
            let paused = state.gate.operator_pause().is_some();
            metrics
                .queue
                .paused
                .with_label_values(&[route, destination])
                .set(i64::from(paused));
        }
    }
}

/// On shutdown: waits for the attempts in flight, and for those of events still handed
/// over, up to `limits.shutdown_grace`; past it, cuts them off.
async fn finish_in_flight(
    routes: &mut States,
    current: &Arc<InForce>,
    attempts: &mut Attempts,
    handoff: &mut mpsc::UnboundedReceiver<crate::delivery::Handoff>,
) {
    let queue = attempts.queue.clone();
    let grace = current.gateway.limits.shutdown_grace;
    if !attempts.running.is_empty() {
        tracing::info!(
            in_flight = attempts.running.len(),
            "delivery stopping: waiting for attempts in flight"
        );
    }
    // Requests still draining store their events `queued` from now on. Those that took a
    // slot before were stored with their attempt started: they are handed over and sent
    // too, within the same grace, until every gate is idle.
    queue.close_gates();
    let waited = tokio::time::timeout(grace, async {
        while !(attempts.running.is_empty() && queue.gates_idle()) {
            tokio::select! {
                Some(_) = attempts.running.join_next(), if !attempts.running.is_empty() => {}
                Some(h) = handoff.recv() => attempts.take_handoff(routes, current, h),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    if waited.is_err() {
        // Their leases are given back below; the events are delivered again.
        tracing::warn!(
            cut_off = attempts.running.len(),
            "delivery attempts still running when shutdown_grace ran out"
        );
        attempts.running.abort_all();
        while attempts.running.join_next().await.is_some() {}
    }
}

/// Gives back the leases this worker still holds, so another worker (or the next start)
/// takes those events at once.
async fn give_back_held(queue: &Queue, held: &Held, metrics: &Metrics) {
    let still_held: Vec<(String, String)> = held
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .map(|((id, _), lease)| (id, lease))
        .collect();
    if !still_held.is_empty() {
        match queue.store.release(still_held).await {
            Ok(n) => tracing::info!(events = n, "leases given back for the next start"),
            Err(e) => {
                // They run out instead.
                tracing::warn!(error = %e, "queue store: cannot give leases back; they run out");
                metrics.queue.store_error(StoreOp::Release);
            }
        }
    }
}

/// Leases up to `room` due events of `route` for `dest`. As many as the destination has
/// free delivery slots are leased with their attempt started, each with its slot, and go
/// out at once (one store operation each, not a lease and a start); the rest wait for a
/// slot, leased. The slots are taken before the lease, so an attempt is counted only with a
/// slot to send it.
async fn lease(
    queue: &Queue,
    live: &InForce,
    (route, dest): (&Route, &Destination),
    gate: &Gate,
    room: usize,
    metrics: &Metrics,
    clock: Clock,
) -> Vec<(Event, Option<OwnedSemaphorePermit>)> {
    let slots = gate.slots();
    let mut permits: Vec<OwnedSemaphorePermit> =
        std::iter::from_fn(|| slots.clone().try_acquire_owned().ok())
            .take(room)
            .collect();
    let now_ms = UnixMs::from(clock());
    let until = now_ms.after(crate::delivery::lease_for(&live.gateway.limits, dest));
    let mut leased = Vec::new();
    for start in [true, false] {
        let want = if start {
            permits.len()
        } else {
            room - leased.len()
        };
        if want == 0 {
            continue;
        }
        match queue
            .store
            .lease((&route.name, &dest.name), want, now_ms, until, start)
            .await
        {
            Ok(events) => {
                let short = events.len() < want;
                for event in events {
                    leased.push((event, if start { permits.pop() } else { None }));
                }
                if short {
                    // Nothing more is due.
                    break;
                }
            }
            Err(e) => {
                tracing::error!(route = route.name.as_str(), destination = dest.name.as_str(), error = %e, "queue store: cannot lease events");
                metrics.queue.store_error(StoreOp::Lease);
                break;
            }
        }
    }
    leased
}

/// Starts the attempt of an event handed over by the pipeline, or, if a reload removed
/// its route or destination meanwhile, gives its lease back to the gate (the stored lease
/// runs out, and the event waits for a configuration that has them again).
fn take_handoff(
    routes: &mut States,
    current: &Arc<InForce>,
    queue: &Queue,
    h: crate::delivery::Handoff,
    mut start: impl FnMut((&Arc<Route>, usize), &Arc<Gate>, Event, OwnedSemaphorePermit),
) {
    let (route, destination) = (&h.event.route, &h.event.destination);
    let Some((route, index)) = queued_destination(&current.gateway, route, destination) else {
        queue.gate(route, destination).release(1);
        return;
    };
    let gate = route_state(routes, route, destination, queue).gate.clone();
    start((route, index), &gate, h.event, h.slot);
}

/// Keeps every lease this worker holds alive for another lease length.
async fn renew(queue: &Queue, live: &InForce, held: &Held, metrics: &Metrics, clock: Clock) {
    let leases: Vec<(String, String)> = held
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|((id, _), lease)| (id.clone(), lease.clone()))
        .collect();
    if leases.is_empty() {
        return;
    }
    // The longest lease any destination needs: a renewal is not per destination.
    let lease = live
        .gateway
        .routes
        .routes()
        .iter()
        .filter_map(|r| match &r.delivery {
            Delivery::Queued(p) => Some(&p.destinations),
            Delivery::Sync => None,
        })
        .flatten()
        .map(|d| crate::delivery::lease_for(&live.gateway.limits, d))
        .max()
        .unwrap_or(RENEW_EVERY * 3);
    let until = UnixMs::from(clock()).after(lease);
    if let Err(e) = queue.store.renew(leases, until).await {
        tracing::warn!(error = %e, "queue store: cannot renew leases; trying again");
        metrics.queue.store_error(StoreOp::Renew);
    }
}

/// The delivery state of `route`'s `destination`, made on first use (looked up by name
/// without allocating one: this runs for every event).
fn route_state<'a>(
    routes: &'a mut States,
    route: &Route,
    destination: &str,
    queue: &Queue,
) -> &'a mut RouteState {
    if !routes.contains_key(&route.name) {
        routes.insert(route.name.clone(), HashMap::new());
    }
    let of_route = routes
        .get_mut(&route.name)
        .expect("the route's states were inserted above");
    if !of_route.contains_key(destination) {
        let state = RouteState {
            gate: queue.gate(&route.name, destination),
            app: AppState::default(),
            paused_until: None,
            breaker: None,
            retry_after_until: None,
        };
        of_route.insert(destination.to_owned(), state);
    }
    of_route
        .get_mut(destination)
        .expect("the destination's state was inserted above")
}

/// How many of the route's events this process may hold leased now, and when to look again
/// if something holds it back: none while an operator has paused it, none while its app is
/// paced down (then one probe), and within its breaker's probes. Keeps the gate's
/// concurrency and rate limit in step with the policy.
fn lease_limit(
    state: &mut RouteState,
    route: &Route,
    dest: &Destination,
    metrics: &Metrics,
    clock: Clock,
) -> (usize, Option<Instant>) {
    let now = Instant::now();
    state.gate.set_concurrency(dest.pace.concurrency);
    state.gate.set_rate_limit(dest.pace.rate_limit);
    if state.gate.operator_pause().is_some() {
        // Paused by an operator: nothing leased; events wait, stored.
        return (0, None);
    }
    let paused = state.paused_until.filter(|until| *until > now);
    let mut limit = state
        .app
        .lease_limit(paused.is_some(), dest.pace.concurrency);
    let mut wake = paused;
    if let Some(probes) = breaker_allows(state, (route, dest), metrics, clock) {
        let reopens = state
            .breaker
            .as_ref()
            .and_then(|b| b.reopens_in(UnixMs::from(clock())));
        if let Some(reopens) = reopens {
            wake = Some(wake.map_or(now + reopens, |w| w.min(now + reopens)));
        }
        limit = limit.min(state.gate.outstanding() + probes as usize);
    }
    (limit, wake)
}

/// The route's breaker, kept in step with its policy (a reload may add, change or remove
/// it): how many attempts it lets start now (`None`: no limit of its own).
fn breaker_allows(
    state: &mut RouteState,
    (route, dest): (&Route, &Destination),
    metrics: &Metrics,
    clock: Clock,
) -> Option<u32> {
    let now_ms = UnixMs::from(clock());
    let policy = dest.pace.breaker;
    if state.breaker.as_ref().map(Breaker::policy) != policy {
        // A new, changed or removed breaker starts (or ends) closed, as operators see it.
        state.breaker = policy.map(|p| Breaker::new(p, now_ms));
        state
            .gate
            .set_breaker(crate::delivery::breaker::BreakerState::Closed, now_ms);
        metrics
            .queue
            .breaker_state
            .with_label_values(&[&route.name, &dest.name])
            .set(0);
    }
    let breaker = state.breaker.as_mut()?;
    let (allowed, change) = breaker.allowed(now_ms);
    if let Some(change) = change {
        let target = (route.name.as_str(), dest.name.as_str());
        breaker_changed(target, change, &state.gate, metrics, now_ms);
    }
    allowed
}

/// A breaker's change of state: logged once, counted, shown.
fn breaker_changed(
    (route, destination): (&str, &str),
    t: Transition,
    gate: &Gate,
    metrics: &Metrics,
    now: UnixMs,
) {
    use crate::delivery::breaker::BreakerState;
    match t.to {
        BreakerState::Open { until } => tracing::warn!(
            route,
            destination,
            failure_rate_percent = t.failure_rate,
            open_for_ms = until.since(now).as_millis() as u64,
            "circuit breaker open: the app fails too often; delivering nothing for a while"
        ),
        BreakerState::HalfOpen { .. } => {
            tracing::info!(
                route,
                destination,
                "circuit breaker half-open: probing the app"
            )
        }
        BreakerState::Closed => {
            tracing::info!(
                route,
                destination,
                "circuit breaker closed: the app answers again"
            )
        }
    }
    let q = &metrics.queue;
    q.breaker_state
        .with_label_values(&[route, destination])
        .set(t.to.gauge());
    q.breaker_transitions
        .with_label_values(&[route, destination, t.to.label()])
        .inc();
    gate.set_breaker(t.to, now);
}

/// Paces a route by how its last attempt went ([`AppState::after_attempt`] decides).
fn pace(routes: &mut States, done: Done, live: &InForce, metrics: &Metrics, clock: Clock) {
    let Some(state) = routes
        .get_mut(&done.route)
        .and_then(|r| r.get_mut(&done.destination))
    else {
        return;
    };
    let (route, destination) = (done.route.as_str(), done.destination.as_str());
    if let Some(breaker) = state.breaker.as_mut() {
        let now_ms = UnixMs::from(clock());
        match done.health {
            Some(health) => {
                if let Some(change) = breaker.record(health, now_ms) {
                    let target = (route, destination);
                    breaker_changed(target, change, &state.gate, metrics, now_ms);
                }
            }
            // No attempt was made: a probe it held is free again.
            None => breaker.probe_done(),
        }
    }
    let Some(app_down) = done.app_down else {
        return;
    };
    let retry = queued_destination(&live.gateway, route, destination)
        .and_then(|(r, i)| destination_of(r, i))
        .map(|d| &d.pace.retry);
    let now_ms = UnixMs::from(clock());
    let (app, step) = state.app.after_attempt(app_down, now_ms, retry);
    let step = crate::delivery::pacing::honour_retry_after(step, done.retry_after);
    if let (true, Step::Pause { pause, .. }) = (done.retry_after.is_some(), step) {
        let until = Instant::now() + pause;
        state.retry_after_until = Some(state.retry_after_until.map_or(until, |t| t.max(until)));
    }
    state.app = app;
    let held_back = metrics
        .queue
        .held_back
        .with_label_values(&[route, destination]);
    match step {
        Step::Steady => {}
        Step::Recovered => {
            tracing::info!(route, destination, "app answering again; delivery resumes");
            // An app's Retry-After still holds, whatever answered meanwhile.
            let hold = state.retry_after_until.filter(|t| *t > Instant::now());
            state.paused_until = hold;
            state.gate.set_pacing(Pacing {
                down_since_ms: None,
                next_probe_ms: hold.map(|t| {
                    now_ms
                        .after(t.saturating_duration_since(Instant::now()))
                        .as_i64()
                }),
            });
            held_back.set(0);
        }
        Step::Pause { pause, first } => {
            if first {
                tracing::warn!(
                    route,
                    destination,
                    "app not answering; pausing delivery, then probing one event at a time"
                );
            }
            state.paused_until = Some(Instant::now() + pause);
            state.gate.set_pacing(Pacing {
                down_since_ms: app.down_since.map(UnixMs::as_i64),
                next_probe_ms: Some(now_ms.after(pause).as_i64()),
            });
            held_back.set(1);
        }
    }
}

/// One leased event on its way to one destination.
struct Attempting {
    queue: Arc<Queue>,
    live: Arc<InForce>,
    /// The route as configured when the attempt started, and the index of the destination
    /// in it: its upstream, timeout and retry policy.
    route: Arc<Route>,
    destination: usize,
    gate: Arc<Gate>,
    held: Arc<Held>,
    metrics: Arc<Metrics>,
    clock: Clock,
}

impl Attempting {
    /// The destination it goes to.
    fn dest(&self) -> &Destination {
        destination_of(&self.route, self.destination)
            .expect("an attempt is made only for a destination of its route")
    }

    /// The route's and the destination's names, for labels and logs.
    fn names(&self) -> [&str; 2] {
        [self.route.name.as_str(), self.dest().name.as_str()]
    }

    /// Waits for a delivery slot (unless it holds one), has the store count the attempt
    /// (unless it was counted at ingest), sends the event, judges the answer and settles
    /// the event; then gives its lease back to the gate and reports on `done` how the app
    /// looked (for pacing).
    async fn deliver(
        &self,
        mut event: Event,
        slot: Option<OwnedSemaphorePermit>,
        done: &mpsc::UnboundedSender<Done>,
    ) {
        let tried = self.attempt(&mut event, slot).await;
        let (app_down, retry_after, health) = match tried {
            Some((down, after, health)) => (Some(down), after, Some(health)),
            None => (None, None, None),
        };
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            // Only this attempt's lease: after a stall, the same delivery may be held again
            // under a newer one.
            let key = (event.id.clone(), event.destination.clone());
            if held.get(&key) == event.lease.as_ref() {
                held.remove(&key);
            }
        }
        self.gate.release(1);
        let _ = done.send(Done {
            route: self.route.name.clone(),
            destination: self.dest().name.clone(),
            app_down,
            retry_after,
            health,
        });
    }

    /// Everything but the bookkeeping of [`Attempting::deliver`]; whether the app looked
    /// down and the `Retry-After` it said, or `None` if no attempt was made.
    async fn attempt(
        &self,
        event: &mut Event,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Option<(bool, Option<Duration>, Health)> {
        // An event that arrives with its slot had its attempt counted as it was stored or
        // leased.
        let started = slot.is_some();
        let slot = match slot {
            Some(s) => Some(s),
            // Closed only if a reload replaced the slots; then sending anyway is harmless.
            None => self.gate.slots().acquire_owned().await.ok(),
        };
        let outgoing = match self.request(event) {
            Ok(o) => o,
            Err(unreadable) => {
                self.dead_letter_unreadable(event, unreadable).await;
                return None;
            }
        };
        if !started {
            // Within the route's rate: a token as the attempt starts.
            self.wait_for_token().await;
        }
        let stopped = self.gate.operator_pause().is_some()
            || self.gate.breaker().0 == crate::delivery::breaker::Phase::Open;
        if !started && (self.held_back() || stopped) {
            self.gate.give_back_tokens(1);
            // The app went down, or an operator paused the route, while this event waited
            // for a slot: no attempt now. Its lease goes back; the route's probe (or the
            // resume) comes first.
            self.give_lease_back(event).await;
            return None;
        }
        if !started && !self.count_attempt(event).await {
            return None;
        }
        // Boxed: the exchange's future is most of an attempt's size, and a task's future is
        // copied whole when spawned and again when it completes.
        let (attempt, status, cause) = Box::pin(self.send(event, outgoing)).await;
        drop(slot);
        let (app_down, retry_after) = match attempt {
            Attempt::NoAnswer => (true, None),
            Attempt::Answered {
                status,
                retry_after,
            } => (
                matches!(status.as_u16(), 429 | 502 | 503 | 504),
                retry_after,
            ),
        };
        let now = (self.clock)();
        let settle = self.settlement(event, attempt, status, cause, now);
        self.log_settlement(event, &settle, status, now);
        let health = match &settle {
            Settle::Delivered { .. } => Health::Success,
            // The app refused that one event: nothing of its health.
            Settle::Dead {
                reason: retry::DeadReason::Refused,
                ..
            } => Health::Neutral,
            Settle::Retry { .. } | Settle::Dead { .. } => Health::Failure,
        };
        self.finish(event, settle, true).await;
        Some((app_down, retry_after, health))
    }

    /// A stored event that cannot be turned back into a request: dead at once.
    async fn dead_letter_unreadable(&self, event: &Event, unreadable: Unreadable) {
        let [route, destination] = self.names();
        tracing::error!(route, destination, event = event.id.as_str(), error = %unreadable, "stored event cannot be sent; dead letter");
        let settle = Settle::Dead {
            reason: retry::DeadReason::Unreadable,
            status: None,
            error: unreadable.to_string(),
        };
        self.finish(event, settle, false).await;
    }

    /// Gives `event`'s lease back to the store, with no attempt made.
    async fn give_lease_back(&self, event: &Event) {
        let [route, _] = self.names();
        let lease = (event.id.clone(), event.lease.clone().unwrap_or_default());
        if let Err(e) = self.queue.store.release(vec![lease]).await {
            tracing::warn!(route, event = event.id.as_str(), error = %e, "queue store: cannot give a lease back; it runs out");
            self.metrics.queue.store_error(StoreOp::Release);
        }
    }

    /// Has the store count the attempt before it is sent (an attempt that dies with this
    /// process still counts); whether it may be sent now.
    async fn count_attempt(&self, event: &mut Event) -> bool {
        let [route, _] = self.names();
        let until = UnixMs::from((self.clock)()).after(crate::delivery::lease_for(
            &self.live.gateway.limits,
            self.dest(),
        ));
        match self.queue.store.start(event, until).await {
            Ok(Some(attempts)) => {
                event.attempts = attempts;
                true
            }
            Ok(None) => {
                self.lease_lost(event, "could start");
                false
            }
            Err(e) => {
                // Not sent: an attempt that cannot be counted is not made. The lease is
                // renewed until it is given back or runs out; the event is tried again.
                tracing::error!(route, event = event.id.as_str(), error = %e, "queue store: cannot count the attempt; not sending it now");
                self.metrics.queue.store_error(StoreOp::Start);
                false
            }
        }
    }

    /// How the attempt settles `event`, by the route's retry policy: delivered, retried
    /// later, or dead.
    fn settlement(
        &self,
        event: &Event,
        attempt: Attempt,
        status: Option<u16>,
        cause: Option<String>,
        now: std::time::SystemTime,
    ) -> Settle {
        let verdict = self.dest().pace.retry.judge(
            attempt,
            event.attempts.saturating_sub(event.budget_from),
            event.age_from_ms.as_i64(),
            UnixMs::from(now).as_i64(),
            jitter(),
        );
        // Written out only for an attempt that failed (most succeed).
        let failure = move || {
            cause.unwrap_or_else(|| match status {
                Some(s) => format!("app answered {s}"),
                None => "no answer".into(),
            })
        };
        match verdict {
            Verdict::Delivered => Settle::Delivered {
                status: status.unwrap_or(200),
            },
            Verdict::RetryAt(at_ms) => Settle::Retry {
                at_ms: UnixMs(at_ms),
                status,
                error: failure(),
            },
            Verdict::Dead(reason) => Settle::Dead {
                reason,
                status,
                error: failure(),
            },
        }
    }

    /// The log line of a settled attempt: info when delivered, a warning otherwise.
    fn log_settlement(
        &self,
        event: &Event,
        settle: &Settle,
        status: Option<u16>,
        now: std::time::SystemTime,
    ) {
        let [route, destination] = self.names();
        match settle {
            Settle::Delivered { .. } => tracing::info!(
                route,
                destination,
                event = event.id.as_str(),
                attempt = event.attempts,
                status = status.unwrap_or(0),
                "delivered"
            ),
            Settle::Retry { error, .. } | Settle::Dead { error, .. } => {
                let (reason, at) = match settle {
                    Settle::Retry { at_ms, .. } => ("", *at_ms),
                    Settle::Dead { reason, .. } => (reason.label(), UnixMs::EPOCH),
                    Settle::Delivered { .. } => ("", UnixMs::EPOCH),
                };
                tracing::warn!(
                    route,
                    destination,
                    event = event.id.as_str(),
                    attempt = event.attempts,
                    status = status.unwrap_or(0),
                    outcome = settle.outcome(),
                    reason,
                    error = error.as_str(),
                    retry_in_ms = at.since(UnixMs::from(now)).as_millis() as u64,
                    "delivery attempt failed"
                );
            }
        }
    }

    /// Waits for one token of the route's rate limit (at once without one).
    async fn wait_for_token(&self) {
        while self.gate.take_tokens(1) == 0 {
            let wait = self.gate.token_wait().max(Duration::from_millis(1));
            tokio::time::sleep(wait).await;
        }
    }

    /// Whether the route is pausing because its app looks down.
    fn held_back(&self) -> bool {
        self.gate
            .pacing()
            .next_probe_ms
            .is_some_and(|at| at > UnixMs::from((self.clock)()).as_i64())
    }

    /// Settles the event, trying again while the store does not take it (the lease is
    /// renewed meanwhile), and counts the attempt (`made`) and a new dead letter.
    async fn finish(&self, event: &Event, settle: Settle, made: bool) {
        let [route, destination] = self.names();
        let q = &self.metrics.queue;
        let mut wait = Duration::from_millis(100);
        let changed = loop {
            match self
                .queue
                .store
                .settle(event, settle.clone(), UnixMs::from((self.clock)()))
                .await
            {
                Ok(changed) => break changed,
                Err(e) => {
                    tracing::error!(route, event = event.id.as_str(), error = %e, retry_in_ms = wait.as_millis() as u64, "queue store: cannot settle; trying again");
                    q.store_error(StoreOp::Settle);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(SETTLE_RETRY_MAX);
                }
            }
        };
        if made {
            // Counted once the store says so, so the metrics never run ahead of the queue
            // API.
            q.attempts
                .with_label_values(&[route, destination, settle.outcome()])
                .inc();
        }
        match (&settle, changed) {
            (Settle::Dead { reason, .. }, true) => {
                q.dead_letters
                    .with_label_values(&[route, destination, reason.label()])
                    .inc();
            }
            (_, true) => {}
            // Already delivered (another attempt's 2xx, after this one's lease ran out) or
            // dropped by an operator.
            (Settle::Delivered { .. }, false) => tracing::info!(
                route,
                destination,
                event = event.id.as_str(),
                "delivered again; the event was already settled as delivered or dropped"
            ),
            (_, false) => self.lease_lost(event, "was settled"),
        }
    }

    /// Counts and logs a lease that ran out before its attempt `what` (could start, was
    /// settled): this process stalled, or the store was out of reach, for longer than a
    /// lease.
    fn lease_lost(&self, event: &Event, what: &str) {
        let [route, destination] = self.names();
        self.metrics
            .queue
            .leases_lost
            .with_label_values(&[route, destination])
            .inc();
        tracing::warn!(
            route,
            destination,
            event = event.id.as_str(),
            "lease ran out before the attempt {what}; another worker has the event"
        );
    }

    /// The stored request, with `Idempotency-Key` (and `Hookgate-Replay` when an operator
    /// replayed it), as it will be sent.
    fn request(&self, event: &mut Event) -> Result<(Outgoing, RawBody), Unreadable> {
        let (method, target, mut headers) = event.request_head()?;
        let key = HeaderValue::from_str(&event.idempotency_key)
            .map_err(|_| Unreadable::new("bad idempotency key"))?;
        headers.insert(IDEMPOTENCY_KEY, key);
        if event.replays > 0 {
            headers.insert(REPLAY_HEADER, HeaderValue::from(event.replays));
        }
        let body = RawBody::from(
            event
                .body
                .clone()
                .ok_or_else(|| Unreadable::new("stored request missing"))?,
        );
        let outgoing = Outgoing {
            method,
            target,
            headers,
        };
        Ok((outgoing, body))
    }

    /// One attempt, numbered `Hookgate-Attempt`, sent as sync mode sends. Returns how it
    /// went, the status if any, and the failure's cause.
    async fn send(
        &self,
        event: &Event,
        (mut outgoing, body): (Outgoing, RawBody),
    ) -> (Attempt, Option<u16>, Option<String>) {
        outgoing
            .headers
            .insert(ATTEMPT_HEADER, HeaderValue::from(event.attempts));
        let dest = self.dest();
        let exchange = forward::send(
            &self.live.upstreams,
            (&dest.upstream, dest.upstream_timeout),
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
        (attempt, status.map(|s| s.as_u16()), exchange.call.cause)
    }
}

/// A draw in `[0, 1)` for retry jitter; not for anything secret.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(UnixMs::from(std::time::SystemTime::now()).as_i64() as u64);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The store's housekeeping, in a task of its own so that a slow query never holds up
/// delivery: the depth and age gauges every few seconds, and the purge of finished events
/// past their retention every minute. Runs until `shutdown` turns true.
pub async fn maintain(
    queue: Arc<Queue>,
    live: Arc<ConfigSlot>,
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
    live: &InForce,
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
        if let Delivery::Queued(policy) = &route.delivery {
            for d in &policy.destinations {
                for state in [
                    State::Queued,
                    State::Delivering,
                    State::Retrying,
                    State::Dead,
                ] {
                    let labels = [route.name.as_str(), d.name.as_str(), state.as_str()];
                    q.events.with_label_values(&labels).set(0);
                    q.oldest_age.with_label_values(&labels).set(0.0);
                }
            }
        }
    }
    let now_ms = UnixMs::from(clock());
    let warn_orphans = orphans_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
    for d in depths {
        let pending = d.state != State::Dead;
        let known = queued_destination(&live.gateway, &d.route, &d.destination).is_some();
        if warn_orphans && pending && !known {
            *orphans_warned = Some(Instant::now());
            tracing::warn!(
                route = d.route.as_str(),
                destination = d.destination.as_str(),
                events = d.count,
                "events wait in the queue store for a route or destination that is not queued \
                 in this configuration; they are not delivered until it is again"
            );
        }
        let labels = [d.route.as_str(), d.destination.as_str(), d.state.as_str()];
        q.events
            .with_label_values(&labels)
            .set(i64::try_from(d.count).unwrap_or(i64::MAX));
        q.oldest_age
            .with_label_values(&labels)
            .set(now_ms.since(d.oldest_received_ms).as_millis() as f64 / 1000.0);
    }
}

/// Deletes finished events past their retention, in batches (each one store operation)
/// until a batch comes back short: a minute's purge keeps up with any delivery rate.
async fn purge(
    queue: &Queue,
    live: &InForce,
    metrics: &Metrics,
    clock: Clock,
    shutdown: &watch::Receiver<bool>,
) {
    let Some(config) = &live.gateway.queue_store else {
        return;
    };
    let retention = config.retention();
    let mut total = 0;
    loop {
        let now_ms = UnixMs::from(clock());
        let purged = queue
            .store
            .purge(
                now_ms.before(retention.delivered),
                now_ms.before(retention.dead),
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
