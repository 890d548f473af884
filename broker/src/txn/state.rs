//! One transactional id's state machine, as Kafka's `TransactionMetadata`
//! runs it (transaction version 1: the epoch is bumped by InitProducerId
//! and by fencing, never by EndTxn):
//!
//! ```text
//!  (new) ──InitProducerId──▶ Empty ──AddPartitionsToTxn / AddOffsetsToTxn──▶ Ongoing ◀─┐ more partitions
//!                              ▲                                             │    │  └─┘ or groups
//!                              │                               EndTxn commit │    │ EndTxn abort, timeout,
//!                              │                                             ▼    ▼ InitProducerId (fence)
//!                              │                                  PrepareCommit  PrepareAbort
//!                              │                                   markers │        │ markers
//!                              │                                           ▼        ▼
//!                              └───────── InitProducerId ────────── CompleteCommit  CompleteAbort
//!                                                                 (AddPartitionsToTxn / AddOffsetsToTxn: Ongoing)
//! ```
//! Empty, CompleteCommit and CompleteAbort idle for
//! `transactional.id.expiration.ms` become Dead and are removed.
//! PrepareEpochFence is Kafka's name for "fencing in progress": it is only
//! ever a pending state and never reaches the log, here as there.
//!
//! Every change is two steps, as in Kafka: a `prepare` method checks the
//! request, sets the *pending* state and returns the [`TxnMetadata`] to
//! write; once that record is durable the coordinator calls
//! [`Transaction::complete_transition`] (or, if the write failed,
//! [`Transaction::abandon_transition`]). While a change is pending every
//! other change is refused with CONCURRENT_TRANSACTIONS, so at most one
//! record of an id is in flight and the log's order is the change order.
//!
//! Everything here is synchronous and pure (time comes in as `now_ms`);
//! the coordinator (`super::coordinator`) owns the log and the tasks.
//! Invariants:
//! - `metadata` is what the log says (or, for an id whose first record is
//!   in flight, what Kafka's coordinator keeps before its first write:
//!   epoch -1, Empty);
//! - `partitions` and `groups` are empty unless the state is Ongoing,
//!   PrepareCommit or PrepareAbort;
//! - `start_time_ms` is -1 until the first transaction starts;
//! - the producer epoch never exceeds `i16::MAX`, and an epoch handed to a
//!   client is at most `i16::MAX - 1`, so a fence always has room.

use std::collections::BTreeSet;

use protocol::ErrorCode;

/// Kafka's "no producer id".
pub const NO_PRODUCER_ID: i64 = -1;
/// Kafka's "no producer epoch".
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// A partition in a transaction: topic name and partition index.
pub type TopicPartition = (String, i32);

/// Kafka's `TransactionMetadata.isEpochExhausted`: the last epoch is kept
/// for fencing, so a producer at `i16::MAX - 1` gets a new producer id.
pub fn is_epoch_exhausted(producer_epoch: i16) -> bool {
    producer_epoch >= i16::MAX - 1
}

/// Kafka's transaction states, with Kafka's ids (the log's encoding) and
/// names (what DescribeTransactions and ListTransactions report).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// Kafka's id of the state (`TransactionState.id`).
    pub fn id(self) -> u8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: u8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|state| state.id() == id)
    }

    /// Kafka's name of the state, as the admin APIs spell it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state of a name, exactly as Kafka spells it (ListTransactions'
    /// state filters are case-sensitive there).
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|state| state.name() == name)
    }

    /// Whether a record may state this: Dead and PrepareEpochFence exist
    /// only as pending states.
    pub fn is_durable(self) -> bool {
        !matches!(self, TxnState::Dead | TxnState::PrepareEpochFence)
    }

    /// The states this one may follow (Kafka's `validPreviousStates`).
    fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[Ongoing, PrepareEpochFence],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// Whether an idle id in this state may expire (Kafka's
    /// `isExpirationAllowed`).
    pub fn is_expiration_allowed(self) -> bool {
        matches!(self, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
    }

    /// The transaction's outcome while its markers are being written.
    pub fn prepared_outcome(self) -> Option<bool> {
        match self {
            TxnState::PrepareCommit => Some(true),
            TxnState::PrepareAbort => Some(false),
            _ => None,
        }
    }
}

/// What the log states of one transactional id (Kafka's
/// `TransactionLogValue`, plus the groups of AddOffsetsToTxn, which Kafka
/// keeps as `__consumer_offsets` partitions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the latest change (Kafka's
    /// `prevProducerId`): lets a producer retry InitProducerId after a
    /// rotation whose answer it lost (KIP-360).
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the latest bump requested by this producer, -1
    /// when another producer took over (KIP-360 retries).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    /// Consumer groups added with AddOffsetsToTxn.
    pub groups: BTreeSet<String>,
    /// When the current (or last) transaction started, ms since the
    /// epoch; -1 before the first.
    pub start_time_ms: i64,
    pub last_update_ms: i64,
}

/// What InitProducerId must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum InitPlan {
    /// Write this (state Empty, a new epoch or producer id) and answer
    /// with its producer id and epoch once durable.
    Write(TxnMetadata),
    /// An ongoing transaction was fenced: write this PrepareAbort (with the
    /// bumped epoch), complete the abort, and answer
    /// CONCURRENT_TRANSACTIONS so the producer retries (and gets the epoch
    /// bumped once more).
    Fence(TxnMetadata),
}

#[derive(Debug, PartialEq, Eq)]
pub enum InitError {
    Code(ErrorCode),
    /// The epoch is exhausted: call again with a new producer id.
    NeedProducerId,
}

impl From<ErrorCode> for InitError {
    fn from(code: ErrorCode) -> Self {
        InitError::Code(code)
    }
}

/// A change waiting for its record to be durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    state: TxnState,
    /// The change fences the producer (its epoch was bumped in memory).
    fence: bool,
}

/// One transactional id on its coordinator.
#[derive(Clone, Debug)]
pub struct Transaction {
    metadata: TxnMetadata,
    pending: Option<Pending>,
    /// A fence's record could not be written: its bumped epoch was never
    /// given to anyone, so the next fence does not bump again (Kafka's
    /// `hasFailedEpochFence`).
    failed_epoch_fence: bool,
}

impl Transaction {
    /// An id seen for the first time: Kafka's fresh metadata, Empty at
    /// epoch -1, which InitProducerId then moves to epoch 0.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Transaction {
        Transaction::restore(TxnMetadata {
            transactional_id: transactional_id.to_owned(),
            producer_id,
            last_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            start_time_ms: -1,
            last_update_ms: now_ms,
        })
    }

    /// An id as its latest record states it.
    pub fn restore(metadata: TxnMetadata) -> Transaction {
        Transaction { metadata, pending: None, failed_epoch_fence: false }
    }

    pub fn metadata(&self) -> &TxnMetadata {
        &self.metadata
    }

    /// The state a change in flight moves to.
    pub fn pending_state(&self) -> Option<TxnState> {
        self.pending.map(|pending| pending.state)
    }

    /// Whether any record of this id was ever durable (a fresh id's first
    /// record may still be in flight).
    pub fn was_written(&self) -> bool {
        self.metadata.producer_epoch != NO_PRODUCER_EPOCH
    }

    /// Kafka's `prepareTransitionTo`: checks the transition, marks it
    /// pending, and returns the record to write (whose last producer id is
    /// always the producer id before it).
    fn transit(&mut self, mut target: TxnMetadata, fence: bool) -> TxnMetadata {
        assert!(
            self.pending.is_none(),
            "{}: transition to {:?} while {:?} is pending",
            self.id(),
            target.state,
            self.pending
        );
        assert!(
            target.state.valid_previous().contains(&self.metadata.state),
            "{}: {:?} cannot follow {:?}",
            self.id(),
            target.state,
            self.metadata.state
        );
        assert!(target.producer_id >= 0, "{}: producer id {}", self.id(), target.producer_id);
        assert!(
            target.state == TxnState::Dead || target.producer_epoch >= 0,
            "{}: producer epoch {}",
            self.id(),
            target.producer_epoch
        );
        target.last_producer_id = self.metadata.producer_id;
        self.pending = Some(Pending { state: target.state, fence });
        target
    }

    /// The record of a pending change is durable: it becomes the state.
    pub fn complete_transition(&mut self, target: TxnMetadata) {
        let pending = self.pending.take();
        assert_eq!(pending.map(|p| p.state), Some(target.state), "{}: completing an unprepared transition", self.id());
        assert_eq!(target.transactional_id, self.metadata.transactional_id);
        self.metadata = target;
    }

    /// The record of a pending change could not be written: the change is
    /// dropped. A failed fence keeps its bumped epoch in memory (the fenced
    /// producer stays fenced) and is not bumped again.
    pub fn abandon_transition(&mut self) {
        if self.pending.take().is_some_and(|pending| pending.fence) {
            self.failed_epoch_fence = true;
        }
    }

    fn id(&self) -> &str {
        &self.metadata.transactional_id
    }

    /// Kafka's `isValidProducerId` of InitProducerId with an expected
    /// producer id and epoch (KIP-360): this id has no epoch yet, the
    /// producer id is the current one, or it is the previous one and its
    /// epoch was exhausted (a retry after a rotation whose answer was lost).
    fn is_expected_producer(&self, producer_id: i64, producer_epoch: i16) -> bool {
        self.metadata.producer_epoch == NO_PRODUCER_EPOCH
            || producer_id == self.metadata.producer_id
            || (producer_id == self.metadata.last_producer_id && is_epoch_exhausted(producer_epoch))
    }

    /// InitProducerId for this id (Kafka's `prepareInitProducerIdTransit`).
    /// `expected` is the producer id and epoch the client sent (v3+, both
    /// not -1); `new_producer_id` is needed only when the epoch is
    /// exhausted ([`InitError::NeedProducerId`] asks for it).
    pub fn init_producer_id(
        &mut self,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        new_producer_id: Option<i64>,
        now_ms: i64,
    ) -> Result<InitPlan, InitError> {
        if self.pending.is_some() {
            return Err(ErrorCode::ConcurrentTransactions.into());
        }
        if let Some((producer_id, producer_epoch)) = expected {
            if !self.is_expected_producer(producer_id, producer_epoch) {
                return Err(ErrorCode::ProducerFenced.into());
            }
        }
        match self.metadata.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(ErrorCode::ConcurrentTransactions.into()),
            TxnState::Ongoing => Ok(InitPlan::Fence(self.fence(now_ms))),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let epoch = self.metadata.producer_epoch;
                if is_epoch_exhausted(epoch) && expected.is_none_or(|(_, expected_epoch)| expected_epoch == epoch) {
                    let producer_id = new_producer_id.ok_or(InitError::NeedProducerId)?;
                    return Ok(InitPlan::Write(self.rotate(producer_id, timeout_ms, expected.is_some(), now_ms)));
                }
                let plan = self.increment_epoch(timeout_ms, expected.map(|(_, epoch)| epoch), now_ms)?;
                Ok(InitPlan::Write(plan))
            }
            state @ (TxnState::Dead | TxnState::PrepareEpochFence) => {
                unreachable!("{}: {state:?} is never a current state", self.id())
            }
        }
    }

    /// Kafka's `prepareIncrementProducerEpoch`.
    fn increment_epoch(
        &mut self,
        timeout_ms: i32,
        expected_epoch: Option<i16>,
        now_ms: i64,
    ) -> Result<TxnMetadata, ErrorCode> {
        let current = self.metadata.producer_epoch;
        let (producer_epoch, last_producer_epoch) = match expected_epoch {
            // A new producer: bump, and forget the last epoch (it belongs
            // to the producer being fenced).
            None => (current + 1, NO_PRODUCER_EPOCH),
            // The producer continues after an error (KIP-360).
            Some(expected) if current == NO_PRODUCER_EPOCH || expected == current => (current + 1, current),
            // A retry of a bump whose answer was lost: the same answer.
            Some(expected) if expected == self.metadata.last_producer_epoch => {
                (current, self.metadata.last_producer_epoch)
            }
            Some(_) => return Err(ErrorCode::ProducerFenced),
        };
        assert!(producer_epoch < i16::MAX, "{}: epoch {current} bumped past the fencing epoch", self.id());
        let target = TxnMetadata {
            producer_epoch,
            last_producer_epoch,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            start_time_ms: -1,
            last_update_ms: now_ms,
            ..self.metadata.clone()
        };
        Ok(self.transit(target, false))
    }

    /// Kafka's `prepareProducerIdRotation`: a new producer id at epoch 0;
    /// the old epoch is remembered when the producer asked (so its retry
    /// gets the same answer).
    fn rotate(&mut self, producer_id: i64, timeout_ms: i32, record_last_epoch: bool, now_ms: i64) -> TxnMetadata {
        let target = TxnMetadata {
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: if record_last_epoch { self.metadata.producer_epoch } else { NO_PRODUCER_EPOCH },
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            start_time_ms: -1,
            last_update_ms: now_ms,
            ..self.metadata.clone()
        };
        self.transit(target, false)
    }

    /// Fences the producer of an ongoing transaction and aborts it (Kafka's
    /// `prepareFenceProducerEpoch` followed by the abort of the fencing
    /// EndTxn): the epoch is bumped at once in memory, so the fenced
    /// producer is refused from now on, and the PrepareAbort written with
    /// it. After a failed fence the epoch is not bumped again.
    fn fence(&mut self, now_ms: i64) -> TxnMetadata {
        let current = self.metadata.producer_epoch;
        let bumped = if self.failed_epoch_fence || current == i16::MAX { current } else { current + 1 };
        self.metadata.producer_epoch = bumped;
        self.metadata.last_producer_epoch = NO_PRODUCER_EPOCH;
        let target = TxnMetadata { state: TxnState::PrepareAbort, last_update_ms: now_ms, ..self.metadata.clone() };
        self.transit(target, true)
    }

    /// The common checks of AddPartitionsToTxn, AddOffsetsToTxn and EndTxn
    /// from a client: its producer id and exact epoch, nothing pending.
    fn check_producer(&self, producer_id: i64, producer_epoch: i16) -> Result<(), ErrorCode> {
        if producer_id != self.metadata.producer_id {
            Err(ErrorCode::InvalidProducerIdMapping)
        } else if producer_epoch != self.metadata.producer_epoch {
            Err(ErrorCode::ProducerFenced)
        } else if self.pending.is_some() {
            Err(ErrorCode::ConcurrentTransactions)
        } else {
            Ok(())
        }
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn (Kafka's
    /// `prepareAddPartitions`): the transaction becomes (or stays) Ongoing
    /// with these partitions and groups added. `Ok(None)`: all of them are
    /// in the ongoing transaction already, nothing to write.
    pub fn add(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
        groups: &[String],
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, ErrorCode> {
        self.check_producer(producer_id, producer_epoch)?;
        let state = self.metadata.state;
        if state.prepared_outcome().is_some() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        let known = partitions.iter().all(|p| self.metadata.partitions.contains(p))
            && groups.iter().all(|g| self.metadata.groups.contains(g));
        if state == TxnState::Ongoing && known {
            return Ok(None);
        }
        let mut target = TxnMetadata { state: TxnState::Ongoing, last_update_ms: now_ms, ..self.metadata.clone() };
        target.partitions.extend(partitions.iter().cloned());
        target.groups.extend(groups.iter().cloned());
        if matches!(state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort) {
            target.start_time_ms = now_ms;
        }
        Ok(Some(self.transit(target, false)))
    }

    /// EndTxn from the client (transaction version 1): an ongoing
    /// transaction moves to PrepareCommit or PrepareAbort. `Ok(None)`: a
    /// retry of an EndTxn that completed with the same result. A retry
    /// while the markers are written gets CONCURRENT_TRANSACTIONS; any
    /// other state, or the other result, INVALID_TXN_STATE.
    pub fn end(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, ErrorCode> {
        self.check_producer(producer_id, producer_epoch)?;
        match (self.metadata.state, commit) {
            (TxnState::Ongoing, _) => {
                let state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                let target = TxnMetadata { state, last_update_ms: now_ms, ..self.metadata.clone() };
                Ok(Some(self.transit(target, false)))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Err(ErrorCode::ConcurrentTransactions),
            _ => Err(ErrorCode::InvalidTxnState),
        }
    }

    /// The transaction has been open longer than its timeout (Kafka's
    /// `timedOutTransactions`).
    pub fn is_timed_out(&self, now_ms: i64) -> bool {
        self.pending.is_none()
            && self.metadata.state == TxnState::Ongoing
            && self.metadata.start_time_ms.saturating_add(i64::from(self.metadata.timeout_ms)) < now_ms
    }

    /// Aborts a timed-out transaction, fencing its producer (Kafka's
    /// `abortTimedOutTransactions`); `None` if it is not timed out (any
    /// more).
    pub fn abort_timed_out(&mut self, now_ms: i64) -> Option<TxnMetadata> {
        self.is_timed_out(now_ms).then(|| self.fence(now_ms))
    }

    /// Whether this transaction's markers are to be written now: the
    /// outcome (commit or abort) of a PrepareCommit or PrepareAbort that is
    /// durable and not being completed.
    pub fn prepared(&self) -> Option<bool> {
        match self.pending {
            None => self.metadata.state.prepared_outcome(),
            Some(_) => None,
        }
    }

    /// The markers are written: PrepareCommit → CompleteCommit,
    /// PrepareAbort → CompleteAbort, the partitions and groups cleared
    /// (Kafka's `prepareComplete`). `None` unless [`Transaction::prepared`].
    pub fn complete(&mut self, now_ms: i64) -> Option<TxnMetadata> {
        let state = match self.prepared()? {
            true => TxnState::CompleteCommit,
            false => TxnState::CompleteAbort,
        };
        // The Prepare record is durable, so whatever epoch a failed fence
        // left behind has been written now.
        self.failed_epoch_fence = false;
        let target = TxnMetadata {
            state,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            last_update_ms: now_ms,
            ..self.metadata.clone()
        };
        Some(self.transit(target, false))
    }

    /// Marks the id Dead (pending) when it has been idle in Empty,
    /// CompleteCommit or CompleteAbort for `expiration_ms`; the coordinator
    /// then writes its tombstone and removes it.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> bool {
        let idle = self.metadata.last_update_ms <= now_ms.saturating_sub(expiration_ms);
        if self.pending.is_some() || !self.metadata.state.is_expiration_allowed() || !idle || !self.was_written() {
            return false;
        }
        let target = TxnMetadata {
            state: TxnState::Dead,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            ..self.metadata.clone()
        };
        self.transit(target, false);
        true
    }

    /// KIP-890's check that a partition was added to the producer's
    /// ongoing transaction (AddPartitionsToTxn v4 `verify_only`, and
    /// Produce before a transactional batch that starts a transaction on
    /// its partition). Not added: TRANSACTION_ABORTABLE, as Kafka answers.
    pub fn verify_partition(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        partition: &TopicPartition,
    ) -> Result<(), ErrorCode> {
        if producer_id != self.metadata.producer_id {
            Err(ErrorCode::InvalidProducerIdMapping)
        } else if producer_epoch != self.metadata.producer_epoch {
            Err(ErrorCode::ProducerFenced)
        } else if self.metadata.state.prepared_outcome().is_some() {
            Err(ErrorCode::ConcurrentTransactions)
        } else if self.metadata.partitions.contains(partition) {
            Ok(())
        } else {
            Err(ErrorCode::TransactionAbortable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        (topic.to_owned(), partition)
    }

    /// Runs InitProducerId to durability and returns (producer id, epoch).
    fn init(txn: &mut Transaction, expected: Option<(i64, i16)>) -> Result<(i64, i16), InitError> {
        match txn.init_producer_id(60_000, expected, Some(9_999), NOW)? {
            InitPlan::Write(target) => {
                let answer = (target.producer_id, target.producer_epoch);
                txn.complete_transition(target);
                Ok(answer)
            }
            InitPlan::Fence(target) => panic!("unexpected fence to {target:?}"),
        }
    }

    /// A fresh id after its first InitProducerId: producer 7, epoch 0.
    fn initialized() -> Transaction {
        let mut txn = Transaction::new("t", 7, 60_000, NOW);
        assert_eq!(init(&mut txn, None), Ok((7, 0)));
        txn
    }

    fn durable(txn: &mut Transaction, target: Option<TxnMetadata>) {
        txn.complete_transition(target.expect("a record to write"));
    }

    /// An id with an ongoing transaction on `orders-0`.
    fn ongoing() -> Transaction {
        let mut txn = initialized();
        let target = txn.add(7, 0, &[tp("orders", 0)], &[], NOW + 1).unwrap();
        durable(&mut txn, target);
        txn
    }

    #[test]
    fn state_ids_and_names_are_kafkas() {
        // Proves every state round-trips through Kafka's id and name, and
        // only Dead and PrepareEpochFence are kept out of the log.
        for (id, state) in TxnState::ALL.into_iter().enumerate() {
            assert_eq!(state.id() as usize, id);
            assert_eq!(TxnState::from_id(id as u8), Some(state));
            assert_eq!(TxnState::from_name(state.name()), Some(state));
        }
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(TxnState::from_name("ongoing"), None, "names are case-sensitive, as in Kafka");
        let durable: Vec<_> = TxnState::ALL.into_iter().filter(|s| !s.is_durable()).collect();
        assert_eq!(durable, [TxnState::Dead, TxnState::PrepareEpochFence]);
    }

    #[test]
    fn a_new_id_starts_at_epoch_zero_and_each_init_bumps_it() {
        // Proves a fresh id gets epoch 0, a new producer (no expected
        // epoch) bumps it and forgets the last epoch, and the record says
        // which producer id came before.
        let mut txn = initialized();
        assert_eq!(txn.metadata().state, TxnState::Empty);
        assert_eq!(txn.metadata().last_producer_epoch, NO_PRODUCER_EPOCH);
        assert_eq!(init(&mut txn, None), Ok((7, 1)));
        assert_eq!(txn.metadata().last_producer_epoch, NO_PRODUCER_EPOCH);
        assert_eq!(txn.metadata().last_producer_id, 7);
        assert_eq!(txn.metadata().timeout_ms, 60_000);
        assert_eq!(txn.metadata().start_time_ms, -1);
    }

    #[test]
    fn kip_360_recovery_bumps_retries_and_fences() {
        // Proves InitProducerId with the current epoch bumps it and
        // remembers the old one; a retry with that old epoch gets the same
        // answer without a bump; any other epoch or producer id is fenced.
        let mut txn = initialized();
        assert_eq!(init(&mut txn, Some((7, 0))), Ok((7, 1)));
        assert_eq!(txn.metadata().last_producer_epoch, 0);
        assert_eq!(init(&mut txn, Some((7, 0))), Ok((7, 1)), "a retry whose answer was lost");
        assert_eq!(init(&mut txn, Some((7, 5))), Err(InitError::Code(ErrorCode::ProducerFenced)));
        assert_eq!(init(&mut txn, Some((8, 1))), Err(InitError::Code(ErrorCode::ProducerFenced)));
        // Another producer (no expected epoch) takes over: the previous
        // producer's epoch is no longer a valid retry.
        assert_eq!(init(&mut txn, None), Ok((7, 2)));
        assert_eq!(init(&mut txn, Some((7, 1))), Err(InitError::Code(ErrorCode::ProducerFenced)));
    }

    #[test]
    fn an_expected_producer_of_a_fresh_id_is_accepted() {
        // Proves a producer recovering with the id and epoch of an expired
        // transactional id gets the fresh producer id at epoch 0 (Kafka
        // accepts any expected producer while the epoch is -1).
        let mut txn = Transaction::new("t", 12, 60_000, NOW);
        assert_eq!(init(&mut txn, Some((3, 17))), Ok((12, 0)));
    }

    #[test]
    fn an_exhausted_epoch_rotates_the_producer_id() {
        // Proves at epoch i16::MAX - 1 a new producer id at epoch 0 is
        // given (asked for first), the producer's retry with the old id and
        // exhausted epoch gets the same answer, and the old id is kept as
        // the last producer id.
        let mut txn = initialized();
        txn.metadata.producer_epoch = i16::MAX - 1;
        assert_eq!(txn.init_producer_id(60_000, Some((7, i16::MAX - 1)), None, NOW), Err(InitError::NeedProducerId));
        assert_eq!(txn.pending_state(), None, "asking for an id changes nothing");
        assert_eq!(init(&mut txn, Some((7, i16::MAX - 1))), Ok((9_999, 0)));
        assert_eq!(txn.metadata().last_producer_id, 7);
        assert_eq!(txn.metadata().last_producer_epoch, i16::MAX - 1);
        assert_eq!(init(&mut txn, Some((7, i16::MAX - 1))), Ok((9_999, 0)), "a retry of the rotation");
        // Without an expected epoch the last epoch is not recorded.
        let mut txn = initialized();
        txn.metadata.producer_epoch = i16::MAX - 1;
        assert_eq!(init(&mut txn, None), Ok((9_999, 0)));
        assert_eq!(txn.metadata().last_producer_epoch, NO_PRODUCER_EPOCH);
    }

    #[test]
    fn init_on_an_ongoing_transaction_fences_and_aborts_it() {
        // Proves InitProducerId on an ongoing transaction bumps the epoch
        // at once (the old producer is fenced even before the write),
        // writes PrepareAbort with the bumped epoch and the transaction's
        // partitions, and that the producer's retry after the abort
        // completed bumps the epoch once more.
        let mut txn = ongoing();
        let InitPlan::Fence(target) = txn.init_producer_id(60_000, None, None, NOW + 5).unwrap() else {
            panic!("expected a fence");
        };
        assert_eq!((target.state, target.producer_epoch), (TxnState::PrepareAbort, 1));
        assert_eq!(target.partitions, [tp("orders", 0)].into());
        assert_eq!(target.last_update_ms, NOW + 5);
        assert_eq!(txn.add(7, 0, &[tp("orders", 1)], &[], NOW), Err(ErrorCode::ProducerFenced));
        assert_eq!(txn.end(7, 1, true, NOW), Err(ErrorCode::ConcurrentTransactions));
        txn.complete_transition(target);
        assert_eq!(txn.prepared(), Some(false));
        assert_eq!(
            txn.init_producer_id(60_000, None, None, NOW),
            Err(InitError::Code(ErrorCode::ConcurrentTransactions)),
            "while the markers are written"
        );
        let completed = txn.complete(NOW + 6).unwrap();
        txn.complete_transition(completed);
        assert_eq!(txn.metadata().state, TxnState::CompleteAbort);
        assert_eq!(init(&mut txn, None), Ok((7, 2)));
    }

    #[test]
    fn a_failed_fence_keeps_its_epoch_and_does_not_bump_again() {
        // Proves that when a fence's record cannot be written the fenced
        // producer stays fenced (the bumped epoch stays in memory) and the
        // next fence writes that same epoch instead of skipping one.
        let mut txn = ongoing();
        let InitPlan::Fence(target) = txn.init_producer_id(60_000, None, None, NOW).unwrap() else { panic!() };
        assert_eq!(target.producer_epoch, 1);
        txn.abandon_transition();
        assert_eq!(txn.metadata().state, TxnState::Ongoing);
        assert_eq!(txn.add(7, 0, &[], &[], NOW), Err(ErrorCode::ProducerFenced));
        let InitPlan::Fence(again) = txn.init_producer_id(60_000, None, None, NOW).unwrap() else { panic!() };
        assert_eq!(again.producer_epoch, 1);
        txn.complete_transition(again);
        let completed = txn.complete(NOW).unwrap();
        txn.complete_transition(completed);
        assert_eq!(init(&mut txn, None), Ok((7, 2)));
    }

    #[test]
    fn pending_changes_refuse_everything_else() {
        // Proves that while a record is in flight every other change gets
        // CONCURRENT_TRANSACTIONS, and an abandoned change leaves the
        // state as it was.
        let mut txn = initialized();
        let target = txn.add(7, 0, &[tp("a", 0)], &[], NOW).unwrap().unwrap();
        assert_eq!(txn.pending_state(), Some(TxnState::Ongoing));
        assert_eq!(txn.add(7, 0, &[tp("a", 1)], &[], NOW), Err(ErrorCode::ConcurrentTransactions));
        assert_eq!(txn.end(7, 0, true, NOW), Err(ErrorCode::ConcurrentTransactions));
        assert_eq!(
            txn.init_producer_id(60_000, None, None, NOW),
            Err(InitError::Code(ErrorCode::ConcurrentTransactions))
        );
        assert!(!txn.expire(NOW * 2, 1));
        txn.abandon_transition();
        assert_eq!(txn.metadata().state, TxnState::Empty);
        assert!(txn.metadata().partitions.is_empty());
        assert_ne!(txn.metadata(), &target);
    }

    #[test]
    fn adding_partitions_and_groups_starts_and_extends_a_transaction() {
        // Proves the first add starts the transaction (start time, Ongoing),
        // later adds extend it and keep the start time, adding what is
        // already there writes nothing, and groups are kept apart from
        // partitions.
        let mut txn = initialized();
        let first = txn.add(7, 0, &[tp("a", 0), tp("a", 1)], &[], NOW + 10).unwrap().unwrap();
        assert_eq!((first.state, first.start_time_ms, first.last_update_ms), (TxnState::Ongoing, NOW + 10, NOW + 10));
        txn.complete_transition(first);
        assert_eq!(txn.add(7, 0, &[tp("a", 1)], &[], NOW + 20), Ok(None), "already in the transaction");
        let second = txn.add(7, 0, &[tp("b", 0)], &["g".to_owned()], NOW + 30).unwrap().unwrap();
        assert_eq!(second.start_time_ms, NOW + 10);
        assert_eq!(second.partitions, [tp("a", 0), tp("a", 1), tp("b", 0)].into());
        assert_eq!(second.groups, ["g".to_owned()].into());
        txn.complete_transition(second);
        assert_eq!(txn.add(7, 0, &[], &["g".to_owned()], NOW + 40), Ok(None));
    }

    #[test]
    fn adds_check_the_producer_id_and_exact_epoch() {
        // Proves AddPartitionsToTxn/AddOffsetsToTxn name a wrong producer id
        // INVALID_PRODUCER_ID_MAPPING, any other epoch PRODUCER_FENCED, and
        // are refused with CONCURRENT_TRANSACTIONS while markers are written.
        let mut txn = initialized();
        assert_eq!(txn.add(8, 0, &[tp("a", 0)], &[], NOW), Err(ErrorCode::InvalidProducerIdMapping));
        assert_eq!(txn.add(7, 1, &[tp("a", 0)], &[], NOW), Err(ErrorCode::ProducerFenced));
        assert_eq!(txn.add(7, -1, &[tp("a", 0)], &[], NOW), Err(ErrorCode::ProducerFenced));
        let mut txn = ongoing();
        let prepared = txn.end(7, 0, true, NOW).unwrap();
        durable(&mut txn, prepared);
        assert_eq!(txn.add(7, 0, &[tp("a", 0)], &[], NOW), Err(ErrorCode::ConcurrentTransactions));
    }

    #[test]
    fn end_txn_prepares_then_completes_and_clears_the_partitions() {
        // Proves EndTxn moves Ongoing to PrepareCommit / PrepareAbort with
        // the partitions kept (the markers need them), and completing moves
        // on to CompleteCommit / CompleteAbort with them cleared and the
        // start time kept.
        for commit in [true, false] {
            let mut txn = ongoing();
            let prepared = txn.end(7, 0, commit, NOW + 2).unwrap().unwrap();
            let expected = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
            assert_eq!((prepared.state, prepared.partitions.len()), (expected, 1));
            txn.complete_transition(prepared);
            assert_eq!(txn.prepared(), Some(commit));
            let completed = txn.complete(NOW + 3).unwrap();
            assert_eq!(txn.prepared(), None, "being completed");
            assert!(txn.complete(NOW + 3).is_none());
            txn.complete_transition(completed);
            let done = if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
            assert_eq!(txn.metadata().state, done);
            assert!(txn.metadata().partitions.is_empty() && txn.metadata().groups.is_empty());
            assert_eq!(txn.metadata().start_time_ms, NOW + 1);
            assert_eq!(txn.metadata().last_update_ms, NOW + 3);
            assert_eq!(txn.metadata().producer_epoch, 0, "transaction version 1: EndTxn bumps nothing");
        }
    }

    #[test]
    fn end_txn_retries_and_wrong_results() {
        // Proves a retried EndTxn with the same result succeeds once
        // complete and gets CONCURRENT_TRANSACTIONS while markers are
        // written; the other result, or EndTxn on an Empty id, is
        // INVALID_TXN_STATE; wrong producers are refused as for adds.
        let mut txn = initialized();
        assert_eq!(txn.end(7, 0, true, NOW), Err(ErrorCode::InvalidTxnState));
        assert_eq!(txn.end(7, 0, false, NOW), Err(ErrorCode::InvalidTxnState));
        let mut txn = ongoing();
        assert_eq!(txn.end(8, 0, true, NOW), Err(ErrorCode::InvalidProducerIdMapping));
        assert_eq!(txn.end(7, 3, true, NOW), Err(ErrorCode::ProducerFenced));
        let prepared = txn.end(7, 0, true, NOW).unwrap().unwrap();
        txn.complete_transition(prepared);
        assert_eq!(txn.end(7, 0, true, NOW), Err(ErrorCode::ConcurrentTransactions));
        assert_eq!(txn.end(7, 0, false, NOW), Err(ErrorCode::InvalidTxnState));
        let completed = txn.complete(NOW).unwrap();
        txn.complete_transition(completed);
        assert_eq!(txn.end(7, 0, true, NOW), Ok(None));
        assert_eq!(txn.end(7, 0, false, NOW), Err(ErrorCode::InvalidTxnState));
        // The aborted side mirrors it.
        let mut txn = ongoing();
        let prepared = txn.end(7, 0, false, NOW).unwrap().unwrap();
        txn.complete_transition(prepared);
        assert_eq!(txn.end(7, 0, false, NOW), Err(ErrorCode::ConcurrentTransactions));
        assert_eq!(txn.end(7, 0, true, NOW), Err(ErrorCode::InvalidTxnState));
        let completed = txn.complete(NOW).unwrap();
        txn.complete_transition(completed);
        assert_eq!(txn.end(7, 0, false, NOW), Ok(None));
        assert_eq!(txn.end(7, 0, true, NOW), Err(ErrorCode::InvalidTxnState));
    }

    #[test]
    fn a_completed_transaction_can_be_followed_by_another() {
        // Proves AddPartitionsToTxn after CompleteCommit starts a new
        // transaction with a new start time, and init during Prepare* is
        // CONCURRENT_TRANSACTIONS.
        let mut txn = ongoing();
        let prepared = txn.end(7, 0, true, NOW).unwrap().unwrap();
        txn.complete_transition(prepared);
        assert_eq!(
            txn.init_producer_id(60_000, None, None, NOW),
            Err(InitError::Code(ErrorCode::ConcurrentTransactions))
        );
        let completed = txn.complete(NOW).unwrap();
        txn.complete_transition(completed);
        let next = txn.add(7, 0, &[tp("b", 3)], &[], NOW + 50).unwrap().unwrap();
        assert_eq!((next.state, next.start_time_ms), (TxnState::Ongoing, NOW + 50));
        assert_eq!(next.partitions, [tp("b", 3)].into());
    }

    #[test]
    fn timed_out_transactions_are_aborted_with_a_fence() {
        // Proves only an Ongoing transaction older than its timeout times
        // out, and that aborting it bumps the epoch (the zombie producer is
        // fenced) and writes PrepareAbort.
        let mut txn = ongoing();
        let start = txn.metadata().start_time_ms;
        assert!(!txn.is_timed_out(start + 60_000), "exactly at the timeout is not past it");
        assert!(txn.abort_timed_out(start + 60_000).is_none());
        assert!(txn.is_timed_out(start + 60_001));
        let target = txn.abort_timed_out(start + 60_001).unwrap();
        assert_eq!((target.state, target.producer_epoch), (TxnState::PrepareAbort, 1));
        assert!(!txn.is_timed_out(start + 120_000), "pending");
        assert_eq!(txn.add(7, 0, &[tp("orders", 1)], &[], NOW), Err(ErrorCode::ProducerFenced));
        assert_eq!(txn.end(7, 0, true, NOW), Err(ErrorCode::ProducerFenced));
        txn.complete_transition(target);
        let mut empty = initialized();
        assert!(!empty.is_timed_out(i64::MAX));
        assert!(empty.abort_timed_out(i64::MAX).is_none());
    }

    #[test]
    fn idle_ids_expire_only_when_finished() {
        // Proves Empty/CompleteCommit/CompleteAbort ids idle for the
        // expiration time become Dead (pending); Ongoing and Prepare* ids
        // and ids never written never expire; an abandoned expiry leaves
        // the id as it was.
        let mut txn = initialized();
        assert!(!txn.expire(NOW + 999, 1_000));
        assert!(txn.expire(NOW + 1_000, 1_000));
        assert_eq!(txn.pending_state(), Some(TxnState::Dead));
        txn.abandon_transition();
        assert_eq!(txn.metadata().state, TxnState::Empty);
        let mut txn = ongoing();
        assert!(!txn.expire(i64::MAX, 1));
        let prepared = txn.end(7, 0, true, NOW).unwrap().unwrap();
        txn.complete_transition(prepared);
        assert!(!txn.expire(i64::MAX, 1));
        let completed = txn.complete(NOW).unwrap();
        txn.complete_transition(completed);
        assert!(txn.expire(i64::MAX, 1));
        let mut fresh = Transaction::new("t", 1, 1, NOW);
        assert!(!fresh.expire(i64::MAX, 1), "an id whose first record is in flight");
    }

    #[test]
    fn verify_partition_answers_as_kafkas_verify_only() {
        // Proves the KIP-890 check: the added partition passes; a partition
        // not added is TRANSACTION_ABORTABLE; wrong producer id or epoch and
        // a transaction being completed are refused like adds.
        let mut txn = ongoing();
        assert_eq!(txn.verify_partition(7, 0, &tp("orders", 0)), Ok(()));
        assert_eq!(txn.verify_partition(7, 0, &tp("orders", 1)), Err(ErrorCode::TransactionAbortable));
        assert_eq!(txn.verify_partition(8, 0, &tp("orders", 0)), Err(ErrorCode::InvalidProducerIdMapping));
        assert_eq!(txn.verify_partition(7, 1, &tp("orders", 0)), Err(ErrorCode::ProducerFenced));
        let prepared = txn.end(7, 0, true, NOW).unwrap().unwrap();
        txn.complete_transition(prepared);
        assert_eq!(txn.verify_partition(7, 0, &tp("orders", 0)), Err(ErrorCode::ConcurrentTransactions));
        let completed = txn.complete(NOW).unwrap();
        txn.complete_transition(completed);
        assert_eq!(txn.verify_partition(7, 0, &tp("orders", 0)), Err(ErrorCode::TransactionAbortable));
    }

    #[test]
    #[should_panic(expected = "cannot follow")]
    fn an_invalid_transition_is_our_bug() {
        // Proves the transition table is enforced: completing from Ongoing
        // (no PrepareCommit/PrepareAbort) is refused loudly.
        let mut txn = ongoing();
        let target = TxnMetadata { state: TxnState::CompleteCommit, ..txn.metadata().clone() };
        txn.transit(target, false);
    }
}
