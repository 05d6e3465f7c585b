//! The scheme engine's newer options through the running gateway: signed JSON fields (read
//! from one strict parse), request-line parts, and the refusals they bring. Each refusal
//! asserts that the upstream received nothing and the outcome counter moved.

use http::StatusCode;

use crate::support::*;

const SECRET: &str = "engine-test-secret";
const ENV: &[(&str, &str)] = &[("ENGINE_SECRET", SECRET)];

/// `mail`: a Mailgun-like scheme with the body covered: the JSON fields
/// `signature.timestamp` and `signature.token`, then the body; the timestamp read from the
/// same field; deduplicated by the token. `line`: the method and the path and query, then
/// the body.
fn routes(upstream: &str) -> String {
    format!(
        "  - name: mail\n    path: /mail\n    upstream: {upstream}\n    verify:\n      signature: {{ header: x-sig }}\n      message: [{{ json: /signature/timestamp }}, {{ literal: \".\" }}, {{ json: signature/token }}, {{ literal: \".\" }}, body]\n      timestamp: {{ json: /signature/timestamp, unit: seconds, tolerance: 5m }}\n      secret: \"${{ENGINE_SECRET}}\"\n    replay: {{ key: {{ json: /signature/token }} }}\n  - name: line\n    path: /line\n    upstream: {upstream}\n    verify:\n      signature: {{ header: x-sig }}\n      message: [method, {{ literal: \" \" }}, path_and_query, {{ literal: \"\\n\" }}, body]\n      secret: \"${{ENGINE_SECRET}}\"\n"
    )
}

fn mail_body(ts: u64, token: &str, tail: &str) -> Vec<u8> {
    format!(r#"{{"signature":{{"timestamp":"{ts}","token":"{token}"}}{tail}}}"#).into_bytes()
}

/// The signature a sender computes for `mail`: over the fields as it wrote them.
fn mail_sig(ts: u64, token: &str, body: &[u8]) -> String {
    let fields = format!("{ts}.{token}.");
    hex::encode(hmac_sha256(SECRET, &[fields.as_bytes(), body]))
}

#[tokio::test]
async fn a_signed_json_field_request_is_forwarded_byte_for_byte_and_deduplicated_by_its_field() {
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(&Yaml::new().routes(&routes(&upstream.url())), ENV).await;
    let url = gw.url("/mail");
    let ts = now_unix();
    let body = mail_body(ts, "tok-1", r#","event":"delivered","n":7"#);
    let sig = mail_sig(ts, "tok-1", &body);
    let answer = post(&url, &[("x-sig", &sig)], &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(upstream.count(), 1);
    assert_eq!(upstream.received()[0].body.as_ref(), body.as_slice());
    // The same event again: answered for the app, not forwarded.
    let again = post(&url, &[("x-sig", &sig)], &body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.headers["x-hookgate-duplicate"], "true");
    assert_eq!(upstream.count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_json_body_two_parsers_could_read_two_ways_is_refused_even_when_signed() {
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(&Yaml::new().routes(&routes(&upstream.url())), ENV).await;
    let url = gw.url("/mail");
    let ts = now_unix();
    // Each body is signed with the real secret over what a first-key-wins parser would read:
    // the gateway must still refuse it, because the app's parser may read the other copy.
    let cases: [(&str, &str, Vec<u8>, &str); 4] = [
        (
            "a repeated key",
            "tok-2",
            mail_body(ts, "tok-2", r#","amount":1,"amount":1000"#),
            "body_not_strict_json",
        ),
        (
            "a repeated signed field",
            "tok-3",
            format!(r#"{{"signature":{{"timestamp":"{ts}","token":"tok-3","token":"tok-4"}}}}"#)
                .into_bytes(),
            "body_not_strict_json",
        ),
        (
            "trailing data",
            "tok-5",
            [mail_body(ts, "tok-5", ""), b" {}".to_vec()].concat(),
            "body_not_strict_json",
        ),
        (
            "a signed field with no one text",
            "1000",
            format!(r#"{{"signature":{{"timestamp":"{ts}","token":1e3}}}}"#).into_bytes(),
            "signed_field_ambiguous",
        ),
    ];
    for (what, token, body, outcome) in cases {
        let sig = mail_sig(ts, token, &body);
        let before = gw.outcome("mail", outcome);
        let answer = post(&url, &[("x-sig", &sig)], &body).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            answer.body
        );
        assert_eq!(gw.outcome("mail", outcome), before + 1.0, "{what}");
    }
    // A genuine request still passes after them.
    let body = mail_body(ts, "tok-6", "");
    let answer = post(&url, &[("x-sig", &mail_sig(ts, "tok-6", &body))], &body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        upstream.count(),
        1,
        "only the genuine request reached the app"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn the_method_and_query_are_signed_and_a_changed_query_is_refused() {
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(&Yaml::new().routes(&routes(&upstream.url())), ENV).await;
    let body = br#"{"id":1}"#;
    let sig = hex::encode(hmac_sha256(SECRET, &[b"POST /line?account=a1\n", body]));
    let ok = post(&gw.url("/line?account=a1"), &[("x-sig", &sig)], body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(upstream.received()[0].path_and_query, "/line?account=a1");
    let moved = post(&gw.url("/line?account=a2"), &[("x-sig", &sig)], body).await;
    assert_eq!(moved.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.outcome("line", "signature_mismatch"), 1.0);
    assert_eq!(upstream.count(), 1);
    gw.shutdown().await;
}

/// HTTP Basic (Chargebee, Postmark): a shared secret, forwarded when the credentials match
/// whole, refused otherwise, and shown as the weaker check it is.
#[tokio::test]
async fn basic_auth_routes_forward_the_right_credentials_only_and_say_they_are_weaker() {
    use base64::Engine as _;
    let upstream = Upstream::start().await;
    let route = format!(
        "  - name: basic\n    path: /basic\n    upstream: {}\n    allow_ips: [127.0.0.1/32]\n    verify:\n      algorithm: token\n      signature: {{ header: authorization, prefix: \"Basic \", encoding: base64 }}\n      message: []\n      secret: \"${{ENGINE_SECRET}}\"\n",
        upstream.url()
    );
    let env = [("ENGINE_SECRET", "chargebee:pa55")];
    let gw = Hookgate::start(&Yaml::new().routes(&route), &env).await;
    let url = gw.url("/basic");
    let basic = |creds: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
    };
    let body = br#"{"event_type":"subscription_created"}"#;
    let ok = post(&url, &[("authorization", &basic("chargebee:pa55"))], body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(upstream.received()[0].body.as_ref(), body);
    for wrong in ["other:pa55", "chargebee:pa5", "chargebee:pa55x"] {
        let refused = post(&url, &[("authorization", &basic(wrong))], body).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{wrong}");
    }
    assert_eq!(gw.outcome("basic", "signature_mismatch"), 3.0);
    assert_eq!(upstream.count(), 1);
    assert_eq!(
        gw.counter(
            "hookgate_route_verification",
            &[("route", "basic"), ("kind", "shared_secret")]
        ),
        1.0
    );
    gw.shutdown().await;
}

/// A JWT-signed sender (Vonage's shape: a bearer token whose claim holds the body's
/// SHA-256): the genuine request is forwarded byte for byte; a changed body, an expired
/// token, another issuer's key are refused and never reach the app.
#[tokio::test]
async fn a_jwt_bound_to_the_body_is_forwarded_and_any_change_is_refused() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let token = |secret: &str, claims: &str| {
        let signed = format!(
            "{}.{}",
            b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64.encode(claims)
        );
        format!(
            "{signed}.{}",
            b64.encode(hmac_sha256(secret, &[signed.as_bytes()]))
        )
    };
    let upstream = Upstream::start().await;
    let route = format!(
        "  - name: vonage\n    path: /vonage\n    upstream: {}\n    verify:\n      algorithm: jwt\n      signature: {{ header: authorization, prefix: \"Bearer \" }}\n      jwt: {{ algorithms: [HS256], max_age: 5m, body_sha256: {{ claim: payload_hash, encoding: hex }} }}\n      secret: \"${{ENGINE_SECRET}}\"\n",
        upstream.url()
    );
    let gw = Hookgate::start(&Yaml::new().routes(&route), ENV).await;
    let url = gw.url("/vonage");
    let body = br#"{"status":"delivered","message_uuid":"m-1"}"#;
    let claims = |iat: u64, body: &[u8]| {
        format!(
            r#"{{"iat":{iat},"payload_hash":"{}"}}"#,
            hex::encode(sha2::Sha256::digest(body))
        )
    };
    let now = now_unix();
    let bearer = |t: String| format!("Bearer {t}");
    let good = bearer(token(SECRET, &claims(now, body)));
    let ok = post(&url, &[("authorization", &good)], body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(upstream.received()[0].body.as_ref(), body);
    let cases = [
        (
            "a changed body",
            good.clone(),
            &br#"{"status":"failed"}"#[..],
            "jwt_claim_mismatch",
        ),
        (
            "an old token",
            bearer(token(SECRET, &claims(now - 3600, body))),
            &body[..],
            "timestamp_stale",
        ),
        (
            "another key",
            bearer(token("not-the-secret", &claims(now, body))),
            &body[..],
            "signature_mismatch",
        ),
    ];
    for (what, header, body, outcome) in cases {
        let refused = post(&url, &[("authorization", &header)], body).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(gw.outcome("vonage", outcome), 1.0, "{what}");
    }
    assert_eq!(upstream.count(), 1);
    gw.shutdown().await;
}

/// Adyen (`each:` and a preset acknowledgement): a queued route verifies every item of a
/// batch on its own, answers `[accepted]` once the notification is stored, and delivers it;
/// a batch with one forged item is refused whole and nothing is stored.
#[tokio::test]
async fn adyen_batches_verify_item_by_item_and_a_queued_route_answers_accepted() {
    use base64::Engine as _;
    let key_hex = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
    let key = hex::decode(key_hex).unwrap();
    let item = |psp: &str, signed_as: &str| {
        let text = format!("{signed_as}::TestMerchant:order-1:1130:EUR:AUTHORISATION:true");
        let sig = {
            use hmac::Mac as _;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            mac.update(text.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        };
        format!(
            r#"{{"NotificationRequestItem":{{"additionalData":{{"hmacSignature":"{sig}"}},"amount":{{"currency":"EUR","value":1130}},"eventCode":"AUTHORISATION","merchantAccountCode":"TestMerchant","merchantReference":"order-1","pspReference":"{psp}","success":"true"}}}}"#
        )
    };
    let body = |items: &[String]| {
        format!(
            r#"{{"live":"false","notificationItems":[{}]}}"#,
            items.join(",")
        )
        .into_bytes()
    };
    let upstream = Upstream::start().await;
    let route = format!(
        "  - name: adyen\n    path: /adyen\n    upstream: {}\n    delivery: queued\n    verify: {{ preset: adyen, secret: \"${{ADYEN_HMAC_KEY}}\" }}\n    replay: {{}}\n",
        upstream.url()
    );
    let store = temp_dir("adyen-queued");
    let yaml = Yaml::new()
        .top(&format!("queue_store:\n  path: {}\n", store.display()))
        .routes(&route);
    let gw = Hookgate::start(&yaml, &[("ADYEN_HMAC_KEY", key_hex)]).await;
    let url = gw.url("/adyen");
    const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

    let forged = body(&[item("psp-1", "psp-1"), item("psp-2", "psp-9")]);
    let answer = post(&url, JSON, &forged).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(gw.outcome("adyen", "signature_mismatch"), 1.0);

    let batch = body(&[item("psp-1", "psp-1"), item("psp-2", "psp-2")]);
    let answer = post(&url, JSON, &batch).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "[accepted]");
    eventually("the notification reaches the app", || upstream.count() == 1).await;
    assert_eq!(upstream.received()[0].body.as_ref(), batch.as_slice());
    // Adyen resends until it reads `[accepted]`: a duplicate gets it too, and is not stored
    // again; the same items in another order are the same notification.
    let reordered = body(&[item("psp-2", "psp-2"), item("psp-1", "psp-1")]);
    for again in [&batch, &reordered] {
        let answer = post(&url, JSON, again).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.body, "[accepted]");
        assert_eq!(answer.headers["x-hookgate-duplicate"], "true");
    }
    // One item twice is no batch a sender makes.
    let twice = body(&[item("psp-1", "psp-1"), item("psp-1", "psp-1")]);
    let answer = post(&url, JSON, &twice).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(gw.outcome("adyen", "body_ambiguous"), 1.0);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(upstream.count(), 1);
    gw.shutdown().await;
}
