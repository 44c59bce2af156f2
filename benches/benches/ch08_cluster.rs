//! Chapter 8's hot path: the controller's reaction to a broker's death,
//! beside its baseline in the same run.
//!
//! A topic of 300 (and 3,000) partitions with three replicas each on three
//! brokers; broker 2 leads a third of them and its session ends.
//!
//! - `store`: the write that stores the new states (one `multi`: the epoch
//!   check and one `set_data` per changed partition, already encoded),
//!   through a three-server coordinator in one thread (`LocalCluster`: a
//!   perfect network, instant disks), from the request to its answer. What
//!   storing a decision costs, network and `fsync` aside.
//! - `decide_and_store`: the controller's whole reaction: fence the broker
//!   (chapter 6's rules: new leaders from the ISRs, new epochs), find what
//!   changed, encode it as JSON (with the runs of the ISR's brokers) into
//!   the fenced `multi`, and store it the same way.
//!
//! `cargo bench -p kfs-benches --bench ch08_cluster`; the book's
//! performance page quotes the figures and the ratios.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;

use ch06_replication::controller::{Controller, ControllerConfig, SimpleController};
use ch06_replication::protocol::HeartbeatRequest;
use ch07_coordinator::local::LocalCluster;
use ch07_coordinator::node::{ClientMessage, ServerMessage};
use ch07_coordinator::state::Request;
use ch07_coordinator::tree::{ANY_VERSION, CreateMode, Op};
use ch08_cluster::controller::{StoredState, fence_departed, fenced_write, pending, record};
use ch08_cluster::state::{CONTROLLER_EPOCH, DIRECTORIES};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The client id of the controller's session.
const CLIENT: u64 = 7;

/// A controller with brokers 1, 2 and 3 alive and topic `t` of
/// `partitions` partitions, three replicas each.
fn controller(partitions: u32) -> SimpleController {
    let config = ControllerConfig {
        session_timeout_ms: u64::MAX,
        ..ControllerConfig::default()
    };
    let mut decided = SimpleController::new(config);
    for broker_id in 1..=3 {
        let heartbeat = HeartbeatRequest {
            broker_id,
            incarnation: 1,
            address: String::new(),
            log_ends: Vec::new(),
        };
        decided.on_heartbeat(&heartbeat, 0);
    }
    decided
        .create_topic("t", partitions, 3)
        .expect("three brokers");
    decided
}

/// Every partition as stored, at any version: the benchmark writes the
/// same nodes again and again.
fn stored(decided: &SimpleController) -> BTreeMap<ch03_partitions::TopicPartition, StoredState> {
    let states = decided.partitions().iter();
    states
        .map(|(tp, state)| {
            let stored = StoredState {
                state: state.clone(),
                incarnations: Vec::new(),
                version: ANY_VERSION,
            };
            (tp.clone(), stored)
        })
        .collect()
}

/// The controller's reaction to broker 2's departure: the write it makes.
fn react(
    decided: &mut SimpleController,
    stored: &BTreeMap<ch03_partitions::TopicPartition, StoredState>,
) -> Vec<Op> {
    fence_departed(decided, &BTreeSet::from([1, 3]));
    let changes: Vec<_> = pending(decided, stored)
        .map(|(tp, state)| (tp.clone(), Some(record(decided, state, 1))))
        .collect();
    fenced_write(ANY_VERSION, &changes, stored)
}

/// Three servers with the cluster's directories and every partition's
/// node, and a session for the controller.
fn coordinator(ops: &[Op]) -> LocalCluster {
    let mut cluster = LocalCluster::new();
    cluster.connect(1, CLIENT);
    let mut creates: Vec<Op> = DIRECTORIES
        .iter()
        .map(|dir| Op::Create {
            path: dir.to_string(),
            data: Vec::new(),
            mode: CreateMode::Persistent,
        })
        .collect();
    for op in ops {
        if let Op::SetData { path, .. } = op {
            creates.push(Op::Create {
                path: path.clone(),
                data: Vec::new(),
                mode: CreateMode::Persistent,
            });
        }
    }
    let request = Request::Multi(creates);
    cluster.send(1, CLIENT, ClientMessage::Write { xid: 1, request });
    cluster.received(1, CLIENT);
    cluster
}

/// Writes `ops` as request `xid`, and checks that it went through.
fn write(cluster: &mut LocalCluster, xid: u64, ops: Vec<Op>) {
    let msg = ClientMessage::Write {
        xid,
        request: Request::Multi(ops),
    };
    let now = cluster.now;
    cluster.server(1).on_client(CLIENT, msg, now);
    cluster.settle();
    let answer = cluster.inbox.pop();
    assert!(
        matches!(
            answer,
            Some((1, CLIENT, ServerMessage::WriteDone { ref result, .. })) if result.is_ok()
        ),
        "{answer:?}"
    );
    // Keep the servers' logs from growing without bound in memory.
    if xid.is_multiple_of(64) {
        cluster.pass(20);
        for id in 1..=3 {
            cluster.server(id).compact();
        }
    }
}

fn failover(c: &mut Criterion) {
    let mut group = c.benchmark_group("ch08");
    group.sample_size(20);
    for partitions in [300, 3_000] {
        let decided = controller(partitions);
        let stored = stored(&decided);
        let ops = react(&mut decided.clone(), &stored);
        assert!(matches!(&ops[0], Op::Check { path, .. } if path == CONTROLLER_EPOCH));
        // Broker 2's partitions change leader; the others lose it from
        // their ISR: every partition is written.
        assert_eq!(ops.len(), partitions as usize + 1);
        group.throughput(Throughput::Elements(u64::from(partitions)));
        group.bench_function(BenchmarkId::new("store", partitions), |b| {
            let mut cluster = coordinator(&ops);
            let mut xid = 1;
            b.iter(|| {
                xid += 1;
                write(&mut cluster, xid, ops.clone());
            })
        });
        group.bench_function(BenchmarkId::new("decide_and_store", partitions), |b| {
            let mut cluster = coordinator(&ops);
            let mut xid = 1;
            b.iter_batched(
                || decided.clone(),
                |mut decided| {
                    xid += 1;
                    let ops = react(&mut decided, &stored);
                    write(&mut cluster, xid, black_box(ops));
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, failover);
criterion_main!(benches);
