//! A topic's configuration, by Kafka's names (`retention.ms`, ...), and how
//! it becomes each partition's [`LogConfig`].

use std::collections::BTreeMap;

use ch02_segments::{FlushPolicy, LogConfig, TimestampType};
use serde::{Deserialize, Serialize};

/// What happens to old data (`cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanupPolicy {
    /// Delete whole old segments by size and age (chapter 2's retention).
    Delete,
    /// Keep only the newest record for each key (log compaction). Named so
    /// that the configuration is Kafka's, but not implemented: creating a
    /// topic with it is refused.
    Compact,
}

/// A bad configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?} for {key}: {reason}")]
pub struct ConfigError {
    /// The configuration's name.
    pub key: String,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One topic's settings. The defaults are Kafka's broker defaults.
///
/// Stored (in `topics.meta`) as Kafka stores a topic's configuration: a map
/// from each setting's name to its value as text. A setting added in a
/// later version is then simply missing from an older file, and takes its
/// default, instead of making the file unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    into = "BTreeMap<String, String>",
    try_from = "BTreeMap<String, String>"
)]
pub struct TopicConfig {
    /// `cleanup.policy`: only [`CleanupPolicy::Delete`] is implemented.
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms`: delete segments older than this (`None`: keep forever).
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: delete old segments while a partition is bigger
    /// (`None`: no limit).
    pub retention_bytes: Option<u64>,
    /// `segment.bytes`: roll a partition's segment at this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a segment this old (`None`: never by age).
    pub segment_ms: Option<i64>,
    /// `max.message.bytes`: the largest batch a partition accepts.
    pub max_message_bytes: u32,
    /// `flush.messages`: sync after this many records (`None`: leave it to
    /// the operating system).
    pub flush_messages: Option<u64>,
    /// `flush.ms`: sync this often (`None`: leave it to the operating system).
    pub flush_ms: Option<i64>,
    /// `message.timestamp.type`: keep the producer's timestamps
    /// (`CreateTime`) or stamp each batch with the time it is appended
    /// (`LogAppendTime`).
    pub timestamp_type: TimestampType,
}

impl Default for TopicConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        TopicConfig {
            cleanup_policy: CleanupPolicy::Delete,
            retention_ms: log.retention_ms,
            retention_bytes: log.retention_bytes,
            segment_bytes: log.segment_bytes,
            segment_ms: log.segment_ms,
            max_message_bytes: log.max_batch_bytes,
            flush_messages: log.flush.messages,
            flush_ms: log.flush.interval_ms,
            timestamp_type: log.timestamp_type,
        }
    }
}

/// The names [`TopicConfig::set`] understands, in the order
/// [`TopicConfig::entries`] lists them.
pub const KEYS: [&str; 9] = [
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "flush.messages",
    "flush.ms",
    "message.timestamp.type",
];

impl TopicConfig {
    /// Sets one setting by its Kafka name, from its text form: what
    /// `kafka-topics --config retention.ms=60000` does. As in Kafka, `-1`
    /// means "no limit" for the settings that can have none.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let error = |reason: &str| ConfigError {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let number = || {
            value
                .parse::<i64>()
                .map_err(|_| error("not a whole number"))
        };
        // -1 is "unlimited"; other negative numbers are mistakes.
        let limit = || match number()? {
            -1 => Ok(None),
            n if n < 0 => Err(error("must be -1 (no limit) or at least 0")),
            n => Ok(Some(n)),
        };
        let positive = || match number()? {
            n if n >= 1 => Ok(n),
            _ => Err(error("must be at least 1")),
        };
        match key {
            "cleanup.policy" => {
                self.cleanup_policy = match value {
                    "delete" => CleanupPolicy::Delete,
                    "compact" => CleanupPolicy::Compact,
                    _ => return Err(error("must be \"delete\" or \"compact\"")),
                }
            }
            "retention.ms" => self.retention_ms = limit()?,
            "retention.bytes" => self.retention_bytes = limit()?.map(|n| n as u64),
            "segment.bytes" => self.segment_bytes = positive()? as u64,
            "segment.ms" => self.segment_ms = Some(positive()?),
            "max.message.bytes" => {
                self.max_message_bytes =
                    u32::try_from(positive()?).map_err(|_| error("must be less than 4 GiB"))?
            }
            "flush.messages" => self.flush_messages = limit()?.map(|n| n as u64),
            "flush.ms" => self.flush_ms = limit()?,
            "message.timestamp.type" => {
                self.timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(error("must be \"CreateTime\" or \"LogAppendTime\"")),
                }
            }
            _ => {
                return Err(error(&format!(
                    "unknown setting; known: {}",
                    KEYS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Every setting by its Kafka name, with its value as text (`-1` for no
    /// limit), as `kafka-configs --describe` shows them.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let limit = |v: Option<i64>| v.unwrap_or(-1).to_string();
        let policy = match self.cleanup_policy {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        };
        let timestamp_type = match self.timestamp_type {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        vec![
            (KEYS[0], policy.to_string()),
            (KEYS[1], limit(self.retention_ms)),
            (KEYS[2], limit(self.retention_bytes.map(|n| n as i64))),
            (KEYS[3], self.segment_bytes.to_string()),
            (KEYS[4], limit(self.segment_ms)),
            (KEYS[5], self.max_message_bytes.to_string()),
            (KEYS[6], limit(self.flush_messages.map(|n| n as i64))),
            (KEYS[7], limit(self.flush_ms)),
            (KEYS[8], timestamp_type.to_string()),
        ]
    }

    /// Refuses settings that are named but not implemented.
    pub fn check_supported(&self) -> Result<(), ConfigError> {
        if self.cleanup_policy == CleanupPolicy::Compact {
            return Err(ConfigError {
                key: "cleanup.policy".into(),
                value: "compact".into(),
                reason: "log compaction is not implemented; use \"delete\"".into(),
            });
        }
        Ok(())
    }

    /// The configuration of each of the topic's partition logs.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            max_batch_bytes: self.max_message_bytes,
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            flush: FlushPolicy {
                messages: self.flush_messages,
                interval_ms: self.flush_ms,
            },
            timestamp_type: self.timestamp_type,
            ..LogConfig::default()
        }
    }
}

/// How a configuration is stored: every setting by name, as text.
impl From<TopicConfig> for BTreeMap<String, String> {
    fn from(config: TopicConfig) -> Self {
        config
            .entries()
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect()
    }
}

/// Reads a stored configuration: the defaults, with each stored setting
/// applied. A setting this version does not know is an error (the file was
/// written by a newer version), never silently dropped.
impl TryFrom<BTreeMap<String, String>> for TopicConfig {
    type Error = ConfigError;

    fn try_from(entries: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut config = TopicConfig::default();
        for (key, value) in &entries {
            config.set(key, value)?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let config = TopicConfig::default();
        let entries: Vec<(&str, String)> = config.entries();
        let expected = [
            ("cleanup.policy", "delete"),
            ("retention.ms", "604800000"),
            ("retention.bytes", "-1"),
            ("segment.bytes", "1073741824"),
            ("segment.ms", "604800000"),
            ("max.message.bytes", "1048588"),
            ("flush.messages", "-1"),
            ("flush.ms", "-1"),
            ("message.timestamp.type", "CreateTime"),
        ];
        let expected: Vec<(&str, String)> =
            expected.iter().map(|(k, v)| (*k, v.to_string())).collect();
        assert_eq!(entries, expected);
    }

    #[test]
    fn set_round_trips_through_entries() {
        let mut config = TopicConfig::default();
        for (key, value) in [
            ("retention.ms", "60000"),
            ("retention.bytes", "1048576"),
            ("segment.bytes", "4096"),
            ("segment.ms", "1000"),
            ("max.message.bytes", "2048"),
            ("flush.messages", "1"),
            ("flush.ms", "-1"),
            ("retention.ms", "-1"),
            ("message.timestamp.type", "LogAppendTime"),
        ] {
            config.set(key, value).unwrap();
            let shown = config
                .entries()
                .into_iter()
                .find(|(k, _)| *k == key)
                .unwrap();
            assert_eq!(shown.1, value, "{key}");
        }
        let log = config.log_config();
        assert_eq!(log.segment_bytes, 4096);
        assert_eq!(log.retention_ms, None);
        assert_eq!(log.flush.messages, Some(1));
        assert_eq!(log.timestamp_type, TimestampType::LogAppendTime);
    }

    #[test]
    fn stored_as_named_settings_so_a_missing_one_takes_its_default() {
        let mut config = TopicConfig::default();
        config.set("retention.ms", "60000").unwrap();
        let mut stored = BTreeMap::from(config.clone());
        assert_eq!(TopicConfig::try_from(stored.clone()).unwrap(), config);
        // A file from before `message.timestamp.type` existed.
        stored.remove("message.timestamp.type");
        assert_eq!(TopicConfig::try_from(stored.clone()).unwrap(), config);
        // A file from a newer version, with a setting this one lacks.
        stored.insert("retention.minutes".into(), "5".into());
        assert!(TopicConfig::try_from(stored).is_err());
    }

    #[test]
    fn bad_values_name_the_setting() {
        let mut config = TopicConfig::default();
        let error = config.set("retention.ms", "soon").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid value \"soon\" for retention.ms: not a whole number"
        );
        assert!(config.set("retention.bytes", "-2").is_err());
        assert!(config.set("segment.bytes", "0").is_err());
        assert!(config.set("max.message.bytes", "99999999999").is_err());
        assert!(config.set("cleanup.policy", "shred").is_err());
        let unknown = config.set("retention.minutes", "5").unwrap_err();
        assert!(unknown.reason.starts_with("unknown setting"), "{unknown}");
        assert_eq!(config, TopicConfig::default(), "nothing changed");
    }

    #[test]
    fn compaction_is_named_but_refused() {
        let mut config = TopicConfig::default();
        config.set("cleanup.policy", "compact").unwrap();
        assert_eq!(config.cleanup_policy, CleanupPolicy::Compact);
        assert!(config.check_supported().is_err());
    }
}
