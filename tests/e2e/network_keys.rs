//! Senders whose keys live on the network (issue 23): AWS SNS and PayPal, verified with the
//! certificate each message names, fetched by the gateway from a real HTTPS key host on
//! loopback. The key host serves under the senders' own host names (`key_fetch.connect_to`
//! sends the gateway to it) with a certificate from a test CA (`key_fetch.ca_file`), so the
//! gateway checks TLS as it would in production. Messages are signed here as SNS and PayPal
//! sign them (independently of the gateway's engine), with a test RSA key whose certificate
//! the test CA issues; the real AWS and PayPal messages of `tests/vectors/` verify with their
//! real certificates.
//!
//! Every refusal asserts that the app received nothing, and, where it matters, how many
//! fetches the request caused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::StatusCode;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The test RSA key the test CA's signing certificates are issued for (test-only).
const SIGNING_KEY: &str = include_str!("../fixtures/test-rsa-signing-key.pem");

const SNS_HOST: &str = "sns.eu-west-1.amazonaws.com";
const SNS_CERT_PATH: &str = "/SimpleNotificationService-test.pem";
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:orders";
const PAYPAL_HOST: &str = "api.paypal.com";
const PAYPAL_CERT_PATH: &str = "/v1/notifications/certs/CERT-test";
const WEBHOOK_ID: &str = "8PT597110X687430LKGECATA";

// ---------------------------------------------------------------------------------------------
// The key host

/// What the key host answers for one path.
#[derive(Clone)]
enum Doc {
    /// 200 with this body and `Cache-Control`.
    Ok(Vec<u8>, &'static str),
    /// 302 to this location.
    Redirect(&'static str),
    /// 200 with a body of this many bytes.
    Huge(usize),
    /// Never answers.
    Silent,
    /// This status, with no body.
    Status(u16),
}

/// An HTTPS key host on loopback: the test CA's certificate for every name the tests use,
/// a document per path, a switch to refuse connections, and a count of requests.
struct KeyHost {
    addr: SocketAddr,
    docs: Arc<Mutex<HashMap<String, Doc>>>,
    up: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    /// The last request's body (a key API's POST).
    last_body: Arc<Mutex<Vec<u8>>>,
    /// Every request's head (request line and headers), in order.
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeyHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeyHost {
    async fn start(pki: &Pki) -> KeyHost {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let docs: Arc<Mutex<HashMap<String, Doc>>> = Arc::default();
        let up = Arc::new(AtomicBool::new(true));
        let requests = Arc::new(AtomicUsize::new(0));
        let last_body: Arc<Mutex<Vec<u8>>> = Arc::default();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let acceptor = pki.host_tls.clone();
        let (d, u, n, lb, hs) = (
            docs.clone(),
            up.clone(),
            requests.clone(),
            last_body.clone(),
            heads.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    drop(tcp); // down: the connection is closed at once
                    continue;
                }
                let (acceptor, docs, requests) = (acceptor.clone(), d.clone(), n.clone());
                let (last_body, heads) = (lb.clone(), hs.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    requests.fetch_add(1, Ordering::SeqCst);
                    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let mut body = head.split_off(end);
                    let head = String::from_utf8_lossy(&head).to_string();
                    heads.lock().unwrap().push(head.clone());
                    let length = head
                        .to_lowercase()
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    while body.len() < length {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => body.extend_from_slice(&buf[..n]),
                        }
                    }
                    *last_body.lock().unwrap() = body;
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let doc = docs.lock().unwrap().get(&path).cloned();
                    let answer = match doc {
                        None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
                        Some(Doc::Ok(body, cache)) => {
                            let mut a = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/x-pem-file\r\n\
                                 cache-control: {cache}\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            a.extend_from_slice(&body);
                            a
                        }
                        Some(Doc::Redirect(to)) => format!(
                            "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n\r\n"
                        )
                        .into_bytes(),
                        Some(Doc::Huge(n)) => {
                            let mut a = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n")
                                .into_bytes();
                            a.resize(a.len() + n, b'A');
                            a
                        }
                        Some(Doc::Status(code)) => {
                            format!("HTTP/1.1 {code} No\r\ncontent-length: 0\r\n\r\n").into_bytes()
                        }
                        Some(Doc::Silent) => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                    };
                    let _ = tls.write_all(&answer).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        KeyHost {
            addr,
            docs,
            up,
            requests,
            last_body,
            heads,
            task,
        }
    }

    fn serve(&self, path: &str, doc: Doc) {
        self.docs.lock().unwrap().insert(path.to_owned(), doc);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// The test PKI: a CA, the key host's TLS, signing certificates for the test RSA key

struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    host_tls: tokio_rustls::TlsAcceptor,
}

/// Every host name the key host answers for.
const HOSTS: &[&str] = &[
    SNS_HOST,
    "sns.us-east-2.amazonaws.com",
    PAYPAL_HOST,
    "api.sandbox.paypal.com",
    "sns.s3.amazonaws.com",
    "www.googleapis.com",
    "accounts.google.com",
    "production.plaid.com",
    "api.ebay.com",
    "keys.internal.example",
    "acme.kinde.com",
];

fn pki(tag: &str) -> Pki {
    let dir = temp_dir(&format!("keys-{tag}"));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    Pki {
        dir,
        ca,
        ca_key,
        host_tls: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
    }
}

impl Pki {
    /// A signing certificate for the test RSA key, issued to `name`, valid from `days_from`
    /// to `days_to` days from now; as PEM.
    fn signing_cert(&self, name: &str, days_from: i64, days_to: i64) -> Vec<u8> {
        let key = KeyPair::from_pem(SIGNING_KEY).unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        let day = |d: i64| {
            let days = now_unix() as i64 / 86_400 + d;
            let (y, m, dd) = civil_from_days(days);
            rcgen::date_time_ymd(y, m, dd)
        };
        params.not_before = day(days_from);
        params.not_after = day(days_to);
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        cert.pem().into_bytes()
    }
}

/// The date of a day since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

// ---------------------------------------------------------------------------------------------
// Signing as SNS and PayPal do (written from their documentation, not from the gateway)

fn rsa_sign(alg: &'static dyn ring::signature::RsaEncoding, message: &[u8]) -> Vec<u8> {
    let der = rustls::pki_types::PrivateKeyDer::from_pem_slice(SIGNING_KEY.as_bytes()).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_der()).unwrap();
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(alg, &ring::rand::SystemRandom::new(), message, &mut sig)
        .unwrap();
    sig
}

use rustls::pki_types::pem::PemObject as _;

/// An SNS Notification for `topic`, signed with signature version `version`.
fn sns_notification(topic: &str, message: &str, version: u8, cert_url: &str) -> Value {
    // As SNS writes it: `2026-12-06T10:00:00.123Z`.
    let timestamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let mut m = json!({
        "Type": "Notification",
        "MessageId": format!("m-{}", rand_id()),
        "TopicArn": topic,
        "Subject": "order placed",
        "Message": message,
        "Timestamp": timestamp,
        "SignatureVersion": version.to_string(),
        "SigningCertURL": cert_url,
        "UnsubscribeURL": format!("https://{SNS_HOST}/?Action=Unsubscribe"),
    });
    sns_sign(&mut m);
    m
}

/// Signs `m` as SNS does: `Key\nvalue\n` for its type's keys, in order, those present.
fn sns_sign(m: &mut Value) {
    let keys: &[&str] = match m["Type"].as_str().unwrap() {
        "Notification" => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        _ => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
    };
    let mut text = String::new();
    for k in keys {
        if let Some(v) = m[*k].as_str() {
            text.push_str(&format!("{k}\n{v}\n"));
        }
    }
    // Version 2 (ring signs no SHA-1; version 1 is proven by the real messages below).
    assert_eq!(m["SignatureVersion"], "2");
    let sig = rsa_sign(&ring::signature::RSA_PKCS1_SHA256, text.as_bytes());
    m["Signature"] = Value::from(B64.encode(sig));
}

fn rand_id() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst) + now_unix() * 1000
}

/// PayPal's headers for `body` sent to `webhook_id`.
fn paypal_headers(body: &[u8], webhook_id: &str, cert_url: &str) -> Vec<(String, String)> {
    let id = format!("tx-{}", rand_id());
    let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let crc = crc32fast::hash(body);
    let signed = format!("{id}|{time}|{webhook_id}|{crc}");
    let sig = B64.encode(rsa_sign(
        &ring::signature::RSA_PKCS1_SHA256,
        signed.as_bytes(),
    ));
    vec![
        ("paypal-transmission-id".into(), id),
        ("paypal-transmission-time".into(), time),
        ("paypal-transmission-sig".into(), sig),
        ("paypal-cert-url".into(), cert_url.into()),
        ("paypal-auth-algo".into(), "SHA256withRSA".into()),
        ("content-type".into(), "application/json".into()),
    ]
}

// ---------------------------------------------------------------------------------------------
// The gateway

/// A gateway with an `sns` and a `paypal` route, fetching from `host` for every test name,
/// with `extra` added to `key_fetch:`.
fn config(pki: &Pki, host: &KeyHost, upstream: &str, extra: &str) -> String {
    let connect_to: String = HOSTS
        .iter()
        .map(|h| format!("    {h}: {}\n", host.addr))
        .collect();
    Yaml::new()
        .top(&format!(
            "key_fetch:\n  ca_file: {}\n  allow_private_addresses: true\n  failure_backoff: 1s\n{extra}  connect_to:\n{connect_to}",
            pki.dir.join("ca.pem").display()
        ))
        .routes(&format!(
            r#"  - name: sns
    path: /sns
    upstream: {upstream}
    verify:
      preset: aws-sns
      json_allowed:
        /TopicArn: [{TOPIC}]
  - name: paypal
    path: /paypal
    upstream: {upstream}
    verify:
      preset: paypal
      key_id: {WEBHOOK_ID}
"#
        ))
}

struct Setup {
    pki: Pki,
    host: KeyHost,
    up: Upstream,
    gw: Hookgate,
}

async fn setup(tag: &str, extra: &str) -> Setup {
    let pki = pki(tag);
    let host = KeyHost::start(&pki).await;
    host.serve(
        SNS_CERT_PATH,
        Doc::Ok(pki.signing_cert("sns.amazonaws.com", -1, 30), "max-age=600"),
    );
    host.serve(
        PAYPAL_CERT_PATH,
        Doc::Ok(
            pki.signing_cert("messageverificationcerts.paypal.com", -1, 400),
            "max-age=600",
        ),
    );
    let up = Upstream::start().await;
    let gw = Hookgate::start(&config(&pki, &host, &up.url(), extra), &[]).await;
    Setup { pki, host, up, gw }
}

fn sns_url() -> String {
    format!("https://{SNS_HOST}{SNS_CERT_PATH}")
}

async fn post_sns(gw: &Hookgate, m: &Value) -> Answer {
    post(
        &gw.url("/sns"),
        &[("content-type", "text/plain; charset=UTF-8")],
        m.to_string().as_bytes(),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn sns_notifications_verify_with_the_certificate_they_name_fetched_once() {
    let s = setup("sns-ok", "").await;
    let v1 = sns_notification(TOPIC, "{\"order\":1}", 2, &sns_url());
    let v2 = sns_notification(TOPIC, "line one\nline two", 2, &sns_url());
    for m in [&v1, &v2] {
        let a = post_sns(&s.gw, m).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let received = s.up.received();
    assert_eq!(received.len(), 2);
    // The exact bytes the sender sent.
    assert_eq!(received[0].body, v1.to_string().as_bytes());
    assert_eq!(received[1].body, v2.to_string().as_bytes());
    // One fetch for both, then from the cache.
    assert_eq!(s.host.requests(), 1);
    assert_eq!(
        s.gw.counter("hookgate_key_fetches_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        s.gw.counter("hookgate_key_lookups_total", &[("result", "fetched")]),
        1.0
    );
    assert_eq!(
        s.gw.counter("hookgate_key_lookups_total", &[("result", "hit")]),
        1.0
    );
    // The admin listener shows the certificate in hand.
    let keys = send("GET", &format!("http://{}/keys", s.gw.admin), &[], b"").await;
    let keys: Value = serde_json::from_str(&keys.body).unwrap();
    let held = &keys["keys"][0];
    assert_eq!(held["url"], sns_url());
    assert_eq!(held["certificate"]["names"][0], "sns.amazonaws.com");
    assert_eq!(held["certificate"]["sha256"].as_str().unwrap().len(), 95);
    assert!(held["kept_until"].as_u64().unwrap() >= held["fetched_at"].as_u64().unwrap() + 600);
    // And the age of what it holds, at each scrape.
    let scraped = send("GET", &format!("http://{}/metrics", s.gw.admin), &[], b"").await;
    let age = metric_value(&scraped.body, "hookgate_key_oldest_age_seconds", &[]);
    assert!((0.0..60.0).contains(&age), "{age}");
}

#[tokio::test]
async fn a_changed_sns_message_is_refused_and_not_forwarded() {
    let s = setup("sns-tampered", "").await;
    let mut m = sns_notification(TOPIC, "{\"amount\":1}", 2, &sns_url());
    m["Message"] = Value::from("{\"amount\":1000}");
    let a = post_sns(&s.gw, &m).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(s.gw.outcome("sns", "signature_mismatch"), 1.0);
    // A version-2 signature presented as version 1 does not verify either.
    let mut m = sns_notification(TOPIC, "x", 2, &sns_url());
    m["SignatureVersion"] = Value::from("1");
    assert_eq!(post_sns(&s.gw, &m).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.up.count(), 0);
}

#[tokio::test]
async fn another_accounts_topic_is_refused_before_anything_is_fetched() {
    let s = setup("sns-topic", "").await;
    let m = sns_notification(
        "arn:aws:sns:eu-west-1:999999999999:theirs",
        "x",
        2,
        &sns_url(),
    );
    let a = post_sns(&s.gw, &m).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert!(a.body.contains("TopicArn"), "{}", a.body);
    assert_eq!(s.gw.outcome("sns", "value_not_allowed"), 1.0);
    assert_eq!(
        s.host.requests(),
        0,
        "nothing fetched for a topic not listed"
    );
    assert_eq!(s.up.count(), 0);
}

#[tokio::test]
async fn requests_that_fail_without_the_key_cause_no_fetch() {
    let s = setup("sns-precheck", "").await;
    let with = |key: &str, value: Value| {
        let mut m = sns_notification(TOPIC, "x", 2, &sns_url());
        m[key] = value;
        m
    };
    for (m, outcome) in [
        (
            with("Timestamp", Value::from("2020-01-01T00:00:00.000Z")),
            "timestamp_stale",
        ),
        (
            with("Signature", Value::from("not base64!")),
            "signature_malformed",
        ),
        (
            with("SignatureVersion", Value::from("3")),
            "signature_malformed",
        ),
        (with("Type", Value::from("Other")), "signature_malformed"),
        (with("TopicArn", Value::Null), "signed_field_missing"),
    ] {
        let before = s.gw.outcome("sns", outcome);
        let a = post_sns(&s.gw, &m).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{outcome}: {}", a.body);
        assert_eq!(s.gw.outcome("sns", outcome), before + 1.0, "{}", a.body);
    }
    assert_eq!(
        s.host.requests(),
        0,
        "nothing fetched for requests that fail without a key"
    );
    assert_eq!(s.up.count(), 0);
}

#[tokio::test]
async fn a_storm_of_invented_urls_is_rate_limited_and_keeps_the_certificate_in_use() {
    let s = setup(
        "sns-storm",
        "  max_fetches_per_second: 3\n  max_entries: 4\n",
    )
    .await;
    let genuine = sns_notification(TOPIC, "x", 2, &sns_url());
    assert_eq!(post_sns(&s.gw, &genuine).await.status, StatusCode::OK);
    let started = std::time::Instant::now();
    let mut refused = 0;
    for n in 0..30 {
        let url = format!("https://{SNS_HOST}/SimpleNotificationService-invented{n}.pem");
        let a = post_sns(&s.gw, &sns_notification(TOPIC, "x", 2, &url)).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        refused += 1;
    }
    assert_eq!(refused, 30);
    // The budget: 3 at once, then 3 a second.
    let seconds = started.elapsed().as_secs_f64();
    let fetched = s.host.requests() - 1;
    assert!(
        (fetched as f64) <= 3.0 + 3.0 * seconds + 1.0,
        "{fetched} fetches in {seconds:.1} s"
    );
    // The certificate in use stayed in the cache through 30 URLs in 4 entries.
    let before = s.host.requests();
    let again = sns_notification(TOPIC, "y", 2, &sns_url());
    assert_eq!(post_sns(&s.gw, &again).await.status, StatusCode::OK);
    assert_eq!(s.host.requests(), before, "served from the cache");
    assert_eq!(s.up.count(), 2);
}

#[tokio::test]
async fn certificate_urls_off_the_pinned_hosts_are_never_fetched() {
    let s = setup("sns-ssrf", "").await;
    for url in [
        // Plain HTTP, another host, look-alikes, userinfo tricks, IP literals, ports, `..`.
        format!("http://{SNS_HOST}{SNS_CERT_PATH}"),
        format!("https://keys.internal.example{SNS_CERT_PATH}"),
        format!("https://{SNS_HOST}.evil.example{SNS_CERT_PATH}"),
        format!("https://evil.example@{SNS_HOST}{SNS_CERT_PATH}"),
        format!("https://{SNS_HOST}@keys.internal.example{SNS_CERT_PATH}"),
        format!("https://{SNS_HOST}:8443{SNS_CERT_PATH}"),
        "https://127.0.0.1/SimpleNotificationService-test.pem".into(),
        "https://[::1]/SimpleNotificationService-test.pem".into(),
        "https://169.254.169.254/latest/meta-data/".into(),
        "https://sns.xn--eu-wst-1-x.amazonaws.com/x.pem".into(),
        format!("https://{SNS_HOST}/a/../{SNS_CERT_PATH}"),
        format!("https://{SNS_HOST}/%2e%2e/x.pem"),
        "https://sns.amazonaws.com/x.pem".into(),
        // A pinned host's other pages, and an S3 bucket called `sns`.
        format!("https://{SNS_HOST}/?Action=ListTopics"),
        format!("https://{SNS_HOST}{SNS_CERT_PATH}?x=1"),
        format!("https://sns.s3.amazonaws.com{SNS_CERT_PATH}"),
    ] {
        let m = sns_notification(TOPIC, "x", 2, &url);
        let a = post_sns(&s.gw, &m).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{url}: {}", a.body);
        assert!(a.body.contains("key URL refused"), "{url}: {}", a.body);
    }
    assert_eq!(s.host.requests(), 0);
    assert_eq!(s.up.count(), 0);
}

#[tokio::test]
async fn a_certificate_for_another_name_expired_or_not_yet_valid_signs_nothing() {
    let s = setup("sns-cert", "").await;
    for (path, cert) in [
        (
            "/SimpleNotificationService-othername.pem",
            s.pki.signing_cert("sns.evil.example", -1, 30),
        ),
        (
            "/SimpleNotificationService-expired.pem",
            s.pki.signing_cert("sns.amazonaws.com", -30, -1),
        ),
        (
            "/SimpleNotificationService-future.pem",
            s.pki.signing_cert("sns.amazonaws.com", 2, 30),
        ),
    ] {
        s.host.serve(path, Doc::Ok(cert, "max-age=600"));
        let m = sns_notification(TOPIC, "x", 2, &format!("https://{SNS_HOST}{path}"));
        let a = post_sns(&s.gw, &m).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}: {}", a.body);
        assert!(a.body.contains("signing certificate"), "{path}: {}", a.body);
    }
    assert_eq!(s.gw.outcome("sns", "key_refused"), 3.0);
    assert_eq!(s.up.count(), 0);
}

#[tokio::test]
async fn key_host_down_is_503_with_retry_after_then_recovers() {
    let s = setup("sns-down", "").await;
    s.host.up.store(false, Ordering::SeqCst);
    let m = sns_notification(TOPIC, "x", 2, &sns_url());
    let a = post_sns(&s.gw, &m).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(a.headers.get("retry-after").unwrap(), "1");
    assert_eq!(s.gw.outcome("sns", "key_unavailable"), 1.0);
    // Within the backoff, another request does not knock on the host again.
    let fetches =
        s.gw.counter("hookgate_key_fetches_total", &[("result", "tls")])
            + s.gw
                .counter("hookgate_key_fetches_total", &[("result", "http")])
            + s.gw
                .counter("hookgate_key_fetches_total", &[("result", "connect")]);
    assert_eq!(fetches, 1.0);
    assert_eq!(
        post_sns(&s.gw, &m).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(s.up.count(), 0);
    // Back up: after the backoff the same (retried) message goes through.
    s.host.up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = post_sns(&s.gw, &m).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(s.up.count(), 1);
}

#[tokio::test]
async fn redirects_huge_and_silent_key_hosts_are_bounded_and_refused() {
    let s = setup("sns-bounded", "  timeout: 1s\n  max_document_bytes: 8192\n").await;
    s.host.serve(
        "/SimpleNotificationService-redirect.pem",
        Doc::Redirect("https://keys.internal.example/x.pem"),
    );
    s.host
        .serve("/SimpleNotificationService-huge.pem", Doc::Huge(1 << 20));
    s.host
        .serve("/SimpleNotificationService-silent.pem", Doc::Silent);
    for (path, result) in [
        ("/SimpleNotificationService-redirect.pem", "redirect"),
        ("/SimpleNotificationService-huge.pem", "too_large"),
        ("/SimpleNotificationService-silent.pem", "timeout"),
        ("/SimpleNotificationService-missing.pem", "status"),
    ] {
        let m = sns_notification(TOPIC, "x", 2, &format!("https://{SNS_HOST}{path}"));
        let started = std::time::Instant::now();
        let a = post_sns(&s.gw, &m).await;
        assert_eq!(
            a.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            a.body
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path} took {:?}",
            started.elapsed()
        );
        assert_eq!(
            s.gw.counter("hookgate_key_fetches_total", &[("result", result)]),
            1.0,
            "{path}"
        );
    }
    // The redirect was not followed: one request per path, none to its target.
    assert_eq!(s.host.requests(), 4);
    assert_eq!(s.up.count(), 0);
}

#[tokio::test]
async fn a_private_address_is_refused_unless_the_operator_allows_it() {
    let pki = pki("private");
    let host = KeyHost::start(&pki).await;
    host.serve(
        SNS_CERT_PATH,
        Doc::Ok(pki.signing_cert("sns.amazonaws.com", -1, 30), "max-age=60"),
    );
    let up = Upstream::start().await;
    let yaml = config(&pki, &host, &up.url(), "").replace(
        "allow_private_addresses: true",
        "allow_private_addresses: false",
    );
    let gw = Hookgate::start(&yaml, &[]).await;
    let m = sns_notification(TOPIC, "x", 2, &sns_url());
    let a = post_sns(&gw, &m).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(
        gw.counter(
            "hookgate_key_fetches_total",
            &[("result", "address_not_allowed")]
        ),
        1.0
    );
    assert_eq!(host.requests(), 0, "no connection to a loopback key host");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn paypal_deliveries_verify_for_this_webhook_only() {
    let s = setup("paypal", "").await;
    let url = format!("https://{PAYPAL_HOST}{PAYPAL_CERT_PATH}");
    let body = br#"{"id":"WH-1","event_type":"PAYMENT.CAPTURE.COMPLETED"}"#;
    let headers = paypal_headers(body, WEBHOOK_ID, &url);
    let a = post(&s.gw.url("/paypal"), &as_refs(&headers), body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(s.up.received()[0].body, &body[..]);
    // Signed for another webhook (another PayPal account's endpoint).
    let other = paypal_headers(body, "OTHERWEBHOOK", &url);
    let a = post(&s.gw.url("/paypal"), &as_refs(&other), body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    // Another body under the same headers.
    let a = post(
        &s.gw.url("/paypal"),
        &as_refs(&paypal_headers(body, WEBHOOK_ID, &url)),
        b"{}",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    // A certificate URL on another host, on the sandbox, or another page of the live host.
    for cert_url in [
        "https://keys.internal.example/cert".to_owned(),
        format!("https://api.sandbox.paypal.com{PAYPAL_CERT_PATH}"),
        "https://api.paypal.com/v1/oauth2/token".to_owned(),
    ] {
        let evil = paypal_headers(body, WEBHOOK_ID, &cert_url);
        let a = post(&s.gw.url("/paypal"), &as_refs(&evil), body).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{cert_url}: {}", a.body);
    }
    // A sandbox certificate served under the live host's certificate path signs nothing.
    s.host.serve(
        "/v1/notifications/certs/CERT-sandbox",
        Doc::Ok(
            s.pki
                .signing_cert("messageverificationcerts.sandbox.paypal.com", -1, 30),
            "max-age=600",
        ),
    );
    let sandbox = paypal_headers(
        body,
        WEBHOOK_ID,
        &format!("https://{PAYPAL_HOST}/v1/notifications/certs/CERT-sandbox"),
    );
    let a = post(&s.gw.url("/paypal"), &as_refs(&sandbox), body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(s.up.count(), 1);
    assert_eq!(s.host.requests(), 2);
}

// The real vectors, at their own time (their certificates have long expired).

static SNS_NOW: AtomicU64 = AtomicU64::new(0);

fn sns_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(SNS_NOW.load(Ordering::SeqCst))
}

static PAYPAL_NOW: AtomicU64 = AtomicU64::new(0);

fn paypal_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(PAYPAL_NOW.load(Ordering::SeqCst))
}

fn unix_of(rfc3339: &str) -> u64 {
    humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z'))
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `https://host/path` into (host, path).
fn host_and_path(url: &str) -> (String, String) {
    let rest = url.strip_prefix("https://").unwrap();
    let i = rest.find('/').unwrap();
    (rest[..i].to_owned(), rest[i..].to_owned())
}

/// What the tests of AWS's real messages (`tests/vectors/sns.json`) share: the messages,
/// the key host serving their real certificate at its own path, an app, and the messages'
/// topics for a route's `/TopicArn` list.
struct RealSns {
    pki: Pki,
    host: KeyHost,
    up: Upstream,
    cases: Vec<Value>,
    topics: Vec<String>,
}

async fn real_sns(tag: &str) -> RealSns {
    let v: Value = serde_json::from_str(include_str!("../vectors/sns.json")).unwrap();
    let cert = v["certificate"].as_str().unwrap().as_bytes().to_vec();
    let cases = v["cases"].as_array().unwrap().clone();
    let pki = pki(tag);
    let host = KeyHost::start(&pki).await;
    let up = Upstream::start().await;
    let url = cases[0]["message"]["SigningCertURL"].as_str().unwrap();
    let (_, path) = host_and_path(url);
    host.serve(&path, Doc::Ok(cert, "max-age=600"));
    let topics = cases
        .iter()
        .map(|c| c["message"]["TopicArn"].as_str().unwrap().to_owned())
        .collect();
    RealSns {
        pki,
        host,
        up,
        cases,
        topics,
    }
}

#[tokio::test]
async fn real_sns_messages_verify_through_the_gateway() {
    let RealSns {
        pki,
        host,
        up,
        cases,
        topics,
    } = real_sns("sns-real").await;
    let first = &cases[0]["message"];
    let yaml = config(&pki, &host, &up.url(), "").replace(TOPIC, &topics.join(", "));
    SNS_NOW.store(
        unix_of(first["Timestamp"].as_str().unwrap()),
        Ordering::SeqCst,
    );
    let gw = Hookgate::start_with_clock(&yaml, &[], sns_clock).await;
    for (i, case) in cases.iter().enumerate() {
        let m = &case["message"];
        SNS_NOW.store(
            unix_of(m["Timestamp"].as_str().unwrap()) + 1,
            Ordering::SeqCst,
        );
        let body = serde_json::to_vec(m).unwrap();
        let a = post(
            &gw.url("/sns"),
            &[("content-type", "text/plain; charset=UTF-8")],
            &body,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "case {i}: {}", a.body);
        assert_eq!(up.received()[i].body, body);
    }
    // And one changed byte is refused.
    let mut m = cases[0]["message"].clone();
    m["Message"] = Value::from("Hello world?");
    let a = post(
        &gw.url("/sns"),
        &[("content-type", "text/plain")],
        &serde_json::to_vec(&m).unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(up.count(), cases.len());
    // The two pairs of messages are 90 minutes apart, past the certificate's 10 minutes.
    assert_eq!(host.requests(), 2);
}

/// SHA-1 signatures (SNS signature version 1, the topic's default) can be refused by a
/// route whose topics sign with version 2: `json_allowed` pins `/SignatureVersion`, checked
/// before any fetch.
#[tokio::test]
async fn a_route_can_refuse_sns_signature_version_1() {
    let RealSns {
        pki,
        host,
        up,
        cases,
        topics,
    } = real_sns("sns-v2-only").await;
    let yaml = config(&pki, &host, &up.url(), "").replace(
        &format!("        /TopicArn: [{TOPIC}]\n"),
        &format!(
            "        /TopicArn: [{}]\n        /SignatureVersion: [\"2\"]\n",
            topics.join(", ")
        ),
    );
    let gw = Hookgate::start_with_clock(&yaml, &[], sns_v2_clock).await;
    let (mut v1, mut v2) = (0, 0);
    for case in cases {
        let m = &case["message"];
        SNS_V2_NOW.store(
            unix_of(m["Timestamp"].as_str().unwrap()) + 1,
            Ordering::SeqCst,
        );
        let body = serde_json::to_vec(m).unwrap();
        let a = post(&gw.url("/sns"), &[("content-type", "text/plain")], &body).await;
        if m["SignatureVersion"] == "1" {
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
            v1 += 1;
        } else {
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            v2 += 1;
        }
    }
    assert_eq!((v1, v2), (2, 2));
    assert_eq!(gw.outcome("sns", "value_not_allowed"), 2.0);
    assert_eq!(up.count(), 2);
    // The refused messages fetched nothing: one fetch per pair's time (90 minutes apart).
    assert_eq!(host.requests(), 2);
}

static SNS_V2_NOW: AtomicU64 = AtomicU64::new(0);

fn sns_v2_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(SNS_V2_NOW.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_real_paypal_delivery_verifies_through_the_gateway() {
    let v: Value = serde_json::from_str(include_str!("../vectors/paypal.json")).unwrap();
    let case = &v["cases"][0];
    let headers: Vec<(String, String)> = case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).unwrap().1.clone();
    let pki = pki("paypal-real");
    let host = KeyHost::start(&pki).await;
    let up = Upstream::start().await;
    let (_, path) = host_and_path(&header("paypal-cert-url"));
    host.serve(
        &path,
        Doc::Ok(
            v["certificate"].as_str().unwrap().as_bytes().to_vec(),
            "max-age=600",
        ),
    );
    let yaml = config(&pki, &host, &up.url(), "")
        .replace(WEBHOOK_ID, case["webhook_id"].as_str().unwrap())
        .replace("preset: paypal\n", "preset: paypal-sandbox\n");
    PAYPAL_NOW.store(
        unix_of(&header("paypal-transmission-time")) + 5,
        Ordering::SeqCst,
    );
    let gw = Hookgate::start_with_clock(&yaml, &[], paypal_clock).await;
    let body = case["body"].as_str().unwrap().as_bytes();
    let a = post(&gw.url("/paypal"), &as_refs(&headers), body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(up.received()[0].body, body);
    // The CRC-32 is signed: another body is refused (unless it has the same CRC, which is
    // why PayPal's body counts as unsigned).
    let a = post(
        &gw.url("/paypal"),
        &as_refs(&headers),
        b"{\"id\":\"WH-other\"}",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(up.count(), 1);
}

static LIVE_NOW: AtomicU64 = AtomicU64::new(0);

fn live_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(LIVE_NOW.load(Ordering::SeqCst))
}

#[tokio::test]
async fn the_computed_paypal_vector_verifies_on_the_live_preset() {
    let v: Value = serde_json::from_str(include_str!("../vectors/paypal.json")).unwrap();
    let case = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["preset"] == "paypal")
        .unwrap();
    let headers: Vec<(String, String)> = case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_owned()))
        .collect();
    let pki = pki("paypal-live");
    let host = KeyHost::start(&pki).await;
    let cert_url = case["headers"]["PAYPAL-CERT-URL"].as_str().unwrap();
    let (_, path) = host_and_path(cert_url);
    host.serve(
        &path,
        Doc::Ok(
            pki.signing_cert("messageverificationcerts.paypal.com", -1, 400),
            "max-age=600",
        ),
    );
    let up = Upstream::start().await;
    let yaml = config(&pki, &host, &up.url(), "")
        .replace(WEBHOOK_ID, case["webhook_id"].as_str().unwrap());
    LIVE_NOW.store(case["now_unix"].as_u64().unwrap(), Ordering::SeqCst);
    let gw = Hookgate::start_with_clock(&yaml, &[], live_clock).await;
    let body = case["body"].as_str().unwrap().as_bytes();
    let a = post(&gw.url("/paypal"), &as_refs(&headers), body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(up.received()[0].body, body);
}

// Google Pub/Sub push: an OIDC token checked against the issuer's JWKS, fetched from the
// route's own URL.

// Each test that moves its clock has a clock of its own (tests run side by side).
static PUBSUB_NOW: AtomicU64 = AtomicU64::new(0);

fn pubsub_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(PUBSUB_NOW.load(Ordering::SeqCst))
}

static KID_NOW: AtomicU64 = AtomicU64::new(0);

fn kid_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(KID_NOW.load(Ordering::SeqCst))
}

static OIDC_NOW: AtomicU64 = AtomicU64::new(0);

fn oidc_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(OIDC_NOW.load(Ordering::SeqCst))
}

/// A gateway with a `google-pubsub` route for `tests/vectors/pubsub.json`'s audience and
/// service account, its clock at the vectors' time, and the key host serving `jwks`.
async fn pubsub_setup(
    tag: &str,
    jwks: Vec<u8>,
    (now, clock): (&AtomicU64, fn() -> SystemTime),
) -> (Value, Setup) {
    let v: Value = serde_json::from_str(include_str!("../vectors/pubsub.json")).unwrap();
    let pki = pki(tag);
    let host = KeyHost::start(&pki).await;
    host.serve("/oauth2/v3/certs", Doc::Ok(jwks, "public, max-age=3600"));
    let up = Upstream::start().await;
    let yaml = config(&pki, &host, &up.url(), "").replace(
        "  - name: sns\n",
        &format!(
            "  - name: pubsub\n    path: /pubsub\n    upstream: {}\n    verify:\n      preset: google-pubsub\n      jwt:\n        audience: {}\n        claims: {{ email: {} }}\n  - name: sns\n",
            up.url(),
            v["audience"].as_str().unwrap(),
            v["email"].as_str().unwrap()
        ),
    );
    now.store(
        v["cases"][0]["now_unix"].as_u64().unwrap(),
        Ordering::SeqCst,
    );
    let gw = Hookgate::start_with_clock(&yaml, &[], clock).await;
    (v, Setup { pki, host, up, gw })
}

async fn post_case(gw: &Hookgate, case: &Value) -> Answer {
    let headers: Vec<(String, String)> = case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    post(
        &gw.url("/pubsub"),
        &as_refs(&headers),
        case["body"].as_str().unwrap().as_bytes(),
    )
    .await
}

#[tokio::test]
async fn pubsub_tokens_verify_with_the_issuers_jwks() {
    let v: Value = serde_json::from_str(include_str!("../vectors/pubsub.json")).unwrap();
    let jwks = serde_json::to_vec(&v["jwks"]).unwrap();
    let (v, s) = pubsub_setup("pubsub", jwks, (&PUBSUB_NOW, pubsub_clock)).await;
    let mut accepted = 0;
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let a = post_case(&s.gw, case).await;
        if case["expect"] == "accept" {
            accepted += 1;
            assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.body);
            assert_eq!(
                s.up.received().last().unwrap().body,
                case["body"].as_str().unwrap().as_bytes(),
                "{name}"
            );
        } else {
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{name}: {}", a.body);
        }
    }
    assert_eq!(s.up.count(), accepted);
    // One fetch for all: jku and x5u were not followed, and the forged kid found the set
    // fetched moments ago.
    assert_eq!(s.host.requests(), 1);
    // The admin listener shows the key set's ids.
    let keys = send("GET", &format!("http://{}/keys", s.gw.admin), &[], b"").await;
    let keys: Value = serde_json::from_str(&keys.body).unwrap();
    assert_eq!(
        keys["keys"][0]["kids"],
        json!(["unrelated-kid", "test-kid-1"])
    );
}

#[tokio::test]
async fn forged_kids_cause_at_most_one_fetch_per_interval() {
    let v: Value = serde_json::from_str(include_str!("../vectors/pubsub.json")).unwrap();
    let jwks = serde_json::to_vec(&v["jwks"]).unwrap();
    let (v, s) = pubsub_setup("pubsub-kid", jwks, (&KID_NOW, kid_clock)).await;
    let cases = v["cases"].as_array().unwrap();
    let forged = cases
        .iter()
        .find(|c| c["name"] == "a_kid_the_issuer_does_not_have")
        .unwrap();
    let genuine = &cases[0];
    assert_eq!(post_case(&s.gw, genuine).await.status, StatusCode::OK);
    for _ in 0..50 {
        let a = post_case(&s.gw, forged).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        assert!(a.body.contains("kid"), "{}", a.body);
    }
    assert_eq!(s.host.requests(), 1, "no fetch within the interval");
    // Past the interval (30 s), a forged kid may fetch once more, in case the issuer has
    // just added a key; a storm of them, still once.
    KID_NOW.fetch_add(31, Ordering::SeqCst);
    for _ in 0..50 {
        assert_eq!(
            post_case(&s.gw, forged).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(s.host.requests(), 2);
    assert_eq!(s.up.count(), 1);
}

#[tokio::test]
async fn a_jwks_with_thousands_of_keys_is_refused_whole() {
    // Small entries, so that the document is within max_document_bytes and it is the count
    // that refuses it.
    let keys: Vec<Value> = (0..1000)
        .map(|i| json!({ "kty": "oct", "kid": format!("k{i}"), "k": "AA" }))
        .collect();
    let jwks = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
    let (v, s) = pubsub_setup("pubsub-huge", jwks, (&PUBSUB_NOW, pubsub_clock)).await;
    let a = post_case(&s.gw, &v["cases"][0]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(s.gw.outcome("pubsub", "key_unavailable"), 1.0);
    assert_eq!(
        s.gw.counter("hookgate_key_fetches_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(s.up.count(), 0);
}

/// A `SubscriptionConfirmation` for `topic`, signed as SNS signs it, whose `SubscribeURL` is
/// `subscribe`.
fn sns_confirmation(topic: &str, subscribe: &str) -> Value {
    let mut m = json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": format!("c-{}", rand_id()),
        "Token": "2336412f37fb687f5d51e6e2425c464de12884e8",
        "TopicArn": topic,
        "Message": format!("You have chosen to subscribe to the topic {topic}."),
        "SubscribeURL": subscribe,
        "Timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "SignatureVersion": "2",
        "SigningCertURL": sns_url(),
    });
    sns_sign(&mut m);
    m
}

#[tokio::test]
async fn the_gateway_confirms_an_sns_subscription_when_the_route_says_so() {
    let s = setup("sns-subscribe", "").await;
    let confirm = format!("/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f");
    let subscribe = format!("https://{SNS_HOST}{confirm}");
    s.host.serve(
        &confirm,
        Doc::Ok(b"<ConfirmSubscriptionResponse/>".to_vec(), "no-store"),
    );
    // Without `handshake:`, the confirmation is an event like any other: the app gets it.
    let m = sns_confirmation(TOPIC, &subscribe);
    let a = post_sns(&s.gw, &m).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(s.up.count(), 1);
    assert_eq!(s.host.requests(), 1, "the certificate only");
    // With it, the gateway confirms: a GET of the SubscribeURL, nothing to the app.
    let yaml = config(&s.pki, &s.host, &s.up.url(), "").replace(
        "    verify:\n      preset: aws-sns\n",
        "    handshake: { kind: sns-subscription }\n    verify:\n      preset: aws-sns\n",
    );
    let gw = Hookgate::start(&yaml, &[]).await;
    let confirmation = sns_confirmation(TOPIC, &subscribe);
    let a = post_sns(&gw, &confirmation).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, "subscription confirmed\n");
    assert_eq!(gw.outcome("sns", "handshake"), 1.0);
    assert_eq!(s.up.count(), 1, "the app got nothing more");
    assert_eq!(
        s.host.requests(),
        3,
        "a certificate fetch and the confirmation"
    );
    // The same confirmation again (SNS's retry, or a captured one): confirmed already, no
    // second call to SNS.
    let a = post_sns(&gw, &confirmation).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(s.host.requests(), 3);
    // A SubscribeURL that is not a confirmation on the SNS host is not called.
    for other in [
        format!("https://{SNS_HOST}/?Action=Unsubscribe&SubscriptionArn=x"),
        "https://keys.internal.example/?Action=ConfirmSubscription&Token=1".to_owned(),
    ] {
        let a = post_sns(&gw, &sns_confirmation(TOPIC, &other)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{other}: {}", a.body);
    }
    // Another account's topic is refused before anything.
    let theirs = "arn:aws:sns:eu-west-1:999999999999:theirs";
    let a = post_sns(&gw, &sns_confirmation(theirs, &subscribe)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    // SNS down for another confirmation: 503, and SNS sends it again.
    s.host.up.store(false, Ordering::SeqCst);
    let another =
        format!("https://{SNS_HOST}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=9");
    let a = post_sns(&gw, &sns_confirmation(TOPIC, &another)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(gw.outcome("sns", "handshake_unavailable"), 1.0);
    assert_eq!(s.up.count(), 1);
}

// Plaid: a key asked for by its id, with the route's credentials.

static PLAID_NOW: AtomicU64 = AtomicU64::new(0);

static EXPIRED_NOW: AtomicU64 = AtomicU64::new(0);

fn expired_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(EXPIRED_NOW.load(Ordering::SeqCst))
}

fn plaid_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(PLAID_NOW.load(Ordering::SeqCst))
}

const PLAID_API: &str = "/webhook_verification_key/get";

/// A gateway with a `plaid` route whose credentials come from the environment, the key
/// host answering the key API with `answer`.
async fn plaid_setup(tag: &str, answer: &Value, clock: fn() -> SystemTime) -> Setup {
    let pki = pki(tag);
    let host = KeyHost::start(&pki).await;
    host.serve(
        PLAID_API,
        Doc::Ok(serde_json::to_vec(answer).unwrap(), "max-age=3600"),
    );
    let up = Upstream::start().await;
    let yaml = config(&pki, &host, &up.url(), "").replace(
        "  - name: sns\n",
        &format!(
            "  - name: plaid\n    path: /plaid\n    upstream: {}\n    verify:\n      preset: plaid\n      key_url:\n        post: {{ client_id: \"${{PLAID_CLIENT_ID}}\", secret: \"${{PLAID_SECRET}}\" }}\n  - name: sns\n",
            up.url()
        ),
    );
    let env = [
        ("PLAID_CLIENT_ID", "client-123"),
        ("PLAID_SECRET", "plaid-secret-456"),
    ];
    let gw = Hookgate::start_with_clock(&yaml, &env, clock).await;
    Setup { pki, host, up, gw }
}

async fn post_plaid(gw: &Hookgate, case: &Value) -> Answer {
    let token = case["headers"]["plaid-verification"].as_str().unwrap();
    post(
        &gw.url("/plaid"),
        &[
            ("plaid-verification", token),
            ("content-type", "application/json"),
        ],
        case["body"].as_str().unwrap().as_bytes(),
    )
    .await
}

#[tokio::test]
async fn plaid_keys_are_asked_for_by_id_with_the_routes_credentials() {
    let v: Value = serde_json::from_str(include_str!("../vectors/plaid.json")).unwrap();
    let cases = v["cases"].as_array().unwrap();
    PLAID_NOW.store(cases[0]["now_unix"].as_u64().unwrap(), Ordering::SeqCst);
    let s = plaid_setup("plaid", &v["key_answer"], plaid_clock).await;
    let case = |name: &str| cases.iter().find(|c| c["name"] == name).unwrap();
    let a = post_plaid(&s.gw, case("genuine")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        s.up.received()[0].body,
        case("genuine")["body"].as_str().unwrap().as_bytes()
    );
    // The key was asked for by its id, with the route's credentials.
    let asked: Value = serde_json::from_slice(&s.host.last_body.lock().unwrap()).unwrap();
    assert_eq!(
        asked,
        json!({
            "client_id": "client-123",
            "secret": "plaid-secret-456",
            "key_id": v["key_answer"]["key"]["kid"],
        })
    );
    for name in [
        "another_body",
        "iat_too_old",
        "signed_by_another_key_under_the_kid",
    ] {
        let a = post_plaid(&s.gw, case(name)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{name}: {}", a.body);
    }
    assert_eq!(s.host.requests(), 1, "one key, asked for once");
    // A key id not asked for before: one call to the API (Plaid may have a new key)...
    PLAID_NOW.fetch_add(31, Ordering::SeqCst);
    let a = post_plaid(&s.gw, case("a_kid_plaid_does_not_have")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(s.host.requests(), 2);
    // ... and another new id within 30 s makes no call: 503, asked to come back.
    let mut other = case("a_kid_plaid_does_not_have").clone();
    let token = other["headers"]["plaid-verification"]
        .as_str()
        .unwrap()
        .to_owned();
    let header = json!({"alg": "ES256", "kid": "another-forged-kid", "typ": "JWT"});
    let forged = format!(
        "{}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string()),
        token.split_once('.').unwrap().1
    );
    other["headers"]["plaid-verification"] = Value::from(forged);
    let a = post_plaid(&s.gw, &other).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(a.headers.get("retry-after").is_some());
    assert_eq!(s.host.requests(), 2);
    assert_eq!(s.up.count(), 1);
    // Refused key ids leave nothing behind: the cache holds the one real key alone.
    let keys = send("GET", &format!("http://{}/keys", s.gw.admin), &[], b"").await;
    let keys: Value = serde_json::from_str(&keys.body).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
    assert!(
        !keys.to_string().contains("plaid-secret-456"),
        "credentials never shown"
    );
}

#[tokio::test]
async fn a_plaid_key_marked_expired_verifies_nothing() {
    let v: Value = serde_json::from_str(include_str!("../vectors/plaid.json")).unwrap();
    let genuine = &v["cases"][0];
    EXPIRED_NOW.store(genuine["now_unix"].as_u64().unwrap(), Ordering::SeqCst);
    let s = plaid_setup("plaid-expired", &v["expired_key_answer"], expired_clock).await;
    let a = post_plaid(&s.gw, genuine).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(s.gw.outcome("plaid", "key_refused"), 1.0);
    assert_eq!(s.up.count(), 0);
}

// OIDC discovery: the JWKS an issuer's discovery document names.

#[tokio::test]
async fn an_issuers_jwks_is_found_through_its_discovery_document() {
    let v: Value = serde_json::from_str(include_str!("../vectors/pubsub.json")).unwrap();
    let pki = pki("discovery");
    let host = KeyHost::start(&pki).await;
    let jwks = serde_json::to_vec(&v["jwks"]).unwrap();
    host.serve("/oauth2/v3/certs", Doc::Ok(jwks, "max-age=3600"));
    let discovery = |issuer: &str, jwks_uri: &str| {
        Doc::Ok(
            json!({ "issuer": issuer, "jwks_uri": jwks_uri })
                .to_string()
                .into_bytes(),
            "max-age=3600",
        )
    };
    let google = "https://accounts.google.com";
    host.serve(
        "/.well-known/openid-configuration",
        discovery(google, "https://www.googleapis.com/oauth2/v3/certs"),
    );
    host.serve(
        "/elsewhere/.well-known/openid-configuration",
        discovery(google, "https://keys.internal.example/oauth2/v3/certs"),
    );
    host.serve(
        "/other-issuer/.well-known/openid-configuration",
        discovery(
            "https://evil.example",
            "https://www.googleapis.com/oauth2/v3/certs",
        ),
    );
    let up = Upstream::start().await;
    let route = |name: &str, path: &str| {
        format!(
            "  - name: {name}\n    path: /{name}\n    upstream: {}\n    verify:\n      algorithm: jwt\n      signature: {{ header: authorization, prefix: \"Bearer \" }}\n      jwt: {{ algorithms: [RS256], issuer: \"{google}\", audience: \"{}\", claims: {{ email: {} }} }}\n      body_signed: false\n      key_url:\n        discovery: https://accounts.google.com{path}/.well-known/openid-configuration\n        hosts: [accounts.google.com, www.googleapis.com]\n",
            up.url(),
            v["audience"].as_str().unwrap(),
            v["email"].as_str().unwrap()
        )
    };
    let routes =
        route("oidc", "") + &route("elsewhere", "/elsewhere") + &route("other", "/other-issuer");
    let yaml = config(&pki, &host, &up.url(), "")
        .replace("  - name: sns\n", &format!("{routes}  - name: sns\n"));
    OIDC_NOW.store(
        v["cases"][0]["now_unix"].as_u64().unwrap(),
        Ordering::SeqCst,
    );
    let gw = Hookgate::start_with_clock(&yaml, &[], oidc_clock).await;
    let genuine = &v["cases"][0];
    let send = |path: &'static str| {
        let token = genuine["headers"]["authorization"]
            .as_str()
            .unwrap()
            .to_owned();
        let body = genuine["body"].as_str().unwrap().as_bytes().to_vec();
        let url = gw.url(path);
        async move { post(&url, &[("authorization", &token)], &body).await }
    };
    let a = send("/oidc").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(host.requests(), 2, "the discovery document, then the JWKS");
    assert_eq!(send("/oidc").await.status, StatusCode::OK);
    assert_eq!(host.requests(), 2, "both kept");
    // A jwks_uri off the pinned hosts is not fetched; nor is another issuer's document used.
    for path in ["/elsewhere", "/other"] {
        let a = send(path).await;
        assert_eq!(
            a.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            a.body
        );
    }
    assert_eq!(host.requests(), 4, "the two documents only");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn a_key_host_whose_tls_certificate_another_ca_issued_is_not_believed() {
    // The gateway trusts `pki`'s CA; the key host presents a certificate from another one.
    let trusted = pki("tls-trusted");
    let other = pki("tls-other");
    let host = KeyHost::start(&other).await;
    host.serve(
        SNS_CERT_PATH,
        Doc::Ok(
            other.signing_cert("sns.amazonaws.com", -1, 30),
            "max-age=600",
        ),
    );
    let up = Upstream::start().await;
    let gw = Hookgate::start(&config(&trusted, &host, &up.url(), ""), &[]).await;
    let a = post_sns(&gw, &sns_notification(TOPIC, "x", 2, &sns_url())).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(
        gw.counter("hookgate_key_fetches_total", &[("result", "tls")]),
        1.0
    );
    assert_eq!(
        host.requests(),
        0,
        "no request made over a TLS session not verified"
    );
    assert_eq!(up.count(), 0);
}

// eBay: ECDSA P-256 with SHA-1, its key asked of a key API by path with an OAuth token.

static EBAY_NOW: AtomicU64 = AtomicU64::new(1_700_000_000);

fn ebay_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(EBAY_NOW.load(Ordering::SeqCst))
}

/// The forged-kid test's own clock: it moves it.
static FORGED_NOW: AtomicU64 = AtomicU64::new(1_700_000_000);

fn forged_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(FORGED_NOW.load(Ordering::SeqCst))
}

const EBAY_TOKEN_PATH: &str = "/identity/v1/oauth2/token";
const EBAY_KEY_PATH: &str = "/commerce/notification/v1/public_key/";
const EBAY_ENDPOINT: &str = "https://hooks.example.com/ebay";
const EBAY_VERIFICATION_TOKEN: &str = "hookgate_ebay-verification-token_0123456789";

/// A gateway with an `ebay` route (credentials from the environment), the key host serving
/// eBay's token endpoint and its key API for the SDK vector's kid.
async fn ebay_setup(tag: &str, v: &Value, clock: fn() -> SystemTime) -> Setup {
    let pki = pki(tag);
    let host = KeyHost::start(&pki).await;
    let token = json!({
        "access_token": "v^1.1#i^1#test-application-token",
        "expires_in": 7200,
        "token_type": "Application Access Token",
    });
    host.serve(
        EBAY_TOKEN_PATH,
        Doc::Ok(token.to_string().into_bytes(), "no-store"),
    );
    host.serve(
        &format!("{EBAY_KEY_PATH}{}", v["kid"].as_str().unwrap()),
        Doc::Ok(v["key_answer"].to_string().into_bytes(), "max-age=3600"),
    );
    let up = Upstream::start().await;
    let yaml = config(&pki, &host, &up.url(), "").replace(
        "  - name: sns\n",
        &format!(
            "  - name: ebay\n    path: /ebay\n    upstream: {}\n    verify:\n      preset: ebay\n      key_url:\n        token: {{ client_id: \"${{EBAY_CLIENT_ID}}\", client_secret: \"${{EBAY_CLIENT_SECRET}}\" }}\n    handshake: {{ verify_token: \"${{EBAY_VERIFICATION_TOKEN}}\", endpoint: \"{EBAY_ENDPOINT}\" }}\n  - name: sns\n",
            up.url()
        ),
    );
    let env = [
        ("EBAY_CLIENT_ID", "hookgate-app-PRD-1234"),
        ("EBAY_CLIENT_SECRET", "PRD-ebay-secret-5678"),
        ("EBAY_VERIFICATION_TOKEN", EBAY_VERIFICATION_TOKEN),
    ];
    let gw = Hookgate::start_with_clock(&yaml, &env, clock).await;
    Setup { pki, host, up, gw }
}

async fn post_ebay(gw: &Hookgate, signature: &str, body: &str) -> Answer {
    post(
        &gw.url("/ebay"),
        &[
            ("x-ebay-signature", signature),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await
}

#[tokio::test]
async fn a_real_ebay_notification_verifies_through_the_gateway() {
    let v: Value = serde_json::from_str(include_str!("../vectors/ebay.json")).unwrap();
    let s = ebay_setup("ebay", &v, ebay_clock).await;
    let case = |name: &str| {
        let c = v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"].as_str().unwrap().starts_with(name))
            .unwrap();
        (c["signature"].as_str().unwrap(), c)
    };
    let (sig, valid) = case("VALID");
    let body = valid["body"].as_str().unwrap();
    let a = post_ebay(&s.gw, sig, body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(s.up.received()[0].body, body.as_bytes());
    // The same notification with whitespace verifies by its compact form, and the app gets
    // the bytes as they came.
    let pretty = valid["pretty"].as_str().unwrap();
    let a = post_ebay(&s.gw, sig, pretty).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(s.up.received()[1].body, pretty.as_bytes());
    // A token first (the client's id and secret, HTTP Basic), then the key by its id with it.
    let heads = s.host.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "one token, one key: {heads:?}");
    assert!(heads[0].starts_with(&format!("POST {EBAY_TOKEN_PATH} ")));
    let basic = B64.encode("hookgate-app-PRD-1234:PRD-ebay-secret-5678");
    assert!(heads[0]
        .to_lowercase()
        .contains(&format!("authorization: basic {}", basic.to_lowercase())));
    assert!(heads[1].starts_with(&format!(
        "GET {EBAY_KEY_PATH}{} ",
        v["kid"].as_str().unwrap()
    )));
    assert!(heads[1].contains("v^1.1#i^1#test-application-token"));
    assert!(heads[1].to_lowercase().contains("authorization: bearer "));
    // eBay's endpoint check: answered by the gateway, with no fetch and nothing forwarded.
    let code = "71745723-d031-455c-bfa5-f90d11b4f20a";
    let a = send(
        "GET",
        &s.gw.url(&format!("/ebay?challenge_code={code}")),
        &[],
        b"",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    use sha2::Digest as _;
    let expected = hex::encode(sha2::Sha256::digest(format!(
        "{code}{EBAY_VERIFICATION_TOKEN}{EBAY_ENDPOINT}"
    )));
    assert_eq!(
        serde_json::from_str::<Value>(&a.body).unwrap(),
        json!({ "challengeResponse": expected })
    );
    // eBay's other SDK cases: refused, nothing forwarded, nothing fetched.
    for name in ["SIGNATURE_MISMATCH", "INVALID"] {
        let (sig, c) = case(name);
        let a = post_ebay(&s.gw, sig, c["body"].as_str().unwrap()).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{name}: {}", a.body);
    }
    // A tampered body, and an envelope claiming another algorithm.
    let tampered = body.replace("test_user", "test_usr");
    let a = post_ebay(&s.gw, sig, &tampered).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    let mut envelope: Value = serde_json::from_slice(&B64.decode(sig).unwrap()).unwrap();
    envelope["digest"] = json!("SHA256");
    let a = post_ebay(&s.gw, &B64.encode(envelope.to_string()), body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(s.gw.outcome("ebay", "signature_mismatch"), 3.0);
    assert_eq!(s.up.count(), 2);
    assert_eq!(s.host.requests(), 2, "refusals fetched nothing");
    // Neither the token nor the secret is shown.
    let keys = send("GET", &format!("http://{}/keys", s.gw.admin), &[], b"").await;
    let listed: Value = serde_json::from_str(&keys.body).unwrap();
    let key = &listed["keys"][0];
    assert!(key["url"]
        .as_str()
        .unwrap()
        .ends_with(v["kid"].as_str().unwrap()));
    assert_eq!(
        key["public_key"]["sha256"].as_str().unwrap().len(),
        64,
        "{key}"
    );
    assert_eq!(key["age_seconds"], 0, "by the gateway's clock");
    for secret in ["PRD-ebay-secret-5678", "test-application-token"] {
        assert!(!keys.body.contains(secret), "{}", keys.body);
    }
}

#[tokio::test]
async fn forged_ebay_key_ids_cost_one_call_per_interval_and_a_refused_token_is_renewed() {
    let v: Value = serde_json::from_str(include_str!("../vectors/ebay.json")).unwrap();
    let s = ebay_setup("ebay-forged", &v, forged_clock).await;
    let (sig, body) = (
        v["cases"][0]["signature"].as_str().unwrap(),
        v["cases"][0]["body"].as_str().unwrap(),
    );
    let with_kid = |kid: &str| {
        let mut envelope: Value = serde_json::from_slice(&B64.decode(sig).unwrap()).unwrap();
        envelope["kid"] = json!(kid);
        B64.encode(envelope.to_string())
    };
    // A kid eBay does not have (its API answers 404): one call, and no key.
    let a = post_ebay(&s.gw, &with_kid("forged-1"), body).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(s.host.requests(), 2, "a token and the one key asked");
    // More forged kids within the interval: no call at all.
    for i in 2..6 {
        let a = post_ebay(&s.gw, &with_kid(&format!("forged-{i}")), body).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        assert!(a.headers.get("retry-after").is_some());
    }
    // A kid that is not one path segment is refused before any call.
    let a = post_ebay(&s.gw, &with_kid("../../identity/v1/oauth2/token"), body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(s.host.requests(), 2);
    assert_eq!(s.up.count(), 0);
    // The key API refuses the token (revoked): the next call gets a new token first.
    let key_path = format!("{EBAY_KEY_PATH}{}", v["kid"].as_str().unwrap());
    let key = v["key_answer"].to_string().into_bytes();
    s.host.serve(&key_path, Doc::Status(401));
    FORGED_NOW.fetch_add(31, Ordering::SeqCst);
    let a = post_ebay(&s.gw, sig, body).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(s.host.requests(), 3, "the held token was sent");
    s.host.serve(&key_path, Doc::Ok(key, "max-age=3600"));
    FORGED_NOW.fetch_add(31, Ordering::SeqCst);
    let a = post_ebay(&s.gw, sig, body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let heads = s.host.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 5, "{heads:?}");
    assert!(heads[3].starts_with(&format!("POST {EBAY_TOKEN_PATH} ")));
    assert_eq!(s.up.count(), 1);
}

// Signing certificates' chains (PayPal's SDKs check its certificate's chain).

/// A CA for the chain tests: an intermediate the test CA issues, or a rogue root of its own.
fn chain_ca(issuer: Option<&Pki>) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = match issuer {
        Some(pki) => params.signed_by(&key, &pki.ca, &pki.ca_key).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    (cert, key)
}

/// PayPal's signing certificate for the test RSA key, issued by `ca`, as PEM; with `ca`'s
/// own certificate after it when `send_chain`.
fn paypal_cert_from(ca: &(rcgen::Certificate, KeyPair), send_chain: bool) -> Vec<u8> {
    let key = KeyPair::from_pem(SIGNING_KEY).unwrap();
    let params =
        CertificateParams::new(vec!["messageverificationcerts.paypal.com".to_owned()]).unwrap();
    let leaf = params.signed_by(&key, &ca.0, &ca.1).unwrap();
    let mut pem = leaf.pem();
    if send_chain {
        pem += &ca.0.pem();
    }
    pem.into_bytes()
}

#[tokio::test]
async fn a_signing_certificate_that_sends_a_chain_or_must_have_one_chains_to_a_trusted_root() {
    let pki = pki("chain");
    let host = KeyHost::start(&pki).await;
    let up = Upstream::start().await;
    let intermediate = chain_ca(Some(&pki));
    let rogue = chain_ca(None);
    let file = pki.dir.join("paypal-intermediates.pem");
    std::fs::write(&file, intermediate.0.pem()).unwrap();
    let route = |name: &str, key_url: &str| {
        format!(
            "  - name: {name}\n    path: /{name}\n    upstream: {}\n    verify:\n      preset: paypal\n      key_id: {WEBHOOK_ID}\n      key_url: {key_url}\n",
            up.url()
        )
    };
    let yaml = config(&pki, &host, &up.url(), "").replace(
        "  - name: sns\n",
        &format!(
            "{}{}  - name: sns\n",
            route("chained", "{ require_chain: true }"),
            route(
                "given",
                &format!(
                    "{{ require_chain: true, intermediates_file: \"{}\" }}",
                    file.display()
                )
            ),
        ),
    );
    let gw = Hookgate::start(&yaml, &[]).await;
    let direct = pki.signing_cert("messageverificationcerts.paypal.com", -1, 30);
    let docs = [
        ("direct", direct),
        ("inter-sent", paypal_cert_from(&intermediate, true)),
        ("inter-alone", paypal_cert_from(&intermediate, false)),
        ("rogue-alone", paypal_cert_from(&rogue, false)),
        ("rogue-sent", paypal_cert_from(&rogue, true)),
    ];
    for (name, pem) in &docs {
        host.serve(
            &format!("/v1/notifications/certs/CERT-{name}"),
            Doc::Ok(pem.clone(), "max-age=600"),
        );
    }
    let body = br#"{"id":"WH-2","event_type":"PAYMENT.CAPTURE.COMPLETED"}"#;
    let status = |route: &'static str, doc: &'static str| {
        let cert_url = format!("https://{PAYPAL_HOST}/v1/notifications/certs/CERT-{doc}");
        let url = gw.url(&format!("/{route}"));
        async move {
            let headers = paypal_headers(body, WEBHOOK_ID, &cert_url);
            post(&url, &as_refs(&headers), body).await.status.as_u16()
        }
    };
    // (route, document, status): a chain sent is always checked; a route that requires one
    // checks a certificate sent alone too, through the intermediates it gives.
    let expected: &[(&str, &str, u16)] = &[
        ("paypal", "direct", 200),
        ("paypal", "inter-sent", 200),
        ("paypal", "rogue-sent", 401),
        // Not required: a certificate sent alone is trusted for its pinned host and path.
        ("paypal", "inter-alone", 200),
        ("paypal", "rogue-alone", 200),
        ("chained", "direct", 200),
        ("chained", "inter-sent", 200),
        ("chained", "inter-alone", 401),
        ("chained", "rogue-alone", 401),
        ("chained", "rogue-sent", 401),
        ("given", "inter-alone", 200),
        ("given", "rogue-alone", 401),
    ];
    let mut forwarded = 0;
    for &(route, doc, want) in expected {
        assert_eq!(status(route, doc).await, want, "{route} with {doc}");
        forwarded += usize::from(want == 200);
    }
    assert_eq!(up.count(), forwarded);
    assert_eq!(gw.outcome("chained", "key_refused"), 3.0);
}

// A token that is the whole body (Kinde's webhooks): its JWKS fetched, its signature the
// body's.

/// The test RSA key as a JWKS entry (`n`, `e`), with `kid`.
fn test_key_jwks(kid: &str) -> Value {
    let der = rustls::pki_types::PrivateKeyDer::from_pem_slice(SIGNING_KEY.as_bytes()).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_der()).unwrap();
    let b64u = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
    json!({ "keys": [{ "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                       "n": b64u(&public.n), "e": b64u(&public.e) }] })
}

/// An RS256 token signed with the test key, as Kinde signs its webhook bodies.
fn rs256_token(kid: &str, claims: &Value) -> String {
    let b64u = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = json!({ "alg": "RS256", "kid": kid, "typ": "JWT" });
    let input = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
    let sig = rsa_sign(&ring::signature::RSA_PKCS1_SHA256, input.as_bytes());
    format!("{input}.{}", b64u(&sig))
}

#[tokio::test]
async fn a_token_that_is_the_whole_body_verifies_with_its_issuers_jwks() {
    let pki = pki("kinde");
    let host = KeyHost::start(&pki).await;
    host.serve(
        "/.well-known/jwks.json",
        Doc::Ok(
            test_key_jwks("kinde-1").to_string().into_bytes(),
            "max-age=3600",
        ),
    );
    let up = Upstream::start().await;
    let yaml = config(&pki, &host, &up.url(), "").replace(
        "  - name: sns\n",
        &format!(
            "  - name: kinde\n    path: /kinde\n    upstream: {}\n    verify:\n      algorithm: jwt\n      signature: {{ body: true }}\n      jwt: {{ algorithms: [RS256], issuer: \"https://acme.kinde.com\", require: [iat] }}\n      key_url: {{ url: \"https://acme.kinde.com/.well-known/jwks.json\", private_issuer: true }}\n  - name: sns\n",
            up.url()
        ),
    );
    let gw = Hookgate::start(&yaml, &[]).await;
    let now = now_unix();
    let claims = json!({
        "iss": "https://acme.kinde.com",
        "iat": now,
        "exp": now + 300,
        "type": "user.created",
        "event_id": "event_0192",
        "data": { "user": { "id": "kp_1", "email": "zoë@example.com" } },
    });
    let token = rs256_token("kinde-1", &claims);
    let send_token = |body: String| {
        let url = gw.url("/kinde");
        async move {
            post(
                &url,
                &[("content-type", "application/jwt")],
                body.as_bytes(),
            )
            .await
        }
    };
    let a = send_token(token.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        up.received()[0].body,
        token.as_bytes(),
        "the app gets the token as sent"
    );
    // Another event under the same signature; a token signed by another issuer; bytes
    // around the token; another issuer's claims.
    let (head, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let mut changed = claims.clone();
    changed["type"] = json!("user.deleted");
    let b64u = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let mut other = claims.clone();
    other["iss"] = json!("https://evil.kinde.com");
    for (what, body) in [
        ("another event", format!("{head}.{}.{sig}", b64u(&changed))),
        ("a trailing newline", format!("{token}\n")),
        ("another issuer", rs256_token("kinde-1", &other)),
        ("an empty body", String::new()),
    ] {
        let a = send_token(body).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}: {}", a.body);
    }
    assert_eq!(up.count(), 1);
    assert_eq!(host.requests(), 1, "the JWKS, fetched once");
}
