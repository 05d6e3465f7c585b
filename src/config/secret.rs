//! Secret resolution. A secret is never required to be in the file:
//! `"${NAME}"` reads the environment variable NAME, `secret_file: PATH` reads a file (one
//! trailing newline removed, as `echo` and most secret mounts add one), and anything else is
//! a literal, accepted with a warning.

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
    fn file_loses_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("hookgate-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        std::fs::write(&p, "abc\n").unwrap();
        assert_eq!(resolve_file(&p), Ok((b"abc".to_vec(), Origin::File)));
        assert!(resolve_file(&dir.join("missing")).is_err());
    }
}
