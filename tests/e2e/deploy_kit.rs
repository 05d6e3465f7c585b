//! What `deploy/` relies on, against the real binary: `hookgate healthcheck` (the image's
//! HEALTHCHECK), running as the image runs it (non-root, read-only configuration, one writable
//! state directory), and the dashboard and alert rules naming only metrics a running gateway
//! exports. The files themselves are linted by tests/deploy/*.sh (promtool, systemd-analyze,
//! kubectl kustomize, hadolint).

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::pg_server::{free_port, is_root};
use crate::support::*;

/// The uid and gid the image runs as (distroless "nonroot").
const IMAGE_UID: u32 = 65532;

/// `hookgate` as the image runs it: as uid/gid 65532 with no supplementary groups when the
/// tests run as root (through setpriv, which execs hookgate itself), else as the tests' own
/// (already unprivileged) user.
fn as_image_user(args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={IMAGE_UID}"),
            &format!("--regid={IMAGE_UID}"),
            "--clear-groups",
            "--",
            BIN,
        ]);
        c.args(args);
        c
    } else {
        let mut c = bin();
        c.args(args);
        c
    }
}

/// What `start` waits for: the first plain listener and the admin listener (both read from
/// the log, so the configuration can use port 0), with no error logged on the way.
const READY: Ready = Ready {
    admin: true,
    no_errors: true,
};

/// `hookgate healthcheck ARGS`: exit success and what it printed.
fn healthcheck(mut command: Command) -> (bool, String) {
    let out = command.output().expect("healthcheck runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn healthcheck_follows_readyz_through_a_drain_and_fails_when_nothing_answers() {
    let dir = temp_dir("healthcheck");
    // The admin listener on all addresses, as in a container: healthcheck reaches it on
    // loopback. Off loopback, hookgate requires an admin token (healthcheck needs none).
    let port = free_port();
    std::fs::write(
        dir.join("admin-token"),
        "healthcheck-test-token-0123456789\n",
    )
    .unwrap();
    let config = dir.join("gateway.yaml");
    let yaml = Yaml::new()
        .admin(&format!(
            "  addr: 0.0.0.0:{port}\n  token_file: admin-token\n"
        ))
        .top("limits: { drain_delay: 3s, shutdown_grace: 2s }\n")
        .routes(
            "  - name: laso\n    path: /hooks/laso\n    upstream: http://127.0.0.1:9\n    \
             verify: { preset: laso, secret: \"${LASO_SECRET}\" }\n",
        );
    std::fs::write(&config, &yaml).unwrap();
    let mut gw = start(run(&config).env("LASO_SECRET", secret_of("laso")), READY);
    assert_eq!(gw.admin.expect("admin listener").port(), port);

    let check = |extra: &[&str]| {
        let mut c = bin();
        c.args(["healthcheck", "-c"]).arg(&config).args(extra);
        healthcheck(c)
    };
    let (ok, out) = check(&[]);
    assert!(ok, "ready gateway: {out}");
    assert!(
        out.contains(&format!("127.0.0.1:{port}/readyz: 200")),
        "{out}"
    );
    let (ok, out) = check(&["--live"]);
    assert!(ok && out.contains("/healthz: 200"), "{out}");

    // An edit on disk that does not compile yet does not make the running gateway unhealthy:
    // healthcheck reads only admin.addr.
    std::fs::write(
        &config,
        yaml.replace("preset: laso", "preset: no-such-preset"),
    )
    .unwrap();
    let (ok, out) = check(&[]);
    assert!(ok, "healthcheck must not compile the whole file: {out}");

    // SIGTERM: /readyz answers 503 during drain_delay while the process still lives.
    signal(&mut gw.process, Signal::Term);
    let mut draining = false;
    for _ in 0..40 {
        let (ok, out) = check(&[]);
        if !ok {
            assert!(out.contains("503"), "not ready while draining: {out}");
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(draining, "readiness must fail during the drain");
    let (ok, out) = check(&["--live"]);
    assert!(ok, "still alive while draining: {out}");

    // Gone: healthcheck fails (and says why) within its timeout, not after 30 s.
    let exited = {
        let mut process = gw.process;
        tokio::task::spawn_blocking(move || process.wait().unwrap())
            .await
            .unwrap()
    };
    assert!(exited.success(), "{exited:?}");
    let started = std::time::Instant::now();
    let (ok, out) = check(&["--timeout", "2s"]);
    assert!(!ok);
    assert!(out.contains("cannot connect"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // No configuration needed when the address is given.
    let (ok, out) = healthcheck({
        let mut c = bin();
        c.args(["healthcheck", "--admin", &format!("127.0.0.1:{port}")]);
        c
    });
    assert!(!ok, "{out}");
}

/// File names, sizes, modes and modification times under `dir`, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, u32, i64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let m = entry.metadata().unwrap();
        out.push((entry.path(), m.len(), m.mode(), m.mtime_nsec()));
        if m.is_dir() {
            out.extend(snapshot(&entry.path()));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn runs_as_the_image_does_non_root_with_read_only_config_and_one_state_directory() {
    let upstream = Upstream::start().await;
    let root = temp_dir("image-like");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    // /etc/hookgate: owned by whoever runs the tests (root in CI), read-only to the service.
    let etc = root.join("etc-hookgate");
    std::fs::create_dir_all(etc.join("secrets")).unwrap();
    std::fs::write(etc.join("secrets/laso.secret"), secret_of("laso")).unwrap();
    std::fs::write(etc.join("secrets/lahza.secret"), secret_of("lahza")).unwrap();
    // /var/lib/hookgate: the one writable directory (a volume owned by the image's user).
    let state = root.join("var-lib-hookgate");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&state, Some(IMAGE_UID), Some(IMAGE_UID)).unwrap();
    }
    let config = etc.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .top(&format!(
                "queue_store:\n  path: {}/queue\n",
                state.display()
            ))
            .routes(&format!(
                "  - name: laso\n    path: /hooks/laso\n    upstream: {up}\n    \
                 verify: {{ preset: laso, secret_file: secrets/laso.secret }}\n\
                 \x20 - name: lahza\n    path: /hooks/lahza\n    upstream: {up}\n    \
                 verify: {{ preset: lahza, secret_file: secrets/lahza.secret }}\n    \
                 delivery: queued\n",
                up = upstream.url()
            )),
    )
    .unwrap();
    for f in [
        &config,
        &etc.join("secrets/laso.secret"),
        &etc.join("secrets/lahza.secret"),
    ] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    for d in [&etc.join("secrets"), &etc] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let before = snapshot(&etc);

    let gw = start(
        &mut as_image_user(&["run", "-c", config.to_str().unwrap()]),
        READY,
    );
    let pid = gw.process.id();
    let admin = gw.admin.expect("admin listener");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    if is_root() {
        let uids: Vec<&str> = uid_line.split_whitespace().skip(1).collect();
        assert_eq!(uids, vec![IMAGE_UID.to_string(); 4], "{uid_line}");
    }

    // The image's HEALTHCHECK, as the same user.
    let (ok, out) = healthcheck(as_image_user(&[
        "healthcheck",
        "--admin",
        &admin.to_string(),
    ]));
    assert!(ok, "{out}");

    // A sync and a queued webhook, both verified and delivered.
    let body = br#"{"event":"charge.success"}"#;
    for sender in ["laso", "lahza"] {
        let headers = sign_as(sender, secret_of(sender), body, now_unix());
        let answer = post(
            &format!("http://{}/hooks/{sender}", gw.addr),
            &as_refs(&headers),
            body,
        )
        .await;
        assert_eq!(answer.status, 200, "{sender}: {}", answer.body);
    }
    eventually("both webhooks delivered", || upstream.count() == 2).await;
    assert!(upstream.received().iter().all(|r| r.body[..] == body[..]));
    // A forged one is refused and not delivered.
    let answer = post(
        &format!("http://{}/hooks/laso", gw.addr),
        &[("x-signature", "00")],
        body,
    )
    .await;
    assert_eq!(answer.status, 401);

    // It wrote only under the state directory, which it created as its own, 0700.
    assert_eq!(
        snapshot(&etc),
        before,
        "the configuration directory changed"
    );
    let queue = std::fs::metadata(state.join("queue")).unwrap();
    assert_eq!(queue.mode() & 0o777, 0o700);
    if is_root() {
        assert_eq!((queue.uid(), queue.gid()), (IMAGE_UID, IMAGE_UID));
    }
    // Let the next test run remove this directory.
    for d in [&etc, &etc.join("secrets")] {
        let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(upstream.count(), 2, "nothing more was delivered");
}

/// Metric names (`hookgate_*`, `process_*`) written anywhere in `text`.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    for prefix in ["hookgate_", "process_"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(prefix) {
            let start = from + at;
            let mut end = start + prefix.len();
            while end < bytes.len() && word(bytes[end]) {
                end += 1;
            }
            if start == 0 || !word(bytes[start - 1]) {
                names.insert(text[start..end].to_owned());
            }
            from = end;
        }
    }
    names
}

/// Families in a Prometheus text exposition, with their types.
fn exported_families(exposition: &str) -> Vec<(String, String)> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.to_owned()))
        })
        .collect()
}

/// Whether a name a query uses is exported: a family itself, or a histogram's series.
fn is_exported(name: &str, families: &[(String, String)]) -> bool {
    families.iter().any(|(family, kind)| {
        name == family
            || (kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family.as_str())))
    })
}

#[tokio::test]
async fn dashboard_and_alert_rules_use_only_metrics_a_running_gateway_exports() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard = std::fs::read_to_string(repo.join("deploy/grafana/hookgate.json"))
        .expect("deploy/grafana/hookgate.json");
    let alerts = std::fs::read_to_string(repo.join("deploy/prometheus/alerts.yaml"))
        .expect("deploy/prometheus/alerts.yaml");

    // A gateway with every kind of metric: a TLS listener (certificate expiry), a replay
    // route, a queued route with its store, a route in shadow mode.
    let upstream = Upstream::start().await;
    let tls = crate::tls::make_cert("deploy-kit");
    let dir = temp_dir("deploy-kit-metrics");
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .listeners(&format!(
                "  - addr: 127.0.0.1:0\n  - addr: 127.0.0.1:0\n    tls: {{ cert: {}, key: {} }}\n",
                tls.dir.join("cert.pem").display(),
                tls.dir.join("key.pem").display(),
            ))
            .top(&format!(
                "queue_store:\n  path: {}\n",
                dir.join("queue").display()
            ))
            .routes(&format!(
                "  - name: laso\n    path: /hooks/laso\n    upstream: {up}\n    \
             verify: {{ preset: laso, secret: \"${{LASO_SECRET}}\" }}\n    replay: {{}}\n\
             \x20 - name: lahza\n    path: /hooks/lahza\n    upstream: {up}\n    \
             verify: {{ preset: lahza, secret: \"${{LAHZA_SECRET}}\" }}\n    delivery: queued\n\
             \x20 - name: lomi\n    path: /hooks/lomi\n    upstream: {up}\n    \
             verify: {{ preset: lomi, secret: \"${{LOMI_SECRET}}\" }}\n    enforce: false\n",
                up = upstream.url()
            )),
    )
    .unwrap();
    let gw = start(run(&config).envs(env_secrets()), READY);
    // One request per route and a refusal, so every labelled family has a series.
    let body = br#"{"event":"x"}"#;
    for sender in ["laso", "lahza"] {
        let headers = sign_as(sender, secret_of(sender), body, now_unix());
        let url = format!("http://{}/hooks/{sender}", gw.addr);
        assert_eq!(post(&url, &as_refs(&headers), body).await.status, 200);
    }
    assert_eq!(
        post(&format!("http://{}/nowhere", gw.addr), &[], body)
            .await
            .status,
        404
    );
    eventually("the queued event delivered", || upstream.count() == 2).await;
    // The queue gauges are refreshed every 5 s by their own task.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let admin = gw.admin.expect("admin listener");
    let exposition = send("GET", &format!("http://{admin}/metrics"), &[], b"")
        .await
        .body;
    let families = exported_families(&exposition);
    assert!(families.len() > 30, "{exposition}");

    for (file, text, at_least) in [
        ("deploy/grafana/hookgate.json", &dashboard, 25),
        ("deploy/prometheus/alerts.yaml", &alerts, 8),
    ] {
        let used = metric_names_in(text);
        assert!(
            used.len() >= at_least,
            "{file} uses only {} metric names: {used:?}",
            used.len()
        );
        let missing: Vec<&String> = used.iter().filter(|n| !is_exported(n, &families)).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics a running gateway does not export: {missing:?}"
        );
    }
}
