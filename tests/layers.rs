//! The house in order. No import circles in the service or the simulator:
//! drawn from each file's `crate::` and `super::` paths (test modules left
//! out), no file reaches itself again; a circle means a lower layer knows a
//! higher one (the README's Layout names the layers), and the test prints
//! the files of each circle. And no source file over 400 lines.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Module path (`amocrm/directory`) -> source without its tests.
fn modules(dir: &Path, base: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            modules(&path, base, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(base).unwrap().with_extension("");
        let mut name = rel.to_string_lossy().replace('\\', "/");
        if let Some(parent) = name.strip_suffix("/mod") {
            name = parent.to_owned();
        }
        if name == "tests" || name.ends_with("/tests") || name == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.split("#[cfg(test)]\nmod ").next().unwrap_or_default();
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        out.insert(name, code);
    }
}

/// The paths a `use` group names: `a::{b, c::{d}}` -> a::b, a::c::d.
fn expand(prefix: &[String], body: &str, out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut item = String::new();
    let mut items = Vec::new();
    for c in body.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            items.push(std::mem::take(&mut item));
        } else {
            item.push(c);
        }
    }
    items.push(item);
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        if let Some(open) = item.find("::{") {
            let mut inner_prefix = prefix.to_vec();
            inner_prefix.extend(item[..open].split("::").map(str::to_owned));
            expand(&inner_prefix, item[open + 3..].trim_end_matches('}'), out);
        } else {
            let mut path = prefix.to_vec();
            let item = item.split(" as ").next().unwrap_or_default();
            path.extend(
                item.split("::")
                    .map(str::trim)
                    .filter(|p| !p.is_empty() && *p != "self")
                    .map(str::to_owned),
            );
            out.push(path);
        }
    }
}

/// `use <root>::{…};` groups and `<root>::a::b` paths of `code`.
fn paths_after(code: &str, root: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let group = format!("use {root}::{{");
    let mut rest = code;
    while let Some(at) = rest.find(&group) {
        let body = &rest[at + group.len()..];
        let end = body.find("};").unwrap_or(body.len());
        expand(&[], &body[..end], &mut out);
        rest = &body[end..];
    }
    let single = format!("{root}::");
    for (at, _) in code.match_indices(&single) {
        if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let path: Vec<String> = code[at + single.len()..]
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or_default()
            .split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        out.push(path);
    }
    out
}

fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    modules(src, src, &mut files);
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let resolve = |path: &[String]| {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].join("/"))
            .find(|m| known.contains(m))
    };
    let mut edges = BTreeMap::new();
    for (module, code) in &files {
        let parent: Vec<String> = module
            .rsplit_once('/')
            .map(|(p, _)| p.split('/').map(str::to_owned).collect())
            .unwrap_or_default();
        let mut paths = paths_after(code, "crate");
        for path in paths_after(code, "super") {
            let mut full = parent.clone();
            full.extend(path);
            paths.push(full);
        }
        let targets: BTreeSet<String> = paths
            .iter()
            .filter_map(|p| resolve(p))
            .filter(|t| t != module && !module.starts_with(&format!("{t}/")))
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

/// The circles of `edges` (strongly connected sets of more than one).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for next in &edges[&m] {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let all: BTreeMap<&String, BTreeSet<String>> = edges.keys().map(|m| (m, reaches(m))).collect();
    let mut found: Vec<BTreeSet<String>> = Vec::new();
    for (m, from_m) in &all {
        if !from_m.contains(*m) {
            continue;
        }
        let circle: BTreeSet<String> = from_m
            .iter()
            .filter(|other| all[other].contains(*m))
            .cloned()
            .collect();
        if !found.contains(&circle) {
            found.push(circle);
        }
    }
    found
}

#[test]
fn the_service_has_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    assert!(edges.len() > 50, "the modules were read: {}", edges.len());
    assert!(
        edges["startup"].contains("http") && edges["http/hooks"].contains("inbox"),
        "the imports were read: {edges:?}"
    );
    let found = circles(&edges);
    assert!(found.is_empty(), "import circles: {found:?}");
}

#[test]
fn the_simulator_has_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/amocrm-sim/src");
    let edges = graph(&src);
    assert!(
        edges["server"].contains("api") && edges["cards"].contains("webhook"),
        "the imports were read: {edges:?}"
    );
    let found = circles(&edges);
    assert!(found.is_empty(), "import circles: {found:?}");
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let edge = |a: &str, b: &[&str]| (a.to_owned(), b.iter().map(|s| (*s).to_owned()).collect());
    let edges: BTreeMap<String, BTreeSet<String>> = [
        edge("a", &["b"]),
        edge("b", &["c"]),
        edge("c", &["a"]),
        edge("d", &["a"]),
    ]
    .into();
    let found = circles(&edges);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0],
        ["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect()
    );
}

/// Every `.rs` file under `dir` (target/ left out), with its line count.
fn line_counts(dir: &Path, out: &mut Vec<(String, usize)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                line_counts(&path, out);
            }
        } else if name.ends_with(".rs") {
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            out.push((path.display().to_string(), lines));
        }
    }
}

/// A file one reads in one sitting: over 400 lines, a file holds more than
/// one subject and is split by subject.
#[test]
fn no_source_file_of_the_workspace_is_over_400_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut counts = Vec::new();
    for dir in ["src", "tests", "crates"] {
        line_counts(&root.join(dir), &mut counts);
    }
    assert!(counts.len() > 100, "the files were read: {}", counts.len());
    let long: Vec<_> = counts.iter().filter(|(_, lines)| *lines > 400).collect();
    assert!(long.is_empty(), "files over 400 lines: {long:?}");
}
