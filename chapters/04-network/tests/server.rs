//! The server shell on its own, with services of these tests' making: the
//! lifecycle it drives (background work, a shutdown begun, a drain, a
//! close), periodic work kept out of the accept loop, one connection's
//! requests served in order, and back-pressure from the byte budgets.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::BytesMut;
use ch04_network::protocol::{self, ApiKey, MetadataRequest, MetadataResponse, RequestHeader};
use ch04_network::{Client, Handled, Server, ServerConfig, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Every service here answers any request with an empty metadata response.
fn answer(header: RequestHeader) -> Handled {
    Handled::Now(empty_response(header))
}

fn empty_response(header: RequestHeader) -> BytesMut {
    let empty = MetadataResponse {
        brokers: Vec::new(),
        topics: Vec::new(),
    };
    protocol::ok_response(header.correlation_id, &empty)
}

async fn ask(addr: &str) -> MetadataResponse {
    let client = Client::connect(addr, TIMEOUT).await.unwrap();
    client
        .call(ApiKey::Metadata, &MetadataRequest { topics: None })
        .await
        .unwrap()
}

/// Writes down each lifecycle call, in order.
struct Recorder {
    events: Arc<Mutex<Vec<&'static str>>>,
    stopping: watch::Sender<bool>,
}

impl Recorder {
    fn log(&self, event: &'static str) {
        self.events.lock().unwrap().push(event);
    }
}

impl Service for Recorder {
    type Error = Infallible;

    async fn handle(&self, header: RequestHeader, _body: BytesMut) -> Handled {
        answer(header)
    }

    async fn background(self: Arc<Self>) {
        self.log("background started");
        let _ = self.stopping.subscribe().wait_for(|s| *s).await;
        // Work that finishes after the signal (a retention pass under
        // way): the server must wait for it before the close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.log("background ended");
    }

    fn begin_shutdown(&self) {
        self.log("begin_shutdown");
        self.stopping.send_replace(true);
    }

    fn shutdown(self: Arc<Self>) -> Result<(), Infallible> {
        // Alone: no connection or background task still holds the service,
        // so a broker could close its store rather than only sync it.
        self.log(if Arc::strong_count(&self) == 1 {
            "shutdown, alone"
        } else {
            "shutdown, shared"
        });
        Ok(())
    }
}

#[tokio::test]
async fn the_server_runs_the_background_work_and_waits_for_it_before_the_close() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder {
        events: events.clone(),
        stopping: watch::Sender::new(false),
    };
    let server = Server::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        |_| recorder,
    )
    .await
    .unwrap();
    let addr = server.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let deadline = Instant::now() + TIMEOUT;
    while events.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the background work never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ask(&addr).await;
    let _ = stop.send(());
    tokio::time::timeout(TIMEOUT, running)
        .await
        .expect("the server stopped in time")
        .unwrap()
        .unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [
            "background started",
            "begin_shutdown",
            "background ended",
            "shutdown, alone"
        ]
    );
}

/// A service whose background work blocks its thread until the test
/// releases it: a stand-in for a slow retention pass on a busy disk.
struct Stuck {
    started: Mutex<Option<oneshot::Sender<()>>>,
    release: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Service for Stuck {
    type Error = Infallible;

    async fn handle(&self, header: RequestHeader, _body: BytesMut) -> Handled {
        answer(header)
    }

    async fn background(self: Arc<Self>) {
        let release = self.release.lock().unwrap().take().expect("started once");
        let started = self.started.lock().unwrap().take().expect("started once");
        let _ = started.send(());
        let _ = release.recv();
    }

    fn begin_shutdown(&self) {}

    fn shutdown(self: Arc<Self>) -> Result<(), Infallible> {
        Ok(())
    }
}

// Two worker threads: the stuck background work holds one, and the accept
// loop must go on with the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_background_work_does_not_hold_up_the_accept_loop() {
    let (started_tx, started) = oneshot::channel();
    let (release, release_rx) = mpsc::channel();
    let stuck = Stuck {
        started: Mutex::new(Some(started_tx)),
        release: Mutex::new(Some(release_rx)),
    };
    let server = Server::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        |_| stuck,
    )
    .await
    .unwrap();
    let addr = server.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    started.await.unwrap();

    // While the background work is stuck, a new connection is accepted
    // and answered.
    tokio::time::timeout(TIMEOUT, ask(&addr))
        .await
        .expect("a connection was served while the background work was busy");

    release.send(()).unwrap();
    let _ = stop.send(());
    tokio::time::timeout(TIMEOUT, running)
        .await
        .expect("the server stopped in time")
        .unwrap()
        .unwrap();
}

/// Writes down when each request's handling starts and ends; the first
/// request handled takes a while.
struct InOrder {
    log: Mutex<Vec<String>>,
    /// Two requests meet here (from two connections) before either ends,
    /// when `meet` is set.
    meet: Option<tokio::sync::Barrier>,
}

impl Service for InOrder {
    type Error = Infallible;

    async fn handle(&self, header: RequestHeader, _body: BytesMut) -> Handled {
        let first = {
            let mut log = self.log.lock().unwrap();
            log.push(format!("start {}", header.correlation_id));
            log.len() == 1
        };
        match &self.meet {
            Some(barrier) => {
                tokio::time::timeout(TIMEOUT, barrier.wait())
                    .await
                    .expect("the other connection's request was served meanwhile");
            }
            None if first => tokio::time::sleep(Duration::from_millis(100)).await,
            None => {}
        }
        let id = header.correlation_id;
        self.log.lock().unwrap().push(format!("end {id}"));
        answer(header)
    }

    async fn background(self: Arc<Self>) {}

    fn begin_shutdown(&self) {}

    fn shutdown(self: Arc<Self>) -> Result<(), Infallible> {
        Ok(())
    }
}

async fn serve_in_order(meet: Option<tokio::sync::Barrier>) -> (String, Arc<InOrder>) {
    let service = Arc::new(InOrder {
        log: Mutex::new(Vec::new()),
        meet,
    });
    let shared = service.clone();
    let server = Server::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        move |_| ArcService(shared),
    )
    .await
    .unwrap();
    let addr = server.local_addr().to_string();
    tokio::spawn(server.run(std::future::pending()));
    (addr, service)
}

/// Serves through an `Arc`, so the test keeps a handle on the log.
struct ArcService(Arc<InOrder>);

impl Service for ArcService {
    type Error = Infallible;

    fn handle(
        &self,
        header: RequestHeader,
        body: BytesMut,
    ) -> impl Future<Output = Handled> + Send {
        self.0.handle(header, body)
    }

    async fn background(self: Arc<Self>) {}

    fn begin_shutdown(&self) {}

    fn shutdown(self: Arc<Self>) -> Result<(), Infallible> {
        Ok(())
    }
}

// Several worker threads, so that requests could run at once if the server
// let them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_connections_pipelined_requests_are_served_one_at_a_time_in_order() {
    let (addr, service) = serve_in_order(None).await;
    let client = Client::connect(&addr, TIMEOUT).await.unwrap();
    let request = MetadataRequest { topics: None };
    let call = || client.call::<_, MetadataResponse>(ApiKey::Metadata, &request);
    // Three requests sent before the first is answered.
    let (a, b, c) = tokio::join!(call(), call(), call());
    a.unwrap();
    b.unwrap();
    c.unwrap();
    let log = service.log.lock().unwrap().clone();
    assert_eq!(log.len(), 6, "{log:?}");
    for pair in log.chunks(2) {
        let id = pair[0].strip_prefix("start ").expect("a start");
        assert_eq!(pair[1], format!("end {id}"), "interleaved: {log:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn different_connections_are_served_at_the_same_time() {
    let (addr, _service) = serve_in_order(Some(tokio::sync::Barrier::new(2))).await;
    // Each request waits inside the service until the other one is there
    // too: served one after the other, they would never meet.
    let (a, b) = tokio::join!(ask(&addr), ask(&addr));
    assert!(a.topics.is_empty() && b.topics.is_empty());
}

/// Tells the test which request it starts serving, and holds request 1
/// until the test lets it go: inside `handle`, or, with `later`, in a
/// response that comes later (`Handled::Later`).
struct Gate {
    started: tokio::sync::mpsc::UnboundedSender<u32>,
    release: watch::Receiver<bool>,
    later: bool,
}

impl Service for Gate {
    type Error = Infallible;

    async fn handle(&self, header: RequestHeader, _body: BytesMut) -> Handled {
        // The test may have stopped listening.
        let _ = self.started.send(header.correlation_id);
        if header.correlation_id != 1 {
            return answer(header);
        }
        let mut release = self.release.clone();
        let held = async move {
            // An error means the test is over: nothing left to hold for.
            let _ = release.wait_for(|release| *release).await;
            empty_response(header)
        };
        if self.later {
            Handled::Later(Box::pin(async move { Some(held.await) }))
        } else {
            Handled::Now(held.await)
        }
    }

    async fn background(self: Arc<Self>) {}

    fn begin_shutdown(&self) {}

    fn shutdown(self: Arc<Self>) -> Result<(), Infallible> {
        Ok(())
    }
}

/// A running server of a [`Gate`]: its address, the ids of the requests
/// it starts serving, and the switch that lets request 1 go.
async fn serve_gated(
    config: ServerConfig,
    later: bool,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<u32>,
    watch::Sender<bool>,
) {
    let (started, starts) = tokio::sync::mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    let server = Server::bind_with("127.0.0.1:0".parse().unwrap(), config, move |_| Gate {
        started,
        release: released,
        later,
    })
    .await
    .unwrap();
    let addr = server.local_addr().to_string();
    tokio::spawn(server.run(std::future::pending()));
    (addr, starts, release)
}

/// A request frame with correlation id `id` whose header and body are
/// `len` bytes: what the server counts against its budgets.
fn request_of_len(id: u32, len: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + len);
    frame.extend_from_slice(&(len as u32).to_be_bytes());
    frame.extend_from_slice(&u16::from(ApiKey::Metadata).to_be_bytes());
    frame.extend_from_slice(&0u16.to_be_bytes());
    frame.extend_from_slice(&id.to_be_bytes());
    frame.resize(4 + len, 0);
    frame
}

/// The id of the next request the server starts serving.
async fn next_started(starts: &mut tokio::sync::mpsc::UnboundedReceiver<u32>) -> u32 {
    tokio::time::timeout(TIMEOUT, starts.recv())
        .await
        .expect("a request was served in time")
        .unwrap()
}

#[tokio::test]
async fn a_request_waits_for_room_in_the_servers_byte_budget() {
    let config = ServerConfig {
        max_total_bytes: 1000,
        ..ServerConfig::default()
    };
    let (addr, mut starts, release) = serve_gated(config, false).await;
    let mut a = TcpStream::connect(&addr).await.unwrap();
    a.write_all(&request_of_len(1, 1000)).await.unwrap();
    assert_eq!(next_started(&mut starts).await, 1);
    // Request 1 holds the server's whole budget until it is answered, so
    // request 2, on a connection of its own, waits for room.
    let mut b = TcpStream::connect(&addr).await.unwrap();
    b.write_all(&request_of_len(2, 100)).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), starts.recv()).await;
    assert!(early.is_err(), "served with no room left: {early:?}");
    release.send_replace(true);
    assert_eq!(next_started(&mut starts).await, 2);
}

#[tokio::test]
async fn a_connection_over_its_byte_budget_is_not_read_further() {
    // Each connection may hold 1000 bytes of requests, the server 2000.
    let config = ServerConfig {
        max_connection_bytes: 1000,
        max_total_bytes: 2000,
        ..ServerConfig::default()
    };
    let (addr, mut starts, _release) = serve_gated(config, false).await;
    // Connection A pipelines two requests; the first is held.
    let mut a = TcpStream::connect(&addr).await.unwrap();
    let mut two = request_of_len(1, 1000);
    two.extend(request_of_len(2, 1000));
    a.write_all(&two).await.unwrap();
    assert_eq!(next_started(&mut starts).await, 1);
    // Time for A's reader to take request 2 too, if it would. It must
    // not: A's budget is spent, so request 2 stays unread, and leaves the
    // rest of the server's budget to connection B.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b = TcpStream::connect(&addr).await.unwrap();
    b.write_all(&request_of_len(3, 1000)).await.unwrap();
    assert_eq!(next_started(&mut starts).await, 3);
}

/// Reads one response frame off `stream` and returns its correlation id.
async fn read_response_id(stream: &mut TcpStream) -> u32 {
    let mut len = [0; 4];
    stream.read_exact(&mut len).await.unwrap();
    let mut frame = vec![0; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame).await.unwrap();
    let (id, _) = protocol::parse_response(frame.into()).unwrap();
    id
}

#[tokio::test]
async fn a_reply_that_comes_later_holds_the_responses_behind_it_but_not_the_requests() {
    let (addr, mut serves, release) = serve_gated(ServerConfig::default(), true).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let mut three = request_of_len(1, 100);
    three.extend(request_of_len(2, 100));
    three.extend(request_of_len(3, 100));
    stream.write_all(&three).await.unwrap();
    // Requests 2 and 3 are served while request 1's response waits...
    assert_eq!(next_started(&mut serves).await, 1);
    assert_eq!(next_started(&mut serves).await, 2);
    assert_eq!(next_started(&mut serves).await, 3);
    // ...but their responses, ready, wait behind it.
    let early = tokio::time::timeout(Duration::from_millis(200), stream.read_u8()).await;
    assert!(early.is_err(), "a response overtook request 1's: {early:?}");
    release.send_replace(true);
    for id in 1..=3 {
        let read = tokio::time::timeout(TIMEOUT, read_response_id(&mut stream)).await;
        assert_eq!(read.expect("a response in time"), id);
    }
}
