//! The cluster's spec, in one thread: three coordinator servers and three
//! brokers ([`LocalBrokers`]). Brokers register, one is elected
//! controller, topics are created through it, and when a broker stops
//! (paused: as `SIGSTOP` does, or a crash) its session ends and its
//! partitions move. Every assertion on state reads it from the
//! coordinator itself: a decision counts once it is stored.

use ch04_network::error::ErrorCode;
use ch06_replication::protocol::{AlterPartitionRequest, BrokerId, PartitionState};
use ch07_coordinator::node::ClientMessage;
use ch07_coordinator::state::Request;
use ch07_coordinator::tree::ANY_VERSION;
use ch08_cluster::controller::{Answer, ClusterEvent};
use ch08_cluster::local::LocalBrokers;
use ch08_cluster::state::{
    CONTROLLER_EPOCH, ControllerInfo, PARTITIONS, PartitionRecord, partition_path,
};

use ch03_partitions::TopicPartition;

/// Enough rounds for a session to expire and the cluster to react (a
/// round is about 60 ms; sessions end after 500 ms).
const ROUNDS: usize = 80;

fn tp(partition: u32) -> TopicPartition {
    TopicPartition::new("orders", partition)
}

/// Three brokers, registered, broker 1 the controller (it races first).
fn cluster() -> LocalBrokers {
    let mut lab = LocalBrokers::new(&[1, 2, 3]);
    let ready = lab.run_until(ROUNDS, |lab| {
        lab.controller().is_some()
            && lab.brokers.values().all(|b| {
                b.node.controller().is_some() && b.node.members().is_some_and(|m| m.len() == 3)
            })
    });
    assert!(ready, "no controller: {:?}", lab.brokers[&1].events);
    lab
}

/// [`cluster`], with topic `orders`: 3 partitions, 3 replicas, each
/// broker told its states.
fn with_orders() -> LocalBrokers {
    let mut lab = cluster();
    assert_eq!(lab.create_topic("orders", 3, 3), ErrorCode::None);
    let told = lab.run_until(ROUNDS, |lab| {
        lab.brokers.values().all(|b| b.told.len() == 3)
    });
    assert!(told, "not every broker was told");
    lab
}

/// A partition's state, as the coordinator (server 1) stores it, and the
/// epoch of the controller that wrote it.
fn stored(lab: &mut LocalBrokers, tp: &TopicPartition) -> Option<(PartitionState, u64)> {
    let path = partition_path(tp);
    let tree = lab.coordinator.server(1).state().tree();
    let (bytes, _) = tree.get_data(&path).ok()?;
    let record = PartitionRecord::decode(&path, bytes).expect("written by the controller");
    Some((record.state, record.controller_epoch))
}

/// Runs until partition `tp` is stored with a leader other than `old`.
fn until_moved(lab: &mut LocalBrokers, tp: &TopicPartition, old: BrokerId) -> PartitionState {
    let tp2 = tp.clone();
    lab.run_until(ROUNDS, move |lab| {
        let path = partition_path(&tp2);
        let tree = lab.coordinator.servers[0].state().tree();
        tree.get_data(&path)
            .ok()
            .and_then(|(bytes, _)| PartitionRecord::decode(&path, bytes).ok())
            .is_some_and(|r| r.state.leader.is_some() && r.state.leader != Some(old))
    });
    let (state, _) = stored(lab, tp).expect("stored");
    assert_ne!(state.leader, Some(old), "{tp} never moved: {state:?}");
    state
}

/// A write from outside the cluster (an operator's shell), on its own
/// session.
fn outsider_writes(lab: &mut LocalBrokers, request: Request) {
    lab.coordinator.connect(1, 99);
    lab.coordinator
        .send(1, 99, ClientMessage::Write { xid: 1, request });
    lab.coordinator.received(1, 99);
}

/// Whether broker `id` has learned its session ended and registered
/// again with a new one.
fn registered_again(lab: &LocalBrokers, id: BrokerId) -> bool {
    let events = &lab.brokers[&id].events;
    let expired = events
        .iter()
        .position(|e| *e == ClusterEvent::SessionExpired);
    let registered = events.iter().rposition(|e| *e == ClusterEvent::Registered);
    expired.is_some_and(|x| registered.is_some_and(|r| r > x))
}

/// Leader 1's request to shrink partition 0's ISR to `[1, 3]`, built on
/// the state stored now.
fn drop_broker_2(lab: &mut LocalBrokers) -> AlterPartitionRequest {
    let (state, _) = stored(lab, &tp(0)).unwrap();
    AlterPartitionRequest {
        broker_id: 1,
        tp: tp(0),
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: vec![1, 3],
    }
}

/// Broker `id`'s node reports what it has to, with no time passing.
fn poll(lab: &mut LocalBrokers, id: BrokerId) {
    let now = lab.coordinator.now;
    let events = lab.broker(id).node.poll(now);
    lab.broker(id).events.extend(events);
}

#[test]
fn brokers_register_and_the_first_to_race_is_controller_in_epoch_1() {
    let lab = cluster();
    assert_eq!(lab.controller(), Some(1));
    let events = &lab.brokers[&1].events;
    assert!(events.contains(&ClusterEvent::Registered));
    assert!(events.contains(&ClusterEvent::Elected { epoch: 1 }));
    for id in [2, 3] {
        let info = lab.brokers[&id].node.controller().unwrap();
        assert_eq!(info.broker_id, 1);
        assert_eq!(info.address, "127.0.0.1:9092");
        assert!(
            lab.brokers[&id]
                .events
                .contains(&ClusterEvent::ControllerIs(info.clone()))
        );
    }
}

#[test]
fn a_created_topic_is_stored_in_the_coordinator_and_told_to_its_brokers() {
    let mut lab = with_orders();
    for (partition, leader) in [(0, 1), (1, 2), (2, 3)] {
        let (state, controller_epoch) = stored(&mut lab, &tp(partition)).unwrap();
        assert_eq!(state.leader, Some(leader), "leaders spread over brokers");
        assert_eq!(state.isr.len(), 3);
        assert_eq!(controller_epoch, 1);
        for broker in lab.brokers.values() {
            assert_eq!(broker.told[&tp(partition)], state);
        }
    }
    // A second create of the same name, and a bad one, are refused.
    assert_eq!(
        lab.create_topic("orders", 1, 1),
        ErrorCode::TopicAlreadyExists
    );
    assert_eq!(
        lab.create_topic("orders", 1, 4),
        ErrorCode::TopicAlreadyExists
    );
    assert_eq!(
        lab.create_topic("more", 1, 4),
        ErrorCode::InvalidReplicationFactor
    );
    assert_eq!(
        lab.create_topic("bad/name", 1, 1),
        ErrorCode::InvalidTopicException
    );
}

#[test]
fn when_a_brokers_session_ends_its_partitions_get_leaders_from_their_isr() {
    let mut lab = with_orders();
    let (before, _) = stored(&mut lab, &tp(1)).unwrap();
    assert_eq!(before.leader, Some(2));
    lab.broker(2).paused = true;
    let after = until_moved(&mut lab, &tp(1), 2);
    assert_eq!(after.leader, Some(3), "the next in-sync replica");
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(!after.isr.contains(&2));
    // Partitions broker 2 only followed keep their leaders.
    assert_eq!(stored(&mut lab, &tp(0)).unwrap().0.leader, Some(1));
    // The live brokers are told.
    lab.run(3);
    for id in [1, 3] {
        assert_eq!(lab.brokers[&id].told[&tp(1)], after);
    }
}

#[test]
fn when_the_controller_dies_another_is_elected_loads_the_state_and_fails_its_partitions_over() {
    let mut lab = with_orders();
    lab.broker(1).paused = true;
    let after = until_moved(&mut lab, &tp(0), 1);
    let controller = lab.controller().expect("a new controller");
    assert_ne!(controller, 1);
    let events = &lab.brokers[&controller].events;
    assert!(
        events.contains(&ClusterEvent::Elected { epoch: 2 }),
        "{events:?}"
    );
    assert!(events.contains(&ClusterEvent::Loaded {
        epoch: 2,
        partitions: 3
    }));
    assert_eq!(after.leader, Some(2), "next in the replica order");
    assert_eq!(stored(&mut lab, &tp(0)).unwrap().1, 2, "written in epoch 2");
    let running_controllers = lab
        .brokers
        .values()
        .filter(|b| !b.paused && b.node.leading().is_some())
        .count();
    assert_eq!(running_controllers, 1);
    // What the first controller decided survives: the other partitions
    // keep their leaders.
    assert_eq!(stored(&mut lab, &tp(1)).unwrap().0.leader, Some(2));
    assert_eq!(stored(&mut lab, &tp(2)).unwrap().0.leader, Some(3));
}

#[test]
fn a_paused_controller_that_wakes_is_obeyed_by_nobody_and_rejoins_as_a_broker() {
    let mut lab = with_orders();
    lab.broker(1).paused = true;
    until_moved(&mut lab, &tp(0), 1);
    // Broker 1 wakes: it has heard nothing, and still believes it leads.
    lab.broker(1).paused = false;
    assert_eq!(lab.brokers[&1].node.leading(), Some(1));
    // A broker that obeyed epoch 2 refuses its answer.
    assert_eq!(lab.heartbeat(3, 1), Err(ErrorCode::StaleControllerEpoch));
    // And the coordinator refuses its writes: a topic it creates now is
    // never stored.
    let now = lab.coordinator.now;
    let ticket = lab.broker(1).node.create_topic("zombie", 1, 1, now);
    lab.run_until(ROUNDS, |lab| lab.answer(1, ticket).is_some());
    assert_eq!(
        lab.answer(1, ticket),
        Some(&Answer::CreateTopic(ErrorCode::NotController))
    );
    assert!(stored(&mut lab, &TopicPartition::new("zombie", 0)).is_none());
    // It learns its session ended, resigns, and registers again.
    let events = lab.brokers[&1].events.clone();
    let resigned = events
        .iter()
        .position(|e| *e == ClusterEvent::Resigned { epoch: 1 });
    let expired = events
        .iter()
        .position(|e| *e == ClusterEvent::SessionExpired);
    assert!(resigned.is_some() && expired.is_some(), "{events:?}");
    let rejoined = lab.run_until(ROUNDS, |lab| {
        lab.brokers[&1].node.controller().is_some()
            && lab.brokers[&1]
                .told
                .get(&tp(0))
                .is_some_and(|s| s.leader == Some(2))
    });
    assert!(rejoined, "{:?}", lab.brokers[&1].events);
    assert_ne!(lab.controller(), Some(1));
}

#[test]
fn a_broker_whose_session_ended_is_refused_until_it_registers_again() {
    let mut lab = with_orders();
    lab.broker(2).paused = true;
    until_moved(&mut lab, &tp(1), 2);
    lab.broker(2).paused = false;
    // Before it learns its session is gone, its heartbeat is refused: the
    // controller does not count it alive on its word alone.
    assert_eq!(lab.heartbeat(2, 1), Err(ErrorCode::BrokerIdNotRegistered));
    let back = lab.run_until(ROUNDS, |lab| registered_again(lab, 2));
    assert!(back, "{:?}", lab.brokers[&2].events);
    lab.run(2);
    assert!(lab.heartbeat(2, 1).is_ok());
    // It is a follower now: the leadership stays where it moved.
    assert_eq!(stored(&mut lab, &tp(1)).unwrap().0.leader, Some(3));
}

#[test]
fn a_broker_id_already_registered_is_refused() {
    let mut lab = cluster();
    // A second broker 2, on the same coordinator.
    let mut node = ch08_cluster::controller::ClusterNode::new(
        2,
        "127.0.0.1:19093",
        &[1, 2, 3],
        0,
        ch08_cluster::local::local_config(),
        lab.coordinator.now,
    );
    let mut events = Vec::new();
    for _ in 0..20 {
        lab.step();
        lab.coordinator.drive(42, node.client());
        node.on_tick(lab.coordinator.now);
        events.extend(node.poll(lab.coordinator.now));
    }
    assert!(
        events.contains(&ClusterEvent::RegistrationRefused),
        "{events:?}"
    );
    assert!(!events.contains(&ClusterEvent::Registered));
}

#[test]
fn isr_changes_are_answered_once_stored_and_stale_ones_are_refused() {
    let mut lab = with_orders();
    let request = drop_broker_2(&mut lab);
    let now = lab.coordinator.now;
    let ticket = lab.broker(1).node.alter_partition(&request, now);
    // Not answered before the coordinator has it.
    assert_eq!(lab.answer(1, ticket), None);
    lab.run_until(ROUNDS, |lab| lab.answer(1, ticket).is_some());
    let Some(Answer::AlterPartition(response)) = lab.answer(1, ticket).cloned() else {
        panic!("no answer");
    };
    assert_eq!(response.error, ErrorCode::None);
    let (now_stored, _) = stored(&mut lab, &tp(0)).unwrap();
    assert_eq!(now_stored.isr, vec![1, 3]);
    assert_eq!(response.state, Some(now_stored.clone()));
    // The same request again is built on an old partition epoch.
    let now = lab.coordinator.now;
    let again = lab.broker(1).node.alter_partition(&request, now);
    poll(&mut lab, 1);
    let Some(Answer::AlterPartition(refused)) = lab.answer(1, again).cloned() else {
        panic!("a refusal is answered at once");
    };
    assert_eq!(refused.error, ErrorCode::InvalidUpdateVersion);
    assert_eq!(refused.state, Some(now_stored));
    // A broker that is not the controller says so.
    let now = lab.coordinator.now;
    let elsewhere = lab.broker(2).node.alter_partition(&request, now);
    poll(&mut lab, 2);
    assert!(matches!(
        lab.answer(2, elsewhere),
        Some(Answer::AlterPartition(r)) if r.error == ErrorCode::NotController
    ));
}

#[test]
fn an_isr_change_stored_but_whose_answer_was_lost_is_answered_after_the_reload() {
    let mut lab = with_orders();
    let request = drop_broker_2(&mut lab);
    let now = lab.coordinator.now;
    let ticket = lab.broker(1).node.alter_partition(&request, now);
    // The controller's write reaches the coordinator and is stored, but
    // its answer is lost with the connection.
    let sends = lab.broker(1).node.client().take_sends();
    for (server, msg) in sends {
        let now = lab.coordinator.now;
        lab.coordinator.server(server).on_client(1, msg, now);
        lab.coordinator.settle();
    }
    lab.coordinator.pass(20);
    for server in 1..=3 {
        lab.coordinator.received(server, 1);
    }
    let (now_stored, _) = stored(&mut lab, &tp(0)).unwrap();
    assert_eq!(now_stored.isr, vec![1, 3]);
    // The controller reads the state again, finds its change stored and
    // answers: with nothing left to write, no later write would.
    assert!(lab.run_until(ROUNDS, |lab| lab.answer(1, ticket).is_some()));
    let Some(Answer::AlterPartition(response)) = lab.answer(1, ticket).cloned() else {
        panic!("not an AlterPartition answer");
    };
    assert_eq!(response.error, ErrorCode::None);
    assert_eq!(response.state, Some(now_stored));
}

#[test]
fn a_controller_whose_epoch_someone_else_bumped_writes_nothing_and_steps_down() {
    let mut lab = with_orders();
    outsider_writes(
        &mut lab,
        Request::SetData {
            path: CONTROLLER_EPOCH.into(),
            data: b"7".to_vec(),
            version: ANY_VERSION,
        },
    );
    let now = lab.coordinator.now;
    let ticket = lab.broker(1).node.create_topic("late", 1, 1, now);
    lab.run_until(ROUNDS, |lab| lab.answer(1, ticket).is_some());
    assert_eq!(
        lab.answer(1, ticket),
        Some(&Answer::CreateTopic(ErrorCode::NotController))
    );
    assert!(stored(&mut lab, &TopicPartition::new("late", 0)).is_none());
    assert!(
        lab.brokers[&1]
            .events
            .contains(&ClusterEvent::Resigned { epoch: 1 })
    );
    // The race runs again, past the bumped epoch.
    let elected = lab.run_until(ROUNDS, |lab| {
        lab.controller()
            .is_some_and(|c| lab.brokers[&c].node.leading() == Some(8))
    });
    assert!(elected, "{:?}", lab.brokers[&1].events);
}

#[test]
fn state_this_code_cannot_read_is_reported_and_left_alone() {
    let mut lab = LocalBrokers::new(&[1, 2, 3]);
    lab.run(2);
    for (name, data) in [("bad-0", &b"not json"[..]), ("not a partition", b"{}")] {
        outsider_writes(
            &mut lab,
            Request::Create {
                path: format!("{PARTITIONS}/{name}"),
                data: data.to_vec(),
                ephemeral: false,
                sequential: false,
            },
        );
    }
    lab.run_until(ROUNDS, |lab| lab.controller().is_some());
    let controller = lab.controller().expect("elected all the same");
    let unreadable = lab.brokers[&controller]
        .events
        .iter()
        .filter(|e| matches!(e, ClusterEvent::Unreadable(_)))
        .count();
    assert_eq!(unreadable, 2);
    assert_eq!(lab.create_topic("bad", 1, 1), ErrorCode::TopicAlreadyExists);
    let tree = lab.coordinator.server(1).state().tree();
    let (bytes, _) = tree.get_data(&format!("{PARTITIONS}/bad-0")).unwrap();
    assert_eq!(bytes, b"not json", "left as it was");
    assert_eq!(lab.create_topic("good", 1, 1), ErrorCode::None);
}

#[test]
fn a_partition_whose_leader_died_before_the_election_fails_over_at_load() {
    let mut lab = with_orders();
    // The controller and broker 2 stop together: the new controller (3)
    // finds broker 2 named as a leader in the state it loads, though its
    // session is already gone.
    lab.broker(1).paused = true;
    lab.broker(2).paused = true;
    let moved = until_moved(&mut lab, &tp(1), 2);
    assert_eq!(moved.leader, Some(3));
    assert_eq!(lab.controller(), Some(3));
    // Partition 0 had 1 as leader: 3 leads it too, the only live replica.
    assert_eq!(until_moved(&mut lab, &tp(0), 1).leader, Some(3));
}

#[test]
fn the_controller_node_names_its_broker() {
    let mut lab = cluster();
    let tree = lab.coordinator.server(2).state().tree();
    let (bytes, _) = tree.get_data("/controller").unwrap();
    let info = ControllerInfo::decode(bytes).unwrap();
    assert_eq!(info.broker_id, 1);
}

#[test]
fn a_restarted_broker_registers_once_its_previous_runs_session_ends() {
    let mut lab = with_orders();
    // Broker 2 crashes (its old node is silent from now on) and starts
    // again at once, with a new session: its id is still taken.
    lab.broker(2).paused = true;
    let mut node = ch08_cluster::controller::ClusterNode::new(
        2,
        "127.0.0.1:9093",
        &[1, 2, 3],
        0,
        ch08_cluster::local::local_config(),
        lab.coordinator.now,
    );
    let mut events = Vec::new();
    for _ in 0..ROUNDS {
        lab.step();
        lab.coordinator.drive(42, node.client());
        node.on_tick(lab.coordinator.now);
        events.extend(node.poll(lab.coordinator.now));
        if events.contains(&ClusterEvent::Registered) {
            break;
        }
    }
    let refused = events
        .iter()
        .position(|e| *e == ClusterEvent::RegistrationRefused);
    let registered = events.iter().position(|e| *e == ClusterEvent::Registered);
    assert!(
        refused.is_some_and(|r| registered.is_some_and(|g| g > r)),
        "{events:?}"
    );
    // Its previous run's session ended first: the controller moved its
    // leadership away.
    assert_eq!(stored(&mut lab, &tp(1)).unwrap().0.leader, Some(3));
}

#[test]
fn deleting_the_controller_node_forces_an_election_and_one_controller_remains() {
    let mut lab = with_orders();
    // Kafka's operators force a new election so: delete `/controller`.
    outsider_writes(
        &mut lab,
        Request::Delete {
            path: "/controller".into(),
            version: ANY_VERSION,
        },
    );
    let elected = lab.run_until(ROUNDS, |lab| {
        lab.brokers
            .values()
            .any(|b| b.node.leading().is_some_and(|epoch| epoch >= 2))
    });
    assert!(elected, "{:?}", lab.brokers[&1].events);
    assert!(
        lab.brokers[&1]
            .events
            .contains(&ClusterEvent::Resigned { epoch: 1 })
    );
    lab.run(5);
    let leading: Vec<_> = lab
        .brokers
        .values()
        .filter_map(|b| b.node.leading())
        .collect();
    assert_eq!(leading.len(), 1, "one controller, not {leading:?}");
    // The new controller serves the same state.
    assert_eq!(lab.create_topic("after", 1, 3), ErrorCode::None);
    assert_eq!(stored(&mut lab, &tp(0)).unwrap().0.leader, Some(1));
}

#[test]
fn a_deleted_topics_partitions_go_from_the_coordinator_and_the_brokers() {
    let mut lab = with_orders();
    let delete = |lab: &mut LocalBrokers| lab.request(|node, now| node.delete_topic("orders", now));
    assert_eq!(delete(&mut lab), Some(Answer::DeleteTopic(ErrorCode::None)));
    for partition in 0..3 {
        assert!(stored(&mut lab, &tp(partition)).is_none());
    }
    lab.run(3);
    assert!(lab.brokers.values().all(|b| b.told.is_empty()));
    assert_eq!(
        delete(&mut lab),
        Some(Answer::DeleteTopic(ErrorCode::UnknownTopicOrPartition))
    );
    // The name is free again.
    assert_eq!(lab.create_topic("orders", 1, 1), ErrorCode::None);
}

#[test]
fn a_broker_in_controlled_shutdown_hands_over_its_partitions_before_it_stops() {
    let mut lab = with_orders();
    let answer = lab.request(|node, now| node.controlled_shutdown(2, now));
    assert_eq!(answer, Some(Answer::ControlledShutdown(ErrorCode::None)));
    // At once, not a session timeout later: broker 2 leads nothing and is
    // in no ISR, and every partition has a leader.
    let check = |lab: &mut LocalBrokers| {
        for partition in 0..3 {
            let (state, _) = stored(lab, &tp(partition)).unwrap();
            assert_ne!(state.leader, Some(2));
            assert!(state.leader.is_some());
            assert!(!state.isr.contains(&2), "{state:?}");
        }
    };
    check(&mut lab);
    assert_eq!(stored(&mut lab, &tp(1)).unwrap().0.leader, Some(3));
    // It still heartbeats while it finishes: that does not bring it back.
    lab.run(5);
    check(&mut lab);
    // It stops; its session ends; nothing more moves.
    lab.broker(2).paused = true;
    lab.run(ROUNDS / 2);
    check(&mut lab);
    // A broker that is not registered cannot ask.
    let answer = lab.request(|node, now| node.controlled_shutdown(7, now));
    assert_eq!(
        answer,
        Some(Answer::ControlledShutdown(ErrorCode::BrokerIdNotRegistered))
    );
}

#[test]
fn preferred_leader_election_moves_leadership_back_to_an_in_sync_preferred_replica() {
    let mut lab = with_orders();
    lab.broker(2).paused = true;
    until_moved(&mut lab, &tp(1), 2);
    lab.broker(2).paused = false;
    let back = lab.run_until(ROUNDS, |lab| registered_again(lab, 2));
    assert!(back);
    lab.run(3);
    // Back, but not in sync: nothing moves.
    let elect = |lab: &mut LocalBrokers| lab.request(|node, now| node.elect_preferred_leaders(now));
    assert_eq!(elect(&mut lab), Some(Answer::PreferredLeaders(Ok(vec![]))));
    // Its leader (3) takes it back into the ISR, as it would once it
    // caught up.
    let (state, _) = stored(&mut lab, &tp(1)).unwrap();
    let request = AlterPartitionRequest {
        broker_id: 3,
        tp: tp(1),
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: vec![3, 1, 2],
    };
    let answer = lab.request(|node, now| node.alter_partition(&request, now));
    assert!(matches!(answer, Some(Answer::AlterPartition(r)) if r.error == ErrorCode::None));
    assert_eq!(
        elect(&mut lab),
        Some(Answer::PreferredLeaders(Ok(vec![tp(1)])))
    );
    let (after, _) = stored(&mut lab, &tp(1)).unwrap();
    assert_eq!(after.leader, Some(2));
    assert_eq!(after.leader_epoch, state.leader_epoch + 1);
}
