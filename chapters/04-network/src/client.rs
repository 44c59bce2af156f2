//! [`Client`]: one connection to a broker, shared by any number of tasks.
//! Each call gets a fresh correlation id; a reader task hands each response
//! to the call that waits for it, so calls from many tasks are pipelined on
//! one socket.

use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::oneshot;

use crate::error::{ClientError, ErrorCode};
use crate::protocol::{
    self, API_VERSION, ApiKey, DEFAULT_MAX_FRAME, ErrorResponse, FramePieces, MetadataRequest,
    MetadataResponse, RequestHeader, TopicMetadata,
};

type Waiters = Arc<Mutex<Option<HashMap<u32, oneshot::Sender<Bytes>>>>>;

/// A connection to one broker.
pub struct Client {
    addr: String,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    /// Calls waiting for their response, by correlation id; `None` once the
    /// connection is gone.
    waiters: Waiters,
    next_id: AtomicU32,
    timeout: Duration,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Connects to `addr` (`host:port`). Calls time out after `timeout`
    /// (Kafka's `request.timeout.ms`, 30 s by default).
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        let io = |source| ClientError::Io {
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(timeout.as_millis() as u64))?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let (mut read_half, write_half) = stream.into_split();
        let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader_waiters = waiters.clone();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            'read: loop {
                while let Ok(Some(frame)) = protocol::take_frame(&mut buf, DEFAULT_MAX_FRAME) {
                    let Ok((id, body)) = protocol::parse_response(frame.freeze()) else {
                        break 'read;
                    };
                    let waiter = reader_waiters
                        .lock()
                        .unwrap()
                        .as_mut()
                        .and_then(|w| w.remove(&id));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(body);
                    }
                }
                match read_half.read_buf(&mut buf).await {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            // Wake every waiting call with "closed": dropping the senders.
            reader_waiters.lock().unwrap().take();
        });
        Ok(Client {
            addr: addr.to_string(),
            writer: tokio::sync::Mutex::new(write_half),
            waiters,
            next_id: AtomicU32::new(1),
            timeout,
            reader,
        })
    }

    /// The broker's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

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
        let (id, frame) = self.frame(api, request, large)?;
        let (tx, rx) = oneshot::channel();
        match self.waiters.lock().unwrap().as_mut() {
            Some(waiters) => waiters.insert(id, tx),
            None => return Err(ClientError::Closed),
        };
        self.write(&frame).await?;
        let body = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => return Err(self.closed()),
            Err(_) => {
                if let Some(waiters) = self.waiters.lock().unwrap().as_mut() {
                    waiters.remove(&id);
                }
                return Err(ClientError::Timeout(self.timeout.as_millis() as u64));
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
        let (_, frame) = self.frame(api, request, large)?;
        self.write(&frame).await
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

    /// Writes a whole frame with vectored writes: one `writev` for all its
    /// pieces, unless the socket takes less.
    async fn write(&self, frame: &FramePieces<'_>) -> Result<(), ClientError> {
        let io = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        let mut slices = frame.slices();
        let mut rest = &mut slices[..];
        let mut writer = self.writer.lock().await;
        while !rest.is_empty() {
            let n = writer.write_vectored(rest).await.map_err(io)?;
            if n == 0 {
                return Err(io(std::io::ErrorKind::WriteZero.into()));
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }

    fn closed(&self) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the broker closed the connection",
            ),
        }
    }
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
