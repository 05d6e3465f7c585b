//! The route table: which configured route a request belongs to.
//!
//! Routes are an ordered list (first match wins). The table is precompiled into two maps,
//! exact paths and prefixes, so a lookup costs one hash probe per `/` in the request path,
//! not one comparison per route. Requests whose path could mean something else to the
//! upstream (dot segments, encoded slashes or dots, empty segments) are refused before
//! matching, so a prefix route can never be escaped.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use super::Route;

/// How a route's `path:` matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    /// `/webhooks/lahza`: that path only.
    Exact(String),
    /// `/webhooks/acme/*`: `/webhooks/acme`, `/webhooks/acme/` and anything below it. Stored
    /// without the trailing `/*`.
    Prefix(String),
}

impl PathPattern {
    /// Parses a `path:` value; `None` if it is not an absolute, normalized path.
    pub fn parse(s: &str) -> Option<PathPattern> {
        if let Some(base) = s.strip_suffix("/*") {
            // `/x//*` would be stored as `/x/`, which lookups (that try segment prefixes
            // without a trailing slash) never reach: refuse it rather than keep a dead route.
            if !base.is_empty() && (!is_clean_path(base) || base.ends_with('/')) {
                return None;
            }
            return Some(PathPattern::Prefix(base.to_owned()));
        }
        if is_clean_path(s) {
            Some(PathPattern::Exact(s.to_owned()))
        } else {
            None
        }
    }
}

impl std::fmt::Display for PathPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathPattern::Exact(p) => f.write_str(p),
            PathPattern::Prefix(p) => write!(f, "{p}/*"),
        }
    }
}

/// True for an absolute path that an app can read only one way: no dot segments, no empty
/// segments (other than a single trailing `/`), and percent-encoding that decodes once to
/// something no second decoding or normalization changes (see [`decode_once`]).
pub fn is_clean_path(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    if !path.starts_with('/') || path.contains('\\') {
        return false;
    }
    let decoded;
    let path = if path.contains('%') {
        match decode_once(path) {
            Some(d) => {
                decoded = d;
                decoded.as_str()
            }
            None => return false,
        }
    } else {
        path
    };
    let inner = path.strip_suffix('/').unwrap_or(path);
    inner.split('/').skip(1).all(|seg| {
        // Servlet containers read `..;x` (and `..%3bx`, decoded above) as `..`: judge a
        // segment by what precedes `;`. IIS and Windows read `..%20` and `...` as `..`.
        let name = seg.split(';').next().unwrap_or(seg).trim_matches(' ');
        let dots_only = !name.is_empty() && name.bytes().all(|b| b == b'.');
        !seg.is_empty() && !dots_only
    })
}

/// The path with its percent-encoding decoded once, if that is the only reading it has:
/// every `%` starts two hex digits; no encoded `/`, `\` or `.` (a prefix route could be
/// escaped at an app that decodes them); no control characters; valid UTF-8 (overlong forms
/// such as `%c0%ae` are `.` to a lax decoder; IIS's `%u002e` is no valid escape); and nothing
/// in the result that a second decoding would change (`%252e`, `%25%32%65`: double encoding).
fn decode_once(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            decoded.push(b[i]);
            i += 1;
            continue;
        }
        let byte = b.get(i + 1..i + 3).and_then(hex_byte)?;
        if matches!(byte, b'/' | b'\\' | b'.') || byte < 0x20 || byte == 0x7f {
            return None;
        }
        decoded.push(byte);
        i += 3;
    }
    let twice = decoded
        .windows(3)
        .any(|w| w[0] == b'%' && hex_byte(&w[1..]).is_some());
    if twice {
        return None;
    }
    String::from_utf8(decoded).ok()
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(two[0])? * 16 + digit(two[1])?) as u8)
}

/// The outcome of matching one request.
#[derive(Debug)]
pub enum Match<'a> {
    Found(&'a Arc<Route>),
    /// The path is some route's, but not for this method: the first route with that path (for
    /// metrics and logs) and every method allowed on the path.
    MethodNotAllowed {
        route: &'a Arc<Route>,
        allowed: Vec<Method>,
    },
    NotFound,
    /// The path is not in normal form (see [`is_clean_path`]).
    BadPath,
}

/// Precompiled lookup over the ordered route list.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    exact: HashMap<String, Vec<usize>>,
    prefix: HashMap<String, Vec<usize>>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> RouteTable {
        let mut table = RouteTable::default();
        for (i, mut route) in routes.into_iter().enumerate() {
            route.index = i;
            let map = match &route.path {
                PathPattern::Exact(p) => table.exact.entry(p.clone()),
                PathPattern::Prefix(p) => table.prefix.entry(p.clone()),
            };
            map.or_default().push(i);
            table.routes.push(Arc::new(route));
        }
        table
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Finds the first route (in file order) whose path and method match: one hash probe for
    /// the exact path and one per segment boundary for prefixes, no allocation on a match.
    pub fn lookup(&self, method: &Method, path: &str) -> Match<'_> {
        if !is_clean_path(path) {
            return Match::BadPath;
        }
        let mut best: Option<usize> = None;
        let mut any_path_match = false;
        self.for_each_candidate(path, |ids| {
            any_path_match = true;
            // Ids are in file order; the first that allows the method is this map's best.
            if let Some(&i) = ids
                .iter()
                .find(|&&i| self.routes[i].methods.contains(method))
            {
                best = Some(best.map_or(i, |b| b.min(i)));
            }
        });
        if let Some(i) = best {
            return Match::Found(&self.routes[i]);
        }
        if !any_path_match {
            return Match::NotFound;
        }
        // The path is known but not for this method: collect what is allowed (rare path).
        let mut candidates: Vec<usize> = Vec::new();
        self.for_each_candidate(path, |ids| candidates.extend(ids));
        candidates.sort_unstable();
        let mut allowed: Vec<Method> = Vec::new();
        for &i in &candidates {
            for m in &self.routes[i].methods {
                if !allowed.contains(m) {
                    allowed.push(m.clone());
                }
            }
        }
        Match::MethodNotAllowed {
            route: &self.routes[candidates[0]],
            allowed,
        }
    }

    /// Calls `f` with the route ids registered for `path` exactly and for each of its
    /// prefixes that ends at a segment boundary ("", "/a", "/a/b", ...).
    fn for_each_candidate(&self, path: &str, mut f: impl FnMut(&[usize])) {
        if let Some(ids) = self.exact.get(path) {
            f(ids);
        }
        if self.prefix.is_empty() {
            return;
        }
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        if let Some(ids) = self.prefix.get(trimmed) {
            f(ids);
        }
        for (i, b) in trimmed.bytes().enumerate() {
            if b == b'/' {
                if let Some(ids) = self.prefix.get(&trimmed[..i]) {
                    f(ids);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        for ok in [
            "/",
            "/a",
            "/a/",
            "/a/b",
            "/webhooks/lahza",
            "/a%20b",
            "/a/b;v=1",
            "/a/x%3by",
            "/caf%C3%A9",
            "/a%25zz",
        ] {
            assert!(is_clean_path(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "//",
            "/a//b",
            "/a/../b",
            "/a/./b",
            "/..",
            "/a/..",
            "/a%2fb",
            "/a%2E%2e/b",
            "/a\\b",
            "/a%5cb",
            "/a/..;/b",
            "/a/.;x/b",
            "/..;",
            // Encoded `;`, as Spring decodes it.
            "/a/..%3b/b",
            "/a/..%3Bx/b",
            "/a/.%3b/b",
            // Double and legacy encodings.
            "/a/%252e%252e/b",
            "/a%252fb",
            "/a/%c0%ae%c0%ae/b",
            "/a/%C1%9C",
            "/a/%e0%80%ae",
            "/a/%u002e%u002e/b",
            "/a%",
            "/a%2",
            "/a%zz",
            "/a%00b",
            // Nested double encoding: decoded once, still an escape.
            "/a/%25%32%65%25%32%65/b",
            "/a/%25%32e%25%32e/b",
            "/a/%25%33%62",
            // Control characters, padded and longer dot segments.
            "/a/b%0d%0aX-Injected:%201",
            "/a/%01",
            "/a/%7f",
            "/a/b%09",
            "/a/..%20",
            "/a/x%20/..%20/b",
            "/a/...",
            "/a/.../b",
        ] {
            assert!(!is_clean_path(bad), "{bad}");
        }
    }

    #[test]
    fn patterns_parse() {
        assert_eq!(
            PathPattern::parse("/a/b"),
            Some(PathPattern::Exact("/a/b".into()))
        );
        assert_eq!(
            PathPattern::parse("/a/*"),
            Some(PathPattern::Prefix("/a".into()))
        );
        assert_eq!(
            PathPattern::parse("/*"),
            Some(PathPattern::Prefix("".into()))
        );
        assert_eq!(PathPattern::parse("a/b"), None);
        assert_eq!(PathPattern::parse("/a/../*"), None);
        assert_eq!(PathPattern::parse("/a//*"), None);
        assert_eq!(PathPattern::parse("//*"), None);
    }
}
