//! Chapter 6's hot path, beside its baseline in the same run: a follower
//! copying its leader's log, with no network between them.
//!
//! The leader is a `Partition` on a real chapter 2 `Log` in a temporary
//! directory, holding about 32 MiB of record values in batches of 16 KiB
//! as chapter 3's accumulator fills them: as many records as fit in 16 KiB
//! encoded (138 of 100 B, or 15 of 1 KiB). 16 KiB is Kafka's default
//! `batch.size`, and a producer closes a batch by its size in bytes, not by
//! its count of records: these are the batches chapter 4's producer sends
//! with its defaults. The follower is a `Partition` on another `Log`, empty
//! at the start of every iteration, driven by hand (`poll_request`, the
//! leader's `on_replica_fetch`, `on_fetch_data`, as `tests/kip101.rs` does)
//! with `replica.fetch.max.bytes` 1 MiB, until its high watermark reaches
//! the leader's log end: every batch copied, and the leader told so by one
//! more fetch (what an `acks=all` write waits for).
//!
//! - `replicate`: with `Flush::Os`, Kafka's default: the follower leaves
//!   the writes to the operating system.
//! - `replicate_flush`: with `Flush::BeforeAck`: the follower syncs its log
//!   after every fetch answer (the last, empty one included) before it
//!   fetches again, so nothing counts as replicated until it is on disk.
//! - `baseline_copy`: the floor any follower pays: the same stored bytes
//!   read from the leader's segment file and appended to another file, one
//!   `write` per fetch-sized chunk (1 MiB), with plain `std::fs`: no
//!   framing, no checksum, no batch boundaries.
//! - `baseline_copy_fsync`: the same with an `fdatasync`
//!   (`File::sync_data`) after each chunk, the floor for `replicate_flush`.
//!
//! Throughput counts record values, as in chapters 1 and 2; every
//! run moves the same stored bytes (values, record and batch headers,
//! frames). Building the leader's log, creating the follower's and deleting
//! it afterwards are outside the timed part.
//!
//! `cargo bench -p kfs-benches --bench ch06_replication`; the book's
//! performance page quotes the figures and the ratios.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ch02_segments::{Log, LogConfig, Record, batch, segment};
use ch03_partitions::TopicPartition;
use ch06_replication::epoch::LeaderEpochCache;
use ch06_replication::protocol::{BrokerId, PartitionState};
use ch06_replication::replica::{Flush, FollowerRequest, Partition, ReplicaConfig};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;

/// Bytes of record values in the leader's log, rounded down to whole batches.
const RUN_BYTES: usize = 32 * 1024 * 1024;
/// A batch holds as many records as fit in this many bytes, encoded:
/// Kafka's default `batch.size`.
const BATCH_BYTES: usize = 16 * 1024;
/// `replica.fetch.max.bytes` (Kafka's default), and the baselines' chunk.
const FETCH_MAX_BYTES: u32 = 1024 * 1024;

/// The two brokers' ids.
const LEADER: BrokerId = 1;
const FOLLOWER: BrokerId = 2;

/// A temporary directory under cargo's target directory, on its disk:
/// `/tmp` may be a `tmpfs`, where a sync costs nothing.
fn tmp() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Chapter 2's defaults, without time-based rolling or retention: one
/// segment of 1 GiB holds the whole log.
fn log_config() -> LogConfig {
    LogConfig {
        segment_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Kafka's defaults, `replica.fetch.max.bytes` 1 MiB, and `flush`.
fn replica_config(flush: Flush) -> ReplicaConfig {
    ReplicaConfig {
        replica_fetch_max_bytes: FETCH_MAX_BYTES,
        flush,
        ..ReplicaConfig::default()
    }
}

/// The one partition replicated.
fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

/// The controller's state: the leader leads epoch 0, both are in sync.
fn state() -> PartitionState {
    PartitionState {
        leader: Some(LEADER),
        leader_epoch: 0,
        partition_epoch: 0,
        replicas: vec![LEADER, FOLLOWER],
        isr: vec![LEADER, FOLLOWER],
        elr: Vec::new(),
        last_known_elr: Vec::new(),
    }
}

/// The leader's log, built once per record size, and its replica as it
/// stands before any fetch: each iteration replicates from a clone of it.
struct Leader {
    log: Log,
    partition: Partition,
    /// The log's one segment file, which the baselines copy.
    segment: PathBuf,
    /// Bytes of record values in the log.
    values: u64,
    _dir: TempDir,
}

impl Leader {
    /// A log of about [`RUN_BYTES`] of `size`-byte values, appended through
    /// the leader's `Partition` in batches of [`BATCH_BYTES`], filled as
    /// chapter 3's accumulator fills them.
    fn new(size: usize) -> Leader {
        let dir = tmp();
        let (mut log, _) = Log::open(dir.path(), log_config()).unwrap();
        let mut partition = Partition::open(
            tp(),
            LEADER,
            replica_config(Flush::Os),
            &log,
            LeaderEpochCache::default(),
            0,
        );
        partition.apply_state(&mut log, state(), 0).unwrap();
        assert!(partition.is_leader());
        let record =
            |i: usize| Record::new(vec![0xab; size]).with_timestamp(1_700_000_000_000 + i as i64);
        let count = BATCH_BYTES / batch::encoded_len(&record(0));
        let records: Vec<Record> = (0..count).map(record).collect();
        let mut bytes = batch::encode(&records).unwrap();
        let batches = RUN_BYTES / (count * size);
        for _ in 0..batches {
            partition.append(&mut log, &mut bytes, false).unwrap();
        }
        assert_eq!(log.segments().len(), 1, "the baselines copy one file");
        Leader {
            segment: dir.path().join(segment::file_name(0, "log")),
            values: (batches * count * size) as u64,
            log,
            partition,
            _dir: dir,
        }
    }
}

/// A follower with an empty log, following the leader.
struct Follower {
    log: Log,
    partition: Partition,
    _dir: TempDir,
}

impl Follower {
    /// An empty log in a directory of its own, and a replica that has
    /// learnt the leader from the controller's state.
    fn new(flush: Flush) -> Follower {
        let dir = tmp();
        let (mut log, _) = Log::open(dir.path(), log_config()).unwrap();
        let mut partition = Partition::open(
            tp(),
            FOLLOWER,
            replica_config(flush),
            &log,
            LeaderEpochCache::default(),
            0,
        );
        partition.apply_state(&mut log, state(), 0).unwrap();
        assert_eq!(partition.following(), Some(LEADER));
        Follower {
            log,
            partition,
            _dir: dir,
        }
    }
}

/// Fetch rounds until the follower's high watermark reaches the leader's
/// log end: it has every batch, and the leader knows it.
fn replicate(leader_log: &Log, leader: &mut Partition, follower: &mut Follower) {
    let end = leader_log.log_end_offset();
    while follower.partition.high_watermark() < end {
        let Some((to, FollowerRequest::Fetch(fetch))) =
            follower.partition.poll_request(&follower.log, 0)
        else {
            panic!("a follower with an empty epoch cache fetches at once");
        };
        let data = leader.on_replica_fetch(leader_log, FOLLOWER, &fetch, 0);
        follower
            .partition
            .on_fetch_data(&mut follower.log, to, data)
            .unwrap();
    }
    assert_eq!(follower.log.log_end_offset(), end);
}

/// Copies `from` into `to`, one `write` per [`FETCH_MAX_BYTES`] chunk read,
/// with an `fdatasync` after each write if `sync`. Returns the bytes copied.
fn copy(from: &mut File, to: &mut File, buf: &mut [u8], sync: bool) -> u64 {
    let mut copied = 0;
    loop {
        let n = from.read(buf).unwrap();
        if n == 0 {
            return copied;
        }
        to.write_all(&buf[..n]).unwrap();
        if sync {
            to.sync_data().unwrap();
        }
        copied += n as u64;
    }
}

/// Times `run` on `iters` targets, each made fresh by `fresh` (untimed) and
/// dropped (untimed, which deletes its files) before the next is made.
fn time_runs<T>(iters: u64, mut fresh: impl FnMut() -> T, mut run: impl FnMut(&mut T)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut target = fresh();
        let start = Instant::now();
        run(&mut target);
        total += start.elapsed();
        drop(target);
    }
    total
}

/// Each record size's leader, then each measurement after its baseline.
fn replication(c: &mut Criterion) {
    let mut group = c.benchmark_group("ch06");
    // Criterion's default measurement time (5 s), not one set here, so
    // that `--measurement-time` on the command line still applies.
    group.sample_size(10);
    for size in [100, 1024] {
        let leader = Leader::new(size);
        let stored = std::fs::metadata(&leader.segment).unwrap().len();
        group.throughput(Throughput::Bytes(leader.values));
        let id = format!("{size}B");
        for (baseline, measured, flush) in [
            ("baseline_copy", "replicate", Flush::Os),
            ("baseline_copy_fsync", "replicate_flush", Flush::BeforeAck),
        ] {
            let sync = flush == Flush::BeforeAck;
            group.bench_function(BenchmarkId::new(baseline, &id), |b| {
                b.iter_custom(|iters| {
                    let mut buf = vec![0; FETCH_MAX_BYTES as usize];
                    time_runs(
                        iters,
                        || {
                            let dir = tmp();
                            let to = File::create(dir.path().join("copy")).unwrap();
                            (File::open(&leader.segment).unwrap(), to, dir)
                        },
                        |(from, to, _)| assert_eq!(copy(from, to, &mut buf, sync), stored),
                    )
                })
            });
            group.bench_function(BenchmarkId::new(measured, &id), |b| {
                b.iter_custom(|iters| {
                    time_runs(
                        iters,
                        || (leader.partition.clone(), Follower::new(flush)),
                        |(partition, follower)| replicate(&leader.log, partition, follower),
                    )
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, replication);
criterion_main!(benches);
