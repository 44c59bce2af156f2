//! Opening a log after clean and unclean shutdowns, and after its files
//! were damaged: what is read, what is rebuilt, what is cut, what is kept.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ch02_segments::log::{CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE};
use ch02_segments::{Log, LogConfig, LogError, ManualClock, OpenReport, Record};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        segment_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn value(offset: u64) -> Vec<u8> {
    format!("value of offset {offset}").into_bytes()
}

/// A log of `batches` batches of two records each, spread over several segments.
fn make_log(dir: &Path, batches: usize) -> Log {
    let (mut log, _) = Log::open(dir, config()).unwrap();
    for _ in 0..batches {
        let base = log.log_end_offset();
        log.append(&[Record::new(value(base)), Record::new(value(base + 1))])
            .unwrap();
    }
    assert!(log.segments().len() >= 4, "the test wants several segments");
    log
}

fn reopen(dir: &Path) -> (Log, OpenReport) {
    Log::open(dir, config()).unwrap()
}

/// Checks that every offset in the log reads back its own value.
fn assert_intact(log: &Log) {
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        for batch in log.read(offset, 4096).unwrap() {
            for (o, record) in batch.records().unwrap() {
                assert_eq!(record.value, value(o), "offset {o}");
            }
            offset = batch.header.next_offset();
        }
    }
}

fn segment_file(dir: &Path, base: u64, extension: &str) -> PathBuf {
    dir.join(format!("{base:020}.{extension}"))
}

#[test]
fn after_a_clean_shutdown_nothing_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path(), 100);
    let end = log.log_end_offset();
    log.close().unwrap();
    assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());

    let (log, report) = reopen(dir.path());
    assert!(report.clean_shutdown);
    assert_eq!(report.scanned_segments, 0);
    assert_eq!(report.offsets, (0, end));
    assert!(
        !dir.path().join(CLEAN_SHUTDOWN_FILE).exists(),
        "the marker goes at once, so a crash is not mistaken for a clean shutdown"
    );
    assert_intact(&log);
}

#[test]
fn after_an_unclean_shutdown_only_segments_after_the_recovery_point_are_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path(), 100);
    let end = log.log_end_offset();
    let active_base = log.segments().last().unwrap().base_offset;
    drop(log); // no close(): as if the process died

    let (log, report) = reopen(dir.path());
    assert!(!report.clean_shutdown);
    assert_eq!(
        report.recovery_point, active_base,
        "it moved up when segments rolled"
    );
    assert_eq!(report.scanned_segments, 1, "only the active segment");
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(report.offsets, (0, end));
    assert_intact(&log);
}

#[test]
fn a_deleted_index_file_is_rebuilt_and_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path(), 100);
    let victim = log.segments()[1].base_offset;
    log.close().unwrap();
    fs::remove_file(segment_file(dir.path(), victim, "index")).unwrap();

    let (log, report) = reopen(dir.path());
    assert_eq!(report.scanned_segments, 1);
    assert_intact(&log);
    assert!(
        segment_file(dir.path(), victim, "index").exists(),
        "written again"
    );
    log.close().unwrap();
    assert_eq!(reopen(dir.path()).1.scanned_segments, 0);
}

#[test]
fn a_corrupt_index_file_is_rebuilt_not_trusted() {
    for damage in [
        "partial entry",
        "past the end",
        "not increasing",
        "time index",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = make_log(dir.path(), 100);
        let victim = log.segments()[1].base_offset;
        log.close().unwrap();
        let path = segment_file(dir.path(), victim, "index");
        let mut bytes = fs::read(&path).unwrap();
        assert!(bytes.len() >= 16, "the segment has index entries");
        match damage {
            "partial entry" => bytes.truncate(bytes.len() - 3),
            "past the end" => bytes[4..8].copy_from_slice(&u32::MAX.to_be_bytes()),
            "not increasing" => bytes.swap(3, 11),
            _ => fs::write(segment_file(dir.path(), victim, "timeindex"), b"garbage").unwrap(),
        }
        fs::write(&path, &bytes).unwrap();

        let (log, report) = reopen(dir.path());
        assert_eq!(report.scanned_segments, 1, "{damage}");
        assert_intact(&log);
    }
}

#[test]
fn an_index_entry_that_points_at_the_wrong_place_gives_an_error_not_wrong_data() {
    // An entry can pass every sanity check and still be wrong. The frame's
    // checksum then catches it on read: an error, never someone else's data.
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path(), 100);
    let victim = log.segments()[1].base_offset;
    log.close().unwrap();
    let path = segment_file(dir.path(), victim, "index");
    let mut bytes = fs::read(&path).unwrap();
    let position = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
    bytes[4..8].copy_from_slice(&(position + 1).to_be_bytes());
    let relative = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
    fs::write(&path, &bytes).unwrap();

    let (log, _) = reopen(dir.path());
    let err = log.read(victim + u64::from(relative), 100).unwrap_err();
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
}

#[test]
fn garbage_after_the_last_batch_is_cut_off_after_either_shutdown() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let log = make_log(dir.path(), 100);
        let (end, active) = (
            log.log_end_offset(),
            log.segments().last().unwrap().base_offset,
        );
        if clean {
            log.close().unwrap();
        } else {
            drop(log);
        }
        OpenOptions::new()
            .append(true)
            .open(segment_file(dir.path(), active, "log"))
            .unwrap()
            .write_all(b"\x00\x00\x00\x20this is not a frame")
            .unwrap();

        let (mut log, report) = reopen(dir.path());
        assert_eq!(report.truncated_bytes, 23, "clean: {clean}");
        assert_eq!(report.scanned_segments, 1);
        assert_eq!(log.log_end_offset(), end);
        assert_intact(&log);
        // Appends land right after the last valid batch.
        log.append(&[Record::new(value(end))]).unwrap();
        drop(log);
        let (log, _) = reopen(dir.path());
        assert_eq!(log.log_end_offset(), end + 1);
        assert_intact(&log);
    }
}

#[test]
fn damage_in_a_scanned_segment_ends_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path(), 100);
    let segments = log.segments();
    drop(log);
    // Without a recovery point every segment is scanned.
    fs::remove_file(dir.path().join(RECOVERY_POINT_FILE)).unwrap();
    let victim = &segments[1];
    let path = segment_file(dir.path(), victim.base_offset, "log");
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let (log, report) = reopen(dir.path());
    assert_eq!(report.recovery_point, 0);
    assert_eq!(report.deleted_segments, segments.len() - 2);
    assert!(report.truncated_bytes > 0);
    assert!(log.log_end_offset() > victim.base_offset);
    assert!(log.log_end_offset() < victim.next_offset);
    assert_eq!(log.segments().len(), 2);
    for later in &segments[2..] {
        assert!(!segment_file(dir.path(), later.base_offset, "log").exists());
    }
    assert_intact(&log);
}

#[test]
fn a_segment_scanned_on_open_is_sealed_again_so_the_next_crash_trusts_it() {
    let dir = tempfile::tempdir().unwrap();
    let segments = make_log(dir.path(), 100).segments();
    // A crash with no recovery point and no index files: everything is scanned.
    fs::remove_file(dir.path().join(RECOVERY_POINT_FILE)).unwrap();
    for segment in &segments {
        for extension in ["index", "timeindex"] {
            let _ = fs::remove_file(segment_file(dir.path(), segment.base_offset, extension));
        }
    }
    let (log, report) = reopen(dir.path());
    assert_eq!(report.scanned_segments, segments.len());
    drop(log);
    // The scan wrote their index files again: after another crash only the
    // active segment is scanned.
    let (log, report) = reopen(dir.path());
    assert_eq!(report.scanned_segments, 1);
    assert_intact(&log);
}

#[test]
fn a_reopened_log_carries_on_as_if_it_had_never_been_closed() {
    // The same appends to two logs, one of them closed and reopened (and
    // crashed and reopened) on the way: what a segment knows after opening
    // (its end, its largest and first timestamps, where its next index
    // entry goes) must be what appending had made it, or the two part ways.
    let config = LogConfig {
        segment_ms: Some(2_500),
        ..config()
    };
    let straight_dir = tempfile::tempdir().unwrap();
    let reopened_dir = tempfile::tempdir().unwrap();
    let straight_clock = Arc::new(ManualClock::new(0));
    let reopened_clock = Arc::new(ManualClock::new(0));
    let open = |dir: &Path, clock: &Arc<ManualClock>| {
        Log::open_with_clock(dir, config.clone(), clock.clone())
            .unwrap()
            .0
    };
    let mut straight = open(straight_dir.path(), &straight_clock);
    let mut reopened = open(reopened_dir.path(), &reopened_clock);
    for i in 0..90_u64 {
        if i == 30 {
            reopened.close().unwrap();
            reopened = open(reopened_dir.path(), &reopened_clock);
            assert_eq!(reopened.segments(), straight.segments(), "after a close");
        }
        if i == 60 {
            drop(reopened);
            reopened = open(reopened_dir.path(), &reopened_clock);
            assert_eq!(reopened.segments(), straight.segments(), "after a crash");
        }
        // Timestamps go back now and then, so the largest is not the last.
        let timestamp = (i * 100) as i64 - (i % 4) as i64 * 150;
        for log in [&mut straight, &mut reopened] {
            let base = log.log_end_offset();
            log.append(&[Record::new(value(base)).with_timestamp(timestamp)])
                .unwrap();
        }
        assert_eq!(reopened.segments(), straight.segments(), "append {i}");
        straight_clock.advance(100);
        reopened_clock.advance(100);
    }
    assert_intact(&reopened);
}

#[test]
fn leftovers_of_interrupted_operations_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_log(dir.path(), 100);
    log.close().unwrap();
    let orphan = segment_file(dir.path(), 999_999, "index");
    let tmp = dir.path().join("recovery-point.tmp");
    fs::write(&orphan, b"").unwrap();
    fs::write(&tmp, b"12").unwrap();
    let (log, _) = reopen(dir.path());
    assert!(!orphan.exists() && !tmp.exists());
    assert_intact(&log);
}

#[test]
fn a_second_log_on_the_same_directory_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let first = make_log(dir.path(), 100);
    let err = Log::open(dir.path(), config()).unwrap_err();
    assert!(matches!(err, LogError::Locked { .. }), "{err}");
    drop(first);
    assert_intact(&reopen(dir.path()).0);
}

#[test]
fn an_empty_directory_is_an_empty_log_at_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (log, report) = Log::open(dir.path().join("new-partition"), config()).unwrap();
    assert_eq!(report.offsets, (0, 0));
    assert_eq!(log.segments().len(), 1);
    assert!(segment_file(log.dir(), 0, "log").exists());
}
