//! The lab's nodes: coordinator servers, brokers that are also
//! candidates for controller, a producer and a consumer.
//!
//! Each is made of parts built in earlier chapters: a coordinator server
//! is chapter 7's [`ServerShell`]; a broker is chapter 6's [`BrokerNode`]
//! (a replica manager on a simulated disk) beside a [`ClusterNode`] on its
//! own coordinator session; the clients are chapter 6's, asking any broker
//! who leads. [`Ctx::map`] hands each part a context of its own messages.

use std::collections::BTreeMap;

use ch06_replication::lab::nodes::{
    self as lab6, BrokerNode, ConsumerNode, LabConfig, ProducerNode,
};
use ch06_replication::memory::MemoryStorage;
use ch06_replication::protocol::BrokerId;
use ch06_replication::sim::{Ctx, Disk, Millis, Node, NodeId};
use ch07_coordinator::client::ClientConfig;
use ch07_coordinator::raft::RaftConfig;
use ch07_coordinator::sim::{self, ClientConn, ServerDisk, ServerShell, ShellConfig, Wire};

use crate::controller::{Answer, ClusterConfig, ClusterEvent, ClusterNode, Ticket};
use crate::fence::ControllerFence;

/// How chapter 6's broker's messages travel: a request to the controller
/// names the run it comes from, so that its answer reaches that run only.
fn to_controller(incarnation: u64) -> impl Fn(lab6::Msg) -> Msg {
    move |msg| match msg {
        lab6::Msg::Heartbeat(_) | lab6::Msg::AlterPartition(_) => {
            Msg::ToController { incarnation, msg }
        }
        msg => Msg::Lab(msg),
    }
}

/// The coordinator servers' node ids.
pub const SERVERS: [NodeId; 3] = [11, 12, 13];
/// The brokers' node ids (and broker ids).
pub const BROKERS: [NodeId; 3] = [1, 2, 3];

/// What the lab's nodes say to each other.
#[derive(Debug, Clone)]
pub enum Msg {
    /// Chapter 6's messages: replication and the clients'.
    Lab(lab6::Msg),
    /// A broker's request to the controller (`Heartbeat`,
    /// `AlterPartition`), from one run of the broker.
    ToController {
        /// The broker's run.
        incarnation: u64,
        /// The request.
        msg: lab6::Msg,
    },
    /// A controller's answer (`HeartbeatOk`, `AlterPartitionOk`), with
    /// its epoch: a broker obeys it only if no later controller has spoken.
    /// It goes back to the run that asked, as an answer goes back on the
    /// connection its request came on: a broker restarted since does not
    /// get it (its connection died with the old run).
    FromController {
        /// The controller's epoch.
        epoch: u64,
        /// The run of the broker that asked.
        incarnation: u64,
        /// The answer.
        msg: lab6::Msg,
    },
    /// Between coordinator servers, and between them and their clients.
    Coordinator(Wire),
}

impl From<Wire> for Msg {
    fn from(wire: Wire) -> Msg {
        Msg::Coordinator(wire)
    }
}

/// What the lab's nodes record in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Chapter 6's events: writes answered and acknowledged, records read,
    /// high watermarks, syncs, truncations and crashes of the brokers'
    /// logs, and (here) each partition state a controller stored.
    Lab(lab6::Event),
    /// This broker became the controller, in this epoch.
    Elected {
        /// The controller epoch.
        epoch: u64,
    },
    /// This broker, as controller, learned that the partition's state is
    /// stored in the coordinator (by its write, or found at a reload).
    Stored {
        /// Its controller epoch.
        epoch: u64,
        /// The stored state's partition epoch: every change bumps it.
        partition_epoch: u32,
    },
    /// This broker refused an answer from a deposed controller, of this
    /// epoch: a zombie was fenced.
    Refused {
        /// The deposed controller's epoch.
        epoch: u64,
    },
    /// This broker obeyed, for the first time in this run, a controller
    /// of this epoch.
    Obeyed {
        /// The controller epoch.
        epoch: u64,
        /// Which run of the broker (a restarted broker starts its fence
        /// afresh, as Kafka's do).
        incarnation: u64,
    },
}

/// A node's disk: a broker's logs, or a coordinator server's Raft state.
/// (One simulation has one disk type; each node uses its part.)
#[derive(Debug, Default)]
pub struct LabDisk {
    /// A broker's.
    pub broker: MemoryStorage,
    /// A coordinator server's.
    pub server: ServerDisk,
}

impl Disk for LabDisk {
    fn crash(&mut self, rng: &mut fastrand::Rng) {
        Disk::crash(&mut self.broker, rng);
        self.server.crash(rng);
    }
}

/// The lab's timings, beside chapter 6's.
#[derive(Debug, Clone)]
pub struct ClusterLabConfig {
    /// Chapter 6's settings: replication, clients, the controller's rules.
    pub lab: LabConfig,
    /// The brokers' coordinator sessions.
    pub client: ClientConfig,
    /// The coordinator servers' Raft timings.
    pub raft: RaftConfig,
}

/// A lab node.
pub enum LabNode {
    /// A coordinator server.
    Server(Box<ServerShell>),
    /// A broker.
    Broker(Box<ClusterBroker>),
    /// The producer.
    Producer(ProducerNode),
    /// The consumer.
    Consumer(ConsumerNode),
}

/// Starts coordinator server `id` from its disk.
pub fn start_server(id: NodeId, disk: &mut LabDisk, now: Millis, raft: &RaftConfig) -> ServerShell {
    let shell = ShellConfig {
        sync_every_ticks: 3,
        snapshot_every: 200,
    };
    sim::start_server(id, &SERVERS, raft.clone(), shell, &disk.server, now)
}

impl Node for LabNode {
    type Msg = Msg;
    type Disk = LabDisk;
    type Event = Event;

    fn on_message(
        &mut self,
        ctx: &mut Ctx<'_, Msg, Event>,
        disk: &mut LabDisk,
        from: NodeId,
        msg: Msg,
    ) {
        match (self, msg) {
            (LabNode::Server(shell), Msg::Coordinator(wire)) => {
                shell.on_message(ctx, &mut disk.server, from, wire)
            }
            (LabNode::Broker(broker), msg) => broker.on_message(ctx, disk, from, msg),
            (LabNode::Producer(p), Msg::Lab(msg)) => {
                ctx.map(Msg::Lab, Event::Lab, |c| p.on_message(c, msg))
            }
            (LabNode::Consumer(c), Msg::Lab(msg)) => {
                ctx.map(Msg::Lab, Event::Lab, |ctx| c.on_message(ctx, msg))
            }
            _ => {}
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut LabDisk) {
        match self {
            LabNode::Server(shell) => shell.on_tick(ctx, &mut disk.server),
            LabNode::Broker(broker) => broker.on_tick(ctx, disk),
            LabNode::Producer(p) => ctx.map(Msg::Lab, Event::Lab, |c| p.on_tick(c)),
            LabNode::Consumer(c) => ctx.map(Msg::Lab, Event::Lab, |ctx| c.on_tick(ctx)),
        }
    }

    /// A broker tells what its crash kept of its log, for chapter 6's
    /// checker; a coordinator server's crash is Raft's business, and
    /// chapter 7's checks.
    fn on_crash(&self, disk: &LabDisk) -> Vec<Event> {
        match self {
            LabNode::Broker(broker) => vec![Event::Lab(broker.broker.crashed(&disk.broker))],
            _ => Vec::new(),
        }
    }
}

/// A broker of the cluster: chapter 6's broker, told where the controller
/// is by its [`ClusterNode`], obeying only the newest controller
/// ([`ControllerFence`]), and, when elected, the controller itself.
pub struct ClusterBroker {
    broker: BrokerNode,
    cluster: ClusterNode,
    conn: ClientConn,
    fence: ControllerFence,
    /// The lab partition's leader, as the controller last told.
    leader: Option<NodeId>,
    /// ISR changes asked of this broker as controller: who asked (which
    /// broker, which run).
    asked: BTreeMap<Ticket, (NodeId, u64)>,
    /// The lab topic's creation, asked and not yet answered.
    creating: Option<Ticket>,
    /// The epoch this broker leads in, or last led in.
    epoch: u64,
}

impl ClusterBroker {
    /// Starts broker `id` from what its disk holds, with a new coordinator
    /// session.
    pub fn start(
        id: BrokerId,
        disk: &mut LabDisk,
        now: Millis,
        config: &ClusterLabConfig,
    ) -> ClusterBroker {
        let mut broker = BrokerNode::start(id, &mut disk.broker, now, &config.lab);
        // Nowhere to send heartbeats until a controller is known.
        broker.set_controller(None);
        let cluster_config = ClusterConfig {
            client: config.client.clone(),
            controller: config.lab.controller,
        };
        let cluster = ClusterNode::new(id, "", &SERVERS, id as usize, cluster_config, now);
        ClusterBroker {
            broker,
            cluster,
            conn: ClientConn::default(),
            fence: ControllerFence::default(),
            leader: None,
            asked: BTreeMap::new(),
            creating: None,
            epoch: 0,
        }
    }

    /// Chapter 6's broker inside.
    pub fn broker(&self) -> &BrokerNode {
        &self.broker
    }

    /// Its part in the cluster.
    pub fn cluster(&self) -> &ClusterNode {
        &self.cluster
    }

    /// The lab partition's leader, as the controller last told it.
    pub fn told_leader(&self) -> Option<NodeId> {
        self.leader
    }

    fn on_message(
        &mut self,
        ctx: &mut Ctx<'_, Msg, Event>,
        disk: &mut LabDisk,
        from: NodeId,
        msg: Msg,
    ) {
        let now = ctx.now();
        match msg {
            Msg::Coordinator(Wire::ToClient { conn, seq, msg }) => {
                for msg in self.conn.receive(from, conn, seq, msg) {
                    self.cluster.client().on_message(from, msg, now);
                    // What it sends may open a new connection: then the
                    // rest of this one's messages are not for it.
                    self.pump(ctx);
                    if conn != self.conn.conn() {
                        break;
                    }
                }
            }
            Msg::Coordinator(_) => {}
            Msg::ToController {
                incarnation,
                msg: lab6::Msg::Heartbeat(request),
            } => {
                // Refused (not the controller, not registered): dropped,
                // and the broker heartbeats again.
                if let Ok(answer) = self.cluster.on_heartbeat(&request, now) {
                    let msg = lab6::Msg::HeartbeatOk(answer.response);
                    let epoch = answer.controller_epoch;
                    let answer = Msg::FromController {
                        epoch,
                        incarnation,
                        msg,
                    };
                    ctx.send(from, answer);
                }
            }
            Msg::ToController {
                incarnation,
                msg: lab6::Msg::AlterPartition(request),
            } => {
                let ticket = self.cluster.alter_partition(&request, now);
                self.asked.insert(ticket, (from, incarnation));
            }
            Msg::ToController { .. } => {}
            Msg::Lab(lab6::Msg::WhoLeads) => {
                ctx.send(from, Msg::Lab(lab6::Msg::Leader(self.leader)));
            }
            Msg::FromController { incarnation, .. } if incarnation != self.broker.incarnation() => {
            }
            Msg::FromController { epoch, msg, .. } => {
                // ANCHOR: obey
                let newer = epoch > self.fence.epoch();
                if self.fence.admit(epoch).is_err() {
                    // A deposed controller: not obeyed.
                    ctx.record(Event::Refused { epoch });
                    return self.pump(ctx);
                }
                if newer {
                    let incarnation = self.broker.incarnation();
                    ctx.record(Event::Obeyed { epoch, incarnation });
                }
                // ANCHOR_END: obey
                if let lab6::Msg::HeartbeatOk(response) = &msg {
                    let tp = lab6::partition();
                    let told = response.partitions.iter().find(|(p, _)| *p == tp);
                    self.leader = told.and_then(|(_, s)| s.leader);
                }
                self.deliver(ctx, disk, from, msg);
            }
            Msg::Lab(msg) => self.deliver(ctx, disk, from, msg),
        }
        self.pump(ctx);
    }

    /// Hands chapter 6's broker one of its messages.
    fn deliver(
        &mut self,
        ctx: &mut Ctx<'_, Msg, Event>,
        disk: &mut LabDisk,
        from: NodeId,
        msg: lab6::Msg,
    ) {
        let outgoing = to_controller(self.broker.incarnation());
        let broker = &mut self.broker;
        ctx.map(outgoing, Event::Lab, |c| {
            broker.on_message(c, &mut disk.broker, from, msg)
        });
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut LabDisk) {
        let now = ctx.now();
        self.cluster.on_tick(now);
        let outgoing = to_controller(self.broker.incarnation());
        let broker = &mut self.broker;
        ctx.map(outgoing, Event::Lab, |c| {
            broker.on_tick(c, &mut disk.broker)
        });
        // The controller creates the lab's topic, once three brokers have
        // registered with it (until then it is refused; tried again).
        let tp = lab6::partition();
        let exists = self
            .cluster
            .stored()
            .is_some_and(|stored| stored.contains_key(&tp));
        if self.cluster.leading().is_some() && !exists && self.creating.is_none() {
            let brokers = BROKERS.len() as u32;
            self.creating = Some(self.cluster.create_topic(&tp.topic, 1, brokers, now));
        }
        self.pump(ctx);
    }

    /// Carries the coordinator session's messages, and acts on what the
    /// cluster node reports, until neither is left.
    fn pump(&mut self, ctx: &mut Ctx<'_, Msg, Event>) {
        loop {
            let sends = self.cluster.client().take_sends();
            let events = self.cluster.poll(ctx.now());
            if sends.is_empty() && events.is_empty() {
                return;
            }
            self.conn.send(ctx, sends);
            for event in events {
                self.on_cluster_event(ctx, event);
            }
        }
    }

    fn on_cluster_event(&mut self, ctx: &mut Ctx<'_, Msg, Event>, event: ClusterEvent) {
        match event {
            ClusterEvent::ControllerIs(info) => self.broker.set_controller(Some(info.broker_id)),
            ClusterEvent::Elected { epoch } => {
                self.epoch = epoch;
                self.broker.set_controller(Some(ctx.id()));
                ctx.record(Event::Elected { epoch });
            }
            ClusterEvent::Resigned { .. } | ClusterEvent::SessionExpired => {
                self.broker.set_controller(None);
            }
            ClusterEvent::Stored { epoch, partitions } => {
                let stored = self.cluster.stored().expect("stored while leading");
                for tp in partitions {
                    let state = &stored[&tp].state;
                    let partition_epoch = state.partition_epoch;
                    ctx.record(Event::Stored {
                        epoch,
                        partition_epoch,
                    });
                    ctx.record(Event::Lab(lab6::Event::Elected {
                        leader: state.leader,
                        leader_epoch: state.leader_epoch,
                        isr: state.isr.clone(),
                        elr: (state.elr.clone(), state.last_known_elr.clone()),
                    }));
                }
            }
            ClusterEvent::Answer { ticket, answer } => match answer {
                Answer::AlterPartition(response) => {
                    if let Some((to, incarnation)) = self.asked.remove(&ticket) {
                        let msg = lab6::Msg::AlterPartitionOk(response);
                        let epoch = self.epoch;
                        let answer = Msg::FromController {
                            epoch,
                            incarnation,
                            msg,
                        };
                        ctx.send(to, answer);
                    }
                }
                Answer::CreateTopic(_) => self.creating = None,
                // The lab asks for none of these.
                Answer::DeleteTopic(_)
                | Answer::ControlledShutdown(_)
                | Answer::PreferredLeaders(_) => {}
            },
            ClusterEvent::Registered
            | ClusterEvent::RegistrationRefused
            | ClusterEvent::Members(_)
            | ClusterEvent::Loaded { .. }
            | ClusterEvent::Unreadable(_) => {}
        }
    }
}
