//! A route's `handshake:`: the preset's kind unless the route names one, or `off`; the
//! verify token Meta and Strava need, the origins a CloudEvents route grants.

use http::Method;

use super::{Ctx, Report};
use crate::config::file::{RawHandshake, RawHandshakeBlock};
use crate::config::presets;
use crate::config::secret;
use crate::model::handshake::{Handshake, HandshakeKind};
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
    let handshake = Handshake {
        kind,
        verify_token: verify_token(&block, kind, &loc, ctx, r),
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

/// Meta's and Strava's verify token, kept as its SHA-256.
fn verify_token(
    block: &RawHandshakeBlock,
    kind: HandshakeKind,
    loc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> Option<[u8; 32]> {
    use sha2::Digest as _;
    let wants = matches!(kind, HandshakeKind::Meta | HandshakeKind::Strava);
    let tloc = format!("{loc}.verify_token");
    match (&block.verify_token, wants) {
        (None, true) => {
            r.error(
                &tloc,
                "missing: the token set in the sender's dashboard, which its challenge carries",
            );
            None
        }
        (Some(_), false) => {
            r.error(
                &tloc,
                format!(
                    "only for the meta and strava handshakes, not {}",
                    kind.name()
                ),
            );
            None
        }
        (Some(value), true) => match secret::resolve_value(value, ctx.env) {
            Ok((bytes, _)) if !bytes.is_empty() => Some(sha2::Sha256::digest(&bytes).into()),
            Ok(_) => {
                r.error(&tloc, "empty");
                None
            }
            Err(e) => {
                r.error(&tloc, e);
                None
            }
        },
        (None, false) => None,
    }
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
