//! A route's `verify:` block, its preset laid under it, into a [`Scheme`]: algorithm,
//! signature header and encodings, signed message, timestamp window. Keys are `keys.rs`.

use std::path::Path;

use http::HeaderName;

use super::jwt::compile_jwt;
use super::keys::{compile_json_allowed, compile_key_url, compile_keys, resolve_key_sources};
use super::values::{parse_duration, parse_header};
use super::{Ctx, Report};
use crate::config::file::{OneOrMany, RawPart, RawSignature, RawTimestamp, RawVerify};
use crate::config::ConfigError;
use crate::config::{defaults, presets};
use crate::scheme::{
    Algorithm, BodyDigest, Encoding, Entries, Envelope, Keys, List, Part, Scheme, SignatureSource,
    SignatureSpec, TimestampSource, TimestampSpec, TimestampUnit, Window,
};

/// Expands the preset (if any) under the route's own fields, then compiles the result.
pub fn expand_preset(v: RawVerify, loc: &str, r_errors: &mut Vec<ConfigError>) -> RawVerify {
    match v.preset.clone() {
        None => v,
        Some(name) => match presets::find(&name) {
            Some(p) => v.overlay(p.raw_verify()),
            None => {
                r_errors.push(ConfigError {
                    location: format!("{loc}.preset"),
                    message: format!(
                        "unknown preset `{name}`; known presets: {}",
                        presets::names().join(", ")
                    ),
                });
                v
            }
        },
    }
}

/// Compiles one `verify:` block on its own (used by unit tests and tools); `loc` prefixes
/// error locations.
pub fn compile_scheme(
    v: RawVerify,
    loc: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    public_url: Option<&str>,
) -> Result<Scheme, Vec<ConfigError>> {
    let mut r = Report::default();
    let ctx = Ctx {
        base,
        env,
        public_url,
        shape_only: false,
        key_id: None,
    };
    match compile_verify(v, loc, &ctx, &mut r) {
        Some(s) if r.errors.is_empty() => Ok(s),
        _ => Err(r.errors),
    }
}

/// A preset's scheme without keys, for `hookgate presets`.
pub fn preset_shape(name: &str) -> Result<Scheme, Vec<ConfigError>> {
    let mut r = Report::default();
    let ctx = Ctx {
        base: Path::new("."),
        env: &|_| None,
        public_url: Some("https://hooks.example.com"),
        shape_only: true,
        key_id: None,
    };
    let v = RawVerify {
        preset: Some(name.to_owned()),
        // A preset whose signatures are tagged with the route's key id shows where it goes.
        key_id: Some("{key_id}".to_owned()),
        ..RawVerify::default()
    };
    match compile_verify(v, name, &ctx, &mut r) {
        Some(s) if r.errors.is_empty() => Ok(s),
        _ => Err(r.errors),
    }
}

pub(super) fn compile_verify(
    v: RawVerify,
    loc: &str,
    ctx: &Ctx<'_>,
    r: &mut Report,
) -> Option<Scheme> {
    let errors_before = r.errors.len();
    let own_message = own_message(&v);
    let v = expand_preset(v, loc, &mut r.errors);
    if r.errors.len() > errors_before {
        // The scheme's shape is unknown, but its key sources can still be checked, so that
        // one run of `check` reports those problems too.
        if !ctx.shape_only {
            let _ = resolve_key_sources(&v, loc, ctx, r);
        }
        return None;
    }
    let ctx = &ctx.with_key_id(v.key_id.as_deref());
    let algorithm = compile_algorithm(&v, loc, r);
    let signature = match &v.signature {
        None => {
            r.error(format!("{loc}.signature"), "missing (or set `preset:`)");
            None
        }
        Some(s) => compile_signature(s, algorithm, v.key_id.as_deref(), loc, r),
    };
    // Entries a message or timestamp can read: those of a header (a field's tagged entries
    // carry only signatures).
    let in_header = v.signature.as_ref().is_some_and(|s| s.header.is_some());
    let has_entries = in_header
        && (signature
            .as_ref()
            .is_some_and(|s| s.entries.is_some() || s.list.is_some())
            || v.signature
                .as_ref()
                .is_some_and(|s| s.entries.is_some() || s.list.is_some()));
    let jwt = compile_jwt(&v, algorithm, loc, ctx.shape_only, r);
    let message = signed_message(&v, algorithm, jwt.as_ref(), loc, ctx, has_entries, r);
    let timestamp = v
        .timestamp
        .as_ref()
        .and_then(|t| compile_timestamp(t, &format!("{loc}.timestamp"), has_entries, r));
    let family = jwt.as_ref().map(super::jwt::family);
    let json_allowed = algorithm.map(|a| compile_json_allowed(&v, a, loc, ctx.shape_only, r));
    let keys = match algorithm {
        Some(alg) if alg.fetches_key() || v.key_url.is_some() => {
            compile_key_url(&v, alg, family, loc, ctx, r).map(|k| Keys::Fetched(Box::new(k)))
        }
        Some(alg) if ctx.shape_only => Some(Keys::new(alg, &[]).expect("no keys to reject")),
        Some(alg) => compile_keys(&v, alg, family, loc, ctx, r),
        None => {
            let _ = resolve_key_sources(&v, loc, ctx, r);
            None
        }
    };
    if r.errors.len() > errors_before {
        return None;
    }
    let scheme = Scheme {
        algorithm: algorithm?,
        signature: signature?,
        message,
        timestamp,
        public_url: ctx.public_url.map(str::to_owned),
        body_hash_param: v.body_hash_param.clone(),
        body_signed: v.body_signed != Some(false),
        each_item: compile_each(&v, loc, r),
        jwt,
        json_allowed: json_allowed?,
        keys: keys?,
    };
    // A route overriding a preset's timestamp can leave a signed header unpinned next to the
    // body, so an override counts as the route's own message.
    if own_message {
        warn_adjacent_parts(&scheme, loc, r);
    }
    Some(scheme)
}

/// Whether the route wrote its message or timestamp itself (before its preset is laid under
/// it). A preset's own message is the provider's design (Twilio signs the URL and the form
/// side by side); only a message or timestamp the route wrote itself earns the warning of
/// [`warn_adjacent_parts`].
fn own_message(v: &RawVerify) -> bool {
    match v.preset.as_deref().and_then(presets::find) {
        None => true,
        // Written out as the preset has it (as `check --expand` prints it) is still the
        // preset's.
        Some(preset) => {
            let p = preset.raw_verify();
            v.message
                .as_ref()
                .is_some_and(|m| Some(m) != p.message.as_ref())
                || v.timestamp
                    .as_ref()
                    .is_some_and(|t| Some(t) != p.timestamp.as_ref())
        }
    }
}

fn compile_algorithm(v: &RawVerify, loc: &str, r: &mut Report) -> Option<Algorithm> {
    match v.algorithm.as_deref() {
        None => Some(defaults::ALGORITHM),
        Some(s) => Algorithm::parse(s).or_else(|| {
            r.error(
                format!("{loc}.algorithm"),
                format!(
                    "unknown algorithm `{s}`; use {}",
                    crate::scheme::one_of(
                        &Algorithm::ALL.iter().map(|a| a.name()).collect::<Vec<_>>()
                    )
                ),
            );
            None
        }),
    }
}

/// `signature:`: where it is (a header, several headers, a query parameter, a form or JSON
/// field), its prefix, structured entries or positional list, and the encodings accepted.
fn compile_signature(
    s: &RawSignature,
    algorithm: Option<Algorithm>,
    key_id: Option<&str>,
    loc: &str,
    r: &mut Report,
) -> Option<SignatureSpec> {
    let source = signature_source(s, loc, r);
    let encodings = compile_encodings(s.encoding.as_ref(), algorithm, loc, r);
    let prefix = (s.prefix.as_deref())
        .unwrap_or(defaults::SIGNATURE_PREFIX)
        .to_owned();
    let entries = s
        .entries
        .as_ref()
        .and_then(|e| compile_entries(e, key_id, &prefix, loc, r));
    let list = s.list.as_ref().and_then(|l| {
        let lloc = format!("{loc}.signature.list");
        if l.separator.is_empty() || l.first.is_empty() {
            r.error(&lloc, "separator and first must not be empty");
            return None;
        }
        if !prefix.is_empty() || s.entries.is_some() {
            r.error(&lloc, "set one of `prefix`, `entries` or `list`");
        }
        Some(List {
            separator: l.separator.clone(),
            first: l.first.clone(),
        })
    });
    let every_item = matches!(source, Some(SignatureSource::JsonEach { .. }));
    if every_item && (algorithm != Some(Algorithm::Token) || encodings != [Encoding::Raw]) {
        r.error(
            format!("{loc}.signature.json"),
            "a `*` (the field of every item) is for `algorithm: token` with `encoding: raw`: \
             each item's value is compared whole with the token",
        );
    }
    let one_header = matches!(source, Some(SignatureSource::Header { .. }));
    // Entries also split one query parameter, form field or JSON field (Braintree).
    let one_value = matches!(
        source,
        Some(SignatureSource::Query(_) | SignatureSource::Form(_) | SignatureSource::Json(_))
    );
    let split_ok = one_header || (s.list.is_none() && one_value);
    if (s.entries.is_some() || s.list.is_some()) && source.is_some() && !split_ok {
        r.error(
            format!("{loc}.signature"),
            "`entries` split one header's value, or one query parameter, form field or JSON \
             field; `list` one header's value",
        );
    }
    let envelope = s.envelope.as_ref().and_then(|e| {
        let eloc = format!("{loc}.signature.envelope");
        if !one_header || s.entries.is_some() || s.list.is_some() || !prefix.is_empty() {
            r.error(
                &eloc,
                "an envelope is one header's whole value: no `entries`, `list` or `prefix`",
            );
        }
        if e.signature.is_empty() || e.kid.as_deref() == Some("") {
            r.error(&eloc, "signature and kid name fields of the envelope");
            return None;
        }
        Some(Envelope {
            signature: e.signature.clone(),
            kid: e.kid.clone(),
            fixed: e.fixed.clone().into_iter().collect(),
        })
    });
    source.map(|source| SignatureSpec {
        source,
        prefix,
        encodings,
        entries,
        list,
        envelope,
    })
}

/// `signature.entries:`; a key of `"{key_id}"` is the route's `key_id` (entries tagged with
/// their key's id, Braintree's `pub|sig`).
fn compile_entries(
    e: &crate::config::file::RawEntries,
    key_id: Option<&str>,
    prefix: &str,
    loc: &str,
    r: &mut Report,
) -> Option<Entries> {
    let eloc = format!("{loc}.signature.entries");
    if e.separator.is_empty() || e.assign.is_empty() || e.key.is_empty() {
        r.error(&eloc, "separator, assign and key must not be empty");
        return None;
    }
    if !prefix.is_empty() {
        r.error(&eloc, "set `prefix` or `entries`, not both");
    }
    // Entries tagged with the key's id (Braintree's `pub|sig`): the route's `key_id`.
    let key = match (e.key.as_str(), key_id) {
        ("{key_id}", Some(id)) if !id.is_empty() => id.to_owned(),
        ("{key_id}", _) => {
            r.error(
                format!("{loc}.key_id"),
                "the sender tags each signature with its key's id (e.g. Braintree's public \
                     key): set `key_id:` to this route's",
            );
            return None;
        }
        (key, _) => key.to_owned(),
    };
    Some(Entries {
        separator: e.separator.clone(),
        assign: e.assign.clone(),
        key,
    })
}

/// Where the signature is: exactly one of `header`, `headers`, `numbered`, `query`, `form`
/// and `json`.
fn signature_source(s: &RawSignature, loc: &str, r: &mut Report) -> Option<SignatureSource> {
    let given = [
        s.header.is_some(),
        s.headers.is_some(),
        s.numbered.is_some(),
        s.query.is_some(),
        s.form.is_some(),
        s.json.is_some(),
        s.body.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        r.error(
            format!("{loc}.signature"),
            "set one of `header`, `headers`, `numbered`, `query`, `form`, `json` and `body`: \
             where is the signature?",
        );
        return None;
    }
    match s.body {
        Some(true) => return Some(SignatureSource::Body),
        Some(false) => {
            r.error(
                format!("{loc}.signature.body"),
                "`true` (the whole body is the token), or leave it out",
            );
            return None;
        }
        None => {}
    }
    let named = |what: &str, name: &str, r: &mut Report| {
        if name.is_empty() {
            r.error(format!("{loc}.signature.{what}"), "empty name");
            return None;
        }
        Some(name.to_owned())
    };
    if let Some(names) = &s.headers {
        let names = compile_header_list(names, &format!("{loc}.signature.headers"), r);
        return (!names.is_empty()).then_some(SignatureSource::EachHeader(names));
    }
    if let Some(n) = &s.numbered {
        let nloc = format!("{loc}.signature.numbered");
        if n.prefix.is_empty() || !(1..=100).contains(&n.max) {
            r.error(&nloc, "a `prefix` and a `max` from 1 to 100");
            return None;
        }
        let names: Vec<String> = (1..=n.max).map(|i| format!("{}{i}", n.prefix)).collect();
        let names = compile_header_list(&names, &nloc, r);
        return (!names.is_empty()).then_some(SignatureSource::EachHeader(names));
    }
    if let Some(q) = &s.query {
        return named("query", q, r).map(SignatureSource::Query);
    }
    if let Some(f) = &s.form {
        return named("form", f, r).map(SignatureSource::Form);
    }
    if let Some(field) = &s.json {
        let jloc = format!("{loc}.signature.json");
        let pointer = json_pointer(field, &jloc, r)?;
        return match each_item(&pointer) {
            None => Some(SignatureSource::Json(pointer)),
            Some(Ok((array, field))) => Some(SignatureSource::JsonEach { array, field }),
            Some(Err(e)) => {
                r.error(jloc, e);
                None
            }
        };
    }
    let headers = compile_signature_headers(s.header.as_ref(), loc, r);
    let name = headers.first().cloned()?;
    let also = headers.get(1..).unwrap_or_default().to_vec();
    Some(SignatureSource::Header { name, also })
}

/// A list of header names, each valid, none twice.
fn compile_header_list(names: &[String], loc: &str, r: &mut Report) -> Vec<HeaderName> {
    if names.is_empty() {
        r.error(loc, "empty list");
    }
    let parsed: Vec<HeaderName> = names
        .iter()
        .filter_map(|n| parse_header(n, loc, r))
        .collect();
    for (i, n) in parsed.iter().enumerate() {
        if parsed[..i].contains(n) {
            r.error(loc, format!("`{n}` is listed twice"));
        }
    }
    parsed
}

/// `signature.header`: one name or several, each valid, none twice.
fn compile_signature_headers(
    raw: Option<&OneOrMany>,
    loc: &str,
    r: &mut Report,
) -> Vec<HeaderName> {
    let hloc = format!("{loc}.signature.header");
    let Some(h) = raw else {
        r.error(&hloc, "missing");
        return Vec::new();
    };
    compile_header_list(&h.to_vec(), &hloc, r)
}

/// `signature.encoding`: one or several of [`Encoding::ALL`], each once (default:
/// [`defaults::signature_encoding`]). `raw` (the text as it is) is for shared tokens only.
fn compile_encodings(
    raw: Option<&OneOrMany>,
    algorithm: Option<Algorithm>,
    loc: &str,
    r: &mut Report,
) -> Vec<Encoding> {
    let algorithm = algorithm.unwrap_or(defaults::ALGORITHM);
    let names = raw
        .map(|e| e.to_vec())
        .unwrap_or_else(|| vec![defaults::signature_encoding(algorithm).name().into()]);
    let mut encodings = Vec::new();
    for name in &names {
        match Encoding::parse(name) {
            Some(Encoding::Raw) if algorithm != Algorithm::Token => r.error(
                format!("{loc}.signature.encoding"),
                "`raw` compares the text itself: only for `algorithm: token`",
            ),
            Some(e) if !encodings.contains(&e) => encodings.push(e),
            Some(_) => {}
            None => r.error(
                format!("{loc}.signature.encoding"),
                format!(
                    "unknown encoding `{name}`; use {}",
                    crate::scheme::one_of(
                        &Encoding::ALL.iter().map(|e| e.name()).collect::<Vec<_>>()
                    )
                ),
            ),
        }
    }
    if names.is_empty() {
        r.error(format!("{loc}.signature.encoding"), "empty list");
    }
    encodings
}

/// The signed message, checked to cover the body. A JWT signs its own claims: no
/// `message:`, and the body is covered by a claim bound to its digest (or `body_signed:
/// false`).
fn signed_message(
    v: &RawVerify,
    algorithm: Option<Algorithm>,
    jwt: Option<&crate::scheme::jwt::JwtSpec>,
    loc: &str,
    ctx: &Ctx<'_>,
    has_entries: bool,
    r: &mut Report,
) -> Vec<Part> {
    if algorithm == Some(Algorithm::AwsSns) {
        // SNS signs fields of its message, by its own list per message type (`sns.rs`).
        if v.message.is_some() {
            r.error(
                format!("{loc}.message"),
                "aws-sns signs its own list of the message's fields; remove `message:`",
            );
        }
        check_body_covered(v, algorithm, &[], loc, r);
        return Vec::new();
    }
    if algorithm != Some(Algorithm::Jwt) {
        if v.signature.as_ref().and_then(|s| s.body).is_some() {
            r.error(
                format!("{loc}.signature.body"),
                "only a JWT is a whole body (`algorithm: jwt`)",
            );
        }
        let message = compile_message(v.message.as_deref(), loc, ctx, has_entries, r);
        check_body_covered(v, algorithm, &message, loc, r);
        return message;
    }
    if v.message.is_some() {
        r.error(
            format!("{loc}.message"),
            "a JWT signs its own claims; bind the body with `jwt.body_sha256` instead",
        );
    }
    // A token that is the whole body signs the body itself (Kinde's).
    let whole_body = v.signature.as_ref().and_then(|s| s.body) == Some(true);
    let bound = jwt.is_some_and(|j| j.body_sha256.is_some()) || whole_body;
    if jwt.is_some() && !bound && v.body_signed != Some(false) {
        r.error(
            format!("{loc}.jwt.body_sha256"),
            "missing: bind the body to the token with `body_sha256: { claim: NAME, encoding: \
             hex }`, or, if the sender's token does not cover the body, say `body_signed: false`",
        );
    } else if jwt.is_some() {
        let digest = [Part::BodyDigest(BodyDigest::Sha256Hex)];
        let stands_for: &[Part] = if bound { &digest } else { &[] };
        check_body_covered(v, algorithm, stands_for, loc, r);
    }
    Vec::new()
}

/// `message:`: the parts signed, in order (default: [`defaults::message`]).
fn compile_message(
    raw: Option<&[RawPart]>,
    loc: &str,
    ctx: &Ctx<'_>,
    has_entries: bool,
    r: &mut Report,
) -> Vec<Part> {
    let default = defaults::message();
    raw.unwrap_or(&default)
        .iter()
        .enumerate()
        .filter_map(|(i, p)| compile_part(p, &format!("{loc}.message[{i}]"), ctx, has_entries, r))
        .collect()
}

/// The `key_id` part: the route's `key_id`, signed as the sender signs it (PayPal's webhook
/// id).
fn key_id_part(ctx: &Ctx<'_>, ploc: &str, r: &mut Report) -> Option<Part> {
    match ctx.key_id {
        Some(id) if !id.is_empty() => Some(Part::Literal(id.as_bytes().to_vec())),
        _ => {
            r.error(
                ploc,
                "the message signs the route's `key_id` (the id the sender gave this \
                 endpoint); set `key_id:`",
            );
            None
        }
    }
}

/// One message part; `ploc` is its location.
fn compile_part(
    p: &RawPart,
    ploc: &str,
    ctx: &Ctx<'_>,
    has_entries: bool,
    r: &mut Report,
) -> Option<Part> {
    let named = |what: &str, name: &str, r: &mut Report| {
        if name.is_empty() {
            r.error(ploc, format!("empty {what} name"));
            return None;
        }
        Some(name.to_owned())
    };
    match p {
        RawPart::Body => Some(Part::Body),
        RawPart::Url => {
            if ctx.public_url.is_none() {
                r.error(
                    ploc,
                    "`url` needs the route's `public_url` (the URL senders call)",
                );
                return None;
            }
            Some(Part::Url)
        }
        RawPart::FormParamsSorted => Some(Part::FormParamsSorted),
        RawPart::Method => Some(Part::Method),
        RawPart::Path => Some(Part::Path),
        RawPart::PathAndQuery => Some(Part::PathAndQuery),
        RawPart::QuerySorted => Some(Part::QuerySorted),
        RawPart::BodySha256Hex => Some(Part::BodyDigest(BodyDigest::Sha256Hex)),
        RawPart::BodyCrc32 => Some(Part::BodyDigest(BodyDigest::Crc32Decimal)),
        RawPart::BodyJsonCompact => Some(Part::BodyJsonCompact),
        RawPart::Literal(s) => Some(Part::Literal(s.as_bytes().to_vec())),
        // The id the sender knows this endpoint by, as the sender signs it (PayPal's webhook
        // id).
        RawPart::KeyId => key_id_part(ctx, ploc, r),
        RawPart::Header(h) => parse_header(h, &format!("{ploc}.header"), r).map(Part::Header),
        RawPart::SignatureEntry(e) => {
            if !has_entries {
                r.error(
                    ploc,
                    "`signature_entry` needs `signature.entries` in a header (`header:`)",
                );
                return None;
            }
            Some(Part::SignatureEntry(e.clone()))
        }
        RawPart::Query(q) => named("query parameter", q, r).map(Part::Query),
        RawPart::Form(f) => named("form field", f, r).map(Part::Form),
        RawPart::Json(field) => json_pointer(field, &format!("{ploc}.json"), r).map(Part::Json),
        RawPart::Optional(parts) => {
            if parts.is_empty() {
                r.error(ploc, "`optional` needs at least one part");
                return None;
            }
            let mut inner = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                let iloc = format!("{ploc}.optional[{i}]");
                match p {
                    RawPart::Optional(_) => {
                        r.error(&iloc, "an `optional` group cannot hold another")
                    }
                    RawPart::Body => r.error(
                        &iloc,
                        "`body` cannot be optional: the body is always there and always signed",
                    ),
                    p => inner.extend(compile_part(p, &iloc, ctx, has_entries, r)),
                }
            }
            (inner.len() == parts.len()).then_some(Part::Optional(inner))
        }
    }
}

/// A JSON field as configured (`name` or a JSON pointer such as `/data/id`), as a pointer.
fn json_pointer(field: &str, loc: &str, r: &mut Report) -> Option<String> {
    if field.is_empty() || field == "/" {
        r.error(
            loc,
            "empty field name; give a name (`id`) or a JSON pointer (`/data/id`)",
        );
        return None;
    }
    Some(crate::scheme::json::pointer(field))
}

/// `each:`: the array whose items are verified one by one; their signature must be in a JSON
/// field of the item (where else would each item's be?).
fn compile_each(v: &RawVerify, loc: &str, r: &mut Report) -> Option<String> {
    let each = v.each.as_deref()?;
    let eloc = format!("{loc}.each");
    let pointer = json_pointer(each, &eloc, r)?;
    if v.signature.as_ref().is_none_or(|s| s.json.is_none()) {
        r.error(
            eloc,
            "each item carries its own signature: give it as `signature: { json: ... }`, \
             read from the item",
        );
        return None;
    }
    Some(pointer)
}

/// A pointer with a `*` segment (`/value/*/clientState`): the array before it and the field
/// after it, read from every item. `None`: no `*`.
fn each_item(pointer: &str) -> Option<Result<(String, String), &'static str>> {
    let star = pointer.split('/').position(|segment| segment == "*")?;
    let segments: Vec<&str> = pointer.split('/').collect();
    if segments[star + 1..].contains(&"*") {
        return Some(Err("one `*` at most: the field of every item of one array"));
    }
    let array = segments[..star].join("/");
    let rest = segments[star + 1..].join("/");
    let field = if rest.is_empty() {
        rest
    } else {
        format!("/{rest}")
    };
    Some(Ok((array, field)))
}

/// The body must be covered: directly, or (Twilio) by the sorted form parameters plus a body
/// hash in the URL for other bodies. A token scheme signs nothing. A sender that signs only
/// fields says so with `body_signed: false`, which `check` reports as weaker.
fn check_body_covered(
    v: &RawVerify,
    algorithm: Option<Algorithm>,
    message: &[Part],
    loc: &str,
    r: &mut Report,
) {
    // Sorted form parameters cover a form body; with `body_hash_param` (Twilio) other bodies
    // through their hash in the URL, without it (Mandrill) other bodies are refused.
    let covers_body =
        message.iter().any(Part::covers_body) || message.contains(&Part::FormParamsSorted);
    if v.body_signed == Some(false) {
        if covers_body {
            r.error(
                format!("{loc}.body_signed"),
                "`false`, but the message covers the body; remove `body_signed: false`",
            );
        } else {
            r.warn(
                format!("{loc}.body_signed"),
                "false: the sender signs only some fields, so the rest of the body is not \
                 checked; anyone holding one delivery can change the rest of it. Deduplicate \
                 by a signed id (`replay:`) and let the app trust only the signed fields",
            );
        }
        return;
    }
    if algorithm != Some(Algorithm::Token) && !covers_body && v.message.is_some() {
        r.error(
            format!("{loc}.message"),
            "the signed message must include `body` or `body_sha256_hex` (a CRC-32 can be \
             matched by anyone), or `form_params_sorted` (a form body; other bodies need \
             `body_hash_param`), or the body could be swapped (a sender that signs only fields: `body_signed: false`)",
        );
    }
}

fn compile_timestamp(
    t: &RawTimestamp,
    loc: &str,
    has_entries: bool,
    r: &mut Report,
) -> Option<TimestampSpec> {
    let source = timestamp_source(t, loc, has_entries, r);
    let unit = match t.unit.as_deref() {
        None => Some(TimestampUnit::Seconds),
        Some(u) => TimestampUnit::parse(u).or_else(|| {
            r.error(
                format!("{loc}.unit"),
                format!("unknown unit `{u}`; use seconds, milliseconds, rfc3339 or rfc1123"),
            );
            None
        }),
    };
    let window = timestamp_window(t, loc, r);
    Some(TimestampSpec {
        source: source?,
        unit: unit?,
        window: window?,
    })
}

/// Where the timestamp is read: exactly one of `header`, `json`, `signature_entry`.
fn timestamp_source(
    t: &RawTimestamp,
    loc: &str,
    has_entries: bool,
    r: &mut Report,
) -> Option<TimestampSource> {
    let sources = [
        t.header.is_some(),
        t.json.is_some(),
        t.signature_entry.is_some(),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => {
            r.error(
                loc,
                "missing `header`, `json` or `signature_entry`: where is the timestamp?",
            );
            None
        }
        1 => {
            if let Some(h) = &t.header {
                parse_header(h, &format!("{loc}.header"), r).map(TimestampSource::Header)
            } else if let Some(field) = &t.json {
                json_pointer(field, &format!("{loc}.json"), r).map(TimestampSource::JsonField)
            } else {
                let entry = t.signature_entry.clone().unwrap_or_default();
                if !has_entries {
                    r.error(
                        format!("{loc}.signature_entry"),
                        "needs `signature.entries` (a structured signature header)",
                    );
                    None
                } else {
                    Some(TimestampSource::SignatureEntry(entry))
                }
            }
        }
        _ => {
            r.error(
                loc,
                "set one of `header`, `json` or `signature_entry`, not several",
            );
            None
        }
    }
}

/// The freshness window: `tolerance` (past, and future unless `future_tolerance`), or
/// `tolerance: none`: no window, but the timestamp is still read and must be canonical (it
/// is part of the signed message). `Some(None)`: no window.
fn timestamp_window(t: &RawTimestamp, loc: &str, r: &mut Report) -> Option<Option<Window>> {
    match t.tolerance.as_deref() {
        None => {
            r.error(format!("{loc}.tolerance"), "missing (e.g. `5m`, or `none`)");
            None
        }
        Some("none") => {
            if t.future_tolerance.is_some() {
                r.error(
                    format!("{loc}.future_tolerance"),
                    "set together with `tolerance: none`; give both a duration or neither",
                );
            }
            Some(None)
        }
        Some(s) => {
            let past = parse_duration(s, &format!("{loc}.tolerance"), r);
            let future = match &t.future_tolerance {
                None => past,
                Some(s) => parse_duration(s, &format!("{loc}.future_tolerance"), r),
            };
            past.zip(future)
                .map(|(past, future)| Some(Window { past, future }))
        }
    }
}

/// Warns about a custom message with two variable parts side by side (no literal between
/// them): bytes can then move from one part to the other without changing the signed
/// message, so what the app reads is not pinned by the signature. A timestamp in seconds or
/// milliseconds is exempt: it is read only in its canonical form, of one fixed length.
fn warn_adjacent_parts(scheme: &Scheme, loc: &str, r: &mut Report) {
    let fixed_length = |part: &Part| {
        let Some(ts) = &scheme.timestamp else {
            return false;
        };
        let integer = matches!(
            ts.unit,
            TimestampUnit::Seconds | TimestampUnit::Milliseconds
        );
        integer
            && match (part, &ts.source) {
                (Part::Header(h), TimestampSource::Header(t)) => h == t,
                (Part::SignatureEntry(e), TimestampSource::SignatureEntry(t)) => e == t,
                _ => false,
            }
    };
    // An empty literal separates nothing.
    let parts: Vec<(usize, &Part)> = scheme
        .message
        .iter()
        .enumerate()
        .filter(|(_, p)| !matches!(p, Part::Literal(l) if l.is_empty()))
        .collect();
    for pair in parts.windows(2) {
        let [(i, a), (j, b)] = pair else { continue };
        let (i, a, b) = (*i, *a, *b);
        // An optional group is bounded by its own first and last parts.
        let edge = |p: &'_ Part, last: bool| -> bool {
            let p = match p {
                Part::Optional(inner) if last => inner.last(),
                Part::Optional(inner) => inner.first(),
                other => Some(other),
            };
            p.is_some_and(|p| !matches!(p, Part::Literal(_)) && !fixed_length(p))
        };
        if edge(a, true) && edge(b, false) {
            r.warn(
                format!("{loc}.message[{i}..{j}]"),
                format!(
                    "{} and {} are signed side by side with no literal between them: bytes \
                     can move from one to the other under the same signature. If the sender \
                     signs a separator, add it as {{ literal: ... }}",
                    part_name(a),
                    part_name(b)
                ),
            );
        }
    }
}

fn part_name(part: &Part) -> String {
    match part {
        Part::Header(h) => format!("header {h}"),
        Part::SignatureEntry(e) => format!("signature entry {e}"),
        Part::Literal(_) => "a literal".into(),
        other => other.describe(),
    }
}
