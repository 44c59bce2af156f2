//! A tour of the networked broker: start it on a free loopback port, create
//! a topic, let a consumer wait in a long poll while a producer sends keyed
//! records in batches, read them back, see errors come back as Kafka's
//! codes, and shut down gracefully.
//!
//! Run it with `cargo run -p ch04-network --example tour`.

use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::{TopicPartition, TopicStore};
use ch04_network::{
    Admin, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, Server, ServerConfig,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let (store, _) = TopicStore::open(tmp.path().join("data"))?;
    // Port 0: the operating system picks a free port.
    let server = Server::bind("127.0.0.1:0".parse()?, store, ServerConfig::default()).await?;
    let addr = server.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let broker = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    println!("== a broker on 127.0.0.1 (a free port) ==");

    let admin = Admin::connect(&addr, Duration::from_secs(5)).await?;
    admin.create_topic("orders", 3, vec![]).await?;
    println!("created orders: {:?}", admin.list_topics().await?);

    println!("\n== a consumer long-polls while a producer sends ==");
    let mut consumer = Consumer::connect(
        &addr,
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await?;
    consumer.assign((0..3).map(|p| TopicPartition::new("orders", p)));
    let poller = tokio::spawn(async move {
        // Waits in the broker until the first batch arrives.
        let mut records = Vec::new();
        while records.len() < 9 {
            records.extend(consumer.poll(Duration::from_secs(5)).await?);
        }
        Ok::<_, ch04_network::ClientError>(records)
    });

    let producer = Producer::connect(&addr, ProducerConfig::default()).await?;
    let mut deliveries = Vec::new();
    for i in 0..9 {
        let key = format!("customer-{}", i % 3 + 1);
        let record = Record::new(format!("order {i}"))
            .with_timestamp(1_700_000_000_000 + i)
            .with_key(key.clone());
        deliveries.push((key, producer.send("orders", record).await?));
    }
    for (key, delivery) in deliveries {
        let metadata = delivery.await?;
        println!(
            "acked {key}: partition {}, offset {}",
            metadata.partition,
            metadata.offset.unwrap_or_default()
        );
    }

    let mut records = poller.await??;
    records.sort_by_key(|r| (r.partition, r.offset));
    println!("\nthe consumer read {} records:", records.len());
    for r in &records {
        println!(
            "  orders-{} offset {}: {}",
            r.partition,
            r.offset,
            String::from_utf8_lossy(&r.record.value)
        );
    }

    println!("\n== errors come back as Kafka's codes ==");
    let missing = producer.send("missing", Record::new("x")).await;
    println!("produce to a missing topic: {}", missing.err().unwrap());
    let exists = admin.create_topic("orders", 1, vec![]).await;
    println!("create orders again: {}", exists.unwrap_err());

    println!("\n== describe, then shut down gracefully ==");
    for p in admin.describe_topic("orders").await?.partitions {
        println!(
            "partition {}: leader {}, offsets {}..{}",
            p.partition, p.leader, p.log_start_offset, p.log_end_offset
        );
    }
    producer.close().await?;
    let _ = stop.send(());
    broker.await??;
    let (_, report) = TopicStore::open(tmp.path().join("data"))?;
    println!(
        "reopened the data directory: {} topic(s), {} partition(s) needed recovery",
        report.topics,
        report.recovered.len()
    );
    Ok(())
}
