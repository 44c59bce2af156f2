//! The `kfs` command line, run as a user would run it: a real broker
//! process on a free loopback port, and the client subcommands against it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command as StdCommand, Output, Stdio};

use assert_cmd::Command;

/// A `kfs broker` child process; killed when dropped.
struct Broker {
    child: Child,
    addr: String,
}

impl Broker {
    /// Starts `kfs broker` on a free port over `dir`, and waits until it
    /// says where it listens. Its logs go to `dir/../broker.log`.
    fn start(dir: &Path) -> Broker {
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("kfs"))
            .args(["broker", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("kfs broker listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Broker { child, addr }
    }

    /// `kfs` with these arguments and `--bootstrap-server` set to this
    /// broker.
    fn kfs(&self, args: &[&str]) -> Command {
        let mut command = Command::cargo_bin("kfs").unwrap();
        command.args(args).args(["--bootstrap-server", &self.addr]);
        command
    }

    /// Sends SIGTERM, as `kill` or a service manager does, and waits.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = StdCommand::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Errors only mean the broker has already exited and been reaped
        // (`terminate` waits for it): nothing is left to clean up.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts the command failed with exit code 1 and one line on stderr
/// starting with `error: ` and `start`.
fn assert_one_line_error(output: &Output, start: &str) {
    let stderr = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("error: {start}")), "{stderr}");
}

#[test]
fn version_prints_the_package_version() {
    let output = Command::cargo_bin("kfs")
        .unwrap()
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        format!("kfs {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn with_no_arguments_it_shows_the_subcommands() {
    let output = Command::cargo_bin("kfs").unwrap().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let help = stderr(&output);
    for subcommand in ["broker", "topics", "produce", "consume", "perf"] {
        assert!(help.contains(subcommand), "{help}");
    }
}

#[test]
fn a_bad_flag_is_an_error_naming_it_not_a_panic() {
    let output = Command::cargo_bin("kfs")
        .unwrap()
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("error: unexpected argument '--no-such-flag'"),
        "{}",
        stderr(&output)
    );
    let output = Command::cargo_bin("kfs")
        .unwrap()
        .args(["topics", "create", "t", "--partitions", "zero"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("error: invalid value 'zero' for '--partitions"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_wrong_address_is_a_one_line_error() {
    // Nothing listens on port 1 of loopback.
    let output = Command::cargo_bin("kfs")
        .unwrap()
        .args(["topics", "list", "--bootstrap-server", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_one_line_error(&output, "connection to 127.0.0.1:1");
}

#[test]
fn topics_are_created_listed_described_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    let output = broker
        .kfs(&[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=60000",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "Created topic orders.\n");
    broker
        .kfs(&["topics", "create", "clicks"])
        .assert()
        .success();

    let list = broker.kfs(&["topics", "list"]).output().unwrap();
    // No internal topic yet: as in Kafka, `__consumer_offsets` is made
    // when the first consumer group looks for its coordinator.
    assert_eq!(stdout(&list), "clicks\norders\n");

    let describe = broker
        .kfs(&["topics", "describe", "orders"])
        .output()
        .unwrap();
    let text = stdout(&describe);
    assert!(
        text.starts_with("Topic: orders\tPartitionCount: 3\tReplicationFactor: 1\tConfigs: "),
        "{text}"
    );
    assert!(text.contains("retention.ms=60000"), "{text}");
    assert_eq!(text.matches("\tTopic: orders\tPartition: ").count(), 3);

    let exists = broker
        .kfs(&["topics", "create", "orders"])
        .output()
        .unwrap();
    assert_one_line_error(&exists, "TOPIC_ALREADY_EXISTS");

    broker
        .kfs(&["topics", "delete", "clicks"])
        .assert()
        .success();
    let list = broker.kfs(&["topics", "list"]).output().unwrap();
    assert_eq!(stdout(&list), "orders\n");
}

#[test]
fn lines_produced_are_consumed_back_with_keys_partitions_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    broker
        .kfs(&["topics", "create", "t", "--partitions", "2"])
        .assert()
        .success();
    broker
        .kfs(&["produce", "t", "--key-separator", ":"])
        .write_stdin("a:first\nb:second\na:third:with colon\n")
        .assert()
        .success();

    let output = broker
        .kfs(&[
            "consume",
            "t",
            "--from-beginning",
            "--max-messages",
            "3",
            "--print-key",
            "--print-partition",
            "--print-offset",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "Processed a total of 3 messages\n");
    let text = stdout(&output);
    // Partition:P, Offset:O, key, value: tab-separated.
    let mut records: Vec<(u32, u64, &str, &str)> = text
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.splitn(4, '\t').collect();
            let number = |field: &str, name: &str| field.strip_prefix(name).unwrap().to_string();
            (
                number(fields[0], "Partition:").parse().unwrap(),
                number(fields[1], "Offset:").parse().unwrap(),
                fields[2],
                fields[3],
            )
        })
        .collect();
    records.sort();
    let mut values: Vec<(&str, &str)> = records.iter().map(|r| (r.2, r.3)).collect();
    values.sort();
    assert_eq!(
        values,
        [("a", "first"), ("a", "third:with colon"), ("b", "second")]
    );
    // One key, one partition, in the order produced.
    let a: Vec<&(u32, u64, &str, &str)> = records.iter().filter(|r| r.2 == "a").collect();
    assert_eq!(a[0].0, a[1].0);
    assert!(a[0].1 < a[1].1 && a[0].3 == "first", "{records:?}");

    // One partition, from an offset, values only.
    let partition = a[0].0.to_string();
    let output = broker
        .kfs(&[
            "consume",
            "t",
            "--partition",
            &partition,
            "--offset",
            "0",
            "--timeout-ms",
            "500",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stdout(&output).is_empty());
    assert!(!stdout(&output).contains('\t'), "{}", stdout(&output));
}

#[test]
fn consume_follows_the_topic_until_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    broker.kfs(&["topics", "create", "t"]).assert().success();
    broker
        .kfs(&["produce", "t"])
        .write_stdin("old\n")
        .assert()
        .success();
    // From the end by default: the old record is not shown, and with no
    // new ones it exits once quiet for the timeout.
    let output = broker
        .kfs(&["consume", "t", "--timeout-ms", "300"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");
    assert_eq!(stderr(&output), "Processed a total of 0 messages\n");
}

#[test]
fn a_missing_topic_or_a_line_without_its_key_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    let output = broker
        .kfs(&["consume", "missing", "--timeout-ms", "100"])
        .output()
        .unwrap();
    assert_one_line_error(&output, "UNKNOWN_TOPIC_OR_PARTITION");
    let output = broker
        .kfs(&["produce", "missing"])
        .write_stdin("x\n")
        .output()
        .unwrap();
    assert_one_line_error(&output, "UNKNOWN_TOPIC_OR_PARTITION");

    broker.kfs(&["topics", "create", "t"]).assert().success();
    let output = broker
        .kfs(&["produce", "t", "--key-separator", ":"])
        .write_stdin("k:fine\nno separator here\n")
        .output()
        .unwrap();
    assert_one_line_error(&output, "no key separator \":\" on line 2");
    // The line before the bad one was still delivered.
    let output = broker
        .kfs(&["consume", "t", "--from-beginning", "--max-messages", "1"])
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "fine\n");
}

#[test]
fn sigterm_shuts_the_broker_down_cleanly_and_the_data_stays() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&data);
    broker.kfs(&["topics", "create", "t"]).assert().success();
    broker
        .kfs(&["produce", "t"])
        .write_stdin("one\ntwo\n")
        .assert()
        .success();
    let status = broker.terminate();
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");

    let broker = Broker::start(&data);
    let output = broker
        .kfs(&["consume", "t", "--from-beginning", "--max-messages", "2"])
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "one\ntwo\n");
    // Closed cleanly, so nothing needed recovering.
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(!log.contains("recovered"), "{log}");
}

#[test]
fn acknowledged_records_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start(&data);
    broker.kfs(&["topics", "create", "t"]).assert().success();
    let lines: String = (0..1000).map(|i| format!("record {i}\n")).collect();
    broker
        .kfs(&["produce", "t"])
        .write_stdin(lines.clone())
        .assert()
        .success();
    // SIGKILL: no drain, no close. Acknowledged means appended to the
    // log (in the page cache), which outlives the process.
    broker.child.kill().unwrap();
    broker.child.wait().unwrap();
    drop(broker);

    let broker = Broker::start(&data);
    let output = broker
        .kfs(&["consume", "t", "--from-beginning", "--max-messages", "1000"])
        .output()
        .unwrap();
    assert_eq!(stdout(&output), lines);
}

#[test]
fn a_second_broker_on_the_same_directory_or_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&data);
    let output = Command::cargo_bin("kfs")
        .unwrap()
        .args(["broker", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_one_line_error(&output, "");
    assert!(stderr(&output).contains("in use"), "{}", stderr(&output));

    let other = dir.path().join("other");
    let output = Command::cargo_bin("kfs")
        .unwrap()
        .args(["broker", "--listen", &broker.addr, "--data-dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(
        stderr(&output).contains(&format!("error: cannot listen on {}", broker.addr)),
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn perf_produce_and_consume_report_rates_and_latency_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    broker.kfs(&["topics", "create", "p"]).assert().success();
    let output = broker
        .kfs(&[
            "perf",
            "produce",
            "--topic",
            "p",
            "--num-records",
            "5000",
            "--record-size",
            "200",
            "--throughput",
            "50000",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = stdout(&output);
    let last = summary.lines().last().unwrap();
    assert!(last.starts_with("5000 records sent, "), "{summary}");
    for field in [
        "records/sec",
        "MB/sec",
        "avg latency",
        "max latency",
        "50th",
        "95th",
        "99th",
        "99.9th",
    ] {
        assert!(last.contains(field), "{field} missing: {last}");
    }

    let output = broker
        .kfs(&["perf", "consume", "--topic", "p", "--messages", "5000"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = stdout(&output);
    // 5000 records of 200 bytes: 0.95 MiB.
    assert!(
        summary
            .lines()
            .last()
            .unwrap()
            .starts_with("5000 records read (0.95 MB) in "),
        "{summary}"
    );

    // Asking for more than there is ends with an error, not a hang.
    let output = broker
        .kfs(&[
            "perf",
            "consume",
            "--topic",
            "p",
            "--messages",
            "6000",
            "--timeout-ms",
            "300",
        ])
        .output()
        .unwrap();
    assert_one_line_error(&output, "only 5000 of 6000 records arrived");

    // `acks=all`, for chapter 6's replicated broker; chapter 5's broker,
    // which has no replicas, answers it as `acks=1`. With one request in
    // flight at a time, each batch waits for the answer to the one before.
    let output = broker
        .kfs(&[
            "perf",
            "produce",
            "--topic",
            "p",
            "--num-records",
            "100",
            "--acks",
            "-1",
            "--max-in-flight",
            "1",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("100 records sent, "));
}

#[test]
fn a_group_shares_progress_between_consumers_and_groups_describe_shows_the_lag() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    broker
        .kfs(&["topics", "create", "t", "--partitions", "2"])
        .assert()
        .success();
    let lines: String = (0..10).map(|i| format!("k{i}:v{i}\n")).collect();
    broker
        .kfs(&["produce", "t", "--key-separator", ":"])
        .write_stdin(lines)
        .assert()
        .success();

    // The first member prints 4 records and commits exactly those.
    let output = broker
        .kfs(&[
            "consume",
            "t",
            "--group",
            "g",
            "--from-beginning",
            "--max-messages",
            "4",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let first: Vec<String> = stdout(&output).lines().map(String::from).collect();
    assert_eq!(first.len(), 4);

    let list = broker.kfs(&["groups", "list"]).output().unwrap();
    assert_eq!(stdout(&list), "g\n");
    let describe = broker.kfs(&["groups", "describe", "g"]).output().unwrap();
    let text = stdout(&describe);
    assert!(text.starts_with("Group g is Empty"), "{text}");
    // The broker coordinates the group: it is the only one.
    assert_eq!(
        text.lines().nth(1),
        Some(format!("Coordinator: broker 1 at {}.", broker.addr).as_str()),
        "{text}"
    );
    // One row per partition with a commit: 4 committed in all, and each
    // row's lag is its log end minus its commit.
    let rows: Vec<Vec<u64>> = text
        .lines()
        // The header, the coordinator, the table's head.
        .skip(3)
        .map(|row| {
            let cells: Vec<&str> = row.split_whitespace().collect();
            cells[3..6].iter().map(|c| c.parse().unwrap()).collect()
        })
        .collect();
    assert_eq!(rows.iter().map(|r| r[0]).sum::<u64>(), 4, "{text}");
    for r in &rows {
        assert_eq!(r[0] + r[2], r[1], "{text}");
    }

    // The next member of the group prints the other 6, none again.
    let output = broker
        .kfs(&[
            "consume",
            "t",
            "--group",
            "g",
            "--from-beginning",
            "--timeout-ms",
            "1500",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let mut all: Vec<String> = stdout(&output).lines().map(String::from).collect();
    assert_eq!(all.len(), 6, "{all:?}");
    all.extend(first);
    all.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(all, expected);

    let output = broker
        .kfs(&["groups", "describe", "nobody"])
        .output()
        .unwrap();
    assert_one_line_error(&output, "GROUP_ID_NOT_FOUND");
}

#[test]
fn sigterm_stops_a_group_consumer_as_ctrl_c_does_committing_and_leaving() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    broker
        .kfs(&["topics", "create", "t", "--partitions", "2"])
        .assert()
        .success();
    let lines: String = (0..10).map(|i| format!("v{i}\n")).collect();
    broker
        .kfs(&["produce", "t"])
        .write_stdin(lines)
        .assert()
        .success();

    // A member that follows the topic with no end of its own.
    let mut consumer = StdCommand::new(assert_cmd::cargo::cargo_bin("kfs"))
        .args(["consume", "t", "--group", "g", "--from-beginning"])
        .args(["--bootstrap-server", &broker.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(consumer.stdout.take().unwrap());
    for _ in 0..10 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with('v'), "{line:?}");
    }
    let pid = consumer.id().to_string();
    let sent = StdCommand::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = consumer.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {err}", output.status);
    assert!(err.contains("Processed a total of 10 messages"), "{err}");

    // It left the group (not waiting out a session timeout) and committed
    // everything it printed: no lag.
    let describe = broker.kfs(&["groups", "describe", "g"]).output().unwrap();
    let text = stdout(&describe);
    assert!(text.starts_with("Group g is Empty"), "{text}");
    let lag: u64 = text
        .lines()
        // The header, the coordinator, the table's head.
        .skip(3)
        .map(|row| {
            row.split_whitespace()
                .nth(5)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    let committed: u64 = text
        .lines()
        // The header, the coordinator, the table's head.
        .skip(3)
        .map(|row| {
            row.split_whitespace()
                .nth(3)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!((committed, lag), (10, 0), "{text}");
}
