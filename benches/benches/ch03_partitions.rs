//! Chapter 3's hot paths, each beside its baseline in the same run:
//!
//! - producing 100-byte keyed records into one topic of 1, 4 and 16
//!   partitions (the accumulator with `batch.size` 16 KiB, the default
//!   partitioner, `TopicStore::append`), against appending the same records
//!   in the same 16 KiB batches to a single chapter 2 log: the cost of
//!   spreading a stream over partitions;
//! - choosing a partition: `partition_for_key` (murmur2) for 16-byte and
//!   100-byte keys and the sticky choice for keyless records, against
//!   hashing the same key with the standard library's SipHash.
//!
//! `cargo bench -p kfs-benches --bench ch03_partitions`; the book's
//! performance page quotes the figures and the ratios.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::hint::black_box;
use std::time::{Duration, Instant};

use ch02_segments::{Log, LogConfig, Record};
use ch03_partitions::{
    Accumulator, DefaultPartitioner, Partitioner, TopicConfig, TopicStore, partition_for_key,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;

/// Kafka's default `batch.size`.
const BATCH_SIZE: usize = 16 * 1024;
/// Records per timed run: enough for every partition to fill many batches.
const RECORDS: usize = 64 * 1024;

fn tmp() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// 100-byte records with 16-byte keys from a pool of 10,000 customers.
fn records() -> Vec<Record> {
    (0..RECORDS)
        .map(|i| {
            let key = format!("customer-{:07}", (i * 7919) % 10_000);
            Record::new(vec![0xab; 100])
                .with_timestamp(1_700_000_000_000)
                .with_key(key)
        })
        .collect()
}

fn config() -> TopicConfig {
    let mut config = TopicConfig::default();
    config.set("segment.ms", &i64::MAX.to_string()).unwrap();
    config.set("retention.ms", "-1").unwrap();
    config
}

fn produce(c: &mut Criterion) {
    let mut group = c.benchmark_group("ch03/produce");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(RECORDS as u64));
    let records = records();

    group.bench_function(BenchmarkId::new("baseline_one_log", "100B"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tmp();
                let log_config = LogConfig {
                    segment_ms: None,
                    retention_ms: None,
                    ..LogConfig::default()
                };
                let (mut log, _) = Log::open(dir.path(), log_config).unwrap();
                let start = Instant::now();
                // The same 16 KiB batches, with no choice of partition.
                let mut batch = Vec::new();
                let mut bytes = 0;
                for record in &records {
                    let size = ch02_segments::batch::encoded_len(record);
                    if bytes + size > BATCH_SIZE {
                        log.append(&batch).unwrap();
                        batch.clear();
                        bytes = 0;
                    }
                    bytes += size;
                    batch.push(record.clone());
                }
                log.append(&batch).unwrap();
                total += start.elapsed();
            }
            total
        })
    });

    // The accumulator alone: records in, batches out, nothing stored.
    group.bench_function(BenchmarkId::new("accumulator_only", "1_partitions"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut acc = Accumulator::new(BATCH_SIZE, DefaultPartitioner::new());
                let start = Instant::now();
                for record in &records {
                    black_box(acc.add("t", 1, record.clone()).1);
                }
                black_box(acc.drain());
                total += start.elapsed();
            }
            total
        })
    });

    for partitions in [1, 4, 16] {
        group.bench_function(
            BenchmarkId::new("topic_store", format!("{partitions}_partitions")),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = tmp();
                        let (mut store, _) = TopicStore::open(dir.path()).unwrap();
                        store.create_topic("t", partitions, config()).unwrap();
                        let mut acc = Accumulator::new(BATCH_SIZE, DefaultPartitioner::new());
                        let start = Instant::now();
                        for record in &records {
                            for ready in acc.add("t", partitions, record.clone()).1 {
                                store.append("t", ready.partition, &ready.records).unwrap();
                            }
                        }
                        for ready in acc.drain() {
                            store.append("t", ready.partition, &ready.records).unwrap();
                        }
                        total += start.elapsed();
                    }
                    total
                })
            },
        );
    }
    group.finish();
}

fn partitioner(c: &mut Criterion) {
    let mut group = c.benchmark_group("ch03/partitioner");
    for len in [16, 100] {
        let key = vec![0x5a; len];
        group.bench_function(BenchmarkId::new("baseline_siphash", len), |b| {
            let hasher = BuildHasherDefault::<DefaultHasher>::default();
            b.iter(|| black_box(hasher.hash_one(black_box(&key[..])) % 12))
        });
        group.bench_function(BenchmarkId::new("murmur2", len), |b| {
            b.iter(|| black_box(partition_for_key(black_box(&key), 12)))
        });
    }
    group.bench_function(BenchmarkId::new("sticky", "keyless"), |b| {
        let mut p = DefaultPartitioner::with_seed(1);
        b.iter(|| black_box(p.partition(black_box("orders"), None, 12)))
    });
    group.finish();
}

criterion_group!(benches, produce, partitioner);
criterion_main!(benches);
