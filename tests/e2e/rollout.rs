//! Rolling hookgate out and rotating secrets: several secrets with the matching index in the
//! metrics, and shadow mode (`enforce: false`) forwarding what it would have refused.

use http::StatusCode;

use crate::support::*;

const BODY: &[u8] = b"Hello, World!";

fn github_sig(secret: &str) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, &[BODY])))
}

#[tokio::test]
async fn either_of_two_secrets_verifies_and_the_metric_says_which() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new().routes(&format!(
        "  - name: github\n    path: /gh\n    upstream: {}\n    verify:\n      preset: github\n      secrets: [\"${{NEW}}\", \"${{OLD}}\"]\n",
        upstream.url()
    ));
    let gw = Hookgate::start(&yaml, &[("NEW", "new-secret"), ("OLD", "old-secret")]).await;
    let url = gw.url("/gh");
    for secret in ["old-secret", "new-secret", "old-secret"] {
        let sig = github_sig(secret);
        let answer = post(&url, &[("x-hub-signature-256", &sig)], BODY).await;
        assert_eq!(answer.status, StatusCode::OK, "{secret}");
    }
    let stranger = github_sig("someone-else");
    let answer = post(&url, &[("x-hub-signature-256", &stranger)], BODY).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.count(), 3);
    let idx = |i: &str| {
        gw.counter(
            "hookgate_verified_total",
            &[("route", "github"), ("secret_index", i)],
        )
    };
    assert_eq!(idx("0"), 1.0);
    assert_eq!(idx("1"), 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn shadow_mode_forwards_what_it_would_refuse_and_counts_it() {
    let upstream = Upstream::start().await;
    let yaml = Yaml::new().routes(&format!(
        "  - name: shadow\n    path: /gh\n    upstream: {u}\n    enforce: false\n    verify: {{ preset: github, secret: \"${{S}}\" }}\n  - name: shadow-ip\n    path: /ip\n    upstream: {u}\n    enforce: false\n    allow_ips: [203.0.113.0/24]\n    verify: {{ preset: github, secret: \"${{S}}\" }}\n  - name: enforced\n    path: /enforced\n    upstream: {u}\n    verify: {{ preset: github, secret: \"${{S}}\" }}\n",
        u = upstream.url()
    ));
    let gw = Hookgate::start(&yaml, &[("S", "s3cret")]).await;
    let good = github_sig("s3cret");
    let bad = github_sig("wrong");

    // Invalid signature on a shadow route: reaches the app, counted as the refusal it would be.
    let answer = post(&gw.url("/gh"), &[("x-hub-signature-256", &bad)], BODY).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "accepted by app");
    let answer = post(&gw.url("/gh"), &[], BODY).await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = post(&gw.url("/gh"), &[("x-hub-signature-256", &good)], BODY).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(upstream.count(), 3);
    assert_eq!(gw.outcome("shadow", "signature_mismatch"), 1.0);
    assert_eq!(gw.outcome("shadow", "signature_missing"), 1.0);
    assert_eq!(gw.outcome("shadow", "forwarded"), 1.0);
    let shadow = |outcome: &str| {
        gw.counter(
            "hookgate_shadow_refusals_total",
            &[("route", "shadow"), ("outcome", outcome)],
        )
    };
    assert_eq!(shadow("signature_mismatch"), 1.0);
    assert_eq!(shadow("signature_missing"), 1.0);

    // A denied address on a shadow route is forwarded too.
    let answer = post(&gw.url("/ip"), &[("x-hub-signature-256", &good)], BODY).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(upstream.count(), 4);
    assert_eq!(gw.outcome("shadow-ip", "ip_not_allowed"), 1.0);

    // The enforcing route beside it still refuses.
    let answer = post(&gw.url("/enforced"), &[("x-hub-signature-256", &bad)], BODY).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.count(), 4);
    gw.shutdown().await;
}
