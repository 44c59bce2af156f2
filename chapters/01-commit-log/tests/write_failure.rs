//! A write that the operating system refuses poisons the log: it refuses
//! every later write until reopened, and reopening recovers what the disk
//! really holds.
//!
//! To make a real write fail, the test runs a child (this same test binary)
//! under `ulimit -f`, the shell's limit on file size: a write past the limit
//! fails with `EFBIG`. The shell ignores `SIGXFSZ` first, since by default
//! that signal kills a process that writes past the limit.

use std::env;
use std::process::Command;

use ch01_commit_log::{Config, Log, LogError};

const LOG_ENV: &str = "CH01_WRITE_FAILURE_LOG";
/// The child's file size limit, in the shell's 512-byte blocks.
const LIMIT_BLOCKS: u64 = 2;
/// A record bigger than the limit, so the flush that writes it fails.
const RECORD: usize = 2000;

/// Runs in the child, under the file size limit.
#[test]
#[ignore = "the child process of `a_failed_write_poisons_the_log_until_it_is_reopened`"]
fn write_failure_child() {
    let path = env::var(LOG_ENV).expect(
        "this is a child process; run `a_failed_write_poisons_the_log_until_it_is_reopened`",
    );
    let (mut log, _) = Log::open(&path, Config::default()).unwrap();
    log.append(b"fits").unwrap();
    log.sync().unwrap();

    log.append(&[1; RECORD]).unwrap();
    let err = log.flush().unwrap_err();
    assert!(matches!(err, LogError::Io { .. }), "{err}");
    // From here on, nothing more is written...
    for result in [log.append(b"more").map(drop), log.flush(), log.sync()] {
        assert!(matches!(result, Err(LogError::Failed { .. })), "{result:?}");
    }
    // ...what was synced can still be read, but not the record whose
    // write failed.
    assert_eq!(log.read(0).unwrap(), b"fits");
    assert!(matches!(log.read(1), Err(LogError::Failed { .. })));
    println!("child: poisoned as expected");
}

#[test]
fn a_failed_write_poisons_the_log_until_it_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limited.log");
    let test_binary = env::current_exe().unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {LIMIT_BLOCKS} && exec \"$0\" --ignored --exact write_failure_child --nocapture"
        ))
        .arg(&test_binary)
        .env(LOG_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The child's output is indented so that its own test summary is not
    // mistaken for this test's by tools that read `cargo test`'s output.
    let indent = |text: &[u8]| String::from_utf8_lossy(text).replace('\n', "\n    | ");
    assert!(
        output.status.success() && stdout.contains("child: poisoned as expected"),
        "the child failed:\n    | {}\n    | {}",
        indent(&output.stdout),
        indent(&output.stderr)
    );

    // The failed write may have left part of the big frame in the file (a
    // write can stop at the limit); reopening cuts it off.
    let (log, recovery) = Log::open(&path, Config::default()).unwrap();
    assert_eq!(log.next_offset(), 1, "{recovery}");
    assert_eq!(log.read(0).unwrap(), b"fits");
}
