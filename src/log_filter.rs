//! `HOOKGATE_LOG`: which log lines are written. A value that names nothing valid is an
//! error, never silence: tracing's own filter syntax reads `warning` as "everything from a
//! module named `warning`", which turned off every line an operator wanted to see.

/// The levels a directive may name.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a filter: comma-separated directives, each a level (`warn`) or `target=level`
/// (`hookgate=debug`, `hyper=warn`), levels as in [`LEVELS`] in any case, with at least one
/// default level. Returns it as is, or what is wrong and what would be right.
pub fn check(filter: &str) -> Result<&str, String> {
    if filter.trim().is_empty() {
        return Err("empty; use a level: trace, debug, info, warn, error or off".into());
    }
    for directive in filter.split(',').map(str::trim) {
        let (target, level) = match directive.split_once('=') {
            Some((t, l)) => (Some(t), l),
            None => (None, directive),
        };
        if let Some(t) = target {
            let ok = !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
            if !ok {
                return Err(format!(
                    "`{directive}`: `{t}` is not a module path (e.g. hookgate or hyper)"
                ));
            }
        }
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(format!(
                "`{directive}`: `{level}` is not a level; use trace, debug, info, warn, error \
                 or off (optionally as target=level)"
            ));
        }
    }
    // Without a default level every target the filter does not name is off: `hyper=warn`
    // alone, or `Hookgate=warn` (targets are matched case-sensitively), would silence
    // hookgate's own lines, refusals included.
    if filter.split(',').all(|d| d.contains('=')) {
        return Err(format!(
            "`{filter}` sets no default level, so every other line would be off; add one, \
             e.g. `warn,{filter}`"
        ));
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_targets_are_checked() {
        for ok in [
            "info",
            "WARN",
            "off",
            "warn,hookgate=debug",
            "info,hyper::proto=trace",
        ] {
            assert_eq!(check(ok), Ok(ok), "{ok}");
        }
        for bad in [
            "warning",
            "",
            " ",
            "verbose",
            "hookgate=loud",
            "=info",
            "a b=info",
            "info,",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        assert!(check("warning")
            .unwrap_err()
            .contains("`warning` is not a level"));
    }
}
