//! DeleteShareGroupOffsets (key 92, v0): deletes a share group's state on
//! every partition of the named topics (the next use starts again by
//! `share.auto.offset.reset`); the group must have no members
//! (NON_EMPTY_GROUP). Served only with `group.share.enable`.

use std::rc::Rc;

use protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use protocol::messages::{DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse};
use protocol::ErrorCode;

use super::share_group_offsets::{check_group, on_owner, Op};
use super::str_bytes;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: DeleteShareGroupOffsetsRequest) -> DeleteShareGroupOffsetsResponse {
    let mut response = DeleteShareGroupOffsetsResponse::default();
    let group_id = request.group_id.0.to_string();
    let settings = match check_group(shard, &group_id, true).await {
        Ok(settings) => settings,
        Err(error) => {
            response.error_code = error.code();
            response.error_message = Some(str_bytes(&format!("{error:?}")));
            return response;
        }
    };
    let image = shard.metadata();
    for wanted in request.topics {
        let meta = image.topics.get(wanted.topic_name.0.as_str());
        let mut topic = DeleteShareGroupOffsetsResponseTopic::default();
        topic.topic_name = wanted.topic_name.clone();
        topic.topic_id = meta.map(|m| m.topic_id).unwrap_or_default();
        let mut error = meta.is_none().then_some(ErrorCode::UnknownTopicOrPartition);
        if let Some(meta) = meta {
            for placed in &meta.partitions {
                let key = (meta.topic_id, placed.partition);
                if let Err(failed) = on_owner(shard, &group_id, key, Op::Delete, settings).await {
                    error.get_or_insert(failed);
                }
            }
        }
        if let Some(error) = error {
            topic.error_code = error.code();
            topic.error_message = Some(str_bytes(&format!("{error:?}")));
        }
        response.responses.push(topic);
    }
    response
}
