//! Built-in senders, as one table: each row is everything hookgate knows about one sender (its
//! scheme, its handshake, its replay key, whether it needs the app's answer, and where the
//! scheme is proven). `hookgate presets`, the route compiler, the docs check
//! (`tests/e2e/docs.rs`) and the tests read this table; adding a sender is adding a row.
//!
//! A preset's scheme is only a value of the raw `verify:` block (the same shape an operator
//! writes by hand), so it goes through the same compiler and a route may override any of its
//! fields. There is no per-vendor verification code.
//!
//! Sources: `../shared/senders.md` for the seed senders; each provider's webhook docs for the
//! rest (docs/presets.md's table cites what each one signs).

use crate::config::file::{
    OneOrMany, RawBodyClaim, RawDuration, RawEntries, RawEnvelope, RawJwt, RawKeyToken, RawKeyUrl,
    RawList, RawNumbered, RawPart, RawReplayKey, RawSignature, RawTimestamp, RawVerify,
    ROUTE_GIVES,
};
use crate::model::handshake::HandshakeKind;
use RawPart::{Body, FormParamsSorted, Url};

/// One built-in sender.
#[derive(Clone, Copy, Debug)]
pub struct Preset {
    /// What a route writes as `preset:`.
    pub name: &'static str,
    /// Other names a route may write for it: the sender's products that share its scheme
    /// (Meta's Facebook, Messenger, Instagram, WhatsApp) or its former name.
    pub aliases: &'static [&'static str],
    /// The raw `verify:` block the preset stands for, made on demand: a `RawVerify` owns its
    /// strings, which a static table cannot hold.
    pub scheme: fn() -> RawVerify,
    /// What the sender asks the endpoint apart from its events, answered by the gateway
    /// (`handshake.rs`); a route may turn it `off` (sync routes only).
    pub handshake: Option<HandshakeKind>,
    /// The dedup key suggested for `replay:` when the route names none: the sender's own event
    /// or delivery id where it sends one. `None`: the signature is the key.
    pub replay_key: Option<ReplayKey>,
    /// Why the sender needs the app's own answer, which a queued route cannot give (it answers
    /// before the app has seen the event); `check` warns when such a route is queued.
    pub needs_app_answer: Option<&'static str>,
    /// The body a queued route answers with once the event is stored, where the sender
    /// requires one (Adyen's `[accepted]`); a route's `queue.body` overrides it.
    pub acknowledgement: Option<&'static str>,
    /// Where the scheme is proven; each item names something in this repository that a test
    /// (`every_presets_evidence_points_at_what_exists` below) finds.
    pub evidence: &'static [Evidence],
}

impl Preset {
    /// The preset's raw `verify:` block.
    pub fn raw_verify(&self) -> RawVerify {
        (self.scheme)()
    }

    /// The replay key a route uses when its `replay:` names none, as the file would write it.
    pub fn default_replay_key(&self) -> Option<RawReplayKey> {
        self.replay_key.map(ReplayKey::raw)
    }
}

/// A preset's default replay key, in a form a static table can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayKey {
    /// One header, under any of these names (a request carrying two of them is refused).
    Header(&'static [&'static str]),
    /// A JSON pointer into the body.
    Json(&'static str),
}

impl ReplayKey {
    /// The same key as a route's `replay: { key: ... }` would give it.
    pub fn raw(self) -> RawReplayKey {
        match self {
            ReplayKey::Header(names) => {
                RawReplayKey::Header(names.iter().map(|n| n.to_string()).collect())
            }
            ReplayKey::Json(pointer) => RawReplayKey::Json(pointer.into()),
        }
    }
}

/// Where a preset's scheme is proven. Paths are relative to the repository root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Signed requests for the preset in a file under `tests/vectors/`, each run through the
    /// scheme (`src/scheme/tests.rs`) and the running gateway (`tests/e2e/`). `published`: the
    /// addresses of the provider's (or its SDK's, or the reference library's) own examples
    /// among them, with their exact secret and signature (the cases' `source`); empty when
    /// every case is computed by the file's generator and checked there by an independent
    /// verifier.
    Vectors {
        file: &'static str,
        published: &'static [&'static str],
    },
    /// The provider's own SDK, pinned in `tests/interop/` (requirements.txt or package.json),
    /// exercised by the function `check` of `tests/interop/interop.py`. docs/presets.md's SDK
    /// table says in which directions.
    Sdk {
        package: Package,
        check: &'static str,
    },
    /// A test that pins down what the vectors alone do not: the function `name` in `file`.
    Test {
        file: &'static str,
        name: &'static str,
    },
}

/// An SDK package, by the registry it is pinned from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Package {
    PyPi(&'static str),
    Npm(&'static str),
}

/// Every preset, in the order `hookgate presets` and docs/presets.md list them; the first five
/// are the seed senders.
pub fn all() -> &'static [Preset] {
    PRESETS
}

/// The preset a route names (by its name or an alias), or `None` for an unknown name.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS
        .iter()
        .find(|p| p.name == name || p.aliases.contains(&name))
}

/// Every preset name, in listing order (for messages that list them).
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

const PROVIDER_VECTORS: &str = "tests/vectors/providers.json";
const SEED_VECTORS: &str = "tests/vectors/seed-senders.json";
const SCHEME_TESTS: &str = "src/scheme/tests.rs";
const HANDSHAKE_TESTS: &str = "tests/e2e/handshakes.rs";
const HANDSHAKE_TESTS_UNIT: &str = "src/handshake.rs";
const SNS_VECTORS: &str = "tests/vectors/sns.json";
const PAYPAL_VECTORS: &str = "tests/vectors/paypal.json";
const PUBSUB_VECTORS: &str = "tests/vectors/pubsub.json";
const PLAID_VECTORS: &str = "tests/vectors/plaid.json";
const EBAY_VECTORS: &str = "tests/vectors/ebay.json";
const NETWORK_KEY_TESTS: &str = "tests/e2e/network_keys.rs";

/// Computed vectors only.
const fn computed(file: &'static str) -> Evidence {
    Evidence::Vectors {
        file,
        published: &[],
    }
}

/// Provider vectors, some of them the sources' own published examples.
const fn published(sources: &'static [&'static str]) -> Evidence {
    Evidence::Vectors {
        file: PROVIDER_VECTORS,
        published: sources,
    }
}

const fn sdk(package: Package, check: &'static str) -> Evidence {
    Evidence::Sdk { package, check }
}

const fn test(file: &'static str, name: &'static str) -> Evidence {
    Evidence::Test { file, name }
}

static PRESETS: &[Preset] = &[
    // --- the seed senders (../shared/senders.md); none publishes an SDK or an example ---
    Preset {
        name: "laso",
        aliases: &[],
        // The body carries a `time` in ms, but retries come up to ~33 h after the first try,
        // so no freshness check by default.
        scheme: || plain("hmac-sha256", "x-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(SEED_VECTORS)],
    },
    Preset {
        name: "lahza",
        aliases: &[],
        // Lahza also publishes source IPs: pair this preset with `allow_ips` on the route.
        scheme: || plain("hmac-sha256", "x-lahza-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(SEED_VECTORS)],
    },
    Preset {
        name: "lomi",
        aliases: &[],
        // The body's `timestamp` (RFC 3339) is signed; a route can opt in to a window with
        // `timestamp: { json: /timestamp, unit: rfc3339, tolerance: ... }`.
        scheme: || plain("hmac-sha256", "x-lomi-signature", "", &["hex"]),
        handshake: None,
        // The body's `id` (evt_...) is the idempotency key (senders.md).
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(SEED_VECTORS)],
    },
    Preset {
        name: "ltvboost",
        aliases: &[],
        scheme: || plain("hmac-sha256", "x-ltvboost-signature", "sha256=", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(SEED_VECTORS)],
    },
    Preset {
        name: "listrak",
        aliases: &[],
        // Body + LTK-Timestamp, no separator. Their Python and C# examples send base64, their
        // JavaScript example hex: accept both. 15 min window, both directions.
        scheme: || RawVerify {
            message: Some(vec![Body, header("ltk-timestamp")]),
            timestamp: Some(ts_header("ltk-timestamp", "seconds", "15m")),
            ..plain("hmac-sha256", "ltk-hmacsignature", "", &["base64", "hex"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            computed(SEED_VECTORS),
            test(SCHEME_TESTS, "listrak_timestamp_window_is_both_ways"),
            test(
                SCHEME_TESTS,
                "moving_body_bytes_into_a_listrak_timestamp_is_refused",
            ),
            test(
                "tests/e2e/seed_senders.rs",
                "listrak_stale_and_future_timestamps_are_refused_and_counted",
            ),
        ],
    },
    // --- the providers ---
    Preset {
        name: "github",
        aliases: &[],
        scheme: || plain("hmac-sha256", "x-hub-signature-256", "sha256=", &["hex"]),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["x-github-delivery"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            published(&[
                "https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries",
            ]),
            sdk(Package::Npm("@octokit/webhooks-methods"), "case_github"),
        ],
    },
    Preset {
        name: "github-sha1",
        aliases: &[],
        scheme: || plain("hmac-sha1", "x-hub-signature", "sha1=", &["hex"]),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["x-github-delivery"])),
        needs_app_answer: None,
        acknowledgement: None,
        // Octokit handles only SHA-256.
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "stripe",
        aliases: &[],
        // `t=<ts>,v1=<hex>[,v1=...]`; v0 (test) entries ignored. The key is the whole
        // `whsec_...` string as bytes.
        scheme: || RawVerify {
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(ts_entry("t", "seconds", "5m")),
            ..structured("hmac-sha256", "stripe-signature", ",", "=", "v1", "hex")
        },
        handshake: None,
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            computed(PROVIDER_VECTORS),
            sdk(Package::PyPi("stripe"), "case_stripe"),
        ],
    },
    Preset {
        name: "slack",
        aliases: &[],
        scheme: || RawVerify {
            message: Some(vec![
                literal("v0:"),
                header("x-slack-request-timestamp"),
                literal(":"),
                Body,
            ]),
            timestamp: Some(ts_header("x-slack-request-timestamp", "seconds", "5m")),
            ..plain("hmac-sha256", "x-slack-signature", "v0=", &["hex"])
        },
        // The Events API's url_verification; slash commands and interactivity read the
        // app's answer, so a route taking those stays sync (docs/presets.md says so).
        handshake: Some(HandshakeKind::Slack),
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            published(&["https://docs.slack.dev/authentication/verifying-requests-from-slack"]),
            sdk(Package::PyPi("slack_sdk"), "case_slack"),
        ],
    },
    Preset {
        name: "shopify",
        aliases: &[],
        // Webhook deliveries carry X-Shopify-Hmac-Sha256, its newer Events deliveries
        // Shopify-Hmac-Sha256 (no X-); either, never both.
        scheme: || {
            let mut v = plain("hmac-sha256", "x-shopify-hmac-sha256", "", &["base64"]);
            if let Some(s) = v.signature.as_mut() {
                s.header = Some(OneOrMany::Many(vec![
                    "x-shopify-hmac-sha256".into(),
                    "shopify-hmac-sha256".into(),
                ]));
            }
            v
        },
        handshake: None,
        // Events deliveries send Shopify-Webhook-Id (no X-), like their signature header.
        replay_key: Some(ReplayKey::Header(&[
            "x-shopify-webhook-id",
            "shopify-webhook-id",
        ])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            computed(PROVIDER_VECTORS),
            sdk(Package::Npm("@shopify/shopify-api"), "case_shopify"),
            test(
                SCHEME_TESTS,
                "shopify_signature_arrives_under_either_header_name_but_never_both",
            ),
        ],
    },
    // Standard Webhooks (and Svix, which uses the same scheme under its own header names):
    // `v1,<base64>` entries separated by spaces, message `id.timestamp.body`, secret
    // `whsec_<base64>` decoded to the key.
    Preset {
        name: "standard-webhooks",
        aliases: &[],
        scheme: || standard_webhooks("webhook", "hmac-sha256", "v1", "whsec_base64"),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["webhook-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            published(&["https://github.com/standard-webhooks/standard-webhooks/blob/main/libraries/javascript/src/webhook.test.ts"]),
            sdk(Package::PyPi("standardwebhooks"), "case_standard_webhooks"),
            test(
                SCHEME_TESTS,
                "standard_webhooks_may_list_several_signatures_of_any_version",
            ),
        ],
    },
    Preset {
        name: "svix",
        aliases: &[],
        scheme: || standard_webhooks("svix", "hmac-sha256", "v1", "whsec_base64"),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["svix-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            published(&[
                "https://github.com/svix/svix-webhooks/blob/main/python/tests/test_webhooks.py",
            ]),
            sdk(Package::PyPi("svix"), "case_standard_webhooks"),
        ],
    },
    Preset {
        name: "paddle",
        aliases: &[],
        // Paddle Billing: `ts=<ts>;h1=<hex>`, message `ts:body`, 5 s by default.
        scheme: || RawVerify {
            message: Some(vec![entry("ts"), literal(":"), Body]),
            timestamp: Some(ts_entry("ts", "seconds", "5s")),
            ..structured("hmac-sha256", "paddle-signature", ";", "=", "h1", "hex")
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            computed(PROVIDER_VECTORS),
            sdk(Package::PyPi("paddle-python-sdk"), "case_paddle"),
        ],
    },
    Preset {
        name: "zoom",
        aliases: &[],
        scheme: || RawVerify {
            message: Some(vec![
                literal("v0:"),
                header("x-zm-request-timestamp"),
                literal(":"),
                Body,
            ]),
            timestamp: Some(ts_header("x-zm-request-timestamp", "seconds", "5m")),
            ..plain("hmac-sha256", "x-zm-signature", "v0=", &["hex"])
        },
        handshake: Some(HandshakeKind::Zoom),
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            computed(PROVIDER_VECTORS),
            sdk(Package::Npm("@zoom/rivet"), "case_zoom"),
        ],
    },
    Preset {
        name: "linear",
        aliases: &[],
        // Linear puts `webhookTimestamp` (ms) in the signed JSON body and asks receivers to
        // refuse deliveries more than a minute old.
        scheme: || RawVerify {
            timestamp: Some(RawTimestamp {
                json: Some("/webhookTimestamp".into()),
                unit: Some("milliseconds".into()),
                tolerance: Some("60s".into()),
                ..RawTimestamp::default()
            }),
            ..plain("hmac-sha256", "linear-signature", "", &["hex"])
        },
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["linear-delivery"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            computed(PROVIDER_VECTORS),
            sdk(Package::Npm("@linear/sdk"), "case_linear"),
        ],
    },
    Preset {
        name: "intercom",
        aliases: &[],
        scheme: || plain("hmac-sha1", "x-hub-signature", "sha1=", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        // Intercom's SDKs have no webhook signature code.
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "woocommerce",
        aliases: &[],
        scheme: || plain("hmac-sha256", "x-wc-webhook-signature", "", &["base64"]),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["x-wc-webhook-delivery-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        // Its SDK signs only its own REST calls.
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "webflow",
        aliases: &[],
        scheme: || RawVerify {
            message: Some(vec![header("x-webflow-timestamp"), literal(":"), Body]),
            timestamp: Some(ts_header("x-webflow-timestamp", "milliseconds", "5m")),
            ..plain("hmac-sha256", "x-webflow-signature", "", &["hex"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            computed(PROVIDER_VECTORS),
            sdk(Package::Npm("webflow-api"), "case_webflow"),
        ],
    },
    Preset {
        name: "vercel",
        aliases: &[],
        scheme: || plain("hmac-sha1", "x-vercel-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        // Vercel's SDKs have no webhook signature code.
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "twilio",
        aliases: &[],
        // Base64 HMAC-SHA1 of the public URL followed by the POST form parameters sorted by
        // name; JSON bodies are covered by the `bodySHA256` query parameter.
        scheme: || RawVerify {
            message: Some(vec![Url, FormParamsSorted]),
            body_hash_param: Some("bodySHA256".into()),
            ..plain("hmac-sha1", "x-twilio-signature", "", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: Some("Twilio reads TwiML instructions from the answer"),
        acknowledgement: None,
        evidence: &[
            published(&[
                "https://www.twilio.com/docs/usage/webhooks/webhooks-security",
                "https://github.com/twilio/twilio-python/blob/main/tests/unit/test_request_validator.py",
            ]),
            sdk(Package::PyPi("twilio"), "case_twilio"),
        ],
    },
    Preset {
        name: "twilio-sha256",
        aliases: &[],
        // Twilio's webhook signing keys: the same message and header, HMAC-SHA256 under the
        // SharedKey secret (the request names it in X-Twilio-Webhooks-Signature-Settings:
        // `key=webhooks_sharedkey_...,algorithm=HMAC_SHA256`). The route fixes the algorithm;
        // that header, unsigned, is not trusted to choose it.
        scheme: || RawVerify {
            message: Some(vec![Url, FormParamsSorted]),
            body_hash_param: Some("bodySHA256".into()),
            ..plain("hmac-sha256", "x-twilio-signature", "", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: Some("Twilio reads TwiML instructions from the answer"),
        acknowledgement: None,
        evidence: &[
            computed(PROVIDER_VECTORS),
            sdk(Package::PyPi("twilio"), "case_twilio"),
        ],
    },
    Preset {
        name: "square",
        aliases: &[],
        // Base64 HMAC-SHA256 of the notification URL followed by the body.
        scheme: || RawVerify {
            message: Some(vec![Url, Body]),
            ..plain(
                "hmac-sha256",
                "x-square-hmacsha256-signature",
                "",
                &["base64"],
            )
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            published(&["https://github.com/square/square-python-sdk/blob/master/tests/utilities/test_webhooks_helper.py"]),
            sdk(Package::PyPi("squareup"), "case_square"),
        ],
    },
    Preset {
        name: "gitlab",
        aliases: &[],
        // A shared token: nothing to sign, so no SDK to sign with.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "x-gitlab-token", "", &["raw"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "discord",
        aliases: &[],
        // Discord interactions: hex Ed25519 over timestamp + body, hex public key. They must
        // be answered within seconds, so an old timestamp is a replay.
        scheme: || RawVerify {
            message: Some(vec![header("x-signature-timestamp"), Body]),
            timestamp: Some(ts_header("x-signature-timestamp", "seconds", "5m")),
            key_encoding: Some("hex".into()),
            ..plain("ed25519", "x-signature-ed25519", "", &["hex"])
        },
        handshake: Some(HandshakeKind::Discord),
        replay_key: None,
        needs_app_answer: Some(
            "Discord shows the app's answer to each interaction (the gateway answers only the PING)",
        ),
        acknowledgement: None,
        evidence: &[
            computed(PROVIDER_VECTORS),
            sdk(Package::Npm("discord-interactions"), "case_discord"),
        ],
    },
    Preset {
        name: "standard-webhooks-ed25519",
        aliases: &[],
        scheme: || standard_webhooks("webhook", "ed25519", "v1a", "whpk_base64"),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["webhook-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        // The reference libraries implement only `v1`: no SDK check, but their Go library's
        // published `v1a` example.
        evidence: &[published(&["https://github.com/standard-webhooks/standard-webhooks/blob/main/libraries/go/webhook_asymmetric_test.go"])],
    },
    Preset {
        name: "sendgrid",
        aliases: &[],
        // SendGrid Event Webhook: base64 DER ECDSA P-256 over timestamp + body, base64 DER
        // public key. SendGrid documents no window, and retries for up to 72 h, so none by
        // default; the timestamp is still read in canonical form only, since it is signed
        // right before the body with no separator.
        scheme: || RawVerify {
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
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            published(&["https://github.com/sendgrid/sendgrid-python/blob/main/test/unit/test_eventwebhook.py"]),
            sdk(Package::Npm("@sendgrid/eventwebhook"), "case_sendgrid"),
            test(SCHEME_TESTS, "sendgrid_signature_must_be_der"),
            test(
                SCHEME_TESTS,
                "sendgrid_timestamp_is_canonical_without_a_window",
            ),
            test(
                SCHEME_TESTS,
                "an_ecdsa_signature_and_its_malleable_twin_give_one_replay_key",
            ),
        ],
    },
    // The long tail (issue 22), each checked against the sender's own SDK source and its
    // published vectors (docs/research/).
    Preset {
        name: "gocardless",
        aliases: &[],
        // `Webhook-Signature`: hex HMAC-SHA256 of the body. A delivery batches events; its
        // `meta.webhook_id` is the delivery's id.
        scheme: || plain("hmac-sha256", "webhook-signature", "", &["hex"]),
        handshake: None,
        replay_key: Some(ReplayKey::Json("/meta/webhook_id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&[
            "https://github.com/gocardless/gocardless-pro-python/blob/d5c83f375d8867d2980745ed1c510f264823d300/tests/webhooks_test.py",
        ])],
    },
    Preset {
        name: "modern-treasury",
        aliases: &[],
        // `X-Signature`: hex HMAC-SHA256 of the body; `X-Webhook-ID` is unique per webhook.
        scheme: || plain("hmac-sha256", "x-signature", "", &["hex"]),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["x-webhook-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&[
            "https://github.com/Modern-Treasury/modern-treasury-python/blob/aaddd3d8568c446895cc93b8fabd5b41223e55d5/tests/api_resources/test_webhooks.py",
        ])],
    },
    Preset {
        name: "mux",
        aliases: &[],
        // `t=<ts>,v1=<hex>[,v1=...]` over `t.body`, as Stripe; the SDK allows 300 s.
        scheme: || RawVerify {
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(ts_entry("t", "seconds", "5m")),
            ..structured("hmac-sha256", "mux-signature", ",", "=", "v1", "hex")
        },
        handshake: None,
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&[
            "https://github.com/muxinc/mux-node-sdk/blob/0b05091f283a5433880be53986e07acccbebad51/tests/api-resources/webhooks.test.ts",
        ])],
    },
    Preset {
        name: "recurly",
        aliases: &[],
        // `<ts_ms>,<hex>[,<hex>...]`: a positional list, over `ts_ms.body`, 5 min either way.
        scheme: || RawVerify {
            algorithm: Some("hmac-sha256".into()),
            signature: Some(RawSignature {
                header: Some(OneOrMany::One("recurly-signature".into())),
                encoding: Some(OneOrMany::One("hex".into())),
                list: Some(RawList {
                    separator: ",".into(),
                    first: "t".into(),
                }),
                ..RawSignature::default()
            }),
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(ts_entry("t", "milliseconds", "5m")),
            ..RawVerify::default()
        },
        handshake: None,
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&[
            "https://github.com/recurly/recurly-client-ruby/blob/5233e1b071f8d30057db9fb5e6842982c7dcd339/spec/recurly/webhooks_spec.rb",
        ])],
    },
    Preset {
        name: "line",
        aliases: &[],
        // LINE Messaging API: `x-line-signature`, base64 HMAC-SHA256 of the body under the
        // channel secret. One request may carry several events (no one id).
        scheme: || plain("hmac-sha256", "x-line-signature", "", &["base64"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&[
            "https://github.com/line/line-bot-sdk-nodejs/blob/3c0a10c71692fc877fc97b9fcc8fd911fd5c7c04/test/validate-signature.spec.ts",
            "https://github.com/line/line-bot-sdk-python/blob/e1fa9338a3230ef4912aa387778641a505cf7372/tests/v3/test_webhook.py",
        ])],
    },
    Preset {
        name: "sanity",
        aliases: &[],
        // `t=<ms>,v1=<base64url>` over `t.body`. Sanity's toolkit sets no window; 5 min here.
        scheme: || RawVerify {
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(ts_entry("t", "milliseconds", "5m")),
            ..structured("hmac-sha256", "sanity-webhook-signature", ",", "=", "v1", "base64url")
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&[
            "https://github.com/sanity-io/webhook-toolkit/blob/e0c211ed6cd80465a70829e335c9e219f37839ba/test/signature.test.ts",
        ])],
    },
    Preset {
        name: "orb",
        aliases: &[],
        // `v1=<hex>[ v1=<hex>...]` over `v1:` + X-Orb-Timestamp + `:` + body; the timestamp
        // is ISO 8601 without a zone (UTC), 5 min either way.
        scheme: || RawVerify {
            message: Some(vec![
                literal("v1:"),
                header("x-orb-timestamp"),
                literal(":"),
                Body,
            ]),
            timestamp: Some(ts_header("x-orb-timestamp", "rfc3339", "5m")),
            ..structured("hmac-sha256", "x-orb-signature", " ", "=", "v1", "hex")
        },
        handshake: None,
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&[
            "https://github.com/orbcorp/orb-python/blob/a9e3592801c6040217c56ae83c48c82a89268a4f/tests/api_resources/test_webhooks.py",
        ])],
    },
    Preset {
        name: "paystack",
        aliases: &[],
        // Paystack: hex HMAC-SHA512 of the body under the secret API key.
        scheme: || plain("hmac-sha512", "x-paystack-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "lemon-squeezy",
        aliases: &[],
        // Lemon Squeezy: hex HMAC-SHA256 of the body; only a 200 counts as delivered.
        scheme: || plain("hmac-sha256", "x-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "checkout-com",
        aliases: &[],
        // Checkout.com: hex HMAC-SHA256 of the body under the workflow's signature key.
        scheme: || plain("hmac-sha256", "cko-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "bitbucket",
        aliases: &[],
        // Bitbucket Cloud (and Jira Cloud admin webhooks): `sha256=` + hex HMAC-SHA256.
        scheme: || plain("hmac-sha256", "x-hub-signature", "sha256=", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "sentry",
        aliases: &[],
        // Sentry integrations: hex HMAC-SHA256 of the body under the client secret; its timestamp header is not signed.
        scheme: || plain("hmac-sha256", "sentry-hook-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "launchdarkly",
        aliases: &[],
        // LaunchDarkly: hex HMAC-SHA256 of the body.
        scheme: || plain("hmac-sha256", "x-ld-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "heroku",
        aliases: &[],
        // Heroku app webhooks: base64 HMAC-SHA256 of the body.
        scheme: || plain("hmac-sha256", "heroku-webhook-hmac-sha256", "", &["base64"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "terraform",
        aliases: &[],
        // HCP Terraform notifications: hex HMAC-SHA512 of the body under the token.
        scheme: || plain("hmac-sha512", "x-tfe-notification-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "mongodb-atlas",
        aliases: &[],
        // MongoDB Atlas: base64 HMAC-SHA1 of the body.
        scheme: || plain("hmac-sha1", "x-mms-signature", "", &["base64"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "webex",
        aliases: &[],
        // Webex: hex HMAC-SHA1 of the body.
        scheme: || plain("hmac-sha1", "x-spark-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "typeform",
        aliases: &[],
        // Typeform: `sha256=` + base64 HMAC-SHA256 of the body.
        scheme: || plain("hmac-sha256", "typeform-signature", "sha256=", &["base64"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "clickup",
        aliases: &[],
        // ClickUp: hex HMAC-SHA256 of the body under the webhook secret.
        scheme: || plain("hmac-sha256", "x-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "fastspring",
        aliases: &[],
        // FastSpring: base64 HMAC-SHA256 of the body.
        scheme: || plain("hmac-sha256", "x-fs-signature", "", &["base64"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "airtable",
        aliases: &[],
        // Airtable: `hmac-sha256=` + hex HMAC-SHA256 of the body; the macSecret is base64 and decoded.
        scheme: || RawVerify { key_encoding: Some("base64".into()), ..plain("hmac-sha256", "x-airtable-content-mac", "hmac-sha256=", &["hex"]) },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "squarespace",
        aliases: &[],
        // Squarespace: hex HMAC-SHA256 of the body; the secret is hex and decoded.
        scheme: || RawVerify { key_encoding: Some("hex".into()), ..plain("hmac-sha256", "squarespace-signature", "", &["hex"]) },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "onfleet",
        aliases: &[],
        // Onfleet: hex HMAC-SHA512 of the body; the secret is hex and decoded.
        scheme: || RawVerify { key_encoding: Some("hex".into()), ..plain("hmac-sha512", "x-onfleet-signature", "", &["hex"]) },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "meta",
        aliases: &["facebook", "messenger", "instagram", "whatsapp"],
        // Meta (Graph API, Messenger, Instagram, WhatsApp): `sha256=` + hex HMAC-SHA256 of the body under the app secret; the GET `hub.challenge` is answered with the route's `handshake.verify_token`.
        scheme: || plain("hmac-sha256", "x-hub-signature-256", "sha256=", &["hex"]),
        handshake: Some(HandshakeKind::Meta),
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS), test(HANDSHAKE_TESTS, "handshakes_are_answered_on_a_sync_route")],
    },
    Preset {
        name: "x",
        aliases: &["twitter"],
        // X (Twitter) Account Activity: `sha256=` + base64 HMAC-SHA256 under the consumer secret; the CRC GET is answered with it too.
        scheme: || plain("hmac-sha256", "x-twitter-webhooks-signature", "sha256=", &["base64"]),
        handshake: Some(HandshakeKind::XCrc),
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS), test(HANDSHAKE_TESTS, "handshakes_are_answered_on_a_sync_route")],
    },
    Preset {
        name: "dropbox",
        aliases: &[],
        // Dropbox: hex HMAC-SHA256 of the body under the app secret; the GET `challenge` is echoed.
        scheme: || plain("hmac-sha256", "x-dropbox-signature", "", &["hex"]),
        handshake: Some(HandshakeKind::Challenge),
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "nylas",
        aliases: &[],
        // Nylas v3: hex HMAC-SHA256 of the body under the webhook secret; the GET `challenge` is echoed.
        scheme: || plain("hmac-sha256", "x-nylas-signature", "", &["hex"]),
        handshake: Some(HandshakeKind::Challenge),
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "coinbase-commerce",
        aliases: &[],
        // Coinbase Commerce: hex HMAC-SHA256 of the body under the shared secret.
        scheme: || plain("hmac-sha256", "x-cc-webhook-signature", "", &["hex"]),
        handshake: None,
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&["https://github.com/coinbase/coinbase-commerce-python/blob/91af61acf8cae6390dac91220e0cb3aa93983ca8/tests/test_webhook.py"])],
    },
    Preset {
        name: "pusher",
        aliases: &[],
        // Pusher Channels: hex HMAC-SHA256 of the body under the app secret (X-Pusher-Key names the app: give each app's secret in `secrets:`).
        scheme: || plain("hmac-sha256", "x-pusher-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&["https://github.com/pusher/pusher-http-node/blob/7492d8db91463cbcb591bcbebadb8ea3767bf0ba/tests/integration/webhook.js"])],
    },
    Preset {
        name: "resend",
        aliases: &[],
        // Resend sends its webhooks through Svix: `svix-*` headers, `whsec_` secret. The same scheme as `svix`, under the sender's name.
        scheme: || standard_webhooks("svix", "hmac-sha256", "v1", "whsec_base64"),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["svix-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&["https://github.com/svix/svix-webhooks/blob/main/python/tests/test_webhooks.py"])],
    },
    Preset {
        name: "clerk",
        aliases: &[],
        // Clerk sends its webhooks through Svix (its `verifyWebhook()` verifies with Svix). The same scheme as `svix`, under the sender's name.
        scheme: || standard_webhooks("svix", "hmac-sha256", "v1", "whsec_base64"),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["svix-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&["https://github.com/svix/svix-webhooks/blob/main/python/tests/test_webhooks.py"])],
    },
    Preset {
        name: "goody",
        aliases: &[],
        // Goody sends its webhooks through Svix (its security page uses Svix's own example). The same scheme as `svix`, under the sender's name.
        scheme: || standard_webhooks("svix", "hmac-sha256", "v1", "whsec_base64"),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["svix-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&["https://github.com/svix/svix-webhooks/blob/main/python/tests/test_webhooks.py"])],
    },
    Preset {
        name: "replicate",
        aliases: &[],
        // Replicate signs as Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`. The same scheme as `standard-webhooks`, under the sender's name.
        scheme: || standard_webhooks("webhook", "hmac-sha256", "v1", "whsec_base64"),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["webhook-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&["https://github.com/standard-webhooks/standard-webhooks/blob/main/libraries/javascript/src/webhook.test.ts"])],
    },
    Preset {
        name: "twitch",
        aliases: &[],
        // Twitch EventSub: `sha256=` + hex HMAC-SHA256 over message id + timestamp (RFC 3339, nanoseconds) + body, 10 min; the callback verification is answered.
        scheme: || RawVerify {
            message: Some(vec![
                header("twitch-eventsub-message-id"),
                header("twitch-eventsub-message-timestamp"),
                Body,
            ]),
            timestamp: Some(ts_header("twitch-eventsub-message-timestamp", "rfc3339", "10m")),
            ..plain("hmac-sha256", "twitch-eventsub-message-signature", "sha256=", &["hex"])
        },
        handshake: Some(HandshakeKind::Twitch),
        replay_key: Some(ReplayKey::Header(&["twitch-eventsub-message-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS), test(HANDSHAKE_TESTS_UNIT, "signed_handshakes_are_told_from_events_by_their_own_marks")],
    },
    Preset {
        name: "calendly",
        aliases: &[],
        // Calendly: `t=..,v1=<hex>` over `t.body`; its sample allows 3 min.
        scheme: || RawVerify {
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(ts_entry("t", "seconds", "3m")),
            ..structured("hmac-sha256", "calendly-webhook-signature", ",", "=", "v1", "hex")
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "workos",
        aliases: &[],
        // WorkOS: `t=<ms>, v1=<hex>` over `t.body`; its SDK allows 3 min.
        scheme: || RawVerify {
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(ts_entry("t", "milliseconds", "3m")),
            ..structured("hmac-sha256", "workos-signature", ",", "=", "v1", "hex")
        },
        handshake: None,
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "persona",
        aliases: &[],
        // Persona: `t=..,v1=<hex>` over `t.body`; it documents no window and retries with the first timestamp, so none here (canonical form only).
        scheme: || RawVerify {
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(RawTimestamp {
                tolerance: Some("none".into()),
                ..ts_entry("t", "seconds", "5m")
            }),
            ..structured("hmac-sha256", "persona-signature", ",", "=", "v1", "hex")
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "tiktok",
        aliases: &[],
        // TikTok: `t=..,s=<hex>` over `t.body` under the client secret.
        scheme: || RawVerify {
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(ts_entry("t", "seconds", "5m")),
            ..structured("hmac-sha256", "tiktok-signature", ",", "=", "s", "hex")
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "customer-io",
        aliases: &[],
        // Customer.io reporting webhooks: hex HMAC-SHA256 over `v0:` + X-CIO-Timestamp + `:` + body.
        scheme: || RawVerify {
            message: Some(vec![
                literal("v0:"),
                header("x-cio-timestamp"),
                literal(":"),
                Body,
            ]),
            timestamp: Some(ts_header("x-cio-timestamp", "seconds", "5m")),
            ..plain("hmac-sha256", "x-cio-signature", "", &["hex"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "frameio",
        aliases: &[],
        // Frame.io: `v0=` + hex HMAC-SHA256 over `v0:` + timestamp + `:` + body, 5 min.
        scheme: || RawVerify {
            message: Some(vec![
                literal("v0:"),
                header("x-frameio-request-timestamp"),
                literal(":"),
                Body,
            ]),
            timestamp: Some(ts_header("x-frameio-request-timestamp", "seconds", "5m")),
            ..plain("hmac-sha256", "x-frameio-signature", "v0=", &["hex"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "airwallex",
        aliases: &[],
        // Airwallex: hex HMAC-SHA256 over x-timestamp (ms, 13 digits) + body.
        scheme: || RawVerify {
            message: Some(vec![header("x-timestamp"), Body]),
            timestamp: Some(ts_header("x-timestamp", "milliseconds", "5m")),
            ..plain("hmac-sha256", "x-signature", "", &["hex"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "chargebee",
        aliases: &[],
        // Chargebee signs nothing: HTTP Basic with the username and password set in its dashboard (`secret: "user:password"`). Weaker than a signature: pair it with `allow_ips`.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "authorization", "Basic ", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "postmark",
        aliases: &[],
        // Postmark signs nothing: HTTP Basic from the webhook URL's credentials (`secret: "user:password"`). Weaker than a signature: pair it with `allow_ips`.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "authorization", "Basic ", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "telegram",
        aliases: &[],
        // Telegram Bot API: the `secret_token` given to setWebhook, in its own header. A shared secret.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "x-telegram-bot-api-secret-token", "", &["raw"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "google-channel",
        aliases: &[],
        // Google push notifications (Drive, Calendar): the channel's `token`, echoed in X-Goog-Channel-Token. A shared secret.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "x-goog-channel-token", "", &["raw"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "okta",
        aliases: &[],
        // Okta event hooks: the secret set as the hook's Authorization header value; its one-time verification GET is answered. A shared secret.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "authorization", "", &["raw"])
        },
        handshake: Some(HandshakeKind::Okta),
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "front",
        aliases: &[],
        // Front application webhooks: base64 HMAC-SHA256 over X-Front-Request-Timestamp (ms) + `:` + body, 5 min. (Rule webhooks sign with SHA-1 and no timestamp: write that scheme out.)
        scheme: || RawVerify {
            message: Some(vec![header("x-front-request-timestamp"), literal(":"), Body]),
            timestamp: Some(ts_header("x-front-request-timestamp", "milliseconds", "5m")),
            ..plain("hmac-sha256", "x-front-signature", "", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "cashfree",
        aliases: &[],
        // Cashfree: base64 HMAC-SHA256 over x-webhook-timestamp (ms, 13 digits) + body; it documents no window.
        scheme: || RawVerify {
            message: Some(vec![header("x-webhook-timestamp"), Body]),
            timestamp: Some(RawTimestamp {
                tolerance: Some("none".into()),
                ..ts_header("x-webhook-timestamp", "milliseconds", "5m")
            }),
            ..plain("hmac-sha256", "x-webhook-signature", "", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "revolut",
        aliases: &[],
        // Revolut: `v1=<hex>[,v1=<hex>]` over `v1.` + Revolut-Request-Timestamp (ms) + `.` + body, 5 min.
        scheme: || RawVerify {
            message: Some(vec![
                literal("v1."),
                header("revolut-request-timestamp"),
                literal("."),
                Body,
            ]),
            timestamp: Some(ts_header("revolut-request-timestamp", "milliseconds", "5m")),
            ..structured("hmac-sha256", "revolut-signature", ",", "=", "v1", "hex")
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "buildkite",
        aliases: &[],
        // Buildkite (signed mode): `timestamp=..,signature=<hex>` over `timestamp.body`, 5 min. (Its token mode is a shared secret in X-Buildkite-Token.)
        scheme: || RawVerify {
            message: Some(vec![entry("timestamp"), literal("."), Body]),
            timestamp: Some(ts_entry("timestamp", "seconds", "5m")),
            ..structured("hmac-sha256", "x-buildkite-signature", ",", "=", "signature", "hex")
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "netlify",
        aliases: &[],
        // Netlify: a JWT (HS256 under the JWS secret token) in X-Webhook-Signature, iss
        // netlify, its `sha256` claim the body's SHA-256 in hex. No time claims.
        scheme: || RawVerify {
            algorithm: Some("jwt".into()),
            signature: Some(RawSignature {
                header: Some(OneOrMany::One("x-webhook-signature".into())),
                ..RawSignature::default()
            }),
            jwt: Some(RawJwt {
                algorithms: Some(vec!["HS256".into()]),
                issuer: Some("netlify".into()),
                body_sha256: Some(RawBodyClaim {
                    claim: "sha256".into(),
                    encoding: Some("hex".into()),
                }),
                ..RawJwt::default()
            }),
            ..RawVerify::default()
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "vonage",
        aliases: &[],
        // Vonage signed webhooks: `Authorization: Bearer <JWT>`, HS256 under the signature
        // secret, `payload_hash` the body's SHA-256 in hex; `iat` within 5 min here (Vonage
        // names no window).
        scheme: || RawVerify {
            algorithm: Some("jwt".into()),
            signature: Some(RawSignature {
                header: Some(OneOrMany::One("authorization".into())),
                prefix: Some("Bearer ".into()),
                ..RawSignature::default()
            }),
            jwt: Some(RawJwt {
                algorithms: Some(vec!["HS256".into()]),
                max_age: Some(RawDuration::from("5m")),
                body_sha256: Some(RawBodyClaim {
                    claim: "payload_hash".into(),
                    encoding: Some("hex".into()),
                }),
                ..RawJwt::default()
            }),
            ..RawVerify::default()
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "telnyx",
        aliases: &[],
        // Telnyx: base64 Ed25519 over `telnyx-timestamp|body`; the public key is base64 of
        // its 32 bytes, as the portal shows it; 5 min.
        scheme: || RawVerify {
            message: Some(vec![header("telnyx-timestamp"), literal("|"), Body]),
            timestamp: Some(ts_header("telnyx-timestamp", "seconds", "5m")),
            ..plain("ed25519", "telnyx-signature-ed25519", "", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "razorpay",
        aliases: &[],
        // Razorpay: hex HMAC-SHA256 of the body under the webhook's own secret (not the API key secret).
        scheme: || plain("hmac-sha256", "x-razorpay-signature", "", &["hex"]),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["x-razorpay-event-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            published(&["https://github.com/razorpay/razorpay-python/blob/b56ac018bf023e2b244a73a4bda2ea861115edcf/tests/test_client_utility.py"]),
            sdk(Package::PyPi("razorpay"), "case_razorpay"),
        ],
    },
    Preset {
        name: "chargify",
        aliases: &["maxio"],
        // Maxio Advanced Billing (Chargify): hex HMAC-SHA256 of the raw body (form-encoded by default) under the Site Shared Key. The legacy MD5 header is not accepted.
        scheme: || plain("hmac-sha256", "x-chargify-webhook-signature-hmac-sha-256", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "authorize-net",
        aliases: &[],
        // Authorize.net: `sha512=` + HEX (upper case) HMAC-SHA512 of the body under the Signature Key's text (not hex-decoded).
        scheme: || plain("hmac-sha512", "x-anet-signature", "sha512=", &["hex"]),
        handshake: None,
        replay_key: Some(ReplayKey::Json("/notificationId")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "jira",
        aliases: &[],
        // Jira Cloud admin webhooks with a secret: `sha256=` + hex HMAC-SHA256 of the body in X-Hub-Signature.
        scheme: || plain("hmac-sha256", "x-hub-signature", "sha256=", &["hex"]),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["x-atlassian-webhook-identifier"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "circleci",
        aliases: &[],
        // CircleCI: `v1=<hex>` entries (other versions ignored), HMAC-SHA256 of the body under the webhook's secret token.
        scheme: || RawVerify {
            message: Some(vec![Body]),
            ..structured("hmac-sha256", "circleci-signature", ",", "=", "v1", "hex")
        },
        handshake: None,
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "pagerduty",
        aliases: &[],
        // PagerDuty v3: one or more `v1=<hex>` entries (several during a secret rotation, any may match), HMAC-SHA256 of the body under the subscription's secret as text.
        scheme: || RawVerify {
            message: Some(vec![Body]),
            ..structured("hmac-sha256", "x-pagerduty-signature", ",", "=", "v1", "hex")
        },
        handshake: None,
        replay_key: Some(ReplayKey::Json("/event/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&["https://github.com/PagerDuty/go-pagerduty/blob/d34fb98c09850c92771001dd77a3609acda0ca29/webhookv3/webhookv3_test.go"])],
    },
    Preset {
        name: "teams-outgoing",
        aliases: &[],
        // Microsoft Teams outgoing webhooks: `Authorization: HMAC <base64>`, HMAC-SHA256 of the body under the security token, base64-decoded.
        scheme: || RawVerify {
            key_encoding: Some("base64".into()),
            ..plain("hmac-sha256", "authorization", "HMAC ", &["base64"])
        },
        handshake: None,
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: Some("Teams shows the answer's message in the channel"),
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "ably",
        aliases: &[],
        // Ably webhook rules (batched): base64 HMAC-SHA256 of the body under the API key's secret part (after the `:`); X-Ably-Key names the key.
        scheme: || plain("hmac-sha256", "x-ably-signature", "", &["base64"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "aftership",
        aliases: &[],
        // AfterShip: base64 HMAC-SHA256 of the body under the webhook secret, in aftership-hmac-sha256 (Tracking) or as-signature-hmac-sha256 (other products); one of the two.
        scheme: || RawVerify {
            signature: Some(RawSignature {
                header: Some(OneOrMany::Many(vec![
                    "aftership-hmac-sha256".into(),
                    "as-signature-hmac-sha256".into(),
                ])),
                prefix: Some(String::new()),
                encoding: Some(OneOrMany::One("base64".into())),
                ..RawSignature::default()
            }),
            ..plain("hmac-sha256", "aftership-hmac-sha256", "", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "bolt",
        aliases: &[],
        // Bolt: base64 HMAC-SHA256 of the body under the merchant signing secret.
        scheme: || plain("hmac-sha256", "x-bolt-hmac-sha256", "", &["base64"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "tally",
        aliases: &[],
        // Tally forms: base64 HMAC-SHA256 of the (compact JSON) body under the webhook's signing secret.
        scheme: || plain("hmac-sha256", "tally-signature", "", &["base64"]),
        handshake: None,
        replay_key: Some(ReplayKey::Json("/eventId")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "xero",
        aliases: &[],
        // Xero: base64 HMAC-SHA256 of the body under the webhook key's text. Its "intent to receive" check is met as is: signed requests pass, others get 401.
        scheme: || plain("hmac-sha256", "x-xero-signature", "", &["base64"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "quickbooks",
        aliases: &[],
        // QuickBooks Online (Intuit): base64 HMAC-SHA256 of the body under the app's verifier token.
        scheme: || plain("hmac-sha256", "intuit-signature", "", &["base64"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "alchemy",
        aliases: &[],
        // Alchemy Notify: hex HMAC-SHA256 of the body under the webhook's signing key, as text.
        scheme: || plain("hmac-sha256", "x-alchemy-signature", "", &["hex"]),
        handshake: None,
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "castle",
        aliases: &[],
        // Castle: base64 HMAC-SHA256 of the body under the API secret.
        scheme: || plain("hmac-sha256", "x-castle-signature", "", &["base64"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            computed(PROVIDER_VECTORS),
            sdk(Package::PyPi("castle"), "case_castle"),
        ],
    },
    Preset {
        name: "worldline",
        aliases: &[],
        // Worldline (Connect, Direct): base64 HMAC-SHA256 of the body under the secret webhook key; X-GCS-KeyId names the key, and each configured secret is tried. Its endpoint verification GET is answered.
        scheme: || plain("hmac-sha256", "x-gcs-signature", "", &["base64"]),
        handshake: Some(HandshakeKind::Worldline),
        replay_key: Some(ReplayKey::Json("/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            computed(PROVIDER_VECTORS),
            sdk(Package::PyPi("onlinepayments-sdk-python3"), "case_worldline"),
        ],
    },
    Preset {
        name: "docusign",
        aliases: &[],
        // DocuSign Connect: X-DocuSign-Signature-1..N, one base64 HMAC-SHA256 of the body per active Connect key; any one may match.
        scheme: || RawVerify {
            algorithm: Some("hmac-sha256".into()),
            signature: Some(RawSignature {
                numbered: Some(RawNumbered {
                    prefix: "x-docusign-signature-".into(),
                    max: 100,
                }),
                encoding: Some(OneOrMany::One("base64".into())),
                ..RawSignature::default()
            }),
            message: Some(vec![Body]),
            ..RawVerify::default()
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "zendesk",
        aliases: &[],
        // Zendesk: base64 HMAC-SHA256 over X-Zendesk-Webhook-Signature-Timestamp (RFC 3339) + body; it documents no window.
        scheme: || RawVerify {
            message: Some(vec![header("x-zendesk-webhook-signature-timestamp"), Body]),
            timestamp: Some(RawTimestamp {
                tolerance: Some("none".into()),
                ..ts_header("x-zendesk-webhook-signature-timestamp", "rfc3339", "5m")
            }),
            ..plain("hmac-sha256", "x-zendesk-webhook-signature", "", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "box",
        aliases: &[],
        // Box: BOX-SIGNATURE-PRIMARY and -SECONDARY, base64 HMAC-SHA256 over body + BOX-DELIVERY-TIMESTAMP (RFC 3339 with offset), each under one of the app's two keys; 10 min old, 1 min ahead.
        scheme: || RawVerify {
            algorithm: Some("hmac-sha256".into()),
            signature: Some(RawSignature {
                headers: Some(vec![
                    "box-signature-primary".into(),
                    "box-signature-secondary".into(),
                ]),
                encoding: Some(OneOrMany::One("base64".into())),
                ..RawSignature::default()
            }),
            message: Some(vec![Body, header("box-delivery-timestamp")]),
            timestamp: Some(RawTimestamp {
                future_tolerance: Some(RawDuration::from("1m")),
                ..ts_header("box-delivery-timestamp", "rfc3339", "10m")
            }),
            ..RawVerify::default()
        },
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["box-delivery-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            published(&["https://github.com/box/box-python-sdk-gen/blob/14b589c853bd97ca004571b4bafa71564da796fc/test/webhooks.py"]),
            sdk(Package::PyPi("box-sdk-gen"), "case_box"),
        ],
    },
    Preset {
        name: "hubspot",
        aliases: &[],
        // HubSpot v3: base64 HMAC-SHA256 over method + public URL + body + X-HubSpot-Request-Timestamp (ms), 5 min, under the app's client secret.
        scheme: || RawVerify {
            message: Some(vec![
                RawPart::Method,
                Url,
                Body,
                header("x-hubspot-request-timestamp"),
            ]),
            timestamp: Some(ts_header("x-hubspot-request-timestamp", "milliseconds", "5m")),
            ..plain("hmac-sha256", "x-hubspot-signature-v3", "", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            published(&["https://github.com/HubSpot/hubspot-api-python/blob/83aedb045f44c8923759f98deb96d54d0272ae10/tests/spec/utils/test_signature.py"]),
            sdk(Package::PyPi("hubspot-api-client"), "case_hubspot"),
        ],
    },
    Preset {
        name: "paymongo",
        aliases: &[],
        // PayMongo: `t=..,te=<hex>,li=<hex>` over `t.body`, HMAC-SHA256 under the webhook's secret key; the live-mode entry `li` (a test-mode route sets `signature.entries.key: te`). No documented window.
        scheme: || RawVerify {
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(ts_entry("t", "seconds", "none")),
            ..structured("hmac-sha256", "paymongo-signature", ",", "=", "li", "hex")
        },
        handshake: None,
        replay_key: Some(ReplayKey::Json("/data/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "mailgun",
        aliases: &[],
        // Mailgun: hex HMAC-SHA256 over the JSON body's /signature/timestamp + /signature/token under the webhook signing key, in /signature/signature. The event data is NOT signed: 5 min window, deduplicated by the token.
        scheme: || RawVerify {
            algorithm: Some("hmac-sha256".into()),
            signature: Some(RawSignature {
                json: Some("/signature/signature".into()),
                encoding: Some(OneOrMany::One("hex".into())),
                ..RawSignature::default()
            }),
            message: Some(vec![
                RawPart::Json("/signature/timestamp".into()),
                RawPart::Json("/signature/token".into()),
            ]),
            timestamp: Some(RawTimestamp {
                json: Some("/signature/timestamp".into()),
                unit: Some("seconds".into()),
                tolerance: Some("5m".into()),
                ..RawTimestamp::default()
            }),
            body_signed: Some(false),
            ..RawVerify::default()
        },
        handshake: None,
        replay_key: Some(ReplayKey::Json("/signature/token")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "mandrill",
        aliases: &[],
        // Mandrill (Mailchimp Transactional): base64 HMAC-SHA1 over the webhook URL as configured + each POST form field sorted by name (name then value), under the webhook's key.
        scheme: || RawVerify {
            message: Some(vec![Url, FormParamsSorted]),
            ..plain("hmac-sha1", "x-mandrill-signature", "", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "trello",
        aliases: &[],
        // Trello: base64 HMAC-SHA1 over body + the callback URL as registered, under the app's OAuth secret; its HEAD probe is answered.
        scheme: || RawVerify {
            message: Some(vec![Body, Url]),
            ..plain("hmac-sha1", "x-trello-webhook", "", &["base64"])
        },
        handshake: Some(HandshakeKind::TrelloHead),
        replay_key: Some(ReplayKey::Json("/action/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "fusionauth",
        aliases: &[],
        // FusionAuth (HMAC signing key): a JWT in X-FusionAuth-Signature-JWT, HS256/384/512, its `request_body_sha256` claim the body's SHA-256 in base64. (Asymmetric keys: give the public key and the RS/ES algorithm.)
        scheme: || RawVerify {
            algorithm: Some("jwt".into()),
            signature: Some(RawSignature {
                header: Some(OneOrMany::One("x-fusionauth-signature-jwt".into())),
                ..RawSignature::default()
            }),
            jwt: Some(RawJwt {
                algorithms: Some(vec!["HS256".into(), "HS384".into(), "HS512".into()]),
                body_sha256: Some(RawBodyClaim {
                    claim: "request_body_sha256".into(),
                    encoding: Some("base64".into()),
                }),
                ..RawJwt::default()
            }),
            ..RawVerify::default()
        },
        handshake: None,
        replay_key: Some(ReplayKey::Json("/event/id")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "sparkpost",
        aliases: &[],
        // SparkPost signs nothing: HTTP Basic with the webhook's auth credentials (`secret: "user:password"`). Weaker than a signature: pair it with `allow_ips`.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "authorization", "Basic ", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "pipedrive",
        aliases: &[],
        // Pipedrive signs nothing: HTTP Basic with the webhook's http_auth_user and http_auth_password (`secret: "user:password"`). Weaker than a signature: pair it with `allow_ips`.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "authorization", "Basic ", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "mixpanel",
        aliases: &[],
        // Mixpanel cohort-sync webhooks sign nothing: HTTP Basic as set in the integration (`secret: "user:password"`). Weaker than a signature: pair it with `allow_ips`.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "authorization", "Basic ", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "flutterwave",
        aliases: &[],
        // Flutterwave (v3): the dashboard's secret hash itself in verif-hash. A shared secret: pair it with `allow_ips`.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "verif-hash", "", &["raw"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "brevo",
        aliases: &[],
        // Brevo signs nothing: the webhook's bearer token (`auth: {type: bearer}`) in Authorization. A shared secret: pair it with `allow_ips`.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "authorization", "Bearer ", &["raw"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "openai",
        aliases: &[],
        // OpenAI signs as Standard Webhooks (`webhook-*` headers, `whsec_` secret). The same scheme as `standard-webhooks`, under the sender's name.
        scheme: || standard_webhooks("webhook", "hmac-sha256", "v1", "whsec_base64"),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["webhook-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            published(&["https://github.com/standard-webhooks/standard-webhooks/blob/main/libraries/javascript/src/webhook.test.ts"]),
            sdk(Package::PyPi("openai"), "case_openai"),
        ],
    },
    Preset {
        name: "supabase",
        aliases: &[],
        // Supabase (Auth hooks, database webhooks via Standard Webhooks): the dashboard's `v1,whsec_...` secret without its `v1,` (the `whsec_...` part).
        scheme: || standard_webhooks("webhook", "hmac-sha256", "v1", "whsec_base64"),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["webhook-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&["https://github.com/standard-webhooks/standard-webhooks/blob/main/libraries/javascript/src/webhook.test.ts"])],
    },
    Preset {
        name: "bigcommerce",
        aliases: &[],
        // BigCommerce: Standard Webhooks headers, HMAC-SHA256 under the app's client secret as text (not base64-decoded).
        scheme: || standard_webhooks("webhook", "hmac-sha256", "v1", "raw"),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["webhook-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "msgraph",
        aliases: &[],
        // Microsoft Graph change notifications: the subscription's clientState in every item of `value[]`, each compared whole with one of the route's secrets (a shared secret; several subscriptions: `secrets:`); the `validationToken` POST is answered.
        scheme: || RawVerify {
            algorithm: Some("token".into()),
            signature: Some(RawSignature {
                json: Some("/value/*/clientState".into()),
                encoding: Some(OneOrMany::One("raw".into())),
                ..RawSignature::default()
            }),
            message: Some(vec![]),
            ..RawVerify::default()
        },
        handshake: Some(HandshakeKind::GraphValidation),
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "adyen",
        aliases: &[],
        // Adyen standard webhooks: every item of notificationItems carries its own base64 HMAC-SHA256 (key hex-decoded) in additionalData.hmacSignature, over pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success (absent references empty, no escaping); every item must verify. Fields only (the rest of each item is not signed). A queued route answers `[accepted]`.
        scheme: || RawVerify {
            algorithm: Some("hmac-sha256".into()),
            key_encoding: Some("hex".into()),
            each: Some("/notificationItems".into()),
            signature: Some(RawSignature {
                json: Some("/NotificationRequestItem/additionalData/hmacSignature".into()),
                encoding: Some(OneOrMany::One("base64".into())),
                ..RawSignature::default()
            }),
            message: Some(adyen_fields()),
            body_signed: Some(false),
            ..RawVerify::default()
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: Some("[accepted]"),
        evidence: &[
            published(&[
                "https://github.com/Adyen/adyen-node-api-library/blob/02bab06c16f8633f32668a22d135d4a2ece62678/src/__tests__/hmacValidator.spec.ts",
                "https://github.com/Adyen/adyen-python-api-library/blob/87ae0f7f65541d575c91c8be7f48b9f135cba237/test/test_util.py",
                "https://github.com/Adyen/adyen-python-api-library/blob/42efeba61e4b6d7ef44b4000ae37bb88725d6893/test/mocks/util/backslash_notification.json",
            ]),
            sdk(Package::PyPi("Adyen"), "case_adyen"),
        ],
    },
    Preset {
        name: "sonatype-nexus",
        aliases: &[],
        // Sonatype Nexus Repository (and IQ): hex HMAC-SHA1 of the body under the capability's secret key. (IQ in FIPS mode names another algorithm in X-Nexus-Webhook-Signature-Algorithm: write that scheme out.)
        scheme: || plain("hmac-sha1", "x-nexus-webhook-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[published(&["https://github.com/sonatype/nexus-public/blob/6e3ca124d57517ef17ce2cb3ef404e512c312b78/components/nexus-core/src/test/java/org/sonatype/nexus/internal/webhooks/WebhookServiceImplTest.groovy"])],
    },
    Preset {
        name: "autodesk",
        aliases: &[],
        // Autodesk Platform Services (Forge): `sha1hash=` + hex HMAC-SHA1 of the body under the webhook's secret token.
        scheme: || plain("hmac-sha1", "x-adsk-signature", "sha1hash=", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "go1",
        aliases: &[],
        // Go1: `t=..,v1=<hex>` over `t.body`, HMAC-SHA256 under the webhook's secret_key; 60 s, as Go1's verifier.
        scheme: || RawVerify {
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(ts_entry("t", "seconds", "60s")),
            ..structured("hmac-sha256", "go1-signature", ",", "=", "v1", "hex")
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "hostedhooks",
        aliases: &[],
        // HostedHooks: `t=..,s=<hex>` over `t.body`, HMAC-SHA256 under the endpoint's signing secret; a new one per retry, but no documented window.
        scheme: || RawVerify {
            message: Some(vec![entry("t"), literal("."), Body]),
            timestamp: Some(ts_entry("t", "seconds", "none")),
            ..structured("hmac-sha256", "hostedhooks-signature", ",", "=", "s", "hex")
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "orbit",
        aliases: &[],
        // Orbit: `sha256=` + hex HMAC-SHA256 of the body under the webhook's secret token.
        scheme: || plain("hmac-sha256", "x-orbit-signature", "sha256=", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "pinwheel",
        aliases: &[],
        // Pinwheel: `v2=<hex>` HMAC-SHA256 over `v2:` + x-timestamp + `:` + body, under the API secret; no documented window.
        scheme: || RawVerify {
            message: Some(vec![
                literal("v2:"),
                header("x-timestamp"),
                literal(":"),
                Body,
            ]),
            timestamp: Some(ts_header("x-timestamp", "seconds", "none")),
            ..plain("hmac-sha256", "x-pinwheel-signature", "v2=", &["hex"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "signal-sciences",
        aliases: &[],
        // Signal Sciences (Fastly Next-Gen WAF) generic webhooks: hex HMAC-SHA256 of the body under the integration's signing key.
        scheme: || plain("hmac-sha256", "x-sigsci-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "trend-micro-conformity",
        aliases: &[],
        // Trend Micro Conformity: hex HMAC-SHA256 of the (compact JSON) body under the webhook security token, as text.
        scheme: || plain("hmac-sha256", "x-conformity-signature", "", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "workspace-one",
        aliases: &[],
        // VMware (Omnissa) Workspace ONE UEM event notifications sign nothing: HTTP Basic as set on the rule (`secret: "user:password"`). Weaker than a signature: pair it with `allow_ips`.
        scheme: || RawVerify {
            message: Some(vec![]),
            ..plain("token", "authorization", "Basic ", &["base64"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "clearbit",
        aliases: &[],
        // Clearbit: `sha1=` + hex HMAC-SHA1 of the body under the secret API key.
        scheme: || plain("hmac-sha1", "x-request-signature", "sha1=", &["hex"]),
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[computed(PROVIDER_VECTORS)],
    },
    Preset {
        name: "braintree",
        aliases: &[],
        // Braintree: form field bt_signature, `public_key|<hex>` pairs joined by `&`, the pair tagged with this route's public key (`key_id:`) checked: HMAC-SHA1 of the bt_payload field under SHA-1 of the private key. Only bt_payload is signed. Its legacy bt_challenge GET is not answered (an HMAC oracle under the same key).
        scheme: || RawVerify {
            algorithm: Some("hmac-sha1".into()),
            key_encoding: Some("sha1_of_text".into()),
            signature: Some(RawSignature {
                form: Some("bt_signature".into()),
                encoding: Some(OneOrMany::One("hex".into())),
                entries: Some(RawEntries {
                    separator: "&".into(),
                    assign: "|".into(),
                    key: "{key_id}".into(),
                }),
                ..RawSignature::default()
            }),
            message: Some(vec![RawPart::Form("bt_payload".into())]),
            body_signed: Some(false),
            ..RawVerify::default()
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            published(&["https://github.com/braintree/braintree_python/blob/13bd7ed7fca5300e711f4f22348ae725325df3b6/tests/unit/test_webhooks.py"]),
            sdk(Package::PyPi("braintree"), "case_braintree"),
        ],
    },
    Preset {
        name: "contentful",
        aliases: &[],
        // Contentful request verification with its default signed headers: hex HMAC-SHA256 over `POST\n<path>\nx-contentful-signed-headers:<list>;x-contentful-timestamp:<ms>\n<body>`, 30 s (its toolkit's default). A webhook that signs more headers, or a URL with a query string, is refused: write that scheme out.
        scheme: || RawVerify {
            message: Some(vec![
                RawPart::Method,
                literal("\n"),
                RawPart::PathAndQuery,
                literal("\nx-contentful-signed-headers:"),
                header("x-contentful-signed-headers"),
                literal(";x-contentful-timestamp:"),
                header("x-contentful-timestamp"),
                literal("\n"),
                Body,
            ]),
            timestamp: Some(ts_header("x-contentful-timestamp", "milliseconds", "30s")),
            ..plain("hmac-sha256", "x-contentful-signature", "", &["hex"])
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            computed(PROVIDER_VECTORS),
            sdk(Package::Npm("@contentful/node-apps-toolkit"), "case_contentful"),
        ],
    },
    // --- senders whose keys live on the network (issue 23): fetched from pinned hosts ---
    Preset {
        name: "aws-sns",
        aliases: &["sns", "amazon-sns"],
        // AWS SNS HTTP(S) subscriptions: base64 RSA (SHA-1 for SignatureVersion 1, SHA-256 for 2) over SNS's own list of the message's fields per type, with the certificate the message's SigningCertURL names: an https URL /SimpleNotificationService-<hex>.pem on sns.<region>.amazonaws.com (or .com.cn), issued to sns.amazonaws.com. AWS signs every account's topics alike, so a route must list its own (`json_allowed: { /TopicArn: [...] }`). SNS retries with the original Timestamp: 1 h by default. The body's other fields (MessageAttributes, UnsubscribeURL) are not signed.
        scheme: || RawVerify {
            algorithm: Some("aws-sns".into()),
            signature: Some(RawSignature {
                json: Some("/Signature".into()),
                encoding: Some(OneOrMany::One("base64".into())),
                ..RawSignature::default()
            }),
            timestamp: Some(RawTimestamp {
                json: Some("/Timestamp".into()),
                unit: Some("rfc3339".into()),
                tolerance: Some("1h".into()),
                ..RawTimestamp::default()
            }),
            body_signed: Some(false),
            key_url: Some(RawKeyUrl {
                json: Some("/SigningCertURL".into()),
                hosts: vec![
                    "sns.{region}.amazonaws.com".into(),
                    "sns.{region}.amazonaws.com.cn".into(),
                ],
                paths: vec!["/SimpleNotificationService-*.pem".into()],
                certificate_names: vec!["sns.amazonaws.com".into()],
                ..RawKeyUrl::default()
            }),
            ..RawVerify::default()
        },
        handshake: None,
        // The same MessageId on every retry (AWS's docs).
        replay_key: Some(ReplayKey::Json("/MessageId")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            Evidence::Vectors {
                file: SNS_VECTORS,
                published: &["aws/aws-php-sns-message-validator"],
            },
            test(NETWORK_KEY_TESTS, "real_sns_messages_verify_through_the_gateway"),
            sdk(Package::Npm("sns-validator"), "case_aws_sns"),
        ],
    },
    Preset {
        name: "paypal",
        aliases: &[],
        // PayPal (live): base64 RSA SHA-256 (SHA256withRSA) over `<transmission id>|<transmission time>|<webhook id>|<CRC-32 of the body, unsigned decimal>`, with the certificate PAYPAL-CERT-URL names (https://api[-m].paypal.com/v1/notifications/certs/..., issued to messageverificationcerts.paypal.com). The route's `key_id` is its webhook id. A CRC-32 is not a signature of the body (anyone holding one delivery can give another body the same CRC), so the body counts as unsigned. PayPal retries for 3 days: 74 h window.
        scheme: || paypal(false),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["paypal-transmission-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            Evidence::Vectors {
                file: PAYPAL_VECTORS,
                published: &[],
            },
            test(NETWORK_KEY_TESTS, "paypal_deliveries_verify_for_this_webhook_only"),
        ],
    },
    Preset {
        name: "paypal-sandbox",
        aliases: &[],
        // PayPal's sandbox: the same scheme, its certificates from api[-m].sandbox.paypal.com, issued to messageverificationcerts.sandbox.paypal.com. A separate preset, so that a live route never takes a sandbox certificate.
        scheme: || paypal(true),
        handshake: None,
        replay_key: Some(ReplayKey::Header(&["paypal-transmission-id"])),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            Evidence::Vectors {
                file: PAYPAL_VECTORS,
                published: &["paypal/PayPal-Python-SDK"],
            },
            test(NETWORK_KEY_TESTS, "a_real_paypal_delivery_verifies_through_the_gateway"),
        ],
    },
    Preset {
        name: "plaid",
        aliases: &[],
        // Plaid: an ES256 JWT in Plaid-Verification, its `kid` naming a key (a JWK) the gateway asks Plaid for with POST /webhook_verification_key/get and the route's client_id and secret; claims `iat` (5 min) and `request_body_sha256`, the hex SHA-256 of the body. A key whose `expired_at` is set verifies nothing. Sandbox: `key_url: { api: https://sandbox.plaid.com/webhook_verification_key/get }`.
        scheme: || RawVerify {
            algorithm: Some("jwt".into()),
            signature: Some(RawSignature {
                header: Some(OneOrMany::One("plaid-verification".into())),
                ..RawSignature::default()
            }),
            jwt: Some(RawJwt {
                algorithms: Some(vec!["ES256".into()]),
                max_age: Some(RawDuration::from("5m")),
                require: Some(vec!["iat".into()]),
                body_sha256: Some(RawBodyClaim {
                    claim: "request_body_sha256".into(),
                    encoding: Some("hex".into()),
                }),
                ..RawJwt::default()
            }),
            key_url: Some(RawKeyUrl {
                api: Some("https://production.plaid.com/webhook_verification_key/get".into()),
                post: Some(
                    [
                        ("client_id".to_owned(), ROUTE_GIVES.to_owned()),
                        ("secret".to_owned(), ROUTE_GIVES.to_owned()),
                    ]
                    .into_iter()
                    .collect(),
                ),
                kid_field: Some("key_id".into()),
                key_at: Some("/key".into()),
                ..RawKeyUrl::default()
            }),
            ..RawVerify::default()
        },
        handshake: None,
        replay_key: None,
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            Evidence::Vectors {
                file: PLAID_VECTORS,
                published: &[],
            },
            test(NETWORK_KEY_TESTS, "plaid_keys_are_asked_for_by_id_with_the_routes_credentials"),
        ],
    },
    Preset {
        name: "ebay",
        aliases: &[],
        // eBay's Notification API (Marketplace Account Deletion and the other topics): X-EBAY-SIGNATURE is base64 of {"alg":"ecdsa","kid":..,"signature":..,"digest":"SHA1"}, an ECDSA P-256 signature with SHA-1 over the body as JSON.stringify writes it (compact). The key is asked of eBay's public key API by its kid (GET /commerce/notification/v1/public_key/{kid}) with an application token the gateway gets with the route's client id and secret (OAuth client credentials). Sandbox: `key_url: { api: https://api.sandbox.ebay.com/commerce/notification/v1/public_key/{kid}, token: { url: https://api.sandbox.ebay.com/identity/v1/oauth2/token } }`.
        scheme: || RawVerify {
            algorithm: Some("ecdsa-p256-sha1".into()),
            signature: Some(RawSignature {
                header: Some(OneOrMany::One("x-ebay-signature".into())),
                encoding: Some(OneOrMany::One("base64".into())),
                envelope: Some(RawEnvelope {
                    signature: "signature".into(),
                    kid: Some("kid".into()),
                    fixed: [("alg", "ecdsa"), ("digest", "SHA1")]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                }),
                ..RawSignature::default()
            }),
            message: Some(vec![RawPart::BodyJsonCompact]),
            key_url: Some(RawKeyUrl {
                api: Some("https://api.ebay.com/commerce/notification/v1/public_key/{kid}".into()),
                key_at: Some("/key".into()),
                token: Some(RawKeyToken {
                    url: Some("https://api.ebay.com/identity/v1/oauth2/token".into()),
                    client_id: Some(ROUTE_GIVES.into()),
                    client_secret: Some(ROUTE_GIVES.into()),
                    scope: Some("https://api.ebay.com/oauth/api_scope".into()),
                }),
                ..RawKeyUrl::default()
            }),
            ..RawVerify::default()
        },
        handshake: Some(HandshakeKind::EbayChallenge),
        replay_key: Some(ReplayKey::Json("/notification/notificationId")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            Evidence::Vectors {
                file: EBAY_VECTORS,
                published: &["https://github.com/eBay/event-notification-nodejs-sdk/blob/feaf3378ca263a81432cf5b8c8a6fd8cb3d3e2f3/test/test.json"],
            },
            test(NETWORK_KEY_TESTS, "a_real_ebay_notification_verifies_through_the_gateway"),
            sdk(Package::Npm("event-notification-nodejs-sdk"), "case_ebay"),
        ],
    },
    Preset {
        name: "google-pubsub",
        aliases: &["pubsub", "gcp-pubsub"],
        // Google Cloud Pub/Sub push with authentication: an OIDC token (RS256) in `Authorization: Bearer`, signed with Google's keys (the JWKS at www.googleapis.com/oauth2/v3/certs, its `kid` picking the key), iss https://accounts.google.com. The route names its audience (the push subscription's) and the push service account (`email`, verified). The token does not cover the body.
        scheme: || RawVerify {
            algorithm: Some("jwt".into()),
            signature: Some(RawSignature {
                header: Some(OneOrMany::One("authorization".into())),
                prefix: Some("Bearer ".into()),
                ..RawSignature::default()
            }),
            jwt: Some(RawJwt {
                algorithms: Some(vec!["RS256".into()]),
                issuer: Some("https://accounts.google.com".into()),
                require: Some(vec!["exp".into(), "iat".into(), "aud".into()]),
                claims: Some(
                    [
                        ("email".to_owned(), serde_yaml::Value::from(ROUTE_GIVES)),
                        ("email_verified".to_owned(), serde_yaml::Value::Bool(true)),
                    ]
                    .into_iter()
                    .collect(),
                ),
                ..RawJwt::default()
            }),
            body_signed: Some(false),
            key_url: Some(RawKeyUrl {
                url: Some("https://www.googleapis.com/oauth2/v3/certs".into()),
                ..RawKeyUrl::default()
            }),
            ..RawVerify::default()
        },
        handshake: None,
        // The same messageId on every redelivery.
        replay_key: Some(ReplayKey::Json("/message/messageId")),
        needs_app_answer: None,
        acknowledgement: None,
        evidence: &[
            Evidence::Vectors {
                file: PUBSUB_VECTORS,
                published: &[],
            },
            test(NETWORK_KEY_TESTS, "pubsub_tokens_verify_with_the_issuers_jwks"),
            sdk(Package::PyPi("google-auth"), "case_google_pubsub"),
        ],
    },
];

/// PayPal's scheme, live or sandbox: each takes only its own hosts' certificates, issued to
/// its own name.
fn paypal(sandbox: bool) -> RawVerify {
    let env = if sandbox { ".sandbox" } else { "" };
    RawVerify {
        algorithm: Some("rsa-sha256".into()),
        signature: Some(RawSignature {
            header: Some(OneOrMany::One("paypal-transmission-sig".into())),
            encoding: Some(OneOrMany::One("base64".into())),
            ..RawSignature::default()
        }),
        message: Some(vec![
            header("paypal-transmission-id"),
            literal("|"),
            header("paypal-transmission-time"),
            literal("|"),
            RawPart::KeyId,
            literal("|"),
            RawPart::BodyCrc32,
        ]),
        timestamp: Some(ts_header("paypal-transmission-time", "rfc3339", "74h")),
        body_signed: Some(false),
        key_url: Some(RawKeyUrl {
            header: Some("paypal-cert-url".into()),
            hosts: vec![
                format!("api{env}.paypal.com"),
                format!("api-m{env}.paypal.com"),
            ],
            paths: vec!["/v1/notifications/certs/*".into()],
            certificate_names: vec![format!("messageverificationcerts{env}.paypal.com")],
            ..RawKeyUrl::default()
        }),
        ..RawVerify::default()
    }
}

/// Adyen's signed fields of one notification item, joined by `:`; the references may be
/// absent (then empty).
fn adyen_fields() -> Vec<RawPart> {
    let item = |field: &str| RawPart::Json(format!("/NotificationRequestItem/{field}"));
    let optional = |field: &str| RawPart::Optional(vec![item(field)]);
    let colon = || literal(":");
    vec![
        item("pspReference"),
        colon(),
        optional("originalReference"),
        colon(),
        item("merchantAccountCode"),
        colon(),
        optional("merchantReference"),
        colon(),
        item("amount/value"),
        colon(),
        item("amount/currency"),
        colon(),
        item("eventCode"),
        colon(),
        item("success"),
    ]
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
            ..RawSignature::default()
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
            ..RawSignature::default()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(file: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn every_preset_name_and_alias_is_unique() {
        let mut names: Vec<&str> = all()
            .iter()
            .flat_map(|p| std::iter::once(p.name).chain(p.aliases.iter().copied()))
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
        assert_eq!(find("whatsapp").map(|p| p.name), Some("meta"));
        assert_eq!(find("twitter").map(|p| p.name), Some("x"));
    }

    /// A row's evidence is only worth something if it names what is there: vectors for this
    /// preset (and the published examples it cites, by their `source`), an SDK pinned and
    /// checked by the interop suite for this preset's route, a test function that exists.
    #[test]
    fn every_presets_evidence_points_at_what_exists() {
        let interop = read("tests/interop/interop.py");
        let requirements = read("tests/interop/requirements.txt");
        let package_json: serde_json::Value =
            serde_json::from_str(&read("tests/interop/package.json")).unwrap();
        let mut problems = Vec::new();
        for p in all() {
            let name = p.name;
            if !p
                .evidence
                .iter()
                .any(|e| matches!(e, Evidence::Vectors { .. }))
            {
                problems.push(format!("{name}: no vector file"));
            }
            for e in p.evidence {
                match *e {
                    Evidence::Vectors { file, published } => {
                        let v: serde_json::Value = serde_json::from_str(&read(file))
                            .unwrap_or_else(|e| panic!("{file}: {e}"));
                        let cases: Vec<&serde_json::Value> = v["cases"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|c| c["preset"] == name || c["sender"] == name)
                            .collect();
                        if cases.is_empty() {
                            problems.push(format!("{name}: no case in {file}"));
                        }
                        for source in published {
                            if !cases.iter().any(|c| c["source"] == *source) {
                                problems.push(format!("{name}: no case in {file} from {source}"));
                            }
                        }
                    }
                    Evidence::Sdk { package, check } => {
                        let pinned = match package {
                            Package::PyPi(p) => requirements
                                .lines()
                                .any(|l| l.starts_with(&format!("{p}=="))),
                            Package::Npm(p) => package_json["dependencies"][p].is_string(),
                        };
                        if !pinned {
                            problems.push(format!("{name}: {package:?} is not pinned"));
                        }
                        // Defined, and called by the suite.
                        if !interop.contains(&format!("def {check}(ctx"))
                            || interop.matches(&format!("{check}(ctx")).count() < 2
                        {
                            problems.push(format!("{name}: interop.py does not run {check}"));
                        }
                        if !interop.contains(&format!("\"{name}\"")) {
                            problems.push(format!("{name}: interop.py has no {name} route"));
                        }
                    }
                    Evidence::Test { file, name: test } => {
                        if !read(file).contains(&format!("fn {test}()")) {
                            problems.push(format!("{name}: no test {test} in {file}"));
                        }
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
