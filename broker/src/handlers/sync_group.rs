//! SyncGroup (key 14): the leader's assignments are stored on the group's
//! coordinator shard and every member of the generation gets its own; a
//! follower arriving before the leader waits for it. v3+ a static member's
//! stale id is FENCED_INSTANCE_ID; v5+ protocol type and name must match
//! the group's (else INCONSISTENT_GROUP_PROTOCOL).

use std::rc::Rc;

use protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use protocol::ErrorCode;

use super::{coordinator_reply, str_bytes, Reply};
use crate::group::classic::{Step, SyncResult};
use crate::group::coordinator_shard;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: SyncGroupRequest) -> Reply {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let group_instance_id = request.group_instance_id.as_ref().map(|id| id.to_string());
    let generation_id = request.generation_id;
    let protocol_type = request.protocol_type.as_ref().map(|p| p.to_string());
    let protocol_name = request.protocol_name.as_ref().map(|p| p.to_string());
    let assignments: Vec<_> =
        request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let target = coordinator_shard(&group_id, shard.count);
    let placed = shard
        .invoke_on(target, move |owner| async move {
            let step = owner.groups.with_classic(&group_id, false, |group| {
                let mismatch = |asked: &Option<String>, have: &Option<String>| asked.is_some() && asked != have;
                if group.members.contains_key(&member_id)
                    && (mismatch(&protocol_type, &group.protocol_type)
                        || mismatch(&protocol_name, &group.protocol_name))
                {
                    return Step::Now(SyncResult::error(ErrorCode::InconsistentGroupProtocol));
                }
                let instance_id = group_instance_id.as_deref();
                group.sync(&member_id, instance_id, generation_id, assignments, std::time::Instant::now())
            });
            step.unwrap_or_else(|| Step::Now(SyncResult::error(ErrorCode::UnknownMemberId)))
        })
        .await;
    coordinator_reply(
        placed,
        || SyncResult::error(ErrorCode::CoordinatorNotAvailable),
        move |result| ResponseKind::SyncGroup(encode(version, result)),
    )
}

fn encode(version: i16, result: SyncResult) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    response.error_code = result.error;
    if version >= 5 {
        response.protocol_type = result.protocol_type.as_deref().map(str_bytes);
        response.protocol_name = result.protocol_name.as_deref().map(str_bytes);
    }
    response.assignment = result.assignment;
    response
}
