//! A tour of the segmented log: segments on disk, index and time lookups,
//! retention, truncation, and reopening after a clean and an unclean stop.
//!
//! Run it with `cargo run -p ch02-segments --example tour`.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use ch02_segments::{Log, LogConfig, ManualClock, Record};

/// Prints the files of a log directory with their sizes.
fn list(dir: &Path) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        println!(
            "  {:<28} {:>6} bytes",
            entry.file_name().to_string_lossy(),
            entry.metadata()?.len()
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("orders-0");
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    // Tiny segments and a dense index so that 1,000 records show everything.
    let config = LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 1024,
        retention_bytes: Some(30 * 1024),
        ..LogConfig::default()
    };

    println!("== appending 1,000 records in batches of 10 ==");
    let (mut log, _) = Log::open_with_clock(&dir, config.clone(), clock.clone())?;
    for batch in 0..100 {
        // One batch a second, each record an order of 40-odd bytes.
        let now = 1_700_000_000_000 + batch * 1000;
        let records: Vec<Record> = (0..10)
            .map(|i| {
                Record::new(format!("order {:04}: 2 books, 1 lamp", batch * 10 + i))
                    .with_timestamp(now)
            })
            .collect();
        log.append(&records)?;
    }
    println!(
        "log offsets {}..{}, in these files:",
        log.log_start_offset(),
        log.log_end_offset()
    );
    list(&dir)?;

    println!("\n== reading through the index ==");
    let batches = log.read(537, 1)?;
    let batch = &batches[0];
    println!(
        "read(537) -> the whole batch {}..={} ({} bytes), found via the index of segment {}",
        batch.header.base_offset,
        batch.header.last_offset(),
        batch.bytes.len(),
        log.segments()
            .iter()
            .rev()
            .find(|s| s.base_offset <= 537)
            .map_or(0, |s| s.base_offset)
    );
    let (offset, record) = &batch.records()?[7];
    println!(
        "its record {offset}: {:?}",
        String::from_utf8_lossy(&record.value)
    );
    let t = 1_700_000_042_500;
    println!(
        "first offset at or after time +42.5 s: {:?}",
        log.offset_for_timestamp(t)?
    );

    println!("\n== retention: keep at least 30 KiB ==");
    let report = log.apply_retention()?;
    println!(
        "deleted segments {:?}; the log now starts at offset {}",
        report.deleted_segments, report.log_start_offset
    );
    match log.read(0, 1) {
        Ok(_) => unreachable!("offset 0 was deleted"),
        Err(e) => println!("read(0) -> error: {e}"),
    }

    println!("\n== truncation (what a follower does when it diverged) ==");
    println!(
        "truncate_to(905) -> the log now ends at {}",
        log.truncate_to(905)?
    );

    println!("\n== stopping and starting ==");
    log.close()?;
    let (log, report) = Log::open_with_clock(&dir, config.clone(), clock.clone())?;
    println!("after close(): {report}");
    drop(log); // no close(): as if the process had crashed
    let (_log, report) = Log::open_with_clock(&dir, config, clock)?;
    println!("after a crash: {report}");
    Ok(())
}
