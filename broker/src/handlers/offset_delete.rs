//! OffsetDelete (key 47): deletes committed offsets of a group on its
//! coordinator shard (see `group::admin::delete_offsets` for Kafka's rules)
//! and answers once the deletion is durable.

use std::rc::Rc;

use protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind, TopicName};
use protocol::ErrorCode;

use super::{str_bytes, Reply};
use crate::group::admin::{self, DeletedOffsets};
use crate::group::classic::Step;
use crate::group::coordinator_shard;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, _version: i16, request: OffsetDeleteRequest) -> Reply {
    let group_id = request.group_id.0.to_string();
    if group_id.is_empty() {
        return Reply::Now(ResponseKind::OffsetDelete(encode(Err(ErrorCode::InvalidGroupId.code()))));
    }
    let topics: Vec<(String, Vec<i32>)> = request
        .topics
        .into_iter()
        .map(|topic| (topic.name.0.to_string(), topic.partitions.iter().map(|p| p.partition_index).collect()))
        .collect();
    let target = coordinator_shard(&group_id, shard.count);
    let placed = shard
        .invoke_on(target, move |owner| async move { admin::delete_offsets(&owner, &group_id, topics).await })
        .await;
    let unavailable = Err(ErrorCode::CoordinatorNotAvailable.code());
    match placed {
        Ok(Step::Now(outcome)) => Reply::Now(ResponseKind::OffsetDelete(encode(outcome))),
        Ok(Step::Wait(answer)) => {
            Reply::Later(Box::pin(
                async move { ResponseKind::OffsetDelete(encode(answer.await.unwrap_or(unavailable))) },
            ))
        }
        Err(_) => Reply::Now(ResponseKind::OffsetDelete(encode(unavailable))),
    }
}

fn encode(outcome: Result<DeletedOffsets, i16>) -> OffsetDeleteResponse {
    let mut response = OffsetDeleteResponse::default();
    match outcome {
        Err(code) => response.error_code = code,
        Ok(topics) => {
            for (name, partitions) in topics {
                let mut topic = OffsetDeleteResponseTopic::default();
                topic.name = TopicName(str_bytes(&name));
                for (partition_index, error_code) in partitions {
                    let mut partition = OffsetDeleteResponsePartition::default();
                    partition.partition_index = partition_index;
                    partition.error_code = error_code;
                    topic.partitions.push(partition);
                }
                response.topics.push(topic);
            }
        }
    }
    response
}
