//! ApiVersions (key 18): the supported-version table (with the share group
//! APIs only when `group.share.enable` is set), with Kafka's answer to a
//! version we do not know (v0 body, UNSUPPORTED_VERSION, our list).

use protocol::api::{advertised_apis, api_versions};
use protocol::messages::{ApiVersionsRequest, ResponseKind};

use super::Reply;

pub fn handle(version: i16, request: &ApiVersionsRequest, share_groups_enabled: bool) -> Reply {
    let apis = advertised_apis(share_groups_enabled);
    let (response_version, response) = api_versions::respond(version, request, apis);
    Reply::AtVersion(response_version, ResponseKind::ApiVersions(response))
}
