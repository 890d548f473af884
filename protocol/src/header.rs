//! Request and response headers.
//!
//! Request header v0: api_key i16, api_version i16, correlation_id i32;
//! v1 adds client_id (nullable string, never compact); v2 adds tagged fields.
//! Response header v0 is the correlation id; v1 adds tagged fields. Which
//! version applies follows from the API's first flexible version, with one
//! exception clients depend on: an ApiVersions response always uses header
//! v0, whatever its version, because the client cannot know yet whether the
//! broker speaks flexible versions.

use kafka_protocol::messages::ApiKey;
pub use kafka_protocol::messages::{RequestHeader, ResponseHeader};

/// Size of the fields every request header starts with.
pub const REQUEST_HEADER_FIXED_BYTES: usize = 8;

/// Header version of a request of `api_key` at `api_version`.
pub fn request_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    api_key.request_header_version(api_version)
}

/// Header version of a response of `api_key` at `api_version`.
pub fn response_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions {
        return 0;
    }
    api_key.response_header_version(api_version)
}

/// The api key, version and correlation id at the front of a request frame,
/// read without decoding the rest: enough to answer with an error even when
/// the rest cannot be decoded. `None` when the frame is shorter than 8 bytes.
pub fn peek_request_ids(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let fixed = frame.get(..REQUEST_HEADER_FIXED_BYTES)?;
    Some((
        i16::from_be_bytes([fixed[0], fixed[1]]),
        i16::from_be_bytes([fixed[2], fixed[3]]),
        i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_responses_always_use_header_v0() {
        // Proves the exception: flexible ApiVersions (v3+) still answer with
        // header v0, while other flexible APIs answer with v1.
        for version in 0..=10 {
            assert_eq!(response_header_version(ApiKey::ApiVersions, version), 0);
        }
        assert_eq!(request_header_version(ApiKey::ApiVersions, 3), 2);
        assert_eq!(request_header_version(ApiKey::ApiVersions, 2), 1);
        assert_eq!(response_header_version(ApiKey::Produce, 9), 1);
        assert_eq!(response_header_version(ApiKey::Produce, 8), 0);
        assert_eq!(request_header_version(ApiKey::Metadata, 9), 2);
    }
}
