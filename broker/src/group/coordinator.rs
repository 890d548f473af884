//! One shard's group coordinator: the groups that hash to this shard, their
//! committed offsets and the durable offsets log behind them, the join
//! phase timers and the session-timeout sweep.
//!
//! Only its own shard touches it (requests arrive through `invoke_on`), so
//! plain `RefCell`s suffice; no borrow is held across an await.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::log::{self, OffsetLog, OffsetLogError, OffsetRecord};
use super::state::{Committed, Group};
use crate::shard::Shard;

/// How often each shard looks for members whose session timed out.
pub const SESSION_SWEEP_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct GroupCoordinator {
    groups: RefCell<HashMap<String, Group>>,
    log: RefCell<Option<OffsetLog>>,
}

impl GroupCoordinator {
    /// Opens this shard's offsets log and loads the offsets of the groups
    /// this shard coordinates (from every shard's log, so a change of the
    /// shard count moves groups with their offsets; the latest commit wins).
    pub fn load(&self, data_dir: &Path, shard: usize, shards: usize) -> Result<(), OffsetLogError> {
        let (log, mut records) = OffsetLog::open(data_dir, shard)?;
        let own = records.len();
        records.extend(log::read_all(data_dir, shard));
        let mut groups = self.groups.borrow_mut();
        let mut loaded = 0usize;
        for (i, record) in records.into_iter().enumerate() {
            if super::coordinator_shard(&record.group, shards) != shard {
                continue;
            }
            let group = groups.entry(record.group.clone()).or_insert_with(|| Group::new(record.group.clone()));
            let committed = Committed {
                offset: record.offset,
                leader_epoch: record.leader_epoch,
                metadata: record.metadata,
                commit_timestamp_ms: record.commit_timestamp_ms,
            };
            let key = (record.topic, record.partition);
            // Within one file, later frames win; across files (another
            // shard count) the newer commit does.
            let newer = match group.offsets.get(&key) {
                Some(old) => i < own || committed.commit_timestamp_ms >= old.commit_timestamp_ms,
                None => true,
            };
            if newer {
                group.offsets.insert(key, committed);
                loaded += 1;
            }
        }
        if loaded > 0 {
            tracing::info!(shard, groups = groups.len(), offsets = loaded, "loaded committed offsets");
        }
        *self.log.borrow_mut() = Some(log);
        Ok(())
    }

    /// Stops writing (shutdown): every append so far is already durable.
    pub fn close(&self) {
        self.log.borrow_mut().take();
    }

    /// Runs `f` on the group, creating it (Empty) if `create` and absent.
    pub fn with_group<R>(&self, group_id: &str, create: bool, f: impl FnOnce(&mut Group) -> R) -> Option<R> {
        let mut groups = self.groups.borrow_mut();
        if create && !groups.contains_key(group_id) {
            groups.insert(group_id.to_owned(), Group::new(group_id.to_owned()));
        }
        groups.get_mut(group_id).map(f)
    }

    /// Writes commits durably (fdatasync) before they become visible.
    pub fn append(&self, records: &[OffsetRecord]) -> Result<(), OffsetLogError> {
        let mut log = self.log.borrow_mut();
        let log = log.as_mut().ok_or_else(|| OffsetLogError::Failed {
            path: Path::new(log::OFFSETS_DIR).to_path_buf(),
            reason: "the offsets log is closed (shutting down)".into(),
        })?;
        log.append(records)
    }

    /// Arms the join-phase timer a state change asked for, if any.
    pub fn arm_timer(shard: &Rc<Shard>, group_id: &str) {
        let wanted = shard.groups.with_group(group_id, false, |group| group.timer_wanted.take()).flatten();
        let Some((epoch, timeout)) = wanted else {
            return;
        };
        let shard = shard.clone();
        let group_id = group_id.to_owned();
        glommio::spawn_local(async move {
            glommio::timer::sleep(timeout).await;
            shard.groups.with_group(&group_id, false, |group| group.rebalance_timed_out(epoch, Instant::now()));
            GroupCoordinator::arm_timer(&shard, &group_id);
        })
        .detach();
    }

    /// Evicts members whose session timed out, every
    /// [`SESSION_SWEEP_INTERVAL`], until the shard stops.
    pub async fn sweep_sessions(shard: Rc<Shard>) {
        loop {
            {
                let tick = std::pin::pin!(glommio::timer::sleep(SESSION_SWEEP_INTERVAL));
                let stop = std::pin::pin!(shard.stopping.wait());
                if let futures::future::Either::Right(_) = futures::future::select(tick, stop).await {
                    return;
                }
            }
            let now = Instant::now();
            let mut touched = Vec::new();
            for (id, group) in shard.groups.groups.borrow_mut().iter_mut() {
                let expired = group.expire(now);
                if !expired.is_empty() {
                    tracing::info!(shard = shard.id, group = %id, members = ?expired, "session timeout: members removed");
                    touched.push(id.clone());
                }
            }
            for id in touched {
                GroupCoordinator::arm_timer(&shard, &id);
            }
        }
    }

    /// Ids of this shard's groups with their state and protocol type.
    pub fn list(&self) -> Vec<(String, &'static str, String)> {
        let groups = self.groups.borrow();
        groups
            .values()
            .map(|group| (group.id.clone(), group.state.name(), group.protocol_type.clone().unwrap_or_default()))
            .collect()
    }
}
