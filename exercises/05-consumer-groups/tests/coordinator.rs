//! The group coordinator's state machine, driven by hand: joins, syncs,
//! heartbeats, leaves and the passing of time, with no network and no
//! sleeping. Time is a number of milliseconds the test chooses.

use std::collections::BTreeMap;
use std::time::Duration;

use ch04_network::ErrorCode;
use ch05_consumer_groups::coordinator::{
    CoordinatorConfig, GroupCoordinator, GroupState, MAX_METADATA_BYTES, Replies, Reply, ReplyTo,
};
use ch05_consumer_groups::protocol::{
    CommitPartition, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    OffsetCommitRequest, SyncGroupRequest, SyncGroupResponse,
};

const SESSION: u32 = 10_000;
const REBALANCE: u32 = 30_000;

/// A coordinator and the answers it has given, by reply token.
struct Harness {
    coordinator: GroupCoordinator,
    next: ReplyTo,
    answers: BTreeMap<ReplyTo, Reply>,
}

impl Harness {
    fn new() -> Harness {
        let config = CoordinatorConfig {
            min_session_timeout: Duration::from_millis(1),
            ..CoordinatorConfig::default()
        };
        Harness {
            coordinator: GroupCoordinator::new(config),
            next: 0,
            answers: BTreeMap::new(),
        }
    }

    fn token(&mut self) -> ReplyTo {
        self.next += 1;
        self.next
    }

    fn record(&mut self, replies: Replies) {
        for (to, reply) in replies {
            assert!(
                self.answers.insert(to, reply).is_none(),
                "request {to} answered twice"
            );
        }
    }

    fn join_request(member_id: &str, protocols: &[&str]) -> JoinGroupRequest {
        JoinGroupRequest {
            group_id: "g".into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            member_id: member_id.into(),
            client_id: "client".into(),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), member_id.as_bytes().to_vec()))
                .collect(),
        }
    }

    /// Sends a join; returns its token (its answer may come later).
    fn join(&mut self, now: u64, request: JoinGroupRequest) -> ReplyTo {
        let to = self.token();
        let replies = self.coordinator.join(now, request, to);
        self.record(replies);
        to
    }

    /// A new member's two joins (KIP-394): the first gets an id, the
    /// second is the real join. Returns the member id and the token.
    fn new_member(&mut self, now: u64) -> (String, ReplyTo) {
        let first = self.join(now, Self::join_request("", &["range"]));
        let Some(Reply::Join(answer)) = self.answers.remove(&first) else {
            panic!("a first join is answered at once");
        };
        assert_eq!(answer.error, ErrorCode::MemberIdRequired);
        let id = answer.member_id;
        let to = self.join(now, Self::join_request(&id, &["range"]));
        (id, to)
    }

    fn joined(&mut self, to: ReplyTo) -> JoinGroupResponse {
        match self.answers.remove(&to) {
            Some(Reply::Join(answer)) => answer,
            other => panic!("join {to} not answered: {other:?}"),
        }
    }

    fn sync(
        &mut self,
        now: u64,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> ReplyTo {
        let to = self.token();
        let request = SyncGroupRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member_id.into(),
            assignments,
        };
        let replies = self.coordinator.sync(now, request, to);
        self.record(replies);
        to
    }

    fn synced(&mut self, to: ReplyTo) -> SyncGroupResponse {
        match self.answers.remove(&to) {
            Some(Reply::Sync(answer)) => answer,
            other => panic!("sync {to} not answered: {other:?}"),
        }
    }

    fn heartbeat(&mut self, now: u64, member_id: &str, generation: i32) -> ErrorCode {
        let request = HeartbeatRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member_id.into(),
        };
        self.coordinator.heartbeat(now, &request)
    }

    fn tick(&mut self, now: u64) {
        let replies = self.coordinator.tick(now);
        self.record(replies);
    }

    fn state(&self) -> GroupState {
        self.coordinator.state("g").unwrap()
    }
}

#[test]
fn a_lone_member_forms_generation_1_and_leads_it() {
    let mut h = Harness::new();
    let (id, to) = h.new_member(0);
    let answer = h.joined(to);
    assert_eq!(answer.error, ErrorCode::None);
    assert_eq!(answer.generation_id, 1);
    assert_eq!(answer.leader, id);
    assert_eq!(answer.protocol_name, "range");
    assert_eq!(answer.members, [(id.clone(), id.as_bytes().to_vec())]);
    assert_eq!(h.state(), GroupState::CompletingRebalance);

    let to = h.sync(1, &id, 1, vec![(id.clone(), b"all of it".to_vec())]);
    assert_eq!(h.synced(to).assignment, b"all of it");
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.heartbeat(2, &id, 1), ErrorCode::None);
}

#[test]
fn a_join_waits_for_every_member_to_rejoin() {
    let mut h = Harness::new();
    let (a, to) = h.new_member(0);
    h.joined(to);
    let to = h.sync(0, &a, 1, vec![(a.clone(), b"x".to_vec())]);
    h.synced(to);

    // b joins: the group rebalances, and b's join is held...
    let (b, b_join) = h.new_member(10);
    assert!(!h.answers.contains_key(&b_join));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    // ...until a, told by its heartbeat, rejoins.
    assert_eq!(h.heartbeat(20, &a, 1), ErrorCode::RebalanceInProgress);
    let a_join = h.join(30, Harness::join_request(&a, &["range"]));
    let (ja, jb) = (h.joined(a_join), h.joined(b_join));
    assert_eq!((ja.generation_id, jb.generation_id), (2, 2));
    assert_eq!(ja.leader, a, "the leader stays the leader");
    assert_eq!(ja.members.len(), 2, "the leader learns every member");
    assert!(jb.members.is_empty(), "followers learn nothing");

    // b's sync waits for the leader's.
    let b_sync = h.sync(40, &b, 2, vec![]);
    assert!(!h.answers.contains_key(&b_sync));
    let a_sync = h.sync(
        50,
        &a,
        2,
        vec![(a.clone(), b"A".to_vec()), (b.clone(), b"B".to_vec())],
    );
    assert_eq!(h.synced(a_sync).assignment, b"A");
    assert_eq!(h.synced(b_sync).assignment, b"B");
    assert_eq!(h.state(), GroupState::Stable);
}

#[test]
fn a_silent_member_is_removed_after_its_session_timeout() {
    let mut h = Harness::new();
    let (a, to) = h.new_member(0);
    h.joined(to);
    let (b, b_join) = h.new_member(0);
    let a_join = h.join(0, Harness::join_request(&a, &["range"]));
    h.joined(a_join);
    h.joined(b_join);
    let b_sync = h.sync(0, &b, 2, vec![]);
    let a_sync = h.sync(0, &a, 2, vec![]);
    h.synced(a_sync);
    h.synced(b_sync);

    // a keeps heartbeating; b goes silent.
    let mut now = 0;
    while now < u64::from(SESSION) - 1000 {
        now += 1000;
        assert_eq!(h.heartbeat(now, &a, 2), ErrorCode::None);
        h.tick(now);
    }
    assert_eq!(
        h.state(),
        GroupState::Stable,
        "b's session has not run out yet"
    );
    now += 1000;
    h.tick(now);
    assert_eq!(h.state(), GroupState::PreparingRebalance, "b timed out");
    assert_eq!(h.heartbeat(now, &b, 2), ErrorCode::UnknownMemberId);
    assert_eq!(h.heartbeat(now, &a, 2), ErrorCode::RebalanceInProgress);
    let a_join = h.join(now, Harness::join_request(&a, &["range"]));
    let answer = h.joined(a_join);
    assert_eq!(answer.generation_id, 3);
    assert_eq!(answer.members.len(), 1);
}

#[test]
fn a_rebalance_goes_ahead_without_members_that_do_not_rejoin_in_time() {
    let mut h = Harness::new();
    let (a, to) = h.new_member(0);
    h.joined(to);
    let a_sync = h.sync(0, &a, 1, vec![]);
    h.synced(a_sync);
    let (_, b_join) = h.new_member(100);
    // a never rejoins (it is stuck processing, say), though it heartbeats.
    let deadline = 100 + u64::from(REBALANCE);
    let mut now = 100;
    while now + 1000 < deadline {
        now += 1000;
        assert_eq!(h.heartbeat(now, &a, 1), ErrorCode::RebalanceInProgress);
        h.tick(now);
    }
    assert!(!h.answers.contains_key(&b_join), "still waiting for a");
    h.tick(deadline);
    let answer = h.joined(b_join);
    assert_eq!(answer.generation_id, 2);
    assert_eq!(answer.members.len(), 1, "a was dropped");
    assert_eq!(h.heartbeat(deadline, &a, 1), ErrorCode::UnknownMemberId);
}

#[test]
fn leaving_rebalances_at_once_and_the_last_to_leave_empties_the_group() {
    let mut h = Harness::new();
    let (a, to) = h.new_member(0);
    h.joined(to);
    let (b, b_join) = h.new_member(0);
    let a_join = h.join(0, Harness::join_request(&a, &["range"]));
    h.joined(a_join);
    h.joined(b_join);
    let leave = |member: &str| LeaveGroupRequest {
        group_id: "g".into(),
        member_id: member.into(),
    };
    let (error, replies) = h.coordinator.leave(1, &leave(&b));
    assert_eq!(error, ErrorCode::None);
    h.record(replies);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let (error, _) = h.coordinator.leave(2, &leave(&b));
    assert_eq!(error, ErrorCode::UnknownMemberId, "b is gone already");
    let (error, replies) = h.coordinator.leave(3, &leave(&a));
    assert_eq!(error, ErrorCode::None);
    h.record(replies);
    assert_eq!(h.state(), GroupState::Empty);
}

#[test]
fn stale_generations_and_strangers_get_kafkas_errors() {
    let mut h = Harness::new();
    let (a, to) = h.new_member(0);
    h.joined(to);
    assert_eq!(h.heartbeat(0, &a, 0), ErrorCode::IllegalGeneration);
    assert_eq!(h.heartbeat(0, "stranger", 1), ErrorCode::UnknownMemberId);
    let to = h.sync(0, &a, 7, vec![]);
    assert_eq!(h.synced(to).error, ErrorCode::IllegalGeneration);
    let to = h.sync(0, "stranger", 1, vec![]);
    assert_eq!(h.synced(to).error, ErrorCode::UnknownMemberId);
    let to = h.join(0, Harness::join_request("made-up-id", &["range"]));
    assert_eq!(h.joined(to).error, ErrorCode::UnknownMemberId);
    // Commits: only the current generation of a known member, while stable.
    assert_eq!(
        h.coordinator.check_commit(0, "g", 1, &a),
        ErrorCode::RebalanceInProgress
    );
    let to = h.sync(0, &a, 1, vec![]);
    h.synced(to);
    assert_eq!(h.coordinator.check_commit(0, "g", 1, &a), ErrorCode::None);
    assert_eq!(
        h.coordinator.check_commit(0, "g", 0, &a),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        h.coordinator.check_commit(0, "g", -1, ""),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(
        h.coordinator.check_commit(0, "solo", -1, ""),
        ErrorCode::None
    );
}

/// A commit of `group` by `member` in `generation`: topic `t` partitions
/// 0 and 5 (of which only 0 exists), and partition 1 with too much
/// metadata.
fn commit_request(group: &str, generation: i32, member: &str) -> OffsetCommitRequest {
    let position = |partition, metadata: String| CommitPartition {
        partition,
        offset: 42,
        metadata,
    };
    OffsetCommitRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        topics: vec![(
            "t".into(),
            vec![
                position(0, "ok".into()),
                position(5, String::new()),
                position(1, "x".repeat(MAX_METADATA_BYTES + 1)),
            ],
        )],
    }
}

/// Topic `t` has two partitions; nothing else exists.
fn partitions(topic: &str) -> Option<u32> {
    (topic == "t").then_some(2)
}

#[test]
fn a_commit_accepts_each_valid_partition_and_refuses_the_rest_alone() {
    let mut h = Harness::new();
    let (a, to) = h.new_member(0);
    h.joined(to);
    let to = h.sync(0, &a, 1, vec![]);
    h.synced(to);
    let decision = h
        .coordinator
        .commit(0, commit_request("g", 1, &a), partitions);
    assert_eq!(
        decision.accepted,
        vec![("t".to_string(), 0, 42, "ok".to_string())]
    );
    assert_eq!(
        decision.response.topics,
        vec![(
            "t".to_string(),
            vec![
                (0, ErrorCode::None),
                (5, ErrorCode::UnknownTopicOrPartition),
                (1, ErrorCode::OffsetMetadataTooLarge),
            ]
        )]
    );
    // Storing failed: what was accepted says so; the refusals stand.
    let mut failed = decision.clone();
    failed.storing_failed(ErrorCode::KafkaStorageError);
    assert_eq!(
        failed.response.topics[0].1,
        vec![
            (0, ErrorCode::KafkaStorageError),
            (5, ErrorCode::UnknownTopicOrPartition),
            (1, ErrorCode::OffsetMetadataTooLarge),
        ]
    );
}

#[test]
fn a_commit_the_member_may_not_make_stores_nothing() {
    let mut h = Harness::new();
    let (a, to) = h.new_member(0);
    h.joined(to);
    // Generation 1 exists but has no assignment yet: not now.
    let decision = h
        .coordinator
        .commit(0, commit_request("g", 1, &a), partitions);
    assert!(decision.accepted.is_empty());
    let codes: Vec<ErrorCode> = decision.response.topics[0]
        .1
        .iter()
        .map(|(_, e)| *e)
        .collect();
    assert_eq!(codes, vec![ErrorCode::RebalanceInProgress; 3]);
    let stranger = h
        .coordinator
        .commit(0, commit_request("g", 1, "stranger"), partitions);
    assert!(stranger.accepted.is_empty());
    assert_eq!(
        stranger.response.topics[0].1[0].1,
        ErrorCode::UnknownMemberId
    );
    let nameless = h
        .coordinator
        .commit(0, commit_request("", -1, ""), partitions);
    assert_eq!(
        nameless.response.topics[0].1[0].1,
        ErrorCode::InvalidGroupId
    );
    assert_eq!(h.coordinator.state(""), None);
}

#[test]
fn a_commit_from_outside_the_group_makes_the_group_known() {
    let mut h = Harness::new();
    assert_eq!(h.coordinator.state("solo"), None);
    let decision = h
        .coordinator
        .commit(0, commit_request("solo", -1, ""), partitions);
    assert_eq!(decision.accepted.len(), 1);
    assert_eq!(h.coordinator.state("solo"), Some(GroupState::Empty));
}

#[test]
fn bad_joins_syncs_and_heartbeats_get_defined_errors() {
    let mut h = Harness::new();
    // No protocols at all.
    let to = h.join(0, Harness::join_request("", &[]));
    assert_eq!(h.joined(to).error, ErrorCode::InconsistentGroupProtocol);
    // An empty group id.
    let mut request = Harness::join_request("", &["range"]);
    request.group_id.clear();
    let to = h.join(0, request);
    assert_eq!(h.joined(to).error, ErrorCode::InvalidGroupId);
    // A session timeout over the maximum.
    let mut request = Harness::join_request("", &["range"]);
    request.session_timeout_ms = u32::MAX;
    let to = h.join(0, request);
    assert_eq!(h.joined(to).error, ErrorCode::InvalidSessionTimeout);
    // A heartbeat for a group that does not exist.
    let request = HeartbeatRequest {
        group_id: "nope".into(),
        generation_id: 1,
        member_id: "m".into(),
    };
    assert_eq!(
        h.coordinator.heartbeat(0, &request),
        ErrorCode::UnknownMemberId
    );

    // A member whose assignors share nothing with the group's.
    let (a, to) = h.new_member(0);
    h.joined(to);
    let to = h.join(0, Harness::join_request("", &["roundrobin"]));
    assert_eq!(h.joined(to).error, ErrorCode::InconsistentGroupProtocol);

    // A follower that sends an assignment.
    let (b, b_join) = h.new_member(1);
    let a_join = h.join(1, Harness::join_request(&a, &["range"]));
    h.joined(a_join);
    h.joined(b_join);
    let to = h.sync(2, &b, 2, vec![(b.clone(), b"mine".to_vec())]);
    assert_eq!(h.synced(to).error, ErrorCode::InvalidRequest);
}

#[test]
fn the_protocol_is_the_one_most_members_prefer_among_those_all_support() {
    let mut h = Harness::new();
    let prefs: [&[&str]; 3] = [
        &["range", "sticky", "roundrobin"],
        &["sticky", "range"],
        &["sticky", "roundrobin", "range"],
    ];
    // The first member forms generation 1 alone...
    let first = h.join(0, Harness::join_request("", prefs[0]));
    let m0 = h.joined(first).member_id;
    let to = h.join(0, Harness::join_request(&m0, prefs[0]));
    assert_eq!(h.joined(to).protocol_name, "range");
    // ...then two more join, and it rejoins: generation 2 has all three.
    let mut tokens = Vec::new();
    for p in &prefs[1..] {
        let first = h.join(1, Harness::join_request("", p));
        let id = h.joined(first).member_id;
        tokens.push(h.join(1, Harness::join_request(&id, p)));
    }
    tokens.push(h.join(2, Harness::join_request(&m0, prefs[0])));
    // Supported by all: range and sticky. Votes: range 1, sticky 2.
    for to in tokens {
        let answer = h.joined(to);
        assert_eq!(answer.generation_id, 2);
        assert_eq!(answer.protocol_name, "sticky");
    }
}

#[test]
fn a_group_whose_coordinator_moved_is_forgotten_and_its_held_calls_answered() {
    let mut h = Harness::new();
    let (a, a_join) = h.new_member(0);
    let formed = h.joined(a_join);
    assert_eq!(formed.error, ErrorCode::None);
    // A second member's join holds the group in a rebalance, waiting for
    // the first to join again.
    let (_, b_join) = h.new_member(10);
    assert!(!h.answers.contains_key(&b_join));
    // Another broker leads the group's offsets partition now: every held
    // call of the group is told so, and the group is gone from here.
    let replies = h.coordinator.unload(|group| group == "g");
    h.record(replies);
    assert_eq!(h.joined(b_join).error, ErrorCode::NotCoordinator);
    assert_eq!(h.coordinator.state("g"), None);
    assert!(h.coordinator.list().is_empty());
    // Another group stays.
    h.coordinator.ensure_group("other");
    let replies = h.coordinator.unload(|group| group == "g");
    assert!(replies.is_empty());
    assert_eq!(h.coordinator.state("other"), Some(GroupState::Empty));

    // Member ids of two coordinators never collide, though each counts
    // from 1: a member of the old one is a stranger to the new one.
    let mut other = Harness::new();
    let (b, _) = other.new_member(0);
    assert_ne!(a, b);
}
