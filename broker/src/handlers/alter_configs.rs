//! AlterConfigs (key 33): replaces a resource's whole set of dynamic configs
//! with the configs given (keys left out return to the next layer), as
//! Kafka's legacy AlterConfigs does. The controller (shard 0) validates, logs
//! and publishes the change; each shard applies the new effective config to
//! its running partitions before the answer.
//!
//! TOPIC resources hold topic overrides (`retention.ms`). BROKER resources
//! hold dynamic broker configs under broker-level names (`log.retention.ms`):
//! the empty name is the cluster-wide default, this node's id the per-broker
//! value (which wins). Only the broker names of topic keys are dynamic; a
//! static setting (`node.id`, `log.dirs`, ...) is INVALID_REQUEST naming the
//! key, as Kafka answers for configs it cannot update dynamically; a bad
//! value is INVALID_CONFIG naming the key.

use std::collections::BTreeMap;
use std::rc::Rc;

use protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use protocol::ErrorCode;

use super::describe_configs::{check_broker_name, unsupported_resource, RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::shard::{Shard, CONTROLLER_SHARD};
use crate::topic_config::{BrokerScope, TopicOverrides};

pub async fn handle(shard: &Rc<Shard>, _version: i16, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let configs: Vec<(String, Option<String>)> =
            resource.configs.into_iter().map(|c| (c.name.to_string(), c.value.map(|v| v.to_string()))).collect();
        let validate_only = request.validate_only;
        let outcome = match (resource.resource_type, replacement(configs)) {
            (RESOURCE_TOPIC | RESOURCE_BROKER, Err(error)) => Err(error),
            (RESOURCE_TOPIC, Ok(replaced)) => {
                alter_topic(shard, &name, validate_only, move |overrides| {
                    *overrides = replaced;
                    Ok(())
                })
                .await
            }
            (RESOURCE_BROKER, Ok(replaced)) => {
                alter_broker(shard, &name, validate_only, move |configs| {
                    *configs = replaced;
                    Ok(())
                })
                .await
            }
            (other, _) => Err((ErrorCode::InvalidRequest, unsupported_resource(other))),
        };
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        (result.error_code, result.error_message) = error_fields(outcome);
        response.responses.push(result);
    }
    response
}

/// A resource's outcome as the wire's error code and message. The codec's
/// default message is an empty string; Kafka sends null on success.
pub(super) fn error_fields(outcome: Result<(), (ErrorCode, String)>) -> (i16, Option<protocol::StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((code, message)) => (code.code(), Some(str_bytes(&message))),
    }
}

/// The new config set: every key once, none null (Kafka: "Null value not
/// supported", "duplicate config keys"; both INVALID_REQUEST).
fn replacement(configs: Vec<(String, Option<String>)>) -> Result<BTreeMap<String, String>, (ErrorCode, String)> {
    let mut out = BTreeMap::new();
    for (key, value) in configs {
        let Some(value) = value else {
            return Err((ErrorCode::InvalidRequest, format!("null value not supported for config '{key}'")));
        };
        if out.insert(key.clone(), value).is_some() {
            return Err((ErrorCode::InvalidRequest, format!("config '{key}' appears more than once")));
        }
    }
    Ok(out)
}

/// Runs `edit` on a topic's overrides on the controller, which validates the
/// result (INVALID_CONFIG naming the key) and, unless `validate_only`, logs
/// and publishes it.
pub(super) async fn alter_topic<F>(
    shard: &Rc<Shard>,
    name: &str,
    validate_only: bool,
    edit: F,
) -> Result<(), (ErrorCode, String)>
where
    F: FnOnce(&mut TopicOverrides) -> Result<(), (ErrorCode, String)> + Send + 'static,
{
    if let Err(reason) = crate::metadata::validate_topic_name(name) {
        return Err((ErrorCode::InvalidTopicException, reason));
    }
    let name = name.to_owned();
    shard
        .invoke_on(CONTROLLER_SHARD, move |shard| async move {
            shard.controller().set_topic_configs(&shard, &name, edit, validate_only).await
        })
        .await
        .unwrap_or_else(|gone| Err((ErrorCode::NotController, gone.to_string())))
}

/// The scope a BROKER resource name addresses: empty for the cluster-wide
/// default, else this node's id (another id or a non-number is
/// INVALID_REQUEST, as in Kafka).
pub(super) fn broker_scope(node_id: i32, name: &str) -> Result<BrokerScope, (ErrorCode, String)> {
    if name.is_empty() {
        return Ok(BrokerScope::ClusterDefault);
    }
    check_broker_name(node_id, name)?;
    Ok(BrokerScope::Node(node_id))
}

/// Runs `edit` on the dynamic configs of the BROKER resource `name` on the
/// controller, which validates the result (INVALID_REQUEST for a static key,
/// INVALID_CONFIG for a bad value, each naming the key) and, unless
/// `validate_only`, logs and publishes it.
pub(super) async fn alter_broker<F>(
    shard: &Rc<Shard>,
    name: &str,
    validate_only: bool,
    edit: F,
) -> Result<(), (ErrorCode, String)>
where
    F: FnOnce(&mut BTreeMap<String, String>) -> Result<(), (ErrorCode, String)> + Send + 'static,
{
    let scope = broker_scope(shard.config.node_id, name)?;
    shard
        .invoke_on(CONTROLLER_SHARD, move |shard| async move {
            shard.controller().set_broker_configs(&shard, scope, edit, validate_only).await
        })
        .await
        .unwrap_or_else(|gone| Err((ErrorCode::NotController, gone.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_refuses_nulls_and_duplicates() {
        // Proves the request-level checks of AlterConfigs before the
        // controller sees the change.
        let ok = replacement(vec![("retention.ms".into(), Some("1000".into()))]).unwrap();
        assert_eq!(ok.get("retention.ms").map(String::as_str), Some("1000"));
        assert_eq!(replacement(vec![("retention.ms".into(), None)]).unwrap_err().0, ErrorCode::InvalidRequest);
        let twice = vec![("a".into(), Some("1".into())), ("a".into(), Some("2".into()))];
        assert_eq!(replacement(twice).unwrap_err().0, ErrorCode::InvalidRequest);
        assert!(replacement(Vec::new()).unwrap().is_empty(), "no configs clears every override");
    }

    #[test]
    fn broker_resource_names_pick_a_scope() {
        // Proves Kafka's BROKER resource names: empty is the cluster-wide
        // default, this node's id is the per-broker scope, anything else is
        // INVALID_REQUEST.
        assert_eq!(broker_scope(1, ""), Ok(BrokerScope::ClusterDefault));
        assert_eq!(broker_scope(1, "1"), Ok(BrokerScope::Node(1)));
        assert_eq!(broker_scope(1, "2").unwrap_err().0, ErrorCode::InvalidRequest);
        assert_eq!(broker_scope(1, "one").unwrap_err().0, ErrorCode::InvalidRequest);
    }
}
