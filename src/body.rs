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
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Frame, SizeHint};

use crate::refusal::Refusal;

/// A request body exactly as received: its chunks in order.
#[derive(Debug, Default)]
pub struct RawBody {
    chunks: Vec<Bytes>,
    len: usize,
    /// The chunks joined, made on first demand when there is more than one.
    joined: OnceLock<Bytes>,
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
        }
    }

    /// The body to send upstream: the same chunks, with their exact total length.
    pub fn into_upstream(self) -> UpstreamBody {
        UpstreamBody {
            len: self.len as u64,
            chunks: self.chunks.into(),
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

/// Reads the whole body, or refuses: 413 over `max`, 408 past `deadline`, 400 on a broken body.
pub async fn read_body<B>(
    body: B,
    content_length: Option<u64>,
    max: u64,
    deadline: Duration,
) -> Result<RawBody, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if content_length.is_some_and(|n| n > max) {
        return Err(Refusal::BodyTooLarge);
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let read = async {
        let mut body = std::pin::pin!(Limited::new(body, limit));
        let mut chunks = Vec::new();
        while let Some(frame) = body.frame().await {
            // Trailers (chunked encoding) are not part of the signed bytes and are dropped.
            if let Ok(data) = frame?.into_data() {
                chunks.push(data);
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(RawBody::from_chunks(chunks))
    };
    match tokio::time::timeout(deadline, read).await {
        Err(_) => Err(Refusal::BodyTimeout),
        Ok(Ok(raw)) => Ok(raw),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Refusal::BodyTooLarge),
        Ok(Err(_)) => Err(Refusal::BodyError),
    }
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

    #[tokio::test]
    async fn small_body_is_read() {
        let b = read_body(Full::new(Bytes::from_static(b"hello")), Some(5), 10, SECOND).await;
        assert_eq!(b, Ok(RawBody::from(&b"hello"[..])));
        let b = read_body(chunks(2, false), None, 10, SECOND).await.unwrap();
        assert_eq!(b.chunks().len(), 2, "kept as received");
        assert_eq!(b.len(), 8);
        assert_eq!(b.contiguous(), b"abcdabcd");
    }

    #[tokio::test]
    async fn the_upstream_body_is_the_same_chunks_with_an_exact_length() {
        let b = read_body(chunks(3, false), None, 100, SECOND)
            .await
            .unwrap();
        let up = b.into_upstream();
        assert_eq!(up.size_hint().exact(), Some(12));
        let sent = up.collect().await.unwrap().to_bytes();
        assert_eq!(&sent[..], b"abcdabcdabcd");
    }

    #[tokio::test]
    async fn declared_length_over_limit_is_refused_unread() {
        let b = read_body(Full::new(Bytes::from_static(b"hi")), Some(11), 10, SECOND).await;
        assert_eq!(b, Err(Refusal::BodyTooLarge));
    }

    #[tokio::test]
    async fn undeclared_body_over_limit_is_refused_while_reading() {
        let b = read_body(chunks(5, false), None, 10, SECOND).await;
        assert_eq!(b, Err(Refusal::BodyTooLarge));
    }

    #[tokio::test]
    async fn stalled_body_times_out() {
        let b = read_body(chunks(1, true), None, 10, Duration::from_millis(50)).await;
        assert_eq!(b, Err(Refusal::BodyTimeout));
    }
}
