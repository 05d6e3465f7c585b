//! Keep-alive connections to the upstreams: one pool per upstream `host:port`, built on
//! hyper's HTTP/1.1 client connections.
//!
//! Why not hyper-util's pooled client: it keys its pool by (scheme, authority) through a
//! hashed, mutex-guarded map, runs a connector service and several boxed and mapped futures
//! per request, and knows nothing of the gateway's upstreams in advance. The gateway knows
//! every upstream when it starts, so each route holds its pool directly and a request costs a
//! `Vec::pop` and a `Vec::push` under an uncontended lock.
//!
//! - Idle connections are reused most-recent-first; at most `max_idle` are kept per upstream,
//!   and one idle for longer than [`IDLE_TIMEOUT`] or closed by the upstream is discarded.
//! - A request that could not be written to a pooled connection (the upstream closed it while
//!   idle) is retried on another connection; a request that may have reached the upstream is
//!   never retried.
//! - New connections: every address the host resolves to is tried in turn within the connect
//!   timeout; TCP_NODELAY is set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::body::UpstreamBody;
use crate::model::Upstream;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long an idle upstream connection is kept for reuse.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a pooled connection may take to be ready before the next one is tried.
const REUSE_READY_WAIT: Duration = Duration::from_millis(100);

/// Why an exchange with the upstream failed.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be made: the request was not sent (502).
    Connect(std::io::Error),
    /// The TLS handshake with an `https://` upstream failed (untrusted or wrong-name
    /// certificate, mTLS refused): the request was not sent (502).
    Tls(std::io::Error),
    /// The connection failed while sending or receiving (502).
    Exchange(hyper::Error),
}

/// The pools of all upstreams, one per distinct `host:port`.
pub struct Upstreams {
    /// By `Upstream::pool_key`; shared with the `Upstreams` of a later configuration that
    /// keeps the upstream.
    pools: HashMap<String, Arc<Pool>>,
    connect_timeout: Duration,
    max_idle: usize,
}

struct Pool {
    idle: Mutex<Idle>,
}

struct Idle {
    conns: Vec<IdleConn>,
    last_sweep: Instant,
}

struct IdleConn {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

impl IdleConn {
    /// Still open and not idle for too long.
    fn usable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.duration_since(self.since) < IDLE_TIMEOUT
    }
}

/// A connection checked out for one request; give it back with [`Upstreams::put_back`] once
/// the response body has been read in full.
pub struct Lease {
    sender: SendRequest<UpstreamBody>,
}

impl Upstreams {
    /// Pools for `authorities`; one that `previous` also served keeps its idle connections
    /// (a reload that leaves an upstream unchanged does not reconnect to it).
    pub fn new<'a>(
        upstreams: impl Iterator<Item = &'a Upstream>,
        connect_timeout: Duration,
        max_idle: usize,
        previous: Option<&Upstreams>,
    ) -> Upstreams {
        let pools = upstreams
            .map(|u| {
                let a = &u.pool_key;
                let pool = previous
                    .and_then(|p| p.pools.get(a).cloned())
                    .unwrap_or_else(|| {
                        Arc::new(Pool {
                            idle: Mutex::new(Idle {
                                conns: Vec::new(),
                                last_sweep: Instant::now(),
                            }),
                        })
                    });
                (a.clone(), pool)
            })
            .collect();
        Upstreams {
            pools,
            connect_timeout,
            max_idle,
        }
    }

    /// Sends `request` (origin-form URI, Host header set) to `authority` and returns the
    /// response head with its body still to be read, and the connection it came on.
    pub async fn send(
        &self,
        upstream: &Upstream,
        mut request: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        let pool = self.pools.get(&upstream.pool_key);
        loop {
            let (mut sender, reused) = match pool.and_then(|p| p.take()) {
                Some(sender) => (sender, true),
                None => (self.connect(upstream).await?, false),
            };
            // A pooled connection is normally ready at once. One that is not (closed while
            // idle, or still sending a body the app answered early without reading) is
            // dropped for the next one: nothing has been sent on it yet.
            let ready = if reused {
                matches!(
                    tokio::time::timeout(REUSE_READY_WAIT, sender.ready()).await,
                    Ok(Ok(()))
                )
            } else {
                sender.ready().await.is_ok()
            };
            if !ready {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Connect(std::io::Error::other(
                    "upstream closed a new connection",
                )));
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, Lease { sender })),
                Err(mut e) => match e.take_message() {
                    // Not written: safe to send on another connection.
                    Some(r) if reused => request = r,
                    _ => return Err(UpstreamError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// Returns a connection whose response was read in full to its pool.
    pub fn put_back(&self, upstream: &Upstream, lease: Lease) {
        if lease.sender.is_closed() {
            return;
        }
        if let Some(pool) = self.pools.get(&upstream.pool_key) {
            pool.put(lease.sender, self.max_idle);
        }
    }

    /// Drops idle connections that expired or that the upstream closed.
    pub fn sweep(&self) {
        for pool in self.pools.values() {
            if let Ok(mut idle) = pool.idle.lock() {
                idle.sweep(Instant::now());
            }
        }
    }

    async fn connect(
        &self,
        upstream: &Upstream,
    ) -> Result<SendRequest<UpstreamBody>, UpstreamError> {
        let timed_out = |what: &str| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
        };
        let started = Instant::now();
        let stream = tokio::time::timeout(
            self.connect_timeout,
            connect_any(&upstream.authority, upstream.port(), self.connect_timeout),
        )
        .await
        .map_err(|_| UpstreamError::Connect(timed_out("connect")))?
        .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &upstream.tls else {
            return handshake(stream).await;
        };
        // The TLS handshake gets what is left of the connect timeout.
        let left = self.connect_timeout.saturating_sub(started.elapsed());
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        let stream = tokio::time::timeout(left, connector.connect(tls.server_name.clone(), stream))
            .await
            .map_err(|_| UpstreamError::Tls(timed_out("TLS handshake")))?
            .map_err(UpstreamError::Tls)?;
        handshake(stream).await
    }
}

impl Pool {
    fn take(&self) -> Option<SendRequest<UpstreamBody>> {
        let mut idle = self.idle.lock().ok()?;
        let now = Instant::now();
        while let Some(c) = idle.conns.pop() {
            if c.usable(now) {
                return Some(c.sender);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<UpstreamBody>, max_idle: usize) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let now = Instant::now();
        // Connections at the bottom of the stack may sit unused: drop the expired and the
        // closed ones now and then, so they do not hold sockets.
        if now.duration_since(idle.last_sweep) >= Duration::from_secs(1) {
            idle.sweep(now);
        }
        if idle.conns.len() < max_idle {
            idle.conns.push(IdleConn { sender, since: now });
        }
    }
}

impl Idle {
    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        self.conns.retain(|c| c.usable(now));
    }
}

/// An HTTP/1.1 client connection over `io`, driven by a task of its own.
async fn handshake<I>(io: I) -> Result<SendRequest<UpstreamBody>, UpstreamError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Exchange)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// Connects to the first address of `authority` that accepts. Each address gets an equal
/// share of `timeout`, so one that drops packets does not use up the time of the others.
async fn connect_any(
    authority: &Authority,
    port: u16,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let host = authority.host();
    // An IPv6 literal comes bracketed in the authority.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let mut last = None;
    let addrs: Vec<_> = tokio::net::lookup_host((host, port)).await?.collect();
    let each = timeout / u32::try_from(addrs.len().max(1)).unwrap_or(u32::MAX);
    for addr in addrs {
        match tokio::time::timeout(each, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out"),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} resolved to no address"),
        )
    }))
}
