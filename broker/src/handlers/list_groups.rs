//! ListGroups (key 16): every shard lists the groups it coordinates, and
//! the answer gathers them. v4+ filters by state, v5+ by group type (both
//! compared case-insensitively, as Kafka does).

use std::rc::Rc;

use protocol::messages::list_groups_response::ListedGroup;
use protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use protocol::ErrorCode;

use super::str_bytes;
use crate::group::admin;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: ListGroupsRequest) -> ListGroupsResponse {
    let lowercase = |names: &[protocol::StrBytes]| names.iter().map(|name| name.to_lowercase()).collect::<Vec<_>>();
    let states = if version >= 4 { lowercase(&request.states_filter) } else { Vec::new() };
    let types = if version >= 5 { lowercase(&request.types_filter) } else { Vec::new() };
    let mut response = ListGroupsResponse::default();
    let listed = shard.invoke_on_all(move |owner| async move { admin::list(&owner, &states, &types) }).await;
    match listed {
        Ok(per_shard) => {
            for group in per_shard.into_iter().flatten() {
                let mut answer = ListedGroup::default();
                answer.group_id = GroupId(str_bytes(&group.group_id));
                answer.protocol_type = str_bytes(&group.protocol_type);
                answer.group_state = str_bytes(group.state);
                answer.group_type = str_bytes(group.group_type);
                response.groups.push(answer);
            }
        }
        Err(_) => response.error_code = ErrorCode::CoordinatorNotAvailable.code(),
    }
    response
}
