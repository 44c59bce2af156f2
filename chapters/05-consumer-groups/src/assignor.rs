//! Assignors: who reads which partition. As in Kafka, the *group leader*
//! (a consumer) runs the assignor, not the broker: the coordinator only
//! carries the members' subscriptions to the leader and the leader's
//! assignment back, so a new assignor needs no broker upgrade.
//!
//! An assignor is a pure function of the members' subscriptions and the
//! partition counts: sans-IO, and property-tested.

use ch03_partitions::TopicPartition;
use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::{Assignment, Subscription};

/// Members by id, with their subscriptions.
pub type Members = BTreeMap<String, Subscription>;

/// Topics by name, with their partition counts.
pub type PartitionCounts = BTreeMap<String, u32>;

/// A partition assignment strategy (Kafka's
/// `partition.assignment.strategy`).
pub trait Assignor: Send + Sync {
    /// Its name in JoinGroup's protocol list (Kafka's names: `range`,
    /// `roundrobin`, `sticky`).
    fn name(&self) -> &'static str;

    /// Gives every partition of every subscribed topic to exactly one member
    /// subscribed to it. Every member gets an entry, perhaps empty.
    fn assign(
        &self,
        members: &Members,
        partitions: &PartitionCounts,
    ) -> BTreeMap<String, Assignment>;

    /// Whether it follows the *cooperative* rebalance protocol (KIP-429):
    /// members keep their partitions through a rebalance, and a partition
    /// changes owner only after its owner has given it up. An assignor
    /// that says so must never give a member a partition another member
    /// still owns. The eager protocol (every member gives up everything
    /// before it rejoins) is the default.
    fn cooperative(&self) -> bool {
        false
    }
}

/// Builds the result: an empty assignment for every member, then each
/// `(member, topic, partition)` added, partitions sorted.
fn collect(
    members: &Members,
    owners: impl IntoIterator<Item = (String, String, u32)>,
) -> BTreeMap<String, Assignment> {
    let mut by_member: BTreeMap<String, BTreeMap<String, Vec<u32>>> = members
        .keys()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for (member, topic, partition) in owners {
        by_member
            .entry(member)
            .or_default()
            .entry(topic)
            .or_default()
            .push(partition);
    }
    by_member
        .into_iter()
        .map(|(member, topics)| {
            let partitions = topics
                .into_iter()
                .map(|(topic, mut ps)| {
                    ps.sort_unstable();
                    (topic, ps)
                })
                .collect();
            (member, Assignment { partitions })
        })
        .collect()
}

/// The members subscribed to `topic`, in id order.
fn subscribers<'a>(members: &'a Members, topic: &str) -> Vec<&'a String> {
    members
        .iter()
        .filter(|(_, s)| s.topics.iter().any(|t| t == topic))
        .map(|(id, _)| id)
        .collect()
}

// ANCHOR: range
/// Kafka's default for years: per topic, the members subscribed to it in
/// id order each take a consecutive range of partitions; the first
/// `partitions % members` take one extra. Co-partitioned topics line up
/// (partition 0 of two topics goes to the same member), which joins need;
/// the price is imbalance across many topics, since the same first members
/// take the extra partition of every topic.
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(
        &self,
        members: &Members,
        partitions: &PartitionCounts,
    ) -> BTreeMap<String, Assignment> {
        // exercise-hole: range | For each topic with a partition count, take `subscribers(members, topic)` (id order); with n = count / subscribers and extra = count % subscribers, the i-th subscriber gets n partitions, plus one if i < extra, each range starting where the previous ended. Push `(member, topic, partition)` triples and finish with `collect(members, triples)`.
        // exercise-hint: Kafka's range assignor works topic by topic: the subscribers of each topic, sorted by member id, split its partitions into contiguous ranges, the first `count % n` subscribers getting one extra.
        // exercise-hint: Keep a running `next`: for subscriber i, `let take = each + u32::from((i as u32) < extra)`; push `(member.clone(), topic.clone(), p)` for `p in next..next + take`, then `next += take`; skip a topic nobody subscribes to.
        let mut owners = Vec::new();
        for (topic, &count) in partitions {
            let subscribed = subscribers(members, topic);
            if subscribed.is_empty() {
                continue;
            }
            let n = subscribed.len() as u32;
            let (each, extra) = (count / n, count % n);
            let mut next = 0;
            for (i, member) in subscribed.into_iter().enumerate() {
                let take = each + u32::from((i as u32) < extra);
                for partition in next..next + take {
                    owners.push((member.clone(), topic.clone(), partition));
                }
                next += take;
            }
        }
        collect(members, owners)
        // exercise-end
    }
}
// ANCHOR_END: range

// ANCHOR: round_robin
/// Every partition of every topic, in order, dealt to the members in turn
/// (skipping members not subscribed to its topic). Balanced across topics,
/// but with no regard for what anyone owned before.
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(
        &self,
        members: &Members,
        partitions: &PartitionCounts,
    ) -> BTreeMap<String, Assignment> {
        // exercise-hole: round_robin | One turn counter across every topic (in name order) and partition (in order): deal each partition to the next member, in id order and wrapping around, that subscribes to its topic. Skip topics nobody subscribes to, and finish with `collect(members, triples)`.
        // exercise-hint: Unlike range, the turn does not restart with each topic: that is what balances many topics across members. A member not subscribed to a topic is passed over, and the partition goes to the next one that is.
        // exercise-hint: `let ids: Vec<&String> = members.keys().collect()` and `let mut turn = 0`; for each partition, `loop { let member = ids[turn % ids.len()]; turn += 1; if members[member].topics contains topic { push (member, topic, partition); break } }` (the skip of unsubscribed topics keeps that loop from spinning forever).
        let ids: Vec<&String> = members.keys().collect();
        let mut owners = Vec::new();
        let mut turn = 0;
        for (topic, &count) in partitions {
            if subscribers(members, topic).is_empty() {
                continue;
            }
            for partition in 0..count {
                // The next member, in turn, that reads this topic.
                loop {
                    let member = ids[turn % ids.len()];
                    turn += 1;
                    if members[member].topics.iter().any(|t| t == topic) {
                        owners.push((member.clone(), topic.clone(), partition));
                        break;
                    }
                }
            }
        }
        collect(members, owners)
        // exercise-end
    }
}
// ANCHOR_END: round_robin

// ANCHOR: sticky
/// Balanced like round robin, but a partition stays with the member that
/// owned it last generation (its `Subscription::owned`) whenever balance
/// allows: fewer partitions move in a rebalance, so fewer caches go cold
/// and fewer positions are re-read. Kafka's `sticky` assignor, used here
/// with the eager protocol (every member gives up everything, then takes
/// its new set); Kafka's `cooperative-sticky` (KIP-429) also lets members
/// keep reading what they keep during the rebalance.
pub struct StickyAssignor;

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        "sticky"
    }

    fn assign(
        &self,
        members: &Members,
        partitions: &PartitionCounts,
    ) -> BTreeMap<String, Assignment> {
        // exercise-hole: sticky | With `all` the subscribed partitions: `quota = all / members` and `extra = all % members`. First, in id order, each member keeps what its subscription says it owned (if still subscribed and not taken), up to `quota`, or `quota + 1` while `extra` lasts and it owned more; then each remaining partition goes to the subscribed member with the fewest (ties: lowest id). Finish with `collect`.
        // exercise-hint: Two passes. Keeping comes first, so that nothing moves that balance does not force; a member that owned more than its share keeps its share and gives up the rest, and only `extra` members may keep one more than `quota`. Then the partitions left over (new ones, and those given up) fill the emptiest members. No members: an empty map.
        // exercise-hint: `unassigned: BTreeSet<TopicPartition>` starts as every partition of a subscribed topic; pass 1 filters each member's `owned` by `subscribed(member, &tp.topic) && unassigned.contains(tp)`, sorts, `truncate`s to its share and removes those from `unassigned`; pass 2 takes, for each `tp` left, `owned.iter_mut().filter(subscribed).min_by_key(|(m, ps)| (ps.len(), **m))`.
        let subscribed =
            |member: &str, topic: &str| members[member].topics.iter().any(|t| t == topic);
        let all: BTreeSet<TopicPartition> = partitions
            .iter()
            .filter(|(topic, _)| !subscribers(members, topic).is_empty())
            .flat_map(|(topic, &count)| (0..count).map(move |p| TopicPartition::new(topic, p)))
            .collect();
        if members.is_empty() {
            return BTreeMap::new();
        }
        // With equal subscriptions, balance means everyone has `quota` or
        // `quota + 1` partitions, and only `extra` members have the +1.
        let quota = all.len() / members.len();
        let mut extra = all.len() % members.len();
        let mut owned: BTreeMap<&String, Vec<TopicPartition>> = BTreeMap::new();
        let mut unassigned = all.clone();
        // 1. Keep what each member owned and still may, up to its share.
        for (member, subscription) in members {
            let mut keep: Vec<TopicPartition> = subscription
                .owned
                .iter()
                .filter(|tp| subscribed(member, &tp.topic) && unassigned.contains(*tp))
                .cloned()
                .collect();
            keep.sort();
            let share = if keep.len() > quota && extra > 0 {
                extra -= 1;
                quota + 1
            } else {
                quota
            };
            keep.truncate(share);
            for tp in &keep {
                unassigned.remove(tp);
            }
            owned.insert(member, keep);
        }
        // 2. Give out the rest, each to the subscribed member with the
        // fewest partitions (ties to the lowest id).
        for tp in unassigned {
            let least = owned
                .iter_mut()
                .filter(|(member, _)| subscribed(member, &tp.topic))
                .min_by_key(|(member, ps)| (ps.len(), **member));
            if let Some((_, ps)) = least {
                ps.push(tp);
            }
        }
        let owners = owned.into_iter().flat_map(|(member, ps)| {
            ps.into_iter()
                .map(move |tp| (member.clone(), tp.topic, tp.partition))
        });
        collect(members, owners)
        // exercise-end
    }
}
// ANCHOR_END: sticky

// ANCHOR: cooperative
/// Kafka's `cooperative-sticky` (KIP-429): the sticky assignment, except
/// that a partition moving from one member to another is given to nobody
/// this time. Its owner, seeing it missing from its new assignment, gives
/// it up (commits, revokes) and rejoins at once; in that second rebalance
/// nobody owns it, and it goes to whoever has room. Two rebalances instead
/// of one, but every member keeps reading what it keeps throughout, and no
/// partition ever has two owners.
pub struct CooperativeStickyAssignor;

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &'static str {
        "cooperative-sticky"
    }

    fn cooperative(&self) -> bool {
        true
    }

    fn assign(
        &self,
        members: &Members,
        partitions: &PartitionCounts,
    ) -> BTreeMap<String, Assignment> {
        let owner: BTreeMap<&TopicPartition, &String> = members
            .iter()
            .flat_map(|(member, s)| s.owned.iter().map(move |tp| (tp, member)))
            .collect();
        let mut assignment = StickyAssignor.assign(members, partitions);
        for (member, a) in assignment.iter_mut() {
            for (topic, ps) in a.partitions.iter_mut() {
                // Withheld: still owned by someone else, who gives it up
                // first.
                ps.retain(|p| {
                    let tp = TopicPartition::new(topic.clone(), *p);
                    owner.get(&tp).is_none_or(|o| *o == member)
                });
            }
            a.partitions.retain(|(_, ps)| !ps.is_empty());
        }
        assignment
    }
}
// ANCHOR_END: cooperative

/// Every assignor in this module, in the order a consumer offers them by
/// default (Kafka's `partition.assignment.strategy`).
pub fn default_assignors() -> Vec<Box<dyn Assignor>> {
    vec![
        Box::new(RangeAssignor),
        Box::new(RoundRobinAssignor),
        Box::new(StickyAssignor),
        Box::new(CooperativeStickyAssignor),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(specs: &[(&str, &[&str])]) -> Members {
        specs
            .iter()
            .map(|(id, topics)| {
                let subscription = Subscription {
                    topics: topics.iter().map(|t| t.to_string()).collect(),
                    owned: Vec::new(),
                };
                (id.to_string(), subscription)
            })
            .collect()
    }

    fn counts(specs: &[(&str, u32)]) -> PartitionCounts {
        specs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn of(assignment: &BTreeMap<String, Assignment>, member: &str) -> Vec<TopicPartition> {
        assignment[member].flatten()
    }

    fn tps(specs: &[(&str, u32)]) -> Vec<TopicPartition> {
        specs
            .iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect()
    }

    #[test]
    fn range_gives_consecutive_ranges_and_the_extras_to_the_first_members() {
        // Kafka's documentation example: 2 consumers, 2 topics of 3.
        let m = members(&[("c0", &["t0", "t1"]), ("c1", &["t0", "t1"])]);
        let a = RangeAssignor.assign(&m, &counts(&[("t0", 3), ("t1", 3)]));
        assert_eq!(
            of(&a, "c0"),
            tps(&[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)])
        );
        assert_eq!(of(&a, "c1"), tps(&[("t0", 2), ("t1", 2)]));
    }

    #[test]
    fn round_robin_deals_partitions_in_turn_across_topics() {
        let m = members(&[("c0", &["t0", "t1"]), ("c1", &["t0", "t1"])]);
        let a = RoundRobinAssignor.assign(&m, &counts(&[("t0", 3), ("t1", 3)]));
        assert_eq!(of(&a, "c0"), tps(&[("t0", 0), ("t0", 2), ("t1", 1)]));
        assert_eq!(of(&a, "c1"), tps(&[("t0", 1), ("t1", 0), ("t1", 2)]));
    }

    #[test]
    fn only_subscribers_get_a_topics_partitions() {
        let m = members(&[("a", &["t0"]), ("b", &["t1"]), ("c", &[])]);
        let p = counts(&[("t0", 2), ("t1", 1), ("unread", 4)]);
        for assignor in default_assignors() {
            let a = assignor.assign(&m, &p);
            assert_eq!(
                of(&a, "a"),
                tps(&[("t0", 0), ("t0", 1)]),
                "{}",
                assignor.name()
            );
            assert_eq!(of(&a, "b"), tps(&[("t1", 0)]), "{}", assignor.name());
            assert!(of(&a, "c").is_empty(), "{}", assignor.name());
        }
    }

    /// Members whose subscriptions say they own `owned`'s partitions.
    fn owning(m: &mut Members, owned: &BTreeMap<String, Assignment>) {
        for (id, s) in m.iter_mut() {
            s.owned = of(owned, id);
        }
    }

    /// a and b share a topic of 6 partitions, as `assignor` split them;
    /// then c joins. Returns the group and the first split.
    fn c_joins(assignor: &dyn Assignor) -> (Members, BTreeMap<String, Assignment>) {
        let mut m = members(&[("a", &["t"]), ("b", &["t"])]);
        let first = assignor.assign(&m, &counts(&[("t", 6)]));
        owning(&mut m, &first);
        m.extend(members(&[("c", &["t"])]));
        (m, first)
    }

    #[test]
    fn sticky_keeps_what_it_can_when_a_member_joins() {
        let (m, first) = c_joins(&StickyAssignor);
        let second = StickyAssignor.assign(&m, &counts(&[("t", 6)]));
        // Each of a and b gives up exactly one partition, to c.
        for id in ["a", "b"] {
            let kept = of(&second, id)
                .iter()
                .filter(|tp| of(&first, id).contains(tp))
                .count();
            assert_eq!(
                kept,
                2,
                "{id}: {:?} then {:?}",
                of(&first, id),
                of(&second, id)
            );
        }
        assert_eq!(of(&second, "c").len(), 2);
    }

    #[test]
    fn cooperative_sticky_moves_a_partition_in_two_rebalances() {
        let (mut m, first) = c_joins(&CooperativeStickyAssignor);
        let p = counts(&[("t", 6)]);
        // Round 1: a and b each lose one partition, but c gets nothing yet,
        // since a and b still own what it would get.
        let second = CooperativeStickyAssignor.assign(&m, &p);
        for id in ["a", "b"] {
            assert_eq!(of(&second, id).len(), 2, "{id}: {:?}", of(&second, id));
            assert!(of(&second, id).iter().all(|tp| of(&first, id).contains(tp)));
        }
        assert!(of(&second, "c").is_empty(), "{:?}", of(&second, "c"));
        // Round 2: a and b have given them up; now c gets them.
        owning(&mut m, &second);
        let third = CooperativeStickyAssignor.assign(&m, &p);
        assert_eq!(of(&third, "a"), of(&second, "a"));
        assert_eq!(of(&third, "b"), of(&second, "b"));
        let mut all: Vec<_> = ["a", "b", "c"]
            .iter()
            .flat_map(|id| of(&third, id))
            .collect();
        all.sort();
        assert_eq!(
            all,
            (0..6)
                .map(|p| TopicPartition::new("t", p))
                .collect::<Vec<_>>()
        );
    }
}
