//! One request's context, from its head to its record. The pipeline's phases fill in what they
//! learn (the route, a check failed in shadow mode, the body's size, the exchange with the
//! app); [`Context::answer`] or, when the request is dropped before its answer, `Drop` ends
//! it. Either way [`Context::record`] is the one place a request is logged (one access-log
//! line, the same fields) and counted (its outcome, its durations), like pingora's one
//! logging phase that runs for success and failure alike.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::client_ip::ClientIp;
use crate::forward::UpstreamCall;
use crate::metrics::NO_ROUTE;
use crate::model::Route;
use crate::refusal::{Outcome, Refusal};
use crate::request_id;
use crate::runtime::{Conn, InForce, Shared};

/// What the pipeline knows about one request; each phase fills in what it learns.
pub(super) struct Context<'a> {
    shared: &'a Shared,
    /// The configuration this request is served by, from start to end, whatever reloads.
    live: Arc<InForce>,
    started: Instant,
    request_id: HeaderValue,
    method: http::Method,
    /// The path only: a query string may carry tokens, so it is never logged.
    path: String,
    version: http::Version,
    pub conn: Conn,
    /// The client, after trusted proxies.
    pub client: ClientIp,
    /// The route it matched (or whose path matched, for a 405), once known.
    pub route: Option<Arc<Route>>,
    /// A check that failed on a shadow-mode route, which forwarded it anyway.
    pub shadowed: Option<Refusal>,
    /// Body bytes read.
    pub bytes_in: u64,
    /// The exchange with the upstream, if it was tried.
    pub upstream: Option<UpstreamCall>,
    /// Set once recorded, so `Drop` records only a request that was never answered.
    recorded: bool,
}

/// How a request ended.
enum End<'r> {
    /// Answered with `status`; `outcome` is what the pipeline returned.
    Answered {
        status: StatusCode,
        outcome: &'r Outcome,
        bytes_out: u64,
    },
    /// The sender hung up before the answer (nginx logs this as 499). A claimed event's
    /// forward goes on in a task of its own, so the app may still receive it.
    ClientClosed,
    /// Still running when `shutdown_grace` ran out.
    CutOff,
}

impl<'a> Context<'a> {
    /// A request starts: counted in flight until its context is dropped.
    pub fn new<B>(
        shared: &'a Shared,
        live: Arc<InForce>,
        conn: Conn,
        req: &mut http::Request<B>,
    ) -> Self {
        let started = Instant::now();
        let request_id = request_id::of(req.headers_mut());
        let client = crate::client_ip::client_ip(
            conn.peer.ip(),
            conn.trusted_proxies(&live.gateway),
            req.headers(),
        );
        shared.metrics.in_flight.inc();
        Context {
            shared,
            live,
            started,
            request_id,
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            version: req.version(),
            conn,
            client,
            route: None,
            shadowed: None,
            bytes_in: 0,
            upstream: None,
            recorded: false,
        }
    }

    /// The pipeline's result becomes the sender's answer (marked with the request id), and
    /// the request is recorded.
    pub fn answer(
        mut self,
        mut response: Response<Full<Bytes>>,
        outcome: Outcome,
    ) -> Response<Full<Bytes>> {
        response
            .headers_mut()
            .insert(request_id::X_REQUEST_ID, self.request_id.clone());
        let bytes_out = hyper::body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        self.record(End::Answered {
            status: response.status(),
            outcome: &outcome,
            bytes_out,
        });
        response
    }

    /// The one place a request is counted and logged, whatever its end.
    fn record(&mut self, end: End<'_>) {
        self.recorded = true;
        let elapsed = self.started.elapsed();
        let label = match &end {
            End::Answered { outcome, .. } => counted_as(outcome, self.shadowed.as_ref()),
            End::ClientClosed => Outcome::ClientClosed.label(),
            End::CutOff => "cut_off",
        };
        match &end {
            End::Answered { outcome, .. } => {
                // Counted as a forward only when it was one with no shadowed check.
                let forwarded = **outcome == Outcome::Forwarded && self.shadowed.is_none();
                self.count(label, elapsed, Some(forwarded));
            }
            End::ClientClosed => self.count(label, elapsed, None),
            // Counted apart (`stopped; … cut_off=N`), as a shutdown's figure.
            End::CutOff => {
                self.shared.cut_off.cut_off.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.log(&end, label, elapsed);
    }

    /// Its outcome under its route (`hookgate_requests_total`), its duration, and for a
    /// forward its forward duration. `answered` is `Some(forwarded)` for an answered request;
    /// one dropped before its answer has no duration of its own unless it had a route.
    fn count(&self, label: &'static str, elapsed: Duration, answered: Option<bool>) {
        let metrics = &self.shared.metrics;
        let route = self.route.as_ref();
        let route_metrics = route.map(|r| &self.live.route_metrics[r.index]);
        let route_name = route.map_or(NO_ROUTE, |r| r.name.as_str());
        let forwarded = answered == Some(true);
        match route_metrics {
            Some(m) if forwarded => m.forwarded.inc(),
            _ => metrics
                .requests
                .with_label_values(&[route_name, label])
                .inc(),
        }
        match route_metrics {
            Some(m) => {
                m.request_duration.observe(elapsed.as_secs_f64());
                if forwarded {
                    m.forwarded_duration.observe(elapsed.as_secs_f64());
                }
            }
            None if answered.is_some() => metrics
                .request_duration
                .with_label_values(&[route_name])
                .observe(elapsed.as_secs_f64()),
            None => {}
        }
    }

    /// One access-log line, the same fields for every end. Refusals, upstream failures
    /// (502/504, with their cause), upstream 5xx answers and requests dropped before their
    /// answer are warnings.
    fn log(&self, end: &End<'_>, label: &'static str, elapsed: Duration) {
        let route = self.route.as_ref();
        let upstream = self.upstream.as_ref();
        let upstream_addr = match (upstream, route) {
            (Some(_), Some(r)) => r.upstream.authority.as_str(),
            _ => "",
        };
        // Whole microseconds, as milliseconds with three decimals: `0.244`, not the binary
        // float's `0.24424400000000002`.
        let upstream_ms = upstream.map_or(0.0, |u| u.latency.as_micros() as f64 / 1000.0);
        let upstream_status = upstream.and_then(|u| u.status).map_or(0, |s| s.as_u16());
        let cause = upstream.and_then(|u| u.cause.as_deref()).unwrap_or("");
        let protocol = match self.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        // What was sent: nothing for a request cut off or one whose sender left.
        let (status, bytes_out, reason) = match end {
            End::Answered {
                status,
                outcome,
                bytes_out,
            } => (
                status.as_u16(),
                *bytes_out,
                match outcome {
                    Outcome::Refused(refusal) => refusal.reason(),
                    _ => String::new(),
                },
            ),
            End::ClientClosed => (
                499,
                0,
                "the sender closed the connection before the answer".to_owned(),
            ),
            End::CutOff => (0, 0, "still running when shutdown_grace ran out".to_owned()),
        };
        let warn = !reason.is_empty() || upstream_status >= 500;
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    request_id = self.request_id.to_str().unwrap_or(""),
                    route = route.map_or(NO_ROUTE, |r| r.name.as_str()),
                    client = %self.client,
                    peer = %self.conn.peer.ip(),
                    method = %self.method,
                    path = self.path.as_str(),
                    status,
                    outcome = label,
                    reason = reason.as_str(),
                    bytes_in = self.bytes_in,
                    bytes_out,
                    protocol,
                    tls = self.conn.tls,
                    upstream = upstream_addr,
                    upstream_status,
                    upstream_ms,
                    cause,
                    elapsed_us = elapsed.as_micros() as u64,
                    "{}",
                    label
                )
            };
        }
        if warn {
            line!(warn);
        } else {
            line!(info);
        }
    }
}

impl Drop for Context<'_> {
    /// A request dropped before its answer (hyper drops the handler when the client goes
    /// away, or a shutdown cuts it off) is recorded here.
    fn drop(&mut self) {
        self.shared.metrics.in_flight.dec();
        if self.recorded {
            return;
        }
        if self.shared.cut_off.cutting_off.load(Ordering::SeqCst) {
            self.record(End::CutOff);
        } else {
            self.record(End::ClientClosed);
        }
    }
}

/// The outcome a request is counted and logged under. In shadow mode a request that failed a
/// check is counted under the outcome it would have had, so the numbers match what
/// enforcing would have done.
fn counted_as(outcome: &Outcome, shadowed: Option<&Refusal>) -> &'static str {
    match (outcome, shadowed) {
        (Outcome::Refused(_), _) | (_, None) => outcome.label(),
        (_, Some(shadowed)) => shadowed.label(),
    }
}
