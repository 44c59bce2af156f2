//! The group member's state machine, driven by hand: the test plays both
//! the coordinator (answering the requests the member asks to send) and the
//! application (calling `poll` and doing what it says), with no network and
//! no sleeping. Time is a number of milliseconds the test chooses.

use std::sync::Arc;
use std::time::Duration;

use ch03_partitions::TopicPartition;
use ch04_network::{ClientError, ErrorCode};
use ch05_consumer_groups::assignor::{Assignor, CooperativeStickyAssignor, RangeAssignor};
use ch05_consumer_groups::member::{
    Action, Member, MemberConfig, MemberState, Next, Request, Response,
};
use ch05_consumer_groups::protocol::{
    Assignment, JoinGroupRequest, JoinGroupResponse, Subscription, SyncGroupResponse,
    decode_metadata, encode_metadata,
};

const HEARTBEAT: u64 = 100;
const MAX_POLL: u64 = 1_000;

fn member(assignor: Arc<dyn Assignor>) -> Member {
    let config = MemberConfig {
        group_id: "g".into(),
        client_id: "c".into(),
        session_timeout: Duration::from_millis(500),
        heartbeat_interval: Duration::from_millis(HEARTBEAT),
        max_poll_interval: Duration::from_millis(MAX_POLL),
        assignors: vec![assignor],
    };
    let mut member = Member::new(config, 0);
    member.subscribe(vec!["t".into()]);
    member
}

fn eager() -> Member {
    member(Arc::new(RangeAssignor))
}

fn cooperative() -> Member {
    member(Arc::new(CooperativeStickyAssignor))
}

fn tps(partitions: &[u32]) -> Vec<TopicPartition> {
    partitions
        .iter()
        .map(|&p| TopicPartition::new("t", p))
        .collect()
}

/// The request the member sends next, at `now`.
fn send(member: &mut Member, now: u64) -> Request {
    match member.next_request(now) {
        Next::Send(request) => request,
        other => panic!("expected a request at {now}, got {other:?}"),
    }
}

fn join(member: &mut Member, now: u64) -> JoinGroupRequest {
    match send(member, now) {
        Request::Join(request) => request,
        other => panic!("expected a JoinGroup, got {other:?}"),
    }
}

fn subscription(request: &JoinGroupRequest) -> Subscription {
    decode_metadata(&request.protocols[0].1).unwrap()
}

fn joined(generation: i32, member_id: &str, leader: &str) -> JoinGroupResponse {
    JoinGroupResponse {
        error: ErrorCode::None,
        generation_id: generation,
        protocol_name: "range".into(),
        leader: leader.into(),
        member_id: member_id.into(),
        members: Vec::new(),
    }
}

fn join_error(error: ErrorCode, member_id: &str) -> Response {
    Response::Joined(Ok(JoinGroupResponse {
        error,
        generation_id: -1,
        protocol_name: String::new(),
        leader: String::new(),
        member_id: member_id.into(),
        members: Vec::new(),
    }))
}

fn synced(partitions: &[u32]) -> Response {
    let assignment = Assignment {
        partitions: vec![("t".into(), partitions.to_vec())],
    };
    Response::Synced(Ok(SyncGroupResponse {
        error: ErrorCode::None,
        assignment: encode_metadata(&assignment),
    }))
}

/// Takes a follower through JoinGroup and SyncGroup into `generation`
/// with `partitions`, at time `now`; returns what the next `poll` says.
fn follow(member: &mut Member, now: u64, generation: i32, partitions: &[u32]) -> Vec<Action> {
    join(member, now);
    member.on_response(
        now,
        Response::Joined(Ok(joined(generation, "c-1", "leader"))),
    );
    assert_eq!(member.state(), MemberState::AwaitingSync { generation });
    let Request::Sync(sync) = send(member, now) else {
        panic!("expected a SyncGroup");
    };
    assert_eq!(
        (sync.generation_id, sync.assignments.len()),
        (generation, 0)
    );
    member.on_response(now, synced(partitions));
    assert_eq!(member.state(), MemberState::Stable);
    member.poll(now)
}

/// A member in generation 1 with `partitions`, at time 0.
fn stable(mut member: Member, partitions: &[u32]) -> Member {
    member.poll(0);
    member.rejoin();
    let actions = follow(&mut member, 0, 1, partitions);
    assert!(
        matches!(&actions[..], [Action::Assign { .. }]),
        "{actions:?}"
    );
    member
}

/// The heartbeat due at `now` is answered with `error`.
fn heartbeat(member: &mut Member, now: u64, error: ErrorCode) {
    let Request::Heartbeat(request) = send(member, now) else {
        panic!("expected a heartbeat at {now}");
    };
    assert_eq!(request.member_id, "c-1");
    member.on_response(now, Response::Heartbeat(Ok(error)));
}

#[test]
fn a_new_member_gets_an_id_joins_leads_assigns_and_syncs() {
    let mut m = eager();
    // The first poll rejoins, and waits: nothing to read yet.
    let actions = m.poll(0);
    assert!(
        matches!(&actions[..], [Action::Rejoin, Action::AwaitRebalance]),
        "{actions:?}"
    );
    // Until the application has done that, nothing goes out.
    assert_eq!(m.next_request(0), Next::Wait(None));
    m.rejoin();

    let first = join(&mut m, 0);
    assert_eq!(first.member_id, "");
    assert_eq!(first.protocols[0].0, "range");
    assert_eq!(subscription(&first).topics, vec!["t".to_string()]);
    // One request at a time.
    assert_eq!(m.next_request(0), Next::Wait(None));
    m.on_response(0, join_error(ErrorCode::MemberIdRequired, "c-1"));
    assert_eq!(join(&mut m, 0).member_id, "c-1");

    // The leader gets every member's subscription.
    let mut answer = joined(1, "c-1", "c-1");
    let other = Subscription {
        topics: vec!["t".into()],
        owned: vec![],
    };
    answer.members = vec![
        ("c-1".into(), encode_metadata(&other)),
        ("c-2".into(), encode_metadata(&other)),
    ];
    m.on_response(1, Response::Joined(Ok(answer)));
    assert_eq!(m.state(), MemberState::Assigning { generation: 1 });
    assert!(matches!(&m.poll(1)[..], [Action::AwaitRebalance]));
    assert_eq!(send(&mut m, 1), Request::Metadata(vec!["t".into()]));
    m.on_response(1, Response::Metadata(vec![("t".into(), Ok(4))]));

    // Its SyncGroup carries the range assignor's plan.
    let Request::Sync(sync) = send(&mut m, 1) else {
        panic!("expected a SyncGroup");
    };
    assert_eq!((sync.generation_id, sync.member_id.as_str()), (1, "c-1"));
    let plan: Vec<(String, Vec<TopicPartition>)> = sync
        .assignments
        .iter()
        .map(|(id, bytes)| {
            (
                id.clone(),
                decode_metadata::<Assignment>(bytes).unwrap().flatten(),
            )
        })
        .collect();
    assert_eq!(
        plan,
        vec![("c-1".into(), tps(&[0, 1])), ("c-2".into(), tps(&[2, 3]))]
    );
    m.on_response(2, synced(&[0, 1]));
    assert_eq!(m.state(), MemberState::Stable);
    assert_eq!(m.generation(), Some(("c-1".into(), 1)));
    let actions = m.poll(2);
    let [Action::Assign { assigned, added }] = &actions[..] else {
        panic!("expected an assignment: {actions:?}");
    };
    assert_eq!((assigned, added), (&tps(&[0, 1]), &tps(&[0, 1])));
    // Stable: the next poll has nothing to do.
    assert!(m.poll(3).is_empty());
}

#[test]
fn heartbeats_fall_due_every_interval_and_a_rebalance_makes_an_eager_member_give_up_all() {
    let mut m = stable(eager(), &[0, 1]);
    assert_eq!(m.next_request(0), Next::Wait(Some(HEARTBEAT)));
    let Request::Heartbeat(beat) = send(&mut m, HEARTBEAT) else {
        panic!("expected a heartbeat");
    };
    assert_eq!((beat.generation_id, beat.member_id.as_str()), (1, "c-1"));
    m.on_response(HEARTBEAT, Response::Heartbeat(Ok(ErrorCode::None)));
    assert_eq!(m.next_request(150), Next::Wait(Some(2 * HEARTBEAT)));
    // A lost heartbeat is not fatal.
    send(&mut m, 2 * HEARTBEAT);
    m.on_response(
        2 * HEARTBEAT,
        Response::Heartbeat(Err(ClientError::Timeout(5))),
    );
    assert_eq!(m.state(), MemberState::Stable);
    m.poll(250);

    heartbeat(&mut m, 3 * HEARTBEAT, ErrorCode::RebalanceInProgress);
    // The member rejoins at its next poll, not before: that poll commits
    // and revokes everything first.
    assert_eq!(m.state(), MemberState::Stable);
    let actions = m.poll(310);
    let [
        Action::Revoke {
            partitions,
            commit: true,
        },
        Action::Rejoin,
        Action::AwaitRebalance,
    ] = &actions[..]
    else {
        panic!("expected an eager revocation: {actions:?}");
    };
    assert_eq!(partitions, &tps(&[0, 1]));
    m.rejoin();
    // Commits still carry the ending generation meanwhile.
    assert_eq!(
        m.commit_request(&[(tps(&[0])[0].clone(), 7)]).generation_id,
        1
    );
    // For an eager sticky assignor, what it owned is a hint.
    assert_eq!(subscription(&join(&mut m, 310)).owned, tps(&[0, 1]));
    m.on_response(310, Response::Joined(Ok(joined(2, "c-1", "leader"))));
    let Request::Sync(_) = send(&mut m, 310) else {
        panic!("expected a SyncGroup");
    };
    m.on_response(320, synced(&[1, 2]));
    let actions = m.poll(320);
    let [Action::Assign { assigned, added }] = &actions[..] else {
        panic!("expected an assignment: {actions:?}");
    };
    assert_eq!((assigned, added), (&tps(&[1, 2]), &tps(&[1, 2])));
    assert_eq!(m.generation(), Some(("c-1".into(), 2)));
}

#[test]
fn a_cooperative_member_reads_through_a_rebalance_and_revokes_only_what_moves() {
    let mut m = stable(cooperative(), &[0, 1, 2]);
    heartbeat(&mut m, HEARTBEAT, ErrorCode::RebalanceInProgress);
    // It keeps everything, and does not wait.
    let actions = m.poll(110);
    assert!(matches!(&actions[..], [Action::Rejoin]), "{actions:?}");
    m.rejoin();
    let request = join(&mut m, 110);
    assert_eq!(request.protocols[0].0, "cooperative-sticky");
    assert_eq!(subscription(&request).owned, tps(&[0, 1, 2]));
    m.on_response(120, Response::Joined(Ok(joined(2, "c-1", "leader"))));
    // Mid-rebalance, poll goes on reading.
    assert!(m.poll(130).is_empty());
    let Request::Sync(_) = send(&mut m, 130) else {
        panic!("expected a SyncGroup");
    };
    // The leader withheld partition 2, which moves to someone else.
    m.on_response(140, synced(&[0, 1]));
    let actions = m.poll(150);
    let [
        Action::Revoke {
            partitions,
            commit: true,
        },
        Action::Assign { assigned, added },
        Action::Rejoin,
    ] = &actions[..]
    else {
        panic!("expected a revocation of what moved, then a rejoin: {actions:?}");
    };
    assert_eq!(partitions, &tps(&[2]));
    assert_eq!((assigned, added.len()), (&tps(&[0, 1]), 0));
    m.rejoin();
    // The second round claims only what it still owns.
    assert_eq!(subscription(&join(&mut m, 150)).owned, tps(&[0, 1]));
}

#[test]
fn a_dropped_cooperative_member_loses_its_partitions_and_claims_nothing() {
    let mut m = stable(cooperative(), &[0, 1]);
    // Its session timed out: the coordinator no longer knows it.
    heartbeat(&mut m, HEARTBEAT, ErrorCode::UnknownMemberId);
    assert_eq!(m.state(), MemberState::Unjoined);
    assert_eq!(m.generation(), None);
    let actions = m.poll(110);
    let [
        Action::Revoke {
            partitions,
            commit: false,
        },
        Action::Rejoin,
        Action::AwaitRebalance,
    ] = &actions[..]
    else {
        panic!("expected its partitions lost, uncommitted: {actions:?}");
    };
    assert_eq!(partitions, &tps(&[0, 1]));
    m.rejoin();
    let request = join(&mut m, 110);
    assert_eq!(request.member_id, "", "a new member, with a new id");
    assert!(subscription(&request).owned.is_empty());
}

#[test]
fn a_member_that_stops_polling_leaves_and_rejoins_at_its_next_poll() {
    let mut m = stable(cooperative(), &[0, 1]);
    heartbeat(&mut m, HEARTBEAT, ErrorCode::None);
    // Heartbeats go on while the application is busy, up to the limit.
    assert_eq!(
        m.next_request(HEARTBEAT + 1),
        Next::Wait(Some(2 * HEARTBEAT))
    );
    let mut now = 2 * HEARTBEAT;
    while now <= MAX_POLL {
        heartbeat(&mut m, now, ErrorCode::None);
        now += HEARTBEAT;
    }
    assert_eq!(m.next_request(MAX_POLL), Next::Wait(Some(MAX_POLL + 1)));
    let Request::Leave(leave) = send(&mut m, MAX_POLL + 1) else {
        panic!("expected a LeaveGroup once stuck");
    };
    assert_eq!(leave.member_id, "c-1");
    assert_eq!(m.state(), MemberState::Unjoined);
    m.on_response(MAX_POLL + 1, Response::Left);
    assert_eq!(m.next_request(5_000), Next::Wait(None));
    let actions = m.poll(5_000);
    assert!(
        matches!(
            &actions[..],
            [
                Action::Revoke { commit: false, .. },
                Action::Rejoin,
                Action::AwaitRebalance
            ]
        ),
        "{actions:?}"
    );
}

#[test]
fn a_failed_rebalance_is_surfaced_once_and_retried_at_the_next_poll() {
    let mut m = eager();
    m.poll(0);
    m.rejoin();
    join(&mut m, 0);
    // The leader cannot decode a member's subscription.
    let mut answer = joined(1, "c-1", "c-1");
    answer.members = vec![("c-9".into(), b"junk".to_vec())];
    m.on_response(0, Response::Joined(Ok(answer)));
    assert_eq!(m.state(), MemberState::Unjoined);
    let actions = m.poll(10);
    assert!(
        matches!(&actions[..], [Action::Fail(ClientError::Protocol(_))]),
        "{actions:?}"
    );
    let actions = m.poll(20);
    assert!(
        matches!(&actions[..], [Action::Rejoin, Action::AwaitRebalance]),
        "{actions:?}"
    );
    m.rejoin();
    assert_eq!(join(&mut m, 20).member_id, "c-1");
    // A connection that breaks is a failure too.
    m.on_response(20, Response::Joined(Err(ClientError::Closed)));
    assert!(matches!(
        &m.poll(30)[..],
        [Action::Fail(ClientError::Closed)]
    ));
}

#[test]
fn a_sync_the_group_moved_past_joins_again() {
    let mut m = eager();
    m.poll(0);
    m.rejoin();
    join(&mut m, 0);
    m.on_response(0, Response::Joined(Ok(joined(1, "c-1", "leader"))));
    send(&mut m, 0);
    m.on_response(
        0,
        Response::Synced(Ok(SyncGroupResponse {
            error: ErrorCode::RebalanceInProgress,
            assignment: Vec::new(),
        })),
    );
    assert_eq!(m.state(), MemberState::Joining);
    assert_eq!(join(&mut m, 0).member_id, "c-1");
    // A rebalance this member is joining anyway: no second one queued.
    m.on_response(0, join_error(ErrorCode::RebalanceInProgress, "c-1"));
    let actions = follow(&mut m, 0, 2, &[0]);
    assert!(
        matches!(&actions[..], [Action::Assign { .. }]),
        "{actions:?}"
    );
}

#[test]
fn closing_leaves_with_the_members_id_and_commits_carry_the_generation() {
    let mut fresh = eager();
    assert_eq!(fresh.commit_request(&[]).generation_id, -1);
    assert_eq!(fresh.close(), None, "never joined: nothing to leave");

    let mut m = stable(eager(), &[0, 1]);
    let commit = m.commit_request(&[
        (TopicPartition::new("u", 3), 9),
        (TopicPartition::new("t", 1), 5),
        (TopicPartition::new("t", 0), 4),
    ]);
    assert_eq!(
        (commit.generation_id, commit.member_id.as_str()),
        (1, "c-1")
    );
    let topics: Vec<(&str, Vec<(u32, u64)>)> = commit
        .topics
        .iter()
        .map(|(t, ps)| {
            (
                t.as_str(),
                ps.iter().map(|p| (p.partition, p.offset)).collect(),
            )
        })
        .collect();
    assert_eq!(
        topics,
        vec![("t", vec![(1, 5), (0, 4)]), ("u", vec![(3, 9)])]
    );

    let leave = m.close().expect("a LeaveGroup");
    assert_eq!(
        (leave.group_id.as_str(), leave.member_id.as_str()),
        ("g", "c-1")
    );
    assert_eq!(m.state(), MemberState::Left);
    assert_eq!(m.next_request(10_000), Next::Wait(None));
}

#[test]
fn a_coordinator_that_moved_is_found_again_not_a_failed_rebalance() {
    let mut m = eager();
    m.poll(0);
    m.rejoin();
    // A join that meets no coordinator, or one that no longer coordinates
    // the group, is sent again: nothing for `poll` to surface.
    join(&mut m, 0);
    m.on_response(0, join_error(ErrorCode::NotCoordinator, ""));
    assert_eq!(m.state(), MemberState::Joining);
    join(&mut m, 0);
    let refused = ClientError::Io {
        addr: "127.0.0.1:9092".into(),
        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    };
    m.on_response(0, Response::Joined(Err(refused)));
    assert_eq!(m.state(), MemberState::Joining);
    join(&mut m, 0);
    m.on_response(0, join_error(ErrorCode::CoordinatorNotAvailable, ""));
    assert!(
        matches!(&m.poll(10)[..], [Action::AwaitRebalance]),
        "no failure, still waiting"
    );
    // A sync that meets a moved coordinator joins again there.
    join(&mut m, 10);
    m.on_response(10, Response::Joined(Ok(joined(1, "c-1", "leader"))));
    send(&mut m, 10);
    m.on_response(
        10,
        Response::Synced(Ok(SyncGroupResponse {
            error: ErrorCode::NotCoordinator,
            assignment: Vec::new(),
        })),
    );
    assert_eq!(m.state(), MemberState::Joining);
    let actions = follow(&mut m, 20, 2, &[0]);
    assert!(
        matches!(&actions[..], [Action::Assign { .. }]),
        "{actions:?}"
    );
    // A heartbeat that meets one changes nothing: the next one goes to the
    // coordinator found next, which tells the member whether it knows it.
    heartbeat(&mut m, 20 + HEARTBEAT, ErrorCode::NotCoordinator);
    assert_eq!(m.state(), MemberState::Stable);
    assert!(m.poll(20 + HEARTBEAT).is_empty());
    heartbeat(&mut m, 20 + 2 * HEARTBEAT, ErrorCode::UnknownMemberId);
    assert_eq!(m.generation(), None);
}
