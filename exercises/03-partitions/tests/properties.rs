//! Properties: the partitioner stays in range, the accumulator loses and
//! reorders nothing, and the store agrees with a simple model through any
//! sequence of topic changes, appends and restarts (clean or not).

use std::collections::BTreeMap;

use ch02_segments::{Record, batch};
use ch03_partitions::{
    Accumulator, DefaultPartitioner, StoreError, TopicConfig, TopicStore, partition_for_key,
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn a_key_always_maps_to_the_same_partition_in_range(
        key in proptest::collection::vec(any::<u8>(), 0..64),
        partitions in 1u32..10_000,
    ) {
        let p = partition_for_key(&key, partitions);
        prop_assert!(p < partitions);
        prop_assert_eq!(p, partition_for_key(&key, partitions));
    }

    #[test]
    fn the_accumulator_loses_nothing_and_keeps_each_partitions_order(
        records in proptest::collection::vec((proptest::option::of(0u8..6), 0usize..200), 1..300),
        partitions in 1u32..8,
        batch_size in 50usize..2_000,
        seed in any::<u64>(),
    ) {
        let mut acc = Accumulator::new(batch_size, DefaultPartitioner::with_seed(seed));
        let mut batches = Vec::new();
        let mut chosen = Vec::new();
        for (i, (key, len)) in records.iter().enumerate() {
            let mut record = Record::new(vec![0; *len]).with_timestamp(i as i64);
            if let Some(key) = key {
                record = record.with_key(vec![*key]);
            }
            let (partition, ready) = acc.add("t", partitions, record);
            if let Some(key) = key {
                prop_assert_eq!(partition, partition_for_key(&[*key], partitions));
            }
            chosen.push(partition);
            batches.extend(ready);
        }
        batches.extend(acc.drain());
        let mut seen = vec![false; records.len()];
        let mut last_in_partition: BTreeMap<u32, i64> = BTreeMap::new();
        for b in &batches {
            prop_assert!(!b.records.is_empty());
            let bytes: usize = b.records.iter().map(batch::encoded_len).sum();
            prop_assert!(
                b.records.len() == 1 || bytes <= batch_size,
                "a batch of {} records and {bytes} bytes", b.records.len()
            );
            for r in &b.records {
                let i = r.timestamp as usize;
                prop_assert!(!seen[i], "record {i} twice");
                seen[i] = true;
                prop_assert_eq!(chosen[i], b.partition);
                // Batches of one partition are handed over in order.
                let last = last_in_partition.insert(b.partition, r.timestamp);
                prop_assert!(last < Some(r.timestamp));
            }
        }
        prop_assert!(seen.iter().all(|&s| s), "a record was lost");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(usize, u32),
    Delete(usize),
    AddPartitions(usize, u32),
    Append(usize, u32, usize),
    Reopen { clean: bool },
}

/// Names that collide ("b.c" and "b_c") and that contain '-' ("d-1").
const NAMES: [&str; 4] = ["a", "b.c", "b_c", "d-1"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NAMES.len(), 1u32..4).prop_map(|(n, p)| Op::Create(n, p)),
        1 => (0..NAMES.len()).prop_map(Op::Delete),
        1 => (0..NAMES.len(), 1u32..3).prop_map(|(n, p)| Op::AddPartitions(n, p)),
        4 => (0..NAMES.len(), 0u32..5, 1usize..5).prop_map(|(n, p, c)| Op::Append(n, p, c)),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_store_agrees_with_a_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Some(TopicStore::open(dir.path()).unwrap().0);
        // topic -> each partition's log end offset
        let mut model: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for op in ops {
            let s = store.as_mut().unwrap();
            match op {
                Op::Create(n, partitions) => {
                    let name = NAMES[n];
                    let collides = model.keys().any(|t| t.replace('.', "_") == name.replace('.', "_"));
                    let result = s.create_topic(name, partitions, TopicConfig::default());
                    prop_assert_eq!(result.is_ok(), !collides, "{:?}", result);
                    if !collides {
                        model.insert(name.to_string(), vec![0; partitions as usize]);
                    }
                }
                Op::Delete(n) => {
                    let result = s.delete_topic(NAMES[n]);
                    prop_assert_eq!(result.is_ok(), model.remove(NAMES[n]).is_some());
                }
                Op::AddPartitions(n, more) => {
                    let name = NAMES[n];
                    let new_count = model.get(name).map_or(1, |p| p.len() as u32 + more);
                    let result = s.add_partitions(name, new_count);
                    match model.get_mut(name) {
                        Some(p) => {
                            prop_assert!(result.is_ok(), "{:?}", result);
                            p.resize(new_count as usize, 0);
                        }
                        None => prop_assert!(matches!(result, Err(StoreError::UnknownTopic(_)))),
                    }
                }
                Op::Append(n, partition, count) => {
                    let name = NAMES[n];
                    let records: Vec<Record> = (0..count).map(|i| Record::new("v").with_timestamp(i as i64)).collect();
                    let result = s.append(name, partition, &records);
                    match model.get_mut(name).and_then(|p| p.get_mut(partition as usize)) {
                        Some(end) => {
                            prop_assert_eq!(result.unwrap().base_offset, *end);
                            *end += count as u64;
                        }
                        None => prop_assert!(result.is_err()),
                    }
                }
                Op::Reopen { clean } => {
                    let old = store.take().unwrap();
                    if clean {
                        old.close().unwrap();
                    } else {
                        drop(old); // a crash, as far as the files can tell
                    }
                    let (reopened, report) = TopicStore::open(dir.path()).unwrap();
                    prop_assert!(report.removed_dirs.is_empty() && report.recreated.is_empty());
                    store = Some(reopened);
                }
            }
            let s = store.as_ref().unwrap();
            prop_assert_eq!(s.topics(), model.keys().cloned().collect::<Vec<_>>());
            for (topic, ends) in &model {
                let d = s.describe(topic).unwrap();
                let actual: Vec<u64> = d.partitions.iter().map(|p| p.log_end_offset).collect();
                prop_assert_eq!(&actual, ends, "{}", topic);
            }
        }
    }
}
