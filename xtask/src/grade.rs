//! Grading an exercise with the course's tests: a score per test group,
//! and the holes in the book's order with the tests that wait on each.
//!
//! The learner's exercise is copied into `target/xtask/grade/`; the
//! chapter's own `tests/` and manifest go over the copy, so the integration
//! tests are the course's. The expected tests are the solution's (the
//! chapter's), so a test the learner deleted, renamed or `#[ignore]`d is
//! counted as failed. Unit tests live inside the learner's `src/`: they are
//! checked by name (all must run and pass), not by content.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::exercises::{Exercise, Files, chapter_files, exercise, scratch_workspace};
use crate::runner::{self, Mode, Outcome, Results, blocking_hole};
use crate::{Chapter, chapters, find_chapter};
use xtask::markers::Cut;

/// What became of one of the solution's tests.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Passed,
    /// It failed on the `todo!()` of this hole.
    Waits(String),
    /// It failed, and no hole's `todo!()` was hit (not in the test, nor in
    /// a task it spawned); the first line of its panic message.
    Failed(String),
    /// It was stopped after the timeout, with no hole's `todo!()` hit.
    TimedOut,
    NotRun,
    /// The learner's copy marks it `#[ignore]`.
    Ignored,
    /// The learner's copy does not have it.
    Missing,
}

/// A graded exercise.
#[derive(Debug)]
struct Report {
    /// Per group, each expected test's status.
    groups: BTreeMap<String, BTreeMap<String, Status>>,
    /// The holes whose `todo!()` is still in the graded code.
    unwritten: Vec<String>,
}

impl Report {
    fn statuses(&self) -> impl Iterator<Item = &Status> {
        self.groups.values().flat_map(|g| g.values())
    }

    fn passed(&self) -> usize {
        self.statuses().filter(|s| **s == Status::Passed).count()
    }

    fn total(&self) -> usize {
        self.statuses().count()
    }

    /// Whether hole `id` is written and no test waits on it.
    fn done(&self, id: &str) -> bool {
        self.waiting_on(id) == 0 && !self.unwritten.iter().any(|h| h == id)
    }

    /// How many tests failed (or timed out) with no hole to blame.
    fn untraced(&self) -> usize {
        self.statuses()
            .filter(|s| matches!(s, Status::Failed(_) | Status::TimedOut))
            .count()
    }

    /// How many tests wait on hole `id`.
    fn waiting_on(&self, id: &str) -> usize {
        self.statuses()
            .filter(|s| matches!(s, Status::Waits(h) if h == id))
            .count()
    }
}

/// Grades the exercise for `wanted` (in `exercises_dir`), or the chapter
/// itself with `solution`, and prints the report. Fails unless every test
/// passes, so scripts can grade by exit code.
pub(crate) fn run(
    root: &Path,
    exercises_dir: &Path,
    wanted: &str,
    solution: bool,
    timeout: Duration,
) -> Result<(), String> {
    let chapter = find_chapter(root, wanted)?;
    let exercise = exercise(root, &chapter)?;
    let what = if solution { "solution" } else { "exercise" };
    println!(
        "grading the {what} of chapter {} with the course's tests...",
        chapter.dir_name
    );
    let report = grade(root, exercises_dir, &exercise, solution, timeout)?;
    print_report(&report, &exercise);
    let (passed, total) = (report.passed(), report.total());
    if passed < total {
        Err(format!("{} of {total} tests still fail", total - passed))
    } else {
        println!("every test passes: chapter {} is done", chapter.dir_name);
        Ok(())
    }
}

/// Grades every chapter's exercise and prints one line each.
pub(crate) fn all(root: &Path, exercises_dir: &Path, timeout: Duration) -> Result<(), String> {
    let mut rows = Vec::new();
    for chapter in chapters(root)? {
        let exercise = exercise(root, &chapter)?;
        eprintln!("grading {}...", chapter.dir_name);
        let row = match grade(root, exercises_dir, &exercise, false, timeout) {
            Ok(report) => {
                let done = exercise.holes.iter().filter(|h| report.done(&h.id)).count();
                let next = next_hole(&report, &exercise)
                    .map(|(id, file, n)| format!("`{id}` in {file} ({n} tests wait)"))
                    .unwrap_or_else(|| "-".into());
                let untraced = match report.untraced() {
                    0 => String::new(),
                    n => format!("; {n} failed, not traced to a hole"),
                };
                format!(
                    "{:>4}/{:<4} {:>3}%  {done}/{} holes  next: {next}{untraced}",
                    report.passed(),
                    report.total(),
                    report.passed() * 100 / report.total().max(1),
                    exercise.holes.len()
                )
            }
            Err(e) => format!("not graded: {}", e.lines().next().unwrap_or_default()),
        };
        rows.push((chapter.dir_name.clone(), row));
    }
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    println!("{:width$}  tests       holes", "chapter");
    for (name, row) in rows {
        println!("{name:width$}  {row}");
    }
    Ok(())
}

/// Runs the course's tests on the exercise (or the solution) and compares
/// with the solution's list of tests.
fn grade(
    root: &Path,
    exercises_dir: &Path,
    exercise: &Exercise,
    solution: bool,
    timeout: Duration,
) -> Result<Report, String> {
    let chapter = &exercise.chapter;
    let root_manifest = root.join("Cargo.toml");
    let expected = runner::run(
        root,
        &root_manifest,
        &chapter.package(),
        Mode::List,
        timeout,
    )?;
    let (actual, unwritten) = if solution {
        let results = runner::run(root, &root_manifest, &chapter.package(), Mode::All, timeout)?;
        (results, Vec::new())
    } else {
        let learner = exercises_dir.join(&chapter.dir_name);
        if !learner.is_dir() {
            return Err(format!(
                "no exercise {} in {}; generate it with `cargo xtask exercises`",
                chapter.dir_name,
                exercises_dir.display()
            ));
        }
        let files = graded_files(&learner, chapter)?;
        let unwritten = exercise
            .holes
            .iter()
            .filter(|h| {
                let todo = format!("todo!(\"exercise `{}`:", h.id);
                files
                    .get(Path::new(&h.file))
                    .is_some_and(|text| String::from_utf8_lossy(text).contains(&todo))
            })
            .map(|h| h.id.clone())
            .collect();
        let scratch = root.join("target/xtask/grade");
        let manifest = scratch_workspace(root, &scratch, chapter, files)?;
        let results = runner::run(
            root,
            &manifest,
            &chapter.exercise_package(),
            Mode::All,
            timeout,
        )?;
        (results, unwritten)
    };
    let mut report = compare(&expected, &actual);
    report.unwritten = unwritten;
    Ok(report)
}

/// The learner's files, but the course's `tests/` and `Cargo.toml`.
fn graded_files(learner: &Path, chapter: &Chapter) -> Result<Files, String> {
    let course = chapter_files(chapter, Cut::All)?;
    let mut files = Files::new();
    for relative in crate::exercises::source_files(learner)? {
        if relative.starts_with("tests") || relative == Path::new("Cargo.toml") {
            continue;
        }
        let path = learner.join(&relative);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        files.insert(relative, bytes);
    }
    for (relative, bytes) in course {
        if relative.starts_with("tests") || relative == Path::new("Cargo.toml") {
            files.insert(relative, bytes);
        }
    }
    Ok(files)
}

/// Each test the solution runs, with what happened to it in `actual`.
fn compare(expected: &Results, actual: &Results) -> Report {
    let mut groups = BTreeMap::new();
    for (group, tests) in expected {
        let mut statuses = BTreeMap::new();
        for (name, listed) in tests {
            if *listed == Outcome::Ignored {
                // The solution ignores it too (a crash test's child, say).
                continue;
            }
            let status = match actual.get(group).and_then(|g| g.get(name)) {
                None => Status::Missing,
                Some(Outcome::Passed) => Status::Passed,
                Some(Outcome::Ignored) => Status::Ignored,
                // A test stopped after hitting a hole (a server task's, say)
                // waits on it, like one that failed on it.
                Some(Outcome::TimedOut(output)) => match blocking_hole(output) {
                    Some(hole) => Status::Waits(hole.to_string()),
                    None => Status::TimedOut,
                },
                Some(Outcome::NotRun) => Status::NotRun,
                Some(Outcome::Failed(output)) => match blocking_hole(output) {
                    Some(hole) => Status::Waits(hole.to_string()),
                    None => Status::Failed(panic_line(output)),
                },
            };
            statuses.insert(name.clone(), status);
        }
        groups.insert(group.clone(), statuses);
    }
    Report {
        groups,
        unwritten: Vec::new(),
    }
}

/// The first line of a failure's panic message, or of its output.
fn panic_line(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let after_panic = lines
        .iter()
        .position(|l| l.contains("panicked at"))
        .map_or(0, |i| i + 1);
    lines
        .get(after_panic)
        .or(lines.first())
        .map_or_else(String::new, |l| l.to_string())
}

/// The first hole, in the book's order, not done yet: its id, file and
/// the number of tests waiting on it.
fn next_hole<'a>(report: &Report, exercise: &'a Exercise) -> Option<(&'a str, &'a str, usize)> {
    exercise
        .holes
        .iter()
        .find(|h| !report.done(&h.id))
        .map(|h| (h.id.as_str(), h.file.as_str(), report.waiting_on(&h.id)))
}

fn print_report(report: &Report, exercise: &Exercise) {
    let width = report.groups.keys().map(String::len).max().unwrap_or(0);
    for (group, statuses) in &report.groups {
        let passed = statuses.values().filter(|s| **s == Status::Passed).count();
        println!("  {group:width$}  {passed:>3}/{:<3}", statuses.len());
        for (name, status) in statuses {
            let why = match status {
                Status::Passed | Status::Waits(_) => continue,
                Status::Failed(message) if message.is_empty() => {
                    "failed, not traced to a hole (no panic message)".into()
                }
                Status::Failed(message) => format!("failed, not traced to a hole: {message}"),
                Status::TimedOut => {
                    "timed out (an infinite loop, or a wait that never ends?)".into()
                }
                Status::NotRun => "not run: too many tests of this binary timed out".into(),
                Status::Ignored => "ignored in your copy: it counts as failed".into(),
                Status::Missing => "missing from your copy: it counts as failed".into(),
            };
            println!("  {:width$}    {name}: {why}", "");
        }
    }
    let (passed, total) = (report.passed(), report.total());
    println!(
        "  {:width$}  {passed:>3}/{total:<3} ({}%)",
        "total",
        passed * 100 / total.max(1)
    );
    match report.untraced() {
        0 => {}
        1 => println!("  1 test failed, not traced to a hole (above)"),
        n => println!("  {n} tests failed, not traced to a hole (above)"),
    }
    println!("\nholes, in the book's order:");
    let chapter = exercise.chapter.number();
    for hole in &exercise.holes {
        let waiting = report.waiting_on(&hole.id);
        let state = match waiting {
            _ if report.done(&hole.id) => "done".to_string(),
            0 => "to write (its tests wait on an earlier hole)".to_string(),
            1 => "to write: 1 test waits on it".to_string(),
            n => format!("to write: {n} tests wait on it"),
        };
        println!("  {:16} {:24} {state}", format!("`{}`", hole.id), hole.file);
    }
    if let Some((id, file, n)) = next_hole(report, exercise) {
        println!(
            "\nnext: `{id}` in {file} ({n} test{} wait on it); a hint: cargo xtask hint {chapter} {id}",
            if n == 1 { "" } else { "s" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_ignored_and_blocked_tests_do_not_pass() {
        let expected: Results = BTreeMap::from([(
            "tests/a.rs".to_string(),
            BTreeMap::from([
                ("ok".to_string(), Outcome::Passed),
                ("deleted".to_string(), Outcome::Passed),
                ("ignored".to_string(), Outcome::Passed),
                ("blocked".to_string(), Outcome::Passed),
                ("wrong".to_string(), Outcome::Passed),
                ("stopped".to_string(), Outcome::Passed),
                ("hung".to_string(), Outcome::Passed),
                ("child".to_string(), Outcome::Ignored),
            ]),
        )]);
        let todo = "thread 'blocked' panicked at src/a.rs:1:1:\n\
                    not yet implemented: exercise `scan`: Loop.\n";
        let wrong = "thread 'wrong' panicked at src/a.rs:1:1:\nassertion failed: x\n";
        let actual: Results = BTreeMap::from([(
            "tests/a.rs".to_string(),
            BTreeMap::from([
                ("ok".to_string(), Outcome::Passed),
                ("ignored".to_string(), Outcome::Ignored),
                ("blocked".to_string(), Outcome::Failed(todo.into())),
                ("wrong".to_string(), Outcome::Failed(wrong.into())),
                // Stopped after a server task hit the hole.
                ("stopped".to_string(), Outcome::TimedOut(todo.into())),
                ("hung".to_string(), Outcome::TimedOut(String::new())),
                ("extra".to_string(), Outcome::Passed),
            ]),
        )]);
        let report = compare(&expected, &actual);
        let group = &report.groups["tests/a.rs"];
        assert_eq!(group["deleted"], Status::Missing);
        assert_eq!(group["ignored"], Status::Ignored);
        assert_eq!(group["blocked"], Status::Waits("scan".into()));
        assert_eq!(group["wrong"], Status::Failed("assertion failed: x".into()));
        assert_eq!(group["stopped"], Status::Waits("scan".into()));
        assert_eq!(group["hung"], Status::TimedOut);
        assert!(!group.contains_key("child") && !group.contains_key("extra"));
        assert_eq!((report.passed(), report.total()), (1, 7));
        assert_eq!(report.waiting_on("scan"), 2);
        assert_eq!(report.untraced(), 2);
    }
}
