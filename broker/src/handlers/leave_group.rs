//! LeaveGroup (key 13): removes members from a group on its coordinator
//! shard and starts a rebalance for the rest. v0–v2 name one member; v3+
//! batch members, each with its own error code, and may name a static
//! member by its instance id alone (member id ""); a static member's stale
//! id is FENCED_INSTANCE_ID.

use std::rc::Rc;

use protocol::messages::leave_group_response::MemberResponse;
use protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use protocol::ErrorCode;

use crate::group::{coordinator_shard, GroupCoordinator};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string())))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let leaving = members.clone();
    let target = coordinator_shard(&group_id, shard.count);
    let outcome = shard
        .invoke_on(target, move |owner| async move {
            let now = std::time::Instant::now();
            let codes = owner.groups.with_classic(&group_id, false, |group| {
                leaving.iter().map(|(id, instance_id)| group.leave(id, instance_id.as_deref(), now)).collect::<Vec<_>>()
            });
            GroupCoordinator::arm_timer(&owner, &group_id);
            codes.unwrap_or_else(|| vec![Err(ErrorCode::UnknownMemberId); leaving.len()])
        })
        .await
        .unwrap_or_else(|_| vec![Err(ErrorCode::CoordinatorNotAvailable); members.len()]);
    let mut response = LeaveGroupResponse::default();
    if version < 3 {
        if let Some(Err(code)) = outcome.first() {
            response.error_code = code.code();
        }
        return response;
    }
    for ((member_id, instance_id), result) in members.into_iter().zip(outcome) {
        let mut answer = MemberResponse::default();
        answer.member_id = super::str_bytes(&member_id);
        answer.group_instance_id = instance_id.as_deref().map(super::str_bytes);
        answer.error_code = result.err().map_or(0, |code| code.code());
        response.members.push(answer);
    }
    response
}
