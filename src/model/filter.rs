//! Which events a destination takes (`queue.filter`): a small declarative expression over the
//! request's headers and JSON body, compiled once from the configuration
//! (`config/compile/filter.rs`) and evaluated per event here, as a pure function.
//!
//! Why not CEL (ngrok's traffic policy language, through a crate): the questions operators
//! ask of a webhook are "is `type` one of these", "does it start with `invoice.`", "is this
//! header there"; a declarative form answers them, is checked at load with every mistake
//! located (`queue.filter.all[1].prefix`), has no loops or functions whose cost depends on
//! the event, reads in the YAML beside the route, and needs no interpreter in the tree.
//!
//! ```yaml
//! filter:
//!   all:
//!     - { json: /type, prefix: "invoice." }
//!     - { header: x-stripe-account, one_of: [acct_1, acct_2] }
//!     - not: { json: /livemode, equals: false }
//! ```
//!
//! A JSON field is read from the body parsed strictly (`scheme/json.rs`) and compared by its
//! one text ([`crate::scheme::json::render`]: a string as itself, an integer's digits,
//! `true`/`false`); an object, an array or a fractional number has none and equals nothing.
//! A header repeated has no one value either. A body that is not strict JSON has no fields.

use http::{HeaderMap, HeaderName};

/// A compiled filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Test(Field, Test),
}

/// What a test reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// A JSON pointer into the body.
    Json(String),
    Header(HeaderName),
}

/// What a test asks of the field's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    Equals(String),
    OneOf(Vec<String>),
    Prefix(String),
    /// Present (and, for a JSON field, not null), or absent.
    Exists(bool),
}

/// The deepest a filter may nest, and the most items a list may hold.
pub const MAX_DEPTH: usize = 8;
pub const MAX_ITEMS: usize = 64;

impl Filter {
    /// Whether an event with these headers and body (`json`: the body parsed strictly, if
    /// it is JSON) matches.
    pub fn matches(&self, headers: &HeaderMap, json: Option<&serde_json::Value>) -> bool {
        match self {
            Filter::All(all) => all.iter().all(|f| f.matches(headers, json)),
            Filter::Any(any) => any.iter().any(|f| f.matches(headers, json)),
            Filter::Not(f) => !f.matches(headers, json),
            Filter::Test(field, test) => test.holds(field, headers, json),
        }
    }

    /// Whether it reads the JSON body (else the body need not be parsed).
    pub fn reads_json(&self) -> bool {
        match self {
            Filter::All(fs) | Filter::Any(fs) => fs.iter().any(Filter::reads_json),
            Filter::Not(f) => f.reads_json(),
            Filter::Test(field, _) => matches!(field, Field::Json(_)),
        }
    }
}

impl Test {
    fn holds(&self, field: &Field, headers: &HeaderMap, json: Option<&serde_json::Value>) -> bool {
        let (present, text) = match field {
            Field::Json(pointer) => match json.and_then(|j| j.pointer(pointer)) {
                None | Some(serde_json::Value::Null) => (false, None),
                Some(v) => (true, crate::scheme::json::render(v).map(|t| t.into_owned())),
            },
            Field::Header(name) => {
                let mut values = headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => (false, None),
                    (Some(v), None) => (true, v.to_str().ok().map(str::to_owned)),
                    // Repeated: present, with no one value.
                    (Some(_), Some(_)) => (true, None),
                }
            }
        };
        match self {
            Test::Exists(wanted) => present == *wanted,
            Test::Equals(v) => text.as_deref() == Some(v.as_str()),
            Test::OneOf(vs) => text.is_some_and(|t| vs.contains(&t)),
            Test::Prefix(p) => text.is_some_and(|t| t.starts_with(p.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_test(pointer: &str, test: Test) -> Filter {
        Filter::Test(Field::Json(pointer.into()), test)
    }

    fn header_test(name: &'static str, test: Test) -> Filter {
        Filter::Test(Field::Header(HeaderName::from_static(name)), test)
    }

    #[test]
    fn tests_read_one_text_per_field() {
        let body = json!({"type": "invoice.paid", "n": 42, "live": false, "obj": {"a": 1},
                          "f": 1.5, "none": null});
        let h = HeaderMap::new();
        let m = |f: Filter| f.matches(&h, Some(&body));
        assert!(m(json_test("/type", Test::Prefix("invoice.".into()))));
        assert!(!m(json_test("/type", Test::Prefix("charge.".into()))));
        assert!(m(json_test("/n", Test::Equals("42".into()))));
        assert!(m(json_test("/live", Test::Equals("false".into()))));
        assert!(m(json_test(
            "/type",
            Test::OneOf(vec!["a".into(), "invoice.paid".into()])
        )));
        // No one text: an object, a fractional number.
        assert!(!m(json_test("/obj", Test::Equals("{\"a\":1}".into()))));
        assert!(!m(json_test("/f", Test::Equals("1.5".into()))));
        // Exists: present and not null.
        assert!(m(json_test("/obj", Test::Exists(true))));
        assert!(m(json_test("/none", Test::Exists(false))));
        assert!(m(json_test("/missing", Test::Exists(false))));
        // No JSON body: no fields.
        assert!(!json_test("/type", Test::Exists(true)).matches(&h, None));
    }

    #[test]
    fn headers_are_read_once_and_combinators_combine() {
        let mut h = HeaderMap::new();
        h.insert("x-event", "push".parse().unwrap());
        h.append("x-twice", "a".parse().unwrap());
        h.append("x-twice", "a".parse().unwrap());
        let body = json!({"type": "invoice.paid", "livemode": false});
        let m = |f: &Filter| f.matches(&h, Some(&body));
        assert!(m(&header_test("x-event", Test::Equals("push".into()))));
        assert!(
            !m(&header_test("x-twice", Test::Equals("a".into()))),
            "repeated"
        );
        assert!(m(&header_test("x-twice", Test::Exists(true))));
        let f = Filter::All(vec![
            json_test("/type", Test::Prefix("invoice.".into())),
            Filter::Any(vec![
                header_test("x-event", Test::Equals("release".into())),
                header_test("x-event", Test::Equals("push".into())),
            ]),
            Filter::Not(Box::new(json_test(
                "/livemode",
                Test::Equals("true".into()),
            ))),
        ]);
        assert!(m(&f));
        assert!(f.reads_json());
        assert!(!header_test("x-event", Test::Exists(true)).reads_json());
        assert!(
            Filter::All(vec![]).matches(&h, None),
            "all of nothing holds"
        );
        assert!(
            !Filter::Any(vec![]).matches(&h, None),
            "any of nothing does not"
        );
    }
}
