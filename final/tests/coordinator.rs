//! `kfs coordinator` and `kfs zk` as a user runs them: three coordinator
//! processes on loopback, the shell's commands against them, and what real
//! processes add to the in-process tests: a leader killed with SIGKILL
//! under load, a leader paused with SIGSTOP and resumed, an ephemeral node
//! outliving its killed shell until the session times out, and all three
//! servers killed and started again from their files; and `kfs perf
//! coordinator` loading them.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command as StdCommand, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use ch07_coordinator::client::ClientConfig;
use ch07_coordinator::coordinator::{CoordError, Coordinator};
use ch07_coordinator::tree::{ANY_VERSION, Change};
use tempfile::TempDir;

/// A `kfs coordinator` process; killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    /// Starts server `id` on `data`, its stderr (the log) appended to
    /// `log`, and waits for it to listen.
    fn start(
        id: u32,
        data: &std::path::Path,
        log: &std::path::Path,
        ensemble: &str,
        flags: &[String],
    ) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("kfs"))
            .args([
                "coordinator",
                "--id",
                &id.to_string(),
                "--ensemble",
                ensemble,
            ])
            .args(flags)
            .arg("--data-dir")
            .arg(data)
            // Plain lines, for `leader` to read.
            .env("NO_COLOR", "1")
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
}

impl Drop for Server {
    fn drop(&mut self) {
        // Errors only mean it has exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`) to process `pid`.
fn send_signal(pid: u32, signal: &str) {
    let status = StdCommand::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Three servers on free loopback ports, each with a data directory and a
/// log file in one temporary directory.
struct Ensemble {
    dir: TempDir,
    /// Clients' ports, then peers'.
    ports: Vec<u16>,
    /// The `--ensemble` flag.
    spec: String,
    /// Server `id` at `id - 1`; `None` while it is down.
    servers: Vec<Option<Server>>,
    /// More flags for every server.
    flags: Vec<String>,
}

impl Ensemble {
    fn start() -> Ensemble {
        Ensemble::start_with(&[])
    }

    fn start_with(flags: &[&str]) -> Ensemble {
        let dir = tempfile::tempdir().unwrap();
        let ports = common::free_ports(6);
        let spec = (1..=3)
            .map(|i| {
                let (client, peer) = (ports[i - 1], ports[i + 2]);
                format!("{i}=127.0.0.1:{client}:{peer}")
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut ensemble = Ensemble {
            dir,
            ports,
            spec,
            servers: vec![None, None, None],
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        for id in 1..=3 {
            ensemble.start_server(id);
        }
        ensemble
    }

    fn data(&self, id: u32) -> PathBuf {
        self.dir.path().join(format!("server-{id}"))
    }

    fn log(&self, id: u32) -> PathBuf {
        self.dir.path().join(format!("server-{id}.log"))
    }

    fn start_server(&mut self, id: u32) {
        let server = Server::start(id, &self.data(id), &self.log(id), &self.spec, &self.flags);
        self.servers[id as usize - 1] = Some(server);
    }

    /// SIGKILL, and wait until it is gone.
    fn kill(&mut self, id: u32) {
        let mut server = self.servers[id as usize - 1].take().expect("running");
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }

    fn pid(&self, id: u32) -> u32 {
        self.servers[id as usize - 1]
            .as_ref()
            .expect("running")
            .child
            .id()
    }

    fn addrs(&self, ids: &[u32]) -> Vec<SocketAddr> {
        ids.iter()
            .map(|&id| SocketAddr::from(([127, 0, 0, 1], self.ports[id as usize - 1])))
            .collect()
    }

    /// `--server` for `kfs zk`.
    fn servers(&self, ids: &[u32]) -> String {
        self.addrs(ids)
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server that last became leader, by its log's "became leader in
    /// term N" lines, and the term: the highest term any server led.
    fn leader(&self) -> Option<(u32, u64)> {
        let mut latest = None;
        for id in 1..=3 {
            let log = std::fs::read_to_string(self.log(id)).unwrap_or_default();
            for line in log.lines() {
                let Some((_, rest)) = line.split_once("became leader in term ") else {
                    continue;
                };
                let term = rest.split_whitespace().next().unwrap_or_default();
                let term: u64 = term.parse().expect("a term");
                if latest.is_none_or(|(_, t)| term > t) {
                    latest = Some((id, term));
                }
            }
        }
        latest
    }

    /// Waits up to 20 s for a leader of a term after `term`.
    fn leader_after(&self, term: u64) -> (u32, u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.leader() {
                Some((id, t)) if t > term => return (id, t),
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                other => panic!("no leader after term {term}; the last was {other:?}"),
            }
        }
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        // A failed test shows what the servers said.
        if std::thread::panicking() {
            for id in 1..=3 {
                let log = std::fs::read_to_string(self.log(id)).unwrap_or_default();
                eprintln!("--- server {id}'s log ---\n{log}");
            }
        }
    }
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

/// A runtime for the test's own clients.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Opens a session with `servers` (tried in order), retrying for 20 s.
async fn connect(servers: &[SocketAddr]) -> Coordinator {
    let config = ClientConfig {
        session_timeout_ms: 10_000,
        request_timeout_ms: 1_000,
        ping_interval_ms: 300,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Coordinator::connect(servers, config.clone()).await {
            Ok(client) => return client,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connecting: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect to {servers:?}: {e}"),
        }
    }
}

/// Asserts that each of `paths` has its path as its data, read from each
/// of `servers` alone after a `sync`.
async fn assert_all_there(servers: &[SocketAddr], paths: &[String]) {
    for server in servers {
        let reader = connect(std::slice::from_ref(server)).await;
        reader.sync().await.unwrap();
        for path in paths {
            match reader.get(path, false).await {
                Ok((data, _)) => assert_eq!(data, path.as_bytes(), "{path} on {server}"),
                Err(e) => panic!("{path} on {server}: {e}"),
            }
        }
        reader.close().await;
    }
}

#[test]
fn an_ensemble_serves_the_shell_and_survives_a_killed_server() {
    let mut ensemble = Ensemble::start();
    let all = ensemble.servers(&[1, 2, 3]);

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
        (vec!["create", "/app/"], "BadArguments"),
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

    // SIGKILL the first server; the other two carry on.
    ensemble.kill(1);
    until_ok(&ensemble.servers(&[2, 3]), &["set", "/app", "v3"]);
    // Started again from its files, it catches up: a read from it alone
    // (after the `sync` every `kfs zk` does) sees the latest write.
    ensemble.start_server(1);
    let read = until_ok(&ensemble.servers(&[1]), &["get", "/app"]);
    assert_eq!(stdout(&read), "v3\n");
}

/// Creates `/load/n-0`, `/load/n-1`, ... (each with its path as its data)
/// until `stop`, recording in `acked` each create that was answered. A
/// create lost with its connection may or may not have happened, and is
/// not retried: the next one has a new name.
async fn load(client: Coordinator, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) {
        let path = format!("/load/n-{next}");
        next += 1;
        match client.create(&path, path.as_bytes(), false, false).await {
            Ok(_) => acked.lock().unwrap().push(path),
            Err(CoordError::ConnectionLoss) => {}
            Err(e) => panic!("{path}: {e}"),
        }
    }
    client.close().await;
}

/// Waits up to 30 s until `acked` holds `count` paths.
fn wait_for_acks(acked: &Mutex<Vec<String>>, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = acked.lock().unwrap().len();
        if have >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{have} of {count} creates acknowledged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_leader_killed_under_load_loses_no_acknowledged_write() {
    let rt = runtime();
    let mut ensemble = Ensemble::start();
    until_ok(&ensemble.servers(&[1, 2, 3]), &["create", "/load"]);
    let (leader, term) = ensemble.leader_after(0);
    let others: Vec<u32> = (1..=3).filter(|&id| id != leader).collect();

    // The writer's session starts on the leader, so that losing it makes
    // the writer move.
    let mut order = vec![leader];
    order.extend(&others);
    let writer = rt.block_on(connect(&ensemble.addrs(&order)));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let loader = rt.spawn(load(writer, stop.clone(), acked.clone()));
    wait_for_acks(&acked, 30);

    ensemble.kill(leader);
    let at_kill = acked.lock().unwrap().len();
    // Writes carry on through the other two, under a new leader.
    wait_for_acks(&acked, at_kill + 30);
    let (new_leader, new_term) = ensemble.leader_after(term);
    assert_ne!(new_leader, leader);
    assert!(new_term > term);
    stop.store(true, Ordering::Relaxed);
    rt.block_on(loader).unwrap();

    let acked = acked.lock().unwrap().clone();
    rt.block_on(assert_all_there(&ensemble.addrs(&others), &acked));
}

#[test]
fn a_full_restart_keeps_the_tree() {
    let rt = runtime();
    let mut ensemble = Ensemble::start_with(&["--snap-count", "10"]);
    let client = rt.block_on(connect(&ensemble.addrs(&[1, 2, 3])));
    let mut paths = Vec::new();
    rt.block_on(async {
        let created = loop {
            match client.create("/kept", b"/kept", false, false).await {
                Ok(path) => break path,
                // The ensemble may still be electing its first leader.
                Err(CoordError::ConnectionLoss) => {}
                Err(e) => panic!("{e}"),
            }
        };
        paths.push(created);
        for i in 0..20 {
            let path = format!("/kept/n-{i}");
            client
                .create(&path, path.as_bytes(), false, false)
                .await
                .unwrap();
            paths.push(path);
        }
        // A later write wins, and a deleted node stays deleted.
        client
            .set("/kept/n-0", b"stale", ANY_VERSION)
            .await
            .unwrap();
        client
            .set("/kept/n-0", b"/kept/n-0", ANY_VERSION)
            .await
            .unwrap();
        client.create("/gone", b"", false, false).await.unwrap();
        client.delete("/gone", ANY_VERSION).await.unwrap();
        client.close().await;
    });

    for id in 1..=3 {
        ensemble.kill(id);
    }
    // With a snapshot every ten entries, each starts again from a
    // snapshot and the log after it.
    for id in 1..=3 {
        let snapshots = std::fs::read_dir(ensemble.data(id))
            .unwrap()
            .filter(|f| {
                f.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("snapshot-")
            })
            .count();
        assert!(snapshots > 0, "server {id} has no snapshot");
        ensemble.start_server(id);
    }
    rt.block_on(assert_all_there(&ensemble.addrs(&[1, 2, 3]), &paths));
    let reader = rt.block_on(connect(&ensemble.addrs(&[1, 2, 3])));
    rt.block_on(async {
        reader.sync().await.unwrap();
        assert_eq!(reader.exists("/gone", false).await.unwrap(), None);
        let (_, stat) = reader.get("/kept/n-0", false).await.unwrap();
        assert_eq!(stat.version, 2);
        reader.close().await;
    });
}

/// `kfs zk create --ephemeral PATH` as a child process, once it has said
/// `Created PATH`: it holds its session from then on.
fn hold_ephemeral(servers: &str, session_timeout_ms: u64, path: &str) -> (Child, ChildStdout) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("kfs"))
            .args(["zk", "--server", servers, "--session-timeout"])
            .arg(session_timeout_ms.to_string())
            .args(["create", "--ephemeral", path])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut byte = [0];
        while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        if line == format!("Created {path}").as_bytes() {
            return (child, out);
        }
        // It failed (no leader yet): it has exited.
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        child.wait().unwrap();
        assert!(
            Instant::now() < deadline,
            "create --ephemeral {path}: {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_ephemeral_node_outlives_a_killed_shell_until_its_session_times_out() {
    let rt = runtime();
    let ensemble = Ensemble::start();
    let all = ensemble.servers(&[1, 2, 3]);
    let mut watcher = rt.block_on(connect(&ensemble.addrs(&[1, 2, 3])));
    let mut events = watcher.watches().unwrap();

    // Killed with SIGKILL, the shell cannot end its session: the node
    // stays until the ensemble has not heard from it for the timeout.
    let timeout = Duration::from_secs(3);
    let (mut killed, _out) = hold_ephemeral(&all, timeout.as_millis() as u64, "/killed");
    rt.block_on(async {
        watcher.sync().await.unwrap();
        assert!(watcher.exists("/killed", true).await.unwrap().is_some());
    });
    killed.kill().unwrap();
    killed.wait().unwrap();
    let at_kill = Instant::now();
    let still_there = rt.block_on(async {
        watcher.sync().await.unwrap();
        watcher.exists("/killed", false).await.unwrap().is_some()
    });
    // The shell pinged every third of the timeout, so the session lives
    // at least two thirds of it after the kill: a read made sooner finds
    // the node.
    assert!(still_there || at_kill.elapsed() >= timeout * 2 / 3);
    let event = rt
        .block_on(async {
            let within = timeout + Duration::from_secs(20);
            tokio::time::timeout(within, events.recv()).await
        })
        .expect("the node went within the session timeout (and slack)")
        .unwrap();
    let gone_after = at_kill.elapsed();
    assert_eq!(event, Change::NodeDeleted("/killed".into()));
    assert!(
        gone_after >= timeout / 3,
        "gone {gone_after:?} after the kill, before its session could expire"
    );

    // SIGTERM (as Ctrl-C) ends the session cleanly: the node goes at
    // once, long before its (long) timeout.
    let (mut stopped, mut out) = hold_ephemeral(&all, 60_000, "/stopped");
    rt.block_on(async {
        watcher.sync().await.unwrap();
        assert!(watcher.exists("/stopped", true).await.unwrap().is_some());
    });
    send_signal(stopped.id(), "TERM");
    let event = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), events.recv()).await })
        .expect("the node went at once")
        .unwrap();
    assert_eq!(event, Change::NodeDeleted("/stopped".into()));
    assert!(stopped.wait().unwrap().success());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
    rt.block_on(watcher.close());
}

#[test]
fn a_paused_leader_is_replaced_and_when_resumed_serves_the_latest_write() {
    let ensemble = Ensemble::start();
    until_ok(&ensemble.servers(&[1, 2, 3]), &["create", "/n", "v0"]);
    let (leader, term) = ensemble.leader_after(0);
    let others: Vec<u32> = (1..=3).filter(|&id| id != leader).collect();
    let others = ensemble.servers(&others);

    send_signal(ensemble.pid(leader), "STOP");
    // Writes carry on through the other two, under a new leader.
    until_ok(&others, &["set", "/n", "v1"]);
    let (new_leader, new_term) = ensemble.leader_after(term);
    assert_ne!(new_leader, leader);
    assert!(new_term > term);
    until_ok(&others, &["set", "/n", "v2"]);

    // Resumed, the old leader still thinks it leads, with `/n` at v0. A
    // read from it alone comes after `kfs zk`'s `sync`, which only the
    // current leader can answer: it sees v2.
    send_signal(ensemble.pid(leader), "CONT");
    let read = until_ok(&ensemble.servers(&[leader]), &["get", "/n"]);
    assert_eq!(stdout(&read), "v2\n");
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
    let ensemble = Ensemble::start();
    let all = ensemble.servers(&[1, 2, 3]);
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

    // Creates from two sessions with eight requests in flight on each:
    // every one made a node of its own.
    let creates = perf(
        &all,
        &[
            "--sessions",
            "2",
            "--in-flight",
            "8",
            "--op",
            "create",
            "--requests",
            "200",
        ],
    );
    assert!(creates.status.success(), "{}", stderr(&creates));
    assert!(reported(&creates, 200) > 0.0);
    // As ZooKeeper's shell prints it: `[a, b, ...]`.
    let listed = stdout(&zk(&all, &["ls", "/kfs-perf"]));
    let names = listed.trim().trim_start_matches('[').trim_end_matches(']');
    let created = names
        .split(", ")
        .filter(|name| !name.starts_with('n'))
        .count();
    assert_eq!(created, 200, "{listed}");

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
