//! A partition as its owning shard sees it: the engine's log plus what Kafka
//! keeps beside it (producer state with ongoing transactions, the
//! aborted-transaction index, the topic's effective config) and the rules a
//! produced batch or a transaction marker must pass before it is appended.
//!
//! Offsets, in order, asserted together in [`Partition::last_stable_offset`]:
//! `log_start_offset <= last_stable_offset <= high_watermark <= log_end_offset`.
//! The last stable offset (LSO) is the first offset of the oldest transaction
//! not yet decided (ongoing, or ended by a marker not yet below the high
//! watermark), held at the log start, else the high watermark.
//!
//! Everything here runs on the owning shard only; results that travel back
//! to other shards are plain `Send` values. Operations on one producer id
//! (its batches, its markers) are serialized by a per-producer lock from
//! their check until their offsets are assigned, so no check is ever made
//! against state an in-flight append of the same producer is about to change.
//!
//! Files kept beside the segments (docs/storage.md): `aborted_transactions`
//! ([`crate::aborted_index`]) and `producer_snapshot`
//! ([`ProducerStateTable::encode_snapshot`]), which bounds how much of the
//! log a restart replays however long ago a transaction started.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use engine::{EngineError, FlushPolicy, LogConfig, PartitionLog};
use futures::future::LocalBoxFuture;
use glommio::sync::{Semaphore, StaticPermit};
use protocol::record_batch::builder::{control_batch, ControlMarker, ControlType};
use protocol::record_batch::{self, RecordBatch};
use protocol::ErrorCode;
use uuid::Uuid;

use crate::aborted_index::{self, AbortedIndex, AbortedTxn};
use crate::producer_state::{BatchIdentity, CompletedTxn, ProducerStateTable, ProducerSummary, SequenceCheck};
use crate::topic_config::{EffectiveTopicConfig, TimestampType};

/// The producer state snapshot's file name in a partition directory.
pub const PRODUCER_SNAPSHOT_FILE: &str = "producer_snapshot";

/// A new snapshot is written once this many bytes were appended since the
/// last one (checked after each produce and marker), so a restart replays
/// at most about this much, and always less than the replay window
/// (`PRODUCER_REPLAY_BYTES_MIN`), which is what a directory without a
/// snapshot falls back to.
const SNAPSHOT_INTERVAL_BYTES: u64 = 32 << 20;

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    pub leader_epoch: i32,
    pub log: PartitionLog,
    producers: RefCell<ProducerStateTable>,
    producer_locks: ProducerLocks,
    aborted: AbortedIndex,
    snapshot: SnapshotState,
    config: RefCell<EffectiveTopicConfig>,
}

/// The answer for one partition of a Produce request.
#[derive(Debug, Clone)]
pub struct ProduceOutcome {
    pub error: Option<ErrorCode>,
    pub message: Option<String>,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// Set when the records were appended and acks=all must wait for them
    /// to be durable: every offset below this.
    pub durable_end_offset: Option<i64>,
}

impl ProduceOutcome {
    pub fn error(error: ErrorCode, message: impl Into<String>) -> ProduceOutcome {
        ProduceOutcome {
            error: Some(error),
            message: Some(message.into()),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            durable_end_offset: None,
        }
    }
}

/// A Fetch or ListOffsets request's isolation level (KIP-98).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// 0: everything below the high watermark.
    ReadUncommitted,
    /// 1: only below the last stable offset, with the aborted transactions.
    ReadCommitted,
}

impl IsolationLevel {
    /// The wire value: 1 is read_committed, anything else read_uncommitted.
    pub fn from_wire(isolation_level: i8) -> IsolationLevel {
        if isolation_level == 1 {
            IsolationLevel::ReadCommitted
        } else {
            IsolationLevel::ReadUncommitted
        }
    }
}

/// The answer for one partition of a Fetch request.
#[derive(Debug, Clone, Default)]
pub struct FetchOutcome {
    pub error: Option<ErrorCode>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records: Option<Bytes>,
    /// read_committed only: the aborted transactions overlapping the records.
    pub aborted_transactions: Option<Vec<AbortedTxn>>,
}

impl FetchOutcome {
    pub fn error(error: ErrorCode) -> FetchOutcome {
        FetchOutcome {
            error: Some(error),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            records: None,
            aborted_transactions: None,
        }
    }

    pub fn bytes(&self) -> usize {
        self.records.as_ref().map_or(0, Bytes::len)
    }
}

/// KIP-890 part 1: the question a broker asks the transaction coordinator of
/// `transactional_id` before a transactional batch may start a transaction
/// on a partition: "is this partition part of the ongoing transaction of
/// this producer id and epoch?" (Kafka sends AddPartitionsToTxn v4 with
/// `VerifyOnly`). Without it a late batch of an already ended transaction
/// would open a transaction no marker ever ends (a hanging transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnVerification {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub topic: String,
    pub partition: i32,
}

/// Answers a [`TxnVerification`], possibly on another shard: `Ok(())` when
/// the partition is in the producer's transaction, otherwise the
/// coordinator's error code; [`Partition::produce`] maps it to the Produce
/// error with [`verification_error_for_produce`]. Runs on the partition's
/// shard and must not call back into this partition.
pub type TxnVerifier = Rc<dyn Fn(TxnVerification) -> LocalBoxFuture<'static, Result<(), ErrorCode>>>;

/// What the produce path knows of the request beyond one partition's records.
#[derive(Clone, Copy)]
pub struct ProduceContext<'a> {
    pub produce_version: i16,
    /// The request's transactional id (v3+), `None` when null.
    pub transactional_id: Option<&'a str>,
    /// Asked before a batch starts a transaction; `None` accepts (no
    /// coordinator to ask: the integration point, see handlers/produce.rs).
    pub verifier: Option<&'a TxnVerifier>,
}

/// The Produce error for a coordinator's answer to a [`TxnVerification`], as
/// Kafka's `AddPartitionsToTxnManager` and `ReplicaManager` translate it:
/// PRODUCER_FENCED is INVALID_PRODUCER_EPOCH (older clients treat the former
/// as fatal), CLUSTER_AUTHORIZATION_FAILED and (below Produce v11, which
/// cannot carry it) TRANSACTION_ABORTABLE are INVALID_TXN_STATE, and a
/// coordinator that cannot answer now (and, below v12, CONCURRENT_TRANSACTIONS)
/// is NOT_ENOUGH_REPLICAS, which every client retries without a metadata refresh.
pub fn verification_error_for_produce(error: ErrorCode, produce_version: i16) -> (ErrorCode, String) {
    let not_verified = |underlying: ErrorCode| {
        (
            ErrorCode::NotEnoughReplicas,
            format!("unable to verify the partition has been added to the transaction: {underlying:?}"),
        )
    };
    match error {
        ErrorCode::ProducerFenced => (ErrorCode::InvalidProducerEpoch, "the producer was fenced".into()),
        ErrorCode::ClusterAuthorizationFailed | ErrorCode::InvalidTxnState => {
            (ErrorCode::InvalidTxnState, "partition was not added to the transaction".into())
        }
        ErrorCode::TransactionAbortable if produce_version < 11 => {
            (ErrorCode::InvalidTxnState, "partition was not added to the transaction".into())
        }
        ErrorCode::NetworkException
        | ErrorCode::CoordinatorLoadInProgress
        | ErrorCode::CoordinatorNotAvailable
        | ErrorCode::NotCoordinator => not_verified(error),
        ErrorCode::ConcurrentTransactions if produce_version < 12 => not_verified(error),
        other => (other, format!("transaction verification failed: {other:?}")),
    }
}

/// What [`Partition::write_txn_marker`] appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerOutcome {
    /// The control batch's offset.
    pub marker_offset: i64,
    /// Wait with `partition.log.wait_durable(durable_end_offset)` before
    /// answering that the marker is written (as produce's acks=all does).
    /// An ABORT's index entry is already durable when the outcome is returned.
    pub durable_end_offset: i64,
    /// The transaction the marker ended here; `None` when the producer had
    /// none ongoing on this partition (the marker is written all the same).
    pub completed: Option<CompletedTxn>,
}

/// One producer's lock: see the module docs.
#[derive(Default)]
struct ProducerLocks {
    held: RefCell<HashMap<i64, Rc<Semaphore>>>,
}

struct ProducerLock<'a> {
    locks: &'a ProducerLocks,
    producer_id: i64,
    semaphore: Rc<Semaphore>,
    permit: Option<StaticPermit>,
}

impl ProducerLocks {
    async fn lock(&self, producer_id: i64) -> ProducerLock<'_> {
        let semaphore = self.held.borrow_mut().entry(producer_id).or_insert_with(|| Rc::new(Semaphore::new(1))).clone();
        let permit = semaphore.acquire_static_permit(1).await.expect("producer locks are never closed");
        ProducerLock { locks: self, producer_id, semaphore, permit: Some(permit) }
    }
}

impl Drop for ProducerLock<'_> {
    fn drop(&mut self) {
        drop(self.permit.take());
        // The map's reference and ours: nobody else waits, so the entry goes
        // (the map holds only producers with an operation in flight).
        if Rc::strong_count(&self.semaphore) == 2 {
            self.locks.held.borrow_mut().remove(&self.producer_id);
        }
    }
}

/// Where the producer state snapshot stands.
#[derive(Default)]
struct SnapshotState {
    /// Snapshot offset of the file on disk, if there is one.
    offset: Cell<Option<i64>>,
    bytes_since: Cell<u64>,
    writing: Cell<bool>,
}

/// How much of the newest log a restart replays into the producer table
/// when the partition has no producer state snapshot.
const PRODUCER_REPLAY_BYTES_MIN: u64 = 64 << 20;

/// Largest uncompressed size of one produced batch that the broker will
/// inflate to check its records.
const UNCOMPRESSED_BATCH_BYTES_MAX: usize = 64 << 20;

/// Kafka's leader-epoch fence: a client that names the epoch it believes
/// current (`current`, -1 for none) is told whether it is behind
/// (FENCED_LEADER_EPOCH) or ahead of this leader (UNKNOWN_LEADER_EPOCH).
pub fn check_leader_epoch(current: i32, leader_epoch: i32) -> Result<(), ErrorCode> {
    if current < 0 || current == leader_epoch {
        Ok(())
    } else if current > leader_epoch {
        Err(ErrorCode::UnknownLeaderEpoch)
    } else {
        Err(ErrorCode::FencedLeaderEpoch)
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Partition {
    pub async fn open(
        dir: std::path::PathBuf,
        topic: String,
        topic_id: Uuid,
        index: i32,
        leader_epoch: i32,
        config: EffectiveTopicConfig,
        resources: Rc<engine::ShardResources>,
    ) -> Result<Partition, EngineError> {
        let log = PartitionLog::open(dir, config.log.clone(), resources).await?;
        log.set_leader_epoch(leader_epoch);
        let (log_start, log_end) = (log.log_start_offset(), log.log_end_offset());
        let loaded_index = AbortedIndex::open(log.dir(), log_start, log_end).await?;
        let index_damaged = loaded_index.is_none();
        let aborted = loaded_index
            .unwrap_or_else(|| AbortedIndex::empty(log.dir().join(aborted_index::ABORTED_INDEX_FILE), true));
        let partition = Partition {
            topic,
            topic_id,
            index,
            leader_epoch,
            log,
            producers: RefCell::new(ProducerStateTable::new()),
            producer_locks: ProducerLocks::default(),
            aborted,
            snapshot: SnapshotState::default(),
            config: RefCell::new(config),
        };
        partition.rebuild_producer_state(index_damaged).await?;
        Ok(partition)
    }

    /// Rebuilds the producer table (and any aborted-index entries a crash
    /// lost) after a restart: from the snapshot, then by replaying the log
    /// after its offset. Without a snapshot (a directory from before
    /// snapshots, or a partition that never had producers) the newest
    /// `PRODUCER_REPLAY_BYTES_MIN` of the log are replayed, as before: the
    /// active segment, and older segments until that much is covered. With
    /// a damaged snapshot or index the whole log is replayed: slow, but it
    /// never guesses. Then a snapshot is written, so that whatever was
    /// replayed is never replayed again.
    async fn rebuild_producer_state(&self, index_damaged: bool) -> Result<(), EngineError> {
        let snapshot_path = self.log.dir().join(PRODUCER_SNAPSHOT_FILE);
        let log_start = self.log.log_start_offset();
        let log_end = self.log.log_end_offset();
        let mut producers = ProducerStateTable::new();
        let mut replay_from = match aborted_index::read_small_file(&snapshot_path).await? {
            None => self.replay_window_start(),
            Some(bytes) => match ProducerStateTable::decode_snapshot(&bytes) {
                Ok((offset, table)) if offset <= log_end => {
                    self.snapshot.offset.set(Some(offset));
                    producers = table;
                    offset
                }
                Ok((offset, _)) => {
                    // Written only below durable data, so never past the
                    // recovered end unless the files were tampered with.
                    tracing::warn!(path = %snapshot_path.display(), offset, log_end, "producer snapshot lies past the log end; replaying the whole log");
                    log_start
                }
                Err(reason) => {
                    tracing::warn!(path = %snapshot_path.display(), reason, "producer snapshot is damaged; replaying the whole log");
                    log_start
                }
            },
        };
        if index_damaged {
            replay_from = log_start;
        }
        self.replay(&mut producers, replay_from.max(log_start), log_end).await?;
        self.aborted.sync_all().await?;
        producers.on_log_start_moved(log_start);
        // Everything recovered is durable: every ended transaction is stable.
        producers.first_unstable_offset(log_end);
        *self.producers.borrow_mut() = producers;
        let has_state = !self.producers.borrow().is_empty() || self.snapshot.offset.get().is_some();
        if has_state && self.snapshot.offset.get() != Some(log_end) {
            self.write_snapshot().await?;
        }
        Ok(())
    }

    /// Where a replay without a snapshot starts: see `rebuild_producer_state`.
    fn replay_window_start(&self) -> i64 {
        let mut covered = 0u64;
        let mut first = self.log.log_end_offset();
        for segment in self.log.segments().iter().rev() {
            first = segment.base_offset;
            covered += segment.size_bytes;
            if covered >= PRODUCER_REPLAY_BYTES_MIN {
                break;
            }
        }
        first
    }

    /// Replays the batches in `[from, end)` into `producers`, adding the
    /// aborted-index entries of ABORT markers the index lacks (written to
    /// the file by the caller's `sync_all`).
    async fn replay(&self, producers: &mut ProducerStateTable, from: i64, end: i64) -> Result<(), EngineError> {
        let mut offset = from;
        while offset < end {
            let read = self.log.read(offset, 4 << 20, None).await?;
            if read.records.is_empty() {
                break;
            }
            for run in read.records {
                for batch in record_batch::batches(run, usize::MAX).flatten() {
                    offset = batch.last_offset() + 1;
                    if !batch.is_control() {
                        let identity = BatchIdentity::of(&batch);
                        if identity.is_idempotent() {
                            producers.record(&identity, batch.base_offset(), batch.max_timestamp());
                        }
                        continue;
                    }
                    let Some((marker, timestamp)) = control_marker(&batch) else {
                        continue;
                    };
                    let completed = producers.record_marker(
                        batch.producer_id(),
                        batch.producer_epoch(),
                        marker.coordinator_epoch,
                        marker.control_type == ControlType::Commit,
                        batch.base_offset(),
                        timestamp,
                    );
                    if let Some(txn) = completed.filter(|txn| txn.is_aborted) {
                        self.aborted.add_replayed(aborted_entry(&txn));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn config(&self) -> EffectiveTopicConfig {
        self.config.borrow().clone()
    }

    pub fn set_config(&self, config: EffectiveTopicConfig) -> Result<(), EngineError> {
        self.log.set_config(config.log.clone())?;
        *self.config.borrow_mut() = config;
        Ok(())
    }

    /// The offset consumers may read up to. Under the always-flush policy
    /// (the default) only durable records are visible, so a consumer never
    /// sees a record that a crash could take back; under a relaxed policy
    /// the log end, as in Kafka with one replica.
    pub fn high_watermark(&self) -> i64 {
        if self.reads_durable_only() {
            self.log.durable_offset()
        } else {
            self.log.log_end_offset()
        }
    }

    fn reads_durable_only(&self) -> bool {
        matches!(self.config.borrow().log, LogConfig { flush_policy: FlushPolicy::Always, .. })
    }

    /// Validates and appends one partition's record set from a Produce
    /// request. Returns once the records have offsets; the caller waits for
    /// durability when acks=all.
    ///
    /// The steps, in order: Kafka's batch rules (`check_produced`); for an
    /// idempotent or transactional batch, the producer's lock, then its
    /// epoch, sequence and transaction rules (`ProducerStateTable`); if the
    /// batch would start a transaction here, the KIP-890 verification
    /// (`context.verifier`, skipped when `None`), after which the producer
    /// rules are checked again; then the append and the producer state update.
    pub async fn produce(&self, records: Bytes, context: &ProduceContext<'_>) -> ProduceOutcome {
        let config = self.config();
        let (batch, identity) = match self.check_produced(&records, context.produce_version, &config) {
            Ok(checked) => checked,
            Err(outcome) => return outcome,
        };
        drop(batch);
        if !identity.is_idempotent() {
            return self.append_produced(records, &identity, &config).await;
        }
        let _lock = self.producer_locks.lock(identity.producer_id).await;
        if let Some(answer) = self.check_producer(&identity) {
            return answer;
        }
        if self.producers.borrow().starts_transaction(&identity) {
            if let (Some(verifier), Some(transactional_id)) = (context.verifier, context.transactional_id) {
                let question = TxnVerification {
                    transactional_id: transactional_id.to_owned(),
                    producer_id: identity.producer_id,
                    producer_epoch: identity.producer_epoch,
                    topic: self.topic.clone(),
                    partition: self.index,
                };
                if let Err(answer) = verifier(question).await {
                    let (error, message) = verification_error_for_produce(answer, context.produce_version);
                    return ProduceOutcome::error(error, message);
                }
                // A marker cannot have been written meanwhile (it takes the
                // same lock), but expiry may have dropped the producer.
                if let Some(answer) = self.check_producer(&identity) {
                    return answer;
                }
            }
        }
        self.append_produced(records, &identity, &config).await
    }

    /// The producer rules for one batch: `None` to append, or the answer.
    fn check_producer(&self, identity: &BatchIdentity) -> Option<ProduceOutcome> {
        match self.producers.borrow().check_record_set(std::slice::from_ref(identity)) {
            SequenceCheck::Append => None,
            SequenceCheck::Duplicate { base_offset, .. } => Some(ProduceOutcome {
                error: None,
                message: None,
                base_offset,
                log_append_time_ms: -1,
                log_start_offset: self.log.log_start_offset(),
                durable_end_offset: Some(self.log.log_end_offset()),
            }),
            SequenceCheck::Reject { error, reason } => Some(ProduceOutcome::error(error, reason)),
        }
    }

    async fn append_produced(
        &self,
        records: Bytes,
        identity: &BatchIdentity,
        config: &EffectiveTopicConfig,
    ) -> ProduceOutcome {
        let mut log_append_time_ms = -1;
        let records = if config.timestamp_type == TimestampType::LogAppendTime {
            log_append_time_ms = now_ms();
            let mut owned = BytesMut::from(&records[..]);
            record_batch::set_log_append_time(&mut owned, log_append_time_ms);
            owned.freeze()
        } else {
            records
        };
        let size_bytes = records.len() as u64;
        // `check_produced` verified the CRC and every record; LogAppendTime
        // recomputed the CRC over the rewritten header.
        match self.log.append_verified(records).await {
            Ok(info) => {
                // No await since the offsets were assigned, and the
                // producer's lock is held: the table is exactly as checked.
                self.producers.borrow_mut().record(identity, info.base_offset, info.max_timestamp);
                self.snapshot.bytes_since.set(self.snapshot.bytes_since.get() + size_bytes);
                ProduceOutcome {
                    error: None,
                    message: None,
                    base_offset: info.base_offset,
                    log_append_time_ms,
                    log_start_offset: self.log.log_start_offset(),
                    durable_end_offset: Some(info.last_offset + 1),
                }
            }
            Err(EngineError::InvalidBatch(err)) => ProduceOutcome::error(err.error_code(), err.to_string()),
            Err(err) => {
                tracing::error!(topic = %self.topic, partition = self.index, error = %err, "append failed");
                ProduceOutcome::error(ErrorCode::KafkaStorageError, err.to_string())
            }
        }
    }

    /// Writes a COMMIT (`commit`) or ABORT marker for the producer's
    /// transaction on this partition, as the transaction coordinator asks
    /// with WriteTxnMarkers: Kafka's `appendEndTxnMarker` rules (an epoch
    /// older than the producer's is INVALID_PRODUCER_EPOCH, a newer one
    /// fences the old; a coordinator epoch older than the last marker's is
    /// TRANSACTION_COORDINATOR_FENCED), then the control batch is appended
    /// and ends the ongoing transaction (a marker for a producer with none
    /// is written too, and completes nothing). An ABORT's aborted-index
    /// entry is durable before this returns. The caller waits for the
    /// marker itself with `log.wait_durable(outcome.durable_end_offset)`.
    pub async fn write_txn_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<MarkerOutcome, ErrorCode> {
        if producer_id < 0 || producer_epoch < 0 {
            return Err(ErrorCode::InvalidRequest);
        }
        let _lock = self.producer_locks.lock(producer_id).await;
        if let Err((error, reason)) =
            self.producers.borrow().check_marker(producer_id, producer_epoch, coordinator_epoch)
        {
            tracing::info!(topic = %self.topic, partition = self.index, producer_id, reason, "transaction marker refused");
            return Err(error);
        }
        let control_type = if commit { ControlType::Commit } else { ControlType::Abort };
        let timestamp = now_ms();
        let marker =
            control_batch(ControlMarker { control_type, coordinator_epoch }, producer_id, producer_epoch, timestamp);
        let size_bytes = marker.len() as u64;
        let info = self.log.append(marker).await.map_err(|err| {
            tracing::error!(topic = %self.topic, partition = self.index, error = %err, "marker append failed");
            ErrorCode::KafkaStorageError
        })?;
        // No await since the offset was assigned: the table, the index and
        // the log agree at every point another task can see them.
        let completed = self.producers.borrow_mut().record_marker(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
            info.base_offset,
            timestamp,
        );
        self.snapshot.bytes_since.set(self.snapshot.bytes_since.get() + size_bytes);
        if let Some(txn) = completed.filter(|txn| txn.is_aborted) {
            self.aborted.append(aborted_entry(&txn)).await.map_err(|err| {
                tracing::error!(topic = %self.topic, partition = self.index, error = %err, "aborted-transaction index write failed");
                ErrorCode::KafkaStorageError
            })?;
        }
        Ok(MarkerOutcome { marker_offset: info.base_offset, durable_end_offset: info.last_offset + 1, completed })
    }

    /// [`Self::write_txn_marker`], then waits until the marker is durable:
    /// what both WriteTxnMarkers and the in-process transaction coordinator
    /// need before they count a partition's transaction as ended.
    pub async fn write_txn_marker_durably(
        self: &Rc<Self>,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<MarkerOutcome, ErrorCode> {
        let outcome = self.write_txn_marker(producer_id, producer_epoch, commit, coordinator_epoch).await?;
        self.snapshot_if_due();
        self.log.wait_durable(outcome.durable_end_offset).await.map_err(|err| {
            tracing::error!(topic = %self.topic, partition = self.index, error = %err, "marker fsync failed");
            ErrorCode::KafkaStorageError
        })?;
        Ok(outcome)
    }

    /// The last stable offset: see the module docs. Read_committed consumers
    /// read below it and ListOffsets answers it as their latest offset.
    pub fn last_stable_offset(&self) -> i64 {
        let log_start_offset = self.log.log_start_offset();
        let high_watermark = self.high_watermark();
        let log_end_offset = self.log.log_end_offset();
        let first_unstable = self.producers.borrow_mut().first_unstable_offset(high_watermark);
        // Kafka keeps a transaction that retention or DeleteRecords passed
        // ongoing and holds the LSO at the log start until its marker.
        let last_stable_offset =
            first_unstable.map_or(high_watermark, |first| first.max(log_start_offset).min(high_watermark));
        assert!(
            log_start_offset <= last_stable_offset,
            "log start {log_start_offset} above the LSO {last_stable_offset}"
        );
        assert!(
            last_stable_offset <= high_watermark,
            "LSO {last_stable_offset} above the high watermark {high_watermark}"
        );
        assert!(high_watermark <= log_end_offset, "high watermark {high_watermark} above the log end {log_end_offset}");
        last_stable_offset
    }

    /// The active producers, for DescribeProducers.
    pub fn describe_producers(&self) -> Vec<ProducerSummary> {
        self.producers.borrow().summaries()
    }

    /// Starts writing a producer state snapshot in the background once
    /// enough was appended since the last one (see `SNAPSHOT_INTERVAL_BYTES`).
    /// The produce and marker paths call it after appending.
    pub fn snapshot_if_due(self: &Rc<Self>) {
        if self.snapshot.bytes_since.get() < SNAPSHOT_INTERVAL_BYTES || self.snapshot.writing.get() {
            return;
        }
        if self.producers.borrow().is_empty() && self.snapshot.offset.get().is_none() {
            // Nothing to save; the counter keeps running so that the first
            // producer is saved at once.
            return;
        }
        let partition = self.clone();
        glommio::spawn_local(async move {
            if let Err(err) = partition.write_snapshot().await {
                tracing::warn!(topic = %partition.topic, partition = partition.index, error = %err, "producer snapshot failed");
            }
        })
        .detach();
    }

    /// Writes the producer table as the snapshot at the current log end. The
    /// file may state only durable data: it is written once every offset
    /// below its offset is durable and every aborted-index entry of those
    /// offsets is too; a crash before the rename leaves the previous one.
    async fn write_snapshot(&self) -> Result<(), EngineError> {
        if self.snapshot.writing.replace(true) {
            return Ok(());
        }
        let result = async {
            // Taken together, with no await: the table states exactly the
            // batches below the log end.
            let snapshot_offset = self.log.log_end_offset();
            let bytes = self.producers.borrow().encode_snapshot(snapshot_offset);
            let bytes_since = self.snapshot.bytes_since.replace(0);
            let written = async {
                self.aborted.sync_all().await?;
                self.log.wait_durable(snapshot_offset).await?;
                aborted_index::write_file_atomically(&self.log.dir().join(PRODUCER_SNAPSHOT_FILE), bytes).await
            }
            .await;
            match written {
                Ok(()) => self.snapshot.offset.set(Some(snapshot_offset)),
                Err(_) => self.snapshot.bytes_since.set(self.snapshot.bytes_since.get() + bytes_since),
            }
            written
        }
        .await;
        self.snapshot.writing.set(false);
        result
    }

    /// Kafka's produce-side rules (LogValidator): exactly one v2 batch,
    /// whole and intact, offsets starting at 0 and consecutive, not a
    /// control batch, within `max.message.bytes`, timestamps within bounds.
    fn check_produced(
        &self,
        records: &Bytes,
        produce_version: i16,
        config: &EffectiveTopicConfig,
    ) -> Result<(RecordBatch, BatchIdentity), ProduceOutcome> {
        let invalid = |message: String| ProduceOutcome::error(ErrorCode::InvalidRecord, message);
        if records.len() > config.message_bytes_max {
            return Err(ProduceOutcome::error(
                ErrorCode::MessageTooLarge,
                format!("record set of {} bytes exceeds max.message.bytes {}", records.len(), config.message_bytes_max),
            ));
        }
        let mut batches = record_batch::batches(records.clone(), config.message_bytes_max);
        let batch = match batches.next() {
            None => return Err(invalid("empty record set".into())),
            Some(Err(err)) => return Err(ProduceOutcome::error(err.error_code(), err.to_string())),
            Some(Ok(batch)) => batch,
        };
        if batches.next().is_some() {
            return Err(invalid("a produce request may carry exactly one record batch per partition".into()));
        }
        let summary = batch
            .validate(UNCOMPRESSED_BATCH_BYTES_MAX)
            .map_err(|err| ProduceOutcome::error(err.error_code(), err.to_string()))?;
        if batch.base_offset() != 0 {
            return Err(invalid(format!("batch base offset is {}, a producer must send 0", batch.base_offset())));
        }
        if batch.is_control() {
            return Err(invalid("producers may not send control batches".into()));
        }
        if !summary.offset_deltas_consecutive {
            return Err(invalid("record offset deltas must be 0, 1, ..., n-1".into()));
        }
        if batch.is_transactional() && batch.producer_id() < 0 {
            // Kafka's ProduceRequest validation refuses a transactional batch
            // with no producer id before any producer state is consulted.
            return Err(ProduceOutcome::error(
                ErrorCode::InvalidProducerIdMapping,
                "a transactional batch must carry a producer id",
            ));
        }
        let codec = batch.attributes() & record_batch::attributes::CODEC_MASK;
        if codec == 4 && produce_version < 7 {
            return Err(ProduceOutcome::error(ErrorCode::UnsupportedCompressionType, "zstd needs Produce v7 or later"));
        }
        if config.timestamp_type == TimestampType::CreateTime {
            let now = now_ms();
            let newest = summary.max_record_timestamp;
            let oldest = batch.base_timestamp();
            if newest > now.saturating_add(config.timestamp_after_max_ms)
                || oldest < now.saturating_sub(config.timestamp_before_max_ms)
            {
                return Err(ProduceOutcome::error(
                    ErrorCode::InvalidTimestamp,
                    format!(
                        "timestamps [{oldest}, {newest}] are outside message.timestamp.before.max.ms / after.max.ms of now ({now})"
                    ),
                ));
            }
        }
        let identity = BatchIdentity::of(&batch);
        Ok((batch, identity))
    }

    /// Reads from `offset` up to `max_bytes` (at least one whole batch)
    /// below the high watermark, or for read_committed below the last
    /// stable offset, with the aborted transactions overlapping what is
    /// returned (none when nothing is).
    pub async fn fetch(&self, offset: i64, max_bytes: usize, isolation: IsolationLevel) -> FetchOutcome {
        let high_watermark = self.high_watermark();
        let last_stable_offset = self.last_stable_offset();
        let upper_bound = match isolation {
            IsolationLevel::ReadUncommitted => high_watermark,
            IsolationLevel::ReadCommitted => last_stable_offset,
        };
        match self.log.read(offset, max_bytes, Some(upper_bound)).await {
            Ok(read) => {
                let aborted_transactions =
                    (isolation == IsolationLevel::ReadCommitted).then(|| match read.batch_headers().last() {
                        Some(last) => self.aborted.collect(offset, last.last_offset()),
                        None => Vec::new(),
                    });
                FetchOutcome {
                    error: None,
                    high_watermark,
                    last_stable_offset,
                    log_start_offset: read.log_start_offset,
                    records: concat(read.records),
                    aborted_transactions,
                }
            }
            Err(EngineError::OffsetOutOfRange { .. }) => FetchOutcome {
                error: Some(ErrorCode::OffsetOutOfRange),
                high_watermark,
                last_stable_offset,
                log_start_offset: self.log.log_start_offset(),
                records: None,
                aborted_transactions: None,
            },
            Err(err) => {
                tracing::error!(topic = %self.topic, partition = self.index, offset, error = %err, "read failed");
                FetchOutcome { error: Some(ErrorCode::KafkaStorageError), ..FetchOutcome::default() }
            }
        }
    }

    /// Periodic upkeep (every `log.retention.check.interval.ms`): deletes
    /// the segments retention no longer keeps, with the aborted-index
    /// entries and ended transactions below the new log start, forgets
    /// producers idle for longer than Kafka's `producer.id.expiration.ms`,
    /// and saves the producer state if the log moved since the last snapshot.
    pub async fn housekeep(&self, now_ms: i64) -> Result<usize, EngineError> {
        let deleted = self.log.apply_retention(now_ms).await?;
        let log_start_offset = self.log.log_start_offset();
        self.producers.borrow_mut().on_log_start_moved(log_start_offset);
        self.aborted.remove_below(log_start_offset).await?;
        self.producers.borrow_mut().remove_expired(now_ms, crate::producer_state::PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        let saved = self.snapshot.offset.get();
        let has_state = !self.producers.borrow().is_empty() || saved.is_some();
        if has_state && saved != Some(self.log.log_end_offset()) {
            self.write_snapshot().await?;
        }
        Ok(deleted)
    }

    /// Resolves when a record at or above `offset` becomes visible at
    /// `isolation`: for read_committed, when the last stable offset passes
    /// it (a marker ending the transaction that held it back, made
    /// durable), not merely when records arrive.
    pub async fn wait_for_records_from(&self, offset: i64, isolation: IsolationLevel) {
        if isolation == IsolationLevel::ReadUncommitted {
            return self.log.wait_for_records_from(offset, self.reads_durable_only()).await;
        }
        loop {
            if self.last_stable_offset() > offset {
                return;
            }
            // The LSO moves only when the high watermark does (a marker is
            // an append, and it counts once it is below the high watermark).
            let high_watermark = self.high_watermark();
            self.log.wait_for_records_from(high_watermark.max(offset), self.reads_durable_only()).await;
            if self.high_watermark() <= high_watermark {
                // The log failed or is closing: let the caller read again.
                return;
            }
        }
    }

    /// ListOffsets for one timestamp: -2 earliest, -1 latest (for
    /// read_committed the last stable offset), -3 the record with the
    /// largest timestamp, otherwise the first record at or after it; records
    /// at or above the latest offset do not count (Kafka's
    /// `lastFetchableOffset`). Returns (offset, timestamp); (-1, -1) when no
    /// record qualifies.
    pub async fn offset_for(&self, timestamp: i64, isolation: IsolationLevel) -> Result<(i64, i64), EngineError> {
        let fetchable_end = match isolation {
            IsolationLevel::ReadUncommitted => self.high_watermark(),
            IsolationLevel::ReadCommitted => self.last_stable_offset(),
        };
        match timestamp {
            -2 => Ok((self.log.log_start_offset(), -1)),
            -1 => Ok((fetchable_end, -1)),
            -3 => self.offset_of_max_timestamp(fetchable_end).await,
            _ => self.first_offset_at_or_after(timestamp, fetchable_end).await,
        }
    }

    async fn first_offset_at_or_after(&self, timestamp: i64, fetchable_end: i64) -> Result<(i64, i64), EngineError> {
        let Some(found) = self.log.offset_for_timestamp(timestamp).await? else {
            return Ok((-1, -1));
        };
        if found.base_offset >= fetchable_end {
            return Ok((-1, -1));
        }
        let batch = RecordBatch::new(found.batch, 0).map_err(EngineError::from)?;
        if batch.timestamp_type() == record_batch::TimestampType::LogAppendTime {
            return Ok((batch.base_offset().max(self.log.log_start_offset()), batch.max_timestamp()));
        }
        // The batch holding the log start may begin below it (DeleteRecords
        // moves the start inside a batch): records below it do not count.
        let log_start_offset = self.log.log_start_offset();
        let records = batch.records(UNCOMPRESSED_BATCH_BYTES_MAX).map_err(EngineError::from)?;
        for record in records {
            let record = record.map_err(EngineError::from)?;
            let record_timestamp = batch.base_timestamp() + record.timestamp_delta;
            let offset = batch.base_offset() + i64::from(record.offset_delta);
            if record_timestamp >= timestamp && offset >= log_start_offset {
                return Ok((offset, record_timestamp));
            }
        }
        Ok((batch.base_offset().max(log_start_offset), batch.max_timestamp()))
    }

    async fn offset_of_max_timestamp(&self, fetchable_end: i64) -> Result<(i64, i64), EngineError> {
        let Some(max_timestamp) =
            self.log.segments().iter().filter(|s| s.base_offset < fetchable_end).map(|s| s.max_timestamp).max()
        else {
            return Ok((-1, -1));
        };
        if max_timestamp < 0 {
            return Ok((-1, -1));
        }
        let (offset, _) = self.first_offset_at_or_after(max_timestamp, fetchable_end).await?;
        Ok((offset, max_timestamp))
    }
}

/// The marker of a control batch and its record's timestamp; `None` for a
/// control batch of another kind (Kafka skips those too) or a damaged one.
fn control_marker(batch: &RecordBatch) -> Option<(ControlMarker, i64)> {
    let record = batch.records(UNCOMPRESSED_BATCH_BYTES_MAX).ok()?.next()?.ok()?;
    let marker = ControlMarker::parse(record.key.as_deref()?, record.value.as_deref()?)?;
    Some((marker, batch.base_timestamp() + record.timestamp_delta))
}

fn aborted_entry(txn: &CompletedTxn) -> AbortedTxn {
    AbortedTxn {
        producer_id: txn.producer_id,
        first_offset: txn.first_offset,
        last_offset: txn.last_offset,
        last_stable_offset: txn.last_stable_offset,
    }
}

/// Joins the runs of a read into one buffer (a Fetch partition carries one
/// byte string); a single run, the common case, is passed through uncopied.
fn concat(mut runs: Vec<Bytes>) -> Option<Bytes> {
    match runs.len() {
        0 => None,
        1 => runs.pop(),
        _ => {
            let mut joined = BytesMut::with_capacity(runs.iter().map(Bytes::len).sum());
            for run in &runs {
                joined.extend_from_slice(run);
            }
            Some(joined.freeze())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::Path;

    use protocol::compression::Codec;
    use protocol::record_batch::RecordBatchBuilder;

    use super::*;

    const PRODUCER: i64 = 4000;

    fn run<F: std::future::Future<Output = ()> + 'static>(test: impl FnOnce() -> F + Send + 'static) {
        engine::memlock::ensure_memlock(4 << 20).unwrap();
        glommio::LocalExecutorBuilder::default().spawn(move || async move { test().await }).unwrap().join().unwrap();
    }

    async fn open(dir: &Path, config: EffectiveTopicConfig) -> Partition {
        let resources = engine::ShardResources::new(engine::ShardLimits::default()).unwrap();
        Partition::open(dir.to_path_buf(), "t".into(), Uuid::nil(), 0, 0, config, resources).await.unwrap()
    }

    /// A batch of `records` records of `value_bytes` each; transactional when `producer` is set.
    fn records(producer: Option<(i64, i16, i32)>, records: usize, value_bytes: usize) -> Bytes {
        let mut builder = RecordBatchBuilder::new(Codec::None);
        if let Some((producer_id, epoch, sequence)) = producer {
            builder = builder.producer(producer_id, epoch, sequence).transactional(true);
        }
        let value = vec![7u8; value_bytes];
        for _ in 0..records {
            builder.push(now_ms(), None, Some(&value), &[]);
        }
        builder.build().unwrap()
    }

    fn context(verifier: Option<&TxnVerifier>) -> ProduceContext<'_> {
        ProduceContext { produce_version: 12, transactional_id: Some("txn"), verifier }
    }

    /// Produces and waits until durable; returns the base offset.
    async fn produce(partition: &Partition, batch: Bytes) -> i64 {
        let outcome = partition.produce(batch, &context(None)).await;
        assert_eq!(outcome.error, None, "{:?}", outcome.message);
        partition.log.wait_durable(outcome.durable_end_offset.unwrap()).await.unwrap();
        outcome.base_offset
    }

    async fn marker(partition: &Partition, commit: bool) -> MarkerOutcome {
        let outcome = partition.write_txn_marker(PRODUCER, 0, commit, 0).await.unwrap();
        partition.log.wait_durable(outcome.durable_end_offset).await.unwrap();
        outcome
    }

    fn batch_bases(outcome: &FetchOutcome) -> Vec<i64> {
        let records = outcome.records.clone().unwrap_or_default();
        record_batch::batches(records, usize::MAX).map(|batch| batch.unwrap().base_offset()).collect()
    }

    #[test]
    fn an_open_transaction_holds_back_read_committed_until_its_commit() {
        // Proves read_committed fetches and ListOffsets stop at the LSO (the open
        // transaction's first offset) while read_uncommitted sees everything, and that the
        // commit marker, once durable, releases the transaction's batches with no aborts.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let partition = open(&path, EffectiveTopicConfig::default()).await;
            assert_eq!(produce(&partition, records(None, 1, 10)).await, 0);
            assert_eq!(produce(&partition, records(Some((PRODUCER, 0, 0)), 2, 10)).await, 1);
            assert_eq!(produce(&partition, records(None, 1, 10)).await, 3);
            assert_eq!(partition.last_stable_offset(), 1);
            assert_eq!(partition.high_watermark(), 4);
            let committed = partition.fetch(0, 1 << 20, IsolationLevel::ReadCommitted).await;
            assert_eq!(batch_bases(&committed), vec![0]);
            assert_eq!((committed.last_stable_offset, committed.high_watermark), (1, 4));
            assert_eq!(committed.aborted_transactions, Some(vec![]));
            let uncommitted = partition.fetch(0, 1 << 20, IsolationLevel::ReadUncommitted).await;
            assert_eq!(batch_bases(&uncommitted), vec![0, 1, 3]);
            assert_eq!(uncommitted.aborted_transactions, None);
            // At the LSO itself a read_committed fetch is empty, not an error.
            let at_lso = partition.fetch(2, 1 << 20, IsolationLevel::ReadCommitted).await;
            assert_eq!((at_lso.error, at_lso.bytes()), (None, 0));
            assert_eq!(partition.offset_for(-1, IsolationLevel::ReadCommitted).await.unwrap(), (1, -1));
            assert_eq!(partition.offset_for(-1, IsolationLevel::ReadUncommitted).await.unwrap(), (4, -1));
            let outcome = marker(&partition, true).await;
            assert_eq!(outcome.marker_offset, 4);
            assert_eq!(outcome.completed.map(|txn| (txn.first_offset, txn.is_aborted)), Some((1, false)));
            assert_eq!(partition.last_stable_offset(), 5);
            let released = partition.fetch(0, 1 << 20, IsolationLevel::ReadCommitted).await;
            assert_eq!(batch_bases(&released), vec![0, 1, 3, 4]);
            assert_eq!(released.aborted_transactions, Some(vec![]));
            partition.log.close().await.unwrap();
        });
    }

    #[test]
    fn an_abort_is_indexed_durably_and_reported_to_read_committed() {
        // Proves an ABORT adds (producer, first offset) to the aborted index before the
        // marker is acknowledged, read_committed fetches overlapping it report it, fetches
        // past it do not, and it survives a reopen.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let partition = open(&path, EffectiveTopicConfig::default()).await;
            produce(&partition, records(Some((PRODUCER, 0, 0)), 3, 10)).await;
            let outcome = marker(&partition, false).await;
            assert_eq!(outcome.marker_offset, 3);
            let file = path.join(aborted_index::ABORTED_INDEX_FILE);
            assert_eq!(
                std::fs::metadata(&file).unwrap().len() as usize,
                aborted_index::HEADER_BYTES + aborted_index::ENTRY_BYTES
            );
            produce(&partition, records(None, 1, 10)).await;
            let fetched = partition.fetch(0, 1 << 20, IsolationLevel::ReadCommitted).await;
            assert_eq!(batch_bases(&fetched), vec![0, 3, 4]);
            let aborted = fetched.aborted_transactions.unwrap();
            assert_eq!(aborted.len(), 1);
            assert_eq!((aborted[0].producer_id, aborted[0].first_offset), (PRODUCER, 0));
            let after = partition.fetch(4, 1 << 20, IsolationLevel::ReadCommitted).await;
            assert_eq!(after.aborted_transactions, Some(vec![]));
            partition.log.close().await.unwrap();
            drop(partition);
            let reopened = open(&path, EffectiveTopicConfig::default()).await;
            let again = reopened.fetch(0, 1 << 20, IsolationLevel::ReadCommitted).await;
            assert_eq!(again.aborted_transactions.unwrap().len(), 1);
            assert_eq!(reopened.last_stable_offset(), 5);
            reopened.log.close().await.unwrap();
        });
    }

    #[test]
    fn the_verifier_is_asked_only_when_a_batch_starts_a_transaction() {
        // Proves KIP-890's hook: the verifier is asked before the first batch of a
        // transaction on the partition, not for later ones; its refusal fails the produce
        // with Kafka's mapping and appends nothing; after a marker it is asked again.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let partition = open(&path, EffectiveTopicConfig::default()).await;
            let asked = Rc::new(Cell::new(0));
            let refuse = Rc::new(Cell::new(Some(ErrorCode::ConcurrentTransactions)));
            let verifier: TxnVerifier = {
                let (asked, refuse) = (asked.clone(), refuse.clone());
                Rc::new(move |question: TxnVerification| {
                    assert_eq!((question.transactional_id.as_str(), question.producer_id), ("txn", PRODUCER));
                    asked.set(asked.get() + 1);
                    let answer = refuse.get().map_or(Ok(()), Err);
                    Box::pin(async move { answer })
                })
            };
            let context =
                ProduceContext { produce_version: 11, transactional_id: Some("txn"), verifier: Some(&verifier) };
            let refused = partition.produce(records(Some((PRODUCER, 0, 0)), 1, 10), &context).await;
            assert_eq!(refused.error, Some(ErrorCode::NotEnoughReplicas), "below v12 CONCURRENT_TRANSACTIONS retries");
            assert_eq!(partition.log.log_end_offset(), 0);
            refuse.set(None);
            for sequence in 0..3 {
                let outcome = partition.produce(records(Some((PRODUCER, 0, sequence)), 1, 10), &context).await;
                assert_eq!(outcome.error, None);
            }
            assert_eq!(asked.get(), 2, "asked for the refused batch and the first accepted one only");
            marker(&partition, true).await;
            refuse.set(Some(ErrorCode::ProducerFenced));
            let fenced = partition.produce(records(Some((PRODUCER, 0, 3)), 1, 10), &context).await;
            assert_eq!(fenced.error, Some(ErrorCode::InvalidProducerEpoch));
            assert_eq!(asked.get(), 3);
            partition.log.close().await.unwrap();
        });
    }

    #[test]
    fn markers_are_refused_for_stale_epochs_and_fence_old_batches() {
        // Proves a marker below the producer's epoch is INVALID_PRODUCER_EPOCH and writes
        // nothing, a marker with a higher epoch is written and fences the old epoch's
        // batches, and a marker with no ongoing transaction is written all the same.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let partition = open(&path, EffectiveTopicConfig::default()).await;
            produce(&partition, records(Some((PRODUCER, 2, 0)), 1, 10)).await;
            assert_eq!(partition.write_txn_marker(PRODUCER, 1, false, 0).await, Err(ErrorCode::InvalidProducerEpoch));
            assert_eq!(partition.log.log_end_offset(), 1);
            let bumped = partition.write_txn_marker(PRODUCER, 3, false, 0).await.unwrap();
            assert!(bumped.completed.is_some_and(|txn| txn.is_aborted));
            let zombie = partition.produce(records(Some((PRODUCER, 2, 1)), 1, 10), &context(None)).await;
            assert_eq!(zombie.error, Some(ErrorCode::InvalidProducerEpoch));
            let idle = partition.write_txn_marker(PRODUCER, 3, true, 0).await.unwrap();
            assert_eq!((idle.marker_offset, idle.completed), (2, None));
            let plain = records(None, 1, 10);
            // A plain idempotent batch during a transaction is INVALID_TXN_STATE.
            produce(&partition, records(Some((PRODUCER, 3, 0)), 1, 10)).await;
            let mut builder = RecordBatchBuilder::new(Codec::None).producer(PRODUCER, 3, 1);
            builder.push(now_ms(), None, Some(b"x"), &[]);
            let not_transactional = partition.produce(builder.build().unwrap(), &context(None)).await;
            assert_eq!(not_transactional.error, Some(ErrorCode::InvalidTxnState));
            produce(&partition, plain).await;
            let producers = partition.describe_producers();
            assert_eq!(producers.len(), 1);
            assert_eq!((producers[0].producer_epoch, producers[0].current_txn_start_offset), (3, 3));
            partition.log.close().await.unwrap();
        });
    }

    #[test]
    fn a_transaction_older_than_the_replay_window_survives_a_restart() {
        // Proves the producer snapshot finds an ongoing transaction that started before the
        // newest 64 MiB (the replay window without a snapshot): after a reopen its first
        // offset still holds the LSO, and its commit releases it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let mut config = EffectiveTopicConfig::default();
            config.log.segment_bytes_max = 8 << 20;
            let partition = Rc::new(open(&path, config.clone()).await);
            produce(&partition, records(Some((PRODUCER, 0, 0)), 1, 10)).await;
            for _ in 0..80 {
                produce(&partition, records(None, 1, 1000 << 10)).await;
                partition.snapshot_if_due();
            }
            assert_eq!(partition.last_stable_offset(), 0);
            partition.housekeep(now_ms()).await.unwrap();
            partition.log.close().await.unwrap();
            drop(partition);
            let reopened = open(&path, config).await;
            assert!(reopened.replay_window_start() > 0, "the transaction lies outside the window");
            assert_eq!(reopened.last_stable_offset(), 0);
            assert_eq!(reopened.describe_producers()[0].current_txn_start_offset, 0);
            let outcome = marker(&reopened, true).await;
            assert_eq!(reopened.last_stable_offset(), outcome.marker_offset + 1);
            reopened.log.close().await.unwrap();
        });
    }
}
