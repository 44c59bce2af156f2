//! Record batches: the unit the log stores.
//!
//! A batch is a byte blob with a small fixed header the log can read without
//! decoding the records:
//!
//! ```text
//! | base_offset: u64 | record_count: u32 | max_timestamp: i64 | records ... |
//! ```
//!
//! and each record is
//!
//! ```text
//! | timestamp: i64 | key_len: i32 (-1: no key) | key | value_len: u32 | value |
//! | header_count: u16 | (name_len: u16 | name | value_len: u32 | value)* |
//! ```
//!
//! all integers big-endian. The log assigns the base offset when it appends
//! (it overwrites the first eight bytes), and otherwise stores the blob
//! exactly as it arrived; the final broker stores Kafka's own record batches
//! the same way. Everything here is pure: bytes in, values out.

use std::fmt;

/// The timestamp of a record that has none yet, as Kafka's
/// `RecordBatch.NO_TIMESTAMP`: see [`Record::new`].
pub const NO_TIMESTAMP: i64 = -1;

// ANCHOR: header
/// Bytes in a batch header: base offset, record count, max timestamp.
pub const HEADER_LEN: usize = 8 + 4 + 8;

/// The part of a batch the log needs: which offsets it holds, and its
/// latest timestamp (for the time index and for retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// The offset of the batch's first record.
    pub base_offset: u64,
    /// How many records the batch holds (at least one).
    pub record_count: u32,
    /// The largest timestamp of any record in the batch.
    pub max_timestamp: i64,
}
// ANCHOR_END: header

impl BatchHeader {
    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count) - 1
    }

    /// The offset just after the batch.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    /// Reads the header at the start of an encoded batch.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        let mut reader = Reader::new(bytes);
        Ok(BatchHeader {
            base_offset: reader.u64()?,
            record_count: reader.u32()?,
            max_timestamp: reader.i64()?,
        })
    }
}

/// A record header: a named piece of metadata, as Kafka's record headers (KIP-82).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// The header's value.
    pub value: Vec<u8>,
}

/// One record: what a producer sends and a consumer receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the record was created, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key, which later chapters use to choose a partition.
    pub key: Option<Vec<u8>>,
    /// The value: the record's data, opaque to the log.
    pub value: Vec<u8>,
    /// Metadata headers.
    pub headers: Vec<Header>,
}

impl Record {
    /// A record with a value, and no key, headers or timestamp.
    ///
    /// Without a timestamp ([`NO_TIMESTAMP`]) it is stamped later, as
    /// Kafka's producer stamps a record the caller gave no time: chapter 4's
    /// producer stamps the time of `send` (Kafka's `CreateTime`), and a log
    /// that receives a batch with no timestamp at all stamps the time of
    /// the append. Either way retention and `segment.ms` go by a real time.
    pub fn new(value: impl Into<Vec<u8>>) -> Record {
        Record {
            timestamp: NO_TIMESTAMP,
            key: None,
            value: value.into(),
            headers: Vec::new(),
        }
    }

    /// This record, stamped `timestamp` (milliseconds since the Unix epoch)
    /// instead of the time it is sent. Retention and `segment.ms` go by
    /// it: a record stamped long ago is past `retention.ms` from the start,
    /// so the first retention check deletes its segment once it is sealed.
    pub fn with_timestamp(mut self, timestamp: i64) -> Record {
        self.timestamp = timestamp;
        self
    }

    /// This record, with `key` as its key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Record {
        self.key = Some(key.into());
        self
    }

    /// This record, with one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Record {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }
}

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The bytes end in the middle of a field.
    #[error("the batch ends early: {needed} more bytes expected")]
    Truncated {
        /// How many more bytes the field needed.
        needed: usize,
    },
    /// A batch must hold at least one record.
    #[error("the batch holds no records")]
    Empty,
    /// The records do not add up to what the header says.
    #[error("{0}")]
    Inconsistent(String),
}

// ANCHOR: encode
/// Encodes `records` as one batch, with base offset 0 (the log assigns the
/// real one). Returns an error for an empty slice: a batch holds at least
/// one record, so that every batch has a first and a last offset.
pub fn encode(records: &[Record]) -> Result<Vec<u8>, BatchError> {
    let count = u32::try_from(records.len())
        .map_err(|_| BatchError::Inconsistent("more than 2^32 records".into()))?;
    if count == 0 {
        return Err(BatchError::Empty);
    }
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(i64::MIN);
    let size = HEADER_LEN + records.iter().map(encoded_len).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    for record in records {
        out.extend_from_slice(&record.timestamp.to_be_bytes());
        match &record.key {
            Some(key) => {
                out.extend_from_slice(&(key.len() as i32).to_be_bytes());
                out.extend_from_slice(key);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        out.extend_from_slice(&(record.value.len() as u32).to_be_bytes());
        out.extend_from_slice(&record.value);
        out.extend_from_slice(&(record.headers.len() as u16).to_be_bytes());
        for header in &record.headers {
            out.extend_from_slice(&(header.name.len() as u16).to_be_bytes());
            out.extend_from_slice(header.name.as_bytes());
            out.extend_from_slice(&(header.value.len() as u32).to_be_bytes());
            out.extend_from_slice(&header.value);
        }
    }
    Ok(out)
}
// ANCHOR_END: encode

/// The encoded size of one record in a batch (chapter 3's accumulator
/// fills batches up to a size with it).
pub fn encoded_len(record: &Record) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|h| 2 + h.name.len() + 4 + h.value.len())
        .sum();
    8 + 4 + record.key.as_ref().map_or(0, Vec::len) + 4 + record.value.len() + 2 + headers
}

/// Writes `base_offset` into an encoded batch: how the log assigns offsets.
pub fn set_base_offset(batch: &mut [u8], base_offset: u64) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Stamps the records of an encoded (and valid) batch with `timestamp`: all
/// of them when `all` is true (a topic with `message.timestamp.type` set to
/// `LogAppendTime`), otherwise only those that have [`NO_TIMESTAMP`]. The
/// header's max timestamp is set to match. Returns the new header.
///
/// Each record's timestamp is its first eight bytes, so this rewrites them
/// where they lie. (Kafka's record batch v2 has a batch-level timestamp and
/// a timestamp-type bit, so `LogAppendTime` there changes one field in the
/// header; this format has no such bit, so every record is rewritten.)
pub fn stamp(batch: &mut [u8], timestamp: i64, all: bool) -> Result<BatchHeader, BatchError> {
    let mut starts = Vec::new();
    let mut max_timestamp = i64::MIN;
    let mut header = walk(batch, |r| {
        if all || r.timestamp == NO_TIMESTAMP {
            starts.push(r.start);
            max_timestamp = max_timestamp.max(timestamp);
        } else {
            max_timestamp = max_timestamp.max(r.timestamp);
        }
    })?;
    for start in starts {
        batch[start..start + 8].copy_from_slice(&timestamp.to_be_bytes());
    }
    header.max_timestamp = max_timestamp;
    batch[12..HEADER_LEN].copy_from_slice(&max_timestamp.to_be_bytes());
    Ok(header)
}

/// A record inside an encoded batch, borrowing its bytes.
struct RecordRef<'a> {
    /// Where the record (its timestamp) starts in the batch.
    start: usize,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: &'a [u8],
    /// Empty for a record without headers, which then costs no allocation.
    headers: Vec<(&'a str, &'a [u8])>,
}

// ANCHOR: walk
/// Walks the records of an encoded batch in order, handing each to `visit`
/// without copying it, and checks that they agree with the header. Bad
/// bytes give an error, never a panic or a huge allocation: every length is
/// checked against the bytes that are really there before it is used.
fn walk<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut(RecordRef<'a>),
) -> Result<BatchHeader, BatchError> {
    // exercise-hole: walk | Parse the header (an empty batch is an error), then read `record_count` records with a `Reader` over the bytes after the header, each field as the module's layout says; hand each to `visit`. At the end no bytes may be left over and the records' largest timestamp must be the header's.
    // exercise-hint: `Reader` checks every length for you: `reader.bytes(len)?` is an error, never a panic, when fewer than `len` bytes are left. A key length of -1 means no key and any other negative length is `Inconsistent`; a header name must be UTF-8. A record's `start` is its position in the whole batch: `bytes.len() - reader.remaining()` before its timestamp is read.
    // exercise-hint: Per record: `reader.i64()?` (timestamp), `match reader.i32()? { -1 => None, len if len < 0 => return Err(..), len => Some(reader.bytes(len as usize)?) }` (key), `reader.u32()?` then `reader.bytes(..)?` (value), `reader.u16()?` headers each `u16` name length, name, `u32` value length, value. After the loop: `reader.remaining() != 0` and `max_timestamp != header.max_timestamp` are `BatchError::Inconsistent`.
    let header = BatchHeader::parse(bytes)?;
    if header.record_count == 0 {
        return Err(BatchError::Empty);
    }
    let mut reader = Reader::new(&bytes[HEADER_LEN..]);
    let mut max_timestamp = i64::MIN;
    // Each record's lengths say where the next one starts, so the walk is a
    // chain of loads the CPU cannot run ahead of: on a batch larger than
    // the L1 cache, every step waits for the L2. Reading a byte a few cache
    // lines ahead, whose value is not needed, starts fetching that line
    // early; it made validating 1,000 records of 100 bytes about a third
    // faster (`ch02/append` on the performance page).
    let mut ahead = 0u8;
    for _ in 0..header.record_count {
        let start = bytes.len() - reader.remaining();
        ahead ^= bytes.get(start + 256).copied().unwrap_or(0);
        let timestamp = reader.i64()?;
        let key = match reader.i32()? {
            -1 => None,
            len if len < 0 => {
                return Err(BatchError::Inconsistent(format!("key length {len}")));
            }
            len => Some(reader.bytes(len as usize)?),
        };
        let value_len = reader.u32()? as usize;
        let value = reader.bytes(value_len)?;
        let header_count = reader.u16()?;
        let mut headers = Vec::new();
        for _ in 0..header_count {
            let name_len = usize::from(reader.u16()?);
            let name = std::str::from_utf8(reader.bytes(name_len)?)
                .map_err(|_| BatchError::Inconsistent("a header name is not UTF-8".into()))?;
            let value_len = reader.u32()? as usize;
            headers.push((name, reader.bytes(value_len)?));
        }
        max_timestamp = max_timestamp.max(timestamp);
        visit(RecordRef {
            start,
            timestamp,
            key,
            value,
            headers,
        });
    }
    // Keeps the reads ahead: a value nobody uses would be optimized away.
    std::hint::black_box(ahead);
    if reader.remaining() != 0 {
        return Err(BatchError::Inconsistent(format!(
            "{} bytes after the last record",
            reader.remaining()
        )));
    }
    if max_timestamp != header.max_timestamp {
        return Err(BatchError::Inconsistent(format!(
            "the header's max timestamp is {} but the records' is {max_timestamp}",
            header.max_timestamp
        )));
    }
    Ok(header)
    // exercise-end
}
// ANCHOR_END: walk

/// Checks that `bytes` are a valid batch, without copying a record: what a
/// broker does to every batch a producer sends before it stores it.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    walk(bytes, |_| {})
}

/// Decodes every record of an encoded batch, with its offset, checking
/// them as [`validate`] does.
pub fn decode(bytes: &[u8]) -> Result<(BatchHeader, Vec<(u64, Record)>), BatchError> {
    let mut records = Vec::new();
    let header = walk(bytes, |r| {
        records.push(Record {
            timestamp: r.timestamp,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.to_vec(),
            headers: r
                .headers
                .into_iter()
                .map(|(name, value)| Header {
                    name: name.to_string(),
                    value: value.to_vec(),
                })
                .collect(),
        })
    })?;
    let offsets = header.base_offset..;
    Ok((header, offsets.zip(records).collect()))
}

/// A stored batch, as [`crate::Log::read`] returns it: the header, and the
/// bytes exactly as they are on disk (ready to send to a consumer as they are).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// The batch's header.
    pub header: BatchHeader,
    /// The whole encoded batch, header included.
    pub bytes: Vec<u8>,
}

impl StoredBatch {
    /// Decodes the batch's records, each with its offset.
    pub fn records(&self) -> Result<Vec<(u64, Record)>, BatchError> {
        decode(&self.bytes).map(|(_, records)| records)
    }
}

impl fmt::Debug for StoredBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredBatch")
            .field("header", &self.header)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Reads big-endian integers and byte strings from a slice, checking every
/// length against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], BatchError> {
        if len > self.bytes.len() {
            return Err(BatchError::Truncated {
                needed: len - self.bytes.len(),
            });
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BatchError> {
        let bytes = self.bytes(N)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn u16(&mut self) -> Result<u16, BatchError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, BatchError> {
        self.array().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, BatchError> {
        self.array().map(i32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, BatchError> {
        self.array().map(u64::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, BatchError> {
        self.array().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts: i64, key: Option<&str>, value: &str) -> Record {
        Record {
            timestamp: ts,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.as_bytes().to_vec(),
            headers: vec![Header {
                name: "trace".into(),
                value: b"abc".to_vec(),
            }],
        }
    }

    #[test]
    fn a_batch_round_trips_with_offsets_from_its_base() {
        let records = vec![record(5, Some("k"), "one"), record(3, None, "two")];
        let mut bytes = encode(&records).unwrap();
        set_base_offset(&mut bytes, 40);
        let (header, decoded) = decode(&bytes).unwrap();
        assert_eq!(
            header,
            BatchHeader {
                base_offset: 40,
                record_count: 2,
                max_timestamp: 5
            }
        );
        assert_eq!(header.last_offset(), 41);
        assert_eq!(
            decoded,
            vec![(40, records[0].clone()), (41, records[1].clone())]
        );
    }

    #[test]
    fn an_empty_batch_is_refused() {
        assert_eq!(encode(&[]), Err(BatchError::Empty));
        let mut bytes = encode(&[record(1, None, "x")]).unwrap();
        bytes[8..12].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(decode(&bytes).unwrap_err(), BatchError::Empty);
    }

    #[test]
    fn every_cut_of_a_batch_is_an_error_not_a_panic() {
        let bytes = encode(&[record(1, Some("key"), "value"), record(2, None, "")]).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_header_that_lies_about_the_count_is_caught() {
        let mut bytes = encode(&[record(1, None, "a"), record(2, None, "b")]).unwrap();
        bytes[8..12].copy_from_slice(&1u32.to_be_bytes());
        assert!(matches!(decode(&bytes), Err(BatchError::Inconsistent(_))));
        bytes[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&bytes), Err(BatchError::Truncated { .. })));
    }

    #[test]
    fn validate_accepts_exactly_what_decode_accepts() {
        let good = encode(&[record(1, Some("key"), "value"), record(2, None, "")]).unwrap();
        assert_eq!(validate(&good), decode(&good).map(|(h, _)| h));
        for cut in 0..good.len() {
            assert_eq!(validate(&good[..cut]).is_ok(), decode(&good[..cut]).is_ok());
        }
    }

    #[test]
    fn a_header_that_lies_about_the_max_timestamp_is_caught() {
        let mut bytes = encode(&[record(7, None, "a")]).unwrap();
        bytes[12..20].copy_from_slice(&8i64.to_be_bytes());
        assert!(matches!(decode(&bytes), Err(BatchError::Inconsistent(_))));
    }
}
