//! Queued delivery: the pipeline's "store and answer" stage and the worker that delivers
//! what was stored.
//!
//! A route with `delivery: queued` does not wait for its app. Once a request has passed every
//! check, the gateway stores what it would have forwarded (method, path and query, headers
//! after hop-by-hop hygiene and `X-Forwarded-*`, the exact body bytes) durably, and only then
//! answers the sender with a 2xx. The delivery worker ([`worker`]) later sends each stored
//! event to the route's upstream with the same forward code as sync mode, adding
//! `Idempotency-Key` and `Hookgate-Attempt`, and retries with backoff ([`retry`]) until the
//! app answers 2xx, the answer is final, or the event is too old: then it is a dead letter,
//! kept for an operator to retry or drop.
//!
//! - `store.rs`: the store interface the stage, the worker and the admin API use, and its
//!   two engines: `embedded.rs` (SQLite in one directory, one writer thread, group commit)
//!   and `postgres.rs` (one database shared by replicas, leases with
//!   `FOR UPDATE SKIP LOCKED`).
//! - `state.rs`: the store's shared vocabulary (states, settles, errors), below both engines.
//!   `sql.rs`: the SQL both engines share; `time.rs`: `UnixMs`, the store's times.
//! - `retry.rs`: what an attempt's result means for the event (pure, clock passed in).
//! - `worker.rs`: leases due events, delivers them, settles them; paces a route whose app is
//!   down (`pacing.rs`), within its rate limit (`rate.rs`), and not while an operator has
//!   paused it.
//! - `event.rs`: a stored request and its encoding at rest.
//! - `api.rs`: the queue on the admin listener (list, show, retry, drop) and the client
//!   `hookgate queue` uses.

pub mod api;
pub mod breaker;
pub mod embedded;
pub mod event;
pub mod pacing;
pub mod postgres;
pub mod rate;
pub mod replays;
pub mod retry;
pub mod sql;
pub mod state;
pub mod store;
pub mod table;
pub mod time;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use crate::model::{Delivery, QueuePolicy};

pub use event::{Event, NewEvent};
pub use store::{QueueStore, QueueStoreError};
pub use time::UnixMs;

/// Where the queue is, once one is open: at start when `queue_store:` is configured, or at
/// the first reload that configures one. A process opens at most one (another store needs a
/// restart: its undelivered events stay where they are), so requests, the worker and the
/// admin API read it without a lock.
pub type QueueSlot = std::sync::OnceLock<Arc<Queue>>;

/// The store and what wakes the worker, shared by every request and the worker.
pub struct Queue {
    pub store: QueueStore,
    /// Notified when an event is stored or made due by an operator: the worker leases at
    /// once instead of at its next poll.
    pub wake: tokio::sync::Notify,
    /// Per route and destination: how many of its events this process holds leased, how
    /// many it may, and its delivery slots.
    gates: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<Gate>>>,
    /// Events stored with their first attempt started, handed to the worker in memory with
    /// the delivery slot they hold: no lease round trip, no reading the body back (see
    /// [`Queue::handoff`]). Unbounded, but never longer than the gates let events in.
    handoff: tokio::sync::mpsc::UnboundedSender<Handoff>,
    handoff_rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Handoff>>>,
    /// Moved by every pause or resume made here (see [`Queue::pauses_changed`]).
    pause_epoch: std::sync::atomic::AtomicU64,
    /// The pauses last applied to the gates: a gate made later (a destination a reload
    /// added) starts paused as they say, not open until the worker's next read.
    pauses: std::sync::Mutex<Vec<crate::delivery::store::Paused>>,
}

/// An event the pipeline stored with its first attempt started, on its way to the worker.
pub struct Handoff {
    pub event: Event,
    /// One of the route's delivery slots, taken before the event was stored: the attempt
    /// goes out as soon as the worker has it.
    pub slot: tokio::sync::OwnedSemaphorePermit,
}

impl Queue {
    pub fn new(store: QueueStore) -> Queue {
        let (handoff, rx) = tokio::sync::mpsc::unbounded_channel();
        Queue {
            store,
            wake: tokio::sync::Notify::new(),
            gates: Default::default(),
            handoff,
            handoff_rx: std::sync::Mutex::new(Some(rx)),
            pause_epoch: Default::default(),
            pauses: Default::default(),
        }
    }

    /// The lease accounting of `route`'s `destination` in this process.
    pub fn gate(&self, route: &str, destination: &str) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        let key = (route.to_owned(), destination.to_owned());
        if let Some(gate) = gates.get(&key) {
            return gate.clone();
        }
        let gate = Arc::new(Gate::default());
        let pauses = self.pauses.lock().unwrap_or_else(|p| p.into_inner());
        gate.set_operator_pause(paused_since(&pauses, route, destination));
        gates.insert(key, gate.clone());
        gate
    }

    /// For an event about to be stored: one lease of the gate of `route`'s `destination`
    /// and one of its delivery slots, if both are free now, so that its first attempt can
    /// start as soon as it is on disk. Both go back when the [`Reserved`] is dropped without
    /// being handed over.
    pub fn reserve(&self, route: &str, destination: &str) -> Option<Reserved> {
        let gate = self.gate(route, destination);
        // Paused, or a breaker open or probing: the worker alone decides what starts.
        if gate.operator_pause().is_some() || gate.breaker().0 != breaker::Phase::Closed {
            return None;
        }
        let lease = Gate::reserve(&gate)?;
        let slot = gate.slots().try_acquire_owned().ok()?;
        // The attempt starts now: within the route's rate, or the event is stored queued.
        if gate.take_tokens(1) == 0 {
            return None;
        }
        Some(Reserved {
            lease,
            slot: Some(slot),
        })
    }

    /// Hands an event stored with its first attempt started to the worker, which now
    /// accounts for its lease and slot.
    pub fn handoff(&self, event: Event, mut reserved: Reserved) {
        let Some(slot) = reserved.slot.take() else {
            return;
        };
        if self.handoff.send(Handoff { event, slot }).is_ok() {
            reserved.lease.gate = None;
        }
        // Otherwise the worker is gone (shutting down): the lease and the rate token go
        // back on drop, and the stored lease runs out (or the next start releases it).
    }

    /// An operator's pause or resume, in this process at once: `pauses` are the store's
    /// right after it (the store holds them, and the worker reads them back every second).
    /// Moves the pause epoch, so that a read of the store made before it is not applied
    /// after it.
    pub fn pauses_changed(&self, pauses: &[crate::delivery::store::Paused]) {
        // Under the gates' lock, as `apply_pauses` compares the epoch and applies: a read
        // made before this cannot be applied after it.
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        self.pause_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        apply(&gates, pauses);
        *self.pauses.lock().unwrap_or_else(|p| p.into_inner()) = pauses.to_vec();
    }

    /// The pause epoch: read before reading the store's pauses, and compared after.
    pub fn pause_epoch(&self) -> u64 {
        self.pause_epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Applies the store's pauses to this process's gates (see [`apply`]).
    /// `epoch` is [`Queue::pause_epoch`] as it was before the store was read: if a pause
    /// or resume was made here since, the read is older than it and is not applied.
    pub fn apply_pauses(&self, pauses: &[crate::delivery::store::Paused], epoch: u64) {
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        if self.pause_epoch() == epoch {
            apply(&gates, pauses);
            *self.pauses.lock().unwrap_or_else(|p| p.into_inner()) = pauses.to_vec();
        }
    }

    /// Lets no more events be stored with their attempt started (the worker is stopping):
    /// every route's gate admits nothing new.
    pub fn close_gates(&self) {
        for gate in self
            .gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            gate.set_limit(0);
        }
    }

    /// Whether no route has an event leased to this process: every reservation was handed
    /// over and settled, or given back.
    pub fn gates_idle(&self) -> bool {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .all(|g| g.outstanding() == 0)
    }

    /// The worker's end of the handoff; `None` after the first call.
    pub fn take_handoff(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Handoff>> {
        self.handoff_rx.lock().ok()?.take()
    }
}

/// Pauses each gate as `pauses` say: a destination is paused by a pause of its own or of
/// its whole route (destination [`crate::delivery::store::WHOLE_ROUTE`]), since the earlier.
fn apply(
    gates: &std::collections::HashMap<(String, String), Arc<Gate>>,
    pauses: &[crate::delivery::store::Paused],
) {
    for ((route, destination), gate) in gates {
        gate.set_operator_pause(paused_since(pauses, route, destination));
    }
}

/// Since when `route`'s `destination` is paused, by its own pause or its whole route's.
fn paused_since(
    pauses: &[crate::delivery::store::Paused],
    route: &str,
    destination: &str,
) -> Option<UnixMs> {
    use crate::delivery::store::WHOLE_ROUTE;
    pauses
        .iter()
        .filter(|p| {
            p.route == route && (p.destination == WHOLE_ROUTE || p.destination == destination)
        })
        .map(|p| p.since)
        .min()
}

/// A lease of a destination's gate, one of its delivery slots and one token of its rate
/// limit, taken for one event; all go back if it is dropped without being handed over (the
/// event was a duplicate, or the store did not take it).
pub struct Reserved {
    lease: GateSlot,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(gate) = &self.lease.gate {
            gate.give_back_tokens(1);
        }
    }
}

/// How many of a route's events this process holds leased (`outstanding`) against how many
/// it may (`limit`: twice the route's concurrency, 1 while its app is down, 0 while it is
/// paused), and its delivery slots. Shared by the pipeline, which may store an event with
/// its first attempt started, the worker, which leases the rest, and the admin API, which
/// shows the route's pacing.
#[derive(Debug)]
pub struct Gate {
    outstanding: std::sync::atomic::AtomicUsize,
    limit: std::sync::atomic::AtomicUsize,
    /// `queue.concurrency` permits: an attempt holds one while it talks to the app. A
    /// reload that changes the concurrency puts new ones in place; attempts holding the
    /// old ones finish as they are.
    slots: std::sync::Mutex<(usize, Arc<tokio::sync::Semaphore>)>,
    /// Unix ms since when the route's app looks down (0: it answers).
    down_since_ms: std::sync::atomic::AtomicI64,
    /// Unix ms before which no event of the route is tried (the pause while its app is
    /// down; 0: none).
    paused_until_ms: std::sync::atomic::AtomicI64,
    /// Unix ms since when an operator has paused the route (0: not paused), as the store
    /// holds it: nothing is leased or started while it is.
    operator_paused_ms: std::sync::atomic::AtomicI64,
    /// The route's circuit breaker as operators see it: its state's gauge value (0 closed,
    /// 1 open, 2 half-open) and since when (Unix ms).
    breaker: std::sync::atomic::AtomicI64,
    breaker_since_ms: std::sync::atomic::AtomicI64,
    /// The route's `queue.rate_limit` (`None`: none), on a monotonic clock from `origin`.
    bucket: std::sync::Mutex<Option<rate::Bucket>>,
    origin: std::time::Instant,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            outstanding: Default::default(),
            limit: Default::default(),
            // No slots until the worker sets the route's concurrency.
            slots: std::sync::Mutex::new((0, Arc::new(tokio::sync::Semaphore::new(0)))),
            down_since_ms: Default::default(),
            paused_until_ms: Default::default(),
            operator_paused_ms: Default::default(),
            breaker: Default::default(),
            breaker_since_ms: Default::default(),
            bucket: Default::default(),
            origin: std::time::Instant::now(),
        }
    }
}

/// Whether a route's delivery is held back, as the admin API shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pacing {
    /// Since when its app looks down (Unix ms); `None` while it answers.
    pub down_since_ms: Option<i64>,
    /// When the next probe may go (Unix ms), while it is down.
    pub next_probe_ms: Option<i64>,
}

impl Gate {
    /// Takes up to `n` leases; returns how many.
    pub fn take(&self, n: usize) -> usize {
        use std::sync::atomic::Ordering::SeqCst;
        let mut current = self.outstanding.load(SeqCst);
        loop {
            let room = self.limit.load(SeqCst).saturating_sub(current).min(n);
            if room == 0 {
                return 0;
            }
            match self
                .outstanding
                .compare_exchange(current, current + room, SeqCst, SeqCst)
            {
                Ok(_) => return room,
                Err(now) => current = now,
            }
        }
    }

    /// One lease, if there is room, given back when the [`GateSlot`] is dropped.
    pub fn reserve(gate: &Arc<Gate>) -> Option<GateSlot> {
        // Built only when a lease was taken: a `GateSlot` gives its lease back when dropped,
        // so one made for a refused reservation (`then_some` builds its value first) would
        // give back a lease it never had, and the gate would let ever more events in.
        (gate.take(1) == 1).then(|| GateSlot {
            gate: Some(gate.clone()),
        })
    }

    pub fn release(&self, n: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        let _ = self
            .outstanding
            .fetch_update(SeqCst, SeqCst, |o| Some(o.saturating_sub(n)));
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, std::sync::atomic::Ordering::SeqCst);
    }

    /// Leases out now.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The route's delivery slots.
    pub fn slots(&self) -> Arc<tokio::sync::Semaphore> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Sets the number of delivery slots (the route's `queue.concurrency`).
    pub fn set_concurrency(&self, concurrency: usize) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.0 != concurrency {
            *slots = (
                concurrency,
                Arc::new(tokio::sync::Semaphore::new(concurrency)),
            );
        }
    }

    /// Records the route's pacing for operators (see [`Pacing`]).
    pub fn set_pacing(&self, pacing: Pacing) {
        use std::sync::atomic::Ordering::SeqCst;
        self.down_since_ms
            .store(pacing.down_since_ms.unwrap_or(0), SeqCst);
        self.paused_until_ms
            .store(pacing.next_probe_ms.unwrap_or(0), SeqCst);
    }

    /// The monotonic time the bucket reads (the wall clock can jump; the rate cannot).
    fn mono(&self) -> UnixMs {
        UnixMs(i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX))
    }

    fn lock_bucket(&self) -> std::sync::MutexGuard<'_, Option<rate::Bucket>> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the route's rate limit; a bucket whose limit is unchanged keeps its tokens.
    pub fn set_rate_limit(&self, limit: Option<crate::model::RateLimit>) {
        let mut bucket = self.lock_bucket();
        if bucket.map(|b| b.limit()) != limit {
            *bucket = limit.map(|l| rate::Bucket::new(l, self.mono()));
        }
    }

    /// Takes up to `n` attempts' tokens; `n` when the route has no rate limit.
    pub fn take_tokens(&self, n: usize) -> usize {
        let now = self.mono();
        self.lock_bucket().as_mut().map_or(n, |b| b.take(n, now))
    }

    /// Gives back tokens taken for attempts that were not started.
    pub fn give_back_tokens(&self, n: usize) {
        if n > 0 {
            if let Some(b) = self.lock_bucket().as_mut() {
                b.give_back(n);
            }
        }
    }

    /// How long until the rate limit allows the next attempt (zero without one).
    pub fn token_wait(&self) -> std::time::Duration {
        let now = self.mono();
        self.lock_bucket()
            .as_mut()
            .map_or(std::time::Duration::ZERO, |b| b.wait(now))
    }

    /// Records the breaker's state for operators.
    pub fn set_breaker(&self, state: breaker::BreakerState, since: UnixMs) {
        use std::sync::atomic::Ordering::SeqCst;
        self.breaker.store(state.gauge(), SeqCst);
        self.breaker_since_ms.store(since.as_i64(), SeqCst);
    }

    /// The breaker's phase and since when, as the API shows it (`None`: no breaker
    /// configured yet).
    pub fn breaker(&self) -> (breaker::Phase, Option<UnixMs>) {
        use std::sync::atomic::Ordering::SeqCst;
        let since = self.breaker_since_ms.load(SeqCst);
        let phase = breaker::Phase::from_gauge(self.breaker.load(SeqCst));
        (phase, (since != 0).then_some(UnixMs(since)))
    }

    /// Records an operator's pause (`Some(since)`) or its end. While paused, the gate
    /// admits nothing: the pipeline stores events without starting them.
    pub fn set_operator_pause(&self, since: Option<UnixMs>) {
        use std::sync::atomic::Ordering::SeqCst;
        self.operator_paused_ms
            .store(since.map_or(0, UnixMs::as_i64), SeqCst);
        if since.is_some() {
            self.set_limit(0);
        }
    }

    /// Since when an operator has paused the route, if it is paused.
    pub fn operator_pause(&self) -> Option<UnixMs> {
        let since = self
            .operator_paused_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        (since != 0).then_some(UnixMs(since))
    }

    pub fn pacing(&self) -> Pacing {
        use std::sync::atomic::Ordering::SeqCst;
        let some = |v: i64| (v != 0).then_some(v);
        Pacing {
            down_since_ms: some(self.down_since_ms.load(SeqCst)),
            next_probe_ms: some(self.paused_until_ms.load(SeqCst)),
        }
    }
}

/// One taken lease of a route's [`Gate`], given back on drop unless handed to the worker:
/// a request dropped mid-ingest (its sender hung up) must not keep a slot forever.
pub struct GateSlot {
    gate: Option<Arc<Gate>>,
}

impl Drop for GateSlot {
    fn drop(&mut self) {
        if let Some(g) = self.gate.take() {
            g.release(1);
        }
    }
}

/// How long a lease holds its event before another worker may take it: one attempt (the
/// connect and upstream timeouts) plus a margin for settling it. A worker renews the leases
/// it holds every [`RENEW_EVERY`] while their events wait for a slot or for the app, and an
/// attempt's start renews its lease, so in a healthy process no lease runs out: one that
/// does means its process died or stalled.
pub fn lease_for(limits: &crate::model::Limits, dest: &crate::model::Destination) -> Duration {
    (limits.upstream_connect_timeout + dest.upstream_timeout)
        .saturating_add(Duration::from_secs(15))
        .max(RENEW_EVERY * 3)
}

/// How often the worker renews the leases it holds.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// The queued route named `name` in `gateway`, with its policy.
pub fn queued_route<'a>(
    gateway: &'a crate::model::Gateway,
    name: &str,
) -> Option<(&'a Arc<crate::model::Route>, &'a QueuePolicy)> {
    gateway
        .routes
        .routes()
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| match &r.delivery {
            Delivery::Queued(p) => Some((r, p)),
            Delivery::Sync => None,
        })
}

/// The queued route named `route` in `gateway`, and the index of its destination named
/// `destination`.
pub fn queued_destination<'a>(
    gateway: &'a crate::model::Gateway,
    route: &str,
    destination: &str,
) -> Option<(&'a Arc<crate::model::Route>, usize)> {
    let (route, policy) = queued_route(gateway, route)?;
    let index = policy
        .destinations
        .iter()
        .position(|d| d.name == destination)?;
    Some((route, index))
}

/// The header that tells the app which attempt this is (1 for the first).
pub const ATTEMPT_HEADER: http::HeaderName = http::HeaderName::from_static("hookgate-attempt");
/// The header that tells the app an operator replayed this delivery, and how many times.
pub const REPLAY_HEADER: http::HeaderName = http::HeaderName::from_static("hookgate-replay");
/// The header that names the event to the app, stable across attempts.
pub const IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");
/// The header that tells the sender which event its request was stored as.
pub const EVENT_ID_HEADER: http::HeaderName = http::HeaderName::from_static("hookgate-event-id");

/// The header that tells a sender of a duplicate where the first copy is (`queued`,
/// `delivering`, `retrying`, `delivered`, `dead`).
pub const EVENT_STATE_HEADER: http::HeaderName =
    http::HeaderName::from_static("hookgate-event-state");

/// The `Idempotency-Key` of an event with replay key `key`: the key itself when it is a
/// header value an app can compare as text (visible ASCII, at most 200 bytes) and not a
/// signature; otherwise its SHA-256 in hex.
pub fn idempotency_key(source: &crate::model::KeySource, key: &[u8]) -> String {
    let readable = !key.is_empty() && key.len() <= 200 && key.iter().all(u8::is_ascii_graphic);
    match source {
        crate::model::KeySource::Signature => {}
        _ if readable => return String::from_utf8_lossy(key).into_owned(),
        _ => {}
    }
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key))
}

/// The `Idempotency-Key` a destination gets for an event whose key is `key`: the key itself
/// for a route's one destination (as before destinations), else the key, `:` and the
/// destination's name. Two destinations may be one app, or share one idempotency store (two
/// paths of one service behind one middleware): with one key, the second delivery would
/// look like a retry of the first and be dropped. Retries to one destination keep its key.
pub fn destination_key(key: &str, destination: &str) -> String {
    if destination == crate::model::UNNAMED {
        key.to_owned()
    } else {
        format!("{key}:{destination}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_reservation_gives_back_nothing() {
        let gate = Arc::new(Gate::default());
        gate.set_limit(2);
        let held: Vec<GateSlot> = (0..2).filter_map(|_| Gate::reserve(&gate)).collect();
        assert_eq!(held.len(), 2);
        // A backlog of requests finds the gate full: each is refused, and none of the
        // refusals may count as a lease coming back.
        for _ in 0..100 {
            assert!(Gate::reserve(&gate).is_none());
        }
        assert_eq!(gate.take(1), 0, "still two out of two");
        drop(held);
        assert_eq!(gate.take(5), 2);
    }

    /// An event stored with a reservation it could not use (a duplicate, a store error)
    /// gives back its lease, its slot and its rate token: a storm of 503s does not drain
    /// a destination's rate.
    #[tokio::test]
    async fn a_reservation_not_handed_over_gives_back_its_rate_token() {
        let (store, dir) = {
            let dir = std::env::temp_dir().join(format!("hookgate-reserve-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let metrics = Arc::new(crate::metrics::Metrics::new());
            let store = embedded::Embedded::open(&dir, None, metrics).unwrap();
            (QueueStore::Embedded(store), dir)
        };
        let queue = Queue::new(store);
        let gate = queue.gate("r", "");
        gate.set_limit(4);
        gate.set_concurrency(4);
        gate.set_rate_limit(Some(crate::model::RateLimit {
            milli_per_second: 1,
            burst: 1,
        }));
        let first = queue.reserve("r", "").expect("one token");
        assert!(queue.reserve("r", "").is_none(), "the one token is taken");
        drop(first);
        assert!(queue.reserve("r", "").is_some(), "and back once unused");
        queue.store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A destination a reload adds is paused at once by its route's pause, not open until
    /// the worker's next read of the store.
    #[tokio::test]
    async fn a_gate_made_after_a_route_pause_starts_paused() {
        let dir = std::env::temp_dir().join(format!("hookgate-late-gate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store = embedded::Embedded::open(&dir, None, metrics).unwrap();
        let queue = Queue::new(QueueStore::Embedded(store));
        let pause = |destination: &str, since: i64| store::Paused {
            route: "r".into(),
            destination: destination.into(),
            since: UnixMs(since),
        };
        queue.pauses_changed(&[pause("", 7), pause("b", 5)]);
        assert_eq!(queue.gate("r", "a").operator_pause(), Some(UnixMs(7)));
        assert_eq!(
            queue.gate("r", "b").operator_pause(),
            Some(UnixMs(5)),
            "the earlier"
        );
        assert_eq!(queue.gate("other", "a").operator_pause(), None);
        queue.pauses_changed(&[]);
        assert_eq!(queue.gate("r", "a").operator_pause(), None);
        assert_eq!(queue.gate("r", "c").operator_pause(), None);
        queue.store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_gate_never_lets_more_leases_out_than_its_limit() {
        let gate = Gate::default();
        assert_eq!(gate.take(1), 0, "no limit set yet: nothing");
        gate.set_limit(4);
        assert_eq!(gate.take(3), 3);
        assert_eq!(gate.take(usize::MAX), 1, "only the room that is left");
        assert_eq!(gate.take(1), 0);
        gate.release(2);
        assert_eq!(gate.take(5), 2);
        // A lower limit (the app looks down) stops new leases until enough come back.
        gate.set_limit(1);
        gate.release(3);
        assert_eq!(gate.take(1), 0, "one still out");
        gate.release(1);
        assert_eq!(gate.take(2), 1);
        // Releasing more than is out never wraps around.
        gate.release(10);
        assert_eq!(gate.take(1), 1);
    }
}
