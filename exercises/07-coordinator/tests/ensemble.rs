//! Three coordinator servers (the tokio shell) on loopback in one process,
//! and clients using the client library: the operations, their errors by
//! ZooKeeper's names, ephemeral nodes, watches, and a server stopping under
//! a client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ch07_coordinator::client::ClientConfig;
use ch07_coordinator::coordinator::{CoordError, Coordinator};
use ch07_coordinator::raft::RaftConfig;
use ch07_coordinator::shell::{self, Member, ShellConfig};
use ch07_coordinator::tree::{ANY_VERSION, Change, TreeError};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Ensemble {
    clients: Vec<SocketAddr>,
    stops: BTreeMap<u32, oneshot::Sender<()>>,
    _dirs: Vec<TempDir>,
}

async fn ensemble() -> Ensemble {
    let mut listeners = BTreeMap::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u32 {
        let clients = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peers = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let member = Member {
            client: clients.local_addr().unwrap(),
            peer: peers.local_addr().unwrap(),
        };
        members.insert(id, member);
        listeners.insert(id, (clients, peers));
    }
    let mut stops = BTreeMap::new();
    let mut dirs = Vec::new();
    for (id, (clients, peers)) in listeners {
        let dir = tempfile::tempdir().unwrap();
        let config = ShellConfig {
            id,
            ensemble: members.clone(),
            data_dir: dir.path().to_path_buf(),
            raft: RaftConfig {
                election_timeout_ms: 300,
                heartbeat_interval_ms: 50,
                max_entries_per_message: 64,
            },
            tick: Duration::from_millis(10),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            shell::run(config, clients, peers, shutdown).await.unwrap();
        });
        stops.insert(id, stop);
        dirs.push(dir);
    }
    Ensemble {
        clients: members.values().map(|m| m.client).collect(),
        stops,
        _dirs: dirs,
    }
}

fn config() -> ClientConfig {
    ClientConfig {
        session_timeout_ms: 3_000,
        request_timeout_ms: 1_000,
        ping_interval_ms: 300,
    }
}

/// Retries `f` until it succeeds or 10 s pass: the ensemble elects a
/// leader first.
async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CoordError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f().await {
            Ok(value) => return value,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still failing after 10 s: {e}"),
        }
    }
}

async fn connect(servers: &[SocketAddr]) -> Coordinator {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Coordinator::connect(servers, config()).await {
            Ok(c) => return c,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_and_their_errors_by_zookeeper_names() {
    let ensemble = ensemble().await;
    let client = connect(&ensemble.clients).await;
    let path = eventually(|| client.create("/app", b"v1", false, false)).await;
    assert_eq!(path, "/app");
    let (data, stat) = client.get("/app", false).await.unwrap();
    assert_eq!((data.as_slice(), stat.version), (b"v1".as_slice(), 0));
    let stat = client.set("/app", b"v2", 0).await.unwrap();
    assert_eq!(stat.version, 1);
    // A compare-and-set with a stale version is refused.
    let stale = client.set("/app", b"v3", 0).await.unwrap_err();
    assert!(
        matches!(stale, CoordError::Tree(TreeError::BadVersion { .. })),
        "{stale}"
    );
    let exists = client.create("/app", b"", false, false).await.unwrap_err();
    assert!(
        matches!(exists, CoordError::Tree(TreeError::NodeExists { .. })),
        "{exists}"
    );
    let missing = client.get("/nope", false).await.unwrap_err();
    assert!(
        matches!(missing, CoordError::Tree(TreeError::NoNode { .. })),
        "{missing}"
    );
    client.create("/app/a", b"", false, false).await.unwrap();
    let seq = client.create("/app/q-", b"", false, true).await.unwrap();
    assert_eq!(seq, "/app/q-0000000001");
    assert_eq!(
        client.children("/app", false).await.unwrap(),
        vec!["a", "q-0000000001"]
    );
    let not_empty = client.delete("/app", ANY_VERSION).await.unwrap_err();
    assert!(
        matches!(not_empty, CoordError::Tree(TreeError::NotEmpty { .. })),
        "{not_empty}"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_goes_with_its_session_and_a_watcher_hears_it() {
    let ensemble = ensemble().await;
    let owner = connect(&ensemble.clients).await;
    eventually(|| owner.create("/lock", b"", true, false)).await;
    // Another client, on the servers in another order.
    let mut others = ensemble.clients.clone();
    others.rotate_left(1);
    let mut watcher = connect(&others).await;
    let mut events = watcher.watches().unwrap();
    watcher.sync().await.unwrap();
    assert!(watcher.exists("/lock", true).await.unwrap().is_some());
    owner.close().await;
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("the watch fired")
        .unwrap();
    assert_eq!(event, Change::NodeDeleted("/lock".into()));
    watcher.sync().await.unwrap();
    assert!(watcher.exists("/lock", false).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_carries_on_when_its_server_stops() {
    let mut ensemble = ensemble().await;
    let client = connect(&ensemble.clients).await;
    eventually(|| client.create("/n", b"0", false, false)).await;
    // The client talks to the first server; stop it.
    let stop = ensemble.stops.remove(&1).unwrap();
    let _ = stop.send(());
    let stat = eventually(|| client.set("/n", b"1", ANY_VERSION)).await;
    assert!(stat.version >= 1);
    let (data, _) = eventually(|| client.get("/n", false)).await;
    assert_eq!(data, b"1");
    // The stopped server is really gone.
    let alone = Coordinator::connect(&ensemble.clients[..1], config()).await;
    assert!(
        matches!(alone, Err(CoordError::ConnectionLoss)),
        "{alone:?}"
    );
}
