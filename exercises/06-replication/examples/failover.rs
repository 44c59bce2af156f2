//! Chapter 6's demo: a leader dies, and no acknowledged write is lost.
//!
//! A controller and three brokers on loopback, in one process: each broker
//! runs on a tokio runtime of its own, so that "killing" one is shutting
//! its runtime down at once, every task dropped mid-flight, no clean
//! shutdown (its files stay as a crash would leave them, page cache
//! included). A producer writes with `acks=all` and a consumer reads all
//! along; the leader is killed; the controller notices its silence and
//! elects a follower; both clients find the new leader; and at the end
//! every acknowledged record is checked where it was acknowledged.
//!
//! Run it with `cargo run -p ch06-replication --example failover`.

use std::collections::BTreeMap;
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::{TopicPartition, TopicStore};
use ch04_network::ServerConfig;
use ch06_replication::client::{ClusterClient, ClusterConfig};
use ch06_replication::controller::ControllerConfig;
use ch06_replication::controller_service::{self, ControllerServiceConfig, ControllerView};
use ch06_replication::protocol::BrokerId;
use ch06_replication::service::{self, Replicas, ReplicationConfig};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const RECORDS_BEFORE: u64 = 50;
const RECORDS_AFTER: u64 = 50;

/// A broker on a runtime of its own.
struct Broker {
    runtime: Runtime,
    replicas: Replicas,
    addr: String,
    stop: oneshot::Sender<()>,
    stopped: oneshot::Receiver<()>,
}

impl Broker {
    async fn start(id: BrokerId, dir: &std::path::Path, controller: &str) -> Result<Broker> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (store, _) = TopicStore::open(dir)?;
        let mut config = ReplicationConfig::new(id, controller);
        config.heartbeat_interval = Duration::from_millis(100);
        config.replica_fetch_wait_max = Duration::from_millis(100);
        config.replica_fetch_backoff = Duration::from_millis(50);
        let (started, ready) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (done, stopped) = oneshot::channel();
        // Bound on its own runtime, so that its sockets and tasks die with it.
        runtime.spawn(async move {
            let addr = "127.0.0.1:0".parse().expect("an address");
            let bound = service::bind(addr, store, ServerConfig::default(), config).await;
            let (server, replicas) = match bound {
                Ok(bound) => bound,
                Err(e) => return eprintln!("broker {id}: {e}"),
            };
            // The demo waits for this; if it is gone, nobody is listening.
            let _ = started.send((server.local_addr().to_string(), replicas));
            if let Err(e) = server.run(async { drop(stop_rx.await) }).await {
                eprintln!("broker {id}: {e}");
            }
            let _ = done.send(());
        });
        let (addr, replicas) = ready.await?;
        Ok(Broker {
            runtime,
            replicas,
            addr,
            stop,
            stopped,
        })
    }

    /// A crash: the runtime stops at once, dropping every task.
    fn kill(self) {
        self.runtime.shutdown_background();
    }

    /// A clean shutdown.
    async fn stop(self) {
        // It ended on its own already if the send fails: either way it is done.
        let _ = self.stop.send(());
        let _ = self.stopped.await;
        self.runtime.shutdown_background();
    }
}

/// Waits until `condition` holds, looking every few milliseconds.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Writes record `order-<n>` with `acks=all`; returns where it went.
async fn produce(producer: &ClusterClient, tp: &TopicPartition, n: u64) -> Result<(u64, Vec<u8>)> {
    let value = format!("order-{n}");
    let produced = producer.produce(tp, &[Record::new(value.clone())]).await?;
    Ok((produced.base_offset, value.into_bytes()))
}

fn describe(controller: &ControllerView, tp: &TopicPartition) -> String {
    let state = controller.partition(tp).expect("the topic exists");
    let leader = state
        .leader
        .map_or("none".to_string(), |l| format!("broker {l}"));
    format!(
        "leader {leader}, epoch {}, ISR {:?}",
        state.leader_epoch, state.isr
    )
}

fn main() -> Result<()> {
    Runtime::new()?.block_on(demo())
}

async fn demo() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let controller_config = ControllerServiceConfig {
        controller: ControllerConfig {
            session_timeout_ms: 1_000,
            ..ControllerConfig::default()
        },
        tick_interval: Duration::from_millis(50),
    };
    let (server, controller) = controller_service::bind(
        "127.0.0.1:0".parse()?,
        ServerConfig::default(),
        controller_config,
    )
    .await?;
    let controller_addr = server.local_addr().to_string();
    let (stop_controller, controller_stop) = oneshot::channel::<()>();
    let controller_task = tokio::spawn(server.run(async { drop(controller_stop.await) }));

    let mut brokers = BTreeMap::new();
    for id in 1..=3 {
        let broker = Broker::start(
            id,
            &dir.path().join(format!("broker-{id}")),
            &controller_addr,
        )
        .await?;
        brokers.insert(id, broker);
    }
    wait_until("three live brokers", || {
        (1..=3).all(|id| controller.is_alive(id))
    })
    .await?;
    println!("A controller and three brokers are running on loopback.");

    let bootstrap: Vec<String> = brokers.values().map(|b| b.addr.clone()).collect();
    let config = ClusterConfig {
        // Longer than the brokers' own 30 s wait for an `acks=all` write.
        request_timeout: Duration::from_secs(35),
        retry_backoff: Duration::from_millis(50),
        delivery_timeout: Duration::from_secs(60),
    };
    let producer = ClusterClient::new(bootstrap.clone(), config.clone());
    let consumer = ClusterClient::new(bootstrap, config);
    let tp = TopicPartition::new("orders", 0);
    producer.create_topic(&tp.topic, 1, 3).await?;
    println!(
        "Created topic \"orders\" with 1 partition and 3 replicas: {}.",
        describe(&controller, &tp)
    );

    // The consumer reads all along, from the leader, whoever it is.
    let total = RECORDS_BEFORE + RECORDS_AFTER;
    let reader = tokio::spawn({
        let tp = tp.clone();
        async move {
            let mut read = Vec::new();
            while (read.len() as u64) < total {
                let fetched = consumer
                    .fetch(&tp, read.len() as u64, Duration::from_millis(100))
                    .await?;
                read.extend(
                    fetched
                        .records
                        .into_iter()
                        .map(|(offset, r)| (offset, r.value)),
                );
            }
            Ok::<_, ch04_network::ClientError>(read)
        }
    });

    let mut acknowledged = Vec::new();
    for n in 0..RECORDS_BEFORE {
        acknowledged.push(produce(&producer, &tp, n).await?);
    }
    let offsets = |acked: &[(u64, Vec<u8>)]| match (acked.first(), acked.last()) {
        (Some((first, _)), Some((last, _))) => format!("offsets {first} to {last}"),
        _ => "nothing".to_string(),
    };
    println!(
        "Produced {RECORDS_BEFORE} records with acks=all: {}.",
        offsets(&acknowledged)
    );

    let leader = controller
        .partition(&tp)
        .and_then(|s| s.leader)
        .expect("a leader");
    brokers.remove(&leader).expect("a broker").kill();
    println!("Killed broker {leader}, the leader, without a clean shutdown.");

    // The first record after the kill waits out the election: the producer
    // retries until the new leader takes it.
    for n in RECORDS_BEFORE..total {
        acknowledged.push(produce(&producer, &tp, n).await?);
    }
    println!(
        "The controller fenced broker {leader} and elected a follower: {}.",
        describe(&controller, &tp)
    );
    let after = &acknowledged[RECORDS_BEFORE as usize..];
    println!(
        "The producer carried on through the new leader: {}.",
        offsets(after)
    );

    let read = reader.await??;
    println!(
        "The consumer, reading all along, read {} records.",
        read.len()
    );
    for (id, broker) in &brokers {
        let replicas = broker.replicas.clone();
        wait_until("the high watermark", || {
            replicas
                .partition(&tp)
                .is_some_and(|p| p.high_watermark() == total)
        })
        .await?;
        println!("Broker {id}'s high watermark: {total}.");
    }

    let at: BTreeMap<u64, &Vec<u8>> = read.iter().map(|(o, v)| (*o, v)).collect();
    let lost = acknowledged
        .iter()
        .filter(|(o, v)| at.get(o) != Some(&v))
        .count();
    let duplicated = read.len() - at.len();
    println!(
        "Every acknowledged record was read exactly where it was acknowledged: \
         {} acknowledged, {lost} lost, {duplicated} duplicated.",
        acknowledged.len()
    );

    for broker in brokers.into_values() {
        broker.stop().await;
    }
    // The controller's server ends when told; its close cannot fail.
    let _ = stop_controller.send(());
    let _ = controller_task.await?;
    if lost > 0 {
        return Err("acknowledged records were lost".into());
    }
    Ok(())
}
