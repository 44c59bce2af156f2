//! The cluster for real: coordinator servers and [`ClusterBroker`]s over
//! loopback TCP, in one process. A broker elected controller moves
//! leadership when another crashes, clients follow, and nothing
//! acknowledged is lost.
//!
//! [`ClusterBroker`]: ch08_cluster::service::ClusterBroker

mod common;

use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::TopicPartition;
use ch04_network::{Client, ClientError, ErrorCode};
use ch06_replication::protocol::{HeartbeatRequest, HeartbeatResponse, PartitionState};
use ch08_cluster::protocol::{
    ClusterApi, ClusterDescription, DeleteTopicRequest, ElectLeadersResponse, Fenced,
};
use common::Cluster;

fn state<'a>(
    description: &'a ClusterDescription,
    tp: &TopicPartition,
) -> Option<&'a PartitionState> {
    let found = description.partitions.iter().find(|(t, _)| t == tp);
    found.map(|(_, state)| state)
}

fn records(from: usize, n: usize) -> Vec<Record> {
    (from..from + n)
        .map(|i| Record::new(format!("record {i}").into_bytes()))
        .collect()
}

/// Produces `n` records one by one (each acknowledged by every in-sync
/// replica) and returns their offsets.
async fn produce(cluster: &Cluster, tp: &TopicPartition, from: usize, n: usize) -> Vec<u64> {
    let client = cluster.client();
    let mut offsets = Vec::new();
    for record in records(from, n) {
        let produced = client.produce(tp, &[record]).await.unwrap();
        offsets.push(produced.base_offset);
    }
    offsets
}

/// Every committed record of `tp`, read from its leader.
async fn read_all(cluster: &Cluster, tp: &TopicPartition) -> Vec<String> {
    let client = cluster.client();
    let mut values = Vec::new();
    loop {
        let fetched = client
            .fetch(tp, values.len() as u64, Duration::from_millis(100))
            .await
            .unwrap();
        if fetched.records.is_empty() {
            return values;
        }
        for (_, record) in fetched.records {
            values.push(String::from_utf8(record.value.to_vec()).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_register_elect_a_controller_and_create_a_replicated_topic() {
    let cluster = Cluster::start(3).await;
    let described = cluster
        .until("three brokers alive to a controller", |d| {
            d.brokers.len() == 3
        })
        .await;
    assert!(described.controller_epoch >= 1);
    assert!((1..=3).contains(&described.controller.broker_id));

    cluster.client().create_topic("orders", 3, 3).await.unwrap();
    let described = cluster
        .until("every partition with a leader and a full ISR", |d| {
            d.partitions.len() == 3 && d.partitions.iter().all(|(_, s)| s.isr.len() == 3)
        })
        .await;
    for (tp, state) in &described.partitions {
        assert_eq!(state.replicas.len(), 3, "{tp}");
        assert_eq!(
            state.leader,
            Some(state.replicas[0]),
            "{tp}: the preferred replica leads"
        );
    }
    // Kafka's rack-unaware assignment spreads the leaders.
    let mut leaders: Vec<_> = described.partitions.iter().map(|(_, s)| s.leader).collect();
    leaders.dedup();
    assert_eq!(leaders.len(), 3, "{described:?}");

    let refused = cluster
        .client()
        .create_topic("orders", 1, 1)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::TopicAlreadyExists));
    let refused = cluster
        .client()
        .create_topic("wide", 1, 4)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidReplicationFactor));
    assert!(
        refused
            .to_string()
            .contains("larger than available brokers"),
        "{refused}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_leader_crashes_its_partition_moves_and_nothing_acknowledged_is_lost() {
    let mut cluster = Cluster::start(3).await;
    cluster
        .until("three brokers", |d| d.brokers.len() == 3)
        .await;
    let tp = TopicPartition::new("payments", 0);
    cluster
        .client()
        .create_topic("payments", 1, 3)
        .await
        .unwrap();
    let before = cluster
        .until("a full ISR", |d| {
            state(d, &tp).is_some_and(|s| s.isr.len() == 3)
        })
        .await;
    let old = state(&before, &tp).unwrap().clone();
    let leader = old.leader.unwrap();
    produce(&cluster, &tp, 0, 20).await;

    cluster.crash(leader);
    let after = cluster
        .until("a new leader", |d| {
            state(d, &tp).is_some_and(|s| s.leader.is_some_and(|l| l != leader))
        })
        .await;
    let new = state(&after, &tp).unwrap();
    assert!(new.leader_epoch > old.leader_epoch, "{new:?}");
    assert!(
        !new.isr.contains(&leader),
        "the crashed broker left the ISR: {new:?}"
    );
    assert!(after.brokers.iter().all(|(id, _)| *id != leader));

    // The client finds the new leader and carries on.
    produce(&cluster, &tp, 20, 10).await;
    let read = read_all(&cluster, &tp).await;
    let expected: Vec<String> = (0..30).map(|i| format!("record {i}")).collect();
    assert_eq!(read, expected);

    // The crashed broker comes back, catches up and rejoins the ISR.
    cluster.restart(leader).await;
    cluster
        .until("the restarted broker back in the ISR", |d| {
            state(d, &tp).is_some_and(|s| s.isr.contains(&leader))
        })
        .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_controller_crashes_another_broker_takes_over() {
    let mut cluster = Cluster::start(3).await;
    let first = cluster
        .until("three brokers", |d| d.brokers.len() == 3)
        .await;
    let controller = first.controller.broker_id;
    cluster.crash(controller);
    let next = cluster
        .until("another controller", |d| {
            d.controller.broker_id != controller && d.brokers.len() == 2
        })
        .await;
    assert!(next.controller_epoch > first.controller_epoch);
    // The new controller serves requests: a topic on the two left.
    cluster.client().create_topic("after", 2, 2).await.unwrap();
    cluster
        .until("the new topic's leaders", |d| {
            d.partitions
                .iter()
                .filter(|(tp, s)| tp.topic == "after" && s.leader.is_some())
                .count()
                == 2
        })
        .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controlled_shutdown_moves_leadership_before_the_broker_stops() {
    let mut cluster = Cluster::start(3).await;
    cluster
        .until("three brokers", |d| d.brokers.len() == 3)
        .await;
    let tp = TopicPartition::new("logs", 0);
    cluster.client().create_topic("logs", 1, 3).await.unwrap();
    let described = cluster
        .until("a full ISR", |d| {
            state(d, &tp).is_some_and(|s| s.isr.len() == 3)
        })
        .await;
    let leader = state(&described, &tp).unwrap().leader.unwrap();
    produce(&cluster, &tp, 0, 5).await;

    let link = cluster.brokers[&leader].view.link.clone();
    link.controlled_shutdown(leader).await.unwrap();
    // Answered once stored: leadership has moved already, with no
    // session timeout waited for.
    let moved = cluster.describe().await.unwrap();
    let now = state(&moved, &tp).unwrap();
    assert_ne!(now.leader, Some(leader), "{now:?}");
    assert!(!now.isr.contains(&leader), "{now:?}");
    cluster.stop(leader).await;

    produce(&cluster, &tp, 5, 5).await;
    let expected: Vec<String> = (0..10).map(|i| format!("record {i}")).collect();
    assert_eq!(read_all(&cluster, &tp).await, expected);

    // Back, and preferred-leader election moves the partition home.
    cluster.restart(leader).await;
    cluster
        .until("back in the ISR", |d| {
            state(d, &tp).is_some_and(|s| s.isr.contains(&leader))
        })
        .await;
    let controller = cluster.describe().await.unwrap().controller;
    let client = Client::connect(&controller.address, Duration::from_secs(3))
        .await
        .unwrap();
    let elected: ElectLeadersResponse = client.call(ClusterApi::ElectLeaders, &()).await.unwrap();
    let home = state(&cluster.describe().await.unwrap(), &tp)
        .unwrap()
        .clone();
    if state(&described, &tp).unwrap().replicas[0] == leader {
        assert_eq!(elected.moved, vec![tp.clone()]);
        assert_eq!(home.leader, Some(leader));
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_is_gone_from_the_cluster() {
    let cluster = Cluster::start(2).await;
    cluster.until("two brokers", |d| d.brokers.len() == 2).await;
    cluster.client().create_topic("old", 2, 2).await.unwrap();
    let described = cluster.until("created", |d| d.partitions.len() == 2).await;
    let client = Client::connect(&described.controller.address, Duration::from_secs(3))
        .await
        .unwrap();
    let request = DeleteTopicRequest { name: "old".into() };
    let () = client
        .call(ClusterApi::DeleteTopic, &request)
        .await
        .unwrap();
    assert!(cluster.describe().await.unwrap().partitions.is_empty());
    let again = client
        .call::<_, ()>(ClusterApi::DeleteTopic, &request)
        .await;
    assert_eq!(
        again.unwrap_err().code(),
        Some(ErrorCode::UnknownTopicOrPartition)
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_requests_to_a_broker_that_is_not_the_controller_are_refused() {
    let cluster = Cluster::start(2).await;
    let described = cluster.until("two brokers", |d| d.brokers.len() == 2).await;
    let other = cluster
        .brokers
        .iter()
        .find(|(id, _)| **id != described.controller.broker_id)
        .map(|(_, b)| b.addr.clone())
        .unwrap();
    let client = Client::connect(&other, Duration::from_secs(3))
        .await
        .unwrap();
    let request = HeartbeatRequest {
        broker_id: 1,
        incarnation: 7,
        address: "127.0.0.1:1".into(),
        log_ends: Vec::new(),
    };
    let refused = client
        .call::<_, Fenced<HeartbeatResponse>>(ClusterApi::BrokerHeartbeat, &request)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NotController));

    // At the controller: an unknown broker is refused, and bytes that are
    // not a request are INVALID_REQUEST; the broker serves on.
    let controller = Client::connect(&described.controller.address, Duration::from_secs(3))
        .await
        .unwrap();
    let stranger = HeartbeatRequest {
        broker_id: 99,
        ..request
    };
    let refused = controller
        .call::<_, Fenced<HeartbeatResponse>>(ClusterApi::BrokerHeartbeat, &stranger)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::BrokerIdNotRegistered));
    let garbage = controller
        .call::<_, ()>(ClusterApi::AlterPartition, &vec![0xffu8; 3])
        .await
        .unwrap_err();
    assert!(
        matches!(
            garbage,
            ClientError::Broker {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ),
        "{garbage}"
    );
    assert_eq!(cluster.describe().await.unwrap().brokers.len(), 2);
    cluster.shutdown().await;
}
