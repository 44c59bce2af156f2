//! Grading an exercise: run its tests and print a score per test group.

use std::path::Path;

use crate::cargo::{cargo, parse_test_output, run_captured};
use crate::exercises::seed_lockfile;
use crate::find_chapter;

/// Runs the tests of the exercise for `wanted` (in `exercises_dir`), or of
/// the chapter itself with `solution`, and prints the score. Fails unless
/// every test passes, so scripts can grade by exit code.
pub(crate) fn run(
    root: &Path,
    exercises_dir: &Path,
    wanted: &str,
    solution: bool,
) -> Result<(), String> {
    let chapter = find_chapter(root, wanted)?;
    let (manifest, package, what) = if solution {
        (root.join("Cargo.toml"), chapter.package(), "solution")
    } else {
        if !exercises_dir.join(&chapter.dir_name).is_dir() {
            return Err(format!(
                "no exercise {} in {}; generate it with `cargo xtask exercises`",
                chapter.dir_name,
                exercises_dir.display()
            ));
        }
        seed_lockfile(root, exercises_dir, false)?;
        (
            exercises_dir.join("Cargo.toml"),
            chapter.exercise_package(),
            "exercise",
        )
    };
    println!("grading the {what} of chapter {}...", chapter.dir_name);
    let (succeeded, output) = run_captured(cargo(
        root,
        &manifest,
        &["test", "--no-fail-fast", "--package", &package],
    ))?;
    let groups = parse_test_output(&output);
    if groups.is_empty() {
        return Err(format!("no test ran; this is what cargo said:\n{output}"));
    }

    let width = groups
        .iter()
        .map(|g| g.name.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let (mut passed, mut total) = (0, 0);
    for group in &groups {
        let all = group.passed + group.failed;
        println!("  {:width$}  {:>3}/{:<3}", group.name, group.passed, all);
        for failure in &group.failures {
            println!("  {:width$}    failing: {failure}", "");
        }
        passed += group.passed;
        total += all;
    }
    println!(
        "  {:width$}  {:>3}/{:<3} ({}%)",
        "total",
        passed,
        total,
        passed * 100 / total
    );
    if passed < total {
        Err(format!("{} of {total} tests still fail", total - passed))
    } else if !succeeded {
        // Every result that was printed passed, yet cargo failed: a test
        // binary crashed (a stack overflow, an abort) before reporting.
        Err(format!(
            "cargo test failed although no test reported a failure:\n{output}"
        ))
    } else {
        println!("every test passes: chapter {} is done", chapter.dir_name);
        Ok(())
    }
}
