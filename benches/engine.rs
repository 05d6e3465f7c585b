//! Micro-benchmarks of the request path's pure parts: signature verification per preset at
//! 1 KiB and 1 MiB (with plain SHA-256 over the same bytes as the hardware reference), route
//! lookup with 1, 100 and 10,000 routes, and client-IP extraction.
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
use hookgate::scheme::{RequestView, Scheme, SigningKey};

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
        ..RawVerify::default()
    };
    if private.is_some() {
        v.public_key = Some("${KEY}".into());
    } else {
        v.secret = Some("${KEY}".into());
    }
    let scheme = compile_scheme(
        v,
        preset,
        Path::new("."),
        &move |_| Some(key.clone()),
        Some("https://hooks.example.com"),
    )
    .unwrap_or_else(|e| panic!("{preset}: {e:?}"));
    let signing = private.map(|p| SigningKey::parse(scheme.algorithm, &p).unwrap());
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
            scheme
                .sign(&mut headers, &body, &path, now, signing.as_ref())
                .unwrap_or_else(|e| panic!("{preset}: {e}"));
            let raw = RawBody::from(body.clone());
            let request = RequestView {
                method: &http::Method::POST,
                json: &hookgate::scheme::JsonBody::default(),
                headers: &headers,
                body: &raw,
                path_and_query: &path,
            };
            assert!(scheme.verify(&request, now).is_ok(), "{preset}");
            group.bench_function(BenchmarkId::from_parameter(preset), |b| {
                b.iter(|| scheme.verify(black_box(&request), now).unwrap())
            });
        }
        group.finish();
    }
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

criterion_group!(benches, verification, route_lookup, client_ip);
criterion_main!(benches);
