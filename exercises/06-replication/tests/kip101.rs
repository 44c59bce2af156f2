//! The two failures of KIP-101, step by step, with two replicas driven by
//! hand: each is run with the old rule (a follower truncates to its high
//! watermark) and shown to lose or corrupt data, and with leader epochs
//! and shown not to.

use ch02_segments::{Record, batch};
use ch03_partitions::TopicPartition;
use ch06_replication::epoch::LeaderEpochCache;
use ch06_replication::memory::MemoryLog;
use ch06_replication::protocol::{BrokerId, PartitionState};
use ch06_replication::replica::{FollowerRequest, Partition, ReplicaConfig, Truncation};
use ch06_replication::storage::ReplicaLog;

const A: BrokerId = 1;
const B: BrokerId = 2;

/// One broker's replica of the partition, and its log.
struct Replica {
    id: BrokerId,
    partition: Partition,
    log: MemoryLog,
}

impl Replica {
    fn new(id: BrokerId, truncation: Truncation) -> Replica {
        let log = MemoryLog::default();
        let config = ReplicaConfig {
            truncation,
            ..ReplicaConfig::default()
        };
        let partition = Partition::open(tp(), id, config, &log, LeaderEpochCache::default(), 0);
        Replica { id, partition, log }
    }

    /// The broker restarts: its memory is gone; its log keeps the first
    /// `keep` batches (what was synced), and its epochs and high watermark
    /// come back from their checkpoints.
    fn restart(&mut self, keep: usize, truncation: Truncation) {
        self.log.sync().unwrap();
        self.log.truncate_to(self.offset_after(keep)).unwrap();
        let config = ReplicaConfig {
            truncation,
            ..ReplicaConfig::default()
        };
        let epochs = self.partition.epochs().clone();
        let hw = self.partition.high_watermark();
        self.partition = Partition::open(tp(), self.id, config, &self.log, epochs, hw);
    }

    fn offset_after(&self, batches: usize) -> u64 {
        self.log
            .batches()
            .get(batches)
            .map_or(self.log.log_end_offset(), |b| b.header.base_offset)
    }

    fn apply(&mut self, state: &PartitionState) {
        self.partition
            .apply_state(&mut self.log, state.clone(), 0)
            .unwrap();
    }

    fn produce(&mut self, value: &str) {
        let mut bytes = batch::encode(&[Record::new(value)]).unwrap();
        self.partition
            .append(&mut self.log, &mut bytes, true)
            .unwrap();
    }

    fn values(&self) -> Vec<String> {
        self.log
            .batches()
            .iter()
            .flat_map(|b| b.records().unwrap())
            .map(|(_, r)| String::from_utf8(r.value).unwrap())
            .collect()
    }
}

fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

fn state(leader: BrokerId, leader_epoch: u32, isr: &[BrokerId]) -> PartitionState {
    PartitionState {
        leader: Some(leader),
        leader_epoch,
        partition_epoch: leader_epoch,
        replicas: vec![A, B],
        isr: isr.to_vec(),
        elr: Vec::new(),
        last_known_elr: Vec::new(),
    }
}

/// One request from `follower` to `leader` and its answer. With
/// `deliver_answer` false the answer is lost (the follower crashed first).
fn round(leader: &mut Replica, follower: &mut Replica, deliver_answer: bool) -> bool {
    let Some((to, request)) = follower.partition.poll_request(&follower.log, 0) else {
        return false;
    };
    assert_eq!(to, leader.id);
    match request {
        FollowerRequest::EpochQuery(query) => {
            let answer = leader.partition.on_epoch_query(&leader.log, &query);
            if deliver_answer {
                follower
                    .partition
                    .on_epoch_answer(&mut follower.log, to, answer)
                    .unwrap();
            }
        }
        FollowerRequest::Fetch(fetch) => {
            let data = leader
                .partition
                .on_replica_fetch(&leader.log, follower.id, &fetch, 0);
            if deliver_answer {
                follower
                    .partition
                    .on_fetch_data(&mut follower.log, to, data)
                    .unwrap();
            }
        }
    }
    true
}

/// KIP-101, scenario 1. B fetches m1 and m2, and its next fetch tells A
/// that B has both, so A's high watermark moves to 2 and A acknowledges
/// them; but B restarts before the answer carrying the new high watermark
/// arrives. Its own high watermark says 0. Then A dies and B leads.
fn scenario_1(truncation: Truncation) -> Vec<String> {
    let mut a = Replica::new(A, truncation);
    let mut b = Replica::new(B, truncation);
    a.apply(&state(A, 0, &[A, B]));
    b.apply(&state(A, 0, &[A, B]));
    a.produce("m1");
    a.produce("m2");
    round(&mut a, &mut b, true); // B copies m1 and m2; A learns nothing new yet.
    round(&mut a, &mut b, false); // A learns B has both: committed.
    assert_eq!(a.partition.high_watermark(), 2, "A acknowledged m1 and m2");
    assert_eq!(b.partition.high_watermark(), 0, "B never heard");

    b.restart(2, truncation); // Everything B had was synced.
    b.apply(&state(A, 0, &[A, B]));
    if truncation == Truncation::LeaderEpoch {
        // B's first request asks where epoch 0 ends on A: at 2, so B
        // keeps both. (Without epochs, B truncated as it became a
        // follower, before any request.)
        round(&mut a, &mut b, true);
    }

    // A dies before B fetches anything; the controller elects B.
    b.apply(&state(B, 1, &[B]));
    b.values()
}

#[test]
fn scenario_1_with_leader_epochs_keeps_every_acknowledged_record() {
    assert_eq!(scenario_1(Truncation::LeaderEpoch), ["m1", "m2"]);
}

#[test]
fn scenario_1_with_high_watermark_truncation_loses_acknowledged_records() {
    // The old rule cut B back to its high watermark, 0: both acknowledged
    // records are gone when B leads.
    assert_eq!(scenario_1(Truncation::HighWatermark), Vec::<String>::new());
}

/// KIP-101, scenario 2. A and B both hold m1 and m2, committed (high
/// watermark 2). A power cut takes both; B had not synced m2 and loses it.
/// B comes back first, leads (epoch 1), and takes m3 at offset 1. Then A
/// comes back and follows B.
fn scenario_2(truncation: Truncation) -> (Vec<String>, Vec<String>) {
    let mut a = Replica::new(A, truncation);
    let mut b = Replica::new(B, truncation);
    a.apply(&state(A, 0, &[A, B]));
    b.apply(&state(A, 0, &[A, B]));
    a.produce("m1");
    a.produce("m2");
    for _ in 0..3 {
        round(&mut a, &mut b, true);
    }
    assert_eq!(a.partition.high_watermark(), 2);
    assert_eq!(b.partition.high_watermark(), 2);

    a.restart(2, truncation); // A had synced both.
    b.restart(1, truncation); // B had synced m1 only.
    b.apply(&state(B, 1, &[B]));
    b.produce("m3");
    a.apply(&state(B, 1, &[B]));
    while round(&mut b, &mut a, true) {
        if a.log.log_end_offset() == b.log.log_end_offset() && a.partition.following().is_some() {
            // One more fetch to be sure nothing is left to copy.
            round(&mut b, &mut a, true);
            break;
        }
    }
    (a.values(), b.values())
}

#[test]
fn scenario_2_with_leader_epochs_the_logs_agree() {
    let (a, b) = scenario_2(Truncation::LeaderEpoch);
    assert_eq!(b, ["m1", "m3"]);
    assert_eq!(
        a, b,
        "A cut m2, which epoch 1's leader never had, and copied m3"
    );
}

#[test]
fn scenario_2_with_high_watermark_truncation_the_logs_diverge() {
    let (a, b) = scenario_2(Truncation::HighWatermark);
    // A kept m2 at offset 1 (below its high watermark), B has m3 there, and
    // nothing in the old protocol ever notices.
    assert_eq!(a, ["m1", "m2"]);
    assert_eq!(b, ["m1", "m3"]);
}
