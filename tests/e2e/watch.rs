//! `hookgate run --watch` watches the files the compiler read, whichever field names them:
//! here `admin.token_file`, which the old hand-written list of watched fields missed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use http::StatusCode;

use crate::support::*;

const OLD: &str = "old-admin-token-0123456789";
const NEW: &str = "new-admin-token-9876543210";

fn write_token(path: &Path, token: &str) {
    // Written beside it and renamed over it, as an editor or the kubelet does.
    let next = path.with_extension("next");
    std::fs::write(&next, token).unwrap();
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// The queue API's answer to `token`: 401 when refused; admitted, it is 404 here (no
/// `queue_store:`), which is enough to tell which token is in force.
async fn queue_api(admin: std::net::SocketAddr, token: &str) -> StatusCode {
    let auth = format!("Bearer {token}");
    let url = format!("http://{admin}/queue/events");
    send("GET", &url, &[("authorization", &auth)], b"")
        .await
        .status
}

#[tokio::test]
async fn watch_reloads_when_the_admin_token_file_changes() {
    let upstream = Upstream::start().await;
    let dir = temp_dir("watch-admin-token");
    let token = dir.join("admin.token");
    write_token(&token, OLD);
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        Yaml::new()
            .admin(&format!(
                "  addr: 127.0.0.1:0\n  token_file: {}\n",
                token.display()
            ))
            .top("limits:\n  drain_delay: 0s\n")
            .routes(&format!(
                "  - {{ name: a, path: /a, upstream: {}, allow_ips: [127.0.0.1] }}\n",
                upstream.url()
            )),
    )
    .unwrap();
    let Started {
        process: mut child,
        admin,
        lines: log,
        ..
    } = start(
        run(&config).arg("--watch"),
        Ready {
            admin: true,
            no_errors: true,
        },
    );
    let admin = admin.expect("the admin listener");
    assert_eq!(queue_api(admin, OLD).await, StatusCode::NOT_FOUND);
    assert_eq!(queue_api(admin, NEW).await, StatusCode::UNAUTHORIZED);

    write_token(&token, NEW);
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(10))
            .expect("--watch reloaded within 10 s");
        if line.contains("configuration reloaded") {
            break;
        }
    }
    assert_eq!(queue_api(admin, NEW).await, StatusCode::NOT_FOUND);
    assert_eq!(queue_api(admin, OLD).await, StatusCode::UNAUTHORIZED);
    signal(&mut child, Signal::Term);
    assert!(child.wait().unwrap().success());
}
