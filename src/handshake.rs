//! Handshakes answered by the gateway: the questions senders ask an endpoint apart from
//! their events (Meta's `hub.challenge`, X's CRC, eBay's `challenge_code`, Slack's
//! `url_verification`, Zoom's URL validation, Discord's PING, ...). Answering them here means
//! a queued route, whose app answers nothing, can take these senders, and no app
//! re-implements them.
//!
//! Unsigned handshakes carry nothing to verify and are answered right after the allowlist,
//! before the body is read; a token the operator set is compared in constant time (Meta's
//! verify token) or hashed into the answer (eBay's verification token). Signed ones come like
//! events and are answered only once the request verified. Any value echoed back is bounded
//! in length and character set and answered as `text/plain` with `X-Content-Type-Options:
//! nosniff`, or inside JSON, never reflected raw. A request that is not the route's handshake
//! goes on down the pipeline.

use std::borrow::Cow;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::model::handshake::{Handshake, HandshakeKind};
use crate::refusal::Refusal;
use crate::scheme::params::{self, Param};
use crate::scheme::{RequestView, Scheme};

/// The longest challenge echoed back.
pub const MAX_CHALLENGE: usize = 512;

type Answer = Result<Option<Response<Full<Bytes>>>, Refusal>;

/// An unsigned handshake, from the request line and headers alone: its answer, a refusal
/// (a wrong verify token, a challenge too long or of other characters), or `None`: not the
/// handshake, go on.
pub fn before_body(
    hs: &Handshake,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    scheme: Option<&Scheme>,
) -> Answer {
    if hs.kind.signed() || *method != hs.kind.method() {
        return Ok(None);
    }
    let query = params::query(path_and_query);
    let param = |name: &str| one_param(query, name);
    match hs.kind {
        HandshakeKind::Meta | HandshakeKind::Strava => {
            let Some(challenge) = param("hub.challenge")? else {
                return Ok(None);
            };
            if param("hub.mode")?.as_deref() != Some("subscribe") {
                return Err(refused("hub.mode is not subscribe"));
            }
            let token = param("hub.verify_token")?.unwrap_or_default();
            let expected = hs.verify_token.unwrap_or_default();
            let given: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
            if !bool::from(given.ct_eq(&expected)) {
                return Err(refused("hub.verify_token does not match"));
            }
            let challenge = checked(&challenge)?;
            Ok(Some(match hs.kind {
                HandshakeKind::Strava => json_answer(json!({ "hub.challenge": challenge })),
                _ => text(challenge),
            }))
        }
        HandshakeKind::XCrc => {
            let Some(token) = param("crc_token")? else {
                return Ok(None);
            };
            let token = checked(&token)?;
            let mac = scheme
                .and_then(|s| s.mac_with_first_key(token.as_bytes()))
                .ok_or_else(|| refused("the route has no secret to answer with"))?;
            use base64::Engine as _;
            let response = format!("sha256={}", crate::scheme::BASE64.encode(mac));
            Ok(Some(json_answer(json!({ "response_token": response }))))
        }
        HandshakeKind::Challenge => echo(param("challenge")?),
        HandshakeKind::GraphValidation => echo(param("validationToken")?),
        HandshakeKind::Okta => {
            let Some(value) = one_header(headers, "x-okta-verification-challenge")? else {
                return Ok(None);
            };
            Ok(Some(json_answer(
                json!({ "verification": checked(value)? }),
            )))
        }
        HandshakeKind::TrelloHead => Ok(Some(empty(StatusCode::OK))),
        HandshakeKind::Worldline => {
            let value = one_header(headers, "x-gcs-webhooks-endpoint-verification")?;
            echo(value.map(Cow::Borrowed))
        }
        HandshakeKind::CloudEvents => cloudevents(hs, headers),
        HandshakeKind::EbayChallenge => match param("challenge_code")? {
            Some(code) => ebay(hs, checked(&code)?),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

/// AWS SNS's subscription handshake, once the message verified: the `SubscribeURL` of a
/// `SubscriptionConfirmation`, which the gateway confirms (an I/O the pipeline makes);
/// `None` for any other message, which goes on to the app.
pub fn sns_subscribe_url<'a>(hs: &Handshake, req: &RequestView<'a>) -> Option<&'a str> {
    if hs.kind != HandshakeKind::SnsSubscription {
        return None;
    }
    let doc = req.json().ok()?;
    if doc.get("Type")?.as_str()? != "SubscriptionConfirmation" {
        return None;
    }
    doc.get("SubscribeURL")?.as_str()
}

/// A signed handshake, once the request verified: its answer, or `None`: an event.
pub fn after_verify(hs: &Handshake, req: &RequestView<'_>, scheme: Option<&Scheme>) -> Answer {
    if !hs.kind.signed() || *req.method != hs.kind.method() {
        return Ok(None);
    }
    // A body that is not strict JSON is no handshake; the pipeline decides what it is.
    let field = |pointer: &str| req.json().ok().and_then(|doc| doc.pointer(pointer));
    let text_field = |pointer: &str| field(pointer).and_then(Value::as_str);
    match hs.kind {
        HandshakeKind::Slack if text_field("/type") == Some("url_verification") => {
            let challenge = text_field("/challenge").ok_or_else(|| refused("no challenge"))?;
            Ok(Some(text(checked(challenge)?)))
        }
        HandshakeKind::Zoom if text_field("/event") == Some("endpoint.url_validation") => {
            let plain = text_field("/payload/plainToken")
                .ok_or_else(|| refused("no payload.plainToken"))?;
            let plain = checked(plain)?;
            let mac = scheme
                .and_then(|s| s.mac_with_first_key(plain.as_bytes()))
                .ok_or_else(|| refused("the route has no secret to answer with"))?;
            Ok(Some(json_answer(
                json!({ "plainToken": plain, "encryptedToken": hex::encode(mac) }),
            )))
        }
        // An interaction PING; a webhook event (type 1 too, on the other kind of endpoint)
        // carries an `event` and goes on to the app.
        HandshakeKind::Discord
            if field("/type").and_then(Value::as_u64) == Some(1) && field("/event").is_none() =>
        {
            Ok(Some(json_answer(json!({ "type": 1 }))))
        }
        HandshakeKind::DiscordEvents if field("/type").and_then(Value::as_u64) == Some(0) => {
            let mut answer = empty(StatusCode::NO_CONTENT);
            answer.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(Some(answer))
        }
        HandshakeKind::Twitch => {
            let kind = one_header(req.headers, "twitch-eventsub-message-type")?;
            if kind != Some("webhook_callback_verification") {
                return Ok(None);
            }
            let challenge = text_field("/challenge").ok_or_else(|| refused("no challenge"))?;
            Ok(Some(text(checked(challenge)?)))
        }
        HandshakeKind::EventGrid => {
            if one_header(req.headers, "aeg-event-type")? != Some("SubscriptionValidation") {
                return Ok(None);
            }
            let only = field("").and_then(Value::as_array).filter(|a| a.len() == 1);
            let event = only
                .and_then(|a| a.first())
                .ok_or_else(|| refused("not one event"))?;
            if event.pointer("/eventType").and_then(Value::as_str)
                != Some("Microsoft.EventGrid.SubscriptionValidationEvent")
            {
                return Err(refused("not a SubscriptionValidationEvent"));
            }
            let code = event
                .pointer("/data/validationCode")
                .and_then(Value::as_str)
                .ok_or_else(|| refused("no data.validationCode"))?;
            Ok(Some(json_answer(
                json!({ "validationResponse": checked(code)? }),
            )))
        }
        _ => Ok(None),
    }
}

/// CloudEvents' abuse protection: grant the configured origins, at the configured rate.
fn cloudevents(hs: &Handshake, headers: &HeaderMap) -> Answer {
    let Some(origin) = one_header(headers, "webhook-request-origin")? else {
        return Ok(None);
    };
    if !hs.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
        return Err(refused(
            "WebHook-Request-Origin is not one this route grants",
        ));
    }
    let mut response = empty(StatusCode::OK);
    let h = response.headers_mut();
    h.insert(
        "webhook-allowed-origin",
        HeaderValue::from_str(origin).map_err(|_| refused("origin"))?,
    );
    let rate = hs.rate.map_or_else(|| "*".to_owned(), |r| r.to_string());
    h.insert(
        "webhook-allowed-rate",
        HeaderValue::from_str(&rate).map_err(|_| refused("rate"))?,
    );
    h.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    Ok(Some(response))
}

/// eBay's challenge: `{"challengeResponse": hex(SHA-256(code ‖ token ‖ endpoint))}`, as
/// eBay's own SDK computes it: no separators, the endpoint exactly as registered with eBay.
fn ebay(hs: &Handshake, code: &str) -> Answer {
    let (Some(token), Some(endpoint)) = (&hs.answer_token, &hs.endpoint) else {
        return Err(refused(
            "the route has no verify token and endpoint to answer with",
        ));
    };
    let digest = sha2::Sha256::new()
        .chain_update(code)
        .chain_update(token.expose())
        .chain_update(endpoint)
        .finalize();
    Ok(Some(json_answer(
        json!({ "challengeResponse": hex::encode(digest) }),
    )))
}

/// An echo handshake: the value as text, if the request carries it.
fn echo(value: Option<Cow<'_, str>>) -> Answer {
    match value {
        None => Ok(None),
        Some(v) => Ok(Some(text(checked(&v)?))),
    }
}

/// A value fit to be echoed: 1 to [`MAX_CHALLENGE`] bytes of letters, digits and
/// ` -._~:+/=` (what senders' challenges, tokens and codes are made of).
fn checked(value: &str) -> Result<&str, Refusal> {
    let fits = !value.is_empty()
        && value.len() <= MAX_CHALLENGE
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" -._~:+/=".contains(&b));
    if fits {
        Ok(value)
    } else {
        Err(refused(
            "the challenge is too long or holds characters no sender sends",
        ))
    }
}

/// The one value of a query parameter; twice is refused (which would the sender mean?).
fn one_param<'q>(query: &'q str, name: &str) -> Result<Option<Cow<'q, str>>, Refusal> {
    match params::param(query.as_bytes(), name) {
        Param::Absent => Ok(None),
        Param::One(value) => Ok(Some(value)),
        Param::Repeated => Err(refused("a handshake parameter is repeated")),
    }
}

/// The one value of a header, as text; twice is refused.
fn one_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(refused("a handshake header is repeated"));
    }
    match first {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| refused("a handshake header is not text")),
    }
}

fn refused(why: &'static str) -> Refusal {
    Refusal::Handshake(why)
}

fn text(value: &str) -> Response<Full<Bytes>> {
    answer(
        Bytes::copy_from_slice(value.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

fn json_answer(value: Value) -> Response<Full<Bytes>> {
    answer(Bytes::from(value.to_string()), "application/json")
}

fn answer(body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::RawBody;
    use crate::model::handshake::AnswerToken;
    use crate::scheme::JsonBody;

    /// eBay's verification token in the vector of its Node SDK's tests.
    const EBAY_TOKEN: &str = "71745723-d031-455c-bfa5-f90d11b4f20a";

    fn hs(kind: HandshakeKind) -> Handshake {
        Handshake {
            kind,
            verify_token: Some(sha2::Sha256::digest(b"meta-verify").into()),
            answer_token: Some(AnswerToken::new(EBAY_TOKEN.into())),
            endpoint: Some("http://www.testendpoint.com/webhook".into()),
            origins: vec!["eventgrid.azure.net".into()],
            rate: None,
            method_for_handshake_only: false,
        }
    }

    /// Request headers from name/value pairs, repeats kept.
    fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    /// The answer's status and body, or the refusal's label; `None`: not the handshake.
    fn before(
        kind: HandshakeKind,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Option<Result<(u16, String), &'static str>> {
        let map = header_map(headers);
        match before_body(&hs(kind), &method, target, &map, None) {
            Ok(None) => None,
            Ok(Some(r)) => Some(Ok((r.status().as_u16(), body_of(r)))),
            Err(refusal) => Some(Err(refusal.label())),
        }
    }

    /// The answer's body (a `Full` body is ready at once).
    fn body_of(r: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt as _;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let collected = runtime
            .block_on(r.into_body().collect())
            .unwrap_or_else(|never| match never {});
        String::from_utf8(collected.to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn metas_challenge_is_echoed_only_for_its_verify_token() {
        use HandshakeKind::Meta;
        let ok = "/h?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meta-verify";
        assert_eq!(
            before(Meta, Method::GET, ok, &[]),
            Some(Ok((200, "1158201444".into())))
        );
        let wrong = "/h?hub.mode=subscribe&hub.challenge=1&hub.verify_token=meta-verifx";
        assert_eq!(
            before(Meta, Method::GET, wrong, &[]),
            Some(Err("handshake_refused"))
        );
        let no_token = "/h?hub.mode=subscribe&hub.challenge=1";
        assert_eq!(
            before(Meta, Method::GET, no_token, &[]),
            Some(Err("handshake_refused"))
        );
        let other_mode = "/h?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=meta-verify";
        assert_eq!(
            before(Meta, Method::GET, other_mode, &[]),
            Some(Err("handshake_refused"))
        );
        // A GET without a challenge, and a POST, are not the handshake.
        assert_eq!(before(Meta, Method::GET, "/h", &[]), None);
        assert_eq!(before(Meta, Method::POST, ok, &[]), None);
        // Strava answers in JSON.
        assert_eq!(
            before(HandshakeKind::Strava, Method::GET, ok, &[]),
            Some(Ok((200, r#"{"hub.challenge":"1158201444"}"#.into())))
        );
    }

    #[test]
    fn an_echoed_value_is_bounded_in_length_and_characters() {
        use HandshakeKind::Challenge;
        let long = format!("/h?challenge={}", "a".repeat(MAX_CHALLENGE + 1));
        let max = format!("/h?challenge={}", "a".repeat(MAX_CHALLENGE));
        assert!(matches!(
            before(Challenge, Method::GET, &max, &[]),
            Some(Ok((200, _)))
        ));
        for target in [
            long.as_str(),
            "/h?challenge=%3Cscript%3Ealert(1)%3C/script%3E",
            "/h?challenge=a%0D%0ASet-Cookie:x",
            "/h?challenge=",
            "/h?challenge=a&challenge=b",
        ] {
            assert_eq!(
                before(Challenge, Method::GET, target, &[]),
                Some(Err("handshake_refused")),
                "{target}"
            );
        }
        // Microsoft Graph's token is URL-decoded before it is echoed.
        assert_eq!(
            before(
                HandshakeKind::GraphValidation,
                Method::POST,
                "/h?validationToken=Validation%3A+Testing+client+application+reachability",
                &[]
            ),
            Some(Ok((
                200,
                "Validation: Testing client application reachability".into()
            )))
        );
    }

    /// The vector of eBay's event-notification-nodejs-sdk: challenge and token
    /// `71745723-d031-455c-bfa5-f90d11b4f20a`, endpoint `http://www.testendpoint.com/webhook`.
    #[test]
    fn ebays_challenge_is_answered_with_the_hash_of_code_token_and_endpoint() {
        use HandshakeKind::EbayChallenge;
        let code = "/h?challenge_code=71745723-d031-455c-bfa5-f90d11b4f20a";
        let want = r#"{"challengeResponse":"048de9ffd0e35021fefc0388d5c52e0f475324f582f3778ca81a53354ccbbc97"}"#;
        assert_eq!(
            before(EbayChallenge, Method::GET, code, &[]),
            Some(Ok((200, want.into())))
        );
        let answer = before_body(
            &hs(EbayChallenge),
            &Method::GET,
            code,
            &HeaderMap::new(),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
        // A GET without the code goes on; a repeated, empty, oversized or hostile one is
        // refused, never hashed.
        assert_eq!(before(EbayChallenge, Method::GET, "/h?x=1", &[]), None);
        let long = format!("/h?challenge_code={}", "a".repeat(MAX_CHALLENGE + 1));
        for target in [
            "/h?challenge_code=a&challenge_code=b",
            "/h?challenge_code=",
            long.as_str(),
            "/h?challenge_code=%3Cscript%3E",
        ] {
            assert_eq!(
                before(EbayChallenge, Method::GET, target, &[]),
                Some(Err("handshake_refused")),
                "{target}"
            );
        }
        // Only the token and endpoint configured answer it.
        let no_token = Handshake {
            answer_token: None,
            ..hs(EbayChallenge)
        };
        assert!(before_body(&no_token, &Method::GET, code, &HeaderMap::new(), None).is_err());
        assert_eq!(
            format!("{:?}", hs(EbayChallenge).answer_token),
            "Some(AnswerToken(..))"
        );
    }

    #[test]
    fn okta_trello_and_cloudevents_are_answered_their_way() {
        assert_eq!(
            before(
                HandshakeKind::Okta,
                Method::GET,
                "/h",
                &[("x-okta-verification-challenge", "abc123")]
            ),
            Some(Ok((200, r#"{"verification":"abc123"}"#.into())))
        );
        assert_eq!(
            before(HandshakeKind::TrelloHead, Method::HEAD, "/h", &[]),
            Some(Ok((200, String::new())))
        );
        let worldline = [("x-gcs-webhooks-endpoint-verification", "Hello-1234567890")];
        assert_eq!(
            before(HandshakeKind::Worldline, Method::GET, "/h", &worldline),
            Some(Ok((200, "Hello-1234567890".into())))
        );
        assert_eq!(
            before(HandshakeKind::Worldline, Method::GET, "/h", &[]),
            None
        );
        assert_eq!(
            before(
                HandshakeKind::Worldline,
                Method::GET,
                "/h",
                &[("x-gcs-webhooks-endpoint-verification", "<script>")]
            ),
            Some(Err("handshake_refused"))
        );
        let granted = before_body(
            &hs(HandshakeKind::CloudEvents),
            &Method::OPTIONS,
            "/h",
            &header_map(&[("webhook-request-origin", "eventgrid.azure.net")]),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            granted.headers()["webhook-allowed-origin"],
            "eventgrid.azure.net"
        );
        assert_eq!(granted.headers()["webhook-allowed-rate"], "*");
        assert_eq!(
            before(
                HandshakeKind::CloudEvents,
                Method::OPTIONS,
                "/h",
                &[("webhook-request-origin", "evil.example")]
            ),
            Some(Err("handshake_refused"))
        );
    }

    /// A signed handshake's answer, given the request that verified.
    fn after(
        kind: HandshakeKind,
        headers: &[(&str, &str)],
        body: &'static [u8],
    ) -> Option<Result<(u16, String), &'static str>> {
        let map = header_map(headers);
        let raw = RawBody::from(Bytes::from_static(body));
        let json = JsonBody::default();
        let req = RequestView {
            method: &Method::POST,
            headers: &map,
            body: &raw,
            path_and_query: "/",
            json: &json,
        };
        match after_verify(&hs(kind), &req, None) {
            Ok(None) => None,
            Ok(Some(r)) => Some(Ok((r.status().as_u16(), body_of(r)))),
            Err(refusal) => Some(Err(refusal.label())),
        }
    }

    #[test]
    fn signed_handshakes_are_told_from_events_by_their_own_marks() {
        use HandshakeKind::*;
        assert_eq!(
            after(Slack, &[], br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#),
            Some(Ok((200, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into())))
        );
        assert_eq!(
            after(Slack, &[], br#"{"type":"event_callback","event":{}}"#),
            None
        );
        assert_eq!(
            after(Discord, &[], br#"{"type":1,"id":"x"}"#),
            Some(Ok((200, r#"{"type":1}"#.into())))
        );
        assert_eq!(after(Discord, &[], br#"{"type":2,"id":"x"}"#), None);
        // A webhook event is type 1 as well: with its `event`, it is no interaction PING.
        let event = br#"{"version":1,"application_id":"1","type":1,"event":{"type":"APPLICATION_AUTHORIZED"}}"#;
        assert_eq!(after(Discord, &[], event), None);
        assert_eq!(
            after(
                DiscordEvents,
                &[],
                br#"{"version":1,"application_id":"1","type":0}"#
            ),
            Some(Ok((204, String::new())))
        );
        assert_eq!(after(DiscordEvents, &[], event), None);
        assert_eq!(after(DiscordEvents, &[], br#"{"type":"0"}"#), None);
        let twitch = [(
            "twitch-eventsub-message-type",
            "webhook_callback_verification",
        )];
        assert_eq!(
            after(
                Twitch,
                &twitch,
                br#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{}}"#
            ),
            Some(Ok((200, "pogchamp-kappa-360noscope-vohiyo".into())))
        );
        assert_eq!(
            after(
                Twitch,
                &[("twitch-eventsub-message-type", "notification")],
                br#"{"challenge":"x"}"#
            ),
            None
        );
        let grid = [("aeg-event-type", "SubscriptionValidation")];
        assert_eq!(
            after(EventGrid, &grid, br#"[{"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}}]"#),
            Some(Ok((200, r#"{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}"#.into())))
        );
        assert_eq!(
            after(
                EventGrid,
                &grid,
                br#"[{"eventType":"Other","data":{"validationCode":"x"}},{"eventType":"Other"}]"#
            ),
            Some(Err("handshake_refused"))
        );
        // An oversized or hostile challenge is refused, not echoed.
        assert_eq!(
            after(
                Slack,
                &[],
                br#"{"type":"url_verification","challenge":"<img src=x>"}"#
            ),
            Some(Err("handshake_refused"))
        );
    }
}
