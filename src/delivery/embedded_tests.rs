//! Tests of the embedded store (written in their own file).
//!
//! Every test opens a fresh store in its own directory and passes the clock in (`T0` and
//! offsets from it), so due times, lease expiry and retention are exact, not timing-dependent.

use super::*;

use bytes::Bytes;

use crate::delivery::retry::DeadReason;

/// A fixed "now" (2023-11-14): every clock value in these tests is an offset from it.
const T0: i64 = 1_700_000_000_000;
const ROUTE: &str = "github";

/// A store directory under the system temp directory, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("hookgate-embedded-{}-{tag}", std::process::id()));
        // Left by an earlier run that was killed: start empty.
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// A fresh directory, created, for tests that open the database file themselves; and
    /// that file's path.
    fn with_db(tag: &str) -> (Scratch, PathBuf) {
        let scratch = Scratch::new(tag);
        std::fs::create_dir_all(scratch.path()).unwrap();
        let file = scratch.path().join(DB_FILE);
        (scratch, file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new())
}

/// Opens a store in a fresh directory named after `tag`.
fn open_fresh(tag: &str) -> (Embedded, Arc<Metrics>, Scratch) {
    let dir = Scratch::new(tag);
    let metrics = metrics();
    let store = Embedded::open(dir.path(), None, metrics.clone()).expect("open a fresh store");
    (store, metrics, dir)
}

/// Opens `dir` again after the previous `Embedded` was dropped: its writer thread lets go
/// of the database once it notices its senders are gone.
async fn reopen(dir: &Path, metrics: Arc<Metrics>) -> Embedded {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match Embedded::open(dir, None, metrics.clone()) {
            Ok(store) => return store,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot reopen {}: {e}", dir.display()),
        }
    }
}

/// An event of `route` received at `received_ms`, with a body that is not text.
fn new_event(id: &str, route: &str, received_ms: i64) -> NewEvent {
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
        lease: None,
    }
}

/// `new_event` with a dedup key remembered until `dedup_until`.
fn deduped(id: &str, route: &str, received_ms: i64, key: &str, dedup_until: i64) -> NewEvent {
    NewEvent {
        dedup_key: Some(key.to_owned()),
        dedup_until: Some(dedup_until),
        ..new_event(id, route, received_ms)
    }
}

async fn stored(store: &Embedded, event: NewEvent) {
    let id = event.id.clone();
    assert_eq!(
        store.ingest(event).await.expect("ingest"),
        Ingested::Stored,
        "{id}"
    );
}

async fn get(store: &Embedded, id: &str) -> Event {
    store
        .get(id, false)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{id} is not stored"))
}

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

/// Leases the one due event of `route` (there must be exactly one) and returns its copy.
async fn lease_one(store: &Embedded, route: &str, now_ms: i64, until_ms: i64) -> Event {
    let mut leased = store
        .lease(route, 10, now_ms, until_ms, false)
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1, "{:?}", ids(&leased));
    leased.remove(0)
}

/// Leases exactly one event of `route` due by `now_ms`.
async fn lease_one_of(store: &Embedded, route: &str, now_ms: i64) -> Event {
    let mut leased = store
        .lease(route, 1, now_ms, now_ms + 30_000, false)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingested_event_is_leased_once_with_its_exact_request() {
    let (store, _m, _dir) = open_fresh("lease-exact");
    let event = new_event("e1", ROUTE, T0);
    let sent = event.clone();
    stored(&store, event).await;

    let leased = lease_one(&store, ROUTE, T0, T0 + 30_000).await;
    assert_eq!(leased.id, "e1");
    assert_eq!(leased.route, ROUTE);
    assert_eq!(leased.body.as_ref(), Some(&sent.body));
    assert_eq!(leased.body_len, sent.body.len() as u64);
    assert_eq!(leased.headers, sent.headers);
    assert_eq!(leased.method, "POST");
    assert_eq!(leased.target, sent.target);
    assert_eq!(leased.idempotency_key, "idem-e1");
    assert_eq!(leased.verified_key, Some(1));
    assert_eq!(leased.received_ms, T0);
    assert_eq!(leased.age_from_ms, T0);
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
        .lease(ROUTE, 10, T0 + 1, T0 + 30_000, false)
        .await
        .unwrap();
    assert!(again.is_empty(), "leased twice: {:?}", ids(&again));
    assert_eq!(get(&store, "e1").await.state, State::Delivering);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_takes_at_most_limit_events_oldest_due_first() {
    let (store, _m, _dir) = open_fresh("lease-limit");
    // Stored out of order: the lease orders by due time, not by arrival at the store.
    for (id, at) in [("c", T0 + 3), ("a", T0 + 1), ("d", T0 + 4), ("b", T0 + 2)] {
        stored(&store, new_event(id, ROUTE, at)).await;
    }

    let first = store
        .lease(ROUTE, 2, T0 + 10, T0 + 30_000, false)
        .await
        .unwrap();
    assert_eq!(ids(&first), ["a", "b"]);
    let second = store
        .lease(ROUTE, 2, T0 + 10, T0 + 30_000, false)
        .await
        .unwrap();
    assert_eq!(ids(&second), ["c", "d"]);
    assert!(store
        .lease(ROUTE, 2, T0 + 10, T0 + 30_000, false)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_not_leased_before_it_is_due_nor_by_another_route() {
    let (store, _m, _dir) = open_fresh("lease-due");
    stored(&store, new_event("now", ROUTE, T0)).await;
    stored(&store, new_event("later", ROUTE, T0 + 5_000)).await;
    stored(&store, new_event("other", "stripe", T0)).await;

    let leased = store
        .lease(ROUTE, 10, T0, T0 + 30_000, false)
        .await
        .unwrap();
    assert_eq!(ids(&leased), ["now"]);
    assert_eq!(get(&store, "later").await.state, State::Queued);
    assert_eq!(get(&store, "other").await.state, State::Queued);
    // Due exactly at its time, not a millisecond before.
    assert!(store
        .lease(ROUTE, 10, T0 + 4_999, T0 + 30_000, false)
        .await
        .unwrap()
        .is_empty());
    let leased = store
        .lease(ROUTE, 10, T0 + 5_000, T0 + 30_000, false)
        .await
        .unwrap();
    assert_eq!(ids(&leased), ["later"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_of_zero_events_leases_nothing() {
    let (store, _m, _dir) = open_fresh("lease-zero");
    stored(&store, new_event("e1", ROUTE, T0)).await;
    assert!(store
        .lease(ROUTE, 0, T0, T0 + 30_000, false)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(get(&store, "e1").await.state, State::Queued);
    assert_eq!(get(&store, "e1").await.attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_due_is_the_soonest_pending_time_of_the_route() {
    let (store, _m, _dir) = open_fresh("next-due");
    assert_eq!(store.next_due(ROUTE).await.unwrap(), None);
    stored(&store, new_event("late", ROUTE, T0 + 9_000)).await;
    stored(&store, new_event("soon", ROUTE, T0 + 2_000)).await;
    stored(&store, new_event("other", "stripe", T0)).await;
    assert_eq!(store.next_due(ROUTE).await.unwrap(), Some(T0 + 2_000));

    let soon = lease_one(&store, ROUTE, T0 + 2_000, T0 + 32_000).await;
    store
        .settle(&soon, Settle::Delivered { status: 200 }, T0 + 2_100)
        .await
        .unwrap();
    assert_eq!(store.next_due(ROUTE).await.unwrap(), Some(T0 + 9_000));
}

// ---------------------------------------------------------------------------------------
// Settle

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_event_records_its_status_and_finish_time_and_is_not_leased_again() {
    let (store, _m, _dir) = open_fresh("settle-delivered");
    stored(&store, new_event("e1", ROUTE, T0)).await;
    let leased = lease_one(&store, ROUTE, T0, T0 + 30_000).await;
    let lease = leased.lease.as_deref().unwrap();
    assert_eq!(
        store.start("e1", lease, T0 + 30_000).await.unwrap(),
        Some(1)
    );

    let settled = store
        .settle(&leased, Settle::Delivered { status: 204 }, T0 + 150)
        .await
        .unwrap();
    assert!(settled);

    let e = get(&store, "e1").await;
    assert_eq!(e.state, State::Delivered);
    assert_eq!(e.last_status, Some(204));
    assert_eq!(e.last_error, None);
    assert_eq!(e.finished_ms, Some(T0 + 150));
    assert_eq!(e.attempts, 1);
    assert_eq!(e.lease, None);
    assert!(store
        .lease(ROUTE, 10, T0 + 3_600_000, T0 + 3_630_000, false)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_due(ROUTE).await.unwrap(), None);
    // Settling the same lease twice changes nothing.
    assert!(!store
        .settle(&leased, dead(Some(500), "late"), T0 + 200)
        .await
        .unwrap());
    assert_eq!(get(&store, "e1").await.state, State::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_event_is_leased_again_only_once_its_time_has_come() {
    let (store, _m, _dir) = open_fresh("settle-retry");
    stored(&store, new_event("e1", ROUTE, T0)).await;
    let leased = lease_one(&store, ROUTE, T0, T0 + 30_000).await;

    let retry = Settle::Retry {
        at_ms: T0 + 60_000,
        status: Some(503),
        error: "upstream answered 503".to_owned(),
    };
    assert!(store.settle(&leased, retry, T0 + 100).await.unwrap());

    let e = get(&store, "e1").await;
    assert_eq!(e.state, State::Retrying);
    assert_eq!(e.next_attempt_ms, T0 + 60_000);
    assert_eq!(e.last_status, Some(503));
    assert_eq!(e.last_error.as_deref(), Some("upstream answered 503"));
    assert_eq!(e.finished_ms, None);
    assert_eq!(e.lease, None);
    assert_eq!(store.next_due(ROUTE).await.unwrap(), Some(T0 + 60_000));

    assert!(store
        .lease(ROUTE, 10, T0 + 59_999, T0 + 90_000, false)
        .await
        .unwrap()
        .is_empty());
    let again = lease_one(&store, ROUTE, T0 + 60_000, T0 + 90_000).await;
    assert_eq!(again.attempts, 0, "leased twice, never started");
    assert_eq!(again.state, State::Delivering);
    assert_ne!(again.lease, leased.lease, "a new attempt gets a new lease");
    assert_eq!(again.body.as_ref(), leased.body.as_ref());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_event_records_why_and_is_never_leased_again() {
    let (store, _m, _dir) = open_fresh("settle-dead");
    stored(&store, new_event("e1", ROUTE, T0)).await;
    let leased = lease_one(&store, ROUTE, T0, T0 + 30_000).await;

    let settled = store
        .settle(
            &leased,
            dead(Some(410), "upstream answered 410 Gone"),
            T0 + 80,
        )
        .await
        .unwrap();
    assert!(settled);

    let e = get(&store, "e1").await;
    assert_eq!(e.state, State::Dead);
    assert_eq!(e.last_status, Some(410));
    assert_eq!(e.last_error.as_deref(), Some("upstream answered 410 Gone"));
    assert_eq!(e.dead_reason.as_deref(), Some("refused"));
    assert_eq!(e.finished_ms, Some(T0 + 80));
    assert_eq!(e.lease, None);
    assert_eq!(store.next_due(ROUTE).await.unwrap(), None);
    assert!(store
        .lease(ROUTE, 10, T0 + 86_400_000, T0 + 86_430_000, false)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lease_cannot_settle_an_event_another_worker_took() {
    let (store, _m, _dir) = open_fresh("stale-lease");
    stored(&store, new_event("e1", ROUTE, T0)).await;
    let first = lease_one(&store, ROUTE, T0, T0 + 30_000).await;

    // Still leased: nobody else may take it.
    assert!(store
        .lease(ROUTE, 10, T0 + 30_000, T0 + 60_000, false)
        .await
        .unwrap()
        .is_empty());
    // The first worker died: once its lease ran out, the event is due again.
    let second = lease_one(&store, ROUTE, T0 + 30_001, T0 + 60_000).await;
    assert_eq!(second.id, "e1");
    assert_eq!(second.attempts, 0);
    assert_eq!(
        store
            .start(&first.id, first.lease.as_deref().unwrap(), T0 + 90_000)
            .await
            .unwrap(),
        None,
        "a stale lease cannot start an attempt"
    );
    assert_ne!(second.lease, first.lease);

    let late = store
        .settle(&first, dead(Some(400), "stale worker"), T0 + 30_002)
        .await
        .unwrap();
    assert!(!late, "a stale lease settled the event");
    let e = get(&store, "e1").await;
    assert_eq!(e.state, State::Delivering);
    assert_eq!(e.lease, second.lease);
    assert_eq!(e.last_status, None);
    assert_eq!(e.last_error, None);
    assert_eq!(e.finished_ms, None);

    // The worker that holds the lease now settles it.
    assert!(store
        .settle(&second, Settle::Delivered { status: 200 }, T0 + 30_003)
        .await
        .unwrap());
    assert_eq!(get(&store, "e1").await.state, State::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_without_the_lease_changes_nothing_but_a_2xx_always_wins() {
    let (store, _m, _dir) = open_fresh("settle-no-lease");
    stored(&store, new_event("e1", ROUTE, T0)).await;
    lease_one(&store, ROUTE, T0, T0 + 30_000).await;
    // A copy without the lease token (an attempt whose lease ran out and went elsewhere).
    let mut copy = get(&store, "e1").await;
    copy.lease = None;
    let retry = Settle::Retry {
        at_ms: T0 + 5_000,
        status: Some(500),
        error: "late".into(),
    };
    assert!(!store.settle(&copy, retry, T0 + 1).await.unwrap());
    assert!(!store
        .settle(&copy, dead(Some(400), "late"), T0 + 1)
        .await
        .unwrap());
    assert_eq!(get(&store, "e1").await.state, State::Delivering);
    // The app took it: that is recorded whoever holds the lease, once.
    assert!(store
        .settle(&copy, Settle::Delivered { status: 200 }, T0 + 2)
        .await
        .unwrap());
    assert_eq!(get(&store, "e1").await.state, State::Delivered);
    assert!(!store
        .settle(&copy, Settle::Delivered { status: 200 }, T0 + 3)
        .await
        .unwrap());
}

// ---------------------------------------------------------------------------------------
// Dedup

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_event_with_the_same_dedup_key_is_a_duplicate_of_the_first() {
    let (store, _m, _dir) = open_fresh("dedup-same");
    let until = T0 + 300_000;
    stored(&store, deduped("first", ROUTE, T0, "delivery-42", until)).await;
    let second = store
        .ingest(deduped("second", ROUTE, T0 + 10, "delivery-42", until + 10))
        .await
        .unwrap();
    assert_eq!(
        second,
        Ingested::Duplicate {
            id: "first".to_owned(),
            state: State::Queued
        }
    );
    assert!(store.get("second", false).await.unwrap().is_none());
    // Still a duplicate once the first is delivered: the key outlives the attempt.
    let leased = lease_one(&store, ROUTE, T0 + 20, T0 + 30_000).await;
    store
        .settle(&leased, Settle::Delivered { status: 200 }, T0 + 30)
        .await
        .unwrap();
    let third = store
        .ingest(deduped("third", ROUTE, T0 + 40, "delivery-42", until + 40))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_dedup_key_on_another_route_is_another_event() {
    let (store, _m, _dir) = open_fresh("dedup-route");
    stored(&store, deduped("a", ROUTE, T0, "k", T0 + 300_000)).await;
    stored(&store, deduped("b", "stripe", T0, "k", T0 + 300_000)).await;
    assert_eq!(get(&store, "a").await.route, ROUTE);
    assert_eq!(get(&store, "b").await.route, "stripe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_a_dedup_key_never_collide() {
    let (store, _m, _dir) = open_fresh("dedup-none");
    for i in 0..5 {
        stored(&store, new_event(&format!("e{i}"), ROUTE, T0)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_store_exactly_one_event() {
    let (store, _m, _dir) = open_fresh("dedup-concurrent");
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .ingest(deduped(&format!("e{i:02}"), ROUTE, T0, "same", T0 + 1))
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
async fn make_dead(store: &Embedded, id: &str, route: &str) {
    stored(store, new_event(id, route, T0)).await;
    let leased = lease_one(store, route, T0, T0 + 30_000).await;
    let lease = leased.lease.as_deref().unwrap();
    assert_eq!(store.start(id, lease, T0 + 30_000).await.unwrap(), Some(1));
    assert!(store
        .settle(&leased, dead(Some(422), "refused"), T0 + 100)
        .await
        .unwrap());
}

/// Stores `id`, leases it, starts one attempt and settles it delivered at `T0 + 100`.
async fn make_delivered(store: &Embedded, id: &str, route: &str) {
    stored(store, new_event(id, route, T0)).await;
    let leased = lease_one(store, route, T0, T0 + 30_000).await;
    let lease = leased.lease.as_deref().unwrap();
    assert_eq!(store.start(id, lease, T0 + 30_000).await.unwrap(), Some(1));
    assert!(store
        .settle(&leased, Settle::Delivered { status: 200 }, T0 + 100)
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_dead_event_makes_it_due_now_with_a_fresh_age() {
    let (store, _m, _dir) = open_fresh("retry-dead");
    make_dead(&store, "e1", ROUTE).await;
    let now = T0 + 7_200_000;

    assert!(store.retry("e1", now).await.unwrap());
    let e = get(&store, "e1").await;
    assert_eq!(e.state, State::Retrying);
    assert_eq!(e.next_attempt_ms, now);
    assert_eq!(e.age_from_ms, now);
    assert_eq!(e.received_ms, T0, "the receive time is history, not reset");
    assert_eq!(e.attempts, 1, "attempts made stay counted");
    assert_eq!(e.budget_from, 1, "max_attempts counts from the retry");
    assert_eq!(e.dead_reason, None);
    assert_eq!(e.finished_ms, None);
    assert_eq!(store.next_due(ROUTE).await.unwrap(), Some(now));

    let leased = lease_one(&store, ROUTE, now, now + 30_000).await;
    let lease = leased.lease.as_deref().unwrap();
    assert_eq!(
        store.start("e1", lease, now + 30_000).await.unwrap(),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_delivered_or_unknown_event_is_refused() {
    let (store, _m, _dir) = open_fresh("retry-delivered");
    make_delivered(&store, "e1", ROUTE).await;
    assert!(!store.retry("e1", T0 + 1_000).await.unwrap());
    let e = get(&store, "e1").await;
    assert_eq!(e.state, State::Delivered);
    assert_eq!(e.attempts, 1);
    assert_eq!(e.finished_ms, Some(T0 + 100));
    assert!(!store.retry("nope", T0 + 1_000).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_an_event_being_delivered_is_refused() {
    let (store, _m, _dir) = open_fresh("retry-delivering");
    stored(&store, new_event("e1", ROUTE, T0)).await;
    let leased = lease_one(&store, ROUTE, T0, T0 + 30_000).await;
    assert!(!store.retry("e1", T0 + 1_000).await.unwrap());
    let e = get(&store, "e1").await;
    assert_eq!(e.state, State::Delivering);
    assert_eq!(e.lease, leased.lease);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_dead_revives_only_that_routes_dead_events() {
    let (store, _m, _dir) = open_fresh("retry-dead-route");
    make_dead(&store, "g1", ROUTE).await;
    make_dead(&store, "g2", ROUTE).await;
    make_delivered(&store, "g3", ROUTE).await;
    stored(&store, new_event("g4", ROUTE, T0 + 50_000)).await;
    make_dead(&store, "s1", "stripe").await;
    let now = T0 + 3_600_000;

    assert_eq!(store.retry_dead(ROUTE, now).await.unwrap(), 2);
    for id in ["g1", "g2"] {
        let e = get(&store, id).await;
        assert_eq!((e.state, e.next_attempt_ms), (State::Retrying, now), "{id}");
    }
    assert_eq!(get(&store, "g3").await.state, State::Delivered);
    assert_eq!(get(&store, "g4").await.state, State::Queued);
    assert_eq!(get(&store, "s1").await.state, State::Dead);
    assert_eq!(store.retry_dead(ROUTE, now).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_deletes_a_dead_event_but_not_one_being_delivered() {
    let (store, _m, _dir) = open_fresh("remove");
    make_dead(&store, "dead", ROUTE).await;
    assert!(store.remove("dead").await.unwrap());
    assert!(store.get("dead", true).await.unwrap().is_none());
    assert!(!store.remove("dead").await.unwrap(), "removed twice");

    stored(&store, new_event("busy", ROUTE, T0)).await;
    let leased = lease_one(&store, ROUTE, T0, T0 + 30_000).await;
    assert!(!store.remove("busy").await.unwrap());
    assert_eq!(get(&store, "busy").await.state, State::Delivering);
    // The worker can still settle what it was delivering.
    assert!(store
        .settle(&leased, Settle::Delivered { status: 200 }, T0 + 1)
        .await
        .unwrap());
}

// ---------------------------------------------------------------------------------------
// Purge

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_finished_events_past_retention_but_keeps_a_live_dedup_window() {
    let (store, _m, _dir) = open_fresh("purge");
    // Finished at T0 + 100 (make_*): delivered retention ends at T0 + 1_000 here, dead
    // retention at T0 + 50.
    make_delivered(&store, "old-delivered", ROUTE).await;
    make_dead(&store, "young-dead", ROUTE).await;
    stored(&store, new_event("pending", ROUTE, T0 + 1)).await;
    // Delivered when old-delivered was, but its dedup key must be kept until T0 + 10_000.
    stored(
        &store,
        deduped("remembered", "stripe", T0, "evt_1", T0 + 10_000),
    )
    .await;
    let leased = lease_one(&store, "stripe", T0, T0 + 30_000).await;
    store
        .settle(&leased, Settle::Delivered { status: 200 }, T0 + 100)
        .await
        .unwrap();

    let purged = store.purge(T0 + 1_000, T0 + 50, T0 + 5_000).await.unwrap();
    assert_eq!(purged, 1);
    assert!(store.get("old-delivered", false).await.unwrap().is_none());
    assert_eq!(get(&store, "young-dead").await.state, State::Dead);
    assert_eq!(get(&store, "pending").await.state, State::Queued);
    assert_eq!(get(&store, "remembered").await.state, State::Delivered);
    assert_eq!(
        store
            .ingest(deduped(
                "replayed",
                "stripe",
                T0 + 5_000,
                "evt_1",
                T0 + 15_000
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
        .purge(T0 + 20_000, T0 + 20_000, T0 + 20_000)
        .await
        .unwrap();
    assert_eq!(purged, 2);
    assert!(store.get("young-dead", false).await.unwrap().is_none());
    assert!(store.get("remembered", false).await.unwrap().is_none());
    assert_eq!(get(&store, "pending").await.state, State::Queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_never_deletes_pending_or_leased_events() {
    let (store, _m, _dir) = open_fresh("purge-pending");
    stored(&store, new_event("queued", ROUTE, T0)).await;
    stored(&store, new_event("leased", "stripe", T0)).await;
    stored(&store, new_event("retrying", "shopify", T0)).await;
    lease_one(&store, "stripe", T0, T0 + 30_000).await;
    let r = lease_one(&store, "shopify", T0, T0 + 30_000).await;
    let retry = Settle::Retry {
        at_ms: T0 + 60_000,
        status: None,
        error: "connection refused".to_owned(),
    };
    assert!(store.settle(&r, retry, T0 + 1).await.unwrap());

    let far = T0 + 365 * 86_400_000;
    assert_eq!(store.purge(far, far, far).await.unwrap(), 0);
    for id in ["queued", "leased", "retrying"] {
        assert!(store.get(id, false).await.unwrap().is_some(), "{id}");
    }
}

// ---------------------------------------------------------------------------------------
// Operators' reads

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_route_state_and_page_without_bodies() {
    let (store, _m, _dir) = open_fresh("list");
    for id in ["a1", "a2", "a3", "a4"] {
        stored(&store, new_event(id, ROUTE, T0)).await;
    }
    stored(&store, new_event("b1", "stripe", T0)).await;
    // Two of the route's four are leased (all due at once: which two is the store's choice).
    let leased = store.lease(ROUTE, 2, T0, T0 + 30_000, false).await.unwrap();
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
        assert_eq!(e.body_len, new_event(&e.id, &e.route, T0).body.len() as u64);
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
            after: Some("a2".to_owned()),
            limit: 2,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&page2), ["a3", "a4"]);
    let page3 = store
        .list(Filter {
            after: Some("a4".to_owned()),
            limit: 2,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&page3), ["b1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_reads_one_event_with_or_without_its_body() {
    let (store, _m, _dir) = open_fresh("get");
    let event = new_event("e1", ROUTE, T0);
    let body = event.body.clone();
    stored(&store, event).await;

    let with = store.get("e1", true).await.unwrap().expect("stored");
    assert_eq!(with.body, Some(body.clone()));
    assert_eq!(with.body_len, body.len() as u64);
    assert_eq!(with.state, State::Queued);
    assert_eq!(with.attempts, 0);
    assert_eq!(with.next_attempt_ms, T0);
    assert_eq!(with.lease, None);
    assert_eq!(with.finished_ms, None);
    assert_eq!(with.last_status, None);

    let without = store.get("e1", false).await.unwrap().expect("stored");
    assert_eq!(without.body, None);
    assert_eq!(without.body_len, body.len() as u64);
    assert!(
        without.headers.is_empty(),
        "the stored request (headers and body) is read only when asked for"
    );
    assert!(!with.headers.is_empty());

    assert!(store.get("missing", true).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_body_is_stored_and_read_back_empty() {
    let (store, _m, _dir) = open_fresh("empty-body");
    stored(
        &store,
        NewEvent {
            body: Bytes::new(),
            headers: Vec::new(),
            ..new_event("e1", ROUTE, T0)
        },
    )
    .await;
    let leased = lease_one(&store, ROUTE, T0, T0 + 30_000).await;
    assert_eq!(leased.body, Some(Bytes::new()));
    assert_eq!(leased.body_len, 0);
    assert!(leased.headers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depths_count_events_by_route_and_state_with_the_oldest_receive_time() {
    let (store, _m, _dir) = open_fresh("depths");
    stored(&store, new_event("g1", ROUTE, T0 + 30)).await;
    stored(&store, new_event("g2", ROUTE, T0 + 10)).await;
    stored(&store, new_event("g3", ROUTE, T0 + 20)).await;
    stored(&store, new_event("s1", "stripe", T0 + 5)).await;
    // g2 (due first) is leased and dies.
    let leased = lease_one_of(&store, ROUTE, T0 + 10).await;
    assert_eq!(leased.id, "g2");
    store
        .settle(&leased, dead(None, "too old"), T0 + 40)
        .await
        .unwrap();

    let mut depths = store.depths().await.unwrap();
    depths.sort_by(|a, b| (&a.route, a.state.as_str()).cmp(&(&b.route, b.state.as_str())));
    let expected = vec![
        Depth {
            route: ROUTE.to_owned(),
            state: State::Dead,
            count: 1,
            oldest_received_ms: T0 + 10,
        },
        Depth {
            route: ROUTE.to_owned(),
            state: State::Queued,
            count: 2,
            oldest_received_ms: T0 + 20,
        },
        Depth {
            route: "stripe".to_owned(),
            state: State::Queued,
            count: 1,
            oldest_received_ms: T0 + 5,
        },
    ];
    assert_eq!(depths, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_store_has_no_depths() {
    let (store, _m, _dir) = open_fresh("depths-empty");
    assert!(store.depths().await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// The directory: durability across reopen, one process, mode

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_finds_its_events() {
    let dir = Scratch::new("reopen");
    let metrics = metrics();
    let store = Embedded::open(dir.path(), None, metrics.clone()).unwrap();
    stored(&store, new_event("kept", ROUTE, T0)).await;
    make_dead(&store, "dead", "stripe").await;
    let body = new_event("kept", ROUTE, T0).body;
    drop(store);

    let store = reopen(dir.path(), metrics).await;
    let kept = store.get("kept", true).await.unwrap().expect("kept");
    assert_eq!(kept.state, State::Queued);
    assert_eq!(kept.body, Some(body));
    assert_eq!(get(&store, "dead").await.state, State::Dead);
    assert_eq!(
        ids(&store
            .lease(ROUTE, 10, T0, T0 + 30_000, false)
            .await
            .unwrap()),
        ["kept"]
    );
}

/// A store written with schema 2 (its due index said `IN` the three pending states) is
/// updated in place when opened: the same events, the index's new `WHERE`, version 3, and
/// the pending event is still leased through the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_2_store_is_updated_in_place_and_keeps_its_events() {
    let dir = Scratch::new("schema-2");
    let metrics = metrics();
    let store = Embedded::open(dir.path(), None, metrics.clone()).unwrap();
    stored(&store, new_event("pending", ROUTE, T0)).await;
    make_dead(&store, "dead", "stripe").await;
    drop(store);
    let file = dir.path().join(DB_FILE);
    let raw = Connection::open(&file).unwrap();
    raw.busy_timeout(Duration::from_secs(5)).unwrap();
    raw.execute_batch(
        "BEGIN IMMEDIATE;
         DROP INDEX hookgate_events_due;
         CREATE INDEX hookgate_events_due ON hookgate_events (route, next_attempt_at)
             WHERE state IN ('queued', 'retrying', 'delivering');
         ALTER TABLE hookgate_events DROP COLUMN dead_reason;
         ALTER TABLE hookgate_events DROP COLUMN budget_from;
         PRAGMA user_version = 2;
         COMMIT;",
    )
    .unwrap();
    drop(raw);

    let store = reopen(dir.path(), metrics).await;
    let raw = Connection::open_with_flags(&file, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let index: String = raw
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'hookgate_events_due'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        index.contains("NOT IN ('delivered', 'dead')"),
        "the due index was not rebuilt: {index}"
    );
    let plan: String = raw
        .query_row(
            "EXPLAIN QUERY PLAN SELECT id FROM hookgate_events WHERE route = 'github' \
             AND state NOT IN ('delivered', 'dead') AND next_attempt_at <= 0",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("hookgate_events_due"), "lease plan: {plan}");
    let dead = get(&store, "dead").await;
    assert_eq!(dead.state, State::Dead);
    assert_eq!(dead.attempts, 1);
    assert_eq!(dead.dead_reason, None, "not recorded before schema 4");
    assert_eq!(dead.budget_from, 0);
    assert_eq!(
        ids(&store
            .lease(ROUTE, 10, T0, T0 + 30_000, false)
            .await
            .unwrap()),
        ["pending"]
    );
}

/// A store from a development build's schema 1 is refused, not guessed at.
#[test]
fn a_schema_1_store_is_refused() {
    let (dir, file) = Scratch::with_db("schema-1");
    let raw = Connection::open(file).unwrap();
    raw.execute_batch("PRAGMA user_version = 1;").unwrap();
    drop(raw);
    let Err(StoreError::Open(why)) = Embedded::open(dir.path(), None, metrics()) else {
        panic!("a schema 1 store was opened");
    };
    assert!(why.contains("schema 1"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_being_delivered_when_the_store_closed_is_retrying_after_reopen() {
    let dir = Scratch::new("reopen-lease");
    let metrics = metrics();
    let store = Embedded::open(dir.path(), None, metrics.clone()).unwrap();
    stored(&store, new_event("e1", ROUTE, T0)).await;
    // Leased for an hour: without the release on open it would not be due for that long.
    let leased = lease_one(&store, ROUTE, T0, T0 + 3_600_000).await;
    let lease = leased.lease.as_deref().unwrap();
    assert_eq!(
        store.start("e1", lease, T0 + 3_600_000).await.unwrap(),
        Some(1)
    );
    // Another, leased but never started when the process ended.
    stored(&store, new_event("e2", ROUTE, T0 + 1)).await;
    lease_one(&store, ROUTE, T0 + 1, T0 + 3_600_000).await;
    drop(store);

    let store = reopen(dir.path(), metrics).await;
    let e = get(&store, "e1").await;
    assert_eq!(e.state, State::Retrying);
    assert_eq!(e.lease, None);
    assert_eq!(e.attempts, 1, "the interrupted attempt still counts");
    let e2 = get(&store, "e2").await;
    assert_eq!(e2.state, State::Queued, "a lease alone was no attempt");
    assert_eq!(e2.attempts, 0);
    let again = lease_one_of(&store, ROUTE, T0 + 1).await;
    assert_eq!(again.id, "e1");
    assert_eq!(again.attempts, 1);
    assert_eq!(again.body, leased.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_already_open_is_refused_as_in_use() {
    let (store, metrics, dir) = open_fresh("in-use");
    let err = match Embedded::open(dir.path(), None, metrics.clone()) {
        Ok(_) => panic!("a second store opened the same directory"),
        Err(e) => e,
    };
    assert!(matches!(err, StoreError::Open(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("in use by another hookgate"), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    // The first store is unharmed.
    stored(&store, new_event("e1", ROUTE, T0)).await;
    assert_eq!(get(&store, "e1").await.state, State::Queued);
    // And once it is closed, the directory can be opened again.
    drop(store);
    let again = reopen(dir.path(), metrics).await;
    assert_eq!(get(&again, "e1").await.state, State::Queued);
}

/// `close` lets the writer commit and answer everything already handed to it, refuses what
/// comes after, and returns only once the directory is free: a restart in this process
/// opens it at once, with no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_what_was_handed_over_refuses_the_rest_and_frees_the_directory() {
    let (store, metrics, dir) = open_fresh("close");
    let store = Arc::new(store);
    stored(&store, new_event("before", ROUTE, T0)).await;
    // Another connection holds SQLite's write lock: the writer waits for it (its busy
    // timeout), so what is handed over meanwhile is still uncommitted when the close comes.
    let blocker = Connection::open(dir.path().join(DB_FILE)).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let handed_over: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("wait{i:02}");
                (id.clone(), store.ingest(new_event(&id, ROUTE, T0)).await)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let closing = {
        let store = store.clone();
        tokio::spawn(async move { store.close().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!closing.is_finished(), "close waits for the writer");
    assert!(matches!(
        store.ingest(new_event("after", ROUTE, T0)).await,
        Err(StoreError::Closed)
    ));
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    closing.await.unwrap();

    let again = Embedded::open(dir.path(), None, metrics.clone())
        .expect("the directory is free once close returns");
    for task in handed_over {
        let (id, answer) = task.await.unwrap();
        assert_eq!(answer.expect("committed"), Ingested::Stored, "{id}");
        assert_eq!(get(&again, &id).await.state, State::Queued);
    }
    assert_eq!(get(&again, "before").await.state, State::Queued);
    assert!(again.get("after", false).await.unwrap().is_none());
    store.close().await; // Again: returns at once.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_store_directory_is_private_to_its_owner() {
    let scratch = Scratch::new("mode-new");
    let dir = scratch.path().join("nested").join("queue");
    let _store = Embedded::open(&dir, None, metrics()).unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    assert!(dir.join(DB_FILE).is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_open_directory_is_tightened_to_0700() {
    let scratch = Scratch::new("mode-existing");
    std::fs::create_dir_all(scratch.path()).unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _store = Embedded::open(scratch.path(), None, metrics()).unwrap();
    let mode = std::fs::metadata(scratch.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
}

// ---------------------------------------------------------------------------------------
// Group commit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_share_commits() {
    let (store, metrics, _dir) = open_fresh("group-commit");
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .ingest(new_event(&format!("e{i:03}"), ROUTE, T0 + i))
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().expect("ingest"), Ingested::Stored);
    }

    let batches = &metrics.queue.commit_batch;
    assert_eq!(
        batches.get_sample_sum(),
        200.0,
        "every ingest committed once"
    );
    assert!(
        batches.get_sample_count() < 200,
        "{} commits for 200 events: no group commit",
        batches.get_sample_count()
    );
    let depths = store.depths().await.unwrap();
    assert_eq!(depths.len(), 1);
    assert_eq!(depths[0].count, 200);
    assert_eq!(depths[0].oldest_received_ms, T0);
}

/// Under steady writes, committed pages are copied into the database file beside the
/// writer, and the WAL starts over instead of growing with everything ever written (SQLite's
/// own checkpoint, which would stall a commit, is off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_copied_into_the_database_and_starts_over_under_steady_writes() {
    let (store, _metrics, dir) = open_fresh("checkpoint");
    let store = Arc::new(store);
    let (wal, db) = (
        dir.path().join(format!("{DB_FILE}-wal")),
        dir.path().join(DB_FILE),
    );
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    const MIB: u64 = 1024 * 1024;
    // 48 MiB in waves of 64 events of 32 KiB: three times the WAL the writer lets grow.
    let mut wal_peak = 0;
    for wave in 0..24 {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .ingest(big_event(&format!("w{wave:02}-{i:02}"), 32))
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().expect("ingest"), Ingested::Stored);
        }
        wal_peak = wal_peak.max(size(&wal));
    }
    assert!(
        wal_peak < 36 * MIB,
        "the WAL grew to {} MiB for 48 MiB written: it never started over",
        wal_peak / MIB
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while size(&db) < 40 * MIB {
        assert!(
            Instant::now() < deadline,
            "only {} MiB of the 48 written reached the database file",
            size(&db) / MIB
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A WAL database at `file` with SQLite's own checkpoint off, as the store runs it, and one
/// table `t (b BLOB)` to write to.
fn wal_db(file: &Path) -> Connection {
    let conn = Connection::open(file).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (b BLOB);",
    )
    .unwrap();
    conn
}

/// Runs the checkpointer on its own connection to `file` for `for_how_long`, then ends it as
/// the writer's end does; returns what it reported and counted.
fn run_checkpointer(file: &Path, for_how_long: Duration) -> (Arc<WalReport>, Arc<Metrics>) {
    let conn = Connection::open(file).unwrap();
    let (wal, metrics) = (Arc::new(WalReport::default()), metrics());
    let (writer_alive, writer_gone) = std::sync::mpsc::channel::<()>();
    let thread = {
        let (wal, metrics) = (wal.clone(), metrics.clone());
        std::thread::spawn(move || checkpointer(conn, 4096, &writer_gone, &wal, &metrics))
    };
    std::thread::sleep(for_how_long);
    drop(writer_alive);
    thread
        .join()
        .expect("the checkpointer ends with the writer");
    (wal, metrics)
}

/// The writer's own checkpoint: not while the checkpointer reports nothing worth it, but
/// every `WRITER_CHECKPOINT_EVERY` batches whatever it reports (were it stuck or gone, the
/// WAL would otherwise grow for good). Seen through the WAL file: with
/// `journal_size_limit = 0` it is cut to nothing when a write starts it over.
#[test]
fn the_writer_checkpoints_by_itself_every_so_many_batches() {
    let (_scratch, file) = Scratch::with_db("writer-checkpoint");
    let conn = wal_db(&file);
    conn.execute_batch("PRAGMA journal_size_limit = 0;")
        .unwrap();
    let write = |kib: usize| {
        conn.execute("INSERT INTO t VALUES (?1)", [vec![7u8; kib * 1024]])
            .unwrap();
    };
    let wal_len = || {
        std::fs::metadata(file.with_extension("sqlite3-wal"))
            .unwrap()
            .len()
    };
    write(2048);
    let metrics = metrics();
    let report = WalReport::default();

    let mut batches = 0;
    restart_wal(&conn, &report, &mut batches, &metrics);
    write(1);
    assert!(wal_len() > 2 << 20, "checkpointed with nothing reported");

    let mut batches = WRITER_CHECKPOINT_EVERY - 1;
    restart_wal(&conn, &report, &mut batches, &metrics);
    assert_eq!(batches, 0);
    write(1);
    assert!(
        wal_len() < 64 << 10,
        "the WAL did not start over: {} bytes",
        wal_len()
    );
}

/// A reader holding an old snapshot keeps the checkpointer from copying the WAL's end: the
/// checkpointer waits its pause between tries instead of trying again at once (a spin of
/// thousands of checkpoints a second, one core's worth, before this was fixed).
#[test]
fn a_checkpointer_held_back_by_a_reader_does_not_spin() {
    let (_scratch, file) = Scratch::with_db("checkpoint-reader");
    let writer = wal_db(&file);
    let write = || {
        writer
            .execute("INSERT INTO t VALUES (?1)", [vec![7u8; 1 << 20]])
            .unwrap();
    };
    write();
    // The reader's snapshot ends here; what is written next cannot be copied while it lasts.
    let reader = Connection::open(&file).unwrap();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM t;")
        .unwrap();
    write();

    let (wal, metrics) = run_checkpointer(&file, Duration::from_millis(500));
    use std::sync::atomic::Ordering::Relaxed;
    assert!(
        wal.behind.load(Relaxed) > 0,
        "the reader did not hold it back"
    );
    // The gauges show the held-back megabyte, and the two written.
    let behind = metrics.queue.wal_behind_bytes.get();
    assert_eq!(behind, i64::from(wal.behind.load(Relaxed)) * 4096);
    assert!(behind > 1 << 20, "{behind} bytes behind");
    assert!(metrics.queue.wal_bytes.get() >= behind);
    assert!(metrics.queue.store_used_bytes.get() > 2 << 20);
    // Every 20 ms for 0.5 s, and once more after the copy that moved.
    let passes = wal.passes.load(Relaxed);
    assert!(passes <= 40, "{passes} checkpoints in 0.5 s");
    drop(reader);
}

/// A checkpoint that keeps failing (here the file is not a database at all) is counted and
/// retried after a growing pause, not 50 times a second; the checkpointer ends with the
/// writer.
#[test]
fn a_failing_checkpoint_is_counted_and_retried_with_backoff() {
    let (_scratch, file) = Scratch::with_db("checkpoint-fails");
    std::fs::write(&file, vec![0x5a; 8192]).unwrap();
    std::fs::write(format!("{}-wal", file.display()), vec![0; 12_345]).unwrap();
    let (_, metrics) = run_checkpointer(&file, Duration::from_millis(2_500));
    let failures = metrics
        .queue
        .store_errors
        .with_label_values(&["checkpoint"])
        .get();
    // Tried at once, then after 1 s, then after 2 s.
    assert!(
        (1..=3).contains(&failures),
        "{failures} failed checkpoints in 2.5 s"
    );
    // Nothing is copied: the gauges say the whole WAL file is behind.
    assert_eq!(metrics.queue.wal_bytes.get(), 12_345);
    assert_eq!(metrics.queue.wal_behind_bytes.get(), 12_345);
}

/// An operation that fails on its own (here, an id that is already stored) fails alone: the
/// others committed with it did nothing wrong and are stored. `apply` is called directly so
/// the two operations are certainly in one batch.
#[test]
fn one_failing_operation_fails_only_itself_not_its_batch() {
    let (_scratch, file) = Scratch::with_db("batch-isolation");
    let mut conn = Connection::open(file).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let op = |e: NewEvent| (Op::Ingest(Box::new(e)), oneshot::channel().0);

    let first = [op(new_event("taken", ROUTE, T0))];
    let answers = apply(&mut conn, &first, None).expect("commit");
    assert!(matches!(
        answers[..],
        [Ok(Answer::Ingested(Ingested::Stored))]
    ));

    let batch = [
        op(new_event("innocent", ROUTE, T0)),
        op(new_event("taken", "stripe", T0)),
        op(new_event("after", ROUTE, T0)),
    ];
    let answers = apply(&mut conn, &batch, None).expect("the batch commits");
    assert!(matches!(answers[0], Ok(Answer::Ingested(Ingested::Stored))));
    assert!(
        matches!(&answers[1], Err(e) if e.to_string().contains("UNIQUE")),
        "the colliding id is refused"
    );
    assert!(matches!(answers[2], Ok(Answer::Ingested(Ingested::Stored))));
    let stored: Vec<(String, String)> = conn
        .prepare("SELECT id, route FROM hookgate_events ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let expected = [("after", ROUTE), ("innocent", ROUTE), ("taken", ROUTE)]
        .map(|(id, route)| (id.to_owned(), route.to_owned()));
    assert_eq!(stored, expected, "the refused event left nothing behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_a_new_event_and_takes_it_once_room_is_made() {
    let dir = Scratch::new("max-bytes");
    let metrics = metrics();
    let store = Embedded::open(dir.path(), Some(256 * 1024), metrics.clone()).unwrap();
    stored(&store, new_event("first", ROUTE, T0)).await;
    let leased = lease_one(&store, ROUTE, T0, T0 + 30_000).await;

    let mut refused = None;
    for i in 0..100 {
        match store.ingest(big_event(&format!("fill{i:03}"), 16)).await {
            Ok(Ingested::Stored) => {}
            Ok(other) => panic!("fill{i:03}: {other:?}"),
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (n, err) = refused.expect("a 256 KiB store took 1.6 MB of events");
    assert!(n > 0, "refused before anything was stored");
    assert!(matches!(err, StoreError::Engine(_)), "{err:?}");
    assert!(store
        .get(&format!("fill{n:03}"), false)
        .await
        .unwrap()
        .is_none());
    let errors = &metrics.queue.store_errors;
    let counted =
        errors.with_label_values(&["write"]).get() + errors.with_label_values(&["commit"]).get();
    assert!(counted >= 1, "the refusal is counted");
    // The gauges say how full it is: nine tenths of max_bytes are for new events.
    assert_eq!(metrics.queue.store_max_bytes.get(), 256 * 1024);
    let deadline = Instant::now() + Duration::from_secs(3);
    while metrics.queue.store_used_bytes.get() < 200 * 1024 {
        assert!(
            Instant::now() < deadline,
            "store_used_bytes stayed at {}",
            metrics.queue.store_used_bytes.get()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics.queue.store_used_bytes.get() <= 256 * 1024);

    // What is already stored goes on: the leased event settles.
    assert!(store
        .settle(&leased, Settle::Delivered { status: 200 }, T0 + 1)
        .await
        .unwrap());
    assert_eq!(get(&store, "first").await.state, State::Delivered);
    for i in 0..n {
        assert_eq!(
            get(&store, &format!("fill{i:03}")).await.state,
            State::Queued
        );
    }

    // Removing events makes room for new ones.
    for i in 0..n {
        assert!(store.remove(&format!("fill{i:03}")).await.unwrap());
    }
    stored(&store, big_event(&format!("fill{n:03}"), 16)).await;
}

/// An event of route "stripe" with a body of `kib` KiB.
fn big_event(id: &str, kib: usize) -> NewEvent {
    NewEvent {
        body: Bytes::from(vec![b'x'; kib * 1024]),
        ..new_event(id, "stripe", T0)
    }
}

/// One event of a batch does not fit under `max_bytes`: it alone fails, and every answer
/// says what is on disk. SQLite answers SQLITE_FULL by rolling back the whole transaction
/// (not just the statement); the writer then applies the batch again without it.
#[test]
fn an_event_that_does_not_fit_fails_alone_and_the_rest_of_its_batch_commits() {
    let (_scratch, file) = Scratch::with_db("full-batch");
    let mut conn = Connection::open(file).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    // As `Embedded::open` sets it for max_bytes = 256 KiB.
    conn.query_row("PRAGMA max_page_count = 64", [], |_| Ok(()))
        .unwrap();
    let op = |e: NewEvent| (Op::Ingest(Box::new(e)), oneshot::channel().0);

    // Fill the store, one event per batch, until one does not fit.
    let mut filled = 0;
    while filled < 100 {
        let batch = [op(big_event(&format!("fill{filled:03}"), 16))];
        match apply(&mut conn, &batch, None) {
            Ok(answers) if answers[0].is_ok() => filled += 1,
            _ => break,
        }
    }
    assert!((1..100).contains(&filled), "filled {filled}");
    // Room for a small event, not for a 64 KiB one.
    let remove = [(
        Op::Remove {
            id: "fill000".to_owned(),
        },
        oneshot::channel().0,
    )];
    assert!(apply(&mut conn, &remove, None).is_ok());

    let batch = [
        op(new_event("before", ROUTE, T0)),
        op(big_event("overflow", 64)),
        op(new_event("after", ROUTE, T0)),
    ];
    let applied = apply(&mut conn, &batch, None);
    let on_disk: Vec<String> = conn
        .prepare("SELECT id FROM hookgate_events WHERE id IN ('before', 'overflow', 'after') ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let answers = match applied {
        Ok(answers) => answers,
        Err(e) => panic!("the whole batch failed ({e}) while {on_disk:?} are stored"),
    };
    assert!(matches!(answers[0], Ok(Answer::Ingested(Ingested::Stored))));
    assert!(answers[1].is_err(), "the event over max_bytes is refused");
    assert!(matches!(answers[2], Ok(Answer::Ingested(Ingested::Stored))));
    assert_eq!(on_disk, ["after", "before"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stored_leased_is_not_leased_again_until_its_lease_runs_out() {
    let (store, _m, _dir) = open_fresh("stored-leased");
    let lease = crate::delivery::event::Lease {
        token: "ingest-lease".to_owned(),
        until_ms: T0 + 10_000,
    };
    let event = NewEvent {
        lease: Some(lease.clone()),
        ..new_event("e1", ROUTE, T0)
    };
    let copy = event.leased_copy(&lease, None);
    stored(&store, event).await;

    let read = get(&store, "e1").await;
    assert_eq!(read.state, State::Delivering);
    assert_eq!(read.attempts, 1);
    assert_eq!(read.lease.as_deref(), Some("ingest-lease"));
    assert!(
        store
            .lease(ROUTE, 10, T0 + 1, T0 + 20_000, false)
            .await
            .unwrap()
            .is_empty(),
        "held by its ingest lease"
    );
    // The in-memory copy settles it, as a leased copy would.
    assert!(store
        .settle(&copy, Settle::Delivered { status: 200 }, T0 + 2)
        .await
        .unwrap());
    assert_eq!(get(&store, "e1").await.state, State::Delivered);

    // Another stored leased event whose process died: due again once the lease ran out.
    let lease = crate::delivery::event::Lease {
        token: "dead-process".to_owned(),
        until_ms: T0 + 10_000,
    };
    stored(
        &store,
        NewEvent {
            lease: Some(lease),
            ..new_event("e2", ROUTE, T0)
        },
    )
    .await;
    let again = store
        .lease(ROUTE, 10, T0 + 10_001, T0 + 30_000, false)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, "e2");
    assert_eq!(
        again[0].attempts, 1,
        "the cut-off attempt counts, the new lease does not"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_being_delivered_is_next_due_when_its_lease_runs_out_and_delivered_ones_are_not_counted(
) {
    let (store, _m, _dir) = open_fresh("due-lease");
    stored(&store, new_event("e1", ROUTE, T0)).await;
    stored(&store, new_event("e2", ROUTE, T0)).await;
    let leased = store.lease(ROUTE, 1, T0, T0 + 60_000, false).await.unwrap();
    assert_eq!(leased.len(), 1);
    // e2 is due now; e1 (leased) only when its lease runs out.
    assert_eq!(store.next_due(ROUTE).await.unwrap(), Some(T0));
    let other = store.lease(ROUTE, 1, T0, T0 + 60_000, false).await.unwrap();
    assert_eq!(
        store.next_due(ROUTE).await.unwrap(),
        Some(T0 + 60_000),
        "nothing is due before the leases run out: a worker must not spin on them"
    );
    assert!(store
        .settle(&leased[0], Settle::Delivered { status: 200 }, T0 + 1)
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
