//! DeleteGroups (key 42): each group is deleted by its coordinator shard,
//! with its committed offsets, once it has no members (NON_EMPTY_GROUP
//! otherwise, GROUP_ID_NOT_FOUND for an unknown group). The answer waits
//! until every deletion is durable.

use std::rc::Rc;

use protocol::messages::delete_groups_response::DeletableGroupResult;
use protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};
use protocol::ErrorCode;

use super::Reply;
use crate::group::classic::Step;
use crate::group::{admin, coordinator_shard};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, _version: i16, request: DeleteGroupsRequest) -> Reply {
    let placements = request.groups_names.iter().map(|group_id| {
        let id = group_id.0.to_string();
        async move {
            if id.is_empty() {
                return Step::Now(ErrorCode::InvalidGroupId.code());
            }
            let target = coordinator_shard(&id, shard.count);
            shard
                .invoke_on(target, move |owner| async move { admin::delete_group(&owner, &id).await })
                .await
                .unwrap_or(Step::Now(ErrorCode::CoordinatorNotAvailable.code()))
        }
    });
    let placed = futures::future::join_all(placements).await;
    let groups = request.groups_names;
    Reply::Later(Box::pin(async move {
        let mut response = DeleteGroupsResponse::default();
        for (group_id, step) in groups.into_iter().zip(placed) {
            let mut result = DeletableGroupResult::default();
            result.group_id = group_id;
            result.error_code = match step {
                Step::Now(code) => code,
                Step::Wait(answer) => answer.await.unwrap_or(ErrorCode::CoordinatorNotAvailable.code()),
            };
            response.results.push(result);
        }
        ResponseKind::DeleteGroups(response)
    }))
}
