//! One partition's replica, specified on both sides.
//!
//! The leader's: the high watermark (the smallest log end in the ISR,
//! held by a follower it has not heard from, never going back, frozen
//! below `min.insync.replicas`); who may append; the ISR's time-based
//! shrink and its expansion, one AlterPartition at a time; fencing of
//! requests by leader epoch (KIP-320) and reads by consumers. The
//! follower's: which answers it takes, how it treats duplicates and
//! corrupt batches, and how it truncates by epoch (KIP-279). And both:
//! when writes are synced, what a reopened replica trusts of its
//! checkpoints, and which controller states it takes.
//!
//! Each test drives [`Partition`]s on [`MemoryLog`]s by hand; time is a
//! number passed in.

mod common;

use ch02_segments::batch::HEADER_LEN;
use ch04_network::error::ErrorCode;
use ch06_replication::epoch::{EpochEntry, LeaderEpochCache};
use ch06_replication::memory::MemoryLog;
use ch06_replication::protocol::{
    AlterPartitionResponse, BrokerId, EpochQuery, PartitionState, ReplicaFetchData,
};
use ch06_replication::replica::{
    Flush, FollowerError, FollowerRequest, Millis, Partition, ReplicaConfig,
};
use ch06_replication::storage::ReplicaLog;
use common::{A, B, C, Replica, batch, round, state, tp, values};

/// `replica.lag.time.max.ms` in these tests (Kafka's default).
const LAG_MAX: Millis = 30_000;

fn config() -> ReplicaConfig {
    ReplicaConfig::default()
}

fn min_isr_2() -> ReplicaConfig {
    ReplicaConfig {
        min_insync_replicas: 2,
        ..ReplicaConfig::default()
    }
}

/// Broker A leading in `leader_epoch` with `isr` since time 0, its log
/// holding `values`.
fn leader(config: ReplicaConfig, leader_epoch: u32, isr: &[BrokerId], values: &[&str]) -> Replica {
    let mut leader = Replica::new(A, config);
    leader.apply(&state(A, leader_epoch, isr), 0);
    for value in values {
        leader.produce(value);
    }
    leader
}

/// A follower of A in `leader_epoch`, with an empty log.
fn follower(id: BrokerId, config: ReplicaConfig, leader_epoch: u32) -> Replica {
    let mut follower = Replica::new(id, config);
    follower.apply(&state(A, leader_epoch, &[A, B, C]), 0);
    follower
}

/// The ISR change the leader wants sent at `now`, if any.
fn isr_change(leader: &mut Replica, now: Millis) -> Option<Vec<BrokerId>> {
    leader
        .partition
        .poll_alter_partition(now)
        .map(|request| request.new_isr)
}

/// The follower's next request, which must be a fetch, and its offset.
fn fetch_offset(follower: &mut Replica, now: Millis) -> u64 {
    match follower.partition.poll_request(&follower.log, now) {
        Some((_, FollowerRequest::Fetch(fetch))) => fetch.fetch_offset,
        other => panic!("expected a fetch, got {other:?}"),
    }
}

// The leader's high watermark.

#[test]
fn the_high_watermark_is_the_smallest_log_end_offset_in_the_isr() {
    let mut leader = leader(config(), 0, &[A, B, C], &["a", "b", "c"]);
    leader.answer_fetch(B, 3, 0, 1);
    leader.answer_fetch(C, 1, 0, 1);
    assert_eq!(leader.partition.high_watermark(), 1);
    let answer = leader.answer_fetch(C, 2, 0, 2);
    assert_eq!(leader.partition.high_watermark(), 2);
    assert_eq!(answer.high_watermark, 2, "the answer carries it");
    leader.answer_fetch(C, 3, 0, 3);
    assert_eq!(leader.partition.high_watermark(), 3);
}

#[test]
fn a_follower_the_leader_has_not_heard_from_holds_the_high_watermark() {
    let mut leader = leader(config(), 0, &[A, B, C], &["a", "b"]);
    leader.answer_fetch(B, 2, 0, 1);
    assert_eq!(leader.partition.high_watermark(), 0, "C may have nothing");
}

#[test]
fn the_high_watermark_never_goes_back() {
    let mut leader = leader(config(), 0, &[A, B], &["a", "b", "c"]);
    leader.answer_fetch(B, 3, 0, 1);
    assert_eq!(leader.partition.high_watermark(), 3);
    // B restarted and lost its unsynced tail: it fetches from 1 again.
    leader.answer_fetch(B, 1, 0, 2);
    assert_eq!(leader.partition.high_watermark(), 3);
}

#[test]
fn the_high_watermark_stays_while_the_isr_is_below_min_insync_replicas() {
    let mut leader = leader(min_isr_2(), 0, &[A], &["a", "b"]);
    assert_eq!(
        leader.partition.high_watermark(),
        0,
        "A alone is not enough"
    );
    // B catches up, and counts once the controller has it back in the ISR.
    leader.answer_fetch(B, 2, 0, 1);
    assert_eq!(leader.partition.high_watermark(), 0);
    assert_eq!(isr_change(&mut leader, 1), Some(vec![A, B]));
    let back = PartitionState {
        partition_epoch: 1,
        ..state(A, 0, &[A, B])
    };
    leader.apply(&back, 2);
    assert_eq!(leader.partition.high_watermark(), 2);
}

// Who may append.

#[test]
fn acks_all_is_refused_with_not_enough_replicas_while_the_isr_is_too_small() {
    let mut leader = leader(min_isr_2(), 0, &[A], &[]);
    let refused = leader
        .partition
        .append(&mut leader.log, &mut batch("a"), true);
    assert_eq!(refused, Err(ErrorCode::NotEnoughReplicas));
    assert_eq!(leader.log.log_end_offset(), 0, "nothing appended");
    let acks_1 = leader
        .partition
        .append(&mut leader.log, &mut batch("a"), false);
    assert!(acks_1.is_ok(), "acks=1 does not need the ISR");
}

#[test]
fn only_the_leader_appends() {
    let mut idle = Replica::new(B, config());
    let mut follower = follower(B, config(), 0);
    for replica in [&mut idle, &mut follower] {
        for acks_all in [false, true] {
            let refused = replica
                .partition
                .append(&mut replica.log, &mut batch("a"), acks_all);
            assert_eq!(refused, Err(ErrorCode::NotLeaderOrFollower));
        }
        assert_eq!(replica.log.log_end_offset(), 0);
    }
}

// The ISR.

#[test]
fn a_follower_not_caught_up_for_replica_lag_time_max_ms_leaves_the_isr() {
    let mut leader = leader(config(), 0, &[A, B, C], &["a"]);
    // B keeps up; C has not fetched since A became leader at 0.
    leader.answer_fetch(B, 1, 0, LAG_MAX);
    leader.partition.tick(LAG_MAX);
    assert_eq!(isr_change(&mut leader, LAG_MAX), None);
    leader.partition.tick(LAG_MAX + 1);
    assert_eq!(isr_change(&mut leader, LAG_MAX + 1), Some(vec![A, B]));
}

#[test]
fn a_follower_that_fetches_but_never_catches_up_leaves_the_isr() {
    let mut leader = leader(config(), 0, &[A, B], &[]);
    let mut now = 0;
    while now <= LAG_MAX {
        now += 1_000;
        leader.produce("x");
        // B fetches every second, and never gets past offset 0.
        leader.answer_fetch(B, 0, 0, now);
        leader.partition.tick(now);
    }
    assert_eq!(isr_change(&mut leader, now), Some(vec![A]));
}

#[test]
fn a_follower_always_slightly_behind_under_steady_load_stays_in_the_isr() {
    let mut leader = leader(config(), 0, &[A, B], &[]);
    let mut b = follower(B, config(), 0);
    for step in 1..=100 {
        let now = step * 1_000;
        leader.produce("x");
        // B fetches from where A's log ended at its previous fetch: it is
        // one batch behind at every fetch, and never at the end.
        assert_eq!(b.log.log_end_offset() + 1, leader.log.log_end_offset());
        assert!(round(&mut leader, &mut b, now));
        leader.partition.tick(now);
        assert_eq!(isr_change(&mut leader, now), None, "at {now} ms");
    }
}

#[test]
fn a_follower_rejoins_the_isr_once_it_reaches_the_high_watermark() {
    let mut leader = leader(config(), 0, &[A, B], &["a", "b", "c"]);
    leader.answer_fetch(B, 3, 0, 1);
    assert_eq!(leader.partition.high_watermark(), 3);
    leader.answer_fetch(C, 2, 0, 2);
    assert_eq!(isr_change(&mut leader, 2), None);
    leader.answer_fetch(C, 3, 0, 3);
    assert_eq!(isr_change(&mut leader, 3), Some(vec![A, B, C]));
}

#[test]
fn a_follower_rejoins_only_once_it_reaches_the_start_of_the_leaders_epoch() {
    // A reopens with five records of epoch 0, its checkpointed high
    // watermark at 3, and leads epoch 1 from offset 5.
    let mut log = MemoryLog::default();
    for value in ["a", "b", "c", "d", "e"] {
        log.append(&mut batch(value)).unwrap();
    }
    let epochs = LeaderEpochCache::from_entries(vec![EpochEntry {
        epoch: 0,
        start_offset: 0,
    }]);
    let partition = Partition::open(tp(), A, config(), &log, epochs, 3);
    let mut leader = Replica {
        id: A,
        partition,
        log,
    };
    leader.apply(&state(A, 1, &[A, B]), 0);
    assert_eq!(leader.partition.high_watermark(), 3);

    // C is past the high watermark, but may still hold records of an old
    // epoch that this leader's log does not have.
    leader.answer_fetch(C, 4, 1, 1);
    assert_eq!(isr_change(&mut leader, 1), None);
    leader.answer_fetch(C, 5, 1, 2);
    assert_eq!(isr_change(&mut leader, 2), Some(vec![A, B, C]));
}

#[test]
fn one_isr_change_is_in_flight_at_a_time_and_is_sent_again_after_retry_ms() {
    let retry = config().retry_ms;
    let mut leader = leader(config(), 0, &[A], &["a"]);
    leader.answer_fetch(B, 1, 0, 10);
    let sent = leader.partition.poll_alter_partition(10).unwrap();
    assert_eq!(sent.new_isr, [A, B]);
    assert_eq!(
        (sent.broker_id, sent.leader_epoch, sent.partition_epoch),
        (A, 0, 0)
    );
    assert_eq!(isr_change(&mut leader, 11), None, "in flight");

    // C catches up meanwhile: no second change while one is in flight.
    leader.answer_fetch(C, 1, 0, 12);
    assert_eq!(isr_change(&mut leader, 10 + retry - 1), None);
    let resent = leader.partition.poll_alter_partition(10 + retry);
    assert_eq!(resent, Some(sent), "no answer: the same request again");

    // The controller agrees; then C's next fetch asks for C.
    let with_b = PartitionState {
        partition_epoch: 1,
        ..state(A, 0, &[A, B])
    };
    let response = AlterPartitionResponse {
        tp: tp(),
        error: ErrorCode::None,
        state: Some(with_b),
    };
    leader
        .partition
        .on_alter_partition(&mut leader.log, response, 10 + retry)
        .unwrap();
    assert_eq!(leader.partition.state().isr, [A, B]);
    assert_eq!(isr_change(&mut leader, 11 + retry), None);
    leader.answer_fetch(C, 1, 0, 12 + retry);
    let expand = leader.partition.poll_alter_partition(12 + retry).unwrap();
    assert_eq!((expand.new_isr, expand.partition_epoch), (vec![A, B, C], 1));
}

#[test]
fn the_isr_does_not_shrink_while_a_change_is_in_flight() {
    let mut leader = leader(config(), 0, &[A, C], &["a"]);
    leader.answer_fetch(B, 1, 0, 10);
    assert_eq!(isr_change(&mut leader, 10), Some(vec![A, C, B]));
    // C has not fetched for longer than the lag allows; the change in
    // flight is still the one sent (again, as it is overdue).
    leader.partition.tick(LAG_MAX + 1);
    assert_eq!(isr_change(&mut leader, LAG_MAX + 1), Some(vec![A, C, B]));
}

#[test]
fn a_refused_isr_change_is_dropped_and_asked_again_on_the_state_the_answer_brings() {
    let retry = config().retry_ms;
    let mut leader = leader(config(), 0, &[A], &["a"]);
    let refuse = |leader: &mut Replica, error, state, now| {
        let response = AlterPartitionResponse {
            tp: tp(),
            error,
            state,
        };
        leader
            .partition
            .on_alter_partition(&mut leader.log, response, now)
            .unwrap();
    };
    leader.answer_fetch(B, 1, 0, 10);
    assert_eq!(isr_change(&mut leader, 10), Some(vec![A, B]));
    refuse(&mut leader, ErrorCode::UnknownTopicOrPartition, None, 11);
    assert_eq!(
        isr_change(&mut leader, 10 + retry),
        None,
        "dropped, not resent"
    );
    leader.answer_fetch(B, 1, 0, 12);
    assert_eq!(
        isr_change(&mut leader, 12),
        Some(vec![A, B]),
        "still wanted"
    );

    // The controller moved on meanwhile (C joined): refused again, with the
    // state now; the next request is built on it.
    // A controller that resigned does not know whether the change was
    // stored: it stays pending (and counts), and is asked again.
    refuse(&mut leader, ErrorCode::NotController, None, 12);
    assert_eq!(isr_change(&mut leader, 12), None, "not yet due");
    assert_eq!(isr_change(&mut leader, 12 + retry), Some(vec![A, B]));

    let moved = PartitionState {
        partition_epoch: 1,
        ..state(A, 0, &[A, C])
    };
    refuse(
        &mut leader,
        ErrorCode::InvalidUpdateVersion,
        Some(moved),
        13,
    );
    assert_eq!(leader.partition.state().isr, [A, C]);
    assert_eq!(isr_change(&mut leader, 13 + retry), None);
    leader.answer_fetch(B, 1, 0, 14);
    let again = leader.partition.poll_alter_partition(14).unwrap();
    assert_eq!((again.new_isr, again.partition_epoch), (vec![A, C, B], 1));
}

// Fencing on the leader.

/// What a request must not change on the leader.
fn snapshot(leader: &Replica) -> impl PartialEq + std::fmt::Debug + use<> {
    (
        leader.log.clone(),
        leader.partition.epochs().clone(),
        leader.partition.high_watermark(),
        leader.partition.followers(),
        leader.partition.state().clone(),
    )
}

#[test]
fn the_leader_refuses_fetches_from_another_epoch_or_replica_or_past_its_log_end_and_changes_nothing()
 {
    let mut leader = leader(config(), 2, &[A, B, C], &["a", "b"]);
    leader.answer_fetch(B, 1, 2, 1);
    let before = snapshot(&leader);
    let refused = [
        (B, 0, 1, ErrorCode::FencedLeaderEpoch),
        (B, 0, 3, ErrorCode::UnknownLeaderEpoch),
        (9, 0, 2, ErrorCode::NotLeaderOrFollower),
        (C, 3, 2, ErrorCode::OffsetOutOfRange),
    ];
    for (replica, offset, epoch, error) in refused {
        let answer = leader.answer_fetch(replica, offset, epoch, 5);
        assert_eq!(
            answer.error, error,
            "{replica} from {offset} in epoch {epoch}"
        );
        assert!(answer.batches.is_empty());
        assert_eq!(snapshot(&leader), before, "{error:?} changed the leader");
        assert_eq!(isr_change(&mut leader, 5), None);
    }
    // A follower serves no fetches at all.
    let mut b = follower(B, config(), 2);
    let answer = b.answer_fetch(C, 0, 2, 5);
    assert_eq!(answer.error, ErrorCode::NotLeaderOrFollower);
}

#[test]
fn epoch_queries_are_fenced_like_fetches() {
    let leader = leader(config(), 2, &[A, B], &["a"]);
    let query = |current_leader_epoch| EpochQuery {
        tp: tp(),
        current_leader_epoch,
        epoch: 2,
    };
    for (epoch, error) in [
        (1, ErrorCode::FencedLeaderEpoch),
        (3, ErrorCode::UnknownLeaderEpoch),
    ] {
        let answer = leader.partition.on_epoch_query(&leader.log, &query(epoch));
        assert_eq!((answer.error, answer.end), (error, None));
    }
    let answer = leader.partition.on_epoch_query(&leader.log, &query(2));
    assert_eq!(answer.error, ErrorCode::None);
    assert_eq!(answer.end.map(|e| (e.epoch, e.end_offset)), Some((2, 1)));
    let b = follower(B, config(), 2);
    let answer = b.partition.on_epoch_query(&b.log, &query(2));
    assert_eq!(answer.error, ErrorCode::NotLeaderOrFollower);
}

// The follower.

#[test]
fn a_follower_ignores_answers_from_another_leader_or_epoch() {
    let mut leader = leader(config(), 1, &[A, B, C], &["a"]);
    let mut b = follower(B, config(), 1);
    assert_eq!(fetch_offset(&mut b, 0), 0);
    let data = leader.answer_fetch(B, 0, 1, 0);
    let stale = ReplicaFetchData {
        leader_epoch: 0,
        ..data.clone()
    };
    for (from, data) in [(C, data.clone()), (A, stale)] {
        b.partition.on_fetch_data(&mut b.log, from, data).unwrap();
        assert_eq!(b.log.log_end_offset(), 0);
        assert_eq!(b.partition.high_watermark(), 0);
        assert_eq!(
            b.partition.poll_request(&b.log, 1),
            None,
            "still waiting for the real answer"
        );
    }
    b.partition.on_fetch_data(&mut b.log, A, data).unwrap();
    assert_eq!(b.values(), ["a"]);
    assert_eq!(
        fetch_offset(&mut b, 1),
        1,
        "answered: the next fetch at once"
    );
}

#[test]
fn a_follower_sends_its_request_again_after_retry_ms_without_an_answer() {
    let retry = config().retry_ms;
    let mut b = follower(B, config(), 0);
    assert_eq!(fetch_offset(&mut b, 0), 0);
    assert_eq!(b.partition.poll_request(&b.log, retry - 1), None);
    assert_eq!(fetch_offset(&mut b, retry), 0);
}

#[test]
fn a_follower_skips_duplicate_and_stale_fetch_answers() {
    let mut leader = leader(config(), 0, &[A, B], &["a", "b"]);
    let mut b = follower(B, config(), 0);
    let first = leader.answer_fetch(B, 0, 0, 0);
    b.partition
        .on_fetch_data(&mut b.log, A, first.clone())
        .unwrap();
    leader.produce("c");
    let second = leader.answer_fetch(B, 2, 0, 1);
    b.partition
        .on_fetch_data(&mut b.log, A, second.clone())
        .unwrap();
    assert_eq!(b.values(), ["a", "b", "c"]);

    // Each answer again (duplicated on the way, or overtaken): nothing new.
    for data in [first, second] {
        b.partition.on_fetch_data(&mut b.log, A, data).unwrap();
        assert_eq!(b.values(), ["a", "b", "c"]);
    }
    // An answer from past the follower's end (a gap) is not for it either.
    leader.produce("d");
    leader.produce("e");
    let ahead = leader.answer_fetch(B, 4, 0, 2);
    b.partition.on_fetch_data(&mut b.log, A, ahead).unwrap();
    assert_eq!(b.values(), ["a", "b", "c"]);
    while round(&mut leader, &mut b, 3) && b.log.log_end_offset() < 5 {}
    assert_eq!(b.values(), leader.values());
}

#[test]
fn a_followers_high_watermark_never_passes_its_own_log_end() {
    let mut leader = leader(config(), 0, &[A, B], &["a", "b", "c"]);
    leader.answer_fetch(B, 3, 0, 1);
    assert_eq!(leader.partition.high_watermark(), 3);
    // C fetches at most one batch at a time.
    let small = ReplicaConfig {
        replica_fetch_max_bytes: 1,
        ..config()
    };
    let mut c = follower(C, small, 0);
    assert!(round(&mut leader, &mut c, 2));
    assert_eq!(c.values(), ["a"]);
    assert_eq!(c.partition.high_watermark(), 1, "the leader's is 3");
}

/// `data` with the bytes of its `n`th batch changed by `change`.
fn corrupt(
    data: &ReplicaFetchData,
    n: usize,
    change: impl FnOnce(&mut Vec<u8>),
) -> ReplicaFetchData {
    let mut data = data.clone();
    change(&mut data.batches[n].bytes.0);
    data
}

#[test]
fn a_corrupt_batch_from_the_leader_is_refused_and_nothing_of_it_is_stored() {
    let mut leader = leader(config(), 0, &[A, B], &["a"]);
    let mut b = follower(B, config(), 0);
    assert!(round(&mut leader, &mut b, 0));
    leader.produce("b");
    leader.produce("c");
    assert_eq!(fetch_offset(&mut b, 1), 1);
    let data = leader.answer_fetch(B, 1, 0, 1);
    assert_eq!(data.batches.len(), 2);

    let flip = |at: usize| move |bytes: &mut Vec<u8>| bytes[at] ^= 0xff;
    let cases = [
        (
            "the record count flipped",
            corrupt(&data, 0, flip(HEADER_LEN - 9)),
            1,
        ),
        (
            "the max timestamp flipped",
            corrupt(&data, 0, flip(HEADER_LEN - 1)),
            1,
        ),
        (
            "a key length flipped",
            corrupt(&data, 0, flip(HEADER_LEN + 8)),
            1,
        ),
        (
            "the last bytes cut",
            corrupt(&data, 0, |b| b.truncate(b.len() - 3)),
            1,
        ),
        (
            "less than a header",
            corrupt(&data, 0, |b| b.truncate(HEADER_LEN - 1)),
            1,
        ),
        (
            "the second batch cut",
            corrupt(&data, 1, |b| b.truncate(b.len() - 1)),
            2,
        ),
    ];
    for (what, data, stored_before) in cases {
        let mut b = b.clone();
        let result = b.partition.on_fetch_data(&mut b.log, A, data);
        match result {
            Err(FollowerError::CorruptBatch { offset, .. }) => {
                assert_eq!(offset, stored_before, "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
        let kept = stored_before as usize;
        assert_eq!(b.values(), leader.values()[..kept], "{what}");
        assert_eq!(
            fetch_offset(&mut b, 2),
            stored_before,
            "{what}: the follower fetches it again"
        );
    }
}

#[test]
fn flush_before_ack_syncs_every_append_and_fetch_and_flush_os_leaves_it_to_the_os() {
    for (flush, unsynced) in [(Flush::Os, 1), (Flush::BeforeAck, 0)] {
        let config = ReplicaConfig { flush, ..config() };
        let mut leader = leader(config, 0, &[A, B], &["a"]);
        let mut b = follower(B, config, 0);
        assert_eq!(leader.log.unsynced_records(), unsynced, "{flush:?}");
        assert!(round(&mut leader, &mut b, 0));
        assert_eq!(b.log.log_end_offset(), 1);
        assert_eq!(b.log.unsynced_records(), unsynced, "{flush:?}");
    }
}

#[test]
fn with_flush_before_ack_a_follower_syncs_what_it_stored_before_a_corrupt_batch() {
    let config = ReplicaConfig {
        flush: Flush::BeforeAck,
        ..config()
    };
    let mut leader = leader(config, 0, &[A, B], &["a", "b"]);
    let mut b = follower(B, config, 0);
    let data = leader.answer_fetch(B, 0, 0, 0);
    let data = corrupt(&data, 1, |b| b.truncate(b.len() - 1));
    assert!(b.partition.on_fetch_data(&mut b.log, A, data).is_err());
    // Its next fetch tells the leader it has "a": it must be on disk.
    assert_eq!(fetch_offset(&mut b, 1), 1);
    assert_eq!(b.log.unsynced_records(), 0);
}

#[test]
fn a_follower_with_an_epoch_the_leader_never_saw_cuts_where_that_epoch_began() {
    // A leads epoch 0 and writes a, which B copies, then x, which B never
    // sees. B leads epoch 1 alone and writes b and c. Then A leads epoch 2.
    let mut a = leader(config(), 0, &[A, B], &["a"]);
    let mut b = follower(B, config(), 0);
    assert!(round(&mut a, &mut b, 0));
    a.produce("x");
    b.apply(&state(B, 1, &[B]), 1);
    b.produce("b");
    b.produce("c");
    a.apply(&state(A, 2, &[A]), 2);
    b.apply(&state(A, 2, &[A]), 2);

    // A knows no epoch 1: it answers for epoch 0, which ends at 2 on A. B's
    // epoch 0 ends at 1, where its epoch 1 began: b, at offset 1, must go.
    assert!(round(&mut a, &mut b, 3));
    assert_eq!(b.values(), ["a"]);
    while round(&mut a, &mut b, 4) && b.log.log_end_offset() < 2 {}
    assert_eq!(b.values(), ["a", "x"]);
}

// Consumers.

#[test]
fn consumers_read_only_below_the_high_watermark_and_only_from_the_leader() {
    let mut leader = leader(config(), 0, &[A, B], &["a", "b", "c"]);
    leader.answer_fetch(B, 1, 0, 1);
    let read = |leader: &Replica, offset| {
        leader
            .partition
            .read_committed(&leader.log, offset, 1024 * 1024)
            .map(|batches| values(&batches))
    };
    assert_eq!(read(&leader, 0), Ok(vec!["a".to_string()]));
    assert_eq!(read(&leader, 1), Ok(vec![]));
    assert_eq!(read(&leader, 3), Ok(vec![]));
    assert_eq!(read(&leader, 4), Err(ErrorCode::OffsetOutOfRange));
    leader.answer_fetch(B, 3, 0, 2);
    assert_eq!(read(&leader, 1), Ok(vec!["b".to_string(), "c".to_string()]));

    let mut b = follower(B, config(), 0);
    assert!(round(&mut leader, &mut b, 3));
    assert_eq!(
        b.partition.high_watermark(),
        3,
        "B has everything committed"
    );
    assert_eq!(read(&b, 0), Err(ErrorCode::NotLeaderOrFollower));
}

// Opening, and the controller's states.

#[test]
fn opening_cuts_an_epoch_cache_and_high_watermark_ahead_of_a_log_that_lost_its_tail() {
    let mut log = MemoryLog::default();
    log.append(&mut batch("a")).unwrap();
    log.append(&mut batch("b")).unwrap();
    let entry = |epoch, start_offset| EpochEntry {
        epoch,
        start_offset,
    };
    // The checkpoints were written when the log held five records.
    let epochs = LeaderEpochCache::from_entries(vec![entry(0, 0), entry(1, 2), entry(2, 4)]);
    let mut partition = Partition::open(tp(), B, config(), &log, epochs, 5);
    assert_eq!(partition.epochs().entries(), [entry(0, 0)]);
    assert_eq!(partition.high_watermark(), 2);
    assert!(partition.take_epochs_changed(), "the cut must be saved");
    assert!(!partition.take_epochs_changed());

    let intact = LeaderEpochCache::from_entries(vec![entry(0, 0), entry(1, 1)]);
    let mut partition = Partition::open(tp(), B, config(), &log, intact.clone(), 1);
    assert_eq!(partition.epochs(), &intact);
    assert_eq!(partition.high_watermark(), 1);
    assert!(!partition.take_epochs_changed());
}

#[test]
fn a_replica_ignores_controller_states_older_than_the_one_it_has() {
    let mut b = Replica::new(B, config());
    let current = PartitionState {
        partition_epoch: 3,
        ..state(A, 2, &[A, B, C])
    };
    b.apply(&current, 0);
    assert_eq!(b.partition.following(), Some(A));
    let stale = [
        state(C, 1, &[C]),
        PartitionState {
            partition_epoch: 2,
            ..state(C, 2, &[C])
        },
        PartitionState {
            partition_epoch: 3,
            ..state(C, 2, &[C])
        },
    ];
    for state in stale {
        b.apply(&state, 1);
        assert_eq!(b.partition.state(), &current, "{state:?}");
        assert_eq!(b.partition.following(), Some(A));
    }

    let newer_isr = PartitionState {
        partition_epoch: 4,
        ..state(A, 2, &[A, B])
    };
    b.apply(&newer_isr, 2);
    assert_eq!(b.partition.state(), &newer_isr);
    b.apply(&state(B, 5, &[B]), 3);
    assert!(b.partition.is_leader());

    // A leader, too, ignores a stale state deposing it.
    b.apply(&state(C, 4, &[C]), 4);
    assert!(b.partition.is_leader());
}
