//! AlterShareGroupOffsets (key 91, v0): moves a share group's
//! share-partitions to new start offsets (clamped to the log), forgetting
//! their record states; the group must have no members (NON_EMPTY_GROUP).
//! Served only with `group.share.enable`.

use std::rc::Rc;

use protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use protocol::messages::{AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse};
use protocol::ErrorCode;

use super::share_group_offsets::{check_group, on_owner, Op};
use super::str_bytes;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: AlterShareGroupOffsetsRequest) -> AlterShareGroupOffsetsResponse {
    let mut response = AlterShareGroupOffsetsResponse::default();
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
        let mut topic = AlterShareGroupOffsetsResponseTopic::default();
        topic.topic_name = wanted.topic_name.clone();
        topic.topic_id = meta.map(|m| m.topic_id).unwrap_or_default();
        for asked in wanted.partitions {
            let mut partition = AlterShareGroupOffsetsResponsePartition::default();
            partition.partition_index = asked.partition_index;
            let outcome = match meta {
                Some(meta) => {
                    let key = (meta.topic_id, asked.partition_index);
                    on_owner(shard, &group_id, key, Op::Alter(asked.start_offset), settings).await
                }
                None => Err(ErrorCode::UnknownTopicOrPartition),
            };
            if let Err(error) = outcome {
                partition.error_code = error.code();
                partition.error_message = Some(str_bytes(&format!("{error:?}")));
            }
            topic.partitions.push(partition);
        }
        response.responses.push(topic);
    }
    response
}
