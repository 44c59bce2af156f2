//! The wire protocol: length-prefixed frames, a fixed request header, and
//! bodies encoded with serde and bincode. Sans-IO: bytes in, messages out.
//!
//! ```text
//! request:  | length u32 | api_key u16 | api_version u16 | correlation_id u32 | body |
//! response: | length u32 | correlation_id u32 | body |
//! ```
//!
//! `length` counts the bytes after itself. The header is fixed-width and
//! not bincode, so a broker can read the API key and correlation id of any
//! request, even one whose body it cannot decode, and answer it with an
//! error that the client can match to what it sent. The API keys are
//! Kafka's numbers.

use std::io::IoSlice;
use std::ops::Range;

use bincode::enc::write::{SizeWriter, Writer};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::ErrorCode;

/// The largest frame a broker reads by default: Kafka's
/// `socket.request.max.bytes` (100 MiB).
pub const DEFAULT_MAX_FRAME: u32 = 100 * 1024 * 1024;

/// The only version of each API this chapter speaks.
pub const API_VERSION: u16 = 0;

/// Bytes of a request header after the length: key, version, correlation id.
pub const REQUEST_HEADER_LEN: usize = 2 + 2 + 4;

/// The requests this broker understands, with Kafka's API key numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKey {
    /// Append batches to partitions.
    Produce = 0,
    /// Read batches from partitions.
    Fetch = 1,
    /// Find an offset: earliest, latest, or by timestamp.
    ListOffsets = 2,
    /// Which topics and partitions exist, and which broker leads them.
    Metadata = 3,
    /// A topic's settings.
    DescribeConfigs = 32,
    /// Create topics.
    CreateTopics = 19,
    /// Delete topics.
    DeleteTopics = 20,
}

impl ApiKey {
    /// The key for a number, if this broker knows it.
    pub fn from_u16(key: u16) -> Option<ApiKey> {
        Some(match key {
            0 => ApiKey::Produce,
            1 => ApiKey::Fetch,
            2 => ApiKey::ListOffsets,
            3 => ApiKey::Metadata,
            19 => ApiKey::CreateTopics,
            20 => ApiKey::DeleteTopics,
            32 => ApiKey::DescribeConfigs,
            _ => return None,
        })
    }
}

impl From<ApiKey> for u16 {
    fn from(key: ApiKey) -> u16 {
        key as u16
    }
}

/// A request's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// Which API (an [`ApiKey`] number, or an unknown one).
    pub api_key: u16,
    /// Which version of it.
    pub api_version: u16,
    /// Chosen by the client; the response carries it back.
    pub correlation_id: u32,
}

/// Why bytes from the network are not a frame. Each closes the connection
/// or gets an error response; none is a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the limit. Refused before a
    /// byte of the body is read or a buffer allocated for it.
    #[error("frame of {len} bytes is larger than the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A request frame shorter than its header.
    #[error("frame of {len} bytes is shorter than a request header")]
    TooShort {
        /// The announced length.
        len: u32,
    },
}

// ANCHOR: frame
/// Takes one whole frame off the front of `buf`, if it holds one: the bytes
/// after the length prefix. `Ok(None)` means "read more". The length is
/// checked against `max` as soon as its 4 bytes are there, so a peer cannot
/// make us buffer a huge frame.
pub fn take_frame(buf: &mut BytesMut, max: u32) -> Result<Option<BytesMut>, FrameError> {
    // exercise-hole: take_frame | Wait for the 4-byte big-endian length; refuse it if it is over `max` (FrameError::TooLarge); wait until the whole frame is in `buf` (`reserve` the rest to avoid regrowing); then split off the length prefix and the frame (`split_to`: no copy) and return the frame's bytes.
    // exercise-hint: Return `Ok(None)` while there are not enough bytes: first fewer than 4, then fewer than 4 plus the length. Refuse an oversized length as soon as the 4 bytes are in, before waiting for (or allocating) the body.
    // exercise-hint: `let Some(prefix) = buf.first_chunk::<4>() else { return Ok(None) };` then `u32::from_be_bytes(*prefix)` against `max`; while `buf.len() < 4 + len`, `buf.reserve` the rest and return `Ok(None)`; else `buf.advance(4)` and `Ok(Some(buf.split_to(len as usize)))`.
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len as usize)))
    // exercise-end
}
// ANCHOR_END: frame

/// Splits a request frame into its header and body.
pub fn parse_request(mut frame: BytesMut) -> Result<(RequestHeader, BytesMut), FrameError> {
    if frame.len() < REQUEST_HEADER_LEN {
        return Err(FrameError::TooShort {
            len: frame.len() as u32,
        });
    }
    let header = RequestHeader {
        api_key: frame.get_u16(),
        api_version: frame.get_u16(),
        correlation_id: frame.get_u32(),
    };
    Ok((header, frame))
}

/// Encodes a request frame: length, header, body.
pub fn encode_request<T: Serialize>(
    header: RequestHeader,
    body: &T,
    out: &mut BytesMut,
) -> Result<(), bincode::error::EncodeError> {
    let start = out.len();
    put_request_header(header, out);
    encode_body(body, out)?;
    patch_length(out, start, 0);
    Ok(())
}

fn put_request_header(header: RequestHeader, out: &mut BytesMut) {
    out.put_u32(0); // the length, filled in once the body is there
    out.put_u16(header.api_key);
    out.put_u16(header.api_version);
    out.put_u32(header.correlation_id);
}

// ANCHOR: pieces
/// A request frame in pieces, for one vectored write (`writev`): the
/// frame's own bytes, with its large byte strings (a produce request's
/// batches) left where they already are instead of copied in. The mirror
/// of [`ProduceInPlace`]: neither end copies a batch in user space. Kafka's
/// producer, too, hands its batch buffers to the socket as they are.
#[derive(Debug)]
pub struct FramePieces<'a> {
    /// Every byte of the frame except the spliced strings.
    own: BytesMut,
    /// Each spliced string, and the place in `own` it goes before.
    spliced: Vec<(usize, &'a [u8])>,
}

impl FramePieces<'_> {
    /// The frame's bytes, in order, for a vectored write.
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        let mut slices = Vec::with_capacity(2 * self.spliced.len() + 1);
        let mut at = 0;
        for &(to, bytes) in &self.spliced {
            slices.push(IoSlice::new(&self.own[at..to]));
            slices.push(IoSlice::new(bytes));
            at = to;
        }
        slices.push(IoSlice::new(&self.own[at..]));
        slices
    }

    /// How many strings were spliced rather than copied.
    pub fn spliced(&self) -> usize {
        self.spliced.len()
    }
}

// ANCHOR_END: pieces

// ANCHOR: pieces_encode
/// Encodes a request frame as [`encode_request`] does, except that each
/// byte string of `body` that *is* one of `large` (the same bytes in
/// memory, not merely equal ones) is spliced in, not copied.
pub fn encode_request_in_pieces<'a, T: Serialize>(
    header: RequestHeader,
    body: &T,
    large: &[&'a [u8]],
) -> Result<FramePieces<'a>, bincode::error::EncodeError> {
    let config = bincode::config::standard();
    let mut size = SizeWriter::default();
    bincode::serde::encode_into_writer(body, &mut size, config)?;
    let large_len: usize = large.iter().map(|l| l.len()).sum();
    let mut own = BytesMut::with_capacity(
        4 + REQUEST_HEADER_LEN + size.bytes_written.saturating_sub(large_len),
    );
    put_request_header(header, &mut own);
    let mut writer = SplicingWriter {
        own: &mut own,
        large,
        spliced: Vec::new(),
    };
    bincode::serde::encode_into_writer(body, &mut writer, config)?;
    let spliced = writer.spliced;
    patch_length(&mut own, 0, spliced.iter().map(|(_, s)| s.len()).sum());
    Ok(FramePieces { own, spliced })
}

/// A bincode writer that splices instead of copying. bincode writes a byte
/// string with one `write` of the string itself, so that call's slice is
/// the caller's own: its address tells it apart from an equal copy. Had
/// bincode cut it into several writes, nothing would match, and the bytes
/// would simply be copied: the trick can cost speed, never correctness.
struct SplicingWriter<'w, 'a> {
    own: &'w mut BytesMut,
    large: &'w [&'a [u8]],
    spliced: Vec<(usize, &'a [u8])>,
}

impl Writer for SplicingWriter<'_, '_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        let same =
            |l: &[u8]| !l.is_empty() && l.as_ptr() == bytes.as_ptr() && l.len() == bytes.len();
        match self.large.iter().find(|l| same(l)) {
            Some(large) => self.spliced.push((self.own.len(), *large)),
            None => self.own.extend_from_slice(bytes),
        }
        Ok(())
    }
}
// ANCHOR_END: pieces_encode

/// Encodes a response frame: length, correlation id, body.
pub fn encode_response<T: Serialize>(
    correlation_id: u32,
    body: &T,
    out: &mut BytesMut,
) -> Result<(), bincode::error::EncodeError> {
    let start = out.len();
    out.put_u32(0);
    out.put_u32(correlation_id);
    encode_body(body, out)?;
    patch_length(out, start, 0);
    Ok(())
}

/// A whole success response frame: `Ok(body)`.
pub fn ok_response<T: Serialize>(correlation_id: u32, body: &T) -> BytesMut {
    response_frame(correlation_id, &Ok::<&T, ErrorResponse>(body))
}

/// A whole error response frame, for a request that could not be served
/// at all: `Err(ErrorResponse)`.
pub fn error_response(correlation_id: u32, error: ErrorCode, message: String) -> BytesMut {
    response_frame(
        correlation_id,
        &Err::<(), _>(ErrorResponse { error, message }),
    )
}

fn response_frame<T: Serialize>(correlation_id: u32, body: &T) -> BytesMut {
    let mut out = BytesMut::new();
    // Encoding our own types into memory cannot fail.
    encode_response(correlation_id, body, &mut out).expect("encodable response");
    out
}

fn encode_body<T: Serialize>(
    body: &T,
    out: &mut BytesMut,
) -> Result<(), bincode::error::EncodeError> {
    let config = bincode::config::standard();
    // Two passes: the first only adds up lengths (a batch's bytes count as
    // one number), so the second writes into a buffer of the right size.
    // Growing the buffer as it fills instead would copy a 1 MiB frame
    // about twice over.
    let mut size = SizeWriter::default();
    bincode::serde::encode_into_writer(body, &mut size, config)?;
    out.reserve(size.bytes_written);
    bincode::serde::encode_into_writer(body, BytesWriter(out), config)
}

/// Lets bincode append to a `BytesMut`.
struct BytesWriter<'a>(&'a mut BytesMut);

impl Writer for BytesWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Writes the length of the frame that starts at `start` into its prefix:
/// the bytes after the prefix, plus `elsewhere` bytes not in `out`.
fn patch_length(out: &mut BytesMut, start: usize, elsewhere: usize) {
    let len = (out.len() - start - 4 + elsewhere) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Splits a response frame into its correlation id and body.
pub fn parse_response(mut frame: Bytes) -> Result<(u32, Bytes), FrameError> {
    if frame.len() < 4 {
        return Err(FrameError::TooShort {
            len: frame.len() as u32,
        });
    }
    Ok((frame.get_u32(), frame))
}

/// Decodes a body; every byte must be used. Bytes from outside are
/// limited by the frame they came in, so a length inside them cannot make
/// bincode allocate more than the frame holds.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let config = bincode::config::standard().with_limit::<{ DEFAULT_MAX_FRAME as usize }>();
    match bincode::serde::decode_from_slice::<T, _>(body, config) {
        Ok((value, used)) if used == body.len() => Ok(value),
        Ok((_, used)) => Err(format!("{} bytes after the body", body.len() - used)),
        Err(e) => Err(e.to_string()),
    }
}

// ANCHOR: in_place
/// A [`ProduceRequest`] decoded where it lies: each batch is a range of the
/// request's body. The broker stamps offsets into those bytes and appends
/// them as they came off the wire, with no copy; Kafka's broker does the
/// same with the request's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceInPlace {
    /// As in [`ProduceRequest`].
    pub acks: i8,
    /// Per topic, its partitions' batches.
    pub topics: Vec<(String, Vec<BatchInPlace>)>,
}

/// A partition, and where its batch is in the request body.
pub type BatchInPlace = (u32, Range<usize>);

impl ProduceInPlace {
    /// Decodes a produce request's body without copying its batches.
    pub fn decode(body: &[u8]) -> Result<ProduceInPlace, String> {
        // The layout of `ProduceRequest`, with each batch borrowed from
        // `body` instead of copied (a property test keeps the two in step).
        #[derive(Deserialize)]
        struct Request<'a> {
            acks: i8,
            #[serde(borrow)]
            topics: Vec<Topic<'a>>,
        }
        #[derive(Deserialize)]
        struct Topic<'a> {
            name: String,
            #[serde(borrow)]
            partitions: Vec<Partition<'a>>,
        }
        #[derive(Deserialize)]
        struct Partition<'a> {
            partition: u32,
            batch: &'a [u8],
        }
        let config = bincode::config::standard().with_limit::<{ DEFAULT_MAX_FRAME as usize }>();
        let request: Request = match bincode::serde::borrow_decode_from_slice(body, config) {
            Ok((request, used)) if used == body.len() => request,
            Ok((_, used)) => return Err(format!("{} bytes after the body", body.len() - used)),
            Err(e) => return Err(e.to_string()),
        };
        // A borrowed batch points into `body`: its distance from the start
        // is its place in the body.
        let range = |batch: &[u8]| {
            let at = batch.as_ptr() as usize - body.as_ptr() as usize;
            at..at + batch.len()
        };
        let topics = request
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| (p.partition, range(p.batch)))
                    .collect();
                (t.name, partitions)
            })
            .collect();
        Ok(ProduceInPlace {
            acks: request.acks,
            topics,
        })
    }
}
// ANCHOR_END: in_place

/// Append batches to partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceRequest {
    /// 0: no response at all; 1: respond once the leader has appended.
    /// (Chapter 6 adds -1, "all": once the replicas have it too.)
    pub acks: i8,
    /// Per topic, per partition, one encoded chapter 2 batch.
    pub topics: Vec<ProduceTopic>,
}

/// One topic's part of a [`ProduceRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceTopic {
    /// The topic.
    pub name: String,
    /// Its batches, one per partition.
    pub partitions: Vec<ProducePartition>,
}

/// One partition's batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducePartition {
    /// The partition.
    pub partition: u32,
    /// An encoded batch (`ch02_segments::batch::encode`).
    #[serde(with = "serde_bytes_compat")]
    pub batch: Vec<u8>,
}

/// The answer to a [`ProduceRequest`] with `acks` 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceResponse {
    /// Per topic, per partition.
    pub topics: Vec<(String, Vec<ProducePartitionResponse>)>,
}

/// Where one partition's batch went, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducePartitionResponse {
    /// The partition.
    pub partition: u32,
    /// `None` on success.
    pub error: ErrorCode,
    /// The offset of the batch's first record.
    pub base_offset: u64,
}

/// Read batches, waiting up to `max_wait_ms` for `min_bytes` of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// Wait at most this long for `min_bytes` (`fetch.max.wait.ms`).
    pub max_wait_ms: u32,
    /// Answer as soon as this many bytes are there (`fetch.min.bytes`).
    pub min_bytes: u32,
    /// Stop adding partitions' data after this many bytes (`fetch.max.bytes`).
    pub max_bytes: u32,
    /// What to read.
    pub partitions: Vec<FetchPartition>,
}

/// One partition to fetch from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The first offset wanted. Signed, as in Kafka, so that a negative
    /// one is an error the broker reports rather than a number it wraps.
    pub offset: i64,
    /// At most about this many bytes from this partition
    /// (`max.partition.fetch.bytes`); at least one batch is always returned.
    pub max_bytes: u32,
}

/// The answer to a [`FetchRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchResponse {
    /// One entry per partition asked for, in the same order.
    pub partitions: Vec<FetchPartitionResponse>,
}

/// One partition's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchPartitionResponse {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// `None` on success.
    pub error: ErrorCode,
    /// The partition's log end offset (Kafka's high watermark, until
    /// chapter 6 separates the two).
    pub high_watermark: u64,
    /// The partition's first offset.
    pub log_start_offset: u64,
    /// Whole stored batches, as the log holds them.
    pub batches: Vec<StoredBytes>,
}

/// One stored batch's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBytes(#[serde(with = "serde_bytes_compat")] pub Vec<u8>);

/// Find offsets: the earliest, the latest, or the first at a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOffsetsRequest {
    /// `(topic, partition, timestamp)`: [`EARLIEST`], [`LATEST`] or a time
    /// in milliseconds.
    pub partitions: Vec<(String, u32, i64)>,
}

/// [`ListOffsetsRequest`] timestamp for the first offset still stored.
pub const EARLIEST: i64 = -2;
/// [`ListOffsetsRequest`] timestamp for the offset the next record gets.
pub const LATEST: i64 = -1;

/// The answer to a [`ListOffsetsRequest`], in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOffsetsResponse {
    /// `(topic, partition, error, offset)`; the offset is `None` when no
    /// record is at or after the timestamp.
    pub partitions: Vec<(String, u32, ErrorCode, Option<u64>)>,
}

/// Which topics exist; `None` asks for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataRequest {
    /// The topics to describe, or all.
    pub topics: Option<Vec<String>>,
}

/// The answer to a [`MetadataRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataResponse {
    /// The brokers: `(id, host, port)`. One, until chapter 8.
    pub brokers: Vec<(u32, String, u16)>,
    /// Each topic asked for.
    pub topics: Vec<TopicMetadata>,
}

/// One topic in a [`MetadataResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    /// The topic.
    pub name: String,
    /// `UnknownTopicOrPartition` if it does not exist.
    pub error: ErrorCode,
    /// Its partitions, each with its leader's broker id.
    pub partitions: Vec<(u32, u32)>,
}

/// Create topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopicsRequest {
    /// The topics to create.
    pub topics: Vec<NewTopic>,
}

/// One topic to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// Its partition count.
    pub partitions: u32,
    /// Settings by Kafka's names (`retention.ms`, ...).
    pub configs: Vec<(String, String)>,
}

/// Delete topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteTopicsRequest {
    /// The names.
    pub topics: Vec<String>,
}

/// The answer to a [`CreateTopicsRequest`] or [`DeleteTopicsRequest`]:
/// per topic, an error code and a message saying why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicResults {
    /// `(name, error, message)`.
    pub topics: Vec<(String, ErrorCode, String)>,
}

/// A topic's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeConfigsRequest {
    /// The topic.
    pub topic: String,
}

/// The answer to a [`DescribeConfigsRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeConfigsResponse {
    /// `UnknownTopicOrPartition` if the topic does not exist.
    pub error: ErrorCode,
    /// `(name, value)` by Kafka's names.
    pub configs: Vec<(String, String)>,
}

/// The body of every response to a request the broker could not serve at
/// all: unknown API, unsupported version, undecodable body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorCode,
    /// Why, for a person.
    pub message: String,
}

/// Byte vectors encoded as one length and the bytes (bincode's serde
/// support encodes a plain `Vec<u8>` element by element, which is slower).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer, de::Visitor};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(BytesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_arrives_in_pieces() {
        let mut out = BytesMut::new();
        let header = RequestHeader {
            api_key: ApiKey::Metadata as u16,
            api_version: 0,
            correlation_id: 7,
        };
        encode_request(header, &MetadataRequest { topics: None }, &mut out).unwrap();
        let whole = out.clone();
        let mut buf = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            assert_eq!(take_frame(&mut buf, 1024), Ok(None), "after {i} bytes");
            buf.put_u8(*byte);
        }
        let frame = take_frame(&mut buf, 1024).unwrap().unwrap();
        assert!(buf.is_empty());
        let (parsed, body) = parse_request(frame).unwrap();
        assert_eq!(parsed, header);
        let request: MetadataRequest = decode_body(&body).unwrap();
        assert_eq!(request, MetadataRequest { topics: None });
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_length_alone() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            take_frame(&mut buf, 1024),
            Err(FrameError::TooLarge {
                len: 0x7fff_ffff,
                max: 1024
            })
        );
        // Nothing was reserved for it.
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn a_frame_shorter_than_a_header_is_an_error() {
        let frame = BytesMut::from(&[0u8, 3, 0][..]);
        assert_eq!(parse_request(frame), Err(FrameError::TooShort { len: 3 }));
    }

    #[test]
    fn a_body_with_trailing_bytes_is_refused() {
        let mut out = BytesMut::new();
        encode_body(&MetadataRequest { topics: None }, &mut out).unwrap();
        out.put_u8(0);
        assert!(decode_body::<MetadataRequest>(&out).is_err());
    }

    #[test]
    fn api_keys_are_kafkas_numbers() {
        for key in [0, 1, 2, 3, 19, 20, 32] {
            assert_eq!(ApiKey::from_u16(key).map(|k| k as u16), Some(key));
        }
        assert_eq!(ApiKey::from_u16(18), None); // ApiVersions: chapter 11
    }
}
