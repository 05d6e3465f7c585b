//! The scheme engine against every vector in `tests/vectors/seed-senders.json` (computed
//! independently with Python's `hmac`), plus the engine's own edge cases.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::*;
use crate::body::RawBody;
use crate::config::compile::compile_scheme;
use crate::config::file::RawVerify;
use crate::config::presets;
use bytes::Bytes;

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

/// The body as one chunk and split into uneven chunks (as it may arrive): both must give
/// the same verdict.
fn both_ways(body: &[u8]) -> [RawBody; 2] {
    let split = [0, body.len() / 3, body.len() / 3 + 1, body.len()];
    let chunks = split
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&body[w[0]..w[1]]))
        .collect();
    [RawBody::from(body.to_vec()), RawBody::from_chunks(chunks)]
}

/// Verifies a request posted to `/`; on success, the index of the key that matched.
fn check(
    s: &Scheme,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<usize, VerifyError> {
    let [whole, split] = both_ways(body);
    let verdicts = [&whole, &split].map(|body| {
        s.verify(
            &RequestView {
                method: &http::Method::POST,
                json: &crate::scheme::JsonBody::default(),
                headers,
                body,
                path_and_query: "/",
            },
            now,
        )
        .map(|v| v.key_index)
    });
    assert_eq!(verdicts[0], verdicts[1], "same verdict whole and in chunks");
    verdicts[0].clone()
}

/// The signature header value the scheme computes for these headers and body (any timestamp
/// header must already be in `headers`).
fn sig_of(s: &Scheme, headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let h = signed_headers(s, headers.clone(), body, "/", SystemTime::now(), None)?;
    Ok(h[s.signature.header().unwrap()]
        .to_str()
        .unwrap()
        .to_owned())
}

/// The headers of a POST to `pq` after `s` signed it.
fn signed_headers(
    s: &Scheme,
    headers: HeaderMap,
    body: &[u8],
    pq: &str,
    now: SystemTime,
    key: Option<&SigningKey>,
) -> Result<HeaderMap, String> {
    s.sign(Outgoing::post(pq, headers, body), now, key)
        .map(|signed| signed.request.headers)
}

fn hmac_scheme(
    algorithm: Algorithm,
    signature: SignatureSpec,
    message: Vec<Part>,
    secrets: &[&[u8]],
) -> Scheme {
    let keys: Vec<Vec<u8>> = secrets.iter().map(|s| s.to_vec()).collect();
    Scheme {
        algorithm,
        signature,
        message,
        timestamp: None,
        public_url: None,
        body_hash_param: None,
        body_signed: true,
        each_item: None,
        jwt: None,
        json_allowed: Vec::new(),
        keys: Keys::new(algorithm, &keys).unwrap(),
    }
}

fn preset_scheme(preset: &str, secret: &str) -> Scheme {
    let v = RawVerify {
        preset: Some(preset.into()),
        secret: Some("${SECRET}".into()),
        ..RawVerify::default()
    };
    let secret = secret.to_owned();
    compile_scheme(
        v,
        "test",
        Path::new("."),
        &move |_| Some(secret.clone()),
        None,
    )
    .expect("preset compiles")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

#[test]
fn every_seed_vector_gives_the_expected_verdict() {
    let vectors: Vectors =
        serde_json::from_str(include_str!("../../tests/vectors/seed-senders.json")).unwrap();
    assert!(vectors.cases.len() >= 29, "all vectors loaded");
    let mut per_sender = std::collections::BTreeMap::<String, usize>::new();
    for case in &vectors.cases {
        let scheme = preset_scheme(&case.sender, &case.secret);
        let pairs: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let verdict = check(
            &scheme,
            &headers(&pairs),
            case.body.as_bytes(),
            at(case.now_unix),
        );
        match case.expect.as_str() {
            "accept" => assert_eq!(
                verdict,
                Ok(0),
                "{}/{} should verify",
                case.sender,
                case.name
            ),
            "reject" => assert!(
                verdict.is_err(),
                "{}/{} should be refused",
                case.sender,
                case.name
            ),
            other => panic!("unknown expectation {other}"),
        }
        *per_sender.entry(case.sender.clone()).or_default() += 1;
    }
    assert_eq!(
        per_sender.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["lahza", "laso", "listrak", "lomi", "ltvboost"]
    );
}

#[test]
fn refusal_reasons_are_specific() {
    let body = br#"{"a":1}"#;
    let laso = preset_scheme("laso", "k");
    let good = sig_of(&laso, &HeaderMap::new(), body).unwrap();
    let now = at(1_763_884_800);
    assert_eq!(
        check(&laso, &HeaderMap::new(), body, now),
        Err(VerifyError::MissingSignature("header x-signature".into()))
    );
    for bad in [
        "",
        "zz",
        &good[..good.len() - 2],
        &format!("{good}00"),
        &format!(" {good}x"),
    ] {
        assert_eq!(
            check(&laso, &headers(&[("x-signature", bad)]), body, now),
            Err(VerifyError::MalformedSignature("header x-signature".into())),
            "{bad:?}"
        );
    }
    let mut flipped = good.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    assert_eq!(
        check(&laso, &headers(&[("x-signature", &flipped)]), body, now),
        Err(VerifyError::Mismatch)
    );
    // Two signature headers are ambiguous, not "either may match".
    assert_eq!(
        check(
            &laso,
            &headers(&[("x-signature", &good), ("x-signature", &good)]),
            body,
            now
        ),
        Err(VerifyError::MalformedSignature("header x-signature".into()))
    );
    assert_eq!(
        check(&laso, &headers(&[("x-signature", &good)]), body, now),
        Ok(0)
    );
}

#[test]
fn listrak_timestamp_window_is_both_ways() {
    let s = preset_scheme("listrak", "LTK-secret-99");
    let body = b"{}";
    let now = 1_763_884_800u64;
    let sign_at = |ts: u64| {
        let h = headers(&[("ltk-timestamp", &ts.to_string())]);
        let sig = sig_of(&s, &h, body).unwrap();
        headers(&[
            ("ltk-timestamp", &ts.to_string()),
            ("ltk-hmacsignature", &sig),
        ])
    };
    assert!(check(&s, &sign_at(now - 899), body, at(now)).is_ok());
    assert!(check(&s, &sign_at(now + 899), body, at(now)).is_ok());
    assert_eq!(
        check(&s, &sign_at(now - 901), body, at(now)),
        Err(VerifyError::StaleTimestamp)
    );
    assert_eq!(
        check(&s, &sign_at(now + 901), body, at(now)),
        Err(VerifyError::FutureTimestamp)
    );
    let sig = sig_of(&s, &headers(&[("ltk-timestamp", "1")]), body).unwrap();
    for bad in ["-5", "1e9", "", "17638848OO", "99999999999999999999999"] {
        assert_eq!(
            check(
                &s,
                &headers(&[("ltk-timestamp", bad), ("ltk-hmacsignature", &sig)]),
                body,
                at(now)
            ),
            Err(VerifyError::MalformedTimestamp),
            "{bad:?}"
        );
    }
    assert_eq!(
        check(&s, &headers(&[("ltk-hmacsignature", &sig)]), body, at(now)),
        Err(VerifyError::MissingTimestamp)
    );
}

#[test]
fn json_body_timestamps_in_each_unit() {
    let spec = |pointer: &str, unit| TimestampSpec {
        source: TimestampSource::JsonField(pointer.into()),
        unit,
        window: Some(Window {
            past: Duration::from_secs(300),
            future: Duration::from_secs(60),
        }),
    };
    let now = at(1_763_884_800);
    let cases: &[(&str, TimestampSpec, Result<(), VerifyError>)] = &[
        (
            r#"{"time":1763884700000}"#,
            spec("/time", TimestampUnit::Milliseconds),
            Ok(()),
        ),
        (
            r#"{"time":1763884400000}"#,
            spec("/time", TimestampUnit::Milliseconds),
            Err(VerifyError::StaleTimestamp),
        ),
        (
            r#"{"d":{"ts":"1763884790"}}"#,
            spec("/d/ts", TimestampUnit::Seconds),
            Ok(()),
        ),
        (
            r#"{"timestamp":"2025-11-23T07:59:30Z"}"#,
            spec("/timestamp", TimestampUnit::Rfc3339),
            Ok(()),
        ),
        (
            r#"{"timestamp":"2025-11-23T08:05:00Z"}"#,
            spec("/timestamp", TimestampUnit::Rfc3339),
            Err(VerifyError::FutureTimestamp),
        ),
        (
            r#"{"other":1}"#,
            spec("/time", TimestampUnit::Seconds),
            Err(VerifyError::MissingTimestamp),
        ),
        (
            r#"{"time":[1]}"#,
            spec("/time", TimestampUnit::Seconds),
            Err(VerifyError::MalformedTimestamp),
        ),
        (
            r#"not json"#,
            spec("/time", TimestampUnit::Seconds),
            Err(VerifyError::NotStrictJson(
                "expected ident at line 1 column 2".into(),
            )),
        ),
    ];
    for (body, spec, want) in cases {
        assert_eq!(
            &check_timestamp(
                spec,
                &RequestView {
                    method: &http::Method::POST,
                    json: &crate::scheme::JsonBody::default(),
                    headers: &HeaderMap::new(),
                    body: &both_ways(body.as_bytes())[1],
                    path_and_query: "/",
                },
                &Found {
                    candidates: vec![],
                    entries: vec![],
                },
                now
            ),
            want,
            "{body}"
        );
    }
}

#[test]
fn rotation_reports_which_secret_matched_and_sha_variants_work() {
    let body = b"payload";
    for (alg, len) in [
        (Algorithm::HmacSha1, 20),
        (Algorithm::HmacSha256, 32),
        (Algorithm::HmacSha512, 64),
    ] {
        let spec = SignatureSpec {
            source: SignatureSource::Header {
                name: HeaderName::from_static("x-sig"),
                also: Vec::new(),
            },
            list: None,
            envelope: None,
            prefix: "v1=".into(),
            encodings: vec![Encoding::Base64, Encoding::Hex],
            entries: None,
        };
        let old = hmac_scheme(alg, spec.clone(), vec![Part::Body], &[b"old"]);
        let both = hmac_scheme(
            alg,
            spec,
            vec![Part::Literal(b"x.".to_vec()), Part::Body],
            &[b"new", b"old"],
        );
        let sig = sig_of(&old, &HeaderMap::new(), body).unwrap();
        let decoded = BASE64.decode(sig.strip_prefix("v1=").unwrap()).unwrap();
        assert_eq!(decoded.len(), len);
        // `both` signs "x." + body, so `old`'s signature must not match it...
        assert_eq!(
            check(&both, &headers(&[("x-sig", &sig)]), body, SystemTime::now()),
            Err(VerifyError::Mismatch)
        );
        // ... while its own signature under the second secret matches index 1.
        let rotated = sig_of(
            &hmac_scheme(alg, both.signature.clone(), both.message.clone(), &[b"old"]),
            &HeaderMap::new(),
            body,
        )
        .unwrap();
        assert_eq!(
            check(
                &both,
                &headers(&[("x-sig", &rotated)]),
                body,
                SystemTime::now()
            ),
            Ok(1)
        );
        // Hex of the same MAC is accepted too, in either case.
        let hex_sig = format!("v1={}", hex::encode_upper(&decoded));
        assert!(check(
            &old,
            &headers(&[("x-sig", &hex_sig)]),
            body,
            SystemTime::now()
        )
        .is_ok());
    }
}

#[test]
fn a_missing_signed_header_is_refused() {
    let s = preset_scheme("listrak", "k");
    let sig = sig_of(&s, &headers(&[("ltk-timestamp", "1763884800")]), b"{}").unwrap();
    // The timestamp header is also signed; its absence is reported as a missing timestamp
    // before any MAC is computed.
    assert_eq!(
        check(
            &s,
            &headers(&[("ltk-hmacsignature", &sig)]),
            b"{}",
            at(1_763_884_800)
        ),
        Err(VerifyError::MissingTimestamp)
    );
    // A signed header that is not the timestamp: reported by name.
    let id_signed = hmac_scheme(
        Algorithm::HmacSha256,
        SignatureSpec {
            source: SignatureSource::Header {
                name: HeaderName::from_static("x-sig"),
                also: Vec::new(),
            },
            list: None,
            envelope: None,
            prefix: String::new(),
            encodings: vec![Encoding::Hex],
            entries: None,
        },
        vec![Part::Header(HeaderName::from_static("x-id")), Part::Body],
        &[b"k"],
    );
    let sig = sig_of(&id_signed, &headers(&[("x-id", "1")]), b"{}").unwrap();
    assert_eq!(
        check(
            &id_signed,
            &headers(&[("x-sig", &sig)]),
            b"{}",
            SystemTime::now()
        ),
        Err(VerifyError::MissingMessageHeader(HeaderName::from_static(
            "x-id"
        )))
    );
    assert!(sig_of(&id_signed, &HeaderMap::new(), b"{}")
        .unwrap_err()
        .contains("x-id"));
}

#[derive(Clone, Deserialize)]
struct ProviderCase {
    preset: String,
    name: String,
    secret: String,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    url: String,
    #[serde(default)]
    content_type: Option<String>,
    body: String,
    headers: std::collections::BTreeMap<String, String>,
    now_unix: u64,
    expect: String,
}

fn provider_cases() -> Vec<ProviderCase> {
    #[derive(Deserialize)]
    struct File {
        cases: Vec<ProviderCase>,
    }
    let f: File = serde_json::from_str(include_str!("../../tests/vectors/providers.json")).unwrap();
    f.cases
}

/// Verifies a provider case's body with `headers`, posted to `path_and_query`, at `now`.
fn verify_case(
    scheme: &Scheme,
    case: &ProviderCase,
    headers: &HeaderMap,
    path_and_query: &str,
    now: SystemTime,
) -> Result<Verified, VerifyError> {
    let [whole, split] = both_ways(case.body.as_bytes());
    let verdicts = [&whole, &split].map(|body| {
        scheme.verify(
            &RequestView {
                method: &http::Method::POST,
                json: &crate::scheme::JsonBody::default(),
                headers,
                body,
                path_and_query,
            },
            now,
        )
    });
    let [a, b] = verdicts;
    assert_eq!(
        a.as_ref().map(|v| v.key_index).map_err(|e| e.clone()),
        b.as_ref().map(|v| v.key_index).map_err(|e| e.clone()),
        "{}: same verdict whole and in chunks",
        case.name
    );
    a
}

/// The preset's scheme with the case's key, and the case's request parts.
fn provider_setup(case: &ProviderCase) -> (Scheme, HeaderMap, String) {
    let asymmetric = crate::config::compile::preset_shape(&case.preset)
        .is_ok_and(|s| s.algorithm.is_asymmetric());
    let mut v = RawVerify {
        preset: Some(case.preset.clone()),
        key_id: case.key_id.clone(),
        ..RawVerify::default()
    };
    if asymmetric {
        v.public_key = Some("${KEY}".into());
    } else {
        v.secret = Some("${KEY}".into());
    }
    let uri: http::Uri = case.url.parse().unwrap();
    let public_url = format!(
        "{}://{}",
        uri.scheme_str().unwrap(),
        uri.authority().unwrap()
    );
    let key = case.secret.clone();
    let scheme = compile_scheme(
        v,
        &case.preset,
        Path::new("."),
        &move |_| Some(key.clone()),
        Some(&public_url),
    )
    .unwrap_or_else(|e| panic!("{}: {e:?}", case.preset));
    let mut h = HeaderMap::new();
    for (k, v) in &case.headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    if let Some(ct) = &case.content_type {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(ct).unwrap(),
        );
    }
    (scheme, h, uri.path_and_query().unwrap().to_string())
}

#[test]
fn every_provider_vector_gives_the_expected_verdict() {
    let cases = provider_cases();
    assert!(cases.len() > 150);
    let mut presets: Vec<&str> = cases.iter().map(|c| c.preset.as_str()).collect();
    presets.sort();
    presets.dedup();
    assert_eq!(
        presets.len(),
        presets::all().len() - 5 - fetched_key_presets(),
        "every non-seed preset whose key is not fetched has vectors here"
    );
    for case in &cases {
        let (scheme, headers, path_and_query) = provider_setup(case);
        let verdict = verify_case(&scheme, case, &headers, &path_and_query, at(case.now_unix))
            .map(|v| v.key_index);
        let label = format!("{}/{}", case.preset, case.name);
        match case.expect.as_str() {
            "accept" => assert_eq!(verdict, Ok(0), "{label}"),
            _ => assert!(verdict.is_err(), "{label} must be refused"),
        }
    }
}

/// `hookgate sign` for every preset: strip what the sender signed, sign again, and the result
/// verifies (HMAC presets with the secret, asymmetric ones with the case's private key).
#[test]
fn signing_round_trips_for_every_preset() {
    let mut signed_presets = std::collections::BTreeSet::new();
    for case in provider_cases().iter().filter(|c| c.expect == "accept") {
        let (scheme, mut headers, path_and_query) = provider_setup(case);
        if !signed_presets.insert(case.preset.clone()) {
            continue; // one case per preset is enough
        }
        let mut body = case.body.clone().into_bytes();
        match (scheme.signature.header(), &scheme.signature.source) {
            (Some(header), _) => {
                headers.remove(header);
            }
            // A form field (braintree): taken out, for `sign` to add.
            (None, SignatureSource::Form(name)) => {
                body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form_urlencoded::parse(&body).filter(|(k, _)| k != name))
                    .finish()
                    .into_bytes();
            }
            // In the body (mailgun, msgraph, adyen's items): blanked where it is, so that
            // only what `sign` writes can make the request verify again.
            (None, _) => {
                for pointer in signature_pointers(&scheme, &body) {
                    body = json::with_field(&body, &pointer, "AAAA").unwrap();
                }
                let mut blanked = case.clone();
                blanked.body = String::from_utf8(body.clone()).unwrap();
                let now = at(case.now_unix);
                let verdict = verify_case(&scheme, &blanked, &headers, &path_and_query, now);
                assert!(verdict.is_err(), "{}: blanked, still verifies", case.preset);
            }
        }
        if let Some(TimestampSpec {
            source: TimestampSource::Header(ts),
            ..
        }) = &scheme.timestamp
        {
            headers.remove(ts);
        }
        // A private key, or the shared secret a token or HS* JWT scheme sends or signs with.
        let key = match case.private_key.as_deref() {
            Some(k) => Some(scheme.private_key(k).unwrap()),
            None => scheme
                .secret_key(case.secret.as_bytes())
                .map(|k| k.unwrap()),
        };
        let now = at(case.now_unix);
        let signed = scheme
            .sign(
                Outgoing::post(&path_and_query, headers, &body),
                now,
                key.as_ref(),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", case.preset));
        if let Some(header) = scheme.signature.header() {
            assert!(signed.set.contains(header), "{}", case.preset);
        }
        let mut signed_case = case.clone();
        signed_case.body = String::from_utf8(signed.request.body).unwrap();
        let headers = signed.request.headers;
        let verdict =
            verify_case(&scheme, &signed_case, &headers, &path_and_query, now).map(|v| v.key_index);
        assert_eq!(verdict, Ok(0), "{}", case.preset);
    }
    // Every non-seed preset, shared secrets and JWTs included, sendgrid and discord with
    // their private keys, and the ones whose signature is in the body.
    assert_eq!(
        signed_presets.len(),
        presets::all().len() - 5 - fetched_key_presets()
    );
}

/// The presets whose key is fetched from the sender (AWS SNS, PayPal): the gateway holds no
/// key to sign or verify with offline. Their real messages and generated ones are verified
/// through the gateway, against a key host, in `tests/e2e/network_keys.rs`.
fn fetched_key_presets() -> usize {
    let fetched = |p: &&presets::Preset| {
        crate::config::compile::preset_shape(p.name).is_ok_and(|s| s.fetches_key())
    };
    presets::all().iter().filter(fetched).count()
}

/// Where a scheme's signature sits in `body` when it is in the body: one JSON pointer, or one
/// per item of an array.
fn signature_pointers(scheme: &Scheme, body: &[u8]) -> Vec<String> {
    let doc = json::parse_strict(body).unwrap();
    let items = |array: &str| {
        doc.pointer(array)
            .and_then(|a| a.as_array())
            .map_or(0, Vec::len)
    };
    match (&scheme.signature.source, &scheme.each_item) {
        (SignatureSource::Json(field), Some(array)) => (0..items(array))
            .map(|i| format!("{array}/{i}{field}"))
            .collect(),
        (SignatureSource::Json(pointer), None) => vec![pointer.clone()],
        (SignatureSource::JsonEach { array, field }, _) => (0..items(array))
            .map(|i| format!("{array}/{i}{field}"))
            .collect(),
        (other, _) => panic!("not in the body: {other:?}"),
    }
}

#[test]
fn sendgrid_signature_must_be_der() {
    let case = provider_cases()
        .into_iter()
        .find(|c| c.preset == "sendgrid" && c.expect == "accept")
        .unwrap();
    let (scheme, mut headers, pq) = provider_setup(&case);
    let der_b64 = headers[scheme.signature.header().unwrap()]
        .to_str()
        .unwrap()
        .to_owned();
    let der = BASE64.decode(der_b64).unwrap();
    let raw = p256::ecdsa::Signature::from_der(&der).unwrap().to_bytes();
    headers.insert(
        scheme.signature.header().unwrap().clone(),
        HeaderValue::from_str(&BASE64.encode(raw)).unwrap(),
    );
    let verdict = verify_case(&scheme, &case, &headers, &pq, at(case.now_unix));
    assert_eq!(
        verdict,
        Err(VerifyError::MalformedSignature(
            scheme.signature.source.describe()
        ))
    );
}

#[test]
fn an_ecdsa_signature_and_its_malleable_twin_give_one_replay_key() {
    use p256::elliptic_curve::ff::PrimeField;
    let case = provider_cases()
        .into_iter()
        .find(|c| c.preset == "sendgrid" && c.expect == "accept")
        .unwrap();
    let (scheme, mut headers, pq) = provider_setup(&case);
    let verify = |h: &HeaderMap| verify_case(&scheme, &case, h, &pq, at(case.now_unix)).unwrap();
    let original = verify(&headers);
    let der = BASE64
        .decode(
            headers[scheme.signature.header().unwrap()]
                .to_str()
                .unwrap(),
        )
        .unwrap();
    let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
    let twin =
        p256::ecdsa::Signature::from_scalars(sig.r().to_repr(), (-*sig.s()).to_repr()).unwrap();
    let twin_der = twin.to_der().as_bytes().to_vec();
    assert_ne!(twin_der, der, "the twin is a different header value");
    headers.insert(
        scheme.signature.header().unwrap().clone(),
        HeaderValue::from_str(&BASE64.encode(&twin_der)).unwrap(),
    );
    let flipped = verify(&headers);
    assert_eq!(flipped.signature, original.signature);
}

#[test]
fn a_timestamp_is_read_only_in_its_canonical_form() {
    use TimestampUnit::*;
    let cases: &[(&str, TimestampUnit, Option<i128>)] = &[
        ("1796130913", Seconds, Some(1_796_130_913_000)),
        ("1796130913000", Milliseconds, Some(1_796_130_913_000)),
        // The Listrak attack: zeros moved from the body's end to the timestamp's front.
        ("001796130913", Seconds, None),
        ("0179613091", Seconds, None),
        (" 1796130913", Seconds, None),
        ("1796130913 ", Seconds, None),
        ("+1796130913", Seconds, None),
        ("-1796130913", Seconds, None),
        ("1796130913.0", Seconds, None),
        // A digit moved across changes the length: refused, window or not.
        ("179613091", Seconds, None),
        ("17961309130", Seconds, None),
        ("179613091300", Milliseconds, None),
        ("", Seconds, None),
        ("1e9", Seconds, None),
        ("2025-11-23T07:59:30Z", Rfc3339, Some(1_763_884_770_000)),
        (" 2025-11-23T07:59:30Z", Rfc3339, None),
        ("2025-11-23T07:59:30Z\t", Rfc3339, None),
        ("2025-11-23T07:59:30.250Z", Rfc3339, Some(1_763_884_770_250)),
        ("2025-11-23 07:59:30", Rfc3339, Some(1_763_884_770_000)),
        // Found by fuzzing: humantime alone reads these as 07:59:30 too.
        ("2025-11-23T07:59:30.Z", Rfc3339, None),
        ("2025-11-23T07:59:30.+\u{349}Z", Rfc3339, None),
        ("2025-11-23T07:59:30.1234567890Z", Rfc3339, None),
        ("2025-11-23T07:59:30ZZ", Rfc3339, None),
        // Offsets (Orb, Box): the same instant.
        (
            "2025-11-23T08:59:30+01:00",
            Rfc3339,
            Some(1_763_884_770_000),
        ),
        (
            "2025-11-23T02:59:30.250-05:00",
            Rfc3339,
            Some(1_763_884_770_250),
        ),
        (
            "2025-11-23T07:59:30+00:00",
            Rfc3339,
            Some(1_763_884_770_000),
        ),
        ("2025-11-23T07:59:30Z+00:00", Rfc3339, None),
        ("2025-11-23T07:59:30+0100", Rfc3339, None),
        ("2025-11-23T07:59:30+24:00", Rfc3339, None),
        ("2025-11-23T07:59:30+01:60", Rfc3339, None),
        ("2025-11-23T07:59:30+1:000", Rfc3339, None),
        // HTTP dates: IMF-fixdate only, as written back.
        (
            "Sun, 23 Nov 2025 07:59:30 GMT",
            Rfc1123,
            Some(1_763_884_770_000),
        ),
        ("Sunday, 23-Nov-25 07:59:30 GMT", Rfc1123, None),
        ("Sun Nov 23 07:59:30 2025", Rfc1123, None),
        ("Sun, 23 Nov 2025 07:59:30 UTC", Rfc1123, None),
        ("Mon, 23 Nov 2025 07:59:30 GMT", Rfc1123, None),
        (" Sun, 23 Nov 2025 07:59:30 GMT", Rfc1123, None),
        ("Sun, 23 Nov 2025 7:59:30 GMT", Rfc1123, None),
    ];
    for (raw, unit, want) in cases {
        assert_eq!(parse_timestamp_ms(raw, *unit), *want, "{raw:?} as {unit:?}");
    }
}

/// Listrak signs body + timestamp with no separator: a captured request whose body ends in
/// `0` re-sent with that zero moved to the front of the timestamp has the same MAC input.
#[test]
fn moving_body_bytes_into_a_listrak_timestamp_is_refused() {
    let s = preset_scheme("listrak", "LTK-secret-99");
    let now = 1_796_130_913u64;
    let body = b"{\"amount\":100}0";
    let ts = now.to_string();
    let sig = sig_of(&s, &headers(&[("ltk-timestamp", &ts)]), body).unwrap();
    let genuine = headers(&[("ltk-timestamp", &ts), ("ltk-hmacsignature", &sig)]);
    assert_eq!(check(&s, &genuine, body, at(now)), Ok(0));
    // Same signed bytes: body one byte shorter, "0" + timestamp.
    let moved = headers(&[
        ("ltk-timestamp", &format!("0{ts}")),
        ("ltk-hmacsignature", &sig),
    ]);
    assert_eq!(
        check(&s, &moved, &body[..body.len() - 1], at(now)),
        Err(VerifyError::MalformedTimestamp)
    );
}

/// SendGrid signs timestamp + body, has no window, and its timestamp is still pinned.
#[test]
fn sendgrid_timestamp_is_canonical_without_a_window() {
    let v = RawVerify {
        preset: Some("sendgrid".into()),
        public_key: Some("${KEY}".into()),
        ..RawVerify::default()
    };
    let signing = keys::SigningKey::P256(p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap());
    let public = match &signing {
        keys::SigningKey::P256(k) => {
            use p256::pkcs8::EncodePublicKey as _;
            BASE64.encode(k.verifying_key().to_public_key_der().unwrap().as_bytes())
        }
        _ => unreachable!(),
    };
    let s = compile_scheme(v, "t", Path::new("."), &move |_| Some(public.clone()), None)
        .expect("sendgrid compiles");
    assert!(s.timestamp.as_ref().is_some_and(|t| t.window.is_none()));
    let ts_name = "x-twilio-email-event-webhook-timestamp";
    let body = b"[{\"event\":\"delivered\"}]";
    let sign = |ts: &str, body: &[u8]| {
        signed_headers(
            &s,
            headers(&[(ts_name, ts)]),
            body,
            "/",
            SystemTime::now(),
            Some(&signing),
        )
        .unwrap()
    };
    // Years old: no window, accepted.
    assert_eq!(
        check(&s, &sign("1600000000", body), body, at(1_796_130_913)),
        Ok(0)
    );
    // A signature over "1600000000" + "7[...]" re-sent as "16000000007" + "[...]" (or the
    // reverse): same signed bytes, refused because the timestamp is not canonical.
    let mut shifted = b"7".to_vec();
    shifted.extend_from_slice(body);
    let h = sign("1600000000", &shifted);
    let sig = h["x-twilio-email-event-webhook-signature"]
        .to_str()
        .unwrap();
    assert_eq!(
        check(
            &s,
            &headers(&[
                (ts_name, "16000000007"),
                ("x-twilio-email-event-webhook-signature", sig)
            ]),
            body,
            at(1_796_130_913)
        ),
        Err(VerifyError::MalformedTimestamp)
    );
}

/// A Standard Webhooks scheme, the clock, the body `{}` and its id and timestamp headers
/// (unsigned), with the signature (`v1,...`) made for them.
fn standard_webhooks_request() -> (Scheme, u64, HeaderMap, String) {
    let s = preset_scheme(
        "standard-webhooks",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    let now = 1_796_130_913u64;
    let base = headers(&[
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", &now.to_string()),
    ]);
    let sig = sig_of(&s, &base, b"{}").unwrap();
    (s, now, base, sig)
}

#[test]
fn a_header_the_scheme_reads_must_come_once() {
    let (s, now, base, sig) = standard_webhooks_request();
    let body = b"{}";
    let mut good = base.clone();
    good.insert("webhook-signature", sig.parse().unwrap());
    assert_eq!(check(&s, &good, body, at(now)), Ok(0));
    for name in ["webhook-id", "webhook-timestamp"] {
        let mut twice = good.clone();
        twice.append(name, "1".parse().unwrap());
        assert_eq!(
            check(&s, &twice, body, at(now)),
            Err(VerifyError::RepeatedHeader(HeaderName::from_static(name))),
            "{name}"
        );
    }

    // Twilio decides by Content-Type whether the form parameters are the signed message.
    let v = RawVerify {
        preset: Some("twilio".into()),
        secret: Some("${T}".into()),
        ..RawVerify::default()
    };
    let twilio = compile_scheme(
        v,
        "t",
        Path::new("."),
        &|_| Some("token".into()),
        Some("https://hooks.example.com"),
    )
    .unwrap();
    let names: Vec<&str> = twilio.headers_read().map(|h| h.as_str()).collect();
    assert_eq!(names, ["content-type"]);
}

#[test]
fn a_repeated_entry_in_a_structured_header_is_malformed() {
    let s = preset_scheme("stripe", "whsec_test");
    let now = 1_796_130_913u64;
    let body = b"{}";
    let h = signed_headers(&s, HeaderMap::new(), body, "/", at(now), None).unwrap();
    let value = h["stripe-signature"].to_str().unwrap().to_owned();
    assert_eq!(check(&s, &h, body, at(now)), Ok(0));
    let twice = headers(&[("stripe-signature", &format!("{value},t=1"))]);
    assert_eq!(
        check(&s, &twice, body, at(now)),
        Err(VerifyError::MalformedSignature(
            "header stripe-signature".into()
        ))
    );
    // Several signatures (secret rotation), and repeated entries the scheme does not read
    // (other versions), stay allowed.
    let v1 = value.split(',').find(|e| e.starts_with("v1=")).unwrap();
    let two_sigs = headers(&[("stripe-signature", &format!("{value},{v1},v0=aa,v0=bb"))]);
    assert_eq!(check(&s, &two_sigs, body, at(now)), Ok(0));
}

/// Standard Webhooks lists several signatures per version during key rotation
/// (`v1,<a> v1a,<x> v1a,<y>`): none of them is read as anything but a candidate.
#[test]
fn standard_webhooks_may_list_several_signatures_of_any_version() {
    let (s, now, base, sig) = standard_webhooks_request();
    let body = b"{}";
    let mut h = base.clone();
    let listed = format!("{sig} v1a,eA== v1a,eQ== v1,AAAA");
    h.insert("webhook-signature", listed.parse().unwrap());
    assert_eq!(check(&s, &h, body, at(now)), Ok(0));
}

/// Found by fuzzing: signing at a clock past 9999-12-31 with an RFC 3339 timestamp panicked
/// inside `to_string`; it is an error now.
#[test]
fn signing_past_what_rfc3339_can_write_is_an_error_not_a_panic() {
    let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
    let v = RawVerify {
        preset: Some("webflow".into()),
        secret: Some("${S}".into()),
        timestamp: Some(crate::config::file::RawTimestamp {
            unit: Some("rfc3339".into()),
            ..Default::default()
        }),
        ..RawVerify::default()
    };
    let s = compile_scheme(v, "t", Path::new("."), &|_| Some("k".into()), None).unwrap();
    let err = signed_headers(&s, HeaderMap::new(), b"{}", "/", far, None).unwrap_err();
    assert!(err.contains("RFC 3339"), "{err}");
}

#[test]
fn shopify_signature_arrives_under_either_header_name_but_never_both() {
    let secret = "shpss_test";
    let s = preset_scheme("shopify", secret);
    let body = br#"{"id":820982911946154508}"#;
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let sig = BASE64.encode(mac.finalize().into_bytes());
    let now = SystemTime::now();
    // Webhook deliveries, and the newer Events deliveries without the X- prefix.
    for name in ["X-Shopify-Hmac-Sha256", "Shopify-Hmac-Sha256"] {
        assert_eq!(
            check(&s, &headers(&[(name, &sig)]), body, now),
            Ok(0),
            "{name}"
        );
    }
    // Both at once is ambiguous, even when they agree.
    let both = headers(&[
        ("X-Shopify-Hmac-Sha256", &sig),
        ("Shopify-Hmac-Sha256", &sig),
    ]);
    assert!(matches!(
        check(&s, &both, body, now),
        Err(VerifyError::MalformedSignature(_))
    ));
    assert!(matches!(
        check(&s, &headers(&[]), body, now),
        Err(VerifyError::MissingSignature(_))
    ));
    // Signing writes the classic name.
    let signed = signed_headers(&s, HeaderMap::new(), body, "/", now, None).unwrap();
    assert_eq!(signed.get("x-shopify-hmac-sha256").unwrap(), sig.as_str());
}

/// A scheme from a `verify:` block written in YAML, its secret given as `${SECRET}`.
fn yaml_scheme(yaml: &str, secret: &str) -> Scheme {
    let v: RawVerify = serde_yaml::from_str(yaml).expect("a verify block");
    let secret = secret.to_owned();
    compile_scheme(
        v,
        "test",
        Path::new("."),
        &move |_| Some(secret.clone()),
        None,
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn one_header(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, value.parse().unwrap());
    h
}

#[test]
fn hmac_sha384_and_sha512_match_rfc_4231() {
    // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
    let data = b"what do ya want for nothing?";
    let cases = [
        (
            "hmac-sha384",
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
        ),
        (
            "hmac-sha512",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
    ];
    for (algorithm, mac) in cases {
        let s = yaml_scheme(
            &format!("{{ algorithm: {algorithm}, signature: {{ header: x-sig }}, secret: \"${{SECRET}}\" }}"),
            "Jefe",
        );
        assert_eq!(
            check(&s, &one_header("x-sig", mac), data, SystemTime::now()),
            Ok(0),
            "{algorithm}"
        );
        let upper = mac.to_ascii_uppercase();
        assert_eq!(
            check(&s, &one_header("x-sig", &upper), data, SystemTime::now()),
            Ok(0)
        );
        assert_eq!(
            check(
                &s,
                &one_header("x-sig", mac),
                b"what do ya want for nothing!",
                SystemTime::now()
            ),
            Err(VerifyError::Mismatch)
        );
        // A signature of another algorithm's length is malformed, never a partial match.
        assert_eq!(
            check(
                &s,
                &one_header("x-sig", &mac[..64]),
                data,
                SystemTime::now()
            ),
            Err(VerifyError::MalformedSignature("header x-sig".into()))
        );
    }
}

#[test]
fn a_plain_digest_hashes_the_secret_then_the_message() {
    // FIPS 180 "abc" digests: the secret "a" then the body "bc".
    let cases = [
        ("digest-sha1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (
            "digest-sha256",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            "digest-sha512",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
    ];
    for (algorithm, digest) in cases {
        let s = yaml_scheme(
            &format!("{{ algorithm: {algorithm}, signature: {{ header: x-sig }}, secret: \"${{SECRET}}\" }}"),
            "a",
        );
        let h = one_header("x-sig", digest);
        assert_eq!(
            check(&s, &h, b"bc", SystemTime::now()),
            Ok(0),
            "{algorithm}"
        );
        assert_eq!(
            check(&s, &h, b"bd", SystemTime::now()),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            sig_of(&s, &HeaderMap::new(), b"bc").unwrap(),
            digest,
            "sign agrees"
        );
    }
}

#[test]
fn a_key_can_be_the_sha1_of_the_configured_text() {
    // Braintree's SDKs (braintree_python tests/unit/test_webhooks.py, 13bd7ed7): the
    // challenge "20f9f8ed05f77439fe955c977e4c8a53" answered with HMAC-SHA1 keyed by
    // SHA-1("integration_private_key") is d9b899556c966b3f06945ec21311865d35df3ce4.
    let s = yaml_scheme(
        "{ algorithm: hmac-sha1, key_encoding: sha1_of_text, signature: { header: x-sig }, secret: \"${SECRET}\" }",
        "integration_private_key",
    );
    let h = one_header("x-sig", "d9b899556c966b3f06945ec21311865d35df3ce4");
    assert_eq!(
        check(
            &s,
            &h,
            b"20f9f8ed05f77439fe955c977e4c8a53",
            SystemTime::now()
        ),
        Ok(0)
    );
}

#[test]
fn base64url_signatures_are_read_with_or_without_padding() {
    // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog") is
    // f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8.
    let mac =
        hex::decode("f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8").unwrap();
    let s = yaml_scheme(
        "{ signature: { header: x-sig, encoding: base64url }, secret: \"${SECRET}\" }",
        "key",
    );
    let body = b"The quick brown fox jumps over the lazy dog";
    let unpadded = BASE64URL.encode(&mac);
    assert!(
        unpadded.contains('-') || unpadded.contains('_'),
        "{unpadded}"
    );
    for value in [unpadded.clone(), format!("{unpadded}=")] {
        assert_eq!(
            check(&s, &one_header("x-sig", &value), body, SystemTime::now()),
            Ok(0)
        );
    }
    // The standard alphabet is another encoding, not accepted unless listed.
    let standard = BASE64.encode(&mac);
    assert_eq!(
        check(&s, &one_header("x-sig", &standard), body, SystemTime::now()),
        Err(VerifyError::MalformedSignature("header x-sig".into()))
    );
    assert_eq!(sig_of(&s, &HeaderMap::new(), body).unwrap(), unpadded);
}

#[test]
fn an_http_date_timestamp_is_signed_and_checked_in_its_window() {
    // Klaviyo's shape: the body then an RFC 1123 timestamp header.
    let s = yaml_scheme(
        "{ signature: { header: klaviyo-signature }, message: [body, { header: klaviyo-timestamp }], \
         timestamp: { header: klaviyo-timestamp, unit: rfc1123, tolerance: 5m }, secret: \"${SECRET}\" }",
        "k",
    );
    let now = UNIX_EPOCH + Duration::from_secs(1_763_884_770);
    let mut h = one_header("klaviyo-timestamp", "Sun, 23 Nov 2025 07:59:30 GMT");
    let sig = sig_of(&s, &h, b"{}").unwrap();
    h.insert("klaviyo-signature", sig.parse().unwrap());
    assert_eq!(check(&s, &h, b"{}", now), Ok(0));
    assert_eq!(
        check(&s, &h, b"{}", now + Duration::from_secs(301)),
        Err(VerifyError::StaleTimestamp)
    );
    // The obsolete RFC 850 form of the same instant is another text: malformed.
    h.insert(
        "klaviyo-timestamp",
        "Sunday, 23-Nov-25 07:59:30 GMT".parse().unwrap(),
    );
    assert_eq!(
        check(&s, &h, b"{}", now),
        Err(VerifyError::MalformedTimestamp)
    );
}

#[test]
fn a_positional_list_holds_the_timestamp_then_any_number_of_signatures() {
    // Recurly's Ruby client (recurly-client-ruby spec/recurly/webhooks_spec.rb, 5233e1b0):
    // the header `{ts_ms},{sig},...`, the signature over `{ts}.{body}`.
    let s = yaml_scheme(
        "{ signature: { header: recurly-signature, list: { separator: \",\", first: t } }, \
         message: [{ signature_entry: t }, { literal: \".\" }, body], \
         timestamp: { signature_entry: t, unit: milliseconds, tolerance: none }, secret: \"${SECRET}\" }",
        "354fab5bd35f5a0d50845ee7e30165244468b13c2c343f104e4e730a59326d9d",
    );
    let body = br#"{"id":"rjxwmwedwqug","object_type":"account","site_id":"qc326l1hl8k9","event_type":"created","event_time":"2022-09-13T21:18:40Z","account_code":"adfas23zzz14123"}"#;
    let sig = "ad24699f3beaa24c9af2cc7ada3ce4c835da0090194241b9d3add83d27f14bc3";
    let now = SystemTime::now();
    let header = |v: String| one_header("recurly-signature", &v);
    assert_eq!(
        check(&s, &header(format!("1663103925004,{sig}")), body, now),
        Ok(0)
    );
    // A bogus signature before the real one, as the spec also sends: any may match.
    assert_eq!(
        check(
            &s,
            &header(format!("1663103925004,de1ec7ab1e,{sig}")),
            body,
            now
        ),
        Ok(0)
    );
    // Another timestamp with the same signature: it is signed.
    assert_eq!(
        check(&s, &header(format!("1663103925005,{sig}")), body, now),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        check(&s, &header(",".to_owned() + sig), body, now),
        Err(VerifyError::MalformedSignature(
            "header recurly-signature".into()
        ))
    );
    // `hookgate sign` writes the same layout.
    let mut h = header("1663103925004,x".into());
    h.remove("recurly-signature");
    let written = sig_of(&s, &h, body).unwrap();
    let (ts, signature) = written.split_once(',').unwrap();
    assert_eq!(ts.len(), 13);
    assert_eq!(
        check(&s, &header(format!("{ts},{signature}")), body, now),
        Ok(0)
    );
}

#[test]
fn each_of_several_headers_may_carry_the_signature_and_each_comes_once() {
    // Box: a primary and a secondary signature (two keys in rotation); DocuSign: numbered
    // headers, one per configured key.
    let boxed = yaml_scheme(
        "{ signature: { headers: [box-signature-primary, box-signature-secondary], encoding: base64 }, \
         secrets: [\"${SECRET}\", other] }",
        "primary",
    );
    let body = b"{\"type\":\"webhook_event\"}";
    let mac = |key: &str| BASE64.encode(hmac_of(key, body));
    let mut h = HeaderMap::new();
    h.insert("box-signature-primary", mac("wrong").parse().unwrap());
    h.insert("box-signature-secondary", mac("other").parse().unwrap());
    assert_eq!(
        check(&boxed, &h, body, SystemTime::now()),
        Ok(1),
        "the secondary matched"
    );
    h.insert("box-signature-primary", mac("primary").parse().unwrap());
    assert_eq!(check(&boxed, &h, body, SystemTime::now()), Ok(0));
    h.append("box-signature-primary", mac("primary").parse().unwrap());
    assert_eq!(
        check(&boxed, &h, body, SystemTime::now()),
        Err(VerifyError::MalformedSignature(
            "headers box-signature-primary to box-signature-secondary".into()
        )),
        "one header twice"
    );
    assert_eq!(
        check(&boxed, &HeaderMap::new(), body, SystemTime::now()),
        Err(VerifyError::MissingSignature(
            "headers box-signature-primary to box-signature-secondary".into()
        ))
    );

    let docusign = yaml_scheme(
        "{ signature: { numbered: { prefix: x-docusign-signature-, max: 100 }, encoding: base64 }, \
         secret: \"${SECRET}\" }",
        "connect-key",
    );
    let h = one_header("x-docusign-signature-37", &mac("connect-key"));
    assert_eq!(check(&docusign, &h, body, SystemTime::now()), Ok(0));
    let h = one_header("x-docusign-signature-101", &mac("connect-key"));
    assert!(matches!(
        check(&docusign, &h, body, SystemTime::now()),
        Err(VerifyError::MissingSignature(_))
    ));
}

#[test]
fn a_signature_can_be_a_json_field_over_signed_fields_only() {
    // Mailgun's shape: the signature and what it signs (timestamp then token) are fields of
    // the JSON body, which is itself not signed.
    let mailgun = yaml_scheme(
        "{ signature: { json: /signature/signature }, \
         message: [{ json: /signature/timestamp }, { json: /signature/token }], \
         body_signed: false, secret: \"${SECRET}\" }",
        "k",
    );
    let sig = hex::encode(hmac_of("k", b"1529006854t1"));
    let body = |token: &str, rest: &str| {
        format!(
            r#"{{"signature":{{"token":"{token}","timestamp":"1529006854","signature":"{sig}"}}{rest}}}"#
        )
    };
    let now = SystemTime::now();
    let none = one_header("content-type", "application/json");
    assert_eq!(
        check(&mailgun, &none, body("t1", "").as_bytes(), now),
        Ok(0)
    );
    assert_eq!(
        check(&mailgun, &none, body("t2", "").as_bytes(), now),
        Err(VerifyError::Mismatch),
        "the token is signed"
    );
    // What is not signed is not checked: the reason `body_signed: false` is reported.
    assert_eq!(
        check(
            &mailgun,
            &none,
            body("t1", r#","event":"other""#).as_bytes(),
            now
        ),
        Ok(0)
    );
    // Still one strict parse: a repeated key is refused, signed or not.
    assert!(matches!(
        check(
            &mailgun,
            &none,
            body("t1", r#","signature":{}"#).as_bytes(),
            now
        ),
        Err(VerifyError::NotStrictJson(_))
    ));
    assert_eq!(
        check(&mailgun, &none, br#"{"signature":{"signature":1}}"#, now),
        Err(VerifyError::MalformedSignature(
            "JSON field /signature/signature".into()
        ))
    );
    assert_eq!(
        check(&mailgun, &none, br#"{"e":1}"#, now),
        Err(VerifyError::MissingSignature(
            "JSON field /signature/signature".into()
        ))
    );
}

#[test]
fn a_signature_can_be_a_query_parameter_or_a_form_field_read_once() {
    let verify = |s: &Scheme, pq: &str, headers: &HeaderMap, body: &[u8]| {
        s.verify(
            &RequestView {
                method: &http::Method::POST,
                json: &JsonBody::default(),
                headers,
                body: &RawBody::from(body.to_vec()),
                path_and_query: pq,
            },
            SystemTime::now(),
        )
        .map(|v| v.key_index)
    };
    let query = yaml_scheme("{ signature: { query: sig }, secret: \"${SECRET}\" }", "k");
    let sig = hex::encode(hmac_of("k", b"{}"));
    let none = HeaderMap::new();
    assert_eq!(
        verify(&query, &format!("/h?sig={sig}"), &none, b"{}"),
        Ok(0)
    );
    assert_eq!(
        verify(&query, &format!("/h?sig={sig}&sig={sig}"), &none, b"{}"),
        Err(VerifyError::MalformedSignature(
            "query parameter sig".into()
        ))
    );
    assert_eq!(
        verify(&query, "/h", &none, b"{}"),
        Err(VerifyError::MissingSignature("query parameter sig".into()))
    );
    // A form field holding the signature of another field.
    let form = yaml_scheme(
        "{ signature: { form: sig }, message: [{ form: payload }], body_signed: false, \
         secret: \"${SECRET}\" }",
        "k",
    );
    let form_type = one_header("content-type", "application/x-www-form-urlencoded");
    let good = hex::encode(hmac_of("k", b"abc"));
    let body: &'static [u8] = Box::leak(format!("payload=abc&sig={good}").into_bytes().into());
    assert_eq!(verify(&form, "/", &form_type, body), Ok(0));
    let twice: &'static [u8] = Box::leak(
        format!("payload=abc&sig={good}&sig={good}")
            .into_bytes()
            .into(),
    );
    assert_eq!(
        verify(&form, "/", &form_type, twice),
        Err(VerifyError::MalformedSignature("form field sig".into()))
    );
    assert_eq!(
        verify(&form, "/", &none, body),
        Err(VerifyError::MissingSignature("form field sig".into())),
        "not a form body"
    );
}

fn hmac_of(key: &str, data: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn shared_secrets_are_compared_whole_wherever_they_are_sent() {
    let now = SystemTime::now();
    // HTTP Basic (Chargebee, Postmark): `Basic base64(user:password)` against "user:password".
    let basic = yaml_scheme(
        "{ algorithm: token, signature: { header: authorization, prefix: \"Basic \", encoding: base64 }, \
         message: [], secret: \"${SECRET}\" }",
        "hooks:s3cret",
    );
    let auth = |v: &str| one_header("authorization", v);
    let basic_of = |creds: &str| format!("Basic {}", BASE64.encode(creds));
    assert_eq!(
        check(&basic, &auth(&basic_of("hooks:s3cret")), b"{}", now),
        Ok(0)
    );
    assert_eq!(basic.strength(), Strength::SharedSecret);
    for wrong in ["other:s3cret", "hooks:s3cre", "hooks:s3cret ", "hooks"] {
        assert_eq!(
            check(&basic, &auth(&basic_of(wrong)), b"{}", now),
            Err(VerifyError::Mismatch),
            "{wrong}"
        );
    }
    assert_eq!(
        check(&basic, &auth("Bearer aG9va3M6czNjcmV0"), b"{}", now),
        Err(VerifyError::MalformedSignature(
            "header authorization".into()
        ))
    );
    // A bearer token in a named header, with its prefix.
    let bearer = yaml_scheme(
        "{ algorithm: token, signature: { header: authorization, prefix: \"Bearer \" }, \
         message: [], secret: \"${SECRET}\" }",
        "tok_123",
    );
    assert_eq!(check(&bearer, &auth("Bearer tok_123"), b"{}", now), Ok(0));
    assert_eq!(
        check(&bearer, &auth("Bearer tok_1234"), b"{}", now),
        Err(VerifyError::Mismatch)
    );
    // In a JSON field (Microsoft Graph's clientState): from the one strict parse.
    let graph = yaml_scheme(
        "{ algorithm: token, signature: { json: /clientState }, message: [], secret: \"${SECRET}\" }",
        "state-1",
    );
    let none = HeaderMap::new();
    assert_eq!(
        check(&graph, &none, br#"{"clientState":"state-1"}"#, now),
        Ok(0)
    );
    assert_eq!(
        check(&graph, &none, br#"{"clientState":"state-2"}"#, now),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        check(
            &graph,
            &none,
            br#"{"clientState":"state-2","clientState":"state-1"}"#,
            now
        ),
        Err(VerifyError::NotStrictJson(_))
    ));
}

/// `tests/vectors/jwt.json`: an RS256 token made with openssl, the confusion and `none`
/// forgeries of it, and RFC 7515's HS256 example.
fn jwt_vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../tests/vectors/jwt.json")).unwrap()
}

/// An HS256 token over `claims`, made here with HMAC and base64url alone.
fn hs256(secret: &str, claims: &str) -> String {
    let head = BASE64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let signed = format!("{head}.{}", BASE64URL.encode(claims));
    format!(
        "{signed}.{}",
        BASE64URL.encode(hmac_of(secret, signed.as_bytes()))
    )
}

fn at_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn a_jwt_verifies_by_its_signature_its_times_its_issuer_and_its_body_claim() {
    let v = jwt_vectors();
    let key = v["rsa_public_key"].as_str().unwrap();
    let yaml = format!(
        "{{ algorithm: jwt, signature: {{ header: x-webhook-signature }}, \
         jwt: {{ algorithms: [RS256], issuer: netlify, require: [exp], \
         body_sha256: {{ claim: sha256, encoding: hex }} }}, public_key: {key:?}, key_encoding: raw }}"
    );
    let v2: RawVerify = serde_yaml::from_str(&yaml).unwrap();
    let s = compile_scheme(v2, "test", Path::new("."), &|_| None, None).unwrap();
    let body = v["body"].as_str().unwrap().as_bytes();
    let token = |name: &str| one_header("x-webhook-signature", v[name].as_str().unwrap());
    let inside = at_unix(1_763_885_000);
    assert_eq!(check(&s, &token("rs256"), body, inside), Ok(0));
    // The body is bound by its digest.
    assert_eq!(
        check(
            &s,
            &token("rs256"),
            b"{\"event\":\"deploy_failed\"}",
            inside
        ),
        Err(VerifyError::ClaimMismatch("sha256".into()))
    );
    // Past exp (with the 30 s leeway), refused.
    assert_eq!(
        check(&s, &token("rs256"), body, at_unix(1_763_888_400 + 31)),
        Err(VerifyError::StaleTimestamp)
    );
    assert_eq!(
        check(&s, &token("rs256"), body, at_unix(1_763_888_400 + 29)),
        Ok(0)
    );
    // HS256 keyed with the RSA public key's PEM, and alg none: never tried.
    for forged in ["hs256_confusion", "none"] {
        assert_eq!(
            check(&s, &token(forged), body, inside),
            Err(VerifyError::MalformedSignature("JWT".into())),
            "{forged}"
        );
    }
    // A flipped signature bit is a mismatch.
    let mut bad = v["rs256"].as_str().unwrap().to_owned();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        check(&s, &one_header("x-webhook-signature", &bad), body, inside),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn rfc_7515s_hs256_example_verifies_and_its_claims_are_checked() {
    let v = jwt_vectors();
    let rfc = &v["rfc7515"];
    let s = yaml_scheme(
        "{ algorithm: jwt, signature: { header: authorization, prefix: \"Bearer \" }, \
         jwt: { algorithms: [HS256], issuer: joe, leeway: 0s }, body_signed: false, \
         key_encoding: base64url, secret: \"${SECRET}\" }",
        rfc["key_base64url"].as_str().unwrap(),
    );
    let h = one_header(
        "authorization",
        &format!("Bearer {}", rfc["token"].as_str().unwrap()),
    );
    let exp = rfc["exp"].as_u64().unwrap();
    assert_eq!(check(&s, &h, b"{}", at_unix(exp)), Ok(0));
    assert_eq!(
        check(&s, &h, b"{}", at_unix(exp + 1)),
        Err(VerifyError::StaleTimestamp)
    );
    let other_issuer = yaml_scheme(
        "{ algorithm: jwt, signature: { header: authorization, prefix: \"Bearer \" }, \
         jwt: { algorithms: [HS256], issuer: mallory }, body_signed: false, \
         key_encoding: base64url, secret: \"${SECRET}\" }",
        rfc["key_base64url"].as_str().unwrap(),
    );
    assert_eq!(
        check(&other_issuer, &h, b"{}", at_unix(exp)),
        Err(VerifyError::ClaimMismatch("iss".into()))
    );
}

#[test]
fn jwt_claims_must_equal_their_values_or_as_lists_hold_them() {
    let token = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"claims-secret"),
        )
        .unwrap()
    };
    let s = yaml_scheme(
        "{ algorithm: jwt, signature: { header: authorization, prefix: \"Bearer \" }, \
         jwt: { algorithms: [HS256], claims: { roles: AzureEventGridSecureWebhookSubscriber, \
         email_verified: true } }, body_signed: false, secret: \"${SECRET}\" }",
        "claims-secret",
    );
    let check_claims = |claims: serde_json::Value| {
        let h = one_header("authorization", &format!("Bearer {}", token(claims)));
        check(&s, &h, b"{}", at_unix(1_800_000_000))
    };
    let role = "AzureEventGridSecureWebhookSubscriber";
    assert_eq!(
        check_claims(serde_json::json!({ "roles": [ "Reader", role ], "email_verified": true })),
        Ok(0)
    );
    assert_eq!(
        check_claims(serde_json::json!({ "roles": role, "email_verified": true })),
        Ok(0)
    );
    for (claims, claim) in [
        (
            serde_json::json!({ "roles": ["Reader"], "email_verified": true }),
            "roles",
        ),
        (serde_json::json!({ "email_verified": true }), "roles"),
        (
            serde_json::json!({ "roles": [role], "email_verified": "true" }),
            "email_verified",
        ),
        (serde_json::json!({ "roles": [role] }), "email_verified"),
    ] {
        assert_eq!(
            check_claims(claims.clone()),
            Err(VerifyError::ClaimMismatch(claim.into())),
            "{claims}"
        );
    }
}

#[test]
fn jwt_times_audience_and_required_claims_follow_the_clock_passed_in() {
    let s = yaml_scheme(
        "{ algorithm: jwt, signature: { header: authorization, prefix: \"Bearer \" }, \
         jwt: { algorithms: [HS256, HS512], audience: hooks, max_age: 5m, leeway: 10s, \
         body_sha256: { claim: payload_hash, encoding: hex } }, secret: \"${SECRET}\" }",
        "vonage-signature-secret",
    );
    let body = b"{\"status\":\"delivered\"}";
    let hash = hex::encode(sha2::Sha256::digest(body));
    let now = 1_763_884_800u64;
    let bearer = |claims: String| {
        one_header(
            "authorization",
            &format!("Bearer {}", hs256("vonage-signature-secret", &claims)),
        )
    };
    let claims = |iat: u64, extra: &str| {
        format!(r#"{{"iat":{iat},"aud":["other","hooks"],"payload_hash":"{hash}"{extra}}}"#)
    };
    assert_eq!(
        check(&s, &bearer(claims(now, "")), body, at_unix(now)),
        Ok(0)
    );
    assert_eq!(
        check(&s, &bearer(claims(now - 311, "")), body, at_unix(now)),
        Err(VerifyError::StaleTimestamp),
        "iat older than max_age + leeway"
    );
    assert_eq!(
        check(&s, &bearer(claims(now + 11, "")), body, at_unix(now)),
        Err(VerifyError::FutureTimestamp)
    );
    assert_eq!(
        check(
            &s,
            &bearer(claims(now, &format!(",\"nbf\":{}", now + 60))),
            body,
            at_unix(now)
        ),
        Err(VerifyError::FutureTimestamp),
        "not yet valid"
    );
    assert_eq!(
        check(
            &s,
            &bearer(format!(
                r#"{{"iat":{now},"aud":"elsewhere","payload_hash":"{hash}"}}"#
            )),
            body,
            at_unix(now)
        ),
        Err(VerifyError::ClaimMismatch("aud".into()))
    );
    assert_eq!(
        check(
            &s,
            &bearer(format!(r#"{{"aud":"hooks","payload_hash":"{hash}"}}"#)),
            body,
            at_unix(now)
        ),
        Err(VerifyError::MissingTimestamp),
        "max_age needs iat"
    );
    assert_eq!(
        check(
            &s,
            &bearer(format!(
                r#"{{"iat":"{now}","aud":"hooks","payload_hash":"{hash}"}}"#
            )),
            body,
            at_unix(now)
        ),
        Err(VerifyError::MalformedTimestamp)
    );
    // The wrong secret: a mismatch, not a malformed token.
    let wrong = one_header(
        "authorization",
        &format!("Bearer {}", hs256("another-secret", &claims(now, ""))),
    );
    assert_eq!(
        check(&s, &wrong, body, at_unix(now)),
        Err(VerifyError::Mismatch)
    );
}

/// HubSpot's SDK case has an 8-digit millisecond timestamp (15000000), which the preset
/// refuses as malformed (13 digits only). With the timestamp check off, its MAC must match the
/// message the preset builds: method + URL + body + timestamp header.
#[test]
fn hubspot_sdk_case_signs_the_message_hookgate_builds() {
    let case = provider_cases()
        .into_iter()
        .find(|c| c.preset == "hubspot" && c.name == "sdk-case-8-digit-timestamp")
        .expect("the SDK case is in providers.json");
    let mut v = presets::find("hubspot").unwrap().raw_verify();
    v.timestamp = None;
    v.secret = Some("${KEY}".into());
    let key = case.secret.clone();
    let scheme = compile_scheme(
        v,
        "hubspot",
        Path::new("."),
        &move |_| Some(key.clone()),
        Some("https://www.example.com"),
    )
    .unwrap();
    let (_, headers, path_and_query) = provider_setup(&case);
    let verdict = verify_case(&scheme, &case, &headers, &path_and_query, at(case.now_unix));
    assert_eq!(verdict.map(|v| v.key_index), Ok(0));
    let mut tampered = case.clone();
    tampered.body.push(' ');
    let verdict = verify_case(
        &scheme,
        &tampered,
        &headers,
        &path_and_query,
        at(case.now_unix),
    );
    assert!(verdict.is_err());
}

/// Mandrill signs the URL and the sorted form parameters, no body hash: the same bytes sent
/// as anything but a form would be covered by nothing, so they are refused.
#[test]
fn a_form_only_scheme_refuses_a_body_that_is_not_a_form() {
    let case = provider_cases()
        .into_iter()
        .find(|c| c.preset == "mandrill" && c.expect == "accept")
        .unwrap();
    let (scheme, mut headers, path_and_query) = provider_setup(&case);
    let now = at(case.now_unix);
    assert!(verify_case(&scheme, &case, &headers, &path_and_query, now).is_ok());
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    assert_eq!(
        verify_case(&scheme, &case, &headers, &path_and_query, now).map(|v| v.key_index),
        Err(VerifyError::UnsignedBody)
    );
}

/// `json: /value/*/clientState` (Microsoft Graph): every item of the array carries the field,
/// and every value must be one of the route's tokens; one bad, empty or missing item refuses
/// the whole request. Only for a token compared whole.
#[test]
fn a_field_of_every_item_must_each_match_a_token() {
    let v: RawVerify = serde_yaml::from_str(
        "{ algorithm: token, signature: { json: /value/*/clientState }, message: [], \
         secrets: [\"${A}\", \"${B}\"] }",
    )
    .unwrap();
    let graph = compile_scheme(
        v,
        "test",
        Path::new("."),
        &|name: &str| Some(format!("state-{name}")),
        None,
    )
    .unwrap();
    let now = SystemTime::now();
    let none = HeaderMap::new();
    let body = |states: &[&str]| {
        let items: Vec<String> = states
            .iter()
            .map(|s| format!(r#"{{"subscriptionId":"s","clientState":{s}}}"#))
            .collect();
        format!(r#"{{"value":[{}]}}"#, items.join(","))
    };
    let verdict = |states: &[&str]| check(&graph, &none, body(states).as_bytes(), now);
    let every = "JSON field /value/*/clientState".to_owned();
    assert_eq!(verdict(&[r#""state-A""#]), Ok(0));
    assert_eq!(
        verdict(&[r#""state-B""#, r#""state-A""#]),
        Ok(1),
        "two subscriptions"
    );
    assert_eq!(
        verdict(&[r#""state-A""#, r#""state-C""#]),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        verdict(&[r#""state-A""#, r#""""#]),
        Err(VerifyError::MalformedSignature(every.clone()))
    );
    assert_eq!(
        verdict(&[r#""state-A""#, "1"]),
        Err(VerifyError::MalformedSignature(every.clone()))
    );
    assert_eq!(
        verdict(&[r#""state-A""#, "null"]),
        Err(VerifyError::MissingSignature(every.clone()))
    );
    assert_eq!(
        verdict(&[]),
        Err(VerifyError::MalformedSignature(every.clone()))
    );
    assert_eq!(
        check(
            &graph,
            &none,
            br#"{"value":{"clientState":"state-A"}}"#,
            now
        ),
        Err(VerifyError::MalformedSignature(every.clone()))
    );
    assert_eq!(
        check(&graph, &none, br#"{"items":[]}"#, now),
        Err(VerifyError::MissingSignature(every))
    );
    // Compiled only for a token compared whole, with one `*`.
    for bad in [
        "{ signature: { json: /value/*/sig }, message: [body], secret: x }",
        "{ algorithm: token, signature: { json: /value/*/s, encoding: base64 }, message: [], secret: x }",
        "{ algorithm: token, signature: { json: /a/*/b/*/c }, message: [], secret: x }",
    ] {
        let v: RawVerify = serde_yaml::from_str(bad).unwrap();
        let compiled = compile_scheme(v, "test", Path::new("."), &|_: &str| None, None);
        let errors = format!("{:?}", compiled.expect_err(bad));
        assert!(errors.contains("`*`"), "{bad}: {errors}");
    }
}

/// `explain` on an `each:` scheme shows the first item that fails, not one that verifies.
#[test]
fn explain_shows_the_first_failing_item_of_an_each_scheme() {
    let case = provider_cases()
        .into_iter()
        .find(|c| c.preset == "adyen" && c.name == "valid-two-items")
        .unwrap();
    let (scheme, headers, path_and_query) = provider_setup(&case);
    let now = at(case.now_unix);
    let explain = |body: &str| {
        let body = RawBody::from(bytes::Bytes::from(body.to_owned()));
        let json = JsonBody::default();
        let req = RequestView {
            method: &http::Method::POST,
            headers: &headers,
            body: &body,
            path_and_query: &path_and_query,
            json: &json,
        };
        scheme.explain(&req, now)
    };
    let fine = explain(&case.body);
    assert!(fine.verdict.is_ok());
    assert!(
        fine.steps[0].ends_with("item 0 shown; every item verifies"),
        "{:?}",
        fine.steps
    );
    // The second item's amount changed: its signature no longer matches.
    let at_second = case.body.rfind("\"value\":1130").unwrap();
    let forged = format!(
        "{}\"value\":9{}",
        &case.body[..at_second],
        &case.body[at_second + "\"value\":".len()..]
    );
    let refused = explain(&forged);
    assert_eq!(
        refused.verdict.map(|v| v.key_index),
        Err(VerifyError::Mismatch)
    );
    assert!(
        refused.steps[0].ends_with("item 1 shown, the first that fails"),
        "{:?}",
        refused.steps
    );
    assert!(
        refused.steps.iter().any(|s| s.contains("\"91130\"")),
        "{:?}",
        refused.steps
    );
}

/// A well-formed list of tagged signatures with none for this route's key id is refused as a
/// missing signature that names the id, not as a malformed field (Braintree after a key change).
#[test]
fn tagged_signatures_without_this_routes_key_id_say_so() {
    let case = provider_cases()
        .into_iter()
        .find(|c| c.preset == "braintree" && c.name == "signed-for-another-key-id")
        .unwrap();
    let (scheme, headers, path_and_query) = provider_setup(&case);
    assert_eq!(
        verify_case(&scheme, &case, &headers, &path_and_query, at(case.now_unix))
            .map(|v| v.key_index),
        Err(VerifyError::MissingSignature(
            "form field bt_signature (no entry bt_public_key_71)".into()
        ))
    );
}

/// A sender that signs only some fields leaves the rest of the body open, so bodies the app
/// could read another way are refused (the hostile review's attacks, each on a genuine
/// request): a JSON body sent as a form, keys equal but for case, an encoded body, form names
/// PHP or Rails file under a signed field.
#[test]
fn a_fields_only_body_the_app_could_read_another_way_is_refused() {
    let genuine = |preset: &str, name: &str| {
        provider_cases()
            .into_iter()
            .find(|c| c.preset == preset && c.name == name)
            .unwrap()
    };
    let verdict = |case: &ProviderCase, headers: &HeaderMap, body: &str| {
        let (scheme, _, path_and_query) = provider_setup(case);
        let mut case = case.clone();
        case.body = body.to_owned();
        verify_case(&scheme, &case, headers, &path_and_query, at(case.now_unix))
            .map(|v| v.key_index)
    };
    let ambiguous = |v: Result<usize, VerifyError>| matches!(v, Err(VerifyError::BodyAmbiguous(_)));

    let adyen = genuine("adyen", "valid-sdk-2");
    let (_, json_headers, _) = provider_setup(&adyen);
    assert_eq!(verdict(&adyen, &json_headers, &adyen.body), Ok(0));
    let form = one_header("content-type", "application/x-www-form-urlencoded");
    assert!(
        ambiguous(verdict(&adyen, &form, &adyen.body)),
        "JSON sent as a form"
    );
    let mut no_type = json_headers.clone();
    no_type.remove("content-type");
    assert!(
        ambiguous(verdict(&adyen, &no_type, &adyen.body)),
        "no content type"
    );
    let json_utf8 = one_header("content-type", "application/json; charset=utf-8");
    assert_eq!(verdict(&adyen, &json_utf8, &adyen.body), Ok(0));
    // `Success` after the genuine `success`: Go's decoder would keep `true`.
    let shadowed = adyen.body.replace(
        r#""success":"true""#,
        r#""success":"true","Success":"false""#,
    );
    assert!(ambiguous(verdict(&adyen, &json_headers, &shadowed)), "case");
    let long_s = adyen.body.replace(
        r#""success":"true""#,
        "\"success\":\"true\",\"\u{17f}uccess\":\"false\"",
    );
    assert!(ambiguous(verdict(&adyen, &json_headers, &long_s)), "long s");
    let mut deflated = json_headers.clone();
    deflated.insert("content-encoding", HeaderValue::from_static("deflate"));
    assert!(
        ambiguous(verdict(&adyen, &deflated, &adyen.body)),
        "encoded"
    );

    let bt = genuine("braintree", "valid-computed");
    let (_, form_headers, _) = provider_setup(&bt);
    assert_eq!(verdict(&bt, &form_headers, &bt.body), Ok(0));
    for extra in [
        "bt.payload=RVZJTA%3D%3D",
        "bt_payload[]=RVZJTA",
        "+bt_payload=RVZJTA",
    ] {
        let body = format!("{}&{extra}", bt.body);
        assert!(ambiguous(verdict(&bt, &form_headers, &body)), "{extra}");
    }
    let body = format!("{}&other.field=1", bt.body);
    assert_eq!(
        verdict(&bt, &form_headers, &body),
        Ok(0),
        "other names are the app's"
    );
}

/// The `ebay` preset with a route's credentials (the key API's token grant).
fn ebay_scheme() -> Scheme {
    use crate::config::file::{RawKeyToken, RawKeyUrl};
    let v = RawVerify {
        preset: Some("ebay".into()),
        key_url: Some(RawKeyUrl {
            token: Some(RawKeyToken {
                client_id: Some("${ID}".into()),
                client_secret: Some("${SECRET}".into()),
                ..RawKeyToken::default()
            }),
            ..RawKeyUrl::default()
        }),
        ..RawVerify::default()
    };
    compile_scheme(
        v,
        "test",
        Path::new("."),
        &|_| Some("credential".into()),
        None,
    )
    .expect("preset compiles")
}

#[test]
fn ebays_own_sdk_vectors_verify_by_the_bodys_compact_form() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/vectors/ebay.json")).unwrap();
    let scheme = ebay_scheme();
    let Keys::Fetched(key) = &scheme.keys else {
        panic!("ebay fetches its key")
    };
    let doc = fetched::KeyDoc::parse(key, v["key_answer"].to_string().as_bytes()).unwrap();
    let verify = |signature: &str, body: &str| {
        let headers = headers(&[("x-ebay-signature", signature)]);
        let body = RawBody::from(body.as_bytes().to_vec());
        let json = JsonBody::default();
        let view = RequestView {
            method: &http::Method::POST,
            json: &json,
            headers: &headers,
            body: &body,
            path_and_query: "/webhooks/ebay",
        };
        assert_eq!(
            scheme.kid_wanted(&view).as_deref(),
            v["kid"].as_str(),
            "the kid is the envelope's"
        );
        let url = scheme.key_url(&view, SystemTime::now()).unwrap().unwrap();
        let asked = key
            .request(url, scheme.kid_wanted(&view).as_deref())
            .unwrap();
        assert_eq!(
            asked.url.to_string(),
            "https://api.ebay.com/commerce/notification/v1/public_key/9936261a-7d7b-4621-a0f1-96ccb428af49"
        );
        assert!(asked.post.is_none() && asked.token.is_some());
        scheme.verify_with(&view, SystemTime::now(), Some(&doc))
    };
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let (sig, body) = (
            case["signature"].as_str().unwrap(),
            case["body"].as_str().unwrap(),
        );
        let verdict = verify(sig, body);
        if case["verifies"] == true {
            assert!(verdict.is_ok(), "{}: {verdict:?}", case["name"]);
            // The same message with whitespace, as the SDK's test file writes it.
            let pretty = case["pretty"].as_str().unwrap();
            assert_ne!(pretty, body);
            assert!(verify(sig, pretty).is_ok(), "{}: pretty", case["name"]);
        } else {
            assert!(
                matches!(verdict, Err(VerifyError::Mismatch)),
                "{}: {verdict:?}",
                case["name"]
            );
        }
    }
}

#[test]
fn an_ebay_envelope_must_claim_the_algorithm_the_gateway_checks() {
    use base64::Engine as _;
    let scheme = ebay_scheme();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let body = RawBody::from(b"{}".to_vec());
    let json = JsonBody::default();
    let read = |value: &str| {
        let headers = headers(&[("x-ebay-signature", value)]);
        let view = RequestView {
            method: &http::Method::POST,
            json: &json,
            headers: &headers,
            body: &body,
            path_and_query: "/",
        };
        scheme.key_url(&view, SystemTime::now()).map(|_| ())
    };
    let sig = "MEYCIQCfxfIWuxmWcIBQJ9c5/X7iGDJqs2RCGsBEaAjinyrrfAIhAIV6wGcTiBuV5KJUif2hokyrL+Q9ssHkad+mx2nEE25w";
    let ok = format!(r#"{{"alg":"ecdsa","kid":"k-1","signature":"{sig}","digest":"SHA1"}}"#);
    assert!(read(&b64(&ok)).is_ok());
    for bad in [
        format!(r#"{{"alg":"rsa","kid":"k-1","signature":"{sig}","digest":"SHA1"}}"#),
        format!(r#"{{"alg":"ecdsa","kid":"k-1","signature":"{sig}","digest":"SHA256"}}"#),
        format!(r#"{{"alg":"ecdsa","kid":"k-1","signature":"{sig}"}}"#),
        // A field twice: the gateway and the app could each read another.
        format!(
            r#"{{"alg":"ecdsa","alg":"ecdsa","kid":"k-1","signature":"{sig}","digest":"SHA1"}}"#
        ),
        r#"{"alg":"ecdsa","kid":"k-1","signature":"bm90IERFUg==","digest":"SHA1"}"#.to_owned(),
        "[1]".to_owned(),
    ] {
        assert!(
            matches!(read(&b64(&bad)), Err(VerifyError::MalformedSignature(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        read("not base64!"),
        Err(VerifyError::MalformedSignature(_))
    ));
    // A body that reads two ways is refused before any key is fetched for it.
    let ambiguous = RawBody::from(br#"{"a":1,"a":2}"#.to_vec());
    let headers = headers(&[("x-ebay-signature", &b64(&ok))]);
    let view = RequestView {
        method: &http::Method::POST,
        json: &JsonBody::default(),
        headers: &headers,
        body: &ambiguous,
        path_and_query: "/",
    };
    assert!(matches!(
        scheme.key_url(&view, SystemTime::now()),
        Err(VerifyError::NotStrictJson(_))
    ));
}

#[test]
fn a_key_apis_token_endpoint_is_on_its_own_host_unless_the_route_names_hosts() {
    use crate::config::file::{RawKeyToken, RawKeyUrl};
    let compile = |token_url: &str, hosts: Vec<String>| {
        let v = RawVerify {
            preset: Some("ebay".into()),
            key_url: Some(RawKeyUrl {
                token: Some(RawKeyToken {
                    url: Some(token_url.into()),
                    client_id: Some("${ID}".into()),
                    client_secret: Some("${SECRET}".into()),
                    ..RawKeyToken::default()
                }),
                hosts,
                ..RawKeyUrl::default()
            }),
            ..RawVerify::default()
        };
        compile_scheme(v, "t", Path::new("."), &|_| Some("c".into()), None)
    };
    assert!(compile("https://api.ebay.com/identity/v1/oauth2/token", vec![]).is_ok());
    let errors = compile("https://auth.example.com/token", vec![]).unwrap_err();
    assert_eq!(errors[0].location, "t.key_url.token.url", "{errors:?}");
    assert!(compile(
        "https://auth.example.com/token",
        vec!["api.ebay.com".into(), "auth.example.com".into()]
    )
    .is_ok());
}
