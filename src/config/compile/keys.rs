//! A scheme's keys: which of `secret`, `secret_file`, `secrets`, `public_key`,
//! `public_key_file`, `public_keys` is set, each resolved (environment, file, literal),
//! decoded with `key_encoding` and built into verification keys; or, for a key that is
//! fetched, where its URL is (`key_url:`).

use super::values::parse_header;
use super::{Ctx, Report};
use crate::config::defaults;
use crate::config::file::{RawKeyUrl, RawVerify};
use crate::config::secret::{self, Origin};
use crate::scheme::fetched::{ChainRule, DocFormat, FetchedKey, KeyApi, KeyFrom, TokenGrant};
use crate::scheme::jwt::Family;
use crate::scheme::pin::{HostPattern, KeyUrl, PathPattern};
use crate::scheme::{Algorithm, KeyEncoding, Keys};

/// Resolves the key strings (secrets or public keys, as the algorithm needs), decodes them
/// with `key_encoding`, and builds the verification keys. Every problem names its field.
pub(super) fn compile_keys(
    v: &RawVerify,
    algorithm: Algorithm,
    jwt_family: Option<Family>,
    loc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> Option<Keys> {
    let errors_before = r.errors.len();
    // A JWT route's key family is its algorithms': secrets for HS*, public keys otherwise.
    let wants_public = match jwt_family {
        Some(family) => family != Family::Hmac,
        None => algorithm.is_asymmetric(),
    };
    check_key_kind(v, algorithm, wants_public, loc, r);
    let encoding = key_encoding(v, algorithm, loc, r);
    let sources = resolve_key_sources(v, loc, ctx, r);
    if r.errors.len() > errors_before {
        return None;
    }
    let decoded = decode_keys(encoding?, sources, r);
    if r.errors.len() > errors_before {
        return None;
    }
    let (keys, fields): (Vec<Vec<u8>>, Vec<String>) = decoded.into_iter().unzip();
    let built = match jwt_family {
        Some(family) => Keys::jwt(family, &keys),
        None => Keys::new(algorithm, &keys),
    };
    match built {
        Ok(keys) => Some(keys),
        Err((i, e)) => {
            r.error(&fields[i], e);
            None
        }
    }
}

/// `key_encoding`, or the algorithm's default; `None` (reported) for an unknown name.
pub(super) fn key_encoding(
    v: &RawVerify,
    algorithm: Algorithm,
    loc: &str,
    r: &mut Report,
) -> Option<KeyEncoding> {
    match v.key_encoding.as_deref() {
        None => Some(defaults::key_encoding(algorithm)),
        Some(e) => KeyEncoding::parse(e).or_else(|| {
            r.error(
                format!("{loc}.key_encoding"),
                format!(
                    "unknown key encoding `{e}`; use {}",
                    crate::scheme::one_of(
                        &KeyEncoding::ALL
                            .iter()
                            .map(|k| k.name())
                            .collect::<Vec<_>>()
                    )
                ),
            );
            None
        }),
    }
}

/// The resolved key strings decoded with `encoding`: the key bytes, each with its field. The
/// compiler builds the verification keys from these, and `hookgate sign` signs with them
/// (`sender.rs`), so both read a key the same way.
pub(super) fn decode_keys(
    encoding: KeyEncoding,
    sources: Vec<(Vec<u8>, String)>,
    r: &mut Report,
) -> Vec<(Vec<u8>, String)> {
    let mut decoded = Vec::new();
    for (text, field) in sources {
        match encoding.decode(&text) {
            Ok(bytes) if bytes.is_empty() => r.error(field, "key is empty after decoding"),
            Ok(bytes) => decoded.push((bytes, field)),
            Err(e) => r.error(field, format!("{e} (key_encoding: {})", encoding.name())),
        }
    }
    decoded
}

/// A scheme verifying with public keys takes no secret, and one using a shared secret no
/// public key.
fn check_key_kind(
    v: &RawVerify,
    algorithm: Algorithm,
    wants_public: bool,
    loc: &str,
    r: &mut Report,
) {
    let has_secret = v.secret.is_some() || v.secret_file.is_some() || v.secrets.is_some();
    let has_public =
        v.public_key.is_some() || v.public_key_file.is_some() || v.public_keys.is_some();
    if wants_public && has_secret {
        r.error(
            loc,
            format!(
                "{} verifies with public keys: use `public_key`, `public_key_file` or \
                 `public_keys`, not a secret",
                algorithm.name()
            ),
        );
    }
    if !wants_public && has_public {
        r.error(
            loc,
            format!(
                "{} uses a shared secret: use `secret`, `secret_file` or `secrets`, not a \
                 public key",
                algorithm.name()
            ),
        );
    }
}

/// Reads every configured key string: `secret`/`public_key` (an `${ENV}` or a literal),
/// `*_file`, or the `secrets`/`public_keys` list. Returns each with its field location.
pub(super) fn resolve_key_sources(
    v: &RawVerify,
    loc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> Vec<(Vec<u8>, String)> {
    if !one_key_source(v, loc, r) {
        return vec![];
    }
    let mut out = Vec::new();
    for (single, name) in [(&v.secret, "secret"), (&v.public_key, "public_key")] {
        if let Some(s) = single {
            let resolved = secret::resolve_value(s, ctx.env);
            take_key(resolved, format!("{loc}.{name}"), &mut out, r);
        }
    }
    for (file, name) in [
        (&v.secret_file, "secret_file"),
        (&v.public_key_file, "public_key_file"),
    ] {
        if let Some(p) = file {
            let path = r.file(ctx.base.join(p));
            let resolved = secret::resolve_file(&path);
            // A public key may be read by anyone.
            if let (Ok(_), "secret_file") = (&resolved, name) {
                if let Some(exposed) = secret::exposure(&path) {
                    r.warn(format!("{loc}.{name}"), exposed);
                }
            }
            take_key(resolved, format!("{loc}.{name}"), &mut out, r);
        }
    }
    for (list, name) in [(&v.secrets, "secrets"), (&v.public_keys, "public_keys")] {
        if let Some(list) = list {
            if list.is_empty() {
                r.error(format!("{loc}.{name}"), "empty list");
            }
            for (i, s) in list.iter().enumerate() {
                let resolved = secret::resolve_value(s, ctx.env);
                take_key(resolved, format!("{loc}.{name}[{i}]"), &mut out, r);
            }
        }
    }
    out
}

/// Whether exactly one key source is set; if not, the error says what to set.
fn one_key_source(v: &RawVerify, loc: &str, r: &mut Report) -> bool {
    let sources = [
        v.secret.is_some(),
        v.secret_file.is_some(),
        v.secrets.is_some(),
        v.public_key.is_some(),
        v.public_key_file.is_some(),
        v.public_keys.is_some(),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => {
            r.error(
                loc,
                "no key: set `secret: \"${ENV_VAR}\"`, `secret_file: PATH` or `secrets: [...]` \
                 (or `public_key`/`public_key_file`/`public_keys` for asymmetric schemes)",
            );
            false
        }
        1 => true,
        _ => {
            r.error(
                loc,
                "set only one of `secret`, `secret_file`, `secrets`, `public_key`, \
                 `public_key_file` and `public_keys`",
            );
            false
        }
    }
}

/// One resolved key string, kept with its field; a literal secret (or one that looks like a
/// mistyped `${NAME}`) earns a warning, a failure an error.
fn take_key(
    res: Result<(Vec<u8>, Origin), String>,
    field: String,
    out: &mut Vec<(Vec<u8>, String)>,
    r: &mut Report,
) {
    match res {
        Ok((bytes, origin)) => {
            // Public keys are not secret; only a literal shared secret deserves a warning.
            if field.contains("public_key") {
                // Public keys are not secret.
            } else if origin == Origin::Literal {
                r.warn(
                    &field,
                    "literal secret in the configuration file; prefer \"${ENV_VAR}\" or secret_file",
                );
            } else if origin == Origin::DollarLiteral {
                // The value is not repeated: it may be the secret itself.
                r.warn(
                    &field,
                    "written like an environment reference without braces (`$NAME`): it is \
                     used literally, as written; for the variable write \"${NAME}\"",
                );
            }
            out.push((bytes, field));
        }
        Err(e) => r.error(field, e),
    }
}

/// `key_url:` of a scheme whose key is fetched: where its URL is (one header or one JSON
/// field of the request for a certificate; the route's own `url` for a JWT's JWKS, which a
/// request never names), the hosts it may name (at least one; `*` a whole label; a JWKS
/// URL's own host by default) and, for a certificate, the names it may be issued to. A
/// fetched key takes no configured key.
pub(super) fn compile_key_url(
    v: &RawVerify,
    algorithm: Algorithm,
    jwt_family: Option<Family>,
    loc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> Option<FetchedKey> {
    let kloc = format!("{loc}.key_url");
    if v.has_key_source() {
        r.error(
            loc,
            format!(
                "{}'s key is fetched from `key_url:`; remove the configured key",
                algorithm.name()
            ),
        );
    }
    let Some(raw) = &v.key_url else {
        r.error(
            &kloc,
            format!(
                "missing: {} verifies with a key it fetches; say where its URL is and which \
                 hosts it may name",
                algorithm.name()
            ),
        );
        return None;
    };
    let format = match (jwt_family, &raw.api) {
        (Some(family), Some(_)) => DocFormat::ApiJwk(family),
        (Some(family), None) => DocFormat::Jwks(family),
        (None, _) if algorithm == Algorithm::EcdsaP256Sha1 => DocFormat::ApiP256,
        (None, _) => DocFormat::Certificate,
    };
    let mut hosts = key_hosts(raw, &kloc, r);
    let from = match format {
        DocFormat::ApiJwk(_) | DocFormat::ApiP256 => {
            key_api(raw, &hosts, &kloc, ctx, r).map(KeyFrom::Api)
        }
        _ => key_from(raw, format, &hosts, &kloc, r),
    };
    // A URL the route gives pins its own host when the route names none (a discovery
    // document's `jwks_uri` must be on it too).
    let own = match &from {
        Some(KeyFrom::Url(u) | KeyFrom::Discovery(u)) => Some(u),
        Some(KeyFrom::Api(api)) => Some(&api.url),
        _ => None,
    };
    if let (true, Some(url)) = (hosts.is_empty(), own) {
        hosts.extend(HostPattern::parse(url.host()));
    }
    let paths = key_paths(raw, &kloc, r);
    let names_missing =
        raw.certificate_names.is_empty() || raw.certificate_names.iter().any(|n| n.is_empty());
    match format {
        DocFormat::Certificate if names_missing => r.error(
            format!("{kloc}.certificate_names"),
            "missing: the DNS names the sender's signing certificate is issued to",
        ),
        DocFormat::Jwks(_) | DocFormat::ApiJwk(_) | DocFormat::ApiP256
            if !raw.certificate_names.is_empty() =>
        {
            r.error(
                format!("{kloc}.certificate_names"),
                "only for certificates; a JWKS or a key API gives keys, not certificates",
            )
        }
        _ => {}
    }
    let chain = chain_rule(raw, format, &kloc, ctx, r);
    Some(FetchedKey {
        from: from?,
        hosts,
        paths,
        names: raw.certificate_names.clone(),
        format,
        chain,
    })
}

/// `key_url.require_chain` and `intermediates_file`: for signing certificates only; the
/// intermediates are PEM certificates, read now.
fn chain_rule(
    raw: &RawKeyUrl,
    format: DocFormat,
    kloc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> ChainRule {
    let required = raw.require_chain == Some(true);
    if required && format != DocFormat::Certificate {
        r.error(
            format!("{kloc}.require_chain"),
            "only for signing certificates; keys have no chain",
        );
    }
    let Some(file) = &raw.intermediates_file else {
        return ChainRule {
            required,
            intermediates: Vec::new(),
        };
    };
    let floc = format!("{kloc}.intermediates_file");
    if !required {
        r.error(&floc, "goes with `require_chain: true`");
    }
    let path = r.file(ctx.base.join(file));
    let intermediates = std::fs::read(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|pem| {
            use rustls::pki_types::pem::PemObject as _;
            let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
                .map(|c| c.map(|c| c.as_ref().to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("no PEM certificate in {}", path.display()));
            }
            Ok(certs)
        });
    match intermediates {
        Ok(intermediates) => ChainRule {
            required,
            intermediates,
        },
        Err(e) => {
            r.error(floc, e);
            ChainRule::default()
        }
    }
}

/// `key_url.paths`: the paths a key URL the request names may have.
fn key_paths(raw: &RawKeyUrl, kloc: &str, r: &mut Report) -> Vec<PathPattern> {
    let mut paths = Vec::new();
    for (i, p) in raw.paths.iter().enumerate() {
        match PathPattern::parse(p) {
            Some(p) => paths.push(p),
            None => r.error(
                format!("{kloc}.paths[{i}]"),
                format!("`{p}` is not a path pattern: an absolute path without `..`, `?` or `%`"),
            ),
        }
    }
    paths
}

/// `key_url.hosts`: the host patterns a key URL may name.
fn key_hosts(raw: &RawKeyUrl, kloc: &str, r: &mut Report) -> Vec<HostPattern> {
    let mut hosts = Vec::new();
    for (i, h) in raw.hosts.iter().enumerate() {
        match HostPattern::parse(h) {
            Some(p) => hosts.push(p),
            None => r.error(
                format!("{kloc}.hosts[{i}]"),
                format!(
                    "`{h}` is not a host pattern: a lower-case DNS name, where `*` stands for \
                     one whole label and is followed by two fixed labels at least"
                ),
            ),
        }
    }
    if raw.hosts.is_empty() && raw.url.is_none() && raw.discovery.is_none() && raw.api.is_none() {
        r.error(
            format!("{kloc}.hosts"),
            "missing: the hosts a key URL may name",
        );
    }
    hosts
}

/// Where the key's URL is: a certificate's in the request (`header` or `json`), a JWKS's the
/// route's own `url`, pinned to `hosts` or, without them, to its own host.
fn key_from(
    raw: &RawKeyUrl,
    format: DocFormat,
    hosts: &[HostPattern],
    kloc: &str,
    r: &mut Report,
) -> Option<KeyFrom> {
    match (format, &raw.header, &raw.json, &raw.url) {
        (DocFormat::Certificate, Some(h), None, None) => {
            parse_header(h, &format!("{kloc}.header"), r).map(KeyFrom::Header)
        }
        (DocFormat::Certificate, None, Some(p), None) if !p.is_empty() => {
            Some(KeyFrom::Json(crate::scheme::json::pointer(p)))
        }
        (DocFormat::Certificate, ..) => {
            r.error(kloc, "give exactly one of `header` and `json`");
            None
        }
        (DocFormat::Jwks(_), None, None, Some(url)) if raw.discovery.is_none() => {
            own_url(url, hosts, &format!("{kloc}.url"), r).map(KeyFrom::Url)
        }
        (DocFormat::Jwks(_), None, None, None) if raw.discovery.is_some() => {
            let url = raw.discovery.as_deref().unwrap_or_default();
            own_url(url, hosts, &format!("{kloc}.discovery"), r).map(KeyFrom::Discovery)
        }
        (DocFormat::Jwks(_) | DocFormat::ApiJwk(_) | DocFormat::ApiP256, ..) => {
            r.error(
                kloc,
                "a JWT's keys come from the route's `url` (its issuer's JWKS), never from \
                 where a request says",
            );
            None
        }
    }
}

/// The host of an `https://` URL the route gives, lower-cased (`None`: not https).
pub(super) fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let host = rest.split(['/', '?', ':']).next()?;
    Some(host.to_ascii_lowercase())
}

/// A URL the route gives (a JWKS, a key API), pinned to `hosts` or, without them, to its
/// own host.
fn own_url(url: &str, hosts: &[HostPattern], loc: &str, r: &mut Report) -> Option<KeyUrl> {
    let own = url_host(url).and_then(|host| HostPattern::parse(&host));
    let pins = if hosts.is_empty() {
        own.into_iter().collect()
    } else {
        hosts.to_vec()
    };
    KeyUrl::parse(url, &pins)
        .map_err(|e| r.error(loc, format!("`{url}`: {e}")))
        .ok()
}

/// `key_url.api`: the key API, asked by `POST` of the credentials (each resolved as a
/// secret, never a preset's `"{route}"`) and the key id in `kid_field`, or by `GET` of a URL
/// whose path has a `{kid}`; the OAuth grant whose token it takes, if any; where the key is.
fn key_api(
    raw: &RawKeyUrl,
    hosts: &[HostPattern],
    kloc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> Option<KeyApi> {
    if raw.header.is_some() || raw.json.is_some() || raw.url.is_some() {
        r.error(kloc, "`api` takes no `header`, `json` or `url`");
    }
    let Some(api) = raw.api.as_deref() else {
        r.error(
            format!("{kloc}.api"),
            "missing: the key API that gives each key by its id",
        );
        return None;
    };
    let url = own_url(api, hosts, &format!("{kloc}.api"), r);
    let by_path = url.as_ref().is_some_and(KeyUrl::takes_kid);
    let mut fields = Vec::new();
    for (name, value) in raw.post.iter().flatten() {
        if let Some(v) = credential(value, &format!("{kloc}.post.{name}"), ctx, r) {
            fields.push((name.clone(), v));
        }
    }
    let required = |v: &Option<String>, field: &str, r: &mut Report| {
        let value = v.clone().filter(|v| !v.is_empty());
        if value.is_none() {
            r.error(format!("{kloc}.{field}"), "missing: needed with `api`");
        }
        value
    };
    let kid_field = if by_path {
        if raw.post.is_some() || raw.kid_field.is_some() {
            r.error(
                kloc,
                "an `api` with `{kid}` in its path is asked by GET: no `post` or `kid_field`",
            );
        }
        None
    } else {
        Some(required(&raw.kid_field, "kid_field", r)?)
    };
    let key_at = required(&raw.key_at, "key_at", r);
    // The token endpoint is on the route's hosts or, without them, the key API's own.
    let api_host: Vec<HostPattern> = url
        .iter()
        .filter_map(|u| HostPattern::parse(u.host()))
        .collect();
    let pins = if hosts.is_empty() { &api_host } else { hosts };
    let token = match &raw.token {
        Some(t) => Some(std::sync::Arc::new(key_token(t, pins, kloc, ctx, r)?)),
        None => None,
    };
    Some(KeyApi {
        url: url?,
        fields,
        kid_field,
        key_at: crate::scheme::json::pointer(&key_at?),
        token,
    })
}

/// `key_url.token`: the OAuth client-credentials grant, on one of the key API's hosts.
fn key_token(
    t: &crate::config::file::RawKeyToken,
    hosts: &[HostPattern],
    kloc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> Option<TokenGrant> {
    let tloc = format!("{kloc}.token");
    let missing = |field: &str, r: &mut Report| {
        r.error(format!("{tloc}.{field}"), "missing: needed with `token`");
    };
    let url = match t.url.as_deref() {
        Some(u) => own_url(u, hosts, &format!("{tloc}.url"), r),
        None => {
            missing("url", r);
            None
        }
    };
    let secret = |v: &Option<String>, field: &str, r: &mut Report| match v {
        Some(v) => credential(v, &format!("{tloc}.{field}"), ctx, r),
        None => {
            missing(field, r);
            None
        }
    };
    let client_id = secret(&t.client_id, "client_id", r);
    let client_secret = secret(&t.client_secret, "client_secret", r);
    let scope = t.scope.clone().unwrap_or_default();
    Some(TokenGrant {
        url: url?,
        client_id: client_id?,
        client_secret: client_secret?,
        scope,
    })
}

/// A credential a key API or token grant is given: resolved as a secret (`${ENV}`, a file);
/// a preset's `"{route}"` the route must set. `None` after an error, or when only the shape
/// is compiled (`hookgate presets`).
fn credential(value: &str, loc: &str, ctx: &Ctx<'_>, r: &mut Report) -> Option<String> {
    if value == crate::config::file::ROUTE_GIVES {
        if !ctx.shape_only {
            r.error(loc, "set it: this route's credential (as \"${ENV_VAR}\")");
        }
        return ctx.shape_only.then(String::new);
    }
    let mut resolved = Vec::new();
    take_key(
        secret::resolve_value(value, ctx.env),
        loc.to_owned(),
        &mut resolved,
        r,
    );
    let (bytes, _) = resolved.pop()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `json_allowed:`: each JSON pointer with the values it may hold. `aws-sns` requires the
/// topics: AWS signs the messages of every account's topics alike.
pub(super) fn compile_json_allowed(
    v: &RawVerify,
    algorithm: Algorithm,
    loc: &str,
    shape_only: bool,
    r: &mut Report,
) -> Vec<(String, Vec<String>)> {
    let aloc = format!("{loc}.json_allowed");
    let mut allowed = Vec::new();
    for (field, values) in v.json_allowed.iter().flatten() {
        if field.is_empty() || values.is_empty() {
            r.error(
                format!("{aloc}.{field}"),
                "give a field and the values it may hold",
            );
            continue;
        }
        allowed.push((crate::scheme::json::pointer(field), values.clone()));
    }
    let topics = allowed.iter().any(|(p, _)| p == "/TopicArn");
    // A preset's shape (`hookgate presets`) has no route to name its topics.
    if algorithm == Algorithm::AwsSns && !topics && !shape_only {
        r.error(
            aloc,
            "missing `/TopicArn`: list the topics this route takes (`json_allowed: { \
             /TopicArn: [arn:aws:sns:REGION:ACCOUNT:TOPIC] }`); AWS signs every account's \
             messages alike, so the signature alone does not say they are yours",
        );
    }
    allowed
}
