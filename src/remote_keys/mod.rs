//! Keys that live on the network (issue 23: AWS SNS's and PayPal's certificates, Google's and
//! other issuers' JWKS, Plaid's and eBay's key APIs): how long one is kept and when it may
//! be fetched again (`freshness.rs`, a pure decision with table tests; where one may come
//! from is the scheme's `pin.rs`); one fetch of a document from a pinned URL (`fetch.rs`:
//! verified TLS, no redirect, bounded in size and time); the OAuth tokens a key API takes
//! (`token.rs`); the documents parsed once (`parsed.rs`); and the cache that ties them
//! together (`cache.rs`: one fetch per URL in flight, kept and refreshed, bounded, 503 with
//! `Retry-After` when no key can be had). The schemes read what it holds (`scheme/fetched.rs`).

pub mod cache;
pub mod fetch;
pub mod freshness;
pub mod parsed;
pub mod token;

use std::sync::Arc;
use std::time::SystemTime;

use crate::model::key_fetch::KeyFetch;

/// The process's key cache, as `key_fetch:` says, verifying key hosts with `tls` (built by
/// the server from `key_fetch.ca_file` or the system's roots).
pub fn cache_for(
    config: &KeyFetch,
    tls: Arc<rustls::ClientConfig>,
    roots: Arc<rustls::RootCertStore>,
    metrics: cache::KeyMetrics,
    clock: fn() -> SystemTime,
) -> cache::KeyCache {
    let policy = freshness::Policy {
        min: config.min_ttl,
        max: config.max_ttl,
        default: config.default_ttl,
        failure_backoff: config.failure_backoff,
        ..freshness::Policy::default()
    };
    let limits = fetch::Limits {
        connect_timeout: config.connect_timeout,
        read_timeout: config.timeout,
        max_bytes: config.max_document_bytes,
        allow_private: config.allow_private_addresses,
    };
    let bounds = cache::Bounds {
        max_entries: config.max_entries,
        max_bytes: config.max_cache_bytes,
        fetches_per_second: config.max_fetches_per_second,
    };
    let resolve = fetch::resolver_with(config.connect_to.clone());
    cache::KeyCache::new(policy, limits, bounds, tls, resolve, clock)
        .with_metrics(metrics)
        .with_roots(roots)
}
