//! The records of the transaction coordinators' internal log and their
//! flatbuffers encoding: one append is one `RecordBatch` flatbuffer (schema
//! in docs/transactions.md). Like Kafka's `__transaction_state`, a record
//! states the whole current value of its transactional id, and a
//! `TransactionRemoved` record is its tombstone, so replaying the log in
//! order and keeping the last value per id rebuilds the state, and a
//! snapshot is just every live value.
//! Encoding never fails; decoding checks the buffer with flatbuffers'
//! verifier and every field and invariant this code relies on, so a
//! damaged payload is an error, never a panic or a state no coordinator
//! could have had.

use std::collections::BTreeSet;

use flatbuffers::{FlatBufferBuilder, TableFinishedWIPOffset, WIPOffset};

use super::schema::{self, record_type, RecordRef};
use super::state::{TopicPartition, TxnMetadata, TxnState};

/// One change to a shard's transaction state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnRecord {
    /// A transactional id's whole state, written by the coordinator whose
    /// epoch is `coordinator_epoch` (the epoch its markers carry).
    Transaction { metadata: TxnMetadata, coordinator_epoch: i32 },
    /// The id expired (`transactional.id.expiration.ms`): forget it.
    Removed { transactional_id: String },
}

impl TxnRecord {
    pub fn transactional_id(&self) -> &str {
        match self {
            TxnRecord::Transaction { metadata, .. } => &metadata.transactional_id,
            TxnRecord::Removed { transactional_id } => transactional_id,
        }
    }
}

type Table = WIPOffset<TableFinishedWIPOffset>;

/// Encodes `records` as one `RecordBatch` flatbuffer.
pub fn encode_batch(records: &[TxnRecord]) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::with_capacity(256);
    let entries: Vec<Table> = records.iter().map(|record| encode_entry(&mut builder, record)).collect();
    let entries = builder.create_vector(&entries);
    let batch = builder.start_table();
    builder.push_slot_always(schema::RecordBatch::VT_RECORDS, entries);
    let batch = builder.end_table(batch);
    builder.finish_minimal(batch);
    builder.finished_data().to_vec()
}

/// Decodes a payload written by [`encode_batch`]; the error says what is
/// wrong (the caller adds the directory and offset).
pub fn decode_batch(payload: &[u8]) -> Result<Vec<TxnRecord>, String> {
    let batch = schema::verified_batch(payload).map_err(|e| format!("invalid flatbuffer: {e}"))?;
    let entries = batch.records().ok_or("RecordBatch without records")?;
    entries.iter().map(|entry| decode_record(entry.record())).collect()
}

fn encode_entry(builder: &mut FlatBufferBuilder, record: &TxnRecord) -> Table {
    let (kind, value) = match record {
        TxnRecord::Transaction { metadata, coordinator_epoch } => {
            (record_type::TRANSACTION, encode_transaction(builder, metadata, *coordinator_epoch))
        }
        TxnRecord::Removed { transactional_id } => {
            let id = builder.create_string(transactional_id);
            let table = builder.start_table();
            builder.push_slot_always(schema::TransactionRemoved::VT_TRANSACTIONAL_ID, id);
            (record_type::TRANSACTION_REMOVED, builder.end_table(table))
        }
    };
    let entry = builder.start_table();
    builder.push_slot::<u8>(schema::RecordEntry::VT_RECORD_TYPE, kind, 0);
    builder.push_slot_always(schema::RecordEntry::VT_RECORD, value);
    builder.end_table(entry)
}

/// The partitions grouped by topic, in order.
fn by_topic(partitions: &BTreeSet<TopicPartition>) -> Vec<(&str, Vec<i32>)> {
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in partitions {
        match topics.last_mut() {
            Some((last, indexes)) if last == topic => indexes.push(*partition),
            _ => topics.push((topic, vec![*partition])),
        }
    }
    topics
}

fn encode_transaction(builder: &mut FlatBufferBuilder, metadata: &TxnMetadata, coordinator_epoch: i32) -> Table {
    use schema::{TopicPartitions as T, Transaction as X};
    let id = builder.create_string(&metadata.transactional_id);
    let topics: Vec<Table> = by_topic(&metadata.partitions)
        .into_iter()
        .map(|(topic, partitions)| {
            let topic = builder.create_string(topic);
            let partitions = builder.create_vector(&partitions);
            let table = builder.start_table();
            builder.push_slot_always(T::VT_TOPIC, topic);
            builder.push_slot_always(T::VT_PARTITIONS, partitions);
            builder.end_table(table)
        })
        .collect();
    let topics = builder.create_vector(&topics);
    let groups: Vec<_> = metadata.groups.iter().map(|group| builder.create_string(group)).collect();
    let groups = builder.create_vector(&groups);
    let table = builder.start_table();
    builder.push_slot_always(X::VT_TRANSACTIONAL_ID, id);
    builder.push_slot_always::<i64>(X::VT_PRODUCER_ID, metadata.producer_id);
    builder.push_slot_always::<i64>(X::VT_LAST_PRODUCER_ID, metadata.last_producer_id);
    builder.push_slot_always::<i16>(X::VT_PRODUCER_EPOCH, metadata.producer_epoch);
    builder.push_slot_always::<i16>(X::VT_LAST_PRODUCER_EPOCH, metadata.last_producer_epoch);
    builder.push_slot_always::<i32>(X::VT_TIMEOUT_MS, metadata.timeout_ms);
    builder.push_slot_always::<u8>(X::VT_STATE, metadata.state.id());
    builder.push_slot_always(X::VT_PARTITIONS, topics);
    builder.push_slot_always(X::VT_GROUPS, groups);
    builder.push_slot_always::<i64>(X::VT_START_TIME_MS, metadata.start_time_ms);
    builder.push_slot_always::<i64>(X::VT_LAST_UPDATE_MS, metadata.last_update_ms);
    builder.push_slot_always::<i32>(X::VT_COORDINATOR_EPOCH, coordinator_epoch);
    builder.end_table(table)
}

fn required<T>(value: Option<T>, what: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("{what} missing"))
}

fn decode_record(record: RecordRef<'_>) -> Result<TxnRecord, String> {
    match record {
        RecordRef::Transaction(t) => decode_transaction(t),
        RecordRef::TransactionRemoved(t) => {
            let transactional_id = required(t.transactional_id(), "TransactionRemoved.transactional_id")?;
            if transactional_id.is_empty() {
                return Err("TransactionRemoved.transactional_id is empty".into());
            }
            Ok(TxnRecord::Removed { transactional_id: transactional_id.to_owned() })
        }
        RecordRef::Missing => Err("RecordEntry without a record".into()),
        RecordRef::Unknown(kind) => {
            Err(format!("record type {kind} is unknown to this broker (written by a newer version?)"))
        }
    }
}

fn decode_transaction(t: schema::Transaction<'_>) -> Result<TxnRecord, String> {
    let transactional_id = required(t.transactional_id(), "Transaction.transactional_id")?.to_owned();
    let what = |field: &str| format!("Transaction {transactional_id:?}: {field}");
    if transactional_id.is_empty() {
        return Err("Transaction.transactional_id is empty".into());
    }
    let state_id = required(t.state(), &what("state"))?;
    let state = TxnState::from_id(state_id)
        .filter(|state| state.is_durable())
        .ok_or_else(|| what(&format!("state {state_id} cannot be in the log")))?;
    let mut partitions = BTreeSet::new();
    for topic in t.partitions().into_iter().flatten() {
        let name = required(topic.topic(), &what("TopicPartitions.topic"))?;
        partitions.extend(topic.partitions().into_iter().flatten().map(|partition| (name.to_owned(), partition)));
    }
    let groups: BTreeSet<String> = t.groups().into_iter().flatten().map(str::to_owned).collect();
    let producer_id = required(t.producer_id(), &what("producer_id"))?;
    let producer_epoch = required(t.producer_epoch(), &what("producer_epoch"))?;
    if producer_id < 0 || producer_epoch < 0 {
        return Err(what(&format!("producer id {producer_id} and epoch {producer_epoch} must not be negative")));
    }
    let in_transaction = matches!(state, TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort);
    let holds_some = !partitions.is_empty() || !groups.is_empty();
    if holds_some && !in_transaction {
        return Err(what(&format!("{} with partitions or groups", state.name())));
    }
    let metadata = TxnMetadata {
        producer_id,
        last_producer_id: t.last_producer_id().unwrap_or(-1),
        producer_epoch,
        last_producer_epoch: t.last_producer_epoch().unwrap_or(-1),
        timeout_ms: required(t.timeout_ms(), &what("timeout_ms"))?,
        state,
        partitions,
        groups,
        start_time_ms: t.start_time_ms().unwrap_or(-1),
        last_update_ms: required(t.last_update_ms(), &what("last_update_ms"))?,
        transactional_id,
    };
    Ok(TxnRecord::Transaction { metadata, coordinator_epoch: t.coordinator_epoch().unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn every_record_type() -> Vec<TxnRecord> {
        let ongoing = TxnMetadata {
            transactional_id: "orders-writer".into(),
            producer_id: 4_000,
            last_producer_id: 3_999,
            producer_epoch: 7,
            last_producer_epoch: 6,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [("orders".to_owned(), 0), ("orders".to_owned(), 3), ("audit".to_owned(), 1)].into(),
            groups: ["billing".to_owned(), String::new()].into(),
            start_time_ms: 1_700_000_000_000,
            last_update_ms: 1_700_000_000_500,
        };
        let empty = TxnMetadata {
            transactional_id: "fresh".into(),
            producer_id: 0,
            last_producer_id: -1,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms: 1,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            start_time_ms: -1,
            last_update_ms: 0,
        };
        vec![
            TxnRecord::Transaction { metadata: ongoing, coordinator_epoch: 3 },
            TxnRecord::Transaction { metadata: empty, coordinator_epoch: 0 },
            TxnRecord::Removed { transactional_id: "gone".into() },
        ]
    }

    #[test]
    fn batch_round_trip() {
        // Proves every record type survives encode/decode unchanged, with
        // partitions of several topics, an empty group id and -1 defaults.
        let records = every_record_type();
        assert_eq!(decode_batch(&encode_batch(&records)).unwrap(), records);
        assert_eq!(decode_batch(&encode_batch(&[])).unwrap(), Vec::new());
    }

    #[test]
    fn every_durable_state_round_trips() {
        // Proves each state a record may hold is encoded with Kafka's id
        // and decoded back.
        for state in TxnState::ALL.into_iter().filter(|state| state.is_durable()) {
            let TxnRecord::Transaction { mut metadata, .. } = every_record_type().remove(1) else { unreachable!() };
            metadata.state = state;
            let record = TxnRecord::Transaction { metadata, coordinator_epoch: 1 };
            assert_eq!(decode_batch(&encode_batch(std::slice::from_ref(&record))).unwrap(), vec![record]);
        }
    }

    #[test]
    fn records_no_coordinator_could_write_are_refused() {
        // Proves Dead and PrepareEpochFence records, negative epochs,
        // empty ids and a finished transaction holding partitions are
        // errors naming what is wrong.
        let base = || match every_record_type().remove(0) {
            TxnRecord::Transaction { metadata, .. } => metadata,
            _ => unreachable!(),
        };
        let refused = |metadata: TxnMetadata, expected: &str| {
            let payload = encode_batch(&[TxnRecord::Transaction { metadata, coordinator_epoch: 0 }]);
            let error = decode_batch(&payload).unwrap_err();
            assert!(error.contains(expected), "{error}");
        };
        refused(TxnMetadata { state: TxnState::Dead, ..base() }, "state 6 cannot be in the log");
        refused(TxnMetadata { state: TxnState::PrepareEpochFence, ..base() }, "state 7");
        refused(TxnMetadata { producer_epoch: -1, ..base() }, "must not be negative");
        refused(TxnMetadata { transactional_id: String::new(), ..base() }, "is empty");
        refused(TxnMetadata { state: TxnState::CompleteCommit, ..base() }, "CompleteCommit with partitions");
        let error = decode_batch(&encode_batch(&[TxnRecord::Removed { transactional_id: String::new() }]));
        assert!(error.unwrap_err().contains("is empty"));
    }

    #[test]
    fn damaged_payloads_are_errors_never_panics() {
        // Proves truncated, bit-flipped and foreign payloads decode to an
        // error (or, rarely, to some records), and never panic.
        assert!(decode_batch(&[]).is_err());
        assert!(decode_batch(&[0xff; 64]).is_err());
        let payload = encode_batch(&every_record_type());
        for cut in 0..payload.len() {
            let _ = decode_batch(&payload[..cut]);
        }
        for flip in 0..payload.len() {
            for mask in [0x01, 0x5a, 0xff] {
                let mut damaged = payload.clone();
                damaged[flip] ^= mask;
                let _ = decode_batch(&damaged);
            }
        }
    }

    fn any_metadata() -> impl proptest::strategy::Strategy<Value = TxnMetadata> {
        use proptest::prelude::*;
        let partitions = proptest::collection::btree_set(("[a-c]{1,3}", 0..4i32), 0..6);
        let groups = proptest::collection::btree_set("[a-z]{0,4}", 0..3);
        (("[a-z0-9._-]{1,12}", 0..i64::MAX, -1..i64::MAX), (0..i16::MAX, -1..i16::MAX, any::<i32>()))
            .prop_flat_map(move |ids| (Just(ids), 0..6u8, partitions.clone(), groups.clone(), any::<(i64, i64)>()))
            .prop_map(
                |(((id, producer_id, last_id), (epoch, last_epoch, timeout)), state, partitions, groups, times)| {
                    let state = TxnState::from_id(state).unwrap();
                    let in_transaction =
                        matches!(state, TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort);
                    TxnMetadata {
                        transactional_id: id,
                        producer_id,
                        last_producer_id: last_id,
                        producer_epoch: epoch,
                        last_producer_epoch: last_epoch,
                        timeout_ms: timeout,
                        state,
                        partitions: if in_transaction { partitions } else { BTreeSet::new() },
                        groups: if in_transaction { groups } else { BTreeSet::new() },
                        start_time_ms: times.0,
                        last_update_ms: times.1,
                    }
                },
            )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn any_state_a_coordinator_can_hold_round_trips(metadata in any_metadata(), epoch in proptest::prelude::any::<i32>()) {
            // Proves every value a coordinator can write decodes to itself,
            // whatever its fields hold.
            let record = TxnRecord::Transaction { metadata, coordinator_epoch: epoch };
            proptest::prop_assert_eq!(decode_batch(&encode_batch(std::slice::from_ref(&record))).unwrap(), vec![record]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            // Proves the decoder turns any payload into records or an
            // error, never a panic.
            let _ = decode_batch(&bytes);
        }
    }

    #[test]
    fn a_record_of_a_group_log_is_not_a_transaction() {
        // Proves a payload of another internal log is refused by name (its
        // union types mean other tables) rather than misread.
        let group_payload = crate::group::records::encode_batch(&[crate::group::records::GroupRecord::GroupDeleted {
            group: "g".into(),
        }]);
        assert!(decode_batch(&group_payload).is_err());
    }
}
