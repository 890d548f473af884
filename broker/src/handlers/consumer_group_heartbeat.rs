//! ConsumerGroupHeartbeat (key 68, KIP-848): a consumer-protocol member
//! joins (epoch 0), heartbeats, reconciles its assignment or leaves (-1,
//! -2), on the group's coordinator shard; the state machine is
//! `group::consumer`. v1 adds the subscribed regular expression and
//! client-generated member ids.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use protocol::ErrorCode;

use super::{str_bytes, Client};
use crate::group::consumer::HeartbeatRequest;
use crate::group::coordinator_shard;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    version: i16,
    client: Client,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let owned = request.topic_partitions.map(|topics| {
        let mut owned: BTreeMap<uuid::Uuid, BTreeSet<i32>> = BTreeMap::new();
        for topic in topics {
            owned.entry(topic.topic_id).or_default().extend(topic.partitions);
        }
        owned
    });
    let heartbeat = HeartbeatRequest {
        api_version: version,
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|id| id.to_string()),
        rack_id: request.rack_id.map(|id| id.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|name| name.0.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|regex| regex.to_string()),
        server_assignor: request.server_assignor.map(|name| name.to_string()),
        owned_partitions: owned,
        client_id: client.id,
        client_host: client.host,
    };
    let target = coordinator_shard(&group_id, shard.count);
    let outcome = shard
        .invoke_on(target, move |owner| async move {
            owner.groups.consumer_heartbeat(&owner.metadata(), heartbeat, &group_id)
        })
        .await;
    let mut response = ConsumerGroupHeartbeatResponse::default();
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
