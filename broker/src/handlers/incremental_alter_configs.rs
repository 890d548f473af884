//! IncrementalAlterConfigs (key 44): per-key changes to a topic's overrides
//! or a BROKER resource's dynamic configs: SET (0), DELETE (1, back to the
//! next layer: the broker default for a topic, the cluster default or the
//! file for a broker), APPEND (2) and SUBTRACT (3) for list-typed keys only
//! (else INVALID_CONFIG, as in Kafka). The change is applied by the
//! controller like AlterConfigs, with the same resource rules (see
//! `alter_configs`). A GROUP resource (32) changes a group id's share
//! GROUP configs on the id's coordinator shard: the whole new set is
//! validated against the broker's bounds (`group::share_config`,
//! INVALID_CONFIG with Kafka's messages), written to the group log and
//! answered once durable; `validate_only` writes nothing.

use std::rc::Rc;

use protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use protocol::ErrorCode;

use std::collections::BTreeMap;

use super::alter_configs::{alter_broker, alter_topic, broker_scope, error_fields};
use super::describe_configs::{unsupported_resource, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::group::{share_config, GroupCoordinator};
use crate::shard::Shard;
use crate::topic_config::{self, ConfigType, DynamicDefaults};

/// One requested change, as Kafka's AlterConfigOp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Set(String),
    Delete,
    Append(String),
    Subtract(String),
}

type Change = (String, Operation);

pub async fn handle(
    shard: &Rc<Shard>,
    _version: i16,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let changes: Result<Vec<Change>, _> = resource
            .configs
            .iter()
            .map(|c| parse(c.name.as_str(), c.config_operation, c.value.as_ref().map(|v| v.as_str())))
            .collect();
        let changes = changes.and_then(|changes| check_unique(&changes).map(|()| changes));
        let validate_only = request.validate_only;
        let image = shard.metadata();
        let dynamic = DynamicDefaults::for_node(&image.broker_configs, shard.config.node_id);
        let defaults = &shard.config.topic_defaults;
        let outcome = match (resource.resource_type, changes) {
            (_, Err(error)) => Err(error),
            (RESOURCE_TOPIC, Ok(changes)) => {
                let inherited = topic_config::inherited_topic_values(defaults, &dynamic);
                let list_key = |key: &str| topic_config::topic_key(key).map(|spec| spec.config_type);
                alter_topic(shard, &name, validate_only, move |overrides| {
                    apply(overrides, &inherited, list_key, changes)
                })
                .await
            }
            (RESOURCE_BROKER, Ok(changes)) => match broker_scope(shard.config.node_id, &name) {
                Err(error) => Err(error),
                Ok(scope) => {
                    let inherited = topic_config::inherited_broker_values(defaults, &dynamic, scope);
                    let list_key =
                        |key: &str| topic_config::topic_key_for_broker_name(key).map(|spec| spec.config_type);
                    alter_broker(shard, &name, validate_only, move |configs| {
                        apply(configs, &inherited, list_key, changes)
                    })
                    .await
                }
            },
            (share_config::RESOURCE_GROUP, Ok(changes)) => {
                alter_group(shard, name.clone(), validate_only, changes).await
            }
            (other, Ok(_)) => Err((ErrorCode::InvalidRequest, unsupported_resource(other))),
        };
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        (result.error_code, result.error_message) = error_fields(outcome);
        response.responses.push(result);
    }
    response
}

/// Applies `changes` to `group_id`'s GROUP configs on its coordinator
/// shard, validated as a whole; the answer waits until they are durable.
async fn alter_group(
    shard: &Rc<Shard>,
    group_id: String,
    validate_only: bool,
    changes: Vec<Change>,
) -> Result<(), (ErrorCode, String)> {
    if group_id.is_empty() {
        return Err((ErrorCode::InvalidRequest, "Group name must not be empty".to_owned()));
    }
    let target = crate::group::coordinator_shard(&group_id, shard.count);
    let placed = shard
        .invoke_on(target, move |owner| async move {
            let mut configs = owner.groups.group_configs(&group_id);
            // No GROUP config is a list: APPEND/SUBTRACT are INVALID_CONFIG.
            let string_type = |_: &str| Some(ConfigType::String);
            apply(&mut configs, &BTreeMap::new(), string_type, changes)?;
            share_config::validate(&owner.groups.config, &configs)
                .map_err(|reason| (ErrorCode::InvalidConfig, reason))?;
            if validate_only {
                return Ok(None);
            }
            GroupCoordinator::set_group_configs(&owner, &group_id, configs)
                .await
                .map(Some)
                .map_err(|err| (ErrorCode::NotCoordinator, format!("writing the group's configs failed: {err}")))
        })
        .await
        .map_err(|gone| (ErrorCode::CoordinatorNotAvailable, gone.to_string()))??;
    match placed {
        None => Ok(()),
        Some(durable) => match durable.await {
            Ok(true) => Ok(()),
            _ => Err((ErrorCode::NotCoordinator, "the group's configs could not be made durable".to_owned())),
        },
    }
}

/// One wire entry as an operation (unknown operation or a missing value:
/// INVALID_REQUEST).
fn parse(key: &str, operation: i8, value: Option<&str>) -> Result<Change, (ErrorCode, String)> {
    let needs_value = |value: Option<&str>| {
        value.map(str::to_owned).ok_or_else(|| {
            (ErrorCode::InvalidRequest, format!("config '{key}': operation {operation} needs a non-null value"))
        })
    };
    let op = match operation {
        0 => Operation::Set(needs_value(value)?),
        1 => Operation::Delete,
        2 => Operation::Append(needs_value(value)?),
        3 => Operation::Subtract(needs_value(value)?),
        other => {
            return Err((
                ErrorCode::InvalidRequest,
                format!("config '{key}': unknown operation {other} (0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT)"),
            ))
        }
    };
    Ok((key.to_owned(), op))
}

/// Kafka refuses a resource naming a key twice.
fn check_unique(changes: &[Change]) -> Result<(), (ErrorCode, String)> {
    for (i, (key, _)) in changes.iter().enumerate() {
        if changes[..i].iter().any(|(other, _)| other == key) {
            return Err((ErrorCode::InvalidRequest, format!("config '{key}' appears more than once")));
        }
    }
    Ok(())
}

/// Applies the changes to a resource's stored configs (a topic's overrides
/// or one BROKER scope's dynamic configs). APPEND and SUBTRACT start from the
/// stored value, else the value `inherited` from the layers below; `config_type`
/// gives a key's type. An unknown key is stored as given: the controller's
/// validation refuses it with the error that names it.
pub fn apply(
    configs: &mut BTreeMap<String, String>,
    inherited: &BTreeMap<String, String>,
    config_type: impl Fn(&str) -> Option<ConfigType>,
    changes: Vec<Change>,
) -> Result<(), (ErrorCode, String)> {
    for (key, op) in changes {
        let appending = matches!(op, Operation::Append(_));
        match op {
            Operation::Set(value) => {
                configs.insert(key, value);
            }
            Operation::Delete => {
                configs.remove(&key);
            }
            Operation::Append(value) | Operation::Subtract(value) => {
                let Some(kind) = config_type(&key) else {
                    configs.insert(key, value);
                    continue;
                };
                if kind != ConfigType::List {
                    let verb = if appending { "append" } else { "subtract" };
                    return Err((
                        ErrorCode::InvalidConfig,
                        format!("config value {verb} is not allowed for config key `{key}`: it is not a list"),
                    ));
                }
                let current = configs.get(&key).or_else(|| inherited.get(&key)).map(String::as_str).unwrap_or_default();
                let mut items: Vec<String> = split_list(current);
                for item in split_list(&value) {
                    if appending {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    } else {
                        items.retain(|existing| *existing != item);
                    }
                }
                configs.insert(key, items.join(","));
            }
        }
    }
    Ok(())
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, operation: i8, value: Option<&str>) -> Change {
        parse(key, operation, value).unwrap()
    }

    fn topic_type(key: &str) -> Option<ConfigType> {
        topic_config::topic_key(key).map(|spec| spec.config_type)
    }

    fn inherited_topic() -> BTreeMap<String, String> {
        topic_config::inherited_topic_values(&Default::default(), &DynamicDefaults::default())
    }

    #[test]
    fn set_and_delete_edit_single_keys() {
        // Proves SET adds or replaces an override and DELETE removes it
        // (back to the broker default), leaving other keys alone.
        let mut overrides: BTreeMap<String, String> = [("retention.ms".to_string(), "1".to_string())].into();
        overrides.insert("segment.bytes".into(), "1048576".into());
        let changes = vec![change("retention.ms", 0, Some("5000")), change("segment.bytes", 1, None)];
        apply(&mut overrides, &inherited_topic(), topic_type, changes).unwrap();
        assert_eq!(overrides.len(), 1);
        assert_eq!(overrides["retention.ms"], "5000");
    }

    #[test]
    fn append_and_subtract_only_for_lists() {
        // Proves APPEND/SUBTRACT work on the list key starting from its
        // effective value, skip duplicates, and are INVALID_CONFIG for a
        // key that is not a list.
        let inherited = inherited_topic();
        let mut overrides = BTreeMap::new();
        apply(&mut overrides, &inherited, topic_type, vec![change("cleanup.policy", 2, Some("delete,compact"))])
            .unwrap();
        assert_eq!(overrides["cleanup.policy"], "delete,compact", "delete (the default) is kept once");
        apply(&mut overrides, &inherited, topic_type, vec![change("cleanup.policy", 3, Some("compact"))]).unwrap();
        assert_eq!(overrides["cleanup.policy"], "delete");
        let (code, message) =
            apply(&mut overrides, &inherited, topic_type, vec![change("retention.ms", 2, Some("1"))]).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidConfig);
        assert!(message.contains("retention.ms"), "{message}");

        // The same rules on a BROKER scope, under broker-level names.
        let broker_type = |key: &str| topic_config::topic_key_for_broker_name(key).map(|spec| spec.config_type);
        let inherited = topic_config::inherited_broker_values(
            &Default::default(),
            &DynamicDefaults::default(),
            topic_config::BrokerScope::ClusterDefault,
        );
        let mut configs = BTreeMap::new();
        apply(&mut configs, &inherited, broker_type, vec![change("log.cleanup.policy", 3, Some("delete"))]).unwrap();
        assert_eq!(configs["log.cleanup.policy"], "", "subtracted from the inherited `delete`");
        let refused = apply(&mut configs, &inherited, broker_type, vec![change("log.retention.ms", 2, Some("1"))]);
        assert_eq!(refused.unwrap_err().0, ErrorCode::InvalidConfig);
    }

    #[test]
    fn malformed_operations_are_invalid_requests() {
        // Proves unknown operations, null values where one is needed and
        // repeated keys are INVALID_REQUEST.
        assert_eq!(parse("retention.ms", 9, Some("1")).unwrap_err().0, ErrorCode::InvalidRequest);
        assert_eq!(parse("retention.ms", 0, None).unwrap_err().0, ErrorCode::InvalidRequest);
        assert!(parse("retention.ms", 1, None).is_ok(), "DELETE needs no value");
        let twice = vec![change("a", 1, None), change("a", 0, Some("1"))];
        assert_eq!(check_unique(&twice).unwrap_err().0, ErrorCode::InvalidRequest);
    }
}
