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
    let mut bytes = Vec::with_capacity(body.len() + frame::HEADER_LEN);
    frame::encode(&body, &mut bytes);

    let tmp = dir.join(TMP_FILE);
    let mut file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    file.write_all(&bytes)
        .map_err(|e| StoreError::io(&tmp, e))?;
    // The bytes must be on disk before the rename makes them the truth,
    // or a power cut could leave the new name pointing at an empty file.
    file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    let path = dir.join(FILE);
    fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    // And the rename itself is a change to the directory.
    sync_dir(dir)
}

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
    let (metadata, used) =
        bincode::serde::decode_from_slice::<Metadata, _>(body, bincode::config::standard())
            .map_err(|e| damaged(e.to_string()))?;
    if used != body.len() {
        return Err(damaged("bytes after the metadata".into()));
    }
    Ok(Some(metadata))
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
