//! The SQL both engines run, where it is the same: the state names as SQL literals (from
//! [`State::as_str`], so a state is spelled once), the event's columns, and the statements
//! of the state machine whose text differs between SQLite and PostgreSQL only in how a
//! parameter is numbered (`?1` or `$1`: [`P`]).
//!
//! What differs stays in each engine: the schema (types), batch forms (`unnest` on
//! PostgreSQL, a statement per row on SQLite), `RETURNING` (SQLite builds an ephemeral table
//! for it), `FOR UPDATE SKIP LOCKED`, and which "pending" condition each engine's partial
//! index is written with (SQLite `finished_at IS NULL`, PostgreSQL `IN` the three pending
//! states: a query uses a partial index only when its condition is the index's).
//!
//! A row is one destination's delivery of an event: an event a route with three
//! destinations takes has three rows (one `id`, three `destination`s) and one stored
//! request. Statements that name one row name its id and destination, or its id and
//! lease: one lease call takes one destination's rows under one token, so an event id and a
//! token name one row.

use std::fmt;

use crate::delivery::state::{State, PURGE_BATCH};

/// A state as an SQL string literal: `'delivering'`.
pub struct Lit(pub State);

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.0.as_str())
    }
}

pub const QUEUED: Lit = Lit(State::Queued);
pub const DELIVERING: Lit = Lit(State::Delivering);
pub const RETRYING: Lit = Lit(State::Retrying);
pub const DELIVERED: Lit = Lit(State::Delivered);
pub const DEAD: Lit = Lit(State::Dead);
pub const FILTERED: Lit = Lit(State::Filtered);

/// How an engine numbers parameters: `'?'` for SQLite (`?1`), `'$'` for PostgreSQL (`$1`).
pub type P = char;

/// The event's columns, in the order each engine's `event_from` reads them.
pub const COLUMNS: &str = "id, route, idempotency_key, state, received_at, age_from, \
    next_attempt_at, attempts, finished_at, last_status, last_error, verified_key, method, \
    target, body_len, lease, dead_reason, budget_from, destination, replays";

/// Gives a lease back: the event is due again for any worker, `queued` if it was never
/// tried. Followed by the rows' condition.
pub fn release() -> String {
    format!(
        "UPDATE hookgate_events SET \
         state = CASE WHEN attempts = 0 THEN {QUEUED} ELSE {RETRYING} END, \
         lease = NULL, leased_until = NULL"
    )
}

/// The rows of `route`'s destination `p7` due at `p4` (a lease that ran out is due again),
/// oldest due first, at most `p5`; `pending` is the engine's condition for "not finished",
/// `key` the engine's name of a row (`seq` in SQLite, `(id, destination)` in PostgreSQL).
pub fn due(p: P, pending: &str, key: &str) -> String {
    format!(
        "SELECT {key} FROM hookgate_events \
         WHERE route = {p}3 AND destination = {p}7 AND {pending} AND next_attempt_at <= {p}4 \
         AND (state <> {DELIVERING} OR leased_until < {p}4) \
         ORDER BY next_attempt_at, received_at LIMIT {p}5"
    )
}

/// When the next pending delivery of `route` (`p1`) to destination `p2` is due: for one
/// being delivered, when its lease runs out.
pub fn next_due(p: P, pending: &str) -> String {
    format!(
        "SELECT min(CASE WHEN state = {DELIVERING} THEN leased_until \
         ELSE next_attempt_at END) FROM hookgate_events \
         WHERE route = {p}1 AND destination = {p}2 AND {pending}"
    )
}

/// Counts an attempt under event `p2`'s lease `p3` and holds the lease until `p1`.
pub fn start(p: P) -> String {
    format!(
        "UPDATE hookgate_events SET attempts = attempts + 1, leased_until = {p}1 \
         WHERE id = {p}2 AND state = {DELIVERING} AND lease = {p}3"
    )
}

/// Event `p3`'s delivery to destination `p4` delivered at `p1` with status `p2`: in any
/// state but delivered (a 2xx wins).
pub fn settle_delivered(p: P) -> String {
    format!(
        "UPDATE hookgate_events SET state = {DELIVERED}, finished_at = {p}1, \
         last_status = {p}2, last_error = NULL, dead_reason = NULL, \
         lease = NULL, leased_until = NULL \
         WHERE id = {p}3 AND destination = {p}4 AND state <> {DELIVERED}"
    )
}

/// Due again at `p1` after status `p2` and error `p3`: only under event `p4`'s lease `p5`.
pub fn settle_retry(p: P) -> String {
    format!(
        "UPDATE hookgate_events SET state = {RETRYING}, next_attempt_at = {p}1, \
         last_status = {p}2, last_error = {p}3, lease = NULL, leased_until = NULL \
         WHERE id = {p}4 AND state = {DELIVERING} AND lease = {p}5"
    )
}

/// Dead at `p1` after status `p2` and error `p3`, for reason `p4`: only under event `p5`'s
/// lease `p6`.
pub fn settle_dead(p: P) -> String {
    format!(
        "UPDATE hookgate_events SET state = {DEAD}, finished_at = {p}1, \
         last_status = {p}2, last_error = {p}3, dead_reason = {p}4, lease = NULL, \
         leased_until = NULL \
         WHERE id = {p}5 AND state = {DELIVERING} AND lease = {p}6"
    )
}

/// An operator's retry at `p1`: due now, a fresh max age and `max_attempts` budget. Followed
/// by the rows' condition.
pub fn retry(p: P) -> String {
    format!(
        "UPDATE hookgate_events SET state = {RETRYING}, next_attempt_at = {p}1, \
         age_from = {p}1, budget_from = attempts, finished_at = NULL, dead_reason = NULL"
    )
}

/// Whether row `r` is past its retention (delivered or filtered before `p1`, dead before
/// `p2`) and its dedup window (over at `p3`): true or false, never NULL.
fn past_retention(p: P, r: &str) -> String {
    format!(
        "({r}.finished_at IS NOT NULL \
         AND ((({r}.state = {DELIVERED} OR {r}.state = {FILTERED}) AND {r}.finished_at < {p}1) \
             OR ({r}.state = {DEAD} AND {r}.finished_at < {p}2)) \
         AND ({r}.dedup_until IS NULL OR {r}.dedup_until < {p}3))"
    )
}

/// The ids of at most [`PURGE_BATCH`] events every delivery of which is past its retention
/// (see [`past_retention`]): an event goes whole, once its last destination is done with it.
pub fn purgeable(p: P) -> String {
    format!(
        "SELECT DISTINCT e.id FROM hookgate_events e WHERE {this} \
         AND NOT EXISTS (SELECT 1 FROM hookgate_events o \
             WHERE o.id = e.id AND NOT {other}) LIMIT {PURGE_BATCH}",
        this = past_retention(p, "e"),
        other = past_retention(p, "o"),
    )
}

/// Pauses route `p1`'s destination `p2` (`''`: all of the route's) at `p3`; a pause already
/// in place keeps its start.
pub fn pause(p: P) -> String {
    format!(
        "INSERT INTO hookgate_pauses (route, destination, paused_at) VALUES ({p}1, {p}2, {p}3) \
         ON CONFLICT (route, destination) DO NOTHING"
    )
}

/// Ends the pause of route `p1`'s destination `p2`, giving when it began.
pub fn unpause(p: P) -> String {
    format!(
        "DELETE FROM hookgate_pauses WHERE route = {p}1 AND destination = {p}2 \
         RETURNING paused_at"
    )
}

/// The values [`unpause_ages`] reads, as each engine's statement writes them.
pub struct Resumed<'a> {
    pub now: &'a str,
    pub since: &'a str,
    pub route: &'a str,
    /// The destination resumed ([`crate::delivery::state::WHOLE_ROUTE`]: all of them).
    pub destination: &'a str,
}

/// On resuming at `now` the route's events paused `since`: their age leaves out the time
/// they spent paused, so a pause does not age them into dead letters (`max_age` counts
/// time the gateway could deliver). An event that came during the pause ages from now.
/// `pending` is the engine's condition for "not finished"; `greatest` its name of the
/// two-argument maximum (`max` in SQLite, `GREATEST` in PostgreSQL).
pub fn unpause_ages(r: &Resumed<'_>, pending: &str, greatest: &str) -> String {
    let Resumed {
        now,
        since,
        route,
        destination,
    } = r;
    format!(
        "UPDATE hookgate_events SET age_from = age_from + ({now} - {greatest}(age_from, {since})) \
         WHERE route = {route} AND ({destination} = '' OR destination = {destination}) \
         AND {pending} AND age_from < {now} AND {since} < {now}"
    )
}

/// The table of bulk replays, the same in both engines but for integer types (`int`).
pub fn replays_table(int: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS hookgate_replays (
    id                 TEXT PRIMARY KEY,
    route              TEXT NOT NULL,
    source             TEXT,
    target             TEXT,
    since_ms           {int} NOT NULL,
    until_ms           {int} NOT NULL,
    states             TEXT NOT NULL,
    filter             TEXT,
    matched            {int} NOT NULL,
    replayed           {int} NOT NULL DEFAULT 0,
    skipped            {int} NOT NULL DEFAULT 0,
    cursor_id          TEXT NOT NULL DEFAULT '',
    cursor_destination TEXT NOT NULL DEFAULT '',
    state              TEXT NOT NULL,
    error              TEXT,
    owner              TEXT,
    owned_until        {int},
    created_at         {int} NOT NULL,
    finished_at        {int}
);"
    )
}

/// A replay job's columns, in the order each engine's `job_from` reads them.
pub const JOB_COLUMNS: &str = "id, route, source, target, since_ms, until_ms, states, filter, \
    matched, replayed, skipped, cursor_id, cursor_destination, state, error, owner, \
    owned_until, created_at, finished_at";

/// The latest jobs, newest first: the 100 the queue API lists.
pub fn replay_jobs() -> String {
    format!("SELECT {JOB_COLUMNS} FROM hookgate_replays ORDER BY created_at DESC LIMIT 100")
}

/// A new job: `p1`..`p9` are its id, route, source, target, since, until, states, filter
/// and matched; `p10` when it was made.
pub fn replay_create(p: P) -> String {
    format!(
        "INSERT INTO hookgate_replays (id, route, source, target, since_ms, until_ms, states, \
         filter, matched, state, created_at) \
         VALUES ({p}1, {p}2, {p}3, {p}4, {p}5, {p}6, {p}7, {p}8, {p}9, 'running', {p}10)"
    )
}

/// The condition of a running job owner `p1` may take at `p2`: unowned, its own, or one
/// whose owner's hold ran out (its process died).
pub fn replay_claimable(p: P) -> String {
    format!("state = 'running' AND (owner IS NULL OR owner = {p}1 OR owned_until < {p}2)")
}

/// Ends running job `p1` as cancelled at `p2`.
pub fn replay_cancel(p: P) -> String {
    format!(
        "UPDATE hookgate_replays SET state = 'cancelled', finished_at = {p}2, owner = NULL \
         WHERE id = {p}1 AND state = 'running'"
    )
}

/// The deliveries a replay looks at, after the cursor (`p5`, `p6`), in id order: of route
/// `p1` (to destination `p2`, or any), received in `[p3, p4)`, in one of `states`; at most
/// `p7`.
pub fn replay_candidates(p: P, states: &[State], text: &str) -> String {
    format!(
        "SELECT {COLUMNS} FROM hookgate_events \
         WHERE route = {p}1 AND ({p}2{text} IS NULL OR destination = {p}2) \
         AND received_at >= {p}3 AND received_at < {p}4 AND state IN ({states}){finished} \
         AND (id, destination) > ({p}5, {p}6) \
         ORDER BY id, destination LIMIT {p}7",
        states = state_list(states),
        finished = finished_since(p, states),
    )
}

/// For finished states only (what a replay takes): `finished_at >= since` (`p3`), true of
/// every such row received since then, so the store reads the rows finished since `since`
/// (its finished-rows index) rather than all of the route's.
fn finished_since(p: P, states: &[State]) -> String {
    if !states.is_empty() && states.iter().all(|s| s.is_finished()) {
        format!(" AND finished_at IS NOT NULL AND finished_at >= {p}3")
    } else {
        String::new()
    }
}

/// How many deliveries [`replay_candidates`] would go through (events, with one target:
/// each is replayed once whatever destinations it went to).
pub fn replay_count(p: P, states: &[State], text: &str, events: bool) -> String {
    format!(
        "SELECT count({what}) FROM hookgate_events \
         WHERE route = {p}1 AND ({p}2{text} IS NULL OR destination = {p}2) \
         AND received_at >= {p}3 AND received_at < {p}4 AND state IN ({states}){finished}",
        what = if events { "DISTINCT id" } else { "*" },
        states = state_list(states),
        finished = finished_since(p, states),
    )
}

/// `'delivered', 'dead'`: states as SQL literals (an empty list matches nothing).
fn state_list(states: &[State]) -> String {
    if states.is_empty() {
        return "NULL".into();
    }
    states
        .iter()
        .map(|s| Lit(*s).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes event `p2`'s finished delivery to destination `p3` due again at `p1`, as an
/// operator's retry does, and counts the replay (the app is told: `Hookgate-Replay`). A
/// delivery still on its way is left as it is.
pub fn replay_reset(p: P) -> String {
    format!(
        "UPDATE hookgate_events SET state = {RETRYING}, next_attempt_at = {p}1, \
         age_from = {p}1, budget_from = attempts, finished_at = NULL, dead_reason = NULL, \
         replays = replays + 1 \
         WHERE id = {p}2 AND destination = {p}3 AND finished_at IS NOT NULL"
    )
}

/// Deliveries of route `p1` (to destination `p2`, or to any) the worker has to send now:
/// being delivered, or due by `p3` (not those waiting out a retry's backoff).
pub fn pending_count(p: P, pending: &str, text: &str) -> String {
    format!(
        "SELECT count(*) FROM hookgate_events \
         WHERE route = {p}1 AND ({p}2{text} IS NULL OR destination = {p}2) AND {pending} \
         AND (state = {DELIVERING} OR next_attempt_at <= {p}3)"
    )
}

/// Every pause in place.
pub const PAUSES: &str =
    "SELECT route, destination, paused_at FROM hookgate_pauses ORDER BY route, destination";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_literal_is_its_name_quoted() {
        for state in State::ALL {
            assert_eq!(Lit(state).to_string(), format!("'{}'", state.as_str()));
        }
    }

    #[test]
    fn parameters_are_numbered_as_each_engine_does() {
        assert!(start('?').contains("leased_until = ?1 WHERE id = ?2"));
        assert!(start('$').contains("leased_until = $1 WHERE id = $2"));
        assert!(purgeable('?').ends_with("LIMIT 10000"));
    }
}
