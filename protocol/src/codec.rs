//! Decoding and encoding whole messages, wrapping the `kafka-protocol` codecs.
//!
//! The wrapper's promises: a frame that cannot be decoded is an error value
//! naming the API, version and part, never a panic (the generated decoders
//! are additionally run under `catch_unwind`); versions the codecs do not
//! know are reported as [`DecodeError::UnsupportedVersion`] before the body
//! is touched; and decoding a Produce request does not copy record bytes:
//! the `records` field is a slice of the frame.
//!
//! One exception follows Kafka: an ApiVersions request of a version the
//! codecs do not know decodes to an empty body at that version, so the
//! broker can answer it with UNSUPPORTED_VERSION ([`crate::api::api_versions`]).
//!
//! Known limitation of `kafka-protocol` 0.18: array decoders pre-size their
//! vector from the count on the wire. A lying count reserves address space
//! (not memory) under an allocator that maps with MAP_NORESERVE, as mimalloc
//! does; with glibc's malloc a count in the billions can abort the process.
//! The broker and loadgen therefore run on mimalloc; see docs/protocol.md.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::{DecodeError, EncodeError, Part};
use crate::header;

/// A decoded request: its header and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

impl Request {
    pub fn api_version(&self) -> i16 {
        self.header.request_api_version
    }

    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
}

/// Runs a generated decoder, turning both its errors and any panic into a
/// [`DecodeError::Malformed`].
fn guarded<T>(
    api_key: ApiKey,
    version: i16,
    part: Part,
    decode: impl FnOnce() -> GeneratedResult<T>,
) -> Result<T, DecodeError> {
    match catch_unwind(AssertUnwindSafe(decode)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(DecodeError::Malformed { api_key, version, part, reason: err.to_string() }),
        Err(_) => Err(DecodeError::Malformed { api_key, version, part, reason: "decoder panicked".to_owned() }),
    }
}

/// What a generated codec returns, its error reduced to its message:
/// `kafka-protocol` reports `anyhow::Error`, which stays out of our API.
type GeneratedResult<T> = Result<T, Box<dyn std::fmt::Display>>;

fn boxed<T, E: std::fmt::Display + 'static>(result: Result<T, E>) -> GeneratedResult<T> {
    result.map_err(|err| Box::new(err) as Box<dyn std::fmt::Display>)
}

/// The API key of a frame, or the error to close the connection with.
fn api_key_of(frame: &[u8]) -> Result<(ApiKey, i16), DecodeError> {
    let (key, version, _) = header::peek_request_ids(frame).ok_or(DecodeError::ShortHeader { len: frame.len() })?;
    let api_key = ApiKey::try_from(key).map_err(|()| DecodeError::UnknownApiKey { api_key: key })?;
    Ok((api_key, version))
}

/// Decodes a request frame (without its size prefix). The body's byte
/// fields (Produce records among them) are zero-copy slices of `frame`.
pub fn decode_request(mut frame: Bytes) -> Result<Request, DecodeError> {
    let (api_key, version) = api_key_of(&frame)?;
    let header_version = header::request_header_version(api_key, version);
    let header =
        guarded(api_key, version, Part::RequestHeader, || boxed(RequestHeader::decode(&mut frame, header_version)))?;
    let range = api_key.valid_versions();
    if version < range.min || version > range.max {
        if api_key == ApiKey::ApiVersions {
            let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
            return Ok(Request { api_key, header, body });
        }
        return Err(DecodeError::UnsupportedVersion { api_key, version, min: range.min, max: range.max });
    }
    let body =
        guarded(api_key, version, Part::RequestBody, || boxed(RequestKind::decode(api_key, &mut frame, version)))?;
    Ok(Request { api_key, header, body })
}

/// Appends a whole response frame (size prefix, header, body) to `out`.
/// The header version follows [`header::response_header_version`], so an
/// ApiVersions response gets header v0 at every version.
pub fn encode_response(
    out: &mut BytesMut,
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<(), EncodeError> {
    let mut response_header = ResponseHeader::default();
    response_header.correlation_id = correlation_id;
    let header_version = header::response_header_version(api_key, version);
    encode_frame(out, api_key, version, |out| {
        response_header
            .encode(out, header_version)
            .map_err(|err| encode_error(api_key, version, Part::ResponseHeader, err))?;
        body.encode(out, version).map_err(|err| encode_error(api_key, version, Part::ResponseBody, err))
    })
}

/// Appends a whole request frame to `out` (the client side, for loadgen).
pub fn encode_request(out: &mut BytesMut, header: &RequestHeader, body: &RequestKind) -> Result<(), EncodeError> {
    let version = header.request_api_version;
    let api_key = ApiKey::try_from(header.request_api_key).map_err(|()| EncodeError {
        api_key: ApiKey::ApiVersions,
        version,
        part: Part::RequestHeader,
        reason: format!("unknown API key {}", header.request_api_key),
    })?;
    let header_version = header::request_header_version(api_key, version);
    encode_frame(out, api_key, version, |out| {
        header.encode(out, header_version).map_err(|err| encode_error(api_key, version, Part::RequestHeader, err))?;
        body.encode(out, version).map_err(|err| encode_error(api_key, version, Part::RequestBody, err))
    })
}

fn encode_error(api_key: ApiKey, version: i16, part: Part, err: impl std::fmt::Display) -> EncodeError {
    EncodeError { api_key, version, part, reason: err.to_string() }
}

/// Writes a size placeholder, the message, then the size. On error `out` is
/// left as it was.
fn encode_frame(
    out: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    write: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_i32(0);
    if let Err(err) = write(out) {
        out.truncate(start);
        return Err(err);
    }
    let size = out.len() - start - 4;
    let Ok(size) = i32::try_from(size) else {
        out.truncate(start);
        return Err(encode_error(api_key, version, Part::ResponseBody, format!("{size} bytes do not fit a frame")));
    };
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Decodes a response frame (without its size prefix) to a request of
/// `api_key` at `version` that we sent: returns the correlation id and body.
pub fn decode_response(mut frame: Bytes, api_key: ApiKey, version: i16) -> Result<(i32, ResponseKind), DecodeError> {
    let range = api_key.valid_versions();
    if version < range.min || version > range.max {
        return Err(DecodeError::UnsupportedVersion { api_key, version, min: range.min, max: range.max });
    }
    if frame.len() < 4 {
        return Err(DecodeError::ShortHeader { len: frame.len() });
    }
    let header_version = header::response_header_version(api_key, version);
    let response_header =
        guarded(api_key, version, Part::ResponseHeader, || boxed(ResponseHeader::decode(&mut frame, header_version)))?;
    let body =
        guarded(api_key, version, Part::ResponseBody, || boxed(ResponseKind::decode(api_key, &mut frame, version)))?;
    Ok((response_header.correlation_id, body))
}
