//! Consumer groups through the clients, against a real group broker on
//! loopback: sharing partitions, rebalancing when members come and go,
//! committed offsets that survive consumers and broker restarts.

mod common;

use ch03_partitions::TopicPartition;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ch02_segments::{Clock, Record, SystemClock};
use ch04_network::{Admin, Producer, ProducerConfig, ServerConfig};
use ch05_consumer_groups::assignor::CooperativeStickyAssignor;
use ch05_consumer_groups::consumer::{GroupConsumer, GroupConsumerConfig, RebalanceListener};
use ch05_consumer_groups::offsets::OffsetsConfig;
use common::{TestBroker, fast, group_config};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(20);

async fn topic(addr: &str, name: &str, partitions: u32) {
    let admin = Admin::connect(addr, DEADLINE).await.unwrap();
    admin.create_topic(name, partitions, vec![]).await.unwrap();
}

async fn produce(addr: &str, topic: &str, count: usize) {
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .unwrap();
    for i in 0..count {
        // Stamped now: a record stamped 0 is older than any retention, and
        // the retention check would delete it under a test that runs it.
        let now = SystemClock.now_ms();
        let record = Record::new(format!("{i}"))
            .with_timestamp(now)
            .with_key(format!("key-{i}"));
        producer.send(topic, record).await.unwrap();
    }
    producer.close().await.unwrap();
}

/// A member polling in a task of its own, publishing its assignment after
/// every poll. Aborting the task drops the consumer: a crash.
struct Member {
    assignment: watch::Receiver<Vec<TopicPartition>>,
    task: JoinHandle<()>,
}

fn member(addr: &str, client_id: &str) -> Member {
    member_with(addr, fast("g", client_id))
}

fn member_with(addr: &str, config: GroupConsumerConfig) -> Member {
    let (tx, rx) = watch::channel(Vec::new());
    let addr = addr.to_string();
    let task = tokio::spawn(async move {
        let mut consumer = GroupConsumer::connect(&addr, config).await.unwrap();
        consumer.subscribe(["t"]);
        loop {
            consumer.poll(Duration::from_millis(50)).await.unwrap();
            let _ = tx.send(consumer.assignment());
        }
    });
    Member {
        assignment: rx,
        task,
    }
}

/// Waits until the members' assignments are disjoint, cover partitions
/// 0..6 of "t", and have these sizes (sorted).
async fn wait_for_split(members: &[&Member], sizes: &[usize]) -> Vec<Vec<TopicPartition>> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let assignments: Vec<Vec<TopicPartition>> = members
            .iter()
            .map(|m| m.assignment.borrow().clone())
            .collect();
        let mut counts: Vec<usize> = assignments.iter().map(Vec::len).collect();
        counts.sort();
        let all: BTreeSet<&TopicPartition> = assignments.iter().flatten().collect();
        let total: usize = counts.iter().sum();
        if counts == sizes && all.len() == 6 && total == 6 {
            return assignments;
        }
        assert!(
            Instant::now() < deadline,
            "no split {sizes:?} in time: {assignments:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_and_rebalance_when_they_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    topic(&broker.addr, "t", 6).await;

    let a = member(&broker.addr, "a");
    let b = member(&broker.addr, "b");
    let c = member(&broker.addr, "c");
    wait_for_split(&[&a, &b, &c], &[2, 2, 2]).await;

    // A fourth joins: 2, 2, 1, 1.
    let d = member(&broker.addr, "d");
    wait_for_split(&[&a, &b, &c, &d], &[1, 1, 2, 2]).await;

    // One dies without leaving: after its session times out, the other
    // three share its partitions.
    d.task.abort();
    let split = wait_for_split(&[&a, &b, &c], &[2, 2, 2]).await;
    assert_eq!(split.iter().flatten().count(), 6);
    for m in [a, b, c] {
        m.task.abort();
    }
}

/// One call of a listener: "revoked" or "assigned", and the partitions.
type Move = (&'static str, Vec<TopicPartition>);

/// Records, in order, the partitions revoked and assigned.
#[derive(Clone, Default)]
struct Moves(Arc<Mutex<Vec<Move>>>);

impl RebalanceListener for Moves {
    fn on_partitions_revoked(&mut self, partitions: &[TopicPartition]) {
        self.0
            .lock()
            .unwrap()
            .push(("revoked", partitions.to_vec()));
    }

    fn on_partitions_assigned(&mut self, partitions: &[TopicPartition]) {
        self.0
            .lock()
            .unwrap()
            .push(("assigned", partitions.to_vec()));
    }
}

fn cooperative(client_id: &str) -> GroupConsumerConfig {
    GroupConsumerConfig {
        enable_auto_commit: false,
        assignors: vec![Arc::new(CooperativeStickyAssignor)],
        ..fast("g", client_id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_members_give_up_only_what_moves_and_keep_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    topic(&broker.addr, "t", 6).await;
    produce(&broker.addr, "t", 60).await;

    // a alone reads everything (and commits nothing).
    let mut a = GroupConsumer::connect(&broker.addr, cooperative("a"))
        .await
        .unwrap();
    let moves = Moves::default();
    a.set_listener(moves.clone());
    a.subscribe(["t"]);
    let mut read = 0;
    while read < 60 {
        read += a.poll(Duration::from_millis(50)).await.unwrap().len();
    }
    let positions: BTreeMap<TopicPartition, Option<u64>> = a
        .assignment()
        .into_iter()
        .map(|tp| {
            let position = a.position(&tp);
            (tp, position)
        })
        .collect();
    assert_eq!(positions.len(), 6);

    // b joins. a polls on until the partitions are split 3 and 3; it is
    // never told to give up more than it loses, and it never shares one.
    let b = member_with(&broker.addr, cooperative("b"));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let records = a.poll(Duration::from_millis(20)).await.unwrap();
        assert!(
            records.is_empty(),
            "a kept partition was read again: {records:?}"
        );
        let (mine, theirs) = (a.assignment(), b.assignment.borrow().clone());
        assert!(
            mine.iter().all(|tp| !theirs.contains(tp)),
            "shared: {mine:?} {theirs:?}"
        );
        if mine.len() == 3 && theirs.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 3-3 split: {mine:?} {theirs:?}"
        );
    }
    let kept = a.assignment();
    for tp in &kept {
        assert_eq!(a.position(tp), positions[tp], "{tp} moved");
    }
    let moves = moves.0.lock().unwrap().clone();
    let revoked: Vec<TopicPartition> = moves
        .iter()
        .filter(|(what, _)| *what == "revoked")
        .flat_map(|(_, ps)| ps.clone())
        .collect();
    assert_eq!(revoked.len(), 3, "only what moved: {moves:?}");
    assert!(revoked.iter().all(|tp| !kept.contains(tp)), "{moves:?}");
    b.task.abort();
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_cooperative_member_rejoins_claiming_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    topic(&broker.addr, "t", 6).await;

    // z polls in a task of its own, and stops for 1.5 s when told to:
    // longer than its `max.poll.interval.ms`, so it leaves the group.
    let pause = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, z) = watch::channel(Vec::new());
    let mut config = cooperative("z");
    config.max_poll_interval = Duration::from_millis(600);
    let (addr, paused) = (broker.addr.clone(), pause.clone());
    let z_task = tokio::spawn(async move {
        let mut z = GroupConsumer::connect(&addr, config).await.unwrap();
        z.subscribe(["t"]);
        loop {
            if paused.swap(false, std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            z.poll(Duration::from_millis(20)).await.unwrap();
            let _ = tx.send(z.assignment());
        }
    });
    let deadline = Instant::now() + DEADLINE;
    while z.borrow().len() < 6 {
        assert!(Instant::now() < deadline, "z never got all six");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // a joins; they settle on 3 and 3.
    let mut a = GroupConsumer::connect(&broker.addr, cooperative("a"))
        .await
        .unwrap();
    let moves = Moves::default();
    a.set_listener(moves.clone());
    a.subscribe(["t"]);
    let settled = |a: &GroupConsumer, z: &watch::Receiver<Vec<TopicPartition>>| {
        a.assignment().len() == 3 && z.borrow().len() == 3
    };
    while !settled(&a, &z) {
        a.poll(Duration::from_millis(20)).await.unwrap();
        assert!(Instant::now() < deadline, "no 3-3 split");
    }

    // z stalls and leaves; a takes all six.
    pause.store(true, std::sync::atomic::Ordering::SeqCst);
    while a.assignment().len() < 6 {
        a.poll(Duration::from_millis(20)).await.unwrap();
        assert!(Instant::now() < deadline, "a never took z's partitions");
    }
    moves.0.lock().unwrap().clear();
    let held = a.assignment();

    // z polls again. Its partitions were lost when it left, so it claims
    // none: had it claimed its old three, which a now owns, the assignor
    // would have withheld them from a too, and a would have given up all
    // six instead of the three that move.
    while !settled(&a, &z) {
        a.poll(Duration::from_millis(20)).await.unwrap();
        assert!(Instant::now() < deadline, "no 3-3 split after z came back");
    }
    let moves = moves.0.lock().unwrap().clone();
    let revoked: Vec<TopicPartition> = moves
        .iter()
        .filter(|(what, _)| *what == "revoked")
        .flat_map(|(_, ps)| ps.clone())
        .collect();
    assert_eq!(revoked.len(), 3, "only what moved: {moves:?}");
    assert!(a.assignment().iter().all(|tp| held.contains(tp)));
    z_task.abort();
    a.close().await.unwrap();
}

#[tokio::test]
async fn a_new_member_resumes_from_the_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    topic(&broker.addr, "t", 1).await;
    produce(&broker.addr, "t", 100).await;

    let mut config = fast("g", "first");
    config.enable_auto_commit = false;
    let mut first = GroupConsumer::connect(&broker.addr, config).await.unwrap();
    let moves = Moves::default();
    first.set_listener(moves.clone());
    first.subscribe(["t"]);
    let mut read = 0;
    while read < 60 {
        read += first.poll(Duration::from_secs(1)).await.unwrap().len();
    }
    assert_eq!(
        *moves.0.lock().unwrap(),
        [("assigned", vec![TopicPartition::new("t", 0)])]
    );
    // Processed up to offset 49: the next to read is 50.
    first
        .commit_offsets_sync(&[(TopicPartition::new("t", 0), 50)])
        .await
        .unwrap();
    first.close().await.unwrap();

    let mut second = GroupConsumer::connect(&broker.addr, fast("g", "second"))
        .await
        .unwrap();
    second.subscribe(["t"]);
    let records = loop {
        let records = second.poll(Duration::from_secs(1)).await.unwrap();
        if !records.is_empty() {
            break records;
        }
    };
    assert_eq!(
        records[0].offset, 50,
        "not from the beginning, not after 60"
    );
    second.close().await.unwrap();
}

#[tokio::test]
async fn committed_offsets_survive_a_broker_restart_and_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    // Small offset segments, cleaned every 50 ms.
    let mut groups = group_config();
    groups.offsets = OffsetsConfig {
        partitions: 3,
        segment_bytes: 512,
        cleanup_segments: 2,
    };
    let server = ServerConfig {
        retention_check_interval: Duration::from_millis(50),
        ..ServerConfig::default()
    };
    let mut broker = TestBroker::start_with(dir.path(), server.clone(), groups.clone()).await;
    topic(&broker.addr, "t", 4).await;
    // Enough records in every partition for the positions below.
    produce(&broker.addr, "t", 400).await;
    let mut config = fast("g", "c");
    config.enable_auto_commit = false;
    let mut consumer = GroupConsumer::connect(&broker.addr, config).await.unwrap();
    consumer.subscribe(["t"]);
    consumer.poll(Duration::from_millis(10)).await.unwrap();
    // Many commits of the same four positions: only the last counts.
    let position = |round: u64, p: u32| round % 7 + 3 * u64::from(p);
    for round in 1..=200u64 {
        let offsets: Vec<(TopicPartition, u64)> = (0..4)
            .map(|p| (TopicPartition::new("t", p), position(round, p)))
            .collect();
        consumer.commit_offsets_sync(&offsets).await.unwrap();
    }
    // Let the cleaner run, then check the topic shrank.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(consumer);
    broker.stop().await;
    let (store, _) = ch03_partitions::TopicStore::open(dir.path()).unwrap();
    let segments: usize = (0..3)
        .map(|p| store.log("__consumer_offsets", p).unwrap().segments().len())
        .sum();
    let records: u64 = (0..3)
        .map(|p| {
            let log = store.log("__consumer_offsets", p).unwrap();
            log.log_end_offset() - log.log_start_offset()
        })
        .sum();
    assert!(
        records < 800,
        "cleaning kept {records} of 800 commit records in {segments} segments"
    );
    drop(store);

    // After the restart, the latest commits are there.
    let broker = TestBroker::start_with(dir.path(), server, groups).await;
    let mut config = fast("g", "again");
    config.enable_auto_commit = false;
    let mut consumer = GroupConsumer::connect(&broker.addr, config).await.unwrap();
    consumer.subscribe(["t"]);
    // Each partition's first record read is at its last commit.
    let mut first: BTreeMap<u32, u64> = BTreeMap::new();
    let deadline = Instant::now() + DEADLINE;
    while first.len() < 4 {
        for r in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            first.entry(r.partition).or_insert(r.offset);
        }
        assert!(Instant::now() < deadline, "read {first:?}");
    }
    let expected: BTreeMap<u32, u64> = (0..4).map(|p| (p, position(200, p))).collect();
    assert_eq!(first, expected);
}
