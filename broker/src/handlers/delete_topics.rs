//! DeleteTopics (key 20): by name (all versions) or by topic id (v6+); the
//! controller removes them and every shard closes and deletes their files
//! before the answer.

use std::rc::Rc;

use protocol::messages::delete_topics_response::DeletableTopicResult;
use protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use protocol::ErrorCode;

use super::str_bytes;
use crate::controller::TopicOutcome;
use crate::shard::{Shard, CONTROLLER_SHARD};

pub async fn handle(shard: &Rc<Shard>, _version: i16, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut response = DeleteTopicsResponse::default();
    let mut names = Vec::new();
    let image = shard.metadata();
    for name in request.topic_names {
        names.push(name.to_string());
    }
    for state in request.topics {
        match (&state.name, image.topic_by_id(&state.topic_id)) {
            (Some(name), _) => names.push(name.to_string()),
            (None, Some(topic)) => names.push(topic.name.clone()),
            (None, None) => {
                let mut result = DeletableTopicResult::default();
                result.topic_id = state.topic_id;
                result.error_code = ErrorCode::UnknownTopicId.code();
                result.error_message = Some(str_bytes(&format!("no topic has id {}", state.topic_id)));
                response.responses.push(result);
            }
        }
    }
    let deleted = shard
        .invoke_on(CONTROLLER_SHARD, move |shard| async move { shard.controller().delete_topics(&shard, names).await })
        .await
        .unwrap_or_default();
    response.responses.extend(deleted.into_iter().map(result));
    response
}

fn result(outcome: TopicOutcome) -> DeletableTopicResult {
    let mut result = DeletableTopicResult::default();
    result.name = Some(TopicName(str_bytes(&outcome.name)));
    result.topic_id = outcome.topic_id;
    if let Some((code, message)) = outcome.error {
        result.error_code = code.code();
        result.error_message = Some(str_bytes(&message));
    }
    result
}
