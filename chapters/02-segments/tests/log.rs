//! What a user of the segmented log sees: offsets, whole-batch reads,
//! rolling, index and timestamp lookups, retention, truncation, the flush
//! policy, and what happens to bad input.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use ch02_segments::{
    FlushPolicy, Header, Log, LogConfig, LogError, ManualClock, NO_TIMESTAMP, Record,
    TimestampType, batch,
};
use tempfile::TempDir;

/// Small segments and a dense index, so a few records exercise everything.
fn small() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        retention_ms: None,
        segment_ms: None,
        ..LogConfig::default()
    }
}

fn value(offset: u64) -> Vec<u8> {
    format!("record {offset:05}").into_bytes()
}

/// Appends `n` batches of `per_batch` records; record values name their offset.
fn fill(log: &mut Log, n: usize, per_batch: u64, timestamp: i64) {
    for _ in 0..n {
        let base = log.log_end_offset();
        let records: Vec<Record> = (base..base + per_batch)
            .map(|o| Record::new(value(o)).with_timestamp(timestamp))
            .collect();
        log.append(&records).unwrap();
    }
}

/// Every record from `from` to the end, with its offset, read through the log.
fn read_all(log: &Log, from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let batches = log.read(offset, 300).unwrap();
        assert!(!batches.is_empty(), "no batch at offset {offset}");
        for batch in batches {
            for (o, record) in batch.records().unwrap() {
                if o >= offset {
                    out.push((o, record.value));
                }
            }
            offset = batch.header.next_offset();
        }
    }
    out
}

fn open(dir: &TempDir, config: LogConfig) -> Log {
    Log::open(dir.path(), config).unwrap().0
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn batches_get_consecutive_offsets_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    // Without segment.ms: these timestamps are from 1970, so the first
    // batch would be decades too old and the second would roll.
    let config = LogConfig {
        segment_ms: None,
        ..LogConfig::default()
    };
    let mut log = open(&dir, config);
    let first = log
        .append(&[
            Record::new("a").with_timestamp(1),
            Record::new("b").with_timestamp(2),
            Record::new("c").with_timestamp(3),
        ])
        .unwrap();
    let second = log.append(&[Record::new("d").with_timestamp(4)]).unwrap();
    assert_eq!((first.base_offset, first.last_offset), (0, 2));
    assert_eq!((second.base_offset, second.last_offset), (3, 3));
    assert_eq!(log.log_end_offset(), 4);

    // Asking for offset 1 returns the whole batch that holds it.
    let batches = log.read(1, 1).unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].header.base_offset, 0);
    let values: Vec<_> = batches[0]
        .records()
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.value)
        .collect();
    assert_eq!(values, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    // A bigger budget returns more batches.
    assert_eq!(log.read(0, 1 << 20).unwrap().len(), 2);
}

#[test]
fn keys_and_headers_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, LogConfig::default());
    let record = Record {
        timestamp: 7,
        key: Some(b"user-42".to_vec()),
        value: b"signed up".to_vec(),
        headers: vec![Header {
            name: "source".into(),
            value: b"web".to_vec(),
        }],
    };
    log.append(std::slice::from_ref(&record)).unwrap();
    assert_eq!(
        log.read(0, 1).unwrap()[0].records().unwrap(),
        vec![(0, record)]
    );
}

#[test]
fn reading_at_the_end_is_empty_and_past_it_is_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, LogConfig::default());
    fill(&mut log, 1, 2, 0);
    assert!(log.read(2, 100).unwrap().is_empty());
    let err = log.read(3, 100).unwrap_err();
    assert!(matches!(
        err,
        LogError::OffsetOutOfRange {
            offset: 3,
            log_start: 0,
            log_end: 2
        }
    ));
}

#[test]
fn segments_roll_by_size_and_are_named_by_base_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, small());
    fill(&mut log, 40, 3, 0);
    let segments = log.segments();
    assert!(segments.len() > 3, "{segments:?}");
    for pair in segments.windows(2) {
        assert_eq!(
            pair[0].next_offset, pair[1].base_offset,
            "segments are contiguous"
        );
        assert!(
            pair[0].size <= 1024,
            "a rolled segment stays within segment_bytes"
        );
    }
    let names = files(dir.path());
    for segment in &segments {
        assert!(
            names.contains(&format!("{:020}.log", segment.base_offset)),
            "{names:?}"
        );
    }
    // Rolled segments are sealed: their index files are on disk.
    assert!(names.contains(&format!("{:020}.index", segments[1].base_offset)));
    assert!(names.contains(&format!("{:020}.timeindex", segments[1].base_offset)));
}

#[test]
fn every_offset_is_found_through_the_indexes_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, small());
    fill(&mut log, 60, 2, 0);
    assert!(
        log.segments().iter().any(|s| s.index_entries > 0),
        "the index is used"
    );
    for offset in 0..log.log_end_offset() {
        let batch = &log.read(offset, 1).unwrap()[0];
        assert!(batch.header.base_offset <= offset && offset <= batch.header.last_offset());
        let (_, record) = &batch.records().unwrap()[(offset - batch.header.base_offset) as usize];
        assert_eq!(record.value, value(offset));
    }
}

#[test]
fn a_segment_rolls_when_its_first_batch_is_older_than_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(10_000));
    let config = LogConfig {
        segment_ms: Some(1000),
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open_with_clock(dir.path(), config, clock.clone()).unwrap();
    log.append(&[Record::new("old").with_timestamp(10_000)])
        .unwrap();
    clock.advance(999);
    log.append(&[Record::new("still young").with_timestamp(10_999)])
        .unwrap();
    assert_eq!(log.segments().len(), 1);
    clock.advance(1);
    log.append(&[Record::new("new segment").with_timestamp(11_000)])
        .unwrap();
    assert_eq!(log.segments().len(), 2);
    assert_eq!(log.segments()[1].base_offset, 2);
}

#[test]
fn timestamp_lookup_finds_the_first_record_at_or_after_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, small());
    // Offsets 0..100 with timestamps 1000, 1010, ..., one record per batch,
    // except that offset 50 carries a timestamp from the past.
    for offset in 0..100i64 {
        let ts = if offset == 50 { 5 } else { 1000 + 10 * offset };
        log.append(&[Record::new(value(offset as u64)).with_timestamp(ts)])
            .unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1000).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some(1));
    assert_eq!(log.offset_for_timestamp(1500).unwrap(), Some(51));
    assert_eq!(
        log.offset_for_timestamp(1495).unwrap(),
        Some(51),
        "offset 50 is in the past"
    );
    assert_eq!(log.offset_for_timestamp(1990).unwrap(), Some(99));
    assert_eq!(log.offset_for_timestamp(1991).unwrap(), None);
}

#[test]
fn retention_by_size_deletes_the_oldest_segments_and_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(3000),
        ..small()
    };
    let mut log = open(&dir, config);
    fill(&mut log, 60, 2, 0);
    let before = log.segments();
    let report = log.apply_retention().unwrap();
    assert!(!report.deleted_segments.is_empty());
    let after = log.segments();
    assert_eq!(report.log_start_offset, after[0].base_offset);
    assert_eq!(log.log_start_offset(), after[0].base_offset);
    let total: u64 = after.iter().map(|s| s.size).sum();
    assert!(total >= 3000, "retention keeps at least retention.bytes");
    assert!(
        total - after[0].size < 3000,
        "and deletes whatever it can beyond that"
    );
    assert_eq!(before.len() - after.len(), report.deleted_segments.len());
    for base in &report.deleted_segments {
        assert!(!dir.path().join(format!("{base:020}.log")).exists());
    }

    let start = log.log_start_offset();
    let err = log.read(start - 1, 100).unwrap_err();
    assert!(matches!(err, LogError::OffsetOutOfRange { log_start, .. } if log_start == start));
    assert_eq!(read_all(&log, start).first().unwrap().0, start);
}

#[test]
fn deleting_before_an_offset_drops_only_whole_segments_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, small());
    fill(&mut log, 40, 2, 0);
    let before = log.segments();
    assert!(before.len() >= 4, "{before:?}");
    // An offset inside the third segment: the first two go, the third
    // stays (it holds records at and after the offset).
    let cut = before[2].base_offset + 1;
    let deleted = log.delete_segments_before(cut).unwrap();
    assert_eq!(deleted, [before[0].base_offset, before[1].base_offset]);
    assert_eq!(log.log_start_offset(), before[2].base_offset);
    assert_eq!(
        read_all(&log, log.log_start_offset()).first().unwrap().0,
        before[2].base_offset
    );
    // Past the end, everything but the active segment goes.
    let end = log.log_end_offset();
    log.delete_segments_before(end + 100).unwrap();
    assert_eq!(log.segments().len(), 1);
    assert_eq!(log.log_end_offset(), end);
    // Nothing below the log start: nothing to do.
    assert!(log.delete_segments_before(0).unwrap().is_empty());
}

#[test]
fn retention_by_time_deletes_segments_whose_newest_record_is_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(100_000));
    let config = LogConfig {
        retention_ms: Some(10_000),
        ..small()
    };
    let (mut log, _) = Log::open_with_clock(dir.path(), config, clock.clone()).unwrap();
    fill(&mut log, 20, 2, 50_000); // old records
    log.roll().unwrap();
    let old_end = log.log_end_offset();
    fill(&mut log, 20, 2, 99_000); // recent records
    let report = log.apply_retention().unwrap();
    assert_eq!(report.log_start_offset, old_end);
    assert_eq!(log.log_start_offset(), old_end);
    // Nothing more to delete until time moves on; the active segment never goes.
    assert!(log.apply_retention().unwrap().deleted_segments.is_empty());
    clock.advance(1_000_000);
    log.apply_retention().unwrap();
    assert_eq!(log.segments().len(), 1);
}

#[test]
fn truncation_across_segments_cuts_at_a_batch_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, small());
    fill(&mut log, 60, 3, 0); // batches start at multiples of 3
    let segments_before = log.segments().len();
    // 31 is inside the batch 30..=32: the whole batch goes.
    assert_eq!(log.truncate_to(31).unwrap(), 30);
    assert_eq!(log.log_end_offset(), 30);
    assert!(log.segments().len() < segments_before);
    assert!(log.read(30, 10).unwrap().is_empty());
    assert_eq!(read_all(&log, 0).len(), 30);

    // Appends continue from the cut, and survive a reopen.
    fill(&mut log, 1, 3, 0);
    drop(log);
    let log = open(&dir, small());
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 33);
    assert!(all.iter().all(|(o, v)| *v == value(*o)));
}

#[test]
fn a_truncated_segment_is_as_if_the_batches_cut_off_were_never_appended() {
    // The largest timestamp is in the part cut off, and the index has
    // entries there: truncation must rebuild what the segment knows.
    let appended = |log: &mut Log, batches: std::ops::Range<i64>| {
        for i in batches {
            let base = log.log_end_offset();
            log.append(&[
                Record::new(value(base)).with_timestamp(1_000 - i),
                Record::new(value(base + 1)).with_timestamp(i * 100),
            ])
            .unwrap();
        }
    };
    let short_dir = tempfile::tempdir().unwrap();
    let mut short = open(&short_dir, small());
    appended(&mut short, 0..25);
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, small());
    appended(&mut log, 0..40);
    // 51 is inside the batch 50..=51: the whole batch goes.
    assert_eq!(log.truncate_to(51).unwrap(), 50);
    assert_eq!(log.segments(), short.segments());
    // And appends go on from there as they would have.
    appended(&mut short, 25..40);
    appended(&mut log, 25..40);
    assert_eq!(log.segments(), short.segments());
}

#[test]
fn truncation_at_the_log_start_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, small());
    fill(&mut log, 20, 2, 0);
    assert_eq!(log.truncate_to(0).unwrap(), 0);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(log.segments().len(), 1);
    assert_eq!(
        log.truncate_to(5).unwrap(),
        0,
        "truncating past the end changes nothing"
    );
}

#[test]
fn flush_policy_by_count_syncs_every_n_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy {
            messages: Some(3),
            interval_ms: None,
        },
        ..LogConfig::default()
    };
    let mut log = open(&dir, config);
    fill(&mut log, 2, 1, 0);
    assert_eq!(log.unsynced_records(), 2);
    fill(&mut log, 1, 1, 0);
    assert_eq!(log.unsynced_records(), 0);
}

#[test]
fn flush_policy_by_time_syncs_on_the_first_append_after_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let config = LogConfig {
        flush: FlushPolicy {
            messages: None,
            interval_ms: Some(500),
        },
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open_with_clock(dir.path(), config, clock.clone()).unwrap();
    fill(&mut log, 2, 1, 0);
    assert_eq!(log.unsynced_records(), 2);
    clock.advance(500);
    fill(&mut log, 1, 1, 0);
    assert_eq!(log.unsynced_records(), 0);
}

#[test]
fn the_default_flush_policy_leaves_syncing_to_the_os() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, LogConfig::default());
    fill(&mut log, 100, 1, 0);
    assert_eq!(log.unsynced_records(), 100);
    log.sync().unwrap();
    assert_eq!(log.unsynced_records(), 0);
}

#[test]
fn a_batch_over_the_maximum_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_batch_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = open(&dir, config);
    let err = log.append(&[Record::new(vec![0; 200])]).unwrap_err();
    assert!(
        matches!(err, LogError::BatchTooLarge { max: 100, .. }),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.segments()[0].size, 0);
}

#[test]
fn an_empty_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, LogConfig::default());
    let err = log.append(&[]).unwrap_err();
    assert!(
        matches!(err, LogError::InvalidBatch(batch::BatchError::Empty)),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn append_batch_checks_bytes_from_outside_and_assigns_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, LogConfig::default());
    fill(&mut log, 1, 5, 0);

    let mut bytes = batch::encode(&[Record::new("from a producer").with_timestamp(9)]).unwrap();
    batch::set_base_offset(&mut bytes, 123_456); // whatever the producer says
    let info = log.append_batch(&mut bytes.clone()).unwrap();
    assert_eq!(info.base_offset, 5, "the log assigns offsets");
    assert_eq!(log.read(5, 1).unwrap()[0].header.base_offset, 5);

    for mut bad in [
        Vec::new(),
        b"garbage".to_vec(),
        bytes[..bytes.len() - 1].to_vec(),
        [bytes.clone(), vec![0]].concat(),
    ] {
        let err = log.append_batch(&mut bad).unwrap_err();
        assert!(matches!(err, LogError::InvalidBatch(_)), "{err}");
    }
    assert_eq!(log.log_end_offset(), 6, "nothing bad was written");
}

#[test]
fn timestamps_may_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir, small());
    log.append(&[Record::new("late").with_timestamp(2000)])
        .unwrap();
    log.append(&[Record::new("early").with_timestamp(1000)])
        .unwrap();
    assert_eq!(log.segments()[0].max_timestamp, Some(2000));
    assert_eq!(log.offset_for_timestamp(1500).unwrap(), Some(0));
    log.close().unwrap();
    let (log, report) = Log::open(dir.path(), small()).unwrap();
    assert!(report.clean_shutdown);
    assert_eq!(log.segments()[0].max_timestamp, Some(2000));
}

#[test]
fn a_batch_without_timestamps_is_stamped_with_the_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(5_000));
    let (mut log, _) = Log::open_with_clock(dir.path(), small(), clock.clone()).unwrap();
    log.append(&[Record::new("a"), Record::new("b")]).unwrap();
    // A producer's batch: one record stamped, one not. It keeps both, as
    // Kafka keeps what a `CreateTime` producer sends.
    clock.advance(1_000);
    let mut mixed =
        batch::encode(&[Record::new("c").with_timestamp(42), Record::new("d")]).unwrap();
    log.append_batch(&mut mixed).unwrap();
    let stamps: Vec<i64> = log
        .read(0, u64::MAX)
        .unwrap()
        .iter()
        .flat_map(|b| b.records().unwrap())
        .map(|(_, r)| r.timestamp)
        .collect();
    assert_eq!(stamps, [5_000, 5_000, 42, NO_TIMESTAMP]);
    assert_eq!(log.segments()[0].max_timestamp, Some(5_000));
}

#[test]
fn log_append_time_replaces_every_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(7_000));
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..small()
    };
    let (mut log, _) = Log::open_with_clock(dir.path(), config, clock).unwrap();
    let mut bytes = batch::encode(&[
        Record::new("x").with_timestamp(1),
        Record::new("y").with_timestamp(99_999),
    ])
    .unwrap();
    log.append_batch(&mut bytes).unwrap();
    let stored = log.read(0, u64::MAX).unwrap();
    assert_eq!(stored[0].header.max_timestamp, 7_000);
    let stamps: Vec<i64> = stored[0]
        .records()
        .unwrap()
        .iter()
        .map(|(_, r)| r.timestamp)
        .collect();
    assert_eq!(stamps, [7_000, 7_000]);
    // The stored bytes still pass the check every batch from outside gets.
    batch::validate(&stored[0].bytes).unwrap();
}
