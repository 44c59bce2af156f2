//! The simulated network: what happens to a message between two nodes.
//!
//! Each message is delayed by a random time in a range, so two messages sent
//! one after the other may arrive in either order; it may be dropped or
//! duplicated; and it is lost if the link it needs is cut. Links are
//! directed, so a partition can be one-way: A hears B while B no longer
//! hears A (a firewall rule on one side, a full send buffer).
//!
//! Kafka runs over TCP, which neither reorders, duplicates nor silently drops
//! within one connection. But connections break and are reopened, requests
//! are retried on a new connection while the old one still holds a copy, and
//! a slow connection is indistinguishable from a dead one: at the level of
//! the protocol's messages, everything here does happen. A protocol that
//! survives this network survives TCP.

use std::collections::BTreeSet;

use super::{Millis, NodeId, SimConfig};

/// Counts of what the network did with the messages sent so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages sent, by nodes or injected with [`Sim::send_as`](super::Sim::send_as).
    pub sent: u64,
    /// Lost to a cut link, when sent or when about to arrive.
    pub cut: u64,
    /// Lost at random ([`SimConfig::drop_probability`]).
    pub dropped: u64,
    /// Sent twice ([`SimConfig::duplicate_probability`]).
    pub duplicated: u64,
    /// Lost because the receiver was down when they were sent, or crashed
    /// before they arrived.
    pub lost_to_crash: u64,
    /// Handed to their receiver (a duplicate counts twice).
    pub delivered: u64,
}

/// What happens to one message that was sent.
#[derive(Debug)]
pub(super) enum Fate {
    /// The link from the sender to the receiver is cut.
    Cut,
    /// Lost on the way.
    Dropped,
    /// Arrives after `delay` milliseconds, and again after `duplicate` if
    /// the network duplicated it.
    Arrives {
        delay: Millis,
        duplicate: Option<Millis>,
    },
}

/// The links between nodes, and the odds for every message.
pub(super) struct Network {
    min_delay_ms: Millis,
    max_delay_ms: Millis,
    drop_probability: f64,
    duplicate_probability: f64,
    /// The cut links, as `(from, to)`. A set of pairs rather than groups of
    /// nodes, so that one-way and overlapping partitions need nothing
    /// special.
    cut: BTreeSet<(NodeId, NodeId)>,
    stats: NetStats,
}

impl Network {
    /// A network with every link up.
    pub(super) fn new(config: &SimConfig) -> Self {
        assert!(
            config.min_delay_ms <= config.max_delay_ms,
            "min_delay_ms must not exceed max_delay_ms"
        );
        Network {
            min_delay_ms: config.min_delay_ms,
            max_delay_ms: config.max_delay_ms,
            drop_probability: config.drop_probability,
            duplicate_probability: config.duplicate_probability,
            cut: BTreeSet::new(),
            stats: NetStats::default(),
        }
    }

    /// Cuts every link from a node of `from` to a node of `to`, one way.
    pub(super) fn cut(&mut self, from: &[NodeId], to: &[NodeId]) {
        for &a in from {
            for &b in to {
                if a != b {
                    self.cut.insert((a, b));
                }
            }
        }
    }

    /// Restores every link.
    pub(super) fn heal(&mut self) {
        self.cut.clear();
    }

    /// The counts so far.
    pub(super) fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Decides the fate of a message just sent from `from` to `to`.
    pub(super) fn route(&mut self, rng: &mut fastrand::Rng, from: NodeId, to: NodeId) -> Fate {
        self.stats.sent += 1;
        if self.cut.contains(&(from, to)) {
            self.stats.cut += 1;
            return Fate::Cut;
        }
        if rng.f64() < self.drop_probability {
            self.stats.dropped += 1;
            return Fate::Dropped;
        }
        // Each copy gets its own delay, so a later message can overtake an
        // earlier one: this is the whole of reordering.
        let delay = rng.u64(self.min_delay_ms..=self.max_delay_ms);
        let duplicate = (rng.f64() < self.duplicate_probability).then(|| {
            self.stats.duplicated += 1;
            rng.u64(self.min_delay_ms..=self.max_delay_ms)
        });
        Fate::Arrives { delay, duplicate }
    }

    /// Decides, when a message is due, whether it reaches its receiver:
    /// not if the link was cut while it was on its way (a real packet in
    /// flight is lost with the cable), nor if the receiver is no longer
    /// alive in the life it was sent to.
    pub(super) fn arrives(&mut self, from: NodeId, to: NodeId, receiver_alive: bool) -> bool {
        if self.cut.contains(&(from, to)) {
            self.stats.cut += 1;
            false
        } else if !receiver_alive {
            self.stats.lost_to_crash += 1;
            false
        } else {
            self.stats.delivered += 1;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_links_are_directed_and_healed() {
        let mut net = Network::new(&SimConfig::default());
        let mut rng = fastrand::Rng::with_seed(1);
        net.cut(&[1], &[2, 3]);
        assert!(matches!(net.route(&mut rng, 1, 2), Fate::Cut));
        assert!(matches!(net.route(&mut rng, 1, 3), Fate::Cut));
        assert!(matches!(net.route(&mut rng, 2, 1), Fate::Arrives { .. }));
        assert!(!net.arrives(1, 2, true));
        net.heal();
        assert!(net.arrives(1, 2, true));
        assert!(!net.arrives(1, 2, false));
        let stats = net.stats();
        assert_eq!((stats.sent, stats.cut), (3, 3));
        assert_eq!((stats.delivered, stats.lost_to_crash), (1, 1));
    }

    #[test]
    fn delays_stay_in_the_configured_range() {
        let config = SimConfig {
            min_delay_ms: 5,
            max_delay_ms: 9,
            ..SimConfig::default()
        };
        let mut net = Network::new(&config);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut seen = BTreeSet::new();
        for _ in 0..1_000 {
            match net.route(&mut rng, 1, 2) {
                Fate::Arrives {
                    delay,
                    duplicate: None,
                } => seen.insert(delay),
                other => panic!("a perfect network gave {other:?}"),
            };
        }
        assert_eq!(seen, (5..=9).collect());
    }
}
