//! `kfs broker`: opens the data directory, serves it until SIGINT or
//! SIGTERM, then drains what is in flight and closes the logs cleanly.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use ch03_partitions::TopicStore;
use ch04_network::ServerConfig;
use ch05_consumer_groups::service::{self, GroupConfig};
use clap::Args;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::Result;
use crate::signal;

/// `kfs broker`'s flags.
#[derive(Debug, Args)]
pub(crate) struct BrokerArgs {
    /// The address to listen on (`listeners`); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Where the topics are stored (`log.dirs`).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
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

    let (store, report) = TopicStore::open(&args.data_dir)?;
    info!(
        dir = %args.data_dir.display(),
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

    // Chapter 5's broker: chapter 4's, with a group coordinator inside.
    let server = service::bind(
        args.listen,
        store,
        ServerConfig::default(),
        GroupConfig::default(),
    )
    .await?;
    // The one line on stdout: scripts and tests read the address from it
    // (with `--listen 127.0.0.1:0` it is the only way to learn the port).
    println!(
        "kfs broker listening on {} (data in {})",
        server.local_addr(),
        args.data_dir.display()
    );
    std::io::stdout().flush()?;

    server.run(shutdown_signal()).await?;
    info!("stopped cleanly");
    Ok(())
}
// ANCHOR_END: run

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

/// Completes on SIGINT (Ctrl-C) or SIGTERM, saying which.
async fn shutdown_signal() {
    let name = signal::stop().await;
    info!("{name}: shutting down");
}
