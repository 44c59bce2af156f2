//! A tour of the commit log: append, sync, read, crash, recover.
//!
//! Run it with `cargo run -p ch01-commit-log --example tour`.

use std::fs::OpenOptions;
use std::io::Write;

use ch01_commit_log::{Config, Log, frame};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.log");

    println!("== a new log ==");
    let (mut log, recovery) = Log::open(&path, Config::default())?;
    println!("opened: {recovery}");
    for event in [
        "user 42 signed up",
        "user 42 added a book",
        "user 7 signed up",
    ] {
        let offset = log.append(event.as_bytes())?;
        println!("append {event:?} -> offset {offset}");
    }
    log.sync()?;
    println!(
        "synced: {} records, {} bytes on disk",
        log.next_offset(),
        log.len_bytes()
    );

    println!("\n== reading ==");
    println!("read offset 1 -> {:?}", String::from_utf8(log.read(1)?)?);
    for record in log.iter_from(1)? {
        let record = record?;
        println!(
            "iter: offset {} -> {:?}",
            record.offset,
            String::from_utf8(record.payload)?
        );
    }
    match log.read(3) {
        Ok(_) => unreachable!("offset 3 was never written"),
        Err(e) => println!("read offset 3 -> error: {e}"),
    }
    drop(log);

    println!("\n== a crash in the middle of a write ==");
    let mut torn = Vec::new();
    frame::encode(b"user 7 added a book", &mut torn);
    let half = &torn[..torn.len() / 2];
    OpenOptions::new()
        .append(true)
        .open(&path)?
        .write_all(half)?;
    println!(
        "wrote {} of the {} bytes of a fourth frame, then \"crashed\"",
        half.len(),
        torn.len()
    );

    let (mut log, recovery) = Log::open(&path, Config::default())?;
    println!("reopened: {recovery}");
    let offset = log.append(b"user 7 added a book")?;
    log.sync()?;
    println!(
        "append again -> offset {offset}; the log is whole: {} records",
        log.next_offset()
    );
    Ok(())
}
