//! Every `engine ...` command line shown in a code block of README.md or docs/*.md is
//! accepted by the command line parser (placeholders like DIR and FILE are positional
//! strings, so they parse). A doc that shows a flag that does not exist, or an option
//! in a place where it is not accepted, fails here with the file and line.

use std::path::{Path, PathBuf};

use clap::Parser;
use engine::cli::Cli;

/// A command line found in a doc.
#[derive(Debug)]
struct Shown {
    file: PathBuf,
    line: usize,
    words: Vec<String>,
}

/// Splits a shell line into words: single and double quotes, backslash escapes, and a
/// `#` at the start of a word begins a comment. `None` for an unterminated quote.
fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// The `engine` command lines in the fenced code blocks of `text`: lines that start
/// with `engine` (after optional indentation and a `$ ` prompt), up to a `#` comment.
fn commands(file: &Path, text: &str) -> Vec<Shown> {
    let mut out = Vec::new();
    let mut in_block = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let cmd = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        if cmd != "engine" && !cmd.starts_with("engine ") {
            continue;
        }
        let words = shell_words(cmd)
            .unwrap_or_else(|| panic!("{}:{}: unterminated quote", file.display(), i + 1));
        out.push(Shown {
            file: file.to_path_buf(),
            line: i + 1,
            words,
        });
    }
    out
}

/// Every command line shown in README.md and docs/*.md.
fn documented() -> Vec<Shown> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("reading docs/")
        .map(|e| e.expect("reading docs/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        out.extend(commands(f.strip_prefix(&root).unwrap_or(&f), &text));
    }
    out
}

/// Clap's verdict on a command line: `Err` with its message when it is refused.
fn check(words: &[String]) -> Result<(), String> {
    Cli::try_parse_from(words)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn every_documented_command_line_parses() {
    let shown = documented();
    // The operations guide alone shows more than ten; finding few means the extraction
    // broke, not that the docs are right.
    assert!(
        shown.len() >= 10,
        "only {} command lines found",
        shown.len()
    );
    let bad: Vec<String> = shown
        .iter()
        .filter_map(|s| {
            check(&s.words).err().map(|e| {
                format!(
                    "{}:{}: {}\n{e}",
                    s.file.display(),
                    s.line,
                    s.words.join(" ")
                )
            })
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} documented command line(s) refused:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn the_checker_catches_a_flag_that_does_not_exist() {
    let doc = "Run it:\n\n```sh\n$ engine replay DIR --format json  # fine\n\
               engine --ring-bytes 4096\n  engine tail --duration 10 --bogus\n```\n\n\
               engine --not-in-a-block\n";
    let shown = commands(Path::new("doc.md"), doc);
    let lines: Vec<(usize, bool)> = shown
        .iter()
        .map(|s| (s.line, check(&s.words).is_ok()))
        .collect();
    assert_eq!(lines, [(4, true), (5, false), (6, false)]);
    assert_eq!(
        shown[0].words,
        ["engine", "replay", "DIR", "--format", "json"]
    );
}

#[test]
fn shell_words_follow_quotes_and_comments() {
    assert_eq!(
        shell_words(r#"engine replay DIR --comm 'nginx*' --x "a b" c\ d # note"#).unwrap(),
        [
            "engine", "replay", "DIR", "--comm", "nginx*", "--x", "a b", "c d"
        ]
    );
    assert_eq!(shell_words("engine a#b").unwrap(), ["engine", "a#b"]);
    assert_eq!(shell_words("engine 'open"), None);
}
