//! [`CoordinatorLink`]: how a group's clients reach the group's
//! coordinator.
//!
//! In this chapter one broker coordinates every group, but a client does
//! not assume it: it asks any broker which one coordinates its group
//! (FindCoordinator), sends the group's requests there, and asks again
//! when the coordinator moves. From chapter 6 on it does move: the
//! coordinator of a group is the leader of the group's partition of
//! `__consumer_offsets`, and a new leader takes the group over.
//!
//! What makes a client ask again (Kafka's `markCoordinatorUnknown`): an
//! answer `NOT_COORDINATOR` (this broker does not, or no longer,
//! coordinates the group) or `COORDINATOR_NOT_AVAILABLE` (nobody does
//! yet), and a call that got no answer at all (a dropped connection or a
//! timeout). See [`coordinator_unavailable`].

use std::sync::Mutex;
use std::time::Duration;

use ch04_network::leaders::{Connections, Leaders, bootstrap_servers};
use ch04_network::{ClientConfig, ClientError, ErrorCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::debug;

use crate::protocol::{FindCoordinatorRequest, FindCoordinatorResponse, GroupApi};

/// Whether a group call's failure means its coordinator moved or cannot
/// be reached right now: the client finds the coordinator again and
/// retries, rather than failing. A code `NOT_COORDINATOR` or
/// `COORDINATOR_NOT_AVAILABLE`, a dropped connection or a timeout.
pub fn coordinator_unavailable(error: &ClientError) -> bool {
    match error {
        ClientError::Io { .. } | ClientError::Timeout(_) => true,
        ClientError::Broker { code, .. } => coordinator_moved(*code),
        ClientError::Protocol(_) | ClientError::Closed => false,
    }
}

/// Whether an answer's code says the group's coordinator is elsewhere,
/// or not there yet.
pub fn coordinator_moved(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable
    )
}

/// The way to one group's coordinator: found with FindCoordinator, and
/// found again when it moves.
pub struct CoordinatorLink {
    group_id: String,
    /// The cluster's brokers (from the bootstrap list and Metadata): any
    /// of them answers FindCoordinator, and partition counts; and the
    /// connections of the group's calls but one.
    brokers: Leaders,
    /// JoinGroups, on connections with a long timeout: the coordinator
    /// holds a join for up to a whole rebalance. (Kafka gives a JoinGroup
    /// `max.poll.interval.ms` + 5 s, and every other call
    /// `request.timeout.ms`: a heartbeat to a coordinator that froze must
    /// not wait minutes.)
    joins: Connections,
    /// The coordinator's address, once found.
    coordinator: Mutex<Option<String>>,
    /// `retry.backoff.ms`: how long to wait before asking again.
    retry_backoff: Duration,
}

impl CoordinatorLink {
    /// A link for `group_id` whose brokers are first asked at `bootstrap`
    /// (`host:port[,host:port...]`). Calls wait as `config` says, but a
    /// JoinGroup, which waits up to `join_timeout`.
    pub fn new(
        bootstrap: &str,
        group_id: impl Into<String>,
        config: ClientConfig,
        join_timeout: Duration,
        retry_backoff: Duration,
    ) -> CoordinatorLink {
        CoordinatorLink {
            group_id: group_id.into(),
            brokers: Leaders::new(bootstrap_servers(bootstrap), config.clone()),
            joins: Connections::new(ClientConfig {
                request_timeout: join_timeout,
                ..config
            }),
            coordinator: Mutex::new(None),
            retry_backoff,
        }
    }

    /// The cluster's brokers as the link knows them.
    pub fn brokers(&self) -> &Leaders {
        &self.brokers
    }

    /// The coordinator's address: asked of any broker if not known.
    pub async fn coordinator(&self) -> Result<String, ClientError> {
        if let Some(addr) = self.coordinator.lock().unwrap().clone() {
            return Ok(addr);
        }
        self.find().await.map(|(_, addr)| addr)
    }

    /// Asks any broker which one coordinates the group: its id and
    /// address, remembered for the next calls.
    pub async fn find(&self) -> Result<(u32, String), ClientError> {
        let addr = self.brokers.any_broker().await?;
        let request = FindCoordinatorRequest {
            key: self.group_id.clone(),
        };
        let found: FindCoordinatorResponse = self
            .brokers
            .call(&addr, GroupApi::FindCoordinator, &request)
            .await?;
        ch04_network::client::check(found.error, || {
            format!("finding the coordinator of group {:?}", self.group_id)
        })?;
        let coordinator = format!("{}:{}", found.host, found.port);
        debug!(group = self.group_id, %coordinator, node = found.node_id, "found the coordinator");
        *self.coordinator.lock().unwrap() = Some(coordinator.clone());
        Ok((found.node_id, coordinator))
    }

    /// One call to the coordinator (found first if need be). A call that
    /// gets no answer forgets the coordinator; so must its caller, with
    /// [`CoordinatorLink::moved`], on an answer that says it moved.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        api: GroupApi,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let addr = self.coordinator().await?;
        let client = match api {
            GroupApi::JoinGroup => self.joins.get(&addr).await,
            _ => self.brokers.client(&addr).await,
        };
        let answer = match client {
            Ok(client) => client.call(api, request).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &answer
            && coordinator_unavailable(e)
        {
            self.moved();
        }
        answer
    }

    /// The coordinator moved (or is gone): the next call finds it again,
    /// and the metadata is asked for again too.
    pub fn moved(&self) {
        self.coordinator.lock().unwrap().take();
        self.brokers.forget();
    }

    /// Calls the coordinator until an answer comes that `moved` does not
    /// call a coordinator problem, or `timeout` passes: each failed try
    /// finds the coordinator again after `retry.backoff.ms` (as Kafka's
    /// `commitSync` retries until `default.api.timeout.ms`). The last
    /// failure if time runs out.
    pub async fn call_until_found<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        api: GroupApi,
        request: &Req,
        timeout: Duration,
        moved: impl Fn(&Resp) -> bool,
    ) -> Result<Resp, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.call(api, request).await;
            let again = match &answer {
                Ok(answer) => moved(answer),
                Err(e) => coordinator_unavailable(e),
            };
            if !again || Instant::now() >= deadline {
                return answer;
            }
            self.moved();
            tokio::time::sleep(self.retry_backoff).await;
        }
    }

    /// Waits `retry.backoff.ms`, after a call that found no coordinator.
    pub async fn back_off(&self) {
        tokio::time::sleep(self.retry_backoff).await;
    }
}
