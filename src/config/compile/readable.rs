//! Reading the file's YAML so that every type error is reported, not only the first one serde
//! stops at: the readable rest of a file that does not deserialize as a whole, and each
//! route read on its own with every broken field located.

use serde_yaml::{Mapping, Value};

use crate::config::file::{RawConfig, RawRoute};
use crate::config::ConfigError;

/// For a file that does not deserialize as a whole: every type error in it (not only the first
/// one serde stops at), and the rest of the file without what failed (a field of a top-level
/// block, or the whole key), with the names of what was left out, so that the compile goes on
/// and reports the file's other errors and its warnings in the same pass. `Err`: not even that
/// much reads (not YAML, not a mapping).
pub(super) fn readable_part(
    text: &str,
    e: &serde_yaml::Error,
) -> Result<(RawConfig, Vec<ConfigError>, Vec<String>), Vec<ConfigError>> {
    let whole = || ConfigError {
        location: yaml_location(e),
        message: e.to_string(),
    };
    let Ok(doc) = serde_yaml::from_str::<Mapping>(text) else {
        return Err(vec![whole()]);
    };
    let mut errors = Vec::new();
    type_errors::<RawConfig>(
        &Mapping::new(),
        &[],
        &Value::Mapping(doc.clone()),
        None,
        &mut errors,
    );
    match errors.as_mut_slice() {
        [] => errors.push(whole()),
        // The one error serde stopped at also knows its line and column: keep them.
        [one] => {
            // Without the path serde puts first: the location says it already.
            let message = e.to_string();
            one.message = match message.split_once(": ") {
                Some((path, rest)) if is_under(&one.location, path) => rest.to_owned(),
                _ => message,
            };
        }
        _ => {}
    }
    let (rest, unread) = without_unreadable(doc);
    match serde_yaml::to_string(&rest).map(|t| serde_yaml::from_str::<RawConfig>(&t)) {
        Ok(Ok(raw)) => Ok((raw, errors, unread)),
        _ => Err(errors),
    }
}

/// The document without what fails to read: of a block (`limits:`) only the fields that fail,
/// as long as the rest of it reads, else the whole key. Returns it with the names of what was
/// left out (`limits.max_body_bytes`, `listeners`).
fn without_unreadable(doc: Mapping) -> (Mapping, Vec<String>) {
    let mut rest = Mapping::new();
    let mut unread = Vec::new();
    for (key, mut value) in doc {
        // Not a field name: reported as an unknown field, and nothing to compile.
        let Some(name) = key.as_str().map(str::to_owned) else {
            continue;
        };
        let read = loop {
            let field = match failure(&key, &value) {
                None => break true,
                Some(field) => field,
            };
            let removed = field.as_ref().is_some_and(|f| {
                value
                    .as_mapping_mut()
                    .is_some_and(|m| m.remove(f.as_str()).is_some())
            });
            match field {
                Some(f) if removed => unread.push(format!("{name}.{f}")),
                _ => break false,
            }
        };
        if read {
            rest.insert(key, value);
        } else {
            unread.push(name);
        }
    }
    (rest, unread)
}

/// Whether one top-level key reads alone, read from text as the whole file is (where `30`
/// may be a string). `None`: it reads; `Some(field)`: it fails, at this field of the block if
/// one is named.
fn failure(key: &Value, value: &Value) -> Option<Option<String>> {
    let mut alone = Mapping::new();
    alone.insert(key.clone(), value.clone());
    let text = serde_yaml::to_string(&alone).ok()?;
    let e =
        serde_path_to_error::deserialize::<_, RawConfig>(serde_yaml::Deserializer::from_str(&text))
            .err()?;
    Some(match e.path().iter().nth(1) {
        Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
        _ => None,
    })
}

/// Whether `location` (`limits.upstream_timeout`, `listeners[0].addr`) is `key` or below it.
pub(super) fn is_under(location: &str, key: &str) -> bool {
    location
        .strip_prefix(key)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// `routes[i] (name)`, or `routes[i]` for a route without a readable name.
pub(super) fn route_label(i: usize, value: &serde_yaml::Value) -> String {
    value
        .get("name")
        .and_then(|n| n.as_str())
        .map(|n| format!("routes[{i}] ({n})"))
        .unwrap_or_else(|| format!("routes[{i}]"))
}

/// One route as the file has it, or every field that is wrong (each located; serde alone
/// would stop at the first).
pub(super) fn raw_route(
    value: &serde_yaml::Value,
    label: &str,
) -> Result<RawRoute, Vec<ConfigError>> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let mut found = Vec::new();
        if let Some(m) = value.as_mapping() {
            for (key, inner) in m {
                type_errors::<RawRoute>(
                    &route_stand_ins(),
                    std::slice::from_ref(key),
                    inner,
                    Some(label),
                    &mut found,
                );
            }
            // A required field missing from the route itself.
            if found.is_empty() {
                let mut required = route_stand_ins();
                required.retain(|k, _| !m.contains_key(k));
                for (k, _) in required {
                    found.push(ConfigError {
                        location: label.to_owned(),
                        message: format!("missing field `{}`", k.as_str().unwrap_or_default()),
                    });
                }
            }
        }
        if found.is_empty() {
            found.push(route_error(e, label));
        }
        found
    })
}

/// A route's deserialization error, located inside the route. serde quotes the offending
/// value; for a secret that would print it, so secrets get a message of their own.
fn route_error(e: serde_path_to_error::Error<serde_yaml::Error>, label: &str) -> ConfigError {
    let path = e.path().to_string();
    let location = if path == "." {
        label.to_owned()
    } else {
        format!("{label}.{path}")
    };
    let message = if path.contains("secret") {
        "must be a quoted string (\"${ENV_VAR}\" or a literal)".to_string()
    } else {
        e.into_inner().to_string()
    };
    ConfigError { location, message }
}

/// Every type error in a YAML mapping, not only the first one serde stops at. `value`, at
/// `path` below the root, is deserialized into `T` alone beside `base` (stand-ins for the
/// root's required fields, so a lone key is not blamed for their absence); when that fails
/// and `value` is a mapping, each of its keys is tried alone the same way, deeper first. A
/// lone key failing only because a mapping above it misses a field is not blamed: that
/// error is reported once, for the mapping that lacks the field. `label` locates a route's keys (and
/// hides secret values); top-level keys are their own location.
fn type_errors<T: serde::de::DeserializeOwned>(
    base: &serde_yaml::Mapping,
    path: &[serde_yaml::Value],
    value: &serde_yaml::Value,
    label: Option<&str>,
    out: &mut Vec<ConfigError>,
) {
    // The document to try: `base`, with `value` at `path` (or merged into the root).
    let mut doc = base.clone();
    match path.split_first() {
        None => {
            if let Some(m) = value.as_mapping() {
                doc.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        Some((first, rest)) => {
            let nested = rest.iter().rev().fold(value.clone(), |inner, key| {
                let mut m = Mapping::new();
                m.insert(key.clone(), inner);
                Value::Mapping(m)
            });
            doc.insert(first.clone(), nested);
        }
    }
    let Err(e) = serde_path_to_error::deserialize::<_, T>(Value::Mapping(doc)) else {
        return;
    };
    // A field missing from a mapping above this key (only this key was put there).
    let above = e.path().iter().count() < path.len();
    if let Some(m) = value.as_mapping().filter(|m| !m.is_empty()) {
        let before = out.len();
        for (key, inner) in m {
            let mut deeper = path.to_vec();
            deeper.push(key.clone());
            type_errors::<T>(base, &deeper, inner, label, out);
        }
        if out.len() > before {
            return;
        }
    }
    let error = match label {
        Some(label) => route_error(e, label),
        None => {
            let location = e.path().to_string();
            ConfigError {
                location: if location == "." {
                    "gateway.yaml".to_owned()
                } else {
                    location
                },
                message: e.into_inner().to_string(),
            }
        }
    };
    if above && error.message.starts_with("missing field") {
        return;
    }
    if !out.contains(&error) {
        out.push(error);
    }
}

/// Stand-ins for a route's required fields, for trying its other keys alone.
fn route_stand_ins() -> serde_yaml::Mapping {
    let mut m = serde_yaml::Mapping::new();
    m.insert("name".into(), "x".into());
    m.insert("path".into(), "/x".into());
    m.insert("upstream".into(), "http://x".into());
    m
}

fn yaml_location(e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(l) => format!("line {} column {}", l.line(), l.column()),
        None => "gateway.yaml".into(),
    }
}
