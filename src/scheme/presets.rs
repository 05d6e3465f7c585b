//! Built-in senders. A preset is only a value of the raw `verify:` block (the same shape an
//! operator writes by hand), so it goes through the same compiler and a route may override
//! any of its fields. There is no per-vendor verification code.
//!
//! Sources: `../shared/senders.md` (each sender's docs, and where they disagree).

use crate::config::file::{OneOrMany, RawPart, RawSignature, RawTimestamp, RawVerify};

/// Every preset name, in the order `hookgate check --expand` and the README list them.
pub const NAMES: &[&str] = &["laso", "lahza", "lomi", "ltvboost", "listrak"];

/// The `verify:` block a preset stands for, or `None` for an unknown name.
pub fn preset(name: &str) -> Option<RawVerify> {
    let v = match name {
        // LasoExperience: hex HMAC-SHA256 of the body in `x-signature`. The body carries a
        // `time` in ms, but retries come up to ~33 h after the first try, so no freshness
        // check by default.
        "laso" => body_hmac("x-signature", "", &["hex"]),
        // Lahza: hex HMAC-SHA256 of the body. Lahza also publishes source IPs: pair this
        // preset with `allow_ips` on the route.
        "lahza" => body_hmac("x-lahza-signature", "", &["hex"]),
        // lomi.: hex HMAC-SHA256 of the body. The body's `timestamp` (RFC 3339) is signed; a
        // route can turn on a window with `timestamp: { json: /timestamp, unit: rfc3339,
        // tolerance: ... }`. Off by default: lomi. retries carry the original event time.
        "lomi" => body_hmac("x-lomi-signature", "", &["hex"]),
        // LTV Boost: `sha256=` + hex of the body.
        "ltvboost" => body_hmac("x-ltvboost-signature", "sha256=", &["hex"]),
        // Listrak: HMAC-SHA256 of body + LTK-Timestamp (no separator). Their Python and C#
        // examples send base64, their JavaScript example hex: accept both. 15 min window,
        // both directions.
        "listrak" => RawVerify {
            message: Some(vec![RawPart::Body, RawPart::Header("ltk-timestamp".into())]),
            timestamp: Some(RawTimestamp {
                header: Some("ltk-timestamp".into()),
                json: None,
                unit: Some("seconds".into()),
                tolerance: Some("15m".into()),
                future_tolerance: None,
            }),
            ..body_hmac("ltk-hmacsignature", "", &["base64", "hex"])
        },
        _ => return None,
    };
    Some(v)
}

/// The common shape: HMAC-SHA256 over the raw body, signature in one header.
fn body_hmac(header: &str, prefix: &str, encodings: &[&str]) -> RawVerify {
    RawVerify {
        algorithm: Some("hmac-sha256".into()),
        signature: Some(RawSignature {
            header: Some(header.into()),
            prefix: Some(prefix.into()),
            encoding: Some(OneOrMany::Many(
                encodings.iter().map(|e| e.to_string()).collect(),
            )),
        }),
        message: Some(vec![RawPart::Body]),
        ..RawVerify::default()
    }
}
