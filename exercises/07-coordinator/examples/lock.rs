//! Two clients race for a lock on a three-server ensemble (in one thread:
//! `LocalCluster`). The holder falls silent; its session expires, its lock
//! node goes, and the other client holds the lock, with a greater fencing
//! token. Then an election, as Kafka's controller election on ZooKeeper
//! worked: the epoch grows with every leader.
//!
//! `cargo run -p ch07-coordinator --example lock`

use ch07_coordinator::client::{ClientConfig, ClientSession};
use ch07_coordinator::local::LocalCluster;
use ch07_coordinator::node::ClientMessage;
use ch07_coordinator::recipes::{Election, ElectionEvent, Lock, LockEvent};
use ch07_coordinator::state::Request;

/// A client: its session, a lock and an election.
struct Client {
    id: u64,
    name: &'static str,
    session: ClientSession,
    lock: Lock,
    election: Election,
}

impl Client {
    fn new(cluster: &LocalCluster, id: u64, name: &'static str, server: usize) -> Client {
        let config = ClientConfig {
            session_timeout_ms: 500,
            request_timeout_ms: 200,
            ping_interval_ms: 100,
        };
        Client {
            id,
            name,
            session: ClientSession::new(&[1, 2, 3], server, config, cluster.now),
            lock: Lock::new("/locks", name),
            election: Election::new("/controller", "/controller_epoch", name.as_bytes()),
        }
    }

    /// One round: its messages go through the ensemble; its recipes see
    /// what came back.
    fn step(&mut self, cluster: &mut LocalCluster) {
        cluster.drive(self.id, &mut self.session);
        for event in self.session.take_events() {
            let now = cluster.now;
            if let Some(e) = self.lock.on_event(&mut self.session, &event, now) {
                let what = match e {
                    LockEvent::Acquired { token } => format!("holds the lock, token {token}"),
                    LockEvent::Lost => "lost the lock".to_string(),
                };
                println!("{:>5} ms  {}: {what}", cluster.now, self.name);
            }
            if let Some(e) = self.election.on_event(&mut self.session, &event, now) {
                let what = match e {
                    ElectionEvent::Elected { epoch } => format!("is the controller, epoch {epoch}"),
                    ElectionEvent::Follower { leader } => {
                        format!("follows controller {}", String::from_utf8_lossy(&leader))
                    }
                    ElectionEvent::Lost => "is no longer a candidate".to_string(),
                };
                println!("{:>5} ms  {}: {what}", cluster.now, self.name);
            }
        }
    }
}

fn main() {
    let mut cluster = LocalCluster::new();
    // An administrator makes the directories.
    cluster.connect(1, 99);
    for (xid, path) in [(1, "/locks"), (2, "/controller_epoch")] {
        let request = Request::Create {
            path: path.into(),
            data: Vec::new(),
            ephemeral: false,
            sequential: false,
        };
        cluster.send(1, 99, ClientMessage::Write { xid, request });
    }
    let mut a = Client::new(&cluster, 10, "alice", 1);
    let mut b = Client::new(&cluster, 20, "bob", 2);
    for round in 0..60 {
        if round == 3 {
            println!(
                "{:>5} ms  alice asks for the lock and runs for controller",
                cluster.now
            );
            let now = cluster.now;
            a.lock.acquire(&mut a.session, now);
            a.election.run(&mut a.session, now);
        }
        if round == 6 {
            println!("{:>5} ms  bob does the same", cluster.now);
            let now = cluster.now;
            b.lock.acquire(&mut b.session, now);
            b.election.run(&mut b.session, now);
        }
        if round == 15 {
            println!(
                "{:>5} ms  alice falls silent (a long GC pause, a dead machine)",
                cluster.now
            );
        }
        if round < 15 {
            a.step(&mut cluster);
        }
        b.step(&mut cluster);
    }
    // Alice comes back: her session is gone.
    for _ in 0..3 {
        a.step(&mut cluster);
    }
}
