//! One fetch of a key or certificate document from a pinned URL ([`KeyUrl`]): resolved, each
//! address checked before any connection ([`address_allowed`]), TLS verified against the
//! trust roots the caller gives (the system's, or a configured `ca_file`) for the URL's own
//! host name, one `GET` (or a key API's or token endpoint's `POST`), and the answer taken
//! only if it is a 200 within the size and time bounds. A redirect is refused, never
//! followed: a key host cannot send the gateway elsewhere.
//!
//! Neighbours: `pin.rs` decided the URL; the cache (next) decides when to call [`send`] and
//! keeps what it returns for as long as `freshness.rs` says.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::TokioIo;

use crate::scheme::fetched::{KeyRequest, TokenGrant};
use crate::scheme::pin::address_allowed;
use crate::scheme::pin::KeyUrl;

/// The bounds of one fetch.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// To open the TCP connection, per address tried.
    pub connect_timeout: Duration,
    /// For the whole exchange once connected: TLS, request, answer and body.
    pub read_timeout: Duration,
    /// The largest document taken (a certificate is a few KiB, a JWKS rarely more than 10).
    pub max_bytes: usize,
    /// Whether loopback and private addresses may be connected to (tests, private issuers).
    pub allow_private: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(5),
            max_bytes: 64 * 1024,
            allow_private: false,
        }
    }
}

/// A document fetched, with what its host said of caching it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub body: Bytes,
    pub cache_control: Option<String>,
}

/// Why no document was had. Each is a 503 with `Retry-After` for the request that needed it.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{host} did not resolve: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{host} resolves only to addresses the gateway does not connect to ({addrs})")]
    AddressNotAllowed { host: String, addrs: String },
    #[error("could not connect to {host}: {source}")]
    Connect {
        host: String,
        source: std::io::Error,
    },
    #[error("TLS with {host} failed: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("{host} answered {status}{}", if *redirect { " (a redirect, not followed)" } else { "" })]
    Status {
        host: String,
        status: StatusCode,
        redirect: bool,
    },
    #[error("{host}'s document is larger than {max} bytes")]
    TooLarge { host: String, max: usize },
    #[error("{host} did not answer within {0:?}", .timeout)]
    Timeout { host: String, timeout: Duration },
    #[error("the exchange with {host} failed: {source}")]
    Http { host: String, source: hyper::Error },
    #[error("{host} gave no usable token: {why}")]
    Token { host: String, why: String },
}

impl FetchError {
    /// The `result` label of `hookgate_key_fetches_total`.
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Resolve { .. } => "resolve",
            FetchError::AddressNotAllowed { .. } => "address_not_allowed",
            FetchError::Connect { .. } => "connect",
            FetchError::Tls { .. } => "tls",
            FetchError::Status { redirect: true, .. } => "redirect",
            FetchError::Status { .. } => "status",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Http { .. } => "http",
            FetchError::Token { .. } => "token",
        }
    }
}

/// Resolves a host name to socket addresses on port 443 (the system's resolver; tests give
/// their own, mapping a test name to a loopback port).
pub type Resolve = Arc<dyn Fn(String) -> Resolving + Send + Sync>;

/// A resolution under way.
pub type Resolving =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

/// The system's resolver.
pub fn system_resolver() -> Resolve {
    Arc::new(|host: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, 443)).await?.collect()) })
    })
}

/// The system's resolver, except for the hosts `connect_to` maps to an address of their own
/// (tests, and private networks where a key host has another address): a host listed there
/// is never resolved. The address is still checked as any other.
pub fn resolver_with(connect_to: Vec<(String, SocketAddr)>) -> Resolve {
    if connect_to.is_empty() {
        return system_resolver();
    }
    let system = system_resolver();
    Arc::new(move |host: String| {
        let mapped: Vec<SocketAddr> = connect_to
            .iter()
            .filter(|(h, _)| *h == host)
            .map(|(_, a)| *a)
            .collect();
        if mapped.is_empty() {
            system(host)
        } else {
            Box::pin(async move { Ok(mapped) })
        }
    })
}

/// One exchange with a key host: a `GET` of a URL, or a `POST` of a body, with the
/// `Authorization` a key API or token endpoint takes.
pub struct Call<'a> {
    pub url: &'a KeyUrl,
    /// The content type and the body posted (`None`: a `GET`).
    pub post: Option<(&'static str, Bytes)>,
    /// Never logged.
    pub authorization: Option<String>,
}

impl<'a> Call<'a> {
    /// A key document's request: a `GET`, or a key API's JSON `POST`, with the token got for
    /// it, if it takes one.
    pub fn of(request: &'a KeyRequest, bearer: Option<&str>) -> Call<'a> {
        Call {
            url: &request.url,
            post: request
                .post
                .as_ref()
                .map(|b| ("application/json", Bytes::from(b.clone()))),
            authorization: bearer.map(|t| format!("Bearer {t}")),
        }
    }

    /// The token request of an OAuth client-credentials grant.
    pub fn token(grant: &'a TokenGrant) -> Call<'a> {
        Call {
            url: &grant.url,
            post: Some((
                "application/x-www-form-urlencoded",
                Bytes::from(grant.form()),
            )),
            authorization: Some(grant.basic()),
        }
    }
}

/// Makes `call` once, within `limits`, verifying TLS with `tls`.
pub async fn send(
    call: &Call<'_>,
    tls: Arc<rustls::ClientConfig>,
    resolve: &Resolve,
    limits: &Limits,
) -> Result<Fetched, FetchError> {
    let url = call.url;
    let host = url.host().to_owned();
    // Resolving and connecting share one deadline, whatever the resolver and the number of
    // addresses.
    let deadline = tokio::time::Instant::now() + limits.connect_timeout;
    let resolved = tokio::time::timeout_at(deadline, resolve(host.clone())).await;
    let addrs = resolved
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "resolving took longer than the connect timeout",
            ))
        })
        .map_err(|source| FetchError::Resolve {
            host: host.clone(),
            source,
        })?;
    let allowed: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| address_allowed(a.ip(), limits.allow_private))
        .collect();
    if allowed.is_empty() {
        let addrs = addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>();
        return Err(FetchError::AddressNotAllowed {
            host,
            addrs: addrs.join(", "),
        });
    }
    let stream = connect(&host, &allowed, deadline).await?;
    let exchange = exchange(call, stream, tls, limits.max_bytes);
    match tokio::time::timeout(limits.read_timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout {
            host,
            timeout: limits.read_timeout,
        }),
    }
}

/// A TCP connection to the first of `addrs` that takes one before `deadline`.
async fn connect(
    host: &str,
    addrs: &[SocketAddr],
    deadline: tokio::time::Instant,
) -> Result<tokio::net::TcpStream, FetchError> {
    let mut last = std::io::Error::other("no address");
    for addr in addrs {
        match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = e,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"),
        }
    }
    Err(FetchError::Connect {
        host: host.to_owned(),
        source: last,
    })
}

/// The request sent: a `GET` of the URL, or a `POST` of the call's body.
fn http_request(
    call: &Call<'_>,
    host: &str,
) -> Result<Request<http_body_util::Full<Bytes>>, http::Error> {
    let (method, body) = match &call.post {
        Some((_, body)) => (http::Method::POST, body.clone()),
        None => (http::Method::GET, Bytes::new()),
    };
    let mut built = Request::builder()
        .method(method)
        .uri(call.url.path_and_query())
        .header(header::HOST, host)
        .header(header::ACCEPT, "*/*")
        .header(header::USER_AGENT, "hookgate");
    if let Some((content_type, _)) = &call.post {
        built = built.header(header::CONTENT_TYPE, *content_type);
    }
    if let Some(auth) = &call.authorization {
        built = built.header(header::AUTHORIZATION, auth.as_str());
    }
    built.body(http_body_util::Full::new(body))
}

/// TLS for the URL's host, one `GET` (or `POST`), and its answer's body if it is a 200
/// within `max`.
async fn exchange(
    call: &Call<'_>,
    stream: tokio::net::TcpStream,
    tls: Arc<rustls::ClientConfig>,
    max: usize,
) -> Result<Fetched, FetchError> {
    let url = call.url;
    let host = url.host().to_owned();
    let name =
        rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| FetchError::Tls {
            host: host.clone(),
            source: std::io::Error::other(e),
        })?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, stream)
        .await
        .map_err(|source| FetchError::Tls {
            host: host.clone(),
            source,
        })?;
    let http = |source| FetchError::Http {
        host: host.clone(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(conn);
    let built = http_request(call, &host).map_err(|e| FetchError::Connect {
        host: host.clone(),
        source: std::io::Error::other(e),
    })?;
    let response = sender.send_request(built).await.map_err(http)?;
    let status = response.status();
    if status != StatusCode::OK {
        return Err(FetchError::Status {
            host,
            status,
            redirect: status.is_redirection(),
        });
    }
    let too_large = || FetchError::TooLarge {
        host: host.clone(),
        max,
    };
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let cache_control = response
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = Limited::new(response.into_body(), max)
        .collect()
        .await
        .map_err(|e| match e.downcast::<hyper::Error>() {
            Ok(e) => http(*e),
            Err(_) => too_large(),
        })?
        .to_bytes();
    Ok(Fetched {
        body,
        cache_control,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::scheme::pin::{HostPattern, KeyUrl};
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HOST: &str = "keys.test.example";

    /// A key document's request made once, as the cache makes one without a token.
    async fn fetch(
        request: &KeyRequest,
        tls: Arc<rustls::ClientConfig>,
        resolve: &Resolve,
        limits: &Limits,
    ) -> Result<Fetched, FetchError> {
        send(&Call::of(request, None), tls, resolve, limits).await
    }

    /// A CA and a key server's certificate for `HOST` signed by it: the server's TLS, and
    /// a client TLS config trusting the CA.
    pub(in crate::remote_keys) fn pki() -> (tokio_rustls::TlsAcceptor, Arc<rustls::ClientConfig>) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![HOST.to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (
            tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            Arc::new(client),
        )
    }

    /// A key server on loopback: every request gets its current answer (`None`: never
    /// answered), a little late so that concurrent callers overlap; it counts connections
    /// and requests and keeps the last request's head.
    pub(in crate::remote_keys) struct KeyServer {
        pub addr: SocketAddr,
        answer: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
        connections: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
        head: Arc<std::sync::Mutex<String>>,
    }

    impl KeyServer {
        pub async fn start(tls: tokio_rustls::TlsAcceptor, answer: Option<Vec<u8>>) -> KeyServer {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = KeyServer {
                addr: listener.local_addr().unwrap(),
                answer: Arc::new(std::sync::Mutex::new(answer)),
                connections: Arc::new(AtomicUsize::new(0)),
                requests: Arc::new(AtomicUsize::new(0)),
                head: Arc::new(std::sync::Mutex::new(String::new())),
            };
            let (answer, connections) = (server.answer.clone(), server.connections.clone());
            let (requests, head) = (server.requests.clone(), server.head.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (tls, answer) = (tls.clone(), answer.clone());
                    let (requests, head) = (requests.clone(), head.clone());
                    tokio::spawn(async move {
                        let Ok(mut stream) = tls.accept(stream).await else {
                            return;
                        };
                        let mut buf = vec![0; 4096];
                        let n = stream.read(&mut buf).await.unwrap_or(0);
                        *head.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).into_owned();
                        requests.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let answer = answer.lock().unwrap().clone();
                        match answer {
                            Some(answer) => {
                                let _ = stream.write_all(&answer).await;
                                let _ = stream.shutdown().await;
                            }
                            None => tokio::time::sleep(Duration::from_secs(30)).await,
                        }
                    });
                }
            });
            server
        }

        pub fn answers(&self, answer: Option<Vec<u8>>) {
            *self.answer.lock().unwrap() = answer;
        }

        pub fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }

        fn head(&self) -> String {
            self.head.lock().unwrap().clone()
        }
    }

    pub(in crate::remote_keys) fn resolver(addr: SocketAddr) -> Resolve {
        Arc::new(move |_| Box::pin(async move { Ok(vec![addr]) }))
    }

    pub(in crate::remote_keys) fn url() -> KeyUrl {
        let pins = [HostPattern::parse(HOST).unwrap()];
        KeyUrl::parse(&format!("https://{HOST}/certs/sns.pem"), &pins).unwrap()
    }

    fn limits() -> Limits {
        Limits {
            read_timeout: Duration::from_millis(500),
            allow_private: true,
            ..Limits::default()
        }
    }

    pub(in crate::remote_keys) fn answer(
        status: &str,
        headers: &str,
        body: &str,
    ) -> Option<Vec<u8>> {
        Some(
            format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }

    #[tokio::test]
    async fn a_document_is_fetched_from_the_pinned_host_over_verified_tls() {
        let (server, client) = pki();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let reply = answer("200 OK", "Cache-Control: max-age=300\r\n", pem);
        let keys = KeyServer::start(server, reply).await;
        let got = fetch(&url().into(), client, &resolver(keys.addr), &limits())
            .await
            .unwrap();
        assert_eq!(got.body, pem.as_bytes());
        assert_eq!(got.cache_control.as_deref(), Some("max-age=300"));
        let head = keys.head().to_ascii_lowercase();
        assert!(
            head.starts_with("get /certs/sns.pem http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("host: {HOST}\r\n")), "{head}");
    }

    #[tokio::test]
    async fn redirects_errors_and_oversized_documents_are_refused() {
        let (server, client) = pki();
        let redirect = answer("302 Found", "Location: https://evil.example/x.pem\r\n", "");
        let addr = KeyServer::start(server.clone(), redirect).await.addr;
        let e = fetch(&url().into(), client.clone(), &resolver(addr), &limits()).await;
        assert!(
            matches!(e, Err(FetchError::Status { redirect: true, .. })),
            "{e:?}"
        );
        let addr = KeyServer::start(server.clone(), answer("500 Oops", "", ""))
            .await
            .addr;
        let e = fetch(&url().into(), client.clone(), &resolver(addr), &limits()).await;
        assert!(
            matches!(
                e,
                Err(FetchError::Status {
                    redirect: false,
                    ..
                })
            ),
            "{e:?}"
        );
        // Declared too large, and too large without a length (read up to the bound only).
        let huge = "x".repeat(70 * 1024);
        let addr = KeyServer::start(server.clone(), answer("200 OK", "", &huge))
            .await
            .addr;
        let e = fetch(&url().into(), client.clone(), &resolver(addr), &limits()).await;
        assert!(matches!(e, Err(FetchError::TooLarge { .. })), "{e:?}");
        let no_length = format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{huge}");
        let addr = KeyServer::start(server, Some(no_length.into_bytes()))
            .await
            .addr;
        let e = fetch(&url().into(), client, &resolver(addr), &limits()).await;
        assert!(matches!(e, Err(FetchError::TooLarge { .. })), "{e:?}");
    }

    #[tokio::test]
    async fn a_silent_host_times_out_and_a_private_address_is_never_connected_to() {
        let (server, client) = pki();
        let addr = KeyServer::start(server.clone(), None).await.addr;
        let started = std::time::Instant::now();
        let e = fetch(&url().into(), client.clone(), &resolver(addr), &limits()).await;
        assert!(matches!(e, Err(FetchError::Timeout { .. })), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        // A name that resolves to loopback, private addresses not allowed: no connection.
        let keys = KeyServer::start(server, answer("200 OK", "", "k")).await;
        let strict = Limits {
            allow_private: false,
            ..limits()
        };
        let e = fetch(&url().into(), client, &resolver(keys.addr), &strict).await;
        assert!(
            matches!(e, Err(FetchError::AddressNotAllowed { .. })),
            "{e:?}"
        );
        assert_eq!(keys.connections(), 0);
    }

    #[tokio::test]
    async fn a_certificate_from_another_ca_fails_tls() {
        let (server, _) = pki();
        let (_, other_ca_client) = pki();
        let addr = KeyServer::start(server, answer("200 OK", "", "k"))
            .await
            .addr;
        let e = fetch(&url().into(), other_ca_client, &resolver(addr), &limits()).await;
        assert!(matches!(e, Err(FetchError::Tls { .. })), "{e:?}");
    }
}
