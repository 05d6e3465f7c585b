//! Bounded, timed body collection. The size limit is enforced while reading (so a chunked body
//! with no Content-Length cannot get past it) and a declared Content-Length over the limit is
//! refused before a byte is read. The whole body must arrive within one deadline, so a client
//! trickling bytes cannot hold a connection and a buffer forever.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body;

use crate::refusal::Refusal;

/// Reads the whole body, or refuses: 413 over `max`, 408 past `deadline`, 400 on a broken body.
pub async fn read_body<B>(
    body: B,
    content_length: Option<u64>,
    max: u64,
    deadline: Duration,
) -> Result<Bytes, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if content_length.is_some_and(|n| n > max) {
        return Err(Refusal::BodyTooLarge);
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Refusal::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Refusal::BodyTooLarge),
        Ok(Err(_)) => Err(Refusal::BodyError),
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
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body_util::Full;
    use hyper::body::Frame;

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
        assert_eq!(b, Ok(Bytes::from_static(b"hello")));
        let b = read_body(chunks(2, false), None, 10, SECOND).await;
        assert_eq!(b, Ok(Bytes::from_static(b"abcdabcd")));
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
