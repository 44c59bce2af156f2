//! The frame: how one record is laid out on disk, and how to find where the
//! valid frames in a run of bytes end.
//!
//! Everything here works on byte slices and does no I/O, so it can be tested
//! exhaustively and reused by the log, by recovery, and by later chapters.

/// Bytes in a frame header: a 4-byte length and a 4-byte checksum, both
/// big-endian (network order, as everything in Kafka's formats).
///
/// ```text
/// +----------------+----------------+----------------------+
/// | length: u32 BE |  crc: u32 BE   | payload: length bytes |
/// +----------------+----------------+----------------------+
///   crc = CRC-32(length bytes ++ payload)
/// ```
pub const HEADER_LEN: usize = 8;

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole frame whose checksum matches.
    Frame {
        /// The record's bytes.
        payload: &'a [u8],
        /// How many bytes of the buffer the frame took, header included.
        frame_len: usize,
    },
    /// The buffer ends before the frame does: at the end of a log this is a
    /// write that was torn by a crash (or simply no more data).
    Incomplete,
    /// The frame is all there but its checksum does not match its bytes:
    /// something changed them after they were written.
    Corrupt {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the bytes actually there.
        computed: u32,
    },
}

/// Why a [`scan`] stopped before the end of its buffer.
///
/// This says what the bytes look like, not what happened to them: a torn
/// write leaves an incomplete frame, but so does a flipped bit that makes a
/// length point past the end of the file; and the zeroed tail a file system
/// may leave after a crash fails its checksum, as damage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The last frame is cut short (a torn write).
    Incomplete,
    /// A frame's checksum does not match (damaged bytes).
    Corrupt,
}

/// The result of reading a buffer of frames from its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The byte position of each valid frame, in order: the index into this
    /// vector is the record's offset. This is the log's in-memory index.
    pub positions: Vec<u64>,
    /// How many bytes from the start hold valid frames.
    pub valid_len: u64,
    /// Why the scan stopped before the end of the buffer, if it did.
    pub damage: Option<Damage>,
}

/// Appends the frame for `payload` to `out`.
///
/// The checksum covers the length field as well as the payload. Without that,
/// a run of zero bytes (which is what a file system may leave at the end of a
/// file after a crash) would read as a stream of valid empty records: the
/// CRC-32 of nothing is 0, and so is a zeroed checksum field.
///
/// # Panics
///
/// If `payload` is 4 GiB or more, which a 4-byte length cannot describe.
/// [`crate::Log::append`] never gets here with such a payload: it refuses
/// records over its configured maximum, itself a `u32`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&header(payload));
    out.extend_from_slice(payload);
}

/// The header of the frame for `payload`: its length and checksum. A frame
/// is this header followed by the payload, so a writer that already holds
/// the payload can send both with one vectored write instead of copying the
/// payload behind the header (chapter 2 does, for whole batches).
///
/// # Panics
///
/// As [`encode`], if `payload` is 4 GiB or more.
pub fn header(payload: &[u8]) -> [u8; HEADER_LEN] {
    let len = u32::try_from(payload.len()).expect("payload size is checked by the caller");
    todo!("exercise `header`: The header is the length as 4 big-endian bytes, then `checksum(length bytes, payload)` as 4 big-endian bytes.")
}

/// The CRC-32 (IEEE, as zlib and Ethernet use) of a frame's length and payload.
fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// Reads the frame at the start of `buf`, checking its checksum.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    todo!("exercise `decode`: Read the 4-byte big-endian length and the 4-byte checksum; if the header or the payload runs past the end of `buf` the frame is Incomplete; otherwise compare the stored checksum with `checksum(length bytes, payload)`.")
}

/// Walks `buf` frame by frame from its start and reports where the valid
/// frames end. This is all that recovery is: the first frame that is cut
/// short or fails its checksum marks the end of the log, and everything from
/// there on is to be thrown away.
pub fn scan(buf: &[u8]) -> Scan {
    todo!("exercise `scan`: Loop from position 0: `decode` the rest of the buffer; push the position of each valid Frame and step over it; stop at the end of the buffer, or record Damage::Incomplete / Damage::Corrupt and stop at the first bad frame.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(payload, &mut out);
        out
    }

    #[test]
    fn a_frame_is_header_then_payload() {
        let bytes = frame(b"hello");
        assert_eq!(bytes.len(), HEADER_LEN + 5);
        assert_eq!(&bytes[..4], &5u32.to_be_bytes());
        assert_eq!(&bytes[HEADER_LEN..], b"hello");
    }

    #[test]
    fn decode_returns_the_payload_and_the_frame_length() {
        let mut bytes = frame(b"hello");
        bytes.extend_from_slice(b"trailing bytes are not part of the frame");
        assert_eq!(
            decode(&bytes),
            Decoded::Frame {
                payload: b"hello",
                frame_len: HEADER_LEN + 5
            }
        );
    }

    #[test]
    fn an_empty_payload_is_a_valid_record() {
        let bytes = frame(b"");
        assert_eq!(
            decode(&bytes),
            Decoded::Frame {
                payload: b"",
                frame_len: HEADER_LEN
            }
        );
    }

    #[test]
    fn every_cut_short_frame_is_incomplete() {
        let bytes = frame(b"hello");
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_payload_bit_is_corrupt() {
        let mut bytes = frame(b"hello");
        bytes[HEADER_LEN + 1] ^= 0x01;
        assert!(matches!(decode(&bytes), Decoded::Corrupt { .. }));
    }

    #[test]
    fn zeroed_bytes_are_not_a_frame() {
        // What a file system may leave after a crash: the file grew, the data
        // never arrived. With the length inside the checksum this is damage,
        // not an endless run of empty records.
        let zeros = [0u8; 64];
        assert!(matches!(decode(&zeros), Decoded::Corrupt { .. }));
        let scan = scan(&zeros);
        assert!(scan.positions.is_empty());
        assert_eq!(scan.damage, Some(Damage::Corrupt));
    }

    #[test]
    fn scan_finds_every_frame_and_where_they_end() {
        let mut bytes = frame(b"a");
        bytes.extend(frame(b"bb"));
        bytes.extend(frame(b""));
        let result = scan(&bytes);
        assert_eq!(result.positions, vec![0, 9, 19]);
        assert_eq!(result.valid_len, bytes.len() as u64);
        assert_eq!(result.damage, None);
    }

    #[test]
    fn scan_stops_at_a_torn_tail() {
        let mut bytes = frame(b"kept");
        let kept = bytes.len() as u64;
        let torn = frame(b"torn");
        bytes.extend_from_slice(&torn[..torn.len() - 1]);
        let result = scan(&bytes);
        assert_eq!(result.positions, vec![0]);
        assert_eq!(result.valid_len, kept);
        assert_eq!(result.damage, Some(Damage::Incomplete));
    }

    #[test]
    fn scan_stops_at_the_first_corrupt_frame_even_if_later_ones_are_fine() {
        let mut bytes = frame(b"first");
        let second_at = bytes.len();
        bytes.extend(frame(b"second"));
        bytes.extend(frame(b"third"));
        bytes[second_at + HEADER_LEN] ^= 0xff;
        let result = scan(&bytes);
        assert_eq!(result.positions, vec![0]);
        assert_eq!(result.valid_len, second_at as u64);
        assert_eq!(result.damage, Some(Damage::Corrupt));
    }

    #[test]
    fn scan_of_nothing_is_an_empty_clean_log() {
        assert_eq!(
            scan(&[]),
            Scan {
                positions: vec![],
                valid_len: 0,
                damage: None
            }
        );
    }
}
