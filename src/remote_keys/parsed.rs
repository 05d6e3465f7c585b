//! Fetched documents as the schemes read them, parsed once: a certificate's or a key set's
//! parse costs more than a signature check that uses it (7 µs for SNS's certificate), and
//! every request that verifies with it would pay it twice (once to see the document holds its
//! key, once to verify). Documents are known by their content (SHA-256) and by how they are
//! read (the scheme's `DocFormat`, and a key API's `key_at`), never by where they sit in
//! memory, so a parsed document is only ever used for the very bytes it came from.
//!
//! Neighbours: `cache.rs` keeps the bytes; the pipeline (`gateway.rs`) asks here for the
//! parsed form of what the cache gave it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::Digest as _;

use crate::scheme::fetched::{DocFormat, FetchedKey, KeyDoc, KeyFrom};

/// How many parsed documents are kept: as many as the cache holds by default. Past it, all
/// are dropped and parsed again as they are used.
const MAX: usize = 256;

/// What a document was parsed as: its content, its format, and for a key API where the key
/// was read.
type Known = ([u8; 32], DocFormat, Option<String>);

/// The parsed documents.
#[derive(Default)]
pub struct ParsedDocs {
    docs: Mutex<HashMap<Known, Arc<KeyDoc>>>,
}

impl ParsedDocs {
    /// `doc` as `key` reads it, parsed now or earlier.
    pub fn get(&self, key: &FetchedKey, doc: &[u8]) -> Result<Arc<KeyDoc>, String> {
        let key_at = match &key.from {
            KeyFrom::Api(api) => Some(api.key_at.clone()),
            _ => None,
        };
        let known: Known = (sha2::Sha256::digest(doc).into(), key.format, key_at);
        if let Some(parsed) = self.lock().get(&known) {
            return Ok(parsed.clone());
        }
        let parsed = Arc::new(KeyDoc::parse(key, doc)?);
        let mut docs = self.lock();
        if docs.len() >= MAX {
            docs.clear();
        }
        docs.insert(known, parsed.clone());
        Ok(parsed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Known, Arc<KeyDoc>>> {
        self.docs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::fetched::KeyFrom;
    use crate::scheme::pin::HostPattern;

    #[test]
    fn a_document_is_parsed_once_and_known_by_its_content() {
        let key = FetchedKey {
            from: KeyFrom::Json("/SigningCertURL".into()),
            hosts: vec![HostPattern::parse("sns.{region}.amazonaws.com").unwrap()],
            paths: vec![],
            names: vec!["sns.amazonaws.com".into()],
            format: DocFormat::Certificate,
            chain: Default::default(),
        };
        let pem = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            rcgen::CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap()
                .pem()
        };
        let (a, b) = (pem("a.example"), pem("b.example"));
        let docs = ParsedDocs::default();
        let first = docs.get(&key, a.as_bytes()).unwrap();
        assert!(Arc::ptr_eq(&first, &docs.get(&key, a.as_bytes()).unwrap()));
        let other = docs.get(&key, b.as_bytes()).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        match (&*first, &*other) {
            (KeyDoc::Certificate(x), KeyDoc::Certificate(y)) => {
                assert_eq!(x.names, ["a.example"]);
                assert_eq!(y.names, ["b.example"]);
            }
            _ => panic!("certificates"),
        }
        assert!(docs.get(&key, b"not a certificate").is_err());
    }
}
