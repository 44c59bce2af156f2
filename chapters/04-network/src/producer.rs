//! [`Producer`]: sends records in batches. `send` puts a record in its
//! partition's batch (chapter 3's accumulator) and returns at once with a
//! future of where the record went; a background task sends a batch when
//! it is full or `linger.ms` old, retries what failed for a reason that
//! may pass, and resolves the futures.
//!
//! A produce request carries at most one batch per partition, and each
//! partition's batches go in the order they were closed. With
//! `max.in.flight.requests.per.connection` at 1, that keeps every
//! partition in order, retries included: the next request waits until
//! this one (and its retries) has its answer. With more in flight, a
//! retried batch can land after a later one of its partition, and a batch
//! whose answer was lost is stored twice when it is retried: delivery is
//! at least once, as in Kafka without its idempotent producer.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ch02_segments::{Clock, NO_TIMESTAMP, Record, SystemClock, batch};
use ch03_partitions::{Accumulator, DefaultPartitioner, ReadyBatch, TopicPartition};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::ClientConfig;
use crate::error::{ClientError, ErrorCode};
use crate::leaders::{Leaders, bootstrap_servers, moves_leader};
use crate::protocol::{ApiKey, ProducePartition, ProduceRequest, ProduceResponse, ProduceTopic};

/// How a producer behaves, by Kafka's names.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `batch.size`: send a partition's batch once it holds this many bytes.
    pub batch_size: usize,
    /// `linger.ms`: send a batch this long after its first record, full or not.
    pub linger: Duration,
    /// `acks`: 0 (do not wait for the broker) or 1 (wait for its append).
    pub acks: i8,
    /// `retries`: how many times to resend a batch that failed for a
    /// retriable reason (a broken connection, a timeout, a retriable
    /// error code). Kafka's default is "forever" (`i32::MAX`), bounded by
    /// `delivery.timeout.ms`.
    pub retries: u32,
    /// `retry.backoff.ms`: the wait before a retry.
    pub retry_backoff: Duration,
    /// `delivery.timeout.ms`: no retry once a batch has been closed this
    /// long; its records fail with the last error. (Kafka counts from
    /// `send`, and also expires batches still waiting to be sent.)
    pub delivery_timeout: Duration,
    /// `request.timeout.ms`: how long to wait for the broker's answer.
    pub request_timeout: Duration,
    /// `reconnect.backoff.ms`: the first wait before connecting again.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: the longest wait before connecting
    /// again (the wait doubles per failure in a row).
    pub reconnect_backoff_max: Duration,
    /// Records that may be queued or in flight, not yet answered, before
    /// `send` waits for room (the role of Kafka's `buffer.memory`).
    pub max_queued: usize,
    /// `max.block.ms`: how long `send` waits for a topic to appear in
    /// metadata (a topic just created may not have reached every broker
    /// yet) before it fails with `UNKNOWN_TOPIC_OR_PARTITION`.
    pub max_block: Duration,
    /// `max.in.flight.requests.per.connection`: produce requests sent and
    /// not yet answered. More keeps the connection busy; as in Kafka
    /// without idempotence, more than 1 lets a retried batch land after
    /// a later one. (Without a retry, order holds: the broker serves one
    /// connection's requests one at a time, in order.)
    pub max_in_flight: usize,
}

impl ProducerConfig {
    /// The settings of the producer's connection.
    fn client(&self) -> ClientConfig {
        ClientConfig {
            request_timeout: self.request_timeout,
            reconnect_backoff: self.reconnect_backoff,
            reconnect_backoff_max: self.reconnect_backoff_max,
        }
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_size: 16 * 1024,
            linger: Duration::from_millis(5),
            acks: 1,
            retries: i32::MAX as u32,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            reconnect_backoff: ClientConfig::default().reconnect_backoff,
            reconnect_backoff_max: ClientConfig::default().reconnect_backoff_max,
            max_queued: 64 * 1024,
            max_block: Duration::from_secs(60),
            max_in_flight: 5,
        }
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// Its offset; `None` with `acks` 0, when the broker does not say.
    pub offset: Option<u64>,
}

/// Where a record's outcome goes: to the future `send` returned, or to the
/// callback given to `send_with_callback`.
enum Delivery {
    Future(oneshot::Sender<Result<RecordMetadata, ClientError>>),
    Callback(Box<dyn FnOnce(Result<RecordMetadata, ClientError>) + Send>),
}

impl Delivery {
    fn complete(self, result: Result<RecordMetadata, ClientError>) {
        match self {
            // The caller may have dropped the future: nobody to tell.
            Delivery::Future(done) => {
                let _ = done.send(result);
            }
            Delivery::Callback(callback) => callback(result),
        }
    }
}

/// The future of one sent record: resolves once the broker has it (or
/// with the error that stopped it).
pub struct DeliveryFuture(oneshot::Receiver<Result<RecordMetadata, ClientError>>);

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ClientError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

// ANCHOR: shared
/// What `send` (in the caller's task) and the sender task share, as in
/// Kafka's producer: the caller appends to the accumulator itself, so a
/// record costs a lock and a push, not a message to another task; the
/// sender task only takes the batches that are ready.
struct Shared {
    state: Mutex<State>,
    /// Wakes the sender task: a batch is ready, or a first record started
    /// the linger clock.
    wake: Notify,
    /// One permit per record that may be queued or in flight
    /// (`max_queued`); `send` waits for one, and they come back when the
    /// record's batch has its answer.
    room: Semaphore,
}

struct State {
    accumulator: Accumulator<DefaultPartitioner>,
    /// The deliveries of the records in each partition's open batch, in
    /// order, by topic and partition: the accumulator keeps records in
    /// order, so the first n deliveries belong to a batch of n records.
    /// (`BTreeMap`s keyed by topic name: for the few topics a producer
    /// writes to, comparing names beats hashing them, and a `&str` finds
    /// an entry without allocating.)
    waiting: BTreeMap<String, Vec<VecDeque<Delivery>>>,
    /// Closed batches, with their deliveries, for the sender task to send:
    /// per partition, in the order they were closed (Kafka's
    /// per-partition deques).
    ready: BTreeMap<TopicPartition, VecDeque<Pending>>,
    /// The number the next closed batch gets. A flush waits for the
    /// batches numbered below what this was when it began.
    next_seq: u64,
    /// When the oldest record still in an open batch arrived.
    oldest: Option<Instant>,
}
// ANCHOR_END: shared

impl State {
    /// Moves batches the accumulator handed over to `ready`, each with the
    /// deliveries of its records.
    fn take_ready(&mut self, batches: Vec<ReadyBatch>) {
        for batch in batches {
            let waiting = self
                .waiting
                .get_mut(&batch.topic)
                .and_then(|w| w.get_mut(batch.partition as usize))
                .expect("every record in a batch has its delivery");
            let deliveries: Vec<Delivery> = waiting.drain(..batch.records.len()).collect();
            let bytes = batch::encode(&batch.records).expect("a ready batch is not empty");
            let tp = TopicPartition::new(batch.topic, batch.partition);
            let pending = Pending {
                tp: tp.clone(),
                bytes,
                deliveries,
                seq: self.next_seq,
                closed: Instant::now(),
            };
            self.next_seq += 1;
            self.ready.entry(tp).or_default().push_back(pending);
        }
    }

    // ANCHOR: drain
    /// The batches of the next produce request: the oldest ready batch of
    /// each partition that has one. At most one batch per partition, as
    /// Kafka's `RecordAccumulator.drain` takes them: the broker answers
    /// per partition, so two batches of one partition in a request could
    /// not be told apart in its answer, and the next batch of a partition
    /// waits for the next request, behind the one before it.
    fn drain(&mut self) -> Vec<Pending> {
        // exercise-hole: drain | Take the front batch (the oldest) of each partition's queue in `self.ready`, and drop the queues left empty.
        // exercise-hint: One batch per partition, never two: the broker's answer gives one base offset per partition. `BTreeMap::retain` visits every queue and keeps only those that return `true`.
        // exercise-hint: `self.ready.retain(|_, queue| { batches.extend(queue.pop_front()); !queue.is_empty() });`
        let mut batches = Vec::new();
        self.ready.retain(|_, queue| {
            batches.extend(queue.pop_front());
            !queue.is_empty()
        });
        batches
        // exercise-end
    }
    // ANCHOR_END: drain

    /// Whether a batch numbered below `seq` is still waiting to be sent.
    fn waiting_before(&self, seq: u64) -> bool {
        self.ready
            .values()
            .any(|queue| queue.front().is_some_and(|b| b.seq < seq))
    }

    /// Closes every open batch, full or not.
    fn close_open_batches(&mut self) {
        self.oldest = None;
        let batches = self.accumulator.drain();
        self.take_ready(batches);
    }
}

/// An asynchronous, batching producer.
pub struct Producer {
    shared: Arc<Shared>,
    /// Where each partition's leader is: where its batches go.
    leaders: Arc<Leaders>,
    /// `max.block.ms` and `retry.backoff.ms`, for the wait for metadata.
    max_block: Duration,
    retry_backoff: Duration,
    /// Asks the sender task to flush; the answer comes when all is sent.
    flushes: mpsc::Sender<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Producer {
    /// Connects to the brokers at `bootstrap` (`host:port`, or a comma
    /// separated list of them: Kafka's `bootstrap.servers`), asking one of
    /// them for metadata now, so that no broker to reach is an error at
    /// once. Each partition's batches then go to its leader.
    pub async fn connect(bootstrap: &str, config: ProducerConfig) -> Result<Producer, ClientError> {
        let leaders = Arc::new(Leaders::new(bootstrap_servers(bootstrap), config.client()));
        leaders.refresh(None).await?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                accumulator: Accumulator::new(config.batch_size, DefaultPartitioner::new()),
                waiting: BTreeMap::new(),
                ready: BTreeMap::new(),
                next_seq: 0,
                oldest: None,
            }),
            wake: Notify::new(),
            room: Semaphore::new(config.max_queued.max(1)),
        });
        let (flushes, flush_requests) = mpsc::channel(16);
        let (max_block, retry_backoff) = (config.max_block, config.retry_backoff);
        let sender = Sender {
            shared: shared.clone(),
            leaders: leaders.clone(),
            config,
            in_flight: JoinSet::new(),
        };
        let task = tokio::spawn(sender.run(flush_requests));
        Ok(Producer {
            shared,
            leaders,
            max_block,
            retry_backoff,
            flushes,
            task,
        })
    }

    // ANCHOR: send
    /// Queues a record for `topic`. Returns once it is in a batch (waiting
    /// only if too many records are queued), with a future that resolves
    /// when the broker has stored it.
    pub async fn send(&self, topic: &str, record: Record) -> Result<DeliveryFuture, ClientError> {
        let (done, delivered) = oneshot::channel();
        self.enqueue(topic, record, Delivery::Future(done)).await?;
        Ok(DeliveryFuture(delivered))
    }

    /// [`Producer::send`] with a callback instead of a future, as Kafka's
    /// `send(record, callback)`: the callback runs on the producer's
    /// background task the moment the broker answers, with where the
    /// record went or why it failed. It must be quick: the next batch
    /// waits for it. `kfs perf` uses it to time each record.
    pub async fn send_with_callback(
        &self,
        topic: &str,
        record: Record,
        callback: impl FnOnce(Result<RecordMetadata, ClientError>) + Send + 'static,
    ) -> Result<(), ClientError> {
        self.enqueue(topic, record, Delivery::Callback(Box::new(callback)))
            .await
    }

    // ANCHOR_END: send

    // ANCHOR: enqueue
    /// Puts a record in its partition's batch, with where its outcome goes.
    async fn enqueue(
        &self,
        topic: &str,
        mut record: Record,
        delivery: Delivery,
    ) -> Result<(), ClientError> {
        // A record without a timestamp gets the time of `send`, as Kafka's
        // producer stamps it (`CreateTime`; a topic with `LogAppendTime`
        // replaces it with the broker's time).
        if record.timestamp == NO_TIMESTAMP {
            record.timestamp = SystemClock.now_ms();
        }
        let partitions = self.partition_count(topic).await?;
        // exercise-hole: enqueue | Take a permit of `self.shared.room` (and `forget` it: it comes back when the record is answered); then, under the state's lock: add the record to the accumulator (`state.accumulator.add` returns its partition and any batches it closed), push `delivery` on that partition's queue in `state.waiting` (grown to `partitions` queues), start the linger clock (`state.oldest`) if this is the only open record, and move closed batches to `ready` (`state.take_ready`). Wake the sender (`self.shared.wake.notify_one()`) if a batch closed or the clock started.
        // exercise-hint: `send` does the batching itself, in the caller's task: chapter 3's accumulator decides the partition and closes a batch once it is full. The sender task only needs waking when it has something new to do: a full batch to send, or a linger clock to start (it sleeps until `oldest + linger`).
        // exercise-hint: `let (partition, ready) = state.accumulator.add(topic, partitions, record);` then `waiting[partition as usize].push_back(delivery)`, `let first = state.oldest.is_none();` (set it to `Some(Instant::now())` if so), `let full = !ready.is_empty(); state.take_ready(ready);`, drop the lock, and `if full || first { notify_one() }`.
        // Back-pressure: a permit per record, returned once it is answered.
        self.shared
            .room
            .acquire()
            .await
            .map_err(|_| ClientError::Closed)?
            .forget();
        let mut state = self.shared.state.lock().unwrap();
        let (partition, ready) = state.accumulator.add(topic, partitions, record);
        let waiting = match state.waiting.get_mut(topic) {
            Some(waiting) => waiting,
            None => state.waiting.entry(topic.to_string()).or_default(),
        };
        if waiting.len() < partitions as usize {
            waiting.resize_with(partitions as usize, VecDeque::new);
        }
        waiting[partition as usize].push_back(delivery);
        let first = state.oldest.is_none();
        if first {
            state.oldest = Some(Instant::now());
        }
        let full = !ready.is_empty();
        state.take_ready(ready);
        drop(state);
        // Wake the sender for a full batch, or to start the linger clock.
        if full || first {
            self.shared.wake.notify_one();
        }
        Ok(())
        // exercise-end
    }
    // ANCHOR_END: enqueue

    /// The topic's partition count, from metadata, waiting up to
    /// `max.block.ms` for the topic to be there.
    async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        // This runs for every record: a lookup, and nothing else (not even
        // the clock) unless the topic is missing.
        if let Some(count) = self.leaders.known_partition_count(topic) {
            return Ok(count);
        }
        let mut deadline = None;
        loop {
            match self.leaders.partition_count(topic).await {
                Err(e) if e.is_retriable() => {
                    let deadline = *deadline.get_or_insert_with(|| Instant::now() + self.max_block);
                    if Instant::now() + self.retry_backoff >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(self.retry_backoff).await;
                }
                counted => return counted,
            }
        }
    }

    /// Sends every queued record now and waits until each has its answer.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (done, flushed) = oneshot::channel();
        self.flushes
            .send(done)
            .await
            .map_err(|_| ClientError::Closed)?;
        flushed.await.map_err(|_| ClientError::Closed)
    }

    /// Flushes, then stops the background task.
    pub async fn close(self) -> Result<(), ClientError> {
        self.flush().await?;
        drop(self.flushes);
        self.task.await.map_err(|_| ClientError::Closed)
    }
}

/// The background task: sends ready batches, and open ones once they have
/// lingered.
struct Sender {
    shared: Arc<Shared>,
    leaders: Arc<Leaders>,
    config: ProducerConfig,
    in_flight: JoinSet<()>,
}

impl Sender {
    // ANCHOR: sender
    async fn run(mut self, mut flushes: mpsc::Receiver<oneshot::Sender<()>>) {
        // exercise-hole: sender | Loop: send what is ready (`self.send_ready().await`), then wait for whichever comes first: a wake-up (`self.shared.wake.notified()`), the linger deadline of the oldest open record (`state.oldest` + `self.config.linger`; then close every open batch with `close_open_batches`), a flush request (`flushes.recv()`: `self.flush().await`, then answer it; `None` means the producer is closing: stop), or a request in flight finishing (`self.in_flight.join_next()`, which makes room for the next).
        // exercise-hint: One `tokio::select!` in a loop. The linger arm only exists while a record is open: `sleep_until(linger_until), if linger_until.is_some()`. The `join_next` arm likewise only while requests are in flight (`if !self.in_flight.is_empty()`), or it would return `None` at once, forever.
        // exercise-hint: Read `linger_until` under the lock before the `select!`: `state.oldest.map(|t| t + self.config.linger)`. The flush arm: `flush = flushes.recv() => { self.flush().await; match flush { Some(flushed) => { let _ = flushed.send(()); } None => break } }`.
        loop {
            self.send_ready().await;
            let linger_until = {
                let state = self.shared.state.lock().unwrap();
                state.oldest.map(|t| t + self.config.linger)
            };
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                // Batches that lingered long enough go, full or not. (All
                // open batches go together: simpler than a timer each.)
                _ = sleep_until(linger_until), if linger_until.is_some() => {
                    self.shared.state.lock().unwrap().close_open_batches();
                }
                flush = flushes.recv() => {
                    self.flush().await;
                    match flush {
                        // The caller of `flush` may have stopped waiting.
                        Some(flushed) => { let _ = flushed.send(()); }
                        None => break,
                    }
                }
                Some(_) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {}
            }
        }
        // exercise-end
    }

    /// Sends ready batches, one request after another, while fewer than
    /// `max_in_flight` requests wait for their answers.
    async fn send_ready(&mut self) {
        while self.in_flight.len() < self.config.max_in_flight.max(1) {
            let batches = self.shared.state.lock().unwrap().drain();
            if batches.is_empty() {
                return;
            }
            self.dispatch(batches).await;
        }
    }

    /// Closes the open batches, and returns once they and every batch
    /// closed before them have their answers. (Batches closed meanwhile
    /// may go too, but are not waited for: a flush ends even while other
    /// tasks keep sending.)
    async fn flush(&mut self) {
        let upto = {
            let mut state = self.shared.state.lock().unwrap();
            state.close_open_batches();
            state.next_seq
        };
        loop {
            if self.shared.state.lock().unwrap().waiting_before(upto) {
                self.send_ready().await;
            } else if self.in_flight.is_empty() {
                return;
            }
            self.in_flight.join_next().await;
        }
    }
    // ANCHOR_END: sender

    // ANCHOR: dispatch
    /// Sends one request's batches in a task of its own, so that more
    /// requests can be in flight while it waits, and returns once the
    /// request is written. Requests therefore leave in the order their
    /// batches were closed: were the next one sent before this one was
    /// written, either task could reach the socket first, and a partition's
    /// later batch could be stored before its earlier one.
    async fn dispatch(&mut self, batches: Vec<Pending>) {
        let records: usize = batches.iter().map(|b| b.deliveries.len()).sum();
        let leaders = self.leaders.clone();
        let config = self.config.clone();
        let shared = self.shared.clone();
        let (written, was_written) = oneshot::channel();
        self.in_flight.spawn(async move {
            produce(leaders, config, batches, written).await;
            // Answered: room for as many new records.
            shared.room.add_permits(records);
        });
        // A dropped sender means the same: the task wrote, or gave up.
        let _ = was_written.await;
    }
    // ANCHOR_END: dispatch
}

/// One batch on its way, with the deliveries of its records.
struct Pending {
    tp: TopicPartition,
    bytes: Vec<u8>,
    deliveries: Vec<Delivery>,
    /// Its place in the order batches were closed.
    seq: u64,
    /// When it was closed: `delivery.timeout.ms` counts from here.
    closed: Instant,
}

impl Pending {
    /// Tells each record where it went (its batch's base offset plus its
    /// place in the batch), or why it failed.
    fn resolve(self, result: Result<Option<u64>, ClientError>) {
        match result {
            Ok(base) => {
                for (i, delivery) in self.deliveries.into_iter().enumerate() {
                    delivery.complete(Ok(RecordMetadata {
                        topic: self.tp.topic.clone(),
                        partition: self.tp.partition,
                        offset: base.map(|b| b + i as u64),
                    }));
                }
            }
            Err(e) => {
                for delivery in self.deliveries {
                    delivery.complete(Err(e.duplicate()));
                }
            }
        }
    }

    /// Whether it may be sent again after a retriable failure.
    fn may_retry(&self, attempt: u32, config: &ProducerConfig) -> bool {
        attempt < config.retries && self.closed.elapsed() < config.delivery_timeout
    }
}

/// A produce request of `batches`, their bytes moved into it (not copied),
/// and where each one went (its topic's and its partition's index), to
/// take them back after.
fn request_of(acks: i8, batches: &mut [Pending]) -> (ProduceRequest, Vec<(usize, usize)>) {
    let mut topics: Vec<ProduceTopic> = Vec::new();
    let mut places = Vec::with_capacity(batches.len());
    for b in batches {
        let partition = ProducePartition {
            partition: b.tp.partition,
            batch: std::mem::take(&mut b.bytes),
        };
        let t = match topics.iter().position(|t| t.name == b.tp.topic) {
            Some(t) => t,
            None => {
                topics.push(ProduceTopic {
                    name: b.tp.topic.clone(),
                    partitions: Vec::new(),
                });
                topics.len() - 1
            }
        };
        places.push((t, topics[t].partitions.len()));
        topics[t].partitions.push(partition);
    }
    (ProduceRequest { acks, topics }, places)
}

// ANCHOR: produce
/// Sends one request's batches (one per partition) until each has an
/// answer: success, an error that will not pass, or no retries left. Each
/// attempt looks every batch's leader up and writes one request to each
/// leader. A batch to retry goes again whole, with the others of this
/// request that failed, and nothing else: so with `max_in_flight` 1,
/// nothing of its partition can overtake it. `written` hears once the
/// first attempt is written (or failed to be), so the sender can write
/// the next request.
async fn produce(
    leaders: Arc<Leaders>,
    config: ProducerConfig,
    mut batches: Vec<Pending>,
    written: oneshot::Sender<()>,
) {
    let mut attempt = 0;
    let mut written = Some(written);
    loop {
        let mut retry = Vec::new();
        let mut groups: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        for b in batches {
            match leaders.leader(&b.tp).await {
                Ok((_, addr)) => groups.entry(addr).or_default().push(b),
                Err(e) => settle(vec![b], Err(e), attempt, &config, &leaders, &mut retry),
            }
        }
        // One request per leader, all written before the sender may write
        // its next one. Clients, requests and batches are kept apart: an
        // answer borrows its client, a request must take its batches'
        // bytes back before every answer is read, and a batch (with its
        // callbacks) may not be borrowed across an `.await`.
        let mut clients = Vec::with_capacity(groups.len());
        let mut requests = Vec::with_capacity(groups.len());
        let mut pending = Vec::with_capacity(groups.len());
        for (addr, mut group) in groups {
            clients.push(leaders.client(&addr).await);
            let (request, places) = request_of(config.acks, &mut group);
            requests.push((addr, request, places));
            pending.push(group);
        }
        let mut answers = Vec::with_capacity(requests.len());
        for (client, (_, request, _)) in clients.iter().zip(&requests) {
            // The batches go out from where they are, not copied into a frame.
            let large: Vec<&[u8]> = request
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.batch.as_slice())
                .collect();
            let answer = match client {
                Ok(client) if config.acks == 0 => client
                    .send(ApiKey::Produce, request, &large)
                    .await
                    .map(|()| None),
                Ok(client) => client
                    .write_request(ApiKey::Produce, request, &large)
                    .await
                    .map(Some),
                Err(e) => Err(e.duplicate()),
            };
            answers.push(answer);
        }
        // Written, or it failed: the sender may write its next request.
        // (Only the first attempt holds it up: a retry goes when it goes.)
        if let Some(written) = written.take() {
            let _ = written.send(());
        }
        let sent = answers.into_iter().zip(requests).zip(pending);
        for ((answer, (addr, mut request, places)), mut group) in sent {
            let answer = match answer {
                Ok(Some(answer)) => answer.response::<ProduceResponse>().await.map(Some),
                // acks=0: no answer, and no offsets.
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            leaders.answered(&addr, &answer);
            // Each batch takes its bytes back, in case it is retried.
            for (b, &(t, p)) in group.iter_mut().zip(&places) {
                b.bytes = std::mem::take(&mut request.topics[t].partitions[p].batch);
            }
            settle(group, answer, attempt, &config, &leaders, &mut retry);
        }
        if retry.is_empty() {
            return;
        }
        batches = retry;
        attempt += 1;
        tokio::time::sleep(config.retry_backoff).await;
    }
}
// ANCHOR_END: produce

// ANCHOR: settle
/// Resolves each batch of one request by its partition's answer (`None`
/// with `acks` 0: stored, offset unknown), or keeps it in `retry` when it
/// failed for a reason that may pass and it may still be retried. An
/// answer that says the leader moved makes the next attempt ask for
/// metadata first.
fn settle(
    batches: Vec<Pending>,
    answer: Result<Option<ProduceResponse>, ClientError>,
    attempt: u32,
    config: &ProducerConfig,
    leaders: &Leaders,
    retry: &mut Vec<Pending>,
) {
    // exercise-hole: settle | On `Ok(None)` (acks 0) resolve every batch with `Ok(None)`. On `Ok(Some(response))`, per batch by its partition's answer: resolve it with its `base_offset` on success; on a retriable code, keep it in `retry` while `may_retry` (and if the code `moves_leader`, call `leaders.forget()` so the next attempt asks where the leader is now); otherwise resolve it with the error. On a retriable client error keep every batch that `may_retry`; on any other error, resolve them all with it.
    // exercise-hint: A request holds one batch per partition, so the answer's `(topic, partition)` entries map one to one onto batches: collect them in a map keyed by `TopicPartition` and look each batch up. `ErrorCode::is_retriable` and `ClientError::is_retriable` say what may pass; a broken connection or a timeout may or may not have stored the batch, and resending is the only way to be sure (at least once).
    // exercise-hint: Resolve failures with `b.resolve(Err(e.duplicate()))` (a `ClientError` is not `Clone`), successes with `b.resolve(Ok(Some(base)))`, and a code with `ClientError::Broker { code, message: b.tp.to_string() }`. An entry missing from the answer is a `ClientError::Protocol`.
    match answer {
        Ok(None) => {
            for b in batches {
                b.resolve(Ok(None));
            }
        }
        Ok(Some(response)) => {
            // One batch per partition: an answer per partition is an
            // answer per batch.
            let mut results: BTreeMap<TopicPartition, (ErrorCode, u64)> = BTreeMap::new();
            for (topic, partitions) in response.topics {
                for p in partitions {
                    let tp = TopicPartition::new(topic.clone(), p.partition);
                    results.insert(tp, (p.error, p.base_offset));
                }
            }
            for b in batches {
                match results.remove(&b.tp) {
                    Some((ErrorCode::None, base)) => b.resolve(Ok(Some(base))),
                    Some((code, _)) if code.is_retriable() && b.may_retry(attempt, config) => {
                        if moves_leader(code) {
                            leaders.forget();
                        }
                        retry.push(b)
                    }
                    Some((code, _)) => {
                        let message = b.tp.to_string();
                        b.resolve(Err(ClientError::Broker { code, message }));
                    }
                    None => {
                        let message = format!("no answer for {}", b.tp);
                        b.resolve(Err(ClientError::Protocol(message)));
                    }
                }
            }
        }
        // The connection broke (the client connects again on the next
        // call) or the call timed out: the broker may or may not have
        // stored the batches, and sending them again is the only way
        // to be sure it has. At least once: maybe twice.
        Err(e) if e.is_retriable() => {
            tracing::debug!(error = %e, attempt, "produce failed; retrying");
            if e.code().is_some_and(moves_leader) {
                leaders.forget();
            }
            for b in batches {
                if b.may_retry(attempt, config) {
                    retry.push(b);
                } else {
                    b.resolve(Err(e.duplicate()));
                }
            }
        }
        Err(e) => {
            for b in batches {
                b.resolve(Err(e.duplicate()));
            }
        }
    }
    // exercise-end
}
// ANCHOR_END: settle

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
