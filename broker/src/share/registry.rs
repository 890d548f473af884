//! The share-partitions of one shard: [`SharePartitions`], a field of
//! `Shard`. Share-state logs are opened on first use (replaying them) and
//! kept open until their partition is removed or the shard closes; a
//! share-partition is initialized by `share.auto.offset.reset` on its first
//! use. One task per shard sweeps lapsed record locks every
//! [`LOCK_SWEEP_INTERVAL_MS`] (acquire and acknowledge also expire locks
//! first, exactly at their `now`).
//!
//! Invariants: at most one open [`ShareStateLog`] per partition (opening
//! and initializing are serialized by `opening`; lookups that find what
//! they need do not wait); a closed registry opens nothing.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use glommio::sync::Semaphore;
use protocol::ErrorCode;

use super::log::{share_state_dir, ShareStateLog, SHARE_STATE_SEGMENT_BYTES};
use super::records::ShareRecord;
use super::share_partition::SharePartition;
use super::state::ShareState;
use super::{AutoOffsetReset, ShareSettings};
use crate::partition::{now_ms, IsolationLevel, Partition};
use crate::shard::{PartitionKey, Shard};

/// How often the sweep looks for lapsed record locks: the longest a lapsed
/// lock holds its records beyond its deadline when nobody fetches.
pub const LOCK_SWEEP_INTERVAL_MS: u64 = 100;

/// How long a share-partition keeps its read-ahead without acquisitions.
const READ_AHEAD_IDLE: Duration = Duration::from_secs(1);

pub struct SharePartitions {
    inner: Rc<Registry>,
}

struct Registry {
    logs: RefCell<HashMap<PartitionKey, Rc<ShareStateLog>>>,
    opening: Semaphore,
    segment_bytes: u64,
    sweeping: Cell<bool>,
    closed: Cell<bool>,
}

impl Default for SharePartitions {
    fn default() -> SharePartitions {
        SharePartitions::new(SHARE_STATE_SEGMENT_BYTES)
    }
}

impl SharePartitions {
    /// A registry whose share-state logs roll segments at `segment_bytes`
    /// (and compact once that much was appended).
    pub fn new(segment_bytes: u64) -> SharePartitions {
        SharePartitions {
            inner: Rc::new(Registry {
                logs: RefCell::new(HashMap::new()),
                opening: Semaphore::new(1),
                segment_bytes,
                sweeping: Cell::new(false),
                closed: Cell::new(false),
            }),
        }
    }

    /// The share-partition of `group_id` on `partition` (owned by this
    /// shard), opening the partition's share-state log if needed and
    /// initializing the share-partition on first use: its start offset by
    /// `settings.auto_offset_reset` (latest: the high watermark, or the LSO
    /// for read_committed; earliest: the log start; by_duration: the first
    /// record at or after now minus the duration, else latest), durably.
    /// Errors: NOT_LEADER_OR_FOLLOWER once closed, KAFKA_STORAGE_ERROR when
    /// the log cannot be opened, read or written (logged with its path).
    pub async fn get_or_open(
        &self,
        shard: &Shard,
        group_id: &str,
        partition: &Rc<Partition>,
        settings: &ShareSettings,
    ) -> Result<Rc<SharePartition>, ErrorCode> {
        let key = (partition.topic_id, partition.index);
        if let Some(found) = self.inner.logs.borrow().get(&key).and_then(|log| log.group(group_id)) {
            return Ok(found);
        }
        let _turn = self.inner.opening.acquire_permit(1).await.map_err(|_| ErrorCode::NotLeaderOrFollower)?;
        let log = self.log_for(shard, partition, true).await?.expect("created when absent");
        if let Some(found) = log.group(group_id) {
            return Ok(found);
        }
        if let Some(error) = log.unusable() {
            return Err(error);
        }
        let start_offset = initial_start_offset(partition, settings, now_ms()).await?;
        let state = ShareState::new(0, start_offset);
        let created = Rc::new(SharePartition::new(Rc::from(group_id), partition.clone(), Rc::downgrade(&log), state));
        // In the map as the record is handed to the log: a compaction
        // snapshot taken after the record is placed includes the group.
        log.insert_group(created.clone());
        let record = ShareRecord::Snapshot(created.snapshot_record());
        if let Err(error) = log.write(record).await {
            log.remove_group(group_id);
            created.retire();
            return Err(error);
        }
        tracing::info!(group = group_id, topic = %partition.topic, partition = partition.index, start_offset, "share-partition initialized");
        Ok(created)
    }

    /// The share-partition of `group_id` on `partition` if it exists, without
    /// initializing it or creating a share-state log (admin describes).
    pub async fn get(
        &self,
        shard: &Shard,
        group_id: &str,
        partition: &Rc<Partition>,
    ) -> Result<Option<Rc<SharePartition>>, ErrorCode> {
        let key = (partition.topic_id, partition.index);
        if let Some(found) = self.inner.logs.borrow().get(&key).and_then(|log| log.group(group_id)) {
            return Ok(Some(found));
        }
        let _turn = self.inner.opening.acquire_permit(1).await.map_err(|_| ErrorCode::NotLeaderOrFollower)?;
        Ok(self.log_for(shard, partition, false).await?.and_then(|log| log.group(group_id)))
    }

    /// Deletes `group_id`'s share-partitions on every partition of this
    /// shard (DeleteGroups, or the group's offsets deleted), durably,
    /// opening share-state logs not yet opened. Returns how many there were.
    pub async fn delete_group(&self, shard: &Shard, group_id: &str) -> Result<usize, ErrorCode> {
        let mut deleted = 0;
        for partition in shard.partitions() {
            let log = {
                let _turn = self.inner.opening.acquire_permit(1).await.map_err(|_| ErrorCode::NotLeaderOrFollower)?;
                self.log_for(shard, &partition, false).await?
            };
            if let Some(share_partition) = log.and_then(|log| log.group(group_id)) {
                share_partition.delete().await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Closes the share-state log of a partition that leaves this shard
    /// (topic deleted, partition moved): call before its directory is
    /// removed. Handles to its share-partitions answer errors afterwards.
    pub async fn remove_partition(&self, key: &PartitionKey) {
        let removed = self.inner.logs.borrow_mut().remove(key);
        if let Some(log) = removed {
            for share_partition in log.groups() {
                share_partition.retire();
            }
            log.close().await;
        }
    }

    /// Closes every share-state log (shutdown); nothing opens afterwards.
    pub async fn close(&self) {
        self.inner.closed.set(true);
        self.inner.opening.close();
        let logs: Vec<Rc<ShareStateLog>> = self.inner.logs.borrow_mut().drain().map(|(_, log)| log).collect();
        for log in logs {
            for share_partition in log.groups() {
                share_partition.retire();
            }
            log.close().await;
        }
    }

    /// The share-partitions open on this shard now.
    pub fn open_share_partitions(&self) -> Vec<Rc<SharePartition>> {
        self.inner.logs.borrow().values().flat_map(|log| log.groups()).collect()
    }

    /// Expires lapsed locks in every open share-partition (the sweep's
    /// work, callable directly with an injected clock).
    pub async fn sweep(&self, now_ms: i64) {
        self.inner.sweep(now_ms).await
    }

    /// The open log of `partition`, opening it (creating it when `create`)
    /// if needed; `None` when it does not exist and `create` is false.
    /// The caller holds the `opening` turn.
    async fn log_for(
        &self,
        shard: &Shard,
        partition: &Rc<Partition>,
        create: bool,
    ) -> Result<Option<Rc<ShareStateLog>>, ErrorCode> {
        if self.inner.closed.get() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let key = (partition.topic_id, partition.index);
        if let Some(log) = self.inner.logs.borrow().get(&key) {
            return Ok(Some(log.clone()));
        }
        if !create && !share_state_dir(partition.log.dir()).exists() {
            return Ok(None);
        }
        let log = ShareStateLog::open(partition.clone(), self.inner.segment_bytes, shard.resources.clone())
            .await
            .map_err(|reason| {
                tracing::error!(topic = %partition.topic, partition = partition.index, reason, "share-state log unusable");
                ErrorCode::KafkaStorageError
            })?;
        self.inner.logs.borrow_mut().insert(key, log.clone());
        self.start_sweeping();
        Ok(Some(log))
    }

    fn start_sweeping(&self) {
        if self.inner.sweeping.replace(true) {
            return;
        }
        let registry = Rc::downgrade(&self.inner);
        glommio::spawn_local(sweep_forever(registry)).detach();
    }
}

impl Registry {
    async fn sweep(&self, now_ms: i64) {
        let share_partitions: Vec<Rc<SharePartition>> =
            self.logs.borrow().values().flat_map(|log| log.groups()).collect();
        for share_partition in &share_partitions {
            share_partition.drop_idle_read_ahead(READ_AHEAD_IDLE);
        }
        // Each expiry changes its state and hands its delta to the log in
        // its first poll, so all of them are placed in this order.
        let expiries = share_partitions.iter().map(|share_partition| share_partition.expire_locks(now_ms));
        futures::future::join_all(expiries).await;
    }
}

async fn sweep_forever(registry: Weak<Registry>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(LOCK_SWEEP_INTERVAL_MS)).await;
        let Some(registry) = registry.upgrade() else { return };
        if registry.closed.get() {
            return;
        }
        registry.sweep(now_ms()).await;
    }
}

/// Where a new share-partition starts (`share.auto.offset.reset`).
async fn initial_start_offset(partition: &Partition, settings: &ShareSettings, now_ms: i64) -> Result<i64, ErrorCode> {
    let latest = match settings.isolation {
        IsolationLevel::ReadUncommitted => partition.high_watermark(),
        IsolationLevel::ReadCommitted => partition.last_stable_offset(),
    };
    match settings.auto_offset_reset {
        AutoOffsetReset::Latest => Ok(latest),
        AutoOffsetReset::Earliest => Ok(partition.log.log_start_offset()),
        AutoOffsetReset::ByDuration(duration_ms) => {
            // Negative timestamps are ListOffsets' special values: a duration
            // reaching before the epoch means every record.
            let timestamp = now_ms.saturating_sub(duration_ms).max(0);
            match partition.offset_for(timestamp, settings.isolation).await {
                Ok((offset, _)) if offset >= 0 => Ok(offset),
                Ok(_) => Ok(latest),
                Err(err) => {
                    tracing::error!(topic = %partition.topic, partition = partition.index, error = %err, "offset for timestamp failed");
                    Err(ErrorCode::KafkaStorageError)
                }
            }
        }
    }
}
