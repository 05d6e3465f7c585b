//! Bounded, timed body collection. The size limit is enforced while reading (so a chunked body
//! with no Content-Length cannot get past it) and a declared Content-Length over the limit is
//! refused before a byte is read. The whole body must arrive within one deadline, so a client
//! trickling bytes cannot hold a connection and a buffer forever.
//!
//! The body is kept as the chunks it arrived in ([`RawBody`]): the MAC runs over them in
//! order and the same chunks are sent upstream, so a large body is never copied into one
//! buffer unless a scheme needs to parse it (JSON timestamps, form parameters).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

/// Why a body was not read; `refusal.rs` turns each into its `Refusal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyRefused {
    /// Over the route's `max_body_bytes` (declared or counted).
    TooLarge,
    /// Not all there within the body read timeout.
    Timeout,
    /// The process-wide body budget, or this client's share of it, cannot hold it.
    BudgetFull,
    /// The client broke off or sent a malformed body.
    Broken,
}

/// A request body exactly as received: its chunks in order.
#[derive(Debug, Default)]
pub struct RawBody {
    chunks: Vec<Bytes>,
    len: usize,
    /// The chunks joined, made on first demand when there is more than one.
    joined: OnceLock<Bytes>,
    /// The share of the body budget these bytes hold (`None` for bodies made in code).
    reservation: Option<Reservation>,
}

impl RawBody {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes in order, chunk by chunk.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// The whole body in one slice: free for a body that arrived in one chunk, one copy
    /// (made once) otherwise.
    pub fn contiguous(&self) -> &[u8] {
        match self.chunks.as_slice() {
            [] => &[],
            [one] => one,
            many => self.joined.get_or_init(|| {
                let mut all = BytesMut::with_capacity(self.len);
                for c in many {
                    all.extend_from_slice(c);
                }
                all.freeze()
            }),
        }
    }

    /// The whole body as one shared buffer (see [`RawBody::contiguous`]).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            _ => {
                self.contiguous();
                self.joined.get().cloned().unwrap_or_default()
            }
        }
    }

    /// A body made of these chunks, in order (empty ones are dropped).
    pub fn from_chunks(chunks: Vec<Bytes>) -> RawBody {
        RawBody {
            len: chunks.iter().map(Bytes::len).sum(),
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            joined: OnceLock::new(),
            reservation: None,
        }
    }

    /// The body to send upstream: the same chunks, with their exact total length.
    pub fn into_upstream(self) -> UpstreamBody {
        UpstreamBody {
            len: self.len as u64,
            chunks: self.chunks.into(),
            _reservation: self.reservation,
        }
    }
}

impl From<Bytes> for RawBody {
    fn from(b: Bytes) -> RawBody {
        RawBody::from_chunks(vec![b])
    }
}

impl From<&'static [u8]> for RawBody {
    fn from(b: &'static [u8]) -> RawBody {
        RawBody::from(Bytes::from_static(b))
    }
}

impl From<Vec<u8>> for RawBody {
    fn from(b: Vec<u8>) -> RawBody {
        RawBody::from(Bytes::from(b))
    }
}

impl PartialEq for RawBody {
    fn eq(&self, other: &RawBody) -> bool {
        self.contiguous() == other.contiguous()
    }
}

/// The verified body on its way upstream.
#[derive(Debug)]
pub struct UpstreamBody {
    chunks: VecDeque<Bytes>,
    len: u64,
    /// Held until the body has been sent and dropped.
    _reservation: Option<Reservation>,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let chunk = self.chunks.pop_front();
        if let Some(c) = &chunk {
            self.len -= c.len() as u64;
        }
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// The process-wide budget for request bodies held in memory (`limits.max_buffered_body_bytes`).
/// Without it, the ceiling would be `max_connections x max_body_bytes` (10 GiB with the
/// defaults), reachable by anyone who can open connections to a route without `allow_ips`.
///
/// Bytes are charged as they arrive, never on a request's word: a `Content-Length` only
/// decides whether the body is admitted at all. And one client address may hold at most
/// [`CLIENT_SHARE`] of the budget (at least one largest body), so a single sender, even with
/// 256 HTTP/2 streams on one connection, cannot starve the others.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicU64,
    /// The most held at once since memory was last given back (see [`BodyBudget::trim`]).
    peak: AtomicU64,
    /// Changed by a reload; bodies already held stay.
    limit: AtomicU64,
    /// Bytes held per client address (an IPv6 /64 as one); trusted proxies are not counted.
    per_client: std::sync::Mutex<HashMap<IpAddr, u64>>,
    /// Bytes held right now (`hookgate_body_buffered_bytes`).
    gauge: prometheus::IntGauge,
}

/// The part of the budget one client address may hold: 1/16.
pub const CLIENT_SHARE: u64 = 16;

impl BodyBudget {
    pub fn new(limit: u64, gauge: prometheus::IntGauge) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
            per_client: std::sync::Mutex::new(HashMap::new()),
            gauge,
        })
    }

    /// A reload's new `max_buffered_body_bytes`.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Release);
    }

    /// After a burst of bodies has come and gone, gives the freed memory back to the system.
    ///
    /// glibc keeps freed memory in its per-thread arenas: after a flood of large bodies the
    /// process kept its peak RSS (200 MiB and more) indefinitely. Called periodically (off
    /// the request path): once at least [`TRIM_AFTER`] was held and at most an eighth of that
    /// is held now, `malloc_trim` returns the free pages. Blocks for a few milliseconds when
    /// it trims; `trim_due` says whether it would.
    pub fn trim(&self) {
        self.peak
            .store(self.used.load(Ordering::Acquire), Ordering::Release);
        release_free_memory();
    }

    /// Whether a burst has passed since the last [`BodyBudget::trim`].
    pub fn trim_due(&self) -> bool {
        let peak = self.peak.load(Ordering::Acquire);
        peak >= TRIM_AFTER && self.used.load(Ordering::Acquire) <= peak / 8
    }

    /// Admits a body of `declared` bytes (0 if unknown) from `client` (`None`: not counted
    /// per client), or `None` if it could not fit now. Nothing is charged yet.
    fn admit(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        declared: u64,
        max_body: u64,
    ) -> Option<Reservation> {
        let limit = self.limit.load(Ordering::Acquire);
        let share = (limit / CLIENT_SHARE).max(max_body);
        let r = Reservation {
            budget: self.clone(),
            client,
            share,
            bytes: 0,
        };
        let used = self.used.load(Ordering::Acquire);
        let held = client.map_or(0, |c| r.held_by(c));
        let fits = used.saturating_add(declared) <= limit && held.saturating_add(declared) <= share;
        fits.then_some(r)
    }
}

/// Budget held by one body for as long as its bytes are in memory: moved into [`RawBody`]
/// and on into the [`UpstreamBody`], and given back when that is dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    client: Option<IpAddr>,
    /// What this body's client may hold in all.
    share: u64,
    bytes: u64,
}

impl Reservation {
    fn held_by(&self, client: IpAddr) -> u64 {
        let map = self
            .budget
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(&client).copied().unwrap_or(0)
    }

    /// Charges `more` bytes just received, or refuses if the budget or this client's share
    /// cannot hold them.
    fn grow(&mut self, more: u64) -> bool {
        let b = &self.budget;
        if let Some(client) = self.client {
            let mut map = b.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let held = map.entry(client).or_insert(0);
            if held.saturating_add(more) > self.share {
                if *held == 0 {
                    map.remove(&client);
                }
                return false;
            }
            *held += more;
        }
        let grown = b
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more)
                    .filter(|&n| n <= b.limit.load(Ordering::Acquire))
            })
            .is_ok();
        if !grown {
            self.release_client(more);
            return false;
        }
        self.bytes += more;
        b.gauge.add(more as i64);
        let used = b.used.load(Ordering::Relaxed);
        if used > b.peak.load(Ordering::Relaxed) {
            b.peak.fetch_max(used, Ordering::AcqRel);
        }
        true
    }

    fn release_client(&self, bytes: u64) {
        let Some(client) = self.client else { return };
        let mut map = self
            .budget
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(held) = map.get_mut(&client) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                map.remove(&client);
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        self.release_client(self.bytes);
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.gauge.sub(self.bytes as i64);
    }
}

/// Bodies held at once before a later quiet moment is worth a `malloc_trim`.
const TRIM_AFTER: u64 = 32 * 1024 * 1024;

/// Memory freed at the top of a heap that glibc keeps instead of giving back at once.
const KEEP_FREED: usize = 4 * 1024 * 1024;

/// Sets glibc's automatic trimming to a fixed [`KEEP_FREED`] (call once, at start, before
/// other threads allocate). By default glibc returns free memory to the system as soon as
/// 128 KiB lies free at the top of a heap, and moves that threshold itself; the queue store's
/// writer (SQLite's page cache, on a thread arena of its own) then faulted its pages back in
/// on every commit: 26 page faults and about 70 us of system time per event in
/// `examples/store_probe.rs`, and CPU per event varied threefold between runs. A fixed
/// threshold keeps a few MiB, and a flood of bodies is still returned by the explicit
/// `malloc_trim` above (glibc only; elsewhere a no-op).
pub fn keep_freed_memory_nearby() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc's allocator parameters; it takes no pointer.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_FREED as libc::c_int);
    }
}

/// Returns freed heap pages to the system (glibc only; elsewhere a no-op).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas, under their locks; it takes no
    // pointer and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How a body is read: the route's limits, and whose it is.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max: u64,
    pub deadline: Duration,
    /// The client address the body counts against (`None`: a trusted proxy, or unknown).
    pub client: Option<IpAddr>,
}

/// After a refusal with the body still coming, at most this much more is read and thrown
/// away (as nginx's lingering close does), so that the client has stopped sending by the time
/// the connection closes and receives the refusal instead of a TCP reset.
const LINGER_BYTES: u64 = 4 * 1024 * 1024;
/// ... and for at most this long.
const LINGER_TIME: Duration = Duration::from_secs(5);

/// What the request declared about its body.
#[derive(Clone, Copy, Debug, Default)]
pub struct Declared {
    /// `Content-Length`, if given.
    pub length: Option<u64>,
    /// Whether a refused body must be read off first (HTTP/1.x without `Expect:
    /// 100-continue`). An HTTP/2 stream is reset without harm to its connection, and an
    /// `Expect` client sends nothing until the body is first read.
    pub lingers: bool,
}

impl Declared {
    pub fn of(version: http::Version, headers: &http::HeaderMap) -> Declared {
        let expects_continue = headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        Declared {
            length: content_length(headers),
            lingers: version < http::Version::HTTP_2 && !expects_continue,
        }
    }
}

/// Reads the whole body, or refuses: 413 over `limits.max`, 503 when the process-wide body
/// budget cannot hold it, 408 past `limits.deadline`, 400 on a broken body.
///
/// A declared length that could not fit the budget now is refused before a byte is read;
/// bytes are charged as they arrive. On 413 or 503 with an HTTP/1.1 client still sending, a
/// bounded amount is read and discarded first, so the client reads the answer.
pub async fn read_body<B>(
    body: B,
    declared: Declared,
    limits: BodyLimits,
    budget: &Arc<BodyBudget>,
) -> Result<RawBody, BodyRefused>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let outcome = if declared.length.is_some_and(|n| n > limits.max) {
        Err((BodyRefused::TooLarge, 0))
    } else {
        match budget.admit(limits.client, declared.length.unwrap_or(0), limits.max) {
            None => Err((BodyRefused::BudgetFull, 0)),
            Some(reservation) => {
                let read = collect(body.as_mut(), limits.max, reservation);
                match tokio::time::timeout(limits.deadline, read).await {
                    Err(_) => return Err(BodyRefused::Timeout),
                    Ok(outcome) => outcome,
                }
            }
        }
    };
    let (refusal, read) = match outcome {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    if matches!(refusal, BodyRefused::TooLarge | BodyRefused::BudgetFull) && declared.lingers {
        let left = declared.length.map(|n| n.saturating_sub(read));
        linger(body, left).await;
    }
    Err(refusal)
}

/// Reads frames until the body ends; on a refusal, also how many bytes were read.
async fn collect<B>(
    mut body: Pin<&mut B>,
    max: u64,
    mut reservation: Reservation,
) -> Result<RawBody, (BodyRefused, u64)>
where
    B: Body<Data = Bytes>,
{
    let mut chunks = Vec::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err((BodyRefused::Broken, total));
        };
        // Trailers (chunked encoding) are not part of the signed bytes and are dropped.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > max {
            return Err((BodyRefused::TooLarge, total));
        }
        if !reservation.grow(data.len() as u64) {
            return Err((BodyRefused::BudgetFull, total));
        }
        chunks.push(data);
    }
    let mut raw = RawBody::from_chunks(chunks);
    raw.reservation = Some(reservation);
    Ok(raw)
}

/// Reads and discards what is left of a refused body, bounded by [`LINGER_BYTES`] and
/// [`LINGER_TIME`]. A body declared longer than that is not read at all: the client would
/// be reset anyway, and reading it would only cost time.
async fn linger<B>(mut body: Pin<&mut B>, left: Option<u64>)
where
    B: Body<Data = Bytes>,
{
    if left.is_some_and(|n| n > LINGER_BYTES) {
        return;
    }
    let drain = async {
        let mut seen: u64 = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > LINGER_BYTES {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// True unless the body has a transfer coding besides chunked. hyper decodes only
/// `chunked` (and refuses a Transfer-Encoding whose last coding is not chunked); a body sent
/// `gzip, chunked`, or `identity` then `chunked`, would be verified and forwarded as the
/// still-coded bytes under a Content-Length, a meaning the sender did not give it.
pub fn plain_framing(headers: &http::HeaderMap) -> bool {
    let mut te = headers.get_all(http::header::TRANSFER_ENCODING).iter();
    match (te.next(), te.next()) {
        (None, _) => true,
        (Some(v), None) => v.as_bytes().eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => false,
    }
}

/// The declared Content-Length, if present and well-formed.
pub fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use http_body_util::Full;

    /// A body that yields its chunks with no declared length, then either ends or stalls.
    struct Chunks {
        chunks: VecDeque<Bytes>,
        stall: bool,
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.chunks.pop_front() {
                Some(c) => Poll::Ready(Some(Ok(Frame::data(c)))),
                None if self.stall => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }

    fn chunks(n: usize, stall: bool) -> Chunks {
        Chunks {
            chunks: (0..n).map(|_| Bytes::from_static(b"abcd")).collect(),
            stall,
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    fn budget(limit: u64) -> Arc<BodyBudget> {
        BodyBudget::new(limit, prometheus::IntGauge::new("g", "g").unwrap())
    }

    /// Reads with a roomy budget; `length` is the declared Content-Length.
    async fn read<B>(
        body: B,
        length: Option<u64>,
        max: u64,
        deadline: Duration,
    ) -> Result<RawBody, BodyRefused>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let declared = Declared {
            length,
            lingers: false,
        };
        let limits = BodyLimits {
            max,
            deadline,
            client: None,
        };
        read_body(body, declared, limits, &budget(1 << 20)).await
    }

    #[tokio::test]
    async fn small_body_is_read() {
        let b = read(Full::new(Bytes::from_static(b"hello")), Some(5), 10, SECOND).await;
        assert_eq!(b, Ok(RawBody::from(&b"hello"[..])));
        let b = read(chunks(2, false), None, 10, SECOND).await.unwrap();
        assert_eq!(b.chunks().len(), 2, "kept as received");
        assert_eq!(b.len(), 8);
        assert_eq!(b.contiguous(), b"abcdabcd");
    }

    #[tokio::test]
    async fn the_upstream_body_is_the_same_chunks_with_an_exact_length() {
        let b = read(chunks(3, false), None, 100, SECOND).await.unwrap();
        let up = b.into_upstream();
        assert_eq!(up.size_hint().exact(), Some(12));
        let sent = up.collect().await.unwrap().to_bytes();
        assert_eq!(&sent[..], b"abcdabcdabcd");
    }

    #[tokio::test]
    async fn declared_length_over_limit_is_refused_unread() {
        let b = read(Full::new(Bytes::from_static(b"hi")), Some(11), 10, SECOND).await;
        assert_eq!(b, Err(BodyRefused::TooLarge));
    }

    #[tokio::test]
    async fn undeclared_body_over_limit_is_refused_while_reading() {
        let b = read(chunks(5, false), None, 10, SECOND).await;
        assert_eq!(b, Err(BodyRefused::TooLarge));
    }

    #[tokio::test]
    async fn stalled_body_times_out() {
        let b = read(chunks(1, true), None, 10, Duration::from_millis(50)).await;
        assert_eq!(b, Err(BodyRefused::Timeout));
    }

    #[tokio::test]
    async fn the_budget_charges_what_arrives_and_refuses_what_would_not_fit() {
        let b = budget(10);
        let limits = BodyLimits {
            max: 100,
            deadline: SECOND,
            client: None,
        };
        let declared = |length| Declared {
            length,
            lingers: false,
        };
        let held = read_body(chunks(2, false), declared(None), limits, &b)
            .await
            .unwrap();
        assert_eq!(b.used.load(Ordering::Acquire), 8, "charged what was read");
        // Declared: refused unread if it cannot fit now.
        let refused = read_body(
            Full::new(Bytes::from_static(b"hello")),
            declared(Some(5)),
            limits,
            &b,
        )
        .await;
        assert_eq!(refused, Err(BodyRefused::BudgetFull));
        // Chunked: refused when a chunk would go over.
        let refused = read_body(chunks(1, false), declared(None), limits, &b).await;
        assert_eq!(refused, Err(BodyRefused::BudgetFull));
        assert_eq!(b.used.load(Ordering::Acquire), 8, "refusals hold nothing");
        // The charge travels with the body to the upstream and is freed with it.
        let up = held.into_upstream();
        assert_eq!(b.used.load(Ordering::Acquire), 8);
        drop(up);
        assert_eq!(b.used.load(Ordering::Acquire), 0);
        assert!(read_body(
            Full::new(Bytes::from_static(b"hello")),
            declared(Some(5)),
            limits,
            &b
        )
        .await
        .is_ok());
    }

    /// A declared length holds nothing until its bytes come: a head alone cannot fill the
    /// budget (the hostile review held all 256 MiB with 256 heads and no body byte).
    #[tokio::test]
    async fn a_declared_length_is_charged_only_as_it_arrives() {
        let b = budget(1000);
        let limits = BodyLimits {
            max: 1000,
            deadline: Duration::from_millis(50),
            client: None,
        };
        let declared = Declared {
            length: Some(900),
            lingers: false,
        };
        let stalled = {
            let b = b.clone();
            tokio::spawn(async move { read_body(chunks(1, true), declared, limits, &b).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            b.used.load(Ordering::Acquire),
            4,
            "the 4 bytes sent, not the 900 declared"
        );
        assert_eq!(stalled.await.unwrap(), Err(BodyRefused::Timeout));
        assert_eq!(b.used.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn one_client_holds_at_most_its_share() {
        // Budget 1600: a client may hold 1600 / 16 = 100, or one largest body if larger.
        let b = budget(1600);
        let client = |last: u8| Some(IpAddr::from([192, 0, 2, last]));
        let limits = |client, max| BodyLimits {
            max,
            deadline: SECOND,
            client,
        };
        let declared = Declared {
            length: None,
            lingers: false,
        };
        let first = read_body(chunks(20, false), declared, limits(client(1), 100), &b)
            .await
            .unwrap();
        assert_eq!(first.len(), 80);
        let over = read_body(chunks(6, false), declared, limits(client(1), 100), &b).await;
        assert_eq!(over, Err(BodyRefused::BudgetFull), "80 + 24 > 100");
        let other = read_body(chunks(6, false), declared, limits(client(2), 100), &b).await;
        assert!(other.is_ok(), "another client has its own share");
        let uncounted = read_body(chunks(6, false), declared, limits(None, 100), &b).await;
        assert!(
            uncounted.is_ok(),
            "a trusted proxy is not capped per client"
        );
        // A route with larger bodies: the share is at least one of them.
        let large = read_body(chunks(30, false), declared, limits(client(1), 400), &b).await;
        assert!(large.is_ok(), "share raised to the route's max_body_bytes");
        drop((first, other, uncounted, large));
        let map = b.per_client.lock().unwrap();
        assert!(map.is_empty(), "every charge given back: {map:?}");
    }

    #[test]
    fn memory_is_given_back_once_a_burst_has_passed() {
        let b = budget(1 << 30);
        let charge = |n| {
            let mut r = b.admit(None, 0, 0).unwrap();
            assert!(r.grow(n));
            r
        };
        let held: Vec<_> = (0..40).map(|_| charge(1 << 20)).collect();
        assert!(!b.trim_due(), "bodies still held");
        drop(held);
        assert!(b.trim_due(), "40 MiB came and went");
        b.trim();
        assert!(!b.trim_due(), "once per burst");
        drop(charge(1 << 20));
        assert!(!b.trim_due(), "1 MiB is no burst");
    }
}
