//! A stored request: what sync mode would have forwarded, kept until it is delivered.
//!
//! Headers are stored as `name: value\r\n` lines, exactly as they would be sent (values are
//! bytes: a header value may carry non-UTF-8 octets), so a row read with the `sqlite3` shell
//! or `psql` shows the request as the app will get it.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

pub use crate::delivery::state::State;
use crate::delivery::time::UnixMs;

/// An event about to be stored: one request, and one delivery per destination that takes
/// it.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Stable across attempts and destinations; the sender gets it in `Hookgate-Event-Id`.
    pub id: String,
    pub route: String,
    /// `replay::store_key` of the route's replay key, if the route has `replay:`: a second
    /// event with the same key is a duplicate, recognized in the insert itself.
    pub dedup_key: Option<String>,
    /// Until when the dedup key must be remembered: the route's `replay.ttl`.
    pub dedup_until: Option<UnixMs>,
    /// The event's own `Idempotency-Key` (from the route's replay key, else its id): a
    /// route's one destination gets it as it is, a named destination with its name after a
    /// `:` (each delivery carries its own); a `filtered` record keeps it, for a replay.
    pub idempotency_key: String,
    pub received_ms: UnixMs,
    /// The index of the key that verified the signature (`None` on an allowlist-only route).
    pub verified_key: Option<u32>,
    pub method: String,
    /// The request's path and query, as received (the destination's upstream base path is
    /// added at delivery, so a reload that moves the app applies to stored events too).
    pub target: String,
    /// Encoded with [`encode_headers`].
    pub headers: Vec<u8>,
    pub body: Bytes,
    /// Where it goes, in the route's order. Empty: no destination takes it; it is stored
    /// `filtered` (acknowledged, kept for an operator, never delivered).
    pub deliveries: Vec<NewDelivery>,
}

/// One destination's delivery of an event about to be stored.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    /// The destination's name ([`crate::delivery::state::WHOLE_ROUTE`] on a route with one
    /// `upstream:`).
    pub destination: String,
    /// Sent to that destination as `Idempotency-Key` on every attempt.
    pub idempotency_key: String,
    /// `Some`: stored already leased to this process with its first attempt starting now
    /// (`attempts` 1): the pipeline holds one of the destination's delivery slots and hands
    /// the event to the worker in memory, which sends it at once. `None`: stored `queued`,
    /// for a worker to lease.
    pub lease: Option<Lease>,
}

impl NewDelivery {
    /// The state it is stored in: leased to this process if it came with a lease, else
    /// queued.
    pub fn state(&self) -> State {
        if self.lease.is_some() {
            State::Delivering
        } else {
            State::Queued
        }
    }
}

/// A lease taken at ingest.
#[derive(Clone, Debug)]
pub struct Lease {
    pub token: String,
    pub until_ms: UnixMs,
}

impl NewEvent {
    /// The delivery to `d.destination` as the worker gets it when it was stored leased to
    /// this process, with the headers as they were before encoding (`head`), so they are not
    /// parsed again.
    pub fn leased_copy(&self, d: &NewDelivery, lease: &Lease, head: Option<HeaderMap>) -> Event {
        Event {
            id: self.id.clone(),
            route: self.route.clone(),
            destination: d.destination.clone(),
            idempotency_key: d.idempotency_key.clone(),
            state: State::Delivering,
            received_ms: self.received_ms,
            age_from_ms: self.received_ms,
            next_attempt_ms: self.received_ms,
            attempts: 1,
            budget_from: 0,
            replays: 0,
            finished_ms: None,
            last_status: None,
            last_error: None,
            dead_reason: None,
            verified_key: self.verified_key,
            method: self.method.clone(),
            target: self.target.clone(),
            headers: if head.is_some() {
                Vec::new()
            } else {
                self.headers.clone()
            },
            head,
            body: Some(self.body.clone()),
            body_len: self.body.len() as u64,
            lease: Some(lease.token.clone()),
        }
    }
}

/// One destination's delivery of a stored event, as read back: for delivery, or for an
/// operator. An event has one per destination that took it (or one `filtered` record).
#[derive(Clone, Debug)]
pub struct Event {
    pub id: String,
    pub route: String,
    /// [`crate::delivery::state::WHOLE_ROUTE`] on a route with one `upstream:`.
    pub destination: String,
    pub idempotency_key: String,
    pub state: State,
    pub received_ms: UnixMs,
    /// Where `max_age` counts from: the receive time, or when an operator last retried it.
    pub age_from_ms: UnixMs,
    pub next_attempt_ms: UnixMs,
    /// HTTP attempts made so far: each is counted when it starts (durably, before its first
    /// byte is sent), never for a lease alone. The app sees it as `Hookgate-Attempt`.
    pub attempts: u32,
    /// `attempts` when an operator last retried the event: `max_attempts` and the backoff
    /// count the attempts after it (0 if never retried).
    pub budget_from: u32,
    /// Times an operator replayed it (0: never): the app is told (`Hookgate-Replay`).
    pub replays: u32,
    pub finished_ms: Option<UnixMs>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// Why a dead letter is dead (`DeadReason::label`); `None` in every other state.
    pub dead_reason: Option<String>,
    pub verified_key: Option<u32>,
    pub method: String,
    pub target: String,
    /// The stored request: headers (encoded) and body, read only when asked for (delivery,
    /// `show --body`); empty and `None` otherwise.
    pub headers: Vec<u8>,
    pub body: Option<Bytes>,
    pub body_len: u64,
    /// The lease this copy was read under (delivery only): settling needs it, so a worker
    /// whose lease expired cannot settle another worker's attempt.
    pub lease: Option<String>,
    /// The headers already parsed (an event handed over in memory at ingest); `headers` is
    /// then empty.
    pub head: Option<HeaderMap>,
}

/// `name: value\r\n` per header, in the map's order (repeated names stay repeated).
pub fn encode_headers(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.len() * 32);
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The stored request is not one the gateway could have written.
#[derive(Debug, thiserror::Error)]
#[error("stored request unreadable: {0}")]
pub struct Unreadable(&'static str);

impl Unreadable {
    pub fn new(what: &'static str) -> Unreadable {
        Unreadable(what)
    }
}

/// Reads back what [`encode_headers`] wrote.
pub fn decode_headers(bytes: &[u8]) -> Result<HeaderMap, Unreadable> {
    let mut headers = HeaderMap::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(Unreadable("header line without CRLF"))?;
        let line = &rest[..end];
        rest = &rest[end + 2..];
        let colon = line
            .windows(2)
            .position(|w| w == b": ")
            .ok_or(Unreadable("header line without a name"))?;
        let name =
            HeaderName::from_bytes(&line[..colon]).map_err(|_| Unreadable("bad header name"))?;
        let value = HeaderValue::from_bytes(&line[colon + 2..])
            .map_err(|_| Unreadable("bad header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

impl Event {
    /// Whether its stored request (read with its body) matches a destination filter, as
    /// the request did at ingest: its headers, its body parsed strictly if it is JSON.
    pub fn taken_by(&self, filter: &crate::model::filter::Filter) -> bool {
        let headers = decode_headers(&self.headers).unwrap_or_default();
        let json = match (filter.reads_json(), self.body.as_deref()) {
            (true, Some(body)) => crate::scheme::json::parse_strict(body).ok(),
            _ => None,
        };
        filter.matches(&headers, json.as_ref())
    }

    /// The request head to send: method, target and headers, checked. Takes the parsed
    /// headers the event carries, if any.
    pub fn request_head(
        &mut self,
    ) -> Result<(Method, http::uri::PathAndQuery, HeaderMap), Unreadable> {
        let method =
            Method::from_bytes(self.method.as_bytes()).map_err(|_| Unreadable("bad method"))?;
        let target = http::uri::PathAndQuery::try_from(self.target.as_str())
            .map_err(|_| Unreadable("bad target"))?;
        let headers = match self.head.take() {
            Some(h) => h,
            None => decode_headers(&self.headers)?,
        };
        Ok((method, target, headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_with_repeats_and_opaque_bytes() {
        let mut h = HeaderMap::new();
        h.append("x-one", HeaderValue::from_static("a: b"));
        h.append("x-one", HeaderValue::from_static("second"));
        h.append("x-bin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        h.append("x-empty", HeaderValue::from_static(""));
        let encoded = encode_headers(&h);
        assert_eq!(decode_headers(&encoded).unwrap(), h);
    }

    #[test]
    fn damaged_header_text_is_unreadable_not_guessed() {
        for bad in [
            &b"x-a: 1"[..],
            b"no colon\r\n",
            b"bad name: 1\r\n",
            b"x-a: \x01\r\n",
        ] {
            assert!(decode_headers(bad).is_err(), "{bad:?}");
        }
    }
}
