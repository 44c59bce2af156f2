//! The nemesis: random faults on a random schedule (the name is Jepsen's).
//!
//! Scripted faults test the failures someone thought of. The nemesis tests
//! the rest: every so often it picks a fault at random, by weight, among
//! those that make sense at that moment (no restart when nothing is down).
//! Over thousands of seeds it tries combinations nobody would write by hand:
//! a crash during a partition just after a clock jump.
//!
//! The nemesis only decides; [`Sim`](super::Sim) carries the fault out with
//! the same methods a test calls, so a random fault and a scripted one are
//! the same code and read the same in the trace.

use super::{Millis, NodeId};

/// A random fault schedule: every `min_interval_ms..=max_interval_ms` of
/// virtual time, one fault, picked at random in proportion to its weight (a
/// weight of 0 turns that fault off).
#[derive(Clone, Copy, Debug)]
pub struct Nemesis {
    /// The shortest time between two faults.
    pub min_interval_ms: Millis,
    /// The longest time between two faults.
    pub max_interval_ms: Millis,
    /// Weight of splitting the nodes in two halves that cannot talk.
    pub partition: u32,
    /// Weight of cutting the links from some nodes to the others, one way
    /// only: they still hear the others.
    pub one_way: u32,
    /// Weight of healing every partition.
    pub heal: u32,
    /// Weight of crashing one crashable node.
    pub crash: u32,
    /// Weight of restarting one crashed node.
    pub restart: u32,
    /// Weight of crashing every crashable node at once (a power loss in the
    /// data centre). Off by default: Kafka acknowledges a write before it is
    /// synced, trusting that the replicas will not all fail together, so this
    /// fault *does* lose acknowledged writes. Turn it on to watch that
    /// happen, or to test a flush-before-acknowledge mode.
    pub crash_all: u32,
    /// Weight of jumping one node's clock forward.
    pub clock_jump: u32,
    /// Weight of pausing one crashable node: `SIGSTOP`, a long garbage
    /// collection, a virtual machine descheduled. It loses nothing and does
    /// nothing until resumed, then finds that time has passed and the
    /// cluster has moved on without it: the zombie that epochs must fence.
    /// Off by default.
    pub pause: u32,
    /// Weight of resuming one paused node. Off by default.
    pub resume: u32,
    /// The most nodes the nemesis keeps crashed or paused at once (a crash
    /// or pause picked when that many are down does nothing). A cluster of
    /// three replicas promises to survive one failure, not two.
    pub max_crashed: usize,
    /// The largest clock jump.
    pub max_clock_jump_ms: Millis,
}

impl Default for Nemesis {
    /// A fault every 0.1 to 1 second: partitions, one-way partitions,
    /// crashes of one node at a time, clock jumps of up to a second; heals
    /// and restarts more often than the faults they undo, so the cluster
    /// spends time both broken and whole.
    fn default() -> Self {
        Nemesis {
            min_interval_ms: 100,
            max_interval_ms: 1_000,
            partition: 2,
            one_way: 1,
            heal: 3,
            crash: 2,
            restart: 3,
            crash_all: 0,
            clock_jump: 1,
            pause: 0,
            resume: 0,
            max_crashed: 1,
            max_clock_jump_ms: 1_000,
        }
    }
}

/// A fault the nemesis picked, for the simulator to carry out.
#[derive(Debug)]
pub(super) enum Fault {
    /// Cut every link between the two groups, both ways.
    Partition(Vec<NodeId>, Vec<NodeId>),
    /// Cut every link from the first group to the second.
    OneWay(Vec<NodeId>, Vec<NodeId>),
    /// Restore every link.
    Heal,
    /// Crash this node.
    Crash(NodeId),
    /// Restart this node.
    Restart(NodeId),
    /// Crash every crashable node.
    CrashAll,
    /// Move this node's clock forward by so many milliseconds.
    ClockJump(NodeId, Millis),
    /// Pause this node.
    Pause(NodeId),
    /// Resume this node.
    Resume(NodeId),
}

/// The kinds of fault, to pick one by weight before choosing its victims.
#[derive(Clone, Copy)]
enum Kind {
    Partition,
    OneWay,
    Heal,
    Crash,
    Restart,
    CrashAll,
    ClockJump,
    Pause,
    Resume,
}

impl Nemesis {
    /// How long until the next fault.
    pub(super) fn interval(&self, rng: &mut fastrand::Rng) -> Millis {
        rng.u64(self.min_interval_ms..=self.max_interval_ms)
    }

    /// Picks the next fault, given every node, the crashable nodes that are
    /// running (and not paused), the nodes that are down and those that are
    /// paused; `None` if the fault drawn has no victim (a restart with
    /// nothing down).
    pub(super) fn pick(
        &self,
        rng: &mut fastrand::Rng,
        all: &[NodeId],
        crashable_up: &[NodeId],
        down: &[NodeId],
        paused: &[NodeId],
    ) -> Option<Fault> {
        let kinds = [
            (self.partition, Kind::Partition),
            (self.one_way, Kind::OneWay),
            (self.heal, Kind::Heal),
            (self.crash, Kind::Crash),
            (self.restart, Kind::Restart),
            (self.crash_all, Kind::CrashAll),
            (self.clock_jump, Kind::ClockJump),
            // Last, so that with their weights at 0 every other kind is
            // drawn exactly as before they existed: old seeds replay.
            (self.pause, Kind::Pause),
            (self.resume, Kind::Resume),
        ];
        let total: u32 = kinds.iter().map(|(weight, _)| weight).sum();
        if total == 0 {
            return None;
        }
        // A roll in 0..total lands in one kind's share of the total.
        let mut roll = rng.u32(0..total);
        let (_, kind) = kinds.into_iter().find(|&(weight, _)| {
            let here = roll < weight;
            roll = roll.saturating_sub(weight);
            here
        })?;
        let failed = down.len() + paused.len();
        match kind {
            Kind::Partition => split(rng, all).map(|(a, b)| Fault::Partition(a, b)),
            Kind::OneWay => split(rng, all).map(|(a, b)| Fault::OneWay(a, b)),
            Kind::Heal => Some(Fault::Heal),
            Kind::Crash | Kind::Pause if failed >= self.max_crashed => None,
            Kind::Crash => choose(rng, crashable_up).map(Fault::Crash),
            Kind::Restart => choose(rng, down).map(Fault::Restart),
            Kind::CrashAll => Some(Fault::CrashAll),
            Kind::ClockJump => {
                let by = rng.u64(1..=self.max_clock_jump_ms);
                choose(rng, all).map(|id| Fault::ClockJump(id, by))
            }
            Kind::Pause => choose(rng, crashable_up).map(Fault::Pause),
            Kind::Resume => choose(rng, paused).map(Fault::Resume),
        }
    }
}

/// One of `ids` at random.
fn choose(rng: &mut fastrand::Rng, ids: &[NodeId]) -> Option<NodeId> {
    (!ids.is_empty()).then(|| ids[rng.usize(0..ids.len())])
}

/// `ids` split at random in two non-empty groups, each sorted (for a
/// readable trace).
fn split(rng: &mut fastrand::Rng, ids: &[NodeId]) -> Option<(Vec<NodeId>, Vec<NodeId>)> {
    if ids.len() < 2 {
        return None;
    }
    let mut left = ids.to_vec();
    rng.shuffle(&mut left);
    let mut right = left.split_off(rng.usize(1..ids.len()));
    left.sort_unstable();
    right.sort_unstable();
    Some((left, right))
}
