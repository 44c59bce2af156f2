//! A history checker in the spirit of the Maelstrom Kafka workload: several
//! producers, and a group of consumers that crash and restart at random
//! while they read. Everything each side saw is recorded, then checked:
//!
//! - no acknowledged record is lost: every one was read, with its value;
//! - each consumer's reads of a partition only move forward (within one
//!   incarnation and generation);
//! - consumption resumes from committed offsets: per partition, in the
//!   order reads happened, no read is beyond one past the highest offset
//!   read before it (duplicates allowed, gaps not), and the re-reading
//!   stays bounded.
//!
//! The seed is printed; `KFS_SEED=<seed>` replays a failure's choices.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ch02_segments::{Clock, Record, SystemClock};
use ch04_network::{Admin, Producer, ProducerConfig};
use ch05_consumer_groups::assignor::CooperativeStickyAssignor;
use ch05_consumer_groups::consumer::GroupConsumer;
use common::{TestBroker, fast};
use tokio::time::Instant;

const PARTITIONS: u32 = 4;
const PRODUCERS: usize = 2;
const PER_PRODUCER: usize = 1500;
const CONSUMERS: usize = 3;

/// One record as a consumer saw it.
#[derive(Debug, Clone)]
struct Read {
    /// When, in the order of all reads.
    seq: u64,
    slot: usize,
    incarnation: u32,
    generation: i32,
    partition: u32,
    offset: u64,
    value: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_record_is_lost_and_consumers_resume_from_commits() {
    check_history(false).await;
}

/// The same with cooperative rebalancing (KIP-429), where members keep
/// reading through rebalances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_holds_with_cooperative_rebalancing() {
    check_history(true).await;
}

async fn check_history(cooperative: bool) {
    let seed = std::env::var("KFS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("KFS_SEED={seed}");
    // `RUST_LOG=debug` shows the joins and syncs of a failing run.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let addr = broker.addr.clone();
    let admin = Admin::connect(&addr, Duration::from_secs(10))
        .await
        .unwrap();
    admin.create_topic("h", PARTITIONS, vec![]).await.unwrap();

    // Producers: keyed records in small bursts, every ack noted.
    let acked = Arc::new(Mutex::new(BTreeMap::<(u32, u64), Vec<u8>>::new()));
    let mut producers = Vec::new();
    for id in 0..PRODUCERS {
        let (addr, acked) = (addr.clone(), acked.clone());
        producers.push(tokio::spawn(async move {
            let producer = Producer::connect(&addr, ProducerConfig::default())
                .await
                .unwrap();
            for burst in 0..PER_PRODUCER / 50 {
                let mut deliveries = Vec::new();
                for i in 0..50 {
                    let value = format!("p{id}-{}", burst * 50 + i).into_bytes();
                    let record = Record::new(value.clone())
                        .with_timestamp(SystemClock.now_ms())
                        .with_key(format!("k{i}"));
                    deliveries.push((value, producer.send("h", record).await.unwrap()));
                }
                for (value, delivery) in deliveries {
                    let stored = delivery.await.unwrap();
                    let offset = stored.offset.unwrap();
                    acked
                        .lock()
                        .unwrap()
                        .insert((stored.partition, offset), value);
                }
                // Spread over a few seconds, so consumers crash mid-stream.
                tokio::time::sleep(Duration::from_millis(80)).await;
            }
            producer.close().await.unwrap();
        }));
    }

    // Consumers: each slot runs incarnations that read for a while, then
    // crash (drop, no leave, no last commit) or close cleanly.
    let reads = Arc::new(Mutex::new(Vec::<Read>::new()));
    let seq = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut slots = Vec::new();
    for slot in 0..CONSUMERS {
        let (addr, reads, seq, done) = (addr.clone(), reads.clone(), seq.clone(), done.clone());
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(slot as u64));
        slots.push(tokio::spawn(async move {
            let mut incarnation = 0;
            while !done.load(Ordering::SeqCst) {
                incarnation += 1;
                let mut config = fast("readers", &format!("c{slot}"));
                if cooperative {
                    config.assignors = vec![Arc::new(CooperativeStickyAssignor)];
                }
                let mut consumer = GroupConsumer::connect(&addr, config).await.unwrap();
                consumer.subscribe(["h"]);
                // It reads for a while once in the group (joining may wait
                // for a predecessor's session to time out).
                let mut until = None;
                while until.is_none_or(|t| Instant::now() < t) && !done.load(Ordering::SeqCst) {
                    let records = consumer.poll(Duration::from_millis(50)).await.unwrap();
                    let generation = consumer.generation().map_or(-1, |(_, g)| g);
                    if until.is_none() && generation > 0 {
                        until = Some(Instant::now() + Duration::from_millis(rng.u64(100..600)));
                    }
                    let mut log = reads.lock().unwrap();
                    for r in records {
                        log.push(Read {
                            seq: seq.fetch_add(1, Ordering::SeqCst),
                            slot,
                            incarnation,
                            generation,
                            partition: r.partition,
                            offset: r.offset,
                            value: r.record.value,
                        });
                    }
                }
                if rng.bool() {
                    drop(consumer); // a crash
                } else {
                    consumer.close().await.unwrap();
                }
            }
        }));
    }

    for p in producers {
        p.await.unwrap();
    }
    let expected = acked.lock().unwrap().clone();
    assert_eq!(expected.len(), PRODUCERS * PER_PRODUCER);
    println!("produced in {:?}", started.elapsed());
    // Wait until everything acknowledged has been read by someone.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: BTreeSet<(u32, u64)> = reads
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect();
        if expected.keys().all(|k| seen.contains(k)) {
            break;
        }
        let missing = expected.keys().filter(|k| !seen.contains(k)).count();
        assert!(
            Instant::now() < deadline,
            "seed {seed}: {missing} acknowledged records never read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("all read in {:?}", started.elapsed());
    done.store(true, Ordering::SeqCst);
    for s in slots {
        s.await.unwrap();
    }

    let mut reads = reads.lock().unwrap().clone();
    reads.sort_by_key(|r| r.seq);
    // Nothing lost, nothing changed.
    for r in &reads {
        assert_eq!(
            expected.get(&(r.partition, r.offset)),
            Some(&r.value),
            "seed {seed}: {r:?}"
        );
    }
    // Monotonic within a consumer's incarnation and generation.
    let mut last: BTreeMap<(usize, u32, i32, u32), u64> = BTreeMap::new();
    for r in &reads {
        let key = (r.slot, r.incarnation, r.generation, r.partition);
        if let Some(&previous) = last.get(&key) {
            assert!(
                r.offset > previous,
                "seed {seed}: went back from {previous} in {r:?}"
            );
        }
        last.insert(key, r.offset);
    }
    // No gaps: resuming never skips past what was read.
    let mut highest: BTreeMap<u32, i64> = BTreeMap::new();
    for r in &reads {
        let seen = highest.entry(r.partition).or_insert(-1);
        assert!(
            r.offset as i64 <= *seen + 1,
            "seed {seed}: a gap before {r:?} (read up to {seen})"
        );
        *seen = (*seen).max(r.offset as i64);
    }
    // Duplicates, yes (at least once), but bounded: consumers resumed from
    // commits, not from the beginning.
    let incarnations: u32 = reads.iter().map(|r| r.incarnation).max().unwrap_or(0);
    println!(
        "{} reads of {} records, {incarnations} incarnations at most per slot",
        reads.len(),
        expected.len()
    );
    assert!(
        reads.len() < 4 * expected.len(),
        "seed {seed}: {} reads of {} records",
        reads.len(),
        expected.len()
    );
}
