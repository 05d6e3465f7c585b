//! A real PostgreSQL server for the tests: Debian's server binaries (installed by tests/run.sh),
//! a fresh cluster made by `initdb` in a temporary directory of its own, `postgres` on a
//! loopback port chosen here, and a `hookgate` database. The test can stop it (to see the
//! gateway answer 503 while its store is down) and start it again on the same port and data.
//!
//! PostgreSQL refuses to run as root, and the tests do run as root here and in CI: then the
//! data directory is given to the `postgres` system user (or, where the package did not
//! create it, a system user made here) and initdb and postgres run as that user through
//! `setpriv`, which execs the program itself (unlike `runuser` or `su`, which stay behind as
//! its parent), so the child we hold is the postmaster and our signals reach it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpStream;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{signal, Signal};

/// The superuser initdb creates, and the database the gateway is given.
const USER: &str = "hookgate";
const DATABASE: &str = "hookgate";
/// The postmaster's output, inside the data directory (kept out of the test's stdout).
const LOG_FILE: &str = "postgres.log";
/// How long a start may take before the test fails with the log's tail.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// One PostgreSQL server on `127.0.0.1:port`, with trust authentication (loopback only).
pub struct PostgresServer {
    pub port: u16,
    /// The cluster: initdb's files, the unix socket (`-k`) and `postgres.log`. Removed on drop.
    pub data_dir: PathBuf,
    /// Where initdb, postgres, pg_isready, createdb and psql are (one installed version).
    bin_dir: PathBuf,
    /// The user the server runs as when the tests run as root (PostgreSQL refuses root).
    run_as: Option<SystemUser>,
    /// The postmaster itself (never a wrapper), while it runs.
    child: Option<Child>,
}

/// The account initdb and postgres run as when the tests run as root.
#[derive(Clone, Debug)]
struct SystemUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl PostgresServer {
    /// Makes a new cluster, starts it and creates the `hookgate` database.
    pub async fn start() -> PostgresServer {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let bin_dir = bin_dir();
        let run_as = if is_root() {
            Some(system_user().clone())
        } else {
            None
        };
        let data_dir = std::env::temp_dir().join(format!(
            "hookgate-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // A directory left by an earlier process with the same id would make initdb refuse.
        let _ = fs::remove_dir_all(&data_dir);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&data_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", data_dir.display()));
        if let Some(user) = &run_as {
            std::os::unix::fs::chown(&data_dir, Some(user.uid), Some(user.gid)).unwrap_or_else(
                |e| panic!("cannot give {} to {}: {e}", data_dir.display(), user.name),
            );
        }
        let mut server = PostgresServer {
            port: free_port(),
            data_dir,
            bin_dir,
            run_as,
            child: None,
        };

        let mut initdb = server.as_server_user("initdb");
        initdb
            .arg("-D")
            .arg(&server.data_dir)
            .args(["-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8"])
            // C: no dependence on which locales the machine has generated.
            .args(["--locale=C"]);
        let out = blocking_output(initdb).await;
        if !out.status.success() {
            panic!(
                "initdb failed in {} ({}):\n{}{}",
                server.data_dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
        }

        server.restart().await;

        let mut createdb = Command::new(server.tool("createdb"));
        createdb.args(server.client_args()).arg(DATABASE);
        let out = blocking_output(createdb).await;
        if !out.status.success() {
            panic!(
                "createdb {DATABASE} failed on port {} ({}): {}\nlog:\n{}",
                server.port,
                out.status,
                String::from_utf8_lossy(&out.stderr),
                server.log_tail(),
            );
        }
        server
    }

    /// What the gateway's `queue_store` is given.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// (Re)starts postgres on the same port and data directory and waits until it accepts
    /// connections.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "postgres is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join(LOG_FILE))
            .unwrap_or_else(|e| panic!("cannot open the postgres log: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot open the postgres log: {e}"));
        let mut postgres = self.as_server_user("postgres");
        postgres
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-p", &self.port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&self.data_dir)
            // Small, for many servers at once on a small machine; fsync stays on (the store
            // promises durability, and the tests should see its real cost).
            .args(["-c", "shared_buffers=16MB", "-c", "max_connections=50"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if self.run_as.is_none() {
            // If the test process dies without unwinding, its servers go too. (As root,
            // setpriv's --pdeathsig does it: the change of user would clear one set here.)
            // The signal comes when the spawning *thread* ends: start and restart from the
            // test's own task, not from spawn_blocking.
            // SAFETY: only an async-signal-safe system call runs between fork and exec.
            unsafe {
                postgres.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = postgres
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start postgres: {e}"));
        self.child = Some(child);

        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "postgres exited ({status}) before accepting connections on port {}; log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            let mut ready = Command::new(self.tool("pg_isready"));
            ready
                .args(self.client_args())
                .args(["-d", "postgres", "-t", "1"]);
            if blocking_output(ready).await.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "postgres did not accept connections on port {} within {:?}; log:\n{}",
                    self.port,
                    READY_WITHIN,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fast shutdown (SIGINT: sessions are ended, a checkpoint is written) and waits until
    /// the postmaster has exited, so the port is closed when this returns.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&mut child, Signal::Int);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    signal(&mut child, Signal::Kill);
                    let _ = child.wait();
                    return;
                }
            }
        }
    }

    /// Turns TLS on with this certificate chain and key (PEM), restarting the server.
    pub async fn enable_tls(&mut self, cert_pem: &str, key_pem: &str) {
        self.stop();
        for (name, pem) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = self.data_dir.join(name);
            fs::write(&path, pem).unwrap();
            // PostgreSQL refuses a key others can read.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            if let Some(user) = &self.run_as {
                std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).unwrap();
            }
        }
        let conf = self.data_dir.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        fs::write(&conf, text).unwrap();
        self.restart().await;
    }

    /// `name` from the server's own bin directory, or from PATH where it is not there.
    fn tool(&self, name: &str) -> PathBuf {
        let own = self.bin_dir.join(name);
        if own.exists() {
            own
        } else {
            PathBuf::from(name)
        }
    }

    /// A server program, run as the server's user when we are root.
    fn as_server_user(&self, program: &str) -> Command {
        let program = self.tool(program);
        match &self.run_as {
            None => Command::new(program),
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", &user.uid.to_string()])
                    .args(["--regid", &user.gid.to_string()])
                    .args(["--clear-groups", "--pdeathsig", "SIGQUIT", "--"])
                    .arg(program);
                c
            }
        }
    }

    /// How a client reaches this server: over TCP (as the gateway does) as the superuser.
    fn client_args(&self) -> [String; 6] {
        [
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            USER.into(),
        ]
    }

    /// The last lines of the postmaster's log, for a failure message.
    fn log_tail(&self) -> String {
        let Ok(mut f) = File::open(self.data_dir.join(LOG_FILE)) else {
            return "(no log)".into();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
        let mut text = String::new();
        let _ = f.read_to_string(&mut text);
        text
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the postmaster ends its own children before it exits, so
            // nothing is left writing into the directory removed below. SIGKILL if it hangs.
            signal(&mut child, Signal::Quit);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            signal(&mut child, Signal::Kill);
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.data_dir);
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The directory of the newest installed server: /usr/lib/postgresql/<major>/bin (Debian),
/// else wherever `postgres` is on PATH.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|n| n.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("postgres"))
        .find(|p| p.exists())
        // Through a symlink (e.g. /usr/local/bin/postgres) to where psql and the rest are.
        .map(|p| fs::canonicalize(&p).unwrap_or(p))
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/postgres, or postgres \
                 on PATH); run the tests through tests/run.sh, or: apt-get install postgresql"
            )
        })
}

/// The account to run the server as when the tests run as root: Debian's `postgres`, or a
/// system user made for the purpose where the package did not create one.
fn system_user() -> &'static SystemUser {
    static USER: OnceLock<SystemUser> = OnceLock::new();
    USER.get_or_init(|| {
        if let Some(u) = lookup_user("postgres") {
            return u;
        }
        let name = "hookgate-pg";
        if lookup_user(name).is_none() {
            // A concurrent creation by another process is fine: the lookup below decides.
            let _ = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(name)
                .status();
        }
        lookup_user(name).unwrap_or_else(|| {
            panic!("PostgreSQL will not run as root, and no `postgres` or `{name}` user exists")
        })
    })
}

fn lookup_user(name: &str) -> Option<SystemUser> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, name]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some(SystemUser {
        name: name.into(),
        uid: id("-u")?,
        gid: id("-g")?,
    })
}

/// A loopback port that was free a moment ago (the OS chose it for a listener we closed).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Runs a short command off the async threads and returns its output.
async fn blocking_output(mut command: Command) -> Output {
    let shown = format!("{command:?}");
    tokio::task::spawn_blocking(move || command.stdin(Stdio::null()).output())
        .await
        .expect("the command's thread")
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

/// `select 1` through psql, over TCP as the gateway connects.
async fn answers(pg: &PostgresServer) -> bool {
    let mut psql = Command::new(pg.tool("psql"));
    psql.args(pg.client_args())
        .args(["-d", DATABASE, "-X", "-A", "-t", "-q", "-c", "select 1"]);
    let out = blocking_output(psql).await;
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1"
}

#[tokio::test]
async fn a_real_postgres_server_starts_answers_and_restarts() {
    let began = Instant::now();
    let mut pg = PostgresServer::start().await;
    let started = began.elapsed();
    assert_eq!(
        pg.url(),
        format!("postgres://hookgate@127.0.0.1:{}/hookgate", pg.port)
    );
    assert!(answers(&pg).await, "log:\n{}", pg.log_tail());

    pg.stop();
    assert!(
        TcpStream::connect(("127.0.0.1", pg.port)).is_err(),
        "port {} still open after stop",
        pg.port
    );
    assert!(!answers(&pg).await);

    pg.restart().await;
    assert!(answers(&pg).await, "log:\n{}", pg.log_tail());

    let data_dir = pg.data_dir.clone();
    drop(pg);
    assert!(!data_dir.exists(), "{} left behind", data_dir.display());
    eprintln!(
        "postgres: initdb + start + createdb {started:?}, whole test {:?}",
        began.elapsed()
    );
}
