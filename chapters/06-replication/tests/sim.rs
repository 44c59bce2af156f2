//! The simulator's own tests, on a toy node: before the simulator is
//! trusted to find bugs in replication, it must be shown to do what it
//! claims (be deterministic, lose, duplicate and reorder messages at the
//! rates it is told, cut links one way, lose exactly the unsynced writes in
//! a crash and let the node tell the history what it kept, move one node's
//! clock, pause a node) and nothing else.

use std::collections::BTreeSet;

use ch06_replication::sim::{
    Ctx, Disk, Millis, Nemesis, Node, NodeId, Pause, Sim, SimConfig, run_seeds,
};

/// The toy's messages.
#[derive(Clone, Debug, PartialEq)]
enum Msg {
    /// Answered with a `Pong` of the same number.
    Ping(u64),
    Pong(u64),
    /// Write the number to disk.
    Write(u64),
}

/// What the toy records.
#[derive(Clone, Debug, PartialEq)]
enum Event {
    /// A message arrived from that node.
    Got(NodeId, Msg),
    /// A tick, with the time on the node's own clock.
    Ticked(Millis),
    /// The node crashed, and its disk kept this many numbers.
    Crashed(usize),
}

/// A disk of numbers: what was synced, then what was written since.
#[derive(Clone, Debug, Default)]
struct ToyDisk {
    synced: Vec<u64>,
    unsynced: Vec<u64>,
}

impl ToyDisk {
    fn write(&mut self, value: u64) {
        self.unsynced.push(value);
    }

    fn sync(&mut self) {
        self.synced.append(&mut self.unsynced);
    }

    /// What a reader sees: synced or not.
    fn contents(&self) -> Vec<u64> {
        [&self.synced[..], &self.unsynced[..]].concat()
    }
}

impl Disk for ToyDisk {
    fn crash(&mut self, rng: &mut fastrand::Rng) {
        // A random prefix of the unsynced writes made it; it is on the
        // platter now, as good as synced.
        let kept = rng.usize(0..=self.unsynced.len());
        self.unsynced.truncate(kept);
        self.sync();
    }
}

/// A node that pings its peers in turn, one per tick, writing every ping's
/// number to its disk; answers pings; writes what it is told to, syncing
/// every `SYNC_EVERY` writes.
struct Toy {
    peers: Vec<NodeId>,
    log_ticks: bool,
    pinged: u64,
    writes: u64,
    /// What the disk held when the node started.
    recovered: Vec<u64>,
    /// The node's clock when it started.
    started_at: Millis,
}

const SYNC_EVERY: u64 = 4;

impl Node for Toy {
    type Msg = Msg;
    type Disk = ToyDisk;
    type Event = Event;

    fn on_message(
        &mut self,
        ctx: &mut Ctx<'_, Msg, Event>,
        disk: &mut ToyDisk,
        from: NodeId,
        msg: Msg,
    ) {
        ctx.record(Event::Got(from, msg.clone()));
        match msg {
            Msg::Ping(n) => ctx.send(from, Msg::Pong(n)),
            Msg::Pong(_) => {}
            Msg::Write(value) => self.write(disk, value),
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Msg, Event>, disk: &mut ToyDisk) {
        if self.log_ticks {
            ctx.record(Event::Ticked(ctx.now()));
        }
        if !self.peers.is_empty() {
            let peer = self.peers[self.pinged as usize % self.peers.len()];
            ctx.send(peer, Msg::Ping(self.pinged));
            self.write(disk, self.pinged);
            self.pinged += 1;
        }
    }

    fn on_crash(&self, disk: &ToyDisk) -> Vec<Event> {
        vec![Event::Crashed(disk.contents().len())]
    }
}

impl Toy {
    fn write(&mut self, disk: &mut ToyDisk, value: u64) {
        disk.write(value);
        self.writes += 1;
        if self.writes.is_multiple_of(SYNC_EVERY) {
            disk.sync();
        }
    }
}

/// A start function: the toy rebuilt from its disk.
fn toy(peers: Vec<NodeId>, log_ticks: bool) -> impl Fn(NodeId, &mut ToyDisk, Millis) -> Toy {
    move |_id, disk, now| Toy {
        peers: peers.clone(),
        log_ticks,
        pinged: 0,
        writes: 0,
        recovered: disk.contents(),
        started_at: now,
    }
}

/// Nodes `1..=n`, crashable, each pinging all the others.
fn cluster(seed: u64, config: SimConfig, n: NodeId) -> Sim<Toy> {
    let mut sim = Sim::new(seed, config);
    for id in 1..=n {
        let peers = (1..=n).filter(|&p| p != id).collect();
        sim.add_node(id, ToyDisk::default(), true, toy(peers, false));
    }
    sim
}

/// Nodes `1..=n`, crashable, silent (they only answer), ticks logged.
fn quiet(seed: u64, config: SimConfig, n: NodeId) -> Sim<Toy> {
    let mut sim = Sim::new(seed, config);
    for id in 1..=n {
        sim.add_node(id, ToyDisk::default(), true, toy(Vec::new(), true));
    }
    sim
}

/// The messages `to` received from `from`, in order.
fn received(sim: &Sim<Toy>, from: NodeId, to: NodeId) -> Vec<Msg> {
    let history = sim.history().iter();
    let got = history.filter_map(|(_, id, event)| match event {
        Event::Got(sender, msg) if *id == to && *sender == from => Some(msg.clone()),
        _ => None,
    });
    got.collect()
}

/// The numbers of the pings `to` received from `from`, in order.
fn pings(sim: &Sim<Toy>, from: NodeId, to: NodeId) -> Vec<u64> {
    let msgs = received(sim, from, to).into_iter();
    let numbers = msgs.filter_map(|msg| match msg {
        Msg::Ping(n) => Some(n),
        _ => None,
    });
    numbers.collect()
}

/// A run with every fault on, and messages in the trace.
fn chaotic_run(seed: u64) -> (String, Vec<String>) {
    let nemesis = Nemesis {
        crash_all: 1,
        ..Nemesis::default()
    };
    let config = SimConfig {
        nemesis: Some(nemesis),
        trace_messages: true,
        ..SimConfig::faulty()
    };
    let mut sim = cluster(seed, config, 3);
    sim.run_for(20_000);
    sim.heal_all_and_settle(1_000);
    (format!("{:?}", sim.history()), sim.trace().to_vec())
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let (history, trace) = chaotic_run(42);
    let (history_again, trace_again) = chaotic_run(42);
    assert_eq!(history, history_again);
    assert_eq!(trace, trace_again);

    let (other_history, other_trace) = chaotic_run(43);
    assert_ne!(history, other_history);
    assert_ne!(trace, other_trace);

    // And the run was not a quiet one: the nemesis did all it can.
    for fault in [
        "partition",
        "cut one way",
        "heal",
        "crash 1",
        "restart",
        "crash all",
        "clock of",
        "lose",
        "deliver",
    ] {
        let seen = trace.iter().any(|line| line.contains(fault));
        assert!(seen, "no {fault:?} in the trace");
    }
}

#[test]
fn the_network_drops_duplicates_and_reorders_at_the_configured_rates() {
    let config = SimConfig {
        min_delay_ms: 1,
        max_delay_ms: 100,
        drop_probability: 0.1,
        duplicate_probability: 0.1,
        ..SimConfig::default()
    };
    let mut sim = quiet(7, config, 2);
    let sent = 10_000;
    for n in 0..sent {
        sim.send_as(1, 2, Msg::Ping(n));
        sim.run_for(1);
    }
    sim.run_for(200);

    let got = pings(&sim, 1, 2);
    let distinct: BTreeSet<u64> = got.iter().copied().collect();
    let lost = sent - distinct.len() as u64;
    let duplicates = got.len() - distinct.len();
    // 10% lost; 10% of the rest arrive twice.
    assert!((800..=1_200).contains(&lost), "{lost} lost of {sent}");
    assert!(
        (700..=1_100).contains(&duplicates),
        "{duplicates} duplicates"
    );
    // Sent a millisecond apart with delays of up to 100 ms: many overtake.
    let overtaken = got.windows(2).filter(|pair| pair[1] < pair[0]).count();
    assert!(overtaken > 2_000, "only {overtaken} reordered");
    // The counts agree with what the nodes saw (node 2 answered each ping
    // with a pong, which went through the same network).
    let pongs = received(&sim, 2, 1).len();
    assert_eq!(sim.stats().delivered, (got.len() + pongs) as u64);
}

#[test]
fn a_network_with_one_delay_keeps_the_order_of_sending() {
    // The control for the reordering above: ties in time are broken by
    // order of scheduling, so with no spread in delays nothing overtakes.
    let config = SimConfig {
        min_delay_ms: 5,
        max_delay_ms: 5,
        ..SimConfig::default()
    };
    let mut sim = quiet(7, config, 2);
    for n in 0..1_000 {
        sim.send_as(1, 2, Msg::Ping(n));
        if n % 3 == 0 {
            sim.run_for(1);
        }
    }
    sim.run_for(10);
    assert_eq!(pings(&sim, 1, 2), (0..1_000).collect::<Vec<_>>());
}

#[test]
fn a_one_way_cut_blocks_one_direction_only_until_healed() {
    let mut sim = quiet(1, SimConfig::default(), 2);
    sim.cut_one_way(&[1], &[2]);
    for n in 0..100 {
        sim.send_as(1, 2, Msg::Ping(n));
        sim.send_as(2, 1, Msg::Ping(n));
    }
    sim.run_for(100);
    // 2 hears nothing from 1: neither its pings nor its answers.
    assert_eq!(received(&sim, 1, 2), []);
    assert_eq!(pings(&sim, 2, 1).len(), 100);
    assert_eq!(sim.stats().cut, 200);

    sim.heal();
    for n in 100..200 {
        sim.send_as(1, 2, Msg::Ping(n));
    }
    sim.run_for(100);
    assert_eq!(pings(&sim, 1, 2).len(), 100);
    assert_eq!(received(&sim, 2, 1).len(), 200, "100 pings, 100 pongs");
}

#[test]
fn a_partition_cuts_between_groups_both_ways_and_catches_messages_in_flight() {
    let mut sim = quiet(1, SimConfig::default(), 3);
    // Sent before the partition, due after it: lost with the link.
    sim.send_as(1, 2, Msg::Ping(0));
    sim.partition(&[&[1], &[2, 3]]);
    for (from, to) in [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2)] {
        sim.send_as(from, to, Msg::Ping(1));
    }
    sim.run_for(100);
    for (from, to) in [(1, 2), (2, 1), (1, 3), (3, 1)] {
        assert_eq!(received(&sim, from, to), [], "{from} -> {to}");
    }
    // 2 and 3 still talk: each got the other's ping and the answer to its
    // own, in either order.
    for (from, to) in [(2, 3), (3, 2)] {
        let got = received(&sim, from, to);
        assert!(got.len() == 2 && got.contains(&Msg::Ping(1)) && got.contains(&Msg::Pong(1)));
    }
}

#[test]
fn a_crash_loses_some_unsynced_writes_never_a_synced_one() {
    let written: Vec<u64> = (0..10).collect();
    let synced = 8; // 10 writes, a sync every 4
    let mut kept_counts = BTreeSet::new();
    for seed in 0..100 {
        let mut sim = quiet(seed, SimConfig::default(), 1);
        for &value in &written {
            assert!(sim.deliver(0, 1, Msg::Write(value)));
        }
        assert_eq!(sim.disk(1).contents(), written);
        sim.crash(1);
        assert!(sim.node(1).is_none(), "a crashed node is gone");
        assert!(!sim.deliver(0, 1, Msg::Write(99)), "and hears nothing");

        let after = sim.disk(1).contents();
        assert!(after.len() >= synced, "seed {seed} lost synced writes");
        assert_eq!(after, written[..after.len()], "seed {seed}: not a prefix");
        kept_counts.insert(after.len());
        // The node said what the crash kept, into the history, at the
        // crash's time.
        let last = sim.history().last();
        assert_eq!(last, Some(&(sim.now(), 1, Event::Crashed(after.len()))));

        sim.restart(1);
        assert_eq!(sim.node(1).unwrap().recovered, after, "rebuilt from disk");
        // What survived one crash is durable: a second crash keeps it.
        sim.crash(1);
        assert_eq!(sim.disk(1).contents(), after);
    }
    // Losing both unsynced writes, one, or none all happen.
    assert_eq!(kept_counts, BTreeSet::from([8, 9, 10]));
}

#[test]
fn a_crashed_node_neither_ticks_nor_receives_and_its_restart_starts_afresh() {
    let mut sim = quiet(3, SimConfig::default(), 2);
    sim.run_for(1_000);
    // Node 1's ticks in the second after `from`.
    let ticks = |sim: &Sim<Toy>, from: Millis| {
        let history = sim.history().iter();
        let ticks = history.filter(|(at, id, event)| {
            (from..from + 1_000).contains(at) && *id == 1 && matches!(event, Event::Ticked(_))
        });
        ticks.count()
    };
    assert_eq!(ticks(&sim, 0), 100);

    // A message on its way when the receiver crashes is lost, even if the
    // receiver is back before it would have arrived; so is one sent while
    // the receiver is down.
    sim.send_as(2, 1, Msg::Ping(1));
    sim.crash(1);
    sim.send_as(2, 1, Msg::Ping(2));
    sim.run_for(500);
    assert_eq!(ticks(&sim, 1_000), 0, "no ticks while crashed");
    sim.send_as(2, 1, Msg::Ping(3));
    sim.restart(1);
    sim.run_for(100);
    assert_eq!(pings(&sim, 2, 1), [], "nothing reaches another life");
    assert_eq!(sim.stats().lost_to_crash, 3);

    // Many quick crashes and restarts leave one chain of ticks, not many.
    for _ in 0..5 {
        sim.crash(1);
        sim.restart(1);
        sim.run_for(3);
    }
    let from = sim.now() + 10;
    sim.run_for(1_010);
    assert_eq!(ticks(&sim, from), 100);

    sim.send_as(2, 1, Msg::Ping(4));
    sim.run_for(100);
    assert_eq!(pings(&sim, 2, 1), [4]);
}

#[test]
fn a_clock_jump_moves_one_nodes_clock_only() {
    let mut sim = quiet(5, SimConfig::default(), 2);
    sim.run_for(100);
    let jumped_at = sim.now();
    sim.jump_clock(1, 5_000);
    sim.run_for(100);
    let mut checked = 0;
    for (at, id, event) in sim.history() {
        let Event::Ticked(clock) = event else {
            continue;
        };
        let ahead = if *id == 1 && *at > jumped_at {
            5_000
        } else {
            0
        };
        assert_eq!(*clock, at + ahead, "node {id} at {at}");
        checked += 1;
    }
    assert_eq!(checked, 40);
    // The node's clock survives its restart (it is the machine's).
    sim.crash(1);
    sim.restart(1);
    assert_eq!(sim.node(1).unwrap().started_at, sim.now() + 5_000);
    assert_eq!(sim.node(2).unwrap().started_at, 0);
}

#[test]
fn a_paused_node_misses_its_ticks_and_gets_what_waited_in_order_when_resumed() {
    // One delay for every message, so that the network keeps their order.
    let config = SimConfig {
        min_delay_ms: 5,
        max_delay_ms: 5,
        ..SimConfig::default()
    };
    let mut sim = quiet(6, config, 2);
    sim.run_for(100);
    sim.pause(1);
    assert!(sim.is_paused(1) && !sim.is_paused(2));
    let paused_at = sim.now();
    // Sent while it is paused: they wait for it, they are not lost (a
    // stopped process's socket still takes bytes).
    for n in 1..=3 {
        sim.send_as(2, 1, Msg::Ping(n));
    }
    assert!(sim.deliver(2, 1, Msg::Ping(4)));
    sim.run_for(1_000);
    assert_eq!(pings(&sim, 2, 1), [], "nothing handled while paused");
    let ticked_while_paused = sim
        .history()
        .iter()
        .any(|(at, id, event)| *id == 1 && *at > paused_at && matches!(event, Event::Ticked(_)));
    assert!(!ticked_while_paused);

    // Resumed: what waited comes first, in the order it arrived (the poke
    // was first), then the node goes on with its clock a second later.
    sim.resume(1);
    assert!(!sim.is_paused(1));
    assert_eq!(pings(&sim, 2, 1), [4, 1, 2, 3]);
    sim.run_for(100);
    assert_eq!(received(&sim, 1, 2).len(), 4, "each ping answered");
    let first_tick = sim
        .history()
        .iter()
        .find_map(|(at, id, event)| match event {
            Event::Ticked(clock) if *id == 1 && *at > paused_at => Some(*clock),
            _ => None,
        });
    assert!(first_tick.is_some_and(|clock| clock > paused_at + 1_000));
    assert!(
        sim.trace()
            .iter()
            .any(|line| line.ends_with("resume 1 (4 messages waiting)"))
    );
    let resumed_at = sim.now() - 100;
    assert_eq!(
        sim.pauses(),
        [Pause {
            id: 1,
            from: paused_at,
            resumed: Some(resumed_at),
        }]
    );

    // A paused node can be killed: what waited dies with it.
    sim.pause(2);
    sim.send_as(1, 2, Msg::Ping(5));
    sim.run_for(100);
    sim.crash(2);
    sim.restart(2);
    assert!(!sim.is_paused(2));
    assert_eq!(sim.pauses()[1].resumed, None, "killed, not resumed");
    sim.run_for(100);
    assert_eq!(pings(&sim, 1, 2), []);
}

#[test]
fn the_nemesis_pauses_and_resumes_within_its_limits() {
    let config = SimConfig {
        nemesis: Some(Nemesis {
            crash: 0,
            pause: 4,
            resume: 3,
            ..Nemesis::default()
        }),
        ..SimConfig::faulty()
    };
    let mut sim = cluster(12, config, 3);
    let (mut most_paused, mut samples_paused) = (0, 0);
    for _ in 0..600 {
        sim.run_for(100);
        let paused = sim.ids().filter(|&id| sim.is_paused(id)).count();
        most_paused = most_paused.max(paused);
        samples_paused += usize::from(paused > 0);
    }
    assert_eq!(most_paused, 1, "max_crashed counts the paused");
    assert!(
        samples_paused > 60 && samples_paused < 540,
        "{samples_paused}"
    );
    sim.heal_all_and_settle(1_000);
    assert!(sim.ids().all(|id| !sim.is_paused(id)));
}

#[test]
fn crash_all_spares_the_nodes_that_are_not_crashable() {
    let mut sim = cluster(9, SimConfig::default(), 2);
    sim.add_node(3, ToyDisk::default(), false, toy(vec![1, 2], false));
    sim.run_for(100);
    sim.crash_all();
    assert!(sim.node(1).is_none() && sim.node(2).is_none());
    assert!(sim.node(3).is_some());
    assert!(sim.trace().iter().any(|line| line.ends_with("crash all")));
}

#[test]
fn the_nemesis_keeps_to_its_limits_and_the_cluster_recovers_after() {
    let config = SimConfig {
        nemesis: Some(Nemesis {
            crash: 5,
            ..Nemesis::default()
        }),
        ..SimConfig::faulty()
    };
    let mut sim = cluster(11, config, 3);
    let mut most_down = 0;
    for _ in 0..600 {
        sim.run_for(100);
        let down = sim.ids().filter(|&id| sim.node(id).is_none()).count();
        most_down = most_down.max(down);
    }
    assert_eq!(most_down, 1, "max_crashed is 1");
    let faults_before = sim.trace().len();
    assert!(
        faults_before > 60,
        "only {faults_before} faults in a minute"
    );

    // Liveness: once the faults stop, every node hears from every other.
    sim.heal_all_and_settle(1_000);
    let settled_at = sim.now() - 1_000;
    let trace = &sim.trace()[faults_before..];
    assert!(trace.iter().all(|line| !line.contains("crash")));
    for from in 1..=3 {
        for to in (1..=3).filter(|&to| to != from) {
            let recent = sim.history().iter().any(|(at, id, event)| {
                *at > settled_at + 500
                    && *id == to
                    && matches!(event, Event::Got(f, _) if *f == from)
            });
            assert!(recent, "{to} no longer hears {from}");
        }
    }
}

#[test]
fn run_until_stops_when_the_condition_holds_or_at_the_deadline() {
    let mut sim = cluster(2, SimConfig::default(), 2);
    let five_pings = |sim: &Sim<Toy>| pings(sim, 1, 2).len() >= 5;
    assert!(sim.run_until(five_pings, 10_000));
    assert_eq!(pings(&sim, 1, 2).len(), 5, "stopped as soon as it held");
    assert!(sim.now() < 200);

    let before = sim.now();
    assert!(!sim.run_until(|_| false, 500));
    assert_eq!(sim.now(), before + 500);
}

#[test]
fn the_runner_reports_the_lowest_failing_seed_and_its_replay() {
    let replay = |seed: u64| {
        format!("cargo run --release -p ch06-replication --bin simulate -- --seed {seed}")
    };
    let failure = run_seeds(
        0..1_000,
        |seed| match seed {
            // The first failure is slow, so that another thread finds a
            // later one first: the report must still be the first.
            37 => {
                std::thread::sleep(std::time::Duration::from_millis(100));
                Err("lost write 5".to_string())
            }
            s if s > 37 && s % 10 == 1 => Err(format!("other failure {s}")),
            _ => Ok(()),
        },
        replay,
    )
    .unwrap_err();
    assert_eq!(failure.seed, 37);
    assert_eq!(failure.message, "lost write 5");
    assert_eq!(
        failure.to_string(),
        "seed 37 failed: lost write 5\n\
         replay: cargo run --release -p ch06-replication --bin simulate -- --seed 37"
    );

    let broken = |seed| {
        assert!(seed != 4, "seed {seed} broke");
        Ok(())
    };
    let failure = run_seeds(0..10, broken, |_| String::new()).unwrap_err();
    assert_eq!(failure.seed, 4);
    assert_eq!(failure.message, "panicked: seed 4 broke");

    assert_eq!(run_seeds(5..25, |_| Ok(()), |_| String::new()), Ok(20));
    assert_eq!(run_seeds(0..0, |_| Ok(()), |_| String::new()), Ok(0));
}

#[test]
fn the_runner_runs_real_simulations() {
    // The shape of a real harness: a run per seed, a check over its history.
    let passed = run_seeds(
        0..20,
        |seed| {
            let mut sim = cluster(seed, SimConfig::faulty(), 3);
            sim.run_for(5_000);
            sim.heal_all_and_settle(500);
            // Every pong answers a ping that arrived: the network invents
            // nothing.
            let mut asked = BTreeSet::new();
            for (_, id, event) in sim.history() {
                match event {
                    Event::Got(from, Msg::Ping(n)) => {
                        asked.insert((*id, *from, *n));
                    }
                    Event::Got(from, Msg::Pong(n)) if !asked.contains(&(*from, *id, *n)) => {
                        return Err(format!("pong {n} from {from} to {id} was never asked"));
                    }
                    _ => {}
                }
            }
            Ok(())
        },
        |seed| format!("--seed {seed}"),
    );
    assert_eq!(passed, Ok(20));
}

/// A node made of another: its messages and events wrap the part's.
struct Composite {
    part: Toy,
}

#[derive(Clone, Debug, PartialEq)]
enum Wrapped {
    Part(Msg),
}

#[derive(Clone, Debug, PartialEq)]
enum WrappedEvent {
    Part(Event),
}

impl Node for Composite {
    type Msg = Wrapped;
    type Disk = ToyDisk;
    type Event = WrappedEvent;

    fn on_message(
        &mut self,
        ctx: &mut Ctx<'_, Wrapped, WrappedEvent>,
        disk: &mut ToyDisk,
        from: NodeId,
        msg: Wrapped,
    ) {
        let Wrapped::Part(msg) = msg;
        ctx.map(Wrapped::Part, WrappedEvent::Part, |ctx| {
            self.part.on_message(ctx, disk, from, msg)
        });
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_, Wrapped, WrappedEvent>, disk: &mut ToyDisk) {
        let clock = ctx.now();
        let seen = ctx.map(Wrapped::Part, WrappedEvent::Part, |ctx| {
            self.part.on_tick(ctx, disk);
            ctx.now()
        });
        assert_eq!(seen, clock, "the part sees the node's clock");
    }
}

#[test]
fn a_node_made_of_another_hands_it_a_context_of_its_own_kind() {
    let mut sim: Sim<Composite> = Sim::new(13, SimConfig::default());
    for id in [1, 2] {
        let peer = 3 - id;
        let start = toy(vec![peer], false);
        sim.add_node(id, ToyDisk::default(), true, move |id, disk, now| {
            Composite {
                part: start(id, disk, now),
            }
        });
    }
    sim.run_for(100);
    // The parts' sends went out wrapped, and came back as the parts' events.
    let got = |at: NodeId, from: NodeId, msg: Msg| {
        let wanted = WrappedEvent::Part(Event::Got(from, msg));
        sim.history()
            .iter()
            .any(|(_, id, e)| *id == at && *e == wanted)
    };
    assert!(got(2, 1, Msg::Ping(0)) && got(1, 2, Msg::Pong(0)));
    assert!(got(1, 2, Msg::Ping(0)) && got(2, 1, Msg::Pong(0)));
    // And what the parts wrote reached the disks.
    assert!(!sim.disk(1).contents().is_empty());
}
