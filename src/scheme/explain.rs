//! `hookgate explain`: a scheme's verification of one request, step by step, for the
//! operator whose sender's deliveries start failing. Each step is computed by the same code
//! `verify` runs (reading the signature, decoding it, the timestamp, each message part, each
//! key), and the verdict at the end is `verify`'s own, so the story cannot drift from what
//! the gateway does. Keys are named by their index, never shown; the MAC a key gives is not
//! shown either (it would sign the message for anyone reading the output).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::message::{self, Part};
use super::{check_timestamp, parse_timestamp_ms, read_timestamp, Keys, RequestView, Scheme};
use super::{TimestampSource, VerifyError};

/// The longest part of a value shown; the rest is counted.
const SHOWN: usize = 160;

/// A verification told step by step, and its verdict (`verify`'s own).
pub struct Explained {
    pub steps: Vec<String>,
    pub verdict: Result<super::Verified, VerifyError>,
}

impl Scheme {
    /// Each step of verifying `req` at `now`, as lines of text, and the verdict. A scheme
    /// whose items are each signed (`each:`) shows its first item's steps.
    pub fn explain(&self, req: &RequestView<'_>, now: SystemTime) -> Explained {
        let Some(array) = &self.each_item else {
            return self.explain_one(req, now);
        };
        let verdict = self.verify(req, now);
        let items = match self.items(array, req) {
            Ok(items) => items,
            Err(e) => {
                return Explained {
                    steps: vec![format!("each: {e}")],
                    verdict,
                }
            }
        };
        // The first item that fails, as that is what the operator is after; else item 0.
        let scoped = |item: &serde_json::Value| super::JsonBody::of(item.clone());
        let failing = items.iter().position(|item| {
            let json = scoped(item);
            self.verify_one(
                &RequestView {
                    json: &json,
                    ..*req
                },
                now,
                None,
            )
            .is_err()
        });
        let shown = failing.unwrap_or(0);
        let json = scoped(&items[shown]);
        let mut explained = self.explain_one(
            &RequestView {
                json: &json,
                ..*req
            },
            now,
        );
        let which = match failing {
            Some(i) => format!("item {i} shown, the first that fails"),
            None => "item 0 shown; every item verifies".to_owned(),
        };
        explained.steps.insert(
            0,
            format!(
                "each: {} item(s) of {array}, each verified on its own; {which}",
                items.len()
            ),
        );
        explained.verdict = verdict;
        explained
    }

    fn explain_one(&self, req: &RequestView<'_>, now: SystemTime) -> Explained {
        let mut out = Vec::new();
        out.push(format!(
            "scheme: {} ({})",
            self.algorithm.name(),
            self.strength().label()
        ));
        let found = match self.signature.read(req, &|k| self.reads_entry(k)) {
            Ok(found) => found,
            Err(e) => {
                out.push(format!("signature: {e}"));
                return finish(out, self, req, now);
            }
        };
        for (i, c) in found.candidates.iter().enumerate() {
            out.push(format!(
                "signature {i}: {} read from the {}",
                shown(c.as_bytes()),
                self.signature.source.describe()
            ));
        }
        for (name, value) in &found.entries {
            out.push(format!("  entry {name} = {}", shown(value.as_bytes())));
        }
        match self.decode_candidates(&found) {
            Ok(decoded) => out.push(format!(
                "decoded: {} candidate(s) of the algorithm's shape ({} bytes), encodings tried: {}",
                decoded.len(),
                decoded.first().map_or(0, Vec::len),
                self.signature
                    .encodings
                    .iter()
                    .map(|e| e.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(e) => out.push(format!("decoded: none ({e})")),
        }
        if let Some(ts) = &self.timestamp {
            explain_timestamp(&mut out, ts, req, &found, now);
        }
        if self.jwt.is_none() {
            explain_message(&mut out, self, req, &found);
        }
        explain_keys(&mut out, self, req, &found);
        finish(out, self, req, now)
    }
}

fn explain_timestamp(
    out: &mut Vec<String>,
    ts: &super::TimestampSpec,
    req: &RequestView<'_>,
    found: &super::Found<'_>,
    now: SystemTime,
) {
    let source = match &ts.source {
        TimestampSource::Header(h) => format!("header {h}"),
        TimestampSource::JsonField(p) => format!("JSON field {p}"),
        TimestampSource::SignatureEntry(e) => format!("signature entry {e}"),
    };
    let raw = match read_timestamp(&ts.source, req, found) {
        Ok(raw) => raw,
        Err(e) => {
            out.push(format!("timestamp: from the {source}: {e}"));
            return;
        }
    };
    let Some(ms) = parse_timestamp_ms(&raw, ts.unit) else {
        out.push(format!(
            "timestamp: {} from the {source} is not a {} timestamp in its one canonical form",
            shown(raw.as_bytes()),
            ts.unit.name()
        ));
        return;
    };
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i128);
    let skew = (now_ms - ms) as f64 / 1000.0;
    let window = match &ts.window {
        Some(w) => format!(
            "window {}s old to {}s ahead",
            w.past.as_secs(),
            w.future.as_secs()
        ),
        None => "no window (tolerance: none)".into(),
    };
    let verdict = match check_timestamp(ts, req, found, now) {
        Ok(()) => "inside".to_owned(),
        Err(e) => e.to_string(),
    };
    out.push(format!(
        "timestamp: {raw} from the {source}, {skew:.3}s old at the gateway's clock; {window}: {verdict}"
    ));
}

fn explain_message(
    out: &mut Vec<String>,
    scheme: &Scheme,
    req: &RequestView<'_>,
    found: &super::Found<'_>,
) {
    let source = message::Source {
        req,
        entry: &|name| found.entry(name),
        public_url: scheme.public_url.as_deref(),
        signature: &scheme.signature.source,
    };
    let mut total = 0usize;
    out.push("signed message, part by part:".into());
    for part in &scheme.message {
        let mut bytes = Vec::new();
        let read = message::feed(std::slice::from_ref(part), &source, &mut |b| {
            bytes.extend_from_slice(b)
        });
        match read {
            Ok(()) if matches!(part, Part::Body) => {
                out.push(format!("  body: {} bytes, as received", bytes.len()));
                total += bytes.len();
            }
            Ok(()) => {
                out.push(format!("  {}: {}", part.describe(), shown(&bytes)));
                total += bytes.len();
            }
            Err(e) => out.push(format!("  {}: {e}", part.describe())),
        }
    }
    out.push(format!("  ({total} bytes in all)"));
}

fn explain_keys(
    out: &mut Vec<String>,
    scheme: &Scheme,
    req: &RequestView<'_>,
    found: &super::Found<'_>,
) {
    let Ok(candidates) = scheme.decode_candidates(found) else {
        return;
    };
    match &scheme.keys {
        Keys::Hmac(keys) => {
            for (i, key) in keys.iter().enumerate() {
                let mut mac = key.clone();
                if scheme.feed(req, found, &mut |b| mac.update(b)).is_err() {
                    continue;
                }
                let tag = mac.finalize();
                let matched = candidates.iter().any(|c| {
                    bool::from(subtle::ConstantTimeEq::ct_eq(tag.as_slice(), c.as_slice()))
                });
                out.push(format!(
                    "key {i}: {}",
                    if matched { "matches" } else { "does not match" }
                ));
            }
        }
        other => out.push(format!(
            "keys: {} configured, tried in order by the verdict below",
            other.len()
        )),
    }
}

/// The steps with `verify`'s own verdict.
fn finish(out: Vec<String>, scheme: &Scheme, req: &RequestView<'_>, now: SystemTime) -> Explained {
    Explained {
        steps: out,
        verdict: scheme.verify(req, now),
    }
}

/// Bytes as escaped text, at most [`SHOWN`] of them, with their length.
pub fn shown(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(SHOWN) {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    let more = bytes.len().saturating_sub(SHOWN);
    if more > 0 {
        format!("\"{s}\"... ({} bytes, {more} not shown)", bytes.len())
    } else {
        format!("\"{s}\" ({} bytes)", bytes.len())
    }
}
