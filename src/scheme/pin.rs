//! Where a key may be fetched from: the pure decision on a key or certificate URL a request
//! names (AWS SNS's `SigningCertURL`, PayPal's `PAYPAL-CERT-URL`) or a configuration gives (a
//! JWKS URL), and on the address its host resolves to. Nothing is fetched from a host the
//! preset or the operator did not pin: the URL must be `https`, on the default port, with a
//! DNS name (never an IP literal, userinfo, a look-alike `xn--` label the pattern does not
//! spell out, or a path that climbs with `..`), and the address must be public unless the
//! operator allows private ones (tests, private issuers).
//!
//! Neighbours: the fetcher (next, in this module) calls [`KeyUrl::parse`] before connecting and
//! [`address_allowed`] on every address it would connect to, so a DNS answer cannot bring a
//! request to the loopback or the cloud metadata address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host a key may come from: a DNS name, where a `*` label stands for exactly one label of
/// letters, digits and `-` (`sns.*.amazonaws.com` takes `sns.eu-west-1.amazonaws.com`, not
/// `sns.evil.com.amazonaws.com`), and a `{region}` label for one shaped like a cloud region
/// (`eu-west-1`, `us-gov-west-1`, `cn-north-1`): `sns.{region}.amazonaws.com` takes no S3
/// bucket host (`sns.s3.amazonaws.com`, `sns.s3-external-1.amazonaws.com`), where anyone
/// holding a bucket called `sns` could serve a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    labels: Vec<String>,
}

impl HostPattern {
    /// A pattern from its text; `None` for one that is not a lower-case DNS name with `*`
    /// labels only where a whole label is, each followed by two fixed labels at least (a
    /// `*` never takes a whole registrable domain: `*.com` is refused).
    pub fn parse(text: &str) -> Option<HostPattern> {
        let labels: Vec<String> = text.split('.').map(str::to_owned).collect();
        let fits = |l: &String| l == "*" || l == REGION || is_label(l);
        let last_star = labels.iter().rposition(|l| l == "*" || l == REGION);
        let anchored = last_star.is_none_or(|i| labels.len() - i > 2);
        (labels.len() >= 2 && labels.iter().all(fits) && anchored).then_some(HostPattern { labels })
    }

    /// Whether `host` (already lower-cased) is one this pattern takes.
    pub fn matches(&self, host: &str) -> bool {
        let labels: Vec<&str> = host.split('.').collect();
        labels.len() == self.labels.len()
            && self.labels.iter().zip(&labels).all(|(p, l)| {
                // A `*` never takes an IDN label: a look-alike must be spelled out.
                (p == "*" && is_label(l) && !l.starts_with("xn--"))
                    || (p == REGION && is_region(l))
                    || p == l
            })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.labels.join("."))
    }
}

/// The label a `{region}` stands for.
const REGION: &str = "{region}";

/// A cloud region's name: two letters, one or more words, a number (`eu-west-1`,
/// `us-gov-west-1`, `ap-southeast-2`, `cn-north-1`).
fn is_region(l: &str) -> bool {
    let parts: Vec<&str> = l.split('-').collect();
    let word = |w: &&str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase());
    let number = |n: &str| (1..=2).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit());
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(word)
        && number(parts[parts.len() - 1])
}

/// A path a key URL may have: fixed text where a `*` stands for 1 to 128 letters, digits,
/// `-` and `_` (`/SimpleNotificationService-*.pem`, `/v1/notifications/certs/*`). A URL
/// checked against paths has no query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern(String);

impl PathPattern {
    /// A pattern from its text: an absolute path, no `..`, no `?`, `*`s not side by side.
    pub fn parse(text: &str) -> Option<PathPattern> {
        let ok = text.starts_with('/')
            && !text.contains("**")
            && !text.contains("..")
            && text
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'%');
        ok.then(|| PathPattern(text.to_owned()))
    }

    pub fn matches(&self, path: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = path.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        for (i, fixed) in parts.iter().enumerate() {
            let wild = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
                .count();
            let last = i + 1 == parts.len();
            // The shortest run the fixed text follows; the last one runs to the end.
            let found = (1..=wild.min(128)).find(|&n| {
                if last {
                    &rest[n..] == *fixed
                } else {
                    rest[n..].starts_with(fixed)
                }
            });
            let Some(n) = found else { return false };
            rest = &rest[n + fixed.len()..];
        }
        rest.is_empty()
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DNS label: 1 to 63 lower-case letters, digits and `-`, not starting or ending with `-`.
fn is_label(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// Where a key API's URL takes the key id in its path.
pub const KID_IN_PATH: &str = "{kid}";

/// A key URL that passed every rule, in the one form it is fetched and cached by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyUrl {
    host: String,
    path_and_query: String,
}

impl KeyUrl {
    /// `text` as a key URL from one of `pins` whose path is one of `paths` (with no query),
    /// or why not. No `paths`: any path.
    pub fn parse_shaped(
        text: &str,
        pins: &[HostPattern],
        paths: &[PathPattern],
    ) -> Result<KeyUrl, NotPinned> {
        let url = KeyUrl::parse(text, pins)?;
        if paths.is_empty() || paths.iter().any(|p| p.matches(&url.path_and_query)) {
            Ok(url)
        } else {
            Err(NotPinned::PathNotPinned)
        }
    }

    /// `text` as a key URL from one of `pins`, or why not.
    pub fn parse(text: &str, pins: &[HostPattern]) -> Result<KeyUrl, NotPinned> {
        let rest = text.strip_prefix("https://").ok_or(NotPinned::NotHttps)?;
        if text.len() > 2048 || text.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(NotPinned::Malformed);
        }
        let (authority, path_and_query) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(NotPinned::Userinfo);
        }
        if authority.contains(':') || authority.starts_with('[') {
            // A port, or an IPv6 literal.
            return Err(NotPinned::PortOrAddress);
        }
        let host = authority.to_ascii_lowercase();
        if host.parse::<Ipv4Addr>().is_ok() || host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        {
            return Err(NotPinned::PortOrAddress);
        }
        if !pins.iter().any(|p| p.matches(&host)) {
            return Err(NotPinned::HostNotPinned(host));
        }
        if !path_and_query.starts_with('/') || path_and_query.contains('#') {
            return Err(NotPinned::Malformed);
        }
        let path = path_and_query.split('?').next().unwrap_or_default();
        let lowered = path.to_ascii_lowercase();
        if path.split('/').any(|s| s == ".." || s == ".")
            || lowered.contains("%2e")
            || lowered.contains("%2f")
        {
            return Err(NotPinned::Malformed);
        }
        Ok(KeyUrl {
            host,
            path_and_query: path_and_query.to_owned(),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// This URL with the `{kid}` in its path replaced by `kid`, for a key API that is asked
    /// for a key by its path (eBay's `/public_key/{kid}`): `kid` must be 1 to 128 letters,
    /// digits, `-`, `_` or `.`, and not all dots, so that it stays one path segment.
    pub fn with_kid(&self, kid: &str) -> Option<KeyUrl> {
        let segment = (1..=128).contains(&kid.len())
            && kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && kid.bytes().any(|b| b != b'.');
        (segment && self.takes_kid()).then(|| KeyUrl {
            host: self.host.clone(),
            path_and_query: self.path_and_query.replacen(KID_IN_PATH, kid, 1),
        })
    }

    /// Whether the URL's path has a `{kid}` for a key id.
    pub fn takes_kid(&self) -> bool {
        self.path_and_query
            .split('?')
            .next()
            .is_some_and(|p| p.contains(KID_IN_PATH))
    }

    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }
}

impl fmt::Display for KeyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}{}", self.host, self.path_and_query)
    }
}

/// Why a key URL is not fetched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotPinned {
    #[error("not an https URL")]
    NotHttps,
    #[error("a URL with userinfo (`user@host`)")]
    Userinfo,
    #[error("a URL with a port or an IP address for its host")]
    PortOrAddress,
    #[error("host {0} is not one the route pins")]
    HostNotPinned(String),
    #[error("its path is not one the sender's key URLs have")]
    PathNotPinned,
    #[error("a malformed URL (too long, a fragment, a `..` or encoded dot or slash in its path)")]
    Malformed,
}

/// Whether the fetcher may connect to `ip`: a public address, or any address when the
/// operator allows private ones. Loopback, private, link-local (the cloud metadata
/// address), carrier-grade NAT, unique-local, documentation, multicast, unspecified and
/// reserved ranges are private, and so is an IPv6 address that maps or embeds one of them.
pub fn address_allowed(ip: IpAddr, allow_private: bool) -> bool {
    allow_private || is_public(ip)
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    let documentation = s[0] == 0x2001 && s[1] == 0x0db8;
    // 6to4 (2002::/16) and Teredo (2001::/32) embed an IPv4 address; NAT64 (64:ff9b::/96)
    // translates one: none of them is trusted to reach a public host.
    let embeds_v4 =
        s[0] == 0x2002 || (s[0] == 0x2001 && s[1] == 0) || (s[0] == 0x64 && s[1] == 0xff9b);
    global_unicast && !documentation && !embeds_v4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sns() -> Vec<HostPattern> {
        ["sns.*.amazonaws.com", "sns.*.amazonaws.com.cn"]
            .iter()
            .map(|p| HostPattern::parse(p).unwrap())
            .collect()
    }

    #[test]
    fn a_key_id_goes_into_a_key_apis_path_as_one_plain_segment() {
        let pins = [HostPattern::parse("api.ebay.com").unwrap()];
        let api = KeyUrl::parse(
            "https://api.ebay.com/commerce/notification/v1/public_key/{kid}",
            &pins,
        )
        .unwrap();
        assert!(api.takes_kid());
        assert_eq!(
            api.with_kid("9936261a-7d7b-4621-a0f1-96ccb428af49")
                .unwrap()
                .to_string(),
            "https://api.ebay.com/commerce/notification/v1/public_key/9936261a-7d7b-4621-a0f1-96ccb428af49"
        );
        for hostile in [
            "",
            "..",
            ".",
            "a/b",
            "a?b",
            "a%2fb",
            "a#b",
            "a b",
            &"k".repeat(129),
        ] {
            assert!(api.with_kid(hostile).is_none(), "{hostile:?}");
        }
        let fixed = KeyUrl::parse("https://api.ebay.com/keys", &pins).unwrap();
        assert!(!fixed.takes_kid() && fixed.with_kid("k").is_none());
    }

    #[test]
    fn only_https_urls_on_a_pinned_host_are_fetched() {
        let pinned = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem";
        let url = KeyUrl::parse(pinned, &sns()).unwrap();
        assert_eq!(url.host(), "sns.eu-west-1.amazonaws.com");
        assert_eq!(url.to_string(), pinned);
        assert!(KeyUrl::parse("https://sns.cn-north-1.amazonaws.com.cn/x.pem", &sns()).is_ok());
        assert!(KeyUrl::parse("https://SNS.US-EAST-1.AMAZONAWS.COM/x.pem", &sns()).is_ok());
        use NotPinned::*;
        for (url, why) in [
            ("http://sns.us-east-1.amazonaws.com/x.pem", NotHttps),
            ("https://evil.com/x.pem", HostNotPinned("evil.com".into())),
            // `@`-tricks: the host is what follows the `@`.
            (
                "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
                Userinfo,
            ),
            (
                "https://sns.us-east-1.amazonaws.com:8443/x.pem",
                PortOrAddress,
            ),
            (
                "https://sns.us-east-1.amazonaws.com:443/x.pem",
                PortOrAddress,
            ),
            ("https://169.254.169.254/latest/meta-data", PortOrAddress),
            ("https://[::1]/x.pem", PortOrAddress),
            ("https://2130706433/x.pem", PortOrAddress),
            // One label for the `*`, no more, and no look-alike.
            (
                "https://sns.evil.com.amazonaws.com/x.pem",
                HostNotPinned("sns.evil.com.amazonaws.com".into()),
            ),
            (
                "https://sns.xn--us-east-1-xyz.amazonaws.com/x.pem",
                HostNotPinned("sns.xn--us-east-1-xyz.amazonaws.com".into()),
            ),
            (
                "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
                HostNotPinned("sns.us-east-1.amazonaws.com.evil.com".into()),
            ),
            (
                "https://sns.us-east-1.amazonaws.com./x.pem",
                HostNotPinned("sns.us-east-1.amazonaws.com.".into()),
            ),
            ("https://sns.us-east-1.amazonaws.com/../x.pem", Malformed),
            (
                "https://sns.us-east-1.amazonaws.com/a/%2e%2e/x.pem",
                Malformed,
            ),
            ("https://sns.us-east-1.amazonaws.com/a%2Fb.pem", Malformed),
            ("https://sns.us-east-1.amazonaws.com/x.pem#frag", Malformed),
            ("https://sns.us-east-1.amazonaws.com/x .pem", Malformed),
        ] {
            assert_eq!(KeyUrl::parse(url, &sns()), Err(why), "{url}");
        }
    }

    #[test]
    fn a_region_label_takes_regions_and_no_bucket_host() {
        let sns = [HostPattern::parse("sns.{region}.amazonaws.com").unwrap()];
        for host in [
            "sns.eu-west-1.amazonaws.com",
            "sns.us-gov-west-1.amazonaws.com",
            "sns.ap-southeast-2.amazonaws.com",
            "sns.cn-north-1.amazonaws.com",
            "sns.il-central-1.amazonaws.com",
        ] {
            assert!(sns[0].matches(host), "{host}");
        }
        for host in [
            "sns.s3.amazonaws.com",
            "sns.s3-external-1.amazonaws.com",
            "sns.s3-us-west-2.amazonaws.com",
            "sns.s3-accelerate.amazonaws.com",
            "sns.evil.amazonaws.com",
            "sns.eu-west.amazonaws.com",
            "sns.eu-west-100.amazonaws.com",
            "sns.xn--eu-west-1.amazonaws.com",
        ] {
            assert!(!sns[0].matches(host), "{host}");
        }
    }

    #[test]
    fn a_path_pattern_takes_one_run_of_name_characters_per_star_and_no_query() {
        let pem = PathPattern::parse("/SimpleNotificationService-*.pem").unwrap();
        assert!(pem.matches("/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"));
        for path in [
            "/SimpleNotificationService-.pem",
            "/SimpleNotificationService-a/b.pem",
            "/SimpleNotificationService-a.pem?x=1",
            "/SimpleNotificationService-a.pem/",
            "/x/SimpleNotificationService-a.pem",
            "/SimpleNotificationService-a.b.pem",
        ] {
            assert!(!pem.matches(path), "{path}");
        }
        let certs = PathPattern::parse("/v1/notifications/certs/*").unwrap();
        assert!(certs.matches("/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"));
        assert!(!certs.matches("/v1/notifications/certs/"));
        assert!(!certs.matches("/v1/notifications/certs/a/b"));
        let pins = [HostPattern::parse("api.paypal.com").unwrap()];
        assert_eq!(
            KeyUrl::parse_shaped("https://api.paypal.com/v1/oauth2/token", &pins, &[certs]),
            Err(NotPinned::PathNotPinned)
        );
        for bad in ["relative", "/a/../b", "/a?b", "/a**b", "/a%2fb"] {
            assert_eq!(PathPattern::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn patterns_are_whole_labels() {
        assert!(HostPattern::parse("api.paypal.com").is_some());
        for bad in [
            "*",
            "*.com",
            "a*.example.com",
            "Example.com",
            "com",
            "a..b",
            "ex ample.com",
        ] {
            assert_eq!(HostPattern::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_public_addresses_are_connected_to_unless_private_ones_are_allowed() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2001:db8::1",
            "2002:7f00:1::1",
            "64:ff9b::7f00:1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!address_allowed(ip, false), "{private}");
            assert!(address_allowed(ip, true), "{private}");
        }
        for public in [
            "52.94.236.248",
            "8.8.8.8",
            "2600:1f18::1",
            "::ffff:52.94.236.248",
        ] {
            assert!(address_allowed(public.parse().unwrap(), false), "{public}");
        }
    }
}
