//! Sans-IO. The leader-epoch cache (KIP-101): which leader epoch wrote
//! which part of the log.
//!
//! Every time a partition gets a new leader, the controller bumps its
//! *leader epoch*. The first record a leader appends in its epoch starts
//! that epoch's stretch of the log, and every replica remembers where each
//! stretch starts: `epoch → start offset`. Two replicas whose caches agree
//! on an epoch hold the same records for it, because one leader wrote them
//! all. So a follower that has just met a new leader does not guess where
//! its log may have diverged (as the high watermark made it do before
//! KIP-101): it asks the leader where its own latest epoch *ends* there,
//! and cuts exactly the records past that point.
//!
//! Kafka keeps this cache in each partition directory's
//! `leader-epoch-checkpoint` file; [`crate::storage`] stores it.

use serde::{Deserialize, Serialize};

/// Where one leader epoch's records start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: u32,
    /// The offset of the first record its leader appended.
    pub start_offset: u64,
}

/// The answer to "where does epoch `e` end in your log?" (Kafka's
/// OffsetsForLeaderEpoch): the largest epoch at or below `e` this log
/// knows, and the offset just past its last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEnd {
    /// The epoch answered for (at most the one asked about).
    pub epoch: u32,
    /// The offset just after that epoch's last record: the next epoch's
    /// start, or the log end offset for the latest epoch.
    pub end_offset: u64,
}

/// The cache: entries in increasing epoch *and* offset order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// A cache holding `entries`, as read back from a checkpoint. Entries
    /// out of order (which a correct writer never produces) are dropped
    /// from the first bad one on, so the cache is always well formed.
    pub fn from_entries(entries: Vec<EpochEntry>) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for entry in entries {
            if !cache.assign(entry.epoch, entry.start_offset) {
                break;
            }
        }
        cache
    }

    /// The entries, oldest first (what a checkpoint stores).
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest entry, if any.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`: a leader calls it
    /// before its first append in a new epoch, a follower when it appends a
    /// batch of an epoch newer than its latest. Returns whether the cache
    /// changed (and must be written again). An epoch older than the latest,
    /// or one starting below the latest's start, is ignored: the log only
    /// grows forward in both.
    pub fn assign(&mut self, epoch: u32, start_offset: u64) -> bool {
        match self.latest() {
            Some(latest) if epoch <= latest.epoch || start_offset < latest.start_offset => false,
            Some(latest) if start_offset == latest.start_offset => {
                // The previous epoch wrote nothing: it owns no offsets, and
                // a lookup must never answer with it.
                *self.entries.last_mut().expect("latest exists") = EpochEntry {
                    epoch,
                    start_offset,
                };
                true
            }
            _ => {
                self.entries.push(EpochEntry {
                    epoch,
                    start_offset,
                });
                true
            }
        }
    }

    /// Where `epoch` ends in a log whose end offset is `log_end`: the
    /// leader's half of OffsetsForLeaderEpoch (KIP-279's rule). If the
    /// cache knows `epoch` itself, it ends where the next epoch starts (or
    /// at the log end, if it is the latest). If not, the answer is for the
    /// largest epoch below it, so the follower learns where the two logs
    /// last agreed. `None` if every epoch here is newer than `epoch`: the
    /// follower must truncate everything it has.
    pub fn end_offset_for(&self, epoch: u32, log_end: u64) -> Option<EpochEnd> {
        todo!("exercise `end_offset_for`: Find the last entry whose epoch is at most `epoch` (none: return `None`). It ends where the entry after it starts, or at `log_end` if it is the last. Answer with *its* epoch, which may be older than the one asked about.")
    }

    /// The epoch that wrote `offset` (the newest entry starting at or
    /// before it), for tagging the batches a leader sends its followers.
    pub fn epoch_at(&self, offset: u64) -> Option<u32> {
        let next = self.entries.partition_point(|e| e.start_offset <= offset);
        next.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// Forgets every epoch that starts at or after `offset`, after the log
    /// was truncated to end there (or lost its tail in a crash). Returns
    /// whether the cache changed.
    pub fn truncate_from_end(&mut self, offset: u64) -> bool {
        let keep = self.entries.partition_point(|e| e.start_offset < offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(u32, u64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_entries(
            entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        )
    }

    #[test]
    fn an_epoch_ends_where_the_next_starts_and_the_latest_at_the_log_end() {
        let c = cache(&[(0, 0), (2, 10), (5, 25)]);
        let end = |epoch| c.end_offset_for(epoch, 40).map(|e| (e.epoch, e.end_offset));
        assert_eq!(end(0), Some((0, 10)));
        assert_eq!(end(2), Some((2, 25)));
        assert_eq!(end(5), Some((5, 40)));
        // Unknown epochs answer for the largest known one below them.
        assert_eq!(end(1), Some((0, 10)));
        assert_eq!(end(4), Some((2, 25)));
        assert_eq!(end(9), Some((5, 40)));
        assert_eq!(cache(&[(3, 7)]).end_offset_for(2, 9), None);
    }

    #[test]
    fn assign_only_moves_forward_and_replaces_an_empty_epoch() {
        let mut c = cache(&[(1, 0)]);
        assert!(!c.assign(1, 5), "the same epoch again");
        assert!(!c.assign(0, 5), "an older epoch");
        assert!(c.assign(2, 5));
        assert!(c.assign(3, 5), "epoch 2 wrote nothing");
        assert!(!c.assign(4, 4), "a start below the latest");
        assert_eq!(c, cache(&[(1, 0), (3, 5)]));
    }

    #[test]
    fn truncation_forgets_epochs_that_start_at_or_after_the_cut() {
        let mut c = cache(&[(0, 0), (2, 10), (5, 25)]);
        assert!(!c.truncate_from_end(26));
        assert!(c.truncate_from_end(25));
        assert_eq!(c, cache(&[(0, 0), (2, 10)]));
        assert_eq!(c.epoch_at(9), Some(0));
        assert_eq!(c.epoch_at(10), Some(2));
        assert!(c.truncate_from_end(0));
        assert_eq!(c.epoch_at(0), None);
    }

    #[test]
    fn entries_out_of_order_are_dropped_from_the_first_bad_one() {
        assert_eq!(
            cache(&[(0, 0), (3, 9), (2, 12), (4, 15)]),
            cache(&[(0, 0), (3, 9)])
        );
    }
}
