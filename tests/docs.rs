//! The README and docs/ stay true: every link between them leads to a file
//! and a heading that exist, every configuration key of
//! `config/default.toml` is in the configuration reference and nothing else
//! is, every amohook command the sh blocks give is one the binary has, and
//! the README's Docker block writes the `.env` compose needs. (The
//! Quick-start and sandbox commands are run as printed by
//! `tests/commands/` and `.ci/run`, the admin API's curl commands by
//! `tests/api/documented.rs`, the bench's by its own tests.)

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

#[test]
fn compose_takes_its_settings_and_key_from_the_env_file_the_readme_makes() {
    let compose = include_str!("../docker-compose.yml");
    let example = include_str!("../.env.example");
    let readme = include_str!("../README.md");
    let docker = &readme[readme.find("### Running with Docker").unwrap()..];
    let start = docker
        .find("cat > .env <<EOF\n")
        .expect("the README makes .env");
    let block = &docker[start..start + docker[start..].find("\nEOF\n").unwrap()];
    // What compose refuses to start without: `${NAME:?...}`.
    let required: Vec<&str> = compose
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once(":?").map(|(name, _)| name))
        .filter(|name| !name.contains('}'))
        .collect();
    assert!(
        required.contains(&"AMOHOOK_SECURITY__ENCRYPTION_KEY"),
        "{required:?}"
    );
    for name in required {
        let set = |text: &str| text.lines().any(|l| l.starts_with(&format!("{name}=")));
        assert!(set(example), ".env.example names {name}");
        assert!(set(block), "the README's .env sets {name}");
    }
    assert!(
        !docker.contains("export AMOHOOK_"),
        "the Docker section keeps settings in .env, not in shell variables"
    );
    assert!(include_str!("../.gitignore").lines().any(|l| l == ".env"));
}

/// The README's Docker block, run as printed up to `docker compose up`
/// (which needs a Docker daemon and builds the image for minutes): the
/// `.env` it writes sets every value compose requires, with a fresh admin
/// token and a key of 32 bytes, readable by its owner only.
#[test]
fn the_readmes_docker_block_writes_an_env_file_compose_takes() {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt as _;
    let readme = include_str!("../README.md");
    let docker = &readme[readme.find("### Running with Docker").unwrap()..];
    let (_, code) = split(docker);
    let block: Vec<&str> = code
        .iter()
        .filter(|(lang, _)| lang == "sh")
        .map(|(_, line)| *line)
        .take_while(|line| !line.starts_with("docker compose"))
        .collect();
    assert!(
        code.iter().any(|(_, l)| *l == "docker compose up --build"),
        "the block ends by starting compose"
    );
    let dir = tempfile::tempdir().unwrap();
    let ran = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block.join("\n")])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let env_file = dir.path().join(".env");
    let mode = std::fs::metadata(&env_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let written = std::fs::read_to_string(&env_file).unwrap();
    let value = |name: &str| {
        written
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} is not in .env:\n{written}"))
            .to_owned()
    };
    let compose = include_str!("../docker-compose.yml");
    for name in compose
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once(":?").map(|(name, _)| name))
        .filter(|name| !name.contains('}'))
    {
        assert!(!value(name).trim().is_empty(), "{name} is empty");
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(value("AMOHOOK_SECURITY__ENCRYPTION_KEY"))
        .expect("the key is base64");
    assert_eq!(key.len(), 32);
    let token = value("AMOHOOK_ADMIN__TOKEN");
    assert!(
        token.len() == 48 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "{token}"
    );
}

#[test]
fn compose_publishes_plain_http_on_loopback_unless_told_otherwise() {
    let compose = include_str!("../docker-compose.yml");
    let ports: Vec<&str> = compose
        .lines()
        .skip_while(|l| l.trim() != "ports:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('-'))
        .map(|l| l.trim().trim_start_matches("- ").trim_matches('"'))
        .collect();
    assert_eq!(
        ports,
        ["${AMOHOOK_PUBLISH:-127.0.0.1}:8080:8080"],
        "{ports:?}"
    );
    // The database is not published at all.
    assert_eq!(compose.matches("ports:").count(), 1);
    let readme = include_str!("../README.md");
    assert!(
        readme.contains("AMOHOOK_PUBLISH"),
        "the README says how to change it"
    );
}
