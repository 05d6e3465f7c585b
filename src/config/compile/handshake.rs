//! A route's `handshake:`: the preset's kind unless the route names one, or `off`; the
//! verify token Meta, Strava and eBay need, the endpoint eBay's answer hashes, the origins a
//! CloudEvents route grants.

use http::Method;

use super::{Ctx, Report};
use crate::config::file::{RawHandshake, RawHandshakeBlock};
use crate::config::presets;
use crate::config::secret;
use crate::model::handshake::{AnswerToken, Handshake, HandshakeKind};
use crate::scheme::Scheme;

/// What the handshake compiler needs to know of its route.
pub(super) struct HandshakeFor<'a> {
    pub preset: Option<&'a str>,
    pub scheme: Option<&'a Scheme>,
    pub queued: bool,
}

/// The route's handshake, if any; its method is added to `methods`.
pub(super) fn compile_handshake(
    raw: Option<&RawHandshake>,
    route: HandshakeFor<'_>,
    methods: &mut Vec<Method>,
    label: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> Option<Handshake> {
    let loc = format!("{label}.handshake");
    let preset_kind = route
        .preset
        .and_then(presets::find)
        .and_then(|p| p.handshake);
    let block = match raw {
        None => RawHandshakeBlock::default(),
        Some(RawHandshake::Word(w)) if w == "off" => {
            if route.queued && preset_kind.is_some() {
                r.error(
                    &loc,
                    "`off` leaves the handshake to the app, which a queued route never asks: \
                     keep the gateway's answer, or make the route sync",
                );
            }
            return None;
        }
        Some(RawHandshake::Word(w)) => {
            r.error(
                &loc,
                format!("`{w}`: write `off` or a block {{ kind: ... }}"),
            );
            return None;
        }
        Some(RawHandshake::Block(b)) => b.clone(),
    };
    let kind = match block.kind.as_deref() {
        Some(name) => HandshakeKind::parse(name).or_else(|| {
            let names: Vec<&str> = HandshakeKind::ALL.iter().map(|k| k.name()).collect();
            r.error(
                format!("{loc}.kind"),
                format!(
                    "unknown handshake `{name}`; use {}",
                    crate::scheme::one_of(&names)
                ),
            );
            None
        })?,
        None if raw.is_some() && preset_kind.is_none() => {
            r.error(
                format!("{loc}.kind"),
                "missing: this route's preset has no handshake",
            );
            return None;
        }
        None => preset_kind?,
    };
    let added = !methods.contains(&kind.method());
    let (verify_token, answer_token) = verify_token(&block, kind, &loc, ctx, r);
    let handshake = Handshake {
        kind,
        verify_token,
        answer_token,
        endpoint: endpoint(&block, kind, &loc, r),
        origins: block.origins.clone().unwrap_or_default(),
        rate: block.rate,
        method_for_handshake_only: added && !kind.signed(),
    };
    check_fields(&handshake, &block, route.scheme, &loc, r);
    if added {
        methods.push(kind.method());
    }
    Some(handshake)
}

/// The handshake's `verify_token`: Meta's and Strava's kept as its SHA-256 (their challenge
/// carries it, to compare), eBay's as text (its answer hashes it), checked against eBay's rule.
fn verify_token(
    block: &RawHandshakeBlock,
    kind: HandshakeKind,
    loc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> (Option<[u8; 32]>, Option<AnswerToken>) {
    use sha2::Digest as _;
    let tloc = format!("{loc}.verify_token");
    let Some(bytes) = resolved_token(block, kind, &tloc, ctx, r) else {
        return (None, None);
    };
    if kind == HandshakeKind::EbayChallenge {
        return (None, ebay_token(bytes, &tloc, r));
    }
    (Some(sha2::Sha256::digest(&bytes).into()), None)
}

/// The `verify_token` as configured (`${ENV}` or literal), for a kind that takes one.
fn resolved_token(
    block: &RawHandshakeBlock,
    kind: HandshakeKind,
    tloc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> Option<Vec<u8>> {
    match (&block.verify_token, kind.needs_verify_token()) {
        (None, true) => {
            r.error(
                tloc,
                "missing: the token set in the sender's dashboard, which its challenge carries \
                 or its answer hashes",
            );
            None
        }
        (Some(_), false) => {
            r.error(tloc, only_for(HandshakeKind::needs_verify_token, kind));
            None
        }
        (Some(value), true) => match secret::resolve_value(value, ctx.env) {
            Ok((bytes, _)) if !bytes.is_empty() => Some(bytes),
            Ok(_) => {
                r.error(tloc, "empty");
                None
            }
            Err(e) => {
                r.error(tloc, e);
                None
            }
        },
        (None, false) => None,
    }
}

/// eBay's verification token, which must follow eBay's rule: 32 to 80 characters, letters,
/// digits, `_` and `-`. The message never shows the token.
fn ebay_token(bytes: Vec<u8>, tloc: &str, r: &mut Report) -> Option<AnswerToken> {
    let fits = (32..=80).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    match String::from_utf8(bytes) {
        Ok(token) if fits => Some(AnswerToken::new(token)),
        _ => {
            r.error(
                tloc,
                "not an eBay verification token: eBay takes 32 to 80 characters, letters, \
                 digits, `_` and `-` only",
            );
            None
        }
    }
}

/// eBay's `endpoint`: the URL registered with eBay, an absolute http(s) URL without a
/// fragment, kept exactly as written (the answer hashes it as eBay has it).
fn endpoint(
    block: &RawHandshakeBlock,
    kind: HandshakeKind,
    loc: &str,
    r: &mut Report,
) -> Option<String> {
    let eloc = format!("{loc}.endpoint");
    match (&block.endpoint, kind.needs_endpoint()) {
        (None, true) => {
            r.error(
                eloc,
                "missing: the endpoint URL registered with the sender, exactly as registered \
                 (e.g. https://hooks.example.com/ebay)",
            );
            None
        }
        (Some(_), false) => {
            r.error(eloc, only_for(HandshakeKind::needs_endpoint, kind));
            None
        }
        (Some(url), true) => {
            let absolute = url
                .parse::<http::Uri>()
                .ok()
                .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
                .is_some_and(|u| u.authority().is_some_and(|a| !a.host().is_empty()));
            // `http::Uri` drops a fragment silently; the sender never sends one.
            if absolute && !url.contains('#') {
                return Some(url.clone());
            }
            r.error(
                eloc,
                format!(
                    "`{url}` is not an absolute http(s) URL without a fragment \
                     (e.g. https://hooks.example.com/ebay)"
                ),
            );
            None
        }
        (None, false) => None,
    }
}

/// The error for a field the kind does not take: the kinds that do, from `takes`.
fn only_for(takes: fn(HandshakeKind) -> bool, kind: HandshakeKind) -> String {
    let names: Vec<&str> = HandshakeKind::ALL
        .iter()
        .copied()
        .filter(|k| takes(*k))
        .map(HandshakeKind::name)
        .collect();
    format!(
        "only for kind {}, not {}",
        crate::scheme::one_of(&names),
        kind.name()
    )
}

/// The fields each kind takes, and the secret the answer of X's CRC and Zoom's validation
/// is computed with.
fn check_fields(
    hs: &Handshake,
    block: &RawHandshakeBlock,
    scheme: Option<&Scheme>,
    loc: &str,
    r: &mut Report,
) {
    let cloudevents = hs.kind == HandshakeKind::CloudEvents;
    if cloudevents && hs.origins.is_empty() {
        r.error(
            format!("{loc}.origins"),
            "missing: the origins (WebHook-Request-Origin) this route grants, e.g. \
             [eventgrid.azure.net]",
        );
    }
    if !cloudevents && (block.origins.is_some() || block.rate.is_some()) {
        r.error(
            loc,
            "`origins` and `rate` are for the cloudevents handshake",
        );
    }
    if hs.kind.needs_secret() && scheme.and_then(|s| s.mac_with_first_key(b"")).is_none() {
        r.error(
            loc,
            format!(
                "the {} handshake is answered with the route's shared secret: the route \
                 needs a `verify:` with an HMAC secret",
                hs.kind.name()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::ConfigError;
    use crate::model::handshake::HandshakeKind;

    /// eBay's verification token (40 characters), from the environment.
    const TOKEN: &str = "hookgate-ebay-verification-token_0123456";

    fn env(name: &str) -> Option<String> {
        match name {
            "EBAY_TOKEN" => Some(TOKEN.into()),
            "SHORT_TOKEN" => Some("too-short".into()),
            "SECRET" => Some("s3cret".into()),
            _ => None,
        }
    }

    /// One hmac-sha256 route with `handshake: { <block> }`.
    fn config(block: &str) -> String {
        format!(
            "listeners: [{{ addr: 127.0.0.1:0 }}]\nroutes:\n  - {{ name: ebay, path: /ebay, \
             upstream: \"http://127.0.0.1:3000\", verify: {{ signature: {{ header: x-sig }}, secret: \"${{SECRET}}\" }}, \
             handshake: {{ {block} }} }}\n"
        )
    }

    fn errors(block: &str) -> Vec<ConfigError> {
        match super::super::compile(&config(block), Path::new("."), &env) {
            Ok(_) => panic!("expected errors for {block}"),
            Err(e) => e.errors,
        }
    }

    #[test]
    fn an_ebay_challenge_keeps_its_token_as_text_and_its_endpoint_exactly() {
        let block = "kind: ebay-challenge, verify_token: \"${EBAY_TOKEN}\", \
                     endpoint: \"https://hooks.example.com/ebay?shop=1\"";
        let loaded = super::super::compile(&config(block), Path::new("."), &env)
            .unwrap_or_else(|e| panic!("{e}"));
        let route = loaded.gateway.routes.get("ebay").unwrap();
        let hs = route.handshake.as_ref().unwrap();
        assert_eq!(hs.kind, HandshakeKind::EbayChallenge);
        assert_eq!(hs.answer_token.as_ref().map(|t| t.expose()), Some(TOKEN));
        assert_eq!(hs.verify_token, None);
        assert_eq!(
            hs.endpoint.as_deref(),
            Some("https://hooks.example.com/ebay?shop=1")
        );
        assert!(route.methods.contains(&http::Method::GET));
        assert!(hs.method_for_handshake_only);
        // Never printed, whatever prints the compiled gateway.
        assert!(!format!("{:?}", loaded.gateway).contains(TOKEN));
    }

    #[test]
    fn an_ebay_challenge_without_a_fitting_token_or_endpoint_is_refused_where_it_is() {
        let at = "routes[0] (ebay).handshake";
        let endpoint = "endpoint: \"https://hooks.example.com/ebay\"";
        let cases = [
            (
                format!("kind: ebay-challenge, {endpoint}"),
                "verify_token",
                "missing",
            ),
            (
                format!("kind: ebay-challenge, verify_token: \"${{SHORT_TOKEN}}\", {endpoint}"),
                "verify_token",
                "32 to 80 characters",
            ),
            (
                format!(
                    "kind: ebay-challenge, verify_token: \"{}\", {endpoint}",
                    "a".repeat(81)
                ),
                "verify_token",
                "32 to 80 characters",
            ),
            (
                format!(
                    "kind: ebay-challenge, verify_token: \"{}.\", {endpoint}",
                    "a".repeat(40)
                ),
                "verify_token",
                "letters, digits, `_` and `-` only",
            ),
            (
                format!("kind: ebay-challenge, verify_token: \"${{UNSET}}\", {endpoint}"),
                "verify_token",
                "not set",
            ),
            (
                "kind: ebay-challenge, verify_token: \"${EBAY_TOKEN}\"".into(),
                "endpoint",
                "missing",
            ),
            (
                "kind: ebay-challenge, verify_token: \"${EBAY_TOKEN}\", endpoint: /ebay".into(),
                "endpoint",
                "not an absolute http(s) URL",
            ),
            (
                "kind: ebay-challenge, verify_token: \"${EBAY_TOKEN}\", \
                 endpoint: \"ftp://hooks.example.com/ebay\""
                    .into(),
                "endpoint",
                "not an absolute http(s) URL",
            ),
            (
                "kind: ebay-challenge, verify_token: \"${EBAY_TOKEN}\", \
                 endpoint: \"https://hooks.example.com/ebay#top\""
                    .into(),
                "endpoint",
                "without a fragment",
            ),
            (
                format!("kind: challenge, {endpoint}"),
                "endpoint",
                "only for kind ebay-challenge, not challenge",
            ),
            (
                "kind: challenge, verify_token: \"${EBAY_TOKEN}\"".into(),
                "verify_token",
                "only for kind meta, strava or ebay-challenge, not challenge",
            ),
        ];
        for (block, field, needle) in cases {
            let e = errors(&block);
            assert_eq!(e.len(), 1, "{block}: {e:#?}");
            assert_eq!(e[0].location, format!("{at}.{field}"), "{block}");
            assert!(e[0].message.contains(needle), "{block}: {}", e[0].message);
            assert!(!e[0].message.contains(TOKEN), "{block}: the token shown");
        }
    }
}
