//! Running cargo and reading what `cargo test` reports.

use std::io::Read;
use std::path::Path;
use std::process::Command;

/// A `cargo` command for the workspace whose manifest is `manifest`,
/// building into the root's `target/` so that the exercises reuse the
/// dependencies the chapters already compiled.
pub(crate) fn cargo(root: &Path, manifest: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args(args)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(root.join("target"));
    command
}

/// Runs `command` and returns whether it succeeded and everything it printed,
/// stdout and stderr interleaved in the order they were written (cargo names
/// each test binary on stderr and the binary reports on stdout).
pub(crate) fn run_captured(mut command: Command) -> Result<(bool, String), String> {
    let (mut reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
    let writer_clone = writer.try_clone().map_err(|e| e.to_string())?;
    command.stdout(writer).stderr(writer_clone);
    let mut child = command.spawn().map_err(|e| format!("{command:?}: {e}"))?;
    // The command holds the only write ends now; drop ours so the read ends.
    drop(command);
    let mut output = String::new();
    reader
        .read_to_string(&mut output)
        .map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    Ok((status.success(), output))
}

/// The results of one test binary (or of the doc tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    /// What was tested: `src/lib.rs (unit tests)`, `tests/log.rs`, `doc tests`.
    pub(crate) name: String,
    pub(crate) passed: u32,
    pub(crate) failed: u32,
    /// The names of the tests that failed.
    pub(crate) failures: Vec<String>,
}

/// Reads the interleaved output of `cargo test` into one [`Group`] per test
/// binary that reported a result.
pub(crate) fn parse_test_output(output: &str) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut current: Option<Group> = None;
    for raw in output.lines() {
        // cargo indents its own lines ("     Running ..."); libtest prints
        // its results at column 0. A test's captured output (a child
        // process's summary quoted in a panic message, say) is only read
        // as results if it is at column 0 too, so tests indent what they quote.
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix("Running ") {
            // `Running unittests src/lib.rs (target/...)` or `Running tests/log.rs (target/...)`
            let target = rest.split(" (").next().unwrap_or(rest);
            let name = match target.strip_prefix("unittests ") {
                Some(file) => format!("{file} (unit tests)"),
                None => target.to_string(),
            };
            current = Some(Group {
                name,
                ..Group::default()
            });
        } else if line.starts_with("Doc-tests ") {
            current = Some(Group {
                name: "doc tests".into(),
                ..Group::default()
            });
        } else if let Some(name) = raw
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            if let Some(group) = current.as_mut() {
                group.failures.push(name.to_string());
            }
        } else if let Some(summary) = raw.strip_prefix("test result: ")
            && let Some(mut group) = current.take()
        {
            group.passed = count(summary, "passed");
            group.failed = count(summary, "failed");
            if group.passed + group.failed > 0 {
                groups.push(group);
            }
        }
    }
    groups
}

/// The number before `word` in a summary like `ok. 3 passed; 1 failed; ...`.
fn count(summary: &str, word: &str) -> u32 {
    summary
        .split(';')
        .filter_map(|part| part.trim().rsplit(". ").next())
        .find_map(|part| part.strip_suffix(word)?.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
   Compiling ex01-commit-log v0.1.0
     Running unittests src/lib.rs (target/debug/deps/ch01_commit_log-1)

running 2 tests
test frame::tests::a ... ok
test frame::tests::b ... FAILED

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

     Running tests/crash.rs (target/debug/deps/crash-2)

running 2 tests
test crash_child ... ignored
test records_synced_before_sigkill_survive ... ok

test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.45s

     Running tests/empty.rs (target/debug/deps/empty-3)

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests ch01_commit_log

running 1 test
test chapters/01-commit-log/src/lib.rs - (line 9) ... FAILED

test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s
";

    #[test]
    fn groups_follow_the_binaries_and_skip_empty_ones() {
        let groups = parse_test_output(OUTPUT);
        let summary: Vec<_> = groups
            .iter()
            .map(|g| (g.name.as_str(), g.passed, g.failed))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("src/lib.rs (unit tests)", 1, 1),
                ("tests/crash.rs", 1, 0),
                ("doc tests", 0, 1),
            ]
        );
        assert_eq!(groups[0].failures, vec!["frame::tests::b"]);
        assert_eq!(
            groups[2].failures,
            vec!["chapters/01-commit-log/src/lib.rs - (line 9)"]
        );
    }

    #[test]
    fn indented_lines_are_a_tests_output_not_results() {
        let output = "     Running tests/a.rs (x)\n\
                      ---- parent stdout ----\n    | test child ... FAILED\n    | test result: FAILED. 0 passed; 1 failed\n\
                      test parent ... ok\n\
                      test result: ok. 1 passed; 0 failed; 0 ignored\n";
        let groups = parse_test_output(output);
        assert_eq!(groups.len(), 1);
        assert_eq!((groups[0].passed, groups[0].failed), (1, 0));
        assert!(groups[0].failures.is_empty());
    }

    #[test]
    fn counts_are_read_by_their_word() {
        assert_eq!(count("ok. 12 passed; 0 failed; 3 ignored", "passed"), 12);
        assert_eq!(count("FAILED. 1 passed; 7 failed; 0 ignored", "failed"), 7);
        assert_eq!(count("nonsense", "passed"), 0);
    }
}
