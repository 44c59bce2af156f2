//! [`Client`]: a connection to one broker, shared by any number of tasks,
//! and made again when it breaks. Each call gets a fresh correlation id; a
//! reader task hands each response to the call that waits for it, so calls
//! from many tasks are pipelined on one socket.
//!
//! When the connection breaks (the broker closed it, a read or write
//! failed, or the broker sent bytes that are not a response frame), every
//! call waiting on it fails at once with a retriable [`ClientError::Io`],
//! and the next call connects again, after a backoff that grows with each
//! failure in a row (Kafka's `reconnect.backoff.ms` and
//! `reconnect.backoff.max.ms`). The client never retries a call itself:
//! whether a call may be made twice is the caller's decision (the producer
//! retries, the consumer fetches again, the admin client reports).

use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{ClientError, ErrorCode};
use crate::protocol::{
    self, API_VERSION, ApiKey, DEFAULT_MAX_FRAME, ErrorResponse, FramePieces, MetadataRequest,
    MetadataResponse, RequestHeader, TopicMetadata,
};

/// How a client connects and waits, by Kafka's names.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `request.timeout.ms`: how long a call waits for its answer, and a
    /// connection attempt for the broker to accept. (A real Kafka client
    /// has a separate `socket.connection.setup.timeout.ms`.)
    pub request_timeout: Duration,
    /// `reconnect.backoff.ms`: the wait before connecting again once the
    /// connection broke or an attempt failed.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: the wait doubles with each failure in a
    /// row, up to this (then ±20% jitter, so that many clients of a broker
    /// that restarted do not all come back in the same millisecond).
    pub reconnect_backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(30),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
        }
    }
}

// ANCHOR: backoff
/// The wait before the next connection attempt after `failures` failures
/// in a row (at least 1): `base` doubled per failure after the first, at
/// most `max`, times a jitter factor in 0.8..1.2 (`random` is in 0..1).
/// Kafka's `ExponentialBackoff` with its reconnect settings.
pub fn reconnect_backoff(failures: u32, base: Duration, max: Duration, random: f64) -> Duration {
    // exercise-hole: backoff | Double `base` once per failure after the first (`failures - 1` doublings, saturating), cap it at `max`, then scale it by a jitter factor from 0.8 to 1.2 picked by `random` (clamped to 0..1).
    // exercise-hint: Exponential backoff: 1 failure waits `base`, 2 wait `2 * base`, 3 wait `4 * base`, and so on up to `max`. Jitter spreads clients out: without it, every client of a restarted broker would come back in the same millisecond.
    // exercise-hint: `let doublings = failures.saturating_sub(1).min(31);` (a shift past 31 overflows), `base.saturating_mul(1 << doublings).min(max)`, then `.mul_f64(0.8 + 0.4 * random.clamp(0.0, 1.0))`.
    let doublings = failures.saturating_sub(1).min(31);
    let backoff = base.saturating_mul(1 << doublings).min(max);
    backoff.mul_f64(0.8 + 0.4 * random.clamp(0.0, 1.0))
    // exercise-end
}
// ANCHOR_END: backoff

/// A connection to one broker, made again when it breaks.
pub struct Client {
    addr: String,
    config: ClientConfig,
    next_id: AtomicU32,
    /// The connection, and when the next attempt may be made. An async
    /// lock, held while connecting: calls that need a connection meanwhile
    /// wait for this attempt instead of making their own.
    link: tokio::sync::Mutex<Link>,
    /// Connection attempts that failed, ever. A call reads it before it
    /// waits for `link`, so it can tell that the attempt it waited for
    /// failed, and fail with it, instead of waiting out a backoff of its
    /// own in turn.
    failed_attempts: AtomicU64,
}

struct Link {
    /// The connection, if one was made; it may have broken since.
    current: Option<Arc<Connection>>,
    /// Broken connections and failed attempts in a row since the last
    /// connection was made.
    failures: u32,
    /// No attempt before this.
    not_before: Instant,
    /// Why the last attempt failed, for the calls that waited for it.
    last_failure: Lost,
}

impl Link {
    /// Counts a failure, and puts the next attempt off by the backoff.
    fn failed(&mut self, config: &ClientConfig) {
        self.failures += 1;
        let wait = reconnect_backoff(
            self.failures,
            config.reconnect_backoff,
            config.reconnect_backoff_max,
            fastrand::f64(),
        );
        self.not_before = Instant::now() + wait;
    }
}

/// Why a connection is gone: an I/O error's kind and message. (Kept
/// rather than a `ClientError`, which is not `Clone`: every call that
/// was waiting gets its own error made from it.)
#[derive(Debug, Clone)]
struct Lost {
    kind: std::io::ErrorKind,
    reason: String,
}

impl Lost {
    fn new(kind: std::io::ErrorKind, reason: impl Into<String>) -> Lost {
        Lost {
            kind,
            reason: reason.into(),
        }
    }

    fn error(&self, addr: &str) -> ClientError {
        ClientError::Io {
            addr: addr.to_string(),
            source: std::io::Error::new(self.kind, self.reason.clone()),
        }
    }
}

/// The calls waiting for their response, by correlation id, while the
/// connection is open; why it is gone once it is not.
enum Waiters {
    Open(HashMap<u32, oneshot::Sender<Bytes>>),
    Lost(Lost),
}

/// One TCP connection: its write half, and the reader task that owns its
/// read half.
struct Connection {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    waiters: Arc<Mutex<Waiters>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    async fn open(addr: &str, timeout: Duration) -> Result<Connection, ClientError> {
        let io = |source| ClientError::Io {
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(timeout.as_millis() as u64))?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let (read_half, write_half) = stream.into_split();
        let waiters = Arc::new(Mutex::new(Waiters::Open(HashMap::new())));
        let reader = tokio::spawn(read_responses(read_half, waiters.clone()));
        Ok(Connection {
            writer: tokio::sync::Mutex::new(write_half),
            waiters,
            reader,
        })
    }

    fn is_open(&self) -> bool {
        matches!(*self.waiters.lock().unwrap(), Waiters::Open(_))
    }

    /// Registers a call waiting for response `id`.
    fn register(&self, id: u32) -> Result<oneshot::Receiver<Bytes>, Lost> {
        let (tx, rx) = oneshot::channel();
        match &mut *self.waiters.lock().unwrap() {
            Waiters::Open(waiters) => {
                waiters.insert(id, tx);
                Ok(rx)
            }
            Waiters::Lost(lost) => Err(lost.clone()),
        }
    }

    /// Why the connection is gone (or, if it is not, a generic reason).
    fn lost(&self) -> Lost {
        match &*self.waiters.lock().unwrap() {
            Waiters::Lost(lost) => lost.clone(),
            Waiters::Open(_) => Lost::new(std::io::ErrorKind::ConnectionAborted, "connection lost"),
        }
    }

    /// Ends the connection: every waiting call fails with `why`, and the
    /// next call connects again.
    fn close(&self, why: Lost) {
        lose(&self.waiters, why);
        self.reader.abort();
    }

    /// Writes a whole frame with vectored writes: one `writev` for all its
    /// pieces, unless the socket takes less. A write that fails, or is
    /// abandoned halfway (its call was cancelled), leaves part of a frame
    /// on the socket, after which nothing the broker reads makes sense:
    /// the connection is closed.
    async fn write(&self, frame: &FramePieces<'_>) -> Result<(), Lost> {
        let mut slices = frame.slices();
        let mut rest = &mut slices[..];
        let mut writer = self.writer.lock().await;
        let mut unfinished = Unfinished(Some(self));
        while !rest.is_empty() {
            let n = match writer.write_vectored(rest).await {
                Ok(0) => Err(Lost::new(std::io::ErrorKind::WriteZero, "write returned 0")),
                Ok(n) => Ok(n),
                Err(e) => Err(Lost::new(e.kind(), e.to_string())),
            };
            match n {
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(lost) => {
                    unfinished.0 = None;
                    self.close(lost.clone());
                    return Err(lost);
                }
            }
        }
        unfinished.0 = None;
        Ok(())
    }
}

/// Closes the connection if dropped while still holding it: a write was
/// abandoned halfway.
struct Unfinished<'a>(Option<&'a Connection>);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.0 {
            connection.close(Lost::new(
                std::io::ErrorKind::Interrupted,
                "a request was abandoned halfway through its write",
            ));
        }
    }
}

/// Marks the connection gone, and wakes every waiting call: dropping their
/// senders tells them to look up why.
fn lose(waiters: &Mutex<Waiters>, why: Lost) {
    let mut waiters = waiters.lock().unwrap();
    if let Waiters::Open(_) = &*waiters {
        *waiters = Waiters::Lost(why);
    }
}

// ANCHOR: read_responses
/// The reader task: hands each response to its call, until the connection
/// ends. Bytes that are not a response frame (a length over the limit, a
/// frame too short for a correlation id) end it too, with that as the
/// reason: past one bad frame, where the next one starts is anybody's
/// guess. (A response whose id no call waits for is dropped: it answers a
/// call that timed out.)
async fn read_responses(mut read_half: OwnedReadHalf, waiters: Arc<Mutex<Waiters>>) {
    // exercise-hole: read_responses | Keep a read buffer (`BytesMut`). Loop: take the next whole frame off it (`protocol::take_frame` with `DEFAULT_MAX_FRAME`) and split it with `protocol::parse_response`; hand its body to the waiter registered under its correlation id (removed from `Waiters::Open`), or drop it if none waits; when it holds no whole frame, `read_buf` more into it. End of stream, a read error or a bad frame ends the loop with why (a `Lost`; for bad bytes, one of kind `InvalidData` that says `bad frame from the broker: {e}`), and then `lose(&waiters, why)` fails every waiting call.
    // exercise-hint: `let why = loop { match protocol::take_frame(&mut buf, DEFAULT_MAX_FRAME) { ... } };` with three arms: `Ok(Some(frame))` answers a call, `Ok(None)` reads more (`Ok(0)` from `read_buf` is the broker hanging up), `Err(e)` is a bad frame. Every way out of the loop is a `break` with the reason.
    // exercise-hint: Answering: `Ok((id, body)) = protocol::parse_response(frame.freeze())`, then under the lock `match &mut *waiters.lock().unwrap() { Waiters::Open(w) => w.remove(&id), Waiters::Lost(_) => None }`, and outside it `waiter.send(body)` (an error there means the call timed out: ignore it).
    let bad_frame = |e| {
        Lost::new(
            std::io::ErrorKind::InvalidData,
            format!("bad frame from the broker: {e}"),
        )
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let why = loop {
        match protocol::take_frame(&mut buf, DEFAULT_MAX_FRAME) {
            Ok(Some(frame)) => match protocol::parse_response(frame.freeze()) {
                Ok((id, body)) => {
                    let waiter = match &mut *waiters.lock().unwrap() {
                        Waiters::Open(waiters) => waiters.remove(&id),
                        Waiters::Lost(_) => None,
                    };
                    if let Some(waiter) = waiter {
                        // The call gave up (timed out) meanwhile.
                        let _ = waiter.send(body);
                    }
                }
                Err(e) => break bad_frame(e),
            },
            Ok(None) => match read_half.read_buf(&mut buf).await {
                Ok(0) => {
                    break Lost::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the broker closed the connection",
                    );
                }
                Ok(_) => {}
                Err(e) => break Lost::new(e.kind(), e.to_string()),
            },
            Err(e) => break bad_frame(e),
        }
    };
    tracing::debug!(reason = %why.reason, "connection lost");
    lose(&waiters, why);
    // exercise-end
}
// ANCHOR_END: read_responses

impl Client {
    /// Connects to `addr` (`host:port`), with calls that time out after
    /// `timeout` (Kafka's `request.timeout.ms`) and the default reconnect
    /// backoff.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        let config = ClientConfig {
            request_timeout: timeout,
            ..ClientConfig::default()
        };
        Client::connect_with(addr, config).await
    }

    /// Connects to `addr` (`host:port`). The first connection is made now,
    /// so an unreachable broker is an error at once; later ones are made
    /// when a call needs one.
    pub async fn connect_with(addr: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let client = Client {
            addr: addr.to_string(),
            next_id: AtomicU32::new(1),
            link: tokio::sync::Mutex::new(Link {
                current: None,
                failures: 0,
                not_before: Instant::now(),
                last_failure: Lost::new(std::io::ErrorKind::NotConnected, "not connected yet"),
            }),
            failed_attempts: AtomicU64::new(0),
            config,
        };
        client.connection().await?;
        Ok(client)
    }

    /// The broker's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    // ANCHOR: connection
    /// The open connection, made again if it broke: after the backoff, one
    /// attempt, shared by every call that needs it meanwhile.
    async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        let failed_before = self.failed_attempts.load(Ordering::Acquire);
        let mut link = self.link.lock().await;
        if let Some(connection) = &link.current {
            if connection.is_open() {
                return Ok(connection.clone());
            }
            // It broke: a failure like a failed attempt. (A real Kafka
            // client counts from the moment it broke, not from when a call
            // noticed.)
            link.current = None;
            link.failed(&self.config);
        }
        if self.failed_attempts.load(Ordering::Acquire) != failed_before {
            return Err(link.last_failure.error(&self.addr));
        }
        tokio::time::sleep_until(link.not_before).await;
        match Connection::open(&self.addr, self.config.request_timeout).await {
            Ok(connection) => {
                let connection = Arc::new(connection);
                link.current = Some(connection.clone());
                link.failures = 0;
                Ok(connection)
            }
            Err(e) => {
                link.failed(&self.config);
                link.last_failure = match &e {
                    ClientError::Io { source, .. } => Lost::new(source.kind(), source.to_string()),
                    other => Lost::new(std::io::ErrorKind::TimedOut, other.to_string()),
                };
                self.failed_attempts.fetch_add(1, Ordering::Release);
                Err(e)
            }
        }
    }
    // ANCHOR_END: connection

    /// Sends a request and waits for its response.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        api: impl Into<u16>,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        self.call_spliced(api, request, &[]).await
    }

    // ANCHOR: call
    /// [`Client::call`], with the byte strings of `request` that are in
    /// `large` (a produce request's batches) written from where they are,
    /// not copied into the frame first.
    pub async fn call_spliced<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        api: impl Into<u16>,
        request: &Req,
        large: &[&[u8]],
    ) -> Result<Resp, ClientError> {
        self.write_request(api, request, large)
            .await?
            .response()
            .await
    }

    /// Writes a request (`large` as in [`Client::call_spliced`]) and
    /// returns its answer, to wait for later. Requests one task writes one
    /// after another reach the broker in that order; requests that tasks
    /// write at the same time go in whichever order the tasks get there.
    /// (That is why the producer writes its requests from one task.)
    pub async fn write_request<Req: Serialize>(
        &self,
        api: impl Into<u16>,
        request: &Req,
        large: &[&[u8]],
    ) -> Result<Answer<'_>, ClientError> {
        let connection = self.connection().await?;
        let (id, frame) = self.frame(api, request, large)?;
        // Registered before the request is written: its response may be
        // read before `write` returns.
        let response = connection
            .register(id)
            .map_err(|lost| lost.error(&self.addr))?;
        // exercise-hole: call | Write the frame (`connection.write`; a failure is `lost.error(&self.addr)`), then return the `Answer` to wait for: this client, the connection, the id and the `response` receiver.
        // exercise-hint: `connection.write(&frame).await.map_err(|lost| lost.error(&self.addr))?;` then `Ok(Answer { client: self, connection, id, response })`.
        connection
            .write(&frame)
            .await
            .map_err(|lost| lost.error(&self.addr))?;
        Ok(Answer {
            client: self,
            connection,
            id,
            response,
        })
        // exercise-end
    }
    // ANCHOR_END: call

    /// One topic's metadata (its partitions and their leaders), or the
    /// broker's error for it.
    pub async fn topic_metadata(&self, topic: &str) -> Result<TopicMetadata, ClientError> {
        let request = MetadataRequest {
            topics: Some(vec![topic.to_string()]),
        };
        let response: MetadataResponse = self.call(ApiKey::Metadata, &request).await?;
        let found = response
            .topics
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("metadata without the topic".into()))?;
        check(found.error, || format!("topic {topic:?}"))?;
        Ok(found)
    }

    /// Sends a request that gets no response (a produce with `acks` 0);
    /// `large` as in [`Client::call_spliced`].
    pub async fn send<Req: Serialize>(
        &self,
        api: impl Into<u16>,
        request: &Req,
        large: &[&[u8]],
    ) -> Result<(), ClientError> {
        let connection = self.connection().await?;
        let (_, frame) = self.frame(api, request, large)?;
        connection
            .write(&frame)
            .await
            .map_err(|lost| lost.error(&self.addr))
    }

    fn frame<'a, Req: Serialize>(
        &self,
        api: impl Into<u16>,
        request: &Req,
        large: &[&'a [u8]],
    ) -> Result<(u32, FramePieces<'a>), ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader {
            api_key: api.into(),
            api_version: API_VERSION,
            correlation_id: id,
        };
        let frame = protocol::encode_request_in_pieces(header, request, large)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok((id, frame))
    }
}

/// The answer to a request [`Client::write_request`] wrote, not yet read.
pub struct Answer<'a> {
    /// The client that wrote it: its address and request timeout.
    client: &'a Client,
    /// The connection it was written on, which the answer comes back on.
    connection: Arc<Connection>,
    id: u32,
    response: oneshot::Receiver<Bytes>,
}

impl Answer<'_> {
    // ANCHOR: answer
    /// Waits for the response, at most `request.timeout.ms`, and decodes it.
    pub async fn response<Resp: DeserializeOwned>(self) -> Result<Resp, ClientError> {
        // exercise-hole: answer | Wait for `self.response` under the client's `config.request_timeout`: a body is the answer; a dropped sender means the connection is gone (`self.connection.lost()`, as `.error(&self.client.addr)`); a timeout is `ClientError::Timeout`, after closing the connection (`self.connection.close`, with a `Lost` of kind `TimedOut` that says why). Decode the body as `Result<Resp, ErrorResponse>` (`protocol::decode_body`): `Err` is the broker's `ClientError::Broker`.
        // exercise-hint: The reader task (`read_responses`) does the matching: this call only waits on its own one-shot receiver. `tokio::time::timeout(timeout, self.response).await` gives three cases: `Ok(Ok(body))`, `Ok(Err(_))` (the reader dropped the sender: the connection broke) and `Err(_)` (timed out). A timeout closes the connection: the broker answers a connection's requests in order, so no answer behind the missing one can come.
        // exercise-hint: After the wait: `match protocol::decode_body::<Result<Resp, ErrorResponse>>(&body) { Ok(Ok(r)) => Ok(r), Ok(Err(e)) => Err(ClientError::Broker { code: e.error, message: e.message }), Err(e) => Err(ClientError::Protocol(e)) }`.
        let timeout = self.client.config.request_timeout;
        let body = match tokio::time::timeout(timeout, self.response).await {
            Ok(Ok(body)) => body,
            // The reader dropped the sender: the connection is gone.
            Ok(Err(_)) => return Err(self.connection.lost().error(&self.client.addr)),
            // The broker answers in order: every answer behind this one
            // waits for it, so the connection is of no more use. (Kafka's
            // client, too, disconnects on a request timeout.) The calls
            // waiting on it fail now, with a retriable error.
            Err(_) => {
                let ms = timeout.as_millis() as u64;
                let why = format!("request {} had no answer in {ms} ms", self.id);
                self.connection
                    .close(Lost::new(std::io::ErrorKind::TimedOut, why));
                return Err(ClientError::Timeout(ms));
            }
        };
        match protocol::decode_body::<Result<Resp, ErrorResponse>>(&body) {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(ClientError::Broker {
                code: e.error,
                message: e.message,
            }),
            Err(e) => Err(ClientError::Protocol(e)),
        }
        // exercise-end
    }
    // ANCHOR_END: answer
}

/// Turns a per-topic or per-partition error code into a `Result`.
pub fn check(code: ErrorCode, what: impl FnOnce() -> String) -> Result<(), ClientError> {
    if code == ErrorCode::None {
        Ok(())
    } else {
        Err(ClientError::Broker {
            code,
            message: what(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_millis(1000);

    #[test]
    fn the_backoff_doubles_per_failure_up_to_the_max() {
        // With the jitter at its middle (factor 1.0).
        let waits: Vec<u128> = (1..=7)
            .map(|n| reconnect_backoff(n, BASE, MAX, 0.5).as_millis())
            .collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(reconnect_backoff(u32::MAX, BASE, MAX, 0.5), MAX);
    }

    #[test]
    fn the_jitter_is_twenty_percent_either_way() {
        assert_eq!(reconnect_backoff(1, BASE, MAX, 0.0).as_millis(), 40);
        assert_eq!(reconnect_backoff(1, BASE, MAX, 1.0).as_millis(), 60);
        assert_eq!(reconnect_backoff(6, BASE, MAX, 1.0).as_millis(), 1200);
        // Out-of-range randomness is clamped, never a panic.
        assert_eq!(reconnect_backoff(1, BASE, MAX, 7.0).as_millis(), 60);
    }
}
