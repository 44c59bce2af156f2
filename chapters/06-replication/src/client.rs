//! [`ClusterClient`]: a small client that finds each partition's leader.
//!
//! With replicas, a partition has one leader among several brokers, and
//! the leader moves. This client finds the leaders as chapter 4's
//! producer and consumer do (`Leaders`: Metadata asked of the brokers it
//! knows in turn, starting from the bootstrap addresses), sends each
//! produce (`acks=all`) and fetch to the partition's leader, and when the
//! answer says the leader moved (`NOT_LEADER_OR_FOLLOWER`), there is none
//! yet (`LEADER_NOT_AVAILABLE`), the ISR is too small
//! (`NOT_ENOUGH_REPLICAS`, `NOT_ENOUGH_REPLICAS_AFTER_APPEND`), or the
//! call timed out or lost its connection, it forgets what it knew, waits
//! `retry.backoff.ms`, asks for metadata again and retries, until
//! `delivery.timeout.ms` has passed.
//!
//! One client keeps one connection per broker, and a broker serves one
//! connection's requests in order (chapter 4's rule): a long-polled fetch
//! delays a produce sent behind it to the same broker. Produce with one
//! client and consume with another, as the chapter's demo does.
//!
//! It is deliberately small: one record batch per call, one call at a
//! time per caller, every answer waited for, which is what a test that
//! checks each acknowledgement wants. Chapter 4's `Producer` and
//! `Consumer` follow leaders too, with batching and many requests in
//! flight; what neither has: idempotence (a producer id and sequence
//! numbers, so a retried batch that was in fact appended is not appended
//! twice; here it can be, and [`Produced::attempts`] says when that may
//! have happened), and the leader epoch in every fetch (KIP-320), so a
//! consumer notices a log truncated under it.

use std::collections::BTreeMap;
use std::time::Duration;

use ch02_segments::{Record, batch};
use ch03_partitions::TopicPartition;
use ch04_network::client::check;
use ch04_network::protocol::{
    ApiKey, FetchPartition, FetchRequest, FetchResponse, ProducePartition, ProduceRequest,
    ProduceResponse, ProduceTopic,
};
use ch04_network::{ClientConfig, ClientError, Leaders};
use tokio::time::Instant;
use tracing::debug;

use crate::protocol::{
    Acks, BrokerId, CreateReplicatedTopicRequest, CreateReplicatedTopicResponse, ReplicationApi,
};

/// How the client waits and retries, by Kafka's names.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `request.timeout.ms`: how long one call waits for its answer. An
    /// `acks=all` produce waits on the leader for its followers, so this
    /// should be longer than the broker's own `request.timeout.ms`, or the
    /// client gives up on writes that then succeed.
    pub request_timeout: Duration,
    /// `retry.backoff.ms`: the wait before a retry (Kafka: 100 ms).
    pub retry_backoff: Duration,
    /// `delivery.timeout.ms`: how long a call keeps retrying before it
    /// reports the last error (Kafka: 2 minutes).
    pub delivery_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
        }
    }
}

/// An acknowledged produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    /// The offset of the batch's first record.
    pub base_offset: u64,
    /// How many times the batch was sent. More than one means an earlier
    /// attempt may have been appended too (its answer was lost): without
    /// idempotence the log may hold the batch twice.
    pub attempts: u32,
}

/// What a fetch read.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// The committed records from the offset asked for, with their offsets.
    pub records: Vec<(u64, Record)>,
    /// The partition's high watermark: every record below it is committed.
    pub high_watermark: u64,
}

/// A client of a replicated cluster that sends each request to the
/// partition's leader and follows the leader when it moves.
pub struct ClusterClient {
    config: ClusterConfig,
    /// Chapter 4's lookup: where each leader is, a connection to each.
    leaders: Leaders,
}

impl ClusterClient {
    /// A client that first asks the brokers at `bootstrap` (`host:port`)
    /// where everything is. Nothing is connected until a call needs it.
    pub fn new(bootstrap: Vec<String>, config: ClusterConfig) -> ClusterClient {
        let leaders = Leaders::new(
            bootstrap,
            ClientConfig {
                request_timeout: config.request_timeout,
                ..ClientConfig::default()
            },
        );
        ClusterClient { config, leaders }
    }

    /// Asks for metadata again, of a broker that has not failed lately if
    /// there is one.
    pub async fn refresh_metadata(&self) -> Result<(), ClientError> {
        self.leaders.refresh(None).await
    }

    /// The live brokers and their addresses, as the last Metadata answer
    /// listed them.
    pub fn brokers(&self) -> BTreeMap<BrokerId, String> {
        self.leaders.brokers()
    }

    /// The leader of `tp` and its address, as chapter 4's
    /// [`Leaders::leader`] finds it.
    pub async fn leader(&self, tp: &TopicPartition) -> Result<(BrokerId, String), ClientError> {
        self.leaders.leader(tp).await
    }

    // ANCHOR: retry
    /// Runs `attempt` until it succeeds, fails with an error that retrying
    /// cannot fix, or `delivery.timeout.ms` has passed; returns its result
    /// and how many attempts it took. After a retriable error the client
    /// forgets every leader it knew (the next attempt asks for metadata
    /// again: the leader may have moved) and waits `retry.backoff.ms`.
    async fn with_retries<T, F: Future<Output = Result<T, ClientError>>>(
        &self,
        mut attempt: impl FnMut() -> F,
    ) -> Result<(T, u32), ClientError> {
        let deadline = Instant::now() + self.config.delivery_timeout;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match attempt().await {
                Ok(value) => return Ok((value, attempts)),
                Err(e)
                    if e.is_retriable()
                        && Instant::now() + self.config.retry_backoff < deadline =>
                {
                    debug!(attempts, error = %e, "retrying");
                    self.leaders.forget();
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    // ANCHOR_END: retry

    /// Creates a topic whose partitions each have `replication_factor`
    /// replicas, through any broker (which passes it to the controller).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
    ) -> Result<(), ClientError> {
        let request = CreateReplicatedTopicRequest {
            name: name.to_string(),
            partitions,
            replication_factor,
        };
        let api = ReplicationApi::CreateReplicatedTopic as u16;
        let request = &request;
        let (created, _) = self
            .with_retries(|| async move {
                let addr = self.leaders.any_broker().await?;
                let response: CreateReplicatedTopicResponse =
                    self.leaders.call(&addr, api, request).await?;
                check(response.error, || {
                    format!("topic {name:?}: {}", response.message)
                })
            })
            .await?;
        Ok(created)
    }

    /// Sends `records` to `tp`'s leader as one batch with `acks=all`, and
    /// waits for it to be committed: in every in-sync replica, at least
    /// `min.insync.replicas` of them. Follows the leader when it moves.
    pub async fn produce(
        &self,
        tp: &TopicPartition,
        records: &[Record],
    ) -> Result<Produced, ClientError> {
        self.produce_with(tp, records, Acks::All).await
    }

    /// [`ClusterClient::produce`] with `acks`: `Acks::Leader` is answered
    /// once the leader has appended the batch. (`Acks::None` is refused:
    /// this client waits for an answer to every call.)
    pub async fn produce_with(
        &self,
        tp: &TopicPartition,
        records: &[Record],
        acks: Acks,
    ) -> Result<Produced, ClientError> {
        let acks = match acks {
            Acks::All => -1,
            Acks::Leader => 1,
            Acks::None => {
                return Err(ClientError::Protocol(
                    "acks=0 has no answer to wait for".to_string(),
                ));
            }
        };
        let batch = batch::encode(records).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let request = ProduceRequest {
            acks,
            topics: vec![ProduceTopic {
                name: tp.topic.clone(),
                partitions: vec![ProducePartition {
                    partition: tp.partition,
                    batch,
                }],
            }],
        };
        let request = &request;
        let (base_offset, attempts) = self
            .with_retries(|| async move {
                let (_, addr) = self.leader(tp).await?;
                let response: ProduceResponse =
                    self.leaders.call(&addr, ApiKey::Produce, request).await?;
                let answer = response
                    .topics
                    .iter()
                    .flat_map(|(_, partitions)| partitions)
                    .find(|p| p.partition == tp.partition)
                    .ok_or_else(|| ClientError::Protocol(format!("no answer for {tp}")))?;
                check(answer.error, || format!("produce to {tp} on {addr}"))?;
                Ok(answer.base_offset)
            })
            .await?;
        Ok(Produced {
            base_offset,
            attempts,
        })
    }

    /// Reads `tp`'s committed records from `offset` on, from its leader,
    /// waiting up to `max_wait` (which must be shorter than
    /// `request.timeout.ms`) for some to be there: long polling. Follows
    /// the leader when it moves.
    pub async fn fetch(
        &self,
        tp: &TopicPartition,
        offset: u64,
        max_wait: Duration,
    ) -> Result<Fetched, ClientError> {
        const MAX_BYTES: u32 = 1024 * 1024;
        let request = FetchRequest {
            max_wait_ms: max_wait.as_millis().try_into().unwrap_or(u32::MAX),
            min_bytes: 1,
            max_bytes: MAX_BYTES,
            partitions: vec![FetchPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: offset.try_into().unwrap_or(i64::MAX),
                max_bytes: MAX_BYTES,
            }],
        };
        let request = &request;
        let (fetched, _) = self
            .with_retries(|| async move {
                let (_, addr) = self.leader(tp).await?;
                let response: FetchResponse =
                    self.leaders.call(&addr, ApiKey::Fetch, request).await?;
                let answer = response
                    .partitions
                    .into_iter()
                    .next()
                    .ok_or_else(|| ClientError::Protocol(format!("no answer for {tp}")))?;
                check(answer.error, || format!("fetch from {tp} on {addr}"))?;
                let mut records = Vec::new();
                for stored in &answer.batches {
                    let (_, batch) = batch::decode(&stored.0)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    // A batch may start before the offset asked for.
                    records.extend(batch.into_iter().filter(|(o, _)| *o >= offset));
                }
                Ok(Fetched {
                    records,
                    high_watermark: answer.high_watermark,
                })
            })
            .await?;
        Ok(fetched)
    }
}
