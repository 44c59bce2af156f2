//! Sans-IO. The controller: which broker leads each partition, and who is
//! in its ISR.
//!
//! Brokers heartbeat the controller; one that stops for the session timeout
//! is *fenced*, and every partition it led gets a new leader from its ISR,
//! with a new leader epoch. Leaders ask the controller to change their ISR
//! (AlterPartition), and the partition epoch makes sure a change built on
//! old state is refused. This is the shape of KRaft's controller, reduced
//! to one process with its state in memory.
//!
//! [`SimpleController`] is that one process, and it is a single point of
//! failure: if it stops, no leader is ever elected again. Chapter 8 puts
//! the same [`Controller`] interface on an elected controller whose state
//! lives in chapter 7's replicated coordinator.

use std::collections::BTreeMap;

use ch03_partitions::TopicPartition;
use ch04_network::error::ErrorCode;

use crate::epoch::EpochEnd;
use crate::protocol::{
    AlterPartitionRequest, AlterPartitionResponse, BrokerId, HeartbeatRequest, HeartbeatResponse,
    PartitionState,
};
use crate::replica::Millis;

/// The controller's settings, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: a broker not heard from for this long
    /// is fenced (Kafka: 9 s).
    pub session_timeout_ms: Millis,
    /// `unclean.leader.election.enable`: when no in-sync replica is alive,
    /// elect an out-of-sync one rather than leave the partition offline,
    /// and lose whatever it lacks (Kafka: off).
    pub unclean_leader_election: bool,
    /// `min.insync.replicas` (a topic setting in Kafka; here one for the
    /// cluster): below it, replicas leaving the ISR stay eligible.
    pub min_insync_replicas: usize,
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig {
            session_timeout_ms: 9_000,
            unclean_leader_election: false,
            min_insync_replicas: 1,
        }
    }
}

/// What every controller does: the interface the brokers talk to.
/// Chapter 8 implements it again on top of chapter 7's coordinator.
pub trait Controller {
    /// A broker's heartbeat: registers it (again), and answers with the
    /// state of its partitions.
    fn on_heartbeat(&mut self, request: &HeartbeatRequest, now: Millis) -> HeartbeatResponse;
    /// A leader's request to change an ISR.
    fn on_alter_partition(&mut self, request: &AlterPartitionRequest) -> AlterPartitionResponse;
    /// Creates a topic, its replicas spread over the live brokers.
    fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
    ) -> Result<(), ErrorCode>;
    /// Time passes: fences brokers whose session expired.
    fn tick(&mut self, now: Millis);
    /// Every partition's state.
    fn partitions(&self) -> &BTreeMap<TopicPartition, PartitionState>;
}

/// What the controller knows of a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BrokerInfo {
    address: String,
    /// Which run of the broker process this is; a new one means the broker
    /// restarted, and lost whatever it had not synced. (`None`: loaded
    /// without one, so the broker's next heartbeat tells it.)
    incarnation: Option<u64>,
    last_heartbeat_ms: Millis,
    alive: bool,
    /// Whether it has heartbeated this controller (a broker loaded from
    /// another controller's state is alive, but not yet heard from: its
    /// log and its run are still to be learned).
    heard: bool,
    /// Where its logs end, as its last heartbeat said.
    log_ends: BTreeMap<TopicPartition, EpochEnd>,
}

/// A controller in one process, its state in memory.
#[derive(Debug, Clone, Default)]
pub struct SimpleController {
    config: ControllerConfig,
    brokers: BTreeMap<BrokerId, BrokerInfo>,
    partitions: BTreeMap<TopicPartition, PartitionState>,
}

impl SimpleController {
    /// A controller with no brokers and no topics.
    pub fn new(config: ControllerConfig) -> SimpleController {
        SimpleController {
            config,
            ..SimpleController::default()
        }
    }

    /// Whether `broker` is alive (registered, heard from, and not
    /// fenced): a candidate to lead or to join an ISR.
    pub fn is_alive(&self, broker: BrokerId) -> bool {
        self.brokers
            .get(&broker)
            .is_some_and(|b| b.alive && b.heard)
    }

    /// The brokers alive now (registered and not fenced, heard from or
    /// not), by id.
    pub fn live_brokers(&self) -> Vec<BrokerId> {
        let alive = self.brokers.iter().filter(|(_, b)| b.alive);
        alive.map(|(id, _)| *id).collect()
    }

    /// The brokers alive now whose addresses are known (they have
    /// heartbeated this controller), as a heartbeat's answer lists them.
    pub fn broker_addresses(&self) -> Vec<(BrokerId, String)> {
        let alive = self.brokers.iter().filter(|(_, b)| b.alive && b.heard);
        alive.map(|(id, b)| (*id, b.address.clone())).collect()
    }

    /// Which run of `broker` this controller knows of, if any.
    pub fn incarnation(&self, broker: BrokerId) -> Option<u64> {
        self.brokers.get(&broker).and_then(|b| b.incarnation)
    }

    /// Takes what another controller knew of a broker: which of its runs
    /// the stored states it is in refer to (`None`: none says), and whether
    /// it is alive (in
    /// chapter 8, whether it holds a session). If it heartbeats as another
    /// run (it restarted, and may have lost what it had not synced), it
    /// is fenced first. Chapter 8's controller, once elected, loads every
    /// broker this way.
    pub fn load_broker(&mut self, broker: BrokerId, incarnation: Option<u64>, alive: bool) {
        self.brokers.insert(
            broker,
            BrokerInfo {
                address: String::new(),
                incarnation,
                last_heartbeat_ms: 0,
                alive,
                heard: false,
                log_ends: BTreeMap::new(),
            },
        );
    }

    /// Takes a partition's state as it was decided before, by another
    /// controller: chapter 8's controller, once elected, loads every
    /// partition from the coordinator this way. Its brokers count as alive
    /// only once they heartbeat this controller.
    pub fn load_partition(&mut self, tp: TopicPartition, state: PartitionState) {
        self.partitions.insert(tp, state);
    }

    /// Fences a broker now, as if its session had expired (a test, or an
    /// operator, saying "this broker is gone").
    pub fn fence(&mut self, broker: BrokerId) {
        if let Some(info) = self.brokers.get_mut(&broker) {
            info.alive = false;
        }
        let min_isr = self.config.min_insync_replicas;
        let ids: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        for tp in ids {
            let state = self.partitions.get_mut(&tp).expect("listed");
            if !state.isr.contains(&broker) {
                continue;
            }
            // KRaft takes a fenced broker out of every ISR at once (the
            // leader would, after `replica.lag.time.max.ms`). The leader
            // may not have heard yet, and go on acknowledging writes that
            // this broker holds: so once the ISR is below
            // `min.insync.replicas`, the broker stays *eligible* (KIP-966).
            let isr = state
                .isr
                .iter()
                .copied()
                .filter(|&id| id != broker)
                .collect();
            set_isr(state, isr, min_isr);
            if state.leader == Some(broker) {
                self.elect(&tp);
            }
        }
    }

    /// Deletes topic `name`: its partitions are gone from the controller's
    /// state. Returns them, or `UNKNOWN_TOPIC_OR_PARTITION`.
    pub fn remove_topic(&mut self, name: &str) -> Result<Vec<TopicPartition>, ErrorCode> {
        let gone: Vec<TopicPartition> = self
            .partitions
            .keys()
            .filter(|tp| tp.topic == name)
            .cloned()
            .collect();
        if gone.is_empty() {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        for tp in &gone {
            self.partitions.remove(tp);
        }
        Ok(gone)
    }

    /// Moves leadership back to each partition's preferred replica (the
    /// first of its replica list, where Kafka's assignment spreads leaders
    /// evenly) wherever that replica is alive and in sync and does not lead
    /// (Kafka's preferred-leader election, `kafka-leader-election.sh
    /// --election-type preferred`). Returns the partitions it moved.
    pub fn elect_preferred_leaders(&mut self) -> Vec<TopicPartition> {
        let mut moved = Vec::new();
        for (tp, state) in &mut self.partitions {
            let preferred = state.replicas[0];
            let alive = self
                .brokers
                .get(&preferred)
                .is_some_and(|b| b.alive && b.heard);
            if state.leader != Some(preferred) && alive && state.isr.contains(&preferred) {
                state.leader = Some(preferred);
                state.leader_epoch += 1;
                state.partition_epoch += 1;
                moved.push(tp.clone());
            }
        }
        moved
    }

    /// A broker came back from a crash: it may have lost records it had
    /// not synced, so it is no longer a safe leader on its own. Where it
    /// was eligible, it becomes one of the *last known* eligible replicas
    /// (KIP-966).
    fn forget_unclean(&mut self, broker: BrokerId) {
        for state in self.partitions.values_mut() {
            if state.elr.contains(&broker) {
                state.elr.retain(|&id| id != broker);
                state.last_known_elr.push(broker);
                state.partition_epoch += 1;
            }
        }
    }

    /// The replica to lead `tp` when every eligible one crashed: once all
    /// of them are back, the live replica whose log has the latest epoch
    /// and, in it, ends last. A crash keeps a prefix of a log, so whatever
    /// committed write survived anywhere is in that log. `None` while one
    /// of them is still away: it may be the one that kept the most.
    ///
    /// Every live replica is a candidate, not only the last known eligible
    /// ones: a replica the controller took out of an ISR that was still
    /// large enough may hold writes that both remaining members then lost
    /// in crashes (the lab's seed 82459). A replica that is away at that
    /// moment is not waited for; a real system would also wait for it, for
    /// a while (Kafka's `unclean.recovery.timeout.ms`). One that is alive
    /// but not yet heard from (chapter 8: a controller just elected) is
    /// waited for: its log may be the longest.
    fn recover_unclean(&self, tp: &TopicPartition, state: &PartitionState) -> Option<BrokerId> {
        let unheard = |id: &BrokerId| self.brokers.get(id).is_some_and(|b| b.alive && !b.heard);
        if state.replicas.iter().any(unheard) {
            return None;
        }
        let end_of = |id: &BrokerId| {
            let info = self.brokers.get(id).filter(|b| b.alive && b.heard)?;
            Some(
                info.log_ends
                    .get(tp)
                    .map_or((0, 0), |e| (e.epoch, e.end_offset)),
            )
        };
        if !state.last_known_elr.iter().all(|id| end_of(id).is_some()) {
            return None;
        }
        let mut best: Option<(BrokerId, (u32, u64))> = None;
        for id in &state.replicas {
            if let Some(end) = end_of(id)
                && best.is_none_or(|(_, b)| end > b)
            {
                best = Some((*id, end));
            }
        }
        best.map(|(id, _)| id)
    }

    /// Chooses a new leader for `tp`, which has none (its leader was
    /// fenced): the first live replica of the ISR, in preference order;
    /// else the first live eligible replica; else, only if unclean
    /// election is on, any live replica, whatever it lacks; else none, and
    /// the partition is offline until an eligible replica comes back.
    /// Every change of leader bumps the leader epoch.
    fn elect(&mut self, tp: &TopicPartition) {
        todo!("exercise `elect`: Choose `leader: Option<BrokerId>`: the first live (`self.is_alive`) replica in `state.replicas` order that is in the ISR; else one in the ELR; else, when the ELR is empty and `last_known_elr` is not, `self.recover_unclean(tp, state)`; else, only if `self.config.unclean_leader_election`, any live replica. A leader from outside the ISR starts the ISR alone (and leaves the ELR lists). A new leader bumps both epochs.")
    }
}

/// Changes a partition's ISR, and keeps its eligible replicas (KIP-966):
/// a replica leaving an ISR that is, or becomes, smaller than
/// `min.insync.replicas` stays eligible, because no write was
/// acknowledged without it; a replica back in the ISR is no longer merely
/// eligible; and an ISR of `min.insync.replicas` or more needs no
/// eligible replicas beside it.
fn set_isr(state: &mut PartitionState, isr: Vec<BrokerId>, min_isr: usize) {
    todo!("exercise `set_isr`: If the new `isr` is smaller than `min_isr`, every replica of the old ISR that is not in the new one becomes eligible (added to `state.elr` once). A replica in the new ISR leaves `elr` and `last_known_elr`; an ISR of `min_isr` or more clears both. Then store the ISR and bump the partition epoch.")
}

impl Controller for SimpleController {
    fn on_heartbeat(&mut self, request: &HeartbeatRequest, now: Millis) -> HeartbeatResponse {
        let id = request.broker_id;
        let restarted = self
            .brokers
            .get(&id)
            .is_some_and(|b| b.incarnation.is_some_and(|i| i != request.incarnation));
        if restarted {
            // It crashed and came back (before its session expired, or
            // before a controller loaded from elsewhere heard of it): it
            // must not go on leading or count as in sync as if nothing
            // happened. (For a broker fenced already, this changes
            // nothing.) What it may have lost also makes it no longer
            // safely eligible on its own.
            self.fence(id);
            self.forget_unclean(id);
        }
        let was_alive = self.is_alive(id);
        self.brokers.insert(
            id,
            BrokerInfo {
                address: request.address.clone(),
                incarnation: Some(request.incarnation),
                heard: true,
                last_heartbeat_ms: now,
                alive: true,
                log_ends: request.log_ends.iter().cloned().collect(),
            },
        );
        if !was_alive {
            // Partitions left without a leader may have one now.
            let offline: Vec<TopicPartition> = self
                .partitions
                .iter()
                .filter(|(_, s)| s.leader.is_none() && s.replicas.contains(&id))
                .map(|(tp, _)| tp.clone())
                .collect();
            for tp in offline {
                self.elect(&tp);
            }
        }
        HeartbeatResponse {
            partitions: self
                .partitions
                .iter()
                .filter(|(_, s)| s.replicas.contains(&id))
                .map(|(tp, s)| (tp.clone(), s.clone()))
                .collect(),
            brokers: self.broker_addresses(),
        }
    }

    fn on_alter_partition(&mut self, request: &AlterPartitionRequest) -> AlterPartitionResponse {
        let answer = |error, state: Option<&PartitionState>| AlterPartitionResponse {
            tp: request.tp.clone(),
            error,
            state: state.cloned(),
        };
        let Some(state) = self.partitions.get(&request.tp) else {
            return answer(ErrorCode::UnknownTopicOrPartition, None);
        };
        if state.leader != Some(request.broker_id) || state.leader_epoch != request.leader_epoch {
            return answer(ErrorCode::FencedLeaderEpoch, Some(state));
        }
        if state.partition_epoch != request.partition_epoch {
            return answer(ErrorCode::InvalidUpdateVersion, Some(state));
        }
        let eligible = request.new_isr.contains(&request.broker_id)
            && request
                .new_isr
                .iter()
                .all(|id| state.replicas.contains(id) && self.is_alive(*id));
        if !eligible {
            return answer(ErrorCode::IneligibleReplica, Some(state));
        }
        let min_isr = self.config.min_insync_replicas;
        let state = self.partitions.get_mut(&request.tp).expect("exists");
        set_isr(state, request.new_isr.clone(), min_isr);
        answer(ErrorCode::None, Some(state))
    }

    fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
    ) -> Result<(), ErrorCode> {
        if self.partitions.keys().any(|tp| tp.topic == name) {
            return Err(ErrorCode::TopicAlreadyExists);
        }
        // Only brokers heard from, whose run is known: chapter 8 stores it
        // beside each ISR member.
        let alive: Vec<BrokerId> = self
            .brokers
            .iter()
            .filter(|(_, b)| b.alive && b.heard)
            .map(|(id, _)| *id)
            .collect();
        if partitions == 0 {
            return Err(ErrorCode::InvalidPartitions);
        }
        let factor = replication_factor as usize;
        if factor == 0 || factor > alive.len() {
            return Err(ErrorCode::InvalidReplicationFactor);
        }
        for partition in 0..partitions {
            // Kafka's layout, without racks: partition p's replicas start
            // at broker p and go round, so leaders spread evenly.
            let replicas: Vec<BrokerId> = (0..factor)
                .map(|i| alive[(partition as usize + i) % alive.len()])
                .collect();
            let state = PartitionState {
                leader: Some(replicas[0]),
                leader_epoch: 0,
                partition_epoch: 0,
                isr: replicas.clone(),
                elr: Vec::new(),
                last_known_elr: Vec::new(),
                replicas,
            };
            self.partitions
                .insert(TopicPartition::new(name, partition), state);
        }
        Ok(())
    }

    fn tick(&mut self, now: Millis) {
        let expired: Vec<BrokerId> = self
            .brokers
            .iter()
            .filter(|(_, b)| {
                b.alive && now.saturating_sub(b.last_heartbeat_ms) > self.config.session_timeout_ms
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.fence(id);
        }
    }

    fn partitions(&self) -> &BTreeMap<TopicPartition, PartitionState> {
        &self.partitions
    }
}
