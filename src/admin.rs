//! The admin listener: `/metrics` (Prometheus text format), `/healthz` (the process is up),
//! `/readyz` (listeners bound and not draining), and the queue API under `/queue/`
//! (`delivery/api.rs`), which changes state and so needs the bearer token when one is set.
//! Meant for loopback or a private network only; it serves no webhooks.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::delivery::QueueSlot;
use crate::metrics::Metrics;
use crate::runtime::ConfigSlot;

/// What `/readyz` says: 200 `ready` only between the start and a shutdown; a 503 otherwise,
/// that tells a person which of the two it is.
#[derive(Debug)]
pub struct Readiness(AtomicU8);

impl Default for Readiness {
    fn default() -> Readiness {
        Readiness(AtomicU8::new(Readiness::STARTING))
    }
}

impl Readiness {
    const STARTING: u8 = 0;
    const READY: u8 = 1;
    const DRAINING: u8 = 2;

    /// Every listener is bound and serving.
    pub fn set_ready(&self) {
        self.0.store(Self::READY, Ordering::SeqCst);
    }

    /// A shutdown began: the load balancer should stop sending, requests are still served.
    pub fn set_draining(&self) {
        self.0.store(Self::DRAINING, Ordering::SeqCst);
    }

    fn answer(&self) -> (StatusCode, &'static str) {
        match self.0.load(Ordering::SeqCst) {
            Self::READY => (StatusCode::OK, "ready\n"),
            Self::DRAINING => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        }
    }
}

/// What the admin listener serves from.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<Readiness>,
    /// The queue, once a `queue_store:` is open.
    pub queue: Arc<QueueSlot>,
    /// The configuration in force, for the token (a reload can change it).
    pub config: Arc<ConfigSlot>,
    /// The keys fetched from the network, shown at `/keys`.
    pub keys: Arc<crate::remote_keys::cache::KeyCache>,
}

pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    header_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::error!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(respond(&req, &admin).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(req: &Request<Incoming>, admin: &Admin) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path.starts_with("/queue/") {
        let live = admin.config.load_full();
        return crate::delivery::api::respond(
            admin.queue.get().map(|q| q.as_ref()),
            &live.gateway,
            req.method(),
            path,
            req.uri().query(),
            req.headers().get(header::AUTHORIZATION),
        )
        .await;
    }
    let (metrics, ready) = (&admin.metrics, &admin.ready);
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let age = admin.keys.oldest_age().as_secs();
            metrics
                .keys
                .oldest_age
                .set(i64::try_from(age).unwrap_or(i64::MAX));
            let mut r = Response::new(Full::new(Bytes::from(metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/keys" => keys(&admin.keys),
        "/readyz" => {
            let (status, body) = ready.answer();
            text(status, body)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz, /keys or /queue/events\n",
        ),
    }
}

/// `/keys`: every key URL the cache holds, as JSON: when its document was fetched and until
/// when it is kept (Unix seconds), its age, a failure if the last fetch failed, for a
/// certificate its names, validity and SHA-256 fingerprint, for a key set the key ids, and
/// for a key API's PEM key its fingerprint. Public documents only: nothing here is secret.
fn keys(cache: &crate::remote_keys::cache::KeyCache) -> Response<Full<Bytes>> {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let now = unix(cache.now());
    let held: Vec<serde_json::Value> = cache
        .held()
        .into_iter()
        .map(|h| {
            let certificate = h.doc.as_deref().and_then(|d| {
                let c = crate::scheme::certificate::Certificate::from_pem(d).ok()?;
                Some(serde_json::json!({
                    "names": c.names,
                    "not_before": c.not_before,
                    "not_after": c.not_after,
                    "sha256": c.fingerprint_text(),
                }))
            });
            // A key set, a key API's answer or a discovery document: the key ids it holds.
            let kids = h.doc.as_deref().and_then(|d| {
                let doc: serde_json::Value = serde_json::from_slice(d).ok()?;
                let kid = |k: &serde_json::Value| k.get("kid").cloned();
                let keys = doc.get("keys").and_then(|k| k.as_array());
                let kids: Vec<serde_json::Value> = match (keys, doc.get("key")) {
                    (Some(keys), _) => keys.iter().filter_map(kid).collect(),
                    (None, Some(key)) => kid(key).into_iter().collect(),
                    (None, None) => return None,
                };
                Some(kids)
            });
            // A key API's PEM public key (eBay's): its SHA-256 fingerprint.
            let public_key = h.doc.as_deref().and_then(|d| {
                use sha2::Digest as _;
                let doc: serde_json::Value = serde_json::from_slice(d).ok()?;
                let pem = doc.get("key")?.as_str()?;
                let der = crate::scheme::fetched::public_key_der(pem).ok()?;
                Some(serde_json::json!({ "sha256": hex::encode(sha2::Sha256::digest(der)) }))
            });
            serde_json::json!({
                "url": h.url,
                "kids": kids,
                "public_key": public_key,
                "fetched_at": h.fetched.map(|(at, _)| unix(at)),
                "kept_until": h.fetched.map(|(_, until)| unix(until)),
                "age_seconds": h.fetched.map(|(at, _)| now.saturating_sub(unix(at))),
                "failed_at": h.failed_at.map(unix),
                "certificate": certificate,
            })
        })
        .collect();
    let body = serde_json::to_vec_pretty(&serde_json::json!({ "keys": held })).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
