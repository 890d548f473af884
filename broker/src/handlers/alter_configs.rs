//! AlterConfigs (key 33): replaces a topic's whole set of overrides with the
//! configs given (keys left out return to the broker default), as Kafka's
//! legacy AlterConfigs does. The controller (shard 0) validates, logs and
//! publishes the change; each shard applies the new effective config to its
//! running partitions before the answer.
//!
//! BROKER resources: Stele's broker settings come from its configuration
//! file and cannot change at run time, so a change is INVALID_REQUEST, which
//! is what Kafka answers for configs it cannot update dynamically.

use std::collections::BTreeMap;
use std::rc::Rc;

use protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use protocol::ErrorCode;

use super::describe_configs::{check_broker_name, unsupported_resource, RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::shard::Shard;
use crate::topic_config::TopicOverrides;

pub async fn handle(shard: &Rc<Shard>, _version: i16, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let configs: Vec<(String, Option<String>)> =
            resource.configs.into_iter().map(|c| (c.name.to_string(), c.value.map(|v| v.to_string()))).collect();
        let outcome = match resource.resource_type {
            RESOURCE_TOPIC => match replacement(configs) {
                Ok(replaced) => {
                    alter_topic(shard, &name, request.validate_only, move |overrides| {
                        *overrides = replaced;
                        Ok(())
                    })
                    .await
                }
                Err(error) => Err(error),
            },
            RESOURCE_BROKER => refuse_broker_change(shard.config.node_id, &name, configs.iter().map(|c| c.0.as_str())),
            other => Err((ErrorCode::InvalidRequest, unsupported_resource(other))),
        };
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        // The codec's default is an empty string; Kafka sends null on success.
        result.error_message = None;
        if let Err((code, message)) = outcome {
            result.error_code = code.code();
            result.error_message = Some(str_bytes(&message));
        }
        response.responses.push(result);
    }
    response
}

/// The new override set: every key once, none null (Kafka: "Null value not
/// supported", "duplicate config keys"; both INVALID_REQUEST).
fn replacement(configs: Vec<(String, Option<String>)>) -> Result<TopicOverrides, (ErrorCode, String)> {
    let mut out = BTreeMap::new();
    for (key, value) in configs {
        let Some(value) = value else {
            return Err((ErrorCode::InvalidRequest, format!("null value not supported for topic config '{key}'")));
        };
        if out.insert(key.clone(), value).is_some() {
            return Err((ErrorCode::InvalidRequest, format!("topic config '{key}' appears more than once")));
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
        .invoke_on(0, move |shard| async move {
            let controller = shard.controller.as_ref().expect("shard 0 is the controller");
            controller.set_topic_configs(&shard, &name, edit, validate_only).await
        })
        .await
        .unwrap_or_else(|gone| Err((ErrorCode::NotController, gone.to_string())))
}

/// The answer to a change of BROKER configs: Stele has no dynamic broker
/// configs. An empty change is accepted, as in Kafka.
pub(super) fn refuse_broker_change<'a>(
    node_id: i32,
    name: &str,
    mut keys: impl Iterator<Item = &'a str>,
) -> Result<(), (ErrorCode, String)> {
    if !name.is_empty() {
        check_broker_name(node_id, name)?;
    }
    match keys.next() {
        None => Ok(()),
        Some(first) => Err((
            ErrorCode::InvalidRequest,
            format!(
                "cannot update broker config '{first}' dynamically: Stele's broker settings are read from its \
                 configuration file at startup; change the file and restart"
            ),
        )),
    }
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
    fn broker_changes_are_refused_with_a_reason() {
        // Proves a BROKER change is INVALID_REQUEST naming the key and why,
        // while an empty change and the wrong id follow Kafka.
        let (code, message) = refuse_broker_change(1, "1", ["log.retention.ms"].into_iter()).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidRequest);
        assert!(message.contains("log.retention.ms") && message.contains("configuration file"), "{message}");
        assert!(refuse_broker_change(1, "1", std::iter::empty()).is_ok());
        assert!(refuse_broker_change(1, "2", std::iter::empty()).is_err());
    }
}
