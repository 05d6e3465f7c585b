//! The queue on the admin listener: JSON endpoints to list, show, retry and drop events
//! ([`respond`], one function per endpoint), and the small HTTP client `hookgate queue …` uses
//! to call them ([`Call`], [`Client`], [`call`], [`Answer`]).
//!
//! ```text
//! GET    /queue/routes                                    per queued route: depth by state,
//!                                                         oldest age, leases, pacing
//! GET    /queue/routes/R                                  the same for one route
//! GET    /queue/events?route=R&destination=D&state=S&after=C&limit=N
//!                                                         list deliveries (no bodies), by id
//! GET    /queue/events/ID[?body=true]                     one event and its deliveries
//! POST   /queue/events/ID/retry[?destination=D]           dead or retrying -> due now
//! POST   /queue/routes/R/retry-dead[?destination=D]       every dead event of a route
//! POST   /queue/routes/R/pause[?destination=D]            store its events, deliver none
//! POST   /queue/routes/R/resume[?destination=D]           deliver again (what waited, too)
//! DELETE /queue/events/ID[?destination=D]                drop (not while being delivered)
//! POST   /queue/replays?route=R&since=1h[&until=T][&destination=D][&to=T]
//!               [&state=delivered,dead][&filter=YAML][&dry_run=true]
//!                                                         count, then start a bulk replay
//! GET    /queue/replays                                   the latest jobs and their progress
//! GET    /queue/replays/ID                                one job
//! POST   /queue/replays/ID/cancel                         stop it (what was sent stays sent)
//! GET    /queue/filter-test?route=R&filter=YAML|destination=D[&since=1h][&limit=N]
//!                                                         a filter run on stored events
//! ```
//!
//! An event has one delivery per destination that took it (one `filtered` record if none
//! did); `destination` names one of them, and without it a call acts on all of them.
//!
//! Every `/queue/` request needs `Authorization: Bearer <admin.token_file>` when a token is
//! configured (always, when the admin listener is not on loopback). An unknown route or
//! event is a 404 with a JSON `error`.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::config::ConfigErrors;
use crate::delivery::event::{Event, State};
use crate::delivery::store::{Depth, Filter, JobState, Paused, ReplayJob, ReplaySpec, WHOLE_ROUTE};
use crate::delivery::table::View;
use crate::delivery::{Queue, QueueStoreError, UnixMs};
use crate::model::{Delivery, Gateway};

/// The address a client on this host connects to for an admin listener bound to `addr`: an
/// unspecified address (0.0.0.0, ::) is reached on loopback.
pub fn local_target(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Most events one list answer holds.
const MAX_LIMIT: usize = 1000;

/// Answers a `/queue/...` request: checks the token, then hands it to its endpoint.
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
            return unauthorized();
        }
    }
    let Some(queue) = queue else {
        return error(
            StatusCode::NOT_FOUND,
            "queued delivery is not configured (no queue_store)",
        );
    };
    let params = Params::parse(query);
    let Some(decoded) = segments(path) else {
        return error(StatusCode::BAD_REQUEST, "bad percent-encoding in the path");
    };
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let now_ms = UnixMs::from(std::time::SystemTime::now());
    let result = match (method, segments.as_slice()) {
        (&Method::GET, ["routes"]) => all_routes(queue, gateway, now_ms).await,
        (&Method::GET, ["routes", route]) => one_route(queue, gateway, route, now_ms).await,
        (&Method::POST, ["routes", route, "retry-dead"]) => {
            retry_dead(queue, gateway, route, params.get("destination"), now_ms).await
        }
        (&Method::POST, ["routes", route, "pause"]) => {
            let target = (*route, params.get("destination").unwrap_or(WHOLE_ROUTE));
            pause(queue, gateway, target, now_ms).await
        }
        (&Method::POST, ["routes", route, "resume"]) => {
            let target = (*route, params.get("destination").unwrap_or(WHOLE_ROUTE));
            resume(queue, gateway, target, now_ms).await
        }
        (&Method::GET, ["events"]) => list_events(queue, gateway, &params).await,
        (&Method::GET, ["events", id]) => show_event(queue, id, &params).await,
        (&Method::POST, ["events", id, "retry"]) => {
            retry_event(queue, id, params.get("destination"), now_ms).await
        }
        (&Method::DELETE, ["events", id]) => drop_event(queue, id, params.get("destination")).await,
        (&Method::POST, ["replays"]) => start_replay(queue, gateway, &params, now_ms).await,
        (&Method::GET, ["replays"]) => replay_jobs(queue, None).await,
        (&Method::GET, ["replays", id]) => replay_jobs(queue, Some(id)).await,
        (&Method::POST, ["replays", id, "cancel"]) => cancel_replay(queue, id, now_ms).await,
        (&Method::GET, ["filter-test"]) => filter_test(queue, gateway, &params, now_ms).await,
        _ => Ok(error(
            StatusCode::NOT_FOUND,
            "unknown queue endpoint: GET /queue/routes, GET /queue/routes/ROUTE, \
             GET /queue/events, GET /queue/events/ID, POST /queue/events/ID/retry, \
             POST /queue/routes/ROUTE/retry-dead, POST /queue/routes/ROUTE/pause, \
             POST /queue/routes/ROUTE/resume, DELETE /queue/events/ID, POST /queue/replays, \
             GET /queue/replays, GET /queue/replays/ID, POST /queue/replays/ID/cancel",
        )),
    };
    result.unwrap_or_else(|e| store_error(&e))
}

/// An endpoint's answer; a store error becomes a 503 in [`respond`].
type Answered = Result<Response<Full<Bytes>>, QueueStoreError>;

fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "missing or wrong bearer token (admin.token_file)"}),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"hookgate-admin\""),
    );
    r
}

/// The path's segments after `/queue/`, percent-decoded (once): route names are plain
/// (`check` allows letters, digits, `-`, `_`, `.`), event ids hex, but a client may still
/// encode them. `None` if one does not decode.
fn segments(path: &str) -> Option<Vec<String>> {
    path.trim_start_matches("/queue/")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

/// The query's parameters, decoded.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>) -> Params {
        Params(
            query
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    /// The first value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET /queue/routes`
async fn all_routes(queue: &Queue, gateway: &Gateway, now_ms: UnixMs) -> Answered {
    let depths = queue.store.depths().await?;
    let pauses = queue.store.pauses().await?;
    Ok(json_response(
        StatusCode::OK,
        &routes(queue, gateway, (&depths, &pauses), None, now_ms),
    ))
}

/// `GET /queue/routes/R`
async fn one_route(queue: &Queue, gateway: &Gateway, route: &str, now_ms: UnixMs) -> Answered {
    let depths = queue.store.depths().await?;
    let pauses = queue.store.pauses().await?;
    let one = routes(queue, gateway, (&depths, &pauses), Some(route), now_ms);
    Ok(match one["routes"].as_array().and_then(|r| r.first()) {
        Some(r) => json_response(StatusCode::OK, r),
        None => unknown_route(route),
    })
}

/// `POST /queue/routes/R/retry-dead`
async fn retry_dead(
    queue: &Queue,
    gateway: &Gateway,
    route: &str,
    destination: Option<&str>,
    now_ms: UnixMs,
) -> Answered {
    if !known_route(queue, gateway, route).await? {
        return Ok(unknown_route(route));
    }
    let n = queue.store.retry_dead(route, destination, now_ms).await?;
    if n > 0 {
        queue.wake.notify_one();
        tracing::info!(
            route,
            destination,
            events = n,
            "dead events retried from the admin API"
        );
    }
    Ok(json_response(StatusCode::OK, &json!({"retried": n})))
}

/// `POST /queue/routes/R/pause[?destination=D]`: a queued route (or one of its
/// destinations) of the configuration only (a typo pauses nothing). The pause is stored
/// first, then this process stops starting attempts at once; other replicas see it within
/// a second.
async fn pause(
    queue: &Queue,
    gateway: &Gateway,
    (route, destination): (&str, &str),
    now_ms: UnixMs,
) -> Answered {
    if crate::delivery::queued_route(gateway, route).is_none() {
        return Ok(unknown_route(route));
    }
    if destination != WHOLE_ROUTE
        && crate::delivery::queued_destination(gateway, route, destination).is_none()
    {
        return Ok(error(
            StatusCode::NOT_FOUND,
            &format!("route {route:?} has no destination {destination:?} in the configuration"),
        ));
    }
    let paused_now = queue.store.pause(route, destination, now_ms).await?;
    let pauses = queue.store.pauses().await?;
    let since = pauses
        .iter()
        .find(|p| p.route == route && p.destination == destination)
        .map_or(now_ms, |p| p.since);
    queue.pauses_changed(&pauses);
    if paused_now {
        tracing::warn!(
            route,
            destination,
            "delivery paused from the admin API; events are still stored"
        );
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"route": route, "destination": destination, "paused": true,
                "changed": paused_now, "paused_since": time(since.as_i64())}),
    ))
}

/// `POST /queue/routes/R/resume[?destination=D]`: what waited is delivered at the
/// destination's concurrency, its age not counting the pause.
async fn resume(
    queue: &Queue,
    gateway: &Gateway,
    (route, destination): (&str, &str),
    now_ms: UnixMs,
) -> Answered {
    if !known_route(queue, gateway, route).await? {
        return Ok(unknown_route(route));
    }
    let since = queue.store.resume(route, destination, now_ms).await?;
    queue.pauses_changed(&queue.store.pauses().await?);
    queue.wake.notify_one();
    if let Some(since) = since {
        tracing::warn!(
            route,
            destination,
            paused_seconds = now_ms.since(since).as_secs(),
            "delivery resumed from the admin API"
        );
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"route": route, "destination": destination, "paused": false,
                "changed": since.is_some(),
                "was_paused_since": since.map_or(Value::Null, |s| time(s.as_i64()))}),
    ))
}

/// `GET /queue/events?route=R&state=S&after=ID&limit=N`
async fn list_events(queue: &Queue, gateway: &Gateway, params: &Params) -> Answered {
    let filter = match list_filter(params) {
        Ok(filter) => filter,
        Err(message) => return Ok(error(StatusCode::BAD_REQUEST, &message)),
    };
    if let Some(route) = &filter.route {
        if !known_route(queue, gateway, route).await? {
            return Ok(unknown_route(route));
        }
    }
    let limit = filter.limit;
    let events = queue.store.list(filter).await?;
    let next = (events.len() == limit)
        .then(|| events.last().map(cursor))
        .flatten();
    let list: Vec<Value> = events.iter().map(summary).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"events": list, "next_after": next}),
    ))
}

/// A listing's filter from its query, or why the query is wrong.
fn list_filter(params: &Params) -> Result<Filter, String> {
    let state = match params.get("state").map(|s| (s, State::parse(s))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((s, None)) => {
            return Err(format!(
                "unknown state {s:?}: use queued, delivering, retrying, delivered, dead or filtered"
            ))
        }
    };
    let limit = match params.get("limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return Err(format!("limit must be 1 to {MAX_LIMIT}")),
    };
    Ok(Filter {
        route: params.get("route").map(str::to_owned),
        destination: params.get("destination").map(str::to_owned),
        state,
        after: params
            .get("after")
            .map(|after| match after.split_once('/') {
                Some((id, destination)) => (id.to_owned(), destination.to_owned()),
                None => (after.to_owned(), String::new()),
            }),
        limit,
    })
}

/// Where a listing goes on after `e`: its id, and its destination after a `/` (ids are
/// hex, so the two never mix).
fn cursor(e: &Event) -> String {
    if e.destination.is_empty() {
        e.id.clone()
    } else {
        format!("{}/{}", e.id, e.destination)
    }
}

/// `GET /queue/events/ID[?body=true]`
async fn show_event(queue: &Queue, id: &str, params: &Params) -> Answered {
    let with_body = matches!(params.get("body"), Some("true" | "1"));
    let deliveries = queue.store.get(id, with_body).await?;
    let Some(first) = deliveries.first() else {
        return Ok(error(StatusCode::NOT_FOUND, "no such event"));
    };
    // The event (its request, and its first delivery's fields, as before destinations),
    // then each delivery.
    let mut event = detail(first);
    event["deliveries"] = deliveries.iter().map(summary).collect();
    Ok(json_response(StatusCode::OK, &event))
}

/// `POST /queue/events/ID/retry[?destination=D]`
async fn retry_event(
    queue: &Queue,
    id: &str,
    destination: Option<&str>,
    now_ms: UnixMs,
) -> Answered {
    let n = queue.store.retry(id, destination, now_ms).await?;
    if n == 0 {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "no dead or retrying event with this id (and destination)",
        ));
    }
    queue.wake.notify_one();
    tracing::info!(event = id, destination, "event retried from the admin API");
    Ok(json_response(StatusCode::OK, &json!({"retried": n})))
}

/// `DELETE /queue/events/ID[?destination=D]`
async fn drop_event(queue: &Queue, id: &str, destination: Option<&str>) -> Answered {
    let n = queue.store.remove(id, destination).await?;
    if n == 0 {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "no such event (or destination), or it is being delivered right now",
        ));
    }
    tracing::info!(event = id, destination, "event dropped from the admin API");
    Ok(json_response(StatusCode::OK, &json!({"dropped": n})))
}

/// `POST /queue/replays?…`: the spec checked against the configuration, what it matches
/// counted (through its filter, if it has one), and, unless `dry_run`, the job stored for
/// a process to run.
async fn start_replay(
    queue: &Queue,
    gateway: &Gateway,
    params: &Params,
    now_ms: UnixMs,
) -> Answered {
    let spec = match replay_spec(gateway, params, now_ms) {
        Ok(spec) => spec,
        Err(why) => return Ok(error(StatusCode::BAD_REQUEST, &why)),
    };
    let matched = match &spec.filter {
        None => queue.store.replay_count(&spec).await?,
        Some(text) => {
            let filter =
                crate::config::compile::parse_filter(text).map_err(QueueStoreError::Engine)?;
            count_through(queue, &spec, &filter).await?
        }
    };
    let dry_run = matches!(params.get("dry_run"), Some("true" | "1"));
    if dry_run {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"dry_run": true, "matched": matched, "spec": spec_json(&spec)}),
        ));
    }
    let job = ReplayJob {
        id: crate::request_id::unique_hex(),
        spec,
        matched,
        replayed: 0,
        skipped: 0,
        cursor: (String::new(), String::new()),
        state: JobState::Running,
        error: None,
        owner: None,
        owned_until: None,
        created: now_ms,
        finished: None,
    };
    queue.store.replay_create(job.clone()).await?;
    tracing::warn!(
        job = job.id.as_str(),
        route = job.spec.route.as_str(),
        matched,
        "bulk replay started from the admin API"
    );
    Ok(json_response(StatusCode::ACCEPTED, &job_json(&job)))
}

/// Stored events read at once, with their requests, by a filter test or a filtered count
/// (fewer when their bodies pass the store's page budget).
const PAGE: usize = 100;

/// How many of what `spec` matches pass `filter` (read in pages, with their requests).
async fn count_through(
    queue: &Queue,
    spec: &ReplaySpec,
    filter: &crate::model::filter::Filter,
) -> Result<u64, QueueStoreError> {
    let mut seen: Option<String> = None;
    let mut n = 0;
    each_stored(queue, spec, |row| {
        // With one target, an event counts once.
        let counted = spec.target.is_some() && seen.as_deref() == Some(row.id.as_str());
        if !counted && row.taken_by(filter) {
            n += 1;
            seen = Some(row.id.clone());
        }
        true
    })
    .await?;
    Ok(n)
}

/// Goes through what `spec` matches, a page of rows with their requests at a time, in id
/// order, until `visit` says stop (false) or there is no more.
async fn each_stored(
    queue: &Queue,
    spec: &ReplaySpec,
    mut visit: impl FnMut(&Event) -> bool,
) -> Result<(), QueueStoreError> {
    let mut cursor = (String::new(), String::new());
    loop {
        let rows = queue
            .store
            .replay_candidates(spec, cursor.clone(), PAGE, true)
            .await?;
        for row in &rows {
            if !visit(row) {
                return Ok(());
            }
        }
        match rows.last() {
            Some(last) => cursor = (last.id.clone(), last.destination.clone()),
            None => return Ok(()),
        }
    }
}

/// A replay's spec from its query, checked against the configuration in force.
fn replay_spec(gateway: &Gateway, params: &Params, now_ms: UnixMs) -> Result<ReplaySpec, String> {
    let route = params.get("route").ok_or("give route=")?;
    let Some((_, policy)) = crate::delivery::queued_route(gateway, route) else {
        return Err(format!(
            "no queued route named {route:?} in the configuration"
        ));
    };
    let known = |name: &str| policy.destination(name).is_some();
    let source = params.get("destination").map(str::to_owned);
    let target = params.get("to").map(str::to_owned);
    for name in source.iter().chain(&target) {
        if !known(name) {
            return Err(format!(
                "route {route:?} has no destination {name:?}; a replay goes only to a \
                 configured destination"
            ));
        }
    }
    let since = params
        .get("since")
        .ok_or("give since= (1h, or an RFC 3339 time)")?;
    let since = when(since, now_ms).ok_or("since: a duration (1h) or an RFC 3339 time")?;
    let until = match params.get("until") {
        None => now_ms.after(Duration::from_millis(1)),
        Some(u) => when(u, now_ms).ok_or("until: a duration (10m) or an RFC 3339 time")?,
    };
    if until <= since {
        return Err("until is not after since".into());
    }
    let states: Vec<State> = match params.get("state") {
        None => vec![State::Delivered, State::Dead],
        Some(list) => list
            .split(',')
            .map(|s| State::parse(s.trim()).ok_or(format!("unknown state {s:?}")))
            .collect::<Result<_, _>>()?,
    };
    if let Some(pending) = states.iter().find(|s| !s.is_finished()) {
        return Err(format!(
            "state {}: a replay sends again what is finished (delivered, dead, filtered); \
             what is {} is still on its way",
            pending.as_str(),
            pending.as_str()
        ));
    }
    if states.contains(&State::Filtered) && target.is_none() {
        return Err(
            "a filtered event went to no destination: give to= the one to send it to".into(),
        );
    }
    let filter = params.get("filter").map(str::to_owned);
    if let Some(f) = &filter {
        crate::config::compile::parse_filter(f)?;
    }
    Ok(ReplaySpec {
        route: route.to_owned(),
        source,
        target,
        since,
        until,
        states,
        filter,
    })
}

/// `1h` (that long before `now`) or an RFC 3339 time.
fn when(text: &str, now: UnixMs) -> Option<UnixMs> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return Some(now.before(ago));
    }
    humantime::parse_rfc3339_weak(text).ok().map(UnixMs::from)
}

/// `GET /queue/replays[/ID]`
async fn replay_jobs(queue: &Queue, id: Option<&str>) -> Answered {
    let jobs = queue.store.replay_jobs().await?;
    Ok(match id {
        None => json_response(
            StatusCode::OK,
            &json!({"replays": jobs.iter().map(job_json).collect::<Vec<_>>()}),
        ),
        Some(id) => match jobs.iter().find(|j| j.id == id) {
            Some(job) => json_response(StatusCode::OK, &job_json(job)),
            None => error(
                StatusCode::NOT_FOUND,
                "no such replay job (among the latest 100)",
            ),
        },
    })
}

/// `POST /queue/replays/ID/cancel`
async fn cancel_replay(queue: &Queue, id: &str, now_ms: UnixMs) -> Answered {
    if !queue.store.replay_cancel(id, now_ms).await? {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "no running replay job with this id",
        ));
    }
    tracing::warn!(job = id, "bulk replay cancelled from the admin API");
    let jobs = queue.store.replay_jobs().await?;
    Ok(match jobs.iter().find(|j| j.id == id) {
        Some(job) => json_response(StatusCode::OK, &job_json(job)),
        // Cancelled, though older than the latest 100 jobs listed.
        None => json_response(StatusCode::OK, &json!({"id": id, "state": "cancelled"})),
    })
}

/// `GET /queue/filter-test?…`: a filter (given, or a destination's) run on the route's
/// stored events received since `since` (default 24h), up to `limit` events (default 1000,
/// at most 10000): how many it takes, and some of each.
async fn filter_test(
    queue: &Queue,
    gateway: &Gateway,
    params: &Params,
    now_ms: UnixMs,
) -> Answered {
    let filter = match test_filter(gateway, params) {
        Ok(f) => f,
        Err(why) => return Ok(error(StatusCode::BAD_REQUEST, &why)),
    };
    let since = match when(params.get("since").unwrap_or("24h"), now_ms) {
        Some(t) => t,
        None => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "since: a duration (1h) or an RFC 3339 time",
            ))
        }
    };
    let limit = match params.get("limit").map(str::parse::<usize>) {
        None => 1000,
        Some(Ok(n)) if (1..=10_000).contains(&n) => n,
        Some(_) => return Ok(error(StatusCode::BAD_REQUEST, "limit must be 1 to 10000")),
    };
    let spec = ReplaySpec {
        route: params.get("route").unwrap_or_default().to_owned(),
        source: None,
        target: None,
        since,
        until: now_ms.after(Duration::from_millis(1)),
        states: State::ALL.to_vec(),
        filter: None,
    };
    let mut last = String::new();
    let (mut taken, mut left) = (Vec::new(), Vec::new());
    each_stored(queue, &spec, |row| {
        // One verdict per event, whatever its deliveries.
        if row.id != last {
            last = row.id.clone();
            let verdict = if row.taken_by(&filter) {
                &mut taken
            } else {
                &mut left
            };
            verdict.push(row.id.clone());
        }
        taken.len() + left.len() < limit
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"route": spec.route, "examined": taken.len() + left.len(),
                "matched": taken.len(), "not_matched": left.len(),
                "matched_ids": &taken[..taken.len().min(20)],
                "not_matched_ids": &left[..left.len().min(20)]}),
    ))
}

/// The filter a filter test runs: `filter=` (YAML), or the configured one of
/// `destination=`, on a queued route of the configuration.
fn test_filter(gateway: &Gateway, params: &Params) -> Result<crate::model::filter::Filter, String> {
    let route = params.get("route").ok_or("give route=")?;
    let Some((_, policy)) = crate::delivery::queued_route(gateway, route) else {
        return Err(format!(
            "no queued route named {route:?} in the configuration"
        ));
    };
    match (params.get("filter"), params.get("destination")) {
        (Some(text), None) => crate::config::compile::parse_filter(text),
        (None, Some(d)) => match policy.destination(d) {
            Some(dest) => Ok(dest
                .filter
                .clone()
                .unwrap_or(crate::model::filter::Filter::All(Vec::new()))),
            None => Err(format!("route {route:?} has no destination {d:?}")),
        },
        _ => Err("give filter= (YAML) or destination= (its configured filter)".into()),
    }
}

fn spec_json(spec: &ReplaySpec) -> Value {
    json!({
        "route": spec.route,
        "destination": spec.source,
        "to": spec.target,
        "since": time(spec.since.as_i64()),
        "until": time(spec.until.as_i64()),
        "states": spec.states.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "filter": spec.filter,
    })
}

fn job_json(j: &ReplayJob) -> Value {
    json!({
        "id": j.id,
        "spec": spec_json(&j.spec),
        "state": j.state.as_str(),
        "matched": j.matched,
        "replayed": j.replayed,
        "skipped": j.skipped,
        "error": j.error,
        "running_on": j.owner,
        "created_at": time(j.created.as_i64()),
        "finished_at": j.finished.map_or(Value::Null, |f| time(f.as_i64())),
    })
}

fn store_error(e: &QueueStoreError) -> Response<Full<Bytes>> {
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
) -> Result<bool, QueueStoreError> {
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
/// only `only`), with each of its destinations: events by state (delivered ones are not
/// counted: they are history), the oldest pending event's age, the leases this process
/// holds, and whether delivery is held back because the app looks down, broken off by the
/// breaker, or paused by an operator (as the store says: every replica's pause). The
/// route's own fields add up its destinations'.
fn routes(
    queue: &Queue,
    gateway: &Gateway,
    (depths, pauses): (&[Depth], &[Paused]),
    only: Option<&str>,
    now_ms: UnixMs,
) -> Value {
    let mut names: Vec<(String, Vec<Named>)> = gateway
        .routes
        .routes()
        .iter()
        .filter_map(|r| match &r.delivery {
            Delivery::Queued(p) => Some((
                r.name.clone(),
                p.destinations
                    .iter()
                    .map(|d| (d.name.clone(), Some(d.pace.concurrency)))
                    .collect(),
            )),
            Delivery::Sync => None,
        })
        .collect();
    for d in depths {
        match names.iter_mut().find(|(n, _)| *n == d.route) {
            Some((_, dests)) if dests.iter().any(|(n, _)| *n == d.destination) => {}
            Some((_, dests)) => dests.push((d.destination.clone(), None)),
            None => names.push((d.route.clone(), vec![(d.destination.clone(), None)])),
        }
    }
    let list: Vec<Value> = names
        .into_iter()
        .filter(|(name, _)| only.is_none_or(|o| o == name))
        .map(|(name, dests)| {
            let views: Vec<Value> = dests
                .iter()
                .map(|(d, concurrency)| {
                    let at = (name.as_str(), d.as_str(), *concurrency);
                    destination_view(queue, at, (depths, pauses), now_ms)
                })
                .collect();
            route_view(&name, views, pauses)
        })
        .collect();
    json!({ "routes": list })
}

/// A destination's name, and its concurrency if it is configured.
type Named = (String, Option<usize>);

/// One destination of a route, as [`routes`] shows it.
fn destination_view(
    queue: &Queue,
    (route, destination, concurrency): (&str, &str, Option<usize>),
    (depths, pauses): (&[Depth], &[Paused]),
    now_ms: UnixMs,
) -> Value {
    let mine: Vec<&Depth> = depths
        .iter()
        .filter(|d| d.route == route && d.destination == destination)
        .collect();
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
    let gate = queue.gate(route, destination);
    let pacing = gate.pacing();
    let breaker = gate.breaker();
    let paused = pauses
        .iter()
        .filter(|p| {
            p.route == route && (p.destination == WHOLE_ROUTE || p.destination == destination)
        })
        .map(|p| p.since.as_i64())
        .min();
    json!({
        "destination": destination,
        "configured": concurrency.is_some(),
        "concurrency": concurrency,
        "depth": {
            "queued": count(State::Queued),
            "delivering": count(State::Delivering),
            "retrying": count(State::Retrying),
            "dead": count(State::Dead),
        },
        "oldest_pending_age_seconds": oldest_pending.map(|ms| now_ms.since(ms).as_secs()),
        "leased_here": gate.outstanding(),
        "app_down_since": pacing.down_since_ms.map_or(Value::Null, time),
        "held_back": pacing.down_since_ms.is_some(),
        "next_probe_at": pacing.next_probe_ms.map_or(Value::Null, time),
        "paused_since": paused.map_or(Value::Null, time),
        "breaker": breaker.0.label(),
        "breaker_since": breaker.1.map_or(Value::Null, |s| time(s.as_i64())),
    })
}

/// A route as [`routes`] shows it: its destinations, and what they add up to (a route with
/// one destination reads as that destination).
fn route_view(name: &str, dests: Vec<Value>, pauses: &[Paused]) -> Value {
    let sum = |f: &dyn Fn(&Value) -> Option<u64>| dests.iter().filter_map(f).sum::<u64>();
    let earliest = |key: &str| {
        dests
            .iter()
            .filter(|d| !d[key].is_null())
            .min_by_key(|d| d[key].as_str().map(str::to_owned))
            .map_or(Value::Null, |d| d[key].clone())
    };
    // The worst breaker: open, then half-open, then closed.
    let rank = |d: &&Value| match d["breaker"].as_str() {
        Some("open") => 0,
        Some("half_open") => 1,
        _ => 2,
    };
    let worst = dests.iter().min_by_key(rank);
    let configured = dests.iter().any(|d| d["configured"] == Value::Bool(true));
    let route_pause = pauses
        .iter()
        .find(|p| p.route == name && p.destination == WHOLE_ROUTE);
    json!({
        "route": name,
        "configured": configured,
        "concurrency": configured.then(|| sum(&|d| d["concurrency"].as_u64())),
        "depth": {
            "queued": sum(&|d| d["depth"]["queued"].as_u64()),
            "delivering": sum(&|d| d["depth"]["delivering"].as_u64()),
            "retrying": sum(&|d| d["depth"]["retrying"].as_u64()),
            "dead": sum(&|d| d["depth"]["dead"].as_u64()),
        },
        "oldest_pending_age_seconds": dests
            .iter()
            .filter_map(|d| d["oldest_pending_age_seconds"].as_u64())
            .max(),
        "leased_here": sum(&|d| d["leased_here"].as_u64()),
        "app_down_since": earliest("app_down_since"),
        "held_back": dests.iter().any(|d| d["held_back"] == Value::Bool(true)),
        "next_probe_at": earliest("next_probe_at"),
        "paused_since": match (route_pause, dests.as_slice()) {
            (Some(p), _) => time(p.since.as_i64()),
            (None, [one]) => one["paused_since"].clone(),
            (None, _) => Value::Null,
        },
        "breaker": worst.map_or(json!("closed"), |d| d["breaker"].clone()),
        "breaker_since": worst.map_or(Value::Null, |d| d["breaker_since"].clone()),
        "destinations": dests,
    })
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
        "destination": e.destination,
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
        "replays": e.replays,
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

/// What `hookgate queue` asks of the API above: one endpoint each. `destination` narrows a
/// call to one destination of a route (all of them without it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Every queued route, or only `route`.
    Routes {
        route: Option<String>,
    },
    List {
        route: Option<String>,
        destination: Option<String>,
        state: Option<String>,
        limit: usize,
        after: Option<String>,
    },
    Show {
        id: String,
        body: bool,
    },
    Retry {
        id: String,
        destination: Option<String>,
    },
    RetryDead {
        route: String,
        destination: Option<String>,
    },
    Pause {
        route: String,
        destination: Option<String>,
    },
    Resume {
        route: String,
        destination: Option<String>,
    },
    Drop {
        id: String,
        destination: Option<String>,
    },
    Replay(ReplayCall),
    /// The latest replay jobs, or one.
    Replays {
        id: Option<String>,
    },
    CancelReplay {
        id: String,
    },
    /// `hookgate filter test`: a filter (or a destination's) on a route's stored events.
    FilterTest {
        route: String,
        filter: Option<String>,
        destination: Option<String>,
        since: String,
        limit: usize,
    },
}

/// `hookgate queue replay`: what to send again (see `POST /queue/replays`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayCall {
    pub route: String,
    pub destination: Option<String>,
    pub to: Option<String>,
    pub since: String,
    pub until: Option<String>,
    pub state: Option<String>,
    pub filter: Option<String>,
    pub dry_run: bool,
}

/// `path` with the given query parameters (those set), percent-encoded.
fn with_query(path: String, params: &[(&str, Option<&str>)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", percent_encode(v))))
        .collect();
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

impl Call {
    /// Its method and target, and how its answer is shown on a terminal.
    pub fn request(&self) -> (Method, String, View) {
        let enc = percent_encode;
        match self {
            Call::Routes { route: None } => (Method::GET, "/queue/routes".to_owned(), View::Routes),
            Call::Routes { route: Some(r) } => (
                Method::GET,
                format!("/queue/routes/{}", enc(r)),
                View::Route,
            ),
            Call::List { .. } => (Method::GET, self.list_target(), View::List),
            Call::Show { id, body } => (
                Method::GET,
                format!(
                    "/queue/events/{}{}",
                    enc(id),
                    if *body { "?body=true" } else { "" }
                ),
                View::Show,
            ),
            Call::Retry { id, destination } => (
                Method::POST,
                with_query(format!("/queue/events/{}/retry", enc(id)), &d(destination)),
                View::Changed,
            ),
            Call::RetryDead { route, destination } => (
                Method::POST,
                with_query(
                    format!("/queue/routes/{}/retry-dead", enc(route)),
                    &d(destination),
                ),
                View::Changed,
            ),
            Call::Pause { route, destination } => (
                Method::POST,
                with_query(
                    format!("/queue/routes/{}/pause", enc(route)),
                    &d(destination),
                ),
                View::Paused,
            ),
            Call::Resume { route, destination } => (
                Method::POST,
                with_query(
                    format!("/queue/routes/{}/resume", enc(route)),
                    &d(destination),
                ),
                View::Paused,
            ),
            Call::Drop { id, destination } => (
                Method::DELETE,
                with_query(format!("/queue/events/{}", enc(id)), &d(destination)),
                View::Changed,
            ),
            Call::Replay(r) => (Method::POST, replay_target(r), View::Replay),
            Call::Replays { id: None } => (Method::GET, "/queue/replays".to_owned(), View::Replays),
            Call::Replays { id: Some(id) } => (
                Method::GET,
                format!("/queue/replays/{}", enc(id)),
                View::Replay,
            ),
            Call::CancelReplay { id } => (
                Method::POST,
                format!("/queue/replays/{}/cancel", enc(id)),
                View::Replay,
            ),
            Call::FilterTest { .. } => (Method::GET, self.filter_test_target(), View::FilterTest),
        }
    }
}

impl Call {
    /// A listing's target with its query.
    fn list_target(&self) -> String {
        let Call::List {
            route,
            destination,
            state,
            limit,
            after,
        } = self
        else {
            return "/queue/events".into();
        };
        let limit = limit.to_string();
        let params = [
            ("limit", Some(limit.as_str())),
            ("route", route.as_deref()),
            ("destination", destination.as_deref()),
            ("state", state.as_deref()),
            ("after", after.as_deref()),
        ];
        with_query("/queue/events".into(), &params)
    }
}

impl Call {
    /// A filter test's target with its query.
    fn filter_test_target(&self) -> String {
        let Call::FilterTest {
            route,
            filter,
            destination,
            since,
            limit,
        } = self
        else {
            return "/queue/filter-test".into();
        };
        let limit = limit.to_string();
        let params = [
            ("route", Some(route.as_str())),
            ("filter", filter.as_deref()),
            ("destination", destination.as_deref()),
            ("since", Some(since.as_str())),
            ("limit", Some(limit.as_str())),
        ];
        with_query("/queue/filter-test".into(), &params)
    }
}

/// `?destination=D` when one is given.
fn d(destination: &Option<String>) -> [(&'static str, Option<&str>); 1] {
    [("destination", destination.as_deref())]
}

fn replay_target(r: &ReplayCall) -> String {
    let params = [
        ("route", Some(r.route.as_str())),
        ("destination", r.destination.as_deref()),
        ("to", r.to.as_deref()),
        ("since", Some(r.since.as_str())),
        ("until", r.until.as_deref()),
        ("state", r.state.as_deref()),
        ("filter", r.filter.as_deref()),
        ("dry_run", r.dry_run.then_some("true")),
    ];
    with_query("/queue/replays".into(), &params)
}

/// Where `hookgate queue` reaches the API, and with which bearer token.
pub struct Client {
    /// `host:port` of the admin listener.
    pub addr: String,
    pub token: Option<String>,
}

/// Why `hookgate queue` does not know where to call, or with which token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{}: {errors}(or give --admin)", path.display())]
    Config { path: PathBuf, errors: ConfigErrors },
    #[error("no admin address: give --admin HOST:PORT")]
    NoAddress,
    #[error("cannot read {}", path.display())]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Client {
    /// The admin address and token file as given on the command line; the configuration at
    /// `config` is read only for what was not given (`admin.addr`, reached on loopback when
    /// unspecified, and `admin.token_file`).
    pub fn new(
        config: &Path,
        admin: Option<String>,
        token_file: Option<&Path>,
    ) -> Result<Client, ClientError> {
        let loaded = if admin.is_none() || token_file.is_none() {
            match crate::config::load(config) {
                Ok(l) => Some(l),
                Err(_) if admin.is_some() => None,
                Err(errors) => {
                    return Err(ClientError::Config {
                        path: config.to_owned(),
                        errors,
                    })
                }
            }
        } else {
            None
        };
        let addr = match (admin, &loaded) {
            (Some(a), _) => a,
            (None, Some(l)) => local_target(l.gateway.admin).to_string(),
            (None, None) => return Err(ClientError::NoAddress),
        };
        let token = match token_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|source| ClientError::TokenFile {
                        path: f.to_owned(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
            ),
            // The configuration's own token file when none was given.
            None => loaded.as_ref().and_then(|l| {
                l.gateway
                    .admin_token
                    .as_ref()
                    .map(|t| String::from_utf8_lossy(t.expose()).into_owned())
            }),
        };
        Ok(Client { addr, token })
    }
}

/// The API's answer to a [`Call`], as [`call`] got it.
pub struct Answer {
    pub status: StatusCode,
    /// The body as it came (JSON, unless something else answered).
    pub body: String,
    json: Option<Value>,
}

impl Answer {
    pub fn new(status: StatusCode, body: String) -> Answer {
        let json = serde_json::from_str(&body).ok();
        Answer { status, body, json }
    }

    /// For an error status, why: the API's JSON `error`, or else the body itself.
    pub fn failure(&self) -> Option<&str> {
        if self.status.is_success() {
            return None;
        }
        Some(
            self.json
                .as_ref()
                .and_then(|a| a["error"].as_str())
                .unwrap_or(self.body.trim()),
        )
    }

    /// The JSON as a person reads it, if the answer is JSON.
    pub fn table(&self, view: View, now_ms: i64) -> Option<String> {
        Some(super::table::render(view, self.json.as_ref()?, now_ms))
    }
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
    fn each_call_is_one_endpoint_of_the_router() {
        let id = || "e 1".to_owned();
        let table = [
            (
                Call::Routes { route: None },
                "GET /queue/routes",
                View::Routes,
            ),
            (
                Call::Routes {
                    route: Some("gh".into()),
                },
                "GET /queue/routes/gh",
                View::Route,
            ),
            (
                Call::List {
                    route: Some("gh".into()),
                    destination: None,
                    state: None,
                    limit: 5,
                    after: Some("a/1".into()),
                },
                "GET /queue/events?limit=5&route=gh&after=a%2F1",
                View::List,
            ),
            (
                Call::Show {
                    id: id(),
                    body: true,
                },
                "GET /queue/events/e%201?body=true",
                View::Show,
            ),
            (
                Call::Retry {
                    id: id(),
                    destination: None,
                },
                "POST /queue/events/e%201/retry",
                View::Changed,
            ),
            (
                Call::RetryDead {
                    route: "gh".into(),
                    destination: Some("billing".into()),
                },
                "POST /queue/routes/gh/retry-dead?destination=billing",
                View::Changed,
            ),
            (
                Call::Pause {
                    route: "gh".into(),
                    destination: Some("a b".into()),
                },
                "POST /queue/routes/gh/pause?destination=a%20b",
                View::Paused,
            ),
            (
                Call::Drop {
                    id: id(),
                    destination: None,
                },
                "DELETE /queue/events/e%201",
                View::Changed,
            ),
            (
                Call::Replay(ReplayCall {
                    route: "gh".into(),
                    to: Some("staging".into()),
                    since: "1h".into(),
                    filter: Some("{ json: /a, exists: true }".into()),
                    dry_run: true,
                    ..ReplayCall::default()
                }),
                "POST /queue/replays?route=gh&to=staging&since=1h\
                 &filter=%7B%20json%3A%20%2Fa%2C%20exists%3A%20true%20%7D&dry_run=true",
                View::Replay,
            ),
            (
                Call::CancelReplay { id: id() },
                "POST /queue/replays/e%201/cancel",
                View::Replay,
            ),
        ];
        for (call, request, view) in table {
            let (method, target, shown) = call.request();
            assert_eq!(format!("{method} {target}"), request, "{call:?}");
            assert_eq!(shown, view, "{call:?}");
        }
    }

    #[test]
    fn an_error_answer_says_why_from_its_json_or_its_text() {
        let json = Answer::new(
            StatusCode::NOT_FOUND,
            "{\"error\": \"no such event\"}\n".into(),
        );
        assert_eq!(json.failure(), Some("no such event"));
        let text = Answer::new(StatusCode::BAD_GATEWAY, "upstream down\n".into());
        assert_eq!(text.failure(), Some("upstream down"));
        assert_eq!(Answer::new(StatusCode::OK, "{}".into()).failure(), None);
    }

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
