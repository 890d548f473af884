//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch, which
//! consumers (librdkafka after a leader change or when Fetch reports an
//! epoch) use to detect log truncation. Stele's partitions have had one
//! leader epoch since creation (PartitionMeta's, 0), so the answer is the
//! log end offset for the current epoch and UNDEFINED (-1, -1) for any
//! other, as Kafka answers for an epoch it has no record of. The
//! `current_leader_epoch` fence works as in Fetch and ListOffsets.

use std::rc::Rc;

use futures::future::join_all;
use protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use protocol::ErrorCode;

use crate::partition::check_leader_epoch;
use crate::shard::Shard;

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
const UNDEFINED: (i32, i64) = (-1, -1);

pub async fn handle(
    shard: &Rc<Shard>,
    _version: i16,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = shard.metadata();
    let mut response = OffsetForLeaderEpochResponse::default();
    let mut lookups = Vec::new();
    for (t, topic) in request.topics.into_iter().enumerate() {
        let meta = image.topics.get(topic.topic.as_str());
        let mut answer = OffsetForLeaderTopicResult::default();
        answer.topic = topic.topic.clone();
        for (p, wanted) in topic.partitions.into_iter().enumerate() {
            let mut partition = EpochEndOffset::default();
            partition.partition = wanted.partition;
            (partition.leader_epoch, partition.end_offset) = UNDEFINED;
            match meta.and_then(|m| m.partition(wanted.partition).map(|placed| (m.topic_id, *placed))) {
                Some((topic_id, placed)) => {
                    let key = (topic_id, wanted.partition);
                    let (current, requested) = (wanted.current_leader_epoch, wanted.leader_epoch);
                    lookups.push(async move {
                        let found = shard
                            .invoke_on(shard.owner_of(placed.shard), move |owner| async move {
                                let partition = owner.partition(&key).ok_or(ErrorCode::NotLeaderOrFollower)?;
                                end_offset_for(
                                    partition.leader_epoch,
                                    current,
                                    requested,
                                    partition.log.log_end_offset(),
                                )
                            })
                            .await
                            .unwrap_or(Err(ErrorCode::NotLeaderOrFollower));
                        ((t, p), found)
                    });
                }
                None => partition.error_code = ErrorCode::UnknownTopicOrPartition.code(),
            }
            answer.partitions.push(partition);
        }
        response.topics.push(answer);
    }
    for ((t, p), found) in join_all(lookups).await {
        let partition = &mut response.topics[t].partitions[p];
        match found {
            Ok((epoch, offset)) => (partition.leader_epoch, partition.end_offset) = (epoch, offset),
            Err(code) => partition.error_code = code.code(),
        }
    }
    response
}

/// The (epoch, end offset) answer for a partition whose only epoch is
/// `leader_epoch`; `current` is the client's fence (-1: none).
fn end_offset_for(
    leader_epoch: i32,
    current: i32,
    requested: i32,
    log_end_offset: i64,
) -> Result<(i32, i64), ErrorCode> {
    check_leader_epoch(current, leader_epoch)?;
    if requested == leader_epoch {
        Ok((leader_epoch, log_end_offset))
    } else {
        Ok(UNDEFINED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_epoch_ends_at_the_log_end_and_others_are_undefined() {
        // Proves the answers for the one epoch, an unknown one, and the fence.
        assert_eq!(end_offset_for(0, -1, 0, 42), Ok((0, 42)));
        assert_eq!(end_offset_for(0, 0, 0, 42), Ok((0, 42)));
        assert_eq!(end_offset_for(0, -1, 3, 42), Ok(UNDEFINED));
        assert_eq!(end_offset_for(0, -1, -1, 42), Ok(UNDEFINED));
        assert_eq!(end_offset_for(0, 1, 0, 42), Err(ErrorCode::UnknownLeaderEpoch));
        assert_eq!(end_offset_for(2, 1, 2, 42), Err(ErrorCode::FencedLeaderEpoch));
    }
}
