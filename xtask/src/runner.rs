//! Running a package's tests one test binary at a time, each test under a
//! timeout, and reading every test's outcome and panic message.
//!
//! `cargo test` would wait forever on a learner's infinite loop, so the
//! runner builds the test binaries with `cargo test --no-run` and runs them
//! itself. A binary runs all its tests in parallel, under a watchdog that
//! kills it when no test has finished for `timeout`. The tests it had not
//! finished then run again one at a time, each under the timeout, so the one
//! that hangs is named; after [`MAX_TIMEOUTS`] of them in a binary the rest
//! are reported as not run rather than waited for. Doc tests run through
//! `cargo test --doc` under one overall timeout.
//!
//! A test alone runs with `--nocapture`, its stdout and stderr read, so
//! what it printed is known even when it is stopped: a hole's `todo!()` hit
//! in a task the test spawned (a server's) shows there, while the test
//! itself only sees a closed connection, or waits until it is stopped.
//! When grading, a failure whose output names no hole runs again alone for
//! that reason (its output may also have been lost with a stopped binary,
//! since libtest prints what it captured only at the end).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cargo::{cargo, run_captured};
use xtask::markers::SWITCH;

/// How many tests of one binary may time out before the rest are not run.
const MAX_TIMEOUTS: usize = 3;

/// What happened to one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Passed,
    /// It failed; its output (with the panic message) if libtest printed it.
    Failed(String),
    /// It ran longer than the timeout and was killed; what it printed
    /// until then (with `--nocapture`, every thread's panics).
    TimedOut(String),
    /// Not run: too many of its binary's tests had timed out already.
    NotRun,
    /// Marked `#[ignore]`.
    Ignored,
}

/// Every test of a package, by group (`src/lib.rs (unit tests)`,
/// `tests/log.rs`, `doc tests`) and name.
pub(crate) type Results = BTreeMap<String, BTreeMap<String, Outcome>>;

/// A test binary `cargo test --no-run` built.
#[derive(Debug)]
struct Binary {
    /// The group its tests are reported under.
    group: String,
    executable: PathBuf,
}

/// How much of the package to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode<'a> {
    /// Only list the tests (`Outcome::Passed` for each, `Ignored` where marked).
    List,
    /// Run everything.
    All,
    /// Stop at the first failing test, trying the unit tests first and
    /// then the integration tests named like the source file `first`
    /// (`tests/member.rs` for `src/member.rs`), if any: the likeliest to
    /// fail quickly when a hole in that file is cut. `switch`, for a
    /// [`Cut::Switch`](xtask::markers::Cut::Switch) build, is the cut to
    /// switch on: the tests run with [`SWITCH`] set to it.
    UntilFailure {
        first: Option<&'a str>,
        switch: Option<&'a str>,
    },
}

impl Mode<'_> {
    /// The value of [`SWITCH`] the tests run with, if any.
    fn switch(self) -> Option<(&'static str, String)> {
        match self {
            Mode::UntilFailure {
                switch: Some(cut), ..
            } => Some((SWITCH, cut.to_string())),
            _ => None,
        }
    }
}

/// Builds the tests of `package` in the workspace of `manifest` and lists
/// or runs them. Fails (with the compiler's errors) if they do not build.
pub(crate) fn run(
    root: &Path,
    manifest: &Path,
    package: &str,
    mode: Mode<'_>,
    timeout: Duration,
) -> Result<Results, String> {
    let package_dir = package_dir(manifest, package)?;
    let mut results = Results::new();
    // Until a failure, the unit tests are built and run alone first: a cut
    // they catch then needs no integration test built (a compile and a
    // link each). And a cut in src/member.rs tries tests/member.rs before
    // a slower test that would only hang on it until the timeout. Chapter
    // 5's cuts took 157 s this way instead of 309 s.
    let stages: &[&[&str]] = match mode {
        Mode::UntilFailure { .. } => &[&["--lib"], &[]],
        Mode::List | Mode::All => &[&[]],
    };
    for targets in stages {
        let mut binaries = build(root, manifest, package, &package_dir, targets)?;
        if let Mode::UntilFailure {
            first: Some(file), ..
        } = mode
        {
            let namesake = Path::new(file)
                .file_name()
                .map(|name| Path::new("tests").join(name).display().to_string());
            binaries.sort_by_key(|b| Some(&b.group) != namesake.as_ref());
        }
        for binary in binaries {
            if results.contains_key(&binary.group) {
                continue;
            }
            let outcomes = run_binary(&binary, &package_dir, mode, timeout)?;
            let failed = outcomes.values().any(|o| !is_fine(o));
            results.entry(binary.group).or_default().extend(outcomes);
            if failed && matches!(mode, Mode::UntilFailure { .. }) {
                return Ok(results);
            }
        }
    }
    let docs = doc_tests(root, manifest, package, mode, timeout)?;
    if !docs.is_empty() {
        results.insert("doc tests".into(), docs);
    }
    Ok(results)
}

/// Whether an outcome is not a failure.
pub(crate) fn is_fine(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Passed | Outcome::Ignored)
}

/// The folder of `package`: a member named like the package's folder, as
/// in the exercises (`ex01-commit-log` in `01-commit-log`), in a scratch
/// workspace (`grade/01-commit-log`, see
/// [`scratch_workspace`](crate::exercises::scratch_workspace)), or the
/// chapter's.
fn package_dir(manifest: &Path, package: &str) -> Result<PathBuf, String> {
    let workspace = manifest.parent().unwrap_or(Path::new("."));
    let name = &package[2..];
    let kind = workspace.file_name().unwrap_or_default();
    [
        workspace.join(name),
        workspace.join(kind).join(name),
        workspace.join("chapters").join(name),
    ]
    .into_iter()
    .find(|dir| dir.join("Cargo.toml").is_file())
    .ok_or_else(|| format!("no folder for package {package} in {}", workspace.display()))
}

/// `cargo test --no-run` of `targets` (all of them when empty), reading
/// the test binaries from its JSON messages.
fn build(
    root: &Path,
    manifest: &Path,
    package: &str,
    package_dir: &Path,
    targets: &[&str],
) -> Result<Vec<Binary>, String> {
    let mut args = vec![
        "test",
        "--no-run",
        "--package",
        package,
        "--message-format=json-render-diagnostics",
    ];
    args.extend(targets);
    let output = cargo(root, manifest, &args)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "the tests do not compile:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(executable), Some(src)) = (
            message["executable"].as_str(),
            message["target"]["src_path"].as_str(),
        ) else {
            continue;
        };
        if message["profile"]["test"] != true {
            continue;
        }
        let src = Path::new(src);
        let file = src.strip_prefix(package_dir).unwrap_or(src).display();
        let group = if message["target"]["kind"][0] == "test" {
            file.to_string()
        } else {
            format!("{file} (unit tests)")
        };
        binaries.push(Binary {
            group,
            executable: executable.into(),
        });
    }
    // Unit tests first: they are the quickest, and the first to fail.
    binaries.sort_by_key(|b| (!b.group.ends_with("(unit tests)"), b.group.clone()));
    Ok(binaries)
}

/// Lists or runs one binary's tests.
fn run_binary(
    binary: &Binary,
    dir: &Path,
    mode: Mode<'_>,
    timeout: Duration,
) -> Result<BTreeMap<String, Outcome>, String> {
    let listed = list(binary, dir, &[])?;
    let ignored: BTreeSet<String> = list(binary, dir, &["--ignored"])?.into_iter().collect();
    let mut outcomes: BTreeMap<String, Outcome> = listed
        .iter()
        .filter(|name| ignored.contains(*name))
        .map(|name| (name.clone(), Outcome::Ignored))
        .collect();
    if mode == Mode::List {
        for name in &listed {
            outcomes.entry(name.clone()).or_insert(Outcome::Passed);
        }
        return Ok(outcomes);
    }
    let until_failure = matches!(mode, Mode::UntilFailure { .. });
    outcomes.extend(watch(binary, dir, None, mode, timeout)?.outcomes);
    if until_failure && outcomes.values().any(|o| !is_fine(o)) {
        return Ok(outcomes);
    }
    let mut timeouts = 0;
    // Unfinished tests, and (when grading) failures not traced to a hole.
    let again: Vec<&String> = listed
        .iter()
        .filter(|n| match outcomes.get(*n) {
            None => true,
            Some(Outcome::Failed(output)) => mode == Mode::All && blocking_hole(output).is_none(),
            Some(_) => false,
        })
        .collect();
    for name in again {
        let earlier = outcomes.remove(name);
        if timeouts >= MAX_TIMEOUTS {
            outcomes.insert(name.clone(), earlier.unwrap_or(Outcome::NotRun));
            continue;
        }
        let Watched {
            outcomes: mut outcomes_alone,
            killed,
            output,
        } = watch(binary, dir, Some(name), mode, timeout)?;
        let alone = match outcomes_alone.remove(name) {
            Some(Outcome::Failed(_)) => Outcome::Failed(output),
            Some(outcome) => outcome,
            None if killed => {
                timeouts += 1;
                Outcome::TimedOut(output)
            }
            // It crashed the binary (an abort, a stack overflow).
            None => Outcome::Failed(format!("the test binary crashed in this test\n{output}")),
        };
        let outcome = match (earlier, alone) {
            (None, alone) => alone,
            // It failed with the others: it still counts as failed (as in
            // `cargo test`), with the output that names a hole if one does,
            // or any output if the first was lost with a stopped binary.
            (Some(Outcome::Failed(first)), Outcome::Failed(text) | Outcome::TimedOut(text))
                if blocking_hole(&text).is_some() || first.is_empty() =>
            {
                Outcome::Failed(text)
            }
            (Some(earlier), _) => earlier,
        };
        let fine = is_fine(&outcome);
        outcomes.insert(name.clone(), outcome);
        if until_failure && !fine {
            break;
        }
    }
    Ok(outcomes)
}

/// What [`watch`] saw.
struct Watched {
    /// The outcome of every test that finished.
    outcomes: BTreeMap<String, Outcome>,
    /// Whether the binary was killed: a test had not finished in time.
    killed: bool,
    /// For a test run alone, everything it printed, stdout and stderr.
    output: String,
}

/// The names `--list` prints (with `extra`, e.g. `--ignored` for the
/// ignored ones only).
fn list(binary: &Binary, dir: &Path, extra: &[&str]) -> Result<Vec<String>, String> {
    let output = Command::new(&binary.executable)
        .args(["--list", "--format", "terse"])
        .args(extra)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{}: {e}", binary.executable.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}

/// Runs the binary's tests, or only the test `alone` (uncaptured, reading
/// its stderr too), killing it once no test has finished for `timeout`, or
/// as soon as a test fails if `mode` runs until a failure.
fn watch(
    binary: &Binary,
    dir: &Path,
    alone: Option<&str>,
    mode: Mode<'_>,
    timeout: Duration,
) -> Result<Watched, String> {
    let mut command = Command::new(&binary.executable);
    command.envs(mode.switch());
    if let Some(name) = alone {
        // Two test threads keep libtest printing `test name ... result` as
        // one line once the test is done, whatever the test prints meanwhile.
        command.args(["--exact", name, "--nocapture", "--test-threads=2"]);
    }
    let mut child = command
        .env("CARGO_MANIFEST_DIR", dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if alone.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.executable.display()))?;
    let (sender, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut readers = vec![forward(stdout, sender.clone())];
    if let Some(stderr) = child.stderr.take() {
        readers.push(forward(stderr, sender.clone()));
    }
    drop(sender);
    let mut output = Vec::new();
    let mut last_progress = Instant::now();
    let mut killed = false;
    loop {
        let left = timeout.saturating_sub(last_progress.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) => {
                // `test name ... ok`, not libtest's "has been running long" notes.
                let finished = line.starts_with("test ") && line.contains(" ... ");
                if finished {
                    last_progress = Instant::now();
                }
                let failed = finished && line.ends_with(" ... FAILED");
                output.push(line);
                // Running until a failure needs only the failing test's
                // name, not the rest of the binary (some of it may hang
                // until the timeout) nor the panic message at its end.
                if failed && alone.is_none() && matches!(mode, Mode::UntilFailure { .. }) {
                    kill_tree(&mut child);
                    killed = true;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                kill_tree(&mut child);
                killed = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.wait();
    // A grandchild that outlived the kill could still hold stdout open, so
    // the readers are not joined after one.
    if !killed {
        for reader in readers {
            let _ = reader.join();
        }
    }
    Ok(Watched {
        outcomes: parse_results(&output),
        killed,
        output: if alone.is_some() {
            output.join("\n")
        } else {
            String::new()
        },
    })
}

/// Kills `child` and every process under it: a test's servers, a crash
/// test's writer, which would otherwise run on with nobody to stop them.
/// Each is stopped first (`SIGSTOP`), parents before their children, so that
/// none can start another process meanwhile; then they are all killed. The
/// processes under it are found in Linux's `/proc`; elsewhere only `child`
/// itself is killed.
fn kill_tree(child: &mut Child) {
    let mut tree = vec![child.id()];
    signal("STOP", &tree);
    let mut newest = tree.clone();
    while !newest.is_empty() {
        newest = children_of(&newest);
        signal("STOP", &newest);
        tree.extend(&newest);
    }
    signal("KILL", &tree);
    let _ = child.kill();
}

/// Sends signal `name` to `pids` with the `kill` command (the standard
/// library signals only its own children, and with `SIGKILL` only).
fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// The processes whose parent is one of `parents`, from each
/// `/proc/PID/stat` (its fourth field; the second, the command's name in
/// parentheses, may hold spaces).
fn children_of(parents: &[u32]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 1..];
            let parent: u32 = after_name.split_whitespace().nth(1)?.parse().ok()?;
            parents.contains(&parent).then_some(pid)
        })
        .collect()
}

/// Sends each line `from` prints to `to`, on a thread of its own.
fn forward(
    from: impl Read + Send + 'static,
    to: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if to.send(line).is_err() {
                break;
            }
        }
    })
}

/// Each test's outcome from libtest's output, with the captured output of
/// each failure (its `---- name stdout ----` section).
fn parse_results(lines: &[String]) -> BTreeMap<String, Outcome> {
    let mut outcomes = BTreeMap::new();
    let mut sections: BTreeMap<String, String> = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in lines {
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            section = Some(name.to_string());
            continue;
        }
        if line == "failures:" || line.starts_with("test result: ") {
            section = None;
        }
        if let Some(name) = &section {
            let text = sections.entry(name.clone()).or_default();
            text.push_str(line);
            text.push('\n');
            continue;
        }
        let Some((name, result)) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.split_once(" ... "))
        else {
            continue;
        };
        let outcome = match result {
            "ok" => Outcome::Passed,
            "FAILED" => Outcome::Failed(String::new()),
            ignored if ignored.starts_with("ignored") => Outcome::Ignored,
            _ => continue,
        };
        outcomes.insert(name.to_string(), outcome);
    }
    for (name, text) in sections {
        if let Some(Outcome::Failed(output)) = outcomes.get_mut(&name) {
            *output = text;
        }
    }
    outcomes
}

/// Runs (or lists) the doc tests through `cargo test --doc`, under one
/// overall timeout of three times `timeout`. A doc test's name ends with
/// its line, which moves as a learner writes code, so the line is dropped
/// (and a repeated name numbered).
fn doc_tests(
    root: &Path,
    manifest: &Path,
    package: &str,
    mode: Mode<'_>,
    timeout: Duration,
) -> Result<BTreeMap<String, Outcome>, String> {
    let mut command = cargo(root, manifest, &["test", "--doc", "--package", package]);
    command.envs(mode.switch());
    if mode == Mode::List {
        command.args(["--", "--list", "--format", "terse"]);
        let (_, output) = run_captured(command)?;
        let names = output.lines().filter_map(|l| l.strip_suffix(": test"));
        return Ok(renumber(names.map(|n| (n.to_string(), Outcome::Passed))));
    }
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = command.spawn().map_err(|e| format!("cargo: {e}"))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (sender, done) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = sender.send(text);
    });
    let text = match done.recv_timeout(timeout * 3) {
        Ok(text) => text,
        Err(_) => {
            kill_tree(&mut child);
            let _ = child.wait();
            return Ok(BTreeMap::from([(
                "(all doc tests)".to_string(),
                Outcome::TimedOut(String::new()),
            )]));
        }
    };
    let _ = child.wait();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    Ok(renumber(parse_results(&lines).into_iter()))
}

/// Drops the ` (line N)` of doc test names, numbering repeats: `a`, `a #2`.
fn renumber(tests: impl Iterator<Item = (String, Outcome)>) -> BTreeMap<String, Outcome> {
    let mut sorted: Vec<(String, Outcome)> = tests.collect();
    let line_of = |name: &str| -> u64 {
        name.rsplit_once("(line ")
            .and_then(|(_, n)| n.trim_end_matches(')').parse().ok())
            .unwrap_or(0)
    };
    sorted.sort_by_key(|(name, _)| line_of(name));
    let mut out = BTreeMap::new();
    for (name, outcome) in sorted {
        let base = match name.rsplit_once(" (line ") {
            Some((base, _)) => base,
            None => &name,
        };
        // The file is named from the workspace root (`chapters/01-x/src/..`
        // for the solution, `01-x/src/..` for an exercise): keep `src/..`.
        let base = match base.find("src/") {
            Some(at) => base[at..].to_string(),
            None => base.to_string(),
        };
        let mut key = base.clone();
        let mut n = 1;
        while out.contains_key(&key) {
            n += 1;
            key = format!("{base} #{n}");
        }
        out.insert(key, outcome);
    }
    out
}

/// The hole whose `todo!()` a failure's output names: the panic message of
/// a cut region is `exercise `<id>`: <hint>`.
pub(crate) fn blocking_hole(output: &str) -> Option<&str> {
    let start = output.find("exercise `")? + "exercise `".len();
    let len = output[start..].find('`')?;
    Some(&output[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_panic_messages_are_read() {
        let output: Vec<String> = "\
running 3 tests
test a ... ok
test b ... FAILED
test c ... ignored, only as a child

failures:

---- b stdout ----

thread 'b' panicked at src/frame.rs:12:5:
not yet implemented: exercise `scan`: Loop from position 0.

failures:
    b

test result: FAILED. 1 passed; 1 failed; 1 ignored"
            .lines()
            .map(str::to_string)
            .collect();
        let results = parse_results(&output);
        assert_eq!(results["a"], Outcome::Passed);
        assert_eq!(results["c"], Outcome::Ignored);
        let Outcome::Failed(text) = &results["b"] else {
            panic!("b failed")
        };
        assert_eq!(blocking_hole(text), Some("scan"));
        assert_eq!(blocking_hole("assertion failed"), None);
    }

    /// A stand-in for a test binary whose tests `a` and `b` hit hole
    /// `join` in a task of their own: `a` then fails, `b` waits forever.
    /// Run together, the binary is stopped before libtest prints what it
    /// captured; run alone, each one's panic is read from its stderr.
    /// Until a failure, a binary is stopped at its first failing test, with
    /// whatever it started (here a `sleep` standing for a test's server),
    /// and its tests see the cut that is switched on.
    #[test]
    #[cfg(target_os = "linux")]
    fn running_until_a_failure_stops_the_binary_and_what_it_started() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-tests");
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
case "$*" in
  *--ignored*) exit 0 ;;
  *--list*) echo "a: test"; echo "b: test"; exit 0 ;;
esac
echo "${SWITCH}" > switch
sleep 300 &
echo $! > server
echo "test a ... FAILED"
exec sleep 300
"#
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let binary = Binary {
            group: "tests/c.rs".into(),
            executable: script,
        };
        let mode = Mode::UntilFailure {
            first: None,
            switch: Some("scan"),
        };
        // Had it not stopped at `a`, `b` would have run alone after the
        // timeout, and timed out.
        let outcomes = run_binary(&binary, dir.path(), mode, Duration::from_secs(60)).unwrap();
        assert_eq!(outcomes.keys().collect::<Vec<_>>(), ["a"]);
        assert!(matches!(outcomes["a"], Outcome::Failed(_)));
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("switch").trim(), "scan");
        // Killed, then reaped by whoever adopted it: gone, or a zombie.
        let server = read("server").trim().to_string();
        let running = || {
            std::fs::read_to_string(format!("/proc/{server}/stat")).is_ok_and(|stat| {
                !stat[stat.rfind(')').unwrap() + 1..]
                    .trim_start()
                    .starts_with('Z')
            })
        };
        for _ in 0..100 {
            if !running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!running(), "the test binary's child {server} runs on");
    }

    #[test]
    #[cfg(unix)]
    fn a_hole_hit_in_another_thread_is_traced_even_when_the_binary_is_stopped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-tests");
        std::fs::write(
            &script,
            r#"#!/bin/sh
case "$*" in
  *--ignored*) exit 0 ;;
  *--list*) echo "a: test"; echo "b: test"; exit 0 ;;
esac
hole() {
  echo "thread 'tokio-rt-worker' panicked at src/c.rs:1:1:" >&2
  echo "not yet implemented: exercise \`join\`: Join." >&2
}
case "$*" in
  *"--exact a"*) hole; echo "test a ... FAILED"; exit 101 ;;
  *"--exact b"*) hole; exec sleep 10 ;;
esac
echo "test a ... FAILED"
exec sleep 10
"#,
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let binary = Binary {
            group: "tests/c.rs".into(),
            executable: script,
        };
        let outcomes = run_binary(&binary, dir.path(), Mode::All, Duration::from_secs(1)).unwrap();
        let Outcome::Failed(a) = &outcomes["a"] else {
            panic!("a failed: {outcomes:?}")
        };
        assert_eq!(blocking_hole(a), Some("join"));
        let Outcome::TimedOut(b) = &outcomes["b"] else {
            panic!("b timed out: {outcomes:?}")
        };
        assert_eq!(blocking_hole(b), Some("join"));
    }

    #[test]
    fn doc_test_names_lose_their_lines() {
        let names = [
            ("chapters/01-x/src/lib.rs - f (line 30)", Outcome::Passed),
            ("01-x/src/lib.rs - f (line 9)", Outcome::Ignored),
            ("src/lib.rs - g (line 4)", Outcome::Passed),
        ];
        let out = renumber(names.into_iter().map(|(n, o)| (n.to_string(), o)));
        assert_eq!(out["src/lib.rs - f"], Outcome::Ignored);
        assert_eq!(out["src/lib.rs - f #2"], Outcome::Passed);
        assert_eq!(out["src/lib.rs - g"], Outcome::Passed);
    }
}
