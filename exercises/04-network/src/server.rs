//! The server: a tokio accept loop and one task per connection. It moves
//! frames between sockets and a [`Service`], and keeps a server a server:
//! memory is bounded, idle connections are closed, bad bytes close one
//! connection and nothing else, and a shutdown drains what is in flight.
//!
//! The server knows nothing of topics or stores: what a request means, what
//! work runs in the background and what a clean close is are all the
//! service's. Chapter 4's broker is a service (see `broker::bind`), and each
//! later chapter wraps the one before it; the server does not change.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::protocol::{self, DEFAULT_MAX_FRAME, RequestHeader};

/// What a server serves: a request in, a response frame out, and a
/// lifecycle the server drives. Chapter 4's broker is one; a later chapter
/// wraps it (handles what it owns, forwards the rest, and forwards each
/// lifecycle call too), and the server does not change.
///
/// No method has a default. With one, a wrapper that forgot to forward
/// `background` would still compile, and the broker inside would quietly
/// never apply retention again.
pub trait Service: Send + Sync + 'static {
    /// What a failed close reports.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Serves one request: whatever it changes has changed when the
    /// returned future completes, and the [`Handled`] says what goes back.
    fn handle(&self, header: RequestHeader, body: BytesMut)
    -> impl Future<Output = Handled> + Send;

    /// The service's own periodic work (retention, a clock). The server
    /// runs it on a task of its own from the start, never in the accept
    /// loop; it must end soon after [`Service::begin_shutdown`]. It owns
    /// an `Arc` of the service, not a borrow, because it outlives the call
    /// on a task of its own and may hand clones to blocking threads.
    fn background(self: Arc<Self>) -> impl Future<Output = ()> + Send + 'static;

    /// A shutdown has begun: answer every request held waiting (a
    /// long-polled fetch, a group join) now, refuse to hold new ones, and
    /// end the background work, so that draining is quick.
    fn begin_shutdown(&self);

    /// Called once every connection and the background work have ended:
    /// close cleanly (the broker closes its store).
    fn shutdown(self: Arc<Self>) -> Result<(), Self::Error>;
}

/// What a service gives back for a request.
pub enum Handled {
    /// The response frame.
    Now(BytesMut),
    /// No response: the client asked for none (a produce with `acks` 0).
    Nothing,
    /// The request is served, but its response waits for something outside
    /// this connection (chapter 6: followers copying an `acks=all` batch).
    /// The connection serves its next request meanwhile, and writes this
    /// response, when it comes, before the next one's (`None`: no response
    /// after all).
    Later(Pin<Box<dyn Future<Output = Option<BytesMut>> + Send>>),
}

impl From<Option<BytesMut>> for Handled {
    fn from(response: Option<BytesMut>) -> Handled {
        response.map_or(Handled::Nothing, Handled::Now)
    }
}

/// How the server behaves. The defaults follow Kafka's where it has one.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest request frame (`socket.request.max.bytes`, 100 MiB).
    pub max_frame: u32,
    /// Request bytes one connection may have in flight before the server
    /// stops reading from it.
    pub max_connection_bytes: usize,
    /// Request bytes all connections together may have in flight
    /// (`queued.max.request.bytes`).
    pub max_total_bytes: usize,
    /// Requests one connection may have read ahead, waiting their turn
    /// (pipelined).
    pub max_in_flight: usize,
    /// Close a connection that sends nothing for this long
    /// (`connections.max.idle.ms`, 10 minutes).
    pub idle_timeout: Duration,
    /// How long a shutdown waits for requests in flight and the
    /// service's background work.
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame: DEFAULT_MAX_FRAME,
            max_connection_bytes: 128 * 1024 * 1024,
            max_total_bytes: 512 * 1024 * 1024,
            max_in_flight: 64,
            idle_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// A bound, not yet running, server of a [`Service`].
pub struct Server<S: Service> {
    listener: TcpListener,
    service: Arc<S>,
    config: ServerConfig,
}

impl<S: Service> Server<S> {
    /// Binds `addr`, then builds the service with the address it is bound
    /// to (which a broker advertises to clients). Each service has its own
    /// shortcut over this (`broker::bind` in this chapter).
    pub async fn bind_with(
        addr: SocketAddr,
        config: ServerConfig,
        service: impl FnOnce(SocketAddr) -> S,
    ) -> std::io::Result<Server<S>> {
        let listener = TcpListener::bind(addr).await?;
        let service = Arc::new(service(listener.local_addr()?));
        Ok(Server {
            listener,
            service,
            config,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes; then stops accepting, tells the
    /// service a shutdown has begun, lets every connection finish the
    /// requests it has read and the background work end (together up to
    /// `drain_timeout`), and has the service close cleanly.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), S::Error> {
        let Server {
            listener,
            service,
            config,
        } = self;
        let total = Arc::new(Semaphore::new(config.max_total_bytes));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        // The service's periodic work gets a task of its own: a slow
        // retention pass must not stop this loop from accepting.
        let mut background = tokio::spawn(service.clone().background());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        debug!(%peer, "connection accepted");
                        let connection = Connection {
                            service: service.clone(),
                            config: config.clone(),
                            total: total.clone(),
                            stop: stop_rx.clone(),
                            peer,
                        };
                        connections.spawn(connection.serve(stream));
                    }
                    // Out of file descriptors, say: keep serving the
                    // connections there are, and try again shortly.
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        info!(
            connections = connections.len(),
            "shutting down: draining requests in flight"
        );
        drop(listener);
        // Held requests are answered now, not when they time out.
        service.begin_shutdown();
        // Fails only when no connection is left to tell.
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(config.drain_timeout, async {
            while connections.join_next().await.is_some() {}
            // A panic in it was reported when it happened.
            let _ = (&mut background).await;
        })
        .await;
        if drained.is_err() {
            warn!("requests still in flight after the drain timeout; abandoning them");
            connections.abort_all();
            while connections.join_next().await.is_some() {}
            background.abort();
            // Cancelled on purpose.
            let _ = background.await;
        }
        // Every task that held the service has ended.
        service.shutdown()
    }
}

/// One request read off a connection, waiting its turn.
struct Queued {
    header: RequestHeader,
    body: BytesMut,
    /// Released once the response is written: the bytes it accounts for
    /// are then no longer held.
    permits: Permits,
}

/// A request's share of its connection's byte budget and the server's.
type Permits = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// A served request: what the service gave back, waiting to be written.
struct Served {
    handled: Handled,
    /// The request's permits, held until its response is written.
    _permits: Permits,
}

struct Connection<S> {
    service: Arc<S>,
    config: ServerConfig,
    total: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    peer: SocketAddr,
}

impl<S: Service> Connection<S> {
    /// Reads requests ahead while a responder task serves them one at a
    /// time, in the order they came, and a writer task writes their
    /// responses in that same order. Clients may pipeline (send more before
    /// the first answer), and reading ahead hides the network's latency,
    /// but two requests of one connection are never served at once: as in
    /// Kafka, what a client sent in order (two batches of one partition,
    /// say) happens in order. Different connections are served in
    /// parallel.
    async fn serve(mut self, stream: TcpStream) {
        // Only latency is at stake: the connection works without it.
        let _ = stream.set_nodelay(true);
        let (mut reader, writer) = stream.into_split();
        let (queue, requests) = mpsc::channel::<Queued>(self.config.max_in_flight);
        let (replies, served) = mpsc::channel::<Served>(self.config.max_in_flight);
        let responder = tokio::spawn(Self::respond(self.service.clone(), requests, replies));
        let writer = tokio::spawn(write_responses(served, writer, self.peer));
        self.read_requests(&mut reader, &queue).await;
        // Requests already read are still answered: the responder drains
        // the queue, the writer writes what it served, then the socket
        // closes. (Their results are only whether they ended by a panic in
        // the service; the connection is over either way, and the panic
        // has already been reported.)
        drop(queue);
        let _ = responder.await;
        let _ = writer.await;
        debug!(peer = %self.peer, "connection closed");
    }


    /// The responder: serves a connection's requests one at a time, in the
    /// order they were read, and hands what each gives back to the writer,
    /// until the reader is done and the queue is empty, or the writer has
    /// stopped.
    async fn respond(
        service: Arc<S>,
        mut requests: mpsc::Receiver<Queued>,
        replies: mpsc::Sender<Served>,
    ) {
        todo!("exercise `respond`: Take each request off the queue (`requests.recv()`, `None` once the reader is done), await `service.handle(header, body)`, and hand what it gives to the writer (`replies.send`, with the request's permits); stop when the writer is gone (the send fails).")
    }

    /// The reader: queues each whole request it reads, once the bytes it
    /// holds fit in the connection's budget and the server's, until the
    /// peer hangs up, sends bad bytes, stays idle too long, or a shutdown
    /// begins.
    async fn read_requests(&mut self, reader: &mut OwnedReadHalf, queue: &mpsc::Sender<Queued>) {
        todo!("exercise `read_requests`: Make a read buffer (`BytesMut`) and this connection's byte budget (a `Semaphore` of `max_connection_bytes` permits). Loop: first queue every whole frame already in the buffer (`protocol::take_frame`, then `protocol::parse_request`; a bad frame or header ends the connection), each after taking permits for its bytes from the connection's budget and the server's, `self.total` (`acquire`); then read more (`reader.read_buf`), under `self.config.idle_timeout`, and return on end of stream, a read error, the idle timeout, or `self.stop.changed()`.")
    }
}

/// The writer: writes each served request's response, in the order the
/// responder served them, until the responder is done or a write fails. A
/// response still on its way ([`Handled::Later`]) holds up the responses
/// behind it, never the requests behind it: those are served meanwhile.
async fn write_responses(
    mut served: mpsc::Receiver<Served>,
    mut writer: OwnedWriteHalf,
    peer: SocketAddr,
) {
    todo!("exercise `write_responses`: Take each served request off `served` (`None` once the responder is done); its response is the frame (`Handled::Now`), nothing (`Handled::Nothing`), or what the future gives (`Handled::Later`, awaited here). Write it, if there is one, with `writer.write_all`; stop at the first write that fails. The request's permits go when it does, once its response is written.")
}

/// Runs `work` every `period`, the first time one period from now, until
/// `stopping` turns true: what a service's [`Service::background`] is made
/// of. A pass that has begun is finished before it returns, and a pass
/// that overran is not followed by catch-up passes back to back: the next
/// one waits a whole period.
pub async fn every<F: Future<Output = ()>>(
    period: Duration,
    mut stopping: watch::Receiver<bool>,
    mut work: impl FnMut() -> F,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopping.wait_for(|stopping| *stopping) => return,
            _ = ticks.tick() => {}
        }
        work().await;
    }
}

/// Long polling: calls `look`, and returns its answer as soon as `ready`
/// says it will do, a shutdown has begun (`stopping`), or `deadline` has
/// passed; until then waits for `wake` (an append, say) and looks again.
/// What a service's held requests are made of: chapter 4's fetch, and
/// chapter 6's consumer and follower fetches.
pub async fn long_poll<R>(
    wake: &Notify,
    stopping: &mut watch::Receiver<bool>,
    deadline: Instant,
    mut look: impl FnMut() -> R,
    ready: impl Fn(&R) -> bool,
) -> R {
    loop {
        // Register for the next wake-up *before* looking: a wake-up between
        // the look and the wait below then still ends the wait. (Registered
        // after the look, it could sleep through that append until its
        // deadline.)
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        todo!("exercise `long_poll`: Look (`look()`) and return the answer if it is `ready`, if a shutdown has begun (`*stopping.borrow()`), or if the deadline has passed; otherwise wait for whichever comes first: the wake-up you registered for (`&mut notified`), the deadline, or the shutdown (`stopping.wait_for(|s| *s)`). The loop then looks again.")
    }
}

/// Takes `len` permits (at most all of them, so that one frame larger than
/// the limit still gets through, alone).
async fn acquire(semaphore: &Arc<Semaphore>, len: usize, capacity: usize) -> OwnedSemaphorePermit {
    let n = len.clamp(1, capacity) as u32;
    semaphore
        .clone()
        .acquire_many_owned(n)
        .await
        .expect("the semaphore is never closed")
}
