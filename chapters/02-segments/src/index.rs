//! The two sparse indexes of a segment, as pure data structures: entries in
//! memory, binary search, and the fixed-width encoding of their files.
//!
//! Both are *sparse*: the segment adds an entry only after every
//! `index_interval_bytes` of log (4 KiB by default, Kafka's
//! `index.interval.bytes`), so a 1 GiB segment needs about 262,144 entries,
//! 2 MiB of offset index, instead of one entry per record. A lookup finds
//! the nearest entry at or before the target and the log scans forward from
//! there, at most one interval.

/// Bytes in one offset index entry: relative offset (u32), position (u32).
pub const OFFSET_ENTRY_LEN: usize = 8;
/// Bytes in one time index entry: timestamp (i64), relative offset (u32).
pub const TIME_ENTRY_LEN: usize = 12;

/// Why an index file cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IndexError(String);

/// Maps offsets to byte positions in a segment's `.log` file.
///
/// Offsets are stored relative to the segment's base offset, in 4 bytes, as
/// Kafka does: a segment never holds more than 2^32 offsets or bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    /// `(offset - base_offset, position)`, both strictly increasing.
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Adds an entry. Callers add entries in increasing offset order.
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|&(o, p)| o < relative_offset && p < position)
        );
        self.entries.push((relative_offset, position));
    }

    // ANCHOR: lookup
    /// The position to start reading from to find `relative_offset`: that
    /// of the last entry at or before it, or 0 (the segment's start).
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        // exercise-hole: lookup | Binary search `self.entries` for the last entry whose offset is <= relative_offset (`partition_point` does it in one line) and return its position; with no such entry, return 0.
        // exercise-hint: The entries are sorted by offset. `partition_point(|&(o, _)| o <= relative_offset)` returns how many entries are at or before the offset: the one you want is just before that index.
        // exercise-hint: `match self.entries.partition_point(|&(o, _)| o <= relative_offset) { 0 => 0, n => self.entries[n - 1].1 }`
        let after = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        match after {
            0 => 0,
            n => self.entries[n - 1].1,
        }
        // exercise-end
    }
    // ANCHOR_END: lookup

    /// The last entry, if any.
    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    /// Drops the entries for offsets at or after `relative_offset`.
    pub fn truncate(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|&(o, _)| o < relative_offset);
        self.entries.truncate(keep);
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The contents of the `.index` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_LEN);
        for &(offset, position) in &self.entries {
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&position.to_be_bytes());
        }
        out
    }

    // ANCHOR: from_bytes
    /// Reads an `.index` file, checking that it can be trusted: whole
    /// entries, strictly increasing, positions inside the segment's
    /// `log_len` bytes. A file that fails is rebuilt by the caller.
    pub fn from_bytes(bytes: &[u8], log_len: u64) -> Result<OffsetIndex, IndexError> {
        // exercise-hole: from_bytes | Refuse a length that is not a whole number of 8-byte entries; decode each entry as two big-endian u32s (relative offset, position) and refuse a position at or past `log_len`, or an entry that does not increase both on the one before it.
        // exercise-hint: This is the sanity check that lets `open` trust an index file without reading the log: anything a torn or stale file could hold must give an `IndexError` (the caller then rebuilds the index by scanning). `bytes.chunks_exact(OFFSET_ENTRY_LEN)` walks the entries.
        // exercise-hint: `if !bytes.len().is_multiple_of(OFFSET_ENTRY_LEN) { return Err(IndexError(..)); }`, then per entry `u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]])` and `[entry[4]..entry[7]]`; reject `u64::from(position) >= log_len` and `index.last().is_some_and(|(o, p)| o >= offset || p >= position)`, and push onto `index.entries`.
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_LEN) {
            return Err(IndexError(format!(
                "{} bytes is not a whole number of entries",
                bytes.len()
            )));
        }
        let mut index = OffsetIndex::default();
        for entry in bytes.chunks_exact(OFFSET_ENTRY_LEN) {
            let offset = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let position = u32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]]);
            if u64::from(position) >= log_len {
                return Err(IndexError(format!(
                    "position {position} is past the end of the log ({log_len} bytes)"
                )));
            }
            if index
                .last()
                .is_some_and(|(o, p)| o >= offset || p >= position)
            {
                return Err(IndexError("entries are not increasing".into()));
            }
            index.entries.push((offset, position));
        }
        Ok(index)
        // exercise-end
    }
    // ANCHOR_END: from_bytes
}

/// Maps timestamps to offsets: each entry says "by this offset the segment
/// had seen this timestamp", with timestamps strictly increasing even when
/// record timestamps go backwards (producers' clocks disagree).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    /// `(max timestamp so far, offset - base_offset of the batch that had it)`.
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Adds an entry if `timestamp` is later than the last one; otherwise
    /// does nothing, which keeps the index monotonic.
    pub fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) {
        if self.entries.last().is_none_or(|&(t, _)| timestamp > t) {
            self.entries.push((timestamp, relative_offset));
        }
    }

    // ANCHOR: time_lookup
    /// Where to start scanning for the first record with a timestamp at or
    /// after `timestamp`: the relative offset of the last entry whose
    /// timestamp is *before* it (every record up to that entry's batch is
    /// earlier than `timestamp`), or 0.
    pub fn lookup(&self, timestamp: i64) -> u32 {
        let before = self.entries.partition_point(|&(t, _)| t < timestamp);
        match before {
            0 => 0,
            n => self.entries[n - 1].1,
        }
    }
    // ANCHOR_END: time_lookup

    /// The last entry: the segment's largest timestamp and where it is.
    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Drops the entries for offsets at or after `relative_offset`.
    pub fn truncate(&mut self, relative_offset: u32) {
        self.entries.retain(|&(_, o)| o < relative_offset);
    }

    /// The contents of the `.timeindex` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for &(timestamp, offset) in &self.entries {
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        out
    }

    /// Reads a `.timeindex` file, checking whole entries, increasing
    /// timestamps and non-decreasing offsets below `offset_count` (the
    /// number of offsets in the segment).
    pub fn from_bytes(bytes: &[u8], offset_count: u64) -> Result<TimeIndex, IndexError> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_LEN) {
            return Err(IndexError(format!(
                "{} bytes is not a whole number of entries",
                bytes.len()
            )));
        }
        let mut index = TimeIndex::default();
        for entry in bytes.chunks_exact(TIME_ENTRY_LEN) {
            let timestamp = i64::from_be_bytes(entry[..8].try_into().expect("8 bytes"));
            let offset = u32::from_be_bytes(entry[8..].try_into().expect("4 bytes"));
            if u64::from(offset) >= offset_count {
                return Err(IndexError(format!(
                    "offset {offset} is past the segment's {offset_count} offsets"
                )));
            }
            if index
                .last()
                .is_some_and(|(t, o)| t >= timestamp || o > offset)
            {
                return Err(IndexError("entries are not increasing".into()));
            }
            index.entries.push((timestamp, offset));
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(u32, u32)]) -> OffsetIndex {
        let mut index = OffsetIndex::default();
        for &(o, p) in entries {
            index.push(o, p);
        }
        index
    }

    #[test]
    fn lookup_finds_the_last_entry_at_or_before_the_offset() {
        let index = index(&[(10, 4100), (20, 8300), (35, 12500)]);
        assert_eq!(index.lookup(0), 0);
        assert_eq!(index.lookup(9), 0);
        assert_eq!(index.lookup(10), 4100);
        assert_eq!(index.lookup(19), 4100);
        assert_eq!(index.lookup(20), 8300);
        assert_eq!(index.lookup(1000), 12500);
        assert_eq!(OffsetIndex::default().lookup(5), 0);
    }

    #[test]
    fn an_offset_index_round_trips_through_its_file_format() {
        let index = index(&[(1, 100), (7, 5000)]);
        let bytes = index.to_bytes();
        assert_eq!(bytes.len(), 2 * OFFSET_ENTRY_LEN);
        assert_eq!(OffsetIndex::from_bytes(&bytes, 6000).unwrap(), index);
    }

    #[test]
    fn a_damaged_offset_index_is_not_trusted() {
        let bytes = index(&[(1, 100), (7, 5000)]).to_bytes();
        assert!(
            OffsetIndex::from_bytes(&bytes[..11], 6000).is_err(),
            "partial entry"
        );
        assert!(
            OffsetIndex::from_bytes(&bytes, 4000).is_err(),
            "past the log's end"
        );
        let mut swapped = bytes[8..].to_vec();
        swapped.extend_from_slice(&bytes[..8]);
        assert!(
            OffsetIndex::from_bytes(&swapped, 6000).is_err(),
            "not increasing"
        );
    }

    #[test]
    fn truncation_drops_entries_at_and_after_the_offset() {
        let mut idx = index(&[(10, 1), (20, 2), (30, 3)]);
        idx.truncate(20);
        assert_eq!(idx, index(&[(10, 1)]));
    }

    #[test]
    fn the_time_index_stays_monotonic_when_timestamps_go_backwards() {
        let mut idx = TimeIndex::default();
        idx.maybe_push(100, 0);
        idx.maybe_push(90, 5);
        idx.maybe_push(100, 6);
        idx.maybe_push(150, 9);
        assert_eq!(idx.to_bytes().len(), 2 * TIME_ENTRY_LEN);
        assert_eq!(idx.last(), Some((150, 9)));
    }

    #[test]
    fn time_lookup_starts_after_everything_known_to_be_earlier() {
        let mut idx = TimeIndex::default();
        idx.maybe_push(100, 0);
        idx.maybe_push(200, 10);
        idx.maybe_push(300, 20);
        assert_eq!(idx.lookup(50), 0);
        assert_eq!(idx.lookup(100), 0);
        assert_eq!(idx.lookup(101), 0);
        assert_eq!(idx.lookup(201), 10);
        assert_eq!(idx.lookup(1000), 20);
    }

    #[test]
    fn a_time_index_round_trips_and_rejects_damage() {
        let mut idx = TimeIndex::default();
        idx.maybe_push(100, 0);
        idx.maybe_push(200, 10);
        let bytes = idx.to_bytes();
        assert_eq!(TimeIndex::from_bytes(&bytes, 11).unwrap(), idx);
        assert!(
            TimeIndex::from_bytes(&bytes, 10).is_err(),
            "offset past the segment"
        );
        assert!(
            TimeIndex::from_bytes(&bytes[..13], 11).is_err(),
            "partial entry"
        );
    }
}
