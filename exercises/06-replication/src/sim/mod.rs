//! A deterministic simulator for sans-IO nodes: FoundationDB's simulation
//! and TigerBeetle's VOPR, in miniature.
//!
//! A distributed protocol is as good as the worst interleaving of messages,
//! crashes and clocks it survives, and on a real network the bad
//! interleavings are rare: a bug that shows once a month in production shows
//! once in a million test runs, and then cannot be reproduced. The simulator
//! turns that around. Every node is a state machine that does no I/O of its
//! own ([`Node`]); the simulator owns everything the real world would (the
//! clock, the network, the disks, the crashes) and drives it all from one
//! seeded random number generator. So:
//!
//! - a run is a function of its seed: the same seed replays the same run bit
//!   for bit, and a failing seed is a complete bug report;
//! - virtual time jumps from one event to the next, so a minute of a
//!   cluster's life takes milliseconds, and thousands of seeds run in a
//!   minute;
//! - faults are cheap and common: messages dropped, duplicated, reordered; a
//!   partition, one-way too; a crash that loses what was not synced; a clock
//!   that leaps forward; a node paused and resumed, which wakes up to a
//!   cluster that went on without it.
//!
//! The pieces: [`Node`], [`Disk`] and [`Ctx`] (this file) are the contract
//! with the state machines; [`Sim`] (`world.rs`) is the event loop and the
//! scripted faults; `network.rs` decides what happens to each message;
//! [`Nemesis`] (`nemesis.rs`) picks random faults; [`run_seeds`]
//! (`runner.rs`) runs many seeds and reports the first that fails.
//!
//! What a real system has and this one leaves out: CPU time (a handler takes
//! no virtual time at all), bandwidth (a large message is as fast as a small
//! one), and disk latency (a write or a sync is instant; only a crash shows
//! that a disk exists). FoundationDB simulates those too; the faults here are
//! the ones replication must survive.

mod nemesis;
mod network;
mod runner;
mod world;

pub use nemesis::Nemesis;
pub use network::NetStats;
pub use runner::{SeedFailure, run_seeds};
pub use world::{Pause, Sim, SimConfig};

/// A node's name in the simulation (Kafka's `broker.id`; clients get ids
/// too).
pub type NodeId = u32;

/// Virtual time in milliseconds.
pub type Millis = u64;

/// What a node's durable state must support: losing what was not synced.
///
/// A disk in the simulation is plain memory that the node writes and
/// *syncs* (the `fsync` it stands for); the simulator never looks inside. It
/// only calls [`Disk::crash`] when the node crashes, and hands the disk to
/// the node's start function when it restarts.
pub trait Disk {
    /// A crash: keep what was synced; of what was written after the last
    /// sync, keep nothing or a random prefix (a real disk may have written
    /// some of it). Use `rng`, so that which prefix survives is part of the
    /// seed's run too.
    ///
    /// A real disk can do worse: reorder unsynced writes, tear a sector in
    /// half, or lie about a sync. Chapter 1's CRCs are the defence against a
    /// torn write; the simulator keeps to the prefix rule, which is what an
    /// append-only log on a well-behaved file system sees.
    fn crash(&mut self, rng: &mut fastrand::Rng);
}

/// A node with nothing on disk (a client, a test's echo server): a crash
/// has nothing to lose.
impl Disk for () {
    fn crash(&mut self, _rng: &mut fastrand::Rng) {}
}

/// A sans-IO node the simulator drives.
///
/// A node reacts to two inputs (a message arrived, time passed) and acts
/// only through its [`Ctx`] and its disk; when it crashes it may also say
/// what the crash took, for the history ([`Node::on_crash`]). To stay
/// deterministic it must take nothing from the outside world: no
/// `Instant::now` (use [`Ctx::now`]), no thread-local randomness (use
/// [`Ctx::rng`]), and no iteration over a `HashMap`, whose order is random
/// in every process (use a `BTreeMap`).
pub trait Node {
    /// The messages nodes send each other. `Clone` because the network may
    /// duplicate one.
    type Msg: Clone + std::fmt::Debug;
    /// The node's durable state, which outlives a crash.
    type Disk: Disk;
    /// A record the node adds to the run's history (for checkers), e.g.
    /// "produce acknowledged".
    type Event: Clone + std::fmt::Debug;

    /// Handles the message `msg` from node `from`.
    fn on_message(
        &mut self,
        ctx: &mut Ctx<'_, Self::Msg, Self::Event>,
        disk: &mut Self::Disk,
        from: NodeId,
        msg: Self::Msg,
    );

    /// Called every `tick_ms` of virtual time on every running node. A node
    /// keeps its own deadlines (a heartbeat due, a follower timed out) and
    /// checks them here against [`Ctx::now`]; a real node would set timers.
    fn on_tick(&mut self, ctx: &mut Ctx<'_, Self::Msg, Self::Event>, disk: &mut Self::Disk);

    /// Called when the node crashes, once its disk has lost what the crash
    /// lost ([`Disk::crash`]) and just before the node's memory is thrown
    /// away: the events to add to the history for the crash, stamped with
    /// its time. A checker that must tell a loss the crash explains from a
    /// bug needs to know what the crash took, and only the node knows
    /// what its disk holds. None by default.
    ///
    /// No context: a crashing node sends nothing and draws nothing.
    fn on_crash(&self, _disk: &Self::Disk) -> Vec<Self::Event> {
        Vec::new()
    }
}

/// What a node can do while handling an input: read its clock, send,
/// record an event, draw random numbers.
///
/// Sends are not carried out at once: they are collected and handed to the
/// network when the handler returns, as a real node's would be written to
/// its sockets after it has finished its work.
pub struct Ctx<'a, M, E> {
    id: NodeId,
    now: Millis,
    rng: &'a mut fastrand::Rng,
    outbox: Vec<(NodeId, M)>,
    events: Vec<E>,
}

impl<M, E> Ctx<'_, M, E> {
    /// The time on this node's clock: the simulation's time plus this
    /// node's offset, which [`Sim::jump_clock`] moves. Two nodes' clocks
    /// need not agree.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Sends `msg` to node `to`, through the network: it may arrive late,
    /// twice, out of order, or never.
    pub fn send(&mut self, to: NodeId, msg: M) {
        self.outbox.push((to, msg));
    }

    /// Adds `event` to the run's history, stamped with the simulation's
    /// true time (not this node's clock), so checkers see the real order.
    pub fn record(&mut self, event: E) {
        self.events.push(event);
    }

    /// The simulation's random source: the only one a node may use.
    pub fn rng(&mut self) -> &mut fastrand::Rng {
        self.rng
    }

    /// Runs `inner` with a context for another kind of node, whose messages
    /// and events become this one's through `msg` and `event`: how a node
    /// made of others (a broker that is also a coordinator client, in
    /// chapter 8) hands an input to one of its parts. A simulation has one
    /// message type, so the parts' messages are wrapped in it.
    pub fn map<M2, E2, R>(
        &mut self,
        msg: impl Fn(M2) -> M,
        event: impl Fn(E2) -> E,
        inner: impl FnOnce(&mut Ctx<'_, M2, E2>) -> R,
    ) -> R {
        let mut part = Ctx {
            id: self.id,
            now: self.now,
            rng: &mut *self.rng,
            outbox: Vec::new(),
            events: Vec::new(),
        };
        let result = inner(&mut part);
        let Ctx { outbox, events, .. } = part;
        self.outbox
            .extend(outbox.into_iter().map(|(to, m)| (to, msg(m))));
        self.events.extend(events.into_iter().map(event));
        result
    }
}
