//! The queue store's vocabulary, shared by the dispatch (`store.rs`), both engines
//! (`embedded.rs`, `postgres.rs`) and their callers: where an event is ([`State`]), how an
//! attempt ends ([`Settle`]), what an ingest did, what a listing asks for, and the store's
//! errors. It sits below all of them, so the engines never import the dispatch that imports
//! them. The state machine itself is drawn in `store.rs`.

use crate::delivery::retry::DeadReason;
use crate::delivery::time::UnixMs;

/// Where an event is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Stored, not yet tried.
    Queued,
    /// Leased by a delivery worker right now.
    Delivering,
    /// Tried, failed, due again at `next_attempt_ms`.
    Retrying,
    /// The app answered 2xx; kept for the retention, then purged.
    Delivered,
    /// A dead letter: refused for good, or too old. Kept until retried, dropped or purged.
    Dead,
    /// Taken by none of the route's destinations (their filters): acknowledged and kept
    /// for the delivered retention, for an operator to see and replay, never delivered.
    Filtered,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Queued,
        State::Delivering,
        State::Retrying,
        State::Delivered,
        State::Dead,
        State::Filtered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Delivering => "delivering",
            State::Retrying => "retrying",
            State::Delivered => "delivered",
            State::Dead => "dead",
            State::Filtered => "filtered",
        }
    }

    /// Whether it is over: nothing more will be tried unless an operator says so.
    pub fn is_finished(self) -> bool {
        matches!(self, State::Delivered | State::Dead | State::Filtered)
    }

    /// What one event's deliveries (one per destination, read in destination order) add up
    /// to, for a sender who sends it again: delivered once every destination has it (or
    /// none takes it), on its way while any delivery is (the first such one's state), else
    /// dead.
    pub fn of_event(states: impl IntoIterator<Item = State>) -> State {
        let mut summary = State::Delivered;
        for state in states {
            summary = match (summary, state) {
                (_, State::Delivered | State::Filtered) => summary,
                (State::Delivered | State::Dead, pending) if !pending.is_finished() => pending,
                (State::Delivered, State::Dead) => State::Dead,
                _ => summary,
            };
        }
        summary
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueStoreError {
    /// The engine failed (disk full, I/O error, database down).
    #[error("queue store: {0}")]
    Engine(String),
    /// No answer in time: the writer is behind or the disk stalls.
    #[error("queue store timed out")]
    Timeout,
    /// The store is closed (shutting down).
    #[error("queue store closed")]
    Closed,
    /// The store cannot be opened as configured.
    #[error("queue store: {0}")]
    Open(String),
}

/// What storing an event did.
#[derive(Debug, PartialEq, Eq)]
pub enum Ingested {
    /// On disk now.
    Stored,
    /// An event with the same dedup key is already stored: its id and where it is now
    /// (delivered, or still on its way), for the sender's answer.
    Duplicate { id: String, state: State },
}

/// How an attempt ends for the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settle {
    Delivered {
        status: u16,
    },
    Retry {
        at_ms: UnixMs,
        status: Option<u16>,
        error: String,
    },
    Dead {
        reason: DeadReason,
        status: Option<u16>,
        error: String,
    },
}

impl Settle {
    /// The `outcome` label of `hookgate_delivery_attempts_total` (and of the log line).
    pub fn outcome(&self) -> &'static str {
        match self {
            Settle::Delivered { .. } => "delivered",
            Settle::Retry { .. } => "retry",
            Settle::Dead { .. } => "dead",
        }
    }
}

/// Which events to list.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub route: Option<String>,
    pub destination: Option<String>,
    pub state: Option<State>,
    /// Only deliveries that sort after this event id and destination (paging).
    pub after: Option<(String, String)>,
    pub limit: usize,
}

/// Events of one route in one state, for the depth and age gauges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Depth {
    pub route: String,
    pub destination: String,
    pub state: State,
    pub count: u64,
    /// When the oldest of them was received.
    pub oldest_received_ms: UnixMs,
}

/// A pause an operator put in place: nothing of `route` (or only of its `destination`; `""`:
/// every destination) is delivered until it is resumed; events are still taken and stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paused {
    pub route: String,
    pub destination: String,
    pub since: UnixMs,
}

/// The destination of a route with one `upstream:` (every route before `destinations:`),
/// and of a `filtered` record: a pause of it is a pause of the whole route.
pub const WHOLE_ROUTE: &str = "";

/// The most body bytes one page of replay candidates read with their requests holds
/// (always at least one row): a filter test or a filtered replay reads stored requests in
/// pages this size, whatever the routes' body limits.
pub const CANDIDATE_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// Most events one purge call deletes (one store operation).
pub const PURGE_BATCH: u64 = 10_000;

/// What a bulk replay sends again: the deliveries of `route` (to `source`, or to any
/// destination) received in `[since, until)` and now in one of `states`, whose stored request
/// matches `filter`, each to its own destination or to `target` (another destination of the
/// route: staging, or one whose filter left the event out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplaySpec {
    pub route: String,
    pub source: Option<String>,
    pub target: Option<String>,
    pub since: UnixMs,
    pub until: UnixMs,
    pub states: Vec<State>,
    /// A destination filter in its YAML form (compiled by whoever runs the job).
    pub filter: Option<String>,
}

/// Where a replay job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    Done,
    Cancelled,
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Running,
        JobState::Done,
        JobState::Cancelled,
        JobState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|j| j.as_str() == s)
    }
}

/// A bulk replay, as the store keeps it: one process runs it at a time (its `owner`, until
/// `owned_until`), marking deliveries due in batches; each batch and the job's progress are
/// one store operation, so a process that dies leaves a cursor the next one resumes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayJob {
    pub id: String,
    pub spec: ReplaySpec,
    /// Deliveries the spec matched when the job was made (the dry run's count).
    pub matched: u64,
    /// Deliveries made due again so far.
    pub replayed: u64,
    /// Matched but not sent again: still on their way already, or for a destination the
    /// configuration no longer has, or left out by the filter.
    pub skipped: u64,
    /// The last delivery done: event id and destination.
    pub cursor: (String, String),
    pub state: JobState,
    pub error: Option<String>,
    pub owner: Option<String>,
    pub owned_until: Option<UnixMs>,
    pub created: UnixMs,
    pub finished: Option<UnixMs>,
}

/// One delivery a replay batch makes due again: event `id`'s delivery to `destination`,
/// made from its delivery to `from` (the same destination, or another whose row is copied)
/// with `idempotency_key` if it is new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayMark {
    pub id: String,
    pub from: String,
    pub destination: String,
    pub idempotency_key: String,
}

/// A batch of a replay job: what to mark, where the job is after it, and whether it ends
/// the job.
#[derive(Clone, Debug)]
pub struct ReplayBatch {
    pub job: String,
    pub owner: String,
    pub marks: Vec<ReplayMark>,
    pub skipped: u64,
    pub cursor: (String, String),
    /// Ends the job: done, or (with `error`) failed.
    pub done: bool,
    pub error: Option<String>,
    pub now: UnixMs,
    /// The job stays this process's until then.
    pub owned_until: UnixMs,
}
