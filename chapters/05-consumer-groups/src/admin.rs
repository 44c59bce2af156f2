//! [`GroupAdmin`]: the groups as an operator sees them, what
//! `kafka-consumer-groups --list` and `--describe` ask the brokers. Each
//! broker lists the groups it coordinates, so listing asks every broker;
//! a group's details come from its coordinator.

use ch03_partitions::TopicPartition;
use std::collections::BTreeMap;
use std::time::Duration;

use ch04_network::{ClientConfig, ClientError, ErrorCode};

use crate::link::{CoordinatorLink, coordinator_moved, coordinator_unavailable};
use crate::protocol::{
    Assignment, DescribeGroupsRequest, DescribeGroupsResponse, GroupApi, ListGroupsRequest,
    ListGroupsResponse, OffsetFetchRequest, OffsetFetchResponse, decode_metadata,
};

/// One member of a group, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its member id.
    pub member_id: String,
    /// Its `client.id`.
    pub client_id: String,
    /// The partitions assigned to it.
    pub partitions: Vec<TopicPartition>,
}

/// A group, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group id.
    pub group_id: String,
    /// Its state (`Stable`, `Empty`, ...).
    pub state: String,
    /// Its assignor.
    pub protocol: String,
    /// Its generation.
    pub generation: i32,
    /// Its members.
    pub members: Vec<MemberInfo>,
}

/// A client for inspecting groups.
pub struct GroupAdmin {
    bootstrap: String,
    timeout: Duration,
}

impl GroupAdmin {
    /// An admin of the cluster at `bootstrap` (`host:port[,host:port...]`),
    /// whose calls wait up to `timeout`. Checks that a broker answers.
    pub async fn connect(bootstrap: &str, timeout: Duration) -> Result<GroupAdmin, ClientError> {
        let admin = GroupAdmin {
            bootstrap: bootstrap.to_string(),
            timeout,
        };
        admin.link("").brokers().refresh(Some(Vec::new())).await?;
        Ok(admin)
    }

    /// The way to `group_id`'s coordinator.
    fn link(&self, group_id: &str) -> CoordinatorLink {
        let config = ClientConfig {
            request_timeout: self.timeout,
            ..ClientConfig::default()
        };
        let backoff = Duration::from_millis(100);
        CoordinatorLink::new(&self.bootstrap, group_id, config, self.timeout, backoff)
    }

    /// Every group, of every broker: `(id, state)`, by id.
    pub async fn list_groups(&self) -> Result<Vec<(String, String)>, ClientError> {
        let link = self.link("");
        let brokers = link.brokers();
        brokers.refresh(Some(Vec::new())).await?;
        let mut groups: Vec<(String, String)> = Vec::new();
        for addr in brokers.brokers().values() {
            let response: ListGroupsResponse = brokers
                .call(addr, GroupApi::ListGroups, &ListGroupsRequest {})
                .await?;
            groups.extend(
                response
                    .groups
                    .into_iter()
                    .map(|(id, _, state)| (id, state)),
            );
        }
        groups.sort();
        Ok(groups)
    }

    /// The broker that coordinates `group_id`: its id and address. Asked
    /// again while there is none yet (the offsets topic is being made, or
    /// its partition has no leader), until the admin's timeout.
    pub async fn coordinator(&self, group_id: &str) -> Result<(u32, String), ClientError> {
        let link = self.link(group_id);
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match link.find().await {
                Err(e) if coordinator_unavailable(&e) && tokio::time::Instant::now() < deadline => {
                    link.moved();
                    link.back_off().await;
                }
                found => return found,
            }
        }
    }

    /// A group's state and members, each with its partitions.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupInfo, ClientError> {
        let request = DescribeGroupsRequest {
            groups: vec![group_id.to_string()],
        };
        let moved = |answer: &DescribeGroupsResponse| {
            answer.groups.iter().any(|g| coordinator_moved(g.error))
        };
        let response = self
            .link(group_id)
            .call_until_found(GroupApi::DescribeGroups, &request, self.timeout, moved)
            .await?;
        let group = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("an empty DescribeGroups response".into()))?;
        ch04_network::client::check(group.error, || format!("group {group_id:?}"))?;
        let mut members = Vec::new();
        for m in group.members {
            // A member between generations has no assignment yet.
            let partitions = if m.assignment.is_empty() {
                Vec::new()
            } else {
                decode_metadata::<Assignment>(&m.assignment)
                    .map_err(ClientError::Protocol)?
                    .flatten()
            };
            members.push(MemberInfo {
                member_id: m.member_id,
                client_id: m.client_id,
                partitions,
            });
        }
        Ok(GroupInfo {
            group_id: group.group_id,
            state: group.state,
            protocol: group.protocol,
            generation: group.generation_id,
            members,
        })
    }

    /// Every committed offset of a group, by topic and partition.
    pub async fn committed_offsets(
        &self,
        group_id: &str,
    ) -> Result<BTreeMap<TopicPartition, u64>, ClientError> {
        let request = OffsetFetchRequest {
            group_id: group_id.to_string(),
            topics: None,
        };
        let moved = |answer: &OffsetFetchResponse| coordinator_moved(answer.error);
        let response = self
            .link(group_id)
            .call_until_found(GroupApi::OffsetFetch, &request, self.timeout, moved)
            .await?;
        if response.error != ErrorCode::None {
            return Err(ClientError::Broker {
                code: response.error,
                message: format!("group {group_id:?}"),
            });
        }
        Ok(response
            .topics
            .into_iter()
            .flat_map(|(topic, ps)| {
                ps.into_iter().filter_map(move |p| {
                    p.offset
                        .map(|o| (TopicPartition::new(topic.clone(), p.partition), o))
                })
            })
            .collect())
    }
}
