//! The bodies of hookgate's fuzz targets, one plain function per target.
//!
//! `cargo +nightly fuzz run <target>` calls these through `fuzz_targets/<target>.rs`;
//! `tests/e2e/fuzz_corpus.rs` compiles this same file on stable and replays every committed
//! corpus through it, so a corpus input that ever found a bug stays a regression test.
//!
//! Each target uses only hookgate's public API (plus std, `http` and `bytes`) and checks
//! invariants that follow from the README's contract, never from the current implementation's
//! incidental choices: a target must not fail on correct behaviour. Schemes and route tables
//! are compiled once, from YAML, through the real configuration compiler.
//!
//! Input formats (what the seeds in `fuzz/corpus/` and `fuzz/seed.py` write):
//!
//! - `config`: YAML text, compiled as `gateway.yaml` relative to the repository root.
//! - `signature_header`: byte 0 picks a scheme shape (algorithm x encodings x prefix or
//!   entries); the rest is signature header values, one per line. `@HEX@`, `@HEXU@` and `@B64@`
//!   stand for the valid signature of the (empty) message in hex, upper-case hex and base64.
//! - `path_and_route`: byte 0 picks the method, byte 1 the route table; the rest is the path.
//! - `client_ip`: byte 0 picks the peer (or makes one from the next 4 or 16 bytes), byte 1 the
//!   trusted proxy list; the rest is `X-Forwarded-For` values, one per line.
//! - `timestamp`: byte 0 picks source x unit x window, byte 1 the mode (even: the rest is the
//!   raw timestamp text, for a JSON source the field's raw JSON value; odd: sign at a clock,
//!   verify at another, bytes 10..14 the difference), bytes 2..10 a clock.
//! - `verify`: text. Line 1 `<mode> <variant>` (modes: `r` raw, `c` raw and re-chunked, `s`
//!   signed, `k` signed with another key, `t` signed then tampered); line 2 the clock (Unix
//!   seconds); line 3 the path and query; then `name: value` header lines, a blank line, and
//!   the body.
//! - `json_field`: a request body, read as strict JSON and by a scheme that signs JSON fields.
//! - `jwt`: byte 0 picks a mode (even: the rest is a token; odd: the rest flips bytes of a
//!   valid RS256 token, `tests/vectors/jwt.json`, at positions and with masks it names).
//! - `key_url`: byte 0 picks what the rest is: a key URL a request names (checked against
//!   SNS's pinned hosts and paths), a certificate document, a JWKS, an OIDC discovery
//!   document.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use hookgate::body::RawBody;
use hookgate::client_ip::{self, ClientIp};
use hookgate::config::compile::compile;
use hookgate::config::ConfigError;
use hookgate::model::routes::{is_clean_path, Match, PathPattern};
use hookgate::model::Gateway;
use hookgate::scheme::certificate::Certificate;
use hookgate::scheme::fetched::{DocFormat, FetchedKey, KeyDoc, KeyFrom, MAX_JWKS_KEYS};
use hookgate::scheme::jwt::Family;
use hookgate::scheme::pin::{HostPattern, KeyUrl, PathPattern as KeyPath};
use hookgate::scheme::{
    parse_timestamp_ms, Algorithm, Outgoing, Placement, RequestView, Scheme, SigningKey,
    TimestampUnit, VerifyError,
};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// The repository root (this file is compiled both from `fuzz/` and from the main crate).
fn repo_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        if dir.join("fuzz_targets").is_dir() {
            dir.parent().unwrap_or(dir).to_path_buf()
        } else {
            dir.to_path_buf()
        }
    })
}

/// Compiles a configuration the targets themselves wrote; it must be valid.
fn must_compile(text: &str) -> Gateway {
    match compile(text, repo_root(), &|_| None) {
        Ok(loaded) => loaded.gateway,
        Err(e) => panic!("fuzz target setup: invalid configuration: {e}\n{text}"),
    }
}

/// Every route's scheme of a compiled gateway, by route name, in file order.
fn schemes_of(gateway: &Gateway) -> Vec<(String, Scheme)> {
    gateway
        .routes
        .routes()
        .iter()
        .map(|r| {
            let scheme = r
                .scheme
                .clone()
                .expect("fuzz target setup: route has verify");
            (r.name.clone(), scheme)
        })
        .collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Unix milliseconds (any sign) as a clock; `None` where `SystemTime` cannot go.
fn clock_ms(ms: i128) -> Option<SystemTime> {
    let magnitude = Duration::from_millis(u64::try_from(ms.unsigned_abs()).ok()?);
    if ms >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

fn u64_le(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(buf)
}

fn is_timestamp_error(e: &VerifyError) -> bool {
    matches!(
        e,
        VerifyError::MissingTimestamp
            | VerifyError::MalformedTimestamp
            | VerifyError::StaleTimestamp
            | VerifyError::FutureTimestamp
    )
}

/// What every `Ok` must look like, whatever the request.
fn check_verified(scheme: &Scheme, result: &Result<hookgate::scheme::Verified, VerifyError>) {
    if let Ok(v) = result {
        assert!(
            v.key_index < scheme.secret_count(),
            "key index out of range"
        );
        assert!(!v.signature.is_empty(), "verified an empty signature");
        if scheme.algorithm == Algorithm::EcdsaP256Sha256 {
            // The replay key is the fixed-size low-s form, whatever DER the sender wrote.
            assert_eq!(v.signature.len(), 64, "ECDSA replay key is not r || s");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// config: YAML text -> compiled gateway or located errors
// ---------------------------------------------------------------------------------------------

/// What `${NAME}` resolves to in the `config` target. Never appears in the fuzz input's own
/// text, so seeing it in an error or warning means a secret leaked into the report.
const ENV_SECRET: &str = "fuzz-env-secret-value-7Qx";

fn config_env(name: &str) -> Option<String> {
    match name {
        // The names src/config/tests.rs uses, with its values.
        "LAHZA_SECRET" => Some("s3cret".into()),
        "OTHER_SECRET" => Some("other".into()),
        n if n.starts_with("EMPTY") => Some(String::new()),
        n if n.starts_with("UNSET") => None,
        _ => Some(ENV_SECRET.into()),
    }
}

pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Secret and TLS files are read from disk: keep the fuzzer away from device files such as
    // /dev/zero, which an operator would never name (and which never end).
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let may_leak = !text.contains(ENV_SECRET);
    match compile(text, repo_root(), &config_env) {
        Ok(loaded) => {
            check_gateway(&loaded.gateway);
            if may_leak {
                no_secret_in(&loaded.warnings);
            }
        }
        Err(errors) => {
            assert!(
                !errors.errors.is_empty(),
                "compilation failed without an error"
            );
            if may_leak {
                no_secret_in(&errors.errors);
                no_secret_in(&errors.warnings);
            }
            // The report is printed by `hookgate check`; it must format.
            let _ = errors.to_string();
        }
    }
}

fn no_secret_in(report: &[ConfigError]) {
    for e in report {
        let line = e.to_string();
        assert!(
            !line.contains(ENV_SECRET),
            "a secret from the environment reached the config report: {line}"
        );
    }
}

/// What a compiled gateway promises: the request path never re-checks any of this.
fn check_gateway(gateway: &Gateway) {
    let mut names = HashSet::new();
    for route in gateway.routes.routes() {
        assert!(
            names.insert(route.name.as_str()),
            "two routes named {}",
            route.name
        );
        assert!(
            route.scheme.is_some() || route.allow_ips.is_some(),
            "route {} neither verifies nor allowlists",
            route.name
        );
        let probe = match &route.path {
            PathPattern::Exact(p) => {
                assert!(is_clean_path(p), "route {} has an unclean path", route.name);
                p.clone()
            }
            PathPattern::Prefix(p) => {
                assert!(
                    p.is_empty() || (is_clean_path(p) && !p.ends_with('/')),
                    "route {} has an unclean prefix {p:?}",
                    route.name
                );
                format!("{p}/")
            }
        };
        // Every route is reachable by its own path, unless an earlier route takes it.
        if let Some(method) = route.methods.first() {
            match gateway.routes.lookup(method, &probe) {
                Match::Found(found) => assert!(
                    found.index <= route.index,
                    "{probe} {method} found route {} after route {}",
                    found.name,
                    route.name
                ),
                _ => panic!("route {} unreachable at {method} {probe}", route.name),
            }
        }
        if let Some(scheme) = &route.scheme {
            assert!(
                scheme.secret_count() > 0,
                "route {} has no keys",
                route.name
            );
            let _ = scheme.describe("  ");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// signature_header: every encoding and structured form
// ---------------------------------------------------------------------------------------------

const SIG_ALGORITHMS: &[&str] = &[
    "hmac-sha256",
    "hmac-sha1",
    "hmac-sha512",
    "token",
    "ed25519",
    "ecdsa-p256-sha256",
];
const SIG_ENCODINGS: &[&str] = &["[hex]", "[base64]", "[base64, hex]"];
/// `(prefix, separator, assign, key)`: a plain header with a prefix when `separator` is empty,
/// else a structured header of entries.
const SIG_SHAPES: &[(&str, &str, &str, &str)] = &[
    ("", "", "", ""),
    ("sha256=", "", "", ""),
    ("v0=", "", "", ""),
    ("", ",", "=", "v1"),
    ("", ";", "=", "h1"),
    ("", " ", ",", "v1a"),
    ("", ", ", ":", "sig"),
];
const SIG_HMAC_KEY: &str = "fuzz-hmac-key";
const SIG_TOKEN: &str = "fuzz-token";
/// Discord's published example key pair (tests/vectors/providers.json).
const ED25519_PUBLIC_HEX: &str = "dccb6b3230ef097b89f84bc66d7c30f8838664bb8e3407be41a6d15dc0803064";
const ED25519_PRIVATE_HEX: &str =
    "7c086b27fe0fe0e4a35a0d11e52c80d25729f8d9a8c2a3d35aae8b7ab1adf098";
/// SendGrid keys from the vectors: three public keys, the first private key's pair among them.
const P256_PUBLIC_B64: &[&str] = &[
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==",
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==",
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzjZzaRHSBj3LHJfbMkS2IDk1YQqO64XJdEWl++aHrl1MYYxU6hruHJpkB+3gInUzJGMER0egKg0ZocSaz1Niiw==",
];
const P256_PRIVATE_HEX: &str = "74de85e2a313530d9318cf836a1f60edb3c1b75bf9a9fe6e4af4a5facf0114b8";

fn sig_keys_yaml(algorithm: &str) -> String {
    match algorithm {
        "token" => format!("secret: \"{SIG_TOKEN}\""),
        "ed25519" => format!("public_key: \"{ED25519_PUBLIC_HEX}\", key_encoding: hex"),
        "ecdsa-p256-sha256" => format!("public_keys: [\"{}\"]", P256_PUBLIC_B64.join("\", \"")),
        _ => format!("secret: \"{SIG_HMAC_KEY}\""),
    }
}

/// The headers `scheme` signs a POST of `body` to `pq` with, when the signature goes in a
/// header: the cases here send the body and target as they are.
fn signed_headers(
    scheme: &Scheme,
    headers: HeaderMap,
    body: &[u8],
    pq: &str,
    now: SystemTime,
    key: Option<&SigningKey>,
) -> Result<HeaderMap, String> {
    let signed = scheme.sign(Outgoing::post(pq, headers, body), now, key)?;
    match signed.placed {
        Placement::Header(_) => Ok(signed.request.headers),
        other => Err(format!("the signature goes in the {other:?}")),
    }
}

fn private_key_for(algorithm: Algorithm) -> Option<SigningKey> {
    let text = match algorithm {
        Algorithm::Ed25519 => ED25519_PRIVATE_HEX,
        Algorithm::EcdsaP256Sha256 => P256_PRIVATE_HEX,
        _ => return None,
    };
    Some(SigningKey::parse(algorithm, text).expect("fuzz target setup: private key"))
}

struct SigCase {
    scheme: Scheme,
    prefix: String,
    /// `Some((separator-free key, assign))` for structured headers.
    entries: Option<(String, String)>,
    hex_ok: bool,
    base64_ok: bool,
}

/// The valid signature of the empty message under a scheme's key, three ways.
struct Reference {
    bytes: Vec<u8>,
    hex: String,
    base64: String,
}

struct SigSetup {
    cases: Vec<SigCase>,
    /// Per algorithm (index into `SIG_ALGORITHMS`).
    references: Vec<Reference>,
}

fn sig_setup() -> &'static SigSetup {
    static SETUP: OnceLock<SigSetup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let mut routes = String::new();
        let mut meta = Vec::new();
        for alg in SIG_ALGORITHMS {
            for enc in SIG_ENCODINGS {
                for (prefix, separator, assign, key) in SIG_SHAPES {
                    let shape = if separator.is_empty() {
                        format!("prefix: \"{prefix}\"")
                    } else {
                        format!(
                            "entries: {{ separator: \"{separator}\", assign: \"{assign}\", key: {key} }}"
                        )
                    };
                    // A token is compared as written: its encoding is `raw`.
                    let enc = if *alg == "token" { "raw" } else { enc };
                    routes.push_str(&format!(
                        "  - {{ name: s{n}, path: /s{n}, upstream: \"http://127.0.0.1:1\", verify: {{ algorithm: {alg}, signature: {{ header: x-sig, {shape}, encoding: {enc} }}, message: [body], {keys} }} }}\n",
                        n = meta.len(),
                        keys = sig_keys_yaml(alg),
                    ));
                    let entries = (!separator.is_empty())
                        .then(|| (key.to_string(), assign.to_string()));
                    meta.push((
                        prefix.to_string(),
                        entries,
                        enc.contains("hex"),
                        enc.contains("base64"),
                    ));
                }
            }
        }
        // One reference scheme per algorithm, plain hex and plain base64, to compute the
        // valid signature with `Scheme::sign`.
        for (i, alg) in SIG_ALGORITHMS.iter().enumerate() {
            for enc in ["hex", "base64"] {
                routes.push_str(&format!(
                    "  - {{ name: ref-{enc}-{i}, path: /ref-{enc}-{i}, upstream: \"http://127.0.0.1:1\", verify: {{ algorithm: {alg}, signature: {{ header: x-sig, encoding: [{enc}] }}, message: [body], {keys} }} }}\n",
                    keys = sig_keys_yaml(alg),
                ));
            }
        }
        let gateway = must_compile(&format!(
            "listeners:\n  - addr: 127.0.0.1:0\nroutes:\n{routes}"
        ));
        let mut schemes = schemes_of(&gateway).into_iter().map(|(_, s)| s);
        let cases: Vec<SigCase> = meta
            .into_iter()
            .map(|(prefix, entries, hex_ok, base64_ok)| SigCase {
                scheme: schemes.next().expect("one scheme per shape"),
                prefix,
                entries,
                hex_ok,
                base64_ok,
            })
            .collect();
        let now = UNIX_EPOCH + Duration::from_secs(1_763_884_800);
        let references = SIG_ALGORITHMS
            .iter()
            .map(|_| {
                let hex_scheme = schemes.next().expect("hex reference");
                let b64_scheme = schemes.next().expect("base64 reference");
                if hex_scheme.algorithm == Algorithm::Token {
                    return Reference {
                        bytes: SIG_TOKEN.as_bytes().to_vec(),
                        hex: SIG_TOKEN.into(),
                        base64: SIG_TOKEN.into(),
                    };
                }
                let key = private_key_for(hex_scheme.algorithm);
                let sign = |s: &Scheme| {
                    let h = signed_headers(s, HeaderMap::new(), b"", "/", now, key.as_ref())
                        .expect("fuzz target setup: sign");
                    h.get("x-sig")
                        .and_then(|v| v.to_str().ok())
                        .expect("signature header")
                        .to_owned()
                };
                let hex = sign(&hex_scheme);
                let base64 = sign(&b64_scheme);
                Reference {
                    bytes: hex_decode(&hex).expect("hex signature"),
                    hex,
                    base64,
                }
            })
            .collect();
        SigSetup { cases, references }
    })
}

pub fn signature_header(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let setup = sig_setup();
    let index = usize::from(selector) % setup.cases.len();
    let case = &setup.cases[index];
    let reference = &setup.references[index / (SIG_ENCODINGS.len() * SIG_SHAPES.len())];
    let scheme = &case.scheme;

    let text = String::from_utf8_lossy(rest)
        .replace("@HEXU@", &reference.hex.to_ascii_uppercase())
        .replace("@HEX@", &reference.hex)
        .replace("@B64@", &reference.base64);
    let mut headers = HeaderMap::new();
    let mut values = Vec::new();
    if !rest.is_empty() {
        for line in text.split('\n') {
            if let Ok(v) = HeaderValue::from_str(line) {
                values.push(line);
                headers.append("x-sig", v);
            }
        }
    }
    let body = RawBody::default();
    let req = RequestView {
        method: &http::Method::POST,
        json: &hookgate::scheme::JsonBody::default(),
        headers: &headers,
        body: &body,
        path_and_query: "/",
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_763_884_800);
    let result = scheme.verify(&req, now);
    check_verified(scheme, &result);

    match values.len() {
        0 => assert!(
            matches!(result, Err(VerifyError::MissingSignature(_))),
            "no signature header: {result:?}"
        ),
        1 => {}
        _ => assert!(
            matches!(result, Err(VerifyError::MalformedSignature(_))),
            "two signature headers: {result:?}"
        ),
    }
    if let Ok(v) = &result {
        match scheme.algorithm {
            // Only the key holder can make an HMAC, token or Ed25519 signature that verifies,
            // and for this message that is exactly the reference.
            Algorithm::EcdsaP256Sha256 => {}
            _ => assert_eq!(
                v.signature, reference.bytes,
                "verified a signature that is not the key's: {values:?}"
            ),
        }
    }
    // The exact form a sender writes must verify.
    if let [value] = values.as_slice() {
        let written = |sig: &str| match &case.entries {
            None => format!("{}{sig}", case.prefix),
            Some((key, assign)) => format!("{key}{assign}{sig}"),
        };
        let hex_form = (case.hex_ok || scheme.algorithm == Algorithm::Token)
            && *value == written(&reference.hex);
        let b64_form = case.base64_ok && *value == written(&reference.base64);
        if hex_form || b64_form {
            assert!(result.is_ok(), "a valid signature was refused: {result:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// path_and_route: path normalization and route lookup
// ---------------------------------------------------------------------------------------------

const ROUTES: &[(&str, &str)] = &[
    ("/webhooks/lahza", "[POST]"),
    ("/webhooks/lahza", "[PUT]"),
    ("/webhooks/acme/*", "[POST]"),
    ("/webhooks/*", "[GET]"),
    ("/webhooks/acme/special", "[POST, PATCH]"),
    ("/a/b", "[POST, GET]"),
    ("/a/*", "[DELETE]"),
    ("/", "[POST]"),
    ("/t/", "[POST]"),
    ("/x/y/z/*", "[PATCH]"),
    ("/%41b/*", "[POST]"),
    ("/m;x", "[POST]"),
    ("/caf%C3%A9", "[POST]"),
    ("/ünï/*", "[POST]"),
];

const METHODS: &[Method] = &[
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::HEAD,
    Method::OPTIONS,
];

/// Two route tables: `ROUTES`, and `ROUTES` with a catch-all `/*` at the end.
fn route_tables() -> &'static [Gateway; 2] {
    static TABLES: OnceLock<[Gateway; 2]> = OnceLock::new();
    TABLES.get_or_init(|| {
        let build = |catch_all: bool| {
            let mut text = String::from("listeners:\n  - addr: 127.0.0.1:0\nroutes:\n");
            let extra = [("/*", "[POST, GET, PUT]")];
            let all = ROUTES
                .iter()
                .chain(extra.iter().filter(|_| catch_all))
                .enumerate();
            for (i, (path, methods)) in all {
                text.push_str(&format!(
                    "  - {{ name: r{i}, path: \"{path}\", methods: {methods}, upstream: \"http://127.0.0.1:1\", allow_ips: [\"127.0.0.1/32\"] }}\n"
                ));
            }
            must_compile(&text)
        };
        [build(false), build(true)]
    })
}

fn pattern_matches(pattern: &PathPattern, path: &str) -> bool {
    match pattern {
        PathPattern::Exact(p) => p == path,
        PathPattern::Prefix(base) => path
            .strip_prefix(base.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
    }
}

/// What the README promises of any path a route is chosen for: absolute, no `.`/`..`
/// segments (also `..;x` and `..%3bx`), no empty segments, no encoded `/`, `\` or `.`. Written apart from
/// `is_clean_path` so that it checks it.
fn path_is_safe(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\\') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    if ["%2f", "%2e", "%5c"].iter().any(|e| lower.contains(e)) {
        return false;
    }
    if path == "/" {
        return true;
    }
    let inner = &path[1..path.len() - usize::from(path.ends_with('/'))];
    inner.split('/').all(|seg| {
        // What a servlet container resolves: the name before `;` (or `%3b`, decoded first).
        let lower = seg.to_ascii_lowercase();
        let end = [lower.find(';'), lower.find("%3b")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(seg.len());
        let name = &seg[..end];
        !seg.is_empty() && name != "." && name != ".."
    })
}

fn check_lookup(gateway: &Gateway, method: &Method, path: &str) {
    let routes = gateway.routes.routes();
    let result = gateway.routes.lookup(method, path);
    if matches!(result, Match::BadPath) {
        assert!(!is_clean_path(path), "clean path {path:?} refused");
        return;
    }
    assert!(is_clean_path(path), "unclean path {path:?} was routed");
    assert!(path_is_safe(path), "unsafe path {path:?} was routed");
    // The README's rule, by brute force: the first route (file order) whose path and method
    // match.
    let first = routes
        .iter()
        .find(|r| pattern_matches(&r.path, path) && r.methods.contains(method));
    let on_path: Vec<_> = routes
        .iter()
        .filter(|r| pattern_matches(&r.path, path))
        .collect();
    match result {
        Match::Found(route) => {
            let want = first.map(|r| r.name.as_str());
            assert_eq!(Some(route.name.as_str()), want, "{method} {path:?}");
        }
        Match::MethodNotAllowed { route, allowed } => {
            assert!(first.is_none(), "{method} {path:?} has a route: {first:?}");
            assert_eq!(
                Some(route.name.as_str()),
                on_path.first().map(|r| r.name.as_str()),
                "{method} {path:?}"
            );
            assert!(!allowed.contains(method), "{method} {path:?} in Allow");
            for r in &on_path {
                for m in &r.methods {
                    assert!(allowed.contains(m), "{m} missing from Allow for {path:?}");
                }
            }
        }
        Match::NotFound => assert!(on_path.is_empty(), "{path:?} has a route"),
        Match::BadPath => unreachable!(),
    }
}

pub fn path_and_route(data: &[u8]) {
    let [m, t, path @ ..] = data else {
        return;
    };
    let method = match METHODS.get(usize::from(*m) % (METHODS.len() + 1)) {
        Some(method) => method.clone(),
        None => Method::from_bytes(b"PURGE").expect("a valid method"),
    };
    let gateway = &route_tables()[usize::from(*t) % 2];
    // As the gateway sees it: the path of a parsed request target.
    if let Ok(pq) = http::uri::PathAndQuery::try_from(path) {
        check_lookup(gateway, &method, pq.path());
    }
    let Ok(text) = std::str::from_utf8(path) else {
        return;
    };
    // And any string at all, as a future caller might pass.
    check_lookup(gateway, &method, text);
    // A route's `path:` value: what parses is clean and prints back to itself.
    if let Some(pattern) = PathPattern::parse(text) {
        match &pattern {
            PathPattern::Exact(p) => assert!(is_clean_path(p) && path_is_safe(p), "{text:?}"),
            PathPattern::Prefix(p) => assert!(
                p.is_empty() || (is_clean_path(p) && path_is_safe(p) && !p.ends_with('/')),
                "{text:?}"
            ),
        }
        assert_eq!(
            PathPattern::parse(&pattern.to_string()),
            Some(pattern),
            "{text:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// client_ip: X-Forwarded-For from trusted and untrusted peers
// ---------------------------------------------------------------------------------------------

const TRUSTED_SETS: &[&str] = &[
    "[]",
    "[10.0.0.0/8, \"fd00::/8\"]",
    "[10.0.0.0/8, 192.0.2.0/24, \"fd00::/8\", \"2001:db8::/32\"]",
    "[0.0.0.0/0, \"::/0\"]",
];

const PEERS: &[&str] = &[
    "10.0.0.5",
    "198.51.100.7",
    "::ffff:10.0.0.5",
    "fd00::1",
    "192.0.2.1",
    "2001:db8::1",
    "::ffff:198.51.100.7",
    "127.0.0.1",
    "::1",
];

fn trusted_sets() -> &'static [Gateway] {
    static SETS: OnceLock<Vec<Gateway>> = OnceLock::new();
    SETS.get_or_init(|| {
        TRUSTED_SETS
            .iter()
            .map(|set| {
                must_compile(&format!(
                    "listeners:\n  - addr: 127.0.0.1:0\nclient_ip: {{ trusted_proxies: {set} }}\nroutes:\n  - {{ name: r, path: /r, upstream: \"http://127.0.0.1:1\", allow_ips: [\"127.0.0.1/32\"] }}\n"
                ))
            })
            .collect()
    })
}

/// An `X-Forwarded-For` entry as the README documents them: an address, or an address and
/// port.
fn std_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

pub fn client_ip(data: &[u8]) {
    let [p, t, rest @ ..] = data else {
        return;
    };
    let (peer, rest) = match *p {
        0..=63 if rest.len() >= 4 => {
            let b: [u8; 4] = rest[..4].try_into().expect("4 bytes");
            (IpAddr::V4(Ipv4Addr::from(b)), &rest[4..])
        }
        64..=127 if rest.len() >= 16 => {
            let b: [u8; 16] = rest[..16].try_into().expect("16 bytes");
            (IpAddr::V6(Ipv6Addr::from(b)), &rest[16..])
        }
        _ => (
            PEERS[usize::from(*p) % PEERS.len()]
                .parse()
                .expect("a peer address"),
            rest,
        ),
    };
    let trusted = &trusted_sets()[usize::from(*t) % TRUSTED_SETS.len()].trusted_proxies;
    let mut headers = HeaderMap::new();
    if !rest.is_empty() {
        for line in rest.split(|&b| b == b'\n') {
            if let Ok(v) = HeaderValue::from_bytes(line) {
                headers.append("x-forwarded-for", v);
            }
        }
    }
    let result = client_ip::client_ip(peer, trusted, &headers);

    let canonical = client_ip::canonical(peer);
    if let ClientIp::Known(IpAddr::V6(v6)) = result {
        assert!(
            v6.to_ipv4_mapped().is_none(),
            "IPv4-mapped client {v6} not normalized"
        );
    }
    if !client_ip::is_in(canonical, trusted) {
        assert_eq!(
            result,
            ClientIp::Known(canonical),
            "an untrusted peer's X-Forwarded-For was believed"
        );
        return;
    }
    if headers.is_empty() {
        assert_eq!(result, ClientIp::Known(canonical), "no X-Forwarded-For");
        return;
    }
    // Entries as text, in order, for the values that are text at all.
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|t| t.split(',').map(str::trim))
        .collect();
    // The rightmost entry, if it is an untrusted address, is the client (or, failing closed,
    // nobody).
    let last_untrusted = entries
        .last()
        .and_then(|e| std_entry(e))
        .filter(|ip| !client_ip::is_in(*ip, trusted));
    if let Some(ip) = last_untrusted {
        assert!(
            result == ClientIp::Known(ip) || result == ClientIp::Unknown,
            "rightmost untrusted entry {ip} was not the client: {result:?}"
        );
    }
    // A trusted address is the client only when nothing untrusted was forwarded for.
    if let ClientIp::Known(ip) = result {
        if client_ip::is_in(ip, trusted) {
            for e in &entries {
                if let Some(entry) = std_entry(e) {
                    assert!(
                        client_ip::is_in(entry, trusted),
                        "client {ip} is a proxy although {entry} was forwarded for"
                    );
                }
            }
        }
    }
    assert!(!client_ip::allowed(ClientIp::Unknown, Some(trusted)));
}

// ---------------------------------------------------------------------------------------------
// timestamp: parsing and the freshness window, through Scheme::verify
// ---------------------------------------------------------------------------------------------

const TS_SOURCES: &[&str] = &["header: x-ts", "json: /ts", "signature_entry: t"];
const TS_UNITS: &[&str] = &["seconds", "milliseconds", "rfc3339"];
const TS_UNIT_VALUES: &[TimestampUnit] = &[
    TimestampUnit::Seconds,
    TimestampUnit::Milliseconds,
    TimestampUnit::Rfc3339,
];
/// `(tolerance, future_tolerance)` in seconds.
const TS_WINDOWS: &[(u64, u64)] = &[(300, 300), (5, 3600)];
const TS_NOW_MS: i128 = 1_763_884_800_000;
/// A well-formed, wrong HMAC-SHA256: verification reaches the timestamp, then mismatches.
const ZERO_MAC: &str = "0000000000000000000000000000000000000000000000000000000000000000";

struct TsCase {
    scheme: Scheme,
    source: usize,
    unit: usize,
    past_ms: i128,
    future_ms: i128,
}

fn ts_cases() -> &'static [TsCase] {
    static CASES: OnceLock<Vec<TsCase>> = OnceLock::new();
    CASES.get_or_init(|| {
        let mut routes = String::new();
        let mut meta = Vec::new();
        for (source, src) in TS_SOURCES.iter().enumerate() {
            for (unit, u) in TS_UNITS.iter().enumerate() {
                for (past, future) in TS_WINDOWS {
                    let shape = if source == 2 {
                        "entries: { separator: \",\", assign: \"=\", key: v1 }"
                    } else {
                        "prefix: \"\""
                    };
                    routes.push_str(&format!(
                        "  - {{ name: t{n}, path: /t{n}, upstream: \"http://127.0.0.1:1\", verify: {{ algorithm: hmac-sha256, signature: {{ header: x-sig, {shape}, encoding: hex }}, message: [body], timestamp: {{ {src}, unit: {u}, tolerance: {past}s, future_tolerance: {future}s }}, secret: fuzz-ts-key }} }}\n",
                        n = meta.len(),
                    ));
                    meta.push((source, unit, *past, *future));
                }
            }
        }
        let gateway = must_compile(&format!(
            "listeners:\n  - addr: 127.0.0.1:0\nroutes:\n{routes}"
        ));
        schemes_of(&gateway)
            .into_iter()
            .zip(meta)
            .map(|((_, scheme), (source, unit, past, future))| TsCase {
                scheme,
                source,
                unit,
                past_ms: i128::from(past) * 1000,
                future_ms: i128::from(future) * 1000,
            })
            .collect()
    })
}

/// The verdict the window gives a timestamp `age_ms` old, or `None` within a second of an
/// edge (whether the edges are inclusive is not part of the contract).
fn window_verdict(case: &TsCase, age_ms: i128) -> Option<Result<(), VerifyError>> {
    if age_ms > case.past_ms + 1000 {
        Some(Err(VerifyError::StaleTimestamp))
    } else if -age_ms > case.future_ms + 1000 {
        Some(Err(VerifyError::FutureTimestamp))
    } else if age_ms <= case.past_ms - 1000 && -age_ms <= case.future_ms - 1000 {
        Some(Ok(()))
    } else {
        None
    }
}

/// A request carrying `text` as its timestamp, from where the case reads it.
fn ts_request(case: &TsCase, text: &[u8], signature: &str) -> Option<(HeaderMap, Bytes)> {
    let mut headers = HeaderMap::new();
    let mut body = Bytes::new();
    match case.source {
        0 => {
            headers.insert("x-ts", HeaderValue::from_bytes(text).ok()?);
            headers.insert("x-sig", HeaderValue::from_str(signature).ok()?);
        }
        1 => {
            // The text is the JSON value of the field (a number, a string, or anything).
            let mut json = b"{\"ts\":".to_vec();
            json.extend_from_slice(text);
            json.push(b'}');
            body = Bytes::from(json);
            headers.insert("x-sig", HeaderValue::from_str(signature).ok()?);
        }
        _ => {
            let mut value = b"t=".to_vec();
            value.extend_from_slice(text);
            value.extend_from_slice(b",v1=");
            value.extend_from_slice(signature.as_bytes());
            headers.insert("x-sig", HeaderValue::from_bytes(&value).ok()?);
        }
    }
    Some((headers, body))
}

pub fn timestamp(data: &[u8]) {
    if data.len() < 10 {
        return;
    }
    let cases = ts_cases();
    let case = &cases[usize::from(data[0]) % cases.len()];
    let clock = u64_le(&data[2..10]);
    let rest = &data[10..];
    if data[1].is_multiple_of(2) {
        timestamp_raw(case, clock, rest);
    } else {
        timestamp_signed(case, clock, rest);
    }
}

/// Arbitrary timestamp text at an arbitrary clock near the vectors' `now`.
fn timestamp_raw(case: &TsCase, clock: u64, text: &[u8]) {
    let now_ms = TS_NOW_MS + i128::from(clock as i64);
    let Some(now) = clock_ms(now_ms) else {
        return;
    };
    let Some((headers, body)) = ts_request(case, text, ZERO_MAC) else {
        return;
    };
    let body = RawBody::from(body);
    let req = RequestView {
        method: &http::Method::POST,
        json: &hookgate::scheme::JsonBody::default(),
        headers: &headers,
        body: &body,
        path_and_query: "/",
    };
    let result = case.scheme.verify(&req, now);
    match &result {
        Ok(_) => panic!("a zero MAC verified"),
        Err(VerifyError::Mismatch) => {}
        Err(e) if is_timestamp_error(e) => {}
        // A structured header whose `t` entry holds a separator is malformed as a whole.
        Err(VerifyError::MalformedSignature(_)) if case.source == 2 => {}
        // Timestamp text that breaks the JSON body around it: the body is not strict JSON.
        Err(VerifyError::NotStrictJson(_)) if case.source == 1 => {}
        Err(e) => panic!("unexpected refusal {e:?} for timestamp {text:?}"),
    }
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let got = result.clone().map(|_| ()).or_else(|e| match e {
        VerifyError::Mismatch => Ok(()),
        e => Err(e),
    });
    // A timestamp exactly as senders write it (10 digits of seconds, 13 of milliseconds, no
    // sign, no padding) gets the window's verdict.
    let digits = if case.unit == 0 { 10 } else { 13 };
    let canonical =
        text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    if case.unit != 2 && canonical {
        let value: i128 = text.parse().expect("digits");
        let ts_ms = if case.unit == 0 { value * 1000 } else { value };
        if let Some(want) = window_verdict(case, now_ms - ts_ms) {
            assert_eq!(got, want, "timestamp {text} at {now_ms} ms");
        }
    }
    // The parser on its own agrees with what verification made of the same header (a header
    // value is text only if it is visible ASCII; anything else is malformed before parsing).
    let parsed = parse_timestamp_ms(text, TS_UNIT_VALUES[case.unit]);
    let header_text = text
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
    if case.source == 0 && header_text {
        match parsed {
            None => assert_eq!(
                got,
                Err(VerifyError::MalformedTimestamp),
                "unparseable {text:?} passed"
            ),
            Some(ts_ms) => {
                assert_ne!(got, Err(VerifyError::MalformedTimestamp), "{text:?}");
                if let Some(want) = window_verdict(case, now_ms - ts_ms) {
                    assert_eq!(got, want, "timestamp {text:?} at {now_ms} ms");
                }
            }
        }
    }
}

/// Signs at one clock (the sender's), verifies at another (ours): the verdict follows the
/// window, for every unit including RFC 3339.
fn timestamp_signed(case: &TsCase, clock: u64, rest: &[u8]) {
    // Integer timestamps are 10 digits of seconds (2001 to 2286); RFC 3339 goes to 9999.
    let sent_ms = if case.unit == 2 {
        i128::from(clock % 253_402_300_800_000)
    } else {
        1_000_000_000_000 + i128::from(clock % 9_000_000_000_000)
    };
    let delta_ms = match rest {
        [a, b, c, d, ..] => i128::from(i32::from_le_bytes([*a, *b, *c, *d])),
        _ => 0,
    };
    let (Some(sent), Some(now)) = (clock_ms(sent_ms), clock_ms(sent_ms + delta_ms)) else {
        return;
    };
    // What the sender wrote: the clock truncated to the unit.
    let ts_ms = if case.unit == 1 {
        sent_ms
    } else {
        sent_ms / 1000 * 1000
    };
    let body: Vec<u8> = match (case.source, case.unit) {
        (1, 2) => return, // nothing writes an RFC 3339 JSON field for us
        (1, 0) => format!("{{\"ts\":{}}}", ts_ms / 1000).into_bytes(),
        (1, _) => format!("{{\"ts\":{ts_ms}}}").into_bytes(),
        _ => Vec::new(),
    };
    let headers = match signed_headers(&case.scheme, HeaderMap::new(), &body, "/", sent, None) {
        Ok(headers) => headers,
        Err(e) => panic!("signing failed: {e}"),
    };
    let raw = RawBody::from(Bytes::from(body));
    let req = RequestView {
        method: &http::Method::POST,
        json: &hookgate::scheme::JsonBody::default(),
        headers: &headers,
        body: &raw,
        path_and_query: "/",
    };
    let got = case.scheme.verify(&req, now).map(|_| ());
    if let Some(want) = window_verdict(case, sent_ms + delta_ms - ts_ms) {
        assert_eq!(
            got, want,
            "signed at {sent_ms} ms, verified {delta_ms} ms later ({headers:?})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// verify: arbitrary requests against every preset
// ---------------------------------------------------------------------------------------------

/// `(variant name, preset, public_url, other verify fields, keys, private key)`. Keys are
/// every key the vectors use with that preset, so every vector's signature can verify.
type Variant = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

const VARIANTS: &[Variant] = &[
    ("laso", "laso", "", "", "secret: \"laso_whsec_3f1c9a\"", None),
    ("lahza", "lahza", "", "", "secret: \"sk_live_lahza_8c2e\"", None),
    ("lomi", "lomi", "", "", "secret: \"whsec_lomi_51b0\"", None),
    ("lomi-ts", "lomi", "", "timestamp: { json: /timestamp, unit: rfc3339, tolerance: 5m }, ", "secret: \"whsec_lomi_51b0\"", None),
    ("ltvboost", "ltvboost", "", "", "secret: \"ltv_secret_a7\"", None),
    ("listrak", "listrak", "", "", "secret: \"LTK-secret-99\"", None),
    ("github", "github", "", "", "secrets: [\"It's a Secret to Everybody\", \"gh_whsec_9cL2qV7sXb4Tz\"]", None),
    ("github-sha1", "github-sha1", "", "", "secrets: [\"gh_whsec_9cL2qV7sXb4Tz\", \"It's a Secret to Everybody\"]", None),
    ("stripe", "stripe", "", "", "secret: \"whsec_hookgateStripeTestSecret0123456789ab\"", None),
    ("slack", "slack", "", "", "secrets: [\"8f742231b10e8888abcd99yyyzzz85a5\", \"a1b2c3d4e5f60718293a4b5c6d7e8f90\"]", None),
    ("shopify", "shopify", "", "", "secret: \"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\"", None),
    ("standard-webhooks", "standard-webhooks", "", "", "secrets: [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", \"whsec_LvT5JUcw+17hE1nDR9vrKB3kkAByV0LEaettVfSYjqY=\"]", None),
    ("svix", "svix", "", "", "secrets: [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", \"whsec_LvT5JUcw+17hE1nDR9vrKB3kkAByV0LEaettVfSYjqY=\"]", None),
    ("paddle", "paddle", "", "", "secret: \"pdl_ntfset_01jq3e2x8c1k7yq0m4w9r6t5v3_hookgateTestKey0123456789\"", None),
    ("zoom", "zoom", "", "", "secret: \"zm_whsec_Q2hhbmdlTWVQbGVhc2Ux\"", None),
    ("linear", "linear", "", "", "secret: \"lin_wh_7f3c9a1e5b2d8c4f6a0e3b7d9c1f5a2e\"", None),
    ("intercom", "intercom", "", "", "secret: \"ic_client_secret_0a9b8c7d6e5f4a3b2c1d\"", None),
    ("woocommerce", "woocommerce", "", "", "secret: \"wc_wh_secret_Rk9vQmFyQmF6\"", None),
    ("webflow", "webflow", "", "", "secret: \"wf_client_secret_5d1c7e2b9a4f8e3c6b0a\"", None),
    ("vercel", "vercel", "", "", "secret: \"vc_wh_secret_3e8d1f6a2c9b7e4d0f5a\"", None),
    ("twilio", "twilio", "https://hooks.example.com", "", "secrets: [\"12345\", \"2bd9e9638872de601313dc77410d3b24\", \"2bd9e9638872de601313dc77410d3b23\"]", None),
    ("twilio-mycompany", "twilio", "https://mycompany.com", "", "secrets: [\"12345\", \"2bd9e9638872de601313dc77410d3b24\", \"2bd9e9638872de601313dc77410d3b23\"]", None),
    ("square", "square", "https://hooks.example.com", "", "secrets: [\"Ibxx_5AKakO-3qeNVR61Dw\", \"signature-key\", \"sqwhk_Ywq3kP0v9mL2xN8cR4tB1e\"]", None),
    ("square-webhook.site", "square", "https://webhook.site", "", "secrets: [\"Ibxx_5AKakO-3qeNVR61Dw\", \"signature-key\", \"sqwhk_Ywq3kP0v9mL2xN8cR4tB1e\"]", None),
    ("gitlab", "gitlab", "", "", "secret: \"glwht-7Kq2ZpL9xV4mN8rT\"", None),
    ("discord", "discord", "", "", "public_key: \"dccb6b3230ef097b89f84bc66d7c30f8838664bb8e3407be41a6d15dc0803064\"", Some("7c086b27fe0fe0e4a35a0d11e52c80d25729f8d9a8c2a3d35aae8b7ab1adf098")),
    ("standard-webhooks-ed25519", "standard-webhooks-ed25519", "", "", "public_keys: [\"whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=\", \"whpk_eU19O/TUbJQ+f7qf30V1wbps5G9ts/NgmRT4kxx5qzY=\"]", Some("whsk_dQSoTZ7EOidaPlnSUekmEG62FIjXQNbkbwNOzRqeuOw=")),
    ("sendgrid", "sendgrid", "", "", "public_keys: [\"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==\", \"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==\", \"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzjZzaRHSBj3LHJfbMkS2IDk1YQqO64XJdEWl++aHrl1MYYxU6hruHJpkB+3gInUzJGMER0egKg0ZocSaz1Niiw==\"]", Some("74de85e2a313530d9318cf836a1f60edb3c1b75bf9a9fe6e4af4a5facf0114b8")),
    // The custom scheme of gateway.yaml (no preset).
    ("acme", "", "", "algorithm: hmac-sha256, signature: { header: X-Acme-Signature, prefix: \"sha256=\", encoding: [hex] }, message: [{ header: X-Acme-Timestamp }, { literal: \".\" }, body], timestamp: { header: X-Acme-Timestamp, unit: seconds, tolerance: 5m }, ", "secret: \"acme-dev-secret\"", None),
];

/// Every variant before this index is HMAC or token (the asymmetric ones come after).
const ASYMMETRIC_FROM: usize = 25;

/// A different private key per asymmetric algorithm (32 bytes of 0x11): its signatures must
/// never verify.
const OTHER_PRIVATE_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

struct VerifySetup {
    /// Per variant: the scheme as configured, and the same scheme with another secret.
    schemes: Vec<(Scheme, Scheme)>,
    private_keys: Vec<Option<SigningKey>>,
}

fn verify_setup() -> &'static VerifySetup {
    static SETUP: OnceLock<VerifySetup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let gateway = |other: bool| {
            let mut text = String::from("listeners:\n  - addr: 127.0.0.1:0\nroutes:\n");
            // Each on a path of its own: a route after an identical path would be unreachable.
            for (i, (name, preset, url, extra, keys, private)) in VARIANTS.iter().enumerate() {
                let preset = if preset.is_empty() {
                    String::new()
                } else {
                    format!("preset: {preset}, ")
                };
                // The same shape with another secret (valid raw, base64 and whsec_base64).
                let keys = if other && private.is_none() {
                    "secret: \"b3RoZXJzZWNyZXQ=\""
                } else {
                    keys
                };
                let public_url = if url.is_empty() {
                    String::new()
                } else {
                    format!("public_url: \"{url}\", ")
                };
                text.push_str(&format!(
                    "  - {{ name: \"{name}\", path: /v{i}/*, upstream: \"http://127.0.0.1:1\", {public_url}verify: {{ {preset}{extra}{keys} }} }}\n"
                ));
            }
            must_compile(&text)
        };
        assert!(
            VARIANTS[..ASYMMETRIC_FROM].iter().all(|v| v.5.is_none()),
            "fuzz target setup: asymmetric variant before ASYMMETRIC_FROM"
        );
        let mine = schemes_of(&gateway(false));
        let others = schemes_of(&gateway(true));
        let schemes = mine
            .into_iter()
            .zip(others)
            .map(|((_, a), (_, b))| (a, b))
            .collect();
        let private_keys = VARIANTS
            .iter()
            .zip(&schemes_of(&gateway(false)))
            .map(|(v, (_, scheme))| {
                v.5.map(|k| {
                    SigningKey::parse(scheme.algorithm, k).expect("fuzz target setup: key")
                })
            })
            .collect();
        VerifySetup {
            schemes,
            private_keys,
        }
    })
}

/// A request parsed from the `verify` input format.
struct FuzzRequest {
    mode: u8,
    variant: usize,
    now: SystemTime,
    path_and_query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn parse_request(data: &[u8]) -> Option<FuzzRequest> {
    let mut lines = data.splitn(4, |&b| b == b'\n');
    let first = std::str::from_utf8(lines.next()?).ok()?;
    let (mode, name) = first.split_once(' ').unwrap_or(("r", first));
    let name = name.trim();
    let mut variant = VARIANTS
        .iter()
        .position(|v| v.0 == name)
        .unwrap_or_else(|| name.bytes().map(usize::from).sum::<usize>() % VARIANTS.len());
    // Ed25519 and ECDSA cost 50 to 500 times an HMAC: keep them to inputs whose length is a
    // multiple of 8 (seed.py pads its asymmetric seeds so), and give the rest to HMAC presets.
    if VARIANTS[variant].5.is_some() && !data.len().is_multiple_of(8) {
        variant = data.len() % ASYMMETRIC_FROM;
    }
    let now_text = std::str::from_utf8(lines.next().unwrap_or_default()).ok()?;
    let now_s: u64 = now_text.trim().parse().unwrap_or(1_763_884_800);
    let now = UNIX_EPOCH.checked_add(Duration::from_secs(now_s))?;
    let path_and_query = String::from_utf8_lossy(lines.next().unwrap_or_default())
        .trim_end_matches('\r')
        .to_owned();
    let rest = lines.next().unwrap_or_default();
    // Header lines up to a blank line; the body after it.
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None if rest.starts_with(b"\n") => (&rest[..0], &rest[1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    Some(FuzzRequest {
        mode: mode.bytes().next().unwrap_or(b'r'),
        variant,
        now,
        path_and_query,
        headers,
        body: body.to_vec(),
    })
}

fn verify_with(
    scheme: &Scheme,
    headers: &HeaderMap,
    body: RawBody,
    path_and_query: &str,
    now: SystemTime,
) -> Result<hookgate::scheme::Verified, VerifyError> {
    let req = RequestView {
        method: &http::Method::POST,
        json: &hookgate::scheme::JsonBody::default(),
        headers,
        body: &body,
        path_and_query,
    };
    let result = scheme.verify(&req, now);
    check_verified(scheme, &result);
    result
}

pub fn verify(data: &[u8]) {
    let Some(req) = parse_request(data) else {
        return;
    };
    let setup = verify_setup();
    let (scheme, other) = &setup.schemes[req.variant];
    let private_key = setup.private_keys[req.variant].as_ref();
    let pq = req.path_and_query.as_str();
    let whole = || RawBody::from(Bytes::copy_from_slice(&req.body));
    // `Scheme::sign` used to panic writing an RFC 3339 timestamp past the year 9999 (found by
    // this target; now an error, which the signing modes below skip):
    // `corpus/verify/regression-sign-past-9999*` keep the inputs.
    match req.mode {
        // The request as it came, and again with its body in up to three chunks: the verdict
        // cannot depend on how the body arrived.
        b'c' => {
            let first = verify_with(scheme, &req.headers, whole(), pq, req.now);
            let n = req.body.len();
            let (a, b) = (n / 3, n - n / 4);
            let chunks = vec![
                Bytes::copy_from_slice(&req.body[..a]),
                Bytes::copy_from_slice(&req.body[a..b]),
                Bytes::copy_from_slice(&req.body[b..]),
            ];
            let second = verify_with(
                scheme,
                &req.headers,
                RawBody::from_chunks(chunks),
                pq,
                req.now,
            );
            assert_eq!(first, second, "verdict depends on body chunking");
        }
        // Signed as a sender would sign it: verifies unless something outside the signature
        // refuses it.
        b's' => {
            let signed = signed_headers(
                scheme,
                req.headers.clone(),
                &req.body,
                pq,
                req.now,
                private_key,
            );
            let Ok(headers) = signed else {
                return;
            };
            let result = verify_with(scheme, &headers, whole(), pq, req.now);
            match &result {
                Ok(_) => {}
                Err(e) if is_timestamp_error(e) => {}
                // Twilio: a body that neither its hash parameter nor the form covers.
                Err(VerifyError::UnsignedBody) => {}
                // A header the scheme reads, sent twice by the fuzzer's own headers.
                Err(VerifyError::RepeatedHeader(_)) => {}
                Err(VerifyError::Mismatch) if scheme.body_hash_param.is_some() => {}
                // A scheme that reads the JSON body, given one that is not strict JSON.
                Err(VerifyError::NotStrictJson(_)) if scheme.reads_json() => {}
                Err(e) => panic!("a request signed with the right key was refused: {e:?}"),
            }
        }
        // Signed with another key: never verifies.
        b'k' => {
            let h = req.headers.clone();
            let signed = match private_key {
                Some(_) => {
                    let other_key = SigningKey::parse(scheme.algorithm, OTHER_PRIVATE_KEY)
                        .expect("fuzz target setup: other key");
                    signed_headers(scheme, h, &req.body, pq, req.now, Some(&other_key))
                }
                None => signed_headers(other, h, &req.body, pq, req.now, None),
            };
            let Ok(headers) = signed else {
                return;
            };
            let result = verify_with(scheme, &headers, whole(), pq, req.now);
            assert!(
                result.is_err(),
                "signed with another key, verified: {result:?}"
            );
        }
        // Signed, then one body byte changed (or one added): never verifies. Twilio's form
        // bodies are signed as decoded parameters, so `+` and `%20` are the same to it.
        b't' => {
            let signed = signed_headers(
                scheme,
                req.headers.clone(),
                &req.body,
                pq,
                req.now,
                private_key,
            );
            let Ok(headers) = signed else {
                return;
            };
            if VARIANTS[req.variant].1 == "twilio" {
                return;
            }
            let mut body = req.body.clone();
            match body.len() {
                0 => body.push(b'x'),
                n => {
                    let i = usize::from(data[data.len() - 1]) % n;
                    body[i] ^= 1 << (data.len() % 8);
                }
            }
            let result = verify_with(
                scheme,
                &headers,
                RawBody::from(Bytes::from(body)),
                pq,
                req.now,
            );
            assert!(result.is_err(), "a tampered body verified: {result:?}");
        }
        _ => {
            verify_with(scheme, &req.headers, whole(), pq, req.now).ok();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// json_field: the strict JSON reader and the JSON-field message parts
// ---------------------------------------------------------------------------------------------

/// A Mailgun-like scheme: the signature and what it signs are JSON fields; the JSON body is
/// otherwise unsigned.
fn json_scheme() -> &'static Scheme {
    static SCHEME: OnceLock<Scheme> = OnceLock::new();
    SCHEME.get_or_init(|| {
        let gateway = must_compile(
            "listeners:\n  - addr: 127.0.0.1:0\nroutes:\n  - { name: j, path: /j, upstream: \"http://127.0.0.1:1\", verify: { signature: { json: /signature/signature }, message: [{ json: /signature/timestamp }, { json: /signature/token }, { literal: \".\" }, { json: /amount }], body_signed: false, secret: fuzz-json-key }, replay: { key: { json: /signature/token } } }\n",
        );
        schemes_of(&gateway).remove(0).1
    })
}

/// Schemes that read every item of a JSON array: Adyen's (`each:`, a MAC per item) and
/// Microsoft Graph's (`/value/*/clientState`, a token in every item).
fn item_schemes() -> &'static [(String, Scheme)] {
    static SCHEMES: OnceLock<Vec<(String, Scheme)>> = OnceLock::new();
    SCHEMES.get_or_init(|| {
        let gateway = must_compile(
            "listeners:\n  - addr: 127.0.0.1:0\nroutes:\n  - { name: adyen, path: /a, upstream: \"http://127.0.0.1:1\", verify: { preset: adyen, secret: 0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F0 } }\n  - { name: graph, path: /g, upstream: \"http://127.0.0.1:1\", verify: { preset: msgraph, secret: graph-token-never-in-a-seed-7f3a }, allow_ips: [127.0.0.1/32] }\n",
        );
        schemes_of(&gateway)
    })
}

/// Strict JSON is a subset of what serde_json reads, and reads the same value; a field's
/// one text exists exactly for strings, plain integers, booleans and null; a scheme reading
/// JSON fields never verifies a forged body and refuses only with a reason it documents.
/// The content type a JSON sender sends (a fields-only scheme takes no other).
fn json_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h
}

/// The compact form eBay's signature covers (`json::compact`): one JSON value with the same
/// meaning, written once (compacting it again changes nothing), and no longer than the body.
fn check_compact(data: &[u8], strict: &serde_json::Value) {
    use hookgate::scheme::json::{compact, parse_strict};
    let once = compact(data).expect("a strict body has a compact form");
    assert!(once.len() <= data.len(), "never longer than the body");
    let again = parse_strict(&once).expect("the compact form is strict JSON");
    assert_eq!(&again, strict, "the compact form means what the body means");
    assert_eq!(
        compact(&once).expect("compacts again").as_ref(),
        once.as_ref(),
        "written once"
    );
    // Outside strings, nothing but the tokens.
    let mut in_string = false;
    let mut escaped = false;
    for &b in once.iter() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => in_string = !in_string,
            (false, _, b' ' | b'\n' | b'\r' | b'\t') => panic!("whitespace between tokens"),
            _ => {}
        }
    }
}

pub fn json_field(data: &[u8]) {
    use hookgate::scheme::json::{parse_strict, render};
    if let Ok(strict) = parse_strict(data) {
        let lenient: serde_json::Value = serde_json::from_slice(data).expect("strict JSON is JSON");
        assert_eq!(strict, lenient, "strict and lenient parses agree");
        check_render(&strict, &render);
        check_compact(data, &strict);
    }
    let body = RawBody::from(Bytes::copy_from_slice(data));
    let json = hookgate::scheme::JsonBody::default();
    let req = RequestView {
        method: &Method::POST,
        json: &json,
        headers: &json_headers(),
        body: &body,
        path_and_query: "/j",
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_763_884_800);
    let schemes = std::iter::once(("json", json_scheme()))
        .chain(item_schemes().iter().map(|(name, s)| (name.as_str(), s)));
    for (name, scheme) in schemes {
        let json = hookgate::scheme::JsonBody::default();
        let req = RequestView { json: &json, ..req };
        match scheme.verify(&req, now) {
            // The fuzzer does not hold the key; only a signature it could compute would verify.
            Ok(_) => panic!(
                "{name}: verified without the key: {:?}",
                String::from_utf8_lossy(data)
            ),
            Err(
                VerifyError::NotStrictJson(_)
                | VerifyError::MissingSignature(_)
                | VerifyError::MalformedSignature(_)
                | VerifyError::MissingField(_)
                | VerifyError::AmbiguousField(_)
                | VerifyError::BodyAmbiguous(_)
                | VerifyError::Mismatch,
            ) => {}
            Err(e) => panic!("{name}: unexpected refusal {e:?}"),
        }
        // `explain` walks the same items and must agree.
        assert!(scheme.explain(&req, now).verdict.is_err(), "{name}");
    }
}

/// Every scalar in `v` renders as the rule says.
fn check_render(
    v: &serde_json::Value,
    render: &dyn Fn(&serde_json::Value) -> Option<std::borrow::Cow<'_, str>>,
) {
    use serde_json::Value;
    match v {
        Value::Array(items) => items.iter().for_each(|i| check_render(i, render)),
        Value::Object(map) => map.values().for_each(|i| check_render(i, render)),
        Value::String(s) => assert_eq!(render(v).as_deref(), Some(s.as_str())),
        Value::Bool(b) => assert_eq!(
            render(v).as_deref(),
            Some(if *b { "true" } else { "false" })
        ),
        Value::Null => assert_eq!(render(v).as_deref(), Some("")),
        Value::Number(n) => match render(v) {
            Some(text) => {
                assert!(n.is_i64() || n.is_u64(), "only integers render: {n}");
                assert_eq!(
                    text.parse::<i128>().ok(),
                    n.as_i64().map(i128::from).or(n.as_u64().map(i128::from))
                );
            }
            None => assert!(n.is_f64(), "an integer must render: {n}"),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// jwt: tokens, forged and mutated
// ---------------------------------------------------------------------------------------------

/// The RS256 fixture's scheme, its valid token, its body and a clock inside the token's life.
fn jwt_setup() -> &'static (Scheme, String, String, SystemTime) {
    static SETUP: OnceLock<(Scheme, String, String, SystemTime)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let text = std::fs::read_to_string(repo_root().join("tests/vectors/jwt.json"))
            .expect("tests/vectors/jwt.json");
        let v: serde_json::Value = serde_json::from_str(&text).expect("jwt.json is JSON");
        let key = v["rsa_public_key"].as_str().expect("key");
        let yaml = format!(
            "listeners:\n  - addr: 127.0.0.1:0\nroutes:\n  - {{ name: j, path: /j, upstream: \"http://127.0.0.1:1\", verify: {{ algorithm: jwt, signature: {{ header: x-webhook-signature }}, jwt: {{ algorithms: [RS256], issuer: netlify, body_sha256: {{ claim: sha256, encoding: hex }} }}, public_key: {key:?}, key_encoding: raw }} }}\n"
        );
        let scheme = schemes_of(&must_compile(&yaml)).remove(0).1;
        let token = v["rs256"].as_str().expect("token").to_owned();
        let body = v["body"].as_str().expect("body").to_owned();
        (scheme, token, body, UNIX_EPOCH + Duration::from_secs(1_763_885_000))
    })
}

/// A token verifies only when it is the fixture's own, unchanged: no forged or mutated token
/// (another algorithm, `none`, a flipped bit anywhere) ever does, and nothing panics.
pub fn jwt(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (scheme, valid, body, now) = jwt_setup();
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let mut bytes = valid.clone().into_bytes();
        for pair in rest.chunks(2) {
            let at = usize::from(pair[0]) * 7 % bytes.len();
            bytes[at] ^= pair.get(1).copied().unwrap_or(1) & 0x7f;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let Ok(value) = HeaderValue::from_str(&token) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-webhook-signature", value);
    let raw = RawBody::from(Bytes::copy_from_slice(body.as_bytes()));
    let json = hookgate::scheme::JsonBody::default();
    let req = RequestView {
        method: &Method::POST,
        json: &json,
        headers: &headers,
        body: &raw,
        path_and_query: "/j",
    };
    let result = scheme.verify(&req, *now);
    if token == *valid {
        assert!(result.is_ok(), "the fixture's token verifies: {result:?}");
    } else {
        assert!(result.is_err(), "a changed token verified: {token}");
    }
}

// ---------------------------------------------------------------------------------------------
// key_url: what a request may make the gateway fetch, and the documents it reads (issue 23).

/// SNS's pins, as the `aws-sns` preset has them.
fn sns_pins() -> (Vec<HostPattern>, Vec<KeyPath>) {
    (
        [
            "sns.{region}.amazonaws.com",
            "sns.{region}.amazonaws.com.cn",
        ]
        .iter()
        .map(|p| HostPattern::parse(p).expect("pin"))
        .collect(),
        vec![KeyPath::parse("/SimpleNotificationService-*.pem").expect("path")],
    )
}

/// `key_url`: byte 0 picks what the rest is. 0: a key URL a request names, checked against
/// SNS's pins; 1: a certificate document; 2: a JWKS; 3: an OIDC discovery document.
pub fn key_url(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (hosts, paths) = sns_pins();
    let jwks_key = |format: DocFormat| FetchedKey {
        from: KeyFrom::Json("/SigningCertURL".into()),
        hosts: hosts.clone(),
        paths: paths.clone(),
        names: vec!["sns.amazonaws.com".into()],
        format,
        chain: Default::default(),
    };
    match mode % 4 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(url) = KeyUrl::parse_shaped(&text, &hosts, &paths) {
                // Only https, on a pinned host, with a pinned path and no query; the URL is
                // fetched as it reads, and reads back the same.
                let shown = url.to_string();
                assert!(shown.starts_with("https://"), "{shown}");
                assert!(hosts.iter().any(|h| h.matches(url.host())), "{shown}");
                assert!(
                    paths.iter().any(|p| p.matches(url.path_and_query())),
                    "{shown}"
                );
                assert!(!url.host().contains(['@', ':', '[', '%']), "{shown}");
                assert!(!url.path_and_query().contains(['?', '#']), "{shown}");
                assert!(!url.path_and_query().contains(".."), "{shown}");
                assert_eq!(
                    KeyUrl::parse_shaped(&shown, &hosts, &paths).ok(),
                    Some(url.clone()),
                    "{shown}"
                );
            }
        }
        1 => {
            if let Ok(cert) = Certificate::from_pem(rest) {
                // Only a document of PEM certificates is one, and what is read of it is the
                // certificate's own: read again from its DER, the same.
                let text = String::from_utf8_lossy(rest);
                assert!(text.trim_start().starts_with("-----BEGIN CERTIFICATE-----"));
                let again = Certificate::from_der(&cert.der).expect("its own DER reads");
                assert_eq!(
                    (
                        again.names,
                        again.not_before,
                        again.not_after,
                        again.fingerprint
                    ),
                    (
                        cert.names,
                        cert.not_before,
                        cert.not_after,
                        cert.fingerprint
                    )
                );
            }
        }
        2 => {
            if let Ok(KeyDoc::Jwks(keys)) =
                KeyDoc::parse(&jwks_key(DocFormat::Jwks(Family::Rsa)), rest)
            {
                assert!(!keys.is_empty() && keys.len() <= MAX_JWKS_KEYS);
            }
        }
        _ => {
            let key = jwks_key(DocFormat::Jwks(Family::Rsa));
            if let Ok(url) = key.jwks_uri(rest, Some("https://accounts.google.com")) {
                assert!(hosts.iter().any(|h| h.matches(url.host())));
            }
        }
    }
}
