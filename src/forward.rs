//! Forwarding a verified request to the route's upstream and relaying its answer.
//!
//! The request goes out on a keep-alive connection of the route's upstream pool
//! ([`crate::upstream`], one pool per upstream `host:port`). The exact body bytes that were verified are sent; hop-by-hop headers (RFC 9110 §7.6.1) are
//! dropped both ways; `X-Forwarded-For/-Proto/-Host` are set. The upstream's status, headers
//! and body go back unchanged, so the sender's retry logic sees the app's real answer. An
//! unreachable upstream is a 502, one that does not answer in time a 504: never a 2xx the app
//! did not give.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};

use crate::body::{RawBody, UpstreamBody};
use crate::metrics::RouteMetrics;
use crate::model::{Limits, Route, Upstream};
use crate::refusal::Refusal;
use crate::upstream::{UpstreamError, Upstreams};

/// What the gateway knows about the hop the request arrived on.
#[derive(Clone, Copy)]
pub struct Hop {
    /// The TCP peer, appended to `X-Forwarded-For`.
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy, whose `X-Forwarded-*` headers are kept.
    pub peer_trusted: bool,
    /// `https` on a TLS listener, else `http`.
    pub proto: &'static str,
}

/// One exchange with the upstream: the answer, and what the access log and the replay
/// claim need to know of the call.
#[derive(Debug)]
pub struct Exchange {
    /// The upstream's answer, whole, or why there is none.
    pub result: Result<Response<Full<Bytes>>, Refusal>,
    pub call: UpstreamCall,
}

/// How the call to the upstream went.
#[derive(Debug)]
pub struct UpstreamCall {
    /// The status the upstream answered with, if it answered at all (it may have accepted
    /// the event even when relaying its answer then failed).
    pub status: Option<http::StatusCode>,
    /// From sending the request to the whole answer (or the failure).
    pub latency: Duration,
    /// For a 502/504: what went wrong, e.g. `connection refused`, for the log line.
    pub cause: Option<String>,
}

/// A request as it will be sent upstream, before the body: built from the client's by
/// [`prepare`], sent by [`send`] now (sync delivery) or stored and sent later (queued).
#[derive(Debug)]
pub struct Outgoing {
    pub method: Method,
    /// The client's path and query; [`send`] puts the upstream's base path in front.
    pub target: PathAndQuery,
    /// After hop-by-hop hygiene, with `Host` and `X-Forwarded-*` set; `Content-Length` is
    /// set by [`send`].
    pub headers: HeaderMap,
}

/// Sends the request upstream and returns the upstream's answer, whole, within the route's
/// `upstream_timeout`.
pub async fn forward(
    upstreams: &Upstreams,
    route: &Route,
    parts: Parts,
    body: RawBody,
    hop: &Hop,
    limits: &Limits,
    metrics: &RouteMetrics,
) -> Exchange {
    match prepare(route, parts, hop) {
        Ok(outgoing) => {
            let upstream = (&route.upstream, route.limits.upstream_timeout);
            send(upstreams, upstream, outgoing, body, limits, metrics).await
        }
        Err(e) => Exchange {
            result: Err(e),
            call: UpstreamCall {
                status: None,
                latency: Duration::ZERO,
                cause: None,
            },
        },
    }
}

/// Sends a prepared request with `body` to `upstream` (a sync route's, or a queued route's
/// destination's); the answer is read whole within `timeout` (its `upstream_timeout`).
pub async fn send(
    upstreams: &Upstreams,
    (upstream, timeout): (&Upstream, Duration),
    outgoing: Outgoing,
    body: RawBody,
    limits: &Limits,
    metrics: &RouteMetrics,
) -> Exchange {
    let started = Instant::now();
    let request = match upstream_request(upstream, outgoing, body) {
        Ok(r) => r,
        Err(e) => {
            return Exchange {
                result: Err(e),
                call: UpstreamCall {
                    status: None,
                    latency: started.elapsed(),
                    cause: None,
                },
            }
        }
    };
    let mut upstream_status = None;
    let mut cause = None;
    let exchange = async {
        let (response, lease) = upstreams
            .send(upstream, request)
            .await
            .map_err(|e| match e {
                UpstreamError::Connect(e) => {
                    cause = Some(format!("connect: {e}"));
                    Refusal::UpstreamUnreachable
                }
                UpstreamError::Tls(e) => {
                    cause = Some(format!("tls: {e}"));
                    Refusal::UpstreamUnreachable
                }
                UpstreamError::Exchange(e) => {
                    cause = Some(format!("exchange: {e}"));
                    Refusal::UpstreamBadResponse
                }
            })?;
        let (mut head, body) = response.into_parts();
        upstream_status = Some(head.status);
        let limit = usize::try_from(limits.max_response_bytes).unwrap_or(usize::MAX);
        let body = Limited::new(body, limit).collect().await.map_err(|e| {
            cause = Some(format!("answer: {e}"));
            Refusal::UpstreamBadResponse
        })?;
        // Read in full: the connection can carry the next request.
        upstreams.put_back(upstream, lease);
        strip_hop_by_hop(&mut head.headers, &[]);
        Ok::<_, Refusal>(Response::from_parts(head, Full::new(body.to_bytes())))
    };
    let result = match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => {
            cause = Some(format!(
                "no whole answer within upstream_timeout ({})",
                humantime::format_duration(timeout)
            ));
            Err(Refusal::UpstreamTimeout)
        }
    };
    let latency = started.elapsed();
    metrics.upstream_duration.observe(latency.as_secs_f64());
    if let Some(status) = upstream_status {
        metrics.upstream_status(status);
    }
    Exchange {
        result,
        call: UpstreamCall {
            status: upstream_status,
            latency,
            cause,
        },
    }
}

/// The request for the upstream: its base path before the target, the body's length, the
/// prepared head moved (not copied) in.
fn upstream_request(
    upstream: &Upstream,
    outgoing: Outgoing,
    body: RawBody,
) -> Result<http::Request<UpstreamBody>, Refusal> {
    let Outgoing {
        method,
        target,
        mut headers,
    } = outgoing;
    // Origin-form, as sent on an HTTP/1.1 connection to the upstream.
    let target = if upstream.base_path.is_empty() {
        Uri::from(target)
    } else {
        let pq = format!("{}{}", upstream.base_path, target.as_str());
        Uri::from(PathAndQuery::try_from(pq).map_err(|_| Refusal::BadPath)?)
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut request = http::Request::new(body.into_upstream());
    *request.method_mut() = method;
    *request.uri_mut() = target;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The client's request head as the upstream will get it: hop-by-hop headers dropped,
/// `Host` kept (or the upstream's), `X-Forwarded-For/-Proto/-Host` set or extended.
pub fn prepare(route: &Route, parts: Parts, hop: &Hop) -> Result<Outgoing, Refusal> {
    let Parts {
        method,
        uri,
        mut headers,
        ..
    } = parts;
    let target = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));

    // The original host: Host header (HTTP/1.1) or :authority (HTTP/2).
    let original_host = headers.get(header::HOST).cloned().or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });

    // Only a request with a Connection header can name headers to drop.
    let keep = if headers.contains_key(header::CONNECTION) {
        kept_when_named(route)
    } else {
        Vec::new()
    };
    strip_hop_by_hop(&mut headers, &keep);
    drop_underscored(&mut headers, route);
    // The body has been read already: `Expect: 100-continue` was answered by us.
    headers.remove(header::EXPECT);
    headers.remove(header::CONTENT_LENGTH);
    let upstream_host =
        || HeaderValue::from_str(route.upstream.authority.as_str()).map_err(|_| Refusal::BadPath);
    // The sender's Host is kept (apps may check it); without one, the upstream's own.
    let host = match &original_host {
        Some(host) => host.clone(),
        None => upstream_host()?,
    };
    headers.insert(header::HOST, host);

    let peer = HeaderValue::from_str(&hop.peer.to_string()).map_err(|_| Refusal::BadPath)?;
    if hop.peer_trusted {
        // Append our peer to the chain the trusted proxy sent.
        let chain: Vec<&str> = headers
            .get_all(XFF)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let value = if chain.is_empty() {
            peer
        } else {
            HeaderValue::from_str(&format!("{}, {}", chain.join(", "), hop.peer))
                .map_err(|_| Refusal::BadPath)?
        };
        headers.insert(XFF, value);
        if !headers.contains_key(XFP) {
            headers.insert(XFP, HeaderValue::from_static(hop.proto));
        }
        if let (false, Some(h)) = (headers.contains_key(XFH), &original_host) {
            headers.insert(XFH, h.clone());
        }
    } else {
        // An untrusted peer's X-Forwarded-* headers are its own claims: replace them. Its
        // `Forwarded`, `X-Real-IP` and the CDNs' client-address headers are claims too; the
        // app gets the client from X-Forwarded-For, so they are dropped rather than
        // rewritten in a second syntax.
        for name in &CLIENT_ADDRESS_CLAIMS {
            headers.remove(name);
        }
        headers.insert(XFF, peer);
        headers.insert(XFP, HeaderValue::from_static(hop.proto));
        match &original_host {
            Some(h) => headers.insert(XFH, h.clone()),
            None => headers.remove(XFH),
        };
    }
    Ok(Outgoing {
        method,
        target,
        headers,
    })
}

/// Headers a client must not be able to have dropped by naming them in `Connection`: those
/// the route verified or deduplicates by (checked, so they must reach the app as checked)
/// and the client-address headers the gateway read or writes (the client IP was decided
/// from `X-Forwarded-For` before hop-by-hop headers are stripped).
fn kept_when_named(route: &Route) -> Vec<HeaderName> {
    let mut names = vec![XFF, XFP, XFH];
    names.extend(CLIENT_ADDRESS_CLAIMS);
    if let Some(scheme) = &route.scheme {
        names.extend(scheme.signature.source.headers().into_iter().cloned());
        names.extend(scheme.headers_read().cloned());
    }
    if let Some(crate::model::ReplayPolicy {
        key: crate::model::KeySource::Header(h),
        ..
    }) = &route.replay
    {
        names.extend(h.iter().cloned());
    }
    names
}

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
/// RFC 7239: an app may read the client from it as readily as from `X-Forwarded-For`.
const FORWARDED: HeaderName = header::FORWARDED;
/// nginx's convention for the client address.
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers an app or framework may take the client address from, besides `X-Forwarded-For`:
/// dropped when an untrusted peer sends them.
const CLIENT_ADDRESS_CLAIMS: [HeaderName; 8] = [
    FORWARDED,
    X_REAL_IP,
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("fastly-client-ip"),
];

/// Drops every header whose name has an `_`, as nginx does by default
/// (`underscores_in_headers off`), unless the route reads that very name. CGI-style servers
/// (WSGI, PHP, Rack) fold `_` and `-` together, so `X-Acme_Timestamp` would reach such an app
/// as a second copy of the signed `X-Acme-Timestamp`, and `X_Forwarded_For` as a client
/// address the gateway never checked.
fn drop_underscored(headers: &mut HeaderMap, route: &Route) {
    if !headers.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let read = kept_when_named(route);
    let underscored: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_') && !read.contains(k))
        .cloned()
        .collect();
    for name in underscored {
        headers.remove(name);
    }
}

/// The fixed connection-specific fields (RFC 9110 §7.6.1 and the common non-standard ones),
/// as parsed names: removing by name costs a hash and a probe, not a parse.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection`, every header it names except
/// those in `keep` (headers that were verified), and the fixed list of connection-specific
/// fields.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep: &[HeaderName]) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|name| !keep.contains(name))
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("x-lahza-signature", "abc".parse().unwrap());
        strip_hop_by_hop(&mut h, &[]);
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("x-lahza-signature").unwrap(), "abc");
    }

    #[test]
    fn verified_headers_survive_being_named_in_connection() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "x-lahza-signature, x-private".parse().unwrap(),
        );
        h.insert("x-private", "1".parse().unwrap());
        h.insert("x-lahza-signature", "abc".parse().unwrap());
        strip_hop_by_hop(&mut h, &[HeaderName::from_static("x-lahza-signature")]);
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("x-lahza-signature").unwrap(), "abc");
    }
}
