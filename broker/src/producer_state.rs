//! Idempotent producers' state for one partition: Kafka's `ProducerStateManager`,
//! without transactions.
//!
//! One [`ProducerStateTable`] per partition, owned by the shard that owns the
//! partition, so it has no locks. For every producer id it keeps the current
//! producer epoch and the metadata of the last [`NUM_BATCHES_TO_RETAIN`]
//! appended batches. With it the broker:
//! - answers a retried batch (same epoch, same first and last sequence as one
//!   of the retained batches) with the offsets it got the first time, appending
//!   nothing ([`SequenceCheck::Duplicate`]);
//! - fences zombies with an older epoch (INVALID_PRODUCER_EPOCH, 47);
//! - refuses gaps and reorderings (OUT_OF_ORDER_SEQUENCE_NUMBER, 45).
//!
//! The table holds no state that is not in the log: replaying every data
//! batch's header through [`ProducerStateTable::record`] in offset order
//! rebuilds it exactly, so there is no snapshot file (a restart pays one scan).
//!
//! Transactional batches get the same epoch and sequence checks; transaction
//! state (ongoing transactions, markers, the last stable offset) is not kept
//! here, and control batches must not be passed in.
//!
//! Invariants kept here:
//! - an entry exists only after at least one batch was recorded, so it always
//!   holds between 1 and [`NUM_BATCHES_TO_RETAIN`] batches;
//! - all retained batches of a producer carry the entry's epoch (a new epoch
//!   clears them), oldest first, with strictly increasing offsets.
//!
//! Behaviour verified against Apache Kafka's trunk (`ProducerAppendInfo`,
//! `ProducerStateEntry`, `ProducerStateManager`, `UnifiedLog`,
//! `LogValidator`):
//! - the duplicate check runs first, and only against state committed before
//!   the request; the first duplicate in a request answers for the whole request;
//! - a duplicate older than the last 5 batches is not recognised and fails the
//!   sequence check with OUT_OF_ORDER_SEQUENCE_NUMBER (DUPLICATE_SEQUENCE_NUMBER
//!   is no longer sent by Kafka's produce path);
//! - since Kafka 2.7 a stale epoch on produce is INVALID_PRODUCER_EPOCH (47),
//!   not PRODUCER_FENCED;
//! - a producer id with no state is accepted at any sequence (KIP-360), so the
//!   broker never answers UNKNOWN_PRODUCER_ID (59) to a produce;
//! - an idempotent batch with a negative base sequence is INVALID_RECORD (87);
//! - current Kafka no longer forgets producers when the log start offset moves
//!   (KAFKA-7190); it only expires those idle for `producer.id.expiration.ms`.

use std::collections::HashMap;

use protocol::record_batch::header::{
    ATTRIBUTES_POS, BASE_SEQUENCE_POS, HEADER_BYTES, LAST_OFFSET_DELTA_POS, PRODUCER_EPOCH_POS, PRODUCER_ID_POS,
};
use protocol::{ErrorCode, RecordBatch};

/// How many of a producer's most recent batches are kept for duplicate
/// detection: Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`. Clients cap
/// `max.in.flight.requests.per.connection` at 5 for idempotence to match it.
pub const NUM_BATCHES_TO_RETAIN: usize = 5;

/// The producer id of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;

/// The epoch Kafka uses for "no epoch known".
const NO_PRODUCER_EPOCH: i16 = -1;

/// The sequence Kafka uses for "no sequence" (non-idempotent and control batches).
const NO_SEQUENCE: i32 = -1;

/// Kafka's default for the broker setting `producer.id.expiration.ms` (one
/// day), for callers of [`ProducerStateTable::remove_expired`].
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;

/// The producer fields of a batch header: all the table needs to judge a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub last_offset_delta: i32,
    pub is_transactional: bool,
}

impl BatchIdentity {
    /// The identity of a data batch. Control batches (transaction markers)
    /// carry no sequence and must not be passed to the table.
    pub fn of(batch: &RecordBatch) -> BatchIdentity {
        BatchIdentity {
            producer_id: batch.producer_id(),
            producer_epoch: batch.producer_epoch(),
            base_sequence: batch.base_sequence(),
            last_offset_delta: batch.last_offset_delta(),
            is_transactional: batch.is_transactional(),
        }
    }

    /// The identity read straight from the first [`HEADER_BYTES`] of a stored
    /// batch, for rebuilding the table from the log without parsing records.
    /// `None` when the slice is shorter than a header.
    pub fn of_header_bytes(header: &[u8]) -> Option<BatchIdentity> {
        if header.len() < HEADER_BYTES {
            return None;
        }
        let attributes = i16::from_be_bytes(fixed(header, ATTRIBUTES_POS));
        Some(BatchIdentity {
            producer_id: i64::from_be_bytes(fixed(header, PRODUCER_ID_POS)),
            producer_epoch: i16::from_be_bytes(fixed(header, PRODUCER_EPOCH_POS)),
            base_sequence: i32::from_be_bytes(fixed(header, BASE_SEQUENCE_POS)),
            last_offset_delta: i32::from_be_bytes(fixed(header, LAST_OFFSET_DELTA_POS)),
            is_transactional: attributes & protocol::record_batch::attributes::TRANSACTIONAL != 0,
        })
    }

    /// Whether the batch was written by an idempotent (or transactional)
    /// producer; other batches are appended with no tracking at all.
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }

    /// The sequence of the batch's last record: the base sequence plus the
    /// last offset delta, wrapping from `i32::MAX` to 0 as Kafka's
    /// `DefaultRecordBatch.incrementSequence` does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        sequence_add(self.base_sequence, self.last_offset_delta)
    }
}

/// What to do with a batch, decided before it is appended.
#[derive(Debug, Clone, PartialEq)]
pub enum SequenceCheck {
    /// Append it, then call [`ProducerStateTable::record`] with its offsets.
    Append,
    /// The batch was appended before: answer with these offsets and no error,
    /// and append nothing. `max_timestamp` is the original batch's, which is
    /// the log append time to answer with on a `LogAppendTime` topic.
    Duplicate { base_offset: i64, last_offset: i64, max_timestamp: i64 },
    /// Refuse the batch (and, in Kafka, the whole partition's record set) with
    /// this error; `reason` is for the log and the response's error message.
    Reject { error: ErrorCode, reason: String },
}

/// Per-partition idempotent producer state. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
    pub fn new() -> Self {
        ProducerStateTable { producers: HashMap::new() }
    }

    /// Checks a batch before it is appended. Must be called and followed by
    /// `record` with no await in between (the caller is single-threaded).
    /// For a Produce request carrying several batches for one partition, use
    /// [`ProducerStateTable::check_record_set`] instead.
    pub fn check(&self, batch: &BatchIdentity) -> SequenceCheck {
        if !batch.is_idempotent() {
            return SequenceCheck::Append;
        }
        if let Some(reject) = reject_negative_sequence(batch) {
            return reject;
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // Kafka (since KIP-360) accepts any sequence from a producer id it
            // holds no state for: the state may have been lost to retention or
            // expiry while the producer was idle, and refusing would make the
            // producer fail for no fault of its own. UNKNOWN_PRODUCER_ID was
            // the pre-2.5 answer and is no longer sent for produce.
            return SequenceCheck::Append;
        };
        if let Some(duplicate) = entry.find_duplicate(batch) {
            return duplicate;
        }
        entry.validate(batch)
    }

    /// Checks all batches of one partition's record set, in order, as Kafka
    /// does before appending any of them: each batch is checked against the
    /// state left by the batches before it in the set. `Append` means append
    /// them all, then `record` each; `Duplicate` (the first batch that repeats
    /// a committed one) and `Reject` (the first failing batch) answer for the
    /// whole set, which is then not appended at all.
    pub fn check_record_set(&self, batches: &[BatchIdentity]) -> SequenceCheck {
        // Producers touched earlier in this set, with those batches applied.
        // At most one per batch: the set is already bounded by the request size.
        let mut pending: Vec<(i64, ProducerEntry)> = Vec::new();
        for batch in batches.iter().filter(|batch| batch.is_idempotent()) {
            if let Some(reject) = reject_negative_sequence(batch) {
                return reject;
            }
            let committed = self.producers.get(&batch.producer_id);
            // Like Kafka, duplicates are looked up in the state committed
            // before this request only, never among the set's own batches.
            if let Some(duplicate) = committed.and_then(|entry| entry.find_duplicate(batch)) {
                return duplicate;
            }
            let index = match pending.iter().position(|(producer_id, _)| *producer_id == batch.producer_id) {
                Some(index) => index,
                None => {
                    // An unknown producer starts from an entry with no batches,
                    // which `validate` accepts at any sequence, as `check` does.
                    let entry = committed.cloned().unwrap_or_else(|| ProducerEntry::new(batch.producer_epoch));
                    pending.push((batch.producer_id, entry));
                    pending.len() - 1
                }
            };
            let entry = &mut pending[index].1;
            if let reject @ SequenceCheck::Reject { .. } = entry.validate(batch) {
                return reject;
            }
            entry.add_batch(batch.producer_epoch, BatchMetadata::pending(batch));
        }
        SequenceCheck::Append
    }

    /// Records an appended batch (also used to rebuild the table by replaying
    /// the log's batch headers in order after a restart or crash). Does not
    /// validate: the log is the truth. Non-idempotent batches are ignored.
    pub fn record(&mut self, batch: &BatchIdentity, base_offset: i64, max_timestamp: i64) {
        if !batch.is_idempotent() {
            return;
        }
        assert!(base_offset >= 0, "producer {}: base offset {base_offset} is negative", batch.producer_id);
        assert!(
            batch.last_offset_delta >= 0,
            "producer {}: last offset delta {} is negative",
            batch.producer_id,
            batch.last_offset_delta
        );
        let entry = self.producers.entry(batch.producer_id).or_insert_with(|| ProducerEntry::new(batch.producer_epoch));
        if let Some(newest) = entry.newest() {
            // Offsets come from our own log, in order: a regression is our bug.
            assert!(
                base_offset > newest.last_offset,
                "producer {}: base offset {base_offset} not above previous last offset {}",
                batch.producer_id,
                newest.last_offset
            );
        }
        let metadata = BatchMetadata {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            first_offset: base_offset,
            last_offset: base_offset + i64::from(batch.last_offset_delta),
            max_timestamp,
        };
        entry.add_batch(batch.producer_epoch, metadata);
    }

    /// Forgets producers whose newest batch is below the log start offset
    /// (after retention or DeleteRecords), so that the table equals what a
    /// replay of the remaining log would rebuild. Such a producer's next batch
    /// is then accepted at any sequence (see `check`): it loses duplicate
    /// detection, never its ability to write. Note that Kafka since
    /// KAFKA-7190 keeps such producers in memory until they expire; this
    /// keeps a restart and a live broker deciding alike instead.
    pub fn remove_before(&mut self, log_start_offset: i64) {
        self.producers.retain(|_, entry| entry.newest().is_some_and(|newest| newest.last_offset >= log_start_offset));
    }

    /// Forgets producers idle for at least `producer_id_expiration_ms`
    /// (Kafka's `producer.id.expiration.ms`), measured, as Kafka does, from
    /// the max timestamp of their newest batch. This is what bounds the
    /// table's size; call it periodically (Kafka: every 10 minutes).
    pub fn remove_expired(&mut self, now_ms: i64, producer_id_expiration_ms: i64) {
        self.producers.retain(|_, entry| {
            entry.newest().is_some_and(|newest| now_ms.saturating_sub(newest.max_timestamp) < producer_id_expiration_ms)
        });
    }

    /// Number of producer ids tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The current epoch and last appended sequence of a producer, if tracked.
    pub fn last_sequence(&self, producer_id: i64) -> Option<(i16, i32)> {
        let entry = self.producers.get(&producer_id)?;
        entry.newest().map(|newest| (entry.producer_epoch, newest.last_sequence))
    }
}

/// What is kept of one appended batch (Kafka's `BatchMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMetadata {
    first_sequence: i32,
    last_sequence: i32,
    first_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
}

impl BatchMetadata {
    const EMPTY: BatchMetadata = BatchMetadata {
        first_sequence: NO_SEQUENCE,
        last_sequence: NO_SEQUENCE,
        first_offset: -1,
        last_offset: -1,
        max_timestamp: -1,
    };

    /// A batch not yet appended, in `check_record_set`'s scratch state: only
    /// its sequences matter there, since duplicates are never looked up in it.
    fn pending(batch: &BatchIdentity) -> BatchMetadata {
        BatchMetadata {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            ..BatchMetadata::EMPTY
        }
    }
}

/// One producer's state: its epoch and its newest batches, oldest first.
#[derive(Debug, Clone)]
struct ProducerEntry {
    producer_epoch: i16,
    batches: [BatchMetadata; NUM_BATCHES_TO_RETAIN],
    batches_len: usize,
}

impl ProducerEntry {
    fn new(producer_epoch: i16) -> ProducerEntry {
        ProducerEntry { producer_epoch, batches: [BatchMetadata::EMPTY; NUM_BATCHES_TO_RETAIN], batches_len: 0 }
    }

    fn retained(&self) -> &[BatchMetadata] {
        &self.batches[..self.batches_len]
    }

    fn newest(&self) -> Option<&BatchMetadata> {
        self.retained().last()
    }

    /// Adds a batch, first clearing the batches of an older epoch, and drops
    /// the oldest when [`NUM_BATCHES_TO_RETAIN`] are already kept.
    fn add_batch(&mut self, producer_epoch: i16, metadata: BatchMetadata) {
        if producer_epoch != self.producer_epoch {
            self.producer_epoch = producer_epoch;
            self.batches_len = 0;
        }
        if self.batches_len == NUM_BATCHES_TO_RETAIN {
            self.batches.copy_within(1.., 0);
            self.batches_len -= 1;
        }
        self.batches[self.batches_len] = metadata;
        self.batches_len += 1;
        assert!(self.batches_len <= NUM_BATCHES_TO_RETAIN, "batches_len {} over limit", self.batches_len);
    }

    /// A retained batch of the same epoch with exactly the batch's first and
    /// last sequence (Kafka's `findDuplicateBatch`).
    fn find_duplicate(&self, batch: &BatchIdentity) -> Option<SequenceCheck> {
        if batch.producer_epoch != self.producer_epoch {
            return None;
        }
        let last_sequence = batch.last_sequence();
        self.retained()
            .iter()
            .find(|retained| retained.first_sequence == batch.base_sequence && retained.last_sequence == last_sequence)
            .map(|retained| SequenceCheck::Duplicate {
                base_offset: retained.first_offset,
                last_offset: retained.last_offset,
                max_timestamp: retained.max_timestamp,
            })
    }

    /// Kafka's `checkProducerEpoch` then `checkSequence` for a client batch
    /// that is not a duplicate.
    fn validate(&self, batch: &BatchIdentity) -> SequenceCheck {
        let current_epoch = self.producer_epoch;
        if batch.producer_epoch < current_epoch {
            return reject(
                ErrorCode::InvalidProducerEpoch,
                format!(
                    "producer {}: epoch {} is older than the current epoch {current_epoch}",
                    batch.producer_id, batch.producer_epoch
                ),
            );
        }
        // An entry written with no epoch (a client sent epoch -1) constrains
        // nothing, as in Kafka.
        if current_epoch == NO_PRODUCER_EPOCH {
            return SequenceCheck::Append;
        }
        if batch.producer_epoch > current_epoch {
            // A bumped epoch restarts the sequence (the producer reset it).
            if batch.base_sequence == 0 {
                return SequenceCheck::Append;
            }
            return reject(
                ErrorCode::OutOfOrderSequenceNumber,
                format!(
                    "producer {}: new epoch {} (current {current_epoch}) must start at sequence 0, not {}",
                    batch.producer_id, batch.producer_epoch, batch.base_sequence
                ),
            );
        }
        let Some(newest) = self.newest() else {
            // Only `check_record_set`'s scratch entry for an unknown producer
            // has no batches: any sequence, as for an unknown producer.
            return SequenceCheck::Append;
        };
        if in_sequence(newest.last_sequence, batch.base_sequence) {
            return SequenceCheck::Append;
        }
        reject(
            ErrorCode::OutOfOrderSequenceNumber,
            format!(
                "producer {} epoch {}: sequence {} does not follow the last appended sequence {}",
                batch.producer_id, batch.producer_epoch, batch.base_sequence, newest.last_sequence
            ),
        )
    }
}

/// Kafka's `LogValidator` refuses an idempotent batch with no sequence.
fn reject_negative_sequence(batch: &BatchIdentity) -> Option<SequenceCheck> {
    (batch.base_sequence < 0).then(|| {
        reject(
            ErrorCode::InvalidRecord,
            format!("producer {}: invalid base sequence {}", batch.producer_id, batch.base_sequence),
        )
    })
}

fn reject(error: ErrorCode, reason: String) -> SequenceCheck {
    SequenceCheck::Reject { error, reason }
}

/// `next` directly follows `last`, with `i32::MAX` followed by 0.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// `sequence + increment` in sequence space, which wraps from `i32::MAX` to 0.
fn sequence_add(sequence: i32, increment: i32) -> i32 {
    let space = i64::from(i32::MAX) + 1;
    let sum = (i64::from(sequence) + i64::from(increment)).rem_euclid(space);
    i32::try_from(sum).expect("rem_euclid keeps the sum in 0..=i32::MAX")
}

fn fixed<const N: usize>(bytes: &[u8], position: usize) -> [u8; N] {
    bytes[position..position + N].try_into().expect("slice length equals N")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PRODUCER: i64 = 1000;

    fn batch(producer_epoch: i16, base_sequence: i32, records: i32) -> BatchIdentity {
        BatchIdentity {
            producer_id: PRODUCER,
            producer_epoch,
            base_sequence,
            last_offset_delta: records - 1,
            is_transactional: false,
        }
    }

    fn rejected_with(check: SequenceCheck) -> ErrorCode {
        match check {
            SequenceCheck::Reject { error, .. } => error,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// Checks and records `batch` at `next_offset`, returning its base offset.
    fn append(table: &mut ProducerStateTable, batch: &BatchIdentity, next_offset: &mut i64) -> i64 {
        assert_eq!(table.check(batch), SequenceCheck::Append, "{batch:?}");
        let base_offset = *next_offset;
        table.record(batch, base_offset, 10_000 + base_offset);
        *next_offset += i64::from(batch.last_offset_delta) + 1;
        base_offset
    }

    #[test]
    fn first_batch_with_sequence_zero_appends() {
        // A producer's very first batch, at sequence 0, is appended and tracked.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        append(&mut table, &batch(0, 0, 3), &mut offset);
        assert_eq!(table.len(), 1);
        assert_eq!(table.last_sequence(PRODUCER), Some((0, 2)));
    }

    #[test]
    fn in_order_batches_append() {
        // Each batch starting right after the previous one's last sequence appends.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        let mut sequence = 0;
        for records in [1, 4, 2, 7, 1, 3, 5] {
            append(&mut table, &batch(0, sequence, records), &mut offset);
            sequence += records;
        }
        assert_eq!(table.last_sequence(PRODUCER), Some((0, sequence - 1)));
    }

    #[test]
    fn duplicate_of_any_of_last_five_returns_original_offsets() {
        // A retry of any of the 5 newest batches gets its first offsets, timestamp, no append.
        let mut table = ProducerStateTable::new();
        let mut offset = 7;
        let mut sent = Vec::new();
        for index in 0..8 {
            let sent_batch = batch(0, index * 2, 2);
            let base_offset = append(&mut table, &sent_batch, &mut offset);
            sent.push((sent_batch, base_offset));
        }
        for (retry, base_offset) in &sent[3..] {
            let expected = SequenceCheck::Duplicate {
                base_offset: *base_offset,
                last_offset: base_offset + 1,
                max_timestamp: 10_000 + base_offset,
            };
            assert_eq!(table.check(retry), expected);
        }
        // Nothing changed: the next new batch still follows sequence 15.
        assert_eq!(table.check(&batch(0, 16, 1)), SequenceCheck::Append);
    }

    #[test]
    fn duplicate_older_than_last_five_is_out_of_order() {
        // Kafka keeps only 5 batches: an older retry is not recognised and fails the
        // sequence check (OUT_OF_ORDER_SEQUENCE_NUMBER, not DUPLICATE_SEQUENCE_NUMBER).
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        for index in 0..6 {
            append(&mut table, &batch(0, index, 1), &mut offset);
        }
        assert_eq!(rejected_with(table.check(&batch(0, 0, 1))), ErrorCode::OutOfOrderSequenceNumber);
        assert!(matches!(table.check(&batch(0, 1, 1)), SequenceCheck::Duplicate { base_offset: 1, .. }));
    }

    #[test]
    fn partial_overlap_is_not_a_duplicate() {
        // Only an exact (first, last) sequence match is a duplicate; an overlapping range is out of order.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        append(&mut table, &batch(0, 0, 4), &mut offset);
        assert_eq!(rejected_with(table.check(&batch(0, 0, 2))), ErrorCode::OutOfOrderSequenceNumber);
        assert_eq!(rejected_with(table.check(&batch(0, 2, 2))), ErrorCode::OutOfOrderSequenceNumber);
    }

    #[test]
    fn gap_is_out_of_order() {
        // Skipping a sequence number is OUT_OF_ORDER_SEQUENCE_NUMBER (45).
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        append(&mut table, &batch(0, 0, 5), &mut offset);
        let error = rejected_with(table.check(&batch(0, 6, 1)));
        assert_eq!(error, ErrorCode::OutOfOrderSequenceNumber);
        assert_eq!(error.code(), 45);
    }

    #[test]
    fn stale_epoch_is_invalid_producer_epoch() {
        // A batch from an older epoch (a zombie) is INVALID_PRODUCER_EPOCH (47), even at
        // the sequence that would be next.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        append(&mut table, &batch(3, 0, 1), &mut offset);
        let error = rejected_with(table.check(&batch(2, 1, 1)));
        assert_eq!(error, ErrorCode::InvalidProducerEpoch);
        assert_eq!(error.code(), 47);
    }

    #[test]
    fn new_epoch_must_start_at_zero() {
        // A bumped epoch must restart at sequence 0; then the old epoch's batches are
        // fenced and no longer count as duplicates.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        append(&mut table, &batch(0, 0, 2), &mut offset);
        append(&mut table, &batch(0, 2, 2), &mut offset);
        assert_eq!(rejected_with(table.check(&batch(1, 4, 1))), ErrorCode::OutOfOrderSequenceNumber);
        append(&mut table, &batch(1, 0, 1), &mut offset);
        assert_eq!(table.last_sequence(PRODUCER), Some((1, 0)));
        assert_eq!(rejected_with(table.check(&batch(0, 2, 2))), ErrorCode::InvalidProducerEpoch);
        assert_eq!(table.check(&batch(1, 1, 1)), SequenceCheck::Append);
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        // Sequences wrap from i32::MAX to 0, both inside a batch and between batches, and
        // a batch straddling the wrap is recognised as a duplicate by its wrapped range.
        assert_eq!(batch(0, i32::MAX - 1, 4).last_sequence(), 1);
        assert_eq!(batch(0, i32::MAX, 1).last_sequence(), i32::MAX);
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        // An unknown producer may start anywhere (KIP-360), so start near the top.
        append(&mut table, &batch(0, i32::MAX - 2, 3), &mut offset);
        assert_eq!(table.last_sequence(PRODUCER), Some((0, i32::MAX)));
        assert_eq!(rejected_with(table.check(&batch(0, 1, 1))), ErrorCode::OutOfOrderSequenceNumber);
        append(&mut table, &batch(0, 0, 2), &mut offset);

        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        let straddling = batch(0, i32::MAX - 1, 4);
        let base_offset = append(&mut table, &straddling, &mut offset);
        assert_eq!(table.last_sequence(PRODUCER), Some((0, 1)));
        assert!(
            matches!(table.check(&straddling), SequenceCheck::Duplicate { base_offset: b, .. } if b == base_offset)
        );
        append(&mut table, &batch(0, 2, 1), &mut offset);
    }

    #[test]
    fn non_idempotent_batches_are_untouched() {
        // Batches with producer id -1 always append and leave no state behind.
        let mut table = ProducerStateTable::new();
        let plain = BatchIdentity {
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence: -1,
            last_offset_delta: 9,
            is_transactional: false,
        };
        for offset in 0..3 {
            assert_eq!(table.check(&plain), SequenceCheck::Append);
            table.record(&plain, offset * 10, 0);
        }
        assert!(table.is_empty());
        assert_eq!(table.check_record_set(&[plain, plain]), SequenceCheck::Append);
    }

    #[test]
    fn unknown_producer_accepts_any_sequence() {
        // KIP-360: a producer id with no state (e.g. lost to retention) may resume at any
        // sequence; Kafka no longer answers UNKNOWN_PRODUCER_ID to a produce.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        append(&mut table, &batch(4, 1234, 2), &mut offset);
        assert_eq!(table.check(&batch(4, 1236, 1)), SequenceCheck::Append);
        assert_eq!(rejected_with(table.check(&batch(4, 1240, 1))), ErrorCode::OutOfOrderSequenceNumber);
    }

    #[test]
    fn negative_sequence_is_invalid_record() {
        // An idempotent batch with no sequence is INVALID_RECORD (87), as in Kafka's LogValidator.
        let table = ProducerStateTable::new();
        assert_eq!(rejected_with(table.check(&batch(0, -1, 1))), ErrorCode::InvalidRecord);
        assert_eq!(rejected_with(table.check_record_set(&[batch(0, -5, 1)])), ErrorCode::InvalidRecord);
    }

    #[test]
    fn record_set_is_checked_in_order_before_any_append() {
        // Several batches for one partition are judged as a chain; one bad batch refuses
        // the set, and the first duplicate of committed state answers for the whole set.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        append(&mut table, &batch(0, 0, 2), &mut offset);
        let other = BatchIdentity { producer_id: 7, ..batch(9, 50, 1) };
        let chain = [batch(0, 2, 2), other, batch(0, 4, 1), BatchIdentity { base_sequence: 51, ..other }];
        assert_eq!(table.check_record_set(&chain), SequenceCheck::Append);
        let gap = [batch(0, 2, 2), batch(0, 5, 1)];
        assert_eq!(rejected_with(table.check_record_set(&gap)), ErrorCode::OutOfOrderSequenceNumber);
        let retried = [batch(0, 0, 2), batch(0, 2, 1)];
        assert!(matches!(
            table.check_record_set(&retried),
            SequenceCheck::Duplicate { base_offset: 0, last_offset: 1, .. }
        ));
        // Duplicates are looked up in committed state only, like Kafka: a set repeating
        // its own batch is out of order.
        let repeated = [batch(0, 2, 1), batch(0, 2, 1)];
        assert_eq!(rejected_with(table.check_record_set(&repeated)), ErrorCode::OutOfOrderSequenceNumber);
        // Checking a set changes nothing.
        assert_eq!(table.last_sequence(PRODUCER), Some((0, 1)));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn replay_rebuilds_same_decisions() {
        // Replaying the recorded batches in order into a fresh table gives a table that
        // answers every probe exactly like the live one.
        let mut live = ProducerStateTable::new();
        let mut log: Vec<(BatchIdentity, i64, i64)> = Vec::new();
        let mut offset = 0;
        let sends = [
            batch(0, 0, 3),
            batch(0, 3, 1),
            BatchIdentity { producer_id: 5, ..batch(2, 0, 2) },
            batch(1, 0, 2),
            batch(1, 2, 2),
        ];
        for sent in sends {
            let base_offset = append(&mut live, &sent, &mut offset);
            log.push((sent, base_offset, 10_000 + base_offset));
        }
        let mut rebuilt = ProducerStateTable::new();
        for (sent, base_offset, max_timestamp) in &log {
            rebuilt.record(sent, *base_offset, *max_timestamp);
        }
        for probe in [
            batch(0, 3, 1),
            batch(1, 0, 2),
            batch(1, 2, 2),
            batch(1, 4, 1),
            batch(1, 5, 1),
            batch(2, 0, 1),
            batch(2, 3, 1),
        ] {
            assert_eq!(rebuilt.check(&probe), live.check(&probe), "{probe:?}");
        }
        assert_eq!(rebuilt.len(), live.len());
    }

    #[test]
    fn remove_before_drops_old_producers() {
        // Producers whose newest batch lies wholly below the log start offset are forgotten.
        let mut table = ProducerStateTable::new();
        table.record(&BatchIdentity { producer_id: 1, ..batch(0, 0, 5) }, 0, 0);
        table.record(&BatchIdentity { producer_id: 2, ..batch(0, 0, 5) }, 5, 0);
        table.record(&BatchIdentity { producer_id: 1, ..batch(0, 5, 5) }, 10, 0);
        table.remove_before(9);
        assert_eq!(table.len(), 2);
        table.remove_before(10);
        assert_eq!(table.len(), 1);
        assert_eq!(table.last_sequence(2), None);
        assert_eq!(table.last_sequence(1), Some((0, 9)));
        table.remove_before(15);
        assert!(table.is_empty());
    }

    #[test]
    fn remove_expired_drops_idle_producers() {
        // A producer whose newest batch's max timestamp is expiration_ms old or more is forgotten.
        let mut table = ProducerStateTable::new();
        table.record(&BatchIdentity { producer_id: 1, ..batch(0, 0, 1) }, 0, 1_000);
        table.record(&BatchIdentity { producer_id: 2, ..batch(0, 0, 1) }, 1, 5_000);
        table.remove_expired(10_999, 10_000);
        assert_eq!(table.len(), 2);
        table.remove_expired(11_000, 10_000);
        assert_eq!(table.len(), 1);
        assert!(table.last_sequence(2).is_some());
    }

    #[test]
    fn identity_is_read_from_real_batches() {
        // `of` and `of_header_bytes` read the producer fields at Kafka's header positions.
        let mut builder = protocol::record_batch::RecordBatchBuilder::new(protocol::compression::Codec::None)
            .producer(77, 3, 41)
            .transactional(true);
        for index in 0..4u8 {
            builder.push(i64::from(index), None, Some(&[index]), &[]);
        }
        let encoded = builder.build().expect("uncompressed build cannot fail");
        let parsed = RecordBatch::new(encoded.clone(), 0).expect("builder output parses");
        let expected = BatchIdentity {
            producer_id: 77,
            producer_epoch: 3,
            base_sequence: 41,
            last_offset_delta: 3,
            is_transactional: true,
        };
        assert_eq!(BatchIdentity::of(&parsed), expected);
        assert_eq!(BatchIdentity::of_header_bytes(&encoded), Some(expected));
        assert_eq!(BatchIdentity::of_header_bytes(&encoded[..HEADER_BYTES - 1]), None);
        assert_eq!(expected.last_sequence(), 44);
    }

    proptest! {
        /// A producer that sends in order and retries recent batches: new batches append,
        /// retries of the last 5 are duplicates with their original offsets, older retries
        /// are out of order; a replay of the log then decides every probe the same way.
        #[test]
        fn retries_are_deduplicated_within_the_window(
            steps in proptest::collection::vec((1i32..5, 0usize..8, any::<bool>()), 1..60),
            start_sequence in prop_oneof![Just(0i32), Just(i32::MAX - 20), 0i32..1000],
        ) {
            let mut table = ProducerStateTable::new();
            let mut log: Vec<(BatchIdentity, i64, i64)> = Vec::new();
            let mut offset = 0i64;
            let mut sequence = start_sequence;
            for (records, retry_age, retry) in steps {
                if retry && retry_age < log.len() {
                    let (sent, base_offset, max_timestamp) = log[log.len() - 1 - retry_age];
                    let check = table.check(&sent);
                    if retry_age < NUM_BATCHES_TO_RETAIN {
                        let last_offset = base_offset + i64::from(sent.last_offset_delta);
                        prop_assert_eq!(check, SequenceCheck::Duplicate { base_offset, last_offset, max_timestamp });
                    } else {
                        prop_assert_eq!(rejected_with(check), ErrorCode::OutOfOrderSequenceNumber);
                    }
                    continue;
                }
                let sent = batch(0, sequence, records);
                let base_offset = append(&mut table, &sent, &mut offset);
                log.push((sent, base_offset, 10_000 + base_offset));
                sequence = sequence_add(sent.last_sequence(), 1);
            }
            let mut rebuilt = ProducerStateTable::new();
            for (sent, base_offset, max_timestamp) in &log {
                rebuilt.record(sent, *base_offset, *max_timestamp);
            }
            for (sent, _, _) in &log {
                prop_assert_eq!(rebuilt.check(sent), table.check(sent));
            }
            let next = batch(0, sequence, 1);
            prop_assert_eq!(rebuilt.check(&next), SequenceCheck::Append);
            prop_assert_eq!(table.check(&next), SequenceCheck::Append);
        }
    }
}
