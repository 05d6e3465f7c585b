//! `hookgate explain`: why was this request refused? Given the configuration and a captured
//! request (a raw HTTP file), it tells each step as the gateway takes it: the route, the
//! client against the allowlist, a handshake, then the scheme's own steps (where the
//! signature came from and how it decoded, the timestamp and its skew, each signed part with
//! its bytes, each key by index), the replay key, and the verdict with the refusal's label,
//! the same one the access log and `/metrics` carry.

use std::net::IpAddr;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::model::routes::Match;
use crate::model::{Gateway, Route};
use crate::refusal::Refusal;
use crate::scheme::explain::shown;
use crate::scheme::{JsonBody, RequestView};

/// A request as captured: its request line, headers and exact body bytes.
pub struct Captured {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Reads a raw HTTP/1.x request: the request line, header lines, an empty line, and the
/// body, byte for byte (CRLF or LF line ends in the head; the body is taken as it is).
pub fn parse_raw_http(raw: &[u8]) -> Result<Captured, String> {
    let (head, body) = split_head(raw).ok_or("no empty line ends the request's head")?;
    let head = std::str::from_utf8(head).map_err(|_| "the request's head is not text")?;
    let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
    let request_line = lines.next().ok_or("no request line")?;
    let mut words = request_line.split(' ');
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Err(format!("`{request_line}` is not `METHOD /path HTTP/1.1`"));
    };
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| format!("bad method `{method}`"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("`{line}` is not a `Name: value` header"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("bad header name `{name}`"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("bad value for header {name}"))?;
        headers.append(name, value);
    }
    Ok(Captured {
        method,
        path_and_query: target.to_owned(),
        headers,
        body: body.to_vec(),
    })
}

fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    for (sep, len) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(at) = raw.windows(len).position(|w| w == sep) {
            return Some((&raw[..at], &raw[at + len..]));
        }
    }
    None
}

/// What to explain: the captured request, the route (by name, or found by its path), the
/// client address (for the allowlist) and the clock.
pub struct Asked<'a> {
    pub request: &'a Captured,
    pub route: Option<&'a str>,
    pub client: Option<IpAddr>,
    pub now: SystemTime,
    /// For a scheme whose key is fetched: the document its key URL served (`--key-file`);
    /// `explain` fetches nothing.
    pub key_doc: Option<&'a [u8]>,
}

/// A scheme whose key is fetched: the URL the request names (or the route's), whether it is
/// pinned, and the document given with `--key-file`, then `verify`'s verdict with it.
fn fetched_key(
    out: &mut Vec<String>,
    scheme: &crate::scheme::Scheme,
    view: &RequestView<'_>,
    asked: &Asked<'_>,
) -> Result<crate::scheme::Verified, crate::scheme::VerifyError> {
    use crate::scheme::VerifyError;
    match scheme.key_url(view, asked.now) {
        Ok(Some(url)) => out.push(format!("key: from {url} (a pinned host and path)")),
        Ok(None) => {}
        Err(e) => {
            out.push(format!("key: none fetched: {e}"));
            return Err(e);
        }
    }
    let crate::scheme::Keys::Fetched(key) = &scheme.keys else {
        return scheme.verify(view, asked.now);
    };
    let Some(bytes) = asked.key_doc else {
        out.push("key: not fetched by explain; give the document with --key-file".into());
        return Err(VerifyError::KeyRefused(
            "no key document given (--key-file)".into(),
        ));
    };
    match crate::scheme::fetched::KeyDoc::parse(key, bytes) {
        Ok(doc) => {
            out.push(format!("key: {}", doc.describe()));
            scheme.verify_with(view, asked.now, Some(&doc))
        }
        Err(e) => {
            out.push(format!("key: the document given cannot be read: {e}"));
            Err(VerifyError::KeyRefused(e))
        }
    }
}

/// Each step, as lines of text.
pub fn explain(gateway: &Gateway, asked: &Asked<'_>) -> Result<Vec<String>, String> {
    let req = asked.request;
    let path = crate::scheme::params::path(&req.path_and_query);
    let route = find_route(gateway, asked.route, &req.method, path)?;
    let mut out = vec![format!(
        "route: {} ({} {})",
        route.name, req.method, req.path_and_query
    )];
    if let Some(verdict) = allowlist(&mut out, route, asked.client) {
        out.push(verdict);
        return Ok(out);
    }
    if let Some(verdict) = handshake(&mut out, route, req) {
        out.push(verdict);
        return Ok(out);
    }
    let body = crate::body::RawBody::from(req.body.clone());
    let json = JsonBody::default();
    let view = RequestView {
        method: &req.method,
        headers: &req.headers,
        body: &body,
        path_and_query: &req.path_and_query,
        json: &json,
    };
    let Some(scheme) = &route.scheme else {
        out.push("verify: none (the allowlist is the route's only check)".into());
        out.push("verdict: passes to delivery".into());
        return Ok(out);
    };
    let mut explained = scheme.explain(&view, asked.now);
    out.extend(explained.steps);
    if scheme.fetches_key() {
        explained.verdict = fetched_key(&mut out, scheme, &view, asked);
    }
    let signature = match &explained.verdict {
        Ok(v) => v.signature.clone(),
        Err(e) => {
            let refusal = Refusal::Verify(e.clone());
            out.push(format!(
                "verdict: refused, {}: {}",
                refusal.label(),
                refusal.reason()
            ));
            return Ok(out);
        }
    };
    if let Some(replay) = &route.replay {
        out.push(match replay.key_bytes(&view, &signature) {
            Ok(Some(key)) => format!("replay key: {}", shown(&key)),
            Ok(None) => format!(
                "replay key: missing ({})",
                Refusal::ReplayKeyMissing.label()
            ),
            Err(e) => format!("replay key: {e}"),
        });
    }
    out.push(format!(
        "verdict: verified by key {}",
        explained.verdict.map(|v| v.key_index).unwrap_or_default()
    ));
    Ok(out)
}

/// The allowlist step; `Some(verdict)` if it refuses.
fn allowlist(out: &mut Vec<String>, route: &Route, client: Option<IpAddr>) -> Option<String> {
    match (&route.allow_ips, client) {
        (None, _) => out.push("allowlist: none (any client)".into()),
        (Some(_), None) => out.push("allowlist: set; not checked (give --client ADDRESS)".into()),
        (Some(nets), Some(ip)) if nets.iter().any(|n| n.contains(&ip)) => {
            out.push(format!("allowlist: {ip} is allowed"))
        }
        (Some(_), Some(ip)) => {
            out.push(format!("allowlist: {ip} is NOT allowed"));
            return Some(format!(
                "verdict: refused, {}",
                Refusal::IpNotAllowed.label()
            ));
        }
    }
    None
}

/// The unsigned-handshake step; `Some(verdict)` if the request is the handshake.
fn handshake(out: &mut Vec<String>, route: &Route, req: &Captured) -> Option<String> {
    let hs = route.handshake.as_ref()?;
    out.push(format!(
        "handshake: {} (answered by the gateway)",
        hs.kind.name()
    ));
    let answered = crate::handshake::before_body(
        hs,
        &req.method,
        &req.path_and_query,
        &req.headers,
        route.scheme.as_ref(),
    );
    match answered {
        Ok(Some(r)) => Some(format!(
            "verdict: a handshake, answered {}",
            r.status().as_u16()
        )),
        Err(refusal) => Some(format!(
            "verdict: refused, {}: {}",
            refusal.label(),
            refusal.reason()
        )),
        Ok(None) => None,
    }
}

/// The route named, or the one the gateway would pick for the method and path.
fn find_route<'g>(
    gateway: &'g Gateway,
    name: Option<&str>,
    method: &Method,
    path: &str,
) -> Result<&'g Route, String> {
    if let Some(name) = name {
        return gateway
            .routes
            .routes()
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.as_ref())
            .ok_or_else(|| format!("no route named `{name}`"));
    }
    match gateway.routes.lookup(method, path) {
        Match::Found(route) => Ok(route.as_ref()),
        Match::MethodNotAllowed { route, .. } => Err(format!(
            "route {} does not take {method} ({})",
            route.name,
            Refusal::MethodNotAllowed(Vec::new()).label()
        )),
        Match::NotFound => Err(format!(
            "no route for {path} ({})",
            Refusal::NoRoute.label()
        )),
        Match::BadPath => Err(format!(
            "{path} is not in normal form ({})",
            Refusal::BadPath.label()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_request_is_read_with_its_exact_body() {
        let raw = b"POST /hooks/a?x=1 HTTP/1.1\r\nHost: h\r\nX-Sig: abc\r\n\r\n{\"a\":1}\r\n";
        let c = parse_raw_http(raw).unwrap();
        assert_eq!(c.method, Method::POST);
        assert_eq!(c.path_and_query, "/hooks/a?x=1");
        assert_eq!(c.headers["x-sig"], "abc");
        assert_eq!(c.body, b"{\"a\":1}\r\n", "the body's bytes as they are");
        let lf = parse_raw_http(b"POST / HTTP/1.1\nA: b\n\nbody").unwrap();
        assert_eq!(lf.body, b"body");
        assert!(parse_raw_http(b"POST / HTTP/1.1\r\nA b\r\n\r\n").is_err());
        assert!(parse_raw_http(b"no head end").is_err());
    }
}
