//! A tour of consumer groups: two consumers share a topic's partitions, a
//! third sees the lag, one leaves and the other takes over, and the
//! committed offsets outlive a broker restart.
//!
//! Run it with `cargo run -p ch05-consumer-groups --example tour`.

use ch03_partitions::TopicPartition;
use std::path::Path;
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::TopicStore;
use ch04_network::{Admin, OffsetReset, Producer, ProducerConfig, ServerConfig};
use ch05_consumer_groups::admin::GroupAdmin;
use ch05_consumer_groups::consumer::{GroupConsumer, GroupConsumerConfig};
use ch05_consumer_groups::service::{self, GroupConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A broker over `dir` on a free loopback port: its address, and a handle
/// that stops it.
async fn start(dir: &Path) -> Result<(String, oneshot::Sender<()>, JoinHandle<()>), Error> {
    let (store, _) = TopicStore::open(dir)?;
    let server = service::bind(
        "127.0.0.1:0".parse()?,
        store,
        ServerConfig::default(),
        GroupConfig::default(),
    )
    .await?;
    let addr = server.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = server
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((addr, stop, task))
}

async fn consumer(addr: &str, name: &str) -> Result<GroupConsumer, Error> {
    let mut config = GroupConsumerConfig::new("shipping");
    config.client_id = name.into();
    config.heartbeat_interval = Duration::from_millis(100);
    config.enable_auto_commit = false;
    config.consumer.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = GroupConsumer::connect(addr, config).await?;
    consumer.subscribe(["orders"]);
    Ok(consumer)
}

fn names(partitions: &[TopicPartition]) -> String {
    let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
    names.join(", ")
}

/// Polls in a task of its own until it has `n` partitions; hands the
/// consumer back. (The records those polls return are dropped, and not
/// committed: auto-commit is off.)
fn until_assigned(
    mut consumer: GroupConsumer,
    n: usize,
) -> JoinHandle<Result<GroupConsumer, ch04_network::ClientError>> {
    tokio::spawn(async move {
        while consumer.assignment().len() != n {
            consumer.poll(Duration::from_millis(50)).await?;
        }
        Ok(consumer)
    })
}

/// Keyed orders: a customer's orders all go to one partition.
async fn produce(addr: &str, orders: std::ops::Range<u32>) -> Result<(), Error> {
    let producer = Producer::connect(addr, ProducerConfig::default()).await?;
    for i in orders {
        let record = Record::new(format!("order {i}")).with_key(format!("customer-{}", i % 5));
        producer.send("orders", record).await?;
    }
    producer.close().await?;
    Ok(())
}

async fn show_lag(addr: &str) -> Result<(), Error> {
    let groups = GroupAdmin::connect(addr, Duration::from_secs(5)).await?;
    let info = groups.describe_group("shipping").await?;
    let committed = groups.committed_offsets("shipping").await?;
    let ends = Admin::connect(addr, Duration::from_secs(5))
        .await?
        .describe_topic("orders")
        .await?;
    let assignor = if info.protocol.is_empty() {
        "none"
    } else {
        &info.protocol
    };
    println!(
        "group shipping: {} (assignor {assignor}), {} member(s)",
        info.state,
        info.members.len()
    );
    for p in ends.partitions {
        let tp = TopicPartition::new("orders", p.partition);
        let current = committed.get(&tp).copied().unwrap_or(0);
        let owner = info
            .members
            .iter()
            .find(|m| m.partitions.contains(&tp))
            .map_or("-", |m| m.client_id.as_str());
        println!(
            "  orders-{}: committed {current}, log end {}, lag {}, read by {owner}",
            p.partition,
            p.log_end_offset,
            p.log_end_offset - current
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let tmp = tempfile::tempdir()?;
    let (addr, stop, broker) = start(tmp.path()).await?;
    Admin::connect(&addr, Duration::from_secs(5))
        .await?
        .create_topic("orders", 4, vec![])
        .await?;

    println!("== two consumers in group \"shipping\" share orders' 4 partitions ==");
    let alice = until_assigned(consumer(&addr, "alice").await?, 4).await??;
    println!("alice joins alone: {}", names(&alice.assignment()));
    // Both must poll for the group to rebalance: each in its own task.
    let (alice, bob) = (
        until_assigned(alice, 2),
        until_assigned(consumer(&addr, "bob").await?, 2),
    );
    let (mut alice, mut bob) = (alice.await??, bob.await??);
    println!(
        "bob joins: alice {}; bob {}",
        names(&alice.assignment()),
        names(&bob.assignment())
    );

    produce(&addr, 0..12).await?;
    let (mut a, mut b) = (0, 0);
    while a + b < 12 {
        let (more_a, more_b) = tokio::join!(
            alice.poll(Duration::from_millis(100)),
            bob.poll(Duration::from_millis(100))
        );
        a += more_a?.len();
        b += more_b?.len();
    }
    println!("12 records produced: alice read {a}, bob read {b}, and both commit");
    alice.commit_sync().await?;
    bob.commit_sync().await?;
    produce(&addr, 12..16).await?;
    println!("4 more produced, not read yet:");
    show_lag(&addr).await?;

    println!("\n== bob leaves: alice takes over his partitions at once ==");
    bob.close().await?;
    let alice = until_assigned(alice, 4).await??;
    println!("alice: {}", names(&alice.assignment()));
    alice.close().await?;

    println!("\n== the broker restarts: the commits are in __consumer_offsets ==");
    let _ = stop.send(());
    broker.await?;
    let (addr, stop, broker) = start(tmp.path()).await?;
    show_lag(&addr).await?;
    let mut carol = consumer(&addr, "carol").await?;
    let mut read = Vec::new();
    while read.len() < 4 {
        for r in carol.poll(Duration::from_millis(100)).await? {
            read.push(format!("orders-{}@{}", r.partition, r.offset));
        }
    }
    read.sort();
    println!(
        "carol joins and reads from the commits on: {}",
        read.join(", ")
    );
    carol.close().await?;
    let _ = stop.send(());
    broker.await?;
    Ok(())
}
