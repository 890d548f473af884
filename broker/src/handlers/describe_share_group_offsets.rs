//! DescribeShareGroupOffsets (key 90, v0; Kafka 4.2's v1 adds lag, which
//! the codecs of kafka-protocol 0.18 do not have): each share-partition's
//! start offset (-1 where the group has no state), read on the owner
//! shards. Topics null: every partition where the group has state.
//! Served only with `group.share.enable`.

use std::rc::Rc;

use protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use protocol::messages::{DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse, TopicName};
use protocol::ErrorCode;

use super::share_group_offsets::{check_group, on_owner, Op};
use super::str_bytes;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, request: DescribeShareGroupOffsetsRequest) -> DescribeShareGroupOffsetsResponse {
    let mut response = DescribeShareGroupOffsetsResponse::default();
    for wanted in request.groups {
        let group_id = wanted.group_id.0.to_string();
        let mut group = DescribeShareGroupOffsetsResponseGroup::default();
        group.group_id = wanted.group_id.clone();
        let settings = match check_group(shard, &group_id, false).await {
            Ok(settings) => settings,
            Err(error) => {
                group.error_code = error.code();
                group.error_message = Some(str_bytes(&format!("{error:?}")));
                response.groups.push(group);
                continue;
            }
        };
        let image = shard.metadata();
        // (name, partitions asked; None: every partition, answered only with state)
        let topics: Vec<(String, Option<Vec<i32>>)> = match wanted.topics {
            Some(topics) => topics.into_iter().map(|t| (t.topic_name.0.to_string(), Some(t.partitions))).collect(),
            None => image.topics.keys().map(|name| (name.clone(), None)).collect(),
        };
        for (name, partitions) in topics {
            let meta = image.topics.get(&name);
            let mut topic = DescribeShareGroupOffsetsResponseTopic::default();
            topic.topic_name = TopicName(str_bytes(&name));
            topic.topic_id = meta.map(|m| m.topic_id).unwrap_or_default();
            let all = partitions.is_none();
            let indexes = partitions
                .unwrap_or_else(|| meta.map_or(Vec::new(), |m| m.partitions.iter().map(|p| p.partition).collect()));
            for index in indexes {
                let mut partition = DescribeShareGroupOffsetsResponsePartition::default();
                partition.partition_index = index;
                partition.leader_epoch = meta.and_then(|m| m.partition(index)).map_or(-1, |p| p.leader_epoch);
                let outcome = match meta {
                    Some(meta) => on_owner(shard, &group_id, (meta.topic_id, index), Op::Describe, settings).await,
                    None => Err(ErrorCode::UnknownTopicOrPartition),
                };
                match outcome {
                    Ok(-1) if all => continue,
                    Ok(start_offset) => partition.start_offset = start_offset,
                    Err(error) => {
                        partition.start_offset = -1;
                        partition.error_code = error.code();
                        partition.error_message = Some(str_bytes(&format!("{error:?}")));
                    }
                }
                topic.partitions.push(partition);
            }
            if !(all && topic.partitions.is_empty()) {
                group.topics.push(topic);
            }
        }
        response.groups.push(group);
    }
    response
}
