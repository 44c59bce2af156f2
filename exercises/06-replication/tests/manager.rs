//! A broker's replica manager, specified: the purgatory where `acks=all`
//! produces wait (and every way they leave it), what the broker sends and
//! in which order, and what it keeps on disk: the leader-epoch checkpoint
//! on every change, the high-watermark checkpoint every interval, and how
//! it starts again from them after a crash.
//!
//! Brokers A, B and C are [`ReplicaManager`]s on [`MemoryStorage`]s; the
//! tests play the controller, handing each broker the partition's state,
//! and [`exchange`] carries the brokers' requests and answers.

mod common;

use ch02_segments::AppendInfo;
use ch03_partitions::TopicPartition;
use ch04_network::error::ErrorCode;
use ch06_replication::epoch::EpochEntry;
use ch06_replication::manager::{ManagerConfig, Outgoing, ReplicaManager};
use ch06_replication::memory::MemoryStorage;
use ch06_replication::protocol::{
    Acks, AlterPartitionRequest, BrokerId, EpochQuery, EpochQueryRequest, HeartbeatResponse,
    PartitionState, ReplicaFetchData, ReplicaFetchPartition, ReplicaFetchRequest,
    ReplicaFetchResponse,
};
use ch06_replication::replica::{Millis, ReplicaConfig};
use ch06_replication::storage::{ReplicaLog, Storage};
use common::{A, B, C, batch, state, tp, values};

/// What the producer hears: the token it gave, and the result.
type Answer = (u32, Result<AppendInfo, ErrorCode>);

/// One broker: its replica manager and its disk.
struct Broker {
    id: BrokerId,
    manager: ReplicaManager<u32>,
    storage: MemoryStorage,
}

impl Broker {
    /// Broker `id` with an empty disk.
    fn new(id: BrokerId, config: ManagerConfig) -> Broker {
        Broker::open(id, config, MemoryStorage::new(), 0)
    }

    /// Broker `id` starting at `now` from what `storage` holds.
    fn open(
        id: BrokerId,
        config: ManagerConfig,
        mut storage: MemoryStorage,
        now: Millis,
    ) -> Broker {
        let manager = ReplicaManager::open(id, config, &mut storage, now);
        Broker {
            id,
            manager,
            storage,
        }
    }

    /// Takes the controller's `states` at `now`.
    fn apply(&mut self, states: Vec<(TopicPartition, PartitionState)>, now: Millis) {
        let response = HeartbeatResponse {
            partitions: states,
            brokers: Vec::new(),
        };
        self.manager
            .on_heartbeat_response(&mut self.storage, response, now)
            .unwrap();
    }

    /// A producer's batch holding `value`, for [`tp`].
    fn produce(&mut self, value: &str, acks: Acks, now: Millis, token: u32) -> Option<Answer> {
        self.manager.produce(
            &mut self.storage,
            &tp(),
            &mut batch(value),
            acks,
            now,
            token,
        )
    }

    fn tick(&mut self, now: Millis) {
        self.manager.tick(&mut self.storage, now).unwrap();
    }

    fn high_watermark(&self) -> u64 {
        self.manager.partition(&tp()).unwrap().high_watermark()
    }

    /// Every value in the broker's log of [`tp`].
    fn values(&self) -> Vec<String> {
        values(self.storage.log_ref(&tp()).unwrap().batches())
    }
}

fn config() -> ManagerConfig {
    ManagerConfig::default()
}

/// A, B and C replicating [`tp`], A leading in epoch 0 with all in sync.
fn cluster(config: ManagerConfig) -> Vec<Broker> {
    let mut brokers: Vec<Broker> = [A, B, C].map(|id| Broker::new(id, config)).into();
    everyone(&mut brokers, &state(A, 0, &[A, B, C]), 0);
    brokers
}

/// Hands `state` of [`tp`] to every broker.
fn everyone(brokers: &mut [Broker], state: &PartitionState, now: Millis) {
    for broker in brokers {
        broker.apply(vec![(tp(), state.clone())], now);
    }
}

fn broker(brokers: &mut [Broker], id: BrokerId) -> &mut Broker {
    brokers.iter_mut().find(|b| b.id == id).unwrap()
}

/// Every broker, in turn, sends what it wants to send at `now`, and takes
/// the answers. Returns the ISR changes meant for the controller.
fn exchange(brokers: &mut [Broker], now: Millis) -> Vec<AlterPartitionRequest> {
    let mut alters = Vec::new();
    for i in 0..brokers.len() {
        let outgoing = {
            let from = &mut brokers[i];
            from.manager.poll_outgoing(&mut from.storage, now)
        };
        for message in outgoing {
            match message {
                Outgoing::Fetch { to, request } => {
                    let leader = broker(brokers, to);
                    let response =
                        leader
                            .manager
                            .on_replica_fetch(&mut leader.storage, &request, now);
                    let from = &mut brokers[i];
                    from.manager
                        .on_fetch_response(&mut from.storage, to, response)
                        .unwrap();
                }
                Outgoing::EpochQuery { to, request } => {
                    let leader = broker(brokers, to);
                    let response = leader.manager.on_epoch_query(&mut leader.storage, &request);
                    let from = &mut brokers[i];
                    from.manager
                        .on_epoch_response(&mut from.storage, to, response)
                        .unwrap();
                }
                Outgoing::AlterPartition(request) => alters.push(request),
            }
        }
    }
    alters
}

// The purgatory.

#[test]
fn an_acks_all_write_waits_until_every_in_sync_replica_has_it() {
    let mut brokers = cluster(config());
    assert_eq!(brokers[0].produce("a", Acks::All, 0, 7), None);
    assert_eq!(brokers[0].manager.waiting(), 1);

    exchange(&mut brokers, 1); // B and C copy it; A does not know yet.
    assert!(brokers[0].manager.take_completed().is_empty());
    assert_eq!(brokers[0].manager.waiting(), 1);

    exchange(&mut brokers, 2); // Their next fetches say they have it.
    let info = AppendInfo {
        base_offset: 0,
        last_offset: 0,
    };
    assert_eq!(brokers[0].manager.take_completed(), [(7, Ok(info))]);
    assert_eq!(brokers[0].manager.waiting(), 0);
}

#[test]
fn an_acks_all_write_times_out_after_request_timeout_ms() {
    let timeout = config().request_timeout_ms;
    let mut brokers = cluster(config());
    brokers[0].produce("a", Acks::All, 0, 7);
    brokers[0].tick(timeout - 1);
    assert!(brokers[0].manager.take_completed().is_empty());
    brokers[0].tick(timeout);
    assert_eq!(
        brokers[0].manager.take_completed(),
        [(7, Err(ErrorCode::RequestTimedOut))]
    );
}

#[test]
fn an_acks_all_write_fails_with_not_leader_or_follower_when_the_leader_epoch_changes() {
    // B takes over; or A is elected again, in a new epoch: either way the
    // write's fate is the new epoch's, and the producer retries.
    for next in [state(B, 1, &[B, C]), state(A, 1, &[A])] {
        let mut brokers = cluster(config());
        brokers[0].produce("a", Acks::All, 0, 7);
        brokers[0].apply(vec![(tp(), next.clone())], 1);
        assert_eq!(
            brokers[0].manager.take_completed(),
            [(7, Err(ErrorCode::NotLeaderOrFollower))],
            "{next:?}"
        );
    }
}

/// The high watermark does not move while the ISR is below
/// `min.insync.replicas` (KIP-966), so a waiting write cannot be
/// acknowledged then: it fails at once with
/// `NOT_ENOUGH_REPLICAS_AFTER_APPEND`. The batch stays in the log and is
/// committed once the ISR grows back, so a producer's retry may store it
/// twice.
#[test]
fn an_acks_all_write_fails_after_append_when_the_isr_falls_below_min_insync_replicas() {
    let config = ManagerConfig {
        replica: ReplicaConfig {
            min_insync_replicas: 2,
            ..ReplicaConfig::default()
        },
        ..config()
    };
    let mut brokers = cluster(config);
    brokers[0].produce("a", Acks::All, 0, 7);
    // The controller took B and C out of the ISR before they fetched.
    let alone = PartitionState {
        partition_epoch: 1,
        ..state(A, 0, &[A])
    };
    brokers[0].apply(vec![(tp(), alone)], 1);
    assert_eq!(
        brokers[0].manager.take_completed(),
        [(7, Err(ErrorCode::NotEnoughReplicasAfterAppend))]
    );
    exchange(&mut brokers, 2);
    let alters = exchange(&mut brokers, 3);
    assert_eq!(brokers[0].high_watermark(), 0, "A alone commits nothing");

    // A asked for B back; once the controller agrees, the batch commits.
    assert_eq!(alters.len(), 1);
    assert_eq!(alters[0].new_isr, [A, B]);
    let back = PartitionState {
        partition_epoch: 2,
        ..state(A, 0, &[A, B])
    };
    brokers[0].apply(vec![(tp(), back)], 4);
    assert_eq!(brokers[0].high_watermark(), 1);
}

#[test]
fn acks_1_and_acks_0_are_answered_at_once() {
    let mut brokers = cluster(config());
    let leader = &mut brokers[0];
    for (token, acks) in [(1, Acks::Leader), (2, Acks::None)] {
        let answer = leader.produce("a", acks, 0, token);
        assert!(matches!(answer, Some((t, Ok(_))) if t == token), "{acks:?}");
    }
    assert_eq!(leader.manager.waiting(), 0);
    assert_eq!(
        leader.high_watermark(),
        0,
        "answered before it is committed"
    );
}

#[test]
fn a_produce_that_cannot_be_appended_is_answered_at_once() {
    let config = ManagerConfig {
        replica: ReplicaConfig {
            min_insync_replicas: 4,
            ..ReplicaConfig::default()
        },
        ..config()
    };
    let mut brokers = cluster(config);
    let answer = brokers[0].produce("a", Acks::All, 0, 1);
    assert_eq!(answer, Some((1, Err(ErrorCode::NotEnoughReplicas))));
    let answer = brokers[1].produce("a", Acks::All, 0, 2);
    assert_eq!(answer, Some((2, Err(ErrorCode::NotLeaderOrFollower))));
    let leader = &mut brokers[0];
    let unknown = TopicPartition::new("other", 0);
    let answer = leader.manager.produce(
        &mut leader.storage,
        &unknown,
        &mut batch("a"),
        Acks::Leader,
        0,
        3,
    );
    assert_eq!(answer, Some((3, Err(ErrorCode::NotLeaderOrFollower))));
    assert_eq!(leader.manager.waiting(), 0);
}

#[test]
fn requests_for_a_partition_the_broker_does_not_hold_are_answered_not_leader_or_follower() {
    let mut brokers = cluster(config());
    let leader = &mut brokers[0];
    let unknown = TopicPartition::new("other", 0);
    let fetch = ReplicaFetchRequest {
        replica_id: B,
        partitions: vec![ReplicaFetchPartition {
            tp: unknown.clone(),
            leader_epoch: 0,
            fetch_offset: 0,
            max_bytes: 1024,
        }],
    };
    let response = leader
        .manager
        .on_replica_fetch(&mut leader.storage, &fetch, 0);
    assert_eq!(response.partitions[0].error, ErrorCode::NotLeaderOrFollower);
    let query = EpochQueryRequest {
        replica_id: B,
        partitions: vec![EpochQuery {
            tp: unknown,
            current_leader_epoch: 0,
            epoch: 0,
        }],
    };
    let response = leader.manager.on_epoch_query(&mut leader.storage, &query);
    assert_eq!(response.partitions[0].error, ErrorCode::NotLeaderOrFollower);
}

// What a broker sends.

#[test]
fn a_follower_sends_one_fetch_per_leader_and_its_epoch_queries_first() {
    let partition = |n| TopicPartition::new("t", n);
    // C has records of partition 2 from an earlier epoch; nothing else.
    let mut storage = MemoryStorage::new();
    for n in 0..4 {
        storage.create_log(&partition(n)).unwrap();
    }
    storage
        .log(&partition(2))
        .unwrap()
        .append(&mut batch("a"))
        .unwrap();
    let epoch_0 = EpochEntry {
        epoch: 0,
        start_offset: 0,
    };
    storage.write_epochs(&partition(2), &[epoch_0]).unwrap();
    let mut c = Broker::open(C, config(), storage, 0);
    c.apply(
        vec![
            (partition(0), state(A, 0, &[A, B, C])),
            (partition(1), state(A, 0, &[A, B, C])),
            (partition(2), state(B, 1, &[B, C])),
            (partition(3), state(B, 1, &[B, C])),
        ],
        0,
    );

    let summary: Vec<(&str, BrokerId, Vec<u32>)> = c
        .manager
        .poll_outgoing(&mut c.storage, 0)
        .into_iter()
        .map(|message| match message {
            Outgoing::EpochQuery { to, request } => {
                let tps = request.partitions.iter().map(|q| q.tp.partition).collect();
                ("epoch query", to, tps)
            }
            Outgoing::Fetch { to, request } => {
                assert!(request.partitions.iter().all(|f| f.fetch_offset == 0));
                let tps = request.partitions.iter().map(|f| f.tp.partition).collect();
                ("fetch", to, tps)
            }
            Outgoing::AlterPartition(_) => ("alter partition", 0, Vec::new()),
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("epoch query", B, vec![2]),
            ("fetch", A, vec![0, 1]),
            ("fetch", B, vec![3]),
        ]
    );
    assert!(
        c.manager.poll_outgoing(&mut c.storage, 0).is_empty(),
        "all in flight"
    );
}

/// A leader holds a fetch that finds nothing new for
/// `replica.fetch.wait.max.ms`, and serves a connection's requests in
/// order: a second request sent behind a held one would wait as long. So
/// a follower sends a leader nothing more while it awaits an answer from
/// it, and then one fetch for every partition ready.
#[test]
fn a_follower_awaiting_a_leaders_answer_sends_it_nothing_more() {
    let partition = |n| TopicPartition::new("t", n);
    let fetches = |outgoing: Vec<Outgoing>| -> Vec<(BrokerId, Vec<u32>)> {
        outgoing
            .into_iter()
            .map(|message| match message {
                Outgoing::Fetch { to, request } => (
                    to,
                    request.partitions.iter().map(|f| f.tp.partition).collect(),
                ),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let mut c = Broker::new(C, config());
    c.apply(vec![(partition(0), state(A, 0, &[A, B, C]))], 0);
    let sent = c.manager.poll_outgoing(&mut c.storage, 0);
    assert_eq!(fetches(sent), [(A, vec![0])]);

    // Partition 1, on the same leader, arrives while that fetch is held.
    c.apply(vec![(partition(1), state(A, 0, &[A, B, C]))], 1);
    assert!(
        c.manager.poll_outgoing(&mut c.storage, 1).is_empty(),
        "A still owes C an answer"
    );

    let answer = ReplicaFetchResponse {
        partitions: vec![ReplicaFetchData {
            tp: partition(0),
            error: ErrorCode::None,
            leader_epoch: 0,
            high_watermark: 0,
            batches: Vec::new(),
        }],
    };
    c.manager
        .on_fetch_response(&mut c.storage, A, answer)
        .unwrap();
    let sent = c.manager.poll_outgoing(&mut c.storage, 2);
    assert_eq!(fetches(sent), [(A, vec![0, 1])]);
}

#[test]
fn a_leaders_isr_change_goes_to_the_controller() {
    let lag = ReplicaConfig::default().replica_lag_time_max_ms;
    let mut brokers = cluster(config());
    let leader = &mut brokers[0];
    leader.tick(lag + 1); // B and C never fetched.
    let outgoing = leader.manager.poll_outgoing(&mut leader.storage, lag + 1);
    match &outgoing[..] {
        [Outgoing::AlterPartition(request)] => {
            assert_eq!((request.broker_id, request.new_isr.clone()), (A, vec![A]));
        }
        other => panic!("{other:?}"),
    }
}

// What a broker keeps on disk.

#[test]
fn the_high_watermark_checkpoint_is_written_every_interval_and_read_back_on_open() {
    let interval = config().high_watermark_checkpoint_interval_ms;
    let mut a = Broker::new(A, config());
    a.apply(vec![(tp(), state(A, 0, &[A]))], 0);
    a.produce("a", Acks::Leader, 0, 1);
    a.produce("b", Acks::Leader, 0, 2);
    assert_eq!(a.high_watermark(), 2, "A alone is the ISR");
    let checkpoint = |a: &Broker| a.storage.read_high_watermarks().get(&tp()).copied();

    a.tick(interval - 1);
    assert_eq!(checkpoint(&a), None);
    a.tick(interval);
    assert_eq!(checkpoint(&a), Some(2));
    a.produce("c", Acks::Leader, interval, 3);
    a.tick(2 * interval - 1);
    assert_eq!(checkpoint(&a), Some(2), "not before the next interval");
    a.tick(2 * interval);
    assert_eq!(checkpoint(&a), Some(3));

    let reopened = Broker::open(A, config(), a.storage.clone(), 2 * interval);
    assert_eq!(reopened.high_watermark(), 3);
}

#[test]
fn the_epoch_checkpoint_is_written_on_every_change() {
    let mut brokers = cluster(config());
    let epochs = |brokers: &mut [Broker], id| -> Vec<(u32, u64)> {
        broker(brokers, id)
            .storage
            .read_epochs(&tp())
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    };
    assert_eq!(epochs(&mut brokers, A), [(0, 0)], "A leads from offset 0");
    brokers[0].produce("a", Acks::Leader, 0, 1);
    brokers[0].produce("b", Acks::Leader, 0, 2);
    exchange(&mut brokers, 1);
    assert_eq!(
        epochs(&mut brokers, B),
        [(0, 0)],
        "B copied epoch 0's records"
    );

    // A leads again in epoch 3, from offset 2.
    everyone(&mut brokers, &state(A, 3, &[A, B, C]), 2);
    assert_eq!(epochs(&mut brokers, A), [(0, 0), (3, 2)]);
    brokers[0].produce("c", Acks::Leader, 2, 3);
    for now in 3..6 {
        exchange(&mut brokers, now);
    }
    assert_eq!(epochs(&mut brokers, B), [(0, 0), (3, 2)]);

    // C, with every record, leads epoch 4 and writes; B, cut off, did
    // not see it. Then B leads epoch 5 with nothing new, and C follows:
    // C must cut what epoch 4 wrote, and its checkpoint with it.
    everyone(&mut brokers, &state(C, 4, &[C]), 6);
    broker(&mut brokers, C)
        .produce("d", Acks::Leader, 6, 4)
        .unwrap()
        .1
        .unwrap();
    assert_eq!(epochs(&mut brokers, C), [(0, 0), (3, 2), (4, 3)]);
    everyone(&mut brokers, &state(B, 5, &[B]), 7);
    exchange(&mut brokers, 8);
    assert_eq!(epochs(&mut brokers, C), [(0, 0), (3, 2)]);
    assert_eq!(broker(&mut brokers, C).values(), ["a", "b", "c"]);
}

#[test]
fn a_follower_that_crashed_starts_again_from_its_disk_and_catches_up() {
    let interval = config().high_watermark_checkpoint_interval_ms;
    let mut brokers = cluster(config());
    for (token, value) in [(1, "a"), (2, "b"), (3, "c")] {
        brokers[0].produce(value, Acks::Leader, 0, token);
    }
    // Copied, acknowledged, and the high watermark passed on to B.
    for now in 1..=3 {
        exchange(&mut brokers, now);
    }
    assert_eq!(brokers[1].high_watermark(), 3);
    brokers[1].storage.write_back(); // The OS wrote B's pages back.
    for broker in brokers.iter_mut() {
        broker.tick(interval);
    }
    brokers[0].produce("d", Acks::Leader, interval, 4);
    brokers[0].produce("e", Acks::Leader, interval, 5);
    for now in interval + 1..=interval + 3 {
        exchange(&mut brokers, now);
    }
    assert_eq!(brokers[1].high_watermark(), 5);

    // B loses its memory and, of its disk, the unsynced "e".
    let mut disk = brokers[1].storage.clone();
    disk.crash(|unsynced| unsynced - 1);
    let mut b = Broker::open(B, config(), disk, interval + 4);
    assert_eq!(b.values(), ["a", "b", "c", "d"]);
    assert_eq!(b.high_watermark(), 3, "from the checkpoint");
    let epochs = b
        .manager
        .partition(&tp())
        .unwrap()
        .epochs()
        .entries()
        .to_vec();
    assert_eq!(epochs, b.storage.read_epochs(&tp()), "from the checkpoint");
    assert_eq!(epochs.len(), 1);
    b.apply(vec![(tp(), state(A, 0, &[A, B, C]))], interval + 4);
    assert_eq!(
        b.values(),
        ["a", "b", "c", "d"],
        "with its epochs, B asks A where to cut rather than cutting to its high watermark"
    );
    brokers[1] = b;
    for now in interval + 5..interval + 9 {
        exchange(&mut brokers, now);
    }
    assert_eq!(brokers[1].values(), ["a", "b", "c", "d", "e"]);
    assert_eq!(brokers[1].high_watermark(), 5);
}

#[test]
fn a_leader_that_crashed_cuts_what_the_next_leader_never_had() {
    let mut brokers = cluster(config());
    brokers[0].produce("a", Acks::Leader, 0, 1);
    exchange(&mut brokers, 1);
    exchange(&mut brokers, 2);
    // A appends "x" and crashes before anyone copies it; its disk kept it.
    brokers[0].produce("x", Acks::Leader, 3, 2);
    let mut disk = brokers[0].storage.clone();
    disk.crash(|unsynced| unsynced);

    // B leads epoch 1 and writes "b" where A had "x".
    let moved = state(B, 1, &[B, C]);
    for broker in &mut brokers[1..] {
        broker.apply(vec![(tp(), moved.clone())], 4);
    }
    brokers[1].produce("b", Acks::Leader, 4, 3);
    let mut a = Broker::open(A, config(), disk, 5);
    assert_eq!(a.values(), ["a", "x"]);
    a.apply(vec![(tp(), moved)], 5);
    brokers[0] = a;
    for now in 6..10 {
        exchange(&mut brokers, now);
    }
    for broker in &brokers {
        assert_eq!(broker.values(), ["a", "b"], "broker {}", broker.id);
    }
    let epochs: Vec<(u32, u64)> = brokers[0]
        .storage
        .read_epochs(&tp())
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect();
    assert_eq!(epochs, [(0, 0), (1, 1)]);
}
