//! Metadata (key 3): brokers (this node), the controller (this node),
//! topics with ids, partitions with leader, epoch, replicas and ISR.
//! Unknown topics are created when both the request (v4+) and the broker
//! (`auto.create.topics.enable`) allow it, as Kafka does.

use std::rc::Rc;
use std::sync::Arc;

use protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use protocol::ErrorCode;
use uuid::Uuid;

use super::str_bytes;
use crate::controller::TopicSpec;
use crate::metadata::TopicMeta;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: MetadataRequest) -> MetadataResponse {
    let config = &shard.config;
    let node_id = BrokerId(config.node_id);
    let mut response = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = node_id;
    broker.host = str_bytes(&config.advertised_host);
    broker.port = i32::from(config.advertised_port);
    response.brokers = vec![broker];
    response.cluster_id = Some(str_bytes(&shard.metadata().cluster_id));
    response.controller_id = node_id;

    // v0: an empty list means every topic; v1+: null means every topic.
    let requested = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    };
    let Some(requested) = requested else {
        let image = shard.metadata();
        response.topics = image.topics.values().map(|topic| describe(shard, topic)).collect();
        return response;
    };
    let allow_auto_create = (version < 4 || request.allow_auto_topic_creation) && config.auto_create_topics;
    let missing: Vec<String> = {
        let image = shard.metadata();
        requested
            .iter()
            .filter_map(|t| t.name.as_ref())
            .filter(|name| !image.topics.contains_key(name.as_str()))
            .map(|name| name.to_string())
            .collect()
    };
    if allow_auto_create && !missing.is_empty() {
        let specs = missing.iter().map(|name| TopicSpec::with_defaults(name)).collect();
        for outcome in super::create_topics::create_via_controller(shard, specs).await {
            if let Some((code, message)) = outcome.error {
                if code != ErrorCode::TopicAlreadyExists {
                    tracing::info!(topic = %outcome.name, "auto-creating topic failed: {message}");
                }
            }
        }
    }
    let image = shard.metadata();
    for wanted in requested {
        let found = match &wanted.name {
            Some(name) => image.topics.get(name.as_str()).cloned(),
            None => image.topic_by_id(&wanted.topic_id).cloned(),
        };
        let topic = match found {
            Some(topic) => describe(shard, &topic),
            None => {
                let mut topic = MetadataResponseTopic::default();
                match &wanted.name {
                    Some(name) => {
                        topic.name = Some(name.clone());
                        topic.error_code = if crate::metadata::validate_topic_name(name).is_err() {
                            ErrorCode::InvalidTopicException.code()
                        } else {
                            ErrorCode::UnknownTopicOrPartition.code()
                        };
                    }
                    None => {
                        topic.topic_id = wanted.topic_id;
                        topic.error_code = ErrorCode::UnknownTopicId.code();
                    }
                }
                topic
            }
        };
        response.topics.push(topic);
    }
    response
}

fn describe(shard: &Shard, topic: &Arc<TopicMeta>) -> MetadataResponseTopic {
    let node_id = BrokerId(shard.config.node_id);
    let mut out = MetadataResponseTopic::default();
    out.name = Some(TopicName(str_bytes(&topic.name)));
    out.topic_id = topic.topic_id;
    out.is_internal = false;
    out.partitions = topic
        .partitions
        .iter()
        .map(|placed| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = placed.partition;
            partition.leader_id = node_id;
            partition.leader_epoch = placed.leader_epoch;
            partition.replica_nodes = vec![node_id];
            partition.isr_nodes = vec![node_id];
            partition
        })
        .collect();
    debug_assert_ne!(topic.topic_id, Uuid::nil(), "topics always have an id");
    out
}
