//! A route's replay policy as compiled (which key identifies an event, how long it is
//! remembered, what to do when the store is down) and which store holds the keys.

use std::time::Duration;

use http::{HeaderMap, HeaderName};

/// What identifies one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A request header, e.g. `webhook-id` or `X-GitHub-Delivery`, under any of these names
    /// (Shopify's Events deliveries drop the `X-`); exactly one copy may be present.
    Header(Vec<HeaderName>),
    /// A JSON pointer into the body, e.g. `/id`.
    Json(String),
    /// The decoded signature that verified: the exact signed request, whatever it contains.
    Signature,
}

/// What to do when the store cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStoreError {
    /// Answer 503 so the sender retries later: nothing is lost, nothing is doubled.
    Reject,
    /// Forward without dedup (counted).
    Allow,
}

/// A route's `replay:` block, compiled.
#[derive(Clone, Debug)]
pub struct ReplayPolicy {
    pub key: KeySource,
    /// How long a delivered key is remembered.
    pub ttl: Duration,
    pub on_store_error: OnStoreError,
}

impl ReplayPolicy {
    /// The dedup key of a verified request, or `None` if the request does not carry one.
    pub fn key_bytes(&self, headers: &HeaderMap, body: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
        match &self.key {
            KeySource::Header(names) => {
                let mut values = names.iter().flat_map(|n| headers.get_all(n).iter());
                let value = values.next()?;
                // Two copies (or one under two names) are ambiguous: no key.
                if values.next().is_some() {
                    return None;
                }
                Some(value.as_bytes().to_vec()).filter(|v| !v.is_empty())
            }
            KeySource::Json(pointer) => {
                let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
                match doc.pointer(pointer)? {
                    serde_json::Value::String(s) if !s.is_empty() => Some(s.as_bytes().to_vec()),
                    serde_json::Value::Number(n) => Some(n.to_string().into_bytes()),
                    _ => None,
                }
            }
            KeySource::Signature => Some(signature.to_vec()).filter(|s| !s.is_empty()),
        }
    }
}

/// Which store, from the top-level `replay_store:` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayStoreConfig {
    Memory {
        max_entries: usize,
    },
    Redis {
        url: String,
        /// Prepended to every key, so several gateways or apps can share one Redis.
        prefix: String,
        /// Bound on each store round trip; past it the store counts as unreachable.
        timeout: Duration,
    },
}

impl Default for ReplayStoreConfig {
    fn default() -> Self {
        ReplayStoreConfig::Memory {
            max_entries: 100_000,
        }
    }
}
