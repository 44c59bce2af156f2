//! Three coordinator servers (the tokio shell) on loopback in one process,
//! and clients using the client library: the operations, their errors by
//! ZooKeeper's names, ephemeral nodes, watches, a server stopping under a
//! client, and bad input: bytes that are not a frame, frames too long, cut
//! short or naming no operation, paths ZooKeeper refuses and data over the
//! limit, a peer of another ensemble.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use ch07_coordinator::client::ClientConfig;
use ch07_coordinator::coordinator::{CoordError, Coordinator, SessionLink};
use ch07_coordinator::node::{ClientMessage, PeerMessage, Read, ServerMessage};
use ch07_coordinator::raft::{Message, RaftConfig};
use ch07_coordinator::recipes::{Election, ElectionEvent};
use ch07_coordinator::shell::{self, Hello, MAX_FRAME, Member, ShellConfig};
use ch07_coordinator::state::Request;
use ch07_coordinator::storage::Storage;
use ch07_coordinator::tree::{
    ANY_VERSION, Change, CreateMode, MAX_DATA, MultiError, Op, OpResult, TreeError,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

struct Ensemble {
    clients: Vec<SocketAddr>,
    members: BTreeMap<u32, Member>,
    stops: BTreeMap<u32, oneshot::Sender<()>>,
    /// Each server's task, which ends when it has stopped.
    tasks: BTreeMap<u32, tokio::task::JoinHandle<()>>,
    /// Each server's data directory.
    dirs: Vec<TempDir>,
}

async fn ensemble() -> Ensemble {
    let raft = RaftConfig {
        election_timeout_ms: 300,
        heartbeat_interval_ms: 50,
        max_entries_per_message: 64,
    };
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
    let mut tasks = BTreeMap::new();
    let mut dirs = Vec::new();
    for (id, (clients, peers)) in listeners {
        let dir = tempfile::tempdir().unwrap();
        let config = ShellConfig {
            id,
            ensemble: members.clone(),
            data_dir: dir.path().to_path_buf(),
            raft: raft.clone(),
            tick: Duration::from_millis(10),
            // Small, so that every test here compacts the log.
            snapshot_every: 20,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            shell::run(config, clients, peers, shutdown).await.unwrap();
        });
        stops.insert(id, stop);
        tasks.insert(id, task);
        dirs.push(dir);
    }
    Ensemble {
        clients: members.values().map(|m| m.client).collect(),
        members,
        stops,
        tasks,
        dirs,
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
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still failing after 10 s: {e}"),
        }
    }
}

async fn connect(servers: &[SocketAddr]) -> Coordinator {
    let config = config();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Coordinator::connect(servers, config.clone()).await {
            Ok(c) => return c,
            Err(_) if tokio::time::Instant::now() < deadline => {
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

/// Polls every future in turn, first to last, until all are done: each
/// call is made (and its request sent) in the order of the list.
async fn in_order<T>(mut calls: Vec<Pin<Box<dyn Future<Output = T> + '_>>>) -> Vec<T> {
    let mut done: Vec<Option<T>> = calls.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (call, out) in calls.iter_mut().zip(done.iter_mut()) {
            if out.is_none() {
                match call.as_mut().poll(cx) {
                    Poll::Ready(value) => *out = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_pipelined_requests_take_effect_in_the_order_they_were_made() {
    let ensemble = ensemble().await;
    // A session on each server in turn: on a follower, its writes go to
    // the leader and its reads wait for them.
    for first in 0..ensemble.clients.len() {
        let mut servers = ensemble.clients.clone();
        servers.rotate_left(first);
        let client = connect(&servers).await;
        let dir = format!("/fifo-{first}");
        eventually(|| client.create(&dir, b"", false, false)).await;
        // Forty calls at once, none waiting for an answer: a write, then a
        // read of what the writes so far made, twenty times.
        let mut calls: Vec<Pin<Box<dyn Future<Output = String> + '_>>> = Vec::new();
        let mut expected = Vec::new();
        for i in 0..20 {
            let (client, dir) = (&client, dir.as_str());
            calls.push(Box::pin(async move {
                let prefix = format!("{dir}/n-");
                client.create(&prefix, b"", false, true).await.unwrap()
            }));
            calls.push(Box::pin(async move {
                let names = client.children(dir, false).await.unwrap();
                format!("{} children", names.len())
            }));
            expected.push(format!("{dir}/n-{i:010}"));
            expected.push(format!("{} children", i + 1));
        }
        // Each write took effect after the one made before it, and each
        // read saw the write before it and none after.
        assert_eq!(in_order(calls).await, expected);
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_makes_all_its_operations_or_none() {
    let ensemble = ensemble().await;
    let client = connect(&ensemble.clients).await;
    eventually(|| client.create("/epoch", b"1", false, false)).await;
    let epoch = client.exists("/epoch", false).await.unwrap().unwrap();
    // Writes that hold only while `/epoch` is unchanged: as a controller
    // fences its writes with its epoch.
    let fenced = |version, data: &[u8]| {
        vec![
            Op::Check {
                path: "/epoch".into(),
                version,
            },
            Op::Create {
                path: "/state".into(),
                data: data.to_vec(),
                mode: CreateMode::Persistent,
            },
            Op::Create {
                path: "/mine".into(),
                data: Vec::new(),
                mode: CreateMode::Ephemeral(0),
            },
        ]
    };
    let results = client.multi(fenced(epoch.version, b"a")).await.unwrap();
    assert_eq!(
        results,
        [
            OpResult::Check,
            OpResult::Create {
                path: "/state".into()
            },
            OpResult::Create {
                path: "/mine".into()
            }
        ]
    );
    let mine = client.exists("/mine", false).await.unwrap().unwrap();
    assert_eq!(mine.ephemeral_owner, client.session());
    // The epoch moved on: the same writes change nothing, and the error
    // names the operation that failed.
    client.set("/epoch", b"2", ANY_VERSION).await.unwrap();
    client.delete("/mine", ANY_VERSION).await.unwrap();
    let stale = client.multi(fenced(epoch.version, b"b")).await;
    match stale {
        Err(CoordError::Multi(MultiError {
            index: 0,
            error: TreeError::BadVersion { .. },
        })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(client.get("/state", false).await.unwrap().0, b"a");
    assert_eq!(client.exists("/mine", false).await.unwrap(), None);
    client.close().await;
}

/// Steps `link` until `election` has something to say, for at most 10 s.
async fn next_election_event(link: &mut SessionLink, election: &mut Election) -> ElectionEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no election event in 10 s"
        );
        link.step().await;
        let events = link.session().take_events();
        for event in events {
            if let Some(heard) = election.on_event(link.session(), &event, shell::wall_clock_ms()) {
                return heard;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recipes_run_over_tcp_an_election_and_its_next_leader() {
    let ensemble = ensemble().await;
    let admin = connect(&ensemble.clients).await;
    eventually(|| admin.create("/controller_epoch", b"", false, false)).await;
    let mut a = SessionLink::new(&ensemble.clients, config());
    let mut b = SessionLink::new(&ensemble.clients, config());
    let mut ea = Election::new("/controller", "/controller_epoch", b"a");
    let mut eb = Election::new("/controller", "/controller_epoch", b"b");
    ea.run(a.session(), shell::wall_clock_ms());
    assert_eq!(
        next_election_event(&mut a, &mut ea).await,
        ElectionEvent::Elected { epoch: 1 }
    );
    eb.run(b.session(), shell::wall_clock_ms());
    assert_eq!(
        next_election_event(&mut b, &mut eb).await,
        ElectionEvent::Follower {
            leader: b"a".to_vec()
        }
    );
    // A ends its session: its node goes at once, and B, watching it,
    // takes over in a greater epoch.
    a.session().close();
    a.step().await;
    assert_eq!(
        next_election_event(&mut b, &mut eb).await,
        ElectionEvent::Elected { epoch: 2 }
    );
    admin.close().await;
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

// Bad input. A server reads each client's frames on its own task: a frame
// it cannot take ends that connection (the session, if any, stays, as
// after any lost connection), and nothing else.

/// What `connect` and `write_frame` would send for `msg`: its frame.
fn frame_of(msg: &impl serde::Serialize) -> Vec<u8> {
    let body = bincode::serde::encode_to_vec(msg, bincode::config::standard()).unwrap();
    frame(&body)
}

/// A 4-byte big-endian length, then `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// Asserts that the server closes `stream` without answering: the next
/// read ends (or is reset, if the server left bytes unread) within 10 s.
async fn assert_closed_without_answer(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}: the connection is still open after 10 s"));
    match read {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{what}: the server answered {:?}", &buf[..n]),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Asserts that the ensemble still serves: `client` writes `data` to
/// `/kept`, and a new client of server 1 alone reads it after a `sync`.
async fn assert_still_serving(ensemble: &Ensemble, client: &Coordinator, data: &str) {
    eventually(|| client.set("/kept", data.as_bytes(), ANY_VERSION)).await;
    let fresh = connect(&ensemble.clients[..1]).await;
    fresh.sync().await.unwrap();
    let (read, _) = fresh.get("/kept", false).await.unwrap();
    assert_eq!(read, data.as_bytes(), "after {data}");
    fresh.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_ends_its_connection_and_the_server_serves_on() {
    let ensemble = ensemble().await;
    // The client talks to server 1, the one the bad input goes to.
    let client = connect(&ensemble.clients).await;
    eventually(|| client.create("/kept", b"before", false, false)).await;

    // `Write { xid: 1, request: Sync }` is three bytes: the message's
    // variant, the xid, the request's variant. A variant no enum has is an
    // operation the server does not know.
    let sync = frame_of(&ClientMessage::Write {
        xid: 1,
        request: Request::Sync,
    });
    assert_eq!(sync.len(), 4 + 3, "{sync:?}");
    let mut unknown_request = sync.clone();
    unknown_request[6] = 200;
    let unknown_message = frame(&[200]);
    let too_long = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
    let huge = u32::MAX.to_be_bytes().to_vec();
    let garbage = b"GET / HTTP/1.1\r\nHost: coordinator\r\n\r\n".to_vec();
    let not_bincode = frame(&[0xff; 16]);
    // The length promises 100 bytes; 10 come, then the end of the stream.
    let mut cut_short = 100u32.to_be_bytes().to_vec();
    cut_short.extend_from_slice(&[3; 10]);

    for (what, bytes) in [
        ("garbage", garbage),
        ("a frame longer than MAX_FRAME", too_long),
        ("a frame of 4 GiB", huge),
        ("an unknown message", unknown_message),
        ("an unknown operation", unknown_request),
        ("a frame that does not decode", not_bincode),
        ("a frame cut short", cut_short),
    ] {
        let mut raw = TcpStream::connect(ensemble.clients[0]).await.unwrap();
        // A session first, as a real client would have.
        raw.write_all(&frame_of(&ClientMessage::Connect {
            session: None,
            timeout_ms: 3_000,
            last_zxid: 0,
            watches: Default::default(),
        }))
        .await
        .unwrap();
        let answer: Option<ServerMessage> = shell::read_frame(&mut raw).await.unwrap();
        assert!(
            matches!(answer, Some(ServerMessage::Connected { .. })),
            "{answer:?}"
        );
        raw.write_all(&bytes).await.unwrap();
        // The end of the stream, for the frame cut short: the server
        // waits for the rest until then.
        // The server may have closed the connection already (it reads no
        // further than a bad length): then there is nothing to end.
        let _ = raw.shutdown().await;
        assert_closed_without_answer(&mut raw, what).await;
        assert_still_serving(&ensemble, &client, what).await;
    }

    // A frame cut short on a connection left open: the server waits for
    // the rest (a real server would time it out), serving everyone else.
    let mut stuck = TcpStream::connect(ensemble.clients[0]).await.unwrap();
    stuck.write_all(&100u32.to_be_bytes()).await.unwrap();
    let mut buf = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(300), stuck.read(&mut buf)).await;
    assert!(waited.is_err(), "the server answered {waited:?}");
    assert_still_serving(&ensemble, &client, "a frame left open").await;

    // A well-formed read without a session has a defined answer.
    let mut early = TcpStream::connect(ensemble.clients[0]).await.unwrap();
    let read = ClientMessage::Read {
        xid: 1,
        read: Read::Exists {
            path: "/kept".into(),
            watch: false,
        },
    };
    early.write_all(&frame_of(&read)).await.unwrap();
    let answer: Option<ServerMessage> = shell::read_frame(&mut early).await.unwrap();
    assert_eq!(answer, Some(ServerMessage::NotReady));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paths_and_data_over_the_limit_are_refused_and_nothing_is_lost() {
    let ensemble = ensemble().await;
    let client = connect(&ensemble.clients).await;
    eventually(|| client.create("/kept", b"before", false, false)).await;

    let is_bad_arguments =
        |e: &CoordError| matches!(e, CoordError::Tree(TreeError::BadArguments { .. }));
    for path in [
        "",
        "kept",
        "/kept/",
        "//kept",
        "/kept//a",
        "/kept/.",
        "/kept/../a",
        "/a\u{0}b",
        "/a\u{1f}b",
        "/\u{e000}",
    ] {
        let created = client.create(path, b"x", false, false).await.unwrap_err();
        assert!(is_bad_arguments(&created), "create {path:?}: {created}");
        assert!(
            created.to_string().starts_with("BadArguments: "),
            "{created}"
        );
        let set = client.set(path, b"x", ANY_VERSION).await.unwrap_err();
        assert!(is_bad_arguments(&set), "set {path:?}: {set}");
        let deleted = client.delete(path, ANY_VERSION).await.unwrap_err();
        assert!(is_bad_arguments(&deleted), "delete {path:?}: {deleted}");
        let read = client.get(path, false).await.unwrap_err();
        assert!(is_bad_arguments(&read), "get {path:?}: {read}");
        let listed = client.children(path, false).await.unwrap_err();
        assert!(is_bad_arguments(&listed), "children {path:?}: {listed}");
        // `exists` answers only whether there is such a node: none.
        assert_eq!(client.exists(path, false).await.unwrap(), None, "{path:?}");
    }

    // Data over the limit: refused before it is logged, the node untouched.
    let over = vec![7; MAX_DATA + 1];
    let created = client
        .create("/big", &over, false, false)
        .await
        .unwrap_err();
    assert!(is_bad_arguments(&created), "{created}");
    let set = client.set("/kept", &over, ANY_VERSION).await.unwrap_err();
    assert!(is_bad_arguments(&set), "{set}");

    // A request larger than a frame may be never reaches the tree: the
    // server closes the connection, as ZooKeeper does past its
    // `jute.maxbuffer`, and the call fails with `ConnectionLoss` (the
    // client cannot know whether it took effect); the session carries on
    // on another server.
    let impatient = connect(&ensemble.clients).await;
    let way_over = vec![7; MAX_FRAME + 1];
    let lost = impatient
        .create("/huge", &way_over, false, false)
        .await
        .unwrap_err();
    assert_eq!(lost, CoordError::ConnectionLoss);
    eventually(|| impatient.sync()).await;
    assert_eq!(impatient.exists("/huge", false).await.unwrap(), None);
    impatient.close().await;

    // Nothing stored was lost, on any server.
    for server in &ensemble.clients {
        let reader = connect(std::slice::from_ref(server)).await;
        reader.sync().await.unwrap();
        let (kept, _) = reader.get("/kept", false).await.unwrap();
        assert_eq!(kept, b"before", "{server}");
        assert_eq!(reader.exists("/big", false).await.unwrap(), None);
        reader.close().await;
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refuses_a_peer_of_another_ensemble() {
    let ensemble = ensemble().await;
    let client = connect(&ensemble.clients).await;
    eventually(|| client.create("/kept", b"v1", false, false)).await;

    // Server 2 of another ensemble (one member's address differs) calls
    // server 1's peer port, and asks for a vote in a far later term: it is
    // refused at its hello, and the vote request is never heard.
    let mut other = ensemble.members.clone();
    other.get_mut(&3).unwrap().client = "127.0.0.1:9".parse().unwrap();
    let hello = Hello {
        id: 2,
        ensemble: other,
    };
    let vote = PeerMessage::Raft(Message::RequestVote {
        term: 1_000_000,
        last_index: u64::MAX,
        last_term: 1_000_000,
    });
    let mut raw = TcpStream::connect(ensemble.members[&1].peer).await.unwrap();
    let mut bytes = frame_of(&hello);
    bytes.extend(frame_of(&vote));
    raw.write_all(&bytes).await.unwrap();
    assert_closed_without_answer(&mut raw, "another ensemble's hello").await;

    // The ensemble carries on, every server with what was written.
    eventually(|| client.set("/kept", b"v2", ANY_VERSION)).await;
    for server in &ensemble.clients {
        let reader = connect(std::slice::from_ref(server)).await;
        eventually(|| reader.sync()).await;
        let (kept, _) = reader.get("/kept", false).await.unwrap();
        assert_eq!(kept, b"v2", "{server}");
        reader.close().await;
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_compacts_its_log_into_a_snapshot() {
    let mut ensemble = ensemble().await;
    let client = connect(&ensemble.clients).await;
    for i in 0..100 {
        let path = format!("/n{i}");
        eventually(|| client.create(&path, b"v", false, false)).await;
    }
    eventually(|| client.sync()).await;
    client.close().await;
    for (id, stop) in std::mem::take(&mut ensemble.stops) {
        // Nobody else stops it: the server is there to hear this.
        stop.send(()).unwrap();
        ensemble.tasks.remove(&id).unwrap().await.unwrap();
    }
    // What each server would start again from: a snapshot that covers
    // nearly everything, and a log that reaches it from about the
    // snapshot before (20 entries between snapshots here, plus what one
    // round may add).
    for dir in &ensemble.dirs {
        let (_, recovered) = Storage::open(dir.path()).unwrap();
        let snapshot = recovered.snapshot.expect("a snapshot");
        assert!(snapshot.last_index >= 80, "{}", snapshot.last_index);
        assert!(recovered.log.len() < 80, "{} entries", recovered.log.len());
        let first = recovered.log.first().expect("a log").index;
        let last = recovered.log.last().expect("a log").index;
        assert!(first <= snapshot.last_index + 1 && last >= snapshot.last_index);
    }
}
