//! Kafka v2 record batches as zero-copy views over [`Bytes`].
//!
//! A [`RecordBatch`] is the bytes a client sent (or the log stored) plus the
//! parsed fixed header; nothing is copied to look at it. Validation checks the
//! CRC32C over attributes..end, then walks the records (varints, keys, values,
//! headers) to prove that the declared length, record count and last offset
//! delta agree with what the batch holds. Compressed batches are CRC-checked
//! as they are; their records are walked after [`crate::compression`]
//! inflates them, into a buffer no larger than the caller allows.
//!
//! The broker writes only outside the CRC (base offset, leader epoch, see
//! [`header::patch_offset_and_epoch`]) except for LogAppendTime topics, where
//! [`set_log_append_time`] rewrites the max timestamp and the CRC.
//!
//! Message formats v0 and v1 (magic 0 and 1) are refused with
//! [`BatchError::UnsupportedMagic`], which maps to INVALID_RECORD as in Kafka 4.

pub mod builder;
mod fused;
pub mod header;
mod records;

pub use builder::{control_batch, ControlMarker, ControlType, RecordBatchBuilder};
pub use header::{BatchHeader, HeaderParse, HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2};
pub use records::{Record, RecordHeader, RecordHeaders, Records};

use bytes::Bytes;

use crate::compression::{self, Codec};
use crate::error::BatchError;
use header::{be_i16, be_i32, be_i64};

/// Bits of the batch `attributes` field.
pub mod attributes {
    /// Bits 0-2: compression codec id.
    pub const CODEC_MASK: i16 = 0x07;
    /// Bit 3: timestamps are LogAppendTime (set by the broker), not CreateTime.
    pub const LOG_APPEND_TIME: i16 = 0x08;
    /// Bit 4: the batch belongs to a transaction.
    pub const TRANSACTIONAL: i16 = 0x10;
    /// Bit 5: a control batch (transaction marker), never from a producer.
    pub const CONTROL: i16 = 0x20;
    /// Bit 6: the base timestamp holds the delete horizon of a compacted log.
    pub const DELETE_HORIZON: i16 = 0x40;
}

/// Which clock a batch's timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// One v2 record batch, borrowed zero-copy from the buffer it arrived in.
#[derive(Debug, Clone)]
pub struct RecordBatch {
    bytes: Bytes,
    header: BatchHeader,
    /// Byte position of the batch in its record set, for error messages.
    position: usize,
}

/// What walking a batch's records found; the broker uses it to check a
/// produced batch against Kafka's rules (offset deltas 0..n-1, timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsSummary {
    pub records_count: usize,
    pub last_offset_delta: i32,
    /// True when the offset deltas are exactly 0, 1, ..., n-1, as a producer
    /// must send them (compaction may leave gaps in stored batches).
    pub offset_deltas_consecutive: bool,
    /// The largest record timestamp (base timestamp + delta).
    pub max_record_timestamp: i64,
}

impl RecordBatch {
    /// Takes the batch at the start of `bytes`, which must hold exactly one
    /// whole batch. Checks the header (length, magic, counts), not the CRC.
    pub fn new(bytes: Bytes, position: usize) -> Result<RecordBatch, BatchError> {
        let header = header::parse_whole_header(&bytes, position, bytes.len())?;
        if header.size_bytes != bytes.len() {
            return Err(BatchError::TrailingBytes { position, trailing: bytes.len() - header.size_bytes });
        }
        Ok(RecordBatch { bytes, header, position })
    }

    /// The whole batch, header included, exactly as it arrived.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn base_offset(&self) -> i64 {
        self.header.base_offset
    }

    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    pub fn partition_leader_epoch(&self) -> i32 {
        self.header.partition_leader_epoch
    }

    pub fn attributes(&self) -> i16 {
        self.header.attributes
    }

    pub fn last_offset_delta(&self) -> i32 {
        self.header.last_offset_delta
    }

    pub fn base_timestamp(&self) -> i64 {
        self.header.base_timestamp
    }

    pub fn max_timestamp(&self) -> i64 {
        self.header.max_timestamp
    }

    pub fn producer_id(&self) -> i64 {
        be_i64(&self.bytes, header::PRODUCER_ID_POS)
    }

    pub fn producer_epoch(&self) -> i16 {
        be_i16(&self.bytes, header::PRODUCER_EPOCH_POS)
    }

    pub fn base_sequence(&self) -> i32 {
        be_i32(&self.bytes, header::BASE_SEQUENCE_POS)
    }

    pub fn records_count(&self) -> i32 {
        self.header.records_count
    }

    pub fn crc(&self) -> u32 {
        self.header.crc
    }

    /// The compression codec; codec ids 5-7 are an error.
    pub fn codec(&self) -> Result<Codec, BatchError> {
        Codec::from_attributes(self.header.attributes).map_err(|_| BatchError::UnknownCodec {
            position: self.position,
            codec: self.header.attributes & attributes::CODEC_MASK,
        })
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.header.attributes & attributes::LOG_APPEND_TIME != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.header.is_transactional()
    }

    pub fn is_control(&self) -> bool {
        self.header.is_control()
    }

    pub fn has_delete_horizon(&self) -> bool {
        self.header.attributes & attributes::DELETE_HORIZON != 0
    }

    /// The records section as stored (compressed when the codec says so),
    /// a zero-copy slice of the batch.
    pub fn records_bytes(&self) -> Bytes {
        self.bytes.slice(HEADER_BYTES..)
    }

    /// Checks the CRC32C over attributes..end.
    pub fn verify_crc(&self) -> Result<(), BatchError> {
        header::check_crc(&self.bytes, &self.header, self.position)
    }

    /// The records, inflated first when the batch is compressed (into at most
    /// `uncompressed_bytes_max` bytes). Uncompressed records are not copied.
    pub fn records(&self, uncompressed_bytes_max: usize) -> Result<Records, BatchError> {
        let data = self.uncompressed_records(uncompressed_bytes_max)?;
        Ok(Records::new(data, self.header.records_count, self.position))
    }

    fn uncompressed_records(&self, uncompressed_bytes_max: usize) -> Result<Bytes, BatchError> {
        let codec = self.codec()?;
        if codec == Codec::None {
            return Ok(self.records_bytes());
        }
        compression::decompress(codec, &self.bytes[HEADER_BYTES..], uncompressed_bytes_max)
            .map_err(|source| BatchError::Compression { position: self.position, codec, source })
    }

    /// Full validation: CRC, then every record's framing, then the declared
    /// record count and last offset delta against what the records hold.
    ///
    /// Uncompressed batches on x86_64 with SSE4.2 are hashed and walked in
    /// one fused pass (see `fused.rs` and docs/benchmarks.md); the result,
    /// errors included, is the same as [`RecordBatch::validate_two_pass`]:
    /// a CRC mismatch wins over any record error, then the walk's first error.
    pub fn validate(&self, uncompressed_bytes_max: usize) -> Result<RecordsSummary, BatchError> {
        let uncompressed = self.header.attributes & attributes::CODEC_MASK == 0;
        if !uncompressed || !fused::available() {
            return self.validate_two_pass(uncompressed_bytes_max);
        }
        let mut walk = records::RecordWalk::new(self.position);
        let crc_range = &self.bytes[header::CRC_START_POS..];
        let records = &self.bytes[HEADER_BYTES..];
        let computed = fused::crc_and_walk(crc_range, records, HEADER_BYTES - header::CRC_START_POS, &mut walk);
        if computed != self.header.crc {
            return Err(BatchError::CrcMismatch { position: self.position, stored: self.header.crc, computed });
        }
        let summary = walk.finish(self.header.base_timestamp)?;
        self.check_summary(summary)
    }

    /// The reference validation, in two passes: the `crc32c` crate over the
    /// CRC range, then the record walk. [`RecordBatch::validate`] must give
    /// the same result; tests compare the two on valid and damaged batches.
    pub fn validate_two_pass(&self, uncompressed_bytes_max: usize) -> Result<RecordsSummary, BatchError> {
        self.verify_crc()?;
        let data = self.uncompressed_records(uncompressed_bytes_max)?;
        let summary = records::summarize(&data, self.header.base_timestamp, self.position)?;
        self.check_summary(summary)
    }

    /// The header's record count and last offset delta against the walk's.
    fn check_summary(&self, summary: RecordsSummary) -> Result<RecordsSummary, BatchError> {
        if summary.records_count != self.header.records_count as usize {
            return Err(BatchError::RecordCountMismatch {
                position: self.position,
                declared: self.header.records_count,
                found: summary.records_count,
            });
        }
        if summary.last_offset_delta != self.header.last_offset_delta {
            return Err(BatchError::LastOffsetDeltaMismatch {
                position: self.position,
                declared: self.header.last_offset_delta,
                found: summary.last_offset_delta,
            });
        }
        Ok(summary)
    }
}

/// CRC32C of `data` as [`RecordBatch::validate`] computes it (three-stream
/// blocks on SSE4.2, else the `crc32c` crate); always equal to
/// `crc32c::crc32c(data)`. The benchmark times it alone to show what the
/// fused record walk costs on top.
pub fn crc32c(data: &[u8]) -> u32 {
    fused::crc32c(data)
}

/// Splits a record set (the `records` field of a Produce or Fetch partition)
/// into its batches, zero-copy. Each batch's header is checked as it is
/// reached; a batch longer than `batch_bytes_max` is refused before it is
/// looked at further.
pub fn batches(record_set: Bytes, batch_bytes_max: usize) -> RecordBatches {
    RecordBatches { rest: record_set, position: 0, batch_bytes_max, failed: false }
}

/// Iterator returned by [`batches`]. Stops after the first error.
#[derive(Debug)]
pub struct RecordBatches {
    rest: Bytes,
    position: usize,
    batch_bytes_max: usize,
    failed: bool,
}

impl Iterator for RecordBatches {
    type Item = Result<RecordBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let limit = self.batch_bytes_max.min(self.rest.len());
        let size = match header::parse_header(&self.rest, self.position, limit) {
            HeaderParse::Complete(header) => header.size_bytes,
            HeaderParse::Invalid(BatchError::BadLength { length, .. })
                if length as usize + LOG_OVERHEAD_BYTES > self.batch_bytes_max =>
            {
                self.failed = true;
                let len = length as usize + LOG_OVERHEAD_BYTES;
                return Some(Err(BatchError::TooLarge { len, size_bytes_max: self.batch_bytes_max as u64 }));
            }
            HeaderParse::Invalid(err) => {
                self.failed = true;
                return Some(Err(err));
            }
            HeaderParse::Incomplete { .. } => {
                self.failed = true;
                return Some(RecordBatch::new(self.rest.clone(), self.position));
            }
        };
        let batch_bytes = self.rest.split_to(size);
        let position = self.position;
        self.position += size;
        Some(RecordBatch::new(batch_bytes, position))
    }
}

/// Marks a batch's timestamps as LogAppendTime with the broker's clock:
/// sets attribute bit 3, writes `timestamp_ms` as the max timestamp and
/// recomputes the CRC, as Kafka's `setMaxTimestamp` does. The batch must be
/// whole and valid (checked by the caller before it is patched).
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let attributes_now = be_i16(batch, header::ATTRIBUTES_POS) | attributes::LOG_APPEND_TIME;
    batch[header::ATTRIBUTES_POS..header::ATTRIBUTES_POS + 2].copy_from_slice(&attributes_now.to_be_bytes());
    batch[header::MAX_TIMESTAMP_POS..header::MAX_TIMESTAMP_POS + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[header::CRC_START_POS..]);
    batch[header::CRC_POS..header::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}
