//! Chapter 2's hot paths, each beside its baseline in the same run:
//!
//! - appending batches of 1, 100 and 1000 records of 100 bytes and 1 KiB
//!   (`Log::append_batch`, as a broker receives them: checked, framed,
//!   written), against plain buffered writes of the same frame bytes; against
//!   the checksum computed on the spot and each frame written with one
//!   `writev` of its own, as the log must (the floor for any log that
//!   checksums what it stores and hands each batch to the kernel before it
//!   answers); and against the same checksums with the writes buffered, to
//!   show what one system call per batch costs;
//! - reading a random offset through the sparse index, against finding it
//!   by a linear scan of the same log (the index turned off);
//! - opening a large log (eight sealed segments of 128 MiB and an active one
//!   half full: 1 GiB and 64 MiB; `KFS_BENCH_LOG_MIB` scales it) after a
//!   clean shutdown, after a crash, and after a crash with no recovery point.
//!
//! `cargo bench -p kfs-benches --bench ch02_segments`; the book's
//! performance page quotes the figures and the ratios.

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::{BufWriter, IoSlice, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use ch02_segments::log::{CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE};
use ch02_segments::{Log, LogConfig, Record, batch};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;

/// Start a fresh log once this many bytes are written, to bound disk use.
const MAX_BYTES: u64 = 256 * 1024 * 1024;

fn config() -> LogConfig {
    LogConfig {
        segment_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// A batch of `count` records of `size` bytes, encoded as a producer would send it.
fn encoded_batch(count: usize, size: usize) -> Vec<u8> {
    let records: Vec<Record> = (0..count)
        .map(|i| Record::new(vec![0xab; size]).with_timestamp(1_700_000_000_000 + i as i64))
        .collect();
    batch::encode(&records).unwrap()
}

fn tmp() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Writes all of `parts` with vectored writes, as `Segment::append` does.
fn write_all_vectored(file: &mut File, mut parts: &mut [IoSlice<'_>]) {
    while !parts.is_empty() {
        let written = file.write_vectored(parts).unwrap();
        assert!(written > 0, "the file took no bytes");
        IoSlice::advance_slices(&mut parts, written);
    }
}

/// Times `batches` appends of `bytes` through `append`, starting a fresh
/// target (untimed) with `fresh` whenever [`MAX_BYTES`] have been written.
fn time_batches<T>(
    batches: u64,
    bytes: &[u8],
    mut fresh: impl FnMut() -> T,
    mut append: impl FnMut(&mut T, &mut [u8]),
    mut finish: impl FnMut(&mut T),
) -> Duration {
    let per_target = (MAX_BYTES / bytes.len() as u64).max(1);
    let mut scratch = bytes.to_vec();
    let mut total = Duration::ZERO;
    let mut left = batches;
    while left > 0 {
        let mut target = fresh();
        let n = left.min(per_target);
        let start = Instant::now();
        for _ in 0..n {
            append(&mut target, &mut scratch);
        }
        finish(&mut target);
        total += start.elapsed();
        left -= n;
    }
    total
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("ch02/append");
    group.sample_size(20);
    for size in [100, 1024] {
        for count in [1, 100, 1000] {
            let bytes = encoded_batch(count, size);
            let mut framed = Vec::new();
            ch01_commit_log::frame::encode(&bytes, &mut framed);
            group.throughput(Throughput::Bytes((count * size) as u64));
            let id = format!("{size}B_x{count}");
            group.bench_function(BenchmarkId::new("baseline_write", &id), |b| {
                b.iter_custom(|iters| {
                    let dir = tmp();
                    time_batches(
                        iters,
                        &framed,
                        || {
                            BufWriter::with_capacity(
                                64 * 1024,
                                File::create(dir.path().join("baseline")).unwrap(),
                            )
                        },
                        |file, frame| file.write_all(frame).unwrap(),
                        |file| file.flush().unwrap(),
                    )
                })
            });
            // The floor for any log that checksums what it stores and hands
            // each batch to the kernel before it answers: the CRC of each
            // batch computed on the spot, and its frame written with one
            // `writev` of its own, to a file opened for appending. The same
            // bytes and the same system calls as the log.
            group.bench_function(BenchmarkId::new("checksum_write", &id), |b| {
                b.iter_custom(|iters| {
                    let dir = tmp();
                    time_batches(
                        iters,
                        &bytes,
                        || {
                            let path = dir.path().join("checksummed");
                            File::create(&path).unwrap();
                            OpenOptions::new().append(true).open(path).unwrap()
                        },
                        |file, batch| {
                            let header = ch01_commit_log::frame::header(batch);
                            write_all_vectored(
                                file,
                                &mut [IoSlice::new(&header), IoSlice::new(batch)],
                            );
                        },
                        |_| {},
                    )
                })
            });
            // The same checksums, with the writes merged by a `BufWriter`:
            // what one system call per batch costs, which a log that
            // acknowledges each batch cannot avoid.
            group.bench_function(BenchmarkId::new("checksum_buffered", &id), |b| {
                b.iter_custom(|iters| {
                    let dir = tmp();
                    time_batches(
                        iters,
                        &bytes,
                        || {
                            BufWriter::with_capacity(
                                64 * 1024,
                                File::create(dir.path().join("buffered")).unwrap(),
                            )
                        },
                        |file, batch| {
                            file.write_all(&ch01_commit_log::frame::header(batch))
                                .unwrap();
                            file.write_all(batch).unwrap();
                        },
                        |file| file.flush().unwrap(),
                    )
                })
            });
            group.bench_function(BenchmarkId::new("log_append_batch", &id), |b| {
                b.iter_custom(|iters| {
                    // One log directory at a time, as the baselines keep one
                    // file: replacing it deletes the last one (untimed), so
                    // the log never has more dirty page cache than they do.
                    let mut dir = None;
                    time_batches(
                        iters,
                        &bytes,
                        || {
                            let path = dir.insert(tmp()).path().to_path_buf();
                            Log::open(path, config()).unwrap().0
                        },
                        |log, batch| {
                            black_box(log.append_batch(batch).unwrap());
                        },
                        |_| {},
                    )
                })
            });
        }
    }
    group.finish();
}

/// A log of about `mib` MiB of 1 KiB records in batches of 10.
fn build_log(dir: &Path, mib: u64, config: LogConfig) -> u64 {
    let (mut log, _) = Log::open(dir, config).unwrap();
    let bytes = encoded_batch(10, 1024);
    let batches = mib * 1024 * 1024 / bytes.len() as u64;
    let mut scratch = bytes.clone();
    for _ in 0..batches {
        log.append_batch(&mut scratch).unwrap();
    }
    let end = log.log_end_offset();
    log.close().unwrap();
    end
}

fn random_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("ch02/random_read");
    group.sample_size(20);
    let indexed = tmp();
    let unindexed = tmp();
    let end = build_log(indexed.path(), 64, config());
    // The same log with the index turned off: a lookup scans from the
    // segment's start, as chapter 1's log would have to without its
    // in-memory index.
    let no_index = LogConfig {
        index_interval_bytes: u64::MAX,
        ..config()
    };
    build_log(unindexed.path(), 64, no_index.clone());
    for (name, dir, config) in [
        ("indexed", &indexed, config()),
        ("linear_scan", &unindexed, no_index),
    ] {
        let (log, _) = Log::open(dir.path(), config).unwrap();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        group.bench_function(BenchmarkId::new(name, "64MiB"), |b| {
            b.iter(|| {
                // xorshift: cheap, deterministic random offsets
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let batches = log.read(rng % end, 1).unwrap();
                black_box(batches[0].header.base_offset)
            })
        });
    }
    group.finish();
}

fn open(c: &mut Criterion) {
    let mib: u64 = std::env::var("KFS_BENCH_LOG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut group = c.benchmark_group("ch02/open");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let dir = tmp();
    // Eight sealed segments of mib/8 (128 MiB for 1 GiB) and an active
    // segment half full, which is what a crash leaves to scan.
    let config = LogConfig {
        segment_bytes: mib * 1024 * 1024 / 8,
        ..config()
    };
    build_log(dir.path(), mib + mib / 16, config.clone());
    let id = format!("{mib}MiB");
    group.bench_function(BenchmarkId::new("after_clean_shutdown", &id), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let (log, report) = Log::open(dir.path(), config.clone()).unwrap();
                total += start.elapsed();
                assert!(report.clean_shutdown);
                log.close().unwrap();
            }
            total
        })
    });
    group.bench_function(BenchmarkId::new("after_crash", &id), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // What a crash leaves: no clean-shutdown marker.
                let _ = fs::remove_file(dir.path().join(CLEAN_SHUTDOWN_FILE));
                let start = Instant::now();
                let (log, report) = Log::open(dir.path(), config.clone()).unwrap();
                total += start.elapsed();
                assert!(!report.clean_shutdown);
                drop(log);
            }
            total
        })
    });
    group.bench_function(
        BenchmarkId::new("after_crash_without_recovery_point", &id),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let _ = fs::remove_file(dir.path().join(RECOVERY_POINT_FILE));
                    let start = Instant::now();
                    let (log, report) = Log::open(dir.path(), config.clone()).unwrap();
                    total += start.elapsed();
                    assert_eq!(report.recovery_point, 0);
                    drop(log);
                }
                total
            })
        },
    );
    group.finish();
}

criterion_group!(benches, append, random_read, open);
criterion_main!(benches);
