//! DescribeGroups (key 15): each classic group is described by its
//! coordinator shard. A group that does not exist, or a consumer-protocol
//! one, is "Dead" with no error up to v5 and GROUP_ID_NOT_FOUND from v6
//! (KIP-1043), as in Kafka.

use std::rc::Rc;

use protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use protocol::ErrorCode;

use super::str_bytes;
use crate::group::{admin, coordinator_shard};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let operations = if request.include_authorized_operations {
        admin::GROUP_OPERATIONS_ALL
    } else {
        admin::OPERATIONS_NOT_REQUESTED
    };
    let lookups = request.groups.into_iter().map(|group_id| async move {
        let id = group_id.0.to_string();
        let target = coordinator_shard(&id, shard.count);
        let found = if id.is_empty() {
            Err(ErrorCode::InvalidGroupId)
        } else {
            let lookup = id.clone();
            shard
                .invoke_on(target, move |owner| async move { admin::describe(&owner, &lookup, version) })
                .await
                .map_err(|_| ErrorCode::CoordinatorNotAvailable)
        };
        encode(version, group_id, found, operations)
    });
    let mut response = DescribeGroupsResponse::default();
    response.groups = futures::future::join_all(lookups).await;
    response
}

fn encode(
    version: i16,
    group_id: GroupId,
    found: Result<Option<admin::DescribedGroup>, ErrorCode>,
    operations: i32,
) -> DescribedGroup {
    let mut answer = DescribedGroup::default();
    answer.authorized_operations = operations;
    match found {
        Err(code) => {
            answer.error_code = code.code();
            answer.group_state = str_bytes(admin::STATE_DEAD);
        }
        Ok(None) => {
            answer.group_state = str_bytes(admin::STATE_DEAD);
            if version >= admin::DESCRIBE_GROUPS_NOT_FOUND_VERSION_MIN {
                answer.error_code = ErrorCode::GroupIdNotFound.code();
                answer.error_message = Some(str_bytes(&format!("Group {} not found.", group_id.0)));
            }
        }
        Ok(Some(group)) => {
            answer.error_code = group.error_code;
            answer.error_message = group.error_message.as_deref().map(str_bytes);
            answer.group_state = str_bytes(&group.state);
            answer.protocol_type = str_bytes(&group.protocol_type);
            answer.protocol_data = str_bytes(&group.protocol_data);
            answer.members = group
                .members
                .into_iter()
                .map(|member| {
                    let mut described = DescribedGroupMember::default();
                    described.member_id = str_bytes(&member.member_id);
                    described.group_instance_id = member.group_instance_id.as_deref().map(str_bytes);
                    described.client_id = str_bytes(&member.client_id);
                    described.client_host = str_bytes(&member.client_host);
                    described.member_metadata = member.metadata;
                    described.member_assignment = member.assignment;
                    described
                })
                .collect();
        }
    }
    answer.group_id = group_id;
    answer
}
