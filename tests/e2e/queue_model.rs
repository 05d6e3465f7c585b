//! A model-based test of the queue store's state machine, on both engines, with fan-out.
//!
//! Random sequences of what the pipeline, the delivery worker, the clock and an operator do
//! to the store (ingest, with or without a free delivery slot; lease; start an attempt;
//! renew; settle with a 2xx, a failure or a final answer; give leases back; time passing
//! leases by; a restart; retry; retry-dead; drop; purge; pause and resume; reads) run
//! against the real store, the embedded one in a fresh directory and PostgreSQL on a real
//! server, and against a plain in-memory model of what the store promises
//! (`src/delivery/store.rs`).
//!
//! The model has the store's shape: a row per event and destination, one request per event.
//! Route 0 fans out to three destinations (`a`, `b`, `c`); route 1 has one upstream (its one
//! destination is `""`). An ingest takes any subset of its route's destinations, each stored
//! queued or, when a slot is free, leased with its first attempt started (a lease token of
//! its own); the empty subset stores one `filtered` record (destination `""`, finished at
//! once). Leases are per route and destination; start, renew, settle and release name one
//! row (event id, lease; a 2xx by event id and destination). An operator's retry and drop
//! name an event and one destination or all of them, retry-dead a route and one destination
//! or all, a pause or a resume the whole route (`""`) or one destination of it.
//!
//! After every step every row the model knows is read back from the store's listing (which
//! must be in `(id, destination)` order) and compared field by field, with the pauses, the
//! depths and each destination's next due time; every answer the store gave (what a lease
//! picked, whether a settle changed a row, the attempt count a start returned, how many rows
//! a retry, a drop or a purge touched, a duplicate's id and state) must be the model's. A
//! read step also checks each event's rows with their request (`get(id, true)`) and pages
//! through each route's listing a few rows at a time.
//!
//! What that pins down, among the rest:
//! - `attempts` counts the attempts started, never a lease (leases that lapse and are taken
//!   again add nothing), and survives restarts;
//! - a 2xx wins: once delivered, a row is never anything else, whatever raced with the
//!   settle (a lapsed lease, a restart, an operator's retry);
//! - a settle says whether it changed the row, so a dead letter is counted once;
//! - a lease picks only due rows of the route and destination it names, oldest first, at
//!   most as many as asked, each with its event's request; a `filtered` record is never
//!   leased;
//! - an event's rows share one request, kept until its last row goes;
//! - a duplicate names the event first stored with its key, and what its rows add up to
//!   (delivered once all are delivered or filtered; while any is pending, one of the
//!   pending rows' states, as neither engine orders the rows it sums up; else dead);
//! - purge takes an event whole, only once every row is past its retention and the dedup
//!   window is over; resuming one destination moves only its pending rows' ages.
//!
//! - a drop that takes the row carrying an event's dedup key and leaves others moves the key
//!   (and its window) to the row left whose destination sorts first, so a resend inside the
//!   window is still a duplicate.
//!
//! `PROPTEST_CASES` sets the number of sequences per engine (default 64).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hookgate::delivery::event::{Event, Lease, NewDelivery, NewEvent, State};
use hookgate::delivery::retry::DeadReason;
use hookgate::delivery::store::{Depth, Filter, Ingested, Settle};
use hookgate::delivery::{QueueStore, UnixMs};
use hookgate::metrics::Metrics;
use hookgate::model::{QueueStoreConfig, Retention};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::pg_server::PostgresServer;

const ROUTES: usize = 2;
/// Each route's destinations: route 0 fans out to three, route 1 has one upstream.
const DESTINATIONS: [&[&str]; ROUTES] = [&["a", "b", "c"], &[""]];
const LEASE_MS: i64 = 30_000;
const DEDUP_TTL_MS: i64 = 120_000;
/// Delivered and filtered rows are kept this long, dead ones [`DEAD_KEPT_MS`].
const DELIVERED_KEPT_MS: i64 = 60_000;
const DEAD_KEPT_MS: i64 = 120_000;
const HEADERS: &[u8] = b"content-type: application/json\r\n";

/// One thing done to the store. Indexes (`which`, a destination's) pick among what exists
/// at that step, modulo its length, so any sequence is meaningful.
#[derive(Clone, Debug)]
enum Step {
    Ingest {
        route: usize,
        dedup: Option<u8>,
        /// Which of the route's destinations take it (bit `i`: destination `i`); none: a
        /// `filtered` record.
        takers: u8,
        /// Whose delivery slot was free (bit `i`): stored leased, with attempt 1 started.
        slots: u8,
    },
    /// The sender of a stored event with a dedup key sends it again (any ingest may be a
    /// duplicate too; this one always is, of an event in whatever state it reached).
    Resend {
        which: usize,
        takers: u8,
    },
    Lease {
        route: usize,
        /// One of the route's destinations; `None`: `""`, which on route 0 only names
        /// `filtered` records (never due).
        destination: Option<usize>,
        limit: usize,
        /// The worker holds a free slot for each: the lease counts their attempts too.
        start: bool,
    },
    Start {
        which: usize,
    },
    Renew,
    Settle {
        which: usize,
        outcome: Outcome,
    },
    Release {
        which: usize,
    },
    /// Time passes (leases run out, retries come due, retention passes).
    Advance {
        ms: i64,
    },
    /// The process ends (its leases are forgotten) and the store is opened again.
    Restart,
    /// An operator's retry or drop of an event: to one of the names of its route
    /// ([`names`]), or to every destination (`None`).
    Retry {
        which: usize,
        destination: Option<usize>,
        /// Picks among the events with a dead or retrying row (if any), not among all.
        failed: bool,
    },
    RetryDead {
        route: usize,
        destination: Option<usize>,
    },
    Drop {
        which: usize,
        destination: Option<usize>,
    },
    Purge,
    /// An operator pauses a route or one destination of it ([`names`]), or resumes it.
    Pause {
        route: usize,
        destination: usize,
    },
    Resume {
        route: usize,
        destination: usize,
    },
    /// Every event read with its request, and each route listed `page` rows at a time.
    Read {
        page: usize,
    },
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Delivered,
    RetryIn(i64),
    Dead(DeadReason),
}

fn step() -> impl Strategy<Value = Step> {
    let route = 0..ROUTES;
    let one_or_all = || proptest::option::weighted(0.5, 0usize..4);
    prop_oneof![
        6 => (route.clone(), proptest::option::weighted(0.5, 0u8..2),
              prop_oneof![1 => Just(0u8), 6 => 1u8..8], any::<u8>())
            .prop_map(|(route, dedup, takers, slots)| Step::Ingest { route, dedup, takers, slots }),
        2 => (any::<usize>(), 0u8..8).prop_map(|(which, takers)| Step::Resend { which, takers }),
        6 => (route.clone(), proptest::option::weighted(0.9, 0usize..3),
              prop_oneof![1 => Just(0usize), 4 => 1usize..4], any::<bool>())
            .prop_map(|(route, destination, limit, start)| Step::Lease {
                route, destination, limit, start
            }),
        4 => any::<usize>().prop_map(|which| Step::Start { which }),
        1 => Just(Step::Renew),
        6 => (any::<usize>(), prop_oneof![
                2 => Just(Outcome::Delivered),
                2 => (0i64..60_000).prop_map(Outcome::RetryIn),
                2 => prop::sample::select(DeadReason::ALL.to_vec()).prop_map(Outcome::Dead),
            ]).prop_map(|(which, outcome)| Step::Settle { which, outcome }),
        1 => any::<usize>().prop_map(|which| Step::Release { which }),
        4 => prop_oneof![1 => Just(1_000i64), 2 => Just(LEASE_MS + 1), 1 => 0i64..200_000]
            .prop_map(|ms| Step::Advance { ms }),
        1 => Just(Step::Restart),
        2 => (any::<usize>(), one_or_all(), any::<bool>())
            .prop_map(|(which, destination, failed)| Step::Retry { which, destination, failed }),
        1 => (route.clone(), one_or_all())
            .prop_map(|(route, destination)| Step::RetryDead { route, destination }),
        2 => (any::<usize>(), one_or_all())
            .prop_map(|(which, destination)| Step::Drop { which, destination }),
        2 => Just(Step::Purge),
        2 => (route.clone(), 0usize..4)
            .prop_map(|(route, destination)| Step::Pause { route, destination }),
        2 => (route.clone(), 0usize..4)
            .prop_map(|(route, destination)| Step::Resume { route, destination }),
        1 => (1usize..4).prop_map(|page| Step::Read { page }),
    ]
}

/// What an operator can name on `route`: the whole route (`""`) or one of its
/// destinations.
fn names(route: usize) -> Vec<&'static str> {
    let mut names = vec![""];
    names.extend(DESTINATIONS[route].iter().filter(|d| !d.is_empty()));
    names
}

/// The name `pick` picks among [`names`] of `route`; `None` stays `None` (every destination).
fn named(route: usize, pick: Option<usize>) -> Option<&'static str> {
    let names = names(route);
    pick.map(|i| names[i % names.len()])
}

/// The body of event `id`: each event's is its own, so a row read with another event's
/// request shows.
fn body_of(id: &str) -> Bytes {
    Bytes::from(format!("{{\"id\":\"{id}\"}}"))
}

/// Event `id` of `route` received at `now`, taken by no destination yet.
fn new_event(id: &str, route: &str, dedup_key: Option<String>, now: i64) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        route: route.to_owned(),
        dedup_until: dedup_key.as_ref().map(|_| UnixMs(now + DEDUP_TTL_MS)),
        dedup_key,
        idempotency_key: format!("key-{id}"),
        received_ms: UnixMs(now),
        verified_key: Some(0),
        method: "POST".into(),
        target: "/hook".into(),
        headers: HEADERS.to_vec(),
        body: body_of(id),
        deliveries: Vec::new(),
    }
}

/// `e`'s deliveries to those of `destinations` that `takers` picks (bit `i`: the `i`th),
/// each stored leased (a token of its own, attempt 1 started) if `slots` says its slot was
/// free.
fn deliveries(e: &NewEvent, destinations: &[&str], takers: u8, slots: u8) -> Vec<NewDelivery> {
    let id = &e.id;
    destinations
        .iter()
        .enumerate()
        .filter(|(i, _)| takers & (1 << i) != 0)
        .map(|(i, d)| NewDelivery {
            destination: (*d).to_owned(),
            idempotency_key: format!("{id}/{d}"),
            lease: (slots & (1 << i) != 0).then(|| Lease {
                token: format!("{id}/{d}/ingest"),
                until_ms: UnixMs(e.received_ms.as_i64() + LEASE_MS),
            }),
        })
        .collect()
}

/// A row: event id and destination.
type Key = (String, String);

/// What the store promises about one event's delivery to one destination.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    route: String,
    idempotency_key: String,
    /// The event's dedup key and window, on its first row only (as the store keeps them).
    dedup: Option<String>,
    dedup_until: Option<i64>,
    state: State,
    received_ms: i64,
    age_from_ms: i64,
    next_attempt_ms: i64,
    attempts: u32,
    budget_from: u32,
    lease: Option<String>,
    leased_until: Option<i64>,
    finished_ms: Option<i64>,
    last_status: Option<u16>,
    dead_reason: Option<&'static str>,
}

impl Row {
    fn is_pending(&self) -> bool {
        matches!(
            self.state,
            State::Queued | State::Retrying | State::Delivering
        )
    }

    /// When a lease takes it first: due time, then receive time.
    fn due_key(&self) -> (i64, i64) {
        (self.next_attempt_ms, self.received_ms)
    }

    /// Given back: due again at once, `queued` if never tried.
    fn release(&mut self) {
        self.state = if self.attempts == 0 {
            State::Queued
        } else {
            State::Retrying
        };
        self.lease = None;
        self.leased_until = None;
    }

    /// An operator's retry.
    fn retried(&mut self, now: i64) {
        self.state = State::Retrying;
        self.next_attempt_ms = now;
        self.age_from_ms = now;
        self.budget_from = self.attempts;
        self.finished_ms = None;
        self.dead_reason = None;
    }

    /// Past its retention at `now` for a purge keeping delivered (and filtered) rows until
    /// `delivered_before`, dead ones until `dead_before`; and past its dedup window.
    fn past_retention(&self, delivered_before: i64, dead_before: i64, now: i64) -> bool {
        let finished_past = match (self.state, self.finished_ms) {
            (State::Delivered | State::Filtered, Some(f)) => f < delivered_before,
            (State::Dead, Some(f)) => f < dead_before,
            _ => false,
        };
        finished_past && self.dedup_until.is_none_or(|u| u < now)
    }
}

/// A lease as a worker holds it: possibly stale.
#[derive(Clone, Debug)]
struct Held {
    id: String,
    destination: String,
    lease: String,
}

impl Held {
    fn key(&self) -> Key {
        (self.id.clone(), self.destination.clone())
    }
}

struct Model {
    rows: BTreeMap<Key, Row>,
    now: i64,
    /// Paused routes and destinations (`""`: the whole route), since when.
    pauses: BTreeMap<(String, String), i64>,
}

impl Model {
    /// Event `id`'s rows, by destination.
    fn rows_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = (&'a Key, &'a Row)> + 'a {
        self.rows
            .range((id.to_owned(), String::new())..)
            .take_while(move |((i, _), _)| i == id)
    }

    fn ids(&self) -> Vec<String> {
        let ids: BTreeSet<&String> = self.rows.keys().map(|(id, _)| id).collect();
        ids.into_iter().cloned().collect()
    }

    /// The event of `route` that carries dedup key `key`.
    fn first_with(&self, route: &str, key: &str) -> Option<String> {
        self.rows
            .iter()
            .find(|(_, r)| r.route == route && r.dedup.as_deref() == Some(key))
            .map(|((id, _), _)| id.clone())
    }

    /// The row `h` names, if `h` still holds it.
    fn held_by(&mut self, h: &Held) -> Option<&mut Row> {
        self.rows
            .get_mut(&h.key())
            .filter(|r| r.state == State::Delivering && r.lease.as_deref() == Some(&h.lease))
    }

    /// The rows of `route` to `destination` a lease may take now, oldest due first.
    fn due(&self, route: &str, destination: &str) -> Vec<(Key, (i64, i64))> {
        let mut due: Vec<(Key, (i64, i64))> = self
            .rows
            .iter()
            .filter(|((_, d), r)| r.route == route && d == destination)
            .filter(|(_, r)| {
                r.next_attempt_ms <= self.now
                    && match r.state {
                        State::Queued | State::Retrying => true,
                        State::Delivering => r.leased_until.is_some_and(|u| u < self.now),
                        State::Delivered | State::Dead | State::Filtered => false,
                    }
            })
            .map(|(k, r)| (k.clone(), r.due_key()))
            .collect();
        due.sort_by_key(|(_, d)| *d);
        due
    }

    /// Stores event `id` as the store does: a row per delivery, the first carrying the
    /// dedup key; a `filtered` record, with the event's own key, when there is none.
    fn store_event(&mut self, e: &NewEvent) {
        let now = e.received_ms.as_i64();
        let row = |idempotency_key: &str, first: bool| Row {
            route: e.route.clone(),
            idempotency_key: idempotency_key.to_owned(),
            dedup: e.dedup_key.clone().filter(|_| first),
            dedup_until: e.dedup_until.filter(|_| first).map(UnixMs::as_i64),
            state: State::Queued,
            received_ms: now,
            age_from_ms: now,
            next_attempt_ms: now,
            attempts: 0,
            budget_from: 0,
            lease: None,
            leased_until: None,
            finished_ms: None,
            last_status: None,
            dead_reason: None,
        };
        if e.deliveries.is_empty() {
            let filtered = Row {
                state: State::Filtered,
                finished_ms: Some(now),
                ..row(&e.idempotency_key, true)
            };
            self.rows.insert((e.id.clone(), String::new()), filtered);
        }
        for (i, d) in e.deliveries.iter().enumerate() {
            let mut r = row(&d.idempotency_key, i == 0);
            if let Some(l) = &d.lease {
                r.state = State::Delivering;
                r.attempts = 1;
                r.lease = Some(l.token.clone());
                r.leased_until = Some(l.until_ms.as_i64());
            }
            self.rows.insert((e.id.clone(), d.destination.clone()), r);
        }
    }
}

/// What a duplicate may be answered for an event whose rows are in `states`, as
/// `store.rs` promises it (written here, not taken from [`State::of_event`], so that a
/// change to that function shows): delivered once every row is delivered or filtered, on
/// its way while any row is pending (any pending state of its rows: [`State::of_event`]
/// gives the first it reads, and neither engine orders the rows), else dead.
fn summaries(states: &[State]) -> BTreeSet<&'static str> {
    let pending: BTreeSet<&'static str> = states
        .iter()
        .filter(|s| matches!(s, State::Queued | State::Retrying | State::Delivering))
        .map(|s| s.as_str())
        .collect();
    if !pending.is_empty() {
        pending
    } else if states.contains(&State::Dead) {
        BTreeSet::from([State::Dead.as_str()])
    } else {
        BTreeSet::from([State::Delivered.as_str()])
    }
}

/// Which engine a case runs against.
#[derive(Clone)]
enum Engine {
    Embedded,
    Postgres(String),
}

static CASE: AtomicUsize = AtomicUsize::new(0);

/// Where sequence `case`'s clock starts: before every earlier sequence's, by more than one
/// sequence can advance (80 steps of at most 200 s). PostgreSQL's database is shared by the
/// sequences, and a purge is not per route: this way it finds nothing of an earlier
/// sequence past its retention, and how many rows it deleted is this sequence's count.
fn clock_of(case: usize) -> i64 {
    1_700_000_000_000 - 100_000_000 * i64::try_from(case).expect("a case number")
}

async fn open(engine: &Engine, dir: &Path) -> QueueStore {
    let config = match engine {
        Engine::Embedded => QueueStoreConfig::Embedded {
            path: dir.to_owned(),
            max_bytes: None,
            retention: Retention::default(),
        },
        Engine::Postgres(url) => QueueStoreConfig::Postgres {
            url: url.clone(),
            pool_size: 2,
            timeout: std::time::Duration::from_secs(10),
            ca_file: None,
            retention: Retention::default(),
        },
    };
    // A store just closed may hold its directory a moment longer.
    for _ in 0..100 {
        match QueueStore::open(&config, Arc::new(Metrics::new())).await {
            Ok(store) => return store,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    QueueStore::open(&config, Arc::new(Metrics::new()))
        .await
        .expect("the store opens")
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("store error: {e}"))
}

fn pick<T: Clone>(items: &[T], which: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[which % items.len()].clone())
}

/// One sequence's store, model and worker.
struct Run {
    store: QueueStore,
    engine: Engine,
    dir: PathBuf,
    /// The routes' names, unique to this sequence (PostgreSQL's database is shared).
    routes: Vec<String>,
    tag: String,
    model: Model,
    held: Vec<Held>,
    next_id: usize,
}

/// Runs one sequence against a fresh store of `engine` and the model.
async fn run_case(engine: &Engine, steps: &[Step]) -> Result<(), TestCaseError> {
    let case = CASE.fetch_add(1, Ordering::SeqCst);
    let tag = format!("m{}x{case}", std::process::id());
    let dir = crate::support::temp_dir(&format!("model-{case}"));
    let mut run = Run {
        store: open(engine, &dir).await,
        engine: engine.clone(),
        dir: dir.clone(),
        routes: (0..ROUTES).map(|r| format!("{tag}-r{r}")).collect(),
        tag,
        model: Model {
            rows: BTreeMap::new(),
            now: clock_of(case),
            pauses: BTreeMap::new(),
        },
        held: Vec::new(),
        next_id: 0,
    };
    let result = async {
        for (n, step) in steps.iter().enumerate() {
            run.apply(step)
                .await
                .map_err(|e| TestCaseError::fail(format!("step {n} {step:?}: {e}")))?;
            run.compare()
                .await
                .map_err(|e| TestCaseError::fail(format!("after step {n} {step:?}: {e}")))?;
        }
        Ok(())
    }
    .await;
    run.store.close().await;
    drop(run);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

impl Run {
    async fn apply(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Ingest {
                route,
                dedup,
                takers,
                slots,
            } => {
                let key = dedup.map(|d| format!("key-{d}"));
                self.ingest(route, key, takers, slots).await
            }
            Step::Resend { which, takers } => self.resend(which, takers).await,
            Step::Lease {
                route,
                destination,
                limit,
                start,
            } => self.lease(route, destination, limit, start).await,
            Step::Start { which } => self.start(which).await,
            Step::Renew => self.renew().await,
            Step::Settle { which, outcome } => self.settle(which, outcome).await,
            Step::Release { which } => self.release(which).await,
            Step::Advance { ms } => {
                self.model.now += ms;
                Ok(())
            }
            Step::Restart => {
                self.restart().await;
                Ok(())
            }
            Step::Retry {
                which,
                destination,
                failed,
            } => self.retry(which, destination, failed).await,
            Step::RetryDead { route, destination } => self.retry_dead(route, destination).await,
            Step::Drop { which, destination } => self.drop_event(which, destination).await,
            Step::Purge => self.purge().await,
            Step::Pause { route, destination } => self.pause(route, destination).await,
            Step::Resume { route, destination } => self.resume(route, destination).await,
            Step::Read { page } => self.read(page).await,
        }
    }

    fn route_index(&self, route: &str) -> usize {
        self.routes
            .iter()
            .position(|r| r == route)
            .expect("a route of this sequence")
    }

    async fn ingest(
        &mut self,
        route: usize,
        dedup_key: Option<String>,
        takers: u8,
        slots: u8,
    ) -> Result<(), TestCaseError> {
        let id = format!("{}-e{:03}", self.tag, self.next_id);
        self.next_id += 1;
        let event = new_event(&id, &self.routes[route], dedup_key, self.model.now);
        let event = NewEvent {
            deliveries: deliveries(&event, DESTINATIONS[route], takers, slots),
            ..event
        };
        let got = self.store.ingest(event.clone()).await.map_err(fail)?;
        let first = event
            .dedup_key
            .as_deref()
            .and_then(|key| self.model.first_with(&event.route, key));
        if let Some(first) = first {
            // What its rows add up to, whatever order the store read them in.
            let states: Vec<State> = self.model.rows_of(&first).map(|(_, r)| r.state).collect();
            let answers = summaries(&states);
            return check(
                matches!(&got, Ingested::Duplicate { id, state }
                    if *id == first && answers.contains(state.as_str())),
                || {
                    format!(
                        "expected a duplicate of {first} ({states:?}: {answers:?}), got {got:?}"
                    )
                },
            );
        }
        check(got == Ingested::Stored, || {
            format!("expected stored, got {got:?}")
        })?;
        self.model.store_event(&event);
        for d in event.deliveries {
            if let Some(l) = d.lease {
                self.held.push(Held {
                    id: id.clone(),
                    destination: d.destination,
                    lease: l.token,
                });
            }
        }
        Ok(())
    }

    /// Ingests, taken by `takers`, the dedup key of one of the stored events that carry one.
    async fn resend(&mut self, which: usize, takers: u8) -> Result<(), TestCaseError> {
        let keys: Vec<(String, String)> = self
            .model
            .rows
            .values()
            .filter_map(|r| Some((r.route.clone(), r.dedup.clone()?)))
            .collect();
        let Some((route, key)) = pick(&keys, which) else {
            return Ok(());
        };
        let route = self.route_index(&route);
        self.ingest(route, Some(key), takers, 0).await
    }

    async fn lease(
        &mut self,
        route: usize,
        destination: Option<usize>,
        limit: usize,
        start: bool,
    ) -> Result<(), TestCaseError> {
        let now = self.model.now;
        let route_name = self.routes[route].clone();
        let all = DESTINATIONS[route];
        let destination = destination.map_or("", |i| all[i % all.len()]);
        let leased = self
            .store
            .lease(
                (&route_name, destination),
                limit,
                UnixMs(now),
                UnixMs(now + LEASE_MS),
                start,
            )
            .await
            .map_err(fail)?;
        let due = self.model.due(&route_name, destination);
        check(leased.len() == limit.min(due.len()), || {
            format!(
                "leased {} of {} due with limit {limit}",
                leased.len(),
                due.len()
            )
        })?;
        self.check_picked(&route_name, destination, &leased, &due)?;
        for e in leased {
            let key = (e.id.clone(), e.destination.clone());
            let token = e
                .lease
                .clone()
                .ok_or_else(|| TestCaseError::fail("a lease without a token"))?;
            let m = self.model.rows.get_mut(&key).expect("checked due");
            m.attempts += u32::from(start);
            check(e.attempts == m.attempts, || {
                format!(
                    "{key:?}: leased (start {start}) with attempts {}, model {}",
                    e.attempts, m.attempts
                )
            })?;
            m.state = State::Delivering;
            m.lease = Some(token.clone());
            m.leased_until = Some(now + LEASE_MS);
            self.held.push(Held {
                id: e.id,
                destination: e.destination,
                lease: token,
            });
        }
        Ok(())
    }

    /// What a lease of `route`'s `destination` picked: due rows of that route and
    /// destination only, oldest due first, each with its event's request.
    fn check_picked(
        &self,
        route: &str,
        destination: &str,
        leased: &[Event],
        due: &[(Key, (i64, i64))],
    ) -> Result<(), TestCaseError> {
        let keys: Vec<Key> = leased
            .iter()
            .map(|e| (e.id.clone(), e.destination.clone()))
            .collect();
        let mut picked_due = Vec::new();
        for (e, key) in leased.iter().zip(&keys) {
            check(e.route == route && e.destination == destination, || {
                format!(
                    "a lease of {route}/{destination:?} returned {key:?} of {}",
                    e.route
                )
            })?;
            let state = self.model.rows.get(key).map(|r| r.state);
            check(state != Some(State::Filtered), || {
                format!("{key:?}, a filtered record, was leased")
            })?;
            let Some((_, when)) = due.iter().find(|(k, _)| k == key) else {
                return Err(TestCaseError::fail(format!(
                    "{key:?} ({state:?}) was leased but is not due"
                )));
            };
            picked_due.push(*when);
            check(
                e.state == State::Delivering
                    && e.body.as_ref() == Some(&body_of(&e.id))
                    && e.headers == HEADERS,
                || format!("{key:?} leased without its own request or state"),
            )?;
        }
        check(
            keys.iter().collect::<BTreeSet<_>>().len() == keys.len(),
            || format!("one row leased twice: {keys:?}"),
        )?;
        // Oldest due first: nothing left behind is due before anything picked.
        let latest = picked_due.into_iter().max();
        for (key, when) in due.iter().filter(|(k, _)| !keys.contains(k)) {
            check(latest.is_none_or(|l| *when >= l), || {
                format!("{key:?} was due before the rows leased {keys:?}")
            })?;
        }
        Ok(())
    }

    async fn start(&mut self, which: usize) -> Result<(), TestCaseError> {
        let Some(h) = pick(&self.held, which) else {
            return Ok(());
        };
        let until = self.model.now + LEASE_MS;
        let got = self
            .store
            .start(&as_leased(&h), UnixMs(until))
            .await
            .map_err(fail)?;
        let want = self.model.held_by(&h).map(|r| {
            r.attempts += 1;
            r.leased_until = Some(until);
            r.attempts
        });
        check(got == want, || {
            format!("start of {:?}: {got:?}, want {want:?}", h.key())
        })
    }

    async fn renew(&mut self) -> Result<(), TestCaseError> {
        let until = self.model.now + LEASE_MS;
        let pairs: Vec<(String, String)> = self
            .held
            .iter()
            .map(|h| (h.id.clone(), h.lease.clone()))
            .collect();
        let got = self.store.renew(pairs, UnixMs(until)).await.map_err(fail)?;
        let mut want = 0;
        for h in &self.held {
            if let Some(r) = self.model.held_by(h) {
                r.leased_until = Some(until);
                want += 1;
            }
        }
        check(got == want, || format!("renewed {got}, want {want}"))
    }

    async fn settle(&mut self, which: usize, outcome: Outcome) -> Result<(), TestCaseError> {
        let Some(h) = pick(&self.held, which) else {
            return Ok(());
        };
        let now = self.model.now;
        let settle = match outcome {
            Outcome::Delivered => Settle::Delivered { status: 200 },
            Outcome::RetryIn(ms) => Settle::Retry {
                at_ms: UnixMs(now + ms),
                status: Some(503),
                error: "app answered 503".into(),
            },
            Outcome::Dead(reason) => Settle::Dead {
                reason,
                status: Some(422),
                error: "app answered 422".into(),
            },
        };
        let got = self
            .store
            .settle(&as_leased(&h), settle, UnixMs(now))
            .await
            .map_err(fail)?;
        let holds = self.model.held_by(&h).is_some();
        let want = match (self.model.rows.get_mut(&h.key()), outcome) {
            // A 2xx wins, in any state but delivered.
            (Some(r), Outcome::Delivered) if r.state != State::Delivered => {
                (r.state, r.finished_ms, r.last_status) = (State::Delivered, Some(now), Some(200));
                r.dead_reason = None;
                true
            }
            (Some(r), Outcome::RetryIn(ms)) if holds => {
                (r.state, r.next_attempt_ms, r.last_status) =
                    (State::Retrying, now + ms, Some(503));
                true
            }
            (Some(r), Outcome::Dead(reason)) if holds => {
                (r.state, r.finished_ms, r.last_status) = (State::Dead, Some(now), Some(422));
                r.dead_reason = Some(reason.label());
                true
            }
            _ => false,
        };
        if let Some(r) = self.model.rows.get_mut(&h.key()).filter(|_| want) {
            (r.lease, r.leased_until) = (None, None);
        }
        check(got == want, || {
            format!(
                "settle {outcome:?} of {:?} changed it: {got}, want {want}",
                h.key()
            )
        })?;
        self.held.retain(|x| x.id != h.id || x.lease != h.lease);
        Ok(())
    }

    async fn release(&mut self, which: usize) -> Result<(), TestCaseError> {
        let Some(h) = pick(&self.held, which) else {
            return Ok(());
        };
        let got = self
            .store
            .release(vec![(h.id.clone(), h.lease.clone())])
            .await
            .map_err(fail)?;
        let want = match self.model.held_by(&h) {
            Some(r) => {
                r.release();
                1
            }
            None => 0,
        };
        check(got == want, || format!("released {got}, want {want}"))?;
        self.held.retain(|x| x.id != h.id || x.lease != h.lease);
        Ok(())
    }

    async fn restart(&mut self) {
        self.store.close().await;
        self.store = open(&self.engine, &self.dir).await;
        self.held.clear();
        if let Engine::Embedded = self.engine {
            // One process per directory: whatever was leased belonged to the one that
            // ended, and is released on open.
            for r in self.model.rows.values_mut() {
                if r.state == State::Delivering {
                    r.release();
                }
            }
        }
        // PostgreSQL: the leases stay until they run out (another replica may be alive).
    }

    async fn retry(
        &mut self,
        which: usize,
        destination: Option<usize>,
        failed: bool,
    ) -> Result<(), TestCaseError> {
        let mut ids = self.model.ids();
        let failing = |id: &String| {
            let mut rows = self.model.rows_of(id);
            rows.any(|(_, r)| matches!(r.state, State::Dead | State::Retrying))
        };
        if failed && ids.iter().any(failing) {
            ids.retain(failing);
        }
        let Some(id) = pick(&ids, which) else {
            return Ok(());
        };
        let now = self.model.now;
        let route = self.route_index(&self.model.rows_of(&id).next().expect("an id").1.route);
        let destination = named(route, destination);
        let got = self
            .store
            .retry(&id, destination, UnixMs(now))
            .await
            .map_err(fail)?;
        let mut want = 0;
        for ((i, d), r) in self.model.rows.iter_mut() {
            if *i == id
                && destination.is_none_or(|x| x == d)
                && matches!(r.state, State::Dead | State::Retrying)
            {
                r.retried(now);
                want += 1;
            }
        }
        check(got == want, || {
            format!("retry of {id} to {destination:?}: {got}, want {want}")
        })
    }

    async fn retry_dead(
        &mut self,
        route: usize,
        destination: Option<usize>,
    ) -> Result<(), TestCaseError> {
        let now = self.model.now;
        let destination = named(route, destination);
        let route = self.routes[route].clone();
        let got = self
            .store
            .retry_dead(&route, destination, UnixMs(now))
            .await
            .map_err(fail)?;
        let mut want = 0;
        for ((_, d), r) in self.model.rows.iter_mut() {
            if r.route == route && destination.is_none_or(|x| x == d) && r.state == State::Dead {
                r.retried(now);
                want += 1;
            }
        }
        check(got == want, || {
            format!("retried {got} dead of {route} to {destination:?}, want {want}")
        })
    }

    async fn drop_event(
        &mut self,
        which: usize,
        destination: Option<usize>,
    ) -> Result<(), TestCaseError> {
        let Some(id) = pick(&self.model.ids(), which) else {
            return Ok(());
        };
        let route = self.route_index(&self.model.rows_of(&id).next().expect("an id").1.route);
        let destination = named(route, destination);
        let all: Vec<(Key, bool)> = self
            .model
            .rows_of(&id)
            .map(|(k, r)| (k.clone(), r.dedup.is_some()))
            .collect();
        let gone: Vec<&(Key, bool)> = all
            .iter()
            .filter(|((_, d), _)| destination.is_none_or(|x| x == d))
            .filter(|(k, _)| self.model.rows[k].state != State::Delivering)
            .collect();
        let got = self.store.remove(&id, destination).await.map_err(fail)?;
        let want = gone.len() as u64;
        let gone: Vec<Key> = gone.into_iter().map(|(k, _)| k.clone()).collect();
        let mut carried = None;
        for key in &gone {
            if let Some(row) = self.model.rows.remove(key) {
                if row.dedup.is_some() {
                    carried = Some((row.dedup, row.dedup_until));
                }
            }
        }
        // The key moves to the row left whose destination sorts first.
        if let Some((dedup, until)) = carried {
            let heir = self.model.rows_of(&id).map(|(k, _)| k.clone()).min();
            if let Some(row) = heir.and_then(|k| self.model.rows.get_mut(&k)) {
                row.dedup = dedup;
                row.dedup_until = until;
            }
        }
        check(got == want, || {
            format!("drop of {id} to {destination:?}: {got}, want {want} ({gone:?})")
        })
    }

    async fn purge(&mut self) -> Result<(), TestCaseError> {
        let now = self.model.now;
        let (delivered_before, dead_before) = (now - DELIVERED_KEPT_MS, now - DEAD_KEPT_MS);
        let got = self
            .store
            .purge(UnixMs(delivered_before), UnixMs(dead_before), UnixMs(now))
            .await
            .map_err(fail)?;
        // An event goes whole, once every one of its rows is past its retention.
        let gone: Vec<String> = self
            .model
            .ids()
            .into_iter()
            .filter(|id| {
                self.model
                    .rows_of(id)
                    .all(|(_, r)| r.past_retention(delivered_before, dead_before, now))
            })
            .collect();
        let before = self.model.rows.len();
        self.model.rows.retain(|(id, _), _| !gone.contains(id));
        let want = (before - self.model.rows.len()) as u64;
        check(got == want, || {
            format!("purged {got} rows, want {want} (events {gone:?})")
        })
    }

    async fn pause(&mut self, route: usize, destination: usize) -> Result<(), TestCaseError> {
        let now = self.model.now;
        let destination = named(route, Some(destination)).expect("a name");
        let route = self.routes[route].clone();
        let newly = self
            .store
            .pause(&route, destination, UnixMs(now))
            .await
            .map_err(fail)?;
        let key = (route, destination.to_owned());
        let want = !self.model.pauses.contains_key(&key);
        self.model.pauses.entry(key.clone()).or_insert(now);
        check(newly == want, || {
            format!("pause of {key:?} said newly paused {newly}, the model {want}")
        })
    }

    async fn resume(&mut self, route: usize, destination: usize) -> Result<(), TestCaseError> {
        let now = self.model.now;
        let destination = named(route, Some(destination)).expect("a name");
        let route = self.routes[route].clone();
        let got = self
            .store
            .resume(&route, destination, UnixMs(now))
            .await
            .map_err(fail)?;
        let want = self
            .model
            .pauses
            .remove(&(route.clone(), destination.into()));
        if let Some(since) = want {
            // The pause does not count in a pending row's age: the destination's rows, or
            // all of the route's when the whole route resumes.
            for ((_, d), r) in self.model.rows.iter_mut() {
                if r.route == route
                    && (destination.is_empty() || d == destination)
                    && r.is_pending()
                    && r.age_from_ms < now
                {
                    r.age_from_ms += now - r.age_from_ms.max(since);
                }
            }
        }
        check(got.map(UnixMs::as_i64) == want, || {
            format!(
                "resume of {route}/{destination:?} said paused since {got:?}, the model {want:?}"
            )
        })
    }
}

impl Run {
    /// Every event read back with its request, and each route's listing paged through
    /// `page` rows at a time, by destination, and by the `filtered` state.
    async fn read(&self, page: usize) -> Result<(), TestCaseError> {
        for id in self.model.ids() {
            let rows = self.store.get(&id, true).await.map_err(fail)?;
            let got: Vec<&str> = rows.iter().map(|e| e.destination.as_str()).collect();
            let want: Vec<&str> = self.model.rows_of(&id).map(|(k, _)| k.1.as_str()).collect();
            check(got == want, || {
                format!("get({id}) read destinations {got:?}, want {want:?}")
            })?;
            for e in &rows {
                // One request per event: every row reads the same, its event's own.
                check(
                    e.id == id && e.body.as_ref() == Some(&body_of(&id)) && e.headers == HEADERS,
                    || format!("get({id}): row {:?} has {:?}", e.destination, e.body),
                )?;
            }
        }
        for (r, route) in self.routes.iter().enumerate() {
            let want: Vec<Key> = self.model_keys(|_, row| row.route == *route);
            let got = self.pages(route, None, None, page).await?;
            check(got == want, || {
                format!("{route} paged {page} at a time: {got:?}, want {want:?}")
            })?;
            for name in names(r) {
                let want = self.model_keys(|k, row| row.route == *route && k.1 == name);
                let got = self.pages(route, Some(name), None, page).await?;
                check(got == want, || {
                    format!("{route}/{name:?} paged: {got:?}, want {want:?}")
                })?;
            }
            let want =
                self.model_keys(|_, row| row.route == *route && row.state == State::Filtered);
            let got = self.pages(route, None, Some(State::Filtered), page).await?;
            check(got == want, || {
                format!("{route}'s filtered records: {got:?}, want {want:?}")
            })?;
        }
        Ok(())
    }

    fn model_keys(&self, keep: impl Fn(&Key, &Row) -> bool) -> Vec<Key> {
        self.model
            .rows
            .iter()
            .filter(|(k, r)| keep(k, r))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The keys of `route`'s rows (to `destination`, in `state`) listed `page` at a time,
    /// each page after the last row of the one before.
    async fn pages(
        &self,
        route: &str,
        destination: Option<&str>,
        state: Option<State>,
        page: usize,
    ) -> Result<Vec<Key>, TestCaseError> {
        let mut keys: Vec<Key> = Vec::new();
        loop {
            let filter = Filter {
                route: Some(route.to_owned()),
                destination: destination.map(str::to_owned),
                state,
                after: keys.last().cloned(),
                limit: page,
            };
            let got = self.store.list(filter).await.map_err(fail)?;
            check(got.len() <= page, || {
                format!("a page of {page} had {}", got.len())
            })?;
            if got.is_empty() {
                return Ok(keys);
            }
            keys.extend(got.into_iter().map(|e| (e.id, e.destination)));
            check(keys.len() <= self.model.rows.len(), || {
                format!("paging does not end: {keys:?}")
            })?;
        }
    }

    /// The store as the model has it: pauses, every row, depths and next due times.
    async fn compare(&self) -> Result<(), String> {
        let pauses: BTreeMap<(String, String), i64> = self
            .store
            .pauses()
            .await
            .map_err(|e| format!("pauses: {e}"))?
            .into_iter()
            .filter(|p| self.routes.contains(&p.route))
            .map(|p| ((p.route, p.destination), p.since.as_i64()))
            .collect();
        if pauses != self.model.pauses {
            return Err(format!(
                "pauses: store {pauses:?}, model {:?}",
                self.model.pauses
            ));
        }
        self.compare_rows().await?;
        self.compare_depths().await?;
        self.compare_next_due().await
    }

    /// Every row the model knows is listed as the model has it, in `(id, destination)`
    /// order, and no other row of these routes.
    async fn compare_rows(&self) -> Result<(), String> {
        let mut stored: BTreeMap<Key, Event> = BTreeMap::new();
        for route in &self.routes {
            let filter = Filter {
                route: Some(route.clone()),
                limit: 10_000,
                ..Filter::default()
            };
            let listed = self
                .store
                .list(filter)
                .await
                .map_err(|e| format!("list: {e}"))?;
            let keys: Vec<Key> = listed
                .iter()
                .map(|e| (e.id.clone(), e.destination.clone()))
                .collect();
            if keys.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!(
                    "{route} is not listed by (id, destination): {keys:?}"
                ));
            }
            stored.extend(keys.into_iter().zip(listed));
        }
        let extra: Vec<&Key> = stored
            .keys()
            .filter(|k| !self.model.rows.contains_key(*k))
            .collect();
        if !extra.is_empty() {
            return Err(format!(
                "the store holds rows the model does not: {extra:?}"
            ));
        }
        for (key, m) in &self.model.rows {
            let Some(e) = stored.get(key) else {
                return Err(format!("{key:?} ({:?}) is missing from the store", m.state));
            };
            compare_row(key, e, m)?;
        }
        Ok(())
    }

    /// The pending and dead rows counted by route, destination and state.
    async fn compare_depths(&self) -> Result<(), String> {
        type Depths = BTreeMap<(String, String, &'static str), (u64, i64)>;
        let got: Depths = self
            .store
            .depths()
            .await
            .map_err(|e| format!("depths: {e}"))?
            .into_iter()
            .filter(|d| self.routes.contains(&d.route))
            .map(|d: Depth| {
                let key = (d.route, d.destination, d.state.as_str());
                (key, (d.count, d.oldest_received_ms.as_i64()))
            })
            .collect();
        let mut want: Depths = BTreeMap::new();
        for ((_, d), r) in &self.model.rows {
            if r.is_pending() || r.state == State::Dead {
                let key = (r.route.clone(), d.clone(), r.state.as_str());
                let entry = want.entry(key).or_insert((0, r.received_ms));
                entry.0 += 1;
                entry.1 = entry.1.min(r.received_ms);
            }
        }
        if got != want {
            return Err(format!("depths: store {got:?}, model {want:?}"));
        }
        Ok(())
    }

    /// Each route's and destination's next due time: the soonest of its pending rows' (for
    /// one being delivered, its lease's end).
    async fn compare_next_due(&self) -> Result<(), String> {
        for (r, route) in self.routes.iter().enumerate() {
            for name in names(r) {
                let got = self
                    .store
                    .next_due((route, name))
                    .await
                    .map_err(|e| format!("next_due: {e}"))?
                    .map(UnixMs::as_i64);
                let want = self
                    .model
                    .rows
                    .iter()
                    .filter(|((_, d), row)| row.route == *route && d == name && row.is_pending())
                    .map(|(_, row)| match row.state {
                        State::Delivering => row.leased_until.unwrap_or(i64::MAX),
                        _ => row.next_attempt_ms,
                    })
                    .min();
                if got != want {
                    return Err(format!(
                        "{route}/{name:?} next due: store {got:?}, model {want:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One listed row against the model's.
fn compare_row(key: &Key, e: &Event, m: &Row) -> Result<(), String> {
    let got = (
        e.state,
        e.attempts,
        e.budget_from,
        e.lease.as_deref(),
        e.finished_ms.map(UnixMs::as_i64),
        e.last_status,
        e.dead_reason.as_deref(),
        e.age_from_ms.as_i64(),
    );
    let want = (
        m.state,
        m.attempts,
        m.budget_from,
        m.lease.as_deref(),
        m.finished_ms,
        m.last_status,
        m.dead_reason,
        m.age_from_ms,
    );
    if got != want {
        return Err(format!(
            "{key:?}: store has (state, attempts, budget_from, lease, finished, status, \
             dead_reason, age_from) {got:?}, model {want:?}"
        ));
    }
    let (id, _) = key;
    let same_event = e.route == m.route
        && e.idempotency_key == m.idempotency_key
        && e.received_ms.as_i64() == m.received_ms
        && e.body.is_none()
        && e.body_len == body_of(id).len() as u64;
    if !same_event {
        return Err(format!(
            "{key:?}: store has route {}, idempotency key {}, received {}, body {:?} \
             ({} bytes); model {m:?}",
            e.route, e.idempotency_key, e.received_ms, e.body, e.body_len
        ));
    }
    if matches!(m.state, State::Queued | State::Retrying)
        && e.next_attempt_ms.as_i64() != m.next_attempt_ms
    {
        return Err(format!(
            "{key:?}: due at {} in the store, {} in the model",
            e.next_attempt_ms, m.next_attempt_ms
        ));
    }
    Ok(())
}

/// A worker's copy of a leased row: only its id, destination and lease token matter to the
/// store.
fn as_leased(h: &Held) -> Event {
    Event {
        id: h.id.clone(),
        route: String::new(),
        destination: h.destination.clone(),
        idempotency_key: String::new(),
        state: State::Delivering,
        received_ms: UnixMs::EPOCH,
        age_from_ms: UnixMs::EPOCH,
        next_attempt_ms: UnixMs::EPOCH,
        attempts: 0,
        budget_from: 0,
        replays: 0,
        finished_ms: None,
        last_status: None,
        last_error: None,
        dead_reason: None,
        verified_key: None,
        method: String::new(),
        target: String::new(),
        headers: Vec::new(),
        body: None,
        body_len: 0,
        lease: Some(h.lease.clone()),
        head: None,
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn run_engine(rt: &tokio::runtime::Runtime, engine: Engine) {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        // The sequences run against real stores: keep shrinking bounded.
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..Config::default()
    });
    let steps = proptest::collection::vec(step(), 1..80);
    let result = runner.run(&steps, |steps| rt.block_on(run_case(&engine, &steps)));
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn the_embedded_store_behaves_as_the_model_under_random_sequences() {
    let rt = runtime();
    run_engine(&rt, Engine::Embedded);
}

#[test]
fn the_postgres_store_behaves_as_the_model_under_random_sequences() {
    let rt = runtime();
    let server = rt.block_on(PostgresServer::start());
    run_engine(&rt, Engine::Postgres(server.url()));
    drop(server);
}
