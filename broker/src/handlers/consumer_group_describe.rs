//! ConsumerGroupDescribe (key 69, KIP-848): each consumer-protocol group is
//! described by its coordinator shard: state, epochs, assignor, members
//! with their subscriptions, current and target assignments (v1: member
//! type). An unknown group, or a classic one, is GROUP_ID_NOT_FOUND.

use std::rc::Rc;

use protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, TopicName};
use protocol::ErrorCode;

use super::str_bytes;
use crate::group::consumer::{ConsumerGroupDescription, DescribedTopicPartitions};
use crate::group::{admin, coordinator_shard};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    version: i16,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
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
                let described = owner
                    .groups
                    .consumer_groups()
                    .get(&id)
                    .map(|group| group.describe(&*owner.metadata(), &owner.groups.consumer_config));
                match described {
                    Some(description) => Ok(description),
                    None if owner.groups.exists(&id) => Err(format!("Group {id} is not a consumer group.")),
                    None => Err(format!("Group {id} not found.")),
                }
            })
            .await;
        encode(version, group_id, found.map_err(|_| None), operations)
    });
    let mut response = ConsumerGroupDescribeResponse::default();
    response.groups = futures::future::join_all(lookups).await;
    response
}

type Found = Result<Result<ConsumerGroupDescription, String>, Option<()>>;

fn encode(version: i16, group_id: GroupId, found: Found, operations: i32) -> DescribedGroup {
    let mut answer = DescribedGroup::default();
    answer.group_id = group_id;
    answer.authorized_operations = operations;
    let description = match found {
        Err(_) => {
            answer.error_code = ErrorCode::CoordinatorNotAvailable.code();
            return answer;
        }
        Ok(Err(message)) => {
            answer.error_code = ErrorCode::GroupIdNotFound.code();
            answer.error_message = Some(str_bytes(&message));
            return answer;
        }
        Ok(Ok(description)) => description,
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
            member.instance_id = described.instance_id.as_deref().map(str_bytes);
            member.rack_id = described.rack_id.as_deref().map(str_bytes);
            member.member_epoch = described.member_epoch;
            member.client_id = str_bytes(&described.client_id);
            member.client_host = str_bytes(&described.client_host);
            member.subscribed_topic_names =
                described.subscribed_topic_names.iter().map(|name| TopicName(str_bytes(name))).collect();
            member.subscribed_topic_regex = described.subscribed_topic_regex.as_deref().map(str_bytes);
            member.assignment = assignment(described.assignment);
            member.target_assignment = assignment(described.target_assignment);
            if version >= 1 {
                member.member_type = described.member_type;
            }
            member
        })
        .collect();
    answer
}

fn assignment(topics: Vec<DescribedTopicPartitions>) -> Assignment {
    let mut assignment = Assignment::default();
    assignment.topic_partitions = topics
        .into_iter()
        .map(|described| {
            let mut topic = TopicPartitions::default();
            topic.topic_id = described.topic_id;
            topic.topic_name = TopicName(str_bytes(&described.topic_name));
            topic.partitions = described.partitions;
            topic
        })
        .collect();
    assignment
}
