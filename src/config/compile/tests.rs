//! Table-style tests for the configuration compiler: inline YAML in, compiled [`Gateway`] (or
//! every located error) out. Secrets come from a fake environment passed to [`compile`], so no
//! test touches the process environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, Method};

use super::compile;
use crate::config::{presets, ConfigError, ConfigErrors, Loaded};
use crate::model::routes::Match;
use crate::model::{KeySource, Limits, PathPattern, Route, RuntimeModel};
use crate::scheme::{Algorithm, Encoding, Part, Scheme, TimestampSource, TimestampUnit};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The fake environment every test compiles against.
fn env(name: &str) -> Option<String> {
    match name {
        "LAHZA_SECRET" => Some("s3cret".into()),
        "OTHER_SECRET" => Some("other".into()),
        "EMPTY_SECRET" => Some(String::new()),
        _ => None,
    }
}

fn try_compile(text: &str) -> Result<Loaded, ConfigErrors> {
    compile(text, Path::new("."), &env)
}

/// Compiles text that must be valid; a failure prints every error.
fn ok(text: &str) -> Loaded {
    try_compile(text).unwrap_or_else(|e| panic!("expected a valid config, got {e}\n{text}"))
}

/// Compiles text that must be invalid and returns its errors.
fn errors(text: &str) -> Vec<ConfigError> {
    match try_compile(text) {
        Ok(loaded) => panic!("expected errors, got {loaded:?}\n{text}"),
        Err(ConfigErrors { errors, .. }) => errors,
    }
}

/// A config with one plain listener and the given routes, each a YAML flow mapping.
fn with_routes(routes: &[&str]) -> String {
    let mut text = String::from("listeners:\n  - addr: 127.0.0.1:0\nroutes:\n");
    for r in routes {
        text.push_str("  - ");
        text.push_str(r);
        text.push('\n');
    }
    text
}

/// A config with one route named `r` at `/r` whose remaining fields are `fields`
/// (the inside of a flow mapping, e.g. `verify: { preset: lahza, secret: x }`).
fn one_route(fields: &str) -> String {
    with_routes(&[&format!(
        "{{ name: r, path: /r, upstream: \"http://127.0.0.1:3000\", {fields} }}"
    )])
}

/// A route `r` verified by `verify` (the inside of the `verify:` flow mapping).
fn verified(verify: &str) -> String {
    one_route(&format!("verify: {{ {verify} }}"))
}

fn route<'a>(loaded: &'a Loaded, name: &str) -> &'a Arc<Route> {
    loaded
        .gateway
        .routes
        .get(name)
        .unwrap_or_else(|| panic!("no route named {name}"))
}

fn scheme<'a>(loaded: &'a Loaded, name: &str) -> &'a Scheme {
    route(loaded, name)
        .scheme
        .as_ref()
        .unwrap_or_else(|| panic!("route {name} has no scheme"))
}

fn header_and_prefix(s: &Scheme) -> (&str, &str) {
    (
        s.signature.header().unwrap().as_str(),
        s.signature.prefix.as_str(),
    )
}

/// Hex HMAC-SHA256, computed independently of the scheme engine.
/// The signature header value the scheme produces for `body` with no other headers.
fn signed(s: &Scheme, body: &[u8]) -> String {
    let h = s
        .sign(
            crate::scheme::Outgoing::post("/", HeaderMap::new(), body),
            std::time::SystemTime::now(),
            None,
        )
        .unwrap()
        .request
        .headers;
    h[s.signature.header().unwrap()]
        .to_str()
        .unwrap()
        .to_owned()
}

fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// A fresh directory under the system temp dir, unique to this process and test.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hookgate-config-tests-{}-{tag}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A secret file only its owner can read (any more is a warning of its own).
fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Asserts that `errors` is exactly one error at `location` whose message contains `needle`.
fn assert_single_error(case: &str, errors: &[ConfigError], location: &str, needle: &str) {
    assert_eq!(
        errors.len(),
        1,
        "{case}: expected exactly one error, got {errors:#?}"
    );
    assert_eq!(errors[0].location, location, "{case}: {errors:#?}");
    assert!(
        errors[0].message.contains(needle),
        "{case}: message {:?} should contain {needle:?}",
        errors[0].message
    );
}

const LAHZA: &str = "verify: { preset: lahza, secret: \"${LAHZA_SECRET}\" }";

// ---------------------------------------------------------------------------------------------
// Valid configurations and defaults
// ---------------------------------------------------------------------------------------------

#[test]
fn minimal_config_compiles_with_documented_defaults() {
    let loaded = ok(r#"
listeners:
  - addr: 127.0.0.1:0
routes:
  - name: lahza
    path: /webhooks/lahza
    upstream: http://127.0.0.1:3000
    verify: { preset: lahza, secret: "${LAHZA_SECRET}" }
"#);
    let g = &loaded.gateway;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    assert_eq!(g.listeners.len(), 1);
    assert_eq!(g.listeners[0].addr, "127.0.0.1:0".parse().unwrap());
    assert!(g.listeners[0].tls.is_none());
    assert_eq!(g.admin, "127.0.0.1:9090".parse().unwrap());
    assert!(g.trusted_proxies.is_empty());
    assert_eq!(
        format!("{:?}", g.limits),
        format!("{:?}", Limits::default())
    );

    assert_eq!(g.routes.routes().len(), 1);
    let r = route(&loaded, "lahza");
    assert_eq!(r.path, PathPattern::Exact("/webhooks/lahza".into()));
    assert_eq!(r.methods, vec![Method::POST]);
    assert_eq!(r.upstream.authority.as_str(), "127.0.0.1:3000");
    assert_eq!(r.upstream.base_path, "");
    assert!(r.allow_ips.is_none());
    let s = r
        .scheme
        .as_ref()
        .expect("verify block compiles to a scheme");
    assert_eq!(s.algorithm, Algorithm::HmacSha256);
    assert_eq!(s.secret_count(), 1);
}

#[test]
fn limits_defaults_are_the_documented_values() {
    let d = Limits::default();
    assert_eq!(d.max_body_bytes, 1024 * 1024);
    assert_eq!(d.max_header_bytes, 16 * 1024);
    assert_eq!(d.max_response_bytes, 1024 * 1024);
    assert_eq!(d.max_connections, 10_000);
    assert_eq!(d.header_read_timeout, Duration::from_secs(10));
    assert_eq!(d.body_read_timeout, Duration::from_secs(30));
    assert_eq!(d.upstream_connect_timeout, Duration::from_secs(5));
    assert_eq!(d.upstream_timeout, Duration::from_secs(30));
    assert_eq!(d.upstream_keepalive, 128);
    assert_eq!(d.drain_delay, Duration::from_secs(5));
    assert_eq!(d.shutdown_grace, Duration::from_secs(30));
}

#[test]
fn runtime_model_is_per_core_by_default_and_checked() {
    let base = one_route("allow_ips: [10.0.0.0/8]");
    assert_eq!(ok(&base).gateway.runtime, RuntimeModel::DEFAULT);
    let shared = ok(&format!("runtime: shared\nworkers: 3\n{base}"));
    assert_eq!(shared.gateway.runtime, RuntimeModel::Shared);
    assert_eq!(shared.gateway.workers, 3);
    #[cfg(unix)]
    assert_eq!(
        ok(&format!("runtime: per_core\n{base}")).gateway.runtime,
        RuntimeModel::PerCore
    );
    let e = errors(&format!("runtime: fibers\n{base}"));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].location, "runtime");
    assert!(
        e[0].message.contains("per_core or shared"),
        "{}",
        e[0].message
    );
    let e = errors(&format!("limits:\n  upstream_keepalive: -1\n{base}"));
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn env_secret_is_the_key_the_scheme_signs_with() {
    let loaded = ok(&verified("preset: lahza, secret: \"${LAHZA_SECRET}\""));
    let body = br#"{"event":"charge.success"}"#;
    let signed = signed(scheme(&loaded, "r"), body);
    assert_eq!(signed, hmac_sha256_hex(b"s3cret", body));
}

#[test]
fn explicit_admin_limits_proxies_methods_and_upstream_base_are_compiled() {
    let loaded = ok(r#"
listeners:
  - addr: 127.0.0.1:0
  - addr: "[::1]:0"
admin:
  addr: 127.0.0.1:0
client_ip:
  trusted_proxies: [10.0.0.0/8, "fd00::/8", 192.168.1.7]
limits:
  max_body_bytes: 2048
  max_header_bytes: 8192
  max_response_bytes: 4096
  max_connections: 7
  header_read_timeout: 2s
  body_read_timeout: 500ms
  upstream_connect_timeout: 1s
  upstream_timeout: 1m
  shutdown_grace: 3s
routes:
  - name: r
    path: /r
    methods: [post, PUT]
    upstream: http://127.0.0.1:3000/app/base/
    verify: { preset: lahza, secret: "${LAHZA_SECRET}" }
"#);
    let g = &loaded.gateway;
    assert_eq!(g.listeners.len(), 2);
    assert_eq!(g.listeners[1].addr, "[::1]:0".parse().unwrap());
    assert_eq!(g.admin, "127.0.0.1:0".parse().unwrap());
    let proxies: Vec<String> = g.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(proxies, ["10.0.0.0/8", "fd00::/8", "192.168.1.7/32"]);

    let l = &g.limits;
    assert_eq!(l.max_body_bytes, 2048);
    assert_eq!(l.max_header_bytes, 8192);
    assert_eq!(l.max_response_bytes, 4096);
    assert_eq!(l.max_connections, 7);
    assert_eq!(l.header_read_timeout, Duration::from_secs(2));
    assert_eq!(l.body_read_timeout, Duration::from_millis(500));
    assert_eq!(l.upstream_connect_timeout, Duration::from_secs(1));
    assert_eq!(l.upstream_timeout, Duration::from_secs(60));
    assert_eq!(l.shutdown_grace, Duration::from_secs(3));

    let r = route(&loaded, "r");
    assert_eq!(r.methods, vec![Method::POST, Method::PUT]);
    assert_eq!(r.upstream.authority.as_str(), "127.0.0.1:3000");
    assert_eq!(r.upstream.base_path, "/app/base");
}

#[test]
fn listeners_on_port_zero_may_repeat() {
    let loaded = ok(r#"
listeners:
  - addr: 127.0.0.1:0
  - addr: 127.0.0.1:0
routes:
  - { name: r, path: /r, upstream: "http://127.0.0.1:3000", allow_ips: [127.0.0.1] }
"#);
    assert_eq!(loaded.gateway.listeners.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Presets
// ---------------------------------------------------------------------------------------------

/// What each preset must expand to (see ../shared/senders.md).
struct PresetCase {
    name: &'static str,
    header: &'static str,
    prefix: &'static str,
    encodings: &'static [Encoding],
    message: &'static [&'static str],
    /// (header, unit, tolerance) when the preset checks freshness.
    timestamp: Option<(&'static str, TimestampUnit, Duration)>,
}

const PRESETS: &[PresetCase] = &[
    PresetCase {
        name: "laso",
        header: "x-signature",
        prefix: "",
        encodings: &[Encoding::Hex],
        message: &["body"],
        timestamp: None,
    },
    PresetCase {
        name: "lahza",
        header: "x-lahza-signature",
        prefix: "",
        encodings: &[Encoding::Hex],
        message: &["body"],
        timestamp: None,
    },
    PresetCase {
        name: "lomi",
        header: "x-lomi-signature",
        prefix: "",
        encodings: &[Encoding::Hex],
        message: &["body"],
        timestamp: None,
    },
    PresetCase {
        name: "ltvboost",
        header: "x-ltvboost-signature",
        prefix: "sha256=",
        encodings: &[Encoding::Hex],
        message: &["body"],
        timestamp: None,
    },
    PresetCase {
        name: "listrak",
        header: "ltk-hmacsignature",
        prefix: "",
        encodings: &[Encoding::Base64, Encoding::Hex],
        message: &["body", "header:ltk-timestamp"],
        timestamp: Some((
            "ltk-timestamp",
            TimestampUnit::Seconds,
            Duration::from_secs(15 * 60),
        )),
    },
];

fn part_names(parts: &[Part]) -> Vec<String> {
    parts
        .iter()
        .map(|p| match p {
            Part::Body => "body".to_owned(),
            Part::Header(h) => format!("header:{h}"),
            Part::Literal(l) => format!("literal:{}", String::from_utf8_lossy(l)),
            Part::SignatureEntry(e) => format!("entry:{e}"),
            Part::Url => "url".to_owned(),
            other => other.describe(),
        })
        .collect()
}

#[test]
fn every_seed_preset_has_an_expectation() {
    // The other presets are checked against provider vectors in `scheme/tests.rs`.
    let tested: Vec<&str> = PRESETS.iter().map(|c| c.name).collect();
    assert_eq!(tested, presets::names()[..5]);
}

#[test]
fn every_preset_expands_to_its_documented_scheme() {
    for case in PRESETS {
        let loaded = ok(&verified(&format!(
            "preset: {}, secret: \"${{LAHZA_SECRET}}\"",
            case.name
        )));
        let s = scheme(&loaded, "r");
        let n = case.name;
        assert_eq!(s.algorithm, Algorithm::HmacSha256, "{n}");
        assert_eq!(header_and_prefix(s), (case.header, case.prefix), "{n}");
        assert_eq!(s.signature.encodings, case.encodings, "{n}");
        assert_eq!(part_names(&s.message), case.message, "{n}");
        match (&s.timestamp, case.timestamp) {
            (None, None) => {}
            (Some(t), Some((header, unit, tolerance))) => {
                assert_eq!(
                    t.source,
                    TimestampSource::Header(HeaderName::from_static(header)),
                    "{n}"
                );
                assert_eq!(t.unit, unit, "{n}");
                let w = t.window.expect("a window");
                assert_eq!(w.past, tolerance, "{n}");
                assert_eq!(w.future, tolerance, "{n}: future defaults to the tolerance");
            }
            (got, want) => panic!("{n}: timestamp {got:?}, expected {want:?}"),
        }
        assert_eq!(s.secret_count(), 1, "{n}");
        assert!(loaded.warnings.is_empty(), "{n}: {:?}", loaded.warnings);
    }
}

#[test]
fn overriding_preset_tolerance_keeps_the_preset_timestamp_source() {
    let loaded = ok(&verified(
        "preset: listrak, secret: \"${LAHZA_SECRET}\", timestamp: { tolerance: 5m }",
    ));
    let s = scheme(&loaded, "r");
    let t = s.timestamp.as_ref().expect("listrak keeps its timestamp");
    assert_eq!(
        t.source,
        TimestampSource::Header(HeaderName::from_static("ltk-timestamp"))
    );
    assert_eq!(t.unit, TimestampUnit::Seconds);
    assert_eq!(t.window.unwrap().past, Duration::from_secs(300));
    assert_eq!(t.window.unwrap().future, Duration::from_secs(300));
    // Nothing else of the preset moved.
    assert_eq!(header_and_prefix(s), ("ltk-hmacsignature", ""));
    assert_eq!(s.signature.encodings, [Encoding::Base64, Encoding::Hex]);
    assert_eq!(part_names(&s.message), ["body", "header:ltk-timestamp"]);
}

#[test]
fn overriding_preset_timestamp_source_replaces_it_and_keeps_the_rest() {
    let loaded = ok(&verified(
        "preset: listrak, secret: \"${LAHZA_SECRET}\", \
         timestamp: { json: sent_at, future_tolerance: 1m }",
    ));
    let t = scheme(&loaded, "r").timestamp.clone().unwrap();
    assert_eq!(t.source, TimestampSource::JsonField("/sent_at".into()));
    assert_eq!(t.unit, TimestampUnit::Seconds);
    assert_eq!(t.window.unwrap().past, Duration::from_secs(15 * 60));
    assert_eq!(t.window.unwrap().future, Duration::from_secs(60));
}

#[test]
fn preset_without_timestamp_can_gain_one() {
    // As the lomi preset's comment suggests.
    let loaded = ok(&verified(
        "preset: lomi, secret: \"${LAHZA_SECRET}\", \
         timestamp: { json: /timestamp, unit: rfc3339, tolerance: 10m }",
    ));
    let t = scheme(&loaded, "r").timestamp.clone().unwrap();
    assert_eq!(t.source, TimestampSource::JsonField("/timestamp".into()));
    assert_eq!(t.unit, TimestampUnit::Rfc3339);
    assert_eq!(t.window.unwrap().past, Duration::from_secs(600));
    assert_eq!(t.window.unwrap().future, Duration::from_secs(600));
}

#[test]
fn overriding_preset_signature_header_keeps_preset_prefix_and_encodings() {
    for (preset, prefix, encodings) in [
        ("ltvboost", "sha256=", &[Encoding::Hex][..]),
        ("listrak", "", &[Encoding::Base64, Encoding::Hex][..]),
    ] {
        let loaded = ok(&verified(&format!(
            "preset: {preset}, secret: \"${{LAHZA_SECRET}}\", signature: {{ header: x-other }}"
        )));
        let s = scheme(&loaded, "r");
        assert_eq!(header_and_prefix(s), ("x-other", prefix), "{preset}");
        assert_eq!(s.signature.encodings, encodings, "{preset}");
    }
}

#[test]
fn overriding_preset_encoding_and_algorithm_keeps_the_header() {
    let loaded = ok(&verified(
        "preset: lahza, secret: \"${LAHZA_SECRET}\", algorithm: hmac-sha1, \
         signature: { encoding: base64 }",
    ));
    let s = scheme(&loaded, "r");
    assert_eq!(s.algorithm, Algorithm::HmacSha1);
    assert_eq!(header_and_prefix(s), ("x-lahza-signature", ""));
    assert_eq!(s.signature.encodings, [Encoding::Base64]);
}

// ---------------------------------------------------------------------------------------------
// The generic scheme
// ---------------------------------------------------------------------------------------------

#[test]
fn fully_spelled_out_generic_scheme_compiles_to_that_scheme() {
    let loaded = ok(r#"
listeners:
  - addr: 127.0.0.1:0
routes:
  - name: acme
    path: /webhooks/acme/*
    methods: [POST]
    upstream: http://127.0.0.1:4000
    verify:
      algorithm: HMAC-SHA512
      signature:
        header: X-Acme-Signature
        prefix: "v1="
        encoding: [base64, HEX, base64]
      message: [{ header: X-Acme-Timestamp }, { literal: "." }, body]
      timestamp:
        json: /data/ts
        unit: milliseconds
        tolerance: 5m
        future_tolerance: 30s
      secrets: ["${LAHZA_SECRET}", "${OTHER_SECRET}"]
"#);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let r = route(&loaded, "acme");
    assert_eq!(r.path, PathPattern::Prefix("/webhooks/acme".into()));
    let s = r.scheme.as_ref().unwrap();
    assert_eq!(s.algorithm, Algorithm::HmacSha512);
    assert_eq!(header_and_prefix(s), ("x-acme-signature", "v1="));
    // Case-insensitive names, duplicates dropped, order kept (the first signs).
    assert_eq!(s.signature.encodings, [Encoding::Base64, Encoding::Hex]);
    assert_eq!(
        s.message,
        [
            Part::Header(HeaderName::from_static("x-acme-timestamp")),
            Part::Literal(b".".to_vec()),
            Part::Body,
        ]
    );
    let t = s.timestamp.as_ref().unwrap();
    assert_eq!(t.source, TimestampSource::JsonField("/data/ts".into()));
    assert_eq!(t.unit, TimestampUnit::Milliseconds);
    assert_eq!(t.window.unwrap().past, Duration::from_secs(300));
    assert_eq!(t.window.unwrap().future, Duration::from_secs(30));
    assert_eq!(s.secret_count(), 2);
}

#[test]
fn generic_scheme_defaults_are_sha256_hex_over_the_body() {
    let loaded = ok(&verified(
        "signature: { header: x-sig }, secret: \"${LAHZA_SECRET}\", \
         timestamp: { header: x-ts, tolerance: 1m }",
    ));
    let s = scheme(&loaded, "r");
    assert_eq!(s.algorithm, Algorithm::HmacSha256);
    assert_eq!(header_and_prefix(s), ("x-sig", ""));
    assert_eq!(s.signature.encodings, [Encoding::Hex]);
    assert_eq!(s.message, [Part::Body]);
    let t = s.timestamp.as_ref().unwrap();
    assert_eq!(
        t.source,
        TimestampSource::Header(HeaderName::from_static("x-ts"))
    );
    assert_eq!(t.unit, TimestampUnit::Seconds);
    assert_eq!(t.window.unwrap().past, Duration::from_secs(60));
    assert_eq!(t.window.unwrap().future, Duration::from_secs(60));
}

#[test]
fn single_encoding_may_be_written_as_a_scalar() {
    let loaded = ok(&verified(
        "signature: { header: x-sig, encoding: base64 }, secret: \"${LAHZA_SECRET}\"",
    ));
    assert_eq!(scheme(&loaded, "r").signature.encodings, [Encoding::Base64]);
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[test]
fn literal_secret_compiles_with_a_warning_naming_the_field() {
    let loaded = ok(&verified("preset: lahza, secret: plain-text-secret"));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert_eq!(loaded.warnings[0].location, "routes[0] (r).verify.secret");
    assert!(loaded.warnings[0].message.contains("literal secret"));
    let signed = signed(scheme(&loaded, "r"), b"x");
    assert_eq!(signed, hmac_sha256_hex(b"plain-text-secret", b"x"));
}

#[test]
fn literal_in_a_secrets_list_is_warned_at_its_index() {
    let loaded = ok(&verified(
        "preset: lahza, secrets: [\"${LAHZA_SECRET}\", old-literal]",
    ));
    assert_eq!(scheme(&loaded, "r").secret_count(), 2);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert_eq!(
        loaded.warnings[0].location,
        "routes[0] (r).verify.secrets[1]"
    );
}

#[test]
fn relative_secret_file_resolves_against_the_base_dir() {
    let dir = temp_dir("secret-file");
    write_private(&dir.join("lahza.secret"), "from-file\n");
    let text = verified("preset: lahza, secret_file: lahza.secret");

    let loaded = compile(&text, &dir, &env).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let signed = signed(scheme(&loaded, "r"), b"body");
    assert_eq!(signed, hmac_sha256_hex(b"from-file", b"body"));

    // The same relative path from another base is not found, and the error names the field.
    let errs = match compile(&text, Path::new("/nonexistent-hookgate-base"), &env) {
        Ok(_) => panic!("secret file resolved against the wrong base"),
        Err(ConfigErrors { errors: e, .. }) => e,
    };
    assert_single_error(
        "wrong base",
        &errs,
        "routes[0] (r).verify.secret_file",
        "cannot read secret file /nonexistent-hookgate-base/lahza.secret",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn absolute_secret_file_ignores_the_base_dir() {
    let dir = temp_dir("secret-file-abs");
    let file = dir.join("abs.secret");
    std::fs::write(&file, "absolute").unwrap();
    let text = verified(&format!(
        "preset: lahza, secret_file: \"{}\"",
        file.display()
    ));
    let loaded = compile(&text, Path::new("/nonexistent-hookgate-base"), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let signed = signed(scheme(&loaded, "r"), b"b");
    assert_eq!(signed, hmac_sha256_hex(b"absolute", b"b"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// allow_ips
// ---------------------------------------------------------------------------------------------

#[test]
fn allow_ips_accepts_v4_and_v6_cidrs_and_bare_addresses() {
    let loaded = ok(&one_route(&format!(
        "allow_ips: [203.0.113.0/24, \"2001:db8::/32\", 198.51.100.7, \"2001:db8::1\", \
         10.1.2.3/8], {LAHZA}"
    )));
    let r = route(&loaded, "r");
    let nets: Vec<String> = r
        .allow_ips
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        nets,
        [
            "203.0.113.0/24",
            "2001:db8::/32",
            "198.51.100.7/32",
            "2001:db8::1/128",
            // Host bits are dropped so membership is a plain prefix test.
            "10.0.0.0/8",
        ]
    );
    assert!(r.scheme.is_some());
}

#[test]
fn route_with_only_allow_ips_compiles_without_a_scheme() {
    let loaded = ok(&one_route("allow_ips: [192.0.2.0/24]"));
    let r = route(&loaded, "r");
    assert!(r.scheme.is_none());
    assert_eq!(r.allow_ips.as_ref().unwrap()[0].to_string(), "192.0.2.0/24");
    assert!(loaded.warnings.is_empty());
}

// ---------------------------------------------------------------------------------------------
// TLS listeners
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_listener_loads_relative_cert_and_key_from_the_base_dir() {
    let dir = temp_dir("tls");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.key_pair.serialize_pem()).unwrap();
    let text = format!(
        "listeners:\n  - addr: 127.0.0.1:0\n    tls: {{ cert: cert.pem, key: key.pem }}\n\
         routes:\n  - {{ name: r, path: /r, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}\n"
    );
    let loaded = compile(&text, &dir, &env).unwrap_or_else(|e| panic!("{e}"));
    let tls = loaded.gateway.listeners[0]
        .tls
        .as_ref()
        .expect("TLS config");
    assert_eq!(tls.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_listener_with_missing_files_is_an_error_naming_the_listener_and_file() {
    let dir = temp_dir("tls-missing");
    let text = format!(
        "listeners:\n  - addr: 127.0.0.1:0\n  - addr: 127.0.0.1:0\n    \
         tls: {{ cert: missing-cert.pem, key: missing-key.pem }}\n\
         routes:\n  - {{ name: r, path: /r, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}\n"
    );
    let errs = match compile(&text, &dir, &env) {
        Ok(_) => panic!("missing TLS files accepted"),
        Err(ConfigErrors { errors: e, .. }) => e,
    };
    assert_single_error(
        "missing cert",
        &errs,
        "listeners[1].tls",
        "cannot read certificate chain",
    );
    assert!(
        errs[0]
            .message
            .contains(&dir.join("missing-cert.pem").display().to_string()),
        "{errs:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Errors: each names its location
// ---------------------------------------------------------------------------------------------

#[test]
fn each_broken_verify_block_is_one_error_naming_the_field() {
    // (case, verify block, location under `routes[0] (r).verify`, message fragment)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "unknown preset",
            "preset: acme, secret: \"${LAHZA_SECRET}\"",
            ".preset",
            "unknown preset `acme`; known presets: laso, lahza, lomi, ltvboost, listrak",
        ),
        (
            "empty json timestamp field",
            "signature: { header: x-sig }, timestamp: { json: \"\", tolerance: 5m }, secret: \"${LAHZA_SECRET}\"",
            ".timestamp.json",
            "empty field name",
        ),
        (
            "unknown algorithm",
            "algorithm: hmac-md5, signature: { header: x-sig }, secret: \"${LAHZA_SECRET}\"",
            ".algorithm",
            "unknown algorithm `hmac-md5`",
        ),
        (
            "unknown encoding",
            "signature: { header: x-sig, encoding: [hex, base32] }, \
             secret: \"${LAHZA_SECRET}\"",
            ".signature.encoding",
            "unknown encoding `base32`",
        ),
        (
            "empty encoding list",
            "signature: { header: x-sig, encoding: [] }, secret: \"${LAHZA_SECRET}\"",
            ".signature.encoding",
            "empty list",
        ),
        (
            "no signature and no preset",
            "secret: \"${LAHZA_SECRET}\"",
            ".signature",
            "missing",
        ),
        (
            "signature without header",
            "signature: { prefix: \"v1=\" }, secret: \"${LAHZA_SECRET}\"",
            ".signature.header",
            "missing",
        ),
        (
            "invalid signature header name",
            "signature: { header: \"x sig\" }, secret: \"${LAHZA_SECRET}\"",
            ".signature.header",
            "`x sig` is not a valid header name",
        ),
        (
            "unset env var",
            "preset: lahza, secret: \"${LAHZA_UNSET}\"",
            ".secret",
            "environment variable LAHZA_UNSET is not set",
        ),
        (
            "empty env var",
            "preset: lahza, secret: \"${EMPTY_SECRET}\"",
            ".secret",
            "environment variable EMPTY_SECRET is empty",
        ),
        (
            "malformed env reference",
            "preset: lahza, secret: \"${LAHZA-SECRET}\"",
            ".secret",
            "not a valid ${ENV_VAR} reference",
        ),
        (
            "unreadable secret_file",
            "preset: lahza, secret_file: /nonexistent-hookgate/secret",
            ".secret_file",
            "cannot read secret file /nonexistent-hookgate/secret",
        ),
        (
            "two secret sources",
            "preset: lahza, secret: \"${LAHZA_SECRET}\", secret_file: /etc/hostname",
            "",
            "set only one of `secret`, `secret_file`, `secrets`",
        ),
        ("no secret", "preset: lahza", "", "no key"),
        (
            "empty secrets list",
            "preset: lahza, secrets: []",
            ".secrets",
            "empty list",
        ),
        (
            "unset env var in a secrets list",
            "preset: lahza, secrets: [\"${LAHZA_SECRET}\", \"${OLD_UNSET}\"]",
            ".secrets[1]",
            "OLD_UNSET is not set",
        ),
        (
            "message without body",
            "signature: { header: x-sig }, message: [{ header: x-ts }, { literal: \".\" }], \
             secret: \"${LAHZA_SECRET}\"",
            ".message",
            "must include `body`",
        ),
        (
            "message header with an invalid name",
            "signature: { header: x-sig }, message: [{ header: \"a b\" }, body], \
             secret: \"${LAHZA_SECRET}\"",
            ".message[0].header",
            "not a valid header name",
        ),
        (
            "timestamp with both header and json",
            "preset: lahza, secret: \"${LAHZA_SECRET}\", \
             timestamp: { header: x-ts, json: ts, tolerance: 5m }",
            ".timestamp",
            "not several",
        ),
        (
            "timestamp with no source",
            "preset: lahza, secret: \"${LAHZA_SECRET}\", timestamp: { tolerance: 5m }",
            ".timestamp",
            "missing `header`, `json` or `signature_entry`",
        ),
        (
            "timestamp without tolerance",
            "preset: lahza, secret: \"${LAHZA_SECRET}\", timestamp: { header: x-ts }",
            ".timestamp.tolerance",
            "missing",
        ),
        (
            "timestamp with unknown unit",
            "preset: lahza, secret: \"${LAHZA_SECRET}\", \
             timestamp: { header: x-ts, unit: minutes, tolerance: 5m }",
            ".timestamp.unit",
            "unknown unit `minutes`",
        ),
        (
            "timestamp with a bad tolerance",
            "preset: listrak, secret: \"${LAHZA_SECRET}\", timestamp: { tolerance: soon }",
            ".timestamp.tolerance",
            "`soon` is not a duration",
        ),
        (
            "timestamp with a zero future tolerance",
            "preset: listrak, secret: \"${LAHZA_SECRET}\", timestamp: { future_tolerance: 0s }",
            ".timestamp.future_tolerance",
            "must be greater than zero",
        ),
    ];
    for (case, verify, field, needle) in cases {
        let errs = errors(&verified(verify));
        assert_single_error(case, &errs, &format!("routes[0] (r).verify{field}"), needle);
    }
}

#[test]
fn each_broken_route_field_is_one_error_naming_the_field() {
    // (case, route fields besides name, location, message fragment)
    let cases: &[(&str, String, &str, &str)] = &[
        (
            "neither verify nor allow_ips",
            one_route("methods: [POST]"),
            "routes[0] (r)",
            "neither `verify` nor `allow_ips`",
        ),
        (
            "empty allow_ips",
            one_route("allow_ips: []"),
            "routes[0] (r).allow_ips",
            "empty list",
        ),
        (
            "bad CIDR in allow_ips",
            one_route("allow_ips: [10.0.0.0/8, 10.0.0.0/33]"),
            "routes[0] (r).allow_ips[1]",
            "`10.0.0.0/33` is not an IP network",
        ),
        (
            "hostname in allow_ips",
            one_route("allow_ips: [lahza.io]"),
            "routes[0] (r).allow_ips[0]",
            "not an IP network",
        ),
        (
            "empty methods",
            one_route(&format!("methods: [], {LAHZA}")),
            "routes[0] (r).methods",
            "empty list",
        ),
        (
            "invalid method",
            one_route(&format!("methods: [POST, \"GE T\"], {LAHZA}")),
            "routes[0] (r).methods",
            "`GE T` is not an HTTP method",
        ),
        (
            "relative path",
            with_routes(&[&format!(
                "{{ name: r, path: webhooks/x, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] (r).path",
            "`webhooks/x` is not a normalized absolute path",
        ),
        (
            "dot-dot path",
            with_routes(&[&format!(
                "{{ name: r, path: /a/../b, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] (r).path",
            "`/a/../b` is not a normalized absolute path",
        ),
        (
            "empty segment path",
            with_routes(&[&format!(
                "{{ name: r, path: /a//b, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] (r).path",
            "not a normalized absolute path",
        ),
        (
            "encoded dot-dot in a prefix",
            with_routes(&[&format!(
                "{{ name: r, path: \"/a/%2e%2e/*\", upstream: \"http://127.0.0.1:3000\", \
                 {LAHZA} }}"
            )]),
            "routes[0] (r).path",
            "not a normalized absolute path",
        ),
        (
            "prefix path ending in //*",
            with_routes(&[&format!(
                "{{ name: r, path: \"/x//*\", upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] (r).path",
            "not a normalized absolute path",
        ),
        (
            "upstream with an empty host",
            with_routes(&[&format!(
                "{{ name: r, path: /r, upstream: \"http://:3000\", {LAHZA} }}"
            )]),
            "routes[0] (r).upstream",
            "has no host",
        ),
        (
            "upstream with credentials",
            with_routes(&[&format!(
                "{{ name: r, path: /r, upstream: \"http://u:p@127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] (r).upstream",
            "credentials",
        ),
        (
            "upstream base path with dot segments",
            with_routes(&[&format!(
                "{{ name: r, path: /r, upstream: \"http://127.0.0.1:3000/a/../b\", {LAHZA} }}"
            )]),
            "routes[0] (r).upstream",
            "not a normalized absolute path",
        ),
        (
            "ftp upstream",
            with_routes(&[&format!(
                "{{ name: r, path: /r, upstream: \"ftp://127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] (r).upstream",
            "upstream must be an http:// or https:// URL",
        ),
        (
            "upstream without a scheme",
            with_routes(&[&format!(
                "{{ name: r, path: /r, upstream: \"127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] (r).upstream",
            "upstream must be an http:// or https:// URL",
        ),
        (
            "upstream that is not a URL",
            with_routes(&[&format!(
                "{{ name: r, path: /r, upstream: \"http://a b\", {LAHZA} }}"
            )]),
            "routes[0] (r).upstream",
            "is not a URL",
        ),
        (
            "upstream with a query",
            with_routes(&[&format!(
                "{{ name: r, path: /r, upstream: \"http://127.0.0.1:3000/x?a=1\", {LAHZA} }}"
            )]),
            "routes[0] (r).upstream",
            "must not have a query",
        ),
        (
            "unknown key in a route",
            one_route(&format!("verfy: {{}}, {LAHZA}")),
            "routes[0] (r).verfy",
            "unknown field `verfy`",
        ),
        (
            "unknown key in a verify block",
            verified("preset: lahza, secert: \"${LAHZA_SECRET}\""),
            "routes[0] (r).verify.secert",
            "unknown field `secert`",
        ),
        (
            "unknown key in a signature block",
            verified("preset: lahza, secret: \"${LAHZA_SECRET}\", signature: { heder: x }"),
            "routes[0] (r).verify.signature.heder",
            "unknown field `heder`",
        ),
        (
            "unknown message part",
            verified(
                "signature: { header: x-sig }, message: [body, { hedaer: x-ts }], \
                 secret: \"${LAHZA_SECRET}\"",
            ),
            "routes[0] (r).verify.message[1]",
            "unknown message part",
        ),
        (
            "wrong type for a route field",
            one_route(&format!("methods: POST, {LAHZA}")),
            "routes[0] (r).methods",
            "invalid type",
        ),
        (
            "route without a name",
            with_routes(&[&format!(
                "{{ path: /r, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0]",
            "missing field `name`",
        ),
    ];
    for (case, text, location, needle) in cases {
        assert_single_error(case, &errors(text), location, needle);
    }
}

#[test]
fn each_broken_top_level_setting_is_one_error_naming_the_setting() {
    let route = format!("{{ name: r, path: /r, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}");
    let base =
        |extra: &str| format!("listeners:\n  - addr: 127.0.0.1:0\n{extra}routes:\n  - {route}\n");
    let cases: &[(&str, String, &str, &str)] = &[
        (
            "no listeners",
            format!("routes:\n  - {route}\n"),
            "listeners",
            "no listeners",
        ),
        (
            "empty listeners",
            format!("listeners: []\nroutes:\n  - {route}\n"),
            "listeners",
            "no listeners",
        ),
        (
            "empty routes",
            "listeners:\n  - addr: 127.0.0.1:0\nroutes: []\n".into(),
            "routes",
            "no routes",
        ),
        (
            "routes absent",
            "listeners:\n  - addr: 127.0.0.1:0\n".into(),
            "routes",
            "no routes",
        ),
        (
            "listener address without a port",
            format!("listeners:\n  - addr: 127.0.0.1\nroutes:\n  - {route}\n"),
            "listeners[0].addr",
            "`127.0.0.1` is not an IP:PORT address",
        ),
        (
            "listener listed twice",
            format!(
                "listeners:\n  - addr: 127.0.0.1:8080\n  - addr: 127.0.0.1:8080\n\
                 routes:\n  - {route}\n"
            ),
            "listeners[1].addr",
            "127.0.0.1:8080 is listed twice",
        ),
        (
            "bad admin address",
            base("admin: { addr: localhost:9090 }\n"),
            "admin.addr",
            "`localhost:9090` is not an IP:PORT address",
        ),
        (
            "bad trusted proxy",
            base("client_ip: { trusted_proxies: [10.0.0.0/8, 300.0.0.0/8] }\n"),
            "client_ip.trusted_proxies[1]",
            "`300.0.0.0/8` is not an IP network",
        ),
        (
            "bad duration",
            base("limits: { upstream_timeout: 30 }\n"),
            "limits.upstream_timeout",
            "`30` is not a duration",
        ),
        (
            "words for a duration",
            base("limits: { header_read_timeout: ten seconds }\n"),
            "limits.header_read_timeout",
            "is not a duration",
        ),
        (
            "zero duration",
            base("limits: { shutdown_grace: 0s }\n"),
            "limits.shutdown_grace",
            "must be greater than zero",
        ),
        (
            "zero body limit",
            base("limits: { max_body_bytes: 0 }\n"),
            "limits.max_body_bytes",
            "must be greater than 0",
        ),
        (
            "zero connection limit",
            base("limits: { max_connections: 0 }\n"),
            "limits.max_connections",
            "must be greater than 0",
        ),
        (
            "header limit below hyper's minimum",
            base("limits: { max_header_bytes: 4096 }\n"),
            "limits.max_header_bytes",
            "at least 8192",
        ),
    ];
    for (case, text, location, needle) in cases {
        assert_single_error(case, &errors(text), location, needle);
    }
}

#[test]
fn duplicate_route_names_are_an_error_at_the_second_route() {
    let errs = errors(&with_routes(&[
        &format!("{{ name: a, path: /a, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"),
        &format!("{{ name: b, path: /b, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"),
        &format!("{{ name: a, path: /c, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"),
    ]));
    assert_single_error(
        "duplicate",
        &errs,
        "routes[2] (a)",
        "duplicate route name `a`",
    );
}

#[test]
fn unknown_top_level_key_is_an_error_at_its_line_and_column() {
    let errs = errors("listeners:\n  - addr: 127.0.0.1:0\nrouts: []\n");
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[0].location, "routs");
    assert!(
        errs[0].message.starts_with("unknown field `routs`")
            && errs[0].message.contains("line 3 column 1"),
        "{errs:?}"
    );
    // The rest of the file is still compiled: the typo left it without routes.
    assert_eq!(errs[1].location, "routes");
}

#[test]
fn unknown_key_in_a_top_level_block_is_an_error_at_its_line_and_column() {
    let errs = errors(&format!(
        "listeners:\n  - addr: 127.0.0.1:0\n    tsl: {{}}\nroutes:\n  - {{ name: a, path: /a, \
         upstream: \"http://127.0.0.1:3000\", {LAHZA} }}\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].location, "listeners[0].tsl");
    assert!(
        errs[0].message.starts_with("unknown field `tsl`")
            && errs[0].message.contains("line 3 column 5"),
        "{errs:?}"
    );
}

/// A key that does not read (a type error) does not stop the rest of the file: its other
/// errors and its warnings come in the same pass, and what the missing key would have set
/// (listeners, a queue store) is not blamed on anything else.
#[test]
fn a_type_error_does_not_hide_the_other_errors_or_the_warnings() {
    let problems = try_compile(
        "listeners:\n  - addr: 127.0.0.1:0\n    tsl: {}\nlimits: { max_body_bytes: lots }\n\
         queue_store: { path: /nonexistent/q, retention: [1] }\nroutes:\n\
         \x20 - { name: a, path: /a, upstream: \"http://127.0.0.1:3000\", delivery: queued, \
         verify: { preset: lahza, secret: literal } }\n\
         \x20 - { name: b, path: /b, upstream: \"ftp://x\", verify: { preset: lahza, secret: literal } }\n",
    )
    .unwrap_err();
    let at = |list: &[ConfigError]| list.iter().map(|e| e.location.clone()).collect::<Vec<_>>();
    assert_eq!(
        at(&problems.errors),
        [
            "listeners[0].tsl",
            "limits.max_body_bytes",
            "queue_store.retention",
            "routes[1] (b).upstream",
        ],
        "{problems:#?}"
    );
    assert_eq!(
        at(&problems.warnings),
        ["routes[0] (a).verify.secret", "routes[1] (b).verify.secret"],
        "{problems:#?}"
    );
}

/// A duration is written with its unit; a bare number gets the same message wherever it is
/// (serde alone accepts it at the top level and says "expected a string" inside a route).
#[test]
fn a_bare_number_for_a_duration_says_how_to_write_it() {
    let want = "`30` is not a duration: write it with its unit, e.g. `30s` (or `30ms`, `30m`)";
    let errs = errors(&format!(
        "listeners:\n  - addr: 127.0.0.1:0\nlimits: {{ upstream_timeout: 30 }}\n\
         replay_store: {{ type: redis, url: \"redis://127.0.0.1:1\", timeout: 30 }}\nroutes:\n\
         \x20 - {{ name: a, path: /a, upstream: \"http://127.0.0.1:3000\", {LAHZA}, \
         limits: {{ upstream_timeout: 30 }}, replay: {{ ttl: 30 }} }}\n"
    ));
    let found: Vec<(&str, &str)> = errs
        .iter()
        .map(|e| (e.location.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("limits.upstream_timeout", want),
            ("replay_store.timeout", want),
            ("routes[0] (a).limits.upstream_timeout", want),
            ("routes[0] (a).replay.ttl", want),
        ]
    );
    // Not a number and not a string: the type error names the format.
    let errs = errors(&format!(
        "listeners:\n  - addr: 127.0.0.1:0\nroutes:\n\
         \x20 - {{ name: a, path: /a, upstream: \"http://127.0.0.1:3000\", {LAHZA}, \
         replay: {{ ttl: [30] }} }}\n"
    ));
    assert_single_error(
        "sequence for a duration",
        &errs,
        "routes[0] (a).replay.ttl",
        "expected a duration such as `30s`, `500ms` or `15m`",
    );
}

#[test]
fn every_error_in_a_file_is_reported_together_with_its_location() {
    let errs = errors(
        r#"
listeners:
  - addr: 127.0.0.1:0
limits:
  body_read_timeout: forever
routes:
  - name: good
    path: /good
    upstream: http://127.0.0.1:3000
    verify: { preset: lahza, secret: "${LAHZA_SECRET}" }
  - name: lahza
    path: /webhooks/lahza
    upstream: http://127.0.0.1:3000
    verify: { preset: lahza, secret: "${LAHZA_UNSET}" }
  - name: acme
    path: webhooks/acme
    upstream: ftp://127.0.0.1:3000
    verify: { preset: nope, secret: "${LAHZA_SECRET}" }
  - name: open
    path: /open
    upstream: http://127.0.0.1:3000
  - name: typo
    path: /typo
    upstream: http://127.0.0.1:3000
    verify: { preset: lahza, secret: "${LAHZA_SECRET}" }
    alow_ips: [10.0.0.0/8]
  - name: custom
    path: /custom
    upstream: http://127.0.0.1:3000
    allow_ips: [10.0.0.0/8, not-an-ip]
    verify:
      algorithm: sha3
      signature: { header: x-sig, encoding: [hex, base58] }
      message: [{ literal: "v0:" }]
      timestamp: { header: x-ts, json: ts, tolerance: 5m }
      secret: "${LAHZA_SECRET}"
      secrets: ["${OTHER_SECRET}"]
"#,
    );
    let got: Vec<&str> = errs.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(
        got,
        [
            "limits.body_read_timeout",
            "routes[1] (lahza).verify.secret",
            "routes[2] (acme).path",
            "routes[2] (acme).upstream",
            "routes[2] (acme).verify.preset",
            "routes[3] (open)",
            "routes[4] (typo).alow_ips",
            "routes[5] (custom).allow_ips[1]",
            "routes[5] (custom).verify.algorithm",
            "routes[5] (custom).verify.signature.encoding",
            "routes[5] (custom).verify.message",
            "routes[5] (custom).verify.timestamp",
            "routes[5] (custom).verify",
        ],
        "{errs:#?}"
    );
    // The rendered report counts them and gives each on its own line.
    let report = ConfigErrors {
        files: Vec::new(),
        errors: errs.clone(),
        warnings: Vec::new(),
    }
    .to_string();
    assert!(
        report.starts_with("13 errors in configuration:\n"),
        "{report}"
    );
    assert!(
        report.contains("\n  routes[4] (typo).alow_ips: unknown field `alow_ips`"),
        "{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Route table lookup
// ---------------------------------------------------------------------------------------------

/// The name of the route a request finds, or how the lookup refused it (a 405 names the
/// first route on the path and every allowed method).
fn lookup(loaded: &Loaded, method: Method, path: &str) -> String {
    match loaded.gateway.routes.lookup(&method, path) {
        Match::Found(r) => r.name.clone(),
        Match::MethodNotAllowed { route, allowed } => {
            let names: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            format!("405 ({}) {}", route.name, names.join(","))
        }
        Match::NotFound => "404".into(),
        Match::BadPath => "400".into(),
    }
}

fn table(routes: &[(&str, &str, &str)]) -> Loaded {
    let lines: Vec<String> = routes
        .iter()
        .map(|(name, path, methods)| {
            format!(
                "{{ name: {name}, path: \"{path}\", methods: [{methods}], \
                 upstream: \"http://127.0.0.1:3000\", allow_ips: [127.0.0.1] }}"
            )
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    ok(&with_routes(&refs))
}

#[test]
fn route_lookup_matches_exact_prefix_and_refuses_the_rest() {
    let loaded = table(&[
        ("exact", "/hooks/a", "POST"),
        ("prefix", "/x/*", "POST"),
        ("trailing", "/t/", "POST"),
    ]);
    let cases = [
        // Exact paths match only themselves.
        (Method::POST, "/hooks/a", "exact"),
        (Method::POST, "/hooks/a/", "404"),
        (Method::POST, "/hooks/a/b", "404"),
        (Method::POST, "/hooks", "404"),
        (Method::POST, "/t/", "trailing"),
        (Method::POST, "/t", "404"),
        // A prefix matches its base, the base with a slash and anything below it ...
        (Method::POST, "/x", "prefix"),
        (Method::POST, "/x/", "prefix"),
        (Method::POST, "/x/a", "prefix"),
        (Method::POST, "/x/a/b", "prefix"),
        (Method::POST, "/x/a/b/", "prefix"),
        // ... but not a sibling sharing its first letters.
        (Method::POST, "/xy", "404"),
        (Method::POST, "/xy/a", "404"),
        (Method::POST, "/", "404"),
        (Method::POST, "/nope", "404"),
        // Wrong method on a known path: 405 with what is allowed.
        (Method::GET, "/hooks/a", "405 (exact) POST"),
        (Method::PUT, "/x/a", "405 (prefix) POST"),
        (Method::GET, "/nope", "404"),
        // Paths that could mean something else upstream are refused before matching.
        (Method::POST, "/x/../y", "400"),
        (Method::POST, "/x/./a", "400"),
        (Method::POST, "/x//a", "400"),
        (Method::POST, "/x/%2e%2e/y", "400"),
        (Method::POST, "/x/a%2Fb", "400"),
        (Method::POST, "x/a", "400"),
        (Method::POST, "", "400"),
    ];
    for (method, path, want) in cases {
        assert_eq!(
            lookup(&loaded, method.clone(), path),
            want,
            "{method} {path}"
        );
    }
}

#[test]
fn overlapping_routes_first_in_file_order_wins() {
    // (A route that an earlier one shadows completely is refused at load time, see
    // `a_route_an_earlier_one_makes_unreachable_is_an_error`; these only share some methods.)
    let loaded = table(&[
        ("o-prefix", "/o/*", "POST"),
        ("o-special", "/o/special", "POST, GET"),
        ("p-special", "/p/special", "POST"),
        ("p-prefix", "/p/*", "POST"),
        ("deep", "/p/special/deep/*", "POST, GET"),
        ("catch-all", "/*", "POST"),
    ]);
    let cases = [
        // An earlier prefix takes a later exact route's shared method ...
        (Method::POST, "/o/special", "o-prefix"),
        (Method::GET, "/o/special", "o-special"),
        // ... and an earlier exact route shadows a later prefix.
        (Method::POST, "/p/special", "p-special"),
        (Method::POST, "/p/other", "p-prefix"),
        // A longer prefix listed later still loses to the earlier, shorter one.
        (Method::POST, "/p/special/deep/x", "p-prefix"),
        (Method::GET, "/p/special/deep/x", "deep"),
        // The root prefix catches whatever nothing earlier claims.
        (Method::POST, "/", "catch-all"),
        (Method::POST, "/elsewhere/a", "catch-all"),
        (Method::POST, "/op", "catch-all"),
    ];
    for (method, path, want) in cases {
        assert_eq!(
            lookup(&loaded, method.clone(), path),
            want,
            "{method} {path}"
        );
    }
    // Each partly shadowed route is named in a warning with the route that takes its method.
    let warned: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    for (route, by) in [
        ("routes[1] (o-special)", "routes[0] (o-prefix)"),
        ("routes[4] (deep)", "routes[3] (p-prefix)"),
    ] {
        assert!(
            warned
                .iter()
                .any(|w| w.starts_with(route) && w.contains("POST /") && w.contains(by)),
            "{route}: {warned:?}"
        );
    }
}

#[test]
fn a_route_an_earlier_one_makes_unreachable_is_an_error() {
    /// Routes as (name, path, methods), then the error's location and text.
    type Case<'a> = (&'a [(&'a str, &'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("a", "/hooks/a", "POST"), ("b", "/hooks/a", "POST")],
            "routes[1] (b)",
            "goes to routes[0] (a) first",
        ),
        (
            &[("all", "/hooks/*", "POST"), ("gh", "/hooks/github", "POST")],
            "routes[1] (gh)",
            "goes to routes[0] (all) first",
        ),
        (
            &[("root", "/*", "POST, GET"), ("deep", "/x/y/*", "GET")],
            "routes[1] (deep)",
            "goes to routes[0] (root) first",
        ),
        // Two earlier routes together.
        (
            &[
                ("p", "/h/*", "POST"),
                ("g", "/h/x", "GET"),
                ("both", "/h/x", "GET, POST"),
            ],
            "routes[2] (both)",
            "goes to routes[0] (p), routes[1] (g) first",
        ),
    ];
    for (routes, location, needle) in cases {
        let lines: Vec<String> = routes
            .iter()
            .map(|(name, path, methods)| {
                format!(
                    "{{ name: {name}, path: \"{path}\", methods: [{methods}], \
                     upstream: \"http://127.0.0.1:3000\", allow_ips: [127.0.0.1] }}"
                )
            })
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let errors = errors(&with_routes(&refs));
        assert_single_error(location, &errors, location, needle);
    }
}

#[test]
fn method_decides_between_routes_sharing_a_path_and_405_lists_every_allowed_method() {
    let loaded = table(&[
        ("m-put", "/m", "PUT"),
        ("m-post", "/m", "POST, PATCH"),
        ("m-prefix", "/m/*", "DELETE, PUT"),
    ]);
    assert_eq!(lookup(&loaded, Method::POST, "/m"), "m-post");
    assert_eq!(lookup(&loaded, Method::PUT, "/m"), "m-put");
    assert_eq!(lookup(&loaded, Method::DELETE, "/m"), "m-prefix");
    assert_eq!(
        lookup(&loaded, Method::POST, "/m/x"),
        "405 (m-prefix) DELETE,PUT"
    );
    // Every candidate's methods, in route order, each once.
    assert_eq!(
        lookup(&loaded, Method::GET, "/m"),
        "405 (m-put) PUT,POST,PATCH,DELETE"
    );
}

#[test]
fn lookup_hands_back_the_compiled_route() {
    let loaded = ok(&with_routes(&[&format!(
        "{{ name: lahza, path: /webhooks/lahza, upstream: \"http://127.0.0.1:3000/in\", \
         {LAHZA} }}"
    )]));
    match loaded
        .gateway
        .routes
        .lookup(&Method::POST, "/webhooks/lahza")
    {
        Match::Found(r) => {
            assert!(Arc::ptr_eq(r, route(&loaded, "lahza")));
            assert_eq!(r.upstream.base_path, "/in");
            assert_eq!(
                r.scheme
                    .as_ref()
                    .unwrap()
                    .signature
                    .header()
                    .unwrap()
                    .as_str(),
                "x-lahza-signature"
            );
        }
        other => panic!("expected the lahza route, got {other:?}"),
    }
}

#[test]
fn unknown_preset_still_reports_secret_problems_in_the_same_run() {
    let errs = errors(&one_route(
        "verify: { preset: lahzza, secret: \"${UNSET_VAR}\" }",
    ));
    let located: Vec<String> = errs.iter().map(|e| e.location.clone()).collect();
    assert_eq!(
        located,
        ["routes[0] (r).verify.preset", "routes[0] (r).verify.secret"],
        "{errs:?}"
    );
}

#[test]
fn keys_that_cannot_verify_anything_are_load_errors_naming_the_field() {
    // RFC 8032's first test public key: valid, so only the field it is given in is wrong.
    const ED25519_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    // (case, verify block, location under `routes[0] (r).verify`, message fragment)
    let cases: &[(&str, String, &str, &str)] = &[
        (
            "whsec secret that is not base64",
            "preset: standard-webhooks, secret: \"whsec_not*base64!\"".into(),
            ".secret",
            "not a whsec_<base64> secret",
        ),
        (
            "public key that does not parse (hex of the wrong length)",
            "preset: discord, public_key: \"abcd\"".into(),
            ".public_key",
            "Ed25519 public key is 32 bytes",
        ),
        (
            "public key that is not hex",
            "preset: discord, public_key: \"zz\"".into(),
            ".public_key",
            "not valid hex",
        ),
        (
            "whpk key of the wrong length",
            "preset: standard-webhooks-ed25519, public_key: \"whpk_aGVsbG8=\"".into(),
            ".public_key",
            "Ed25519 public key is 32 bytes",
        ),
        (
            "SendGrid key that is not a P-256 key",
            "preset: sendgrid, public_key: \"aGVsbG8=\"".into(),
            ".public_key",
            "not a P-256 public key",
        ),
        (
            "a secret given to an asymmetric preset",
            "preset: discord, secret: \"${LAHZA_SECRET}\"".into(),
            "",
            "verifies with public keys",
        ),
        (
            "a public key given to an HMAC preset",
            format!("preset: github, public_key: \"{ED25519_HEX}\""),
            "",
            "uses a shared secret",
        ),
        (
            "unknown key encoding",
            "preset: github, key_encoding: rot13, secret: \"${LAHZA_SECRET}\"".into(),
            ".key_encoding",
            "unknown key encoding `rot13`",
        ),
        (
            "twilio without the route's public_url",
            "preset: twilio, secret: \"${LAHZA_SECRET}\"".into(),
            ".message[0]",
            "needs the route's `public_url`",
        ),
        (
            "signature_entry without a structured header",
            "preset: github, timestamp: { signature_entry: t, tolerance: 5m }, secret: \"${LAHZA_SECRET}\"".into(),
            ".timestamp.signature_entry",
            "needs `signature.entries`",
        ),
        (
            "prefix and entries together",
            "signature: { header: x-sig, prefix: \"v1=\", entries: { separator: \",\", assign: \"=\", key: v1 } }, secret: \"${LAHZA_SECRET}\"".into(),
            ".signature.entries",
            "not both",
        ),
    ];
    for (case, verify, location, needle) in cases {
        let errs = errors(&verified(verify));
        // The "whpk key that is not a curve point" case: 32 zero-ish bytes may or may not be
        // a valid point; only require that, if refused, it is refused at the right field.
        if needle.is_empty() {
            for e in &errs {
                assert_eq!(
                    e.location,
                    format!("routes[0] (r).verify{location}"),
                    "{case}"
                );
            }
            continue;
        }
        assert_single_error(
            case,
            &errs,
            &format!("routes[0] (r).verify{location}"),
            needle,
        );
    }
}

#[test]
fn url_signed_and_asymmetric_presets_compile_with_their_keys() {
    let ok_cases = [
        "{ name: t, path: /t, upstream: \"http://127.0.0.1:3000\", public_url: \"https://hooks.example.com/\", verify: { preset: twilio, secret: \"${LAHZA_SECRET}\" } }",
        "{ name: d, path: /d, upstream: \"http://127.0.0.1:3000\", verify: { preset: discord, public_key: \"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\" } }",
        "{ name: s, path: /s, upstream: \"http://127.0.0.1:3000\", enforce: false, verify: { preset: stripe, secrets: [\"${LAHZA_SECRET}\", \"whsec_old\"] } }",
    ];
    let loaded = ok(&with_routes(&ok_cases));
    let t = route(&loaded, "t");
    assert_eq!(
        t.scheme.as_ref().unwrap().public_url.as_deref(),
        Some("https://hooks.example.com")
    );
    assert!(t.enforce);
    let d = scheme(&loaded, "d");
    assert_eq!(d.algorithm, crate::scheme::Algorithm::Ed25519);
    assert_eq!(d.secret_count(), 1);
    let s = route(&loaded, "s");
    assert!(!s.enforce, "enforce: false is shadow mode");
    assert_eq!(s.scheme.as_ref().unwrap().secret_count(), 2);
    // Public keys are not secrets: no literal-secret warning for them, one for whsec_old.
    // Twilio's own scheme signs the URL and the form parameters with nothing between them:
    // docs/security.md says what that leaves open; a warning nothing in the file
    // could silence would only make `check --strict` unusable with the preset.
    let locations: Vec<&str> = loaded
        .warnings
        .iter()
        .map(|w| w.location.as_str())
        .collect();
    assert_eq!(
        locations,
        ["routes[2] (s).verify.secrets[1]"],
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn replay_blocks_compile_with_preset_defaults_and_located_errors() {
    use crate::model::{KeySource, OnStoreError, ReplayStoreConfig};
    let loaded = ok(&with_routes(&[
        "{ name: l, path: /l, upstream: \"http://127.0.0.1:3000\", verify: { preset: lomi, secret: \"${LAHZA_SECRET}\" }, replay: {} }",
        "{ name: g, path: /g, upstream: \"http://127.0.0.1:3000\", verify: { preset: github, secret: \"${LAHZA_SECRET}\" }, replay: { ttl: 1h, on_store_error: allow } }",
        "{ name: z, path: /z, upstream: \"http://127.0.0.1:3000\", verify: { preset: lahza, secret: \"${LAHZA_SECRET}\" }, replay: { key: { json: id } } }",
        "{ name: n, path: /n, upstream: \"http://127.0.0.1:3000\", verify: { preset: lahza, secret: \"${LAHZA_SECRET}\" } }",
    ]));
    let l = route(&loaded, "l").replay.clone().unwrap();
    assert_eq!(l.key, KeySource::Json("/id".into()));
    assert_eq!(l.ttl, std::time::Duration::from_secs(72 * 3600));
    assert_eq!(l.on_store_error, OnStoreError::Reject);
    let g = route(&loaded, "g").replay.clone().unwrap();
    assert_eq!(
        g.key,
        KeySource::Header(vec![http::HeaderName::from_static("x-github-delivery")])
    );
    assert_eq!(g.on_store_error, OnStoreError::Allow);
    assert_eq!(
        route(&loaded, "z").replay.as_ref().unwrap().key,
        KeySource::Json("/id".into())
    );
    assert!(route(&loaded, "n").replay.is_none());
    assert_eq!(
        loaded.gateway.replay_store,
        ReplayStoreConfig::Memory {
            max_entries: 100_000
        }
    );

    // (case, config text, location, message fragment)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "unknown on_store_error",
            one_route(&format!("{LAHZA}, replay: {{ on_store_error: maybe }}")),
            "routes[0] (r).replay.on_store_error",
            "use reject or allow",
        ),
        (
            "signature key on an allowlist-only route",
            one_route("allow_ips: [127.0.0.1], replay: { key: signature }"),
            "routes[0] (r).replay.key",
            "needs a `verify` block",
        ),
        (
            "signature key on a token route",
            one_route("verify: { preset: gitlab, secret: \"${LAHZA_SECRET}\" }, replay: {}"),
            "routes[0] (r).replay.key",
            "same on every request",
        ),
        (
            "unknown key kind",
            one_route(&format!("{LAHZA}, replay: {{ key: {{ cookie: x }} }}")),
            "routes[0] (r).replay.key",
            "unknown replay key",
        ),
        (
            "bad ttl",
            one_route(&format!("{LAHZA}, replay: {{ ttl: forever }}")),
            "routes[0] (r).replay.ttl",
            "not a duration",
        ),
        (
            "redis store without url",
            format!("replay_store: {{ type: redis }}\n{}", one_route(LAHZA)),
            "replay_store.url",
            "missing",
        ),
        (
            "redis url that is not one",
            format!(
                "replay_store: {{ type: redis, url: \"http://x\" }}\n{}",
                one_route(LAHZA)
            ),
            "replay_store.url",
            "not a Redis URL",
        ),
        (
            "unknown store",
            format!("replay_store: {{ type: etcd }}\n{}", one_route(LAHZA)),
            "replay_store.type",
            "use memory or redis",
        ),
        (
            "memory store with a url",
            format!(
                "replay_store: {{ type: memory, url: \"redis://x\" }}\n{}",
                one_route(LAHZA)
            ),
            "replay_store.url",
            "only for `type: redis`",
        ),
    ];
    for (case, text, location, needle) in &cases {
        assert_single_error(case, &errors(text), location, needle);
    }
    let redis = ok(&format!(
        "replay_store: {{ type: redis, url: \"redis://127.0.0.1:6379/2\", prefix: \"p:\", timeout: 1s }}\n{}",
        one_route(LAHZA)
    ));
    assert_eq!(
        redis.gateway.replay_store,
        ReplayStoreConfig::Redis {
            url: "redis://127.0.0.1:6379/2".into(),
            prefix: "p:".into(),
            timeout: std::time::Duration::from_secs(1),
        }
    );
}

#[test]
fn a_secret_of_the_wrong_type_is_not_echoed_and_durations_are_bounded() {
    let errs = errors(&one_route("verify: { preset: lahza, secret: 123456789 }"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].location, "routes[0] (r).verify.secret");
    assert!(!errs[0].message.contains("123456789"), "{errs:?}");
    assert!(errs[0].message.contains("quoted string"));

    let errs = errors(&format!(
        "limits: {{ upstream_timeout: 18446744073709551615s }}\n{}",
        one_route(LAHZA)
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].location, "limits.upstream_timeout");
}

#[test]
fn custom_messages_with_adjacent_variable_parts_are_warned() {
    let secret = "secret: \"${LAHZA_SECRET}\"";
    let warned = |verify: &str| {
        ok(&verified(&format!("{verify}, {secret}")))
            .warnings
            .into_iter()
            .map(|w| w.location)
            .collect::<Vec<_>>()
    };
    // A header right before the body: its last bytes and the body's first are exchangeable.
    assert_eq!(
        warned("signature: { header: x-sig }, message: [{ header: x-id }, body]"),
        ["routes[0] (r).verify.message[0..1]"]
    );
    // A literal between them, or a timestamp in seconds (one canonical length), is fine.
    assert!(warned(
        "signature: { header: x-sig }, message: [{ header: x-id }, { literal: \".\" }, body]"
    )
    .is_empty());
    assert!(warned(
        "signature: { header: x-sig }, message: [body, { header: x-ts }], \
         timestamp: { header: x-ts, unit: seconds, tolerance: none }"
    )
    .is_empty());
    // An RFC 3339 timestamp has no single length: warned.
    assert_eq!(
        warned(
            "signature: { header: x-sig }, message: [{ header: x-ts }, body], \
             timestamp: { header: x-ts, unit: rfc3339, tolerance: 5m }"
        ),
        ["routes[0] (r).verify.message[0..1]"]
    );
    // A preset whose timestamp is pinned is not warned; one whose timestamp a route moves
    // elsewhere leaves its signed header unpinned next to the body, and is.
    assert!(warned("preset: listrak").is_empty());
    assert_eq!(
        warned("preset: listrak, timestamp: { header: x-other, unit: rfc3339, tolerance: 5m }"),
        ["routes[0] (r).verify.message[0..1]"]
    );
    // An empty literal separates nothing.
    assert_eq!(
        warned(
            "signature: { header: x-sig }, message: [{ header: x-id }, { literal: \"\" }, body]"
        ),
        ["routes[0] (r).verify.message[0..2]"]
    );
    // An optional group is bounded by its own first and last parts.
    assert!(warned(
        "signature: { header: x-sig }, message: [{ optional: [{ literal: \"id:\" }, { query: id }, \
         { literal: \";\" }] }, body]"
    )
    .is_empty());
    assert_eq!(
        warned(
            "signature: { header: x-sig }, message: [{ optional: [{ literal: \"id:\" }, \
             { query: id }] }, { json: /a }, { literal: \".\" }, body]"
        ),
        ["routes[0] (r).verify.message[0..1]"]
    );
}

#[test]
fn new_message_parts_compile_and_bad_ones_are_located_errors() {
    let secret = "secret: \"${LAHZA_SECRET}\"";
    let loaded = ok(&verified(&format!(
        "signature: {{ header: x-sig }}, message: [method, {{ literal: \" \" }}, path_and_query, \
         {{ literal: \"|\" }}, query_sorted, {{ literal: \"|\" }}, {{ form: f }}, {{ literal: \"|\" }}, \
         {{ json: a/b }}, {{ literal: \"|\" }}, body_sha256_hex], {secret}"
    )));
    let parts = &scheme(&loaded, "r").message;
    assert_eq!(parts[0], Part::Method);
    assert_eq!(
        parts[8],
        Part::Json("/a/b".into()),
        "a bare name is a pointer from the root"
    );
    assert_eq!(
        parts[10],
        Part::BodyDigest(crate::scheme::BodyDigest::Sha256Hex),
        "the body's SHA-256 covers it"
    );
    let cases = [
        (
            "message: [{ json: \"\" }, body]",
            "message[0].json",
            "empty field name",
        ),
        (
            "message: [{ query: \"\" }, body]",
            "message[0]",
            "empty query parameter name",
        ),
        (
            "message: [{ optional: [] }, body]",
            "message[0]",
            "at least one part",
        ),
        (
            "message: [{ optional: [body] }]",
            "message[0].optional[0]",
            "cannot be optional",
        ),
        (
            "message: [{ optional: [{ optional: [method] }] }, body]",
            "message[0].optional[0]",
            "cannot hold another",
        ),
        (
            "message: [body_crc32]",
            "message",
            "a CRC-32 can be matched by anyone",
        ),
        ("message: [{ jsn: /a }, body]", "", "unknown message part"),
    ];
    for (message, location, text) in cases {
        let errs = errors(&verified(&format!(
            "signature: {{ header: x-sig }}, {message}, {secret}"
        )));
        assert!(
            errs.iter()
                .any(|e| e.location.ends_with(location) && e.message.contains(text)),
            "{message}: {errs:?}"
        );
    }
}

#[test]
fn tolerance_none_keeps_the_timestamp_without_a_window() {
    let loaded = ok(&verified(
        "preset: listrak, timestamp: { tolerance: none }, secret: \"${LAHZA_SECRET}\"",
    ));
    let t = scheme(&loaded, "r").timestamp.clone().unwrap();
    assert_eq!(t.window, None);
    let errs = errors(&verified(
        "preset: listrak, timestamp: { tolerance: none, future_tolerance: 1m }, secret: \"${LAHZA_SECRET}\"",
    ));
    assert_single_error(
        "none with a future bound",
        &errs,
        "routes[0] (r).verify.timestamp.future_tolerance",
        "tolerance: none",
    );
}

#[test]
fn a_route_may_set_its_own_body_and_upstream_limits() {
    let text = with_routes(&[
        "{ name: big, path: /big, upstream: \"http://127.0.0.1:3000\", allow_ips: [10.0.0.0/8], \
         limits: { max_body_bytes: 8388608, body_read_timeout: 2m, upstream_timeout: 90s } }",
        "{ name: plain, path: /plain, upstream: \"http://127.0.0.1:3000\", allow_ips: [10.0.0.0/8] }",
    ]);
    let loaded = ok(&text);
    let big = route(&loaded, "big").limits;
    assert_eq!(big.max_body_bytes, 8 * 1024 * 1024);
    assert_eq!(big.body_read_timeout, Duration::from_secs(120));
    assert_eq!(big.upstream_timeout, Duration::from_secs(90));
    let plain = route(&loaded, "plain").limits;
    assert_eq!(plain, loaded.gateway.limits.for_routes());

    let errs = errors(&with_routes(&[
        "{ name: r, path: /r, upstream: \"http://127.0.0.1:3000\", allow_ips: [10.0.0.0/8], \
         limits: { max_body_bytes: 1073741824, upstream_timeout: 0s, max_connections: 1 } }",
    ]));
    assert_single_error(
        "unknown per-route limit",
        &errs,
        "routes[0] (r).limits.max_connections",
        "expected one of `max_body_bytes`, `body_read_timeout`, `upstream_timeout`",
    );
    let errs = errors(&with_routes(&[
        "{ name: r, path: /r, upstream: \"http://127.0.0.1:3000\", allow_ips: [10.0.0.0/8], \
         limits: { max_body_bytes: 1073741824, upstream_timeout: 0s } }",
    ]));
    let locations: Vec<&str> = errs.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(
        locations,
        [
            "routes[0] (r).limits.max_body_bytes",
            "routes[0] (r).limits.upstream_timeout"
        ]
    );
}

#[test]
fn the_log_block_is_checked_like_hookgate_log() {
    use crate::model::{LogFormat, LogSettings};
    let loaded = ok(&format!(
        "log: {{ format: json, level: \"warn,hookgate=debug\" }}\n{}",
        verified("preset: lahza, secret: \"${LAHZA_SECRET}\"")
    ));
    assert_eq!(
        loaded.gateway.log,
        LogSettings {
            format: LogFormat::Json,
            level: "warn,hookgate=debug".into()
        }
    );
    let errs = errors(&format!(
        "log: {{ format: yaml, level: warning }}\n{}",
        verified("preset: lahza, secret: \"${LAHZA_SECRET}\"")
    ));
    let locations: Vec<&str> = errs.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(locations, ["log.format", "log.level"], "{errs:?}");
    assert!(errs[1].message.contains("`warning` is not a level"));
}

/// A secret "file" that is a FIFO would block the reader for good (on a reload, the
/// gateway): only regular files are read.
#[cfg(unix)]
#[test]
fn a_secret_file_that_is_not_a_regular_file_is_an_error_not_a_hang() {
    let dir = temp_dir("fifo");
    let fifo = dir.join("secret.fifo");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let errs = match compile(
        &verified("preset: lahza, secret_file: secret.fifo"),
        &dir,
        &env,
    ) {
        Ok(_) => panic!("a FIFO was read as a secret"),
        Err(ConfigErrors { errors: e, .. }) => e,
    };
    assert_single_error(
        "fifo",
        &errs,
        "routes[0] (r).verify.secret_file",
        "is not a regular file",
    );
}

// ---------------------------------------------------------------------------------------------
// Queued delivery
// ---------------------------------------------------------------------------------------------

const QUEUE_STORE: &str = "queue_store:\n  path: /tmp/hookgate-config-test-queue\n";

/// One route `r` with `fields`, and the queue store.
fn queued_route(fields: &str) -> String {
    format!("{QUEUE_STORE}{}", one_route(fields))
}

#[test]
fn a_queued_route_compiles_with_defaults_and_with_its_own_settings() {
    let loaded = ok(&queued_route(
        "verify: { preset: lahza, secret: \"${LAHZA_SECRET}\" }, delivery: queued",
    ));
    let crate::model::Delivery::Queued(p) = &route(&loaded, "r").delivery else {
        panic!("queued");
    };
    assert_eq!(
        (p.answer_status, p.answer_body.as_str()),
        (http::StatusCode::OK, "queued\n")
    );
    // One destination, unnamed, with the route's upstream and the default pace.
    let [d] = p.destinations.as_slice() else {
        panic!("one destination: {:?}", p.destinations);
    };
    assert_eq!(d.name, "");
    assert_eq!(d.upstream.authority.as_str(), "127.0.0.1:3000");
    assert_eq!(d.pace, crate::model::Pace::default());
    assert!(d.filter.is_none());
    let loaded = ok(&queued_route(
        "verify: { preset: lahza, secret: \"${LAHZA_SECRET}\" }, delivery: queued, queue: { \
         status: 202, body: accepted, concurrency: 1, retry: { initial_interval: 1s, \
         max_interval: 10s, max_age: 24h, max_attempts: 5 } }",
    ));
    let crate::model::Delivery::Queued(p) = &route(&loaded, "r").delivery else {
        panic!("queued");
    };
    assert_eq!(p.answer_status, http::StatusCode::ACCEPTED);
    assert_eq!(p.answer_body, "accepted");
    let pace = &p.destinations[0].pace;
    assert_eq!(pace.concurrency, 1);
    assert_eq!(pace.retry.initial_interval, Duration::from_secs(1));
    assert_eq!(pace.retry.max_interval, Duration::from_secs(10));
    assert_eq!(pace.retry.max_age, Duration::from_secs(24 * 3600));
    assert_eq!(pace.retry.max_attempts, Some(5));
    // A sync route (the default) has no queue.
    let loaded = ok(&one_route(
        "verify: { preset: lahza, secret: \"${LAHZA_SECRET}\" }",
    ));
    assert!(matches!(
        route(&loaded, "r").delivery,
        crate::model::Delivery::Sync
    ));
}

/// A queued route `r` with no `upstream:` and these `destinations:` (a YAML flow list).
fn fan_out(destinations: &str, more: &str) -> String {
    format!(
        "{QUEUE_STORE}{}",
        with_routes(&[&format!(
            "{{ name: r, path: /r, verify: {{ preset: lahza, secret: \"${{LAHZA_SECRET}}\" }}, \
             delivery: queued, destinations: {destinations}{more} }}"
        )])
    )
}

#[test]
fn destinations_compile_over_the_routes_queue_settings() {
    let loaded = ok(&fan_out(
        "[{ name: billing, upstream: \"http://127.0.0.1:3001/in\", concurrency: 2, \
         filter: { json: /type, prefix: invoice. } }, \
         { name: analytics, upstream: \"http://127.0.0.1:3002\", upstream_timeout: 3s, \
         retry: { max_attempts: 2 }, breaker: { probes: 1 } }]",
        ", queue: { concurrency: 8, retry: { initial_interval: 1s }, breaker: { window: 10s } }",
    ));
    let r = route(&loaded, "r");
    let crate::model::Delivery::Queued(p) = &r.delivery else {
        panic!("queued");
    };
    let names: Vec<&str> = p.destinations.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["billing", "analytics"]);
    // The route shows its first destination's upstream where one is asked for.
    assert_eq!(r.upstream.authority.as_str(), "127.0.0.1:3001");
    let (billing, analytics) = (&p.destinations[0], &p.destinations[1]);
    assert_eq!(billing.upstream.base_path, "/in");
    assert_eq!(billing.pace.concurrency, 2);
    assert_eq!(billing.pace.retry.initial_interval, Duration::from_secs(1));
    assert!(billing.filter.is_some());
    assert_eq!(billing.upstream_timeout, Duration::from_secs(30));
    assert_eq!(analytics.pace.concurrency, 8, "the route's");
    assert_eq!(analytics.upstream_timeout, Duration::from_secs(3));
    // Retry and breaker fields are laid one by one over the route's.
    assert_eq!(
        analytics.pace.retry.initial_interval,
        Duration::from_secs(1)
    );
    assert_eq!(analytics.pace.retry.max_attempts, Some(2));
    let breaker = analytics.pace.breaker.expect("a breaker");
    assert_eq!(
        (breaker.window, breaker.probes),
        (Duration::from_secs(10), 1)
    );
    assert!(analytics.filter.is_none());
}

#[test]
fn destination_mistakes_are_located() {
    let v = "verify: { preset: lahza, secret: \"${LAHZA_SECRET}\" }";
    let a = "{ name: a, upstream: \"http://127.0.0.1:3001\" }";
    let cases = [
        (
            queued_route(&format!("{v}, destinations: [{a}]")),
            "routes[0] (r).destinations",
            "only for `delivery: queued`",
        ),
        (
            queued_route(&format!("{v}, delivery: queued, destinations: [{a}]")),
            "routes[0] (r).destinations",
            "not both",
        ),
        (fan_out("[]", ""), "routes[0] (r).destinations", "1 to 16"),
        (
            fan_out(&format!("[{a}, {a}]"), ""),
            "routes[0] (r).destinations[1] (a).name",
            "another destination",
        ),
        (
            fan_out("[{ name: Billing, upstream: \"http://127.0.0.1:1\" }]", ""),
            "routes[0] (r).destinations[0] (Billing).name",
            "a-z",
        ),
        (
            fan_out("[{ name: b, upstream: \"ftp://x\" }]", ""),
            "routes[0] (r).destinations[0] (b).upstream",
            "",
        ),
        (
            fan_out(
                "[{ name: b, upstream: \"http://127.0.0.1:1\", concurrency: 0 }]",
                "",
            ),
            "routes[0] (r).destinations[0] (b).concurrency",
            "at least 1",
        ),
        (
            fan_out(
                "[{ name: b, upstream: \"http://127.0.0.1:1\", filter: { json: /t } }]",
                "",
            ),
            "routes[0] (r).destinations[0] (b).filter",
            "exactly one test",
        ),
        (
            fan_out(&format!("[{a}]"), ", upstream_tls: { ca_file: /x }"),
            "routes[0] (r).upstream_tls",
            "each destination its own",
        ),
        (
            format!(
                "{QUEUE_STORE}{}",
                with_routes(&[&format!("{{ name: r, path: /r, {v}, delivery: queued }}")])
            ),
            "routes[0] (r).upstream",
            "missing",
        ),
    ];
    for (text, location, message) in cases {
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.location == location && e.message.contains(message)),
            "{location}: {message}\n{errs:?}"
        );
    }
}

#[test]
fn queued_delivery_mistakes_are_located() {
    let v = "verify: { preset: lahza, secret: \"${LAHZA_SECRET}\" }";
    let cases = [
        (
            one_route(&format!("{v}, delivery: queued")),
            "routes[0] (r).delivery",
            "needs a top-level `queue_store:`",
        ),
        (
            queued_route(&format!("{v}, delivery: later")),
            "routes[0] (r).delivery",
            "unknown delivery `later`",
        ),
        (
            queued_route(&format!("{v}, queue: {{ concurrency: 2 }}")),
            "routes[0] (r).queue",
            "only for `delivery: queued`",
        ),
        (
            queued_route(&format!("{v}, delivery: queued, queue: {{ status: 500 }}")),
            "routes[0] (r).queue.status",
            "not a 2xx",
        ),
        (
            queued_route(&format!("{v}, delivery: queued, queue: {{ concurrency: 0 }}")),
            "routes[0] (r).queue.concurrency",
            "at least 1",
        ),
        (
            queued_route(&format!(
                "{v}, delivery: queued, queue: {{ breaker: {{ failure_rate: 0 }} }}"
            )),
            "routes[0] (r).queue.breaker.failure_rate",
            "percentage from 1 to 100",
        ),
        (
            queued_route(&format!(
                "{v}, delivery: queued, queue: {{ breaker: {{ open_for: 0s }} }}"
            )),
            "routes[0] (r).queue.breaker.open_for",
            "greater than zero",
        ),
        (
            queued_route(&format!(
                "{v}, delivery: queued, queue: {{ rate_limit: {{ per_second: 0 }} }}"
            )),
            "routes[0] (r).queue.rate_limit.per_second",
            "deliveries a second",
        ),
        (
            queued_route(&format!(
                "{v}, delivery: queued, queue: {{ rate_limit: {{ per_second: 5, burst: 0 }} }}"
            )),
            "routes[0] (r).queue.rate_limit.burst",
            "at least 1",
        ),
        (
            queued_route(&format!(
                "{v}, delivery: queued, queue: {{ retry: {{ initial_interval: 1m, max_interval: 1s }} }}"
            )),
            "routes[0] (r).queue.retry.max_interval",
            "shorter than initial_interval",
        ),
        (
            queued_route(&format!("{v}, delivery: queued, enforce: false")),
            "routes[0] (r).delivery",
            "shadow mode",
        ),
        (
            format!("queue_store:\n  type: embedded\n{}", one_route(v)),
            "queue_store.path",
            "missing",
        ),
        (
            format!("queue_store:\n  type: sqlite\n  path: /q\n{}", one_route(v)),
            "queue_store.type",
            "unknown store",
        ),
    ];
    for (text, location, message) in cases {
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.location == location && e.message.contains(message)),
            "{location}: {message}\n{errs:?}"
        );
    }
}

#[test]
fn check_warns_when_a_sender_that_reads_the_answer_is_queued() {
    let warned = |preset: &str, key: &str| {
        ok(&queued_route(&format!(
            "verify: {{ preset: {preset}, {key} }}, delivery: queued, \
             public_url: \"https://hooks.example.com\""
        )))
        .warnings
        .iter()
        .any(|w| w.location == "routes[0] (r).delivery" && w.message.contains("keep it sync"))
    };
    let secret = "secret: \"${LAHZA_SECRET}\"";
    let discord_key = "public_key: \"e421dceefff3a9d008b7898fcc0974813201800419d72f36d51e010d6a0acb71\", key_encoding: hex";
    // Twilio reads TwiML from the answer; Discord shows the app's answer to interactions.
    assert!(warned("twilio", secret));
    assert!(warned("discord", discord_key));
    // Slack's and Zoom's handshakes are answered by the gateway: nothing asks the app.
    assert!(!warned("slack", secret));
    assert!(!warned("zoom", secret));
}

// ---------------------------------------------------------------------------------------------
// What `check` catches before production does
// ---------------------------------------------------------------------------------------------

#[test]
fn mistakes_that_would_break_production_are_located_errors() {
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "unknown method",
            one_route(&format!("methods: [POST, POTS], {LAHZA}")),
            "routes[0] (r).methods",
            "`POTS` is not an HTTP method a webhook uses",
        ),
        (
            "CONNECT is no webhook method",
            one_route(&format!("methods: [CONNECT], {LAHZA}")),
            "routes[0] (r).methods",
            "`CONNECT`",
        ),
        (
            "star inside a path",
            with_routes(&[&format!(
                "{{ name: r, path: \"/hooks/*/github\", upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] (r).path",
            "only allowed as the whole last segment",
        ),
        (
            "star glued to a segment",
            with_routes(&[&format!(
                "{{ name: r, path: \"/hooks*\", upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] (r).path",
            "only allowed as the whole last segment",
        ),
        (
            "empty route name",
            with_routes(&[&format!(
                "{{ name: \"\", path: /r, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] ().name",
            "reserved for requests that match no route",
        ),
        (
            "route name with a separator",
            with_routes(&[&format!(
                "{{ name: \"gh:prod\", path: /r, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] (gh:prod).name",
            "use 1 to 64 letters",
        ),
        (
            "route named `..`",
            with_routes(&[&format!(
                "{{ name: \"..\", path: /r, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}"
            )]),
            "routes[0] (..).name",
            "not `.` or `..` alone",
        ),
        (
            "replay key header listed twice",
            one_route(&format!(
                "{LAHZA}, replay: {{ key: {{ header: [x-id, X-Id] }} }}"
            )),
            "routes[0] (r).replay.key.header",
            "listed twice",
        ),
        (
            "open allowlist as the only protection",
            one_route("allow_ips: [10.0.0.0/8, 0.0.0.0/0]"),
            "routes[0] (r).allow_ips",
            "every address is allowed",
        ),
        (
            "open IPv6 allowlist as the only protection",
            one_route("allow_ips: [\"::/0\"]"),
            "routes[0] (r).allow_ips",
            "every address is allowed",
        ),
        (
            "admin on a listener's address",
            format!(
                "listeners:\n  - addr: 0.0.0.0:8080\nadmin:\n  addr: 127.0.0.1:8080\nroutes:\n  - {{ name: r, path: /r, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}\n"
            ),
            "admin.addr",
            "give the admin listener a port of its own",
        ),
    ];
    for (case, text, location, needle) in &cases {
        assert_single_error(case, &errors(text), location, needle);
    }
}

#[test]
fn a_secret_written_like_a_reference_without_braces_is_warned_without_its_value() {
    let loaded = ok(&one_route(
        "verify: { preset: lahza, secret: \"$LAHZA_SECRET\" }",
    ));
    let w: Vec<&ConfigError> = loaded
        .warnings
        .iter()
        .filter(|w| w.location == "routes[0] (r).verify.secret")
        .collect();
    assert_eq!(w.len(), 1, "{:?}", loaded.warnings);
    assert!(w[0].message.contains("without braces"), "{}", w[0].message);
    assert!(
        !w[0].message.contains("LAHZA_SECRET"),
        "the value is not echoed"
    );
    // Used as written (a secret may start with `$`).
    assert_eq!(scheme(&loaded, "r").secret_count(), 1);
}

#[test]
fn an_open_allowlist_is_fine_beside_a_signature_and_methods_ignore_case() {
    let loaded = ok(&with_routes(&[&format!(
        "{{ name: r, path: /r, methods: [post, Get], upstream: \"http://127.0.0.1:3000\", \
         allow_ips: [0.0.0.0/0], {LAHZA} }}"
    )]));
    assert_eq!(route(&loaded, "r").methods, vec![Method::POST, Method::GET]);
}

#[test]
fn an_admin_listener_off_loopback_earns_a_warning() {
    let dir = temp_dir("admin-off-loopback");
    std::fs::write(dir.join("token"), "0123456789abcdef0123").unwrap();
    let text = format!(
        "listeners:\n  - addr: 0.0.0.0:8080\nadmin:\n  addr: 0.0.0.0:9090\n  token_file: {}\nroutes:\n  - {{ name: r, path: /r, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}\n",
        dir.join("token").display()
    );
    let loaded = ok(&text);
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.location == "admin.addr" && w.message.contains("not loopback")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn expired_and_soon_expiring_certificates_are_warnings() {
    let dir = temp_dir("cert-expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let write = |name: &str, not_after: i64| {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        let (y, m, d) = date_of(not_after);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        write_private(&dir.join(format!("{name}.key")), &key.serialize_pem());
    };
    // Midnight of the day: expired between two and three days ago, expiring in five to six.
    write("expired", now - 2 * 86_400);
    write("soon", now + 6 * 86_400);
    write("fine", now + 90 * 86_400);
    let config = |name: &str| {
        format!(
            "listeners:\n  - addr: 127.0.0.1:0\n    tls: {{ cert: {d}/{name}.pem, key: {d}/{name}.key }}\nroutes:\n  - {{ name: r, path: /r, upstream: \"http://127.0.0.1:3000\", {LAHZA} }}\n",
            d = dir.display()
        )
    };
    // Expired: a warning, so that the gateway still starts (its plain listeners and other
    // routes keep working) while `check --strict` fails.
    let expired = ok(&config("expired"));
    assert!(
        expired
            .warnings
            .iter()
            .any(|w| w.location == "listeners[0].tls.cert"
                && w.message.contains("the certificate expired 2days")),
        "{:?}",
        expired.warnings
    );
    let soon = ok(&config("soon"));
    assert!(
        soon.warnings.iter().any(
            |w| w.location == "listeners[0].tls.cert" && w.message.contains("expires in 5days")
        ),
        "{:?}",
        soon.warnings
    );
    let fine = ok(&config("fine"));
    assert!(fine.warnings.is_empty(), "{:?}", fine.warnings);
}

/// The calendar date (UTC) `secs` falls on, at midnight, as rcgen takes it (days to civil
/// date: H. Hinnant's algorithm).
fn date_of(secs: i64) -> (i32, u8, u8) {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

#[test]
fn a_signature_header_may_have_several_names_each_once() {
    let verify = |header: &str| {
        with_routes(&[&format!(
            "{{ name: r, path: /r, upstream: \"http://127.0.0.1:3000\", verify: {{ algorithm: hmac-sha256, signature: {{ header: {header}, encoding: base64 }}, secret: \"${{LAHZA_SECRET}}\" }} }}"
        )])
    };
    let loaded = ok(&verify("[x-sig, sig]"));
    let s = scheme(&loaded, "r");
    assert_eq!(s.signature.header().unwrap().as_str(), "x-sig");
    assert_eq!(
        s.signature.source.headers(),
        [
            &HeaderName::from_static("x-sig"),
            &HeaderName::from_static("sig")
        ]
    );
    assert_single_error(
        "twice",
        &errors(&verify("[x-sig, X-Sig]")),
        "routes[0] (r).verify.signature.header",
        "listed twice",
    );
    assert_single_error(
        "empty",
        &errors(&verify("[]")),
        "routes[0] (r).verify.signature.header",
        "empty list",
    );
}

#[test]
fn type_errors_are_all_reported_at_once_each_located() {
    let text = "workers: lots\nlisteners:\n  - addr: 127.0.0.1:0\nadmin:\n  token_file: t\nlimits:\n  max_body_bytes: lots\n  upstream_keepalive: many\n  bogus: 1\nroutes:\n  - { name: a, path: 5, upstream: \"http://127.0.0.1:3000\", methods: POST, enforce: maybe, allow_ips: [127.0.0.1] }\n  - { name: b, path: /b, upstream: \"http://127.0.0.1:3000\", colour: red, verify: { preset: laso, secret: 7, key_encoding: [x], signature: { header: x-sig, prefixx: \"\" } } }\n  - { name: c, path: /c, verify: { preset: laso, secret: x } }\n";
    let found: Vec<(String, String)> = errors(text)
        .into_iter()
        .map(|e| (e.location, e.message))
        .collect();
    let expected = [
        ("workers", "invalid type: string \"lots\", expected u64"),
        ("admin", "missing field `addr`"),
        (
            "limits.max_body_bytes",
            "invalid type: string \"lots\", expected u64",
        ),
        ("limits.upstream_keepalive", "invalid type: string \"many\""),
        ("limits.bogus", "unknown field `bogus`"),
        // A mistyped required field hides nothing else in its route.
        (
            "routes[0] (a).path",
            "invalid type: integer `5`, expected a string",
        ),
        ("routes[0] (a).methods", "expected a sequence"),
        ("routes[0] (a).enforce", "expected a boolean"),
        ("routes[1] (b).colour", "unknown field `colour`"),
        ("routes[1] (b).verify.secret", "must be a quoted string"),
        (
            "routes[1] (b).verify.key_encoding",
            "invalid type: sequence",
        ),
        (
            "routes[1] (b).verify.signature.prefixx",
            "unknown field `prefixx`",
        ),
        ("routes[2] (c).upstream", "missing: where the app is"),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for ((location, message), (want_location, want_message)) in found.iter().zip(expected) {
        assert_eq!(location, want_location, "{found:#?}");
        // Each message is its own error's, not another key's with the same value.
        assert!(message.contains(want_message), "{location}: {message}");
        assert!(!message.contains("line 1"), "{location}: {message}");
    }
    // The secret's value is not repeated.
    assert!(!found[9].1.contains('7'), "{}", found[9].1);
}

#[test]
fn every_preset_expanded_reads_back_to_the_same_scheme() {
    use crate::scheme::{Algorithm, SigningKey};
    let dir = temp_dir("expand-presets");
    // A secret every key encoding accepts: base64 of 24 bytes, as whsec_base64 needs.
    let env = |name: &str| match name {
        "KEY" => Some("dGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleQ==".to_string()),
        "KEY_HEX" => Some("9f86d081884c7d659a2feaa0c55ad015".to_string()),
        _ => None,
    };
    let mut routes = String::new();
    for (i, name) in crate::config::presets::names().iter().enumerate() {
        let shape = crate::config::compile::preset_shape(name).unwrap();
        let keys = if shape.fetches_key() {
            // The key is fetched; the route names what the sender signs for it.
            match *name {
                "aws-sns" => "json_allowed: { /TopicArn: [\"arn:aws:sns:eu-west-1:1:t\"] }".into(),
                "google-pubsub" => "jwt: { audience: \"https://h.example.com/p\", claims: { email: sa@p.iam.gserviceaccount.com } }".into(),
                "plaid" => "key_url: { post: { client_id: \"${KEY}\", secret: \"${KEY_HEX}\" } }".into(),
                "ebay" => "key_url: { token: { client_id: \"${KEY}\", client_secret: \"${KEY_HEX}\" } }".into(),
                _ => "key_id: WH-1".into(),
            }
        } else if shape.algorithm.is_asymmetric() {
            let key = SigningKey::generate(shape.algorithm).unwrap();
            let raw = crate::config::file::RawVerify {
                preset: Some((*name).into()),
                ..Default::default()
            };
            let mut errors = Vec::new();
            let encoding = crate::config::compile::expand_preset(raw, "x", &mut errors)
                .key_encoding
                .and_then(|e| crate::scheme::KeyEncoding::parse(&e))
                .unwrap_or(crate::config::defaults::key_encoding(shape.algorithm));
            format!(
                "public_key: \"{}\"",
                encoding.encode(&key.public_key_bytes().unwrap())
            )
        } else {
            let raw = crate::config::file::RawVerify {
                preset: Some((*name).into()),
                ..Default::default()
            };
            let hex = crate::config::compile::expand_preset(raw, "x", &mut Vec::new())
                .key_encoding
                .is_some_and(|e| e == "hex");
            format!("secret: \"${{{}}}\"", if hex { "KEY_HEX" } else { "KEY" })
        };
        // Braintree tags its signatures with the route's public key.
        let keys = match name {
            &"braintree" => format!("{keys}, key_id: my_public_key"),
            _ => keys,
        };
        // Meta's and eBay's handshakes need their verify token (and eBay's its endpoint).
        let handshake = match crate::config::presets::find(name).and_then(|p| p.handshake) {
            Some(crate::model::handshake::HandshakeKind::Meta) => {
                ", handshake: { verify_token: \"${KEY}\" }"
            }
            Some(crate::model::handshake::HandshakeKind::EbayChallenge) => {
                ", handshake: { verify_token: \"${KEY_HEX}\", endpoint: \"https://hooks.example.com/p\" }"
            }
            _ => "",
        };
        // A token is the same on every request: nothing to deduplicate by.
        let replay = if shape.algorithm == Algorithm::Token {
            ""
        } else {
            ", replay: {}"
        };
        routes += &format!(
            "  - {{ name: p{i}, path: /p{i}, upstream: \"http://127.0.0.1:3000\", public_url: \"https://hooks.example.com\", verify: {{ preset: {name}, {keys} }}{replay}{handshake} }}\n"
        );
    }
    let text = format!("listeners:\n  - addr: 127.0.0.1:0\nroutes:\n{routes}");
    let original = dir.join("gateway.yaml");
    std::fs::write(&original, &text).unwrap();
    let loaded = compile(&text, &dir, &env).unwrap_or_else(|e| panic!("{e}"));
    let (yaml, notes) = crate::config::expand(&original, &loaded).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let back = compile(&yaml, &dir, &env).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    // The same warnings too (none of a preset's own message parts is warned).
    let warned = |l: &Loaded| l.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    assert_eq!(warned(&loaded), warned(&back));
    let describe = |l: &Loaded| {
        l.gateway
            .routes
            .routes()
            .iter()
            .map(|r| {
                format!(
                    "{} {:?} {:?}\n{}",
                    r.name,
                    r.methods,
                    r.replay,
                    r.scheme.as_ref().unwrap().describe("  ")
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(describe(&loaded), describe(&back));
    assert_eq!(describe(&back).len(), crate::config::presets::all().len());
}

#[test]
fn shopify_dedupes_by_its_webhook_id_under_either_name() {
    let loaded = ok(&with_routes(&[
        "{ name: s, path: /s, upstream: \"http://127.0.0.1:3000\", verify: { preset: shopify, secret: \"${LAHZA_SECRET}\" }, replay: {} }",
        "{ name: c, path: /c, upstream: \"http://127.0.0.1:3000\", verify: { preset: shopify, secret: \"${LAHZA_SECRET}\" }, replay: { key: { header: [a-id, b-id] } } }",
    ]));
    let replay = route(&loaded, "s").replay.clone().unwrap();
    let id = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        let body = crate::body::RawBody::from(bytes::Bytes::from_static(b"{}"));
        let request = crate::scheme::RequestView {
            method: &http::Method::POST,
            headers: &h,
            body: &body,
            path_and_query: "/",
            json: &crate::scheme::JsonBody::default(),
        };
        replay.key_bytes(&request, b"sig").unwrap()
    };
    assert_eq!(id(&[("x-shopify-webhook-id", "w1")]), Some(b"w1".to_vec()));
    assert_eq!(id(&[("shopify-webhook-id", "w1")]), Some(b"w1".to_vec()));
    assert_eq!(
        id(&[("x-shopify-webhook-id", "w1"), ("shopify-webhook-id", "w2")]),
        None,
        "two ids: which one would the app read?"
    );
    assert_eq!(
        route(&loaded, "c").replay.clone().unwrap().key,
        KeySource::Header(vec![
            http::HeaderName::from_static("a-id"),
            http::HeaderName::from_static("b-id")
        ])
    );
}

#[test]
fn expand_never_prints_a_literal_secret_or_store_password() {
    let dir = temp_dir("expand-secrets");
    let text = "listeners:\n  - addr: 127.0.0.1:0\nreplay_store:\n  type: redis\n  url: \"redis://:hunter2pw@10.0.0.5:6379\"\nroutes:\n  - { name: r, path: /r, upstream: \"http://127.0.0.1:3000\", verify: { preset: lahza, secret: \"literal-hunter3\" } }\n  - { name: e, path: /e, upstream: \"http://127.0.0.1:3000\", verify: { preset: lahza, secret: \"${LAHZA_SECRET}\" }, handshake: { kind: ebay-challenge, verify_token: literal-hunter4-ebay-verification-token, endpoint: \"https://hooks.example.com/e\" } }\n";
    let original = dir.join("gateway.yaml");
    std::fs::write(&original, text).unwrap();
    let loaded = compile(text, &dir, &env).unwrap_or_else(|e| panic!("{e}"));
    let (yaml, notes) = crate::config::expand(&original, &loaded).unwrap();
    assert!(
        !yaml.contains("hunter2pw")
            && !yaml.contains("literal-hunter3")
            && !yaml.contains("literal-hunter4"),
        "{yaml}"
    );
    assert!(yaml.contains(crate::config::LITERAL_URL_PLACEHOLDER));
    assert!(yaml.contains(crate::config::LITERAL_SECRET_PLACEHOLDER));
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("routes[1] (e).handshake.verify_token: a literal token")),
        "{notes:?}"
    );
    // Pasted back unchanged, it fails to load instead of running with wrong values.
    assert!(compile(&yaml, &dir, &env).is_err());
}

#[test]
fn keygen_reads_a_route_without_compiling_and_refuses_what_cannot_hold_a_public_key() {
    let dir = temp_dir("keygen-spec");
    let file = dir.join("gateway.yaml");
    std::fs::write(
        &file,
        "routes:\n  - { name: d, verify: { preset: discord } }\n  - { name: raw, verify: { algorithm: ed25519, key_encoding: raw } }\n  - { name: h, verify: { preset: github } }\n  - { name: plain, verify: { signature: { header: x-sig } } }\n",
    )
    .unwrap();
    let spec = |route: &str| crate::config::key_spec(&file, Some(route), None);
    assert_eq!(
        spec("d").unwrap(),
        (
            crate::scheme::Algorithm::Ed25519,
            crate::scheme::KeyEncoding::Hex
        )
    );
    assert!(spec("raw")
        .unwrap_err()
        .contains("raw cannot hold a public key"));
    assert!(spec("h").unwrap_err().contains("shared secret"));
    assert!(spec("nope").unwrap_err().contains("no route named `nope`"));
    // No `algorithm:` is the compiler's default (hmac-sha256), not an unknown algorithm.
    assert!(spec("plain")
        .unwrap_err()
        .starts_with("hmac-sha256 verifies with a shared secret"));
}

/// `check --expand` writes out the very defaults the compiler applies (`config/defaults.rs`):
/// a block that leaves them all out reads back, written out, to the same scheme.
#[test]
fn expand_writes_the_defaults_the_compiler_applies() {
    use crate::config::defaults;
    let dir = temp_dir("expand-defaults");
    let text = verified("signature: { header: x-sig }, secret: \"${LAHZA_SECRET}\"");
    let original = dir.join("gateway.yaml");
    std::fs::write(&original, &text).unwrap();
    let loaded = compile(&text, &dir, &env).unwrap_or_else(|e| panic!("{e}"));
    let s = scheme(&loaded, "r");
    assert_eq!(s.algorithm, defaults::ALGORITHM);
    assert_eq!(s.signature.prefix, defaults::SIGNATURE_PREFIX);
    assert_eq!(
        s.signature.encodings,
        [defaults::signature_encoding(Algorithm::HmacSha256)]
    );
    assert_eq!(s.message, [Part::Body]);
    let (yaml, _) = crate::config::expand(&original, &loaded).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let verify = &doc["routes"][0]["verify"];
    assert_eq!(verify["key_encoding"], "raw", "{yaml}");
    assert_eq!(verify["message"][0], "body", "{yaml}");
    assert_eq!(verify["signature"]["encoding"], "hex", "{yaml}");
    assert_eq!(verify["signature"]["prefix"], "", "{yaml}");
    let back = compile(&yaml, &dir, &env).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(
        scheme(&back, "r").describe(""),
        scheme(&loaded, "r").describe("")
    );
}

#[test]
fn where_the_signature_is_is_one_choice_and_each_misuse_a_located_error() {
    let secret = "secret: \"${LAHZA_SECRET}\"";
    let cases = [
        (
            "signature: { header: x-sig, query: sig }",
            "verify.signature",
            "set one of `header`, `headers`",
        ),
        ("signature: { headers: [] }", "verify.signature.headers", "empty list"),
        (
            "signature: { headers: [a-sig, A-Sig] }",
            "verify.signature.headers",
            "listed twice",
        ),
        (
            "signature: { numbered: { prefix: x-s-, max: 101 } }",
            "verify.signature.numbered",
            "from 1 to 100",
        ),
        ("signature: { query: \"\" }", "verify.signature.query", "empty name"),
        ("signature: { json: \"/\" }", "verify.signature.json", "empty field name"),
        (
            "signature: { query: sig, list: { separator: \",\", first: t } }",
            "verify.signature",
            "`list` one header's value",
        ),
        (
            "signature: { headers: [a, b], entries: { separator: \",\", assign: \"=\", key: v1 } }",
            "verify.signature",
            "`entries` split one header's value, or one query parameter",
        ),
        (
            "signature: { form: sig, entries: { separator: \"&\", assign: \"|\", key: \"{key_id}\" } }",
            "verify.key_id",
            "set `key_id:`",
        ),
        (
            "signature: { header: x-sig, list: { separator: \",\", first: t }, entries: { separator: \",\", assign: \"=\", key: v1 } }",
            "verify.signature.list",
            "one of `prefix`, `entries` or `list`",
        ),
        (
            "signature: { header: x-sig }, body_signed: false",
            "verify.body_signed",
            "the message covers the body",
        ),
    ];
    for (verify, location, text) in cases {
        let errs = errors(&verified(&format!("{verify}, {secret}")));
        assert!(
            errs.iter()
                .any(|e| e.location.ends_with(location) && e.message.contains(text)),
            "{verify}: {errs:?}"
        );
    }
    // A sender that signs only fields compiles, with a warning that says so.
    let loaded = ok(&verified(&format!(
        "signature: {{ json: /signature/signature }}, message: [{{ json: /signature/token }}], \
         body_signed: false, {secret}"
    )));
    assert!(!scheme(&loaded, "r").body_signed);
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.location.ends_with("verify.body_signed")),
        "{:?}",
        loaded.warnings
    );
    let numbered = ok(&verified(&format!(
        "signature: {{ numbered: {{ prefix: x-docusign-signature-, max: 3 }} }}, {secret}"
    )));
    assert_eq!(
        scheme(&numbered, "r").signature.source.headers(),
        [
            "x-docusign-signature-1",
            "x-docusign-signature-2",
            "x-docusign-signature-3"
        ]
        .map(HeaderName::from_static)
        .iter()
        .collect::<Vec<_>>()
    );
}

#[test]
fn a_shared_secret_route_without_an_allowlist_is_warned() {
    let token = "algorithm: token, signature: { header: x-token }, message: [], secret: \"${LAHZA_SECRET}\"";
    let warned = |extra: &str| {
        let loaded = ok(&with_routes(&[&format!(
            "{{ name: r, path: /r, upstream: \"http://127.0.0.1:3000\", verify: {{ {token} }}{extra} }}"
        )]));
        loaded
            .warnings
            .iter()
            .any(|w| w.location == "routes[0] (r).verify" && w.message.contains("shared secret"))
    };
    assert!(warned(""));
    assert!(
        warned(", allow_ips: [\"0.0.0.0/0\"]"),
        "everyone is no allowlist"
    );
    assert!(!warned(", allow_ips: [\"192.0.2.0/24\"]"));
}

#[test]
fn jwt_blocks_refuse_algorithm_confusion_and_each_misuse_is_located() {
    let secret = "secret: \"${LAHZA_SECRET}\"";
    let sig = "signature: { header: authorization, prefix: \"Bearer \" }";
    let body = "body_sha256: { claim: sha256 }";
    let cases = [
        (format!("algorithm: jwt, {sig}, {secret}"), "verify.jwt", "needs `jwt:"),
        (
            format!("{sig}, jwt: {{ algorithms: [HS256], {body} }}, {secret}"),
            "verify.jwt",
            "only for `algorithm: jwt`",
        ),
        (
            format!("algorithm: jwt, {sig}, jwt: {{ algorithms: [RS256, HS256], {body} }}, {secret}"),
            "verify.jwt.algorithms",
            "mixes key families",
        ),
        (
            format!("algorithm: jwt, {sig}, jwt: {{ algorithms: [none], {body} }}, {secret}"),
            "verify.jwt.algorithms",
            "unknown or refused algorithm `none`",
        ),
        (
            format!("algorithm: jwt, {sig}, jwt: {{ algorithms: [RS256], {body} }}, {secret}"),
            "verify",
            "verifies with public keys",
        ),
        (
            format!("algorithm: jwt, {sig}, jwt: {{ algorithms: [HS256], {body} }}, message: [body], {secret}"),
            "verify.message",
            "a JWT signs its own claims",
        ),
        (
            format!("algorithm: jwt, {sig}, jwt: {{ algorithms: [HS256] }}, {secret}"),
            "verify.jwt.body_sha256",
            "bind the body",
        ),
        (
            format!("algorithm: jwt, {sig}, jwt: {{ algorithms: [HS256], require: [sub], {body} }}, {secret}"),
            "verify.jwt.require",
            "unknown claim `sub`",
        ),
        (
            format!("algorithm: jwt, {sig}, jwt: {{ algorithms: [ES256], {body} }}, public_key: not-pem, key_encoding: raw"),
            "verify.public_key",
            "PEM",
        ),
    ];
    for (verify, location, text) in cases {
        let errs = errors(&verified(&verify));
        assert!(
            errs.iter()
                .any(|e| e.location.ends_with(location) && e.message.contains(text)),
            "{verify}: {errs:?}"
        );
    }
    let ok_route = ok(&verified(&format!(
        "algorithm: jwt, {sig}, jwt: {{ algorithms: [HS256, HS512], {body} }}, {secret}"
    )));
    assert_eq!(
        scheme(&ok_route, "r").strength(),
        crate::scheme::Strength::Signature,
        "a token bound to the body's digest signs the body"
    );
}

#[test]
fn a_jwks_route_names_its_audience_unless_its_issuer_signs_for_it_alone() {
    let scheme = |extra: &str| {
        let yaml = format!(
            "{{ algorithm: jwt, signature: {{ header: authorization, prefix: \"Bearer \" }}, \
             jwt: {{ algorithms: [RS256] }}, body_signed: false, \
             key_url: {{ url: \"https://auth.example.com/.well-known/jwks.json\"{extra} }} }}"
        );
        let v: crate::config::file::RawVerify = serde_yaml::from_str(&yaml).unwrap();
        super::compile_scheme(v, "v", Path::new("."), &|_| None, None)
    };
    let errors = scheme("").unwrap_err();
    let at: Vec<&str> = errors.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(at, ["v.jwt.issuer", "v.jwt.audience"], "{errors:?}");
    assert!(errors[1].message.contains("private_issuer"), "{errors:?}");
    let private = scheme(", private_issuer: true").unwrap();
    assert!(private.fetches_key());
    // Google's keys sign for every client: never a private issuer.
    let v: crate::config::file::RawVerify = serde_yaml::from_str(
        "{ algorithm: jwt, signature: { header: authorization }, jwt: { algorithms: [RS256] }, \
         body_signed: false, key_url: { url: \"https://www.googleapis.com/oauth2/v3/certs\", \
         private_issuer: true } }",
    )
    .unwrap();
    let errors = super::compile_scheme(v, "v", Path::new("."), &|_| None, None).unwrap_err();
    assert_eq!(errors[0].location, "v.key_url.private_issuer", "{errors:?}");
}

#[test]
fn a_required_chain_is_for_certificates_and_its_intermediates_are_read_at_load() {
    let dir = temp_dir("chain-rule");
    let compile = |key_url: &str| {
        let yaml = format!("{{ preset: paypal, key_id: WH-1, key_url: {key_url} }}");
        let v: crate::config::file::RawVerify = serde_yaml::from_str(&yaml).unwrap();
        super::compile_scheme(v, "v", &dir, &|_| None, None)
    };
    let at = |key_url: &str| -> Vec<String> {
        compile(key_url)
            .unwrap_err()
            .iter()
            .map(|e| format!("{}: {}", e.location, e.message))
            .collect()
    };
    let ok = compile("{ require_chain: true }").unwrap();
    let crate::scheme::Keys::Fetched(key) = &ok.keys else {
        panic!("paypal fetches its key")
    };
    assert!(key.chain.required && key.chain.intermediates.is_empty());
    let errors = at("{ intermediates_file: missing.pem }");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("v.key_url.intermediates_file: goes with")),
        "{errors:?}"
    );
    let errors = at("{ require_chain: true, intermediates_file: missing.pem }");
    assert!(
        errors.iter().any(|e| e.contains("cannot read")),
        "{errors:?}"
    );
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let errors = at("{ require_chain: true, intermediates_file: empty.pem }");
    assert!(
        errors.iter().any(|e| e.contains("no PEM certificate")),
        "{errors:?}"
    );
    std::fs::write(
        dir.join("ca.pem"),
        include_str!("../../../tests/fixtures/digicert-sha2-ev-server-ca.pem"),
    )
    .unwrap();
    let given = compile("{ require_chain: true, intermediates_file: ca.pem }").unwrap();
    let crate::scheme::Keys::Fetched(key) = &given.keys else {
        panic!("paypal fetches its key")
    };
    assert_eq!(key.chain.intermediates.len(), 1);
    // A key set has no chain.
    let v: crate::config::file::RawVerify = serde_yaml::from_str(
        "{ preset: google-pubsub, jwt: { audience: a, claims: { email: e } }, \
         key_url: { require_chain: true } }",
    )
    .unwrap();
    let errors = super::compile_scheme(v, "v", &dir, &|_| None, None).unwrap_err();
    assert_eq!(errors[0].location, "v.key_url.require_chain", "{errors:?}");
}

#[test]
fn only_a_jwt_may_be_the_whole_body_and_then_it_signs_the_body() {
    let compile = |yaml: &str| {
        let v: crate::config::file::RawVerify = serde_yaml::from_str(yaml).unwrap();
        super::compile_scheme(v, "v", Path::new("."), &|_| Some("k".into()), None)
    };
    let token = compile(
        "{ algorithm: jwt, signature: { body: true }, jwt: { algorithms: [RS256], \
         issuer: \"https://acme.kinde.com\" }, key_url: { url: \
         \"https://acme.kinde.com/.well-known/jwks.json\", private_issuer: true } }",
    )
    .unwrap();
    assert_eq!(token.strength(), crate::scheme::Strength::Signature);
    let errors = compile("{ signature: { body: true }, secret: \"${K}\" }").unwrap_err();
    assert_eq!(errors[0].location, "v.signature.body", "{errors:?}");
    let errors = compile(
        "{ algorithm: jwt, signature: { body: false }, jwt: { algorithms: [HS256] }, \
         secret: \"${K}\" }",
    )
    .unwrap_err();
    assert_eq!(errors[0].location, "v.signature.body", "{errors:?}");
    let errors = compile(
        "{ algorithm: jwt, signature: { body: true, header: x-token }, \
         jwt: { algorithms: [HS256] }, secret: \"${K}\" }",
    )
    .unwrap_err();
    assert!(
        errors[0].message.contains("where is the signature"),
        "{errors:?}"
    );
}
