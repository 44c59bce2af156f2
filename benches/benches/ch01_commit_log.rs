//! Chapter 1's hot paths, each beside its baseline in the same run:
//!
//! - appending 100-byte and 1 KiB records, against plain buffered `write`
//!   calls of the very same frame bytes to a file, and beside the cost of
//!   encoding a frame (the checksum) alone;
//! - appending with a sync after every record, against `write` + `fdatasync`;
//! - reading the log back in order, against reading the file's bytes in
//!   64 KiB chunks (what `cat` does).
//!
//! `cargo bench -p kfs-benches --bench ch01_commit_log`; the book's
//! performance page quotes the figures and the ratios.

use std::fs::{self, File};
use std::hint::black_box;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ch01_commit_log::{Config, Log, frame};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 2] = [100, 1024];
/// Start a fresh file once this many bytes are written, to keep disk use bounded.
const MAX_FILE: u64 = 256 * 1024 * 1024;
/// Appends timed together, so that reading the clock costs nothing per append.
const CHUNK: u64 = 1000;

/// Something that takes records: the log, or a baseline writing the same bytes.
trait Sink {
    fn write(&mut self, payload: &[u8], frame: &[u8]);
    fn finish(&mut self);
}

struct LogSink {
    log: Log,
    sync_each: bool,
}

impl Sink for LogSink {
    fn write(&mut self, payload: &[u8], _frame: &[u8]) {
        black_box(self.log.append(payload).unwrap());
        if self.sync_each {
            self.log.sync().unwrap();
        }
    }
    fn finish(&mut self) {
        self.log.flush().unwrap();
    }
}

struct FileSink {
    file: BufWriter<File>,
    sync_each: bool,
}

impl Sink for FileSink {
    fn write(&mut self, _payload: &[u8], frame: &[u8]) {
        self.file.write_all(frame).unwrap();
        if self.sync_each {
            self.file.flush().unwrap();
            self.file.get_ref().sync_data().unwrap();
        }
    }
    fn finish(&mut self) {
        self.file.flush().unwrap();
    }
}

fn new_path(dir: &Path) -> PathBuf {
    let path = dir.join("bench.log");
    let _ = fs::remove_file(&path);
    path
}

fn log_sink(dir: &Path, sync_each: bool) -> LogSink {
    let (log, _) = Log::open(new_path(dir), Config::default()).unwrap();
    LogSink { log, sync_each }
}

fn file_sink(dir: &Path, sync_each: bool) -> FileSink {
    // The same 64 KiB buffer as the log's default write buffer.
    let file = BufWriter::with_capacity(64 * 1024, File::create(new_path(dir)).unwrap());
    FileSink { file, sync_each }
}

/// Times `iters` writes of one record through sinks made by `make`, starting
/// a fresh file (untimed) whenever the current one reaches [`MAX_FILE`].
fn time_writes<S: Sink>(iters: u64, size: usize, mut make: impl FnMut() -> S) -> Duration {
    let payload = vec![0xab; size];
    let mut framed = Vec::new();
    frame::encode(&payload, &mut framed);
    let per_file = MAX_FILE / framed.len() as u64;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let mut sink = make();
        let mut in_file = 0;
        while left > 0 && in_file < per_file {
            let n = left.min(CHUNK).min(per_file - in_file);
            let start = Instant::now();
            for _ in 0..n {
                sink.write(&payload, &framed);
            }
            sink.finish();
            total += start.elapsed();
            left -= n;
            in_file += n;
        }
    }
    total
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut group = c.benchmark_group("ch01/append");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("baseline_write", size),
            &size,
            |b, &size| {
                b.iter_custom(|iters| time_writes(iters, size, || file_sink(dir.path(), false)))
            },
        );
        group.bench_with_input(BenchmarkId::new("log_append", size), &size, |b, &size| {
            b.iter_custom(|iters| time_writes(iters, size, || log_sink(dir.path(), false)))
        });
        // The part of an append the baseline does not do: framing and the CRC.
        group.bench_with_input(
            BenchmarkId::new("frame_encode_only", size),
            &size,
            |b, &size| {
                let payload = vec![0xab; size];
                let mut out = Vec::with_capacity(2 * size);
                b.iter(|| {
                    out.clear();
                    frame::encode(black_box(&payload), &mut out);
                    black_box(out.len())
                })
            },
        );
        // ...and of that, the checksum alone (as `frame::encode` computes it).
        group.bench_with_input(BenchmarkId::new("crc32_only", size), &size, |b, &size| {
            let payload = vec![0xab; size];
            b.iter(|| {
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(&(size as u32).to_be_bytes());
                hasher.update(black_box(&payload));
                black_box(hasher.finalize())
            })
        });
    }
    group.finish();
}

fn append_sync(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut group = c.benchmark_group("ch01/append_sync_each");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("baseline_write_fdatasync", size),
            &size,
            |b, &size| {
                b.iter_custom(|iters| time_writes(iters, size, || file_sink(dir.path(), true)))
            },
        );
        group.bench_with_input(
            BenchmarkId::new("log_append_sync", size),
            &size,
            |b, &size| {
                b.iter_custom(|iters| time_writes(iters, size, || log_sink(dir.path(), true)))
            },
        );
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    const RECORDS: u64 = 100_000;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut group = c.benchmark_group("ch01/read_all");
    group.sample_size(20);
    for size in SIZES {
        let path = dir.path().join(format!("read-{size}.log"));
        let (mut log, _) = Log::open(&path, Config::default()).unwrap();
        let payload = vec![0xcd; size];
        for _ in 0..RECORDS {
            log.append(&payload).unwrap();
        }
        log.sync().unwrap();
        group.throughput(Throughput::Bytes(RECORDS * size as u64));
        // The file is in the page cache for both: this measures our code,
        // not the disk.
        group.bench_with_input(
            BenchmarkId::new("baseline_read_file", size),
            &path,
            |b, path| {
                let mut buf = vec![0; 64 * 1024];
                b.iter(|| {
                    let mut file = File::open(path).unwrap();
                    let mut n = 0;
                    loop {
                        match file.read(&mut buf).unwrap() {
                            0 => break black_box(n),
                            read => n += read,
                        }
                    }
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("log_iter", size), &log, |b, log| {
            b.iter(|| {
                let mut n = 0;
                for record in log.iter_from(0).unwrap() {
                    n += black_box(record.unwrap().payload.len());
                }
                assert_eq!(n, RECORDS as usize * size);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append, append_sync, read);
criterion_main!(benches);
