//! ApiVersions (key 18): the supported-version table, with Kafka's answer
//! to a version we do not know (v0 body, UNSUPPORTED_VERSION, our list).

use protocol::api::{api_versions, SUPPORTED_APIS};
use protocol::messages::{ApiVersionsRequest, ResponseKind};

use super::Reply;

pub fn handle(version: i16, request: &ApiVersionsRequest) -> Reply {
    let (response_version, response) = api_versions::respond(version, request, SUPPORTED_APIS);
    Reply::AtVersion(response_version, ResponseKind::ApiVersions(response))
}
