//! `hookgate sign`: the request a real sender would send to a route, built from the compiled
//! configuration (`model::Gateway`), the route's scheme ([`Scheme::sign`]) and the secret its
//! sender holds, so that a deployment can be tried with curl. For an event: the headers to
//! add, and where the signature is not in a header, the URL to post to or the body to send.
//! For the route's handshake (`handshake.rs` here): the whole request, as a curl command, and
//! the answer the gateway gives. `main.rs` reads the files and prints; this module decides
//! what to send and what to tell the operator about it ([`Note`]).
//!
//! Whatever it makes is first verified with the route's own scheme: `sign` never prints a
//! request the route would refuse, but says why it would.

pub mod handshake;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use http::header::{InvalidHeaderName, InvalidHeaderValue, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::model::routes::PathPattern;
use crate::model::{Gateway, KeySource, Route};
use crate::scheme::{Outgoing, Part, Placement, Scheme, SigningKey, TimestampSource, VerifyError};

/// A route, ready to sign requests for.
pub struct Sender<'g> {
    route: &'g Route,
}

/// What to sign, as given on the command line.
pub struct Request<'a> {
    /// The method sent (`--method`); default POST.
    pub method: Option<&'a str>,
    pub body: &'a [u8],
    /// Extra `NAME: VALUE` headers that are part of the signed message (e.g. webhook-id).
    pub headers: &'a [String],
    /// The path and query the sender posts to; default: the route's own.
    pub path: Option<&'a str>,
    /// The private key file (named in messages) and its text, for asymmetric schemes.
    pub private_key: Option<(&'a Path, &'a str)>,
    /// The route's first key as its sender holds it (`config::sender_secrets`): the token of
    /// a token scheme, the secret of an HS* JWT. Never printed but where the scheme sends it.
    pub secret: Option<&'a [u8]>,
    /// Whether the caller can hand a changed body to the operator (`--out-body`): needed
    /// when the signature goes in a form or JSON field.
    pub body_out: bool,
}

/// A signed request, ready to send.
#[derive(Debug)]
pub struct Signed {
    pub method: Method,
    /// The path and query to send to.
    pub target: String,
    /// The headers to send: the given ones first, then those signing set, each once.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body to send: the one given, or with the signature in it.
    pub body: Vec<u8>,
    /// What the operator should know about it (printed on stderr).
    pub notes: Vec<Note>,
}

/// Something the operator should know about the request being signed (printed on stderr).
#[derive(Debug, PartialEq, Eq)]
pub enum Note {
    /// A non-form body signed through its SHA-256 in the URL (Twilio's `bodySHA256`): the
    /// sender must post to this target.
    BodyHashInUrl { target: String },
    /// The signature is a query parameter: the sender must post to this target.
    SignatureInUrl { param: String, target: String },
    /// The signature is a field of the body: the body to send is not the one given.
    SignatureInBody { field: String },
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
            Note::SignatureInUrl { param, target } => write!(
                f,
                "note: the signature is the query parameter {param}: post to {target}"
            ),
            Note::SignatureInBody { field } => write!(
                f,
                "note: the signature is the body's {field}: send the body written to --out-body"
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

/// Why no request could be made.
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
    #[error("route `{route}` takes {takes}, not {method} (--method)")]
    Method {
        route: String,
        method: String,
        takes: String,
    },
    #[error(
        "route `{route}` reads its signature from the body's {field}, so the body to send \
         differs from the one given: write it with --out-body FILE"
    )]
    BodyNeedsOut { route: String, field: String },
    #[error("route `{route}` has no handshake to play (--handshake)")]
    NoHandshake { route: String },
    /// The request made would not pass the route's own check: say why instead of printing it.
    #[error("route `{route}` would refuse this request: {reason}{hint}")]
    WouldBeRefused {
        route: String,
        reason: VerifyError,
        hint: String,
    },
    #[error("{0}")]
    Scheme(String),
}

impl<'g> Sender<'g> {
    /// The route named `name`.
    pub fn for_route(gateway: &'g Gateway, name: &str) -> Result<Sender<'g>, SignError> {
        match gateway.routes.get(name) {
            Some(route) => Ok(Sender { route }),
            None => Err(SignError::UnknownRoute {
                route: name.to_owned(),
                routes: gateway
                    .routes
                    .routes()
                    .iter()
                    .map(|r| r.name.clone())
                    .collect(),
            }),
        }
    }

    /// The route's scheme, if it has one to sign with.
    fn scheme(&self) -> Result<&'g Scheme, SignError> {
        self.route
            .scheme
            .as_ref()
            .ok_or_else(|| SignError::NothingToSign {
                route: self.route.name.clone(),
            })
    }

    /// Signs `request` at `now` as the route's sender would, and checks that the route takes
    /// what came out.
    pub fn sign(&self, request: &Request<'_>, now: SystemTime) -> Result<Signed, SignError> {
        let scheme = self.scheme()?;
        let key = self.key(scheme, request)?;
        let mut notes = Vec::new();
        let mut target = self.target(request.path)?;
        let mut headers = parse_headers(request.headers)?;
        let given: Vec<HeaderName> = headers.keys().cloned().collect();
        let mut set = self.content_type(&mut headers, request.body);
        if let Some(hashed) = self.body_hash_in_url(&headers, request.body, &target) {
            target = hashed;
            notes.push(Note::BodyHashInUrl {
                target: target.clone(),
            });
        }
        let outgoing = Outgoing {
            method: self.method(request.method)?,
            path_and_query: target,
            headers,
            body: request.body.to_vec(),
        };
        let signed = scheme
            .sign(outgoing, now, key.as_ref())
            .map_err(SignError::Scheme)?;
        set.extend(signed.set);
        notes.extend(self.placement_note(&signed.placed, &signed.request, request.body_out)?);
        let out = signed.request;
        self.check(scheme, &out, now)?;
        if let Some(TimestampSource::JsonField(pointer)) =
            scheme.timestamp.as_ref().map(|t| &t.source)
        {
            notes.push(Note::TimestampInBody {
                pointer: pointer.clone(),
            });
        }
        notes.extend(self.replay_key_missing(&out.headers, &out.body));
        let mut names: Vec<&HeaderName> = Vec::new();
        for name in given.iter().chain(&set) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(Signed {
            headers: names
                .into_iter()
                .filter_map(|name| Some((name.clone(), out.headers.get(name)?.clone())))
                .collect(),
            method: out.method,
            target: out.path_and_query,
            body: out.body,
            notes,
        })
    }

    /// `--method`, one the route takes (default POST).
    fn method(&self, given: Option<&str>) -> Result<Method, SignError> {
        let wrong = |method: &str| SignError::Method {
            route: self.route.name.clone(),
            method: method.to_owned(),
            takes: self
                .route
                .methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        };
        let method = match given {
            None => Method::POST,
            Some(m) => {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| wrong(m))?
            }
        };
        if self.route.methods.contains(&method) {
            Ok(method)
        } else {
            Err(wrong(method.as_str()))
        }
    }

    /// What the scheme signs with besides its own HMAC keys: the private key given, or the
    /// route's secret where the scheme needs it given (a token, an HS* JWT).
    fn key(&self, scheme: &Scheme, request: &Request<'_>) -> Result<Option<SigningKey>, SignError> {
        if let Some((file, text)) = request.private_key {
            let key = scheme.private_key(text).map_err(SignError::PrivateKey)?;
            if !key.matches(&scheme.keys) {
                return Err(SignError::KeyNotOfRoute {
                    file: file.to_owned(),
                    route: self.route.name.clone(),
                });
            }
            return Ok(Some(key));
        }
        match request.secret.and_then(|s| scheme.secret_key(s)) {
            Some(key) => key.map(Some).map_err(SignError::Scheme),
            None => Ok(None),
        }
    }

    /// What the operator must know about where the signature went: the URL to post to, or
    /// the body to send (which they must be able to get).
    fn placement_note(
        &self,
        placed: &Placement,
        out: &Outgoing,
        body_out: bool,
    ) -> Result<Option<Note>, SignError> {
        let field = match placed {
            Placement::Header(_) => return Ok(None),
            Placement::Query(param) => {
                return Ok(Some(Note::SignatureInUrl {
                    param: param.clone(),
                    target: out.path_and_query.clone(),
                }))
            }
            Placement::Form(name) => format!("form field {name}"),
            Placement::Json(pointer) => format!("JSON field {pointer}"),
        };
        if !body_out {
            return Err(SignError::BodyNeedsOut {
                route: self.route.name.clone(),
                field,
            });
        }
        Ok(Some(Note::SignatureInBody { field }))
    }

    /// Verifies `out` with the route's scheme at `now`, as the gateway will.
    fn check(&self, scheme: &Scheme, out: &Outgoing, now: SystemTime) -> Result<(), SignError> {
        let body = crate::body::RawBody::from(bytes::Bytes::copy_from_slice(&out.body));
        let json = crate::scheme::JsonBody::default();
        let view = crate::scheme::RequestView {
            method: &out.method,
            headers: &out.headers,
            body: &body,
            path_and_query: &out.path_and_query,
            json: &json,
        };
        let reason = match scheme.verify(&view, now) {
            Ok(_) => return Ok(()),
            Err(reason) => reason,
        };
        let hint = match (&reason, scheme.timestamp.as_ref().map(|t| &t.source)) {
            (
                VerifyError::StaleTimestamp
                | VerifyError::FutureTimestamp
                | VerifyError::MissingTimestamp,
                Some(TimestampSource::JsonField(pointer)),
            ) => format!(" (the timestamp is the body's {pointer}: write the current time there)"),
            (VerifyError::Mismatch, _) if !scheme.signature.source.headers().is_empty() => {
                String::new()
            }
            (VerifyError::Mismatch, _) => " (the scheme signs what the signature is then put \
                                            into: no sender can sign it so)"
                .to_owned(),
            _ => String::new(),
        };
        Err(SignError::WouldBeRefused {
            route: self.route.name.clone(),
            reason,
            hint,
        })
    }

    /// The path the sender posts to: given, or the route's own exact path. Only URL-signed
    /// schemes need it; for the others any path under the route will do.
    fn target(&self, path: Option<&str>) -> Result<String, SignError> {
        let scheme = self.scheme()?;
        let signs_url = scheme.message.contains(&Part::Url) || scheme.body_hash_param.is_some();
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
        let Some(scheme) = &self.route.scheme else {
            return Vec::new();
        };
        let form_scheme =
            scheme.message.contains(&Part::FormParamsSorted) || scheme.body_hash_param.is_some();
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
        let param = self.route.scheme.as_ref()?.body_hash_param.as_ref()?;
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
            method: None,
            body,
            headers,
            path,
            private_key: None,
            secret: None,
            body_out: false,
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
        let office = Sender::for_route(&loaded.gateway, "office").unwrap();
        let allowlist = office
            .sign(&request(b"{}", &[], None), SystemTime::now())
            .unwrap_err();
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
        let signed = sender
            .sign(&request(b"{}", &given, None), SystemTime::now())
            .unwrap();
        let names: Vec<&str> = signed.headers.iter().map(|(n, _)| n.as_str()).collect();
        let notes = signed.notes;
        assert_eq!(names, ["x-trace", "x-hub-signature-256"]);
        assert!(
            matches!(&notes[..], [Note::ReplayKeyMissing { what, .. }] if what == "header x-github-delivery"),
            "{notes:?}"
        );
        let bad = ["no colon".to_owned()];
        let e = sender
            .sign(&request(b"{}", &bad, None), SystemTime::now())
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
        let signed = sender
            .sign(&request(b" {\"a\":1}", &[], None), SystemTime::now())
            .unwrap();
        assert_eq!(signed.headers[0].0, CONTENT_TYPE);
        assert_eq!(signed.headers[0].1, "application/json");
        let [Note::BodyHashInUrl { target }] = &signed.notes[..] else {
            panic!("{:?}", signed.notes)
        };
        assert_eq!(&signed.target, target);
        assert!(target.starts_with("/tw?bodySHA256="), "{target}");
        // A prefix route whose scheme signs the URL needs the exact path.
        let square = Sender::for_route(&loaded.gateway, "sq").unwrap();
        let e = square
            .sign(&request(b"{}", &[], None), SystemTime::now())
            .unwrap_err();
        assert!(matches!(e, SignError::PrefixNeedsPath { .. }), "{e}");
    }
}
