//! Committed offsets: the store each coordinator shard keeps for its
//! groups, and OffsetCommit/OffsetFetch on it.
//!
//! A commit is validated against its group (a simple commit, or a member
//! of the current generation), placed in the shard's group log, and applied
//! to the store and answered only once an fdatasync covers it: an
//! acknowledged commit survives SIGTERM and kill -9. Concurrent commits on
//! a shard share fdatasyncs (the engine's group commit), and are applied in
//! log order, so a later commit of a partition always wins.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Instant;

use futures::channel::oneshot;
use protocol::ErrorCode;

use super::classic::Step;
use super::records::{GroupRecord, OffsetCommitRecord};
use super::NAME_BYTES_MAX;
use crate::shard::Shard;

/// A committed offset as the coordinator keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// A partition of a topic, as offsets are keyed.
pub type TopicPartition = (String, i32);

/// The committed offsets of every group a shard coordinates.
#[derive(Default)]
pub struct OffsetStore {
    groups: HashMap<String, BTreeMap<TopicPartition, Committed>>,
}

impl OffsetStore {
    /// Applies an offset record (others are ignored): what replay and a
    /// durable commit both do.
    pub fn apply(&mut self, record: &GroupRecord) {
        match record {
            GroupRecord::OffsetCommit(commit) => {
                let committed = Committed {
                    offset: commit.offset,
                    leader_epoch: commit.leader_epoch,
                    metadata: commit.metadata.clone(),
                    commit_timestamp_ms: commit.commit_timestamp_ms,
                };
                let key = (commit.topic.clone(), commit.partition);
                self.groups.entry(commit.group.clone()).or_default().insert(key, committed);
            }
            GroupRecord::OffsetDeleted { group, topic, partition } => {
                if let Some(offsets) = self.groups.get_mut(group) {
                    offsets.remove(&(topic.clone(), *partition));
                    if offsets.is_empty() {
                        self.groups.remove(group);
                    }
                }
            }
            GroupRecord::GroupDeleted { group } => {
                self.groups.remove(group);
            }
            GroupRecord::ClassicGroup(_) | GroupRecord::ConsumerGroup(_) => {}
        }
    }

    /// The offsets of `group`, by topic and partition.
    pub fn group(&self, group: &str) -> Option<&BTreeMap<TopicPartition, Committed>> {
        self.groups.get(group)
    }

    /// Ids of the groups with at least one committed offset.
    pub fn group_ids(&self) -> impl Iterator<Item = &String> {
        self.groups.keys()
    }

    /// Every offset of `group` as the records that state it.
    pub fn records_of(&self, group: &str) -> Vec<GroupRecord> {
        let Some(offsets) = self.groups.get(group) else {
            return Vec::new();
        };
        offsets
            .iter()
            .map(|((topic, partition), committed)| commit_record(group, topic, *partition, committed))
            .collect()
    }
}

/// The record stating one committed offset.
pub fn commit_record(group: &str, topic: &str, partition: i32, committed: &Committed) -> GroupRecord {
    GroupRecord::OffsetCommit(OffsetCommitRecord {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partition,
        offset: committed.offset,
        leader_epoch: committed.leader_epoch,
        metadata: committed.metadata.clone(),
        commit_timestamp_ms: committed.commit_timestamp_ms,
    })
}

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

/// Validates `partitions` for `group_id` and places them in the group log.
/// The answer (one error code per partition, in order, 0 for success) is
/// ready now when nothing was placed, or comes through the receiver once
/// the commit is durable and applied.
pub async fn commit(
    shard: &Rc<Shard>,
    group_id: &str,
    member_id: &str,
    group_instance_id: Option<&str>,
    generation_id: i32,
    api_version: i16,
    partitions: Vec<CommitPartition>,
) -> Step<Vec<i16>> {
    if group_id.is_empty() || group_id.len() > NAME_BYTES_MAX {
        return Step::Now(vec![ErrorCode::InvalidGroupId.code(); partitions.len()]);
    }
    let now = Instant::now();
    let validated =
        shard.groups.validate_commit(group_id, member_id, group_instance_id, generation_id, api_version, now);
    if let Err(code) = validated {
        return Step::Now(vec![code.code(); partitions.len()]);
    }
    let (codes, records) = checked_records(shard, group_id, partitions);
    if records.is_empty() {
        return Step::Now(codes);
    }
    let payload = super::records::encode_batch(&records);
    let (reply, answer) = oneshot::channel();
    let owner = shard.clone();
    let answered = codes.clone();
    // Offset retention leaves the group alone until this commit is applied.
    let in_flight = shard.groups.offsets_in_flight(group_id);
    let on_durable = Box::new(move |outcome: Result<(), String>| {
        let _applied_or_failed = in_flight;
        let codes = match outcome {
            Ok(()) => {
                owner.groups.apply_durable(&records);
                answered
            }
            Err(reason) => {
                tracing::error!(shard = owner.id, reason, "committed offsets could not be made durable");
                failed(&answered)
            }
        };
        let _ = reply.send(codes);
    });
    match shard.groups.append(payload, on_durable).await {
        Ok(()) => Step::Wait(answer),
        Err(err) => {
            tracing::error!(shard = shard.id, group = group_id, error = %err, "placing committed offsets failed");
            Step::Now(failed(&codes))
        }
    }
}

/// Per partition: its error code, and a record for each one that passed.
fn checked_records(shard: &Shard, group_id: &str, partitions: Vec<CommitPartition>) -> (Vec<i16>, Vec<GroupRecord>) {
    let image = shard.metadata();
    let metadata_bytes_max = shard.groups.config.offset_metadata_bytes_max;
    let commit_timestamp_ms = crate::partition::now_ms();
    let mut codes = Vec::with_capacity(partitions.len());
    let mut records = Vec::with_capacity(partitions.len());
    for p in partitions {
        let known = image.topics.get(&p.topic).is_some_and(|t| t.partitions.iter().any(|m| m.partition == p.partition));
        let code = if !known {
            ErrorCode::UnknownTopicOrPartition.code()
        } else if p.metadata.as_ref().is_some_and(|m| m.len() > metadata_bytes_max) {
            ErrorCode::OffsetMetadataTooLarge.code()
        } else {
            records.push(GroupRecord::OffsetCommit(OffsetCommitRecord {
                group: group_id.to_owned(),
                topic: p.topic,
                partition: p.partition,
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata: p.metadata,
                commit_timestamp_ms,
            }));
            0
        };
        codes.push(code);
    }
    (codes, records)
}

/// The codes of a commit whose write failed: Kafka answers a storage
/// failure of its offsets log with NOT_COORDINATOR, so clients look for the
/// coordinator again and retry.
fn failed(codes: &[i16]) -> Vec<i16> {
    codes.iter().map(|code| if *code == 0 { ErrorCode::NotCoordinator.code() } else { *code }).collect()
}

/// The committed offsets of `group_id`: of the listed partitions, or of all
/// partitions with commits when `topics` is None (sorted by topic, then
/// partition).
pub fn fetch(
    shard: &Rc<Shard>,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<(i32, Fetched)>)> {
    let none: Fetched = (-1, -1, Some(String::new()));
    let store = shard.groups.offsets();
    let offsets = store.group(group_id);
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let answers = partitions
                    .into_iter()
                    .map(|p| {
                        let found = offsets.and_then(|offsets| offsets.get(&(topic.clone(), p)));
                        (p, found.map_or(none.clone(), as_fetched))
                    })
                    .collect();
                (topic, answers)
            })
            .collect(),
        None => {
            let mut out: Vec<(String, Vec<(i32, Fetched)>)> = Vec::new();
            for ((topic, partition), committed) in offsets.into_iter().flatten() {
                if out.last().is_none_or(|(t, _)| t != topic) {
                    out.push((topic.clone(), Vec::new()));
                }
                out.last_mut().expect("pushed").1.push((*partition, as_fetched(committed)));
            }
            out
        }
    }
}

fn as_fetched(committed: &Committed) -> Fetched {
    (committed.offset, committed.leader_epoch, Some(committed.metadata.clone().unwrap_or_default()))
}
