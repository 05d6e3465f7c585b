//! Keys that live on the network (issue 23: AWS SNS's and PayPal's certificates, Google's and
//! other issuers' JWKS): where one may be fetched from (`pin.rs`: pinned hosts, public
//! addresses only) and how long it is kept and when it may be fetched again (`freshness.rs`),
//! both pure decisions with table tests; one fetch of a document from a pinned URL
//! (`fetch.rs`: verified TLS, no redirect, bounded in size and time); and the cache that
//! ties them together (`cache.rs`: one fetch per URL in flight, kept and refreshed, bounded,
//! 503 with `Retry-After` when no key can be had). The schemes that use it come next.

pub mod cache;
pub mod fetch;
pub mod freshness;
pub mod pin;
