//! `hookgate sign`: the headers a real sender would attach to a body for a route, built from
//! the compiled configuration (`config::Gateway`) and the route's scheme
//! ([`Scheme::sign`](crate::scheme::Scheme::sign)), so that a deployment can be tested with
//! curl. `main.rs` reads the body and key files and prints; this module decides what to send
//! and what to tell the operator about it ([`Note`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use http::header::{InvalidHeaderName, InvalidHeaderValue, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::model::routes::PathPattern;
use crate::model::{Gateway, KeySource, Route};
use crate::scheme::{Part, Scheme, SigningKey, TimestampSource};

/// A route with a signature scheme, ready to sign requests for it.
pub struct Sender<'g> {
    route: &'g Route,
    scheme: &'g Scheme,
}

/// What to sign, as given on the command line.
pub struct Request<'a> {
    pub body: &'a [u8],
    /// Extra `NAME: VALUE` headers that are part of the signed message (e.g. webhook-id).
    pub headers: &'a [String],
    /// The path and query the sender posts to; default: the route's own.
    pub path: Option<&'a str>,
    /// The private key file (named in messages) and its text, for asymmetric schemes.
    pub private_key: Option<(&'a Path, &'a str)>,
}

/// Something the operator should know about the request being signed (printed on stderr).
#[derive(Debug, PartialEq, Eq)]
pub enum Note {
    /// A non-form body signed through its SHA-256 in the URL (Twilio's `bodySHA256`): the
    /// sender must post to this target.
    BodyHashInUrl { target: String },
    /// The timestamp is part of the body, so an old body file no longer verifies.
    TimestampInBody { pointer: String },
    /// The route deduplicates by a key this request lacks: the gateway will refuse it.
    ReplayKeyMissing {
        route: String,
        what: String,
        how: &'static str,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::BodyHashInUrl { target } => write!(
                f,
                "note: a non-form body is signed through its SHA-256 in the URL: post to {target}"
            ),
            Note::TimestampInBody { pointer } => write!(
                f,
                "note: the timestamp is read from the body at {pointer}; it must be recent"
            ),
            Note::ReplayKeyMissing { route, what, how } => write!(
                f,
                "warning: route `{route}` deduplicates by its {what}, which this request lacks: \
                 the gateway will refuse it (replay_key_missing); {how}"
            ),
        }
    }
}

/// Why no headers could be made.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("no route named `{route}`; routes: {}", routes.join(", "))]
    UnknownRoute { route: String, routes: Vec<String> },
    #[error("route `{route}` verifies no signature (IP allowlist only): nothing to sign")]
    NothingToSign { route: String },
    #[error("{0}")]
    PrivateKey(String),
    /// A signature the route cannot verify would only mislead.
    #[error(
        "the private key in {} does not belong to any public key of route `{route}`",
        file.display()
    )]
    KeyNotOfRoute { file: PathBuf, route: String },
    #[error(
        "route `{route}` has a prefix path and its scheme signs the URL: give the request \
         path and query the sender posts to with --path"
    )]
    PrefixNeedsPath { route: String },
    #[error("`{0}` is not NAME: VALUE")]
    NotNameValue(String),
    #[error("bad header name in `{header}`")]
    HeaderName {
        header: String,
        source: InvalidHeaderName,
    },
    #[error("bad header value in `{header}`")]
    HeaderValue {
        header: String,
        source: InvalidHeaderValue,
    },
    #[error("{0}")]
    Scheme(String),
}

impl<'g> Sender<'g> {
    /// The route named `name`, if it has a scheme to sign with.
    pub fn for_route(gateway: &'g Gateway, name: &str) -> Result<Sender<'g>, SignError> {
        let Some(route) = gateway.routes.get(name) else {
            return Err(SignError::UnknownRoute {
                route: name.to_owned(),
                routes: gateway
                    .routes
                    .routes()
                    .iter()
                    .map(|r| r.name.clone())
                    .collect(),
            });
        };
        let Some(scheme) = &route.scheme else {
            return Err(SignError::NothingToSign {
                route: name.to_owned(),
            });
        };
        Ok(Sender { route, scheme })
    }

    /// The headers to send, given ones first, each once, in the order they were given or set.
    /// `notes` gets what the operator should know, even when signing then fails.
    pub fn sign(
        &self,
        request: &Request<'_>,
        now: SystemTime,
        notes: &mut Vec<Note>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let private_key = request
            .private_key
            .map(|(file, text)| self.signing_key(file, text))
            .transpose()?;
        let mut target = self.target(request.path)?;
        let mut headers = parse_headers(request.headers)?;
        let given: Vec<HeaderName> = headers.keys().cloned().collect();
        let mut set: Vec<HeaderName> = self.content_type(&mut headers, request.body);
        if let Some(hashed) = self.body_hash_in_url(&headers, request.body, &target) {
            target = hashed;
            notes.push(Note::BodyHashInUrl {
                target: target.clone(),
            });
        }
        set.extend(
            self.scheme
                .sign(
                    &mut headers,
                    request.body,
                    &target,
                    now,
                    private_key.as_ref(),
                )
                .map_err(SignError::Scheme)?,
        );
        if let Some(TimestampSource::JsonField(pointer)) =
            self.scheme.timestamp.as_ref().map(|t| &t.source)
        {
            notes.push(Note::TimestampInBody {
                pointer: pointer.clone(),
            });
        }
        notes.extend(self.replay_key_missing(&headers, request.body));
        Ok(given
            .iter()
            .chain(&set)
            .filter_map(|name| Some((name.clone(), headers.get(name)?.clone())))
            .collect())
    }

    /// The private key in `text`, if it belongs to one of the route's public keys.
    fn signing_key(&self, file: &Path, text: &str) -> Result<SigningKey, SignError> {
        let key = SigningKey::parse(self.scheme.algorithm, text).map_err(SignError::PrivateKey)?;
        if !key.matches(&self.scheme.keys) {
            return Err(SignError::KeyNotOfRoute {
                file: file.to_owned(),
                route: self.route.name.clone(),
            });
        }
        Ok(key)
    }

    /// The path the sender posts to: given, or the route's own exact path. Only URL-signed
    /// schemes need it; for the others any path under the route will do.
    fn target(&self, path: Option<&str>) -> Result<String, SignError> {
        let signs_url =
            self.scheme.message.contains(&Part::Url) || self.scheme.body_hash_param.is_some();
        match (path, &self.route.path) {
            (Some(p), _) => Ok(p.to_owned()),
            (None, PathPattern::Exact(p)) => Ok(p.clone()),
            (None, PathPattern::Prefix(base)) if !signs_url => Ok(format!("{base}/")),
            (None, PathPattern::Prefix(_)) => Err(SignError::PrefixNeedsPath {
                route: self.route.name.clone(),
            }),
        }
    }

    /// Twilio-style schemes sign a form body's parameters, or a JSON body through a SHA-256
    /// in the URL: which one the gateway checks depends on Content-Type, so `sign` fixes it
    /// (curl would otherwise send its form default with a JSON body, or none). The header it
    /// set, if any.
    fn content_type(&self, headers: &mut HeaderMap, body: &[u8]) -> Vec<HeaderName> {
        let form_scheme = self.scheme.message.contains(&Part::FormParamsSorted)
            || self.scheme.body_hash_param.is_some();
        if !form_scheme || headers.contains_key(CONTENT_TYPE) {
            return Vec::new();
        }
        let json = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| matches!(b, b'{' | b'['));
        let content_type = if json {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        vec![CONTENT_TYPE]
    }

    /// `target` with the body's SHA-256 in the scheme's query parameter, when a non-form body
    /// is signed that way and the target does not carry it yet.
    fn body_hash_in_url(&self, headers: &HeaderMap, body: &[u8], target: &str) -> Option<String> {
        let param = self.scheme.body_hash_param.as_ref()?;
        let is_form = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form || body.is_empty() || target.contains(&format!("{param}=")) {
            return None;
        }
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body));
        let sep = if target.contains('?') { '&' } else { '?' };
        Some(format!("{target}{sep}{param}={hash}"))
    }

    /// The gateway refuses a request without the route's replay key: say so now.
    fn replay_key_missing(&self, headers: &HeaderMap, body: &[u8]) -> Option<Note> {
        let replay = self.route.replay.as_ref()?;
        let raw = crate::body::RawBody::from(bytes::Bytes::copy_from_slice(body));
        let json = crate::scheme::JsonBody::default();
        let request = crate::scheme::RequestView {
            method: &http::Method::POST,
            headers,
            body: &raw,
            path_and_query: "/",
            json: &json,
        };
        // A body that is not strict JSON has no JSON key either.
        matches!(replay.key_bytes(&request, b"signature"), Ok(None) | Err(_)).then(|| {
            let (what, how) = match &replay.key {
                KeySource::Header(h) => (format!("header {}", h[0]), "add it (once) with --header"),
                KeySource::Json(p) => (format!("JSON field {p}"), "put it in the body"),
                KeySource::Signature => ("signature".into(), ""),
            };
            Note::ReplayKeyMissing {
                route: self.route.name.clone(),
                what,
                how,
            }
        })
    }
}

/// `NAME: VALUE` arguments as headers.
fn parse_headers(given: &[String]) -> Result<HeaderMap, SignError> {
    let mut headers = HeaderMap::new();
    for h in given {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| SignError::NotNameValue(h.clone()))?;
        headers.insert(
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|source| {
                SignError::HeaderName {
                    header: h.clone(),
                    source,
                }
            })?,
            HeaderValue::from_str(value.trim()).map_err(|source| SignError::HeaderValue {
                header: h.clone(),
                source,
            })?,
        );
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::Loaded;

    fn load(routes: &str) -> Loaded {
        let text = format!("listeners:\n  - addr: 127.0.0.1:0\nroutes:\n{routes}");
        let env = |name: &str| (name == "SECRET").then(|| "s3cret".to_owned());
        crate::config::compile::compile(&text, Path::new("."), &env)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn request<'a>(body: &'a [u8], headers: &'a [String], path: Option<&'a str>) -> Request<'a> {
        Request {
            body,
            headers,
            path,
            private_key: None,
        }
    }

    #[test]
    fn only_a_route_with_a_scheme_can_be_signed_for() {
        let loaded = load(
            "  - { name: gh, path: /gh, upstream: \"http://127.0.0.1:1\", verify: { preset: github, secret: \"${SECRET}\" } }\n\
             \x20 - { name: office, path: /office, upstream: \"http://127.0.0.1:1\", allow_ips: [10.0.0.0/8] }\n",
        );
        let unknown = Sender::for_route(&loaded.gateway, "nope").err().unwrap();
        assert_eq!(
            unknown.to_string(),
            "no route named `nope`; routes: gh, office"
        );
        let allowlist = Sender::for_route(&loaded.gateway, "office").err().unwrap();
        assert!(
            allowlist.to_string().contains("nothing to sign"),
            "{allowlist}"
        );
        assert!(Sender::for_route(&loaded.gateway, "gh").is_ok());
    }

    #[test]
    fn given_headers_come_first_then_the_signature_and_a_missing_replay_key_is_noted() {
        let loaded = load(
            "  - { name: gh, path: /gh/*, upstream: \"http://127.0.0.1:1\", verify: { preset: github, secret: \"${SECRET}\" }, replay: {} }\n",
        );
        let sender = Sender::for_route(&loaded.gateway, "gh").unwrap();
        let given = ["X-Trace: 1".to_owned()];
        let mut notes = Vec::new();
        let signed = sender
            .sign(&request(b"{}", &given, None), SystemTime::now(), &mut notes)
            .unwrap();
        let names: Vec<&str> = signed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-trace", "x-hub-signature-256"]);
        assert!(
            matches!(&notes[..], [Note::ReplayKeyMissing { what, .. }] if what == "header x-github-delivery"),
            "{notes:?}"
        );
        let bad = ["no colon".to_owned()];
        let e = sender
            .sign(&request(b"{}", &bad, None), SystemTime::now(), &mut notes)
            .unwrap_err();
        assert_eq!(e.to_string(), "`no colon` is not NAME: VALUE");
    }

    #[test]
    fn a_json_body_for_a_form_scheme_is_signed_through_its_hash_in_the_url() {
        let loaded = load(
            "  - { name: tw, path: /tw, upstream: \"http://127.0.0.1:1\", public_url: \"https://hooks.example.com\", verify: { preset: twilio, secret: \"${SECRET}\" } }\n\
             \x20 - { name: sq, path: /sq/*, upstream: \"http://127.0.0.1:1\", public_url: \"https://hooks.example.com\", verify: { preset: square, secret: \"${SECRET}\" } }\n",
        );
        let sender = Sender::for_route(&loaded.gateway, "tw").unwrap();
        let mut notes = Vec::new();
        let signed = sender
            .sign(
                &request(b" {\"a\":1}", &[], None),
                SystemTime::now(),
                &mut notes,
            )
            .unwrap();
        assert_eq!(signed[0].0, CONTENT_TYPE);
        assert_eq!(signed[0].1, "application/json");
        let [Note::BodyHashInUrl { target }] = &notes[..] else {
            panic!("{notes:?}")
        };
        assert!(target.starts_with("/tw?bodySHA256="), "{target}");
        // A prefix route whose scheme signs the URL needs the exact path.
        let square = Sender::for_route(&loaded.gateway, "sq").unwrap();
        let e = square
            .sign(&request(b"{}", &[], None), SystemTime::now(), &mut notes)
            .unwrap_err();
        assert!(matches!(e, SignError::PrefixNeedsPath { .. }), "{e}");
    }
}
