//! CreateTopics (key 19): validated here (names, counts, replication,
//! configs), created by the controller on shard 0, answered once every
//! shard has opened its new partitions.

use std::collections::BTreeMap;
use std::rc::Rc;

use protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use protocol::ErrorCode;

use super::str_bytes;
use crate::controller::{TopicOutcome, TopicSpec};
use crate::shard::{Shard, CONTROLLER_SHARD};
use crate::topic_config;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut rejected = Vec::new();
    let mut specs = Vec::new();
    for topic in request.topics {
        let name = topic.name.to_string();
        let mut configs = BTreeMap::new();
        let mut bad_config = None;
        for entry in topic.configs {
            match entry.value {
                Some(value) => {
                    configs.insert(entry.name.to_string(), value.to_string());
                }
                None => bad_config = Some(format!("config '{}' has a null value", entry.name.as_str())),
            }
        }
        let mut partitions = topic.num_partitions;
        let mut replication_factor = topic.replication_factor;
        if !topic.assignments.is_empty() {
            let ours =
                topic.assignments.iter().all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == shard.config.node_id);
            let numbered = topic.assignments.iter().enumerate().all(|(i, a)| a.partition_index == i as i32);
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                bad_config = Some("give either replica assignments or a partition count and replication factor".into());
            } else if !ours || !numbered {
                rejected.push(TopicOutcome::failed(
                    &name,
                    ErrorCode::InvalidReplicaAssignment,
                    format!(
                        "replica assignments must name partitions 0..n-1, each on broker {} only",
                        shard.config.node_id
                    ),
                ));
                continue;
            }
            partitions = topic.assignments.len() as i32;
            replication_factor = 1;
        }
        if let Some(message) = bad_config {
            rejected.push(TopicOutcome::failed(&name, ErrorCode::InvalidRequest, message));
            continue;
        }
        specs.push(TopicSpec { name, partitions, replication_factor, configs, validate_only: request.validate_only });
    }
    let mut outcomes = create_via_controller(shard, specs).await;
    outcomes.extend(rejected);
    let mut response = CreateTopicsResponse::default();
    response.topics = outcomes.into_iter().map(|outcome| result(shard, version, outcome)).collect();
    response
}

fn result(shard: &Shard, version: i16, outcome: TopicOutcome) -> CreatableTopicResult {
    let mut result = CreatableTopicResult::default();
    result.name = protocol::messages::TopicName(str_bytes(&outcome.name));
    match outcome.error {
        Some((code, message)) => {
            result.error_code = code.code();
            result.error_message = Some(str_bytes(&message));
            result.num_partitions = -1;
            result.replication_factor = -1;
        }
        None => {
            result.topic_id = outcome.topic_id;
            result.num_partitions = outcome.partitions;
            result.replication_factor = 1;
            if version >= 5 {
                let image = shard.metadata();
                let overrides =
                    image.topics.get(&outcome.name).map(|topic| topic.configs.clone()).unwrap_or(outcome.configs);
                let dynamic = topic_config::DynamicDefaults::for_node(&image.broker_configs, shard.config.node_id);
                result.configs = Some(
                    topic_config::describe_with(&shard.config.topic_defaults, &dynamic, &overrides)
                        .into_iter()
                        .map(|entry| {
                            let mut config = CreatableTopicConfigs::default();
                            config.name = str_bytes(entry.name);
                            config.value = Some(str_bytes(&entry.value));
                            config.read_only = entry.read_only;
                            config.config_source = entry.source.code();
                            config.is_sensitive = entry.sensitive;
                            config
                        })
                        .collect(),
                );
            }
        }
    }
    result
}

/// Sends topic creations to the controller (shard 0) and waits for them.
pub async fn create_via_controller(shard: &Rc<Shard>, specs: Vec<TopicSpec>) -> Vec<TopicOutcome> {
    if specs.is_empty() {
        return Vec::new();
    }
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let created = shard
        .invoke_on(CONTROLLER_SHARD, move |shard| async move { shard.controller().create_topics(&shard, specs).await })
        .await;
    created.unwrap_or_else(|gone| {
        names.iter().map(|name| TopicOutcome::failed(name, ErrorCode::NotController, gone.to_string())).collect()
    })
}
