//! ShareGroupHeartbeat (key 76, KIP-932, v1): a share consumer joins
//! (epoch 0, with the member id it generated), heartbeats or leaves (-1)
//! on the group's coordinator shard; the state machine is `group::share`.
//! Served only with `group.share.enable`.

use std::rc::Rc;

use protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use protocol::messages::{ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse};
use protocol::ErrorCode;

use super::{str_bytes, Client};
use crate::group::coordinator_shard;
use crate::group::share::ShareHeartbeatRequest;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    client: Client,
    request: ShareGroupHeartbeatRequest,
) -> ShareGroupHeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let heartbeat = ShareHeartbeatRequest {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        rack_id: request.rack_id.map(|id| id.to_string()),
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|name| name.0.to_string()).collect()),
        client_id: client.id,
        client_host: client.host,
    };
    let target = coordinator_shard(&group_id, shard.count);
    let outcome = shard
        .invoke_on(
            target,
            move |owner| async move { owner.groups.share_heartbeat(&owner.metadata(), heartbeat, &group_id) },
        )
        .await;
    let mut response = ShareGroupHeartbeatResponse::default();
    match outcome {
        Ok(Ok(answer)) => {
            response.member_id = Some(str_bytes(&answer.member_id));
            response.member_epoch = answer.member_epoch;
            response.heartbeat_interval_ms = answer.heartbeat_interval_ms;
            response.assignment = answer.assignment.map(|assigned| {
                let mut assignment = Assignment::default();
                assignment.topic_partitions = assigned
                    .into_iter()
                    .map(|(topic_id, partitions)| {
                        let mut topic = TopicPartitions::default();
                        topic.topic_id = topic_id;
                        topic.partitions = partitions.into_iter().collect();
                        topic
                    })
                    .collect();
                assignment
            });
        }
        Ok(Err(refused)) => {
            response.error_code = refused.code.code();
            response.error_message = Some(str_bytes(&refused.message));
        }
        Err(_) => response.error_code = ErrorCode::CoordinatorNotAvailable.code(),
    }
    response
}
