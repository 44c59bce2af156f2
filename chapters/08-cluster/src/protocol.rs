//! Sans-IO. The messages between brokers and their elected controller,
//! and the cluster's description for tools, under the API keys of
//! [`ClusterApi`]. Bodies are bincode in chapter 4's frames, as chapter
//! 6's are; an error (`NOT_CONTROLLER`, `STALE_CONTROLLER_EPOCH`, ...) is
//! chapter 4's error response.

use ch03_partitions::TopicPartition;
use ch06_replication::protocol::{BrokerId, PartitionState};
use serde::{Deserialize, Serialize};

use crate::state::ControllerInfo;

/// The cluster's APIs, with Kafka's key numbers where Kafka has the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterApi {
    /// A broker's heartbeat to the controller (chapter 6's body; the
    /// answer is [`Fenced`]).
    BrokerHeartbeat = 63,
    /// A leader's ISR change, to the controller (chapter 6's body; the
    /// answer is [`Fenced`]).
    AlterPartition = 56,
    /// A broker about to stop asks the controller to move its leadership
    /// away first (key 7).
    ControlledShutdown = 7,
    /// Move leadership back to preferred replicas (key 43).
    ElectLeaders = 43,
    /// The controller, the live brokers and every partition's state
    /// (key 60); any broker answers it.
    DescribeCluster = 60,
    /// Create a replicated topic, to the controller (chapter 6's
    /// CreateReplicatedTopic body). Clients send chapter 6's
    /// CreateReplicatedTopic to any broker, which passes it on as this.
    CreateTopic = 2019,
    /// Delete a replicated topic, to the controller.
    DeleteTopic = 2020,
}

impl ClusterApi {
    /// The API for a key number, if it is one of these.
    pub fn from_u16(key: u16) -> Option<ClusterApi> {
        Some(match key {
            63 => ClusterApi::BrokerHeartbeat,
            56 => ClusterApi::AlterPartition,
            7 => ClusterApi::ControlledShutdown,
            43 => ClusterApi::ElectLeaders,
            60 => ClusterApi::DescribeCluster,
            2019 => ClusterApi::CreateTopic,
            2020 => ClusterApi::DeleteTopic,
            _ => return None,
        })
    }
}

impl From<ClusterApi> for u16 {
    fn from(api: ClusterApi) -> u16 {
        api as u16
    }
}

/// An order from the controller, with its epoch: a broker obeys it only
/// if no later controller has been obeyed
/// ([`crate::fence::ControllerFence`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fenced<T> {
    /// The epoch of the controller that answered.
    pub controller_epoch: u64,
    /// The answer.
    pub body: T,
}

/// [`ClusterApi::ControlledShutdown`]'s request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlledShutdownRequest {
    /// The broker about to stop.
    pub broker_id: BrokerId,
}

/// [`ClusterApi::DeleteTopic`]'s request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteTopicRequest {
    /// The topic.
    pub name: String,
}

/// [`ClusterApi::ElectLeaders`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectLeadersResponse {
    /// The partitions whose leadership moved back to their preferred
    /// replica.
    pub moved: Vec<TopicPartition>,
}

/// [`ClusterApi::DescribeCluster`]'s request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeClusterRequest {
    /// Whether a broker passed it on already: the broker that gets it
    /// answers from what it has as controller, or refuses with
    /// `NOT_CONTROLLER`, never passing it on again (two brokers that each
    /// believe, for a moment, the other leads must not pass it back and
    /// forth).
    pub forwarded: bool,
}

/// The cluster as its controller has it stored, for tools (`kfs topics
/// describe`, `kfs cluster status`) and for each broker's Metadata cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterDescription {
    /// The controller that answered.
    pub controller: ControllerInfo,
    /// Its epoch.
    pub controller_epoch: u64,
    /// The brokers alive to it, with their addresses.
    pub brokers: Vec<(BrokerId, String)>,
    /// Every partition's state, as stored in the coordinator.
    pub partitions: Vec<(TopicPartition, PartitionState)>,
}
