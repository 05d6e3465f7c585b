//! `Refusal`: every way the gateway can decline to forward a request. One exhaustive `match`
//! gives each its HTTP status, metric label and reason text, so adding a check never touches
//! the metrics or logging code.

use http::Method;

use crate::scheme::VerifyError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No, several or an invalid Host, or one that disagrees with the target's authority.
    BadHost(crate::host::HostError),
    /// A Transfer-Encoding other than a single `chunked`: any other coding would reach the
    /// app as bytes it cannot tell are coded (the gateway forwards with Content-Length).
    BadFraming,
    /// The path is not in normal form (dot segments, encoded slashes, empty segments).
    BadPath,
    NoRoute,
    MethodNotAllowed(Vec<Method>),
    IpNotAllowed,
    BodyTooLarge,
    BodyTimeout,
    /// The process-wide budget for request bodies in memory is spent: retry later.
    BodyBudgetFull,
    /// The client broke off or sent a malformed body.
    BodyError,
    Verify(VerifyError),
    /// A sender's handshake the gateway will not answer: a wrong verify token, a challenge
    /// too long or of other characters, an origin not granted.
    Handshake(&'static str),
    /// The key this request must be verified with could not be had (its host is down or
    /// answered wrongly): the sender retries after `Retry-After` seconds. Never accepted
    /// unverified.
    KeyUnavailable {
        retry_after: u64,
    },
    /// A handshake the gateway answers by calling the sender (SNS's `SubscribeURL`) could
    /// not be completed: the sender retries.
    HandshakeUnavailable,
    /// The route dedups by a key this request does not carry.
    ReplayKeyMissing,
    /// Another copy of this event is being forwarded right now: retry later.
    ReplayInFlight,
    /// The replay store is unreachable and the route says `on_store_error: reject`.
    ReplayStoreUnavailable,
    /// A queued route's store could not take the event (disk full, store down): the sender
    /// retries later; nothing was acknowledged.
    QueueStoreUnavailable,
    UpstreamUnreachable,
    UpstreamTimeout,
    /// The upstream answered with something we cannot pass on (e.g. over the response limit).
    UpstreamBadResponse,
}

/// How a request ended, for its access-log line and `hookgate_requests_total`: passed every
/// check and delivered or stored, answered as a duplicate, refused, or left by its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded; the app's answer was relayed.
    Forwarded,
    /// Stored durably and answered (a queued route); delivered later.
    Queued,
    /// A copy already delivered (or stored): answered for the app, nothing forwarded.
    Duplicate,
    /// A sender's handshake, answered by the gateway (`handshake.rs`); nothing forwarded.
    Handshake,
    /// Refused: the refusal knows its status, label and reason.
    Refused(Refusal),
    /// The sender closed the connection before the answer (nginx's 499).
    ClientClosed,
}

impl Outcome {
    /// The `outcome` label of `hookgate_requests_total` and of the access log.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Queued => "queued",
            Outcome::Duplicate => "duplicate",
            Outcome::Handshake => "handshake",
            Outcome::Refused(refusal) => refusal.label(),
            Outcome::ClientClosed => "client_closed",
        }
    }
}

impl From<crate::body::BodyRefused> for Refusal {
    fn from(why: crate::body::BodyRefused) -> Refusal {
        use crate::body::BodyRefused as B;
        match why {
            B::TooLarge => Refusal::BodyTooLarge,
            B::Timeout => Refusal::BodyTimeout,
            B::BudgetFull => Refusal::BodyBudgetFull,
            B::Broken => Refusal::BodyError,
        }
    }
}

impl Refusal {
    /// No key could be had: `Retry-After` in whole seconds, at least one.
    pub fn key_unavailable(retry_after: std::time::Duration) -> Refusal {
        Refusal::KeyUnavailable {
            retry_after: retry_after.as_secs().max(1),
        }
    }

    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Refusal::BadHost(_) | Refusal::BadFraming | Refusal::BadPath => S::BAD_REQUEST,
            Refusal::NoRoute => S::NOT_FOUND,
            Refusal::MethodNotAllowed(_) => S::METHOD_NOT_ALLOWED,
            Refusal::IpNotAllowed => S::FORBIDDEN,
            Refusal::BodyTooLarge => S::PAYLOAD_TOO_LARGE,
            Refusal::BodyTimeout => S::REQUEST_TIMEOUT,
            Refusal::BodyBudgetFull => S::SERVICE_UNAVAILABLE,
            Refusal::BodyError => S::BAD_REQUEST,
            Refusal::Verify(_) => S::UNAUTHORIZED,
            Refusal::Handshake(_) => S::FORBIDDEN,
            Refusal::KeyUnavailable { .. } | Refusal::HandshakeUnavailable => {
                S::SERVICE_UNAVAILABLE
            }
            Refusal::ReplayKeyMissing => S::BAD_REQUEST,
            Refusal::ReplayInFlight => S::CONFLICT,
            Refusal::ReplayStoreUnavailable | Refusal::QueueStoreUnavailable => {
                S::SERVICE_UNAVAILABLE
            }
            Refusal::UpstreamUnreachable | Refusal::UpstreamBadResponse => S::BAD_GATEWAY,
            Refusal::UpstreamTimeout => S::GATEWAY_TIMEOUT,
        }
    }

    /// The `outcome` label on `hookgate_requests_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::BadHost(_) => "bad_host",
            Refusal::BadFraming => "bad_framing",
            Refusal::BadPath => "bad_path",
            Refusal::NoRoute => "no_route",
            Refusal::MethodNotAllowed(_) => "method_not_allowed",
            Refusal::IpNotAllowed => "ip_not_allowed",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::BodyBudgetFull => "body_budget_full",
            Refusal::BodyError => "body_error",
            Refusal::Verify(e) => match e {
                VerifyError::MissingSignature(_) => "signature_missing",
                VerifyError::MalformedSignature(_) => "signature_malformed",
                VerifyError::Mismatch => "signature_mismatch",
                VerifyError::MissingMessageHeader(_) => "signed_header_missing",
                VerifyError::MissingTimestamp => "timestamp_missing",
                VerifyError::MalformedTimestamp => "timestamp_malformed",
                VerifyError::StaleTimestamp => "timestamp_stale",
                VerifyError::FutureTimestamp => "timestamp_future",
                VerifyError::UnsignedBody => "body_not_signed",
                VerifyError::RepeatedHeader(_) => "header_repeated",
                VerifyError::MissingField(_) => "signed_field_missing",
                VerifyError::AmbiguousField(_) => "signed_field_ambiguous",
                VerifyError::NotStrictJson(_) => "body_not_strict_json",
                VerifyError::BodyAmbiguous(_) => "body_ambiguous",
                VerifyError::ClaimMismatch(_) => "jwt_claim_mismatch",
                VerifyError::KeyUrlRefused(_) => "key_url_refused",
                VerifyError::KeyRefused(_) => "key_refused",
                VerifyError::NotAllowed(_) => "value_not_allowed",
            },
            Refusal::Handshake(_) => "handshake_refused",
            Refusal::KeyUnavailable { .. } => "key_unavailable",
            Refusal::HandshakeUnavailable => "handshake_unavailable",
            Refusal::ReplayKeyMissing => "replay_key_missing",
            Refusal::ReplayInFlight => "replay_in_flight",
            Refusal::ReplayStoreUnavailable => "replay_store_unavailable",
            Refusal::QueueStoreUnavailable => "queue_store_unavailable",
            Refusal::UpstreamUnreachable => "upstream_unreachable",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::UpstreamBadResponse => "upstream_bad_response",
        }
    }

    /// Short plain-text reason for the response body and the log line. Never contains the
    /// body, a secret or the expected signature.
    pub fn reason(&self) -> String {
        match self {
            Refusal::BadHost(e) => {
                use crate::host::HostError as H;
                match e {
                    H::Missing => "request has no Host".into(),
                    H::Repeated => "request has more than one Host".into(),
                    H::Invalid => "Host is not a valid host[:port]".into(),
                    H::Disagrees => "Host disagrees with the request target's authority".into(),
                }
            }
            Refusal::BadFraming => "Transfer-Encoding other than a single chunked".into(),
            Refusal::BadPath => "request path is not in normal form".into(),
            Refusal::NoRoute => "no route for this path".into(),
            Refusal::MethodNotAllowed(_) => "method not allowed on this route".into(),
            Refusal::IpNotAllowed => "client address not allowed on this route".into(),
            Refusal::BodyTooLarge => "request body over the size limit".into(),
            Refusal::BodyTimeout => "request body not received in time".into(),
            Refusal::BodyBudgetFull => {
                "too many request bodies in memory right now; retry later".into()
            }
            Refusal::BodyError => "request body could not be read".into(),
            Refusal::Verify(e) => e.to_string(),
            Refusal::Handshake(why) => format!("handshake refused: {why}"),
            Refusal::KeyUnavailable { .. } => {
                "the sender's signing key could not be fetched; retry later".into()
            }
            Refusal::HandshakeUnavailable => {
                "the subscription could not be confirmed with its sender; retry later".into()
            }
            Refusal::ReplayKeyMissing => {
                "request lacks the event id this route deduplicates by".into()
            }
            Refusal::ReplayInFlight => {
                "another copy of this event is being delivered; retry later".into()
            }
            Refusal::ReplayStoreUnavailable => "duplicate check unavailable; retry later".into(),
            Refusal::QueueStoreUnavailable => "event could not be stored; retry later".into(),
            Refusal::UpstreamUnreachable => "upstream unreachable".into(),
            Refusal::UpstreamTimeout => "upstream did not answer in time".into(),
            Refusal::UpstreamBadResponse => "upstream response could not be relayed".into(),
        }
    }

    /// The outcomes decided before a route is matched: counted under `route=""` only.
    pub const BEFORE_ROUTING: &'static [&'static str] =
        &["bad_host", "bad_framing", "bad_path", "no_route"];

    /// Every outcome label, so metrics can be pre-registered at zero.
    pub const LABELS: &'static [&'static str] = &[
        "bad_host",
        "bad_framing",
        "bad_path",
        "no_route",
        "method_not_allowed",
        "ip_not_allowed",
        "body_too_large",
        "body_timeout",
        "body_budget_full",
        "body_error",
        "signature_missing",
        "signature_malformed",
        "signature_mismatch",
        "signed_header_missing",
        "timestamp_missing",
        "timestamp_malformed",
        "timestamp_stale",
        "timestamp_future",
        "body_not_signed",
        "header_repeated",
        "signed_field_missing",
        "signed_field_ambiguous",
        "body_not_strict_json",
        "body_ambiguous",
        "jwt_claim_mismatch",
        "key_url_refused",
        "key_refused",
        "value_not_allowed",
        "key_unavailable",
        "handshake_refused",
        "handshake_unavailable",
        "replay_key_missing",
        "replay_in_flight",
        "replay_store_unavailable",
        "queue_store_unavailable",
        "upstream_unreachable",
        "upstream_timeout",
        "upstream_bad_response",
    ];
}
