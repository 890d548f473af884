//! Per-log settings (Kafka's topic-level `segment.bytes`, `retention.ms`, ...)
//! and per-shard resource limits. The broker maps user-facing config keys onto
//! these; the engine only checks that the values are usable.

use std::time::Duration;

use crate::error::{EngineError, Result};

/// When the log calls fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// After every write round: each append is durable as soon as possible and
    /// concurrent appends share one fdatasync (group commit). Kafka's
    /// `flush.messages=1`; Stele's default.
    Always,
    /// When `messages` appended records are not yet flushed, or `interval`
    /// has passed since the oldest unflushed one was written, whichever comes
    /// first (Kafka's `flush.messages` / `flush.ms`). `None` disables that
    /// trigger.
    Interval { messages: Option<u64>, interval: Option<Duration> },
}

/// Settings of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before one grows past this (`segment.bytes`).
    pub segment_bytes_max: u64,
    /// Roll when the first batch of the active segment is older than this
    /// (`segment.ms`), measured on the batch's max timestamp as Kafka does.
    pub segment_age_max: Option<Duration>,
    /// Delete the oldest segments while the log is larger (`retention.bytes`).
    pub retention_bytes_max: Option<u64>,
    /// Delete segments whose newest record is older (`retention.ms`).
    pub retention_age_max: Option<Duration>,
    /// Bytes of log between two entries of the sparse indexes (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    pub flush_policy: FlushPolicy,
    /// Preallocate segment files in steps of this many bytes, so that writes
    /// do not extend the file (extending O_DIRECT writes are serialised by
    /// the filesystem). Capped at `segment_bytes_max`.
    pub preallocate_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 1 << 30,
            segment_age_max: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_bytes_max: None,
            retention_age_max: Some(Duration::from_secs(7 * 24 * 3600)),
            index_interval_bytes: 4096,
            flush_policy: FlushPolicy::Always,
            preallocate_bytes: 256 << 20,
        }
    }
}

/// Smallest segment size accepted; Kafka's own minimum for `segment.bytes`
/// is 14 bytes, but anything below one batch header plus a block makes no
/// sense for a log that writes 4 KiB blocks.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Positions in the offset index are 32-bit, as in Kafka.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

impl LogConfig {
    pub fn validate(&self) -> Result<()> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes_max) {
            return Err(EngineError::Config {
                key: "segment.bytes",
                value: self.segment_bytes_max.to_string(),
                reason: "must be between 4096 and 2147483647",
            });
        }
        if self.index_interval_bytes == 0 {
            return Err(EngineError::Config {
                key: "index.interval.bytes",
                value: "0".into(),
                reason: "must be positive",
            });
        }
        if let FlushPolicy::Interval { messages: Some(0), .. } = self.flush_policy {
            return Err(EngineError::Config { key: "flush.messages", value: "0".into(), reason: "must be positive" });
        }
        Ok(())
    }
}

/// Memory and I/O limits of one shard, shared by all logs it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLimits {
    /// DMA buffers holding appended data not yet written to disk. A full
    /// budget makes appends wait for the writes in flight.
    pub write_buffer_bytes_max: usize,
    /// Written batches kept in memory so that consumers at the tail are
    /// served without disk reads. Evicted oldest first when full.
    pub tail_cache_bytes_max: usize,
    /// Writes in flight at once on this shard.
    pub writes_in_flight_max: usize,
    /// Largest single write; a write round is split into chunks of this size.
    pub write_chunk_bytes_max: usize,
}

impl Default for ShardLimits {
    fn default() -> Self {
        ShardLimits {
            write_buffer_bytes_max: 64 << 20,
            tail_cache_bytes_max: 256 << 20,
            writes_in_flight_max: 32,
            write_chunk_bytes_max: 1 << 20,
        }
    }
}

impl ShardLimits {
    pub fn validate(&self) -> Result<()> {
        let block = crate::BLOCK_BYTES;
        if self.write_chunk_bytes_max < block || self.write_chunk_bytes_max % block != 0 {
            return Err(EngineError::Config {
                key: "write_chunk_bytes",
                value: self.write_chunk_bytes_max.to_string(),
                reason: "must be a positive multiple of 4096",
            });
        }
        if self.write_buffer_bytes_max < 2 * self.write_chunk_bytes_max {
            return Err(EngineError::Config {
                key: "write_buffer_bytes",
                value: self.write_buffer_bytes_max.to_string(),
                reason: "must hold at least two write chunks",
            });
        }
        if self.writes_in_flight_max == 0 {
            return Err(EngineError::Config { key: "io_depth", value: "0".into(), reason: "must be positive" });
        }
        Ok(())
    }
}
