//! The JSON body, read once and strictly, for schemes and replay keys that read fields of it.
//!
//! The gateway verifies a field and the app then reads the same body with its own parser. If
//! two parsers can read one body two ways, a signature over what the gateway read says
//! nothing of what the app reads. So a body that any part, key or timestamp is read from must
//! be exactly one JSON value (nothing after it), in valid UTF-8 (no lone surrogate escapes),
//! with no object key given twice (parsers differ on which copy wins). Anything else is
//! refused, not guessed at.
//!
//! A field is rendered into a signed message one way only ([`render`]): a string as its
//! text, an integer written as a plain integer as its decimal digits, `true`/`false`, and
//! `null` as nothing. A number with a fraction or an exponent is refused: `1e2`, `100.0` and
//! `100` are one number to many parsers and three texts to a signature.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body could not be read as strict JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotStrictJson(pub String);

impl fmt::Display for NotStrictJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The body as one JSON value; an error for anything two parsers could read differently.
pub fn parse_strict(body: &[u8]) -> Result<Value, NotStrictJson> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Strict::deserialize(&mut de).map_err(|e| NotStrictJson(e.to_string()))?;
    // Nothing but whitespace after the one value.
    de.end().map_err(|e| NotStrictJson(e.to_string()))?;
    Ok(value.0)
}

/// A field's text as it goes into a signed message, or `None` if it has no one text (an
/// object, an array, or a number with a fraction or an exponent).
pub fn render(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => {
            // serde_json reads a plain integer literal as u64 or i64, anything else as f64.
            if let Some(u) = n.as_u64() {
                Some(Cow::Owned(u.to_string()))
            } else {
                n.as_i64().map(|i| Cow::Owned(i.to_string()))
            }
        }
        Value::Bool(true) => Some(Cow::Borrowed("true")),
        Value::Bool(false) => Some(Cow::Borrowed("false")),
        Value::Null => Some(Cow::Borrowed("")),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// The body written again as JavaScript's `JSON.stringify(JSON.parse(body))` writes it, for a
/// sender that signs that (eBay's SDK verifies so): no whitespace between tokens, each string
/// escaped the one way `JSON.stringify` escapes (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`,
/// other control characters as lower-case `\u00xx`, everything else as itself), members in
/// the order received (JavaScript would move keys like `"2"` first; eBay's bodies have none).
/// Numbers are kept as written: a number `JSON.stringify` would write
/// otherwise (`1.0`, `1E3`) gives another text, and the signature fails rather than the
/// gateway guessing. The body must already have passed [`parse_strict`], so one meaning holds
/// for every body with this form. Borrowed when the body is already compact (eBay sends it so).
pub fn compact(body: &[u8]) -> Result<Cow<'_, [u8]>, NotStrictJson> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        let (token, next) = match b {
            b' ' | b'\t' | b'\n' | b'\r' => (None, i + 1),
            b'"' => {
                let end = string_end(body, i)
                    .ok_or_else(|| NotStrictJson("an unterminated string".into()))?;
                let raw = &body[i..end];
                if raw.contains(&b'\\') {
                    let text: String =
                        serde_json::from_slice(raw).map_err(|e| NotStrictJson(e.to_string()))?;
                    let again =
                        serde_json::to_vec(&text).map_err(|e| NotStrictJson(e.to_string()))?;
                    (Some(Cow::Owned(again)), end)
                } else {
                    (Some(Cow::Borrowed(raw)), end)
                }
            }
            _ => (Some(Cow::Borrowed(&body[i..=i])), i + 1),
        };
        let same = token.as_deref() == Some(&body[i..next]);
        if !same && out.is_none() {
            out = Some(body[..i].to_vec());
        }
        if let (Some(out), Some(token)) = (out.as_mut(), token) {
            out.extend_from_slice(&token);
        }
        i = next;
    }
    Ok(out.map_or(Cow::Borrowed(body), Cow::Owned))
}

/// The index just past the string that opens at `start` (a `"`), or `None` if it never ends.
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// A JSON pointer (RFC 6901) from a configured field: `/data/id` as it is, `id` as `/id`.
pub fn pointer(field: &str) -> String {
    if field.starts_with('/') {
        field.to_owned()
    } else {
        format!("/{field}")
    }
}

/// `body` (a JSON object) with the string `value` at `pointer`, for a sender putting its
/// signature in a field (`sign`). The body's text changes only where the field goes: its
/// value replaced if present, or the member inserted first in its object (objects it needs
/// created), so every other field keeps its bytes, and a signature over them still holds.
pub fn with_field(body: &[u8], pointer: &str, value: &str) -> Result<Vec<u8>, String> {
    let doc = parse_strict(body).map_err(|e| {
        format!(
            "the signature goes in the JSON field {pointer}, and the body is not strict JSON: {e}"
        )
    })?;
    let not_object = || {
        format!("the signature goes in the JSON field {pointer}, and what holds it in the body is not an object")
    };
    if !doc.is_object() {
        return Err(not_object());
    }
    let keys: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|k| k.replace("~1", "/").replace("~0", "~"))
        .collect();
    let text = |v: &str| Value::String(v.to_owned()).to_string();
    // The object or array the walk is in (the offset of its `{` or `[`).
    let mut container = skip_ws(body, 0);
    for (depth, key) in keys.iter().enumerate() {
        let last = depth + 1 == keys.len();
        let found = match body.get(container) {
            Some(b'{') => member(body, container).ok_or_else(not_object)?(key),
            // An array item is only ever named by its index, never made.
            Some(b'[') => match key.parse() {
                Ok(index) => Some(element(body, container, index).ok_or_else(not_object)?),
                Err(_) => return Err(not_object()),
            },
            _ => return Err(not_object()),
        };
        match found {
            Some((start, end)) if last => {
                return Ok([&body[..start], text(value).as_bytes(), &body[end..]].concat());
            }
            Some((start, _)) => container = start,
            None => {
                // `"key":` then the rest of the path as nested objects around the value.
                let mut inserted = text(value);
                for k in keys[depth + 1..].iter().rev() {
                    inserted = format!("{{{}:{inserted}}}", text(k));
                }
                inserted = format!("{}:{inserted}", text(key));
                let open = container + 1;
                let empty = body.get(skip_ws(body, open)) == Some(&b'}');
                if !empty {
                    inserted.push(',');
                }
                return Ok([&body[..open], inserted.as_bytes(), &body[open..]].concat());
            }
        }
    }
    Err("an empty JSON pointer names no field".into())
}

/// A lookup of the members of the object whose `{` is at `open` (in a body already read as
/// strict JSON): a member's name to the span of its value. `None`: not an object.
fn member(body: &[u8], open: usize) -> Option<impl Fn(&str) -> Option<(usize, usize)> + '_> {
    (body.get(open) == Some(&b'{')).then_some(move |name: &str| {
        let mut i = skip_ws(body, open + 1);
        if body.get(i) == Some(&b'}') {
            return None;
        }
        loop {
            let key_end = skip_value(body, i)?;
            let key: String = serde_json::from_slice(body.get(i..key_end)?).ok()?;
            i = skip_ws(body, key_end);
            (body.get(i) == Some(&b':')).then_some(())?;
            let start = skip_ws(body, i + 1);
            let end = skip_value(body, start)?;
            if key == name {
                return Some((start, end));
            }
            i = skip_ws(body, end);
            match body.get(i)? {
                b',' => i = skip_ws(body, i + 1),
                _ => return None,
            }
        }
    })
}

/// The span of item `index` of the array whose `[` is at `open`; `None` past its end.
fn element(body: &[u8], open: usize, index: usize) -> Option<(usize, usize)> {
    let mut i = skip_ws(body, open + 1);
    if body.get(i) == Some(&b']') {
        return None;
    }
    for n in 0.. {
        let end = skip_value(body, i)?;
        if n == index {
            return Some((i, end));
        }
        i = skip_ws(body, end);
        match body.get(i)? {
            b',' => i = skip_ws(body, i + 1),
            _ => return None,
        }
    }
    None
}

/// How many items the array at `pointer` holds, if it is an array.
pub fn array_len(body: &[u8], pointer: &str) -> Option<usize> {
    parse_strict(body)
        .ok()?
        .pointer(pointer)?
        .as_array()
        .map(Vec::len)
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// The offset just past the JSON value that starts at `i`.
fn skip_value(body: &[u8], i: usize) -> Option<usize> {
    let string_end = |mut j: usize| loop {
        match body.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    };
    match body.get(i)? {
        b'"' => string_end(i + 1),
        b'{' | b'[' => {
            let (mut j, mut depth) = (i + 1, 1usize);
            while depth > 0 {
                match body.get(j)? {
                    b'"' => j = string_end(j + 1)?,
                    b'{' | b'[' => (depth, j) = (depth + 1, j + 1),
                    b'}' | b']' => (depth, j) = (depth - 1, j + 1),
                    _ => j += 1,
                }
            }
            Some(j)
        }
        _ => {
            let len = body[i..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                .unwrap_or(body.len() - i);
            Some(i + len)
        }
    }
}

/// A `serde_json::Value` built by a visitor that refuses a repeated object key.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // Finite: JSON has no literal for anything else.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compact_form_is_the_one_json_stringify_writes() {
        let compact_of = |body: &[u8]| compact(body).unwrap().into_owned();
        // Already compact: the body itself, not a copy.
        let already = br#"{"a":"x y","b":[1,2.5,null],"c":{"d":"\u00e9"}}"#;
        assert!(matches!(compact(br#"{"a":1}"#).unwrap(), Cow::Borrowed(_)));
        assert_eq!(
            compact_of(b" {\n \"a\" : [ 1 , true ] }\n"),
            br#"{"a":[1,true]}"#
        );
        // Strings keep their spaces; their escapes become JSON.stringify's.
        assert_eq!(
            compact_of(br#"{"a": "x y", "b": "\u0041\/\u00e9\u001F\n\""}"#),
            "{\"a\":\"x y\",\"b\":\"A/\u{e9}\\u001f\\n\\\"\"}".as_bytes()
        );
        // A string escaped with a backslash at its end is read to its real end.
        assert_eq!(compact_of(br#"{ "a\\" : "b" }"#), br#"{"a\\":"b"}"#);
        // Numbers as written, member order as received.
        assert_eq!(
            compact_of(br#"{"z": 1.0, "a": 1E3}"#),
            br#"{"z":1.0,"a":1E3}"#
        );
        assert_ne!(compact_of(already), Vec::<u8>::new());
    }

    #[test]
    fn one_value_with_unique_keys_is_read() {
        let v = parse_strict(br#" {"a": {"b": [1, "x", null]}, "c": true} "#).unwrap();
        assert_eq!(v.pointer("/a/b/1"), Some(&Value::from("x")));
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        for body in [
            &br#"{"id": "evt_1", "id": "evt_2"}"#[..],
            br#"{"data": {"amount": 1, "amount": 1000}}"#,
            br#"[{"a": 1}, {"b": 2, "b": 2}]"#,
        ] {
            let e = parse_strict(body).unwrap_err();
            assert!(e.0.contains("appears twice"), "{e}");
        }
        // The same key in two objects is fine.
        assert!(parse_strict(br#"[{"a": 1}, {"a": 2}]"#).is_ok());
    }

    #[test]
    fn anything_but_exactly_one_value_in_utf8_is_refused() {
        for body in [
            &b""[..],
            b"{} {}",
            b"{\"a\": 1} trailing",
            b"{\"a\": \"\xff\"}",
            br#"{"a": "\ud800"}"#,
            b"{\"a\": 1,}",
            b"NaN",
        ] {
            assert!(
                parse_strict(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_field_has_one_text_or_none() {
        let v = parse_strict(
            br#"{"s": "a\u00e9", "i": 100, "n": -7, "t": true, "f": false, "z": null,
                "e": 1e2, "d": 100.0, "big": 123456789012345678901234567890, "o": {}, "l": []}"#,
        )
        .unwrap();
        let text = |p: &str| render(v.pointer(p).unwrap()).map(|c| c.into_owned());
        assert_eq!(text("/s").as_deref(), Some("a\u{e9}"));
        assert_eq!(text("/i").as_deref(), Some("100"));
        assert_eq!(text("/n").as_deref(), Some("-7"));
        assert_eq!(text("/t").as_deref(), Some("true"));
        assert_eq!(text("/f").as_deref(), Some("false"));
        assert_eq!(text("/z").as_deref(), Some(""));
        for ambiguous in ["/e", "/d", "/big", "/o", "/l"] {
            assert_eq!(text(ambiguous), None, "{ambiguous}");
        }
    }

    #[test]
    fn a_field_is_set_without_changing_the_bytes_of_any_other() {
        let set = |body: &str, pointer: &str| {
            with_field(body.as_bytes(), pointer, "s\"ig").map(|b| String::from_utf8(b).unwrap())
        };
        // Inserted first in its object, the rest as it was (spacing, order, number texts).
        assert_eq!(
            set(r#"{ "a": 1.50, "b" : {"c":"x,}"} }"#, "/sig").unwrap(),
            r#"{"sig":"s\"ig", "a": 1.50, "b" : {"c":"x,}"} }"#
        );
        assert_eq!(set("{ }", "/sig").unwrap(), r#"{"sig":"s\"ig" }"#);
        // Into an object that exists, or objects made for it.
        assert_eq!(
            set(
                r#"{"signature":{"timestamp":"1","token":"t"}}"#,
                "/signature/signature"
            )
            .unwrap(),
            r#"{"signature":{"signature":"s\"ig","timestamp":"1","token":"t"}}"#
        );
        assert_eq!(
            set(r#"{"id":7}"#, "/a~1b/c").unwrap(),
            r#"{"a/b":{"c":"s\"ig"},"id":7}"#
        );
        // A field already there gets the value in its place.
        assert_eq!(
            set(r#"{"x":[1,{"y":2}],"sig":null,"z":3}"#, "/sig").unwrap(),
            r#"{"x":[1,{"y":2}],"sig":"s\"ig","z":3}"#
        );
        // Into an item of an array, named by its index.
        assert_eq!(
            set(r#"{"value":[{"a":1},{ }]}"#, "/value/1/sig").unwrap(),
            r#"{"value":[{"a":1},{"sig":"s\"ig" }]}"#
        );
        for (body, pointer) in [
            ("[1]", "/sig"),
            (r#"{"a":[]}"#, "/a/b"),
            (r#"{"a":[{}]}"#, "/a/1/b"),
            ("{", "/a"),
        ] {
            assert!(set(body, pointer).is_err(), "{body} {pointer}");
        }
    }
}
