//! PROXY protocol v1 and v2 (HAProxy's), for listeners behind an L4 load balancer that
//! passes TLS through (AWS NLB, HAProxy in TCP mode): the balancer writes the client's
//! address ahead of the connection's bytes, and that address becomes the connection's peer
//! for allowlists, logs and `X-Forwarded-For`.
//!
//! On a listener with `proxy_protocol: true` the header is required, and believed only from
//! a `trusted_proxies` peer: anyone else could name any address. Parsing is the `ppp` crate's.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest header read: a v1 header is at most 107 bytes, a v2 header 16 plus its
/// addresses and TLVs, which balancers keep to a few hundred bytes.
const MAX_HEADER: usize = 1024;

/// Why a connection on a PROXY-protocol listener was closed before any HTTP.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// No complete header within the time allowed.
    Timeout,
    /// Not a PROXY header, or one over [`MAX_HEADER`].
    Malformed(String),
    /// The connection failed or closed first.
    Closed,
}

/// Reads and consumes the PROXY header at the start of `stream`, exactly its bytes (what
/// follows is the client's TLS or HTTP). Returns the client address it carries, or `None`
/// for a `LOCAL` (v2) or `UNKNOWN` (v1) header, a balancer's own health check.
pub async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyError> {
    tokio::time::timeout(timeout, read(stream))
        .await
        .unwrap_or(Err(ProxyError::Timeout))
}

async fn read(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyError> {
    let mut buf = [0u8; MAX_HEADER];
    loop {
        // Peeked, not read: the header's length is known only once it parses, and the bytes
        // after it belong to the connection.
        let n = stream
            .peek(&mut buf)
            .await
            .map_err(|_| ProxyError::Closed)?;
        if n == 0 {
            return Err(ProxyError::Closed);
        }
        // A v1 line is complete only with its CRLF: parsed earlier, a line cut right after
        // a port reads as a (final) error rather than as incomplete.
        let v1_unfinished =
            buf[..n].starts_with(b"PROXY ") && !buf[..n].windows(2).any(|w| w == b"\r\n");
        let parsed = HeaderResult::parse(&buf[..n]);
        if v1_unfinished || parsed.is_incomplete() {
            if n == buf.len() {
                return Err(ProxyError::Malformed(format!(
                    "header over {MAX_HEADER} bytes"
                )));
            }
            // Rare (balancers send the header in one segment): wait for more bytes. Only a
            // trusted peer gets here, and only until header_read_timeout.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let (len, address) = match parsed {
            HeaderResult::V1(Ok(h)) => (
                h.header.len(),
                match h.addresses {
                    v1::Addresses::Tcp4(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    v1::Addresses::Tcp6(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    v1::Addresses::Unknown => None,
                },
            ),
            HeaderResult::V2(Ok(h)) => {
                let address = match (h.command, h.addresses) {
                    (v2::Command::Local, _) => None,
                    (_, v2::Addresses::IPv4(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    (_, v2::Addresses::IPv6(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    (_, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => None,
                };
                (h.len(), address)
            }
            HeaderResult::V1(Err(e)) => return Err(ProxyError::Malformed(e.to_string())),
            HeaderResult::V2(Err(e)) => return Err(ProxyError::Malformed(e.to_string())),
        };
        let mut header = vec![0u8; len];
        stream
            .read_exact(&mut header)
            .await
            .map_err(|_| ProxyError::Closed)?;
        return Ok(address);
    }
}
