//! Bulk replays: an operator's "send again everything this destination got in the last
//! hour", run as a job the store keeps (`hookgate_replays`), so that it survives the process
//! that started it.
//!
//! - **Made with its count.** The admin API counts what a spec matches (a dry run answers
//!   only that), then stores the job, running and unowned.
//! - **One process runs it.** Every process looks for a job it may take once a second
//!   ([`run`]); it holds the job for [`HOLD`], renewed with each batch. A process that dies
//!   leaves its hold to run out; the next one resumes from the job's cursor.
//! - **In batches, behind the destination.** Each batch makes up to [`BATCH`] matching
//!   deliveries due again, in event-id order, and records the job's progress in the same
//!   store operation, so the job's numbers are exactly what was done. A batch is made only
//!   while the destination's pending deliveries are under twice its concurrency: the
//!   worker then sends them at the destination's concurrency and rate limit, live traffic
//!   goes first, and a cancel stops the replay within one window.
//! - **What is sent again.** A finished delivery (delivered, dead, or a filtered record
//!   with a target) is made due at once, with a fresh `max_age` and `max_attempts` budget
//!   and its replay counted (the app sees `Hookgate-Replay: N` beside the original
//!   `Idempotency-Key`). A delivery still on its way is left alone (skipped). To another
//!   destination of the same route, the event gets a delivery there (with that
//!   destination's own key); never to an arbitrary URL.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::delivery::event::{Event, State};
use crate::delivery::store::{ReplayBatch, ReplayJob, ReplayMark, ReplaySpec, WHOLE_ROUTE};
use crate::delivery::{queued_route, Queue, UnixMs};
use crate::metrics::{Metrics, StoreOp};
use crate::model::filter::Filter;
use crate::model::QueuePolicy;
use crate::runtime::{Clock, ConfigSlot};

/// How long a process holds a job between two batches before another may take it.
pub const HOLD: Duration = Duration::from_secs(15);
/// Most deliveries one batch makes due.
pub const BATCH: usize = 200;
/// How often a process looks for a job to run.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Runs the jobs this process may take, one at a time, until `shutdown` turns true.
pub async fn run(
    queue: Arc<Queue>,
    live: Arc<ConfigSlot>,
    metrics: Arc<Metrics>,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let owner = crate::request_id::unique_hex();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let now = UnixMs::from(clock());
        let job = match queue.store.replay_claim(&owner, now, now.after(HOLD)).await {
            Ok(Some(job)) => job,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "queue store: cannot look for replay jobs");
                metrics.queue.store_error(StoreOp::Replay);
                continue;
            }
        };
        tracing::info!(
            job = job.id.as_str(),
            route = job.spec.route.as_str(),
            matched = job.matched,
            replayed = job.replayed,
            "replay job running"
        );
        let runner = Runner {
            queue: &queue,
            live: &live,
            metrics: &metrics,
            clock,
            owner: &owner,
        };
        runner.run_job(job, &shutdown).await;
    }
}

/// What running a job needs.
struct Runner<'a> {
    queue: &'a Queue,
    live: &'a ConfigSlot,
    metrics: &'a Metrics,
    clock: Clock,
    owner: &'a str,
}

/// How a batch ended the loop of [`Runner::run_job`].
enum Step {
    /// More to do.
    Again,
    /// The job is over (done, failed, cancelled, or taken by another process).
    Over,
}

impl Runner<'_> {
    /// Runs `job` batch by batch until it is done, cancelled, failed, or this process is
    /// shutting down (then its hold runs out, and the job is resumed by whoever takes it).
    async fn run_job(&self, job: ReplayJob, shutdown: &watch::Receiver<bool>) {
        let filter = match job
            .spec
            .filter
            .as_deref()
            .map(crate::config::compile::parse_filter)
        {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                self.end(&job, job.cursor.clone(), Some(e)).await;
                return;
            }
        };
        let mut cursor = job.cursor.clone();
        let mut last_marked: Option<String> = None;
        while !*shutdown.borrow() {
            match self
                .batch(&job, filter.as_ref(), &mut cursor, &mut last_marked)
                .await
            {
                Step::Again => {}
                Step::Over => return,
            }
        }
    }

    /// One batch: waits while the destination is busy, reads what comes after the cursor,
    /// marks what is to be sent again.
    async fn batch(
        &self,
        job: &ReplayJob,
        filter: Option<&Filter>,
        cursor: &mut (String, String),
        last_marked: &mut Option<String>,
    ) -> Step {
        let spec = &job.spec;
        let current = self.live.load_full();
        let Some((_, policy)) = queued_route(&current.gateway, &spec.route) else {
            let why = "the route is not queued in the configuration in force".to_owned();
            return self.end(job, cursor.clone(), Some(why)).await;
        };
        if let Some(target) = spec.target.as_deref() {
            if policy.destination(target).is_none() {
                let why = format!("the route has no destination {target:?} any more");
                return self.end(job, cursor.clone(), Some(why)).await;
            }
        }
        let room = match self.room(spec, policy).await {
            Some(room) if room > 0 => room,
            // Busy, or the store cannot say: keep the job, look again shortly.
            _ => return self.keep(job, cursor).await,
        };
        let limit = room.min(BATCH);
        let store = &self.queue.store;
        let rows = match store
            .replay_candidates(spec, cursor.clone(), limit, filter.is_some())
            .await
        {
            Ok(rows) => rows,
            Err(e) => return self.trouble(&e).await,
        };
        // The last rows' pages come back short of the limit (or empty).
        let done = rows.is_empty();
        // Where the job will be once this batch is recorded; until then, nothing moves: a
        // batch the store did not take is read and made again.
        let mut marked = last_marked.clone();
        let (marks, skipped) = marks(&rows, spec, policy, filter, &mut marked);
        let next = rows
            .last()
            .map_or_else(|| cursor.clone(), |r| (r.id.clone(), r.destination.clone()));
        let batch = ReplayBatch {
            marks,
            skipped,
            done,
            ..self.batch_at(job, next.clone())
        };
        let (step, recorded) = self.apply(job, batch).await;
        if recorded {
            *cursor = next;
            *last_marked = marked;
        }
        step
    }

    /// How many more deliveries may be made due now: twice the concurrency of the
    /// destinations the job sends to (at least 10, at most 1000 in all), less what they
    /// have to send now (deliveries waiting out a retry's backoff do not hold it back).
    async fn room(&self, spec: &ReplaySpec, policy: &QueuePolicy) -> Option<usize> {
        let to = spec.target.as_deref().or(spec.source.as_deref());
        let window: usize = policy
            .destinations
            .iter()
            .filter(|d| to.is_none_or(|t| t == d.name))
            .map(|d| d.pace.concurrency * 2)
            .sum::<usize>()
            .clamp(10, 1000);
        let now = UnixMs::from((self.clock)());
        match self.queue.store.pending(&spec.route, to, now).await {
            Ok(pending) => Some(window.saturating_sub(usize::try_from(pending).unwrap_or(0))),
            Err(e) => {
                self.trouble(&e).await;
                None
            }
        }
    }

    /// Records a batch; the worker is woken for what it made due. Whether the store took
    /// it (else nothing of it was done).
    async fn apply(&self, job: &ReplayJob, batch: ReplayBatch) -> (Step, bool) {
        let (done, marked) = (batch.done, batch.marks.len());
        match self.queue.store.replay_batch(batch).await {
            Ok(true) => {
                if marked > 0 {
                    self.queue.wake.notify_one();
                }
                if done {
                    tracing::info!(job = job.id.as_str(), "replay job done");
                    return (Step::Over, true);
                }
                (Step::Again, true)
            }
            Ok(false) => {
                tracing::info!(
                    job = job.id.as_str(),
                    "replay job cancelled (or taken over); stopping"
                );
                (Step::Over, false)
            }
            Err(e) => (self.trouble(&e).await, false),
        }
    }

    /// A batch of `job` that leaves it at `cursor`, marks nothing, and holds it for
    /// another [`HOLD`]; the other batches are this with their own fields.
    fn batch_at(&self, job: &ReplayJob, cursor: (String, String)) -> ReplayBatch {
        let now = UnixMs::from((self.clock)());
        ReplayBatch {
            job: job.id.clone(),
            owner: self.owner.to_owned(),
            marks: Vec::new(),
            skipped: 0,
            cursor,
            done: false,
            error: None,
            now,
            owned_until: now.after(HOLD),
        }
    }

    /// Keeps holding the job while the destination is busy.
    async fn keep(&self, job: &ReplayJob, cursor: &(String, String)) -> Step {
        let (step, _) = self.apply(job, self.batch_at(job, cursor.clone())).await;
        // The destination is busy: look again in a while, not in a spin.
        tokio::time::sleep(Duration::from_millis(500)).await;
        step
    }

    /// Ends the job: failed with `error`, or done.
    async fn end(&self, job: &ReplayJob, cursor: (String, String), error: Option<String>) -> Step {
        if let Some(e) = &error {
            tracing::warn!(
                job = job.id.as_str(),
                error = e.as_str(),
                "replay job failed"
            );
        }
        let batch = self.batch_at(job, cursor);
        let batch = ReplayBatch {
            done: true,
            error,
            // Let go at once.
            owned_until: batch.now,
            ..batch
        };
        self.apply(job, batch).await;
        Step::Over
    }

    /// A store error: logged, counted, and the batch tried again after a pause (the hold
    /// may run out meanwhile; whoever takes the job resumes it from its cursor).
    async fn trouble(&self, e: &crate::delivery::QueueStoreError) -> Step {
        tracing::warn!(error = %e, "queue store: a replay batch failed; trying again");
        self.metrics.queue.store_error(StoreOp::Replay);
        tokio::time::sleep(Duration::from_secs(1)).await;
        Step::Again
    }
}

/// What to make due among `rows`, and how many are skipped: each row's delivery goes to
/// `spec.target` (or its own destination) if the route has that destination, the row is
/// not a filtered record going nowhere, and its request matches `filter`; with one target,
/// an event once (`last_marked`: the last event marked, across batches).
fn marks(
    rows: &[Event],
    spec: &ReplaySpec,
    policy: &QueuePolicy,
    filter: Option<&Filter>,
    last_marked: &mut Option<String>,
) -> (Vec<ReplayMark>, u64) {
    let mut marks = Vec::new();
    let mut skipped = 0;
    let mut seen: HashSet<&str> = HashSet::new();
    for row in rows {
        let destination = spec.target.as_deref().unwrap_or(&row.destination);
        let once = spec.target.is_none()
            || (last_marked.as_deref() != Some(row.id.as_str()) && seen.insert(&row.id));
        let goes = policy.destination(destination).is_some()
            && !(row.state == State::Filtered && spec.target.is_none())
            && filter.is_none_or(|f| row.taken_by(f));
        if !(once && goes) {
            skipped += 1;
            continue;
        }
        *last_marked = Some(row.id.clone());
        marks.push(ReplayMark {
            id: row.id.clone(),
            from: row.destination.clone(),
            destination: destination.to_owned(),
            idempotency_key: crate::delivery::destination_key(&event_key(row), destination),
        });
    }
    (marks, skipped)
}

/// The event's own key, from one of its deliveries' (`key`, or `key:destination`).
fn event_key(row: &Event) -> String {
    if row.destination == WHOLE_ROUTE {
        return row.idempotency_key.clone();
    }
    let suffix = format!(":{}", row.destination);
    row.idempotency_key
        .strip_suffix(&suffix)
        .unwrap_or(&row.idempotency_key)
        .to_owned()
}
