//! A Jepsen-style test of the cluster, with real processes: three `kfs
//! coordinator` processes and three `kfs broker` processes on loopback; a
//! verifying producer (`acks=all`, `min.insync.replicas=2`, replication
//! factor 3), a reader per partition, and a consumer group of two members
//! (its offsets in the replicated `__consumer_offsets`, its coordinator
//! moving with that topic's leaders); and a nemesis that, at random
//! but reproducibly from a seed, kills a broker with SIGKILL (the
//! controller too, when it is the one drawn), pauses one with SIGSTOP past
//! its session timeout and resumes it, kills a coordinator server, and
//! cuts the network: a broker from every coordinator server (past its
//! session), or everyone from a broker. Each fault is healed after a
//! while. Every broker is reached through a proxy the test controls (its
//! `--advertise` address), and reaches each coordinator server through
//! another, so a cut is a proxy that stops forwarding: connections stay
//! open and silent, as across a broken network.
//!
//! Checked at the end, once every process runs again and every ISR is
//! full, over what each side recorded:
//!
//! - every acknowledged record is in its partition at the offset its
//!   acknowledgement gave (nothing acknowledged is lost);
//! - no offset was acknowledged for two different records (two leaders
//!   never both accepted a write at the same place);
//! - no reader saw a partition's offsets go backwards, and every record a
//!   reader saw is still in the log at its offset (nothing read was
//!   committed and then undone);
//! - the group read every acknowledged record (at least once); no member
//!   saw a partition's offsets go backwards while it owned the partition;
//!   and every partition's committed offset is at least the highest
//!   commit the group was told succeeded (no acknowledged commit lost).
//!
//! `KFS_JEPSEN_RUNS` runs (default 1), each `KFS_JEPSEN_SECONDS` of faults
//! (default 12), seeds from 0 or from `KFS_JEPSEN_SEED` (which replays
//! one). `KFS_JEPSEN_RUNS=100 cargo test --release -p kfs --test jepsen --
//! --nocapture` is the long run; each run prints its report.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::TopicPartition;
use ch04_network::{ClientError, ConsumerConfig, OffsetReset};
use ch05_consumer_groups::{GroupAdmin, GroupConsumer, GroupConsumerConfig, RebalanceListener};
use ch06_replication::client::{ClusterClient, ClusterConfig};
use ch08_cluster::protocol::ClusterDescription;
use ch08_cluster::service::describe_cluster;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

const SESSION_TIMEOUT_MS: u64 = 1_500;
const PARTITIONS: u32 = 3;
const TOPIC: &str = "jepsen";

/// What a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Coordinator,
    Broker,
}

/// The cluster's processes, started and restarted by the test.
struct Processes {
    kfs: PathBuf,
    dir: PathBuf,
    ensemble: String,
    /// Each broker's port.
    broker_ports: Vec<u16>,
    /// In front of each broker: everyone reaches it through this proxy.
    inbound: Vec<Proxy>,
    /// Between each broker and each coordinator server: `to_coordinator[b][c]`
    /// is broker `b + 1`'s way to server `c + 1`.
    to_coordinator: Vec<Vec<Proxy>>,
    running: BTreeMap<(Role, u32), Child>,
}

/// A TCP proxy the test controls: it forwards connections to `target`
/// until cut; then nothing passes either way (connections stay open and
/// silent, as across a broken network, so each side waits for its own
/// timeouts), and when the cut heals the connections it held are closed.
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start(port: u16, target: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut = cut_rx.clone();
                tokio::spawn(async move {
                    if !*cut.borrow() {
                        let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await
                        else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                            _ = cut.wait_for(|cut| *cut) => {}
                        }
                    }
                    // Cut: hold it, silent, until the network heals.
                    // An error means the test is over.
                    let _ = cut.wait_for(|cut| !*cut).await;
                });
            }
        });
        Proxy { port, cut }
    }

    fn set(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Processes {
    async fn start(dir: &Path) -> Processes {
        let ports = common::free_ports(21);
        let coordinator_ports: Vec<(u16, u16)> = (0..3).map(|i| (ports[i], ports[i + 3])).collect();
        let ensemble = coordinator_ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| format!("{}=127.0.0.1:{client}:{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut inbound = Vec::new();
        for (&port, &broker) in ports[9..12].iter().zip(&ports[6..9]) {
            inbound.push(Proxy::start(port, broker).await);
        }
        let mut to_coordinator = Vec::new();
        for b in 0..3 {
            let mut proxies = Vec::new();
            for (c, (client, _)) in coordinator_ports.iter().enumerate() {
                proxies.push(Proxy::start(ports[12 + 3 * b + c], *client).await);
            }
            to_coordinator.push(proxies);
        }
        let mut processes = Processes {
            kfs: assert_cmd::cargo::cargo_bin("kfs"),
            dir: dir.to_path_buf(),
            ensemble,
            broker_ports: ports[6..9].to_vec(),
            inbound,
            to_coordinator,
            running: BTreeMap::new(),
        };
        for id in 1..=3 {
            processes.spawn(Role::Coordinator, id);
        }
        for id in 1..=3 {
            processes.spawn(Role::Broker, id);
        }
        processes
    }

    /// The brokers, as everyone reaches them: through their proxies.
    fn bootstrap(&self) -> Vec<String> {
        let proxies = self.inbound.iter();
        proxies.map(|p| format!("127.0.0.1:{}", p.port)).collect()
    }

    /// Starts (or starts again) one process, on its data directory, and
    /// waits for the line that says it listens.
    fn spawn(&mut self, role: Role, id: u32) {
        let name = match role {
            Role::Coordinator => format!("coordinator-{id}"),
            Role::Broker => format!("broker-{id}"),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap();
        let mut command = Command::new(&self.kfs);
        match role {
            Role::Coordinator => command.args([
                "coordinator",
                "--id",
                &id.to_string(),
                "--ensemble",
                &self.ensemble,
            ]),
            Role::Broker => {
                let b = id as usize - 1;
                let coordinators = self.to_coordinator[b]
                    .iter()
                    .map(|p| format!("127.0.0.1:{}", p.port))
                    .collect::<Vec<_>>()
                    .join(",");
                command
                    .args(["broker", "--id", &id.to_string()])
                    .args(["--coordinator", &coordinators])
                    .args(["--listen", &format!("127.0.0.1:{}", self.broker_ports[b])])
                    .args([
                        "--advertise",
                        &format!("127.0.0.1:{}", self.inbound[b].port),
                    ])
                    .args(["--min-insync-replicas", "2"])
                    .args(["--session-timeout-ms", &SESSION_TIMEOUT_MS.to_string()])
            }
        };
        let mut child = command
            .arg("--data-dir")
            .arg(self.dir.join(&name))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening on"), "{name}: {line:?}");
        self.running.insert((role, id), child);
    }

    fn signal(&self, role: Role, id: u32, signal: &str) {
        let pid = self.running[&(role, id)].id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success(), "kill {signal} {role:?} {id}");
    }

    /// Kills one with SIGKILL; it stays down until started again.
    fn kill(&mut self, role: Role, id: u32) {
        self.signal(role, id, "-KILL");
        let mut child = self.running.remove(&(role, id)).unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.running.values_mut() {
            // Errors mean it has exited already.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the nemesis did, by kind.
#[derive(Debug, Default)]
struct Faults {
    brokers_killed: u32,
    controllers_killed: u32,
    brokers_paused: u32,
    coordinators_killed: u32,
    /// Cut from every coordinator server past its session: a zombie that
    /// clients and brokers can still reach.
    brokers_cut_from_coordinators: u32,
    /// Cut from everyone who reaches it (clients, followers, brokers
    /// heartbeating it as controller), while it still reaches them and the
    /// coordinator.
    brokers_unreachable: u32,
}

/// What the clients saw.
#[derive(Debug, Default)]
struct History {
    /// Acknowledged writes: (partition, offset) → value.
    acked: BTreeMap<(u32, u64), u64>,
    /// The same offset acknowledged for two values.
    conflicts: Vec<String>,
    /// Writes that failed (they may or may not be in the log).
    failed: u64,
    /// Records read: (partition, offset) → value.
    read: BTreeMap<(u32, u64), u64>,
    /// Offsets that went backwards for a reader.
    backwards: Vec<String>,
    /// Records the group's members read: (partition, offset) → value.
    group_read: BTreeMap<(u32, u64), u64>,
    /// Offsets that went backwards for a member that owned the partition
    /// all along.
    group_backwards: Vec<String>,
    /// Per partition, the highest offset a member's commit was
    /// acknowledged for.
    commits: BTreeMap<u32, u64>,
    /// Polls and commits that failed (a rebalance, a coordinator moving),
    /// by what failed and why.
    group_errors: BTreeMap<String, u64>,
}

impl History {
    /// Counts a group member's failed call by its kind and error.
    fn failed_call(&mut self, call: &str, error: &ClientError) {
        let why = match error.code() {
            Some(code) => code.to_string(),
            None => error.to_string(),
        };
        *self
            .group_errors
            .entry(format!("{call}: {why}"))
            .or_default() += 1;
    }
}

fn client(bootstrap: Vec<String>) -> ClusterClient {
    ClusterClient::new(
        bootstrap,
        ClusterConfig {
            request_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(50),
            delivery_timeout: Duration::from_secs(20),
        },
    )
}

/// Writes values 0, 1, 2, ... round the partitions until `until`.
async fn write(bootstrap: Vec<String>, history: Arc<Mutex<History>>, until: Instant) {
    let client = client(bootstrap);
    let mut value = 0u64;
    while Instant::now() < until {
        let partition = (value % u64::from(PARTITIONS)) as u32;
        let tp = TopicPartition::new(TOPIC, partition);
        let record = Record::new(value.to_string().into_bytes());
        let result = client.produce(&tp, &[record]).await;
        let mut history = history.lock().unwrap();
        match result {
            Ok(produced) => {
                let at = (partition, produced.base_offset);
                if let Some(other) = history.acked.insert(at, value) {
                    history
                        .conflicts
                        .push(format!("{tp}@{}: {other} and {value}", at.1));
                }
            }
            Err(_) => history.failed += 1,
        }
        value += 1;
    }
}

/// Reads one partition from its leader until `until`.
async fn read(
    bootstrap: Vec<String>,
    partition: u32,
    history: Arc<Mutex<History>>,
    until: Instant,
) {
    let client = client(bootstrap);
    let tp = TopicPartition::new(TOPIC, partition);
    let mut next = 0u64;
    while Instant::now() < until {
        let Ok(fetched) = client.fetch(&tp, next, Duration::from_millis(200)).await else {
            continue;
        };
        let mut history = history.lock().unwrap();
        for (offset, record) in fetched.records {
            if offset < next {
                history
                    .backwards
                    .push(format!("{tp}: {offset} after {next}"));
            }
            let value = String::from_utf8_lossy(&record.value)
                .parse()
                .unwrap_or(u64::MAX);
            history.read.insert((partition, offset), value);
            next = offset + 1;
        }
    }
}

/// Forgets a member's last offset of each partition it gives up or gets:
/// an owner starts from the group's commit, which may be behind what a
/// previous owner read (at least once).
struct Owned(Arc<Mutex<BTreeMap<u32, u64>>>);

impl RebalanceListener for Owned {
    fn on_partitions_revoked(&mut self, partitions: &[TopicPartition]) {
        let mut last = self.0.lock().unwrap();
        partitions.iter().for_each(|tp| {
            last.remove(&tp.partition);
        });
    }

    fn on_partitions_assigned(&mut self, partitions: &[TopicPartition]) {
        let mut last = self.0.lock().unwrap();
        partitions.iter().for_each(|tp| {
            last.remove(&tp.partition);
        });
    }
}

/// A member of group `jepsen`: reads, and commits after every poll, until
/// `done`; then leaves.
async fn member(
    bootstrap: Vec<String>,
    history: Arc<Mutex<History>>,
    mut done: watch::Receiver<bool>,
) {
    let mut config = GroupConsumerConfig::new("jepsen");
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_millis(500);
    config.enable_auto_commit = false;
    config.consumer = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        request_timeout: Duration::from_secs(5),
        retry_backoff: Duration::from_millis(50),
        ..ConsumerConfig::default()
    };
    let mut consumer = GroupConsumer::connect(&bootstrap.join(","), config)
        .await
        .expect("the cluster is up when the members start");
    consumer.subscribe([TOPIC]);
    let last = Arc::new(Mutex::new(BTreeMap::new()));
    consumer.set_listener(Owned(last.clone()));
    while !*done.borrow_and_update() {
        let records = match consumer.poll(Duration::from_millis(200)).await {
            Ok(records) => records,
            Err(e) => {
                history.lock().unwrap().failed_call("poll", &e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        {
            let mut history = history.lock().unwrap();
            let mut last = last.lock().unwrap();
            for r in records {
                if let Some(&before) = last.get(&r.partition)
                    && r.offset <= before
                {
                    let seen = format!("{TOPIC}-{}: {} after {before}", r.partition, r.offset);
                    history.group_backwards.push(seen);
                }
                last.insert(r.partition, r.offset);
                let value = String::from_utf8_lossy(&r.record.value)
                    .parse()
                    .unwrap_or(u64::MAX);
                history.group_read.insert((r.partition, r.offset), value);
            }
        }
        let committed = consumer.commit_sync().await;
        let mut history = history.lock().unwrap();
        match committed {
            Ok(()) => {
                for tp in consumer.assignment() {
                    if let Some(position) = consumer.position(&tp) {
                        let highest = history.commits.entry(tp.partition).or_default();
                        *highest = (*highest).max(position);
                    }
                }
            }
            Err(e) => history.failed_call("commit", &e),
        }
    }
    let _ = consumer.close().await;
}

async fn describe(bootstrap: &[String]) -> Option<ClusterDescription> {
    describe_cluster(bootstrap, Duration::from_secs(2))
        .await
        .ok()
}

/// Waits (up to a minute) until every partition (the test topic's and the
/// offsets topic's) has a leader and a full ISR; if it does not come, what
/// the cluster looks like.
async fn healed(bootstrap: &[String]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(d) = describe(bootstrap).await
            && d.partitions
                .iter()
                .filter(|(tp, _)| tp.topic == TOPIC)
                .count()
                == PARTITIONS as usize
            && d.partitions
                .iter()
                .all(|(_, s)| s.leader.is_some() && s.isr.len() == 3)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not healed in a minute: {:?}",
                describe(bootstrap).await
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Injects faults until `until`, one at a time, each healed before the
/// next; returns what it did.
async fn nemesis(processes: &mut Processes, seed: u64, until: Instant) -> Faults {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut faults = Faults::default();
    let bootstrap = processes.bootstrap();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.u64(500..1500))).await;
        let id = rng.u32(1..=3);
        let lasting = Duration::from_millis(rng.u64(1000..3000));
        match rng.u8(0..5) {
            0 => {
                let controller = describe(&bootstrap).await.map(|d| d.controller.broker_id);
                processes.kill(Role::Broker, id);
                if controller == Some(id) {
                    faults.controllers_killed += 1;
                } else {
                    faults.brokers_killed += 1;
                }
                tokio::time::sleep(lasting).await;
                processes.spawn(Role::Broker, id);
            }
            1 => {
                processes.signal(Role::Broker, id, "-STOP");
                faults.brokers_paused += 1;
                // Past its session: it wakes up fenced, a zombie.
                let paused = Duration::from_millis(SESSION_TIMEOUT_MS) + lasting;
                tokio::time::sleep(paused).await;
                processes.signal(Role::Broker, id, "-CONT");
            }
            2 => {
                processes.kill(Role::Coordinator, id);
                faults.coordinators_killed += 1;
                tokio::time::sleep(lasting).await;
                processes.spawn(Role::Coordinator, id);
            }
            3 => {
                let proxies = &processes.to_coordinator[id as usize - 1];
                proxies.iter().for_each(|p| p.set(true));
                faults.brokers_cut_from_coordinators += 1;
                let cut = Duration::from_millis(SESSION_TIMEOUT_MS) + lasting;
                tokio::time::sleep(cut).await;
                proxies.iter().for_each(|p| p.set(false));
            }
            _ => {
                let proxy = &processes.inbound[id as usize - 1];
                proxy.set(true);
                faults.brokers_unreachable += 1;
                tokio::time::sleep(lasting).await;
                proxy.set(false);
            }
        }
    }
    faults
}

/// One run; its report, or what it found wrong.
async fn run(seed: u64, seconds: u64) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut processes = Processes::start(dir.path()).await;
    let bootstrap = processes.bootstrap();
    let setup = client(bootstrap.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = setup.create_topic(TOPIC, PARTITIONS, 3).await {
        assert!(Instant::now() < deadline, "creating the topic: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    healed(&bootstrap).await?;

    let history = Arc::new(Mutex::new(History::default()));
    let until = Instant::now() + Duration::from_secs(seconds);
    let writer = tokio::spawn(write(bootstrap.clone(), history.clone(), until));
    let readers: Vec<_> = (0..PARTITIONS)
        .map(|p| tokio::spawn(read(bootstrap.clone(), p, history.clone(), until)))
        .collect();
    let (done, members_done) = watch::channel(false);
    let members: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(member(
                bootstrap.clone(),
                history.clone(),
                members_done.clone(),
            ))
        })
        .collect();
    let faults = nemesis(&mut processes, seed, until).await;
    writer.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }

    // Every process runs again, and every ISR is full: read everything.
    if let Err(e) = healed(&bootstrap).await {
        let kept = dir.keep();
        return Err(format!(
            "seed {seed}: {faults:?}: {e}\nlogs kept in {}",
            kept.display()
        ));
    }
    let reader = client(bootstrap.clone());
    let mut log: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let tp = TopicPartition::new(TOPIC, partition);
        // A last write, acknowledged by every in-sync replica: the high
        // watermark then passes everything before it. (A new leader's high
        // watermark may start below its predecessor's, and catches up only
        // as its followers fetch: read too soon, a committed record would
        // look lost.)
        let barrier = reader
            .produce(&tp, &[Record::new(b"barrier".to_vec())])
            .await
            .map_err(|e| format!("the last write to {tp}: {e}"))?
            .base_offset;
        let mut next = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while next <= barrier {
            if Instant::now() > deadline {
                return Err(format!("{tp}: not readable up to {barrier} in 30 s"));
            }
            let fetched = reader
                .fetch(&tp, next, Duration::from_millis(100))
                .await
                .map_err(|e| e.to_string())?;
            for (offset, record) in fetched.records {
                let value = String::from_utf8_lossy(&record.value)
                    .parse()
                    .unwrap_or(u64::MAX);
                log.insert((partition, offset), value);
                next = offset + 1;
            }
        }
    }
    // The group goes on until it has read everything acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    let unread_by_group = || {
        let history = history.lock().unwrap();
        let unread: Vec<(u32, u64)> = history
            .acked
            .iter()
            .filter(|(at, value)| history.group_read.get(at) != Some(value))
            .map(|(at, _)| *at)
            .collect();
        unread
    };
    while !unread_by_group().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.send_replace(true);
    for member in members {
        member.await.unwrap();
    }
    let committed = GroupAdmin::connect(&bootstrap.join(","), Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?
        .committed_offsets("jepsen")
        .await
        .map_err(|e| format!("the group's commits: {e}"))?;
    let unread_by_group = unread_by_group();
    let history = history.lock().unwrap();
    let commits_lost: Vec<String> = history
        .commits
        .iter()
        .filter_map(|(&partition, &acked)| {
            let tp = TopicPartition::new(TOPIC, partition);
            let now = committed.get(&tp).copied().unwrap_or(0);
            (now < acked).then(|| format!("{tp}: {acked} acknowledged, {now} committed"))
        })
        .collect();
    let lost: Vec<_> = history
        .acked
        .iter()
        .filter(|(at, value)| log.get(at) != Some(value))
        .collect();
    let unread: Vec<_> = history
        .read
        .iter()
        .filter(|(at, value)| log.get(at) != Some(value))
        .collect();
    let report = format!(
        "seed {seed}: {faults:?}; {} acknowledged, {} failed (retried in vain), {} lost, \
         {} read, {} read and then gone, {} conflicting acknowledgements, {} offsets backwards; \
         the group: {} read, {} acknowledged unread, {} offsets backwards, {} commits lost, \
         failed polls or commits {:?}",
        history.acked.len(),
        history.failed,
        lost.len(),
        history.read.len(),
        unread.len(),
        history.conflicts.len(),
        history.backwards.len(),
        history.group_read.len(),
        unread_by_group.len(),
        history.group_backwards.len(),
        commits_lost.len(),
        history.group_errors,
    );
    let wrong = !lost.is_empty()
        || !unread.is_empty()
        || !history.conflicts.is_empty()
        || !history.backwards.is_empty()
        || !unread_by_group.is_empty()
        || !history.group_backwards.is_empty()
        || !commits_lost.is_empty();
    if wrong {
        let first = |v: &[String]| v.first().cloned().unwrap_or_default();
        return Err(format!(
            "{report}\nlost (first 5): {:?}\nread then gone (first 5): {:?}\nconflicts: {}\nbackwards: {}\n\
             unread by the group (first 5): {:?}\nbackwards in the group: {}\ncommits lost: {}\nlogs kept in {}",
            lost.iter().take(5).collect::<Vec<_>>(),
            unread.iter().take(5).collect::<Vec<_>>(),
            first(&history.conflicts),
            first(&history.backwards),
            unread_by_group.iter().take(5).collect::<Vec<_>>(),
            first(&history.group_backwards),
            first(&commits_lost),
            dir.keep().display()
        ));
    }
    if history.acked.is_empty() {
        return Err(format!(
            "{report}\nnothing was acknowledged: the test tested nothing"
        ));
    }
    Ok(report)
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} is a number")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_record_is_lost_under_kills_pauses_and_coordinator_failures() {
    let seconds = env("KFS_JEPSEN_SECONDS").unwrap_or(12);
    let seeds: Vec<u64> = match env("KFS_JEPSEN_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("KFS_JEPSEN_RUNS").unwrap_or(1)).collect(),
    };
    let (mut acked, mut runs) = (0, 0);
    for seed in seeds {
        match run(seed, seconds).await {
            Ok(report) => {
                println!("{report}");
                runs += 1;
                acked += report
                    .split("; ")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            Err(e) => panic!(
                "{e}\nreplay: KFS_JEPSEN_SEED={seed} KFS_JEPSEN_SECONDS={seconds} cargo test -p kfs --test jepsen -- --nocapture"
            ),
        }
    }
    println!("{runs} runs, {acked} records acknowledged, 0 lost");
}
