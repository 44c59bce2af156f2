//! `kfs perf`: end-to-end throughput and latency, modelled on Kafka's
//! `kafka-producer-perf-test` and `kafka-consumer-perf-test` (same flags
//! where they exist, and a similar report), and `kfs perf coordinator`
//! for chapter 7's coordinator (in `perf/coordinator.rs`), which reports
//! the same way.

mod coordinator;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::TopicPartition;
use ch04_network::{Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, SeekTo};
use clap::{Args, Subcommand};
use tokio::time::Instant;

use crate::{Bootstrap, MAX_BLOCK, REQUEST_TIMEOUT, Result, console};

/// `kfs perf`'s subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PerfCommand {
    /// Send records as fast as allowed; report records/s, MB/s and latency
    /// percentiles.
    Produce(ProducePerfArgs),
    /// Read a topic from its beginning; report records/s and MB/s.
    Consume(ConsumePerfArgs),
    /// Load a coordinator ensemble from many sessions; report requests/s
    /// and latency percentiles.
    Coordinator(coordinator::CoordinatorPerfArgs),
}

/// `kfs perf produce`'s flags.
#[derive(Debug, Args)]
pub(crate) struct ProducePerfArgs {
    /// The topic to write to (it must exist).
    #[arg(long)]
    topic: String,
    /// How many records to send.
    #[arg(long)]
    num_records: u64,
    /// Each record's value size in bytes (records have no key).
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per second to aim at, or -1 for as fast as possible.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_parser = rate)]
    throughput: i64,
    /// 0: do not wait for the broker; 1: wait until it has appended;
    /// all (or -1): wait until every in-sync replica has it (a replicated
    /// topic's; a topic of one broker treats it as 1).
    #[arg(long, default_value = "1", allow_negative_numbers = true,
          value_parser = console::acks)]
    acks: i8,
    /// The producer's batch.size, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    batch_size: usize,
    /// The producer's linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// The producer's max.in.flight.requests.per.connection: how many
    /// produce requests may wait for their answers at once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    max_in_flight: u16,
    /// How often to print a progress line.
    #[arg(long, default_value_t = 5000)]
    reporting_interval_ms: u64,
    #[command(flatten)]
    bootstrap: Bootstrap,
}

/// `kfs perf consume`'s flags.
#[derive(Debug, Args)]
pub(crate) struct ConsumePerfArgs {
    /// The topic to read, from its beginning, every partition.
    #[arg(long)]
    topic: String,
    /// How many records to read.
    #[arg(long)]
    messages: u64,
    /// Give up when no record has arrived for this long.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// How often to print a progress line.
    #[arg(long, default_value_t = 5000)]
    reporting_interval_ms: u64,
    #[command(flatten)]
    bootstrap: Bootstrap,
}

/// Parses `--throughput`: -1, or at least one record per second.
fn rate(text: &str) -> std::result::Result<i64, String> {
    match text.parse::<i64>() {
        Ok(n) if n == -1 || n >= 1 => Ok(n),
        _ => Err(format!("expected -1 or a positive number, got {text:?}")),
    }
}

/// Runs one `kfs perf` subcommand.
pub(crate) async fn run(command: PerfCommand) -> Result<()> {
    match command {
        PerfCommand::Produce(args) => produce(args).await,
        PerfCommand::Consume(args) => consume(args).await,
        PerfCommand::Coordinator(args) => coordinator::run(args).await,
    }
}

/// Records and bytes over a stretch of time, for progress lines.
struct Window {
    start: Instant,
    records: u64,
    bytes: u64,
    latency_sum_us: u64,
    latency_max_us: u32,
}

impl Window {
    fn new(start: Instant) -> Window {
        Window {
            start,
            records: 0,
            bytes: 0,
            latency_sum_us: 0,
            latency_max_us: 0,
        }
    }

    fn add(&mut self, bytes: u64, latency_us: u32) {
        self.records += 1;
        self.bytes += bytes;
        self.latency_sum_us += u64::from(latency_us);
        self.latency_max_us = self.latency_max_us.max(latency_us);
    }

    /// Records per second and MB (MiB, as Kafka's tools count) per second.
    fn rates(&self, now: Instant) -> (f64, f64) {
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-9);
        let records = self.records as f64 / secs;
        let megabytes = self.bytes as f64 / (1024.0 * 1024.0) / secs;
        (records, megabytes)
    }

    fn average_latency_ms(&self) -> f64 {
        self.latency_sum_us as f64 / self.records.max(1) as f64 / 1000.0
    }
}

/// The latency below which a fraction `q` of the sorted samples fall
/// (nearest rank: the smallest sample with at least `q` of them at or
/// below it).
fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

// ANCHOR: produce
/// `kfs perf produce`: sends as fast as allowed, and times each record
/// from `send` to the broker's answer in a callback, as Kafka's tool does:
/// the callback runs on the producer's task the moment the answer comes,
/// so the time is right however busy the sending loop is.
async fn produce(args: ProducePerfArgs) -> Result<()> {
    let config = ProducerConfig {
        acks: args.acks,
        batch_size: args.batch_size,
        linger: Duration::from_millis(args.linger_ms),
        max_in_flight: usize::from(args.max_in_flight),
        request_timeout: REQUEST_TIMEOUT,
        max_block: MAX_BLOCK,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&args.bootstrap.bootstrap_server, config).await?;
    // Random capital letters, as Kafka's tool sends: not all zeros, which
    // would flatter any layer that compresses.
    let payload: Vec<u8> = (0..args.record_size)
        .map(|_| fastrand::u8(b'A'..=b'Z'))
        .collect();
    let start = Instant::now();
    let recorder = Arc::new(Mutex::new(Recorder::new(
        "records",
        start,
        args.num_records as usize,
    )));
    let progress = tokio::spawn(print_progress(
        recorder.clone(),
        Duration::from_millis(args.reporting_interval_ms),
    ));
    let bytes = args.record_size as u64;
    let per_record = (args.throughput > 0).then(|| 1.0 / args.throughput as f64);
    for i in 0..args.num_records {
        // Throttle like Kafka's: sleep whenever ahead of the schedule.
        if let Some(per_record) = per_record {
            let due = start + Duration::from_secs_f64(i as f64 * per_record);
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
        let sent_at = Instant::now();
        let recorder = recorder.clone();
        let record = Record::new(payload.clone());
        producer
            .send_with_callback(&args.topic, record, move |result| {
                recorder
                    .lock()
                    .unwrap()
                    .record(sent_at, bytes, result.map(|_| ()));
            })
            .await?;
    }
    producer.flush().await?;
    producer.close().await?;
    progress.abort();
    let recorder = recorder.lock().unwrap();
    println!("{}", recorder.summary());
    match &recorder.first_error {
        None => Ok(()),
        Some(error) => {
            Err(format!("{} records failed; the first: {error}", recorder.failed).into())
        }
    }
}
// ANCHOR_END: produce

/// Every record's (or request's) latency and the running totals, filled
/// in by the producer's callbacks or the coordinator's sessions.
struct Recorder {
    /// What is counted, in the report: `records`, `requests`.
    noun: &'static str,
    /// Every latency, in µs: 4 bytes a record, and exact percentiles.
    latencies: Vec<u32>,
    total: Window,
    /// Since the last progress line.
    window: Window,
    /// When the last answer came.
    last: Instant,
    failed: u64,
    first_error: Option<String>,
}

impl Recorder {
    fn new(noun: &'static str, start: Instant, expected: usize) -> Recorder {
        Recorder {
            noun,
            latencies: Vec::with_capacity(expected),
            total: Window::new(start),
            window: Window::new(start),
            last: start,
            failed: 0,
            first_error: None,
        }
    }

    fn record<E: std::fmt::Display>(
        &mut self,
        sent_at: Instant,
        bytes: u64,
        result: std::result::Result<(), E>,
    ) {
        let now = Instant::now();
        self.last = now;
        match result {
            Ok(()) => {
                let us = now
                    .duration_since(sent_at)
                    .as_micros()
                    .min(u128::from(u32::MAX)) as u32;
                self.latencies.push(us);
                self.total.add(bytes, us);
                self.window.add(bytes, us);
            }
            Err(e) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    fn summary(&self) -> String {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let (records, mb) = self.total.rates(self.last);
        let noun = self.noun;
        format!(
            "{} {noun} sent, {records:.1} {noun}/sec ({mb:.2} MB/sec), \
             {:.2} ms avg latency, {:.2} ms max latency, {:.2} ms 50th, \
             {:.2} ms 95th, {:.2} ms 99th, {:.2} ms 99.9th.",
            self.total.records,
            self.total.average_latency_ms(),
            ms(self.total.latency_max_us),
            ms(percentile(&sorted, 0.50)),
            ms(percentile(&sorted, 0.95)),
            ms(percentile(&sorted, 0.99)),
            ms(percentile(&sorted, 0.999)),
        )
    }
}

/// Prints what was acknowledged in each interval, until aborted.
async fn print_progress(recorder: Arc<Mutex<Recorder>>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let now = Instant::now();
        let line = {
            let mut recorder = recorder.lock().unwrap();
            let window = std::mem::replace(&mut recorder.window, Window::new(now));
            let (records, mb) = window.rates(now);
            let noun = recorder.noun;
            format!(
                "{} {noun} sent, {records:.1} {noun}/sec ({mb:.2} MB/sec), \
                 {:.2} ms avg latency, {:.2} ms max latency.",
                window.records,
                window.average_latency_ms(),
                ms(window.latency_max_us),
            )
        };
        println!("{line}");
    }
}

/// `kfs perf consume`: reads every partition from its beginning until
/// `--messages` records have arrived.
async fn consume(args: ConsumePerfArgs) -> Result<()> {
    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        request_timeout: REQUEST_TIMEOUT,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(&args.bootstrap.bootstrap_server, config).await?;
    let partitions = consumer.partitions_for(&args.topic).await?;
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(args.topic.clone(), p))
        .collect();
    consumer.assign(tps.iter().cloned());
    for tp in &tps {
        consumer.seek(tp, SeekTo::Beginning).await?;
    }
    let quiet_limit = Duration::from_millis(args.timeout_ms);
    let reporting_interval = Duration::from_millis(args.reporting_interval_ms);
    let start = Instant::now();
    let mut total = Window::new(start);
    let mut window = Window::new(start);
    let mut last_record = start;
    while total.records < args.messages {
        let now = Instant::now();
        let quiet = now.duration_since(last_record);
        if quiet >= quiet_limit {
            break;
        }
        let records = consumer
            .poll((quiet_limit - quiet).min(Duration::from_secs(1)))
            .await?;
        let now = Instant::now();
        if !records.is_empty() {
            last_record = now;
        }
        for r in &records {
            let bytes = (r.record.value.len() + r.record.key.as_ref().map_or(0, Vec::len)) as u64;
            total.add(bytes, 0);
            window.add(bytes, 0);
        }
        if now.duration_since(window.start) >= reporting_interval {
            let (records, mb) = window.rates(now);
            println!(
                "{} records read, {records:.1} records/sec ({mb:.2} MB/sec).",
                window.records
            );
            window = Window::new(now);
        }
    }
    let end = if total.records >= args.messages {
        Instant::now()
    } else {
        last_record
    };
    let (records, mb) = total.rates(end);
    println!(
        "{} records read ({:.2} MB) in {:.2} s, {records:.1} records/sec ({mb:.2} MB/sec).",
        total.records,
        total.bytes as f64 / (1024.0 * 1024.0),
        end.duration_since(start).as_secs_f64(),
    );
    if total.records < args.messages {
        return Err(format!(
            "only {} of {} records arrived: none for {} ms",
            total.records, args.messages, args.timeout_ms
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&sorted, 0.50), 500);
        assert_eq!(percentile(&sorted, 0.99), 990);
        assert_eq!(percentile(&sorted, 0.999), 999);
        assert_eq!(percentile(&sorted, 1.0), 1000);
        assert_eq!(percentile(&sorted, 0.0), 1);
        assert_eq!(percentile(&[7], 0.999), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn throughput_is_minus_one_or_positive() {
        assert_eq!(rate("-1"), Ok(-1));
        assert_eq!(rate("5000"), Ok(5000));
        assert!(rate("0").is_err());
        assert!(rate("-2").is_err());
        assert!(rate("fast").is_err());
    }

    #[test]
    fn rates_are_per_second_in_mebibytes() {
        let start = Instant::now();
        let mut window = Window::new(start);
        for _ in 0..1000 {
            window.add(1024 * 1024, 2000);
        }
        let (records, mb) = window.rates(start + Duration::from_secs(2));
        assert!((records - 500.0).abs() < 1e-6, "{records}");
        assert!((mb - 500.0).abs() < 1e-6, "{mb}");
        assert!((window.average_latency_ms() - 2.0).abs() < 1e-9);
    }
}
