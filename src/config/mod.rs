//! Configuration: `gateway.yaml` in two levels.
//!
//! - `file.rs`: the file's shape (serde structs, unknown keys rejected).
//! - `compile/`: turns that into the immutable runtime model ([`Gateway`], `crate::model`),
//!   one file per section: parsed addresses, CIDRs, durations, TLS configs, and compiled
//!   signature schemes with their secrets resolved. Every problem is collected with its
//!   location (route name and field) and reported together; a gateway with any error never
//!   starts.
//! - `secret.rs`: `${ENV_VAR}`, `secret_file:` and literal secrets.
//! - `defaults.rs`: what a `verify:` block gets for what it leaves out, for the compiler,
//!   `check --expand` and `keygen` alike.
//!
//! The request path reads only the compiled model and never re-checks what load time checked.

pub mod catalog;
pub mod compile;
pub mod defaults;
pub mod file;
pub mod overlap;
pub mod presets;
pub mod secret;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::model::Gateway;

/// One configuration problem and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// e.g. `routes[2] (lahza).verify.secret` or `line 12 column 3`.
    pub location: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found in a configuration that does not compile: its errors, and the
/// warnings it would deserve even once they are fixed (reported in the same pass).
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
    /// The files the compile read or tried to read before it failed ([`Loaded::files`]): a
    /// file it could not read may be the one an operator is about to fix.
    pub files: Vec<PathBuf>,
}

impl ConfigErrors {
    /// One error (a file that cannot be read), no warnings.
    pub fn one(location: impl Into<String>, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors {
            errors: vec![ConfigError {
                location: location.into(),
                message: message.into(),
            }],
            warnings: Vec::new(),
            files: Vec::new(),
        }
    }
}

/// The errors only, as `hookgate check` prints them after the warnings.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} in configuration:",
            counted(self.errors.len(), "error", "errors")
        )?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// `1 error`, `2 errors`: a count with its noun, for messages.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A loaded configuration and the warnings it deserves (e.g. a literal secret in the file).
#[derive(Debug)]
pub struct Loaded {
    pub gateway: Gateway,
    pub warnings: Vec<ConfigError>,
    /// Every file the compile read besides the configuration itself, in order, once each:
    /// secret and public key files, listener TLS certificates and keys, upstream TLS files,
    /// `admin.token_file`, `queue_store.ca_file`. Relative paths are joined to the
    /// configuration's directory. `run --watch` watches these and the configuration.
    pub files: Vec<PathBuf>,
    /// Hex SHA-256 of the configuration text (`hookgate_config_info`), to tell which
    /// version is running.
    pub sha256: String,
}

/// Reads and compiles a configuration file, resolving secrets from the process environment.
/// Relative paths inside it (`secret_file`, TLS files) are relative to the file's directory.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::one(
            path.display().to_string(),
            format!("cannot read configuration: {e}"),
        )
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    compile::compile(&text, base, &|name| std::env::var(name).ok())
}

/// The secrets of route `route` as its sender holds them (for `hookgate sign`), read from the
/// file with the compiler's own readers and the process environment. `sign` loads the file
/// first, so this fails only if the file changed in between.
pub fn sender_secrets(path: &Path, route: &str) -> Result<compile::SenderSecrets, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    compile::sender_secrets(&text, base, &|name| std::env::var(name).ok(), route).map_err(
        |errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!("{}: {}", path.display(), lines.join("; "))
        },
    )
}

/// Where the admin listener binds when the file has no `admin:`.
pub const DEFAULT_ADMIN_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9090,
));

/// The admin listener's address as the file gives it (default 127.0.0.1:9090), without
/// compiling the rest: for `hookgate healthcheck`, which must keep answering for the running
/// gateway while the file on disk has an edit that does not compile yet (or names a secret
/// the checking process cannot read).
pub fn admin_addr(path: &Path) -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
    #[derive(serde::Deserialize)]
    struct AdminOnly {
        admin: Option<AdminAddr>,
    }
    #[derive(serde::Deserialize)]
    struct AdminAddr {
        addr: String,
    }
    let raw: AdminOnly = serde_yaml::from_str(&text)
        .map_err(|e| format!("{}: not valid YAML: {e}", path.display()))?;
    match raw.admin {
        None => Ok(DEFAULT_ADMIN_ADDR),
        Some(a) => a.addr.parse().map_err(|_| {
            format!(
                "{}: admin.addr `{}` is not an IP:PORT address",
                path.display(),
                a.addr
            )
        }),
    }
}

/// The algorithm and public-key encoding of a route's scheme, read from the file without
/// compiling it (for `hookgate keygen`: the route may have no key yet), or of a preset when
/// `route` is `None`.
pub fn key_spec(
    path: &Path,
    route: Option<&str>,
    preset: Option<&str>,
) -> Result<(crate::scheme::Algorithm, crate::scheme::KeyEncoding), String> {
    let verify = match (route, preset) {
        (_, Some(name)) => file::RawVerify {
            preset: Some(name.to_owned()),
            ..file::RawVerify::default()
        },
        (Some(name), None) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
            let doc: serde_yaml::Value = serde_yaml::from_str(&text)
                .map_err(|e| format!("{}: not valid YAML: {e}", path.display()))?;
            let found = doc
                .get("routes")
                .and_then(|r| r.as_sequence())
                .and_then(|routes| {
                    routes
                        .iter()
                        .find(|r| r.get("name").and_then(|n| n.as_str()) == Some(name))
                })
                .ok_or_else(|| format!("{}: no route named `{name}`", path.display()))?;
            let verify = found
                .get("verify")
                .cloned()
                .ok_or_else(|| format!("route `{name}` has no `verify:` block"))?;
            serde_yaml::from_value(verify).map_err(|e| format!("route `{name}`: verify: {e}"))?
        }
        (None, None) => return Err("give --route NAME or --preset NAME".into()),
    };
    let mut errors = Vec::new();
    let verify = compile::expand_preset(verify, "verify", &mut errors);
    if let Some(e) = errors.first() {
        return Err(e.to_string());
    }
    let algorithm = defaults::algorithm(&verify).ok_or("the scheme names no known algorithm")?;
    if !matches!(
        algorithm,
        crate::scheme::Algorithm::Ed25519 | crate::scheme::Algorithm::EcdsaP256Sha256
    ) {
        return Err(format!(
            "{} verifies with a shared secret, not a key pair; any long random string will do \
             (e.g. `openssl rand -hex 32`)",
            algorithm.name()
        ));
    }
    let encoding = match verify.key_encoding.as_deref() {
        None => defaults::key_encoding(algorithm),
        Some(e) => crate::scheme::KeyEncoding::parse(e)
            .ok_or_else(|| format!("unknown key_encoding `{e}`"))?,
    };
    if encoding == crate::scheme::KeyEncoding::Raw {
        return Err(
            "key_encoding raw cannot hold a public key (it is binary): use base64 or hex".into(),
        );
    }
    Ok((algorithm, encoding))
}

/// Written in place of a literal secret by [`expand`]: never printed, and an unset variable
/// if pasted back, so the copy fails to load instead of verifying with a wrong key.
pub const LITERAL_SECRET_PLACEHOLDER: &str = "${PUT_THE_LITERAL_SECRET_BACK}";

/// Written in place of a store URL with credentials by [`expand`], for the same reason.
pub const LITERAL_URL_PLACEHOLDER: &str = "${PUT_THE_LITERAL_URL_BACK}";

/// The configuration file with each route's defaults written out (`hookgate check
/// --expand`): beside its preset's name, every field the preset sets (key encoding, message,
/// encodings, timestamp); its methods; its replay key, window and store policy. Valid YAML
/// that reads back to the same gateway, warnings included. Comments are not kept.
/// `loaded` is the file compiled. Returns the YAML and notes for the operator (literal
/// secrets and store URLs with credentials left out).
pub fn expand(path: &Path, loaded: &Loaded) -> Result<(String, Vec<String>), String> {
    use serde_yaml::Value;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
    let mut doc: Value = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    let routes = doc
        .get_mut("routes")
        .and_then(Value::as_sequence_mut)
        .ok_or("no routes")?;
    for (i, value) in routes.iter_mut().enumerate() {
        let Some(m) = value.as_mapping_mut() else {
            continue;
        };
        let Some(route) = m
            .get("name")
            .and_then(Value::as_str)
            .and_then(|n| loaded.gateway.routes.get(n))
        else {
            continue;
        };
        let loc = format!("routes[{i}] ({})", route.name);
        m.insert(
            "methods".into(),
            Value::Sequence(route.methods.iter().map(|m| m.as_str().into()).collect()),
        );
        if let Some(raw) = m.get("verify") {
            let verify = expand_verify(raw, &loc, &mut notes)?;
            m.insert("verify".into(), verify);
        }
        if let Some(replay) = &route.replay {
            m.insert("replay".into(), expand_replay(replay));
        }
        hide_literal_verify_token(m, &loc, &mut notes);
    }
    hide_store_credentials(&mut doc, &mut notes);
    let yaml = serde_yaml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok((yaml, notes))
}

/// A route's `verify:` with its preset's fields and the compiler's defaults written out, and
/// a literal secret replaced by [`LITERAL_SECRET_PLACEHOLDER`] (with a note).
fn expand_verify(
    raw: &serde_yaml::Value,
    loc: &str,
    notes: &mut Vec<String>,
) -> Result<serde_yaml::Value, String> {
    let raw: file::RawVerify = serde_yaml::from_value(raw.clone()).map_err(|e| e.to_string())?;
    let mut errors = Vec::new();
    // The preset's name stays (its warnings, e.g. a sender that needs the app's answer, still
    // apply); every field it sets is written out beside it.
    let mut v = compile::expand_preset(raw, loc, &mut errors);
    // The defaults the compiler applies, written out.
    defaults::write_out(&mut v);
    let literal = v
        .secret
        .iter()
        .chain(v.secrets.iter().flatten())
        .any(|s| !s.starts_with("${"));
    if literal {
        notes.push(format!(
            "{loc}.verify: a literal secret is not printed; {LITERAL_SECRET_PLACEHOLDER} stands \
             in for it"
        ));
    }
    Ok(v.to_yaml(LITERAL_SECRET_PLACEHOLDER))
}

/// A route's literal `handshake.verify_token` replaced by [`LITERAL_SECRET_PLACEHOLDER`]
/// (with a note), as a literal secret is: whoever holds Meta's answers its challenge, and
/// eBay's answer is computed from it.
fn hide_literal_verify_token(route: &mut serde_yaml::Mapping, loc: &str, notes: &mut Vec<String>) {
    let Some(token) = route
        .get_mut("handshake")
        .and_then(|h| h.get_mut("verify_token"))
    else {
        return;
    };
    if token.as_str().is_some_and(|t| t.starts_with("${")) {
        return;
    }
    *token = LITERAL_SECRET_PLACEHOLDER.into();
    notes.push(format!(
        "{loc}.handshake.verify_token: a literal token is not printed; \
         {LITERAL_SECRET_PLACEHOLDER} stands in for it"
    ));
}

/// A route's compiled replay policy as a `replay:` block: key, TTL and store policy.
fn expand_replay(replay: &crate::model::ReplayPolicy) -> serde_yaml::Value {
    let key = match &replay.key {
        crate::model::KeySource::Header(h) => {
            file::RawReplayKey::Header(h.iter().map(|n| n.to_string()).collect())
        }
        crate::model::KeySource::Json(p) => file::RawReplayKey::Json(p.clone()),
        crate::model::KeySource::Signature => file::RawReplayKey::Signature,
    };
    let mut r = serde_yaml::Mapping::new();
    r.insert("key".into(), key.to_yaml());
    r.insert(
        "ttl".into(),
        humantime::format_duration(replay.ttl).to_string().into(),
    );
    r.insert(
        "on_store_error".into(),
        match replay.on_store_error {
            crate::model::OnStoreError::Reject => "reject",
            crate::model::OnStoreError::Allow => "allow",
        }
        .into(),
    );
    serde_yaml::Value::Mapping(r)
}

/// Store URLs may carry a password: a literal one is not printed either, but replaced by
/// [`LITERAL_URL_PLACEHOLDER`] (with a note).
fn hide_store_credentials(doc: &mut serde_yaml::Value, notes: &mut Vec<String>) {
    for store in ["replay_store", "queue_store"] {
        let Some(url) = doc.get_mut(store).and_then(|s| s.get_mut("url")) else {
            continue;
        };
        let credentials = url.as_str().is_some_and(|u| {
            !u.starts_with("${")
                && u.split_once("://")
                    .and_then(|(_, rest)| rest.split('/').next())
                    .is_some_and(|authority| authority.contains('@'))
        });
        if credentials {
            *url = LITERAL_URL_PLACEHOLDER.into();
            notes.push(format!(
                "{store}.url: a literal URL with credentials is not printed; \
                 {LITERAL_URL_PLACEHOLDER} stands in for it"
            ));
        }
    }
}
