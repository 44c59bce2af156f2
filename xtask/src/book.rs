//! The book's mdBook preprocessor: listings without exercise markers, with
//! their solutions folded and their source file named.
//!
//! mdBook runs it before its own `links` preprocessor (see `book/book.toml`),
//! so it sees each `{{#include path:anchor}}` while it still names its file.
//! It expands the includes of every fenced code block itself, with mdBook's
//! rules (an anchor's lines minus any `ANCHOR` lines; a whole file as it is),
//! then:
//!
//! - drops every exercise marker line ([`crate::markers::is_marker`]);
//! - captions the listing with the file it comes from, when that file is
//!   code outside the book (`chapters/02-segments/src/log.rs`);
//! - folds a listing that held an exercise hole into
//!   `<details><summary>Show the solution ...</summary>`, so a learner can
//!   try first.
//!
//! An include it cannot read is left in place for `links`, which reports it.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::markers::{HOLE, is_marker};

/// Where a page's includes are resolved and how its captions are written.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The folder of the page (includes are relative to it).
    pub page_dir: PathBuf,
    /// The book's source folder: files under it (generated demo output)
    /// get no caption.
    pub src_dir: PathBuf,
    /// Captions name files relative to this folder (the repository root).
    pub caption_root: PathBuf,
}

/// Rewrites one page's markdown as described in the module documentation.
pub fn preprocess_page(content: &str, paths: &Paths) -> String {
    preprocess(content, paths).0
}

/// The exercise holes a page's listings show, in the order it shows them:
/// the order in which the book has a learner meet them.
pub fn holes_shown(content: &str, paths: &Paths) -> Vec<String> {
    preprocess(content, paths).1
}

/// [`preprocess_page`], also returning the holes the listings held.
fn preprocess(content: &str, paths: &Paths) -> (String, Vec<String>) {
    let mut holes = Vec::new();
    let mut out = String::with_capacity(content.len());
    let mut lines = content.split_inclusive('\n');
    while let Some(line) = lines.next() {
        let Some(fence) = fence_of(line) else {
            out.push_str(line);
            continue;
        };
        let mut body = String::new();
        let mut close = None;
        for inner in lines.by_ref() {
            if inner.trim() == fence {
                close = Some(inner);
                break;
            }
            body.push_str(inner);
        }
        let Some(close) = close else {
            // An unclosed fence runs to the end of the page; leave it be.
            out.push_str(line);
            out.push_str(&body);
            break;
        };
        out.push_str(&listing(line, &body, close, paths, &mut holes));
    }
    (out, holes)
}

/// The fence (three or more backticks or tildes) a line opens, if it opens one.
fn fence_of(line: &str) -> Option<&str> {
    let trimmed = line.trim();
    let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = trimmed.chars().take_while(|c| *c == marker).count();
    (len >= 3).then(|| &trimmed[..len])
}

/// One fenced block, its includes expanded, with its caption and fold.
fn listing(open: &str, body: &str, close: &str, paths: &Paths, shown: &mut Vec<String>) -> String {
    let mut files = Vec::new();
    let mut code = String::new();
    for line in body.split_inclusive('\n') {
        code.push_str(&expand_include(line, paths, &mut files));
    }
    let mut holes = Vec::new();
    let mut kept = String::with_capacity(code.len());
    for line in code.split_inclusive('\n') {
        if let Some(rest) = line.trim_start().strip_prefix(HOLE) {
            holes.push(
                rest.split('|')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            );
        }
        if !is_marker(line) {
            kept.push_str(line);
        }
    }

    for hole in &holes {
        if !shown.contains(hole) {
            shown.push(hole.clone());
        }
    }
    let mut out = String::new();
    for file in files {
        out.push_str(&format!(
            "<p class=\"listing-source\"><small><code>{}</code></small></p>\n\n",
            file.display()
        ));
    }
    if holes.is_empty() {
        out.push_str(open);
        out.push_str(&kept);
        out.push_str(close);
        return out;
    }
    let names: Vec<String> = holes.iter().map(|h| format!("<code>{h}</code>")).collect();
    let plural = if holes.len() == 1 { "" } else { "s" };
    out.push_str(&format!(
        "<details>\n<summary>Show the solution (exercise{plural} {}): try it yourself first</summary>\n\n",
        names.join(", ")
    ));
    out.push_str(open);
    out.push_str(&kept);
    out.push_str(close);
    if !close.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("\n</details>\n");
    out
}

/// Expands a line's `{{#include path}}` or `{{#include path:anchor}}` as
/// mdBook would, noting the file for a caption. Any other form, or a file
/// that cannot be read, is left as it is.
fn expand_include(line: &str, paths: &Paths, files: &mut Vec<PathBuf>) -> String {
    const OPEN: &str = "{{#include ";
    let Some(start) = line.find(OPEN) else {
        return line.to_string();
    };
    let Some(len) = line[start..].find("}}") else {
        return line.to_string();
    };
    let target = line[start + OPEN.len()..start + len].trim();
    let (path, anchor) = match target.split_once(':') {
        Some((path, anchor))
            if !anchor.is_empty()
                && anchor
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-') =>
        {
            (path, Some(anchor))
        }
        Some(_) => return line.to_string(),
        None => (target, None),
    };
    let file = normalize(&paths.page_dir.join(path));
    let Ok(text) = fs::read_to_string(&file) else {
        return line.to_string();
    };
    let taken = match anchor {
        Some(anchor) => anchored_lines(&text, anchor),
        None => text.lines().collect::<Vec<_>>().join("\n"),
    };
    if !file.starts_with(normalize(&paths.src_dir)) {
        let root = normalize(&paths.caption_root);
        files.push(file.strip_prefix(&root).unwrap_or(&file).to_path_buf());
    }
    format!("{}{taken}{}", &line[..start], &line[start + len + 2..])
}

/// mdBook's anchored include: the lines between `ANCHOR: name` and
/// `ANCHOR_END: name`, without any line that is itself an anchor.
fn anchored_lines(text: &str, anchor: &str) -> String {
    let is_named = |line: &str, marker: &str| {
        line.split_once(marker).is_some_and(|(_, rest)| {
            rest.trim_start()
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .next()
                == Some(anchor)
        })
    };
    let mut kept = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if inside {
            if line.contains("ANCHOR_END:") {
                if is_named(line, "ANCHOR_END:") {
                    break;
                }
            } else if !line.contains("ANCHOR:") {
                kept.push(line);
            }
        } else if is_named(line, "ANCHOR:") {
            inside = true;
        }
    }
    kept.join("\n")
}

/// `path` with `.` and `..` resolved lexically (the book names files as
/// `../../chapters/...`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The preprocessor protocol: `supports <renderer>` answers by exit status
/// (every renderer is supported: markers must go from every output);
/// otherwise mdBook writes `[context, book]` as JSON on stdin and reads the
/// book back from stdout.
pub fn run_preprocessor(args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) == Some("supports") {
        return Ok(());
    }
    let input: serde_json::Value =
        serde_json::from_reader(std::io::stdin().lock()).map_err(|e| format!("stdin: {e}"))?;
    let (context, mut book) = match input {
        serde_json::Value::Array(mut pair) if pair.len() == 2 => {
            let book = pair.pop().unwrap_or_default();
            (pair.pop().unwrap_or_default(), book)
        }
        _ => return Err("stdin: expected mdBook's [context, book] JSON".into()),
    };
    let root = PathBuf::from(
        context["root"]
            .as_str()
            .ok_or("stdin: the context has no root")?,
    );
    let src = context["config"]["book"]["src"].as_str().unwrap_or("src");
    let src_dir = root.join(src);
    let caption_root = normalize(&root.join(".."));
    for_each_chapter(&mut book, &mut |source_path, content| {
        let page = src_dir.join(source_path);
        let paths = Paths {
            page_dir: page.parent().unwrap_or(&src_dir).to_path_buf(),
            src_dir: src_dir.clone(),
            caption_root: caption_root.clone(),
        };
        *content = preprocess_page(content, &paths);
    });
    serde_json::to_writer(std::io::stdout().lock(), &book).map_err(|e| format!("stdout: {e}"))
}

/// Calls `f` with the source path and content of every chapter in mdBook's
/// JSON book: any object with a string `content` and a `source_path`
/// (drafts, with no file, have none).
fn for_each_chapter(value: &mut serde_json::Value, f: &mut impl FnMut(&str, &mut String)) {
    match value {
        serde_json::Value::Object(map) => {
            let source = map
                .get("source_path")
                .and_then(|p| p.as_str())
                .map(str::to_string);
            if let (Some(source), Some(serde_json::Value::String(content))) =
                (source, map.get_mut("content"))
            {
                f(&source, content);
            }
            for child in map.values_mut() {
                for_each_chapter(child, f);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                for_each_chapter(item, f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_with_a_hole_is_captioned_folded_and_clean() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let code = dir.join("code/src");
        fs::create_dir_all(&code).unwrap();
        fs::create_dir_all(dir.join("book/src/demos")).unwrap();
        fs::write(
            code.join("lib.rs"),
            "// ANCHOR: f\nfn f() {\n    // exercise-hole: f | Do it.\n    // exercise-hint: More.\n    g()\n    // exercise-end\n}\n// ANCHOR_END: f\n",
        )
        .unwrap();
        fs::write(dir.join("book/src/demos/out.txt"), "output\n").unwrap();
        let paths = Paths {
            page_dir: dir.join("book/src"),
            src_dir: dir.join("book/src"),
            caption_root: dir.clone(),
        };
        let page = "Text.\n\n```rust,ignore\n{{#include ../../code/src/lib.rs:f}}\n```\n\n```text\n{{#include demos/out.txt}}\n```\n";
        assert_eq!(
            preprocess_page(page, &paths),
            "Text.\n\n\
             <p class=\"listing-source\"><small><code>code/src/lib.rs</code></small></p>\n\n\
             <details>\n<summary>Show the solution (exercise <code>f</code>): try it yourself first</summary>\n\n\
             ```rust,ignore\nfn f() {\n    g()\n}\n```\n\n</details>\n\n\
             ```text\noutput\n```\n"
        );
        let unreadable = "```rust\n{{#include missing.rs:x}}\n```\n";
        assert_eq!(preprocess_page(unreadable, &paths), unreadable);
    }

    #[test]
    fn anchors_follow_mdbook() {
        let text =
            "a\n// ANCHOR: x\nb\n// ANCHOR: inner\nc\n// ANCHOR_END: inner\n// ANCHOR_END: x\nd";
        assert_eq!(anchored_lines(text, "x"), "b\nc");
        assert_eq!(anchored_lines(text, "xy"), "");
        assert_eq!(normalize(Path::new("/a/b/../../c/./d")), Path::new("/c/d"));
    }
}
