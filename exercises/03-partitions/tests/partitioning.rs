//! Where records go: keys spread evenly, one key stays in one partition
//! and in order, and a learner's own partitioner plugs in.

use ch02_segments::Record;
use ch03_partitions::{
    Accumulator, DefaultPartitioner, Partitioner, TopicConfig, TopicStore, partition_for_key,
};

#[test]
fn random_keys_spread_within_a_few_percent_of_uniform() {
    const KEYS: usize = 100_000;
    const PARTITIONS: u32 = 12;
    // Seeded, so that the test sees the same keys every run.
    let mut rng = fastrand::Rng::with_seed(0x853c_49e6_748f_ea9b);
    let mut counts = [0usize; PARTITIONS as usize];
    for _ in 0..KEYS {
        let key: Vec<u8> = (0..rng.usize(1..32)).map(|_| rng.u8(..)).collect();
        counts[partition_for_key(&key, PARTITIONS) as usize] += 1;
    }
    let expected = KEYS as f64 / f64::from(PARTITIONS);
    for (partition, &count) in counts.iter().enumerate() {
        let off = (count as f64 - expected).abs() / expected;
        // One standard deviation is about 1%; 4% is far outside chance.
        assert!(
            off < 0.04,
            "partition {partition}: {count} keys, {:.1}% off",
            off * 100.0
        );
    }
}

/// Records `(key, sequence number)` through an accumulator into a store, as
/// a producer would, and returns what each partition holds, in order.
fn produce_and_read(records: &[(String, u32)], partitions: u32) -> Vec<Vec<(String, u32)>> {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = TopicStore::open(dir.path()).unwrap();
    store
        .create_topic("t", partitions, TopicConfig::default())
        .unwrap();
    let mut acc = Accumulator::new(512, DefaultPartitioner::with_seed(8));
    let append = |store: &mut TopicStore, batch: ch03_partitions::ReadyBatch| {
        store
            .append(&batch.topic, batch.partition, &batch.records)
            .unwrap();
    };
    for (key, seq) in records {
        let record = Record::new(seq.to_string()).with_key(key.clone());
        for batch in acc.add("t", partitions, record).1 {
            append(&mut store, batch);
        }
    }
    for batch in acc.drain() {
        append(&mut store, batch);
    }
    (0..partitions).map(|p| read_all(&store, p)).collect()
}

/// Every record of partition `p` of "t", in offset order: read from offset
/// 0 on, one segment's worth at a time, as a consumer does.
fn read_all(store: &TopicStore, p: u32) -> Vec<(String, u32)> {
    let end = store.log("t", p).unwrap().log_end_offset();
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < end {
        for batch in store.read("t", p, offset, 1 << 20).unwrap() {
            for (at, record) in batch.records().unwrap() {
                if at >= offset {
                    let key = String::from_utf8(record.key.unwrap()).unwrap();
                    records.push((key, String::from_utf8_lossy(&record.value).parse().unwrap()));
                }
            }
            offset = batch.header.next_offset();
        }
    }
    records
}

#[test]
fn one_key_stays_in_one_partition_in_order() {
    let records: Vec<(String, u32)> = (0..2_000)
        .map(|i| (format!("user-{}", i % 37), i))
        .collect();
    let partitions = produce_and_read(&records, 6);
    let mut seen = 0;
    for (p, stored) in partitions.iter().enumerate() {
        for (key, _) in stored {
            assert_eq!(partition_for_key(key.as_bytes(), 6), p as u32, "{key}");
        }
        // Within a partition, each key's records are in the order sent.
        for key in 0..37 {
            let key = format!("user-{key}");
            let seqs: Vec<u32> = stored
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, s)| *s)
                .collect();
            assert!(seqs.is_sorted(), "{key} in partition {p}: {seqs:?}");
        }
        seen += stored.len();
    }
    assert_eq!(seen, records.len(), "every record stored once");
}

#[test]
fn across_partitions_there_is_no_order_to_rely_on() {
    // Sequence numbers interleave between partitions: reading partition 0
    // and then partition 1 does not give the order of sending. This is the
    // guarantee's other half, and why a key is the unit of order.
    let records: Vec<(String, u32)> = (0..200).map(|i| (format!("k{}", i % 10), i)).collect();
    let partitions = produce_and_read(&records, 3);
    assert!(partitions.iter().filter(|p| !p.is_empty()).count() > 1);
    let concatenated: Vec<u32> = partitions.iter().flatten().map(|(_, s)| *s).collect();
    assert_eq!(concatenated.len(), 200);
    assert!(!concatenated.is_sorted());
}

#[test]
fn adding_partitions_moves_some_keys() {
    // Why Kafka warns when partitions are added to a keyed topic: the
    // modulus changes, so many keys now hash elsewhere.
    let moved = (0..1_000)
        .map(|i| format!("key-{i}"))
        .filter(|k| partition_for_key(k.as_bytes(), 4) != partition_for_key(k.as_bytes(), 6))
        .count();
    assert!(moved > 400, "{moved} of 1000 keys moved");
}

/// A learner's partitioner: records whose value starts with "eu:" go to
/// partition 0, the rest spread by key.
struct RegionPartitioner;

impl Partitioner for RegionPartitioner {
    fn partition(&mut self, _topic: &str, key: Option<&[u8]>, partitions: u32) -> u32 {
        match key {
            Some(k) if k.starts_with(b"eu:") => 0,
            Some(k) => 1 + partition_for_key(k, partitions - 1),
            None => partitions - 1,
        }
    }
}

#[test]
fn a_custom_partitioner_plugs_into_the_accumulator() {
    let mut acc = Accumulator::new(1024, RegionPartitioner);
    assert_eq!(acc.add("t", 4, Record::new("x").with_key("eu:paris")).0, 0);
    assert_ne!(acc.add("t", 4, Record::new("x").with_key("us:nyc")).0, 0);
    assert_eq!(acc.add("t", 4, Record::new("x")).0, 3);
}
