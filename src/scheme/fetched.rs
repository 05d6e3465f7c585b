//! Keys a scheme fetches instead of holding (issue 23). Either the request names the URL of
//! its signing certificate (AWS SNS's `SigningCertURL` in the body, PayPal's
//! `PAYPAL-CERT-URL` header), which must be one of the hosts the scheme pins (`pin.rs`), and
//! the scheme verifies with it once the certificate may sign (`certificate.rs`: valid now,
//! issued to one of the sender's names); or the route names an issuer's JWKS (Google's, an
//! OIDC issuer's) and a JWT's `kid` picks its key. A request never names a JWKS: a token's
//! `jku` or `x5u` is never read.
//!
//! The pure part lives here: where the URL is read, which hosts and certificate names are
//! accepted, and the fetched document as the scheme reads it ([`KeyDoc`]). Nothing here does
//! I/O; the pipeline fetches between [`FetchedKey::url`] and `Scheme::verify_with`.

use http::HeaderName;
use sha2::Digest as _;

use super::certificate::Certificate;
use super::jwt::{Family, JwtKey};
use super::pin::{HostPattern, KeyUrl, PathPattern};
use super::{RequestView, VerifyError};

/// Where a scheme's key comes from when it is fetched.
#[derive(Clone, Debug)]
pub struct FetchedKey {
    /// Where the key's URL is.
    pub from: KeyFrom,
    /// The hosts that URL may name (`sns.{region}.amazonaws.com`, `api.paypal.com`).
    pub hosts: Vec<HostPattern>,
    /// The paths a URL the request names may have (none: any), so that a request cannot
    /// make the gateway fetch every page of a pinned host.
    pub paths: Vec<PathPattern>,
    /// The DNS names the signing certificate must be issued to (one of them).
    pub names: Vec<String>,
    /// What the document is.
    pub format: DocFormat,
    /// How a signing certificate must chain to a trusted root.
    pub chain: ChainRule,
}

/// A signing certificate's chain to the key fetcher's trust roots: checked whenever the
/// document sends one; `required`, also for a certificate sent alone, through
/// `intermediates`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainRule {
    pub required: bool,
    /// DER intermediates the route gives.
    pub intermediates: Vec<Vec<u8>>,
}

impl ChainRule {
    /// Whether `cert`'s chain is checked.
    pub fn applies(&self, cert: &Certificate) -> bool {
        self.required || !cert.chain.is_empty()
    }
}

/// Where a key's URL is: in the request, or the route's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyFrom {
    Header(HeaderName),
    /// A JSON pointer into the body.
    Json(String),
    /// The route's (a JWKS).
    Url(KeyUrl),
    /// An OIDC issuer's discovery document (`/.well-known/openid-configuration`), whose
    /// `jwks_uri` is the JWKS: on one of the pinned hosts, and the document's `issuer` the
    /// route's.
    Discovery(KeyUrl),
    /// A sender's key API, asked for one key by its id with the route's credentials
    /// (Plaid's `/webhook_verification_key/get`).
    Api(KeyApi),
}

/// A key API, asked for one key by its id with the route's credentials: a `POST` of a JSON
/// object (the credentials and the key id, Plaid's), or, when the URL's path has a `{kid}`,
/// a `GET` of that path (eBay's `/public_key/{kid}`) with an OAuth token got first. The key,
/// a JWK or a PEM public key, is at `key_at` in the answer.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyApi {
    pub url: KeyUrl,
    /// The JSON object's fields, credentials among them: never shown. (`POST` only.)
    pub fields: Vec<(String, String)>,
    /// The field the key id goes in (`key_id`); `None` for a `GET` by path.
    pub kid_field: Option<String>,
    /// Where the key is in the answer (a JSON pointer, `/key`).
    pub key_at: String,
    /// The OAuth client-credentials grant whose token the API takes as `Bearer`.
    pub token: Option<std::sync::Arc<TokenGrant>>,
}

impl std::fmt::Debug for KeyApi {
    // Hand-written: the fields hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyApi")
            .field("url", &self.url)
            .field("fields", &self.fields.len())
            .field("kid_field", &self.kid_field)
            .field("key_at", &self.key_at)
            .field("token", &self.token)
            .finish()
    }
}

/// An OAuth 2.0 client-credentials grant (RFC 6749 §4.4): `POST` of
/// `grant_type=client_credentials&scope=..` to `url` with the client's id and secret as HTTP
/// Basic credentials; the answer's `access_token` is sent as `Bearer` until its `expires_in`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenGrant {
    pub url: KeyUrl,
    pub client_id: String,
    /// Never shown.
    pub client_secret: String,
    pub scope: String,
}

impl std::fmt::Debug for TokenGrant {
    // Hand-written: the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenGrant {
    /// The form posted: the grant type and the scope, form-urlencoded.
    pub fn form(&self) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", &self.scope)
            .finish()
            .into_bytes()
    }

    /// The `Authorization` header value: the client's id and secret, HTTP Basic (RFC 6749
    /// §2.3.1 form-encodes both first; the ids eBay issues need no encoding either way).
    pub fn basic(&self) -> String {
        use base64::Engine as _;
        let encode = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let pair = format!(
            "{}:{}",
            encode(&self.client_id),
            encode(&self.client_secret)
        );
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// What the gateway fetches for a request: a URL, and for a key API the body it posts and
/// the token it sends. The cache keeps one document per request, so one per key id for a
/// key API.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyRequest {
    pub url: KeyUrl,
    /// The key id asked for (a key API's).
    pub kid: Option<String>,
    /// The JSON body posted, credentials included: never shown.
    pub post: Option<Vec<u8>>,
    /// The grant whose token goes with the request (a key API's).
    pub token: Option<std::sync::Arc<TokenGrant>>,
}

impl std::fmt::Display for KeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kid {
            Some(kid) if self.post.is_some() => write!(f, "{} (key {kid:?})", self.url),
            _ => write!(f, "{}", self.url),
        }
    }
}

impl std::fmt::Debug for KeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRequest({self})")
    }
}

impl From<KeyUrl> for KeyRequest {
    fn from(url: KeyUrl) -> KeyRequest {
        KeyRequest {
            url,
            kid: None,
            post: None,
            token: None,
        }
    }
}

/// What a fetched document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DocFormat {
    /// A PEM signing certificate.
    Certificate,
    /// A JSON Web Key Set, of which keys of this family are taken.
    Jwks(Family),
    /// One JWK of this family, at a key API's `key_at`, not expired (`expired_at` null).
    ApiJwk(Family),
    /// One P-256 public key, a PEM `PUBLIC KEY` text at a key API's `key_at` (eBay's).
    ApiP256,
}

/// The most keys a JWKS may hold: an issuer publishes a few (the current and the next);
/// thousands would make every token try thousands.
pub const MAX_JWKS_KEYS: usize = 100;

impl KeyFrom {
    /// As a refusal says it: `header paypal-cert-url`, `JSON field /SigningCertURL`.
    pub fn describe(&self) -> String {
        match self {
            KeyFrom::Header(name) => format!("header {name}"),
            KeyFrom::Json(pointer) => format!("JSON field {pointer}"),
            KeyFrom::Url(url) => format!("url {url}"),
            KeyFrom::Discovery(url) => format!("discovery {url}"),
            KeyFrom::Api(api) => format!("api {}", api.url),
        }
    }
}

impl FetchedKey {
    /// The JWKS an OIDC discovery document names: its `jwks_uri`, which must be on one of
    /// the pinned hosts; and its `issuer`, which must be `issuer` when the route names one
    /// (OIDC Discovery §4.3: the document is the issuer's own).
    pub fn jwks_uri(&self, doc: &[u8], issuer: Option<&str>) -> Result<KeyUrl, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(doc).map_err(|e| format!("not a discovery document: {e}"))?;
        let text = |field: &str| doc.get(field).and_then(serde_json::Value::as_str);
        if let Some(issuer) = issuer {
            if text("issuer") != Some(issuer) {
                return Err("the discovery document is another issuer's".into());
            }
        }
        let uri = text("jwks_uri").ok_or("the discovery document has no jwks_uri")?;
        KeyUrl::parse(uri, &self.hosts).map_err(|e| format!("jwks_uri {uri}: {e}"))
    }

    /// What to fetch for a request whose token names `kid`: the URL alone, or for a key API
    /// the URL and the body that asks for that key (no key id: nothing can be asked).
    pub fn request(&self, url: KeyUrl, kid: Option<&str>) -> Result<KeyRequest, VerifyError> {
        let KeyFrom::Api(api) = &self.from else {
            return Ok(url.into());
        };
        let kid = kid.ok_or_else(|| VerifyError::MalformedSignature("no key id".into()))?;
        let Some(kid_field) = &api.kid_field else {
            let url = url.with_kid(kid).ok_or_else(|| {
                VerifyError::MalformedSignature(
                    "a key id of other characters than letters, digits, `-`, `_` and `.`".into(),
                )
            })?;
            return Ok(KeyRequest {
                url,
                kid: Some(kid.to_owned()),
                post: None,
                token: api.token.clone(),
            });
        };
        let mut body = serde_json::Map::new();
        for (name, value) in &api.fields {
            body.insert(name.clone(), value.clone().into());
        }
        body.insert(kid_field.clone(), kid.into());
        Ok(KeyRequest {
            url,
            kid: Some(kid.to_owned()),
            post: Some(serde_json::Value::Object(body).to_string().into_bytes()),
            token: api.token.clone(),
        })
    }

    /// The key URL `req` names, if it is one the scheme pins. A missing, repeated or unpinned
    /// URL is refused (401): nothing is fetched for it.
    pub fn url(&self, req: &RequestView<'_>) -> Result<KeyUrl, VerifyError> {
        let refused =
            |why: String| VerifyError::KeyUrlRefused(format!("{}: {why}", self.from.describe()));
        let text = match &self.from {
            KeyFrom::Header(name) => {
                let mut values = req.headers.get_all(name).iter();
                let first = values.next().ok_or_else(|| refused("missing".into()))?;
                if values.next().is_some() {
                    return Err(VerifyError::RepeatedHeader(name.clone()));
                }
                first
                    .to_str()
                    .map_err(|_| refused("not text".into()))?
                    .to_owned()
            }
            KeyFrom::Json(pointer) => match req.json()?.pointer(pointer) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(_) => return Err(refused("not a string".into())),
                None => return Err(refused("missing".into())),
            },
            KeyFrom::Url(url) | KeyFrom::Discovery(url) => return Ok(url.clone()),
            KeyFrom::Api(api) => return Ok(api.url.clone()),
        };
        KeyUrl::parse_shaped(&text, &self.hosts, &self.paths).map_err(|e| refused(e.to_string()))
    }
}

/// A fetched document as a scheme reads it.
#[derive(Clone)]
pub enum KeyDoc {
    /// A PEM signing certificate (its chain, if the document holds one, follows it unread).
    Certificate(Certificate),
    /// The keys of a JWKS of the route's family, each with its `kid`.
    Jwks(Vec<(Option<String>, JwtKey)>),
    /// The one P-256 public key a key API gave for the key id asked.
    P256(p256::ecdsa::VerifyingKey),
}

impl std::fmt::Debug for KeyDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl KeyDoc {
    /// A document of the kind `key` fetches.
    pub fn parse(key: &FetchedKey, bytes: &[u8]) -> Result<KeyDoc, String> {
        match key.format {
            DocFormat::Certificate => Certificate::from_pem(bytes).map(KeyDoc::Certificate),
            DocFormat::Jwks(family) => jwks(bytes, family).map(KeyDoc::Jwks),
            DocFormat::ApiJwk(family) => api_jwk(key, bytes, family).map(KeyDoc::Jwks),
            DocFormat::ApiP256 => api_p256(key, bytes).map(KeyDoc::P256),
        }
    }

    /// Whether the document has a key with this `kid` (any key, for a certificate).
    pub fn has(&self, kid: &str) -> bool {
        match self {
            // Fetched for this one request's key id (a key API's), or not keyed by one.
            KeyDoc::Certificate(_) | KeyDoc::P256(_) => true,
            KeyDoc::Jwks(keys) => keys.iter().any(|(k, _)| k.as_deref() == Some(kid)),
        }
    }

    /// What an operator is shown of it (the admin listener, `hookgate explain`).
    pub fn describe(&self) -> String {
        match self {
            KeyDoc::Certificate(c) => format!(
                "certificate for {}, valid until {} (unix), SHA-256 {}",
                c.names.join(", "),
                c.not_after,
                c.fingerprint_text()
            ),
            KeyDoc::Jwks(keys) => {
                let kids: Vec<&str> = keys.iter().filter_map(|(k, _)| k.as_deref()).collect();
                format!("JWKS with {} keys ({})", keys.len(), kids.join(", "))
            }
            KeyDoc::P256(key) => {
                // As the admin listener's `/keys` shows it: SHA-256 of the key's DER.
                use p256::pkcs8::EncodePublicKey as _;
                let der = key.to_public_key_der().map(|d| d.as_bytes().to_vec());
                let digest = sha2::Sha256::digest(der.unwrap_or_default());
                format!("P-256 public key, SHA-256 {}", hex::encode(digest))
            }
        }
    }
}

/// The one key a key API answered, at its `key_at`: a JWK of `family` whose `expired_at` is
/// null (Plaid marks a retired key so; it must no longer verify, so it gives no key).
fn api_jwk(
    key: &FetchedKey,
    bytes: &[u8],
    family: Family,
) -> Result<Vec<(Option<String>, JwtKey)>, String> {
    let KeyFrom::Api(api) = &key.from else {
        return Err("not a key API".into());
    };
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let jwk = doc
        .pointer(&api.key_at)
        .ok_or_else(|| format!("no key at {}", api.key_at))?;
    // A retired key verifies nothing: the set holds no key for its id.
    if jwk.get("expired_at").is_some_and(|e| !e.is_null()) {
        return Ok(Vec::new());
    }
    let parsed: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    let kid = parsed.common.key_id.clone();
    let key = JwtKey::from_jwk(family, &parsed).ok_or(format!("not a {family:?} key"))?;
    Ok(vec![(kid, key)])
}

/// The one key a key API answered, at its `key_at`: a P-256 public key as PEM text. eBay
/// writes it on one line (`-----BEGIN PUBLIC KEY-----MFkw...-----END PUBLIC KEY-----`), as
/// its SDK reads it; the base64 between the armour lines is taken whatever the line breaks.
fn api_p256(key: &FetchedKey, bytes: &[u8]) -> Result<p256::ecdsa::VerifyingKey, String> {
    use p256::pkcs8::DecodePublicKey as _;
    let KeyFrom::Api(api) = &key.from else {
        return Err("not a key API".into());
    };
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let pem = doc
        .pointer(&api.key_at)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("no PEM text at {}", api.key_at))?;
    let der = public_key_der(pem)?;
    p256::ecdsa::VerifyingKey::from_public_key_der(&der)
        .map_err(|e| format!("not a P-256 public key: {e}"))
}

/// The DER of a PEM `PUBLIC KEY` text, whatever its line breaks: eBay writes it on one line
/// (`-----BEGIN PUBLIC KEY-----MFkw...-----END PUBLIC KEY-----`), as its SDK reads it.
pub fn public_key_der(pem: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let inner = pem
        .trim()
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|p| p.strip_suffix("-----END PUBLIC KEY-----"))
        .ok_or("not a PEM public key")?;
    let b64: String = inner.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("not a PEM public key: {e}"))
}

/// The keys of a JWKS that are of `family`, each with its `kid`; a key of another type, or one
/// that does not parse, is left out. More than [`MAX_JWKS_KEYS`] entries, or none of the
/// family, is not a key set for this route.
fn jwks(bytes: &[u8], family: Family) -> Result<Vec<(Option<String>, JwtKey)>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("not a JWKS: no `keys` array")?;
    if entries.len() > MAX_JWKS_KEYS {
        return Err(format!(
            "the JWKS holds {} keys, more than {MAX_JWKS_KEYS}",
            entries.len()
        ));
    }
    let keys: Vec<(Option<String>, JwtKey)> = entries
        .iter()
        .filter_map(|e| {
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(e.clone()).ok()?;
            let key = JwtKey::from_jwk(family, &jwk)?;
            Some((jwk.common.key_id.clone(), key))
        })
        .collect();
    if keys.is_empty() {
        return Err(format!("the JWKS holds no {family:?} key"));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::RawBody;
    use crate::scheme::JsonBody;

    fn view_of<'a>(
        headers: &'a http::HeaderMap,
        body: &'a RawBody,
        json: &'a JsonBody,
    ) -> RequestView<'a> {
        RequestView {
            method: &http::Method::POST,
            headers,
            body,
            path_and_query: "/",
            json,
        }
    }

    fn sns() -> FetchedKey {
        FetchedKey {
            from: KeyFrom::Json("/SigningCertURL".into()),
            hosts: vec![HostPattern::parse("sns.{region}.amazonaws.com").unwrap()],
            paths: vec![PathPattern::parse("/SimpleNotificationService-*.pem").unwrap()],
            names: vec!["sns.amazonaws.com".into()],
            format: DocFormat::Certificate,
            chain: ChainRule::default(),
        }
    }

    #[test]
    fn the_key_url_is_read_where_the_sender_puts_it_and_must_be_pinned() {
        let headers = http::HeaderMap::new();
        let url = |cert_url: &str| {
            let body = RawBody::from(
                serde_json::json!({ "SigningCertURL": cert_url })
                    .to_string()
                    .into_bytes(),
            );
            let json = JsonBody::default();
            sns().url(&view_of(&headers, &body, &json))
        };
        let good = url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem");
        // A page of the pinned host that is not a signing certificate's.
        assert!(matches!(
            url("https://sns.eu-west-1.amazonaws.com/?Action=Subscribe"),
            Err(VerifyError::KeyUrlRefused(_))
        ));
        assert_eq!(
            good.unwrap().to_string(),
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem"
        );
        for hostile in [
            "http://sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com.evil.com/x.pem",
            "https://evil.com@sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
            "https://169.254.169.254/latest/meta-data",
            "https://sns.xn--eu-wst-1-x.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com/../x.pem",
        ] {
            assert!(
                matches!(url(hostile), Err(VerifyError::KeyUrlRefused(_))),
                "{hostile}"
            );
        }
        let body = RawBody::from(b"{}".to_vec());
        let json = JsonBody::default();
        assert!(matches!(
            sns().url(&view_of(&headers, &body, &json)),
            Err(VerifyError::KeyUrlRefused(why)) if why.contains("missing")
        ));
    }

    #[test]
    fn a_key_url_header_is_read_once() {
        let paypal = FetchedKey {
            from: KeyFrom::Header(HeaderName::from_static("paypal-cert-url")),
            hosts: vec![HostPattern::parse("api.paypal.com").unwrap()],
            paths: vec![],
            names: vec![],
            format: DocFormat::Certificate,
            chain: ChainRule::default(),
        };
        let body = RawBody::from(Vec::new());
        let json = JsonBody::default();
        let mut headers = http::HeaderMap::new();
        let cert = "https://api.paypal.com/v1/notifications/certs/CERT-1";
        headers.append("paypal-cert-url", cert.parse().unwrap());
        assert!(paypal.url(&view_of(&headers, &body, &json)).is_ok());
        headers.append("paypal-cert-url", cert.parse().unwrap());
        assert!(matches!(
            paypal.url(&view_of(&headers, &body, &json)),
            Err(VerifyError::RepeatedHeader(_))
        ));
    }
}
