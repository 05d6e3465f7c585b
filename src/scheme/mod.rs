//! The generic signature scheme: one engine that every sender is a configuration of.
//!
//! A [`Scheme`] is compiled once from the `verify:` block of a route (see `config/`), with its
//! keys already resolved (pre-keyed HMAC states, token digests or parsed public keys). For HMAC,
//! verifying a request clones a keyed state, feeds it the message parts in order (body bytes are
//! never copied or re-serialized), and compares the result with each decoded candidate
//! signature in constant time (`subtle`). Asymmetric schemes (Ed25519, ECDSA P-256) assemble the
//! message once and verify it with each public key.
//!
//! The signature may be a plain header value (with an optional prefix such as `sha256=`) or a
//! structured header of entries (`t=..,v1=..`, `ts=..;h1=..`, `v1,<sig> v1,<sig>`): then every
//! entry with the configured key is a candidate (any may match), other entries are ignored,
//! and other entries (such as `t`) may feed the timestamp and the message.
//!
//! Neighbours: `config/presets.rs` names the built-in senders as values of the raw `verify:` block;
//! `keys.rs` holds key material; `gateway.rs` calls [`Scheme::verify`] after the body has been
//! read; `sign.rs` signs as a sender would ([`Scheme::sign`], for `hookgate sign`).

pub mod certificate;
pub mod explain;
pub mod fetched;
mod fields_only;
pub mod json;
pub mod jwt;
pub mod keys;
pub mod message;
pub mod params;
pub mod pin;
pub mod sign;
pub mod signature;
pub mod sns;

pub use keys::{KeyEncoding, Keys, SigningKey};
pub use message::{BodyDigest, Part};
pub use sign::{Outgoing, Placement, Signed};
use signature::Found;
pub use signature::{Entries, Envelope, List, SignatureSource, SignatureSpec};

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

/// How a signature is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
    HmacSha384,
    HmacSha512,
    /// A plain digest, not an HMAC: SHA-1 over the secret then the message (HubSpot v1,
    /// Recharge's legacy header use SHA-256).
    DigestSha1,
    DigestSha256,
    DigestSha512,
    /// The header carries a shared token itself (GitLab); compared in constant time.
    Token,
    Ed25519,
    /// ECDSA over P-256 with SHA-256; DER-encoded signatures.
    EcdsaP256Sha256,
    /// A JSON Web Token (`jwt.rs`): its own signature, claims and body binding.
    Jwt,
    /// RSA PKCS#1 v1.5 with SHA-256, with the key of a fetched certificate (PayPal).
    RsaSha256,
    /// AWS SNS's message signature (`sns.rs`): its own string to sign per message type, RSA
    /// with SHA-1 or SHA-256 as the message's `SignatureVersion` says, with the key of the
    /// certificate its `SigningCertURL` names.
    AwsSns,
    /// ECDSA over P-256 with SHA-1, with a key fetched by its id (eBay); DER signatures.
    EcdsaP256Sha1,
}

impl Algorithm {
    /// Every algorithm, in the order the docs and errors list them.
    pub const ALL: &'static [Algorithm] = &[
        Algorithm::HmacSha256,
        Algorithm::HmacSha1,
        Algorithm::HmacSha384,
        Algorithm::HmacSha512,
        Algorithm::DigestSha1,
        Algorithm::DigestSha256,
        Algorithm::DigestSha512,
        Algorithm::Token,
        Algorithm::Ed25519,
        Algorithm::EcdsaP256Sha256,
        Algorithm::Jwt,
        Algorithm::RsaSha256,
        Algorithm::AwsSns,
        Algorithm::EcdsaP256Sha1,
    ];

    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_lowercase().as_str() {
            "hmac-sha1" => Some(Algorithm::HmacSha1),
            "hmac-sha256" => Some(Algorithm::HmacSha256),
            "hmac-sha384" => Some(Algorithm::HmacSha384),
            "hmac-sha512" => Some(Algorithm::HmacSha512),
            "digest-sha1" => Some(Algorithm::DigestSha1),
            "digest-sha256" => Some(Algorithm::DigestSha256),
            "digest-sha512" => Some(Algorithm::DigestSha512),
            "token" => Some(Algorithm::Token),
            "ed25519" => Some(Algorithm::Ed25519),
            "ecdsa-p256-sha256" => Some(Algorithm::EcdsaP256Sha256),
            "jwt" => Some(Algorithm::Jwt),
            "rsa-sha256" => Some(Algorithm::RsaSha256),
            "aws-sns" => Some(Algorithm::AwsSns),
            "ecdsa-p256-sha1" => Some(Algorithm::EcdsaP256Sha1),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
            Algorithm::DigestSha1 => "digest-sha1",
            Algorithm::DigestSha256 => "digest-sha256",
            Algorithm::DigestSha512 => "digest-sha512",
            Algorithm::Token => "token",
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Algorithm::Jwt => "jwt",
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::AwsSns => "aws-sns",
            Algorithm::EcdsaP256Sha1 => "ecdsa-p256-sha1",
        }
    }

    /// Shared-secret algorithms take `secret`s; the others take `public_key`s.
    pub fn is_asymmetric(self) -> bool {
        matches!(self, Algorithm::Ed25519 | Algorithm::EcdsaP256Sha256) || self.fetches_key()
    }

    /// Whether the key is fetched from where the request says (`fetched.rs`), never held.
    pub fn fetches_key(self) -> bool {
        matches!(
            self,
            Algorithm::RsaSha256 | Algorithm::AwsSns | Algorithm::EcdsaP256Sha1
        )
    }

    /// Whether decoded signature bytes have a shape this algorithm can produce. Anything else
    /// (truncated, padded, garbage) is malformed, never a partial match.
    fn accepts(self, bytes: &[u8]) -> bool {
        match self {
            Algorithm::HmacSha1 | Algorithm::DigestSha1 => bytes.len() == 20,
            Algorithm::HmacSha256 | Algorithm::DigestSha256 => bytes.len() == 32,
            Algorithm::HmacSha384 => bytes.len() == 48,
            Algorithm::HmacSha512 | Algorithm::DigestSha512 => bytes.len() == 64,
            Algorithm::Token => !bytes.is_empty(),
            Algorithm::Ed25519 => bytes.len() == 64,
            Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP256Sha1 => {
                p256_signature(bytes).is_some()
            }
            // A token is checked whole by `jwt.rs`.
            Algorithm::Jwt => !bytes.is_empty(),
            // RSA-2048 to RSA-8192.
            Algorithm::RsaSha256 | Algorithm::AwsSns => (256..=1024).contains(&bytes.len()),
        }
    }
}

/// An ECDSA P-256 signature in DER, the only form SendGrid sends and its SDKs accept.
fn p256_signature(bytes: &[u8]) -> Option<p256::ecdsa::Signature> {
    p256::ecdsa::Signature::from_der(bytes).ok()
}

/// How the signature bytes are written in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64 alphabet, padding optional.
    Base64,
    /// The URL-safe base64 alphabet (`-` and `_`), padding optional.
    Base64Url,
    /// The text itself, for shared tokens (`algorithm: token`).
    Raw,
}

impl Encoding {
    pub const ALL: &'static [Encoding] = &[
        Encoding::Hex,
        Encoding::Base64,
        Encoding::Base64Url,
        Encoding::Raw,
    ];

    pub fn parse(s: &str) -> Option<Encoding> {
        match s.to_ascii_lowercase().as_str() {
            "hex" => Some(Encoding::Hex),
            "base64" => Some(Encoding::Base64),
            "base64url" => Some(Encoding::Base64Url),
            "raw" => Some(Encoding::Raw),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
            Encoding::Base64Url => "base64url",
            Encoding::Raw => "raw",
        }
    }

    fn decode(self, s: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(s).ok(),
            Encoding::Base64 => BASE64.decode(s).ok(),
            Encoding::Base64Url => BASE64URL.decode(s).ok(),
            Encoding::Raw => Some(s.as_bytes().to_vec()),
        }
    }

    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => BASE64.encode(bytes),
            Encoding::Base64Url => BASE64URL.encode(bytes),
            Encoding::Raw => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

/// The URL-safe alphabet (RFC 4648 section 5, JWTs, Sanity); padding accepted present or
/// absent, never emitted (as JWTs write it).
pub(crate) const BASE64URL: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// `a, b or c`, for an error that lists what is allowed.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [head @ .., last] => format!("{} or {last}", head.join(", ")),
    }
}

/// Standard alphabet; senders differ on padding, so accept it present or absent, and always
/// emit it when signing.
pub(crate) const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Where a timestamp is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimestampSource {
    Header(HeaderName),
    /// A JSON pointer (RFC 6901) into the body, e.g. `/timestamp`.
    JsonField(String),
    /// An entry of the structured signature header, e.g. `t`.
    SignatureEntry(String),
}

/// How the timestamp is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampUnit {
    Seconds,
    Milliseconds,
    /// An RFC 3339 date-time string such as `2025-11-23T07:59:30Z`, with up to nine
    /// fraction digits and `Z`, no zone, or a `+01:00` offset.
    Rfc3339,
    /// An HTTP date (RFC 1123 / RFC 9110 IMF-fixdate): `Sun, 23 Nov 2025 07:59:30 GMT`.
    Rfc1123,
}

impl TimestampUnit {
    pub fn parse(s: &str) -> Option<TimestampUnit> {
        match s.to_ascii_lowercase().as_str() {
            "seconds" | "s" => Some(TimestampUnit::Seconds),
            "milliseconds" | "ms" => Some(TimestampUnit::Milliseconds),
            "rfc3339" => Some(TimestampUnit::Rfc3339),
            "rfc1123" => Some(TimestampUnit::Rfc1123),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TimestampUnit::Seconds => "seconds",
            TimestampUnit::Milliseconds => "milliseconds",
            TimestampUnit::Rfc3339 => "rfc3339",
            TimestampUnit::Rfc1123 => "rfc1123",
        }
    }
}

/// A timestamp the scheme reads: where, how it is written, and the freshness window around
/// the gateway's clock, if any. Without a window the timestamp is still parsed and must be
/// canonical (it is part of the signed message, so it must have one meaning).
#[derive(Clone, Debug)]
pub struct TimestampSpec {
    pub source: TimestampSource,
    pub unit: TimestampUnit,
    /// `None`: `tolerance: none`, the sender re-sends old events with their old timestamp.
    pub window: Option<Window>,
}

/// How far a timestamp may be from the gateway's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// How old a timestamp may be.
    pub past: Duration,
    /// How far ahead of our clock a timestamp may be (sender clock skew).
    pub future: Duration,
}

/// A compiled signature scheme with its resolved keys.
#[derive(Clone)]
pub struct Scheme {
    pub algorithm: Algorithm,
    pub signature: SignatureSpec,
    pub message: Vec<Part>,
    pub timestamp: Option<TimestampSpec>,
    /// The URL the sender calls, as the sender sees it (before any load balancer); the
    /// request's path and query are appended for `Part::Url`.
    pub public_url: Option<String>,
    /// Query parameter holding the hex SHA-256 of the body (Twilio's `bodySHA256`), which then
    /// must match; a non-form body without it is refused as unsigned.
    pub body_hash_param: Option<String>,
    /// `false` (`body_signed: false`): the sender signs fields, not the body; what else the
    /// body holds is not checked.
    pub body_signed: bool,
    /// `each:`: the JSON array whose items are each verified on their own, the signature,
    /// JSON parts and timestamp read from the item (Adyen's `notificationItems`).
    pub each_item: Option<String>,
    /// For `algorithm: jwt`: what the token's claims must say.
    pub jwt: Option<jwt::JwtSpec>,
    /// `json_allowed:`: JSON fields of the body that must hold one of the route's values
    /// (SNS's `TopicArn`: AWS signs for every account's topics, so the route names its own).
    pub json_allowed: Vec<(String, Vec<String>)>,
    pub keys: Keys,
}

impl fmt::Debug for Scheme {
    // Hand-written so that key material can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheme")
            .field("algorithm", &self.algorithm)
            .field("signature", &self.signature)
            .field("message", &self.message)
            .field("timestamp", &self.timestamp)
            .field("public_url", &self.public_url)
            .field("body_hash_param", &self.body_hash_param)
            .field("body_signed", &self.body_signed)
            .field("each_item", &self.each_item)
            .field("jwt", &self.jwt)
            .field("json_allowed", &self.json_allowed)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Why a request failed verification. Each maps to one refusal (401) with its own metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Where: `header x-sig`, `query parameter sig`, ...
    #[error("missing signature {0}")]
    MissingSignature(String),
    #[error("malformed signature {0}")]
    MalformedSignature(String),
    #[error("signature does not match")]
    Mismatch,
    #[error("missing header {0} (part of the signed message)")]
    MissingMessageHeader(HeaderName),
    #[error("missing timestamp")]
    MissingTimestamp,
    #[error("malformed timestamp")]
    MalformedTimestamp,
    #[error("timestamp too old")]
    StaleTimestamp,
    #[error("timestamp too far in the future")]
    FutureTimestamp,
    #[error("body is not covered by the signature")]
    UnsignedBody,
    /// A header the scheme reads (a signed header, the timestamp, the dedup key, the form's
    /// Content-Type) came more than once: the gateway would check one copy while the app
    /// may read another.
    #[error("header {0} appears more than once; it is read once and must be sent once")]
    RepeatedHeader(HeaderName),
    /// A query parameter, form field or JSON field the signed message reads is absent.
    #[error("missing {0} (part of the signed message)")]
    MissingField(String),
    /// A value the signed message reads has no one meaning: given twice, or a JSON value
    /// with no one text (an object, or a number with a fraction or exponent).
    #[error("{0} is ambiguous (given twice, or with no one text form)")]
    AmbiguousField(String),
    /// A JWT claim is not what the route requires (`iss`, `aud`, the body's digest).
    #[error("JWT claim {0} does not match")]
    ClaimMismatch(String),
    /// The scheme reads the JSON body, and it is not exactly one JSON value with unique keys
    /// in UTF-8.
    #[error("body is not strict JSON: {0}")]
    NotStrictJson(String),
    /// A sender signs only some fields, and the app could read this body differently from
    /// the gateway: encoded, under another content type, or with keys or form names the app
    /// would fold onto a signed field (`fields_only.rs`).
    #[error("the app could read this body differently: {0}")]
    BodyAmbiguous(String),
    /// The key URL the request names is missing, malformed or not on a pinned host: nothing
    /// was fetched for it.
    #[error("key URL refused: {0}")]
    KeyUrlRefused(String),
    /// The fetched key may not sign this request (a certificate expired or issued to another
    /// name).
    #[error("{0}")]
    KeyRefused(String),
    /// A field the route restricts (`json_allowed:`) holds another value.
    #[error("{0} is not one this route accepts")]
    NotAllowed(String),
}

/// What a successful verification tells the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Index of the key that matched, in configuration order.
    pub key_index: usize,
    /// The decoded signature that verified (a replay key that no re-encoding, re-ordering or
    /// extra entry in the header can change; ECDSA signatures in their low-s form).
    pub signature: Vec<u8>,
}

/// The parts of a request a scheme can sign over.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    pub method: &'a http::Method,
    pub headers: &'a HeaderMap,
    /// The raw body, as the chunks it arrived in.
    pub body: &'a crate::body::RawBody,
    /// As received, e.g. `/webhooks/twilio?foo=1`.
    pub path_and_query: &'a str,
    /// The body as strict JSON, parsed on first use; shared with the replay key, so the
    /// body is parsed at most once.
    pub json: &'a JsonBody,
}

impl<'a> RequestView<'a> {
    /// The body as strict JSON (`json.rs`), parsed on first use.
    pub fn json(&self) -> Result<&'a serde_json::Value, VerifyError> {
        self.json.get(self.body)
    }
}

/// The body parsed as strict JSON, at most once per request, when something reads it.
#[derive(Debug, Default)]
pub struct JsonBody(std::sync::OnceLock<Result<serde_json::Value, json::NotStrictJson>>);

impl JsonBody {
    /// A value already parsed (one item of an `each:` array).
    pub fn of(value: serde_json::Value) -> JsonBody {
        JsonBody(std::sync::OnceLock::from(Ok(value)))
    }

    /// The body parsed strictly, if it is JSON (parsed now unless it was already).
    pub fn value<'a>(&'a self, body: &crate::body::RawBody) -> Option<&'a serde_json::Value> {
        self.get(body).ok()
    }

    fn get<'a>(
        &'a self,
        body: &crate::body::RawBody,
    ) -> Result<&'a serde_json::Value, VerifyError> {
        self.0
            .get_or_init(|| json::parse_strict(body.contiguous()))
            .as_ref()
            .map_err(|e| VerifyError::NotStrictJson(e.0.clone()))
    }
}

/// How strongly a scheme checks its sender, weakest last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strength {
    /// The body (or its SHA-256) is signed.
    Signature,
    /// Only some fields are signed (`body_signed: false`): the rest of the body is not
    /// checked.
    SignedFields,
    /// A shared secret is sent as it is (`token`, HTTP Basic): nothing is signed, and anyone
    /// who sees one request can send any other.
    SharedSecret,
}

impl Strength {
    /// As the `kind` label of `hookgate_route_verification` and in `hookgate presets`.
    pub fn label(self) -> &'static str {
        match self {
            Strength::Signature => "signature",
            Strength::SignedFields => "signed_fields",
            Strength::SharedSecret => "shared_secret",
        }
    }
}

impl Scheme {
    /// Whether this scheme's key is fetched from the network (`fetched.rs`), not held.
    pub fn fetches_key(&self) -> bool {
        matches!(self.keys, Keys::Fetched(_))
    }

    /// How strongly this scheme checks its sender.
    pub fn strength(&self) -> Strength {
        match (self.algorithm, self.body_signed) {
            (Algorithm::Token, _) => Strength::SharedSecret,
            (_, false) => Strength::SignedFields,
            (_, true) => Strength::Signature,
        }
    }

    /// The MAC of `data` under the first key, for handshakes whose answer proves the secret
    /// (X's CRC, Zoom's URL validation); `None` for schemes without shared-secret MACs.
    pub fn mac_with_first_key(&self, data: &[u8]) -> Option<Vec<u8>> {
        match &self.keys {
            Keys::Hmac(keys) => {
                let mut mac = keys.first()?.clone();
                mac.update(data);
                Some(mac.finalize())
            }
            _ => None,
        }
    }

    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }

    /// Every part of the signed message, those inside `optional` groups included.
    pub fn parts(&self) -> impl Iterator<Item = &Part> + '_ {
        self.message.iter().flat_map(|p| match p {
            Part::Optional(inner) => inner.as_slice(),
            other => std::slice::from_ref(other),
        })
    }

    /// Whether verifying reads the JSON body: a signed field, the timestamp, the signature
    /// (one field, or a field of every item), or the items of `each:`.
    pub fn reads_json(&self) -> bool {
        self.message.iter().any(Part::reads_json)
            || self.each_item.is_some()
            || matches!(
                self.signature.source,
                SignatureSource::Json(_) | SignatureSource::JsonEach { .. }
            )
            || matches!(
                &self.timestamp,
                Some(TimestampSpec {
                    source: TimestampSource::JsonField(_),
                    ..
                })
            )
    }

    /// Whether the scheme reads this entry of its structured signature header (beyond the
    /// signatures themselves): the timestamp entry or a signed entry.
    fn reads_entry(&self, name: &str) -> bool {
        let signed = self
            .parts()
            .any(|p| matches!(p, Part::SignatureEntry(e) if e == name));
        let timestamp = matches!(
            &self.timestamp,
            Some(TimestampSpec { source: TimestampSource::SignatureEntry(e), .. }) if e == name
        );
        signed || timestamp
    }

    /// Every request header this scheme reads besides the signature header: the headers in
    /// the signed message, the timestamp header, and `Content-Type` when it decides how the
    /// body is covered (form parameters). Each must come exactly once, and none may be
    /// dropped on the way to the app (a `Connection` header cannot name them away).
    pub fn headers_read(&self) -> impl Iterator<Item = &HeaderName> + '_ {
        let message = self.parts().filter_map(|p| match p {
            Part::Header(h) => Some(h),
            _ => None,
        });
        let timestamp = match &self.timestamp {
            Some(TimestampSpec {
                source: TimestampSource::Header(h),
                ..
            }) => Some(h),
            _ => None,
        };
        let form = self
            .parts()
            .any(|p| matches!(p, Part::FormParamsSorted | Part::Form(_)))
            || self.body_hash_param.is_some();
        message
            .chain(timestamp)
            .chain(form.then_some(&http::header::CONTENT_TYPE))
    }

    /// Verifies a request: signature header well-formed, timestamp (if any) inside its window
    /// relative to `now`, body covered, and the signature valid under one of the keys.
    pub fn verify(&self, req: &RequestView<'_>, now: SystemTime) -> Result<Verified, VerifyError> {
        self.verify_with(req, now, None)
    }

    /// The URL of the key this request must be verified with, for a scheme whose key is
    /// fetched (`None` for one that holds its keys). Everything that can be checked without
    /// the key is checked first: the fields the route restricts (`json_allowed:`: another
    /// topic or account), the body's shape, the signature's presence and form, the timestamp
    /// window, and an SNS message's type and version. A request that fails any of them makes
    /// the gateway fetch nothing.
    pub fn key_url(
        &self,
        req: &RequestView<'_>,
        now: SystemTime,
    ) -> Result<Option<pin::KeyUrl>, VerifyError> {
        let Keys::Fetched(key) = &self.keys else {
            return Ok(None);
        };
        fields_only::check(self, req)?;
        self.check_allowed(req)?;
        if self.reads_json() {
            // A body the scheme cannot read costs no fetch.
            req.json()?;
        }
        let header = self.signature.read(req, &|k| self.reads_entry(k))?;
        match &self.jwt {
            Some(spec) => match header.candidates.as_slice() {
                [token] => jwt::precheck(token, spec)?,
                _ => {
                    return Err(VerifyError::MalformedSignature(
                        self.signature.source.describe(),
                    ))
                }
            },
            None => {
                self.check_read_once(req)?;
                self.decode_candidates(&header)?;
                if let Some(ts) = &self.timestamp {
                    check_timestamp(ts, req, &header, now)?;
                }
                if self.algorithm == Algorithm::AwsSns {
                    sns::signed(req.json()?)?;
                }
            }
        }
        key.url(req).map(Some)
    }

    /// A JWT scheme: the token checked with the route's keys, or a fetched JWKS's.
    fn verify_token(
        &self,
        header: &Found<'_>,
        spec: &jwt::JwtSpec,
        req: &RequestView<'_>,
        now: SystemTime,
        doc: Option<&fetched::KeyDoc>,
    ) -> Result<Verified, VerifyError> {
        let fetched;
        let keys: &[jwt::JwtKey] = match &self.keys {
            Keys::Jwt(keys) => keys,
            _ => {
                fetched = self.jwks_keys(req, doc)?;
                &fetched
            }
        };
        self.verify_jwt(header, keys, spec, req, now)
    }

    /// The keys of a fetched JWKS a token may be tried with: the one its `kid` names, or
    /// every key of the set for a token that names none.
    fn jwks_keys(
        &self,
        req: &RequestView<'_>,
        doc: Option<&fetched::KeyDoc>,
    ) -> Result<Vec<jwt::JwtKey>, VerifyError> {
        let Some(fetched::KeyDoc::Jwks(set)) = doc else {
            return Err(VerifyError::KeyRefused(
                "no key was fetched for this request".into(),
            ));
        };
        let kid = self.kid_wanted(req);
        Ok(set
            .iter()
            .filter(|(k, _)| kid.is_none() || *k == kid)
            .map(|(_, key)| key.clone())
            .collect())
    }

    /// The `kid` a JWT scheme's token names, for finding its key in a fetched JWKS.
    pub fn kid_wanted(&self, req: &RequestView<'_>) -> Option<String> {
        if self.signature.envelope.is_some() {
            return self.signature.envelope_kid(req);
        }
        self.jwt.as_ref()?;
        let found = self.signature.read(req, &|k| self.reads_entry(k)).ok()?;
        match found.candidates.as_slice() {
            [token] => jwt::kid(token),
            _ => None,
        }
    }

    /// [`Scheme::verify`] with the document fetched for a scheme whose key is fetched
    /// (`doc`, from the URL [`Scheme::key_url`] gave).
    pub fn verify_with(
        &self,
        req: &RequestView<'_>,
        now: SystemTime,
        doc: Option<&fetched::KeyDoc>,
    ) -> Result<Verified, VerifyError> {
        fields_only::check(self, req)?;
        self.check_allowed(req)?;
        let Some(array) = &self.each_item else {
            return self.verify_one(req, now, doc);
        };
        let (mut key_index, mut signatures) = (None, Vec::new());
        for item in self.items(array, req)? {
            let item = JsonBody::of(item.clone());
            let verified = self.verify_one(
                &RequestView {
                    json: &item,
                    ..*req
                },
                now,
                doc,
            )?;
            key_index.get_or_insert(verified.key_index);
            signatures.push(verified.signature);
        }
        // The replay key is every item's signature, in one order whatever the sender's, so a
        // batch re-sent in another order is the same request; an item given twice is not a
        // batch any sender makes.
        signatures.sort_unstable();
        if signatures.windows(2).any(|w| w[0] == w[1]) {
            return Err(VerifyError::BodyAmbiguous(
                "the same signed item twice".to_owned(),
            ));
        }
        let key_index =
            key_index.ok_or_else(|| VerifyError::MalformedSignature(self.each_describe()))?;
        Ok(Verified {
            key_index,
            signature: signatures.concat(),
        })
    }

    /// The items of an `each:` array: at least one, or the request is refused.
    pub(super) fn items<'a>(
        &self,
        array: &str,
        req: &RequestView<'a>,
    ) -> Result<&'a Vec<serde_json::Value>, VerifyError> {
        match req.json()?.pointer(array) {
            None | Some(serde_json::Value::Null) => {
                Err(VerifyError::MissingSignature(self.each_describe()))
            }
            Some(serde_json::Value::Array(items)) if !items.is_empty() => Ok(items),
            Some(_) => Err(VerifyError::MalformedSignature(self.each_describe())),
        }
    }

    /// (key index, candidate index) of a token that matches: any candidate, or for a field of
    /// every item (Graph's clientState) every candidate, each one of the tokens.
    fn match_token(&self, digests: &[[u8; 32]], candidates: &[Vec<u8>]) -> Option<(usize, usize)> {
        if self.signature.source.every_item() {
            let key_of = |c: &Vec<u8>| digests.iter().position(|d| keys::token_matches(d, c));
            let keys: Option<Vec<usize>> = candidates.iter().map(key_of).collect();
            return keys.and_then(|k| k.first().map(|&first| (first, 0)));
        }
        digests.iter().enumerate().find_map(|(k, d)| {
            let c = candidates.iter().position(|c| keys::token_matches(d, c))?;
            Some((k, c))
        })
    }

    /// Where an `each:` scheme's signatures are, as a refusal says it.
    fn each_describe(&self) -> String {
        let array = self.each_item.as_deref().unwrap_or_default();
        format!(
            "{} of every item of {array}",
            self.signature.source.describe()
        )
    }

    /// One request (or one item of an `each:` array) verified.
    pub(super) fn verify_one(
        &self,
        req: &RequestView<'_>,
        now: SystemTime,
        doc: Option<&fetched::KeyDoc>,
    ) -> Result<Verified, VerifyError> {
        let header = self.signature.read(req, &|k| self.reads_entry(k))?;
        if let Some(spec) = &self.jwt {
            return self.verify_token(&header, spec, req, now, doc);
        }
        self.check_read_once(req)?;
        let candidates = self.decode_candidates(&header)?;
        if let Some(ts) = &self.timestamp {
            check_timestamp(ts, req, &header, now)?;
        }
        self.check_body_hash(req)?;
        if let Keys::Fetched(key) = &self.keys {
            return self.verify_fetched(key, req, &header, candidates, now, doc);
        }
        // (key index, candidate index) of the first match.
        let found: Option<(usize, usize)> = match &self.keys {
            // Verified whole above, and below.
            Keys::Jwt(_) | Keys::Fetched(_) => None,
            Keys::Hmac(keys) => keys.iter().enumerate().find_map(|(k, key)| {
                let mut mac = key.clone();
                self.feed(req, &header, &mut |b| mac.update(b)).ok()?;
                let tag = mac.finalize();
                // Compare every candidate without short-circuiting on the first mismatch.
                let mut matched = None;
                for (c, candidate) in candidates.iter().enumerate() {
                    if bool::from(tag.as_slice().ct_eq(candidate.as_slice())) && matched.is_none() {
                        matched = Some((k, c));
                    }
                }
                matched
            }),
            Keys::Token(digests) => self.match_token(digests, &candidates),
            Keys::Ed25519(keys) => {
                let message = self.message_bytes(req, &header)?;
                keys.iter().enumerate().find_map(|(k, key)| {
                    let c = candidates.iter().position(|c| {
                        ed25519_dalek::Signature::from_slice(c)
                            .is_ok_and(|sig| key.verify_strict(&message, &sig).is_ok())
                    })?;
                    Some((k, c))
                })
            }
            Keys::P256(keys) => {
                use p256::ecdsa::signature::Verifier as _;
                let message = self.message_bytes(req, &header)?;
                keys.iter().enumerate().find_map(|(k, key)| {
                    let c = candidates.iter().position(|c| {
                        p256_signature(c).is_some_and(|sig| key.verify(&message, &sig).is_ok())
                    })?;
                    Some((k, c))
                })
            }
        };
        let Some((key_index, c)) = found else {
            // A missing signed header is reported as such, not as a mismatch.
            self.feed(req, &header, &mut |_| {})?;
            return Err(VerifyError::Mismatch);
        };
        let mut candidates = candidates;
        let mut signature = candidates.swap_remove(c);
        if self.algorithm == Algorithm::EcdsaP256Sha256 {
            // ECDSA signatures are malleable (s and n - s both verify, and DER differs): the
            // replay key is the low-s form, so a flipped copy is still the same request.
            if let Some(sig) = p256_signature(&signature) {
                signature = sig.normalize_s().unwrap_or(sig).to_bytes().to_vec();
            }
        }
        Ok(Verified {
            key_index,
            signature,
        })
    }

    /// A scheme whose key was fetched: the certificate may sign now, then a candidate
    /// verifies over the message (SNS's own string to sign, or the scheme's message).
    fn verify_fetched(
        &self,
        key: &fetched::FetchedKey,
        req: &RequestView<'_>,
        header: &Found<'_>,
        mut candidates: Vec<Vec<u8>>,
        now: SystemTime,
        doc: Option<&fetched::KeyDoc>,
    ) -> Result<Verified, VerifyError> {
        let cert = match doc {
            Some(fetched::KeyDoc::Certificate(cert)) => cert,
            Some(fetched::KeyDoc::P256(key)) => {
                return self.verify_p256_sha1(key, req, header, candidates);
            }
            _ => {
                return Err(VerifyError::KeyRefused(
                    "no key was fetched for this request".into(),
                ))
            }
        };
        let unix = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        cert.check(unix, &key.names)
            .map_err(|e| VerifyError::KeyRefused(e.to_string()))?;
        let (message, algorithm) = match self.algorithm {
            Algorithm::AwsSns => sns::signed(req.json()?)?,
            _ => (self.message_bytes(req, header)?, sns::rsa_sha256()),
        };
        let der = rustls::pki_types::CertificateDer::from(cert.der.as_slice());
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| VerifyError::KeyRefused(format!("the certificate cannot be read: {e}")))?;
        let c = candidates
            .iter()
            .position(|c| cert.verify_signature(algorithm, &message, c).is_ok())
            .ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            key_index: 0,
            signature: candidates.swap_remove(c),
        })
    }

    /// ECDSA P-256 with SHA-1 over the message (eBay's), with the key its API gave for the
    /// request's key id. The replay key is the low-s form, as for SHA-256.
    fn verify_p256_sha1(
        &self,
        key: &p256::ecdsa::VerifyingKey,
        req: &RequestView<'_>,
        header: &Found<'_>,
        candidates: Vec<Vec<u8>>,
    ) -> Result<Verified, VerifyError> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        use sha1::Digest as _;
        if self.algorithm != Algorithm::EcdsaP256Sha1 {
            return Err(VerifyError::KeyRefused(format!(
                "a P-256 key, and the scheme verifies with {}",
                self.algorithm.name()
            )));
        }
        let digest = sha1::Sha1::digest(self.message_bytes(req, header)?);
        let signature = candidates
            .iter()
            .filter_map(|c| p256_signature(c))
            .find(|sig| key.verify_prehash(&digest, sig).is_ok())
            .ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            key_index: 0,
            signature: signature
                .normalize_s()
                .unwrap_or(signature)
                .to_bytes()
                .to_vec(),
        })
    }

    /// Each header the scheme reads came once.
    fn check_read_once(&self, req: &RequestView<'_>) -> Result<(), VerifyError> {
        for name in self.headers_read() {
            if req.headers.get_all(name).iter().nth(1).is_some() {
                return Err(VerifyError::RepeatedHeader(name.clone()));
            }
        }
        Ok(())
    }

    /// `json_allowed:`: each restricted field holds one of the route's values.
    fn check_allowed(&self, req: &RequestView<'_>) -> Result<(), VerifyError> {
        for (pointer, values) in &self.json_allowed {
            match req.json()?.pointer(pointer) {
                Some(serde_json::Value::String(s)) if values.iter().any(|v| v == s) => {}
                Some(serde_json::Value::String(s)) => {
                    return Err(VerifyError::NotAllowed(format!("{pointer} {s:?}")))
                }
                _ => return Err(VerifyError::MissingField(format!("JSON field {pointer}"))),
            }
        }
        Ok(())
    }

    /// A JWT scheme: exactly one token, checked whole by `jwt.rs`.
    fn verify_jwt(
        &self,
        header: &Found<'_>,
        keys: &[jwt::JwtKey],
        spec: &jwt::JwtSpec,
        req: &RequestView<'_>,
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let [token] = header.candidates.as_slice() else {
            return Err(VerifyError::MalformedSignature(
                self.signature.source.describe(),
            ));
        };
        let (key_index, signature) = jwt::verify(token, keys, spec, req.body, now)?;
        Ok(Verified {
            key_index,
            signature,
        })
    }

    /// The scheme as YAML-like text for `hookgate check --expand`; keys shown by count only.
    pub fn describe(&self, indent: &str) -> String {
        self.describe_shape(indent) + &format!("{indent}keys: {} configured\n", self.keys.len())
    }

    /// The scheme's shape without its keys (for `hookgate presets`).
    pub fn describe_shape(&self, indent: &str) -> String {
        describe(self, indent)
    }

    /// Decodes every candidate under every accepted encoding, keeping only decodings of a
    /// shape the algorithm can produce. None left: the header is malformed.
    fn decode_candidates(&self, header: &Found<'_>) -> Result<Vec<Vec<u8>>, VerifyError> {
        let mut out = Vec::new();
        for candidate in &header.candidates {
            for encoding in &self.signature.encodings {
                if let Some(bytes) = encoding.decode(candidate) {
                    if self.algorithm.accepts(&bytes) && !out.contains(&bytes) {
                        out.push(bytes);
                    }
                }
            }
        }
        if out.is_empty() || out.iter().all(|c| c.is_empty()) {
            return Err(VerifyError::MalformedSignature(
                self.signature.source.describe(),
            ));
        }
        Ok(out)
    }

    /// Twilio-style body hash: when the URL carries it, it must be the body's SHA-256; a body
    /// that neither it nor the form parameters cover is refused. Without a body hash, sorted
    /// form parameters (Mandrill) cover only a form body: any other body is refused.
    fn check_body_hash(&self, req: &RequestView<'_>) -> Result<(), VerifyError> {
        let Some(param) = &self.body_hash_param else {
            let form_only = self.parts().any(|p| matches!(p, Part::FormParamsSorted))
                && !self.parts().any(Part::covers_body);
            return match form_only && !req.body.is_empty() && !is_form(req.headers) {
                true => Err(VerifyError::UnsignedBody),
                false => Ok(()),
            };
        };
        let query = params::query(req.path_and_query);
        let given = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == param)
            .map(|(_, v)| v.into_owned());
        match given {
            Some(hex_hash) => {
                let given = hex::decode(hex_hash.trim()).map_err(|_| VerifyError::Mismatch)?;
                let mut hasher = sha2::Sha256::new();
                for chunk in req.body.chunks() {
                    hasher.update(chunk);
                }
                let actual = hasher.finalize();
                if bool::from(given.as_slice().ct_eq(actual.as_slice())) {
                    Ok(())
                } else {
                    Err(VerifyError::Mismatch)
                }
            }
            None if req.body.is_empty() || is_form(req.headers) => Ok(()),
            None => Err(VerifyError::UnsignedBody),
        }
    }

    /// Feeds the message parts, in order, to `sink`.
    fn feed(
        &self,
        req: &RequestView<'_>,
        header: &Found<'_>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), VerifyError> {
        let source = message::Source {
            req,
            entry: &|name| header.entry(name),
            public_url: self.public_url.as_deref(),
            signature: &self.signature.source,
        };
        message::feed(&self.message, &source, sink)
    }

    /// The whole message in one buffer, for algorithms that cannot stream.
    fn message_bytes(
        &self,
        req: &RequestView<'_>,
        header: &Found<'_>,
    ) -> Result<Vec<u8>, VerifyError> {
        let mut message = Vec::with_capacity(req.body.len() + 64);
        self.feed(req, header, &mut |b| message.extend_from_slice(b))?;
        Ok(message)
    }
}

/// Where a scheme's signature is, as `describe` writes it.
fn describe_source(signature: &SignatureSpec) -> String {
    let names = |names: &[&HeaderName]| {
        let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        format!("[{}]", names.join(", "))
    };
    match &signature.source {
        SignatureSource::Header { name, also } if also.is_empty() => format!("header: {name}"),
        SignatureSource::Header { .. } => {
            format!("header: {}", names(&signature.source.headers()))
        }
        SignatureSource::EachHeader(_) => {
            format!("headers: {}", names(&signature.source.headers()))
        }
        SignatureSource::Query(q) => format!("query: {q}"),
        SignatureSource::Form(f) => format!("form: {f}"),
        SignatureSource::Json(p) => format!("json: {p}"),
        SignatureSource::JsonEach { array, field } => format!("json: {array}/*{field}"),
        SignatureSource::Body => "body: true".to_owned(),
    }
}

/// Text form of a scheme's shape.
fn describe(scheme: &Scheme, indent: &str) -> String {
    let Scheme {
        algorithm,
        signature,
        message,
        timestamp,
        body_hash_param,
        ..
    } = scheme;
    let encodings: Vec<&str> = signature.encodings.iter().map(|e| e.name()).collect();
    let mut parts: Vec<String> = message.iter().map(Part::describe).collect();
    if *algorithm == Algorithm::AwsSns {
        parts.push("SNS's own fields per message type".to_owned());
    }
    let layout = match (&signature.entries, &signature.list) {
        (_, Some(l)) => format!(
            "list: {{ separator: {:?}, first: {} }}",
            l.separator, l.first
        ),
        (None, None) => format!("prefix: {:?}", signature.prefix),
        (Some(e), None) => format!(
            "entries: {{ separator: {:?}, assign: {:?}, key: {} }}",
            e.separator, e.assign, e.key
        ),
    };
    let source = describe_source(signature);
    let mut out = format!(
        "{indent}algorithm: {}\n{indent}signature: {{ {source}, {layout}, encoding: [{}] }}\n{indent}message: [{}]\n",
        algorithm.name(),
        encodings.join(", "),
        parts.join(", "),
    );
    match timestamp {
        None => out += &format!("{indent}timestamp: none\n"),
        Some(t) => {
            let source = match &t.source {
                TimestampSource::Header(h) => format!("header: {h}"),
                TimestampSource::JsonField(p) => format!("json: {p}"),
                TimestampSource::SignatureEntry(e) => format!("signature_entry: {e}"),
            };
            let window = match &t.window {
                Some(w) => format!(
                    "tolerance: {}, future_tolerance: {}",
                    humantime::format_duration(w.past),
                    humantime::format_duration(w.future),
                ),
                None => "tolerance: none".to_owned(),
            };
            out += &format!(
                "{indent}timestamp: {{ {source}, unit: {}, {window} }}\n",
                t.unit.name(),
            );
        }
    }
    if let Some(array) = &scheme.each_item {
        out += &format!("{indent}each: {array}\n");
    }
    if !scheme.body_signed {
        out += &format!("{indent}body_signed: false\n");
    }
    if scheme.strength() != Strength::Signature {
        out += &format!(
            "{indent}# checks: {} (weaker than a signature over the body)\n",
            scheme.strength().label()
        );
    }
    if let Some(p) = body_hash_param {
        out += &format!("{indent}body_hash_param: {p}\n");
    }
    out + &describe_fetched(scheme, indent)
}

/// Text form of where a fetched key comes from, and of the fields the route restricts.
fn describe_fetched(scheme: &Scheme, indent: &str) -> String {
    let mut out = String::new();
    if let Keys::Fetched(key) = &scheme.keys {
        let hosts: Vec<String> = key.hosts.iter().map(|h| h.to_string()).collect();
        let paths: Vec<String> = key.paths.iter().map(|p| p.to_string()).collect();
        out += &format!(
            "{indent}key_url: {{ {}, hosts: [{}], paths: [{}], certificate_names: [{}] }}\n",
            key.from.describe(),
            hosts.join(", "),
            paths.join(", "),
            key.names.join(", ")
        );
    }
    for (pointer, values) in &scheme.json_allowed {
        out += &format!(
            "{indent}json_allowed: {pointer} in [{}]\n",
            values.join(", ")
        );
    }
    out
}

pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Checks the timestamp: canonical in its unit, and, with a window, no older than `past`
/// and no further ahead than `future` of `now`.
fn check_timestamp(
    spec: &TimestampSpec,
    req: &RequestView<'_>,
    header: &Found<'_>,
    now: SystemTime,
) -> Result<(), VerifyError> {
    let raw = read_timestamp(&spec.source, req, header)?;
    let ts_ms = parse_timestamp_ms(&raw, spec.unit).ok_or(VerifyError::MalformedTimestamp)?;
    let Some(window) = &spec.window else {
        return Ok(());
    };
    let now_ms = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    };
    let age_ms = now_ms - ts_ms;
    if age_ms > window.past.as_millis() as i128 {
        return Err(VerifyError::StaleTimestamp);
    }
    if -age_ms > window.future.as_millis() as i128 {
        return Err(VerifyError::FutureTimestamp);
    }
    Ok(())
}

/// The timestamp as text: a header value, a signature-header entry, or a JSON string or
/// number from the body.
fn read_timestamp(
    source: &TimestampSource,
    req: &RequestView<'_>,
    header: &Found<'_>,
) -> Result<String, VerifyError> {
    match source {
        TimestampSource::Header(name) => {
            let value = req.headers.get(name).ok_or(VerifyError::MissingTimestamp)?;
            let text = value
                .to_str()
                .map_err(|_| VerifyError::MalformedTimestamp)?;
            Ok(text.to_owned())
        }
        TimestampSource::SignatureEntry(name) => header
            .entry(name)
            .map(str::to_owned)
            .ok_or(VerifyError::MissingTimestamp),
        TimestampSource::JsonField(pointer) => {
            // Read from the one strict parse; the signature is always over the raw bytes.
            match req.json()?.pointer(pointer) {
                None | Some(serde_json::Value::Null) => Err(VerifyError::MissingTimestamp),
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                Some(_) => Err(VerifyError::MalformedTimestamp),
            }
        }
    }
}

/// Milliseconds since the Unix epoch, or `None` if the text is not a timestamp in `unit`
/// written in its one canonical form.
///
/// A timestamp is often signed next to the body with no separator (Listrak: body then
/// timestamp; SendGrid and Discord: timestamp then body). If `001796130913` or ` 1796130913`
/// were read as `1796130913`, a byte could move between the body and the timestamp without
/// changing the signed bytes. So integers are plain digits with no sign, space or leading
/// zero, and of the one length every time between 2001-09-09 and 2286-11-20 has: 10 digits
/// of seconds, 13 of milliseconds. Moving a digit across then always changes the length,
/// which is refused, even on schemes with no freshness window.
pub fn parse_timestamp_ms(raw: &str, unit: TimestampUnit) -> Option<i128> {
    match unit {
        TimestampUnit::Seconds => parse_digits(raw, 10).map(|s| s * 1000),
        TimestampUnit::Milliseconds => parse_digits(raw, 13),
        TimestampUnit::Rfc3339 => {
            let (local, offset_ms) = rfc3339_offset(raw)?;
            if !rfc3339_shape(local.as_bytes()) {
                return None;
            }
            let t = humantime::parse_rfc3339_weak(local).ok()?;
            Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i128 - offset_ms)
        }
        TimestampUnit::Rfc1123 => {
            // Only IMF-fixdate, written exactly as it is written back: the obsolete RFC 850
            // and asctime forms httpdate also reads would be a second text for one instant.
            let t = httpdate::parse_http_date(raw).ok()?;
            if httpdate::fmt_http_date(t) != raw {
                return None;
            }
            Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i128)
        }
    }
}

/// Splits a `+HH:MM` or `-HH:MM` offset off an RFC 3339 text: the local date-time and the
/// offset in milliseconds (0 for `Z` or no zone, which stay on the text).
fn rfc3339_offset(raw: &str) -> Option<(&str, i128)> {
    let b = raw.as_bytes();
    if b.len() < 6 {
        return Some((raw, 0));
    }
    let (local, zone) = raw.split_at(raw.len() - 6);
    let z = zone.as_bytes();
    let sign = match z[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Some((raw, 0)),
    };
    let digits = |i: usize| -> Option<i128> {
        let (a, b) = (z[i], z[i + 1]);
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i128::from((a - b'0') * 10 + (b - b'0')))
    };
    if z[3] != b':' {
        return None;
    }
    let (hours, minutes) = (digits(1)?, digits(4)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    // `Z` and an offset together is no form at all.
    if local.ends_with('Z') {
        return None;
    }
    Some((local, sign * (hours * 60 + minutes) * 60_000))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction][Z]`, byte by byte (`T` or one space between date and
/// time, as humantime's weak parser reads it): humantime alone also takes an empty
/// fraction (`30.Z`) and anything after its `.`, so two texts could name one instant.
fn rfc3339_shape(b: &[u8]) -> bool {
    const DATE_TIME: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < DATE_TIME.len() {
        return false;
    }
    let (head, mut rest) = b.split_at(DATE_TIME.len());
    let head_ok = head.iter().zip(DATE_TIME).all(|(&c, &p)| match p {
        b'd' => c.is_ascii_digit(),
        b'T' => c == b'T' || c == b' ',
        _ => c == p,
    });
    if !head_ok {
        return false;
    }
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return false;
        }
        rest = &fraction[digits..];
    }
    rest.is_empty() || rest == b"Z"
}

/// Exactly `len` ASCII digits, the first not `0`.
fn parse_digits(raw: &str, len: usize) -> Option<i128> {
    let b = raw.as_bytes();
    if b.len() != len || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    raw.parse().ok()
}

#[cfg(test)]
mod tests;
