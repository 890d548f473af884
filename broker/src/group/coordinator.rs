//! One shard's group coordinator: the groups that hash to this shard, their
//! committed offsets, the group log behind them (`internal_log` in
//! `<data_dir>/__consumer_offsets/<shard>/`), the join-phase timers, the
//! session sweep, offset retention and compaction.
//!
//! Only its own shard touches it (requests arrive through `invoke_on`), so
//! plain `RefCell`s suffice; no borrow is held across an await.
//!
//! What is durable when: a commit (or an offset deletion) is applied and
//! answered once an fdatasync covers it; a group's membership record is
//! written when its state machine asks for it ([`ClassicGroup::record`]),
//! without holding up the answer (a crash before it is durable costs the
//! members a rejoin, never an offset), except the answer to a static member
//! that took over its old member id, which waits for it
//! ([`super::classic::DeferredJoin`]). Offset retention writes its
//! deletions like commits: applied once durable.
//!
//! Start: every shard replays its own log. Records of groups another shard
//! coordinates now (the shard count changed, or a format-1 file was found)
//! are handed to that shard, which keeps the newer commit of each
//! partition; then the log is compacted to what this shard owns.
//!
//! Offset records (commits and transactional commits) are numbered when
//! placed ([`GroupCoordinator::append_numbered`]): the number says which of
//! two records of a partition was placed later, across compaction and
//! hand-over (see `txn_offsets`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use protocol::ErrorCode;

use super::classic::{ClassicGroup, DeferredJoin};
use super::config::GroupConfig;
use super::consumer::{self, ConsumerGroup, ConsumerGroupConfig, HeartbeatError, HeartbeatRequest, HeartbeatResponse};
use super::log_v1;
use super::offsets::{Committed, OffsetStore, TopicPartition};
use super::records::{self, GroupRecord};
use super::share::{self, MemberGoneListener, ShareGroup, ShareHeartbeatRequest, ShareHeartbeatResponse};
use crate::event::Event;
use crate::internal_log::{self, InternalLog, OnDurable, SNAPSHOT_PAYLOAD_BYTES_MAX};
use crate::shard::Shard;

/// How often each shard looks for members whose session timed out, and
/// whether its group log should be compacted.
pub const SESSION_SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// Records one retention check writes at most (some 60 bytes each); what
/// is left waits for the next check.
pub const EXPIRED_RECORDS_PER_CHECK_MAX: usize = 10_000;
/// Directory of the group logs inside the data directory. It cannot
/// collide with a partition directory: those end in `-<partition>`.
pub const OFFSETS_DIR: &str = "__consumer_offsets";

pub struct GroupCoordinator {
    pub config: GroupConfig,
    /// What consumer-protocol groups need of `config`.
    pub consumer_config: ConsumerGroupConfig,
    /// A group id names a classic group, a consumer-protocol group or a
    /// share group, never two at once.
    classic: RefCell<HashMap<String, ClassicGroup>>,
    consumer: RefCell<HashMap<String, ConsumerGroup>>,
    share: RefCell<HashMap<String, ShareGroup>>,
    /// GROUP configs by group id, whether or not a group has the id
    /// (`share_config`); never an empty map.
    group_configs: RefCell<HashMap<String, BTreeMap<String, String>>>,
    /// Told of every share member that leaves or is evicted.
    share_member_gone: RefCell<Vec<MemberGoneListener>>,
    offsets: RefCell<OffsetStore>,
    log: RefCell<Option<Rc<InternalLog>>>,
    /// Groups whose membership record must be written.
    dirty: RefCell<BTreeSet<String>>,
    dirty_waker: RefCell<Option<Waker>>,
    /// Offset appends placed (or waiting to be placed) but not yet applied,
    /// by group: retention leaves such a group alone, since what it sees in
    /// memory is not yet all the log holds.
    offsets_in_flight: Rc<RefCell<HashMap<String, usize>>>,
    /// Transactional offsets placed but not yet applied, by group and
    /// partition: a require_stable fetch counts them as pending.
    txn_offsets_in_flight: Rc<RefCell<HashMap<(String, TopicPartition), usize>>>,
    /// The sequence number the next offset record placed gets: above every
    /// number this shard's offsets carry.
    next_sequence: Cell<u64>,
    /// Set once this shard's groups are loaded: groups handed over by other
    /// shards at start wait for it.
    loaded: Event,
    closing: Cell<bool>,
}

/// Records of groups, by the shard that coordinates them.
type ByOwner = BTreeMap<usize, Vec<GroupRecord>>;

/// Sends each shard its groups' records and waits until they are durable
/// there.
async fn hand_over(shard: &Rc<Shard>, by_owner: ByOwner) -> Result<(), String> {
    for (target, records) in by_owner {
        let count = records.len();
        shard
            .invoke_on(target, move |owner| async move { GroupCoordinator::adopt(&owner, records).await })
            .await
            .map_err(|gone| format!("handing groups to shard {target}: {gone}"))??;
        tracing::info!(shard = shard.id, to = target, records = count, "handed groups over to their coordinator");
    }
    Ok(())
}

/// Group log directories of shards that do not run now and whose index
/// maps to `shard` (`index % shards`).
fn orphan_dirs(data_dir: &std::path::Path, shard: usize, shards: usize) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(OFFSETS_DIR)) else {
        return Vec::new();
    };
    let mut dirs: Vec<(usize, std::path::PathBuf)> = entries
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<usize>().ok()?, entry.path())))
        .filter(|(index, _)| *index >= shards && index % shards == shard)
        .collect();
    dirs.sort();
    dirs.into_iter().map(|(_, path)| path).collect()
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            consumer_config: config.consumer_group_config(),
            config,
            classic: RefCell::new(HashMap::new()),
            consumer: RefCell::new(HashMap::new()),
            share: RefCell::new(HashMap::new()),
            group_configs: RefCell::new(HashMap::new()),
            share_member_gone: RefCell::new(Vec::new()),
            offsets: RefCell::new(OffsetStore::default()),
            log: RefCell::new(None),
            dirty: RefCell::new(BTreeSet::new()),
            dirty_waker: RefCell::new(None),
            offsets_in_flight: Rc::default(),
            txn_offsets_in_flight: Rc::default(),
            next_sequence: Cell::new(1),
            loaded: Event::default(),
            closing: Cell::new(false),
        }
    }

    /// Loads this shard's groups, hands other shards theirs, and starts the
    /// task that writes membership records. Runs at start, before clients
    /// are accepted; every shard runs it at once. Logs of shards that no
    /// longer run (the shard count went down) are read by shard
    /// `their index % shards`, handed over whole, and removed.
    pub async fn start(shard: &Rc<Shard>) -> Result<(), String> {
        let dir = internal_log::log_dir(&shard.config.data_dir, OFFSETS_DIR, shard.id);
        let (log, state, legacy) = shard.groups.open_log(shard, &dir).await?;
        let mut by_owner = state.by_owner(shard.count, shard.id);
        shard.groups.install(by_owner.remove(&shard.id).unwrap_or_default())?;
        *shard.groups.log.borrow_mut() = Some(Rc::new(log));
        shard.groups.loaded.set();
        glommio::spawn_local(write_dirty_groups(shard.clone())).detach();
        let handed_over = !by_owner.is_empty();
        hand_over(shard, by_owner).await?;
        for orphan in orphan_dirs(&shard.config.data_dir, shard.id, shard.count) {
            let (log, state, _) = shard.groups.open_log(shard, &orphan).await?;
            log.close().await.map_err(|err| err.to_string())?;
            hand_over(shard, state.by_owner(shard.count, shard.id)).await?;
            std::fs::remove_dir_all(&orphan).map_err(|err| format!("removing {}: {err}", orphan.display()))?;
            tracing::info!(dir = %orphan.display(), "the group log of a shard that no longer runs was handed over and removed");
        }
        if handed_over || legacy.is_some() {
            let log = shard.groups.log().map_err(|err| err.to_string())?;
            log.compact(|| shard.groups.snapshot()).await.map_err(|err| err.to_string())?;
        }
        if let Some(path) = legacy {
            std::fs::remove_file(&path).map_err(|err| format!("removing {}: {err}", path.display()))?;
            tracing::info!(path = %path.display(), "format-1 offsets log moved into the group log and removed");
        }
        Ok(())
    }

    /// Opens the group log in `dir` and replays it (after the commits of a
    /// format-1 file there, whose path is returned too).
    async fn open_log(
        &self,
        shard: &Rc<Shard>,
        dir: &std::path::Path,
    ) -> Result<(InternalLog, Replayed, Option<std::path::PathBuf>), String> {
        let legacy = log_v1::read_legacy(dir).map_err(|err| err.to_string())?;
        let (log, payloads) =
            InternalLog::open(dir.to_path_buf(), self.config.offsets_segment_bytes, shard.resources.clone())
                .await
                .map_err(|err| format!("group log {}: {err}", dir.display()))?;
        let mut state = Replayed::default();
        let migrated = legacy.map(|records| {
            for record in records {
                state.apply(GroupRecord::OffsetCommit(record));
            }
            log_v1::legacy_path(dir)
        });
        for (log_offset, payload) in payloads {
            let batch = records::decode_batch(&payload)
                .map_err(|what| format!("group log {}: record at offset {log_offset}: {what}", dir.display()))?;
            for record in batch {
                state.apply(record);
            }
        }
        Ok((log, state, migrated))
    }

    /// Installs the groups this shard coordinates from their records. A
    /// consumer group whose record breaks an invariant no group could have
    /// had is damage: the start fails, naming it.
    fn install(&self, records: Vec<GroupRecord>) -> Result<(), String> {
        let now = Instant::now();
        let mut groups = self.classic.borrow_mut();
        let mut consumers = self.consumer.borrow_mut();
        let mut shares = self.share.borrow_mut();
        let mut configs = self.group_configs.borrow_mut();
        let mut store = self.offsets.borrow_mut();
        for mut record in records {
            if let Some(sequence) = record.sequence_mut() {
                self.next_sequence.set(self.next_sequence.get().max(*sequence + 1));
            }
            let Some(group_id) = record.group().map(str::to_owned) else {
                // A producer's record (its epoch, a completion).
                store.apply(&record);
                continue;
            };
            match record {
                GroupRecord::ClassicGroup(group) => {
                    groups.insert(group_id, ClassicGroup::restore(group, now));
                }
                GroupRecord::ConsumerGroup(snapshot) => {
                    let group = ConsumerGroup::restore(snapshot, now).map_err(|err| format!("group log: {err}"))?;
                    consumers.insert(group_id, group);
                }
                GroupRecord::ShareGroup(snapshot) => {
                    let group = ShareGroup::restore(snapshot, now).map_err(|err| format!("group log: {err}"))?;
                    shares.insert(group_id, group);
                }
                GroupRecord::GroupConfig { configs: values, .. } => {
                    if values.is_empty() {
                        configs.remove(&group_id);
                    } else {
                        configs.insert(group_id, values);
                    }
                }
                record => {
                    store.apply(&record);
                    // A group known only by its offsets (simple commits,
                    // transactional ones): an empty classic group, as Kafka
                    // loads it.
                    if !consumers.contains_key(&group_id) && !shares.contains_key(&group_id) {
                        groups.entry(group_id.clone()).or_insert_with(|| ClassicGroup::new(group_id));
                    }
                }
            }
        }
        if !groups.is_empty() || !consumers.is_empty() || !shares.is_empty() {
            tracing::info!(classic = groups.len(), consumer = consumers.len(), share = shares.len(), "loaded groups");
        }
        Ok(())
    }

    /// Takes over groups handed from another shard's log at start: each
    /// committed offset unless this shard has a newer one, each group's
    /// membership unless this shard knows the group. Durable on return.
    /// Offset records are numbered again here, in the order their numbers
    /// gave them on the other shard, after everything this shard holds.
    async fn adopt(shard: &Rc<Shard>, records: Vec<GroupRecord>) -> Result<(), String> {
        shard.groups.loaded.wait().await;
        let (mut offsets, mut wanted): (Vec<GroupRecord>, Vec<GroupRecord>) = records
            .into_iter()
            .filter(|record| shard.groups.is_newer(record))
            .partition(|record| matches!(record, GroupRecord::OffsetCommit(_) | GroupRecord::TxnOffsetCommit { .. }));
        if offsets.is_empty() && wanted.is_empty() {
            return Ok(());
        }
        offsets.sort_by_key(|record| match record {
            GroupRecord::OffsetCommit(offset) | GroupRecord::TxnOffsetCommit { offset, .. } => offset.sequence,
            _ => unreachable!("only offset records"),
        });
        wanted.extend(offsets);
        let (done, durable) = oneshot::channel();
        let owner = shard.clone();
        let on_durable = move |outcome: Result<Vec<GroupRecord>, String>| {
            let outcome = outcome.and_then(|numbered| owner.groups.install(numbered));
            let _ = done.send(outcome);
        };
        shard.groups.append_numbered(wanted, on_durable).await.map_err(|err| err.to_string())?;
        durable.await.map_err(|_| "the group log closed before the handed-over groups were durable".to_string())?
    }

    /// Whether a record handed over from another shard's log says something
    /// this shard does not know yet.
    fn is_newer(&self, record: &GroupRecord) -> bool {
        match record {
            GroupRecord::OffsetCommit(commit) => {
                let store = self.offsets.borrow();
                let known = store.group(&commit.group).and_then(|o| o.get(&(commit.topic.clone(), commit.partition)));
                known.is_none_or(|known| known.commit_timestamp_ms < commit.commit_timestamp_ms)
            }
            GroupRecord::TxnOffsetCommit { producer_id, offset, .. } => {
                let store = self.offsets.borrow();
                let known = store.pending.get(*producer_id, &offset.group, &(offset.topic.clone(), offset.partition));
                known.is_none_or(|known| known.offset.commit_timestamp_ms < offset.commit_timestamp_ms)
            }
            GroupRecord::TxnProducer { producer_id, producer_epoch, .. } => {
                self.offsets.borrow().pending.producer(*producer_id).is_none_or(|seen| seen.epoch < *producer_epoch)
            }
            GroupRecord::ClassicGroup(_) | GroupRecord::ConsumerGroup(_) | GroupRecord::ShareGroup(_) => {
                record.group().is_some_and(|group| !self.exists(group))
            }
            GroupRecord::GroupConfig { group, .. } => !self.group_configs.borrow().contains_key(group),
            _ => false,
        }
    }

    /// The group log; an error once it is closed (shutdown).
    pub fn log(&self) -> Result<Rc<InternalLog>, engine::EngineError> {
        self.log
            .borrow()
            .clone()
            .ok_or_else(|| engine::EngineError::Closed { path: std::path::PathBuf::from(OFFSETS_DIR) })
    }

    /// Places `payload` in the group log; `on_durable` runs once it is
    /// durable, in log order.
    pub async fn append(&self, payload: Vec<u8>, on_durable: OnDurable) -> Result<(), engine::EngineError> {
        let log = self.log()?;
        log.append(move || payload, on_durable).await.map(|_| ())
    }

    /// Places `records` in the group log, numbering their offset records
    /// (commits, transactional commits) in order at the append's turn, so
    /// that numbers grow in log order; `on_durable` gets the numbered
    /// records once they are durable (in log order), or the reason they
    /// never will be. Not called at all when the append could not be
    /// placed (the error is returned).
    pub async fn append_numbered(
        &self,
        records: Vec<GroupRecord>,
        on_durable: impl FnOnce(Result<Vec<GroupRecord>, String>) + 'static,
    ) -> Result<(), engine::EngineError> {
        let log = self.log()?;
        let numbered: Rc<RefCell<Vec<GroupRecord>>> = Rc::default();
        let written = numbered.clone();
        let next_sequence = &self.next_sequence;
        let encode = move || {
            let mut records = records;
            for sequence in records.iter_mut().filter_map(GroupRecord::sequence_mut) {
                *sequence = next_sequence.get();
                next_sequence.set(*sequence + 1);
            }
            let payload = records::encode_batch(&records);
            *written.borrow_mut() = records;
            payload
        };
        let on_durable: OnDurable = Box::new(move |outcome| on_durable(outcome.map(|()| numbered.take())));
        log.append(encode, on_durable).await.map(|_| ())
    }

    /// Applies durable offset records (commits, deletions) to memory.
    pub fn apply_durable(&self, records: &[GroupRecord]) {
        let mut store = self.offsets.borrow_mut();
        for record in records {
            store.apply(record);
        }
    }

    /// The committed offsets, for reading.
    pub fn offsets(&self) -> std::cell::Ref<'_, OffsetStore> {
        self.offsets.borrow()
    }

    /// Whether a group of any protocol has this id.
    pub fn exists(&self, group_id: &str) -> bool {
        self.classic.borrow().contains_key(group_id)
            || self.consumer.borrow().contains_key(group_id)
            || self.share.borrow().contains_key(group_id)
    }

    /// Kafka's answer to the offset APIs (OffsetCommit, TxnOffsetCommit,
    /// OffsetFetch, OffsetDelete) for a share group: GROUP_ID_NOT_FOUND
    /// ("Group ... is not a consumer group."), since share groups keep no
    /// committed offsets.
    pub fn refuse_share_group(&self, group_id: &str) -> Result<(), ErrorCode> {
        if self.share.borrow().contains_key(group_id) {
            return Err(ErrorCode::GroupIdNotFound);
        }
        Ok(())
    }

    /// Kafka's rules for who may commit to `group_id`: a simple commit
    /// (generation or member epoch -1, no member id) to a group without
    /// members, which is created for it (classic) if absent; otherwise a
    /// member of the group's current generation (classic) or with its
    /// current member epoch (consumer protocol, OffsetCommit v9+).
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        api_version: i16,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        self.refuse_share_group(group_id)?;
        if let Some(group) = self.consumer.borrow().get(group_id) {
            return group.validate_offset_commit(member_id, generation_id, api_version, false);
        }
        let create = generation_id < 0 && member_id.is_empty();
        self.with_classic(group_id, create, |group| {
            group.validate_commit(member_id, group_instance_id, generation_id, now)
        })
        .unwrap_or(Err(ErrorCode::IllegalGeneration))
    }

    /// Counts an offset append of `group_id` as in flight until the guard
    /// is dropped: move it into the append's `on_durable`, so it drops
    /// once the append was applied (or failed, or was never placed).
    pub fn offsets_in_flight(&self, group_id: &str) -> OffsetsInFlight {
        InFlight::new(&self.offsets_in_flight, vec![group_id.to_owned()])
    }

    /// Counts transactional offsets of these (group, partition)s as placed
    /// and not yet applied until the guard is dropped (as
    /// [`GroupCoordinator::offsets_in_flight`]).
    pub fn txn_offsets_in_flight(
        &self,
        partitions: Vec<(String, TopicPartition)>,
    ) -> InFlight<(String, TopicPartition)> {
        InFlight::new(&self.txn_offsets_in_flight, partitions)
    }

    /// Whether `group_id`'s `partition` has a pending transactional offset,
    /// applied (in `store`) or placed and not yet durable: what makes a
    /// require_stable OffsetFetch answer UNSTABLE_OFFSET_COMMIT.
    pub fn has_pending_offset(&self, store: &OffsetStore, group_id: &str, partition: &TopicPartition) -> bool {
        store.pending.has_partition(group_id, partition)
            || self.txn_offsets_in_flight.borrow().contains_key(&(group_id.to_owned(), partition.clone()))
    }

    /// INVALID_PRODUCER_EPOCH when `producer_epoch` is older than the last
    /// epoch this log saw of `producer_id` (Kafka's
    /// `ProducerAppendInfo.checkProducerEpoch` on its offsets partition).
    pub fn check_producer_epoch(&self, producer_id: i64, producer_epoch: i16) -> Result<(), ErrorCode> {
        match self.offsets.borrow().pending.producer(producer_id) {
            Some(seen) if producer_epoch < seen.epoch => Err(ErrorCode::InvalidProducerEpoch),
            _ => Ok(()),
        }
    }

    /// Remembers `producer_epoch` as the last epoch of `producer_id`, from
    /// the moment a record of it is placed.
    pub fn note_producer(&self, producer_id: i64, producer_epoch: i16, timestamp_ms: i64) {
        self.offsets.borrow_mut().pending.note_producer(producer_id, producer_epoch, timestamp_ms);
    }

    /// Waits until this shard's own groups are loaded (start).
    pub async fn wait_loaded(&self) {
        self.loaded.wait().await;
    }

    /// Kafka's rules for who may commit transactional offsets to
    /// `group_id` (`validateTransactionalOffsetCommit`): a group that does
    /// not exist is created (an empty classic group) for a commit without
    /// a generation (-1: every request below v3), else ILLEGAL_GENERATION.
    /// In a classic group a commit with a generation, member id or
    /// instance id must be by a member (UNKNOWN_MEMBER_ID,
    /// FENCED_INSTANCE_ID) of the current generation (ILLEGAL_GENERATION);
    /// one with none of them is accepted whatever the group's state, and so
    /// is a member's while the leader's assignment is awaited. In a
    /// consumer-protocol group the member must exist with exactly that
    /// member epoch, ILLEGAL_GENERATION otherwise (Kafka maps
    /// STALE_MEMBER_EPOCH so), unless the group is empty and the epoch -1.
    /// Member sessions are not refreshed, as in Kafka.
    pub fn validate_txn_commit(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ErrorCode> {
        self.refuse_share_group(group_id)?;
        if let Some(group) = self.consumer.borrow().get(group_id) {
            return group.validate_offset_commit(member_id, generation_id, 0, true).map_err(|code| match code {
                ErrorCode::StaleMemberEpoch => ErrorCode::IllegalGeneration,
                other => other,
            });
        }
        self.with_classic(group_id, generation_id < 0, |group| {
            group.validate_txn_commit(member_id, group_instance_id, generation_id)
        })
        .unwrap_or(Err(ErrorCode::IllegalGeneration))
    }

    /// Runs `f` on the classic group, creating it (Empty) if `create` and
    /// absent; afterwards writes the group's record if `f` changed it.
    pub fn with_classic<R>(&self, group_id: &str, create: bool, f: impl FnOnce(&mut ClassicGroup) -> R) -> Option<R> {
        let mut groups = self.classic.borrow_mut();
        if create && !groups.contains_key(group_id) {
            groups.insert(group_id.to_owned(), ClassicGroup::new(group_id.to_owned()));
        }
        let group = groups.get_mut(group_id)?;
        let result = f(group);
        if group.take_persist_wanted() {
            self.mark_dirty(group_id);
        }
        Some(result)
    }

    /// OffsetFetch v9+ from a consumer-protocol member: its epoch must be
    /// current. Fetches for classic groups, and without a member, need no
    /// check.
    pub fn validate_fetch(&self, group_id: &str, member_id: Option<&str>, member_epoch: i32) -> Result<(), ErrorCode> {
        self.refuse_share_group(group_id)?;
        match self.consumer.borrow().get(group_id) {
            Some(group) => group.validate_offset_fetch(member_id, member_epoch),
            None => Ok(()),
        }
    }

    /// Makes `group_id` free for a classic JoinGroup: a consumer-protocol
    /// group of that id is removed if it has no members, and refuses the
    /// join with INCONSISTENT_GROUP_PROTOCOL while it has (Stele converts
    /// no live group between protocols); a share group refuses it always,
    /// as in Kafka.
    pub fn claim_for_classic(&self, group_id: &str) -> Result<(), ErrorCode> {
        if self.share.borrow().contains_key(group_id) {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        let mut consumers = self.consumer.borrow_mut();
        match consumers.get(group_id) {
            Some(group) if !group.is_empty() => Err(ErrorCode::InconsistentGroupProtocol),
            Some(_) => {
                consumers.remove(group_id);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// ConsumerGroupHeartbeat on this coordinator. A group is created only
    /// by a joining member (epoch 0; GROUP_ID_NOT_FOUND otherwise) and may
    /// take the id of an empty classic group; a classic group with members
    /// keeps it (GROUP_ID_NOT_FOUND, as Kafka answers without the online
    /// upgrade).
    pub fn consumer_heartbeat(
        &self,
        image: &crate::metadata::MetadataImage,
        request: HeartbeatRequest,
        group_id: &str,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        consumer::validate_request(group_id, &request, &self.consumer_config)?;
        if self.share.borrow().contains_key(group_id) {
            let message = format!("Group {group_id} is not a consumer group.");
            return Err(HeartbeatError { code: ErrorCode::GroupIdNotFound, message });
        }
        let created = !self.consumer.borrow().contains_key(group_id);
        if created {
            let not_found = |message: String| HeartbeatError { code: ErrorCode::GroupIdNotFound, message };
            if request.member_epoch != consumer::JOIN_GROUP_MEMBER_EPOCH {
                return Err(not_found(format!("Group {group_id} not found.")));
            }
            let mut classic = self.classic.borrow_mut();
            match classic.get(group_id) {
                Some(group) if group.state != super::classic::GroupState::Empty => {
                    return Err(not_found(format!("Group {group_id} is not a consumer group.")));
                }
                Some(_) => {
                    classic.remove(group_id);
                }
                None => {}
            }
            self.consumer.borrow_mut().insert(group_id.to_owned(), ConsumerGroup::new(group_id.to_owned()));
        }
        let new_member_id = || uuid::Uuid::new_v4().to_string();
        let config = &self.consumer_config;
        let result = self
            .with_consumer(group_id, |group| group.heartbeat(&request, image, config, Instant::now(), new_member_id))
            .expect("the group exists");
        if result.is_err() && created {
            self.consumer.borrow_mut().remove(group_id);
        }
        result
    }

    /// ShareGroupHeartbeat on this coordinator (Kafka's
    /// `shareGroupHeartbeat`): a group is created only by a joining member
    /// (epoch 0; "Share group ... not found." otherwise); an id held by a
    /// classic or consumer group, even an empty one, is GROUP_ID_NOT_FOUND
    /// ("Group ... is not a share group."). A member that left is told to
    /// the member-gone listeners.
    pub fn share_heartbeat(
        &self,
        image: &crate::metadata::MetadataImage,
        request: ShareHeartbeatRequest,
        group_id: &str,
    ) -> Result<ShareHeartbeatResponse, HeartbeatError> {
        share::validate_request(group_id, &request)?;
        let not_found = |message: String| HeartbeatError { code: ErrorCode::GroupIdNotFound, message };
        if self.classic.borrow().contains_key(group_id) || self.consumer.borrow().contains_key(group_id) {
            return Err(not_found(format!("Group {group_id} is not a share group.")));
        }
        let created = !self.share.borrow().contains_key(group_id);
        if created {
            if request.member_epoch != share::JOIN_GROUP_MEMBER_EPOCH {
                return Err(not_found(format!("Share group {group_id} not found.")));
            }
            self.share.borrow_mut().insert(group_id.to_owned(), ShareGroup::new(group_id.to_owned()));
        }
        let limits = self.config.share_limits(&self.group_configs(group_id));
        let result = self
            .with_share(group_id, |group| group.heartbeat(&request, image, &limits, Instant::now()))
            .expect("the group exists");
        if result.is_err() && created {
            self.share.borrow_mut().remove(group_id);
        }
        if result.is_ok() && request.member_epoch == share::LEAVE_GROUP_MEMBER_EPOCH {
            self.share_member_gone(group_id, &request.member_id, share::GoneReason::Left);
        }
        result
    }

    /// Runs `f` on the share group; afterwards writes the group's record
    /// if `f` changed what it persists.
    pub fn with_share<R>(&self, group_id: &str, f: impl FnOnce(&mut ShareGroup) -> R) -> Option<R> {
        let mut groups = self.share.borrow_mut();
        let group = groups.get_mut(group_id)?;
        let before = group.change_count();
        let result = f(group);
        if group.change_count() != before {
            self.mark_dirty(group_id);
        }
        Some(result)
    }

    /// The share groups, for reading.
    pub fn share_groups(&self) -> std::cell::Ref<'_, HashMap<String, ShareGroup>> {
        self.share.borrow()
    }

    /// Removes a share group from memory (it is being deleted).
    pub fn remove_share(&self, group_id: &str) -> Option<ShareGroup> {
        self.share.borrow_mut().remove(group_id)
    }

    /// Registers `listener` to be told of every share member that leaves
    /// (heartbeat with epoch -1) or is evicted (session timeout) on this
    /// shard's groups; see [`share::ShareMemberGone`]. Listeners run on
    /// this shard, in registration order, after the change.
    pub fn add_share_member_gone_listener(&self, listener: MemberGoneListener) {
        self.share_member_gone.borrow_mut().push(listener);
    }

    fn share_member_gone(&self, group_id: &str, member_id: &str, reason: share::GoneReason) {
        let gone = share::ShareMemberGone { group_id: group_id.to_owned(), member_id: member_id.to_owned(), reason };
        let listeners: Vec<MemberGoneListener> = self.share_member_gone.borrow().clone();
        for listener in listeners {
            listener(&gone);
        }
    }

    /// `group_id`'s GROUP configs (empty when none is set).
    pub fn group_configs(&self, group_id: &str) -> BTreeMap<String, String> {
        self.group_configs.borrow().get(group_id).cloned().unwrap_or_default()
    }

    /// Replaces `group_id`'s GROUP configs (validated by the caller) and
    /// writes them to the group log. They apply at once, so that a later
    /// change starts from them; the receiver gives `true` once they are
    /// durable, `false` if the write failed (the change is then undone
    /// unless another replaced it meanwhile). The record is encoded at its
    /// turn in the log, so it states the configs as they are at its place.
    pub async fn set_group_configs(
        shard: &Rc<Shard>,
        group_id: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<oneshot::Receiver<bool>, engine::EngineError> {
        let log = shard.groups.log()?;
        let previous = {
            let mut all = shard.groups.group_configs.borrow_mut();
            let previous = all.get(group_id).cloned();
            if configs.is_empty() {
                all.remove(group_id);
            } else {
                all.insert(group_id.to_owned(), configs.clone());
            }
            previous
        };
        let (reply, answer) = oneshot::channel();
        let owner = shard.clone();
        let group = group_id.to_owned();
        let on_durable: OnDurable = Box::new(move |outcome| {
            if let Err(reason) = &outcome {
                tracing::error!(shard = owner.id, group = %group, reason, "GROUP configs could not be made durable");
                let mut all = owner.groups.group_configs.borrow_mut();
                if all.get(&group).cloned().unwrap_or_default() == configs {
                    match previous {
                        Some(previous) => all.insert(group.clone(), previous),
                        None => all.remove(&group),
                    };
                }
            }
            let _ = reply.send(outcome.is_ok());
        });
        let reader = shard.clone();
        let key = group_id.to_owned();
        let encode = move || {
            let configs = reader.groups.group_configs(&key);
            records::encode_batch(&[GroupRecord::GroupConfig { group: key, configs }])
        };
        log.append(encode, on_durable).await.map(|_| ())?;
        Ok(answer)
    }

    /// Runs `f` on the consumer-protocol group; afterwards writes the
    /// group's record if `f` changed what it persists.
    pub fn with_consumer<R>(&self, group_id: &str, f: impl FnOnce(&mut ConsumerGroup) -> R) -> Option<R> {
        let mut groups = self.consumer.borrow_mut();
        let group = groups.get_mut(group_id)?;
        let before = group.change_count();
        let result = f(group);
        if group.change_count() != before {
            self.mark_dirty(group_id);
        }
        Some(result)
    }

    /// The consumer-protocol groups, for reading.
    pub fn consumer_groups(&self) -> std::cell::Ref<'_, HashMap<String, ConsumerGroup>> {
        self.consumer.borrow()
    }

    /// Removes a consumer-protocol group from memory (it is being deleted).
    pub fn remove_consumer(&self, group_id: &str) -> Option<ConsumerGroup> {
        self.consumer.borrow_mut().remove(group_id)
    }

    /// The topics changed (created, deleted): consumer groups resolve their
    /// regular expressions again at their next heartbeat.
    pub fn metadata_changed(&self) {
        for group in self.consumer.borrow_mut().values_mut() {
            group.request_metadata_refresh();
        }
    }

    /// The classic groups, for reading (listing, describing).
    pub fn classic_groups(&self) -> std::cell::Ref<'_, HashMap<String, ClassicGroup>> {
        self.classic.borrow()
    }

    /// Removes a classic group from memory (it is being deleted).
    pub fn remove_classic(&self, group_id: &str) -> Option<ClassicGroup> {
        self.classic.borrow_mut().remove(group_id)
    }

    /// Asks for `group_id`'s membership record to be written.
    fn mark_dirty(&self, group_id: &str) {
        self.dirty.borrow_mut().insert(group_id.to_owned());
        if let Some(waker) = self.dirty_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// The membership records of the dirty groups, encoded, and the
    /// answers waiting for them; called when their append's turn has come,
    /// so they state the groups as they are at their place in the log.
    fn encode_dirty(&self) -> (Vec<u8>, Vec<DeferredJoin>) {
        let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
        let mut records = Vec::with_capacity(dirty.len());
        let mut deferred = Vec::new();
        for id in &dirty {
            if let Some(group) = self.classic.borrow_mut().get_mut(id) {
                deferred.extend(group.take_deferred_joins());
            }
            records.extend(self.membership_record(id));
        }
        (records::encode_batch(&records), deferred)
    }

    /// The record stating `group_id`'s membership, of whichever protocol.
    fn membership_record(&self, group_id: &str) -> Option<GroupRecord> {
        if let Some(group) = self.classic.borrow().get(group_id) {
            return Some(GroupRecord::ClassicGroup(group.record()));
        }
        if let Some(group) = self.share.borrow().get(group_id) {
            return Some(GroupRecord::ShareGroup(group.snapshot()));
        }
        self.consumer.borrow().get(group_id).map(|group| GroupRecord::ConsumerGroup(group.snapshot()))
    }

    /// Every live group and offset (committed and pending, with their
    /// sequence numbers) and every remembered producer epoch as records,
    /// cut into payloads of about [`SNAPSHOT_PAYLOAD_BYTES_MAX`]: the state
    /// compaction writes.
    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        let store = self.offsets.borrow();
        let mut ids: BTreeSet<String> = self.classic.borrow().keys().cloned().collect();
        ids.extend(self.consumer.borrow().keys().cloned());
        ids.extend(self.share.borrow().keys().cloned());
        ids.extend(self.group_configs.borrow().keys().cloned());
        ids.extend(store.group_ids());
        let mut payloads = Vec::new();
        let mut pending = Vec::new();
        let mut pending_bytes = 0usize;
        let groups = ids.into_iter().map(|id| {
            let mut records: Vec<GroupRecord> = self.membership_record(&id).into_iter().collect();
            if let Some(configs) = self.group_configs.borrow().get(&id) {
                records.push(GroupRecord::GroupConfig { group: id.clone(), configs: configs.clone() });
            }
            records.extend(store.records_of(&id));
            records
        });
        for records in groups.chain(std::iter::once(store.pending.producer_records())) {
            for record in records {
                pending_bytes += estimated_bytes(&record);
                pending.push(record);
                if pending_bytes >= SNAPSHOT_PAYLOAD_BYTES_MAX {
                    payloads.push(records::encode_batch(&std::mem::take(&mut pending)));
                    pending_bytes = 0;
                }
            }
        }
        if !pending.is_empty() {
            payloads.push(records::encode_batch(&pending));
        }
        payloads
    }

    /// Writes what is still dirty and closes the log (shutdown): every
    /// commit acknowledged so far is already durable.
    pub async fn close(&self) {
        self.closing.set(true);
        if let Some(waker) = self.dirty_waker.borrow_mut().take() {
            waker.wake();
        }
        let Some(log) = self.log.borrow_mut().take() else {
            return;
        };
        if !self.dirty.borrow().is_empty() {
            let (payload, deferred) = self.encode_dirty();
            let on_durable: OnDurable = Box::new(move |outcome| {
                for answer in deferred {
                    answer.complete(outcome.is_ok());
                }
            });
            if let Err(err) = log.append(move || payload, on_durable).await {
                tracing::error!(error = %err, "writing group records at shutdown failed");
            }
        }
        if let Err(err) = log.close().await {
            tracing::error!(error = %err, "closing the group log failed");
        }
    }

    /// Arms the join-phase timer a state change asked for, if any: a join
    /// phase's rebalance timeout, or the initial delay of an Empty group's
    /// first join phase. When it fires the group decides what comes next
    /// (end the phase, or extend the delay) and may ask for another timer,
    /// armed here in turn; a timer of a phase that is over does nothing.
    pub fn arm_timer(shard: &Rc<Shard>, group_id: &str) {
        let wanted = shard.groups.with_classic(group_id, false, |group| group.timer_wanted.take()).flatten();
        let Some((epoch, timeout)) = wanted else {
            return;
        };
        let shard = shard.clone();
        let group_id = group_id.to_owned();
        glommio::spawn_local(async move {
            glommio::timer::sleep(timeout).await;
            shard.groups.with_classic(&group_id, false, |group| group.rebalance_timed_out(epoch, Instant::now()));
            GroupCoordinator::arm_timer(&shard, &group_id);
        })
        .detach();
    }

    /// Every [`SESSION_SWEEP_INTERVAL`] until the shard stops: evicts
    /// members whose session timed out, expires offsets once per
    /// `offsets.retention.check.interval.ms` (at most once per sweep), and
    /// compacts the group log once it has grown enough.
    pub async fn housekeep(shard: Rc<Shard>) {
        let retention_check_interval = Duration::from_millis(shard.groups.config.offsets_retention_check_interval_ms);
        let mut retention_checked = Instant::now();
        loop {
            {
                let tick = std::pin::pin!(glommio::timer::sleep(SESSION_SWEEP_INTERVAL));
                let stop = std::pin::pin!(shard.stopping.wait());
                if let futures::future::Either::Right(_) = futures::future::select(tick, stop).await {
                    return;
                }
            }
            GroupCoordinator::expire_sessions(&shard, Instant::now());
            if retention_checked.elapsed() >= retention_check_interval {
                retention_checked = Instant::now();
                GroupCoordinator::expire_offsets(&shard).await;
                GroupCoordinator::expire_producers(&shard);
            }
            if let Ok(log) = shard.groups.log() {
                if log.wants_compaction() {
                    if let Err(err) = log.compact(|| shard.groups.snapshot()).await {
                        tracing::error!(shard = shard.id, error = %err, "compacting the group log failed");
                    }
                }
            }
        }
    }

    /// Removes the members of every group whose session (or rebalance)
    /// timed out by `now`; departed share members are told to the
    /// listeners.
    pub(crate) fn expire_sessions(shard: &Rc<Shard>, now: Instant) {
        let consumer_ids: Vec<String> = shard.groups.consumer.borrow().keys().cloned().collect();
        for id in consumer_ids {
            let expired = shard.groups.with_consumer(&id, |group| group.expire(now)).unwrap_or_default();
            if !expired.is_empty() {
                tracing::info!(shard = shard.id, group = %id, members = ?expired, "consumer group session or rebalance timeout: members removed");
            }
        }
        let share_ids: Vec<String> = shard.groups.share.borrow().keys().cloned().collect();
        for id in share_ids {
            let expired = shard.groups.with_share(&id, |group| group.expire(now)).unwrap_or_default();
            if !expired.is_empty() {
                tracing::info!(shard = shard.id, group = %id, members = ?expired, "share group session timeout: members removed");
            }
            for member_id in expired {
                shard.groups.share_member_gone(&id, &member_id, share::GoneReason::SessionTimeout);
            }
        }
        let ids: Vec<String> = shard.groups.classic.borrow().keys().cloned().collect();
        for id in ids {
            let expired = shard.groups.with_classic(&id, false, |group| group.expire(now)).unwrap_or_default();
            if !expired.is_empty() {
                tracing::info!(shard = shard.id, group = %id, members = ?expired, "session timeout: members removed");
            }
            // Expired member ids handed out can end a join phase too.
            GroupCoordinator::arm_timer(shard, &id);
        }
    }

    /// Offset retention (KIP-211): deletes the expired offsets of Empty
    /// classic groups and of topics consumer-protocol groups no longer
    /// subscribe to, and the empty groups left without offsets, durably
    /// (OffsetDeleted and GroupDeleted records), applying them to memory
    /// once durable, in log order like commits.
    async fn expire_offsets(shard: &Rc<Shard>) {
        if shard.groups.expiry_records(crate::partition::now_ms()).is_empty() {
            return;
        }
        let Ok(log) = shard.groups.log() else {
            return;
        };
        let written: Rc<RefCell<Vec<GroupRecord>>> = Rc::default();
        let applied = written.clone();
        let owner = shard.clone();
        let on_durable: OnDurable = Box::new(move |outcome| match outcome {
            Ok(()) => owner.groups.apply_expiry(&applied.take()),
            Err(reason) => tracing::error!(shard = owner.id, reason, "expired offsets could not be deleted durably"),
        });
        let decider = shard.clone();
        let encode = move || {
            // Decided again at the append's turn: whatever was placed
            // before it is applied or counted as in flight by now.
            let records = decider.groups.expiry_records(crate::partition::now_ms());
            let payload = records::encode_batch(&records);
            *written.borrow_mut() = records;
            payload
        };
        if let Err(err) = log.append(encode, on_durable).await {
            tracing::error!(shard = shard.id, error = %err, "writing expired offsets failed");
        }
    }

    /// Forgets the epochs of producers with nothing pending here that were
    /// last seen longer ago than Kafka's default `producer.id.expiration.ms`.
    fn expire_producers(shard: &Rc<Shard>) {
        let expiration_ms = crate::producer_state::PRODUCER_ID_EXPIRATION_MS_DEFAULT;
        let forgotten =
            shard.groups.offsets.borrow_mut().pending.expire_producers(crate::partition::now_ms(), expiration_ms);
        if forgotten > 0 {
            tracing::debug!(shard = shard.id, producers = forgotten, "idle transactional producers forgotten");
        }
    }

    /// What retention deletes now ([`ClassicGroup::expire_offsets`]), at
    /// most [`EXPIRED_RECORDS_PER_CHECK_MAX`] records (the rest waits for
    /// the next check). A group with offset appends in flight waits too:
    /// its offsets in memory are not yet all the log holds. As in Kafka's
    /// `cleanupExpiredOffsets`, an offset whose partition has a pending
    /// transactional offset does not expire, and a group with pending
    /// offsets (an open transaction) is not deleted.
    pub(crate) fn expiry_records(&self, now_ms: i64) -> Vec<GroupRecord> {
        let groups = self.classic.borrow();
        let store = self.offsets.borrow();
        let in_flight = self.offsets_in_flight.borrow();
        let pending = &store.pending;
        let mut records = Vec::new();
        for group in groups.values().filter(|group| !in_flight.contains_key(&group.id)) {
            let room = EXPIRED_RECORDS_PER_CHECK_MAX.saturating_sub(records.len());
            if room == 0 {
                break;
            }
            let mut expiry =
                group.expire_offsets(settled_offsets(&store, &group.id), now_ms, self.config.offsets_retention_ms);
            expiry.delete_group &= !pending.has_group(&group.id);
            let whole = expiry.expired.len() < room;
            let deleted = expiry.expired.into_iter().take(room).map(|(topic, partition): TopicPartition| {
                GroupRecord::OffsetDeleted { group: group.id.clone(), topic, partition }
            });
            records.extend(deleted);
            if expiry.delete_group && whole {
                records.push(GroupRecord::GroupDeleted { group: group.id.clone() });
            }
        }
        let consumers = self.consumer.borrow();
        for group in consumers.values().filter(|group| !in_flight.contains_key(group.id())) {
            let room = EXPIRED_RECORDS_PER_CHECK_MAX.saturating_sub(records.len());
            if room == 0 {
                break;
            }
            let mut expiry =
                group.expire_offsets(settled_offsets(&store, group.id()), now_ms, self.config.offsets_retention_ms);
            expiry.delete_group &= !pending.has_group(group.id());
            let whole = expiry.expired.len() < room;
            records.extend(expiry.expired.into_iter().take(room).map(|(topic, partition)| {
                GroupRecord::OffsetDeleted { group: group.id().to_owned(), topic, partition }
            }));
            if expiry.delete_group && whole {
                records.push(GroupRecord::GroupDeleted { group: group.id().to_owned() });
            }
        }
        records
    }

    /// Applies durable retention records: offsets go, and so does each
    /// deleted group unless a member joined it since the record was
    /// placed (its membership is written again when that generation forms).
    fn apply_expiry(&self, records: &[GroupRecord]) {
        let mut store = self.offsets.borrow_mut();
        let mut groups = self.classic.borrow_mut();
        let (mut offsets, mut deleted) = (0usize, 0usize);
        for record in records {
            store.apply(record);
            match record {
                GroupRecord::OffsetDeleted { .. } => offsets += 1,
                GroupRecord::GroupDeleted { group } if groups.get(group).is_some_and(ClassicGroup::is_deletable) => {
                    groups.remove(group);
                    deleted += 1;
                }
                GroupRecord::GroupDeleted { group }
                    if self.consumer.borrow().get(group).is_some_and(|g| g.is_empty()) =>
                {
                    self.consumer.borrow_mut().remove(group);
                    deleted += 1;
                }
                _ => {}
            }
        }
        if offsets + deleted > 0 {
            tracing::info!(offsets, groups = deleted, "offset retention: expired offsets and empty groups deleted");
        }
    }
}

/// Writes the membership records of dirty groups, one append per wakeup
/// (every group that became dirty meanwhile goes into it), until the
/// coordinator closes.
async fn write_dirty_groups(shard: Rc<Shard>) {
    loop {
        std::future::poll_fn(|cx| {
            if shard.groups.closing.get() || !shard.groups.dirty.borrow().is_empty() {
                return Poll::Ready(());
            }
            *shard.groups.dirty_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if shard.groups.closing.get() {
            return;
        }
        let Ok(log) = shard.groups.log() else {
            return;
        };
        if let Err(err) = write_dirty(&shard, &log).await {
            tracing::error!(shard = shard.id, error = %err, "writing group membership records failed");
            return;
        }
    }
}

/// Appends the dirty groups' records; their deferred answers leave
/// once the append is durable.
async fn write_dirty(shard: &Rc<Shard>, log: &InternalLog) -> Result<(), engine::EngineError> {
    let deferred: Rc<RefCell<Vec<DeferredJoin>>> = Rc::default();
    let answers = deferred.clone();
    let on_durable: OnDurable = Box::new(move |outcome| {
        if let Err(reason) = &outcome {
            tracing::error!(reason, "a group membership record could not be made durable");
        }
        for answer in answers.take() {
            answer.complete(outcome.is_ok());
        }
    });
    let owner = shard.clone();
    let encode = move || {
        let (payload, waiting) = owner.groups.encode_dirty();
        *deferred.borrow_mut() = waiting;
        payload
    };
    log.append(encode, on_durable).await.map(|_| ())
}

/// An append in flight, counted under each of its keys until dropped
/// ([`GroupCoordinator::offsets_in_flight`],
/// [`GroupCoordinator::txn_offsets_in_flight`]).
pub struct InFlight<K: Hash + Eq> {
    counts: Rc<RefCell<HashMap<K, usize>>>,
    keys: Vec<K>,
}

/// An offset append of one group in flight.
pub type OffsetsInFlight = InFlight<String>;

impl<K: Hash + Eq + Clone> InFlight<K> {
    fn new(counts: &Rc<RefCell<HashMap<K, usize>>>, keys: Vec<K>) -> InFlight<K> {
        let mut counted = counts.borrow_mut();
        for key in &keys {
            *counted.entry(key.clone()).or_default() += 1;
        }
        InFlight { counts: counts.clone(), keys }
    }
}

impl<K: Hash + Eq> Drop for InFlight<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.borrow_mut();
        for key in &self.keys {
            let count = counts.get_mut(key).expect("counted when the guard was made");
            *count -= 1;
            if *count == 0 {
                counts.remove(key);
            }
        }
    }
}

/// The committed offsets of `group` that retention may judge: those of
/// partitions without a pending transactional offset.
fn settled_offsets<'a>(
    store: &'a OffsetStore,
    group: &'a str,
) -> impl Iterator<Item = (&'a TopicPartition, &'a Committed)> + 'a {
    let offsets = store.group(group).into_iter().flatten();
    offsets.filter(move |(partition, _)| !store.pending.has_partition(group, partition))
}

/// A rough size of a record once encoded, for cutting snapshots.
fn estimated_bytes(record: &GroupRecord) -> usize {
    match record {
        GroupRecord::OffsetCommit(commit) | GroupRecord::TxnOffsetCommit { offset: commit, .. } => {
            80 + commit.group.len() + commit.topic.len() + commit.metadata.as_ref().map_or(0, String::len)
        }
        GroupRecord::ClassicGroup(group) => {
            let members: usize = group
                .members
                .iter()
                .map(|m| 64 + m.member_id.len() + m.client_id.len() + m.subscription.len() + m.assignment.len())
                .sum();
            64 + group.group.len() + members
        }
        GroupRecord::ConsumerGroup(group) => {
            let partitions = |member: &consumer::ConsumerMemberSnapshot| {
                [&member.assigned_partitions, &member.partitions_pending_revocation, &member.target_partitions]
                    .iter()
                    .map(|topics| topics.values().map(|set| 20 + 4 * set.len()).sum::<usize>())
                    .sum::<usize>()
            };
            let members: usize = group.members.iter().map(|m| 128 + m.member_id.len() + partitions(m)).sum();
            64 + group.group_id.len() + 40 * group.subscription_metadata.len() + members
        }
        GroupRecord::ShareGroup(group) => {
            let partitions = |topics: &super::assignor::TopicPartitions| {
                topics.values().map(|set| 20 + 4 * set.len()).sum::<usize>()
            };
            let members: usize = group
                .members
                .iter()
                .map(|m| {
                    let names: usize = m.subscribed_topic_names.iter().map(|name| 8 + name.len()).sum();
                    96 + m.member_id.len()
                        + m.client_id.len()
                        + m.client_host.len()
                        + names
                        + partitions(&m.assigned_partitions)
                        + partitions(&m.target_partitions)
                })
                .sum();
            64 + group.group_id.len() + 40 * group.subscription_metadata.len() + members
        }
        GroupRecord::GroupConfig { group, configs } => {
            32 + group.len() + configs.iter().map(|(name, value)| 16 + name.len() + value.len()).sum::<usize>()
        }
        _ => 64,
    }
}

/// The state a log's records add up to, before it is split by owner.
#[derive(Default)]
struct Replayed {
    classic: HashMap<String, super::records::ClassicGroupRecord>,
    consumer: HashMap<String, consumer::ConsumerGroupSnapshot>,
    share: HashMap<String, share::ShareGroupSnapshot>,
    group_configs: HashMap<String, BTreeMap<String, String>>,
    offsets: OffsetStore,
}

impl Replayed {
    /// Every group's records (membership, then offsets: committed and
    /// pending), by owner. The producers' epochs go to `reader` (the shard
    /// reading the log) and to every shard receiving groups, since their
    /// pending offsets and later transactional commits may be anywhere.
    fn by_owner(self, shards: usize, reader: usize) -> ByOwner {
        let Replayed { mut classic, mut consumer, mut share, mut group_configs, offsets } = self;
        let mut ids: BTreeSet<String> = classic.keys().cloned().collect();
        ids.extend(consumer.keys().cloned());
        ids.extend(share.keys().cloned());
        ids.extend(group_configs.keys().cloned());
        ids.extend(offsets.group_ids());
        let mut by_owner = ByOwner::new();
        for id in ids {
            let records = by_owner.entry(super::coordinator_shard(&id, shards)).or_default();
            records.extend(classic.remove(&id).map(GroupRecord::ClassicGroup));
            records.extend(consumer.remove(&id).map(GroupRecord::ConsumerGroup));
            records.extend(share.remove(&id).map(GroupRecord::ShareGroup));
            records.extend(
                group_configs.remove(&id).map(|configs| GroupRecord::GroupConfig { group: id.clone(), configs }),
            );
            records.extend(offsets.records_of(&id));
        }
        let producers = offsets.pending.producer_records();
        if !producers.is_empty() {
            by_owner.entry(reader).or_default();
            for records in by_owner.values_mut() {
                records.extend(producers.iter().cloned());
            }
        }
        by_owner
    }

    fn apply(&mut self, record: GroupRecord) {
        match record {
            // A group id names one group at a time: the latest record of
            // any protocol replaces the others'.
            GroupRecord::ClassicGroup(group) => {
                self.consumer.remove(&group.group);
                self.share.remove(&group.group);
                self.classic.insert(group.group.clone(), group);
            }
            GroupRecord::ConsumerGroup(group) => {
                self.classic.remove(&group.group_id);
                self.share.remove(&group.group_id);
                self.consumer.insert(group.group_id.clone(), group);
            }
            GroupRecord::ShareGroup(group) => {
                self.classic.remove(&group.group_id);
                self.consumer.remove(&group.group_id);
                self.share.insert(group.group_id.clone(), group);
            }
            // GROUP configs outlive the group (GroupDeleted leaves them).
            GroupRecord::GroupConfig { group, configs } => {
                if configs.is_empty() {
                    self.group_configs.remove(&group);
                } else {
                    self.group_configs.insert(group, configs);
                }
            }
            GroupRecord::GroupDeleted { group } => {
                self.classic.remove(&group);
                self.consumer.remove(&group);
                self.share.remove(&group);
                self.offsets.apply(&GroupRecord::GroupDeleted { group });
            }
            offsets => self.offsets.apply(&offsets),
        }
    }
}
