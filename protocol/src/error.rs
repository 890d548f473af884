//! Errors of the protocol crate. Each carries what an operator or a test needs
//! to find the problem: the API key and version, the byte position in a record
//! set, the declared and the actual value.
//!
//! Kafka's own error codes (what goes on the wire) are [`ErrorCode`], taken
//! from the `kafka-protocol` crate so that the numbers come from Kafka's specs.

pub use kafka_protocol::error::ResponseError as ErrorCode;

use kafka_protocol::messages::ApiKey;

use crate::compression::{Codec, CompressionError};

/// Why a request frame's size prefix was refused. Checked before any buffer
/// is sized for the frame, so a lying prefix costs nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} is negative")]
    NegativeSize { size: i32 },
    #[error("frame size is zero; a request holds at least its header")]
    ZeroSize,
    #[error("frame size {size} exceeds the maximum request size {size_max} (socket.request.max.bytes)")]
    TooLarge { size: usize, size_max: usize },
}

/// Why a request or response could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{len}-byte frame is too short for a request header (api key, version, correlation id)")]
    ShortHeader { len: usize },
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16 },
    #[error("{api_key:?} version {version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion { api_key: ApiKey, version: i16, min: i16, max: i16 },
    #[error("malformed {api_key:?} v{version} {part}: {reason}")]
    Malformed { api_key: ApiKey, version: i16, part: Part, reason: String },
}

/// Why a message could not be encoded (a value does not fit the version).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{version} {part}: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub part: Part,
    pub reason: String,
}

/// Which part of a message an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    RequestHeader,
    RequestBody,
    ResponseHeader,
    ResponseBody,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::RequestHeader => "request header",
            Part::RequestBody => "request body",
            Part::ResponseHeader => "response header",
            Part::ResponseBody => "response body",
        })
    }
}

/// Why a v2 record batch (or a record set of them) was refused. `position`
/// is the byte position of the batch in the record set it came in.
///
/// The broker maps these to Kafka's codes: [`BatchError::error_code`].
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("record set of {len} bytes ends inside a batch header ({needed} bytes needed)")]
    TruncatedHeader { len: usize, needed: usize },
    #[error(
        "batch length field {length} is invalid (at byte {position} of the record set, {available} bytes available)"
    )]
    BadLength { position: usize, length: i32, available: usize },
    #[error("batch at byte {position} has magic {magic}; only magic 2 (v2 record batches) is supported")]
    UnsupportedMagic { position: usize, magic: i8 },
    #[error("batch at byte {position} has CRC32C {stored:#010x} but its contents hash to {computed:#010x}")]
    CrcMismatch { position: usize, stored: u32, computed: u32 },
    #[error("batch at byte {position} has last offset delta {last_offset_delta} and record count {records_count}")]
    BadRecordCount { position: usize, last_offset_delta: i32, records_count: i32 },
    #[error("empty record set")]
    Empty,
    #[error("batch of {len} bytes is larger than the limit {size_bytes_max}")]
    TooLarge { len: usize, size_bytes_max: u64 },
    #[error("batch at byte {position}: record {record_index} is malformed at byte {record_position} of the records: {reason}")]
    BadRecord { position: usize, record_index: usize, record_position: usize, reason: &'static str },
    #[error("batch at byte {position} declares {declared} records but holds {found}")]
    RecordCountMismatch { position: usize, declared: i32, found: usize },
    #[error("batch at byte {position} declares last offset delta {declared} but its last record has delta {found}")]
    LastOffsetDeltaMismatch { position: usize, declared: i32, found: i32 },
    #[error("batch at byte {position}: record {record_index} has offset delta {offset_delta}, not above the previous {previous}")]
    OffsetDeltaOrder { position: usize, record_index: usize, offset_delta: i32, previous: i32 },
    #[error("batch at byte {position} has {trailing} bytes after its last record")]
    TrailingBytes { position: usize, trailing: usize },
    #[error("batch at byte {position} uses compression codec {codec}, which is not known")]
    UnknownCodec { position: usize, codec: i16 },
    #[error("batch at byte {position} ({codec:?}): {source}")]
    Compression {
        position: usize,
        codec: Codec,
        #[source]
        source: CompressionError,
    },
}

impl BatchError {
    /// The Kafka error code a Produce response carries for this batch, as
    /// Kafka 4 chooses it: CORRUPT_MESSAGE (2, retriable) for damage in
    /// transit; INVALID_RECORD (87) for a batch that breaks a rule, message
    /// format v0/v1 included (Kafka's ProduceRequest.validateRecords);
    /// MESSAGE_TOO_LARGE (10) for size.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            BatchError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            BatchError::UnsupportedMagic { .. }
            | BatchError::UnknownCodec { .. }
            | BatchError::OffsetDeltaOrder { .. }
            | BatchError::LastOffsetDeltaMismatch { .. } => ErrorCode::InvalidRecord,
            _ => ErrorCode::CorruptMessage,
        }
    }
}
