//! The request pipeline, top to bottom. Each step passes the request on or returns a
//! [`Refusal`]; `handle` turns the outcome into a response, one log line and the metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::body;
use crate::client_ip::{self, ClientIp};
use crate::config::{Gateway, Route};
use crate::forward::{self, Hop, UpstreamClient};
use crate::metrics::{Metrics, NO_ROUTE};
use crate::refusal::Refusal;
use crate::routes::Match;
use crate::scheme::RequestView;

/// Where "now" comes from; tests pin it to replay recorded vectors.
pub type Clock = fn() -> SystemTime;

/// Everything a request needs, shared by all connections.
pub struct Shared {
    pub gateway: Arc<Gateway>,
    pub metrics: Arc<Metrics>,
    pub client: UpstreamClient,
    pub clock: Clock,
}

/// What is known about the connection a request came in on.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Handles one request end to end. Never fails: every problem is a response.
pub async fn handle(shared: &Shared, conn: Conn, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let metrics = &shared.metrics;
    let _in_flight = InFlight::new(&metrics.in_flight);
    let method = req.method().clone();
    // The path only: a query string may carry tokens, so it is never logged.
    let path = req.uri().path().to_owned();
    let client = client_ip::client_ip(
        conn.peer.ip(),
        &shared.gateway.trusted_proxies,
        req.headers(),
    );
    let mut route: Option<Arc<Route>> = None;
    let mut shadowed: Option<Refusal> = None;

    let result = pipeline(shared, conn, client, req, &mut route, &mut shadowed).await;

    let route_name = route.as_ref().map(|r| r.name.as_str()).unwrap_or(NO_ROUTE);
    let elapsed = started.elapsed();
    let response = match result {
        Ok(response) => {
            // In shadow mode a request that failed a check is counted under the outcome it
            // would have had, so the numbers match what enforcing would have done.
            let outcome = shadowed.as_ref().map_or("forwarded", Refusal::label);
            metrics
                .requests
                .with_label_values(&[route_name, outcome])
                .inc();
            tracing::info!(
                route = route_name,
                client = %client,
                method = %method,
                path = %path,
                status = response.status().as_u16(),
                elapsed_us = elapsed.as_micros() as u64,
                "forwarded"
            );
            response
        }
        Err(refusal) => {
            metrics
                .requests
                .with_label_values(&[route_name, refusal.label()])
                .inc();
            let reason = refusal.reason();
            tracing::warn!(
                route = route_name,
                client = %client,
                peer = %conn.peer.ip(),
                method = %method,
                path = %path,
                status = refusal.status().as_u16(),
                outcome = refusal.label(),
                reason = reason.as_str(),
                "refused"
            );
            refusal_response(&refusal, reason)
        }
    };
    metrics
        .request_duration
        .with_label_values(&[route_name])
        .observe(elapsed.as_secs_f64());
    response
}

/// Counts a request in flight for as long as it lives, including when the client goes away
/// and hyper drops the handler mid-way.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// match route -> allowlist -> read body -> verify -> forward.
///
/// On a route in shadow mode (`enforce: false`) a failed allowlist or signature check is
/// recorded in `shadowed` and the request goes on.
async fn pipeline(
    shared: &Shared,
    conn: Conn,
    client: ClientIp,
    req: Request<Incoming>,
    matched: &mut Option<Arc<Route>>,
    shadowed: &mut Option<Refusal>,
) -> Result<Response<Full<Bytes>>, Refusal> {
    let gateway = &shared.gateway;
    let route = match gateway.routes.lookup(req.method(), req.uri().path()) {
        Match::Found(route) => route.clone(),
        Match::MethodNotAllowed { route, allowed } => {
            *matched = Some(route.clone());
            return Err(Refusal::MethodNotAllowed(allowed));
        }
        Match::NotFound => return Err(Refusal::NoRoute),
        Match::BadPath => return Err(Refusal::BadPath),
    };
    *matched = Some(route.clone());

    // Before a single body byte is read.
    if !client_ip::allowed(client, route.allow_ips.as_deref()) {
        check_failed(shared, &route, client, Refusal::IpNotAllowed, shadowed)?;
    }

    let (parts, body) = req.into_parts();
    let limits = &gateway.limits;
    let body = body::read_body(
        body,
        body::content_length(&parts.headers),
        limits.max_body_bytes,
        limits.body_read_timeout,
    )
    .await?;

    if let Some(scheme) = &route.scheme {
        let verify_started = Instant::now();
        let request = RequestView {
            headers: &parts.headers,
            body: &body,
            path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        };
        let verdict = scheme.verify(&request, (shared.clock)());
        shared
            .metrics
            .verify_duration
            .observe(verify_started.elapsed().as_secs_f64());
        match verdict {
            Ok(verified) => shared
                .metrics
                .verified
                .with_label_values(&[&route.name, &verified.key_index.to_string()])
                .inc(),
            Err(e) if shadowed.is_none() => {
                check_failed(shared, &route, client, Refusal::Verify(e), shadowed)?
            }
            // Already forwarding in shadow mode for an earlier failed check.
            Err(_) => {}
        }
    }

    let peer = client_ip::canonical(conn.peer.ip());
    let hop = Hop {
        peer,
        peer_trusted: client_ip::is_in(peer, &gateway.trusted_proxies),
        proto: if conn.tls { "https" } else { "http" },
    };
    forward::forward(
        &shared.client,
        &route,
        parts,
        body,
        &hop,
        limits,
        &shared.metrics,
    )
    .await
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
fn refusal_response(refusal: &Refusal, reason: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reason + "\n")));
    *response.status_mut() = refusal.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Refusal::MethodNotAllowed(methods) = refusal {
        let allow: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
        if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
            headers.insert(header::ALLOW, v);
        }
    }
    response
}
