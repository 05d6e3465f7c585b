//! Which routes can never be reached. Routes are tried in file order and the first whose path
//! and method match wins (`routes.rs`), so a route after an identical path, or after a prefix
//! that contains its path, gets none of the requests the earlier route also accepts. A route
//! that gets none at all is a configuration error; one that loses some methods earns a warning.

use http::Method;

use crate::model::routes::PathPattern;

/// What an earlier route takes from a later one.
#[derive(Debug, PartialEq, Eq)]
pub enum Shadow {
    /// Every request the later route matches goes to earlier routes (their indexes).
    Unreachable(Vec<usize>),
    /// These methods, on every path the later route matches, go to earlier routes.
    Methods(Vec<(usize, Vec<Method>)>),
}

/// Whether every path `inner` matches is also matched by `outer`.
fn covers(outer: &PathPattern, inner: &PathPattern) -> bool {
    let within = |prefix: &str, path: &str| {
        prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    match (outer, inner) {
        (PathPattern::Exact(a), PathPattern::Exact(b)) => a == b,
        (PathPattern::Exact(_), PathPattern::Prefix(_)) => false,
        (PathPattern::Prefix(p), PathPattern::Exact(b)) => within(p, b),
        (PathPattern::Prefix(p), PathPattern::Prefix(q)) => within(p, q),
    }
}

/// For the route at `index` of `routes` (path and methods, in file order), what earlier
/// routes whose paths cover all of its paths take from it; `None` if nothing.
pub fn shadow(routes: &[(&PathPattern, &[Method])], index: usize) -> Option<Shadow> {
    let (path, methods) = routes[index];
    let mut taken: Vec<(usize, Vec<Method>)> = Vec::new();
    for (i, (earlier, earlier_methods)) in routes[..index].iter().enumerate() {
        if !covers(earlier, path) {
            continue;
        }
        let lost: Vec<Method> = methods
            .iter()
            .filter(|m| earlier_methods.contains(m))
            .filter(|m| !taken.iter().any(|(_, t)| t.contains(m)))
            .cloned()
            .collect();
        if !lost.is_empty() {
            taken.push((i, lost));
        }
    }
    let lost = taken.iter().map(|(_, t)| t.len()).sum::<usize>();
    match lost {
        0 => None,
        n if n == methods.len() => Some(Shadow::Unreachable(
            taken.into_iter().map(|(i, _)| i).collect(),
        )),
        _ => Some(Shadow::Methods(taken)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathPattern {
        PathPattern::parse(s).unwrap()
    }

    #[test]
    fn what_an_earlier_route_takes_from_a_later_one() {
        let post = [Method::POST];
        let get = [Method::GET];
        let both = [Method::GET, Method::POST];
        #[rustfmt::skip]
        /// The earlier route, the later route, what the earlier takes from the later.
        type Case<'a> = (&'a str, &'a [Method], &'a str, &'a [Method], Option<Shadow>);
        let cases: &[Case] = &[
            // Identical paths: the later route is dead unless its methods differ.
            ("/a", &post, "/a", &post, Some(Shadow::Unreachable(vec![0]))),
            ("/a", &post, "/a", &get, None),
            (
                "/a",
                &post,
                "/a",
                &both,
                Some(Shadow::Methods(vec![(0, vec![Method::POST])])),
            ),
            // A prefix before a more specific path takes it; after it, it does not.
            (
                "/a/*",
                &post,
                "/a/b",
                &post,
                Some(Shadow::Unreachable(vec![0])),
            ),
            (
                "/a/*",
                &post,
                "/a",
                &post,
                Some(Shadow::Unreachable(vec![0])),
            ),
            (
                "/a/*",
                &post,
                "/a/b/*",
                &post,
                Some(Shadow::Unreachable(vec![0])),
            ),
            ("/*", &post, "/x", &post, Some(Shadow::Unreachable(vec![0]))),
            ("/a/b", &post, "/a/*", &post, None),
            // Segment boundaries: /ab is not under /a.
            ("/a/*", &post, "/ab", &post, None),
            ("/a/*", &post, "/ab/*", &post, None),
            // An exact path never covers a prefix.
            ("/a", &post, "/a/*", &post, None),
        ];
        for (first, m1, second, m2, want) in cases {
            let (a, b) = (p(first), p(second));
            let routes = [(&a, *m1), (&b, *m2)];
            assert_eq!(
                &shadow(&routes, 1),
                want,
                "{first} {m1:?} then {second} {m2:?}"
            );
            assert_eq!(
                shadow(&routes, 0),
                None,
                "the first route is never shadowed"
            );
        }
    }

    #[test]
    fn several_earlier_routes_together_can_make_a_route_unreachable() {
        let (a, b, c) = (p("/h/*"), p("/h/x"), p("/h/x"));
        let routes: [(&PathPattern, &[Method]); 3] = [
            (&a, &[Method::POST]),
            (&b, &[Method::GET]),
            (&c, &[Method::GET, Method::POST]),
        ];
        assert_eq!(shadow(&routes, 2), Some(Shadow::Unreachable(vec![0, 1])));
    }
}
