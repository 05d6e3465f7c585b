//! The PostgreSQL queue store: one database shared by every gateway replica.
//!
//! - **Ingest** is one statement (the event row and its request, inserted together), so an
//!   event is stored whole or not at all; it returns once PostgreSQL has committed it
//!   (`synchronous_commit` as the server says, on by default: the WAL is flushed). Concurrent
//!   commits from the pool's connections share WAL flushes (PostgreSQL's own group commit).
//! - **Dedup** is the insert itself: `ON CONFLICT (route, dedup_key) DO NOTHING`, in the same
//!   statement, so two replicas taking two copies of one event store it once.
//! - **Leases**: due events are picked with `FOR UPDATE SKIP LOCKED` (replicas never wait for
//!   nor take each other's picks) and marked `delivering` until `leased_until`. A replica that
//!   dies mid-delivery holds its events only until then; another replica's worker takes them
//!   over without a restart. A settle names its lease, so a late answer from a replica whose
//!   lease ran out changes nothing.
//! - The tables and queries have the same shape as the embedded store's; what is the same
//!   text is written once, in `sql.rs`.
//!
//! Connections: a small pool (`pool_size`), made lazily and replaced when broken; every call
//! is bounded by `timeout`. TLS as the URL's `sslmode` says (`prefer`, the default: when the
//! server offers it; `require`, also spelled `verify-full` or `verify-ca` as libpq does;
//! `disable`), always verified, against `ca_file` or the system's trust roots, for the URL's
//! host name.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::delivery::event::{Event, NewEvent};
use crate::delivery::sql::{self, COLUMNS, DEAD, DELIVERING, QUEUED, RETRYING};
#[cfg(test)]
use crate::delivery::sql::{DELIVERED, FILTERED};
use crate::delivery::state::{
    Depth, Filter, Ingested, JobState, Paused, QueueStoreError, ReplayBatch, ReplayJob, ReplaySpec,
    Settle, State, CANDIDATE_BODY_BYTES,
};
use crate::delivery::time::UnixMs;

const SCHEMA: &str = "
-- One row per event and destination (a route with one upstream has one destination, '').
CREATE TABLE IF NOT EXISTS hookgate_events (
    id              TEXT NOT NULL,
    destination     TEXT NOT NULL DEFAULT '',
    route           TEXT NOT NULL,
    dedup_key       TEXT,
    dedup_until     BIGINT,
    idempotency_key TEXT NOT NULL,
    state           TEXT NOT NULL,
    received_at     BIGINT NOT NULL,
    age_from        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease           TEXT,
    leased_until    BIGINT,
    finished_at     BIGINT,
    last_status     INTEGER,
    last_error      TEXT,
    verified_key    BIGINT,
    method          TEXT NOT NULL,
    target          TEXT NOT NULL,
    body_len        BIGINT NOT NULL,
    dead_reason     TEXT,
    budget_from     INTEGER NOT NULL DEFAULT 0,
    replays         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (id, destination),
    -- Only an event's first row carries its dedup key.
    UNIQUE (route, dedup_key)
);
-- One per event, shared by its rows.
CREATE TABLE IF NOT EXISTS hookgate_requests (
    id              TEXT PRIMARY KEY,
    headers         BYTEA NOT NULL,
    body            BYTEA NOT NULL
);
-- An operator's pauses: a route's (destination '') or one destination's. Shared by every
-- replica.
CREATE TABLE IF NOT EXISTS hookgate_pauses (
    route           TEXT NOT NULL,
    destination     TEXT NOT NULL,
    paused_at       BIGINT NOT NULL,
    PRIMARY KEY (route, destination)
);
-- Added after the first release; a store made before gets them here.
ALTER TABLE hookgate_events ADD COLUMN IF NOT EXISTS dead_reason TEXT;
ALTER TABLE hookgate_events ADD COLUMN IF NOT EXISTS budget_from INTEGER NOT NULL DEFAULT 0;
-- A row per event and destination: a store made with a row per event keeps its rows, each
-- the delivery to the route's one destination ('').
ALTER TABLE hookgate_events ADD COLUMN IF NOT EXISTS destination TEXT NOT NULL DEFAULT '';
ALTER TABLE hookgate_events ADD COLUMN IF NOT EXISTS replays INTEGER NOT NULL DEFAULT 0;
DO $$
DECLARE pkey name;
BEGIN
    SELECT conname INTO pkey FROM pg_constraint
        WHERE conrelid = 'hookgate_events'::regclass AND contype = 'p'
        AND array_length(conkey, 1) = 1;
    IF pkey IS NOT NULL THEN
        EXECUTE format('ALTER TABLE hookgate_events DROP CONSTRAINT %I, \
            ADD PRIMARY KEY (id, destination)', pkey);
    END IF;
END $$;
DROP INDEX IF EXISTS hookgate_events_due;
DROP INDEX IF EXISTS hookgate_events_finished;
CREATE INDEX IF NOT EXISTS hookgate_events_pending
    ON hookgate_events (route, destination, next_attempt_at)
    WHERE state IN ('queued', 'retrying', 'delivering');
CREATE INDEX IF NOT EXISTS hookgate_events_done ON hookgate_events (state, finished_at)
    WHERE state IN ('delivered', 'dead', 'filtered');
";

/// Pending rows (queued, retrying, delivering), as `hookgate_events_pending` says it.
static PENDING: LazyLock<String> =
    LazyLock::new(|| format!("state IN ({QUEUED}, {RETRYING}, {DELIVERING})"));
static SETTLE_DELIVERED: LazyLock<String> = LazyLock::new(|| sql::settle_delivered('$'));
static SETTLE_RETRY: LazyLock<String> = LazyLock::new(|| sql::settle_retry('$'));
static SETTLE_DEAD: LazyLock<String> = LazyLock::new(|| sql::settle_dead('$'));
static START: LazyLock<String> =
    LazyLock::new(|| format!("{} RETURNING attempts", sql::start('$')));
/// Finished rows, as `hookgate_events_done` says it.
#[cfg(test)]
static FINISHED: LazyLock<String> =
    LazyLock::new(|| format!("state IN ({DELIVERED}, {DEAD}, {FILTERED})"));
static NEXT_DUE: LazyLock<String> = LazyLock::new(|| sql::next_due('$', &PENDING));
static PAUSE: LazyLock<String> = LazyLock::new(|| sql::pause('$'));
/// The pause ended and the route's events' ages moved, in one statement.
static RESUME: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH gone AS ({unpause}), \
         aged AS ({ages} AND EXISTS (SELECT 1 FROM gone)) \
         SELECT paused_at FROM gone",
        unpause = sql::unpause('$'),
        ages = sql::unpause_ages(
            &sql::Resumed {
                now: "$3",
                since: "(SELECT paused_at FROM gone)",
                route: "$1",
                destination: "$2",
            },
            &PENDING,
            "GREATEST"
        ),
    )
});
/// The event's rows and its request in one statement: stored whole or not at all. The
/// first row carries the dedup key: if it conflicts, nothing is stored (the other rows and
/// the request are inserted only with it). Rows as arrays: destination, idempotency key,
/// state, lease, lease end, attempts, finished at.
static INGEST: LazyLock<String> = LazyLock::new(|| {
    let cols = "id, route, dedup_key, dedup_until, idempotency_key, state, received_at, \
        age_from, next_attempt_at, verified_key, method, target, body_len, lease, \
        leased_until, attempts, destination, finished_at";
    let values = |dedup: &str| {
        format!(
            "SELECT $1::text, $2::text, {dedup}, d.key, d.state, $5::bigint, $5::bigint, \
             $5::bigint, $6::bigint, $7::text, $8::text, $9::bigint, d.lease, d.until, \
             d.attempts, d.destination, d.finished FROM d"
        )
    };
    format!(
        "WITH d AS (SELECT * FROM unnest($12::text[], $13::text[], $14::text[], $15::text[], \
             $16::bigint[], $17::int[], $18::bigint[]) WITH ORDINALITY \
             AS d(destination, key, state, lease, until, attempts, finished, n)), \
         first AS (INSERT INTO hookgate_events ({cols}) {first} WHERE d.n = 1 \
             ON CONFLICT (route, dedup_key) DO NOTHING RETURNING id), \
         rest AS (INSERT INTO hookgate_events ({cols}) {rest} \
             WHERE d.n > 1 AND EXISTS (SELECT 1 FROM first)), \
         rq AS (INSERT INTO hookgate_requests (id, headers, body) \
             SELECT id, $10::bytea, $11::bytea FROM first RETURNING id) \
         SELECT id FROM rq",
        first = values("$3::text, $4::bigint"),
        rest = values("NULL, NULL"),
    )
});
static LEASE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH picked AS ({due} FOR UPDATE SKIP LOCKED), \
         leased AS (UPDATE hookgate_events e SET state = {DELIVERING}, \
             lease = $1, leased_until = $2, attempts = e.attempts + $6 \
             FROM picked WHERE e.id = picked.id AND e.destination = picked.destination \
             RETURNING e.*) \
         SELECT {cols}, r.headers, r.body FROM leased \
         LEFT JOIN hookgate_requests r ON r.id = leased.id \
         ORDER BY leased.next_attempt_at, leased.received_at",
        due = sql::due('$', &PENDING, "id, destination"),
        cols = COLUMNS
            .split(", ")
            .map(|c| format!("leased.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
});
static RENEW: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE hookgate_events e SET leased_until = $1 \
         FROM unnest($2::text[], $3::text[]) AS held(id, lease) \
         WHERE e.id = held.id AND e.lease = held.lease AND e.state = {DELIVERING}"
    )
});
static RELEASE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} FROM unnest($1::text[], $2::text[]) AS held(id, lease) \
         WHERE hookgate_events.id = held.id \
         AND hookgate_events.lease = held.lease \
         AND hookgate_events.state = {DELIVERING}",
        sql::release()
    )
});
static RETRY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} WHERE ($4::text IS NULL OR destination = $4) \
         AND (($2::text IS NOT NULL AND id = $2 AND state IN ({DEAD}, {RETRYING})) \
             OR ($3::text IS NOT NULL AND route = $3 AND state = {DEAD}))",
        sql::retry('$')
    )
});
/// Drops an event's deliveries (to `p_destination`, or all) not being delivered, in one
/// transaction and in order: its request goes with the last of them, and if the row that
/// carried the event's dedup key went while others stay, the key moves to one of them (a
/// copy sent again must still be a duplicate). A function, because one statement's parts
/// run in no set order, and the key cannot move before the row that holds it is gone.
const DROP_FUNCTION: &str = "
CREATE OR REPLACE FUNCTION hookgate_drop(p_id text, p_destination text) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    n bigint;
    k text;
    u bigint;
BEGIN
    SELECT dedup_key, dedup_until INTO k, u FROM hookgate_events
        WHERE id = p_id AND (p_destination IS NULL OR destination = p_destination)
        AND state <> 'delivering' AND dedup_key IS NOT NULL;
    DELETE FROM hookgate_events WHERE id = p_id
        AND (p_destination IS NULL OR destination = p_destination) AND state <> 'delivering';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF NOT EXISTS (SELECT 1 FROM hookgate_events WHERE id = p_id) THEN
        DELETE FROM hookgate_requests WHERE id = p_id;
    ELSIF k IS NOT NULL THEN
        UPDATE hookgate_events SET dedup_key = k, dedup_until = u
            WHERE (id, destination) = (SELECT id, destination FROM hookgate_events
                WHERE id = p_id ORDER BY destination LIMIT 1);
    END IF;
    RETURN n;
END $fn$;
";
static DEPTHS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT route, destination, state, count(*), min(received_at) FROM hookgate_events \
         WHERE state IN ({QUEUED}, {RETRYING}, {DELIVERING}, {DEAD}) \
         GROUP BY route, destination, state"
    )
});
static PURGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH ev AS (DELETE FROM hookgate_events WHERE id IN ({}) RETURNING id), \
         rq AS (DELETE FROM hookgate_requests WHERE id IN (SELECT id FROM ev)) \
         SELECT count(*) FROM ev",
        sql::purgeable('$')
    )
});

/// One batch of a replay job in one statement, only while the job is the caller's and
/// running: new deliveries copied from another destination's (`ins`), finished ones made due
/// again (`upd`; a statement's parts see the rows as they were before it, so a row just
/// copied is not also reset), and the job's progress. Marks as arrays: event id, from,
/// destination, idempotency key.
static REPLAY_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH job AS (SELECT id FROM hookgate_replays \
             WHERE id = $1 AND owner = $2 AND state = 'running' FOR UPDATE), \
         m AS (SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) \
             AS m(id, src, dst, key)), \
         ins AS (INSERT INTO hookgate_events (id, destination, route, idempotency_key, state, \
             received_at, age_from, next_attempt_at, verified_key, method, target, body_len, \
             replays) \
             SELECT e.id, m.dst, e.route, m.key, {QUEUED}, e.received_at, $7, $7, \
             e.verified_key, e.method, e.target, e.body_len, 1 \
             FROM m JOIN hookgate_events e ON e.id = m.id AND e.destination = m.src \
             WHERE m.dst <> m.src AND EXISTS (SELECT 1 FROM job) \
             ON CONFLICT (id, destination) DO NOTHING RETURNING id), \
         upd AS (UPDATE hookgate_events e SET state = {RETRYING}, next_attempt_at = $7, \
             age_from = $7, budget_from = e.attempts, finished_at = NULL, dead_reason = NULL, \
             replays = e.replays + 1 FROM m \
             WHERE e.id = m.id AND e.destination = m.dst AND e.finished_at IS NOT NULL \
             AND EXISTS (SELECT 1 FROM job) RETURNING e.id), \
         done AS (SELECT (SELECT count(*) FROM ins) + (SELECT count(*) FROM upd) AS n), \
         j AS (UPDATE hookgate_replays SET replayed = replayed + (SELECT n FROM done), \
             skipped = skipped + $8 + cardinality($3::text[]) - (SELECT n FROM done), \
             cursor_id = $9, cursor_destination = $10, owned_until = $11, \
             state = coalesce($12, state), error = coalesce($13, error), \
             finished_at = CASE WHEN $12::text IS NULL THEN finished_at ELSE $7 END \
             WHERE id IN (SELECT id FROM job) RETURNING id) \
         SELECT count(*) FROM j"
    )
});

/// The longest a start waits for the tables to be created or brought up to date.
const SCHEMA_SETUP_LIMIT: Duration = Duration::from_secs(600);

/// An open PostgreSQL store.
pub struct Postgres {
    config: tokio_postgres::Config,
    /// Idle connections; at most `pool_size` exist at once (`slots`).
    idle: Mutex<Vec<Client>>,
    slots: Semaphore,
    timeout: Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    tls: MakeRustlsConnect,
}

/// A connection checked out of the pool; back in on drop unless it broke.
struct Conn<'a> {
    pool: &'a Postgres,
    client: Option<Client>,
    _slot: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(c);
                }
            }
        }
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a checked-out connection has its client")
    }
}

fn engine(e: tokio_postgres::Error) -> QueueStoreError {
    QueueStoreError::Engine(with_cause(&e))
}

/// The error with its cause (e.g. why a TLS handshake failed), which its `Display` leaves
/// out.
fn with_cause(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Parses a connection string (URL or `key=value` form). libpq's `sslmode=verify-full` and
/// `verify-ca`, which operators paste from other tools, mean `require` here: hookgate always
/// verifies the server's certificate and host name (stricter than `verify-ca`), which the
/// PostgreSQL driver's own `require` leaves to the TLS connector.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    let is_verify = |v: &str| v == "sslmode=verify-full" || v == "sslmode=verify-ca";
    let normalized = if url.contains("://") {
        match url.rsplit_once('?') {
            Some((head, query)) => {
                let query: Vec<&str> = query
                    .split('&')
                    .map(|p| if is_verify(p) { "sslmode=require" } else { p })
                    .collect();
                format!("{head}?{}", query.join("&"))
            }
            None => url.to_owned(),
        }
    } else {
        url.split(' ')
            .map(|p| if is_verify(p) { "sslmode=require" } else { p })
            .collect::<Vec<_>>()
            .join(" ")
    };
    normalized
        .parse()
        .map_err(|_| "not a PostgreSQL URL (postgres://user[:password]@host:port/database)".into())
}

impl Postgres {
    /// Connects, creates the tables if needed (one replica at a time, under an advisory
    /// lock), and keeps the connection for the pool.
    pub async fn open(
        url: &str,
        pool_size: usize,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<Postgres, QueueStoreError> {
        let tls = crate::tls::postgres_config(ca_file)
            .map(MakeRustlsConnect::new)
            .map_err(|e| QueueStoreError::Open(format!("TLS to PostgreSQL: {e}")))?;
        let config = parse_url(url).map_err(|e| QueueStoreError::Open(e.to_string()))?;
        let store = Postgres {
            config,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(pool_size.max(1)),
            timeout,
            metrics,
            tls,
        };
        // Bounded: an unreachable host would otherwise hold a start, or a reload, for the
        // system's TCP connect timeout (minutes).
        let connect_limit = timeout.max(Duration::from_secs(30));
        let conn = tokio::time::timeout(connect_limit, store.conn())
            .await
            .map_err(|_| {
                QueueStoreError::Open(format!(
                    "cannot connect to PostgreSQL: no connection within {connect_limit:?}"
                ))
            })?
            .map_err(|e| match e {
                QueueStoreError::Engine(why) => {
                    QueueStoreError::Open(format!("cannot connect to PostgreSQL: {why}"))
                }
                other => other,
            })?;
        let setup = format!(
            "BEGIN; SELECT pg_advisory_xact_lock(7061746868676174); {SCHEMA} {} {DROP_FUNCTION} \
             COMMIT;",
            sql::replays_table("BIGINT")
        );
        // Long enough for a large store's one-time schema change (a new primary key and
        // indexes on every row) on the first start of a new version; other replicas wait
        // for it behind the advisory lock.
        tokio::time::timeout(timeout.max(SCHEMA_SETUP_LIMIT), conn.batch_execute(&setup))
            .await
            .map_err(|_| {
                QueueStoreError::Open(format!(
                    "PostgreSQL: creating or updating the tables took longer than {}",
                    humantime::format_duration(SCHEMA_SETUP_LIMIT)
                ))
            })?
            .map_err(|e| {
                QueueStoreError::Open(format!("PostgreSQL: cannot create the tables: {e}"))
            })?;
        drop(conn);
        Ok(store)
    }

    /// A connection from the pool, or a new one.
    async fn conn(&self) -> Result<Conn<'_>, QueueStoreError> {
        let slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| QueueStoreError::Closed)?;
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let client = match idle {
            Some(c) if !c.is_closed() => c,
            _ => {
                let (client, connection) = self
                    .config
                    .connect(self.tls.clone())
                    .await
                    .map_err(engine)?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "queue store: PostgreSQL connection ended");
                    }
                });
                client
            }
        };
        Ok(Conn {
            pool: self,
            client: Some(client),
            _slot: slot,
        })
    }

    /// Runs `f` on a pooled connection within the store's timeout.
    async fn with<T>(
        &self,
        f: impl for<'c> FnOnce(
            &'c Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>,
        >,
    ) -> Result<T, QueueStoreError> {
        let call = async {
            let conn = self.conn().await?;
            f(&conn).await.map_err(engine)
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(QueueStoreError::Timeout),
        }
    }

    pub async fn ingest(&self, e: NewEvent) -> Result<Ingested, QueueStoreError> {
        let started = std::time::Instant::now();
        let stored = self
            .with(|c| Box::pin(async move { insert_or_find(c, &e).await }))
            .await?
            .ok_or_else(|| {
                QueueStoreError::Engine(
                    "the conflicting event kept disappearing; not stored".into(),
                )
            })?;
        // Each ingest is one commit here (PostgreSQL groups the WAL flushes itself).
        self.metrics
            .queue
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(stored)
    }

    pub async fn lease(
        &self,
        (route, destination): (&str, &str),
        limit: usize,
        now: UnixMs,
        until: UnixMs,
        start: bool,
    ) -> Result<Vec<Event>, QueueStoreError> {
        let (route, destination) = (route.to_owned(), destination.to_owned());
        let lease = crate::request_id::unique_hex();
        let started = i32::from(start);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        LEASE.as_str(),
                        &[&lease, &until, &route, &now, &limit, &started, &destination],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        let mut e = event_from(r);
                        // A row whose request is gone (a drop or purge raced with a
                        // replay) comes back without a body: the worker dead-letters it
                        // as unreadable rather than lease it for ever.
                        e.headers = r.get::<_, Option<Vec<u8>>>(20).unwrap_or_default();
                        e.body = r.get::<_, Option<Vec<u8>>>(21).map(bytes::Bytes::from);
                        e
                    })
                    .collect())
            })
        })
        .await
    }

    pub async fn settle(
        &self,
        event: &Event,
        settle: Settle,
        now: UnixMs,
    ) -> Result<bool, QueueStoreError> {
        let (id, destination) = (event.id.clone(), event.destination.clone());
        let lease = event.lease.clone().unwrap_or_default();
        self.with(move |c| {
            Box::pin(async move {
                let n = match settle {
                    // A 2xx wins: whatever raced with it, the app has the event.
                    Settle::Delivered { status } => {
                        let status = i32::from(status);
                        let args: [&(dyn ToSql + Sync); 4] = [&now, &status, &id, &destination];
                        c.execute(SETTLE_DELIVERED.as_str(), &args).await?
                    }
                    Settle::Retry {
                        at_ms,
                        status,
                        error,
                    } => {
                        let status = status.map(i32::from);
                        let args: [&(dyn ToSql + Sync); 5] = [&at_ms, &status, &error, &id, &lease];
                        c.execute(SETTLE_RETRY.as_str(), &args).await?
                    }
                    Settle::Dead {
                        reason,
                        status,
                        error,
                    } => {
                        let status = status.map(i32::from);
                        let args: [&(dyn ToSql + Sync); 6] =
                            [&now, &status, &error, &reason.label(), &id, &lease];
                        c.execute(SETTLE_DEAD.as_str(), &args).await?
                    }
                };
                Ok(n == 1)
            })
        })
        .await
    }

    pub async fn start(
        &self,
        id: &str,
        lease: &str,
        until: UnixMs,
    ) -> Result<Option<u32>, QueueStoreError> {
        let (id, lease) = (id.to_owned(), lease.to_owned());
        self.with(move |c| {
            Box::pin(async move {
                let row = c.query_opt(START.as_str(), &[&until, &id, &lease]).await?;
                Ok(row.map(|r| u32::try_from(r.get::<_, i32>(0)).unwrap_or(0)))
            })
        })
        .await
    }

    pub async fn renew(
        &self,
        leases: Vec<(String, String)>,
        until: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        let (ids, tokens): (Vec<String>, Vec<String>) = leases.into_iter().unzip();
        self.with(move |c| {
            Box::pin(async move { c.execute(RENEW.as_str(), &[&until, &ids, &tokens]).await })
        })
        .await
    }

    pub async fn release(&self, leases: Vec<(String, String)>) -> Result<u64, QueueStoreError> {
        let (ids, tokens): (Vec<String>, Vec<String>) = leases.into_iter().unzip();
        self.with(move |c| {
            Box::pin(async move { c.execute(RELEASE.as_str(), &[&ids, &tokens]).await })
        })
        .await
    }

    pub async fn next_due(
        &self,
        (route, destination): (&str, &str),
    ) -> Result<Option<UnixMs>, QueueStoreError> {
        let (route, destination) = (route.to_owned(), destination.to_owned());
        self.with(move |c| {
            Box::pin(async move {
                let row = c
                    .query_one(NEXT_DUE.as_str(), &[&route, &destination])
                    .await?;
                Ok(row.get::<_, Option<UnixMs>>(0))
            })
        })
        .await
    }

    pub async fn list(&self, filter: Filter) -> Result<Vec<Event>, QueueStoreError> {
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let state = filter.state.map(|s| s.as_str().to_owned());
        self.with(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {COLUMNS} FROM hookgate_events \
                     WHERE ($1::text IS NULL OR route = $1) AND ($2::text IS NULL OR state = $2) \
                     AND ($3::text IS NULL OR (id, destination) > ($3, coalesce($5::text, ''))) \
                     AND ($6::text IS NULL OR destination = $6) \
                     ORDER BY id, destination LIMIT $4"
                );
                let (after, after_destination) = filter.after.unzip();
                let args: [&(dyn ToSql + Sync); 6] = [
                    &filter.route,
                    &state,
                    &after,
                    &limit,
                    &after_destination,
                    &filter.destination,
                ];
                let rows = c.query(&sql, &args).await?;
                Ok(rows.iter().map(event_from).collect())
            })
        })
        .await
    }

    pub async fn get(&self, id: &str, with_body: bool) -> Result<Vec<Event>, QueueStoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {COLUMNS} FROM hookgate_events WHERE id = $1 ORDER BY destination"
                );
                let mut events: Vec<Event> = c
                    .query(&sql, &[&id])
                    .await?
                    .iter()
                    .map(event_from)
                    .collect();
                if with_body && !events.is_empty() {
                    if let Some(r) = c
                        .query_opt(
                            "SELECT headers, body FROM hookgate_requests WHERE id = $1",
                            &[&id],
                        )
                        .await?
                    {
                        let body = bytes::Bytes::from(r.get::<_, Vec<u8>>(1));
                        for event in &mut events {
                            event.headers = r.get(0);
                            event.body = Some(body.clone());
                        }
                    }
                }
                Ok(events)
            })
        })
        .await
    }

    pub async fn retry(
        &self,
        id: &str,
        destination: Option<&str>,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        self.retry_where(Some(id.to_owned()), None, destination, now)
            .await
    }

    pub async fn retry_dead(
        &self,
        route: &str,
        destination: Option<&str>,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        self.retry_where(None, Some(route.to_owned()), destination, now)
            .await
    }

    async fn retry_where(
        &self,
        id: Option<String>,
        route: Option<String>,
        destination: Option<&str>,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        let destination = destination.map(str::to_owned);
        self.with(move |c| {
            Box::pin(async move {
                c.execute(RETRY.as_str(), &[&now, &id, &route, &destination])
                    .await
            })
        })
        .await
    }

    pub async fn remove(
        &self,
        id: &str,
        destination: Option<&str>,
    ) -> Result<u64, QueueStoreError> {
        let (id, destination) = (id.to_owned(), destination.map(str::to_owned));
        self.with(move |c| {
            Box::pin(async move {
                let row = c
                    .query_one("SELECT hookgate_drop($1, $2)", &[&id, &destination])
                    .await?;
                Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
            })
        })
        .await
    }

    pub async fn pause(
        &self,
        route: &str,
        destination: &str,
        now: UnixMs,
    ) -> Result<bool, QueueStoreError> {
        let (route, destination) = (route.to_owned(), destination.to_owned());
        self.with(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(PAUSE.as_str(), &[&route, &destination, &now])
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    pub async fn resume(
        &self,
        route: &str,
        destination: &str,
        now: UnixMs,
    ) -> Result<Option<UnixMs>, QueueStoreError> {
        let (route, destination) = (route.to_owned(), destination.to_owned());
        self.with(move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt(RESUME.as_str(), &[&route, &destination, &now])
                    .await?;
                Ok(row.map(|r| r.get::<_, UnixMs>(0)))
            })
        })
        .await
    }

    pub async fn pauses(&self) -> Result<Vec<Paused>, QueueStoreError> {
        self.with(|c| {
            Box::pin(async move {
                let rows = c.query(sql::PAUSES, &[]).await?;
                Ok(rows
                    .iter()
                    .map(|r| Paused {
                        route: r.get(0),
                        destination: r.get(1),
                        since: r.get(2),
                    })
                    .collect())
            })
        })
        .await
    }

    pub async fn replay_create(&self, j: ReplayJob) -> Result<(), QueueStoreError> {
        self.with(move |c| {
            Box::pin(async move {
                let states: Vec<&str> = j.spec.states.iter().map(|s| s.as_str()).collect();
                let matched = i64::try_from(j.matched).unwrap_or(i64::MAX);
                let args: [&(dyn ToSql + Sync); 10] = [
                    &j.id,
                    &j.spec.route,
                    &j.spec.source,
                    &j.spec.target,
                    &j.spec.since,
                    &j.spec.until,
                    &states.join(","),
                    &j.spec.filter,
                    &matched,
                    &j.created,
                ];
                c.execute(&sql::replay_create('$'), &args).await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn replay_claim(
        &self,
        owner: &str,
        now: UnixMs,
        until: UnixMs,
    ) -> Result<Option<ReplayJob>, QueueStoreError> {
        let owner = owner.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "UPDATE hookgate_replays SET owner = $1, owned_until = $3 \
                     WHERE id = (SELECT id FROM hookgate_replays WHERE {} \
                         ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     RETURNING {}",
                    sql::replay_claimable('$'),
                    sql::JOB_COLUMNS
                );
                let row = c.query_opt(&sql, &[&owner, &now, &until]).await?;
                Ok(row.as_ref().map(job_from))
            })
        })
        .await
    }

    pub async fn replay_batch(&self, b: ReplayBatch) -> Result<bool, QueueStoreError> {
        self.with(move |c| {
            Box::pin(async move {
                let ids: Vec<&str> = b.marks.iter().map(|m| m.id.as_str()).collect();
                let from: Vec<&str> = b.marks.iter().map(|m| m.from.as_str()).collect();
                let to: Vec<&str> = b.marks.iter().map(|m| m.destination.as_str()).collect();
                let keys: Vec<&str> = b.marks.iter().map(|m| m.idempotency_key.as_str()).collect();
                let skipped = i64::try_from(b.skipped).unwrap_or(i64::MAX);
                let end = match (&b.error, b.done) {
                    (Some(_), _) => Some(JobState::Failed.as_str()),
                    (None, true) => Some(JobState::Done.as_str()),
                    (None, false) => None,
                };
                let args: [&(dyn ToSql + Sync); 13] = [
                    &b.job,
                    &b.owner,
                    &ids,
                    &from,
                    &to,
                    &keys,
                    &b.now,
                    &skipped,
                    &b.cursor.0,
                    &b.cursor.1,
                    &b.owned_until,
                    &end,
                    &b.error,
                ];
                let row = c.query_one(REPLAY_BATCH.as_str(), &args).await?;
                Ok(row.get::<_, i64>(0) == 1)
            })
        })
        .await
    }

    pub async fn replay_cancel(&self, id: &str, now: UnixMs) -> Result<bool, QueueStoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            Box::pin(async move {
                let n = c.execute(&sql::replay_cancel('$'), &[&id, &now]).await?;
                Ok(n > 0)
            })
        })
        .await
    }

    pub async fn replay_jobs(&self) -> Result<Vec<ReplayJob>, QueueStoreError> {
        self.with(|c| {
            Box::pin(async move {
                let rows = c.query(&sql::replay_jobs(), &[]).await?;
                Ok(rows.iter().map(job_from).collect())
            })
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            Box::pin(async move {
                let sql = sql::replay_candidates('$', &spec.states, "::text");
                let args: [&(dyn ToSql + Sync); 7] = [
                    &spec.route,
                    &spec.source,
                    &spec.since,
                    &spec.until,
                    &after.0,
                    &after.1,
                    &limit,
                ];
                let mut events: Vec<Event> =
                    c.query(&sql, &args).await?.iter().map(event_from).collect();
                if with_body {
                    // Within the page's byte budget: the rows past it come in the next page.
                    let (mut bytes, mut read) = (0u64, 0);
                    for e in &mut events {
                        if read > 0 && bytes >= CANDIDATE_BODY_BYTES {
                            break;
                        }
                        read += 1;
                        bytes += e.body_len;
                        if let Some(r) = c
                            .query_opt(
                                "SELECT headers, body FROM hookgate_requests WHERE id = $1",
                                &[&e.id],
                            )
                            .await?
                        {
                            e.headers = r.get(0);
                            e.body = Some(bytes::Bytes::from(r.get::<_, Vec<u8>>(1)));
                        }
                    }
                    events.truncate(read);
                }
                Ok(events)
            })
        })
        .await
    }

    pub async fn replay_count(&self, spec: &ReplaySpec) -> Result<u64, QueueStoreError> {
        let spec = spec.clone();
        self.with(move |c| {
            Box::pin(async move {
                let sql = sql::replay_count('$', &spec.states, "::text", spec.target.is_some());
                let args: [&(dyn ToSql + Sync); 4] =
                    [&spec.route, &spec.source, &spec.since, &spec.until];
                let row = c.query_one(&sql, &args).await?;
                Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
            })
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
        self.with(move |c| {
            Box::pin(async move {
                let sql = sql::pending_count('$', &PENDING, "::text");
                let row = c.query_one(&sql, &[&route, &destination, &now]).await?;
                Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
            })
        })
        .await
    }

    pub async fn depths(&self) -> Result<Vec<Depth>, QueueStoreError> {
        self.with(|c| {
            Box::pin(async move {
                let rows = c.query(DEPTHS.as_str(), &[]).await?;
                Ok(rows
                    .iter()
                    .filter_map(|r| {
                        let state = State::parse(r.get::<_, &str>(2))?;
                        Some(Depth {
                            route: r.get(0),
                            destination: r.get(1),
                            state,
                            count: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
                            oldest_received_ms: r.get(4),
                        })
                    })
                    .collect())
            })
        })
        .await
    }

    pub async fn purge(
        &self,
        delivered_before: UnixMs,
        dead_before: UnixMs,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        self.with(move |c| {
            Box::pin(async move {
                let row = c
                    .query_one(PURGE.as_str(), &[&delivered_before, &dead_before, &now])
                    .await?;
                Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
            })
        })
        .await
    }
}

/// Stores `e` with its request, or finds the event with its dedup key: `None` if that one
/// was dropped between the insert and the look-up, twice over.
async fn insert_or_find(
    c: &Client,
    e: &NewEvent,
) -> Result<Option<Ingested>, tokio_postgres::Error> {
    let (verified_key, body_len) = (e.verified_key.map(i64::from), e.body.len() as i64);
    let rows = Rows::of(e);
    let args: [&(dyn ToSql + Sync); 18] = [
        &e.id,
        &e.route,
        &e.dedup_key,
        &e.dedup_until,
        &e.received_ms,
        &verified_key,
        &e.method,
        &e.target,
        &body_len,
        &e.headers,
        &&e.body[..],
        &rows.destination,
        &rows.key,
        &rows.state,
        &rows.lease,
        &rows.until,
        &rows.attempts,
        &rows.finished,
    ];
    // A conflicting event dropped between the insert and the look-up is gone: the insert
    // is tried again rather than answered as a duplicate.
    for _ in 0..2 {
        if !c.query(INGEST.as_str(), &args).await?.is_empty() {
            return Ok(Some(Ingested::Stored));
        }
        let first = c
            .query_opt(
                "SELECT id FROM hookgate_events WHERE route = $1 AND dedup_key = $2",
                &[&e.route, &e.dedup_key],
            )
            .await?;
        if let Some(first) = first {
            let id: String = first.get(0);
            let states = c
                .query(
                    "SELECT state FROM hookgate_events WHERE id = $1 ORDER BY destination",
                    &[&id],
                )
                .await?;
            let state = State::of_event(states.iter().filter_map(|r| State::parse(r.get(0))));
            return Ok(Some(Ingested::Duplicate { id, state }));
        }
    }
    Ok(None)
}

/// An ingest's rows as the arrays [`INGEST`] unnests: one per destination, or the
/// `filtered` record when none takes the event.
struct Rows<'a> {
    destination: Vec<&'a str>,
    key: Vec<&'a str>,
    state: Vec<&'static str>,
    lease: Vec<Option<&'a str>>,
    until: Vec<Option<UnixMs>>,
    attempts: Vec<i32>,
    finished: Vec<Option<UnixMs>>,
}

impl<'a> Rows<'a> {
    fn of(e: &'a NewEvent) -> Rows<'a> {
        if e.deliveries.is_empty() {
            return Rows {
                destination: vec![crate::delivery::state::WHOLE_ROUTE],
                key: vec![&e.idempotency_key],
                state: vec![State::Filtered.as_str()],
                lease: vec![None],
                until: vec![None],
                attempts: vec![0],
                finished: vec![Some(e.received_ms)],
            };
        }
        let d = &e.deliveries;
        Rows {
            destination: d.iter().map(|d| d.destination.as_str()).collect(),
            key: d.iter().map(|d| d.idempotency_key.as_str()).collect(),
            state: d.iter().map(|d| d.state().as_str()).collect(),
            lease: d
                .iter()
                .map(|d| d.lease.as_ref().map(|l| l.token.as_str()))
                .collect(),
            until: d
                .iter()
                .map(|d| d.lease.as_ref().map(|l| l.until_ms))
                .collect(),
            attempts: d.iter().map(|d| i32::from(d.lease.is_some())).collect(),
            finished: d.iter().map(|_| None).collect(),
        }
    }
}

/// A time binds and reads as the `BIGINT` it is stored as.
impl tokio_postgres::types::ToSql for UnixMs {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for UnixMs {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<UnixMs, Box<dyn std::error::Error + Sync + Send>> {
        i64::from_sql(ty, raw).map(UnixMs)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

/// Reads a row whose first columns are [`COLUMNS`], without its request.
fn event_from(r: &Row) -> Event {
    Event {
        id: r.get(0),
        route: r.get(1),
        idempotency_key: r.get(2),
        state: State::parse(r.get::<_, &str>(3)).unwrap_or(State::Dead),
        received_ms: r.get(4),
        age_from_ms: r.get(5),
        next_attempt_ms: r.get(6),
        attempts: u32::try_from(r.get::<_, i32>(7)).unwrap_or(0),
        finished_ms: r.get(8),
        last_status: r
            .get::<_, Option<i32>>(9)
            .and_then(|s| u16::try_from(s).ok()),
        last_error: r.get(10),
        verified_key: r
            .get::<_, Option<i64>>(11)
            .and_then(|k| u32::try_from(k).ok()),
        method: r.get(12),
        target: r.get(13),
        headers: Vec::new(),
        body_len: u64::try_from(r.get::<_, i64>(14)).unwrap_or(0),
        body: None,
        lease: r.get(15),
        dead_reason: r.get(16),
        budget_from: u32::try_from(r.get::<_, i32>(17)).unwrap_or(0),
        destination: r.get(18),
        replays: u32::try_from(r.get::<_, i32>(19)).unwrap_or(0),
        head: None,
    }
}

/// Reads a row selected with [`sql::JOB_COLUMNS`].
fn job_from(r: &Row) -> ReplayJob {
    let count = |i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0);
    let states: &str = r.get(6);
    ReplayJob {
        id: r.get(0),
        spec: ReplaySpec {
            route: r.get(1),
            source: r.get(2),
            target: r.get(3),
            since: r.get(4),
            until: r.get(5),
            states: states.split(',').filter_map(State::parse).collect(),
            filter: r.get(7),
        },
        matched: count(8),
        replayed: count(9),
        skipped: count(10),
        cursor: (r.get(11), r.get(12)),
        state: JobState::parse(r.get(13)).unwrap_or(JobState::Failed),
        error: r.get(14),
        owner: r.get(15),
        owned_until: r.get(16),
        created: r.get(17),
        finished: r.get(18),
    }
}

#[cfg(test)]
mod tests {
    use tokio_postgres::config::SslMode;

    use super::parse_url;

    /// The queries say "pending" and "finished" as the partial indexes do, or PostgreSQL
    /// would not use them.
    #[test]
    fn the_schema_indexes_say_what_the_queries_say() {
        assert!(super::SCHEMA.contains(&format!("WHERE {}", *super::PENDING)));
        assert!(super::SCHEMA.contains(&format!("WHERE {};", *super::FINISHED)));
    }

    #[test]
    fn libpq_verify_modes_are_accepted_as_require() {
        for (url, mode) in [
            ("postgres://h:5432/db?sslmode=verify-full", SslMode::Require),
            (
                "postgres://u:p@h/db?application_name=x&sslmode=verify-ca",
                SslMode::Require,
            ),
            ("postgres://h/db?sslmode=require", SslMode::Require),
            ("postgres://h/db?sslmode=disable", SslMode::Disable),
            ("postgres://h/db", SslMode::Prefer),
            ("host=h dbname=db sslmode=verify-full", SslMode::Require),
        ] {
            assert_eq!(parse_url(url).unwrap().get_ssl_mode(), mode, "{url}");
        }
        for bad in ["postgres://h/db?sslmode=verify-nothing", "not a url at all"] {
            let e = parse_url(bad).unwrap_err();
            assert!(
                !e.contains("verify-nothing"),
                "the URL is not repeated: {e}"
            );
        }
    }
}
