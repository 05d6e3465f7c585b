//! Built-in senders. A preset is only a value of the raw `verify:` block (the same shape an
//! operator writes by hand), so it goes through the same compiler and a route may override
//! any of its fields. There is no per-vendor verification code.
//!
//! Sources: `../shared/senders.md` for the seed senders; each provider's webhook docs for the
//! rest (docs/presets.md's table cites what each one signs).

use crate::config::file::{
    OneOrMany, RawEntries, RawPart, RawReplayKey, RawSignature, RawTimestamp, RawVerify,
};

/// Every preset name, in the order `hookgate presets` and docs/presets.md list them.
pub const NAMES: &[&str] = &[
    "laso",
    "lahza",
    "lomi",
    "ltvboost",
    "listrak",
    "github",
    "github-sha1",
    "stripe",
    "slack",
    "shopify",
    "standard-webhooks",
    "svix",
    "paddle",
    "zoom",
    "linear",
    "intercom",
    "woocommerce",
    "webflow",
    "vercel",
    "twilio",
    "twilio-sha256",
    "square",
    "gitlab",
    "discord",
    "standard-webhooks-ed25519",
    "sendgrid",
];

/// The `verify:` block a preset stands for, or `None` for an unknown name.
pub fn preset(name: &str) -> Option<RawVerify> {
    use RawPart::{Body, FormParamsSorted, Url};
    let v = match name {
        // --- the seed senders (../shared/senders.md) ---
        // LasoExperience: the body carries a `time` in ms, but retries come up to ~33 h after
        // the first try, so no freshness check by default.
        "laso" => plain("hmac-sha256", "x-signature", "", &["hex"]),
        // Lahza also publishes source IPs: pair this preset with `allow_ips` on the route.
        "lahza" => plain("hmac-sha256", "x-lahza-signature", "", &["hex"]),
        // lomi.: the body's `timestamp` (RFC 3339) is signed; a route can opt in to a window
        // with `timestamp: { json: /timestamp, unit: rfc3339, tolerance: ... }`.
        "lomi" => plain("hmac-sha256", "x-lomi-signature", "", &["hex"]),
        "ltvboost" => plain("hmac-sha256", "x-ltvboost-signature", "sha256=", &["hex"]),
        // Listrak: body + LTK-Timestamp, no separator. Their Python and C# examples send
        // base64, their JavaScript example hex: accept both. 15 min window, both directions.
        "listrak" => RawVerify {
            message: Some(vec![Body, header("ltk-timestamp")]),
            timestamp: Some(ts_header("ltk-timestamp", "seconds", "15m")),
            ..plain("hmac-sha256", "ltk-hmacsignature", "", &["base64", "hex"])
        },

        // --- plain header over the body ---
        "github" => plain("hmac-sha256", "x-hub-signature-256", "sha256=", &["hex"]),
        "github-sha1" => plain("hmac-sha1", "x-hub-signature", "sha1=", &["hex"]),
        // Shopify: webhook deliveries carry X-Shopify-Hmac-Sha256, its newer Events deliveries
        // Shopify-Hmac-Sha256 (no X-); either, never both.
        "shopify" => {
            let mut v = plain("hmac-sha256", "x-shopify-hmac-sha256", "", &["base64"]);
            if let Some(s) = v.signature.as_mut() {
                s.header = Some(OneOrMany::Many(vec![
                    "x-shopify-hmac-sha256".into(),
                    "shopify-hmac-sha256".into(),
                ]));
            }
            v
        }
        "intercom" => plain("hmac-sha1", "x-hub-signature", "sha1=", &["hex"]),
        "woocommerce" => plain("hmac-sha256", "x-wc-webhook-signature", "", &["base64"]),
        "vercel" => plain("hmac-sha1", "x-vercel-signature", "", &["hex"]),
        // Linear puts `webhookTimestamp` (ms) in the signed JSON body and asks receivers to
        // refuse deliveries more than a minute old.
        "linear" => RawVerify {
            timestamp: Some(RawTimestamp {
                json: Some("/webhookTimestamp".into()),
                unit: Some("milliseconds".into()),
                tolerance: Some("60s".into()),
                ..RawTimestamp::default()
            }),
            ..plain("hmac-sha256", "linear-signature", "", &["hex"])
        },

        // --- timestamp header inside the signed message ---
        "slack" => RawVerify {
            message: Some(vec![
                literal("v0:"),
                header("x-slack-request-timestamp"),
                literal(":"),
                Body,
            ]),
            timestamp: Some(ts_header("x-slack-request-timestamp", "seconds", "5m")),
            ..plain("hmac-sha256", "x-slack-signature", "v0=", &["hex"])
        },
        "zoom" => RawVerify {
            message: Some(vec![
                literal("v0:"),
                header("x-zm-request-timestamp"),
                literal(":"),
                Body,
            ]),
            timestamp: Some(ts_header("x-zm-request-timestamp", "seconds", "5m")),
            ..plain("hmac-sha256", "x-zm-signature", "v0=", &["hex"])
        },
        "webflow" => RawVerify {
            message: Some(vec![header("x-webflow-timestamp"), literal(":"), Body]),
            timestamp: Some(ts_header("x-webflow-timestamp", "milliseconds", "5m")),
            ..plain("hmac-sha256", "x-webflow-signature", "", &["hex"])
        },

        // --- structured signature headers ---
        // Stripe: `t=<ts>,v1=<hex>[,v1=...]`; v0 (test) entries ignored. The key is the whole
        // `whsec_...` string as bytes.
        "stripe" => RawVerify {
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(ts_entry("t", "seconds", "5m")),
            ..structured("hmac-sha256", "stripe-signature", ",", "=", "v1", "hex")
        },
        // Paddle Billing: `ts=<ts>;h1=<hex>`, message `ts:body`, 5 s by default.
        "paddle" => RawVerify {
            message: Some(vec![entry("ts"), literal(":"), Body]),
            timestamp: Some(ts_entry("ts", "seconds", "5s")),
            ..structured("hmac-sha256", "paddle-signature", ";", "=", "h1", "hex")
        },
        // Standard Webhooks (and Svix, which uses the same scheme under its own header names):
        // `v1,<base64>` entries separated by spaces, message `id.timestamp.body`, secret
        // `whsec_<base64>` decoded to the key.
        "standard-webhooks" => standard_webhooks("webhook", "hmac-sha256", "v1", "whsec_base64"),
        "svix" => standard_webhooks("svix", "hmac-sha256", "v1", "whsec_base64"),

        // --- URL-signed ---
        // Twilio: base64 HMAC-SHA1 of the public URL followed by the POST form parameters
        // sorted by name; JSON bodies are covered by the `bodySHA256` query parameter.
        "twilio" => RawVerify {
            message: Some(vec![Url, FormParamsSorted]),
            body_hash_param: Some("bodySHA256".into()),
            ..plain("hmac-sha1", "x-twilio-signature", "", &["base64"])
        },
        // Twilio's webhook signing keys: the same message and header, HMAC-SHA256 under the
        // SharedKey secret (the request names it in X-Twilio-Webhooks-Signature-Settings:
        // `key=webhooks_sharedkey_...,algorithm=HMAC_SHA256`). The route fixes the algorithm;
        // that header, unsigned, is not trusted to choose it.
        "twilio-sha256" => RawVerify {
            message: Some(vec![Url, FormParamsSorted]),
            body_hash_param: Some("bodySHA256".into()),
            ..plain("hmac-sha256", "x-twilio-signature", "", &["base64"])
        },
        // Square: base64 HMAC-SHA256 of the notification URL followed by the body.
        "square" => RawVerify {
            message: Some(vec![Url, Body]),
            ..plain(
                "hmac-sha256",
                "x-square-hmacsha256-signature",
                "",
                &["base64"],
            )
        },

        // --- a shared token ---
        "gitlab" => RawVerify {
            message: Some(vec![]),
            ..plain("token", "x-gitlab-token", "", &["hex"])
        },

        // --- asymmetric ---
        // Discord interactions: hex Ed25519 over timestamp + body, hex public key. They must be
        // answered within seconds, so an old timestamp is a replay.
        "discord" => RawVerify {
            message: Some(vec![header("x-signature-timestamp"), Body]),
            timestamp: Some(ts_header("x-signature-timestamp", "seconds", "5m")),
            key_encoding: Some("hex".into()),
            ..plain("ed25519", "x-signature-ed25519", "", &["hex"])
        },
        "standard-webhooks-ed25519" => {
            standard_webhooks("webhook", "ed25519", "v1a", "whpk_base64")
        }
        // SendGrid Event Webhook: base64 DER ECDSA P-256 over timestamp + body, base64 DER
        // public key. SendGrid documents no window, and retries for up to 72 h, so none by
        // default; the timestamp is still read in canonical form only, since it is signed
        // right before the body with no separator.
        "sendgrid" => RawVerify {
            message: Some(vec![header("x-twilio-email-event-webhook-timestamp"), Body]),
            timestamp: Some(ts_header(
                "x-twilio-email-event-webhook-timestamp",
                "seconds",
                "none",
            )),
            key_encoding: Some("base64".into()),
            ..plain(
                "ecdsa-p256-sha256",
                "x-twilio-email-event-webhook-signature",
                "",
                &["base64"],
            )
        },
        _ => return None,
    };
    Some(v)
}

/// Why a preset's sender needs the app's own answer, which a queued route cannot give (it
/// answers before the app has seen the event); `check` warns when such a route is queued.
pub fn needs_app_answer(name: &str) -> Option<&'static str> {
    Some(match name {
        "slack" => "Slack reads the answer to slash commands and interactions, and the url_verification challenge",
        "twilio" | "twilio-sha256" => "Twilio reads TwiML instructions from the answer",
        "discord" => "Discord interactions (PING included) must be answered by the app",
        "zoom" => "Zoom's endpoint.url_validation handshake is answered by the app",
        _ => return None,
    })
}

/// The dedup key a preset suggests for `replay:` when the route names none: the sender's
/// own event or delivery id where it sends one. `None`: use the signature.
pub fn replay_key(name: &str) -> Option<RawReplayKey> {
    use RawReplayKey::Json;
    let key_header = |name: &str| RawReplayKey::Header(vec![name.to_owned()]);
    Some(match name {
        // lomi.: the body's `id` (evt_...) is the idempotency key (senders.md).
        "lomi" => Json("/id".into()),
        "github" | "github-sha1" => key_header("x-github-delivery"),
        "stripe" => Json("/id".into()),
        "standard-webhooks" | "standard-webhooks-ed25519" => key_header("webhook-id"),
        "svix" => key_header("svix-id"),
        // Events deliveries send Shopify-Webhook-Id (no X-), like their signature header.
        "shopify" => RawReplayKey::Header(vec![
            "x-shopify-webhook-id".into(),
            "shopify-webhook-id".into(),
        ]),
        "woocommerce" => key_header("x-wc-webhook-delivery-id"),
        "linear" => key_header("linear-delivery"),
        _ => return None,
    })
}

/// One signature in one header over the raw body.
fn plain(algorithm: &str, header: &str, prefix: &str, encodings: &[&str]) -> RawVerify {
    RawVerify {
        algorithm: Some(algorithm.into()),
        signature: Some(RawSignature {
            header: Some(OneOrMany::One(header.into())),
            prefix: Some(prefix.into()),
            encoding: Some(OneOrMany::Many(
                encodings.iter().map(|e| e.to_string()).collect(),
            )),
            entries: None,
        }),
        message: Some(vec![RawPart::Body]),
        ..RawVerify::default()
    }
}

/// A header of `name<assign>value` entries, signatures under `key`.
fn structured(
    algorithm: &str,
    header: &str,
    separator: &str,
    assign: &str,
    key: &str,
    encoding: &str,
) -> RawVerify {
    RawVerify {
        algorithm: Some(algorithm.into()),
        signature: Some(RawSignature {
            header: Some(OneOrMany::One(header.into())),
            prefix: None,
            encoding: Some(OneOrMany::One(encoding.into())),
            entries: Some(RawEntries {
                separator: separator.into(),
                assign: assign.into(),
                key: key.into(),
            }),
        }),
        ..RawVerify::default()
    }
}

fn standard_webhooks(prefix: &str, algorithm: &str, key: &str, key_encoding: &str) -> RawVerify {
    let id = format!("{prefix}-id");
    let ts = format!("{prefix}-timestamp");
    RawVerify {
        message: Some(vec![
            header(&id),
            literal("."),
            header(&ts),
            literal("."),
            RawPart::Body,
        ]),
        timestamp: Some(ts_header(&ts, "seconds", "5m")),
        key_encoding: Some(key_encoding.into()),
        ..structured(
            algorithm,
            &format!("{prefix}-signature"),
            " ",
            ",",
            key,
            "base64",
        )
    }
}

fn header(name: &str) -> RawPart {
    RawPart::Header(name.into())
}

fn literal(text: &str) -> RawPart {
    RawPart::Literal(text.into())
}

fn entry(name: &str) -> RawPart {
    RawPart::SignatureEntry(name.into())
}

fn ts_header(name: &str, unit: &str, tolerance: &str) -> RawTimestamp {
    RawTimestamp {
        header: Some(name.into()),
        unit: Some(unit.into()),
        tolerance: Some(tolerance.into()),
        ..RawTimestamp::default()
    }
}

fn ts_entry(name: &str, unit: &str, tolerance: &str) -> RawTimestamp {
    RawTimestamp {
        signature_entry: Some(name.into()),
        unit: Some(unit.into()),
        tolerance: Some(tolerance.into()),
        ..RawTimestamp::default()
    }
}
