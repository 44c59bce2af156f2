//! What the tests share: the partition they replicate, producer batches,
//! the controller's state for the partition, and one replica (a
//! [`Partition`] and its [`MemoryLog`]) driven by hand; and for the shell's
//! tests, an in-process cluster (`cluster`), `replica-node` processes, and
//! the history checker (`nodes`).

// Each test file uses its own part of this module.
#![allow(dead_code)]

pub(crate) mod cluster;
mod nodes;

#[allow(unused_imports)] // Only the shell's tests use these.
pub(crate) use nodes::*;

use ch02_segments::{Record, StoredBatch, batch};
use ch03_partitions::TopicPartition;
use ch06_replication::epoch::LeaderEpochCache;
use ch06_replication::memory::MemoryLog;
use ch06_replication::protocol::{
    BrokerId, PartitionState, ReplicaFetchData, ReplicaFetchPartition,
};
use ch06_replication::replica::{FollowerRequest, Millis, Partition, ReplicaConfig};

/// The three brokers of the tests, in preference order.
pub(crate) const A: BrokerId = 1;
pub(crate) const B: BrokerId = 2;
pub(crate) const C: BrokerId = 3;

/// The partition the tests replicate.
pub(crate) fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

/// A one-record batch holding `value`, as a producer sends it. (It has a
/// timestamp, so no log rewrites it on append.)
pub(crate) fn batch(value: &str) -> Vec<u8> {
    batch::encode(&[Record::new(value).with_timestamp(0)]).expect("one record")
}

/// The values stored in `batches`, in order.
pub(crate) fn values(batches: &[StoredBatch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| b.records().expect("stored batches are valid"))
        .map(|(_, r)| String::from_utf8(r.value).expect("UTF-8 values"))
        .collect()
}

/// The controller's state: `leader` leads in `leader_epoch` (which is also
/// the partition epoch) with `isr` in sync, replicas A, B and C.
pub(crate) fn state(leader: BrokerId, leader_epoch: u32, isr: &[BrokerId]) -> PartitionState {
    PartitionState {
        leader: Some(leader),
        leader_epoch,
        partition_epoch: leader_epoch,
        replicas: vec![A, B, C],
        isr: isr.to_vec(),
        elr: Vec::new(),
        last_known_elr: Vec::new(),
    }
}

/// One broker's replica of [`tp`] and its log.
#[derive(Debug, Clone)]
pub(crate) struct Replica {
    pub(crate) id: BrokerId,
    pub(crate) partition: Partition,
    pub(crate) log: MemoryLog,
}

impl Replica {
    /// A replica with an empty log, waiting for the controller's state.
    pub(crate) fn new(id: BrokerId, config: ReplicaConfig) -> Replica {
        let log = MemoryLog::default();
        let partition = Partition::open(tp(), id, config, &log, LeaderEpochCache::default(), 0);
        Replica { id, partition, log }
    }

    /// Takes the controller's `state` at `now`.
    pub(crate) fn apply(&mut self, state: &PartitionState, now: Millis) {
        self.partition
            .apply_state(&mut self.log, state.clone(), now)
            .expect("a memory log does not fail");
    }

    /// Appends a batch holding `value` as the leader, with `acks=1`.
    pub(crate) fn produce(&mut self, value: &str) {
        self.partition
            .append(&mut self.log, &mut batch(value), false)
            .expect("the leader appends");
    }

    /// Every value in the log, in order.
    pub(crate) fn values(&self) -> Vec<String> {
        values(self.log.batches())
    }

    /// The leader's answer to a fetch by `follower` from `offset` in
    /// `leader_epoch`, at `now`.
    pub(crate) fn answer_fetch(
        &mut self,
        follower: BrokerId,
        offset: u64,
        leader_epoch: u32,
        now: Millis,
    ) -> ReplicaFetchData {
        let fetch = ReplicaFetchPartition {
            tp: tp(),
            leader_epoch,
            fetch_offset: offset,
            max_bytes: 1024 * 1024,
        };
        self.partition
            .on_replica_fetch(&self.log, follower, &fetch, now)
    }
}

/// One request from `follower` to `leader`, answered and the answer taken,
/// at `now`. Returns false if the follower had nothing to send.
pub(crate) fn round(leader: &mut Replica, follower: &mut Replica, now: Millis) -> bool {
    let Some((to, request)) = follower.partition.poll_request(&follower.log, now) else {
        return false;
    };
    assert_eq!(to, leader.id, "the follower asks its leader");
    match request {
        FollowerRequest::EpochQuery(query) => {
            let answer = leader.partition.on_epoch_query(&leader.log, &query);
            follower
                .partition
                .on_epoch_answer(&mut follower.log, to, answer)
                .expect("a memory log does not fail");
        }
        FollowerRequest::Fetch(fetch) => {
            let data = leader
                .partition
                .on_replica_fetch(&leader.log, follower.id, &fetch, now);
            follower
                .partition
                .on_fetch_data(&mut follower.log, to, data)
                .expect("the leader's batches are valid");
        }
    }
    true
}
