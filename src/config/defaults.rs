//! What a `verify:` block gets for each field that neither it nor its preset sets: one
//! place, read by the compiler (`compile/verify.rs`, `compile/keys.rs`), by `hookgate check
//! --expand`, which writes these values out ([`super::expand`], through [`write_out`]), and
//! by `hookgate keygen`, which needs the key encoding of a route it cannot compile yet
//! ([`super::key_spec`]).

use super::file::{OneOrMany, RawPart, RawVerify};
use crate::scheme::{Algorithm, Encoding, KeyEncoding};

/// `algorithm:`.
pub const ALGORITHM: Algorithm = Algorithm::HmacSha256;

/// `signature.prefix:`: none, the header holds the encoded signature alone.
pub const SIGNATURE_PREFIX: &str = "";

/// `signature.encoding:`: hex for a signature; a shared token (`token`) is compared as
/// written (`raw`).
pub fn signature_encoding(algorithm: Algorithm) -> Encoding {
    if algorithm == Algorithm::Token {
        Encoding::Raw
    } else {
        Encoding::Hex
    }
}

/// `key_encoding:`: a shared secret is used as written; a public key, being binary, is
/// written in base64.
pub fn key_encoding(algorithm: Algorithm) -> KeyEncoding {
    if algorithm.is_asymmetric() {
        KeyEncoding::Base64
    } else {
        KeyEncoding::Raw
    }
}

/// `message:`: the body alone.
pub fn message() -> Vec<RawPart> {
    vec![RawPart::Body]
}

/// The algorithm a block names, or the default; `None` if it names an unknown one.
pub fn algorithm(v: &RawVerify) -> Option<Algorithm> {
    match v.algorithm.as_deref() {
        None => Some(ALGORITHM),
        Some(name) => Algorithm::parse(name),
    }
}

/// Writes into `v` (a block with its preset laid under it) the defaults `check --expand`
/// prints: key encoding, message, and the signature's prefix and encoding.
pub fn write_out(v: &mut RawVerify) {
    let algorithm = algorithm(v).unwrap_or(ALGORITHM);
    v.key_encoding
        .get_or_insert_with(|| key_encoding(algorithm).name().into());
    // A JWT signs its own claims, SNS its own list of fields: neither has a message.
    if !matches!(algorithm, Algorithm::Jwt | Algorithm::AwsSns) {
        v.message.get_or_insert_with(message);
    }
    if let Some(s) = v.signature.as_mut() {
        s.prefix.get_or_insert_with(|| SIGNATURE_PREFIX.into());
        s.encoding
            .get_or_insert_with(|| OneOrMany::One(signature_encoding(algorithm).name().into()));
    }
}
