//! What the shell's tests share: `replica-node` processes, waiting for a
//! condition, and the history checker.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::{TopicPartition, TopicStore};
use ch06_replication::disk::{REPLICATION_OFFSET_CHECKPOINT, read_offset_checkpoint};
use tokio::time::Instant;

/// Waits until `condition` holds, looking every few milliseconds, and
/// fails the test with `what` if it does not within `timeout`.
pub(crate) async fn wait_until(
    what: &str,
    timeout: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `replica-node` process; killed (SIGKILL) when dropped if still running.
pub(crate) struct Node {
    child: Option<Child>,
    /// The broker's address, if it runs a broker.
    pub(crate) broker: Option<String>,
    /// The controller's address, if it runs one.
    pub(crate) controller: Option<String>,
    /// Its stderr, for a failing test to show.
    pub(crate) log: PathBuf,
}

impl Node {
    /// Starts `replica-node` with `args`, its stderr in `log`, and reads
    /// the addresses from the line it prints.
    pub(crate) fn start(args: &[String], log: &Path) -> Node {
        let stderr = File::options().create(true).append(true).open(log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_replica-node"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let find = |role| {
            words
                .chunks(2)
                .find(|pair| pair[0] == role)
                .map(|pair| pair[1].to_string())
        };
        let node = Node {
            broker: find("broker"),
            controller: find("controller"),
            child: Some(child),
            log: log.to_path_buf(),
        };
        assert!(
            node.broker.is_some() || node.controller.is_some(),
            "no address in {line:?}; see {}",
            log.display()
        );
        node
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    /// Sends a signal with the `kill` command (no `unsafe` for libc).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// SIGKILL: the process dies at once, its page cache kept by the OS.
    pub(crate) fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and waits for a clean exit.
    pub(crate) fn stop(&mut self) {
        self.signal("TERM");
        let status = self.child.take().expect("running").wait().unwrap();
        assert!(
            status.success(),
            "unclean exit {status}; see {}",
            self.log.display()
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Cleaning up after a test that failed: nothing to report.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The timing knobs every process test uses: short, so that failover takes
/// about two seconds, and loose enough for a loaded machine.
pub(crate) fn broker_flags() -> Vec<String> {
    [
        "--heartbeat-interval-ms=100",
        "--replica-lag-time-max-ms=2000",
        "--replica-fetch-wait-max-ms=100",
        "--replica-fetch-backoff-ms=50",
        "--high-watermark-checkpoint-interval-ms=100",
        "--request-timeout-ms=2000",
    ]
    .map(String::from)
    .to_vec()
}

/// Prints the tail of each log if the test is failing.
pub(crate) struct ShowLogsOnFailure(pub(crate) Vec<PathBuf>);

impl Drop for ShowLogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.0 {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("--- {} (last 40 lines)", log.display());
                for line in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// One acknowledged write: its value, where it was acknowledged, and how
/// many times it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Acked {
    pub(crate) value: String,
    pub(crate) offset: u64,
    pub(crate) attempts: u32,
}

/// What the checker found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) acknowledged: usize,
    /// Acknowledged records not at their acknowledged offset.
    pub(crate) lost: Vec<Acked>,
    /// Values present more than once though sent only once.
    pub(crate) unexplained_duplicates: Vec<String>,
    /// Extra copies of values that were sent more than once (allowed:
    /// there is no idempotence yet).
    pub(crate) retried_duplicates: usize,
}

/// Checks a history against the log read back: every acknowledged record
/// must be at the offset it was acknowledged at, and a value may appear
/// more than once only if it was sent more than once.
pub(crate) fn check_history(acked: &[Acked], log: &[(u64, String)]) -> Verdict {
    let at: BTreeMap<u64, &str> = log.iter().map(|(o, v)| (*o, v.as_str())).collect();
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for (_, value) in log {
        *copies.entry(value).or_default() += 1;
    }
    let lost = acked
        .iter()
        .filter(|a| at.get(&a.offset) != Some(&a.value.as_str()))
        .cloned()
        .collect();
    let sent_once: HashMap<&str, bool> = acked
        .iter()
        .map(|a| (a.value.as_str(), a.attempts == 1))
        .collect();
    let mut unexplained_duplicates = Vec::new();
    let mut retried_duplicates = 0;
    for (value, n) in &copies {
        if *n > 1 {
            match sent_once.get(value) {
                Some(true) => unexplained_duplicates.push(value.to_string()),
                _ => retried_duplicates += n - 1,
            }
        }
    }
    unexplained_duplicates.sort();
    Verdict {
        acknowledged: acked.len(),
        lost,
        unexplained_duplicates,
        retried_duplicates,
    }
}

/// Every record of `tp` in the store at `dir` (opened after its broker
/// stopped), with the high watermark its broker checkpointed.
pub(crate) fn read_replica(dir: &Path, tp: &TopicPartition) -> (Vec<(u64, String)>, u64) {
    let (store, _) = TopicStore::open(dir).unwrap();
    let log = store.log(&tp.topic, tp.partition).unwrap();
    let mut records = Vec::new();
    for batch in log.read(log.log_start_offset(), u64::MAX).unwrap() {
        for (offset, record) in batch.records().unwrap() {
            records.push((offset, value(&record)));
        }
    }
    let hws = read_offset_checkpoint(&dir.join(REPLICATION_OFFSET_CHECKPOINT)).unwrap();
    (records, hws.get(tp).copied().unwrap_or(0))
}

/// The high watermark a broker last checkpointed for `tp` (0 if none yet).
pub(crate) fn checkpointed_high_watermark(dir: &Path, tp: &TopicPartition) -> u64 {
    read_offset_checkpoint(&dir.join(REPLICATION_OFFSET_CHECKPOINT))
        .map(|hws| hws.get(tp).copied().unwrap_or(0))
        .unwrap_or(0)
}

/// A record's value as text.
pub(crate) fn value(record: &Record) -> String {
    String::from_utf8_lossy(&record.value).into_owned()
}
