//! A route's `upstream:` URL and its `upstream_tls:` (trust roots, client certificate, the
//! name to verify), and the keep-alive pool it shares.

use std::path::{Path, PathBuf};

use http::uri::Authority;

use super::Report;
use crate::config::file::RawUpstreamTls;
use crate::config::secret;
use crate::model::{Upstream, UpstreamTls};

pub(super) fn parse_upstream(
    s: &str,
    tls: Option<&RawUpstreamTls>,
    base: &Path,
    loc: &str,
    r: &mut Report,
) -> Option<Upstream> {
    let (https, authority, base_path) = parse_upstream_url(s, loc, r)?;
    let tls_loc = loc.replace(".upstream", ".upstream_tls");
    let (tls, pool_key) = match (https, tls) {
        (false, Some(_)) => {
            r.error(
                &tls_loc,
                "set for an http:// upstream; use https:// to use TLS",
            );
            return None;
        }
        (false, None) => (None, format!("http://{authority}")),
        (true, raw) => {
            let tls = upstream_tls(&authority, raw, base, &tls_loc, r)?;
            // Routes share a pool only with the same TLS settings, by content: a CA or client
            // certificate replaced in place and reloaded must not keep serving connections
            // set up under the old one.
            let key = format!("https://{authority}#{}", tls.fingerprint);
            (Some(tls), key)
        }
    };
    Some(Upstream {
        authority,
        base_path,
        tls,
        pool_key,
    })
}

/// `http(s)://host[:port][/base]`: whether it is https, its authority and its base path
/// (without a trailing `/`).
fn parse_upstream_url(s: &str, loc: &str, r: &mut Report) -> Option<(bool, Authority, String)> {
    let uri: http::Uri = match s.parse() {
        Ok(u) => u,
        Err(e) => {
            r.error(loc, format!("`{s}` is not a URL: {e}"));
            return None;
        }
    };
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            r.error(
                loc,
                format!("`{s}`: upstream must be an http:// or https:// URL (the app behind the gateway)"),
            );
            return None;
        }
    };
    if uri.query().is_some() {
        r.error(loc, "upstream URL must not have a query");
        return None;
    }
    let Some(authority) = uri.authority().cloned().filter(|a| !a.host().is_empty()) else {
        r.error(loc, format!("`{s}` has no host"));
        return None;
    };
    if authority.as_str().contains('@') {
        r.error(
            loc,
            "credentials in the upstream URL are not supported (they would never be sent)",
        );
        return None;
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    if !base_path.is_empty() && !crate::model::routes::is_clean_path(&base_path) {
        r.error(
            loc,
            format!(
                "upstream path `{}` is not a normalized absolute path",
                uri.path()
            ),
        );
        return None;
    }
    Some((https, authority, base_path))
}

/// `upstream_tls:` (or its defaults: the system's roots, the URL's host) for an https://
/// upstream; its files are relative to `base`.
fn upstream_tls(
    authority: &Authority,
    raw: Option<&RawUpstreamTls>,
    base: &Path,
    tls_loc: &str,
    r: &mut Report,
) -> Option<UpstreamTls> {
    let default = RawUpstreamTls::default();
    let raw = raw.unwrap_or(&default);
    let mut file = |p: &Option<PathBuf>| p.as_ref().map(|p| r.file(base.join(p)));
    let ca_file = file(&raw.ca_file);
    let client_cert_file = file(&raw.client_cert_file);
    let client_key_file = file(&raw.client_key_file);
    let tls = crate::tls::upstream_config(
        authority.host(),
        raw.server_name.as_deref(),
        ca_file.as_deref(),
        client_cert_file.as_deref(),
        client_key_file.as_deref(),
    );
    match tls {
        Ok(tls) => {
            if let Some(exposed) = client_key_file.as_deref().and_then(secret::exposure) {
                r.warn(format!("{tls_loc}.client_key_file"), exposed);
            }
            Some(tls)
        }
        Err(e) => {
            r.error(tls_loc, e);
            None
        }
    }
}
