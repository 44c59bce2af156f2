//! Sans-IO. One broker's part in running the cluster: registering, racing
//! to be the controller, and, while it is, deciding and storing.
//!
//! Every broker runs a [`ClusterNode`] on its own coordinator session:
//!
//! 1. It creates the cluster's directories if they are missing, then
//!    registers: an ephemeral `/brokers/ids/<id>` (chapter 7's
//!    [`Membership`]). A second broker with the same id is refused. The
//!    node goes with the broker's session: **a broker is alive exactly as
//!    long as its coordinator session**.
//! 2. Registered, it races for `/controller` (chapter 7's [`Election`]).
//!    The winner bumps `/controller_epoch`. Every other broker learns who
//!    won from the node's data ([`ClusterEvent::ControllerIs`]) and races
//!    again when it goes.
//! 3. The winner loads every partition's state from the coordinator into
//!    chapter 6's [`SimpleController`], which keeps making the decisions:
//!    who leads, who is in sync. What changes here is *where decisions
//!    go*: a decision exists only once the coordinator has stored it. Each
//!    write is one `multi` that first checks `/controller_epoch` still has
//!    the version this controller's bump left, so a controller deposed
//!    while it was paused cannot overwrite anything (Kafka has fenced its
//!    ZooKeeper writes so since 2.2, KAFKA-6082).
//! 4. Brokers learn the state by heartbeating the controller, and are
//!    answered with what is *stored*, never with a decision still on its
//!    way: a leader that shrank its ISR on the strength of an answer the
//!    coordinator then lost could acknowledge writes that the next
//!    controller does not know to protect. Answers carry the controller's
//!    epoch; a broker obeys no epoch lower than one it has seen
//!    ([`crate::fence::ControllerFence`]).
//! 5. When a broker's session ends, its node goes; every broker's watch on
//!    `/brokers/ids` fires, and the controller fences it: its partitions
//!    get new leaders from their ISRs, with new leader epochs.

use std::collections::{BTreeMap, BTreeSet};

use ch03_partitions::TopicPartition;
use ch04_network::error::ErrorCode;
use ch06_replication::controller::{Controller, ControllerConfig, SimpleController};
use ch06_replication::protocol::{
    AlterPartitionRequest, AlterPartitionResponse, BrokerId, HeartbeatRequest, HeartbeatResponse,
    PartitionState,
};
use ch06_replication::sim::{Millis, NodeId};
use ch07_coordinator::client::{ClientConfig, ClientEvent, ClientSession};
use ch07_coordinator::node::{Read, ReadResult};
use ch07_coordinator::recipes::{Election, ElectionEvent, Membership, MembershipEvent};
use ch07_coordinator::state::{Request, RequestError, Response};
use ch07_coordinator::tree::{
    ANY_VERSION, Change, CreateMode, MultiError, Op, OpResult, TreeError, Version,
};

use crate::state::{
    BROKER_IDS, CONTROLLER, CONTROLLER_EPOCH, ControllerInfo, DIRECTORIES, PARTITIONS,
    PartitionRecord, StateError, partition_of, partition_path,
};

/// A node's settings.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// The coordinator session's timing. Its `session_timeout_ms` is how
    /// long a silent broker (or controller) stays alive to the cluster:
    /// Kafka's `zookeeper.session.timeout.ms` (18 s by default).
    pub client: ClientConfig,
    /// The decisions' settings (min ISR, unclean election). Its session
    /// timeout is not used: liveness is the coordinator session's.
    pub controller: ControllerConfig,
}

/// The number of a request whose answer comes later, as a
/// [`ClusterEvent::Answer`].
pub type Ticket = u64;

/// A controller's answer to a request that changes the cluster's state,
/// given once the change is stored (or refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// To [`ClusterNode::alter_partition`]: the partition's state as
    /// stored.
    AlterPartition(AlterPartitionResponse),
    /// To [`ClusterNode::create_topic`].
    CreateTopic(ErrorCode),
    /// To [`ClusterNode::delete_topic`].
    DeleteTopic(ErrorCode),
    /// To [`ClusterNode::controlled_shutdown`]: once the broker leads
    /// nothing and is in no ISR, it may stop.
    ControlledShutdown(ErrorCode),
    /// To [`ClusterNode::elect_preferred_leaders`]: the partitions whose
    /// leadership moved back to their preferred replica.
    PreferredLeaders(Result<Vec<TopicPartition>, ErrorCode>),
}

/// What happened, for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// The broker's node is in `/brokers/ids`: it is part of the cluster.
    Registered,
    /// Another session holds this broker's id: a second broker with the
    /// same id, or this broker's previous run, whose session has not ended
    /// yet. [`ClusterNode::on_tick`] tries again every half session
    /// timeout; a real duplicate never gets in.
    RegistrationRefused,
    /// The live brokers, by id.
    Members(Vec<BrokerId>),
    /// Another broker is the controller.
    ControllerIs(ControllerInfo),
    /// This broker is the controller, in this epoch.
    Elected {
        /// Its controller epoch, greater than every earlier one's.
        epoch: u64,
    },
    /// The newly elected controller has read the cluster's state.
    Loaded {
        /// Its epoch.
        epoch: u64,
        /// How many partitions it found.
        partitions: usize,
    },
    /// Decisions are stored in the coordinator.
    Stored {
        /// The epoch of the controller that stored them.
        epoch: u64,
        /// The partitions whose state changed.
        partitions: Vec<TopicPartition>,
    },
    /// This broker no longer is the controller: another has bumped the
    /// epoch, or its session ended.
    Resigned {
        /// The epoch it led in.
        epoch: u64,
    },
    /// The broker's coordinator session expired: it left the cluster, and
    /// registers again with a new session.
    SessionExpired,
    /// A node in the coordinator this code cannot read; the controller
    /// leaves it as it is.
    Unreadable(StateError),
    /// The answer to an earlier request.
    Answer {
        /// The request's ticket.
        ticket: Ticket,
        /// The answer.
        answer: Answer,
    },
}

/// A heartbeat's answer from the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerHeartbeat {
    /// The controller's epoch: a broker refuses answers older than the
    /// newest it has obeyed.
    pub controller_epoch: u64,
    /// The broker's partitions, as stored, and the live brokers.
    pub response: HeartbeatResponse,
}

/// A partition's state as the coordinator has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// The state.
    pub state: PartitionState,
    /// Which run of each ISR member the ISR means
    /// ([`PartitionRecord::incarnations`]).
    pub incarnations: Vec<(BrokerId, u64)>,
    /// The version of its node: the next write must name it.
    pub version: Version,
}

/// One partition's part of a write: its new record, or `None` to delete
/// it.
pub type PartitionChange = (TopicPartition, Option<PartitionRecord>);

/// The most partitions one write stores: a `multi` is one request, and a
/// request must fit in a frame (chapter 7's `MAX_FRAME`, 2 MiB), at a few
/// hundred bytes a partition.
pub const MAX_PARTITIONS_PER_WRITE: usize = 1_000;

/// Reading the cluster's state from the coordinator.
#[derive(Debug)]
enum Load {
    /// Listing the partitions (request `xid`).
    Listing { xid: u64 },
    /// Reading each (request number → node name).
    Reading {
        pending: BTreeMap<u64, String>,
        found: BTreeMap<TopicPartition, StoredState>,
    },
    /// A listing failed: list again from this time on.
    Retry { at: Millis },
    /// Done: `stored` is what the coordinator has.
    Done,
}

/// When a waiting answer can be given.
#[derive(Debug)]
enum Until {
    /// Once each partition's stored epoch has reached the one beside it.
    Stored(Vec<(TopicPartition, u32)>),
    /// Once every partition of a new topic is stored.
    Created(Vec<TopicPartition>),
    /// Once every partition of a deleted topic is gone.
    Deleted(Vec<TopicPartition>),
}

/// What a node keeps while it is the controller.
#[derive(Debug)]
struct Leadership {
    epoch: u64,
    /// The version of `/controller_epoch` that this controller's bump
    /// left: every write checks it.
    epoch_version: Version,
    /// The decisions, from the first load on.
    decided: Option<SimpleController>,
    /// What the coordinator has, as far as this controller knows.
    stored: BTreeMap<TopicPartition, StoredState>,
    /// Partition nodes that could not be read: never written, and no topic
    /// of the same name can be created.
    unreadable: BTreeSet<String>,
    load: Load,
    /// The write in flight (request number, and what it stores, `None`
    /// for a partition it deletes): one at a time, each with every
    /// decision made since the last.
    write: Option<(u64, Vec<PartitionChange>)>,
    waiting: Vec<(Ticket, Until, Answer)>,
    /// Brokers in controlled shutdown: answered, but not counted alive,
    /// until they leave.
    shutting_down: BTreeSet<BrokerId>,
    /// Partitions to write again though their state has not changed: a
    /// member's run, unknown when their record was written, is known now.
    rewrite: BTreeSet<TopicPartition>,
}

/// Setting up: creating the cluster's directories, then registering.
#[derive(Debug, PartialEq, Eq)]
enum Setup {
    /// Creating the directories (request number → directory).
    Creating(BTreeMap<u64, &'static str>),
    /// Joining `/brokers/ids`.
    Joining,
    /// Registered and in the controller's race.
    Racing,
    /// Refused: the id is taken. Tried again from this time on, since the
    /// node may be this broker's own, left by its previous run, whose
    /// session has yet to end.
    Refused { retry_at: Millis },
}

/// One broker's part in the cluster: its registration, its candidacy,
/// and, while elected, the controller. Sans-IO: the owner carries the
/// session's messages ([`ClusterNode::client`]) and calls
/// [`ClusterNode::poll`] after each delivery.
#[derive(Debug)]
pub struct ClusterNode {
    id: BrokerId,
    info: ControllerInfo,
    servers: Vec<NodeId>,
    first: usize,
    config: ClusterConfig,
    client: ClientSession,
    setup: Setup,
    membership: Membership,
    election: Election,
    /// The live brokers, once listed.
    members: Option<BTreeSet<BrokerId>>,
    /// The controller, as last heard.
    controller: Option<ControllerInfo>,
    leading: Option<Leadership>,
    next_ticket: Ticket,
    events: Vec<ClusterEvent>,
}

impl ClusterNode {
    /// Broker `id`, reachable at `address`, with a session on the
    /// coordinator servers `servers` (the first tried: `servers[first]`).
    pub fn new(
        id: BrokerId,
        address: &str,
        servers: &[NodeId],
        first: usize,
        config: ClusterConfig,
        now: Millis,
    ) -> ClusterNode {
        let info = ControllerInfo {
            broker_id: id,
            address: address.to_string(),
        };
        let mut node = ClusterNode {
            id,
            election: Election::new(CONTROLLER, CONTROLLER_EPOCH, &info.encode()),
            membership: Membership::new(BROKER_IDS, &id.to_string()),
            info,
            servers: servers.to_vec(),
            first,
            client: ClientSession::new(servers, first, config.client.clone(), now),
            config,
            setup: Setup::Joining,
            members: None,
            controller: None,
            leading: None,
            next_ticket: 0,
            events: Vec::new(),
        };
        node.create_directories(now);
        node
    }

    /// The broker's id.
    pub fn id(&self) -> BrokerId {
        self.id
    }

    /// The coordinator session: its owner carries its messages.
    pub fn client(&mut self) -> &mut ClientSession {
        &mut self.client
    }

    /// The controller epoch, while this broker is the controller and has
    /// loaded the cluster's state.
    pub fn leading(&self) -> Option<u64> {
        let leadership = self.leading.as_ref()?;
        leadership.decided.as_ref().map(|_| leadership.epoch)
    }

    /// Who the controller is, as last heard (this broker, while it leads).
    pub fn controller(&self) -> Option<&ControllerInfo> {
        self.controller.as_ref()
    }

    /// The live brokers, once listed.
    pub fn members(&self) -> Option<&BTreeSet<BrokerId>> {
        self.members.as_ref()
    }

    /// While leading and loaded: the brokers alive to the controller, with
    /// their addresses (none otherwise).
    pub fn live_brokers(&self) -> Vec<(BrokerId, String)> {
        let leadership = self.leading.as_ref();
        let decided = leadership.and_then(|l| l.decided.as_ref());
        decided
            .map(SimpleController::broker_addresses)
            .unwrap_or_default()
    }

    /// While leading: every partition's state as the coordinator has it.
    pub fn stored(&self) -> Option<&BTreeMap<TopicPartition, StoredState>> {
        Some(&self.leading.as_ref()?.stored)
    }

    /// How many requests wait for their change to be stored, while this
    /// broker leads: none, once the cluster is quiet.
    pub fn waiting(&self) -> usize {
        self.leading.as_ref().map_or(0, |l| l.waiting.len())
    }

    /// Time passes: the session's timers, and another try at registering
    /// if the id was taken.
    pub fn on_tick(&mut self, now: Millis) {
        self.client.on_tick(now);
        if let Setup::Refused { retry_at } = self.setup
            && now >= retry_at
        {
            self.setup = Setup::Joining;
            self.membership.join(&mut self.client, now);
        }
        if let Some(Leadership {
            load: Load::Retry { at },
            ..
        }) = self.leading
            && now >= at
        {
            self.start_load(now);
        }
    }

    fn create_directories(&mut self, now: Millis) {
        let pending = DIRECTORIES
            .iter()
            .map(|dir| (self.client.write(mkdir(dir), now), *dir))
            .collect();
        self.setup = Setup::Creating(pending);
    }

    /// Takes the session's events and acts on them; returns what the
    /// broker must know.
    pub fn poll(&mut self, now: Millis) -> Vec<ClusterEvent> {
        loop {
            let events = self.client.take_events();
            if events.is_empty() {
                break;
            }
            for event in &events {
                self.on_client_event(event, now);
                if *event == ClientEvent::Expired {
                    // The rest came from the old session (failures of
                    // requests made meanwhile): not for the new one.
                    break;
                }
            }
        }
        std::mem::take(&mut self.events)
    }

    fn on_client_event(&mut self, event: &ClientEvent, now: Millis) {
        if let Setup::Creating(pending) = &mut self.setup {
            match event {
                ClientEvent::Written { xid, result } => {
                    if let Some(dir) = pending.remove(xid) {
                        let exists = matches!(
                            result,
                            Ok(_) | Err(RequestError::Tree(TreeError::NodeExists { .. }))
                        );
                        let expired = matches!(result, Err(RequestError::SessionExpired { .. }));
                        if !exists && !expired {
                            pending.insert(self.client.write(mkdir(dir), now), dir);
                        }
                    }
                }
                ClientEvent::ConnectionLoss { xid } => {
                    // Creating is idempotent here: try again.
                    if let Some(dir) = pending.remove(xid) {
                        pending.insert(self.client.write(mkdir(dir), now), dir);
                    }
                }
                _ => {}
            }
            if pending.is_empty() {
                self.setup = Setup::Joining;
                self.membership.join(&mut self.client, now);
            }
        }
        match self.membership.on_event(&mut self.client, event, now) {
            Some(MembershipEvent::Members(names)) => self.on_members(&names, now),
            Some(MembershipEvent::Lost) if !expired(event) => {
                let retry_at = now + self.config.client.session_timeout_ms / 2;
                self.setup = Setup::Refused { retry_at };
                self.events.push(ClusterEvent::RegistrationRefused);
            }
            _ => {}
        }
        match self.election.on_event(&mut self.client, event, now) {
            Some(ElectionEvent::Elected { epoch }) => {
                self.controller = Some(self.info.clone());
                self.events.push(ClusterEvent::Elected { epoch });
                let epoch_version = self.election.epoch_version().expect("leading");
                self.leading = Some(Leadership {
                    epoch,
                    epoch_version,
                    decided: None,
                    stored: BTreeMap::new(),
                    unreadable: BTreeSet::new(),
                    load: Load::Done,
                    write: None,
                    waiting: Vec::new(),
                    shutting_down: BTreeSet::new(),
                    rewrite: BTreeSet::new(),
                });
                // Told if `/controller` goes (an operator deletes it to
                // force an election): then this broker no longer leads.
                let watch = Read::Exists {
                    path: CONTROLLER.to_string(),
                    watch: true,
                };
                self.client.read(watch, now);
                self.start_load(now);
            }
            Some(ElectionEvent::Follower { leader }) => match ControllerInfo::decode(&leader) {
                Ok(info) => {
                    self.controller = Some(info.clone());
                    self.events.push(ClusterEvent::ControllerIs(info));
                }
                Err(e) => self.events.push(ClusterEvent::Unreadable(e)),
            },
            Some(ElectionEvent::Lost) if !expired(event) => self.step_down(now),
            Some(ElectionEvent::Lost) | None => {}
        }
        if let ClientEvent::Watch(Change::NodeDeleted(path)) = event
            && path == CONTROLLER
            && self.leading.is_some()
        {
            self.step_down(now);
        }
        if self.leading.is_some() {
            self.on_leader_event(event, now);
        }
        if *event == ClientEvent::Expired {
            self.resign();
            self.controller = None;
            self.members = None;
            self.events.push(ClusterEvent::SessionExpired);
            // A new session, and everything again: directories (they are
            // there, but that is cheap to learn), registration, the race.
            self.client =
                ClientSession::new(&self.servers, self.first, self.config.client.clone(), now);
            self.create_directories(now);
        }
    }

    fn on_members(&mut self, names: &[String], now: Millis) {
        let members: BTreeSet<BrokerId> = names.iter().filter_map(|n| n.parse().ok()).collect();
        if self.setup == Setup::Joining && members.contains(&self.id) {
            self.setup = Setup::Racing;
            self.events.push(ClusterEvent::Registered);
            self.election.run(&mut self.client, now);
        }
        self.events
            .push(ClusterEvent::Members(members.iter().copied().collect()));
        if let Some(leadership) = &mut self.leading {
            leadership.shutting_down.retain(|id| members.contains(id));
        }
        self.members = Some(members);
        self.fence_departed();
        self.sync(now);
    }

    /// While leading and loaded: fences every broker that has left.
    fn fence_departed(&mut self) {
        let (Some(leadership), Some(members)) = (&mut self.leading, &self.members) else {
            return;
        };
        if let Some(decided) = &mut leadership.decided {
            fence_departed(decided, members);
        }
    }

    /// Drops the controller's state and fails what waited on it.
    fn resign(&mut self) {
        let Some(leadership) = self.leading.take() else {
            return;
        };
        for (ticket, _, answer) in leadership.waiting {
            let answer = match answer {
                Answer::AlterPartition(mut response) => {
                    // With no state: the one it would carry was decided,
                    // never stored, and a leader adopts what it is sent.
                    response.error = ErrorCode::NotController;
                    response.state = None;
                    Answer::AlterPartition(response)
                }
                Answer::CreateTopic(_) => Answer::CreateTopic(ErrorCode::NotController),
                Answer::DeleteTopic(_) => Answer::DeleteTopic(ErrorCode::NotController),
                Answer::ControlledShutdown(_) => {
                    Answer::ControlledShutdown(ErrorCode::NotController)
                }
                Answer::PreferredLeaders(_) => {
                    Answer::PreferredLeaders(Err(ErrorCode::NotController))
                }
            };
            self.events.push(ClusterEvent::Answer { ticket, answer });
        }
        if self.controller.as_ref() == Some(&self.info) {
            self.controller = None;
        }
        self.events.push(ClusterEvent::Resigned {
            epoch: leadership.epoch,
        });
    }

    /// Stops leading, keeping the session, and races again: for a
    /// controller whose lead turned out void while its session lives (its
    /// epoch bumped behind its back, its node deleted). If `/controller`
    /// is still its own, it wins again, with a new epoch.
    fn step_down(&mut self, now: Millis) {
        self.resign();
        self.election.reset();
        if self.setup == Setup::Racing {
            self.election.run(&mut self.client, now);
        }
    }

    /// Reads the partitions' states from the coordinator: at election,
    /// and again when a write's fate is unknown.
    fn start_load(&mut self, now: Millis) {
        let Some(leadership) = &mut self.leading else {
            return;
        };
        let read = Read::GetChildren {
            path: PARTITIONS.to_string(),
            watch: false,
        };
        leadership.load = Load::Listing {
            xid: self.client.read(read, now),
        };
    }

    fn on_leader_event(&mut self, event: &ClientEvent, now: Millis) {
        let leadership = self.leading.as_mut().expect("leading");
        match (event, &mut leadership.load) {
            (ClientEvent::ReadDone { xid, result }, Load::Listing { xid: x }) if xid == x => {
                let Ok(ReadResult::Children(names)) = result else {
                    // Not there (yet)? Try again in a while, not at once.
                    let at = now + self.config.client.request_timeout_ms;
                    leadership.load = Load::Retry { at };
                    return;
                };
                let pending = names
                    .iter()
                    .map(|name| {
                        let read = Read::GetData {
                            path: format!("{PARTITIONS}/{name}"),
                            watch: false,
                        };
                        (self.client.read(read, now), name.clone())
                    })
                    .collect();
                leadership.load = Load::Reading {
                    pending,
                    found: BTreeMap::new(),
                };
                // Read anew: a node repaired since the last load counts.
                leadership.unreadable.clear();
                self.finish_load(now);
            }
            (ClientEvent::ReadDone { xid, result }, Load::Reading { pending, found }) => {
                let Some(name) = pending.remove(xid) else {
                    return;
                };
                let path = format!("{PARTITIONS}/{name}");
                let read = match result {
                    Ok(ReadResult::Data(bytes, stat)) => partition_of(&name).and_then(|tp| {
                        let record = PartitionRecord::decode(&path, bytes)?;
                        Ok((tp, record, stat.version))
                    }),
                    // Gone since the listing: nothing to load.
                    _ => return self.finish_load(now),
                };
                match read {
                    Ok((tp, record, version)) => {
                        let stored = StoredState {
                            state: record.state,
                            incarnations: record.incarnations,
                            version,
                        };
                        found.insert(tp, stored);
                    }
                    Err(e) => {
                        leadership.unreadable.insert(name);
                        self.events.push(ClusterEvent::Unreadable(e));
                    }
                }
                self.finish_load(now);
            }
            (ClientEvent::ConnectionLoss { xid }, Load::Listing { xid: x }) if xid == x => {
                self.start_load(now);
            }
            (ClientEvent::ConnectionLoss { xid }, Load::Reading { pending, .. })
                if pending.contains_key(xid) =>
            {
                self.start_load(now);
            }
            (ClientEvent::Written { xid, result }, _)
                if leadership.write.as_ref().is_some_and(|(x, _)| x == xid) =>
            {
                let (_, changes) = leadership.write.take().expect("in flight");
                self.on_written(result, changes, now);
            }
            (ClientEvent::ConnectionLoss { xid }, _)
                if leadership.write.as_ref().is_some_and(|(x, _)| x == xid) =>
            {
                // It may or may not have happened: read what is stored.
                leadership.write = None;
                self.start_load(now);
            }
            _ => {}
        }
    }

    /// Once every partition is read: the first time, the decisions start
    /// from it; after that, it only corrects what is known to be stored.
    fn finish_load(&mut self, now: Millis) {
        let leadership = self.leading.as_mut().expect("leading");
        let Load::Reading { pending, found } = &mut leadership.load else {
            return;
        };
        if !pending.is_empty() {
            return;
        }
        let found = std::mem::take(found);
        if leadership.decided.is_some() {
            // A reload: a write whose answer was lost may have been
            // stored after all. Report what is stored and was not known.
            let partitions: Vec<TopicPartition> = found
                .iter()
                .filter(|(tp, s)| leadership.stored.get(*tp).map(|x| &x.state) != Some(&s.state))
                .map(|(tp, _)| tp.clone())
                .collect();
            if !partitions.is_empty() {
                let epoch = leadership.epoch;
                self.events.push(ClusterEvent::Stored { epoch, partitions });
            }
        }
        leadership.stored = found;
        leadership.load = Load::Done;
        // A reload after a write whose answer was lost: if the write was
        // stored after all, the answers waiting for it are due now, and
        // no write to come (there may be none: nothing is left to store)
        // would give them.
        self.answer_waiting();
        let leadership = self.leading.as_mut().expect("leading");
        if leadership.decided.is_none() {
            let mut config = self.config.controller;
            // Liveness is the coordinator's sessions: chapter 6's
            // heartbeat timeout never fires.
            config.session_timeout_ms = Millis::MAX;
            let mut decided = SimpleController::new(config);
            // Each broker's run as the stored states mean it. Should two
            // states disagree (a controller died between writes), the
            // older run: the broker's heartbeat then fences it everywhere,
            // which costs it its place in sync, never a lost write.
            let mut runs: BTreeMap<BrokerId, u64> = BTreeMap::new();
            for (tp, stored) in &leadership.stored {
                decided.load_partition(tp.clone(), stored.state.clone());
                for &(broker, incarnation) in &stored.incarnations {
                    let run = runs.entry(broker).or_insert(incarnation);
                    *run = (*run).min(incarnation);
                }
            }
            // A member of the cluster is alive: it holds a session. It is
            // a candidate once it has heartbeated this controller (with
            // its run, and its log's end). A broker named in a state but
            // gone from `/brokers/ids` is fenced just below
            // (`fence_departed`).
            let members = self.members.clone().unwrap_or_default();
            for &broker in &members {
                decided.load_broker(broker, runs.remove(&broker), true);
            }
            for (broker, incarnation) in runs {
                decided.load_broker(broker, Some(incarnation), false);
            }
            leadership.decided = Some(decided);
            self.events.push(ClusterEvent::Loaded {
                epoch: leadership.epoch,
                partitions: leadership.stored.len(),
            });
        }
        self.fence_departed();
        self.sync(now);
    }

    fn on_written(
        &mut self,
        result: &Result<Response, RequestError>,
        changes: Vec<PartitionChange>,
        now: Millis,
    ) {
        let leadership = self.leading.as_mut().expect("leading");
        match result {
            Ok(Response::Multi(results)) => {
                // The first result is the epoch check's.
                let mut partitions = Vec::new();
                for ((tp, record), result) in changes.into_iter().zip(&results[1..]) {
                    let Some(record) = record else {
                        leadership.stored.remove(&tp);
                        continue;
                    };
                    let version = match result {
                        OpResult::SetData { stat } => stat.version,
                        _ => 0,
                    };
                    // A rewrite of the same state (with a run now known)
                    // is no new decision.
                    if leadership
                        .stored
                        .get(&tp)
                        .is_none_or(|s| s.state != record.state)
                    {
                        partitions.push(tp.clone());
                    }
                    leadership.rewrite.remove(&tp);
                    let stored = StoredState {
                        state: record.state,
                        incarnations: record.incarnations,
                        version,
                    };
                    leadership.stored.insert(tp, stored);
                }
                let epoch = leadership.epoch;
                self.events.push(ClusterEvent::Stored { epoch, partitions });
            }
            Err(RequestError::SessionExpired { .. }) => return self.resign(),
            Err(e) if deposed(e) => {
                // The epoch was bumped, yet this broker's session, and so
                // its `/controller`, lives on: only someone outside the
                // protocol (an operator, a bug) bumps it so. Its decisions
                // are void; it steps down and races again.
                return self.step_down(now);
            }
            // Stored state is not what this controller believed (a node
            // changed, or went): read it again, in a while.
            _ => {
                let at = now + self.config.client.request_timeout_ms;
                leadership.load = Load::Retry { at };
                return;
            }
        }
        self.answer_waiting();
        self.sync(now);
    }

    /// Gives the answers whose changes are now stored.
    fn answer_waiting(&mut self) {
        let Some(leadership) = &mut self.leading else {
            return;
        };
        let stored = &leadership.stored;
        let (ready, waiting) = std::mem::take(&mut leadership.waiting)
            .into_iter()
            .partition(|(_, until, _)| match until {
                Until::Stored(epochs) => epochs.iter().all(|(tp, epoch)| {
                    stored
                        .get(tp)
                        .is_some_and(|s| s.state.partition_epoch >= *epoch)
                }),
                Until::Created(tps) => tps.iter().all(|tp| stored.contains_key(tp)),
                Until::Deleted(tps) => tps.iter().all(|tp| !stored.contains_key(tp)),
            });
        leadership.waiting = waiting;
        for (ticket, _, answer) in ready {
            let answer = match answer {
                Answer::AlterPartition(mut response) => {
                    response.state = stored.get(&response.tp).map(|s| s.state.clone());
                    Answer::AlterPartition(response)
                }
                answer => answer,
            };
            self.events.push(ClusterEvent::Answer { ticket, answer });
        }
    }

    /// Writes the decisions not yet stored (at most
    /// [`MAX_PARTITIONS_PER_WRITE`]) in one fenced `multi`, unless a write
    /// is in flight (its answer calls this again). A partition whose node
    /// could not be read is never written.
    fn sync(&mut self, now: Millis) {
        let Some(leadership) = &mut self.leading else {
            return;
        };
        let Some(decided) = &leadership.decided else {
            return;
        };
        if leadership.write.is_some() || !matches!(leadership.load, Load::Done) {
            return;
        }
        let epoch = leadership.epoch;
        let rewrite = leadership
            .rewrite
            .iter()
            .filter_map(|tp| Some((tp, decided.partitions().get(tp)?)))
            .filter(|(tp, state)| {
                leadership
                    .stored
                    .get(*tp)
                    .is_some_and(|s| s.state == **state)
            });
        let written = pending(decided, &leadership.stored)
            .chain(rewrite)
            .map(|(tp, state)| (tp.clone(), Some(record(decided, state, epoch))));
        let deleted = leadership
            .stored
            .keys()
            .filter(|tp| !decided.partitions().contains_key(*tp));
        let changes: Vec<PartitionChange> = written
            .chain(deleted.map(|tp| (tp.clone(), None)))
            .filter(|(tp, _)| !leadership.unreadable.contains(&node_name(tp)))
            .take(MAX_PARTITIONS_PER_WRITE)
            .collect();
        if changes.is_empty() {
            return;
        }
        let ops = fenced_write(leadership.epoch_version, &changes, &leadership.stored);
        let xid = self.client.write(Request::Multi(ops), now);
        leadership.write = Some((xid, changes));
    }

    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// The controller, loaded, for a request; `None` if this broker is not
    /// it (yet).
    fn decided(&mut self) -> Option<&mut SimpleController> {
        self.leading.as_mut()?.decided.as_mut()
    }

    /// A broker's heartbeat, if this broker is the controller: registers
    /// it as alive to the controller (it must be registered in the
    /// coordinator), and answers with its partitions' stored states.
    pub fn on_heartbeat(
        &mut self,
        request: &HeartbeatRequest,
        now: Millis,
    ) -> Result<ControllerHeartbeat, ErrorCode> {
        let registered = self
            .members
            .as_ref()
            .is_some_and(|m| m.contains(&request.broker_id));
        self.decided().ok_or(ErrorCode::NotController)?;
        if !registered {
            // Its session has ended (or it never had one): a zombie must
            // not count as alive again by heartbeating.
            return Err(ErrorCode::BrokerIdNotRegistered);
        }
        let shutting_down = self
            .leading
            .as_ref()
            .is_some_and(|l| l.shutting_down.contains(&request.broker_id));
        let leadership = self.leading.as_mut().expect("leading");
        let decided = leadership.decided.as_mut().expect("loaded");
        let run_unknown = decided.incarnation(request.broker_id).is_none();
        let brokers = if shutting_down {
            // Told what is stored, but not counted alive again.
            decided.broker_addresses()
        } else {
            decided.on_heartbeat(request, now).brokers
        };
        if run_unknown {
            // Its run is known from now on: store it beside every state it
            // is counted in, so that a later controller can tell if it
            // restarts.
            let id = request.broker_id;
            let counted_in = leadership.stored.iter().filter(|(_, s)| {
                counted(&s.state).any(|c| c == id) && !s.incarnations.iter().any(|(b, _)| *b == id)
            });
            let tps: Vec<TopicPartition> = counted_in.map(|(tp, _)| tp.clone()).collect();
            leadership.rewrite.extend(tps);
        }
        self.sync(now);
        let leadership = self.leading.as_ref().expect("leading");
        let decided = leadership.decided.as_ref().expect("loaded");
        // What is stored, and only where no newer decision is on its way:
        // a broker that just restarted must not be told it leads by the
        // state stored before this controller fenced it.
        let partitions = leadership
            .stored
            .iter()
            .filter(|(tp, s)| {
                s.state.replicas.contains(&request.broker_id)
                    && decided.partitions().get(*tp) == Some(&s.state)
            })
            .map(|(tp, s)| (tp.clone(), s.state.clone()))
            .collect();
        Ok(ControllerHeartbeat {
            controller_epoch: leadership.epoch,
            response: HeartbeatResponse {
                partitions,
                brokers,
            },
        })
    }

    /// A leader's request to change an ISR. The answer comes as a
    /// [`ClusterEvent::Answer`] once the change is stored, or at once if
    /// it is refused.
    pub fn alter_partition(&mut self, request: &AlterPartitionRequest, now: Millis) -> Ticket {
        let ticket = self.ticket();
        let refuse = |error| AlterPartitionResponse {
            tp: request.tp.clone(),
            error,
            state: None,
        };
        let Some(decided) = self.decided() else {
            let answer = Answer::AlterPartition(refuse(ErrorCode::NotController));
            self.events.push(ClusterEvent::Answer { ticket, answer });
            return ticket;
        };
        let response = decided.on_alter_partition(request);
        let leadership = self.leading.as_mut().expect("leading");
        let stored = leadership.stored.get(&request.tp);
        match &response.state {
            // Accepted, or refused against a decision not yet stored (a
            // change this leader asked for, perhaps, and asks again): the
            // answer waits until the coordinator has the state it carries,
            // which the leader adopts. Refused against the stored state
            // itself: answered at once, with it.
            Some(state) if stored.is_none_or(|s| s.state != *state) => {
                let until = Until::Stored(vec![(request.tp.clone(), state.partition_epoch)]);
                let answer = Answer::AlterPartition(response.clone());
                leadership.waiting.push((ticket, until, answer));
                self.sync(now);
            }
            _ => {
                let answer = Answer::AlterPartition(response);
                self.events.push(ClusterEvent::Answer { ticket, answer });
            }
        }
        ticket
    }

    /// Creates a topic, its replicas spread over the brokers alive to the
    /// controller. The answer comes as a [`ClusterEvent::Answer`].
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        now: Millis,
    ) -> Ticket {
        let ticket = self.ticket();
        let error = match self.leading.as_mut() {
            Some(Leadership {
                decided: Some(decided),
                unreadable,
                waiting,
                ..
            }) => {
                let taken = (0..partitions).any(|p| {
                    let tp = TopicPartition::new(name, p);
                    unreadable.contains(&node_name(&tp))
                });
                if ch03_partitions::name::validate(name).is_err() {
                    Some(ErrorCode::InvalidTopicException)
                } else if taken {
                    Some(ErrorCode::TopicAlreadyExists)
                } else {
                    match decided.create_topic(name, partitions, replication_factor) {
                        Ok(()) => {
                            let tps = (0..partitions)
                                .map(|p| TopicPartition::new(name, p))
                                .collect();
                            let answer = Answer::CreateTopic(ErrorCode::None);
                            waiting.push((ticket, Until::Created(tps), answer));
                            None
                        }
                        Err(e) => Some(e),
                    }
                }
            }
            _ => Some(ErrorCode::NotController),
        };
        match error {
            Some(error) => {
                let answer = Answer::CreateTopic(error);
                self.events.push(ClusterEvent::Answer { ticket, answer });
            }
            None => self.sync(now),
        }
        ticket
    }
    /// Deletes a topic: its partitions' nodes go from the coordinator
    /// (Kafka's replicas would then delete their logs; here the nodes go,
    /// and brokers are told no more of the partitions). The answer comes
    /// as a [`ClusterEvent::Answer`] once they are gone.
    pub fn delete_topic(&mut self, name: &str, now: Millis) -> Ticket {
        let ticket = self.ticket();
        let result = match self.leading.as_mut() {
            Some(Leadership {
                decided: Some(decided),
                waiting,
                ..
            }) => decided.remove_topic(name).map(|gone| {
                let answer = Answer::DeleteTopic(ErrorCode::None);
                waiting.push((ticket, Until::Deleted(gone), answer));
            }),
            _ => Err(ErrorCode::NotController),
        };
        match result {
            Ok(()) => self.sync(now),
            Err(error) => {
                let answer = Answer::DeleteTopic(error);
                self.events.push(ClusterEvent::Answer { ticket, answer });
            }
        }
        ticket
    }

    /// A broker about to stop asks to be relieved first (Kafka's
    /// `ControlledShutdown`): every partition it leads gets a new leader
    /// from its ISR, and it leaves every ISR, now rather than a session
    /// timeout after it stops, so that its partitions are never without a
    /// leader. Until it leaves the cluster its heartbeats are answered but
    /// do not count it alive. The answer comes once the changes are stored.
    pub fn controlled_shutdown(&mut self, broker: BrokerId, now: Millis) -> Ticket {
        let ticket = self.ticket();
        let registered = self.members.as_ref().is_some_and(|m| m.contains(&broker));
        let error = match self.leading.as_mut() {
            Some(Leadership {
                decided: Some(decided),
                waiting,
                shutting_down,
                ..
            }) if registered => {
                let before: BTreeMap<TopicPartition, u32> = decided
                    .partitions()
                    .iter()
                    .map(|(tp, s)| (tp.clone(), s.partition_epoch))
                    .collect();
                decided.fence(broker);
                shutting_down.insert(broker);
                let changed = decided
                    .partitions()
                    .iter()
                    .filter(|(tp, s)| before.get(*tp) != Some(&s.partition_epoch))
                    .map(|(tp, s)| (tp.clone(), s.partition_epoch))
                    .collect();
                let answer = Answer::ControlledShutdown(ErrorCode::None);
                waiting.push((ticket, Until::Stored(changed), answer));
                None
            }
            Some(Leadership {
                decided: Some(_), ..
            }) => Some(ErrorCode::BrokerIdNotRegistered),
            _ => Some(ErrorCode::NotController),
        };
        match error {
            None => {
                self.sync(now);
                self.answer_waiting();
            }
            Some(error) => {
                let answer = Answer::ControlledShutdown(error);
                self.events.push(ClusterEvent::Answer { ticket, answer });
            }
        }
        ticket
    }

    /// Moves leadership back to preferred replicas where they are alive and
    /// in sync (after a failover, leaders pile up on the survivors). The
    /// answer, the partitions moved, comes once they are stored.
    pub fn elect_preferred_leaders(&mut self, now: Millis) -> Ticket {
        let ticket = self.ticket();
        let moved = match self.leading.as_mut() {
            Some(Leadership {
                decided: Some(decided),
                waiting,
                ..
            }) => {
                let moved = decided.elect_preferred_leaders();
                let epochs = moved
                    .iter()
                    .map(|tp| (tp.clone(), decided.partitions()[tp].partition_epoch))
                    .collect();
                let answer = Answer::PreferredLeaders(Ok(moved));
                waiting.push((ticket, Until::Stored(epochs), answer));
                true
            }
            _ => false,
        };
        if moved {
            self.sync(now);
            self.answer_waiting();
        } else {
            let answer = Answer::PreferredLeaders(Err(ErrorCode::NotController));
            self.events.push(ClusterEvent::Answer { ticket, answer });
        }
        ticket
    }
}

/// Creating a persistent, empty node.
fn mkdir(path: &str) -> Request {
    Request::Create {
        path: path.to_string(),
        data: Vec::new(),
        ephemeral: false,
        sequential: false,
    }
}

/// Fences every broker the controller counts on that is no longer a
/// member of the cluster (its node in `/brokers/ids` is gone): each one
/// alive to the controller, and each one leading or in the ISR of a
/// partition, as the state loaded from the coordinator may say of a broker
/// that died before this controller was elected.
pub fn fence_departed(decided: &mut SimpleController, members: &BTreeSet<BrokerId>) {
    todo!("exercise `fence_departed`: Collect the brokers the controller counts on: `decided.live_brokers()`, and every partition's `leader` and `isr` (from `decided.partitions()`). Call `decided.fence(id)` for each one that is not in `members`.")
}

/// The one write that stores `changes`: a `multi`, all or nothing, whose
/// first operation checks that `/controller_epoch` still has the version
/// this controller's bump left (`epoch_version`). A controller deposed
/// while paused fails there, and changes nothing. Each partition's node is
/// set at the version last stored (so a write built on a state that
/// someone else changed fails too), created if it is new, or deleted
/// (`None`: its topic was deleted) at the version last stored.
pub fn fenced_write(
    epoch_version: Version,
    changes: &[PartitionChange],
    stored: &BTreeMap<TopicPartition, StoredState>,
) -> Vec<Op> {
    todo!("exercise `fenced_write`: Start with `Op::Check` of `CONTROLLER_EPOCH` at `epoch_version`. Then one op per change at `partition_path(tp)`: for `Some(record)`, its data `record.encode()`, `Op::SetData` at the stored version if `stored` has the partition, else `Op::Create` (persistent); for `None`, `Op::Delete` at the stored version.")
}

/// Whether a failed write was refused at its epoch check (operation 0):
/// the writer was deposed. (`BadVersion` when another controller bumped
/// the epoch; any other error there, say the node deleted, is no less a
/// reason to stop.)
pub fn deposed(error: &RequestError) -> bool {
    matches!(error, RequestError::Multi(MultiError { index: 0, .. }))
}

/// The partitions whose decided state is not the stored one, in order.
pub fn pending<'a>(
    decided: &'a SimpleController,
    stored: &'a BTreeMap<TopicPartition, StoredState>,
) -> impl Iterator<Item = (&'a TopicPartition, &'a PartitionState)> + 'a {
    decided
        .partitions()
        .iter()
        .filter(move |(tp, state)| stored.get(*tp).is_none_or(|s| s.state != **state))
}

/// What a controller of `epoch` stores for `state`: with the run of each
/// member of the ISR and of the eligible replicas, as `decided` knows it
/// (each has heartbeated it, or was loaded with its run).
pub fn record(decided: &SimpleController, state: &PartitionState, epoch: u64) -> PartitionRecord {
    let incarnations = counted(state)
        .filter_map(|id| Some((id, decided.incarnation(id)?)))
        .collect();
    PartitionRecord {
        state: state.clone(),
        controller_epoch: epoch,
        incarnations,
    }
}

/// The brokers whose run a partition's state depends on: the ISR and the
/// eligible replicas (KIP-966), each once.
pub fn counted(state: &PartitionState) -> impl Iterator<Item = BrokerId> + '_ {
    let all = state
        .isr
        .iter()
        .chain(&state.elr)
        .chain(&state.last_known_elr);
    all.copied().collect::<BTreeSet<_>>().into_iter()
}

/// A partition's node name under [`PARTITIONS`].
fn node_name(tp: &TopicPartition) -> String {
    partition_path(tp)[PARTITIONS.len() + 1..].to_string()
}

/// Whether `event` tells of the session's end (its own, or a request's
/// failure because of it).
fn expired(event: &ClientEvent) -> bool {
    matches!(
        event,
        ClientEvent::Expired
            | ClientEvent::Written {
                result: Err(RequestError::SessionExpired { .. }),
                ..
            }
    )
}
