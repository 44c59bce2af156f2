//! `kfs topics`: what `kafka-topics` does, over the admin client.

use ch04_network::Admin;
use clap::Subcommand;

use crate::{Bootstrap, REQUEST_TIMEOUT, Result};

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
        /// A setting by Kafka's name, such as retention.ms=60000; repeat
        /// for more.
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
        TopicsCommand::Describe { name, bootstrap } => {
            let admin = connect(&bootstrap).await?;
            let names = match name {
                Some(name) => vec![name],
                None => admin.list_topics().await?,
            };
            for name in names {
                let topic = admin.describe_topic(&name).await?;
                let configs: Vec<String> = topic
                    .configs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                // Kafka's layout: a topic line, then a tab-indented line
                // per partition (with offsets where Kafka shows replicas).
                println!(
                    "Topic: {}\tPartitionCount: {}\tConfigs: {}",
                    topic.name,
                    topic.partitions.len(),
                    configs.join(",")
                );
                for p in topic.partitions {
                    println!(
                        "\tTopic: {}\tPartition: {}\tLeader: {}\tLogStartOffset: {}\tLogEndOffset: {}",
                        topic.name, p.partition, p.leader, p.log_start_offset, p.log_end_offset
                    );
                }
            }
        }
        TopicsCommand::Delete { name, bootstrap } => {
            connect(&bootstrap).await?.delete_topic(&name).await?;
            println!("Deleted topic {name}.");
        }
    }
    Ok(())
}

async fn connect(bootstrap: &Bootstrap) -> Result<Admin> {
    Ok(Admin::connect(&bootstrap.bootstrap_server, REQUEST_TIMEOUT).await?)
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
