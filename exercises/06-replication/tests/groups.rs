//! Consumer groups on a replicated cluster: `__consumer_offsets` is a
//! replicated topic, each group's coordinator is the leader of the group's
//! partition of it, and when that broker goes, the new leader takes the
//! group over with every acknowledged commit.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::TopicPartition;
use ch04_network::{
    Admin, Client, ConsumerConfig, ErrorCode, OffsetReset, Producer, ProducerConfig,
};
use ch05_consumer_groups::offsets::{OFFSETS_TOPIC, offsets_partition};
use ch05_consumer_groups::protocol::{
    CommitPartition, FindCoordinatorRequest, FindCoordinatorResponse, GroupApi, JoinGroupRequest,
    JoinGroupResponse, OffsetCommitRequest, OffsetCommitResponse,
};
use ch05_consumer_groups::{GroupAdmin, GroupConsumer, GroupConsumerConfig, OffsetsConfig};
use ch06_replication::protocol::BrokerId;
use common::cluster::Cluster;
use common::{value, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// Every broker: replicated topics by default, and a small offsets topic.
fn configure(config: &mut ch06_replication::service::ReplicationConfig) {
    config.default_replication_factor = Some(3);
    config.groups.offsets = OffsetsConfig {
        partitions: 3,
        ..OffsetsConfig::default()
    };
}

/// The leader of `group`'s offsets partition, as the controller has it.
fn coordinator_of(cluster: &Cluster, group: &str) -> Option<BrokerId> {
    let tp = TopicPartition::new(OFFSETS_TOPIC, offsets_partition(group, 3));
    cluster.controller.partition(&tp).and_then(|p| p.leader)
}

/// Asks broker `addr` where `group`'s coordinator is.
async fn find_coordinator(addr: &str, group: &str) -> FindCoordinatorResponse {
    let client = Client::connect(addr, WAIT).await.unwrap();
    let request = FindCoordinatorRequest { key: group.into() };
    client
        .call(GroupApi::FindCoordinator, &request)
        .await
        .unwrap()
}

/// A cluster of three live brokers with topic `orders` (2 partitions,
/// replicated three times) holding `r0..r{n}`.
async fn cluster_with_records(n: u32) -> (Cluster, String) {
    let cluster = Cluster::start(3, configure).await;
    cluster.wait_until_all_alive().await;
    let bootstrap = cluster.addresses();
    let admin = Admin::connect(&bootstrap[0], WAIT).await.unwrap();
    admin.create_topic("orders", 2, vec![]).await.unwrap();
    let bootstrap = bootstrap.join(",");
    produce(&bootstrap, 0, n).await;
    (cluster, bootstrap)
}

/// Sends `r{from}..r{to}` with `acks=all`, and waits for every one.
async fn produce(bootstrap: &str, from: u32, to: u32) {
    let config = ProducerConfig {
        acks: -1,
        retry_backoff: Duration::from_millis(50),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(bootstrap, config).await.unwrap();
    let mut deliveries = Vec::new();
    for i in from..to {
        let record = Record::new(format!("r{i}"));
        deliveries.push(producer.send("orders", record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

/// A member of group `g` reading `orders` from the start.
async fn member(bootstrap: &str) -> GroupConsumer {
    let mut config = GroupConsumerConfig::new("g");
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_millis(200);
    config.enable_auto_commit = false;
    config.consumer = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        retry_backoff: Duration::from_millis(50),
        request_timeout: Duration::from_secs(5),
        ..ConsumerConfig::default()
    };
    let mut consumer = GroupConsumer::connect(bootstrap, config).await.unwrap();
    consumer.subscribe(["orders"]);
    consumer
}

/// Polls until the member is in a generation other than `not`, has read
/// `range`, and its positions are at the range's end (so a commit now
/// covers it); returns what it read, each value once.
async fn read_to_the_end(
    consumer: &mut GroupConsumer,
    range: std::ops::Range<u32>,
    not: Option<(String, i32)>,
) -> Vec<String> {
    let mut values = BTreeSet::new();
    let caught_up = |consumer: &GroupConsumer, values: &BTreeSet<u32>| {
        let positions: u64 = consumer
            .assignment()
            .iter()
            .filter_map(|tp| consumer.position(tp))
            .sum();
        consumer.generation().is_some()
            && consumer.generation() != not
            && range.clone().all(|i| values.contains(&i))
            && positions == u64::from(range.end)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !caught_up(consumer, &values) {
        assert!(tokio::time::Instant::now() < deadline, "read {values:?}");
        let records = consumer.poll(Duration::from_millis(200)).await.unwrap();
        values.extend(
            records
                .iter()
                .map(|r| value(&r.record)[1..].parse::<u32>().unwrap()),
        );
    }
    values.into_iter().map(|i| format!("r{i}")).collect()
}

fn names(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("r{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_moves_with_its_offsets_partition_and_keeps_every_acknowledged_commit() {
    let (mut cluster, bootstrap) = cluster_with_records(100).await;
    let mut consumer = member(&bootstrap).await;
    let read = read_to_the_end(&mut consumer, 0..100, None).await;
    assert_eq!(read, names(0..100));
    consumer.commit_sync().await.unwrap();

    // The coordinator is the leader of the group's offsets partition, and
    // every broker says so.
    let coordinator = coordinator_of(&cluster, "g").expect("a leader");
    for broker in cluster.brokers.values() {
        let found = find_coordinator(&broker.addr, "g").await;
        assert_eq!((found.error, found.node_id), (ErrorCode::None, coordinator));
    }
    let admin = GroupAdmin::connect(&bootstrap, WAIT).await.unwrap();
    let committed = admin.committed_offsets("g").await.unwrap();
    assert_eq!(committed.values().sum::<u64>(), 100);

    // The coordinator goes. Its offsets partition gets a new leader, which
    // loads the commits. The member finds it; the new coordinator does
    // not know the member (Kafka stores the members in the offsets topic
    // too; this course does not), so it joins again, and goes on from its
    // commits: nothing before them is read again.
    let before = consumer.generation();
    cluster.stop(coordinator).await;
    produce(&bootstrap, 100, 150).await;
    let read = read_to_the_end(&mut consumer, 100..150, before).await;
    assert_eq!(read, names(100..150));
    let moved = coordinator_of(&cluster, "g").expect("a new leader");
    assert_ne!(moved, coordinator);
    consumer.commit_sync().await.unwrap();
    let committed = admin.committed_offsets("g").await.unwrap();
    assert_eq!(committed.values().sum::<u64>(), 150);
    let group = admin.describe_group("g").await.unwrap();
    assert_eq!((group.state.as_str(), group.members.len()), ("Stable", 1));
    consumer.close().await.unwrap();

    // The old coordinator comes back as a follower: a new member of the
    // group still starts from the latest commits.
    cluster.restart(coordinator).await;
    produce(&bootstrap, 150, 160).await;
    let mut next = member(&bootstrap).await;
    let read = read_to_the_end(&mut next, 150..160, None).await;
    assert_eq!(read, names(150..160));
    next.close().await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_does_not_coordinate_a_group_refuses_its_requests() {
    let (cluster, bootstrap) = cluster_with_records(1).await;
    // The first FindCoordinator creates the offsets topic; ask until it has
    // a leader.
    let first = cluster.brokers[&1].addr.clone();
    wait_until("a coordinator for g", WAIT, async || {
        find_coordinator(&first, "g").await.error == ErrorCode::None
    })
    .await;
    let coordinator = find_coordinator(&first, "g").await.node_id;
    let other = cluster
        .brokers
        .keys()
        .find(|&&id| id != coordinator)
        .unwrap();
    let client = Client::connect(&cluster.brokers[other].addr, WAIT)
        .await
        .unwrap();

    let join = JoinGroupRequest {
        group_id: "g".into(),
        session_timeout_ms: 6_000,
        rebalance_timeout_ms: 6_000,
        member_id: String::new(),
        client_id: "c".into(),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Vec::new())],
    };
    let joined: JoinGroupResponse = client.call(GroupApi::JoinGroup, &join).await.unwrap();
    assert_eq!(joined.error, ErrorCode::NotCoordinator);
    let commit = OffsetCommitRequest {
        group_id: "g".into(),
        generation_id: -1,
        member_id: String::new(),
        topics: vec![(
            "orders".into(),
            vec![CommitPartition {
                partition: 0,
                offset: 1,
                metadata: String::new(),
            }],
        )],
    };
    let committed: OffsetCommitResponse =
        client.call(GroupApi::OffsetCommit, &commit).await.unwrap();
    assert_eq!(
        committed.topics,
        vec![("orders".into(), vec![(0, ErrorCode::NotCoordinator)])]
    );
    // The coordinator takes the same commit.
    let client = Client::connect(&cluster.brokers[&coordinator].addr, WAIT)
        .await
        .unwrap();
    let committed: OffsetCommitResponse =
        client.call(GroupApi::OffsetCommit, &commit).await.unwrap();
    assert_eq!(
        committed.topics,
        vec![("orders".into(), vec![(0, ErrorCode::None)])]
    );

    // Only the coordinator writes the offsets topic.
    let producer = Producer::connect(&bootstrap, ProducerConfig::default())
        .await
        .unwrap();
    let refused = producer
        .send(OFFSETS_TOPIC, Record::new("forged"))
        .await
        .unwrap()
        .await;
    assert_eq!(
        refused.unwrap_err().code(),
        Some(ErrorCode::InvalidTopicException)
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_wait_for_enough_brokers_for_the_offsets_topic() {
    // One broker, and the offsets topic wants three replicas (Kafka's
    // default): no coordinator, and no topic made with fewer.
    let cluster = Cluster::start(1, configure).await;
    let addr = cluster.brokers[&1].addr.clone();
    wait_until("a live broker", WAIT, async || {
        cluster.controller.is_alive(1)
    })
    .await;
    for _ in 0..3 {
        let found = find_coordinator(&addr, "g").await;
        assert_eq!(found.error, ErrorCode::CoordinatorNotAvailable);
    }
    let offsets = TopicPartition::new(OFFSETS_TOPIC, 0);
    assert!(cluster.controller.partition(&offsets).is_none());
    cluster.shutdown().await;

    // With `offsets.topic.replication.factor=1`, the one broker coordinates.
    let cluster = Cluster::start(1, |config| {
        configure(config);
        config.offsets_replication_factor = 1;
    })
    .await;
    let addr = cluster.brokers[&1].addr.clone();
    wait_until("a coordinator for g", WAIT, async || {
        find_coordinator(&addr, "g").await.error == ErrorCode::None
    })
    .await;
    let state = cluster.controller.partition(&offsets).unwrap();
    assert_eq!(state.replicas, vec![1]);
    cluster.shutdown().await;
}
