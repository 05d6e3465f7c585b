//! Who the client is. The TCP peer, unless the peer is a trusted proxy: then the rightmost
//! `X-Forwarded-For` entry that is not itself a trusted proxy. The leftmost entry is never
//! believed (anyone can write it), and an untrusted peer's `X-Forwarded-For` is ignored.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The client's address as far as allowlists are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientIp {
    Known(IpAddr),
    /// A trusted proxy sent an `X-Forwarded-For` entry we cannot parse: fail closed, so
    /// allowlisted routes refuse the request.
    Unknown,
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientIp::Known(ip) => ip.fmt(f),
            ClientIp::Unknown => f.write_str("unknown"),
        }
    }
}

/// Normalizes IPv4-mapped IPv6 (`::ffff:192.0.2.1`) to IPv4 so v4 CIDRs match dual-stack peers.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The address a per-client limit counts by: IPv4 as is, IPv6 by its /64 (the block one
/// host usually holds; counting single IPv6 addresses would let one host be many clients).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

pub fn is_in(ip: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// Decides the client address from the peer, the trusted proxy list and the request headers.
pub fn client_ip(peer: IpAddr, trusted: &[IpNet], headers: &HeaderMap) -> ClientIp {
    let peer = canonical(peer);
    if !is_in(peer, trusted) {
        return ClientIp::Known(peer);
    }
    // All X-Forwarded-For headers, in order, form one list.
    let mut entries: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return ClientIp::Unknown;
        };
        entries.extend(text.split(',').map(str::trim));
    }
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_entry(entry) else {
            return ClientIp::Unknown;
        };
        client = ip;
        if !is_in(ip, trusted) {
            break;
        }
    }
    ClientIp::Known(client)
}

/// `192.0.2.1`, `2001:db8::1`, `192.0.2.1:443` or `[2001:db8::1]:443`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// Is this client allowed on a route with this allowlist (`None`: anyone)?
pub fn allowed(client: ClientIp, allow: Option<&[IpNet]>) -> bool {
    match (allow, client) {
        (None, _) => true,
        (Some(nets), ClientIp::Known(ip)) => is_in(ip, nets),
        (Some(_), ClientIp::Unknown) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn decisions() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        // (peer, x-forwarded-for headers, expected client)
        let cases: &[(&str, &[&str], ClientIp)] = &[
            // untrusted peer: its XFF is ignored, however convincing
            (
                "198.51.100.7",
                &["203.0.113.10"],
                ClientIp::Known(ip("198.51.100.7")),
            ),
            // trusted peer, no XFF: the peer itself
            ("10.0.0.5", &[], ClientIp::Known(ip("10.0.0.5"))),
            // trusted peer: rightmost entry
            (
                "10.0.0.5",
                &["203.0.113.10"],
                ClientIp::Known(ip("203.0.113.10")),
            ),
            // spoofed leftmost entry is not believed
            (
                "10.0.0.5",
                &["203.0.113.10, 198.51.100.7"],
                ClientIp::Known(ip("198.51.100.7")),
            ),
            // trusted hops are skipped from the right
            (
                "10.0.0.5",
                &["198.51.100.7, 10.1.1.1"],
                ClientIp::Known(ip("198.51.100.7")),
            ),
            // several headers form one list
            (
                "10.0.0.5",
                &["1.1.1.1", "198.51.100.7"],
                ClientIp::Known(ip("198.51.100.7")),
            ),
            // entries with ports, IPv6 forms
            (
                "10.0.0.5",
                &["[2001:db8::1]:443"],
                ClientIp::Known(ip("2001:db8::1")),
            ),
            (
                "fd00::1",
                &["192.0.2.1:8080"],
                ClientIp::Known(ip("192.0.2.1")),
            ),
            // all entries trusted: the leftmost one
            (
                "10.0.0.5",
                &["10.9.9.9, 10.1.1.1"],
                ClientIp::Known(ip("10.9.9.9")),
            ),
            // garbage from a trusted proxy: unknown, fail closed
            ("10.0.0.5", &["not-an-ip"], ClientIp::Unknown),
            // IPv4-mapped peer is treated as IPv4
            (
                "::ffff:10.0.0.5",
                &["203.0.113.10"],
                ClientIp::Known(ip("203.0.113.10")),
            ),
        ];
        for (peer, headers, want) in cases {
            assert_eq!(
                client_ip(ip(peer), &trusted, &xff(headers)),
                *want,
                "peer {peer} xff {headers:?}"
            );
        }
    }

    #[test]
    fn allowlist() {
        let allow = nets(&["203.0.113.0/24", "2001:db8::/32"]);
        assert!(allowed(ClientIp::Known(ip("203.0.113.10")), Some(&allow)));
        assert!(allowed(ClientIp::Known(ip("2001:db8::5")), Some(&allow)));
        assert!(!allowed(ClientIp::Known(ip("198.51.100.7")), Some(&allow)));
        assert!(!allowed(ClientIp::Unknown, Some(&allow)));
        assert!(allowed(ClientIp::Unknown, None));
    }
}
