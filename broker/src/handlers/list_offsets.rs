//! ListOffsets (key 2): earliest (-2, and -4 "earliest local": Stele has no
//! tiered storage), latest (-1, and -5 "latest tiered"), max timestamp (-3)
//! and the first offset at or after a timestamp, each answered by the shard
//! owning the partition. With isolation_level 1 (read_committed, v2+)
//! "latest" is the last stable offset and later records do not count.

use std::rc::Rc;

use futures::future::join_all;
use protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use protocol::ErrorCode;

use crate::partition::{check_leader_epoch, IsolationLevel};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let image = shard.metadata();
    // v2+: read_committed answers "latest" with the last stable offset.
    let isolation = IsolationLevel::from_wire(request.isolation_level);
    let mut response = ListOffsetsResponse::default();
    let mut lookups = Vec::new();
    for (t, topic) in request.topics.into_iter().enumerate() {
        let meta = image.topics.get(topic.name.as_str());
        let mut answer = ListOffsetsTopicResponse::default();
        answer.name = topic.name.clone();
        for (p, wanted) in topic.partitions.into_iter().enumerate() {
            let mut partition = ListOffsetsPartitionResponse::default();
            partition.partition_index = wanted.partition_index;
            partition.timestamp = -1;
            partition.offset = -1;
            partition.leader_epoch = -1;
            let placed =
                meta.and_then(|m| m.partitions.iter().find(|placed| placed.partition == wanted.partition_index));
            match (meta, placed) {
                (Some(meta), Some(placed)) => {
                    let key = (meta.topic_id, wanted.partition_index);
                    let timestamp = match wanted.timestamp {
                        -4 => -2,
                        -5 => -1,
                        other => other,
                    };
                    let current_epoch = wanted.current_leader_epoch;
                    lookups.push(async move {
                        let found = shard
                            .invoke_on(shard.owner_of(placed.shard), move |owner| async move {
                                let Some(partition) = owner.partition(&key) else {
                                    return Err(ErrorCode::NotLeaderOrFollower);
                                };
                                check_leader_epoch(current_epoch, partition.leader_epoch)?;
                                partition
                                    .offset_for(timestamp, isolation)
                                    .await
                                    .map(|(offset, timestamp)| (offset, timestamp, partition.leader_epoch))
                                    .map_err(|err| {
                                        tracing::warn!(error = %err, "ListOffsets failed");
                                        ErrorCode::KafkaStorageError
                                    })
                            })
                            .await
                            .unwrap_or(Err(ErrorCode::NotLeaderOrFollower));
                        ((t, p), found)
                    });
                }
                _ => partition.error_code = ErrorCode::UnknownTopicOrPartition.code(),
            }
            answer.partitions.push(partition);
        }
        response.topics.push(answer);
    }
    for ((t, p), found) in join_all(lookups).await {
        let partition = &mut response.topics[t].partitions[p];
        match found {
            Ok((offset, timestamp, leader_epoch)) => {
                partition.offset = offset;
                partition.timestamp = timestamp;
                // Not ignorable before v4: the codec refuses a set value there.
                if version >= 4 {
                    partition.leader_epoch = leader_epoch;
                }
            }
            Err(code) => partition.error_code = code.code(),
        }
    }
    response
}
