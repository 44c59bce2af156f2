//! Recipes: what applications build from znodes, sessions and watches.
//!
//! So far, the lock ([`Lock`]), which chapter 8's controller election is
//! one use of: ZooKeeper's recipe, with its refinements.
//!
//! - Each contender creates an *ephemeral sequential* node under the lock's
//!   directory. The lowest number holds the lock. A holder that dies loses
//!   its session, so its node goes, and the next contender holds it.
//! - A contender that does not hold it watches only the node just before
//!   its own, not the directory. When one holder goes, one contender wakes,
//!   not all of them (no "herd effect").
//! - A node's name starts with a tag unique to its contender. After a
//!   connection loss during the create, the contender can tell whether the
//!   create happened and find its node. Curator calls this "protected"
//!   mode.
//! - The node's sequence number is a **fencing token**: it only grows from
//!   one holder to the next. A holder whose session expired while it was
//!   cut off may still believe it holds the lock. A resource that refuses
//!   a token lower than one it has seen refuses that holder too. Chapter 8's
//!   controller epoch is the same idea.

use ch06_replication::sim::Millis;

use crate::client::{ClientEvent, ClientSession};
use crate::node::{Read, ReadResult};
use crate::state::{Request, Response};
use crate::tree::{ANY_VERSION, Change};

/// What a [`Lock`] tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockEvent {
    /// The lock is held, with this fencing token.
    Acquired {
        /// The holder's sequence number: greater than every earlier
        /// holder's.
        token: u64,
    },
    /// The lock is no longer held, or will not be: the session expired, or
    /// the lock's node could not be made.
    Lost,
}

/// Where a lock is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Not asked for.
    Idle,
    /// Creating our node (request `xid`).
    Creating { xid: u64 },
    /// Listing the contenders (request `xid`).
    Listing { xid: u64 },
    /// Setting a watch on the node before ours (request `xid`).
    Watching { xid: u64, predecessor: String },
    /// Waiting for the node before ours to go.
    Waiting { predecessor: String },
    /// Held.
    Held { token: u64 },
    /// Given back: deleting our node (request `xid`).
    Releasing { xid: u64 },
}

/// A lock on a directory of the tree, for one client session.
#[derive(Debug)]
pub struct Lock {
    dir: String,
    tag: String,
    /// Our node's name in `dir`, once known.
    node: Option<String>,
    phase: Phase,
}

/// A lock node's sequence number: the ten digits ZooKeeper appends.
fn sequence(name: &str) -> Option<u64> {
    let digits = name.get(name.len().checked_sub(10)?..)?;
    digits.parse().ok()
}

impl Lock {
    /// A lock on `dir` (which must exist), for a contender that names its
    /// nodes with `tag` (unique among contenders, say the client's id).
    pub fn new(dir: &str, tag: &str) -> Lock {
        Lock {
            dir: dir.to_string(),
            tag: format!("{tag}-lock-"),
            node: None,
            phase: Phase::Idle,
        }
    }

    /// Whether it is held.
    pub fn is_held(&self) -> bool {
        matches!(self.phase, Phase::Held { .. })
    }

    /// Asks for the lock: [`LockEvent::Acquired`] comes when it is held.
    pub fn acquire(&mut self, client: &mut ClientSession, now: Millis) {
        if self.phase == Phase::Idle {
            self.create(client, now);
        }
    }

    /// Gives the lock back (or stops waiting for it).
    pub fn release(&mut self, client: &mut ClientSession, now: Millis) {
        match self.node.take() {
            Some(node) => {
                let request = Request::Delete {
                    path: format!("{}/{node}", self.dir),
                    version: ANY_VERSION,
                };
                let xid = client.write(request, now);
                self.phase = Phase::Releasing { xid };
            }
            None => self.phase = Phase::Idle,
        }
    }

    fn create(&mut self, client: &mut ClientSession, now: Millis) {
        let request = Request::Create {
            path: format!("{}/{}", self.dir, self.tag),
            data: Vec::new(),
            ephemeral: true,
            sequential: true,
        };
        let xid = client.write(request, now);
        self.phase = Phase::Creating { xid };
    }

    fn list(&mut self, client: &mut ClientSession, now: Millis) {
        let read = Read::GetChildren {
            path: self.dir.clone(),
            watch: false,
        };
        let xid = client.read(read, now);
        self.phase = Phase::Listing { xid };
    }

    /// Feeds a client event to the lock; returns what the owner must know.
    pub fn on_event(
        &mut self,
        client: &mut ClientSession,
        event: &ClientEvent,
        now: Millis,
    ) -> Option<LockEvent> {
        match (event, self.phase.clone()) {
            (ClientEvent::Expired, Phase::Idle) => None,
            (ClientEvent::Expired, _) => {
                // The session's ephemeral nodes are gone, ours with them.
                self.node = None;
                self.phase = Phase::Idle;
                Some(LockEvent::Lost)
            }
            (ClientEvent::Written { xid, result }, Phase::Creating { xid: x }) if *xid == x => {
                match result {
                    Ok(Response::Created(path)) => {
                        let name = path.rsplit('/').next().unwrap_or(path);
                        self.node = Some(name.to_string());
                        self.list(client, now);
                        None
                    }
                    _ => {
                        self.phase = Phase::Idle;
                        Some(LockEvent::Lost)
                    }
                }
            }
            (ClientEvent::ConnectionLoss { xid }, Phase::Creating { xid: x }) if *xid == x => {
                // The create may have happened: list, and look for our tag.
                self.list(client, now);
                None
            }
            (ClientEvent::ReadDone { xid, result }, Phase::Listing { xid: x }) if *xid == x => {
                let Ok(ReadResult::Children(names)) = result else {
                    self.phase = Phase::Idle;
                    return Some(LockEvent::Lost);
                };
                self.on_children(client, names.clone(), now)
            }
            (ClientEvent::ConnectionLoss { xid }, Phase::Listing { xid: x }) if *xid == x => {
                self.list(client, now);
                None
            }
            (
                ClientEvent::ReadDone { xid, result },
                Phase::Watching {
                    xid: x,
                    predecessor,
                },
            ) if *xid == x => {
                match result {
                    // Still there: wait for its deletion.
                    Ok(ReadResult::Stat(Some(_))) => self.phase = Phase::Waiting { predecessor },
                    // Gone already: look again.
                    _ => self.list(client, now),
                }
                None
            }
            (ClientEvent::Watch(Change::NodeDeleted(path)), Phase::Waiting { predecessor })
                if *path == format!("{}/{predecessor}", self.dir) =>
            {
                self.list(client, now);
                None
            }
            // A move to another server loses the watch, and maybe its
            // event: look again.
            (ClientEvent::Reconnected(_), Phase::Waiting { .. })
            | (ClientEvent::ConnectionLoss { .. }, Phase::Watching { .. }) => {
                self.list(client, now);
                None
            }
            (ClientEvent::Written { xid, .. }, Phase::Releasing { xid: x })
            | (ClientEvent::ConnectionLoss { xid }, Phase::Releasing { xid: x })
                if *xid == x =>
            {
                // Deleted, or lost with the connection: either way the
                // session's end would delete it; the lock is not ours.
                self.phase = Phase::Idle;
                None
            }
            _ => None,
        }
    }

    fn on_children(
        &mut self,
        client: &mut ClientSession,
        mut names: Vec<String>,
        now: Millis,
    ) -> Option<LockEvent> {
        names.retain(|n| sequence(n).is_some());
        names.sort_by_key(|n| sequence(n));
        if self.node.is_none() {
            // After a lost create: ours is the one with our tag, if any.
            self.node = names.iter().find(|n| n.starts_with(&self.tag)).cloned();
        }
        let Some(node) = self.node.clone() else {
            self.create(client, now);
            return None;
        };
        let Some(position) = names.iter().position(|n| *n == node) else {
            // Our node is gone (our session ended and a new one began?).
            self.node = None;
            self.phase = Phase::Idle;
            return Some(LockEvent::Lost);
        };
        if position == 0 {
            let token = sequence(&node).unwrap_or(0);
            self.phase = Phase::Held { token };
            return Some(LockEvent::Acquired { token });
        }
        let predecessor = names[position - 1].clone();
        let read = Read::Exists {
            path: format!("{}/{predecessor}", self.dir),
            watch: true,
        };
        let xid = client.read(read, now);
        self.phase = Phase::Watching { xid, predecessor };
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;
    use crate::node::testing::Cluster;

    /// A contender: its session and its lock.
    struct Contender {
        id: u64,
        client: ClientSession,
        lock: Lock,
        events: Vec<LockEvent>,
    }

    impl Contender {
        fn new(cluster: &Cluster, id: u64, server: usize) -> Contender {
            let config = ClientConfig {
                session_timeout_ms: 500,
                request_timeout_ms: 200,
                ping_interval_ms: 100,
            };
            Contender {
                id,
                client: ClientSession::new(&[1, 2, 3], server, config, cluster.now),
                lock: Lock::new("/lock", &format!("c{id}")),
                events: Vec::new(),
            }
        }

        /// One round: the cluster carries the client's messages; the lock
        /// sees the client's events.
        fn step(&mut self, cluster: &mut Cluster) {
            cluster.drive(self.id, &mut self.client);
            for event in self.client.take_events() {
                if let Some(e) = self.lock.on_event(&mut self.client, &event, cluster.now) {
                    self.events.push(e);
                }
            }
        }
    }

    fn cluster_with_lock_dir() -> Cluster {
        let mut cluster = Cluster::new();
        cluster.connect(1, 99);
        let mkdir = crate::node::ClientMessage::Write {
            xid: 1,
            request: Request::Create {
                path: "/lock".into(),
                data: Vec::new(),
                ephemeral: false,
                sequential: false,
            },
        };
        cluster.send(1, 99, mkdir);
        cluster.received(1, 99);
        cluster
    }

    fn run(cluster: &mut Cluster, contenders: &mut [&mut Contender], rounds: usize) {
        for _ in 0..rounds {
            for c in contenders.iter_mut() {
                c.step(cluster);
            }
        }
    }

    #[test]
    fn the_lock_goes_to_one_contender_then_to_the_next_on_release() {
        let mut cluster = cluster_with_lock_dir();
        let mut a = Contender::new(&cluster, 10, 1);
        let mut b = Contender::new(&cluster, 20, 2);
        run(&mut cluster, &mut [&mut a, &mut b], 3);
        let now = cluster.now;
        a.lock.acquire(&mut a.client, now);
        run(&mut cluster, &mut [&mut a, &mut b], 5);
        let now = cluster.now;
        b.lock.acquire(&mut b.client, now);
        run(&mut cluster, &mut [&mut a, &mut b], 5);
        assert!(a.lock.is_held());
        assert!(!b.lock.is_held());
        let first = a.events.clone();
        let now = cluster.now;
        a.lock.release(&mut a.client, now);
        run(&mut cluster, &mut [&mut a, &mut b], 8);
        assert!(b.lock.is_held());
        let ([LockEvent::Acquired { token: ta }], [LockEvent::Acquired { token: tb }]) =
            (first.as_slice(), b.events.as_slice())
        else {
            panic!("a: {first:?}, b: {:?}", b.events);
        };
        assert!(tb > ta, "fencing tokens grow: {ta} then {tb}");
    }

    #[test]
    fn a_holder_that_falls_silent_loses_the_lock_to_the_next() {
        let mut cluster = cluster_with_lock_dir();
        let mut a = Contender::new(&cluster, 10, 1);
        let mut b = Contender::new(&cluster, 20, 2);
        run(&mut cluster, &mut [&mut a, &mut b], 3);
        let now = cluster.now;
        a.lock.acquire(&mut a.client, now);
        run(&mut cluster, &mut [&mut a, &mut b], 5);
        let now = cluster.now;
        b.lock.acquire(&mut b.client, now);
        run(&mut cluster, &mut [&mut a, &mut b], 5);
        assert!(a.lock.is_held());
        // A stops: no pings. Its session expires; B's watch fires.
        run(&mut cluster, &mut [&mut b], 40);
        assert!(b.lock.is_held());
        assert_eq!(a.events.len(), 1);
        // A hears of it once it talks again: its session is gone.
        run(&mut cluster, &mut [&mut a], 3);
        assert_eq!(a.events.last(), Some(&LockEvent::Lost));
        assert!(!a.lock.is_held());
    }

    #[test]
    fn sequence_numbers_are_read_from_the_names_ends() {
        assert_eq!(sequence("c1-lock-0000000042"), Some(42));
        assert_eq!(sequence("short"), None);
        assert_eq!(sequence("c1-lock-00000000x2"), None);
    }
}
