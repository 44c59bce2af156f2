//! [`TopicPartition`]: the name of one partition of one topic.
//!
//! From here on almost everything is per partition: a producer's batches, a
//! consumer's positions, a group's assignment and committed offsets, and
//! (from chapter 6) a replica's state. One named type for "which partition"
//! reads better than a `(String, u32)` tuple and gives every later chapter
//! the same key.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A topic and one of its partitions, as Kafka's `TopicPartition`.
///
/// Ordered by topic, then partition, so a `BTreeMap` keyed by it lists a
/// topic's partitions together and in order. (It encodes with bincode
/// exactly as a `(String, u32)` tuple would.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition's number, from 0.
    pub partition: u32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// `topic-partition`, as Kafka writes it (and as the partition's directory
/// is named).
impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_topic_then_partition_and_prints_as_kafka_does() {
        let mut tps = [
            TopicPartition::new("b", 0),
            TopicPartition::new("a", 10),
            TopicPartition::new("a", 2),
        ];
        tps.sort();
        let printed: Vec<String> = tps.iter().map(ToString::to_string).collect();
        assert_eq!(printed, ["a-2", "a-10", "b-0"]);
    }

    #[test]
    fn encodes_as_the_tuple_it_replaces() {
        let config = bincode::config::standard();
        let tp = bincode::serde::encode_to_vec(TopicPartition::new("t", 7), config).unwrap();
        let tuple = bincode::serde::encode_to_vec(("t".to_string(), 7u32), config).unwrap();
        assert_eq!(tp, tuple);
    }
}
