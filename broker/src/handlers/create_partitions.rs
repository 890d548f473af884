//! CreatePartitions (key 37): grows topics to a new partition count. The
//! controller (shard 0) logs and publishes the change; every shard has
//! opened its new partitions before the answer. Manual assignments are
//! accepted only when each new partition names this node alone, since a
//! single node cannot place replicas elsewhere.

use std::collections::HashSet;
use std::rc::Rc;

use protocol::messages::create_partitions_request::CreatePartitionsTopic;
use protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use protocol::ErrorCode;

use super::str_bytes;
use crate::shard::{Shard, CONTROLLER_SHARD};

pub async fn handle(shard: &Rc<Shard>, _version: i16, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    let validate_only = request.validate_only;
    // Kafka answers every copy of a topic named twice with INVALID_REQUEST.
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> =
        request.topics.iter().map(|t| t.name.to_string()).filter(|name| !seen.insert(name.clone())).collect();
    for topic in request.topics {
        let name = topic.name.to_string();
        let outcome = if duplicates.contains(&name) {
            Err((ErrorCode::InvalidRequest, format!("topic '{name}' appears more than once in the request")))
        } else {
            grow(shard, topic, validate_only).await
        };
        let mut result = CreatePartitionsTopicResult::default();
        result.name = protocol::messages::TopicName(str_bytes(&name));
        if let Err((code, message)) = outcome {
            result.error_code = code.code();
            result.error_message = Some(str_bytes(&message));
        }
        response.results.push(result);
    }
    response
}

/// Checks one topic's request on the controller and applies it there.
async fn grow(shard: &Rc<Shard>, topic: CreatePartitionsTopic, validate_only: bool) -> Result<(), (ErrorCode, String)> {
    let name = topic.name.to_string();
    let total = topic.count;
    let assignments: Option<Vec<Vec<i32>>> = topic
        .assignments
        .map(|list| list.into_iter().map(|a| a.broker_ids.into_iter().map(|b| b.0).collect()).collect());
    shard
        .invoke_on(CONTROLLER_SHARD, move |shard| async move {
            let controller = shard.controller();
            if let Some(current) = shard.metadata().topics.get(&name).map(|t| t.partitions.len() as i32) {
                if let Some(assignments) = &assignments {
                    check_assignments(shard.config.node_id, current, total, assignments)?;
                }
            }
            controller.create_partitions(&shard, &name, total, validate_only).await
        })
        .await
        .unwrap_or_else(|gone| Err((ErrorCode::NotController, gone.to_string())))
}

/// Kafka's rules for manual assignments, on one node: one list per new
/// partition, each naming exactly this node.
fn check_assignments(
    node_id: i32,
    current: i32,
    total: i32,
    assignments: &[Vec<i32>],
) -> Result<(), (ErrorCode, String)> {
    let added = total - current;
    if added <= 0 {
        // create_partitions reports INVALID_PARTITIONS for this.
        return Ok(());
    }
    if assignments.len() as i64 != i64::from(added) {
        return Err((
            ErrorCode::InvalidReplicaAssignment,
            format!(
                "increasing the partition count from {current} to {total} needs {added} assignments, got {}",
                assignments.len()
            ),
        ));
    }
    if let Some(bad) = assignments.iter().find(|replicas| replicas.as_slice() != [node_id]) {
        return Err((
            ErrorCode::InvalidReplicaAssignment,
            format!("replica assignment {bad:?} is invalid: each new partition must be on broker {node_id} alone"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_must_cover_each_new_partition_with_this_node_only() {
        // Proves the count and content rules for manual assignments.
        assert!(check_assignments(1, 2, 4, &[vec![1], vec![1]]).is_ok());
        assert_eq!(check_assignments(1, 2, 4, &[vec![1]]).unwrap_err().0, ErrorCode::InvalidReplicaAssignment);
        assert_eq!(check_assignments(1, 2, 3, &[vec![2]]).unwrap_err().0, ErrorCode::InvalidReplicaAssignment);
        assert_eq!(check_assignments(1, 2, 3, &[vec![1, 1]]).unwrap_err().0, ErrorCode::InvalidReplicaAssignment);
        assert!(check_assignments(1, 2, 2, &[]).is_ok(), "a count not above the current one is reported elsewhere");
    }
}
