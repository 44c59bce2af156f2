//! `kfs broker`: one broker of a cluster (chapter 8), serving until SIGINT
//! or SIGTERM; then it asks the controller to move its leadership away,
//! drains what is in flight, leaves the cluster and closes its logs
//! cleanly.
//!
//! With `--coordinator` (or `zookeeper.connect` in `--config`) it joins
//! the cluster whose coordinator servers those are. Without, it starts an
//! embedded single-node coordinator in the same process (its data beside
//! the topics', in `<data-dir>/coordinator`), as Kafka's KRaft combined
//! mode runs a controller inside a broker: a bare `kfs broker` is a
//! cluster of one, with nothing else to start.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ch03_partitions::TopicStore;
use ch04_network::ServerConfig;
use ch06_replication::controller::ControllerConfig;
use ch06_replication::service::ReplicationConfig;
use ch07_coordinator::client::ClientConfig;
use ch07_coordinator::raft::RaftConfig;
use ch07_coordinator::shell::{self, Member, ShellConfig};
use ch08_cluster::controller::ClusterConfig;
use ch08_cluster::service::{self, ClusterBrokerConfig, ClusterLink};
use clap::Args;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::properties::{self, Properties};
use crate::zk::resolve_servers;
use crate::{Result, signal};

/// `kfs broker`'s flags. Each overrides the same setting in `--config`.
#[derive(Debug, Args)]
pub(crate) struct BrokerArgs {
    /// A `server.properties` file, by Kafka's names (`broker.id`,
    /// `listeners`, `log.dirs`, `zookeeper.connect`, ...).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This broker's id (`broker.id`) [default: 1].
    #[arg(long)]
    id: Option<u32>,
    /// The coordinator servers, host:port,... (`zookeeper.connect`).
    /// Without them, an embedded single-node coordinator.
    #[arg(long, value_name = "SERVERS")]
    coordinator: Option<String>,
    /// The address to listen on (`listeners`); port 0 picks a free port
    /// [default: 127.0.0.1:9092].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The address other brokers and clients are told to reach this one
    /// at (`advertised.listeners`) [default: the one it listens on].
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// Where the topics are stored (`log.dirs`) [default: ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// `min.insync.replicas`: an `acks=all` write is refused while a
    /// partition's ISR is smaller [default: 1].
    #[arg(long)]
    min_insync_replicas: Option<usize>,
    /// `default.replication.factor`: a topic created without a
    /// replication factor (`kfs topics create` without
    /// `--replication-factor`) is replicated this many times, through the
    /// controller. Without it, such a topic lives on this broker alone, as
    /// in chapters 4 and 5.
    #[arg(long, value_name = "N")]
    default_replication_factor: Option<u32>,
    /// `offsets.topic.replication.factor`: how many copies of the
    /// consumer groups' committed offsets (`__consumer_offsets`) the
    /// cluster keeps; groups wait until it has this many brokers
    /// [default: 3 with --coordinator; 1 with the embedded one, as
    /// Kafka's single-node quick-start sets it].
    #[arg(long, value_name = "N")]
    offsets_topic_replication_factor: Option<u32>,
    /// `zookeeper.session.timeout.ms`: how long after its last word a
    /// broker is taken for dead [default: 6000; Kafka's is 18000].
    #[arg(long, value_name = "MS")]
    session_timeout_ms: Option<u64>,
}

/// `broker.heartbeat.interval.ms` (Kafka: 2 s).
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);

/// The settings, flags over file over defaults.
struct Settings {
    id: u32,
    coordinator: Option<String>,
    listen: SocketAddr,
    advertise: Option<SocketAddr>,
    data_dir: PathBuf,
    min_insync_replicas: usize,
    default_replication_factor: Option<u32>,
    offsets_replication_factor: u32,
    session_timeout_ms: u64,
    unclean_leader_election: bool,
}

impl Settings {
    fn new(args: BrokerArgs) -> Result<Settings> {
        let file = match &args.config {
            Some(path) => properties::load(path)?,
            None => Properties::default(),
        };
        for key in &file.unknown {
            warn!(key, "ignored a setting this broker does not know");
        }
        let session_timeout_ms = args
            .session_timeout_ms
            .or(file.session_timeout_ms)
            .unwrap_or(6_000);
        if session_timeout_ms < 300 {
            return Err("the session timeout is at least 300 ms".into());
        }
        let coordinator = args.coordinator.or(file.coordinator);
        let offsets_replication_factor = args
            .offsets_topic_replication_factor
            .or(file.offsets_replication_factor)
            .unwrap_or(if coordinator.is_some() { 3 } else { 1 });
        if offsets_replication_factor == 0 {
            return Err("the offsets topic's replication factor is at least 1".into());
        }
        Ok(Settings {
            id: args.id.or(file.broker_id).unwrap_or(1),
            coordinator,
            offsets_replication_factor,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:9092".parse().expect("an address")),
            advertise: args.advertise.or(file.advertise),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| "./data".into()),
            min_insync_replicas: args
                .min_insync_replicas
                .or(file.min_insync_replicas)
                .unwrap_or(1),
            default_replication_factor: args
                .default_replication_factor
                .or(file.default_replication_factor),
            session_timeout_ms,
            unclean_leader_election: file.unclean_leader_election.unwrap_or(false),
        })
    }

    /// The cluster broker's configuration, on the coordinator `servers`.
    fn broker_config(&self, servers: Vec<SocketAddr>) -> ClusterBrokerConfig {
        // Chapter 6's `controller` address is not used: it is elected.
        let mut replication = ReplicationConfig::new(self.id, "");
        replication.manager.replica.min_insync_replicas = self.min_insync_replicas;
        replication.default_replication_factor = self.default_replication_factor;
        replication.offsets_replication_factor = self.offsets_replication_factor;
        // A heartbeat is also how a broker learns that it leads now: KRaft
        // pushes that through its metadata log at once, and a ZooKeeper-era
        // controller sent LeaderAndIsr. Kafka's 2 s interval would add up
        // to 2 s to every failover here.
        replication.heartbeat_interval = HEARTBEAT_INTERVAL;
        let timeout = self.session_timeout_ms;
        ClusterBrokerConfig {
            replication,
            cluster: ClusterConfig {
                // In the proportions of chapter 7's defaults (6 s, 2 s, 1 s):
                // a session survives a server's failure and a missed ping.
                client: ClientConfig {
                    session_timeout_ms: timeout,
                    request_timeout_ms: timeout / 3,
                    ping_interval_ms: timeout / 6,
                },
                controller: ControllerConfig {
                    min_insync_replicas: self.min_insync_replicas,
                    unclean_leader_election: self.unclean_leader_election,
                    ..ControllerConfig::default()
                },
            },
            coordinator: servers,
            advertised: self.advertise,
        }
    }
}

// ANCHOR: run
/// Runs the broker until a signal asks it to stop.
pub(crate) async fn run(args: BrokerArgs) -> Result<()> {
    // Structured logs on stderr; `RUST_LOG=debug` shows every connection.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    crash_on_panic();
    let settings = Settings::new(args)?;

    let (store, report) = TopicStore::open(&settings.data_dir)?;
    info!(
        dir = %settings.data_dir.display(),
        topics = report.topics,
        partitions = report.partitions,
        "opened the data directory"
    );
    for (partition, recovery) in &report.recovered {
        warn!(%partition, ?recovery, "not closed cleanly; recovered");
    }
    for dir in &report.removed_dirs {
        warn!(%dir, "removed a partition directory topics.meta does not list");
    }
    for partition in &report.recreated {
        warn!(%partition, "partition directory was missing; created it empty");
    }

    // The coordinator: the cluster's, or one of our own.
    let (servers, embedded) = match &settings.coordinator {
        Some(servers) => (resolve_servers(servers)?, None),
        None => {
            let (address, embedded) = embedded_coordinator(&settings.data_dir).await?;
            (vec![address], Some(embedded))
        }
    };

    // Chapter 8's broker: chapter 6's replicated broker (chapter 5's group
    // broker inside), a member of the cluster on the coordinator.
    let config = settings.broker_config(servers);
    let (server, view) =
        service::bind(settings.listen, store, ServerConfig::default(), config).await?;
    // The one line on stdout: scripts and tests read the address from it
    // (with `--listen 127.0.0.1:0` it is the only way to learn the port).
    println!(
        "kfs broker listening on {} (data in {})",
        server.local_addr(),
        settings.data_dir.display()
    );
    std::io::stdout().flush()?;

    let id = settings.id;
    server.run(shutdown_signal(view.link, id)).await?;
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    info!("stopped cleanly");
    Ok(())
}
// ANCHOR_END: run

/// A coordinator server running in this process.
struct Embedded {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Embedded {
    /// Stops it after the broker has left the cluster.
    async fn stop(self) {
        // The task may have ended already (its error was logged).
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts a single-node coordinator on free loopback ports, its data in
/// `<data_dir>/coordinator` (chapter 3's store leaves a directory whose
/// name is not `<topic>-<partition>` alone); returns its client address.
async fn embedded_coordinator(data_dir: &Path) -> Result<(SocketAddr, Embedded)> {
    let clients = TcpListener::bind("127.0.0.1:0").await?;
    let peers = TcpListener::bind("127.0.0.1:0").await?;
    let member = Member {
        client: clients.local_addr()?,
        peer: peers.local_addr()?,
    };
    let config = ShellConfig {
        id: 1,
        ensemble: BTreeMap::from([(1, member)]),
        data_dir: data_dir.join("coordinator"),
        raft: RaftConfig {
            // Alone, it elects itself after one timeout: keep it short.
            election_timeout_ms: 300,
            heartbeat_interval_ms: 100,
            max_entries_per_message: 4096,
        },
        tick: Duration::from_millis(10),
        snapshot_every: 100_000,
    };
    info!(address = %member.client, "started an embedded coordinator");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            // A dropped sender stops it too.
            let _ = stopped.await;
        };
        if let Err(e) = shell::run(config, clients, peers, shutdown).await {
            warn!(error = %e, "the embedded coordinator stopped");
        }
    });
    Ok((member.client, Embedded { stop, task }))
}

/// Makes the broker crash-only: a panic anywhere, even in one request's
/// task (which tokio would catch, closing only that connection), ends the
/// process. A panic is a bug that may have left shared state half-changed:
/// a log's in-memory index, a group's members, a lock poisoned for every
/// later request. Carrying on could serve or store wrong data and leaves a
/// broker that looks alive but fails; a restart recovers from disk, which
/// is what the recovery code and its crash tests are for.
fn crash_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
}

/// How long a stopping broker tries to have its leadership moved away
/// before it stops anyway (Kafka: `controlled.shutdown.max.retries` = 3
/// tries, `controlled.shutdown.retry.backoff.ms` = 5 s apart).
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Completes on SIGINT (Ctrl-C) or SIGTERM, saying which, once the
/// controller has moved this broker's leadership away (or given up).
async fn shutdown_signal(link: ClusterLink, id: u32) {
    let name = signal::stop().await;
    info!("{name}: shutting down");
    let moved = tokio::time::timeout(CONTROLLED_SHUTDOWN_TIMEOUT, async {
        loop {
            match link.controlled_shutdown(id).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(error = %e, "controlled shutdown failed; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    match moved.await {
        Ok(()) => info!("controlled shutdown: this broker leads nothing now"),
        Err(_) => warn!("controlled shutdown did not complete; stopping anyway"),
    }
}
