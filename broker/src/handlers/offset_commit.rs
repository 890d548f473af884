//! OffsetCommit (key 8): forwarded to the group's coordinator shard, which
//! checks the member and generation (or accepts a simple commit, generation
//! -1 and no member, to a group without members; v7+ a static member's
//! stale id is FENCED_INSTANCE_ID), writes the offsets to its offsets log
//! with fdatasync, and only then answers.

use std::rc::Rc;

use protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind};
use protocol::ErrorCode;

use super::Reply;
use crate::group::classic::Step;
use crate::group::coordinator_shard;
use crate::group::offsets::{self, CommitPartition};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: OffsetCommitRequest) -> Reply {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let group_instance_id = request.group_instance_id.as_ref().map(|id| id.to_string());
    // v0-v1 had no generation for simple commits; v2+ always carry it.
    let generation_id = request.generation_id_or_member_epoch;
    let mut partitions = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            partitions.push(CommitPartition {
                topic: topic.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    let count = partitions.len();
    let target = coordinator_shard(&group_id, shard.count);
    let placed = shard
        .invoke_on(target, move |owner| async move {
            let instance_id = group_instance_id.as_deref();
            offsets::commit(&owner, &group_id, &member_id, instance_id, generation_id, version, partitions).await
        })
        .await;
    let unavailable = move || vec![ErrorCode::CoordinatorNotAvailable.code(); count];
    match placed {
        Ok(Step::Now(codes)) => Reply::Now(ResponseKind::OffsetCommit(encode(request, codes))),
        // The commit is placed: the answer waits for its fdatasync while
        // the connection's next requests are read (their commits share it).
        Ok(Step::Wait(answer)) => Reply::Later(Box::pin(async move {
            let codes = answer.await.unwrap_or_else(|_| unavailable());
            ResponseKind::OffsetCommit(encode(request, codes))
        })),
        Err(_) => Reply::Now(ResponseKind::OffsetCommit(encode(request, unavailable()))),
    }
}

/// The response: one code per partition, in the request's order.
fn encode(request: OffsetCommitRequest, codes: Vec<i16>) -> OffsetCommitResponse {
    let mut codes = codes.into_iter();
    let mut response = OffsetCommitResponse::default();
    for topic in request.topics {
        let mut answer = OffsetCommitResponseTopic::default();
        answer.name = topic.name;
        for p in topic.partitions {
            let mut partition = OffsetCommitResponsePartition::default();
            partition.partition_index = p.partition_index;
            partition.error_code = codes.next().expect("one code per partition");
            answer.partitions.push(partition);
        }
        response.topics.push(answer);
    }
    response
}
