//! Secret resolution. A secret is never required to be in the file:
//! `"${NAME}"` reads the environment variable NAME, `secret_file: PATH` reads a file (one
//! trailing newline removed, as `echo` and most secret mounts add one), and anything else is
//! a literal, accepted with a warning. A file that users other than hookgate's can read
//! earns a warning too ([`exposure`]).

use std::path::Path;

/// Where a resolved secret came from; literals earn a warning.
#[derive(Debug, PartialEq, Eq)]
pub enum Origin {
    Env,
    File,
    Literal,
    /// A literal written like an environment reference without its braces (`$NAME`): most
    /// likely a mistake, but a secret may start with `$`, so it is used as written.
    DollarLiteral,
}

/// Resolves one `secret:`/`secrets:` string. Errors are messages for the config report.
pub fn resolve_value(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<u8>, Origin), String> {
    if let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("`{value}` is not a valid ${{ENV_VAR}} reference"));
        }
        return match env(inner) {
            Some(v) if !v.is_empty() => Ok((v.into_bytes(), Origin::Env)),
            Some(_) => Err(format!("environment variable {inner} is empty")),
            None => Err(format!("environment variable {inner} is not set")),
        };
    }
    if value.contains("${") {
        return Err("write a secret either as \"${ENV_VAR}\" alone or as a literal".into());
    }
    if value.is_empty() {
        return Err("secret is empty".into());
    }
    let dollar_name = value.strip_prefix('$').is_some_and(|name| {
        name.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    let origin = if dollar_name {
        Origin::DollarLiteral
    } else {
        Origin::Literal
    };
    Ok((value.as_bytes().to_vec(), origin))
}

/// Refuses anything but a regular file (after symlinks) before it is read: a FIFO or a
/// device would block the reader (on a reload, the whole gateway) or never end.
pub fn regular_file(path: &Path, what: &str) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!("{what} {} is not a regular file", path.display())),
        Err(e) => Err(format!("cannot read {what} {}: {e}", path.display())),
    }
}

/// Reads a `secret_file:`.
pub fn resolve_file(path: &Path) -> Result<(Vec<u8>, Origin), String> {
    regular_file(path, "secret file")?;
    let mut bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok((bytes, Origin::File))
}

/// Why a file holding a secret (a `secret_file:`, the admin token, a TLS private key) is open
/// to users other than the one running hookgate, if it is: a warning naming the file, its mode
/// and the fix. Group access to a file another user owns is how this process may be meant to
/// read it (a Kubernetes Secret mounted with `fsGroup`, root's file shared with hookgate's
/// group), so it counts only when the group is not this process's; PostgreSQL treats its key
/// file the same way.
#[cfg(unix)]
pub fn exposure(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = meta.uid() == unsafe { libc::geteuid() };
    let access = Access {
        mode: meta.mode() & 0o7777,
        ours,
        our_group: in_our_groups(meta.gid()),
    };
    access.exposure(path)
}

#[cfg(not(unix))]
pub fn exposure(_: &Path) -> Option<String> {
    None
}

/// A file's mode and how this process relates to it: the pure part of [`exposure`].
#[derive(Clone, Copy, Debug)]
struct Access {
    mode: u32,
    /// This process's user owns the file.
    ours: bool,
    /// The file's group is this process's group or one of its supplementary groups.
    our_group: bool,
}

impl Access {
    fn exposure(self, path: &Path) -> Option<String> {
        let others = self.mode & 0o006;
        // The group is someone else only when this process is not reading through it.
        let group = if self.ours || !self.our_group {
            self.mode & 0o060
        } else {
            0
        };
        let who = match (group != 0, others != 0) {
            (false, false) => return None,
            (true, false) => "its group",
            (false, true) => "every user on this host",
            (true, true) => "its group and every other user on this host",
        };
        let bits = group | others;
        let can = match (bits & 0o044 != 0, bits & 0o022 != 0) {
            (true, true) => "read and change",
            (true, false) => "read",
            _ => "change",
        };
        let p = path.display();
        let fix = if self.ours {
            format!("`chmod 600 {p}`")
        } else if self.our_group {
            format!("`chmod o-rwx {p}` (hookgate reads it as its group)")
        } else {
            format!("make the user hookgate runs as its owner (`chown`), then `chmod 600 {p}`")
        };
        Some(format!(
            "{p} has mode {:04o}: {who} can {can} it; {fix}",
            self.mode
        ))
    }
}

/// Whether `gid` is this process's effective group or one of its supplementary groups.
#[cfg(unix)]
fn in_our_groups(gid: u32) -> bool {
    // SAFETY: getegid has no preconditions and cannot fail.
    if gid == unsafe { libc::getegid() } {
        return true;
    }
    // SAFETY: with a size of 0, getgroups writes nothing and returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(len) = usize::try_from(n) else {
        return false;
    };
    let mut groups: Vec<libc::gid_t> = vec![0; len];
    // SAFETY: the buffer holds `n` entries, and getgroups writes at most `n`.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(got).unwrap_or(0));
    groups.contains(&gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_reference_resolves() {
        assert_eq!(
            resolve_value("${SET}", &env),
            Ok((b"s3cret".to_vec(), Origin::Env))
        );
    }

    #[test]
    fn unset_or_empty_env_is_an_error() {
        assert!(resolve_value("${UNSET}", &env)
            .unwrap_err()
            .contains("not set"));
        assert!(resolve_value("${EMPTY}", &env)
            .unwrap_err()
            .contains("empty"));
        assert!(resolve_value("${BAD-NAME}", &env).is_err());
        assert!(resolve_value("x${SET}", &env).is_err());
    }

    #[test]
    fn literal_is_accepted_as_literal() {
        assert_eq!(
            resolve_value("abc", &env),
            Ok((b"abc".to_vec(), Origin::Literal))
        );
        assert!(resolve_value("", &env).is_err());
    }

    #[test]
    fn a_secret_file_others_can_read_is_named_with_its_mode_and_fix() {
        let p = Path::new("/etc/hookgate/x.secret");
        let at = |mode, ours, our_group| {
            Access {
                mode,
                ours,
                our_group,
            }
            .exposure(p)
        };
        // Only its owner, or its owner and the group this process reads it through.
        for (mode, ours, our_group) in [
            (0o600, true, true),
            (0o400, true, false),
            (0o640, false, true),
            (0o440, false, true),
            (0o600, false, false),
        ] {
            assert_eq!(
                at(mode, ours, our_group),
                None,
                "{mode:o} {ours} {our_group}"
            );
        }
        let cases = [
            (
                0o644,
                true,
                true,
                "/etc/hookgate/x.secret has mode 0644: its group and every other user on \
                 this host can read it; `chmod 600 /etc/hookgate/x.secret`",
            ),
            (
                0o640,
                true,
                true,
                "/etc/hookgate/x.secret has mode 0640: its group can read it; `chmod 600 \
                 /etc/hookgate/x.secret`",
            ),
            (
                0o602,
                true,
                false,
                "/etc/hookgate/x.secret has mode 0602: every user on this host can change \
                 it; `chmod 600 /etc/hookgate/x.secret`",
            ),
            (
                0o444,
                false,
                true,
                "/etc/hookgate/x.secret has mode 0444: every user on this host can read it; \
                 `chmod o-rwx /etc/hookgate/x.secret` (hookgate reads it as its group)",
            ),
            (
                0o644,
                false,
                false,
                "/etc/hookgate/x.secret has mode 0644: its group and every other user on \
                 this host can read it; make the user hookgate runs as its owner (`chown`), \
                 then `chmod 600 /etc/hookgate/x.secret`",
            ),
        ];
        for (mode, ours, our_group, want) in cases {
            assert_eq!(at(mode, ours, our_group).as_deref(), Some(want), "{mode:o}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_real_file_is_judged_by_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hookgate-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("token");
        std::fs::write(&p, "abc").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(exposure(&p), None);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o604)).unwrap();
        let warning = exposure(&p).unwrap();
        assert!(
            warning.contains("has mode 0604: every user on this host can read it")
                && warning.ends_with(&format!("`chmod 600 {}`", p.display())),
            "{warning}"
        );
    }

    #[test]
    fn file_loses_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("hookgate-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        std::fs::write(&p, "abc\n").unwrap();
        assert_eq!(resolve_file(&p), Ok((b"abc".to_vec(), Origin::File)));
        assert!(resolve_file(&dir.join("missing")).is_err());
    }
}
