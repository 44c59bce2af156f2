//! Bad input on the replication APIs: fetches from strangers, from the
//! past and from the future, past the log's end, and bodies that are not
//! bodies. Each gets a defined error; nothing stored is lost. And a
//! corrupt batch from a leader is refused by the follower, on a real disk,
//! without losing what the follower has.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use ch02_segments::{Record, batch};
use ch03_partitions::{TopicPartition, TopicStore};
use ch04_network::protocol::{
    self, ApiKey, CreateTopicsRequest, DeleteTopicsRequest, ErrorResponse, NewTopic, RequestHeader,
    StoredBytes, TopicResults,
};
use ch04_network::{Client, ClientError, ErrorCode};
use ch06_replication::disk::DiskStorage;
use ch06_replication::manager::{ManagerConfig, Outgoing, ReplicaManager};
use ch06_replication::protocol::{
    EpochBatch, EpochQuery, EpochQueryRequest, EpochQueryResponse, HeartbeatResponse,
    PartitionState, ReplicaFetchData, ReplicaFetchPartition, ReplicaFetchRequest,
    ReplicaFetchResponse, ReplicationApi,
};
use ch06_replication::replica::FollowerError;
use ch06_replication::storage::Storage;
use common::cluster::Cluster;
use common::{value, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

fn tp() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

fn fetch(replica_id: u32, leader_epoch: u32, fetch_offset: u64) -> ReplicaFetchRequest {
    ReplicaFetchRequest {
        replica_id,
        partitions: vec![ReplicaFetchPartition {
            tp: tp(),
            leader_epoch,
            fetch_offset,
            max_bytes: 1024 * 1024,
        }],
    }
}

async fn replica_fetch(client: &Client, request: &ReplicaFetchRequest) -> ReplicaFetchData {
    let response: ReplicaFetchResponse = client
        .call(ReplicationApi::ReplicaFetch as u16, request)
        .await
        .unwrap();
    response.partitions.into_iter().next().unwrap()
}

/// One request with any API version, over a socket of its own (chapter
/// 4's client only speaks version 0).
async fn raw_call(
    addr: &str,
    api_key: u16,
    api_version: u16,
    body: &ReplicaFetchRequest,
) -> Result<ReplicaFetchResponse, ErrorResponse> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let header = RequestHeader {
        api_key,
        api_version,
        correlation_id: 7,
    };
    let mut frame = BytesMut::new();
    protocol::encode_request(header, body, &mut frame).unwrap();
    stream.write_all(&frame).await.unwrap();
    let len = stream.read_u32().await.unwrap();
    let mut response = vec![0; len as usize];
    stream.read_exact(&mut response).await.unwrap();
    let (correlation_id, body) = protocol::parse_response(response.into()).unwrap();
    assert_eq!(correlation_id, 7);
    protocol::decode_body(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replication_requests_get_defined_errors_and_lose_nothing() {
    let cluster = Cluster::start(3, |_| {}).await;
    let client = cluster.client();
    cluster.wait_until_all_alive().await;
    client.create_topic("orders", 1, 3).await.unwrap();
    // More replicas than brokers, or none: Kafka's error and message.
    let too_many = client.create_topic("wide", 1, 4).await.unwrap_err();
    assert_eq!(too_many.code(), Some(ErrorCode::InvalidReplicationFactor));
    assert!(
        too_many
            .to_string()
            .contains("Replication factor: 4 larger than available brokers: 3."),
        "{too_many}"
    );
    let none = client.create_topic("wide", 1, 0).await.unwrap_err();
    assert_eq!(none.code(), Some(ErrorCode::InvalidReplicationFactor));
    assert!(none.to_string().contains("must be larger than 0"), "{none}");
    assert_eq!(
        client.create_topic("wide", 0, 1).await.unwrap_err().code(),
        Some(ErrorCode::InvalidPartitions)
    );
    for i in 0..5 {
        client
            .produce(&tp(), &[Record::new(format!("r{i}"))])
            .await
            .unwrap();
    }
    let state = cluster.controller.partition(&tp()).unwrap();
    let leader = state.leader.unwrap();
    let follower = state
        .replicas
        .iter()
        .copied()
        .find(|id| *id != leader)
        .unwrap();
    let raw = Client::connect(&cluster.brokers[&leader].addr, Duration::from_secs(5))
        .await
        .unwrap();

    // A replica the partition does not have.
    let answer = replica_fetch(&raw, &fetch(99, 0, 0)).await;
    assert_eq!(answer.error, ErrorCode::NotLeaderOrFollower);
    assert!(answer.batches.is_empty());
    // An epoch the leader has not reached: the sender knows something it
    // does not (yet).
    let answer = replica_fetch(&raw, &fetch(follower, 1, 0)).await;
    assert_eq!(answer.error, ErrorCode::UnknownLeaderEpoch);
    // Past the leader's log end.
    let answer = replica_fetch(&raw, &fetch(follower, 0, 1_000)).await;
    assert_eq!(answer.error, ErrorCode::OffsetOutOfRange);
    // Bodies that do not decode: an error answer, and the connection stays.
    for api in [
        ReplicationApi::ReplicaFetch,
        ReplicationApi::OffsetsForLeaderEpoch,
        ReplicationApi::CreateReplicatedTopic,
    ] {
        let garbage: Result<ReplicaFetchResponse, ClientError> =
            raw.call(api as u16, &"garbage".to_string()).await;
        assert_eq!(
            garbage.unwrap_err().code(),
            Some(ErrorCode::InvalidRequest),
            "{api:?}"
        );
    }
    // The controller's APIs, sent to a broker.
    let misdirected: Result<HeartbeatResponse, ClientError> = raw
        .call(ReplicationApi::BrokerHeartbeat as u16, &"x".to_string())
        .await;
    assert_eq!(
        misdirected.unwrap_err().code(),
        Some(ErrorCode::InvalidRequest)
    );
    // A version this broker does not speak.
    let answer = raw_call(
        &cluster.brokers[&leader].addr,
        ReplicationApi::ReplicaFetch as u16,
        1,
        &fetch(follower, 0, 0),
    )
    .await;
    assert_eq!(answer.unwrap_err().error, ErrorCode::UnsupportedVersion);
    // The controller: garbage, and an API it does not serve.
    let controller = Client::connect(&cluster.controller_addr, Duration::from_secs(5))
        .await
        .unwrap();
    let garbage: Result<HeartbeatResponse, ClientError> = controller
        .call(
            ReplicationApi::BrokerHeartbeat as u16,
            &"garbage".to_string(),
        )
        .await;
    assert_eq!(garbage.unwrap_err().code(), Some(ErrorCode::InvalidRequest));
    let wrong: Result<ReplicaFetchResponse, ClientError> = controller
        .call(ReplicationApi::ReplicaFetch as u16, &fetch(follower, 0, 0))
        .await;
    assert_eq!(
        wrong.unwrap_err().code(),
        Some(ErrorCode::UnsupportedVersion)
    );

    // Chapter 4's topic changes may not touch a replicated topic; a local
    // topic is still chapter 4's.
    let new_topic = |name: &str| NewTopic {
        name: name.to_string(),
        partitions: 1,
        configs: Vec::new(),
    };
    let create = CreateTopicsRequest {
        topics: vec![new_topic("orders")],
    };
    let created: TopicResults = raw.call(ApiKey::CreateTopics, &create).await.unwrap();
    assert_eq!(created.topics[0].1, ErrorCode::TopicAlreadyExists);
    let delete = DeleteTopicsRequest {
        topics: vec!["orders".to_string()],
    };
    let deleted: TopicResults = raw.call(ApiKey::DeleteTopics, &delete).await.unwrap();
    assert_eq!(deleted.topics[0].1, ErrorCode::InvalidRequest);
    let create = CreateTopicsRequest {
        topics: vec![new_topic("local")],
    };
    let created: TopicResults = raw.call(ApiKey::CreateTopics, &create).await.unwrap();
    assert_eq!(created.topics[0].1, ErrorCode::None);

    // A new leader: the old epoch is now fenced.
    cluster.controller.fence(leader);
    let new_leader = cluster.controller.partition(&tp()).unwrap().leader.unwrap();
    assert_ne!(new_leader, leader);
    let replicas = cluster.brokers[&new_leader].replicas.clone();
    wait_until("the new leader to lead", WAIT, async || {
        replicas.partition(&tp()).unwrap().is_leader()
    })
    .await;
    let raw = Client::connect(&cluster.brokers[&new_leader].addr, Duration::from_secs(5))
        .await
        .unwrap();
    let stale = replica_fetch(&raw, &fetch(leader, 0, 0)).await;
    assert_eq!(stale.error, ErrorCode::FencedLeaderEpoch);
    let query = EpochQueryRequest {
        replica_id: leader,
        partitions: vec![EpochQuery {
            tp: tp(),
            current_leader_epoch: 0,
            epoch: 0,
        }],
    };
    let answer: EpochQueryResponse = raw
        .call(ReplicationApi::OffsetsForLeaderEpoch as u16, &query)
        .await
        .unwrap();
    assert_eq!(answer.partitions[0].error, ErrorCode::FencedLeaderEpoch);

    // Nothing stored was lost, and the cluster still takes writes.
    client.produce(&tp(), &[Record::new("r5")]).await.unwrap();
    let fetched = client
        .fetch(&tp(), 0, Duration::from_millis(10))
        .await
        .unwrap();
    let values: Vec<String> = fetched.records.iter().map(|(_, r)| value(r)).collect();
    assert_eq!(values, ["r0", "r1", "r2", "r3", "r4", "r5"]);
    cluster.shutdown().await;
}

/// A leader's batch at `offset`, as a follower would receive it.
fn leader_batch(offset: u64, value: &str) -> Vec<u8> {
    let mut bytes = batch::encode(&[Record::new(value)]).unwrap();
    batch::set_base_offset(&mut bytes, offset);
    bytes
}

#[test]
fn a_follower_refuses_a_corrupt_batch_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = TopicStore::open(dir.path()).unwrap();
    let mut storage = DiskStorage::new(&mut store);
    let mut follower: ReplicaManager<()> =
        ReplicaManager::open(2, ManagerConfig::default(), &mut storage, 0);
    let state = PartitionState {
        leader: Some(1),
        leader_epoch: 0,
        partition_epoch: 0,
        replicas: vec![1, 2],
        isr: vec![1, 2],
        elr: Vec::new(),
        last_known_elr: Vec::new(),
    };
    let assignment = HeartbeatResponse {
        partitions: vec![(tp(), state)],
        brokers: Vec::new(),
    };
    follower
        .on_heartbeat_response(&mut storage, assignment, 0)
        .unwrap();
    let answer = |batches: Vec<Vec<u8>>| ReplicaFetchResponse {
        partitions: vec![ReplicaFetchData {
            tp: tp(),
            error: ErrorCode::None,
            leader_epoch: 0,
            high_watermark: 1,
            batches: batches
                .into_iter()
                .map(|b| EpochBatch {
                    epoch: 0,
                    bytes: StoredBytes(b),
                })
                .collect(),
        }],
    };
    let fetches = |follower: &mut ReplicaManager<()>, storage: &mut DiskStorage<'_>, now| {
        follower
            .poll_outgoing(storage, now)
            .into_iter()
            .filter(|m| matches!(m, Outgoing::Fetch { to: 1, .. }))
            .count()
    };
    assert_eq!(fetches(&mut follower, &mut storage, 0), 1);

    // One good batch, then one whose bytes were damaged on the way.
    let mut damaged = leader_batch(1, "second");
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let refused = follower.on_fetch_response(
        &mut storage,
        1,
        answer(vec![leader_batch(0, "first"), damaged]),
    );
    assert!(
        matches!(refused, Err(FollowerError::CorruptBatch { offset: 1, .. })),
        "{refused:?}"
    );
    let log = storage.log(&tp()).unwrap();
    assert_eq!(
        log.log_end_offset(),
        1,
        "the good batch is kept, the damaged one is not"
    );

    // It fetches again from where its log ends, and takes the batch whole.
    assert_eq!(fetches(&mut follower, &mut storage, 1), 1);
    follower
        .on_fetch_response(&mut storage, 1, answer(vec![leader_batch(1, "second")]))
        .unwrap();
    let log = storage.log(&tp()).unwrap();
    let values: Vec<String> = log
        .read(0, u64::MAX)
        .unwrap()
        .iter()
        .flat_map(|b| b.records().unwrap())
        .map(|(_, r)| value(&r))
        .collect();
    assert_eq!(values, ["first", "second"]);
    // What it stored is in its checkpoints too: the epoch it copied.
    let epochs = storage.read_epochs(&tp());
    assert_eq!(epochs.len(), 1);
    let hws: BTreeMap<TopicPartition, u64> = {
        follower.checkpoint_high_watermarks(&mut storage).unwrap();
        storage.read_high_watermarks()
    };
    assert_eq!(hws[&tp()], 1);
}
