//! `hookgate sign --handshake`: the sender's side of a route's handshake
//! (`model::handshake`), which the gateway answers itself (`crate::handshake`). The request
//! the sender sends, with a fresh random challenge, signed like an event where the handshake
//! is signed (Slack, Zoom, Discord's two kinds, Twitch, Event Grid), and the answer the gateway gives it,
//! computed here the way the sender checks it (Zoom's and X's with the route's secret,
//! eBay's with its verification token and endpoint).
//! Printed as a curl command line followed by the expected answer as shell comments, so the
//! output can be run as it is.

use http::{HeaderName, HeaderValue, Method};
use serde_json::json;

use super::{Request, Sender, SignError, Signed};
use crate::model::handshake::{Handshake, HandshakeKind};
use crate::model::routes::PathPattern;
use crate::model::Gateway;

/// A handshake as the sender plays it.
#[derive(Debug)]
pub struct Play {
    /// What the sender sends.
    pub request: Signed,
    /// What the gateway answers, if the route is configured as the sender expects.
    pub answer: Answer,
}

/// The answer to a handshake: its status, the headers it must carry, its body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    fn ok(body: String) -> Answer {
        Answer {
            status: 200,
            headers: Vec::new(),
            body,
        }
    }
}

/// The route's handshake at `now`, played with the key, path and extra headers `request`
/// gives (its body and method are the handshake's own). `verify_token`: Meta's, Strava's and
/// eBay's, as configured.
pub fn play(
    sender: &Sender<'_>,
    request: &Request<'_>,
    verify_token: Option<&[u8]>,
    now: std::time::SystemTime,
) -> Result<Play, SignError> {
    let route = sender.route;
    let hs = route
        .handshake
        .as_ref()
        .ok_or_else(|| SignError::NoHandshake {
            route: route.name.clone(),
        })?;
    let challenge = challenge()?;
    if hs.kind.signed() {
        return signed(sender, request, hs.kind, &challenge, now);
    }
    let secret_mac = |data: &str| {
        route
            .scheme
            .as_ref()
            .and_then(|s| s.mac_with_first_key(data.as_bytes()))
            .ok_or_else(|| SignError::Scheme(format!("route `{}` has no HMAC secret", route.name)))
    };
    let (query, headers, answer) = question(hs, verify_token, &challenge, &secret_mac)?;
    let mut target = route_path(sender, request.path);
    if !query.is_empty() {
        target.push(if target.contains('?') { '&' } else { '?' });
        target.push_str(&query);
    }
    let mut given = super::parse_headers(request.headers)?;
    for (name, value) in headers {
        given.insert(name, value);
    }
    let request = Signed {
        method: hs.kind.method(),
        target,
        headers: given.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
        body: Vec::new(),
        notes: Vec::new(),
    };
    Ok(Play { request, answer })
}

type Question = (String, Vec<(HeaderName, HeaderValue)>, Answer);

/// CloudEvents' abuse-protection OPTIONS from the route's first origin, and its grant.
fn cloudevents(hs: &Handshake) -> Result<Question, SignError> {
    let origin = hs.origins.first().map(String::as_str).unwrap_or_default();
    let rate = hs.rate.map_or_else(|| "*".to_owned(), |r| r.to_string());
    let answer = Answer {
        status: 200,
        headers: vec![
            ("webhook-allowed-origin".into(), origin.to_owned()),
            ("webhook-allowed-rate".into(), rate),
        ],
        body: String::new(),
    };
    let value = HeaderValue::from_str(origin)
        .map_err(|e| SignError::Scheme(format!("webhook-request-origin: {e}")))?;
    Ok((
        String::new(),
        vec![(HeaderName::from_static("webhook-request-origin"), value)],
        answer,
    ))
}

/// The route's `verify_token` as the sender holds it, in text.
fn text_token(verify_token: Option<&[u8]>) -> Result<&str, SignError> {
    verify_token
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or_else(|| {
            SignError::Scheme("the route's handshake has no verify_token in text".into())
        })
}

/// eBay's `GET ?challenge_code=C`, and the answer eBay checks: hex SHA-256 of the code, the
/// verification token and the endpoint registered with eBay, one after the other.
fn ebay(hs: &Handshake, token: &str, c: &str) -> Question {
    use sha2::Digest as _;
    let endpoint = hs.endpoint.as_deref().unwrap_or_default();
    let digest = sha2::Sha256::digest(format!("{c}{token}{endpoint}"));
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("challenge_code", c)
        .finish();
    let answer = json!({ "challengeResponse": hex::encode(digest) }).to_string();
    (query, Vec::new(), Answer::ok(answer))
}

/// An unsigned handshake: its query, its headers, and the answer.
fn question(
    hs: &Handshake,
    verify_token: Option<&[u8]>,
    c: &str,
    secret_mac: &dyn Fn(&str) -> Result<Vec<u8>, SignError>,
) -> Result<Question, SignError> {
    let query = |pairs: &[(&str, &str)]| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    };
    let header = |name: &'static str, value: &str| -> Result<_, SignError> {
        let value =
            HeaderValue::from_str(value).map_err(|e| SignError::Scheme(format!("{name}: {e}")))?;
        Ok(vec![(HeaderName::from_static(name), value)])
    };
    Ok(match hs.kind {
        HandshakeKind::Meta | HandshakeKind::Strava => {
            let token = text_token(verify_token)?;
            let q = query(&[
                ("hub.mode", "subscribe"),
                ("hub.challenge", c),
                ("hub.verify_token", token),
            ]);
            let answer = match hs.kind {
                HandshakeKind::Strava => json!({ "hub.challenge": c }).to_string(),
                _ => c.to_owned(),
            };
            (q, Vec::new(), Answer::ok(answer))
        }
        HandshakeKind::XCrc => {
            use base64::Engine as _;
            let token = format!("sha256={}", crate::scheme::BASE64.encode(secret_mac(c)?));
            let answer = json!({ "response_token": token }).to_string();
            (query(&[("crc_token", c)]), Vec::new(), Answer::ok(answer))
        }
        HandshakeKind::Challenge => (query(&[("challenge", c)]), Vec::new(), Answer::ok(c.into())),
        HandshakeKind::GraphValidation => (
            query(&[("validationToken", c)]),
            Vec::new(),
            Answer::ok(c.into()),
        ),
        HandshakeKind::Okta => (
            String::new(),
            header("x-okta-verification-challenge", c)?,
            Answer::ok(json!({ "verification": c }).to_string()),
        ),
        HandshakeKind::TrelloHead => (String::new(), Vec::new(), Answer::ok(String::new())),
        HandshakeKind::Worldline => (
            String::new(),
            header("x-gcs-webhooks-endpoint-verification", c)?,
            Answer::ok(c.into()),
        ),
        HandshakeKind::CloudEvents => cloudevents(hs)?,
        HandshakeKind::EbayChallenge => ebay(hs, text_token(verify_token)?, c),
        signed => {
            return Err(SignError::Scheme(format!(
                "the {} handshake is signed",
                signed.name()
            )))
        }
    })
}

/// A signed handshake: its event, signed by [`Sender::sign`] like any other.
fn signed(
    sender: &Sender<'_>,
    request: &Request<'_>,
    kind: HandshakeKind,
    c: &str,
    now: std::time::SystemTime,
) -> Result<Play, SignError> {
    let mut headers = request.headers.to_vec();
    headers.push("content-type: application/json".into());
    let zoom_mac = || {
        sender
            .route
            .scheme
            .as_ref()
            .and_then(|s| s.mac_with_first_key(c.as_bytes()))
            .ok_or_else(|| SignError::Scheme("the route has no HMAC secret".into()))
    };
    let (body, answer) = event(kind, c, now, &mut headers, &zoom_mac)?;
    let body = body.to_string().into_bytes();
    let event = Request {
        method: Some("POST"),
        body: &body,
        headers: &headers,
        ..*request
    };
    let request = sender.sign(&event, now)?;
    Ok(Play { request, answer })
}

/// A signed handshake's event as its sender writes it (with the headers that mark it), and
/// the gateway's answer; `zoom_mac`: the route's MAC of the challenge.
fn event(
    kind: HandshakeKind,
    c: &str,
    now: std::time::SystemTime,
    headers: &mut Vec<String>,
    zoom_mac: &dyn Fn() -> Result<Vec<u8>, SignError>,
) -> Result<(serde_json::Value, Answer), SignError> {
    Ok(match kind {
        HandshakeKind::Slack => (
            json!({ "token": "hookgate-sign", "challenge": c, "type": "url_verification" }),
            Answer::ok(c.to_owned()),
        ),
        HandshakeKind::Zoom => {
            let secret = zoom_mac()?;
            let at = now
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            let answer = json!({ "plainToken": c, "encryptedToken": hex::encode(secret) });
            (
                json!({ "event": "endpoint.url_validation", "payload": { "plainToken": c }, "event_ts": at }),
                Answer::ok(answer.to_string()),
            )
        }
        HandshakeKind::Discord => (
            json!({ "type": 1, "id": c, "application_id": "hookgate-sign" }),
            Answer::ok(json!({ "type": 1 }).to_string()),
        ),
        HandshakeKind::DiscordEvents => (
            json!({ "version": 1, "application_id": "hookgate-sign", "type": 0 }),
            Answer {
                status: 204,
                headers: Vec::new(),
                body: String::new(),
            },
        ),
        HandshakeKind::Twitch => {
            headers.push("twitch-eventsub-message-type: webhook_callback_verification".into());
            headers.push(format!("twitch-eventsub-message-id: {c}"));
            let subscription =
                json!({ "id": c, "status": "webhook_callback_verification_pending" });
            (
                json!({ "challenge": c, "subscription": subscription }),
                Answer::ok(c.to_owned()),
            )
        }
        HandshakeKind::EventGrid => {
            headers.push("aeg-event-type: SubscriptionValidation".into());
            let event = json!({
                "id": c,
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "subject": "",
                "data": { "validationCode": c },
                "dataVersion": "1",
            });
            (
                json!([event]),
                Answer::ok(json!({ "validationResponse": c }).to_string()),
            )
        }
        HandshakeKind::SnsSubscription => {
            return Err(SignError::Scheme(
                "SNS signs its confirmations with AWS's own key: hookgate sign cannot play it"
                    .into(),
            ))
        }
        unsigned => {
            return Err(SignError::Scheme(format!(
                "the {} handshake is not signed",
                unsigned.name()
            )))
        }
    })
}

/// The path the handshake goes to: given, the route's exact path, or under its prefix.
fn route_path(sender: &Sender<'_>, path: Option<&str>) -> String {
    match (path, &sender.route.path) {
        (Some(p), _) => p.to_owned(),
        (None, PathPattern::Exact(p)) => p.clone(),
        (None, PathPattern::Prefix(base)) => format!("{base}/"),
    }
}

/// A fresh challenge: 24 hex digits from the operating system's random source.
fn challenge() -> Result<String, SignError> {
    let mut bytes = [0u8; 12];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| SignError::Scheme(format!("no random source: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Where the gateway is, for the curl line: the route's `public_url`, else the first
/// listener (an unspecified address as loopback).
pub fn default_base(gateway: &Gateway, sender: &Sender<'_>) -> String {
    if let Some(url) = sender
        .route
        .scheme
        .as_ref()
        .and_then(|s| s.public_url.clone())
    {
        return url.trim_end_matches('/').to_owned();
    }
    let Some(listener) = gateway.listeners.first() else {
        return "http://127.0.0.1".into();
    };
    let mut addr = listener.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if listener.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

impl Play {
    /// The request as one curl command line sent to `base` (`http://host:port`), then the
    /// answer expected, as shell comments (`# expect status: 200`, `# expect header: N: V`,
    /// `# expect body: ...`): the whole text can be run by a shell.
    pub fn curl(&self, base: &str) -> String {
        let r = &self.request;
        let mut words: Vec<String> = vec!["curl".into(), "-sS".into(), "-i".into()];
        match r.method {
            Method::GET => {}
            Method::HEAD => words.push("--head".into()),
            ref m => words.extend(["-X".into(), m.as_str().to_owned()]),
        }
        for (name, value) in &r.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            words.extend(["-H".into(), quote(&format!("{name}: {value}"))]);
        }
        if r.method == Method::POST {
            words.extend([
                "--data-binary".into(),
                quote(&String::from_utf8_lossy(&r.body)),
            ]);
        }
        words.push(quote(&format!("{base}{}", r.target)));
        let mut out = words.join(" ") + "\n";
        out += &format!("# expect status: {}\n", self.answer.status);
        for (name, value) in &self.answer.headers {
            out += &format!("# expect header: {name}: {value}\n");
        }
        out += &format!("# expect body: {}\n", self.answer.body);
        out
    }
}

/// `text` as one shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_word_keeps_its_quotes() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
