//! `kfs topics`: what `kafka-topics` does, over the admin client.

use std::collections::BTreeMap;

use ch04_network::Admin;
use ch06_replication::client::ClusterClient;
use ch06_replication::protocol::PartitionState;
use clap::Subcommand;

use crate::{Bootstrap, REQUEST_TIMEOUT, Result, cluster};

/// `kfs topics`' subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TopicsCommand {
    /// Create a topic.
    Create {
        /// The topic's name.
        name: String,
        /// How many partitions it has.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// How many brokers hold a replica of each partition: the topic is
        /// created through the controller, its replicas spread over the
        /// brokers. Without it, the topic lives on the bootstrap broker
        /// alone, as in chapters 4 and 5.
        #[arg(long, conflicts_with = "configs")]
        replication_factor: Option<u32>,
        /// A setting by Kafka's name, such as retention.ms=60000; repeat
        /// for more (for a topic without --replication-factor).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<(String, String)>,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// List the topics' names.
    List {
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Show a topic's partitions, offsets and settings (every topic's if
    /// no name is given).
    Describe {
        /// The topic's name.
        name: Option<String>,
        /// Only the partitions whose ISR is smaller than their replicas.
        #[arg(long)]
        under_replicated_partitions: bool,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Delete a topic and its data.
    Delete {
        /// The topic's name.
        name: String,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
}

/// Parses `KEY=VALUE`.
fn key_value(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Runs one `kfs topics` subcommand.
pub(crate) async fn run(command: TopicsCommand) -> Result<()> {
    match command {
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor: Some(factor),
            bootstrap,
            ..
        } => {
            let client = ClusterClient::new(bootstrap.servers(), cluster::client_config());
            client.create_topic(&name, partitions, factor).await?;
            println!("Created topic {name}.");
        }
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor: None,
            configs,
            bootstrap,
        } => {
            let admin = connect(&bootstrap).await?;
            let warning = admin.create_topic(&name, partitions, configs).await?;
            if !warning.is_empty() {
                eprintln!("WARNING: {warning}");
            }
            println!("Created topic {name}.");
        }
        TopicsCommand::List { bootstrap } => {
            for name in connect(&bootstrap).await?.list_topics().await? {
                println!("{name}");
            }
        }
        TopicsCommand::Describe {
            name,
            under_replicated_partitions,
            bootstrap,
        } => describe(name, under_replicated_partitions, &bootstrap).await?,
        TopicsCommand::Delete { name, bootstrap } => {
            let cluster = cluster::describe(&bootstrap).await?;
            if cluster.partitions.iter().any(|(tp, _)| tp.topic == name) {
                cluster::delete_topic(&cluster, &name).await?;
            } else {
                connect(&bootstrap).await?.delete_topic(&name).await?;
            }
            println!("Deleted topic {name}.");
        }
    }
    Ok(())
}

/// `kfs topics describe`, in Kafka's layout: a line per topic, then a
/// tab-indented line per partition. A replicated topic shows its leader,
/// replicas and ISR (and eligible replicas, KIP-966) as the controller
/// stored them; a topic of the bootstrap broker alone shows its offsets.
async fn describe(
    name: Option<String>,
    under_replicated: bool,
    bootstrap: &Bootstrap,
) -> Result<()> {
    let cluster = cluster::describe(bootstrap).await?;
    let mut replicated: BTreeMap<&str, Vec<(u32, &PartitionState)>> = BTreeMap::new();
    for (tp, state) in &cluster.partitions {
        replicated
            .entry(&tp.topic)
            .or_default()
            .push((tp.partition, state));
    }
    let admin = connect(bootstrap).await?;
    let names = match name {
        Some(name) => vec![name],
        None => admin.list_topics().await?,
    };
    for name in names {
        if let Some(partitions) = replicated.get(name.as_str()) {
            let shown: Vec<_> = partitions
                .iter()
                .filter(|(_, s)| !under_replicated || s.isr.len() < s.replicas.len())
                .collect();
            if under_replicated && shown.is_empty() {
                continue;
            }
            let factor = partitions.first().map_or(0, |(_, s)| s.replicas.len());
            println!(
                "Topic: {name}\tPartitionCount: {}\tReplicationFactor: {factor}\tConfigs: ",
                partitions.len()
            );
            for (partition, state) in shown {
                let leader = state.leader.map_or("none".to_string(), |l| l.to_string());
                println!(
                    "\tTopic: {name}\tPartition: {partition}\tLeader: {leader}\tReplicas: {}\tIsr: {}\tElr: {}\tLastKnownElr: {}",
                    ids(&state.replicas),
                    ids(&state.isr),
                    ids(&state.elr),
                    ids(&state.last_known_elr)
                );
            }
            continue;
        }
        if under_replicated {
            // One replica, always in sync with itself.
            continue;
        }
        let topic = admin.describe_topic(&name).await?;
        let configs: Vec<String> = topic
            .configs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "Topic: {}\tPartitionCount: {}\tReplicationFactor: 1\tConfigs: {}",
            topic.name,
            topic.partitions.len(),
            configs.join(",")
        );
        for p in topic.partitions {
            println!(
                "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\tLogStartOffset: {}\tLogEndOffset: {}",
                topic.name,
                p.partition,
                p.leader,
                p.leader,
                p.leader,
                p.log_start_offset,
                p.log_end_offset
            );
        }
    }
    Ok(())
}

/// Broker ids as Kafka's tool prints them: `1,2,3`.
fn ids(ids: &[u32]) -> String {
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    ids.join(",")
}

async fn connect(bootstrap: &Bootstrap) -> Result<Admin> {
    Ok(Admin::connect(&bootstrap.server().await?, REQUEST_TIMEOUT).await?)
}

#[cfg(test)]
mod tests {
    use super::key_value;

    #[test]
    fn configs_are_key_equals_value() {
        assert_eq!(
            key_value("retention.ms=60000"),
            Ok(("retention.ms".to_string(), "60000".to_string()))
        );
        assert_eq!(key_value("a=b=c"), Ok(("a".to_string(), "b=c".to_string())));
        assert!(key_value("retention.ms").is_err());
        assert!(key_value("=1").is_err());
    }
}
