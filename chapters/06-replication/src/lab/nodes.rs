//! The lab's nodes: the controller, the brokers, a producer and a
//! consumer, each a sans-IO [`Node`] around this chapter's state machines.
//!
//! The brokers are [`ReplicaManager`]s on a [`MemoryStorage`]; the
//! controller is a [`SimpleController`]. The clients are as small as a
//! client can be: one request in flight, a new value for every attempt,
//! the leader asked of the controller whenever in doubt. What they see
//! goes into the history, for the checker; so does what the brokers know
//! of durability (each `acks=all` answer with the in-sync replicas that
//! had the record, their logs' syncs and truncations, and what each crash
//! kept), for it to tell a loss Kafka's guarantee allows from a bug.

use std::collections::BTreeMap;

use ch02_segments::{Record, batch};
use ch03_partitions::TopicPartition;
use ch04_network::error::ErrorCode;

use crate::controller::{Controller, ControllerConfig, SimpleController};
use crate::manager::{ManagerConfig, Outgoing, ReplicaManager};
use crate::memory::MemoryStorage;
use crate::protocol::{
    Acks, AlterPartitionRequest, AlterPartitionResponse, EpochQueryRequest, EpochQueryResponse,
    HeartbeatRequest, HeartbeatResponse, ReplicaFetchRequest, ReplicaFetchResponse,
};
use crate::replica::Flush;
use crate::sim::{Ctx, Disk, Millis, Node, NodeId};
use crate::storage::ReplicaLog;

/// The controller's node id.
pub const CONTROLLER: NodeId = 0;

/// What the lab's nodes say to each other.
#[derive(Debug, Clone)]
pub enum Msg {
    /// Broker → controller.
    Heartbeat(HeartbeatRequest),
    /// Controller → broker.
    HeartbeatOk(HeartbeatResponse),
    /// Leader → controller.
    AlterPartition(AlterPartitionRequest),
    /// Controller → leader.
    AlterPartitionOk(AlterPartitionResponse),
    /// Follower → leader, from one run of the follower. (Kafka's fetch
    /// names the follower's broker epoch too, so that a restarted broker's
    /// stale fetches do not count towards the ISR (KIP-903); here the run
    /// only tells the history which run of a follower had a record.)
    Fetch {
        /// The follower's run ([`BrokerNode::incarnation`]).
        incarnation: u64,
        /// The fetch.
        request: ReplicaFetchRequest,
    },
    /// Leader → follower.
    FetchOk(ReplicaFetchResponse),
    /// Follower → leader.
    EpochQuery(EpochQueryRequest),
    /// Leader → follower.
    EpochOk(EpochQueryResponse),
    /// Client → controller: who leads the partition?
    WhoLeads,
    /// Controller → client.
    Leader(Option<NodeId>),
    /// Producer → leader: append `value` with `acks=all`.
    Produce {
        /// The value, unique in the run.
        value: u64,
    },
    /// Leader → producer: where `value` went, or why not.
    ProduceOk {
        /// The value.
        value: u64,
        /// Its offset, or the error.
        result: Result<u64, ErrorCode>,
    },
    /// Consumer → leader: committed records from `offset` on.
    Read {
        /// Where to read from.
        offset: u64,
    },
    /// Leader → consumer.
    ReadOk(Result<Vec<(u64, u64)>, ErrorCode>),
}

/// What the lab's nodes record in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The producer acknowledged `value` at `offset` (`acks=all`).
    Acked {
        /// The value.
        value: u64,
        /// Its offset.
        offset: u64,
    },
    /// The consumer read `value` at `offset`.
    Read {
        /// The offset.
        offset: u64,
        /// The value.
        value: u64,
    },
    /// A broker's high watermark changed.
    HighWatermark {
        /// Which run of the broker (a restart starts a new one).
        incarnation: u64,
        /// The new high watermark.
        high_watermark: u64,
    },
    /// The controller changed the partition's state: `leader` leads in
    /// `leader_epoch`, with these in-sync and eligible replicas.
    Elected {
        /// The leader, or `None` (offline).
        leader: Option<NodeId>,
        /// Its epoch.
        leader_epoch: u32,
        /// The ISR.
        isr: Vec<NodeId>,
        /// The eligible leader replicas, and (after a slash) the last known
        /// ones.
        elr: (Vec<NodeId>, Vec<NodeId>),
    },
    /// A leader answered an `acks=all` produce: its high watermark passed
    /// `value` at `offset`, so every in-sync replica had it. What the
    /// producer may then record as [`Event::Acked`], if the answer reaches
    /// it.
    Committed {
        /// The value.
        value: u64,
        /// Its offset.
        offset: u64,
        /// The ISR as the leader knew it then, each member with the run
        /// that had the record (the leader's own; a follower's, the run
        /// whose fetch said its log went past the record).
        isr: Vec<(NodeId, u64)>,
    },
    /// A broker's log is synced further: a crash of this run keeps every
    /// record below `up_to` (the first of a run: where it starts).
    Synced {
        /// Which run of the broker.
        incarnation: u64,
        /// Where the synced part of its log ends now.
        up_to: u64,
    },
    /// A follower cut its log back to end at `to` (a truncation is synced
    /// at once).
    Truncated {
        /// Which run of the broker.
        incarnation: u64,
        /// Its log end now.
        to: u64,
    },
    /// A broker crashed: its disk kept its log below `kept`, and lost the
    /// rest (the unsynced records, but perhaps not all of them: a crash
    /// keeps a random part of what was not synced, as a real disk may).
    Crashed {
        /// Which run of the broker ended.
        incarnation: u64,
        /// Its log end on disk after the crash.
        kept: u64,
    },
}

/// The one partition the lab replicates.
pub fn partition() -> TopicPartition {
    TopicPartition::new("lab", 0)
}

/// The timings and settings of a lab run.
#[derive(Debug, Clone, Copy)]
pub struct LabConfig {
    /// The brokers' replication settings.
    pub manager: ManagerConfig,
    /// The controller's.
    pub controller: ControllerConfig,
    /// How many brokers (each holds a replica).
    pub brokers: u32,
    /// How often a broker heartbeats the controller.
    pub heartbeat_ms: Millis,
    /// How often the operating system writes a broker's dirty pages back
    /// (with [`Flush::Os`]).
    pub write_back_ms: Millis,
    /// How long a client waits for an answer before it tries again.
    pub client_timeout_ms: Millis,
    /// The producer stops producing at this time.
    pub produce_until_ms: Millis,
}

/// A lab node.
#[derive(Debug)]
pub enum LabNode {
    /// The controller.
    Controller(ControllerNode),
    /// A broker.
    Broker(Box<BrokerNode>),
    /// The producer.
    Producer(ProducerNode),
    /// The consumer.
    Consumer(ConsumerNode),
}

impl Disk for MemoryStorage {
    fn crash(&mut self, rng: &mut fastrand::Rng) {
        MemoryStorage::crash(self, |unsynced| rng.usize(0..=unsynced));
    }
}

impl Node for LabNode {
    type Msg = Msg;
    type Disk = MemoryStorage;
    type Event = Event;

    fn on_message(
        &mut self,
        ctx: &mut Ctx<'_, Msg, Event>,
        disk: &mut MemoryStorage,
        from: NodeId,
        msg: Msg,
    ) {
        match self {
            LabNode::Controller(c) => c.on_message(ctx, from, msg),
            LabNode::Broker(b) => b.on_message(ctx, disk, from, msg),
            LabNode::Producer(p) => p.on_message(ctx, msg),
            LabNode::Consumer(c) => c.on_message(ctx, msg),
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut MemoryStorage) {
        match self {
            LabNode::Controller(c) => c.on_tick(ctx),
            LabNode::Broker(b) => b.on_tick(ctx, disk),
            LabNode::Producer(p) => p.on_tick(ctx),
            LabNode::Consumer(c) => c.on_tick(ctx),
        }
    }

    fn on_crash(&self, disk: &MemoryStorage) -> Vec<Event> {
        match self {
            LabNode::Broker(b) => vec![b.crashed(disk)],
            _ => Vec::new(),
        }
    }
}

/// The controller, and what it last told the history.
#[derive(Debug)]
pub struct ControllerNode {
    controller: SimpleController,
    brokers: u32,
    recorded: Option<(u32, u32)>,
}

impl ControllerNode {
    /// A controller that creates the lab's partition once every broker has
    /// registered.
    pub fn new(config: &LabConfig) -> ControllerNode {
        ControllerNode {
            controller: SimpleController::new(config.controller),
            brokers: config.brokers,
            recorded: None,
        }
    }

    /// The controller's state machine.
    pub fn controller(&self) -> &SimpleController {
        &self.controller
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Msg, Event>, from: NodeId, msg: Msg) {
        let now = ctx.now();
        match msg {
            Msg::Heartbeat(request) => {
                let response = self.controller.on_heartbeat(&request, now);
                ctx.send(from, Msg::HeartbeatOk(response));
            }
            Msg::AlterPartition(request) => {
                let response = self.controller.on_alter_partition(&request);
                ctx.send(from, Msg::AlterPartitionOk(response));
            }
            Msg::WhoLeads => {
                let leader = self
                    .controller
                    .partitions()
                    .get(&partition())
                    .and_then(|s| s.leader);
                ctx.send(from, Msg::Leader(leader));
            }
            _ => {}
        }
        self.record(ctx);
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        if self.controller.partitions().is_empty() {
            let tp = partition();
            // Fails until every broker has registered; tried every tick.
            let _ = self.controller.create_topic(&tp.topic, 1, self.brokers);
        }
        self.controller.tick(ctx.now());
        self.record(ctx);
    }

    /// Records each new state of the partition once.
    fn record(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        let Some(state) = self.controller.partitions().get(&partition()) else {
            return;
        };
        let now = (state.leader_epoch, state.partition_epoch);
        if self.recorded != Some(now) {
            self.recorded = Some(now);
            ctx.record(Event::Elected {
                leader: state.leader,
                leader_epoch: state.leader_epoch,
                isr: state.isr.clone(),
                elr: (state.elr.clone(), state.last_known_elr.clone()),
            });
        }
    }
}

/// A broker: a replica manager on a simulated disk.
#[derive(Debug)]
pub struct BrokerNode {
    manager: ReplicaManager<(NodeId, u64)>,
    config: LabConfig,
    /// Where heartbeats and ISR changes go: the lab's one controller here;
    /// in chapter 8's lab, whichever broker was elected.
    controller: Option<NodeId>,
    incarnation: u64,
    next_heartbeat: Millis,
    next_write_back: Millis,
    high_watermark: Option<u64>,
    /// The run of each follower's last fetch the leader took, for the
    /// history: which run of a follower had the records it acknowledges.
    fetched_by: BTreeMap<NodeId, u64>,
    /// The lab partition's log end, and where its synced part ends, when
    /// last recorded (`None`: not yet in this run).
    log_end: Option<u64>,
    synced: Option<u64>,
}

impl BrokerNode {
    /// Starts broker `id` from what its disk holds.
    pub fn start(
        id: NodeId,
        disk: &mut MemoryStorage,
        now: Millis,
        config: &LabConfig,
    ) -> BrokerNode {
        BrokerNode {
            manager: ReplicaManager::open(id, config.manager, disk, now),
            config: *config,
            controller: Some(CONTROLLER),
            // New at every start: the time, plus one so the first is not 0.
            incarnation: now + 1,
            next_heartbeat: now,
            next_write_back: now + config.write_back_ms,
            high_watermark: None,
            fetched_by: BTreeMap::new(),
            log_end: None,
            synced: None,
        }
    }

    /// The broker's replica manager.
    pub fn manager(&self) -> &ReplicaManager<(NodeId, u64)> {
        &self.manager
    }

    /// Sends heartbeats and ISR changes to `controller` from now on (none:
    /// nowhere, until one is known).
    pub fn set_controller(&mut self, controller: Option<NodeId>) {
        self.controller = controller;
    }

    /// Which run of the broker this is (its start time, plus one).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Handles a message from node `from`.
    pub fn on_message(
        &mut self,
        ctx: &mut Ctx<'_, Msg, Event>,
        disk: &mut MemoryStorage,
        from: NodeId,
        msg: Msg,
    ) {
        let now = ctx.now();
        let tp = partition();
        // Errors from a follower's side (a corrupt batch) are dropped: the
        // follower fetches again. The simulated disk itself never fails.
        match msg {
            Msg::HeartbeatOk(response) => {
                let _ = self.manager.on_heartbeat_response(disk, response, now);
            }
            Msg::AlterPartitionOk(response) => {
                let _ = self
                    .manager
                    .on_alter_partition_response(disk, response, now);
            }
            Msg::Fetch {
                incarnation,
                request,
            } => {
                let response = self.manager.on_replica_fetch(disk, &request, now);
                // Only a fetch the leader took tells it where the
                // follower's log ends.
                let taken = response
                    .partitions
                    .iter()
                    .any(|p| p.tp == tp && p.error == ErrorCode::None);
                if taken {
                    self.fetched_by.insert(request.replica_id, incarnation);
                }
                ctx.send(from, Msg::FetchOk(response));
            }
            Msg::FetchOk(response) => {
                let _ = self.manager.on_fetch_response(disk, from, response);
            }
            Msg::EpochQuery(request) => {
                let response = self.manager.on_epoch_query(disk, &request);
                ctx.send(from, Msg::EpochOk(response));
            }
            Msg::EpochOk(response) => {
                let _ = self.manager.on_epoch_response(disk, from, response);
            }
            Msg::Produce { value } => {
                let mut bytes =
                    batch::encode(&[Record::new(value.to_string())]).expect("one small record");
                let token = (from, value);
                if let Some(((to, value), result)) =
                    self.manager
                        .produce(disk, &tp, &mut bytes, Acks::All, now, token)
                {
                    let result = result.map(|info| info.base_offset);
                    ctx.send(to, Msg::ProduceOk { value, result });
                }
            }
            Msg::Read { offset } => {
                let result = self
                    .manager
                    .read(disk, &tp, offset, 64 * 1024)
                    .map(|(batches, _)| {
                        batches
                            .iter()
                            .flat_map(|b| b.records().expect("stored batches are valid"))
                            .map(|(offset, r)| (offset, value_of(&r.value)))
                            .collect()
                    });
                ctx.send(from, Msg::ReadOk(result));
            }
            _ => {}
        }
        self.pump(ctx, disk);
    }

    /// Time passes: a heartbeat when one is due, the operating system's
    /// write-back, the replica manager's timers.
    pub fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut MemoryStorage) {
        let now = ctx.now();
        if now >= self.next_heartbeat
            && let Some(controller) = self.controller
        {
            let request = HeartbeatRequest {
                broker_id: ctx.id(),
                incarnation: self.incarnation,
                address: String::new(),
                log_ends: self.manager.log_ends(disk),
            };
            ctx.send(controller, Msg::Heartbeat(request));
            self.next_heartbeat = now + self.config.heartbeat_ms;
        }
        if self.config.manager.replica.flush == Flush::Os && now >= self.next_write_back {
            disk.write_back();
            self.next_write_back = now + self.config.write_back_ms;
        }
        let _ = self.manager.tick(disk, now);
        self.pump(ctx, disk);
    }

    /// Sends what the manager wants sent, answers the produces it
    /// completed, and records a changed high watermark and what happened
    /// to the log.
    fn pump(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut MemoryStorage) {
        for outgoing in self.manager.poll_outgoing(disk, ctx.now()) {
            match outgoing {
                Outgoing::Fetch { to, request } => {
                    let incarnation = self.incarnation;
                    let fetch = Msg::Fetch {
                        incarnation,
                        request,
                    };
                    ctx.send(to, fetch);
                }
                Outgoing::EpochQuery { to, request } => ctx.send(to, Msg::EpochQuery(request)),
                Outgoing::AlterPartition(request) => {
                    if let Some(controller) = self.controller {
                        ctx.send(controller, Msg::AlterPartition(request));
                    }
                }
            }
        }
        for ((to, value), result) in self.manager.take_completed() {
            let result = result.map(|info| info.base_offset);
            if let Ok(offset) = result {
                let isr = self.isr_holding(ctx.id(), offset);
                ctx.record(Event::Committed { value, offset, isr });
            }
            ctx.send(to, Msg::ProduceOk { value, result });
        }
        self.record_log(ctx, disk);
        let high_watermark = self
            .manager
            .partition(&partition())
            .map(|p| p.high_watermark());
        if let Some(hw) = high_watermark
            && high_watermark != self.high_watermark
        {
            self.high_watermark = high_watermark;
            ctx.record(Event::HighWatermark {
                incarnation: self.incarnation,
                high_watermark: hw,
            });
        }
    }

    /// The in-sync replicas, as this leader knows them, that have the
    /// record at `offset`, each with its run. Once the high watermark has
    /// passed the record that is every one of them: it passes a record
    /// only when each member's last fetch went past it.
    fn isr_holding(&self, me: NodeId, offset: u64) -> Vec<(NodeId, u64)> {
        let Some(replica) = self.manager.partition(&partition()) else {
            return Vec::new();
        };
        let followers = replica.followers();
        let holds = |id: &NodeId| {
            followers
                .get(id)
                .and_then(|f| f.log_end)
                .is_some_and(|end| end > offset)
        };
        let isr = replica.state().isr.iter();
        isr.filter_map(|&id| {
            if id == me {
                Some((id, self.incarnation))
            } else if holds(&id) {
                self.fetched_by.get(&id).map(|&run| (id, run))
            } else {
                None
            }
        })
        .collect()
    }

    /// Records what happened to the lab partition's log since the last
    /// look: its synced part grew (the operating system's write-back, or
    /// a flush), or a truncation cut it back. (Appends are not recorded:
    /// a crash loses them unless synced, and a crash says what it kept.)
    fn record_log(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &MemoryStorage) {
        let Some(log) = disk.log_ref(&partition()) else {
            return;
        };
        let incarnation = self.incarnation;
        let end = log.log_end_offset();
        let synced = end - log.unsynced_records();
        if self.log_end.is_some_and(|last| end < last) {
            ctx.record(Event::Truncated {
                incarnation,
                to: end,
            });
        }
        if self.synced.is_none_or(|last| synced > last) {
            ctx.record(Event::Synced {
                incarnation,
                up_to: synced,
            });
        }
        self.log_end = Some(end);
        self.synced = Some(synced);
    }

    /// The history's note of this broker's crash: how much of its log the
    /// disk kept (`disk` is as the crash left it).
    pub fn crashed(&self, disk: &MemoryStorage) -> Event {
        let kept = disk
            .log_ref(&partition())
            .map_or(0, |log| log.log_end_offset());
        Event::Crashed {
            incarnation: self.incarnation,
            kept,
        }
    }
}

/// A record's value, as the lab writes it: a number in decimal.
pub fn value_of(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("the lab writes numbers")
}

/// The client's side: who leads, whom to ask, and the request in flight.
#[derive(Debug)]
struct Client {
    leader: Option<NodeId>,
    /// Who answers "who leads?": the controller here; in chapter 8's lab,
    /// any broker, tried in turn.
    ask: Vec<NodeId>,
    /// Which of them to ask next.
    next_ask: usize,
    /// When the request in flight (to the leader or the controller) was sent.
    in_flight_since: Option<Millis>,
}

impl Client {
    fn new(ask: Vec<NodeId>) -> Client {
        assert!(!ask.is_empty(), "a client needs someone to ask who leads");
        Client {
            leader: None,
            ask,
            next_ask: 0,
            in_flight_since: None,
        }
    }

    /// Whether a request may be sent now (none in flight, or it is overdue;
    /// an unanswered "who leads?" goes to the next node).
    fn ready(&mut self, now: Millis, timeout: Millis) -> bool {
        match self.in_flight_since {
            Some(since) if now < since + timeout => false,
            overdue => {
                if overdue.is_some() && self.leader.is_none() {
                    self.next_ask += 1;
                }
                self.in_flight_since = None;
                true
            }
        }
    }

    /// Sends `msg` to the leader, or asks who leads.
    fn send(&mut self, ctx: &mut Ctx<'_, Msg, Event>, msg: Msg) {
        self.in_flight_since = Some(ctx.now());
        match self.leader {
            Some(leader) => ctx.send(leader, msg),
            None => ctx.send(self.ask[self.next_ask % self.ask.len()], Msg::WhoLeads),
        }
    }

    /// An answer arrived; on an error the leader is asked for again.
    fn answered(&mut self, error: Option<ErrorCode>) {
        self.in_flight_since = None;
        if error.is_some() {
            self.leader = None;
        }
    }
}

/// The producer: one `acks=all` write at a time, a new value each.
#[derive(Debug)]
pub struct ProducerNode {
    client: Client,
    next_value: u64,
    config: LabConfig,
}

impl ProducerNode {
    /// A producer that starts at value 0, and asks the controller who
    /// leads.
    pub fn new(config: &LabConfig) -> ProducerNode {
        ProducerNode::asking(config, vec![CONTROLLER])
    }

    /// A producer that asks the nodes `ask`, in turn, who leads.
    pub fn asking(config: &LabConfig, ask: Vec<NodeId>) -> ProducerNode {
        ProducerNode {
            client: Client::new(ask),
            next_value: 0,
            config: *config,
        }
    }

    /// Handles an answer.
    pub fn on_message(&mut self, ctx: &mut Ctx<'_, Msg, Event>, msg: Msg) {
        match msg {
            Msg::Leader(leader) => {
                self.client.answered(None);
                self.client.leader = leader;
            }
            Msg::ProduceOk { value, result } => {
                self.client.answered(result.err());
                if let Ok(offset) = result {
                    ctx.record(Event::Acked { value, offset });
                }
            }
            _ => return,
        }
        // The next write goes at once, not at the next tick.
        self.on_tick(ctx);
    }

    /// Sends the next write, unless one is in flight.
    pub fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        if ctx.now() >= self.config.produce_until_ms
            || !self.client.ready(ctx.now(), self.config.client_timeout_ms)
        {
            return;
        }
        // A new value for every attempt, so an acknowledgement names one
        // attempt. (An attempt that timed out may still be stored: the
        // checker allows values nobody acknowledged.)
        let value = self.next_value;
        self.next_value += 1;
        self.client.send(ctx, Msg::Produce { value });
    }
}

/// The consumer: reads committed records from the leader, in order.
#[derive(Debug)]
pub struct ConsumerNode {
    client: Client,
    position: u64,
    config: LabConfig,
}

impl ConsumerNode {
    /// A consumer that reads from offset 0, and asks the controller who
    /// leads.
    pub fn new(config: &LabConfig) -> ConsumerNode {
        ConsumerNode::asking(config, vec![CONTROLLER])
    }

    /// A consumer that asks the nodes `ask`, in turn, who leads.
    pub fn asking(config: &LabConfig, ask: Vec<NodeId>) -> ConsumerNode {
        ConsumerNode {
            client: Client::new(ask),
            position: 0,
            config: *config,
        }
    }

    /// Handles an answer.
    pub fn on_message(&mut self, ctx: &mut Ctx<'_, Msg, Event>, msg: Msg) {
        match msg {
            Msg::Leader(leader) => {
                self.client.answered(None);
                self.client.leader = leader;
            }
            Msg::ReadOk(result) => {
                self.client.answered(result.as_ref().err().copied());
                let records = result.unwrap_or_default();
                let got_some = !records.is_empty();
                for (offset, value) in records {
                    if offset >= self.position {
                        ctx.record(Event::Read { offset, value });
                        self.position = offset + 1;
                    }
                }
                if !got_some {
                    // Nothing new: wait for the next tick rather than ask
                    // again at once.
                    return;
                }
            }
            _ => return,
        }
        self.on_tick(ctx);
    }

    /// Reads on, unless a read is in flight.
    pub fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        if self.client.ready(ctx.now(), self.config.client_timeout_ms) {
            let offset = self.position;
            self.client.send(ctx, Msg::Read { offset });
        }
    }
}
