//! The topic metadata file, `topics.meta`: which topics exist, how many
//! partitions each has, and their configuration.
//!
//! It is the single source of truth for the store. It is replaced
//! atomically (write a temporary file, sync it, rename it over the old one,
//! sync the directory), so after a crash it is either the old version or
//! the new one, never half of each. Its bytes are one chapter 1 frame
//! (length and CRC) around the bincode encoding of [`Metadata`], so damage
//! is detected rather than misread.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use ch01_commit_log::frame::{self, Decoded};
use serde::{Deserialize, Serialize};

use crate::config::TopicConfig;
use crate::error::{Result, StoreError};

/// The metadata file's name in the data directory.
pub const FILE: &str = "topics.meta";
/// The temporary file a new version is written to before the rename.
pub const TMP_FILE: &str = "topics.meta.tmp";

/// What the store knows about its topics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Every topic, by name.
    pub topics: BTreeMap<String, TopicMeta>,
}

/// One topic's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Its partition count: partitions `0..partitions` exist.
    pub partitions: u32,
    /// Its settings.
    pub config: TopicConfig,
}

// ANCHOR: write
/// Replaces the metadata file in `dir` with `metadata`, atomically and
/// durably: when this returns, the new version survives a power cut.
pub fn write(dir: &Path, metadata: &Metadata) -> Result<()> {
    let body =
        bincode::serde::encode_to_vec(metadata, bincode::config::standard()).map_err(|e| {
            StoreError::Metadata {
                path: dir.join(FILE),
                detail: e.to_string(),
            }
        })?;
    // exercise-hole: replace | Frame `body` with chapter 1's `frame::encode`. Never overwrite `topics.meta` in place: write the bytes to TMP_FILE with `write_synced`, then `rename_synced` it over FILE.
    // exercise-hint: A rename within a directory is atomic: after a crash the name points at the old file or the new one, never half of each. Writing FILE in place could leave a torn file, and the store would lose every topic.
    // exercise-hint: `let mut bytes = Vec::new(); frame::encode(&body, &mut bytes); let tmp = dir.join(TMP_FILE); write_synced(&tmp, &bytes)?; rename_synced(&tmp, &dir.join(FILE), dir)`
    let mut bytes = Vec::with_capacity(body.len() + frame::HEADER_LEN);
    frame::encode(&body, &mut bytes);
    let tmp = dir.join(TMP_FILE);
    write_synced(&tmp, &bytes)?;
    rename_synced(&tmp, &dir.join(FILE), dir)
    // exercise-end
}

/// Creates (or truncates) `path` with `bytes`, synced: the bytes must be on
/// disk before a rename makes them the truth, or a power cut could leave
/// the new name pointing at an empty file.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|e| StoreError::io(path, e))?;
    file.write_all(bytes).map_err(|e| StoreError::io(path, e))?;
    file.sync_all().map_err(|e| StoreError::io(path, e))
}

/// Renames `from` over `to`, both in `dir`, and syncs `dir`: the rename is
/// a change to the directory, and durable only once the directory is.
fn rename_synced(from: &Path, to: &Path, dir: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| StoreError::io(to, e))?;
    sync_dir(dir)
}
// ANCHOR_END: write

/// Reads the metadata file in `dir`: `None` if there is none.
pub fn read(dir: &Path) -> Result<Option<Metadata>> {
    let path = dir.join(FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let damaged = |detail: String| StoreError::Metadata {
        path: path.clone(),
        detail,
    };
    let body = match frame::decode(&bytes) {
        Decoded::Frame { payload, frame_len } if frame_len == bytes.len() => payload,
        Decoded::Frame { .. } => return Err(damaged("bytes after the metadata".into())),
        Decoded::Incomplete => return Err(damaged("the file is cut short".into())),
        Decoded::Corrupt { .. } => return Err(damaged("the checksum does not match".into())),
    };
    // The checksum matched, so bytes that do not decode were written by
    // another version: this one's layout first, then the one before it.
    let decoded = decode::<Metadata>(body).or_else(|e| match decode::<v0::Metadata>(body) {
        Ok(old) => Ok(old.into()),
        Err(_) => Err(e),
    });
    decoded.map(Some).map_err(damaged)
}

/// Decodes the whole of `body` as a `T`.
fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, String> {
    let (value, used) =
        bincode::serde::decode_from_slice::<T, _>(body, bincode::config::standard())
            .map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err("bytes after the metadata".into());
    }
    Ok(value)
}

/// `topics.meta` as the first version wrote it, with each topic's settings
/// as a fixed list of eight fields. Reading it keeps an upgraded broker's
/// topics; the next change to the store writes the current layout, where
/// settings are stored by name (see [`TopicConfig`]) so that adding one no
/// longer changes the layout.
mod v0 {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use crate::config::{CleanupPolicy, TopicConfig};

    #[derive(Serialize, Deserialize)]
    pub struct Metadata {
        pub topics: BTreeMap<String, TopicMeta>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct TopicMeta {
        pub partitions: u32,
        pub config: Config,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Config {
        pub cleanup_policy: CleanupPolicy,
        pub retention_ms: Option<i64>,
        pub retention_bytes: Option<u64>,
        pub segment_bytes: u64,
        pub segment_ms: Option<i64>,
        pub max_message_bytes: u32,
        pub flush_messages: Option<u64>,
        pub flush_ms: Option<i64>,
    }

    impl From<Metadata> for super::Metadata {
        fn from(old: Metadata) -> Self {
            let topics = old.topics.into_iter().map(|(name, topic)| {
                let c = topic.config;
                let config = TopicConfig {
                    cleanup_policy: c.cleanup_policy,
                    retention_ms: c.retention_ms,
                    retention_bytes: c.retention_bytes,
                    segment_bytes: c.segment_bytes,
                    segment_ms: c.segment_ms,
                    max_message_bytes: c.max_message_bytes,
                    flush_messages: c.flush_messages,
                    flush_ms: c.flush_ms,
                    ..TopicConfig::default()
                };
                let partitions = topic.partitions;
                (name, super::TopicMeta { partitions, config })
            });
            super::Metadata {
                topics: topics.collect(),
            }
        }
    }
}

/// Makes the directory's entries (files created, renamed or removed in it)
/// durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TopicConfig;

    fn sample() -> Metadata {
        let mut metadata = Metadata::default();
        for (name, partitions) in [("orders", 6), ("clicks.v2", 1)] {
            metadata.topics.insert(
                name.into(),
                TopicMeta {
                    partitions,
                    config: TopicConfig::default(),
                },
            );
        }
        metadata
    }

    #[test]
    fn round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), &sample()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(sample()));
        assert!(!dir.path().join(TMP_FILE).exists());
    }

    #[test]
    fn reads_the_first_versions_layout() {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig {
            retention_ms: Some(60_000),
            ..TopicConfig::default()
        };
        let old = v0::Metadata {
            topics: BTreeMap::from([(
                "orders".to_string(),
                v0::TopicMeta {
                    partitions: 3,
                    config: v0::Config {
                        cleanup_policy: config.cleanup_policy,
                        retention_ms: config.retention_ms,
                        retention_bytes: config.retention_bytes,
                        segment_bytes: config.segment_bytes,
                        segment_ms: config.segment_ms,
                        max_message_bytes: config.max_message_bytes,
                        flush_messages: config.flush_messages,
                        flush_ms: config.flush_ms,
                    },
                },
            )]),
        };
        let body = bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap();
        let mut bytes = Vec::new();
        frame::encode(&body, &mut bytes);
        fs::write(dir.path().join(FILE), bytes).unwrap();
        let read = read(dir.path()).unwrap().unwrap();
        assert_eq!(read.topics["orders"].partitions, 3);
        assert_eq!(read.topics["orders"].config, config);
    }

    #[test]
    fn damage_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &sample()).unwrap();
        let path = dir.path().join(FILE);
        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            fs::write(&path, &bad).unwrap();
            assert!(read(dir.path()).is_err(), "flipped byte {i} went unnoticed");
        }
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap();
            assert!(read(dir.path()).is_err(), "cut at {len} went unnoticed");
        }
    }
}
