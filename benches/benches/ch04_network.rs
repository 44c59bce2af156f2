//! Chapter 4 end to end on loopback, client and broker in one process (as
//! on one 2-core machine), each beside its baseline in the same run:
//!
//! - producing 100-byte and 1 KiB records with the `Producer` (`batch.size`
//!   16 KiB, Kafka's default, and 256 KiB; `linger.ms` 5, `acks` 1) to a `Server`, until every record is
//!   acknowledged, against the baseline a broker cannot beat: the same
//!   number of bytes sent over a loopback TCP connection to a thread that
//!   appends them to a file;
//! - consuming them back with the `Consumer` from the first offset.
//!
//! `cargo bench -p kfs-benches --bench ch04_network`; the book's
//! performance page quotes the figures and the ratios.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ch02_segments::Record;
use ch03_partitions::{TopicPartition, TopicStore};
use ch04_network::{
    Admin, BrokerConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ServerConfig, broker,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kfs_benches::loopback_to_file;
use tempfile::TempDir;
use tokio::runtime::Runtime;

/// Bytes per timed run: 32 MiB of values.
const RUN_BYTES: usize = 32 * 1024 * 1024;

fn tmp() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A broker on a free loopback port over a fresh data directory, with a
/// one-partition topic "t". Returns its address and a handle to stop it.
async fn start_broker(dir: &TempDir) -> (String, tokio::sync::oneshot::Sender<()>) {
    let (store, _) = TopicStore::open(dir.path()).unwrap();
    let server = broker::bind(
        "127.0.0.1:0".parse().unwrap(),
        store,
        ServerConfig::default(),
        BrokerConfig::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let admin = Admin::connect(&addr, Duration::from_secs(10))
        .await
        .unwrap();
    admin
        .create_topic("t", 1, vec![("segment.ms".into(), i64::MAX.to_string())])
        .await
        .unwrap();
    (addr, stop)
}

/// Sends `count` records of `size` bytes in batches of up to `batch_size`
/// bytes and waits for every ack, keeping at most 64 Ki unacknowledged.
async fn produce(addr: &str, count: usize, size: usize, batch_size: usize) {
    let config = ProducerConfig {
        batch_size,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(addr, config).await.unwrap();
    let value = vec![0xab; size];
    let mut window = VecDeque::new();
    for _ in 0..count {
        let delivery = producer
            .send(
                "t",
                Record::new(value.clone()).with_timestamp(1_700_000_000_000),
            )
            .await
            .unwrap();
        window.push_back(delivery);
        if window.len() >= 64 * 1024 {
            window.pop_front().unwrap().await.unwrap();
        }
    }
    for delivery in window {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

fn network(c: &mut Criterion) {
    let mut group = c.benchmark_group("ch04");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let rt = runtime();
    for size in [100, 1024] {
        let count = RUN_BYTES / size;
        group.throughput(Throughput::Elements(count as u64));
        let id = format!("{size}B");
        group.bench_function(BenchmarkId::new("baseline_tcp_to_file", &id), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| loopback_to_file(count * size, tmp().path()))
                    .sum()
            })
        });
        // Kafka's default `batch.size` (16 KiB), and a large one (256 KiB)
        // as a throughput run of `kafka-producer-perf-test` would set it.
        for (name, batch_size) in [("produce", 16 * 1024), ("produce_batch_256KiB", 256 * 1024)] {
            group.bench_function(BenchmarkId::new(name, &id), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let dir = tmp();
                            let (addr, stop) = start_broker(&dir).await;
                            let start = Instant::now();
                            produce(&addr, count, size, batch_size).await;
                            total += start.elapsed();
                            let _ = stop.send(());
                        }
                        total
                    })
                })
            });
        }
        group.bench_function(BenchmarkId::new("consume", &id), |b| {
            let dir = tmp();
            let (addr, stop) = rt.block_on(start_broker(&dir));
            rt.block_on(produce(&addr, count, size, 16 * 1024));
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let config = ConsumerConfig {
                            auto_offset_reset: OffsetReset::Earliest,
                            ..ConsumerConfig::default()
                        };
                        let start = Instant::now();
                        let mut consumer = Consumer::connect(&addr, config).await.unwrap();
                        consumer.assign([TopicPartition::new("t", 0)]);
                        let mut read = 0;
                        while read < count {
                            read += consumer.poll(Duration::from_secs(10)).await.unwrap().len();
                        }
                        total += start.elapsed();
                    }
                    total
                })
            });
            let _ = stop.send(());
        });
    }
    group.finish();
}

criterion_group!(benches, network);
criterion_main!(benches);
