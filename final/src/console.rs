//! `kfs produce` and `kfs consume`: records in from standard input, one per
//! line, and out to standard output, one per line, as Kafka's console
//! producer and consumer do.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Write};
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::TopicPartition;
use ch04_network::{
    ClientError, Consumer, ConsumerConfig, ConsumerRecord, DeliveryFuture, OffsetReset, Producer,
    ProducerConfig, SeekTo,
};
use ch05_consumer_groups::consumer::{GroupConsumer, GroupConsumerConfig};
use clap::Args;
use clap::builder::NonEmptyStringValueParser;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

use crate::{Bootstrap, MAX_BLOCK, REQUEST_TIMEOUT, Result, signal};

/// Sent records whose answer `kfs produce` has not checked yet, at most.
/// Past this it waits for the oldest, so a long input does not pile up
/// futures (the producer's own queue bounds the records themselves).
const MAX_UNCHECKED: usize = 10_000;

/// `kfs produce`'s flags.
#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// The topic to write to.
    topic: String,
    /// Read each line as KEY<SEP>VALUE, split at the first SEP
    /// (Kafka's parse.key=true with key.separator).
    #[arg(long, value_name = "SEP", value_parser = NonEmptyStringValueParser::new())]
    key_separator: Option<String>,
    /// 0: do not wait for the broker; 1: wait until it has appended; all:
    /// wait until every in-sync replica has it (a replicated topic's).
    #[arg(long, default_value = "1", value_parser = acks)]
    acks: i8,
    #[command(flatten)]
    bootstrap: Bootstrap,
}

/// `kfs consume`'s flags.
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Start at the first record still stored, not at the end.
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset of --partition: a number, earliest or latest.
    #[arg(long, requires = "partition", value_parser = start_offset)]
    offset: Option<SeekTo>,
    /// Read only this partition (all of them by default).
    #[arg(long)]
    partition: Option<u32>,
    /// Read as a member of this consumer group: the group shares the
    /// topic's partitions among its members, and starts each where the
    /// group's committed offset says (--from-beginning only matters for
    /// partitions with none).
    #[arg(long, conflicts_with_all = ["partition", "offset"])]
    group: Option<String>,
    /// Exit after this many records (follow the topic forever by default).
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit when no record has arrived for this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print each record's key before its value.
    #[arg(long)]
    print_key: bool,
    /// Print each record's partition.
    #[arg(long)]
    print_partition: bool,
    /// Print each record's offset.
    #[arg(long)]
    print_offset: bool,
    #[command(flatten)]
    bootstrap: Bootstrap,
}

/// Parses `--offset`: a number, `earliest` or `latest`.
fn start_offset(text: &str) -> std::result::Result<SeekTo, String> {
    match text {
        "earliest" => Ok(SeekTo::Beginning),
        "latest" => Ok(SeekTo::End),
        n => n
            .parse()
            .map(SeekTo::Offset)
            .map_err(|_| format!("expected an offset, earliest or latest, got {n:?}")),
    }
}

/// Parses `--acks`: 0, 1, or all (also -1, its number on the wire).
pub(crate) fn acks(text: &str) -> std::result::Result<i8, String> {
    match text {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err(format!("expected 0, 1 or all, got {text:?}")),
    }
}

/// Sends every line of standard input, each to its partition's leader,
/// then waits until each is acknowledged: any record that is not makes
/// `kfs produce` fail.
pub(crate) async fn produce(args: ProduceArgs) -> Result<()> {
    let config = ProducerConfig {
        acks: args.acks,
        request_timeout: REQUEST_TIMEOUT,
        max_block: MAX_BLOCK,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&args.bootstrap.bootstrap_server, config).await?;
    let mut unchecked = VecDeque::new();
    let sent = send_lines(&args, &producer, &mut unchecked).await;
    // Whatever stopped the input, the lines before it are delivered (or
    // their error is reported) before `kfs` exits.
    producer.flush().await?;
    for delivery in unchecked {
        delivery.await?;
    }
    producer.close().await?;
    sent
}

/// Line `number` of the input as a record: the value, or the key and the
/// value either side of `--key-separator`.
fn record_of(args: &ProduceArgs, mut line: Vec<u8>, number: u64) -> Result<Record> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(match &args.key_separator {
        None => Record::new(line),
        Some(separator) => match split_once(&line, separator.as_bytes()) {
            Some((key, value)) => Record::new(value).with_key(key),
            None => {
                return Err(format!("no key separator {separator:?} on line {number}").into());
            }
        },
    })
}

async fn send_lines(
    args: &ProduceArgs,
    producer: &Producer,
    unchecked: &mut VecDeque<DeliveryFuture>,
) -> Result<()> {
    // Lines are bytes: a value need not be UTF-8.
    let mut lines = BufReader::new(tokio::io::stdin()).split(b'\n');
    let mut number = 0;
    while let Some(line) = lines.next_segment().await? {
        number += 1;
        let record = record_of(args, line, number)?;
        unchecked.push_back(producer.send(&args.topic, record).await?);
        while unchecked.len() > MAX_UNCHECKED {
            if let Some(oldest) = unchecked.pop_front() {
                oldest.await?;
            }
        }
    }
    Ok(())
}

/// Splits `line` at the first `separator`.
fn split_once<'a>(line: &'a [u8], separator: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = line
        .windows(separator.len())
        .position(|window| window == separator)?;
    Some((&line[..at], &line[at + separator.len()..]))
}

/// How often a group member commits what it has printed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// Where `kfs consume` reads from: partitions it assigns itself, or a
/// group's share of them.
enum Source {
    Assigned(Box<Consumer>),
    Group(Box<Member>),
}

/// A group member that commits exactly what it printed: the offset after
/// each partition's last *printed* record. (Committing the consumer's
/// positions instead would skip records fetched but not printed when
/// `--max-messages` stops it early.)
struct Member {
    consumer: GroupConsumer,
    printed: BTreeMap<TopicPartition, u64>,
    last_commit: Instant,
}

impl Member {
    /// Commits the printed positions of the partitions it still owns.
    async fn commit(&mut self) -> std::result::Result<(), ClientError> {
        self.last_commit = Instant::now();
        let owned = self.consumer.assignment();
        let offsets: Vec<(TopicPartition, u64)> = std::mem::take(&mut self.printed)
            .into_iter()
            .filter(|(tp, _)| owned.contains(tp))
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        let result = self.consumer.commit_offsets_sync(&offsets).await;
        if result.is_err() {
            // Kept for the next attempt (or the commit at close).
            self.printed.extend(offsets);
        }
        result
    }
}

impl Source {
    async fn poll(
        &mut self,
        wait: Duration,
    ) -> std::result::Result<Vec<ConsumerRecord>, ClientError> {
        match self {
            Source::Assigned(consumer) => consumer.poll(wait).await,
            Source::Group(member) => {
                if member.last_commit.elapsed() >= COMMIT_INTERVAL
                    && let Err(e) = member.commit().await
                {
                    // Not fatal: the offsets are kept for the next attempt
                    // (or the commit at close). The worst case is that a
                    // partition moves first (a rebalancing group refuses
                    // commits) and its next owner prints some records
                    // again. Say so, as Kafka's console consumer logs a
                    // failed auto-commit, and read on.
                    eprintln!("warning: commit failed (some records may be read again): {e}");
                }
                member.consumer.poll(wait).await
            }
        }
    }

    fn printed(&mut self, record: &ConsumerRecord) {
        if let Source::Group(member) = self {
            let tp = TopicPartition::new(record.topic.clone(), record.partition);
            member.printed.insert(tp, record.offset + 1);
        }
    }

    /// A group member commits what it printed and leaves the group.
    async fn close(self) -> std::result::Result<(), ClientError> {
        match self {
            Source::Assigned(_) => Ok(()),
            Source::Group(mut member) => {
                member.commit().await?;
                member.consumer.close().await
            }
        }
    }
}

/// Prints records as they arrive until `--max-messages`, `--timeout-ms`,
/// Ctrl-C or SIGTERM, or a closed standard output.
pub(crate) async fn consume(args: ConsumeArgs) -> Result<()> {
    let config = ConsumerConfig {
        auto_offset_reset: if args.from_beginning {
            OffsetReset::Earliest
        } else {
            OffsetReset::Latest
        },
        request_timeout: REQUEST_TIMEOUT,
        ..ConsumerConfig::default()
    };
    let mut source = match &args.group {
        Some(group) => {
            let servers = &args.bootstrap.bootstrap_server;
            // A missing topic is an error now, not an empty assignment.
            Consumer::connect(servers, config.clone())
                .await?
                .partitions_for(&args.topic)
                .await?;
            let mut group_config = GroupConsumerConfig::new(group.clone());
            group_config.client_id = "kfs-consume".into();
            group_config.enable_auto_commit = false;
            group_config.consumer = config;
            let mut consumer = GroupConsumer::connect(servers, group_config).await?;
            consumer.subscribe([args.topic.clone()]);
            Source::Group(Box::new(Member {
                consumer,
                printed: BTreeMap::new(),
                last_commit: Instant::now(),
            }))
        }
        None => Source::Assigned(Box::new(assign(&args, config).await?)),
    };

    // Ctrl-C or SIGTERM: stop reading, commit what was printed, leave.
    let interrupted = signal::stop();
    tokio::pin!(interrupted);
    let quiet_limit = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let mut printed = 0u64;
    let mut out = Vec::new();
    'follow: loop {
        let wait = match quiet_limit {
            Some(limit) => match (last_record + limit).checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(Duration::from_secs(1)),
                _ => break,
            },
            None => Duration::from_secs(1),
        };
        let records = tokio::select! {
            records = source.poll(wait) => records?,
            _ = &mut interrupted => break,
        };
        if !records.is_empty() {
            last_record = Instant::now();
        }
        out.clear();
        for record in &records {
            if args.max_messages.is_some_and(|max| printed >= max) {
                break;
            }
            format_record(&args, record, &mut out);
            source.printed(record);
            printed += 1;
        }
        let mut stdout = std::io::stdout();
        match stdout.write_all(&out).and_then(|()| stdout.flush()) {
            Ok(()) => {}
            // The reader went away (`kfs consume ... | head`): stop quietly.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => break 'follow,
            Err(e) => return Err(e.into()),
        }
        if args.max_messages.is_some_and(|max| printed >= max) {
            break;
        }
    }
    source.close().await?;
    eprintln!("Processed a total of {printed} messages");
    Ok(())
}

/// A consumer of the partitions asked for (all by default), each at the
/// offset asked for.
async fn assign(args: &ConsumeArgs, config: ConsumerConfig) -> Result<Consumer> {
    let mut consumer = Consumer::connect(&args.bootstrap.bootstrap_server, config).await?;
    let count = consumer.partitions_for(&args.topic).await?;
    let partitions = partitions_asked(args, count)?;
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|&p| TopicPartition::new(args.topic.clone(), p))
        .collect();
    consumer.assign(tps.iter().cloned());
    let start = start_of(args);
    for tp in &tps {
        consumer.seek(tp, start).await?;
    }
    Ok(consumer)
}

/// The partitions `--partition` asks for (all `count` by default).
fn partitions_asked(args: &ConsumeArgs, count: u32) -> Result<Vec<u32>> {
    match args.partition {
        Some(p) if p < count => Ok(vec![p]),
        Some(p) => {
            Err(format!("topic {} has no partition {p} (it has {count})", args.topic).into())
        }
        None => Ok((0..count).collect()),
    }
}

/// Where `--offset` or `--from-beginning` says to start (the end by
/// default).
fn start_of(args: &ConsumeArgs) -> SeekTo {
    match args.offset {
        Some(offset) => offset,
        None if args.from_beginning => SeekTo::Beginning,
        None => SeekTo::End,
    }
}

/// One output line: the fields asked for, then the value, tab-separated
/// (the layout of Kafka's console consumer).
fn format_record(args: &ConsumeArgs, record: &ConsumerRecord, out: &mut Vec<u8>) {
    if args.print_partition {
        out.extend_from_slice(format!("Partition:{}\t", record.partition).as_bytes());
    }
    if args.print_offset {
        out.extend_from_slice(format!("Offset:{}\t", record.offset).as_bytes());
    }
    if args.print_key {
        out.extend_from_slice(record.record.key.as_deref().unwrap_or(b"null"));
        out.push(b'\t');
    }
    out.extend_from_slice(&record.record.value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_separator() {
        assert_eq!(
            split_once(b"user-1:hello:world", b":"),
            Some((&b"user-1"[..], &b"hello:world"[..]))
        );
        assert_eq!(split_once(b"k::v", b"::"), Some((&b"k"[..], &b"v"[..])));
        assert_eq!(split_once(b"no separator", b":"), None);
    }

    #[test]
    fn offsets_are_numbers_or_earliest_or_latest() {
        assert_eq!(start_offset("42"), Ok(SeekTo::Offset(42)));
        assert_eq!(start_offset("earliest"), Ok(SeekTo::Beginning));
        assert_eq!(start_offset("latest"), Ok(SeekTo::End));
        assert!(start_offset("-1").is_err());
        assert!(start_offset("soon").is_err());
    }
}
