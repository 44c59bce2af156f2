//! Chapter 7's hot path: a write through Raft, beside its baseline in the
//! same run.
//!
//! - `replicated_write`: a client's `set_data` of 100 bytes (and 1 KiB) to
//!   a three-server ensemble in one thread (`LocalCluster`: a perfect
//!   network and instant disks), from the request to its answer: the
//!   leader proposes, both followers append and answer, the leader commits
//!   and applies, and answers. What consensus costs the CPU per write,
//!   network and `fsync` aside.
//! - `baseline_apply`: the same write applied to one copy of the state
//!   (`State::apply`), with no replication: the work the write itself is.
//!
//! `cargo bench -p kfs-benches --bench ch07_coordinator`; the book's
//! performance page quotes the figures and the ratios.

use std::hint::black_box;

use ch07_coordinator::local::LocalCluster;
use ch07_coordinator::node::{ClientMessage, ServerMessage};
use ch07_coordinator::state::{Command, LogEntry, Request, State};
use ch07_coordinator::tree::ANY_VERSION;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SESSION: u64 = 1;

fn set(size: usize, xid: u64) -> Request {
    Request::SetData {
        path: "/k".into(),
        data: vec![xid as u8; size],
        version: ANY_VERSION,
    }
}

fn create() -> Request {
    Request::Create {
        path: "/k".into(),
        data: Vec::new(),
        ephemeral: false,
        sequential: false,
    }
}

fn writes(c: &mut Criterion) {
    let mut group = c.benchmark_group("ch07");
    for size in [100, 1024] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("baseline_apply", size), |b| {
            let mut state = State::new();
            let open = Command::OpenSession {
                session: SESSION,
                timeout_ms: 60_000,
            };
            state.apply(
                1,
                &LogEntry {
                    time: 0,
                    command: open,
                },
            );
            let request = Command::Request {
                session: SESSION,
                xid: 1,
                after: None,
                request: create(),
            };
            state.apply(
                2,
                &LogEntry {
                    time: 0,
                    command: request,
                },
            );
            let mut index = 2;
            b.iter(|| {
                index += 1;
                let command = Command::Request {
                    session: SESSION,
                    xid: index,
                    after: None,
                    request: set(size, index),
                };
                black_box(state.apply(index, &LogEntry { time: 0, command }));
            })
        });
        group.bench_function(BenchmarkId::new("replicated_write", size), |b| {
            let mut cluster = LocalCluster::new();
            cluster.connect(1, 7);
            let first = ClientMessage::Write {
                xid: 1,
                request: create(),
            };
            cluster.send(1, 7, first);
            cluster.received(1, 7);
            let mut xid = 1;
            b.iter(|| {
                xid += 1;
                let msg = ClientMessage::Write {
                    xid,
                    request: set(size, xid),
                };
                let now = cluster.now;
                cluster.server(1).on_client(7, msg, now);
                cluster.settle();
                let answer = cluster.inbox.pop();
                assert!(
                    matches!(answer, Some((1, 7, ServerMessage::WriteDone { .. }))),
                    "{answer:?}"
                );
                // Followers learn the commit from the next heartbeat; keep
                // their logs from growing without bound in memory by
                // compacting now and then.
                if xid % 4096 == 0 {
                    cluster.pass(20);
                    for id in 1..=3 {
                        cluster.server(id).compact();
                    }
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, writes);
criterion_main!(benches);
