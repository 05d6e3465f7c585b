//! A signing certificate fetched from a sender (AWS SNS's `SigningCertURL`, PayPal's
//! `PAYPAL-CERT-URL`), read once when it is fetched: its DER, when it is valid, its SHA-256
//! fingerprint and the DNS names it carries. Whether it may sign a request is decided per
//! request ([`Certificate::check`]): inside its validity at that moment, and issued to one of
//! the names the scheme accepts (SNS's `sns.amazonaws.com`, PayPal's
//! `messageverificationcerts.paypal.com`).
//!
//! The document is trusted because it came over verified TLS from a pinned host
//! (`pin.rs`, `remote_keys/fetch.rs`); the name check keeps a certificate that host serves for
//! another purpose from signing webhooks. The validity dates are read from the DER by hand
//! (`validity`), as the listener's expiry metric reads its own (`tls.rs`).

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use sha2::Digest as _;

/// A certificate read from a fetched document.
#[derive(Clone, Debug)]
pub struct Certificate {
    pub der: Vec<u8>,
    /// notBefore and notAfter, in Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the DER, as operators compare certificates.
    pub fingerprint: [u8; 32],
    /// The DNS names of its subjectAltName.
    pub names: Vec<String>,
    /// The certificates after it in the document (its chain, as the sender sent it), DER.
    pub chain: Vec<Vec<u8>>,
}

/// Why a certificate may not sign a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the signing certificate is not valid yet")]
    NotYetValid,
    #[error("the signing certificate has expired")]
    Expired,
    #[error("the signing certificate is issued to {0}, not to a name this sender signs with")]
    WrongName(String),
    #[error("the signing certificate does not chain to a trusted root: {0}")]
    Unchained(String),
}

impl Certificate {
    /// The first certificate of a PEM document (a sender's signing certificate comes first;
    /// what follows is its chain). The document must be PEM certificates and nothing else: a
    /// page of a pinned host that merely quotes a certificate (an error page echoing what it
    /// was sent) is not a certificate document.
    pub fn from_pem(doc: &[u8]) -> Result<Certificate, String> {
        if !only_certificates(doc) {
            return Err("the document is not PEM certificates alone".into());
        }
        let mut all = CertificateDer::pem_slice_iter(doc)
            .map(|c| c.map(|c| c.as_ref().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the PEM document cannot be read: {e}"))?
            .into_iter();
        let first = all.next().ok_or("no PEM certificate in the document")?;
        let mut cert = Certificate::from_der(&first)?;
        cert.chain = all.collect();
        Ok(cert)
    }

    pub fn from_der(der: &[u8]) -> Result<Certificate, String> {
        let wrapped = CertificateDer::from(der);
        let cert = webpki::EndEntityCert::try_from(&wrapped)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let names = cert.valid_dns_names().map(str::to_owned).collect();
        let (not_before, not_after) =
            validity(der).ok_or("the certificate's validity cannot be read")?;
        Ok(Certificate {
            der: der.to_vec(),
            not_before,
            not_after,
            fingerprint: sha2::Sha256::digest(der).into(),
            names,
            chain: Vec::new(),
        })
    }

    /// Whether this certificate may sign a request at `now` (Unix seconds): inside its
    /// validity, and issued to one of `names` (exactly, as a DNS name compares).
    pub fn check(&self, now: i64, names: &[String]) -> Result<(), CertificateError> {
        if now < self.not_before {
            return Err(CertificateError::NotYetValid);
        }
        if now > self.not_after {
            return Err(CertificateError::Expired);
        }
        let issued_to = |n: &String| self.names.iter().any(|m| m.eq_ignore_ascii_case(n));
        if !names.iter().any(issued_to) {
            return Err(CertificateError::WrongName(if self.names.is_empty() {
                "no DNS name".to_owned()
            } else {
                self.names.join(", ")
            }));
        }
        Ok(())
    }

    /// Whether this certificate chains, at `now` (Unix seconds), to one of `anchors` through
    /// the certificates its document sent after it and `intermediates` (the route's own,
    /// for a sender that sends its certificate alone), as a TLS server's certificate would:
    /// every certificate on the path valid now, each signed by the next, CA constraints
    /// honoured, and no extended key usage that excludes a server certificate's.
    pub fn check_chain(
        &self,
        intermediates: &[Vec<u8>],
        anchors: &[rustls::pki_types::TrustAnchor<'_>],
        now: i64,
    ) -> Result<(), CertificateError> {
        let unchained = |why: String| CertificateError::Unchained(why);
        let der = CertificateDer::from(self.der.as_slice());
        let leaf = webpki::EndEntityCert::try_from(&der).map_err(|e| unchained(e.to_string()))?;
        let path: Vec<CertificateDer<'_>> = self
            .chain
            .iter()
            .chain(intermediates)
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let time = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now).unwrap_or(0),
        ));
        let algorithms = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        leaf.verify_for_usage(
            algorithms,
            anchors,
            &path,
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| unchained(format!("{e:?}")))
    }

    /// The fingerprint as operators read it: `AB:CD:...`.
    pub fn fingerprint_text(&self) -> String {
        let hex: Vec<String> = self
            .fingerprint
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        hex.join(":")
    }
}

/// Whether `doc` is one or more PEM `CERTIFICATE` blocks, with whitespace around them and
/// nothing else.
fn only_certificates(doc: &[u8]) -> bool {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let Ok(mut rest) = std::str::from_utf8(doc) else {
        return false;
    };
    let mut blocks = 0;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return blocks > 0;
        }
        let Some(body) = rest.strip_prefix(BEGIN) else {
            return false;
        };
        let Some(end) = body.find(END) else {
            return false;
        };
        let base64 = |c: char| c.is_ascii_alphanumeric() || "+/=\r\n \t".contains(c);
        if !body[..end].chars().all(base64) {
            return false;
        }
        rest = &body[end + END.len()..];
        blocks += 1;
    }
}

/// The certificate's notBefore and notAfter (RFC 5280 §4.1.2.5) in Unix seconds, read from
/// its DER: `Certificate { tbsCertificate { [0] version?, serialNumber, signature, issuer,
/// validity { notBefore, notAfter }, ... } }`.
pub fn validity(cert: &[u8]) -> Option<(i64, i64)> {
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
    let (tag, before, after) = der(validity)?;
    let not_before = time(tag, before)?;
    let (tag, after, _) = der(after)?;
    Some((not_before, time(tag, after)?))
}

/// A UTCTime (tag 0x17) or GeneralizedTime (0x18) in Unix seconds.
fn time(tag: u8, value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
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

    /// PayPal's real signing certificate (PayPal's SDK tests) chains to DigiCert's root
    /// through the intermediate PayPal's Java SDK bundles, while all three were valid.
    #[test]
    fn paypals_real_certificate_chains_to_digicert_through_its_intermediate() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/vectors/paypal.json")).unwrap();
        let leaf = Certificate::from_pem(v["certificate"].as_str().unwrap().as_bytes()).unwrap();
        assert!(leaf.chain.is_empty(), "PayPal sent its certificate alone");
        let der = |pem: &str| {
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .next()
                .unwrap()
                .unwrap()
        };
        let intermediate = der(include_str!(
            "../../tests/fixtures/digicert-sha2-ev-server-ca.pem"
        ))
        .to_vec();
        let root = der(include_str!(
            "../../tests/fixtures/digicert-high-assurance-ev-root-ca.pem"
        ));
        let anchors = [webpki::anchor_from_trusted_cert(&root).unwrap()];
        // 2016-06-01, inside the certificate's validity (2015-03-18 to 2017-03-22).
        let mid = 1_464_739_200;
        assert_eq!(
            leaf.check_chain(std::slice::from_ref(&intermediate), &anchors, mid),
            Ok(())
        );
        // Without the intermediate, or after the certificate expired, or to another root.
        assert!(matches!(
            leaf.check_chain(&[], &anchors, mid),
            Err(CertificateError::Unchained(_))
        ));
        assert!(matches!(
            leaf.check_chain(std::slice::from_ref(&intermediate), &anchors, 1_700_000_000),
            Err(CertificateError::Unchained(_))
        ));
        let other = made(&["root.example"], (2010, 1, 1), (2040, 1, 1));
        let other = CertificateDer::from(other.der.as_slice());
        let others = [webpki::anchor_from_trusted_cert(&other).unwrap()];
        assert!(matches!(
            leaf.check_chain(std::slice::from_ref(&intermediate), &others, mid),
            Err(CertificateError::Unchained(_))
        ));
    }

    fn made(names: &[&str], from: (i32, u8, u8), to: (i32, u8, u8)) -> Certificate {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Certificate::from_pem(cert.pem().as_bytes()).unwrap()
    }

    fn day(y: i64, m: i64, d: i64) -> i64 {
        days_from_civil(y, m, d) * 86_400
    }

    #[test]
    fn the_validity_is_read_from_the_certificate() {
        for (year, month, day_of) in [(2027, 3, 1), (2049, 12, 31), (2051, 6, 15)] {
            let c = made(&["a.example"], (2020, 1, 2), (year, month, day_of));
            assert_eq!(c.not_before, day(2020, 1, 2));
            assert_eq!(c.not_after, day(year.into(), month.into(), day_of.into()));
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(validity(b"\x30\x05garbage"), None);
        assert_eq!(validity(&[]), None);
        assert!(Certificate::from_pem(b"not pem").is_err());
        // A chain is a certificate document; a certificate quoted inside another is not.
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        assert!(Certificate::from_pem(pem.as_bytes()).is_ok());
        assert!(Certificate::from_pem(format!("\n{pem}\r\n{pem}").as_bytes()).is_ok());
        for quoted in [
            format!("<html><pre>{pem}</pre></html>"),
            format!("error: {pem}"),
            format!("{pem}\nand more"),
            format!("{pem}-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"),
        ] {
            assert!(
                Certificate::from_pem(quoted.as_bytes()).is_err(),
                "{quoted}"
            );
        }
    }

    #[test]
    fn a_certificate_signs_only_inside_its_validity_and_for_its_names() {
        let c = made(&["sns.amazonaws.com"], (2024, 1, 1), (2025, 1, 1));
        let names = vec!["sns.amazonaws.com".to_owned()];
        let inside = day(2024, 6, 1);
        assert_eq!(c.check(inside, &names), Ok(()));
        assert_eq!(
            c.check(day(2023, 12, 31), &names),
            Err(CertificateError::NotYetValid)
        );
        assert_eq!(
            c.check(day(2025, 1, 2), &names),
            Err(CertificateError::Expired)
        );
        let other = vec!["messageverificationcerts.paypal.com".to_owned()];
        assert_eq!(
            c.check(inside, &other),
            Err(CertificateError::WrongName("sns.amazonaws.com".into()))
        );
        // A name is one DNS name: not a suffix, not a wildcard the scheme did not list.
        let suffix = made(&["evil-sns.amazonaws.com"], (2024, 1, 1), (2025, 1, 1));
        assert!(suffix.check(inside, &names).is_err());
        let wildcard = made(&["*.amazonaws.com"], (2024, 1, 1), (2025, 1, 1));
        assert!(wildcard.check(inside, &names).is_err());
        assert_eq!(c.fingerprint_text().len(), 32 * 3 - 1);
    }
}
