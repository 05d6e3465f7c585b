//! `key_fetch:`: how the keys that live on the network are fetched and kept (issue 23), for
//! the schemes whose key is fetched (`scheme/fetched.rs`). One cache serves the process; it
//! is built at start from this value (`remote_keys/`), so a change takes a restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFetch {
    /// The roots a key host's TLS certificate must chain to: this file's, else the system's.
    pub ca_file: Option<PathBuf>,
    /// Whether key hosts may resolve to loopback, private or link-local addresses (tests,
    /// issuers on a private network). Off: such an address is never connected to.
    pub allow_private_addresses: bool,
    /// Hosts connected to at an address of their own instead of resolving them (tests, split
    /// DNS); the address is checked as any other.
    pub connect_to: Vec<(String, SocketAddr)>,
    /// A document is kept at least `min_ttl` and at most `max_ttl`, `default_ttl` when its host
    /// sends no `Cache-Control: max-age`.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    pub default_ttl: Duration,
    /// After a failed fetch, the requests that needed it are refused (503, `Retry-After`)
    /// for this long before the next fetch.
    pub failure_backoff: Duration,
    pub connect_timeout: Duration,
    /// For a whole fetch once connected: TLS, request, answer.
    pub timeout: Duration,
    pub max_document_bytes: usize,
    /// The cache's bounds: URLs held, and the bytes of their documents.
    pub max_entries: usize,
    pub max_cache_bytes: usize,
    /// Fetches started per second, all URLs together.
    pub max_fetches_per_second: u32,
}

impl Default for KeyFetch {
    fn default() -> KeyFetch {
        KeyFetch {
            ca_file: None,
            allow_private_addresses: false,
            connect_to: Vec::new(),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: Duration::from_secs(3600),
            failure_backoff: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(5),
            max_document_bytes: 64 * 1024,
            max_entries: 256,
            max_cache_bytes: 4 * 1024 * 1024,
            max_fetches_per_second: 10,
        }
    }
}
