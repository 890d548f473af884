//! WriteTxnMarkers (key 27, v1): the transaction coordinator's request to
//! end a transaction on data partitions. Each marker's partitions go to
//! their owner shards (fan out), where `Partition::write_txn_marker` checks
//! and appends the COMMIT/ABORT control batch; a partition is answered once
//! its marker (and an ABORT's aborted-index entry) is durable (gather).
//!
//! Markers for one partition are written in request order: each owner
//! handles its share of the request one marker at a time and only then
//! waits for durability. Kafka's errors: UNKNOWN_TOPIC_OR_PARTITION for a
//! partition not here, INVALID_PRODUCER_EPOCH for a marker older than the
//! producer's epoch, TRANSACTION_COORDINATOR_FENCED for an older
//! coordinator epoch, KAFKA_STORAGE_ERROR when the log fails.
//!
//! The offsets topic is not a data partition here: its transactional offset
//! commits live in the group coordinators. A marker for `__consumer_offsets`
//! partition N completes the producer's pending offsets in every group of
//! coordinator shard N (`group::txn_offsets::complete_for_producer`), as a
//! marker in Kafka's offsets partition does.

use std::rc::Rc;

use futures::future::join_all;
use protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use protocol::ErrorCode;

use crate::shard::{PartitionKey, Shard};

/// Kafka's internal topic of group offsets.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// One partition's marker, addressed to its owner; `slot` is (marker,
/// topic, partition) in the response.
struct Work {
    slot: (usize, usize, usize),
    key: PartitionKey,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
}

pub async fn handle(shard: &Rc<Shard>, _version: i16, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let image = shard.metadata();
    let mut response = WriteTxnMarkersResponse::default();
    let mut per_shard: Vec<Vec<Work>> = (0..shard.count).map(|_| Vec::new()).collect();
    // (slot, group coordinator shard, producer id, epoch, commit)
    let mut groups = Vec::new();
    for (m, marker) in request.markers.iter().enumerate() {
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = marker.producer_id;
        for (t, topic) in marker.topics.iter().enumerate() {
            let mut topic_result = WritableTxnMarkerTopicResult::default();
            topic_result.name = topic.name.clone();
            let meta = image.topics.get(topic.name.as_str());
            for (p, &index) in topic.partition_indexes.iter().enumerate() {
                let mut partition = WritableTxnMarkerPartitionResult::default();
                partition.partition_index = index;
                let placed = meta.and_then(|m| m.partition(index).map(|placed| (m.topic_id, *placed)));
                match placed {
                    _ if topic.name.as_str() == CONSUMER_OFFSETS_TOPIC => {
                        if index < 0 || index as usize >= shard.count {
                            partition.error_code = ErrorCode::UnknownTopicOrPartition.code();
                        } else {
                            groups.push((
                                (m, t, p),
                                index as usize,
                                marker.producer_id.0,
                                marker.producer_epoch,
                                marker.transaction_result,
                            ));
                        }
                    }
                    Some((topic_id, placed)) => per_shard[shard.owner_of(placed.shard)].push(Work {
                        slot: (m, t, p),
                        key: (topic_id, index),
                        producer_id: marker.producer_id.0,
                        producer_epoch: marker.producer_epoch,
                        commit: marker.transaction_result,
                        coordinator_epoch: marker.coordinator_epoch,
                    }),
                    None => partition.error_code = ErrorCode::UnknownTopicOrPartition.code(),
                }
                topic_result.partitions.push(partition);
            }
            result.topics.push(topic_result);
        }
        response.markers.push(result);
    }
    let calls = per_shard.into_iter().enumerate().filter(|(_, work)| !work.is_empty()).map(|(owner, work)| {
        let slots: Vec<_> = work.iter().map(|item| item.slot).collect();
        async move {
            let answers = shard.invoke_on(owner, move |owner| async move { write_on_owner(&owner, work).await }).await;
            // A shard that stopped answers nothing: its partitions are not here.
            answers.unwrap_or_else(|_| {
                slots.into_iter().map(|slot| (slot, Some(ErrorCode::NotLeaderOrFollower))).collect()
            })
        }
    });
    let group_calls = groups.into_iter().map(|(slot, target, producer_id, producer_epoch, commit)| async move {
        let completed = shard
            .invoke_on(target, move |owner| async move {
                crate::group::txn_offsets::complete_for_producer(&owner, producer_id, producer_epoch, commit).await
            })
            .await
            .unwrap_or(Err(ErrorCode::NotCoordinator));
        (slot, completed.err())
    });
    let (data, offsets) = futures::future::join(join_all(calls), join_all(group_calls)).await;
    for ((m, t, p), error) in data.into_iter().flatten().chain(offsets) {
        response.markers[m].topics[t].partitions[p].error_code = error.map_or(0, |error| error.code());
    }
    response
}

/// Runs on the owning shard: writes each marker in request order, then
/// waits until all of them are durable.
/// Each slot's error, `None` for success.
async fn write_on_owner(shard: &Rc<Shard>, work: Vec<Work>) -> Vec<((usize, usize, usize), Option<ErrorCode>)> {
    let writes = work.into_iter().map(|item| async move {
        let Some(partition) = shard.partition(&item.key) else {
            return (item.slot, Some(ErrorCode::NotLeaderOrFollower));
        };
        let written = partition
            .write_txn_marker_durably(item.producer_id, item.producer_epoch, item.commit, item.coordinator_epoch)
            .await;
        (item.slot, written.err())
    });
    join_all(writes).await
}
