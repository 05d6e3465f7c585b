//! The request pipeline, top to bottom. Each step passes the request on or returns a
//! [`Refusal`]; `handle` turns the outcome into a response. Each phase fills in the request's
//! [`Context`], which records it (one log line, the metrics) however it ends.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

mod context;

use crate::body;
use crate::client_ip::{self, ClientIp};
use crate::delivery::store::Ingested;
use crate::delivery::NewEvent;
use crate::forward::{self, Hop};
use crate::model::routes::Match;
use crate::model::Route;
use crate::model::{Delivery, OnStoreError, QueuePolicy, ReplayPolicy};
use crate::refusal::{Outcome, Refusal};
use crate::replay::{self, Claim, ClaimGuard};
use crate::request_id;
use crate::runtime::{Conn, InForce, Shared};
use crate::scheme::fetched::{KeyDoc, KeyFrom};
use crate::scheme::{JsonBody, RequestView, VerifyError};
use context::Context;

/// Handles one request end to end. Never fails: every problem is a response.
pub async fn handle(
    shared: &Arc<Shared>,
    conn: Conn,
    mut req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    // The configuration this request is served by, from start to end, whatever reloads.
    let live = shared.config.load_full();
    let mut cx = Context::new(shared, live.clone(), conn, &mut req);
    let (response, outcome) = match pipeline(shared, &live, req, &mut cx).await {
        Ok(answered) => answered,
        Err(refusal) => (refusal_response(&refusal), Outcome::Refused(refusal)),
    };
    cx.answer(response, outcome)
}

/// The phases, in order: admit (host, framing, route, allowlist), read the body, verify,
/// deliver (forward now, or store and answer). Each phase passes the request on or refuses.
///
/// On a route in shadow mode (`enforce: false`) a failed allowlist or signature check is
/// recorded in `cx.shadowed` and the request goes on.
async fn pipeline(
    shared: &Arc<Shared>,
    live: &Arc<InForce>,
    req: Request<Incoming>,
    cx: &mut Context<'_>,
) -> Result<(Response<Full<Bytes>>, Outcome), Refusal> {
    let (conn, client) = (cx.conn, cx.client);
    let route = admit(shared, &live.gateway, &req, cx)?;
    if let Some(answer) = unsigned_handshake(&route, &req)? {
        return Ok((answer, Outcome::Handshake));
    }
    let (parts, body) = req.into_parts();
    let body = read(shared, &live.gateway, &route, client, &parts, body).await?;
    cx.bytes_in = body.len() as u64;
    // The body as strict JSON, parsed at most once, if the scheme or the replay key reads it.
    let json = JsonBody::default();
    let verified = verify(
        shared,
        live,
        &route,
        client,
        &view(&parts, &body, &json),
        &mut cx.shadowed,
    )
    .await?;
    if let Some(answer) = signed_handshake(shared, &route, &view(&parts, &body, &json), cx).await? {
        return Ok((answer, Outcome::Handshake));
    }
    let peer = client_ip::canonical(conn.peer.ip());
    let hop = Hop {
        peer,
        peer_trusted: client_ip::is_in(peer, conn.trusted_proxies(&live.gateway)),
        proto: if conn.tls { "https" } else { "http" },
    };
    let request = Verified {
        route,
        client,
        parts,
        body,
        json,
        verified,
        hop,
    };
    // Only requests that passed every check reach a store: unauthenticated requests can
    // neither fill nor probe it.
    let route = request.route.clone();
    if let Delivery::Queued(policy) = &route.delivery {
        return store_and_answer(shared, &live.gateway.limits, policy, request).await;
    }
    forward_now(shared, live, request, cx).await
}

/// Handshake, unsigned: a sender's challenge that carries nothing to verify (Meta's
/// `hub.challenge`, X's CRC), answered before the body is read.
fn unsigned_handshake(
    route: &Route,
    req: &Request<Incoming>,
) -> Result<Option<Response<Full<Bytes>>>, Refusal> {
    let Some(hs) = &route.handshake else {
        return Ok(None);
    };
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let answer = crate::handshake::before_body(
        hs,
        req.method(),
        target,
        req.headers(),
        route.scheme.as_ref(),
    )?;
    // Not the handshake, with the method the route takes for the handshake alone.
    if answer.is_none() && hs.method_for_handshake_only && *req.method() == hs.kind.method() {
        let allowed = route.methods.iter().filter(|m| **m != hs.kind.method());
        return Err(Refusal::MethodNotAllowed(allowed.cloned().collect()));
    }
    Ok(answer)
}

/// Handshake, signed: a challenge that came like an event (Slack, Zoom, Discord), answered
/// once it verified; an SNS subscription confirmed with SNS. Never on a shadowed check:
/// shadow mode forwards what it would refuse.
async fn signed_handshake(
    shared: &Shared,
    route: &Route,
    request: &RequestView<'_>,
    cx: &Context<'_>,
) -> Result<Option<Response<Full<Bytes>>>, Refusal> {
    let Some(hs) = route.handshake.as_ref().filter(|_| cx.shadowed.is_none()) else {
        return Ok(None);
    };
    if let Some(url) = crate::handshake::sns_subscribe_url(hs, request) {
        return confirm_subscription(shared, route, url).await.map(Some);
    }
    crate::handshake::after_verify(hs, request, route.scheme.as_ref())
}

/// SNS's subscription handshake: a `GET` of the verified message's `SubscribeURL`, which must
/// be a confirmation on one of the hosts the route's certificates come from, through the
/// key fetcher (pinned, bounded, within its budget). 200 once SNS accepted it; 503 (SNS
/// sends it again) if it could not be made.
async fn confirm_subscription(
    shared: &Shared,
    route: &Route,
    url: &str,
) -> Result<Response<Full<Bytes>>, Refusal> {
    let hosts = match route.scheme.as_ref().map(|s| &s.keys) {
        Some(crate::scheme::Keys::Fetched(key)) => key.hosts.as_slice(),
        _ => &[],
    };
    let url = crate::scheme::pin::KeyUrl::parse(url, hosts)
        .ok()
        .filter(|u| {
            u.path_and_query()
                .starts_with("/?Action=ConfirmSubscription&")
        })
        .ok_or(Refusal::Handshake(
            "SubscribeURL is not a confirmation on the sender's host",
        ))?;
    match shared.keys.get_once(&url).await {
        Ok(()) => {
            tracing::info!(route = route.name.as_str(), "SNS subscription confirmed");
            let mut answer =
                Response::new(Full::new(Bytes::from_static(b"subscription confirmed\n")));
            answer.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Ok(answer)
        }
        Err(why) => {
            tracing::warn!(
                route = route.name.as_str(),
                why,
                "SNS subscription not confirmed"
            );
            Err(Refusal::HandshakeUnavailable)
        }
    }
}

/// A request that passed every check, on its way to its app or its store.
struct Verified {
    route: Arc<Route>,
    client: ClientIp,
    parts: http::request::Parts,
    body: body::RawBody,
    json: JsonBody,
    verified: Signed,
    hop: Hop,
}

/// What verifying learned.
#[derive(Default)]
struct Signed {
    /// The decoded signature that verified (empty without a scheme).
    signature: Vec<u8>,
    /// Which of the route's keys verified it.
    key_index: Option<u32>,
}

/// Admit: one valid Host, plain framing, a route for the method and path, and a client the
/// route's allowlist admits, before a single body byte is read.
fn admit(
    shared: &Shared,
    gateway: &crate::model::Gateway,
    req: &Request<Incoming>,
    cx: &mut Context<'_>,
) -> Result<Arc<Route>, Refusal> {
    crate::host::check(req.version(), req.uri(), req.headers()).map_err(Refusal::BadHost)?;
    if !body::plain_framing(req.headers()) {
        return Err(Refusal::BadFraming);
    }
    let route = match gateway.routes.lookup(req.method(), req.uri().path()) {
        Match::Found(route) => route.clone(),
        Match::MethodNotAllowed { route, allowed } => {
            cx.route = Some(route.clone());
            return Err(Refusal::MethodNotAllowed(allowed));
        }
        Match::NotFound => return Err(Refusal::NoRoute),
        Match::BadPath => return Err(Refusal::BadPath),
    };
    cx.route = Some(route.clone());
    if !client_ip::allowed(cx.client, route.allow_ips.as_deref()) {
        check_failed(
            shared,
            &route,
            cx.client,
            Refusal::IpNotAllowed,
            &mut cx.shadowed,
        )?;
    }
    Ok(route)
}

/// Read: the whole body, bounded by the route's size and time and the process's budget.
async fn read(
    shared: &Shared,
    gateway: &crate::model::Gateway,
    route: &Route,
    client: ClientIp,
    parts: &http::request::Parts,
    body: Incoming,
) -> Result<body::RawBody, Refusal> {
    let limits = body::BodyLimits {
        max: route.limits.max_body_bytes,
        deadline: route.limits.body_read_timeout,
        // A trusted proxy (no X-Forwarded-For) stands for many clients: not capped.
        client: match client {
            ClientIp::Known(ip) if !client_ip::is_in(ip, &gateway.trusted_proxies) => {
                Some(client_ip::limit_key(ip))
            }
            _ => None,
        },
    };
    let declared = body::Declared::of(parts.version, &parts.headers);
    Ok(body::read_body(body, declared, limits, &shared.body_budget).await?)
}

/// What a scheme and a replay key read of a request.
fn view<'a>(
    parts: &'a http::request::Parts,
    body: &'a body::RawBody,
    json: &'a JsonBody,
) -> RequestView<'a> {
    RequestView {
        method: &parts.method,
        headers: &parts.headers,
        body,
        path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        json,
    }
}

/// Verify: the route's scheme over the exact bytes, with the clock passed in (and the key
/// fetched first, for a scheme whose key lives on the network).
async fn verify(
    shared: &Shared,
    live: &InForce,
    route: &Route,
    client: ClientIp,
    request: &RequestView<'_>,
    shadowed: &mut Option<Refusal>,
) -> Result<Signed, Refusal> {
    let Some(scheme) = &route.scheme else {
        return Ok(Signed::default());
    };
    let doc = match fetch_key(shared, route, scheme, request).await {
        Ok(doc) => doc,
        Err(refusal) if shadowed.is_none() => {
            check_failed(shared, route, client, refusal, shadowed)?;
            return Ok(Signed::default());
        }
        Err(_) => return Ok(Signed::default()),
    };
    let verify_started = Instant::now();
    let verdict = scheme.verify_with(request, (shared.clock)(), doc.as_deref());
    shared
        .metrics
        .verify_duration
        .observe(verify_started.elapsed().as_secs_f64());
    match verdict {
        Ok(verified) => {
            live.route_metrics[route.index].verified_by(verified.key_index);
            Ok(Signed {
                signature: verified.signature,
                key_index: u32::try_from(verified.key_index).ok(),
            })
        }
        Err(e) if shadowed.is_none() => {
            check_failed(shared, route, client, Refusal::Verify(e), shadowed)?;
            Ok(Signed::default())
        }
        // Already forwarding in shadow mode for an earlier failed check.
        Err(_) => Ok(Signed::default()),
    }
}

/// The key a scheme fetches, for this request: the URL the request names, checked against
/// the scheme's pinned hosts (401 if refused: nothing is fetched), then from the process's
/// cache or its host (503 with `Retry-After` when it cannot be had). `None` for a scheme
/// that holds its keys.
async fn fetch_key(
    shared: &Shared,
    route: &Route,
    scheme: &crate::scheme::Scheme,
    request: &RequestView<'_>,
) -> Result<Option<Arc<KeyDoc>>, Refusal> {
    let crate::scheme::Keys::Fetched(key) = &scheme.keys else {
        return Ok(None);
    };
    let Some(url) = scheme
        .key_url(request, (shared.clock)())
        .map_err(Refusal::Verify)?
    else {
        return Ok(None);
    };
    let url = match &key.from {
        KeyFrom::Discovery(_) => jwks_of_issuer(shared, scheme, key, url).await?,
        _ => url,
    };
    // A JWT names its key (`kid`): a set without it is fetched again, at most once per
    // interval, in case the issuer has just added it.
    let kid = scheme.kid_wanted(request);
    let has = |doc: &KeyDoc| kid.as_deref().is_none_or(|k| doc.has(k));
    let parsed = &shared.keys.parsed;
    let wanted = |doc: &Bytes| parsed.get(key, doc).is_ok_and(|d| has(&d));
    let unavailable = |why: &str, retry_after: std::time::Duration| {
        // Each fetch that fails is logged once by the cache; the refusals it causes are in
        // the access log.
        tracing::debug!(route = route.name.as_str(), url = %url, why, "no key for the request");
        Refusal::key_unavailable(retry_after)
    };
    let request = key
        .request(url.clone(), kid.as_deref())
        .map_err(Refusal::Verify)?;
    let doc = shared.keys.get(&request, &wanted).await.map_err(|e| {
        // The issuer's keys are in hand and none is the one the token names: a forged or
        // foreign `kid`, refused as such, not an outage.
        match e.lacking.as_deref().map(|d| parsed.get(key, d)) {
            Some(Ok(_)) => Refusal::Verify(VerifyError::KeyRefused(
                "no key with the token's kid in the issuer's key set".into(),
            )),
            _ => unavailable(&e.why, e.retry_after),
        }
    })?;
    let doc = parsed
        .get(key, &doc)
        .map_err(|e| unavailable(&e, std::time::Duration::from_secs(10)))?;
    chained(shared, key, &doc)?;
    Ok(Some(doc))
}

/// A signing certificate that sends its chain, or whose route requires one, chains to the
/// key fetcher's trust roots now (`key_url.require_chain`); a key needs no chain.
fn chained(
    shared: &Shared,
    key: &crate::scheme::fetched::FetchedKey,
    doc: &KeyDoc,
) -> Result<(), Refusal> {
    let KeyDoc::Certificate(cert) = doc else {
        return Ok(());
    };
    if !key.chain.applies(cert) {
        return Ok(());
    }
    let now = (shared.clock)()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    cert.check_chain(&key.chain.intermediates, shared.keys.anchors(), now)
        .map_err(|e| Refusal::Verify(VerifyError::KeyRefused(e.to_string())))
}

/// The JWKS an OIDC issuer's discovery document names (fetched and kept like any key
/// document): its `jwks_uri`, on a pinned host, the document the route's issuer's.
async fn jwks_of_issuer(
    shared: &Shared,
    scheme: &crate::scheme::Scheme,
    key: &crate::scheme::fetched::FetchedKey,
    discovery: crate::scheme::pin::KeyUrl,
) -> Result<crate::scheme::pin::KeyUrl, Refusal> {
    let issuer = scheme.jwt.as_ref().and_then(|j| j.issuer.as_deref());
    let names = |doc: &Bytes| key.jwks_uri(doc, issuer).is_ok();
    let unavailable = Refusal::key_unavailable;
    let doc = shared
        .keys
        .get(&discovery.into(), &names)
        .await
        .map_err(|e| unavailable(e.retry_after))?;
    key.jwks_uri(&doc, issuer)
        .map_err(|_| unavailable(std::time::Duration::from_secs(10)))
}

/// Deliver, sync: claim the event in the replay store (if the route has `replay:`), forward,
/// relay the app's answer.
async fn forward_now(
    shared: &Shared,
    live: &Arc<InForce>,
    request: Verified,
    cx: &mut Context<'_>,
) -> Result<(Response<Full<Bytes>>, Outcome), Refusal> {
    let Verified {
        route,
        client,
        parts,
        body,
        json,
        verified,
        hop,
    } = request;
    let claim = match (&route.replay, cx.shadowed.is_none()) {
        (Some(policy), true) => {
            let gateway = &live.gateway;
            let asked = (view(&parts, &body, &json), verified.signature.as_slice());
            let shadowed = &mut cx.shadowed;
            match replay_check(
                shared,
                &gateway.limits,
                &route,
                policy,
                client,
                asked,
                shadowed,
            )
            .await?
            {
                Replay::Duplicate => return Ok((duplicate_response(&route), Outcome::Duplicate)),
                Replay::Claimed(guard) => Some((guard, policy.ttl)),
                Replay::Unguarded => None,
            }
        }
        _ => None,
    };
    let exchange = {
        let live = live.clone();
        async move {
            let route_metrics = &live.route_metrics[route.index];
            let limits = &live.gateway.limits;
            forward::forward(
                &live.upstreams,
                &route,
                parts,
                body,
                &hop,
                limits,
                route_metrics,
            )
            .await
        }
    };
    let exchange = match claim {
        None => exchange.await,
        Some((guard, ttl)) => {
            // A claimed event is forwarded and settled in a task of its own: if the sender
            // hangs up mid-forward, the app may still take the event, and the claim must
            // record that answer (or a retry would be delivered a second time).
            let task = tokio::spawn(async move {
                let exchange = exchange.await;
                // Remembered if the app answered 2xx (even if relaying its answer then
                // failed); otherwise released so the retry goes through.
                let delivered = exchange.call.status.is_some_and(|st| st.is_success());
                guard.settle(delivered, ttl).await;
                exchange
            });
            match task.await {
                Ok(exchange) => exchange,
                // Only a panic in the task; the claim guard has released the claim on drop.
                Err(_) => return Err(Refusal::UpstreamBadResponse),
            }
        }
    };
    cx.upstream = Some(exchange.call);
    exchange.result.map(|r| (r, Outcome::Forwarded))
}

enum Replay {
    /// First copy: forward, then settle the claim.
    Claimed(ClaimGuard),
    /// Already delivered: answer for the app, forward nothing.
    Duplicate,
    /// Forward without a claim (store down with `on_store_error: allow`, or shadow mode).
    Unguarded,
}

/// Claims the request's event key in the replay store, and acts on [`decide_replay`].
async fn replay_check(
    shared: &Shared,
    // The configuration this request is served by (the claim's length comes from it).
    limits: &crate::model::Limits,
    route: &Route,
    policy: &ReplayPolicy,
    client: ClientIp,
    (asked, signature): (RequestView<'_>, &[u8]),
    shadowed: &mut Option<Refusal>,
) -> Result<Replay, Refusal> {
    let metrics = &shared.metrics;
    let Some(store) = &shared.replay_store else {
        // start() builds a store whenever a route has `replay:`.
        return Err(Refusal::ReplayStoreUnavailable);
    };
    let key = match event_key(policy, &asked, signature) {
        Ok(key) => key,
        Err(refusal) => {
            check_failed(shared, route, client, refusal, shadowed)?;
            return Ok(Replay::Unguarded);
        }
    };
    let key = replay::store_key(&route.name, &key);
    // A claim outlives the longest forward, so a crashed gateway's claim lapses on its own.
    let in_flight_ttl = limits.upstream_connect_timeout
        + route.limits.upstream_timeout
        + std::time::Duration::from_secs(5);
    let started = Instant::now();
    let claim = store.claim(&key, in_flight_ttl).await;
    metrics
        .replay_store_duration
        .with_label_values(&["claim"])
        .observe(started.elapsed().as_secs_f64());
    let name = route.name.as_str();
    let decision = decide_replay(&claim, route.enforce, policy.on_store_error);
    match (decision, claim) {
        (ReplayDecision::Claimed, Ok(Claim::New(token))) => Ok(Replay::Claimed(ClaimGuard::new(
            store.clone(),
            key,
            token,
            name,
            metrics.clone(),
        ))),
        (ReplayDecision::Duplicate, _) => {
            metrics.replay_duplicates.with_label_values(&[name]).inc();
            Ok(Replay::Duplicate)
        }
        (ReplayDecision::ShadowDuplicate, _) => {
            let labels = [name, "duplicate"];
            metrics.shadow_refusals.with_label_values(&labels).inc();
            tracing::warn!(route = name, client = %client, "duplicate; forwarding anyway (shadow mode, enforce: false)");
            Ok(Replay::Unguarded)
        }
        (ReplayDecision::InFlight, _) => {
            metrics.replay_in_flight.with_label_values(&[name]).inc();
            check_failed(shared, route, client, Refusal::ReplayInFlight, shadowed)?;
            Ok(Replay::Unguarded)
        }
        (ReplayDecision::StoreDown { refuse }, claim) => {
            let action = if refuse { "rejected" } else { "allowed" };
            if let Err(e) = claim {
                tracing::error!(route = name, error = %e, action, "replay store unavailable");
            }
            let labels = [name, action];
            metrics.replay_store_errors.with_label_values(&labels).inc();
            if refuse {
                let refusal = Refusal::ReplayStoreUnavailable;
                check_failed(shared, route, client, refusal, shadowed)?;
            }
            Ok(Replay::Unguarded)
        }
        // `decide_replay` says Claimed only for a new claim.
        (ReplayDecision::Claimed, _) => Ok(Replay::Unguarded),
    }
}

/// What the replay store's answer to a claim means for the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplayDecision {
    /// First copy: forward it under the claim.
    Claimed,
    /// Delivered before: answer for the app, forward nothing.
    Duplicate,
    /// Delivered before, on a route in shadow mode: forward anyway, counted.
    ShadowDuplicate,
    /// Another copy is being forwarded right now: 409 (shadow mode: forward, counted).
    InFlight,
    /// The store did not answer: refuse with 503 (`on_store_error: reject`), or forward
    /// without dedup.
    StoreDown { refuse: bool },
}

/// The replay decision as a pure function of the store's answer and the route's settings.
fn decide_replay<E>(
    claim: &Result<Claim, E>,
    enforce: bool,
    on_store_error: OnStoreError,
) -> ReplayDecision {
    match claim {
        Ok(Claim::New(_)) => ReplayDecision::Claimed,
        Ok(Claim::Delivered) if enforce => ReplayDecision::Duplicate,
        Ok(Claim::Delivered) => ReplayDecision::ShadowDuplicate,
        Ok(Claim::InFlight) => ReplayDecision::InFlight,
        Err(_) => ReplayDecision::StoreDown {
            refuse: on_store_error == OnStoreError::Reject,
        },
    }
}

/// The event's dedup key: from its one copy of the key header, its JSON body or its
/// signature.
fn event_key(
    policy: &ReplayPolicy,
    request: &RequestView<'_>,
    signature: &[u8],
) -> Result<Vec<u8>, Refusal> {
    if let crate::model::KeySource::Header(names) = &policy.key {
        // Deduplicated by one copy, delivered with two: the app could read the other.
        let copies = names
            .iter()
            .map(|n| request.headers.get_all(n).iter().count());
        if copies.sum::<usize>() > 1 {
            return Err(Refusal::Verify(VerifyError::RepeatedHeader(
                names[0].clone(),
            )));
        }
    }
    policy
        .key_bytes(request, signature)
        .map_err(Refusal::Verify)?
        .ok_or(Refusal::ReplayKeyMissing)
}

/// Deliver, queued: the request exactly as sync mode would forward it, stored durably; the
/// sender is answered 2xx only once it is on disk, 503 if the store cannot take it.
/// Deduplicated by the queue store itself, in the insert (a queued route is never in shadow
/// mode).
async fn store_and_answer(
    shared: &Shared,
    // The configuration this request is served by (the lease length comes from it).
    limits: &crate::model::Limits,
    policy: &QueuePolicy,
    request: Verified,
) -> Result<(Response<Full<Bytes>>, Outcome), Refusal> {
    let Some(queue) = shared.queue.get() else {
        // Cannot happen: a configuration with a queued route has a `queue_store:`, opened
        // at start or by the reload that brought it, before it was put in force.
        return Err(Refusal::QueueStoreUnavailable);
    };
    let Verified {
        route,
        parts,
        body,
        json,
        verified,
        hop,
        ..
    } = request;
    let key = route
        .replay
        .as_ref()
        .map(|replay| event_key(replay, &view(&parts, &body, &json), &verified.signature))
        .transpose()?;
    let outgoing = forward::prepare(&route, parts, &hop)?;
    let taken = destinations_taking(policy, &outgoing.headers, &json, &body);
    let received_ms = crate::delivery::UnixMs::from((shared.clock)());
    // For each destination with a delivery slot free (and room to hold another event
    // leased), the event is stored leased to this process with that delivery's first
    // attempt started, and handed to the worker in memory with the slot: no lease round
    // trip, no reading it back, no wait. Under a backlog it is stored `queued` instead.
    let reserved: Vec<Option<crate::delivery::Reserved>> = taken
        .iter()
        .map(|d| queue.reserve(&route.name, &d.name))
        .collect();
    let stored = Stored {
        key,
        verified_key: verified.key_index,
        received_ms,
    };
    let event = new_event(
        &route,
        stored,
        (&taken, &reserved),
        limits,
        (&outgoing, &body),
    );
    let id = event.id.clone();
    let handoffs = leased_copies(&event, reserved, outgoing.headers);
    let ingested = queue.store.ingest(event).await;
    // Held until now: the body counted against the memory budget until it was on disk.
    drop(body);
    match ingested {
        Ok(Ingested::Stored) => {
            let queued = handoffs.len() < taken.len();
            for (event, reserved) in handoffs {
                queue.handoff(event, reserved);
            }
            if queued {
                queue.wake.notify_one();
            }
            Ok((queued_response(&route, policy, &id), Outcome::Queued))
        }
        Ok(Ingested::Duplicate { id: first, state }) => {
            Ok(stored_duplicate(shared, &route, state, &first))
        }
        Err(e) => {
            tracing::error!(route = route.name.as_str(), error = %e, "queue store cannot take the event; answering 503");
            shared
                .metrics
                .queue
                .store_error(crate::metrics::StoreOp::Ingest);
            Err(Refusal::QueueStoreUnavailable)
        }
    }
}

/// The destinations of a queued route whose filters take this request, as it is stored
/// and as the app will get it (its headers after hop-by-hop hygiene, so a filter tested on
/// stored events or a filtered replay judges the same headers; its body parsed strictly if
/// it is JSON and a filter reads it), in the route's order.
fn destinations_taking<'p>(
    policy: &'p QueuePolicy,
    headers: &http::HeaderMap,
    json: &JsonBody,
    body: &body::RawBody,
) -> Vec<&'p crate::model::Destination> {
    policy
        .destinations
        .iter()
        .filter(|d| {
            d.filter.as_ref().is_none_or(|f| {
                let json = if f.reads_json() {
                    json.value(body)
                } else {
                    None
                };
                f.matches(headers, json)
            })
        })
        .collect()
}

/// For each delivery stored leased (its destination had a slot free), the copy the worker
/// gets in memory, with the reservation it holds. The parsed `headers` move into the last
/// copy (the only one, on a route with one upstream); the others get a clone.
fn leased_copies(
    event: &NewEvent,
    reserved: Vec<Option<crate::delivery::Reserved>>,
    headers: http::HeaderMap,
) -> Vec<(crate::delivery::Event, crate::delivery::Reserved)> {
    let leased: Vec<_> = event
        .deliveries
        .iter()
        .zip(reserved)
        .filter_map(|(d, reserved)| Some((d, d.lease.as_ref()?, reserved?)))
        .collect();
    let mut headers = Some(headers);
    let last = leased.len().saturating_sub(1);
    leased
        .into_iter()
        .enumerate()
        .map(|(i, (d, lease, reserved))| {
            let head = if i == last {
                headers.take()
            } else {
                headers.clone()
            };
            (event.leased_copy(d, lease, head), reserved)
        })
        .collect()
}

/// An event the queue store already holds: counted, and answered as a duplicate.
fn stored_duplicate(
    shared: &Shared,
    route: &Route,
    state: crate::delivery::event::State,
    first: &str,
) -> (Response<Full<Bytes>>, Outcome) {
    shared
        .metrics
        .replay_duplicates
        .with_label_values(&[&route.name])
        .inc();
    (
        stored_duplicate_response(state, first, route),
        Outcome::Duplicate,
    )
}

/// What a stored event carries besides the request: its replay key, the key that verified
/// it, when it came.
struct Stored {
    key: Option<Vec<u8>>,
    verified_key: Option<u32>,
    received_ms: crate::delivery::UnixMs,
}

/// The event a queued route stores: the outgoing request, its dedup key (hashed, with how
/// long it is remembered), and a delivery to each destination that takes it, with its
/// `Idempotency-Key` and, when that destination had a slot free (`reserved`), its lease.
fn new_event(
    route: &Route,
    stored: Stored,
    (taken, reserved): (
        &[&crate::model::Destination],
        &[Option<crate::delivery::Reserved>],
    ),
    limits: &crate::model::Limits,
    (outgoing, body): (&forward::Outgoing, &body::RawBody),
) -> NewEvent {
    let Stored {
        key,
        verified_key,
        received_ms,
    } = stored;
    let id = request_id::unique_hex();
    let (dedup_key, dedup_until, idempotency_key) = match (&key, &route.replay) {
        (Some(key), Some(replay)) => (
            Some(replay::store_key(&route.name, key)),
            Some(received_ms.after(replay.ttl)),
            crate::delivery::idempotency_key(&replay.key, key),
        ),
        _ => (None, None, id.clone()),
    };
    let deliveries = taken
        .iter()
        .zip(reserved)
        .map(|(d, reserved)| crate::delivery::event::NewDelivery {
            destination: d.name.clone(),
            idempotency_key: crate::delivery::destination_key(&idempotency_key, &d.name),
            lease: reserved.as_ref().map(|_| crate::delivery::event::Lease {
                token: request_id::unique_hex(),
                until_ms: received_ms.after(crate::delivery::lease_for(limits, d)),
            }),
        })
        .collect();
    NewEvent {
        id,
        route: route.name.clone(),
        dedup_key,
        dedup_until,
        idempotency_key,
        received_ms,
        verified_key,
        method: outgoing.method.as_str().to_owned(),
        target: outgoing.target.as_str().to_owned(),
        headers: crate::delivery::event::encode_headers(&outgoing.headers),
        body: body.to_bytes(),
        deliveries,
    }
}

/// What the sender of a stored event is answered: the route's `answer_status` and body,
/// and the event's id.
fn queued_response(route: &Route, policy: &QueuePolicy, id: &str) -> Response<Full<Bytes>> {
    // The body the sender requires (the route's `queue.body`, or its preset's), else ours.
    let body = route
        .acknowledgement
        .as_deref()
        .unwrap_or(&policy.answer_body);
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = policy.answer_status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert(crate::delivery::EVENT_ID_HEADER, v);
    }
    response
}

/// What a sender sees for an event the app already took: success, so it stops retrying;
/// with the body the sender requires, if it requires one (Adyen's `[accepted]`).
fn duplicate_response(route: &Route) -> Response<Full<Bytes>> {
    duplicate_saying(route.acknowledgement.as_deref().map_or_else(
        || Bytes::from_static(b"duplicate: this event was already delivered\n"),
        |ack| Bytes::from(ack.to_owned()),
    ))
}

/// A duplicate's answer (success, marked `x-hookgate-duplicate`) with `text` as its body.
fn duplicate_saying(text: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(text));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-hookgate-duplicate", HeaderValue::from_static("true"));
    response
}

/// What a sender sees for an event a queued route already stored: success, so it stops
/// retrying, and what is true of the first copy: delivered, or stored and on its way (its
/// state in `Hookgate-Event-State`), and the first copy's id (`Hookgate-Event-Id`).
fn stored_duplicate_response(
    state: crate::delivery::event::State,
    first: &str,
    route: &Route,
) -> Response<Full<Bytes>> {
    use crate::delivery::event::State;
    let mut response = match (state, route.acknowledgement.as_deref()) {
        (_, Some(ack)) => duplicate_saying(Bytes::from(ack.to_owned())),
        (State::Delivered, None) => duplicate_response(route),
        (State::Dead, None) => duplicate_saying(Bytes::from_static(
            b"duplicate: this event is already stored, as a dead letter an operator can retry\n",
        )),
        (other, None) => duplicate_saying(Bytes::from(format!(
            "duplicate: this event is already stored and will be delivered (state: {})\n",
            other.as_str()
        ))),
    };
    let headers = response.headers_mut();
    headers.insert(
        crate::delivery::EVENT_STATE_HEADER,
        HeaderValue::from_static(state.as_str()),
    );
    if let Ok(v) = HeaderValue::from_str(first) {
        headers.insert(crate::delivery::EVENT_ID_HEADER, v);
    }
    response
}

/// A check failed: refuse, or on a shadow-mode route record it, log it and go on.
fn check_failed(
    shared: &Shared,
    route: &Route,
    client: ClientIp,
    refusal: Refusal,
    shadowed: &mut Option<Refusal>,
) -> Result<(), Refusal> {
    if route.enforce {
        return Err(refusal);
    }
    shared
        .metrics
        .shadow_refusals
        .with_label_values(&[&route.name, refusal.label()])
        .inc();
    tracing::warn!(
        route = route.name.as_str(),
        client = %client,
        status = refusal.status().as_u16(),
        outcome = refusal.label(),
        reason = refusal.reason().as_str(),
        "would refuse; forwarding anyway (shadow mode, enforce: false)"
    );
    *shadowed = Some(refusal);
    Ok(())
}

/// A refusal as the sender sees it: its status and a one-line plain-text reason.
fn refusal_response(refusal: &Refusal) -> Response<Full<Bytes>> {
    let reason = refusal.reason();
    let mut response = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *response.status_mut() = refusal.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Refusal::BodyBudgetFull
    | Refusal::QueueStoreUnavailable
    | Refusal::HandshakeUnavailable = refusal
    {
        // Bodies in memory drain within body_read_timeout plus a forward.
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    if let Refusal::KeyUnavailable { retry_after } = refusal {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
    }
    if let Refusal::MethodNotAllowed(methods) = refusal {
        let allow: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
        if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
            headers.insert(header::ALLOW, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_decision_follows_the_stores_answer_and_the_routes_settings() {
        use OnStoreError::{Allow, Reject};
        use ReplayDecision as D;
        let new = || Ok::<_, ()>(Claim::New(replay::Token::fresh()));
        let answered = |c: Claim| Ok::<_, ()>(c);
        let down: Result<Claim, ()> = Err(());
        // (store's answer, enforce, on_store_error) -> decision
        assert_eq!(decide_replay(&new(), true, Reject), D::Claimed);
        assert_eq!(decide_replay(&new(), false, Allow), D::Claimed);
        assert_eq!(
            decide_replay(&answered(Claim::Delivered), true, Reject),
            D::Duplicate
        );
        assert_eq!(
            decide_replay(&answered(Claim::Delivered), false, Reject),
            D::ShadowDuplicate
        );
        assert_eq!(
            decide_replay(&answered(Claim::InFlight), true, Allow),
            D::InFlight
        );
        assert_eq!(
            decide_replay(&down, true, Reject),
            D::StoreDown { refuse: true }
        );
        assert_eq!(
            decide_replay(&down, true, Allow),
            D::StoreDown { refuse: false }
        );
    }

    #[test]
    fn each_outcome_has_the_label_operators_query() {
        assert_eq!(Outcome::Forwarded.label(), "forwarded");
        assert_eq!(Outcome::Queued.label(), "queued");
        assert_eq!(Outcome::Duplicate.label(), "duplicate");
        assert_eq!(Outcome::ClientClosed.label(), "client_closed");
        assert_eq!(
            Outcome::Refused(Refusal::IpNotAllowed).label(),
            Refusal::IpNotAllowed.label()
        );
    }
}
