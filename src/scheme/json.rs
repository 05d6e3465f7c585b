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

/// A JSON pointer (RFC 6901) from a configured field: `/data/id` as it is, `id` as `/id`.
pub fn pointer(field: &str) -> String {
    if field.starts_with('/') {
        field.to_owned()
    } else {
        format!("/{field}")
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
}
