//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets'
//! own bodies, on stable: an input that once found a bug stays a regression test, and CI needs
//! no nightly toolchain. The fuzzers themselves run with `cargo +nightly fuzz` (fuzz/README.md).

#[path = "../../fuzz/src/targets.rs"]
mod targets;

use std::path::Path;

/// Runs every file of one corpus through `target`; fails on an empty or missing corpus so the
/// test cannot pass by reading nothing.
fn replay(name: &str, target: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(
            outcome.is_ok(),
            "fuzz target {name} failed on {}",
            file.display()
        );
    }
}

#[test]
fn config_corpus_replays_cleanly() {
    replay("config", targets::config);
}

#[test]
fn signature_header_corpus_replays_cleanly() {
    replay("signature_header", targets::signature_header);
}

#[test]
fn path_and_route_corpus_replays_cleanly() {
    replay("path_and_route", targets::path_and_route);
}

#[test]
fn client_ip_corpus_replays_cleanly() {
    replay("client_ip", targets::client_ip);
}

#[test]
fn timestamp_corpus_replays_cleanly() {
    replay("timestamp", targets::timestamp);
}

#[test]
fn verify_corpus_replays_cleanly() {
    replay("verify", targets::verify);
}

#[test]
fn json_field_corpus_replays_cleanly() {
    replay("json_field", targets::json_field);
}

#[test]
fn jwt_corpus_replays_cleanly() {
    replay("jwt", targets::jwt);
}

#[test]
fn key_url_corpus_replays_cleanly() {
    replay("key_url", targets::key_url);
}
