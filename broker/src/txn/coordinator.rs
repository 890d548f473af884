//! One shard's transaction coordinator: the transactional ids that hash to
//! this shard ([`super::coordinator_shard`]), their state machines
//! ([`Transaction`]), the transaction log behind them (`internal_log` in
//! `<data_dir>/__transaction_state/<shard>/`), the tasks that write markers
//! and complete transactions, timeouts, expiry and compaction.
//!
//! Only its own shard touches it (requests arrive through `invoke_on`), so
//! plain `RefCell`s suffice; no borrow is held across an await.
//!
//! What is durable when (as in Kafka, where every one of these changes is
//! a `__transaction_state` record written before the answer):
//! - InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn and EndTxn are
//!   answered once their record is durable, and applied to memory then;
//!   EndTxn's record is PrepareCommit/PrepareAbort, after which the markers
//!   are written ([`super::markers::write_markers`], retried with a bound)
//!   and CompleteCommit/CompleteAbort written last. Kafka answers EndTxn
//!   once Prepare is durable, because its markers go to other brokers; ours
//!   are local and take one more fsync, so EndTxn waits for the Complete
//!   record too (up to [`END_TXN_COMPLETION_WAIT`]; the decision is durable
//!   either way). The producer can then begin its next transaction at once
//!   instead of retrying on CONCURRENT_TRANSACTIONS, and a consumer reads the
//!   committed records as soon as the commit is answered;
//! - a fence (InitProducerId on an ongoing transaction, or a transaction
//!   past its timeout) writes PrepareAbort with the bumped epoch, then
//!   completes the abort the same way;
//! - an expired id's tombstone is written before the id is forgotten.
//!
//! Start: every shard replays its own log; PrepareCommit/PrepareAbort found
//! there are completed once every shard runs (their markers are written
//! again: partitions ignore a marker they already have). Ids another shard
//! coordinates now (the shard count changed) are handed over to it, as
//! groups are, and logs of shards that no longer run are read by shard
//! `index % shards`, handed over and removed.
//!
//! The coordinator epoch that markers carry (partitions refuse an older
//! one) is one more than the highest epoch any replayed record was written
//! with, raised above the epochs of ids handed over, so it never goes back
//! for any producer.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use engine::ShardResources;
use futures::channel::oneshot;
use protocol::ErrorCode;

use super::config::TxnConfig;
use super::markers::{self, MarkerRequest};
use super::records::{self, TxnRecord};
use super::state::{InitError, InitPlan, TopicPartition, Transaction, TxnMetadata, TxnState};
use crate::event::Event;
use crate::group::classic::Step;
use crate::internal_log::{self, InternalLog, OnDurable, SNAPSHOT_PAYLOAD_BYTES_MAX};
use crate::shard::{Shard, CONTROLLER_SHARD};

/// Directory of the transaction logs inside the data directory (Kafka's
/// topic name). It cannot collide with a partition directory: those end in
/// `-<partition>`.
pub const TRANSACTION_STATE_DIR: &str = "__transaction_state";
/// How often the housekeeping task wakes up at most: compaction is checked
/// then, and the cleanup intervals are counted in these ticks.
pub const HOUSEKEEPING_TICK: Duration = Duration::from_millis(500);
/// Attempts at a transaction's markers before the task gives up until the
/// next abort check (`transaction.abort.timed.out.transaction.cleanup.interval.ms`)
/// starts it again.
pub const MARKER_ATTEMPTS_MAX: u32 = 8;
/// Wait before the second attempt; doubled after each failure up to
/// [`MARKER_RETRY_BACKOFF_MAX`].
pub const MARKER_RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const MARKER_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest EndTxn waits, after its Prepare record is durable, for the
/// markers and the Complete record before it is answered anyway.
pub const END_TXN_COMPLETION_WAIT: Duration = Duration::from_secs(5);
/// Timed-out transactions one check aborts at most; the rest wait for the
/// next check.
pub const TIMED_OUT_ABORTS_PER_CHECK_MAX: usize = 1_000;
/// Expired ids one check removes at most (one append of their tombstones).
pub const EXPIRED_IDS_PER_CHECK_MAX: usize = 10_000;
/// Partitions one transaction may hold, and groups: a bound on the size of
/// its record (Kafka sets none; past it AddPartitionsToTxn and
/// AddOffsetsToTxn get INVALID_REQUEST).
pub const TRANSACTION_PARTITIONS_MAX: usize = 100_000;
pub const TRANSACTION_GROUPS_MAX: usize = 10_000;
/// Tries at InitProducerId while the state changes under it (a producer id
/// being allocated meanwhile); CONCURRENT_TRANSACTIONS after them.
const INIT_ATTEMPTS_MAX: usize = 3;

/// An answer to AddPartitionsToTxn, AddOffsetsToTxn or EndTxn.
pub type Answer = Result<(), ErrorCode>;
/// An answer to InitProducerId: the producer id and epoch.
pub type InitAnswer = Result<(i64, i16), ErrorCode>;

/// One transaction as DescribeTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedTxn {
    pub state: TxnState,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub start_time_ms: i64,
    pub partitions: BTreeSet<TopicPartition>,
}

/// ListTransactions' filters; empty ones admit everything.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub states: Vec<TxnState>,
    pub producer_ids: Vec<i64>,
    /// Only transactions running longer than this (v1); negative: all.
    pub duration_ms: i64,
}

/// One transaction as ListTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}

pub struct TxnCoordinator {
    pub config: TxnConfig,
    transactions: RefCell<HashMap<String, Transaction>>,
    log: RefCell<Option<Rc<InternalLog>>>,
    coordinator_epoch: Cell<i32>,
    /// Ids whose markers a task is writing now.
    completing: RefCell<HashSet<String>>,
    /// Set once this shard's ids are loaded: ids handed over by other
    /// shards at start wait for it.
    loaded: Event,
}

/// Records of transactional ids, by the shard that coordinates them.
type ByOwner = BTreeMap<usize, Vec<TxnRecord>>;

/// The state a log's records add up to, before it is split by owner.
#[derive(Default, Debug)]
pub struct Replayed {
    transactions: BTreeMap<String, TxnRecord>,
    /// The highest coordinator epoch any record was written with.
    coordinator_epoch: i32,
}

impl Replayed {
    pub fn apply(&mut self, record: TxnRecord) {
        match record {
            TxnRecord::Transaction { coordinator_epoch, .. } => {
                self.coordinator_epoch = self.coordinator_epoch.max(coordinator_epoch);
                self.transactions.insert(record.transactional_id().to_owned(), record);
            }
            TxnRecord::Removed { transactional_id } => {
                self.transactions.remove(&transactional_id);
            }
        }
    }

    /// Every live id's latest record, by the shard coordinating it.
    pub fn by_owner(self, shards: usize) -> ByOwner {
        let mut by_owner = ByOwner::new();
        for (id, record) in self.transactions {
            by_owner.entry(super::coordinator_shard(&id, shards)).or_default().push(record);
        }
        by_owner
    }
}

/// Opens the transaction log in `dir` and replays it.
pub async fn open_log(
    dir: &Path,
    segment_bytes: u64,
    resources: Rc<ShardResources>,
) -> Result<(InternalLog, Replayed), String> {
    let (log, payloads) = InternalLog::open(dir.to_path_buf(), segment_bytes, resources)
        .await
        .map_err(|err| format!("transaction log {}: {err}", dir.display()))?;
    let mut replayed = Replayed::default();
    for (log_offset, payload) in payloads {
        let batch = records::decode_batch(&payload)
            .map_err(|what| format!("transaction log {}: record at offset {log_offset}: {what}", dir.display()))?;
        for record in batch {
            replayed.apply(record);
        }
    }
    Ok((log, replayed))
}

/// Transaction log directories of shards that do not run now and whose
/// index maps to `shard` (`index % shards`).
fn orphan_dirs(data_dir: &Path, shard: usize, shards: usize) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(TRANSACTION_STATE_DIR)) else {
        return Vec::new();
    };
    let mut dirs: Vec<(usize, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<usize>().ok()?, entry.path())))
        .filter(|(index, _)| *index >= shards && index % shards == shard)
        .collect();
    dirs.sort();
    dirs.into_iter().map(|(_, path)| path).collect()
}

/// Sends each shard its ids' records and waits until they are durable there.
async fn hand_over(shard: &Rc<Shard>, by_owner: ByOwner) -> Result<(), String> {
    for (target, records) in by_owner {
        let count = records.len();
        shard
            .invoke_on(target, move |owner| async move { TxnCoordinator::adopt(&owner, records).await })
            .await
            .map_err(|gone| format!("handing transactional ids to shard {target}: {gone}"))??;
        tracing::info!(
            shard = shard.id,
            to = target,
            ids = count,
            "handed transactional ids over to their coordinator"
        );
    }
    Ok(())
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            transactions: RefCell::new(HashMap::new()),
            log: RefCell::new(None),
            coordinator_epoch: Cell::new(0),
            completing: RefCell::new(HashSet::new()),
            loaded: Event::default(),
        }
    }

    /// Loads this shard's transactional ids and hands other shards theirs.
    /// Runs at start, before clients are accepted; every shard runs it at
    /// once. Transactions found prepared are completed by [`Self::housekeep`].
    pub async fn start(shard: &Rc<Shard>) -> Result<(), String> {
        let txn = &shard.txn;
        let dir = internal_log::log_dir(&shard.config.data_dir, TRANSACTION_STATE_DIR, shard.id);
        let (log, replayed) = open_log(&dir, txn.config.log_segment_bytes, shard.resources.clone()).await?;
        txn.coordinator_epoch.set(replayed.coordinator_epoch.saturating_add(1));
        let mut by_owner = replayed.by_owner(shard.count);
        txn.install(by_owner.remove(&shard.id).unwrap_or_default());
        *txn.log.borrow_mut() = Some(Rc::new(log));
        txn.loaded.set();
        let handed_over = !by_owner.is_empty();
        hand_over(shard, by_owner).await?;
        for orphan in orphan_dirs(&shard.config.data_dir, shard.id, shard.count) {
            let (log, replayed) = open_log(&orphan, txn.config.log_segment_bytes, shard.resources.clone()).await?;
            log.close().await.map_err(|err| err.to_string())?;
            hand_over(shard, replayed.by_owner(shard.count)).await?;
            std::fs::remove_dir_all(&orphan).map_err(|err| format!("removing {}: {err}", orphan.display()))?;
            tracing::info!(dir = %orphan.display(), "the transaction log of a shard that no longer runs was handed over and removed");
        }
        if handed_over {
            let log = txn.log().map_err(|err| err.to_string())?;
            log.compact(|| txn.snapshot()).await.map_err(|err| err.to_string())?;
        }
        Ok(())
    }

    /// Installs replayed or adopted records.
    fn install(&self, records: Vec<TxnRecord>) {
        let mut transactions = self.transactions.borrow_mut();
        for record in records {
            match record {
                TxnRecord::Transaction { metadata, .. } => {
                    transactions.insert(metadata.transactional_id.clone(), Transaction::restore(metadata));
                }
                TxnRecord::Removed { transactional_id } => {
                    transactions.remove(&transactional_id);
                }
            }
        }
        if !transactions.is_empty() {
            tracing::info!(transactional_ids = transactions.len(), "loaded transactional ids");
        }
    }

    /// Takes over ids handed from another shard's log at start, unless
    /// this shard knows them already (its record is the newer: it only
    /// got it from an earlier hand-over, or from clients since). Durable on
    /// return.
    async fn adopt(shard: &Rc<Shard>, records: Vec<TxnRecord>) -> Result<(), String> {
        let txn = &shard.txn;
        txn.loaded.wait().await;
        let wanted: Vec<TxnRecord> = {
            let known = txn.transactions.borrow();
            records.into_iter().filter(|record| !known.contains_key(record.transactional_id())).collect()
        };
        for record in &wanted {
            if let TxnRecord::Transaction { coordinator_epoch, .. } = record {
                txn.coordinator_epoch.set(txn.coordinator_epoch.get().max(coordinator_epoch.saturating_add(1)));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let epoch = txn.coordinator_epoch.get();
        let restated: Vec<TxnRecord> = wanted
            .into_iter()
            .map(|record| match record {
                TxnRecord::Transaction { metadata, .. } => {
                    TxnRecord::Transaction { metadata, coordinator_epoch: epoch }
                }
                removed => removed,
            })
            .collect();
        let payload = records::encode_batch(&restated);
        let (done, durable) = oneshot::channel();
        let owner = shard.clone();
        let on_durable: OnDurable = Box::new(move |outcome| {
            if outcome.is_ok() {
                owner.txn.install(restated);
            }
            let _ = done.send(outcome);
        });
        let log = txn.log().map_err(|err| err.to_string())?;
        log.append(move || payload, on_durable).await.map_err(|err| err.to_string())?;
        durable.await.map_err(|_| "the transaction log closed before handed-over ids were durable".to_string())?
    }

    /// The transaction log; an error once it is closed (shutdown).
    pub fn log(&self) -> Result<Rc<InternalLog>, engine::EngineError> {
        self.log
            .borrow()
            .clone()
            .ok_or_else(|| engine::EngineError::Closed { path: PathBuf::from(TRANSACTION_STATE_DIR) })
    }

    /// The epoch the markers of this coordinator carry.
    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch.get()
    }

    /// Every id whose record was ever written, as records: the state
    /// compaction writes, cut into payloads of about
    /// [`SNAPSHOT_PAYLOAD_BYTES_MAX`].
    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        let epoch = self.coordinator_epoch.get();
        let transactions = self.transactions.borrow();
        let mut ids: Vec<&String> = transactions.keys().collect();
        ids.sort();
        let mut payloads = Vec::new();
        let mut pending = Vec::new();
        let mut pending_bytes = 0usize;
        for id in ids {
            let transaction = &transactions[id];
            if !transaction.was_written() {
                continue;
            }
            let metadata = transaction.metadata().clone();
            pending_bytes += estimated_bytes(&metadata);
            pending.push(TxnRecord::Transaction { metadata, coordinator_epoch: epoch });
            if pending_bytes >= SNAPSHOT_PAYLOAD_BYTES_MAX {
                payloads.push(records::encode_batch(&std::mem::take(&mut pending)));
                pending_bytes = 0;
            }
        }
        if !pending.is_empty() {
            payloads.push(records::encode_batch(&pending));
        }
        payloads
    }

    /// Closes the log (shutdown): every change acknowledged so far is
    /// already durable; markers still being written are completed at the
    /// next start.
    pub async fn close(&self) {
        let Some(log) = self.log.borrow_mut().take() else {
            return;
        };
        if let Err(err) = log.close().await {
            tracing::error!(error = %err, "closing the transaction log failed");
        }
    }

    /// Applies a durable change of one id.
    fn apply(&self, metadata: TxnMetadata) {
        let mut transactions = self.transactions.borrow_mut();
        let transaction = transactions.get_mut(&metadata.transactional_id).expect("a pending id is never removed");
        transaction.complete_transition(metadata);
    }

    /// Drops a change whose record could not be written. An id whose first
    /// record failed is forgotten again.
    fn abandon(&self, transactional_id: &str) {
        let mut transactions = self.transactions.borrow_mut();
        if let Some(transaction) = transactions.get_mut(transactional_id) {
            transaction.abandon_transition();
            if !transaction.was_written() {
                transactions.remove(transactional_id);
            }
        }
    }

    /// Places `metadata` (a prepared change) in the log; `done` runs with
    /// the outcome once it is durable and applied, or could never be
    /// (NOT_COORDINATOR, Kafka's answer to a failed write of its log). A
    /// change that could not even be placed is abandoned at once and
    /// COORDINATOR_NOT_AVAILABLE returned; `done` is not run then.
    async fn write(
        shard: &Rc<Shard>,
        metadata: TxnMetadata,
        done: impl FnOnce(&Rc<Shard>, Answer) + 'static,
    ) -> Answer {
        let id = metadata.transactional_id.clone();
        let Ok(log) = shard.txn.log() else {
            shard.txn.abandon(&id);
            return Err(ErrorCode::CoordinatorNotAvailable);
        };
        let owner = shard.clone();
        let applied = metadata.clone();
        let failed_id = id.clone();
        let on_durable: OnDurable = Box::new(move |outcome| match outcome {
            Ok(()) => {
                owner.txn.apply(applied);
                done(&owner, Ok(()));
            }
            Err(reason) => {
                tracing::error!(shard = owner.id, transactional_id = %failed_id, reason, "a transaction record could not be made durable");
                owner.txn.abandon(&failed_id);
                done(&owner, Err(ErrorCode::NotCoordinator));
            }
        });
        let encoder = shard.clone();
        let encode = move || {
            let coordinator_epoch = encoder.txn.coordinator_epoch.get();
            records::encode_batch(&[TxnRecord::Transaction { metadata, coordinator_epoch }])
        };
        match log.append(encode, on_durable).await {
            Ok(_) => Ok(()),
            Err(err) => {
                tracing::error!(shard = shard.id, transactional_id = %id, error = %err, "placing a transaction record failed");
                shard.txn.abandon(&id);
                Err(ErrorCode::CoordinatorNotAvailable)
            }
        }
    }

    /// [`Self::write`] answering through a receiver with `answer` applied to
    /// the outcome.
    async fn write_and_answer<T: 'static>(
        shard: &Rc<Shard>,
        metadata: TxnMetadata,
        answer: impl FnOnce(&Rc<Shard>, Answer) -> Result<T, ErrorCode> + 'static,
    ) -> Step<Result<T, ErrorCode>> {
        let (reply, receiver) = oneshot::channel();
        let done = move |shard: &Rc<Shard>, outcome: Answer| {
            let _ = reply.send(answer(shard, outcome));
        };
        match TxnCoordinator::write(shard, metadata, done).await {
            Ok(()) => Step::Wait(receiver),
            Err(code) => Step::Now(Err(code)),
        }
    }

    /// InitProducerId for a transactional id (already checked non-empty),
    /// on its coordinator shard: a new id gets a new producer id at epoch 0,
    /// a known one its epoch bumped (a new producer id once exhausted);
    /// an ongoing transaction is fenced and aborted first
    /// (CONCURRENT_TRANSACTIONS: the producer retries), one still being
    /// completed answers CONCURRENT_TRANSACTIONS; KIP-360 checks on
    /// `expected`.
    pub async fn init_producer_id(
        shard: &Rc<Shard>,
        transactional_id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Step<InitAnswer> {
        if timeout_ms <= 0 || timeout_ms > shard.txn.config.transaction_timeout_ms_max {
            return Step::Now(Err(ErrorCode::InvalidTransactionTimeout));
        }
        let mut allocated = None;
        for _ in 0..INIT_ATTEMPTS_MAX {
            match shard.txn.decide_init(&transactional_id, timeout_ms, expected, &mut allocated) {
                Err(InitError::NeedProducerId) => match allocate_producer_id(shard).await {
                    Ok(producer_id) => allocated = Some(producer_id),
                    Err(code) => return Step::Now(Err(code)),
                },
                Err(InitError::Code(code)) => return Step::Now(Err(code)),
                Ok(InitPlan::Write(metadata)) => {
                    let answer = (metadata.producer_id, metadata.producer_epoch);
                    return TxnCoordinator::write_and_answer(shard, metadata, move |shard, outcome| {
                        outcome?;
                        let (producer_id, producer_epoch) = answer;
                        tracing::info!(shard = shard.id, transactional_id = %transactional_id, producer_id, producer_epoch, "initialized transactional id");
                        Ok(answer)
                    })
                    .await;
                }
                Ok(InitPlan::Fence(metadata)) => {
                    tracing::info!(transactional_id = %transactional_id, producer_epoch = metadata.producer_epoch, "InitProducerId fences the producer of an ongoing transaction and aborts it");
                    return TxnCoordinator::write_and_answer(shard, metadata, move |shard, outcome| {
                        outcome?;
                        spawn_completion(shard, &transactional_id);
                        Err(ErrorCode::ConcurrentTransactions)
                    })
                    .await;
                }
            }
        }
        Step::Now(Err(ErrorCode::ConcurrentTransactions))
    }

    /// One decision of InitProducerId; a new id is created (pending) with
    /// the producer id in `allocated`, or asks for one.
    fn decide_init(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        allocated: &mut Option<i64>,
    ) -> Result<InitPlan, InitError> {
        let now_ms = crate::partition::now_ms();
        let mut transactions = self.transactions.borrow_mut();
        if !transactions.contains_key(transactional_id) {
            let producer_id = allocated.take().ok_or(InitError::NeedProducerId)?;
            transactions.insert(
                transactional_id.to_owned(),
                Transaction::new(transactional_id, producer_id, timeout_ms, now_ms),
            );
        }
        let transaction = transactions.get_mut(transactional_id).expect("inserted above");
        let decided = transaction.init_producer_id(timeout_ms, expected, allocated.take(), now_ms);
        if decided.is_err() && !transaction.was_written() && transaction.pending_state().is_none() {
            transactions.remove(transactional_id);
        }
        decided
    }

    /// AddPartitionsToTxn (`partitions`, already checked to exist) and
    /// AddOffsetsToTxn (`groups`), on the id's coordinator shard.
    pub async fn add(
        shard: &Rc<Shard>,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
        groups: Vec<String>,
    ) -> Step<Answer> {
        let now_ms = crate::partition::now_ms();
        let prepared = {
            let mut transactions = shard.txn.transactions.borrow_mut();
            let Some(transaction) = transactions.get_mut(&transactional_id) else {
                return Step::Now(Err(ErrorCode::InvalidProducerIdMapping));
            };
            let metadata = transaction.metadata();
            let partitions_after = metadata.partitions.len() + partitions.len();
            let groups_after = metadata.groups.len() + groups.len();
            if partitions_after > TRANSACTION_PARTITIONS_MAX || groups_after > TRANSACTION_GROUPS_MAX {
                tracing::warn!(transactional_id = %transactional_id, partitions_after, groups_after, "a transaction would exceed its partition or group bound");
                return Step::Now(Err(ErrorCode::InvalidRequest));
            }
            transaction.add(producer_id, producer_epoch, &partitions, &groups, now_ms)
        };
        match prepared {
            Err(code) => Step::Now(Err(code)),
            Ok(None) => Step::Now(Ok(())),
            Ok(Some(metadata)) => TxnCoordinator::write_and_answer(shard, metadata, |_, outcome| outcome).await,
        }
    }

    /// EndTxn from a client, on the id's coordinator shard: answered once
    /// PrepareCommit/PrepareAbort is durable; the markers follow.
    pub async fn end(
        shard: &Rc<Shard>,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Step<Answer> {
        let now_ms = crate::partition::now_ms();
        let prepared = match shard.txn.transactions.borrow_mut().get_mut(&transactional_id) {
            None => Err(ErrorCode::InvalidProducerIdMapping),
            Some(transaction) => transaction.end(producer_id, producer_epoch, commit, now_ms),
        };
        match prepared {
            Err(code) => Step::Now(Err(code)),
            Ok(None) => Step::Now(Ok(())),
            Ok(Some(metadata)) => {
                let (completed, on_completed) = oneshot::channel();
                let prepared = TxnCoordinator::write_and_answer(shard, metadata, move |shard, outcome| {
                    outcome?;
                    spawn_completion_notifying(shard, &transactional_id, Some(completed));
                    Ok(())
                })
                .await;
                let Step::Wait(prepared) = prepared else { return prepared };
                // See the module docs: answered once complete, or after
                // END_TXN_COMPLETION_WAIT with the Prepare durable.
                let (reply, answer) = oneshot::channel();
                glommio::spawn_local(async move {
                    let outcome = prepared.await.unwrap_or(Err(ErrorCode::CoordinatorNotAvailable));
                    if outcome.is_ok() {
                        let waited = std::pin::pin!(glommio::timer::sleep(END_TXN_COMPLETION_WAIT));
                        let _ = futures::future::select(on_completed, waited).await;
                    }
                    let _ = reply.send(outcome);
                })
                .detach();
                Step::Wait(answer)
            }
        }
    }

    /// Whether `topic`-`partition` was added to the ongoing transaction of
    /// `transactional_id` by this producer (KIP-890 verification, for
    /// Produce and AddPartitionsToTxn v4+ `verify_only`). Must be called on
    /// the id's coordinator shard ([`super::verify_partition`] routes
    /// there). Errors: INVALID_PRODUCER_ID_MAPPING (unknown id or other
    /// producer id), PRODUCER_FENCED (other epoch), CONCURRENT_TRANSACTIONS
    /// (the transaction is being completed), TRANSACTION_ABORTABLE (not
    /// added).
    pub fn verify_partition(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ErrorCode> {
        match self.transactions.borrow().get(transactional_id) {
            None => Err(ErrorCode::InvalidProducerIdMapping),
            Some(transaction) => {
                transaction.verify_partition(producer_id, producer_epoch, &(topic.to_owned(), partition))
            }
        }
    }

    /// DescribeTransactions of one id on its coordinator shard.
    pub fn describe(&self, transactional_id: &str) -> Result<DescribedTxn, ErrorCode> {
        let transactions = self.transactions.borrow();
        let transaction = transactions.get(transactional_id).ok_or(ErrorCode::TransactionalIdNotFound)?;
        let metadata = transaction.metadata();
        Ok(DescribedTxn {
            state: metadata.state,
            producer_id: metadata.producer_id,
            producer_epoch: metadata.producer_epoch,
            timeout_ms: metadata.timeout_ms,
            start_time_ms: metadata.start_time_ms,
            partitions: metadata.partitions.clone(),
        })
    }

    /// This shard's transactions admitted by `filter` (Kafka's
    /// `listTransactionStates`), by transactional id.
    pub fn list(&self, filter: &ListFilter, now_ms: i64) -> Vec<ListedTxn> {
        let transactions = self.transactions.borrow();
        let mut listed: Vec<ListedTxn> = transactions
            .values()
            .map(Transaction::metadata)
            .filter(|m| filter.producer_ids.is_empty() || filter.producer_ids.contains(&m.producer_id))
            .filter(|m| filter.states.is_empty() || filter.states.contains(&m.state))
            // Kafka compares with the start time whatever the state, so an
            // id that never started a transaction (-1) always passes.
            .filter(|m| filter.duration_ms < 0 || now_ms.saturating_sub(m.start_time_ms) > filter.duration_ms)
            .map(|m| ListedTxn {
                transactional_id: m.transactional_id.clone(),
                producer_id: m.producer_id,
                state: m.state,
            })
            .collect();
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        listed
    }

    /// The markers the prepared transaction of `transactional_id` needs, if
    /// it is prepared and not being completed.
    fn marker_request(&self, transactional_id: &str, shards: usize) -> Option<MarkerRequest> {
        let transactions = self.transactions.borrow();
        let transaction = transactions.get(transactional_id)?;
        let commit = transaction.prepared()?;
        let metadata = transaction.metadata();
        let group_shards: BTreeSet<usize> =
            metadata.groups.iter().map(|group| crate::group::coordinator_shard(group, shards)).collect();
        Some(MarkerRequest {
            producer_id: metadata.producer_id,
            producer_epoch: metadata.producer_epoch,
            commit,
            coordinator_epoch: self.coordinator_epoch.get(),
            partitions: metadata.partitions.iter().cloned().collect(),
            group_shards: group_shards.into_iter().collect(),
        })
    }

    /// Until the shard stops: completes the transactions found prepared at
    /// start; every `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    /// aborts transactions past their timeout and restarts markers that
    /// could not be written; every
    /// `transaction.remove.expired.transaction.cleanup.interval.ms` removes
    /// expired ids; compacts the log once it has grown enough.
    pub async fn housekeep(shard: Rc<Shard>) {
        let config = shard.txn.config.clone();
        let abort_interval = Duration::from_millis(config.abort_timed_out_interval_ms);
        let expiry_interval = Duration::from_millis(config.remove_expired_interval_ms);
        let tick = HOUSEKEEPING_TICK.min(abort_interval).min(expiry_interval);
        TxnCoordinator::resume_completions(&shard);
        let (mut aborts_checked, mut expiry_checked) = (Instant::now(), Instant::now());
        loop {
            {
                let sleep = std::pin::pin!(glommio::timer::sleep(tick));
                let stop = std::pin::pin!(shard.stopping.wait());
                if let futures::future::Either::Right(_) = futures::future::select(sleep, stop).await {
                    return;
                }
            }
            if aborts_checked.elapsed() >= abort_interval {
                aborts_checked = Instant::now();
                TxnCoordinator::abort_timed_out(&shard).await;
                TxnCoordinator::resume_completions(&shard);
            }
            if expiry_checked.elapsed() >= expiry_interval {
                expiry_checked = Instant::now();
                TxnCoordinator::expire(&shard).await;
            }
            if let Ok(log) = shard.txn.log() {
                if log.wants_compaction() {
                    if let Err(err) = log.compact(|| shard.txn.snapshot()).await {
                        tracing::error!(shard = shard.id, error = %err, "compacting the transaction log failed");
                    }
                }
            }
        }
    }

    /// Starts a completion task for every prepared transaction without one.
    fn resume_completions(shard: &Rc<Shard>) {
        let prepared: Vec<String> = {
            let completing = shard.txn.completing.borrow();
            let transactions = shard.txn.transactions.borrow();
            transactions
                .iter()
                .filter(|(id, transaction)| transaction.prepared().is_some() && !completing.contains(*id))
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in prepared {
            spawn_completion(shard, &id);
        }
    }

    /// Aborts the transactions older than their timeout, fencing their
    /// producers (Kafka's `abortTimedOutTransactions`).
    async fn abort_timed_out(shard: &Rc<Shard>) {
        let now_ms = crate::partition::now_ms();
        let aborts: Vec<TxnMetadata> = {
            let mut transactions = shard.txn.transactions.borrow_mut();
            transactions
                .values_mut()
                .filter_map(|transaction| transaction.abort_timed_out(now_ms))
                .take(TIMED_OUT_ABORTS_PER_CHECK_MAX)
                .collect()
        };
        for metadata in aborts {
            let id = metadata.transactional_id.clone();
            tracing::info!(shard = shard.id, transactional_id = %id, producer_epoch = metadata.producer_epoch, "aborting a transaction past its timeout; its producer is fenced");
            let done = move |shard: &Rc<Shard>, outcome: Answer| match outcome {
                Ok(()) => spawn_completion(shard, &id),
                Err(code) => {
                    tracing::warn!(transactional_id = %id, ?code, "the abort of a timed-out transaction was not written; retried at the next check")
                }
            };
            let _ = TxnCoordinator::write(shard, metadata, done).await;
        }
    }

    /// Removes ids idle past `transactional.id.expiration.ms` (Kafka's
    /// `removeExpiredTransactionalIds`): one append of their tombstones,
    /// and they are forgotten once it is durable.
    async fn expire(shard: &Rc<Shard>) {
        let now_ms = crate::partition::now_ms();
        let expiration_ms = shard.txn.config.transactional_id_expiration_ms;
        let expired: Vec<String> = {
            let mut transactions = shard.txn.transactions.borrow_mut();
            transactions
                .iter_mut()
                .filter_map(|(id, transaction)| transaction.expire(now_ms, expiration_ms).then(|| id.clone()))
                .take(EXPIRED_IDS_PER_CHECK_MAX)
                .collect()
        };
        if expired.is_empty() {
            return;
        }
        let Ok(log) = shard.txn.log() else {
            expired.iter().for_each(|id| shard.txn.abandon(id));
            return;
        };
        let tombstones: Vec<TxnRecord> =
            expired.iter().map(|id| TxnRecord::Removed { transactional_id: id.clone() }).collect();
        let payload = records::encode_batch(&tombstones);
        let owner = shard.clone();
        let removed = expired.clone();
        let on_durable: OnDurable = Box::new(move |outcome| {
            let mut transactions = owner.txn.transactions.borrow_mut();
            for id in &removed {
                match &outcome {
                    Ok(()) => {
                        transactions.remove(id);
                    }
                    Err(_) => {
                        if let Some(transaction) = transactions.get_mut(id) {
                            transaction.abandon_transition();
                        }
                    }
                }
            }
            match outcome {
                Ok(()) => tracing::info!(shard = owner.id, ids = removed.len(), "expired transactional ids removed"),
                Err(reason) => {
                    tracing::error!(shard = owner.id, reason, "expired transactional ids could not be removed durably")
                }
            }
        });
        if let Err(err) = log.append(move || payload, on_durable).await {
            tracing::error!(shard = shard.id, error = %err, "writing expired transactional ids failed");
            expired.iter().for_each(|id| shard.txn.abandon(id));
        }
    }
}

/// A producer id never handed out before, from the controller's blocks.
async fn allocate_producer_id(shard: &Rc<Shard>) -> Result<i64, ErrorCode> {
    let allocated = shard
        .invoke_on(CONTROLLER_SHARD, |shard| async move { shard.controller().allocate_producer_id(&shard).await })
        .await;
    match allocated {
        Ok(Ok(producer_id)) => Ok(producer_id),
        Ok(Err(err)) => {
            tracing::error!(error = %err, "allocating a producer id failed");
            Err(ErrorCode::UnknownServerError)
        }
        Err(_) => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

/// Starts the task that writes a prepared transaction's markers and then
/// its CompleteCommit/CompleteAbort.
fn spawn_completion(shard: &Rc<Shard>, transactional_id: &str) {
    spawn_completion_notifying(shard, transactional_id, None);
}

/// [`spawn_completion`], sending on `completed` once the Complete record is
/// durable (dropped unsent when this task does not complete it).
fn spawn_completion_notifying(shard: &Rc<Shard>, transactional_id: &str, completed: Option<oneshot::Sender<()>>) {
    glommio::spawn_local(complete_transaction(shard.clone(), transactional_id.to_owned(), completed)).detach();
}

/// Removes its id from the completing set when a completion task ends.
struct Completing {
    shard: Rc<Shard>,
    transactional_id: String,
}

impl Drop for Completing {
    fn drop(&mut self) {
        self.shard.txn.completing.borrow_mut().remove(&self.transactional_id);
    }
}

/// Writes the markers of a prepared transaction, retrying up to
/// [`MARKER_ATTEMPTS_MAX`] times with a growing backoff, then writes its
/// completion. One task per id at a time; a task that gives up leaves the
/// transaction prepared for the next abort check (or start) to resume.
async fn complete_transaction(shard: Rc<Shard>, transactional_id: String, completed: Option<oneshot::Sender<()>>) {
    if !shard.txn.completing.borrow_mut().insert(transactional_id.clone()) {
        return;
    }
    let _completing = Completing { shard: shard.clone(), transactional_id: transactional_id.clone() };
    let mut backoff = MARKER_RETRY_BACKOFF_MIN;
    for attempt in 1..=MARKER_ATTEMPTS_MAX {
        let Some(request) = shard.txn.marker_request(&transactional_id, shard.count) else {
            return;
        };
        let commit = request.commit;
        match markers::write_markers(&shard, request).await {
            Ok(()) => {
                write_completion(&shard, &transactional_id, completed).await;
                return;
            }
            Err(reason) if attempt < MARKER_ATTEMPTS_MAX => {
                tracing::warn!(shard = shard.id, transactional_id = %transactional_id, commit, attempt, reason, "writing transaction markers failed; retrying");
            }
            Err(reason) => {
                tracing::error!(shard = shard.id, transactional_id = %transactional_id, commit, attempt, reason, "transaction markers could not be written; the transaction stays prepared and is retried at the next abort check");
                return;
            }
        }
        let sleep = std::pin::pin!(glommio::timer::sleep(backoff));
        let stop = std::pin::pin!(shard.stopping.wait());
        if let futures::future::Either::Right(_) = futures::future::select(sleep, stop).await {
            return;
        }
        backoff = (backoff * 2).min(MARKER_RETRY_BACKOFF_MAX);
    }
}

/// Writes CompleteCommit/CompleteAbort once the markers are durable; sends
/// on `completed` once it is durable.
async fn write_completion(shard: &Rc<Shard>, transactional_id: &str, notify: Option<oneshot::Sender<()>>) {
    let completed = shard
        .txn
        .transactions
        .borrow_mut()
        .get_mut(transactional_id)
        .and_then(|transaction| transaction.complete(crate::partition::now_ms()));
    let Some(metadata) = completed else {
        return;
    };
    let state = metadata.state;
    let id = transactional_id.to_owned();
    let done = move |shard: &Rc<Shard>, outcome: Answer| match outcome {
        Ok(()) => {
            tracing::debug!(shard = shard.id, transactional_id = %id, state = state.name(), "transaction completed");
            if let Some(notify) = notify {
                let _ = notify.send(());
            }
        }
        Err(code) => {
            tracing::warn!(shard = shard.id, transactional_id = %id, ?code, "a transaction's completion was not written; retried at the next abort check")
        }
    };
    let _ = TxnCoordinator::write(shard, metadata, done).await;
}

/// A rough size of a record once encoded, for cutting snapshots.
fn estimated_bytes(metadata: &TxnMetadata) -> usize {
    let partitions: usize = metadata.partitions.iter().map(|(topic, _)| 8 + topic.len()).sum();
    let groups: usize = metadata.groups.iter().map(|group| 8 + group.len()).sum();
    96 + metadata.transactional_id.len() + partitions + groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(id: &str, state: TxnState, producer_epoch: i16) -> TxnMetadata {
        let in_transaction = matches!(state, TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort);
        TxnMetadata {
            transactional_id: id.to_owned(),
            producer_id: 1_000,
            last_producer_id: 1_000,
            producer_epoch,
            last_producer_epoch: -1,
            timeout_ms: 60_000,
            state,
            partitions: if in_transaction { [("t".to_owned(), 0)].into() } else { BTreeSet::new() },
            groups: BTreeSet::new(),
            start_time_ms: 5,
            last_update_ms: 6,
        }
    }

    fn record(id: &str, state: TxnState, producer_epoch: i16, coordinator_epoch: i32) -> TxnRecord {
        TxnRecord::Transaction { metadata: metadata(id, state, producer_epoch), coordinator_epoch }
    }

    #[test]
    fn replay_keeps_the_latest_record_and_honours_tombstones() {
        // Proves replay keeps the last record per id, a tombstone removes
        // the id (and a later record brings it back), and the coordinator
        // epoch is the highest written.
        let mut replayed = Replayed::default();
        replayed.apply(record("a", TxnState::Empty, 0, 1));
        replayed.apply(record("a", TxnState::Ongoing, 0, 4));
        replayed.apply(record("b", TxnState::Empty, 0, 2));
        replayed.apply(TxnRecord::Removed { transactional_id: "b".into() });
        replayed.apply(record("c", TxnState::Empty, 0, 3));
        replayed.apply(TxnRecord::Removed { transactional_id: "c".into() });
        replayed.apply(record("c", TxnState::Empty, 2, 3));
        assert_eq!(replayed.coordinator_epoch, 4);
        let by_owner = replayed.by_owner(1);
        let ids: Vec<(&str, TxnState, i16)> = by_owner[&0]
            .iter()
            .map(|r| match r {
                TxnRecord::Transaction { metadata, .. } => {
                    (metadata.transactional_id.as_str(), metadata.state, metadata.producer_epoch)
                }
                _ => unreachable!("tombstones are not handed on"),
            })
            .collect();
        assert_eq!(ids, [("a", TxnState::Ongoing, 0), ("c", TxnState::Empty, 2)]);
    }

    #[test]
    fn replayed_ids_go_to_the_shard_that_coordinates_them() {
        // Proves a log's ids are split by `coordinator_shard` for the
        // current shard count, as groups are.
        let mut replayed = Replayed::default();
        let ids: Vec<String> = (0..40).map(|i| format!("txn-{i}")).collect();
        for id in &ids {
            replayed.apply(record(id, TxnState::Empty, 0, 0));
        }
        let by_owner = replayed.by_owner(3);
        assert_eq!(by_owner.values().map(Vec::len).sum::<usize>(), 40);
        for (owner, records) in &by_owner {
            assert!(records.iter().all(|r| super::super::coordinator_shard(r.transactional_id(), 3) == *owner));
        }
        assert!(by_owner.len() > 1, "40 ids spread over more than one shard");
    }

    fn run<F: std::future::Future<Output = ()> + 'static>(test: impl FnOnce() -> F + Send + 'static) {
        engine::memlock::ensure_memlock(4 << 20).unwrap();
        glommio::LocalExecutorBuilder::default().spawn(move || async move { test().await }).unwrap().join().unwrap();
    }

    fn resources() -> Rc<ShardResources> {
        ShardResources::new(engine::ShardLimits::default()).unwrap()
    }

    async fn append_durably(log: &InternalLog, payload: Vec<u8>) {
        let (done, durable) = oneshot::channel();
        log.append(move || payload, Box::new(move |outcome| done.send(outcome).unwrap())).await.unwrap();
        durable.await.unwrap().unwrap();
    }

    #[test]
    fn the_log_restores_state_across_a_reopen_and_compaction() {
        // Proves records written to the transaction log come back on
        // reopen as the latest state per id, a snapshot written by
        // compaction restores the same state, and a damaged record fails
        // the open naming the directory and offset.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TRANSACTION_STATE_DIR).join("0");
        run(move || async move {
            let (log, replayed) = open_log(&path, 1 << 20, resources()).await.unwrap();
            assert!(replayed.transactions.is_empty());
            append_durably(&log, records::encode_batch(&[record("a", TxnState::Empty, 0, 1)])).await;
            append_durably(&log, records::encode_batch(&[record("a", TxnState::PrepareCommit, 0, 1)])).await;
            append_durably(&log, records::encode_batch(&[record("b", TxnState::CompleteAbort, 3, 1)])).await;
            log.close().await.unwrap();

            let (log, replayed) = open_log(&path, 1 << 20, resources()).await.unwrap();
            assert_eq!(replayed.coordinator_epoch, 1);
            let restored = replayed.transactions.clone();
            assert_eq!(restored.len(), 2);
            assert_eq!(restored["a"], record("a", TxnState::PrepareCommit, 0, 1));
            // Compaction writes the live state as the new log start.
            let snapshot = records::encode_batch(&restored.values().cloned().collect::<Vec<_>>());
            log.compact(move || vec![snapshot]).await.unwrap();
            log.close().await.unwrap();
            let (log, replayed) = open_log(&path, 1 << 20, resources()).await.unwrap();
            assert_eq!(replayed.transactions, restored);

            append_durably(&log, b"not a flatbuffer".to_vec()).await;
            log.close().await.unwrap();
            let error = open_log(&path, 1 << 20, resources()).await.err().expect("damage fails the open");
            assert!(error.contains(&path.display().to_string()) && error.contains("record at offset"), "{error}");
        });
    }

    #[test]
    fn orphan_logs_are_those_of_shards_that_no_longer_run() {
        // Proves shard i reads the logs of shards n >= count with
        // n % count == i, in order, and nothing else.
        let dir = tempfile::tempdir().unwrap();
        for name in ["0", "1", "2", "3", "4", "5", "junk"] {
            std::fs::create_dir_all(dir.path().join(TRANSACTION_STATE_DIR).join(name)).unwrap();
        }
        let names = |shard| -> Vec<String> {
            orphan_dirs(dir.path(), shard, 2)
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(0), ["2", "4"]);
        assert_eq!(names(1), ["3", "5"]);
        assert!(orphan_dirs(&dir.path().join("absent"), 0, 2).is_empty());
    }

    #[test]
    fn list_filters_as_kafka_does() {
        // Proves ListTransactions' state, producer id and duration filters
        // (an id that never started a transaction passes any duration).
        let coordinator = TxnCoordinator::new(TxnConfig::default());
        {
            let mut transactions = coordinator.transactions.borrow_mut();
            let mut ongoing = metadata("ongoing", TxnState::Ongoing, 0);
            ongoing.start_time_ms = 10_000;
            let mut empty = metadata("empty", TxnState::Empty, 0);
            empty.start_time_ms = -1;
            empty.producer_id = 2_000;
            for m in [ongoing, empty] {
                transactions.insert(m.transactional_id.clone(), Transaction::restore(m));
            }
        }
        let ids = |filter: ListFilter, now: i64| -> Vec<String> {
            coordinator.list(&filter, now).into_iter().map(|t| t.transactional_id).collect()
        };
        assert_eq!(ids(ListFilter { duration_ms: -1, ..Default::default() }, 0), ["empty", "ongoing"]);
        let states = ListFilter { states: vec![TxnState::Ongoing], duration_ms: -1, ..Default::default() };
        assert_eq!(ids(states, 0), ["ongoing"]);
        let producers = ListFilter { producer_ids: vec![2_000], duration_ms: -1, ..Default::default() };
        assert_eq!(ids(producers, 0), ["empty"]);
        let duration = |ms| ListFilter { duration_ms: ms, ..Default::default() };
        assert_eq!(ids(duration(5_000), 15_000), ["empty"], "running exactly 5 s is not longer than 5 s");
        assert_eq!(ids(duration(4_999), 15_000), ["empty", "ongoing"]);
    }

    #[test]
    fn verify_and_describe_on_the_coordinator() {
        // Proves verify_partition and describe answer for unknown ids as
        // Kafka does (INVALID_PRODUCER_ID_MAPPING, TRANSACTIONAL_ID_NOT_FOUND)
        // and report a known transaction's partitions.
        let coordinator = TxnCoordinator::new(TxnConfig::default());
        let m = metadata("a", TxnState::Ongoing, 3);
        coordinator.transactions.borrow_mut().insert("a".into(), Transaction::restore(m));
        assert_eq!(coordinator.verify_partition("a", 1_000, 3, "t", 0), Ok(()));
        assert_eq!(coordinator.verify_partition("a", 1_000, 3, "t", 1), Err(ErrorCode::TransactionAbortable));
        assert_eq!(coordinator.verify_partition("x", 1_000, 3, "t", 0), Err(ErrorCode::InvalidProducerIdMapping));
        assert_eq!(coordinator.describe("x"), Err(ErrorCode::TransactionalIdNotFound));
        let described = coordinator.describe("a").unwrap();
        assert_eq!((described.state, described.producer_epoch), (TxnState::Ongoing, 3));
        assert_eq!(described.partitions, [("t".to_owned(), 0)].into());
    }

    #[test]
    fn snapshots_hold_every_written_id_and_only_those() {
        // Proves the compaction snapshot restates each id written at least
        // once, with the current coordinator epoch, and leaves out an id
        // whose first record is still in flight.
        let coordinator = TxnCoordinator::new(TxnConfig::default());
        coordinator.coordinator_epoch.set(9);
        {
            let mut transactions = coordinator.transactions.borrow_mut();
            transactions.insert("a".into(), Transaction::restore(metadata("a", TxnState::Ongoing, 0)));
            transactions.insert("fresh".into(), Transaction::new("fresh", 5, 1_000, 0));
        }
        let payloads = coordinator.snapshot();
        let decoded: Vec<TxnRecord> = payloads.iter().flat_map(|p| records::decode_batch(p).unwrap()).collect();
        assert_eq!(decoded, vec![record("a", TxnState::Ongoing, 0, 9)]);
    }
}
