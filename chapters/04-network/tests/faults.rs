//! The clients under failure: each delivery reports its own record's
//! offset; a retried batch is resent whole, after the retry backoff; a
//! broker restart under a running producer and consumer loses nothing
//! acknowledged; a bad frame from the broker fails the waiting calls at
//! once, and the next call connects again; a call with no answer times out
//! and closes the connection (the answers behind it cannot come), and the
//! next call connects again. Faults come from a proxy between
//! client and broker (`common::proxy`), or from a fake broker.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use ch02_segments::Record;
use ch03_partitions::TopicPartition;
use ch04_network::protocol::{self, ApiKey, DEFAULT_MAX_FRAME, MetadataRequest, MetadataResponse};
use ch04_network::{
    Admin, Client, ClientError, Consumer, ConsumerConfig, ConsumerRecord, ErrorCode, OffsetReset,
    Producer, ProducerConfig, RecordMetadata,
};
use common::TestBroker;
use common::proxy::{Action, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A generous bound on any wait: these tests wait for events, never for
/// time, and this only turns a hang into a failure.
const DEADLINE: Duration = Duration::from_secs(60);

fn earliest() -> ConsumerConfig {
    ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    }
}

/// Small batches, one request at a time: many batches of one partition
/// become ready while a request is in flight.
fn small_batches_one_in_flight() -> ProducerConfig {
    ProducerConfig {
        batch_size: 256,
        max_in_flight: 1,
        retry_backoff: Duration::from_millis(10),
        ..ProducerConfig::default()
    }
}

/// A broker with the fault proxy in front (the broker advertises the
/// proxy's address, so clients that look leaders up reach it through the
/// proxy), and a topic `t` of one partition.
async fn behind_proxy_with_topic_t() -> (TestBroker, Proxy) {
    let (broker, proxy) = TestBroker::start_behind_proxy().await;
    let admin = Admin::connect(&broker.addr, DEADLINE).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    (broker, proxy)
}

/// Reads partitions from the beginning until `n` records have come.
async fn read(addr: &str, partitions: &[TopicPartition], n: usize) -> Vec<ConsumerRecord> {
    let mut consumer = Consumer::connect(addr, earliest()).await.unwrap();
    consumer.assign(partitions.iter().cloned());
    let deadline = Instant::now() + DEADLINE;
    let mut records = Vec::new();
    while records.len() < n {
        assert!(Instant::now() < deadline, "read {} of {n}", records.len());
        records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    records
}

fn value(record: &ConsumerRecord) -> u64 {
    String::from_utf8_lossy(&record.record.value)
        .parse()
        .unwrap()
}

/// Sends records `0..n` to partition 0 of `topic` and returns each one's
/// acknowledged offset, in send order.
async fn send_all(producer: &Producer, topic: &str, n: u64) -> Vec<u64> {
    let mut deliveries = Vec::new();
    for i in 0..n {
        let record = Record::new(i.to_string()).with_key("one key");
        deliveries.push(producer.send(topic, record).await.unwrap());
    }
    let mut offsets = Vec::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let metadata = tokio::time::timeout(DEADLINE, delivery)
            .await
            .expect("delivered in time")
            .unwrap_or_else(|e| panic!("record {i}: {e}"));
        offsets.push(metadata.offset.unwrap());
    }
    offsets
}

#[tokio::test]
async fn each_delivery_reports_the_offset_of_its_own_record() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, DEADLINE).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let producer = Producer::connect(&broker.addr, small_batches_one_in_flight())
        .await
        .unwrap();
    let offsets = send_all(&producer, "t", 5_000).await;
    producer.close().await.unwrap();

    let distinct: BTreeSet<u64> = offsets.iter().copied().collect();
    assert_eq!(distinct.len(), offsets.len(), "two records got one offset");
    // One request at a time: the offsets are in send order.
    assert!(offsets.is_sorted());
    let records = read(&broker.addr, &[TopicPartition::new("t", 0)], 5_000).await;
    let stored: BTreeMap<u64, u64> = records.iter().map(|r| (r.offset, value(r))).collect();
    for (i, offset) in offsets.iter().enumerate() {
        assert_eq!(stored.get(offset), Some(&(i as u64)), "record {i}");
    }
}

#[tokio::test]
async fn a_batch_that_failed_with_a_retriable_error_is_resent_whole() {
    let (broker, proxy) = behind_proxy_with_topic_t().await;
    // The first produce, and the third, are answered with a retriable
    // error without reaching the broker.
    proxy.on_next(ApiKey::Produce, Action::Fail(ErrorCode::RequestTimedOut));
    proxy.on_next(ApiKey::Produce, Action::Forward);
    proxy.on_next(ApiKey::Produce, Action::Fail(ErrorCode::RequestTimedOut));
    let producer = Producer::connect(&proxy.addr, small_batches_one_in_flight())
        .await
        .unwrap();
    let offsets = send_all(&producer, "t", 500).await;
    producer.close().await.unwrap();

    // The failed requests were sent again...
    assert!(proxy.requests(ApiKey::Produce) >= 3);
    // ... and everything is stored exactly once (the broker never saw the
    // failed attempts), in send order, where its delivery said.
    let records = read(&broker.addr, &[TopicPartition::new("t", 0)], 500).await;
    let values: Vec<u64> = records.iter().map(value).collect();
    assert_eq!(values, (0..500).collect::<Vec<u64>>());
    assert_eq!(offsets, (0..500).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_retried_batch_waits_retry_backoff_first() {
    let (_broker, proxy) = behind_proxy_with_topic_t().await;
    proxy.on_next(ApiKey::Produce, Action::Fail(ErrorCode::RequestTimedOut));
    let backoff = Duration::from_millis(500);
    let producer = Producer::connect(
        &proxy.addr,
        ProducerConfig {
            linger: Duration::ZERO,
            retry_backoff: backoff,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let start = Instant::now();
    let delivery = producer.send("t", Record::new("once")).await.unwrap();
    let metadata = tokio::time::timeout(DEADLINE, delivery)
        .await
        .expect("delivered in time")
        .unwrap();
    // Sent twice, the second time after the backoff.
    assert_eq!(metadata.offset, Some(0));
    assert_eq!(proxy.requests(ApiKey::Produce), 2);
    assert!(start.elapsed() >= backoff, "{:?}", start.elapsed());
    producer.close().await.unwrap();
}

#[tokio::test]
async fn a_producer_told_the_leader_moved_asks_for_metadata_and_sends_again() {
    let (_broker, proxy) = behind_proxy_with_topic_t().await;
    proxy.on_next(
        ApiKey::Produce,
        Action::Fail(ErrorCode::NotLeaderOrFollower),
    );
    let producer = Producer::connect(
        &proxy.addr,
        ProducerConfig {
            retry_backoff: Duration::from_millis(10),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let asked = proxy.requests(ApiKey::Metadata);
    let delivery = producer.send("t", Record::new("moved")).await.unwrap();
    let metadata = tokio::time::timeout(DEADLINE, delivery)
        .await
        .expect("delivered in time")
        .unwrap();
    assert_eq!(metadata.offset, Some(0));
    assert_eq!(proxy.requests(ApiKey::Produce), 2);
    // Between the two attempts it asked where the leader is now.
    assert!(proxy.requests(ApiKey::Metadata) > asked);
    producer.close().await.unwrap();
}

#[tokio::test]
async fn a_consumer_told_the_leader_moved_asks_for_metadata_and_reads_on() {
    let (broker, proxy) = behind_proxy_with_topic_t().await;
    let producer = Producer::connect(&broker.addr, ProducerConfig::default())
        .await
        .unwrap();
    send_all(&producer, "t", 10).await;
    producer.close().await.unwrap();

    let mut consumer = Consumer::connect(&proxy.addr, earliest()).await.unwrap();
    consumer.assign([TopicPartition::new("t", 0)]);
    let asked = proxy.requests(ApiKey::Metadata);
    proxy.on_next(ApiKey::Fetch, Action::Fail(ErrorCode::NotLeaderOrFollower));
    let mut records = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while records.len() < 10 {
        assert!(Instant::now() < deadline, "read {} of 10", records.len());
        records.extend(consumer.poll(Duration::from_secs(1)).await.unwrap());
    }
    let values: Vec<u64> = records.iter().map(value).collect();
    assert_eq!(values, (0..10).collect::<Vec<u64>>());
    assert!(proxy.requests(ApiKey::Fetch) >= 2);
    assert!(proxy.requests(ApiKey::Metadata) > asked);
}

#[tokio::test]
async fn a_batch_whose_answer_was_lost_is_resent_and_may_be_stored_twice() {
    let (broker, proxy) = behind_proxy_with_topic_t().await;
    // The second produce reaches the broker, but its answer never comes
    // back: the connection is cut first.
    proxy.on_next(ApiKey::Produce, Action::Forward);
    proxy.on_next(ApiKey::Produce, Action::ForwardThenCut);
    let producer = Producer::connect(&proxy.addr, small_batches_one_in_flight())
        .await
        .unwrap();
    let offsets = send_all(&producer, "t", 500).await;
    producer.close().await.unwrap();
    assert!(proxy.connections() >= 2, "the producer connected again");

    // At least once: every record is stored where its delivery said; the
    // batch whose answer was lost may be there twice, nothing else is.
    let admin = Admin::connect(&broker.addr, DEADLINE).await.unwrap();
    let end = admin.describe_topic("t").await.unwrap().partitions[0].log_end_offset;
    let records = read(&broker.addr, &[TopicPartition::new("t", 0)], end as usize).await;
    let stored: BTreeMap<u64, u64> = records.iter().map(|r| (r.offset, value(r))).collect();
    for (i, offset) in offsets.iter().enumerate() {
        assert_eq!(stored.get(offset), Some(&(i as u64)), "record {i}");
    }
    let mut copies: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &records {
        *copies.entry(value(r)).or_default() += 1;
    }
    assert_eq!(copies.len(), 500);
    let twice = copies.values().filter(|&&n| n == 2).count();
    assert!(copies.values().all(|&n| n <= 2), "{copies:?}");
    assert!(
        twice * 10 <= 256,
        "more than one batch stored twice: {twice}"
    );
    // One request at a time: first copies are in send order.
    let mut first = Vec::new();
    let mut met = BTreeSet::new();
    for v in records.iter().map(value) {
        if met.insert(v) {
            first.push(v);
        }
    }
    assert!(first.is_sorted());
}

#[tokio::test]
async fn calls_fail_while_connections_are_refused_and_work_again_after() {
    let broker = TestBroker::start().await;
    let proxy = Proxy::start(&broker.addr).await;
    let admin = Admin::connect(&proxy.addr, DEADLINE).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();

    proxy.refuse_connections(true);
    proxy.cut_connections();
    // The connection is gone and a new one is closed as soon as it is
    // made: a retriable connection error, not a hang and not a panic.
    let error = admin.list_topics().await.unwrap_err();
    assert!(
        matches!(error, ClientError::Io { .. }) && error.is_retriable(),
        "{error}"
    );
    let refused = proxy.connections();

    proxy.refuse_connections(false);
    let deadline = Instant::now() + DEADLINE;
    loop {
        match admin.list_topics().await {
            Ok(topics) => {
                assert_eq!(topics, ["t"]);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline && e.is_retriable(), "{e}"),
        }
    }
    assert!(proxy.connections() > refused, "it connected again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_and_a_consumer_carry_on_across_a_broker_restart() {
    let mut broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, DEADLINE).await.unwrap();
    admin.create_topic("t", 2, vec![]).await.unwrap();
    let partitions = [TopicPartition::new("t", 0), TopicPartition::new("t", 1)];

    // A producer sending numbered records with 4 keys until told to stop,
    // each acknowledgement reported on a channel.
    let config = ProducerConfig {
        max_in_flight: 1,
        max_queued: 1_000,
        retry_backoff: Duration::from_millis(20),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&broker.addr, config).await.unwrap();
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let stop_sending = Arc::new(AtomicBool::new(false));
    let stop = stop_sending.clone();
    let sending = tokio::spawn(async move {
        let mut i: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            let record = Record::new(i.to_string()).with_key(format!("k{}", i % 4));
            let acks = acks.clone();
            producer
                .send_with_callback("t", record, move |result| {
                    let _ = acks.send((i, result));
                })
                .await
                .unwrap();
            i += 1;
            if i.is_multiple_of(20) {
                // Pacing, not timing: keeps the volume modest.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        producer.close().await.unwrap();
    });

    // A consumer reading both partitions, each record reported on a channel.
    let (reads, mut read) = tokio::sync::mpsc::unbounded_channel();
    let stop_reading = Arc::new(AtomicBool::new(false));
    let stop = stop_reading.clone();
    let addr = broker.addr.clone();
    let assigned = partitions.clone();
    let reading = tokio::spawn(async move {
        let mut consumer = Consumer::connect(&addr, earliest()).await.unwrap();
        consumer.assign(assigned);
        while !stop.load(Ordering::SeqCst) {
            // A restart is not an error to the consumer.
            for record in consumer.poll(Duration::from_millis(200)).await.unwrap() {
                let _ = reads.send(record);
            }
        }
    });

    // Acknowledgements, by record number: (partition, offset).
    let mut stored: BTreeMap<u64, (u32, u64)> = BTreeMap::new();
    wait_for_acks(&mut acked, &mut stored, 300).await;
    broker.restart().await;
    let before = stored.len();
    // Both carry on: new acknowledgements, after reconnecting.
    wait_for_acks(&mut acked, &mut stored, before + 300).await;
    stop_sending.store(true, Ordering::SeqCst);
    sending.await.unwrap();
    // Every record sent was acknowledged, none failed.
    while let Ok((i, result)) = acked.try_recv() {
        let metadata = result.unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        stored.insert(i, (metadata.partition, metadata.offset.unwrap()));
    }
    let sent = stored.len() as u64;
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (0..sent).collect::<Vec<_>>()
    );

    // The consumer reads every acknowledged record.
    let wanted: BTreeSet<(u32, u64)> = stored.values().copied().collect();
    let mut records: Vec<ConsumerRecord> = Vec::new();
    let mut found = 0;
    let deadline = Instant::now() + DEADLINE;
    while found < wanted.len() {
        let record = tokio::time::timeout_at(deadline, read.recv())
            .await
            .unwrap_or_else(|_| panic!("read {found} of {} acknowledged", wanted.len()))
            .expect("the consumer is running");
        if wanted.contains(&(record.partition, record.offset)) {
            found += 1;
        }
        records.push(record);
    }
    stop_reading.store(true, Ordering::SeqCst);
    reading.await.unwrap();

    for tp in &partitions {
        let mine: Vec<&ConsumerRecord> = records
            .iter()
            .filter(|r| r.partition == tp.partition)
            .collect();
        // Resumed from its position: every offset once, none skipped.
        let offsets: Vec<u64> = mine.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as u64).collect::<Vec<_>>(),
            "{tp}"
        );
        // In order: first copies of records are in send order (a batch
        // whose answer was lost in the restart may be stored twice).
        let mut met = BTreeSet::new();
        let first: Vec<u64> = mine
            .iter()
            .map(|r| value(r))
            .filter(|v| met.insert(*v))
            .collect();
        assert!(first.is_sorted(), "{tp}");
    }
    // Each acknowledged record is where its acknowledgement said.
    let by_place: BTreeMap<(u32, u64), u64> = records
        .iter()
        .map(|r| ((r.partition, r.offset), value(r)))
        .collect();
    for (i, place) in &stored {
        assert_eq!(by_place.get(place), Some(i), "record {i} at {place:?}");
    }
}

type Acks = tokio::sync::mpsc::UnboundedReceiver<(u64, Result<RecordMetadata, ClientError>)>;

/// Waits until `n` records are acknowledged; any failure fails the test.
async fn wait_for_acks(acked: &mut Acks, stored: &mut BTreeMap<u64, (u32, u64)>, n: usize) {
    let deadline = Instant::now() + DEADLINE;
    while stored.len() < n {
        let (i, result) = tokio::time::timeout_at(deadline, acked.recv())
            .await
            .expect("acknowledgements keep coming")
            .expect("the producer is running");
        let metadata = result.unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        stored.insert(i, (metadata.partition, metadata.offset.unwrap()));
    }
}

/// A fake broker: its first connection reads `requests` requests and
/// answers with `garbage`; its second answers one metadata request
/// properly.
async fn fake_broker(
    garbage: &'static [u8],
    requests: usize,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        read_requests(&mut first, requests).await;
        first.write_all(garbage).await.unwrap();
        let (mut second, _) = listener.accept().await.unwrap();
        let id = read_requests(&mut second, 1).await;
        let answer = MetadataResponse {
            brokers: vec![],
            topics: vec![],
        };
        second
            .write_all(&protocol::ok_response(id, &answer))
            .await
            .unwrap();
        // Keep both open: the client, not the server, ends the first.
        let _ = second.read(&mut [0; 1]).await;
        drop(first);
    });
    (addr, task)
}

/// Reads `n` requests; returns the last one's correlation id.
async fn read_requests(stream: &mut TcpStream, n: usize) -> u32 {
    let mut buf = BytesMut::new();
    let mut id = 0;
    for _ in 0..n {
        loop {
            if let Some(frame) = protocol::take_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap() {
                id = protocol::parse_request(frame).unwrap().0.correlation_id;
                break;
            }
            assert_ne!(stream.read_buf(&mut buf).await.unwrap(), 0);
        }
    }
    id
}

#[tokio::test]
async fn a_bad_frame_fails_the_waiting_calls_at_once_and_the_next_call_connects_again() {
    // A length over any limit, and a frame too short for a correlation id.
    for (garbage, says) in [
        (
            &[0xff_u8, 0xff, 0xff, 0xff, 1, 2, 3][..],
            "larger than the limit",
        ),
        (&[0, 0, 0, 2, 1, 2][..], "shorter than"),
    ] {
        let (addr, server) = fake_broker(garbage, 3).await;
        // An hour's request timeout: the calls fail because of the bad
        // frame, not because they timed out.
        let client = Arc::new(
            Client::connect(&addr, Duration::from_secs(3600))
                .await
                .unwrap(),
        );
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let request = MetadataRequest { topics: None };
                    client
                        .call::<_, MetadataResponse>(ApiKey::Metadata, &request)
                        .await
                })
            })
            .collect();
        for call in calls {
            let error = tokio::time::timeout(DEADLINE, call)
                .await
                .expect("the call failed at once")
                .unwrap()
                .unwrap_err();
            match &error {
                ClientError::Io { source, .. } => {
                    assert_eq!(source.kind(), std::io::ErrorKind::InvalidData, "{error}");
                    assert!(error.to_string().contains(says), "{error}");
                }
                other => panic!("not a connection error: {other}"),
            }
            assert!(error.is_retriable());
        }
        // The next call connects again, to a broker that answers.
        let request = MetadataRequest { topics: None };
        let answer: MetadataResponse =
            tokio::time::timeout(DEADLINE, client.call(ApiKey::Metadata, &request))
                .await
                .expect("answered in time")
                .unwrap();
        assert!(answer.topics.is_empty());
        drop(client);
        tokio::time::timeout(DEADLINE, server)
            .await
            .expect("the fake broker finished")
            .unwrap();
    }
}

#[tokio::test]
async fn a_call_without_an_answer_times_out_closes_the_connection_and_the_next_connects_again() {
    // A fake broker whose first connection never answers (two requests
    // come on it: the second is stuck behind the first, as a broker
    // answers in order), and whose second connection answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut silent, _) = listener.accept().await.unwrap();
        read_requests(&mut silent, 2).await;
        let (mut stream, _) = listener.accept().await.unwrap();
        let id = read_requests(&mut stream, 1).await;
        let answer = MetadataResponse {
            brokers: vec![],
            topics: vec![],
        };
        stream
            .write_all(&protocol::ok_response(id, &answer))
            .await
            .unwrap();
        // Keep it open: the client ends it.
        let _ = stream.read(&mut [0; 1]).await;
        drop(silent);
    });
    let client = Client::connect(&addr, Duration::from_millis(300))
        .await
        .unwrap();
    let request = MetadataRequest { topics: None };
    let first = client.call::<_, MetadataResponse>(ApiKey::Metadata, &request);
    // The second is written a moment later, so its timeout ends later.
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client
            .call::<_, MetadataResponse>(ApiKey::Metadata, &request)
            .await
    };
    let (first, second) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(first, second)
    })
    .await
    .expect("the calls gave up by themselves");
    assert!(matches!(first, Err(ClientError::Timeout(300))), "{first:?}");
    // The call behind it failed when the connection closed, before its
    // own timeout, with a retriable error that says why.
    let second = second.unwrap_err();
    assert!(
        matches!(&second, ClientError::Io { .. }) && second.is_retriable(),
        "{second}"
    );
    assert!(
        second.to_string().contains("no answer in 300 ms"),
        "{second}"
    );
    // The next call connects again, and is answered.
    let call = client.call::<_, MetadataResponse>(ApiKey::Metadata, &request);
    let answer = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("answered in time")
        .unwrap();
    assert!(answer.topics.is_empty());
    drop(client);
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the fake broker finished")
        .unwrap();
}
