//! `hookgate presets`: the preset table as people and tools read it. Each preset with its
//! expanded scheme, how strongly it checks its sender, its handshake, its replay key, whether
//! it needs the app's answer, and its evidence (published vectors, computed vectors, SDK
//! interop, named tests), or "from the documentation only" when it has none of the first
//! three. Text for people, `--json` for tools; a query keeps the presets whose name or
//! signature header contains it.

use serde_json::{json, Value};

use super::compile::preset_shape;
use super::presets::{self, Evidence, Package, Preset, ReplayKey};

/// The listing of the presets matching `query` (all without one), as text or JSON.
pub fn listing(query: Option<&str>, as_json: bool) -> Result<String, String> {
    let mut entries = Vec::new();
    for preset in presets::all() {
        let scheme = preset_shape(preset.name).map_err(|errors| {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            format!(
                "preset {} does not compile: {}",
                preset.name,
                text.join("; ")
            )
        })?;
        let headers: Vec<String> = scheme
            .signature
            .source
            .headers()
            .iter()
            .map(|h| h.to_string())
            .collect();
        let matches = query.is_none_or(|q| {
            let q = q.to_ascii_lowercase();
            preset.name.contains(&q)
                || preset.aliases.iter().any(|a| a.contains(&q))
                || headers.iter().any(|h| h.contains(&q))
        });
        if matches {
            entries.push((preset, scheme));
        }
    }
    if entries.is_empty() {
        return Err(format!(
            "no preset matches `{}`; `hookgate presets` lists them all",
            query.unwrap_or_default()
        ));
    }
    if as_json {
        let all: Vec<Value> = entries.iter().map(|(p, s)| as_value(p, s)).collect();
        return Ok(serde_json::to_string_pretty(&all).unwrap_or_default() + "\n");
    }
    Ok(entries.iter().map(|(p, s)| as_text(p, s)).collect())
}

fn as_text(preset: &Preset, scheme: &crate::scheme::Scheme) -> String {
    let mut out = format!("{}:\n", preset.name);
    if !preset.aliases.is_empty() {
        out += &format!("  aliases: {}\n", preset.aliases.join(", "));
    }
    out += &scheme.describe_shape("  ");
    if let Some(kind) = preset.handshake {
        out += &format!("  handshake: {} (answered by the gateway)\n", kind.name());
    }
    if let Some(key) = preset.replay_key {
        out += &format!("  replay key: {}\n", replay_key(key));
    }
    if let Some(why) = preset.needs_app_answer {
        out += &format!("  needs the app's answer: {why} (keep it sync)\n");
    }
    if let Some(body) = preset.acknowledgement {
        out += &format!("  acknowledgement: {body:?} (a queued route's answer)\n");
    }
    out += &format!("  evidence: {}\n", evidence_summary(preset.evidence));
    out
}

fn as_value(preset: &Preset, scheme: &crate::scheme::Scheme) -> Value {
    json!({
        "name": preset.name,
        "algorithm": scheme.algorithm.name(),
        "signature_headers": scheme.signature.source.headers().iter().map(|h| h.as_str()).collect::<Vec<_>>(),
        "checks": scheme.strength().label(),
        "scheme": scheme.describe_shape(""),
        "aliases": preset.aliases,
        "handshake": preset.handshake.map(|k| k.name()),
        "replay_key": preset.replay_key.map(replay_key),
        "needs_app_answer": preset.needs_app_answer,
        "acknowledgement": preset.acknowledgement,
        "evidence": preset.evidence.iter().map(evidence_value).collect::<Vec<_>>(),
        "documentation_only": documentation_only(preset.evidence),
    })
}

fn replay_key(key: ReplayKey) -> String {
    match key {
        ReplayKey::Header(names) => format!("header {}", names.join(" or ")),
        ReplayKey::Json(pointer) => format!("JSON field {pointer}"),
    }
}

/// Neither the sender's own published vectors nor its SDK: the scheme rests on the sender's
/// documentation alone (vectors computed from it prove the engine does what it says, not
/// that it says what the sender does).
fn documentation_only(evidence: &[Evidence]) -> bool {
    !evidence.iter().any(|e| match e {
        Evidence::Vectors { published, .. } => !published.is_empty(),
        Evidence::Sdk { .. } => true,
        Evidence::Test { .. } => false,
    })
}

fn evidence_summary(evidence: &[Evidence]) -> String {
    let items: Vec<String> = evidence
        .iter()
        .map(|e| match e {
            Evidence::Vectors {
                file,
                published: [],
            } => {
                format!("computed vectors ({file})")
            }
            Evidence::Vectors { file, published } => format!(
                "the sender's published vectors ({} source{}) in {file}",
                published.len(),
                if published.len() == 1 { "" } else { "s" }
            ),
            Evidence::Sdk { package, check } => format!("SDK {} ({check})", package_name(package)),
            Evidence::Test { name, .. } => format!("test {name}"),
        })
        .collect();
    if documentation_only(evidence) {
        format!("from the documentation only ({})", items.join("; "))
    } else {
        items.join("; ")
    }
}

fn evidence_value(e: &Evidence) -> Value {
    match e {
        Evidence::Vectors { file, published } => {
            json!({ "kind": "vectors", "file": file, "published": published })
        }
        Evidence::Sdk { package, check } => {
            json!({ "kind": "sdk", "package": package_name(package), "check": check })
        }
        Evidence::Test { file, name } => json!({ "kind": "test", "file": file, "name": name }),
    }
}

fn package_name(package: &Package) -> String {
    match package {
        Package::PyPi(name) => format!("{name} (PyPI)"),
        Package::Npm(name) => format!("{name} (npm)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_keeps_the_matching_presets_and_json_says_the_same() {
        let text = listing(Some("stripe"), false).unwrap();
        assert!(text.starts_with("stripe:\n"), "{text}");
        assert!(text.contains("evidence: computed vectors"), "{text}");
        assert!(!text.contains("github:"));
        // By signature header too.
        let by_header = listing(Some("x-hub-signature-256"), false).unwrap();
        assert!(by_header.starts_with("github:\n"), "{by_header}");
        let all: Value = serde_json::from_str(&listing(None, true).unwrap()).unwrap();
        let all = all.as_array().unwrap();
        assert_eq!(all.len(), presets::all().len());
        let slack = all.iter().find(|p| p["name"] == "slack").unwrap();
        assert_eq!(slack["handshake"], "slack");
        assert_eq!(slack["checks"], "signature");
        let gitlab = all.iter().find(|p| p["name"] == "gitlab").unwrap();
        assert_eq!(gitlab["checks"], "shared_secret");
        assert!(listing(Some("no-such-sender"), false).is_err());
    }
}
