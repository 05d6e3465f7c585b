//! The embedded queue store: SQLite in one directory (`queue_store.path`), for a single
//! gateway process.
//!
//! - **Durable before the answer.** WAL journal with `synchronous=FULL`: a commit returns
//!   after the WAL is fsynced, and only then is the sender answered.
//! - **Group commit.** One writer thread owns every change (ingest, lease, settle, admin).
//!   It takes every operation waiting in its channel, applies them in one transaction and
//!   commits once: under load one fsync covers hundreds of events, so throughput is not one
//!   fsync per event. If the commit fails (disk full, I/O error), every operation in the
//!   batch fails and each waiting sender gets a 503; nothing is answered 2xx that was not
//!   committed.
//! - **One process per directory.** An exclusive `flock` on `DIR/lock` is held while the
//!   store is open, so leases left by a process that died (`kill -9`) are known to be dead
//!   and are released at once on start.
//! - **Checkpoints beside the writer.** A checkpointer thread on a connection of its own
//!   copies committed WAL pages into the database file while the writer goes on committing,
//!   so no commit waits for a checkpoint (see [`checkpointer`]).
//! - Reads for operators (list, show, depths) use a read-only connection; WAL lets them run
//!   while the writer commits.
//!
//! The table has the same columns and the queries the same shape as the PostgreSQL store;
//! what is the same text is written once, in `sql.rs`.
//! The directory holds webhook payloads: it is created with mode 0700.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::{mpsc, oneshot};

use crate::delivery::event::{Event, NewEvent};
use crate::delivery::sql::{self, COLUMNS, DEAD, DELIVERING, RETRYING};
use crate::delivery::state::{
    Depth, Filter, Ingested, JobState, Paused, QueueStoreError, ReplayBatch, ReplayJob, ReplaySpec,
    Settle, State, CANDIDATE_BODY_BYTES,
};
use crate::delivery::time::UnixMs;
use crate::metrics::Metrics;

/// The database file inside the store directory.
pub const DB_FILE: &str = "queue.sqlite3";

/// Operations waiting for the writer, at most; further callers wait for room.
const CHANNEL: usize = 8192;
/// Most operations in one transaction.
const MAX_BATCH: usize = 2048;
/// Most body bytes in one transaction (bounds the memory of a batch).
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// How long a caller waits for its operation to be committed.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Embedded::close`] waits for the writer to end.
const CLOSE_LIMIT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
-- One row per event and destination (a route with one upstream has one destination, '').
CREATE TABLE IF NOT EXISTS hookgate_events (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL,
    destination     TEXT NOT NULL DEFAULT '',
    request         INTEGER NOT NULL,
    route           TEXT NOT NULL,
    dedup_key       TEXT,
    dedup_until     INTEGER,
    idempotency_key TEXT NOT NULL,
    state           TEXT NOT NULL,
    received_at     INTEGER NOT NULL,
    age_from        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease           TEXT,
    leased_until    INTEGER,
    finished_at     INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    verified_key    INTEGER,
    method          TEXT NOT NULL,
    target          TEXT NOT NULL,
    body_len        INTEGER NOT NULL,
    dead_reason     TEXT,
    budget_from     INTEGER NOT NULL DEFAULT 0,
    replays         INTEGER NOT NULL DEFAULT 0,
    UNIQUE (id, destination),
    -- Only an event's first row carries its dedup key.
    UNIQUE (route, dedup_key)
);
-- The stored requests, written once and shared by an event's rows (`request`): a lease or a
-- settle rewrites the small row above, not the payload (SQLite rewrites a whole row on any
-- update), and fan-out to three destinations stores one body, not three.
-- Keyed by `seq`: one B-tree, no second index.
CREATE TABLE IF NOT EXISTS hookgate_requests (
    seq             INTEGER PRIMARY KEY,
    headers         BLOB NOT NULL,
    body            BLOB NOT NULL
);
-- An operator's pauses: a route's (destination '') or one destination's.
CREATE TABLE IF NOT EXISTS hookgate_pauses (
    route           TEXT NOT NULL,
    destination     TEXT NOT NULL,
    paused_at       INTEGER NOT NULL,
    PRIMARY KEY (route, destination)
);
-- Pending rows (queued, retrying, delivering) are exactly those not finished. Written as
-- one IS NULL test: SQLite checks an index's WHERE on every insert and update, and a list of
-- three or more constants costs an ephemeral table (a pager and 85 KiB of page buffers)
-- each time.
CREATE INDEX IF NOT EXISTS hookgate_events_due
    ON hookgate_events (route, destination, next_attempt_at) WHERE finished_at IS NULL;
CREATE INDEX IF NOT EXISTS hookgate_events_finished ON hookgate_events (state, finished_at)
    WHERE finished_at IS NOT NULL;
";

/// The schema this code reads and writes (`PRAGMA user_version`). 6: a row per event and
/// destination (`destination`, `request`, `replays`; `UNIQUE (id, destination)`), the
/// `filtered` state, and indexes that say "pending" as `finished_at IS NULL`. 5:
/// `hookgate_pauses` (made by the schema itself on open). 4: `dead_reason` and
/// `budget_from`, and `attempts` counts attempts made (3 counted leases). 3:
/// `hookgate_events_due` says "pending" as `NOT IN ('delivered', 'dead')` (schema 2: `IN`
/// the three pending states; the same rows).
const SCHEMA_VERSION: i64 = 6;

/// What brings a store of schema 2 or 3 to 4.
const MIGRATE_FROM_3: &str = "ALTER TABLE hookgate_events ADD COLUMN dead_reason TEXT; \
    ALTER TABLE hookgate_events ADD COLUMN budget_from INTEGER NOT NULL DEFAULT 0;";

/// What brings a store of schema 4 or 5 to 6: the table is made anew (SQLite cannot change
/// a table's unique constraints in place) with the rows as they were, each the delivery of
/// its event to the route's one destination, sharing the request it had; the old indexes go
/// with the old table, and the schema makes the new ones. The requests are not copied.
const MIGRATE_FROM_5: &str = "ALTER TABLE hookgate_events RENAME TO hookgate_events_5; \
    DROP INDEX IF EXISTS hookgate_events_due; DROP INDEX IF EXISTS hookgate_events_finished;";
const MIGRATE_FROM_5_COPY: &str = "INSERT INTO hookgate_events (seq, id, destination, \
    request, route, dedup_key, dedup_until, idempotency_key, state, received_at, age_from, \
    next_attempt_at, attempts, lease, leased_until, finished_at, last_status, last_error, \
    verified_key, method, target, body_len, dead_reason, budget_from) \
    SELECT seq, id, '', seq, route, dedup_key, dedup_until, idempotency_key, state, \
    received_at, age_from, next_attempt_at, attempts, lease, leased_until, finished_at, \
    last_status, last_error, verified_key, method, target, body_len, dead_reason, \
    budget_from FROM hookgate_events_5; DROP TABLE hookgate_events_5;";

/// An open embedded store.
pub struct Embedded {
    /// To the writer; taken away by [`Embedded::close`], after which operations fail
    /// (`Closed`). Each call clones it for as long as it hands its operation over.
    ops: Mutex<Option<mpsc::Sender<(Op, Reply)>>>,
    /// For operators' reads, beside the writer.
    read: Arc<Mutex<Connection>>,
    /// Turns true once the writer thread has ended its connection and the checkpointer's
    /// and let go of the directory's lock (one process per directory).
    closed: tokio::sync::watch::Receiver<bool>,
}

/// What the writer answers.
enum Answer {
    Ingested(Ingested),
    Attempts(Option<u32>),
    Events(Vec<Event>),
    Flag(bool),
    Count(u64),
    /// When a pause that ended had begun.
    Since(Option<UnixMs>),
    Job(Option<Box<ReplayJob>>),
}

type Reply = oneshot::Sender<Result<Answer, QueueStoreError>>;

/// One change for the writer thread.
enum Op {
    Ingest(Box<NewEvent>),
    Lease {
        route: String,
        destination: String,
        limit: usize,
        now: UnixMs,
        until: UnixMs,
        start: bool,
    },
    Start {
        id: String,
        lease: String,
        until: UnixMs,
    },
    Renew {
        leases: Vec<(String, String)>,
        until: UnixMs,
    },
    Release {
        leases: Vec<(String, String)>,
    },
    Settle {
        id: String,
        destination: String,
        lease: String,
        settle: Settle,
        now: UnixMs,
    },
    Retry {
        /// One event, or every dead event of `route`; of one destination, or of all.
        id: Option<String>,
        route: Option<String>,
        destination: Option<String>,
        now: UnixMs,
    },
    Remove {
        id: String,
        destination: Option<String>,
    },
    Pause {
        route: String,
        destination: String,
        now: UnixMs,
    },
    Resume {
        route: String,
        destination: String,
        now: UnixMs,
    },
    Purge {
        delivered_before: UnixMs,
        dead_before: UnixMs,
        now: UnixMs,
    },
    ReplayCreate(Box<ReplayJob>),
    ReplayClaim {
        owner: String,
        now: UnixMs,
        until: UnixMs,
    },
    ReplayBatch(Box<ReplayBatch>),
    ReplayCancel {
        id: String,
        now: UnixMs,
    },
}

impl Op {
    fn body_len(&self) -> usize {
        match self {
            Op::Ingest(e) => e.body.len() + e.headers.len(),
            _ => 0,
        }
    }
}

impl Embedded {
    /// Opens or creates the store in `dir`: creates the directory (0700), takes its lock,
    /// sets up the schema, releases leases a dead process left, and starts the writer.
    /// `max_bytes` bounds the database file; past it, new events are refused (the sender
    /// gets a 503 and retries) until delivered ones are purged.
    pub fn open(
        dir: &Path,
        max_bytes: Option<u64>,
        metrics: Arc<Metrics>,
    ) -> Result<Embedded, QueueStoreError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            QueueStoreError::Open(format!("{what} {}: {e}", dir.display()))
        };
        make_private_dir(dir)?;
        let lock = lock_dir(dir)?;
        let file = dir.join(DB_FILE);
        let conn = Connection::open(&file).map_err(|e| fail("cannot open", &e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             PRAGMA journal_size_limit = 67108864;
             PRAGMA wal_autocheckpoint = 0;",
        )
        .map_err(|e| fail("cannot set up", &e))?;
        migrate(&conn, &file).map_err(|e| match e {
            Migrate::Refused(why) => QueueStoreError::Open(why),
            Migrate::Failed(what, e) => fail(what, &e),
        })?;
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(|e| fail("cannot read the page size of", &e))?;
        let ingest_pages = match max_bytes {
            Some(max) => Some(
                bound_size(&conn, page, max).map_err(|e| fail("cannot set max_bytes on", &e))?,
            ),
            None => None,
        };
        release_dead_process_leases(&conn).map_err(|e| fail("cannot release leases in", &e))?;
        let read = Connection::open_with_flags(
            &file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail("cannot open for reading", &e))?;
        read.busy_timeout(Duration::from_secs(5))
            .map_err(|e| fail("cannot set up", &e))?;
        // The statements on the hot path are compiled once.
        conn.set_prepared_statement_cache_capacity(32);
        // Checkpoints run beside the writer, on a connection of their own: see
        // [`checkpointer`].
        let ckpt = Connection::open(&file).map_err(|e| fail("cannot open", &e))?;
        ckpt.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
            .map_err(|e| fail("cannot set up", &e))?;
        let (ops, closed) = start_threads(conn, ckpt, page, ingest_pages, lock, &metrics)
            .map_err(|(what, e)| fail(what, &e))?;
        if let Some(max) = max_bytes {
            metrics
                .queue
                .store_max_bytes
                .set(i64::try_from(max).unwrap_or(i64::MAX));
        }
        Ok(Embedded {
            ops: Mutex::new(Some(ops)),
            read: Arc::new(Mutex::new(read)),
            closed,
        })
    }

    /// Closes the store: what was handed to the writer before is committed and answered,
    /// what comes after fails (`Closed`), and this returns once the writer's and the
    /// checkpointer's connections are closed and the directory's lock is let go, so that
    /// a restart (in this process or another) opens it at once. (The read-only connection
    /// for operators' reads holds no lock; it goes with the value.) Waits at most
    /// [`CLOSE_LIMIT`] (a disk that hangs in fsync); any number of callers may wait.
    pub async fn close(&self) {
        // The writer ends once it has taken every operation already handed over: each
        // caller's clone of the sender lives only until its operation is in the channel.
        drop(self.ops.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut closed = self.closed.clone();
        // An error means the writer's side is gone: it has ended too.
        let waited = tokio::time::timeout(CLOSE_LIMIT, closed.wait_for(|c| *c)).await;
        if waited.is_err() {
            tracing::warn!(
                limit = ?CLOSE_LIMIT,
                "the queue store's writer did not end in time; its directory stays locked until it does"
            );
        }
    }

    /// Hands `op` to the writer and waits for its commit.
    async fn call(&self, op: Op) -> Result<Answer, QueueStoreError> {
        let (tx, rx) = oneshot::channel();
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let round = async {
            let ops = ops.ok_or(QueueStoreError::Closed)?;
            ops.send((op, tx))
                .await
                .map_err(|_| QueueStoreError::Closed)?;
            // Not held while waiting for the commit: a close must not wait for it.
            drop(ops);
            rx.await.map_err(|_| QueueStoreError::Closed)?
        };
        match tokio::time::timeout(OP_TIMEOUT, round).await {
            Ok(r) => r,
            Err(_) => Err(QueueStoreError::Timeout),
        }
    }

    /// Runs a read on the read-only connection, off the runtime's threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueStoreError> {
        let conn = self.read.clone();
        let task = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        });
        match tokio::time::timeout(OP_TIMEOUT, task).await {
            Ok(Ok(r)) => r.map_err(|e| QueueStoreError::Engine(e.to_string())),
            Ok(Err(e)) => Err(QueueStoreError::Engine(e.to_string())),
            Err(_) => Err(QueueStoreError::Timeout),
        }
    }

    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested, QueueStoreError> {
        self.call(Op::Ingest(Box::new(event))).await?.ingested()
    }

    pub async fn lease(
        &self,
        (route, destination): (&str, &str),
        limit: usize,
        now: UnixMs,
        until: UnixMs,
        start: bool,
    ) -> Result<Vec<Event>, QueueStoreError> {
        let op = Op::Lease {
            route: route.to_owned(),
            destination: destination.to_owned(),
            limit,
            now,
            until,
            start,
        };
        self.call(op).await?.events()
    }

    pub async fn start(
        &self,
        id: &str,
        lease: &str,
        until: UnixMs,
    ) -> Result<Option<u32>, QueueStoreError> {
        let op = Op::Start {
            id: id.to_owned(),
            lease: lease.to_owned(),
            until,
        };
        self.call(op).await?.attempts()
    }

    pub async fn renew(
        &self,
        leases: Vec<(String, String)>,
        until: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        self.call(Op::Renew { leases, until }).await?.count()
    }

    pub async fn release(&self, leases: Vec<(String, String)>) -> Result<u64, QueueStoreError> {
        self.call(Op::Release { leases }).await?.count()
    }

    pub async fn settle(
        &self,
        event: &Event,
        settle: Settle,
        now: UnixMs,
    ) -> Result<bool, QueueStoreError> {
        let op = Op::Settle {
            id: event.id.clone(),
            destination: event.destination.clone(),
            lease: event.lease.clone().unwrap_or_default(),
            settle,
            now,
        };
        self.call(op).await?.flag()
    }

    pub async fn retry(
        &self,
        id: &str,
        destination: Option<&str>,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        let op = Op::Retry {
            id: Some(id.to_owned()),
            route: None,
            destination: destination.map(str::to_owned),
            now,
        };
        self.call(op).await?.count()
    }

    pub async fn retry_dead(
        &self,
        route: &str,
        destination: Option<&str>,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        let op = Op::Retry {
            id: None,
            route: Some(route.to_owned()),
            destination: destination.map(str::to_owned),
            now,
        };
        self.call(op).await?.count()
    }

    pub async fn remove(
        &self,
        id: &str,
        destination: Option<&str>,
    ) -> Result<u64, QueueStoreError> {
        let op = Op::Remove {
            id: id.to_owned(),
            destination: destination.map(str::to_owned),
        };
        self.call(op).await?.count()
    }

    pub async fn pause(
        &self,
        route: &str,
        destination: &str,
        now: UnixMs,
    ) -> Result<bool, QueueStoreError> {
        let op = Op::Pause {
            route: route.to_owned(),
            destination: destination.to_owned(),
            now,
        };
        self.call(op).await?.flag()
    }

    pub async fn resume(
        &self,
        route: &str,
        destination: &str,
        now: UnixMs,
    ) -> Result<Option<UnixMs>, QueueStoreError> {
        let op = Op::Resume {
            route: route.to_owned(),
            destination: destination.to_owned(),
            now,
        };
        self.call(op).await?.since()
    }

    pub async fn pauses(&self) -> Result<Vec<Paused>, QueueStoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(sql::PAUSES)?;
            let rows = stmt.query_map([], |r| {
                Ok(Paused {
                    route: r.get(0)?,
                    destination: r.get(1)?,
                    since: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn purge(
        &self,
        delivered_before: UnixMs,
        dead_before: UnixMs,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        let op = Op::Purge {
            delivered_before,
            dead_before,
            now,
        };
        self.call(op).await?.count()
    }

    pub async fn next_due(
        &self,
        (route, destination): (&str, &str),
    ) -> Result<Option<UnixMs>, QueueStoreError> {
        let (route, destination) = (route.to_owned(), destination.to_owned());
        self.read(move |c| {
            c.query_row(&NEXT_DUE, [route, destination], |r| {
                r.get::<_, Option<UnixMs>>(0)
            })
        })
        .await
    }

    pub async fn list(&self, filter: Filter) -> Result<Vec<Event>, QueueStoreError> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM hookgate_events \
                 WHERE (?1 IS NULL OR route = ?1) AND (?2 IS NULL OR state = ?2) \
                 AND (?3 IS NULL OR (id, destination) > (?3, coalesce(?5, ''))) \
                 AND (?6 IS NULL OR destination = ?6) ORDER BY id, destination LIMIT ?4"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let (after, after_destination) = filter.after.unzip();
            let rows = stmt.query_map(
                params![
                    filter.route,
                    filter.state.map(State::as_str),
                    after,
                    i64::try_from(filter.limit).unwrap_or(i64::MAX),
                    after_destination,
                    filter.destination,
                ],
                event_from,
            )?;
            rows.collect()
        })
        .await
    }

    pub async fn get(&self, id: &str, with_body: bool) -> Result<Vec<Event>, QueueStoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            let sql =
                format!("SELECT {COLUMNS} FROM hookgate_events WHERE id = ?1 ORDER BY destination");
            let mut events = c
                .prepare_cached(&sql)?
                .query_map([&id], event_from)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if with_body {
                for event in &mut events {
                    read_request(c, event)?;
                }
            }
            Ok(events)
        })
        .await
    }

    pub async fn replay_create(&self, job: ReplayJob) -> Result<(), QueueStoreError> {
        self.call(Op::ReplayCreate(Box::new(job))).await?.flag()?;
        Ok(())
    }

    pub async fn replay_claim(
        &self,
        owner: &str,
        now: UnixMs,
        until: UnixMs,
    ) -> Result<Option<ReplayJob>, QueueStoreError> {
        let op = Op::ReplayClaim {
            owner: owner.to_owned(),
            now,
            until,
        };
        self.call(op).await?.job()
    }

    pub async fn replay_batch(&self, batch: ReplayBatch) -> Result<bool, QueueStoreError> {
        self.call(Op::ReplayBatch(Box::new(batch))).await?.flag()
    }

    pub async fn replay_cancel(&self, id: &str, now: UnixMs) -> Result<bool, QueueStoreError> {
        let op = Op::ReplayCancel {
            id: id.to_owned(),
            now,
        };
        self.call(op).await?.flag()
    }

    pub async fn replay_jobs(&self) -> Result<Vec<ReplayJob>, QueueStoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&sql::replay_jobs())?;
            let rows = stmt.query_map([], job_from)?;
            rows.collect()
        })
        .await
    }

    pub async fn replay_candidates(
        &self,
        spec: &ReplaySpec,
        after: (String, String),
        limit: usize,
        with_body: bool,
    ) -> Result<Vec<Event>, QueueStoreError> {
        let spec = spec.clone();
        self.read(move |c| {
            let sql = sql::replay_candidates('?', &spec.states, "");
            let mut events = c
                .prepare_cached(&sql)?
                .query_map(
                    params![
                        spec.route,
                        spec.source,
                        spec.since,
                        spec.until,
                        after.0,
                        after.1,
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    event_from,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if with_body {
                // Within the page's byte budget: the rows past it come in the next page.
                let mut bytes = 0u64;
                let mut read = 0;
                for event in &mut events {
                    if read > 0 && bytes >= CANDIDATE_BODY_BYTES {
                        break;
                    }
                    read_request(c, event)?;
                    bytes += event.body_len + event.headers.len() as u64;
                    read += 1;
                }
                events.truncate(read);
            }
            Ok(events)
        })
        .await
    }

    pub async fn replay_count(&self, spec: &ReplaySpec) -> Result<u64, QueueStoreError> {
        let spec = spec.clone();
        self.read(move |c| {
            let sql = sql::replay_count('?', &spec.states, "", spec.target.is_some());
            let n: i64 = c.query_row(
                &sql,
                params![spec.route, spec.source, spec.since, spec.until],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    pub async fn pending(
        &self,
        route: &str,
        destination: Option<&str>,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        let (route, destination) = (route.to_owned(), destination.map(str::to_owned));
        self.read(move |c| {
            let sql = sql::pending_count('?', PENDING, "");
            let n: i64 = c.query_row(&sql, params![route, destination, now], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    pub async fn depths(&self) -> Result<Vec<Depth>, QueueStoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&DEPTHS)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (route, destination, state, count, oldest) = row?;
                if let Some(state) = State::parse(&state) {
                    out.push(Depth {
                        route,
                        destination,
                        state,
                        count: u64::try_from(count).unwrap_or(0),
                        oldest_received_ms: UnixMs(oldest),
                    });
                }
            }
            Ok(out)
        })
        .await
    }
}

fn unexpected() -> QueueStoreError {
    QueueStoreError::Engine("writer answered another operation".into())
}

/// The answer each operation expects.
impl Answer {
    fn ingested(self) -> Result<Ingested, QueueStoreError> {
        match self {
            Answer::Ingested(i) => Ok(i),
            _ => Err(unexpected()),
        }
    }

    fn attempts(self) -> Result<Option<u32>, QueueStoreError> {
        match self {
            Answer::Attempts(a) => Ok(a),
            _ => Err(unexpected()),
        }
    }

    fn events(self) -> Result<Vec<Event>, QueueStoreError> {
        match self {
            Answer::Events(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    fn flag(self) -> Result<bool, QueueStoreError> {
        match self {
            Answer::Flag(f) => Ok(f),
            _ => Err(unexpected()),
        }
    }

    fn count(self) -> Result<u64, QueueStoreError> {
        match self {
            Answer::Count(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    fn since(self) -> Result<Option<UnixMs>, QueueStoreError> {
        match self {
            Answer::Since(at) => Ok(at),
            _ => Err(unexpected()),
        }
    }

    fn job(self) -> Result<Option<ReplayJob>, QueueStoreError> {
        match self {
            Answer::Job(job) => Ok(job.map(|j| *j)),
            _ => Err(unexpected()),
        }
    }
}

/// Creates `dir` (0700), or restricts an existing one to its owner: it holds webhook
/// payloads.
fn make_private_dir(dir: &Path) -> Result<(), QueueStoreError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        QueueStoreError::Open(format!("{what} {}: {e}", dir.display()))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail("cannot create", &e))?;
    let mode = std::fs::metadata(dir)
        .map_err(|e| fail("cannot read", &e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail("cannot restrict to mode 0700:", &e))?;
        tracing::warn!(
            path = %dir.display(),
            was = format!("{:o}", mode & 0o777),
            "the queue directory holds webhook payloads; its mode is now 700"
        );
    }
    Ok(())
}

/// Why [`migrate`] did not bring the schema to [`SCHEMA_VERSION`].
enum Migrate {
    /// A schema this build does not read; the message says why.
    Refused(String),
    /// SQLite failed at this step.
    Failed(&'static str, rusqlite::Error),
}

/// Creates the schema in a new store, or brings an older one to [`SCHEMA_VERSION`], in one
/// transaction with the new version.
fn migrate(conn: &Connection, file: &Path) -> Result<(), Migrate> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| Migrate::Failed("cannot read the schema version of", e))?;
    if version > SCHEMA_VERSION {
        return Err(Migrate::Refused(format!(
            "{} was written by a newer hookgate (schema {version}, this one reads {SCHEMA_VERSION})",
            file.display()
        )));
    }
    if version == 1 {
        // Only development builds wrote schema 1 (for a few hours, before a release).
        return Err(Migrate::Refused(format!(
            "{} has schema {version} from a development build; this one reads {SCHEMA_VERSION}: \
             move it away (after delivering what it holds with that build)",
            file.display()
        )));
    }
    // Schema 2 differs from 3 only in the due index's WHERE (its index goes with the old
    // table); 3 lacks two columns; 4 lacks `hookgate_pauses`, which the schema makes; 5 has
    // a row per event. In one transaction with the new version.
    let (before, after) = match version {
        2 | 3 => (
            format!("{MIGRATE_FROM_3} {MIGRATE_FROM_5}"),
            MIGRATE_FROM_5_COPY,
        ),
        4 | 5 => (MIGRATE_FROM_5.to_owned(), MIGRATE_FROM_5_COPY),
        _ => (String::new(), ""),
    };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {before} {SCHEMA} {replays} {after} \
         PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;",
        replays = sql::replays_table("INTEGER"),
    ))
    .map_err(|e| Migrate::Failed("cannot create or update the schema in", e))?;
    if (2..SCHEMA_VERSION).contains(&version) {
        tracing::info!(path = %file.display(), from = version, to = SCHEMA_VERSION, "queue store schema updated");
    }
    Ok(())
}

/// Bounds the database file at `max` bytes (of `page` bytes a page); returns the pages new
/// events may fill.
fn bound_size(conn: &Connection, page: i64, max: u64) -> rusqlite::Result<i64> {
    let pages = i64::try_from(max / u64::try_from(page).unwrap_or(4096).max(1))
        .unwrap_or(i64::MAX)
        .max(1);
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    // New events stop a tenth short of the bound: leases and settles, which let delivered
    // events be purged, must always find room.
    Ok(pages - (pages / 10).max(8))
}

/// Releases every lease: this process holds the directory's lock, so no lease can belong
/// to a live worker.
fn release_dead_process_leases(conn: &Connection) -> rusqlite::Result<()> {
    let released = conn.execute(
        &format!("{} WHERE state = {DELIVERING}", sql::release()),
        [],
    )?;
    if released > 0 {
        tracing::warn!(
            events = released,
            "events were being delivered when the gateway last stopped; delivering them again"
        );
    }
    Ok(())
}

/// Starts the checkpointer and the writer (which owns `conn` and, through [`Closing`], the
/// directory's `lock`); returns the writer's channel and what turns true once it has ended.
#[allow(clippy::type_complexity)]
fn start_threads(
    conn: Connection,
    ckpt: Connection,
    page: i64,
    ingest_pages: Option<i64>,
    lock: std::fs::File,
    metrics: &Arc<Metrics>,
) -> Result<
    (
        mpsc::Sender<(Op, Reply)>,
        tokio::sync::watch::Receiver<bool>,
    ),
    (&'static str, std::io::Error),
> {
    let (writer_alive, writer_gone) = std::sync::mpsc::channel::<()>();
    let wal = Arc::new(WalReport::default());
    let (ckpt_metrics, ckpt_wal) = (metrics.clone(), wal.clone());
    let checkpointing = std::thread::Builder::new()
        .name("hookgate-qcheckpt".into())
        .spawn(move || checkpointer(ckpt, page, &writer_gone, &ckpt_wal, &ckpt_metrics))
        .map_err(|e| ("cannot start the checkpointer for", e))?;
    let (ops, rx) = mpsc::channel(CHANNEL);
    let (closed_tx, closed) = tokio::sync::watch::channel(false);
    let writer_metrics = metrics.clone();
    std::thread::Builder::new()
        .name("hookgate-queue-writer".into())
        .spawn(move || {
            // Whether the writer returns or panics, the store ends in order.
            let _closing = Closing {
                writer_alive: Some(writer_alive),
                checkpointer: Some(checkpointing),
                lock: Some(lock),
                closed: closed_tx,
            };
            // Returns once the store is closed or dropped and its last batch committed
            // and answered; its connection closes with it.
            writer(conn, rx, ingest_pages, &wal, &writer_metrics);
        })
        .map_err(|e| ("cannot start the writer for", e))?;
    Ok((ops, closed))
}

/// Takes `DIR/lock` exclusively, or says which process has it.
fn lock_dir(dir: &Path) -> Result<std::fs::File, QueueStoreError> {
    use std::os::fd::AsRawFd;
    let path: PathBuf = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| QueueStoreError::Open(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: flock on a file descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(QueueStoreError::Open(format!(
            "{} is in use by another hookgate process (an embedded queue belongs to one \
             process; use a PostgreSQL queue_store for replicas)",
            dir.display()
        )));
    }
    Ok(file)
}

/// Fills in the stored request (headers and body) of `event`; one that is missing (the
/// store never leaves one so) leaves the body `None`, and the worker dead-letters the
/// delivery as unreadable.
fn read_request(c: &Connection, event: &mut Event) -> rusqlite::Result<()> {
    let found = c
        .prepare_cached(
            "SELECT headers, body FROM hookgate_requests \
             WHERE seq = (SELECT request FROM hookgate_events WHERE id = ?1 AND destination = ?2)",
        )?
        .query_row([&event.id, &event.destination], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .optional()?;
    if let Some((headers, body)) = found {
        event.headers = headers;
        event.body = Some(bytes::Bytes::from(body));
    }
    Ok(())
}

/// A time binds and reads as the `INTEGER` it is stored as.
impl rusqlite::ToSql for UnixMs {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.0.into())
    }
}

impl rusqlite::types::FromSql for UnixMs {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<UnixMs> {
        i64::column_result(v).map(UnixMs)
    }
}

/// Reads a row selected with [`COLUMNS`], without its request.
fn event_from(r: &Row<'_>) -> rusqlite::Result<Event> {
    let state: String = r.get(3)?;
    Ok(Event {
        id: r.get(0)?,
        route: r.get(1)?,
        idempotency_key: r.get(2)?,
        state: State::parse(&state).unwrap_or(State::Dead),
        received_ms: r.get(4)?,
        age_from_ms: r.get(5)?,
        next_attempt_ms: r.get(6)?,
        attempts: r.get::<_, i64>(7)?.clamp(0, i64::from(u32::MAX)) as u32,
        finished_ms: r.get(8)?,
        last_status: r
            .get::<_, Option<i64>>(9)?
            .and_then(|s| u16::try_from(s).ok()),
        last_error: r.get(10)?,
        verified_key: r
            .get::<_, Option<i64>>(11)?
            .and_then(|k| u32::try_from(k).ok()),
        method: r.get(12)?,
        target: r.get(13)?,
        headers: Vec::new(),
        body_len: u64::try_from(r.get::<_, i64>(14)?).unwrap_or(0),
        body: None,
        lease: r.get(15)?,
        dead_reason: r.get(16)?,
        budget_from: r.get::<_, i64>(17)?.clamp(0, i64::from(u32::MAX)) as u32,
        destination: r.get(18)?,
        replays: r.get::<_, i64>(19)?.clamp(0, i64::from(u32::MAX)) as u32,
        head: None,
    })
}

/// The writer thread: takes what is waiting, applies it in one transaction, commits once,
/// answers everyone. Ends when every sender is gone (the store closed or dropped) and
/// nothing is left in the channel.
/// `ingest_pages`: the most pages the database may use when an event is stored.
fn writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<(Op, Reply)>,
    ingest_pages: Option<i64>,
    wal: &WalReport,
    metrics: &Metrics,
) {
    let mut batches_since_checkpoint = 0;
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.0.body_len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(op) => {
                    bytes += op.0.body_len();
                    batch.push(op);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let applied = apply(&mut conn, &batch, ingest_pages);
        metrics
            .queue
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.queue.commit_batch.observe(batch.len() as f64);
        match applied {
            Ok(answers) => {
                for ((_, reply), answer) in batch.into_iter().zip(answers) {
                    let answer = answer.map_err(|e| {
                        metrics.queue.store_error(crate::metrics::StoreOp::Write);
                        QueueStoreError::Engine(e.to_string())
                    });
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, operations = batch.len(), "queue store commit failed");
                metrics.queue.store_error(crate::metrics::StoreOp::Commit);
                for (_, reply) in batch {
                    let _ = reply.send(Err(QueueStoreError::Engine(e.to_string())));
                }
            }
        }
        // After the answers: the batch does not wait for it.
        restart_wal(&conn, wal, &mut batches_since_checkpoint, metrics);
    }
}

/// Ends an open store in order when its writer thread ends, by returning or by panicking:
/// the checkpointer is told, and waited for (its connection closes as it ends); only then
/// is the directory's lock let go. Another process that takes the directory releases the
/// leases it finds as a dead process's: until here they could still be this one's.
struct Closing {
    writer_alive: Option<std::sync::mpsc::Sender<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
    lock: Option<std::fs::File>,
    /// Told last, for [`Embedded::close`].
    closed: tokio::sync::watch::Sender<bool>,
}

impl Drop for Closing {
    fn drop(&mut self) {
        drop(self.writer_alive.take());
        if let Some(thread) = self.checkpointer.take() {
            let _ = thread.join();
        }
        drop(self.lock.take());
        let _ = self.closed.send(true);
    }
}

/// How long the checkpointer rests once it has caught up with the writer.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);
/// The first and the longest pause after a failed checkpoint.
const CHECKPOINT_RETRY_MIN: Duration = Duration::from_secs(1);
const CHECKPOINT_RETRY_MAX: Duration = Duration::from_secs(30);
/// WAL frames (pages) past which the writer, between two batches, finishes the checkpoint
/// itself so that its next commit starts the WAL over: 16 MiB of 4 KiB pages.
const WAL_RESTART_FRAMES: i32 = 4_096;
/// The most frames the writer copies itself to finish a checkpoint (a few commits' worth).
const WAL_CATCH_UP_FRAMES: i32 = 512;
/// Batches after which the writer checkpoints whatever the checkpointer last said.
const WRITER_CHECKPOINT_EVERY: u32 = 1_024;

/// Copies committed WAL pages into the database file, beside the writer instead of inside
/// its commits, until `writer_gone` says the writer has ended. Publishes the WAL's length
/// and how far behind it is in `wal` for the writer (see [`restart_wal`]), and in the
/// store's gauges (`page` bytes a frame) with, every second, the bytes holding data.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so the
/// events of that batch wait for it: with 4,000 pages, about 3 commits a second took 10 to
/// 100 ms, and the ack p99 was 15 to 35 ms. A passive checkpoint on another connection
/// never blocks the writer (WAL mode lets them run side by side). While it has pages to
/// copy, and copied some last time, it goes again at once, so it stays a few commits behind
/// the writer.
///
/// A failed checkpoint loses nothing (the commits are in the WAL, fsynced): it is logged,
/// counted (`op="checkpoint"`) and tried again after a pause that doubles from 1 s to 30 s
/// (a full disk is not retried 50 times a second, nor logged as often).
fn checkpointer(
    conn: Connection,
    page: i64,
    writer_gone: &std::sync::mpsc::Receiver<()>,
    wal: &WalReport,
    metrics: &Metrics,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut failing = Duration::ZERO;
    let mut last_copied = 0;
    let (mut checkpoint_at, mut used_at) = (Instant::now(), Instant::now());
    loop {
        let wake = checkpoint_at.min(used_at);
        match writer_gone.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            // The writer has ended.
            _ => return,
        }
        let now = Instant::now();
        if now >= used_at {
            // Every second, also while checkpoints back off. A gauge only: a failure here
            // leaves the last value, and the checkpoints report the store's trouble.
            used_at = now + USED_BYTES_EVERY;
            if let Ok(pages) = used_pages(&conn) {
                metrics
                    .queue
                    .store_used_bytes
                    .set(pages.saturating_mul(page));
            }
        }
        if now < checkpoint_at {
            continue;
        }
        let mut pause = CHECKPOINT_EVERY;
        match checkpoint(&conn) {
            Ok(Some((frames, copied))) => {
                failing = Duration::ZERO;
                metrics
                    .queue
                    .wal_bytes
                    .set(i64::from(frames).saturating_mul(page));
                metrics
                    .queue
                    .wal_behind_bytes
                    .set(i64::from(frames - copied).saturating_mul(page));
                wal.passes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                wal.frames
                    .store(frames, std::sync::atomic::Ordering::Relaxed);
                wal.behind
                    .store(frames - copied, std::sync::atomic::Ordering::Relaxed);
                // Behind and moving: again at once. Behind but stuck (a reader's snapshot
                // holds the pages back) or level: after the pause, not in a spin.
                if copied < frames && copied != last_copied {
                    pause = Duration::ZERO;
                }
                last_copied = copied;
            }
            Ok(None) => {}
            Err(e) => {
                checkpoint_failed(&e, metrics);
                failing = (failing * 2).clamp(CHECKPOINT_RETRY_MIN, CHECKPOINT_RETRY_MAX);
                pause = failing;
                // Nothing is being copied: the gauges say the whole WAL file (which may
                // hold frames from before its last restart too: an upper bound).
                let wal_file = conn.path().map(|db| format!("{db}-wal"));
                if let Some(meta) = wal_file.and_then(|f| std::fs::metadata(f).ok()) {
                    let len = i64::try_from(meta.len()).unwrap_or(i64::MAX);
                    metrics.queue.wal_bytes.set(len);
                    metrics.queue.wal_behind_bytes.set(len);
                }
            }
        }
        checkpoint_at = Instant::now() + pause;
    }
}

/// Called by the writer between batches: once the WAL is past [`WAL_RESTART_FRAMES`] and
/// the checkpointer within [`WAL_CATCH_UP_FRAMES`] of its end, copies what the checkpointer
/// has not (nothing else writes meanwhile, so the checkpoint ends level with the WAL), so
/// the next commit starts the WAL over instead of growing it; and every
/// [`WRITER_CHECKPOINT_EVERY`] batches whatever was reported. A checkpointer alone would
/// rarely be level at the moment the writer begins a transaction.
fn restart_wal(conn: &Connection, wal: &WalReport, batches_since: &mut u32, metrics: &Metrics) {
    use std::sync::atomic::Ordering::Relaxed;
    *batches_since = batches_since.saturating_add(1);
    let (frames, behind) = (wal.frames.load(Relaxed), wal.behind.load(Relaxed));
    // Only once the checkpointer is nearly level, so this copies a few commits' pages, not a
    // backlog a reader held back; and, whatever it reports, every so many batches (were the
    // checkpointer stuck or gone, nothing else would copy the WAL).
    let due = frames >= WAL_RESTART_FRAMES && behind <= WAL_CATCH_UP_FRAMES;
    if !due && *batches_since < WRITER_CHECKPOINT_EVERY {
        return;
    }
    *batches_since = 0;
    match checkpoint(conn) {
        Ok(Some((frames, copied))) if copied == frames => wal.frames.store(0, Relaxed),
        // Not level yet (a checkpoint or a reader is in the way): after the next batch.
        Ok(_) => {}
        Err(e) => {
            checkpoint_failed(&e, metrics);
            // Not again until the checkpointer, which backs off, reports the WAL anew.
            wal.frames.store(0, Relaxed);
        }
    }
}

/// What the checkpointer last saw of the WAL, for the writer.
#[derive(Default)]
struct WalReport {
    /// Frames in the WAL.
    frames: std::sync::atomic::AtomicI32,
    /// Of those, frames not yet copied into the database.
    behind: std::sync::atomic::AtomicI32,
    /// Checkpoints the checkpointer has run (a test watches it for spinning).
    passes: std::sync::atomic::AtomicU64,
}

/// Pages of the database holding data (its pages less the free list): what `max_bytes`
/// bounds.
fn used_pages(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached(USED_PAGES)?.query_row([], |r| r.get(0))
}

const USED_PAGES: &str = "SELECT (SELECT page_count FROM pragma_page_count()) - \
    (SELECT freelist_count FROM pragma_freelist_count())";

/// How often the checkpointer reads the bytes the database holds, for the gauge.
const USED_BYTES_EVERY: Duration = Duration::from_secs(1);

/// One passive checkpoint: `(frames in the WAL, frames copied)`, or `None` when another
/// checkpoint is running.
fn checkpoint(conn: &Connection) -> rusqlite::Result<Option<(i32, i32)>> {
    let (busy, frames, copied): (i32, i32, i32) = conn
        .prepare_cached("PRAGMA wal_checkpoint(PASSIVE)")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok((busy == 0).then_some((frames, copied)))
}

fn checkpoint_failed(e: &rusqlite::Error, metrics: &Metrics) {
    tracing::error!(error = %e, "queue store checkpoint failed; trying again");
    metrics
        .queue
        .store_error(crate::metrics::StoreOp::Checkpoint);
}

/// Applies a batch in one transaction. Each operation runs in a savepoint of its own: one
/// that fails (the store is at `max_bytes`) is undone and answered with its error, and the
/// others (a settle, a lease) still commit. Where SQLite answers a failure by rolling back
/// the whole transaction (it may for SQLITE_FULL), the batch is applied again without that
/// operation, so no answer ever disagrees with what is on disk. If the commit fails, they
/// all fail.
fn apply(
    conn: &mut Connection,
    batch: &[(Op, Reply)],
    ingest_pages: Option<i64>,
) -> rusqlite::Result<Vec<Result<Answer, rusqlite::Error>>> {
    // The common case first: every operation succeeds, no savepoints needed.
    if let Some(answers) = apply_plain(conn, batch, ingest_pages)? {
        return Ok(answers.into_iter().map(Ok).collect());
    }
    let mut failed: Vec<Option<rusqlite::Error>> = batch.iter().map(|_| None).collect();
    loop {
        match apply_once(conn, batch, &failed, ingest_pages)? {
            Applied::Done(answers) => {
                return Ok(answers
                    .into_iter()
                    .zip(failed)
                    .map(|(answer, failure)| match (answer, failure) {
                        (Some(answer), _) => answer,
                        (None, Some(e)) => Err(e),
                        (None, None) => Err(rusqlite::Error::InvalidQuery),
                    })
                    .collect());
            }
            Applied::RolledBack { index, error } => failed[index] = Some(error),
        }
    }
}

/// The batch in one transaction without savepoints; `None` (nothing committed) if any
/// operation failed, for [`apply`] to go through them one savepoint at a time.
fn apply_plain(
    conn: &mut Connection,
    batch: &[(Op, Reply)],
    ingest_pages: Option<i64>,
) -> rusqlite::Result<Option<Vec<Answer>>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(batch.len());
    for (op, _) in batch {
        match apply_one(&tx, op, ingest_pages) {
            Ok(answer) => answers.push(answer),
            // Dropping the transaction rolls it back (if SQLite has not already).
            Err(_) => return Ok(None),
        }
    }
    tx.commit()?;
    Ok(Some(answers))
}

/// One pass of [`apply`] over the operations not yet known to fail.
enum Applied {
    /// Committed; `None` for the operations skipped.
    Done(Vec<Option<Result<Answer, rusqlite::Error>>>),
    /// The operation at `index` made SQLite roll the whole transaction back.
    RolledBack {
        index: usize,
        error: rusqlite::Error,
    },
}

fn apply_once(
    conn: &mut Connection,
    batch: &[(Op, Reply)],
    failed: &[Option<rusqlite::Error>],
    ingest_pages: Option<i64>,
) -> rusqlite::Result<Applied> {
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(batch.len());
    for (index, (op, _)) in batch.iter().enumerate() {
        if failed[index].is_some() {
            answers.push(None);
            continue;
        }
        let sp = tx.savepoint()?;
        match apply_one(&sp, op, ingest_pages) {
            Ok(answer) => {
                sp.commit()?;
                answers.push(Some(Ok(answer)));
            }
            // SQLite ended the transaction itself: everything before is undone too.
            Err(error) if sp.is_autocommit() => {
                return Ok(Applied::RolledBack { index, error });
            }
            // Dropping the savepoint rolls back this operation only.
            Err(e) => answers.push(Some(Err(e))),
        }
    }
    tx.commit()?;
    Ok(Applied::Done(answers))
}

/// One operation of the state machine, inside the batch's transaction: each has a function
/// of its own below, named after it.
fn apply_one(tx: &Connection, op: &Op, ingest_pages: Option<i64>) -> rusqlite::Result<Answer> {
    match op {
        Op::Ingest(e) => ingest(tx, e, ingest_pages).map(Answer::Ingested),
        Op::Lease {
            route,
            destination,
            limit,
            now,
            until,
            start,
        } => lease(tx, (route, destination), *limit, *now, *until, *start).map(Answer::Events),
        Op::Settle {
            id,
            destination,
            lease,
            settle: how,
            now,
        } => settle(tx, (id, destination), lease, how, *now).map(Answer::Flag),
        Op::Start { id, lease, until } => start(tx, id, lease, *until).map(Answer::Attempts),
        Op::Renew { leases, until } => renew(tx, leases, *until).map(Answer::Count),
        Op::Release { leases } => release(tx, leases).map(Answer::Count),
        Op::Retry {
            id,
            route,
            destination,
            now,
        } => tx
            .prepare_cached(&RETRY)?
            .execute(params![now, id, route, destination])
            .map(|n| Answer::Count(n as u64)),
        Op::Remove { id, destination } => remove(tx, id, destination.as_deref()).map(Answer::Count),
        Op::Pause {
            route,
            destination,
            now,
        } => tx
            .prepare_cached(&PAUSE)?
            .execute(params![route, destination, now])
            .map(|n| Answer::Flag(n > 0)),
        Op::Resume {
            route,
            destination,
            now,
        } => resume(tx, route, destination, *now).map(Answer::Since),
        Op::Purge {
            delivered_before,
            dead_before,
            now,
        } => purge(tx, *delivered_before, *dead_before, *now).map(Answer::Count),
        Op::ReplayCreate(job) => replay_create(tx, job).map(|()| Answer::Flag(true)),
        Op::ReplayClaim { owner, now, until } => {
            replay_claim(tx, owner, *now, *until).map(|job| Answer::Job(job.map(Box::new)))
        }
        Op::ReplayBatch(batch) => replay_batch(tx, batch).map(Answer::Flag),
        Op::ReplayCancel { id, now } => tx
            .prepare_cached(&sql::replay_cancel('?'))?
            .execute(params![id, now])
            .map(|n| Answer::Flag(n > 0)),
    }
}

/// Pending rows (queued, retrying, delivering), as `hookgate_events_due` says it: a row is
/// finished exactly when it is delivered, dead or filtered.
const PENDING: &str = "finished_at IS NULL";
static NEXT_DUE: LazyLock<String> = LazyLock::new(|| sql::next_due('?', PENDING));
static PAUSE: LazyLock<String> = LazyLock::new(|| sql::pause('?'));
static UNPAUSE: LazyLock<String> = LazyLock::new(|| sql::unpause('?'));
static UNPAUSE_AGES: LazyLock<String> = LazyLock::new(|| {
    let values = sql::Resumed {
        now: "?1",
        since: "?2",
        route: "?3",
        destination: "?4",
    };
    sql::unpause_ages(&values, PENDING, "max")
});
/// Each half matches one partial index; `delivered` (most rows) is left out.
static DEPTHS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT route, destination, state, count(*), min(received_at) FROM hookgate_events \
         WHERE {PENDING} GROUP BY route, destination, state \
         UNION ALL \
         SELECT route, destination, state, count(*), min(received_at) FROM hookgate_events \
         WHERE finished_at IS NOT NULL AND state = {DEAD} GROUP BY route, destination, state"
    )
});
static SETTLE_DELIVERED: LazyLock<String> = LazyLock::new(|| sql::settle_delivered('?'));
static SETTLE_RETRY: LazyLock<String> = LazyLock::new(|| sql::settle_retry('?'));
static SETTLE_DEAD: LazyLock<String> = LazyLock::new(|| sql::settle_dead('?'));
static START: LazyLock<String> = LazyLock::new(|| sql::start('?'));
static LEASE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE hookgate_events SET state = {DELIVERING}, lease = ?1, \
         leased_until = ?2, attempts = attempts + ?6 \
         WHERE seq IN ({due}) RETURNING {COLUMNS}",
        due = sql::due('?', PENDING, "seq")
    )
});
static RENEW: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE hookgate_events SET leased_until = ?1 \
         WHERE id = ?2 AND state = {DELIVERING} AND lease = ?3"
    )
});
static RELEASE_ONE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} WHERE id = ?1 AND state = {DELIVERING} AND lease = ?2",
        sql::release()
    )
});
static RETRY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} WHERE (?4 IS NULL OR destination = ?4) \
         AND ((?2 IS NOT NULL AND id = ?2 AND state IN ({DEAD}, {RETRYING})) \
             OR (?3 IS NOT NULL AND route = ?3 AND state = {DEAD}))",
        sql::retry('?')
    )
});
static REMOVE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM hookgate_events WHERE id = ?1 AND (?2 IS NULL OR destination = ?2) \
         AND state <> {DELIVERING} RETURNING request"
    )
});
static PURGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM hookgate_events WHERE id IN ({}) RETURNING request",
        sql::purgeable('?')
    )
});

/// Stores a new event: its request once, and a row for each destination that takes it (a
/// `filtered` record if none does); or finds the event with the same dedup key.
fn ingest(tx: &Connection, e: &NewEvent, ingest_pages: Option<i64>) -> rusqlite::Result<Ingested> {
    if let Some(limit) = ingest_pages {
        if used_pages(tx)? >= limit {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("queue store at max_bytes (less a tenth kept for deliveries)".into()),
            ));
        }
    }
    // One writer: nothing can store the same key between this look-up and the insert.
    if let Some(key) = &e.dedup_key {
        if let Some(first) = find_duplicate(tx, &e.route, key)? {
            return Ok(first);
        }
    }
    // No `RETURNING`: SQLite builds an ephemeral table for it on every execution (a pager
    // and page buffers, some 100 KiB of allocations per event). The rowid of a row just
    // inserted is the connection's last one.
    tx.prepare_cached("INSERT INTO hookgate_requests (headers, body) VALUES (?1, ?2)")?
        .execute(params![e.headers, &e.body[..]])?;
    let request = tx.last_insert_rowid();
    let mut insert = tx.prepare_cached(
        "INSERT INTO hookgate_events (id, route, dedup_key, dedup_until, \
         idempotency_key, state, received_at, age_from, next_attempt_at, \
         verified_key, method, target, body_len, lease, leased_until, attempts, \
         destination, request, finished_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?11, ?6, ?6, ?6, ?7, ?8, ?9, ?10, ?12, ?13, \
         ?14, ?15, ?16, ?17)",
    )?;
    for (i, row) in rows(e).iter().enumerate() {
        // The first row carries the event's dedup key (the constraint is on it).
        let (dedup_key, dedup_until) = match i {
            0 => (e.dedup_key.as_deref(), e.dedup_until),
            _ => (None, None),
        };
        insert.execute(params![
            e.id,
            e.route,
            dedup_key,
            dedup_until,
            row.idempotency_key,
            e.received_ms,
            e.verified_key,
            e.method,
            e.target,
            e.body.len() as i64,
            row.state.as_str(),
            row.lease.map(|l| l.token.as_str()),
            row.lease.map(|l| l.until_ms),
            i64::from(row.lease.is_some()),
            row.destination,
            request,
            row.finished,
        ])?;
    }
    Ok(Ingested::Stored)
}

/// One row an ingest writes.
struct NewRow<'a> {
    destination: &'a str,
    idempotency_key: &'a str,
    state: State,
    lease: Option<&'a crate::delivery::event::Lease>,
    finished: Option<UnixMs>,
}

/// The rows of `e`: one per destination, or the `filtered` record when none takes it.
fn rows(e: &NewEvent) -> Vec<NewRow<'_>> {
    if e.deliveries.is_empty() {
        return vec![NewRow {
            destination: crate::delivery::state::WHOLE_ROUTE,
            idempotency_key: &e.idempotency_key,
            state: State::Filtered,
            lease: None,
            finished: Some(e.received_ms),
        }];
    }
    e.deliveries
        .iter()
        .map(|d| NewRow {
            destination: &d.destination,
            idempotency_key: &d.idempotency_key,
            state: d.state(),
            lease: d.lease.as_ref(),
            finished: None,
        })
        .collect()
}

/// The event of `route` stored with dedup key `key`, if any: its id and where its
/// deliveries are ([`State::of_event`]).
fn find_duplicate(tx: &Connection, route: &str, key: &str) -> rusqlite::Result<Option<Ingested>> {
    let id: Option<String> = tx
        .prepare_cached("SELECT id FROM hookgate_events WHERE route = ?1 AND dedup_key = ?2")?
        .query_row(params![route, key], |r| r.get(0))
        .optional()?;
    let Some(id) = id else {
        return Ok(None);
    };
    let states = tx
        .prepare_cached("SELECT state FROM hookgate_events WHERE id = ?1 ORDER BY destination")?
        .query_map([&id], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let state = State::of_event(states.iter().filter_map(|s| State::parse(s)));
    Ok(Some(Ingested::Duplicate { id, state }))
}

/// Leases the due deliveries of `route` to `destination` under a new token, with their
/// requests; with `start`, counts their attempts too.
fn lease(
    tx: &Connection,
    (route, destination): (&str, &str),
    limit: usize,
    now: UnixMs,
    until: UnixMs,
    start: bool,
) -> rusqlite::Result<Vec<Event>> {
    // Unique across processes and reopenings (a random prefix and a counter).
    let lease = crate::request_id::unique_hex();
    let mut stmt = tx.prepare_cached(&LEASE)?;
    let rows = stmt.query_map(
        params![
            lease,
            until,
            route,
            now,
            i64::try_from(limit).unwrap_or(i64::MAX),
            i64::from(start),
            destination
        ],
        event_from,
    )?;
    let mut events = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    for event in &mut events {
        read_request(tx, event)?;
    }
    events.sort_by_key(|e| (e.next_attempt_ms, e.received_ms));
    Ok(events)
}

/// Records how an attempt ended; true if that changed the event.
fn settle(
    tx: &Connection,
    (id, destination): (&str, &str),
    lease: &str,
    how: &Settle,
    now: UnixMs,
) -> rusqlite::Result<bool> {
    let changed = match how {
        // A 2xx wins: whatever raced with it, the app has the event.
        Settle::Delivered { status } => {
            tx.prepare_cached(&SETTLE_DELIVERED)?
                .execute(params![now, status, id, destination])?
        }
        Settle::Retry {
            at_ms,
            status,
            error,
        } => tx
            .prepare_cached(&SETTLE_RETRY)?
            .execute(params![at_ms, status, error, id, lease])?,
        Settle::Dead {
            reason,
            status,
            error,
        } => tx.prepare_cached(&SETTLE_DEAD)?.execute(params![
            now,
            status,
            error,
            reason.label(),
            id,
            lease
        ])?,
    };
    Ok(changed == 1)
}

/// Counts an attempt under the event's lease; its attempts so far, or `None` if the lease
/// is not held.
fn start(tx: &Connection, id: &str, lease: &str, until: UnixMs) -> rusqlite::Result<Option<u32>> {
    // Not `RETURNING` (an ephemeral table each time, see ingest): the count is read back by
    // the primary key's index.
    let started = tx
        .prepare_cached(&START)?
        .execute(params![until, id, lease])?;
    if started == 0 {
        return Ok(None);
    }
    let attempts: i64 = tx
        .prepare_cached("SELECT attempts FROM hookgate_events WHERE id = ?1 AND lease = ?2")?
        .query_row([id, lease], |r| r.get(0))?;
    Ok(Some(attempts.clamp(0, i64::from(u32::MAX)) as u32))
}

/// Extends each lease still held; how many were.
fn renew(tx: &Connection, leases: &[(String, String)], until: UnixMs) -> rusqlite::Result<u64> {
    let mut stmt = tx.prepare_cached(&RENEW)?;
    let mut renewed = 0;
    for (id, lease) in leases {
        renewed += stmt.execute(params![until, id, lease])? as u64;
    }
    Ok(renewed)
}

/// Gives back each lease still held; how many were.
fn release(tx: &Connection, leases: &[(String, String)]) -> rusqlite::Result<u64> {
    let mut stmt = tx.prepare_cached(&RELEASE_ONE)?;
    let mut released = 0;
    for (id, lease) in leases {
        released += stmt.execute(params![id, lease])? as u64;
    }
    Ok(released)
}

/// Ends a pause; its route's pending events then age from their start less the pause
/// ([`sql::unpause_ages`]).
fn resume(
    tx: &Connection,
    route: &str,
    destination: &str,
    now: UnixMs,
) -> rusqlite::Result<Option<UnixMs>> {
    let since: Option<UnixMs> = tx
        .prepare_cached(&UNPAUSE)?
        .query_row(params![route, destination], |r| r.get(0))
        .optional()?;
    if let Some(since) = since {
        tx.prepare_cached(&UNPAUSE_AGES)?
            .execute(params![now, since, route, destination])?;
    }
    Ok(since)
}

/// Deletes an event's deliveries (to `destination`, or to all) that are not being
/// delivered; its request goes with the last of them. How many went.
fn remove(tx: &Connection, id: &str, destination: Option<&str>) -> rusqlite::Result<u64> {
    // The event's dedup key is on one row: if that one goes and others stay, the key moves
    // to one of them, or a copy sent again would be stored as a new event.
    let carried: Option<(String, Option<i64>)> = tx
        .prepare_cached(&format!(
            "SELECT dedup_key, dedup_until FROM hookgate_events WHERE id = ?1 \
             AND (?2 IS NULL OR destination = ?2) AND state <> {DELIVERING} \
             AND dedup_key IS NOT NULL"
        ))?
        .query_row(params![id, destination], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let requests: Vec<i64> = tx
        .prepare_cached(&REMOVE)?
        .query_map(params![id, destination], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(request) = requests.first() {
        tx.prepare_cached(
            "DELETE FROM hookgate_requests WHERE seq = ?1 \
             AND NOT EXISTS (SELECT 1 FROM hookgate_events WHERE id = ?2)",
        )?
        .execute(params![request, id])?;
    }
    if let Some((key, until)) = carried {
        tx.prepare_cached(
            "UPDATE hookgate_events SET dedup_key = ?1, dedup_until = ?2 \
             WHERE seq = (SELECT seq FROM hookgate_events WHERE id = ?3 \
                 ORDER BY destination LIMIT 1)",
        )?
        .execute(params![key, until, id])?;
    }
    Ok(requests.len() as u64)
}

/// Deletes up to [`crate::delivery::state::PURGE_BATCH`] events whose every delivery is
/// past its retention, and their requests; how many deliveries went.
fn purge(
    tx: &Connection,
    delivered_before: UnixMs,
    dead_before: UnixMs,
    now: UnixMs,
) -> rusqlite::Result<u64> {
    let mut purged: Vec<i64> = tx
        .prepare_cached(&PURGE)?
        .query_map(params![delivered_before, dead_before, now], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let rows = purged.len() as u64;
    // An event's rows share one request.
    purged.sort_unstable();
    purged.dedup();
    let mut delete = tx.prepare_cached("DELETE FROM hookgate_requests WHERE seq = ?1")?;
    for seq in &purged {
        delete.execute([seq])?;
    }
    Ok(rows)
}

/// Stores a new replay job.
fn replay_create(tx: &Connection, j: &ReplayJob) -> rusqlite::Result<()> {
    let states: Vec<&str> = j.spec.states.iter().map(|s| s.as_str()).collect();
    tx.prepare_cached(&sql::replay_create('?'))?
        .execute(params![
            j.id,
            j.spec.route,
            j.spec.source,
            j.spec.target,
            j.spec.since,
            j.spec.until,
            states.join(","),
            j.spec.filter,
            i64::try_from(j.matched).unwrap_or(i64::MAX),
            j.created,
        ])?;
    Ok(())
}

/// Takes the oldest running job `owner` may run (see [`sql::replay_claimable`]) until
/// `until`.
fn replay_claim(
    tx: &Connection,
    owner: &str,
    now: UnixMs,
    until: UnixMs,
) -> rusqlite::Result<Option<ReplayJob>> {
    let claimable = sql::replay_claimable('?');
    let id: Option<String> = tx
        .query_row(
            &format!(
                "SELECT id FROM hookgate_replays WHERE {claimable} ORDER BY created_at LIMIT 1"
            ),
            params![owner, now],
            |r| r.get(0),
        )
        .optional()?;
    let Some(id) = id else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE hookgate_replays SET owner = ?1, owned_until = ?2 WHERE id = ?3",
        params![owner, until, id],
    )?;
    let sql = format!(
        "SELECT {} FROM hookgate_replays WHERE id = ?1",
        sql::JOB_COLUMNS
    );
    tx.query_row(&sql, [&id], job_from).optional()
}

/// One batch of a replay job, if the job is still `owner`'s and running: each mark made
/// (a new delivery copied from another destination's, or a finished one made due again),
/// then the job's progress; false (nothing done) if the job was cancelled or taken.
fn replay_batch(tx: &Connection, b: &ReplayBatch) -> rusqlite::Result<bool> {
    let owned: i64 = tx.query_row(
        "SELECT count(*) FROM hookgate_replays WHERE id = ?1 AND owner = ?2 AND state = 'running'",
        params![b.job, b.owner],
        |r| r.get(0),
    )?;
    if owned != 1 {
        return Ok(false);
    }
    let mut copy = tx.prepare_cached(
        "INSERT INTO hookgate_events (id, destination, request, route, idempotency_key, \
         state, received_at, age_from, next_attempt_at, verified_key, method, target, \
         body_len, replays) \
         SELECT id, ?3, request, route, ?4, 'queued', received_at, ?1, ?1, verified_key, \
         method, target, body_len, 1 FROM hookgate_events WHERE id = ?2 AND destination = ?5 \
         ON CONFLICT (id, destination) DO NOTHING",
    )?;
    let mut reset = tx.prepare_cached(&sql::replay_reset('?'))?;
    let mut replayed = 0u64;
    for m in &b.marks {
        if m.from != m.destination
            && copy.execute(params![
                b.now,
                m.id,
                m.destination,
                m.idempotency_key,
                m.from
            ])? == 1
        {
            replayed += 1;
            continue;
        }
        replayed += reset.execute(params![b.now, m.id, m.destination])? as u64;
    }
    let skipped = b.skipped + (b.marks.len() as u64 - replayed);
    let end = match (&b.error, b.done) {
        (Some(_), _) => Some(JobState::Failed),
        (None, true) => Some(JobState::Done),
        (None, false) => None,
    };
    tx.prepare_cached(
        "UPDATE hookgate_replays SET replayed = replayed + ?1, skipped = skipped + ?2, \
         cursor_id = ?3, cursor_destination = ?4, owned_until = ?5, \
         state = coalesce(?6, state), error = coalesce(?7, error), \
         finished_at = CASE WHEN ?6 IS NULL THEN finished_at ELSE ?8 END WHERE id = ?9",
    )?
    .execute(params![
        i64::try_from(replayed).unwrap_or(i64::MAX),
        i64::try_from(skipped).unwrap_or(i64::MAX),
        b.cursor.0,
        b.cursor.1,
        b.owned_until,
        end.map(JobState::as_str),
        b.error,
        b.now,
        b.job,
    ])?;
    Ok(true)
}

/// Reads a row selected with [`sql::JOB_COLUMNS`].
fn job_from(r: &Row<'_>) -> rusqlite::Result<ReplayJob> {
    let count =
        |i: usize| -> rusqlite::Result<u64> { Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0)) };
    let states: String = r.get(6)?;
    let state: String = r.get(13)?;
    Ok(ReplayJob {
        id: r.get(0)?,
        spec: ReplaySpec {
            route: r.get(1)?,
            source: r.get(2)?,
            target: r.get(3)?,
            since: r.get(4)?,
            until: r.get(5)?,
            states: states.split(',').filter_map(State::parse).collect(),
            filter: r.get(7)?,
        },
        matched: count(8)?,
        replayed: count(9)?,
        skipped: count(10)?,
        cursor: (r.get(11)?, r.get(12)?),
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        error: r.get(14)?,
        owner: r.get(15)?,
        owned_until: r.get(16)?,
        created: r.get(17)?,
        finished: r.get(18)?,
    })
}

#[cfg(test)]
#[path = "embedded_tests.rs"]
mod tests;
