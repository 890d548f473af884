//! One share group's share-partition on one topic partition: the state
//! machine of [`super::state`] bound to the partition's log (what is
//! fetched and acquired) and to the partition's share-state log (what is
//! durable).
//!
//! Each public operation applies its change and hands its delta to the
//! share-state log in one synchronous step, then waits until the delta is
//! durable before it answers. Nothing is borrowed across an await; an
//! acquisition that awaited the partition's log checks that the state was
//! not reset meanwhile (state epoch) before it acquires.
//!
//! Durability of acquisitions: Kafka persists a record's delivery count
//! only when its state next changes (acknowledge, release, lock expiry),
//! so a broker crash forgets deliveries in flight. Here an acquisition's
//! delta (the acquired records as Available with their new delivery
//! count) is durable before the records are returned, so after a crash an
//! acquired record comes back Available with the count of every delivery
//! made: stricter than Kafka, at the cost of one group-committed fdatasync
//! per ShareFetch that acquires (docs/share-partitions.md).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use bytes::Bytes;
use protocol::ErrorCode;
use uuid::Uuid;

use super::log::ShareStateLog;
use super::read_ahead::Reader;
use super::records::{SharePartitionRecord, ShareRecord};
use super::state::{AckBatch, AckError, AcquireLimits, AcquiredRange, MemberId, ShareState, StateRange};
use super::ShareSettings;
use crate::partition::{IsolationLevel, Partition};

/// The answer for one partition of a ShareFetch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShareFetchPartition {
    /// A partition-level error (the other fields are then empty or -1).
    pub error: Option<ErrorCode>,
    /// Whole batches holding the acquired records, as stored; a batch may
    /// also hold records not acquired by this member, which the consumer
    /// drops (it delivers only the offsets in `acquired`).
    pub records: Option<Bytes>,
    /// ShareFetch's `AcquiredRecords`, in offset order.
    pub acquired: Vec<AcquiredRange>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

impl ShareFetchPartition {
    pub fn error(error: ErrorCode) -> ShareFetchPartition {
        ShareFetchPartition {
            error: Some(error),
            records: None,
            acquired: Vec::new(),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
        }
    }

    fn empty(partition: &Partition) -> ShareFetchPartition {
        ShareFetchPartition {
            error: None,
            records: None,
            acquired: Vec::new(),
            high_watermark: partition.high_watermark(),
            last_stable_offset: partition.last_stable_offset(),
            log_start_offset: partition.log.log_start_offset(),
        }
    }
}

/// What DescribeShareGroupOffsets needs of one share-partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareOffsets {
    /// The share-partition start offset (SPSO).
    pub start_offset: i64,
    pub state_epoch: i32,
    /// Records the group has yet to finish: from the start offset to the
    /// latest offset (high watermark, or LSO for read_committed) less those
    /// already Acknowledged or Archived (Kafka's share-partition lag).
    pub lag: i64,
    /// Records between the start and end offsets, and of those, acquired now.
    pub in_flight_records: i64,
    pub acquired_records: i64,
}

/// Wakes the tasks waiting for "something may be acquirable now".
#[derive(Default)]
struct Changes {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Changes {
    fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        for waker in std::mem::take(&mut *self.waiters.borrow_mut()) {
            waker.wake();
        }
    }

    async fn after(&self, generation: u64) {
        poll_fn(|cx| {
            if self.generation.get() != generation {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

pub struct SharePartition {
    group_id: Rc<str>,
    partition: Rc<Partition>,
    log: Weak<ShareStateLog>,
    state: RefCell<ShareState>,
    changes: Changes,
    /// The settings of the latest call, for the lock-expiry sweep.
    settings: Cell<ShareSettings>,
    deleted: Cell<bool>,
    /// Reads the partition's log for acquisitions.
    reader: Reader,
    /// Set while one acquisition reads the log. Concurrent ones would read
    /// the same first available offset and all but one find those records
    /// taken, so they wait for `read_finished` instead and then take from
    /// the read. An acquisition that the kept read serves does no I/O and
    /// waits for nobody: it chooses its offset and applies the acquisition
    /// in one synchronous step.
    reading: Cell<bool>,
    read_finished: Changes,
}

/// Marks a share-partition's log read in progress; dropping it (the read
/// finished, or the acquisition was cancelled) wakes the acquisitions
/// waiting for it.
struct ReadInProgress<'a>(&'a SharePartition);

impl<'a> ReadInProgress<'a> {
    fn start(share_partition: &'a SharePartition) -> ReadInProgress<'a> {
        share_partition.reading.set(true);
        ReadInProgress(share_partition)
    }
}

impl Drop for ReadInProgress<'_> {
    fn drop(&mut self) {
        self.0.reading.set(false);
        self.0.read_finished.notify();
    }
}

impl SharePartition {
    pub(crate) fn new(
        group_id: Rc<str>,
        partition: Rc<Partition>,
        log: Weak<ShareStateLog>,
        state: ShareState,
    ) -> SharePartition {
        SharePartition {
            group_id,
            reader: Reader::new(partition.clone()),
            partition,
            log,
            state: RefCell::new(state),
            changes: Changes::default(),
            settings: Cell::new(ShareSettings::default()),
            deleted: Cell::new(false),
            reading: Cell::new(false),
            read_finished: Changes::default(),
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub(crate) fn group_rc(&self) -> Rc<str> {
        self.group_id.clone()
    }

    pub fn topic_id(&self) -> Uuid {
        self.partition.topic_id
    }

    pub fn partition_index(&self) -> i32 {
        self.partition.index
    }

    /// The share-partition start offset (SPSO).
    pub fn start_offset(&self) -> i64 {
        self.sync_with_log_start();
        self.state.borrow().start_offset()
    }

    pub fn state_epoch(&self) -> i32 {
        self.state.borrow().state_epoch()
    }

    /// A copy of the state machine, for tests and diagnostics.
    pub fn state(&self) -> ShareState {
        self.state.borrow().clone()
    }

    /// The start offset, state epoch and lag inputs (DescribeShareGroupOffsets).
    pub fn offsets(&self, isolation: IsolationLevel) -> ShareOffsets {
        self.sync_with_log_start();
        let latest = match isolation {
            IsolationLevel::ReadUncommitted => self.partition.high_watermark(),
            IsolationLevel::ReadCommitted => self.partition.last_stable_offset(),
        };
        let state = self.state.borrow();
        let terminal = state.terminal_records();
        let lag = (latest - state.start_offset() - terminal).max(0);
        ShareOffsets {
            start_offset: state.start_offset(),
            state_epoch: state.state_epoch(),
            lag,
            in_flight_records: state.in_flight(),
            acquired_records: state.acquired_records(),
        }
    }

    /// The whole state as a snapshot record (compaction, initialization, reset).
    pub(crate) fn snapshot_record(&self) -> SharePartitionRecord {
        let state = self.state.borrow();
        SharePartitionRecord {
            group: self.group_id.to_string(),
            state_epoch: state.state_epoch(),
            start_offset: state.start_offset(),
            ranges: state.snapshot_ranges(),
        }
    }

    fn delta(&self, state: &ShareState, ranges: Vec<StateRange>) -> ShareRecord {
        ShareRecord::Delta(SharePartitionRecord {
            group: self.group_id.to_string(),
            state_epoch: state.state_epoch(),
            start_offset: state.start_offset(),
            ranges,
        })
    }

    fn usable(&self) -> Result<Rc<ShareStateLog>, ErrorCode> {
        if self.deleted.get() {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        let log = self.log.upgrade().ok_or(ErrorCode::NotLeaderOrFollower)?;
        match log.unusable() {
            Some(error) => Err(error),
            None => Ok(log),
        }
    }

    /// Records deleted below the log start (retention, DeleteRecords) leave
    /// the window. Not persisted: a restart moves the start again.
    fn sync_with_log_start(&self) {
        let log_start = self.partition.log.log_start_offset();
        let moved = self.state.borrow_mut().move_start_to(log_start);
        if moved {
            self.changes.notify();
        }
    }

    /// Acquires records for `member_id` (one ShareFetch partition): records
    /// Available again (released, lock lapsed) first, then records past the
    /// end offset, read as whole batches with [`Partition::fetch`] from the
    /// first Available offset (or the end) up to `max_bytes`; acquisition
    /// stops once `max_records` were acquired (soft: whole batches) and new
    /// records stop at `partition_max_record_locks` in flight (strict).
    /// Control batches, and for read_committed batches of aborted
    /// transactions, are archived, never acquired; so is a record at the
    /// delivery limit. Locks lapse at `now_ms + record_lock_duration_ms`.
    /// Returns once the acquisition is durable; an empty answer (no error,
    /// nothing acquired) when nothing is acquirable now: then
    /// [`Self::wait_for_acquirable`] says when to try again.
    pub async fn acquire(
        &self,
        member_id: &str,
        max_bytes: usize,
        max_records: usize,
        settings: &ShareSettings,
        now_ms: i64,
    ) -> ShareFetchPartition {
        self.settings.set(*settings);
        let log = match self.usable() {
            Ok(log) => log,
            Err(error) => return ShareFetchPartition::error(error),
        };
        self.sync_with_log_start();
        if let Err(error) = self.expire_with(&log, settings.delivery_count_limit, now_ms).await {
            return ShareFetchPartition::error(error);
        }
        let (read, fetch_offset) = loop {
            let (fetch_offset, state_epoch) = {
                let state = self.state.borrow();
                let available = state.first_available_offset();
                let full = state.in_flight() >= settings.partition_max_record_locks as i64;
                if max_records == 0 || (available.is_none() && full) {
                    return ShareFetchPartition::empty(&self.partition);
                }
                (available.unwrap_or(state.end_offset()), state.state_epoch())
            };
            if let Some(read) = self.reader.kept(fetch_offset, max_records, max_bytes, settings.isolation) {
                break (read, fetch_offset);
            }
            if self.reading.get() {
                let generation = self.read_finished.generation.get();
                self.read_finished.after(generation).await;
                if self.deleted.get() {
                    return ShareFetchPartition::empty(&self.partition);
                }
                continue;
            }
            let _reading = ReadInProgress::start(self);
            let read = match self.reader.read(fetch_offset, max_records, max_bytes, settings.isolation).await {
                Ok(read) => read,
                // The log start passed the offset meanwhile: the next call moves up.
                Err(ErrorCode::OffsetOutOfRange) => return ShareFetchPartition::empty(&self.partition),
                Err(error) => return ShareFetchPartition::error(error),
            };
            if self.deleted.get() || self.state.borrow().state_epoch() != state_epoch {
                return ShareFetchPartition::empty(&self.partition);
            }
            // The waiters wake once this task yields, after the acquisition
            // below is applied.
            break (read, fetch_offset);
        };
        let limits = AcquireLimits {
            max_records,
            max_in_flight: settings.partition_max_record_locks,
            delivery_count_limit: settings.delivery_count_limit,
            lock_deadline_ms: now_ms.saturating_add(settings.record_lock_duration_ms),
        };
        let member: MemberId = Rc::from(member_id);
        let (acquired, delta) = {
            let mut state = self.state.borrow_mut();
            let (acquired, changes) =
                state.acquire(&member, fetch_offset, read.batches().iter().map(|batch| &batch.info), &limits);
            let delta = (!changes.is_empty()).then(|| self.delta(&state, changes));
            (acquired, delta)
        };
        if let Some(delta) = delta {
            if let Err(error) = log.write(delta).await {
                // The records stay Acquired until their locks lapse.
                return ShareFetchPartition::error(error);
            }
        }
        ShareFetchPartition {
            records: read.slice_acquired(&acquired),
            acquired,
            ..ShareFetchPartition::empty(&self.partition)
        }
    }

    /// Applies one ShareAcknowledge (or ShareFetch piggy-backed) partition's
    /// batches from `member_id`, all or nothing, as Kafka does: each offset
    /// must be Acquired by the member with its lock not lapsed at `now_ms`
    /// (else INVALID_RECORD_STATE), the batches well formed (else
    /// INVALID_REQUEST). Accept → Acknowledged, Reject and Gap → Archived,
    /// Release → Available (delivery count kept; Archived at the limit).
    /// Returns once the change is durable.
    pub async fn acknowledge(
        &self,
        member_id: &str,
        batches: &[AckBatch],
        settings: &ShareSettings,
        now_ms: i64,
    ) -> Result<(), AckError> {
        self.acknowledge_placed(member_id, batches, settings, now_ms).await?.await
    }

    /// [`Self::acknowledge`], returning once the change is applied and its
    /// record placed in the share-state log, with a future that resolves
    /// once it is durable (to the same result). ShareFetch acknowledges
    /// this way, acquires, and then waits: both records share one
    /// fdatasync, and the answer still waits for both.
    pub async fn acknowledge_placed(
        &self,
        member_id: &str,
        batches: &[AckBatch],
        settings: &ShareSettings,
        now_ms: i64,
    ) -> Result<futures::future::LocalBoxFuture<'static, Result<(), AckError>>, AckError> {
        use futures::FutureExt;
        self.settings.set(*settings);
        let refused = |error: ErrorCode| AckError { error, batch_index: 0, message: format!("{error:?}") };
        let log = self.usable().map_err(refused)?;
        self.sync_with_log_start();
        let limit = settings.delivery_count_limit;
        let (outcome, delta, made_available) = {
            let mut state = self.state.borrow_mut();
            let expired = state.expire_locks(now_ms, limit);
            let outcome = state.acknowledge(member_id, batches, limit);
            let mut changes = expired.archived;
            let mut made_available = expired.made_available;
            if let Ok(acknowledged) = &outcome {
                made_available = made_available || !acknowledged.is_empty();
                changes.extend_from_slice(acknowledged);
                changes.sort_by_key(|range| range.first_offset);
            }
            let delta = (!changes.is_empty()).then(|| self.delta(&state, changes));
            (outcome, delta, made_available)
        };
        if made_available {
            self.changes.notify();
        }
        let durable = match delta {
            Some(delta) => Some(log.place(delta).await.map_err(refused)?),
            None => None,
        };
        let outcome = outcome.map(|_| ());
        Ok(async move {
            if let Some(durable) = durable {
                durable.await.map_err(refused)?;
            }
            outcome
        }
        .boxed_local())
    }

    /// Every record acquired by `member_id` becomes Available again (Archived
    /// at the delivery limit): the member left the group, was fenced, or
    /// closed its share session. Returns once what must be durable is.
    pub async fn release_member(&self, member_id: &str) -> Result<(), ErrorCode> {
        let log = self.usable()?;
        let limit = self.settings.get().delivery_count_limit;
        let (released, delta) = {
            let mut state = self.state.borrow_mut();
            let released = state.release_member(member_id, limit);
            let archived = released.archived.clone();
            let delta = (!archived.is_empty()).then(|| self.delta(&state, archived));
            (released, delta)
        };
        if released.made_available || delta.is_some() {
            self.changes.notify();
        }
        match delta {
            Some(delta) => log.write(delta).await,
            None => Ok(()),
        }
    }

    /// Lapsed locks at `now_ms` release their records (the sweep calls this
    /// for every share-partition; acquire and acknowledge do it first too).
    pub async fn expire_locks(&self, now_ms: i64) -> Result<(), ErrorCode> {
        let log = self.usable()?;
        self.expire_with(&log, self.settings.get().delivery_count_limit, now_ms).await
    }

    async fn expire_with(&self, log: &Rc<ShareStateLog>, limit: u16, now_ms: i64) -> Result<(), ErrorCode> {
        let (made_available, delta) = {
            let mut state = self.state.borrow_mut();
            let released = state.expire_locks(now_ms, limit);
            let delta = (!released.archived.is_empty()).then(|| self.delta(&state, released.archived));
            (released.made_available, delta)
        };
        if made_available || delta.is_some() {
            self.changes.notify();
        }
        match delta {
            // Only archiving needs writing: an acquired record is already
            // durable as Available with its count.
            Some(delta) => log.write(delta).await,
            None => Ok(()),
        }
    }

    /// Resolves when an acquisition may return records: some are Available
    /// (released, lock lapsed), the window moved, or the log has records
    /// past the end offset (visible at `settings.isolation`) while the
    /// in-flight bound leaves room. May resolve spuriously; the caller bounds
    /// the wait (ShareFetch's MaxWaitMs) and acquires again.
    pub async fn wait_for_acquirable(&self, settings: &ShareSettings) {
        let generation = self.changes.generation.get();
        let (available, room, end_offset) = {
            let state = self.state.borrow();
            (state.has_available(), state.in_flight() < settings.partition_max_record_locks as i64, state.end_offset())
        };
        if available || self.usable().is_err() {
            return;
        }
        let changed = std::pin::pin!(self.changes.after(generation));
        let arrived = std::pin::pin!(async {
            if room {
                self.partition.wait_for_records_from(end_offset, settings.isolation).await
            } else {
                futures::future::pending::<()>().await
            }
        });
        futures::future::select(changed, arrived).await;
    }

    /// AlterShareGroupOffsets: starts the share-partition again at `offset`
    /// (clamped to the log's start and end) with a new state epoch; every
    /// record state is forgotten, acquired ones included. The caller checks
    /// that the group has no members. Returns once durable.
    pub async fn alter_start_offset(&self, offset: i64) -> Result<(), ErrorCode> {
        let log = self.usable()?;
        if offset < 0 {
            return Err(ErrorCode::InvalidRequest);
        }
        let offset = offset.max(self.partition.log.log_start_offset()).min(self.partition.log.log_end_offset());
        let record = {
            let mut state = self.state.borrow_mut();
            let epoch = state.state_epoch().saturating_add(1);
            *state = ShareState::new(epoch, offset);
            drop(state);
            ShareRecord::Snapshot(self.snapshot_record())
        };
        self.changes.notify();
        log.write(record).await
    }

    /// DeleteShareGroupOffsets (and the group's deletion): the state is
    /// removed durably; a later use initializes it again by
    /// `share.auto.offset.reset`. This handle is dead afterwards.
    pub async fn delete(&self) -> Result<(), ErrorCode> {
        let log = self.usable()?;
        self.deleted.set(true);
        self.reader.clear();
        log.remove_group(&self.group_id);
        self.changes.notify();
        log.write(ShareRecord::Deleted { group: self.group_id.to_string() }).await
    }

    /// Bytes of the log this share-partition holds read ahead.
    pub fn read_ahead_bytes(&self) -> usize {
        self.reader.kept_bytes()
    }

    /// Where the kept read-ahead starts (tests).
    #[cfg(test)]
    pub fn read_ahead_start(&self) -> Option<i64> {
        self.reader.kept_start()
    }

    /// Drops the read-ahead when no acquisition used it for `idle` (the
    /// lock-expiry sweep calls this).
    pub fn drop_idle_read_ahead(&self, idle: std::time::Duration) {
        self.reader.drop_if_idle(idle);
    }

    /// Marks the handle dead (its partition's log closed or removed).
    pub(crate) fn retire(&self) {
        self.deleted.set(true);
        self.reader.clear();
        self.changes.notify();
    }
}
