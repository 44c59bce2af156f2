//! Bad bytes over a raw socket, as a broken or hostile client sends them.
//! Each gets an error response or a closed connection; the broker keeps
//! serving every other client and loses nothing already stored.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use ch02_segments::{Record, batch};
use ch03_partitions::TopicPartition;
use ch04_network::protocol::{
    self, ApiKey, ErrorResponse, FetchPartition, FetchRequest, FetchResponse, MetadataRequest,
    ProducePartition, ProduceRequest, ProduceResponse, ProduceTopic, RequestHeader,
};
use ch04_network::{Admin, Consumer, ConsumerConfig, ErrorCode, OffsetReset, ServerConfig};
use common::TestBroker;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);

fn request<T: Serialize>(
    api_key: u16,
    api_version: u16,
    correlation_id: u32,
    body: &T,
) -> BytesMut {
    let mut out = BytesMut::new();
    let header = RequestHeader {
        api_key,
        api_version,
        correlation_id,
    };
    protocol::encode_request(header, body, &mut out).unwrap();
    out
}

/// Reads one response frame: its correlation id and its decoded body.
async fn response<T: DeserializeOwned>(stream: &mut TcpStream) -> (u32, Result<T, ErrorResponse>) {
    let mut len = [0; 4];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut frame = vec![0; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame).await.unwrap();
    let (id, body) = protocol::parse_response(frame.into()).unwrap();
    (id, protocol::decode_body(&body).unwrap())
}

/// Whether the broker closed the connection (read returns end of file).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0; 1];
    matches!(
        tokio::time::timeout(TIMEOUT, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// The broker still answers a well-formed request on a new connection.
async fn still_serving(addr: &str) {
    let admin = Admin::connect(addr, TIMEOUT).await.unwrap();
    admin.list_topics().await.unwrap();
}

#[tokio::test]
async fn garbage_bytes_close_that_connection_only() {
    let broker = TestBroker::start().await;
    let mut bystander = TcpStream::connect(&broker.addr).await.unwrap();
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    // "GET / HTTP/1.1": its first four bytes announce a 1.2 GB frame.
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(closed(&mut stream).await);
    // A connection opened before is unaffected.
    bystander
        .write_all(&request(
            ApiKey::Metadata as u16,
            0,
            1,
            &MetadataRequest { topics: None },
        ))
        .await
        .unwrap();
    let (id, body) = response::<ch04_network::protocol::MetadataResponse>(&mut bystander).await;
    assert_eq!(id, 1);
    assert!(body.is_ok());
    still_serving(&broker.addr).await;
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused_before_its_body_is_read() {
    let broker = TestBroker::start_with(ServerConfig {
        max_frame: 1024,
        ..ServerConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    // Only the length is sent: the broker must not wait for 1 MiB of body.
    stream
        .write_all(&(1024u32 * 1024).to_be_bytes())
        .await
        .unwrap();
    assert!(closed(&mut stream).await);
    still_serving(&broker.addr).await;
}

#[tokio::test]
async fn a_truncated_frame_then_a_hang_up_is_survived() {
    let broker = TestBroker::start().await;
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    let whole = request(
        ApiKey::Metadata as u16,
        0,
        1,
        &MetadataRequest { topics: None },
    );
    stream.write_all(&whole[..whole.len() - 3]).await.unwrap();
    drop(stream);
    still_serving(&broker.addr).await;
}

#[tokio::test]
async fn a_frame_shorter_than_a_header_closes_the_connection() {
    let broker = TestBroker::start().await;
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    stream.write_all(&[0, 0, 0, 3, 0, 3, 0]).await.unwrap();
    assert!(closed(&mut stream).await);
    still_serving(&broker.addr).await;
}

#[tokio::test]
async fn unknown_api_keys_and_versions_get_an_error_with_their_correlation_id() {
    let broker = TestBroker::start().await;
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    stream.write_all(&request(999, 0, 41, &())).await.unwrap();
    let (id, body) = response::<()>(&mut stream).await;
    assert_eq!(id, 41);
    assert_eq!(body.unwrap_err().error, ErrorCode::UnsupportedVersion);

    let metadata = MetadataRequest { topics: None };
    stream
        .write_all(&request(ApiKey::Metadata as u16, 7, 42, &metadata))
        .await
        .unwrap();
    let (id, body) = response::<()>(&mut stream).await;
    assert_eq!(id, 42);
    assert_eq!(body.unwrap_err().error, ErrorCode::UnsupportedVersion);

    // The connection is still usable: framing was never lost.
    stream
        .write_all(&request(ApiKey::Metadata as u16, 0, 43, &metadata))
        .await
        .unwrap();
    let (id, body) = response::<ch04_network::protocol::MetadataResponse>(&mut stream).await;
    assert_eq!(id, 43);
    assert!(body.is_ok());
}

#[tokio::test]
async fn an_undecodable_body_gets_invalid_request() {
    let broker = TestBroker::start().await;
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    let mut frame = BytesMut::new();
    frame.put_u32(8 + 5);
    frame.put_u16(ApiKey::Fetch as u16);
    frame.put_u16(0);
    frame.put_u32(9);
    frame.put_slice(&[0xff; 5]);
    stream.write_all(&frame).await.unwrap();
    let (id, body) = response::<()>(&mut stream).await;
    assert_eq!(id, 9);
    assert_eq!(body.unwrap_err().error, ErrorCode::InvalidRequest);
}

async fn produce_raw(
    stream: &mut TcpStream,
    id: u32,
    topic: &str,
    partition: u32,
    batch: Vec<u8>,
) -> ErrorCode {
    let request_body = ProduceRequest {
        acks: 1,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition { partition, batch }],
        }],
    };
    stream
        .write_all(&request(ApiKey::Produce as u16, 0, id, &request_body))
        .await
        .unwrap();
    let (got, body) = response::<ProduceResponse>(stream).await;
    assert_eq!(got, id);
    body.unwrap().topics[0].1[0].error
}

#[tokio::test]
async fn bad_produce_requests_get_per_partition_errors_and_lose_nothing() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin
        .create_topic("t", 1, vec![("max.message.bytes".into(), "1000".into())])
        .await
        .unwrap();
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    let good = batch::encode(&[Record::new("kept")]).unwrap();
    assert_eq!(
        produce_raw(&mut stream, 1, "t", 0, good.clone()).await,
        ErrorCode::None
    );

    assert_eq!(
        produce_raw(&mut stream, 2, "missing", 0, good.clone()).await,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        produce_raw(&mut stream, 3, "t", 5, good.clone()).await,
        ErrorCode::UnknownTopicOrPartition
    );
    let mut corrupt = good.clone();
    let last = corrupt.len() - 1;
    corrupt.truncate(last);
    assert_eq!(
        produce_raw(&mut stream, 4, "t", 0, corrupt).await,
        ErrorCode::CorruptMessage
    );
    assert_eq!(
        produce_raw(&mut stream, 5, "t", 0, vec![0; 7]).await,
        ErrorCode::CorruptMessage
    );
    let big = batch::encode(&[Record::new(vec![0; 2000])]).unwrap();
    assert_eq!(
        produce_raw(&mut stream, 6, "t", 0, big).await,
        ErrorCode::MessageTooLarge
    );

    // Only the good batch is stored.
    let mut consumer = Consumer::connect(
        &broker.addr,
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    consumer.assign([TopicPartition::new("t", 0)]);
    let records = consumer.poll(TIMEOUT).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record.value, b"kept");
}

#[tokio::test]
async fn a_fetch_with_a_negative_offset_is_out_of_range() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    // A long wait, which a fetch with an error does not wait out: waiting
    // would not make the error go away.
    let fetch = FetchRequest {
        max_wait_ms: 600_000,
        min_bytes: 1,
        max_bytes: 1024,
        partitions: vec![
            FetchPartition {
                topic: "t".into(),
                partition: 0,
                offset: -5,
                max_bytes: 1024,
            },
            FetchPartition {
                topic: "nope".into(),
                partition: 0,
                offset: 0,
                max_bytes: 1024,
            },
        ],
    };
    stream
        .write_all(&request(ApiKey::Fetch as u16, 0, 3, &fetch))
        .await
        .unwrap();
    let (_, body) = tokio::time::timeout(TIMEOUT, response::<FetchResponse>(&mut stream))
        .await
        .expect("answered at once, not after max_wait_ms");
    let partitions = body.unwrap().partitions;
    assert_eq!(partitions[0].error, ErrorCode::OffsetOutOfRange);
    assert_eq!(partitions[1].error, ErrorCode::UnknownTopicOrPartition);
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let broker = TestBroker::start_with(ServerConfig {
        idle_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    assert!(closed(&mut stream).await);
    still_serving(&broker.addr).await;
}

#[tokio::test]
async fn responses_come_back_in_request_order() {
    let broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    // A fetch that waits 300 ms, then a metadata request that is answered
    // at once: the metadata response must still come second.
    let fetch = FetchRequest {
        max_wait_ms: 300,
        min_bytes: 1,
        max_bytes: 1024,
        partitions: vec![FetchPartition {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            max_bytes: 1024,
        }],
    };
    let mut both = request(ApiKey::Fetch as u16, 0, 100, &fetch);
    both.extend_from_slice(&request(
        ApiKey::Metadata as u16,
        0,
        101,
        &MetadataRequest { topics: None },
    ));
    stream.write_all(&both).await.unwrap();
    let (first, _) = response::<FetchResponse>(&mut stream).await;
    let (second, _) = response::<ch04_network::protocol::MetadataResponse>(&mut stream).await;
    assert_eq!((first, second), (100, 101));
}

#[tokio::test]
async fn a_client_stuck_mid_frame_does_not_hold_up_a_shutdown() {
    let mut broker = TestBroker::start().await;
    let admin = Admin::connect(&broker.addr, TIMEOUT).await.unwrap();
    admin.create_topic("t", 1, vec![]).await.unwrap();
    let mut stream = TcpStream::connect(&broker.addr).await.unwrap();
    stream.write_all(&[0, 0, 1, 0, 0]).await.unwrap(); // 1 of 256 bytes
    broker.stop().await;
    let (store, report) = ch03_partitions::TopicStore::open(broker.dir.path()).unwrap();
    assert!(report.recovered.is_empty(), "{report:?}");
    assert_eq!(store.topics(), ["t"]);
    assert!(closed(&mut stream).await);
}
