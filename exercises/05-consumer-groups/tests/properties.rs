//! Properties: every assignor gives each partition to exactly one
//! subscriber, balanced when subscriptions are equal; the sticky one moves
//! nothing it does not have to; the cooperative one never hands out a
//! partition its owner still holds, and settles in a second round; consumer-protocol metadata round-trips and
//! any bytes decode to a value or an error; and the coordinator, under any
//! sequence of calls and timeouts, answers every held request exactly once.

use ch03_partitions::TopicPartition;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ch04_network::ErrorCode;
use ch05_consumer_groups::assignor::{
    Assignor, CooperativeStickyAssignor, Members, PartitionCounts, RangeAssignor,
    RoundRobinAssignor, StickyAssignor,
};
use ch05_consumer_groups::coordinator::{CoordinatorConfig, GroupCoordinator, Reply, ReplyTo};
use ch05_consumer_groups::protocol::{
    Assignment, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, Subscription,
    SyncGroupRequest, decode_metadata, encode_metadata,
};
use proptest::prelude::*;

const TOPICS: [&str; 3] = ["a", "b", "c"];

fn assignors() -> [Box<dyn Assignor>; 4] {
    [
        Box::new(RangeAssignor),
        Box::new(RoundRobinAssignor),
        Box::new(StickyAssignor),
        Box::new(CooperativeStickyAssignor),
    ]
}

/// 1 to 8 members, each subscribed to some of the topics; 0 to 12
/// partitions per topic.
fn group() -> impl Strategy<Value = (Members, PartitionCounts)> {
    let subscription = proptest::collection::vec(any::<bool>(), 3).prop_map(|picked| {
        TOPICS
            .iter()
            .zip(picked)
            .filter(|(_, p)| *p)
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
    });
    let members = proptest::collection::vec(subscription, 1..8).prop_map(|subs| {
        subs.into_iter()
            .enumerate()
            .map(|(i, topics)| {
                let s = Subscription {
                    topics: topics.into_iter().map(String::from).collect(),
                    owned: Vec::new(),
                };
                (format!("m{i}"), s)
            })
            .collect::<Members>()
    });
    let counts = proptest::collection::vec(0u32..12, 3).prop_map(|n| {
        TOPICS
            .iter()
            .map(|t| t.to_string())
            .zip(n)
            .collect::<PartitionCounts>()
    });
    (members, counts)
}

fn owners(assignment: &BTreeMap<String, Assignment>) -> BTreeMap<TopicPartition, Vec<String>> {
    let mut owners: BTreeMap<TopicPartition, Vec<String>> = BTreeMap::new();
    for (member, a) in assignment {
        for tp in a.flatten() {
            owners.entry(tp).or_default().push(member.clone());
        }
    }
    owners
}

proptest! {
    #[test]
    fn every_subscribed_partition_has_exactly_one_subscribed_owner((members, counts) in group()) {
        for assignor in assignors() {
            let assignment = assignor.assign(&members, &counts);
            prop_assert_eq!(assignment.keys().collect::<Vec<_>>(), members.keys().collect::<Vec<_>>());
            let owners = owners(&assignment);
            for (topic, &count) in &counts {
                let subscribed = members.values().any(|s| s.topics.contains(topic));
                for p in 0..count {
                    match owners.get(&TopicPartition::new(topic.clone(), p)) {
                        None => prop_assert!(!subscribed, "{} left {topic}-{p} out", assignor.name()),
                        Some(who) => {
                            prop_assert_eq!(who.len(), 1, "{} gave {}-{} to {:?}", assignor.name(), topic, p, who);
                            prop_assert!(members[&who[0]].topics.contains(topic));
                        }
                    }
                }
            }
            // Nothing that does not exist.
            for tp in owners.keys() {
                prop_assert!(tp.partition < counts[&tp.topic]);
            }
        }
    }

    #[test]
    fn with_equal_subscriptions_round_robin_and_sticky_are_balanced(
        n in 1usize..8,
        counts in proptest::collection::vec(0u32..12, 3),
    ) {
        let members: Members = (0..n)
            .map(|i| (format!("m{i}"), Subscription { topics: TOPICS.iter().map(|t| t.to_string()).collect(), owned: vec![] }))
            .collect();
        let counts: PartitionCounts = TOPICS.iter().map(|t| t.to_string()).zip(counts).collect();
        for assignor in [Box::new(RoundRobinAssignor) as Box<dyn Assignor>, Box::new(StickyAssignor)] {
            let sizes: Vec<usize> = assignor.assign(&members, &counts).values().map(|a| a.flatten().len()).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(max - min <= 1, "{}: {:?}", assignor.name(), sizes);
        }
    }

    #[test]
    fn sticky_moves_nothing_when_nothing_changed(
        n in 1usize..8,
        counts in proptest::collection::vec(0u32..12, 3),
    ) {
        let mut members: Members = (0..n)
            .map(|i| (format!("m{i}"), Subscription { topics: TOPICS.iter().map(|t| t.to_string()).collect(), owned: vec![] }))
            .collect();
        let counts: PartitionCounts = TOPICS.iter().map(|t| t.to_string()).zip(counts).collect();
        let first = StickyAssignor.assign(&members, &counts);
        for (id, s) in members.iter_mut() {
            s.owned = first[id].flatten();
        }
        prop_assert_eq!(StickyAssignor.assign(&members, &counts), first);
    }

    #[test]
    fn cooperative_sticky_never_gives_away_what_another_member_owns(
        (mut members, counts) in group(),
        dealt in proptest::collection::vec(0usize..10, 36),
    ) {
        // Some earlier generation's ownership: each partition owned by one
        // of the members or by nobody (its owner left), disjoint as it
        // always is.
        let ids: Vec<String> = members.keys().cloned().collect();
        let all = counts.iter().flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)));
        for (tp, pick) in all.zip(dealt) {
            if let Some(id) = ids.get(pick) && members[id].topics.contains(&tp.topic) {
                members.get_mut(id).unwrap().owned.push(tp);
            }
        }
        let assignment = CooperativeStickyAssignor.assign(&members, &counts);
        for (member, a) in &assignment {
            for tp in a.flatten() {
                let owner = members.iter().find(|(_, s)| s.owned.contains(&tp)).map(|(id, _)| id);
                prop_assert!(owner.is_none_or(|o| o == member), "{member} got {tp:?}, owned by {owner:?}");
            }
        }
        for (tp, who) in owners(&assignment) {
            prop_assert_eq!(who.len(), 1, "{:?} to {:?}", tp, who);
        }
    }

    #[test]
    fn cooperative_sticky_settles_balanced_in_the_second_round(
        n in 1usize..8,
        counts in proptest::collection::vec(0u32..12, 3),
        joined in 1usize..4,
    ) {
        // n members share the topics; then more join. After the first
        // rebalance each member gives up what it lost; the second hands
        // it out, and the group is complete and balanced.
        let subscription = || Subscription { topics: TOPICS.iter().map(|t| t.to_string()).collect(), owned: vec![] };
        let mut members: Members = (0..n).map(|i| (format!("m{i}"), subscription())).collect();
        let counts: PartitionCounts = TOPICS.iter().map(|t| t.to_string()).zip(counts).collect();
        let first = CooperativeStickyAssignor.assign(&members, &counts);
        for (id, s) in members.iter_mut() {
            s.owned = first[id].flatten();
        }
        for i in n..n + joined {
            members.insert(format!("m{i}"), subscription());
        }
        let second = CooperativeStickyAssignor.assign(&members, &counts);
        for (id, s) in members.iter_mut() {
            s.owned = second[id].flatten();
        }
        let third = CooperativeStickyAssignor.assign(&members, &counts);
        let total: u32 = counts.values().sum();
        prop_assert_eq!(owners(&third).len(), total as usize);
        let sizes: Vec<usize> = third.values().map(|a| a.flatten().len()).collect();
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        prop_assert!(max - min <= 1, "{:?}", sizes);
        // And the second round took nothing from anyone.
        for (id, s) in &members {
            for tp in &s.owned {
                prop_assert!(third[id].flatten().contains(tp), "{} lost {:?}", id, tp);
            }
        }
    }

    #[test]
    fn consumer_metadata_round_trips(
        topics in proptest::collection::vec("[a-z]{1,8}", 0..5),
        partitions in proptest::collection::vec(("[a-z]{1,8}", proptest::collection::vec(any::<u32>(), 0..5)), 0..5),
    ) {
        let subscription = Subscription { topics: topics.clone(), owned: topics.iter().map(|t| TopicPartition::new(t.clone(), 1)).collect() };
        prop_assert_eq!(decode_metadata::<Subscription>(&encode_metadata(&subscription)).unwrap(), subscription);
        let assignment = Assignment { partitions };
        prop_assert_eq!(decode_metadata::<Assignment>(&encode_metadata(&assignment)).unwrap(), assignment);
    }

    #[test]
    fn any_metadata_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = decode_metadata::<Subscription>(&bytes);
        let _ = decode_metadata::<Assignment>(&bytes);
    }

    #[test]
    fn the_coordinator_answers_every_held_request_exactly_once(ops in proptest::collection::vec(op(), 1..60)) {
        let config = CoordinatorConfig { min_session_timeout: Duration::from_millis(1), ..CoordinatorConfig::default() };
        let mut c = GroupCoordinator::new(config);
        let mut answered: BTreeMap<ReplyTo, Reply> = BTreeMap::new();
        let mut held: BTreeSet<ReplyTo> = BTreeSet::new();
        let mut next: ReplyTo = 0;
        let mut now = 0u64;
        let mut ids: Vec<String> = Vec::new();
        let record = |replies: Vec<(ReplyTo, Reply)>, answered: &mut BTreeMap<ReplyTo, Reply>, held: &mut BTreeSet<ReplyTo>| -> Result<(), TestCaseError> {
            for (to, reply) in replies {
                prop_assert!(answered.insert(to, reply).is_none(), "{} answered twice", to);
                held.remove(&to);
            }
            Ok(())
        };
        for op in ops {
            match op {
                Op::Join { member } => {
                    next += 1;
                    held.insert(next);
                    let member_id = ids.get(member).cloned().unwrap_or_default();
                    let request = JoinGroupRequest {
                        group_id: "g".into(), session_timeout_ms: 1000, rebalance_timeout_ms: 2000,
                        member_id, client_id: "c".into(), protocol_type: "consumer".into(),
                        protocols: vec![("range".into(), vec![])],
                    };
                    let replies = c.join(now, request, next);
                    for (_, reply) in &replies {
                        if let Reply::Join(r) = reply && r.error == ErrorCode::MemberIdRequired {
                            ids.push(r.member_id.clone());
                        }
                    }
                    record(replies, &mut answered, &mut held)?;
                }
                Op::Sync { member, generation, assign } => {
                    next += 1;
                    held.insert(next);
                    let member_id = ids.get(member).cloned().unwrap_or_default();
                    let assignments = if assign { ids.iter().map(|id| (id.clone(), vec![1])).collect() } else { vec![] };
                    let request = SyncGroupRequest { group_id: "g".into(), generation_id: generation, member_id, assignments };
                    let replies = c.sync(now, request, next);
                    record(replies, &mut answered, &mut held)?;
                }
                Op::Heartbeat { member, generation } => {
                    let member_id = ids.get(member).cloned().unwrap_or_default();
                    c.heartbeat(now, &HeartbeatRequest { group_id: "g".into(), generation_id: generation, member_id });
                }
                Op::Leave { member } => {
                    let member_id = ids.get(member).cloned().unwrap_or_default();
                    let (_, replies) = c.leave(now, &LeaveGroupRequest { group_id: "g".into(), member_id });
                    record(replies, &mut answered, &mut held)?;
                }
                Op::Wait { ms } => {
                    now += ms;
                    let replies = c.tick(now);
                    record(replies, &mut answered, &mut held)?;
                }
            }
        }
        // Long enough for every session and rebalance to time out: every
        // held request has its answer, and the group is empty.
        for _ in 0..3 {
            now += 10_000;
            let replies = c.tick(now);
            record(replies, &mut answered, &mut held)?;
        }
        prop_assert!(held.is_empty(), "never answered: {:?}", held);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Join {
        member: usize,
    },
    Sync {
        member: usize,
        generation: i32,
        assign: bool,
    },
    Heartbeat {
        member: usize,
        generation: i32,
    },
    Leave {
        member: usize,
    },
    Wait {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..5).prop_map(|member| Op::Join { member }),
        (0usize..5, 0i32..5, any::<bool>()).prop_map(|(member, generation, assign)| Op::Sync {
            member,
            generation,
            assign
        }),
        (0usize..5, 0i32..5).prop_map(|(member, generation)| Op::Heartbeat { member, generation }),
        (0usize..5).prop_map(|member| Op::Leave { member }),
        (0u64..1500).prop_map(|ms| Op::Wait { ms }),
    ]
}
