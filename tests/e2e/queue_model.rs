//! A model-based test of the queue store's state machine, on both engines.
//!
//! Random sequences of what the pipeline, the delivery worker, the clock and an operator do
//! to the store (ingest, with or without a free delivery slot; lease; start an attempt;
//! renew; settle with a 2xx, a failure or a final answer; give leases back; time passing
//! leases by; a restart; retry; retry-dead; drop; purge) run against the real store, the
//! embedded one in a fresh directory and PostgreSQL on a real server, and against a plain
//! in-memory model of what the store promises (`src/delivery/store.rs`). After every step
//! every event the model knows is read back from the store and compared field by field, and
//! every answer the store gave (what a lease picked, whether a settle changed the event,
//! the attempt count a start returned) must be the model's.
//!
//! What that pins down, among the rest:
//! - `attempts` counts the attempts started, never a lease (leases that lapse and are taken
//!   again add nothing), and survives restarts;
//! - a 2xx wins: once delivered, an event is never anything else, whatever raced with the
//!   settle (a lapsed lease, a restart, an operator's retry);
//! - a settle says whether it changed the event, so a dead letter is counted once;
//! - a lease picks only due events, oldest first, at most as many as asked.
//!
//! `PROPTEST_CASES` sets the number of sequences per engine (default 64).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hookgate::delivery::event::{Event, Lease, NewDelivery, NewEvent, State};
use hookgate::delivery::retry::DeadReason;
use hookgate::delivery::store::{Filter, Ingested, Settle};
use hookgate::delivery::{QueueStore, UnixMs};
use hookgate::metrics::Metrics;
use hookgate::model::{QueueStoreConfig, Retention};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::pg_server::PostgresServer;

const ROUTES: usize = 2;
const LEASE_MS: i64 = 30_000;
const DEDUP_TTL_MS: i64 = 120_000;

/// One thing done to the store. Indexes (`which`) pick among what exists at that step,
/// modulo its length, so any sequence is meaningful.
#[derive(Clone, Debug)]
enum Step {
    Ingest {
        route: usize,
        dedup: Option<u8>,
        /// A delivery slot was free: stored leased, with attempt 1 started.
        slot_free: bool,
    },
    Lease {
        route: usize,
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
    Retry {
        which: usize,
    },
    RetryDead {
        route: usize,
    },
    Drop {
        which: usize,
    },
    Purge,
    /// An operator pauses a route, or resumes it.
    Pause {
        route: usize,
    },
    Resume {
        route: usize,
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
    prop_oneof![
        5 => (route.clone(), proptest::option::weighted(0.4, 0u8..4), any::<bool>())
            .prop_map(|(route, dedup, slot_free)| Step::Ingest { route, dedup, slot_free }),
        4 => (route.clone(), 0usize..4, any::<bool>())
            .prop_map(|(route, limit, start)| Step::Lease { route, limit, start }),
        4 => any::<usize>().prop_map(|which| Step::Start { which }),
        1 => Just(Step::Renew),
        5 => (any::<usize>(), prop_oneof![
                3 => Just(Outcome::Delivered),
                2 => (0i64..60_000).prop_map(Outcome::RetryIn),
                1 => prop::sample::select(DeadReason::ALL.to_vec()).prop_map(Outcome::Dead),
            ]).prop_map(|(which, outcome)| Step::Settle { which, outcome }),
        1 => any::<usize>().prop_map(|which| Step::Release { which }),
        3 => prop_oneof![1 => Just(1_000i64), 2 => Just(LEASE_MS + 1), 1 => 0i64..200_000]
            .prop_map(|ms| Step::Advance { ms }),
        1 => Just(Step::Restart),
        1 => any::<usize>().prop_map(|which| Step::Retry { which }),
        1 => route.clone().prop_map(|route| Step::RetryDead { route }),
        1 => any::<usize>().prop_map(|which| Step::Drop { which }),
        1 => Just(Step::Purge),
        1 => route.clone().prop_map(|route| Step::Pause { route }),
        1 => route.clone().prop_map(|route| Step::Resume { route }),
    ]
}

/// What the store promises about one event.
#[derive(Clone, Debug, PartialEq)]
struct Modelled {
    route: String,
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

/// A lease as a worker holds it: possibly stale.
#[derive(Clone, Debug)]
struct Held {
    id: String,
    lease: String,
}

struct Model {
    events: BTreeMap<String, Modelled>,
    now: i64,
    /// Paused routes, since when.
    pauses: BTreeMap<String, i64>,
}

impl Model {
    fn due_key(e: &Modelled) -> (i64, i64) {
        (e.next_attempt_ms, e.received_ms)
    }

    fn is_due(&self, e: &Modelled, route: &str) -> bool {
        e.route == route
            && e.next_attempt_ms <= self.now
            && match e.state {
                State::Queued | State::Retrying => true,
                State::Delivering => e.leased_until.is_some_and(|u| u < self.now),
                State::Delivered | State::Dead | State::Filtered => false,
            }
    }

    fn held_by(&self, h: &Held) -> Option<&Modelled> {
        self.events
            .get(&h.id)
            .filter(|e| e.state == State::Delivering && e.lease.as_deref() == Some(&h.lease))
    }

    fn release(e: &mut Modelled) {
        e.state = if e.attempts == 0 {
            State::Queued
        } else {
            State::Retrying
        };
        e.lease = None;
        e.leased_until = None;
    }
}

/// Which engine a case runs against.
#[derive(Clone)]
enum Engine {
    Embedded,
    Postgres(String),
}

static CASE: AtomicUsize = AtomicUsize::new(0);

async fn open(engine: &Engine, dir: &std::path::Path) -> QueueStore {
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

/// Runs one sequence against a fresh store of `engine` and the model.
async fn run_case(engine: &Engine, steps: &[Step]) -> Result<(), TestCaseError> {
    let case = CASE.fetch_add(1, Ordering::SeqCst);
    let tag = format!("m{}x{case}", std::process::id());
    let dir = crate::support::temp_dir(&format!("model-{case}"));
    let routes: Vec<String> = (0..ROUTES).map(|r| format!("{tag}-r{r}")).collect();
    let mut store = open(engine, &dir).await;
    let mut model = Model {
        events: BTreeMap::new(),
        now: 1_700_000_000_000,
        pauses: BTreeMap::new(),
    };
    let mut held: Vec<Held> = Vec::new();
    let mut next_id = 0usize;
    let result = async {
        for (n, step) in steps.iter().enumerate() {
            apply(
                &mut store,
                engine,
                &dir,
                &routes,
                &tag,
                &mut model,
                &mut held,
                &mut next_id,
                step,
            )
            .await
            .map_err(|e| TestCaseError::fail(format!("step {n} {step:?}: {e}")))?;
            compare(&store, &model, &routes)
                .await
                .map_err(|e| TestCaseError::fail(format!("after step {n} {step:?}: {e}")))?;
        }
        Ok(())
    }
    .await;
    store.close().await;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[allow(clippy::too_many_arguments)]
async fn apply(
    store: &mut QueueStore,
    engine: &Engine,
    dir: &std::path::Path,
    routes: &[String],
    tag: &str,
    model: &mut Model,
    held: &mut Vec<Held>,
    next_id: &mut usize,
    step: &Step,
) -> Result<(), TestCaseError> {
    let now = model.now;
    match step {
        Step::Ingest {
            route,
            dedup,
            slot_free,
        } => {
            let id = format!("{tag}-e{next_id}");
            *next_id += 1;
            let route = &routes[*route];
            let dedup = dedup.map(|d| format!("key-{d}"));
            let lease = slot_free.then(|| Lease {
                token: format!("{id}-ingest"),
                until_ms: UnixMs(now + LEASE_MS),
            });
            let event = NewEvent {
                id: id.clone(),
                route: route.clone(),
                dedup_key: dedup.clone(),
                dedup_until: dedup.as_ref().map(|_| UnixMs(now + DEDUP_TTL_MS)),
                received_ms: UnixMs(now),
                verified_key: Some(0),
                method: "POST".into(),
                target: "/hook".into(),
                headers: b"content-type: application/json\r\n".to_vec(),
                body: Bytes::from(format!("{{\"id\":\"{id}\"}}")),
                deliveries: vec![NewDelivery {
                    destination: String::new(),
                    idempotency_key: id.clone(),
                    lease: lease.clone(),
                }],
            };
            let got = store.ingest(event).await.map_err(fail)?;
            let first = dedup.as_ref().and_then(|key| {
                model
                    .events
                    .iter()
                    .find(|(_, e)| e.route == *route && e.dedup.as_ref() == Some(key))
            });
            match first {
                Some((first_id, e)) => check(
                    got == Ingested::Duplicate {
                        id: first_id.clone(),
                        state: e.state,
                    },
                    || {
                        format!(
                            "expected a duplicate of {first_id} ({:?}), got {got:?}",
                            e.state
                        )
                    },
                )?,
                None => {
                    check(got == Ingested::Stored, || {
                        format!("expected stored, got {got:?}")
                    })?;
                    model.events.insert(
                        id.clone(),
                        Modelled {
                            route: route.clone(),
                            dedup: dedup.clone(),
                            dedup_until: dedup.as_ref().map(|_| now + DEDUP_TTL_MS),
                            state: if lease.is_some() {
                                State::Delivering
                            } else {
                                State::Queued
                            },
                            received_ms: now,
                            age_from_ms: now,
                            next_attempt_ms: now,
                            attempts: u32::from(lease.is_some()),
                            budget_from: 0,
                            lease: lease.as_ref().map(|l| l.token.clone()),
                            leased_until: lease.as_ref().map(|l| l.until_ms.as_i64()),
                            finished_ms: None,
                            last_status: None,
                            dead_reason: None,
                        },
                    );
                    if let Some(l) = lease {
                        held.push(Held { id, lease: l.token });
                    }
                }
            }
        }
        Step::Lease {
            route,
            limit,
            start,
        } => {
            let route = &routes[*route];
            let leased = store
                .lease(
                    (route, ""),
                    *limit,
                    UnixMs(now),
                    UnixMs(now + LEASE_MS),
                    *start,
                )
                .await
                .map_err(fail)?;
            let mut due: Vec<(String, Modelled)> = model
                .events
                .iter()
                .filter(|(_, e)| model.is_due(e, route))
                .map(|(id, e)| (id.clone(), e.clone()))
                .collect();
            due.sort_by_key(|(_, e)| Model::due_key(e));
            check(leased.len() == (*limit).min(due.len()), || {
                format!(
                    "leased {} of {} due with limit {limit}",
                    leased.len(),
                    due.len()
                )
            })?;
            // Oldest due first: nothing left behind is due before anything picked.
            let picked: Vec<&str> = leased.iter().map(|e| e.id.as_str()).collect();
            let latest_picked = leased
                .iter()
                .map(|e| {
                    model
                        .events
                        .get(&e.id)
                        .map(Model::due_key)
                        .unwrap_or((i64::MAX, i64::MAX))
                })
                .max();
            for (id, e) in &due {
                if !picked.contains(&id.as_str()) {
                    check(latest_picked.is_none_or(|l| Model::due_key(e) >= l), || {
                        format!("{id} was due before the events leased {picked:?}")
                    })?;
                }
            }
            for e in &leased {
                check(due.iter().any(|(id, _)| *id == e.id), || {
                    format!("{} was leased but is not due", e.id)
                })?;
                check(e.body.is_some() && e.state == State::Delivering, || {
                    format!("{} leased without its request or state", e.id)
                })?;
                let token = e
                    .lease
                    .clone()
                    .ok_or_else(|| TestCaseError::fail("a lease without a token"))?;
                let m = model.events.get_mut(&e.id).expect("checked due above");
                m.attempts += u32::from(*start);
                check(e.attempts == m.attempts, || {
                    format!(
                        "{}: leased (start {start}) with attempts {}, model {}",
                        e.id, e.attempts, m.attempts
                    )
                })?;
                m.state = State::Delivering;
                m.lease = Some(token.clone());
                m.leased_until = Some(now + LEASE_MS);
                held.push(Held {
                    id: e.id.clone(),
                    lease: token,
                });
            }
        }
        Step::Start { which } => {
            let Some(h) = pick(held, *which) else {
                return Ok(());
            };
            let event = as_leased(&h);
            let got = store
                .start(&event, UnixMs(now + LEASE_MS))
                .await
                .map_err(fail)?;
            let want = match model.events.get_mut(&h.id) {
                Some(e) if e.state == State::Delivering && e.lease.as_deref() == Some(&h.lease) => {
                    e.attempts += 1;
                    e.leased_until = Some(now + LEASE_MS);
                    Some(e.attempts)
                }
                _ => None,
            };
            check(got == want, || {
                format!("start of {}: {got:?}, want {want:?}", h.id)
            })?;
        }
        Step::Renew => {
            let pairs: Vec<(String, String)> = held
                .iter()
                .map(|h| (h.id.clone(), h.lease.clone()))
                .collect();
            let got = store
                .renew(pairs, UnixMs(now + LEASE_MS))
                .await
                .map_err(fail)?;
            let mut want = 0;
            for h in held.iter() {
                if model.held_by(h).is_some() {
                    want += 1;
                    let e = model.events.get_mut(&h.id).expect("held_by found it");
                    e.leased_until = Some(now + LEASE_MS);
                }
            }
            check(got == want, || format!("renewed {got}, want {want}"))?;
        }
        Step::Settle { which, outcome } => {
            let Some(h) = pick(held, *which) else {
                return Ok(());
            };
            let event = as_leased(&h);
            let (settle, status) = match *outcome {
                Outcome::Delivered => (Settle::Delivered { status: 200 }, 200),
                Outcome::RetryIn(ms) => (
                    Settle::Retry {
                        at_ms: UnixMs(now + ms),
                        status: Some(503),
                        error: "app answered 503".into(),
                    },
                    503,
                ),
                Outcome::Dead(reason) => (
                    Settle::Dead {
                        reason,
                        status: Some(422),
                        error: "app answered 422".into(),
                    },
                    422,
                ),
            };
            let got = store
                .settle(&event, settle, UnixMs(now))
                .await
                .map_err(fail)?;
            let holds = model.held_by(&h).is_some();
            let want = match (model.events.get_mut(&h.id), *outcome) {
                // A 2xx wins, in any state but delivered.
                (Some(e), Outcome::Delivered) if e.state != State::Delivered => {
                    e.state = State::Delivered;
                    e.finished_ms = Some(now);
                    e.last_status = Some(status);
                    e.dead_reason = None;
                    e.lease = None;
                    e.leased_until = None;
                    true
                }
                (Some(e), Outcome::RetryIn(ms)) if holds => {
                    e.state = State::Retrying;
                    e.next_attempt_ms = now + ms;
                    e.last_status = Some(status);
                    e.lease = None;
                    e.leased_until = None;
                    true
                }
                (Some(e), Outcome::Dead(reason)) if holds => {
                    e.state = State::Dead;
                    e.finished_ms = Some(now);
                    e.last_status = Some(status);
                    e.dead_reason = Some(reason.label());
                    e.lease = None;
                    e.leased_until = None;
                    true
                }
                _ => false,
            };
            check(got == want, || {
                format!(
                    "settle {outcome:?} of {} changed it: {got}, want {want}",
                    h.id
                )
            })?;
            held.retain(|x| x.id != h.id || x.lease != h.lease);
        }
        Step::Release { which } => {
            let Some(h) = pick(held, *which) else {
                return Ok(());
            };
            let got = store
                .release(vec![(h.id.clone(), h.lease.clone())])
                .await
                .map_err(fail)?;
            let want = if model.held_by(&h).is_some() {
                Model::release(model.events.get_mut(&h.id).expect("held"));
                1
            } else {
                0
            };
            check(got == want, || format!("released {got}, want {want}"))?;
            held.retain(|x| x.id != h.id || x.lease != h.lease);
        }
        Step::Advance { ms } => model.now += ms,
        Step::Restart => {
            store.close().await;
            *store = open(engine, dir).await;
            held.clear();
            if let Engine::Embedded = engine {
                // One process per directory: whatever was leased belonged to the one that
                // ended, and is released on open.
                for e in model.events.values_mut() {
                    if e.state == State::Delivering {
                        Model::release(e);
                    }
                }
            }
            // PostgreSQL: the leases stay until they run out (another replica may be alive).
        }
        Step::Retry { which } => {
            let ids: Vec<String> = model.events.keys().cloned().collect();
            let Some(id) = pick(&ids, *which) else {
                return Ok(());
            };
            let got = store.retry(&id, None, UnixMs(now)).await.map_err(fail)? == 1;
            let e = model.events.get_mut(&id).expect("picked from the model");
            let want = matches!(e.state, State::Dead | State::Retrying);
            if want {
                retried(e, now);
            }
            check(got == want, || format!("retry of {id}: {got}, want {want}"))?;
        }
        Step::RetryDead { route } => {
            let route = &routes[*route];
            let got = store
                .retry_dead(route, None, UnixMs(now))
                .await
                .map_err(fail)?;
            let mut want = 0;
            for e in model.events.values_mut() {
                if e.route == *route && e.state == State::Dead {
                    retried(e, now);
                    want += 1;
                }
            }
            check(got == want, || format!("retried {got} dead, want {want}"))?;
        }
        Step::Drop { which } => {
            let ids: Vec<String> = model.events.keys().cloned().collect();
            let Some(id) = pick(&ids, *which) else {
                return Ok(());
            };
            let got = store.remove(&id, None).await.map_err(fail)? == 1;
            let want = model.events[&id].state != State::Delivering;
            if want {
                model.events.remove(&id);
            }
            check(got == want, || format!("drop of {id}: {got}, want {want}"))?;
        }
        Step::Purge => {
            // Delivered events kept 60 s, dead ones 120 s.
            let (delivered_before, dead_before) = (now - 60_000, now - 120_000);
            store
                .purge(UnixMs(delivered_before), UnixMs(dead_before), UnixMs(now))
                .await
                .map_err(fail)?;
            model.events.retain(|_, e| {
                let finished_past = match (e.state, e.finished_ms) {
                    (State::Delivered, Some(f)) => f < delivered_before,
                    (State::Dead, Some(f)) => f < dead_before,
                    _ => false,
                };
                let window_past = e.dedup_until.is_none_or(|u| u < now);
                !(finished_past && window_past)
            });
        }
        Step::Pause { route } => {
            let route = &routes[*route];
            let newly = store.pause(route, "", UnixMs(now)).await.map_err(fail)?;
            let want = !model.pauses.contains_key(route);
            check(newly == want, || {
                format!("pause said newly paused {newly}, the model {want}")
            })?;
            model.pauses.entry(route.clone()).or_insert(now);
        }
        Step::Resume { route } => {
            let route = &routes[*route];
            let got = store.resume(route, "", UnixMs(now)).await.map_err(fail)?;
            let want = model.pauses.remove(route);
            check(got.map(UnixMs::as_i64) == want, || {
                format!("resume said paused since {got:?}, the model {want:?}")
            })?;
            if let Some(since) = want {
                // The pause does not count in a pending event's age.
                for e in model.events.values_mut().filter(|e| {
                    e.route == *route
                        && !matches!(e.state, State::Delivered | State::Dead)
                        && e.age_from_ms < now
                }) {
                    e.age_from_ms += now - e.age_from_ms.max(since);
                }
            }
        }
    }
    Ok(())
}

/// An operator's retry, as the model has it.
fn retried(e: &mut Modelled, now: i64) {
    e.state = State::Retrying;
    e.next_attempt_ms = now;
    e.age_from_ms = now;
    e.budget_from = e.attempts;
    e.finished_ms = None;
    e.dead_reason = None;
}

fn pick<T: Clone>(items: &[T], which: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[which % items.len()].clone())
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("store error: {e}"))
}

/// A worker's copy of a leased event: only its id and lease token matter to the store.
fn as_leased(h: &Held) -> Event {
    Event {
        id: h.id.clone(),
        route: String::new(),
        destination: String::new(),
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

/// Every event the model knows is in the store as the model has it, and the store holds no
/// other event of these routes.
async fn compare(store: &QueueStore, model: &Model, routes: &[String]) -> Result<(), String> {
    let pauses: BTreeMap<String, i64> = store
        .pauses()
        .await
        .map_err(|e| format!("pauses: {e}"))?
        .into_iter()
        .filter(|p| routes.contains(&p.route))
        .map(|p| (p.route, p.since.as_i64()))
        .collect();
    if pauses != model.pauses {
        return Err(format!(
            "pauses: store {pauses:?}, model {:?}",
            model.pauses
        ));
    }
    let mut stored: HashMap<String, Event> = HashMap::new();
    for route in routes {
        let events = store
            .list(Filter {
                route: Some(route.clone()),
                limit: 10_000,
                ..Filter::default()
            })
            .await
            .map_err(|e| format!("list: {e}"))?;
        for e in events {
            stored.insert(e.id.clone(), e);
        }
    }
    let extra: Vec<&String> = stored
        .keys()
        .filter(|id| !model.events.contains_key(*id))
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "the store holds events the model does not: {extra:?}"
        ));
    }
    for (id, m) in &model.events {
        let Some(e) = stored.get(id) else {
            return Err(format!("{id} ({:?}) is missing from the store", m.state));
        };
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
                "{id}: store has (state, attempts, budget_from, lease, finished, status, \
                 dead_reason, age_from) {got:?}, model {want:?}"
            ));
        }
        if matches!(m.state, State::Queued | State::Retrying)
            && e.next_attempt_ms.as_i64() != m.next_attempt_ms
        {
            return Err(format!(
                "{id}: due at {} in the store, {} in the model",
                e.next_attempt_ms, m.next_attempt_ms
            ));
        }
    }
    Ok(())
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
    let steps = proptest::collection::vec(step(), 1..60);
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
