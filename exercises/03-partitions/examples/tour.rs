//! A tour of topics and partitions: names, keyed and sticky partitioning,
//! per-partition order, the data directory, adding partitions, deleting a
//! topic, and what a crash in the middle of a create leaves behind.
//!
//! Run it with `cargo run -p ch03-partitions --example tour`.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use ch02_segments::{Clock, ManualClock, Record};
use ch03_partitions::{
    Accumulator, DefaultPartitioner, TopicConfig, TopicStore, murmur2, partition_for_key,
};

/// Prints the data directory, one line per entry, directories with their
/// file count.
fn list(dir: &Path) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            println!("  {name}/ ({} files)", fs::read_dir(entry.path())?.count());
        } else if name != ".lock" {
            println!("  {name}");
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    // A fixed clock, so the output is the same on every run.
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let (mut store, _) = TopicStore::open_with_clock(&data, clock.clone())?;

    println!("== topics ==");
    store.create_topic("orders", 3, TopicConfig::default())?;
    println!("created orders with 3 partitions");
    let created = store.create_topic("clicks.v2", 1, TopicConfig::default())?;
    println!(
        "created clicks.v2; warning: {}",
        created.warning.unwrap_or_default()
    );
    for bad in ["bad name", "clicks_v2", ".."] {
        let error = store
            .create_topic(bad, 1, TopicConfig::default())
            .unwrap_err();
        println!("create {bad:?}: {error}");
    }

    println!("\n== keys decide partitions (murmur2, as the Java client) ==");
    for key in ["customer-1", "customer-2", "customer-3", "customer-4"] {
        let hash = murmur2(key.as_bytes()) as i32;
        println!(
            "{key}: murmur2 = {hash:>11}, partition {} of 3",
            partition_for_key(key.as_bytes(), 3)
        );
    }

    println!("\n== producing: 12 keyed orders, then 12 keyless ones ==");
    // Batches of about 150 bytes: a few records each, to watch stickiness.
    let mut acc = Accumulator::new(150, DefaultPartitioner::with_seed(42));
    let mut batches = Vec::new();
    let mut chosen = Vec::new();
    for i in 0..24 {
        let value = format!("order {i:02}");
        let record = if i < 12 {
            let key = format!("customer-{}", i % 4 + 1);
            Record::new(value)
                .with_timestamp(clock.now_ms())
                .with_key(key)
        } else {
            Record::new(value).with_timestamp(clock.now_ms())
        };
        let (partition, ready) = acc.add("orders", 3, record);
        chosen.push(partition);
        batches.extend(ready);
        if i == 11 {
            // Flush the keyed batches, so the keyless ones start afresh.
            batches.extend(acc.drain());
        }
    }
    batches.extend(acc.drain());
    println!("keyed   -> partitions {:?}", &chosen[..12]);
    println!(
        "keyless -> partitions {:?} (sticky: one partition per batch)",
        &chosen[12..]
    );
    for batch in &batches {
        store.append("orders", batch.partition, &batch.records)?;
    }
    println!("{} batches appended", batches.len());

    println!("\n== each partition, in order ==");
    for partition in 0..3 {
        let mut values = Vec::new();
        for batch in store.read("orders", partition, 0, 1 << 20)? {
            for (offset, record) in batch.records()? {
                let key = record.key.map(|k| String::from_utf8_lossy(&k).into_owned());
                let who = key
                    .as_deref()
                    .unwrap_or("-")
                    .trim_start_matches("customer-");
                values.push(format!(
                    "{offset}:{}({who})",
                    String::from_utf8_lossy(&record.value)
                ));
            }
        }
        println!("orders-{partition}: {}", values.join(" "));
    }

    println!("\n== describe orders ==");
    for p in store.describe("orders")?.partitions {
        println!(
            "partition {}: offsets {}..{}, {} bytes in {} segment(s)",
            p.partition, p.log_start_offset, p.log_end_offset, p.size_bytes, p.segments
        );
    }
    println!("the data directory:");
    list(&data)?;

    println!("\n== adding partitions: 3 -> 5 ==");
    store.add_partitions("orders", 5)?;
    for key in ["customer-1", "customer-2", "customer-3", "customer-4"] {
        let (before, after) = (
            partition_for_key(key.as_bytes(), 3),
            partition_for_key(key.as_bytes(), 5),
        );
        let note = if before == after { "" } else { "  <- moved" };
        println!("{key}: partition {before} -> {after}{note}");
    }

    println!("\n== delete clicks.v2, then crash in the middle of a create ==");
    store.delete_topic("clicks.v2")?;
    store.close()?;
    // What a crash leaves if it strikes after "make the directories" and
    // before "commit topics.meta": directories no metadata lists.
    fs::create_dir(data.join("payments-0"))?;
    fs::create_dir(data.join("payments-1"))?;
    let (store, report) = TopicStore::open_with_clock(&data, clock)?;
    println!("reopened: topics {:?}", store.topics());
    println!("removed (never committed): {:?}", report.removed_dirs);
    list(&data)?;
    store.close()?;
    Ok(())
}
