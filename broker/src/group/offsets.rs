//! Committed offsets: the store each coordinator shard keeps for its
//! groups, and OffsetCommit/OffsetFetch on it.
//!
//! A commit is validated against its group (a simple commit, or a member
//! of the current generation), placed in the shard's group log, and applied
//! to the store and answered only once an fdatasync covers it: an
//! acknowledged commit survives SIGTERM and kill -9. Concurrent commits on
//! a shard share fdatasyncs (the engine's group commit), and are applied in
//! log order, so a later commit of a partition always wins.
//!
//! The store also holds the pending transactional offsets
//! ([`super::txn_offsets`]), so that every offset record, transactional or
//! not, is applied by one function ([`OffsetStore::apply`]) in log order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Instant;

use futures::channel::oneshot;
use protocol::ErrorCode;

use super::classic::Step;
use super::records::{GroupRecord, OffsetCommitRecord};
use super::txn_offsets::PendingOffsets;
use super::NAME_BYTES_MAX;
use crate::shard::Shard;

/// A committed offset as the coordinator keeps it (and a pending
/// transactional one, until its transaction completes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
    /// The sequence number of the record that placed it
    /// ([`OffsetCommitRecord::sequence`]): of two offsets of a partition,
    /// the one with the larger number was placed later.
    pub sequence: u64,
}

impl Committed {
    pub fn from_record(record: &OffsetCommitRecord) -> Committed {
        Committed {
            offset: record.offset,
            leader_epoch: record.leader_epoch,
            metadata: record.metadata.clone(),
            commit_timestamp_ms: record.commit_timestamp_ms,
            sequence: record.sequence,
        }
    }

    /// The record stating this offset for `group`'s `topic`-`partition`.
    pub fn to_record(&self, group: &str, topic: &str, partition: i32) -> OffsetCommitRecord {
        OffsetCommitRecord {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.clone(),
            commit_timestamp_ms: self.commit_timestamp_ms,
            sequence: self.sequence,
        }
    }
}

/// A partition of a topic, as offsets are keyed.
pub type TopicPartition = (String, i32);

/// The committed offsets of every group a shard coordinates, and the
/// pending transactional ones.
#[derive(Default)]
pub struct OffsetStore {
    groups: HashMap<String, BTreeMap<TopicPartition, Committed>>,
    pub pending: PendingOffsets,
}

impl OffsetStore {
    /// Applies an offset record (membership records are ignored): what
    /// replay and a durable append both do. The rules are Kafka's
    /// (`OffsetMetadataManager.replay` and `replayEndTransactionMarker`):
    /// - a commit replaces the partition's committed offset, and leaves
    ///   pending transactional offsets alone;
    /// - a transactional commit replaces its producer's pending offset of
    ///   the partition, and is invisible until its transaction completes;
    /// - a committed transaction's pending offsets become the committed
    ///   ones, each unless the committed offset of its partition was placed
    ///   later than it (by sequence number: the later record wins, as
    ///   Kafka compares the records' log offsets); an aborted one's are
    ///   dropped; a completion with nothing pending changes nothing but
    ///   the producer's epoch;
    /// - a deletion (OffsetDelete, retention, DeleteGroups) removes the
    ///   committed offset and every producer's pending offset of it.
    pub fn apply(&mut self, record: &GroupRecord) {
        match record {
            GroupRecord::OffsetCommit(commit) => {
                let key = (commit.topic.clone(), commit.partition);
                self.groups.entry(commit.group.clone()).or_default().insert(key, Committed::from_record(commit));
            }
            GroupRecord::TxnOffsetCommit { producer_id, producer_epoch, offset } => {
                self.pending.note_producer(*producer_id, *producer_epoch, offset.commit_timestamp_ms);
                self.pending.put(*producer_id, *producer_epoch, offset);
            }
            GroupRecord::TxnCompleted { producer_id, producer_epoch, commit, timestamp_ms } => {
                self.pending.note_producer(*producer_id, *producer_epoch, *timestamp_ms);
                let completed = self.pending.take_producer(*producer_id);
                if !*commit {
                    return;
                }
                for (group, offsets) in completed {
                    let committed = self.groups.entry(group).or_default();
                    for (partition, pending) in offsets {
                        if committed.get(&partition).is_none_or(|current| current.sequence < pending.sequence) {
                            committed.insert(partition, pending);
                        }
                    }
                }
            }
            GroupRecord::TxnProducer { producer_id, producer_epoch, timestamp_ms } => {
                self.pending.note_producer(*producer_id, *producer_epoch, *timestamp_ms);
            }
            GroupRecord::OffsetDeleted { group, topic, partition } => {
                let key = (topic.clone(), *partition);
                self.pending.remove_partition(group, &key);
                if let Some(offsets) = self.groups.get_mut(group) {
                    offsets.remove(&key);
                    if offsets.is_empty() {
                        self.groups.remove(group);
                    }
                }
            }
            GroupRecord::GroupDeleted { group } => {
                self.pending.remove_group(group);
                self.groups.remove(group);
            }
            GroupRecord::ClassicGroup(_)
            | GroupRecord::ConsumerGroup(_)
            | GroupRecord::ShareGroup(_)
            | GroupRecord::GroupConfig { .. } => {}
        }
    }

    /// The committed offsets of `group`, by topic and partition.
    pub fn group(&self, group: &str) -> Option<&BTreeMap<TopicPartition, Committed>> {
        self.groups.get(group)
    }

    /// Ids of the groups with at least one committed or pending offset.
    pub fn group_ids(&self) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = self.groups.keys().cloned().collect();
        ids.extend(self.pending.group_ids().cloned());
        ids
    }

    /// Every offset of `group`, committed then pending, as the records
    /// that state it (with their sequence numbers).
    pub fn records_of(&self, group: &str) -> Vec<GroupRecord> {
        let committed = self.groups.get(group).into_iter().flatten().map(|((topic, partition), committed)| {
            GroupRecord::OffsetCommit(committed.to_record(group, topic, *partition))
        });
        committed.chain(self.pending.records_of(group)).collect()
    }
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

/// One partition's committed offset as fetched: offset -1 (leader epoch
/// -1, metadata "") when none was committed, or when it is unstable
/// (`error_code` UNSTABLE_OFFSET_COMMIT).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error_code: i16,
}

impl Fetched {
    fn none() -> Fetched {
        Fetched { offset: -1, leader_epoch: -1, metadata: Some(String::new()), error_code: 0 }
    }

    fn unstable() -> Fetched {
        Fetched { error_code: ErrorCode::UnstableOffsetCommit.code(), ..Fetched::none() }
    }
}

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
    let (reply, answer) = oneshot::channel();
    let owner = shard.clone();
    let answered = codes.clone();
    // Offset retention leaves the group alone until this commit is applied.
    let in_flight = shard.groups.offsets_in_flight(group_id);
    let on_durable = move |outcome: Result<Vec<GroupRecord>, String>| {
        let _applied_or_failed = in_flight;
        let codes = match outcome {
            Ok(records) => {
                owner.groups.apply_durable(&records);
                answered
            }
            Err(reason) => {
                tracing::error!(shard = owner.id, reason, "committed offsets could not be made durable");
                failed(&answered)
            }
        };
        let _ = reply.send(codes);
    };
    match shard.groups.append_numbered(records, on_durable).await {
        Ok(()) => Step::Wait(answer),
        Err(err) => {
            tracing::error!(shard = shard.id, group = group_id, error = %err, "placing committed offsets failed");
            Step::Now(failed(&codes))
        }
    }
}

/// Whether the metadata image has `topic`-`partition`.
pub fn is_known_partition(image: &crate::metadata::MetadataImage, topic: &str, partition: i32) -> bool {
    image.topics.get(topic).is_some_and(|t| t.partitions.iter().any(|m| m.partition == partition))
}

/// Per partition: its error code, and a record for each one that passed
/// (numbered when placed).
fn checked_records(shard: &Shard, group_id: &str, partitions: Vec<CommitPartition>) -> (Vec<i16>, Vec<GroupRecord>) {
    let image = shard.metadata();
    let metadata_bytes_max = shard.groups.config.offset_metadata_bytes_max;
    let commit_timestamp_ms = crate::partition::now_ms();
    let mut codes = Vec::with_capacity(partitions.len());
    let mut records = Vec::with_capacity(partitions.len());
    for p in partitions {
        let code = if !is_known_partition(&image, &p.topic, p.partition) {
            ErrorCode::UnknownTopicOrPartition.code()
        } else if p.metadata.as_ref().is_some_and(|m| m.len() > metadata_bytes_max) {
            ErrorCode::OffsetMetadataTooLarge.code()
        } else {
            records.push(GroupRecord::OffsetCommit(p.into_record(group_id, commit_timestamp_ms)));
            0
        };
        codes.push(code);
    }
    (codes, records)
}

impl CommitPartition {
    /// The record of this partition's commit, to be numbered when placed.
    pub fn into_record(self, group_id: &str, commit_timestamp_ms: i64) -> OffsetCommitRecord {
        OffsetCommitRecord {
            group: group_id.to_owned(),
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata,
            commit_timestamp_ms,
            sequence: 0,
        }
    }
}

/// The codes of a commit whose write failed: Kafka answers a storage
/// failure of its offsets log with NOT_COORDINATOR, so clients look for the
/// coordinator again and retry.
pub fn failed(codes: &[i16]) -> Vec<i16> {
    codes.iter().map(|code| if *code == 0 { ErrorCode::NotCoordinator.code() } else { *code }).collect()
}

/// The committed offsets of `group_id`: of the listed partitions, or of all
/// partitions with commits when `topics` is None (sorted by topic, then
/// partition). With `require_stable` (OffsetFetch v7+, KIP-447) a
/// partition with a pending transactional offset (applied, or placed and
/// not yet durable) answers UNSTABLE_OFFSET_COMMIT instead, as Kafka's
/// `fetchOffsets` does; without it the committed offset is returned
/// whatever is pending.
pub fn fetch(
    shard: &Rc<Shard>,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Vec<(String, Vec<(i32, Fetched)>)> {
    let store = shard.groups.offsets();
    let offsets = store.group(group_id);
    let unstable = |topic: &str, partition: i32| {
        require_stable && shard.groups.has_pending_offset(&store, group_id, &(topic.to_owned(), partition))
    };
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let answers = partitions
                    .into_iter()
                    .map(|p| {
                        if unstable(&topic, p) {
                            return (p, Fetched::unstable());
                        }
                        let found = offsets.and_then(|offsets| offsets.get(&(topic.clone(), p)));
                        (p, found.map_or_else(Fetched::none, as_fetched))
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
                let fetched = if unstable(topic, *partition) { Fetched::unstable() } else { as_fetched(committed) };
                out.last_mut().expect("pushed").1.push((*partition, fetched));
            }
            out
        }
    }
}

fn as_fetched(committed: &Committed) -> Fetched {
    Fetched {
        offset: committed.offset,
        leader_epoch: committed.leader_epoch,
        metadata: Some(committed.metadata.clone().unwrap_or_default()),
        error_code: 0,
    }
}
