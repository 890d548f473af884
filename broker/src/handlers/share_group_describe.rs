//! ShareGroupDescribe (key 77, KIP-932, v1): each share group is described
//! by its coordinator shard: state, epochs, assignor (`simple`), members
//! with their subscriptions and assignments, authorized operations when
//! asked (every group operation: Stele has no ACLs). An unknown group is
//! GROUP_ID_NOT_FOUND ("Group ... not found."), a classic or consumer
//! group too ("Group ... is not a share group."), as in Kafka. Served only
//! with `group.share.enable`.

use std::rc::Rc;

use protocol::messages::share_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use protocol::messages::{GroupId, ShareGroupDescribeRequest, ShareGroupDescribeResponse, TopicName};
use protocol::ErrorCode;

use super::str_bytes;
use crate::group::share::ShareGroupDescription;
use crate::group::{admin, coordinator_shard};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: ShareGroupDescribeRequest) -> ShareGroupDescribeResponse {
    let operations = if request.include_authorized_operations {
        admin::GROUP_OPERATIONS_ALL
    } else {
        admin::OPERATIONS_NOT_REQUESTED
    };
    let lookups = request.group_ids.into_iter().map(|group_id| async move {
        let id = group_id.0.to_string();
        let target = coordinator_shard(&id, shard.count);
        let found = shard
            .invoke_on(target, move |owner| async move {
                let described = owner.groups.share_groups().get(&id).map(|group| group.describe(&*owner.metadata()));
                match described {
                    Some(description) => Ok(description),
                    None if owner.groups.exists(&id) => Err(format!("Group {id} is not a share group.")),
                    None => Err(format!("Group {id} not found.")),
                }
            })
            .await;
        encode(group_id, found.ok(), operations)
    });
    let mut response = ShareGroupDescribeResponse::default();
    response.groups = futures::future::join_all(lookups).await;
    response
}

/// `None`: the coordinator shard is gone (shutdown).
fn encode(group_id: GroupId, found: Option<Result<ShareGroupDescription, String>>, operations: i32) -> DescribedGroup {
    let mut answer = DescribedGroup::default();
    answer.group_id = group_id;
    answer.authorized_operations = operations;
    let description = match found {
        None => {
            answer.error_code = ErrorCode::CoordinatorNotAvailable.code();
            return answer;
        }
        Some(Err(message)) => {
            answer.error_code = ErrorCode::GroupIdNotFound.code();
            answer.error_message = Some(str_bytes(&message));
            return answer;
        }
        Some(Ok(description)) => description,
    };
    answer.group_state = str_bytes(description.group_state);
    answer.group_epoch = description.group_epoch;
    answer.assignment_epoch = description.assignment_epoch;
    answer.assignor_name = str_bytes(description.assignor_name);
    answer.members = description
        .members
        .into_iter()
        .map(|described| {
            let mut member = Member::default();
            member.member_id = str_bytes(&described.member_id);
            member.rack_id = described.rack_id.as_deref().map(str_bytes);
            member.member_epoch = described.member_epoch;
            member.client_id = str_bytes(&described.client_id);
            member.client_host = str_bytes(&described.client_host);
            member.subscribed_topic_names =
                described.subscribed_topic_names.iter().map(|name| TopicName(str_bytes(name))).collect();
            let mut assignment = Assignment::default();
            assignment.topic_partitions = described
                .assignment
                .into_iter()
                .map(|topic| {
                    let mut partitions = TopicPartitions::default();
                    partitions.topic_id = topic.topic_id;
                    partitions.topic_name = TopicName(str_bytes(&topic.topic_name));
                    partitions.partitions = topic.partitions;
                    partitions
                })
                .collect();
            member.assignment = assignment;
            member
        })
        .collect();
    answer
}
