//! `kfs coordinator` and `kfs zk` as a user runs them: three coordinator
//! processes on loopback, the shell's commands against them, a server
//! killed with SIGKILL and started again from its files; and `kfs perf
//! coordinator` loading them.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

/// A `kfs coordinator` process; killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    fn start(id: u32, dir: &Path, ensemble: &str) -> Server {
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("kfs"))
            .args([
                "coordinator",
                "--id",
                &id.to_string(),
                "--ensemble",
                ensemble,
            ])
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with(&format!("kfs coordinator {id} listening on")),
            "{line:?}"
        );
        Server { child }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Errors only mean it has exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Six free loopback ports (bound, then released: another process could
/// take one in between, which is unlikely on a test machine).
fn free_ports() -> Vec<u16> {
    let listeners: Vec<_> = (0..6)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn zk(servers: &str, args: &[&str]) -> Output {
    Command::cargo_bin("kfs")
        .unwrap()
        .args(["zk", "--server", servers])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs the command until it succeeds (the ensemble elects a leader
/// first), for at most 20 s.
fn until_ok(servers: &str, args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output = zk(servers, args);
        if output.status.success() {
            return output;
        }
        assert!(
            Instant::now() < deadline,
            "`kfs zk {}` still failing: {}",
            args.join(" "),
            stderr(&output)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_ensemble_serves_the_shell_and_survives_a_killed_server() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let ensemble = (1..=3)
        .map(|i| {
            let (client, peer) = (ports[i - 1], ports[i + 2]);
            format!("{i}=127.0.0.1:{client}:{peer}")
        })
        .collect::<Vec<_>>()
        .join(",");
    let all = (0..3)
        .map(|i| format!("127.0.0.1:{}", ports[i]))
        .collect::<Vec<_>>()
        .join(",");
    let data = |i: u32| dir.path().join(format!("server-{i}"));
    let mut servers: Vec<Option<Server>> = (1..=3)
        .map(|i| Some(Server::start(i, &data(i), &ensemble)))
        .collect();

    let created = until_ok(&all, &["create", "/app", "v1"]);
    assert_eq!(stdout(&created), "Created /app\n");
    assert_eq!(stdout(&zk(&all, &["get", "/app"])), "v1\n");
    assert!(
        zk(&all, &["set", "/app", "v2", "--version", "0"])
            .status
            .success()
    );

    // Errors: one line, ZooKeeper's name, exit status 1.
    for (args, name) in [
        (vec!["set", "/app", "v3", "--version", "0"], "BadVersion"),
        (vec!["get", "/nope"], "NoNode"),
        (vec!["create", "/app"], "NodeExists"),
    ] {
        let output = zk(&all, &args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let err = stderr(&output);
        assert!(
            err.starts_with(&format!("error: {name}: ")),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let seq = zk(&all, &["create", "--sequential", "/app/q-"]);
    assert_eq!(stdout(&seq), "Created /app/q-0000000000\n");
    assert_eq!(stdout(&zk(&all, &["ls", "/app"])), "[q-0000000000]\n");
    // An ephemeral node lives as long as the command's session.
    until_ok(&all, &["create", "--ephemeral", "/gone"]);
    assert_eq!(zk(&all, &["stat", "/gone"]).status.code(), Some(1));

    // SIGKILL the first server; the other two carry on.
    servers[0].take().unwrap().kill();
    let others = (1..3)
        .map(|i| format!("127.0.0.1:{}", ports[i]))
        .collect::<Vec<_>>()
        .join(",");
    until_ok(&others, &["set", "/app", "v3"]);
    // Started again from its files, it catches up: a read from it alone
    // (after the `sync` every `kfs zk` does) sees the latest write.
    servers[0] = Some(Server::start(1, &data(1), &ensemble));
    let first = format!("127.0.0.1:{}", ports[0]);
    let read = until_ok(&first, &["get", "/app"]);
    assert_eq!(stdout(&read), "v3\n");
}

/// Runs `kfs perf coordinator` against `servers`; its output.
fn perf(servers: &str, args: &[&str]) -> Output {
    Command::cargo_bin("kfs")
        .unwrap()
        .args(["perf", "coordinator", "--servers", servers])
        .args(args)
        .output()
        .unwrap()
}

/// The rate in the last line of a report: "N requests sent, R
/// requests/sec (...)".
fn reported(output: &Output, sent: u64) -> f64 {
    let text = stdout(output);
    let last = text.lines().last().unwrap_or_default().to_string();
    let prefix = format!("{sent} requests sent, ");
    assert!(last.starts_with(&prefix), "{text}");
    for part in ["ms avg latency", "ms 50th", "ms 99th", "ms max latency"] {
        assert!(last.contains(part), "{last}");
    }
    last[prefix.len()..]
        .split(' ')
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {last:?}"))
}

#[test]
fn perf_coordinator_reports_sets_and_gets_and_keeps_to_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let ensemble = (1..=3)
        .map(|i| format!("{i}=127.0.0.1:{}:{}", ports[i - 1], ports[i + 2]))
        .collect::<Vec<_>>()
        .join(",");
    let all = (0..3)
        .map(|i| format!("127.0.0.1:{}", ports[i]))
        .collect::<Vec<_>>()
        .join(",");
    let _servers: Vec<Server> = (1..=3)
        .map(|i| Server::start(i, &dir.path().join(format!("server-{i}")), &ensemble))
        .collect();
    until_ok(&all, &["stat", "/"]);

    // Sets from six sessions, two on each server: exactly the requests
    // asked for, and each session's node holds the tool's 100-byte value.
    let sets = perf(
        &all,
        &["--sessions", "6", "--op", "set", "--requests", "300"],
    );
    assert!(sets.status.success(), "{}", stderr(&sets));
    assert!(reported(&sets, 300) > 0.0);
    let value = stdout(&zk(&all, &["get", "/kfs-perf/n5"]));
    let value = value.trim_end();
    assert_eq!(value.len(), 100, "{value:?}");
    assert!(value.bytes().all(|b| b.is_ascii_uppercase()), "{value:?}");

    // Gets, each session from its own server.
    let gets = perf(
        &all,
        &["--sessions", "6", "--op", "get", "--requests", "300"],
    );
    assert!(gets.status.success(), "{}", stderr(&gets));
    assert!(reported(&gets, 300) > 0.0);

    // Held to 200 a second, 100 requests take at least the 0.495 s their
    // schedule spans: the rate reported cannot exceed 100 / 0.495.
    let started = Instant::now();
    let paced = perf(
        &all,
        &["--sessions", "4", "--requests", "100", "--rate", "200"],
    );
    assert!(paced.status.success(), "{}", stderr(&paced));
    assert!(started.elapsed() >= Duration::from_millis(495));
    let rate = reported(&paced, 100);
    assert!(rate <= 100.0 / 0.495 + 0.5, "{rate}");

    // A bad flag is an error naming it.
    let bad = perf(&all, &["--duration", "0"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--duration"), "{}", stderr(&bad));
}
