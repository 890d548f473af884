//! DescribeProducers (key 61, v0, KIP-664): the active producers of each
//! requested partition, from its producer state on the owning shard:
//! producer id, epoch, last sequence, last timestamp, coordinator epoch and
//! the first offset of its ongoing transaction (-1 when none).

use std::rc::Rc;

use futures::future::join_all;
use protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use protocol::ErrorCode;

use crate::producer_state::ProducerSummary;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, _version: i16, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let image = shard.metadata();
    let mut response = DescribeProducersResponse::default();
    let mut lookups = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let meta = image.topics.get(topic.name.as_str());
        let mut answer = TopicResponse::default();
        answer.name = topic.name.clone();
        for (p, &index) in topic.partition_indexes.iter().enumerate() {
            let mut partition = PartitionResponse::default();
            partition.partition_index = index;
            match meta.and_then(|m| m.partition(index).map(|placed| (m.topic_id, *placed))) {
                Some((topic_id, placed)) => {
                    let key = (topic_id, index);
                    lookups.push(async move {
                        let found = shard
                            .invoke_on(shard.owner_of(placed.shard), move |owner| async move {
                                owner.partition(&key).map(|partition| partition.describe_producers())
                            })
                            .await
                            .ok()
                            .flatten();
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
            Some(producers) => partition.active_producers = producers.iter().map(producer_state).collect(),
            None => partition.error_code = ErrorCode::NotLeaderOrFollower.code(),
        }
    }
    response
}

fn producer_state(summary: &ProducerSummary) -> ProducerState {
    let mut state = ProducerState::default();
    state.producer_id = ProducerId(summary.producer_id);
    state.producer_epoch = i32::from(summary.producer_epoch);
    state.last_sequence = summary.last_sequence;
    state.last_timestamp = summary.last_timestamp;
    state.coordinator_epoch = summary.coordinator_epoch;
    state.current_txn_start_offset = summary.current_txn_start_offset;
    state
}
