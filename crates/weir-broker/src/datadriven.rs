//! Data-driven tests of the sans-IO state machines (raft-rs `datadriven` style): a script is a
//! list of commands, each followed by `----` and the lines it must output, then a blank line.
//! Lines starting with `#` are comments. Run with `WEIR_REWRITE=1` to rewrite the expected
//! outputs after a deliberate change, then review the diff.

use std::path::{Path, PathBuf};

/// Runs every `*.txt` script in `dir` (at least `min_files`), each on a fresh state from `new`.
pub(crate) fn run_dir<S>(
    dir: &Path,
    min_files: usize,
    new: impl Fn() -> S,
    run: impl Fn(&mut S, &str) -> Vec<String>,
) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= min_files,
        "scripts missing from {}",
        dir.display()
    );
    for file in files {
        let mut state = new();
        run_file(&file, |line| run(&mut state, line));
    }
}

fn run_file(path: &Path, mut run: impl FnMut(&str) -> Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rewritten = String::new();
    let mut failures = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            rewritten.push_str(line);
            rewritten.push('\n');
            continue;
        }
        let command = line.to_string();
        let sep = lines.next().unwrap_or_default();
        assert_eq!(
            sep,
            "----",
            "{}: command '{command}' must be followed by ----",
            path.display()
        );
        let mut expected = Vec::new();
        while let Some(l) = lines.peek() {
            if l.trim().is_empty() {
                break;
            }
            expected.push(l.to_string());
            lines.next();
        }
        let actual = run(&command);
        if actual != expected {
            failures.push(format!(
                "{command}\n  expected: {expected:#?}\n  actual:   {actual:#?}"
            ));
        }
        rewritten.push_str(&command);
        rewritten.push_str("\n----\n");
        for a in &actual {
            rewritten.push_str(a);
            rewritten.push('\n');
        }
    }
    if std::env::var("WEIR_REWRITE").is_ok() {
        std::fs::write(path, rewritten).unwrap();
        return;
    }
    assert!(
        failures.is_empty(),
        "{}:\n{}",
        path.display(),
        failures.join("\n")
    );
}

/// `key=value` arguments of a command.
pub(crate) struct Args<'a> {
    pub(crate) command: &'a str,
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Args<'a> {
    pub(crate) fn parse(line: &'a str) -> Args<'a> {
        let mut parts = line.split_whitespace();
        let command = parts.next().unwrap_or_default();
        let pairs = parts.filter_map(|p| p.split_once('=')).collect();
        Args { command, pairs }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    pub(crate) fn num(&self, key: &str, default: i64) -> i64 {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// A comma-separated list of numbers (empty when missing).
    pub(crate) fn list(&self, key: &str) -> Vec<i32> {
        self.get(key)
            .unwrap_or_default()
            .split(',')
            .filter_map(|v| v.parse().ok())
            .collect()
    }
}
