//! OffsetFetch (key 9): the committed offsets of a group, read on its
//! coordinator shard; offset -1 where nothing was committed. `topics` null
//! (v2+) means every partition with a commit. v8 asks for several groups,
//! each answered by its own coordinator; v9 carries a consumer-protocol
//! member's id and epoch, checked like commits (STALE_MEMBER_EPOCH,
//! UNKNOWN_MEMBER_ID). `require_stable` (v7+, KIP-447; librdkafka sets it
//! for `isolation.level=read_committed`) answers UNSTABLE_OFFSET_COMMIT
//! for partitions with a pending transactional offset (the client retries);
//! without it the committed offset is returned whatever is pending.

use std::rc::Rc;

use protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use protocol::ErrorCode;

use super::str_bytes;
use crate::group::coordinator_shard;
use crate::group::offsets::{self, Fetched};
use crate::shard::Shard;

type Answer = Result<Vec<(String, Vec<(i32, Fetched)>)>, ErrorCode>;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    let require_stable = version >= 7 && request.require_stable;
    if version >= 8 {
        let lookups = request.groups.into_iter().map(|group| {
            let topics = group.topics.map(|topics| {
                topics.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect::<Vec<_>>()
            });
            let group_id = group.group_id;
            // v9: a consumer-protocol member names itself and its epoch.
            let member = (version >= 9).then(|| (group.member_id.map(|id| id.to_string()), group.member_epoch));
            async move { (group_id.clone(), fetch(shard, group_id.0.to_string(), member, topics, require_stable).await) }
        });
        for (group_id, answer) in futures::future::join_all(lookups).await {
            let mut group = OffsetFetchResponseGroup::default();
            group.group_id = group_id;
            match answer {
                Ok(topics) => group.topics = topics.into_iter().map(topic_v8).collect(),
                Err(code) => group.error_code = code.code(),
            }
            response.groups.push(group);
        }
        return response;
    }
    let topics =
        request.topics.map(|topics| topics.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    match fetch(shard, request.group_id.0.to_string(), None, topics, require_stable).await {
        Ok(topics) => response.topics = topics.into_iter().map(topic_v1).collect(),
        // v1 has no top-level error: the code goes on no partition then.
        Err(code) if version >= 2 => response.error_code = code.code(),
        Err(_) => {}
    }
    response
}

/// A v9 fetcher: its member id (null for none) and member epoch.
type Member = Option<(Option<String>, i32)>;

async fn fetch(
    shard: &Rc<Shard>,
    group_id: String,
    member: Member,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Answer {
    if group_id.len() > crate::group::NAME_BYTES_MAX {
        return Err(ErrorCode::InvalidGroupId);
    }
    let target = coordinator_shard(&group_id, shard.count);
    shard
        .invoke_on(target, move |owner| async move {
            if let Some((member_id, member_epoch)) = member {
                owner.groups.validate_fetch(&group_id, member_id.as_deref(), member_epoch)?;
            }
            Ok(offsets::fetch(&owner, &group_id, topics, require_stable))
        })
        .await
        .map_err(|_| ErrorCode::CoordinatorNotAvailable)?
}

fn topic_v1((name, partitions): (String, Vec<(i32, Fetched)>)) -> OffsetFetchResponseTopic {
    let mut topic = OffsetFetchResponseTopic::default();
    topic.name = TopicName(str_bytes(&name));
    for (index, fetched) in partitions {
        let mut partition = OffsetFetchResponsePartition::default();
        partition.partition_index = index;
        partition.committed_offset = fetched.offset;
        partition.committed_leader_epoch = fetched.leader_epoch;
        partition.metadata = fetched.metadata.as_deref().map(str_bytes);
        partition.error_code = fetched.error_code;
        topic.partitions.push(partition);
    }
    topic
}

fn topic_v8((name, partitions): (String, Vec<(i32, Fetched)>)) -> OffsetFetchResponseTopics {
    let mut topic = OffsetFetchResponseTopics::default();
    topic.name = TopicName(str_bytes(&name));
    for (index, fetched) in partitions {
        let mut partition = OffsetFetchResponsePartitions::default();
        partition.partition_index = index;
        partition.committed_offset = fetched.offset;
        partition.committed_leader_epoch = fetched.leader_epoch;
        partition.metadata = fetched.metadata.as_deref().map(str_bytes);
        partition.error_code = fetched.error_code;
        topic.partitions.push(partition);
    }
    topic
}
