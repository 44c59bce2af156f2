//! The course's own consistency: the book includes code that exists, never
//! shows an exercise marker, every chapter has its book page, exercise and
//! benchmark, each chapter page ends with a summary, and every KIP the book
//! names is a link.
//!
//! mdBook only warns about a listing whose file is missing, and renders a
//! listing whose anchor is missing as an empty block without a word, so
//! these tests are what makes a stale listing a failure.

use std::fs;
use std::path::{Path, PathBuf};

use kfs_system_tests::repo_root;
use xtask::book::{Paths, preprocess_page};
use xtask::markers::is_marker;

/// One `{{#include path:anchor}}` in a book page.
#[derive(Debug)]
struct Include {
    page: String,
    path: String,
    anchor: Option<String>,
}

fn book_pages() -> Vec<PathBuf> {
    let src = repo_root().join("book/src");
    let mut pages: Vec<PathBuf> = fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages
}

fn includes(page: &Path) -> Vec<Include> {
    let text = fs::read_to_string(page).unwrap();
    let name = page.file_name().unwrap().to_string_lossy().into_owned();
    text.split("{{#include ")
        .skip(1)
        .map(|rest| {
            let target = rest.split("}}").next().unwrap().trim();
            let (path, anchor) = match target.rsplit_once(':') {
                Some((path, anchor)) => (path.to_string(), Some(anchor.to_string())),
                None => (target.to_string(), None),
            };
            Include {
                page: name.clone(),
                path,
                anchor,
            }
        })
        .collect()
}

#[test]
fn every_listing_in_the_book_names_a_file_and_anchor_that_exist() {
    let src = repo_root().join("book/src");
    let mut checked = 0;
    for page in book_pages() {
        for include in includes(&page) {
            let file = src.join(&include.path);
            let text = fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: includes {}: {e}", include.page, include.path));
            if let Some(anchor) = &include.anchor {
                let start = format!("ANCHOR: {anchor}\n");
                let end = format!("ANCHOR_END: {anchor}\n");
                let (Some(from), Some(to)) = (text.find(&start), text.find(&end)) else {
                    panic!(
                        "{}: {} has no anchor pair `{anchor}`",
                        include.page, include.path
                    );
                };
                assert!(
                    from < to && text[from + start.len()..to].lines().count() > 1,
                    "{}: anchor `{anchor}` in {} is empty or reversed",
                    include.page,
                    include.path
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "the book includes no listings at all");
}

#[test]
fn every_page_is_in_the_summary() {
    let summary = fs::read_to_string(repo_root().join("book/src/SUMMARY.md")).unwrap();
    for page in book_pages() {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        if name != "SUMMARY.md" {
            assert!(
                summary.contains(&format!("({name})")),
                "{name} is not in SUMMARY.md"
            );
        }
    }
}

#[test]
fn every_chapter_has_a_book_page_an_exercise_and_a_benchmark() {
    let root = repo_root();
    let pages: Vec<String> = book_pages()
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    let mut chapters: Vec<String> = fs::read_dir(root.join("chapters"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    chapters.sort();
    assert!(!chapters.is_empty());
    for chapter in chapters {
        let number = chapter.split('-').next().unwrap();
        assert!(
            pages
                .iter()
                .any(|p| p.contains(&format!("chapters/{chapter}/src/"))),
            "no book page includes code from chapters/{chapter}"
        );
        assert!(
            root.join("exercises")
                .join(&chapter)
                .join("EXERCISE.md")
                .is_file(),
            "no exercise for {chapter}: run `cargo xtask exercises`"
        );
        let bench = format!(
            "ch{number}_{}.rs",
            chapter[number.len() + 1..].replace('-', "_")
        );
        assert!(
            root.join("benches/benches").join(&bench).is_file(),
            "no benchmark benches/benches/{bench} for {chapter}"
        );
        let performance = fs::read_to_string(root.join("book/src/performance.md")).unwrap();
        assert!(
            performance.contains(&format!("--bench {}", bench.trim_end_matches(".rs"))),
            "the performance page has no figures from {bench}"
        );
    }
}

/// A page's lines outside fenced code blocks, numbered from 1.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            lines.push((i + 1, line));
        }
    }
    lines
}

/// The chapter pages: `chNN-name.md`.
fn chapter_pages() -> Vec<PathBuf> {
    book_pages()
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.len() > 4
                && name.starts_with("ch")
                && name[2..4].bytes().all(|b| b.is_ascii_digit())
        })
        .collect()
}

#[test]
fn every_chapter_page_ends_with_a_summary_and_whats_next() {
    let pages = chapter_pages();
    assert!(!pages.is_empty(), "no chapter pages in book/src");
    for page in pages {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&page).unwrap();
        let lines = prose_lines(&text);
        let headings: Vec<(usize, &str)> = lines
            .iter()
            .filter(|(_, l)| l.starts_with("## "))
            .map(|&(n, l)| (n, l[3..].trim()))
            .collect();
        let last: Vec<&str> = headings.iter().rev().take(2).rev().map(|h| h.1).collect();
        assert_eq!(
            last,
            ["Summary", "What's next"],
            "{name}: the last two sections must be `## Summary` and `## What's next`"
        );
        // No other heading after them: they are the page's end.
        let summary_at = headings[headings.len() - 2].0;
        let next_at = headings[headings.len() - 1].0;
        assert!(
            !lines
                .iter()
                .any(|(n, l)| *n > summary_at && *n != next_at && l.starts_with('#')),
            "{name}: a heading follows `## Summary`"
        );
        let bullets = lines
            .iter()
            .filter(|(n, l)| *n > summary_at && *n < next_at && l.starts_with("- "))
            .count();
        assert!(
            (4..=6).contains(&bullets),
            "{name}: the summary has {bullets} bullets; it should have 4 to 6"
        );
        // Link definitions (`[label]: url`) may follow; prose must too.
        let next_words: usize = lines
            .iter()
            .filter(|(n, l)| *n > next_at && !l.starts_with('['))
            .map(|(_, l)| l.split_whitespace().count())
            .sum();
        assert!(
            next_words >= 20,
            "{name}: `## What's next` needs a paragraph pointing at the next chapter"
        );
    }
}

/// Whether `url` is the cwiki page of KIP `number`.
fn is_kip_url(url: &str, number: &str) -> bool {
    let prefix = format!("https://cwiki.apache.org/confluence/display/KAFKA/KIP-{number}");
    url.strip_prefix(&prefix)
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
}

#[test]
fn every_kip_named_in_the_book_is_a_link_to_its_page() {
    let mut checked = 0;
    for page in book_pages() {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&page).unwrap();
        let lines = prose_lines(&text);
        // Reference definitions: `[label]: url`.
        let definitions: Vec<(String, &str)> = lines
            .iter()
            .filter_map(|(_, l)| {
                let (label, url) = l.strip_prefix('[')?.split_once("]: ")?;
                Some((label.to_lowercase(), url.trim()))
            })
            .collect();
        for &(n, line) in &lines {
            // Headings name a KIP and the text under them links it (a link
            // inside a heading would nest inside mdBook's heading anchor).
            let is_definition = line
                .strip_prefix('[')
                .is_some_and(|rest| rest.contains("]: "));
            if line.starts_with('#') || is_definition {
                continue;
            }
            let mut from = 0;
            while let Some(at) = line[from..].find("KIP-").map(|i| i + from) {
                from = at + 4;
                let number: String = line[from..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                // Not a KIP number, or part of a link's address.
                if number.is_empty() || line[..at].ends_with('/') {
                    continue;
                }
                checked += 1;
                let place = format!("{name}:{n}: KIP-{number}");
                // The link text around it: a `[` before and a `]` after,
                // with neither bracket crossed by the other.
                let open = line[..at].rfind('[');
                let close = line[at..].find(']').map(|i| i + at);
                let (Some(open), Some(close)) = (open, close) else {
                    panic!("{place} is not a link");
                };
                assert!(
                    !line[open + 1..at].contains(']') && !line[at..close].contains('['),
                    "{place} is not a link"
                );
                let after = &line[close + 1..];
                let url = if let Some(rest) = after.strip_prefix('(') {
                    rest.split(')').next().unwrap_or("").to_string()
                } else {
                    let label = match after.strip_prefix('[') {
                        Some(rest) if !rest.starts_with(']') => rest.split(']').next().unwrap(),
                        _ => &line[open + 1..close],
                    };
                    let label = label.to_lowercase();
                    definitions
                        .iter()
                        .find(|(l, _)| *l == label)
                        .map(|(_, url)| url.to_string())
                        .unwrap_or_else(|| {
                            panic!("{place}: the link [{label}] is not defined on the page")
                        })
                };
                assert!(
                    is_kip_url(&url, &number),
                    "{place} links to {url}, not to the KIP's cwiki page"
                );
            }
        }
    }
    assert!(checked > 0, "the book names no KIPs at all");
}

/// What the book's preprocessor makes of every page (the markdown mdBook
/// renders), and, when the book was built (CI builds it before the tests),
/// every HTML page: no line is an exercise marker.
#[test]
fn the_book_never_shows_an_exercise_marker() {
    let root = repo_root();
    let src = root.join("book/src");
    let paths = Paths {
        page_dir: src.clone(),
        src_dir: src.clone(),
        caption_root: root.clone(),
    };
    let mut folded = 0;
    for page in book_pages() {
        let text = preprocess_page(&fs::read_to_string(&page).unwrap(), &paths);
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(line) = text.lines().find(|l| is_marker(l)) {
            panic!("{name} shows an exercise marker: {line}");
        }
        assert!(
            !text.contains("{{#include ../../chapters/"),
            "{name}: a listing of a chapter was not expanded by the preprocessor"
        );
        folded += text.matches("Show the solution").count();
    }
    assert!(folded > 0, "no listing in the book folds a solution");

    let build = root.join("book/build");
    let mut pending = vec![build];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.map(|e| e.unwrap().path()) {
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "html") {
                let html = fs::read_to_string(&path).unwrap();
                assert!(
                    !html.contains("// exercise-"),
                    "{} shows an exercise marker (if this build is stale, rebuild it with \
                     `mdbook build book`)",
                    path.display()
                );
            }
        }
    }
}
