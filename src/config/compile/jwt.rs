//! A `verify:` block's `jwt:` (with `algorithm: jwt`): the algorithms a token may name, all
//! of one key family, and what its claims must say.

use super::values::{parse_duration, parse_duration_or_zero};
use super::Report;
use crate::config::file::ROUTE_GIVES;
use crate::config::file::{RawJwt, RawVerify};
use crate::scheme::jwt::{BodyClaim, Family, JwtSpec, ALGORITHMS};
use crate::scheme::{Algorithm, Encoding};

/// The leeway on `exp`, `nbf` and `iat` when the block names none.
const LEEWAY: std::time::Duration = std::time::Duration::from_secs(30);

/// The claims `require:` may name.
const CLAIMS: &[&str] = &["exp", "nbf", "iat", "iss", "aud"];

/// `jwt:`, which `algorithm: jwt` needs and no other algorithm takes.
pub(super) fn compile_jwt(
    v: &RawVerify,
    algorithm: Option<Algorithm>,
    loc: &str,
    shape_only: bool,
    r: &mut Report,
) -> Option<JwtSpec> {
    let jloc = format!("{loc}.jwt");
    let raw = match (algorithm, &v.jwt) {
        (Some(Algorithm::Jwt), Some(raw)) => raw,
        (Some(Algorithm::Jwt), None) => {
            r.error(
                &jloc,
                "missing: `algorithm: jwt` needs `jwt: { algorithms: [...] }`",
            );
            return None;
        }
        (_, Some(_)) => {
            r.error(&jloc, "only for `algorithm: jwt`");
            return None;
        }
        (_, None) => return None,
    };
    let algorithms = jwt_algorithms(raw.algorithms.as_deref(), &jloc, r)?;
    let leeway = match &raw.leeway {
        None => Some(LEEWAY),
        Some(d) => parse_duration_or_zero(d, &format!("{jloc}.leeway"), r),
    };
    let max_age = match &raw.max_age {
        None => Some(None),
        Some(d) => parse_duration(d, &format!("{jloc}.max_age"), r).map(Some),
    };
    let require = raw.require.clone().unwrap_or_default();
    for claim in &require {
        if !CLAIMS.contains(&claim.as_str()) {
            r.error(
                format!("{jloc}.require"),
                format!(
                    "unknown claim `{claim}`; use {}",
                    crate::scheme::one_of(CLAIMS)
                ),
            );
        }
    }
    let body_sha256 = raw
        .body_sha256
        .as_ref()
        .and_then(|b| body_claim(b, &jloc, r));
    fetched_key_rules(v, raw, &jloc, shape_only, r);
    Some(JwtSpec {
        algorithms,
        issuer: raw.issuer.clone(),
        audience: raw.audience.clone(),
        leeway: leeway?,
        max_age: max_age?,
        require,
        body_sha256,
        claims: jwt_claims(raw, &jloc, shape_only, r),
    })
}

/// Issuers whose keys sign for all their clients: never a `private_issuer`.
const PUBLIC_ISSUERS: &[&str] = &[
    "www.googleapis.com",
    "accounts.google.com",
    "login.microsoftonline.com",
    "sts.windows.net",
    "appleid.apple.com",
    "token.actions.githubusercontent.com",
];

/// What a JWT route whose keys come from a JWKS or discovery URL must say: the issuer (a
/// discovery document must be that issuer's) and the audience, since a public issuer signs
/// for every one of its clients; unless the route says the issuer signs for it alone
/// (`key_url.private_issuer`), which a public issuer never does. A key API is asked with the
/// route's own credentials (its keys may still be the sender's for all its customers: the
/// app checks what the event names). A preset's shape (`hookgate presets`) has no route to
/// name them.
fn fetched_key_rules(v: &RawVerify, raw: &RawJwt, jloc: &str, shape_only: bool, r: &mut Report) {
    let Some(key_url) = &v.key_url else { return };
    let Some(url) = key_url.url.as_deref().or(key_url.discovery.as_deref()) else {
        return;
    };
    let private = key_url.private_issuer == Some(true);
    let host = super::keys::url_host(url).unwrap_or_default();
    if private && PUBLIC_ISSUERS.contains(&host.as_str()) {
        r.error(
            format!("{}.key_url.private_issuer", jloc.trim_end_matches(".jwt")),
            format!("{host} signs for all its clients: name the audience instead"),
        );
    }
    if private || shape_only {
        return;
    }
    if raw.issuer.is_none() {
        r.error(
            format!("{jloc}.issuer"),
            "missing: name the issuer whose tokens these are (with a JWKS or discovery URL \
             any of its clients' tokens would do)",
        );
    }
    if raw.audience.is_none() {
        r.error(
            format!("{jloc}.audience"),
            "missing: an issuer whose keys are fetched signs tokens for every one of its \
             clients; name the audience this route's tokens are for (or, for an issuer that \
             signs for this sender alone, say `key_url.private_issuer: true`)",
        );
    }
}

/// `jwt.body_sha256`: the claim bound to the body's SHA-256, and how it is written.
fn body_claim(
    b: &crate::config::file::RawBodyClaim,
    jloc: &str,
    r: &mut Report,
) -> Option<BodyClaim> {
    let bloc = format!("{jloc}.body_sha256");
    let encoding = match b.encoding.as_deref().unwrap_or("hex") {
        "hex" => Encoding::Hex,
        "base64" => Encoding::Base64,
        "base64url" => Encoding::Base64Url,
        other => {
            r.error(
                &bloc,
                format!("unknown encoding `{other}`; use hex, base64 or base64url"),
            );
            return None;
        }
    };
    if b.claim.is_empty() {
        r.error(&bloc, "empty claim name");
        return None;
    }
    Some(BodyClaim {
        claim: b.claim.clone(),
        encoding,
    })
}

/// `jwt.claims`: each claim and the JSON value it must equal (a string, number or boolean).
fn jwt_claims(
    raw: &RawJwt,
    jloc: &str,
    shape_only: bool,
    r: &mut Report,
) -> Vec<(String, serde_json::Value)> {
    let mut claims = Vec::new();
    for (name, value) in raw.claims.iter().flatten() {
        let cloc = format!("{jloc}.claims.{name}");
        if value.as_str() == Some(ROUTE_GIVES) && !shape_only {
            r.error(cloc, "set it: the value this route's tokens carry");
            continue;
        }
        match serde_json::to_value(value) {
            Ok(
                v @ (serde_json::Value::String(_)
                | serde_json::Value::Bool(_)
                | serde_json::Value::Number(_)),
            ) => claims.push((name.clone(), v)),
            _ => r.error(cloc, "a claim must equal a string, a number or a boolean"),
        }
    }
    claims
}

/// `jwt.algorithms`: known names (never `none`), all of one key family, so that no key can
/// be used by an algorithm it was not made for.
fn jwt_algorithms(
    raw: Option<&[String]>,
    loc: &str,
    r: &mut Report,
) -> Option<Vec<jsonwebtoken::Algorithm>> {
    let aloc = format!("{loc}.algorithms");
    let names: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
    let Some(raw) = raw.filter(|a| !a.is_empty()) else {
        r.error(
            &aloc,
            format!(
                "missing: list the ones the sender uses, from {}",
                names.join(", ")
            ),
        );
        return None;
    };
    let mut algorithms = Vec::new();
    for name in raw {
        match ALGORITHMS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, alg)) if !algorithms.contains(alg) => algorithms.push(*alg),
            Some(_) => {}
            None => r.error(
                &aloc,
                format!(
                    "unknown or refused algorithm `{name}`; use {}",
                    names.join(", ")
                ),
            ),
        }
    }
    let family = algorithms.first().map(|a| Family::of(*a));
    if algorithms.iter().any(|a| Some(Family::of(*a)) != family) {
        r.error(
            &aloc,
            "mixes key families (HMAC, RSA, ECDSA, EdDSA): a key could then be used by an \
             algorithm it was not made for; list one family",
        );
        return None;
    }
    (!algorithms.is_empty()).then_some(algorithms)
}

/// The key family of a JWT route, from its algorithms.
pub(super) fn family(spec: &JwtSpec) -> Family {
    spec.algorithms
        .first()
        .map_or(Family::Hmac, |a| Family::of(*a))
}
