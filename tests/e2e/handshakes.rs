//! Handshakes answered by the gateway, through the running gateway: the exact answer each
//! sender expects, on sync and queued routes alike, nothing forwarded or stored, and forged,
//! repeated or oversized challenges refused.

use http::StatusCode;

use crate::support::*;

const SECRET: &str = "handshake-test-secret";
const ENV: &[(&str, &str)] = &[
    ("HS_SECRET", SECRET),
    ("META_VERIFY_TOKEN", "meta-verify-42"),
];

/// A queue store in a fresh directory.
fn queue_store(tag: &str) -> String {
    format!("queue_store:\n  path: {}\n", temp_dir(tag).display())
}

fn routes(upstream: &str, delivery: &str) -> String {
    format!(
        "  - name: meta\n    path: /meta\n    upstream: {upstream}\n    delivery: {delivery}\n    verify: {{ preset: github, secret: \"${{HS_SECRET}}\" }}\n    handshake: {{ kind: meta, verify_token: \"${{META_VERIFY_TOKEN}}\" }}\n  - name: slack\n    path: /slack\n    upstream: {upstream}\n    delivery: {delivery}\n    verify: {{ preset: slack, secret: \"${{HS_SECRET}}\" }}\n  - name: zoom\n    path: /zoom\n    upstream: {upstream}\n    delivery: {delivery}\n    verify: {{ preset: zoom, secret: \"${{HS_SECRET}}\" }}\n  - name: x\n    path: /x\n    upstream: {upstream}\n    delivery: {delivery}\n    verify: {{ signature: {{ header: x-twitter-webhooks-signature, prefix: \"sha256=\", encoding: base64 }}, secret: \"${{HS_SECRET}}\" }}\n    handshake: {{ kind: x-crc }}\n"
    )
}

/// Slack's signed url_verification, as Slack sends it.
fn slack_headers(body: &[u8]) -> Vec<(String, String)> {
    let ts = now_unix().to_string();
    let mac = hmac_sha256(SECRET, &[b"v0:", ts.as_bytes(), b":", body]);
    vec![
        ("x-slack-request-timestamp".into(), ts),
        (
            "x-slack-signature".into(),
            format!("v0={}", hex::encode(mac)),
        ),
    ]
}

/// Zoom's signed request, as Zoom sends it.
fn zoom_headers(body: &[u8]) -> Vec<(String, String)> {
    let ts = now_unix().to_string();
    let mac = hmac_sha256(SECRET, &[b"v0:", ts.as_bytes(), b":", body]);
    vec![
        ("x-zm-request-timestamp".into(), ts),
        ("x-zm-signature".into(), format!("v0={}", hex::encode(mac))),
    ]
}

async fn every_handshake_is_answered(delivery: &str, top: &str) {
    use base64::Engine as _;
    let upstream = Upstream::start().await;
    let yaml = Yaml::new()
        .top(top)
        .routes(&routes(&upstream.url(), delivery));
    let gw = Hookgate::start(&yaml, ENV).await;

    // Meta: the challenge echoed as text when the verify token matches.
    let meta =
        gw.url("/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meta-verify-42");
    let answer = send("GET", &meta, &[], b"").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "1158201444");
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    let forged = gw.url("/meta?hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess");
    assert_eq!(
        send("GET", &forged, &[], b"").await.status,
        StatusCode::FORBIDDEN
    );
    let long = gw.url(&format!(
        "/meta?hub.mode=subscribe&hub.challenge={}&hub.verify_token=meta-verify-42",
        "9".repeat(513)
    ));
    assert_eq!(
        send("GET", &long, &[], b"").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(gw.outcome("meta", "handshake"), 1.0);
    assert_eq!(gw.outcome("meta", "handshake_refused"), 2.0);

    // Slack: a signed url_verification, answered with its challenge once it verified.
    let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let signed = slack_headers(body);
    let answer = post(&gw.url("/slack"), &as_refs(&signed), body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.body,
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let unsigned = post(&gw.url("/slack"), &[], body).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED, "verified first");

    // Zoom: the plain token and its HMAC under the secret token, in hex.
    let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let answer = post(&gw.url("/zoom"), &as_refs(&zoom_headers(body)), body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let got: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(got["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        got["encryptedToken"],
        hex::encode(hmac_sha256(SECRET, &[b"qgg8vlvZRS6UYooatFL8Aw"]))
    );
    assert_eq!(answer.headers["content-type"], "application/json");

    // X: the CRC's response token, base64 HMAC-SHA256 under the consumer secret.
    let answer = send("GET", &gw.url("/x?crc_token=challenge-abc"), &[], b"").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let want = format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(SECRET, &[b"challenge-abc"]))
    );
    let got: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(got["response_token"], want);

    // Nothing reached the app, and nothing was stored for it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(upstream.count(), 0);
    // An event after the handshakes is delivered as usual.
    let event = br#"{"type":"event_callback","event":{"type":"message"}}"#;
    let answer = post(&gw.url("/slack"), &as_refs(&slack_headers(event)), event).await;
    assert!(answer.status.is_success(), "{}", answer.body);
    eventually("the event reaches the app", || upstream.count() == 1).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn handshakes_are_answered_on_a_sync_route() {
    every_handshake_is_answered("sync", "").await;
}

#[tokio::test]
async fn handshakes_are_answered_on_a_queued_route_before_anything_is_stored() {
    every_handshake_is_answered("queued", &queue_store("handshakes-queued")).await;
}

/// A route may leave its preset's handshake to the app, on a sync route: then the app gets
/// it like any event.
#[tokio::test]
async fn a_sync_route_may_leave_the_handshake_to_its_app() {
    let upstream = Upstream::start().await;
    let route = format!(
        "  - name: slack\n    path: /slack\n    upstream: {}\n    verify: {{ preset: slack, secret: \"${{HS_SECRET}}\" }}\n    handshake: off\n",
        upstream.url()
    );
    let gw = Hookgate::start(&Yaml::new().routes(&route), ENV).await;
    let body = br#"{"challenge":"abc","type":"url_verification"}"#;
    let answer = post(&gw.url("/slack"), &as_refs(&slack_headers(body)), body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(upstream.count(), 1, "the app answered it");
    gw.shutdown().await;
}

/// Discord's webhook events endpoint: its signed PING (`"type":0`) is answered 204 with no
/// body, on a queued route, and stores nothing; an event (`"type":1` with an `event`) is
/// stored and delivered; an unsigned PING is a 401, as Discord's own probes expect.
#[tokio::test]
async fn discord_webhook_events_ping_is_answered_204_and_events_reach_the_app() {
    use hookgate::scheme::{Algorithm, SigningKey};
    let key = SigningKey::generate(Algorithm::parse("ed25519").unwrap()).unwrap();
    let public = hex::encode(key.public_key_bytes().unwrap());
    let signed = |body: &[u8]| {
        let ts = now_unix().to_string();
        let sig = key
            .sign(&[ts.as_bytes(), body].concat())
            .expect("an Ed25519 key signs a message");
        vec![
            ("x-signature-timestamp".to_owned(), ts),
            ("x-signature-ed25519".to_owned(), hex::encode(sig)),
        ]
    };
    let upstream = Upstream::start().await;
    let route = format!(
        "  - name: discord-events\n    path: /discord/events\n    upstream: {}\n    delivery: queued\n    verify: {{ preset: discord, public_key: \"{public}\" }}\n    handshake: {{ kind: discord-events }}\n",
        upstream.url()
    );
    let yaml = Yaml::new()
        .top(&queue_store("discord-events"))
        .routes(&route);
    let gw = Hookgate::start(&yaml, &[]).await;
    let url = gw.url("/discord/events");

    let ping = br#"{"version":1,"application_id":"1234567890","type":0}"#;
    let answer = post(&url, &as_refs(&signed(ping)), ping).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    assert_eq!(answer.body, "");
    let unsigned = post(&url, &[], ping).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.outcome("discord-events", "handshake"), 1.0);

    let event = br#"{"version":1,"application_id":"1234567890","type":1,"event":{"type":"APPLICATION_AUTHORIZED","timestamp":"2026-12-06T08:00:00.000000+00:00","data":{}}}"#;
    let answer = post(&url, &as_refs(&signed(event)), event).await;
    assert!(answer.status.is_success(), "{}", answer.body);
    eventually("the event reaches the app", || upstream.count() == 1).await;
    assert_eq!(
        upstream.received()[0].body,
        event.to_vec(),
        "only the event, byte for byte"
    );
    gw.shutdown().await;
}

/// Worldline Connect's endpoint verification: a GET whose header value comes back as text,
/// on the `worldline` preset's route, before any signature; nothing reaches the app.
#[tokio::test]
async fn worldline_endpoint_verification_is_echoed_by_the_worldline_preset() {
    let upstream = Upstream::start().await;
    let route = format!(
        "  - name: worldline\n    path: /worldline\n    upstream: {}\n    verify: {{ preset: worldline, secret: \"${{HS_SECRET}}\" }}\n",
        upstream.url()
    );
    let gw = Hookgate::start(&Yaml::new().routes(&route), ENV).await;
    let header = [("x-gcs-webhooks-endpoint-verification", "Zm9vYmFyLTEyMw==")];
    let answer = send("GET", &gw.url("/worldline"), &header, b"").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "Zm9vYmFyLTEyMw==");
    assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    // GET is the route's for the handshake alone: a captured event cannot come as a GET.
    let plain_get = send("GET", &gw.url("/worldline"), &[], b"").await;
    assert_eq!(plain_get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(plain_get.headers["allow"], "POST");
    assert_eq!(gw.outcome("worldline", "handshake"), 1.0);
    assert_eq!(upstream.count(), 0);
    gw.shutdown().await;
}

/// eBay's challenge, from its Node SDK's test inputs: the verification token and the code are
/// the same UUID, and the endpoint is the URL registered with eBay (not the path it comes to).
const EBAY_CODE: &str = "71745723-d031-455c-bfa5-f90d11b4f20a";
const EBAY_TOKEN: &str = "71745723-d031-455c-bfa5-f90d11b4f20a";
const EBAY_ENDPOINT: &str = "http://www.testendpoint.com/webhook";

/// eBay's `challenge_code`: a GET answered, before any signature, with the hex SHA-256 of the
/// code, the verification token and the registered endpoint, in JSON; nothing reaches the
/// app; a repeated code is refused; a signed event still goes through to the app.
#[tokio::test]
async fn ebays_challenge_code_is_answered_with_its_hash_and_events_still_reach_the_app() {
    use sha2::Digest as _;
    let upstream = Upstream::start().await;
    let route = format!(
        "  - name: ebay\n    path: /ebay\n    upstream: {}\n    verify: {{ signature: {{ header: x-signature }}, secret: \"${{HS_SECRET}}\" }}\n    handshake: {{ kind: ebay-challenge, verify_token: \"${{EBAY_VERIFY_TOKEN}}\", endpoint: \"{EBAY_ENDPOINT}\" }}\n",
        upstream.url()
    );
    let env = [("HS_SECRET", SECRET), ("EBAY_VERIFY_TOKEN", EBAY_TOKEN)];
    let gw = Hookgate::start(&Yaml::new().routes(&route), &env).await;

    let challenge = gw.url(&format!("/ebay?challenge_code={EBAY_CODE}"));
    let answer = send("GET", &challenge, &[], b"").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/json");
    let want = hex::encode(sha2::Sha256::digest(format!(
        "{EBAY_CODE}{EBAY_TOKEN}{EBAY_ENDPOINT}"
    )));
    assert_eq!(
        want, "048de9ffd0e35021fefc0388d5c52e0f475324f582f3778ca81a53354ccbbc97",
        "the SDK's vector"
    );
    let got: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(got, serde_json::json!({ "challengeResponse": want }));

    // Which of two codes would eBay mean? Refused, as the other handshakes refuse.
    let twice = gw.url(&format!(
        "/ebay?challenge_code={EBAY_CODE}&challenge_code=other"
    ));
    assert_eq!(
        send("GET", &twice, &[], b"").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(gw.outcome("ebay", "handshake"), 1.0);
    assert_eq!(gw.outcome("ebay", "handshake_refused"), 1.0);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(upstream.count(), 0, "the app saw no handshake");

    // A signed event goes through to the app, byte for byte.
    let event = br#"{"metadata":{"topic":"MARKETPLACE_ACCOUNT_DELETION"},"notification":{"notificationId":"49feeaeb-4982-42d9-a377-9645b8479411"}}"#;
    let signature = hex::encode(hmac_sha256(SECRET, &[event]));
    let answer = post(&gw.url("/ebay"), &[("x-signature", &signature)], event).await;
    assert!(answer.status.is_success(), "{}", answer.body);
    eventually("the event reaches the app", || upstream.count() == 1).await;
    assert_eq!(upstream.received()[0].body, event.to_vec());
    gw.shutdown().await;
}
