//! Transactional offsets (KIP-98, KIP-447): TxnOffsetCommit on a group's
//! coordinator shard, the pending offsets it leaves per (producer, group,
//! partition), and their completion when the producer's transaction ends
//! ([`complete_for_producer`], the group log's counterpart of a COMMIT or
//! ABORT marker in Kafka's `__consumer_offsets`).
//!
//! The rules are Kafka's (`OffsetMetadataManager`, `ProducerAppendInfo`):
//! - A TxnOffsetCommit is validated like a commit against the group (from
//!   v3 the member, instance id and generation, or a consumer-protocol
//!   member's epoch; below v3 it carries none and is accepted whatever the
//!   group's state); a group that does not exist is created for a commit
//!   without a generation, else ILLEGAL_GENERATION. Unknown topics or
//!   partitions get UNKNOWN_TOPIC_OR_PARTITION whatever else is wrong,
//!   metadata over `offset.metadata.max.bytes` OFFSET_METADATA_TOO_LARGE.
//! - Its offsets are durable in the group log (`TxnOffsetCommit` records)
//!   before the answer, and stay pending: OffsetFetch does not show them,
//!   and with `require_stable` answers UNSTABLE_OFFSET_COMMIT for their
//!   partitions. A later TxnOffsetCommit of the producer for a partition
//!   replaces its pending offset there.
//! - The completion is one durable `TxnCompleted` record; applied in log
//!   order with everything else, it makes the producer's pending offsets
//!   the committed ones (each unless a commit of its partition was placed
//!   after it: the later record wins, [`super::offsets::OffsetStore::apply`])
//!   or drops them. A completion with nothing pending is a success.
//! - Producer epochs fence, as the producer state of Kafka's offsets
//!   partition does: a TxnOffsetCommit or a completion whose epoch is
//!   older than the last one this log saw of the producer is refused with
//!   INVALID_PRODUCER_EPOCH and changes nothing. The last epoch is
//!   remembered (and written by snapshots, `TxnProducer` records) until
//!   the producer has had nothing pending for `producer.id.expiration.ms`.
//! - Deleting a group (DeleteGroups, retention) or an offset (OffsetDelete)
//!   deletes the pending offsets of it too; retention never expires an
//!   offset of a partition with a pending transactional offset, nor
//!   deletes a group that has some.
//!
//! Why sequence numbers: Kafka decides "placed later" by the records' log
//! offsets; here snapshots rewrite the log and hand-overs move groups
//! between logs, so every offset record carries a sequence number given
//! at its place in the log ([`super::GroupCoordinator::append_numbered`]),
//! and snapshots and hand-overs keep the order those numbers state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use futures::channel::oneshot;
use protocol::ErrorCode;

use super::classic::Step;
use super::offsets::{self, CommitPartition, Committed, TopicPartition};
use super::records::{self, GroupRecord, OffsetCommitRecord};
use super::NAME_BYTES_MAX;
use crate::internal_log::OnDurable;
use crate::shard::Shard;

/// A pending transactional offset and the epoch of the producer that
/// placed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOffset {
    pub producer_epoch: i16,
    pub offset: Committed,
}

/// The last epoch this log saw of a producer, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerSeen {
    pub epoch: i16,
    pub timestamp_ms: i64,
}

/// Pending offsets of one producer, by group and partition.
type ProducerOffsets = HashMap<String, BTreeMap<TopicPartition, PendingOffset>>;

/// The pending transactional offsets of a shard's groups (Kafka's
/// `pendingTransactionalOffsets` and `openTransactionsByGroup`) and the
/// producers' last epochs. Part of [`super::offsets::OffsetStore`], which
/// applies the records that change it.
#[derive(Default)]
pub struct PendingOffsets {
    /// Never holds an empty map: a producer or group without pending
    /// offsets has no entry.
    by_producer: HashMap<i64, ProducerOffsets>,
    /// The producers with pending offsets in each group.
    by_group: HashMap<String, BTreeSet<i64>>,
    producers: HashMap<i64, ProducerSeen>,
}

impl PendingOffsets {
    /// Makes `record` the pending offset of `producer_id` for its
    /// partition, replacing the producer's earlier one there.
    pub fn put(&mut self, producer_id: i64, producer_epoch: i16, record: &OffsetCommitRecord) {
        let pending = PendingOffset { producer_epoch, offset: Committed::from_record(record) };
        let groups = self.by_producer.entry(producer_id).or_default();
        groups.entry(record.group.clone()).or_default().insert((record.topic.clone(), record.partition), pending);
        self.by_group.entry(record.group.clone()).or_default().insert(producer_id);
    }

    /// Removes and returns every pending offset of `producer_id`.
    pub fn take_producer(&mut self, producer_id: i64) -> Vec<(String, BTreeMap<TopicPartition, Committed>)> {
        let Some(groups) = self.by_producer.remove(&producer_id) else {
            return Vec::new();
        };
        let mut taken = Vec::with_capacity(groups.len());
        for (group, offsets) in groups {
            self.unlink(&group, producer_id);
            taken.push((group, offsets.into_iter().map(|(partition, pending)| (partition, pending.offset)).collect()));
        }
        taken
    }

    fn unlink(&mut self, group: &str, producer_id: i64) {
        if let Some(producers) = self.by_group.get_mut(group) {
            producers.remove(&producer_id);
            if producers.is_empty() {
                self.by_group.remove(group);
            }
        }
    }

    /// Drops every producer's pending offset of `group`'s `partition`.
    pub fn remove_partition(&mut self, group: &str, partition: &TopicPartition) {
        let Some(producers) = self.by_group.get(group).cloned() else {
            return;
        };
        for producer_id in producers {
            let Some(groups) = self.by_producer.get_mut(&producer_id) else {
                continue;
            };
            if let Some(offsets) = groups.get_mut(group) {
                offsets.remove(partition);
                if offsets.is_empty() {
                    groups.remove(group);
                    self.unlink(group, producer_id);
                }
            }
            if self.by_producer.get(&producer_id).is_some_and(HashMap::is_empty) {
                self.by_producer.remove(&producer_id);
            }
        }
    }

    /// Drops every pending offset of `group`.
    pub fn remove_group(&mut self, group: &str) {
        for producer_id in self.by_group.remove(group).into_iter().flatten() {
            if let Some(groups) = self.by_producer.get_mut(&producer_id) {
                groups.remove(group);
                if groups.is_empty() {
                    self.by_producer.remove(&producer_id);
                }
            }
        }
    }

    /// Whether some producer has a pending offset of `group`'s `partition`
    /// (Kafka's `hasPendingTransactionalOffsets`).
    pub fn has_partition(&self, group: &str, partition: &TopicPartition) -> bool {
        self.by_group.get(group).is_some_and(|producers| {
            producers.iter().any(|producer_id| {
                self.by_producer
                    .get(producer_id)
                    .and_then(|groups| groups.get(group))
                    .is_some_and(|o| o.contains_key(partition))
            })
        })
    }

    /// Whether `group` has pending offsets (an open transaction).
    pub fn has_group(&self, group: &str) -> bool {
        self.by_group.contains_key(group)
    }

    /// The groups with pending offsets.
    pub fn group_ids(&self) -> impl Iterator<Item = &String> {
        self.by_group.keys()
    }

    /// The groups in which `producer_id` has pending offsets.
    pub fn groups_of(&self, producer_id: i64) -> Vec<String> {
        self.by_producer.get(&producer_id).map(|groups| groups.keys().cloned().collect()).unwrap_or_default()
    }

    /// `producer_id`'s pending offset of `group`'s `partition`.
    pub fn get(&self, producer_id: i64, group: &str, partition: &TopicPartition) -> Option<&PendingOffset> {
        self.by_producer.get(&producer_id)?.get(group)?.get(partition)
    }

    /// Every pending offset of `group` as the records that state it, by
    /// producer id, then partition.
    pub fn records_of(&self, group: &str) -> Vec<GroupRecord> {
        let Some(producers) = self.by_group.get(group) else {
            return Vec::new();
        };
        let mut records = Vec::new();
        for producer_id in producers {
            let offsets = self.by_producer.get(producer_id).and_then(|groups| groups.get(group));
            for ((topic, partition), pending) in offsets.into_iter().flatten() {
                records.push(GroupRecord::TxnOffsetCommit {
                    producer_id: *producer_id,
                    producer_epoch: pending.producer_epoch,
                    offset: pending.offset.to_record(group, topic, *partition),
                });
            }
        }
        records
    }

    /// Every remembered producer epoch as a `TxnProducer` record, by
    /// producer id.
    pub fn producer_records(&self) -> Vec<GroupRecord> {
        let mut records: Vec<GroupRecord> = self
            .producers
            .iter()
            .map(|(producer_id, seen)| GroupRecord::TxnProducer {
                producer_id: *producer_id,
                producer_epoch: seen.epoch,
                timestamp_ms: seen.timestamp_ms,
            })
            .collect();
        records.sort_by_key(|record| match record {
            GroupRecord::TxnProducer { producer_id, .. } => *producer_id,
            _ => unreachable!("only producer records"),
        });
        records
    }

    /// Remembers that `producer_id` was seen with `epoch` at
    /// `timestamp_ms`; epochs never go back.
    pub fn note_producer(&mut self, producer_id: i64, epoch: i16, timestamp_ms: i64) {
        let seen = self.producers.entry(producer_id).or_insert(ProducerSeen { epoch, timestamp_ms });
        seen.epoch = seen.epoch.max(epoch);
        seen.timestamp_ms = seen.timestamp_ms.max(timestamp_ms);
    }

    /// The last epoch seen of `producer_id`.
    pub fn producer(&self, producer_id: i64) -> Option<ProducerSeen> {
        self.producers.get(&producer_id).copied()
    }

    /// Forgets producers with nothing pending that were last seen
    /// `expiration_ms` or longer ago (Kafka's `producer.id.expiration.ms`);
    /// returns how many.
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        let by_producer = &self.by_producer;
        self.producers.retain(|producer_id, seen| {
            by_producer.contains_key(producer_id) || now_ms.saturating_sub(seen.timestamp_ms) < expiration_ms
        });
        before - self.producers.len()
    }
}

/// A TxnOffsetCommit as its group's coordinator shard gets it. Below v3
/// the request has no member: generation -1, member id "", no instance id.
#[derive(Clone, Debug)]
pub struct TxnCommitRequest {
    pub group_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub partitions: Vec<CommitPartition>,
}

/// Validates a TxnOffsetCommit and places its pending offsets in the group
/// log. The answer (one error code per partition, in order, 0 for success)
/// is ready now when nothing was placed, or comes through the receiver once
/// the offsets are durable and applied.
pub async fn commit(shard: &Rc<Shard>, request: TxnCommitRequest) -> Step<Vec<i16>> {
    let image = shard.metadata();
    // Kafka's request handler answers unknown partitions itself, before the
    // coordinator judges the rest: their code stands whatever else fails.
    let known: Vec<bool> =
        request.partitions.iter().map(|p| offsets::is_known_partition(&image, &p.topic, p.partition)).collect();
    let mut codes: Vec<i16> =
        known.iter().map(|known| if *known { 0 } else { ErrorCode::UnknownTopicOrPartition.code() }).collect();
    if !known.contains(&true) {
        return Step::Now(codes);
    }
    if let Err(refused) = validate(shard, &request) {
        for (code, known) in codes.iter_mut().zip(&known) {
            if *known {
                *code = refused.code();
            }
        }
        return Step::Now(codes);
    }
    let TxnCommitRequest { group_id, producer_id, producer_epoch, partitions, .. } = request;
    let metadata_bytes_max = shard.groups.config.offset_metadata_bytes_max;
    let now_ms = crate::partition::now_ms();
    let mut records = Vec::new();
    let mut placed = Vec::new();
    for ((p, known), code) in partitions.into_iter().zip(known).zip(codes.iter_mut()) {
        if !known {
            continue;
        }
        if p.metadata.as_ref().is_some_and(|m| m.len() > metadata_bytes_max) {
            *code = ErrorCode::OffsetMetadataTooLarge.code();
            continue;
        }
        placed.push((group_id.clone(), (p.topic.clone(), p.partition)));
        records.push(GroupRecord::TxnOffsetCommit {
            producer_id,
            producer_epoch,
            offset: p.into_record(&group_id, now_ms),
        });
    }
    if records.is_empty() {
        return Step::Now(codes);
    }
    // The epoch counts from its place in the log on: a TxnOffsetCommit or
    // completion validated after this one (and so placed after it) with an
    // older epoch is fenced even before this one is durable.
    shard.groups.note_producer(producer_id, producer_epoch, now_ms);
    // Retention leaves the group alone, and require_stable fetches see the
    // partitions as unstable, until the offsets are applied.
    let in_flight = (shard.groups.offsets_in_flight(&group_id), shard.groups.txn_offsets_in_flight(placed));
    let (reply, answer) = oneshot::channel();
    let owner = shard.clone();
    let answered = codes.clone();
    let on_durable = move |outcome: Result<Vec<GroupRecord>, String>| {
        let _applied_or_failed = in_flight;
        let codes = match outcome {
            Ok(records) => {
                owner.groups.apply_durable(&records);
                answered
            }
            Err(reason) => {
                tracing::error!(shard = owner.id, reason, "transactional offsets could not be made durable");
                offsets::failed(&answered)
            }
        };
        let _ = reply.send(codes);
    };
    match shard.groups.append_numbered(records, on_durable).await {
        Ok(()) => Step::Wait(answer),
        Err(err) => {
            tracing::error!(shard = shard.id, group = group_id, error = %err, "placing transactional offsets failed");
            Step::Now(offsets::failed(&codes))
        }
    }
}

/// The checks of a TxnOffsetCommit that apply to all its partitions, in
/// Kafka's order: the group id, the producer (its epoch against the last
/// one seen: Kafka checks it when the records are appended, before the
/// coordinator looks at the group), then the group.
fn validate(shard: &Shard, request: &TxnCommitRequest) -> Result<(), ErrorCode> {
    if request.group_id.is_empty() || request.group_id.len() > NAME_BYTES_MAX {
        return Err(ErrorCode::InvalidGroupId);
    }
    // Kafka has no check here: a batch with no producer id would be
    // written as a plain commit. Stele refuses what no client sends.
    if request.producer_id < 0 {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    if request.producer_epoch < 0 {
        return Err(ErrorCode::InvalidProducerEpoch);
    }
    shard.groups.check_producer_epoch(request.producer_id, request.producer_epoch)?;
    shard.groups.validate_txn_commit(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    )
}

/// Completes the transaction of `producer_id` at `producer_epoch` on this
/// shard's groups: writes one durable `TxnCompleted` record to this shard's
/// group log and then, in log order with every other offset record, makes
/// the producer's pending offsets in every group of this shard the
/// committed ones (`commit`; each unless a commit of its partition was
/// placed after it) or drops them (abort). Returns once the record is
/// durable and applied. Call it on the coordinator shard of the groups
/// (`group::coordinator_shard`), with `invoke_on`.
///
/// - `Ok(())` also when the producer has nothing pending here (markers are
///   retried): the record is written anyway, so the epoch fences later.
/// - `Err(INVALID_PRODUCER_EPOCH)`: the epoch is older than the last one
///   this log saw of the producer (a zombie's marker); nothing was written,
///   as Kafka's log refuses such a marker. Kafka's transaction coordinator
///   stops sending that transaction's markers on this error.
/// - `Err(NOT_COORDINATOR)`: the group log could not write (shutting down,
///   I/O error); nothing is known to be completed: retry. (Kafka answers
///   WriteTxnMarkers with NOT_LEADER_OR_FOLLOWER then, which its marker
///   sender retries.)
///
/// Waits until this shard's groups are loaded. Groups handed over from
/// other shards' logs at start (after a shard-count change) arrive while
/// every shard starts, before clients are served: a caller must not
/// complete transactions before the broker's start is over.
pub async fn complete_for_producer(
    shard: &Rc<Shard>,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
) -> Result<(), ErrorCode> {
    shard.groups.wait_loaded().await;
    shard.groups.check_producer_epoch(producer_id, producer_epoch)?;
    let timestamp_ms = crate::partition::now_ms();
    shard.groups.note_producer(producer_id, producer_epoch, timestamp_ms);
    let groups = shard.groups.offsets().pending.groups_of(producer_id);
    let in_flight: Vec<_> = groups.iter().map(|group| shard.groups.offsets_in_flight(group)).collect();
    let record = GroupRecord::TxnCompleted { producer_id, producer_epoch, commit, timestamp_ms };
    let payload = records::encode_batch(std::slice::from_ref(&record));
    let (reply, outcome) = oneshot::channel();
    let owner = shard.clone();
    let on_durable: OnDurable = Box::new(move |outcome| {
        let _applied_or_failed = in_flight;
        let result = match outcome {
            Ok(()) => {
                owner.groups.apply_durable(std::slice::from_ref(&record));
                Ok(())
            }
            Err(reason) => {
                tracing::error!(
                    shard = owner.id,
                    producer_id,
                    reason,
                    "a transaction's completion could not be made durable"
                );
                Err(ErrorCode::NotCoordinator)
            }
        };
        let _ = reply.send(result);
    });
    if let Err(err) = shard.groups.append(payload, on_durable).await {
        tracing::error!(shard = shard.id, producer_id, error = %err, "placing a transaction's completion failed");
        return Err(ErrorCode::NotCoordinator);
    }
    let result = outcome.await.unwrap_or(Err(ErrorCode::NotCoordinator));
    if result.is_ok() && !groups.is_empty() {
        tracing::debug!(
            shard = shard.id,
            producer_id,
            producer_epoch,
            commit,
            groups = groups.len(),
            "transactional offsets completed"
        );
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::offsets::OffsetStore;

    fn offset(group: &str, partition: i32, offset: i64, sequence: u64) -> OffsetCommitRecord {
        OffsetCommitRecord {
            group: group.into(),
            topic: "t".into(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: Some(String::new()),
            commit_timestamp_ms: 1_000 + sequence as i64,
            sequence,
        }
    }

    fn commit(group: &str, partition: i32, value: i64, sequence: u64) -> GroupRecord {
        GroupRecord::OffsetCommit(offset(group, partition, value, sequence))
    }

    fn txn(producer_id: i64, group: &str, partition: i32, value: i64, sequence: u64) -> GroupRecord {
        GroupRecord::TxnOffsetCommit {
            producer_id,
            producer_epoch: 1,
            offset: offset(group, partition, value, sequence),
        }
    }

    fn completed(producer_id: i64, commit: bool) -> GroupRecord {
        GroupRecord::TxnCompleted { producer_id, producer_epoch: 1, commit, timestamp_ms: 9_999 }
    }

    fn store_of(records: &[GroupRecord]) -> OffsetStore {
        let mut store = OffsetStore::default();
        for record in records {
            store.apply(record);
        }
        store
    }

    fn committed_offset(store: &OffsetStore, group: &str, partition: i32) -> Option<i64> {
        store.group(group)?.get(&("t".to_string(), partition)).map(|c| c.offset)
    }

    fn pending_at(store: &OffsetStore, group: &str, partition: i32) -> bool {
        store.pending.has_partition(group, &("t".to_string(), partition))
    }

    /// Everything a store states, as comparable text: committed offsets,
    /// pending offsets and producer epochs.
    fn state(store: &OffsetStore) -> String {
        let mut lines: Vec<String> = Vec::new();
        for id in store.group_ids() {
            for record in store.records_of(&id) {
                lines.push(format!("{record:?}"));
            }
        }
        for record in store.pending.producer_records() {
            lines.push(format!("{record:?}"));
        }
        lines.sort();
        lines.join("\n")
    }

    #[test]
    fn pending_offsets_are_not_committed_until_their_transaction_commits() {
        // Proves a transactional offset is kept apart from the committed
        // one (which stays what it was) until the producer's completion
        // commits it, and that an abort drops it and keeps the old one.
        let mut store = store_of(&[commit("g", 0, 5, 1), txn(7, "g", 0, 10, 2)]);
        assert_eq!(committed_offset(&store, "g", 0), Some(5));
        assert!(pending_at(&store, "g", 0));
        store.apply(&completed(7, true));
        assert_eq!(committed_offset(&store, "g", 0), Some(10));
        assert!(!pending_at(&store, "g", 0) && !store.pending.has_group("g"));

        let mut store = store_of(&[commit("g", 0, 5, 1), txn(7, "g", 0, 10, 2), completed(7, false)]);
        assert_eq!(committed_offset(&store, "g", 0), Some(5));
        assert!(!pending_at(&store, "g", 0));
        store.apply(&completed(7, true));
        assert_eq!(committed_offset(&store, "g", 0), Some(5), "a second marker finds nothing to commit");
    }

    #[test]
    fn of_a_commit_and_a_transactional_offset_the_one_placed_later_wins() {
        // Proves Kafka's rule for a mix of commits and transactional
        // commits: when the transaction commits, its offset replaces the
        // committed one only if it was placed after it (larger sequence),
        // whichever moment the completion itself comes.
        let store = store_of(&[txn(7, "g", 0, 10, 1), commit("g", 0, 20, 2), completed(7, true)]);
        assert_eq!(committed_offset(&store, "g", 0), Some(20), "the commit placed after the transactional one stays");
        let store = store_of(&[commit("g", 0, 20, 1), txn(7, "g", 0, 10, 2), completed(7, true)]);
        assert_eq!(committed_offset(&store, "g", 0), Some(10));
        let store = store_of(&[txn(7, "g", 0, 10, 2), completed(7, true), commit("g", 0, 30, 3)]);
        assert_eq!(committed_offset(&store, "g", 0), Some(30), "a commit after the completion wins");
        // A partition never committed takes the transactional offset.
        let store = store_of(&[txn(7, "g", 1, 4, 1), completed(7, true)]);
        assert_eq!(committed_offset(&store, "g", 1), Some(4));
    }

    #[test]
    fn producers_complete_independently_and_the_later_record_wins_among_them() {
        // Proves two producers' pending offsets of one partition are kept
        // apart, each completion moves only its own, and of two committed
        // transactions the offset placed later stays whatever the order of
        // their completions.
        let store = store_of(&[txn(7, "g", 0, 10, 1), txn(8, "g", 0, 11, 2), completed(8, true), completed(7, true)]);
        assert_eq!(committed_offset(&store, "g", 0), Some(11));
        let mut store = store_of(&[txn(7, "g", 0, 10, 1), txn(8, "g", 0, 11, 2), completed(7, true)]);
        assert_eq!(committed_offset(&store, "g", 0), Some(10));
        assert!(pending_at(&store, "g", 0), "producer 8's offset is still pending");
        store.apply(&completed(8, false));
        assert_eq!(committed_offset(&store, "g", 0), Some(10));
        assert!(!store.pending.has_group("g"));
    }

    #[test]
    fn a_later_transactional_commit_of_a_partition_replaces_the_pending_one() {
        // Proves a producer's second TxnOffsetCommit of a partition
        // replaces its pending offset there (and only there), and that a
        // completion covers every group the producer committed to.
        let store =
            store_of(&[txn(7, "g", 0, 10, 1), txn(7, "g", 1, 3, 2), txn(7, "g", 0, 12, 3), txn(7, "h", 0, 99, 4)]);
        assert_eq!(store.pending.get(7, "g", &("t".into(), 0)).map(|p| p.offset.offset), Some(12));
        assert_eq!(store.pending.records_of("g").len(), 2);
        let mut groups = store.pending.groups_of(7);
        groups.sort();
        assert_eq!(groups, vec!["g".to_string(), "h".to_string()]);
        let mut store = store;
        store.apply(&completed(7, true));
        assert_eq!(
            (committed_offset(&store, "g", 0), committed_offset(&store, "g", 1), committed_offset(&store, "h", 0)),
            (Some(12), Some(3), Some(99))
        );
    }

    #[test]
    fn deletions_remove_pending_offsets_too() {
        // Proves Kafka's tombstone rule: deleting an offset (OffsetDelete,
        // retention) drops every producer's pending offset of that
        // partition, deleting a group drops all of its pending offsets,
        // and a later commit of the transaction commits nothing there.
        let mut store = store_of(&[
            commit("g", 0, 5, 1),
            txn(7, "g", 0, 10, 2),
            txn(8, "g", 0, 11, 3),
            txn(7, "g", 1, 1, 4),
            txn(7, "h", 0, 2, 5),
        ]);
        store.apply(&GroupRecord::OffsetDeleted { group: "g".into(), topic: "t".into(), partition: 0 });
        assert!(!pending_at(&store, "g", 0));
        assert!(pending_at(&store, "g", 1));
        assert_eq!(committed_offset(&store, "g", 0), None);
        store.apply(&GroupRecord::GroupDeleted { group: "g".into() });
        assert!(!store.pending.has_group("g"));
        assert_eq!(store.pending.groups_of(7), vec!["h".to_string()]);
        assert!(store.pending.groups_of(8).is_empty());
        store.apply(&completed(7, true));
        store.apply(&completed(8, true));
        assert_eq!(committed_offset(&store, "g", 0), None);
        assert_eq!(committed_offset(&store, "g", 1), None);
        assert_eq!(committed_offset(&store, "h", 0), Some(2));
        assert!(store.group_ids().iter().all(|id| id == "h"));
    }

    #[test]
    fn producer_epochs_only_grow_and_expire_once_nothing_is_pending() {
        // Proves the last epoch seen of a producer is the largest of its
        // records', survives its completion, and is forgotten only after
        // the expiration with nothing pending.
        let mut store = store_of(&[
            GroupRecord::TxnOffsetCommit { producer_id: 7, producer_epoch: 4, offset: offset("g", 0, 1, 1) },
            GroupRecord::TxnProducer { producer_id: 7, producer_epoch: 2, timestamp_ms: 0 },
        ]);
        assert_eq!(store.pending.producer(7).map(|p| p.epoch), Some(4));
        store.pending.note_producer(8, 1, 100);
        assert_eq!(store.pending.expire_producers(1_000_000, 10), 1, "producer 8, idle and with nothing pending");
        assert!(store.pending.producer(7).is_some(), "producer 7 has a pending offset");
        store.apply(&GroupRecord::TxnCompleted {
            producer_id: 7,
            producer_epoch: 5,
            commit: false,
            timestamp_ms: 2_000,
        });
        assert_eq!(store.pending.producer(7), Some(ProducerSeen { epoch: 5, timestamp_ms: 2_000 }));
        assert_eq!(store.pending.expire_producers(2_005, 10), 0);
        assert_eq!(store.pending.expire_producers(2_010, 10), 1);
        assert_eq!(store.pending.producer(7), None);
    }

    #[test]
    fn every_record_type_replays_through_the_log_encoding() {
        // Proves replaying a mixed history decoded from its encoding gives
        // the state applying the records directly gives: every record type,
        // transactional ones included, survives encode and decode with the
        // meaning replay gives it.
        let history = vec![
            commit("g", 0, 5, 1),
            txn(7, "g", 0, 10, 2),
            txn(8, "g", 1, 11, 3),
            GroupRecord::ClassicGroup(records::ClassicGroupRecord { group: "g".into(), ..Default::default() }),
            commit("g", 0, 6, 4),
            completed(7, true),
            txn(9, "h", 0, 1, 5),
            GroupRecord::OffsetDeleted { group: "h".into(), topic: "t".into(), partition: 0 },
            txn(9, "k", 2, 1, 6),
            GroupRecord::GroupDeleted { group: "gone".into() },
            GroupRecord::TxnProducer { producer_id: 10, producer_epoch: 3, timestamp_ms: 1 },
        ];
        let decoded = records::decode_batch(&records::encode_batch(&history)).unwrap();
        assert_eq!(decoded, history);
        let store = store_of(&decoded);
        assert_eq!(committed_offset(&store, "g", 0), Some(6), "the commit placed after producer 7's offset");
        assert!(pending_at(&store, "g", 1) && pending_at(&store, "k", 2));
        assert!(!store.pending.has_group("h"));
        assert_eq!(store.pending.producer(10).map(|p| p.epoch), Some(3));
    }

    #[test]
    fn a_snapshot_restates_pending_offsets_and_epochs_and_keeps_the_order() {
        // Proves what compaction writes (every group's committed and
        // pending offsets with their sequence numbers, and the producers'
        // epochs) rebuilds the same state alone, and that replaying it
        // after the records it restates (a crash during compaction) or only
        // part of it changes nothing: a later completion still lets the
        // commit placed after the transactional offset win.
        let history = vec![
            txn(7, "g", 0, 10, 1),
            commit("g", 0, 20, 2),
            txn(8, "g", 1, 30, 3),
            GroupRecord::TxnCompleted { producer_id: 9, producer_epoch: 6, commit: false, timestamp_ms: 50 },
        ];
        let live = store_of(&history);
        let mut snapshot: Vec<GroupRecord> = live.group_ids().iter().flat_map(|id| live.records_of(id)).collect();
        snapshot.extend(live.pending.producer_records());
        let alone = store_of(&snapshot);
        assert_eq!(state(&alone), state(&live));
        for cut in 0..=snapshot.len() {
            let mut replay = history.clone();
            replay.extend(snapshot[..cut].iter().cloned());
            let mut store = store_of(&replay);
            assert_eq!(state(&store), state(&live), "old records and {cut} snapshot records");
            store.apply(&completed(7, true));
            assert_eq!(committed_offset(&store, "g", 0), Some(20), "after {cut} snapshot records");
        }
        let mut alone = alone;
        alone.apply(&completed(7, true));
        alone.apply(&completed(8, true));
        assert_eq!((committed_offset(&alone, "g", 0), committed_offset(&alone, "g", 1)), (Some(20), Some(30)));
        assert_eq!(alone.pending.producer(9).map(|p| p.epoch), Some(6));
    }
}

/// `complete_for_producer` and TxnOffsetCommit on a real shard core with
/// its group log on disk (`group::testing`): durability across restarts and
/// compaction, fencing, and the interplay with deletion and retention.
#[cfg(test)]
mod shard_tests {
    use super::*;
    use crate::group::testing::with_shard;
    use crate::group::{admin, offsets};

    const TOPICS: &[(&str, i32)] = &[("t", 4)];

    async fn resolve(step: Step<Vec<i16>>) -> Vec<i16> {
        match step {
            Step::Now(codes) => codes,
            Step::Wait(answer) => answer.await.expect("answered"),
        }
    }

    fn partitions(offsets: &[(i32, i64)]) -> Vec<CommitPartition> {
        offsets
            .iter()
            .map(|(partition, offset)| CommitPartition {
                topic: "t".into(),
                partition: *partition,
                offset: *offset,
                leader_epoch: -1,
                metadata: Some(format!("m{offset}")),
            })
            .collect()
    }

    /// A TxnOffsetCommit without group metadata (as below v3).
    async fn txn_commit(shard: &Rc<Shard>, group: &str, producer: (i64, i16), offsets: &[(i32, i64)]) -> Vec<i16> {
        let request = TxnCommitRequest {
            group_id: group.into(),
            producer_id: producer.0,
            producer_epoch: producer.1,
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            partitions: partitions(offsets),
        };
        resolve(commit(shard, request).await).await
    }

    /// A simple OffsetCommit (generation -1, no member).
    async fn plain_commit(shard: &Rc<Shard>, group: &str, offsets: &[(i32, i64)]) -> Vec<i16> {
        resolve(offsets::commit(shard, group, "", None, -1, 8, partitions(offsets)).await).await
    }

    /// (offset, error code) of `partition` as OffsetFetch answers it.
    fn fetched(shard: &Rc<Shard>, group: &str, partition: i32, require_stable: bool) -> (i64, i16) {
        let topics = Some(vec![("t".to_string(), vec![partition])]);
        let answer = offsets::fetch(shard, group, topics, require_stable);
        let fetched = &answer[0].1[0].1;
        (fetched.offset, fetched.error_code)
    }

    const UNSTABLE: i16 = 88;
    const INVALID_PRODUCER_EPOCH: i16 = 47;

    async fn compact(shard: &Rc<Shard>) {
        let log = shard.groups.log().unwrap();
        assert!(log.compact(|| shard.groups.snapshot()).await.unwrap() > 0);
    }

    #[test]
    fn a_committed_transaction_makes_its_offsets_committed_durably() {
        // Proves the whole path on a real group log: a TxnOffsetCommit is
        // durable while pending (a restart keeps it pending: OffsetFetch
        // shows the old offset, require_stable says UNSTABLE_OFFSET_COMMIT),
        // the commit completion makes it the committed offset durably, and
        // nothing stays pending after another restart.
        let dir = tempfile::tempdir().unwrap();
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert_eq!(plain_commit(&shard, "g", &[(0, 5)]).await, vec![0]);
            assert_eq!(txn_commit(&shard, "g", (7, 0), &[(0, 10), (1, 3)]).await, vec![0, 0]);
            assert_eq!(fetched(&shard, "g", 0, false), (5, 0));
            assert_eq!(fetched(&shard, "g", 0, true), (-1, UNSTABLE));
            assert_eq!(fetched(&shard, "g", 1, false), (-1, 0));
            assert_eq!(fetched(&shard, "g", 1, true), (-1, UNSTABLE));
            assert_eq!(fetched(&shard, "g", 2, true), (-1, 0), "a partition with nothing pending is stable");
        });
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert_eq!(fetched(&shard, "g", 0, false), (5, 0), "pending across the restart");
            assert_eq!(fetched(&shard, "g", 0, true), (-1, UNSTABLE));
            assert!(shard.groups.exists("g"));
            complete_for_producer(&shard, 7, 0, true).await.unwrap();
            assert_eq!(fetched(&shard, "g", 0, true), (10, 0));
            assert_eq!(fetched(&shard, "g", 1, true), (3, 0));
        });
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert_eq!((fetched(&shard, "g", 0, true), fetched(&shard, "g", 1, true)), ((10, 0), (3, 0)));
            assert!(!shard.groups.offsets().pending.has_group("g"));
        });
    }

    #[test]
    fn an_aborted_transaction_leaves_the_committed_offsets() {
        // Proves an abort completion drops the pending offsets durably, and
        // that a repeated completion (markers are retried), even a commit,
        // then finds nothing and succeeds.
        let dir = tempfile::tempdir().unwrap();
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert_eq!(plain_commit(&shard, "g", &[(0, 5)]).await, vec![0]);
            assert_eq!(txn_commit(&shard, "g", (7, 0), &[(0, 10)]).await, vec![0]);
            complete_for_producer(&shard, 7, 0, false).await.unwrap();
            assert_eq!(fetched(&shard, "g", 0, true), (5, 0));
        });
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert_eq!(fetched(&shard, "g", 0, true), (5, 0));
            complete_for_producer(&shard, 7, 0, false).await.unwrap();
            complete_for_producer(&shard, 7, 0, true).await.unwrap();
            assert_eq!(fetched(&shard, "g", 0, true), (5, 0));
        });
    }

    #[test]
    fn the_record_placed_later_wins_across_compaction_and_restart() {
        // Proves the order of a commit and a transactional commit of one
        // partition survives compaction and a restart (sequence numbers):
        // a commit placed after the transactional offset stays when the
        // transaction commits later; one placed before is replaced.
        let dir = tempfile::tempdir().unwrap();
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert_eq!(txn_commit(&shard, "after", (7, 0), &[(0, 10)]).await, vec![0]);
            assert_eq!(plain_commit(&shard, "after", &[(0, 20)]).await, vec![0]);
            assert_eq!(plain_commit(&shard, "before", &[(0, 20)]).await, vec![0]);
            assert_eq!(txn_commit(&shard, "before", (7, 0), &[(0, 10)]).await, vec![0]);
            compact(&shard).await;
        });
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert_eq!(fetched(&shard, "after", 0, false), (20, 0));
            assert_eq!(fetched(&shard, "before", 0, false), (20, 0));
            // A commit after the restart is numbered above the replayed ones.
            assert_eq!(plain_commit(&shard, "later", &[(0, 1)]).await, vec![0]);
            assert_eq!(txn_commit(&shard, "later", (7, 0), &[(0, 2)]).await, vec![0]);
            complete_for_producer(&shard, 7, 0, true).await.unwrap();
            assert_eq!(fetched(&shard, "after", 0, true), (20, 0), "the later commit stays");
            assert_eq!(fetched(&shard, "before", 0, true), (10, 0), "the later transactional offset wins");
            assert_eq!(fetched(&shard, "later", 0, true), (2, 0));
        });
    }

    #[test]
    fn stale_producer_epochs_are_fenced_and_the_epoch_outlives_compaction() {
        // Proves Kafka's producer-epoch fencing on the offsets log: a
        // TxnOffsetCommit or a completion older than the last epoch seen
        // is refused (INVALID_PRODUCER_EPOCH) and changes nothing; a newer
        // completion ends the transaction and fences the old epoch from
        // then on, also with nothing pending, also after compaction and a
        // restart (TxnProducer records); a completion for a producer never
        // seen succeeds and fences too.
        let dir = tempfile::tempdir().unwrap();
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert_eq!(txn_commit(&shard, "g", (7, 5), &[(0, 10)]).await, vec![0]);
            assert_eq!(txn_commit(&shard, "g", (7, 4), &[(0, 11), (1, 1)]).await, vec![INVALID_PRODUCER_EPOCH; 2]);
            assert_eq!(complete_for_producer(&shard, 7, 4, true).await, Err(ErrorCode::InvalidProducerEpoch));
            assert_eq!(fetched(&shard, "g", 0, true), (-1, UNSTABLE), "still pending");
            complete_for_producer(&shard, 7, 6, false).await.unwrap();
            assert_eq!(fetched(&shard, "g", 0, true), (-1, 0));
            assert_eq!(txn_commit(&shard, "g", (7, 5), &[(0, 12)]).await, vec![INVALID_PRODUCER_EPOCH]);
            complete_for_producer(&shard, 99, 3, true).await.unwrap();
            assert_eq!(complete_for_producer(&shard, 99, 2, true).await, Err(ErrorCode::InvalidProducerEpoch));
            compact(&shard).await;
        });
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert_eq!(txn_commit(&shard, "g", (7, 5), &[(0, 12)]).await, vec![INVALID_PRODUCER_EPOCH]);
            assert_eq!(complete_for_producer(&shard, 99, 2, false).await, Err(ErrorCode::InvalidProducerEpoch));
            assert_eq!(txn_commit(&shard, "g", (7, 6), &[(0, 13)]).await, vec![0]);
            complete_for_producer(&shard, 7, 6, true).await.unwrap();
            assert_eq!(fetched(&shard, "g", 0, true), (13, 0));
        });
    }

    #[test]
    fn a_completion_covers_every_group_and_deletions_drop_pending_offsets() {
        // Proves one completion commits the producer's offsets in every
        // group of the shard, and that DeleteGroups (of a group known only
        // by its pending offsets) and OffsetDelete delete pending offsets,
        // durably, so the completion commits nothing there.
        let dir = tempfile::tempdir().unwrap();
        with_shard(dir.path(), TOPICS, |shard| async move {
            for group in ["kept", "deleted", "trimmed"] {
                assert_eq!(txn_commit(&shard, group, (7, 0), &[(0, 10), (1, 11)]).await, vec![0, 0]);
            }
            let step = admin::delete_group(&shard, "deleted").await;
            let code = match step {
                Step::Now(code) => code,
                Step::Wait(answer) => answer.await.unwrap(),
            };
            assert_eq!(code, 0, "a group with only pending offsets is Empty and may be deleted");
            let step = admin::delete_offsets(&shard, "trimmed", vec![("t".into(), vec![0])]).await;
            let answer = match step {
                Step::Now(answer) => answer,
                Step::Wait(answer) => answer.await.unwrap(),
            };
            assert_eq!(answer, Ok(vec![("t".to_string(), vec![(0, 0)])]));
            assert_eq!(fetched(&shard, "trimmed", 0, true), (-1, 0), "no longer pending");
        });
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert!(!shard.groups.exists("deleted"));
            complete_for_producer(&shard, 7, 0, true).await.unwrap();
            assert_eq!((fetched(&shard, "kept", 0, true), fetched(&shard, "kept", 1, true)), ((10, 0), (11, 0)));
            assert_eq!(fetched(&shard, "deleted", 0, true), (-1, 0));
            assert_eq!((fetched(&shard, "trimmed", 0, true), fetched(&shard, "trimmed", 1, true)), ((-1, 0), (11, 0)));
        });
    }

    #[test]
    fn retention_spares_partitions_and_groups_with_pending_offsets() {
        // Proves Kafka's cleanupExpiredOffsets rules: long after the
        // retention, an offset whose partition has a pending transactional
        // offset does not expire (the others do) and the group is not
        // deleted; a group with only pending offsets is left alone; once
        // the transaction is aborted both go.
        let dir = tempfile::tempdir().unwrap();
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert_eq!(plain_commit(&shard, "s", &[(0, 1), (1, 1)]).await, vec![0, 0]);
            assert_eq!(txn_commit(&shard, "s", (7, 0), &[(0, 2)]).await, vec![0]);
            assert_eq!(txn_commit(&shard, "only-pending", (7, 0), &[(0, 2)]).await, vec![0]);
            let later = crate::partition::now_ms() + 30 * 24 * 3_600_000;
            let expiry = shard.groups.expiry_records(later);
            assert_eq!(
                expiry,
                vec![GroupRecord::OffsetDeleted { group: "s".into(), topic: "t".into(), partition: 1 }],
                "only the partition without a pending offset"
            );
            complete_for_producer(&shard, 7, 0, false).await.unwrap();
            let mut expiry = shard.groups.expiry_records(later);
            expiry.sort_by_key(|record| format!("{record:?}"));
            let deleted = |group: &str| GroupRecord::GroupDeleted { group: group.into() };
            let offset = |partition| GroupRecord::OffsetDeleted { group: "s".into(), topic: "t".into(), partition };
            assert_eq!(expiry, vec![deleted("only-pending"), deleted("s"), offset(0), offset(1)]);
        });
    }

    #[test]
    fn offsets_placed_but_not_yet_durable_count_as_pending_for_stable_fetches() {
        // Proves a require_stable fetch treats a transactional offset whose
        // append is in flight as pending (Kafka reads the uncommitted
        // timeline then), and stops once the append is applied or failed.
        let dir = tempfile::tempdir().unwrap();
        with_shard(dir.path(), TOPICS, |shard| async move {
            let in_flight = shard.groups.txn_offsets_in_flight(vec![("g".into(), ("t".into(), 3))]);
            assert_eq!(fetched(&shard, "g", 3, true), (-1, UNSTABLE));
            assert_eq!(fetched(&shard, "g", 3, false), (-1, 0));
            assert_eq!(fetched(&shard, "g", 2, true), (-1, 0));
            drop(in_flight);
            assert_eq!(fetched(&shard, "g", 3, true), (-1, 0));
        });
    }

    #[test]
    fn unknown_partitions_and_oversized_metadata_are_answered_per_partition() {
        // Proves per-partition answers: an unknown topic or partition gets
        // UNKNOWN_TOPIC_OR_PARTITION even when the request also fails for
        // the group (then the known ones get the group's error), metadata
        // over offset.metadata.max.bytes OFFSET_METADATA_TOO_LARGE, and the
        // rest is placed; a request naming only unknown partitions creates
        // no group.
        let dir = tempfile::tempdir().unwrap();
        with_shard(dir.path(), TOPICS, |shard| async move {
            let mut request = TxnCommitRequest {
                group_id: "g".into(),
                producer_id: 7,
                producer_epoch: 0,
                generation_id: 3,
                member_id: "stranger".into(),
                group_instance_id: None,
                partitions: partitions(&[(0, 1), (9, 1)]),
            };
            request.partitions[1].topic = "t".into();
            let unknown_topic = CommitPartition { topic: "nope".into(), ..partitions(&[(0, 1)]).remove(0) };
            request.partitions.push(unknown_topic);
            assert_eq!(resolve(commit(&shard, request.clone()).await).await, vec![22, 3, 3], "ILLEGAL_GENERATION");
            assert!(!shard.groups.exists("g"), "a generation for an unknown group creates nothing");
            request.generation_id = -1;
            request.member_id = String::new();
            request.partitions[0].metadata = Some("x".repeat(4097));
            request.partitions.push(partitions(&[(1, 4)]).remove(0));
            assert_eq!(resolve(commit(&shard, request.clone()).await).await, vec![12, 3, 3, 0]);
            assert!(shard.groups.exists("g"), "created for a commit without generation");
            assert_eq!(fetched(&shard, "g", 1, true), (-1, UNSTABLE));
            assert_eq!(fetched(&shard, "g", 0, true), (-1, 0));
            let only_unknown = TxnCommitRequest { group_id: "h".into(), partitions: partitions(&[(9, 1)]), ..request };
            assert_eq!(resolve(commit(&shard, only_unknown).await).await, vec![3]);
            assert!(!shard.groups.exists("h"));
        });
    }

    #[test]
    fn pending_offsets_and_epochs_follow_their_groups_in_a_hand_over() {
        // Proves a hand-over (a log of a shard that no longer runs, read and
        // adopted at start) carries pending offsets, producer epochs and
        // the order of offset records: the adopted records are numbered
        // after this shard's own, in their old order, so a commit placed
        // after a transactional offset still wins when the transaction
        // commits, and the old epoch is still fenced, also after a restart.
        let old = tempfile::tempdir().unwrap();
        with_shard(old.path(), TOPICS, |shard| async move {
            assert_eq!(txn_commit(&shard, "moved", (7, 2), &[(0, 10), (1, 11)]).await, vec![0, 0]);
            assert_eq!(plain_commit(&shard, "moved", &[(0, 20)]).await, vec![0]);
            complete_for_producer(&shard, 8, 4, false).await.unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        with_shard(dir.path(), TOPICS, |shard| async move {
            for offset in 0..10 {
                assert_eq!(plain_commit(&shard, "local", &[(0, offset)]).await, vec![0]);
            }
        });
        let logs = |root: &std::path::Path| root.join(crate::group::coordinator::OFFSETS_DIR);
        std::fs::rename(logs(old.path()).join("0"), logs(dir.path()).join("1")).unwrap();
        with_shard(dir.path(), TOPICS, move |shard| async move {
            assert!(!logs(&shard.config.data_dir).join("1").exists(), "the orphan log is removed once handed over");
            assert_eq!(fetched(&shard, "moved", 0, false), (20, 0));
            assert_eq!(fetched(&shard, "moved", 0, true), (-1, UNSTABLE));
            assert_eq!(fetched(&shard, "local", 0, true), (9, 0));
            assert_eq!(complete_for_producer(&shard, 8, 3, false).await, Err(ErrorCode::InvalidProducerEpoch));
        });
        with_shard(dir.path(), TOPICS, |shard| async move {
            assert_eq!(complete_for_producer(&shard, 7, 1, true).await, Err(ErrorCode::InvalidProducerEpoch));
            complete_for_producer(&shard, 7, 2, true).await.unwrap();
            assert_eq!(fetched(&shard, "moved", 0, true), (20, 0), "the commit placed after the transactional one");
            assert_eq!(fetched(&shard, "moved", 1, true), (11, 0));
        });
    }
}
