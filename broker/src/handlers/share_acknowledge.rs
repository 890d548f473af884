//! ShareAcknowledge (key 79, KIP-932, v1): a share member acknowledges
//! records it acquired (Accept, Release, Reject; Gap for offsets that are
//! no records), in its share session: the epoch must be the session's next
//! (epoch 0 opens nothing here: INVALID_SHARE_SESSION_EPOCH), -1 closes
//! the session after the acknowledgements are applied and releases what
//! the member still holds. Each partition is applied on its owner shard,
//! all or nothing, durable before the answer; its refusal is that
//! partition's error (INVALID_RECORD_STATE, INVALID_REQUEST). Served only
//! with `group.share.enable`.

use std::collections::BTreeMap;
use std::rc::Rc;

use protocol::messages::share_acknowledge_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionData, ShareAcknowledgeTopicResponse,
};
use protocol::messages::{BrokerId, ShareAcknowledgeRequest, ShareAcknowledgeResponse};
use protocol::ErrorCode;
use uuid::Uuid;

use super::share_fetch::{
    ack_batches, check_ids, check_member, release_member_everywhere, run_on_owners, share_settings, Work,
};
use super::share_session::FINAL_EPOCH;
use super::str_bytes;
use crate::group::coordinator_shard;
use crate::group::share_config;
use crate::shard::{PartitionKey, Shard};

pub async fn handle(shard: &Rc<Shard>, request: ShareAcknowledgeRequest) -> ShareAcknowledgeResponse {
    let group_id = request.group_id.as_ref().map(|id| id.0.to_string()).unwrap_or_default();
    let member_id = request.member_id.as_ref().map(|id| id.to_string()).unwrap_or_default();
    if let Err(error) = check_ids(&group_id, &member_id) {
        return refused(error);
    }
    let epoch = request.share_session_epoch;
    let step = {
        let (group_id, member_id) = (group_id.clone(), member_id.clone());
        shard
            .invoke_on(coordinator_shard(&group_id, shard.count), move |owner| async move {
                if epoch != FINAL_EPOCH {
                    check_member(&owner, &group_id, &member_id)?;
                }
                let closing = owner.share_sessions.borrow_mut().acknowledge(&group_id, &member_id, epoch)?;
                Ok::<_, ErrorCode>((closing, share_config::effective_share_config(&owner, &group_id)))
            })
            .await
    };
    let (closing, group_settings) = match step {
        Ok(Ok(step)) => step,
        Ok(Err(error)) => return refused(error),
        Err(_) => return refused(ErrorCode::CoordinatorNotAvailable),
    };
    let mut works: BTreeMap<PartitionKey, Work> = BTreeMap::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let key = (topic.topic_id, partition.partition_index);
            let batches = partition
                .acknowledgement_batches
                .iter()
                .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()));
            let work = works.entry(key).or_insert_with(|| Work { key, acks: Vec::new(), acquire: false });
            work.acks.extend(ack_batches(batches));
        }
    }
    let works: Vec<Work> = works.into_values().collect();
    let settings = share_settings(&group_settings);
    let outcomes = run_on_owners(shard, &group_id, &member_id, &works, settings, 1, 0).await;
    if closing {
        release_member_everywhere(shard, &group_id, &member_id).await;
    }
    let image = shard.metadata();
    let mut response = ShareAcknowledgeResponse::default();
    let mut topics: BTreeMap<Uuid, Vec<PartitionData>> = BTreeMap::new();
    let mut leader_moved = false;
    for outcome in outcomes {
        let mut partition = PartitionData::default();
        partition.partition_index = outcome.key.1;
        let mut leader = LeaderIdAndEpoch::default();
        match image.topic_by_id(&outcome.key.0).and_then(|meta| meta.partition(outcome.key.1)) {
            Some(placed) => {
                leader.leader_id = shard.config.node_id;
                leader.leader_epoch = placed.leader_epoch;
            }
            None => {
                leader.leader_id = -1;
                leader.leader_epoch = -1;
            }
        }
        partition.current_leader = leader;
        let error = outcome.ack_error.or_else(|| outcome.fetched.error.map(|e| (e, format!("{e:?}"))));
        if let Some((error, message)) = error {
            partition.error_code = error.code();
            partition.error_message = Some(str_bytes(&message));
            leader_moved |= error == ErrorCode::NotLeaderOrFollower;
        }
        topics.entry(outcome.key.0).or_default().push(partition);
    }
    for (topic_id, mut partitions) in topics {
        partitions.sort_by_key(|p| p.partition_index);
        let mut topic = ShareAcknowledgeTopicResponse::default();
        topic.topic_id = topic_id;
        topic.partitions = partitions;
        response.responses.push(topic);
    }
    if leader_moved {
        let mut node = NodeEndpoint::default();
        node.node_id = BrokerId(shard.config.node_id);
        node.host = str_bytes(&shard.config.advertised_host);
        node.port = i32::from(shard.config.advertised_port);
        response.node_endpoints.push(node);
    }
    response
}

fn refused(error: ErrorCode) -> ShareAcknowledgeResponse {
    let mut response = ShareAcknowledgeResponse::default();
    response.error_code = error.code();
    response.error_message = Some(str_bytes(&format!("{error:?}")));
    response
}
