//! `create-replicated-topic BOOTSTRAP BROKERS TOPIC REPLICATION_FACTOR`:
//! the replication harness's way to make a topic on chapter 6's cluster
//! (`benches/e2e-replication.sh`), and to know when it is ready.
//!
//! BOOTSTRAP is a comma-separated list of broker addresses. It waits until
//! the brokers' Metadata lists BROKERS live brokers, creates TOPIC with one
//! partition of REPLICATION_FACTOR replicas (`ClusterClient::create_topic`),
//! then writes one record with `acks=all` and waits for its acknowledgement:
//! that proves the leader leads and every follower has fetched from it, so
//! the measured run that follows does not start by waiting for the brokers'
//! next heartbeats. (The topic thus holds one record before the run.) Last
//! it prints the leader's id and address, `1 127.0.0.1:40123`.
//!
//! Every wait has a deadline; any failure ends it with one `error: ...`
//! line and status 1.

use std::process::ExitCode;
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::TopicPartition;
use ch06_replication::client::{ClusterClient, ClusterConfig};
use tokio::time::Instant;

/// How long any one step may take before the harness is told it failed.
const DEADLINE: Duration = Duration::from_secs(30);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, brokers, topic, replication_factor] = &args[..] else {
        eprintln!("usage: create-replicated-topic BOOTSTRAP BROKERS TOPIC REPLICATION_FACTOR");
        return ExitCode::from(2);
    };
    let (Ok(brokers), Ok(replication_factor)) =
        (brokers.parse::<usize>(), replication_factor.parse::<u32>())
    else {
        eprintln!("error: BROKERS and REPLICATION_FACTOR must be whole numbers");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bootstrap = bootstrap.split(',').map(str::to_string).collect();
    match runtime.block_on(create(bootstrap, brokers, topic, replication_factor)) {
        Ok((id, addr)) => {
            println!("{id} {addr}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Creates the topic once `brokers` brokers are live, waits until a write
/// to it is acknowledged by every replica, and returns its leader.
async fn create(
    bootstrap: Vec<String>,
    brokers: usize,
    topic: &str,
    replication_factor: u32,
) -> Result<(u32, String)> {
    let client = ClusterClient::new(
        bootstrap,
        ClusterConfig {
            // Longer than the brokers' `request.timeout.ms` (30 s by
            // default), as an `acks=all` client's must be.
            request_timeout: Duration::from_secs(35),
            // Short: the first write retries until the brokers have heard
            // of the topic, and a shorter wait is a quicker start.
            retry_backoff: Duration::from_millis(10),
            delivery_timeout: DEADLINE,
        },
    );
    // Each broker learns the others at its heartbeat (every 2 s by
    // default): look until its Metadata lists them all.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let listed = client.refresh_metadata().await.is_ok() && client.brokers().len() >= brokers;
        if listed {
            break;
        }
        if Instant::now() >= deadline {
            let seen = client.brokers().len();
            return Err(format!("{seen} of {brokers} brokers live after {DEADLINE:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client.create_topic(topic, 1, replication_factor).await?;
    let tp = TopicPartition::new(topic, 0);
    // Retried (unknown topic, no leader yet) until every replica has it.
    client
        .produce(&tp, &[Record::new(b"ready".to_vec())])
        .await
        .map_err(|e| format!("the first write to {tp}: {e}"))?;
    Ok(client.leader(&tp).await?)
}
