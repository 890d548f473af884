//! FindCoordinator (key 10) for consumer groups (key type 0) and
//! transactional ids (key type 1): this node is every group's and every
//! transactional id's coordinator (the owning shard is found per request
//! by `group::coordinator_shard` / `txn::coordinator_shard`, invisible to
//! clients). v4+ batches keys. Share coordinators (key type 2) do not exist
//! yet: INVALID_REQUEST.

use std::rc::Rc;

use protocol::messages::find_coordinator_response::Coordinator;
use protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use protocol::{ErrorCode, StrBytes};

use super::str_bytes;
use crate::shard::Shard;

/// Kafka's key type for consumer groups.
const KEY_TYPE_GROUP: i8 = 0;
/// Kafka's key type for transactional ids.
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators =
            request.coordinator_keys.into_iter().map(|key| coordinator(shard, request.key_type, key)).collect();
        return response;
    }
    let found = coordinator(shard, request.key_type, request.key);
    response.error_code = found.error_code;
    if version >= 1 {
        response.error_message = found.error_message;
    }
    response.node_id = found.node_id;
    response.host = found.host;
    response.port = found.port;
    response
}

fn coordinator(shard: &Rc<Shard>, key_type: i8, key: StrBytes) -> Coordinator {
    let mut answer = Coordinator::default();
    answer.key = key;
    if key_type != KEY_TYPE_GROUP && key_type != KEY_TYPE_TRANSACTION {
        answer.node_id = BrokerId(-1);
        answer.host = str_bytes("");
        answer.port = -1;
        answer.error_code = ErrorCode::InvalidRequest.code();
        answer.error_message = Some(str_bytes(&format!(
            "key type {key_type} is not served: Stele coordinates consumer groups (0) and transactions (1) only"
        )));
        return answer;
    }
    answer.node_id = BrokerId(shard.config.node_id);
    answer.host = str_bytes(&shard.config.advertised_host);
    answer.port = i32::from(shard.config.advertised_port);
    answer
}
