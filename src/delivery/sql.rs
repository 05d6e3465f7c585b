//! The SQL both engines run, where it is the same: the state names as SQL literals (from
//! [`State::as_str`], so a state is spelled once), the event's columns, and the statements
//! of the state machine whose text differs between SQLite and PostgreSQL only in how a
//! parameter is numbered (`?1` or `$1`: [`P`]).
//!
//! What differs stays in each engine: the schema (types), batch forms (`unnest` on
//! PostgreSQL, a statement per row on SQLite), `RETURNING` (SQLite builds an ephemeral table
//! for it), `FOR UPDATE SKIP LOCKED`, and which "pending" condition each engine's partial
//! index is written with (SQLite `NOT IN` two states, PostgreSQL `IN` three: a query uses a
//! partial index only when its condition is the index's).

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

/// How an engine numbers parameters: `'?'` for SQLite (`?1`), `'$'` for PostgreSQL (`$1`).
pub type P = char;

/// The event's columns, in the order each engine's `event_from` reads them.
pub const COLUMNS: &str = "id, route, idempotency_key, state, received_at, age_from, \
    next_attempt_at, attempts, finished_at, last_status, last_error, verified_key, method, \
    target, body_len, lease, dead_reason, budget_from";

/// Finished events (delivered or dead), as both engines' `hookgate_events_finished` index
/// says it.
pub fn finished() -> String {
    format!("state IN ({DELIVERED}, {DEAD})")
}

/// Gives a lease back: the event is due again for any worker, `queued` if it was never
/// tried. Followed by the rows' condition.
pub fn release() -> String {
    format!(
        "UPDATE hookgate_events SET \
         state = CASE WHEN attempts = 0 THEN {QUEUED} ELSE {RETRYING} END, \
         lease = NULL, leased_until = NULL"
    )
}

/// The ids of `route`'s events due at `p4` (a lease that ran out is due again), oldest due
/// first, at most `p5`; `pending` is the engine's condition for "not finished".
pub fn due(p: P, pending: &str) -> String {
    format!(
        "SELECT id FROM hookgate_events \
         WHERE route = {p}3 AND {pending} AND next_attempt_at <= {p}4 \
         AND (state <> {DELIVERING} OR leased_until < {p}4) \
         ORDER BY next_attempt_at, received_at LIMIT {p}5"
    )
}

/// When `route`'s (`p1`) next pending event is due: for one being delivered, when its lease
/// runs out.
pub fn next_due(p: P, pending: &str) -> String {
    format!(
        "SELECT min(CASE WHEN state = {DELIVERING} THEN leased_until \
         ELSE next_attempt_at END) FROM hookgate_events \
         WHERE route = {p}1 AND {pending}"
    )
}

/// Counts an attempt under event `p2`'s lease `p3` and holds the lease until `p1`.
pub fn start(p: P) -> String {
    format!(
        "UPDATE hookgate_events SET attempts = attempts + 1, leased_until = {p}1 \
         WHERE id = {p}2 AND state = {DELIVERING} AND lease = {p}3"
    )
}

/// Delivered at `p1` with status `p2`: in any state but delivered (a 2xx wins).
pub fn settle_delivered(p: P) -> String {
    format!(
        "UPDATE hookgate_events SET state = {DELIVERED}, finished_at = {p}1, \
         last_status = {p}2, last_error = NULL, dead_reason = NULL, \
         lease = NULL, leased_until = NULL \
         WHERE id = {p}3 AND state <> {DELIVERED}"
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

/// The ids of at most [`PURGE_BATCH`] finished events past their retention (delivered
/// before `p1`, dead before `p2`) whose dedup window is over at `p3`.
pub fn purgeable(p: P) -> String {
    format!(
        "SELECT id FROM hookgate_events \
         WHERE ((state = {DELIVERED} AND finished_at < {p}1) \
             OR (state = {DEAD} AND finished_at < {p}2)) \
         AND (dedup_until IS NULL OR dedup_until < {p}3) LIMIT {PURGE_BATCH}"
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
}

/// On resuming at `now` the route's events paused `since`: their age leaves out the time
/// they spent paused, so a pause does not age them into dead letters (`max_age` counts
/// time the gateway could deliver). An event that came during the pause ages from now.
/// `pending` is the engine's condition for "not finished"; `greatest` its name of the
/// two-argument maximum (`max` in SQLite, `GREATEST` in PostgreSQL).
pub fn unpause_ages(r: &Resumed<'_>, pending: &str, greatest: &str) -> String {
    let Resumed { now, since, route } = r;
    format!(
        "UPDATE hookgate_events SET age_from = age_from + ({now} - {greatest}(age_from, {since})) \
         WHERE route = {route} AND {pending} AND age_from < {now} AND {since} < {now}"
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
        assert_eq!(finished(), "state IN ('delivered', 'dead')");
    }

    #[test]
    fn parameters_are_numbered_as_each_engine_does() {
        assert!(start('?').contains("leased_until = ?1 WHERE id = ?2"));
        assert!(start('$').contains("leased_until = $1 WHERE id = $2"));
        assert!(purgeable('?').ends_with("LIMIT 10000"));
    }
}
