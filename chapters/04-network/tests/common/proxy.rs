//! A fault-injecting TCP proxy, for tests of clients under failure. It
//! sits between clients and a broker on loopback, passes bytes both ways,
//! and, when told, breaks things: it answers a request itself with an
//! error, forwards one and hangs up before the answer, hangs up at once,
//! or turns new connections away. It reads requests frame by frame (with
//! the `protocol` module) to know which is which; answers pass as they
//! come.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use ch04_network::ErrorCode;
use ch04_network::protocol::{
    self, ApiKey, DEFAULT_MAX_FRAME, ProduceInPlace, ProducePartitionResponse, ProduceResponse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Pass it on (the default; useful to let some requests through
    /// before a fault).
    Forward,
    /// Answer it without passing it on: a produce with this error for
    /// each of its partitions, any other request with an error response.
    Fail(ErrorCode),
    /// Pass it on, then hang up before its answer comes back: the broker
    /// did the work, the client never hears.
    ForwardThenCut,
    /// Hang up without passing it on.
    Cut,
}

/// A running proxy; it stops when dropped.
pub(crate) struct Proxy {
    /// Where clients connect instead of the broker.
    pub(crate) addr: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    upstream: String,
    /// Actions for coming requests, in order: each request takes the
    /// first one for its API key, if any.
    plan: Mutex<Vec<(u16, Action)>>,
    /// Close new connections at once.
    refusing: Mutex<bool>,
    /// The API key of every request seen, in order.
    seen: Mutex<Vec<u16>>,
    accepted: AtomicUsize,
    /// Bumped to hang up every open connection.
    cut: watch::Sender<u64>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut_connections();
    }
}

impl Proxy {
    /// A proxy on a free loopback port, in front of `upstream`.
    pub(crate) async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Proxy::start_on(listener, upstream)
    }

    /// A proxy accepting on `listener`, in front of `upstream`.
    pub(crate) fn start_on(listener: TcpListener, upstream: &str) -> Proxy {
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            plan: Mutex::new(Vec::new()),
            refusing: Mutex::new(false),
            seen: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            cut: watch::Sender::new(0),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.accepted.fetch_add(1, Ordering::SeqCst);
                if *accepting.refusing.lock().unwrap() {
                    continue; // dropped: closed at once
                }
                tokio::spawn(relay(client, accepting.clone()));
            }
        });
        Proxy { addr, shared, task }
    }

    /// The next request of `api` that has no earlier action waiting gets
    /// `action`.
    pub(crate) fn on_next(&self, api: ApiKey, action: Action) {
        self.shared.plan.lock().unwrap().push((api.into(), action));
    }

    /// From now on, close every new connection as soon as it is accepted
    /// (`true`), or serve them again (`false`).
    pub(crate) fn refuse_connections(&self, refuse: bool) {
        *self.shared.refusing.lock().unwrap() = refuse;
    }

    /// Hangs up every open connection now.
    pub(crate) fn cut_connections(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// How many requests of `api` reached the proxy.
    pub(crate) fn requests(&self, api: ApiKey) -> usize {
        let key: u16 = api.into();
        let seen = self.shared.seen.lock().unwrap();
        seen.iter().filter(|&&k| k == key).count()
    }

    /// How many connections the proxy accepted (refused ones too).
    pub(crate) fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Shared {
    fn action_for(&self, api_key: u16) -> Action {
        self.seen.lock().unwrap().push(api_key);
        let mut plan = self.plan.lock().unwrap();
        match plan.iter().position(|(key, _)| *key == api_key) {
            Some(i) => plan.remove(i).1,
            None => Action::Forward,
        }
    }
}

/// One client connection and its own connection to the broker. Ends, and
/// so closes both, on a cut, a fault, or either side hanging up.
async fn relay(client: TcpStream, shared: Arc<Shared>) {
    let mut cut = shared.cut.subscribe();
    let Ok(broker) = TcpStream::connect(&shared.upstream).await else {
        return;
    };
    let (mut from_client, to_client) = client.into_split();
    let (mut from_broker, mut to_broker) = broker.into_split();
    let to_client = tokio::sync::Mutex::new(to_client);
    // Answers: passed on as they come.
    let answers = async {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match from_broker.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to_client.lock().await.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    // Requests: one frame at a time, each with its action.
    let requests = async {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            while let Ok(Some(frame)) = protocol::take_frame(&mut buf, DEFAULT_MAX_FRAME) {
                let whole = [&(frame.len() as u32).to_be_bytes()[..], &frame[..]].concat();
                let Ok((header, body)) = protocol::parse_request(frame) else {
                    return;
                };
                match shared.action_for(header.api_key) {
                    Action::Forward => {
                        if to_broker.write_all(&whole).await.is_err() {
                            return;
                        }
                    }
                    Action::Fail(code) => {
                        let answer = failure(header.api_key, header.correlation_id, &body, code);
                        if to_client.lock().await.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                    Action::ForwardThenCut => {
                        let _ = to_broker.write_all(&whole).await;
                        return;
                    }
                    Action::Cut => return,
                }
            }
            match from_client.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = answers => {}
        _ = requests => {}
        _ = cut.changed() => {}
    }
}

/// The proxy's own answer to a request it fails with `code`.
fn failure(api_key: u16, correlation_id: u32, body: &[u8], code: ErrorCode) -> BytesMut {
    let produce: u16 = ApiKey::Produce.into();
    match ProduceInPlace::decode(body) {
        Ok(request) if api_key == produce => {
            let topics = request
                .topics
                .into_iter()
                .map(|(topic, batches)| {
                    let partitions = batches
                        .into_iter()
                        .map(|(partition, _)| ProducePartitionResponse {
                            partition,
                            error: code,
                            base_offset: 0,
                        })
                        .collect();
                    (topic, partitions)
                })
                .collect();
            protocol::ok_response(correlation_id, &ProduceResponse { topics })
        }
        _ => protocol::error_response(correlation_id, code, "injected by the test proxy".into()),
    }
}
