//! PayPal webhook signatures (issue 23), the pure part: PayPal signs
//! `transmission_id|transmission_time|webhook_id|crc32(body)` (the CRC-32 as an unsigned
//! decimal, the webhook id the route's own) with RSA PKCS#1 v1.5 and SHA-256 under the key of
//! the certificate its `PAYPAL-CERT-URL` names. Only `SHA256withRSA` is accepted, whatever
//! `PAYPAL-AUTH-ALGO` says otherwise, and a `|` in a header would move bytes between the
//! fields, so it is refused. Where the certificate comes from (the pinned URL, fetched and
//! cached by `remote_keys/`) is decided before this.

/// Why a PayPal delivery does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaypalError {
    #[error("PAYPAL-AUTH-ALGO is {0:?}; only SHA256withRSA is accepted")]
    Algorithm(String),
    #[error("{0} holds a `|`, which would move bytes between the signed fields")]
    Separator(&'static str),
    #[error("PAYPAL-TRANSMISSION-SIG is not base64")]
    Malformed,
    #[error("the signing certificate cannot be read: {0}")]
    Certificate(String),
    #[error("signature does not match")]
    Mismatch,
}

/// What one delivery says of itself, from its headers.
pub struct Transmission<'a> {
    pub id: &'a str,
    pub time: &'a str,
    pub auth_algo: &'a str,
    pub signature: &'a str,
}

/// The bytes PayPal signed for a delivery of `body` to the webhook `webhook_id`.
pub fn string_to_sign(
    t: &Transmission<'_>,
    webhook_id: &str,
    body: &[u8],
) -> Result<Vec<u8>, PaypalError> {
    for (name, value) in [
        ("PAYPAL-TRANSMISSION-ID", t.id),
        ("PAYPAL-TRANSMISSION-TIME", t.time),
        ("the webhook id", webhook_id),
    ] {
        if value.contains('|') {
            return Err(PaypalError::Separator(name));
        }
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(body);
    Ok(format!("{}|{}|{}|{}", t.id, t.time, webhook_id, crc.finalize()).into_bytes())
}

/// Checks a delivery's signature with the key of the certificate `cert_der` (DER).
pub fn verify(
    t: &Transmission<'_>,
    webhook_id: &str,
    body: &[u8],
    cert_der: &[u8],
) -> Result<(), PaypalError> {
    use base64::Engine as _;
    if t.auth_algo != "SHA256withRSA" {
        return Err(PaypalError::Algorithm(t.auth_algo.to_owned()));
    }
    let signature = super::BASE64
        .decode(t.signature)
        .map_err(|_| PaypalError::Malformed)?;
    let signed = string_to_sign(t, webhook_id, body)?;
    let der = rustls::pki_types::CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| PaypalError::Certificate(e.to_string()))?;
    cert.verify_signature(&super::sns::RSA_PKCS1_SHA256, &signed, &signature)
        .map_err(|_| PaypalError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// tests/vectors/paypal.json: a real delivery and the certificate it verifies with.
    fn vector() -> Value {
        serde_json::from_str(include_str!("../../tests/vectors/paypal.json")).unwrap()
    }

    fn der(v: &Value) -> Vec<u8> {
        use base64::Engine as _;
        let b64: String = v["certificate"]
            .as_str()
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        super::super::BASE64.decode(b64).unwrap()
    }

    fn transmission(v: &Value) -> Transmission<'_> {
        let h = |name: &str| v["headers"][name].as_str().unwrap();
        Transmission {
            id: h("PAYPAL-TRANSMISSION-ID"),
            time: h("PAYPAL-TRANSMISSION-TIME"),
            auth_algo: h("PAYPAL-AUTH-ALGO"),
            signature: h("PAYPAL-TRANSMISSION-SIG"),
        }
    }

    #[test]
    fn a_real_paypal_delivery_verifies_with_its_certificate() {
        let v = vector();
        let body = v["body"].as_str().unwrap().as_bytes();
        let webhook = v["webhook_id"].as_str().unwrap();
        let t = transmission(&v);
        // The CRC-32 written unsigned, as PayPal's SDKs write it.
        assert!(
            String::from_utf8(string_to_sign(&t, webhook, body).unwrap())
                .unwrap()
                .ends_with("|4JH86294D6297924G|2771810304")
        );
        assert_eq!(verify(&t, webhook, body, &der(&v)), Ok(()));
    }

    #[test]
    fn another_body_webhook_time_or_algorithm_is_refused() {
        let v = vector();
        let body = v["body"].as_str().unwrap();
        let webhook = v["webhook_id"].as_str().unwrap();
        let cert = der(&v);
        let t = transmission(&v);
        let changed = body.replace("20.00", "2000.00");
        assert_eq!(
            verify(&t, webhook, changed.as_bytes(), &cert),
            Err(PaypalError::Mismatch)
        );
        assert_eq!(
            verify(&t, "OTHERWEBHOOK1234", body.as_bytes(), &cert),
            Err(PaypalError::Mismatch),
            "the route's own webhook id is signed"
        );
        let later = Transmission {
            time: "2015-05-18T15:45:14Z",
            ..transmission(&v)
        };
        assert_eq!(
            verify(&later, webhook, body.as_bytes(), &cert),
            Err(PaypalError::Mismatch)
        );
        let sha1 = Transmission {
            auth_algo: "SHA1withRSA",
            ..transmission(&v)
        };
        assert!(matches!(
            verify(&sha1, webhook, body.as_bytes(), &cert),
            Err(PaypalError::Algorithm(_))
        ));
        let shifted = Transmission {
            id: "dfb3be50-fd74-11e4-8bf3-77339302725b|2015-05-18T15:45:13Z",
            ..transmission(&v)
        };
        assert_eq!(
            verify(&shifted, webhook, body.as_bytes(), &cert),
            Err(PaypalError::Separator("PAYPAL-TRANSMISSION-ID"))
        );
    }
}
