//! What a user of the log sees: appending, reading, reopening, and what
//! happens to a file that a crash or a bad disk left damaged.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ch01_commit_log::frame::HEADER_LEN;
use ch01_commit_log::{Config, Damage, Log, LogError, Record};
use tempfile::TempDir;

fn log_path() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.log");
    (dir, path)
}

fn open(path: &Path) -> Log {
    let (log, recovery) = Log::open(path, Config::default()).unwrap();
    assert!(recovery.is_clean(), "unexpected recovery: {recovery}");
    log
}

fn append_all(path: &Path, records: &[&[u8]]) {
    let mut log = open(path);
    for record in records {
        log.append(record).unwrap();
    }
    log.sync().unwrap();
}

#[test]
fn opening_a_missing_file_creates_an_empty_log() {
    let (_dir, path) = log_path();
    let (log, recovery) = Log::open(&path, Config::default()).unwrap();
    assert!(path.exists());
    assert_eq!(log.next_offset(), 0);
    assert_eq!(recovery.records, 0);
    assert!(recovery.is_clean());
}

#[test]
fn offsets_count_up_from_zero_and_read_back() {
    let (_dir, path) = log_path();
    let mut log = open(&path);
    assert_eq!(log.append(b"zero").unwrap(), 0);
    assert_eq!(log.append(b"one").unwrap(), 1);
    assert_eq!(log.append(b"").unwrap(), 2);
    assert_eq!(log.next_offset(), 3);
    assert_eq!(log.read(0).unwrap(), b"zero");
    assert_eq!(log.read(1).unwrap(), b"one");
    assert_eq!(log.read(2).unwrap(), b"");
}

#[test]
fn records_read_back_before_and_after_a_flush() {
    let (_dir, path) = log_path();
    let mut log = open(&path);
    log.append(b"flushed").unwrap();
    log.flush().unwrap();
    log.append(b"buffered").unwrap();
    assert_eq!(log.read(0).unwrap(), b"flushed");
    assert_eq!(log.read(1).unwrap(), b"buffered");
    let all: Vec<Record> = log.iter_from(0).unwrap().map(Result::unwrap).collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].payload, b"buffered");
}

#[test]
fn flush_hands_records_to_the_os_and_drop_flushes_too() {
    let (_dir, path) = log_path();
    let mut log = open(&path);
    log.append(b"abc").unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        0,
        "buffered, not written"
    );
    log.flush().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), (HEADER_LEN + 3) as u64);
    log.append(b"def").unwrap();
    drop(log);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        2 * (HEADER_LEN + 3) as u64
    );
}

#[test]
fn a_full_write_buffer_is_written_without_being_asked() {
    let (_dir, path) = log_path();
    let config = Config {
        write_buffer_size: 100,
        ..Config::default()
    };
    let (mut log, _) = Log::open(&path, config).unwrap();
    log.append(&[7; 200]).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        (HEADER_LEN + 200) as u64
    );
}

#[test]
fn reopening_finds_every_record() {
    let (_dir, path) = log_path();
    append_all(&path, &[b"a", b"bb", b"ccc"]);
    let (log, recovery) = Log::open(&path, Config::default()).unwrap();
    assert_eq!(recovery.records, 3);
    assert!(recovery.is_clean());
    let payloads: Vec<Vec<u8>> = log
        .iter_from(0)
        .unwrap()
        .map(|r| r.unwrap().payload)
        .collect();
    assert_eq!(
        payloads,
        vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]
    );
}

#[test]
fn appends_continue_after_reopening() {
    let (_dir, path) = log_path();
    append_all(&path, &[b"a", b"b"]);
    let mut log = open(&path);
    assert_eq!(log.append(b"c").unwrap(), 2);
    log.sync().unwrap();
    drop(log);
    let log = open(&path);
    assert_eq!(log.read(2).unwrap(), b"c");
}

#[test]
fn iterating_starts_at_any_offset() {
    let (_dir, path) = log_path();
    let mut log = open(&path);
    for i in 0..10u8 {
        log.append(&[i]).unwrap();
    }
    let offsets: Vec<u64> = log
        .iter_from(7)
        .unwrap()
        .map(|r| r.unwrap().offset)
        .collect();
    assert_eq!(offsets, vec![7, 8, 9]);
    assert_eq!(log.iter_from(10).unwrap().count(), 0);
    assert!(matches!(
        log.iter_from(11),
        Err(LogError::OffsetOutOfRange {
            offset: 11,
            next_offset: 10
        })
    ));
}

#[test]
fn iterating_crosses_read_ahead_chunks() {
    // Records of 10 KiB: the iterator reads about 64 KiB at a time, so 40 of
    // them take several chunks, some flushed and some still buffered.
    let (_dir, path) = log_path();
    let mut log = open(&path);
    for i in 0..40u8 {
        log.append(&[i; 10 * 1024]).unwrap();
    }
    let records: Vec<Record> = log.iter_from(3).unwrap().map(Result::unwrap).collect();
    assert_eq!(records.len(), 37);
    for (record, i) in records.iter().zip(3u8..) {
        assert_eq!(record.offset, u64::from(i));
        assert_eq!(record.payload, vec![i; 10 * 1024]);
    }
}

#[test]
fn iterating_returns_records_bigger_than_the_read_ahead() {
    // Frames of every size around the 64 KiB read-ahead: chunks of many
    // small frames, and frames bigger than a whole chunk.
    let (_dir, path) = log_path();
    let mut log = open(&path);
    let sizes = [
        10,
        70_000,
        5,
        65_536 - 8,
        65_536,
        3,
        200_000,
        1,
        64 * 1024 - 9,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        log.append(&vec![i as u8; size]).unwrap();
        if i % 3 == 0 {
            log.flush().unwrap();
        }
    }
    for from in 0..sizes.len() as u64 {
        let records: Vec<Record> = log.iter_from(from).unwrap().map(Result::unwrap).collect();
        assert_eq!(records.len(), sizes.len() - from as usize);
        for record in records {
            let i = record.offset as usize;
            assert_eq!(record.payload, vec![i as u8; sizes[i]]);
        }
    }
}

#[test]
fn a_second_log_on_the_same_file_is_refused_until_the_first_is_dropped() {
    let (_dir, path) = log_path();
    let first = open(&path);
    let err = Log::open(&path, Config::default()).unwrap_err();
    assert!(matches!(err, LogError::Locked { .. }), "{err}");
    drop(first);
    open(&path);
}

#[test]
fn reading_past_the_end_is_out_of_range() {
    let (_dir, path) = log_path();
    let mut log = open(&path);
    log.append(b"only").unwrap();
    let err = log.read(1).unwrap_err();
    assert!(matches!(
        err,
        LogError::OffsetOutOfRange {
            offset: 1,
            next_offset: 1
        }
    ));
    assert_eq!(
        err.to_string(),
        "offset 1 is out of range: the log holds offsets 0 to 1 (exclusive)"
    );
    assert!(log.read(u64::MAX).is_err());
}

#[test]
fn a_record_over_the_maximum_is_refused_before_anything_is_written() {
    let (_dir, path) = log_path();
    let config = Config {
        max_record_size: 16,
        ..Config::default()
    };
    let (mut log, _) = Log::open(&path, config).unwrap();
    log.append(&[1; 16]).unwrap();
    let err = log.append(&[2; 17]).unwrap_err();
    assert!(matches!(
        err,
        LogError::RecordTooLarge { size: 17, max: 16 }
    ));
    assert_eq!(log.next_offset(), 1);
    assert_eq!(log.len_bytes(), (HEADER_LEN + 16) as u64);
    log.sync().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), (HEADER_LEN + 16) as u64);
}

#[test]
fn an_empty_file_is_an_empty_clean_log() {
    let (_dir, path) = log_path();
    fs::write(&path, b"").unwrap();
    let (log, recovery) = Log::open(&path, Config::default()).unwrap();
    assert_eq!(log.next_offset(), 0);
    assert!(recovery.is_clean());
}

#[test]
fn a_torn_tail_is_cut_off_and_reported() {
    let (_dir, path) = log_path();
    append_all(&path, &[b"first", b"second"]);
    let valid = fs::metadata(&path).unwrap().len();
    // Half a frame: what a crash in the middle of a write leaves behind.
    let mut frame = Vec::new();
    ch01_commit_log::frame::encode(b"third, never finished", &mut frame);
    let half = &frame[..frame.len() / 2];
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(half)
        .unwrap();

    let (mut log, recovery) = Log::open(&path, Config::default()).unwrap();
    assert_eq!(recovery.records, 2);
    assert_eq!(recovery.valid_bytes, valid);
    assert_eq!(recovery.truncated_bytes, half.len() as u64);
    assert_eq!(recovery.damage, Some(Damage::Incomplete));
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        valid,
        "the file is cut back"
    );
    assert_eq!(log.read(1).unwrap(), b"second");

    // New records go right after the last valid one, never after garbage.
    assert_eq!(log.append(b"third").unwrap(), 2);
    log.sync().unwrap();
    drop(log);
    let log = open(&path);
    assert_eq!(log.read(2).unwrap(), b"third");
}

#[test]
fn a_flipped_byte_in_the_last_record_drops_that_record_only() {
    let (_dir, path) = log_path();
    append_all(&path, &[b"first", b"second", b"third"]);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    fs::write(&path, &bytes).unwrap();

    let (log, recovery) = Log::open(&path, Config::default()).unwrap();
    assert_eq!(recovery.records, 2);
    assert_eq!(recovery.damage, Some(Damage::Corrupt));
    assert_eq!(recovery.truncated_bytes, (HEADER_LEN + 5) as u64);
    assert_eq!(log.read(1).unwrap(), b"second");
    assert_eq!(
        recovery.to_string(),
        "2 valid records in 27 bytes; cut off 13 bytes after a frame whose checksum does not match"
    );
}

#[test]
fn a_flipped_byte_mid_file_loses_everything_after_it() {
    // The documented trade-off: after a bad frame nothing can be trusted to
    // be a frame boundary, so recovery stops there.
    let (_dir, path) = log_path();
    append_all(&path, &[b"first", b"second", b"third"]);
    let mut bytes = fs::read(&path).unwrap();
    bytes[HEADER_LEN + 5 + HEADER_LEN] ^= 0x01; // the first byte of "second"
    fs::write(&path, &bytes).unwrap();

    let (log, recovery) = Log::open(&path, Config::default()).unwrap();
    assert_eq!(recovery.records, 1);
    assert_eq!(log.next_offset(), 1);
    assert_eq!(log.read(0).unwrap(), b"first");
}

#[test]
fn garbage_instead_of_a_log_recovers_to_empty() {
    let (_dir, path) = log_path();
    fs::write(&path, b"this is not a log file at all").unwrap();
    let (log, recovery) = Log::open(&path, Config::default()).unwrap();
    assert_eq!(log.next_offset(), 0);
    assert_eq!(recovery.truncated_bytes, 29);
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn damage_after_opening_is_reported_on_read() {
    let (_dir, path) = log_path();
    append_all(&path, &[b"first", b"second"]);
    let log = open(&path);
    // Another process (or a failing disk) changes a byte under us.
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();

    assert_eq!(log.read(0).unwrap(), b"first");
    let err = log.read(1).unwrap_err();
    assert!(matches!(err, LogError::Corrupt { offset: 1, .. }), "{err}");
    let results: Vec<_> = log.iter_from(0).unwrap().collect();
    assert_eq!(results.len(), 2, "the iterator stops after the error");
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(LogError::Corrupt { offset: 1, .. })
    ));
}

#[test]
fn opening_a_directory_is_an_io_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let err = Log::open(dir.path(), Config::default()).unwrap_err();
    assert!(matches!(err, LogError::Io { .. }), "{err}");
}
