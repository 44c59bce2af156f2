//! The checker: what must hold of every run, judged from its history and
//! the replicas' logs at the end, never from a hand-picked assertion.
//!
//! - **No lost acknowledged write**: every value acknowledged with
//!   `acks=all` is in the final log at the offset it was acknowledged at,
//!   unless the loss is one the guarantee exempts (below), or the run was
//!   allowed to lose writes (see [`Expect`]).
//! - **No read that disappears**: every record the consumer read is in the
//!   final log at the offset it was read at, with the same exemption.
//! - **A crash keeps what was synced**: no run of a broker ends with its
//!   log shorter than it had synced it. The guarantee rests on that
//!   promise of the disk, so the checker checks it, and a failure here
//!   blames the simulated disk rather than replication.
//! - **The high watermark never goes back** within one run of a broker,
//!   unless over records whose loss is excused.
//! - **One leader per epoch.**
//! - **The replicas agree** up to the high watermark, and once the faults
//!   end every replica catches up (liveness).
//!
//! These are the checks of Jepsen's and Maelstrom's Kafka workloads, for
//! one partition.
//!
//! # What `acks=all` promises, and what it does not
//!
//! Kafka answers an `acks=all` write once every in-sync replica has it, in
//! memory; syncing is left to the operating system (in the lab, a
//! write-back every second). So the promise is: no acknowledged write is
//! lost *while at least one replica of the ISR at acknowledgement keeps it
//! in its synced log*. If every one of them crashes before syncing it,
//! nothing was promised. The checker tells that case from a bug, record by
//! record: a missing write is *excused* only if every member of the ISR the
//! leader counted when it answered ([`Event::Committed`], each member with
//! the run that had the record) ended that run in a crash
//! ([`Event::Crashed`]) without having synced the record
//! ([`Event::Synced`]) and without having cut it from its log itself
//! first ([`Event::Truncated`]: then the protocol lost it, not the crash).
//! One member that synced it, or never crashed, and the loss is a failure.
//! A crash may keep some unsynced records (a disk may have written them
//! already); such a lucky copy does not count: the protocol need not
//! trust it, and does not (its broker may have left the ISR before the
//! crash, and a leader with a shorter log be elected: the power-loss
//! scenario's seed 92).
//!
//! A read that disappears is excused by the same rule, for the same
//! record: the consumer reads only committed records, and if the record it
//! read was answered to the producer and then lost by crashes of every
//! in-sync replica that had it, the read went with it. A record no leader
//! recorded answering (its produce timed out, and it was committed later)
//! has no ISR on record, so a read of it is never excused.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::sim::{Millis, NodeId};

use super::nodes::Event;

/// What a run may lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing acknowledged may be lost, but for what the guarantee
    /// exempts: writes every in-sync replica at acknowledgement crashed
    /// before syncing. Those are counted as excused; anything else missing
    /// fails the run.
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
    /// Acknowledged values missing from the final log that the guarantee
    /// exempts: every in-sync replica at acknowledgement crashed before
    /// syncing them (with [`Expect::NoLoss`]).
    pub excused: usize,
    /// Records the consumer read.
    pub read: usize,
    /// Records read that disappeared, excused by the same rule.
    pub excused_reads: usize,
    /// Leader epochs the run went through.
    pub epochs: u32,
}

// ANCHOR: check
/// Checks a run: its history, and its replicas at the end (the leader's
/// first). Returns what it found, or the first violation.
pub fn check(
    history: &[(Millis, NodeId, Event)],
    leader: &FinalReplica,
    replicas: &[FinalReplica],
    expect: Expect,
) -> Result<Report, String> {
    let truth: BTreeMap<u64, u64> = leader.log.iter().copied().collect();
    let crashes = Crashes::gather(history)?;
    let mut report = Report::default();
    let mut high_watermarks: BTreeMap<(NodeId, u64), u64> = BTreeMap::new();
    let mut leaders: BTreeMap<u32, Option<NodeId>> = BTreeMap::new();
    for (index, (at, node, event)) in history.iter().enumerate() {
        match *event {
            Event::Acked { value, offset } => {
                report.acknowledged += 1;
                if truth.get(&offset) == Some(&value) {
                    continue;
                }
                if expect == Expect::MayLose {
                    report.lost += 1;
                    continue;
                }
                if let Err(why) = crashes.excuse(offset, value) {
                    return Err(format!(
                        "lost write: value {value} acknowledged at offset {offset} at {at} ms, \
                         but the final log has {:?} there (not excused: {why})",
                        truth.get(&offset)
                    ));
                }
                report.excused += 1;
            }
            Event::Read { offset, value } => {
                report.read += 1;
                if truth.get(&offset) == Some(&value) || expect == Expect::MayLose {
                    continue;
                }
                if let Err(why) = crashes.excuse(offset, value) {
                    return Err(format!(
                        "read disappeared: value {value} read at offset {offset} at {at} ms, \
                         but the final log has {:?} there (not excused: {why})",
                        truth.get(&offset)
                    ));
                }
                report.excused_reads += 1;
            }
            Event::HighWatermark {
                incarnation,
                high_watermark,
            } => {
                let last = high_watermarks.entry((*node, incarnation)).or_insert(0);
                // A run allowed to lose writes may cut committed records,
                // and the high watermark with them; so may a loss the
                // guarantee exempts.
                if high_watermark < *last && expect == Expect::NoLoss {
                    let gone = high_watermark..*last;
                    if let Err(why) = crashes.excuse_all(gone, index, &truth) {
                        return Err(format!(
                            "high watermark went back on broker {node}: {last} then \
                             {high_watermark} at {at} ms (not excused: {why})"
                        ));
                    }
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
            // What `Crashes::gather` reads.
            Event::Committed { .. }
            | Event::Synced { .. }
            | Event::Truncated { .. }
            | Event::Crashed { .. } => {}
        }
    }
    check_agreement(leader, replicas)?;
    Ok(report)
}
// ANCHOR_END: check

/// A leader's answer to an `acks=all` produce, from the history.
#[derive(Debug)]
struct Answer {
    /// Where in the history (which orders the events of one millisecond).
    index: usize,
    /// When.
    at: Millis,
    /// The ISR then, each member with the run that had the record.
    isr: Vec<(NodeId, u64)>,
}

/// Something that happened to one run of a broker's log, from the
/// history.
#[derive(Debug, Clone, Copy)]
struct LogEntry {
    /// Where in the history.
    index: usize,
    /// When.
    at: Millis,
    /// What.
    event: LogEvent,
}

/// What can happen to a run's log.
#[derive(Debug, Clone, Copy)]
enum LogEvent {
    /// Synced below this offset.
    Synced(u64),
    /// Cut back to end at this offset.
    Truncated(u64),
    /// The run ended in a crash.
    Crashed,
}

/// A broker and one of its runs.
type Run = (NodeId, u64);

/// What the history says of who had each answered record and how each
/// run of a broker's log ended: enough to tell a loss the guarantee
/// exempts from a bug.
#[derive(Debug, Default)]
struct Crashes {
    /// Each `(offset, value)` a leader answered.
    committed: BTreeMap<(u64, u64), Answer>,
    /// Each run's log, in history order.
    runs: BTreeMap<Run, Vec<LogEntry>>,
}

impl Crashes {
    /// Reads them from the history, checking on the way that no crash
    /// lost what its run had synced.
    fn gather(history: &[(Millis, NodeId, Event)]) -> Result<Crashes, String> {
        let mut crashes = Crashes::default();
        let mut synced: BTreeMap<Run, u64> = BTreeMap::new();
        for (index, (at, node, event)) in history.iter().enumerate() {
            let (incarnation, event) = match *event {
                Event::Committed {
                    value,
                    offset,
                    ref isr,
                } => {
                    // A value is produced once, so an `(offset, value)` is
                    // answered once; keep the first all the same.
                    let isr = isr.clone();
                    let answer = Answer {
                        index,
                        at: *at,
                        isr,
                    };
                    crashes.committed.entry((offset, value)).or_insert(answer);
                    continue;
                }
                Event::Synced { incarnation, up_to } => {
                    synced.insert((*node, incarnation), up_to);
                    (incarnation, LogEvent::Synced(up_to))
                }
                Event::Truncated { incarnation, to } => {
                    // A truncation is synced at once: the synced part ends
                    // there too.
                    if let Some(synced) = synced.get_mut(&(*node, incarnation)) {
                        *synced = (*synced).min(to);
                    }
                    (incarnation, LogEvent::Truncated(to))
                }
                Event::Crashed { incarnation, kept } => {
                    let synced = synced.get(&(*node, incarnation)).copied().unwrap_or(0);
                    if kept < synced {
                        return Err(format!(
                            "broker {node} crashed at {at} ms and kept its log below {kept}, \
                             though it had synced it up to {synced}: a crash lost synced records"
                        ));
                    }
                    (incarnation, LogEvent::Crashed)
                }
                _ => continue,
            };
            let entry = LogEntry {
                index,
                at: *at,
                event,
            };
            crashes
                .runs
                .entry((*node, incarnation))
                .or_default()
                .push(entry);
        }
        Ok(crashes)
    }

    // ANCHOR: excuse
    /// Whether the guarantee exempts losing `value` at `offset`: every
    /// member of the ISR when a leader answered it had the record in a run
    /// that crashed before syncing it, and did not cut it from its log
    /// before that. `Err` says why not.
    ///
    /// Whether the crash happened to keep the record does not matter: a
    /// copy nobody synced is not one the guarantee counts on, and the
    /// protocol may rightly discard it (its broker may have left the ISR
    /// before the crash, and a shorter log be elected).
    fn excuse(&self, offset: u64, value: u64) -> Result<(), String> {
        let Some(answer) = self.committed.get(&(offset, value)) else {
            return Err("no leader recorded answering it, so no ISR is known".into());
        };
        if answer.isr.is_empty() {
            return Err("its leader recorded no in-sync replica".into());
        }
        let cuts_it =
            |entry: &LogEntry| matches!(entry.event, LogEvent::Truncated(to) if to <= offset);
        for &(broker, run) in &answer.isr {
            let log = self.runs.get(&(broker, run)).map_or(&[][..], Vec::as_slice);
            let crashed = |entry: &LogEntry| matches!(entry.event, LogEvent::Crashed);
            let Some(crash) = log.iter().position(crashed) else {
                return Err(format!(
                    "broker {broker}, in the ISR at {} ms, did not crash in the run that had \
                     it ({run})",
                    answer.at
                ));
            };
            // The copy the leader counted is the one since the run last
            // cut its log below the record, before the answer.
            let before = log[..crash]
                .iter()
                .rposition(|entry| entry.index < answer.index && cuts_it(entry));
            let copy = &log[before.map_or(0, |i| i + 1)..crash];
            for entry in copy {
                match entry.event {
                    LogEvent::Synced(up_to) if up_to > offset => {
                        return Err(format!("broker {broker} had synced it at {} ms", entry.at));
                    }
                    LogEvent::Truncated(_) if cuts_it(entry) && entry.index > answer.index => {
                        return Err(format!(
                            "broker {broker} cut it from its log at {} ms, before its crash",
                            entry.at
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
    // ANCHOR_END: excuse

    /// Whether the guarantee exempts a high watermark going back over
    /// `offsets` at history index `now`: at each offset, a record answered
    /// there before then is missing from the final log (`truth`), and its
    /// loss is excused. `Err` says why not.
    ///
    /// Any record answered there, not necessarily the one the broker had:
    /// the history does not say which that was (a broker restarted with a
    /// lucky copy, found stale, holds records the cluster has since
    /// replaced at the same offsets). A real checker could record the
    /// values each truncation cut.
    fn excuse_all(
        &self,
        offsets: Range<u64>,
        now: usize,
        truth: &BTreeMap<u64, u64>,
    ) -> Result<(), String> {
        for offset in offsets {
            let answered = self.committed.range((offset, 0)..=(offset, u64::MAX));
            let mut lost = answered.filter_map(|(&(_, value), answer)| {
                (answer.index < now && truth.get(&offset) != Some(&value)).then_some(value)
            });
            let mut why = format!("no record answered at offset {offset} was lost");
            let excused = lost.any(|value| match self.excuse(offset, value) {
                Ok(()) => true,
                Err(not) => {
                    why = format!("value {value} at offset {offset}: {not}");
                    false
                }
            });
            if !excused {
                return Err(why);
            }
        }
        Ok(())
    }
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

    /// Value 11 at offset 1, answered by leader 1 with broker 2 in the
    /// ISR (each in its run 1), acknowledged and read; the final log has
    /// offset 0 only.
    fn answered_acknowledged_and_read() -> Vec<(Millis, NodeId, Event)> {
        let isr = vec![(1, 1), (2, 1)];
        vec![
            (
                4,
                1,
                Event::Committed {
                    value: 11,
                    offset: 1,
                    isr,
                },
            ),
            (
                5,
                100,
                Event::Acked {
                    value: 11,
                    offset: 1,
                },
            ),
            (
                6,
                101,
                Event::Read {
                    offset: 1,
                    value: 11,
                },
            ),
        ]
    }

    fn synced(incarnation: u64, up_to: u64) -> Event {
        Event::Synced { incarnation, up_to }
    }

    fn crashed(incarnation: u64, kept: u64) -> Event {
        Event::Crashed { incarnation, kept }
    }

    #[test]
    fn a_write_every_in_sync_replica_lost_in_a_crash_before_syncing_is_excused() {
        let leader = replica(1, &[10], 1);
        let mut history = answered_acknowledged_and_read();
        // Both had synced offset 0 only, and crashed. Broker 2's disk
        // happened to keep offset 1 too: a copy nobody synced, which the
        // guarantee does not count on.
        history.extend([
            (7, 1, synced(1, 1)),
            (7, 2, synced(1, 1)),
            (8, 2, crashed(1, 2)),
            (9, 1, crashed(1, 1)),
        ]);
        let report = check(&history, &leader, &[], Expect::NoLoss).unwrap();
        assert_eq!(
            (report.acknowledged, report.lost, report.excused),
            (1, 0, 1)
        );
        assert_eq!((report.read, report.excused_reads), (1, 1));

        // A sync past offset 1 before the run cut its log below it, and so
        // before it fetched this record, synced another record.
        let cut = Event::Truncated {
            incarnation: 1,
            to: 1,
        };
        let mut earlier = vec![(1, 2, synced(1, 2)), (2, 2, cut)];
        earlier.extend(history);
        let report = check(&earlier, &leader, &[], Expect::NoLoss).unwrap();
        assert_eq!(report.excused, 1);
    }

    #[test]
    fn the_same_loss_is_not_excused_if_one_in_sync_replica_synced_it_or_did_not_crash() {
        let leader = replica(1, &[10], 1);
        let fails = |events: &[(Millis, NodeId, Event)], why: &str| {
            let mut history = answered_acknowledged_and_read();
            history.extend(events.iter().cloned());
            history.push((9, 1, crashed(1, 1)));
            let error = check(&history, &leader, &[], Expect::NoLoss).unwrap_err();
            assert!(error.contains("lost write: value 11"), "{error}");
            assert!(error.contains(why), "{error}");
        };
        // Broker 2 had synced it before its crash (and something else lost
        // it).
        fails(
            &[(7, 2, synced(1, 2)), (8, 2, crashed(1, 2))],
            "broker 2 had synced it",
        );
        // Broker 2 did not crash.
        fails(&[], "did not crash");
        // Broker 2 crashed, but not in the run that had the record.
        fails(&[(8, 2, crashed(7, 1))], "did not crash");
        // Broker 2 cut the record from its log itself, then crashed.
        let truncated = Event::Truncated {
            incarnation: 1,
            to: 1,
        };
        fails(
            &[(7, 2, truncated), (8, 2, crashed(1, 1))],
            "broker 2 cut it from its log",
        );
    }

    #[test]
    fn a_crash_that_loses_synced_records_fails_the_run() {
        let leader = replica(1, &[10, 11], 2);
        let history = [(7, 2, synced(1, 2)), (8, 2, crashed(1, 1))];
        assert!(
            check(&history, &leader, &[], Expect::NoLoss)
                .unwrap_err()
                .contains("a crash lost synced records")
        );
    }

    #[test]
    fn a_read_that_disappears_fails_the_run() {
        let leader = replica(1, &[10], 1);
        let read = Event::Read {
            offset: 1,
            value: 11,
        };
        let history = [(5, 9, read.clone())];
        assert!(
            check(&history, &leader, &[], Expect::NoLoss)
                .unwrap_err()
                .contains("read disappeared")
        );
        // Crashes that lost it excuse nothing without the ISR that had it:
        // no leader recorded answering it.
        let history = [(5, 9, read), (8, 2, crashed(1, 1)), (9, 1, crashed(1, 1))];
        let error = check(&history, &leader, &[], Expect::NoLoss).unwrap_err();
        assert!(error.contains("no leader recorded answering it"), "{error}");
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
    fn a_high_watermark_may_go_back_over_an_excused_loss_only() {
        let leader = replica(1, &[10], 1);
        let hw = |high_watermark| Event::HighWatermark {
            incarnation: 1,
            high_watermark,
        };
        // Broker 3 had seen offset 1 committed, then cut it: it follows a
        // leader that lost it with every other in-sync replica.
        let mut history = answered_acknowledged_and_read();
        history.extend([
            (7, 3, hw(2)),
            (8, 2, crashed(1, 1)),
            (9, 1, crashed(1, 1)),
            (10, 3, hw(1)),
        ]);
        let report = check(&history, &leader, &[], Expect::NoLoss).unwrap();
        assert_eq!(report.excused, 1);
        // Had broker 2 not crashed, neither the loss nor the high
        // watermark going back over it would be excused; the history's
        // first failure, the lost write, is reported.
        history.retain(|event| event.2 != crashed(1, 1) || event.1 != 2);
        let error = check(&history, &leader, &[], Expect::NoLoss).unwrap_err();
        assert!(error.contains("lost write"), "{error}");
        // And with the write never acknowledged nor read, the high
        // watermark going back is reported.
        history.retain(|event| !matches!(event.2, Event::Acked { .. } | Event::Read { .. }));
        let error = check(&history, &leader, &[], Expect::NoLoss).unwrap_err();
        assert!(error.contains("high watermark went back"), "{error}");
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
