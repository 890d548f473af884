//! DescribeTopicPartitions (key 75, Kafka 3.7+): topics with their
//! partitions, paged. Topics are answered in name order (all topics when the
//! request lists none); a page holds at most `response_partition_limit`
//! partitions (capped at Kafka's default `max.request.partition.size.limit`,
//! 2000) and ends with a cursor naming the next topic and partition.
//! Unknown topics are answered with UNKNOWN_TOPIC_OR_PARTITION and cost no
//! partitions of the page. A cursor naming a topic the request does not
//! list is INVALID_REQUEST on every topic, as Kafka answers.

use std::collections::BTreeSet;
use std::ops::Range;
use std::rc::Rc;

use protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName};
use protocol::ErrorCode;

use super::str_bytes;
use crate::metadata::TopicMeta;
use crate::shard::Shard;

/// Kafka's `max.request.partition.size.limit` default.
const PARTITIONS_PER_PAGE_MAX: i32 = 2000;

/// Operations on a TOPIC that Kafka reports as authorized without an
/// authorizer: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8,
/// DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, as a bit field.
const TOPIC_OPERATIONS: i32 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// One topic of a page: its position in the name list and the partition
/// indexes to describe (empty for an unknown topic).
type PageEntry = (usize, Range<i32>);

pub async fn handle(
    shard: &Rc<Shard>,
    _version: i16,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = shard.metadata();
    let all = request.topics.is_empty();
    let names: Vec<String> = if all {
        image.topics.keys().cloned().collect()
    } else {
        request.topics.iter().map(|t| t.name.to_string()).collect::<BTreeSet<_>>().into_iter().collect()
    };
    let mut response = DescribeTopicPartitionsResponse::default();
    let cursor = request.cursor.map(|c| (c.topic_name.to_string(), c.partition_index));
    if let Some((topic, _)) = &cursor {
        if !all && !names.contains(topic) {
            response.topics = names
                .iter()
                .map(|name| {
                    let mut topic = DescribeTopicPartitionsResponseTopic::default();
                    topic.name = Some(TopicName(str_bytes(name)));
                    topic.error_code = ErrorCode::InvalidRequest.code();
                    topic
                })
                .collect();
            return response;
        }
    }
    let counts: Vec<Option<i32>> =
        names.iter().map(|name| image.topics.get(name).map(|t| t.partitions.len() as i32)).collect();
    let limit = request.response_partition_limit.clamp(1, PARTITIONS_PER_PAGE_MAX);
    let (entries, next) = page(&names, &counts, cursor.as_ref().map(|(t, p)| (t.as_str(), *p)), limit);
    for (i, range) in entries {
        let name = &names[i];
        response.topics.push(match image.topics.get(name) {
            Some(topic) => describe(shard.config.node_id, topic, range),
            None => {
                let mut topic = DescribeTopicPartitionsResponseTopic::default();
                topic.name = Some(TopicName(str_bytes(name)));
                topic.error_code = ErrorCode::UnknownTopicOrPartition.code();
                topic
            }
        });
    }
    response.next_cursor = next.map(|(topic, partition)| {
        let mut cursor = Cursor::default();
        cursor.topic_name = TopicName(str_bytes(&topic));
        cursor.partition_index = partition;
        cursor
    });
    response
}

/// Picks the page: topics at or after the cursor's, partitions from the
/// cursor's index in its topic, at most `limit` partitions in all. Returns
/// the entries and the cursor of the next page, if anything is left.
fn page(
    names: &[String],
    counts: &[Option<i32>],
    cursor: Option<(&str, i32)>,
    limit: i32,
) -> (Vec<PageEntry>, Option<(String, i32)>) {
    let mut entries = Vec::new();
    let mut left = limit;
    for (i, (name, count)) in names.iter().zip(counts).enumerate() {
        let start = match cursor {
            Some((topic, _)) if name.as_str() < topic => continue,
            Some((topic, partition)) if name == topic => partition.max(0),
            _ => 0,
        };
        let Some(count) = *count else {
            entries.push((i, 0..0));
            continue;
        };
        if left == 0 {
            return (entries, Some((name.clone(), start)));
        }
        let end = count.min(start.saturating_add(left)).max(start);
        entries.push((i, start..end));
        left -= end - start;
        if end < count {
            return (entries, Some((name.clone(), end)));
        }
    }
    (entries, None)
}

fn describe(node_id: i32, topic: &TopicMeta, range: Range<i32>) -> DescribeTopicPartitionsResponseTopic {
    let node = BrokerId(node_id);
    let mut out = DescribeTopicPartitionsResponseTopic::default();
    out.name = Some(TopicName(str_bytes(&topic.name)));
    out.topic_id = topic.topic_id;
    out.is_internal = false;
    out.topic_authorized_operations = TOPIC_OPERATIONS;
    out.partitions = topic
        .partitions
        .iter()
        .filter(|placed| range.contains(&placed.partition))
        .map(|placed| {
            let mut partition = DescribeTopicPartitionsResponsePartition::default();
            partition.partition_index = placed.partition;
            partition.leader_id = node;
            partition.leader_epoch = placed.leader_epoch;
            partition.replica_nodes = vec![node];
            partition.isr_nodes = vec![node];
            partition
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pages_split_topics_and_resume_at_the_cursor() {
        // Proves the limit counts partitions across topics, a topic is split
        // mid-way with a cursor on its next partition, and the next page
        // resumes exactly there.
        let topics = names(&["a", "b", "c"]);
        let counts = [Some(3), Some(4), Some(1)];
        let (first, next) = page(&topics, &counts, None, 5);
        assert_eq!(first, vec![(0, 0..3), (1, 0..2)]);
        assert_eq!(next, Some(("b".to_string(), 2)));
        let (second, next) = page(&topics, &counts, Some(("b", 2)), 5);
        assert_eq!(second, vec![(1, 2..4), (2, 0..1)]);
        assert_eq!(next, None);
    }

    #[test]
    fn a_page_ending_at_a_topic_boundary_points_at_the_next_topic() {
        // Proves the cursor after an exactly full page names the next topic
        // at partition 0, and unknown topics cost nothing.
        let topics = names(&["a", "missing", "z"]);
        let counts = [Some(2), None, Some(2)];
        let (entries, next) = page(&topics, &counts, None, 2);
        assert_eq!(entries, vec![(0, 0..2), (1, 0..0)]);
        assert_eq!(next, Some(("z".to_string(), 0)));
    }
}
