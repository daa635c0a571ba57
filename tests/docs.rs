//! The README and docs/ stay true: every link between them leads to a file
//! and a heading that exist, every configuration key of
//! `config/default.toml` is in the configuration reference and nothing else
//! is, and every amohook command the sh blocks give is one the binary has.
//! (The Quick-start command is run as printed by `tests/commands.rs` and
//! `.ci/run`.)

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README and every page of docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The page's lines outside code blocks, and its code blocks' lines by
/// language.
fn split(text: &str) -> (Vec<&str>, Vec<(String, &str)>) {
    let (mut prose, mut code) = (Vec::new(), Vec::new());
    let mut fence: Option<String> = None;
    for line in text.lines() {
        match (&fence, line.trim_start().strip_prefix("```")) {
            (None, Some(lang)) => fence = Some(lang.trim().to_owned()),
            (Some(_), Some(_)) => fence = None,
            (Some(lang), None) => code.push((lang.clone(), line)),
            (None, None) => prose.push(line),
        }
    }
    (prose, code)
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let (prose, _) = split(&text);
    prose
        .iter()
        .filter_map(|l| {
            let hashes = l.chars().take_while(|c| *c == '#').count();
            (hashes > 0 && l[hashes..].starts_with(' ')).then(|| anchor(&l[hashes..]))
        })
        .collect()
}

/// `[text](target)` and `![alt](target)` targets of the prose.
fn links(prose: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose {
        let mut rest = *line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn every_link_of_the_readme_and_docs_leads_somewhere() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let (prose, _) = split(&text);
        for target in links(&prose) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let (file, fragment) = match target.split_once('#') {
                Some((file, fragment)) => (file, Some(fragment)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target} (no such file)", page.display()));
                continue;
            }
            if let Some(fragment) = fragment {
                if !anchors(&path).contains(fragment) {
                    broken.push(format!("{}: {target} (no such heading)", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_stays_a_ten_minute_read() {
    let lines = include_str!("../README.md").lines().count();
    assert!(
        lines <= 300,
        "the README has {lines} lines: move detail to docs/"
    );
}

/// `section.key` of every key `config/default.toml` sets or shows
/// commented out.
fn default_keys() -> BTreeSet<String> {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in include_str!("../config/default.toml").lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let line = line
            .strip_prefix("# ")
            .or(line.strip_prefix('#'))
            .unwrap_or(line);
        if let Some((key, value)) = line.split_once('=') {
            let key = key.trim();
            let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if is_key && !value.trim().is_empty() && !section.is_empty() {
                keys.insert(format!("{section}.{key}"));
            }
        }
    }
    keys
}

#[test]
fn the_configuration_reference_names_every_key_and_no_other() {
    let reference = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let documented: BTreeSet<String> = reference
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(key, _)| key.to_owned())
        .filter(|key| key.contains('.'))
        .collect();
    let keys = default_keys();
    assert!(
        keys.len() > 20,
        "the keys of default.toml were read: {keys:?}"
    );
    let missing: Vec<_> = keys.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&keys).collect();
    assert!(
        missing.is_empty(),
        "keys docs/configuration.md does not describe: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "keys docs/configuration.md describes that do not exist: {unknown:?}"
    );
    // Each key's variable is the one the configuration loader reads.
    for key in &keys {
        let (section, name) = key.split_once('.').unwrap();
        let variable = format!(
            "AMOHOOK_{}__{}",
            section.to_uppercase(),
            name.to_uppercase()
        );
        assert!(
            reference.contains(&variable),
            "{key}: {variable} is not given"
        );
    }
}

#[test]
fn every_amohook_command_in_the_readme_and_docs_exists() {
    let mut commands = BTreeSet::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let (_, code) = split(&text);
        for (lang, line) in code {
            if lang != "sh" {
                continue;
            }
            for (at, _) in line.match_indices("amohook ") {
                let before = &line[..at];
                if !(before.is_empty() || before.ends_with(' ') || before.ends_with('/')) {
                    continue;
                }
                // A command is a word (`amohook \` at a line's end is a
                // database named amohook).
                if let Some(word) = line[at + 8..].split_whitespace().next() {
                    if word.chars().all(|c| c.is_ascii_lowercase()) {
                        commands.insert(word.to_owned());
                    }
                }
            }
            if let Some((_, rest)) = line.split_once("cargo run --release -- ") {
                if let Some(word) = rest.split_whitespace().next() {
                    commands.insert(word.to_owned());
                }
            }
        }
    }
    assert!(
        commands.contains("serve") && commands.contains("sandbox"),
        "{commands:?}"
    );
    for command in &commands {
        let ran = std::process::Command::new(env!("CARGO_BIN_EXE_amohook"))
            .args([command.as_str(), "--help"])
            .output()
            .unwrap();
        assert!(
            ran.status.success(),
            "`amohook {command}` is in the docs but not in the binary: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
    }
}
