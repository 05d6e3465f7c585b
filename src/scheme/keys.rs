//! Key material, parsed once at load: pre-keyed HMAC states, token digests, and public keys
//! for asymmetric senders. Also the private keys `hookgate sign` can use for tests.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Algorithm, BASE64};

/// How configured key strings are turned into key bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyEncoding {
    /// The string's bytes as they are (most HMAC senders, Stripe's whole `whsec_...`).
    Raw,
    /// Base64 of the key bytes.
    Base64,
    /// URL-safe base64 of the key bytes (JWK `k` values), padding optional.
    Base64Url,
    /// Hex of the key bytes (Discord's public keys).
    Hex,
    /// `whsec_` + base64 (Standard Webhooks secrets), prefix optional.
    WhsecBase64,
    /// `whpk_` + base64 of a raw Ed25519 key (Standard Webhooks public keys), prefix optional.
    WhpkBase64,
    /// The SHA-1 digest of the configured text is the key (Braintree keys its HMAC with
    /// SHA-1 of the private key).
    Sha1OfText,
}

impl KeyEncoding {
    pub const ALL: &'static [KeyEncoding] = &[
        KeyEncoding::Raw,
        KeyEncoding::Base64,
        KeyEncoding::Base64Url,
        KeyEncoding::Hex,
        KeyEncoding::WhsecBase64,
        KeyEncoding::WhpkBase64,
        KeyEncoding::Sha1OfText,
    ];

    pub fn parse(s: &str) -> Option<KeyEncoding> {
        Some(match s {
            "raw" => KeyEncoding::Raw,
            "base64" => KeyEncoding::Base64,
            "base64url" => KeyEncoding::Base64Url,
            "hex" => KeyEncoding::Hex,
            "whsec_base64" => KeyEncoding::WhsecBase64,
            "whpk_base64" => KeyEncoding::WhpkBase64,
            "sha1_of_text" => KeyEncoding::Sha1OfText,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyEncoding::Raw => "raw",
            KeyEncoding::Base64 => "base64",
            KeyEncoding::Base64Url => "base64url",
            KeyEncoding::Hex => "hex",
            KeyEncoding::WhsecBase64 => "whsec_base64",
            KeyEncoding::WhpkBase64 => "whpk_base64",
            KeyEncoding::Sha1OfText => "sha1_of_text",
        }
    }

    /// Writes key bytes the way a configuration holds them (the inverse of [`decode`]); `raw`
    /// keys are not text, so they are written as base64 with a note from the caller.
    ///
    /// [`decode`]: KeyEncoding::decode
    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            // A derived key cannot be written back as its text: shown as base64.
            KeyEncoding::Raw | KeyEncoding::Base64 | KeyEncoding::Sha1OfText => {
                BASE64.encode(bytes)
            }
            KeyEncoding::Base64Url => super::BASE64URL.encode(bytes),
            KeyEncoding::Hex => hex::encode(bytes),
            KeyEncoding::WhsecBase64 => format!("whsec_{}", BASE64.encode(bytes)),
            KeyEncoding::WhpkBase64 => format!("whpk_{}", BASE64.encode(bytes)),
        }
    }

    /// Decodes configured key text into bytes; the error says what was expected.
    pub fn decode(self, text: &[u8]) -> Result<Vec<u8>, String> {
        let as_str = || {
            std::str::from_utf8(text)
                .map(str::trim)
                .map_err(|_| "not UTF-8 text".to_string())
        };
        match self {
            KeyEncoding::Raw => Ok(text.to_vec()),
            KeyEncoding::Sha1OfText => Ok(<sha1::Sha1 as Digest>::digest(text).to_vec()),
            KeyEncoding::Base64 => BASE64
                .decode(as_str()?)
                .map_err(|e| format!("not valid base64: {e}")),
            KeyEncoding::Base64Url => super::BASE64URL
                .decode(as_str()?)
                .map_err(|e| format!("not valid base64url: {e}")),
            KeyEncoding::Hex => hex::decode(as_str()?).map_err(|e| format!("not valid hex: {e}")),
            KeyEncoding::WhsecBase64 => {
                let s = as_str()?;
                BASE64
                    .decode(s.strip_prefix("whsec_").unwrap_or(s))
                    .map_err(|e| format!("not a whsec_<base64> secret: {e}"))
            }
            KeyEncoding::WhpkBase64 => {
                let s = as_str()?;
                BASE64
                    .decode(s.strip_prefix("whpk_").unwrap_or(s))
                    .map_err(|e| format!("not a whpk_<base64> public key: {e}"))
            }
        }
    }
}

/// A secret, pre-keyed: keying HMAC hashes the key once, so each request only clones this.
/// The plain digests (`digest-sha256`: the hash of the secret then the message) are a hash
/// state already fed the secret, used the same way.
#[derive(Clone)]
pub enum KeyedMac {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha384(Hmac<sha2::Sha384>),
    Sha512(Hmac<sha2::Sha512>),
    DigestSha1(sha1::Sha1),
    DigestSha256(sha2::Sha256),
    DigestSha512(sha2::Sha512),
}

impl KeyedMac {
    fn new(algorithm: Algorithm, key: &[u8]) -> Option<KeyedMac> {
        fn fed<D: Digest>(key: &[u8]) -> D {
            let mut d = D::new();
            d.update(key);
            d
        }
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
        Some(match algorithm {
            Algorithm::HmacSha1 => KeyedMac::Sha1(Hmac::new_from_slice(key).ok()?),
            Algorithm::HmacSha256 => KeyedMac::Sha256(Hmac::new_from_slice(key).ok()?),
            Algorithm::HmacSha384 => KeyedMac::Sha384(Hmac::new_from_slice(key).ok()?),
            Algorithm::HmacSha512 => KeyedMac::Sha512(Hmac::new_from_slice(key).ok()?),
            Algorithm::DigestSha1 => KeyedMac::DigestSha1(fed(key)),
            Algorithm::DigestSha256 => KeyedMac::DigestSha256(fed(key)),
            Algorithm::DigestSha512 => KeyedMac::DigestSha512(fed(key)),
            _ => return None,
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            KeyedMac::Sha1(m) => m.update(data),
            KeyedMac::Sha256(m) => m.update(data),
            KeyedMac::Sha384(m) => m.update(data),
            KeyedMac::Sha512(m) => m.update(data),
            KeyedMac::DigestSha1(d) => Digest::update(d, data),
            KeyedMac::DigestSha256(d) => Digest::update(d, data),
            KeyedMac::DigestSha512(d) => Digest::update(d, data),
        }
    }

    pub fn finalize(self) -> Vec<u8> {
        match self {
            KeyedMac::Sha1(m) => m.finalize().into_bytes().to_vec(),
            KeyedMac::Sha256(m) => m.finalize().into_bytes().to_vec(),
            KeyedMac::Sha384(m) => m.finalize().into_bytes().to_vec(),
            KeyedMac::Sha512(m) => m.finalize().into_bytes().to_vec(),
            KeyedMac::DigestSha1(d) => d.finalize().to_vec(),
            KeyedMac::DigestSha256(d) => d.finalize().to_vec(),
            KeyedMac::DigestSha512(d) => d.finalize().to_vec(),
        }
    }
}

/// The verification keys of one scheme, in configuration order (rotation: any may match).
#[derive(Clone)]
pub enum Keys {
    Hmac(Vec<KeyedMac>),
    /// SHA-256 of each accepted token, so comparison time does not depend on token length.
    Token(Vec<[u8; 32]>),
    Ed25519(Vec<ed25519_dalek::VerifyingKey>),
    P256(Vec<p256::ecdsa::VerifyingKey>),
    /// JWT keys, all of the route's one family (`jwt.rs`).
    Jwt(Vec<super::jwt::JwtKey>),
    /// One key, fetched from where each request says (`fetched.rs`).
    Fetched(Box<super::fetched::FetchedKey>),
}

impl Keys {
    /// Builds keys from decoded key bytes; the error names the index and what is wrong.
    pub fn new(algorithm: Algorithm, keys: &[Vec<u8>]) -> Result<Keys, (usize, String)> {
        Ok(match algorithm {
            // Built by `Keys::jwt`, which knows the route's key family.
            Algorithm::Jwt => return Keys::jwt(super::jwt::Family::Hmac, keys),
            Algorithm::RsaSha256 | Algorithm::AwsSns | Algorithm::EcdsaP256Sha1 => {
                return Err((
                    0,
                    format!(
                        "{}'s key is fetched (`key_url:`), never configured",
                        algorithm.name()
                    ),
                ))
            }
            Algorithm::HmacSha1
            | Algorithm::HmacSha256
            | Algorithm::HmacSha384
            | Algorithm::HmacSha512
            | Algorithm::DigestSha1
            | Algorithm::DigestSha256
            | Algorithm::DigestSha512 => Keys::Hmac(
                keys.iter()
                    .map(|k| KeyedMac::new(algorithm, k).expect("HMAC algorithm"))
                    .collect(),
            ),
            Algorithm::Token => {
                Keys::Token(keys.iter().map(|k| Sha256::digest(k).into()).collect())
            }
            Algorithm::Ed25519 => Keys::Ed25519(
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| {
                        let bytes: [u8; 32] = k.as_slice().try_into().map_err(|_| {
                            (
                                i,
                                format!(
                                    "an Ed25519 public key is 32 bytes, this one is {}",
                                    k.len()
                                ),
                            )
                        })?;
                        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                            .map_err(|e| (i, format!("not a valid Ed25519 public key: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Algorithm::EcdsaP256Sha256 => Keys::P256(
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| {
                        use p256::pkcs8::DecodePublicKey;
                        p256::ecdsa::VerifyingKey::from_public_key_der(k)
                            .or_else(|_| p256::ecdsa::VerifyingKey::from_sec1_bytes(k))
                            .map_err(|_| {
                                (
                                    i,
                                    "not a P-256 public key (DER SubjectPublicKeyInfo or SEC1)"
                                        .to_string(),
                                )
                            })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    pub fn len(&self) -> usize {
        match self {
            Keys::Hmac(k) => k.len(),
            Keys::Token(k) => k.len(),
            Keys::Ed25519(k) => k.len(),
            Keys::P256(k) => k.len(),
            Keys::Jwt(k) => k.len(),
            Keys::Fetched(_) => 1,
        }
    }

    /// JWT keys of one family: secrets for HMAC, PEM public keys otherwise.
    pub fn jwt(family: super::jwt::Family, keys: &[Vec<u8>]) -> Result<Keys, (usize, String)> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| super::jwt::JwtKey::new(family, k).map_err(|e| (i, e)))
            .collect::<Result<_, _>>()
            .map(Keys::Jwt)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a shared secret or a JWT key has no PEM or public key to show.
const NOT_A_PAIR: &str = "not a key pair: a shared secret or a JWT key";

/// Constant-time token check: digests of equal length compared with `subtle`.
pub fn token_matches(expected_digest: &[u8; 32], presented: &[u8]) -> bool {
    let presented: [u8; 32] = Sha256::digest(presented).into();
    bool::from(expected_digest.ct_eq(&presented))
}

/// What `hookgate sign` signs with besides a scheme's own HMAC keys (tests and trials only):
/// a private key, or the shared secret a token or JWT scheme compiles only into digests.
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
    /// A shared token, as its bytes (`algorithm: token`).
    Secret(Vec<u8>),
    /// A JWT route's algorithm and key: its secret (HS*) or a PEM private key.
    Jwt(super::jwt::JwtSigner),
}

impl SigningKey {
    /// Parses a private key: PEM (PKCS#8 `BEGIN PRIVATE KEY`, or SEC1 `BEGIN EC PRIVATE KEY`
    /// for P-256, as openssl writes them), or the 32-byte Ed25519 seed or P-256 scalar as hex
    /// or base64, optionally with Standard Webhooks' `whsk_` prefix.
    pub fn parse(algorithm: Algorithm, text: &str) -> Result<SigningKey, String> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            // `openssl ecparam -genkey` writes an EC PARAMETERS block before the key.
            let key = match text.find("-----BEGIN EC PRIVATE KEY-----") {
                Some(at) => &text[at..],
                None => text,
            };
            return SigningKey::parse_pem(algorithm, key);
        }
        let text = text.strip_prefix("whsk_").unwrap_or(text);
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| BASE64.decode(text).ok())
            .ok_or("private key must be PEM, or 32 bytes as hex or base64")?;
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| format!("private key must be 32 bytes, got {}", bytes.len()))?;
        SigningKey::from_bytes(algorithm, &bytes)
    }

    fn from_bytes(algorithm: Algorithm, bytes: &[u8; 32]) -> Result<SigningKey, String> {
        match algorithm {
            Algorithm::Ed25519 => Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                bytes,
            ))),
            Algorithm::EcdsaP256Sha256 => p256::ecdsa::SigningKey::from_bytes(&(*bytes).into())
                .map(SigningKey::P256)
                .map_err(|_| "not a valid P-256 private scalar".to_string()),
            _ => Err("this scheme signs with its shared secret; no private key is needed".into()),
        }
    }

    fn parse_pem(algorithm: Algorithm, pem: &str) -> Result<SigningKey, String> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let wrong = |what: &str| {
            format!(
                "the PEM is not {what} private key ({} scheme); `hookgate keygen` makes one",
                algorithm.name()
            )
        };
        match algorithm {
            Algorithm::Ed25519 => ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                .map(SigningKey::Ed25519)
                .map_err(|_| wrong("an Ed25519 (PKCS#8)")),
            Algorithm::EcdsaP256Sha256 if pem.starts_with("-----BEGIN EC PRIVATE KEY") => {
                p256::SecretKey::from_sec1_pem(pem)
                    .map(|k| SigningKey::P256(k.into()))
                    .map_err(|_| wrong("a P-256 (SEC1)"))
            }
            Algorithm::EcdsaP256Sha256 => p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
                .map(SigningKey::P256)
                .map_err(|_| wrong("a P-256 (PKCS#8)")),
            _ => Err("this scheme signs with its shared secret; no private key is needed".into()),
        }
    }

    /// A new random key from the operating system's random source.
    pub fn generate(algorithm: Algorithm) -> Result<SigningKey, String> {
        // A P-256 scalar must be below the group order: retry the (about 2^-32) rest.
        for _ in 0..16 {
            let mut bytes = [0u8; 32];
            getrandom::getrandom(&mut bytes).map_err(|e| format!("no random source: {e}"))?;
            if let Ok(key) = SigningKey::from_bytes(algorithm, &bytes) {
                return Ok(key);
            }
        }
        Err("could not draw a valid private key".into())
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, String> {
        use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey as _};
        let pem = match self {
            // PKCS#8 v1 (the seed alone): what openssl, Node and Python's cryptography read;
            // the v2 layout with the public key inside is refused by all three.
            SigningKey::Ed25519(k) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: k.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_pem(LineEnding::LF),
            SigningKey::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
            SigningKey::Secret(_) | SigningKey::Jwt(_) => return Err(NOT_A_PAIR.into()),
        };
        pem.map(|p| p.to_string()).map_err(|e| e.to_string())
    }

    /// The public key's bytes as a route's `public_key` holds them (decoded): Ed25519's 32
    /// bytes; for P-256 the SubjectPublicKeyInfo DER, as SendGrid hands it out.
    pub fn public_key_bytes(&self) -> Result<Vec<u8>, String> {
        use p256::pkcs8::EncodePublicKey as _;
        match self {
            SigningKey::Ed25519(k) => Ok(k.verifying_key().to_bytes().to_vec()),
            SigningKey::P256(k) => k
                .verifying_key()
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .map_err(|e| e.to_string()),
            SigningKey::Secret(_) | SigningKey::Jwt(_) => Err(NOT_A_PAIR.into()),
        }
    }

    /// Whether `keys` (a route's configured public keys) include this key's public half.
    pub fn matches(&self, keys: &Keys) -> bool {
        match (self, keys) {
            (SigningKey::Ed25519(k), Keys::Ed25519(public)) => {
                public.iter().any(|p| *p == k.verifying_key())
            }
            (SigningKey::P256(k), Keys::P256(public)) => {
                public.iter().any(|p| p == k.verifying_key())
            }
            (SigningKey::Secret(secret), Keys::Token(digests)) => {
                digests.iter().any(|d| token_matches(d, secret))
            }
            (SigningKey::Jwt(signer), Keys::Jwt(keys)) => signer.matches(keys),
            _ => false,
        }
    }

    /// Signs a message; ECDSA signatures are DER-encoded, as SendGrid sends them. `None`
    /// for a shared token or a JWT key, which sign no message of parts.
    pub fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        use ed25519_dalek::Signer as _;
        match self {
            SigningKey::Ed25519(k) => Some(k.sign(message).to_bytes().to_vec()),
            SigningKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                Some(sig.to_der().as_bytes().to_vec())
            }
            SigningKey::Secret(_) | SigningKey::Jwt(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pem_and_match_their_public_half() {
        for algorithm in [Algorithm::Ed25519, Algorithm::EcdsaP256Sha256] {
            let key = SigningKey::generate(algorithm).unwrap();
            let pem = key.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
            let back = SigningKey::parse(algorithm, &pem).unwrap();
            assert_eq!(back.public_key_bytes(), key.public_key_bytes());
            let public = Keys::new(algorithm, &[key.public_key_bytes().unwrap()]).unwrap();
            assert!(back.matches(&public));
            let other = SigningKey::generate(algorithm).unwrap();
            assert!(!other.matches(&public));
        }
        // Ed25519 as PKCS#8 v1 (seed only, 48 bytes of DER): what openssl and Node accept.
        let pem = SigningKey::generate(Algorithm::Ed25519)
            .unwrap()
            .to_pem()
            .unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(BASE64.decode(body).unwrap().len(), 48);
        // What `openssl ecparam -name prime256v1 -genkey` writes (a throwaway test key).
        let openssl =
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n\
             -----BEGIN EC PRIVATE KEY-----\n\
             MHcCAQEEIFkl7vAQvPGZvYmU0GW+UAF7BHLfJXJEIWXzO4LSNDSEoAoGCCqGSM49\n\
             AwEHoUQDQgAEEjYzIsZZwNpK5d12SvaKfbf5iisOc+1u0gNoinQ9+NB//ingMxv9\n\
             6KEoZj+xLFZIxbWX2OUI3+1vaCAQF9p04A==\n-----END EC PRIVATE KEY-----\n";
        let key = SigningKey::parse(Algorithm::EcdsaP256Sha256, openssl).unwrap();
        // Its public half, as `openssl ec -pubout -outform DER | base64` prints it.
        assert_eq!(
            BASE64.encode(key.public_key_bytes().unwrap()),
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEjYzIsZZwNpK5d12SvaKfbf5iisOc+1u0gNoinQ9+NB//ingMxv96KEoZj+xLFZIxbWX2OUI3+1vaCAQF9p04A=="
        );
        // A PEM of the other algorithm is refused with a reason.
        let p256 = SigningKey::generate(Algorithm::EcdsaP256Sha256)
            .unwrap()
            .to_pem()
            .unwrap();
        let e = SigningKey::parse(Algorithm::Ed25519, &p256).err().unwrap();
        assert!(e.contains("not an Ed25519"), "{e}");
    }
}
