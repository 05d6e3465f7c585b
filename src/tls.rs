//! TLS for listeners: rustls (ring provider) with TLS 1.2 and 1.3, certificate chain and key
//! from PEM files, ALPN `h2` and `http/1.1`; and TLS to `https://` upstreams. Loaded at config compile time, so a bad file is
//! a configuration error reported by `hookgate check`, not a failure at the first handshake.

use std::path::Path;
use std::sync::Arc;

use crate::config::secret::regular_file;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;

/// One listener's TLS: the server config and when its certificate expires.
pub struct ListenerTls {
    pub config: Arc<rustls::ServerConfig>,
    /// The leaf certificate's notAfter, in Unix seconds (`None` if it could not be read).
    pub expires: Option<i64>,
}

/// Builds the server config for one listener; the error names the file and what is wrong.
pub fn server_config(cert: &Path, key: &Path) -> Result<ListenerTls, String> {
    regular_file(cert, "certificate chain")?;
    regular_file(key, "private key")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificate chain {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let expires = not_after(&certs[0]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not form a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ListenerTls {
        config: Arc::new(config),
        expires,
    })
}

/// TLS to an `https://` upstream: verified against `ca_file`'s certificates, or the system's
/// trust roots when none is given; with a client certificate when both files are given;
/// checking `server_name` (default: the URL's host). There is no way to turn verification
/// off. ALPN offers `http/1.1` (the upstream pool speaks HTTP/1.1).
pub fn upstream_config(
    host: &str,
    server_name: Option<&str>,
    ca_file: Option<&Path>,
    client_cert: Option<&Path>,
    client_key: Option<&Path>,
) -> Result<crate::model::UpstreamTls, String> {
    // Each file is read once: parsed below, and hashed into the fingerprint that keys the
    // keep-alive pool (routes share connections only with the same settings, by content).
    let mut fingerprint = sha2::Sha256::new();
    fingerprint.update(server_name.unwrap_or("").as_bytes());
    let mut read = |file: Option<&Path>, what: &str| -> Result<Option<Vec<u8>>, String> {
        fingerprint.update([0u8]);
        let Some(path) = file else { return Ok(None) };
        regular_file(path, what)?;
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
        fingerprint.update(&bytes);
        Ok(Some(bytes))
    };
    let ca = read(ca_file, "ca_file")?;
    let cert_pem = read(client_cert, "client_cert_file")?;
    let key_pem = read(client_key, "client_key_file")?;
    let fingerprint = hex::encode(fingerprint.finalize());
    let shown = |p: Option<&Path>| p.map(|p| p.display().to_string()).unwrap_or_default();
    let roots = match &ca {
        Some(pem) => {
            let path = shown(ca_file);
            let mut roots = rustls::RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot read ca_file {path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("no certificate in ca_file {path}"));
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("ca_file {path}: {e}"))?;
            }
            Arc::new(roots)
        }
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots.clone());
    let mut config = match (cert_pem, key_pem) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot read client_cert_file {}: {e}", shown(client_cert)))?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| format!("cannot read client_key_file {}: {e}", shown(client_key)))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate and key do not form a usable pair: {e}"))?
        }
        _ => return Err("client_cert_file and client_key_file go together".into()),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = server_name.unwrap_or(host);
    // An IPv6 literal comes bracketed in the URL.
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| format!("`{name}` is not a DNS name or IP address to verify: {e}"))?;
    Ok(crate::model::UpstreamTls {
        config: Arc::new(config),
        roots,
        server_name,
        fingerprint,
    })
}

/// TLS to PostgreSQL (the queue store): verified against `ca_file`'s certificates or the
/// system's trust roots, as for upstreams; the server name is the URL's host. No ALPN:
/// PostgreSQL's SSL negotiation has none, and newer servers refuse one they do not know.
pub fn postgres_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let upstream = upstream_config("localhost", None, ca_file, None, None)?;
    let mut config = (*upstream.config).clone();
    config.alpn_protocols.clear();
    Ok(config)
}

/// The operating system's trust roots, read once.
fn system_roots() -> Result<Arc<rustls::RootCertStore>, String> {
    static ROOTS: std::sync::OnceLock<Result<Arc<rustls::RootCertStore>, String>> =
        std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "no system trust roots found ({}); give upstream_tls.ca_file",
                    match found.errors.len() {
                        1 => "1 error".to_owned(),
                        n => format!("{n} errors"),
                    }
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// The certificate's notAfter in Unix seconds (`scheme/certificate.rs` reads it). Only for
/// the expiry metric: rustls has already parsed and accepted the certificate, so `None` here
/// only means "unknown".
fn not_after(cert: &[u8]) -> Option<i64> {
    crate::scheme::certificate::validity(cert).map(|(_, after)| after)
}
