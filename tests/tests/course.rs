//! The course's own consistency: the book includes code that exists, never
//! shows an exercise marker, and every chapter has its book page, exercise
//! and benchmark.
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
