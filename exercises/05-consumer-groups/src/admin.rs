//! [`GroupAdmin`]: the groups as an operator sees them, what
//! `kafka-consumer-groups --list` and `--describe` ask the broker.

use ch03_partitions::TopicPartition;
use std::collections::BTreeMap;
use std::time::Duration;

use ch04_network::{Client, ClientError, ErrorCode};

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
    client: Client,
}

impl GroupAdmin {
    /// Connects to the broker at `bootstrap` (`host:port`).
    pub async fn connect(bootstrap: &str, timeout: Duration) -> Result<GroupAdmin, ClientError> {
        Ok(GroupAdmin {
            client: Client::connect(bootstrap, timeout).await?,
        })
    }

    /// Every group: `(id, state)`, by id.
    pub async fn list_groups(&self) -> Result<Vec<(String, String)>, ClientError> {
        let response: ListGroupsResponse = self
            .client
            .call(GroupApi::ListGroups, &ListGroupsRequest {})
            .await?;
        let mut groups: Vec<(String, String)> = response
            .groups
            .into_iter()
            .map(|(id, _, state)| (id, state))
            .collect();
        groups.sort();
        Ok(groups)
    }

    /// A group's state and members, each with its partitions.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupInfo, ClientError> {
        let request = DescribeGroupsRequest {
            groups: vec![group_id.to_string()],
        };
        let response: DescribeGroupsResponse =
            self.client.call(GroupApi::DescribeGroups, &request).await?;
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
        let response: OffsetFetchResponse =
            self.client.call(GroupApi::OffsetFetch, &request).await?;
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
