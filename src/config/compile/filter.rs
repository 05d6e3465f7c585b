//! A destination's `filter:` compiled into a [`Filter`]: every mistake located
//! (`destinations[1] (analytics).filter.all[0].prefix`) and reported together, the limits on
//! depth and width enforced, so that evaluating a filter per event costs a bounded number of
//! field reads (see `model/filter.rs` for what a filter means).

use http::HeaderName;

use super::Report;
use crate::config::file::RawFilter;
use crate::model::filter::{Field, Filter, Test, MAX_DEPTH, MAX_ITEMS};

/// `filter:` at `loc`; `None` (with the errors reported) if it is not a filter.
pub(super) fn compile_filter(raw: &RawFilter, loc: &str, r: &mut Report) -> Option<Filter> {
    compile_at(raw, loc, 1, r)
}

fn compile_at(raw: &RawFilter, loc: &str, depth: usize, r: &mut Report) -> Option<Filter> {
    if depth > MAX_DEPTH {
        r.error(loc, format!("nested more than {MAX_DEPTH} deep"));
        return None;
    }
    let combinators = [raw.all.is_some(), raw.any.is_some(), raw.not.is_some()];
    let field = raw.json.is_some() || raw.header.is_some();
    match (combinators.iter().filter(|c| **c).count(), field) {
        (0, true) => compile_test(raw, loc, r),
        (1, false) => {
            if let Some(all) = &raw.all {
                list(all, &format!("{loc}.all"), depth, r).map(Filter::All)
            } else if let Some(any) = &raw.any {
                list(any, &format!("{loc}.any"), depth, r).map(Filter::Any)
            } else {
                let not = raw.not.as_deref()?;
                compile_at(not, &format!("{loc}.not"), depth + 1, r).map(|f| Filter::Not(f.into()))
            }
        }
        _ => {
            r.error(
                loc,
                "give exactly one of `all: [...]`, `any: [...]`, `not: {...}`, or a test of \
                 one field (`json: /pointer` or `header: name` with `equals`, `one_of`, \
                 `prefix` or `exists`)",
            );
            None
        }
    }
}

/// `all:` or `any:`: each item compiled, at most [`MAX_ITEMS`].
fn list(items: &[RawFilter], loc: &str, depth: usize, r: &mut Report) -> Option<Vec<Filter>> {
    if items.len() > MAX_ITEMS {
        r.error(loc, format!("more than {MAX_ITEMS} items"));
        return None;
    }
    let compiled: Vec<Option<Filter>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| compile_at(item, &format!("{loc}[{i}]"), depth + 1, r))
        .collect();
    compiled.into_iter().collect()
}

/// A test of one field: `json` or `header`, and exactly one of the four tests.
fn compile_test(raw: &RawFilter, loc: &str, r: &mut Report) -> Option<Filter> {
    let field = match (&raw.json, &raw.header) {
        (Some(pointer), None) => Field::Json(json_pointer(pointer, &format!("{loc}.json"), r)?),
        (None, Some(name)) => match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => Field::Header(name),
            Err(_) => {
                r.error(
                    format!("{loc}.header"),
                    format!("`{name}` is not a header name"),
                );
                return None;
            }
        },
        _ => {
            r.error(loc, "a test reads one field: `json` or `header`, not both");
            return None;
        }
    };
    let tests = [
        raw.equals.is_some(),
        raw.one_of.is_some(),
        raw.prefix.is_some(),
        raw.exists.is_some(),
    ];
    if tests.iter().filter(|t| **t).count() != 1 {
        r.error(
            loc,
            "give exactly one test: `equals`, `one_of`, `prefix` or `exists`",
        );
        return None;
    }
    let test = if let Some(value) = &raw.equals {
        Test::Equals(text(value, &format!("{loc}.equals"), r)?)
    } else if let Some(values) = &raw.one_of {
        let oloc = format!("{loc}.one_of");
        if values.is_empty() || values.len() > MAX_ITEMS {
            r.error(&oloc, format!("give 1 to {MAX_ITEMS} values"));
            return None;
        }
        let texts: Vec<Option<String>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| text(v, &format!("{oloc}[{i}]"), r))
            .collect();
        Test::OneOf(texts.into_iter().collect::<Option<_>>()?)
    } else if let Some(prefix) = &raw.prefix {
        Test::Prefix(prefix.clone())
    } else {
        Test::Exists(raw.exists?)
    };
    Some(Filter::Test(field, test))
}

/// A JSON pointer (RFC 6901): `/type`, `/data/object/id`; a leading `/` may be left out.
fn json_pointer(pointer: &str, loc: &str, r: &mut Report) -> Option<String> {
    let pointer = if pointer.starts_with('/') {
        pointer.to_owned()
    } else {
        format!("/{pointer}")
    };
    // `~` only as `~0` or `~1`.
    let bad_escape = pointer
        .split('~')
        .skip(1)
        .any(|rest| !(rest.starts_with('0') || rest.starts_with('1')));
    if pointer == "/" || bad_escape {
        r.error(
            loc,
            format!("`{pointer}` is not a JSON pointer to a field (e.g. /type, /data/object/id)"),
        );
        return None;
    }
    Some(pointer)
}

/// The one text a value is compared as: a string itself, an integer's digits, `true` or
/// `false`; anything else has none, and would match nothing.
fn text(value: &serde_yaml::Value, loc: &str, r: &mut Report) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => {
            r.error(
                loc,
                "a string, an integer or true/false (a fractional number, a list or a map has \
                 no one text to compare, and would match nothing)",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(yaml: &str) -> (Option<Filter>, Vec<String>) {
        let raw: RawFilter = serde_yaml::from_str(yaml).expect("the YAML parses");
        let mut r = Report::default();
        let f = compile_filter(&raw, "f", &mut r);
        let errors = r.errors.iter().map(|e| e.to_string()).collect();
        (f, errors)
    }

    #[test]
    fn a_filter_compiles_into_its_tree() {
        let (f, errors) = compiled(
            "all:\n  - { json: type, prefix: invoice. }\n  - any:\n    - { header: X-Event, \
             one_of: [push, 7, true] }\n    - not: { json: /livemode, equals: false }\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let expected = Filter::All(vec![
            Filter::Test(Field::Json("/type".into()), Test::Prefix("invoice.".into())),
            Filter::Any(vec![
                Filter::Test(
                    Field::Header(HeaderName::from_static("x-event")),
                    Test::OneOf(vec!["push".into(), "7".into(), "true".into()]),
                ),
                Filter::Not(Box::new(Filter::Test(
                    Field::Json("/livemode".into()),
                    Test::Equals("false".into()),
                ))),
            ]),
        ]);
        assert_eq!(f, Some(expected));
    }

    #[test]
    fn every_mistake_is_located() {
        for (yaml, at) in [
            ("{ json: /type }", "f"),
            ("{ json: /type, equals: a, prefix: b }", "f"),
            ("{ json: /type, header: x, exists: true }", "f"),
            ("{ all: [], any: [] }", "f"),
            ("{ all: [{ json: /a, equals: 1.5 }] }", "f.all[0].equals"),
            (
                "{ any: [{ header: 'bad name', exists: true }] }",
                "f.any[0].header",
            ),
            ("{ not: { json: '/', exists: true } }", "f.not.json"),
            ("{ json: /a~2b, exists: true }", "f.json"),
            ("{ json: /a, one_of: [] }", "f.one_of"),
            ("{ json: /a, one_of: [x, [y]] }", "f.one_of[1]"),
        ] {
            let (f, errors) = compiled(yaml);
            assert!(f.is_none(), "{yaml} compiled");
            assert!(
                errors.iter().any(|e| e.starts_with(at)),
                "{yaml}: {errors:?} (wanted one at {at})"
            );
        }
        let deep = format!(
            "{}{{ json: /a, exists: true }}{}",
            "{ not: ".repeat(8),
            " }".repeat(8)
        );
        let (f, errors) = compiled(&deep);
        assert!(
            f.is_none() && errors.iter().any(|e| e.contains("deep")),
            "{errors:?}"
        );
        let wide = format!(
            "any: [{}]",
            vec!["{ json: /a, exists: true }"; 65].join(", ")
        );
        let (f, errors) = compiled(&wide);
        assert!(
            f.is_none() && errors.iter().any(|e| e.contains("items")),
            "{errors:?}"
        );
    }
}
