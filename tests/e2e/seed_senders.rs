//! The five seed senders, signed the way each one signs, through the running gateway.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::Deserialize;

use crate::support::*;

#[tokio::test]
async fn valid_request_from_each_sender_reaches_the_app_byte_for_byte() {
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(&seed_config(&upstream.url(), ""), &env_secrets()).await;
    // Whitespace and key order matter: the MAC is over these exact bytes.
    let body = br#"{ "event":"charge.success",  "data": {"amount": 10000, "z":1, "a":2} }"#;
    for (i, (sender, _, secret)) in SECRETS.iter().enumerate() {
        let signed = sign_as(sender, secret, body, now_unix());
        let mut headers = as_refs(&signed);
        headers.push(("content-type", "application/json"));
        headers.push(("x-request-tag", "tag-42"));
        let answer = post(
            &gw.url(&format!("/hooks/{sender}?src=test")),
            &headers,
            body,
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{sender}: {}", answer.body);
        // The app's own answer comes back unchanged.
        assert_eq!(answer.body, "accepted by app");
        assert_eq!(answer.headers["x-upstream"], "recorded");

        let got = upstream.received();
        assert_eq!(got.len(), i + 1, "{sender} forwarded once");
        let r = &got[i];
        assert_eq!(r.method, "POST");
        assert_eq!(r.path_and_query, format!("/hooks/{sender}?src=test"));
        assert_eq!(&r.body[..], &body[..], "{sender}: identical body");
        for (name, value) in &signed {
            assert_eq!(r.headers[name.as_str()], value.as_str(), "{sender}: {name}");
        }
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["x-request-tag"], "tag-42");
        assert_eq!(r.headers["content-length"], body.len().to_string());
        assert_eq!(r.headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(r.headers["x-forwarded-proto"], "http");
        assert_eq!(r.headers["x-forwarded-host"], gw.addr.to_string());
        assert_eq!(gw.outcome(sender, "forwarded"), 1.0);
        assert_eq!(
            gw.counter(
                "hookgate_verified_total",
                &[("route", sender), ("secret_index", "0")]
            ),
            1.0
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn app_refusal_is_passed_back_not_turned_into_success() {
    let upstream = Upstream::start_with(Reply {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: "app is broken",
        ..Reply::default()
    })
    .await;
    let gw = Hookgate::start(&seed_config(&upstream.url(), ""), &env_secrets()).await;
    let body = b"{\"id\":\"evt_1\"}";
    let signed = sign_as("lomi", secret_of("lomi"), body, now_unix());
    let answer = post(&gw.url("/hooks/lomi"), &as_refs(&signed), body).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.body, "app is broken");
    assert_eq!(upstream.count(), 1);
    assert_eq!(
        gw.counter(
            "hookgate_upstream_responses_total",
            &[("route", "lomi"), ("class", "5xx")]
        ),
        1.0
    );
    gw.shutdown().await;
}

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    sender: String,
    name: String,
    secret: String,
    body: String,
    headers: std::collections::BTreeMap<String, String>,
    now_unix: u64,
    expect: String,
}

const VECTOR_NOW: u64 = 1_763_884_800;

fn vector_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(VECTOR_NOW)
}

/// Every recorded vector, sent over HTTP with the gateway's clock pinned to the vectors' `now`.
#[tokio::test]
async fn every_seed_vector_through_the_gateway() {
    let vectors: Vectors =
        serde_json::from_str(include_str!("../vectors/seed-senders.json")).unwrap();
    let upstream = Upstream::start().await;
    let gw = Hookgate::start_with_clock(
        &seed_config(&upstream.url(), ""),
        &env_secrets(),
        vector_clock,
    )
    .await;
    let mut forwarded = 0;
    for case in &vectors.cases {
        assert_eq!(case.now_unix, VECTOR_NOW);
        assert_eq!(case.secret, secret_of(&case.sender));
        let headers: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let before = upstream.count();
        let answer = post(
            &gw.url(&format!("/hooks/{}", case.sender)),
            &headers,
            case.body.as_bytes(),
        )
        .await;
        let label = format!("{}/{}", case.sender, case.name);
        if case.expect == "accept" {
            forwarded += 1;
            assert_eq!(answer.status, StatusCode::OK, "{label}: {}", answer.body);
            assert_eq!(upstream.count(), before + 1, "{label}");
            assert_eq!(
                upstream.received().last().unwrap().body,
                case.body.as_bytes(),
                "{label}"
            );
        } else {
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{label}");
            assert_eq!(upstream.count(), before, "{label}: nothing forwarded");
        }
    }
    assert_eq!(upstream.count(), forwarded);
    gw.shutdown().await;
}

#[tokio::test]
async fn listrak_stale_and_future_timestamps_are_refused_and_counted() {
    let upstream = Upstream::start().await;
    let gw = Hookgate::start(&seed_config(&upstream.url(), ""), &env_secrets()).await;
    let body = b"{\"ContactEmail\":\"a@example.com\"}";
    let secret = secret_of("listrak");
    let now = now_unix();
    let fresh = sign_as("listrak", secret, body, now - 60);
    let stale = sign_as("listrak", secret, body, now - 16 * 60);
    let future = sign_as("listrak", secret, body, now + 16 * 60);
    let url = gw.url("/hooks/listrak");
    assert_eq!(
        post(&url, &as_refs(&stale), body).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&url, &as_refs(&future), body).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(upstream.count(), 0);
    assert_eq!(gw.outcome("listrak", "timestamp_stale"), 1.0);
    assert_eq!(gw.outcome("listrak", "timestamp_future"), 1.0);
    // The JavaScript example's hex encoding of the same MAC is accepted as well.
    let ts = (now - 60).to_string();
    let hex_sig = hex::encode(hmac_sha256(secret, &[body, ts.as_bytes()]));
    let hex_headers = [
        ("LTK-Timestamp", ts.as_str()),
        ("LTK-HmacSignature", hex_sig.as_str()),
    ];
    assert_eq!(post(&url, &hex_headers, body).await.status, StatusCode::OK);
    assert_eq!(
        post(&url, &as_refs(&fresh), body).await.status,
        StatusCode::OK
    );
    assert_eq!(upstream.count(), 2);
    gw.shutdown().await;
}
