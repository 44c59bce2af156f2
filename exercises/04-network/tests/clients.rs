//! The broker through its clients: topics, producing, consuming, long
//! polling, pipelining, seeking, and a graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ch02_segments::{Clock, Record, SystemClock};
use ch03_partitions::{TopicPartition, TopicStore, partition_for_key};
use ch04_network::protocol::{
    ApiKey, FetchPartition, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
};
use ch04_network::{
    Admin, BrokerConfig, Client, Consumer, ConsumerConfig, ErrorCode, OffsetReset, Producer,
    ProducerConfig, SeekTo,
};
use common::TestBroker;

const TIMEOUT: Duration = Duration::from_secs(10);

fn earliest() -> ConsumerConfig {
    ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    }
}

#[tokio::test]
async fn topics_are_created_listed_described_and_deleted() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin
        .create_topic("orders", 3, vec![("retention.ms".into(), "60000".into())])
        .await
        .unwrap();
    let warning = admin.create_topic("clicks.v2", 1, vec![]).await.unwrap();
    assert!(warning.contains("collide"), "{warning}");
    assert_eq!(admin.list_topics().await.unwrap(), ["clicks.v2", "orders"]);
    let info = admin.describe_topic("orders").await.unwrap();
    assert_eq!(info.partitions.len(), 3);
    assert!(
        info.configs
            .contains(&("retention.ms".into(), "60000".into()))
    );

    let exists = admin.create_topic("orders", 1, vec![]).await.unwrap_err();
    assert_eq!(exists.code(), Some(ErrorCode::TopicAlreadyExists));
    let bad = admin
        .create_topic("no spaces", 1, vec![])
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::InvalidTopicException));
    let config = admin
        .create_topic("x", 1, vec![("retention.ms".into(), "soon".into())])
        .await
        .unwrap_err();
    assert_eq!(config.code(), Some(ErrorCode::InvalidConfig));

    admin.delete_topic("clicks.v2").await.unwrap();
    assert_eq!(admin.list_topics().await.unwrap(), ["orders"]);
    let gone = admin.delete_topic("clicks.v2").await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::UnknownTopicOrPartition));
}

#[tokio::test]
async fn what_is_produced_is_consumed_in_order_per_partition() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 4, vec![]).await.unwrap();

    let producer = Producer::connect(&broker.addr, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..1_000u32 {
        let key = format!("k{}", i % 10);
        let record = Record::new(i.to_string())
            .with_timestamp(i64::from(i))
            .with_key(key);
        deliveries.push(producer.send("t", record).await.unwrap());
    }
    let mut acked = Vec::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let metadata = delivery.await.unwrap();
        let key = format!("k{}", i % 10);
        assert_eq!(metadata.partition, partition_for_key(key.as_bytes(), 4));
        acked.push(metadata);
    }
    producer.close().await.unwrap();

    let mut consumer = Consumer::connect(&broker.addr, earliest()).await.unwrap();
    consumer.assign((0..4).map(|p| TopicPartition::new("t", p)));
    let mut seen = Vec::new();
    while seen.len() < 1_000 {
        let records = consumer.poll(TIMEOUT).await.unwrap();
        assert!(!records.is_empty(), "stalled after {} records", seen.len());
        seen.extend(records);
    }
    // Each record is where its acknowledgement said, and each key's values
    // are in the order they were sent.
    for r in &seen {
        let i: usize = String::from_utf8_lossy(&r.record.value).parse().unwrap();
        assert_eq!(
            (acked[i].partition, acked[i].offset),
            (r.partition, Some(r.offset))
        );
    }
    for k in 0..10 {
        let key = format!("k{k}");
        let values: Vec<u32> = seen
            .iter()
            .filter(|r| r.record.key.as_deref() == Some(key.as_bytes()))
            .map(|r| String::from_utf8_lossy(&r.record.value).parse().unwrap())
            .collect();
        assert!(values.is_sorted(), "{key}");
        assert_eq!(values.len(), 100);
    }
}

#[tokio::test]
async fn a_fetch_waits_for_data_then_returns_as_soon_as_it_comes() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let mut consumer = Consumer::connect(
        &broker.addr,
        ConsumerConfig {
            fetch_max_wait: Duration::from_secs(20),
            ..earliest()
        },
    )
    .await
    .unwrap();
    consumer.assign([TopicPartition::new("t", 0)]);

    let addr = broker.addr.clone();
    let produce = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let producer = Producer::connect(&addr, ProducerConfig::default())
            .await
            .unwrap();
        producer
            .send("t", Record::new("hello"))
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let start = Instant::now();
    let records = consumer.poll(Duration::from_secs(20)).await.unwrap();
    let waited = start.elapsed();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record.value, b"hello");
    // It waited for the record (long polling), and not for the full 20 s.
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    produce.await.unwrap();

    // With nothing to read, poll returns empty after its timeout.
    let start = Instant::now();
    assert!(
        consumer
            .poll(Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(start.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn many_tasks_share_one_pipelined_connection() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let client = Arc::new(Client::connect(&broker.addr, TIMEOUT).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let topics = Some(vec![if i % 2 == 0 { "t" } else { "missing" }.to_string()]);
            let response: MetadataResponse = client
                .call(ApiKey::Metadata, &MetadataRequest { topics })
                .await
                .unwrap();
            (i, response)
        }));
    }
    for task in tasks {
        let (i, response) = task.await.unwrap();
        // Each call got the answer to its own request.
        let expected = if i % 2 == 0 {
            ErrorCode::None
        } else {
            ErrorCode::UnknownTopicOrPartition
        };
        assert_eq!(response.topics[0].error, expected, "call {i}");
    }
}

#[tokio::test]
async fn seek_to_beginning_end_offset_and_timestamp() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let producer = Producer::connect(&broker.addr, ProducerConfig::default())
        .await
        .unwrap();
    for i in 0..10 {
        producer
            .send(
                "t",
                Record::new(format!("{i}")).with_timestamp(1_000 + i * 10),
            )
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();

    let mut consumer = Consumer::connect(&broker.addr, ConsumerConfig::default())
        .await
        .unwrap();
    let t0 = TopicPartition::new("t", 0);
    consumer.assign([t0.clone()]);
    consumer.seek(&t0, SeekTo::Timestamp(1_035)).await.unwrap();
    assert_eq!(consumer.position(&t0), Some(4));
    let first = consumer.poll(TIMEOUT).await.unwrap();
    assert_eq!(first[0].offset, 4);
    consumer.seek(&t0, SeekTo::Offset(8)).await.unwrap();
    assert_eq!(consumer.poll(TIMEOUT).await.unwrap()[0].offset, 8);
    consumer.seek(&t0, SeekTo::Beginning).await.unwrap();
    assert_eq!(consumer.poll(TIMEOUT).await.unwrap()[0].offset, 0);
    consumer.seek(&t0, SeekTo::End).await.unwrap();
    assert_eq!(consumer.position(&t0), Some(10));
    consumer.seek(&t0, SeekTo::Timestamp(5_000)).await.unwrap();
    assert_eq!(
        consumer.position(&t0),
        Some(10),
        "past the last record: the end"
    );
}

#[tokio::test]
async fn auto_offset_reset_decides_where_a_new_consumer_starts() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let producer = Producer::connect(&broker.addr, ProducerConfig::default())
        .await
        .unwrap();
    producer
        .send("t", Record::new("old"))
        .await
        .unwrap()
        .await
        .unwrap();

    let mut latest = Consumer::connect(&broker.addr, ConsumerConfig::default())
        .await
        .unwrap();
    latest.assign([TopicPartition::new("t", 0)]);
    assert!(
        latest
            .poll(Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    let mut earliest = Consumer::connect(&broker.addr, earliest()).await.unwrap();
    let t0 = TopicPartition::new("t", 0);
    earliest.assign([t0.clone()]);
    assert_eq!(
        earliest.poll(TIMEOUT).await.unwrap()[0].record.value,
        b"old"
    );

    // Out of range: reset (here to the earliest, so "old" comes again), or
    // an error with `none`.
    earliest.seek(&t0, SeekTo::Offset(99)).await.unwrap();
    let again = earliest.poll(TIMEOUT).await.unwrap();
    assert_eq!(
        (again[0].offset, &again[0].record.value[..]),
        (0, &b"old"[..])
    );
    let mut strict = Consumer::connect(
        &broker.addr,
        ConsumerConfig {
            auto_offset_reset: OffsetReset::None,
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    strict.assign([TopicPartition::new("t", 0)]);
    let error = strict.poll(Duration::from_millis(100)).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::OffsetOutOfRange));
}

#[tokio::test]
async fn producing_to_a_missing_topic_is_an_error() {
    let broker = TestBroker::start().await;
    let config = ProducerConfig {
        max_block: Duration::from_millis(300),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&broker.addr, config).await.unwrap();
    // `send` needs the topic's partition count: it waits `max.block.ms`
    // for the topic to appear, then fails.
    let error = producer
        .send("missing", Record::new("x"))
        .await
        .err()
        .unwrap();
    assert_eq!(error.code(), Some(ErrorCode::UnknownTopicOrPartition));
}

#[tokio::test]
async fn callbacks_get_each_records_offset_or_its_error() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let small = vec![("max.message.bytes".into(), "200".into())];
    admin.create_topic("small", 1, small).await.unwrap();
    let producer = Producer::connect(&broker.addr, ProducerConfig::default())
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..10 {
        let tx = tx.clone();
        producer
            .send_with_callback("t", Record::new("v").with_timestamp(i), move |result| {
                let _ = tx.send((i, result));
            })
            .await
            .unwrap();
    }
    let tx2 = tx.clone();
    producer
        .send_with_callback("small", Record::new(vec![0; 1000]), move |result| {
            let _ = tx2.send((-1, result));
        })
        .await
        .unwrap();
    drop(tx);
    producer.flush().await.unwrap();
    let mut offsets = Vec::new();
    while let Some((i, result)) = rx.recv().await {
        match i {
            -1 => {
                let error = result.unwrap_err();
                assert_eq!(error.code(), Some(ErrorCode::MessageTooLarge), "{error}");
            }
            i => offsets.push((i, result.unwrap().offset)),
        }
    }
    // Every callback ran once, with the offset its record got.
    let expected: Vec<(i64, Option<u64>)> = (0..10).map(|i| (i, Some(i as u64))).collect();
    assert_eq!(offsets, expected);
}

#[tokio::test]
async fn acks_zero_gets_no_offsets_but_stores_the_records() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let config = ProducerConfig {
        acks: 0,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&broker.addr, config).await.unwrap();
    let delivery = producer
        .send("t", Record::new("fire and forget"))
        .await
        .unwrap();
    assert_eq!(delivery.await.unwrap().offset, None);
    let mut consumer = Consumer::connect(&broker.addr, earliest()).await.unwrap();
    consumer.assign([TopicPartition::new("t", 0)]);
    assert_eq!(consumer.poll(TIMEOUT).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_graceful_shutdown_closes_the_store_cleanly() {
    let mut broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 2, vec![]).await.unwrap();
    let producer = Producer::connect(&broker.addr, ProducerConfig::default())
        .await
        .unwrap();
    for i in 0..100 {
        producer
            .send("t", Record::new("v").with_timestamp(i))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    broker.stop().await;
    let (store, report) = TopicStore::open(broker.dir.path()).unwrap();
    assert!(report.recovered.is_empty(), "{report:?}");
    let d = store.describe("t").unwrap();
    assert_eq!(
        d.partitions.iter().map(|p| p.log_end_offset).sum::<u64>(),
        100
    );
}

#[tokio::test]
async fn a_long_polled_fetch_is_answered_when_a_shutdown_begins() {
    let mut broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let client = Client::connect(&broker.addr, TIMEOUT).await.unwrap();
    // Nothing will arrive: the fetch would wait two minutes, longer than
    // the server's 30 s drain timeout.
    let fetch = FetchRequest {
        max_wait_ms: 120_000,
        min_bytes: 1,
        max_bytes: 1024,
        partitions: vec![FetchPartition {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            max_bytes: 1024,
        }],
    };
    let waiting = tokio::spawn(async move {
        let response: FetchResponse = client.call(ApiKey::Fetch, &fetch).await.unwrap();
        response
    });
    // Let the broker read the fetch and start waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the fetch did not wait");

    let start = Instant::now();
    broker.stop().await;
    // Answered (empty, not failed) and drained in well under the drain
    // timeout, let alone the fetch's own two minutes.
    assert!(
        start.elapsed() < TIMEOUT,
        "shutdown took {:?}",
        start.elapsed()
    );
    let response = waiting.await.unwrap();
    assert_eq!(response.partitions[0].error, ErrorCode::None);
    assert!(response.partitions[0].batches.is_empty());
}

#[tokio::test]
async fn the_broker_deletes_segments_past_retention_on_its_own() {
    let broker = TestBroker::start_with_broker(BrokerConfig {
        retention_check_interval: Duration::from_millis(20),
    })
    .await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    // Tiny segments, each record in its own, kept for 1 ms.
    let configs = vec![
        ("segment.bytes".into(), "1".into()),
        ("retention.ms".into(), "1".into()),
    ];
    admin.create_topic("old", 1, configs).await.unwrap();
    let producer = Producer::connect(&broker.addr, ProducerConfig::default())
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..5 {
        // One batch (so one segment) per record.
        let delivery = producer
            .send(
                "old",
                Record::new(format!("{i}")).with_timestamp(now - 60_000),
            )
            .await
            .unwrap();
        delivery.await.unwrap();
    }
    // Nobody asks for it: the broker's own timer deletes all but the
    // active segment.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let info = admin.describe_topic("old").await.unwrap();
        if info.partitions[0].log_start_offset == 4 {
            assert_eq!(info.partitions[0].log_end_offset, 5);
            break;
        }
        assert!(Instant::now() < deadline, "retention never ran: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn clients_may_read_but_not_write_or_delete_a_protected_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = TopicStore::open(dir.path()).unwrap();
    store
        .create_topic("internal", 1, ch03_partitions::TopicConfig::default())
        .unwrap();
    let server = ch04_network::Server::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        ch04_network::ServerConfig::default(),
        |local| {
            let mut broker = ch04_network::Broker::new(
                store,
                local.ip().to_string(),
                local.port(),
                BrokerConfig::default(),
            );
            broker.protect("internal");
            broker
        },
    )
    .await
    .unwrap();
    let addr = server.local_addr().to_string();
    tokio::spawn(server.run(std::future::pending()));

    let producer = Producer::connect(&addr, ProducerConfig::default())
        .await
        .unwrap();
    let refused = producer
        .send("internal", Record::new("forged"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidTopicException));
    let admin = Admin::connect(&addr, TIMEOUT).await.unwrap();
    let refused = admin.delete_topic("internal").await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidTopicException));
    // Still there, empty, and readable.
    let info = admin.describe_topic("internal").await.unwrap();
    assert_eq!(info.partitions[0].log_end_offset, 0);
}

#[tokio::test]
async fn a_record_without_a_timestamp_gets_the_send_time_or_the_brokers_append_time() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("created", 1, vec![]).await.unwrap();
    let log_append_time = vec![("message.timestamp.type".into(), "LogAppendTime".into())];
    admin
        .create_topic("appended", 1, log_append_time)
        .await
        .unwrap();
    let producer = Producer::connect(&broker.addr, ProducerConfig::default())
        .await
        .unwrap();
    let before = SystemClock.now_ms();
    for topic in ["created", "appended"] {
        producer.send(topic, Record::new("now")).await.unwrap();
        let stamped = Record::new("long ago").with_timestamp(1_000);
        producer.send(topic, stamped).await.unwrap();
    }
    producer.flush().await.unwrap();
    let after = SystemClock.now_ms();

    let mut consumer = Consumer::connect(&broker.addr, earliest()).await.unwrap();
    consumer.assign([
        TopicPartition::new("created", 0),
        TopicPartition::new("appended", 0),
    ]);
    let mut stamps = std::collections::BTreeMap::new();
    while stamps.len() < 4 {
        for r in consumer.poll(TIMEOUT).await.unwrap() {
            stamps.insert((r.topic, r.offset), r.record.timestamp);
        }
    }
    let now = |t: i64| (before..=after).contains(&t);
    // CreateTime: the producer's stamp, or the one the record came with.
    assert!(now(stamps[&("created".to_string(), 0)]), "{stamps:?}");
    assert_eq!(stamps[&("created".to_string(), 1)], 1_000);
    // LogAppendTime: the broker's clock, whatever the record said.
    assert!(now(stamps[&("appended".to_string(), 0)]), "{stamps:?}");
    assert!(now(stamps[&("appended".to_string(), 1)]), "{stamps:?}");
}

/// With several requests in flight and the producer's tasks on several
/// threads, a partition's batches are still stored in the order they were
/// sent: the sender writes each request to the connection before it hands
/// the wait for its answer to a task of its own. (An earlier version let
/// each task write its own request, and on a busy machine a later one
/// sometimes reached the socket first: `kfs produce` stored records 589 to
/// 753 before record 0.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_in_flight_store_a_partitions_batches_in_the_order_they_were_sent() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let config = ProducerConfig {
        batch_size: 512,
        max_in_flight: 5,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&broker.addr, config).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..20_000u32 {
        deliveries.push(
            producer
                .send("t", Record::new(i.to_string()))
                .await
                .unwrap(),
        );
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        // One partition and no retries: record i is at offset i.
        assert_eq!(delivery.await.unwrap().offset, Some(i as u64), "record {i}");
    }
    producer.close().await.unwrap();
}

// On one thread, so that a `poll` that never waited would starve the
// other task until it returned.
#[tokio::test(flavor = "current_thread")]
async fn a_poll_with_nothing_to_fetch_waits_and_lets_other_tasks_run() {
    let broker = TestBroker::start().await;
    let mut consumer = Consumer::connect(&broker.addr, ConsumerConfig::default())
        .await
        .unwrap();
    // Nothing assigned (a group member between two rebalances).
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = ran.clone();
    tokio::spawn(async move { other.store(true, std::sync::atomic::Ordering::SeqCst) });
    let records = consumer.poll(Duration::from_millis(300)).await.unwrap();
    assert!(records.is_empty());
    assert!(
        ran.load(std::sync::atomic::Ordering::SeqCst),
        "poll spun without letting another task run"
    );
}
