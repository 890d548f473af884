//! One partition's share-state log: the durable state of every share group
//! on that partition, in an [`InternalLog`] at `<partition dir>/share-state/`.
//!
//! Placement: the log lives in the partition's own directory, so the state
//! is on the shard that owns the partition (no cross-shard hop on the fetch
//! path), goes where the partition's files go, and is removed with them
//! when the topic is deleted. It is created on first use only: a partition
//! no share group reads has none. The engine ignores subdirectories of a
//! partition directory.
//!
//! Invariants:
//! - `groups` holds exactly the share-partitions the log states (a group is
//!   added, replaced or removed in the same synchronous step as the record
//!   saying so is handed to [`InternalLog::append`]);
//! - after a write failed, the log is `failed`: every later write is
//!   refused (the state in memory may be ahead of the disk), until a
//!   restart replays what is durable.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use protocol::ErrorCode;

use super::records::{self, ShareRecord};
use super::share_partition::SharePartition;
use super::state::ShareState;
use crate::internal_log::InternalLog;
use crate::partition::Partition;

/// The share-state log's directory name inside a partition directory.
pub const SHARE_STATE_DIR: &str = "share-state";

/// Segment size of a share-state log: small, since compaction rewrites
/// the live state once this much was appended and the live state of a
/// partition's groups is bounded by their record locks.
pub const SHARE_STATE_SEGMENT_BYTES: u64 = 1 << 20;

/// Where a partition's share-state log lives.
pub fn share_state_dir(partition_dir: &Path) -> PathBuf {
    partition_dir.join(SHARE_STATE_DIR)
}

pub struct ShareStateLog {
    log: InternalLog,
    partition: Rc<Partition>,
    groups: RefCell<HashMap<Rc<str>, Rc<SharePartition>>>,
    failed: Cell<bool>,
    closed: Cell<bool>,
}

impl ShareStateLog {
    /// Opens (creating) the log of `partition` and replays it. A payload
    /// that does not decode, or that no writer writes, fails the open with
    /// the directory and offset named; the engine has already cut a torn
    /// tail (logging the segment file).
    pub async fn open(
        partition: Rc<Partition>,
        segment_bytes: u64,
        resources: Rc<engine::ShardResources>,
    ) -> Result<Rc<ShareStateLog>, String> {
        let dir = share_state_dir(partition.log.dir());
        let (log, payloads) = InternalLog::open(dir.clone(), segment_bytes, resources)
            .await
            .map_err(|err| format!("opening the share-state log {}: {err}", dir.display()))?;
        let states = match replay(&dir, &payloads) {
            Ok(states) => states,
            Err(reason) => {
                let _ = log.close().await;
                return Err(reason);
            }
        };
        let shared = Rc::new(ShareStateLog {
            log,
            partition: partition.clone(),
            groups: RefCell::new(HashMap::new()),
            failed: Cell::new(false),
            closed: Cell::new(false),
        });
        let (log_start, log_end) = (partition.log.log_start_offset(), partition.log.log_end_offset());
        for (group, mut state) in states {
            state.move_start_to(log_start);
            // Records past the log's end were lost with its tail: fetched as new.
            state.truncate_from(log_end);
            let group: Rc<str> = Rc::from(group);
            let share_partition = SharePartition::new(group.clone(), partition.clone(), Rc::downgrade(&shared), state);
            shared.groups.borrow_mut().insert(group, Rc::new(share_partition));
        }
        tracing::debug!(dir = %dir.display(), groups = shared.groups.borrow().len(), "share-state log opened");
        Ok(shared)
    }

    pub fn dir(&self) -> &Path {
        self.log.dir()
    }

    pub fn partition(&self) -> &Rc<Partition> {
        &self.partition
    }

    pub fn group(&self, group_id: &str) -> Option<Rc<SharePartition>> {
        self.groups.borrow().get(group_id).cloned()
    }

    pub fn groups(&self) -> Vec<Rc<SharePartition>> {
        self.groups.borrow().values().cloned().collect()
    }

    pub(crate) fn insert_group(&self, share_partition: Rc<SharePartition>) {
        self.groups.borrow_mut().insert(share_partition.group_rc(), share_partition);
    }

    pub(crate) fn remove_group(&self, group_id: &str) {
        self.groups.borrow_mut().remove(group_id);
    }

    /// Why writes are refused now, if they are.
    pub fn unusable(&self) -> Option<ErrorCode> {
        if self.closed.get() {
            Some(ErrorCode::NotLeaderOrFollower)
        } else if self.failed.get() {
            Some(ErrorCode::KafkaStorageError)
        } else {
            None
        }
    }

    /// Appends `record` and returns once it is durable. The record is
    /// handed to the log in the first poll of this future (see the module
    /// docs of `share`): callers await it right after the change it states.
    pub async fn write(self: &Rc<Self>, record: ShareRecord) -> Result<(), ErrorCode> {
        self.place(record).await?.await
    }

    /// Appends `record` and returns once it is placed in the log (in call
    /// order, like [`Self::write`]), with a future that resolves once it is
    /// durable. A caller that places several records and waits for the last
    /// one waits for one fdatasync: the log's group commit covers them all.
    pub async fn place(
        self: &Rc<Self>,
        record: ShareRecord,
    ) -> Result<impl std::future::Future<Output = Result<(), ErrorCode>>, ErrorCode> {
        if let Some(error) = self.unusable() {
            return Err(error);
        }
        let payload = records::encode_batch(std::slice::from_ref(&record));
        let (done, durable) = futures::channel::oneshot::channel();
        let on_durable = Box::new(move |outcome: Result<(), String>| {
            let _ = done.send(outcome);
        });
        let placed = self.log.append(move || payload, on_durable).await.map_err(|err| err.to_string());
        let log = self.clone();
        Ok(async move {
            let outcome = match placed {
                Ok(_) => durable.await.unwrap_or_else(|_| Err("the share-state log dropped the append".into())),
                Err(reason) => Err(reason),
            };
            if let Err(reason) = outcome {
                if !log.closed.get() {
                    log.failed.set(true);
                    tracing::error!(dir = %log.dir().display(), reason, "share-state write failed; share-partitions of this partition refuse changes until a restart");
                }
                return Err(log.unusable().unwrap_or(ErrorCode::KafkaStorageError));
            }
            log.compact_if_due();
            Ok(())
        })
    }

    /// Rewrites the live state as a snapshot in the background once enough
    /// was appended since the last one.
    fn compact_if_due(self: &Rc<Self>) {
        if !self.log.wants_compaction() {
            return;
        }
        let log = self.clone();
        glommio::spawn_local(async move {
            let snapshot = || {
                let groups = log.groups.borrow();
                groups
                    .values()
                    .map(|group| records::encode_batch(&[ShareRecord::Snapshot(group.snapshot_record())]))
                    .collect()
            };
            if let Err(err) = log.log.compact(snapshot).await {
                tracing::warn!(dir = %log.dir().display(), error = %err, "share-state compaction failed");
            }
        })
        .detach();
    }

    /// Flushes and closes the log; later writes are refused.
    pub async fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        if let Err(err) = self.log.close().await {
            tracing::warn!(dir = %self.dir().display(), error = %err, "closing the share-state log");
        }
    }
}

/// Rebuilds every group's state from the log's payloads, in order.
fn replay(dir: &Path, payloads: &[(i64, Bytes)]) -> Result<HashMap<String, ShareState>, String> {
    let mut states = HashMap::new();
    for (offset, payload) in payloads {
        let fail = |reason: String| format!("share-state log {}: offset {offset}: {reason}", dir.display());
        for record in records::decode_batch(payload).map_err(fail)? {
            apply_replayed(&mut states, record, dir, *offset).map_err(fail)?;
        }
    }
    Ok(states)
}

fn apply_replayed(
    states: &mut HashMap<String, ShareState>,
    record: ShareRecord,
    dir: &Path,
    offset: i64,
) -> Result<(), String> {
    match record {
        ShareRecord::Snapshot(record) => {
            let state = ShareState::restore(record.state_epoch, record.start_offset, &record.ranges);
            states.insert(record.group, state);
        }
        ShareRecord::Delta(record) => {
            let Some(state) = states.get_mut(&record.group) else {
                return Err(format!("a delta of group {} with no snapshot before it", record.group));
            };
            if record.state_epoch > state.state_epoch() {
                return Err(format!(
                    "a delta of group {} for state epoch {} after a snapshot of epoch {}",
                    record.group,
                    record.state_epoch,
                    state.state_epoch()
                ));
            }
            if record.state_epoch < state.state_epoch() {
                // No writer places one (a reset and the changes after it are
                // placed in order); a stale delta says nothing of the new epoch.
                tracing::warn!(dir = %dir.display(), offset, group = record.group, "skipping a delta of an older state epoch");
                return Ok(());
            }
            state.apply_delta(record.start_offset, &record.ranges);
        }
        ShareRecord::Deleted { group } => {
            states.remove(&group);
        }
    }
    Ok(())
}
