//! Where the cluster's state lives in the coordinator, and how it is
//! written there.
//!
//! The paths are Kafka's, from the years it ran on ZooKeeper, flattened in
//! one place:
//!
//! ```text
//! /brokers/ids/<id>                   ephemeral: a live broker (its session's)
//! /brokers/partitions/<topic>-<p>     a partition's state, as JSON
//! /controller                         ephemeral: the controller's id and address
//! /controller_epoch                   the controller epoch, bumped by each new one
//! ```
//!
//! Kafka nests a partition's state deeper
//! (`/brokers/topics/<topic>/partitions/<p>/state`) and keeps the replica
//! assignment in the topic's node; one node per partition, with its
//! replicas in it, makes a controller's load one listing and one read per
//! partition.
//!
//! Values are JSON, as Kafka's are, so that `kfs zk get` shows them to a
//! person. Bytes read from the coordinator come from outside this process:
//! a value that does not decode is an error ([`StateError`]), never a panic,
//! and the controller leaves that node as it is.

use ch03_partitions::TopicPartition;
use ch03_partitions::store::{parse_partition_dir, partition_dir_name};
use ch06_replication::protocol::{BrokerId, PartitionState};
use serde::{Deserialize, Serialize};

/// The parent of every broker node.
pub const BROKERS: &str = "/brokers";
/// Live brokers: one ephemeral node per broker, named by its id.
pub const BROKER_IDS: &str = "/brokers/ids";
/// Partition states: one persistent node per partition.
pub const PARTITIONS: &str = "/brokers/partitions";
/// The controller's ephemeral node: whoever created it leads.
pub const CONTROLLER: &str = "/controller";
/// The controller epoch: every new controller bumps it.
pub const CONTROLLER_EPOCH: &str = "/controller_epoch";

/// The persistent nodes a cluster needs, parents first. Every broker
/// creates whichever are missing when it starts.
pub const DIRECTORIES: [&str; 4] = [BROKERS, BROKER_IDS, PARTITIONS, CONTROLLER_EPOCH];

/// A value read from the coordinator that is not what this cluster wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The bytes are not the expected JSON.
    #[error("malformed value at {path}: {reason}")]
    Malformed {
        /// Where.
        path: String,
        /// What the decoder said.
        reason: String,
    },
    /// A partition node whose name is not `<topic>-<partition>`.
    #[error("{name} is not the name of a partition node")]
    BadName {
        /// The node's name.
        name: String,
    },
}

/// The node of a partition's state: named as chapter 3 names a
/// partition's directory.
pub fn partition_path(tp: &TopicPartition) -> String {
    format!(
        "{PARTITIONS}/{}",
        partition_dir_name(&tp.topic, tp.partition)
    )
}

/// The partition a node of [`PARTITIONS`] is for.
pub fn partition_of(name: &str) -> Result<TopicPartition, StateError> {
    let (topic, partition) = parse_partition_dir(name).ok_or_else(|| StateError::BadName {
        name: name.to_string(),
    })?;
    Ok(TopicPartition::new(topic, partition))
}

// ANCHOR: stored_state
/// A partition's state as stored: Kafka's fields (its `leader` is -1 when
/// there is none), the epoch of the controller that wrote it, and which
/// run of each in-sync broker the ISR means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredPartition {
    version: u32,
    controller_epoch: u64,
    leader: i64,
    leader_epoch: u32,
    partition_epoch: u32,
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    #[serde(default)]
    elr: Vec<BrokerId>,
    #[serde(default)]
    last_known_elr: Vec<BrokerId>,
    #[serde(default)]
    incarnations: Vec<(BrokerId, u64)>,
}
// ANCHOR_END: stored_state

/// The one format version this code writes and reads.
const FORMAT_VERSION: u32 = 1;

/// A partition's state with what the controller stores beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRecord {
    /// The state.
    pub state: PartitionState,
    /// The epoch of the controller that wrote it.
    pub controller_epoch: u64,
    /// Which run of each member of the ISR and of the eligible replicas
    /// the state means (the incarnation its heartbeats carry): a broker
    /// that restarted is another run, which may have lost what it had not
    /// synced. A controller elected later
    /// fences it when it heartbeats as another run, even if nobody saw it
    /// go (Kafka's broker epochs in the ISR, KIP-903, are the same idea).
    pub incarnations: Vec<(BrokerId, u64)>,
}

impl PartitionRecord {
    /// As JSON.
    pub fn encode(&self) -> Vec<u8> {
        let state = &self.state;
        let stored = StoredPartition {
            version: FORMAT_VERSION,
            controller_epoch: self.controller_epoch,
            leader: state.leader.map_or(-1, i64::from),
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            elr: state.elr.clone(),
            last_known_elr: state.last_known_elr.clone(),
            incarnations: self.incarnations.clone(),
        };
        serde_json::to_vec(&stored).expect("a struct of numbers serializes")
    }

    /// Decodes a partition's record read at `path`.
    pub fn decode(path: &str, bytes: &[u8]) -> Result<PartitionRecord, StateError> {
        let malformed = |reason: String| StateError::Malformed {
            path: path.to_string(),
            reason,
        };
        let stored: StoredPartition =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if stored.version != FORMAT_VERSION {
            return Err(malformed(format!("unknown version {}", stored.version)));
        }
        let leader = match stored.leader {
            -1 => None,
            id => Some(BrokerId::try_from(id).map_err(|_| malformed(format!("leader {id}")))?),
        };
        let replica = |id: &BrokerId| stored.replicas.contains(id);
        if stored.replicas.is_empty()
            || !stored.isr.iter().all(replica)
            || !leader.as_ref().is_none_or(replica)
        {
            return Err(malformed(
                "a leader or ISR member that is not a replica".into(),
            ));
        }
        let state = PartitionState {
            leader,
            leader_epoch: stored.leader_epoch,
            partition_epoch: stored.partition_epoch,
            replicas: stored.replicas,
            isr: stored.isr,
            elr: stored.elr,
            last_known_elr: stored.last_known_elr,
        };
        Ok(PartitionRecord {
            state,
            controller_epoch: stored.controller_epoch,
            incarnations: stored.incarnations,
        })
    }
}

/// What the controller's node says: who leads, and where to reach it.
/// (Kafka's says only the id, and brokers look the address up in the
/// broker's own node.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerInfo {
    /// The controller's broker id.
    #[serde(rename = "brokerid")]
    pub broker_id: BrokerId,
    /// Where it takes requests.
    pub address: String,
}

impl ControllerInfo {
    /// As JSON, the controller node's data.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and numbers serializes")
    }

    /// Decodes the controller node's data.
    pub fn decode(bytes: &[u8]) -> Result<ControllerInfo, StateError> {
        serde_json::from_slice(bytes).map_err(|e| StateError::Malformed {
            path: CONTROLLER.to_string(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> PartitionState {
        PartitionState {
            leader: Some(2),
            leader_epoch: 3,
            partition_epoch: 7,
            replicas: vec![2, 3, 1],
            isr: vec![2, 3],
            elr: vec![],
            last_known_elr: vec![],
        }
    }

    fn record(state: PartitionState, controller_epoch: u64) -> PartitionRecord {
        PartitionRecord {
            state,
            controller_epoch,
            incarnations: vec![(2, 17), (3, 4)],
        }
    }

    #[test]
    fn a_state_reads_back_as_written_and_is_readable_json() {
        let bytes = record(state(), 5).encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("\"leader\":2"), "{text}");
        assert!(text.contains("\"controller_epoch\":5"), "{text}");
        assert_eq!(
            PartitionRecord::decode("/p", &bytes).unwrap(),
            record(state(), 5)
        );
    }

    #[test]
    fn no_leader_is_stored_as_minus_one() {
        let offline = PartitionState {
            leader: None,
            ..state()
        };
        let bytes = record(offline.clone(), 1).encode();
        assert!(
            std::str::from_utf8(&bytes)
                .unwrap()
                .contains("\"leader\":-1")
        );
        assert_eq!(
            PartitionRecord::decode("/p", &bytes).unwrap().state,
            offline
        );
    }

    #[test]
    fn values_this_code_did_not_write_are_errors() {
        let good = String::from_utf8(record(state(), 1).encode()).unwrap();
        for bad in [
            "".to_string(),
            "not json".to_string(),
            good.replace("\"version\":1", "\"version\":9"),
            good.replace("\"leader\":2", "\"leader\":-7"),
            good.replace("\"isr\":[2,3]", "\"isr\":[4]"),
            good.replace("\"leader\":2", "\"leader\":4"),
            good.replace("\"replicas\":[2,3,1]", "\"replicas\":[]"),
        ] {
            assert!(
                matches!(
                    PartitionRecord::decode("/p", bad.as_bytes()),
                    Err(StateError::Malformed { .. })
                ),
                "{bad:?} decoded"
            );
        }
    }

    #[test]
    fn partition_node_names_split_at_the_last_dash() {
        let tp = TopicPartition::new("click-stream", 12);
        assert_eq!(partition_path(&tp), "/brokers/partitions/click-stream-12");
        assert_eq!(partition_of("click-stream-12").unwrap(), tp);
        for bad in ["orders", "orders-", "-3", "orders-x", "orders-01"] {
            assert!(partition_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_controller_node_names_its_broker_and_address() {
        let info = ControllerInfo {
            broker_id: 2,
            address: "127.0.0.1:9093".into(),
        };
        let bytes = info.encode();
        assert!(
            std::str::from_utf8(&bytes)
                .unwrap()
                .contains("\"brokerid\":2")
        );
        assert_eq!(ControllerInfo::decode(&bytes).unwrap(), info);
        assert!(ControllerInfo::decode(b"{}").is_err());
    }
}
