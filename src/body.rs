//! Bounded, timed body collection. The size limit is enforced while reading (so a chunked body
//! with no Content-Length cannot get past it) and a declared Content-Length over the limit is
//! refused before a byte is read. The whole body must arrive within one deadline, so a client
//! trickling bytes cannot hold a connection and a buffer forever.
//!
//! The body is kept as the chunks it arrived in ([`RawBody`]): the MAC runs over them in
//! order and the same chunks are sent upstream, so a large body is never copied into one
//! buffer unless a scheme needs to parse it (JSON timestamps, form parameters).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use crate::refusal::Refusal;

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
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicU64,
    /// The most held at once since memory was last given back (see [`BodyBudget::trim`]).
    peak: AtomicU64,
    /// Changed by a reload; bodies already held stay.
    limit: AtomicU64,
    /// Bytes reserved right now (`hookgate_body_buffered_bytes`).
    gauge: prometheus::IntGauge,
}

impl BodyBudget {
    pub fn new(limit: u64, gauge: prometheus::IntGauge) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
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

    /// Reserves `bytes`, or `None` if that would go over the budget.
    fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut r = Reservation {
            budget: self.clone(),
            bytes: 0,
        };
        r.grow(bytes).then_some(r)
    }
}

/// Budget held by one body for as long as its bytes are in memory: moved into [`RawBody`]
/// and on into the [`UpstreamBody`], and given back when that is dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl Reservation {
    fn grow(&mut self, more: u64) -> bool {
        let b = &self.budget;
        let grown = b
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more)
                    .filter(|&n| n <= b.limit.load(Ordering::Acquire))
            })
            .is_ok();
        if grown {
            self.bytes += more;
            b.gauge.add(more as i64);
            let used = b.used.load(Ordering::Relaxed);
            if used > b.peak.load(Ordering::Relaxed) {
                b.peak.fetch_max(used, Ordering::AcqRel);
            }
        }
        grown
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.gauge.sub(self.bytes as i64);
    }
}

/// Bodies held at once before a later quiet moment is worth a `malloc_trim`.
const TRIM_AFTER: u64 = 32 * 1024 * 1024;

/// Returns freed heap pages to the system (glibc only; elsewhere a no-op).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas, under their locks; it takes no
    // pointer and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How a body is read: the route-independent limits that apply to it.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max: u64,
    pub deadline: Duration,
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
    /// `Expect: 100-continue`: the client sends nothing until the body is first read, so a
    /// refusal needs no draining.
    pub expects_continue: bool,
}

impl Declared {
    pub fn of(headers: &http::HeaderMap) -> Declared {
        Declared {
            length: content_length(headers),
            expects_continue: headers
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
        }
    }
}

/// Reads the whole body, or refuses: 413 over `limits.max`, 503 when the process-wide body
/// budget cannot hold it, 408 past `limits.deadline`, 400 on a broken body.
///
/// A declared length is reserved from the budget before a byte is read; a chunked body
/// reserves as it arrives. On 413 or 503 with the client still sending, a bounded amount is
/// read and discarded first, so the client reads the answer.
pub async fn read_body<B>(
    body: B,
    declared: Declared,
    limits: BodyLimits,
    budget: &Arc<BodyBudget>,
) -> Result<RawBody, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let outcome = if declared.length.is_some_and(|n| n > limits.max) {
        Err((Refusal::BodyTooLarge, 0))
    } else {
        match budget.reserve(declared.length.unwrap_or(0)) {
            None => Err((Refusal::BodyBudgetFull, 0)),
            Some(reservation) => {
                let read = collect(body.as_mut(), declared, limits.max, reservation);
                match tokio::time::timeout(limits.deadline, read).await {
                    Err(_) => return Err(Refusal::BodyTimeout),
                    Ok(outcome) => outcome,
                }
            }
        }
    };
    let (refusal, read) = match outcome {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    if matches!(refusal, Refusal::BodyTooLarge | Refusal::BodyBudgetFull)
        && !declared.expects_continue
    {
        let left = declared.length.map(|n| n.saturating_sub(read));
        linger(body, left).await;
    }
    Err(refusal)
}

/// Reads frames until the body ends; on a refusal, also how many bytes were read.
async fn collect<B>(
    mut body: Pin<&mut B>,
    declared: Declared,
    max: u64,
    mut reservation: Reservation,
) -> Result<RawBody, (Refusal, u64)>
where
    B: Body<Data = Bytes>,
{
    let mut chunks = Vec::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err((Refusal::BodyError, total));
        };
        // Trailers (chunked encoding) are not part of the signed bytes and are dropped.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > max {
            return Err((Refusal::BodyTooLarge, total));
        }
        // A declared length was reserved whole up front (hyper never reads past it).
        if declared.length.is_none() && !reservation.grow(data.len() as u64) {
            return Err((Refusal::BodyBudgetFull, total));
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
    ) -> Result<RawBody, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let declared = Declared {
            length,
            expects_continue: false,
        };
        read_body(
            body,
            declared,
            BodyLimits { max, deadline },
            &budget(1 << 20),
        )
        .await
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
        assert_eq!(b, Err(Refusal::BodyTooLarge));
    }

    #[tokio::test]
    async fn undeclared_body_over_limit_is_refused_while_reading() {
        let b = read(chunks(5, false), None, 10, SECOND).await;
        assert_eq!(b, Err(Refusal::BodyTooLarge));
    }

    #[tokio::test]
    async fn stalled_body_times_out() {
        let b = read(chunks(1, true), None, 10, Duration::from_millis(50)).await;
        assert_eq!(b, Err(Refusal::BodyTimeout));
    }

    #[tokio::test]
    async fn the_budget_refuses_what_would_not_fit_and_is_given_back() {
        let b = budget(10);
        let limits = BodyLimits {
            max: 100,
            deadline: SECOND,
        };
        let declared = |length| Declared {
            length,
            expects_continue: false,
        };
        let held = read_body(chunks(2, false), declared(None), limits, &b)
            .await
            .unwrap();
        assert_eq!(
            b.used.load(Ordering::Acquire),
            8,
            "a chunked body reserves what it read"
        );
        // Declared: reserved whole before reading, refused unread if it cannot fit.
        let refused = read_body(
            Full::new(Bytes::from_static(b"hello")),
            declared(Some(5)),
            limits,
            &b,
        )
        .await;
        assert_eq!(refused, Err(Refusal::BodyBudgetFull));
        // Chunked: refused when a chunk would go over.
        let refused = read_body(chunks(1, false), declared(None), limits, &b).await;
        assert_eq!(refused, Err(Refusal::BodyBudgetFull));
        assert_eq!(b.used.load(Ordering::Acquire), 8, "refusals hold nothing");
        // The reservation travels with the body to the upstream and is freed with it.
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

    #[test]
    fn memory_is_given_back_once_a_burst_has_passed() {
        let b = budget(1 << 30);
        let held: Vec<_> = (0..40).map(|_| b.reserve(1 << 20).unwrap()).collect();
        assert!(!b.trim_due(), "bodies still held");
        drop(held);
        assert!(b.trim_due(), "40 MiB came and went");
        b.trim();
        assert!(!b.trim_due(), "once per burst");
        let small = b.reserve(1 << 20).unwrap();
        drop(small);
        assert!(!b.trim_due(), "1 MiB is no burst");
    }
}
