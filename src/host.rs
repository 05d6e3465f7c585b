//! The request's authority, checked before routing: one well-formed Host on HTTP/1.1
//! (RFC 9112 §3.2), an absolute-form target whose authority is the Host, and on HTTP/2 a
//! `host` field that agrees with `:authority` (RFC 9113 §8.3.1). An app or a proxy behind
//! the gateway could otherwise read a different host than the one the gateway saw (cache
//! keys, virtual hosts, generated links).

use http::header::HOST;
use http::{HeaderMap, Uri, Version};

/// Why a request's authority is refused; each becomes a 400 `bad_host`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// HTTP/1.1 without Host.
    Missing,
    /// Host sent more than once.
    Repeated,
    /// Not `host[:port]`.
    Invalid,
    /// An absolute-form target or `:authority` names another host than the Host field.
    Disagrees,
}

/// Checks the request's Host against its version and target.
pub fn check(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), HostError> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Repeated);
    }
    if let Some(h) = host {
        if !valid(h.as_bytes()) {
            return Err(HostError::Invalid);
        }
    }
    // HTTP/2's `:authority`, or an HTTP/1.1 absolute-form target (`POST http://a/b`).
    let authority = uri.authority();
    if let Some(a) = authority {
        if !valid(a.as_str().as_bytes()) {
            return Err(HostError::Invalid);
        }
    }
    match (version, host, authority) {
        (_, Some(h), Some(a)) if !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) => {
            Err(HostError::Disagrees)
        }
        (Version::HTTP_11, None, _) => Err(HostError::Missing),
        (Version::HTTP_2, None, None) => Err(HostError::Missing),
        _ => Ok(()),
    }
}

/// `host [ ":" port ]`, stricter than RFC 3986's reg-name: a DNS name or IPv4 address
/// (letters, digits, `-`, `.`, `_`) or an IPv6 literal in brackets, then an optional port up
/// to 65535. No userinfo, whitespace, `%`, `*`, `,` (a list to frameworks that read
/// X-Forwarded-Host as one) or empty host: no sender needs them, and every one is a value
/// two parsers could read differently.
fn valid(value: &[u8]) -> bool {
    let (host_ok, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..end];
        let ok =
            std::str::from_utf8(literal).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok());
        (ok, &value[end + 1..])
    } else {
        let (host, port) = match value.iter().position(|&b| b == b':') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, &value[value.len()..]),
        };
        let ok = !host.is_empty()
            && host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        (ok, port)
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => {
            !digits.is_empty()
                && digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<u32>().ok())
                    .is_some_and(|p| p <= 65535)
        }
        _ => false,
    };
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(version: Version, target: &str, hosts: &[&str]) -> Result<(), HostError> {
        let uri: Uri = target.parse().unwrap();
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(HOST, v.parse().unwrap());
        }
        check(version, &uri, &h)
    }

    #[test]
    fn decisions() {
        use HostError::*;
        use Version as V;
        type Case<'a> = (Version, &'a str, &'a [&'a str], Result<(), HostError>);
        let cases: &[Case] = &[
            (V::HTTP_11, "/a", &["hooks.example.com"], Ok(())),
            (V::HTTP_11, "/a", &["hooks.example.com:8443"], Ok(())),
            (V::HTTP_11, "/a", &["127.0.0.1:8080"], Ok(())),
            (V::HTTP_11, "/a", &["[::1]:8080"], Ok(())),
            (V::HTTP_11, "/a", &[""], Err(Invalid)),
            (V::HTTP_11, "/a", &[":"], Err(Invalid)),
            (V::HTTP_11, "/a", &["*"], Err(Invalid)),
            (V::HTTP_11, "/a", &["a%2fb"], Err(Invalid)),
            (
                V::HTTP_11,
                "/a",
                &["evil.example,good.example"],
                Err(Invalid),
            ),
            (V::HTTP_11, "/a", &["a.example:99999"], Err(Invalid)),
            (V::HTTP_11, "/a", &["a.example:"], Err(Invalid)),
            (V::HTTP_11, "/a", &["A.Example."], Ok(())),
            (V::HTTP_11, "/a", &["a.example:65535"], Ok(())),
            (V::HTTP_11, "/a", &[], Err(Missing)),
            (V::HTTP_10, "/a", &[], Ok(())),
            (V::HTTP_11, "/a", &["a.example", "b.example"], Err(Repeated)),
            (V::HTTP_11, "/a", &["a.example", "a.example"], Err(Repeated)),
            (V::HTTP_11, "/a", &["user@a.example"], Err(Invalid)),
            (V::HTTP_11, "/a", &["a.example:80:80"], Err(Invalid)),
            (V::HTTP_11, "/a", &["a.example:port"], Err(Invalid)),
            (V::HTTP_11, "/a", &["a example"], Err(Invalid)),
            (V::HTTP_11, "/a", &["a.example/evil"], Err(Invalid)),
            (V::HTTP_11, "/a", &["[::1"], Err(Invalid)),
            (V::HTTP_11, "/a", &["[zz]:80"], Err(Invalid)),
            (V::HTTP_11, "/a", &["a.example:123456"], Err(Invalid)),
            // absolute-form: its authority is the host
            (V::HTTP_11, "http://a.example/x", &["a.example"], Ok(())),
            (V::HTTP_11, "http://A.example/x", &["a.example"], Ok(())),
            (
                V::HTTP_11,
                "http://a.example/x",
                &["b.example"],
                Err(Disagrees),
            ),
            (V::HTTP_11, "http://a.example/x", &[], Err(Missing)),
            // HTTP/2: :authority, and a host field must agree with it
            (V::HTTP_2, "https://a.example/x", &[], Ok(())),
            (V::HTTP_2, "https://a.example/x", &["a.example"], Ok(())),
            (
                V::HTTP_2,
                "https://a.example/x",
                &["b.example"],
                Err(Disagrees),
            ),
            (V::HTTP_2, "/x", &["a.example"], Ok(())),
            (V::HTTP_2, "/x", &[], Err(Missing)),
        ];
        for (version, target, hosts, want) in cases {
            assert_eq!(
                head(*version, target, hosts),
                *want,
                "{version:?} {target} {hosts:?}"
            );
        }
    }
}
