//! The crate's layering, checked: no import cycle between modules, and the layers `lib.rs`
//! draws (model <- runtime <- server/gateway <- reload, config compile <- main) hold; and no
//! function over about 80 lines outside flat tables.
//!
//! The module graph is read from the source: every module (each `.rs` file) is a node, and
//! a path that names another module (`crate::a::b::Item`, `super::x`, a child `x::Item`,
//! each name of a `use crate::a::{b, c::d}` list) is an edge to the deepest module it names.
//! Test code (`#[cfg(test)]` and the `tests.rs` files) and comments are left out: a test may
//! reach anywhere. A module's use of its own ancestors (`super::Item`, a parent's re-export)
//! is not an edge: a directory module and its files are one family whose `mod.rs` is its
//! front, and Rust has each file see its parent. Every other use must point down the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`delivery::store`) -> the modules it uses.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/delivery/store.rs` -> `delivery::store`; `src/model/mod.rs` -> `model`; `lib.rs` and
/// `main.rs` -> `` (the crate root, not a module of its own here).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("a file under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The source without comments and without its test code.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            // Not a `//` inside a string literal such as "http://..." (an odd count of
            // quotes before it).
            Some(i) if line[..i].matches('"').count() % 2 == 0 => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The path segments that follow `at` in `code` (`a::b::{c, d::e}` gives [a, b] and the
/// braced list's entries, each as its own path).
fn paths_after(code: &str, at: usize) -> Vec<Vec<String>> {
    let rest = &code[at..];
    let mut segments = Vec::new();
    let mut s = rest;
    while let Some(after) = s.strip_prefix("::") {
        let after = after.trim_start();
        if let Some(list) = after.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            return list[..end]
                .split(',')
                .map(|item| {
                    let mut path = segments.clone();
                    path.extend(
                        item.split("::")
                            .map(|p| p.trim().to_owned())
                            .filter(|p| !p.is_empty()),
                    );
                    path
                })
                .collect();
        }
        let len = after.find(|c: char| !is_ident(c)).unwrap_or(after.len());
        if len == 0 {
            break;
        }
        segments.push(after[..len].to_owned());
        s = &after[len..];
    }
    vec![segments]
}

/// The deepest module of `modules` that `path` names, if any.
fn resolve(modules: &BTreeSet<String>, path: &[String]) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

fn graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut graph = Graph::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let me = module_of(file);
        if me.is_empty() || name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let code = code_of(&text);
        let parent: Vec<String> = me
            .split("::")
            .map(str::to_owned)
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, p)| p.to_vec())
            .unwrap_or_default();
        let children: Vec<String> = modules
            .iter()
            .filter_map(|m| m.strip_prefix(&format!("{me}::")))
            .filter(|rest| !rest.contains("::"))
            .map(str::to_owned)
            .collect();
        let mut uses = BTreeSet::new();
        for (i, _) in code.match_indices("::") {
            // The identifier just before this `::`.
            let start = code[..i].rfind(|c: char| !is_ident(c)).map_or(0, |p| p + 1);
            let head = &code[start..i];
            // Part of a longer path (`a::b` seen at `b`): handled from its start.
            if code[..start].ends_with("::") || head.is_empty() {
                continue;
            }
            let base: Vec<String> = match head {
                "crate" => Vec::new(),
                "super" => parent.clone(),
                "self" => me.split("::").map(str::to_owned).collect(),
                child if children.iter().any(|c| c == child) => {
                    let mut b: Vec<String> = me.split("::").map(str::to_owned).collect();
                    b.push(child.to_owned());
                    b
                }
                _ => continue,
            };
            // A bare child name names the child itself, even with nothing after it.
            let mut found: Vec<Vec<String>> = paths_after(&code, i)
                .into_iter()
                .map(|tail| base.iter().cloned().chain(tail).collect())
                .collect();
            found.push(base.clone());
            for path in found {
                if let Some(target) = resolve(&modules, &path) {
                    if target != me && !within(&me, &target) {
                        uses.insert(target);
                    }
                }
            }
        }
        graph.insert(me, uses);
    }
    graph
}

/// A cycle through `start`, if there is one, as the modules along it.
fn cycle_from(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let graph = graph();
    assert!(graph.len() > 30, "the module graph was read: {graph:?}");
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// Whether `module` is `layer` or inside it.
fn within(module: &str, layer: &str) -> bool {
    module == layer || module.starts_with(&format!("{layer}::"))
}

#[test]
fn the_layers_lib_rs_draws_hold() {
    let graph = graph();
    let uses = |m: &str| -> Vec<String> {
        graph
            .iter()
            .filter(|(k, _)| within(k, m))
            .flat_map(|(_, v)| v.iter().cloned())
            .filter(|t| !within(t, m))
            .collect()
    };
    // The model: the compiled configuration, below every runtime module; it knows only the
    // scheme engine its routes hold.
    for used in uses("model") {
        assert!(within(&used, "scheme"), "model uses {used}");
    }
    // The scheme engine is pure: no configuration, no runtime.
    for used in uses("scheme") {
        assert!(within(&used, "body"), "scheme uses {used}");
    }
    // The runtime's modules see the compiled model, never the file or its compiler.
    for m in [
        "runtime",
        "server",
        "gateway",
        "admin",
        "forward",
        "upstream",
        "replay",
        "body",
        "metrics",
        "delivery::worker",
        "delivery::store",
        "delivery::embedded",
        "delivery::postgres",
    ] {
        for used in uses(m) {
            assert!(!within(&used, "config"), "{m} uses {used}");
        }
    }
    // runtime.rs holds state and is below everything that serves.
    for used in uses("runtime") {
        for above in ["server", "gateway", "admin", "reload", "delivery::worker"] {
            assert!(!within(&used, above), "runtime uses {used}");
        }
    }
    // The reload drives the server, not the other way round.
    for m in ["server", "gateway", "admin", "runtime"] {
        assert!(!uses(m).iter().any(|u| u == "reload"), "{m} uses reload");
    }
}

/// The functions of `text` (test code and comments left out) longer than `max` lines, as
/// `(name, lines)`. A function runs from its `fn` line to the brace that closes its body;
/// braces in string and char literals are not counted.
fn long_functions(text: &str, max: usize) -> Vec<(String, usize)> {
    let lines: Vec<String> = code_of(text)
        .lines()
        .map(|l| {
            let mut out = String::new();
            let mut in_str = false;
            let mut chars = l.chars().peekable();
            while let Some(c) = chars.next() {
                match (in_str, c) {
                    (true, '\\') => {
                        chars.next();
                    }
                    (_, '"') => in_str = !in_str,
                    (false, '\'') if chars.clone().nth(1) == Some('\'') => {
                        chars.next();
                        chars.next();
                    }
                    (false, c) => out.push(c),
                    (true, _) => {}
                }
            }
            out
        })
        .collect();
    let mut long = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = line.find("fn ") else { continue };
        let before = line[..at].trim();
        let words_ok = before.split_whitespace().all(|w| {
            matches!(
                w,
                "pub" | "pub(crate)" | "pub(super)" | "async" | "const" | "unsafe"
            )
        });
        if !words_ok {
            continue;
        }
        let name: String = line[at + 3..]
            .chars()
            .take_while(|c| is_ident(*c))
            .collect();
        let (mut depth, mut opened) = (0i64, false);
        for (j, l) in lines.iter().enumerate().skip(i) {
            if !opened && l.contains(';') && !l.contains('{') {
                break; // a declaration without a body
            }
            for c in l.chars() {
                match c {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                if j - i + 1 > max {
                    long.push((name.clone(), j - i + 1));
                }
                break;
            }
        }
    }
    long
}

/// No function is over about 80 lines: a long function mixes decisions with I/O and hides
/// the phases a newcomer looks for. Flat tables are the exception: the metric definitions,
/// one registration after another.
#[test]
fn no_function_is_longer_than_80_lines_outside_flat_tables() {
    let tables = [("metrics", "new")];
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut long = Vec::new();
    for file in files {
        if file
            .file_name()
            .is_some_and(|n| n == "tests.rs" || n.to_string_lossy().ends_with("_tests.rs"))
        {
            continue;
        }
        let module = module_of(&file);
        let text = std::fs::read_to_string(&file).expect("a source file is readable");
        for (name, lines) in long_functions(&text, 80) {
            if !tables.contains(&(module.as_str(), name.as_str())) {
                long.push(format!("{module}::{name} ({lines} lines)"));
            }
        }
    }
    assert!(long.is_empty(), "functions over 80 lines: {long:?}");
}

#[test]
fn a_function_is_measured_from_its_fn_line_to_its_closing_brace() {
    let text = "pub async fn short() {\n    let s = \"}\";\n}\nfn long() {\n    a();\n    b();\n}\nfn decl();\n";
    assert_eq!(long_functions(text, 3), [("long".to_owned(), 4)]);
    assert_eq!(long_functions(text, 4), []);
}
