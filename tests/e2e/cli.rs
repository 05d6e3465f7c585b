//! The real `hookgate` binary: `check` on good and broken files, and `run` + `sign` used the
//! way the README's walk-through uses them.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use http::StatusCode;

use crate::support::*;

/// Runs `command` to its end; it must succeed (else its stdout and stderr are shown), and
/// what it printed on stdout is returned.
fn stdout_of_success(command: &mut Command) -> String {
    let out = command.output().expect("hookgate runs");
    let stdout = String::from_utf8(out.stdout).expect("stdout in UTF-8");
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn committed_gateway_yaml_passes_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stdout = stdout_of_success(bin().args(["check", "-c"]).arg(root.join("gateway.yaml")));
    assert!(stdout.contains("ok: 1 listener, 6 routes"), "{stdout}");
}

/// `check --expand` prints YAML that, pasted back, is the same gateway: every preset written
/// out as its scheme (key encoding, message, encodings), methods and replay defaults explicit.
#[test]
fn check_expand_prints_yaml_that_reads_back_to_the_same_gateway() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let expand =
        |config: &Path| stdout_of_success(bin().args(["check", "--expand", "-c"]).arg(config));
    let original = root.join("gateway.yaml");
    let yaml = expand(&original);
    // In a directory where the file's relative secret paths resolve as they do for the
    // original.
    let dir = temp_dir("check-expand");
    std::os::unix::fs::symlink(root.join("deploy"), dir.join("deploy")).unwrap();
    let copy = dir.join("gateway.yaml");
    std::fs::write(&copy, &yaml).unwrap();
    let (a, b) = (
        hookgate::config::load(&original).unwrap(),
        hookgate::config::load(&copy).unwrap(),
    );
    let routes = |l: &hookgate::config::Loaded| {
        l.gateway
            .routes
            .routes()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {:?} {} {:?} {:?}\n{}",
                    r.name,
                    r.path,
                    r.methods,
                    r.upstream.authority,
                    r.allow_ips,
                    r.replay,
                    r.scheme
                        .as_ref()
                        .map(|s| s.describe("  "))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(routes(&a), routes(&b));
    assert_eq!(routes(&a).len(), 6);
    // Every route names its key encoding and methods; expanding again changes nothing.
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    for route in doc["routes"].as_sequence().unwrap() {
        let verify = &route["verify"];
        for field in ["algorithm", "key_encoding"] {
            assert!(verify[field].is_string(), "{field}: {route:?}");
        }
        for field in ["signature", "message"] {
            assert!(!verify[field].is_null(), "{field}: {route:?}");
        }
        assert!(route["methods"].is_sequence(), "{route:?}");
    }
    // Same warnings (the secret files' modes, if the checkout left them readable) and no
    // more: expanding added no literal secret.
    let warned = |l: &hookgate::config::Loaded| {
        l.warnings
            .iter()
            .map(|w| w.location.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(warned(&a), warned(&b));
    let again = expand(&copy);
    assert_eq!(
        again.lines().skip(1).collect::<Vec<_>>(),
        yaml.lines().skip(1).collect::<Vec<_>>()
    );
}

#[test]
fn check_strict_fails_on_warnings_that_plain_check_lets_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let strict = |config: &Path| {
        bin()
            .args(["check", "--strict", "-c"])
            .arg(config)
            .env("LASO_SECRET", "x")
            .output()
            .unwrap()
    };
    // The committed example deserves no warning, once its (public, development) secret files
    // are private: a checkout leaves them readable by every user, which is a warning.
    let dir = temp_dir("check-strict");
    std::fs::create_dir_all(dir.join("deploy/dev-secrets")).unwrap();
    for entry in std::fs::read_dir(root.join("deploy/dev-secrets")).unwrap() {
        let from = entry.unwrap().path();
        let to = dir
            .join("deploy/dev-secrets")
            .join(from.file_name().unwrap());
        std::fs::copy(&from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::copy(root.join("gateway.yaml"), dir.join("gateway.yaml")).unwrap();
    let out = strict(&dir.join("gateway.yaml"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A route that loses POST to an earlier prefix still gets GET: a warning, not an error.
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .no_admin()
            .routes(
                "  - { name: all, path: /hooks/*, upstream: \"http://127.0.0.1:3000\", verify: { preset: laso, secret: \"${LASO_SECRET}\" } }\n\
         \x20 - { name: one, path: /hooks/one, methods: [POST, GET], upstream: \"http://127.0.0.1:3000\", verify: { preset: laso, secret: \"${LASO_SECRET}\" } }\n",
            ),
    )
    .unwrap();
    let plain = bin()
        .args(["check", "-c"])
        .arg(&config)
        .env("LASO_SECRET", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(plain.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: routes[1] (one): POST /hooks/one goes to routes[0] (all) first"),
        "{stderr}"
    );
    let out = strict(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // Plainly: the warnings failed it, not an error; and no "ok" on the way.
    assert!(
        stderr.ends_with("gateway.yaml: check failed: 1 warning and --strict\n"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// One pass shows everything: the warnings of a file that also has errors (a type error
/// included) come with its errors, and a duration written without its unit says how to
/// write it.
#[test]
fn check_prints_warnings_with_errors_and_how_to_write_a_duration() {
    let dir = temp_dir("check-one-pass");
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .no_admin()
            .top("limits:\n  upstream_timeout: 30\n  max_body_bytes: 1MB\n")
            .routes(
                "  - name: a\n    path: /a\n    upstream: http://127.0.0.1:1\n    verify: { preset: lahza, secret: literal }\n\
         \x20 - name: b\n    path: /b\n    upstream: ftp://127.0.0.1:1\n    verify: { preset: lahza, secret: \"${B_SECRET}\" }\n",
            ),
    )
    .unwrap();
    let out = bin()
        .args(["check", "-c"])
        .arg(&config)
        .env("B_SECRET", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let path = config.display();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "{path}: warning: routes[0] (a).verify.secret: literal secret in the configuration \
             file; prefer \"${{ENV_VAR}}\" or secret_file"
        ),
        "{stderr}"
    );
    assert_eq!(
        lines[1],
        format!("{path}: 3 errors in configuration:"),
        "{stderr}"
    );
    // The type error first (serde's), then what compiling the rest of the file found.
    assert!(
        lines[2].starts_with("  limits.max_body_bytes: invalid type: string \"1MB\""),
        "{stderr}"
    );
    assert_eq!(
        lines[3],
        "  limits.upstream_timeout: `30` is not a duration: write it with its unit, e.g. `30s` \
         (or `30ms`, `30m`)",
        "{stderr}"
    );
    assert!(
        lines[4].starts_with("  routes[1] (b).upstream: `ftp://127.0.0.1:1`"),
        "{stderr}"
    );
    assert_eq!(lines.len(), 5, "{stderr}");

    // One error: counted as one.
    std::fs::write(
        &config,
        Yaml::new()
            .no_admin()
            .routes(
                "  - { name: a, path: /a, upstream: \"http://127.0.0.1:1\", verify: { preset: lahza, secret: \"${B_SECRET}\" }, replay: { ttl: 72 } }\n",
            ),
    )
    .unwrap();
    let out = bin()
        .args(["check", "-c"])
        .arg(&config)
        .env("B_SECRET", "x")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{path}: 1 error in configuration:\n  routes[0] (a).replay.ttl: `72` is not a \
             duration: write it with its unit, e.g. `72s` (or `72ms`, `72m`)\n"
        )
    );
}

/// A token or secret file that other users can read is a warning naming the file, its mode
/// and the fix; once fixed, `--strict` passes.
#[test]
fn a_secret_file_other_users_can_read_is_a_warning_with_its_fix() {
    let dir = temp_dir("check-file-mode");
    let (token, secret) = (dir.join("admin-token"), dir.join("a.secret"));
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(&secret, "s3cret\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o604)).unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .admin("  addr: 127.0.0.1:0\n  token_file: admin-token\n")
            .routes(
                "  - { name: a, path: /a, upstream: \"http://127.0.0.1:1\", verify: { preset: lahza, secret_file: a.secret } }\n",
            ),
    )
    .unwrap();
    let check = |strict: bool| {
        let mut c = bin();
        c.arg("check");
        if strict {
            c.arg("--strict");
        }
        c.arg("-c").arg(&config).output().unwrap()
    };
    let out = check(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning, not an error: {stderr}");
    let path = config.display();
    let (t, s) = (token.display(), secret.display());
    assert_eq!(
        stderr,
        format!(
            "{path}: warning: admin.token_file: {t} has mode 0644: its group and every other \
             user on this host can read it; `chmod 600 {t}`\n\
             {path}: warning: routes[0] (a).verify.secret_file: {s} has mode 0604: every user \
             on this host can read it; `chmod 600 {s}`\n"
        )
    );
    let out = check(true);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).ends_with("check failed: 2 warnings and --strict\n")
    );
    for file in [&token, &secret] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = check(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_every_error_with_its_location_and_fails() {
    let dir = temp_dir("cli-check");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        Yaml::new()
            .no_admin()
            .routes(
                "  - name: a\n    path: /a\n    upstream: http://127.0.0.1:1\n    verify: { preset: lahzaa, secret: x }\n  - name: b\n    path: /b\n    upstream: http://127.0.0.1:1\n    verify: { preset: lahza, secret: \"${HOOKGATE_TEST_UNSET_VAR}\" }\n  - name: c\n    path: /c\n    upstream: http://127.0.0.1:1\n    verify: { preset: lahza, secret_file: ./nope.secret, bogus: 1 }\n",
            ),
    )
    .unwrap();
    let out = bin().arg("check").arg("-c").arg(&file).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 errors"), "{stderr}");
    assert!(
        stderr.contains("routes[0] (a).verify.preset: unknown preset `lahzaa`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "routes[1] (b).verify.secret: environment variable HOOKGATE_TEST_UNSET_VAR is not set"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("routes[2] (c).verify.bogus: unknown field"),
        "{stderr}"
    );

    // YAML syntax errors carry line and column.
    std::fs::write(&file, "listeners:\n  - addr: [\n").unwrap();
    let out = bin().arg("check").arg("-c").arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line "));
}

#[tokio::test]
async fn run_and_sign_work_together_like_the_walkthrough() {
    let upstream = Upstream::start().await;
    let dir = temp_dir("cli-run");
    std::fs::write(dir.join("listrak.secret"), "LTK-secret-99\n").unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .top("limits:\n  drain_delay: 200ms\n")
            .routes(&format!(
                "  - name: listrak\n    path: /webhooks/listrak\n    upstream: {}\n    verify:\n      preset: listrak\n      secret_file: listrak.secret\n",
                upstream.url()
            )),
    )
    .unwrap();
    let body = br#"{"ContactEmail":"a@example.com","CouponCode":"SAVE10"}"#;
    std::fs::write(dir.join("event.json"), body).unwrap();

    let Started {
        process: mut child,
        addr,
        lines: log,
        ..
    } = start(&mut run(&config), Ready::default());

    let printed = stdout_of_success(
        bin()
            .args(["sign", "--route", "listrak", "--body"])
            .arg(dir.join("event.json"))
            .arg("-c")
            .arg(&config),
    );
    let headers: Vec<(&str, &str)> = printed
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k, v)
        })
        .collect();
    let names: Vec<&str> = headers.iter().map(|h| h.0).collect();
    assert_eq!(names, ["ltk-timestamp", "ltk-hmacsignature"], "{printed}");
    // The printed signature is what Listrak itself would send (independent HMAC here).
    let expected = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
            "LTK-secret-99",
            &[body, headers[0].1.as_bytes()],
        ))
    };
    assert_eq!(headers[1].1, expected);

    let url = format!("http://{addr}/webhooks/listrak");
    let answer = post(&url, &headers, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(upstream.count(), 1);
    assert_eq!(&upstream.received()[0].body[..], &body[..]);
    let answer = post(&url, &headers, b"{\"tampered\":true}").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.count(), 1);

    // SIGTERM: graceful shutdown, exit status 0.
    signal(&mut child, Signal::Term);
    let mut waited = Duration::ZERO;
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            waited < Duration::from_secs(20),
            "gateway did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    };
    assert!(exit.success());
    // The last line says how the drain went.
    let lines: Vec<String> = log.try_iter().collect();
    let last = lines.last().cloned().unwrap_or_default();
    assert!(
        last.contains("stopped; requests since the signal: completed=0 cut_off=0"),
        "{lines:#?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("draining: /readyz answers 503")));
}

/// What `hookgate run` logs until it is ready, from a child started on `config` (with
/// `HOOKGATE_TEST_SECRET` set); then stopped.
fn startup_lines(config: &Path) -> Vec<String> {
    let mut child = spawn(
        run(config).env("HOOKGATE_TEST_SECRET", "s3cret"),
        Stdio::piped(),
    );
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let ready = line.contains("hookgate ready");
            let _ = tx.send(line);
            if ready {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    while !lines
        .last()
        .is_some_and(|l: &String| l.contains("hookgate ready"))
    {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("not ready within 20 s: {lines:#?}"),
        }
    }
    signal(&mut child, Signal::Term);
    assert!(child.wait().unwrap().success());
    lines
}

/// The start-up lines say what is on: replay protection only when a route claims keys in the
/// replay store (a queued route deduplicates in its own store), the queue API when there is a
/// queue.
#[test]
fn startup_lines_name_the_replay_store_and_the_queue_api_only_when_used() {
    let dir = temp_dir("cli-startup-lines");
    let config = dir.join("gateway.yaml");
    let route = |extra: &str| {
        format!(
            "  - {{ name: r, path: /r, upstream: \"http://127.0.0.1:1\", verify: {{ preset: \
             lahza, secret: \"${{HOOKGATE_TEST_SECRET}}\" }}, replay: {{}}{extra} }}\n"
        )
    };
    let head = Yaml::new().top("limits:\n  drain_delay: 0s\n");
    std::fs::write(
        &config,
        head.clone()
            .top(&format!(
                "queue_store: {{ path: {} }}\n",
                dir.join("queue").display()
            ))
            .routes(&route(", delivery: queued")),
    )
    .unwrap();
    let queued = startup_lines(&config);
    assert!(
        queued
            .iter()
            .any(|l| l.contains("admin listening (/metrics /healthz /readyz /queue/)")),
        "{queued:#?}"
    );
    assert!(
        !queued.iter().any(|l| l.contains("replay protection")),
        "{queued:#?}"
    );

    std::fs::write(&config, head.routes(&route(""))).unwrap();
    let sync = startup_lines(&config);
    assert!(
        sync.iter()
            .any(|l| l.contains("admin listening (/metrics /healthz /readyz)")),
        "{sync:#?}"
    );
    assert!(
        sync.iter()
            .any(|l| l.contains("replay protection on") && l.contains("store=\"memory\"")),
        "{sync:#?}"
    );
}

#[test]
fn run_refuses_to_start_on_a_broken_config() {
    let dir = temp_dir("cli-broken");
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .no_admin()
            .routes("  - name: open\n    path: /x\n    upstream: http://127.0.0.1:1\n"),
    )
    .unwrap();
    let out = bin().arg("run").arg("-c").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("neither `verify` nor `allow_ips`"),
        "{stderr}"
    );
}

#[test]
fn presets_lists_every_preset_with_its_scheme() {
    let out = bin().arg("presets").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in hookgate::config::presets::names() {
        assert!(
            text.contains(&format!("\n{name}:\n")) || text.starts_with(&format!("{name}:\n")),
            "{name}"
        );
    }
    assert!(
        text.contains("entries: { separator: \",\", assign: \"=\", key: v1 }"),
        "{text}"
    );
    assert!(text.contains("algorithm: ecdsa-p256-sha256"), "{text}");
}

/// `sign --private-key` for an asymmetric preset, and `sign` filling Stripe's `t=` entry; both
/// sent through a running gateway.
#[tokio::test]
async fn sign_covers_asymmetric_and_structured_presets() {
    let cases = crate::providers::cases();
    let discord = cases
        .iter()
        .find(|c| c.preset == "discord" && c.expect == "accept")
        .unwrap();
    let private = discord.private_key.clone().unwrap();
    let upstream = Upstream::start().await;
    let dir = temp_dir("cli-sign-asym");
    std::fs::write(dir.join("discord.key"), &private).unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new().routes(&format!(
            "  - name: discord\n    path: /discord\n    upstream: {u}\n    verify: {{ preset: discord, public_key: \"{pk}\" }}\n  - name: stripe\n    path: /stripe\n    upstream: {u}\n    verify: {{ preset: stripe, secret: \"${{STRIPE_KEY}}\" }}\n",
            u = upstream.url(),
            pk = discord.secret
        )),
    )
    .unwrap();
    std::fs::write(dir.join("body.json"), &discord.body).unwrap();
    let sign = |route: &str, extra: &[&str]| {
        stdout_of_success(
            bin()
                .args(["sign", "--route", route, "--body"])
                .arg(dir.join("body.json"))
                .arg("-c")
                .arg(&config)
                .args(extra)
                .env("STRIPE_KEY", "whsec_test_secret"),
        )
    };
    let discord_headers = sign(
        "discord",
        &["--private-key", dir.join("discord.key").to_str().unwrap()],
    );
    let stripe_headers = sign("stripe", &[]);
    assert!(
        stripe_headers.starts_with("stripe-signature: t="),
        "{stripe_headers}"
    );
    assert!(stripe_headers.contains(",v1="), "{stripe_headers}");

    let env = [("STRIPE_KEY", "whsec_test_secret")];
    let yaml = std::fs::read_to_string(&config).unwrap();
    let gw = Hookgate::start(&yaml, &env).await;
    for (route, printed) in [("discord", &discord_headers), ("stripe", &stripe_headers)] {
        let headers: Vec<(&str, &str)> = printed
            .lines()
            .map(|l| l.split_once(": ").unwrap())
            .collect();
        let answer = post(
            &gw.url(&format!("/{route}")),
            &headers,
            discord.body.as_bytes(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{route}: {printed}");
    }
    assert_eq!(upstream.count(), 2);

    // Without the private key, signing an asymmetric route explains what is missing.
    let out = bin()
        .args(["sign", "--route", "discord", "--body"])
        .arg(dir.join("body.json"))
        .arg("-c")
        .arg(&config)
        .env("STRIPE_KEY", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--private-key"));
    gw.shutdown().await;
}

/// `kill -HUP` (what `systemctl reload` sends) reloads: a rotated secret file takes effect,
/// the process keeps running, and a broken file changes nothing.
#[tokio::test]
async fn sighup_reloads_a_rotated_secret_file_and_keeps_running() {
    let upstream = Upstream::start().await;
    let dir = temp_dir("cli-sighup");
    std::fs::write(dir.join("lahza.secret"), "first-secret\n").unwrap();
    let config = dir.join("gateway.yaml");
    let text = Yaml::new()
        .top("limits:\n  drain_delay: 0s\n")
        .routes(&format!(
            "  - name: lahza\n    path: /hooks/lahza\n    upstream: {}\n    verify: {{ preset: lahza, secret_file: lahza.secret }}\n",
            upstream.url()
        ));
    std::fs::write(&config, &text).unwrap();
    let Started {
        process: mut child,
        addr,
        lines: log,
        ..
    } = start(&mut run(&config), Ready::default());
    let url = format!("http://{addr}/hooks/lahza");
    let body = b"{\"id\":1}";
    let sig = |secret: &str| hex::encode(hmac_sha256(secret, &[body]));
    let wait_for = |what: &str| loop {
        let line = log
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no log line with {what:?}"));
        if line.contains(what) {
            break line;
        }
    };
    assert_eq!(
        post(&url, &[("x-lahza-signature", &sig("first-secret"))], body)
            .await
            .status,
        StatusCode::OK
    );

    std::fs::write(dir.join("lahza.secret"), "second-secret\n").unwrap();
    signal(&mut child, Signal::Hup);
    wait_for("configuration reloaded");
    assert_eq!(
        post(&url, &[("x-lahza-signature", &sig("second-secret"))], body)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post(&url, &[("x-lahza-signature", &sig("first-secret"))], body)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // A broken file: logged as check prints it, the running configuration stays.
    std::fs::write(&config, text.replace("preset: lahza", "preset: nope")).unwrap();
    signal(&mut child, Signal::Hup);
    let line = wait_for("unknown preset");
    assert!(line.contains("routes[0] (lahza).verify.preset"), "{line}");
    wait_for("reload failed");
    assert_eq!(
        post(&url, &[("x-lahza-signature", &sig("second-secret"))], body)
            .await
            .status,
        StatusCode::OK
    );
    assert!(child.try_wait().unwrap().is_none(), "still running");
    signal(&mut child, Signal::Term);
    let exit = child.wait().unwrap();
    assert!(exit.success());
}

/// `run --watch` reloads when a secret file changes the way Kubernetes changes a mounted
/// Secret: a `..data` symlink swapped to a new directory, the file itself a symlink through it.
#[cfg(unix)]
#[tokio::test]
async fn watch_reloads_a_secret_swapped_like_a_kubernetes_volume() {
    use std::os::unix::fs::symlink;
    let upstream = Upstream::start().await;
    let dir = temp_dir("cli-watch");
    let _ = std::fs::remove_dir_all(dir.join("v1"));
    let _ = std::fs::remove_dir_all(dir.join("v2"));
    for (version, secret) in [("v1", "first-secret"), ("v2", "second-secret")] {
        std::fs::create_dir_all(dir.join(version)).unwrap();
        std::fs::write(dir.join(version).join("lahza.secret"), secret).unwrap();
    }
    let _ = std::fs::remove_file(dir.join("..data"));
    let _ = std::fs::remove_file(dir.join("lahza.secret"));
    symlink("v1", dir.join("..data")).unwrap();
    symlink("..data/lahza.secret", dir.join("lahza.secret")).unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .top("limits:\n  drain_delay: 0s\n")
            .routes(&format!(
                "  - name: lahza\n    path: /hooks/lahza\n    upstream: {}\n    verify: {{ preset: lahza, secret_file: lahza.secret }}\n",
                upstream.url()
            )),
    )
    .unwrap();
    let Started {
        process: mut child,
        addr,
        lines: log,
        ..
    } = start(run(&config).arg("--watch"), Ready::default());
    let url = format!("http://{addr}/hooks/lahza");
    let body = b"{\"id\":1}";
    let sig = |secret: &str| hex::encode(hmac_sha256(secret, &[body]));
    assert_eq!(
        post(&url, &[("x-lahza-signature", &sig("first-secret"))], body)
            .await
            .status,
        StatusCode::OK
    );
    // The swap: a new symlink renamed over ..data, as the kubelet does.
    symlink("v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(10))
            .expect("--watch reloaded within 10 s");
        if line.contains("configuration reloaded") {
            break;
        }
    }
    assert_eq!(
        post(&url, &[("x-lahza-signature", &sig("second-secret"))], body)
            .await
            .status,
        StatusCode::OK
    );
    signal(&mut child, Signal::Term);
    assert!(child.wait().unwrap().success());
}

/// `HOOKGATE_LOG=warning` used to be read as a module name and silence every line.
#[test]
fn a_log_level_that_names_nothing_is_an_error_not_silence() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = bin()
        .args(["check", "-c"])
        .arg(root.join("gateway.yaml"))
        .env("HOOKGATE_LOG", "warning")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`warning` is not a level"), "{err}");
    stdout_of_success(
        bin()
            .args(["check", "-c"])
            .arg(root.join("gateway.yaml"))
            .env("HOOKGATE_LOG", "warn,hookgate=debug"),
    );
}

/// Every request gets an id, sent to the app and returned to the sender, and one access-log
/// line with the same fields for forwards and refusals; a 502 names its cause at warn.
#[tokio::test]
async fn each_request_has_an_id_and_one_access_log_line_with_every_field() {
    let upstream = Upstream::start().await;
    let down = dead_addr().await;
    let dir = temp_dir("cli-access-log");
    std::fs::write(dir.join("lahza.secret"), "sk_live_lahza_8c2e").unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .top("limits:\n  drain_delay: 0s\n")
            .routes(&format!(
                "  - name: lahza\n    path: /hooks/lahza\n    upstream: {}\n    verify: {{ preset: lahza, secret_file: lahza.secret }}\n  - name: down\n    path: /hooks/down\n    upstream: http://{down}\n    verify: {{ preset: lahza, secret_file: lahza.secret }}\n",
                upstream.url()
            )),
    )
    .unwrap();
    let Started {
        process: mut child,
        addr,
        lines: log,
        ..
    } = start(&mut run(&config), Ready::default());
    let body = b"{\"id\":1}";
    let sig = hex::encode(hmac_sha256("sk_live_lahza_8c2e", &[body]));
    let next_line = |what: &str| loop {
        let line = log
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no log line for {what}"));
        if line.contains("request_id=") {
            break line;
        }
    };

    // A sane incoming id is kept, sent to the app and returned.
    let answer = post(
        &format!("http://{addr}/hooks/lahza?token=secret"),
        &[
            ("x-lahza-signature", &sig),
            ("x-request-id", "sender-abc-1"),
        ],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["x-request-id"], "sender-abc-1");
    assert_eq!(
        upstream.received()[0].headers["x-request-id"],
        "sender-abc-1"
    );
    let line = next_line("forward");
    for field in [
        "request_id=\"sender-abc-1\"",
        "route=\"lahza\"",
        "client=127.0.0.1",
        "peer=127.0.0.1",
        "method=POST",
        "path=\"/hooks/lahza\"",
        "status=200",
        "outcome=\"forwarded\"",
        "bytes_in=8",
        "bytes_out=15",
        "protocol=\"HTTP/1.1\"",
        "tls=false",
        &format!("upstream=\"{}\"", upstream.addr),
        "upstream_status=200",
        "upstream_ms=",
        " INFO ",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert!(!line.contains("token=secret"), "never the query: {line}");

    // A refusal: an id is made up, and the same fields are there.
    let answer = post(&format!("http://{addr}/hooks/lahza"), &[], body).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let line = next_line("refusal");
    for field in [
        format!("request_id=\"{id}\""),
        "status=401".into(),
        "outcome=\"signature_missing\"".into(),
        "reason=\"missing signature header x-lahza-signature\"".into(),
        "bytes_in=8".into(),
        "upstream=\"\"".into(),
        " WARN ".into(),
    ] {
        assert!(line.contains(&field), "{field} in {line}");
    }

    // The app is down: 502 at warn, naming the cause and the upstream.
    let answer = post(
        &format!("http://{addr}/hooks/down"),
        &[("x-lahza-signature", &sig)],
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let line = next_line("502");
    for field in [
        "status=502".to_owned(),
        "outcome=\"upstream_unreachable\"".into(),
        format!("upstream=\"{down}\""),
        "cause=\"connect:".into(),
        " WARN ".into(),
    ] {
        assert!(line.contains(&field), "{field} in {line}");
    }
    signal(&mut child, Signal::Term);
    assert!(child.wait().unwrap().success());
}

/// The access-log fields every request's line carries, whatever its end.
const ACCESS_LOG_FIELDS: [&str; 18] = [
    "timestamp",
    "request_id",
    "route",
    "client",
    "peer",
    "method",
    "path",
    "status",
    "outcome",
    "reason",
    "bytes_in",
    "bytes_out",
    "protocol",
    "tls",
    "upstream",
    "upstream_status",
    "upstream_ms",
    "elapsed_us",
];

/// The gateway's log lines, parsed as JSON as they come.
struct JsonLog(std::sync::mpsc::Receiver<serde_json::Value>);

impl JsonLog {
    /// Waits for the next line that `pred` accepts.
    fn next(&self, pred: &dyn Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        loop {
            let v = self
                .0
                .recv_timeout(Duration::from_secs(10))
                .expect("a log line");
            if pred(&v) {
                return v;
            }
        }
    }
}

/// Runs the gateway (its configuration has `log: { format: json }`) and reads its log.
/// `start` finds the listener in a text line: JSON lines are read here instead.
fn spawn_with_json_log(config: &Path) -> (KillOnDrop, JsonLog) {
    let mut child = spawn(run(config).env_remove("HOOKGATE_LOG"), Stdio::piped());
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let _ = tx.send(v);
        }
    });
    (child, JsonLog(lines))
}

/// A request whose sender hangs up before the answer gets the same access-log line as an
/// answered one (status 499, outcome `client_closed`), as a warning.
#[tokio::test]
async fn a_request_dropped_before_its_answer_gets_the_same_log_line() {
    use tokio::io::AsyncWriteExt;
    let upstream = Upstream::start_with(Reply {
        delay: Duration::from_millis(1500),
        ..Reply::default()
    })
    .await;
    let dir = temp_dir("cli-dropped-log");
    std::fs::write(dir.join("lahza.secret"), "sk_live_lahza_8c2e").unwrap();
    let config = dir.join("gateway.yaml");
    let yaml = Yaml::new()
        .top("log: { format: json }\nlimits:\n  drain_delay: 0s\n")
        .routes(&format!(
            "  - name: lahza\n    path: /hooks/lahza\n    upstream: {}\n    verify: {{ preset: lahza, secret_file: lahza.secret }}\n",
            upstream.url()
        ));
    std::fs::write(&config, yaml).unwrap();
    let (mut child, log) = spawn_with_json_log(&config);
    let next = |pred: &dyn Fn(&serde_json::Value) -> bool| log.next(pred);
    let listening = next(&|v| v["message"] == "listening" && v["tls"] == false);
    let addr = listening["addr"].as_str().unwrap().to_owned();
    let body = b"{\"id\":1}";
    let sig = hex::encode(hmac_sha256("sk_live_lahza_8c2e", &[body]));
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /hooks/lahza?token=t0p HTTP/1.1\r\nHost: a\r\nx-lahza-signature: {sig}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    eventually("forwarding", || upstream.count() == 1).await;
    drop(s);
    let line = next(&|v| v.get("request_id").is_some());
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["route"], "lahza");
    assert_eq!(line["status"], 499);
    assert_eq!(line["outcome"], "client_closed");
    assert_eq!(line["path"], "/hooks/lahza", "never the query string");
    assert_eq!(line["bytes_in"], 8);
    for field in ACCESS_LOG_FIELDS {
        assert!(line.get(field).is_some(), "{field} in {line}");
    }
    signal(&mut child, Signal::Term);
    assert!(child.wait().unwrap().success());
}

/// `log: { format: json }`: every line is one JSON object with the access-log fields at the
/// top level; `log.level` changes on reload.
#[tokio::test]
async fn json_log_lines_parse_and_a_reload_changes_the_level() {
    let upstream = Upstream::start().await;
    let dir = temp_dir("cli-json-log");
    std::fs::write(dir.join("lahza.secret"), "sk_live_lahza_8c2e").unwrap();
    let config = dir.join("gateway.yaml");
    let text = |level: &str| {
        Yaml::new()
            .top(&format!(
                "log: {{ format: json, level: {level} }}\nlimits:\n  drain_delay: 0s\n"
            ))
            .routes(&format!(
                "  - name: lahza\n    path: /hooks/lahza\n    upstream: {}\n    verify: {{ preset: lahza, secret_file: lahza.secret }}\n",
                upstream.url()
            ))
    };
    std::fs::write(&config, text("info")).unwrap();
    let (mut child, log) = spawn_with_json_log(&config);
    let next = |pred: &dyn Fn(&serde_json::Value) -> bool| log.next(pred);
    let listening = next(&|v| v["message"] == "listening" && v["tls"] == false);
    let addr = listening["addr"].as_str().unwrap().to_owned();
    let url = format!("http://{addr}/hooks/lahza");
    let body = b"{\"id\":1}";
    let sig = hex::encode(hmac_sha256("sk_live_lahza_8c2e", &[body]));
    assert_eq!(
        post(&url, &[("x-lahza-signature", &sig)], body)
            .await
            .status,
        StatusCode::OK
    );
    let line = next(&|v| v.get("request_id").is_some());
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["route"], "lahza");
    assert_eq!(line["status"], 200);
    assert_eq!(line["outcome"], "forwarded");
    assert_eq!(line["bytes_in"], 8);
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert_eq!(line["upstream"], upstream.addr.to_string());
    for field in ACCESS_LOG_FIELDS {
        assert!(line.get(field).is_some(), "{field} in {line}");
    }
    // Whole microseconds: at most three decimals, never a binary float's noise.
    let ms = line["upstream_ms"].to_string();
    assert!(
        line["upstream_ms"].as_f64().is_some_and(|v| v > 0.0),
        "{line}"
    );
    assert!(ms.split_once('.').is_none_or(|(_, d)| d.len() <= 3), "{ms}");

    // Reload with level warn: forwards no longer log, refusals still do.
    std::fs::write(&config, text("warn")).unwrap();
    signal(&mut child, Signal::Hup);
    next(&|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("configuration reloaded"))
    });
    assert_eq!(
        post(&url, &[("x-lahza-signature", &sig)], body)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(post(&url, &[], body).await.status, StatusCode::UNAUTHORIZED);
    let line = next(&|v| v.get("request_id").is_some());
    assert_eq!(
        line["status"], 401,
        "the forward's INFO line is filtered out: {line}"
    );
    assert_eq!(line["level"], "WARN");
    signal(&mut child, Signal::Term);
    assert!(child.wait().unwrap().success());
}

/// A reload stuck reading its files (here the configuration is a FIFO nobody writes) does
/// not keep SIGTERM from draining and stopping the gateway.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_during_a_stuck_reload_still_stops_the_gateway() {
    let upstream = Upstream::start().await;
    let dir = temp_dir("cli-stuck-reload");
    std::fs::write(dir.join("lahza.secret"), "s").unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .top("limits:\n  drain_delay: 0s\n")
            .routes(&format!(
                "  - name: lahza\n    path: /hooks/lahza\n    upstream: {}\n    verify: {{ preset: lahza, secret_file: lahza.secret }}\n",
                upstream.url()
            )),
    )
    .unwrap();
    let Started {
        process: mut child,
        lines: log,
        ..
    } = start(&mut run(&config), Ready::default());
    std::fs::remove_file(&config).unwrap();
    assert!(Command::new("mkfifo")
        .arg(&config)
        .status()
        .unwrap()
        .success());
    signal(&mut child, Signal::Hup);
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(10))
            .expect("reloading logged");
        if line.contains("reloading") {
            break;
        }
    }
    let started = std::time::Instant::now();
    signal(&mut child, Signal::Term);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "SIGTERM was not handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success());
}

/// What `hookgate sign` prints, sent the way README's walk-through sends it:
/// `curl -H @headers --data-binary @body URL`, so with curl's own defaults (its form
/// Content-Type among them). Every kind of scheme must come out 2xx and reach the app.
#[tokio::test]
async fn sign_output_sent_by_curl_with_its_defaults_is_accepted() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("curl is needed (tests/run.sh installs it)");
    }
    let upstream = Upstream::start().await;
    let dir = temp_dir("cli-sign-curl");
    // Key pairs as an operator makes them.
    let keygen = |preset: &str| {
        let line = stdout_of_success(
            bin()
                .args(["keygen", "--preset", preset, "--out"])
                .arg(dir.join(format!("{preset}.pem"))),
        );
        line.split('"').nth(1).unwrap().to_owned()
    };
    let discord_public = keygen("discord");
    let sendgrid_public = keygen("sendgrid");
    let u = upstream.url();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new().routes(&format!(
            "  - {{ name: twilio, path: /twilio, upstream: \"{u}\", public_url: \"https://hooks.example.com\", verify: {{ preset: twilio, secret: \"${{SECRET}}\" }} }}\n\
         \x20 - {{ name: twilio256, path: /twilio256, upstream: \"{u}\", public_url: \"https://hooks.example.com\", verify: {{ preset: twilio-sha256, secret: \"${{SECRET}}\" }} }}\n\
         \x20 - {{ name: square, path: /square/*, upstream: \"{u}\", public_url: \"https://hooks.example.com\", verify: {{ preset: square, secret: \"${{SECRET}}\" }} }}\n\
         \x20 - {{ name: github, path: /gh/*, upstream: \"{u}\", verify: {{ preset: github, secret: \"${{SECRET}}\" }}, replay: {{}} }}\n\
         \x20 - {{ name: sendgrid, path: /sendgrid, upstream: \"{u}\", verify: {{ preset: sendgrid, public_key: \"{sendgrid_public}\" }} }}\n\
         \x20 - {{ name: discord, path: /discord, upstream: \"{u}\", verify: {{ preset: discord, public_key: \"{discord_public}\" }} }}\n"
        )),
    )
    .unwrap();
    // Killed however the test ends.
    let gateway = start(
        run(&config).env("SECRET", "curl-test-secret"),
        Ready::default(),
    );
    let addr = gateway.addr;

    let sign = |route: &str, body: &str, extra: &[&str]| {
        let body_file = dir.join(format!("{route}.body"));
        std::fs::write(&body_file, body).unwrap();
        let out = bin()
            .args(["sign", "-c"])
            .arg(&config)
            .args(["--route", route, "--body"])
            .arg(&body_file)
            .args(extra)
            .env("SECRET", "curl-test-secret")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{route}: {stderr}");
        let headers_file = dir.join(format!("{route}.headers"));
        std::fs::write(&headers_file, &out.stdout).unwrap();
        (
            body_file,
            headers_file,
            String::from_utf8(out.stdout).unwrap(),
            stderr,
        )
    };
    // Async: the upstream answers on this runtime while curl waits.
    let curl = |path: String, body: std::path::PathBuf, headers: std::path::PathBuf| async move {
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
                .arg(format!("@{}", headers.display()))
                .arg("--data-binary")
                .arg(format!("@{}", body.display()))
                .arg(format!("http://{addr}{path}"))
                .output()
        })
        .await
        .unwrap()
        .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };

    // Twilio, a form body: signed as a form, and the Content-Type the gateway needs printed.
    let (body, headers, printed, _) = sign(
        "twilio",
        "Body=Hello+there&From=%2B15550001111&To=%2B15550002222",
        &[],
    );
    assert!(
        printed.contains("content-type: application/x-www-form-urlencoded"),
        "{printed}"
    );
    assert_eq!(
        curl("/twilio".to_string(), body.clone(), headers.clone()).await,
        "200",
        "{printed}"
    );
    // Twilio, a JSON body: signed through bodySHA256 in the URL, which sign names.
    let (body, headers, printed, stderr) = sign("twilio", r#"{"CallSid":"CA1"}"#, &[]);
    assert!(
        printed.contains("content-type: application/json"),
        "{printed}"
    );
    let url = stderr
        .split("post to ")
        .nth(1)
        .expect("sign names the URL to post to")
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned();
    assert!(url.starts_with("/twilio?bodySHA256="), "{url}");
    assert_eq!(
        curl(url.clone(), body.clone(), headers.clone()).await,
        "200",
        "{printed}"
    );
    // Twilio's webhook signing keys (HMAC-SHA256), a form body.
    let (body, headers, printed, _) = sign("twilio256", "Body=Hi&From=%2B15550001111", &[]);
    assert!(
        printed.contains("content-type: application/x-www-form-urlencoded"),
        "{printed}"
    );
    assert_eq!(
        curl("/twilio256".to_string(), body.clone(), headers.clone()).await,
        "200",
        "{printed}"
    );
    // Square signs the URL: a prefix route needs --path, and gets it.
    let (body, headers, _, _) = sign(
        "square",
        r#"{"type":"payment.created"}"#,
        &["--path", "/square/notify"],
    );
    assert_eq!(
        curl("/square/notify".to_string(), body.clone(), headers.clone()).await,
        "200"
    );
    // GitHub on a prefix route: no --path needed, the URL is not signed. The route dedupes by
    // X-GitHub-Delivery, which sign warns about when it is missing...
    let (_, _, _, stderr) = sign("github", r#"{"zen":"x"}"#, &[]);
    assert!(
        stderr.contains("deduplicates by its header x-github-delivery")
            && stderr.contains("replay_key_missing"),
        "{stderr}"
    );
    // ... and not when it is given.
    let (body, headers, _, stderr) = sign(
        "github",
        r#"{"zen":"x"}"#,
        &["--header", "X-GitHub-Delivery: 72d3162e"],
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(
        curl("/gh/any".to_string(), body.clone(), headers.clone()).await,
        "200"
    );
    // SendGrid: PEM private key from keygen; the timestamp header is filled by sign.
    let pem = dir.join("sendgrid.pem");
    let (body, headers, printed, _) = sign(
        "sendgrid",
        r#"[{"event":"delivered"}]"#,
        &["--private-key", pem.to_str().unwrap()],
    );
    assert!(
        printed.contains("x-twilio-email-event-webhook-timestamp: "),
        "{printed}"
    );
    assert_eq!(
        curl("/sendgrid".to_string(), body.clone(), headers.clone()).await,
        "200",
        "{printed}"
    );
    // Discord: Ed25519 PEM (an interaction for the app; a PING would be answered by the
    // gateway).
    let pem = dir.join("discord.pem");
    let (body, headers, _, _) = sign(
        "discord",
        r#"{"type":2}"#,
        &["--private-key", pem.to_str().unwrap()],
    );
    assert_eq!(
        curl("/discord".to_string(), body.clone(), headers.clone()).await,
        "200"
    );
    assert_eq!(upstream.count(), 7);

    // A private key that is not the route's: an error, not a signature the gateway refuses.
    let out = bin()
        .args(["sign", "-c"])
        .arg(&config)
        .args(["--route", "discord", "--body"])
        .arg(dir.join("discord.body"))
        .args(["--private-key"])
        .arg(dir.join("sendgrid.pem"))
        .env("SECRET", "curl-test-secret")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an Ed25519"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = dir.join("other.pem");
    assert!(bin()
        .args(["keygen", "--preset", "discord", "--out"])
        .arg(&other)
        .output()
        .unwrap()
        .status
        .success());
    let out = bin()
        .args(["sign", "-c"])
        .arg(&config)
        .args(["--route", "discord", "--body"])
        .arg(dir.join("discord.body"))
        .args(["--private-key"])
        .arg(&other)
        .env("SECRET", "curl-test-secret")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("does not belong to any public key of route `discord`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // keygen never overwrites a key.
    let out = bin()
        .args(["keygen", "--preset", "discord", "--out"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The README's custom-scheme example is the committed `acme` route, word for word as YAML.
#[test]
fn readme_custom_scheme_example_is_the_committed_acme_route() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("### Adding a sender without a preset")
        .nth(1)
        .expect("README has the section");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block in the section");
    let example: serde_yaml::Value = serde_yaml::from_str(block).unwrap();
    let committed: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("gateway.yaml")).unwrap()).unwrap();
    let acme = committed["routes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "acme")
        .expect("gateway.yaml has the acme route");
    assert_eq!(&example[0], acme);
}

/// `hookgate explain`: each step with a captured request, the verdict the gateway would give
/// and its label, and the exit status (0 verified, 1 refused).
#[test]
fn explain_tells_each_step_and_the_verdict_of_a_captured_request() {
    let dir = temp_dir("cli-explain");
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new().routes(
            "  - name: lahza\n    path: /hooks/lahza\n    upstream: http://127.0.0.1:9\n    allow_ips: [192.0.2.0/24]\n    verify: { preset: lahza, secret: \"${LAHZA_SECRET}\" }\n    replay: { key: { json: /id } }\n",
        ),
    )
    .unwrap();
    let body = br#"{"id":"evt_9","event":"charge.success"}"#;
    let sig = hex::encode(hmac_sha256("sk_lahza", &[body]));
    let request = |body: &[u8]| {
        let mut raw =
            format!("POST /hooks/lahza HTTP/1.1\r\nHost: h\r\nx-lahza-signature: {sig}\r\n\r\n")
                .into_bytes();
        raw.extend_from_slice(body);
        raw
    };
    let explain = |file: &str, raw: Vec<u8>, extra: &[&str]| {
        let path = dir.join(file);
        std::fs::write(&path, raw).unwrap();
        let out = bin()
            .args(["explain", "-c"])
            .arg(&config)
            .arg(&path)
            .args(extra)
            .env("LAHZA_SECRET", "sk_lahza")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = explain("good.http", request(body), &["--client", "192.0.2.7"]);
    assert_eq!(code, Some(0), "{text}");
    for line in [
        "route: lahza (POST /hooks/lahza)",
        "allowlist: 192.0.2.7 is allowed",
        "read from the header x-lahza-signature",
        "body: 39 bytes, as received",
        "key 0: matches",
        "replay key: \"evt_9\" (5 bytes)",
        "verdict: verified by key 0",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    assert!(!text.contains("sk_lahza"), "never the secret");
    let tampered = br#"{"id":"evt_9","event":"charge.failure"}"#;
    let (code, text) = explain("tampered.http", request(tampered), &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("allowlist: set; not checked"), "{text}");
    assert!(text.contains("key 0: does not match"), "{text}");
    assert!(
        text.contains("verdict: refused, signature_mismatch"),
        "{text}"
    );
    let (code, text) = explain(
        "outsider.http",
        request(body),
        &["--client", "198.51.100.1"],
    );
    assert_eq!(code, Some(1));
    assert!(text.contains("verdict: refused, ip_not_allowed"), "{text}");
}

/// `hookgate explain` for a sender whose key is fetched: it fetches nothing, names the key
/// URL the request carries, and verifies with the document given as `--key-file` (a real
/// AWS SNS message and its certificate, at the message's own time).
#[test]
fn explain_verifies_an_sns_message_with_the_certificate_given() {
    let v: serde_json::Value = serde_json::from_str(include_str!("../vectors/sns.json")).unwrap();
    let message = &v["cases"][1]["message"];
    let dir = temp_dir("cli-explain-sns");
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new().routes(&format!(
            "  - name: sns\n    path: /sns\n    upstream: http://127.0.0.1:9\n    verify: {{ preset: aws-sns, json_allowed: {{ /TopicArn: [\"{}\"] }} }}\n",
            message["TopicArn"].as_str().unwrap()
        )),
    )
    .unwrap();
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, v["certificate"].as_str().unwrap()).unwrap();
    let captured = dir.join("sns.http");
    let mut raw =
        b"POST /sns HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(&serde_json::to_vec(message).unwrap());
    std::fs::write(&captured, raw).unwrap();
    let at =
        humantime::parse_rfc3339_weak(message["Timestamp"].as_str().unwrap().trim_end_matches('Z'))
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1;
    let explain = |extra: &[&std::ffi::OsStr]| {
        let out = bin()
            .args(["explain", "-c"])
            .arg(&config)
            .arg(&captured)
            .args(["--at", &at.to_string()])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = explain(&["--key-file".as_ref(), cert.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    for line in [
        "key: from https://sns.us-east-2.amazonaws.com/SimpleNotificationService-",
        "key: certificate for sns.amazonaws.com",
        "verdict: verified",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    let (code, text) = explain(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("give the document with --key-file"), "{text}");
    assert!(text.contains("verdict: refused, key_refused"), "{text}");
}
