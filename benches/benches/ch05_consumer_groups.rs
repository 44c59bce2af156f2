//! Chapter 5's hot paths, over loopback to a group broker in this process,
//! each beside its baseline in the same run:
//!
//! - a rebalance of a formed group of N members (2, 8, 32), each on its
//!   own connection: all rejoin at once; the coordinator holds the joins
//!   until all are in, answers, the leader runs the range assignor over a
//!   64-partition topic and syncs, the followers' syncs are answered. Timed
//!   from the first join sent to the last assignment received. Baseline: the same N
//!   connections each making two round trips (a heartbeat, twice), the
//!   least a rebalance's join and sync could cost;
//! - committing: 4 tasks each committing one partition's offset at a time
//!   (`OffsetCommit`, stored as a record in `__consumer_offsets`). Baseline:
//!   the same 4 tasks each producing one 100-byte record per request with
//!   `acks` 1 to an ordinary topic: a commit *is* an append.
//!
//! `cargo bench -p kfs-benches --bench ch05_consumer_groups`; the book's
//! performance page quotes the figures and the ratios.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use ch02_segments::{Record, batch};
use ch03_partitions::TopicStore;
use ch04_network::protocol::{
    ApiKey, ProducePartition, ProduceRequest, ProduceResponse, ProduceTopic,
};
use ch04_network::{Admin, Client, ErrorCode, ServerConfig};
use ch05_consumer_groups::assignor::{Assignor, Members, PartitionCounts, RangeAssignor};
use ch05_consumer_groups::protocol::{
    CONSUMER_PROTOCOL, CommitPartition, ErrorOnly, GroupApi, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, OffsetCommitRequest, OffsetCommitResponse, Subscription, SyncGroupRequest,
    SyncGroupResponse, decode_metadata, encode_metadata,
};
use ch05_consumer_groups::service::{self, GroupConfig};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const PARTITIONS: u32 = 64;
const COMMITS: usize = 4 * 1024;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn start() -> (String, tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (store, _) = TopicStore::open(dir.path()).unwrap();
    let server = service::bind(
        "127.0.0.1:0".parse().unwrap(),
        store,
        ServerConfig::default(),
        GroupConfig::default(),
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
    admin.create_topic("t", PARTITIONS, vec![]).await.unwrap();
    (addr, stop, dir)
}

fn join_request(group: &str, member_id: &str) -> JoinGroupRequest {
    let subscription = Subscription {
        topics: vec!["t".into()],
        owned: vec![],
    };
    JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 30_000,
        member_id: member_id.into(),
        client_id: "bench".into(),
        protocol_type: CONSUMER_PROTOCOL.into(),
        protocols: vec![("range".into(), encode_metadata(&subscription))],
    }
}

/// One member's part of a rebalance: join (held until all have), then
/// sync (the leader with the assignment it computed); again if the group
/// moved on meanwhile (only while it forms). Returns the generation, and
/// for its leader how many members it has.
async fn member(client: &Client, group: &str, member_id: &str) -> (i32, Option<usize>) {
    loop {
        let joined: JoinGroupResponse = client
            .call(GroupApi::JoinGroup, &join_request(group, member_id))
            .await
            .unwrap();
        assert_eq!(joined.error, ErrorCode::None, "{member_id}: {joined:?}");
        let is_leader = joined.leader == joined.member_id;
        let assignments = if is_leader {
            let members: Members = joined
                .members
                .iter()
                .map(|(id, m)| (id.clone(), decode_metadata::<Subscription>(m).unwrap()))
                .collect();
            let counts: PartitionCounts = [("t".to_string(), PARTITIONS)].into();
            RangeAssignor
                .assign(&members, &counts)
                .into_iter()
                .map(|(id, a)| (id, encode_metadata(&a)))
                .collect()
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest {
            group_id: group.to_string(),
            generation_id: joined.generation_id,
            member_id: joined.member_id,
            assignments,
        };
        let synced: SyncGroupResponse = client.call(GroupApi::SyncGroup, &request).await.unwrap();
        match synced.error {
            ErrorCode::None => {
                return (
                    joined.generation_id,
                    is_leader.then_some(joined.members.len()),
                );
            }
            ErrorCode::RebalanceInProgress => continue,
            other => panic!("sync: {other}"),
        }
    }
}

/// Every member rebalances at once; returns how long until the last has
/// its assignment.
async fn all_rejoin(members: &[(Arc<Client>, String)], group: &str) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = members
        .iter()
        .map(|(client, id)| {
            let (client, group, id) = (client.clone(), group.to_string(), id.clone());
            tokio::spawn(async move { member(&client, &group, &id).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// A group of `n` members, formed (not timed): each connected, with its
/// member id (KIP-394's first join), in one generation together.
///
/// Forming is not one rebalance but several: members whose joins arrive
/// first form a generation without the rest, and a later join starts the
/// next rebalance. A member hears of that from its heartbeat, as a real
/// consumer does; one that stopped heartbeating after its first sync
/// would be dropped at the rebalance deadline, and its next join answered
/// `UNKNOWN_MEMBER_ID`. So each member heartbeats (rejoining when told
/// to) until the leader has synced a generation with all `n` in it.
async fn formed(addr: &str, group: &str, n: usize) -> Vec<(Arc<Client>, String)> {
    let mut members = Vec::new();
    for _ in 0..n {
        let client = Arc::new(
            Client::connect(addr, Duration::from_secs(60))
                .await
                .unwrap(),
        );
        let first: JoinGroupResponse = client
            .call(GroupApi::JoinGroup, &join_request(group, ""))
            .await
            .unwrap();
        members.push((client, first.member_id));
    }
    let complete = Arc::new(AtomicI32::new(-1));
    let tasks: Vec<_> = members
        .iter()
        .map(|(client, id)| {
            let (client, group, id) = (client.clone(), group.to_string(), id.clone());
            let complete = complete.clone();
            tokio::spawn(async move {
                'rejoin: loop {
                    let (generation, size) = member(&client, &group, &id).await;
                    if size == Some(n) {
                        complete.store(generation, Ordering::SeqCst);
                    }
                    while complete.load(Ordering::SeqCst) != generation {
                        let request = HeartbeatRequest {
                            group_id: group.clone(),
                            generation_id: generation,
                            member_id: id.clone(),
                        };
                        let beat: ErrorOnly =
                            client.call(GroupApi::Heartbeat, &request).await.unwrap();
                        match beat.error {
                            ErrorCode::None => tokio::time::sleep(Duration::from_millis(1)).await,
                            ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => {
                                continue 'rejoin;
                            }
                            other => panic!("{id}: heartbeat: {other}"),
                        }
                    }
                    return;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    members
}

async fn two_round_trips_each(clients: &[Arc<Client>]) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let client = client.clone();
            tokio::spawn(async move {
                let request = HeartbeatRequest {
                    group_id: "none".into(),
                    generation_id: 0,
                    member_id: "m".into(),
                };
                for _ in 0..2 {
                    let _: ErrorOnly = client.call(GroupApi::Heartbeat, &request).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// `COMMITS` requests from 4 tasks: offset commits, or (the baseline)
/// one-record produce requests.
async fn requests(addr: &str, commit: bool) -> Duration {
    let client = Arc::new(
        Client::connect(addr, Duration::from_secs(60))
            .await
            .unwrap(),
    );
    let start = Instant::now();
    let tasks: Vec<_> = (0..4u32)
        .map(|task| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..COMMITS / 4 {
                    if commit {
                        let request = OffsetCommitRequest {
                            group_id: format!("committers-{task}"),
                            generation_id: -1,
                            member_id: String::new(),
                            topics: vec![(
                                "t".into(),
                                vec![CommitPartition {
                                    partition: task,
                                    offset: i as u64,
                                    metadata: String::new(),
                                }],
                            )],
                        };
                        let r: OffsetCommitResponse =
                            client.call(GroupApi::OffsetCommit, &request).await.unwrap();
                        assert_eq!(r.topics[0].1[0].1, ErrorCode::None);
                    } else {
                        let request = ProduceRequest {
                            acks: 1,
                            topics: vec![ProduceTopic {
                                name: "t".into(),
                                partitions: vec![ProducePartition {
                                    partition: task,
                                    // A current timestamp: with an ancient one, `segment.ms`
                                    // would roll a segment at every append.
                                    batch: batch::encode(&[
                                        Record::new(vec![0u8; 100]).with_timestamp(now_ms())
                                    ])
                                    .unwrap(),
                                }],
                            }],
                        };
                        let _: ProduceResponse =
                            client.call(ApiKey::Produce, &request).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn groups(c: &mut Criterion) {
    let rt = runtime();
    let (addr, stop, _dir) = rt.block_on(start());
    let mut group = c.benchmark_group("ch05");
    group.sample_size(20);
    let mut next_group = 0;
    for n in [2, 8, 32] {
        group.throughput(Throughput::Elements(n as u64));
        // The same number of connections as the group's, made once.
        let clients: Vec<Arc<Client>> = rt.block_on(async {
            let mut clients = Vec::new();
            for _ in 0..n {
                clients.push(Arc::new(
                    Client::connect(&addr, Duration::from_secs(60))
                        .await
                        .unwrap(),
                ));
            }
            clients
        });
        group.bench_function(BenchmarkId::new("baseline_two_round_trips", n), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut t = Duration::ZERO;
                    for _ in 0..iters {
                        t += two_round_trips_each(&clients).await;
                    }
                    t
                })
            })
        });
        next_group += 1;
        let name = format!("g{next_group}");
        let members = rt.block_on(formed(&addr, &name, n));
        group.bench_function(BenchmarkId::new("rebalance", n), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += all_rejoin(&members, &name).await;
                    }
                    total
                })
            })
        });
    }
    group.throughput(Throughput::Elements(COMMITS as u64));
    group.bench_function("baseline_produce_one_record", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    t += requests(&addr, false).await;
                }
                t
            })
        })
    });
    group.bench_function("commit_one_offset", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    t += requests(&addr, true).await;
                }
                t
            })
        })
    });
    group.finish();
    let _ = stop.send(());
}

criterion_group!(benches, groups);
criterion_main!(benches);
