//! [`Admin`]: topic management over the network, what `kafka-topics` does.
//! A call that fails because the connection broke is not retried (the
//! caller decides: creating a topic twice is an error); the next call
//! connects again.

use std::time::Duration;

use crate::client::{Client, ClientConfig, check};
use crate::error::ClientError;
use crate::protocol::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeConfigsResponse, EARLIEST, LATEST, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, NewTopic, TopicResults,
};

/// One partition as `kfs topics describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition.
    pub partition: u32,
    /// Its leader's broker id.
    pub leader: u32,
    /// Its first offset.
    pub log_start_offset: u64,
    /// Its log end offset.
    pub log_end_offset: u64,
}

/// A topic as `kfs topics describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic.
    pub name: String,
    /// Its partitions.
    pub partitions: Vec<PartitionInfo>,
    /// Its settings, by Kafka's names.
    pub configs: Vec<(String, String)>,
}

/// A client for topic management.
pub struct Admin {
    client: Client,
}

impl Admin {
    /// Connects to the broker at `bootstrap` (`host:port`), with calls
    /// that time out after `timeout` (`request.timeout.ms`).
    pub async fn connect(bootstrap: &str, timeout: Duration) -> Result<Admin, ClientError> {
        Ok(Admin {
            client: Client::connect(bootstrap, timeout).await?,
        })
    }

    /// Connects to the broker at `bootstrap` (`host:port`), with all the
    /// connection's settings (the reconnect backoff too).
    pub async fn connect_with(bootstrap: &str, config: ClientConfig) -> Result<Admin, ClientError> {
        Ok(Admin {
            client: Client::connect_with(bootstrap, config).await?,
        })
    }

    /// Creates a topic; returns the broker's warning, if any.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: Vec<(String, String)>,
    ) -> Result<String, ClientError> {
        let request = CreateTopicsRequest {
            topics: vec![NewTopic {
                name: name.to_string(),
                partitions,
                configs,
            }],
        };
        let response: TopicResults = self.client.call(ApiKey::CreateTopics, &request).await?;
        let (_, code, message) = one(response)?;
        check(code, || message.clone())?;
        Ok(message)
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let request = DeleteTopicsRequest {
            topics: vec![name.to_string()],
        };
        let response: TopicResults = self.client.call(ApiKey::DeleteTopics, &request).await?;
        let (_, code, message) = one(response)?;
        check(code, || message)
    }

    /// The names of all topics, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>, ClientError> {
        let response: MetadataResponse = self
            .client
            .call(ApiKey::Metadata, &MetadataRequest { topics: None })
            .await?;
        Ok(response.topics.into_iter().map(|t| t.name).collect())
    }

    /// A topic's partitions, their offsets, and its settings.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        let topic = self.client.topic_metadata(name).await?;
        let mut partitions = Vec::new();
        for (partition, leader) in topic.partitions {
            let offsets = ListOffsetsRequest {
                partitions: vec![
                    (name.to_string(), partition, EARLIEST),
                    (name.to_string(), partition, LATEST),
                ],
            };
            let response: ListOffsetsResponse =
                self.client.call(ApiKey::ListOffsets, &offsets).await?;
            let mut found = response
                .partitions
                .into_iter()
                .map(|(_, _, error, offset)| {
                    check(error, || format!("{name}-{partition}")).map(|()| offset.unwrap_or(0))
                });
            let (start, end) = match (found.next(), found.next()) {
                (Some(start), Some(end)) => (start?, end?),
                _ => return Err(ClientError::Protocol("a short ListOffsets response".into())),
            };
            partitions.push(PartitionInfo {
                partition,
                leader,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        let configs: DescribeConfigsResponse = self
            .client
            .call(
                ApiKey::DescribeConfigs,
                &DescribeConfigsRequest {
                    topic: name.to_string(),
                },
            )
            .await?;
        check(configs.error, || format!("topic {name:?}"))?;
        Ok(TopicInfo {
            name: name.to_string(),
            partitions,
            configs: configs.configs,
        })
    }
}

fn one(response: TopicResults) -> Result<(String, crate::error::ErrorCode, String), ClientError> {
    response
        .topics
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Protocol("an empty response".into()))
}
