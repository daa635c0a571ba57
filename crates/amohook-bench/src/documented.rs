//! The bench commands docs/ prints are ones this program takes: each line
//! that runs `target/release/amohook-bench` is parsed here exactly as
//! printed (the drills themselves take minutes and run as the benchmark,
//! not in the test suite).

use clap::Parser as _;

use super::Args;

/// Every `target/release/amohook-bench ...` command of docs/*.md's sh
/// blocks, as its words (a trailing `# comment` left out).
fn documented() -> Vec<(String, Vec<String>)> {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let mut commands = Vec::new();
    for entry in std::fs::read_dir(&docs).expect("docs/") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut in_sh = false;
        for line in text.lines() {
            if let Some(lang) = line.trim_start().strip_prefix("```") {
                in_sh = !in_sh && lang.trim() == "sh";
                continue;
            }
            if !in_sh {
                continue;
            }
            let Some(at) = line.find("target/release/amohook-bench") else {
                continue;
            };
            let command = line[at..].split(" #").next().unwrap_or_default();
            let words = command.split_whitespace().map(str::to_owned).collect();
            let place = format!("{}: {line}", path.file_name().unwrap().to_string_lossy());
            commands.push((place, words));
        }
    }
    commands
}

#[test]
fn every_bench_command_the_docs_print_is_taken_as_printed() {
    let commands = documented();
    // benchmark.md's runs and reliability.md's drills.
    assert!(commands.len() >= 10, "{commands:?}");
    let mut runs = std::collections::HashSet::new();
    for (place, words) in &commands {
        match Args::try_parse_from(words) {
            Ok(args) => runs.insert(args.drill.as_ref().map(std::mem::discriminant)),
            Err(e) => panic!("{place}\n{e}"),
        };
    }
    // The benchmark itself and each of the ten drills.
    assert!(runs.len() >= 11, "{} kinds of run", runs.len());
}

#[test]
fn a_command_the_bench_does_not_take_is_refused() {
    for words in [
        vec!["amohook-bench", "--acounts", "100"],
        vec!["amohook-bench", "flood", "--seconds", "twenty"],
        vec!["amohook-bench", "no-such-drill"],
    ] {
        assert!(Args::try_parse_from(&words).is_err(), "{words:?}");
    }
}
