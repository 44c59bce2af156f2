//! `kfs groups`: what `kafka-consumer-groups --list` and `--describe` show.

use std::collections::BTreeMap;

use ch03_partitions::TopicPartition;
use ch04_network::{Consumer, ConsumerConfig, ErrorCode, SeekTo};
use ch05_consumer_groups::admin::GroupAdmin;
use clap::Subcommand;

use crate::{Bootstrap, REQUEST_TIMEOUT, Result};

/// `kfs groups`' subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// List the consumer groups.
    List {
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
    /// Show a group's members, their partitions, and each partition's
    /// committed offset, log end offset and lag.
    Describe {
        /// The group id.
        group: String,
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
}

/// Runs one `kfs groups` subcommand.
pub(crate) async fn run(command: GroupsCommand) -> Result<()> {
    match command {
        GroupsCommand::List { bootstrap } => {
            let admin = GroupAdmin::connect(&bootstrap.bootstrap_server, REQUEST_TIMEOUT).await?;
            for (group, _) in admin.list_groups().await? {
                println!("{group}");
            }
        }
        GroupsCommand::Describe { group, bootstrap } => describe(&group, &bootstrap).await?,
    }
    Ok(())
}

/// One row: a partition the group reads or has read.
struct Row {
    current: Option<u64>,
    end: Option<u64>,
    member: Option<(String, String)>,
}

async fn describe(group: &str, bootstrap: &Bootstrap) -> Result<()> {
    let groups = GroupAdmin::connect(&bootstrap.bootstrap_server, REQUEST_TIMEOUT).await?;
    let info = groups.describe_group(group).await?;
    let (coordinator, at) = groups.coordinator(group).await?;
    let committed = groups.committed_offsets(group).await?;
    let mut rows: BTreeMap<TopicPartition, Row> = BTreeMap::new();
    for (tp, offset) in committed {
        rows.insert(
            tp,
            Row {
                current: Some(offset),
                end: None,
                member: None,
            },
        );
    }
    for m in &info.members {
        for tp in &m.partitions {
            let row = rows.entry(tp.clone()).or_insert(Row {
                current: None,
                end: None,
                member: None,
            });
            row.member = Some((m.member_id.clone(), m.client_id.clone()));
        }
    }
    // Log end offsets, each from its partition's leader, as Kafka's tool
    // asks a consumer for them.
    let config = ConsumerConfig {
        request_timeout: REQUEST_TIMEOUT,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(&bootstrap.bootstrap_server, config).await?;
    let partitions: Vec<TopicPartition> = rows.keys().cloned().collect();
    consumer.assign(partitions.clone());
    let mut ends = BTreeMap::new();
    for tp in partitions {
        match consumer.seek(&tp, SeekTo::End).await {
            Ok(()) => {
                if let Some(end) = consumer.position(&tp) {
                    ends.insert(tp, end);
                }
            }
            // A topic deleted since its commits has no end to show.
            Err(e) if e.code() == Some(ErrorCode::UnknownTopicOrPartition) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    for (tp, row) in &mut rows {
        row.end = ends.get(tp).copied();
    }

    println!(
        "Group {} is {} (assignor {}, generation {}) with {} member(s).",
        info.group_id,
        info.state,
        if info.protocol.is_empty() {
            "-"
        } else {
            &info.protocol
        },
        info.generation,
        info.members.len()
    );
    println!("Coordinator: broker {coordinator} at {at}.");
    let dash = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut table = vec![
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "CLIENT-ID",
        ]
        .map(String::from),
    ];
    for (tp, row) in rows {
        let TopicPartition { topic, partition } = tp;
        // Lag: what the group has yet to read past its commit.
        let lag = match (row.current, row.end) {
            (Some(current), Some(end)) => Some(end.saturating_sub(current)),
            (None, Some(end)) => Some(end),
            _ => None,
        };
        let (member, client) = row.member.unwrap_or(("-".into(), "-".into()));
        table.push([
            group.to_string(),
            topic,
            partition.to_string(),
            dash(row.current),
            dash(row.end),
            dash(lag),
            member,
            client,
        ]);
    }
    print_table(&table);
    Ok(())
}

/// Prints rows in columns as wide as their widest cell.
fn print_table(rows: &[[String; 8]]) {
    let mut widths = [0; 8];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}
