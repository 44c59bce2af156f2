//! A cluster in one thread: chapter 7's three coordinator servers
//! ([`LocalCluster`]: a perfect network, instant disks) and brokers, each
//! a [`ClusterNode`] that heartbeats whichever broker it believes is the
//! controller. A broker can be *paused*: nothing it sends goes out, and
//! nothing reaches it, as a process stopped by `SIGSTOP`. For the example,
//! the benchmark and the tests; chapter 8's lab runs the same nodes with
//! faults.

use std::collections::BTreeMap;

use ch03_partitions::TopicPartition;
use ch04_network::error::ErrorCode;
use ch06_replication::protocol::{BrokerId, HeartbeatRequest, PartitionState};
use ch06_replication::sim::Millis;
use ch07_coordinator::client::ClientConfig;
use ch07_coordinator::local::LocalCluster;

use crate::controller::{Answer, ClusterConfig, ClusterEvent, ClusterNode, Ticket};
use crate::fence::ControllerFence;

/// One broker of a [`LocalBrokers`].
#[derive(Debug)]
pub struct LocalBroker {
    /// Its part in the cluster.
    pub node: ClusterNode,
    /// The newest controller epoch it has obeyed.
    pub fence: ControllerFence,
    /// Whether it is stopped.
    pub paused: bool,
    /// Its partitions' states, as the controller it obeys told it.
    pub told: BTreeMap<TopicPartition, PartitionState>,
    /// Everything its node reported, oldest first.
    pub events: Vec<ClusterEvent>,
    /// The heartbeat answers it refused or got as errors, oldest first.
    pub refused: Vec<ErrorCode>,
}

/// Three coordinator servers and some brokers, in one thread.
#[derive(Debug)]
pub struct LocalBrokers {
    /// The coordinator ensemble.
    pub coordinator: LocalCluster,
    /// The brokers, by id.
    pub brokers: BTreeMap<BrokerId, LocalBroker>,
}

/// The coordinator session's timing in a [`LocalBrokers`]: a session
/// ends after half a second of silence.
pub fn local_config() -> ClusterConfig {
    ClusterConfig {
        client: ClientConfig {
            session_timeout_ms: 500,
            request_timeout_ms: 200,
            ping_interval_ms: 100,
        },
        ..ClusterConfig::default()
    }
}

impl LocalBrokers {
    /// The coordinator, and brokers `ids` on it (each starting its session
    /// on a different server), none registered yet: [`LocalBrokers::run`]
    /// lets them.
    pub fn new(ids: &[BrokerId]) -> LocalBrokers {
        let coordinator = LocalCluster::new();
        let brokers = ids
            .iter()
            .map(|&id| {
                let address = format!("127.0.0.1:{}", 9091 + id);
                let node = ClusterNode::new(
                    id,
                    &address,
                    &[1, 2, 3],
                    id as usize,
                    local_config(),
                    coordinator.now,
                );
                let broker = LocalBroker {
                    node,
                    fence: ControllerFence::default(),
                    paused: false,
                    told: BTreeMap::new(),
                    events: Vec::new(),
                    refused: Vec::new(),
                };
                (id, broker)
            })
            .collect();
        LocalBrokers {
            coordinator,
            brokers,
        }
    }

    /// Broker `id`.
    pub fn broker(&mut self, id: BrokerId) -> &mut LocalBroker {
        self.brokers.get_mut(&id).expect("a broker of this cluster")
    }

    /// One round: every running broker's session exchanges its messages
    /// with the coordinator (time passes), its node acts on what came
    /// back, then it heartbeats the controller it knows.
    pub fn step(&mut self) {
        let ids: Vec<BrokerId> = self.brokers.keys().copied().collect();
        for &id in &ids {
            let broker = self.brokers.get_mut(&id).expect("listed");
            if broker.paused {
                continue;
            }
            self.coordinator.drive(id.into(), broker.node.client());
            broker.node.on_tick(self.coordinator.now);
            let events = broker.node.poll(self.coordinator.now);
            broker.events.extend(events);
        }
        for &id in &ids {
            if self.brokers[&id].paused {
                continue;
            }
            if let Some(controller) = self.brokers[&id].node.controller() {
                let controller = controller.broker_id;
                // A refusal is kept in the broker's `refused`.
                let _ = self.heartbeat(id, controller);
            }
        }
    }

    /// Runs `rounds` rounds.
    pub fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.step();
        }
    }

    /// Runs rounds until `done` holds, at most `rounds`; whether it did.
    pub fn run_until(&mut self, rounds: usize, done: impl Fn(&LocalBrokers) -> bool) -> bool {
        for _ in 0..rounds {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Broker `from` heartbeats broker `to`, which answers if it is the
    /// controller; `from` obeys the answer unless its epoch is older than
    /// one it has obeyed. A paused `to` does not answer.
    pub fn heartbeat(&mut self, from: BrokerId, to: BrokerId) -> Result<u64, ErrorCode> {
        if self.brokers[&to].paused {
            return Err(ErrorCode::RequestTimedOut);
        }
        let request = HeartbeatRequest {
            broker_id: from,
            incarnation: 1,
            address: format!("127.0.0.1:{}", 9091 + from),
            log_ends: Vec::new(),
        };
        let now = self.coordinator.now;
        let answer = self.broker(to).node.on_heartbeat(&request, now);
        let broker = self.broker(from);
        let result = answer.and_then(|hb| {
            broker.fence.admit(hb.controller_epoch)?;
            broker.told = hb.response.partitions.into_iter().collect();
            Ok(hb.controller_epoch)
        });
        if let Err(e) = result {
            broker.refused.push(e);
        }
        result
    }

    /// The running broker that leads as controller with the greatest
    /// epoch, if any.
    pub fn controller(&self) -> Option<BrokerId> {
        let leading = self.brokers.iter().filter(|(_, b)| !b.paused);
        let epochs = leading.filter_map(|(id, b)| Some((b.node.leading()?, *id)));
        epochs.max().map(|(_, id)| id)
    }

    /// The answer to `ticket` among broker `id`'s events, if it has come.
    pub fn answer(&self, id: BrokerId, ticket: Ticket) -> Option<&Answer> {
        self.brokers[&id].events.iter().find_map(|e| match e {
            ClusterEvent::Answer { ticket: t, answer } if *t == ticket => Some(answer),
            _ => None,
        })
    }

    /// Asks the controller (`ask` makes the request of its node) and runs
    /// until it answers (at most 50 rounds); `None` if there is no
    /// controller or no answer.
    pub fn request(
        &mut self,
        ask: impl FnOnce(&mut ClusterNode, Millis) -> Ticket,
    ) -> Option<Answer> {
        let controller = self.controller()?;
        let now = self.coordinator.now;
        let ticket = ask(&mut self.broker(controller).node, now);
        self.run_until(50, |lab| lab.answer(controller, ticket).is_some());
        self.answer(controller, ticket).cloned()
    }

    /// Creates a topic through the controller and runs until it answers.
    pub fn create_topic(&mut self, name: &str, partitions: u32, factor: u32) -> ErrorCode {
        match self.request(|node, now| node.create_topic(name, partitions, factor, now)) {
            Some(Answer::CreateTopic(error)) => error,
            Some(_) => ErrorCode::UnknownServerError,
            None => ErrorCode::NotController,
        }
    }
}
