//! `replica-node`: one node of chapter 6's cluster, as a process. A broker
//! (`--controller <addr>`), a controller alone (`--controller-only`), or
//! both in one process (`--run-controller`, KRaft's "combined mode",
//! `process.roles=broker,controller`).
//!
//! It prints one line on stdout with the address(es) it listens on, such
//! as `broker 127.0.0.1:40123 controller 127.0.0.1:40124`, so that a parent
//! started with `--listen 127.0.0.1:0` can read its ports; it logs on stderr
//! (`RUST_LOG` filters); SIGINT or SIGTERM stop it cleanly. Any error ends
//! it with one `error: ...` line and status 1.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ch03_partitions::TopicStore;
use ch04_network::ServerConfig;
use ch06_replication::controller::ControllerConfig;
use ch06_replication::controller_service::{self, ControllerServiceConfig};
use ch06_replication::replica::Flush;
use ch06_replication::service::{self, ReplicationConfig};
use clap::{Parser, ValueEnum};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One node of chapter 6's replicated cluster: a broker, a controller, or both.
#[derive(Debug, Parser)]
#[command(name = "replica-node", version)]
struct Args {
    /// This broker's id (`node.id`).
    #[arg(long, required_unless_present = "controller_only")]
    node_id: Option<u32>,
    /// Where this broker stores its partitions (`log.dirs`).
    #[arg(long, required_unless_present = "controller_only")]
    data_dir: Option<PathBuf>,
    /// The broker's address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The controller's address, `host:port`.
    #[arg(
        long,
        required_unless_present_any = ["run_controller", "controller_only"],
        conflicts_with_all = ["run_controller", "controller_only"]
    )]
    controller: Option<String>,
    /// Run the controller in this process too (combined mode).
    #[arg(long, conflicts_with = "controller_only")]
    run_controller: bool,
    /// Run only the controller, no broker.
    #[arg(long)]
    controller_only: bool,
    /// The controller's address, when this process runs it.
    #[arg(long, default_value = "127.0.0.1:0")]
    controller_listen: SocketAddr,
    /// `min.insync.replicas`: refuse `acks=all` writes while the ISR is
    /// smaller.
    #[arg(long, default_value_t = 1)]
    min_insync_replicas: usize,
    /// When a write is made durable: `os` (Kafka's default: the page
    /// cache, and the other replicas) or `before-ack` (fsync first).
    #[arg(long, value_enum, default_value_t = FlushArg::Os)]
    flush: FlushArg,
    /// `broker.session.timeout.ms` (controller): fence a broker silent
    /// this long.
    #[arg(long, default_value_t = 9_000)]
    session_timeout_ms: u64,
    /// `unclean.leader.election.enable` (controller).
    #[arg(long)]
    unclean_leader_election: bool,
    /// `broker.heartbeat.interval.ms`.
    #[arg(long, default_value_t = 2_000)]
    heartbeat_interval_ms: u64,
    /// `replica.lag.time.max.ms`: a follower not caught up this long
    /// leaves the ISR.
    #[arg(long, default_value_t = 30_000)]
    replica_lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms`: how long a leader holds a follower's
    /// fetch that finds nothing new.
    #[arg(long, default_value_t = 500)]
    replica_fetch_wait_max_ms: u64,
    /// `replica.fetch.backoff.ms`: a follower's wait after a failed fetch.
    #[arg(long, default_value_t = 1_000)]
    replica_fetch_backoff_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`.
    #[arg(long, default_value_t = 5_000)]
    high_watermark_checkpoint_interval_ms: u64,
    /// `request.timeout.ms`: how long an `acks=all` produce waits for the
    /// followers, and a call to another node for its answer.
    #[arg(long, default_value_t = 30_000)]
    request_timeout_ms: u64,
}

/// `--flush`'s values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FlushArg {
    /// Leave it to the operating system.
    Os,
    /// Sync before a write counts.
    BeforeAck,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    crash_on_panic();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let signals = StopSignals::install();
    let (stop, stopped) = watch::channel(false);
    let stop_on = |mut stopped: watch::Receiver<bool>| async move {
        // An error means the sender is gone: stop too.
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let mut line = Vec::new();

    let mut controller_task = None;
    let mut controller_addr = args.controller.clone();
    if args.run_controller || args.controller_only {
        let config = ControllerServiceConfig {
            controller: ControllerConfig {
                session_timeout_ms: args.session_timeout_ms,
                unclean_leader_election: args.unclean_leader_election,
                min_insync_replicas: args.min_insync_replicas,
            },
            ..ControllerServiceConfig::default()
        };
        let (server, _) =
            controller_service::bind(args.controller_listen, ServerConfig::default(), config)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", args.controller_listen))?;
        let addr = server.local_addr();
        line.push(format!("controller {addr}"));
        controller_addr = Some(addr.to_string());
        controller_task = Some(tokio::spawn(server.run(stop_on(stopped.clone()))));
    }

    let mut broker_task = None;
    if let (Some(node_id), Some(data_dir), Some(controller)) =
        (args.node_id, &args.data_dir, controller_addr)
    {
        let (store, report) = TopicStore::open(data_dir)?;
        for (partition, recovery) in &report.recovered {
            warn!(%partition, ?recovery, "not closed cleanly; recovered");
        }
        let mut config = ReplicationConfig::new(node_id, controller);
        config.heartbeat_interval = Duration::from_millis(args.heartbeat_interval_ms);
        config.replica_fetch_wait_max = Duration::from_millis(args.replica_fetch_wait_max_ms);
        config.replica_fetch_backoff = Duration::from_millis(args.replica_fetch_backoff_ms);
        config.request_timeout = Duration::from_millis(args.request_timeout_ms);
        config.manager.request_timeout_ms = args.request_timeout_ms;
        config.manager.high_watermark_checkpoint_interval_ms =
            args.high_watermark_checkpoint_interval_ms;
        config.manager.replica.min_insync_replicas = args.min_insync_replicas;
        config.manager.replica.replica_lag_time_max_ms = args.replica_lag_time_max_ms;
        config.manager.replica.flush = match args.flush {
            FlushArg::Os => Flush::Os,
            FlushArg::BeforeAck => Flush::BeforeAck,
        };
        let (server, _) =
            service::bind(args.listen, store, ServerConfig::default(), config).await?;
        line.insert(0, format!("broker {}", server.local_addr()));
        info!(node_id, dir = %data_dir.display(), "broker started");
        broker_task = Some(tokio::spawn(server.run(stop_on(stopped.clone()))));
    }

    // The one line on stdout: a parent process reads the ports from it.
    println!("{}", line.join(" "));
    std::io::stdout().flush()?;

    let name = signals.recv().await;
    info!("{name}: shutting down");
    stop.send_replace(true);
    // The broker first: its last heartbeat and ISR changes can still reach
    // the controller while it drains.
    if let Some(task) = broker_task {
        task.await?
            .map_err(|e| format!("closing the broker: {e}"))?;
    }
    if let Some(task) = controller_task {
        // The controller's close cannot fail (its error type is Infallible).
        let _ = task.await?;
    }
    info!("stopped cleanly");
    Ok(())
}

/// Makes the node crash-only, as `kfs broker` is: a panic anywhere ends
/// the process (tokio would otherwise end only the task), and a restart
/// recovers from disk.
fn crash_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
}

/// SIGINT and SIGTERM, listened for from the start (before the line that
/// tells a parent it may signal). A handler that cannot be installed is
/// logged and its signal never waited for.
struct StopSignals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl StopSignals {
    fn install() -> StopSignals {
        let one = |kind, name| {
            signal(kind)
                .map_err(|e| warn!(error = %e, "cannot listen for {name}"))
                .ok()
        };
        StopSignals {
            interrupt: one(SignalKind::interrupt(), "SIGINT"),
            terminate: one(SignalKind::terminate(), "SIGTERM"),
        }
    }

    /// Completes when one arrives, with its name.
    async fn recv(self) -> &'static str {
        async fn one(stream: Option<Signal>) {
            match stream {
                Some(mut stream) => {
                    stream.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = one(self.interrupt) => "SIGINT",
            () = one(self.terminate) => "SIGTERM",
        }
    }
}
