//! The fixed 61-byte header of a Kafka v2 record batch.
//!
//! The storage engine stores batches byte for byte as they are served, so it
//! reads only this header: to validate length and CRC32C before a batch is
//! written and after it is read back, to learn its offsets and timestamps, and
//! to patch the broker-assigned base offset and leader epoch (both outside the
//! CRC). The records inside are [`super::RecordBatch`]'s business.
//!
//! Layout (big-endian), offsets in bytes:
//! ```text
//!  0 base_offset i64        8 length i32 (bytes after this field)
//! 12 partition_leader_epoch i32           16 magic i8 (= 2)
//! 17 crc u32 (CRC32C of bytes 21..end)    21 attributes i16
//! 23 last_offset_delta i32  27 base_timestamp i64  35 max_timestamp i64
//! 43 producer_id i64        51 producer_epoch i16  53 base_sequence i32
//! 57 records_count i32      61 records...
//! ```

use crate::error::BatchError;
use crate::record_batch::attributes;

pub const BASE_OFFSET_POS: usize = 0;
pub const LENGTH_POS: usize = 8;
pub const LEADER_EPOCH_POS: usize = 12;
pub const MAGIC_POS: usize = 16;
pub const CRC_POS: usize = 17;
pub const ATTRIBUTES_POS: usize = 21;
pub const LAST_OFFSET_DELTA_POS: usize = 23;
pub const BASE_TIMESTAMP_POS: usize = 27;
pub const MAX_TIMESTAMP_POS: usize = 35;
pub const PRODUCER_ID_POS: usize = 43;
pub const PRODUCER_EPOCH_POS: usize = 51;
pub const BASE_SEQUENCE_POS: usize = 53;
pub const RECORDS_COUNT_POS: usize = 57;
/// Size of the fixed header, up to and including `records_count`.
pub const HEADER_BYTES: usize = 61;
/// Bytes before the `length` field's coverage starts (base offset + length).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The CRC covers everything from the attributes to the end of the batch.
pub const CRC_START_POS: usize = ATTRIBUTES_POS;
pub const MAGIC_V2: i8 = 2;

const _: () = assert!(HEADER_BYTES == RECORDS_COUNT_POS + 4);
const _: () = assert!(PRODUCER_ID_POS == MAX_TIMESTAMP_POS + 8);
const _: () = assert!(BASE_SEQUENCE_POS == PRODUCER_EPOCH_POS + 2);
const _: () = assert!(RECORDS_COUNT_POS == BASE_SEQUENCE_POS + 4);
const _: () = assert!(CRC_START_POS == CRC_POS + 4);

/// The header fields of one batch, read from a byte slice that holds it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total size of the batch in bytes, including base offset and length.
    pub size_bytes: usize,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub records_count: i32,
    pub crc: u32,
}

impl BatchHeader {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Control batches (transaction markers) have attribute bit 5 set.
    pub fn is_control(&self) -> bool {
        self.attributes & attributes::CONTROL != 0
    }

    /// Transactional batches have attribute bit 4 set.
    pub fn is_transactional(&self) -> bool {
        self.attributes & attributes::TRANSACTIONAL != 0
    }

    /// Compression codec id, attribute bits 0-2 (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression_codec(&self) -> u8 {
        (self.attributes & attributes::CODEC_MASK) as u8
    }
}

/// What [`parse_header`] can tell about the bytes at a position.
#[derive(Debug)]
pub enum HeaderParse {
    /// A complete header whose length says the whole batch is in the slice.
    Complete(BatchHeader),
    /// The slice ends before the batch does; `needed` bytes from the batch
    /// start would hold it (only known once the length field is readable).
    Incomplete { needed: Option<usize> },
    /// The header is not a plausible v2 batch header.
    Invalid(BatchError),
}

pub(crate) fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
pub(crate) fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
pub(crate) fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// Reads the fixed header at `bytes[0]` without requiring the rest of the
/// batch: `Ok(None)` when fewer than [`HEADER_BYTES`] bytes are given.
pub fn peek_header(bytes: &[u8], position: usize, size_bytes_max: usize) -> Result<Option<BatchHeader>, BatchError> {
    if bytes.len() < HEADER_BYTES {
        return match parse_header(bytes, position, size_bytes_max) {
            HeaderParse::Invalid(err) => Err(err),
            _ => Ok(None),
        };
    }
    let whole_or_not = parse_header(&bytes[..HEADER_BYTES], position, size_bytes_max);
    match whole_or_not {
        HeaderParse::Invalid(err) => Err(err),
        HeaderParse::Complete(header) => Ok(Some(header)),
        HeaderParse::Incomplete { .. } => Ok(Some(read_fields(bytes, header_size(bytes)))),
    }
}

fn header_size(bytes: &[u8]) -> usize {
    be_i32(bytes, LENGTH_POS) as usize + LOG_OVERHEAD_BYTES
}

fn read_fields(bytes: &[u8], size_bytes: usize) -> BatchHeader {
    BatchHeader {
        base_offset: be_i64(bytes, BASE_OFFSET_POS),
        size_bytes,
        partition_leader_epoch: be_i32(bytes, LEADER_EPOCH_POS),
        attributes: be_i16(bytes, ATTRIBUTES_POS),
        last_offset_delta: be_i32(bytes, LAST_OFFSET_DELTA_POS),
        base_timestamp: be_i64(bytes, BASE_TIMESTAMP_POS),
        max_timestamp: be_i64(bytes, MAX_TIMESTAMP_POS),
        records_count: be_i32(bytes, RECORDS_COUNT_POS),
        crc: u32::from_be_bytes(bytes[CRC_POS..CRC_POS + 4].try_into().expect("4 bytes")),
    }
}

/// Reads the header of the batch starting at `bytes[0]`, checking only what
/// the header itself can prove (length, magic, count). `position` is used in
/// error values to say where the batch started. `size_bytes_max` bounds the
/// length field so that a lying length cannot ask for a huge read.
pub fn parse_header(bytes: &[u8], position: usize, size_bytes_max: usize) -> HeaderParse {
    if bytes.len() < LOG_OVERHEAD_BYTES {
        return HeaderParse::Incomplete { needed: None };
    }
    let length = be_i32(bytes, LENGTH_POS);
    let min_length = (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
    if length < min_length || length as usize + LOG_OVERHEAD_BYTES > size_bytes_max {
        return HeaderParse::Invalid(BatchError::BadLength { position, length, available: bytes.len() });
    }
    let size_bytes = length as usize + LOG_OVERHEAD_BYTES;
    if bytes.len() < HEADER_BYTES {
        return HeaderParse::Incomplete { needed: Some(size_bytes) };
    }
    let magic = bytes[MAGIC_POS] as i8;
    if magic != MAGIC_V2 {
        return HeaderParse::Invalid(BatchError::UnsupportedMagic { position, magic });
    }
    let header = read_fields(bytes, size_bytes);
    // A v2 batch always holds at least one record and its last offset delta
    // never exceeds the number of records minus one (compaction may leave
    // gaps, so it may be larger than count - 1 but never negative).
    if header.last_offset_delta < 0 || header.records_count < 0 {
        return HeaderParse::Invalid(BatchError::BadRecordCount {
            position,
            last_offset_delta: header.last_offset_delta,
            records_count: header.records_count,
        });
    }
    if bytes.len() < size_bytes {
        return HeaderParse::Incomplete { needed: Some(size_bytes) };
    }
    HeaderParse::Complete(header)
}

/// Checks the CRC32C of a whole batch (`batch.len() == header.size_bytes`).
pub fn check_crc(batch: &[u8], header: &BatchHeader, position: usize) -> Result<(), BatchError> {
    let computed = crc32c::crc32c(&batch[CRC_START_POS..header.size_bytes]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch { position, stored: header.crc, computed });
    }
    Ok(())
}

/// Parses and CRC-checks one complete batch at the start of `bytes`.
pub fn validate_batch(bytes: &[u8], position: usize, size_bytes_max: usize) -> Result<BatchHeader, BatchError> {
    let header = parse_whole_header(bytes, position, size_bytes_max)?;
    check_crc(&bytes[..header.size_bytes], &header, position)?;
    Ok(header)
}

/// Like [`parse_header`], but a batch that does not fit in `bytes` is an
/// error too: `BadLength` once the length is readable, else `TruncatedHeader`.
pub fn parse_whole_header(bytes: &[u8], position: usize, size_bytes_max: usize) -> Result<BatchHeader, BatchError> {
    match parse_header(bytes, position, size_bytes_max) {
        HeaderParse::Complete(header) => Ok(header),
        HeaderParse::Invalid(err) => Err(err),
        HeaderParse::Incomplete { needed: Some(size) } => {
            Err(BatchError::BadLength { position, length: (size - LOG_OVERHEAD_BYTES) as i32, available: bytes.len() })
        }
        HeaderParse::Incomplete { needed: None } => {
            Err(BatchError::TruncatedHeader { len: bytes.len(), needed: HEADER_BYTES })
        }
    }
}

/// The headers of a run of whole batches that the log already validated
/// (what reads return), with each batch's position in the run.
///
/// # Panics
/// If the run does not consist of whole batches: that is a bug in the log,
/// not bad input.
pub fn run_headers(run: &[u8]) -> impl Iterator<Item = (usize, BatchHeader)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= run.len() {
            return None;
        }
        let header = match parse_header(&run[at..], at, run.len() - at) {
            HeaderParse::Complete(header) => header,
            other => panic!("a run of validated batches holds a partial batch at byte {at}: {other:?}"),
        };
        let position = at;
        at += header.size_bytes;
        Some((position, header))
    })
}

/// Writes the broker-assigned base offset and leader epoch into a batch.
/// Both fields lie before the CRC's coverage, so the CRC stays valid.
pub fn patch_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH_POS..LEADER_EPOCH_POS + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Builds a valid v2 batch of `records_count` opaque records with the given
/// payload, for tests and benchmarks. The record bytes are not a real Kafka
/// record encoding; the log never looks inside them.
pub fn build_test_batch(records_count: i32, max_timestamp: i64, payload: &[u8]) -> Vec<u8> {
    assert!(records_count >= 1, "records_count {records_count} must be >= 1");
    let size_bytes = HEADER_BYTES + payload.len();
    let mut b = vec![0u8; size_bytes];
    b[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&((size_bytes - LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
    b[MAGIC_POS] = MAGIC_V2 as u8;
    b[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4].copy_from_slice(&(records_count - 1).to_be_bytes());
    b[BASE_TIMESTAMP_POS..BASE_TIMESTAMP_POS + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    b[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    b[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&(-1i64).to_be_bytes()); // no producer id
    b[PRODUCER_EPOCH_POS..PRODUCER_EPOCH_POS + 2].copy_from_slice(&(-1i16).to_be_bytes());
    b[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4].copy_from_slice(&(-1i32).to_be_bytes());
    b[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&records_count.to_be_bytes());
    b[HEADER_BYTES..].copy_from_slice(payload);
    let crc = crc32c::crc32c(&b[CRC_START_POS..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batch_round_trips_through_the_header_parser() {
        // Proves the header layout: what the builder writes, the parser reads.
        let b = build_test_batch(5, 1_700_000_000_000, b"hello world");
        let h = validate_batch(&b, 0, usize::MAX).unwrap();
        assert_eq!(h.size_bytes, b.len());
        assert_eq!(h.records_count, 5);
        assert_eq!(h.last_offset_delta, 4);
        assert_eq!(h.max_timestamp, 1_700_000_000_000);
        assert!(!h.is_control());
    }

    #[test]
    fn patching_offset_and_epoch_keeps_the_crc_valid() {
        let mut b = build_test_batch(3, 7, b"abc");
        patch_offset_and_epoch(&mut b, 1234, 9);
        let h = validate_batch(&b, 0, usize::MAX).unwrap();
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.last_offset(), 1236);
        assert_eq!(h.partition_leader_epoch, 9);
    }

    #[test]
    fn each_kind_of_damage_gets_its_own_error() {
        let good = build_test_batch(2, 1, b"payload");
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        assert!(matches!(validate_batch(&bad_crc, 0, usize::MAX), Err(BatchError::CrcMismatch { .. })));
        let mut bad_magic = good.clone();
        bad_magic[MAGIC_POS] = 1;
        assert!(matches!(
            validate_batch(&bad_magic, 0, usize::MAX),
            Err(BatchError::UnsupportedMagic { magic: 1, .. })
        ));
        let mut bad_len = good.clone();
        bad_len[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(validate_batch(&bad_len, 0, usize::MAX), Err(BatchError::BadLength { length: -5, .. })));
        assert!(matches!(validate_batch(&good[..good.len() - 1], 0, usize::MAX), Err(BatchError::BadLength { .. })));
        assert!(matches!(validate_batch(&good[..5], 0, usize::MAX), Err(BatchError::TruncatedHeader { .. })));
        let mut bad_count = good.clone();
        bad_count[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(validate_batch(&bad_count, 0, usize::MAX), Err(BatchError::BadRecordCount { .. })));
        // A lying length larger than the allowed maximum is refused before any read.
        assert!(matches!(validate_batch(&good, 0, 20), Err(BatchError::BadLength { .. })));
    }
}
