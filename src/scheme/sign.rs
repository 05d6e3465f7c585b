//! Signing as a sender would, for `hookgate sign` and the tests: a fresh timestamp, the
//! signature (a MAC, a private key's signature, a JWT, or the shared token itself), written
//! as the scheme reads it and put where it reads it: a header, a query parameter, a form
//! field or a JSON field of the body.
//!
//! The message is computed over the request as it is before the signature is placed, and
//! placing it changes nothing else: a signature in a JSON field is inserted into the body's
//! text, so the bytes of every other field (which the message may sign) stay as they were.
//!
//! Neighbours: `mod.rs` holds the scheme and verifies; `jwt.rs` makes tokens; `keys.rs` holds
//! the private keys a sender signs with; `src/sign.rs` is the command around this.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::params::{self, Param};
use super::signature::Found;
use super::{
    is_form, json, jwt, Algorithm, JsonBody, Keys, RequestView, Scheme, SignatureSource,
    SigningKey, TimestampSource, TimestampUnit,
};

/// A request as a sender builds it, before and after signing.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub method: Method,
    /// As sent, e.g. `/hooks/a?x=1`.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Outgoing {
    /// A POST, the method webhooks come with.
    pub fn post(path_and_query: &str, headers: HeaderMap, body: &[u8]) -> Outgoing {
        Outgoing {
            method: Method::POST,
            path_and_query: path_and_query.to_owned(),
            headers,
            body: body.to_vec(),
        }
    }
}

/// Where the signature was put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    Header(HeaderName),
    /// A query parameter: the request's target changed.
    Query(String),
    /// A field of the form body: the body changed.
    Form(String),
    /// A field of the JSON body, by pointer: the body changed.
    Json(String),
}

impl Placement {
    /// Whether the body now differs from the one given.
    pub fn in_body(&self) -> bool {
        matches!(self, Placement::Form(_) | Placement::Json(_))
    }
}

/// A signed request, and what signing added to it.
#[derive(Clone, Debug)]
pub struct Signed {
    pub request: Outgoing,
    /// The headers signing set, in order: the form Content-Type, a fresh timestamp, the
    /// signature header.
    pub set: Vec<HeaderName>,
    pub placed: Placement,
}

/// What signing adds before the signature: headers, and the entries of a structured
/// signature header (Stripe's `t=`).
struct Stamp {
    headers: Vec<(HeaderName, HeaderValue)>,
    entries: Vec<(String, String)>,
}

impl Scheme {
    /// Signs `request` as a sender would at `now`: a fresh timestamp where the scheme reads
    /// one and the request has none, then the signature, computed with the first key (HMAC),
    /// `key` (a private key; the shared secret of a token or HS* JWT scheme), and placed where
    /// the scheme reads it.
    pub fn sign(
        &self,
        request: Outgoing,
        now: SystemTime,
        key: Option<&SigningKey>,
    ) -> Result<Signed, String> {
        if let Some(array) = &self.each_item {
            return self.sign_each(array, request, key);
        }
        let mut request = request;
        let stamp = self.stamp(&request, now)?;
        let mut set = Vec::new();
        for (name, value) in stamp.headers {
            request.headers.insert(name.clone(), value);
            set.push(name);
        }
        let mut entries = stamp.entries;
        let value = match (self.algorithm, key) {
            (Algorithm::Jwt, Some(SigningKey::Jwt(signer))) => {
                let spec = self.jwt.as_ref().ok_or("a JWT scheme without its `jwt:`")?;
                jwt::token(spec, signer, &request.body, now)?
            }
            (Algorithm::Jwt, _) => return Err(self.jwt_key_needed()),
            (Algorithm::Token, Some(SigningKey::Secret(secret))) => self.token_text(secret)?,
            (Algorithm::Token, _) => {
                return Err("a token scheme sends its secret; none was given".into())
            }
            _ => {
                let raw = self.compute(&request, &entries, key, &JsonBody::default())?;
                self.signature.encodings[0].encode(&raw)
            }
        };
        let value = self.signature_value(value, &mut entries);
        let placed = place(&self.signature.source, &mut request, &value)?;
        set.extend(self.json_content_type(&mut request));
        if let Placement::Header(name) = &placed {
            set.push(name.clone());
        }
        Ok(Signed {
            request,
            set,
            placed,
        })
    }

    /// The private key in `text` for this scheme: Ed25519 or P-256 (`SigningKey::parse`),
    /// or the PEM private key of an RS*, PS*, ES* or EdDSA JWT route.
    pub fn private_key(&self, text: &str) -> Result<SigningKey, String> {
        match &self.jwt {
            Some(spec) => jwt::JwtSigner::from_pem(spec, text).map(SigningKey::Jwt),
            None => SigningKey::parse(self.algorithm, text),
        }
    }

    /// The signing key made of the route's shared secret, for the schemes that need it given
    /// (a token, an HS* JWT); `None` for the others.
    pub fn secret_key(&self, secret: &[u8]) -> Option<Result<SigningKey, String>> {
        match (&self.jwt, self.algorithm) {
            (Some(spec), _) if jwt::Family::of_spec(spec) == jwt::Family::Hmac => {
                Some(jwt::JwtSigner::secret(spec, secret).map(SigningKey::Jwt))
            }
            (None, Algorithm::Token) => Some(Ok(SigningKey::Secret(secret.to_vec()))),
            _ => None,
        }
    }

    fn jwt_key_needed(&self) -> String {
        match &self.jwt {
            Some(spec) if jwt::Family::of_spec(spec) != jwt::Family::Hmac => {
                "this route's JWTs are signed with a private key: give it (PEM) with --private-key"
                    .into()
            }
            _ => "this route's JWTs are signed with its secret; none was given".into(),
        }
    }

    /// A shared token as the scheme reads it: its bytes in the first encoding.
    fn token_text(&self, secret: &[u8]) -> Result<String, String> {
        let encoding = self.signature.encodings[0];
        if encoding == super::Encoding::Raw && std::str::from_utf8(secret).is_err() {
            return Err(
                "the secret is not text, and the scheme sends it as it is (encoding raw)".into(),
            );
        }
        Ok(encoding.encode(secret))
    }

    /// An `each:` scheme (Adyen): every item of the array signed on its own, over its own
    /// fields, the signature put into the item; nothing else in the body changes.
    fn sign_each(
        &self,
        array: &str,
        request: Outgoing,
        key: Option<&SigningKey>,
    ) -> Result<Signed, String> {
        let SignatureSource::Json(field) = &self.signature.source else {
            return Err("each item's signature goes in a JSON field of the item".into());
        };
        if self.timestamp.is_some() || matches!(self.algorithm, Algorithm::Jwt | Algorithm::Token) {
            return Err("`sign` signs each item with a MAC or a private key, no timestamp".into());
        }
        let doc = json::parse_strict(&request.body).map_err(|e| {
            format!("the items to sign are in {array}, and the body is not strict JSON: {e}")
        })?;
        let items = match doc.pointer(array) {
            Some(serde_json::Value::Array(items)) if !items.is_empty() => items,
            _ => {
                return Err(format!(
                    "the body has no JSON array {array} with items to sign"
                ))
            }
        };
        let mut request = request;
        let set = self.json_content_type(&mut request).into_iter().collect();
        for (i, item) in items.iter().enumerate() {
            let scoped = JsonBody::of(item.clone());
            let raw = self.compute(&request, &[], key, &scoped)?;
            let value = self.signature.encodings[0].encode(&raw);
            request.body = json::with_field(&request.body, &format!("{array}/{i}{field}"), &value)?;
        }
        Ok(Signed {
            request,
            set,
            placed: Placement::Json(format!("{array}/*{field}")),
        })
    }

    /// A fields-only scheme reading JSON takes only a JSON content type (`fields_only.rs`):
    /// set when the request has none, as the sender sends it.
    fn json_content_type(&self, request: &mut Outgoing) -> Option<HeaderName> {
        if self.body_signed || !self.reads_json() || request.headers.contains_key(CONTENT_TYPE) {
            return None;
        }
        request
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Some(CONTENT_TYPE)
    }

    /// The MAC or signature over the message, with the first key or `key`; JSON parts read
    /// from `json` when it holds a value (one item of an `each:` array), else from the body.
    fn compute(
        &self,
        request: &Outgoing,
        entries: &[(String, String)],
        key: Option<&SigningKey>,
        json: &JsonBody,
    ) -> Result<Vec<u8>, String> {
        let header = Found {
            candidates: Vec::new(),
            entries: entries
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        };
        let body = crate::body::RawBody::from(bytes::Bytes::copy_from_slice(&request.body));
        let req = RequestView {
            method: &request.method,
            headers: &request.headers,
            body: &body,
            path_and_query: &request.path_and_query,
            json,
        };
        let given = |e: super::VerifyError| format!("{e}: pass it with --header 'NAME: VALUE'");
        match (&self.keys, key) {
            (Keys::Hmac(keys), _) => {
                let mut mac = keys.first().ok_or("the route has no secret")?.clone();
                self.feed(&req, &header, &mut |b| mac.update(b))
                    .map_err(given)?;
                Ok(mac.finalize())
            }
            (Keys::Ed25519(_) | Keys::P256(_), Some(key)) => {
                let message = self.message_bytes(&req, &header).map_err(given)?;
                key.sign(&message)
                    .ok_or_else(|| "not an Ed25519 or P-256 private key".to_string())
            }
            _ => Err(format!(
                "{} verifies with public keys; signing needs the private key (--private-key)",
                self.algorithm.name()
            )),
        }
    }

    /// The signature's text as a sender writes it: after the prefix, among the entries, or
    /// after the list's first item.
    fn signature_value(&self, encoded: String, entries: &mut Vec<(String, String)>) -> String {
        match (&self.signature.entries, &self.signature.list) {
            (_, Some(list)) => {
                let first = entries
                    .iter()
                    .find(|(k, _)| *k == list.first)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or_default();
                format!("{first}{}{encoded}", list.separator)
            }
            (None, None) => format!("{}{}", self.signature.prefix, encoded),
            (Some(e), None) => {
                entries.push((e.key.clone(), encoded));
                entries
                    .iter()
                    .map(|(k, v)| format!("{k}{}{v}", e.assign))
                    .collect::<Vec<_>>()
                    .join(&e.separator)
            }
        }
    }

    /// What goes on the request before it is signed: the form Content-Type when the scheme
    /// reads a form field and the request has none (the gateway reads form fields only
    /// from a form), and a fresh timestamp: a header the request lacks, or an entry of the
    /// signature header.
    fn stamp(&self, request: &Outgoing, now: SystemTime) -> Result<Stamp, String> {
        let mut stamp = Stamp {
            headers: Vec::new(),
            entries: Vec::new(),
        };
        let reads_form = matches!(self.signature.source, SignatureSource::Form(_))
            || self.parts().any(|p| matches!(p, super::Part::Form(_)));
        if reads_form && !request.headers.contains_key(CONTENT_TYPE) {
            let form = HeaderValue::from_static("application/x-www-form-urlencoded");
            stamp.headers.push((CONTENT_TYPE, form));
        }
        let Some(ts) = &self.timestamp else {
            return Ok(stamp);
        };
        let value = format_timestamp(now, ts.unit)?;
        match &ts.source {
            TimestampSource::Header(name) if !request.headers.contains_key(name) => {
                let value = HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
                stamp.headers.push((name.clone(), value));
            }
            TimestampSource::SignatureEntry(key) => stamp.entries.push((key.clone(), value)),
            _ => {}
        }
        Ok(stamp)
    }
}

/// Puts the signature's text where the scheme reads it. A query parameter, form field or
/// JSON field already present is an error: the gateway would read two signatures, or the
/// sender's own.
fn place(
    source: &SignatureSource,
    request: &mut Outgoing,
    value: &str,
) -> Result<Placement, String> {
    let encoded = || form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    match source {
        SignatureSource::Header { name, .. } => {
            let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            request.headers.insert(name.clone(), value);
            Ok(Placement::Header(name.clone()))
        }
        SignatureSource::EachHeader(names) => {
            let name = names.first().ok_or("no signature header")?;
            let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            request.headers.insert(name.clone(), value);
            Ok(Placement::Header(name.clone()))
        }
        SignatureSource::Query(name) => {
            let query = params::query(&request.path_and_query);
            if params::param(query.as_bytes(), name) != Param::Absent {
                return Err(format!(
                    "the path already has the query parameter {name} the signature goes in"
                ));
            }
            let sep = if request.path_and_query.contains('?') {
                "&"
            } else {
                "?"
            };
            request.path_and_query += &format!("{sep}{name}={}", encoded());
            Ok(Placement::Query(name.clone()))
        }
        SignatureSource::Form(name) => {
            if !is_form(&request.headers) {
                return Err(format!(
                    "the signature goes in the form field {name}, but the Content-Type given \
                     is not application/x-www-form-urlencoded"
                ));
            }
            if params::param(&request.body, name) != Param::Absent {
                return Err(format!("the body already has the form field {name}"));
            }
            let sep = if request.body.is_empty() { "" } else { "&" };
            let field = format!("{sep}{}={}", encoded_name(name), encoded());
            request.body.extend_from_slice(field.as_bytes());
            Ok(Placement::Form(name.clone()))
        }
        SignatureSource::Json(pointer) => {
            request.body = json::with_field(&request.body, pointer, value)?;
            Ok(Placement::Json(pointer.clone()))
        }
        // The same value in every item (Graph's clientState of each notification).
        SignatureSource::JsonEach { array, field } => {
            let items = json::array_len(&request.body, array).unwrap_or(0);
            if items == 0 {
                return Err(format!(
                    "the signature goes in {field} of every item of the JSON array {array}, \
                     and the body has no such array with items"
                ));
            }
            for i in 0..items {
                request.body =
                    json::with_field(&request.body, &format!("{array}/{i}{field}"), value)?;
            }
            Ok(Placement::Json(format!("{array}/*{field}")))
        }
        SignatureSource::Body => Err(
            "the whole body is the sender's token (its claims are the event): sign cannot \
             write it around a body"
                .into(),
        ),
    }
}

fn encoded_name(name: &str) -> String {
    form_urlencoded::byte_serialize(name.as_bytes()).collect()
}

/// `now` written in `unit`, as a sender would; an error for a clock RFC 3339 cannot write
/// (after the year 9999: `to_string` would panic on humantime's failing `Display`).
fn format_timestamp(now: SystemTime, unit: TimestampUnit) -> Result<String, String> {
    use std::fmt::Write as _;
    let since = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Ok(match unit {
        TimestampUnit::Seconds => since.as_secs().to_string(),
        TimestampUnit::Milliseconds => since.as_millis().to_string(),
        TimestampUnit::Rfc3339 => {
            let mut text = String::new();
            write!(text, "{}", humantime::format_rfc3339_seconds(now))
                .map_err(|_| "the clock is past what RFC 3339 can write".to_string())?;
            text
        }
        TimestampUnit::Rfc1123 => {
            let mut text = String::new();
            write!(text, "{}", httpdate::HttpDate::from(now))
                .map_err(|_| "the clock is past what an HTTP date can write".to_string())?;
            text
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::body::RawBody;
    use crate::config::compile::compile_scheme;

    fn scheme(yaml: &str) -> Scheme {
        let v = serde_yaml::from_str(yaml).expect("a verify block");
        compile_scheme(v, "t", Path::new("."), &|_| Some("s3cret".into()), None)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// Signs a POST of `body` to `/h` at `now`, with the secret where the scheme needs it.
    fn sign(s: &Scheme, body: &str, now: SystemTime) -> Result<Signed, String> {
        let key = s.secret_key(b"s3cret").transpose()?;
        s.sign(
            Outgoing::post("/h", HeaderMap::new(), body.as_bytes()),
            now,
            key.as_ref(),
        )
    }

    fn verify(
        s: &Scheme,
        out: &Outgoing,
        now: SystemTime,
    ) -> Result<usize, super::super::VerifyError> {
        let body = RawBody::from(bytes::Bytes::copy_from_slice(&out.body));
        let json = JsonBody::default();
        let view = RequestView {
            method: &out.method,
            headers: &out.headers,
            body: &body,
            path_and_query: &out.path_and_query,
            json: &json,
        };
        s.verify(&view, now).map(|v| v.key_index)
    }

    #[test]
    fn a_shared_token_is_sent_as_the_scheme_reads_it_wherever_it_goes() {
        let now = SystemTime::now();
        let basic = scheme(
            "{ algorithm: token, signature: { header: authorization, prefix: 'Basic ', encoding: base64 }, message: [], secret: '${S}' }",
        );
        let signed = sign(&basic, "{}", now).unwrap();
        assert_eq!(signed.request.headers["authorization"], "Basic czNjcmV0");
        assert_eq!(verify(&basic, &signed.request, now), Ok(0));
        let query = scheme(
            "{ algorithm: token, signature: { query: token }, message: [], secret: '${S}' }",
        );
        let signed = sign(&query, "{}", now).unwrap();
        assert_eq!(signed.placed, Placement::Query("token".into()));
        assert_eq!(signed.request.path_and_query, "/h?token=s3cret");
        assert_eq!(verify(&query, &signed.request, now), Ok(0));
        // Without the secret there is nothing to send.
        let e = query
            .sign(Outgoing::post("/h", HeaderMap::new(), b"{}"), now, None)
            .unwrap_err();
        assert!(e.contains("none was given"), "{e}");
    }

    #[test]
    fn a_signature_in_a_json_field_leaves_the_signed_fields_as_they_were() {
        // Mailgun's shape: the signature beside the fields it signs, in the body.
        let s = scheme(
            "{ signature: { json: /signature/signature }, message: [{ json: /signature/timestamp }, { json: /signature/token }], body_signed: false, secret: '${S}' }",
        );
        let body = r#"{"signature": {"timestamp": "1529006854", "token": "a8ce0edb"}, "event-data": {"n": 1.50}}"#;
        let now = SystemTime::now();
        let signed = sign(&s, body, now).unwrap();
        assert_eq!(
            signed.placed,
            Placement::Json("/signature/signature".into())
        );
        let sent = String::from_utf8(signed.request.body.clone()).unwrap();
        assert!(
            sent.starts_with(r#"{"signature": {"signature":""#)
                && sent.ends_with(r#"","timestamp": "1529006854", "token": "a8ce0edb"}, "event-data": {"n": 1.50}}"#),
            "{sent}"
        );
        assert_eq!(verify(&s, &signed.request, now), Ok(0));
    }

    #[test]
    fn a_signature_in_a_form_field_comes_with_the_form_content_type() {
        let s = scheme(
            "{ signature: { form: sig }, message: [{ form: payload }], body_signed: false, secret: '${S}' }",
        );
        let now = SystemTime::now();
        let signed = sign(&s, "payload=a%2Bb", now).unwrap();
        assert_eq!(signed.set, [CONTENT_TYPE]);
        assert!(signed.request.body.starts_with(b"payload=a%2Bb&sig="));
        assert_eq!(verify(&s, &signed.request, now), Ok(0));
    }

    #[test]
    fn a_jwt_carries_the_claims_the_route_checks() {
        let now = SystemTime::now();
        let s = scheme(
            "{ algorithm: jwt, signature: { header: authorization, prefix: 'Bearer ' }, jwt: { algorithms: [HS512], issuer: me, max_age: 5m, require: [nbf], body_sha256: { claim: h, encoding: base64url } }, secret: '${S}' }",
        );
        let signed = sign(&s, r#"{"a":1}"#, now).unwrap();
        let value = signed.request.headers["authorization"].to_str().unwrap();
        let token = value.strip_prefix("Bearer ").unwrap();
        let claims: serde_json::Value = {
            use base64::Engine as _;
            let payload = token.split('.').nth(1).unwrap();
            serde_json::from_slice(&super::super::BASE64URL.decode(payload).unwrap()).unwrap()
        };
        let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(claims["iss"], "me");
        assert_eq!(claims["iat"], secs);
        assert_eq!(claims["nbf"], secs);
        assert_eq!(claims["exp"], secs + 300);
        assert_eq!(verify(&s, &signed.request, now), Ok(0));
        // A required claim with nothing to derive it from is an error that says what to set.
        let s = scheme(
            "{ algorithm: jwt, signature: { header: x-jwt }, jwt: { algorithms: [HS256], require: [aud] }, body_signed: false, secret: '${S}' }",
        );
        let e = sign(&s, "{}", now).unwrap_err();
        assert!(e.contains("`jwt.audience`"), "{e}");
    }

    #[test]
    fn the_method_signed_is_the_one_sent() {
        let s = scheme(
            "{ signature: { header: x-sig }, message: [method, { literal: ' ' }, path, { literal: ' ' }, body], secret: '${S}' }",
        );
        let now = SystemTime::now();
        let mut out = Outgoing::post("/h/a", HeaderMap::new(), b"x");
        out.method = Method::PUT;
        let signed = s.sign(out, now, None).unwrap();
        assert_eq!(verify(&s, &signed.request, now), Ok(0));
        let mut as_post = signed.request;
        as_post.method = Method::POST;
        assert!(verify(&s, &as_post, now).is_err());
    }

    #[test]
    fn a_jwt_route_with_public_keys_takes_tokens_made_with_their_private_halves() {
        use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePublicKey as _};
        let now = SystemTime::now();
        for (alg, algorithm) in [
            ("EdDSA", Algorithm::Ed25519),
            ("ES256", Algorithm::EcdsaP256Sha256),
        ] {
            let private = SigningKey::generate(algorithm).unwrap();
            let public = match &private {
                SigningKey::Ed25519(k) => k.verifying_key().to_public_key_pem(LineEnding::LF),
                SigningKey::P256(k) => k.verifying_key().to_public_key_pem(LineEnding::LF),
                _ => unreachable!(),
            }
            .unwrap();
            let yaml = format!(
                "{{ algorithm: jwt, signature: {{ header: x-jwt }}, jwt: {{ algorithms: [{alg}], body_sha256: {{ claim: sha256 }} }}, key_encoding: raw, public_key: '${{K}}' }}"
            );
            let v = serde_yaml::from_str(&yaml).unwrap();
            let s = compile_scheme(v, "t", Path::new("."), &move |_| Some(public.clone()), None)
                .unwrap_or_else(|e| panic!("{e:?}"));
            let key = s.private_key(&private.to_pem().unwrap()).unwrap();
            assert!(key.matches(&s.keys), "{alg}");
            let signed = s
                .sign(
                    Outgoing::post("/h", HeaderMap::new(), b"{}"),
                    now,
                    Some(&key),
                )
                .unwrap();
            assert_eq!(verify(&s, &signed.request, now), Ok(0), "{alg}");
            let other = SigningKey::generate(algorithm).unwrap().to_pem().unwrap();
            assert!(!s.private_key(&other).unwrap().matches(&s.keys), "{alg}");
            // An HS* secret is no key for it.
            assert!(s.secret_key(b"s3cret").is_none());
        }
    }
}
