//! `cluster-bench KFS RECORDS RUNS`: chapter 8's cluster end to end, as
//! processes: `kfs cluster up` (three coordinator servers, three brokers)
//! on free loopback ports, then two measurements (`benches/e2e-cluster.sh`
//! runs it, builds `kfs` first and keeps its report):
//!
//! - **Throughput with replication**: `kfs perf produce --acks all`,
//!   RECORDS records of 100 B, to a one-partition topic of replication
//!   factor 3 and then of factor 1, given every broker's address (the
//!   producer finds the partition's leader in metadata);
//!   the ratio of the two, and the cluster's CPU time (every process's,
//!   from `/proc`) per record, since the brokers share the machine's cores.
//! - **Failover time**, RUNS times: a producer writes one record at a
//!   time with `acks=all` to a partition of factor 3; its leader is killed
//!   with `kill -9`; the time from the kill to the first acknowledged write
//!   sent after it (necessarily on the new leader). The killed broker is
//!   started again and rejoins the ISR before the next run. Reported as
//!   p50 and max beside the session timeout.
//!
//! Prints a report, and the summary lines `throughput\t...` and
//! `failover\t...` the harness writes to its TSV. Any failure ends it with
//! one `error: ...` line and status 1.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::TopicPartition;
use ch06_replication::client::{ClusterClient, ClusterConfig};
use ch08_cluster::protocol::ClusterDescription;
use ch08_cluster::service::describe_cluster;
use tokio::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The brokers' coordinator session timeout: how long a killed broker
/// stays alive to the cluster.
const SESSION_TIMEOUT_MS: u64 = 2_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kfs, records, runs] = &args[..] else {
        eprintln!("usage: cluster-bench KFS RECORDS RUNS");
        return ExitCode::from(2);
    };
    let (Ok(records), Ok(runs)) = (records.parse::<u64>(), runs.parse::<usize>()) else {
        eprintln!("error: RECORDS and RUNS must be whole numbers");
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(bench(PathBuf::from(kfs), records, runs.max(1))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The cluster under test: `kfs cluster up`, and brokers started again by
/// hand after a kill.
struct Cluster {
    kfs: PathBuf,
    dir: PathBuf,
    up: Child,
    coordinators: String,
    brokers: Vec<String>,
    /// Each broker's process id now (a restarted one's is new).
    pids: Vec<u32>,
    restarted: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Brokers first, cleanly; then `kfs cluster up` stops the rest.
        for child in &mut self.restarted {
            signal("TERM", child.id());
            // An error means it has exited already.
            let _ = child.wait();
        }
        signal("TERM", self.up.id());
        // An error means it has exited already.
        let _ = self.up.wait();
        // Its data, tens of megabytes a run, is not kept.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(name: &str, pid: u32) {
    // A process that has exited cannot be signalled: nothing to do.
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

/// The first of three consecutive free loopback ports below the
/// kernel's ephemeral range (a client's own port could take one).
fn free_run() -> u16 {
    loop {
        let first = fastrand::u16(10_000..30_000);
        if (first..first + 3).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return first;
        }
    }
}

impl Cluster {
    fn up(kfs: PathBuf) -> Result<Cluster> {
        let dir =
            std::env::current_dir()?.join(format!("target/e2e-cluster.{}", std::process::id()));
        let (brokers, coordinators, peers) = (free_run(), free_run(), free_run());
        let mut up = Command::new(&kfs)
            .args(["cluster", "up", "--data-dir"])
            .arg(&dir)
            .args(["--broker-port", &brokers.to_string()])
            .args(["--coordinator-port", &coordinators.to_string()])
            .args(["--peer-port", &peers.to_string()])
            .args(["--min-insync-replicas", "1"])
            .args(["--session-timeout-ms", &SESSION_TIMEOUT_MS.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut lines = BufReader::new(up.stdout.take().expect("piped")).lines();
        let bootstrap = loop {
            let line = lines.next().ok_or("kfs cluster up ended")??;
            if let Some(servers) = line.strip_prefix("bootstrap servers: ") {
                break servers.to_string();
            }
        };
        // The rest (a killed broker's exit) goes to standard error.
        std::thread::spawn(move || lines.map_while(|l| l.ok()).for_each(|l| eprintln!("{l}")));
        let table = std::fs::read_to_string(dir.join("cluster.txt"))?;
        let pids = table
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f[0] == "broker")
            .map(|f| f[2].parse())
            .collect::<std::result::Result<_, _>>()?;
        let coordinators = (0..3)
            .map(|i| format!("127.0.0.1:{}", coordinators + i))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Cluster {
            kfs,
            dir,
            up,
            coordinators,
            brokers: bootstrap.split(',').map(String::from).collect(),
            pids,
            restarted: Vec::new(),
        })
    }

    fn client(&self) -> ClusterClient {
        let config = ClusterConfig {
            request_timeout: Duration::from_secs(10),
            // Fine-grained, so the failover is timed to within it.
            retry_backoff: Duration::from_millis(10),
            delivery_timeout: Duration::from_secs(60),
        };
        ClusterClient::new(self.brokers.clone(), config)
    }

    /// The cluster as its controller has stored it.
    async fn describe(&self) -> Result<ClusterDescription> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match describe_cluster(&self.brokers, Duration::from_secs(2)).await {
                Ok(description) => return Ok(description),
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits until `tp` is led with a full ISR of `factor`; its leader.
    async fn settled(&self, tp: &TopicPartition, factor: usize) -> Result<u32> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let description = self.describe().await?;
            let state = description.partitions.iter().find(|(t, _)| t == tp);
            if let Some((_, state)) = state
                && let Some(leader) = state.leader
                && state.isr.len() == factor
            {
                return Ok(leader);
            }
            if Instant::now() > deadline {
                return Err(format!("{tp} did not settle: {state:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a one-partition topic of `factor`, writes one record and
    /// waits for a full ISR.
    async fn topic(&self, name: &str, factor: u32) -> Result<()> {
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Until every broker has heartbeated the controller.
        while let Err(e) = client.create_topic(name, 1, factor).await {
            if Instant::now() > deadline {
                return Err(format!("creating {name}: {e}").into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let tp = TopicPartition::new(name, 0);
        client
            .produce(&tp, &[Record::new(b"ready".to_vec())])
            .await?;
        self.settled(&tp, factor as usize).await?;
        Ok(())
    }

    /// Every cluster process's CPU time so far, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let table = std::fs::read_to_string(self.dir.join("cluster.txt")).unwrap_or_default();
        let mut pids: Vec<u32> = table
            .lines()
            .filter(|l| l.starts_with("coordinator"))
            .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
            .collect();
        pids.extend(&self.pids);
        // Clock ticks (utime + stime), 100 a second on Linux.
        let ticks: u64 = pids
            .iter()
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let (_, rest) = stat.rsplit_once(") ")?;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
            })
            .sum();
        ticks as f64 / 100.0
    }

    /// `kfs perf produce --acks all` of `records` 100 B records to
    /// `topic` (its leader, which the producer finds): records/s and
    /// cluster CPU µs per record.
    fn perf(&self, topic: &str, records: u64) -> Result<(f64, f64)> {
        let bootstrap = self.brokers.join(",");
        let cpu = self.cpu_seconds();
        let output = Command::new(&self.kfs)
            .args(["perf", "produce", "--topic", topic, "--record-size", "100"])
            .args(["--num-records", &records.to_string(), "--acks", "-1"])
            .args(["--bootstrap-server", &bootstrap])
            .stderr(Stdio::inherit())
            .output()?;
        let cpu = self.cpu_seconds() - cpu;
        let text = String::from_utf8(output.stdout)?;
        let summary = text.lines().last().unwrap_or_default().to_string();
        if !output.status.success() {
            return Err(format!("kfs perf produce failed: {summary}").into());
        }
        println!("{topic}: {summary}");
        // "N records sent, R records/sec (...".
        let rate = summary
            .split(", ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .ok_or_else(|| format!("no rate in {summary:?}"))?;
        Ok((rate, cpu * 1e6 / records as f64))
    }

    /// Kills broker `id` with SIGKILL.
    fn kill(&mut self, id: u32) {
        signal("KILL", self.pids[id as usize - 1]);
    }

    /// Starts broker `id` again, as `kfs cluster up` started it.
    fn restart(&mut self, id: u32) -> Result<()> {
        let address = &self.brokers[id as usize - 1];
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join(format!("broker-{id}.log")))?;
        let child = Command::new(&self.kfs)
            .args([
                "broker",
                "--id",
                &id.to_string(),
                "--coordinator",
                &self.coordinators,
            ])
            .args(["--listen", address, "--data-dir"])
            .arg(self.dir.join(format!("broker-{id}")))
            .args(["--min-insync-replicas", "1"])
            .args(["--session-timeout-ms", &SESSION_TIMEOUT_MS.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.pids[id as usize - 1] = child.id();
        self.restarted.push(child);
        Ok(())
    }
}

async fn bench(kfs: PathBuf, records: u64, runs: usize) -> Result<()> {
    check_binary(&kfs)?;
    let mut cluster = Cluster::up(kfs)?;

    cluster.topic("rf3", 3).await?;
    let (rate3, cpu3) = cluster.perf("rf3", records)?;
    cluster.topic("rf1", 1).await?;
    let (rate1, cpu1) = cluster.perf("rf1", records)?;
    println!(
        "replication factor 3 / 1: {:.2} of the throughput, {:.1} / {:.1} µs of cluster CPU per record",
        rate3 / rate1,
        cpu3,
        cpu1
    );

    let tp = TopicPartition::new("failover", 0);
    cluster.topic("failover", 3).await?;
    let mut times = Vec::new();
    for run in 1..=runs {
        let leader = cluster.settled(&tp, 3).await?;
        let client = Arc::new(cluster.client());
        let killed = Arc::new(AtomicBool::new(false));
        // Writes one record at a time; returns the time from the kill to
        // the first write acknowledged that was sent after it.
        let writer = {
            let (client, killed, tp) = (client.clone(), killed.clone(), tp.clone());
            tokio::spawn(async move {
                let mut kill_time: Option<Instant> = None;
                loop {
                    let sent_after = killed.load(Ordering::SeqCst);
                    if sent_after && kill_time.is_none() {
                        kill_time = Some(Instant::now());
                    }
                    client.produce(&tp, &[Record::new(b"x".to_vec())]).await?;
                    if sent_after {
                        let since = kill_time.expect("set when the kill was seen");
                        return Result::Ok(since.elapsed());
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.kill(leader);
        let killed_at = Instant::now();
        killed.store(true, Ordering::SeqCst);
        writer.await??;
        let took = killed_at.elapsed();
        println!("run {run}: broker {leader} killed; first acknowledged write {took:.2?} later");
        times.push(took);
        cluster.restart(leader)?;
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let max = *times.last().expect("at least one run");
    println!(
        "failover over {runs} runs: p50 {p50:.2?}, max {max:.2?} (session timeout {SESSION_TIMEOUT_MS} ms; goal: at most {} ms)",
        SESSION_TIMEOUT_MS + 1_000
    );
    println!(
        "throughput\t{rate3:.0}\t{rate1:.0}\t{:.3}\t{cpu3:.1}\t{cpu1:.1}",
        rate3 / rate1
    );
    println!(
        "failover\t{runs}\t{}\t{}\t{SESSION_TIMEOUT_MS}",
        p50.as_millis(),
        max.as_millis()
    );
    Ok(())
}

/// A clear error for a missing binary, before any process starts.
fn check_binary(kfs: &Path) -> Result<()> {
    if kfs.is_file() {
        Ok(())
    } else {
        Err(format!("{} is not a file: build kfs first", kfs.display()).into())
    }
}
