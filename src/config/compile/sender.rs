//! What the sender of one route holds, read from the file for `hookgate sign`: the route's
//! keys as bytes and its handshake's verify token. The compiled gateway cannot give them
//! back (it keeps shared tokens and verify tokens as SHA-256 digests, HMAC secrets as keyed
//! states), so `sign` reads them here, with the compiler's own readers (`keys.rs`,
//! `secret.rs`): it then signs with exactly the bytes the gateway verifies with.

use std::fmt;
use std::path::Path;

use super::keys::{decode_keys, key_encoding, resolve_key_sources};
use super::readable::{raw_route, route_label};
use super::verify::expand_preset;
use super::{Ctx, Report};
use crate::config::file::{RawHandshake, RawRoute};
use crate::config::{defaults, secret, ConfigError};

/// A route's secrets as its sender holds them. Never printed: `Debug` shows counts only.
#[derive(Default)]
pub struct SenderSecrets {
    /// The route's keys, resolved and decoded with its `key_encoding`, in configuration
    /// order: shared secrets (HMAC, token, JWT HS*), or public keys.
    pub keys: Vec<Vec<u8>>,
    /// The handshake's `verify_token` (Meta, Strava, eBay), as configured.
    pub verify_token: Option<Vec<u8>>,
}

impl fmt::Debug for SenderSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderSecrets")
            .field("keys", &self.keys.len())
            .field("verify_token", &self.verify_token.is_some())
            .finish()
    }
}

/// The secrets of the route named `name` in configuration `text`; `base` resolves relative
/// `secret_file`s, `env` looks up `${VARS}`. Errors are located like the compiler's.
pub fn sender_secrets(
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<SenderSecrets, Vec<ConfigError>> {
    let (raw, mut r, _) = super::read(text).map_err(|e| e.errors)?;
    let Some((i, value)) = raw
        .routes
        .iter()
        .enumerate()
        .find(|(_, v)| v.get("name").and_then(|n| n.as_str()) == Some(name))
    else {
        return Err(vec![ConfigError {
            location: "routes".into(),
            message: format!("no route named `{name}`"),
        }]);
    };
    let label = route_label(i, value);
    let route = raw_route(value, &label)?;
    let ctx = Ctx {
        base,
        env,
        public_url: None,
        shape_only: false,
        key_id: None,
    };
    let secrets = SenderSecrets {
        keys: route_keys(&route, &label, &ctx, &mut r),
        verify_token: verify_token(&route, &label, &ctx, &mut r),
    };
    if r.errors.is_empty() {
        Ok(secrets)
    } else {
        Err(r.errors)
    }
}

/// The route's keys as bytes, read and decoded as `keys.rs` reads them for the compiler.
fn route_keys(route: &RawRoute, label: &str, ctx: &Ctx<'_>, r: &mut Report) -> Vec<Vec<u8>> {
    let Some(verify) = route.verify.clone() else {
        return Vec::new();
    };
    let loc = format!("{label}.verify");
    let v = expand_preset(verify, &loc, &mut r.errors);
    let Some(algorithm) = defaults::algorithm(&v) else {
        r.error(format!("{loc}.algorithm"), "unknown algorithm");
        return Vec::new();
    };
    if algorithm.fetches_key() || v.key_url.is_some() {
        r.error(
            loc,
            format!(
                "{} signs with the sender's own private key, whose certificate the gateway \
                 fetches: `hookgate sign` cannot play this sender",
                algorithm.name()
            ),
        );
        return Vec::new();
    }
    let encoding = key_encoding(&v, algorithm, &loc, r);
    let sources = resolve_key_sources(&v, &loc, ctx, r);
    match encoding {
        Some(encoding) => decode_keys(encoding, sources, r)
            .into_iter()
            .map(|(bytes, _)| bytes)
            .collect(),
        None => Vec::new(),
    }
}

/// The handshake's verify token, resolved as the handshake compiler resolves it.
fn verify_token(route: &RawRoute, label: &str, ctx: &Ctx<'_>, r: &mut Report) -> Option<Vec<u8>> {
    let Some(RawHandshake::Block(block)) = &route.handshake else {
        return None;
    };
    let value = block.verify_token.as_deref()?;
    match secret::resolve_value(value, ctx.env) {
        Ok((bytes, _)) => Some(bytes),
        Err(e) => {
            r.error(format!("{label}.handshake.verify_token"), e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routes_secrets_are_read_and_decoded_as_the_compiler_reads_them() {
        let text = "listeners: [{ addr: 127.0.0.1:0 }]\nroutes:\n\
            \x20 - { name: gh, path: /gh, upstream: \"http://127.0.0.1:1\", verify: { preset: github, secret: \"${GH}\" } }\n\
            \x20 - { name: sw, path: /sw, upstream: \"http://127.0.0.1:1\", verify: { preset: standard-webhooks, secrets: [\"${SW}\", \"whsec_AQI=\"] } }\n\
            \x20 - { name: meta, path: /meta, upstream: \"http://127.0.0.1:1\", verify: { preset: meta, secret: \"${GH}\" }, handshake: { verify_token: \"${TOKEN}\" } }\n";
        let env = |name: &str| match name {
            "GH" => Some("gh-secret".to_owned()),
            "SW" => Some("whsec_AAE=".to_owned()),
            "TOKEN" => Some("verify-me".to_owned()),
            _ => None,
        };
        let base = Path::new(".");
        let gh = sender_secrets(text, base, &env, "gh").unwrap();
        assert_eq!(gh.keys, [b"gh-secret".to_vec()]);
        assert_eq!(gh.verify_token, None);
        // Decoded with the preset's key encoding (whsec_ + base64), in order.
        let sw = sender_secrets(text, base, &env, "sw").unwrap();
        assert_eq!(sw.keys, [vec![0, 1], vec![1, 2]]);
        let meta = sender_secrets(text, base, &env, "meta").unwrap();
        assert_eq!(meta.verify_token.as_deref(), Some(&b"verify-me"[..]));
        assert_eq!(
            format!("{meta:?}"),
            "SenderSecrets { keys: 1, verify_token: true }"
        );
        let e = sender_secrets(text, base, &env, "nope").unwrap_err();
        assert_eq!(e[0].message, "no route named `nope`");
        let e = sender_secrets(text, base, &|_| None, "gh").unwrap_err();
        assert!(e[0].to_string().contains("verify.secret"), "{e:?}");
    }
}
