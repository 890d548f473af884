//! Flatbuffers tables of the transaction coordinators' internal log
//! (`__transaction_state/<shard>/`), declared with the macros of
//! `crate::flatbuf` from the schema in docs/transactions.md. Keep the two
//! in step: a slot number is the field's position in its table
//! (`slot = 4 + 2 * field index`).
//!
//! Soundness: see `crate::flatbuf`. Every table here is reached only
//! through [`verified_batch`], which runs flatbuffers' verifier first. This
//! file is the only place in the txn module with `unsafe`.
#![allow(unsafe_code)]

use flatbuffers::{ForwardsUOffset, InvalidFlatbuffer, Vector};

use crate::flatbuf::{flatbuffer_table as table, flatbuffer_union, verified_root, Scalars, Str, Tables};

/// A vector of strings.
pub(crate) type Strs<'a> = ForwardsUOffset<Vector<'a, ForwardsUOffset<&'a str>>>;

table!(TopicPartitions {
    topic / VT_TOPIC: Str<'a> = 4,
    partitions / VT_PARTITIONS: Scalars<'a, i32> = 6,
});

table!(Transaction {
    transactional_id / VT_TRANSACTIONAL_ID: Str<'a> = 4,
    producer_id / VT_PRODUCER_ID: i64 = 6,
    last_producer_id / VT_LAST_PRODUCER_ID: i64 = 8,
    producer_epoch / VT_PRODUCER_EPOCH: i16 = 10,
    last_producer_epoch / VT_LAST_PRODUCER_EPOCH: i16 = 12,
    timeout_ms / VT_TIMEOUT_MS: i32 = 14,
    state / VT_STATE: u8 = 16,
    partitions / VT_PARTITIONS: Tables<'a, TopicPartitions<'a>> = 18,
    groups / VT_GROUPS: Strs<'a> = 20,
    start_time_ms / VT_START_TIME_MS: i64 = 22,
    last_update_ms / VT_LAST_UPDATE_MS: i64 = 24,
    coordinator_epoch / VT_COORDINATOR_EPOCH: i32 = 26,
});

table!(TransactionRemoved {
    transactional_id / VT_TRANSACTIONAL_ID: Str<'a> = 4,
});

table!(
    /// The root of every payload.
    RecordBatch {
        records / VT_RECORDS: Tables<'a, RecordEntry<'a>> = 4,
    }
);

/// Values of the `Record` union's type field. 0 is flatbuffers' NONE.
pub(crate) mod record_type {
    pub(crate) const TRANSACTION: u8 = 1;
    pub(crate) const TRANSACTION_REMOVED: u8 = 2;
}

flatbuffer_union!(
    /// `table RecordEntry { record: Record; }`.
    RecordEntry -> RecordRef {
        record_type::TRANSACTION => Transaction,
        record_type::TRANSACTION_REMOVED => TransactionRemoved,
    }
);

/// Verifies `payload` as a `RecordBatch` and returns its root.
pub(crate) fn verified_batch(payload: &[u8]) -> Result<RecordBatch<'_>, InvalidFlatbuffer> {
    verified_root::<RecordBatch>(payload)
}
