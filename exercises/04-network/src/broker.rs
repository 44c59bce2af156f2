//! [`Broker`]: what each request does to the topic store. The server
//! (`server.rs`) moves bytes; this module decides what they mean, runs
//! retention on its own timer, and closes the store at the end. [`bind`]
//! puts a broker behind a server.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use ch02_segments::LogError;
use ch03_partitions::{StoreError, TopicConfig, TopicStore};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::ErrorCode;
use crate::protocol::{
    self, API_VERSION, ApiKey, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeConfigsResponse, EARLIEST, FetchPartitionResponse, FetchRequest, FetchResponse, LATEST,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceInPlace,
    ProducePartitionResponse, ProduceResponse, RequestHeader, StoredBytes, TopicMetadata,
    TopicResults,
};
use crate::server::{Handled, Server, ServerConfig, Service, every, long_poll};

/// This broker's id in metadata responses (one broker until chapter 8).
pub const BROKER_ID: u32 = 0;

/// How the broker behaves. The defaults follow Kafka's.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// How often to delete segments past their topic's retention
    /// (`log.retention.check.interval.ms`, 5 minutes).
    pub retention_check_interval: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            retention_check_interval: Duration::from_secs(300),
        }
    }
}

/// One broker: the topic store, and a way to wake fetches that wait for data.
pub struct Broker {
    /// Reads share the lock; appends and topic changes take it alone.
    /// (A real broker locks each partition, not the whole store.)
    store: RwLock<TopicStore>,
    /// Woken after every append, so long-polling fetches look again.
    appended: Notify,
    /// Raised once a shutdown has begun: fetches stop waiting, and the
    /// retention timer stops.
    stopping: watch::Sender<bool>,
    /// Where clients reach this broker, for metadata responses.
    advertised: (String, u16),
    /// Topics only the broker itself writes (chapter 5's
    /// `__consumer_offsets`): clients may read them, not produce to them
    /// or delete them.
    internal: BTreeSet<String>,
    config: BrokerConfig,
}

/// Binds `addr` (port 0 picks a free port) and returns a server of a
/// [`Broker`] over `store`, advertising the address it is bound to, ready to
/// run.
pub async fn bind(
    addr: SocketAddr,
    store: TopicStore,
    server: ServerConfig,
    config: BrokerConfig,
) -> std::io::Result<Server<Broker>> {
    Server::bind_with(addr, server, |local| {
        Broker::new(store, local.ip().to_string(), local.port(), config)
    })
    .await
}

impl Service for Broker {
    type Error = StoreError;

    async fn handle(&self, header: RequestHeader, body: BytesMut) -> Handled {
        Broker::handle(self, header, body).await.into()
    }

    /// Retention, every `retention_check_interval`, until a shutdown begins.
    async fn background(self: Arc<Self>) {
        let period = self.config.retention_check_interval;
        every(period, self.stopping.subscribe(), || async {
            // Retention deletes files: it runs on a blocking thread, and a
            // pass that has begun is finished before a shutdown goes on.
            let broker = self.clone();
            match tokio::task::spawn_blocking(move || broker.apply_retention()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(deleted)) => info!(deleted, "retention deleted old segments"),
                // A disk error here is the store's to report on the next
                // append; the broker keeps serving.
                Ok(Err(e)) => warn!(error = %e, "retention check failed"),
                Err(e) => warn!(error = %e, "retention check panicked"),
            }
        })
        .await;
    }

    fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    fn shutdown(self: Arc<Self>) -> Result<(), StoreError> {
        match Arc::try_unwrap(self) {
            Ok(broker) => broker.close(),
            // Someone still holds the broker: sync instead of closing.
            Err(broker) => broker.sync(),
        }
    }
}

/// Whether a fetch's answer should go now, rather than wait for more: it
/// holds at least `min_bytes` of batches (`fetch.min.bytes`), or a
/// partition has an error, which waiting would not fix.
pub fn fetch_ready(response: &FetchResponse, min_bytes: u32) -> bool {
    let bytes: usize = response
        .partitions
        .iter()
        .flat_map(|p| &p.batches)
        .map(|b| b.0.len())
        .sum();
    bytes >= min_bytes as usize
        || response
            .partitions
            .iter()
            .any(|p| p.error != ErrorCode::None)
}

/// Maps a store error to the code a client sees.
pub fn error_code(error: &StoreError) -> ErrorCode {
    match error {
        StoreError::UnknownTopic(_) | StoreError::UnknownPartition { .. } => {
            ErrorCode::UnknownTopicOrPartition
        }
        StoreError::InvalidName(_) | StoreError::Collision { .. } => {
            ErrorCode::InvalidTopicException
        }
        StoreError::TopicExists(_) => ErrorCode::TopicAlreadyExists,
        StoreError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
        StoreError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        StoreError::Log { source, .. } => match source {
            LogError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
            LogError::InvalidBatch(_) => ErrorCode::CorruptMessage,
            LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            _ => ErrorCode::KafkaStorageError,
        },
        StoreError::Metadata { .. } | StoreError::Io { .. } | StoreError::Locked { .. } => {
            ErrorCode::KafkaStorageError
        }
    }
}

impl Broker {
    /// A broker over `store`, advertising `host:port` to clients.
    pub fn new(store: TopicStore, host: String, port: u16, config: BrokerConfig) -> Broker {
        Broker {
            store: RwLock::new(store),
            appended: Notify::new(),
            stopping: watch::Sender::new(false),
            advertised: (host, port),
            internal: BTreeSet::new(),
            config,
        }
    }

    /// Makes `topic` internal: produce and DeleteTopics requests naming it
    /// get `INVALID_TOPIC_EXCEPTION`, as in Kafka.
    pub fn protect(&mut self, topic: &str) {
        self.internal.insert(topic.to_string());
    }

    /// Closes the store cleanly.
    pub fn close(self) -> Result<(), StoreError> {
        // Poisoned: see `read`.
        self.store.into_inner().unwrap().close()
    }

    /// Deletes every partition's segments past its topic's retention;
    /// returns how many were deleted.
    pub fn apply_retention(&self) -> Result<usize, StoreError> {
        self.write().apply_retention()
    }

    /// Syncs every partition (for a shutdown that cannot close the store).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.write().sync()
    }

    /// The store, shared with other readers (for a service built on this
    /// broker, such as chapter 5's group coordinator).
    ///
    /// A lock that a panic poisoned panics here too (the project's rule for
    /// every lock, in ARCHITECTURE.md): a handler that panicked while it
    /// held the store may have left a log half-changed (an index ahead of
    /// its file, say), and serving from it could hand out wrong data. The
    /// `kfs` broker goes further and ends the process at the first panic.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, TopicStore> {
        self.store.read().unwrap()
    }

    /// The store, alone.
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, TopicStore> {
        self.store.write().unwrap()
    }

    /// Serves one request and returns the response frame, or `None` when
    /// the request wants no response (a produce with `acks` 0).
    pub async fn handle(&self, header: RequestHeader, mut body: BytesMut) -> Option<BytesMut> {
        todo!("exercise `handle`: Look the API key up (`ApiKey::from_u16`); an unknown key, or a version other than API_VERSION, gets `self.error(header, ErrorCode::UnsupportedVersion, ...)`. Otherwise decode the body with `decode::<T>` for the API's request type and call the matching method (a produce is decoded in place with `ProduceInPlace::decode` and returns `None` for acks 0; `fetch` is async), wrapping each answer with `self.ok(header, &response)`.")
    }

    fn ok<T: Serialize>(&self, header: RequestHeader, body: &T) -> BytesMut {
        protocol::ok_response(header.correlation_id, body)
    }

    fn error(&self, header: RequestHeader, error: ErrorCode, message: String) -> BytesMut {
        protocol::error_response(header.correlation_id, error, message)
    }

    /// Appends each partition's batch; `None` for `acks` 0, which Kafka
    /// answers with silence.
    fn produce(&self, request: ProduceInPlace, body: &mut [u8]) -> Option<ProduceResponse> {
        let mut topics = Vec::with_capacity(request.topics.len());
        {
            let mut store = self.write();
            for (name, batches) in request.topics {
                let mut partitions = Vec::with_capacity(batches.len());
                for (partition, range) in batches {
                    // The batch is appended from the request's own bytes.
                    let (error, base_offset) = if self.internal.contains(&name) {
                        (ErrorCode::InvalidTopicException, 0)
                    } else {
                        match store.append_batch(&name, partition, &mut body[range]) {
                            Ok(info) => (ErrorCode::None, info.base_offset),
                            Err(e) => (error_code(&e), 0),
                        }
                    };
                    partitions.push(ProducePartitionResponse {
                        partition,
                        error,
                        base_offset,
                    });
                }
                topics.push((name, partitions));
            }
        }
        self.appended.notify_waiters();
        (request.acks != 0).then_some(ProduceResponse { topics })
    }

    /// Reads what is there; if it is less than `min_bytes`, waits for
    /// appends (or `max_wait_ms`) and reads again: long polling. A shutdown
    /// ends the wait: the fetch is answered with what there is.
    async fn fetch(&self, request: FetchRequest) -> FetchResponse {
        let deadline = Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms));
        let mut stopping = self.stopping.subscribe();
        let look = || self.read_fetch(&request);
        let ready = |response: &FetchResponse| fetch_ready(response, request.min_bytes);
        long_poll(&self.appended, &mut stopping, deadline, look, ready).await
    }

    /// One pass over the partitions of a fetch, without waiting.
    fn read_fetch(&self, request: &FetchRequest) -> FetchResponse {
        let store = self.read();
        let mut left = request.max_bytes as u64;
        let mut partitions = Vec::with_capacity(request.partitions.len());
        for p in &request.partitions {
            let mut response = FetchPartitionResponse {
                topic: p.topic.clone(),
                partition: p.partition,
                error: ErrorCode::None,
                high_watermark: 0,
                log_start_offset: 0,
                batches: Vec::new(),
            };
            match store.log(&p.topic, p.partition) {
                Err(e) => response.error = error_code(&e),
                Ok(log) => {
                    response.high_watermark = log.log_end_offset();
                    response.log_start_offset = log.log_start_offset();
                    if p.offset < 0 {
                        response.error = ErrorCode::OffsetOutOfRange;
                    } else if left > 0 {
                        // At least one batch even past the limits (KIP-74),
                        // so that a consumer always makes progress.
                        let max = u64::from(p.max_bytes).min(left).max(1);
                        match store.read(&p.topic, p.partition, p.offset as u64, max) {
                            Ok(batches) => {
                                for batch in batches {
                                    left = left.saturating_sub(batch.bytes.len() as u64);
                                    response.batches.push(StoredBytes(batch.bytes));
                                }
                            }
                            Err(e) => response.error = error_code(&e),
                        }
                    }
                }
            }
            partitions.push(response);
        }
        FetchResponse { partitions }
    }

    fn list_offsets(&self, request: ListOffsetsRequest) -> ListOffsetsResponse {
        let store = self.read();
        let partitions = request
            .partitions
            .into_iter()
            .map(|(topic, partition, timestamp)| {
                let found = store
                    .log(&topic, partition)
                    .and_then(|log| match timestamp {
                        EARLIEST => Ok(Some(log.log_start_offset())),
                        LATEST => Ok(Some(log.log_end_offset())),
                        ts => log
                            .offset_for_timestamp(ts)
                            .map_err(|source| StoreError::Log {
                                topic: topic.clone(),
                                partition,
                                source,
                            }),
                    });
                match found {
                    Ok(offset) => (topic, partition, ErrorCode::None, offset),
                    Err(e) => (topic, partition, error_code(&e), None),
                }
            })
            .collect();
        ListOffsetsResponse { partitions }
    }

    fn metadata(&self, request: MetadataRequest) -> MetadataResponse {
        let store = self.read();
        let names = request.topics.unwrap_or_else(|| store.topics());
        let topics = names
            .into_iter()
            .map(|name| match store.partition_count(&name) {
                Ok(count) => TopicMetadata {
                    name,
                    error: ErrorCode::None,
                    partitions: (0..count).map(|p| (p, BROKER_ID)).collect(),
                },
                Err(e) => TopicMetadata {
                    name,
                    error: error_code(&e),
                    partitions: Vec::new(),
                },
            })
            .collect();
        let (host, port) = self.advertised.clone();
        MetadataResponse {
            brokers: vec![(BROKER_ID, host, port)],
            topics,
        }
    }

    fn create_topics(&self, request: CreateTopicsRequest) -> TopicResults {
        let mut store = self.write();
        let topics = request
            .topics
            .into_iter()
            .map(|topic| {
                let mut config = TopicConfig::default();
                let result = topic
                    .configs
                    .iter()
                    .try_for_each(|(key, value)| config.set(key, value))
                    .map_err(StoreError::from)
                    .and_then(|()| store.create_topic(&topic.name, topic.partitions, config));
                match result {
                    Ok(created) => (
                        topic.name,
                        ErrorCode::None,
                        created.warning.unwrap_or_default(),
                    ),
                    Err(e) => (topic.name, error_code(&e), e.to_string()),
                }
            })
            .collect();
        TopicResults { topics }
    }

    fn delete_topics(&self, request: DeleteTopicsRequest) -> TopicResults {
        let mut store = self.write();
        let topics = request
            .topics
            .into_iter()
            .map(|name| {
                if self.internal.contains(&name) {
                    let message = format!("{name} is an internal topic");
                    return (name, ErrorCode::InvalidTopicException, message);
                }
                match store.delete_topic(&name) {
                    Ok(()) => (name, ErrorCode::None, String::new()),
                    Err(e) => (name, error_code(&e), e.to_string()),
                }
            })
            .collect();
        TopicResults { topics }
    }

    fn describe_configs(&self, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
        match self.read().describe(&request.topic) {
            Ok(d) => DescribeConfigsResponse {
                error: ErrorCode::None,
                configs: d
                    .config
                    .entries()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            },
            Err(e) => DescribeConfigsResponse {
                error: error_code(&e),
                configs: Vec::new(),
            },
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    protocol::decode_body(body)
}
