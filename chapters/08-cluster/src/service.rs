//! The tokio shell: [`ClusterBroker`], a broker of a real cluster.
//!
//! It is chapter 6's [`ReplicatedBroker`] with one more layer, as each
//! chapter's broker wraps the last:
//!
//! - Inside, the replicated broker reaches its controller through a
//!   [`ClusterLink`]: to whichever broker the coordinator says leads, and
//!   every answer is refused if its controller epoch is older than one
//!   this broker has obeyed ([`ControllerFence`]).
//! - Beside it, a driver task runs this broker's [`ClusterNode`] over a
//!   real coordinator session (chapter 7's [`Transport`]): registration,
//!   the race for `/controller` and, while elected, the controller.
//! - The layer itself answers the controller's requests (heartbeats,
//!   AlterPartition, topic create and delete, controlled shutdown,
//!   preferred-leader election) by handing them to the driver, and
//!   `DescribeCluster` for tools; everything else goes to the broker
//!   inside.
//!
//! A shutdown closes the coordinator session, so the broker's node in
//! `/brokers/ids` (and `/controller`, if it led) goes at once rather than a
//! session timeout later. Before that, the process asks the controller to
//! move leadership away ([`ClusterLink::controlled_shutdown`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use ch03_partitions::TopicStore;
use ch04_network::leaders::Connections;
use ch04_network::protocol::{self, API_VERSION, MetadataResponse, RequestHeader, TopicMetadata};
use ch04_network::{
    Client, ClientConfig, ClientError, ErrorCode, Handled, Server, ServerConfig, Service,
};
use ch05_consumer_groups::offsets::OFFSETS_TOPIC;
use ch05_consumer_groups::{BindError, GroupBroker, OffsetStore};
use ch06_replication::controller_service::NO_LEADER;
use ch06_replication::link::ControllerLink;
use ch06_replication::protocol::{
    AlterPartitionRequest, AlterPartitionResponse, BrokerId, CreateReplicatedTopicRequest,
    CreateReplicatedTopicResponse, HeartbeatRequest, HeartbeatResponse,
};
use ch06_replication::service::{Replicas, ReplicatedBroker, ReplicationConfig, ShutdownError};
use ch06_replication::sim::{Millis, NodeId};
use ch07_coordinator::coordinator::{Delivery, Transport};
use ch07_coordinator::shell::wall_clock_ms;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::controller::{Answer, ClusterConfig, ClusterEvent, ClusterNode, Ticket};
use crate::fence::ControllerFence;
use crate::protocol::{
    ClusterApi, ClusterDescription, ControlledShutdownRequest, DeleteTopicRequest,
    DescribeClusterRequest, ElectLeadersResponse, Fenced,
};
use crate::state::ControllerInfo;

/// How a broker of a cluster behaves.
#[derive(Debug, Clone)]
pub struct ClusterBrokerConfig {
    /// The replicated broker inside (its `controller` is not used: the
    /// controller is elected).
    pub replication: ReplicationConfig,
    /// The coordinator session's timing (`zookeeper.session.timeout.ms`)
    /// and the controller's settings, should this broker be elected.
    pub cluster: ClusterConfig,
    /// The coordinator servers' client addresses (`zookeeper.connect`).
    pub coordinator: Vec<SocketAddr>,
    /// The address other brokers and clients are told to reach this one
    /// at (`advertised.listeners`), if not the one it listens on: behind
    /// a proxy, say.
    pub advertised: Option<SocketAddr>,
}

/// Binds `addr` (port 0 picks a free port),
/// and returns a server of a [`ClusterBroker`] over `store`, ready to run,
/// and a view of it. Nothing reaches the coordinator until the server
/// runs.
pub async fn bind(
    addr: SocketAddr,
    store: TopicStore,
    server: ServerConfig,
    config: ClusterBrokerConfig,
) -> Result<(Server<ClusterBroker>, ClusterView), BindError> {
    // Each offsets partition is loaded when this broker becomes its leader.
    let offsets = OffsetStore::empty(config.replication.groups.offsets.clone());
    let mut view = None;
    let server = Server::bind_with(addr, server, |local| {
        let (broker, cluster_view) = ClusterBroker::new(store, offsets, local, config);
        view = Some(cluster_view);
        broker
    })
    .await
    .map_err(|source| BindError::Listen { addr, source })?;
    Ok((server, view.expect("the service was built")))
}

/// A view of a running broker of a cluster, for the process around it,
/// tests and tools.
#[derive(Clone)]
pub struct ClusterView {
    /// Its replicas.
    pub replicas: Replicas,
    /// Its way to the controller.
    pub link: ClusterLink,
    leading: watch::Receiver<Option<u64>>,
}

impl ClusterView {
    /// The controller, as this broker last heard.
    pub fn controller(&self) -> Option<ControllerInfo> {
        self.link.controller.borrow().clone()
    }

    /// This broker's controller epoch, while it is the controller and has
    /// loaded the cluster's state.
    pub fn leading(&self) -> Option<u64> {
        *self.leading.borrow()
    }
}

/// A request the layer hands to the driver.
enum Command {
    /// A broker's heartbeat: answered at once.
    Heartbeat(
        HeartbeatRequest,
        oneshot::Sender<Result<Fenced<HeartbeatResponse>, ErrorCode>>,
    ),
    /// A request answered once stored: `ask` makes it of the node; the
    /// answer comes with the epoch of the controller that took it.
    Ask(Ask, oneshot::Sender<Fenced<Answer>>),
    /// The cluster as stored, if this broker is the controller.
    Describe(oneshot::Sender<Result<ClusterDescription, ErrorCode>>),
}

/// A request to make of the controller's node.
type Ask = Box<dyn FnOnce(&mut ClusterNode, Millis) -> Ticket + Send>;

/// A broker of a cluster: chapter 6's replicated broker inside, its
/// cluster node beside it.
pub struct ClusterBroker {
    inner: Arc<ReplicatedBroker<ClusterLink>>,
    link: ClusterLink,
    id: BrokerId,
    commands: mpsc::UnboundedSender<Command>,
    /// The driver, until the background work takes it.
    driver: Mutex<Option<Driver>>,
    /// Raised once a shutdown has begun: the driver closes the session.
    stopping: watch::Sender<bool>,
}

impl ClusterBroker {
    fn new(
        store: TopicStore,
        offsets: OffsetStore,
        local: SocketAddr,
        config: ClusterBrokerConfig,
    ) -> (ClusterBroker, ClusterView) {
        let id = config.replication.node_id;
        // Where others reach this broker: the group coordinator's address in
        // FindCoordinator answers, the replica's in heartbeats, the
        // controller's in `/controller`.
        let local = config.advertised.unwrap_or(local);
        let groups = GroupBroker::new(store, offsets, local, config.replication.groups.clone());
        let (controller, controller_rx) = watch::channel(None);
        let (leading, leading_rx) = watch::channel(None);
        let link = ClusterLink::new(controller_rx, config.replication.request_timeout);
        let inner = ReplicatedBroker::new(groups, local, config.replication, link.clone());
        let view = ClusterView {
            replicas: inner.replicas(),
            link: link.clone(),
            leading: leading_rx,
        };
        let (commands, commands_rx) = mpsc::unbounded_channel();
        // Each broker starts on a different server, so that the sessions
        // spread over the ensemble.
        let servers: Vec<NodeId> = (1..=config.coordinator.len() as NodeId).collect();
        let first = id as usize % servers.len().max(1);
        let node = ClusterNode::new(
            id,
            &local.to_string(),
            &servers,
            first,
            config.cluster,
            wall_clock_ms(),
        );
        let driver = Driver {
            node,
            transport: Transport::new(&config.coordinator),
            commands: commands_rx,
            waiting: BTreeMap::new(),
            controller,
            leading,
        };
        let broker = ClusterBroker {
            inner: Arc::new(inner),
            link,
            id,
            commands,
            driver: Mutex::new(Some(driver)),
            stopping: watch::Sender::new(false),
        };
        (broker, view)
    }

    /// Hands `command` to the driver and waits for its answer; a driver
    /// gone (the broker is stopping) is `NOT_CONTROLLER`.
    async fn driver<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(command(tx)).ok()?;
        rx.await.ok()
    }

    /// A request answered once the controller has stored its outcome.
    async fn ask(
        &self,
        ask: impl FnOnce(&mut ClusterNode, Millis) -> Ticket + Send + 'static,
    ) -> Result<Fenced<Answer>, ErrorCode> {
        let ask: Ask = Box::new(ask);
        self.driver(|tx| Command::Ask(ask, tx))
            .await
            .ok_or(ErrorCode::NotController)
    }

    async fn handle_cluster(
        &self,
        header: RequestHeader,
        api: ClusterApi,
        body: &[u8],
    ) -> Result<BytesMut, (ErrorCode, String)> {
        let refused = |code: ErrorCode| (code, format!("{api:?} on broker {}", self.id));
        match api {
            ClusterApi::BrokerHeartbeat => {
                let request: HeartbeatRequest = decode(body)?;
                let answer = self.driver(|tx| Command::Heartbeat(request, tx)).await;
                let answer = answer.unwrap_or(Err(ErrorCode::NotController));
                answer.map(|a| ok(header, &a)).map_err(refused)
            }
            ClusterApi::AlterPartition => {
                let request: AlterPartitionRequest = decode(body)?;
                let answer = self
                    .ask(move |node, now| node.alter_partition(&request, now))
                    .await
                    .map_err(refused)?;
                match answer.body {
                    // Not (or no longer) the controller: no epoch to vouch
                    // for the answer.
                    Answer::AlterPartition(response)
                        if response.error == ErrorCode::NotController =>
                    {
                        Err(refused(ErrorCode::NotController))
                    }
                    Answer::AlterPartition(response) => Ok(ok(
                        header,
                        &Fenced {
                            controller_epoch: answer.controller_epoch,
                            body: response,
                        },
                    )),
                    other => Err(unexpected(other)),
                }
            }
            ClusterApi::CreateTopic => {
                let request: CreateReplicatedTopicRequest = decode(body)?;
                let (name, partitions, factor) = (
                    request.name.clone(),
                    request.partitions,
                    request.replication_factor,
                );
                let answer = self
                    .ask(move |node, now| node.create_topic(&name, partitions, factor, now))
                    .await
                    .map_err(refused)?;
                match answer.body {
                    Answer::CreateTopic(error) => Ok(ok(
                        header,
                        &CreateReplicatedTopicResponse {
                            error,
                            message: create_message(&request, error),
                        },
                    )),
                    other => Err(unexpected(other)),
                }
            }
            ClusterApi::DeleteTopic => {
                let request: DeleteTopicRequest = decode(body)?;
                if request.name == OFFSETS_TOPIC {
                    // As Kafka: an internal topic cannot be deleted.
                    let message = format!("{OFFSETS_TOPIC} is an internal topic");
                    return Err((ErrorCode::InvalidTopicException, message));
                }
                let name = request.name.clone();
                let answer = self
                    .ask(move |node, now| node.delete_topic(&name, now))
                    .await
                    .map_err(refused)?;
                match answer.body {
                    Answer::DeleteTopic(ErrorCode::None) => Ok(ok(header, &())),
                    Answer::DeleteTopic(code) => Err((code, format!("topic {:?}", request.name))),
                    other => Err(unexpected(other)),
                }
            }
            ClusterApi::ControlledShutdown => {
                let request: ControlledShutdownRequest = decode(body)?;
                let broker = request.broker_id;
                let answer = self
                    .ask(move |node, now| node.controlled_shutdown(broker, now))
                    .await
                    .map_err(refused)?;
                match answer.body {
                    Answer::ControlledShutdown(ErrorCode::None) => Ok(ok(header, &())),
                    Answer::ControlledShutdown(code) => Err(refused(code)),
                    other => Err(unexpected(other)),
                }
            }
            ClusterApi::ElectLeaders => {
                let answer = self
                    .ask(|node, now| node.elect_preferred_leaders(now))
                    .await
                    .map_err(refused)?;
                match answer.body {
                    Answer::PreferredLeaders(Ok(moved)) => {
                        Ok(ok(header, &ElectLeadersResponse { moved }))
                    }
                    Answer::PreferredLeaders(Err(code)) => Err(refused(code)),
                    other => Err(unexpected(other)),
                }
            }
            ClusterApi::DescribeCluster => {
                let request: DescribeClusterRequest = decode(body)?;
                let here = self.driver(Command::Describe).await;
                match here.unwrap_or(Err(ErrorCode::NotController)) {
                    Ok(description) => Ok(ok(header, &description)),
                    Err(code) if request.forwarded => Err(refused(code)),
                    // Not the controller: ask it.
                    Err(_) => match self.link.describe_cluster().await {
                        Ok(description) => Ok(ok(header, &description)),
                        Err(e) => Err((
                            e.code().unwrap_or(ErrorCode::CoordinatorNotAvailable),
                            format!("asking the controller: {e}"),
                        )),
                    },
                }
            }
        }
    }
}

fn ok<T: Serialize>(header: RequestHeader, body: &T) -> BytesMut {
    protocol::ok_response(header.correlation_id, body)
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, (ErrorCode, String)> {
    protocol::decode_body(body).map_err(|message| (ErrorCode::InvalidRequest, message))
}

/// An answer of another kind than the request's: a bug in the node.
fn unexpected(answer: Answer) -> (ErrorCode, String) {
    (
        ErrorCode::UnknownServerError,
        format!("unexpected answer {answer:?}"),
    )
}

/// Kafka's messages for a refused topic creation.
fn create_message(request: &CreateReplicatedTopicRequest, error: ErrorCode) -> String {
    match error {
        ErrorCode::None => String::new(),
        ErrorCode::InvalidReplicationFactor if request.replication_factor == 0 => {
            "Replication factor must be larger than 0.".to_string()
        }
        ErrorCode::InvalidReplicationFactor => format!(
            "Replication factor: {} larger than available brokers.",
            request.replication_factor
        ),
        ErrorCode::InvalidPartitions => "Number of partitions must be larger than 0.".to_string(),
        ErrorCode::TopicAlreadyExists => format!("Topic '{}' already exists.", request.name),
        code => format!("topic {:?}: {code}", request.name),
    }
}

impl Service for ClusterBroker {
    type Error = ShutdownError;

    async fn handle(&self, header: RequestHeader, body: BytesMut) -> Handled {
        let api =
            ClusterApi::from_u16(header.api_key).filter(|_| header.api_version == API_VERSION);
        let Some(api) = api else {
            // Not the cluster's, or another version (refused inside).
            return self.inner.handle(header, body).await;
        };
        let response = self.handle_cluster(header, api, &body).await;
        Handled::Now(response.unwrap_or_else(|(code, message)| {
            if code == ErrorCode::InvalidRequest {
                warn!(?api, correlation_id = header.correlation_id, %message, "undecodable request body");
            }
            protocol::error_response(header.correlation_id, code, message)
        }))
    }

    /// The broker's work inside, and the driver of its cluster node.
    async fn background(self: Arc<Self>) {
        let driver = self.driver.lock().unwrap().take();
        let stopping = self.stopping.subscribe();
        let driving = async {
            if let Some(driver) = driver {
                driver.run(stopping).await;
            }
        };
        tokio::join!(Arc::clone(&self.inner).background(), driving);
    }

    fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
        self.inner.begin_shutdown();
    }

    fn shutdown(self: Arc<Self>) -> Result<(), ShutdownError> {
        // Let go of this layer: the broker inside is then alone, and
        // closes the store.
        let inner = Arc::clone(&self.inner);
        drop(self);
        inner.shutdown()
    }
}

/// The task that runs a broker's [`ClusterNode`]: it carries the
/// session's messages, hands it the layer's requests, and passes on
/// what it reports.
struct Driver {
    node: ClusterNode,
    transport: Transport,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Requests whose answers are due, by ticket.
    waiting: BTreeMap<Ticket, (u64, oneshot::Sender<Fenced<Answer>>)>,
    /// Who the controller is, for the link.
    controller: watch::Sender<Option<ControllerInfo>>,
    /// This broker's epoch while it is the controller.
    leading: watch::Sender<Option<u64>>,
}

impl Driver {
    /// Runs until `stopping` turns true, then closes the session.
    async fn run(mut self, mut stopping: watch::Receiver<bool>) {
        loop {
            self.transport.send(self.node.client()).await;
            tokio::select! {
                delivery = self.transport.next() => match delivery {
                    Delivery::Message(from, msg) => {
                        self.node.client().on_message(from, msg, wall_clock_ms());
                    }
                    Delivery::Tick => self.node.on_tick(wall_clock_ms()),
                },
                Some(command) = self.commands.recv() => self.command(command),
                _ = stopping.wait_for(|stopping| *stopping) => break,
            }
            for event in self.node.poll(wall_clock_ms()) {
                self.on_event(event);
            }
            let controller = self.node.controller().cloned();
            self.controller.send_if_modified(|c| replace(c, controller));
            let leading = self.node.leading();
            self.leading.send_if_modified(|l| replace(l, leading));
        }
        // Closing the session deletes its ephemeral nodes now: the
        // controller (another broker's, or the next one elected) fences
        // this broker at once.
        self.node.client().close();
        self.transport.send(self.node.client()).await;
        info!("left the cluster");
    }

    fn command(&mut self, command: Command) {
        let now = wall_clock_ms();
        match command {
            Command::Heartbeat(request, reply) => {
                let answer = self.node.on_heartbeat(&request, now).map(|hb| Fenced {
                    controller_epoch: hb.controller_epoch,
                    body: hb.response,
                });
                // The broker's connection is gone: nobody to tell.
                let _ = reply.send(answer);
            }
            Command::Ask(ask, reply) => {
                let epoch = self.node.leading().unwrap_or(0);
                let ticket = ask(&mut self.node, now);
                self.waiting.insert(ticket, (epoch, reply));
            }
            Command::Describe(reply) => {
                // The caller is gone: nobody to tell.
                let _ = reply.send(self.describe());
            }
        }
    }

    /// The cluster as stored, if this broker is the controller.
    fn describe(&self) -> Result<ClusterDescription, ErrorCode> {
        let epoch = self.node.leading().ok_or(ErrorCode::NotController)?;
        let controller = self
            .node
            .controller()
            .cloned()
            .ok_or(ErrorCode::NotController)?;
        let stored = self.node.stored().ok_or(ErrorCode::NotController)?;
        Ok(ClusterDescription {
            controller,
            controller_epoch: epoch,
            brokers: self.node.live_brokers(),
            partitions: stored
                .iter()
                .map(|(tp, s)| (tp.clone(), s.state.clone()))
                .collect(),
        })
    }

    fn on_event(&mut self, event: ClusterEvent) {
        let id = self.node.id();
        match event {
            ClusterEvent::Registered => info!(broker = id, "registered in the cluster"),
            ClusterEvent::RegistrationRefused => warn!(
                broker = id,
                "another session holds this broker id (a duplicate, or this broker's previous run); trying again"
            ),
            ClusterEvent::Members(members) => info!(?members, "live brokers"),
            ClusterEvent::ControllerIs(info) => {
                info!(controller = info.broker_id, address = %info.address, "controller elected")
            }
            ClusterEvent::Elected { epoch } => info!(epoch, "elected controller"),
            ClusterEvent::Loaded { epoch, partitions } => {
                info!(epoch, partitions, "loaded the cluster's state")
            }
            ClusterEvent::Stored { epoch, partitions } => {
                debug!(epoch, ?partitions, "stored partition states")
            }
            ClusterEvent::Resigned { epoch } => warn!(epoch, "no longer the controller"),
            ClusterEvent::SessionExpired => {
                warn!("the coordinator session expired; registering again")
            }
            ClusterEvent::Unreadable(e) => warn!(error = %e, "left an unreadable node alone"),
            ClusterEvent::Answer { ticket, answer } => {
                if let Some((epoch, reply)) = self.waiting.remove(&ticket) {
                    // The asker's connection is gone: nobody to tell.
                    let _ = reply.send(Fenced {
                        controller_epoch: epoch,
                        body: answer,
                    });
                }
            }
        }
    }
}

/// Sets `slot` to `value`; whether that changed it.
fn replace<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        return false;
    }
    *slot = value;
    true
}

/// How a broker of a cluster reaches its controller: whichever broker the
/// coordinator says leads, with every order checked against the newest
/// controller epoch obeyed. Cheap to clone; the clones share the fence.
#[derive(Clone)]
pub struct ClusterLink {
    controller: watch::Receiver<Option<ControllerInfo>>,
    fence: Arc<Mutex<ControllerFence>>,
    clients: Arc<Connections>,
}

impl ClusterLink {
    fn new(
        controller: watch::Receiver<Option<ControllerInfo>>,
        request_timeout: Duration,
    ) -> ClusterLink {
        ClusterLink {
            controller,
            fence: Arc::default(),
            clients: Arc::new(Connections::new(ClientConfig {
                request_timeout,
                ..ClientConfig::default()
            })),
        }
    }

    /// One call to the controller.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        api: ClusterApi,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let address = self.controller.borrow().as_ref().map(|c| c.address.clone());
        let address = address.ok_or_else(|| ClientError::Broker {
            code: ErrorCode::NotController,
            message: "no controller known yet".to_string(),
        })?;
        self.clients.get(&address).await?.call(api, request).await
    }

    // ANCHOR: fenced_call
    /// A call whose answer is an order: obeyed only if its controller
    /// epoch is not older than the newest obeyed.
    async fn order<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        api: ClusterApi,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let answer: Fenced<Resp> = self.call(api, request).await?;
        let admitted = self.fence.lock().unwrap().admit(answer.controller_epoch);
        admitted.map_err(|code| ClientError::Broker {
            code,
            message: format!(
                "an answer from controller epoch {}, after a later one was obeyed",
                answer.controller_epoch
            ),
        })?;
        Ok(answer.body)
    }
    // ANCHOR_END: fenced_call

    /// The cluster as the controller has it stored.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, ClientError> {
        let request = DescribeClusterRequest { forwarded: true };
        self.call(ClusterApi::DescribeCluster, &request).await
    }

    /// Asks the controller to move `broker`'s leadership away and take it
    /// out of every ISR, before it stops (Kafka's controlled shutdown).
    pub async fn controlled_shutdown(&self, broker: BrokerId) -> Result<(), ClientError> {
        let request = ControlledShutdownRequest { broker_id: broker };
        self.call(ClusterApi::ControlledShutdown, &request).await
    }
}

impl ControllerLink for ClusterLink {
    fn describe(&self) -> String {
        match &*self.controller.borrow() {
            Some(c) => format!("broker {} at {}", c.broker_id, c.address),
            None => "not known yet".to_string(),
        }
    }

    async fn heartbeat(
        &self,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.order(ClusterApi::BrokerHeartbeat, request).await
    }

    async fn alter_partition(
        &self,
        request: &AlterPartitionRequest,
    ) -> Result<AlterPartitionResponse, ClientError> {
        self.order(ClusterApi::AlterPartition, request).await
    }

    async fn create_topic(
        &self,
        request: &CreateReplicatedTopicRequest,
    ) -> Result<CreateReplicatedTopicResponse, ClientError> {
        self.call(ClusterApi::CreateTopic, request).await
    }

    async fn metadata(&self) -> Result<MetadataResponse, ClientError> {
        Ok(metadata(&self.describe_cluster().await?))
    }

    async fn moved(&self) {
        let mut controller = self.controller.clone();
        controller.mark_unchanged();
        // The driver is gone (the broker is stopping): nothing will move.
        if controller.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The cluster as its controller has it stored, asked of the brokers at
/// `addresses` in turn (each passes the question to the controller), each
/// call waiting up to `timeout`: the first answer, or the last error. For
/// tools and tests.
pub async fn describe_cluster(
    addresses: &[String],
    timeout: Duration,
) -> Result<ClusterDescription, ClientError> {
    let mut last = ClientError::Closed;
    for address in addresses {
        let answer = async {
            let client = Client::connect(address, timeout).await?;
            let request = DescribeClusterRequest { forwarded: false };
            client.call(ClusterApi::DescribeCluster, &request).await
        };
        match answer.await {
            Ok(description) => return Ok(description),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Chapter 4's Metadata answer from the cluster's description: every live
/// broker, and each partition's leader ([`NO_LEADER`] if it has none).
pub fn metadata(description: &ClusterDescription) -> MetadataResponse {
    let brokers = description
        .brokers
        .iter()
        .filter_map(|(id, address)| {
            let (host, port) = address.rsplit_once(':')?;
            Some((*id, host.to_string(), port.parse().ok()?))
        })
        .collect();
    let mut topics: BTreeMap<&str, Vec<(u32, u32)>> = BTreeMap::new();
    for (tp, state) in &description.partitions {
        let leader = state.leader.unwrap_or(NO_LEADER);
        topics
            .entry(&tp.topic)
            .or_default()
            .push((tp.partition, leader));
    }
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| TopicMetadata {
            name: name.to_string(),
            error: ErrorCode::None,
            partitions,
        })
        .collect();
    MetadataResponse { brokers, topics }
}
