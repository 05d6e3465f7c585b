//! Keys a scheme fetches instead of holding (issue 23): the request names the URL of its
//! signing certificate (AWS SNS's `SigningCertURL` in the body, PayPal's `PAYPAL-CERT-URL`
//! header), which must be one of the hosts the scheme pins (`pin.rs`); the gateway fetches it
//! (`remote_keys/`), and the scheme verifies with it once the certificate may sign
//! (`certificate.rs`: valid now, issued to one of the sender's names).
//!
//! The pure part lives here: where the URL is read, which hosts and certificate names are
//! accepted, and the fetched document as the scheme reads it ([`KeyDoc`]). Nothing here does
//! I/O; the pipeline fetches between [`FetchedKey::url`] and `Scheme::verify_with`.

use http::HeaderName;

use super::certificate::Certificate;
use super::pin::{HostPattern, KeyUrl};
use super::{RequestView, VerifyError};

/// Where a scheme's key comes from when it is fetched.
#[derive(Clone, Debug)]
pub struct FetchedKey {
    /// Where the request names the key's URL.
    pub from: KeyFrom,
    /// The hosts that URL may name (`sns.*.amazonaws.com`, `api.paypal.com`).
    pub hosts: Vec<HostPattern>,
    /// The DNS names the signing certificate must be issued to (one of them).
    pub names: Vec<String>,
}

/// Where the request names its key's URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyFrom {
    Header(HeaderName),
    /// A JSON pointer into the body.
    Json(String),
}

impl KeyFrom {
    /// As a refusal says it: `header paypal-cert-url`, `JSON field /SigningCertURL`.
    pub fn describe(&self) -> String {
        match self {
            KeyFrom::Header(name) => format!("header {name}"),
            KeyFrom::Json(pointer) => format!("JSON field {pointer}"),
        }
    }
}

impl FetchedKey {
    /// The key URL `req` names, if it is one the scheme pins. A missing, repeated or unpinned
    /// URL is refused (401): nothing is fetched for it.
    pub fn url(&self, req: &RequestView<'_>) -> Result<KeyUrl, VerifyError> {
        let refused =
            |why: String| VerifyError::KeyUrlRefused(format!("{}: {why}", self.from.describe()));
        let text = match &self.from {
            KeyFrom::Header(name) => {
                let mut values = req.headers.get_all(name).iter();
                let first = values.next().ok_or_else(|| refused("missing".into()))?;
                if values.next().is_some() {
                    return Err(VerifyError::RepeatedHeader(name.clone()));
                }
                first
                    .to_str()
                    .map_err(|_| refused("not text".into()))?
                    .to_owned()
            }
            KeyFrom::Json(pointer) => match req.json()?.pointer(pointer) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(_) => return Err(refused("not a string".into())),
                None => return Err(refused("missing".into())),
            },
        };
        KeyUrl::parse(&text, &self.hosts).map_err(|e| refused(e.to_string()))
    }
}

/// A fetched document as a scheme reads it, parsed once when it is fetched.
#[derive(Clone, Debug)]
pub enum KeyDoc {
    /// A PEM signing certificate (its chain, if the document holds one, follows it unread).
    Certificate(Certificate),
}

impl KeyDoc {
    /// A document of the kind `key` fetches.
    pub fn parse(_key: &FetchedKey, bytes: &[u8]) -> Result<KeyDoc, String> {
        Certificate::from_pem(bytes).map(KeyDoc::Certificate)
    }

    /// What an operator is shown of it (the admin listener, `hookgate explain`).
    pub fn describe(&self) -> String {
        match self {
            KeyDoc::Certificate(c) => format!(
                "certificate for {}, valid until {} (unix), SHA-256 {}",
                c.names.join(", "),
                c.not_after,
                c.fingerprint_text()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::RawBody;
    use crate::scheme::JsonBody;

    fn view_of<'a>(
        headers: &'a http::HeaderMap,
        body: &'a RawBody,
        json: &'a JsonBody,
    ) -> RequestView<'a> {
        RequestView {
            method: &http::Method::POST,
            headers,
            body,
            path_and_query: "/",
            json,
        }
    }

    fn sns() -> FetchedKey {
        FetchedKey {
            from: KeyFrom::Json("/SigningCertURL".into()),
            hosts: vec![HostPattern::parse("sns.*.amazonaws.com").unwrap()],
            names: vec!["sns.amazonaws.com".into()],
        }
    }

    #[test]
    fn the_key_url_is_read_where_the_sender_puts_it_and_must_be_pinned() {
        let headers = http::HeaderMap::new();
        let url = |cert_url: &str| {
            let body = RawBody::from(
                serde_json::json!({ "SigningCertURL": cert_url })
                    .to_string()
                    .into_bytes(),
            );
            let json = JsonBody::default();
            sns().url(&view_of(&headers, &body, &json))
        };
        let good = url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem");
        assert_eq!(
            good.unwrap().to_string(),
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem"
        );
        for hostile in [
            "http://sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com.evil.com/x.pem",
            "https://evil.com@sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
            "https://169.254.169.254/latest/meta-data",
            "https://sns.xn--eu-wst-1-x.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com/../x.pem",
        ] {
            assert!(
                matches!(url(hostile), Err(VerifyError::KeyUrlRefused(_))),
                "{hostile}"
            );
        }
        let body = RawBody::from(b"{}".to_vec());
        let json = JsonBody::default();
        assert!(matches!(
            sns().url(&view_of(&headers, &body, &json)),
            Err(VerifyError::KeyUrlRefused(why)) if why.contains("missing")
        ));
    }

    #[test]
    fn a_key_url_header_is_read_once() {
        let paypal = FetchedKey {
            from: KeyFrom::Header(HeaderName::from_static("paypal-cert-url")),
            hosts: vec![HostPattern::parse("api.paypal.com").unwrap()],
            names: vec![],
        };
        let body = RawBody::from(Vec::new());
        let json = JsonBody::default();
        let mut headers = http::HeaderMap::new();
        let cert = "https://api.paypal.com/v1/notifications/certs/CERT-1";
        headers.append("paypal-cert-url", cert.parse().unwrap());
        assert!(paypal.url(&view_of(&headers, &body, &json)).is_ok());
        headers.append("paypal-cert-url", cert.parse().unwrap());
        assert!(matches!(
            paypal.url(&view_of(&headers, &body, &json)),
            Err(VerifyError::RepeatedHeader(_))
        ));
    }
}
