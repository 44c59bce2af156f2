//! [`ControllerService`]: the sans-IO [`SimpleController`] behind chapter
//! 4's server, on a port of its own. Brokers send it their heartbeats and
//! their ISR changes; clients (through any broker) create replicated topics
//! with it; and it answers Metadata with every partition's leader, which
//! each broker caches to answer its own clients.
//!
//! Its background work is the controller's clock: every `tick_interval` it
//! lets time pass, which fences brokers whose session expired and elects
//! new leaders for their partitions.
//!
//! A broker process may run one too (`replica-node --run-controller`), as a
//! KRaft node with `process.roles=broker,controller` does. Either way this
//! controller is one process with its state in memory: if it stops, no
//! leader is elected again, and a restart forgets every topic. Chapter 8
//! makes the controller a quorum whose state is a replicated log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use ch03_partitions::store::MAX_PARTITIONS;
use ch03_partitions::{TopicPartition, name};
use ch04_network::protocol::{
    self, API_VERSION, ApiKey, MetadataRequest, MetadataResponse, RequestHeader, TopicMetadata,
};
use ch04_network::server::every;
use ch04_network::{ErrorCode, Handled, Server, ServerConfig, Service};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::controller::{Controller, ControllerConfig, SimpleController};
use crate::protocol::{
    AlterPartitionRequest, AlterPartitionResponse, BrokerId, CreateReplicatedTopicRequest,
    CreateReplicatedTopicResponse, HeartbeatRequest, PartitionState, ReplicationApi,
};
use crate::replica::Millis;

/// The leader id a Metadata answer gives a partition that has none
/// (Kafka's -1): an election is under way, or no in-sync replica is alive.
/// Chapter 4's clients know it too.
pub use ch04_network::leaders::NO_LEADER;

/// How the controller service behaves.
#[derive(Debug, Clone)]
pub struct ControllerServiceConfig {
    /// The controller's own settings (session timeout, unclean election).
    pub controller: ControllerConfig,
    /// How often the controller's clock ticks: an expired session is
    /// noticed within this.
    pub tick_interval: Duration,
}

impl Default for ControllerServiceConfig {
    fn default() -> ControllerServiceConfig {
        ControllerServiceConfig {
            controller: ControllerConfig::default(),
            tick_interval: Duration::from_millis(100),
        }
    }
}

/// The controller and where each broker said it can be reached.
struct State {
    controller: SimpleController,
    addresses: BTreeMap<BrokerId, String>,
}

/// The controller, served on a port of its own.
pub struct ControllerService {
    state: Arc<Mutex<State>>,
    /// The controller's clock starts here.
    started: Instant,
    /// Raised once a shutdown has begun: the clock stops.
    stopping: watch::Sender<bool>,
    tick_interval: Duration,
}

/// A view of a running controller, for tests, tools and the demo: what it
/// has decided, and a way to fence a broker by hand.
#[derive(Clone)]
pub struct ControllerView {
    state: Arc<Mutex<State>>,
}

impl ControllerView {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// One partition's state, if the partition exists.
    pub fn partition(&self, tp: &TopicPartition) -> Option<PartitionState> {
        self.lock().controller.partitions().get(tp).cloned()
    }

    /// Whether `broker` is registered and not fenced.
    pub fn is_alive(&self, broker: BrokerId) -> bool {
        self.lock().controller.is_alive(broker)
    }

    /// Fences `broker` now, as if its session had expired: its partitions
    /// get new leaders. (It registers again with its next heartbeat.)
    pub fn fence(&self, broker: BrokerId) {
        let mut state = self.lock();
        let before = state.controller.partitions().clone();
        state.controller.fence(broker);
        log_changes(&before, state.controller.partitions());
    }
}

/// Binds `addr` (port 0 picks a free port) and returns a server of a
/// [`ControllerService`], ready to run, and a view of its state.
pub async fn bind(
    addr: SocketAddr,
    server: ServerConfig,
    config: ControllerServiceConfig,
) -> std::io::Result<(Server<ControllerService>, ControllerView)> {
    let state = Arc::new(Mutex::new(State {
        controller: SimpleController::new(config.controller),
        addresses: BTreeMap::new(),
    }));
    let view = ControllerView {
        state: state.clone(),
    };
    let server = Server::bind_with(addr, server, |_| ControllerService {
        state,
        started: Instant::now(),
        stopping: watch::Sender::new(false),
        tick_interval: config.tick_interval,
    })
    .await?;
    Ok((server, view))
}

/// Logs every change of leader, and every other change of ISR, between
/// two snapshots of the partitions. (Kafka logs each ISR change too: an
/// operator watches a follower leave and rejoin by it.)
fn log_changes(
    before: &BTreeMap<TopicPartition, PartitionState>,
    after: &BTreeMap<TopicPartition, PartitionState>,
) {
    for (tp, state) in after {
        let old = before.get(tp);
        if old.map(|s| (s.leader, s.leader_epoch)) != Some((state.leader, state.leader_epoch)) {
            info!(
                partition = %tp,
                leader = ?state.leader,
                epoch = state.leader_epoch,
                isr = ?state.isr,
                "new leader"
            );
        } else if old.is_some_and(|s| s.isr != state.isr) {
            info!(
                partition = %tp,
                isr = ?state.isr,
                partition_epoch = state.partition_epoch,
                "ISR changed"
            );
        }
    }
}

impl ControllerService {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    /// A broker's heartbeat: the controller registers it (again) and
    /// answers with its partitions' state; the service remembers where the
    /// broker is, for Metadata answers.
    fn heartbeat(&self, request: HeartbeatRequest) -> crate::protocol::HeartbeatResponse {
        let now = self.now();
        let mut state = self.lock();
        let was_alive = state.controller.is_alive(request.broker_id);
        let before = state.controller.partitions().clone();
        let response = state.controller.on_heartbeat(&request, now);
        log_changes(&before, state.controller.partitions());
        if !was_alive {
            info!(broker = request.broker_id, address = %request.address, "broker registered");
        }
        state.addresses.insert(request.broker_id, request.address);
        response
    }

    /// A leader's ISR change, decided by the controller, and logged.
    fn alter_partition(&self, request: &AlterPartitionRequest) -> AlterPartitionResponse {
        let mut state = self.lock();
        let before = state.controller.partitions().clone();
        let response = state.controller.on_alter_partition(request);
        log_changes(&before, state.controller.partitions());
        response
    }

    fn create_topic(&self, request: CreateReplicatedTopicRequest) -> CreateReplicatedTopicResponse {
        let answer = |error, message: String| CreateReplicatedTopicResponse { error, message };
        // Every broker's chapter 3 store will create the topic under this
        // name: refuse here what they would refuse there.
        if let Err(e) = name::validate(&request.name) {
            return answer(ErrorCode::InvalidTopicException, e.to_string());
        }
        if request.partitions > MAX_PARTITIONS {
            let message = format!("a topic has at most {MAX_PARTITIONS} partitions");
            return answer(ErrorCode::InvalidPartitions, message);
        }
        let mut state = self.lock();
        let before = state.controller.partitions().clone();
        let created = state.controller.create_topic(
            &request.name,
            request.partitions,
            request.replication_factor,
        );
        match created {
            Ok(()) => {
                log_changes(&before, state.controller.partitions());
                answer(ErrorCode::None, String::new())
            }
            Err(ErrorCode::InvalidReplicationFactor) => {
                let alive = state
                    .addresses
                    .keys()
                    .filter(|id| state.controller.is_alive(**id))
                    .count();
                // Kafka's messages, word for word.
                let message = match request.replication_factor {
                    0 => "Replication factor must be larger than 0.".to_string(),
                    factor => {
                        format!(
                            "Replication factor: {factor} larger than available brokers: {alive}."
                        )
                    }
                };
                answer(ErrorCode::InvalidReplicationFactor, message)
            }
            Err(ErrorCode::InvalidPartitions) => answer(
                ErrorCode::InvalidPartitions,
                "Number of partitions must be larger than 0.".into(),
            ),
            Err(code) => answer(code, request.name),
        }
    }

    /// Every live broker's address and every partition's leader, in chapter
    /// 4's Metadata answer (a partition without a leader has [`NO_LEADER`]).
    fn metadata(&self, request: MetadataRequest) -> MetadataResponse {
        let state = self.lock();
        let brokers = state
            .addresses
            .iter()
            .filter(|(id, _)| state.controller.is_alive(**id))
            .filter_map(|(id, address)| {
                let (host, port) = address.rsplit_once(':')?;
                Some((*id, host.to_string(), port.parse().ok()?))
            })
            .collect();
        let mut topics: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
        for (tp, partition) in state.controller.partitions() {
            let leader = partition.leader.unwrap_or(NO_LEADER);
            topics
                .entry(tp.topic.clone())
                .or_default()
                .push((tp.partition, leader));
        }
        let names = request
            .topics
            .unwrap_or_else(|| topics.keys().cloned().collect());
        let topics = names
            .into_iter()
            .map(|name| match topics.get(&name) {
                Some(partitions) => TopicMetadata {
                    partitions: partitions.clone(),
                    name,
                    error: ErrorCode::None,
                },
                None => TopicMetadata {
                    name,
                    error: ErrorCode::UnknownTopicOrPartition,
                    partitions: Vec::new(),
                },
            })
            .collect();
        MetadataResponse { brokers, topics }
    }

    fn dispatch(&self, header: RequestHeader, body: &[u8]) -> Result<BytesMut, String> {
        fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
            protocol::decode_body(body)
        }
        fn ok<T: Serialize>(header: RequestHeader, body: &T) -> BytesMut {
            protocol::ok_response(header.correlation_id, body)
        }
        if header.api_key == ApiKey::Metadata as u16 {
            return decode(body).map(|r| ok(header, &self.metadata(r)));
        }
        match ReplicationApi::from_u16(header.api_key) {
            Some(ReplicationApi::BrokerHeartbeat) => {
                decode(body).map(|r| ok(header, &self.heartbeat(r)))
            }
            Some(ReplicationApi::AlterPartition) => {
                decode(body).map(|r| ok(header, &self.alter_partition(&r)))
            }
            Some(ReplicationApi::CreateReplicatedTopic) => {
                decode(body).map(|r| ok(header, &self.create_topic(r)))
            }
            _ => Ok(protocol::error_response(
                header.correlation_id,
                ErrorCode::UnsupportedVersion,
                format!(
                    "API key {}: the controller serves BrokerHeartbeat, AlterPartition, \
                     CreateReplicatedTopic and Metadata",
                    header.api_key
                ),
            )),
        }
    }
}

impl Service for ControllerService {
    type Error = std::convert::Infallible;

    async fn handle(&self, header: RequestHeader, body: BytesMut) -> Handled {
        if header.api_version != API_VERSION {
            let message = format!(
                "API key {} version {} (this controller speaks 0)",
                header.api_key, header.api_version
            );
            return Handled::Now(protocol::error_response(
                header.correlation_id,
                ErrorCode::UnsupportedVersion,
                message,
            ));
        }
        Handled::Now(self.dispatch(header, &body).unwrap_or_else(|message| {
            warn!(api_key = header.api_key, correlation_id = header.correlation_id, %message, "undecodable request body");
            protocol::error_response(header.correlation_id, ErrorCode::InvalidRequest, message)
        }))
    }

    /// The controller's clock, every `tick_interval`: brokers whose session
    /// expired are fenced, and their partitions get new leaders.
    async fn background(self: Arc<Self>) {
        every(self.tick_interval, self.stopping.subscribe(), || async {
            let now = self.now();
            let mut state = self.lock();
            let before = state.controller.partitions().clone();
            state.controller.tick(now);
            log_changes(&before, state.controller.partitions());
        })
        .await;
    }

    fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Nothing to close: the state is in memory, and goes with the process.
    fn shutdown(self: Arc<Self>) -> Result<(), std::convert::Infallible> {
        Ok(())
    }
}
