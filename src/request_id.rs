//! Request ids: every request gets one, sent to the app and returned to the sender, and it
//! is on the request's access-log line, so a sender's support ticket, the app's logs and
//! hookgate's logs meet on one value.
//!
//! A sane incoming `X-Request-Id` (1 to 128 visible ASCII characters, sent once) is kept, so
//! an id a load balancer or the sender set carries through; anything else is replaced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: its own if sane, else a new one, which is then set on `headers` (so
/// the app receives it).
pub fn of(headers: &mut HeaderMap) -> HeaderValue {
    let mut given = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(v), None) = (given.next(), given.next()) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    let id = HeaderValue::from_str(&unique_hex()).expect("hex is a valid header value");
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// 32 hex digits: a random per-process prefix and a counter. Unique within the process and,
/// with overwhelming likelihood, across processes; not meant to be unguessable. Also names
/// queued events (`delivery/`).
pub fn unique_hex() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // std seeds every RandomState from the OS's randomness.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_id_is_kept_and_anything_else_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, "lb-7f3a-01".parse().unwrap());
        assert_eq!(of(&mut h), "lb-7f3a-01");
        assert_eq!(h[&X_REQUEST_ID], "lb-7f3a-01");
        for bad in ["", "has space", &"x".repeat(129)] {
            let mut h = HeaderMap::new();
            h.insert(X_REQUEST_ID, bad.parse().unwrap());
            let id = of(&mut h);
            assert_eq!(id.len(), 32, "{bad:?}");
            assert_eq!(h.get_all(&X_REQUEST_ID).iter().count(), 1);
            assert_eq!(h[&X_REQUEST_ID], id);
        }
        let mut h = HeaderMap::new();
        h.append(X_REQUEST_ID, "a".parse().unwrap());
        h.append(X_REQUEST_ID, "b".parse().unwrap());
        let id = of(&mut h);
        assert_eq!(
            h.get_all(&X_REQUEST_ID).iter().count(),
            1,
            "two: replaced by one"
        );
        assert_ne!(id, "a");
        let (a, b) = (of(&mut HeaderMap::new()), of(&mut HeaderMap::new()));
        assert_ne!(a, b);
    }
}
