//! Heartbeat (key 12): keeps a member's session alive on the group's
//! coordinator shard; REBALANCE_IN_PROGRESS tells it to rejoin,
//! ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID that it is out of the group, and
//! (v3+) FENCED_INSTANCE_ID that another process took its static
//! membership over.

use std::rc::Rc;

use protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use protocol::ErrorCode;

use crate::group::coordinator_shard;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, _version: i16, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let group_instance_id = request.group_instance_id.as_ref().map(|id| id.to_string());
    let generation_id = request.generation_id;
    let target = coordinator_shard(&group_id, shard.count);
    let outcome = shard
        .invoke_on(target, move |owner| async move {
            owner
                .groups
                .with_classic(&group_id, false, |group| {
                    group.heartbeat(&member_id, group_instance_id.as_deref(), generation_id, std::time::Instant::now())
                })
                .unwrap_or(Err(ErrorCode::UnknownMemberId))
        })
        .await
        .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable));
    let mut response = HeartbeatResponse::default();
    if let Err(code) = outcome {
        response.error_code = code.code();
    }
    response
}
