//! Properties of what the cluster stores in the coordinator: every state
//! reads back as written, and no bytes (a value changed by hand, a node
//! written by other software) make the reader panic.

use ch06_replication::protocol::PartitionState;
use ch08_cluster::state::{ControllerInfo, PartitionRecord, partition_of};
use proptest::prelude::*;

/// A state as the controller makes them: a non-empty replica list, an
/// ISR and eligible replicas drawn from it.
fn partition_state() -> impl Strategy<Value = PartitionState> {
    (
        prop::collection::btree_set(0u32..1_000, 1..6),
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(replicas, has_leader, leader_epoch, partition_epoch, pick)| {
                let replicas: Vec<u32> = replicas.into_iter().collect();
                let n = replicas.len();
                let isr: Vec<u32> = (0..n)
                    .filter(|i| pick >> i & 1 == 1)
                    .map(|i| replicas[i])
                    .collect();
                let elr: Vec<u32> = (0..n)
                    .filter(|i| pick >> (i + 8) & 1 == 1 && !isr.contains(&replicas[*i]))
                    .map(|i| replicas[i])
                    .collect();
                PartitionState {
                    leader: has_leader.then(|| replicas[pick as usize % n]),
                    leader_epoch,
                    partition_epoch,
                    isr,
                    last_known_elr: Vec::new(),
                    elr,
                    replicas,
                }
            },
        )
}

proptest! {
    #[test]
    fn every_state_reads_back_as_written(
        state in partition_state(),
        controller_epoch in any::<u64>(),
        incarnations in prop::collection::vec((0u32..1_000, any::<u64>()), 0..4),
    ) {
        let record = PartitionRecord { state, controller_epoch, incarnations };
        prop_assert_eq!(PartitionRecord::decode("/p", &record.encode()).unwrap(), record);
    }

    #[test]
    fn no_bytes_make_the_reader_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = PartitionRecord::decode("/p", &bytes);
        let _ = ControllerInfo::decode(&bytes);
    }

    #[test]
    fn edited_json_is_read_or_refused_never_a_panic(
        state in partition_state(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let record = PartitionRecord { state, controller_epoch: 1, incarnations: vec![(1, 2)] };
        let mut bytes = record.encode();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(PartitionRecord { state: read, .. }) = PartitionRecord::decode("/p", &bytes) {
            // Whatever it reads is a state the controller could use.
            prop_assert!(!read.replicas.is_empty());
            prop_assert!(read.isr.iter().all(|id| read.replicas.contains(id)));
            prop_assert!(read.leader.is_none_or(|id| read.replicas.contains(&id)));
        }
    }

    #[test]
    fn node_names_are_read_only_as_written(name in "[a-zA-Z0-9._-]{1,20}", partition in any::<u32>()) {
        let tp = ch03_partitions::TopicPartition::new(name.clone(), partition);
        let path = ch08_cluster::state::partition_path(&tp);
        let node = path.rsplit('/').next().unwrap();
        if ch03_partitions::name::validate(&name).is_ok() {
            prop_assert_eq!(partition_of(node).unwrap(), tp);
        }
    }
}
