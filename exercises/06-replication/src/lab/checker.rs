//! The checker: what must hold of every run, judged from its history and
//! the replicas' logs at the end, never from a hand-picked assertion.
//!
//! - **No lost acknowledged write**: every value acknowledged with
//!   `acks=all` is in the final log at the offset it was acknowledged at
//!   (unless the run was allowed to lose some: see [`Expect`]).
//! - **No read that disappears**: every record the consumer read is in the
//!   final log at the offset it was read at.
//! - **The high watermark never goes back** within one run of a broker.
//! - **One leader per epoch.**
//! - **The replicas agree** up to the high watermark, and once the faults
//!   end every replica catches up (liveness).
//!
//! These are the checks of Jepsen's and Maelstrom's Kafka workloads, for
//! one partition.

use std::collections::BTreeMap;

use crate::sim::{Millis, NodeId};

use super::nodes::Event;

/// What a run may lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing acknowledged may be lost: the faults stayed within what the
    /// configuration promises to survive.
    NoLoss,
    /// The run inflicted a fault beyond the promise (every replica crashed
    /// at once without syncing, or an unclean election): acknowledged
    /// writes may be lost, and the checker counts them instead of failing.
    MayLose,
}

/// One replica at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalReplica {
    /// The broker.
    pub broker: NodeId,
    /// Its log: `(offset, value)` in order.
    pub log: Vec<(u64, u64)>,
    /// Its high watermark.
    pub high_watermark: u64,
}

/// What the checker found in a run that passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Values acknowledged.
    pub acknowledged: usize,
    /// Acknowledged values missing from the final log (0 unless
    /// [`Expect::MayLose`]).
    pub lost: usize,
    /// Records the consumer read.
    pub read: usize,
    /// Leader epochs the run went through.
    pub epochs: u32,
}

/// Checks a run: its history, and its replicas at the end (the leader's
/// first). Returns what it found, or the first violation.
pub fn check(
    history: &[(Millis, NodeId, Event)],
    leader: &FinalReplica,
    replicas: &[FinalReplica],
    expect: Expect,
) -> Result<Report, String> {
    let truth: BTreeMap<u64, u64> = leader.log.iter().copied().collect();
    let mut report = Report::default();
    let mut high_watermarks: BTreeMap<(NodeId, u64), u64> = BTreeMap::new();
    let mut leaders: BTreeMap<u32, Option<NodeId>> = BTreeMap::new();
    for (at, node, event) in history {
        match *event {
            Event::Acked { value, offset } => {
                report.acknowledged += 1;
                if truth.get(&offset) != Some(&value) {
                    if expect == Expect::NoLoss {
                        return Err(format!(
                            "lost write: value {value} acknowledged at offset {offset} at {at} ms, \
                             but the final log has {:?} there",
                            truth.get(&offset)
                        ));
                    }
                    report.lost += 1;
                }
            }
            Event::Read { offset, value } => {
                report.read += 1;
                if truth.get(&offset) != Some(&value) && expect == Expect::NoLoss {
                    return Err(format!(
                        "read disappeared: value {value} read at offset {offset} at {at} ms, \
                         but the final log has {:?} there",
                        truth.get(&offset)
                    ));
                }
            }
            Event::HighWatermark {
                incarnation,
                high_watermark,
            } => {
                let last = high_watermarks.entry((*node, incarnation)).or_insert(0);
                // A run allowed to lose writes may cut committed records,
                // and the high watermark with them.
                if high_watermark < *last && expect == Expect::NoLoss {
                    return Err(format!(
                        "high watermark went back on broker {node}: {last} then {high_watermark} at {at} ms"
                    ));
                }
                *last = high_watermark;
            }
            Event::Elected {
                leader,
                leader_epoch,
                ..
            } => {
                if let Some(other) = leaders.insert(leader_epoch, leader)
                    && other != leader
                {
                    return Err(format!(
                        "two leaders in epoch {leader_epoch}: {other:?} and {leader:?}"
                    ));
                }
                report.epochs = report.epochs.max(leader_epoch);
            }
        }
    }
    check_agreement(leader, replicas)?;
    Ok(report)
}

/// Every replica's log equals the leader's up to the high watermark, and
/// (the run having ended with a quiet period) every replica has caught up
/// with the leader entirely.
fn check_agreement(leader: &FinalReplica, replicas: &[FinalReplica]) -> Result<(), String> {
    let committed = leader.high_watermark as usize;
    if leader.high_watermark != leader.log.last().map_or(0, |(o, _)| o + 1) {
        return Err(format!(
            "after the faults ended, the leader's high watermark {} is not its log end {}",
            leader.high_watermark,
            leader.log.len()
        ));
    }
    for replica in replicas {
        let upto = committed.min(replica.log.len());
        if replica.log[..upto] != leader.log[..upto] {
            let at = (0..upto)
                .find(|&i| replica.log[i] != leader.log[i])
                .expect("they differ somewhere");
            return Err(format!(
                "broker {} disagrees with leader {} at offset {at}: {:?} against {:?}",
                replica.broker, leader.broker, replica.log[at], leader.log[at]
            ));
        }
        if replica.log.len() != leader.log.len() {
            return Err(format!(
                "after the faults ended, broker {} has {} records and leader {} has {}",
                replica.broker,
                replica.log.len(),
                leader.broker,
                leader.log.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(broker: NodeId, values: &[u64], high_watermark: u64) -> FinalReplica {
        FinalReplica {
            broker,
            log: values
                .iter()
                .copied()
                .enumerate()
                .map(|(o, v)| (o as u64, v))
                .collect(),
            high_watermark,
        }
    }

    #[test]
    fn a_lost_acknowledged_write_fails_the_run_unless_loss_is_allowed() {
        let leader = replica(1, &[10, 12], 2);
        let history = [(
            5,
            9,
            Event::Acked {
                value: 11,
                offset: 1,
            },
        )];
        let error = check(&history, &leader, &[], Expect::NoLoss).unwrap_err();
        assert!(error.contains("lost write: value 11"), "{error}");
        let report = check(&history, &leader, &[], Expect::MayLose).unwrap();
        assert_eq!((report.acknowledged, report.lost), (1, 1));
    }

    #[test]
    fn a_read_that_disappears_fails_the_run() {
        let leader = replica(1, &[10], 1);
        let history = [(
            5,
            9,
            Event::Read {
                offset: 1,
                value: 11,
            },
        )];
        assert!(
            check(&history, &leader, &[], Expect::NoLoss)
                .unwrap_err()
                .contains("read disappeared")
        );
    }

    #[test]
    fn a_high_watermark_going_back_in_one_run_of_a_broker_fails() {
        let leader = replica(1, &[], 0);
        let hw = |incarnation, high_watermark| Event::HighWatermark {
            incarnation,
            high_watermark,
        };
        // A restart (a new incarnation) may start lower: its checkpoint lags.
        let fine = [(1, 2, hw(1, 5)), (2, 2, hw(2, 3))];
        assert!(check(&fine, &leader, &[], Expect::NoLoss).is_ok());
        let bad = [(1, 2, hw(1, 5)), (2, 2, hw(1, 3))];
        assert!(
            check(&bad, &leader, &[], Expect::NoLoss)
                .unwrap_err()
                .contains("went back")
        );
    }

    #[test]
    fn two_leaders_in_one_epoch_fail() {
        let leader = replica(1, &[], 0);
        let elected = |leader, leader_epoch| Event::Elected {
            leader: Some(leader),
            leader_epoch,
            isr: vec![leader],
            elr: (Vec::new(), Vec::new()),
        };
        let history = [(1, 0, elected(1, 3)), (2, 0, elected(2, 3))];
        assert!(
            check(&history, &leader, &[], Expect::NoLoss)
                .unwrap_err()
                .contains("two leaders")
        );
    }

    #[test]
    fn replicas_must_agree_and_catch_up() {
        let leader = replica(1, &[10, 11], 2);
        let diverged = replica(2, &[10, 99], 1);
        assert!(
            check(&[], &leader, &[diverged], Expect::NoLoss)
                .unwrap_err()
                .contains("disagrees")
        );
        let behind = replica(3, &[10], 1);
        assert!(
            check(&[], &leader, &[behind], Expect::NoLoss)
                .unwrap_err()
                .contains("has 1 records")
        );
        let lagging_leader = replica(1, &[10, 11], 1);
        assert!(
            check(&[], &lagging_leader, &[], Expect::NoLoss)
                .unwrap_err()
                .contains("is not its log end")
        );
    }
}
