//! Fetched key documents, kept per URL: what a scheme asks for when it verifies with a key
//! from the network. At most one fetch per URL is in flight (others wait for its result);
//! a document is kept as `freshness.rs` says and refreshed ahead of expiry, served while it
//! is still valid even when a refresh fails; a failure is remembered for the backoff, and a
//! document without the `kid` a request names is fetched again at most once per interval.
//! When no document can be had the caller gets [`Unavailable`] with how long to ask the
//! sender to wait (`Retry-After`): the request is refused, never accepted unverified.
//! The cache is bounded in entries and bytes: past either, the entry used least recently is
//! dropped.
//!
//! Neighbours: `fetch.rs` makes each fetch, `pin.rs` made the URL; the schemes of issue 23
//! (SNS, PayPal, JWKS) read the documents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::fetch::{send, Call, FetchError, Limits, Resolve};
use super::freshness::{Fetch, Held, Policy};
use crate::scheme::fetched::KeyRequest;
use crate::scheme::pin::KeyUrl;

/// The bounds of the cache as a whole.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub max_entries: usize,
    pub max_bytes: usize,
    /// Fetches started per second, all URLs together (a burst of as many): requests that
    /// name URLs not in the cache cannot make the gateway hammer a key host, or push out
    /// what it holds, faster than this.
    pub fetches_per_second: u32,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            max_entries: 256,
            max_bytes: 4 * 1024 * 1024,
            fetches_per_second: 10,
        }
    }
}

/// The fetches a cache may start: a token bucket of `Bounds::fetches_per_second`.
struct FetchBudget {
    tokens: f64,
    at: std::time::Instant,
}

/// No document for the request: refuse it with 503 and `Retry-After: retry_after`.
#[derive(Debug, thiserror::Error)]
#[error("no key from {url}: {why} (retry after {retry_after:?})")]
pub struct Unavailable {
    pub url: String,
    pub why: String,
    pub retry_after: Duration,
    /// The document in hand, fetched moments ago, when it is only the key asked for that it
    /// lacks (a `kid` no key of the issuer has): the caller may call that a refusal of the
    /// request rather than an outage.
    pub lacking: Option<Bytes>,
}

/// One URL's document and its fetching.
struct Entry {
    held: Held,
    /// The document, while it is valid (until `held`'s `until`).
    doc: Option<Bytes>,
    /// Taken by the one caller fetching; the others wait on it, then read the result.
    fetching: Arc<tokio::sync::Mutex<()>>,
    last_used: SystemTime,
    /// A refresh failed while the document was valid: it serves, unrefreshed, until then.
    quiet_until: Option<SystemTime>,
    /// A fetch of it ever succeeded: its refreshes are not held to the budget for new URLs
    /// (there are at most as many as the cache holds, each once per lifetime).
    ever_held: bool,
}

/// The counters a cache moves (`metrics.rs` registers them).
#[derive(Clone)]
pub struct KeyMetrics {
    /// Fetches by result: `ok` or why not (`FetchError::label`).
    pub fetches: prometheus::IntCounterVec,
    /// Lookups by result: `hit` (served from the cache), `fetched`, `unavailable`.
    pub lookups: prometheus::IntCounterVec,
}

/// One URL's entry as the admin listener shows it.
#[derive(Clone, Debug)]
pub struct HeldUrl {
    pub url: String,
    /// When the document in hand was fetched, and until when it is kept.
    pub fetched: Option<(SystemTime, SystemTime)>,
    /// When the last fetch failed, if the entry holds no document since.
    pub failed_at: Option<SystemTime>,
    pub doc: Option<Bytes>,
}

/// The documents fetched, per URL.
pub struct KeyCache {
    entries: Mutex<HashMap<KeyRequest, Entry>>,
    policy: Policy,
    limits: Limits,
    bounds: Bounds,
    tls: Arc<rustls::ClientConfig>,
    resolve: Resolve,
    clock: fn() -> SystemTime,
    fetches: std::sync::atomic::AtomicU64,
    metrics: Option<KeyMetrics>,
    budget: Mutex<FetchBudget>,
    /// Per key API host: when a key id not asked for before was
    /// last fetched. Each key id is a document of its own, so without this every forged id
    /// would be a call to the sender's API with the route's credentials.
    /// Kept per host: a key API asked by path (eBay's) has a URL per key id.
    new_kids: Mutex<HashMap<String, SystemTime>>,
    /// The documents as the schemes read them, parsed once (`parsed.rs`).
    pub parsed: super::parsed::ParsedDocs,
    /// The URLs `get_once` fetched.
    done: Mutex<std::collections::HashSet<KeyUrl>>,
    /// The OAuth tokens of key APIs that take one.
    tokens: super::token::Tokens,
    /// The roots key hosts are verified with: signing certificates chain to them too.
    roots: Arc<rustls::RootCertStore>,
}

impl KeyCache {
    pub fn new(
        policy: Policy,
        limits: Limits,
        bounds: Bounds,
        tls: Arc<rustls::ClientConfig>,
        resolve: Resolve,
        clock: fn() -> SystemTime,
    ) -> KeyCache {
        KeyCache {
            entries: Mutex::new(HashMap::new()),
            policy,
            limits,
            bounds,
            tls,
            resolve,
            clock,
            fetches: std::sync::atomic::AtomicU64::new(0),
            metrics: None,
            new_kids: Mutex::new(HashMap::new()),
            parsed: super::parsed::ParsedDocs::default(),
            done: Mutex::default(),
            tokens: super::token::Tokens::default(),
            roots: Arc::new(rustls::RootCertStore::empty()),
            budget: Mutex::new(FetchBudget {
                tokens: f64::from(bounds.fetches_per_second),
                at: std::time::Instant::now(),
            }),
        }
    }

    /// For a key API's key id not held now (never fetched, or fetched and failed): how long
    /// until one may be fetched, if another was less than `unknown_kid_interval` ago (else it
    /// is recorded as fetched now). A key held is refreshed freely.
    fn new_kid_wait(&self, request: &KeyRequest, held: bool) -> Option<Duration> {
        request.kid.as_ref()?;
        if held {
            return None;
        }
        let now = (self.clock)();
        let mut last = self.new_kids.lock().unwrap_or_else(|e| e.into_inner());
        let next = last
            .get(request.url.host())
            .map(|t| *t + self.policy.unknown_kid_interval);
        match next {
            Some(next) if now < next => next.duration_since(now).ok(),
            _ => {
                last.insert(request.url.host().to_owned(), now);
                None
            }
        }
    }

    /// Takes one fetch from the budget, or says none is left this second.
    fn may_start_fetch(&self) -> bool {
        let rate = f64::from(self.bounds.fetches_per_second);
        let mut b = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The same cache, counting into `metrics`.
    pub fn with_metrics(self, metrics: KeyMetrics) -> KeyCache {
        KeyCache {
            metrics: Some(metrics),
            ..self
        }
    }

    /// The same cache, chaining signing certificates to `roots`.
    pub fn with_roots(self, roots: Arc<rustls::RootCertStore>) -> KeyCache {
        KeyCache { roots, ..self }
    }

    /// The trust anchors signing certificates chain to.
    pub fn anchors(&self) -> &[rustls::pki_types::TrustAnchor<'static>] {
        &self.roots.roots
    }

    /// The cache's clock (the gateway's; a test's own).
    pub fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// How long ago the oldest document held was fetched (zero when none is held).
    pub fn oldest_age(&self) -> Duration {
        let now = (self.clock)();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .values()
            .filter_map(|e| match (e.held, &e.doc) {
                (Held::Keys { at, .. }, Some(_)) => now.duration_since(at).ok(),
                _ => None,
            })
            .max()
            .unwrap_or_default()
    }

    /// Every URL held, for the admin listener: what was fetched when, or when it failed.
    pub fn held(&self) -> Vec<HeldUrl> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut held: Vec<HeldUrl> = entries
            .iter()
            .map(|(url, e)| HeldUrl {
                url: url.to_string(),
                fetched: match e.held {
                    Held::Keys { at, until } if e.doc.is_some() => Some((at, until)),
                    _ => None,
                },
                failed_at: match e.held {
                    Held::Failed { at } => Some(at),
                    _ => None,
                },
                doc: e.doc.clone(),
            })
            .collect();
        held.sort_by(|a, b| a.url.cmp(&b.url));
        held
    }

    /// One `GET` of `url` through the same pinned, bounded fetcher and within the same
    /// budget, not cached, and made once: a URL fetched successfully is not fetched again
    /// (SNS's `SubscribeURL` confirms a subscription once; a captured confirmation sent again
    /// costs nothing). Remembered for the last 1,024 URLs.
    pub async fn get_once(&self, url: &KeyUrl) -> Result<(), String> {
        if self.lock_done().contains(url) {
            return Ok(());
        }
        if !self.may_start_fetch() {
            return Err("too many fetches right now".into());
        }
        self.fetch_counted(&KeyRequest::from(url.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let mut done = self.lock_done();
        if done.len() >= 1024 {
            done.clear();
        }
        done.insert(url.clone());
        Ok(())
    }

    /// One fetch, counted (`fetches()` and `hookgate_key_fetches_total{result}`).
    async fn fetch_counted(
        &self,
        request: &KeyRequest,
    ) -> Result<super::fetch::Fetched, FetchError> {
        let Some(grant) = &request.token else {
            return self.send_counted(&Call::of(request, None)).await;
        };
        let asked = Call::token(grant);
        let bearer = self
            .tokens
            .bearer(grant, self.clock, || self.send_counted(&asked))
            .await?;
        let fetched = self.send_counted(&Call::of(request, Some(&bearer))).await;
        if let Err(FetchError::Status { status, .. }) = &fetched {
            if *status == http::StatusCode::UNAUTHORIZED {
                self.tokens.forget(grant);
            }
        }
        fetched
    }

    /// One exchange, counted.
    async fn send_counted(&self, call: &Call<'_>) -> Result<super::fetch::Fetched, FetchError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fetched = send(call, self.tls.clone(), &self.resolve, &self.limits).await;
        if let Some(m) = &self.metrics {
            let result = fetched.as_ref().map_or_else(FetchError::label, |_| "ok");
            m.fetches.with_label_values(&[result]).inc();
        }
        fetched
    }

    fn lock_done(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<KeyUrl>> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, lookup: &str) {
        if let Some(m) = &self.metrics {
            m.lookups.with_label_values(&[lookup]).inc();
        }
    }

    /// How many fetches were made (each counted once it started), for the metrics.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The document at `url`, holding what `wanted` looks for (a `kid`; `|_| true` when any
    /// document will do): from the cache, or fetched (by this caller or one already
    /// fetching it).
    pub async fn get(
        &self,
        url: &KeyRequest,
        wanted: &(dyn Fn(&Bytes) -> bool + Sync),
    ) -> Result<Bytes, Unavailable> {
        let answered = |cache: &KeyCache, decided: Decided| match decided {
            Decided::Serve(doc) => {
                cache.count("hit");
                Some(Ok(doc))
            }
            Decided::Refuse(e) => {
                cache.count("unavailable");
                Some(Err(e))
            }
            Decided::Fetch(_) => None,
        };
        let gate = match self.decide(url, wanted) {
            Decided::Fetch(gate) => gate,
            decided => return answered(self, decided).expect("served or refused"),
        };
        let _fetching = gate.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(answer) = answered(self, self.decide(url, wanted)) {
            return answer;
        }
        if let Some(refused) = self.may_fetch_now(url, wanted) {
            return refused;
        }
        let fetched = self.fetch_counted(url).await;
        if let Err(e) = &fetched {
            tracing::warn!(url = %url, error = %e, "key fetch failed");
        }
        let answer = self.record(url, fetched, wanted);
        self.count(if answer.is_ok() {
            "fetched"
        } else {
            "unavailable"
        });
        answer
    }

    /// Whether a fetch of `url` may start now: a key id never held waits for the API's
    /// interval, and a URL never held for the budget. When it may not, a document still valid
    /// serves; else the request is refused, and an entry that never held anything is dropped,
    /// so refused requests leave nothing behind. `None`: fetch.
    fn may_fetch_now(
        &self,
        url: &KeyRequest,
        wanted: &(dyn Fn(&Bytes) -> bool + Sync),
    ) -> Option<Result<Bytes, Unavailable>> {
        let (valid, ever_held) = {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let now = (self.clock)();
            entries.get(url).map_or((None, false), |e| {
                let valid = match (e.held, &e.doc) {
                    (Held::Keys { until, .. }, Some(doc)) if now < until && wanted(doc) => {
                        Some(doc.clone())
                    }
                    _ => None,
                };
                (valid, e.ever_held)
            })
        };
        let (why, retry_after) = if let Some(wait) = self.new_kid_wait(url, valid.is_some()) {
            ("a key id not asked for before, too soon", wait)
        } else if !ever_held && !self.may_start_fetch() {
            ("too many key fetches right now", Duration::from_secs(1))
        } else {
            return None;
        };
        if let Some(doc) = valid {
            self.count("hit");
            return Some(Ok(doc));
        }
        self.count("unavailable");
        if !ever_held {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.remove(url);
        }
        let mut e = self.unavailable(url, why.into());
        e.retry_after = retry_after;
        Some(Err(e))
    }

    /// What the cache holds for `url` decides: serve it, refuse, or fetch (with the gate
    /// the fetch is made under).
    fn decide(&self, url: &KeyRequest, wanted: &(dyn Fn(&Bytes) -> bool + Sync)) -> Decided {
        let now = (self.clock)();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !entries.contains_key(url) {
            // Room first: the cache never holds more than its bounds, whatever asks.
            evict(&mut entries, self.bounds, 1);
        }
        let entry = entries.entry(url.clone()).or_insert_with(|| Entry {
            held: Held::Nothing,
            doc: None,
            fetching: Arc::new(tokio::sync::Mutex::new(())),
            last_used: now,
            quiet_until: None,
            ever_held: false,
        });
        entry.last_used = now;
        if let Held::Keys { until, .. } = entry.held {
            if now >= until {
                entry.doc = None;
            }
        }
        let known = entry.doc.as_ref().is_some_and(wanted);
        if let (Some(doc), true, Some(quiet)) = (&entry.doc, known, entry.quiet_until) {
            if now < quiet {
                return Decided::Serve(doc.clone());
            }
        }
        match self.policy.may_fetch(entry.held, known, now) {
            Fetch::NotNeeded => match &entry.doc {
                Some(doc) => Decided::Serve(doc.clone()),
                None => Decided::Fetch(entry.fetching.clone()),
            },
            Fetch::Now => Decided::Fetch(entry.fetching.clone()),
            Fetch::Wait(left) => match (&entry.doc, known) {
                // A refresh failed while the document is still valid: it serves.
                (Some(doc), true) => Decided::Serve(doc.clone()),
                _ => Decided::Refuse(Unavailable {
                    url: url.to_string(),
                    why: match entry.held {
                        Held::Failed { .. } => "the last fetch failed".into(),
                        _ => "the key asked for is not in the document, fetched moments ago".into(),
                    },
                    retry_after: left,
                    lacking: entry.doc.clone(),
                }),
            },
        }
    }

    /// Keeps a fetch's result and answers the caller that made it.
    fn record(
        &self,
        url: &KeyRequest,
        fetched: Result<super::fetch::Fetched, FetchError>,
        wanted: &(dyn Fn(&Bytes) -> bool + Sync),
    ) -> Result<Bytes, Unavailable> {
        let now = (self.clock)();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let answer = {
            let Some(entry) = entries.get_mut(url) else {
                return Err(self.unavailable(url, "dropped from the cache".into()));
            };
            match fetched {
                Ok(f) => {
                    let keep = self.policy.keep_for(f.cache_control.as_deref());
                    entry.held = Held::Keys {
                        at: now,
                        until: now + keep,
                    };
                    entry.doc = Some(f.body.clone());
                    entry.quiet_until = None;
                    if wanted(&f.body) {
                        entry.ever_held = true;
                        Ok(f.body)
                    } else {
                        let mut e = self
                            .unavailable(url, "the key asked for is not in the document".into());
                        e.lacking = Some(f.body);
                        Err(e)
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    match (entry.doc.clone(), entry.held) {
                        // Still valid: it serves, and the next refresh waits for the backoff.
                        (Some(doc), Held::Keys { until, .. }) if now < until && wanted(&doc) => {
                            entry.quiet_until = Some(now + self.policy.failure_backoff);
                            Ok(doc)
                        }
                        _ => {
                            entry.held = Held::Failed { at: now };
                            entry.doc = None;
                            Err(self.unavailable(url, why))
                        }
                    }
                }
            }
        };
        // A key id that was never held, and is not now: nothing is kept for it (a forged
        // id is asked for again only through the API's interval).
        let never = entries.get(url).is_some_and(|e| !e.ever_held);
        if url.kid.is_some() && answer.is_err() && never {
            entries.remove(url);
        }
        evict(&mut entries, self.bounds, 0);
        answer
    }

    fn unavailable(&self, url: &KeyRequest, why: String) -> Unavailable {
        Unavailable {
            url: url.to_string(),
            why,
            retry_after: self.policy.failure_backoff,
            lacking: None,
        }
    }
}

enum Decided {
    Serve(Bytes),
    Refuse(Unavailable),
    Fetch(Arc<tokio::sync::Mutex<()>>),
}

/// Drops entries until the cache is within its bounds with room for `room` more: those
/// without a document (failures, URLs never fetched) before those with one, each kind least
/// recently used first, and never one being fetched (its fetcher is about to record into
/// it). So URLs a request invented, which fail, cannot push out a document in use.
fn evict(entries: &mut HashMap<KeyRequest, Entry>, bounds: Bounds, room: usize) {
    let size = |e: &Entry| e.doc.as_ref().map_or(0, Bytes::len);
    let mut bytes: usize = entries.values().map(size).sum();
    let mut count = entries.len();
    let fits = |count: usize, bytes: usize| {
        count + room <= bounds.max_entries && bytes <= bounds.max_bytes
    };
    if fits(count, bytes) {
        return;
    }
    let mut order: Vec<(bool, SystemTime, usize, &KeyRequest)> = entries
        .iter()
        .filter(|(_, e)| Arc::strong_count(&e.fetching) == 1)
        .map(|(k, e)| (e.doc.is_some(), e.last_used, size(e), k))
        .collect();
    order.sort_by_key(|(has_doc, used, _, _)| (*has_doc, *used));
    let mut gone = Vec::new();
    for (_, _, doc_bytes, url) in order {
        if fits(count, bytes) {
            break;
        }
        gone.push(url.clone());
        count -= 1;
        bytes -= doc_bytes;
    }
    for url in gone {
        entries.remove(&url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_keys::fetch::tests::{answer, pki, resolver, url, KeyServer};
    use std::sync::atomic::{AtomicU64, Ordering};

    static NOW: AtomicU64 = AtomicU64::new(1_800_000_000);

    fn clock() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.load(Ordering::SeqCst))
    }

    fn advance(secs: u64) {
        NOW.fetch_add(secs, Ordering::SeqCst);
    }

    fn cache(server: &KeyServer, client: Arc<rustls::ClientConfig>) -> Arc<KeyCache> {
        let limits = Limits {
            allow_private: true,
            ..Limits::default()
        };
        Arc::new(KeyCache::new(
            Policy::default(),
            limits,
            Bounds::default(),
            client,
            resolver(server.addr),
            clock,
        ))
    }

    fn has(kid: &'static str) -> impl Fn(&Bytes) -> bool + Sync {
        move |doc: &Bytes| String::from_utf8_lossy(doc).contains(kid)
    }

    // One test, in steps: the clock is one static for the module.
    #[tokio::test]
    async fn one_fetch_at_a_time_kept_refreshed_and_never_a_storm() {
        let (tls, client) = pki();
        let keys = r#"{"keys":[{"kid":"k1"}]}"#;
        let server = KeyServer::start(
            tls,
            answer("200 OK", "Cache-Control: max-age=600\r\n", keys),
        )
        .await;
        let cache = cache(&server, client);

        // Ten requests at once: one fetch, every one served.
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                cache.get(&url().into(), &has("k1")).await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(server.requests(), 1);
        // Kept: no fetch within its time.
        advance(300);
        assert!(cache.get(&url().into(), &has("k1")).await.is_ok());
        assert_eq!(server.requests(), 1);

        // Forged kids: one fetch per 30 s at most, whatever the number of requests.
        for _ in 0..20 {
            assert!(cache.get(&url().into(), &has("forged")).await.is_err());
        }
        assert_eq!(server.requests(), 2, "one refetch for the unknown kid");
        let refused = cache.get(&url().into(), &has("forged")).await.unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(30), "{refused}");
        advance(31);
        assert!(cache.get(&url().into(), &has("forged")).await.is_err());
        assert_eq!(server.requests(), 3);
        // The known kid is still served all along.
        assert!(cache.get(&url().into(), &has("k1")).await.is_ok());
        assert_eq!(server.requests(), 3);

        // The key host fails in the refresh window: the valid document still serves, and the
        // next refresh waits the backoff.
        server.answers(answer("503 Unavailable", "Cache-Control: no-store\r\n", ""));
        advance(549); // t = 880: in the last tenth of the fetch at 331, kept until 931
        assert!(cache.get(&url().into(), &has("k1")).await.is_ok());
        assert_eq!(server.requests(), 4);
        assert!(cache.get(&url().into(), &has("k1")).await.is_ok());
        assert_eq!(server.requests(), 4, "quiet for the backoff");

        // Expired and the host still down: refused with Retry-After, one fetch per backoff.
        advance(120);
        let e = cache.get(&url().into(), &has("k1")).await.unwrap_err();
        assert_eq!(e.retry_after, Duration::from_secs(10), "{e}");
        assert_eq!(server.requests(), 5);
        assert!(cache.get(&url().into(), &has("k1")).await.is_err());
        assert_eq!(server.requests(), 5);
        // Back up: served again after the backoff.
        server.answers(answer("200 OK", "Cache-Control: max-age=600\r\n", keys));
        advance(11);
        assert!(cache.get(&url().into(), &has("k1")).await.is_ok());
        assert_eq!(server.requests(), 6);
        assert_eq!(cache.fetches(), 6);
    }

    // A clock of its own: tests run side by side.
    static BUDGET_NOW: AtomicU64 = AtomicU64::new(1_800_000_000);

    fn budget_clock() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(BUDGET_NOW.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn the_budget_holds_new_urls_back_never_the_documents_in_use() {
        let (tls, client) = pki();
        let server = KeyServer::start(
            tls,
            answer("200 OK", "Cache-Control: max-age=100\r\n", "doc"),
        )
        .await;
        let pins = [crate::scheme::pin::HostPattern::parse("keys.test.example").unwrap()];
        let at = |path: &str| {
            KeyRequest::from(
                KeyUrl::parse(&format!("https://keys.test.example/{path}"), &pins).unwrap(),
            )
        };
        let cache = KeyCache::new(
            Policy::default(),
            Limits {
                allow_private: true,
                ..Limits::default()
            },
            Bounds {
                fetches_per_second: 1,
                ..Bounds::default()
            },
            client,
            resolver(server.addr),
            budget_clock,
        );
        let any = |_: &Bytes| true;
        assert!(cache.get(&at("in-use"), &any).await.is_ok());
        // The one fetch of this second is spent: a URL never held waits, and leaves nothing.
        let e = cache.get(&at("invented"), &any).await.unwrap_err();
        assert_eq!(e.retry_after, Duration::from_secs(1), "{e}");
        assert_eq!(cache.held().len(), 1);
        assert_eq!(server.requests(), 1);
        // The document in use, due for its refresh (past nine tenths of its 100 s), is
        // refreshed all the same: it is not a new URL.
        BUDGET_NOW.fetch_add(95, Ordering::SeqCst);
        assert!(cache.get(&at("in-use"), &any).await.is_ok());
        assert_eq!(server.requests(), 2, "refreshed outside the budget");
    }

    #[test]
    fn the_entries_used_least_recently_go_first_past_either_bound() {
        let pins = [crate::scheme::pin::HostPattern::parse("keys.test.example").unwrap()];
        let key = |n: u64| {
            KeyRequest::from(
                KeyUrl::parse(&format!("https://keys.test.example/{n}"), &pins).unwrap(),
            )
        };
        let entry = |used: u64, bytes: usize| Entry {
            held: Held::Nothing,
            doc: Some(Bytes::from(vec![b'k'; bytes])),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
            last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(used),
            quiet_until: None,
            ever_held: true,
        };
        let mut entries: HashMap<KeyRequest, Entry> =
            (0..5).map(|n| (key(n), entry(100 - n, 100))).collect();
        evict(
            &mut entries,
            Bounds {
                max_entries: 3,
                max_bytes: 10_000,
                ..Bounds::default()
            },
            0,
        );
        let mut left: Vec<_> = entries.keys().map(|k| k.to_string()).collect();
        left.sort();
        assert_eq!(left.len(), 3);
        assert!(
            left[0].ends_with("/0") && left[2].ends_with("/2"),
            "{left:?}"
        );
        evict(
            &mut entries,
            Bounds {
                max_entries: 3,
                max_bytes: 150,
                ..Bounds::default()
            },
            0,
        );
        assert_eq!(entries.len(), 1);
        assert!(entries.contains_key(&key(0)), "the one used last stays");

        // Failures go before documents, however recent; an entry being fetched stays.
        let mut entries: HashMap<KeyRequest, Entry> =
            (0..5).map(|n| (key(n), entry(10 + n, 100))).collect();
        for n in 5..10 {
            let mut failed = entry(100 + n, 0);
            failed.doc = None;
            entries.insert(key(n), failed);
        }
        let in_flight = entries[&key(0)].fetching.clone();
        evict(
            &mut entries,
            Bounds {
                max_entries: 4,
                ..Bounds::default()
            },
            0,
        );
        let mut left: Vec<u64> = entries
            .keys()
            .map(|k| k.url.path_and_query()[1..].parse().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![0, 2, 3, 4],
            "failures first, then the oldest not in flight"
        );
        drop(in_flight);
    }
}
