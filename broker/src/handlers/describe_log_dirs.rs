//! DescribeLogDirs (key 35): Stele keeps every partition in one log
//! directory, the data directory. Each shard reports the size on disk of the
//! partitions it owns (the engine's segment bytes); v4+ add the
//! filesystem's total and usable bytes (statvfs; usable is what an
//! unprivileged writer may still use, as Java's getUsableSpace).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use protocol::ErrorCode;

use super::str_bytes;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // None: every partition (Kafka: a null topic list).
    let wanted: Option<HashSet<(String, i32)>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect()
    });
    let sizes = shard
        .invoke_on_all(|owner| async move {
            owner.partitions().iter().map(|p| (p.topic.clone(), p.index, p.log.size_bytes())).collect::<Vec<_>>()
        })
        .await;
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = str_bytes(&shard.config.data_dir.display().to_string());
    match sizes {
        Ok(per_shard) => {
            let chosen = per_shard
                .into_iter()
                .flatten()
                .filter(|(topic, index, _)| wanted.as_ref().is_none_or(|w| w.contains(&(topic.clone(), *index))));
            result.topics = group_by_topic(chosen);
        }
        Err(gone) => {
            result.error_code = ErrorCode::KafkaStorageError.code();
            tracing::warn!(error = %gone, "DescribeLogDirs: a shard did not answer");
        }
    }
    if version >= 4 {
        match space_of(&shard.config.data_dir) {
            Ok((total, usable)) => (result.total_bytes, result.usable_bytes) = (total, usable),
            Err(err) => tracing::warn!(dir = %shard.config.data_dir.display(), error = %err, "statvfs failed"),
        }
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results = vec![result];
    response
}

/// Partitions as Kafka lists them: per topic (sorted), partitions in order.
fn group_by_topic(sizes: impl Iterator<Item = (String, i32, u64)>) -> Vec<DescribeLogDirsTopic> {
    let mut topics: BTreeMap<String, Vec<(i32, u64)>> = BTreeMap::new();
    for (topic, index, size) in sizes {
        topics.entry(topic).or_default().push((index, size));
    }
    topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_unstable();
            let mut topic = DescribeLogDirsTopic::default();
            topic.name = TopicName(str_bytes(&name));
            topic.partitions = partitions
                .into_iter()
                .map(|(index, size)| {
                    let mut partition = DescribeLogDirsPartition::default();
                    partition.partition_index = index;
                    partition.partition_size = i64::try_from(size).unwrap_or(i64::MAX);
                    partition.offset_lag = 0;
                    partition
                })
                .collect();
            topic
        })
        .collect()
}

/// (total, usable) bytes of the filesystem holding `dir`.
fn space_of(dir: &Path) -> rustix::io::Result<(i64, i64)> {
    let stat = rustix::fs::statvfs(dir)?;
    let total = stat.f_blocks.saturating_mul(stat.f_frsize);
    let usable = stat.f_bavail.saturating_mul(stat.f_frsize);
    Ok((i64::try_from(total).unwrap_or(i64::MAX), i64::try_from(usable).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_grouped_per_topic_in_order() {
        // Proves the grouping and ordering of the answer.
        let topics = group_by_topic(
            vec![("b".to_string(), 1, 10), ("a".to_string(), 0, 5), ("b".to_string(), 0, 7)].into_iter(),
        );
        assert_eq!(topics.len(), 2);
        assert_eq!(topics[0].name.as_str(), "a");
        let b: Vec<(i32, i64)> = topics[1].partitions.iter().map(|p| (p.partition_index, p.partition_size)).collect();
        assert_eq!(b, vec![(0, 7), (1, 10)]);
    }

    #[test]
    fn the_filesystem_has_space() {
        // Proves statvfs answers with usable <= total, both positive.
        let (total, usable) = space_of(Path::new(".")).unwrap();
        assert!(total > 0 && usable >= 0 && usable <= total, "{total} {usable}");
    }
}
