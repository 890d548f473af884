//! Share-partitions (KIP-932): the per-record delivery state of a share
//! group on one topic partition, kept on the partition's owner shard.
//!
//! A share group's consumers fetch a partition together; each record is
//! handed to one member at a time under a time-limited lock, and stays in
//! play until a member accepts it, rejects it, or it was delivered
//! `delivery.count.limit` times. This module owns that state and its
//! durable form. Membership, group configs and assignment live in
//! `group::share`; ShareFetch/ShareAcknowledge and share sessions in
//! `handlers`; both call the API below. Format and rules:
//! docs/share-partitions.md.
//!
//! # Layout
//! - [`state`]: the pure state machine of one share-partition (the window
//!   from the start offset to the end offset, runs of records in one
//!   state); no I/O, no clock.
//! - [`records`] and `schema`: the durable records and their flatbuffers.
//! - [`log`]: one share-state log per partition that has share groups, in
//!   `<partition dir>/share-state/`, replayed when first used.
//! - [`share_partition`]: [`SharePartition`], one (group, partition):
//!   acquire, acknowledge, lock expiry, member release, admin operations.
//! - `read_ahead`: how a share-partition reads the log for acquisitions
//!   (reads sized for several, kept, and the next one prefetched).
//! - [`registry`]: [`SharePartitions`], the per-shard registry on `Shard`,
//!   and the lock-expiry sweep.
//!
//! # Rules every change keeps
//! Everything runs on the partition's owner shard. A change is applied to
//! memory and its delta handed to the share-state log in one synchronous
//! step (no await between them), so deltas are placed in the order the
//! changes were made and replaying a prefix of the log gives the state as
//! of a prefix of the changes. Callers that answer a client (acquire,
//! acknowledge, admin) answer only once their delta is durable.

pub mod log;
mod read_ahead;
pub mod records;
pub mod registry;
mod schema;
pub mod share_partition;
pub mod state;

pub use registry::SharePartitions;
pub use share_partition::{ShareFetchPartition, ShareOffsets, SharePartition};
pub use state::{ack_type, AckBatch, AckError, AcquiredRange, RecordState};

use crate::partition::IsolationLevel;

/// Kafka's `group.share.record.lock.duration.ms` default.
pub const RECORD_LOCK_DURATION_MS_DEFAULT: i64 = 30_000;
/// Kafka's `group.share.delivery.count.limit` default.
pub const DELIVERY_COUNT_LIMIT_DEFAULT: u16 = 5;
/// Kafka's `group.share.partition.max.record.locks` default.
pub const PARTITION_MAX_RECORD_LOCKS_DEFAULT: usize = 2000;

/// `share.auto.offset.reset`: where a share-partition starts when first used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    /// The high watermark (read_committed: the last stable offset).
    #[default]
    Latest,
    /// The log start offset.
    Earliest,
    /// `by_duration:<ISO-8601>`: the first record at or after now minus this
    /// many milliseconds; the latest offset when there is none.
    ByDuration(i64),
}

/// The settings of one share group on one partition, filled by the caller
/// from the broker defaults and the group's configs (`share.*` overriding
/// `group.share.*`). Passed to every call: a config change applies from the
/// next call on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareSettings {
    /// How long an acquired record stays locked to its member.
    pub record_lock_duration_ms: i64,
    /// Deliveries after which a record is archived instead of offered again.
    pub delivery_count_limit: u16,
    /// Bound on the records between the start and end offsets.
    pub partition_max_record_locks: usize,
    pub auto_offset_reset: AutoOffsetReset,
    /// `share.isolation.level`.
    pub isolation: IsolationLevel,
}

impl Default for ShareSettings {
    fn default() -> ShareSettings {
        ShareSettings {
            record_lock_duration_ms: RECORD_LOCK_DURATION_MS_DEFAULT,
            delivery_count_limit: DELIVERY_COUNT_LIMIT_DEFAULT,
            partition_max_record_locks: PARTITION_MAX_RECORD_LOCKS_DEFAULT,
            auto_offset_reset: AutoOffsetReset::Latest,
            isolation: IsolationLevel::ReadUncommitted,
        }
    }
}

#[cfg(test)]
mod tests;
