//! The queue store's conformance suite: every case runs against both engines, the embedded
//! store (SQLite in a fresh directory) and PostgreSQL (a real server on loopback, a fresh
//! database per case), through the one API the pipeline, the worker and the admin API use
//! ([`QueueStore`]). What the state machine in `src/delivery/store.rs` promises is asserted
//! here once; the engine decides nothing. (After riverqueue/river's `riverdrivertest`.)
//!
//! An event fanned out to several destinations is a row per destination sharing one stored
//! request (an event none takes, one `filtered` record): the fan-out cases check that
//! through the API on both engines, and on PostgreSQL also count the requests table (the
//! embedded store's file is not opened here).
//!
//! Tests of what only one engine has stay beside it: the embedded store's directory, lock,
//! schema migrations, group commit, WAL and `max_bytes` in `src/delivery/embedded_tests.rs`.
//!
//! Every case gets a fresh store and passes the clock in ([`T0`] and offsets from it), so due
//! times, lease expiry and retention are exact, not timing-dependent. The cases of one engine
//! run one after the other in one test (one PostgreSQL server for all of them); each case's
//! failure is reported by name, and `QUEUE_STORE_CASE=part_of_a_name` runs only the cases
//! whose name contains it.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookgate::delivery::event::{Event, Lease, NewDelivery, NewEvent, State};
use hookgate::delivery::retry::DeadReason;
use hookgate::delivery::store::{Depth, Filter, Ingested, Paused, Settle};
use hookgate::delivery::{QueueStore, UnixMs};
use hookgate::metrics::Metrics;
use hookgate::model::{QueueStoreConfig, Retention};

use crate::pg_server::PostgresServer;

/// A fixed "now" (2023-11-14): every clock value in these cases is an offset from it.
const T0: UnixMs = UnixMs(1_700_000_000_000);
const ROUTE: &str = "github";

/// `offset_ms` after [`T0`].
fn at(offset_ms: u64) -> UnixMs {
    T0.after(Duration::from_millis(offset_ms))
}

// ---------------------------------------------------------------------------------------
// The engines, and a fresh store of one for each case

/// Which engine a case runs against.
#[derive(Clone)]
enum Engine {
    Embedded,
    /// The server's `postgres://…/` URL without a database: each case makes its own.
    Postgres {
        server_url: String,
    },
}

/// The store a case is given, and how to open it again.
struct Subject {
    store: Arc<QueueStore>,
    config: QueueStoreConfig,
    /// The embedded store's directory; unused for PostgreSQL.
    _dir: Scratch,
}

/// A directory removed when the case ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Subject {
    /// A fresh, empty store of `engine`: a new directory, or a new database.
    async fn fresh(engine: &Engine) -> Subject {
        static CASE: AtomicUsize = AtomicUsize::new(0);
        let n = CASE.fetch_add(1, Ordering::Relaxed);
        let dir = crate::support::temp_dir(&format!("queue-store-{n}"));
        let config = match engine {
            Engine::Embedded => QueueStoreConfig::Embedded {
                path: dir.clone(),
                max_bytes: None,
                retention: Retention::default(),
            },
            Engine::Postgres { server_url } => QueueStoreConfig::Postgres {
                url: fresh_database(server_url, &format!("case_{n}")).await,
                pool_size: 4,
                timeout: Duration::from_secs(10),
                ca_file: None,
                retention: Retention::default(),
            },
        };
        let store = QueueStore::open(&config, Arc::new(Metrics::new()))
            .await
            .expect("a fresh store opens");
        Subject {
            store: Arc::new(store),
            config,
            _dir: Scratch(dir),
        }
    }

    /// Closes the store, as a shutdown does, and opens it again, as the next start does.
    async fn reopen(self) -> Subject {
        let store = Arc::into_inner(self.store).expect("no case task still holds the store");
        store.close().await;
        drop(store);
        let store = QueueStore::open(&self.config, Arc::new(Metrics::new()))
            .await
            .expect("the store opens again");
        Subject {
            store: Arc::new(store),
            ..self
        }
    }
}

/// Creates the database `name` on the server and returns its URL.
async fn fresh_database(server_url: &str, name: &str) -> String {
    let (client, connection) = tokio_postgres::connect(server_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a database for the case");
    drop(client);
    let _ = connection.await;
    let (base, _) = server_url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

type Case = fn(Subject) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every case, by name: each an `async fn(Subject)`.
macro_rules! cases {
    ($($name:ident,)*) => {
        const CASES: &[(&str, Case)] = &[$((stringify!($name), |s| Box::pin($name(s))),)*];
    };
}

cases! {
    an_ingested_event_is_leased_once_with_its_exact_request,
    lease_takes_at_most_limit_events_oldest_due_first,
    an_event_is_not_leased_before_it_is_due_nor_by_another_route,
    a_lease_of_zero_events_leases_nothing,
    next_due_is_the_soonest_pending_time_of_the_route,
    a_delivered_event_records_its_status_and_finish_time_and_is_not_leased_again,
    a_retried_event_is_leased_again_only_once_its_time_has_come,
    a_dead_event_records_why_and_is_never_leased_again,
    a_stale_lease_cannot_settle_an_event_another_worker_took,
    a_failure_without_the_lease_changes_nothing_but_a_2xx_always_wins,
    a_second_event_with_the_same_dedup_key_is_a_duplicate_of_the_first,
    the_same_dedup_key_on_another_route_is_another_event,
    events_without_a_dedup_key_never_collide,
    concurrent_duplicates_store_exactly_one_event,
    retrying_a_dead_event_makes_it_due_now_with_a_fresh_age,
    retrying_a_delivered_or_unknown_event_is_refused,
    retrying_an_event_being_delivered_is_refused,
    retry_dead_revives_only_that_routes_dead_events,
    remove_deletes_a_dead_event_but_not_one_being_delivered,
    purge_deletes_finished_events_past_retention_but_keeps_a_live_dedup_window,
    purge_never_deletes_pending_or_leased_events,
    list_filters_by_route_state_and_page_without_bodies,
    get_reads_one_event_with_or_without_its_body,
    an_empty_body_is_stored_and_read_back_empty,
    depths_count_events_by_route_and_state_with_the_oldest_receive_time,
    an_empty_store_has_no_depths,
    an_event_stored_leased_is_not_leased_again_until_its_lease_runs_out,
    an_event_being_delivered_is_next_due_when_its_lease_runs_out_and_delivered_ones_are_not_counted,
    a_reopened_store_finds_its_events,
    a_pause_is_stored_once_and_resuming_moves_pending_ages_past_it,
    a_fanned_out_event_stores_one_request_and_each_destination_leases_only_its_row,
    a_fanned_out_event_stored_with_one_slot_free_leases_only_that_row,
    a_filtered_event_is_one_finished_row_never_leased_and_purged_with_the_delivered,
    a_duplicate_of_a_fanned_out_event_answers_what_its_deliveries_add_up_to,
    a_duplicate_of_a_filtered_event_is_answered_delivered,
    dropping_the_delivery_that_carries_the_dedup_key_keeps_the_event_a_duplicate,
    purge_takes_a_fanned_out_event_whole_once_every_delivery_is_past_retention,
    purge_keeps_a_fanned_out_event_for_its_dedup_window,
    retry_and_remove_name_one_destination_or_all,
    resuming_one_destination_moves_only_its_ages_and_resuming_the_route_moves_all,
    list_pages_through_every_delivery_of_fanned_out_events_exactly_once,
}

/// Runs every case (or those `QUEUE_STORE_CASE` names) against a fresh store of `engine`,
/// each in a task of its own so that one failing does not hide the others; fails naming
/// each case that failed.
async fn run_suite(engine: Engine) {
    let only = std::env::var("QUEUE_STORE_CASE").unwrap_or_default();
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, case) in CASES
        .iter()
        .filter(|(name, _)| name.contains(only.as_str()))
    {
        let subject = Subject::fresh(&engine).await;
        ran += 1;
        if let Err(e) = tokio::spawn(case(subject)).await {
            eprintln!("queue store case {name} FAILED: {e}");
            failed.push(*name);
        }
    }
    assert!(ran > 0, "no case is named like {only:?}");
    eprintln!("queue store suite: {ran} cases, {} failed", failed.len());
    assert!(
        failed.is_empty(),
        "{} of {ran} cases failed: {failed:?}",
        failed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_keeps_every_promise_of_the_state_machine() {
    run_suite(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_every_promise_of_the_state_machine() {
    let server = PostgresServer::start().await;
    run_suite(Engine::Postgres {
        server_url: server.url(),
    })
    .await;
    drop(server);
}

// ---------------------------------------------------------------------------------------
// Helpers

/// An event of `route` received at `received_ms`, with a body that is not text.
fn new_event(id: &str, route: &str, received_ms: UnixMs) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        route: route.to_owned(),
        dedup_key: None,
        dedup_until: None,
        idempotency_key: format!("idem-{id}"),
        received_ms,
        verified_key: Some(1),
        method: "POST".to_owned(),
        target: "/hooks/push?source=ci&x=%20".to_owned(),
        headers: b"content-type: application/json\r\nx-hub-signature-256: sha256=ab\r\n".to_vec(),
        body: Bytes::from([format!("{{\"id\":\"{id}\"}}").as_bytes(), b"\0\xff\r\n"].concat()),
        deliveries: vec![NewDelivery {
            destination: String::new(),
            idempotency_key: format!("idem-{id}"),
            lease: None,
        }],
    }
}

/// `event` stored leased, with its first attempt started, under `lease`.
fn with_lease(mut event: NewEvent, lease: &Lease) -> NewEvent {
    event.deliveries[0].lease = Some(lease.clone());
    event
}

/// `new_event` with a dedup key remembered until `dedup_until`.
fn deduped(id: &str, route: &str, received_ms: UnixMs, key: &str, dedup_until: UnixMs) -> NewEvent {
    NewEvent {
        dedup_key: Some(key.to_owned()),
        dedup_until: Some(dedup_until),
        ..new_event(id, route, received_ms)
    }
}

async fn stored(store: &QueueStore, event: NewEvent) {
    let id = event.id.clone();
    assert_eq!(
        store.ingest(event).await.expect("ingest"),
        Ingested::Stored,
        "{id}"
    );
}

async fn get(store: &QueueStore, id: &str) -> Event {
    store
        .get(id, false)
        .await
        .expect("get")
        .pop()
        .unwrap_or_else(|| panic!("{id} is not stored"))
}

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

/// Leases the one due event of `route` (there must be exactly one) and returns its copy.
async fn lease_one(store: &QueueStore, route: &str, now: UnixMs, until: UnixMs) -> Event {
    let mut leased = store
        .lease((route, ""), 10, now, until, false)
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1, "{:?}", ids(&leased));
    leased.remove(0)
}

/// Leases exactly one event of `route` due by `now`.
async fn lease_one_of(store: &QueueStore, route: &str, now: UnixMs) -> Event {
    let mut leased = store
        .lease(
            (route, ""),
            1,
            now,
            now.after(Duration::from_secs(30)),
            false,
        )
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    leased.remove(0)
}

fn dead(status: Option<u16>, error: &str) -> Settle {
    Settle::Dead {
        reason: DeadReason::Refused,
        status,
        error: error.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Ingest and lease

async fn an_ingested_event_is_leased_once_with_its_exact_request(s: Subject) {
    let store = &*s.store;
    let event = new_event("e1", ROUTE, at(0));
    let sent = event.clone();
    stored(store, event).await;

    let leased = lease_one(store, ROUTE, at(0), at(30_000)).await;
    assert_eq!(leased.id, "e1");
    assert_eq!(leased.route, ROUTE);
    assert_eq!(leased.body.as_ref(), Some(&sent.body));
    assert_eq!(leased.body_len, sent.body.len() as u64);
    assert_eq!(leased.headers, sent.headers);
    assert_eq!(leased.method, "POST");
    assert_eq!(leased.target, sent.target);
    assert_eq!(leased.idempotency_key, "idem-e1");
    assert_eq!(leased.verified_key, Some(1));
    assert_eq!(leased.received_ms, at(0));
    assert_eq!(leased.age_from_ms, at(0));
    assert_eq!(leased.attempts, 0, "a lease is not an attempt");
    assert_eq!(leased.state, State::Delivering);
    assert!(
        leased.lease.as_deref().is_some_and(|l| !l.is_empty()),
        "a leased copy carries its lease token: {:?}",
        leased.lease
    );
    // The stored head is one the worker can send as is.
    let (method, target, headers) = leased.clone().request_head().expect("readable head");
    assert_eq!(method, http::Method::POST);
    assert_eq!(target.as_str(), sent.target);
    assert_eq!(headers["x-hub-signature-256"], "sha256=ab");

    let again = store
        .lease((ROUTE, ""), 10, at(1), at(30_000), false)
        .await
        .unwrap();
    assert!(again.is_empty(), "leased twice: {:?}", ids(&again));
    assert_eq!(get(store, "e1").await.state, State::Delivering);
}

async fn lease_takes_at_most_limit_events_oldest_due_first(s: Subject) {
    let store = &*s.store;
    // Stored out of order: the lease orders by due time, not by arrival at the store.
    for (id, at) in [("c", at(3)), ("a", at(1)), ("d", at(4)), ("b", at(2))] {
        stored(store, new_event(id, ROUTE, at)).await;
    }

    let first = store
        .lease((ROUTE, ""), 2, at(10), at(30_000), false)
        .await
        .unwrap();
    assert_eq!(ids(&first), ["a", "b"]);
    let second = store
        .lease((ROUTE, ""), 2, at(10), at(30_000), false)
        .await
        .unwrap();
    assert_eq!(ids(&second), ["c", "d"]);
    assert!(store
        .lease((ROUTE, ""), 2, at(10), at(30_000), false)
        .await
        .unwrap()
        .is_empty());
}

async fn an_event_is_not_leased_before_it_is_due_nor_by_another_route(s: Subject) {
    let store = &*s.store;
    stored(store, new_event("now", ROUTE, at(0))).await;
    stored(store, new_event("later", ROUTE, at(5_000))).await;
    stored(store, new_event("other", "stripe", at(0))).await;

    let leased = store
        .lease((ROUTE, ""), 10, at(0), at(30_000), false)
        .await
        .unwrap();
    assert_eq!(ids(&leased), ["now"]);
    assert_eq!(get(store, "later").await.state, State::Queued);
    assert_eq!(get(store, "other").await.state, State::Queued);
    // Due exactly at its time, not a millisecond before.
    assert!(store
        .lease((ROUTE, ""), 10, at(4_999), at(30_000), false)
        .await
        .unwrap()
        .is_empty());
    let leased = store
        .lease((ROUTE, ""), 10, at(5_000), at(30_000), false)
        .await
        .unwrap();
    assert_eq!(ids(&leased), ["later"]);
}

async fn a_lease_of_zero_events_leases_nothing(s: Subject) {
    let store = &*s.store;
    stored(store, new_event("e1", ROUTE, at(0))).await;
    assert!(store
        .lease((ROUTE, ""), 0, at(0), at(30_000), false)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(get(store, "e1").await.state, State::Queued);
    assert_eq!(get(store, "e1").await.attempts, 0);
}

async fn next_due_is_the_soonest_pending_time_of_the_route(s: Subject) {
    let store = &*s.store;
    assert_eq!(store.next_due((ROUTE, "")).await.unwrap(), None);
    stored(store, new_event("late", ROUTE, at(9_000))).await;
    stored(store, new_event("soon", ROUTE, at(2_000))).await;
    stored(store, new_event("other", "stripe", at(0))).await;
    assert_eq!(store.next_due((ROUTE, "")).await.unwrap(), Some(at(2_000)));

    let soon = lease_one(store, ROUTE, at(2_000), at(32_000)).await;
    store
        .settle(&soon, Settle::Delivered { status: 200 }, at(2_100))
        .await
        .unwrap();
    assert_eq!(store.next_due((ROUTE, "")).await.unwrap(), Some(at(9_000)));
}

// ---------------------------------------------------------------------------------------
// Settle

async fn a_delivered_event_records_its_status_and_finish_time_and_is_not_leased_again(s: Subject) {
    let store = &*s.store;
    stored(store, new_event("e1", ROUTE, at(0))).await;
    let leased = lease_one(store, ROUTE, at(0), at(30_000)).await;
    assert_eq!(store.start(&leased, at(30_000)).await.unwrap(), Some(1));

    let settled = store
        .settle(&leased, Settle::Delivered { status: 204 }, at(150))
        .await
        .unwrap();
    assert!(settled);

    let e = get(store, "e1").await;
    assert_eq!(e.state, State::Delivered);
    assert_eq!(e.last_status, Some(204));
    assert_eq!(e.last_error, None);
    assert_eq!(e.finished_ms, Some(at(150)));
    assert_eq!(e.attempts, 1);
    assert_eq!(e.lease, None);
    assert!(store
        .lease((ROUTE, ""), 10, at(3_600_000), at(3_630_000), false)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_due((ROUTE, "")).await.unwrap(), None);
    // Settling the same lease twice changes nothing.
    assert!(!store
        .settle(&leased, dead(Some(500), "late"), at(200))
        .await
        .unwrap());
    assert_eq!(get(store, "e1").await.state, State::Delivered);
}

async fn a_retried_event_is_leased_again_only_once_its_time_has_come(s: Subject) {
    let store = &*s.store;
    stored(store, new_event("e1", ROUTE, at(0))).await;
    let leased = lease_one(store, ROUTE, at(0), at(30_000)).await;

    let retry = Settle::Retry {
        at_ms: at(60_000),
        status: Some(503),
        error: "upstream answered 503".to_owned(),
    };
    assert!(store.settle(&leased, retry, at(100)).await.unwrap());

    let e = get(store, "e1").await;
    assert_eq!(e.state, State::Retrying);
    assert_eq!(e.next_attempt_ms, at(60_000));
    assert_eq!(e.last_status, Some(503));
    assert_eq!(e.last_error.as_deref(), Some("upstream answered 503"));
    assert_eq!(e.finished_ms, None);
    assert_eq!(e.lease, None);
    assert_eq!(store.next_due((ROUTE, "")).await.unwrap(), Some(at(60_000)));

    assert!(store
        .lease((ROUTE, ""), 10, at(59_999), at(90_000), false)
        .await
        .unwrap()
        .is_empty());
    let again = lease_one(store, ROUTE, at(60_000), at(90_000)).await;
    assert_eq!(again.attempts, 0, "leased twice, never started");
    assert_eq!(again.state, State::Delivering);
    assert_ne!(again.lease, leased.lease, "a new attempt gets a new lease");
    assert_eq!(again.body.as_ref(), leased.body.as_ref());
}

async fn a_dead_event_records_why_and_is_never_leased_again(s: Subject) {
    let store = &*s.store;
    stored(store, new_event("e1", ROUTE, at(0))).await;
    let leased = lease_one(store, ROUTE, at(0), at(30_000)).await;

    let settled = store
        .settle(
            &leased,
            dead(Some(410), "upstream answered 410 Gone"),
            at(80),
        )
        .await
        .unwrap();
    assert!(settled);

    let e = get(store, "e1").await;
    assert_eq!(e.state, State::Dead);
    assert_eq!(e.last_status, Some(410));
    assert_eq!(e.last_error.as_deref(), Some("upstream answered 410 Gone"));
    assert_eq!(e.dead_reason.as_deref(), Some("refused"));
    assert_eq!(e.finished_ms, Some(at(80)));
    assert_eq!(e.lease, None);
    assert_eq!(store.next_due((ROUTE, "")).await.unwrap(), None);
    assert!(store
        .lease((ROUTE, ""), 10, at(86_400_000), at(86_430_000), false)
        .await
        .unwrap()
        .is_empty());
}

async fn a_stale_lease_cannot_settle_an_event_another_worker_took(s: Subject) {
    let store = &*s.store;
    stored(store, new_event("e1", ROUTE, at(0))).await;
    let first = lease_one(store, ROUTE, at(0), at(30_000)).await;

    // Still leased: nobody else may take it.
    assert!(store
        .lease((ROUTE, ""), 10, at(30_000), at(60_000), false)
        .await
        .unwrap()
        .is_empty());
    // The first worker died: once its lease ran out, the event is due again.
    let second = lease_one(store, ROUTE, at(30_001), at(60_000)).await;
    assert_eq!(second.id, "e1");
    assert_eq!(second.attempts, 0);
    assert_eq!(
        store.start(&first, at(90_000)).await.unwrap(),
        None,
        "a stale lease cannot start an attempt"
    );
    assert_ne!(second.lease, first.lease);

    let late = store
        .settle(&first, dead(Some(400), "stale worker"), at(30_002))
        .await
        .unwrap();
    assert!(!late, "a stale lease settled the event");
    let e = get(store, "e1").await;
    assert_eq!(e.state, State::Delivering);
    assert_eq!(e.lease, second.lease);
    assert_eq!(e.last_status, None);
    assert_eq!(e.last_error, None);
    assert_eq!(e.finished_ms, None);

    // The worker that holds the lease now settles it.
    assert!(store
        .settle(&second, Settle::Delivered { status: 200 }, at(30_003))
        .await
        .unwrap());
    assert_eq!(get(store, "e1").await.state, State::Delivered);
}

async fn a_failure_without_the_lease_changes_nothing_but_a_2xx_always_wins(s: Subject) {
    let store = &*s.store;
    stored(store, new_event("e1", ROUTE, at(0))).await;
    lease_one(store, ROUTE, at(0), at(30_000)).await;
    // A copy without the lease token (an attempt whose lease ran out and went elsewhere).
    let mut copy = get(store, "e1").await;
    copy.lease = None;
    let retry = Settle::Retry {
        at_ms: at(5_000),
        status: Some(500),
        error: "late".into(),
    };
    assert!(!store.settle(&copy, retry, at(1)).await.unwrap());
    assert!(!store
        .settle(&copy, dead(Some(400), "late"), at(1))
        .await
        .unwrap());
    assert_eq!(get(store, "e1").await.state, State::Delivering);
    // The app took it: that is recorded whoever holds the lease, once.
    assert!(store
        .settle(&copy, Settle::Delivered { status: 200 }, at(2))
        .await
        .unwrap());
    assert_eq!(get(store, "e1").await.state, State::Delivered);
    assert!(!store
        .settle(&copy, Settle::Delivered { status: 200 }, at(3))
        .await
        .unwrap());
}

// ---------------------------------------------------------------------------------------
// Dedup

async fn a_second_event_with_the_same_dedup_key_is_a_duplicate_of_the_first(s: Subject) {
    let store = &*s.store;
    let until = at(300_000);
    stored(store, deduped("first", ROUTE, at(0), "delivery-42", until)).await;
    let second = store
        .ingest(deduped(
            "second",
            ROUTE,
            at(10),
            "delivery-42",
            until.after(Duration::from_millis(10)),
        ))
        .await
        .unwrap();
    assert_eq!(
        second,
        Ingested::Duplicate {
            id: "first".to_owned(),
            state: State::Queued
        }
    );
    assert!(store.get("second", false).await.unwrap().is_empty());
    // Still a duplicate once the first is delivered: the key outlives the attempt.
    let leased = lease_one(store, ROUTE, at(20), at(30_000)).await;
    store
        .settle(&leased, Settle::Delivered { status: 200 }, at(30))
        .await
        .unwrap();
    let third = store
        .ingest(deduped(
            "third",
            ROUTE,
            at(40),
            "delivery-42",
            until.after(Duration::from_millis(40)),
        ))
        .await
        .unwrap();
    assert_eq!(
        third,
        Ingested::Duplicate {
            id: "first".to_owned(),
            state: State::Delivered
        },
        "a duplicate says the first was delivered"
    );
}

async fn the_same_dedup_key_on_another_route_is_another_event(s: Subject) {
    let store = &*s.store;
    stored(store, deduped("a", ROUTE, at(0), "k", at(300_000))).await;
    stored(store, deduped("b", "stripe", at(0), "k", at(300_000))).await;
    assert_eq!(get(store, "a").await.route, ROUTE);
    assert_eq!(get(store, "b").await.route, "stripe");
}

async fn events_without_a_dedup_key_never_collide(s: Subject) {
    let store = &*s.store;
    for i in 0..5 {
        stored(store, new_event(&format!("e{i}"), ROUTE, at(0))).await;
    }
    let all = store
        .list(Filter {
            limit: 100,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&all), ["e0", "e1", "e2", "e3", "e4"]);
}

async fn concurrent_duplicates_store_exactly_one_event(s: Subject) {
    let store = s.store.clone();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .ingest(deduped(&format!("e{i:02}"), ROUTE, at(0), "same", at(1)))
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().expect("ingest"));
    }
    let stored_count = results.iter().filter(|r| **r == Ingested::Stored).count();
    assert_eq!(stored_count, 1, "{results:?}");
    let all = store
        .list(Filter {
            limit: 100,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let kept = all[0].id.clone();
    for r in results {
        assert!(
            r == Ingested::Stored || matches!(&r, Ingested::Duplicate { id, .. } if *id == kept),
            "{r:?} does not name the stored event {kept}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Operators: retry, remove

/// Stores `id`, leases it, starts one attempt and settles it dead at `T0 + 100`.
async fn make_dead(store: &QueueStore, id: &str, route: &str) {
    stored(store, new_event(id, route, at(0))).await;
    let leased = lease_one(store, route, at(0), at(30_000)).await;
    assert_eq!(store.start(&leased, at(30_000)).await.unwrap(), Some(1));
    assert!(store
        .settle(&leased, dead(Some(422), "refused"), at(100))
        .await
        .unwrap());
}

/// Stores `id`, leases it, starts one attempt and settles it delivered at `T0 + 100`.
async fn make_delivered(store: &QueueStore, id: &str, route: &str) {
    stored(store, new_event(id, route, at(0))).await;
    let leased = lease_one(store, route, at(0), at(30_000)).await;
    assert_eq!(store.start(&leased, at(30_000)).await.unwrap(), Some(1));
    assert!(store
        .settle(&leased, Settle::Delivered { status: 200 }, at(100))
        .await
        .unwrap());
}

async fn retrying_a_dead_event_makes_it_due_now_with_a_fresh_age(s: Subject) {
    let store = &*s.store;
    make_dead(store, "e1", ROUTE).await;
    let now = at(7_200_000);

    assert_eq!(store.retry("e1", None, now).await.unwrap(), 1);
    let e = get(store, "e1").await;
    assert_eq!(e.state, State::Retrying);
    assert_eq!(e.next_attempt_ms, now);
    assert_eq!(e.age_from_ms, now);
    assert_eq!(
        e.received_ms,
        at(0),
        "the receive time is history, not reset"
    );
    assert_eq!(e.attempts, 1, "attempts made stay counted");
    assert_eq!(e.budget_from, 1, "max_attempts counts from the retry");
    assert_eq!(e.dead_reason, None);
    assert_eq!(e.finished_ms, None);
    assert_eq!(store.next_due((ROUTE, "")).await.unwrap(), Some(now));

    let leased = lease_one(store, ROUTE, now, now.after(Duration::from_secs(30))).await;
    assert_eq!(
        store
            .start(&leased, now.after(Duration::from_secs(30)))
            .await
            .unwrap(),
        Some(2)
    );
}

async fn retrying_a_delivered_or_unknown_event_is_refused(s: Subject) {
    let store = &*s.store;
    make_delivered(store, "e1", ROUTE).await;
    assert_eq!(store.retry("e1", None, at(1_000)).await.unwrap(), 0);
    let e = get(store, "e1").await;
    assert_eq!(e.state, State::Delivered);
    assert_eq!(e.attempts, 1);
    assert_eq!(e.finished_ms, Some(at(100)));
    assert_eq!(store.retry("nope", None, at(1_000)).await.unwrap(), 0);
}

async fn retrying_an_event_being_delivered_is_refused(s: Subject) {
    let store = &*s.store;
    stored(store, new_event("e1", ROUTE, at(0))).await;
    let leased = lease_one(store, ROUTE, at(0), at(30_000)).await;
    assert_eq!(store.retry("e1", None, at(1_000)).await.unwrap(), 0);
    let e = get(store, "e1").await;
    assert_eq!(e.state, State::Delivering);
    assert_eq!(e.lease, leased.lease);
}

async fn retry_dead_revives_only_that_routes_dead_events(s: Subject) {
    let store = &*s.store;
    make_dead(store, "g1", ROUTE).await;
    make_dead(store, "g2", ROUTE).await;
    make_delivered(store, "g3", ROUTE).await;
    stored(store, new_event("g4", ROUTE, at(50_000))).await;
    make_dead(store, "s1", "stripe").await;
    let now = at(3_600_000);

    assert_eq!(store.retry_dead(ROUTE, None, now).await.unwrap(), 2);
    for id in ["g1", "g2"] {
        let e = get(store, id).await;
        assert_eq!((e.state, e.next_attempt_ms), (State::Retrying, now), "{id}");
    }
    assert_eq!(get(store, "g3").await.state, State::Delivered);
    assert_eq!(get(store, "g4").await.state, State::Queued);
    assert_eq!(get(store, "s1").await.state, State::Dead);
    assert_eq!(store.retry_dead(ROUTE, None, now).await.unwrap(), 0);
}

async fn remove_deletes_a_dead_event_but_not_one_being_delivered(s: Subject) {
    let store = &*s.store;
    make_dead(store, "dead", ROUTE).await;
    assert_eq!(store.remove("dead", None).await.unwrap(), 1);
    assert!(store.get("dead", true).await.unwrap().is_empty());
    assert_eq!(
        store.remove("dead", None).await.unwrap(),
        0,
        "removed twice"
    );

    stored(store, new_event("busy", ROUTE, at(0))).await;
    let leased = lease_one(store, ROUTE, at(0), at(30_000)).await;
    assert_eq!(store.remove("busy", None).await.unwrap(), 0);
    assert_eq!(get(store, "busy").await.state, State::Delivering);
    // The worker can still settle what it was delivering.
    assert!(store
        .settle(&leased, Settle::Delivered { status: 200 }, at(1))
        .await
        .unwrap());
}

// ---------------------------------------------------------------------------------------
// Purge

async fn purge_deletes_finished_events_past_retention_but_keeps_a_live_dedup_window(s: Subject) {
    let store = &*s.store;
    // Finished at T0 + 100 (make_*): delivered retention ends at T0 + 1_000 here, dead
    // retention at T0 + 50.
    make_delivered(store, "old-delivered", ROUTE).await;
    make_dead(store, "young-dead", ROUTE).await;
    stored(store, new_event("pending", ROUTE, at(1))).await;
    // Delivered when old-delivered was, but its dedup key must be kept until T0 + 10_000.
    stored(
        store,
        deduped("remembered", "stripe", at(0), "evt_1", at(10_000)),
    )
    .await;
    let leased = lease_one(store, "stripe", at(0), at(30_000)).await;
    store
        .settle(&leased, Settle::Delivered { status: 200 }, at(100))
        .await
        .unwrap();

    let purged = store.purge(at(1_000), at(50), at(5_000)).await.unwrap();
    assert_eq!(purged, 1);
    assert!(store.get("old-delivered", false).await.unwrap().is_empty());
    assert_eq!(get(store, "young-dead").await.state, State::Dead);
    assert_eq!(get(store, "pending").await.state, State::Queued);
    assert_eq!(get(store, "remembered").await.state, State::Delivered);
    assert_eq!(
        store
            .ingest(deduped(
                "replayed",
                "stripe",
                at(5_000),
                "evt_1",
                at(15_000)
            ))
            .await
            .unwrap(),
        Ingested::Duplicate {
            id: "remembered".to_owned(),
            state: State::Delivered
        }
    );

    // Later: the dead letter's retention and the dedup window have both passed.
    let purged = store
        .purge(at(20_000), at(20_000), at(20_000))
        .await
        .unwrap();
    assert_eq!(purged, 2);
    assert!(store.get("young-dead", false).await.unwrap().is_empty());
    assert!(store.get("remembered", false).await.unwrap().is_empty());
    assert_eq!(get(store, "pending").await.state, State::Queued);
}

async fn purge_never_deletes_pending_or_leased_events(s: Subject) {
    let store = &*s.store;
    stored(store, new_event("queued", ROUTE, at(0))).await;
    stored(store, new_event("leased", "stripe", at(0))).await;
    stored(store, new_event("retrying", "shopify", at(0))).await;
    lease_one(store, "stripe", at(0), at(30_000)).await;
    let r = lease_one(store, "shopify", at(0), at(30_000)).await;
    let retry = Settle::Retry {
        at_ms: at(60_000),
        status: None,
        error: "connection refused".to_owned(),
    };
    assert!(store.settle(&r, retry, at(1)).await.unwrap());

    let far = at(365 * 86_400_000);
    assert_eq!(store.purge(far, far, far).await.unwrap(), 0);
    for id in ["queued", "leased", "retrying"] {
        assert!(!store.get(id, false).await.unwrap().is_empty(), "{id}");
    }
}

// ---------------------------------------------------------------------------------------
// Operators' reads

async fn list_filters_by_route_state_and_page_without_bodies(s: Subject) {
    let store = &*s.store;
    for id in ["a1", "a2", "a3", "a4"] {
        stored(store, new_event(id, ROUTE, at(0))).await;
    }
    stored(store, new_event("b1", "stripe", at(0))).await;
    // Two of the route's four are leased (all due at once: which two is the store's choice).
    let leased = store
        .lease((ROUTE, ""), 2, at(0), at(30_000), false)
        .await
        .unwrap();
    assert_eq!(leased.len(), 2);

    let all = store
        .list(Filter {
            limit: 100,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&all), ["a1", "a2", "a3", "a4", "b1"]);
    for e in &all {
        assert_eq!(e.body, None, "{}: a listing carries no body", e.id);
        assert_eq!(
            e.body_len,
            new_event(&e.id, &e.route, at(0)).body.len() as u64
        );
        assert_eq!(e.lease.is_some(), e.state == State::Delivering, "{}", e.id);
    }

    let stripe = store
        .list(Filter {
            route: Some("stripe".to_owned()),
            limit: 100,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&stripe), ["b1"]);

    let delivering = store
        .list(Filter {
            route: Some(ROUTE.to_owned()),
            state: Some(State::Delivering),
            limit: 100,
            ..Filter::default()
        })
        .await
        .unwrap();
    let mut expected = ids(&leased);
    expected.sort_unstable();
    assert_eq!(ids(&delivering), expected);

    let queued = store
        .list(Filter {
            state: Some(State::Queued),
            limit: 100,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(queued.len(), 3);
    assert!(queued.iter().all(|e| e.state == State::Queued));

    let page1 = store
        .list(Filter {
            limit: 2,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&page1), ["a1", "a2"]);
    let page2 = store
        .list(Filter {
            after: Some(("a2".to_owned(), String::new())),
            limit: 2,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&page2), ["a3", "a4"]);
    let page3 = store
        .list(Filter {
            after: Some(("a4".to_owned(), String::new())),
            limit: 2,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&page3), ["b1"]);
}

async fn get_reads_one_event_with_or_without_its_body(s: Subject) {
    let store = &*s.store;
    let event = new_event("e1", ROUTE, at(0));
    let body = event.body.clone();
    stored(store, event).await;

    let with = store.get("e1", true).await.unwrap().pop().expect("stored");
    assert_eq!(with.body, Some(body.clone()));
    assert_eq!(with.body_len, body.len() as u64);
    assert_eq!(with.state, State::Queued);
    assert_eq!(with.attempts, 0);
    assert_eq!(with.next_attempt_ms, at(0));
    assert_eq!(with.lease, None);
    assert_eq!(with.finished_ms, None);
    assert_eq!(with.last_status, None);

    let without = store.get("e1", false).await.unwrap().pop().expect("stored");
    assert_eq!(without.body, None);
    assert_eq!(without.body_len, body.len() as u64);
    assert!(
        without.headers.is_empty(),
        "the stored request (headers and body) is read only when asked for"
    );
    assert!(!with.headers.is_empty());

    assert!(store.get("missing", true).await.unwrap().is_empty());
}

async fn an_empty_body_is_stored_and_read_back_empty(s: Subject) {
    let store = &*s.store;
    stored(
        store,
        NewEvent {
            body: Bytes::new(),
            headers: Vec::new(),
            ..new_event("e1", ROUTE, at(0))
        },
    )
    .await;
    let leased = lease_one(store, ROUTE, at(0), at(30_000)).await;
    assert_eq!(leased.body, Some(Bytes::new()));
    assert_eq!(leased.body_len, 0);
    assert!(leased.headers.is_empty());
}

async fn depths_count_events_by_route_and_state_with_the_oldest_receive_time(s: Subject) {
    let store = &*s.store;
    stored(store, new_event("g1", ROUTE, at(30))).await;
    stored(store, new_event("g2", ROUTE, at(10))).await;
    stored(store, new_event("g3", ROUTE, at(20))).await;
    stored(store, new_event("s1", "stripe", at(5))).await;
    // g2 (due first) is leased and dies.
    let leased = lease_one_of(store, ROUTE, at(10)).await;
    assert_eq!(leased.id, "g2");
    store
        .settle(&leased, dead(None, "too old"), at(40))
        .await
        .unwrap();

    let mut depths = store.depths().await.unwrap();
    depths.sort_by(|a, b| (&a.route, a.state.as_str()).cmp(&(&b.route, b.state.as_str())));
    let expected = vec![
        Depth {
            route: ROUTE.to_owned(),
            destination: String::new(),
            state: State::Dead,
            count: 1,
            oldest_received_ms: at(10),
        },
        Depth {
            route: ROUTE.to_owned(),
            destination: String::new(),
            state: State::Queued,
            count: 2,
            oldest_received_ms: at(20),
        },
        Depth {
            route: "stripe".to_owned(),
            destination: String::new(),
            state: State::Queued,
            count: 1,
            oldest_received_ms: at(5),
        },
    ];
    assert_eq!(depths, expected);
}

async fn an_empty_store_has_no_depths(s: Subject) {
    let store = &*s.store;
    assert!(store.depths().await.unwrap().is_empty());
}

async fn an_event_stored_leased_is_not_leased_again_until_its_lease_runs_out(s: Subject) {
    let store = &*s.store;
    let lease = Lease {
        token: "ingest-lease".to_owned(),
        until_ms: at(10_000),
    };
    let event = with_lease(new_event("e1", ROUTE, at(0)), &lease);
    let copy = event.leased_copy(&event.deliveries[0], &lease, None);
    stored(store, event).await;

    let read = get(store, "e1").await;
    assert_eq!(read.state, State::Delivering);
    assert_eq!(read.attempts, 1);
    assert_eq!(read.lease.as_deref(), Some("ingest-lease"));
    assert!(
        store
            .lease((ROUTE, ""), 10, at(1), at(20_000), false)
            .await
            .unwrap()
            .is_empty(),
        "held by its ingest lease"
    );
    // The in-memory copy settles it, as a leased copy would.
    assert!(store
        .settle(&copy, Settle::Delivered { status: 200 }, at(2))
        .await
        .unwrap());
    assert_eq!(get(store, "e1").await.state, State::Delivered);

    // Another stored leased event whose process died: due again once the lease ran out.
    let lease = Lease {
        token: "dead-process".to_owned(),
        until_ms: at(10_000),
    };
    stored(store, with_lease(new_event("e2", ROUTE, at(0)), &lease)).await;
    let again = store
        .lease((ROUTE, ""), 10, at(10_001), at(30_000), false)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, "e2");
    assert_eq!(
        again[0].attempts, 1,
        "the cut-off attempt counts, the new lease does not"
    );
}

async fn an_event_being_delivered_is_next_due_when_its_lease_runs_out_and_delivered_ones_are_not_counted(
    s: Subject,
) {
    let store = &*s.store;
    stored(store, new_event("e1", ROUTE, at(0))).await;
    stored(store, new_event("e2", ROUTE, at(0))).await;
    let leased = store
        .lease((ROUTE, ""), 1, at(0), at(60_000), false)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    // e2 is due now; e1 (leased) only when its lease runs out.
    assert_eq!(store.next_due((ROUTE, "")).await.unwrap(), Some(at(0)));
    let other = store
        .lease((ROUTE, ""), 1, at(0), at(60_000), false)
        .await
        .unwrap();
    assert_eq!(
        store.next_due((ROUTE, "")).await.unwrap(),
        Some(at(60_000)),
        "nothing is due before the leases run out: a worker must not spin on them"
    );
    assert!(store
        .settle(&leased[0], Settle::Delivered { status: 200 }, at(1))
        .await
        .unwrap());
    let depths = store.depths().await.unwrap();
    assert!(
        depths.iter().all(|d| d.state != State::Delivered),
        "delivered events are not counted: {depths:?}"
    );
    assert!(depths
        .iter()
        .any(|d| d.state == State::Delivering && d.count == 1 && d.route == ROUTE));
    drop(other);
}

/// What was stored is there after the store is closed and opened again (a restart).
async fn a_reopened_store_finds_its_events(s: Subject) {
    stored(&s.store, new_event("kept", ROUTE, at(0))).await;
    make_dead(&s.store, "dead", "stripe").await;
    let body = new_event("kept", ROUTE, at(0)).body;

    let s = s.reopen().await;
    let store = &*s.store;
    let kept = store.get("kept", true).await.unwrap().pop().expect("kept");
    assert_eq!(kept.state, State::Queued);
    assert_eq!(kept.body, Some(body));
    assert_eq!(get(store, "dead").await.state, State::Dead);
    assert_eq!(
        ids(&store
            .lease((ROUTE, ""), 10, at(0), at(30_000), false)
            .await
            .unwrap()),
        ["kept"]
    );
}

async fn a_pause_is_stored_once_and_resuming_moves_pending_ages_past_it(s: Subject) {
    let store = &*s.store;
    make_delivered(store, "done", ROUTE).await;
    stored(store, new_event("old", ROUTE, at(0))).await;
    stored(store, new_event("other", "other-route", at(0))).await;
    assert!(store.pause(ROUTE, "", at(1_000)).await.unwrap());
    // Paused again: the pause keeps its start.
    assert!(!store.pause(ROUTE, "", at(2_000)).await.unwrap());
    assert_eq!(
        store.pauses().await.unwrap(),
        vec![Paused {
            route: ROUTE.into(),
            destination: String::new(),
            since: at(1_000),
        }]
    );
    // An event that came during the pause.
    stored(store, new_event("during", ROUTE, at(4_000))).await;
    assert_eq!(
        store.resume(ROUTE, "", at(10_000)).await.unwrap(),
        Some(at(1_000))
    );
    assert!(store.pauses().await.unwrap().is_empty());
    assert_eq!(store.resume(ROUTE, "", at(11_000)).await.unwrap(), None);
    // The old event aged 1 s before the pause and none during it: 9 s are left out.
    assert_eq!(get(store, "old").await.age_from_ms, at(9_000));
    // The one that came during it ages from the resume.
    assert_eq!(get(store, "during").await.age_from_ms, at(10_000));
    // Another route's, and a finished event, are untouched.
    assert_eq!(get(store, "other").await.age_from_ms, at(0));
    let done = get(store, "done").await;
    assert_eq!(done.state, State::Delivered);
    assert_eq!(done.age_from_ms, at(0));
    // The receive time is history.
    assert_eq!(get(store, "old").await.received_ms, at(0));
}

// ---------------------------------------------------------------------------------------
// Fan-out: a row per destination, one request

/// `new_event` taken by each of `destinations` (none: no destination takes it, and it is
/// stored as a `filtered` record).
fn fanned(id: &str, route: &str, received_ms: UnixMs, destinations: &[&str]) -> NewEvent {
    NewEvent {
        deliveries: destinations
            .iter()
            .map(|d| NewDelivery {
                destination: (*d).to_owned(),
                idempotency_key: format!("idem-{id}-{d}"),
                lease: None,
            })
            .collect(),
        ..new_event(id, route, received_ms)
    }
}

/// Event `id`'s rows as `(destination, state)`, by destination.
async fn rows(store: &QueueStore, id: &str) -> Vec<(String, State)> {
    let rows = store.get(id, false).await.expect("get");
    rows.into_iter().map(|e| (e.destination, e.state)).collect()
}

/// `(destination, state)` pairs, spelled as literals.
fn expect(rows: &[(&str, State)]) -> Vec<(String, State)> {
    rows.iter().map(|(d, s)| ((*d).to_owned(), *s)).collect()
}

/// Event `id`'s row for `destination`.
async fn row(store: &QueueStore, id: &str, destination: &str) -> Event {
    let rows = store.get(id, false).await.expect("get");
    rows.into_iter()
        .find(|e| e.destination == destination)
        .unwrap_or_else(|| panic!("{id} has no row for {destination:?}"))
}

/// Leases the one due row of `route`'s `destination` (there must be exactly one).
async fn lease_row(store: &QueueStore, route: &str, destination: &str, now: UnixMs) -> Event {
    let until = now.after(Duration::from_secs(30));
    let mut leased = store
        .lease((route, destination), 10, now, until, false)
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1, "{destination:?}: {:?}", ids(&leased));
    leased.remove(0)
}

/// On PostgreSQL, that it holds `want` requests (`hookgate_requests`): an event's rows share
/// one, which goes with the last of them. The embedded store is read through the API only
/// (the cases do not open its file): there `get(id, true)` of each row shows its request.
async fn requests_are(s: &Subject, want: i64, why: &str) {
    let QueueStoreConfig::Postgres { url, .. } = &s.config else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the case's database");
    let connection = tokio::spawn(connection);
    let n: i64 = client
        .query_one("SELECT count(*) FROM hookgate_requests", &[])
        .await
        .expect("count the requests")
        .get(0);
    drop(client);
    let _ = connection.await;
    assert_eq!(n, want, "requests stored: {why}");
}

async fn a_fanned_out_event_stores_one_request_and_each_destination_leases_only_its_row(
    s: Subject,
) {
    let store = &*s.store;
    let sent = fanned("e1", ROUTE, at(0), &["a", "b", "c"]);
    stored(store, sent.clone()).await;
    stored(store, fanned("other", "stripe", at(0), &["a"])).await;

    let read = store.get("e1", true).await.unwrap();
    assert_eq!(read.len(), 3, "a row per destination");
    for (e, d) in read.iter().zip(["a", "b", "c"]) {
        assert_eq!((e.id.as_str(), e.destination.as_str()), ("e1", d));
        assert_eq!((e.state, e.attempts), (State::Queued, 0), "{d}");
        assert_eq!(
            e.idempotency_key,
            format!("idem-e1-{d}"),
            "a key per destination"
        );
        assert_eq!(
            e.body.as_ref(),
            Some(&sent.body),
            "{d}: the event's one request"
        );
        assert_eq!(e.headers, sent.headers, "{d}");
    }
    requests_are(&s, 2, "one request per event").await;

    // No row of the route's whole (`""`): nothing to lease there.
    let none = store.lease((ROUTE, ""), 10, at(0), at(30_000), false).await;
    assert!(none.unwrap().is_empty());
    let mut leased = Vec::new();
    for d in ["a", "b", "c"] {
        let e = lease_row(store, ROUTE, d, at(0)).await;
        assert_eq!((e.id.as_str(), e.destination.as_str()), ("e1", d));
        assert_eq!(e.body.as_ref(), Some(&sent.body));
        leased.push(e);
    }
    let tokens: std::collections::BTreeSet<_> = leased.iter().map(|e| e.lease.clone()).collect();
    assert_eq!(tokens.len(), 3, "a lease token per row: {tokens:?}");
    assert_eq!(
        row(store, "other", "a").await.state,
        State::Queued,
        "another route's"
    );
    each_row_settles_on_its_own(store, &leased).await;
}

/// `e1`'s rows to a, b and c, `leased` in that order, settled one by one: each changes only
/// its own row, and the depths and due times are per destination.
async fn each_row_settles_on_its_own(store: &QueueStore, leased: &[Event]) {
    let retry = Settle::Retry {
        at_ms: at(60_000),
        status: Some(503),
        error: "c answered 503".into(),
    };
    assert!(store
        .settle(&leased[1], Settle::Delivered { status: 200 }, at(10))
        .await
        .unwrap());
    assert_eq!(
        row(store, "e1", "a").await.lease,
        leased[0].lease,
        "a is still leased"
    );
    assert!(store.settle(&leased[2], retry, at(20)).await.unwrap());
    assert!(store
        .settle(&leased[0], dead(Some(410), "gone"), at(30))
        .await
        .unwrap());
    let want = [
        ("a", State::Dead),
        ("b", State::Delivered),
        ("c", State::Retrying),
    ];
    assert_eq!(rows(store, "e1").await, expect(&want));
    assert_eq!(row(store, "e1", "b").await.finished_ms, Some(at(10)));
    assert_eq!(row(store, "e1", "c").await.last_status, Some(503));
    assert_eq!(
        store.next_due((ROUTE, "c")).await.unwrap(),
        Some(at(60_000))
    );
    assert_eq!(store.next_due((ROUTE, "a")).await.unwrap(), None);
    assert_eq!(store.next_due((ROUTE, "")).await.unwrap(), None);
    // Counted by destination: a's dead row, c's retrying one, e2's queued ones, and
    // stripe's a.
    stored(store, fanned("e2", ROUTE, at(40), &["a", "b"])).await;
    let depth = |r: &str, d: &str, state| (r.to_owned(), d.to_owned(), state, 1);
    let want = [
        depth(ROUTE, "a", State::Dead),
        depth(ROUTE, "a", State::Queued),
        depth(ROUTE, "b", State::Queued),
        depth(ROUTE, "c", State::Retrying),
        depth("stripe", "a", State::Queued),
    ];
    assert_eq!(depths(store).await, want);
}

/// The store's depths as `(route, destination, state, count)`, sorted.
async fn depths(store: &QueueStore) -> Vec<(String, String, State, u64)> {
    let mut depths: Vec<_> = store
        .depths()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.route, d.destination, d.state, d.count))
        .collect();
    depths.sort_by(|x, y| (&x.0, &x.1, x.2.as_str()).cmp(&(&y.0, &y.1, y.2.as_str())));
    depths
}

/// An event stored leased to one destination's free slot: that row only is leased, under
/// the token it came with.
async fn a_fanned_out_event_stored_with_one_slot_free_leases_only_that_row(s: Subject) {
    let store = &*s.store;
    let lease = Lease {
        token: "ingest-b".to_owned(),
        until_ms: at(10_000),
    };
    let mut event = fanned("e1", ROUTE, at(0), &["a", "b"]);
    event.deliveries[1].lease = Some(lease.clone());
    let copy = event.leased_copy(&event.deliveries[1], &lease, None);
    stored(store, event).await;

    let b = row(store, "e1", "b").await;
    assert_eq!((b.state, b.attempts), (State::Delivering, 1));
    assert_eq!(b.lease.as_deref(), Some("ingest-b"));
    let a = row(store, "e1", "a").await;
    assert_eq!((a.state, a.attempts, a.lease), (State::Queued, 0, None));
    assert!(store
        .lease((ROUTE, "b"), 10, at(1), at(30_000), false)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .settle(&copy, Settle::Delivered { status: 200 }, at(2))
        .await
        .unwrap());
    let want = [("a", State::Queued), ("b", State::Delivered)];
    assert_eq!(rows(store, "e1").await, expect(&want));
    assert_eq!(lease_row(store, ROUTE, "a", at(3)).await.attempts, 0);
}

async fn a_filtered_event_is_one_finished_row_never_leased_and_purged_with_the_delivered(
    s: Subject,
) {
    let store = &*s.store;
    let sent = fanned("f1", ROUTE, at(0), &[]);
    stored(store, sent.clone()).await;
    stored(store, fanned("q1", ROUTE, at(0), &["a"])).await;

    let read = store.get("f1", true).await.unwrap();
    assert_eq!(
        read.len(),
        1,
        "one record for an event no destination takes"
    );
    let f = &read[0];
    assert_eq!((f.destination.as_str(), f.state), ("", State::Filtered));
    assert_eq!(f.finished_ms, Some(at(0)), "finished when it was received");
    assert_eq!((f.attempts, f.lease.as_deref()), (0, None));
    assert_eq!(
        f.body.as_ref(),
        Some(&sent.body),
        "kept for an operator to see"
    );

    // Never due, on any destination, however late.
    let far = at(365 * 86_400_000);
    for d in ["", "a"] {
        let leased = store.lease((ROUTE, d), 10, far, far, true).await.unwrap();
        assert!(
            leased.iter().all(|e| e.id != "f1"),
            "{d:?}: {:?}",
            ids(&leased)
        );
    }
    assert_eq!(store.next_due((ROUTE, "")).await.unwrap(), None);
    assert!(store
        .depths()
        .await
        .unwrap()
        .iter()
        .all(|d| !d.destination.is_empty()));
    assert_eq!(
        store.retry("f1", None, at(1)).await.unwrap(),
        0,
        "not a failure"
    );
    assert_eq!(rows(store, "f1").await, expect(&[("", State::Filtered)]));

    let listed = |state| {
        store.list(Filter {
            state: Some(state),
            limit: 100,
            ..Filter::default()
        })
    };
    assert_eq!(ids(&listed(State::Filtered).await.unwrap()), ["f1"]);
    assert!(listed(State::Queued)
        .await
        .unwrap()
        .iter()
        .all(|e| e.id != "f1"));

    // Kept for the delivered retention (from its receive time), not the dead one.
    assert_eq!(store.purge(at(0), far, far).await.unwrap(), 0);
    assert_eq!(store.purge(at(1), at(0), at(1)).await.unwrap(), 1);
    assert!(store.get("f1", true).await.unwrap().is_empty());
    requests_are(&s, 1, "q1's only").await;
}

async fn a_duplicate_of_a_fanned_out_event_answers_what_its_deliveries_add_up_to(s: Subject) {
    let store = &*s.store;
    let until = at(300_000);
    let first = NewEvent {
        deliveries: fanned("first", ROUTE, at(0), &["a", "b"]).deliveries,
        ..deduped("first", ROUTE, at(0), "k", until)
    };
    stored(store, first.clone()).await;
    let again = |id: &str| {
        store.ingest(NewEvent {
            id: id.to_owned(),
            ..first.clone()
        })
    };
    let answer = |state| Ingested::Duplicate {
        id: "first".to_owned(),
        state,
    };
    assert_eq!(again("d1").await.unwrap(), answer(State::Queued));

    // a delivered, b retrying: on its way.
    let a = lease_row(store, ROUTE, "a", at(1)).await;
    assert!(store
        .settle(&a, Settle::Delivered { status: 200 }, at(2))
        .await
        .unwrap());
    let b = lease_row(store, ROUTE, "b", at(3)).await;
    let retry = Settle::Retry {
        at_ms: at(1_000),
        status: Some(503),
        error: "503".into(),
    };
    assert!(store.settle(&b, retry, at(4)).await.unwrap());
    assert_eq!(again("d2").await.unwrap(), answer(State::Retrying));

    // a delivered, b dead: dead (an operator may retry it).
    let b = lease_row(store, ROUTE, "b", at(1_000)).await;
    assert!(store
        .settle(&b, dead(Some(410), "gone"), at(1_001))
        .await
        .unwrap());
    assert_eq!(again("d3").await.unwrap(), answer(State::Dead));

    // Both delivered: delivered.
    assert_eq!(store.retry("first", Some("b"), at(2_000)).await.unwrap(), 1);
    let b = lease_row(store, ROUTE, "b", at(2_000)).await;
    assert!(store
        .settle(&b, Settle::Delivered { status: 200 }, at(2_001))
        .await
        .unwrap());
    assert_eq!(again("d4").await.unwrap(), answer(State::Delivered));
    for id in ["d1", "d2", "d3", "d4"] {
        assert!(
            store.get(id, false).await.unwrap().is_empty(),
            "{id} stored"
        );
    }
}

/// The event's dedup key is on one of its rows; dropping that row alone moves it to
/// another, so a copy sent again is still answered as a duplicate (and once every row is
/// gone, the key goes with them).
async fn dropping_the_delivery_that_carries_the_dedup_key_keeps_the_event_a_duplicate(s: Subject) {
    let store = &*s.store;
    let first = NewEvent {
        id: "k1".into(),
        ..fanned_deduped(&["a", "b"])
    };
    stored(store, first.clone()).await;
    // "a" is the first row, with the key.
    assert_eq!(store.remove("k1", Some("a")).await.unwrap(), 1);
    let again = store
        .ingest(NewEvent {
            id: "k2".into(),
            ..first.clone()
        })
        .await
        .unwrap();
    assert!(
        matches!(&again, Ingested::Duplicate { id, .. } if id == "k1"),
        "{again:?}"
    );
    assert_eq!(store.remove("k1", None).await.unwrap(), 1);
    let after = store
        .ingest(NewEvent {
            id: "k3".into(),
            ..first
        })
        .await
        .unwrap();
    assert_eq!(
        after,
        Ingested::Stored,
        "the key went with the event's last row"
    );
}

/// Event `k` fanned out to `destinations`, with dedup key `kk`.
fn fanned_deduped(destinations: &[&str]) -> NewEvent {
    NewEvent {
        dedup_key: Some("kk".into()),
        dedup_until: Some(at(300_000)),
        ..fanned("k", ROUTE, at(0), destinations)
    }
}

/// An event no destination took is, for its sender, delivered.
async fn a_duplicate_of_a_filtered_event_is_answered_delivered(s: Subject) {
    let store = &*s.store;
    let filtered = NewEvent {
        deliveries: Vec::new(),
        ..deduped("f", ROUTE, at(0), "kf", at(300_000))
    };
    stored(store, filtered.clone()).await;
    // The record keeps the event's own key, for a replay to a destination.
    let [record] = store.get("f", false).await.unwrap().try_into().unwrap();
    assert_eq!(
        (record.state, record.idempotency_key.as_str()),
        (State::Filtered, "idem-f")
    );
    let dup = store
        .ingest(NewEvent {
            id: "f2".into(),
            ..filtered
        })
        .await
        .unwrap();
    assert_eq!(
        dup,
        Ingested::Duplicate {
            id: "f".to_owned(),
            state: State::Delivered
        }
    );
}

/// `e1` to a, b and c: a delivered at `T0 + 100`, b dead at `T0 + 100`, c still queued.
async fn delivered_dead_and_queued(store: &QueueStore, first: NewEvent) {
    stored(store, first).await;
    let a = lease_row(store, ROUTE, "a", at(0)).await;
    assert!(store
        .settle(&a, Settle::Delivered { status: 200 }, at(100))
        .await
        .unwrap());
    let b = lease_row(store, ROUTE, "b", at(0)).await;
    assert!(store
        .settle(&b, dead(Some(422), "refused"), at(100))
        .await
        .unwrap());
}

async fn purge_takes_a_fanned_out_event_whole_once_every_delivery_is_past_retention(s: Subject) {
    let store = &*s.store;
    delivered_dead_and_queued(store, fanned("e1", ROUTE, at(0), &["a", "b", "c"])).await;
    let far = at(365 * 86_400_000);
    assert_eq!(store.purge(far, far, far).await.unwrap(), 0, "c is pending");
    assert_eq!(rows(store, "e1").await.len(), 3, "no row goes alone");

    let c = lease_row(store, ROUTE, "c", at(1_000)).await;
    assert!(store
        .settle(&c, Settle::Delivered { status: 200 }, at(5_000))
        .await
        .unwrap());
    // c delivered at 5_000: within a retention that keeps what finished from 1_000.
    assert_eq!(
        store.purge(at(1_000), at(1_000), at(6_000)).await.unwrap(),
        0
    );
    // b dead at 100: within a dead retention that keeps what finished from 50.
    assert_eq!(
        store.purge(at(10_000), at(50), at(10_000)).await.unwrap(),
        0
    );
    assert_eq!(rows(store, "e1").await.len(), 3);

    // All three past their retention: the event goes whole, with its request.
    assert_eq!(
        store
            .purge(at(10_000), at(10_000), at(10_000))
            .await
            .unwrap(),
        3
    );
    assert!(store.get("e1", true).await.unwrap().is_empty());
    requests_are(&s, 0, "the event went whole").await;
}

async fn purge_keeps_a_fanned_out_event_for_its_dedup_window(s: Subject) {
    let store = &*s.store;
    // The dedup key (and its window, until T0 + 20_000) is on the event's first row only.
    let first = NewEvent {
        deliveries: fanned("e1", ROUTE, at(0), &["a", "b", "c"]).deliveries,
        ..deduped("e1", ROUTE, at(0), "k", at(20_000))
    };
    delivered_dead_and_queued(store, first.clone()).await;
    let c = lease_row(store, ROUTE, "c", at(0)).await;
    assert!(store
        .settle(&c, Settle::Delivered { status: 200 }, at(100))
        .await
        .unwrap());

    // Every row past its retention, the window not over: kept, and still a duplicate.
    assert_eq!(
        store.purge(at(1_000), at(1_000), at(10_000)).await.unwrap(),
        0
    );
    let again = store
        .ingest(NewEvent {
            id: "e2".into(),
            ..first
        })
        .await
        .unwrap();
    let answer = Ingested::Duplicate {
        id: "e1".into(),
        state: State::Dead,
    };
    assert_eq!(again, answer);
    assert_eq!(
        store.purge(at(1_000), at(1_000), at(20_001)).await.unwrap(),
        3
    );
    assert!(store.get("e1", true).await.unwrap().is_empty());
}

/// Every row of `id` made dead at `T0 + 100`.
async fn all_dead(store: &QueueStore, id: &str, destinations: &[&str]) {
    stored(store, fanned(id, ROUTE, at(0), destinations)).await;
    for d in destinations {
        let e = lease_row(store, ROUTE, d, at(0)).await;
        assert!(store
            .settle(&e, dead(Some(422), "refused"), at(100))
            .await
            .unwrap());
    }
}

async fn retry_and_remove_name_one_destination_or_all(s: Subject) {
    let store = &*s.store;
    all_dead(store, "e1", &["a", "b", "c"]).await;
    all_dead(store, "e2", &["a", "b"]).await;
    let now = at(1_000);

    assert_eq!(store.retry("e1", Some("a"), now).await.unwrap(), 1);
    let want = [
        ("a", State::Retrying),
        ("b", State::Dead),
        ("c", State::Dead),
    ];
    assert_eq!(rows(store, "e1").await, expect(&want));
    assert_eq!(row(store, "e1", "a").await.age_from_ms, now);
    assert_eq!(row(store, "e1", "b").await.age_from_ms, at(0));
    assert_eq!(
        store.retry("e1", Some("zz"), now).await.unwrap(),
        0,
        "no such row"
    );
    // Retry-dead of one destination: that destination's dead rows, of every event.
    assert_eq!(store.retry_dead(ROUTE, Some("b"), now).await.unwrap(), 2);
    assert_eq!(row(store, "e2", "a").await.state, State::Dead);
    assert_eq!(row(store, "e2", "b").await.state, State::Retrying);
    // Without a destination: every dead or retrying row of the event.
    assert_eq!(store.retry("e1", None, now).await.unwrap(), 3);
    assert_eq!(
        store.retry_dead(ROUTE, None, now).await.unwrap(),
        1,
        "e2's a"
    );
    assert_eq!(store.remove("e2", None).await.unwrap(), 2);
    assert!(store.get("e2", false).await.unwrap().is_empty());
    requests_are(&s, 1, "e1's only").await;

    // Remove one destination's row: the others keep the request.
    assert_eq!(store.remove("e1", Some("b")).await.unwrap(), 1);
    assert_eq!(rows(store, "e1").await.len(), 2);
    let a = lease_row(store, ROUTE, "a", now).await;
    assert_eq!(a.id, "e1");
    assert_eq!(
        a.body,
        Some(new_event("e1", ROUTE, at(0)).body),
        "the request stays"
    );
    // Without a destination: every row not being delivered (c), not a.
    assert_eq!(store.remove("e1", None).await.unwrap(), 1);
    assert_eq!(rows(store, "e1").await, expect(&[("a", State::Delivering)]));
    let kept = store.get("e1", true).await.unwrap();
    assert_eq!(kept[0].body, a.body, "the request stays with the last row");
    requests_are(&s, 1, "a is left").await;
    assert!(store
        .settle(&a, Settle::Delivered { status: 200 }, now)
        .await
        .unwrap());
    // The last row goes, and the request with it.
    assert_eq!(store.remove("e1", Some("a")).await.unwrap(), 1);
    assert!(store.get("e1", true).await.unwrap().is_empty());
    requests_are(&s, 0, "the last row took it").await;
}

async fn resuming_one_destination_moves_only_its_ages_and_resuming_the_route_moves_all(s: Subject) {
    let store = &*s.store;
    stored(store, fanned("e1", ROUTE, at(0), &["a", "b", "c"])).await;
    stored(store, fanned("f1", ROUTE, at(0), &[])).await;
    stored(store, fanned("o1", "stripe", at(0), &["a"])).await;
    let c = lease_row(store, ROUTE, "c", at(0)).await;
    assert!(store
        .settle(&c, Settle::Delivered { status: 200 }, at(1))
        .await
        .unwrap());

    assert!(store.pause(ROUTE, "a", at(1_000)).await.unwrap());
    let paused = store.pauses().await.unwrap();
    assert_eq!(
        paused,
        vec![Paused {
            route: ROUTE.into(),
            destination: "a".into(),
            since: at(1_000),
        }]
    );
    assert_eq!(
        store.resume(ROUTE, "a", at(10_000)).await.unwrap(),
        Some(at(1_000))
    );
    let age =
        |id: &'static str, d: &'static str| async move { row(store, id, d).await.age_from_ms };
    assert_eq!(
        age("e1", "a").await,
        at(9_000),
        "a's 9 s paused are left out"
    );
    assert_eq!(age("e1", "b").await, at(0), "b was not paused");
    assert_eq!(age("o1", "a").await, at(0), "another route's a");

    assert!(store.pause(ROUTE, "", at(20_000)).await.unwrap());
    assert_eq!(
        store.resume(ROUTE, "", at(30_000)).await.unwrap(),
        Some(at(20_000))
    );
    // The whole route's pause: every pending row's age leaves out its 10 s.
    assert_eq!(age("e1", "a").await, at(19_000));
    assert_eq!(age("e1", "b").await, at(10_000));
    // Finished rows (delivered, filtered) and another route's are untouched.
    assert_eq!(age("e1", "c").await, at(0));
    assert_eq!(age("f1", "").await, at(0));
    assert_eq!(age("o1", "a").await, at(0));
}

async fn list_pages_through_every_delivery_of_fanned_out_events_exactly_once(s: Subject) {
    let store = &*s.store;
    stored(store, fanned("e1", ROUTE, at(0), &["a", "b", "c"])).await;
    stored(store, fanned("e2", ROUTE, at(0), &[])).await;
    stored(store, fanned("e3", ROUTE, at(0), &["b"])).await;
    stored(store, fanned("e4", ROUTE, at(0), &["a", "c"])).await;
    stored(store, fanned("e0", "stripe", at(0), &["a", "b"])).await;
    let key = |(id, d): &(&str, &str)| ((*id).to_owned(), (*d).to_owned());
    let all = [
        ("e1", "a"),
        ("e1", "b"),
        ("e1", "c"),
        ("e2", ""),
        ("e3", "b"),
        ("e4", "a"),
        ("e4", "c"),
    ];
    for limit in 1..=4 {
        let got = pages(store, Some(ROUTE), None, limit).await;
        assert_eq!(
            got,
            all.iter().map(key).collect::<Vec<_>>(),
            "limit {limit}"
        );
    }
    let to_a = pages(store, Some(ROUTE), Some("a"), 1).await;
    assert_eq!(
        to_a,
        [("e1", "a"), ("e4", "a")]
            .iter()
            .map(key)
            .collect::<Vec<_>>()
    );
    let everything = pages(store, None, None, 2).await;
    assert_eq!(everything.len(), all.len() + 2);
    assert_eq!(everything[..2], [key(&("e0", "a")), key(&("e0", "b"))]);
}

/// Every `(id, destination)` listed `limit` at a time, each page after the last row of the
/// one before.
async fn pages(
    store: &QueueStore,
    route: Option<&str>,
    destination: Option<&str>,
    limit: usize,
) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = Vec::new();
    loop {
        let page = store
            .list(Filter {
                route: route.map(str::to_owned),
                destination: destination.map(str::to_owned),
                after: keys.last().cloned(),
                limit,
                ..Filter::default()
            })
            .await
            .unwrap();
        assert!(page.len() <= limit, "a page of {limit} had {}", page.len());
        if page.is_empty() {
            return keys;
        }
        keys.extend(page.into_iter().map(|e| (e.id, e.destination)));
        assert!(keys.len() <= 100, "paging does not end: {keys:?}");
    }
}
