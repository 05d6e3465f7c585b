//! AWS SNS message signatures (issue 23), the pure part: the string SNS signs for each message
//! type, and the check of a message's `Signature` with the public key of its signing
//! certificate. Version 1 is RSA PKCS#1 v1.5 with SHA-1, version 2 with SHA-256; any other is
//! refused. Where the certificate comes from (its pinned `SigningCertURL`, fetched and cached
//! by `remote_keys/`) and whether it may sign (`certificate.rs`: valid now, issued to
//! `sns.amazonaws.com`) are decided by `fetched.rs`; it is not chained to a root (the
//! `.pem` SNS serves holds the certificate alone). A newline in any signed value but the
//! message is refused: it would move bytes from one field to the next.
//!
//! The string to sign follows AWS's documented key lists per type (not the union some
//! validators use), each key as `Key\nvalue\n`, in this order:
//! - `Notification`: Message, MessageId, Subject (only when present), Timestamp, TopicArn,
//!   Type;
//! - `SubscriptionConfirmation` and `UnsubscribeConfirmation`: Message, MessageId,
//!   SubscribeURL, Timestamp, Token, TopicArn, Type.

use rustls::pki_types::SignatureVerificationAlgorithm;
use serde_json::Value;

use super::VerifyError;

/// Why an SNS message does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnsError {
    #[error("not an SNS message: {0}")]
    Malformed(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("unsupported SignatureVersion {0:?} (1 or 2)")]
    UnsupportedVersion(String),
}

/// The bytes SNS signed for `message` (a parsed SNS JSON body).
pub fn string_to_sign(message: &Value) -> Result<Vec<u8>, SnsError> {
    let text = |key: &str| -> Result<Option<&str>, SnsError> {
        match message.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(SnsError::Malformed(format!("{key} is not a string"))),
        }
    };
    let kind = text("Type")?.ok_or_else(|| SnsError::Malformed("no Type".into()))?;
    let keys: &[(&str, bool)] = match kind {
        "Notification" => &[
            ("Message", true),
            ("MessageId", true),
            ("Subject", false),
            ("Timestamp", true),
            ("TopicArn", true),
            ("Type", true),
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            ("Message", true),
            ("MessageId", true),
            ("SubscribeURL", true),
            ("Timestamp", true),
            ("Token", true),
            ("TopicArn", true),
            ("Type", true),
        ],
        other => return Err(SnsError::UnknownType(other.to_owned())),
    };
    let mut out = Vec::new();
    for (key, required) in keys {
        match (text(key)?, required) {
            // Each value ends at a newline: one inside any but the message would move bytes
            // between the signed fields (a `MessageId` read from the end of a `Subject`).
            (Some(value), _) if *key != "Message" && value.contains('\n') => {
                return Err(SnsError::Malformed(format!("a newline in {key}")));
            }
            (Some(value), _) => {
                out.extend_from_slice(key.as_bytes());
                out.push(b'\n');
                out.extend_from_slice(value.as_bytes());
                out.push(b'\n');
            }
            (None, true) => return Err(SnsError::Malformed(format!("no {key}"))),
            (None, false) => {}
        }
    }
    Ok(out)
}

/// What SNS signed in `message` and the algorithm its `SignatureVersion` names (the
/// signature itself is read as the scheme's `signature:` says, `/Signature` in base64).
pub(super) fn signed(
    message: &Value,
) -> Result<(Vec<u8>, &'static dyn SignatureVerificationAlgorithm), VerifyError> {
    let version = message
        .get("SignatureVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| SnsError::Malformed("no SignatureVersion".into()))
        .map_err(refused)?;
    let algorithm: &'static dyn SignatureVerificationAlgorithm = match version {
        "1" => &RSA_PKCS1_SHA1,
        "2" => &RSA_PKCS1_SHA256,
        other => return Err(refused(SnsError::UnsupportedVersion(other.to_owned()))),
    };
    Ok((string_to_sign(message).map_err(refused)?, algorithm))
}

/// RSA PKCS#1 v1.5 with SHA-256, for the schemes that verify with a certificate's key.
pub(super) fn rsa_sha256() -> &'static dyn SignatureVerificationAlgorithm {
    &RSA_PKCS1_SHA256
}

/// A message that is not one SNS signs: its signature cannot be checked.
fn refused(e: SnsError) -> VerifyError {
    VerifyError::MalformedSignature(e.to_string())
}

/// RSA PKCS#1 v1.5 verification through ring, for a certificate's RSA key: SHA-1 (SNS
/// version 1; ring keeps it for legacy use) or SHA-256.
#[derive(Debug)]
struct RsaPkcs1 {
    params: &'static ring::signature::RsaParameters,
    id: rustls::pki_types::AlgorithmIdentifier,
}

/// sha1WithRSAEncryption (1.2.840.113549.1.1.5) with NULL parameters, as DER contents.
const SHA1_WITH_RSA: rustls::pki_types::AlgorithmIdentifier =
    rustls::pki_types::AlgorithmIdentifier::from_slice(&[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
    ]);

static RSA_PKCS1_SHA1: RsaPkcs1 = RsaPkcs1 {
    params: &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
    id: SHA1_WITH_RSA,
};

static RSA_PKCS1_SHA256: RsaPkcs1 = RsaPkcs1 {
    params: &ring::signature::RSA_PKCS1_2048_8192_SHA256,
    id: rustls::pki_types::alg_id::RSA_PKCS1_SHA256,
};

impl SignatureVerificationAlgorithm for RsaPkcs1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), rustls::pki_types::InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(self.params, public_key)
            .verify(message, signature)
            .map_err(|_| rustls::pki_types::InvalidSignature)
    }

    fn public_key_alg_id(&self) -> rustls::pki_types::AlgorithmIdentifier {
        rustls::pki_types::alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> rustls::pki_types::AlgorithmIdentifier {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tests/vectors/sns.json: real SNS messages and the certificate they verify with.
    fn vectors() -> (Vec<u8>, Vec<Value>) {
        let v: Value = serde_json::from_str(include_str!("../../tests/vectors/sns.json")).unwrap();
        let pem = v["certificate"].as_str().unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine as _;
        let der = super::super::BASE64.decode(b64).unwrap();
        let cases = v["cases"].as_array().unwrap();
        (der, cases.iter().map(|c| c["message"].clone()).collect())
    }

    /// Why a message did not verify, in these tests.
    #[derive(Debug, PartialEq)]
    enum Failed {
        Mismatch,
        Unsigned(VerifyError),
        Certificate,
    }

    /// A message checked with `cert` as the scheme checks it.
    fn verify(message: &Value, cert: &[u8]) -> Result<(), Failed> {
        use base64::Engine as _;
        let (signed, algorithm) = signed(message).map_err(Failed::Unsigned)?;
        let signature = super::super::BASE64
            .decode(message["Signature"].as_str().unwrap())
            .unwrap();
        let der = rustls::pki_types::CertificateDer::from(cert);
        let cert = webpki::EndEntityCert::try_from(&der).map_err(|_| Failed::Certificate)?;
        cert.verify_signature(algorithm, &signed, &signature)
            .map_err(|_| Failed::Mismatch)
    }

    #[test]
    fn real_sns_messages_verify_with_their_certificate_v1_and_v2() {
        let (cert, messages) = vectors();
        assert_eq!(messages.len(), 4);
        for m in &messages {
            assert_eq!(verify(m, &cert), Ok(()), "{}", m["MessageId"]);
        }
    }

    #[test]
    fn any_change_to_a_signed_key_or_the_version_is_refused() {
        let (cert, messages) = vectors();
        let with = |m: &Value, key: &str, value: Value| {
            let mut m = m.clone();
            m[key] = value;
            m
        };
        let plain = &messages[0]; // version 1, no Subject
        for (key, value) in [
            ("Message", Value::from("Hello world!")),
            ("TopicArn", Value::from("arn:aws:sns:us-east-2:1:other")),
            ("Timestamp", Value::from("2022-07-28T21:23:59.317Z")),
            ("Subject", Value::from("added")),
        ] {
            assert_eq!(
                verify(&with(plain, key, value), &cert),
                Err(Failed::Mismatch),
                "{key}"
            );
        }
        // Unsigned keys may change (the UnsubscribeURL is not signed in a Notification).
        let unsigned = with(plain, "UnsubscribeURL", Value::from("https://example.com/"));
        assert_eq!(verify(&unsigned, &cert), Ok(()));
        // A version-1 signature claimed as version 2, and versions SNS does not have.
        assert_eq!(
            verify(&with(plain, "SignatureVersion", Value::from("2")), &cert),
            Err(Failed::Mismatch)
        );
        for v in ["3", "0", ""] {
            assert!(matches!(
                verify(&with(plain, "SignatureVersion", Value::from(v)), &cert),
                Err(Failed::Unsigned(VerifyError::MalformedSignature(why))) if why.contains("SignatureVersion")
            ));
        }
        // A message with a Subject loses it: no longer what was signed.
        let mut dropped = messages[2].clone();
        dropped.as_object_mut().unwrap().remove("Subject");
        assert_eq!(verify(&dropped, &cert), Err(Failed::Mismatch));
        assert!(matches!(
            verify(plain, b"not a certificate"),
            Err(Failed::Certificate)
        ));
    }

    #[test]
    fn confirmations_sign_their_token_and_subscribe_url() {
        let m: Value = serde_json::json!({
            "Type": "SubscriptionConfirmation", "MessageId": "m1", "Token": "t1",
            "TopicArn": "arn:aws:sns:eu-west-1:1:topic", "Message": "You have chosen...",
            "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
            "Timestamp": "2026-12-06T08:00:00.000Z"
        });
        let want = "Message\nYou have chosen...\nMessageId\nm1\nSubscribeURL\nhttps://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription\nTimestamp\n2026-12-06T08:00:00.000Z\nToken\nt1\nTopicArn\narn:aws:sns:eu-west-1:1:topic\nType\nSubscriptionConfirmation\n";
        assert_eq!(
            String::from_utf8(string_to_sign(&m).unwrap()).unwrap(),
            want
        );
        let mut no_token = m.clone();
        no_token.as_object_mut().unwrap().remove("Token");
        assert_eq!(
            string_to_sign(&no_token),
            Err(SnsError::Malformed("no Token".into()))
        );
        // A newline anywhere but in the message would shift bytes between fields.
        let mut shifted = m.clone();
        shifted["Token"] = Value::from("t1\nTopicArn\narn:aws:sns:eu-west-1:1:other");
        assert_eq!(
            string_to_sign(&shifted),
            Err(SnsError::Malformed("a newline in Token".into()))
        );
        let mut multiline = m.clone();
        multiline["Message"] = Value::from("line one\nline two");
        assert!(string_to_sign(&multiline).is_ok());
        let other = serde_json::json!({"Type": "Other"});
        assert!(matches!(
            string_to_sign(&other),
            Err(SnsError::UnknownType(_))
        ));
    }
}
