//! [`ControllerLink`]: how a replicated broker reaches its controller.
//!
//! In this chapter the controller is one process at one address
//! ([`FixedController`]). Chapter 8 elects the controller among the
//! brokers, so its address changes, and an answer must carry the epoch
//! of the controller that gave it, so that a deposed controller's answers
//! can be refused. The broker ([`crate::service::ReplicatedBroker`]) makes
//! every call to its controller through this trait, which is the seam
//! chapter 8 plugs its own link into.

use std::future::Future;
use std::time::Duration;

use ch04_network::protocol::{ApiKey, MetadataRequest, MetadataResponse};
use ch04_network::{ClientConfig, ClientError};

use crate::protocol::{
    AlterPartitionRequest, AlterPartitionResponse, CreateReplicatedTopicRequest,
    CreateReplicatedTopicResponse, HeartbeatRequest, HeartbeatResponse, ReplicationApi,
};
use ch04_network::leaders::Connections;

// ANCHOR: link
/// The calls a broker makes to its controller.
pub trait ControllerLink: Send + Sync + 'static {
    /// Where the controller is now, for the broker's logs.
    fn describe(&self) -> String;

    /// A heartbeat: the answer brings the broker's partitions' states and
    /// the live brokers.
    fn heartbeat(
        &self,
        request: &HeartbeatRequest,
    ) -> impl Future<Output = Result<HeartbeatResponse, ClientError>> + Send;

    /// A leader's request to change an ISR.
    fn alter_partition(
        &self,
        request: &AlterPartitionRequest,
    ) -> impl Future<Output = Result<AlterPartitionResponse, ClientError>> + Send;

    /// A client's request to create a replicated topic, passed on.
    fn create_topic(
        &self,
        request: &CreateReplicatedTopicRequest,
    ) -> impl Future<Output = Result<CreateReplicatedTopicResponse, ClientError>> + Send;

    /// Every partition's leader and every live broker, for the broker's
    /// answers to its own clients' Metadata.
    fn metadata(&self) -> impl Future<Output = Result<MetadataResponse, ClientError>> + Send;

    /// Completes when the controller moves, so that the broker heartbeats
    /// the new one at once rather than at its next interval. A controller
    /// that never moves never completes it.
    fn moved(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}
// ANCHOR_END: link

/// Chapter 6's controller: one [`crate::controller_service`] at one
/// address, trusted as it is.
pub struct FixedController {
    address: String,
    clients: Connections,
}

impl FixedController {
    /// The controller at `address` (`host:port`), each call waiting up to
    /// `request_timeout` for its answer.
    pub fn new(address: impl Into<String>, request_timeout: Duration) -> FixedController {
        FixedController {
            address: address.into(),
            clients: Connections::new(ClientConfig {
                request_timeout,
                ..ClientConfig::default()
            }),
        }
    }

    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        api: impl Into<u16>,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        self.clients
            .get(&self.address)
            .await?
            .call(api, request)
            .await
    }
}

impl ControllerLink for FixedController {
    fn describe(&self) -> String {
        self.address.clone()
    }

    async fn heartbeat(
        &self,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.call(ReplicationApi::BrokerHeartbeat as u16, request)
            .await
    }

    async fn alter_partition(
        &self,
        request: &AlterPartitionRequest,
    ) -> Result<AlterPartitionResponse, ClientError> {
        self.call(ReplicationApi::AlterPartition as u16, request)
            .await
    }

    async fn create_topic(
        &self,
        request: &CreateReplicatedTopicRequest,
    ) -> Result<CreateReplicatedTopicResponse, ClientError> {
        self.call(ReplicationApi::CreateReplicatedTopic as u16, request)
            .await
    }

    async fn metadata(&self) -> Result<MetadataResponse, ClientError> {
        self.call(ApiKey::Metadata, &MetadataRequest { topics: None })
            .await
    }
}
