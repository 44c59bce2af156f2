//! Properties that hold for every input, checked with proptest on random
//! records, random flush points, random cuts and random damage.

use std::fs;

use ch01_commit_log::frame::{self, Decoded};
use ch01_commit_log::{Config, Log};
use proptest::prelude::*;

fn records() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..40)
}

/// Writes `records` to a fresh log file and returns the file's bytes.
fn write_log(records: &[Vec<u8>]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.log");
    let (mut log, _) = Log::open(&path, Config::default()).unwrap();
    for record in records {
        log.append(record).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    fs::read(&path).unwrap()
}

/// Opens a log over `bytes` and returns every record it recovers.
fn recover(bytes: &[u8]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.log");
    fs::write(&path, bytes).unwrap();
    let (log, recovery) = Log::open(&path, Config::default()).unwrap();
    assert_eq!(recovery.records, log.next_offset());
    assert_eq!(
        recovery.valid_bytes + recovery.truncated_bytes,
        bytes.len() as u64
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), recovery.valid_bytes);
    log.iter_from(0)
        .unwrap()
        .map(|r| r.unwrap().payload)
        .collect()
}

/// Where each record's frame ends in a file holding `records`.
fn frame_ends(records: &[Vec<u8>]) -> Vec<usize> {
    records
        .iter()
        .scan(0, |end, r| {
            *end += frame::HEADER_LEN + r.len();
            Some(*end)
        })
        .collect()
}

proptest! {
    #[test]
    fn any_frame_decodes_to_its_payload(payload in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut bytes = Vec::new();
        frame::encode(&payload, &mut bytes);
        prop_assert_eq!(
            frame::decode(&bytes),
            Decoded::Frame { payload: &payload, frame_len: bytes.len() }
        );
    }

    #[test]
    fn any_records_round_trip_with_any_flushes(
        records in records(),
        flush_every in 1usize..8,
        buffer in 1usize..4096,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        let config = Config { write_buffer_size: buffer, ..Config::default() };
        let (mut log, _) = Log::open(&path, config.clone()).unwrap();
        for (i, record) in records.iter().enumerate() {
            prop_assert_eq!(log.append(record).unwrap(), i as u64);
            if i % flush_every == 0 {
                log.flush().unwrap();
            }
            prop_assert_eq!(&log.read(i as u64).unwrap(), record);
        }
        log.sync().unwrap();
        drop(log);

        let (log, recovery) = Log::open(&path, config).unwrap();
        prop_assert!(recovery.is_clean());
        let read: Vec<Vec<u8>> = log.iter_from(0).unwrap().map(|r| r.unwrap().payload).collect();
        prop_assert_eq!(read, records);
    }

    #[test]
    fn any_truncation_recovers_exactly_the_whole_frames_before_the_cut(
        records in records(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = write_log(&records);
        let cut = cut.index(bytes.len() + 1);
        let whole = frame_ends(&records).iter().filter(|&&end| end <= cut).count();
        prop_assert_eq!(recover(&bytes[..cut]), records[..whole].to_vec());
    }

    #[test]
    fn any_flipped_byte_loses_its_record_and_those_after_it_but_never_returns_wrong_data(
        records in records().prop_filter("need a record", |r| !r.is_empty()),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut bytes = write_log(&records);
        let at = at.index(bytes.len());
        bytes[at] ^= flip;
        // The damaged record is the first whose frame ends after the byte.
        let damaged = frame_ends(&records).iter().position(|&end| end > at).unwrap();
        prop_assert_eq!(recover(&bytes), records[..damaged].to_vec());
    }
}
