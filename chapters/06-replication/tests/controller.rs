//! The controller's spec: where a topic's replicas go, when a broker is
//! fenced, who leads next (the ISR first, then the eligible leader
//! replicas of KIP-966, then the longest log among the last known eligible
//! ones once they are all back, then, only if allowed, anyone), and which
//! ISR changes a leader may make with AlterPartition.
//!
//! Every test drives a [`SimpleController`] by hand: heartbeats, ticks and
//! requests in, the partition's state out. Brokers A, B and C register at
//! time 0 with incarnation 1.

mod common;

use ch04_network::error::ErrorCode;
use ch06_replication::controller::{Controller, ControllerConfig, SimpleController};
use ch06_replication::epoch::EpochEnd;
use ch06_replication::protocol::{
    AlterPartitionRequest, BrokerId, HeartbeatRequest, HeartbeatResponse, PartitionState,
};
use ch06_replication::replica::Millis;
use common::{A, B, C, tp};

/// A controller with A, B and C registered, and topic `t` of one partition
/// with `replication_factor` replicas (A leads, epoch 0).
fn controller(config: ControllerConfig, replication_factor: u32) -> SimpleController {
    let mut controller = SimpleController::new(config);
    for id in [A, B, C] {
        heartbeat(&mut controller, id, 1, 0);
    }
    controller.create_topic("t", 1, replication_factor).unwrap();
    controller
}

/// A controller that needs two in-sync replicas, over `replication_factor`.
fn min_isr_2(replication_factor: u32) -> SimpleController {
    controller(
        ControllerConfig {
            min_insync_replicas: 2,
            ..ControllerConfig::default()
        },
        replication_factor,
    )
}

/// A heartbeat from run `incarnation` of `broker`, with no log ends.
fn heartbeat(
    controller: &mut SimpleController,
    broker: BrokerId,
    incarnation: u64,
    now: Millis,
) -> HeartbeatResponse {
    controller.on_heartbeat(
        &HeartbeatRequest {
            broker_id: broker,
            incarnation,
            address: String::new(),
            log_ends: Vec::new(),
        },
        now,
    )
}

/// A heartbeat from run 2 of `broker` (a restart, the first time) whose
/// log of the partition ends at `end_offset` in `epoch`.
fn run_2(controller: &mut SimpleController, broker: BrokerId, epoch: u32, end_offset: u64) {
    controller.on_heartbeat(
        &HeartbeatRequest {
            broker_id: broker,
            incarnation: 2,
            address: String::new(),
            log_ends: vec![(tp(), EpochEnd { epoch, end_offset })],
        },
        0,
    );
}

/// The partition's state now.
fn partition(controller: &SimpleController) -> PartitionState {
    controller.partitions()[&tp()].clone()
}

/// `broker`'s request, as the partition's leader now, for `new_isr`.
fn alter(
    controller: &SimpleController,
    broker: BrokerId,
    new_isr: &[BrokerId],
) -> AlterPartitionRequest {
    let state = partition(controller);
    AlterPartitionRequest {
        broker_id: broker,
        tp: tp(),
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: new_isr.to_vec(),
    }
}

#[test]
fn creating_a_topic_spreads_replicas_and_leaders_over_the_live_brokers() {
    let mut controller = SimpleController::new(ControllerConfig::default());
    for id in [A, B, C] {
        heartbeat(&mut controller, id, 1, 0);
    }
    controller.create_topic("t", 3, 2).unwrap();

    let layout: Vec<String> = controller
        .partitions()
        .iter()
        .map(|(tp, s)| {
            format!(
                "{}: {:?} of {:?}, isr {:?}",
                tp.partition, s.leader, s.replicas, s.isr
            )
        })
        .collect();
    assert_eq!(
        layout,
        [
            "0: Some(1) of [1, 2], isr [1, 2]",
            "1: Some(2) of [2, 3], isr [2, 3]",
            "2: Some(3) of [3, 1], isr [3, 1]",
        ]
    );
    for state in controller.partitions().values() {
        assert_eq!((state.leader_epoch, state.partition_epoch), (0, 0));
        assert!(state.elr.is_empty() && state.last_known_elr.is_empty());
    }
    // Each broker hears of exactly the partitions it holds a replica of.
    let held: Vec<u32> = heartbeat(&mut controller, B, 1, 0)
        .partitions
        .iter()
        .map(|(tp, _)| tp.partition)
        .collect();
    assert_eq!(held, [0, 1]);
}

#[test]
fn a_topic_needs_a_new_name_and_enough_live_brokers() {
    let mut controller = controller(ControllerConfig::default(), 3);
    assert_eq!(
        controller.create_topic("t", 1, 1),
        Err(ErrorCode::TopicAlreadyExists)
    );
    assert_eq!(
        controller.create_topic("u", 1, 4),
        Err(ErrorCode::InvalidReplicationFactor)
    );
    assert_eq!(
        controller.create_topic("u", 1, 0),
        Err(ErrorCode::InvalidReplicationFactor)
    );
    assert_eq!(
        controller.create_topic("u", 0, 1),
        Err(ErrorCode::InvalidPartitions)
    );
    controller.fence(C);
    assert_eq!(
        controller.create_topic("u", 1, 3),
        Err(ErrorCode::InvalidReplicationFactor),
        "only two brokers are alive"
    );
    controller.create_topic("u", 2, 2).unwrap();
    for (tp, state) in controller.partitions() {
        if tp.topic == "u" {
            assert!(
                !state.replicas.contains(&C),
                "{tp}: a fenced broker gets no replica"
            );
        }
    }
}

#[test]
fn a_broker_silent_past_the_session_timeout_is_fenced_and_its_partitions_get_a_leader_from_the_isr()
{
    let mut controller = controller(ControllerConfig::default(), 3);
    let before = partition(&controller);
    heartbeat(&mut controller, B, 1, 5_000);
    heartbeat(&mut controller, C, 1, 5_000);

    controller.tick(9_000);
    assert!(
        controller.is_alive(A),
        "exactly the session timeout is not past it"
    );
    assert_eq!(partition(&controller), before);

    controller.tick(9_001);
    assert!(!controller.is_alive(A));
    let after = partition(&controller);
    assert_eq!(
        after.leader,
        Some(B),
        "the first live ISR member in preference order"
    );
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(after.partition_epoch > before.partition_epoch);
    assert_eq!(after.isr, [B, C]);
    let live: Vec<BrokerId> = heartbeat(&mut controller, B, 1, 9_001)
        .brokers
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(live, [B, C], "a fenced broker is not offered to clients");
}

#[test]
fn a_fenced_follower_leaves_the_isr_and_the_leader_keeps_its_epoch() {
    let mut controller = controller(ControllerConfig::default(), 3);
    let before = partition(&controller);
    controller.fence(C);
    let after = partition(&controller);
    assert_eq!(after.leader, Some(A));
    assert_eq!(after.leader_epoch, before.leader_epoch);
    assert!(after.partition_epoch > before.partition_epoch);
    assert_eq!(after.isr, [A, B]);
    assert!(
        after.elr.is_empty(),
        "the ISR still has min.insync.replicas"
    );
}

#[test]
fn a_replica_leaving_an_isr_below_min_insync_replicas_stays_eligible_until_back_in_sync() {
    let mut controller = min_isr_2(3);
    controller.fence(C);
    assert_eq!(partition(&controller).isr, [A, B]);
    assert!(
        partition(&controller).elr.is_empty(),
        "two in sync is min.insync.replicas: C may lack acknowledged writes"
    );
    controller.fence(B);
    let state = partition(&controller);
    assert_eq!(state.isr, [A]);
    assert_eq!(
        state.elr,
        [B],
        "B has every write acknowledged with two in sync"
    );

    // B comes back (the same run: it lost nothing) and catches up.
    heartbeat(&mut controller, B, 1, 0);
    let response = controller.on_alter_partition(&alter(&controller, A, &[A, B]));
    assert_eq!(response.error, ErrorCode::None);
    let state = partition(&controller);
    assert_eq!(state.isr, [A, B]);
    assert!(
        state.elr.is_empty(),
        "an ISR at the minimum needs no eligible replicas"
    );
}

#[test]
fn with_no_live_isr_member_an_eligible_replica_leads() {
    let mut controller = min_isr_2(3);
    // The leader shrinks the ISR to itself: B and C stay eligible.
    let response = controller.on_alter_partition(&alter(&controller, A, &[A]));
    assert_eq!(response.error, ErrorCode::None);
    assert_eq!(partition(&controller).elr, [B, C]);

    controller.fence(A);
    let state = partition(&controller);
    assert_eq!(state.leader, Some(B), "the first live eligible replica");
    assert_eq!(state.leader_epoch, 1);
    assert_eq!(state.isr, [B], "the new leader starts the ISR again");
    assert!(!state.elr.contains(&B));
    assert!(
        state.elr.contains(&C),
        "C still holds every acknowledged write"
    );
}

#[test]
fn a_fenced_eligible_replica_that_returns_without_a_restart_leads() {
    let mut controller = min_isr_2(2);
    controller.fence(B);
    controller.fence(A);
    let state = partition(&controller);
    assert_eq!(state.leader, None, "A and B are both away");
    assert_eq!(state.elr, [B, A]);

    heartbeat(&mut controller, B, 1, 0);
    let state = partition(&controller);
    assert_eq!(state.leader, Some(B));
    assert_eq!(state.isr, [B]);
    assert_eq!(state.elr, [A]);
}

#[test]
fn a_restarted_eligible_replica_becomes_last_known_and_leads_only_with_the_others_back() {
    let mut controller = min_isr_2(2);
    controller.fence(B);
    controller.fence(A);
    assert_eq!(partition(&controller).elr, [B, A]);

    // A restarted: it may have lost its unsynced tail, so it is no longer
    // trusted alone. B, still eligible, may come back with more.
    run_2(&mut controller, A, 0, 7);
    let state = partition(&controller);
    assert_eq!(
        (state.elr.clone(), state.last_known_elr.clone()),
        (vec![B], vec![A])
    );
    assert_eq!(state.leader, None);

    // B restarted too, and kept more than A: the longest log leads.
    run_2(&mut controller, B, 0, 9);
    let state = partition(&controller);
    assert_eq!(state.leader, Some(B), "B's log ends at 9, A's at 7");
    assert_eq!(state.isr, [B]);
    assert!(state.elr.is_empty() && state.last_known_elr.is_empty());
}

/// Which of A and B leads after both restarted with their logs ending at
/// `a` and `b` (epoch, end offset).
fn recovered_leader(a: (u32, u64), b: (u32, u64)) -> Option<BrokerId> {
    let mut controller = min_isr_2(2);
    controller.fence(B);
    controller.fence(A);
    run_2(&mut controller, A, a.0, a.1);
    run_2(&mut controller, B, b.0, b.1);
    partition(&controller).leader
}

#[test]
fn among_last_known_eligible_replicas_the_latest_epoch_wins_before_the_longest_log() {
    assert_eq!(recovered_leader((0, 7), (0, 9)), Some(B));
    assert_eq!(recovered_leader((0, 9), (0, 7)), Some(A));
    assert_eq!(
        recovered_leader((2, 3), (1, 9)),
        Some(A),
        "epoch 2's records came after all of epoch 1's"
    );
}

#[test]
fn the_controller_waits_for_every_last_known_eligible_replica() {
    let mut controller = controller(
        ControllerConfig {
            min_insync_replicas: 3,
            ..ControllerConfig::default()
        },
        3,
    );
    for id in [C, B, A] {
        controller.fence(id);
    }
    assert_eq!(partition(&controller).elr, [C, B, A]);
    run_2(&mut controller, A, 0, 9);
    run_2(&mut controller, B, 0, 4);
    controller.fence(A); // A goes away again.
    run_2(&mut controller, C, 0, 5);
    let state = partition(&controller);
    assert!(state.elr.is_empty());
    assert_eq!(state.last_known_elr, [A, B, C]);
    assert_eq!(
        state.leader, None,
        "A is away, and A may have kept the most: neither B nor C may lead"
    );

    run_2(&mut controller, A, 0, 9); // The same run as before: no restart.
    assert_eq!(
        partition(&controller).leader,
        Some(A),
        "A's log is the longest"
    );
}

/// The lab's seed 82459: C was fenced while the ISR kept two members, so
/// it did not stay eligible; then A and B both crashed and lost their
/// unsynced tails. C, alive and never crashed, holds the most: once the
/// last known eligible replicas are back, it is a candidate too.
#[test]
fn recovery_considers_every_live_replica_not_only_the_last_known_eligible_ones() {
    let mut controller = min_isr_2(3);
    controller.fence(C);
    assert_eq!(partition(&controller).isr, [A, B]);
    assert!(
        partition(&controller).elr.is_empty(),
        "two are still in sync"
    );
    controller.fence(B);
    controller.fence(A);
    assert_eq!(partition(&controller).elr, [B, A]);
    // C is back, with every record; A and B come back from crashes.
    controller.on_heartbeat(
        &HeartbeatRequest {
            broker_id: C,
            incarnation: 1,
            address: String::new(),
            log_ends: vec![(
                tp(),
                EpochEnd {
                    epoch: 0,
                    end_offset: 49,
                },
            )],
        },
        0,
    );
    run_2(&mut controller, A, 0, 42);
    assert_eq!(partition(&controller).leader, None, "B may have kept more");
    run_2(&mut controller, B, 0, 45);
    assert_eq!(
        partition(&controller).leader,
        Some(C),
        "C's log ends at 49, A's at 42, B's at 45"
    );
}

#[test]
fn a_broker_restarted_within_its_session_loses_its_leadership() {
    let mut controller = controller(ControllerConfig::default(), 3);
    heartbeat(&mut controller, A, 2, 1_000);
    let state = partition(&controller);
    assert!(controller.is_alive(A), "registered again");
    assert_eq!(state.leader, Some(B));
    assert_eq!(state.leader_epoch, 1);
    assert_eq!(state.isr, [B, C], "A may have lost unsynced records");
}

#[test]
fn with_nothing_eligible_alive_the_partition_is_offline_until_its_last_in_sync_replica_returns() {
    let mut controller = controller(ControllerConfig::default(), 2);
    controller.fence(B);
    controller.fence(A);
    let offline = partition(&controller);
    assert_eq!(offline.leader, None);
    assert_eq!(
        offline.leader_epoch, 1,
        "losing the leader is a change of leader"
    );

    // B fell out of the ISR before A went: it may lack acknowledged writes.
    let response = heartbeat(&mut controller, B, 1, 0);
    assert_eq!(partition(&controller).leader, None);
    assert_eq!(
        response.partitions[0].1.leader, None,
        "B hears the partition is offline"
    );

    heartbeat(&mut controller, A, 1, 0);
    let state = partition(&controller);
    assert_eq!(state.leader, Some(A));
    assert_eq!(state.leader_epoch, 2);
    assert_eq!(state.isr, [A]);
}

#[test]
fn unclean_election_elects_an_out_of_sync_replica_only_when_enabled() {
    for unclean_leader_election in [false, true] {
        let mut controller = controller(
            ControllerConfig {
                unclean_leader_election,
                ..ControllerConfig::default()
            },
            2,
        );
        controller.fence(B);
        controller.fence(A);
        heartbeat(&mut controller, B, 1, 0);
        let state = partition(&controller);
        if unclean_leader_election {
            assert_eq!(state.leader, Some(B));
            assert_eq!(state.isr, [B], "B's log is the truth now");
            assert!(
                state.elr.is_empty() && state.last_known_elr.is_empty(),
                "no replica is eligible for having writes B lacks: {state:?}"
            );
        } else {
            assert_eq!(state.leader, None);
        }
    }
}

#[test]
fn alter_partition_refuses_a_stale_leader_epoch() {
    let mut controller = controller(ControllerConfig::default(), 3);
    let stale = alter(&controller, A, &[A, B]);
    controller.fence(A);
    let response = controller.on_alter_partition(&stale);
    assert_eq!(response.error, ErrorCode::FencedLeaderEpoch);
    assert_eq!(
        response.state,
        Some(partition(&controller)),
        "with the state now"
    );
    // Nor may a follower act as the leader in the current epoch.
    let response = controller.on_alter_partition(&alter(&controller, C, &[B, C]));
    assert_eq!(response.error, ErrorCode::FencedLeaderEpoch);
    assert_eq!(partition(&controller).isr, [B, C]);

    // A comes back, rejoins the ISR, and leads again in epoch 2: its
    // request from epoch 0 is still stale.
    heartbeat(&mut controller, A, 1, 0);
    let response = controller.on_alter_partition(&alter(&controller, B, &[B, C, A]));
    assert_eq!(response.error, ErrorCode::None);
    controller.fence(B);
    assert_eq!(
        (
            partition(&controller).leader,
            partition(&controller).leader_epoch
        ),
        (Some(A), 2)
    );
    let response = controller.on_alter_partition(&stale);
    assert_eq!(response.error, ErrorCode::FencedLeaderEpoch);
}

#[test]
fn alter_partition_refuses_a_change_built_on_a_stale_partition_epoch() {
    let mut controller = controller(ControllerConfig::default(), 3);
    let stale = alter(&controller, A, &[A, B]);
    controller.fence(C); // The ISR changed since: the partition epoch moved.
    let before = partition(&controller);
    let response = controller.on_alter_partition(&stale);
    assert_eq!(response.error, ErrorCode::InvalidUpdateVersion);
    assert_eq!(response.state, Some(before.clone()));
    assert_eq!(partition(&controller), before);
}

#[test]
fn alter_partition_refuses_an_isr_with_a_fenced_broker_or_without_the_leader() {
    let mut controller = controller(ControllerConfig::default(), 2);
    controller.fence(B);
    let before = partition(&controller);
    for new_isr in [&[A, B][..], &[B][..], &[A, C][..], &[][..]] {
        let response = controller.on_alter_partition(&alter(&controller, A, new_isr));
        assert_eq!(response.error, ErrorCode::IneligibleReplica, "{new_isr:?}");
        assert_eq!(partition(&controller), before, "{new_isr:?}");
    }
}

#[test]
fn alter_partition_of_an_unknown_partition_is_refused() {
    let mut controller = controller(ControllerConfig::default(), 3);
    let mut request = alter(&controller, A, &[A]);
    request.tp.partition = 7;
    let response = controller.on_alter_partition(&request);
    assert_eq!(response.error, ErrorCode::UnknownTopicOrPartition);
    assert_eq!(response.state, None);
}

#[test]
fn an_accepted_isr_change_bumps_the_partition_epoch_and_keeps_the_leader_epoch() {
    let mut controller = controller(ControllerConfig::default(), 3);
    let before = partition(&controller);
    let response = controller.on_alter_partition(&alter(&controller, A, &[A, B]));
    assert_eq!(response.error, ErrorCode::None);
    let after = partition(&controller);
    assert_eq!(response.state, Some(after.clone()));
    assert_eq!(after.isr, [A, B]);
    assert_eq!(after.leader_epoch, before.leader_epoch);
    assert_eq!(after.partition_epoch, before.partition_epoch + 1);

    // The next change is built on the new partition epoch, and so on.
    let response = controller.on_alter_partition(&alter(&controller, A, &[A, B, C]));
    assert_eq!(response.error, ErrorCode::None);
    assert_eq!(
        partition(&controller).partition_epoch,
        before.partition_epoch + 2
    );
}

#[test]
fn a_controller_that_loads_state_fences_and_elects_from_it() {
    // The state another controller left: A leads, A and B in sync, C out.
    let mut controller = SimpleController::new(ControllerConfig::default());
    let before = PartitionState {
        leader: Some(A),
        leader_epoch: 4,
        partition_epoch: 9,
        replicas: vec![A, B, C],
        isr: vec![A, B],
        elr: Vec::new(),
        last_known_elr: Vec::new(),
    };
    controller.load_partition(tp(), before.clone());
    assert_eq!(partition(&controller), before);
    // Nobody has heartbeated this controller yet: with A gone, nobody can
    // lead, until B (in the ISR) registers.
    controller.fence(A);
    assert_eq!(partition(&controller).leader, None);
    assert_eq!(partition(&controller).isr, vec![B]);
    heartbeat(&mut controller, C, 1, 0);
    assert_eq!(partition(&controller).leader, None, "C is not in sync");
    heartbeat(&mut controller, B, 1, 0);
    let after = partition(&controller);
    assert_eq!(after.leader, Some(B));
    assert!(after.leader_epoch > before.leader_epoch);
}

#[test]
fn a_loaded_broker_that_heartbeats_as_another_run_is_fenced_first() {
    // Another controller stored A leading, with A and B in sync, and knew
    // A as its run 1. A crashed and restarted before anyone noticed.
    let mut controller = SimpleController::new(ControllerConfig::default());
    controller.load_partition(
        tp(),
        PartitionState {
            leader: Some(A),
            leader_epoch: 2,
            partition_epoch: 5,
            replicas: vec![A, B, C],
            isr: vec![A, B],
            elr: Vec::new(),
            last_known_elr: Vec::new(),
        },
    );
    controller.load_broker(A, Some(1), true);
    controller.load_broker(B, Some(1), true);
    controller.load_broker(C, None, true);
    assert_eq!(
        partition(&controller).leader,
        Some(A),
        "A is not known gone"
    );
    heartbeat(&mut controller, B, 1, 0);
    assert_eq!(partition(&controller).leader, Some(A));
    // A heartbeats as run 2: it loses the lead to B before it counts again.
    heartbeat(&mut controller, A, 2, 0);
    let after = partition(&controller);
    assert_eq!(after.leader, Some(B));
    assert_eq!(after.leader_epoch, 3);
    assert_eq!(after.isr, vec![B]);
    assert!(controller.is_alive(A));
    assert_eq!(controller.incarnation(A), Some(2));
    // A broker loaded with no run is not taken for restarted.
    let c_before = partition(&controller);
    heartbeat(&mut controller, C, 5, 0);
    assert_eq!(partition(&controller), c_before);
    assert_eq!(controller.incarnation(C), Some(5));
}

#[test]
fn a_deleted_topic_is_gone_and_an_unknown_one_is_an_error() {
    let mut controller = controller(ControllerConfig::default(), 3);
    assert_eq!(controller.remove_topic("t"), Ok(vec![tp()]));
    assert!(controller.partitions().is_empty());
    assert_eq!(
        controller.remove_topic("t"),
        Err(ErrorCode::UnknownTopicOrPartition)
    );
}

#[test]
fn preferred_leader_election_moves_leadership_back_once_the_preferred_replica_is_in_sync() {
    let mut controller = controller(ControllerConfig::default(), 3);
    // A fails over to B, then comes back, but not yet in sync.
    controller.fence(A);
    assert_eq!(partition(&controller).leader, Some(B));
    heartbeat(&mut controller, A, 1, 0);
    assert!(
        controller.elect_preferred_leaders().is_empty(),
        "A is not in sync"
    );
    // B's ISR takes A back; then A leads again, in a new epoch.
    let request = alter(&controller, B, &[B, C, A]);
    controller.on_alter_partition(&request);
    let before = partition(&controller);
    assert_eq!(controller.elect_preferred_leaders(), vec![tp()]);
    let after = partition(&controller);
    assert_eq!(after.leader, Some(A));
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(controller.elect_preferred_leaders().is_empty(), "done");
}

#[test]
fn a_loaded_broker_counts_only_once_heard_from_and_an_offline_partition_waits_for_it() {
    let mut controller = SimpleController::new(ControllerConfig {
        min_insync_replicas: 2,
        ..ControllerConfig::default()
    });
    controller.load_partition(
        tp(),
        PartitionState {
            leader: None,
            leader_epoch: 1,
            partition_epoch: 6,
            replicas: vec![A, B, C],
            isr: Vec::new(),
            elr: Vec::new(),
            last_known_elr: vec![A, B],
        },
    );
    // Alive (they hold sessions), but not heard from: no candidates yet,
    // and recovery waits for both, whose logs are still unknown.
    for id in [A, B, C] {
        controller.load_broker(id, Some(1), true);
    }
    assert!(!controller.is_alive(A));
    heartbeat(&mut controller, A, 1, 0);
    assert_eq!(partition(&controller).leader, None, "B and C not heard yet");
    heartbeat(&mut controller, C, 1, 0);
    assert_eq!(partition(&controller).leader, None, "B not heard yet");
    heartbeat(&mut controller, B, 1, 0);
    assert!(partition(&controller).leader.is_some());
}
