//! Tests of the embedded store (written in their own file).
//!
//! Every test opens a fresh store in its own directory and passes the clock in (`T0` and
//! offsets from it), so due times, lease expiry and retention are exact, not timing-dependent.

use super::*;

use bytes::Bytes;

/// A fixed "now" (2023-11-14): every clock value in these tests is an offset from it.
const T0: UnixMs = UnixMs(1_700_000_000_000);
const ROUTE: &str = "github";

/// `offset_ms` after [`T0`].
fn at(offset_ms: u64) -> UnixMs {
    T0.after(Duration::from_millis(offset_ms))
}

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
        deliveries: vec![crate::delivery::event::NewDelivery {
            destination: String::new(),
            idempotency_key: format!("idem-{id}"),
            lease: None,
        }],
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
    let mut rows = store.get(id, false).await.expect("get");
    assert_eq!(rows.len(), 1, "{id} is stored once");
    rows.remove(0)
}

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

/// Leases the one due event of `route` (there must be exactly one) and returns its copy.
async fn lease_one(store: &Embedded, route: &str, now_ms: UnixMs, until_ms: UnixMs) -> Event {
    let mut leased = store
        .lease((route, ""), 10, now_ms, until_ms, false)
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1, "{:?}", ids(&leased));
    leased.remove(0)
}

/// Leases exactly one event of `route` due by `now_ms`.
async fn lease_one_of(store: &Embedded, route: &str, now_ms: UnixMs) -> Event {
    let mut leased = store
        .lease(
            (route, ""),
            1,
            now_ms,
            now_ms.after(Duration::from_secs(30)),
            false,
        )
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    leased.remove(0)
}

// ---------------------------------------------------------------------------------------
// The directory: durability across reopen, one process, mode

/// The tables as schema 5 made them (a row per event, its request keyed by the row's
/// `seq`), with a pending event and a dead one.
const SCHEMA_5_WITH_EVENTS: &str = "
CREATE TABLE hookgate_events (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, route TEXT NOT NULL, dedup_key TEXT,
    dedup_until INTEGER, idempotency_key TEXT NOT NULL, state TEXT NOT NULL,
    received_at INTEGER NOT NULL, age_from INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, lease TEXT, leased_until INTEGER, finished_at INTEGER,
    last_status INTEGER, last_error TEXT, verified_key INTEGER, method TEXT NOT NULL,
    target TEXT NOT NULL, body_len INTEGER NOT NULL, dead_reason TEXT,
    budget_from INTEGER NOT NULL DEFAULT 0, UNIQUE (route, dedup_key));
CREATE TABLE hookgate_requests (seq INTEGER PRIMARY KEY, headers BLOB NOT NULL,
    body BLOB NOT NULL);
CREATE TABLE hookgate_pauses (route TEXT NOT NULL, destination TEXT NOT NULL,
    paused_at INTEGER NOT NULL, PRIMARY KEY (route, destination));
CREATE INDEX hookgate_events_due ON hookgate_events (route, next_attempt_at)
    WHERE state NOT IN ('delivered', 'dead');
CREATE INDEX hookgate_events_finished ON hookgate_events (state, finished_at)
    WHERE state IN ('delivered', 'dead');
INSERT INTO hookgate_events (seq, id, route, dedup_key, idempotency_key, state, received_at,
    age_from, next_attempt_at, method, target, body_len)
    VALUES (7, 'pending', 'github', 'k1', 'idem-pending', 'queued', 0, 0, 0, 'POST', '/h', 9);
INSERT INTO hookgate_events (seq, id, route, idempotency_key, state, received_at, age_from,
    next_attempt_at, attempts, finished_at, last_status, method, target, body_len,
    dead_reason) VALUES (9, 'dead', 'stripe', 'idem-dead', 'dead', 0, 0, 0, 1, 100, 422,
    'POST', '/h', 4, 'refused');
INSERT INTO hookgate_requests VALUES (7, X'782d613a20310d0a', X'70656e64696e670021');
INSERT INTO hookgate_requests VALUES (9, X'', X'64656164');
";

/// A store written with schema 5, 4, 3 or 2 (a row per event; before 4 without `dead_reason`
/// and `budget_from`; 2's due index said `IN` the three pending states) is updated in place
/// when opened: the same events, now each the delivery to its route's one destination with
/// the request it had; the new indexes, used by the lease; version 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_store_is_updated_in_place_and_keeps_its_events() {
    for version in [5, 4, 3, 2] {
        let (dir, file) = Scratch::with_db(&format!("schema-{version}"));
        let raw = Connection::open(&file).unwrap();
        raw.execute_batch(SCHEMA_5_WITH_EVENTS).unwrap();
        if version < 4 {
            raw.execute_batch(
                "ALTER TABLE hookgate_events DROP COLUMN dead_reason; \
                 ALTER TABLE hookgate_events DROP COLUMN budget_from;",
            )
            .unwrap();
        }
        if version == 2 {
            raw.execute_batch(
                "DROP INDEX hookgate_events_due; \
                 CREATE INDEX hookgate_events_due ON hookgate_events (route, next_attempt_at) \
                 WHERE state IN ('queued', 'retrying', 'delivering');",
            )
            .unwrap();
        }
        raw.execute_batch(&format!("PRAGMA user_version = {version};"))
            .unwrap();
        drop(raw);

        let store = Embedded::open(dir.path(), None, metrics()).unwrap();
        let raw = Connection::open_with_flags(&file, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let found: i64 = raw
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(found, SCHEMA_VERSION);
        let plan: String = raw
            .query_row(
                &format!("EXPLAIN QUERY PLAN {}", sql::due('?', PENDING, "seq")),
                params![0, 0, "github", 0, 10, 0, ""],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("hookgate_events_due"), "lease plan: {plan}");
        let dead = get(&store, "dead").await;
        assert_eq!((dead.state, dead.attempts), (State::Dead, 1));
        assert_eq!(dead.destination, "");
        let reason = (version >= 4).then(|| "refused".to_owned());
        assert_eq!(dead.dead_reason, reason, "schema {version}");
        let mut leased = store
            .lease(("github", ""), 10, at(0), at(30_000), false)
            .await
            .unwrap();
        assert_eq!(ids(&leased), ["pending"], "schema {version}");
        let pending = leased.remove(0);
        assert_eq!(pending.idempotency_key, "idem-pending");
        assert_eq!(pending.body.as_deref(), Some(&b"pending\0!"[..]));
        assert_eq!(pending.headers, b"x-a: 1\r\n");
        // Its dedup key still finds it.
        let mut again = new_event("again", "github", at(5));
        again.dedup_key = Some("k1".into());
        assert!(matches!(
            store.ingest(again).await.unwrap(),
            Ingested::Duplicate { id, .. } if id == "pending"
        ));
        // New requests do not take the old ones' keys.
        stored(&store, new_event("new", "github", at(5))).await;
        let new = store.get("new", true).await.unwrap().remove(0);
        assert!(new.body.unwrap().starts_with(b"{\"id\":\"new\"}"));
        store.close().await;
    }
}

/// A store from a development build's schema 1 is refused, not guessed at.
#[test]
fn a_schema_1_store_is_refused() {
    let (dir, file) = Scratch::with_db("schema-1");
    let raw = Connection::open(file).unwrap();
    raw.execute_batch("PRAGMA user_version = 1;").unwrap();
    drop(raw);
    let Err(QueueStoreError::Open(why)) = Embedded::open(dir.path(), None, metrics()) else {
        panic!("a schema 1 store was opened");
    };
    assert!(why.contains("schema 1"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_being_delivered_when_the_store_closed_is_retrying_after_reopen() {
    let dir = Scratch::new("reopen-lease");
    let metrics = metrics();
    let store = Embedded::open(dir.path(), None, metrics.clone()).unwrap();
    stored(&store, new_event("e1", ROUTE, at(0))).await;
    // Leased for an hour: without the release on open it would not be due for that long.
    let leased = lease_one(&store, ROUTE, at(0), at(3_600_000)).await;
    let lease = leased.lease.as_deref().unwrap();
    assert_eq!(
        store.start("e1", lease, at(3_600_000)).await.unwrap(),
        Some(1)
    );
    // Another, leased but never started when the process ended.
    stored(&store, new_event("e2", ROUTE, at(1))).await;
    lease_one(&store, ROUTE, at(1), at(3_600_000)).await;
    drop(store);

    let store = reopen(dir.path(), metrics).await;
    let e = get(&store, "e1").await;
    assert_eq!(e.state, State::Retrying);
    assert_eq!(e.lease, None);
    assert_eq!(e.attempts, 1, "the interrupted attempt still counts");
    let e2 = get(&store, "e2").await;
    assert_eq!(e2.state, State::Queued, "a lease alone was no attempt");
    assert_eq!(e2.attempts, 0);
    let again = lease_one_of(&store, ROUTE, at(1)).await;
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
    assert!(matches!(err, QueueStoreError::Open(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("in use by another hookgate"), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    // The first store is unharmed.
    stored(&store, new_event("e1", ROUTE, at(0))).await;
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
    stored(&store, new_event("before", ROUTE, at(0))).await;
    // Another connection holds SQLite's write lock: the writer waits for it (its busy
    // timeout), so what is handed over meanwhile is still uncommitted when the close comes.
    let blocker = Connection::open(dir.path().join(DB_FILE)).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let handed_over: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("wait{i:02}");
                (id.clone(), store.ingest(new_event(&id, ROUTE, at(0))).await)
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
        store.ingest(new_event("after", ROUTE, at(0))).await,
        Err(QueueStoreError::Closed)
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
    assert!(again.get("after", false).await.unwrap().is_empty());
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
                    .ingest(new_event(&format!("e{i:03}"), ROUTE, at(i)))
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
    assert_eq!(depths[0].oldest_received_ms, at(0));
}

/// Under steady writes, committed pages are copied into the database file beside the
/// writer, and the WAL starts over instead of growing with everything ever written (SQLite's
/// own checkpoint, which would stall a commit, is off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_copied_into_the_database_and_starts_over_under_steady_writes() {
    let (store, metrics, dir) = open_fresh("checkpoint");
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
    // Copying is beside the writer, so it may trail it: on a slow shared disk (CI's)
    // copying the last 30 MiB and syncing them once took more than 10 s. What is checked
    // is that the pages get there, not how fast.
    let deadline = Instant::now() + Duration::from_secs(60);
    while size(&db) < 40 * MIB {
        assert!(
            Instant::now() < deadline,
            "only {} MiB of the 48 written reached the database file; the WAL is {} MiB, \
             {} checkpoints failed",
            size(&db) / MIB,
            size(&wal) / MIB,
            metrics
                .queue
                .store_errors
                .with_label_values(&["checkpoint"])
                .get()
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

    let first = [op(new_event("taken", ROUTE, at(0)))];
    let answers = apply(&mut conn, &first, None).expect("commit");
    assert!(matches!(
        answers[..],
        [Ok(Answer::Ingested(Ingested::Stored))]
    ));

    let batch = [
        op(new_event("innocent", ROUTE, at(0))),
        op(new_event("taken", "stripe", at(0))),
        op(new_event("after", ROUTE, at(0))),
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
    stored(&store, new_event("first", ROUTE, at(0))).await;
    let leased = lease_one(&store, ROUTE, at(0), at(30_000)).await;

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
    assert!(matches!(err, QueueStoreError::Engine(_)), "{err:?}");
    assert!(store
        .get(&format!("fill{n:03}"), false)
        .await
        .unwrap()
        .is_empty());
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
        .settle(&leased, Settle::Delivered { status: 200 }, at(1))
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
        assert_eq!(store.remove(&format!("fill{i:03}"), None).await.unwrap(), 1);
    }
    stored(&store, big_event(&format!("fill{n:03}"), 16)).await;
}

/// An event of route "stripe" with a body of `kib` KiB.
fn big_event(id: &str, kib: usize) -> NewEvent {
    NewEvent {
        body: Bytes::from(vec![b'x'; kib * 1024]),
        ..new_event(id, "stripe", at(0))
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
            destination: None,
        },
        oneshot::channel().0,
    )];
    assert!(apply(&mut conn, &remove, None).is_ok());

    let batch = [
        op(new_event("before", ROUTE, at(0))),
        op(big_event("overflow", 64)),
        op(new_event("after", ROUTE, at(0))),
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

/// The queries say "pending" and "finished" as the partial indexes do, or SQLite would not
/// use them.
#[test]
fn the_schema_indexes_say_what_the_queries_say() {
    assert!(SCHEMA.contains(&format!("WHERE {PENDING};")));
    assert!(SCHEMA.contains("WHERE finished_at IS NOT NULL;"));
}
