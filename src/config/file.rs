//! The shape of `gateway.yaml`, exactly as written: plain serde structs that reject unknown
//! keys. Nothing here is checked beyond its YAML type; `compile.rs` turns these into the
//! typed runtime model and reports every problem with its location.

use std::path::PathBuf;

use serde::Deserialize;

/// The whole file. Routes are kept as raw YAML values here so that each one can be
/// deserialized on its own and every broken route reported, not just the first.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Runtime worker threads (default: one per available core).
    #[serde(default)]
    pub workers: Option<u64>,
    /// `per_core` or `shared` (see `config::RuntimeModel`).
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub client_ip: RawClientIp,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub replay_store: Option<RawReplayStore>,
    #[serde(default)]
    pub log: Option<RawLog>,
    /// Where queued routes keep their events.
    #[serde(default)]
    pub queue_store: Option<RawQueueStore>,
    /// How keys that live on the network are fetched (`aws-sns`, `paypal`).
    #[serde(default)]
    pub key_fetch: Option<RawKeyFetch>,
    #[serde(default)]
    pub routes: Vec<serde_yaml::Value>,
}

/// The value a preset gives a claim or field that each route must name itself (Google's
/// push service account, `email`; Plaid's credentials): the compiler refuses a route that
/// leaves it so.
pub const ROUTE_GIVES: &str = "{route}";

/// A duration as written in the file (`30s`, `500ms`, `15m`; `none` where a field allows it),
/// parsed by `compile.rs`. A bare number is kept as its text rather than refused here, so that
/// `timeout: 30` gets the same message as `timeout: "30"` (a duration needs its unit) wherever
/// it is written; serde alone would say "expected a string" inside a route and accept it at
/// the top level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawDuration(String);

impl std::ops::Deref for RawDuration {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for RawDuration {
    fn from(s: &str) -> RawDuration {
        RawDuration(s.to_owned())
    }
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawDuration, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = RawDuration;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as `30s`, `500ms` or `15m`")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(s.to_owned()))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<RawDuration, E> {
                Ok(RawDuration(n.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<RawDuration, E> {
                Ok(RawDuration(n.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<RawDuration, E> {
                Ok(RawDuration(n.to_string()))
            }
        }
        d.deserialize_any(Text)
    }
}

/// `queue_store:` — `type: embedded` (default) with `path: DIR`, or `type: postgres` with
/// `url`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueueStore {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// embedded: the directory (created 0700).
    pub path: Option<PathBuf>,
    /// embedded: the most the database may take on disk; past it new events get 503.
    pub max_bytes: Option<u64>,
    /// postgres: `postgres://user[:password]@host:port/db` (or `${ENV_VAR}`).
    pub url: Option<String>,
    /// postgres: connections kept, at most (default 16).
    pub pool_size: Option<u64>,
    /// postgres: bound on each call (default 5s).
    pub timeout: Option<RawDuration>,
    /// postgres: PEM CA certificates to verify the server with, instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// How long delivered events are kept (default 24h).
    pub retention: Option<RawDuration>,
    /// How long dead letters are kept (default 30d).
    pub dead_retention: Option<RawDuration>,
}

/// A queued route's `queue:` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// The status the sender gets once the event is stored (default 200; a 2xx).
    pub status: Option<u16>,
    /// The body the sender gets (default `queued`).
    pub body: Option<String>,
    /// Deliveries in flight to the app at once (default 16).
    pub concurrency: Option<u64>,
    /// Deliveries started per second, at most: `{ per_second: 50, burst: 50 }`.
    pub rate_limit: Option<RawRateLimit>,
    /// The circuit breaker: `{}` for its defaults, or `{ failure_rate: 50, window: 60s,
    /// min_attempts: 20, open_for: 30s, probes: 3 }`.
    pub breaker: Option<RawBreaker>,
    pub retry: Option<RawRetry>,
}

/// One of a queued route's `destinations:`. Its `concurrency`, `rate_limit`, `breaker` and
/// `retry` are laid over the route's `queue:` ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    pub name: String,
    pub upstream: String,
    #[serde(default)]
    pub upstream_tls: Option<RawUpstreamTls>,
    /// Time for this app to answer (default: the route's `limits.upstream_timeout`).
    #[serde(default)]
    pub upstream_timeout: Option<RawDuration>,
    /// Only the events that match are delivered here.
    #[serde(default)]
    pub filter: Option<RawFilter>,
    #[serde(default)]
    pub concurrency: Option<u64>,
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    pub breaker: Option<RawBreaker>,
    #[serde(default)]
    pub retry: Option<RawRetry>,
}

/// A destination's `filter:`: exactly one of `all`, `any`, `not`, or a test of one field
/// (`json: /pointer` or `header: name`) with exactly one of `equals`, `one_of`, `prefix`,
/// `exists`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    pub all: Option<Vec<RawFilter>>,
    pub any: Option<Vec<RawFilter>>,
    pub not: Option<Box<RawFilter>>,
    pub json: Option<String>,
    pub header: Option<String>,
    /// A string, an integer or a boolean (compared as the field's one text).
    pub equals: Option<serde_yaml::Value>,
    pub one_of: Option<Vec<serde_yaml::Value>>,
    pub prefix: Option<String>,
    pub exists: Option<bool>,
}

/// `queue.breaker:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Percent of the window's attempts that failed, from 1 to 100.
    pub failure_rate: Option<u32>,
    pub window: Option<RawDuration>,
    pub min_attempts: Option<u32>,
    pub open_for: Option<RawDuration>,
    pub probes: Option<u32>,
}

/// `queue.rate_limit:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_second: f64,
    /// Deliveries that may start at once after a quiet time (default: one second's worth,
    /// at least 1).
    pub burst: Option<u32>,
}

/// `queue.retry:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub initial_interval: Option<RawDuration>,
    pub max_interval: Option<RawDuration>,
    pub max_age: Option<RawDuration>,
    pub max_attempts: Option<u32>,
}

/// `log:` — `format: text | json`, `level: info` (or a `target=level` filter).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// `replay_store:` — where replay/dedup keys live: `type: memory` (default) or `type: redis`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplayStore {
    #[serde(rename = "type")]
    pub kind: String,
    /// memory: most keys held (default 100000).
    pub max_entries: Option<u64>,
    /// redis: `redis://[user:password@]host:port[/db]` (or `${ENV_VAR}`).
    pub url: Option<String>,
    /// redis: prepended to every key (default `hookgate:`).
    pub prefix: Option<String>,
    /// redis: bound on each round trip (default 500ms).
    pub timeout: Option<RawDuration>,
}

/// A route's `replay:` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplay {
    /// `{ header: NAME }`, `{ json: /pointer }` or `signature`; default: the preset's
    /// suggestion, else `signature`.
    pub key: Option<RawReplayKey>,
    /// How long a delivered event is remembered (default 72h).
    pub ttl: Option<RawDuration>,
    /// `reject` (default: 503, the sender retries) or `allow` (forward without dedup).
    pub on_store_error: Option<String>,
}

/// A dedup key source, read by hand like message parts.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub enum RawReplayKey {
    /// One header name, or several the key may arrive under.
    Header(Vec<String>),
    Json(String),
    Signature,
}

impl TryFrom<serde_yaml::Value> for RawReplayKey {
    type Error = String;

    fn try_from(v: serde_yaml::Value) -> Result<RawReplayKey, String> {
        use serde_yaml::Value;
        match &v {
            Value::String(w) if w == "signature" => return Ok(RawReplayKey::Signature),
            Value::Mapping(m) if m.len() == 1 => {
                // `{ header: [a, b] }`: one header under several names.
                if let Some((Value::String(k), Value::Sequence(names))) = m.iter().next() {
                    let names: Option<Vec<String>> = names
                        .iter()
                        .map(|n| n.as_str().map(str::to_owned))
                        .collect();
                    if let (true, Some(names)) = (k == "header", names) {
                        return Ok(RawReplayKey::Header(names));
                    }
                }
                if let Some((Value::String(k), Value::String(val))) = m.iter().next() {
                    match k.as_str() {
                        "header" => return Ok(RawReplayKey::Header(vec![val.clone()])),
                        "json" => return Ok(RawReplayKey::Json(val.clone())),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        let shown = serde_yaml::to_string(&v).unwrap_or_default();
        Err(format!(
            "unknown replay key `{}`; use {{ header: NAME }}, {{ json: /pointer }} or signature",
            shown.trim()
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub addr: String,
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// Every connection starts with a PROXY protocol (v1 or v2) header from a trusted proxy.
    #[serde(default)]
    pub proxy_protocol: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub addr: String,
    /// A file holding the bearer token the queue API requires; required when `addr` is not
    /// loopback.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientIp {
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// `key_fetch:`: how keys that live on the network are fetched and kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyFetch {
    pub ca_file: Option<PathBuf>,
    pub allow_private_addresses: Option<bool>,
    /// Host name to `ip:port`.
    pub connect_to: Option<std::collections::BTreeMap<String, String>>,
    pub min_ttl: Option<RawDuration>,
    pub max_ttl: Option<RawDuration>,
    pub default_ttl: Option<RawDuration>,
    pub failure_backoff: Option<RawDuration>,
    pub connect_timeout: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
    pub max_document_bytes: Option<u64>,
    pub max_entries: Option<u64>,
    pub max_cache_bytes: Option<u64>,
    pub max_fetches_per_second: Option<u64>,
}

/// `limits:`: sizes in bytes, durations as [`RawDuration`]s.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: Option<u64>,
    pub max_buffered_body_bytes: Option<u64>,
    pub max_header_bytes: Option<u64>,
    pub max_response_bytes: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_connections_per_ip: Option<u64>,
    pub header_read_timeout: Option<RawDuration>,
    pub body_read_timeout: Option<RawDuration>,
    pub upstream_connect_timeout: Option<RawDuration>,
    pub upstream_timeout: Option<RawDuration>,
    pub upstream_keepalive: Option<u64>,
    pub drain_delay: Option<RawDuration>,
    pub shutdown_grace: Option<RawDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// The app: `http(s)://host:port[/base]`. A queued route may list `destinations:`
    /// instead.
    #[serde(default)]
    pub upstream: Option<String>,
    /// A queued route's apps, each taking the events its filter matches.
    #[serde(default)]
    pub destinations: Option<Vec<RawDestination>>,
    #[serde(default)]
    pub allow_ips: Option<Vec<String>>,
    #[serde(default)]
    pub verify: Option<RawVerify>,
    /// The sender's handshake, answered by the gateway: `off` (leave it to the app, sync
    /// routes only) or `{ kind, verify_token, endpoint, origins, rate }` over the preset's.
    #[serde(default)]
    pub handshake: Option<RawHandshake>,
    /// The URL senders call, as they see it (for URL-signed schemes behind a load balancer).
    #[serde(default)]
    pub public_url: Option<String>,
    /// `false`: shadow mode. Verify, log and count, but forward even what would be refused.
    #[serde(default)]
    pub enforce: Option<bool>,
    /// Replay and duplicate protection for this route.
    #[serde(default)]
    pub replay: Option<RawReplay>,
    /// This route's own body and upstream limits, over the top-level ones.
    #[serde(default)]
    pub limits: Option<RawRouteLimits>,
    /// TLS to an `https://` upstream: private CA, client certificate, name to verify.
    #[serde(default)]
    pub upstream_tls: Option<RawUpstreamTls>,
    /// `sync` (default: forward now) or `queued` (store, answer, deliver later).
    #[serde(default)]
    pub delivery: Option<String>,
    /// A queued route's answer, concurrency and retry settings.
    #[serde(default)]
    pub queue: Option<RawQueue>,
}

/// `handshake: off` or `handshake: { kind: meta, verify_token: "${META_VERIFY_TOKEN}" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawHandshake {
    Word(String),
    Block(RawHandshakeBlock),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHandshakeBlock {
    /// Which protocol (`model::handshake::HandshakeKind`); the preset's when absent.
    pub kind: Option<String>,
    /// Meta, Strava, eBay: the verify token set in the sender's dashboard (`${ENV}` or
    /// literal).
    pub verify_token: Option<String>,
    /// eBay: the endpoint URL registered with eBay, exactly (its challenge's answer hashes it).
    pub endpoint: Option<String>,
    /// CloudEvents: the origins granted.
    pub origins: Option<Vec<String>>,
    /// CloudEvents: the rate granted, per minute (default `*`).
    pub rate: Option<u32>,
}

/// `upstream_tls:` — for `https://` upstreams. No option turns verification off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// PEM CA certificates to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key, for an app that requires mTLS.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// The name the app's certificate must carry (and the SNI sent), if not the URL's host.
    pub server_name: Option<String>,
}

/// The limits a route may set for itself (e.g. large bodies on one route only).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteLimits {
    pub max_body_bytes: Option<u64>,
    pub body_read_timeout: Option<RawDuration>,
    pub upstream_timeout: Option<RawDuration>,
}

/// A `verify:` block. Every field is optional so that a preset can supply it and a route can
/// override any single field of the preset (see [`RawVerify::overlay`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    pub preset: Option<String>,
    pub algorithm: Option<String>,
    pub signature: Option<RawSignature>,
    pub message: Option<Vec<RawPart>>,
    pub timestamp: Option<RawTimestamp>,
    pub body_hash_param: Option<String>,
    /// `false`: the sender signs fields, not the body (Mailgun, Adyen); the rest of the body
    /// is not checked. Reported as weaker; the default is `true` (the message must cover it).
    pub body_signed: Option<bool>,
    /// A JSON pointer to an array of items each signed on its own (Adyen's
    /// `notificationItems`): the signature and every JSON part and timestamp are read from
    /// each item, and every item must verify.
    pub each: Option<String>,
    /// The id the sender tags this route's signatures with, where it tags each with its
    /// key's id (Braintree's public key in `pub|sig` pairs): `entries.key: "{key_id}"`.
    pub key_id: Option<String>,
    /// For `algorithm: jwt`: what the token's claims must say.
    pub jwt: Option<RawJwt>,
    /// Where the request names the URL of its signing certificate, and which hosts and
    /// certificate names are accepted (`aws-sns`, `rsa-sha256`: the key is fetched).
    pub key_url: Option<RawKeyUrl>,
    /// JSON fields that must hold one of the listed values, by pointer (SNS's
    /// `/TopicArn`).
    pub json_allowed: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// How key strings become key bytes (`KeyEncoding::ALL`: raw, base64, hex, ...).
    pub key_encoding: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secrets: Option<Vec<String>>,
    pub public_key: Option<String>,
    pub public_key_file: Option<PathBuf>,
    pub public_keys: Option<Vec<String>>,
}

impl RawVerify {
    pub fn has_key_source(&self) -> bool {
        self.secret.is_some()
            || self.secret_file.is_some()
            || self.secrets.is_some()
            || self.public_key.is_some()
            || self.public_key_file.is_some()
            || self.public_keys.is_some()
    }
}

/// `verify.key_url:`: where a fetched key's URL is, and what it may name.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawKeyUrl {
    /// The header holding the URL (PayPal's `paypal-cert-url`) ...
    pub header: Option<String>,
    /// ... or a JSON pointer into the body (SNS's `/SigningCertURL`) ...
    pub json: Option<String>,
    /// ... or, for a JWT, the issuer's JWKS at a fixed URL (Google's) ...
    pub url: Option<String>,
    /// ... or its OIDC discovery document, whose `jwks_uri` is the JWKS ...
    pub discovery: Option<String>,
    /// ... or a key API asked for each key by its id (Plaid's), with `post`, `kid_field` and
    /// `key_at`.
    pub api: Option<String>,
    /// The JSON object posted to the key API (credentials as `${ENV}` references); the key
    /// id is added as `kid_field`.
    pub post: Option<std::collections::BTreeMap<String, String>>,
    pub kid_field: Option<String>,
    /// Where the key (a JWK, or a PEM public key) is in the API's answer: a JSON pointer.
    pub key_at: Option<String>,
    /// The OAuth client-credentials grant whose token the key API takes (eBay's).
    pub token: Option<RawKeyToken>,
    /// `true`: a signing certificate must chain to a trusted root (the key fetcher's: the
    /// system's or `key_fetch.ca_file`) even when its document holds it alone; one that sends
    /// its chain is always checked.
    pub require_chain: Option<bool>,
    /// PEM intermediates a signing certificate may chain through, for a sender that sends
    /// its certificate alone (with `require_chain`).
    pub intermediates_file: Option<PathBuf>,
    /// `true`: the JWKS is an issuer's that signs for this sender alone (your own FusionAuth
    /// instance), so its tokens need name no audience.
    pub private_issuer: Option<bool>,
    /// Host patterns the URL may name; a `*` is one whole label, `{region}` a cloud region.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Paths a URL the request names may have (`*`: a run of letters, digits, `-`, `_`).
    #[serde(default)]
    pub paths: Vec<String>,
    /// The DNS names the signing certificate may be issued to.
    #[serde(default)]
    pub certificate_names: Vec<String>,
}

/// `key_url.token:` an OAuth client-credentials grant (RFC 6749 §4.4): `{ url, client_id,
/// client_secret, scope }`, the id and secret as `${ENV}` references.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawKeyToken {
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

impl RawKeyToken {
    fn to_yaml(&self) -> serde_yaml::Value {
        yaml_map([
            ("url", self.url.as_deref().map(yaml_str)),
            ("client_id", self.client_id.as_deref().map(yaml_str)),
            (
                "client_secret",
                self.client_secret
                    .as_deref()
                    .map(|v| yaml_str(shown_credential(v))),
            ),
            ("scope", self.scope.as_deref().map(yaml_str)),
        ])
    }
}

/// A credential as `check --expand` prints it: an `${ENV}` reference or a preset's
/// `"{route}"` as written, a literal never.
fn shown_credential(v: &str) -> &str {
    if v.starts_with("${") || v == ROUTE_GIVES {
        v
    } else {
        "<literal, not shown>"
    }
}

impl RawKeyUrl {
    /// A route's `key_url:` over its preset's: where the URL is, taken whole from whichever
    /// names it; the rest field by field, `post` field by field (the route gives the
    /// credentials a preset leaves to it).
    fn overlay(self, b: RawKeyUrl) -> RawKeyUrl {
        let own = self.header.is_some()
            || self.json.is_some()
            || self.url.is_some()
            || self.discovery.is_some()
            || self.api.is_some();
        let src = if own { &self } else { &b };
        let (header, json, url, discovery, api) = (
            src.header.clone(),
            src.json.clone(),
            src.url.clone(),
            src.discovery.clone(),
            src.api.clone(),
        );
        let or = |o: Vec<String>, b: Vec<String>| if o.is_empty() { b } else { o };
        RawKeyUrl {
            header,
            json,
            url,
            discovery,
            api,
            post: merge(self.post, b.post, |mut o, b| {
                for (k, v) in b {
                    o.entry(k).or_insert(v);
                }
                o
            }),
            kid_field: self.kid_field.or(b.kid_field),
            key_at: self.key_at.or(b.key_at),
            token: merge(self.token, b.token, |o, b| RawKeyToken {
                url: o.url.or(b.url),
                client_id: o.client_id.or(b.client_id),
                client_secret: o.client_secret.or(b.client_secret),
                scope: o.scope.or(b.scope),
            }),
            private_issuer: self.private_issuer.or(b.private_issuer),
            require_chain: self.require_chain.or(b.require_chain),
            intermediates_file: self.intermediates_file.or(b.intermediates_file),
            hosts: or(self.hosts, b.hosts),
            paths: or(self.paths, b.paths),
            certificate_names: or(self.certificate_names, b.certificate_names),
        }
    }

    fn to_yaml(&self) -> serde_yaml::Value {
        yaml_map([
            ("header", self.header.as_deref().map(yaml_str)),
            ("json", self.json.as_deref().map(yaml_str)),
            ("url", self.url.as_deref().map(yaml_str)),
            ("discovery", self.discovery.as_deref().map(yaml_str)),
            ("api", self.api.as_deref().map(yaml_str)),
            (
                "post",
                self.post.as_ref().map(|m| {
                    let mut out = serde_yaml::Mapping::new();
                    for (k, v) in m {
                        out.insert(yaml_str(k), yaml_str(shown_credential(v)));
                    }
                    serde_yaml::Value::Mapping(out)
                }),
            ),
            ("kid_field", self.kid_field.as_deref().map(yaml_str)),
            ("key_at", self.key_at.as_deref().map(yaml_str)),
            ("token", self.token.as_ref().map(RawKeyToken::to_yaml)),
            (
                "require_chain",
                self.require_chain.map(serde_yaml::Value::Bool),
            ),
            (
                "intermediates_file",
                self.intermediates_file
                    .as_ref()
                    .map(|p| yaml_str(&p.display().to_string())),
            ),
            (
                "private_issuer",
                self.private_issuer.map(serde_yaml::Value::Bool),
            ),
            (
                "hosts",
                Some(&self.hosts)
                    .filter(|h| !h.is_empty())
                    .map(|h| yaml_list(h)),
            ),
            (
                "paths",
                Some(&self.paths)
                    .filter(|p| !p.is_empty())
                    .map(|p| yaml_list(p)),
            ),
            (
                "certificate_names",
                Some(&self.certificate_names)
                    .filter(|n| !n.is_empty())
                    .map(|n| yaml_list(n)),
            ),
        ])
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignature {
    /// One header name, or several the signature may arrive under (exactly one present) ...
    pub header: Option<OneOrMany>,
    /// ... or several headers, each present one a candidate (Box's primary and secondary) ...
    pub headers: Option<Vec<String>>,
    /// ... or numbered headers `{prefix}1` to `{prefix}{max}` (DocuSign) ...
    pub numbered: Option<RawNumbered>,
    /// ... or a query parameter, a form field or a JSON field of the body ...
    pub query: Option<String>,
    pub form: Option<String>,
    pub json: Option<String>,
    /// ... or the whole body is the signature: a JWT whose payload is the event (Kinde).
    pub body: Option<bool>,
    pub prefix: Option<String>,
    pub encoding: Option<OneOrMany>,
    pub entries: Option<RawEntries>,
    /// A positional list: `{first},{sig},{sig}` (Recurly).
    pub list: Option<RawList>,
    /// The header is a base64 JSON object holding the signature (eBay).
    pub envelope: Option<RawEnvelope>,
}

impl RawSignature {
    /// Whether this block names where the signature is (its own source).
    fn has_source(&self) -> bool {
        self.header.is_some()
            || self.headers.is_some()
            || self.numbered.is_some()
            || self.query.is_some()
            || self.form.is_some()
            || self.json.is_some()
            || self.body.is_some()
    }

    /// The block as the file writes it (`check --expand`).
    pub fn to_yaml(&self) -> serde_yaml::Value {
        let s = self;
        yaml_map([
            ("header", s.header.as_ref().map(OneOrMany::to_yaml)),
            ("headers", s.headers.as_deref().map(yaml_list)),
            (
                "numbered",
                s.numbered.as_ref().map(|n| {
                    yaml_map([
                        ("prefix", Some(yaml_str(&n.prefix))),
                        ("max", Some(serde_yaml::Value::from(n.max))),
                    ])
                }),
            ),
            ("query", s.query.as_deref().map(yaml_str)),
            ("form", s.form.as_deref().map(yaml_str)),
            ("json", s.json.as_deref().map(yaml_str)),
            ("body", s.body.map(serde_yaml::Value::Bool)),
            ("prefix", s.prefix.as_deref().map(yaml_str)),
            ("encoding", s.encoding.as_ref().map(OneOrMany::to_yaml)),
            (
                "entries",
                s.entries.as_ref().map(|e| {
                    yaml_map([
                        ("separator", Some(yaml_str(&e.separator))),
                        ("assign", Some(yaml_str(&e.assign))),
                        ("key", Some(yaml_str(&e.key))),
                    ])
                }),
            ),
            (
                "list",
                s.list.as_ref().map(|l| {
                    yaml_map([
                        ("separator", Some(yaml_str(&l.separator))),
                        ("first", Some(yaml_str(&l.first))),
                    ])
                }),
            ),
            ("envelope", s.envelope.as_ref().map(RawEnvelope::to_yaml)),
        ])
    }
}

/// `jwt:` — the algorithms a token may use and what its claims must say.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub algorithms: Option<Vec<String>>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Option<RawDuration>,
    pub max_age: Option<RawDuration>,
    pub require: Option<Vec<String>>,
    pub body_sha256: Option<RawBodyClaim>,
    /// Claims that must equal these values (a preset's `"{route}"` is one the route gives).
    pub claims: Option<std::collections::BTreeMap<String, serde_yaml::Value>>,
}

/// `body_sha256: { claim: sha256, encoding: hex }`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawBodyClaim {
    pub claim: String,
    pub encoding: Option<String>,
}

impl RawJwt {
    /// Lays a route's `jwt:` over its preset's, field by field, and its claims claim by
    /// claim.
    fn overlay(self, b: RawJwt) -> RawJwt {
        RawJwt {
            algorithms: self.algorithms.or(b.algorithms),
            issuer: self.issuer.or(b.issuer),
            audience: self.audience.or(b.audience),
            leeway: self.leeway.or(b.leeway),
            max_age: self.max_age.or(b.max_age),
            require: self.require.or(b.require),
            body_sha256: self.body_sha256.or(b.body_sha256),
            claims: merge(self.claims, b.claims, |mut o, b| {
                for (k, v) in b {
                    o.entry(k).or_insert(v);
                }
                o
            }),
        }
    }

    /// The block as the file writes it (`check --expand`).
    pub fn to_yaml(&self) -> serde_yaml::Value {
        yaml_map([
            ("algorithms", self.algorithms.as_deref().map(yaml_list)),
            ("issuer", self.issuer.as_deref().map(yaml_str)),
            ("audience", self.audience.as_deref().map(yaml_str)),
            ("leeway", self.leeway.as_deref().map(yaml_str)),
            ("max_age", self.max_age.as_deref().map(yaml_str)),
            ("require", self.require.as_deref().map(yaml_list)),
            (
                "claims",
                self.claims.as_ref().map(|m| {
                    let mut out = serde_yaml::Mapping::new();
                    for (k, v) in m {
                        out.insert(yaml_str(k), v.clone());
                    }
                    serde_yaml::Value::Mapping(out)
                }),
            ),
            (
                "body_sha256",
                self.body_sha256.as_ref().map(|b| {
                    yaml_map([
                        ("claim", Some(yaml_str(&b.claim))),
                        ("encoding", b.encoding.as_deref().map(yaml_str)),
                    ])
                }),
            ),
        ])
    }
}

/// `numbered: { prefix: X-DocuSign-Signature-, max: 100 }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNumbered {
    pub prefix: String,
    pub max: u32,
}

/// `list: { separator: ",", first: t }`: the first item is the entry `first`, every other
/// item a signature.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawList {
    pub separator: String,
    pub first: String,
}

/// A signature header that is a base64 JSON object: `{ signature: signature, kid: kid,
/// fixed: { alg: ecdsa, digest: SHA1 } }` (eBay's `X-EBAY-SIGNATURE`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvelope {
    /// The field holding the signature.
    pub signature: String,
    /// The field holding the key id (for a key fetched by its id).
    pub kid: Option<String>,
    /// Fields that must hold exactly these values.
    #[serde(default)]
    pub fixed: std::collections::BTreeMap<String, String>,
}

impl RawEnvelope {
    fn to_yaml(&self) -> serde_yaml::Value {
        let fixed = serde_yaml::Mapping::from_iter(
            self.fixed.iter().map(|(k, v)| (yaml_str(k), yaml_str(v))),
        );
        yaml_map([
            ("signature", Some(yaml_str(&self.signature))),
            ("kid", self.kid.as_deref().map(yaml_str)),
            (
                "fixed",
                (!self.fixed.is_empty()).then_some(serde_yaml::Value::Mapping(fixed)),
            ),
        ])
    }
}

/// A structured signature header: `{ separator: ",", assign: "=", key: v1 }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntries {
    pub separator: String,
    pub assign: String,
    pub key: String,
}

/// `encoding: hex` or `encoding: [hex, base64]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One message part: a word (`body`, `method`, ...) or a one-key map (`{ header: NAME }`,
/// `{ literal: TEXT }`, `{ optional: [PARTS] }`, ...). docs/configuration.md lists them all.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub enum RawPart {
    Body,
    Url,
    FormParamsSorted,
    Method,
    Path,
    PathAndQuery,
    QuerySorted,
    BodySha256Hex,
    BodyCrc32,
    BodyJsonCompact,
    Header(String),
    Literal(String),
    SignatureEntry(String),
    Query(String),
    Form(String),
    Json(String),
    /// The route's `key_id`, as a literal (PayPal signs its webhook's id).
    KeyId,
    Optional(Vec<RawPart>),
}

/// Makes a part from its text (`{ header: TEXT }`).
type MakePart = fn(String) -> RawPart;

impl RawPart {
    /// The parts written as one word, by that word.
    const WORDS: &'static [(&'static str, RawPart)] = &[
        ("body", RawPart::Body),
        ("url", RawPart::Url),
        ("form_params_sorted", RawPart::FormParamsSorted),
        ("method", RawPart::Method),
        ("path", RawPart::Path),
        ("path_and_query", RawPart::PathAndQuery),
        ("query_sorted", RawPart::QuerySorted),
        ("body_sha256_hex", RawPart::BodySha256Hex),
        ("body_crc32", RawPart::BodyCrc32),
        ("body_json_compact", RawPart::BodyJsonCompact),
        ("key_id", RawPart::KeyId),
    ];

    /// The parts written as `{ key: TEXT }`, by that key.
    const FIELDS: &'static [(&'static str, MakePart)] = &[
        ("header", RawPart::Header),
        ("literal", RawPart::Literal),
        ("signature_entry", RawPart::SignatureEntry),
        ("query", RawPart::Query),
        ("form", RawPart::Form),
        ("json", RawPart::Json),
    ];
}

/// serde_yaml reads externally tagged enums only from YAML tags (`!header X`), so the map
/// forms are read by hand, with an error that says what is allowed.
impl TryFrom<serde_yaml::Value> for RawPart {
    type Error = String;

    fn try_from(v: serde_yaml::Value) -> Result<RawPart, String> {
        use serde_yaml::Value;
        match &v {
            Value::String(w) => {
                if let Some((_, part)) = RawPart::WORDS.iter().find(|(word, _)| word == w) {
                    return Ok(part.clone());
                }
            }
            Value::Mapping(m) if m.len() == 1 => match m.iter().next() {
                Some((Value::String(k), Value::String(val))) => {
                    if let Some((_, make)) = RawPart::FIELDS.iter().find(|(key, _)| key == k) {
                        return Ok(make(val.clone()));
                    }
                }
                Some((Value::String(k), Value::Sequence(parts))) if k == "optional" => {
                    let parts = parts
                        .iter()
                        .map(|p| RawPart::try_from(p.clone()))
                        .collect::<Result<Vec<_>, _>>()?;
                    return Ok(RawPart::Optional(parts));
                }
                _ => {}
            },
            _ => {}
        }
        let words: Vec<&str> = RawPart::WORDS.iter().map(|(w, _)| *w).collect();
        let fields: Vec<String> = RawPart::FIELDS
            .iter()
            .map(|(k, _)| format!("{{ {k}: ... }}"))
            .collect();
        let shown = serde_yaml::to_string(&v).unwrap_or_default();
        Err(format!(
            "unknown message part `{}`; use {}, {} or {{ optional: [PARTS] }}",
            shown.trim(),
            words.join(", "),
            fields.join(", ")
        ))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimestamp {
    /// Read the timestamp from this request header ...
    pub header: Option<String>,
    /// ... or from this JSON body field (`name` or a JSON pointer such as `/data/ts`) ...
    pub json: Option<String>,
    /// ... or from this entry of a structured signature header (Stripe's `t`).
    pub signature_entry: Option<String>,
    /// `seconds`, `milliseconds` or `rfc3339`.
    pub unit: Option<String>,
    /// How old a timestamp may be; also the future bound unless `future_tolerance` is set.
    pub tolerance: Option<RawDuration>,
    pub future_tolerance: Option<RawDuration>,
}

impl RawVerify {
    /// Lays `self` (a route's own fields) over `base` (a preset), field by field; nested
    /// `signature` and `timestamp` blocks are merged per field too.
    pub fn overlay(self, base: RawVerify) -> RawVerify {
        // Keys are one choice: a route that names any key source replaces the preset's.
        let keys_from = if self.has_key_source() { &self } else { &base };
        let (secret, secret_file, secrets) = (
            keys_from.secret.clone(),
            keys_from.secret_file.clone(),
            keys_from.secrets.clone(),
        );
        let (public_key, public_key_file, public_keys) = (
            keys_from.public_key.clone(),
            keys_from.public_key_file.clone(),
            keys_from.public_keys.clone(),
        );
        RawVerify {
            preset: self.preset.or(base.preset),
            algorithm: self.algorithm.or(base.algorithm),
            signature: merge(self.signature, base.signature, |o, b| {
                // A different source replaces the preset's source entirely.
                let src = if o.has_source() { &o } else { &b };
                RawSignature {
                    header: src.header.clone(),
                    headers: src.headers.clone(),
                    numbered: src.numbered.clone(),
                    query: src.query.clone(),
                    form: src.form.clone(),
                    json: src.json.clone(),
                    body: src.body,
                    prefix: o.prefix.or(b.prefix),
                    encoding: o.encoding.or(b.encoding),
                    entries: o.entries.or(b.entries),
                    list: o.list.or(b.list),
                    envelope: o.envelope.or(b.envelope),
                }
            }),
            message: self.message.or(base.message),
            timestamp: merge(self.timestamp, base.timestamp, |o, b| {
                // A different source replaces the preset's source entirely.
                let own_source =
                    o.header.is_some() || o.json.is_some() || o.signature_entry.is_some();
                let (o_header, o_json, o_entry) = (o.header, o.json, o.signature_entry);
                RawTimestamp {
                    header: if own_source { o_header } else { b.header },
                    json: if own_source { o_json } else { b.json },
                    signature_entry: if own_source {
                        o_entry
                    } else {
                        b.signature_entry
                    },
                    unit: o.unit.or(b.unit),
                    tolerance: o.tolerance.or(b.tolerance),
                    future_tolerance: o.future_tolerance.or(b.future_tolerance),
                }
            }),
            body_hash_param: self.body_hash_param.or(base.body_hash_param),
            body_signed: self.body_signed.or(base.body_signed),
            each: self.each.or(base.each),
            key_id: self.key_id.or(base.key_id),
            jwt: merge(self.jwt, base.jwt, RawJwt::overlay),
            key_url: merge(self.key_url, base.key_url, RawKeyUrl::overlay),
            json_allowed: self.json_allowed.or(base.json_allowed),
            key_encoding: self.key_encoding.or(base.key_encoding),
            secret,
            secret_file,
            secrets,
            public_key,
            public_key_file,
            public_keys,
        }
    }
}

fn merge<T>(over: Option<T>, base: Option<T>, f: impl FnOnce(T, T) -> T) -> Option<T> {
    match (over, base) {
        (Some(o), Some(b)) => Some(f(o, b)),
        (o, b) => o.or(b),
    }
}

// ---------------------------------------------------------------------------------------------
// Back to YAML (`hookgate check --expand`): the inverse of the readers above, so an expanded
// preset can be pasted into a configuration and read back to the same scheme.
// ---------------------------------------------------------------------------------------------

fn yaml_str(s: &str) -> serde_yaml::Value {
    serde_yaml::Value::String(s.to_owned())
}

fn yaml_map<'a>(
    entries: impl IntoIterator<Item = (&'a str, Option<serde_yaml::Value>)>,
) -> serde_yaml::Value {
    let mut m = serde_yaml::Mapping::new();
    for (k, v) in entries {
        if let Some(v) = v {
            m.insert(yaml_str(k), v);
        }
    }
    serde_yaml::Value::Mapping(m)
}

fn yaml_list(items: &[String]) -> serde_yaml::Value {
    serde_yaml::Value::Sequence(items.iter().map(|s| yaml_str(s)).collect())
}

impl OneOrMany {
    fn to_yaml(&self) -> serde_yaml::Value {
        match self {
            OneOrMany::One(s) => yaml_str(s),
            OneOrMany::Many(v) => yaml_list(v),
        }
    }
}

impl RawPart {
    pub fn to_yaml(&self) -> serde_yaml::Value {
        let one = |k: &str, v: &str| yaml_map([(k, Some(yaml_str(v)))]);
        if let Some((word, _)) = RawPart::WORDS.iter().find(|(_, p)| p == self) {
            return yaml_str(word);
        }
        match self {
            RawPart::Header(h) => one("header", h),
            RawPart::Literal(t) => one("literal", t),
            RawPart::SignatureEntry(e) => one("signature_entry", e),
            RawPart::Query(q) => one("query", q),
            RawPart::Form(f) => one("form", f),
            RawPart::Json(p) => one("json", p),
            RawPart::Optional(parts) => yaml_map([(
                "optional",
                Some(serde_yaml::Value::Sequence(
                    parts.iter().map(RawPart::to_yaml).collect(),
                )),
            )]),
            // Written as words above.
            other => yaml_str(&format!("{other:?}")),
        }
    }
}

impl RawReplayKey {
    pub fn to_yaml(&self) -> serde_yaml::Value {
        match self {
            RawReplayKey::Header(h) if h.len() == 1 => {
                yaml_map([("header", Some(yaml_str(&h[0])))])
            }
            RawReplayKey::Header(h) => yaml_map([("header", Some(yaml_list(h)))]),
            RawReplayKey::Json(p) => yaml_map([("json", Some(yaml_str(p)))]),
            RawReplayKey::Signature => yaml_str("signature"),
        }
    }
}

impl RawVerify {
    /// This `verify:` block as YAML, fields in the reference's order; `None` fields are left
    /// out. `literal` is written in place of a literal secret's value (never printed).
    pub fn to_yaml(&self, literal: &str) -> serde_yaml::Value {
        let shown = |s: &String| {
            if s.starts_with("${") {
                yaml_str(s)
            } else {
                yaml_str(literal)
            }
        };
        let path = |p: &PathBuf| yaml_str(&p.display().to_string());
        yaml_map([
            ("preset", self.preset.as_deref().map(yaml_str)),
            ("algorithm", self.algorithm.as_deref().map(yaml_str)),
            (
                "signature",
                self.signature.as_ref().map(RawSignature::to_yaml),
            ),
            (
                "message",
                self.message.as_ref().map(|parts| {
                    serde_yaml::Value::Sequence(parts.iter().map(RawPart::to_yaml).collect())
                }),
            ),
            (
                "timestamp",
                self.timestamp.as_ref().map(|t| {
                    yaml_map([
                        ("header", t.header.as_deref().map(yaml_str)),
                        ("json", t.json.as_deref().map(yaml_str)),
                        (
                            "signature_entry",
                            t.signature_entry.as_deref().map(yaml_str),
                        ),
                        ("unit", t.unit.as_deref().map(yaml_str)),
                        ("tolerance", t.tolerance.as_deref().map(yaml_str)),
                        (
                            "future_tolerance",
                            t.future_tolerance.as_deref().map(yaml_str),
                        ),
                    ])
                }),
            ),
            ("body_signed", self.body_signed.map(serde_yaml::Value::Bool)),
            ("each", self.each.as_deref().map(yaml_str)),
            ("key_id", self.key_id.as_deref().map(yaml_str)),
            ("jwt", self.jwt.as_ref().map(RawJwt::to_yaml)),
            ("key_url", self.key_url.as_ref().map(RawKeyUrl::to_yaml)),
            (
                "json_allowed",
                self.json_allowed.as_ref().map(|m| {
                    let mut out = serde_yaml::Mapping::new();
                    for (k, v) in m {
                        out.insert(yaml_str(k), yaml_list(v));
                    }
                    serde_yaml::Value::Mapping(out)
                }),
            ),
            (
                "body_hash_param",
                self.body_hash_param.as_deref().map(yaml_str),
            ),
            ("key_encoding", self.key_encoding.as_deref().map(yaml_str)),
            ("secret", self.secret.as_ref().map(shown)),
            ("secret_file", self.secret_file.as_ref().map(path)),
            (
                "secrets",
                self.secrets
                    .as_ref()
                    .map(|v| serde_yaml::Value::Sequence(v.iter().map(shown).collect())),
            ),
            ("public_key", self.public_key.as_deref().map(yaml_str)),
            ("public_key_file", self.public_key_file.as_ref().map(path)),
            (
                "public_keys",
                self.public_keys.as_ref().map(|v| yaml_list(v)),
            ),
        ])
    }
}
