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
    // By hand rather than `format!`: this runs for every request (and three times for a
    // queued event), and the formatting machinery cost more than the rest of the id.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, word) in [prefix, n].into_iter().enumerate() {
        for j in 0..16 {
            out[i * 16 + j] = HEX[((word >> (60 - 4 * j)) & 0xf) as usize];
        }
    }
    String::from_utf8(out.to_vec()).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_digits_and_distinct() {
        let a = unique_hex();
        let b = unique_hex();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        // The counter is the last 16 digits: consecutive ids differ by one there.
        let (na, nb) = (
            u64::from_str_radix(&a[16..], 16).unwrap(),
            u64::from_str_radix(&b[16..], 16).unwrap(),
        );
        assert_eq!(a[..16], b[..16], "one prefix per process");
        assert!(nb > na);
    }

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
