//! JWT-signed webhooks with static keys (`algorithm: jwt`): Netlify, Vonage, FusionAuth and
//! others send a JSON Web Token (in a header, often after `Bearer `) whose claims say who
//! sent it, when, and the SHA-256 of the body.
//!
//! The signature check is the `jsonwebtoken` crate's, on ring, with an allow-list of
//! algorithms per route: never `none`, and never an algorithm the key was not made for (an
//! HS256 token checked with an RSA public key as its HMAC secret is the classic confusion),
//! so a route's list holds one family and every key belongs to it. The claims are checked
//! here, against the gateway's clock: `exp` and `nbf` with a leeway, `iat` within `max_age`,
//! `iss` and `aud`, and the claim bound to the body's digest, compared in constant time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm as Alg, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use super::{VerifyError, BASE64, BASE64URL};

/// What a route asks of a token beyond its signature.
#[derive(Clone, Debug)]
pub struct JwtSpec {
    /// The algorithms a token may name: one family (HMAC, RSA, ECDSA or EdDSA).
    pub algorithms: Vec<Alg>,
    /// `iss` must be this.
    pub issuer: Option<String>,
    /// `aud` must be this (or, as a list, hold it).
    pub audience: Option<String>,
    /// Slack for the clocks of sender and gateway, on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// `iat` must be this recent (and is then required).
    pub max_age: Option<Duration>,
    /// Claims that must be present: `exp`, `nbf`, `iat`, `iss`, `aud`.
    pub require: Vec<String>,
    /// The claim that holds the body's SHA-256, and how it is written.
    pub body_sha256: Option<BodyClaim>,
    /// Claims that must equal these values, or as lists hold them (Google's `email` and
    /// `email_verified`, Entra ID's `roles`).
    pub claims: Vec<(String, Value)>,
}

/// A claim bound to the body's SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyClaim {
    pub claim: String,
    pub encoding: super::Encoding,
}

/// The key families: a route's algorithms and keys must all be of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Family {
    /// The family of a route's algorithms (one, checked at load).
    pub fn of_spec(spec: &JwtSpec) -> Family {
        spec.algorithms
            .first()
            .map_or(Family::Hmac, |a| Family::of(*a))
    }

    pub fn of(alg: Alg) -> Family {
        match alg {
            Alg::HS256 | Alg::HS384 | Alg::HS512 => Family::Hmac,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                Family::Rsa
            }
            Alg::ES256 | Alg::ES384 => Family::Ec,
            Alg::EdDSA => Family::Ed,
        }
    }
}

/// The algorithm names a route may list (`none` is not one of them).
pub const ALGORITHMS: &[(&str, Alg)] = &[
    ("HS256", Alg::HS256),
    ("HS384", Alg::HS384),
    ("HS512", Alg::HS512),
    ("RS256", Alg::RS256),
    ("RS384", Alg::RS384),
    ("RS512", Alg::RS512),
    ("PS256", Alg::PS256),
    ("PS384", Alg::PS384),
    ("PS512", Alg::PS512),
    ("ES256", Alg::ES256),
    ("ES384", Alg::ES384),
    ("EdDSA", Alg::EdDSA),
];

/// One verification key, parsed once.
#[derive(Clone)]
pub struct JwtKey(DecodingKey);

impl JwtKey {
    /// A key of `family`: the secret's bytes for HMAC, a PEM public key otherwise.
    pub fn new(family: Family, bytes: &[u8]) -> Result<JwtKey, String> {
        let pem = || {
            std::str::from_utf8(bytes)
                .ok()
                .filter(|t| t.contains("-----BEGIN"))
                .ok_or("a JWT public key is PEM text (-----BEGIN PUBLIC KEY-----)".to_string())
        };
        let key = match family {
            Family::Hmac => Ok(DecodingKey::from_secret(bytes)),
            Family::Rsa => DecodingKey::from_rsa_pem(pem()?.as_bytes()),
            Family::Ec => DecodingKey::from_ec_pem(pem()?.as_bytes()),
            Family::Ed => DecodingKey::from_ed_pem(pem()?.as_bytes()),
        }
        .map_err(|e| format!("not a {family:?} public key for JWTs: {e}"))?;
        Ok(JwtKey(key))
    }
}

impl JwtKey {
    /// A key of a fetched JWKS, if it is one of `family` (an `oct` key, a shared secret
    /// published with the public keys, is never taken: anyone could sign with it).
    pub fn from_jwk(family: Family, jwk: &jsonwebtoken::jwk::Jwk) -> Option<JwtKey> {
        use jsonwebtoken::jwk::{AlgorithmParameters as P, EllipticCurve as C};
        // A key published for encryption is no signing key.
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            return None;
        }
        let of = match &jwk.algorithm {
            P::RSA(_) => Family::Rsa,
            P::EllipticCurve(ec) if matches!(ec.curve, C::P256 | C::P384) => Family::Ec,
            P::OctetKeyPair(okp) if okp.curve == C::Ed25519 => Family::Ed,
            P::EllipticCurve(_) | P::OctetKeyPair(_) | P::OctetKey(_) => return None,
        };
        if of != family {
            return None;
        }
        DecodingKey::from_jwk(jwk).ok().map(JwtKey)
    }
}

/// What can be checked of a token before its key is fetched: a header naming an algorithm on
/// the route's list.
pub fn precheck(token: &str, spec: &JwtSpec) -> Result<(), VerifyError> {
    match jsonwebtoken::decode_header(token) {
        Ok(header)
            if spec.algorithms.contains(&header.alg)
                && header.kid.as_deref().is_none_or(kid_fits) =>
        {
            Ok(())
        }
        _ => Err(VerifyError::MalformedSignature("JWT".into())),
    }
}

/// The `kid` a token's header names, if any and well-formed (to find its key in a fetched
/// JWKS).
pub fn kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token)
        .ok()?
        .kid
        .filter(|k| kid_fits(k))
}

/// A key id as issuers write them: 1 to 128 visible ASCII characters. Anything else is no
/// key's, and would only make the gateway keep or ask for it.
fn kid_fits(kid: &str) -> bool {
    (1..=128).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_graphic())
}

/// Verifies `token` with the first key that takes it, then its claims at `now`. Returns the
/// index of that key and the token's signature bytes (its replay key).
pub fn verify(
    token: &str,
    keys: &[JwtKey],
    spec: &JwtSpec,
    body: &crate::body::RawBody,
    now: SystemTime,
) -> Result<(usize, Vec<u8>), VerifyError> {
    let malformed = || VerifyError::MalformedSignature("JWT".into());
    // The header names an algorithm on the route's list, or nothing is tried.
    let header = jsonwebtoken::decode_header(token).map_err(|_| malformed())?;
    if !spec.algorithms.contains(&header.alg) {
        return Err(malformed());
    }
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let mut verified = None;
    for (i, key) in keys.iter().enumerate() {
        match jsonwebtoken::decode::<Value>(token, &key.0, &validation) {
            Ok(data) => {
                verified = Some((i, data.claims));
                break;
            }
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {}
                _ => return Err(malformed()),
            },
        }
    }
    let (index, claims) = verified.ok_or(VerifyError::Mismatch)?;
    check_claims(&claims, spec, body, now)?;
    let signature = token.rsplit('.').next().unwrap_or_default();
    let signature = BASE64URL.decode(signature).map_err(|_| malformed())?;
    Ok((index, signature))
}

/// The claims, at `now`: times, issuer, audience, the body's digest.
fn check_claims(
    claims: &Value,
    spec: &JwtSpec,
    body: &crate::body::RawBody,
    now: SystemTime,
) -> Result<(), VerifyError> {
    for name in &spec.require {
        if claims.get(name).is_none() {
            return Err(missing(name));
        }
    }
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let leeway = spec.leeway.as_secs() as i64;
    if let Some(exp) = time_claim(claims, "exp")? {
        if now > exp.saturating_add(leeway) {
            return Err(VerifyError::StaleTimestamp);
        }
    }
    if let Some(nbf) = time_claim(claims, "nbf")? {
        if nbf > now.saturating_add(leeway) {
            return Err(VerifyError::FutureTimestamp);
        }
    }
    if let Some(max_age) = spec.max_age {
        let iat = time_claim(claims, "iat")?.ok_or(VerifyError::MissingTimestamp)?;
        if now.saturating_sub(iat) > (max_age.as_secs() as i64).saturating_add(leeway) {
            return Err(VerifyError::StaleTimestamp);
        }
        if iat > now.saturating_add(leeway) {
            return Err(VerifyError::FutureTimestamp);
        }
    }
    if let Some(issuer) = &spec.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(VerifyError::ClaimMismatch("iss".into()));
        }
    }
    if let Some(audience) = &spec.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !ok {
            return Err(VerifyError::ClaimMismatch("aud".into()));
        }
    }
    // A claim equals its value, or, as a list (Entra ID's `roles`), holds it.
    for (name, value) in &spec.claims {
        let holds = match claims.get(name) {
            Some(Value::Array(items)) => items.contains(value),
            Some(claim) => claim == value,
            None => false,
        };
        if !holds {
            return Err(VerifyError::ClaimMismatch(name.clone()));
        }
    }
    if let Some(bound) = &spec.body_sha256 {
        check_body_claim(claims, bound, body)?;
    }
    Ok(())
}

/// The claim bound to the body holds the body's SHA-256.
fn check_body_claim(
    claims: &Value,
    bound: &BodyClaim,
    body: &crate::body::RawBody,
) -> Result<(), VerifyError> {
    let text = claims
        .get(&bound.claim)
        .and_then(Value::as_str)
        .ok_or_else(|| missing(&bound.claim))?;
    let given = match bound.encoding {
        super::Encoding::Hex => hex::decode(text).ok(),
        super::Encoding::Base64Url => BASE64URL.decode(text).ok(),
        _ => BASE64.decode(text).ok(),
    }
    .ok_or_else(|| VerifyError::ClaimMismatch(bound.claim.clone()))?;
    let mut hasher = sha2::Sha256::new();
    for chunk in body.chunks() {
        hasher.update(chunk);
    }
    let actual = hasher.finalize();
    if bool::from(given.as_slice().ct_eq(actual.as_slice())) {
        Ok(())
    } else {
        Err(VerifyError::ClaimMismatch(bound.claim.clone()))
    }
}

/// A required claim that is absent: the times are timestamps, the others claims.
fn missing(name: &str) -> VerifyError {
    match name {
        "exp" | "nbf" | "iat" => VerifyError::MissingTimestamp,
        other => VerifyError::ClaimMismatch(other.to_owned()),
    }
}

/// A NumericDate claim, in whole seconds; a claim of another type is malformed.
fn time_claim(claims: &Value, name: &str) -> Result<Option<i64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(VerifyError::MalformedTimestamp),
    }
}

/// What a sender makes tokens with (`hookgate sign`): one of the route's algorithms and the
/// key for it, the route's secret (HS*) or a PEM private key.
pub struct JwtSigner {
    alg: Alg,
    key: EncodingKey,
}

impl JwtSigner {
    /// The route's secret, for its first algorithm (HS256, HS384 or HS512).
    pub fn secret(spec: &JwtSpec, secret: &[u8]) -> Result<JwtSigner, String> {
        let alg = spec.algorithms.first().copied().ok_or("no JWT algorithm")?;
        if Family::of(alg) != Family::Hmac {
            return Err("this route's JWTs are signed with a private key (--private-key)".into());
        }
        Ok(JwtSigner {
            alg,
            key: EncodingKey::from_secret(secret),
        })
    }

    /// A PEM private key of the route's family, for the first of its algorithms the key can
    /// sign with (an ES384 key cannot make ES256 tokens).
    pub fn from_pem(spec: &JwtSpec, pem: &str) -> Result<JwtSigner, String> {
        let family = Family::of_spec(spec);
        let key = match family {
            Family::Hmac => {
                return Err(
                    "this route's JWTs are HS*, signed with its secret from the \
                            configuration: no private key is needed"
                        .into(),
                )
            }
            Family::Rsa => EncodingKey::from_rsa_pem(pem.as_bytes()),
            Family::Ec => EncodingKey::from_ec_pem(pem.as_bytes()),
            Family::Ed => EncodingKey::from_ed_pem(pem.as_bytes()),
        }
        .map_err(|e| format!("not a {family:?} private key in PEM (PKCS#8) for JWTs: {e}"))?;
        let alg = spec
            .algorithms
            .iter()
            .copied()
            .find(|alg| jsonwebtoken::encode(&Header::new(*alg), &Value::Null, &key).is_ok())
            .ok_or_else(|| {
                format!(
                    "the private key signs none of the route's algorithms ({})",
                    names(&spec.algorithms)
                )
            })?;
        Ok(JwtSigner { alg, key })
    }

    /// Whether a token made with this key verifies under one of `keys` (a route's).
    pub fn matches(&self, keys: &[JwtKey]) -> bool {
        let Ok(probe) =
            jsonwebtoken::encode(&Header::new(self.alg), &serde_json::json!({}), &self.key)
        else {
            return false;
        };
        let mut validation = Validation::new(self.alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        keys.iter()
            .any(|k| jsonwebtoken::decode::<Value>(&probe, &k.0, &validation).is_ok())
    }
}

/// The algorithms' names, as the configuration writes them.
fn names(algorithms: &[Alg]) -> String {
    let names: Vec<&str> = algorithms
        .iter()
        .filter_map(|a| ALGORITHMS.iter().find(|(_, b)| b == a).map(|(n, _)| *n))
        .collect();
    names.join(", ")
}

/// How long a token made by `sign` is valid, where the route checks `exp` or `max_age`.
const TOKEN_LIFETIME: u64 = 300;

/// A token the route takes for `body` at `now`, made with `signer`.
pub fn token(
    spec: &JwtSpec,
    signer: &JwtSigner,
    body: &[u8],
    now: SystemTime,
) -> Result<String, String> {
    let claims = claims(spec, body, now)?;
    jsonwebtoken::encode(&Header::new(signer.alg), &claims, &signer.key)
        .map_err(|e| format!("cannot make the JWT: {e}"))
}

/// The claims a route checks, as a sender writes them: `iat` now; `exp` in five minutes
/// where the route checks times; `nbf` now where required; `iss` and `aud` the route's; the
/// body's SHA-256 in its claim. A required claim with no value to derive is an error.
fn claims(spec: &JwtSpec, body: &[u8], now: SystemTime) -> Result<Value, String> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let requires = |claim: &str| spec.require.iter().any(|c| c == claim);
    let mut claims = serde_json::Map::new();
    claims.insert("iat".into(), now.into());
    if spec.max_age.is_some() || requires("exp") {
        claims.insert("exp".into(), (now + TOKEN_LIFETIME).into());
    }
    if requires("nbf") {
        claims.insert("nbf".into(), now.into());
    }
    for (claim, value, field) in [
        ("iss", &spec.issuer, "issuer"),
        ("aud", &spec.audience, "audience"),
    ] {
        match value {
            Some(v) => {
                claims.insert(claim.into(), v.clone().into());
            }
            None if requires(claim) => {
                return Err(format!(
                    "the route requires the claim `{claim}` but names no `jwt.{field}`, so its \
                     value cannot be known here: set `jwt.{field}` to what the sender writes"
                ))
            }
            None => {}
        }
    }
    for (name, value) in &spec.claims {
        claims.insert(name.clone(), value.clone());
    }
    if let Some(bound) = &spec.body_sha256 {
        let digest = sha2::Sha256::digest(body);
        let text = match bound.encoding {
            super::Encoding::Hex => hex::encode(digest),
            super::Encoding::Base64Url => BASE64URL.encode(digest),
            _ => BASE64.encode(digest),
        };
        claims.insert(bound.claim.clone(), text.into());
    }
    Ok(Value::Object(claims))
}
