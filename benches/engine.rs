//! Micro-benchmarks of the request path's pure parts: signature verification per preset at
//! 1 KiB and 1 MiB (with plain SHA-256 over the same bytes as the hardware reference), the
//! senders whose keys are fetched (with the key in hand), route lookup with 1, 100 and
//! 10,000 routes, and client-IP extraction.
//!
//! `cargo bench --bench engine`; docs/performance.md has the figures.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use ipnet::IpNet;
use serde::Deserialize;

use hookgate::body::RawBody;
use hookgate::config::compile::{compile, compile_scheme};
use hookgate::config::file::RawVerify;
use hookgate::config::presets;
use hookgate::scheme::{Outgoing, RequestView, Scheme, SigningKey};

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    preset: String,
    secret: String,
    #[serde(default)]
    private_key: Option<String>,
    expect: String,
}

const NOW: u64 = 1_763_884_800;

/// A preset's scheme with a working key, and the private key for asymmetric ones (taken from
/// the test vectors, so every preset can be signed and verified).
fn scheme_for(preset: &str, vectors: &[Case]) -> (Scheme, Option<SigningKey>) {
    let case = vectors
        .iter()
        .find(|c| c.preset == preset && c.expect == "accept");
    let (key, private) = match case {
        Some(c) => (c.secret.clone(), c.private_key.clone()),
        None => ("bench-secret".to_string(), None),
    };
    let mut v = RawVerify {
        preset: Some(preset.to_owned()),
        // Braintree tags its signatures with the route's public key.
        key_id: Some("bench-key".into()),
        ..RawVerify::default()
    };
    if private.is_some() {
        v.public_key = Some("${KEY}".into());
    } else {
        v.secret = Some("${KEY}".into());
    }
    let secret = key.clone();
    let scheme = compile_scheme(
        v,
        preset,
        Path::new("."),
        &move |_| Some(key.clone()),
        Some("https://hooks.example.com"),
    )
    .unwrap_or_else(|e| panic!("{preset}: {e:?}"));
    // A private key, or the secret a token or HS* JWT scheme sends or signs with.
    let signing = match private {
        Some(p) => Some(scheme.private_key(&p).unwrap()),
        None => scheme.secret_key(secret.as_bytes()).map(Result::unwrap),
    };
    (scheme, signing)
}

fn verification(c: &mut Criterion) {
    let vectors: Vectors =
        serde_json::from_str(include_str!("../tests/vectors/providers.json")).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    eprintln!(
        "SHA-NI available to sha2 at run time: {}",
        std::is_x86_feature_detected!("sha")
    );
    for size in [1024usize, 1024 * 1024] {
        // A JSON body with the fields some presets read (Linear's timestamp, event ids).
        let prefix = format!(r#"{{"id":"evt_1","webhookTimestamp":{}000,"pad":""#, NOW);
        let mut body = prefix.into_bytes();
        body.resize(size - 2, b'a');
        body.extend_from_slice(b"\"}");
        let mut group = c.benchmark_group(format!(
            "verify/{}",
            if size == 1024 { "1KiB" } else { "1MiB" }
        ));
        group.throughput(Throughput::Bytes(size as u64));
        if size > 1024 {
            group.sample_size(20);
        }
        group.bench_function("sha256-only (hardware reference)", |b| {
            use sha2::Digest;
            b.iter(|| sha2::Sha256::digest(black_box(&body)))
        });
        for preset in presets::names() {
            if preset == "gitlab" {
                continue; // a token compare does not read the body
            }
            // Their keys are the senders' own, fetched: `network_keys` below.
            let fetched = presets::find(preset).is_some_and(|p| p.raw_verify().key_url.is_some());
            if fetched {
                continue;
            }
            let (scheme, signing) = scheme_for(preset, &vectors.cases);
            // Twilio covers a JSON body by its SHA-256 in the signed URL.
            let path = if scheme.body_hash_param.is_some() {
                use sha2::Digest;
                format!(
                    "/hook?bodySHA256={}",
                    hex::encode(sha2::Sha256::digest(&body))
                )
            } else {
                "/hook".to_owned()
            };
            let mut headers = HeaderMap::new();
            for (name, value) in [
                ("webhook-id", "msg_1"),
                ("svix-id", "msg_1"),
                ("content-type", "application/json"),
                // SendGrid signs its timestamp header but sets no window on it.
                ("x-twilio-email-event-webhook-timestamp", "1763884800"),
            ] {
                headers.insert(name, HeaderValue::from_static(value));
            }
            // The one body fits most presets; one that signs headers or fields this request
            // lacks (Twitch's message id, Adyen's items) is left out, and said so.
            let headers =
                match scheme.sign(Outgoing::post(&path, headers, &body), now, signing.as_ref()) {
                    Ok(signed) => signed.request.headers,
                    Err(e) => {
                        eprintln!("verify/{size}: {preset} left out: {e}");
                        continue;
                    }
                };
            let raw = RawBody::from(body.clone());
            if !verify_once(&scheme, &headers, &raw, &path, now) {
                eprintln!("verify/{size}: {preset} left out: this body does not verify");
                continue;
            }
            group.bench_function(BenchmarkId::from_parameter(preset), |b| {
                b.iter(|| verify_once(&scheme, black_box(&headers), &raw, &path, now))
            });
        }
        group.finish();
    }
}

/// One verification as a request makes it: its JSON body (if the scheme reads it) parsed
/// afresh, not cached from the last iteration.
fn verify_once(
    scheme: &Scheme,
    headers: &HeaderMap,
    body: &RawBody,
    path: &str,
    now: std::time::SystemTime,
) -> bool {
    let json = hookgate::scheme::JsonBody::default();
    let request = RequestView {
        method: &http::Method::POST,
        json: &json,
        headers,
        body,
        path_and_query: path,
    };
    scheme.verify(&request, now).is_ok()
}

/// A scheme from a `verify:` block in YAML, its secret or public key as `${KEY}`.
fn yaml_scheme(yaml: &str, key: &str) -> Scheme {
    let v: RawVerify = serde_yaml::from_str(yaml).unwrap();
    let key = key.to_owned();
    compile_scheme(
        v,
        "bench",
        Path::new("."),
        &move |_| Some(key.clone()),
        None,
    )
    .unwrap()
}

/// The engine's newer parts at 1 KiB (issue 22): HMAC-SHA512, a scheme reading JSON fields
/// (one strict parse per request), and JWTs with HS256, RS256 and ES256 keys.
fn engine_parts(c: &mut Criterion) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut group = c.benchmark_group("verify/1KiB/engine-parts");
    let mut body =
        br#"{"signature":{"timestamp":"1763884800","token":"tok-1","signature":"SIG"},"pad":""#
            .to_vec();
    body.resize(1022, b'a');
    body.extend_from_slice(b"\"}");

    let sha512 = yaml_scheme(
        "{ algorithm: hmac-sha512, signature: { header: x-sig }, secret: \"${KEY}\" }",
        "bench-secret",
    );
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let headers = sha512
        .sign(Outgoing::post("/", HeaderMap::new(), &body), now, None)
        .unwrap()
        .request
        .headers;
    let raw = RawBody::from(body.clone());
    assert!(verify_once(&sha512, &headers, &raw, "/", now));
    group.bench_function("hmac-sha512", |b| {
        b.iter(|| verify_once(&sha512, black_box(&headers), &raw, "/", now))
    });

    // Mailgun's shape: the signature and the fields it signs inside the JSON body.
    let fields = yaml_scheme(
        "{ signature: { json: /signature/signature }, message: [{ json: /signature/timestamp }, \
         { json: /signature/token }], body_signed: false, secret: \"${KEY}\" }",
        "bench-secret",
    );
    let mac = {
        use hmac::Mac as _;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"bench-secret").unwrap();
        m.update(b"1763884800tok-1");
        hex::encode(m.finalize().into_bytes())
    };
    let signed_body = String::from_utf8(body.clone())
        .unwrap()
        .replace("SIG", &mac);
    let raw_json = RawBody::from(signed_body.clone().into_bytes());
    // A fields-only sender's JSON must come as JSON (`fields_only.rs`).
    let mut none = HeaderMap::new();
    none.insert("content-type", HeaderValue::from_static("application/json"));
    assert!(verify_once(&fields, &none, &raw_json, "/", now));
    group.bench_function("json-fields (strict parse each time)", |b| {
        b.iter(|| verify_once(&fields, black_box(&none), &raw_json, "/", now))
    });

    // JWTs bound to the body's SHA-256.
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&body))
    };
    let claims = format!(r#"{{"iat":{NOW},"sha256":"{digest}"}}"#);
    let jwt_yaml = |alg: &str, key_field: &str| {
        format!(
            "{{ algorithm: jwt, signature: {{ header: x-jwt }}, jwt: {{ algorithms: [{alg}], \
             body_sha256: {{ claim: sha256 }} }}, {key_field}: \"${{KEY}}\", key_encoding: raw }}"
        )
    };
    let signed = |alg: &str| {
        format!(
            "{}.{}",
            b64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
            b64.encode(&claims)
        )
    };
    let hs = {
        use hmac::Mac as _;
        let input = signed("HS256");
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"bench-secret").unwrap();
        m.update(input.as_bytes());
        format!("{input}.{}", b64.encode(m.finalize().into_bytes()))
    };
    let es = {
        use p256::ecdsa::signature::Signer as _;
        use p256::pkcs8::EncodePublicKey as _;
        let key = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let input = signed("ES256");
        let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
        let pem = key
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        (format!("{input}.{}", b64.encode(sig.to_bytes())), pem)
    };
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../tests/vectors/jwt.json")).unwrap();
    let rs_body = RawBody::from(vectors["body"].as_str().unwrap().as_bytes().to_vec());
    let rs_now = UNIX_EPOCH + Duration::from_secs(1_763_885_000);
    let cases = [
        (
            "jwt-hs256",
            yaml_scheme(&jwt_yaml("HS256", "secret"), "bench-secret"),
            hs,
            RawBody::from(body.clone()),
            now,
        ),
        (
            "jwt-es256",
            yaml_scheme(&jwt_yaml("ES256", "public_key"), &es.1),
            es.0,
            RawBody::from(body.clone()),
            now,
        ),
        (
            "jwt-rs256",
            yaml_scheme(
                &jwt_yaml("RS256", "public_key"),
                vectors["rsa_public_key"].as_str().unwrap(),
            ),
            vectors["rs256"].as_str().unwrap().to_owned(),
            rs_body,
            rs_now,
        ),
    ];
    for (name, scheme, token, body, at) in cases {
        let mut headers = HeaderMap::new();
        headers.insert("x-jwt", HeaderValue::from_str(&token).unwrap());
        assert!(verify_once(&scheme, &headers, &body, "/", at), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| verify_once(&scheme, black_box(&headers), &body, "/", at))
        });
    }
    group.finish();
}

fn route_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for n in [1usize, 100, 10_000] {
        let mut yaml = String::from("listeners:\n  - addr: 127.0.0.1:0\nroutes:\n");
        for i in 0..n {
            // Half prefix, half exact routes, all allowlist-only (no keys to resolve).
            let path = if i % 2 == 0 {
                format!("/hooks/{i}/*")
            } else {
                format!("/webhooks/sender-{i}")
            };
            yaml += &format!(
                "  - {{ name: r{i}, path: \"{path}\", upstream: \"http://127.0.0.1:3000\", allow_ips: [127.0.0.1] }}\n"
            );
        }
        let loaded = compile(&yaml, Path::new("."), &|_| None).unwrap();
        let table = loaded.gateway.routes;
        // The same shape of request at every size: a deep path under the last prefix route.
        let last_prefix = (n - 1) / 2 * 2;
        let target = format!("/hooks/{last_prefix}/deep/path");
        assert!(matches!(
            table.lookup(&Method::POST, &target),
            hookgate::model::routes::Match::Found(_)
        ));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                matches!(
                    table.lookup(&Method::POST, black_box(&target)),
                    hookgate::model::routes::Match::Found(_)
                )
            })
        });
    }
    group.finish();
}

fn client_ip(c: &mut Criterion) {
    let trusted: Vec<IpNet> = ["10.0.0.0/8", "172.16.0.0/12", "fd00::/8"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("x-forwarded-for"),
        HeaderValue::from_static("203.0.113.9, 198.51.100.7, 10.1.2.3"),
    );
    let trusted_peer = "10.0.0.5".parse().unwrap();
    let untrusted_peer = "198.51.100.20".parse().unwrap();
    let mut group = c.benchmark_group("client_ip");
    group.bench_function("untrusted peer", |b| {
        b.iter(|| hookgate::client_ip::client_ip(black_box(untrusted_peer), &trusted, &headers))
    });
    group.bench_function("trusted peer, 3-hop X-Forwarded-For", |b| {
        b.iter(|| hookgate::client_ip::client_ip(black_box(trusted_peer), &trusted, &headers))
    });
    group.finish();
}

/// Senders whose keys live on the network (issue 23), with the document already fetched:
/// verifying alone, and as the gateway does it per request (the cached document parsed twice:
/// once to see it holds the key, once to verify), beside HMAC-SHA256 over the same body.
fn network_keys(c: &mut Criterion) {
    use hookgate::scheme::fetched::KeyDoc;
    use hookgate::scheme::Keys;
    let mut group = c.benchmark_group("verify/network-keys");
    let sns: serde_json::Value =
        serde_json::from_str(include_str!("../tests/vectors/sns.json")).unwrap();
    let message = sns["cases"][1]["message"].clone(); // signature version 2
    let topic = message["TopicArn"].as_str().unwrap().to_owned();
    let scheme = yaml_scheme(
        &format!("{{ preset: aws-sns, json_allowed: {{ /TopicArn: [\"{topic}\"] }} }}"),
        "",
    );
    let pem = sns["certificate"].as_str().unwrap().as_bytes().to_vec();
    let body = RawBody::from(serde_json::to_vec(&message).unwrap());
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    let at =
        humantime::parse_rfc3339_weak(message["Timestamp"].as_str().unwrap().trim_end_matches('Z'))
            .unwrap();
    let Keys::Fetched(key) = &scheme.keys else {
        panic!("aws-sns fetches its key")
    };
    // One verification as a request makes it (its JSON parsed afresh), with `doc`.
    let verify = |doc: &KeyDoc| {
        let json = hookgate::scheme::JsonBody::default();
        let request = RequestView {
            method: &Method::POST,
            json: &json,
            headers: &headers,
            body: &body,
            path_and_query: "/",
        };
        scheme.verify_with(&request, at, Some(doc)).is_ok()
    };
    let once = |parses: usize| {
        let mut doc = None;
        for _ in 0..parses {
            doc = Some(KeyDoc::parse(key, black_box(&pem)).unwrap());
        }
        verify(&doc.expect("parsed"))
    };
    assert!(once(1));
    let parsed = KeyDoc::parse(key, &pem).unwrap();
    group.bench_function("aws-sns v2, certificate in hand", |b| {
        b.iter(|| verify(&parsed))
    });
    group.bench_function("aws-sns v2, parsed on each use (2 parses + verify)", |b| {
        b.iter(|| once(2))
    });
    group.bench_function("certificate parse alone", |b| {
        b.iter(|| KeyDoc::parse(key, black_box(&pem)).is_ok())
    });
    // As the pipeline does it: the parsed document found by its content, twice.
    let parsed_docs = hookgate::remote_keys::parsed::ParsedDocs::default();
    group.bench_function("aws-sns v2, as a request (parsed once, found twice)", |b| {
        b.iter(|| {
            let held = parsed_docs.get(key, black_box(&pem)).unwrap();
            let doc = parsed_docs.get(key, black_box(&pem)).unwrap();
            held.has("") && verify(&doc)
        })
    });
    let hmac = yaml_scheme(
        "{ algorithm: hmac-sha256, signature: { header: x-sig }, secret: \"${KEY}\" }",
        "bench-secret",
    );
    let signed = hmac
        .sign(
            Outgoing::post("/", HeaderMap::new(), body.contiguous()),
            at,
            None,
        )
        .unwrap()
        .request
        .headers;
    assert!(verify_once(&hmac, &signed, &body, "/", at));
    group.bench_function("hmac-sha256 (reference, same body)", |b| {
        b.iter(|| verify_once(&hmac, black_box(&signed), &body, "/", at))
    });
    ebay_keys(&mut group, at);
    group.finish();
}

/// eBay's SDK vector with the key its API gave in hand: the envelope read, the body in its
/// compact form, ECDSA P-256 with SHA-1; for a compact body (as eBay sends it) and the same
/// body pretty-printed (re-written per request).
fn ebay_keys(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    at: std::time::SystemTime,
) {
    use hookgate::scheme::fetched::KeyDoc;
    use hookgate::scheme::Keys;
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../tests/vectors/ebay.json")).unwrap();
    let scheme = yaml_scheme(
        "{ preset: ebay, key_url: { token: { client_id: \"${KEY}\", client_secret: \"${KEY}\" } } }",
        "bench-client",
    );
    let Keys::Fetched(key) = &scheme.keys else {
        panic!("ebay fetches its key")
    };
    let doc = KeyDoc::parse(key, v["key_answer"].to_string().as_bytes()).unwrap();
    let mut headers = HeaderMap::new();
    let signature = v["cases"][0]["signature"].as_str().unwrap();
    headers.insert(
        "x-ebay-signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    for form in ["body", "pretty"] {
        let body = RawBody::from(v["cases"][0][form].as_str().unwrap().as_bytes().to_vec());
        let verify = || {
            let json = hookgate::scheme::JsonBody::default();
            let request = RequestView {
                method: &Method::POST,
                json: &json,
                headers: &headers,
                body: &body,
                path_and_query: "/",
            };
            scheme.verify_with(&request, at, Some(&doc)).is_ok()
        };
        assert!(verify(), "{form}");
        let label = if form == "body" {
            "compact"
        } else {
            "pretty-printed"
        };
        group.bench_function(format!("ebay, key in hand ({label} body)"), |b| {
            b.iter(verify)
        });
    }
    // The ECDSA check alone, over the same digest.
    let Some(KeyDoc::P256(public)) = Some(&doc) else {
        panic!("a P-256 key")
    };
    use base64::Engine as _;
    use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
    use sha1::Digest as _;
    let envelope: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(signature)
            .unwrap(),
    )
    .unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(envelope["signature"].as_str().unwrap())
        .unwrap();
    let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
    let digest = sha1::Sha1::digest(v["cases"][0]["body"].as_str().unwrap());
    assert!(public.verify_prehash(&digest, &sig).is_ok());
    group.bench_function("ecdsa p-256 verify alone (p256 crate)", |b| {
        b.iter(|| public.verify_prehash(black_box(&digest), &sig).is_ok())
    });
}

criterion_group!(
    benches,
    verification,
    engine_parts,
    network_keys,
    route_lookup,
    client_ip
);
criterion_main!(benches);
