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

    /// What one event's deliveries (one per destination) add up to, for a sender who sends
    /// it again: delivered once every destination has it (or none takes it), on its way
    /// while any delivery is, else dead.
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

/// Most events one purge call deletes (one store operation).
pub const PURGE_BATCH: u64 = 10_000;
