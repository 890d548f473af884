//! The in-memory state machine of one share-partition, free of I/O and
//! clocks (every time is passed in), so that every rule can be tested alone.
//!
//! The window `[start_offset, end_offset)` (Kafka's SPSO and SPEO, the end
//! exclusive here) is covered by *runs*: maximal ranges of consecutive
//! offsets in one state with one delivery count (and, when Acquired, one
//! member and one lock deadline). A fetch of whole batches makes one run
//! per batch; acknowledgements that differ split runs; runs that become
//! equal again are merged. This is Kafka's in-flight batches with their
//! per-offset maps, in one structure.
//!
//! Invariants, checked by [`ShareState::assert_invariants`] in tests and
//! debug builds after every change:
//! - runs are sorted, non-empty, and cover the window with no gap or overlap;
//! - the first run is never terminal (Acknowledged or Archived): the start
//!   offset advances over leading terminal runs;
//! - adjacent runs differ (else they are merged);
//! - an Acquired run has an owner; no other run does.
//!
//! Every change returns the persisted ranges it changed ([`StateRange`]:
//! Acquired is persisted as Available with its delivery count, see
//! docs/share-partitions.md), which the caller writes as one delta.

use std::collections::VecDeque;
use std::rc::Rc;

use protocol::ErrorCode;

/// A share group member's id, shared by all the runs it holds.
pub type MemberId = Rc<str>;

/// A record's delivery state, with Kafka's wire and persisted values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordState {
    Available = 0,
    Acquired = 1,
    Acknowledged = 2,
    Archived = 4,
}

impl RecordState {
    pub fn from_value(value: u8) -> Option<RecordState> {
        match value {
            0 => Some(RecordState::Available),
            1 => Some(RecordState::Acquired),
            2 => Some(RecordState::Acknowledged),
            4 => Some(RecordState::Archived),
            _ => None,
        }
    }

    /// Acknowledged and Archived records never change state again.
    pub fn is_terminal(self) -> bool {
        matches!(self, RecordState::Acknowledged | RecordState::Archived)
    }
}

/// A persisted range: its state is never Acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateRange {
    pub first_offset: i64,
    pub last_offset: i64,
    pub state: RecordState,
    pub delivery_count: u16,
}

/// Records handed to a member by [`ShareState::acquire`], as ShareFetch's
/// `AcquiredRecords` carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcquiredRange {
    pub first_offset: i64,
    pub last_offset: i64,
    pub delivery_count: u16,
}

/// What a fetched batch is to a share group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// Records a consumer may get.
    Data,
    /// A control batch (transaction marker): never acquired, archived.
    Control,
    /// read_committed: a batch of an aborted transaction: archived.
    Aborted,
}

/// One fetched batch's offsets and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub kind: BatchKind,
}

/// The bounds of one acquisition.
#[derive(Debug, Clone, Copy)]
pub struct AcquireLimits {
    /// Soft: no batch (or run) is started once this many were acquired.
    pub max_records: usize,
    /// Strict: new records are acquired only while `end - start` is below it
    /// (`group.share.partition.max.record.locks`).
    pub max_in_flight: usize,
    /// A record delivered this many times is archived instead of offered.
    pub delivery_count_limit: u16,
    /// When the locks taken now lapse.
    pub lock_deadline_ms: i64,
}

/// ShareAcknowledge's acknowledge types (KIP-932).
pub mod ack_type {
    pub const GAP: u8 = 0;
    pub const ACCEPT: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const REJECT: u8 = 3;
}

/// One acknowledgement batch: one type for the whole range, or one per offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckBatch {
    pub first_offset: i64,
    pub last_offset: i64,
    pub types: Vec<u8>,
}

/// Why an acknowledgement was refused (nothing of it was applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    pub error: ErrorCode,
    /// The refused batch's position in the request.
    pub batch_index: usize,
    pub message: String,
}

/// What lock expiry or a member's release changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Some records became Available (waiting fetches should try again).
    pub made_available: bool,
    /// Records archived because they reached the delivery limit, to persist.
    pub archived: Vec<StateRange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    first: i64,
    last: i64,
    state: RecordState,
    delivery_count: u16,
    owner: Option<MemberId>,
    deadline_ms: i64,
}

impl Run {
    fn new(first: i64, last: i64, state: RecordState, delivery_count: u16) -> Run {
        Run { first, last, state, delivery_count, owner: None, deadline_ms: 0 }
    }

    fn records(&self) -> i64 {
        self.last - self.first + 1
    }

    /// Whether `next` (right after it) can join it. Terminal runs join
    /// whatever their delivery counts: nothing reads them again.
    fn joins(&self, next: &Run) -> bool {
        self.state == next.state
            && (self.state.is_terminal()
                || (self.delivery_count == next.delivery_count
                    && self.owner == next.owner
                    && self.deadline_ms == next.deadline_ms))
    }

    fn persisted(&self) -> StateRange {
        let state = if self.state == RecordState::Acquired { RecordState::Available } else { self.state };
        StateRange { first_offset: self.first, last_offset: self.last, state, delivery_count: self.delivery_count }
    }
}

/// One share-partition's window and record states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareState {
    state_epoch: i32,
    start_offset: i64,
    end_offset: i64,
    runs: VecDeque<Run>,
    /// No Acquired run's deadline is earlier (it may be stale-early: then
    /// an expiry pass finds nothing and recomputes it).
    earliest_deadline_ms: i64,
}

impl ShareState {
    /// A fresh window at `start_offset` with nothing in flight.
    pub fn new(state_epoch: i32, start_offset: i64) -> ShareState {
        assert!(start_offset >= 0, "start offset {start_offset}");
        ShareState {
            state_epoch,
            start_offset,
            end_offset: start_offset,
            runs: VecDeque::new(),
            earliest_deadline_ms: i64::MAX,
        }
    }

    /// The state a snapshot record states. Offsets between ranges (which no
    /// writer leaves) count as Available, never delivered: redelivering is
    /// the safe side.
    pub fn restore(state_epoch: i32, start_offset: i64, ranges: &[StateRange]) -> ShareState {
        let mut state = ShareState::new(state_epoch, start_offset);
        state.apply_delta(start_offset, ranges);
        state
    }

    pub fn state_epoch(&self) -> i32 {
        self.state_epoch
    }

    /// The share-partition start offset (SPSO).
    pub fn start_offset(&self) -> i64 {
        self.start_offset
    }

    /// One past the last offset in flight (SPEO + 1 in Kafka's terms).
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// Bytes the window's runs take on the heap (the `VecDeque`'s
    /// capacity; an Acquired run's member id is shared with the session).
    /// At most one run per in-flight record, and in-flight records are
    /// bounded by `group.share.partition.max.record.locks`: so is this.
    pub fn memory_bytes(&self) -> usize {
        self.runs.capacity() * std::mem::size_of::<Run>()
    }

    /// Records in the window, whatever their state: what
    /// `group.share.partition.max.record.locks` bounds.
    pub fn in_flight(&self) -> i64 {
        self.end_offset - self.start_offset
    }

    /// Acknowledged and Archived records inside the window (Kafka's
    /// `deliveryCompleteCount`, for the lag).
    pub fn terminal_records(&self) -> i64 {
        self.runs.iter().filter(|run| run.state.is_terminal()).map(Run::records).sum()
    }

    /// Records Acquired now, by anyone.
    pub fn acquired_records(&self) -> i64 {
        self.runs.iter().filter(|run| run.state == RecordState::Acquired).map(Run::records).sum()
    }

    /// The first Available offset, where a fetch for redelivery starts.
    pub fn first_available_offset(&self) -> Option<i64> {
        self.runs.iter().find(|run| run.state == RecordState::Available).map(|run| run.first)
    }

    /// Whether an acquisition could return records without new ones in the log.
    pub fn has_available(&self) -> bool {
        self.first_available_offset().is_some()
    }

    /// The persisted form of the window: Acquired as Available.
    pub fn snapshot_ranges(&self) -> Vec<StateRange> {
        let mut ranges: Vec<StateRange> = Vec::with_capacity(self.runs.len());
        for run in &self.runs {
            push_merged(&mut ranges, run.persisted());
        }
        ranges
    }

    /// The state of `offset` and its delivery count; `None` outside the window.
    pub fn state_of(&self, offset: i64) -> Option<(RecordState, u16)> {
        if offset < self.start_offset || offset >= self.end_offset {
            return None;
        }
        let run = &self.runs[self.index_of(offset)];
        Some((run.state, run.delivery_count))
    }

    /// Moves the start up to `offset` (the log start passed it: retention,
    /// DeleteRecords): whatever lies below is gone, acquired or not.
    /// Returns whether the start moved.
    pub fn move_start_to(&mut self, offset: i64) -> bool {
        if offset <= self.start_offset {
            return false;
        }
        self.split_at(offset);
        while self.runs.front().is_some_and(|run| run.last < offset) {
            self.runs.pop_front();
        }
        self.start_offset = offset;
        self.end_offset = self.end_offset.max(offset);
        self.normalize();
        true
    }

    /// Forgets the window at and above `offset` (records the log no longer
    /// has, after an unclean loss of its tail): they will be fetched as new.
    pub fn truncate_from(&mut self, offset: i64) {
        let offset = offset.max(self.start_offset);
        if offset >= self.end_offset {
            return;
        }
        self.split_at(offset);
        while self.runs.back().is_some_and(|run| run.first >= offset) {
            self.runs.pop_back();
        }
        self.end_offset = offset;
        self.normalize();
    }

    /// Replays a delta: the start moves up to `start_offset` (never down:
    /// within a state epoch it only advances), then each range takes its
    /// persisted state, extending the window where it lies beyond it.
    pub fn apply_delta(&mut self, start_offset: i64, ranges: &[StateRange]) {
        self.move_start_to(start_offset);
        for range in ranges {
            self.put_range(range);
        }
        self.normalize();
    }

    fn put_range(&mut self, range: &StateRange) {
        let first = range.first_offset.max(self.start_offset);
        let last = range.last_offset;
        if last < first {
            return;
        }
        let old_end = self.end_offset;
        if first > old_end {
            self.push_back(Run::new(old_end, first - 1, RecordState::Available, 0));
        }
        if last >= old_end {
            self.push_back(Run::new(first.max(old_end), last, range.state, range.delivery_count));
        }
        let overlap_last = last.min(old_end - 1);
        if first <= overlap_last {
            self.for_each_run_in(first, overlap_last, |run| {
                run.state = range.state;
                run.delivery_count = range.delivery_count;
                run.owner = None;
                None
            });
        }
    }

    /// Acquires for `member` what the fetched `batches` hold (in offset
    /// order, as the log returned them from `fetch_offset`): Available
    /// records in the window first, then records past its end, up to the
    /// limits. Control batches and aborted batches are archived, never
    /// acquired; so is an Available record at the delivery limit; offsets
    /// the log skipped between batches are archived as gaps. Returns the
    /// acquired ranges and the persisted changes (Acquired as Available
    /// with the new count).
    pub fn acquire<'a>(
        &mut self,
        member: &MemberId,
        fetch_offset: i64,
        batches: impl IntoIterator<Item = &'a BatchInfo>,
        limits: &AcquireLimits,
    ) -> (Vec<AcquiredRange>, Vec<StateRange>) {
        let mut acquired = Vec::new();
        let mut changes = Vec::new();
        let mut count = 0usize;
        for batch in batches {
            if count >= limits.max_records {
                break;
            }
            let from = batch.base_offset.max(self.start_offset);
            if batch.last_offset < from {
                continue;
            }
            let existing_last = batch.last_offset.min(self.end_offset - 1);
            if from <= existing_last {
                count +=
                    self.acquire_existing(member, from, existing_last, batch.kind, limits, &mut acquired, &mut changes);
            }
            if batch.last_offset < self.end_offset {
                continue;
            }
            // The log read started at `fetch_offset`: between the window's end
            // and this batch it holds nothing (a gap), unless the read started
            // above the end, which only a concurrent reset can cause.
            if fetch_offset > self.end_offset {
                break;
            }
            if !self.acquire_new(member, batch, limits, &mut count, &mut acquired, &mut changes) {
                break;
            }
        }
        self.normalize();
        (acquired, merge_changes(changes))
    }

    /// The Available pieces of `[from, to]` (inside the window) go to
    /// `member`, or to Archived when the batch may not be delivered or they
    /// reached the delivery limit. Returns how many records were acquired.
    #[allow(clippy::too_many_arguments)]
    fn acquire_existing(
        &mut self,
        member: &MemberId,
        from: i64,
        to: i64,
        kind: BatchKind,
        limits: &AcquireLimits,
        acquired: &mut Vec<AcquiredRange>,
        changes: &mut Vec<StateRange>,
    ) -> usize {
        let mut count = 0usize;
        let mut earliest = self.earliest_deadline_ms;
        self.for_each_run_in(from, to, |run| {
            if run.state != RecordState::Available {
                return None;
            }
            if kind != BatchKind::Data || run.delivery_count >= limits.delivery_count_limit {
                run.state = RecordState::Archived;
                return Some(run.persisted());
            }
            run.state = RecordState::Acquired;
            run.delivery_count = run.delivery_count.saturating_add(1);
            run.owner = Some(member.clone());
            run.deadline_ms = limits.lock_deadline_ms;
            earliest = earliest.min(run.deadline_ms);
            count += run.records() as usize;
            push_acquired(
                acquired,
                AcquiredRange { first_offset: run.first, last_offset: run.last, delivery_count: run.delivery_count },
            );
            Some(run.persisted())
        })
        .into_iter()
        .for_each(|change| changes.push(change));
        self.earliest_deadline_ms = earliest;
        count
    }

    /// Extends the window over `batch` (which reaches past its end). Returns
    /// false once nothing more may be acquired (the in-flight bound).
    fn acquire_new(
        &mut self,
        member: &MemberId,
        batch: &BatchInfo,
        limits: &AcquireLimits,
        count: &mut usize,
        acquired: &mut Vec<AcquiredRange>,
        changes: &mut Vec<StateRange>,
    ) -> bool {
        let first = batch.base_offset.max(self.end_offset);
        let room = (limits.max_in_flight as i64).saturating_sub(self.in_flight());
        if batch.kind == BatchKind::Data && room <= 0 {
            return false;
        }
        if first > self.end_offset {
            let gap = Run::new(self.end_offset, first - 1, RecordState::Archived, 0);
            changes.push(gap.persisted());
            self.push_back(gap);
        }
        if batch.kind != BatchKind::Data {
            let archived = Run::new(first, batch.last_offset, RecordState::Archived, 0);
            changes.push(archived.persisted());
            self.push_back(archived);
            return true;
        }
        let room = (limits.max_in_flight as i64).saturating_sub(self.in_flight());
        if room <= 0 {
            return false;
        }
        let last = batch.last_offset.min(first + room - 1);
        let mut run = Run::new(first, last, RecordState::Acquired, 1);
        run.owner = Some(member.clone());
        run.deadline_ms = limits.lock_deadline_ms;
        self.earliest_deadline_ms = self.earliest_deadline_ms.min(run.deadline_ms);
        *count += run.records() as usize;
        push_acquired(acquired, AcquiredRange { first_offset: first, last_offset: last, delivery_count: 1 });
        changes.push(run.persisted());
        self.push_back(run);
        last == batch.last_offset
    }

    /// Applies `batches` from `member`, all or nothing: every offset must be
    /// Acquired by `member` (locks that lapsed must have been expired by the
    /// caller first). Accept makes records Acknowledged, Reject and Gap
    /// Archived, Release Available again (Archived at the delivery limit),
    /// delivery counts kept. Returns the persisted changes.
    pub fn acknowledge(
        &mut self,
        member: &str,
        batches: &[AckBatch],
        delivery_count_limit: u16,
    ) -> Result<Vec<StateRange>, AckError> {
        let mut previous_last = i64::MIN;
        for (batch_index, batch) in batches.iter().enumerate() {
            check_ack_shape(batch, previous_last).map_err(|message| AckError {
                error: ErrorCode::InvalidRequest,
                batch_index,
                message,
            })?;
            previous_last = batch.last_offset;
            self.check_acquired_by(member, batch.first_offset, batch.last_offset).map_err(|message| AckError {
                error: ErrorCode::InvalidRecordState,
                batch_index,
                message,
            })?;
        }
        let mut changes = Vec::new();
        for batch in batches {
            if batch.types.len() == 1 {
                self.apply_ack(
                    batch.first_offset,
                    batch.last_offset,
                    batch.types[0],
                    delivery_count_limit,
                    &mut changes,
                );
                continue;
            }
            // One type per offset: consecutive equal types are applied together.
            let mut from = 0usize;
            while from < batch.types.len() {
                let ack = batch.types[from];
                let to = from + batch.types[from..].iter().take_while(|t| **t == ack).count() - 1;
                let first = batch.first_offset + from as i64;
                self.apply_ack(first, batch.first_offset + to as i64, ack, delivery_count_limit, &mut changes);
                from = to + 1;
            }
        }
        self.normalize();
        Ok(merge_changes(changes))
    }

    fn check_acquired_by(&self, member: &str, first: i64, last: i64) -> Result<(), String> {
        if first < self.start_offset || last >= self.end_offset {
            return Err(format!(
                "offsets {first}..={last} are not all in flight (window {}..{})",
                self.start_offset, self.end_offset
            ));
        }
        let mut index = self.index_of(first);
        while let Some(run) = self.runs.get(index).filter(|run| run.first <= last) {
            let held = run.state == RecordState::Acquired && run.owner.as_deref() == Some(member);
            if !held {
                return Err(format!(
                    "offsets {}..={} are {:?}{}, not acquired by this member",
                    run.first.max(first),
                    run.last.min(last),
                    run.state,
                    if run.state == RecordState::Acquired { " by another member" } else { "" }
                ));
            }
            index += 1;
        }
        Ok(())
    }

    fn apply_ack(&mut self, first: i64, last: i64, ack: u8, delivery_count_limit: u16, changes: &mut Vec<StateRange>) {
        let state = match ack {
            ack_type::ACCEPT => RecordState::Acknowledged,
            ack_type::RELEASE => RecordState::Available,
            _ => RecordState::Archived,
        };
        let changed = self.for_each_run_in(first, last, |run| {
            run.state = state;
            if state == RecordState::Available && run.delivery_count >= delivery_count_limit {
                run.state = RecordState::Archived;
            }
            run.owner = None;
            Some(run.persisted())
        });
        changes.extend(changed);
    }

    /// Acquired records whose lock lapsed at `now_ms` become Available, or
    /// Archived at the delivery limit. Cheap when no lock lapsed.
    pub fn expire_locks(&mut self, now_ms: i64, delivery_count_limit: u16) -> Released {
        if now_ms < self.earliest_deadline_ms {
            return Released::default();
        }
        let mut earliest = i64::MAX;
        for run in &self.runs {
            if run.state == RecordState::Acquired && run.deadline_ms > now_ms {
                earliest = earliest.min(run.deadline_ms);
            }
        }
        self.earliest_deadline_ms = earliest;
        self.release_where(delivery_count_limit, |run| run.deadline_ms <= now_ms)
    }

    /// Every record Acquired by `member` becomes Available (Archived at the
    /// delivery limit): the member left, was fenced or closed its session.
    pub fn release_member(&mut self, member: &str, delivery_count_limit: u16) -> Released {
        self.release_where(delivery_count_limit, |run| run.owner.as_deref() == Some(member))
    }

    fn release_where(&mut self, delivery_count_limit: u16, mut select: impl FnMut(&Run) -> bool) -> Released {
        let mut released = Released::default();
        for run in self.runs.iter_mut() {
            if run.state != RecordState::Acquired || !select(run) {
                continue;
            }
            run.owner = None;
            if run.delivery_count >= delivery_count_limit {
                run.state = RecordState::Archived;
                push_merged(&mut released.archived, run.persisted());
            } else {
                run.state = RecordState::Available;
                released.made_available = true;
            }
        }
        self.normalize();
        released
    }

    /// The index of the run holding `offset` (inside the window).
    fn index_of(&self, offset: i64) -> usize {
        self.runs.partition_point(|run| run.last < offset)
    }

    /// Makes `offset` the first offset of a run, splitting the run holding it.
    fn split_at(&mut self, offset: i64) {
        if offset <= self.start_offset || offset >= self.end_offset {
            return;
        }
        let index = self.index_of(offset);
        let run = &mut self.runs[index];
        if run.first == offset {
            return;
        }
        let mut right = run.clone();
        run.last = offset - 1;
        right.first = offset;
        self.runs.insert(index + 1, right);
    }

    /// Calls `change` on every run of `[first, last]` (inside the window),
    /// split at both ends first; collects what it returns.
    fn for_each_run_in(
        &mut self,
        first: i64,
        last: i64,
        mut change: impl FnMut(&mut Run) -> Option<StateRange>,
    ) -> Vec<StateRange> {
        assert!(
            self.start_offset <= first && first <= last && last < self.end_offset,
            "range {first}..={last} outside the window {}..{}",
            self.start_offset,
            self.end_offset
        );
        self.split_at(first);
        self.split_at(last + 1);
        let mut changed = Vec::new();
        let mut index = self.index_of(first);
        while let Some(run) = self.runs.get_mut(index).filter(|run| run.first <= last) {
            if let Some(range) = change(run) {
                changed.push(range);
            }
            index += 1;
        }
        changed
    }

    fn push_back(&mut self, run: Run) {
        assert_eq!(run.first, self.end_offset, "a run must start at the window's end");
        assert!(run.first <= run.last, "empty run {}..={}", run.first, run.last);
        self.end_offset = run.last + 1;
        self.runs.push_back(run);
    }

    /// Advances the start over leading terminal runs and merges equal
    /// neighbours.
    fn normalize(&mut self) {
        while let Some(run) = self.runs.front().filter(|run| run.state.is_terminal()) {
            self.start_offset = run.last + 1;
            self.runs.pop_front();
        }
        if self.runs.is_empty() {
            self.start_offset = self.end_offset;
        }
        let mut kept = 0usize;
        for index in 1..self.runs.len() {
            if self.runs[kept].joins(&self.runs[index]) {
                self.runs[kept].last = self.runs[index].last;
            } else {
                kept += 1;
                self.runs.swap(kept, index);
            }
        }
        self.runs.truncate(if self.runs.is_empty() { 0 } else { kept + 1 });
        if cfg!(debug_assertions) {
            self.assert_invariants();
        }
    }

    /// See the module docs.
    pub fn assert_invariants(&self) {
        assert!(self.start_offset <= self.end_offset, "start {} above end {}", self.start_offset, self.end_offset);
        let mut next = self.start_offset;
        for (index, run) in self.runs.iter().enumerate() {
            assert_eq!(run.first, next, "run {index} starts at {} where {next} was expected", run.first);
            assert!(run.first <= run.last, "run {index} is empty: {}..={}", run.first, run.last);
            assert_eq!(run.owner.is_some(), run.state == RecordState::Acquired, "run {index}: {run:?}");
            if index > 0 {
                assert!(!self.runs[index - 1].joins(run), "runs {} and {index} were not merged", index - 1);
            }
            next = run.last + 1;
        }
        assert_eq!(next, self.end_offset, "the runs end at {next}, the window at {}", self.end_offset);
        if let Some(first) = self.runs.front() {
            assert!(!first.state.is_terminal(), "the first run is terminal: {first:?}");
        }
    }
}

/// Kafka's request rules for one batch: a range, types valid, one type or
/// one per offset, batches in increasing order without overlap.
fn check_ack_shape(batch: &AckBatch, previous_last: i64) -> Result<(), String> {
    let (first, last) = (batch.first_offset, batch.last_offset);
    if first < 0 || last < first {
        return Err(format!("invalid range {first}..={last}"));
    }
    if first <= previous_last {
        return Err(format!(
            "batch {first}..={last} overlaps or precedes the previous batch (ends at {previous_last})"
        ));
    }
    let records = (last - first).saturating_add(1);
    if batch.types.len() != 1 && batch.types.len() as i64 != records {
        return Err(format!("{} acknowledge types for {records} offsets (one, or one per offset)", batch.types.len()));
    }
    if let Some(bad) = batch.types.iter().find(|t| **t > ack_type::REJECT) {
        return Err(format!("unknown acknowledge type {bad}"));
    }
    Ok(())
}

/// Adds `range` to the acquired ranges, joining it to the previous one when
/// they touch with the same delivery count (fewer AcquiredRecords entries).
fn push_acquired(acquired: &mut Vec<AcquiredRange>, range: AcquiredRange) {
    if let Some(last) = acquired.last_mut() {
        if last.last_offset + 1 == range.first_offset && last.delivery_count == range.delivery_count {
            last.last_offset = range.last_offset;
            return;
        }
    }
    acquired.push(range);
}

fn push_merged(ranges: &mut Vec<StateRange>, range: StateRange) {
    if let Some(last) = ranges.last_mut() {
        if last.last_offset + 1 == range.first_offset
            && last.state == range.state
            && (last.delivery_count == range.delivery_count || range.state.is_terminal())
        {
            last.last_offset = range.last_offset;
            return;
        }
    }
    ranges.push(range);
}

/// Sorts changes by offset and merges neighbours (later changes of an
/// offset win: a range changed twice in one step keeps its last state).
fn merge_changes(mut changes: Vec<StateRange>) -> Vec<StateRange> {
    changes.sort_by_key(|range| range.first_offset);
    let mut merged: Vec<StateRange> = Vec::with_capacity(changes.len());
    for range in changes {
        push_merged(&mut merged, range);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u16 = 5;

    fn member(id: &str) -> MemberId {
        Rc::from(id)
    }

    fn data(base_offset: i64, last_offset: i64) -> BatchInfo {
        BatchInfo { base_offset, last_offset, kind: BatchKind::Data }
    }

    fn limits(max_records: usize, deadline: i64) -> AcquireLimits {
        AcquireLimits { max_records, max_in_flight: 2000, delivery_count_limit: LIMIT, lock_deadline_ms: deadline }
    }

    fn range(first_offset: i64, last_offset: i64, delivery_count: u16) -> AcquiredRange {
        AcquiredRange { first_offset, last_offset, delivery_count }
    }

    fn ack(first_offset: i64, last_offset: i64, types: &[u8]) -> AckBatch {
        AckBatch { first_offset, last_offset, types: types.to_vec() }
    }

    /// Acquires for `who` what a fetch from the first available offset (or
    /// the end) would bring, given the log's batches.
    fn acquire(state: &mut ShareState, who: &MemberId, log: &[BatchInfo], max_records: usize) -> Vec<AcquiredRange> {
        let from = state.first_available_offset().unwrap_or(state.end_offset());
        let batches: Vec<BatchInfo> = log.iter().filter(|b| b.last_offset >= from).copied().collect();
        state.acquire(who, from, &batches, &limits(max_records, 1000)).0
    }

    #[test]
    fn memory_per_in_flight_record_is_bounded_in_the_worst_case() {
        // Proves the memory bound docs/benchmarks.md reports: with every
        // other record released (the most fragmented window: one run per
        // record), the runs take at most 48 bytes per in-flight record, and
        // acquisition never holds more than max_in_flight records.
        assert!(std::mem::size_of::<Run>() <= 48, "{} bytes per run", std::mem::size_of::<Run>());
        let mut state = ShareState::new(0, 0);
        let a = member("a");
        let log: Vec<BatchInfo> = (0..100).map(|i| data(i * 100, i * 100 + 99)).collect();
        let acquired = acquire(&mut state, &a, &log, 100_000);
        assert_eq!(acquired.iter().map(|r| r.last_offset - r.first_offset + 1).sum::<i64>(), 2000, "max_in_flight");
        let types: Vec<u8> = (0..2000).map(|i| if i % 2 == 0 { 2 } else { 1 }).collect();
        state.acknowledge("a", &[ack(0, 1999, &types)], LIMIT).unwrap();
        assert_eq!(state.in_flight(), 2000, "the leading released record keeps the start at 0");
        let per_record = state.memory_bytes() as f64 / state.in_flight() as f64;
        assert!(
            per_record <= 2.0 * 48.0,
            "{per_record:.1} bytes per in-flight record (VecDeque growth at most doubles)"
        );
    }

    #[test]
    fn new_records_are_acquired_whole_batches_up_to_max_records() {
        // Proves a fetch past the window's end acquires whole batches with
        // delivery count 1 until max_records is reached (soft: the batch
        // crossing it is taken whole), and the next acquisition continues.
        let mut state = ShareState::new(0, 0);
        let log = [data(0, 4), data(5, 9), data(10, 14)];
        let a = member("a");
        assert_eq!(acquire(&mut state, &a, &log, 7), vec![range(0, 9, 1)]);
        assert_eq!((state.start_offset(), state.end_offset()), (0, 10));
        assert_eq!(acquire(&mut state, &a, &log, 100), vec![range(10, 14, 1)]);
        assert_eq!(acquire(&mut state, &a, &log, 100), vec![]);
        assert_eq!(state.acquired_records(), 15);
    }

    #[test]
    fn accept_reject_and_gap_are_terminal_and_move_the_start() {
        // Proves Accept → Acknowledged, Reject and Gap → Archived, and the
        // start offset advances over leading terminal records only.
        let mut state = ShareState::new(0, 0);
        let a = member("a");
        acquire(&mut state, &a, &[data(0, 9)], 100);
        let changes = state.acknowledge("a", &[ack(0, 2, &[1]), ack(5, 6, &[3]), ack(7, 7, &[0])], LIMIT).unwrap();
        assert_eq!(state.start_offset(), 3, "3 and 4 still acquired");
        assert_eq!(
            changes,
            vec![
                StateRange { first_offset: 0, last_offset: 2, state: RecordState::Acknowledged, delivery_count: 1 },
                StateRange { first_offset: 5, last_offset: 7, state: RecordState::Archived, delivery_count: 1 },
            ]
        );
        state.acknowledge("a", &[ack(3, 4, &[1])], LIMIT).unwrap();
        assert_eq!(state.start_offset(), 8);
        state.acknowledge("a", &[ack(8, 9, &[1])], LIMIT).unwrap();
        assert_eq!((state.start_offset(), state.end_offset(), state.in_flight()), (10, 10, 0));
    }

    #[test]
    fn per_offset_types_split_the_run_and_released_records_come_back_first() {
        // Proves one type per offset splits a batch into per-offset states,
        // released offsets are Available again with their count, and the
        // next acquisition offers them (count 2) before new records.
        let mut state = ShareState::new(0, 0);
        let (a, b) = (member("a"), member("b"));
        let log = [data(0, 4), data(5, 9)];
        acquire(&mut state, &a, &log[..1], 100);
        state.acknowledge("a", &[ack(0, 4, &[1, 2, 1, 2, 2])], LIMIT).unwrap();
        assert_eq!(state.start_offset(), 1);
        assert_eq!(state.state_of(1), Some((RecordState::Available, 1)));
        assert_eq!(state.state_of(2), Some((RecordState::Acknowledged, 1)));
        assert_eq!(acquire(&mut state, &b, &log, 100), vec![range(1, 1, 2), range(3, 4, 2), range(5, 9, 1)]);
    }

    #[test]
    fn acknowledging_what_the_member_does_not_hold_is_invalid_record_state() {
        // Proves INVALID_RECORD_STATE for another member's records, records
        // already acknowledged, offsets outside the window, and lapsed locks;
        // and that a refused request changes nothing.
        let mut state = ShareState::new(0, 0);
        let (a, b) = (member("a"), member("b"));
        acquire(&mut state, &a, &[data(0, 4)], 100);
        acquire(&mut state, &b, &[data(0, 4), data(5, 9)], 100);
        let before = state.clone();
        let err = state.acknowledge("a", &[ack(0, 1, &[1]), ack(4, 5, &[1])], LIMIT).unwrap_err();
        assert_eq!((err.error, err.batch_index), (ErrorCode::InvalidRecordState, 1), "{}", err.message);
        assert_eq!(state, before, "nothing applied");
        let err = state.acknowledge("a", &[ack(8, 12, &[1])], LIMIT).unwrap_err();
        assert_eq!(err.error, ErrorCode::InvalidRecordState);
        state.acknowledge("a", &[ack(0, 0, &[1])], LIMIT).unwrap();
        let err = state.acknowledge("a", &[ack(1, 1, &[1]), ack(0, 0, &[1])], LIMIT).unwrap_err();
        assert_eq!(err.error, ErrorCode::InvalidRequest, "out of order");
        // After the lock lapses and is expired, the member holds nothing.
        assert!(state.expire_locks(1000, LIMIT).made_available);
        let err = state.acknowledge("a", &[ack(1, 1, &[1])], LIMIT).unwrap_err();
        assert_eq!(err.error, ErrorCode::InvalidRecordState);
    }

    #[test]
    fn malformed_batches_are_invalid_request() {
        // Proves ranges backwards, type counts neither 1 nor one per offset,
        // unknown types and overlapping batches are INVALID_REQUEST.
        let mut state = ShareState::new(0, 0);
        acquire(&mut state, &member("a"), &[data(0, 9)], 100);
        for batches in [
            vec![ack(5, 4, &[1])],
            vec![ack(0, 3, &[1, 1])],
            vec![ack(0, 1, &[4])],
            vec![ack(0, 1, &[])],
            vec![ack(0, 3, &[1]), ack(3, 5, &[1])],
        ] {
            let err = state.acknowledge("a", &batches, LIMIT).unwrap_err();
            assert_eq!(err.error, ErrorCode::InvalidRequest, "{batches:?}: {}", err.message);
        }
    }

    #[test]
    fn lock_expiry_makes_records_available_and_archives_at_the_delivery_limit() {
        // Proves an injected clock drives lock expiry: before the deadline
        // nothing changes, at it the records are Available with their count;
        // after `delivery.count.limit` deliveries they are Archived instead,
        // and the start moves past them.
        let mut state = ShareState::new(0, 0);
        let a = member("a");
        let log = [data(0, 2)];
        for delivery in 1..=LIMIT {
            let acquired = state.acquire(&a, 0, &log, &limits(100, 1000 * i64::from(delivery))).0;
            assert_eq!(acquired, vec![range(0, 2, delivery)]);
            assert_eq!(state.expire_locks(1000 * i64::from(delivery) - 1, LIMIT), Released::default());
            let released = state.expire_locks(1000 * i64::from(delivery), LIMIT);
            if delivery < LIMIT {
                assert!(released.made_available && released.archived.is_empty());
            } else {
                assert!(!released.made_available);
                assert_eq!(released.archived[0].state, RecordState::Archived);
            }
        }
        assert_eq!((state.start_offset(), state.in_flight()), (3, 0));
    }

    #[test]
    fn a_release_at_the_limit_archives_and_restored_records_at_the_limit_are_not_offered() {
        // Proves Release at the delivery limit archives (Kafka's rule), and an
        // Available record whose count already reached the limit (as a restart
        // can leave it) is archived when next met instead of offered.
        let mut state = ShareState::restore(
            0,
            0,
            &[StateRange { first_offset: 0, last_offset: 1, state: RecordState::Available, delivery_count: LIMIT - 1 }],
        );
        let a = member("a");
        let log = [data(0, 1), data(2, 3)];
        assert_eq!(acquire(&mut state, &a, &log, 100), vec![range(0, 1, LIMIT), range(2, 3, 1)]);
        let changes = state.acknowledge("a", &[ack(0, 1, &[2])], LIMIT).unwrap();
        assert_eq!(changes[0].state, RecordState::Archived);
        assert_eq!(state.start_offset(), 2);
        let mut restored = ShareState::restore(
            0,
            0,
            &[StateRange { first_offset: 0, last_offset: 1, state: RecordState::Available, delivery_count: LIMIT }],
        );
        let (acquired, changes) = restored.acquire(&a, 0, &log, &limits(100, 1000));
        assert_eq!(acquired, vec![range(2, 3, 1)]);
        assert_eq!(
            changes[0],
            StateRange { first_offset: 0, last_offset: 1, state: RecordState::Archived, delivery_count: LIMIT }
        );
        assert_eq!(restored.start_offset(), 2);
    }

    #[test]
    fn the_in_flight_bound_stops_new_acquisition_mid_batch() {
        // Proves max.record.locks bounds end - start strictly: a batch crossing
        // it is acquired in part, nothing more until the start moves, while
        // released records inside the window are still offered.
        let mut state = ShareState::new(0, 0);
        let a = member("a");
        let log = [data(0, 5), data(6, 9)];
        let mut bounded = limits(100, 1000);
        bounded.max_in_flight = 4;
        let (acquired, _) = state.acquire(&a, 0, &log, &bounded);
        assert_eq!(acquired, vec![range(0, 3, 1)]);
        assert_eq!(state.acquire(&a, 4, &log, &bounded).0, vec![]);
        state.acknowledge("a", &[ack(1, 1, &[2])], LIMIT).unwrap();
        assert_eq!(state.acquire(&a, 1, &log, &bounded).0, vec![range(1, 1, 2)]);
        state.acknowledge("a", &[ack(0, 1, &[1])], LIMIT).unwrap();
        assert_eq!(state.start_offset(), 2);
        assert_eq!(state.acquire(&a, 4, &log[..1], &bounded).0, vec![range(4, 5, 1)]);
    }

    #[test]
    fn control_batches_aborted_batches_and_gaps_are_archived_never_acquired() {
        // Proves a control batch and (read_committed) an aborted batch are
        // archived when first met, offsets the log skipped are archived as a
        // gap, and the start moves over them once they lead.
        let mut state = ShareState::new(0, 0);
        let a = member("a");
        let log = [
            BatchInfo { base_offset: 0, last_offset: 2, kind: BatchKind::Aborted },
            BatchInfo { base_offset: 3, last_offset: 3, kind: BatchKind::Control },
            data(4, 5),
            data(9, 10),
        ];
        let (acquired, changes) = state.acquire(&a, 0, &log, &limits(100, 1000));
        assert_eq!(acquired, vec![range(4, 5, 1), range(9, 10, 1)]);
        assert_eq!(
            changes,
            vec![
                StateRange { first_offset: 0, last_offset: 3, state: RecordState::Archived, delivery_count: 0 },
                StateRange { first_offset: 4, last_offset: 5, state: RecordState::Available, delivery_count: 1 },
                StateRange { first_offset: 6, last_offset: 8, state: RecordState::Archived, delivery_count: 0 },
                StateRange { first_offset: 9, last_offset: 10, state: RecordState::Available, delivery_count: 1 },
            ]
        );
        assert_eq!(state.start_offset(), 4);
        state.acknowledge("a", &[ack(4, 5, &[1])], LIMIT).unwrap();
        assert_eq!(state.start_offset(), 9, "the gap is skipped");
    }

    #[test]
    fn release_member_frees_only_that_members_records() {
        // Proves release_member makes the member's records Available (another
        // member's stay Acquired) and archives those at the limit.
        let mut state = ShareState::new(0, 0);
        let (a, b) = (member("a"), member("b"));
        let log = [data(0, 4), data(5, 9)];
        acquire(&mut state, &a, &log[..1], 100);
        acquire(&mut state, &b, &log, 100);
        let released = state.release_member("a", LIMIT);
        assert!(released.made_available && released.archived.is_empty());
        assert_eq!(state.state_of(0), Some((RecordState::Available, 1)));
        assert_eq!(state.state_of(5), Some((RecordState::Acquired, 1)));
        assert_eq!(state.release_member("nobody", LIMIT), Released::default());
    }

    #[test]
    fn the_log_start_moving_drops_what_lies_below() {
        // Proves records deleted below the log start leave the window, acquired
        // or not, and a start beyond the window's end moves the end too.
        let mut state = ShareState::new(0, 0);
        let a = member("a");
        acquire(&mut state, &a, &[data(0, 9)], 100);
        assert!(state.move_start_to(4));
        assert_eq!((state.start_offset(), state.end_offset(), state.acquired_records()), (4, 10, 6));
        assert!(!state.move_start_to(3));
        assert!(state.move_start_to(20));
        assert_eq!((state.start_offset(), state.end_offset(), state.in_flight()), (20, 20, 0));
    }

    #[test]
    fn snapshots_persist_acquired_as_available_and_restore_fills_holes() {
        // Proves the persisted form never holds Acquired (acquired records come
        // back Available with their count), restoring it gives the same window,
        // and a hole between ranges comes back as never-delivered Available.
        let mut state = ShareState::new(0, 10);
        let a = member("a");
        acquire(&mut state, &a, &[data(10, 14), data(15, 19)], 100);
        state.acknowledge("a", &[ack(12, 12, &[1]), ack(15, 19, &[1])], LIMIT).unwrap();
        let ranges = state.snapshot_ranges();
        assert!(ranges.iter().all(|r| r.state != RecordState::Acquired));
        let restored = ShareState::restore(0, state.start_offset(), &ranges);
        assert_eq!(restored.state_of(10), Some((RecordState::Available, 1)));
        assert_eq!(restored.state_of(12), Some((RecordState::Acknowledged, 1)));
        assert_eq!((restored.start_offset(), restored.end_offset()), (10, 20));
        let holes = ShareState::restore(
            0,
            0,
            &[StateRange { first_offset: 3, last_offset: 4, state: RecordState::Acknowledged, delivery_count: 1 }],
        );
        assert_eq!(holes.state_of(0), Some((RecordState::Available, 0)));
        assert_eq!(holes.end_offset(), 5);
    }

    #[test]
    fn deltas_replay_to_the_state_they_were_taken_from() {
        // Proves replaying the changes of every step over the initial state
        // (what a restart does) gives the live state, acquired read as Available.
        let mut state = ShareState::new(0, 0);
        let mut replayed = state.clone();
        let (a, b) = (member("a"), member("b"));
        let log = [
            data(0, 3),
            data(4, 7),
            BatchInfo { base_offset: 8, last_offset: 8, kind: BatchKind::Control },
            data(9, 12),
        ];
        // In order: each step changes what the next one sees.
        let first = state.acquire(&a, 0, &log, &limits(4, 100)).1;
        let second = state.acquire(&b, 4, &log, &limits(100, 100)).1;
        let third = state.acknowledge("a", &[ack(0, 3, &[1, 2, 3, 0])], LIMIT).unwrap();
        let fourth = state.acknowledge("b", &[ack(4, 7, &[1])], LIMIT).unwrap();
        let fifth = state.acquire(&a, 1, &log, &limits(100, 100)).1;
        let deltas = [first, second, third, fourth, fifth];
        for delta in &deltas {
            replayed.apply_delta(0, delta);
        }
        replayed.move_start_to(state.start_offset());
        assert_eq!(replayed.snapshot_ranges(), state.snapshot_ranges());
        assert_eq!(replayed.start_offset(), state.start_offset());
    }

    #[test]
    fn a_long_random_history_keeps_the_invariants() {
        // Proves the run structure stays valid (contiguous, merged, start over
        // terminal runs) under a long pseudo-random mix of every operation.
        let mut state = ShareState::new(0, 0);
        let members = [member("a"), member("b"), member("c")];
        let log: Vec<BatchInfo> = (0..200).map(|i| data(i * 5, i * 5 + 4)).collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..3000i64 {
            let who = &members[(next() % 3) as usize];
            match next() % 4 {
                0 => {
                    let from = state.first_available_offset().unwrap_or(state.end_offset());
                    let batches: Vec<BatchInfo> =
                        log.iter().filter(|b| b.last_offset >= from).take(4).copied().collect();
                    let mut bounded = limits((next() % 12) as usize + 1, step + 50);
                    bounded.max_in_flight = 60;
                    state.acquire(who, from, &batches, &bounded);
                }
                1 if state.in_flight() > 0 => {
                    let offset = state.start_offset() + (next() % state.in_flight() as u64) as i64;
                    if state.state_of(offset).map(|s| s.0) == Some(RecordState::Acquired) {
                        let types = vec![(next() % 4) as u8];
                        let _ = state.acknowledge(who, &[ack(offset, offset, &types)], LIMIT);
                    }
                }
                2 => {
                    state.expire_locks(step, LIMIT);
                }
                _ => {
                    state.release_member(who, LIMIT);
                }
            }
            state.assert_invariants();
        }
        assert!(state.start_offset() > 0, "the window moved");
    }
}
