//! The documentation holds together: every relative link and `#anchor` in README.md and docs/
//! resolves, and nothing in the repository points a reader at notes outside it.
//!
//! README.md and the pages under docs/ link to each other by relative paths and GitHub heading
//! anchors. A section that is moved or renamed would otherwise leave a dead link that nobody
//! notices until a reader follows it; here it fails CI instead. Each test lists every problem it
//! finds, with file and line, so one run shows all of them.
//!
//! Only `std`: the Markdown this project writes (ATX `#` headings, inline links, fenced code) is
//! simple enough to read by hand, and the test then costs nothing to build.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Strings that name documents living outside the repository (the project's former working
/// notes). A reader of the repository cannot follow them, so every reference must point at the
/// page under docs/ that now holds the same facts.
const OUTSIDE: [&str; 6] = [
    "CONTRACT.md",
    "DOMAIN.md",
    "ARCHITECTURE.md",
    "shared/seeds",
    "seeds/",
    "../shared",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, recursively, sorted; build output (`target/`) left out.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "target") {
                files.extend(walk(&path));
            }
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// README.md and every `*.md` under docs/.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    files.extend(
        walk(&root().join("docs"))
            .into_iter()
            .filter(|path| path.extension().is_some_and(|ext| ext == "md")),
    );
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The path as a reader of the repository sees it: relative to its root.
fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The lines of a Markdown file that are not inside a fenced code block (``` or ~~~), with their
/// 1-based numbers. Links and headings in code are examples, not links.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<(char, usize)> = None;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        match (fence, marker) {
            (None, Some(m)) if run >= 3 => fence = Some((m, run)),
            (Some((m, n)), Some(c)) if c == m && run >= n && trimmed[run..].trim().is_empty() => {
                fence = None;
            }
            (None, _) => lines.push((i + 1, line)),
            (Some(_), _) => {}
        }
    }
    lines
}

/// A line with its inline code spans blanked out: `[a](b)` inside backticks is an example.
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let open = chars[i..].iter().take_while(|c| **c == '`').count();
        // The span ends at the next run of exactly as many backticks.
        let mut j = i + open;
        let mut close = None;
        while j < chars.len() {
            let run = chars[j..].iter().take_while(|c| **c == '`').count();
            if run == open {
                close = Some(j + run);
                break;
            }
            j += run.max(1);
        }
        match close {
            Some(end) => {
                out.push(' ');
                i = end;
            }
            None => {
                out.extend(&chars[i..i + open]);
                i += open;
            }
        }
    }
    out
}

/// The targets of the inline links and images on a line (`[text](target)`, `![alt](target)`,
/// with an optional `"title"`), and of a reference definition (`[name]: target`).
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    if let Some(rest) = line.trim_start().strip_prefix('[')
        && let Some((_, target)) = rest.split_once("]:")
    {
        targets.extend(target.split_whitespace().next().map(str::to_owned));
    }
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        // The target ends at the parenthesis that balances the opening one.
        let mut depth = 0usize;
        let end = after
            .char_indices()
            .find(|&(_, c)| match c {
                '(' => {
                    depth += 1;
                    false
                }
                ')' if depth == 0 => true,
                ')' => {
                    depth -= 1;
                    false
                }
                _ => false,
            })
            .map_or(after.len(), |(i, _)| i);
        let inside = after[..end].trim();
        let target = inside
            .strip_prefix('<')
            .and_then(|t| t.split_once('>'))
            .map_or_else(
                || inside.split_whitespace().next().unwrap_or(""),
                |(t, _)| t,
            );
        targets.push(target.to_owned());
        rest = &after[end..];
    }
    targets
}

/// GitHub's anchor for a heading: lowercase; drop everything but letters, digits, spaces,
/// hyphens and underscores; spaces become hyphens. Link text counts, link targets do not.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(at) = rest.find("](") {
        text.push_str(&rest[..at]);
        rest = rest[at + 2..]
            .split_once(')')
            .map_or("", |(_, after)| after);
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's `#` headings; a repeated heading gets `-1`, `-2`, … as on
/// GitHub.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = HashSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        let Some(title) = line[hashes..].strip_prefix(' ') else {
            continue;
        };
        if !(1..=6).contains(&hashes) {
            continue;
        }
        let title = title.trim().trim_end_matches('#').trim();
        let base = slug(title);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// `a/./b/../c` as `a/c`, so a link is checked where GitHub would resolve it.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Every relative link in README.md and docs/ names a file or folder that exists, and every
/// `#anchor` names a heading of the file it points into.
#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut headings: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut broken = Vec::new();
    let files = markdown_files();
    for file in &files {
        let text = read(file);
        for (number, line) in prose_lines(&text) {
            for target in link_targets(&without_code_spans(line)) {
                if ["http://", "https://", "mailto:"]
                    .iter()
                    .any(|scheme| target.starts_with(scheme))
                {
                    continue;
                }
                let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
                let resolved = if path.is_empty() {
                    file.clone()
                } else if let Some(from_root) = path.strip_prefix('/') {
                    normalise(&root().join(from_root))
                } else {
                    normalise(&file.parent().unwrap_or(&root()).join(path))
                };
                let place = format!("{}:{number}: ({target})", shown(file));
                if !resolved.exists() {
                    broken.push(format!("{place}: no such file {}", shown(&resolved)));
                    continue;
                }
                if anchor.is_empty() {
                    continue;
                }
                let page = if resolved.is_dir() {
                    resolved.join("README.md")
                } else {
                    resolved
                };
                let known = headings
                    .entry(page.clone())
                    .or_insert_with(|| anchors(&fs::read_to_string(&page).unwrap_or_default()));
                if !known.contains(anchor) {
                    broken.push(format!(
                        "{place}: no heading with anchor #{anchor} in {}",
                        shown(&page)
                    ));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} broken link(s) in README.md and docs/:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

/// Every line of `files` that names a document outside the repository, as `file:line: text`.
fn outside_references(files: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        // Binary files (the zstd dictionary, images) are not read; they cite nothing.
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if let Some(name) = OUTSIDE.iter().find(|name| line.contains(*name)) {
                found.push(format!(
                    "{}:{}: names {name}: {}",
                    shown(file),
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

/// README.md and docs/ send readers only to pages in the repository (or public sources by URL).
#[test]
fn the_docs_point_nowhere_outside_the_repository() {
    let found = outside_references(&markdown_files());
    assert!(
        found.is_empty(),
        "{} reference(s) to documents outside the repository:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// The code, tests, configuration and scripts cite docs/ pages too, never notes a reader of the
/// repository cannot open. (This file names those notes in [`OUTSIDE`], so it is left out.)
#[test]
fn the_code_points_nowhere_outside_the_repository() {
    let this = root().join("tests").join("docs.rs");
    let files: Vec<PathBuf> = ["src", "tests", "config", "scripts", "benches"]
        .iter()
        .flat_map(|dir| walk(&root().join(dir)))
        .filter(|path| *path != this)
        .collect();
    let mut found = outside_references(&files);
    found.extend(dead_citations(&files));
    assert!(
        found.is_empty(),
        "{} reference(s) to documents outside the repository or to docs/ pages that are not \
         there; point each at its page under docs/:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// Every `docs/….md` or `docs/….md#anchor` that `files` cite, where the page or its heading is
/// missing, as `file:line: …`. Comments cite docs by path from the repository root.
fn dead_citations(files: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(start) = rest.find("docs/") {
                let cited: String = rest[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "/._-#".contains(*c))
                    .collect();
                rest = &rest[start + cited.len().max(1)..];
                let cited = cited.trim_end_matches(['.', '#']);
                let (path, anchor) = cited.split_once('#').unwrap_or((cited, ""));
                if !path.ends_with(".md") {
                    continue;
                }
                let page = root().join(path);
                let place = format!("{}:{}: cites {cited}", shown(file), i + 1);
                if !page.is_file() {
                    found.push(format!("{place}: no such page"));
                } else if !anchor.is_empty() && !anchors(&read(&page)).contains(anchor) {
                    found.push(format!("{place}: no such heading"));
                }
            }
        }
    }
    found
}
