//! Replay and duplicate protection: at most one delivery of each event to the app.
//!
//! After a request verified, its dedup key (a header, a JSON field, or the signature itself)
//! is claimed in a store. The semantics lose nothing and deliver nothing twice:
//! - never seen: claim it (in flight), forward, and remember it only if the app answered 2xx;
//! - delivered within the TTL: answer 200 with `x-hookgate-duplicate: true`, do not forward;
//! - in flight (another copy is being forwarded right now): 409, so the sender retries later;
//! - an earlier delivery failed: the claim was released, so it is forwarded again.
//!
//! Stores: `memory` (bounded by entries and TTL, for one instance) and `redis` (shared by
//! replicas; an atomic `SET NX PX` claim, a compare-and-delete release). Keys are hashed, so
//! event ids never reach the store in clear and every key has the same size.
//!
//! Neighbours: `gateway.rs` calls [`Store::claim`] between verify and forward, and settles the
//! [`ClaimGuard`] with the upstream's answer; `config/` compiles [`ReplayPolicy`].

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::model::ReplayStoreConfig;

/// The store's name for one event of one route: `route:hex(sha256(key))`.
pub fn store_key(route: &str, key: &[u8]) -> String {
    format!("{route}:{}", hex::encode(Sha256::digest(key)))
}

/// The result of claiming a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours: forward, then settle with [`ClaimGuard`].
    New(Token),
    Delivered,
    InFlight,
}

/// Identifies one claim, so a release can never delete another gateway's claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub(crate) fn fresh() -> Token {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static PROCESS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        // RandomState is seeded from the OS: a random id per process, no extra crate.
        let process = *PROCESS.get_or_init(|| {
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        });
        Token(format!(
            "{process:016x}-{}",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayStoreError {
    #[error("replay store timed out")]
    Timeout,
    #[error("replay store: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("replay store answered unexpectedly: {0}")]
    Protocol(String),
}

/// The configured store.
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Store {
    /// Builds the store; a Redis connection is made lazily, so the gateway starts (and refuses
    /// or allows per `on_store_error`) while Redis is down. Needs a Tokio runtime.
    pub fn new(
        config: &ReplayStoreConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Store, ReplayStoreError> {
        // Up until a round trip says otherwise (the memory store always is).
        metrics.replay_store_up.set(1);
        Ok(match config {
            ReplayStoreConfig::Memory { max_entries } => {
                Store::Memory(MemoryStore::new(*max_entries, metrics))
            }
            ReplayStoreConfig::Redis {
                url,
                prefix,
                timeout,
            } => Store::Redis(RedisStore::new(
                url,
                prefix,
                *timeout,
                metrics.replay_store_up.clone(),
            )?),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    /// Claims `key` for `in_flight_ttl` (after which a crashed gateway's claim lapses).
    /// One health round trip (Redis: PING), which sets `hookgate_replay_store_up` like any
    /// other; so the gauge follows the store on a quiet route too, not only when a request
    /// happens to reach it. The memory store is always up.
    pub async fn probe(&self) {
        if let Store::Redis(r) = self {
            let _ = r.run::<String>(&redis::cmd("PING")).await;
        }
    }

    pub async fn claim(
        &self,
        key: &str,
        in_flight_ttl: Duration,
    ) -> Result<Claim, ReplayStoreError> {
        match self {
            Store::Memory(m) => Ok(m.claim(key, in_flight_ttl)),
            Store::Redis(r) => r.claim(key, in_flight_ttl).await,
        }
    }

    /// Records a successful delivery, remembered for `ttl`.
    pub async fn delivered(
        &self,
        key: &str,
        token: &Token,
        ttl: Duration,
    ) -> Result<(), ReplayStoreError> {
        match self {
            Store::Memory(m) => {
                m.delivered(key, token, ttl);
                Ok(())
            }
            Store::Redis(r) => r.delivered(key, token, ttl).await,
        }
    }

    /// Gives up a claim (the delivery failed), so a retry is forwarded.
    pub async fn release(&self, key: &str, token: &Token) -> Result<(), ReplayStoreError> {
        match self {
            Store::Memory(m) => {
                m.release(key, token);
                Ok(())
            }
            Store::Redis(r) => r.release(key, token).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Memory

#[derive(Debug)]
enum State {
    InFlight(Token),
    Delivered,
}

#[derive(Debug)]
struct Entry {
    state: State,
    expires: Instant,
    /// Insertion number, matching this entry's place in the eviction queue.
    seq: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Insertion order for eviction; items whose `seq` no longer matches are stale.
    order: VecDeque<(String, u64)>,
    next_seq: u64,
}

/// One instance's store: at most `max_entries` keys. When full, the oldest entries go first
/// (expired or delivered ones; an unexpired in-flight claim is never evicted), each eviction
/// counted, so a flood of unique keys cannot grow memory without bound.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    max_entries: usize,
    metrics: Arc<Metrics>,
}

impl MemoryStore {
    pub fn new(max_entries: usize, metrics: Arc<Metrics>) -> MemoryStore {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            max_entries: max_entries.max(1),
            metrics,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent in a way that
        // matters more than refusing service; keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn claim(&self, key: &str, in_flight_ttl: Duration) -> Claim {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Some(e) = inner.entries.get(key) {
            if e.expires > now {
                return match e.state {
                    State::Delivered => Claim::Delivered,
                    State::InFlight(_) => Claim::InFlight,
                };
            }
            inner.entries.remove(key);
        }
        self.make_room(&mut inner, now);
        let token = Token::fresh();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.entries.insert(
            key.to_owned(),
            Entry {
                state: State::InFlight(token.clone()),
                expires: now + in_flight_ttl,
                seq,
            },
        );
        inner.order.push_back((key.to_owned(), seq));
        self.metrics
            .replay_memory_entries
            .set(inner.entries.len() as i64);
        Claim::New(token)
    }

    fn delivered(&self, key: &str, token: &Token, ttl: Duration) {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.get_mut(key) {
            if matches!(&e.state, State::InFlight(t) if t == token) {
                e.state = State::Delivered;
                e.expires = Instant::now() + ttl;
            }
        }
    }

    fn release(&self, key: &str, token: &Token) {
        let mut inner = self.lock();
        if matches!(inner.entries.get(key), Some(Entry { state: State::InFlight(t), .. }) if t == token)
        {
            inner.entries.remove(key);
        }
        self.metrics
            .replay_memory_entries
            .set(inner.entries.len() as i64);
    }

    /// Evicts from the oldest end until there is room for one more entry.
    fn make_room(&self, inner: &mut Inner, now: Instant) {
        // Stale queue items (released or re-inserted keys) are dropped as they are met; keep
        // the queue itself bounded too.
        if inner.order.len() > self.max_entries * 2 {
            let Inner { entries, order, .. } = inner;
            order.retain(|(k, seq)| entries.get(k).is_some_and(|e| e.seq == *seq));
        }
        let mut skipped = 0;
        while inner.entries.len() >= self.max_entries {
            let Some((key, seq)) = inner.order.pop_front() else {
                break;
            };
            let keep = match inner.entries.get(&key) {
                Some(e) if e.seq == seq => matches!(e.state, State::InFlight(_)) && e.expires > now,
                _ => continue, // stale queue item
            };
            if keep {
                // A live claim: never evicted. If every entry is one, admit going over.
                inner.order.push_back((key, seq));
                skipped += 1;
                if skipped > inner.order.len() {
                    break;
                }
                continue;
            }
            inner.entries.remove(&key);
            self.metrics.replay_memory_evictions.inc();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redis

/// Shared store for several replicas. Values: `i:<token>` while in flight, `d` once delivered.
pub struct RedisStore {
    manager: redis::aio::ConnectionManager,
    prefix: String,
    timeout: Duration,
    release_script: redis::Script,
    deliver_script: redis::Script,
    /// `hookgate_replay_store_up`: whether the last round trip succeeded.
    up: prometheus::IntGauge,
}

impl RedisStore {
    fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        up: prometheus::IntGauge,
    ) -> Result<RedisStore, ReplayStoreError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = redis::aio::ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(RedisStore {
            manager,
            prefix: prefix.to_owned(),
            timeout,
            // Only the claim's owner may settle it: compare the token, then act.
            release_script: redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
            ),
            deliver_script: redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], 'd', 'PX', ARGV[2]) else return 0 end",
            ),
            up,
        })
    }

    /// One round trip, bounded by the configured timeout.
    async fn bounded<T>(
        &self,
        round_trip: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ReplayStoreError> {
        let result = match tokio::time::timeout(self.timeout, round_trip).await {
            Ok(r) => r.map_err(ReplayStoreError::from),
            Err(_) => Err(ReplayStoreError::Timeout),
        };
        self.up.set(i64::from(result.is_ok()));
        result
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ReplayStoreError> {
        let mut conn = self.manager.clone();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    async fn claim(&self, key: &str, in_flight_ttl: Duration) -> Result<Claim, ReplayStoreError> {
        let key = format!("{}{key}", self.prefix);
        // A key can expire between SET NX and GET; one more round settles it.
        for _ in 0..2 {
            let token = Token::fresh();
            let set: Option<String> = self
                .run(
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(format!("i:{}", token.0))
                        .arg("NX")
                        .arg("PX")
                        .arg(millis(in_flight_ttl)),
                )
                .await?;
            if set.is_some() {
                return Ok(Claim::New(token));
            }
            let value: Option<String> = self.run(redis::cmd("GET").arg(&key)).await?;
            match value.as_deref() {
                Some("d") => return Ok(Claim::Delivered),
                Some(v) if v.starts_with("i:") => return Ok(Claim::InFlight),
                Some(other) => return Err(ReplayStoreError::Protocol(format!("value {other:?}"))),
                None => continue,
            }
        }
        Ok(Claim::InFlight)
    }

    async fn delivered(
        &self,
        key: &str,
        token: &Token,
        ttl: Duration,
    ) -> Result<(), ReplayStoreError> {
        let key = format!("{}{key}", self.prefix);
        let mut conn = self.manager.clone();
        let mut invocation = self.deliver_script.key(key);
        invocation.arg(format!("i:{}", token.0)).arg(millis(ttl));
        self.bounded(invocation.invoke_async::<redis::Value>(&mut conn))
            .await
            .map(|_| ())
    }

    async fn release(&self, key: &str, token: &Token) -> Result<(), ReplayStoreError> {
        let key = format!("{}{key}", self.prefix);
        let mut conn = self.manager.clone();
        let mut invocation = self.release_script.key(key);
        invocation.arg(format!("i:{}", token.0));
        self.bounded(invocation.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

// ---------------------------------------------------------------------------------------------
// Settling a claim

/// An open claim. Settle it with the upstream's answer; if the request is dropped first (the
/// client went away mid-forward), the claim is released in the background so retries are not
/// blocked until it lapses.
pub struct ClaimGuard {
    store: Arc<Store>,
    key: String,
    token: Token,
    route: String,
    metrics: Arc<Metrics>,
    settled: bool,
}

impl ClaimGuard {
    pub fn new(
        store: Arc<Store>,
        key: String,
        token: Token,
        route: &str,
        metrics: Arc<Metrics>,
    ) -> Self {
        ClaimGuard {
            store,
            key,
            token,
            route: route.to_owned(),
            metrics,
            settled: false,
        }
    }

    /// Delivered (the app answered 2xx): remember for `ttl`. Otherwise release.
    pub async fn settle(mut self, delivered: bool, ttl: Duration) {
        self.settled = true;
        let started = Instant::now();
        let (op, result) = if delivered {
            (
                "delivered",
                self.store.delivered(&self.key, &self.token, ttl).await,
            )
        } else {
            ("release", self.store.release(&self.key, &self.token).await)
        };
        self.metrics
            .replay_store_duration
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = result {
            // The claim lapses on its own; until then retries get 409, after it they are
            // forwarded again (at-least-once, never silently dropped).
            tracing::error!(route = self.route.as_str(), op, error = %e, "replay store: could not settle claim");
            self.metrics
                .replay_store_errors
                .with_label_values(&[&self.route, op])
                .inc();
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let store = self.store.clone();
        let key = std::mem::take(&mut self.key);
        let token = self.token.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = store.release(&key, &token).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeySource, OnStoreError, ReplayPolicy};
    use http::{HeaderMap, HeaderName};

    fn store(max: usize) -> MemoryStore {
        MemoryStore::new(max, Arc::new(Metrics::new()))
    }

    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn claim_deliver_duplicate_release_cycle() {
        let s = store(10);
        let Claim::New(t) = s.claim("r:a", LONG) else {
            panic!("first claim is new")
        };
        assert_eq!(s.claim("r:a", LONG), Claim::InFlight);
        s.delivered("r:a", &t, LONG);
        assert_eq!(s.claim("r:a", LONG), Claim::Delivered);

        let Claim::New(t2) = s.claim("r:b", LONG) else {
            panic!()
        };
        s.release("r:b", &t2);
        assert!(
            matches!(s.claim("r:b", LONG), Claim::New(_)),
            "released: forward again"
        );
    }

    #[test]
    fn a_stale_token_cannot_settle_someone_elses_claim() {
        let s = store(10);
        let Claim::New(old) = s.claim("r:a", Duration::from_millis(1)) else {
            panic!()
        };
        std::thread::sleep(Duration::from_millis(5));
        let Claim::New(_new) = s.claim("r:a", LONG) else {
            panic!("expired claim can be taken over")
        };
        s.release("r:a", &old);
        s.delivered("r:a", &old, LONG);
        assert_eq!(
            s.claim("r:a", LONG),
            Claim::InFlight,
            "the new claim stands"
        );
    }

    #[test]
    fn delivered_keys_expire_after_their_ttl() {
        let s = store(10);
        let Claim::New(t) = s.claim("r:a", LONG) else {
            panic!()
        };
        s.delivered("r:a", &t, Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(10));
        assert!(matches!(s.claim("r:a", LONG), Claim::New(_)));
    }

    #[test]
    fn a_flood_of_unique_keys_stays_within_the_bound() {
        let metrics = Arc::new(Metrics::new());
        let s = MemoryStore::new(1000, metrics.clone());
        for i in 0..50_000 {
            if let Claim::New(t) = s.claim(&format!("r:{i}"), LONG) {
                s.delivered(&format!("r:{i}"), &t, LONG);
            }
        }
        assert_eq!(s.len(), 1000);
        assert_eq!(metrics.replay_memory_evictions.get(), 49_000);
        assert!(s.lock().order.len() <= 2001, "eviction queue bounded too");
        // The newest keys are still remembered.
        assert_eq!(s.claim("r:49999", LONG), Claim::Delivered);
    }

    #[test]
    fn live_in_flight_claims_are_never_evicted() {
        let s = store(2);
        let Claim::New(_a) = s.claim("r:a", LONG) else {
            panic!()
        };
        let Claim::New(_b) = s.claim("r:b", LONG) else {
            panic!()
        };
        // Full of live claims: a third is admitted over the bound rather than evicting one.
        assert!(matches!(s.claim("r:c", LONG), Claim::New(_)));
        assert_eq!(s.claim("r:a", LONG), Claim::InFlight);
        assert_eq!(s.claim("r:b", LONG), Claim::InFlight);
    }

    #[test]
    fn keys_come_from_header_json_or_signature() {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", "msg_1".parse().unwrap());
        let p = |key| ReplayPolicy {
            key,
            ttl: LONG,
            on_store_error: OnStoreError::Reject,
        };
        let body = br#"{"id":"evt_1","n":7,"e":"","f":1.5}"#;
        let key = |policy: &ReplayPolicy, headers: &HeaderMap, body: &'static [u8], sig| {
            let raw = crate::body::RawBody::from(bytes::Bytes::from_static(body));
            let json = crate::scheme::JsonBody::default();
            let request = crate::scheme::RequestView {
                method: &http::Method::POST,
                headers,
                body: &raw,
                path_and_query: "/",
                json: &json,
            };
            policy.key_bytes(&request, sig)
        };
        let header = p(KeySource::Header(vec![HeaderName::from_static(
            "webhook-id",
        )]));
        assert_eq!(key(&header, &h, body, b"sig"), Ok(Some(b"msg_1".to_vec())));
        assert_eq!(key(&header, &HeaderMap::new(), body, b"sig"), Ok(None));
        let json = |pointer: &str| p(KeySource::Json(pointer.into()));
        assert_eq!(
            key(&json("/id"), &h, body, b""),
            Ok(Some(b"evt_1".to_vec()))
        );
        assert_eq!(key(&json("/n"), &h, body, b""), Ok(Some(b"7".to_vec())));
        assert_eq!(key(&json("/e"), &h, body, b""), Ok(None));
        assert_eq!(key(&json("/f"), &h, body, b""), Ok(None), "no one text");
        assert!(
            matches!(
                key(&json("/id"), &h, b"not json", b""),
                Err(crate::scheme::VerifyError::NotStrictJson(_))
            ),
            "a body that is not strict JSON is refused, not keyless"
        );
        assert!(matches!(
            key(&json("/id"), &h, br#"{"id":"a","id":"b"}"#, b""),
            Err(crate::scheme::VerifyError::NotStrictJson(_))
        ));
        assert_eq!(
            key(&p(KeySource::Signature), &h, body, b"sig"),
            Ok(Some(b"sig".to_vec()))
        );
        // Keys are hashed per route.
        assert_ne!(store_key("a", b"x"), store_key("b", b"x"));
        assert_eq!(store_key("a", b"x").len(), 2 + 64);
    }
}
