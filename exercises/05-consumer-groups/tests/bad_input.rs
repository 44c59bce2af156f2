//! Requests a well-behaved consumer never sends, sent on purpose: each gets
//! a defined error, and the broker keeps serving.

mod common;

use std::time::Duration;

use tokio::time::Instant;

use ch02_segments::{Record, batch};
use ch04_network::protocol::{
    ApiKey, DeleteTopicsRequest, ProducePartition, ProduceRequest, ProduceResponse, ProduceTopic,
    TopicResults,
};
use ch04_network::{Admin, Client, ClientError, ErrorCode};
use ch05_consumer_groups::consumer::GroupConsumer;
use ch05_consumer_groups::protocol::{
    CONSUMER_PROTOCOL, CommitPartition, ErrorOnly, GroupApi, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest, OffsetCommitResponse,
    SyncGroupRequest, SyncGroupResponse,
};
use common::{TestBroker, fast};

const TIMEOUT: Duration = Duration::from_secs(10);

fn join(member_id: &str, protocols: Vec<(String, Vec<u8>)>) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: "g".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        member_id: member_id.into(),
        client_id: "raw".into(),
        protocol_type: CONSUMER_PROTOCOL.into(),
        protocols,
    }
}

/// Joins as a new member (both KIP-394 steps); returns the answer.
async fn join_new(client: &Client) -> JoinGroupResponse {
    let protocols = vec![("range".to_string(), vec![])];
    let first: JoinGroupResponse = client
        .call(GroupApi::JoinGroup, &join("", protocols.clone()))
        .await
        .unwrap();
    assert_eq!(first.error, ErrorCode::MemberIdRequired);
    client
        .call(GroupApi::JoinGroup, &join(&first.member_id, protocols))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_join_with_no_protocols_is_inconsistent() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(&broker.addr, TIMEOUT).await.unwrap();
    let answer: JoinGroupResponse = client
        .call(GroupApi::JoinGroup, &join("", vec![]))
        .await
        .unwrap();
    assert_eq!(answer.error, ErrorCode::InconsistentGroupProtocol);
}

#[tokio::test]
async fn a_follower_that_sends_assignments_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let leader_client = Client::connect(&broker.addr, TIMEOUT).await.unwrap();
    let leader = join_new(&leader_client).await;
    let sync = |member: &str, generation, assignments| SyncGroupRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member.into(),
        assignments,
    };
    let synced: SyncGroupResponse = leader_client
        .call(GroupApi::SyncGroup, &sync(&leader.member_id, 1, vec![]))
        .await
        .unwrap();
    assert_eq!(synced.error, ErrorCode::None);

    // A second member joins; the leader rejoins, and both are in gen 2.
    let follower_client = Client::connect(&broker.addr, TIMEOUT).await.unwrap();
    let follower = tokio::spawn(async move { join_new(&follower_client).await });
    // Wait until the follower's join is in: the leader's heartbeat then
    // says the group is rebalancing.
    loop {
        let request = HeartbeatRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: leader.member_id.clone(),
        };
        let beat: ErrorOnly = leader_client
            .call(GroupApi::Heartbeat, &request)
            .await
            .unwrap();
        if beat.error == ErrorCode::RebalanceInProgress {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let protocols = vec![("range".to_string(), vec![])];
    let rejoined: JoinGroupResponse = leader_client
        .call(GroupApi::JoinGroup, &join(&leader.member_id, protocols))
        .await
        .unwrap();
    let follower = follower.await.unwrap();
    assert_eq!((rejoined.generation_id, follower.generation_id), (2, 2));
    assert_eq!(rejoined.leader, leader.member_id);

    let bogus = vec![(follower.member_id.clone(), b"mine".to_vec())];
    let answer: SyncGroupResponse = leader_client
        .call(GroupApi::SyncGroup, &sync(&follower.member_id, 2, bogus))
        .await
        .unwrap();
    assert_eq!(answer.error, ErrorCode::InvalidRequest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_subscription_fails_the_leaders_rebalance_until_its_member_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 2, vec![]).await.unwrap();
    let mut consumer = GroupConsumer::connect(&broker.addr, fast("g", "c"))
        .await
        .unwrap();
    consumer.subscribe(["t"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while consumer.assignment().len() < 2 {
        consumer.poll(Duration::from_millis(20)).await.unwrap();
        assert!(Instant::now() < deadline, "the consumer never got both");
    }

    // A raw member joins with no subscription at all (empty metadata).
    let raw = Client::connect(&broker.addr, TIMEOUT).await.unwrap();
    let joining = tokio::spawn(async move {
        let joined = join_new(&raw).await;
        (raw, joined)
    });
    // The consumer leads the rebalance, cannot decode that member's
    // subscription, and `poll` says so.
    let error = loop {
        match consumer.poll(Duration::from_millis(20)).await {
            Err(e) => break e,
            Ok(_) => assert!(Instant::now() < deadline, "no error"),
        }
    };
    assert!(matches!(error, ClientError::Protocol(_)), "{error}");

    // Once that member has left, the next polls rejoin and take both
    // partitions again: a failed rebalance is retried, not abandoned.
    let (raw, joined) = joining.await.unwrap();
    let leave = LeaveGroupRequest {
        group_id: "g".into(),
        member_id: joined.member_id,
    };
    let left: ErrorOnly = raw.call(GroupApi::LeaveGroup, &leave).await.unwrap();
    assert_eq!(left.error, ErrorCode::None);
    while consumer.assignment().len() < 2 {
        consumer.poll(Duration::from_millis(20)).await.unwrap();
        assert!(Instant::now() < deadline, "the consumer never rejoined");
    }
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_commit_for_a_partition_that_does_not_exist_is_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 2, vec![]).await.unwrap();
    let client = Client::connect(&broker.addr, TIMEOUT).await.unwrap();
    let partition = |partition, metadata: &str| CommitPartition {
        partition,
        offset: 5,
        metadata: metadata.into(),
    };
    let request = OffsetCommitRequest {
        group_id: "solo".into(),
        generation_id: -1,
        member_id: String::new(),
        topics: vec![
            (
                "t".into(),
                vec![
                    partition(0, ""),
                    partition(7, ""),
                    partition(1, &"x".repeat(5000)),
                ],
            ),
            ("missing".into(), vec![partition(0, "")]),
        ],
    };
    let answer: OffsetCommitResponse = client.call(GroupApi::OffsetCommit, &request).await.unwrap();
    assert_eq!(
        answer.topics,
        [
            (
                "t".to_string(),
                vec![
                    (0, ErrorCode::None),
                    (7, ErrorCode::UnknownTopicOrPartition),
                    (1, ErrorCode::OffsetMetadataTooLarge),
                ]
            ),
            (
                "missing".to_string(),
                vec![(0, ErrorCode::UnknownTopicOrPartition)]
            ),
        ]
    );
}

#[tokio::test]
async fn a_heartbeat_for_a_group_that_does_not_exist_is_an_unknown_member() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(&broker.addr, TIMEOUT).await.unwrap();
    let request = HeartbeatRequest {
        group_id: "nobody".into(),
        generation_id: 1,
        member_id: "ghost".into(),
    };
    let answer: ErrorOnly = client.call(GroupApi::Heartbeat, &request).await.unwrap();
    assert_eq!(answer.error, ErrorCode::UnknownMemberId);
}

#[tokio::test]
async fn an_undecodable_group_request_is_invalid_and_the_broker_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(&broker.addr, TIMEOUT).await.unwrap();
    // A heartbeat's body where a join's is expected.
    let request = HeartbeatRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: "m".into(),
    };
    let error = client
        .call::<_, JoinGroupResponse>(GroupApi::JoinGroup, &request)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Broker {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ),
        "{error}"
    );
    // Same connection, still served.
    let answer: JoinGroupResponse = client
        .call(GroupApi::JoinGroup, &join("", vec![]))
        .await
        .unwrap();
    assert_eq!(answer.error, ErrorCode::InconsistentGroupProtocol);
}

#[tokio::test]
async fn clients_cannot_write_or_delete_the_offsets_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(&broker.addr, TIMEOUT).await.unwrap();
    let request = ProduceRequest {
        acks: 1,
        topics: vec![ProduceTopic {
            name: "__consumer_offsets".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                batch: batch::encode(&[Record::new("forged commit")]).unwrap(),
            }],
        }],
    };
    let answer: ProduceResponse = client.call(ApiKey::Produce, &request).await.unwrap();
    assert_eq!(
        answer.topics[0].1[0].error,
        ErrorCode::InvalidTopicException
    );

    let request = DeleteTopicsRequest {
        topics: vec!["__consumer_offsets".into()],
    };
    let answer: TopicResults = client.call(ApiKey::DeleteTopics, &request).await.unwrap();
    assert_eq!(answer.topics[0].1, ErrorCode::InvalidTopicException);
    // Still there, and empty.
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    let info = admin.describe_topic("__consumer_offsets").await.unwrap();
    assert!(info.partitions.iter().all(|p| p.log_end_offset == 0));
}
