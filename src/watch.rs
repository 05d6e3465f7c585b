//! `hookgate run --watch`: polls the configuration file and the files it names, and asks for
//! a reload when one changes.

/// How often `--watch` looks at the files.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// `hookgate run --watch`: asks for a reload (a message on `reload`) when the configuration
/// file, or a secret, key or certificate file it names (`watched_files`), changes.
///
/// The files are read by path every half second and compared by content, not watched by
/// inode: editors save by writing a new file and renaming it over the old one, and
/// Kubernetes updates a mounted ConfigMap or Secret by swapping a symlink, both of which an
/// inode watch misses; polling by path sees them on any filesystem. A change is acted on
/// once two looks in a row agree (debounce: an editor's or `kubectl`'s several writes make
/// one reload), and a change back to what was last loaded asks for nothing.
pub async fn watch(path: std::path::PathBuf, reload: tokio::sync::mpsc::Sender<()>) {
    let mut loaded = fingerprint(&path);
    let mut last_seen = loaded;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        let path2 = path.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&path2)).await else {
            continue;
        };
        if now != loaded && now == last_seen {
            tracing::info!(config = %path.display(), "--watch: a watched file changed");
            loaded = now;
            if reload.send(()).await.is_err() {
                return;
            }
        }
        last_seen = now;
    }
}

/// SHA-256 over the configuration file and every file it names, in order; a missing file
/// counts as empty (its absence is the compiler's to report).
fn fingerprint(path: &std::path::Path) -> [u8; 32] {
    use sha2::Digest as _;
    // Only regular files are read: a FIFO would block this thread for good.
    let read = |p: &std::path::Path| match std::fs::metadata(p) {
        Ok(m) if m.is_file() => std::fs::read(p).unwrap_or_default(),
        Ok(_) => b"(not a regular file)".to_vec(),
        Err(_) => Vec::new(),
    };
    let mut hash = sha2::Sha256::new();
    let text = read(path);
    hash.update(&text);
    for file in watched_files(path, &text) {
        hash.update(file.as_os_str().as_encoded_bytes());
        hash.update(read(&file));
    }
    hash.finalize().into()
}

/// The files a configuration names: each listener's TLS `cert` and `key`, and each route's
/// `verify.secret_file`, `verify.public_key_file` and `upstream_tls` files, relative to the
/// configuration's
/// directory. Read from the YAML as written, so even a configuration that does not compile
/// is watched for its fix.
fn watched_files(path: &std::path::Path, text: &[u8]) -> Vec<std::path::PathBuf> {
    use serde_yaml::Value;
    let base = path.parent().unwrap_or_else(|| std::path::Path::new("."));
    let Ok(doc) = serde_yaml::from_slice::<Value>(text) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    let mut push = |v: Option<&Value>| {
        if let Some(p) = v.and_then(Value::as_str) {
            files.push(base.join(p));
        }
    };
    let list = |key: &str| {
        doc.get(key)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default()
    };
    for l in list("listeners") {
        push(l.get("tls").and_then(|t| t.get("cert")));
        push(l.get("tls").and_then(|t| t.get("key")));
    }
    for r in list("routes") {
        push(r.get("verify").and_then(|v| v.get("secret_file")));
        push(r.get("verify").and_then(|v| v.get("public_key_file")));
        for file in ["ca_file", "client_cert_file", "client_key_file"] {
            push(r.get("upstream_tls").and_then(|t| t.get(file)));
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_a_configuration_names_are_watched_and_changes_are_seen() {
        let dir = std::env::temp_dir().join(format!("hookgate-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("gateway.yaml");
        let text = "listeners:\n  - addr: 127.0.0.1:0\n    tls: { cert: tls/c.pem, key: tls/k.pem }\nroutes:\n  - name: a\n    verify: { preset: lahza, secret_file: a.secret }\n  - name: b\n    verify: { preset: discord, public_key_file: /etc/b.pub }\n    upstream_tls: { ca_file: ca.pem }\n";
        std::fs::write(&config, text).unwrap();
        let files = watched_files(&config, text.as_bytes());
        assert_eq!(
            files,
            [
                dir.join("tls/c.pem"),
                dir.join("tls/k.pem"),
                dir.join("a.secret"),
                std::path::PathBuf::from("/etc/b.pub"),
                dir.join("ca.pem"),
            ]
        );
        let before = fingerprint(&config);
        assert_eq!(before, fingerprint(&config), "stable while nothing changes");
        // A secret file appearing, then replaced by rename, changes the fingerprint.
        std::fs::write(dir.join("a.secret"), "one").unwrap();
        let one = fingerprint(&config);
        assert_ne!(one, before);
        std::fs::write(dir.join("a.secret.new"), "two").unwrap();
        std::fs::rename(dir.join("a.secret.new"), dir.join("a.secret")).unwrap();
        assert_ne!(fingerprint(&config), one);
        // Broken YAML: the file itself is still watched.
        assert!(watched_files(&config, b"routes: [").is_empty());
    }
}
