//! Idempotent and transactional producers' state for one partition: Kafka's
//! `ProducerStateManager` and `ProducerAppendInfo`.
//!
//! One [`ProducerStateTable`] per partition, owned by the shard that owns the
//! partition, so it has no locks. For every producer id it keeps the current
//! producer epoch, the coordinator epoch of its last transaction marker, the
//! first offset of its ongoing transaction on this partition (if any) and the
//! metadata of the last [`NUM_BATCHES_TO_RETAIN`] appended batches. With it
//! the broker:
//! - answers a retried batch (same epoch, same first and last sequence as one
//!   of the retained batches) with the offsets it got the first time, appending
//!   nothing ([`SequenceCheck::Duplicate`]);
//! - fences zombies with an older epoch (INVALID_PRODUCER_EPOCH, 47);
//! - refuses gaps and reorderings (OUT_OF_ORDER_SEQUENCE_NUMBER, 45);
//! - refuses a non-transactional batch from a producer with an ongoing
//!   transaction (INVALID_TXN_STATE, 48);
//! - tracks ongoing transactions (a transactional batch from a producer with
//!   none starts one at its base offset) and ends them at COMMIT/ABORT
//!   markers ([`ProducerStateTable::record_marker`]), which gives the first
//!   unstable offset, and so the last stable offset (LSO).
//!
//! The table holds no state that is not in the log: replaying every batch's
//! header (data batches through [`ProducerStateTable::record`], markers
//! through [`ProducerStateTable::record_marker`]) in offset order rebuilds it
//! exactly. Because a transaction may have started arbitrarily far back, the
//! partition also saves the table as a snapshot ([`ProducerStateTable::encode_snapshot`],
//! format in docs/storage.md) and replays only what follows it.
//!
//! Invariants kept here:
//! - an entry with retained batches holds between 1 and
//!   [`NUM_BATCHES_TO_RETAIN`] of them, all of the entry's epoch, oldest
//!   first, with strictly increasing offsets; an entry may hold none when a
//!   marker created it or bumped its epoch (as in Kafka);
//! - `ongoing` holds exactly the (first offset, producer id) of every entry
//!   whose `current_txn_first_offset` is set: at most one per producer;
//! - `unreplicated` holds transactions ended by a marker that may not yet lie
//!   below the high watermark; they stay unstable until it does.
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
//!   never PRODUCER_FENCED, at every Produce version (`checkProducerEpoch`);
//! - a producer id with no state is accepted at any sequence (KIP-360), so the
//!   broker never answers UNKNOWN_PRODUCER_ID (59) to a produce; an entry
//!   that a marker left without batches accepts only sequence 0 at its epoch
//!   (`checkSequence` compares with NO_SEQUENCE);
//! - an idempotent batch with a negative base sequence is INVALID_RECORD (87);
//! - only a non-transactional batch during an ongoing transaction is
//!   INVALID_TXN_STATE; a transactional batch with no ongoing transaction
//!   starts one (`appendDataBatch`);
//! - a marker is checked like a batch for its producer epoch (older than the
//!   current one: INVALID_PRODUCER_EPOCH; TV0/TV1 accept an equal one) and
//!   for its coordinator epoch (older than the last marker's:
//!   TRANSACTION_COORDINATOR_FENCED, 52); it then sets the producer's epoch
//!   (a higher one clears the retained batches and fences the old epoch),
//!   coordinator epoch and last timestamp, and ends the ongoing transaction
//!   if there is one; a marker with none is still written, and completes
//!   nothing (`appendEndTxnMarker`);
//! - the aborted-transaction index entry records the first offset of the next
//!   ongoing transaction of another producer, or the marker offset + 1
//!   (`ProducerStateManager.lastStableOffset`);
//! - producers with an ongoing transaction never expire
//!   (`isProducerExpired`); current Kafka no longer forgets producers when
//!   the log start offset moves (KAFKA-7190), and keeps their ongoing
//!   transactions (the LSO is then held at the log start offset).

use std::collections::{BTreeMap, HashMap};

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
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// The coordinator epoch of a producer that no marker was written for yet.
pub const NO_COORDINATOR_EPOCH: i32 = -1;

/// The sequence Kafka uses for "no sequence" (non-idempotent and control batches).
pub const NO_SEQUENCE: i32 = -1;

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

/// A transaction ended by a marker on this partition (Kafka's `CompletedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch on this partition.
    pub first_offset: i64,
    /// Offset of the marker that ended it.
    pub last_offset: i64,
    pub is_aborted: bool,
    /// What an aborted-transaction index entry records as the LSO when the
    /// marker was written: the first offset of another producer's ongoing
    /// transaction, or the marker offset + 1 (Kafka's `lastStableOffset(txn)`).
    pub last_stable_offset: i64,
}

/// One producer as DescribeProducers (KIP-664) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of the last retained batch, -1 when none is retained.
    pub last_sequence: i32,
    /// Max timestamp of the newest batch, or the newest marker's timestamp.
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// First offset of the ongoing transaction, -1 when none.
    pub current_txn_start_offset: i64,
}

/// Per-partition producer state. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Ongoing transactions: first offset → producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Ended transactions whose marker may still be at or above the high
    /// watermark: first offset → (producer id, marker offset).
    unreplicated: BTreeMap<i64, (i64, i64)>,
}

impl ProducerStateTable {
    pub fn new() -> Self {
        ProducerStateTable::default()
    }

    /// Checks a batch before it is appended. Must be called and followed by
    /// `record` with no await in between (the caller is single-threaded).
    /// For a Produce request carrying several batches for one partition, use
    /// [`ProducerStateTable::check_record_set`] instead.
    pub fn check(&self, batch: &BatchIdentity) -> SequenceCheck {
        self.check_record_set(std::slice::from_ref(batch))
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
                    // Kafka (since KIP-360) accepts any sequence from a
                    // producer id it holds no state for: the state may have
                    // been lost to retention or expiry while the producer was
                    // idle. An entry with no epoch constrains nothing, which
                    // is how `validate` treats this scratch entry.
                    let entry = committed.cloned().unwrap_or_else(|| ProducerEntry::new(NO_PRODUCER_EPOCH));
                    pending.push((batch.producer_id, entry));
                    pending.len() - 1
                }
            };
            let entry = &mut pending[index].1;
            if let reject @ SequenceCheck::Reject { .. } = entry.validate(batch) {
                return reject;
            }
            if entry.current_txn_first_offset.is_some() && !batch.is_transactional {
                return reject(
                    ErrorCode::InvalidTxnState,
                    format!(
                        "producer {}: a non-transactional batch while its transaction from offset {} is ongoing",
                        batch.producer_id,
                        entry.current_txn_first_offset.unwrap_or(-1)
                    ),
                );
            }
            entry.add_batch(batch.producer_epoch, BatchMetadata::pending(batch));
            if batch.is_transactional && entry.current_txn_first_offset.is_none() {
                // Scratch only: the real first offset is known once appended.
                entry.current_txn_first_offset = Some(0);
            }
        }
        SequenceCheck::Append
    }

    /// Whether appending `batch` would start a transaction on this partition
    /// (a transactional batch from a producer with no ongoing transaction here
    /// at the batch's epoch): the moment KIP-890 asks the transaction
    /// coordinator whether the partition is part of the producer's transaction.
    pub fn starts_transaction(&self, batch: &BatchIdentity) -> bool {
        batch.is_transactional
            && !self.producers.get(&batch.producer_id).is_some_and(|entry| {
                entry.current_txn_first_offset.is_some() && entry.producer_epoch == batch.producer_epoch
            })
    }

    /// Records an appended batch (also used to rebuild the table by replaying
    /// the log's batch headers in order after a restart or crash). Does not
    /// validate: the log is the truth. Non-idempotent batches are ignored. A
    /// transactional batch from a producer with no ongoing transaction starts
    /// one at `base_offset`.
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
        entry.last_timestamp = max_timestamp;
        if batch.is_transactional && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(base_offset);
            let previous = self.ongoing.insert(base_offset, batch.producer_id);
            assert!(previous.is_none(), "two transactions start at offset {base_offset}: {previous:?}");
        }
    }

    /// Checks a COMMIT/ABORT marker before it is appended, as Kafka's
    /// `appendEndTxnMarker` does for a marker from the coordinator: an epoch
    /// older than the producer's is INVALID_PRODUCER_EPOCH, a coordinator
    /// epoch older than the last marker's is TRANSACTION_COORDINATOR_FENCED.
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), (ErrorCode, String)> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.producer_epoch {
            return Err((
                ErrorCode::InvalidProducerEpoch,
                format!(
                    "producer {producer_id}: marker epoch {producer_epoch} is older than the current epoch {}",
                    entry.producer_epoch
                ),
            ));
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err((
                ErrorCode::TransactionCoordinatorFenced,
                format!(
                    "producer {producer_id}: coordinator epoch {coordinator_epoch} is older than {} (a zombie coordinator)",
                    entry.coordinator_epoch
                ),
            ));
        }
        Ok(())
    }

    /// Records an appended COMMIT/ABORT marker at `offset` (also on replay):
    /// sets the producer's epoch (a new one clears its batches), coordinator
    /// epoch and last timestamp, and ends its ongoing transaction, returned
    /// as the completed transaction. A marker for a producer with no ongoing
    /// transaction completes nothing. Does not validate.
    pub fn record_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        offset: i64,
        timestamp: i64,
    ) -> Option<CompletedTxn> {
        let entry = self.producers.entry(producer_id).or_insert_with(|| ProducerEntry::new(NO_PRODUCER_EPOCH));
        if let Some(newest) = entry.newest() {
            assert!(
                offset > newest.last_offset,
                "producer {producer_id}: marker offset {offset} not above its last batch's {}",
                newest.last_offset
            );
        }
        if producer_epoch != entry.producer_epoch {
            entry.producer_epoch = producer_epoch;
            entry.batches_len = 0;
        }
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp = timestamp;
        let first_offset = entry.current_txn_first_offset.take()?;
        assert!(
            first_offset < offset,
            "producer {producer_id}: marker {offset} not above its first offset {first_offset}"
        );
        let removed = self.ongoing.remove(&first_offset);
        assert_eq!(removed, Some(producer_id), "ongoing transaction at {first_offset} is not producer {producer_id}'s");
        self.unreplicated.insert(first_offset, (producer_id, offset));
        // `ongoing` now holds only other producers' transactions.
        let last_stable_offset = self.ongoing.keys().next().copied().unwrap_or(offset + 1);
        Some(CompletedTxn { producer_id, first_offset, last_offset: offset, is_aborted: !commit, last_stable_offset })
    }

    /// The first offset that is not yet stable: the first offset of the
    /// oldest ongoing transaction, or of an ended one whose marker is not
    /// yet below `high_watermark` (Kafka's `firstUnstableOffset`). Ended
    /// transactions whose marker is below it are forgotten here.
    pub fn first_unstable_offset(&mut self, high_watermark: i64) -> Option<i64> {
        self.unreplicated.retain(|_, (_, marker_offset)| *marker_offset >= high_watermark);
        let ongoing = self.ongoing.keys().next().copied();
        let unreplicated = self.unreplicated.keys().next().copied();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The first offset of the producer's ongoing transaction, if any.
    pub fn ongoing_transaction(&self, producer_id: i64) -> Option<i64> {
        self.producers.get(&producer_id).and_then(|entry| entry.current_txn_first_offset)
    }

    /// Number of ongoing transactions.
    pub fn ongoing_len(&self) -> usize {
        self.ongoing.len()
    }

    /// The log start offset moved (retention, DeleteRecords): ended
    /// transactions whose marker lies below it are forgotten, as Kafka's
    /// `onLogStartOffsetIncremented` does. Ongoing transactions and
    /// producers stay (KAFKA-7190); the LSO is held at the log start.
    pub fn on_log_start_moved(&mut self, log_start_offset: i64) {
        self.unreplicated.retain(|_, (_, marker_offset)| *marker_offset >= log_start_offset);
    }

    /// Forgets producers idle for at least `producer_id_expiration_ms`
    /// (Kafka's `producer.id.expiration.ms`), measured, as Kafka does, from
    /// their last timestamp (newest batch or marker); a producer with an
    /// ongoing transaction never expires. This is what bounds the table's
    /// size; call it periodically (Kafka: every 10 minutes).
    pub fn remove_expired(&mut self, now_ms: i64, producer_id_expiration_ms: i64) {
        self.producers.retain(|_, entry| {
            entry.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(entry.last_timestamp) < producer_id_expiration_ms
        });
    }

    /// Number of producer ids tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The current epoch and last appended sequence of a producer, if tracked
    /// with at least one retained batch.
    pub fn last_sequence(&self, producer_id: i64) -> Option<(i16, i32)> {
        let entry = self.producers.get(&producer_id)?;
        entry.newest().map(|newest| (entry.producer_epoch, newest.last_sequence))
    }

    /// Every tracked producer, by producer id (DescribeProducers).
    pub fn summaries(&self) -> Vec<ProducerSummary> {
        let mut summaries: Vec<ProducerSummary> = self
            .producers
            .iter()
            .map(|(producer_id, entry)| ProducerSummary {
                producer_id: *producer_id,
                producer_epoch: entry.producer_epoch,
                last_sequence: entry.newest().map_or(NO_SEQUENCE, |newest| newest.last_sequence),
                last_timestamp: entry.last_timestamp,
                coordinator_epoch: entry.coordinator_epoch,
                current_txn_start_offset: entry.current_txn_first_offset.unwrap_or(-1),
            })
            .collect();
        summaries.sort_by_key(|summary| summary.producer_id);
        summaries
    }

    /// The table as a snapshot file's bytes, stating everything appended
    /// below `snapshot_offset` (format: docs/storage.md, "Producer state
    /// snapshot"). Ended transactions still waiting for the high watermark
    /// are not saved: the caller writes the file only once everything below
    /// `snapshot_offset` is durable, which makes them stable.
    pub fn encode_snapshot(&self, snapshot_offset: i64) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + ids.len() * SNAPSHOT_ENTRY_BYTES_MAX + 4);
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&snapshot_offset.to_be_bytes());
        out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for producer_id in ids {
            let entry = &self.producers[producer_id];
            out.extend_from_slice(&producer_id.to_be_bytes());
            out.extend_from_slice(&entry.producer_epoch.to_be_bytes());
            out.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            out.extend_from_slice(&entry.last_timestamp.to_be_bytes());
            out.extend_from_slice(&entry.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            out.push(entry.batches_len as u8);
            for batch in entry.retained() {
                out.extend_from_slice(&batch.first_sequence.to_be_bytes());
                out.extend_from_slice(&batch.last_sequence.to_be_bytes());
                out.extend_from_slice(&batch.first_offset.to_be_bytes());
                out.extend_from_slice(&batch.last_offset.to_be_bytes());
                out.extend_from_slice(&batch.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads a snapshot written by [`ProducerStateTable::encode_snapshot`]:
    /// the table and its snapshot offset. Any damage (magic, version,
    /// length, CRC, an impossible field) is an error naming it.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<(i64, ProducerStateTable), String> {
        if bytes.len() < SNAPSHOT_HEADER_BYTES + 4 {
            return Err(format!("{} bytes is shorter than a snapshot header", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return Err("CRC32C mismatch".into());
        }
        if body[..4] != SNAPSHOT_MAGIC {
            return Err(format!("bad magic {:?}", &body[..4]));
        }
        let version = u16::from_be_bytes(fixed(body, 4));
        if version != SNAPSHOT_VERSION {
            return Err(format!("unknown version {version}"));
        }
        let snapshot_offset = i64::from_be_bytes(fixed(body, 8));
        let count = u32::from_be_bytes(fixed(body, 16)) as usize;
        let mut table = ProducerStateTable::new();
        let mut position = SNAPSHOT_HEADER_BYTES;
        for _ in 0..count {
            let fixed_end = position + SNAPSHOT_ENTRY_FIXED_BYTES;
            if fixed_end > body.len() {
                return Err(format!("entry at byte {position} runs past the end"));
            }
            let producer_id = i64::from_be_bytes(fixed(body, position));
            let producer_epoch = i16::from_be_bytes(fixed(body, position + 8));
            let coordinator_epoch = i32::from_be_bytes(fixed(body, position + 10));
            let last_timestamp = i64::from_be_bytes(fixed(body, position + 14));
            let txn_first_offset = i64::from_be_bytes(fixed(body, position + 22));
            let batches_len = usize::from(body[position + 30]);
            if batches_len > NUM_BATCHES_TO_RETAIN || fixed_end + batches_len * SNAPSHOT_BATCH_BYTES > body.len() {
                return Err(format!("entry at byte {position}: {batches_len} batches do not fit"));
            }
            let mut entry = ProducerEntry::new(producer_epoch);
            entry.coordinator_epoch = coordinator_epoch;
            entry.last_timestamp = last_timestamp;
            position = fixed_end;
            for _ in 0..batches_len {
                entry.add_batch(
                    producer_epoch,
                    BatchMetadata {
                        first_sequence: i32::from_be_bytes(fixed(body, position)),
                        last_sequence: i32::from_be_bytes(fixed(body, position + 4)),
                        first_offset: i64::from_be_bytes(fixed(body, position + 8)),
                        last_offset: i64::from_be_bytes(fixed(body, position + 16)),
                        max_timestamp: i64::from_be_bytes(fixed(body, position + 24)),
                    },
                );
                position += SNAPSHOT_BATCH_BYTES;
            }
            if txn_first_offset >= 0 {
                if table.ongoing.insert(txn_first_offset, producer_id).is_some() {
                    return Err(format!("two transactions start at offset {txn_first_offset}"));
                }
                entry.current_txn_first_offset = Some(txn_first_offset);
            }
            if table.producers.insert(producer_id, entry).is_some() {
                return Err(format!("producer {producer_id} appears twice"));
            }
        }
        if position != body.len() {
            return Err(format!("{} bytes after the last entry", body.len() - position));
        }
        Ok((snapshot_offset, table))
    }
}

/// Producer state snapshot layout (docs/storage.md).
const SNAPSHOT_MAGIC: [u8; 4] = *b"SXPS";
const SNAPSHOT_VERSION: u16 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 20;
const SNAPSHOT_ENTRY_FIXED_BYTES: usize = 31;
const SNAPSHOT_BATCH_BYTES: usize = 32;
const SNAPSHOT_ENTRY_BYTES_MAX: usize = SNAPSHOT_ENTRY_FIXED_BYTES + NUM_BATCHES_TO_RETAIN * SNAPSHOT_BATCH_BYTES;

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

/// One producer's state: its epoch, its newest batches (oldest first) and
/// its transaction on this partition.
#[derive(Debug, Clone)]
struct ProducerEntry {
    producer_epoch: i16,
    batches: [BatchMetadata; NUM_BATCHES_TO_RETAIN],
    batches_len: usize,
    /// Of the last marker written for this producer.
    coordinator_epoch: i32,
    /// Max timestamp of the newest batch, or the newest marker's timestamp:
    /// what expiry is measured from.
    last_timestamp: i64,
    /// First offset of the ongoing transaction on this partition.
    current_txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn new(producer_epoch: i16) -> ProducerEntry {
        ProducerEntry {
            producer_epoch,
            batches: [BatchMetadata::EMPTY; NUM_BATCHES_TO_RETAIN],
            batches_len: 0,
            coordinator_epoch: NO_COORDINATOR_EPOCH,
            last_timestamp: -1,
            current_txn_first_offset: None,
        }
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
        // An entry a marker created or moved to a new epoch holds no batches:
        // like Kafka, its epoch's next sequence is then 0.
        let last_sequence = self.newest().map_or(NO_SEQUENCE, |newest| newest.last_sequence);
        if in_sequence(last_sequence, batch.base_sequence) {
            return SequenceCheck::Append;
        }
        reject(
            ErrorCode::OutOfOrderSequenceNumber,
            format!(
                "producer {} epoch {}: sequence {} does not follow the last appended sequence {last_sequence}",
                batch.producer_id, batch.producer_epoch, batch.base_sequence
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

    fn txn_batch(producer_id: i64, producer_epoch: i16, base_sequence: i32, records: i32) -> BatchIdentity {
        BatchIdentity { producer_id, is_transactional: true, ..batch(producer_epoch, base_sequence, records) }
    }

    #[test]
    fn transactional_batch_starts_a_transaction_at_its_base_offset() {
        // Proves the first transactional batch of a producer starts its transaction at the
        // batch's base offset, later ones join it, and the first unstable offset is the
        // oldest ongoing transaction's start.
        let mut table = ProducerStateTable::new();
        let mut offset = 10;
        assert!(table.starts_transaction(&txn_batch(PRODUCER, 0, 0, 2)));
        append(&mut table, &txn_batch(PRODUCER, 0, 0, 2), &mut offset);
        assert_eq!(table.ongoing_transaction(PRODUCER), Some(10));
        assert!(!table.starts_transaction(&txn_batch(PRODUCER, 0, 2, 1)));
        // Another epoch's batch is not part of this transaction: it would need verifying.
        assert!(table.starts_transaction(&txn_batch(PRODUCER, 1, 0, 1)));
        append(&mut table, &txn_batch(PRODUCER, 0, 2, 1), &mut offset);
        append(&mut table, &txn_batch(7, 0, 0, 1), &mut offset);
        assert_eq!(table.ongoing_transaction(7), Some(13));
        assert_eq!(table.ongoing_len(), 2);
        assert_eq!(table.first_unstable_offset(100), Some(10));
        // Non-transactional idempotent batches never make anything unstable.
        let mut plain = ProducerStateTable::new();
        append(&mut plain, &batch(0, 0, 3), &mut offset);
        assert_eq!(plain.first_unstable_offset(100), None);
        assert!(!plain.starts_transaction(&batch(0, 3, 1)));
    }

    #[test]
    fn non_transactional_batch_during_a_transaction_is_invalid_txn_state() {
        // Proves Kafka's rule: while a producer's transaction is ongoing, a non-transactional
        // batch of it is INVALID_TXN_STATE (48); after the marker it appends, and a
        // transactional batch after plain ones simply starts a transaction.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        append(&mut table, &batch(0, 0, 1), &mut offset);
        append(&mut table, &txn_batch(PRODUCER, 0, 1, 1), &mut offset);
        let error = rejected_with(table.check(&batch(0, 2, 1)));
        assert_eq!(error, ErrorCode::InvalidTxnState);
        assert_eq!(error.code(), 48);
        assert!(table.record_marker(PRODUCER, 0, 0, true, offset, 5).is_some());
        offset += 1;
        append(&mut table, &batch(0, 2, 1), &mut offset);
        // In one record set, a plain batch after a transactional one is refused too.
        let set = [txn_batch(PRODUCER, 0, 3, 1), batch(0, 4, 1)];
        assert_eq!(rejected_with(table.check_record_set(&set)), ErrorCode::InvalidTxnState);
    }

    #[test]
    fn markers_are_fenced_by_producer_and_coordinator_epoch() {
        // Proves a marker older than the producer's epoch is INVALID_PRODUCER_EPOCH (47), an
        // equal or newer one is accepted (TV0/TV1), and one from an older coordinator epoch
        // than the last marker's is TRANSACTION_COORDINATOR_FENCED (52).
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        assert_eq!(table.check_marker(PRODUCER, 0, 0), Ok(()), "an unknown producer's marker is written");
        append(&mut table, &txn_batch(PRODUCER, 3, 0, 1), &mut offset);
        assert_eq!(table.check_marker(PRODUCER, 2, 9).unwrap_err().0, ErrorCode::InvalidProducerEpoch);
        assert_eq!(table.check_marker(PRODUCER, 3, 0), Ok(()));
        assert_eq!(table.check_marker(PRODUCER, 4, 0), Ok(()));
        table.record_marker(PRODUCER, 3, 5, false, offset, 1);
        let (error, _) = table.check_marker(PRODUCER, 3, 4).unwrap_err();
        assert_eq!(error, ErrorCode::TransactionCoordinatorFenced);
        assert_eq!(error.code(), 52);
        assert_eq!(table.check_marker(PRODUCER, 3, 5), Ok(()));
    }

    #[test]
    fn a_marker_with_a_newer_epoch_fences_the_old_one() {
        // Proves a marker written with a bumped epoch (a coordinator's timeout abort) ends the
        // transaction, fences later batches of the old epoch, and makes the new epoch start at
        // sequence 0, as Kafka's ProducerStateEntry.update does.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        append(&mut table, &txn_batch(PRODUCER, 0, 0, 2), &mut offset);
        append(&mut table, &txn_batch(PRODUCER, 0, 2, 2), &mut offset);
        let completed = table.record_marker(PRODUCER, 1, 0, false, offset, 77).unwrap();
        offset += 1;
        assert_eq!(
            completed,
            CompletedTxn {
                producer_id: PRODUCER,
                first_offset: 0,
                last_offset: 4,
                is_aborted: true,
                last_stable_offset: 5
            }
        );
        assert_eq!(rejected_with(table.check(&txn_batch(PRODUCER, 0, 4, 1))), ErrorCode::InvalidProducerEpoch);
        assert_eq!(rejected_with(table.check(&txn_batch(PRODUCER, 1, 3, 1))), ErrorCode::OutOfOrderSequenceNumber);
        append(&mut table, &txn_batch(PRODUCER, 1, 0, 1), &mut offset);
        assert_eq!(table.ongoing_transaction(PRODUCER), Some(5));
        let summary = table.summaries()[0];
        assert_eq!((summary.producer_epoch, summary.last_sequence, summary.coordinator_epoch), (1, 0, 0));
        assert_eq!(summary.current_txn_start_offset, 5);
    }

    #[test]
    fn a_marker_without_an_ongoing_transaction_completes_nothing() {
        // Proves a marker for a producer with no ongoing transaction here (a retry, or a
        // partition the producer never wrote to) is recorded, completes nothing, and still
        // sets the producer's epoch and coordinator epoch; a repeated marker is harmless.
        let mut table = ProducerStateTable::new();
        assert_eq!(table.record_marker(PRODUCER, 2, 1, true, 0, 10), None);
        let summary = table.summaries()[0];
        assert_eq!((summary.producer_epoch, summary.coordinator_epoch, summary.last_timestamp), (2, 1, 10));
        assert_eq!(summary.last_sequence, NO_SEQUENCE);
        assert_eq!(summary.current_txn_start_offset, -1);
        // Its epoch now has no batches: the next sequence is 0.
        assert_eq!(rejected_with(table.check(&txn_batch(PRODUCER, 2, 5, 1))), ErrorCode::OutOfOrderSequenceNumber);
        assert_eq!(table.check(&txn_batch(PRODUCER, 2, 0, 1)), SequenceCheck::Append);
        assert_eq!(table.record_marker(PRODUCER, 2, 1, true, 1, 11), None);
        assert_eq!(table.first_unstable_offset(0), None);
    }

    #[test]
    fn an_ended_transaction_stays_unstable_until_its_marker_is_below_the_high_watermark() {
        // Proves the first unstable offset keeps an ended transaction until its marker lies
        // below the high watermark (Kafka's unreplicated transactions), and that the log start
        // moving past a marker forgets it too.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        append(&mut table, &txn_batch(PRODUCER, 0, 0, 3), &mut offset);
        table.record_marker(PRODUCER, 0, 0, true, 3, 1);
        assert_eq!(table.first_unstable_offset(3), Some(0), "marker at 3 not below a high watermark of 3");
        assert_eq!(table.first_unstable_offset(4), None);
        let mut table = ProducerStateTable::new();
        append(&mut table, &txn_batch(PRODUCER, 0, 0, 3), &mut 0);
        table.record_marker(PRODUCER, 0, 0, true, 3, 1);
        table.on_log_start_moved(4);
        assert_eq!(table.first_unstable_offset(0), None);
    }

    #[test]
    fn an_abort_records_the_next_ongoing_transaction_as_its_lso() {
        // Proves an aborted transaction's index entry records the first offset of another
        // producer's ongoing transaction when there is one, else the marker offset + 1
        // (Kafka's ProducerStateManager.lastStableOffset), and that interleaved transactions
        // end independently.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        append(&mut table, &txn_batch(1, 0, 0, 2), &mut offset); // 0..=1
        append(&mut table, &txn_batch(2, 0, 0, 2), &mut offset); // 2..=3
        append(&mut table, &txn_batch(1, 0, 2, 1), &mut offset); // 4
        let first = table.record_marker(1, 0, 0, false, 5, 1).unwrap();
        assert_eq!((first.first_offset, first.last_offset, first.last_stable_offset), (0, 5, 2));
        assert_eq!(table.first_unstable_offset(6), Some(2));
        let second = table.record_marker(2, 0, 0, false, 6, 1).unwrap();
        assert_eq!((second.first_offset, second.last_offset, second.last_stable_offset), (2, 6, 7));
        assert_eq!(table.first_unstable_offset(7), None);
    }

    #[test]
    fn producers_with_an_ongoing_transaction_never_expire() {
        // Proves expiry (producer.id.expiration.ms) skips a producer whose transaction is
        // ongoing and measures idleness from the newest batch or marker.
        let mut table = ProducerStateTable::new();
        table.record(&txn_batch(1, 0, 0, 1), 0, 1_000);
        table.record(&BatchIdentity { producer_id: 2, ..batch(0, 0, 1) }, 1, 1_000);
        table.record_marker(3, 0, 0, true, 2, 9_000);
        table.remove_expired(12_000, 10_000);
        let left: Vec<i64> = table.summaries().iter().map(|s| s.producer_id).collect();
        assert_eq!(left, vec![1, 3]);
    }

    #[test]
    fn snapshot_round_trips_and_rejects_damage() {
        // Proves a decoded snapshot decides every probe like the table it was taken from,
        // keeps ongoing transactions and coordinator epochs, and that any flipped byte or
        // truncation is refused.
        let mut table = ProducerStateTable::new();
        let mut offset = 0;
        for index in 0..7 {
            append(&mut table, &batch(0, index, 1), &mut offset);
        }
        append(&mut table, &txn_batch(5, 2, 0, 3), &mut offset);
        table.record_marker(9, 4, 3, false, offset, 123);
        offset += 1;
        let bytes = table.encode_snapshot(offset);
        let (snapshot_offset, decoded) = ProducerStateTable::decode_snapshot(&bytes).unwrap();
        assert_eq!(snapshot_offset, offset);
        assert_eq!(decoded.summaries(), table.summaries());
        assert_eq!(decoded.ongoing_transaction(5), Some(7));
        let mut decoded = decoded;
        assert_eq!(decoded.first_unstable_offset(offset), Some(7));
        for probe in [batch(0, 7, 1), batch(0, 5, 1), batch(0, 2, 1), txn_batch(5, 2, 3, 1), txn_batch(9, 4, 0, 1)] {
            assert_eq!(decoded.check(&probe), table.check(&probe), "{probe:?}");
        }
        for position in [0, 5, 9, 17, 25, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x40;
            assert!(ProducerStateTable::decode_snapshot(&damaged).is_err(), "byte {position}");
        }
        assert!(ProducerStateTable::decode_snapshot(&bytes[..bytes.len() - 3]).is_err());
        let empty = ProducerStateTable::new().encode_snapshot(0);
        assert_eq!(ProducerStateTable::decode_snapshot(&empty).unwrap().1.len(), 0);
    }

    #[test]
    fn replay_of_batches_and_markers_rebuilds_transactions() {
        // Proves replaying data batches and markers in log order rebuilds the same ongoing
        // transactions, epochs and decisions as the live table.
        let mut live = ProducerStateTable::new();
        let mut offset = 0;
        // A data batch at its base offset, or a marker (producer, epoch, commit, offset).
        type Logged = Result<(BatchIdentity, i64), (i64, i16, bool, i64)>;
        let mut log: Vec<Logged> = Vec::new();
        for sent in [txn_batch(1, 0, 0, 2), txn_batch(2, 0, 0, 1), txn_batch(1, 0, 2, 1)] {
            let base = append(&mut live, &sent, &mut offset);
            log.push(Ok((sent, base)));
        }
        live.record_marker(1, 0, 0, false, offset, 5);
        log.push(Err((1, 0, false, offset)));
        offset += 1;
        let base = append(&mut live, &txn_batch(1, 0, 3, 1), &mut offset);
        log.push(Ok((txn_batch(1, 0, 3, 1), base)));
        let mut rebuilt = ProducerStateTable::new();
        for entry in &log {
            match *entry {
                Ok((sent, base)) => rebuilt.record(&sent, base, 10_000 + base),
                Err((producer_id, epoch, commit, at)) => {
                    rebuilt.record_marker(producer_id, epoch, 0, commit, at, 5);
                }
            }
        }
        assert_eq!(rebuilt.ongoing_transaction(1), live.ongoing_transaction(1));
        assert_eq!(rebuilt.ongoing_transaction(2), Some(2));
        assert_eq!(rebuilt.first_unstable_offset(100), live.first_unstable_offset(100));
        assert_eq!(rebuilt.check(&txn_batch(1, 0, 4, 1)), live.check(&txn_batch(1, 0, 4, 1)));
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
