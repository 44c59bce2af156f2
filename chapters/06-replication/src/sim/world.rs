//! The simulated world: the clock, the queue of things about to happen,
//! the nodes with their disks, and the faults a test (or the nemesis)
//! inflicts on them.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Display;

use super::nemesis::{Fault, Nemesis};
use super::network::{Fate, NetStats, Network};
use super::{Ctx, Disk, Millis, Node, NodeId};

/// The simulator's knobs. [`SimConfig::default`] is a perfect network and
/// no random faults; [`SimConfig::faulty`] turns everything on.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How often every running node's [`Node::on_tick`] runs, in virtual
    /// milliseconds.
    pub tick_ms: Millis,
    /// The shortest time a message takes from sender to receiver.
    pub min_delay_ms: Millis,
    /// The longest. The wider the range, the more messages overtake each
    /// other.
    pub max_delay_ms: Millis,
    /// The probability that a message is lost on the way (0.0 to 1.0).
    pub drop_probability: f64,
    /// The probability that a message arrives twice (0.0 to 1.0).
    pub duplicate_probability: f64,
    /// Random faults, or `None` for the scripted ones only.
    pub nemesis: Option<Nemesis>,
    /// Whether the trace lists every message (sent, lost, delivered) besides
    /// the faults. Off by default: it makes a long trace, for replaying one
    /// failing seed rather than running thousands.
    pub trace_messages: bool,
}

impl Default for SimConfig {
    /// Ticks every 10 ms; messages take 1 to 10 ms and are never lost; no
    /// nemesis; no messages in the trace.
    fn default() -> Self {
        SimConfig {
            tick_ms: 10,
            min_delay_ms: 1,
            max_delay_ms: 10,
            drop_probability: 0.0,
            duplicate_probability: 0.0,
            nemesis: None,
            trace_messages: false,
        }
    }
}

impl SimConfig {
    /// The default, plus a hostile network (messages take 1 to 50 ms; 2% are
    /// dropped, 2% duplicated) and the default [`Nemesis`].
    pub fn faulty() -> Self {
        SimConfig {
            max_delay_ms: 50,
            drop_probability: 0.02,
            duplicate_probability: 0.02,
            nemesis: Some(Nemesis::default()),
            ..SimConfig::default()
        }
    }
}

/// Something due to happen at a point of virtual time.
enum Event<M> {
    /// A message reaches `to`, if `to` is still in the life it was in when
    /// the message was sent (the same `incarnation`).
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: M,
        incarnation: u64,
    },
    /// Node `id` ticks, if it has not crashed since this tick was
    /// scheduled.
    Tick { id: NodeId, incarnation: u64 },
    /// The nemesis strikes.
    Fault,
}

// ANCHOR: queue
/// An event in the queue, ordered by time and then by `seq`, the order in
/// which events were scheduled. Two events due in the same millisecond are
/// common; breaking the tie by `seq`, never by anything a run does not
/// control, is what makes the order a function of the seed.
struct Scheduled<M> {
    at: Millis,
    seq: u64,
    event: Event<M>,
}

impl<M> Ord for Scheduled<M> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` pops the greatest, we want the earliest.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
// ANCHOR_END: queue

impl<M> PartialOrd for Scheduled<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<M> PartialEq for Scheduled<M> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<M> Eq for Scheduled<M> {}

/// Builds a node from its disk, at its first start and at every restart:
/// its recovery path. Takes the node's id and the time on its clock.
type StartFn<N> = Box<dyn Fn(NodeId, &mut <N as Node>::Disk, Millis) -> N>;

/// One node's place in the world: what survives its crashes, and the node
/// itself while it runs.
struct Slot<N: Node> {
    /// The running node, `None` while it is crashed.
    node: Option<N>,
    disk: N::Disk,
    start: StartFn<N>,
    /// Whether the nemesis and [`Sim::crash_all`] may crash it.
    crashable: bool,
    /// How far this node's clock is ahead of the simulation's.
    clock_offset: Millis,
    /// Which life of the node this is: bumped by every crash and every
    /// restart. Ticks and messages carry the incarnation they were meant
    /// for and are ignored by any other, so a message sent while the node
    /// was down is lost even if it restarts before the message would
    /// arrive (nobody was listening when it was sent).
    incarnation: u64,
    /// Whether the node is paused: it runs no handler, and the messages
    /// that reach it wait in `held`.
    paused: bool,
    /// The messages that reached the node while it was paused, in the order
    /// they arrived (a stopped process's socket buffers), with their
    /// senders.
    held: Vec<(NodeId, N::Msg)>,
}

/// A deterministic simulation of nodes of type `N`: same seed, same run.
pub struct Sim<N: Node> {
    rng: fastrand::Rng,
    now: Millis,
    /// The `seq` of the last event scheduled.
    seq: u64,
    queue: BinaryHeap<Scheduled<N::Msg>>,
    slots: BTreeMap<NodeId, Slot<N>>,
    network: Network,
    tick_ms: Millis,
    /// `None` when there are no random faults, or no more.
    nemesis: Option<Nemesis>,
    trace_messages: bool,
    history: Vec<(Millis, NodeId, N::Event)>,
    pauses: Vec<Pause>,
    trace: Vec<String>,
}

/// One pause of one node, for checkers that look for what it caused (a
/// leader replaced while it slept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// The node.
    pub id: NodeId,
    /// When it was paused.
    pub from: Millis,
    /// When it resumed, if it has. (A node killed while paused never
    /// resumes that pause.)
    pub resumed: Option<Millis>,
}

/// The panic for an id that names no node: a mistake in the test, not a
/// fault to simulate.
fn unknown(id: NodeId) -> ! {
    panic!("there is no node {id} in the simulation")
}

impl<N: Node> Sim<N> {
    /// An empty world at time 0, all of whose randomness comes from `seed`.
    /// Add nodes with [`Sim::add_node`].
    pub fn new(seed: u64, config: SimConfig) -> Self {
        assert!(config.tick_ms > 0, "tick_ms must be positive");
        let mut sim = Sim {
            rng: fastrand::Rng::with_seed(seed),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            slots: BTreeMap::new(),
            network: Network::new(&config),
            tick_ms: config.tick_ms,
            nemesis: config.nemesis,
            trace_messages: config.trace_messages,
            history: Vec::new(),
            pauses: Vec::new(),
            trace: Vec::new(),
        };
        if let Some(nemesis) = sim.nemesis {
            let first = nemesis.interval(&mut sim.rng);
            sim.schedule(first, Event::Fault);
        }
        sim
    }

    /// Adds node `id` with its initial `disk`, and starts it: `start` builds
    /// the node from its disk, now and after every restart. A node that is
    /// not `crashable` (a client whose history the checker needs whole) is
    /// spared by the nemesis and by [`Sim::crash_all`], though a test may
    /// still [`Sim::crash`] it.
    pub fn add_node(
        &mut self,
        id: NodeId,
        disk: N::Disk,
        crashable: bool,
        start: impl Fn(NodeId, &mut N::Disk, Millis) -> N + 'static,
    ) {
        let slot = Slot {
            node: None,
            disk,
            start: Box::new(start),
            crashable,
            clock_offset: 0,
            incarnation: 0,
            paused: false,
            held: Vec::new(),
        };
        assert!(
            self.slots.insert(id, slot).is_none(),
            "node {id} added twice"
        );
        self.boot(id);
    }

    /// Node `id`'s slot.
    fn slot(&self, id: NodeId) -> &Slot<N> {
        self.slots.get(&id).unwrap_or_else(|| unknown(id))
    }

    /// Builds node `id` from its disk and starts its ticks.
    fn boot(&mut self, id: NodeId) {
        let slot = self.slots.get_mut(&id).unwrap_or_else(|| unknown(id));
        let now = self.now + slot.clock_offset;
        slot.node = Some((slot.start)(id, &mut slot.disk, now));
        slot.incarnation += 1;
        let incarnation = slot.incarnation;
        // A random first tick, so that nodes do not tick in lockstep.
        let first = self.rng.u64(1..=self.tick_ms);
        self.schedule(first, Event::Tick { id, incarnation });
    }

    /// Puts `event` in the queue, due `after` milliseconds from now.
    fn schedule(&mut self, after: Millis, event: Event<N::Msg>) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at: self.now + after,
            seq: self.seq,
            event,
        });
    }

    /// Adds a line to the trace, stamped with the time.
    fn note(&mut self, what: impl Display) {
        self.trace.push(format!("{:>8} {what}", self.now));
    }

    // ANCHOR: step
    /// Carries out the next event in the queue, if there is one.
    fn step(&mut self) {
        let Some(next) = self.queue.pop() else {
            return;
        };
        // Time jumps to the next event: nothing happens in between, so an
        // idle second costs nothing.
        self.now = next.at;
        match next.event {
            Event::Deliver {
                from,
                to,
                msg,
                incarnation,
            } => {
                let slot = &self.slots[&to];
                let alive = slot.node.is_some() && slot.incarnation == incarnation;
                let arrives = self.network.arrives(from, to, alive);
                if self.trace_messages {
                    let verb = if arrives { "deliver" } else { "lose" };
                    self.note(format_args!("{verb} {from}->{to} {msg:?}"));
                }
                if arrives {
                    self.receive(to, from, msg);
                }
            }
            Event::Tick { id, incarnation } => {
                // A tick for an earlier life of the node ends its chain: a
                // crash stops a node's timers with the rest of its memory.
                // A paused node keeps its chain but misses the ticks.
                let slot = &self.slots[&id];
                if slot.incarnation == incarnation {
                    if !slot.paused {
                        self.with_node(id, |node, ctx, disk| node.on_tick(ctx, disk));
                    }
                    self.schedule(self.tick_ms, Event::Tick { id, incarnation });
                }
            }
            Event::Fault => {
                if let Some(nemesis) = self.nemesis {
                    let all: Vec<NodeId> = self.slots.keys().copied().collect();
                    let up = self.ids_where(|s| s.crashable && s.node.is_some() && !s.paused);
                    let down = self.ids_where(|slot| slot.node.is_none());
                    let paused = self.ids_where(|slot| slot.paused);
                    if let Some(fault) = nemesis.pick(&mut self.rng, &all, &up, &down, &paused) {
                        self.inflict(fault);
                    }
                    let next = nemesis.interval(&mut self.rng);
                    self.schedule(next, Event::Fault);
                }
            }
        }
    }
    // ANCHOR_END: step

    /// Hands `msg` from `from` to node `id`, or holds it there if the node
    /// is paused.
    fn receive(&mut self, id: NodeId, from: NodeId, msg: N::Msg) {
        let slot = self.slots.get_mut(&id).unwrap_or_else(|| unknown(id));
        if slot.paused {
            slot.held.push((from, msg));
        } else {
            self.with_node(id, |node, ctx, disk| node.on_message(ctx, disk, from, msg));
        }
    }

    /// Runs `f` on node `id` (if it is running) with a fresh [`Ctx`], then
    /// records the events it recorded and sends what it sent.
    fn with_node(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut N, &mut Ctx<'_, N::Msg, N::Event>, &mut N::Disk),
    ) {
        let slot = self.slots.get_mut(&id).unwrap_or_else(|| unknown(id));
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        let mut ctx = Ctx {
            id,
            now: self.now + slot.clock_offset,
            rng: &mut self.rng,
            outbox: Vec::new(),
            events: Vec::new(),
        };
        f(node, &mut ctx, &mut slot.disk);
        let Ctx { outbox, events, .. } = ctx;
        let now = self.now;
        self.history
            .extend(events.into_iter().map(|event| (now, id, event)));
        for (to, msg) in outbox {
            self.transmit(id, to, msg);
        }
    }

    /// Hands a message to the network, which decides when it arrives, if
    /// ever.
    fn transmit(&mut self, from: NodeId, to: NodeId, msg: N::Msg) {
        let incarnation = self.slot(to).incarnation;
        let fate = self.network.route(&mut self.rng, from, to);
        if self.trace_messages {
            self.note(format_args!("send {from}->{to} {msg:?}: {fate:?}"));
        }
        let Fate::Arrives { delay, duplicate } = fate else {
            return;
        };
        let deliver = |msg| Event::Deliver {
            from,
            to,
            msg,
            incarnation,
        };
        if let Some(again) = duplicate {
            self.schedule(again, deliver(msg.clone()));
        }
        self.schedule(delay, deliver(msg));
    }

    /// Carries out a fault the nemesis picked.
    fn inflict(&mut self, fault: Fault) {
        match fault {
            Fault::Partition(a, b) => self.partition(&[&a, &b]),
            Fault::OneWay(from, to) => self.cut_one_way(&from, &to),
            Fault::Heal => self.heal(),
            Fault::Crash(id) => self.crash(id),
            Fault::Restart(id) => self.restart(id),
            Fault::CrashAll => self.crash_all(),
            Fault::ClockJump(id, by) => self.jump_clock(id, by),
            Fault::Pause(id) => self.pause(id),
            Fault::Resume(id) => self.resume(id),
        }
    }

    /// The ids of the nodes whose slot satisfies `keep`, in order.
    fn ids_where(&self, keep: impl Fn(&Slot<N>) -> bool) -> Vec<NodeId> {
        let slots = self.slots.iter();
        slots
            .filter(|(_, slot)| keep(slot))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Runs the simulation for `ms` milliseconds of virtual time.
    pub fn run_for(&mut self, ms: Millis) {
        self.run_until(|_| false, ms);
    }

    /// Runs the simulation until `done` holds (checked before every event)
    /// or `within_ms` milliseconds have passed, whichever comes first.
    /// Returns whether `done` held.
    pub fn run_until(&mut self, mut done: impl FnMut(&Self) -> bool, within_ms: Millis) -> bool {
        let deadline = self.now + within_ms;
        loop {
            if done(self) {
                return true;
            }
            if self.queue.peek().is_none_or(|next| next.at > deadline) {
                self.now = deadline;
                return done(self);
            }
            self.step();
        }
    }

    /// Cuts every link between nodes of different `groups`, both ways:
    /// `partition(&[&[1], &[2, 3]])` isolates node 1. Links already cut
    /// stay cut; nodes in no group keep their links.
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        self.note(format_args!("partition {groups:?}"));
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                self.network.cut(a, b);
                self.network.cut(b, a);
            }
        }
    }

    /// Cuts every link from the nodes of `from` to the nodes of `to`, one
    /// way: `to` no longer hears `from`, but `from` still hears `to`.
    pub fn cut_one_way(&mut self, from: &[NodeId], to: &[NodeId]) {
        self.note(format_args!("cut one way {from:?} -> {to:?}"));
        self.network.cut(from, to);
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.note("heal");
        self.network.heal();
    }

    // ANCHOR: crash
    /// Crashes node `id`, if it is running: its memory is lost, and its disk
    /// keeps what was synced and perhaps some of what was not. What the
    /// node says of the crash ([`Node::on_crash`]) goes into the history.
    pub fn crash(&mut self, id: NodeId) {
        let slot = self.slots.get_mut(&id).unwrap_or_else(|| unknown(id));
        // Dropping the node is losing its memory: its state, its buffers.
        let Some(node) = slot.node.take() else {
            return;
        };
        // Its ticks and the messages on their way to it were meant for this
        // life; no other sees them, as a restarted process never sees what
        // was sent on its old connections. A paused process dies as well
        // (`SIGKILL` needs no `SIGCONT`), with what it had not read.
        slot.incarnation += 1;
        slot.paused = false;
        slot.held.clear();
        slot.disk.crash(&mut self.rng);
        let now = self.now;
        let events = node.on_crash(&slot.disk);
        self.history
            .extend(events.into_iter().map(|event| (now, id, event)));
        self.note(format_args!("crash {id}"));
    }
    // ANCHOR_END: crash

    /// Restarts node `id`, if it is crashed: its start function rebuilds it
    /// from what its disk kept.
    pub fn restart(&mut self, id: NodeId) {
        if self.slot(id).node.is_none() {
            self.note(format_args!("restart {id}"));
            self.boot(id);
        }
    }

    /// Crashes every running crashable node at once: a correlated failure,
    /// such as a power loss, which no amount of replication survives unless
    /// something was synced.
    pub fn crash_all(&mut self) {
        self.note("crash all");
        for id in self.ids_where(|slot| slot.crashable && slot.node.is_some()) {
            self.crash(id);
        }
    }

    /// Moves node `id`'s clock `by` milliseconds ahead of the others'.
    ///
    /// Forward only: [`Ctx::now`] stands for a monotonic clock (Rust's
    /// `Instant`, Java's `System.nanoTime`), which never goes back but can
    /// leap: a VM paused and resumed, a process stopped with SIGSTOP, a long
    /// garbage-collection pause. To the node, every timeout it was waiting
    /// for expires at once: a follower decides its leader is dead, a leader
    /// that its followers have fallen behind. A wall clock can also go back
    /// (NTP stepping it), and a timeout measured on one then fires late or
    /// never; that is why timeouts belong on a monotonic clock, and why
    /// `now` is one.
    pub fn jump_clock(&mut self, id: NodeId, by: Millis) {
        let slot = self.slots.get_mut(&id).unwrap_or_else(|| unknown(id));
        slot.clock_offset += by;
        self.note(format_args!("clock of {id} jumps {by} ms"));
    }

    /// Pauses node `id`, if it is running: it keeps its memory and its
    /// disk, but handles nothing until [`Sim::resume`]; messages that reach
    /// it wait. Its clock goes on, so when it resumes every timeout it was
    /// waiting for has passed at once, and it acts on what it knew before:
    /// a leader that does not know it was replaced, a controller that does
    /// not know it was deposed. What a process stopped with `SIGSTOP`, or
    /// stalled by a long garbage collection, does when it wakes.
    pub fn pause(&mut self, id: NodeId) {
        let slot = self.slots.get_mut(&id).unwrap_or_else(|| unknown(id));
        if slot.node.is_some() && !slot.paused {
            slot.paused = true;
            self.pauses.push(Pause {
                id,
                from: self.now,
                resumed: None,
            });
            self.note(format_args!("pause {id}"));
        }
    }

    /// Resumes node `id`, if it is paused: it handles, in order, the
    /// messages that reached it meanwhile, then goes on as before.
    pub fn resume(&mut self, id: NodeId) {
        let slot = self.slots.get_mut(&id).unwrap_or_else(|| unknown(id));
        if !slot.paused {
            return;
        }
        slot.paused = false;
        let held = std::mem::take(&mut slot.held);
        let now = self.now;
        let open = self.pauses.iter_mut().rev().find(|p| p.id == id);
        if let Some(pause) = open {
            pause.resumed = Some(now);
        }
        self.note(format_args!(
            "resume {id} ({} messages waiting)",
            held.len()
        ));
        for (from, msg) in held {
            self.with_node(id, |node, ctx, disk| node.on_message(ctx, disk, from, msg));
        }
    }

    /// Every pause so far, in the order they began.
    pub fn pauses(&self) -> &[Pause] {
        &self.pauses
    }

    /// Whether node `id` is paused.
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.slot(id).paused
    }

    /// Prints what a replayed run did (its trace, then its history) and
    /// how its check went; returns whether it passed. The `simulate`
    /// binaries' `--seed`.
    pub fn print_replay<R: std::fmt::Debug>(&self, seed: u64, result: &Result<R, String>) -> bool {
        for line in self.trace() {
            println!("{line}");
        }
        for (at, node, event) in self.history() {
            println!("{at:>6} ms  node {node:<3} {event:?}");
        }
        match result {
            Ok(report) => println!("seed {seed} passed: {report:?}"),
            Err(message) => println!("seed {seed} failed: {message}"),
        }
        result.is_ok()
    }

    /// Lets `nemesis` loose from now on: for a run that lets its cluster
    /// form in peace first (the network's drops and delays aside), then
    /// brings the faults.
    pub fn unleash(&mut self, nemesis: Nemesis) {
        if self.nemesis.replace(nemesis).is_none() {
            let first = nemesis.interval(&mut self.rng);
            self.schedule(first, Event::Fault);
        }
    }

    /// Ends the faults and lets the cluster recover: stops the nemesis for
    /// good, heals every link, resumes every paused node, restarts every
    /// crashed node, and runs for
    /// `ms`. A checker then tests *liveness*: with the faults gone, has
    /// every acknowledged write become readable? (Random drops and
    /// duplicates go on: a healthy network still loses a packet now and
    /// then, and the protocol's retries must cope.)
    pub fn heal_all_and_settle(&mut self, ms: Millis) {
        self.nemesis = None;
        self.heal();
        for id in self.ids_where(|slot| slot.paused) {
            self.resume(id);
        }
        for id in self.ids_where(|slot| slot.node.is_none()) {
            self.restart(id);
        }
        self.run_for(ms);
    }

    /// Delivers `msg` from `from` to `to` now, bypassing the network: a
    /// test's way to poke a node. Returns false if `to` is crashed (the
    /// message is then lost); a paused node gets it when it resumes.
    pub fn deliver(&mut self, from: NodeId, to: NodeId, msg: N::Msg) -> bool {
        let running = self.node(to).is_some();
        if running {
            self.receive(to, from, msg);
        }
        running
    }

    /// Sends `msg` from `from` to `to` through the network, as if node
    /// `from` had sent it: delays, drops, duplicates and partitions apply.
    /// `from` need not be a node (an outside client).
    pub fn send_as(&mut self, from: NodeId, to: NodeId, msg: N::Msg) {
        self.transmit(from, to, msg);
    }

    /// The simulation's time (each node's clock may be ahead of it).
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The ids of all nodes, running or crashed, in order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.slots.keys().copied()
    }

    /// Node `id`, or `None` while it is crashed (or if there is no such
    /// node).
    pub fn node(&self, id: NodeId) -> Option<&N> {
        self.slots.get(&id)?.node.as_ref()
    }

    /// Node `id`, mutably, or `None` while it is crashed (or if there is no
    /// such node). Changing a node from outside is the test's business: the
    /// simulation does not see it.
    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut N> {
        self.slots.get_mut(&id)?.node.as_mut()
    }

    /// Node `id`'s disk, crashed or not. Panics if there is no such node.
    pub fn disk(&self, id: NodeId) -> &N::Disk {
        &self.slot(id).disk
    }

    /// What the nodes recorded, in order: the time (the simulation's), the
    /// node, the event.
    pub fn history(&self) -> &[(Millis, NodeId, N::Event)] {
        &self.history
    }

    /// What happened, one line each: faults, crashes and restarts, and
    /// every message if [`SimConfig::trace_messages`] is on.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// What the network did so far.
    pub fn stats(&self) -> &NetStats {
        self.network.stats()
    }

    /// The simulation's random source, for the test's own choices (which
    /// client writes what, and when), so that they too follow the seed.
    pub fn rng(&mut self) -> &mut fastrand::Rng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_pops_by_time_then_by_order_of_scheduling() {
        let mut queue = BinaryHeap::new();
        for (seq, at) in [(1, 30), (2, 10), (3, 30), (4, 10)] {
            queue.push(Scheduled::<()> {
                at,
                seq,
                event: Event::Fault,
            });
        }
        let order: Vec<_> = std::iter::from_fn(|| queue.pop().map(|s| (s.at, s.seq))).collect();
        assert_eq!(order, [(10, 2), (10, 4), (30, 1), (30, 3)]);
    }
}
