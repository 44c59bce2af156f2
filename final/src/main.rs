//! `kfs`: the command-line front door of Kafka from Scratch.
//!
//! One binary with the subcommands an operator expects from Kafka's own
//! tools, named after them where they exist:
//!
//! | `kfs` | Kafka's tool |
//! | --- | --- |
//! | `kfs broker` | `kafka-server-start` |
//! | `kfs topics create/list/describe/delete` | `kafka-topics` |
//! | `kfs produce` | `kafka-console-producer` |
//! | `kfs consume` | `kafka-console-consumer` |
//! | `kfs groups list/describe` | `kafka-consumer-groups` |
//! | `kfs perf produce/consume` | `kafka-producer-perf-test`, `kafka-consumer-perf-test` |
//! | `kfs coordinator` | `zookeeper-server-start` (chapter 7's coordinator) |
//! | `kfs zk` | `zookeeper-shell` |
//! | `kfs cluster up/status` | (a local cluster of processes) |
//! | `kfs cluster elect-leaders` | `kafka-leader-election` |
//!
//! `kfs broker` runs chapter 8's broker, a member of a cluster (of one,
//! with an embedded coordinator, unless given the coordinator servers);
//! the clients are chapter 4's and 5's (chapter 4's producer and
//! consumer send each partition's requests to its leader, so they follow
//! a replicated topic's leaders as they move).
//!
//! # Layout
//!
//! - `main.rs`: the command line (clap) and its one-line errors.
//! - `broker.rs`: `kfs broker`, a server until SIGINT or SIGTERM, with an
//!   embedded coordinator when it is given none.
//! - `properties.rs`: `kfs broker --config`, Kafka's `server.properties`.
//! - `cluster.rs`: `kfs cluster up`, `status` and `elect-leaders`, and the
//!   other tools' calls to the controller (`DescribeCluster`).
//! - `topics.rs`: `kfs topics`.
//! - `console.rs`: `kfs produce` and `kfs consume`, lines in and out.
//! - `groups.rs`: `kfs groups`, members, committed offsets and lag.
//! - `perf.rs`: `kfs perf`, throughput and latency percentiles.
//! - `zk.rs`: `kfs coordinator` and `kfs zk`, chapter 7's coordinator
//!   and its shell.
//! - `signal.rs`: SIGINT and SIGTERM, on which `kfs broker` and
//!   `kfs consume` stop cleanly.

mod broker;
mod cluster;
mod console;
mod groups;
mod perf;
mod properties;
mod signal;
mod topics;
mod zk;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// What a subcommand returns: any error ends `kfs` with a one-line message.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Kafka from Scratch: a Kafka-like broker built one chapter at a time.
#[derive(Debug, Parser)]
#[command(name = "kfs", version, about, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker (kafka-server-start).
    Broker(broker::BrokerArgs),
    /// Create, list, describe and delete topics (kafka-topics).
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Send each line of standard input as a record (kafka-console-producer).
    Produce(console::ProduceArgs),
    /// Print a topic's records, one per line (kafka-console-consumer).
    Consume(console::ConsumeArgs),
    /// List and describe consumer groups (kafka-consumer-groups).
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Measure throughput and latency (kafka-producer-perf-test and
    /// kafka-consumer-perf-test).
    #[command(subcommand)]
    Perf(perf::PerfCommand),
    /// Run a coordinator server (zookeeper-server-start).
    Coordinator(zk::CoordinatorArgs),
    /// Read and write the coordinator's tree (zookeeper-shell).
    Zk(zk::ZkArgs),
    /// Start a local cluster of processes, and show its state.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

/// How long a client waits for the broker's answer (`request.timeout.ms`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a producer waits for a topic to appear in metadata
/// (`max.block.ms`): Kafka's 60 s is long for a command line, and a new
/// topic reaches every broker within a heartbeat.
const MAX_BLOCK: Duration = Duration::from_secs(5);

/// The flag every client subcommand takes, as Kafka's tools do.
#[derive(Debug, Args)]
struct Bootstrap {
    /// The brokers to start from, host:port[,host:port...]: the first
    /// that answers is used.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
}

impl Bootstrap {
    /// Every address given.
    fn servers(&self) -> Vec<String> {
        ch04_network::leaders::bootstrap_servers(&self.bootstrap_server)
    }

    /// The first address given that accepts a connection (the only one,
    /// untried, if only one is given: the client's own error says why it
    /// cannot be reached).
    async fn server(&self) -> Result<String> {
        let servers = self.servers();
        if let [only] = servers.as_slice() {
            return Ok(only.clone());
        }
        for server in &servers {
            let connect = tokio::net::TcpStream::connect(server.as_str());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                return Ok(server.clone());
            }
        }
        Err(format!("no broker of {} could be reached", self.bootstrap_server).into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The broker serves many connections on every core. A client runs its
    // command on this thread and its background tasks (the producer's
    // sender, the perf latency recorder) on one worker: enough to overlap
    // the two, and it leaves the other cores to a broker on this machine.
    // `kfs perf coordinator` is the exception: its many sessions' calls
    // and answers are small and many, and one worker could not keep up
    // with three servers (it would measure itself, not the ensemble).
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    let on_every_core = matches!(
        cli.command,
        Command::Broker(_) | Command::Perf(perf::PerfCommand::Coordinator(_))
    );
    if !on_every_core {
        runtime.worker_threads(1);
    }
    let runtime = runtime.enable_all().build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Broker(args) => broker::run(args).await,
            Command::Topics(command) => topics::run(command).await,
            Command::Produce(args) => console::produce(args).await,
            Command::Consume(args) => console::consume(args).await,
            Command::Groups(command) => groups::run(command).await,
            Command::Perf(command) => perf::run(command).await,
            Command::Coordinator(args) => zk::coordinator(args).await,
            Command::Zk(args) => zk::zk(args).await,
            Command::Cluster(command) => cluster::run(command).await,
        }
    });
    // Tasks still running (a perf recorder, a stdin reader) are dropped
    // here rather than waited for.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&*e),
    }
}

/// Prints `error: ...` on one line and returns the failure exit code.
fn fail(error: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}
