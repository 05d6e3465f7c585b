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
        .with_root_certificates(roots);
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

/// The certificate's notAfter (RFC 5280 §4.1.2.5) in Unix seconds, read from its DER:
/// `Certificate { tbsCertificate { [0] version?, serialNumber, signature, issuer,
/// validity { notBefore, notAfter }, ... } }`. Only for the expiry metric: rustls has already
/// parsed and accepted the certificate, so `None` here only means "unknown".
fn not_after(cert: &[u8]) -> Option<i64> {
    let (_, certificate, _) = der(cert)?;
    let (_, mut tbs, _) = der(certificate)?;
    let (tag, _, rest) = der(tbs)?;
    if tag == 0xa0 {
        tbs = rest; // explicit version
    }
    for _ in 0..3 {
        tbs = der(tbs)?.2; // serialNumber, signature, issuer
    }
    let (_, validity, _) = der(tbs)?;
    let (_, _, after_before) = der(validity)?;
    let (tag, time, _) = der(after_before)?;
    let text = std::str::from_utf8(time).ok()?;
    let (year, rest) = match tag {
        0x17 => {
            // UTCTime: YY, 50-99 meaning 19YY.
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, min, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// One DER element: (tag, contents, what follows). Definite lengths only, as DER requires.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_is_read_from_the_certificate() {
        for (year, month, day) in [(2027, 3, 1), (2049, 12, 31), (2051, 6, 15)] {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            params.not_after = rcgen::date_time_ymd(year, month, day);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let expected = days_from_civil(year.into(), month.into(), day.into()) * 86_400;
            assert_eq!(
                not_after(cert.der()),
                Some(expected),
                "{year}-{month}-{day}"
            );
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(not_after(b"\x30\x05garbage"), None);
        assert_eq!(not_after(&[]), None);
    }
}
