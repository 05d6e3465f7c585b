//! What a sender that signs only some fields (`body_signed: false`: Adyen, Mailgun, Braintree)
//! leaves open, closed before its signature is checked. The rest of such a body is whatever
//! its sender wrote, so the app must find the signed fields where the gateway found them. A
//! body the app could read another way is refused (`body_ambiguous`):
//! - an encoded body (`Content-Encoding`): the gateway reads the raw bytes, the app the
//!   decoded ones, which may hold other fields;
//! - a JSON-reading scheme's body under another content type: an app would parse it as
//!   that type (a form whose names say `notificationItems[0][...]`);
//! - JSON object keys equal but for case (`success` and `Success`, `ſuccess`): Go, .NET and
//!   other decoders match keys case-insensitively and keep the last;
//! - form names that PHP or Rails fold onto a signed field (`bt.payload`, ` bt_payload`,
//!   `bt_payload[]`): the app would read the other one.
//!
//! Neighbours: `mod.rs` calls [`check`] first thing in `verify`; `json.rs` has already
//! refused keys repeated exactly.

use std::collections::HashSet;

use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use serde_json::Value;

use super::message::Part;
use super::{is_form, Algorithm, RequestView, Scheme, SignatureSource, VerifyError};

/// Refuses a body the app could read differently from the gateway, for a fields-only scheme.
pub(super) fn check(scheme: &Scheme, req: &RequestView<'_>) -> Result<(), VerifyError> {
    if scheme.body_signed {
        return Ok(());
    }
    let ambiguous = |why: &str| Err(VerifyError::BodyAmbiguous(why.to_owned()));
    let encoding = req.headers.get(CONTENT_ENCODING).map(|v| v.as_bytes());
    if encoding.is_some_and(|e| !e.trim_ascii().eq_ignore_ascii_case(b"identity")) {
        return ambiguous("an encoded body (Content-Encoding)");
    }
    if scheme.reads_json() {
        if req.headers.get_all(CONTENT_TYPE).iter().nth(1).is_some() {
            return Err(VerifyError::RepeatedHeader(CONTENT_TYPE));
        }
        // SNS posts its JSON as `text/plain; charset=UTF-8`, a type no framework parses as
        // anything but text.
        let sns_text = scheme.algorithm == Algorithm::AwsSns && media_type(req) == "text/plain";
        if !is_json(req) && !sns_text {
            return ambiguous("a JSON body sent as another content type");
        }
        if let Some(key) = keys_equal_but_for_case(req.json()?) {
            return Err(VerifyError::BodyAmbiguous(format!(
                "JSON keys equal but for case ({key:?})"
            )));
        }
    }
    let fields = form_fields(scheme);
    if !fields.is_empty() && is_form(req.headers) {
        for (name, _) in form_urlencoded::parse(req.body.contiguous()) {
            let folded = php_name(&name);
            if folded != name && fields.iter().any(|f| *f == folded) {
                return Err(VerifyError::BodyAmbiguous(format!(
                    "a form name that folds onto the signed field {folded}"
                )));
            }
        }
    }
    Ok(())
}

/// The media type of the body, lower-cased, parameters aside (empty without one).
fn media_type(req: &RequestView<'_>) -> String {
    let value = req.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let media = value
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default();
    media.trim().to_ascii_lowercase()
}

/// `application/json` or a `+json` type, parameters aside.
fn is_json(req: &RequestView<'_>) -> bool {
    let media = media_type(req);
    media == "application/json" || (media.ends_with("+json") && media.contains('/'))
}

/// The first key of an object in `v` that another key of the same object equals once both
/// are case-folded (each character upper-cased, then lower-cased, so `ſ` and `s`, `K`
/// (Kelvin) and `k` meet, as Go's `EqualFold` has them).
fn keys_equal_but_for_case(v: &Value) -> Option<String> {
    match v {
        Value::Object(map) => {
            let mut seen = HashSet::with_capacity(map.len());
            for key in map.keys() {
                let folded: String = key
                    .chars()
                    .flat_map(char::to_uppercase)
                    .flat_map(char::to_lowercase)
                    .collect();
                if !seen.insert(folded) {
                    return Some(key.clone());
                }
            }
            map.values().find_map(keys_equal_but_for_case)
        }
        Value::Array(items) => items.iter().find_map(keys_equal_but_for_case),
        _ => None,
    }
}

/// The form fields the scheme reads (its signature's and its message's).
fn form_fields(scheme: &Scheme) -> Vec<&str> {
    let mut fields: Vec<&str> = scheme
        .parts()
        .filter_map(|p| match p {
            Part::Form(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if let SignatureSource::Form(name) = &scheme.signature.source {
        fields.push(name);
    }
    fields
}

/// The name PHP (and, for `name[...]`, Rails) files a form field under: leading spaces
/// dropped, the part before a `[...]` subscript, `.`, space and an unclosed `[` as `_`.
fn php_name(name: &str) -> String {
    let name = name.trim_start_matches(' ');
    let base = match name.find('[') {
        Some(open) if name[open..].contains(']') => &name[..open],
        _ => name,
    };
    base.replace(['.', ' ', '['], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_as_php_files_them() {
        for (name, filed) in [
            ("bt_payload", "bt_payload"),
            ("bt.payload", "bt_payload"),
            ("bt payload", "bt_payload"),
            ("  bt_payload", "bt_payload"),
            ("bt_payload[]", "bt_payload"),
            ("bt_payload[x][y]", "bt_payload"),
            ("bt[payload", "bt_payload"),
            ("other", "other"),
        ] {
            assert_eq!(php_name(name), filed, "{name}");
        }
    }

    #[test]
    fn keys_equal_but_for_case_are_found_at_any_depth() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(keys_equal_but_for_case(&v(r#"{"a":1,"b":{"c":2}}"#)), None);
        assert_eq!(
            keys_equal_but_for_case(&v(r#"{"items":[{"success":"false","Success":"true"}]}"#)),
            Some("success".into())
        );
        // The long s (U+017F) and the Kelvin sign fold to `s` and `k`, as Go matches them.
        assert!(keys_equal_but_for_case(&v("{\"success\":1,\"\u{17f}uccess\":2}")).is_some());
        assert!(keys_equal_but_for_case(&v("{\"kind\":1,\"\u{212a}ind\":2}")).is_some());
    }
}
