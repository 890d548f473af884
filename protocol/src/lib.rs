//! # Stele's Kafka wire protocol
//!
//! One crate gets the protocol right once, for the broker and for the
//! benchmark client: framing, request and response headers, the table of
//! supported API versions, message codecs, record batches and compression.
//!
//! ```
//! use bytes::{BufMut, BytesMut};
//! use protocol::frame::FrameDecoder;
//!
//! // An ApiVersions v0 request as a client sends it: size prefix, header v1.
//! let mut wire = BytesMut::new();
//! wire.put_i32(12);
//! wire.put_slice(&[0, 18, 0, 0, 0, 0, 0, 7, 0, 2, b'c', b'1']);
//! let frame = FrameDecoder::default().decode(&mut wire).unwrap().expect("a whole frame");
//! let request = protocol::decode_request(frame).unwrap();
//! assert_eq!(request.header.correlation_id, 7);
//! ```
//!
//! # Layout
//! - [`frame`]: the 4-byte size prefix; sizes checked before any allocation.
//! - [`header`]: request headers v0-v2, response headers v0-v1 (ApiVersions
//!   responses always v0).
//! - [`api`]: the supported-version table that drives ApiVersions and
//!   dispatch; `api::api_versions` answers ApiVersions, unknown versions too.
//! - [`codec`]: decode requests/responses and encode them, wrapping the
//!   `kafka-protocol` crate so that a bad frame is an error value.
//! - [`record_batch`]: v2 record batches as zero-copy views, validation,
//!   patching, building; [`compression`]: gzip, snappy, lz4, zstd.
//! - [`consumer_protocol`]: what classic consumer members embed in their
//!   group metadata (the subscribed topics).
//! - [`varint`]: Kafka's zigzag varints; [`error`]: error types and
//!   Kafka's error codes ([`ErrorCode`]).
#![deny(unsafe_code)]

pub mod api;
pub mod codec;
pub mod compression;
pub mod consumer_protocol;
pub mod error;
pub mod frame;
pub mod header;
pub mod record_batch;
pub mod varint;

pub use codec::{decode_request, decode_response, encode_request, encode_response, Request};
pub use error::{BatchError, DecodeError, EncodeError, ErrorCode, FrameError};
pub use kafka_protocol::messages;
pub use kafka_protocol::protocol::StrBytes;
pub use record_batch::RecordBatch;
