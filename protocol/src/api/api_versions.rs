//! ApiVersions (key 18): the first request of every client, answered from
//! the supported-version table.
//!
//! Kafka's rule for a version the broker does not know (a client newer than
//! the broker): answer with a v0 body carrying UNSUPPORTED_VERSION (35) and
//! the full supported list, ApiVersions included, so the client retries at
//! our maximum. The response header is v0 at every version.
//!
//! v3+ requests carry the client's software name and version; Kafka refuses
//! names that do not match `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?` with
//! INVALID_REQUEST (42), and so do we.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::SupportedApi;
use crate::error::ErrorCode;

/// The response version and body that answer an ApiVersions request of
/// `request_version` (whose body, for a known version, is `request`).
pub fn respond(
    request_version: i16,
    request: &ApiVersionsRequest,
    apis: &[SupportedApi],
) -> (i16, ApiVersionsResponse) {
    let known = apis.iter().any(|row| {
        row.api_key == ApiKey::ApiVersions && (row.min_version..=row.max_version).contains(&request_version)
    });
    let mut response = ApiVersionsResponse::default();
    response.api_keys = apis
        .iter()
        .map(|row| {
            let mut entry = ApiVersion::default();
            entry.api_key = row.api_key as i16;
            entry.min_version = row.min_version;
            entry.max_version = row.max_version;
            entry
        })
        .collect();
    if !known {
        response.error_code = ErrorCode::UnsupportedVersion.code();
        return (0, response);
    }
    if request_version >= 3
        && !(is_valid_software_field(request.client_software_name.as_str())
            && is_valid_software_field(request.client_software_version.as_str()))
    {
        response.error_code = ErrorCode::InvalidRequest.code();
    }
    response.finalized_features_epoch = -1;
    (request_version, response)
}

/// Kafka's check on client_software_name / client_software_version.
fn is_valid_software_field(field: &str) -> bool {
    let bytes = field.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_alphanumeric();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alphanumeric(first)
                && alphanumeric(last)
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SUPPORTED_APIS;
    use kafka_protocol::protocol::StrBytes;

    fn request(name: &str, version: &str) -> ApiVersionsRequest {
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_string(name.to_owned());
        request.client_software_version = StrBytes::from_string(version.to_owned());
        request
    }

    #[test]
    fn unknown_versions_get_a_v0_answer_with_error_35_and_the_list() {
        // Proves the Kafka rule clients rely on to step down to our maximum.
        let (version, response) = respond(99, &ApiVersionsRequest::default(), SUPPORTED_APIS);
        assert_eq!(version, 0);
        assert_eq!(response.error_code, 35);
        assert!(response.api_keys.iter().any(|entry| entry.api_key == 18 && entry.max_version == 4));
    }

    #[test]
    fn known_versions_answer_at_their_version() {
        // Proves v0-v4 answer in kind, and v3+ software names are checked.
        for v in 0..=4 {
            let (version, response) = respond(v, &request("librdkafka", "2.16.0"), SUPPORTED_APIS);
            assert_eq!((version, response.error_code), (v, 0));
            assert_eq!(response.api_keys.len(), SUPPORTED_APIS.len());
        }
        let (_, response) = respond(3, &request("bad name!", "1.0"), SUPPORTED_APIS);
        assert_eq!(response.error_code, 42);
        let (_, response) = respond(3, &request("kafka-python", "-1"), SUPPORTED_APIS);
        assert_eq!(response.error_code, 42);
    }
}
