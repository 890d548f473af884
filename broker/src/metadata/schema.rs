//! Flatbuffers tables of the metadata log, declared with the macros of
//! `crate::flatbuf` as `flatc --rust` would generate them from the schema in
//! `docs/metadata.md`. Keep the two in step: a slot number here is the
//! field's position in the schema (`slot = 4 + 2 * field index`).
//!
//! Soundness: see `crate::flatbuf`. Every table here is reached only
//! through [`verified_batch`], which runs flatbuffers' verifier first. This
//! file is the only place in the metadata module with `unsafe`.
#![allow(unsafe_code)]

use flatbuffers::InvalidFlatbuffer;

use crate::flatbuf::{flatbuffer_table as table, flatbuffer_union, verified_root, Bytes, Str, Tables};

table!(PartitionEntry {
    partition / VT_PARTITION: i32 = 4,
    shard / VT_SHARD: u32 = 6,
    leader_epoch / VT_LEADER_EPOCH: i32 = 8,
});

table!(ConfigEntry {
    key / VT_KEY: Str<'a> = 4,
    value / VT_VALUE: Str<'a> = 6,
});

table!(ClusterCreated {
    cluster_id / VT_CLUSTER_ID: Str<'a> = 4,
});

table!(TopicCreated {
    name / VT_NAME: Str<'a> = 4,
    topic_id / VT_TOPIC_ID: Bytes<'a> = 6,
    partitions / VT_PARTITIONS: Tables<'a, PartitionEntry<'a>> = 8,
    configs / VT_CONFIGS: Tables<'a, ConfigEntry<'a>> = 10,
});

table!(PartitionsCreated {
    topic_id / VT_TOPIC_ID: Bytes<'a> = 4,
    partitions / VT_PARTITIONS: Tables<'a, PartitionEntry<'a>> = 6,
});

table!(TopicDeleted {
    topic_id / VT_TOPIC_ID: Bytes<'a> = 4,
});

table!(TopicConfigsSet {
    topic_id / VT_TOPIC_ID: Bytes<'a> = 4,
    configs / VT_CONFIGS: Tables<'a, ConfigEntry<'a>> = 6,
});

table!(BrokerConfigsSet {
    configs / VT_CONFIGS: Tables<'a, ConfigEntry<'a>> = 4,
});

table!(ProducerIdsAllocated {
    next_producer_id / VT_NEXT_PRODUCER_ID: i64 = 4,
});

table!(
    /// The root of every frame's payload.
    RecordBatch {
        records / VT_RECORDS: Tables<'a, RecordEntry<'a>> = 4,
    }
);

/// Values of the `Record` union's type field. 0 is flatbuffers' NONE.
pub(super) mod record_type {
    pub(in super::super) const CLUSTER_CREATED: u8 = 1;
    pub(in super::super) const TOPIC_CREATED: u8 = 2;
    pub(in super::super) const PARTITIONS_CREATED: u8 = 3;
    pub(in super::super) const TOPIC_DELETED: u8 = 4;
    pub(in super::super) const TOPIC_CONFIGS_SET: u8 = 5;
    pub(in super::super) const BROKER_CONFIGS_SET: u8 = 6;
    pub(in super::super) const PRODUCER_IDS_ALLOCATED: u8 = 7;
}

flatbuffer_union!(
    /// `table RecordEntry { record: Record; }`.
    RecordEntry -> RecordRef {
        record_type::CLUSTER_CREATED => ClusterCreated,
        record_type::TOPIC_CREATED => TopicCreated,
        record_type::PARTITIONS_CREATED => PartitionsCreated,
        record_type::TOPIC_DELETED => TopicDeleted,
        record_type::TOPIC_CONFIGS_SET => TopicConfigsSet,
        record_type::BROKER_CONFIGS_SET => BrokerConfigsSet,
        record_type::PRODUCER_IDS_ALLOCATED => ProducerIdsAllocated,
    }
);

/// Verifies `payload` as a `RecordBatch` and returns its root.
pub(super) fn verified_batch(payload: &[u8]) -> Result<RecordBatch<'_>, InvalidFlatbuffer> {
    verified_root::<RecordBatch>(payload)
}
