//! Where a request's signature is and how its value is laid out, and reading it: the
//! candidate signatures (still encoded) and, for structured values, every entry.
//!
//! A signature may be one header (under one of several names, exactly one present), each of
//! several headers (Box's primary and secondary, DocuSign's numbered ones: any may match), a
//! query parameter, a form field or a JSON field of the body. A header's value may be the
//! signature after a fixed prefix, a list of `name=value` entries (Stripe's `t=..,v1=..`), or
//! a positional list (Recurly's `ts,sig,sig`). Every place is read once: two copies of the
//! same header, parameter or field are malformed, because the app may read the other.

use std::borrow::Cow;

use http::HeaderName;

use super::params::{param, query, Param};
use super::{is_form, Encoding, RequestView, VerifyError};

/// Where the signature is found and how it is written.
#[derive(Clone, Debug)]
pub struct SignatureSpec {
    pub source: SignatureSource,
    /// Text that must precede the encoded signature (e.g. `sha256=`); matched exactly. Not
    /// used with `entries` or `list`.
    pub prefix: String,
    /// Accepted encodings; the first one is used when signing.
    pub encodings: Vec<Encoding>,
    /// `Some`: the header is a list of entries rather than one signature.
    pub entries: Option<Entries>,
    /// `Some`: the header is a positional list, its first item an entry, the rest signatures.
    pub list: Option<List>,
    /// `Some`: the header is a base64 JSON object holding the signature (eBay's).
    pub envelope: Option<Envelope>,
}

/// A signature header that is a JSON object in standard base64 (eBay's `X-EBAY-SIGNATURE`:
/// `{"alg":"ecdsa","kid":..,"signature":..,"digest":"SHA1"}`): the signature and the key
/// id are two of its string fields, and others must hold fixed values (the algorithm the
/// scheme verifies with), so that the header cannot claim one algorithm while the gateway
/// checks another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The field holding the signature, encoded as the spec's `encodings` say.
    pub signature: String,
    /// The field holding the id of the key to verify with.
    pub kid: Option<String>,
    /// Fields that must hold exactly these values.
    pub fixed: Vec<(String, String)>,
}

/// The longest envelope header read.
const MAX_ENVELOPE: usize = 4096;

/// Where the signature is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureSource {
    /// One header, under `name` or one of `also` (Shopify's Events deliveries drop the `X-`
    /// prefix): exactly one present.
    Header {
        name: HeaderName,
        also: Vec<HeaderName>,
    },
    /// Each of these headers that is present holds a candidate (any may match); at least one
    /// must be present.
    EachHeader(Vec<HeaderName>),
    /// A query parameter, decoded.
    Query(String),
    /// A field of a form-encoded body, decoded.
    Form(String),
    /// A string field of the JSON body, by JSON pointer.
    Json(String),
    /// The same string field of every item of a JSON array (`/value/*/clientState`): the
    /// array must hold at least one item, each item the field, and every value must verify
    /// (Microsoft Graph's `clientState`, with a shared-secret scheme).
    JsonEach { array: String, field: String },
    /// The whole body, as it came: a token that is itself the event (Kinde's JWT).
    Body,
}

impl SignatureSource {
    /// Where, as a refusal's reason says it: `header x-sig`, `query parameter sig`, ...
    pub fn describe(&self) -> String {
        match self {
            SignatureSource::Header { name, .. } => format!("header {name}"),
            SignatureSource::EachHeader(names) => match names.as_slice() {
                [first, .., last] => format!("headers {first} to {last}"),
                _ => format!("headers {}", names.first().map_or("", HeaderName::as_str)),
            },
            SignatureSource::Query(p) => format!("query parameter {p}"),
            SignatureSource::Form(f) => format!("form field {f}"),
            SignatureSource::Json(p) => format!("JSON field {p}"),
            SignatureSource::JsonEach { array, field } => format!("JSON field {array}/*{field}"),
            SignatureSource::Body => "body".to_owned(),
        }
    }

    /// The request headers the signature is read from (none for the other sources).
    pub fn headers(&self) -> Vec<&HeaderName> {
        match self {
            SignatureSource::Header { name, also } => std::iter::once(name).chain(also).collect(),
            SignatureSource::EachHeader(names) => names.iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether every candidate must verify, not any one of them.
    pub fn every_item(&self) -> bool {
        matches!(self, SignatureSource::JsonEach { .. })
    }

    /// The header `hookgate sign` writes the signature to, if it is one.
    pub fn sign_header(&self) -> Option<&HeaderName> {
        match self {
            SignatureSource::Header { name, .. } => Some(name),
            SignatureSource::EachHeader(names) => names.first(),
            _ => None,
        }
    }
}

/// A structured signature header: entries split by `separator`, each `name<assign>value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entries {
    /// Between entries: `,` (Stripe), `;` (Paddle), ` ` (Standard Webhooks).
    pub separator: String,
    /// Between an entry's name and value: `=` or `,`.
    pub assign: String,
    /// Name of the entries that hold signatures (`v1`, `h1`); others are ignored.
    pub key: String,
}

/// A positional signature header: items split by `separator`; the first is the entry named
/// `first` (Recurly's timestamp), every other item a signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct List {
    pub separator: String,
    pub first: String,
}

/// The signature as read: candidate signatures (still encoded) and, for structured headers,
/// every `name -> value` entry.
pub(super) struct Found<'a> {
    pub candidates: Vec<Cow<'a, str>>,
    pub entries: Vec<(&'a str, &'a str)>,
}

impl<'a> Found<'a> {
    pub fn entry(&self, name: &str) -> Option<&'a str> {
        self.entries
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

impl SignatureSpec {
    /// The header `sign` writes, if the signature is in one.
    pub fn header(&self) -> Option<&HeaderName> {
        self.source.sign_header()
    }

    /// Reads the signature from the request. `reads_entry` says whether the scheme reads an
    /// entry (a timestamp or a signed entry), which must then come once.
    pub(super) fn read<'a>(
        &'a self,
        req: &RequestView<'a>,
        reads_entry: &dyn Fn(&str) -> bool,
    ) -> Result<Found<'a>, VerifyError> {
        let malformed = || VerifyError::MalformedSignature(self.source.describe());
        let missing = || VerifyError::MissingSignature(self.source.describe());
        let one = |text: Cow<'a, str>| -> Result<Found<'a>, VerifyError> {
            if let Some(e) = &self.entries {
                return self.tagged(&text, e);
            }
            let candidate = strip_prefix(text, &self.prefix).ok_or_else(malformed)?;
            Ok(Found {
                candidates: vec![candidate],
                entries: Vec::new(),
            })
        };
        match &self.source {
            SignatureSource::Header { name, also } => {
                let mut values = std::iter::once(name)
                    .chain(also)
                    .flat_map(|n| req.headers.get_all(n).iter());
                let value = values.next().ok_or_else(missing)?;
                // Two signature headers (or one under two names) are ambiguous; a sender
                // never sends that.
                if values.next().is_some() {
                    return Err(malformed());
                }
                let text = value.to_str().map_err(|_| malformed())?;
                self.split(text, reads_entry)
            }
            SignatureSource::EachHeader(names) => {
                let mut candidates = Vec::new();
                for name in names {
                    let mut values = req.headers.get_all(name).iter();
                    let Some(value) = values.next() else { continue };
                    if values.next().is_some() {
                        return Err(malformed());
                    }
                    let text = value.to_str().map_err(|_| malformed())?;
                    candidates.extend(one(Cow::Borrowed(text))?.candidates);
                }
                if candidates.is_empty() {
                    return Err(missing());
                }
                Ok(Found {
                    candidates,
                    entries: Vec::new(),
                })
            }
            SignatureSource::Query(name) => {
                let query = query(req.path_and_query);
                one(one_param(query.as_bytes(), name, &malformed, &missing)?)
            }
            SignatureSource::Form(name) => {
                if !is_form(req.headers) {
                    return Err(missing());
                }
                one(one_param(
                    req.body.contiguous(),
                    name,
                    &malformed,
                    &missing,
                )?)
            }
            SignatureSource::Json(pointer) => match req.json()?.pointer(pointer) {
                None | Some(serde_json::Value::Null) => Err(missing()),
                Some(serde_json::Value::String(s)) => one(Cow::Borrowed(s.as_str())),
                Some(_) => Err(malformed()),
            },
            SignatureSource::JsonEach { array, field } => {
                self.field_of_every_item(req, array, field)
            }
            SignatureSource::Body => self.whole_body(req),
        }
    }

    /// The whole body as the one candidate: the token exactly as sent, nothing around it
    /// read or trimmed.
    fn whole_body<'a>(&self, req: &RequestView<'a>) -> Result<Found<'a>, VerifyError> {
        if req.body.is_empty() {
            return Err(VerifyError::MissingSignature(self.source.describe()));
        }
        let text = std::str::from_utf8(req.body.contiguous())
            .map_err(|_| VerifyError::MalformedSignature(self.source.describe()))?;
        Ok(Found {
            candidates: vec![Cow::Borrowed(text)],
            entries: Vec::new(),
        })
    }

    /// The same field of every item of a JSON array: each item's value a candidate.
    fn field_of_every_item<'a>(
        &'a self,
        req: &RequestView<'a>,
        array: &str,
        field: &str,
    ) -> Result<Found<'a>, VerifyError> {
        let malformed = || VerifyError::MalformedSignature(self.source.describe());
        let missing = || VerifyError::MissingSignature(self.source.describe());
        let items = match req.json()?.pointer(array) {
            None | Some(serde_json::Value::Null) => return Err(missing()),
            Some(serde_json::Value::Array(items)) if !items.is_empty() => items,
            Some(_) => return Err(malformed()),
        };
        let mut candidates = Vec::with_capacity(items.len());
        for item in items {
            let text = match item.pointer(field) {
                None | Some(serde_json::Value::Null) => return Err(missing()),
                Some(serde_json::Value::String(s)) => s.as_str(),
                Some(_) => return Err(malformed()),
            };
            // An item whose value is empty would drop out of the candidates unseen.
            let candidate = strip_prefix(Cow::Borrowed(text), &self.prefix)
                .filter(|c| !c.is_empty())
                .ok_or_else(malformed)?;
            candidates.push(candidate);
        }
        Ok(Found {
            candidates,
            entries: Vec::new(),
        })
    }

    /// A field's tagged entries (`tagged`); well formed but with nothing for this route's key
    /// (Braintree after a key change) is a missing signature that names the key id.
    fn tagged<'a>(&self, text: &str, e: &Entries) -> Result<Found<'a>, VerifyError> {
        let found = tagged(text, e)
            .ok_or_else(|| VerifyError::MalformedSignature(self.source.describe()))?;
        if found.candidates.is_empty() {
            return Err(VerifyError::MissingSignature(format!(
                "{} (no entry {})",
                self.source.describe(),
                e.key
            )));
        }
        Ok(found)
    }

    /// A header's value: after its prefix, or split into entries or a positional list.
    fn split<'a>(
        &'a self,
        text: &'a str,
        reads_entry: &dyn Fn(&str) -> bool,
    ) -> Result<Found<'a>, VerifyError> {
        let malformed = || VerifyError::MalformedSignature(self.source.describe());
        if let Some(envelope) = &self.envelope {
            let object = self.open(text)?;
            let field = |name: &str| object.get(name).and_then(serde_json::Value::as_str);
            for (name, value) in &envelope.fixed {
                if field(name) != Some(value.as_str()) {
                    return Err(VerifyError::MalformedSignature(format!(
                        "{}: its {name} is not {value:?}",
                        self.source.describe()
                    )));
                }
            }
            let signature = field(&envelope.signature).ok_or_else(malformed)?;
            return Ok(Found {
                candidates: vec![Cow::Owned(signature.to_owned())],
                entries: Vec::new(),
            });
        }
        if let Some(list) = &self.list {
            let mut items = text.split(list.separator.as_str()).map(str::trim);
            let first = items
                .next()
                .filter(|f| !f.is_empty())
                .ok_or_else(malformed)?;
            return Ok(Found {
                candidates: items.filter(|i| !i.is_empty()).map(Cow::Borrowed).collect(),
                entries: vec![(list.first.as_str(), first)],
            });
        }
        let Some(e) = &self.entries else {
            let candidate =
                strip_prefix(Cow::Borrowed(text), &self.prefix).ok_or_else(malformed)?;
            return Ok(Found {
                candidates: vec![candidate],
                entries: Vec::new(),
            });
        };
        let mut entries: Vec<(&'a str, &'a str)> = Vec::new();
        for entry in text.split(e.separator.as_str()).map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let (k, v) = entry.split_once(e.assign.as_str()).ok_or_else(malformed)?;
            let k = k.trim();
            // Several signatures may be listed (rotation, other versions), but an entry the
            // scheme reads (a timestamp, a signed entry) given twice could mean one thing
            // here and another to the app: `t=NOW,v1=..,t=1` is malformed.
            if reads_entry(k) && entries.iter().any(|(seen, _)| *seen == k) {
                return Err(malformed());
            }
            entries.push((k, v.trim()));
        }
        let candidates = entries
            .iter()
            .filter(|(k, _)| *k == e.key)
            .map(|(_, v)| Cow::Borrowed(*v))
            .collect();
        Ok(Found {
            candidates,
            entries,
        })
    }
}

impl SignatureSpec {
    /// An envelope header's JSON object: standard base64 (padded or not) of one strict JSON
    /// object (`json.rs`: no key twice), bounded in length.
    fn open(&self, text: &str) -> Result<serde_json::Map<String, serde_json::Value>, VerifyError> {
        use base64::Engine as _;
        let malformed = || VerifyError::MalformedSignature(self.source.describe());
        if text.len() > MAX_ENVELOPE {
            return Err(malformed());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| malformed())?;
        match super::json::parse_strict(&bytes) {
            Ok(serde_json::Value::Object(object)) => Ok(object),
            _ => Err(malformed()),
        }
    }

    /// The key id an envelope header names (`None`: no envelope, or no id in it).
    pub(super) fn envelope_kid(&self, req: &RequestView<'_>) -> Option<String> {
        let field = self.envelope.as_ref()?.kid.as_deref()?;
        let name = self.source.sign_header()?;
        let mut values = req.headers.get_all(name).iter();
        let text = values.next()?.to_str().ok()?;
        if values.next().is_some() {
            return None;
        }
        let object = self.open(text).ok()?;
        object.get(field)?.as_str().map(str::to_owned)
    }
}

/// `text` after `prefix`, or `None` if it does not start with it.
fn strip_prefix<'a>(text: Cow<'a, str>, prefix: &str) -> Option<Cow<'a, str>> {
    match text {
        Cow::Borrowed(t) => t.strip_prefix(prefix).map(Cow::Borrowed),
        Cow::Owned(t) => t.strip_prefix(prefix).map(|s| Cow::Owned(s.to_owned())),
    }
}

/// The one value of `name` in a form-urlencoded text: absent is `missing`, twice
/// `malformed`.
/// A field's value of `name<assign>value` entries (Braintree's `pub|sig&pub2|sig2`): the values
/// of the entries named `e.key` (the route's key id), owned, as the field was decoded; `None`
/// for an entry without `assign`. Such a field carries no other entry the scheme reads.
fn tagged<'a>(text: &str, e: &Entries) -> Option<Found<'a>> {
    let mut candidates = Vec::new();
    for entry in text.split(e.separator.as_str()).map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let (k, v) = entry.split_once(e.assign.as_str())?;
        if k.trim() == e.key {
            candidates.push(Cow::Owned(v.trim().to_owned()));
        }
    }
    Some(Found {
        candidates,
        entries: Vec::new(),
    })
}

fn one_param<'a>(
    text: &'a [u8],
    name: &str,
    malformed: &dyn Fn() -> VerifyError,
    missing: &dyn Fn() -> VerifyError,
) -> Result<Cow<'a, str>, VerifyError> {
    match param(text, name) {
        Param::One(value) => Ok(value),
        Param::Absent => Err(missing()),
        Param::Repeated => Err(malformed()),
    }
}
