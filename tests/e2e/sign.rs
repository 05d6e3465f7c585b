//! `hookgate sign` for every kind of scheme and every place a signature goes, and
//! `--handshake` for the handshakes: what it prints is sent to the real gateway binary, which
//! must pass events to the app and answer handshakes itself, as the sender expects.

use std::path::{Path, PathBuf};
use std::process::Command;

use http::StatusCode;

use crate::support::*;

/// The environment both `sign` and the gateway read their secrets from.
const ENV: &[(&str, &str)] = &[
    ("NETLIFY", "netlify-jws-secret"),
    ("VONAGE", "vonage-signature-secret"),
    ("BASIC", "chargebee:hunter2"),
    ("TELEGRAM", "telegram-secret-token"),
    ("TOKEN", "query-token"),
    ("MAILISH", "mailish-key"),
    ("SECRET", "hmac-secret"),
    ("META_TOKEN", "meta-verify-token"),
    ("EBAY_TOKEN", "hookgate-ebay-verification-token-0123456789"),
    ("OKTA", "okta-authorization"),
];

fn with_env(command: &mut Command) -> &mut Command {
    command.envs(ENV.iter().copied())
}

/// What one `hookgate sign` run printed.
struct Printed {
    stdout: String,
    stderr: String,
}

impl Printed {
    /// The `Name: value` lines, as pairs.
    fn headers(&self) -> Vec<(&str, &str)> {
        self.stdout
            .lines()
            .map(|l| l.split_once(": ").expect("a Name: value line"))
            .collect()
    }

    /// The target a note says to post to, or `default`.
    fn target<'a>(&'a self, default: &'a str) -> &'a str {
        self.stderr
            .split("post to ")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .map_or(default, str::trim)
    }
}

/// Runs `hookgate sign -c config --route route` with `args`; it must succeed.
fn sign(config: &Path, route: &str, args: &[&str]) -> Printed {
    let out = with_env(
        bin()
            .args(["sign", "-c"])
            .arg(config)
            .args(["--route", route]),
    )
    .args(args)
    .output()
    .expect("hookgate runs");
    let printed = Printed {
        stdout: String::from_utf8(out.stdout).expect("UTF-8"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(out.status.success(), "{route}: {}", printed.stderr);
    printed
}

/// Runs `hookgate sign` expecting it to fail; its stderr.
fn sign_fails(config: &Path, route: &str, args: &[&str]) -> String {
    let out = with_env(
        bin()
            .args(["sign", "-c"])
            .arg(config)
            .args(["--route", route]),
    )
    .args(args)
    .output()
    .expect("hookgate runs");
    assert!(!out.status.success(), "{route} signed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const EVENT_ROUTES: &str = r#"  - { name: netlify, path: /netlify, upstream: "{u}", verify: { preset: netlify, secret: "${NETLIFY}" } }
  - { name: vonage, path: /vonage, upstream: "{u}", verify: { preset: vonage, secret: "${VONAGE}" } }
  - { name: chargebee, path: /chargebee, upstream: "{u}", allow_ips: [127.0.0.1/32], verify: { preset: chargebee, secret: "${BASIC}" } }
  - { name: telegram, path: /telegram, upstream: "{u}", allow_ips: [127.0.0.1/32], verify: { preset: telegram, secret: "${TELEGRAM}" } }
  - { name: query, path: /query, upstream: "{u}", allow_ips: [127.0.0.1/32], verify: { algorithm: token, signature: { query: token }, message: [], secret: "${TOKEN}" } }
  - name: mailish
    path: /mailish
    upstream: "{u}"
    verify:
      signature: { json: /signature/signature }
      message: [{ json: /signature/timestamp }, { literal: "." }, { json: /signature/token }]
      body_signed: false
      secret: "${MAILISH}"
    replay: { key: { json: /signature/token } }
  - { name: msgraph, path: /msgraph, upstream: "{u}", allow_ips: [127.0.0.1/32], verify: { preset: msgraph, secret: "${TOKEN}" } }
  - { name: form, path: /form, upstream: "{u}", verify: { signature: { form: sig }, message: [{ form: payload }], body_signed: false, secret: "${SECRET}" } }
  - { name: put, path: /put/*, methods: [PUT], upstream: "{u}", verify: { signature: { header: x-sig }, message: [method, { literal: " " }, path, { literal: " " }, body], secret: "${SECRET}" } }
"#;

/// Every kind of route `sign` could not sign before: JWTs, shared secrets (HTTP Basic, a
/// header, a query parameter, Graph's field of every item), signatures in a JSON or form
/// field of the body, and a scheme
/// that signs the method. What it prints reaches the app through the running gateway.
#[tokio::test]
async fn what_sign_prints_for_every_kind_of_scheme_reaches_the_app() {
    let upstream = Upstream::start().await;
    let dir = temp_dir("sign-kinds");
    let routes = EVENT_ROUTES.replace("{u}", &upstream.url());
    let config = write(&dir, "gateway.yaml", &Yaml::new().routes(&routes));
    let gateway = start(with_env(&mut run(&config)), Ready::default());
    let base = format!("http://{}", gateway.addr);
    let event = write(&dir, "event.json", r#"{"id":"evt_1","amount":1.50}"#);
    let event = event.to_str().unwrap();

    // Header placements: JWTs (HS256, and Bearer with iat), Basic, a token header.
    for (route, header) in [
        ("netlify", "x-webhook-signature: ey"),
        ("vonage", "authorization: Bearer ey"),
        ("chargebee", "authorization: Basic Y2hhcmdlYmVlOmh1bnRlcjI="),
        (
            "telegram",
            "x-telegram-bot-api-secret-token: telegram-secret-token",
        ),
    ] {
        let printed = sign(&config, route, &["--body", event]);
        assert!(
            printed.stdout.starts_with(header),
            "{route}: {}",
            printed.stdout
        );
        let answer = post(
            &format!("{base}/{route}"),
            &printed.headers(),
            br#"{"id":"evt_1","amount":1.50}"#,
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{route}: {}", printed.stdout);
    }
    assert_eq!(upstream.count(), 4);

    // A query parameter: sign says where to post, and nothing goes in a header.
    let printed = sign(&config, "query", &["--body", event]);
    assert_eq!(printed.stdout, "");
    let target = printed.target("");
    assert_eq!(target, "/query?token=query-token", "{}", printed.stderr);
    let answer = post(&format!("{base}{target}"), &[], b"{}").await;
    assert_eq!(answer.status, StatusCode::OK);

    // A signature in a JSON field beside the fields it signs: the body to send is written
    // to --out-body, every other byte as given.
    let given = r#"{"signature": {"timestamp": "1529006854", "token": "a8ce0edb"}, "event-data": {"severity": 1.50}}"#;
    let body = write(&dir, "mailish.json", given);
    let out = dir.join("mailish.out");
    let printed = sign(
        &config,
        "mailish",
        &[
            "--body",
            body.to_str().unwrap(),
            "--out-body",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        printed.stderr.contains("JSON field /signature/signature"),
        "{}",
        printed.stderr
    );
    let sent = std::fs::read(&out).unwrap();
    // The body may carry a shared secret (Graph's clientState): the owner's alone.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let text = String::from_utf8(sent.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"signature": {"signature":""#)
            && text.ends_with(&given[r#"{"signature": {"#.len()..]),
        "{text}"
    );
    let answer = post(&format!("{base}/mailish"), &printed.headers(), &sent).await;
    assert_eq!(answer.status, StatusCode::OK, "{text}");
    // Without --out-body there is nothing the operator could send: an error says so.
    let e = sign_fails(&config, "mailish", &["--body", body.to_str().unwrap()]);
    assert!(e.contains("--out-body"), "{e}");

    // Microsoft Graph: the clientState in every notification of the batch.
    let given =
        r#"{"value": [{"subscriptionId": "a", "changeType": "created"}, {"subscriptionId": "b"}]}"#;
    let body = write(&dir, "graph.json", given);
    let out = dir.join("graph.out");
    sign(
        &config,
        "msgraph",
        &[
            "--body",
            body.to_str().unwrap(),
            "--out-body",
            out.to_str().unwrap(),
        ],
    );
    let sent = std::fs::read(&out).unwrap();
    assert_eq!(
        String::from_utf8(sent.clone()).unwrap(),
        r#"{"value": [{"clientState":"query-token","subscriptionId": "a", "changeType": "created"}, {"clientState":"query-token","subscriptionId": "b"}]}"#
    );
    let answer = post(&format!("{base}/msgraph"), &[], &sent).await;
    assert_eq!(answer.status, StatusCode::OK);

    // A form field: the form Content-Type printed, the field appended to the body.
    let body = write(&dir, "form.txt", "payload=a%2Bb");
    let out = dir.join("form.out");
    let printed = sign(
        &config,
        "form",
        &[
            "--body",
            body.to_str().unwrap(),
            "--out-body",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(
        printed.stdout,
        "content-type: application/x-www-form-urlencoded\n"
    );
    let sent = std::fs::read(&out).unwrap();
    assert!(sent.starts_with(b"payload=a%2Bb&sig="));
    let answer = post(&format!("{base}/form"), &printed.headers(), &sent).await;
    assert_eq!(answer.status, StatusCode::OK);

    // A scheme that signs the method: --method PUT, sent as a PUT.
    let printed = sign(
        &config,
        "put",
        &["--body", event, "--method", "put", "--path", "/put/x"],
    );
    let answer = send(
        "PUT",
        &format!("{base}/put/x"),
        &printed.headers(),
        br#"{"id":"evt_1","amount":1.50}"#,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let e = sign_fails(&config, "put", &["--body", event]);
    assert!(e.contains("takes PUT, not POST"), "{e}");

    let received = upstream.received();
    assert_eq!(received.len(), 9);
    assert_eq!(received[4].path_and_query, "/query?token=query-token");
    assert_eq!(received[5].body, sent_body(&dir, "mailish.out"));
    assert_eq!(received[6].body, sent_body(&dir, "graph.out"));
    assert_eq!(received[8].method, "PUT");
}

fn sent_body(dir: &Path, name: &str) -> bytes::Bytes {
    std::fs::read(dir.join(name)).unwrap().into()
}

/// What `sign` cannot derive, it refuses with what would be right.
#[test]
fn sign_says_what_is_missing_rather_than_print_a_refused_request() {
    let dir = temp_dir("sign-refusals");
    let routes = r#"  - { name: aud, path: /aud, upstream: "http://127.0.0.1:1", verify: { algorithm: jwt, signature: { header: x-jwt }, jwt: { algorithms: [HS256], require: [aud] }, body_signed: false, secret: "${SECRET}" } }
  - { name: linear, path: /linear, upstream: "http://127.0.0.1:1", verify: { preset: linear, secret: "${SECRET}" } }
  - { name: gh, path: /gh, upstream: "http://127.0.0.1:1", verify: { preset: github, secret: "${SECRET}" } }
"#;
    let config = write(&dir, "gateway.yaml", &Yaml::new().routes(routes));
    let body = write(&dir, "old.json", r#"{"webhookTimestamp":1529006854000}"#);
    let body = body.to_str().unwrap();
    let e = sign_fails(&config, "aud", &["--body", body]);
    assert!(
        e.contains("requires the claim `aud`") && e.contains("`jwt.audience`"),
        "{e}"
    );
    // Linear's timestamp is in the body: an old one would be refused, and sign says so.
    let e = sign_fails(&config, "linear", &["--body", body]);
    assert!(
        e.contains("route `linear` would refuse this request: timestamp too old")
            && e.contains("/webhookTimestamp"),
        "{e}"
    );
    let e = sign_fails(&config, "gh", &["--handshake"]);
    assert!(e.contains("no handshake"), "{e}");
}

/// Runs a `sign --handshake` output with sh (curl), as an operator would paste it, and checks
/// the answer against its `# expect` lines: status, headers, body.
async fn play(printed: &Printed) -> String {
    let script = printed.stdout.clone();
    let out =
        tokio::task::spawn_blocking(move || Command::new("sh").arg("-c").arg(script).output())
            .await
            .unwrap()
            .expect("sh runs");
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{answer}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let head = head.to_ascii_lowercase();
    for line in printed.stdout.lines() {
        if let Some(status) = line.strip_prefix("# expect status: ") {
            assert!(head.starts_with(&format!("http/1.1 {status}")), "{answer}");
        } else if let Some(header) = line.strip_prefix("# expect header: ") {
            assert!(
                head.contains(&header.to_ascii_lowercase()),
                "{header}: {answer}"
            );
        } else if let Some(expected) = line.strip_prefix("# expect body: ") {
            assert_eq!(body, expected, "{}", printed.stdout);
        }
    }
    answer
}

/// `sign --handshake` for unsigned handshakes (Meta, X's CRC, Okta, Trello, CloudEvents,
/// Microsoft Graph, eBay) and signed ones (Slack, Zoom, Discord's two kinds, Twitch): each curl line gets from the gateway the
/// answer it says, and none reaches the app.
#[tokio::test]
async fn each_handshake_played_with_curl_gets_the_answer_sign_expects() {
    let upstream = Upstream::start().await;
    let dir = temp_dir("sign-handshakes");
    let discord = dir.join("discord.pem");
    let line = String::from_utf8(
        bin()
            .args(["keygen", "--preset", "discord", "--out"])
            .arg(&discord)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let discord_public = line.split('"').nth(1).expect("a public key").to_owned();
    let u = upstream.url();
    let routes = format!(
        "  - {{ name: meta, path: /meta, upstream: \"{u}\", verify: {{ preset: meta, secret: \"${{SECRET}}\" }}, handshake: {{ verify_token: \"${{META_TOKEN}}\" }} }}\n\
         \x20 - {{ name: x, path: /x, upstream: \"{u}\", verify: {{ preset: x, secret: \"${{SECRET}}\" }} }}\n\
         \x20 - {{ name: okta, path: /okta, upstream: \"{u}\", allow_ips: [127.0.0.1/32], verify: {{ preset: okta, secret: \"${{OKTA}}\" }} }}\n\
         \x20 - {{ name: trello, path: /trello, upstream: \"{u}\", verify: {{ preset: github, secret: \"${{SECRET}}\" }}, handshake: {{ kind: trello-head }} }}\n\
         \x20 - {{ name: grid, path: /grid, upstream: \"{u}\", allow_ips: [127.0.0.1/32], verify: {{ algorithm: token, signature: {{ query: code }}, message: [], secret: \"${{TOKEN}}\" }}, handshake: {{ kind: cloudevents, origins: [eventgrid.azure.net] }} }}\n\
         \x20 - {{ name: slack, path: /slack, upstream: \"{u}\", verify: {{ preset: slack, secret: \"${{SECRET}}\" }} }}\n\
         \x20 - {{ name: zoom, path: /zoom, upstream: \"{u}\", verify: {{ preset: zoom, secret: \"${{SECRET}}\" }} }}\n\
         \x20 - {{ name: discord, path: /discord, upstream: \"{u}\", verify: {{ preset: discord, public_key: \"{discord_public}\" }} }}\n\
         \x20 - {{ name: discord-events, path: /discord-events, upstream: \"{u}\", verify: {{ preset: discord, public_key: \"{discord_public}\" }}, handshake: {{ kind: discord-events }} }}\n\
         \x20 - {{ name: msgraph, path: /msgraph, upstream: \"{u}\", allow_ips: [127.0.0.1/32], verify: {{ preset: msgraph, secret: \"${{TOKEN}}\" }} }}\n\
         \x20 - {{ name: twitch, path: /twitch, upstream: \"{u}\", verify: {{ preset: twitch, secret: \"${{SECRET}}\" }} }}\n\
         \x20 - {{ name: ebay, path: /ebay, upstream: \"{u}\", verify: {{ preset: github, secret: \"${{SECRET}}\" }}, handshake: {{ kind: ebay-challenge, verify_token: \"${{EBAY_TOKEN}}\", endpoint: \"https://hooks.example.com/ebay\" }} }}\n"
    );
    let config = write(&dir, "gateway.yaml", &Yaml::new().routes(&routes));
    let gateway = start(with_env(&mut run(&config)), Ready::default());
    let url = format!("http://{}", gateway.addr);
    let handshake = |route: &str, extra: &[&str]| {
        let mut args = vec!["--handshake", "--url", url.as_str()];
        args.extend_from_slice(extra);
        sign(&config, route, &args)
    };

    let meta = handshake("meta", &[]);
    assert!(
        meta.stdout.contains("hub.verify_token=meta-verify-token"),
        "{}",
        meta.stdout
    );
    play(&meta).await;
    let x = handshake("x", &[]);
    assert!(
        x.stdout
            .contains("# expect body: {\"response_token\":\"sha256="),
        "{}",
        x.stdout
    );
    play(&x).await;
    play(&handshake("okta", &[])).await;
    let trello = handshake("trello", &[]);
    assert!(
        trello.stdout.starts_with("curl -sS -i --head "),
        "{}",
        trello.stdout
    );
    play(&trello).await;
    let grid = handshake("grid", &[]);
    assert!(grid.stdout.contains("-X OPTIONS"), "{}", grid.stdout);
    play(&grid).await;
    // Signed ones, signed like events (Discord's with its private key).
    play(&handshake("slack", &[])).await;
    let zoom = handshake("zoom", &[]);
    assert!(zoom.stdout.contains("encryptedToken"), "{}", zoom.stdout);
    play(&zoom).await;
    play(&handshake(
        "discord",
        &["--private-key", discord.to_str().unwrap()],
    ))
    .await;
    let pem = ["--private-key", discord.to_str().unwrap()];
    let events = handshake("discord-events", &pem);
    assert!(
        events.stdout.contains("# expect status: 204"),
        "{}",
        events.stdout
    );
    play(&events).await;
    play(&handshake("msgraph", &[])).await;
    play(&handshake("twitch", &[])).await;
    // eBay's answer hashes the token; the token itself is not printed.
    let ebay = handshake("ebay", &[]);
    assert!(
        ebay.stdout.contains("/ebay?challenge_code=")
            && ebay
                .stdout
                .contains("# expect body: {\"challengeResponse\":\"")
            && !ebay.stdout.contains("hookgate-ebay-verification-token"),
        "{}",
        ebay.stdout
    );
    play(&ebay).await;
    assert_eq!(
        upstream.count(),
        0,
        "handshakes are answered by the gateway"
    );
}
