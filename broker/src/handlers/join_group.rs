//! JoinGroup (key 11), classic protocol: forwarded to the group's
//! coordinator shard, where the member is placed in the join phase before
//! the next request of this connection is read; the answer comes when the
//! join phase ends (every known member rejoined, or the rebalance timeout).
//! v4+: a dynamic member without an id gets one with MEMBER_ID_REQUIRED
//! first; a static member (v5+ `group.instance.id`) joins at once, taking
//! over its old member id if it had one. The member's client id and host
//! come from the request header and the connection.

use std::rc::Rc;

use protocol::messages::join_group_response::JoinGroupResponseMember;
use protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use protocol::ErrorCode;

use super::{str_bytes, Client, Reply};
use crate::group::classic::{JoinLimits, JoinParams, JoinResult, Step};
use crate::group::{coordinator_shard, GroupCoordinator};
use crate::shard::Shard;
use protocol::messages::ResponseKind;

pub async fn handle(shard: &Rc<Shard>, version: i16, client: Client, request: JoinGroupRequest) -> Reply {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let refuse =
        |code: ErrorCode| Reply::Now(ResponseKind::JoinGroup(encode(version, JoinResult::error(code, &member_id))));
    if group_id.is_empty() || group_id.len() > crate::group::NAME_BYTES_MAX {
        return refuse(ErrorCode::InvalidGroupId);
    }
    let groups = &shard.config.groups;
    if !(groups.session_timeout_ms_min..=groups.session_timeout_ms_max).contains(&request.session_timeout_ms) {
        return refuse(ErrorCode::InvalidSessionTimeout);
    }
    let group_instance_id = request.group_instance_id.as_ref().map(|id| id.to_string());
    // Kafka's member ids: `<instance id>-<uuid>` for static members,
    // `<client id>-<uuid>` for others.
    let id_prefix = match (&group_instance_id, client.id.as_str()) {
        (Some(instance_id), _) => instance_id.clone(),
        (None, "") => "member".to_owned(),
        (None, client_id) => client_id.to_owned(),
    };
    let params = JoinParams {
        member_id: member_id.clone(),
        group_instance_id,
        client_id: client.id,
        client_host: client.host,
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 { request.rebalance_timeout_ms } else { request.session_timeout_ms },
        protocol_type: request.protocol_type.to_string(),
        protocols: request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
        limits: JoinLimits::of(groups),
    };
    let target = coordinator_shard(&group_id, shard.count);
    let placed = shard
        .invoke_on(target, move |owner| async move {
            let new_id = || format!("{id_prefix}-{}", uuid::Uuid::new_v4());
            if let Err(code) = owner.groups.claim_for_classic(&group_id) {
                return Step::Now(JoinResult::error(code, &member_id));
            }
            let step = owner.groups.with_classic(&group_id, params.member_id.is_empty(), |group| {
                group.join(params, std::time::Instant::now(), new_id)
            });
            GroupCoordinator::arm_timer(&owner, &group_id);
            step.unwrap_or_else(|| Step::Now(JoinResult::error(ErrorCode::UnknownMemberId, &member_id)))
        })
        .await;
    match placed {
        Ok(Step::Now(result)) => Reply::Now(ResponseKind::JoinGroup(encode(version, result))),
        Ok(Step::Wait(receiver)) => Reply::Later(Box::pin(async move {
            // A dropped sender means the coordinator went away (shutdown).
            let result = receiver.await.unwrap_or_else(|_| JoinResult::error(ErrorCode::CoordinatorNotAvailable, ""));
            ResponseKind::JoinGroup(encode(version, result))
        })),
        Err(_) => Reply::Now(ResponseKind::JoinGroup(encode(
            version,
            JoinResult::error(ErrorCode::CoordinatorNotAvailable, &request.member_id),
        ))),
    }
}

fn encode(version: i16, result: JoinResult) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = result.error;
    response.generation_id = result.generation_id;
    response.protocol_type = result.protocol_type.as_deref().map(str_bytes);
    // Nullable only from v7; older clients get "".
    response.protocol_name = match result.protocol_name {
        Some(name) => Some(str_bytes(&name)),
        None if version >= 7 => None,
        None => Some(str_bytes("")),
    };
    response.leader = str_bytes(&result.leader);
    response.member_id = str_bytes(&result.member_id);
    response.members = result
        .members
        .into_iter()
        .map(|(member_id, instance_id, metadata)| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = str_bytes(&member_id);
            if version >= 5 {
                member.group_instance_id = instance_id.as_deref().map(str_bytes);
            }
            member.metadata = metadata;
            member
        })
        .collect();
    response
}
