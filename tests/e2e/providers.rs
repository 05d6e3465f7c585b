//! Every preset against tests/vectors/providers.json: each provider's own published example
//! where its docs give one, plus vectors computed independently in Python
//! (tests/vectors/gen_providers.py). Each case goes over HTTP through the running gateway,
//! with the gateway's clock pinned to the case's `now_unix`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::Deserialize;

use crate::support::*;

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
pub struct Case {
    pub preset: String,
    pub name: String,
    pub secret: String,
    #[serde(default)]
    pub private_key: Option<String>,
    /// The route's `key_id` (Braintree's public key), where the preset needs one.
    #[serde(default)]
    pub key_id: Option<String>,
    pub url: String,
    #[serde(default)]
    pub content_type: Option<String>,
    pub body: String,
    pub headers: BTreeMap<String, String>,
    pub now_unix: u64,
    pub expect: String,
}

pub fn cases() -> Vec<Case> {
    let v: Vectors = serde_json::from_str(include_str!("../vectors/providers.json")).unwrap();
    v.cases
}

/// `https://host[:port]` and `/path?query` of a case's URL.
pub fn split_url(url: &str) -> (String, String) {
    let uri: http::Uri = url.parse().unwrap();
    (
        format!(
            "{}://{}",
            uri.scheme_str().unwrap(),
            uri.authority().unwrap()
        ),
        uri.path_and_query().unwrap().to_string(),
    )
}

/// Whether the preset verifies with public keys (from its own algorithm).
fn is_asymmetric(preset: &str) -> bool {
    hookgate::config::compile::preset_shape(preset).is_ok_and(|s| s.algorithm.is_asymmetric())
}

static NOW: AtomicU64 = AtomicU64::new(0);

fn pinned_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW.load(Ordering::SeqCst))
}

/// One route verified by `preset` with the key in `${KEY}` (and `key_id`), for every path.
fn preset_route(preset: &str, key_id: Option<&str>, public_url: &str, upstream: &str) -> String {
    let key_field = if is_asymmetric(preset) {
        "public_key"
    } else {
        "secret"
    };
    // Meta's handshake needs the verify token set in its dashboard.
    let handshake = match hookgate::config::presets::find(preset).and_then(|p| p.handshake) {
        Some(hookgate::model::handshake::HandshakeKind::Meta) => {
            "    handshake: { verify_token: meta-verify }\n"
        }
        _ => "",
    };
    let key_id = key_id.map_or_else(String::new, |id| format!("      key_id: \"{id}\"\n"));
    format!(
        "  - name: {preset}\n    path: /*\n    upstream: {upstream}\n    public_url: {public_url}\n    verify:\n      preset: {preset}\n      {key_field}: \"${{KEY}}\"\n{key_id}{handshake}"
    )
}

#[tokio::test]
async fn every_preset_vector_through_the_gateway() {
    let all = cases();
    let presets: std::collections::BTreeSet<&str> = all.iter().map(|c| c.preset.as_str()).collect();
    // The seed senders have their own vectors (seed-senders.json), the senders whose key is
    // fetched theirs (network_keys.rs); every other preset here.
    for name in &hookgate::config::presets::names()[5..] {
        let fetched = hookgate::config::compile::preset_shape(name).is_ok_and(|s| s.fetches_key());
        assert!(
            fetched || presets.contains(name),
            "no vectors for preset {name}"
        );
    }
    for case in &all {
        let label = format!("{}/{}", case.preset, case.name);
        let (public_url, path) = split_url(&case.url);
        let upstream = Upstream::start().await;
        let gw = Hookgate::start_with_clock(
            &Yaml::new().routes(&preset_route(
                &case.preset,
                case.key_id.as_deref(),
                &public_url,
                &upstream.url(),
            )),
            &[("KEY", case.secret.as_str())],
            pinned_clock,
        )
        .await;
        NOW.store(case.now_unix, Ordering::SeqCst);
        let mut headers: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(ct) = &case.content_type {
            headers.push(("content-type", ct.as_str()));
        }
        let answer = post(&gw.url(&path), &headers, case.body.as_bytes()).await;
        match case.expect.as_str() {
            "accept" => {
                assert_eq!(answer.status, StatusCode::OK, "{label}: {}", answer.body);
                let got = upstream.received();
                let has_handshake = hookgate::config::presets::find(&case.preset)
                    .is_some_and(|p| p.handshake.is_some());
                if has_handshake && gw.outcome(&case.preset, "handshake") == 1.0 {
                    // A signed handshake (Discord's PING): verified, then answered by the
                    // gateway, not forwarded.
                    assert_eq!(got.len(), 0, "{label}: answered by the gateway");
                } else {
                    assert_eq!(got.len(), 1, "{label}");
                    assert_eq!(&got[0].body[..], case.body.as_bytes(), "{label}");
                    assert_eq!(got[0].path_and_query, path, "{label}");
                }
                assert_eq!(
                    gw.counter(
                        "hookgate_verified_total",
                        &[("route", &case.preset), ("secret_index", "0")]
                    ),
                    1.0,
                    "{label}"
                );
            }
            "reject" => {
                assert_eq!(
                    answer.status,
                    StatusCode::UNAUTHORIZED,
                    "{label}: {}",
                    answer.body
                );
                assert_eq!(upstream.count(), 0, "{label}: nothing forwarded");
            }
            other => panic!("{label}: unknown expectation {other}"),
        }
        gw.shutdown().await;
    }
}
