//! DeleteRecords (key 21): moves partitions' log start offsets up, on the
//! shard owning each. Records below the new start become unreadable, whole
//! segments below it are deleted, and the new start is durable before the
//! answer (the engine saves it; it survives restarts and kill -9).
//!
//! Kafka's rules: offset -1 means the high watermark; an offset above the
//! high watermark (or below -1) is OFFSET_OUT_OF_RANGE; an offset below the
//! current start changes nothing; the answer's low watermark is the log
//! start offset afterwards.

use std::rc::Rc;

use futures::future::join_all;
use protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use protocol::ErrorCode;

use crate::shard::Shard;

/// The offset that means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(shard: &Rc<Shard>, _version: i16, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let image = shard.metadata();
    let mut response = DeleteRecordsResponse::default();
    let mut deletions = Vec::new();
    for (t, topic) in request.topics.into_iter().enumerate() {
        let meta = image.topics.get(topic.name.as_str());
        let mut answer = DeleteRecordsTopicResult::default();
        answer.name = topic.name.clone();
        for (p, wanted) in topic.partitions.into_iter().enumerate() {
            let mut partition = DeleteRecordsPartitionResult::default();
            partition.partition_index = wanted.partition_index;
            partition.low_watermark = -1;
            match meta.and_then(|m| m.partition(wanted.partition_index).map(|placed| (m.topic_id, *placed))) {
                Some((topic_id, placed)) => {
                    let key = (topic_id, wanted.partition_index);
                    let offset = wanted.offset;
                    deletions.push(async move {
                        let done = shard
                            .invoke_on(shard.owner_of(placed.shard), move |owner| async move {
                                let partition = owner.partition(&key).ok_or(ErrorCode::NotLeaderOrFollower)?;
                                let target = target_offset(offset, partition.high_watermark())?;
                                partition.log.delete_records_before(target).await.map_err(|err| {
                                    tracing::warn!(topic = %partition.topic, partition = partition.index, error = %err, "DeleteRecords failed");
                                    match err {
                                        engine::EngineError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
                                        _ => ErrorCode::KafkaStorageError,
                                    }
                                })
                            })
                            .await
                            .unwrap_or(Err(ErrorCode::NotLeaderOrFollower));
                        ((t, p), done)
                    });
                }
                None => partition.error_code = ErrorCode::UnknownTopicOrPartition.code(),
            }
            answer.partitions.push(partition);
        }
        response.topics.push(answer);
    }
    for ((t, p), done) in join_all(deletions).await {
        let partition = &mut response.topics[t].partitions[p];
        match done {
            Ok(low_watermark) => partition.low_watermark = low_watermark,
            Err(code) => partition.error_code = code.code(),
        }
    }
    response
}

/// The offset to delete before, from the request's and the partition's
/// high watermark.
fn target_offset(requested: i64, high_watermark: i64) -> Result<i64, ErrorCode> {
    match requested {
        HIGH_WATERMARK => Ok(high_watermark),
        offset if offset < 0 || offset > high_watermark => Err(ErrorCode::OffsetOutOfRange),
        offset => Ok(offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minus_one_is_the_high_watermark_and_beyond_it_is_out_of_range() {
        // Proves Kafka's bounds on the requested offset.
        assert_eq!(target_offset(-1, 10), Ok(10));
        assert_eq!(target_offset(0, 10), Ok(0));
        assert_eq!(target_offset(10, 10), Ok(10));
        assert_eq!(target_offset(11, 10), Err(ErrorCode::OffsetOutOfRange));
        assert_eq!(target_offset(-2, 10), Err(ErrorCode::OffsetOutOfRange));
    }
}
