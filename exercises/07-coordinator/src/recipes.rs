//! Recipes: what applications build from znodes, sessions and watches.
//!
//! Three, each a small state machine fed with a [`ClientSession`]'s
//! events: a lock ([`Lock`]), an election ([`Election`]) and group
//! membership ([`Membership`]). Chapter 8 uses all three: brokers register
//! as members, race for the controller's node, and fence with its epoch.
//! In one thread they run on [`crate::local::LocalCluster`], in the
//! simulation on its sessions, and over TCP on a
//! [`crate::coordinator::SessionLink`].
//!
//! ## The lock
//!
//! ZooKeeper's recipe, with its refinements:
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
use crate::state::{Request, RequestError, Response};
use crate::tree::{ANY_VERSION, Change, TreeError, Version};

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
            // The read that sets the watch was lost with its connection:
            // whether the watch was set is not known, so look again. (A
            // watch that *was* set survives a move: the client library
            // sets it again on its next server, so `Waiting` needs nothing
            // when the session moves.)
            (ClientEvent::ConnectionLoss { xid }, Phase::Watching { xid: x, .. }) if *xid == x => {
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

/// What an [`Election`] tells its candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionEvent {
    /// This candidate leads, in this epoch (greater than every earlier
    /// leader's).
    Elected {
        /// The epoch it leads in.
        epoch: u64,
    },
    /// Someone else leads (their node's data says who).
    Follower {
        /// The leader's data, its id.
        leader: Vec<u8>,
    },
    /// This candidate's session expired: it no longer leads, if it did.
    Lost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Race {
    Idle,
    /// Creating the leader's node (request `xid`).
    Creating {
        xid: u64,
    },
    /// Reading who leads, with a watch (request `xid`).
    Reading {
        xid: u64,
    },
    /// Someone leads; waiting for their node to go.
    Following,
    /// Reading the epoch (request `xid`).
    ReadingEpoch {
        xid: u64,
    },
    /// Bumping the epoch from `epoch`, if its version is still the one
    /// read (request `xid`).
    Bumping {
        xid: u64,
        epoch: u64,
    },
    /// Leading, with the version of the epoch node that the bump left.
    Leading {
        epoch: u64,
        version: Version,
    },
}

/// An election, as Kafka's controller election on ZooKeeper worked: the
/// candidates race to create one ephemeral node (`/controller`), whose data
/// names the winner; the others watch it and race again when it goes. The
/// winner then bumps an epoch kept in a persistent node
/// (`/controller_epoch`) with a conditional write, so every leader's epoch
/// is greater than the one before, and anyone can refuse a deposed leader's
/// orders by their epoch.
#[derive(Debug)]
pub struct Election {
    node: String,
    epoch_node: String,
    id: Vec<u8>,
    race: Race,
}

impl Election {
    /// A candidate `id` for the leadership held by `node`, with the epoch
    /// in `epoch_node` (which must exist; empty data counts as epoch 0).
    pub fn new(node: &str, epoch_node: &str, id: &[u8]) -> Election {
        Election {
            node: node.to_string(),
            epoch_node: epoch_node.to_string(),
            id: id.to_vec(),
            race: Race::Idle,
        }
    }

    /// The epoch, while leading.
    pub fn leading(&self) -> Option<u64> {
        match self.race {
            Race::Leading { epoch, .. } => Some(epoch),
            _ => None,
        }
    }

    /// While leading, the version of the epoch node that this leader's bump
    /// left. A write made conditional on it (a `multi` that starts with
    /// [`Op::Check`](crate::tree::Op::Check) of the epoch node at this
    /// version) succeeds only while no later leader has bumped the epoch:
    /// the coordinator itself refuses a deposed leader's writes, however
    /// long it was paused. Kafka's controller has fenced its ZooKeeper
    /// writes this way since 2.2 (KAFKA-6082).
    pub fn epoch_version(&self) -> Option<Version> {
        match self.race {
            Race::Leading { version, .. } => Some(version),
            _ => None,
        }
    }

    /// Leaves the race, or the lead, without a word to the coordinator:
    /// for a candidate that has learned its lead is void (its epoch was
    /// bumped behind its back, or its node deleted). [`Election::run`]
    /// enters the race again; if the leader's node is still its own, it
    /// finds so and bumps the epoch anew.
    pub fn reset(&mut self) {
        self.race = Race::Idle;
    }

    /// Enters the race.
    pub fn run(&mut self, client: &mut ClientSession, now: Millis) {
        if self.race == Race::Idle {
            self.create(client, now);
        }
    }

    fn create(&mut self, client: &mut ClientSession, now: Millis) {
        let request = Request::Create {
            path: self.node.clone(),
            data: self.id.clone(),
            ephemeral: true,
            sequential: false,
        };
        let xid = client.write(request, now);
        self.race = Race::Creating { xid };
    }

    fn read_leader(&mut self, client: &mut ClientSession, now: Millis) {
        let read = Read::GetData {
            path: self.node.clone(),
            watch: true,
        };
        let xid = client.read(read, now);
        self.race = Race::Reading { xid };
    }

    fn read_epoch(&mut self, client: &mut ClientSession, now: Millis) {
        let read = Read::GetData {
            path: self.epoch_node.clone(),
            watch: false,
        };
        let xid = client.read(read, now);
        self.race = Race::ReadingEpoch { xid };
    }

    /// Feeds a client event to the election.
    pub fn on_event(
        &mut self,
        client: &mut ClientSession,
        event: &ClientEvent,
        now: Millis,
    ) -> Option<ElectionEvent> {
        match (event, self.race.clone()) {
            (ClientEvent::Expired, Race::Idle) => None,
            (ClientEvent::Expired, _) => {
                self.race = Race::Idle;
                Some(ElectionEvent::Lost)
            }
            (ClientEvent::Written { xid, result }, Race::Creating { xid: x }) if *xid == x => {
                match result {
                    Ok(_) => self.read_epoch(client, now),
                    // Someone leads (or our create is already there, from
                    // a lost attempt: reading tells).
                    Err(_) => self.read_leader(client, now),
                }
                None
            }
            (ClientEvent::ConnectionLoss { xid }, Race::Creating { xid: x })
            | (ClientEvent::ConnectionLoss { xid }, Race::Reading { xid: x })
                if *xid == x =>
            {
                self.read_leader(client, now);
                None
            }
            (ClientEvent::ReadDone { xid, result }, Race::Reading { xid: x }) if *xid == x => {
                match result {
                    Ok(ReadResult::Data(data, _)) if *data == self.id => {
                        // Ours, from a create whose answer was lost.
                        self.read_epoch(client, now);
                        None
                    }
                    Ok(ReadResult::Data(data, _)) => {
                        self.race = Race::Following;
                        Some(ElectionEvent::Follower {
                            leader: data.clone(),
                        })
                    }
                    // Gone between our create and our read: race again.
                    _ => {
                        self.create(client, now);
                        None
                    }
                }
            }
            (ClientEvent::Watch(Change::NodeDeleted(path)), Race::Following)
                if *path == self.node =>
            {
                self.create(client, now);
                None
            }
            (ClientEvent::Watch(change), Race::Following) if change.path() == self.node => {
                // Changed, not deleted: the watch was set again after a
                // move to another server, and meanwhile the node went and
                // another leader made it anew (ZooKeeper reports that as a
                // data change too). Read who leads now.
                self.read_leader(client, now);
                None
            }
            (ClientEvent::ReadDone { xid, result }, Race::ReadingEpoch { xid: x }) if *xid == x => {
                let Ok(ReadResult::Data(data, stat)) = result else {
                    self.race = Race::Idle;
                    return Some(ElectionEvent::Lost);
                };
                let epoch = std::str::from_utf8(data)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                let request = Request::SetData {
                    path: self.epoch_node.clone(),
                    data: (epoch + 1).to_string().into_bytes(),
                    version: stat.version,
                };
                let xid = client.write(request, now);
                self.race = Race::Bumping {
                    xid,
                    epoch: epoch + 1,
                };
                None
            }
            (ClientEvent::Written { xid, result }, Race::Bumping { xid: x, epoch })
                if *xid == x =>
            {
                match result {
                    Ok(Response::Set(stat)) => {
                        self.race = Race::Leading {
                            epoch,
                            version: stat.version,
                        };
                        Some(ElectionEvent::Elected { epoch })
                    }
                    // Someone bumped it meanwhile (a leader before us, not
                    // yet done): read it again and bump past it. (A set is
                    // always answered with `Set`; anything else is read as
                    // a failure too.)
                    _ => {
                        self.read_epoch(client, now);
                        None
                    }
                }
            }
            (ClientEvent::ConnectionLoss { xid }, Race::ReadingEpoch { xid: x })
            | (ClientEvent::ConnectionLoss { xid }, Race::Bumping { xid: x, .. })
                if *xid == x =>
            {
                // A lost bump may have happened: bumping again only makes
                // the epoch bigger, which is safe.
                self.read_epoch(client, now);
                None
            }
            _ => None,
        }
    }
}

/// What a [`Membership`] tells its member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    /// The group's members now, by name, sorted.
    Members(Vec<String>),
    /// This member's session expired: it is out of the group.
    Lost,
}

/// Group membership: each member is an ephemeral node under the group's
/// directory (Kafka's `/brokers/ids/N`), and each member watches the
/// directory's children to learn who joins and who leaves.
#[derive(Debug)]
pub struct Membership {
    dir: String,
    name: String,
    /// The request in flight: joining, or listing.
    pending: Option<u64>,
    joined: bool,
}

impl Membership {
    /// Member `name` of the group in `dir` (which must exist).
    pub fn new(dir: &str, name: &str) -> Membership {
        Membership {
            dir: dir.to_string(),
            name: name.to_string(),
            pending: None,
            joined: false,
        }
    }

    /// The member's node.
    fn node(&self) -> String {
        format!("{}/{}", self.dir, self.name)
    }

    /// Joins: creates the member's node. A name already taken by another
    /// session is refused (a second broker with the same id), as
    /// [`MembershipEvent::Lost`]. When the answer is lost, or says the name
    /// is taken, the node's owner tells whether the join happened: a name
    /// is not enough (Kafka's `checkedEphemeralCreate` checks the same).
    pub fn join(&mut self, client: &mut ClientSession, now: Millis) {
        let request = Request::Create {
            path: self.node(),
            data: Vec::new(),
            ephemeral: true,
            sequential: false,
        };
        self.pending = Some(client.write(request, now));
    }

    fn list(&mut self, client: &mut ClientSession, now: Millis) {
        let read = Read::GetChildren {
            path: self.dir.clone(),
            watch: true,
        };
        self.pending = Some(client.read(read, now));
    }

    /// Asks whose the member's node is, after a join whose answer was
    /// lost, or that found the name taken.
    fn check(&mut self, client: &mut ClientSession, now: Millis) {
        let read = Read::Exists {
            path: self.node(),
            watch: false,
        };
        self.pending = Some(client.read(read, now));
    }

    /// Feeds a client event to the membership.
    pub fn on_event(
        &mut self,
        client: &mut ClientSession,
        event: &ClientEvent,
        now: Millis,
    ) -> Option<MembershipEvent> {
        match event {
            ClientEvent::Expired => {
                self.joined = false;
                self.pending = None;
                Some(MembershipEvent::Lost)
            }
            ClientEvent::Written { xid, result } if self.pending == Some(*xid) => {
                self.pending = None;
                match result {
                    Ok(_) => {
                        self.joined = true;
                        self.list(client, now);
                        None
                    }
                    // Taken: by another member, or by this one, in a join
                    // that happened though its answer was lost on the way.
                    Err(RequestError::Tree(TreeError::NodeExists { .. })) => {
                        self.check(client, now);
                        None
                    }
                    Err(_) => Some(MembershipEvent::Lost),
                }
            }
            ClientEvent::ConnectionLoss { xid } if self.pending == Some(*xid) => {
                // A lost join may have happened or not: the node's owner
                // tells. (Its name alone would not: another member with
                // the same name, a second broker with the same id, may
                // hold it.)
                if self.joined {
                    self.list(client, now);
                } else {
                    self.check(client, now);
                }
                None
            }
            ClientEvent::ReadDone { xid, result } if self.pending == Some(*xid) => {
                self.pending = None;
                match result {
                    Ok(ReadResult::Stat(Some(stat)))
                        if Some(stat.ephemeral_owner) == client.session() =>
                    {
                        self.joined = true;
                        self.list(client, now);
                        None
                    }
                    // Another session's: the name is taken, as a join
                    // would have been told.
                    Ok(ReadResult::Stat(Some(_))) => Some(MembershipEvent::Lost),
                    Ok(ReadResult::Stat(None)) => {
                        self.join(client, now);
                        None
                    }
                    Ok(ReadResult::Children(names)) => {
                        Some(MembershipEvent::Members(names.clone()))
                    }
                    _ => None,
                }
            }
            ClientEvent::Watch(Change::NodeChildrenChanged(path)) if *path == self.dir => {
                self.list(client, now);
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;
    use crate::local::LocalCluster as Cluster;
    use crate::tree::{CreateMode, MultiError, Op};

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

    /// Two contenders, A (on the server at position `a_server` of its
    /// list) and B: A asks for the lock and gets it, then B asks and waits.
    fn a_holds_and_b_waits(a_server: usize) -> (Cluster, Contender, Contender) {
        let mut cluster = cluster_with_lock_dir();
        let mut a = Contender::new(&cluster, 10, a_server);
        let mut b = Contender::new(&cluster, 20, 2);
        run(&mut cluster, &mut [&mut a, &mut b], 3);
        let now = cluster.now;
        a.lock.acquire(&mut a.client, now);
        run(&mut cluster, &mut [&mut a, &mut b], 5);
        let now = cluster.now;
        b.lock.acquire(&mut b.client, now);
        run(&mut cluster, &mut [&mut a, &mut b], 5);
        (cluster, a, b)
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
        let (mut cluster, mut a, mut b) = a_holds_and_b_waits(1);
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
        let (mut cluster, mut a, mut b) = a_holds_and_b_waits(1);
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
    fn a_waiting_contender_keeps_its_watch_when_its_session_moves() {
        let (mut cluster, mut a, mut b) = a_holds_and_b_waits(0);
        assert!(a.lock.is_held() && !b.lock.is_held());
        // Server 3 falls out of B's reach: a `sync` there goes unanswered
        // and B's session moves to server 1, taking its watch along.
        let now = cluster.now;
        b.client.write(Request::Sync, now);
        let mut heard = Vec::new();
        for _ in 0..20 {
            a.step(&mut cluster);
            for (server, msg) in b.client.take_sends() {
                if server != 3 {
                    let now = cluster.now;
                    cluster.server(server).on_client(20, msg, now);
                    cluster.settle();
                }
            }
            cluster.pass(20);
            let mine: Vec<_>;
            (mine, cluster.inbox) = std::mem::take(&mut cluster.inbox)
                .into_iter()
                .partition(|(_, c, _)| *c == 20);
            for (server, _, msg) in mine {
                if server != 3 {
                    b.client.on_message(server, msg, cluster.now);
                }
            }
            b.client.on_tick(cluster.now);
            for event in b.client.take_events() {
                heard.push(event.clone());
                if let Some(e) = b.lock.on_event(&mut b.client, &event, cluster.now) {
                    b.events.push(e);
                }
            }
        }
        assert_eq!(b.client.server(), 1);
        assert!(!b.lock.is_held());
        // A lets go: the watch set again on server 1 tells B, and B takes
        // the lock without having read anything when it moved.
        let now = cluster.now;
        a.lock.release(&mut a.client, now);
        run(&mut cluster, &mut [&mut a], 2);
        let before = heard.len();
        for _ in 0..8 {
            cluster.drive(20, &mut b.client);
            for event in b.client.take_events() {
                heard.push(event.clone());
                if let Some(e) = b.lock.on_event(&mut b.client, &event, cluster.now) {
                    b.events.push(e);
                }
            }
        }
        assert!(b.lock.is_held(), "{heard:?}");
        assert!(
            matches!(&heard[before], ClientEvent::Watch(Change::NodeDeleted(path)) if path.starts_with("/lock/c10")),
            "{:?}",
            &heard[before..]
        );
    }

    fn mkdir(cluster: &mut Cluster, xid: u64, path: &str) {
        let mkdir = crate::node::ClientMessage::Write {
            xid,
            request: Request::Create {
                path: path.into(),
                data: Vec::new(),
                ephemeral: false,
                sequential: false,
            },
        };
        cluster.send(1, 99, mkdir);
        cluster.received(1, 99);
    }

    /// One round of a candidate: its session's messages, then its events.
    fn elect_step(
        cluster: &mut Cluster,
        c: &mut Contender,
        election: &mut Election,
        heard: &mut Vec<ElectionEvent>,
    ) {
        cluster.drive(c.id, &mut c.client);
        for event in c.client.take_events() {
            heard.extend(election.on_event(&mut c.client, &event, cluster.now));
        }
    }

    /// A candidate and its election, and what it heard.
    struct Candidate {
        contender: Contender,
        election: Election,
        heard: Vec<ElectionEvent>,
    }

    impl Candidate {
        fn step(&mut self, cluster: &mut Cluster) {
            let c = &mut self.contender;
            elect_step(cluster, c, &mut self.election, &mut self.heard);
        }
    }

    /// A runs for `/controller` first and leads; B runs later and follows.
    fn a_leads_and_b_follows() -> (Cluster, Candidate, Candidate) {
        let mut cluster = cluster_with_lock_dir();
        mkdir(&mut cluster, 2, "/controller_epoch");
        let candidate = |id, server, name: &[u8]| Candidate {
            contender: Contender::new(&cluster, id, server),
            election: Election::new("/controller", "/controller_epoch", name),
            heard: Vec::new(),
        };
        let (mut a, mut b) = (candidate(10, 1, b"a"), candidate(20, 2, b"b"));
        for round in 0..20 {
            if round == 3 {
                a.election.run(&mut a.contender.client, cluster.now);
            }
            if round == 10 {
                b.election.run(&mut b.contender.client, cluster.now);
            }
            a.step(&mut cluster);
            b.step(&mut cluster);
        }
        (cluster, a, b)
    }

    #[test]
    fn an_election_has_one_leader_and_the_next_gets_a_greater_epoch() {
        let (mut cluster, a, mut b) = a_leads_and_b_follows();
        assert_eq!(a.election.leading(), Some(1));
        // A falls silent: B is elected when A's session expires.
        for _ in 0..40 {
            b.step(&mut cluster);
        }
        let (ea, heard_a) = (a.election, a.heard);
        let Candidate {
            contender: mut b,
            election: eb,
            heard: heard_b,
        } = b;
        assert_eq!(heard_a, vec![ElectionEvent::Elected { epoch: 1 }]);
        assert_eq!(
            heard_b,
            vec![
                ElectionEvent::Follower {
                    leader: b"a".to_vec()
                },
                ElectionEvent::Elected { epoch: 2 }
            ]
        );

        // Fencing in the coordinator: a write checked against A's epoch
        // version (A never heard it lost) fails; against B's, it goes in.
        let (stale, current) = (ea.epoch_version().unwrap(), eb.epoch_version().unwrap());
        assert!(current > stale);
        assert_eq!(eb.epoch_version(), Some(2), "created at 0, bumped twice");
        let fenced_write = |version: Version| {
            Request::Multi(vec![
                Op::Check {
                    path: "/controller_epoch".into(),
                    version,
                },
                Op::Create {
                    path: "/decision".into(),
                    data: Vec::new(),
                    mode: CreateMode::Persistent,
                },
            ])
        };
        let results = |b: &mut Contender, cluster: &mut Cluster, request: Request| {
            let xid = b.client.write(request, cluster.now);
            for _ in 0..5 {
                cluster.drive(b.id, &mut b.client);
            }
            let events = b.client.take_events().into_iter();
            let answers = events.filter_map(|event| match event {
                ClientEvent::Written { xid: x, result } if x == xid => Some(result),
                _ => None,
            });
            answers.collect::<Vec<_>>()
        };
        let refused = results(&mut b, &mut cluster, fenced_write(stale));
        assert!(
            matches!(
                &refused[..],
                [Err(RequestError::Multi(MultiError {
                    index: 0,
                    error: TreeError::BadVersion { .. }
                }))]
            ),
            "{refused:?}"
        );
        let accepted = results(&mut b, &mut cluster, fenced_write(current));
        assert!(
            matches!(&accepted[..], [Ok(Response::Multi(_))]),
            "{accepted:?}"
        );
    }

    #[test]
    fn a_follower_told_the_leaders_node_changed_reads_who_leads_again() {
        let (mut cluster, mut a, mut b) = a_leads_and_b_follows();
        let follower = ElectionEvent::Follower {
            leader: b"a".to_vec(),
        };
        assert_eq!(b.heard, vec![follower.clone()]);
        // What a moved session hears when the node was made anew while it
        // was away: a data change. B reads who leads, and watches again.
        let changed = ClientEvent::Watch(Change::NodeDataChanged("/controller".into()));
        let now = cluster.now;
        assert_eq!(
            b.election.on_event(&mut b.contender.client, &changed, now),
            None
        );
        for _ in 0..3 {
            a.step(&mut cluster);
            b.step(&mut cluster);
        }
        assert_eq!(b.heard, vec![follower.clone(), follower]);
    }

    #[test]
    fn members_see_each_other_join_and_leave() {
        let mut cluster = cluster_with_lock_dir();
        mkdir(&mut cluster, 2, "/ids");
        let mut a = Contender::new(&cluster, 10, 1);
        let mut b = Contender::new(&cluster, 20, 2);
        let mut ma = Membership::new("/ids", "1");
        let mut mb = Membership::new("/ids", "2");
        let mut seen_a = Vec::new();
        let mut seen_b = Vec::new();
        for round in 0..50 {
            if round == 3 {
                ma.join(&mut a.client, cluster.now);
            }
            if round == 10 {
                mb.join(&mut b.client, cluster.now);
            }
            // A falls silent after round 20.
            if round < 20 {
                cluster.drive(a.id, &mut a.client);
                for event in a.client.take_events() {
                    seen_a.extend(ma.on_event(&mut a.client, &event, cluster.now));
                }
            }
            cluster.drive(b.id, &mut b.client);
            for event in b.client.take_events() {
                seen_b.extend(mb.on_event(&mut b.client, &event, cluster.now));
            }
        }
        let members = |names: &[&str]| {
            MembershipEvent::Members(names.iter().map(|s| s.to_string()).collect())
        };
        assert_eq!(seen_a, vec![members(&["1"]), members(&["1", "2"])]);
        assert_eq!(seen_b, vec![members(&["1", "2"]), members(&["2"])]);
    }

    #[test]
    fn a_member_whose_join_answer_was_lost_checks_whose_node_it_is() {
        let mut cluster = cluster_with_lock_dir();
        mkdir(&mut cluster, 2, "/ids");
        let mut a = Contender::new(&cluster, 10, 1);
        let mut b = Contender::new(&cluster, 20, 2);
        let mut c = Contender::new(&cluster, 30, 3);
        // B asks for A's name: a second broker with the same id.
        let mut ma = Membership::new("/ids", "1");
        let mut mb = Membership::new("/ids", "1");
        let mut mc = Membership::new("/ids", "3");
        let (mut seen_a, mut seen_b, mut seen_c) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..40 {
            if round == 3 {
                ma.join(&mut a.client, cluster.now);
            }
            if round == 10 {
                mb.join(&mut b.client, cluster.now);
                mc.join(&mut c.client, cluster.now);
            }
            for (contender, membership, seen) in [
                (&mut a, &mut ma, &mut seen_a),
                (&mut b, &mut mb, &mut seen_b),
                (&mut c, &mut mc, &mut seen_c),
            ] {
                // B's and C's joins are made, but their answers are lost
                // on the way back.
                let joining = membership
                    .pending
                    .filter(|_| round >= 10 && !membership.joined);
                cluster.drive(contender.id, &mut contender.client);
                for event in contender.client.take_events() {
                    let event = match event {
                        ClientEvent::Written { xid, .. }
                            if contender.id != 10 && joining == Some(xid) =>
                        {
                            ClientEvent::ConnectionLoss { xid }
                        }
                        event => event,
                    };
                    seen.extend(membership.on_event(&mut contender.client, &event, cluster.now));
                }
            }
        }
        let members = |names: &[&str]| {
            MembershipEvent::Members(names.iter().map(|s| s.to_string()).collect())
        };
        // B never takes A's node for its own; C finds its own.
        assert_eq!(seen_b, vec![MembershipEvent::Lost]);
        assert!(!mb.joined);
        assert_eq!(seen_c, vec![members(&["1", "3"])]);
        assert_eq!(seen_a.last(), Some(&members(&["1", "3"])));
    }

    #[test]
    fn sequence_numbers_are_read_from_the_names_ends() {
        assert_eq!(sequence("c1-lock-0000000042"), Some(42));
        assert_eq!(sequence("short"), None);
        assert_eq!(sequence("c1-lock-00000000x2"), None);
    }
}
