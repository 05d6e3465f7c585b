//! Query and form parameters as a scheme reads them: a request target's query, and one
//! parameter of a form-urlencoded text, which must come at most once (two copies: the
//! gateway would check one while the app may read the other). Shared by the signed message,
//! the signature's place and the handshakes, each of which says what absent and repeated
//! mean for it.

use std::borrow::Cow;

/// How a parameter appears in a form-urlencoded text.
#[derive(Debug, PartialEq, Eq)]
pub enum Param<'a> {
    Absent,
    /// Exactly once, decoded.
    One(Cow<'a, str>),
    Repeated,
}

/// Parameter `name` of a form-urlencoded text.
pub fn param<'a>(text: &'a [u8], name: &str) -> Param<'a> {
    let mut values = form_urlencoded::parse(text).filter(|(k, _)| k == name);
    match (values.next(), values.next()) {
        (None, _) => Param::Absent,
        (Some((_, value)), None) => Param::One(value),
        (Some(_), Some(_)) => Param::Repeated,
    }
}

/// The path of a `path?query`.
pub fn path(path_and_query: &str) -> &str {
    path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p)
}

/// The query of a `path?query` (empty without one).
pub fn query(path_and_query: &str) -> &str {
    path_and_query.split_once('?').map_or("", |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_is_absent_once_decoded_or_repeated() {
        assert_eq!(param(b"a=1&b=x%20y", "b"), Param::One("x y".into()));
        assert_eq!(param(b"a=1", "b"), Param::Absent);
        assert_eq!(param(b"b=1&b=1", "b"), Param::Repeated);
        assert_eq!(query("/h?x=1"), "x=1");
        assert_eq!(query("/h"), "");
        assert_eq!(path("/h?x=1"), "/h");
    }
}
