//! A three-broker cluster in one process: replication, the high
//! watermark as the consumers' limit, `acks=all` waiting for the
//! followers, `min.insync.replicas`, a follower rejoining the ISR, and
//! chapter 4's clients following a leader that moves (on a topic made
//! replicated by `default.replication.factor`).

mod common;

use std::time::Duration;

use ch02_segments::{Record, batch};
use ch03_partitions::TopicPartition;
use ch04_network::protocol::{
    ApiKey, FetchPartition, FetchRequest, FetchResponse, LATEST, ListOffsetsRequest,
    ListOffsetsResponse, ProducePartition, ProducePartitionResponse, ProduceRequest,
    ProduceResponse, ProduceTopic,
};
use ch04_network::{
    Admin, Client, Consumer, ConsumerConfig, ErrorCode, OffsetReset, Producer, ProducerConfig,
};
use ch06_replication::client::ClusterClient;
use ch06_replication::protocol::BrokerId;
use common::cluster::Cluster;
use common::{value, wait_until};

const WAIT: Duration = Duration::from_secs(10);

fn tp() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

/// Creates the topic with three replicas and returns its leader.
async fn create_topic(cluster: &Cluster, client: &ClusterClient) -> BrokerId {
    cluster.wait_until_all_alive().await;
    client.create_topic("orders", 1, 3).await.unwrap();
    let leader = cluster.controller.partition(&tp()).unwrap().leader.unwrap();
    // Every replica has heard what it is.
    wait_until("every replica's state", WAIT, async || {
        cluster.brokers.values().all(|b| {
            b.replicas
                .partition(&tp())
                .is_some_and(|p| p.state().leader == Some(leader))
        })
    })
    .await;
    leader
}

/// A produce of one record with `acks`.
fn produce_request(value: &str, acks: i8) -> ProduceRequest {
    ProduceRequest {
        acks,
        topics: vec![ProduceTopic {
            name: tp().topic,
            partitions: vec![ProducePartition {
                partition: 0,
                batch: batch::encode(&[Record::new(value)]).unwrap(),
            }],
        }],
    }
}

/// Three brokers whose sessions and lag are long enough that nobody leaves
/// the ISR during a test: followers stopped are gone, but still counted in
/// sync, so an `acks=all` produce waits for them.
async fn patient_cluster() -> Cluster {
    Cluster::start_with_session_timeout(3, 60_000, |config| {
        config.manager.replica.replica_lag_time_max_ms = 60_000;
        config.manager.request_timeout_ms = 30_000;
    })
    .await
}

/// One record to `addr` with `acks`, answered by that broker.
async fn produce_to(addr: &str, value: &str, acks: i8) -> ProducePartitionResponse {
    let client = Client::connect(addr, Duration::from_secs(5)).await.unwrap();
    let request = produce_request(value, acks);
    let response: ProduceResponse = client.call(ApiKey::Produce, &request).await.unwrap();
    response.topics[0].1[0].clone()
}

/// Everything a consumer can read now, and the high watermark.
async fn read(client: &ClusterClient) -> (Vec<String>, u64) {
    let fetched = client
        .fetch(&tp(), 0, Duration::from_millis(10))
        .await
        .unwrap();
    (
        fetched.records.iter().map(|(_, r)| value(r)).collect(),
        fetched.high_watermark,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_replicated_and_every_replica_agrees_on_the_high_watermark() {
    let cluster = Cluster::start(3, |_| {}).await;
    let client = cluster.client();
    create_topic(&cluster, &client).await;
    for i in 0..20 {
        let produced = client
            .produce(&tp(), &[Record::new(format!("r{i}"))])
            .await
            .unwrap();
        assert_eq!(produced.base_offset, i);
    }
    // The followers learn the high watermark from the leader's answers.
    wait_until("every replica's high watermark at 20", WAIT, async || {
        cluster
            .brokers
            .values()
            .all(|b| b.replicas.partition(&tp()).unwrap().high_watermark() == 20)
    })
    .await;
    let (values, high_watermark) = read(&client).await;
    assert_eq!(high_watermark, 20);
    assert_eq!(values, (0..20).map(|i| format!("r{i}")).collect::<Vec<_>>());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_see_only_committed_records_and_acks_all_waits_for_the_followers() {
    let mut cluster = patient_cluster().await;
    let client = cluster.client();
    let leader = create_topic(&cluster, &client).await;
    assert_eq!(
        client
            .produce(&tp(), &[Record::new("committed")])
            .await
            .unwrap()
            .base_offset,
        0
    );
    let followers: Vec<BrokerId> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        cluster.stop(*id).await;
    }
    let leader_addr = cluster.brokers[&leader].addr.clone();

    // acks=1: the leader appends and answers, but the record is not
    // committed: no follower has it.
    let appended = produce_to(&leader_addr, "uncommitted", 1).await;
    assert_eq!((appended.error, appended.base_offset), (ErrorCode::None, 1));
    let (values, high_watermark) = read(&client).await;
    assert_eq!((values, high_watermark), (vec!["committed".to_string()], 1));
    let latest: ListOffsetsResponse = Client::connect(&leader_addr, Duration::from_secs(5))
        .await
        .unwrap()
        .call(
            ApiKey::ListOffsets,
            &ListOffsetsRequest {
                partitions: vec![(tp().topic, 0, LATEST)],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        latest.partitions[0].3,
        Some(1),
        "latest is the high watermark, not the log end"
    );

    // acks=all: held in the leader's purgatory while the followers are away.
    let held = tokio::spawn(async move { produce_to(&leader_addr, "waited", -1).await });
    let replicas = cluster.brokers[&leader].replicas.clone();
    wait_until("the produce to wait in the purgatory", WAIT, async || {
        replicas.waiting() == 1
    })
    .await;
    assert!(!held.is_finished());

    // The followers come back. Each is a new incarnation, which may have
    // lost unsynced records, so the controller takes it out of the ISR at
    // once; with the leader alone in the ISR the write commits. Then they
    // catch up and rejoin.
    for id in &followers {
        cluster.restart(*id).await;
    }
    let answer = held.await.unwrap();
    assert_eq!((answer.error, answer.base_offset), (ErrorCode::None, 2));
    let (values, high_watermark) = read(&client).await;
    assert_eq!(high_watermark, 3);
    assert_eq!(values, ["committed", "uncommitted", "waited"]);
    wait_until("the followers back in the ISR", WAIT, async || {
        cluster.controller.partition(&tp()).unwrap().isr.len() == 3
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_goes_on_while_its_acks_all_produce_waits() {
    let mut cluster = patient_cluster().await;
    let client = cluster.client();
    let leader = create_topic(&cluster, &client).await;
    let followers: Vec<BrokerId> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        cluster.stop(*id).await;
    }
    // Two acks=all produces, one after the other on one connection.
    let connection = Client::connect(&cluster.brokers[&leader].addr, Duration::from_secs(5))
        .await
        .unwrap();
    let mut answers = Vec::new();
    for value in ["first", "second"] {
        let request = produce_request(value, -1);
        let written = connection
            .write_request(ApiKey::Produce, &request, &[])
            .await;
        answers.push(written.unwrap());
    }
    // Both wait in the purgatory: the second was appended while the first
    // waited for the followers. (Kafka's broker would not read it before
    // the first was answered.)
    let replicas = cluster.brokers[&leader].replicas.clone();
    wait_until("both produces to wait in the purgatory", WAIT, async || {
        replicas.waiting() == 2
    })
    .await;
    for id in &followers {
        cluster.restart(*id).await;
    }
    // Answered in the order they were sent, each with its own offset.
    for (answer, offset) in answers.into_iter().zip(0..) {
        let response: ProduceResponse = answer.response().await.unwrap();
        let partition = &response.topics[0].1[0];
        assert_eq!(
            (partition.error, partition.base_offset),
            (ErrorCode::None, offset)
        );
    }
    let (values, _) = read(&client).await;
    assert_eq!(values, ["first", "second"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_insync_replicas_refuses_writes_until_a_follower_rejoins_the_isr() {
    let mut cluster =
        Cluster::start(3, |config| config.manager.replica.min_insync_replicas = 2).await;
    let client = cluster.client();
    let leader = create_topic(&cluster, &client).await;
    client
        .produce(&tp(), &[Record::new("before")])
        .await
        .unwrap();
    let followers: Vec<BrokerId> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        cluster.stop(*id).await;
    }
    // Their sessions expire, the controller takes them out of the ISR, and
    // the leader hears of it.
    let replicas = cluster.brokers[&leader].replicas.clone();
    wait_until("the ISR to shrink to the leader", WAIT, async || {
        replicas.partition(&tp()).unwrap().state().isr == [leader]
    })
    .await;
    let leader_addr = cluster.brokers[&leader].addr.clone();
    let refused = produce_to(&leader_addr, "refused", -1).await;
    assert_eq!(refused.error, ErrorCode::NotEnoughReplicas);
    // acks=1 does not ask for replicas.
    assert_eq!(
        produce_to(&leader_addr, "acks=1", 1).await.error,
        ErrorCode::None
    );

    // One follower comes back: it catches up (truncating nothing), the
    // leader asks for it to rejoin, and acks=all works again.
    cluster.restart(followers[0]).await;
    wait_until("the follower back in the ISR", WAIT, async || {
        replicas.partition(&tp()).unwrap().state().isr.len() == 2
    })
    .await;
    let produced = client
        .produce(&tp(), &[Record::new("after")])
        .await
        .unwrap();
    assert_eq!(produced.base_offset, 2);
    let (values, _) = read(&client).await;
    assert_eq!(values, ["before", "acks=1", "after"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_the_leader_when_it_moves() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    let client = cluster.client();
    let first = create_topic(&cluster, &client).await;
    for i in 0..5 {
        client
            .produce(&tp(), &[Record::new(format!("r{i}"))])
            .await
            .unwrap();
    }
    cluster.stop(first).await;
    // The next write waits out the election (the session timeout), then
    // goes to the new leader.
    let produced = client.produce(&tp(), &[Record::new("r5")]).await.unwrap();
    assert_eq!(produced.base_offset, 5);
    assert!(produced.attempts > 1);
    let state = cluster.controller.partition(&tp()).unwrap();
    assert_ne!(state.leader, Some(first));
    assert_eq!(state.leader_epoch, 1);
    let (values, _) = read(&client).await;
    assert_eq!(values, ["r0", "r1", "r2", "r3", "r4", "r5"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chapter_4s_producer_and_consumer_follow_a_default_replicated_topics_leader() {
    let mut cluster = Cluster::start(3, |config| config.default_replication_factor = Some(3)).await;
    cluster.wait_until_all_alive().await;
    // Chapter 4's CreateTopics, with no factor: replicated three times.
    let bootstrap = cluster.addresses();
    let admin = Admin::connect(&bootstrap[0], WAIT).await.unwrap();
    admin.create_topic("orders", 1, vec![]).await.unwrap();
    let state = cluster.controller.partition(&tp()).unwrap();
    assert_eq!(state.replicas.len(), 3);
    let first = state.leader.unwrap();

    let bootstrap = bootstrap.join(",");
    let config = ProducerConfig {
        acks: -1,
        retry_backoff: Duration::from_millis(50),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&bootstrap, config).await.unwrap();
    let send = async |from: u32, to: u32| {
        let mut deliveries = Vec::new();
        for i in from..to {
            let record = Record::new(format!("r{i}"));
            deliveries.push(producer.send("orders", record).await.unwrap());
        }
        for delivery in deliveries {
            delivery.await.unwrap();
        }
    };
    send(0, 50).await;
    // The leader goes; the next records wait out the election and go to
    // the new leader, found in fresh metadata.
    cluster.stop(first).await;
    send(50, 100).await;
    let state = cluster.controller.partition(&tp()).unwrap();
    assert_ne!(state.leader, Some(first));

    let mut consumer = Consumer::connect(
        &bootstrap,
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    consumer.assign([tp()]);
    let mut values = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while values.len() < 100 && tokio::time::Instant::now() < deadline {
        let records = consumer.poll(Duration::from_millis(500)).await.unwrap();
        values.extend(records.iter().map(|r| value(&r.record)));
    }
    // At least once: a retried batch may be there twice, in order.
    values.dedup();
    assert_eq!(
        values,
        (0..100).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    producer.close().await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_answers_held_requests_at_once() {
    let mut cluster = Cluster::start_with_session_timeout(3, 60_000, |config| {
        config.manager.replica.replica_lag_time_max_ms = 60_000;
        config.manager.request_timeout_ms = 60_000;
    })
    .await;
    let client = cluster.client();
    let leader = create_topic(&cluster, &client).await;
    client
        .produce(&tp(), &[Record::new("committed")])
        .await
        .unwrap();
    for id in (1..=3).filter(|id| *id != leader) {
        cluster.stop(id).await;
    }
    let leader_addr = cluster.brokers[&leader].addr.clone();
    // An acks=all produce the followers will never answer, and a consumer
    // fetch waiting a minute for a record that will never be committed.
    let held_produce = tokio::spawn({
        let addr = leader_addr.clone();
        async move { produce_to(&addr, "never committed", -1).await }
    });
    let replicas = cluster.brokers[&leader].replicas.clone();
    wait_until("the produce to wait", WAIT, async || {
        replicas.waiting() == 1
    })
    .await;
    // The stopped followers' last fetches are held no more.
    wait_until("no fetch held", WAIT, async || replicas.held_fetches() == 0).await;
    let held_fetch = tokio::spawn(async move {
        let consumer = Client::connect(&leader_addr, Duration::from_secs(90))
            .await
            .unwrap();
        let request = FetchRequest {
            max_wait_ms: 60_000,
            min_bytes: 1,
            max_bytes: 1024,
            partitions: vec![FetchPartition {
                topic: tp().topic,
                partition: 0,
                offset: 1,
                max_bytes: 1024,
            }],
        };
        let response: FetchResponse = consumer.call(ApiKey::Fetch, &request).await.unwrap();
        response
    });

    // Followers' fetches are held on the leader too (none here: they are
    // gone); this one is the consumer's.
    wait_until("the fetch to be held", WAIT, async || {
        replicas.held_fetches() == 1
    })
    .await;

    // The shutdown answers both at once, rather than after their minute
    // (or the server's 30 s drain timeout).
    tokio::time::timeout(Duration::from_secs(10), cluster.stop(leader))
        .await
        .expect("a prompt shutdown");
    let produce = held_produce.await.unwrap();
    assert_eq!(produce.error, ErrorCode::NotLeaderOrFollower);
    let fetch = held_fetch.await.unwrap();
    assert!(fetch.partitions[0].batches.is_empty());
    assert_eq!(fetch.partitions[0].high_watermark, 1);
    cluster.shutdown().await;
}
