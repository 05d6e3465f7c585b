//! A route's replay policy as compiled (which key identifies an event, how long it is
//! remembered, what to do when the store is down) and which store holds the keys.

use std::time::Duration;

use http::HeaderName;

use crate::scheme::{RequestView, VerifyError};

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
    /// The dedup key of a verified request, or `None` if the request does not carry one. A
    /// JSON key is read from the body's one strict parse (an error if it is not strict JSON).
    pub fn key_bytes(
        &self,
        request: &RequestView<'_>,
        signature: &[u8],
    ) -> Result<Option<Vec<u8>>, VerifyError> {
        Ok(match &self.key {
            KeySource::Header(names) => {
                let mut values = names.iter().flat_map(|n| request.headers.get_all(n).iter());
                let first = values.next();
                // Two copies (or one under two names) are ambiguous: no key.
                match (first, values.next()) {
                    (Some(value), None) => Some(value.as_bytes().to_vec()),
                    _ => None,
                }
            }
            KeySource::Json(pointer) => request
                .json()?
                .pointer(pointer)
                .and_then(|v| match v {
                    // A string or an integer; anything else has no one text.
                    serde_json::Value::String(_) | serde_json::Value::Number(_) => {
                        crate::scheme::json::render(v)
                    }
                    _ => None,
                })
                .map(|text| text.as_bytes().to_vec()),
            KeySource::Signature => Some(signature.to_vec()),
        }
        .filter(|key| !key.is_empty()))
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
