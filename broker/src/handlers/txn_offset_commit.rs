//! TxnOffsetCommit (key 28, KIP-98; v3 carries the consumer's group
//! metadata, KIP-447): forwarded to the group's coordinator shard, which
//! validates it (`group::txn_offsets`), writes the offsets to its group log
//! as pending transactional offsets with fdatasync, and only then answers,
//! one code per partition. The offsets become committed when the
//! producer's transaction commits (`txn_offsets::complete_for_producer`).
//!
//! v0-3 are served: v4 (KIP-890 part 1) has the broker verify with the
//! transaction coordinator that the group was added to the transaction
//! (TRANSACTION_ABORTABLE otherwise), and v5 (transactions v2) makes the
//! request add the group itself; neither is implemented.

use std::rc::Rc;

use protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use protocol::messages::{ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use protocol::ErrorCode;

use super::Reply;
use crate::group::classic::Step;
use crate::group::coordinator_shard;
use crate::group::offsets::CommitPartition;
use crate::group::txn_offsets::{self, TxnCommitRequest};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: TxnOffsetCommitRequest) -> Reply {
    let mut partitions = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            partitions.push(CommitPartition {
                topic: topic.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 2 { p.committed_leader_epoch } else { -1 },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    let count = partitions.len();
    // Below v3 the request has no member: the codec leaves these at their
    // defaults (generation -1, member id "", no instance id).
    let commit = TxnCommitRequest {
        group_id: request.group_id.0.to_string(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        generation_id: if version >= 3 { request.generation_id } else { -1 },
        member_id: if version >= 3 { request.member_id.to_string() } else { String::new() },
        group_instance_id: if version >= 3 {
            request.group_instance_id.as_ref().map(|id| id.to_string())
        } else {
            None
        },
        partitions,
    };
    let target = coordinator_shard(&commit.group_id, shard.count);
    let placed = shard.invoke_on(target, move |owner| async move { txn_offsets::commit(&owner, commit).await }).await;
    let unavailable = move || vec![ErrorCode::CoordinatorNotAvailable.code(); count];
    match placed {
        Ok(Step::Now(codes)) => Reply::Now(ResponseKind::TxnOffsetCommit(encode(request, codes))),
        // Placed: the answer waits for its fdatasync while the connection's
        // next requests are read.
        Ok(Step::Wait(answer)) => Reply::Later(Box::pin(async move {
            let codes = answer.await.unwrap_or_else(|_| unavailable());
            ResponseKind::TxnOffsetCommit(encode(request, codes))
        })),
        Err(_) => Reply::Now(ResponseKind::TxnOffsetCommit(encode(request, unavailable()))),
    }
}

/// The response: one code per partition, in the request's order.
fn encode(request: TxnOffsetCommitRequest, codes: Vec<i16>) -> TxnOffsetCommitResponse {
    let mut codes = codes.into_iter();
    let mut response = TxnOffsetCommitResponse::default();
    for topic in request.topics {
        let mut answer = TxnOffsetCommitResponseTopic::default();
        answer.name = topic.name;
        for p in topic.partitions {
            let mut partition = TxnOffsetCommitResponsePartition::default();
            partition.partition_index = p.partition_index;
            partition.error_code = codes.next().expect("one code per partition");
            answer.partitions.push(partition);
        }
        response.topics.push(answer);
    }
    response
}
