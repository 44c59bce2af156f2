//! # Chapter 4: a networked broker, producers and consumers
//!
//! A broker is a log store behind a request/response protocol. This chapter
//! puts chapter 3's topic store behind TCP: length-prefixed frames, a
//! request header with an API key and a correlation id, bodies in bincode,
//! and several requests in flight on one connection. Producers batch
//! records per partition to send few, large requests; consumers pull at
//! their own pace from positions they keep, and the broker holds a fetch
//! until there is data (long polling).
//!
//! ## Layout
//!
//! - [`protocol`]: sans-IO. Frames, the request header, Kafka's API key
//!   numbers, and every request and response body.
//! - [`error`]: [`ErrorCode`], Kafka's codes and names, and [`ClientError`].
//! - [`broker`]: [`Broker`], what each request does to the topic store,
//!   including fetch long polling; retention on its own timer; and
//!   [`broker::bind`], which puts a broker behind a server.
//! - [`server`]: [`Server`], the tokio shell around any [`Service`]: accept
//!   loop, tasks per connection (a reader, a responder, a writer),
//!   pipelined requests served one at a time in order and answered in that
//!   order ([`Handled`]: a response now, none, or later), bounded memory,
//!   idle timeouts, the service's background work on a task of its own,
//!   graceful shutdown.
//! - [`client`]: [`Client`], one connection shared by many tasks, matching
//!   responses to calls by correlation id, and made again after a backoff
//!   when it breaks ([`ClientConfig`]).
//! - [`leaders`]: [`Leaders`], where each partition's leader is (from
//!   Metadata, asked again when an answer says a leader moved) and a
//!   connection per broker. One broker leads everything here; from
//!   chapter 6 on leaders move, and the clients follow.
//! - [`producer`]: [`Producer`], batching by `batch.size` and `linger.ms`
//!   with chapter 3's accumulator, at most one batch per partition per
//!   request, a request per leader, `acks`, retries of whole batches,
//!   delivery futures.
//! - [`consumer`]: [`Consumer`], assign, seek, poll (a fetch per leader;
//!   it rides out a broken connection or a leader move),
//!   `auto.offset.reset`.
//! - [`admin`]: [`Admin`], create, delete, list and describe topics.
//!
//! ## How this differs from real Kafka
//!
//! - **Bodies are bincode, not Kafka's wire format.** Kafka's protocol has
//!   versioned schemas per API (and flexible versions with tagged fields,
//!   KIP-482), negotiated with ApiVersions (KIP-35). Chapter 11 speaks it.
//!   The API key numbers and error codes here are Kafka's.
//! - **One version of each API**, and no ApiVersions request.
//! - **No `acks=all`** yet: chapter 6 adds replicas and `min.insync.replicas`.
//! - **No idempotence** (KIP-98: producer ids and sequence numbers), so a
//!   retried batch can be stored twice, and with several requests in
//!   flight a retry can reorder batches of one partition. Kafka's
//!   idempotent producer (`enable.idempotence`, the default since 3.0)
//!   prevents both.
//! - **Metadata is asked again only when told**: an answer that says a
//!   leader moved, or a call without an answer. Kafka's clients also ask
//!   every `metadata.max.age.ms` (5 minutes), and send the leader epoch in
//!   each fetch (KIP-320) to notice a log truncated under them.
//! - **Requests are read ahead.** Both serve one request per connection at
//!   a time, in order; Kafka also stops reading the connection ("mutes"
//!   it) until the response is sent, where this server reads up to
//!   `max_in_flight` requests ahead into a bounded queue, and serves the
//!   next request while a response that comes later ([`Handled::Later`],
//!   chapter 6's `acks=all`) waits, as Redpanda does.
//! - **One lock for the whole store**: reads share it, appends and topic
//!   changes take it alone. Kafka locks per partition and runs a pool of
//!   request handler threads (`num.io.threads`) behind network threads
//!   (`num.network.threads`).
//! - **Linger is per producer, not per partition**: when the oldest open
//!   batch has lingered `linger.ms`, all open batches are sent.
//! - **No compression, quotas or TLS/SASL.**
//! - **Fetches do not use `sendfile`**: Kafka's zero-copy transfer from the
//!   page cache to the socket needs the stored bytes to be the wire bytes,
//!   which chapter 11 makes true.
//!
//! ## Example
//!
//! A broker on a free loopback port, a producer and a consumer:
//!
//! ```
//! use std::time::Duration;
//!
//! use ch02_segments::Record;
//! use ch03_partitions::{TopicPartition, TopicStore};
//! use ch04_network::{
//!     Admin, BrokerConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
//!     ServerConfig, broker,
//! };
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let (store, _) = TopicStore::open(dir.path())?;
//! let server = broker::bind(
//!     "127.0.0.1:0".parse()?,
//!     store,
//!     ServerConfig::default(),
//!     BrokerConfig::default(),
//! )
//! .await?;
//! let addr = server.local_addr().to_string();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let broker = tokio::spawn(server.run(async {
//!     let _ = stopped.await;
//! }));
//!
//! let admin = Admin::connect(&addr, Duration::from_secs(5)).await?;
//! admin.create_topic("greetings", 1, vec![]).await?;
//!
//! let producer = Producer::connect(&addr, ProducerConfig::default()).await?;
//! // `send` queues the record; its future resolves when the broker has it.
//! let stored = producer.send("greetings", Record::new("hello")).await?.await?;
//! assert_eq!(stored.offset, Some(0));
//!
//! let config = ConsumerConfig {
//!     auto_offset_reset: OffsetReset::Earliest,
//!     ..ConsumerConfig::default()
//! };
//! let mut consumer = Consumer::connect(&addr, config).await?;
//! consumer.assign([TopicPartition::new("greetings", 0)]);
//! let records = consumer.poll(Duration::from_secs(5)).await?;
//! assert_eq!(records[0].record.value, b"hello");
//!
//! // A graceful shutdown: drain, then close every log cleanly.
//! let _ = stop.send(());
//! broker.await??;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod broker;
pub mod client;
pub mod consumer;
pub mod error;
pub mod leaders;
pub mod producer;
pub mod protocol;
pub mod server;

pub use admin::{Admin, PartitionInfo, TopicInfo};
pub use broker::{Broker, BrokerConfig};
pub use client::{Client, ClientConfig};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, SeekTo};
pub use error::{ClientError, ErrorCode};
pub use leaders::Leaders;
pub use producer::{DeliveryFuture, Producer, ProducerConfig, RecordMetadata};
pub use server::{Handled, Server, ServerConfig, Service};
