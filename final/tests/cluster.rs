//! `kfs cluster up` as an operator runs it: three coordinator processes
//! and three broker processes on loopback; a replicated topic; a leader
//! killed with `kill -9` mid-stream; `kfs produce --acks all` and `kfs
//! consume` carry on through the failover, and nothing acknowledged is
//! lost. A consumer group on a replicated topic whose coordinator is
//! killed with `kill -9`: the group goes on from its commits. And `kfs
//! broker --config` with a `server.properties` file
//! (`default.replication.factor` included).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

/// A `kfs cluster up` process; killed when dropped, with every process
/// it started.
struct LocalCluster {
    child: Child,
    bootstrap: String,
    dir: std::path::PathBuf,
}

impl LocalCluster {
    /// `kfs cluster up` in `dir` on free ports; waits for its bootstrap
    /// line.
    fn up(dir: &Path) -> LocalCluster {
        let brokers = common::free_run(3);
        let coordinators = common::free_run(3);
        let peers = common::free_run(3);
        let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("kfs"))
            .args(["cluster", "up", "--data-dir"])
            .arg(dir)
            .args(["--broker-port", &brokers.to_string()])
            .args(["--coordinator-port", &coordinators.to_string()])
            .args(["--peer-port", &peers.to_string()])
            .args(["--session-timeout-ms", "1500", "--min-insync-replicas", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let bootstrap = loop {
            let line = lines.next().expect("a bootstrap line").unwrap();
            if let Some(servers) = line.strip_prefix("bootstrap servers: ") {
                break servers.to_string();
            }
        };
        // The rest of its output (a child's exit) is read and dropped.
        std::thread::spawn(move || lines.for_each(drop));
        LocalCluster {
            child,
            bootstrap,
            dir: dir.to_path_buf(),
        }
    }

    /// [`LocalCluster::up`], with topic `orders` (2 partitions,
    /// replication factor 3).
    fn with_orders(dir: &Path) -> LocalCluster {
        let cluster = LocalCluster::up(dir);
        // Until every broker has heartbeated the controller.
        until_ok(Duration::from_secs(20), || {
            cluster.kfs(&[
                "topics",
                "create",
                "orders",
                "--partitions",
                "2",
                "--replication-factor",
                "3",
            ])
        });
        cluster
    }

    fn kfs(&self, args: &[&str]) -> Command {
        let mut command = Command::cargo_bin("kfs").unwrap();
        command
            .args(args)
            .args(["--bootstrap-server", &self.bootstrap]);
        command
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Errors only mean a process has exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let table = std::fs::read_to_string(self.dir.join("cluster.txt")).unwrap_or_default();
        for pid in table.lines().filter_map(|l| l.split_whitespace().nth(2)) {
            let _ = StdCommand::new("kill").args(["-KILL", pid]).status();
        }
    }
}

/// Runs `command` until it succeeds, at most `within`; its last output.
fn until_ok(within: Duration, mut command: impl FnMut() -> Command) -> String {
    let deadline = Instant::now() + within;
    loop {
        let output = command().output().unwrap();
        if output.status.success() {
            return String::from_utf8(output.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "still failing: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kfs produce --acks all` of the lines `from..to`; asserts it exits 0,
/// which means every record was acknowledged.
fn produce(cluster: &LocalCluster, topic: &str, from: u32, to: u32) {
    // Keyed, so that the records go to every partition (without keys the
    // sticky partitioner would send a few hundred lines to one).
    let lines: String = (from..to).map(|i| format!("{i}:{i}\n")).collect();
    cluster
        .kfs(&["produce", topic, "--acks", "all", "--key-separator", ":"])
        .write_stdin(lines)
        .timeout(Duration::from_secs(90))
        .assert()
        .success();
}

/// The broker leading `partition` of `topic`, from `kfs topics describe`,
/// once it has one (for a moment after a failover it may have none: when
/// the controller died with the leader, the next one elects a leader only
/// once an in-sync broker has heartbeated it).
fn leader(cluster: &LocalCluster, topic: &str, partition: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = until_ok(Duration::from_secs(10), || {
            cluster.kfs(&["topics", "describe", topic])
        });
        let line = out
            .lines()
            .find(|l| l.contains(&format!("\tPartition: {partition}\t")))
            .unwrap_or_else(|| panic!("no partition {partition} in {out}"))
            .to_string();
        let field = line.split('\t').find_map(|f| f.strip_prefix("Leader: "));
        if let Some(Ok(leader)) = field.map(str::parse) {
            return leader;
        }
        assert!(Instant::now() < deadline, "no leader in 20 s: {line}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The process id `kfs cluster up` wrote for broker `id`.
fn broker_pid(dir: &Path, id: u32) -> String {
    let table = std::fs::read_to_string(dir.join("cluster.txt")).unwrap();
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[0] == "broker" && f[1] == id.to_string())
        .map(|f| f[2].to_string())
        .unwrap()
}

#[test]
fn a_cluster_of_processes_heals_after_kill_9_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::with_orders(dir.path());
    produce(&cluster, "orders", 0, 500);

    let victim = leader(&cluster, "orders", 0);
    let killed = StdCommand::new("kill")
        .args(["-KILL", &broker_pid(dir.path(), victim)])
        .status()
        .unwrap();
    assert!(killed.success());
    // Some written while the partition has no leader: the producer waits
    // for the controller to elect one, then carries on.
    produce(&cluster, "orders", 500, 1000);
    assert_ne!(leader(&cluster, "orders", 0), victim);

    let read: BTreeSet<u32> = consume(&cluster, "orders", &[]).into_iter().collect();
    let written: BTreeSet<u32> = (0..1000).collect();
    let lost: Vec<_> = written.difference(&read).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");

    // The dead broker's replicas are out of the ISR: under-replicated.
    let under = cluster
        .kfs(&["topics", "describe", "--under-replicated-partitions"])
        .output()
        .unwrap();
    let under = String::from_utf8(under.stdout).unwrap();
    assert!(under.contains("\tPartition: 0\t"), "{under}");
    assert!(!under.contains(&format!("Isr: {victim}")), "{under}");

    let status = Command::cargo_bin("kfs")
        .unwrap()
        .args(["cluster", "status", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let status = String::from_utf8(status.stdout).unwrap();
    assert!(status.contains("controller: broker"), "{status}");
    let down = status
        .lines()
        .find(|l| {
            l.starts_with("broker") && l.split_whitespace().nth(1) == Some(&victim.to_string())
        })
        .unwrap();
    assert!(down.ends_with("down"), "{status}");

    // Ctrl-C (SIGTERM here) stops every process cleanly.
    let mut cluster = cluster;
    let pid = cluster.child.id().to_string();
    assert!(
        StdCommand::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(cluster.child.wait().unwrap().success());
    let logs = std::fs::read_dir(dir.path()).unwrap();
    for log in logs
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
    {
        let name = log.file_name().unwrap().to_string_lossy().to_string();
        if name == format!("broker-{victim}.log") {
            continue;
        }
        let text = std::fs::read_to_string(&log).unwrap();
        let stopped = text.contains("stopped cleanly") || text.contains("stopping");
        assert!(stopped, "{name} did not stop cleanly:\n{text}");
    }
}

/// `kfs consume` of `topic` from the beginning (with `more` arguments)
/// until it has been quiet for 3 s; the numbers it printed.
fn consume(cluster: &LocalCluster, topic: &str, more: &[&str]) -> Vec<u32> {
    let mut args = vec!["consume", topic, "--from-beginning", "--timeout-ms", "3000"];
    args.extend_from_slice(more);
    let out = cluster
        .kfs(&args)
        .timeout(Duration::from_secs(90))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn a_groups_commits_survive_kill_9_of_its_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::with_orders(dir.path());
    produce(&cluster, "orders", 0, 300);
    let mut first = consume(&cluster, "orders", &["--group", "g"]);
    first.sort();
    assert_eq!(first, (0..300).collect::<Vec<_>>());

    // The group's commits are in its partition of `__consumer_offsets`,
    // replicated three times; its leader coordinates the group.
    let describe = until_ok(Duration::from_secs(10), || {
        cluster.kfs(&["groups", "describe", "g"])
    });
    let coordinator: u32 = describe
        .lines()
        .find_map(|l| l.strip_prefix("Coordinator: broker "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no coordinator in {describe}"));
    assert_eq!(committed_total(&describe), 300, "{describe}");
    let killed = StdCommand::new("kill")
        .args(["-KILL", &broker_pid(dir.path(), coordinator)])
        .status()
        .unwrap();
    assert!(killed.success());

    // Another broker leads the offsets partition now, and has the commits:
    // the group reads only what came after them.
    produce(&cluster, "orders", 300, 400);
    let mut next = consume(&cluster, "orders", &["--group", "g"]);
    next.sort();
    assert_eq!(next, (300..400).collect::<Vec<_>>());
    let describe = until_ok(Duration::from_secs(10), || {
        cluster.kfs(&["groups", "describe", "g"])
    });
    assert!(
        !describe.contains(&format!("Coordinator: broker {coordinator} ")),
        "{describe}"
    );
    assert_eq!(committed_total(&describe), 400, "{describe}");
}

/// The sum of the CURRENT-OFFSET column of `kfs groups describe g`.
fn committed_total(describe: &str) -> u64 {
    describe
        .lines()
        .filter(|l| l.starts_with("g "))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_broker_reads_kafkas_server_properties() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data-7");
    let config = dir.path().join("server.properties");
    let mut file = std::fs::File::create(&config).unwrap();
    writeln!(
        file,
        "# a broker of one\nbroker.id=7\nlisteners=PLAINTEXT://127.0.0.1:0"
    )
    .unwrap();
    writeln!(file, "log.dirs={}\nnum.network.threads=3", data.display()).unwrap();
    writeln!(file, "default.replication.factor=1").unwrap();
    drop(file);
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("kfs"))
        .args(["broker", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("broker.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains(&format!("(data in {})", data.display())),
        "{line}"
    );
    let addr = line.split_whitespace().nth(4).unwrap().to_string();
    // Broker 7 becomes the controller of its own embedded coordinator.
    // With default.replication.factor, a topic created without a factor
    // is the controller's too.
    let created = until_ok(Duration::from_secs(10), || {
        let mut c = Command::cargo_bin("kfs").unwrap();
        c.args(["topics", "create", "solo", "--bootstrap-server", &addr]);
        c
    });
    assert!(created.contains("Created topic solo."));
    let out = until_ok(Duration::from_secs(10), || {
        let mut c = Command::cargo_bin("kfs").unwrap();
        c.args(["topics", "describe", "solo", "--bootstrap-server", &addr]);
        c
    });
    assert!(out.contains("Leader: 7\tReplicas: 7\tIsr: 7"), "{out}");
    // A replicated topic takes no settings yet: refused, by Kafka's name.
    let tuned = Command::cargo_bin("kfs")
        .unwrap()
        .args(["topics", "create", "tuned", "--config", "retention.ms=1000"])
        .args(["--bootstrap-server", &addr])
        .output()
        .unwrap();
    assert_eq!(tuned.status.code(), Some(1));
    let stderr = String::from_utf8(tuned.stderr).unwrap();
    assert!(stderr.contains("INVALID_CONFIG"), "{stderr}");
    let pid = child.id().to_string();
    assert!(
        StdCommand::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
    let log = std::fs::read_to_string(dir.path().join("broker.log")).unwrap();
    assert!(
        log.contains("num.network.threads"),
        "the unknown key is reported: {log}"
    );

    // A bad file: one line, exit 1.
    std::fs::write(&config, "broker.id=seven\n").unwrap();
    let output = Command::cargo_bin("kfs")
        .unwrap()
        .args(["broker", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("error: ") && stderr.contains("line 1: broker.id"),
        "{stderr}"
    );
}
