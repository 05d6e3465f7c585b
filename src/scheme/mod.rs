//! The generic signature scheme: one engine that every sender is a configuration of.
//!
//! A [`Scheme`] is compiled once from the `verify:` block of a route (see `config/`), with its
//! secrets already resolved into pre-keyed MAC states. Verifying a request clones a keyed state,
//! feeds it the message parts in order (body bytes are never copied or re-serialized), and
//! compares the result with the decoded signature in constant time (`subtle`).
//!
//! Neighbours: `presets.rs` names the built-in senders as values of the raw `verify:` block;
//! `gateway.rs` calls [`Scheme::verify`] after the body has been read; `main.rs` calls
//! [`Scheme::sign`] for `hookgate sign`.

pub mod presets;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use subtle::ConstantTimeEq;

/// The MAC family a scheme uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
    HmacSha512,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_lowercase().as_str() {
            "hmac-sha1" => Some(Algorithm::HmacSha1),
            "hmac-sha256" => Some(Algorithm::HmacSha256),
            "hmac-sha512" => Some(Algorithm::HmacSha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// Length in bytes of the MAC this algorithm produces; a decoded signature of any other
    /// length is malformed, never a partial match.
    pub fn output_len(self) -> usize {
        match self {
            Algorithm::HmacSha1 => 20,
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha512 => 64,
        }
    }
}

/// How the signature bytes are written in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64 alphabet, padding optional.
    Base64,
}

impl Encoding {
    pub fn parse(s: &str) -> Option<Encoding> {
        match s.to_ascii_lowercase().as_str() {
            "hex" => Some(Encoding::Hex),
            "base64" => Some(Encoding::Base64),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }

    fn decode(self, s: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(s).ok(),
            Encoding::Base64 => BASE64.decode(s).ok(),
        }
    }

    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => BASE64.encode(bytes),
        }
    }
}

/// Standard alphabet; senders differ on padding, so accept it present or absent, and always
/// emit it when signing.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// One piece of the signed message, fed to the MAC in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// The raw request body, exactly as received.
    Body,
    /// The value of a request header (its raw bytes).
    Header(HeaderName),
    /// Fixed bytes, such as a `.` or `:` separator.
    Literal(Vec<u8>),
}

/// Where the signature is found and how it is written.
#[derive(Clone, Debug)]
pub struct SignatureSpec {
    pub header: HeaderName,
    /// Text that must precede the encoded signature (e.g. `sha256=`); matched exactly.
    pub prefix: String,
    /// Accepted encodings; the first one is used when signing.
    pub encodings: Vec<Encoding>,
}

/// Where a timestamp is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimestampSource {
    Header(HeaderName),
    /// A JSON pointer (RFC 6901) into the body, e.g. `/timestamp`.
    JsonField(String),
}

/// How the timestamp is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampUnit {
    Seconds,
    Milliseconds,
    /// An RFC 3339 date-time string such as `2025-11-23T07:59:30Z`.
    Rfc3339,
}

impl TimestampUnit {
    pub fn parse(s: &str) -> Option<TimestampUnit> {
        match s.to_ascii_lowercase().as_str() {
            "seconds" | "s" => Some(TimestampUnit::Seconds),
            "milliseconds" | "ms" => Some(TimestampUnit::Milliseconds),
            "rfc3339" => Some(TimestampUnit::Rfc3339),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TimestampUnit::Seconds => "seconds",
            TimestampUnit::Milliseconds => "milliseconds",
            TimestampUnit::Rfc3339 => "rfc3339",
        }
    }
}

/// A freshness window around the gateway's clock.
#[derive(Clone, Debug)]
pub struct TimestampSpec {
    pub source: TimestampSource,
    pub unit: TimestampUnit,
    /// How old a timestamp may be.
    pub past: Duration,
    /// How far ahead of our clock a timestamp may be (sender clock skew).
    pub future: Duration,
}

/// A secret, pre-keyed: keying HMAC hashes the key once, so each request only clones this.
#[derive(Clone)]
enum KeyedMac {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

impl KeyedMac {
    fn new(algorithm: Algorithm, key: &[u8]) -> KeyedMac {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        match algorithm {
            Algorithm::HmacSha1 => {
                KeyedMac::Sha1(Hmac::new_from_slice(key).expect("HMAC takes any key length"))
            }
            Algorithm::HmacSha256 => {
                KeyedMac::Sha256(Hmac::new_from_slice(key).expect("HMAC takes any key length"))
            }
            Algorithm::HmacSha512 => {
                KeyedMac::Sha512(Hmac::new_from_slice(key).expect("HMAC takes any key length"))
            }
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            KeyedMac::Sha1(m) => m.update(data),
            KeyedMac::Sha256(m) => m.update(data),
            KeyedMac::Sha512(m) => m.update(data),
        }
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            KeyedMac::Sha1(m) => m.finalize().into_bytes().to_vec(),
            KeyedMac::Sha256(m) => m.finalize().into_bytes().to_vec(),
            KeyedMac::Sha512(m) => m.finalize().into_bytes().to_vec(),
        }
    }
}

/// A compiled signature scheme with its resolved secrets.
#[derive(Clone)]
pub struct Scheme {
    pub algorithm: Algorithm,
    pub signature: SignatureSpec,
    pub message: Vec<Part>,
    pub timestamp: Option<TimestampSpec>,
    /// One keyed MAC per configured secret (rotation: any may match).
    keys: Vec<KeyedMac>,
}

impl fmt::Debug for Scheme {
    // Hand-written so that key material can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheme")
            .field("algorithm", &self.algorithm)
            .field("signature", &self.signature)
            .field("message", &self.message)
            .field("timestamp", &self.timestamp)
            .field("secrets", &self.keys.len())
            .finish()
    }
}

/// Why a request failed verification. Each maps to one refusal (401) with its own metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing signature header {0}")]
    MissingSignature(HeaderName),
    #[error("malformed signature header {0}")]
    MalformedSignature(HeaderName),
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
}

/// What a successful verification tells the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Index of the secret that matched, in configuration order.
    pub key_index: usize,
}

impl Scheme {
    /// Builds a scheme; `secrets` must not be empty (the config compiler guarantees it).
    pub fn new(
        algorithm: Algorithm,
        signature: SignatureSpec,
        message: Vec<Part>,
        timestamp: Option<TimestampSpec>,
        secrets: &[Vec<u8>],
    ) -> Scheme {
        let keys = secrets
            .iter()
            .map(|s| KeyedMac::new(algorithm, s))
            .collect();
        Scheme {
            algorithm,
            signature,
            message,
            timestamp,
            keys,
        }
    }

    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }

    /// The scheme as YAML-like text for `hookgate check --expand`; secrets shown by count only.
    pub fn describe(&self, indent: &str) -> String {
        let encodings: Vec<&str> = self.signature.encodings.iter().map(|e| e.name()).collect();
        let parts: Vec<String> = self
            .message
            .iter()
            .map(|p| match p {
                Part::Body => "body".to_owned(),
                Part::Header(h) => format!("{{ header: {h} }}"),
                Part::Literal(l) => format!("{{ literal: {:?} }}", String::from_utf8_lossy(l)),
            })
            .collect();
        let mut out = format!(
            "{indent}algorithm: {}\n{indent}signature: {{ header: {}, prefix: {:?}, encoding: [{}] }}\n{indent}message: [{}]\n",
            self.algorithm.name(),
            self.signature.header,
            self.signature.prefix,
            encodings.join(", "),
            parts.join(", "),
        );
        match &self.timestamp {
            None => out += &format!("{indent}timestamp: none\n"),
            Some(t) => {
                let source = match &t.source {
                    TimestampSource::Header(h) => format!("header: {h}"),
                    TimestampSource::JsonField(p) => format!("json: {p}"),
                };
                out += &format!(
                    "{indent}timestamp: {{ {source}, unit: {}, tolerance: {}, future_tolerance: {} }}\n",
                    t.unit.name(),
                    humantime::format_duration(t.past),
                    humantime::format_duration(t.future),
                );
            }
        }
        out += &format!("{indent}secrets: {} configured\n", self.keys.len());
        out
    }

    /// Verifies a request: signature header well-formed, timestamp (if any) inside its
    /// window relative to `now`, and the MAC over the message parts equal, in constant time,
    /// to the signature under one of the secrets.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let candidates = self.signature_candidates(headers)?;
        if let Some(ts) = &self.timestamp {
            check_timestamp(ts, headers, body, now)?;
        }
        for (key_index, key) in self.keys.iter().enumerate() {
            let tag = self.mac(key, headers, body)?;
            // Compare every candidate without short-circuiting on the first mismatch.
            let mut matched = subtle::Choice::from(0u8);
            for candidate in &candidates {
                matched |= tag.as_slice().ct_eq(candidate.as_slice());
            }
            if bool::from(matched) {
                return Ok(Verified { key_index });
            }
        }
        Err(VerifyError::Mismatch)
    }

    /// Computes the header value a sender would send for this message with the first secret.
    pub fn sign(&self, headers: &HeaderMap, body: &[u8]) -> Result<String, VerifyError> {
        let tag = self.mac(&self.keys[0], headers, body)?;
        let encoding = self.signature.encodings[0];
        Ok(format!(
            "{}{}",
            self.signature.prefix,
            encoding.encode(&tag)
        ))
    }

    fn mac(
        &self,
        key: &KeyedMac,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<u8>, VerifyError> {
        let mut mac = key.clone();
        for part in &self.message {
            match part {
                Part::Body => mac.update(body),
                Part::Literal(bytes) => mac.update(bytes),
                Part::Header(name) => {
                    let value = headers
                        .get(name)
                        .ok_or_else(|| VerifyError::MissingMessageHeader(name.clone()))?;
                    mac.update(value.as_bytes());
                }
            }
        }
        Ok(mac.finalize())
    }

    /// Decodes the signature header into every byte string it could mean under the accepted
    /// encodings. Only decodings of exactly the MAC's length count: anything else (truncated,
    /// stray characters, wrong prefix, empty) is malformed.
    fn signature_candidates(&self, headers: &HeaderMap) -> Result<Vec<Vec<u8>>, VerifyError> {
        let spec = &self.signature;
        let mut values = headers.get_all(&spec.header).iter();
        let value = values
            .next()
            .ok_or_else(|| VerifyError::MissingSignature(spec.header.clone()))?;
        // Two signature headers are ambiguous; a sender never sends that.
        if values.next().is_some() {
            return Err(VerifyError::MalformedSignature(spec.header.clone()));
        }
        let malformed = || VerifyError::MalformedSignature(spec.header.clone());
        let text = value.to_str().map_err(|_| malformed())?;
        let encoded = text
            .strip_prefix(spec.prefix.as_str())
            .ok_or_else(malformed)?;
        let want = self.algorithm.output_len();
        let candidates: Vec<Vec<u8>> = spec
            .encodings
            .iter()
            .filter_map(|e| e.decode(encoded))
            .filter(|bytes| bytes.len() == want)
            .collect();
        if candidates.is_empty() {
            return Err(malformed());
        }
        Ok(candidates)
    }
}

/// Checks the timestamp against `now`: refused when older than `past` or further ahead
/// than `future`.
fn check_timestamp(
    spec: &TimestampSpec,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    let raw = read_timestamp(&spec.source, headers, body)?;
    let ts_ms = parse_timestamp_ms(&raw, spec.unit).ok_or(VerifyError::MalformedTimestamp)?;
    let now_ms = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    };
    let age_ms = now_ms - ts_ms;
    if age_ms > spec.past.as_millis() as i128 {
        return Err(VerifyError::StaleTimestamp);
    }
    if -age_ms > spec.future.as_millis() as i128 {
        return Err(VerifyError::FutureTimestamp);
    }
    Ok(())
}

/// The timestamp as text: a header value, or a JSON string or number from the body.
fn read_timestamp(
    source: &TimestampSource,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, VerifyError> {
    match source {
        TimestampSource::Header(name) => {
            let value = headers.get(name).ok_or(VerifyError::MissingTimestamp)?;
            let text = value
                .to_str()
                .map_err(|_| VerifyError::MalformedTimestamp)?;
            Ok(text.to_owned())
        }
        TimestampSource::JsonField(pointer) => {
            // Parsed only to read the field; the MAC is always over the raw bytes.
            let doc: serde_json::Value =
                serde_json::from_slice(body).map_err(|_| VerifyError::MalformedTimestamp)?;
            match doc.pointer(pointer) {
                None | Some(serde_json::Value::Null) => Err(VerifyError::MissingTimestamp),
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                Some(_) => Err(VerifyError::MalformedTimestamp),
            }
        }
    }
}

/// Milliseconds since the Unix epoch, or `None` if the text is not a timestamp in `unit`.
fn parse_timestamp_ms(raw: &str, unit: TimestampUnit) -> Option<i128> {
    let raw = raw.trim();
    match unit {
        TimestampUnit::Seconds => parse_integer(raw).map(|s| s * 1000),
        TimestampUnit::Milliseconds => parse_integer(raw),
        TimestampUnit::Rfc3339 => {
            let t = humantime::parse_rfc3339_weak(raw).ok()?;
            Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i128)
        }
    }
}

/// A plain decimal integer of sane size: no sign games, no exponent, no overflow.
fn parse_integer(raw: &str) -> Option<i128> {
    if raw.is_empty() || raw.len() > 18 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

#[cfg(test)]
mod tests;
