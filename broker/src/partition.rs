//! A partition as its owning shard sees it: the engine's log plus what Kafka
//! keeps beside it (idempotent producer state, the topic's effective config)
//! and the rules a produced batch must pass before it is appended.
//!
//! Everything here runs on the owning shard only; results that travel back
//! to other shards are plain `Send` values.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use engine::{EngineError, FlushPolicy, LogConfig, PartitionLog};
use protocol::record_batch::{self, RecordBatch};
use protocol::ErrorCode;
use uuid::Uuid;

use crate::producer_state::{BatchIdentity, ProducerStateTable, SequenceCheck};
use crate::topic_config::{EffectiveTopicConfig, TimestampType};

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    pub leader_epoch: i32,
    pub log: PartitionLog,
    producers: RefCell<ProducerStateTable>,
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

/// The answer for one partition of a Fetch request.
#[derive(Debug, Clone, Default)]
pub struct FetchOutcome {
    pub error: Option<ErrorCode>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: Option<Bytes>,
}

impl FetchOutcome {
    pub fn error(error: ErrorCode) -> FetchOutcome {
        FetchOutcome { error: Some(error), high_watermark: -1, log_start_offset: -1, records: None }
    }

    pub fn bytes(&self) -> usize {
        self.records.as_ref().map_or(0, Bytes::len)
    }
}

/// How much of the newest log a restart replays into the producer table.
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
        let partition = Partition {
            topic,
            topic_id,
            index,
            leader_epoch,
            log,
            producers: RefCell::new(ProducerStateTable::new()),
            config: RefCell::new(config),
        };
        partition.rebuild_producer_state().await?;
        Ok(partition)
    }

    /// Replays the newest batches of the log into the producer table, so
    /// that a producer retrying after a crash is still deduplicated: the
    /// active segment, and older segments until at least
    /// `PRODUCER_REPLAY_BYTES_MIN` are covered (a segment may have rolled
    /// just before the crash, taking the batches a retry repeats with it).
    /// Kafka keeps snapshots for what lies further back; a producer missing
    /// here is unknown, and Kafka accepts any sequence from an unknown one.
    async fn rebuild_producer_state(&self) -> Result<(), EngineError> {
        let mut covered = 0u64;
        let mut first = None;
        for segment in self.log.segments().iter().rev() {
            first = Some(segment.base_offset);
            covered += segment.size_bytes;
            if covered >= PRODUCER_REPLAY_BYTES_MIN {
                break;
            }
        }
        let Some(replay_from) = first else {
            return Ok(());
        };
        let mut offset = replay_from.max(self.log.log_start_offset());
        let end = self.log.log_end_offset();
        let mut producers = ProducerStateTable::new();
        while offset < end {
            let read = self.log.read(offset, 4 << 20, None).await?;
            if read.records.is_empty() {
                break;
            }
            for run in read.records {
                for batch in record_batch::batches(run, usize::MAX).flatten() {
                    let identity = BatchIdentity::of(&batch);
                    if identity.is_idempotent() && !batch.is_control() {
                        producers.record(&identity, batch.base_offset(), batch.max_timestamp());
                    }
                    offset = batch.last_offset() + 1;
                }
            }
        }
        *self.producers.borrow_mut() = producers;
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
    /// request of `produce_version`. Returns once the records have offsets;
    /// the caller waits for durability when acks=all.
    pub async fn produce(&self, records: Bytes, produce_version: i16) -> ProduceOutcome {
        let config = self.config();
        let (batch, identity) = match self.check_produced(&records, produce_version, &config) {
            Ok(checked) => checked,
            Err(outcome) => return outcome,
        };
        if identity.is_idempotent() {
            match self.producers.borrow().check_record_set(std::slice::from_ref(&identity)) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate { base_offset, .. } => {
                    return ProduceOutcome {
                        error: None,
                        message: None,
                        base_offset,
                        log_append_time_ms: -1,
                        log_start_offset: self.log.log_start_offset(),
                        durable_end_offset: Some(self.log.log_end_offset()),
                    }
                }
                SequenceCheck::Reject { error, reason } => return ProduceOutcome::error(error, reason),
            }
        }
        let mut log_append_time_ms = -1;
        let records = if config.timestamp_type == TimestampType::LogAppendTime {
            log_append_time_ms = now_ms();
            let mut owned = BytesMut::from(&records[..]);
            record_batch::set_log_append_time(&mut owned, log_append_time_ms);
            owned.freeze()
        } else {
            records
        };
        drop(batch);
        // `check_produced` verified the CRC and every record; LogAppendTime
        // recomputed the CRC over the rewritten header.
        match self.log.append_verified(records).await {
            Ok(info) => {
                if identity.is_idempotent() {
                    // No await since `check`: the table cannot have changed
                    // for this producer unless another request raced in,
                    // which per-connection ordering rules out for one producer.
                    self.producers.borrow_mut().record(&identity, info.base_offset, info.max_timestamp);
                }
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
        if batch.is_transactional() {
            return Err(ProduceOutcome::error(
                ErrorCode::TransactionalIdAuthorizationFailed,
                "transactions are not supported yet",
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

    /// Reads from `offset` up to `max_bytes` (at least one whole batch) below
    /// the high watermark.
    pub async fn fetch(&self, offset: i64, max_bytes: usize) -> FetchOutcome {
        let high_watermark = self.high_watermark();
        match self.log.read(offset, max_bytes, Some(high_watermark)).await {
            Ok(read) => FetchOutcome {
                error: None,
                high_watermark,
                log_start_offset: read.log_start_offset,
                records: concat(read.records),
            },
            Err(EngineError::OffsetOutOfRange { .. }) => FetchOutcome {
                error: Some(ErrorCode::OffsetOutOfRange),
                high_watermark,
                log_start_offset: self.log.log_start_offset(),
                records: None,
            },
            Err(err) => {
                tracing::error!(topic = %self.topic, partition = self.index, offset, error = %err, "read failed");
                FetchOutcome { error: Some(ErrorCode::KafkaStorageError), ..FetchOutcome::default() }
            }
        }
    }

    /// Periodic upkeep (every `log.retention.check.interval.ms`): deletes
    /// the segments retention no longer keeps and forgets idempotent
    /// producers idle for longer than Kafka's `producer.id.expiration.ms`.
    pub async fn housekeep(&self, now_ms: i64) -> Result<usize, EngineError> {
        let deleted = self.log.apply_retention(now_ms).await?;
        self.producers.borrow_mut().remove_expired(now_ms, crate::producer_state::PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        Ok(deleted)
    }

    /// Resolves when a record at or above `offset` becomes visible.
    pub async fn wait_for_records_from(&self, offset: i64) {
        self.log.wait_for_records_from(offset, self.reads_durable_only()).await
    }

    /// ListOffsets for one timestamp: -2 earliest, -1 latest, -3 the record
    /// with the largest timestamp, otherwise the first record at or after
    /// it. Returns (offset, timestamp); (-1, -1) when no record qualifies.
    pub async fn offset_for(&self, timestamp: i64) -> Result<(i64, i64), EngineError> {
        match timestamp {
            -2 => Ok((self.log.log_start_offset(), -1)),
            -1 => Ok((self.high_watermark(), -1)),
            -3 => self.offset_of_max_timestamp().await,
            _ => self.first_offset_at_or_after(timestamp).await,
        }
    }

    async fn first_offset_at_or_after(&self, timestamp: i64) -> Result<(i64, i64), EngineError> {
        let Some(found) = self.log.offset_for_timestamp(timestamp).await? else {
            return Ok((-1, -1));
        };
        if found.base_offset >= self.high_watermark() {
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

    async fn offset_of_max_timestamp(&self) -> Result<(i64, i64), EngineError> {
        let high_watermark = self.high_watermark();
        let Some(max_timestamp) =
            self.log.segments().iter().filter(|s| s.base_offset < high_watermark).map(|s| s.max_timestamp).max()
        else {
            return Ok((-1, -1));
        };
        if max_timestamp < 0 {
            return Ok((-1, -1));
        }
        let (offset, _) = self.first_offset_at_or_after(max_timestamp).await?;
        Ok((offset, max_timestamp))
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
