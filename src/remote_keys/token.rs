//! OAuth 2.0 client-credentials tokens for the key APIs that take one (eBay's public key
//! API): one token per grant, got when first needed, kept until a little before its
//! `expires_in`, and got again after the API refused it (a 401). One request per grant is in
//! flight: callers wait for it rather than each asking the token endpoint.
//!
//! Neighbours: `cache.rs` asks for a token before a key API fetch; `fetch.rs` makes the
//! token request (`Call::token`) like any other, pinned and bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::scheme::fetched::TokenGrant;

use super::fetch::{FetchError, Fetched};

/// The longest token taken (eBay's are about 2 KiB).
const MAX_TOKEN: usize = 8 * 1024;

/// The longest a token is kept, in seconds.
const MAX_KEEP: u64 = 24 * 3600;

/// How long a token is kept when its endpoint does not say (`expires_in` absent).
const DEFAULT_KEEP: Duration = Duration::from_secs(60);

/// The grants' tokens.
#[derive(Default)]
pub struct Tokens {
    slots: Mutex<HashMap<Arc<TokenGrant>, Slot>>,
}

/// One grant's token, locked while it is got.
type Slot = Arc<tokio::sync::Mutex<Option<Held>>>;

/// A token and until when it is used.
struct Held {
    token: String,
    until: SystemTime,
}

impl Tokens {
    /// The grant's token: the one held while it is valid at `now`, else one got with `get`
    /// (by this caller, or by the one already getting it).
    pub async fn bearer<F, Fut>(
        &self,
        grant: &Arc<TokenGrant>,
        now: impl Fn() -> SystemTime,
        get: F,
    ) -> Result<String, FetchError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Fetched, FetchError>>,
    {
        let slot = self.slot(grant);
        let mut held = slot.lock().await;
        if let Some(h) = held.as_ref().filter(|h| now() < h.until) {
            return Ok(h.token.clone());
        }
        let fetched = get().await?;
        let (token, keep) = parse(&fetched.body).map_err(|why| FetchError::Token {
            host: grant.url.host().to_owned(),
            why,
        })?;
        *held = Some(Held {
            token: token.clone(),
            until: now() + keep,
        });
        Ok(token)
    }

    /// Drops the grant's token (the key API refused it), so the next fetch gets another.
    pub fn forget(&self, grant: &Arc<TokenGrant>) {
        if let Ok(mut held) = self.slot(grant).try_lock() {
            *held = None;
        }
    }

    fn slot(&self, grant: &Arc<TokenGrant>) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        // Grants come from the configuration; reloads can leave old ones behind.
        if slots.len() >= 64 && !slots.contains_key(grant) {
            slots.clear();
        }
        slots.entry(grant.clone()).or_default().clone()
    }
}

/// A token endpoint's answer (RFC 6749 §5.1): its `access_token`, and how long to keep it:
/// `expires_in` less a tenth (at most 5 minutes), so that a token is not sent as it expires.
fn parse(body: &[u8]) -> Result<(String, Duration), String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the token answer is not JSON: {e}"))?;
    let token = doc
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .ok_or("the token answer has no access_token")?;
    // It goes into a header as it is.
    if token.is_empty() || token.len() > MAX_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the access_token is not a header value of at most 8 KiB".into());
    }
    let keep = match doc.get("expires_in").and_then(serde_json::Value::as_u64) {
        // At most a day, whatever the endpoint says (and no time overflow).
        Some(secs) => Duration::from_secs(secs.min(MAX_KEEP) - (secs.min(MAX_KEEP) / 10).min(300)),
        None => DEFAULT_KEEP,
    };
    Ok((token.to_owned(), keep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::pin::{HostPattern, KeyUrl};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn grant() -> Arc<TokenGrant> {
        let pins = [HostPattern::parse("api.ebay.com").unwrap()];
        Arc::new(TokenGrant {
            url: KeyUrl::parse("https://api.ebay.com/identity/v1/oauth2/token", &pins).unwrap(),
            client_id: "id".into(),
            client_secret: "secret".into(),
            scope: "https://api.ebay.com/oauth/api_scope".into(),
        })
    }

    fn answer(body: &str) -> Result<Fetched, FetchError> {
        Ok(Fetched {
            body: bytes::Bytes::from(body.to_owned()),
            cache_control: None,
        })
    }

    #[tokio::test]
    async fn a_token_is_kept_until_shortly_before_it_expires_and_forgotten_when_refused() {
        let tokens = Tokens::default();
        let grant = grant();
        let asked = AtomicUsize::new(0);
        let at = std::sync::Mutex::new(SystemTime::UNIX_EPOCH);
        let now = || *at.lock().unwrap();
        let get = || async {
            asked.fetch_add(1, Ordering::SeqCst);
            answer(
                r#"{"access_token":"v^1.1#i^1","expires_in":7200,"token_type":"Application Access Token"}"#,
            )
        };
        assert_eq!(tokens.bearer(&grant, now, get).await.unwrap(), "v^1.1#i^1");
        assert_eq!(tokens.bearer(&grant, now, get).await.unwrap(), "v^1.1#i^1");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // 7200 s less 300 s.
        *at.lock().unwrap() += Duration::from_secs(6899);
        tokens.bearer(&grant, now, get).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        *at.lock().unwrap() += Duration::from_secs(1);
        tokens.bearer(&grant, now, get).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        tokens.forget(&grant);
        tokens.bearer(&grant, now, get).await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_answer_without_a_usable_token_is_an_error_and_nothing_is_kept() {
        let tokens = Tokens::default();
        let grant = grant();
        let now = || SystemTime::UNIX_EPOCH;
        // An endpoint's absurd lifetime is capped, not overflowed.
        let long = tokens
            .bearer(&grant, now, || async {
                answer(r#"{"access_token":"forever","expires_in":18446744073709551615}"#)
            })
            .await;
        assert_eq!(long.unwrap(), "forever");
        tokens.forget(&grant);
        for bad in [
            "not json",
            r#"{"error":"invalid_client"}"#,
            r#"{"access_token":""}"#,
            r#"{"access_token":"two words"}"#,
        ] {
            let e = tokens.bearer(&grant, now, || async { answer(bad) }).await;
            assert!(matches!(e, Err(FetchError::Token { .. })), "{bad}");
        }
        let ok = tokens
            .bearer(&grant, now, || async { answer(r#"{"access_token":"t"}"#) })
            .await;
        assert_eq!(ok.unwrap(), "t");
    }
}
