//! DescribeConfigs (key 32): a topic's effective configs (its overrides over
//! the dynamic and static broker defaults) and this broker's settings, with
//! sources, synonyms (when asked), and types and documentation (v3+).
//!
//! Resource rules follow Kafka's ConfigHelper: a BROKER resource names this
//! node's id (every broker setting, the topic defaults with their dynamic
//! values), or is empty for the cluster-wide dynamic defaults (only the keys
//! set there, source DYNAMIC_DEFAULT_BROKER_CONFIG); any other id or a
//! non-number is INVALID_REQUEST. A GROUP resource (KIP-848/932) names any
//! group id, existing or not (empty: INVALID_REQUEST): its share GROUP
//! configs, each the group's value (DYNAMIC_GROUP_CONFIG) or the broker's
//! (DEFAULT_CONFIG), read on the id's coordinator shard. Other resource
//! types are INVALID_REQUEST.

use std::rc::Rc;

use protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use protocol::{ErrorCode, StrBytes};

use super::str_bytes;
use crate::group::share_config;
use crate::shard::Shard;
use crate::topic_config::{self, ConfigEntry, DynamicDefaults};

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    let include_documentation = version >= 3 && request.include_documentation;
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        // The codec's default is an empty string; Kafka sends null on success.
        result.error_message = None;
        let entries = if resource.resource_type == share_config::RESOURCE_GROUP {
            group_entries(shard, resource.resource_name.as_str()).await
        } else {
            entries_for(shard, resource.resource_type, resource.resource_name.as_str())
        };
        match entries {
            Ok(entries) => {
                let wanted = resource.configuration_keys.as_deref();
                result.configs = entries
                    .into_iter()
                    .filter(|entry| wanted.is_none_or(|keys| keys.iter().any(|key| key.as_str() == entry.name)))
                    .map(|entry| encode(entry, version, request.include_synonyms, include_documentation))
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code.code();
                result.error_message = Some(str_bytes(&message));
            }
        }
        response.results.push(result);
    }
    response
}

/// A GROUP resource's entries, from its coordinator shard.
async fn group_entries(shard: &Rc<Shard>, name: &str) -> Result<Vec<ConfigEntry>, (ErrorCode, String)> {
    if name.is_empty() {
        return Err((ErrorCode::InvalidRequest, "Group name must not be empty".to_owned()));
    }
    let group_id = name.to_owned();
    let target = crate::group::coordinator_shard(&group_id, shard.count);
    let configs = shard
        .invoke_on(target, move |owner| async move { owner.groups.group_configs(&group_id) })
        .await
        .map_err(|gone| (ErrorCode::CoordinatorNotAvailable, gone.to_string()))?;
    Ok(share_config::describe(&shard.config.groups, &configs))
}

/// The entries of one resource, or Kafka's error for it.
fn entries_for(shard: &Shard, resource_type: i8, name: &str) -> Result<Vec<ConfigEntry>, (ErrorCode, String)> {
    let image = shard.metadata();
    let dynamic = DynamicDefaults::for_node(&image.broker_configs, shard.config.node_id);
    match resource_type {
        RESOURCE_TOPIC => {
            if let Err(reason) = crate::metadata::validate_topic_name(name) {
                return Err((ErrorCode::InvalidTopicException, reason.to_string()));
            }
            let topic = image
                .topics
                .get(name)
                .ok_or_else(|| (ErrorCode::UnknownTopicOrPartition, format!("topic '{name}' does not exist")))?;
            Ok(topic_config::describe_with(&shard.config.topic_defaults, &dynamic, &topic.configs))
        }
        RESOURCE_BROKER => {
            if name.is_empty() {
                return Ok(topic_config::describe_broker_defaults(&shard.config.topic_defaults, &dynamic));
            }
            check_broker_name(shard.config.node_id, name)?;
            Ok(topic_config::describe_broker(&shard.config, &dynamic))
        }
        other => Err((ErrorCode::InvalidRequest, unsupported_resource(other))),
    }
}

/// A BROKER resource must name this node (Kafka: "Unexpected broker id").
pub fn check_broker_name(node_id: i32, name: &str) -> Result<(), (ErrorCode, String)> {
    match name.parse::<i32>() {
        Ok(id) if id == node_id => Ok(()),
        Ok(id) => Err((
            ErrorCode::InvalidRequest,
            format!("unexpected broker id {id}: this broker is {node_id} (or use an empty name for defaults)"),
        )),
        Err(_) => Err((ErrorCode::InvalidRequest, format!("broker id must be an integer, got '{name}'"))),
    }
}

pub fn unsupported_resource(resource_type: i8) -> String {
    let kind = match resource_type {
        8 => "BROKER_LOGGER",
        16 => "CLIENT_METRICS",
        32 => "GROUP",
        _ => "unknown",
    };
    format!(
        "unsupported resource type {resource_type} ({kind}): Stele describes and alters TOPIC (2), BROKER (4) and \
         GROUP (32) configs"
    )
}

fn encode(
    entry: ConfigEntry,
    version: i16,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    let mut out = DescribeConfigsResourceResult::default();
    out.name = str_bytes(entry.name);
    out.value = Some(str_bytes(&entry.value));
    out.read_only = entry.read_only;
    out.config_source = entry.source.code();
    out.is_sensitive = entry.sensitive;
    if include_synonyms {
        out.synonyms = entry
            .synonyms
            .iter()
            .map(|synonym| {
                let mut encoded = DescribeConfigsSynonym::default();
                encoded.name = str_bytes(synonym.name);
                encoded.value = Some(str_bytes(&synonym.value));
                encoded.source = synonym.source.code();
                encoded
            })
            .collect();
    }
    if version >= 3 {
        out.config_type = entry.config_type.code();
        out.documentation = include_documentation.then(|| StrBytes::from_static_str(entry.documentation));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_resource_names_must_be_this_node() {
        // Proves Kafka's rule: this node's id is accepted, another id or a
        // non-number is INVALID_REQUEST naming what was wrong.
        assert!(check_broker_name(3, "3").is_ok());
        let (code, message) = check_broker_name(3, "4").unwrap_err();
        assert_eq!(code, ErrorCode::InvalidRequest);
        assert!(message.contains("4"), "{message}");
        assert_eq!(check_broker_name(3, "x").unwrap_err().0, ErrorCode::InvalidRequest);
    }

    #[test]
    fn synonyms_and_documentation_only_when_asked() {
        // Proves the optional parts of an entry follow the request flags and
        // that v3+ fields are left at their defaults below v3.
        let defaults = crate::config::TopicDefaults::default();
        let entry = topic_config::describe(&defaults, &Default::default()).into_iter().next().unwrap();
        let bare = encode(entry.clone(), 3, false, false);
        assert!(bare.synonyms.is_empty());
        assert_eq!(bare.documentation, None);
        assert_eq!(encode(entry.clone(), 2, true, true).config_type, 0, "no type below v3");
        let full = encode(entry, 4, true, true);
        assert!(!full.synonyms.is_empty());
        assert!(full.documentation.is_some());
        assert!(full.config_type > 0);
    }
}
