//! Flatbuffers tables of the share-state logs (`<partition dir>/share-state/`),
//! declared with the macros of `crate::flatbuf` from the schema in
//! docs/share-partitions.md. Keep the two in step: a slot number is the
//! field's position in its table (`slot = 4 + 2 * field index`).
//!
//! Soundness: see `crate::flatbuf`. Every table here is reached only
//! through [`verified_batch`], which runs flatbuffers' verifier first. This
//! file is the only place in the share module with `unsafe`.
#![allow(unsafe_code)]

use flatbuffers::InvalidFlatbuffer;

use crate::flatbuf::{flatbuffer_table as table, flatbuffer_union, verified_root, Str, Tables};

table!(StateRange {
    first_offset / VT_FIRST_OFFSET: i64 = 4,
    last_offset / VT_LAST_OFFSET: i64 = 6,
    state / VT_STATE: u8 = 8,
    delivery_count / VT_DELIVERY_COUNT: u16 = 10,
});

table!(ShareSnapshot {
    group / VT_GROUP: Str<'a> = 4,
    state_epoch / VT_STATE_EPOCH: i32 = 6,
    start_offset / VT_START_OFFSET: i64 = 8,
    ranges / VT_RANGES: Tables<'a, StateRange<'a>> = 10,
});

table!(ShareDelta {
    group / VT_GROUP: Str<'a> = 4,
    state_epoch / VT_STATE_EPOCH: i32 = 6,
    start_offset / VT_START_OFFSET: i64 = 8,
    ranges / VT_RANGES: Tables<'a, StateRange<'a>> = 10,
});

table!(ShareDeleted {
    group / VT_GROUP: Str<'a> = 4,
});

table!(
    /// The root of every payload.
    RecordBatch {
        version / VT_VERSION: u8 = 4,
        records / VT_RECORDS: Tables<'a, RecordEntry<'a>> = 6,
    }
);

/// Values of the `Record` union's type field. 0 is flatbuffers' NONE.
pub(crate) mod record_type {
    pub(crate) const SHARE_SNAPSHOT: u8 = 1;
    pub(crate) const SHARE_DELTA: u8 = 2;
    pub(crate) const SHARE_DELETED: u8 = 3;
}

flatbuffer_union!(
    /// `table RecordEntry { record: Record; }`.
    RecordEntry -> RecordRef {
        record_type::SHARE_SNAPSHOT => ShareSnapshot,
        record_type::SHARE_DELTA => ShareDelta,
        record_type::SHARE_DELETED => ShareDeleted,
    }
);

/// Verifies `payload` as a `RecordBatch` and returns its root.
pub(crate) fn verified_batch(payload: &[u8]) -> Result<RecordBatch<'_>, InvalidFlatbuffer> {
    verified_root::<RecordBatch>(payload)
}
