//! A model test: random sequences of operations run against the log and
//! against a plain in-memory model (a vector of batches), which must agree
//! after every step.

use std::sync::Arc;

use ch02_segments::{Clock, Log, LogConfig, LogError, ManualClock, Record};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append a batch: record value sizes, and the timestamp step.
    Append(Vec<usize>, i64),
    /// Read at a point between (just below) the log start and (just past) the end.
    Read(prop::sample::Index),
    Truncate(prop::sample::Index),
    Roll,
    /// Advance the clock, then apply retention.
    Retention(i64),
    CloseAndReopen,
    /// Drop the log without closing it: everything written is in the page
    /// cache, so after recovery nothing may be missing.
    CrashAndReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec(0usize..200, 1..6), 0i64..50).prop_map(|(v, t)| Op::Append(v, t)),
        3 => any::<prop::sample::Index>().prop_map(Op::Read),
        1 => any::<prop::sample::Index>().prop_map(Op::Truncate),
        1 => Just(Op::Roll),
        1 => (0i64..400).prop_map(Op::Retention),
        1 => Just(Op::CloseAndReopen),
        1 => Just(Op::CrashAndReopen),
    ]
}

/// The model: batches of (base offset, records), and where the log starts.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<(u64, Vec<Record>)>,
    start: u64,
    end: u64,
}

impl Model {
    fn record_at(&self, offset: u64) -> Option<(u64, &Record)> {
        self.batches.iter().find_map(|(base, records)| {
            let i = offset.checked_sub(*base)? as usize;
            records.get(i).map(|r| (*base, r))
        })
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 100,
        segment_ms: Some(1000),
        retention_ms: Some(300),
        retention_bytes: Some(2000),
        ..LogConfig::default()
    }
}

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Log {
    Log::open_with_clock(dir, config(), clock.clone())
        .unwrap()
        .0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_log_agrees_with_a_vector_of_batches(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(0));
        let mut log = open(dir.path(), &clock);
        let mut model = Model::default();
        let mut value_seed = 0u8;

        for op in ops {
            match op {
                Op::Append(sizes, step) => {
                    clock.advance(step);
                    let now = clock.now_ms();
                    let records: Vec<Record> = sizes
                        .iter()
                        .map(|&n| {
                            value_seed = value_seed.wrapping_add(1);
                            Record::new(vec![value_seed; n]).with_timestamp(now)
                        })
                        .collect();
                    let info = log.append(&records).unwrap();
                    prop_assert_eq!(info.base_offset, model.end);
                    model.end += records.len() as u64;
                    model.batches.push((info.base_offset, records));
                }
                Op::Read(at) => {
                    let offset = model.start.saturating_sub(1) + at.index((model.end - model.start + 3) as usize) as u64;
                    match log.read(offset, 1) {
                        Ok(batches) if offset == model.end => prop_assert!(batches.is_empty()),
                        Ok(batches) => {
                            let (base, record) = model.record_at(offset).expect("the model has it");
                            prop_assert_eq!(batches[0].header.base_offset, base);
                            let records = batches[0].records().unwrap();
                            prop_assert_eq!(&records[(offset - base) as usize].1, record);
                        }
                        Err(LogError::OffsetOutOfRange { log_start, log_end, .. }) => {
                            prop_assert!(offset < model.start || offset > model.end);
                            prop_assert_eq!((log_start, log_end), (model.start, model.end));
                        }
                        Err(e) => prop_assert!(false, "read {}: {}", offset, e),
                    }
                }
                Op::Truncate(at) => {
                    let offset = model.start + at.index((model.end - model.start + 1) as usize) as u64;
                    let new_end = log.truncate_to(offset).unwrap();
                    if offset < model.end {
                        if offset == model.start {
                            model.batches.clear();
                            model.end = offset;
                        } else {
                            // The cut falls at the start of the batch holding `offset`.
                            let keep = model.batches.partition_point(|(base, r)| base + r.len() as u64 <= offset);
                            model.batches.truncate(keep);
                            model.end = model.batches.last().map_or(model.start, |(b, r)| b + r.len() as u64);
                        }
                    }
                    prop_assert_eq!(new_end, model.end);
                }
                Op::Roll => log.roll().unwrap(),
                Op::Retention(ms) => {
                    clock.advance(ms);
                    let report = log.apply_retention().unwrap();
                    prop_assert!(report.log_start_offset >= model.start);
                    prop_assert!(report.log_start_offset <= model.end);
                    model.start = report.log_start_offset;
                    model.batches.retain(|(base, _)| *base >= model.start);
                    // The new start is a batch boundary, or the empty end.
                    prop_assert!(model.batches.first().is_none_or(|(base, _)| *base == model.start));
                }
                Op::CloseAndReopen => {
                    log.close().unwrap();
                    let (reopened, report) = Log::open_with_clock(dir.path(), config(), clock.clone()).unwrap();
                    prop_assert!(report.clean_shutdown);
                    prop_assert_eq!(report.scanned_segments, 0);
                    log = reopened;
                }
                Op::CrashAndReopen => {
                    drop(log);
                    let (reopened, report) = Log::open_with_clock(dir.path(), config(), clock.clone()).unwrap();
                    prop_assert!(!report.clean_shutdown);
                    prop_assert_eq!(report.truncated_bytes, 0);
                    log = reopened;
                }
            }
            prop_assert_eq!((log.log_start_offset(), log.log_end_offset()), (model.start, model.end));
        }

        // Finally, everything reads back in order.
        let mut offset = model.start;
        while offset < model.end {
            let batches = log.read(offset, 4096).unwrap();
            prop_assert!(!batches.is_empty());
            for batch in batches {
                for (o, record) in batch.records().unwrap() {
                    prop_assert_eq!(Some(&record), model.record_at(o).map(|(_, r)| r));
                }
                offset = batch.header.next_offset();
            }
        }
    }
}
