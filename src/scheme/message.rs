//! The signed message: an ordered list of [`Part`]s, each read from the request and fed to
//! the signature algorithm in order, body bytes as they arrived (never copied or re-encoded).
//!
//! Every value a part reads has one meaning: a header, query parameter or form field the
//! message reads must come once (two copies: the gateway would check one while the app reads
//! the other), a JSON field is read from the body parsed once and strictly (`json.rs`), and a
//! field that has no one text is refused rather than rendered a second way.

use http::HeaderName;
use sha2::Digest as _;

use super::params::{self, path, query, Param};
use super::{json, RequestView, VerifyError};

/// One piece of the signed message, fed to the MAC in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// The raw request body, exactly as received.
    Body,
    /// The JSON body as JavaScript's `JSON.stringify` writes it again ([`json::compact`]):
    /// the body itself when it came compact (eBay's).
    BodyJsonCompact,
    /// The value of a request header (its raw bytes).
    Header(HeaderName),
    /// Fixed bytes, such as a `.` or `:` separator.
    Literal(Vec<u8>),
    /// The value of an entry of a structured signature header, e.g. Stripe's `t`.
    SignatureEntry(String),
    /// The route's public URL followed by the request's path and query (Twilio, Square).
    Url,
    /// For a form-encoded body: every parameter, sorted by name, as name then value, with no
    /// separators (Twilio). Nothing for other bodies.
    FormParamsSorted,
    /// The request method, e.g. `POST`.
    Method,
    /// The request path as received, without the query.
    Path,
    /// The request path and query as received, e.g. `/hooks/a?x=1`.
    PathAndQuery,
    /// The query's parameters, decoded, sorted by name then value, and written again as
    /// `name=value` pairs joined by `&` (form-urlencoded): one text for any order.
    QuerySorted,
    /// The decoded value of one query parameter.
    Query(String),
    /// The decoded value of one field of a form-encoded body.
    Form(String),
    /// A field of the JSON body, by JSON pointer, rendered as [`json::render`] says.
    Json(String),
    /// A digest of the body, written as text.
    BodyDigest(BodyDigest),
    /// Parts fed only when every value they read is present (Mercado Pago leaves out a
    /// segment whose source is absent). A value that is present but ambiguous still fails.
    Optional(Vec<Part>),
}

/// A digest of the body that a sender signs in place of the body itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyDigest {
    /// SHA-256, lower-case hex.
    Sha256Hex,
    /// CRC-32 (IEEE), in decimal (PayPal).
    Crc32Decimal,
}

impl BodyDigest {
    pub fn name(self) -> &'static str {
        match self {
            BodyDigest::Sha256Hex => "body_sha256_hex",
            BodyDigest::Crc32Decimal => "body_crc32",
        }
    }
}

impl Part {
    /// Whether signing the part pins down the whole body: the body itself or its SHA-256. A
    /// CRC-32 does not: anyone can change a body and four more bytes to keep its CRC.
    pub fn covers_body(&self) -> bool {
        matches!(
            self,
            Part::Body | Part::BodyJsonCompact | Part::BodyDigest(BodyDigest::Sha256Hex)
        )
    }

    /// Whether the part reads the JSON body.
    pub fn reads_json(&self) -> bool {
        match self {
            Part::Json(_) | Part::BodyJsonCompact => true,
            Part::Optional(parts) => parts.iter().any(Part::reads_json),
            _ => false,
        }
    }

    /// The part as the configuration writes it.
    pub fn describe(&self) -> String {
        match self {
            Part::Body => "body".to_owned(),
            Part::BodyJsonCompact => "body_json_compact".to_owned(),
            Part::Header(h) => format!("{{ header: {h} }}"),
            Part::Literal(l) => format!("{{ literal: {:?} }}", String::from_utf8_lossy(l)),
            Part::SignatureEntry(e) => format!("{{ signature_entry: {e} }}"),
            Part::Url => "url".to_owned(),
            Part::FormParamsSorted => "form_params_sorted".to_owned(),
            Part::Method => "method".to_owned(),
            Part::Path => "path".to_owned(),
            Part::PathAndQuery => "path_and_query".to_owned(),
            Part::QuerySorted => "query_sorted".to_owned(),
            Part::Query(q) => format!("{{ query: {q} }}"),
            Part::Form(f) => format!("{{ form: {f} }}"),
            Part::Json(p) => format!("{{ json: {p} }}"),
            Part::BodyDigest(d) => d.name().to_owned(),
            Part::Optional(parts) => {
                let inner: Vec<String> = parts.iter().map(Part::describe).collect();
                format!("{{ optional: [{}] }}", inner.join(", "))
            }
        }
    }
}

/// What the parts are read from: the request, the structured signature header's entries and
/// the route's public URL.
pub(super) struct Source<'s, 'a> {
    pub req: &'s RequestView<'a>,
    pub entry: &'s dyn Fn(&str) -> Option<&'a str>,
    pub public_url: Option<&'s str>,
    pub signature: &'s super::SignatureSource,
}

/// Feeds `parts`, in order, to `sink`.
pub(super) fn feed(
    parts: &[Part],
    src: &Source<'_, '_>,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<(), VerifyError> {
    for part in parts {
        feed_one(part, src, sink)?;
    }
    Ok(())
}

fn feed_one(
    part: &Part,
    src: &Source<'_, '_>,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<(), VerifyError> {
    let req = src.req;
    match part {
        Part::Body => {
            for chunk in req.body.chunks() {
                sink(chunk);
            }
        }
        Part::BodyJsonCompact => {
            // Strict first: one meaning for every body with this compact form.
            req.json()?;
            let compact = json::compact(req.body.contiguous())
                .map_err(|e| VerifyError::NotStrictJson(e.0))?;
            sink(&compact);
        }
        Part::Literal(bytes) => sink(bytes),
        Part::Header(name) => {
            let value = req
                .headers
                .get(name)
                .ok_or_else(|| VerifyError::MissingMessageHeader(name.clone()))?;
            sink(value.as_bytes());
        }
        Part::SignatureEntry(name) => {
            let value = (src.entry)(name)
                .ok_or_else(|| VerifyError::MalformedSignature(src.signature.describe()))?;
            sink(value.as_bytes());
        }
        Part::Url => {
            sink(src.public_url.unwrap_or_default().as_bytes());
            sink(req.path_and_query.as_bytes());
        }
        Part::FormParamsSorted => {
            if super::is_form(req.headers) {
                // Sorted by name then value, repeated identical pairs once, as Twilio's own
                // validators do.
                let mut params: Vec<_> = form_urlencoded::parse(req.body.contiguous()).collect();
                params.sort();
                params.dedup();
                for (k, v) in params {
                    sink(k.as_bytes());
                    sink(v.as_bytes());
                }
            }
        }
        Part::Method => sink(req.method.as_str().as_bytes()),
        Part::Path => sink(path(req.path_and_query).as_bytes()),
        Part::PathAndQuery => sink(req.path_and_query.as_bytes()),
        Part::QuerySorted => sink(query_sorted(req.path_and_query).as_bytes()),
        Part::Query(name) => {
            let value = one_param(query(req.path_and_query).as_bytes(), name, "query")?;
            sink(value.as_bytes());
        }
        Part::Form(name) => {
            if !super::is_form(req.headers) {
                return Err(VerifyError::MissingField(format!("form field {name}")));
            }
            let value = one_param(req.body.contiguous(), name, "form field")?;
            sink(value.as_bytes());
        }
        Part::Json(pointer) => sink(json_field(req, pointer)?.as_bytes()),
        Part::BodyDigest(digest) => sink(body_digest(*digest, req.body).as_bytes()),
        Part::Optional(parts) => {
            let mut group = Vec::new();
            match feed(parts, src, &mut |b| group.extend_from_slice(b)) {
                Ok(()) => sink(&group),
                Err(VerifyError::MissingMessageHeader(_) | VerifyError::MissingField(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The query's parameters, decoded, sorted, and written again (form-urlencoded).
fn query_sorted(path_and_query: &str) -> String {
    let mut params: Vec<_> = form_urlencoded::parse(query(path_and_query).as_bytes()).collect();
    params.sort();
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// A JSON field's one text, from the body's strict parse.
fn json_field(req: &RequestView<'_>, pointer: &str) -> Result<String, VerifyError> {
    let value = req
        .json()?
        .pointer(pointer)
        .ok_or_else(|| VerifyError::MissingField(format!("JSON field {pointer}")))?;
    json::render(value)
        .map(|text| text.into_owned())
        .ok_or_else(|| VerifyError::AmbiguousField(format!("JSON field {pointer}")))
}

/// The body's digest, as the sender writes it.
fn body_digest(digest: BodyDigest, body: &crate::body::RawBody) -> String {
    match digest {
        BodyDigest::Sha256Hex => {
            let mut hasher = sha2::Sha256::new();
            for chunk in body.chunks() {
                hasher.update(chunk);
            }
            hex::encode(hasher.finalize())
        }
        BodyDigest::Crc32Decimal => {
            let mut hasher = crc32fast::Hasher::new();
            for chunk in body.chunks() {
                hasher.update(chunk);
            }
            hasher.finalize().to_string()
        }
    }
}

/// The one value of parameter `name` in a form-urlencoded text: absent and repeated are
/// errors (`what` names where, for the reason).
fn one_param(text: &[u8], name: &str, what: &str) -> Result<String, VerifyError> {
    match params::param(text, name) {
        Param::One(value) => Ok(value.into_owned()),
        Param::Absent => Err(VerifyError::MissingField(format!("{what} {name}"))),
        Param::Repeated => Err(VerifyError::AmbiguousField(format!("{what} {name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::RawBody;
    use crate::scheme::JsonBody;
    use http::{HeaderMap, Method};

    /// The message `parts` make of a request, or the error.
    fn message(
        parts: &[Part],
        method: &Method,
        target: &str,
        headers: &[(&str, &str)],
        body: &'static [u8],
    ) -> Result<String, VerifyError> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let body = RawBody::from(bytes::Bytes::from_static(body));
        let json = JsonBody::default();
        let req = RequestView {
            method,
            headers: &map,
            body: &body,
            path_and_query: target,
            json: &json,
        };
        let source = Source {
            req: &req,
            entry: &|_| None,
            public_url: Some("https://hooks.example.com"),
            signature: &crate::scheme::SignatureSource::Header {
                name: HeaderName::from_static("x-signature"),
                also: Vec::new(),
            },
        };
        let mut out = Vec::new();
        feed(parts, &source, &mut |b| out.extend_from_slice(b))?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn post(parts: &[Part], target: &str, body: &'static [u8]) -> Result<String, VerifyError> {
        message(parts, &Method::POST, target, &[], body)
    }

    fn lit(s: &str) -> Part {
        Part::Literal(s.as_bytes().to_vec())
    }

    #[test]
    fn the_request_line_parts_read_what_was_received() {
        let parts = [
            Part::Method,
            lit("\n"),
            Part::Path,
            lit("\n"),
            Part::PathAndQuery,
        ];
        assert_eq!(
            message(&parts, &Method::PUT, "/h/a?b=1&a=2", &[], b"").unwrap(),
            "PUT\n/h/a\n/h/a?b=1&a=2"
        );
        assert_eq!(post(&[Part::Path], "/h", b"").unwrap(), "/h");
    }

    #[test]
    fn a_sorted_query_is_one_text_for_any_order_and_encoding() {
        let sorted = [Part::QuerySorted];
        let one = post(&sorted, "/h?b=2&a=x%20y&a=1", b"").unwrap();
        assert_eq!(one, "a=1&a=x+y&b=2");
        assert_eq!(post(&sorted, "/h?a=x+y&b=2&a=1", b"").unwrap(), one);
        assert_eq!(post(&sorted, "/h", b"").unwrap(), "");
    }

    #[test]
    fn a_query_parameter_or_form_field_is_read_once() {
        let q = [Part::Query("data.id".into())];
        assert_eq!(post(&q, "/h?data.id=AB%2012&x=1", b"").unwrap(), "AB 12");
        assert_eq!(
            post(&q, "/h?x=1", b""),
            Err(VerifyError::MissingField("query data.id".into()))
        );
        assert_eq!(
            post(&q, "/h?data.id=1&data.id=2", b""),
            Err(VerifyError::AmbiguousField("query data.id".into())),
            "two copies: the app may read the other"
        );
        let f = [Part::Form("bt_payload".into())];
        let form = [("content-type", "application/x-www-form-urlencoded")];
        assert_eq!(
            message(&f, &Method::POST, "/", &form, b"bt_payload=a%2Bb&x=1").unwrap(),
            "a+b"
        );
        assert_eq!(
            message(&f, &Method::POST, "/", &form, b"bt_payload=1&bt_payload=2"),
            Err(VerifyError::AmbiguousField("form field bt_payload".into()))
        );
        assert_eq!(
            message(&f, &Method::POST, "/", &[], b"bt_payload=1"),
            Err(VerifyError::MissingField("form field bt_payload".into())),
            "not a form body"
        );
    }

    #[test]
    fn json_fields_come_from_one_strict_parse_in_one_text() {
        let parts = [
            Part::Json("/signature/timestamp".into()),
            lit("|"),
            Part::Json("/amount".into()),
            lit("|"),
            Part::Json("/live".into()),
        ];
        let body = br#"{"signature":{"timestamp":"1529006854"},"amount":1000,"live":false}"#;
        assert_eq!(post(&parts, "/", body).unwrap(), "1529006854|1000|false");
        assert_eq!(
            post(
                &parts,
                "/",
                br#"{"signature":{"timestamp":"1"},"amount":1e3,"live":false}"#
            ),
            Err(VerifyError::AmbiguousField("JSON field /amount".into())),
            "1e3 and 1000 are one number and two texts"
        );
        assert!(matches!(
            post(&parts, "/", br#"{"amount":1,"amount":2}"#),
            Err(VerifyError::NotStrictJson(_))
        ));
        assert_eq!(
            post(&parts, "/", br#"{"amount":1,"live":true}"#),
            Err(VerifyError::MissingField(
                "JSON field /signature/timestamp".into()
            ))
        );
    }

    #[test]
    fn body_digests_are_written_as_senders_write_them() {
        let body = b"{\"id\":\"WH-1\"}";
        assert_eq!(
            post(&[Part::BodyDigest(BodyDigest::Sha256Hex)], "/", body).unwrap(),
            hex::encode(sha2::Sha256::digest(body))
        );
        // The CRC-32 (IEEE) check value of "123456789" is 0xCBF43926.
        assert_eq!(
            post(
                &[Part::BodyDigest(BodyDigest::Crc32Decimal)],
                "/",
                b"123456789"
            )
            .unwrap(),
            0xCBF4_3926u32.to_string()
        );
    }

    #[test]
    fn an_optional_group_is_left_out_only_when_its_source_is_absent() {
        // Mercado Pago: `id:{data.id};request-id:{x-request-id};ts:{ts};`, each segment
        // dropped when its source is absent.
        let parts = [
            Part::Optional(vec![lit("id:"), Part::Query("data.id".into()), lit(";")]),
            Part::Optional(vec![
                lit("request-id:"),
                Part::Header(HeaderName::from_static("x-request-id")),
                lit(";"),
            ]),
            lit("ts:1;"),
        ];
        let with =
            |target, headers: &[(&str, &str)]| message(&parts, &Method::POST, target, headers, b"");
        let rid = [("x-request-id", "r-1")];
        assert_eq!(
            with("/?data.id=7", &rid).unwrap(),
            "id:7;request-id:r-1;ts:1;"
        );
        assert_eq!(with("/", &rid).unwrap(), "request-id:r-1;ts:1;");
        assert_eq!(with("/", &[]).unwrap(), "ts:1;");
        assert_eq!(
            with("/?data.id=7&data.id=8", &rid),
            Err(VerifyError::AmbiguousField("query data.id".into())),
            "present but ambiguous is still refused"
        );
    }
}
