//! A route's handshake: the question a sender asks the endpoint itself, apart from its
//! events, which the gateway answers (`handshake.rs` has the answers). Each kind is one
//! sender's protocol; a preset names its kind, and any route may set one.

use std::fmt;

use http::Method;

/// Which protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeKind {
    /// Meta (Graph, Messenger, Instagram, WhatsApp): `GET ?hub.mode=subscribe&
    /// hub.verify_token=..&hub.challenge=..`, the challenge echoed as text when the verify
    /// token matches.
    Meta,
    /// Strava: as Meta, answered as JSON `{"hub.challenge": ..}`.
    Strava,
    /// X (Twitter): `GET ?crc_token=..`, answered `{"response_token": "sha256=" +
    /// base64(HMAC-SHA256(secret, crc_token))}`.
    XCrc,
    /// Dropbox, Nylas: `GET ?challenge=..`, echoed as text.
    Challenge,
    /// Microsoft Graph: `POST ?validationToken=..`, echoed (decoded) as text.
    GraphValidation,
    /// Okta event hooks: `GET` with `x-okta-verification-challenge`, answered
    /// `{"verification": ..}`.
    Okta,
    /// Trello: a `HEAD` when the webhook is created, answered 200.
    TrelloHead,
    /// Worldline Connect: `GET` with `X-GCS-Webhooks-Endpoint-Verification`, its value echoed
    /// as text.
    Worldline,
    /// CloudEvents webhooks (Azure Event Grid's CloudEvents schema): `OPTIONS` with
    /// `WebHook-Request-Origin`, granted for the configured origins.
    CloudEvents,
    /// Slack Events API: a signed `{"type":"url_verification","challenge":..}`, the
    /// challenge echoed as text.
    Slack,
    /// Zoom: a signed `endpoint.url_validation`, answered `{"plainToken": p,
    /// "encryptedToken": hex(HMAC-SHA256(secret, p))}`.
    Zoom,
    /// Discord interactions: a signed PING (`"type":1`, no `event`), answered `{"type":1}`.
    Discord,
    /// Discord webhook events: a signed PING (`"type":0`), answered 204 with no body.
    DiscordEvents,
    /// Twitch EventSub: a signed `webhook_callback_verification` (by its message-type
    /// header), the challenge echoed as text.
    Twitch,
    /// Azure Event Grid (its own schema): `aeg-event-type: SubscriptionValidation`, answered
    /// `{"validationResponse": <data.validationCode>}`.
    EventGrid,
    /// AWS SNS: a signed `SubscriptionConfirmation` for one of the route's topics, confirmed
    /// by the gateway itself with a `GET` of its `SubscribeURL` (on a pinned SNS host, once per
    /// URL), answered 200 once SNS accepted it.
    SnsSubscription,
    /// eBay (Marketplace Account Deletion, Notification API): `GET ?challenge_code=C`,
    /// answered `{"challengeResponse": hex(SHA-256(C ‖ verify token ‖ endpoint))}`, with the
    /// token set in eBay's dashboard and the endpoint URL registered there, exactly.
    EbayChallenge,
}

impl HandshakeKind {
    pub const ALL: &'static [HandshakeKind] = &[
        HandshakeKind::Meta,
        HandshakeKind::Strava,
        HandshakeKind::XCrc,
        HandshakeKind::Challenge,
        HandshakeKind::GraphValidation,
        HandshakeKind::Okta,
        HandshakeKind::TrelloHead,
        HandshakeKind::Worldline,
        HandshakeKind::CloudEvents,
        HandshakeKind::Slack,
        HandshakeKind::Zoom,
        HandshakeKind::Discord,
        HandshakeKind::DiscordEvents,
        HandshakeKind::Twitch,
        HandshakeKind::EventGrid,
        HandshakeKind::SnsSubscription,
        HandshakeKind::EbayChallenge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HandshakeKind::Meta => "meta",
            HandshakeKind::Strava => "strava",
            HandshakeKind::XCrc => "x-crc",
            HandshakeKind::Challenge => "challenge",
            HandshakeKind::GraphValidation => "graph-validation",
            HandshakeKind::Okta => "okta",
            HandshakeKind::TrelloHead => "trello-head",
            HandshakeKind::Worldline => "worldline",
            HandshakeKind::CloudEvents => "cloudevents",
            HandshakeKind::Slack => "slack",
            HandshakeKind::Zoom => "zoom",
            HandshakeKind::Discord => "discord",
            HandshakeKind::DiscordEvents => "discord-events",
            HandshakeKind::Twitch => "twitch",
            HandshakeKind::EventGrid => "event-grid",
            HandshakeKind::SnsSubscription => "sns-subscription",
            HandshakeKind::EbayChallenge => "ebay-challenge",
        }
    }

    pub fn parse(s: &str) -> Option<HandshakeKind> {
        HandshakeKind::ALL.iter().copied().find(|k| k.name() == s)
    }

    /// The method the handshake comes with (added to the route's methods).
    pub fn method(self) -> Method {
        match self {
            HandshakeKind::Meta
            | HandshakeKind::Strava
            | HandshakeKind::XCrc
            | HandshakeKind::Challenge
            | HandshakeKind::Okta
            | HandshakeKind::Worldline
            | HandshakeKind::EbayChallenge => Method::GET,
            HandshakeKind::TrelloHead => Method::HEAD,
            HandshakeKind::CloudEvents => Method::OPTIONS,
            _ => Method::POST,
        }
    }

    /// Whether the handshake is signed like the events, so it is answered only after the
    /// request verified; the others carry nothing to verify and are answered before the
    /// body is read.
    pub fn signed(self) -> bool {
        matches!(
            self,
            HandshakeKind::Slack
                | HandshakeKind::Zoom
                | HandshakeKind::Discord
                | HandshakeKind::DiscordEvents
                | HandshakeKind::Twitch
                | HandshakeKind::EventGrid
                | HandshakeKind::SnsSubscription
        )
    }

    /// Whether the answer is computed with the route's secret (its first key).
    pub fn needs_secret(self) -> bool {
        matches!(self, HandshakeKind::XCrc | HandshakeKind::Zoom)
    }

    /// Whether the operator sets a `verify_token`, the token set in the sender's dashboard:
    /// Meta's and Strava's challenge carries it, eBay's answer hashes it.
    pub fn needs_verify_token(self) -> bool {
        matches!(
            self,
            HandshakeKind::Meta | HandshakeKind::Strava | HandshakeKind::EbayChallenge
        )
    }

    /// Whether the answer hashes the endpoint URL registered with the sender (`endpoint`).
    pub fn needs_endpoint(self) -> bool {
        self == HandshakeKind::EbayChallenge
    }
}

/// A route's compiled handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub kind: HandshakeKind,
    /// Meta and Strava: the SHA-256 of the verify token the operator set in the sender's
    /// dashboard (compared in constant time, never kept as text).
    pub verify_token: Option<[u8; 32]>,
    /// eBay: the verification token set in eBay's dashboard, kept as text because the answer
    /// hashes it (never shown by `Debug`).
    pub answer_token: Option<AnswerToken>,
    /// eBay: the endpoint URL registered with eBay, exactly as registered (the answer hashes
    /// it too).
    pub endpoint: Option<String>,
    /// CloudEvents: the origins (`WebHook-Request-Origin`) granted.
    pub origins: Vec<String>,
    /// CloudEvents: the rate granted, per minute (`None`: `*`).
    pub rate: Option<u32>,
    /// The handshake's method was added to the route for it alone (a `GET` on a `POST`
    /// route): any other request with that method is refused, so a captured event cannot be
    /// re-sent to the app with it.
    pub method_for_handshake_only: bool,
}

/// A token a handshake's answer is computed from, so kept as text; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AnswerToken(String);

impl AnswerToken {
    pub fn new(token: String) -> AnswerToken {
        AnswerToken(token)
    }

    /// The token itself, for the answer (never logged).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AnswerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnswerToken(..)")
    }
}
