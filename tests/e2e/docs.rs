//! The documentation against what it describes. Every relative link in `README.md` and
//! `docs/*.md` (and in the Markdown files they link to) names a file that exists, and every
//! `#anchor` a heading of its target, as GitHub renders it. The counts a reader cannot check
//! by eye (presets, metrics, alerts, dashboard panels) are written as "26 presets",
//! "11 alerts", ...: every such number in the documentation is compared with its source, and
//! the tables that list presets, metrics and alerts name exactly what the sources have.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Component, Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The pages a reader starts from: the README and every page under `docs/`.
fn entry_pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ has no pages");
    pages.extend(docs);
    pages
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The lines of a Markdown text that are not inside a fenced code block, with their numbers
/// (from 1).
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => lines.push((i + 1, line)),
            _ => {}
        }
    }
    lines
}

/// A line with its inline code spans (`` `...` ``) replaced by a placeholder: a link written
/// inside backticks is text, not a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let fence = &rest[start..start + ticks];
        match rest[start + ticks..].find(fence) {
            Some(len) => {
                out.push_str("code");
                rest = &rest[start + ticks + len + ticks..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The targets of the inline links (`[text](target)`) of a line.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        // `[text](<target with spaces>)`, or `[text](target "title")`: the title is not
        // part of the target.
        let (target, end) = match after.strip_prefix('<') {
            Some(inner) => match inner.find('>') {
                Some(close) => (&inner[..close], close + 2),
                None => break,
            },
            None => match after.find(')') {
                Some(close) => (
                    after[..close].split_whitespace().next().unwrap_or(""),
                    close,
                ),
                None => break,
            },
        };
        targets.push(target.to_owned());
        rest = &after[end..];
    }
    targets
}

/// A heading's anchor as GitHub makes it: the text without its inline markup, lower-cased,
/// spaces to `-`, every character other than a letter, a digit, `-` or `_` dropped.
fn slug(heading: &str) -> String {
    // A link in a heading keeps only its text.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(at) = rest.find("](") {
        let Some(end) = rest[at..].find(')') else {
            break;
        };
        text.push_str(&rest[..at]);
        rest = &rest[at + end + 1..];
    }
    text.push_str(rest);
    text.trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every anchor a Markdown text's headings make (a repeated heading gets `-1`, `-2`, ...).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    anchors
}

/// `base/rel` with `.` and `..` resolved by hand (the target may not exist, so no
/// canonicalize).
fn resolve(base: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Every broken relative link and anchor in `pages` and in the repository's Markdown files
/// they lead to, as `file:line: problem` lines.
fn broken_links(pages: Vec<PathBuf>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut queue: VecDeque<PathBuf> = pages.into();
    let mut visited = BTreeSet::new();
    while let Some(page) = queue.pop_front() {
        if !visited.insert(page.clone()) {
            continue;
        }
        let text = read(&page);
        let dir = page.parent().expect("a page is in a directory");
        for (number, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let at = format!("{}:{number}: ({target})", shown(&page));
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let file = if path.is_empty() {
                    page.clone()
                } else if path.starts_with('/') {
                    problems.push(format!(
                        "{at}: a link from the root of the site, not relative"
                    ));
                    continue;
                } else {
                    resolve(dir, path)
                };
                if !file.starts_with(repo()) {
                    problems.push(format!("{at}: outside the repository"));
                    continue;
                }
                if !file.exists() {
                    problems.push(format!("{at}: {} does not exist", shown(&file)));
                    continue;
                }
                let is_markdown = file.extension().is_some_and(|e| e == "md");
                if let Some(anchor) = anchor {
                    if !is_markdown {
                        problems.push(format!("{at}: an anchor into a file that is not Markdown"));
                    } else if !anchors(&read(&file)).contains(anchor) {
                        problems.push(format!(
                            "{at}: no heading of {} makes the anchor #{anchor}",
                            shown(&file)
                        ));
                    }
                }
                if is_markdown {
                    queue.push_back(file);
                }
            }
        }
    }
    problems
}

#[test]
fn docs_links_and_anchors_resolve() {
    let problems = broken_links(entry_pages());
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Counts

/// The kinds of things whose number the documentation states, as the word after the number.
const COUNTED: [&str; 4] = ["presets", "metrics", "alerts", "panels"];

/// Metric names defined in `src/metrics.rs`: its string literals `"hookgate_..."` and
/// `"process_..."` outside comments.
fn metric_names() -> BTreeSet<String> {
    let source = read(&repo().join("src/metrics.rs"));
    let mut names = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, piece) in code.split('"').enumerate() {
            // Odd pieces are inside quotes.
            let is_name = i % 2 == 1
                && (piece.starts_with("hookgate_") || piece.starts_with("process_"))
                && piece
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if is_name {
                names.insert(piece.to_owned());
            }
        }
    }
    names
}

/// Alert names in the Prometheus rule files under `deploy/prometheus/` (`groups[].rules[]`
/// with an `alert`; the rules' test file has no `groups`).
fn alert_names() -> Vec<String> {
    let dir = repo().join("deploy/prometheus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/prometheus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut names = Vec::new();
    for file in files {
        let doc: serde_yaml::Value = serde_yaml::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for group in doc["groups"].as_sequence().into_iter().flatten() {
            for rule in group["rules"].as_sequence().into_iter().flatten() {
                if let Some(name) = rule["alert"].as_str() {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names
}

/// Panels of the Grafana dashboard, rows not counted (a row only groups panels; a collapsed
/// row holds its panels inside it).
fn dashboard_panels() -> usize {
    fn count(panels: &serde_json::Value) -> usize {
        panels
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| usize::from(p["type"] != "row") + count(&p["panels"]))
            .sum()
    }
    let path = repo().join("deploy/grafana/hookgate.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&path)).expect("the dashboard is JSON");
    count(&dashboard["panels"])
}

/// What the sources say: kind -> number.
fn true_counts() -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("presets", hookgate::config::presets::all().len()),
        ("metrics", metric_names().len()),
        ("alerts", alert_names().len()),
        ("panels", dashboard_panels()),
    ])
}

/// Every "N presets", "N metrics", "N alerts", "N panels" in a page's prose: (line, kind, N).
fn stated_counts(text: &str) -> Vec<(usize, &'static str, usize)> {
    let mut stated = Vec::new();
    for (number, line) in prose_lines(text) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            let n = pair[0].trim_start_matches(['*', '_', '(']).replace(',', "");
            let kind = pair[1].trim_end_matches(|c: char| !c.is_ascii_alphabetic());
            let kind = COUNTED.into_iter().find(|k| *k == kind);
            if let (Ok(n), Some(kind)) = (n.parse::<usize>(), kind) {
                stated.push((number, kind, n));
            }
        }
    }
    stated
}

#[test]
fn docs_counts_match_their_sources() {
    let truth = true_counts();
    let mut problems = Vec::new();
    let mut stated_kinds = BTreeSet::new();
    for page in entry_pages() {
        for (line, kind, n) in stated_counts(&read(&page)) {
            stated_kinds.insert(kind);
            if n != truth[kind] {
                problems.push(format!(
                    "{}:{line}: says {n} {kind}; there are {}",
                    shown(&page),
                    truth[kind]
                ));
            }
        }
    }
    for kind in COUNTED {
        if !stated_kinds.contains(kind) {
            problems.push(format!(
                "no page states the number of {kind} (\"{} {kind}\")",
                truth[kind]
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The names in the first column (`` | `name` | ``) of the tables in a page's section.
fn first_column(page: &str, heading: &str) -> Vec<String> {
    let text = read(&repo().join(page));
    let mut in_section = false;
    let mut names = Vec::new();
    for (_, line) in prose_lines(&text) {
        if line.starts_with('#') {
            in_section = line.trim_start_matches('#').trim() == heading;
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some(cell) = line.strip_prefix("| `") {
            if let Some(end) = cell.find('`') {
                names.push(cell[..end].to_owned());
            }
        }
    }
    assert!(!names.is_empty(), "{page}, \"{heading}\": no table found");
    names
}

#[test]
fn docs_tables_list_every_preset_metric_and_alert() {
    let presets: Vec<String> = hookgate::config::presets::names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        first_column("docs/presets.md", "The presets"),
        presets,
        "docs/presets.md lists the presets of src/config/presets.rs, in its order"
    );

    let documented: BTreeSet<String> = first_column("docs/metrics-and-logs.md", "Metrics")
        .into_iter()
        .collect();
    let defined = metric_names();
    assert_eq!(
        documented.difference(&defined).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "docs/metrics-and-logs.md lists metrics src/metrics.rs does not define"
    );
    assert_eq!(
        defined.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "src/metrics.rs defines metrics docs/metrics-and-logs.md does not list"
    );

    assert_eq!(
        first_column("docs/metrics-and-logs.md", "Alerts"),
        alert_names(),
        "docs/metrics-and-logs.md lists the alerts of deploy/prometheus/, in their order"
    );
}

#[test]
fn github_anchors_are_made_as_github_makes_them() {
    for (heading, anchor) in [
        (" `verify`: the generic scheme", "verify-the-generic-scheme"),
        (
            " Proven against the providers' own SDKs",
            "proven-against-the-providers-own-sdks",
        ),
        (" Config & TLS", "config--tls"),
        (" snake_case and CAPS", "snake_case-and-caps"),
        (" A [linked](x.md) heading", "a-linked-heading"),
    ] {
        assert_eq!(slug(heading), anchor, "{heading:?}");
    }
    assert_eq!(
        anchors("# A\n```\n# not a heading\n```\n## A\n"),
        BTreeSet::from(["a".to_owned(), "a-1".to_owned()])
    );
    assert_eq!(
        link_targets("see [a](a.md#x), `[b](b.md)` and [c](<c d.md> \"title\")"),
        vec!["a.md#x".to_owned(), "c d.md".to_owned()]
    );
}

/// docs/presets.md's SDK table names exactly the presets whose evidence (src/config/presets.rs)
/// has an SDK check, each with its package and registry; every other preset is named in that
/// section as having none.
#[test]
fn docs_sdk_table_matches_each_presets_evidence() {
    use hookgate::config::presets::{self, Evidence, Package};
    let text = read(&repo().join("docs/presets.md"));
    let heading = "## Proven against the providers' own SDKs";
    let start = text
        .find(heading)
        .expect("docs/presets.md has the SDK section");
    let section = &text[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    // preset -> its row
    let mut rows = BTreeMap::new();
    for (_, line) in prose_lines(section) {
        if let Some(first) = line
            .strip_prefix("| `")
            .and_then(|_| line.split('|').nth(1))
        {
            for name in first.split('`').skip(1).step_by(2) {
                rows.insert(name.to_owned(), line);
            }
        }
    }
    let mut problems = Vec::new();
    for p in presets::all() {
        let package = p.evidence.iter().find_map(|e| match e {
            Evidence::Sdk { package, .. } => Some(*package),
            _ => None,
        });
        match (package, rows.get(p.name)) {
            (Some(package), Some(row)) => {
                let cited = match package {
                    Package::PyPi(name) => format!("{name} (PyPI)"),
                    Package::Npm(name) => format!("{name} (npm)"),
                };
                if !row.contains(&cited) {
                    problems.push(format!("{}: its row does not cite {cited}", p.name));
                }
            }
            (Some(_), None) => problems.push(format!("{}: has an SDK check, no row", p.name)),
            (None, Some(_)) => problems.push(format!("{}: a row, but no SDK evidence", p.name)),
            (None, None) => {
                if !section.contains(&format!("`{}`", p.name)) {
                    problems.push(format!("{}: not said to have no SDK", p.name));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
