//! The queue store as the pipeline, the delivery worker and the admin API see it: one set
//! of operations, whatever the engine.
//!
//! Every change is durable when its call returns `Ok` (fsync included); the pipeline answers
//! the sender only then.
//!
//! ## The state machine, the same on both engines
//!
//! An event is stored once (its request) with one row per destination that takes it; each
//! row goes through this on its own (an event no destination takes is one `filtered` row,
//! finished from the start):
//!
//! ```text
//!  ingest ──> queued ──lease──> delivering ──settle 2xx──────────> delivered
//!     │                          │    ▲  │ ──settle failure──> retrying ──lease──┐
//!     └─(slot free: attempt 1)───┘    │  └──settle final/old──> dead             │
//!                                     └──────────────────────────────────────────┘
//! ```
//!
//! - A **lease** only claims an event for a worker (`delivering`, a token, `leased_until`);
//!   it does not count as an attempt. A lease that runs out (its process died or stalled)
//!   makes the event due again for any worker, under a new token.
//! - **start** counts an attempt: `attempts + 1`, durably, just before the request is sent,
//!   and only under the caller's lease. An ingest that finds a delivery slot free stores
//!   the event leased with attempt 1 already started, and a lease made for free slots
//!   counts its events' attempts in the same operation.
//! - **renew** keeps leases alive while their events wait for a slot or for the app.
//! - **settle** records how an attempt ended. A 2xx wins: `Delivered` applies whatever
//!   state the event is in (a lease that ran out, a retry an operator made, even `dead`), as
//!   long as it is not already delivered or removed, because the app has the event. A
//!   failure settles only under the caller's lease, so a late answer from a lapsed lease
//!   changes nothing. Each call says whether it changed the event: a dead letter is counted
//!   once, when it becomes one.
//! - **release** gives leases back (a worker stopping), for another worker to take at once.

use std::sync::Arc;

use crate::delivery::embedded::Embedded;
use crate::delivery::event::{Event, NewEvent};
use crate::delivery::postgres::Postgres;
use crate::delivery::time::UnixMs;
use crate::metrics::Metrics;
use crate::model::QueueStoreConfig;

// What the engines and the store's callers share, defined below both (`state.rs`).
pub use crate::delivery::state::{
    Depth, Filter, Ingested, JobState, Paused, QueueStoreError, ReplayBatch, ReplayJob, ReplayMark,
    ReplaySpec, Settle, PURGE_BATCH, WHOLE_ROUTE,
};

/// The queue store in use.
///
/// PostgreSQL's futures are boxed: a future of this enum is as large as its largest arm,
/// and the embedded store's calls, made for every event, would otherwise carry the size
/// of a network client's (copied whole each time a task holding one is spawned or ends).
pub enum QueueStore {
    Embedded(Embedded),
    Postgres(Box<Postgres>),
}

impl QueueStore {
    /// Opens (creating if needed) the configured store.
    pub async fn open(
        config: &QueueStoreConfig,
        metrics: Arc<Metrics>,
    ) -> Result<QueueStore, QueueStoreError> {
        match config {
            QueueStoreConfig::Embedded {
                path, max_bytes, ..
            } => {
                let (path, max_bytes) = (path.clone(), *max_bytes);
                let opened =
                    tokio::task::spawn_blocking(move || Embedded::open(&path, max_bytes, metrics))
                        .await;
                match opened {
                    Ok(r) => r.map(QueueStore::Embedded),
                    Err(e) => Err(QueueStoreError::Open(e.to_string())),
                }
            }
            QueueStoreConfig::Postgres {
                url,
                pool_size,
                timeout,
                ca_file,
                ..
            } => Postgres::open(url, *pool_size, *timeout, ca_file.as_deref(), metrics)
                .await
                .map(|p| QueueStore::Postgres(Box::new(p))),
        }
    }

    /// Closes the store at the end of a shutdown: the embedded store commits what it was
    /// given, closes its connections and lets go of its directory (see
    /// [`Embedded::close`]); PostgreSQL's pooled connections need nothing (a replica's
    /// leases are in the database, and end with their expiry).
    pub async fn close(&self) {
        if let QueueStore::Embedded(store) = self {
            store.close().await;
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            QueueStore::Embedded(_) => "embedded",
            QueueStore::Postgres(_) => "postgres",
        }
    }

    /// Stores `event`; `Ok` means it is on disk.
    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.ingest(event).await,
            QueueStore::Postgres(s) => Box::pin(s.ingest(event)).await,
        }
    }

    /// Leases up to `limit` due deliveries of `route` to `destination` until `lease_until`,
    /// oldest due first, with their requests. An event whose lease ran out (its worker died) is due again.
    /// A lease alone is not an attempt: `attempts` is unchanged (see [`QueueStore::start`]),
    /// unless `start`: the caller holds a free delivery slot for each event and sends them
    /// at once, so the lease counts each one's attempt too (one operation, not two).
    pub async fn lease(
        &self,
        route_destination: (&str, &str),
        limit: usize,
        now: UnixMs,
        lease_until: UnixMs,
        start: bool,
    ) -> Result<Vec<Event>, QueueStoreError> {
        let rd = route_destination;
        match self {
            QueueStore::Embedded(s) => s.lease(rd, limit, now, lease_until, start).await,
            QueueStore::Postgres(s) => Box::pin(s.lease(rd, limit, now, lease_until, start)).await,
        }
    }

    /// Counts the attempt about to be made on `event` under its lease, and holds the lease
    /// until `lease_until`; returns the event's attempt count including this one. `None`:
    /// the lease is no longer this one's (it ran out and another worker took the event, or
    /// the event is settled, delivered or gone), and the attempt must not be made.
    pub async fn start(
        &self,
        event: &Event,
        lease_until: UnixMs,
    ) -> Result<Option<u32>, QueueStoreError> {
        let (id, lease) = (&event.id, event.lease.as_deref().unwrap_or_default());
        match self {
            QueueStore::Embedded(s) => s.start(id, lease, lease_until).await,
            QueueStore::Postgres(s) => Box::pin(s.start(id, lease, lease_until)).await,
        }
    }

    /// Extends each of `leases` (event id, lease token) that is still held to
    /// `lease_until`; returns how many were.
    pub async fn renew(
        &self,
        leases: Vec<(String, String)>,
        lease_until: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        match self {
            QueueStore::Embedded(s) => s.renew(leases, lease_until).await,
            QueueStore::Postgres(s) => Box::pin(s.renew(leases, lease_until)).await,
        }
    }

    /// Gives back each of `leases` that is still held: the event is due again at once for
    /// any worker (`queued` if it was never tried, else `retrying`); returns how many.
    pub async fn release(&self, leases: Vec<(String, String)>) -> Result<u64, QueueStoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        match self {
            QueueStore::Embedded(s) => s.release(leases).await,
            QueueStore::Postgres(s) => Box::pin(s.release(leases)).await,
        }
    }

    /// Records how an attempt ended; true if that changed the event. `Delivered` applies
    /// in any state but delivered (a 2xx wins); `Retry` and `Dead` only under the event's
    /// lease (false once it ran out and the event went to another worker).
    pub async fn settle(
        &self,
        event: &Event,
        settle: Settle,
        now: UnixMs,
    ) -> Result<bool, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.settle(event, settle, now).await,
            QueueStore::Postgres(s) => Box::pin(s.settle(event, settle, now)).await,
        }
    }

    /// The soonest time any pending delivery of `route` to `destination` is due, if it has
    /// any; for one being delivered, when its lease runs out.
    pub async fn next_due(
        &self,
        route_destination: (&str, &str),
    ) -> Result<Option<UnixMs>, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.next_due(route_destination).await,
            QueueStore::Postgres(s) => Box::pin(s.next_due(route_destination)).await,
        }
    }

    pub async fn list(&self, filter: Filter) -> Result<Vec<Event>, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.list(filter).await,
            QueueStore::Postgres(s) => Box::pin(s.list(filter)).await,
        }
    }

    /// Every delivery of event `id` (one per destination, by name; none if there is no
    /// such event).
    pub async fn get(&self, id: &str, with_body: bool) -> Result<Vec<Event>, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.get(id, with_body).await,
            QueueStore::Postgres(s) => Box::pin(s.get(id, with_body)).await,
        }
    }

    /// Makes event `id`'s dead (or retrying) deliveries (to `destination`, or to every
    /// destination) due now, with a fresh max age and a fresh `max_attempts` budget (their
    /// `attempts` stay what they are: attempts made); returns how many.
    pub async fn retry(
        &self,
        id: &str,
        destination: Option<&str>,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.retry(id, destination, now).await,
            QueueStore::Postgres(s) => Box::pin(s.retry(id, destination, now)).await,
        }
    }

    /// [`QueueStore::retry`] for every dead delivery of `route` (to `destination`, or to
    /// any); returns how many.
    pub async fn retry_dead(
        &self,
        route: &str,
        destination: Option<&str>,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.retry_dead(route, destination, now).await,
            QueueStore::Postgres(s) => Box::pin(s.retry_dead(route, destination, now)).await,
        }
    }

    /// Deletes event `id`'s deliveries (to `destination`, or to all) that are not being
    /// delivered right now; its request goes with the last of them. Returns how many went.
    pub async fn remove(
        &self,
        id: &str,
        destination: Option<&str>,
    ) -> Result<u64, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.remove(id, destination).await,
            QueueStore::Postgres(s) => Box::pin(s.remove(id, destination)).await,
        }
    }

    /// Pauses `route` (`destination` `""`: all of it) from `now`: its events are still
    /// stored, and none is delivered until it is resumed. True if it was not paused.
    pub async fn pause(
        &self,
        route: &str,
        destination: &str,
        now: UnixMs,
    ) -> Result<bool, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.pause(route, destination, now).await,
            QueueStore::Postgres(s) => Box::pin(s.pause(route, destination, now)).await,
        }
    }

    /// Ends a pause at `now`, in one operation with moving the route's pending events'
    /// ages past it (a pause does not age events into dead letters); when it had begun, or
    /// `None` if there was none.
    pub async fn resume(
        &self,
        route: &str,
        destination: &str,
        now: UnixMs,
    ) -> Result<Option<UnixMs>, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.resume(route, destination, now).await,
            QueueStore::Postgres(s) => Box::pin(s.resume(route, destination, now)).await,
        }
    }

    /// Every pause in place (every replica's, on a shared store).
    pub async fn pauses(&self) -> Result<Vec<Paused>, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.pauses().await,
            QueueStore::Postgres(s) => Box::pin(s.pauses()).await,
        }
    }

    /// Stores a new bulk replay job, running and unowned.
    pub async fn replay_create(&self, job: ReplayJob) -> Result<(), QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.replay_create(job).await,
            QueueStore::Postgres(s) => Box::pin(s.replay_create(job)).await,
        }
    }

    /// Takes the oldest running job that is unowned, `owner`'s, or whose owner's hold ran
    /// out (its process died), for `owner` until `until`.
    pub async fn replay_claim(
        &self,
        owner: &str,
        now: UnixMs,
        until: UnixMs,
    ) -> Result<Option<ReplayJob>, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.replay_claim(owner, now, until).await,
            QueueStore::Postgres(s) => Box::pin(s.replay_claim(owner, now, until)).await,
        }
    }

    /// Applies one batch of a job and its progress in one operation; false (nothing done)
    /// if the job is no longer the batch's owner's or no longer running (cancelled).
    pub async fn replay_batch(&self, batch: ReplayBatch) -> Result<bool, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.replay_batch(batch).await,
            QueueStore::Postgres(s) => Box::pin(s.replay_batch(batch)).await,
        }
    }

    /// Cancels a running job; false if there is none with that id running.
    pub async fn replay_cancel(&self, id: &str, now: UnixMs) -> Result<bool, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.replay_cancel(id, now).await,
            QueueStore::Postgres(s) => Box::pin(s.replay_cancel(id, now)).await,
        }
    }

    /// The latest 100 jobs, newest first.
    pub async fn replay_jobs(&self) -> Result<Vec<ReplayJob>, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.replay_jobs().await,
            QueueStore::Postgres(s) => Box::pin(s.replay_jobs()).await,
        }
    }

    /// Up to `limit` deliveries `spec` matches after `after` (event id, destination), in
    /// that order; with their requests if `with_body`.
    pub async fn replay_candidates(
        &self,
        spec: &ReplaySpec,
        after: (String, String),
        limit: usize,
        with_body: bool,
    ) -> Result<Vec<Event>, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.replay_candidates(spec, after, limit, with_body).await,
            QueueStore::Postgres(s) => {
                Box::pin(s.replay_candidates(spec, after, limit, with_body)).await
            }
        }
    }

    /// How many deliveries `spec` matches (events, when it has one target), before its
    /// filter.
    pub async fn replay_count(&self, spec: &ReplaySpec) -> Result<u64, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.replay_count(spec).await,
            QueueStore::Postgres(s) => Box::pin(s.replay_count(spec)).await,
        }
    }

    /// Deliveries of `route` (to `destination`, or to any) being sent or due by `now`.
    pub async fn pending(
        &self,
        route: &str,
        destination: Option<&str>,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.pending(route, destination, now).await,
            QueueStore::Postgres(s) => Box::pin(s.pending(route, destination, now)).await,
        }
    }

    /// Counts by route, destination and state, for every state but `delivered` and
    /// `filtered`.
    pub async fn depths(&self) -> Result<Vec<Depth>, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.depths().await,
            QueueStore::Postgres(s) => Box::pin(s.depths()).await,
        }
    }

    /// Deletes events whose every delivery is finished and past its retention (and their
    /// dedup window); returns how many deliveries went.
    pub async fn purge(
        &self,
        delivered_before: UnixMs,
        dead_before: UnixMs,
        now: UnixMs,
    ) -> Result<u64, QueueStoreError> {
        match self {
            QueueStore::Embedded(s) => s.purge(delivered_before, dead_before, now).await,
            QueueStore::Postgres(s) => Box::pin(s.purge(delivered_before, dead_before, now)).await,
        }
    }
}
