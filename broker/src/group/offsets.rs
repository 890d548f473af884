//! Committing and fetching offsets on a group's coordinator shard.
//!
//! A commit is validated against the group (simple commit or a member's
//! generation), written to the shard's offsets log and fdatasynced, and only
//! then applied to memory and acknowledged: an acknowledged commit survives
//! SIGTERM and kill -9.

use std::rc::Rc;
use std::time::Instant;

use protocol::ErrorCode;

use super::log::OffsetRecord;
use super::{NAME_BYTES_MAX, OFFSET_METADATA_BYTES_MAX};
use crate::shard::Shard;

/// One partition of a commit request.
#[derive(Clone, Debug)]
pub struct CommitPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// One partition's committed offset as fetched: (offset, leader epoch,
/// metadata), offset -1 when none was committed.
pub type Fetched = (i64, i32, Option<String>);

/// Commits `partitions` for `group_id`; returns one error code per
/// partition, in order (0 for success).
pub fn commit(
    shard: &Rc<Shard>,
    group_id: &str,
    member_id: &str,
    generation_id: i32,
    partitions: Vec<CommitPartition>,
) -> Vec<i16> {
    if group_id.is_empty() || group_id.len() > NAME_BYTES_MAX {
        return vec![ErrorCode::InvalidGroupId.code(); partitions.len()];
    }
    let now = Instant::now();
    let create = generation_id < 0 && member_id.is_empty();
    let checked =
        shard.groups.with_group(group_id, create, |group| group.validate_commit(member_id, generation_id, now));
    match checked {
        None => return vec![ErrorCode::IllegalGeneration.code(); partitions.len()],
        Some(Err(code)) => return vec![code.code(); partitions.len()],
        Some(Ok(())) => {}
    }
    let image = shard.metadata();
    let commit_timestamp_ms = crate::partition::now_ms();
    let mut codes = Vec::with_capacity(partitions.len());
    let mut records = Vec::with_capacity(partitions.len());
    for p in partitions {
        let known = image.topics.get(&p.topic).is_some_and(|t| t.partitions.iter().any(|m| m.partition == p.partition));
        let code = if !known {
            ErrorCode::UnknownTopicOrPartition.code()
        } else if p.metadata.as_ref().is_some_and(|m| m.len() > OFFSET_METADATA_BYTES_MAX) {
            ErrorCode::OffsetMetadataTooLarge.code()
        } else {
            records.push(OffsetRecord {
                group: group_id.to_owned(),
                topic: p.topic,
                partition: p.partition,
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata: p.metadata,
                commit_timestamp_ms,
            });
            0
        };
        codes.push(code);
    }
    if let Err(err) = shard.groups.append(&records) {
        tracing::error!(group = group_id, error = %err, "writing committed offsets failed");
        return codes.iter().map(|c| if *c == 0 { ErrorCode::UnknownServerError.code() } else { *c }).collect();
    }
    shard.groups.with_group(group_id, true, |group| {
        for record in records {
            let committed = super::state::Committed {
                offset: record.offset,
                leader_epoch: record.leader_epoch,
                metadata: record.metadata,
                commit_timestamp_ms,
            };
            group.offsets.insert((record.topic, record.partition), committed);
        }
    });
    codes
}

/// The committed offsets of `group_id`: of the listed partitions, or of all
/// partitions with commits when `topics` is None. Sorted by topic, then
/// partition, for the all-partitions case.
pub fn fetch(
    shard: &Rc<Shard>,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<(i32, Fetched)>)> {
    let none: Fetched = (-1, -1, Some(String::new()));
    let requested = topics.clone();
    let found = shard.groups.with_group(group_id, false, |group| match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let answers = partitions
                    .into_iter()
                    .map(|p| {
                        let fetched = group.offsets.get(&(topic.clone(), p)).map_or(none.clone(), as_fetched);
                        (p, fetched)
                    })
                    .collect();
                (topic, answers)
            })
            .collect(),
        None => {
            let mut all: Vec<(&(String, i32), &super::state::Committed)> = group.offsets.iter().collect();
            all.sort_by(|a, b| a.0.cmp(b.0));
            let mut out: Vec<(String, Vec<(i32, Fetched)>)> = Vec::new();
            for ((topic, partition), committed) in all {
                if out.last().is_none_or(|(t, _)| t != topic) {
                    out.push((topic.clone(), Vec::new()));
                }
                out.last_mut().expect("pushed").1.push((*partition, as_fetched(committed)));
            }
            out
        }
    });
    found.unwrap_or_else(|| {
        // No such group: nothing committed for any requested partition.
        let requested = requested.unwrap_or_default();
        requested.into_iter().map(|(t, ps)| (t, ps.into_iter().map(|p| (p, none.clone())).collect())).collect()
    })
}

fn as_fetched(committed: &super::state::Committed) -> Fetched {
    (committed.offset, committed.leader_epoch, Some(committed.metadata.clone().unwrap_or_default()))
}
