//! The queue on the admin listener: JSON endpoints to list, show, retry and drop events, and
//! the small HTTP client `hookgate queue …` uses to call them.
//!
//! ```text
//! GET    /queue/routes                                    per queued route: depth by state,
//!                                                         oldest age, leases, pacing
//! GET    /queue/routes/R                                  the same for one route
//! GET    /queue/events?route=R&state=S&after=ID&limit=N   list (no bodies), oldest id first
//! GET    /queue/events/ID[?body=true]                     one event; with the stored request
//! POST   /queue/events/ID/retry                           dead or retrying -> due now
//! POST   /queue/routes/R/retry-dead                       every dead event of a route
//! DELETE /queue/events/ID                                 drop (not while being delivered)
//! ```
//!
//! Every `/queue/` request needs `Authorization: Bearer <admin.token_file>` when a token is
//! configured (always, when the admin listener is not on loopback). An unknown route or
//! event is a 404 with a JSON `error`.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::config::Gateway;
use crate::delivery::event::{Event, State};
use crate::delivery::store::{Depth, Filter};
use crate::delivery::{unix_ms, Delivery, Queue, UnixMs};

/// Most events one list answer holds.
const MAX_LIMIT: usize = 1000;

/// Answers a `/queue/...` request.
pub async fn respond(
    queue: Option<&Queue>,
    // The configuration in force: the admin token, and which routes are queued.
    gateway: &Gateway,
    method: &Method,
    path: &str,
    query: Option<&str>,
    authorization: Option<&HeaderValue>,
) -> Response<Full<Bytes>> {
    if let Some(token) = &gateway.admin_token {
        if !token.admits(authorization) {
            let mut r = json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "missing or wrong bearer token (admin.token_file)"}),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hookgate-admin\""),
            );
            return r;
        }
    }
    let Some(queue) = queue else {
        return error(
            StatusCode::NOT_FOUND,
            "queued delivery is not configured (no queue_store)",
        );
    };
    let params: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // Segments are percent-decoded (once): route names are plain (`check` allows letters,
    // digits, `-`, `_`, `.`), event ids hex, but a client may still encode them.
    let Some(decoded) = path
        .trim_start_matches("/queue/")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Option<Vec<String>>>()
    else {
        return error(StatusCode::BAD_REQUEST, "bad percent-encoding in the path");
    };
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let now_ms = unix_ms(std::time::SystemTime::now());
    let result = match (method, segments.as_slice()) {
        (&Method::GET, ["events"]) => {
            let state = match param("state").map(|s| (s, State::parse(s))) {
                None => None,
                Some((_, Some(s))) => Some(s),
                Some((s, None)) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!(
                        "unknown state {s:?}: use queued, delivering, retrying, delivered or dead"
                    ),
                    )
                }
            };
            let limit = match param("limit").map(str::parse::<usize>) {
                None => 100,
                Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("limit must be 1 to {MAX_LIMIT}"),
                    )
                }
            };
            if let Some(route) = param("route") {
                match known_route(queue, gateway, route).await {
                    Ok(true) => {}
                    Ok(false) => return unknown_route(route),
                    Err(e) => return store_error(&e),
                }
            }
            let filter = Filter {
                route: param("route").map(str::to_owned),
                state,
                after: param("after").map(str::to_owned),
                limit,
            };
            queue.store.list(filter).await.map(|events| {
                let next = (events.len() == limit)
                    .then(|| events.last().map(|e| e.id.clone()))
                    .flatten();
                let list: Vec<Value> = events.iter().map(summary).collect();
                json_response(StatusCode::OK, &json!({"events": list, "next_after": next}))
            })
        }
        (&Method::GET, ["events", id]) => {
            let with_body = matches!(param("body"), Some("true" | "1"));
            queue.store.get(id, with_body).await.map(|e| match e {
                None => error(StatusCode::NOT_FOUND, "no such event"),
                Some(e) => json_response(StatusCode::OK, &detail(&e)),
            })
        }
        (&Method::POST, ["events", id, "retry"]) => {
            queue.store.retry(id, now_ms).await.map(|done| {
                if done {
                    queue.wake.notify_one();
                    tracing::info!(event = *id, "event retried from the admin API");
                    json_response(StatusCode::OK, &json!({"retried": 1}))
                } else {
                    error(
                        StatusCode::NOT_FOUND,
                        "no dead or retrying event with this id",
                    )
                }
            })
        }
        (&Method::GET, ["routes"]) => queue.store.depths().await.map(|depths| {
            json_response(
                StatusCode::OK,
                &routes(queue, gateway, &depths, None, now_ms),
            )
        }),
        (&Method::GET, ["routes", route]) => queue.store.depths().await.map(|depths| {
            let one = routes(queue, gateway, &depths, Some(route), now_ms);
            match one["routes"].as_array().and_then(|r| r.first()) {
                Some(r) => json_response(StatusCode::OK, r),
                None => unknown_route(route),
            }
        }),
        (&Method::POST, ["routes", route, "retry-dead"]) => {
            match known_route(queue, gateway, route).await {
                Ok(true) => {}
                Ok(false) => return unknown_route(route),
                Err(e) => return store_error(&e),
            }
            queue.store.retry_dead(route, now_ms).await.map(|n| {
                if n > 0 {
                    queue.wake.notify_one();
                    tracing::info!(
                        route = *route,
                        events = n,
                        "dead events retried from the admin API"
                    );
                }
                json_response(StatusCode::OK, &json!({"retried": n}))
            })
        }
        (&Method::DELETE, ["events", id]) => queue.store.remove(id).await.map(|done| {
            if done {
                tracing::info!(event = *id, "event dropped from the admin API");
                json_response(StatusCode::OK, &json!({"dropped": 1}))
            } else {
                error(
                    StatusCode::NOT_FOUND,
                    "no such event, or it is being delivered right now",
                )
            }
        }),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "unknown queue endpoint: GET /queue/routes, GET /queue/routes/ROUTE, \
                 GET /queue/events, GET /queue/events/ID, POST /queue/events/ID/retry, \
                 POST /queue/routes/ROUTE/retry-dead, DELETE /queue/events/ID",
            )
        }
    };
    result.unwrap_or_else(|e| store_error(&e))
}

fn store_error(e: &crate::delivery::StoreError) -> Response<Full<Bytes>> {
    tracing::error!(error = %e, "queue API: store error");
    error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

fn unknown_route(route: &str) -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        &format!("no queued route named {route:?} in the configuration or the store"),
    )
}

/// Whether `route` is a queued route of the configuration, or has events in the store (a
/// route that was queued before a reload).
async fn known_route(
    queue: &Queue,
    gateway: &Gateway,
    route: &str,
) -> Result<bool, crate::delivery::StoreError> {
    if crate::delivery::queued_route(gateway, route).is_some() {
        return Ok(true);
    }
    Ok(queue.store.depths().await?.iter().any(|d| d.route == route)
        || !queue
            .store
            .list(Filter {
                route: Some(route.to_owned()),
                limit: 1,
                ..Filter::default()
            })
            .await?
            .is_empty())
}

/// Each queued route (the configuration's, then any other the store holds events of; or
/// only `only`): its events by state (delivered ones are not counted: they are history),
/// the oldest pending event's age, the leases this process holds, and whether delivery is
/// held back because the app looks down.
fn routes(
    queue: &Queue,
    gateway: &Gateway,
    depths: &[Depth],
    only: Option<&str>,
    now_ms: UnixMs,
) -> Value {
    let mut names: Vec<(String, Option<usize>)> = gateway
        .routes
        .routes()
        .iter()
        .filter_map(|r| match &r.delivery {
            Delivery::Queued(p) => Some((r.name.clone(), Some(p.concurrency))),
            Delivery::Sync => None,
        })
        .collect();
    for d in depths {
        if !names.iter().any(|(n, _)| *n == d.route) {
            names.push((d.route.clone(), None));
        }
    }
    let list: Vec<Value> = names
        .into_iter()
        .filter(|(name, _)| only.is_none_or(|o| o == name))
        .map(|(name, concurrency)| {
            let mine: Vec<&Depth> = depths.iter().filter(|d| d.route == name).collect();
            let count = |state: State| {
                mine.iter()
                    .filter(|d| d.state == state)
                    .map(|d| d.count)
                    .sum::<u64>()
            };
            let oldest_pending = mine
                .iter()
                .filter(|d| d.state != State::Dead)
                .map(|d| d.oldest_received_ms)
                .min();
            let gate = queue.gate(&name);
            let pacing = gate.pacing();
            json!({
                "route": name,
                "configured": concurrency.is_some(),
                "concurrency": concurrency,
                "depth": {
                    "queued": count(State::Queued),
                    "delivering": count(State::Delivering),
                    "retrying": count(State::Retrying),
                    "dead": count(State::Dead),
                },
                "oldest_pending_age_seconds": oldest_pending
                    .map(|ms| now_ms.since(ms).as_secs()),
                "leased_here": gate.outstanding(),
                "app_down_since": pacing.down_since_ms.map_or(Value::Null, time),
                "held_back": pacing.down_since_ms.is_some(),
                "next_probe_at": pacing.next_probe_ms.map_or(Value::Null, time),
            })
        })
        .collect();
    json!({ "routes": list })
}

/// `%XX` sequences decoded to bytes, the result UTF-8; `None` if either fails.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes a path segment: everything but RFC 3986's unreserved characters.
pub fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn time(ms: impl Into<i64>) -> Value {
    match u64::try_from(ms.into()) {
        Ok(ms) => Value::String(
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
        ),
        Err(_) => Value::Null,
    }
}

/// What a listing shows of an event: never its body or headers.
fn summary(e: &Event) -> Value {
    json!({
        "id": e.id,
        "route": e.route,
        "state": e.state.as_str(),
        "received_at": time(e.received_ms),
        "next_attempt_at": match e.state {
            State::Queued | State::Retrying | State::Delivering => time(e.next_attempt_ms),
            _ => Value::Null,
        },
        "attempts": e.attempts,
        "finished_at": e.finished_ms.map_or(Value::Null, time),
        "last_status": e.last_status,
        "last_error": e.last_error,
        "dead_reason": e.dead_reason,
        "idempotency_key": e.idempotency_key,
        "body_bytes": e.body_len,
    })
}

/// One event in full: with the stored request when it was read with its body.
fn detail(e: &Event) -> Value {
    let mut v = summary(e);
    v["method"] = json!(e.method);
    v["target"] = json!(e.target);
    v["verified_key_index"] = json!(e.verified_key);
    // Attempts counted against `max_attempts` (those since an operator's last retry).
    v["attempts_since_retry"] = json!(e.attempts.saturating_sub(e.budget_from));
    if let Some(body) = &e.body {
        let headers: Vec<Value> = crate::delivery::event::decode_headers(&e.headers)
            .map(|h| {
                h.iter()
                    .map(|(n, v)| json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())]))
                    .collect()
            })
            .unwrap_or_default();
        v["headers"] = Value::Array(headers);
        match std::str::from_utf8(body) {
            Ok(text) => v["body"] = json!(text),
            Err(_) => {
                use base64::Engine as _;
                v["body_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
            }
        }
    }
    v
}

fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message }))
}

/// One call to the admin listener at `addr` (`host:port`), as `hookgate queue` makes it:
/// the status and the body.
pub async fn call(
    addr: &str,
    token: Option<&str>,
    method: Method,
    path_and_query: &str,
    timeout: Duration,
) -> Result<(StatusCode, String), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to the admin listener {addr}: {e}"))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("admin listener {addr}: {e}"))?;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, addr);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("bad request: {e}"))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("admin listener {addr}: {e}"))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024 * 1024)
            .collect()
            .await
            .map_err(|e| format!("admin listener {addr}: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        format!(
            "admin listener {addr}: no answer within {}",
            humantime::format_duration(timeout)
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_round_trip_through_percent_encoding() {
        for name in ["laso", "gh prod", "a/b", "ünï", "100%", "x+y"] {
            assert_eq!(percent_decode(&percent_encode(name)).as_deref(), Some(name));
        }
        assert_eq!(percent_encode("gh prod/1"), "gh%20prod%2F1");
        for bad in ["%", "%4", "%zz", "%ff"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }
}
