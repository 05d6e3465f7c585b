//! `hookgate run --watch`: polls the configuration file and the files its compile read, and
//! asks for a reload when one changes.
//!
//! Which files those are is the compiler's to say ([`crate::config::Loaded::files`]), not a
//! second reading of the YAML here: a file field added to the configuration is watched
//! because the compiler reads it.

use std::path::{Path, PathBuf};

/// How often `--watch` looks at the files.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// `hookgate run --watch`: asks for a reload (a message on `reload`) when the configuration
/// file, or a file its compile read (secret, key, certificate, token), changes.
///
/// The files are read by path every half second and compared by content, not watched by
/// inode: editors save by writing a new file and renaming it over the old one, and
/// Kubernetes updates a mounted ConfigMap or Secret by swapping a symlink, both of which an
/// inode watch misses; polling by path sees them on any filesystem. A change is acted on
/// once two looks in a row agree (debounce: an editor's or `kubectl`'s several writes make
/// one reload), and a change back to what was last loaded asks for nothing.
pub async fn watch(path: PathBuf, reload: tokio::sync::mpsc::Sender<()>) {
    // Compiling and hashing read files: off the async threads.
    let Ok(mut watcher) = tokio::task::spawn_blocking(move || Watcher::new(path)).await else {
        return;
    };
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        let looked = tokio::task::spawn_blocking(move || {
            let changed = watcher.look();
            (watcher, changed)
        });
        let Ok((back, changed)) = looked.await else {
            return;
        };
        watcher = back;
        if changed {
            tracing::info!(config = %watcher.config.display(), "--watch: a watched file changed");
            if reload.send(()).await.is_err() {
                return;
            }
        }
    }
}

/// What `--watch` knows between two looks.
struct Watcher {
    config: PathBuf,
    /// The files the last configuration that compiled read.
    good: Vec<PathBuf>,
    /// The files watched besides the configuration: `good`, and while the configuration does
    /// not compile, the files that compile tried to read (the fix may be one of them, e.g.
    /// a secret file created after the route that names it).
    files: Vec<PathBuf>,
    /// The fingerprint last acted on (or found at the start).
    loaded: [u8; 32],
    /// The fingerprint of the previous look.
    last_seen: [u8; 32],
}

impl Watcher {
    fn new(config: PathBuf) -> Watcher {
        let mut watcher = Watcher {
            config,
            good: Vec::new(),
            files: Vec::new(),
            loaded: [0; 32],
            last_seen: [0; 32],
        };
        watcher.learn_files();
        watcher.loaded = fingerprint(&watcher.config, &watcher.files);
        watcher.last_seen = watcher.loaded;
        watcher
    }

    /// Compiles the configuration to learn which files it reads. One that does not compile
    /// (not even as YAML) keeps the last good list, so that a fix in any of them is seen.
    fn learn_files(&mut self) {
        match crate::config::load(&self.config) {
            Ok(loaded) => {
                self.good = loaded.files;
                self.files = self.good.clone();
            }
            Err(broken) => {
                let mut files = self.good.clone();
                for file in broken.files {
                    if !files.contains(&file) {
                        files.push(file);
                    }
                }
                self.files = files;
            }
        }
    }

    /// One look: whether a change has settled (two looks agree) and differs from what was
    /// last acted on. If so, the files to watch are learnt again (the change may name new
    /// ones), and what they hold now is what the next change is measured against.
    fn look(&mut self) -> bool {
        let now = fingerprint(&self.config, &self.files);
        let changed = now != self.loaded && now == self.last_seen;
        if changed {
            self.learn_files();
            self.loaded = fingerprint(&self.config, &self.files);
        }
        self.last_seen = now;
        changed
    }
}

/// SHA-256 over the configuration file and `files`, in order; a missing file counts as empty
/// (its absence is the compiler's to report).
fn fingerprint(config: &Path, files: &[PathBuf]) -> [u8; 32] {
    use sha2::Digest as _;
    // Only regular files are read: a FIFO would block this thread for good.
    let read = |p: &Path| match std::fs::metadata(p) {
        Ok(m) if m.is_file() => std::fs::read(p).unwrap_or_default(),
        Ok(_) => b"(not a regular file)".to_vec(),
        Err(_) => Vec::new(),
    };
    let mut hash = sha2::Sha256::new();
    hash.update(read(config));
    for file in files {
        hash.update(file.as_os_str().as_encoded_bytes());
        hash.update(read(file));
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test.
    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hookgate-watch-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes a file only its owner can read (as a secret must be, or it earns a warning).
    fn write_private(path: &Path, contents: impl AsRef<[u8]>) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The configuration of [`reads_every_kind_of_file`].
    const EVERY_KIND: &str = "\
listeners:
  - addr: 127.0.0.1:0
    tls: { cert: cert.pem, key: key.pem }
admin: { addr: 127.0.0.1:0, token_file: admin.token }
queue_store: { type: postgres, url: \"postgres://hookgate@db:5432/hookgate\", ca_file: cert.pem }
routes:
  - name: a
    path: /a
    upstream: http://127.0.0.1:3000
    verify: { preset: lahza, secret_file: a.secret }
  - name: b
    path: /b
    upstream: https://localhost:3443
    verify: { preset: discord, public_key_file: b.pub }
    upstream_tls: { ca_file: cert.pem, client_cert_file: cert.pem, client_key_file: key.pem }
";

    /// A configuration that reads a file of every kind: listener TLS, a secret file, a public
    /// key file, upstream TLS (CA, client certificate and key), the admin token and the
    /// queue store's CA. Returns its path and the files, in the order the compiler reads them.
    fn reads_every_kind_of_file(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
        write_private(&dir.join("key.pem"), cert.key_pair.serialize_pem());
        write_private(&dir.join("a.secret"), "a-secret");
        let key = crate::scheme::SigningKey::generate(crate::scheme::Algorithm::Ed25519).unwrap();
        let public = hex::encode(key.public_key_bytes().unwrap());
        std::fs::write(dir.join("b.pub"), public).unwrap();
        write_private(&dir.join("admin.token"), "0123456789abcdef0123");
        let config = dir.join("gateway.yaml");
        std::fs::write(&config, EVERY_KIND).unwrap();
        let files = ["cert.pem", "key.pem", "admin.token", "a.secret", "b.pub"]
            .map(|f| dir.join(f))
            .to_vec();
        (config, files)
    }

    #[test]
    fn the_watched_files_are_exactly_the_files_the_compiler_read() {
        let dir = temp_dir("every-kind");
        let (config, files) = reads_every_kind_of_file(&dir);
        let loaded = crate::config::load(&config).unwrap_or_else(|e| panic!("{e}"));
        // Each once, in the order first read (cert.pem is also two CAs and a client cert).
        assert_eq!(loaded.files, files);
        let watcher = Watcher::new(config.clone());
        assert_eq!(watcher.files, loaded.files);
        assert!(watcher.files.contains(&dir.join("admin.token")));
    }

    #[test]
    fn a_changed_admin_token_file_is_seen_once_it_settles() {
        let dir = temp_dir("token");
        let (config, _) = reads_every_kind_of_file(&dir);
        let mut watcher = Watcher::new(config);
        assert!(!watcher.look(), "stable while nothing changes");
        write_private(&dir.join("admin.token"), "fedcba9876543210fedc");
        assert!(!watcher.look(), "a change is acted on when two looks agree");
        assert!(watcher.look());
        assert!(!watcher.look(), "and once");
        // Replaced by rename, as an editor or the kubelet does.
        write_private(&dir.join("admin.token.new"), "another-token-0123456");
        std::fs::rename(dir.join("admin.token.new"), dir.join("admin.token")).unwrap();
        watcher.look();
        assert!(watcher.look());
        // Changed back to what was last acted on: nothing to do.
        write_private(&dir.join("admin.token"), "fedcba9876543210fedc");
        watcher.look();
        write_private(&dir.join("admin.token"), "another-token-0123456");
        assert!(!watcher.look() && !watcher.look());
    }

    #[test]
    fn a_configuration_that_does_not_compile_keeps_the_last_good_files_and_adds_its_own() {
        let dir = temp_dir("broken");
        let (config, files) = reads_every_kind_of_file(&dir);
        let mut watcher = Watcher::new(config.clone());
        // Not YAML at all: the last good files, and the configuration itself, stay watched.
        std::fs::write(&config, "routes: [").unwrap();
        watcher.look();
        assert!(watcher.look());
        assert_eq!(watcher.files, files);
        // A fix in a watched file is seen while the configuration is broken.
        write_private(&dir.join("a.secret"), "a-new-secret");
        watcher.look();
        assert!(watcher.look());
        // YAML that names a secret file not there yet: watched too, so its creation is seen.
        std::fs::write(
            &config,
            "listeners:\n  - addr: 127.0.0.1:0\nroutes:\n  - { name: c, path: /c, upstream: \"http://127.0.0.1:3000\", verify: { preset: lahza, secret_file: c.secret } }\n",
        )
        .unwrap();
        watcher.look();
        assert!(watcher.look());
        assert!(
            watcher.files.contains(&dir.join("c.secret")),
            "{:?}",
            watcher.files
        );
        assert!(
            watcher.files.contains(&dir.join("admin.token")),
            "the last good ones stay"
        );
        write_private(&dir.join("c.secret"), "c-secret");
        watcher.look();
        assert!(watcher.look(), "the new secret file is seen");
        // It compiles now: exactly its own files are watched.
        assert_eq!(watcher.files, [dir.join("c.secret")]);
    }
}
