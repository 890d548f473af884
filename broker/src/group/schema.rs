//! Flatbuffers tables of the group coordinators' internal log
//! (`__consumer_offsets/<shard>/`), declared with the macros of
//! `crate::flatbuf` from the schema in docs/groups.md. Keep the two in
//! step: a slot number is the field's position in its table
//! (`slot = 4 + 2 * field index`).
//!
//! Soundness: see `crate::flatbuf`. Every table here is reached only
//! through [`verified_batch`], which runs flatbuffers' verifier first. This
//! file is the only place in the group module with `unsafe`.
#![allow(unsafe_code)]

use flatbuffers::{ForwardsUOffset, InvalidFlatbuffer, Vector};

use crate::flatbuf::{flatbuffer_table as table, flatbuffer_union, verified_root, Bytes, Scalars, Str, Tables};

/// A vector of strings.
pub(crate) type Strs<'a> = ForwardsUOffset<Vector<'a, ForwardsUOffset<&'a str>>>;

table!(OffsetCommit {
    group / VT_GROUP: Str<'a> = 4,
    topic / VT_TOPIC: Str<'a> = 6,
    partition / VT_PARTITION: i32 = 8,
    offset / VT_OFFSET: i64 = 10,
    leader_epoch / VT_LEADER_EPOCH: i32 = 12,
    metadata / VT_METADATA: Str<'a> = 14,
    commit_timestamp_ms / VT_COMMIT_TIMESTAMP_MS: i64 = 16,
    sequence / VT_SEQUENCE: u64 = 18,
});

table!(OffsetDeleted {
    group / VT_GROUP: Str<'a> = 4,
    topic / VT_TOPIC: Str<'a> = 6,
    partition / VT_PARTITION: i32 = 8,
});

table!(ClassicMember {
    member_id / VT_MEMBER_ID: Str<'a> = 4,
    group_instance_id / VT_GROUP_INSTANCE_ID: Str<'a> = 6,
    client_id / VT_CLIENT_ID: Str<'a> = 8,
    client_host / VT_CLIENT_HOST: Str<'a> = 10,
    session_timeout_ms / VT_SESSION_TIMEOUT_MS: i32 = 12,
    rebalance_timeout_ms / VT_REBALANCE_TIMEOUT_MS: i32 = 14,
    subscription / VT_SUBSCRIPTION: Bytes<'a> = 16,
    assignment / VT_ASSIGNMENT: Bytes<'a> = 18,
});

table!(ClassicGroup {
    group / VT_GROUP: Str<'a> = 4,
    protocol_type / VT_PROTOCOL_TYPE: Str<'a> = 6,
    protocol_name / VT_PROTOCOL_NAME: Str<'a> = 8,
    generation_id / VT_GENERATION_ID: i32 = 10,
    leader / VT_LEADER: Str<'a> = 12,
    state_timestamp_ms / VT_STATE_TIMESTAMP_MS: i64 = 14,
    members / VT_MEMBERS: Tables<'a, ClassicMember<'a>> = 16,
});

table!(TopicPartitions {
    topic_id / VT_TOPIC_ID: Bytes<'a> = 4,
    partitions / VT_PARTITIONS: Scalars<'a, i32> = 6,
});

table!(TopicMetadata {
    name / VT_NAME: Str<'a> = 4,
    topic_id / VT_TOPIC_ID: Bytes<'a> = 6,
    partitions / VT_PARTITIONS: i32 = 8,
});

table!(ConsumerMember {
    member_id / VT_MEMBER_ID: Str<'a> = 4,
    instance_id / VT_INSTANCE_ID: Str<'a> = 6,
    rack_id / VT_RACK_ID: Str<'a> = 8,
    client_id / VT_CLIENT_ID: Str<'a> = 10,
    client_host / VT_CLIENT_HOST: Str<'a> = 12,
    subscribed_topic_names / VT_SUBSCRIBED_TOPIC_NAMES: Strs<'a> = 14,
    subscribed_topic_regex / VT_SUBSCRIBED_TOPIC_REGEX: Str<'a> = 16,
    server_assignor / VT_SERVER_ASSIGNOR: Str<'a> = 18,
    rebalance_timeout_ms / VT_REBALANCE_TIMEOUT_MS: i32 = 20,
    session_timeout_ms / VT_SESSION_TIMEOUT_MS: i32 = 22,
    member_epoch / VT_MEMBER_EPOCH: i32 = 24,
    previous_member_epoch / VT_PREVIOUS_MEMBER_EPOCH: i32 = 26,
    state / VT_STATE: u8 = 28,
    assigned / VT_ASSIGNED: Tables<'a, TopicPartitions<'a>> = 30,
    pending_revocation / VT_PENDING_REVOCATION: Tables<'a, TopicPartitions<'a>> = 32,
    target / VT_TARGET: Tables<'a, TopicPartitions<'a>> = 34,
});

table!(ConsumerGroup {
    group / VT_GROUP: Str<'a> = 4,
    group_epoch / VT_GROUP_EPOCH: i32 = 6,
    assignment_epoch / VT_ASSIGNMENT_EPOCH: i32 = 8,
    subscription_metadata / VT_SUBSCRIPTION_METADATA: Tables<'a, TopicMetadata<'a>> = 10,
    members / VT_MEMBERS: Tables<'a, ConsumerMember<'a>> = 12,
});

table!(ShareMember {
    member_id / VT_MEMBER_ID: Str<'a> = 4,
    rack_id / VT_RACK_ID: Str<'a> = 6,
    client_id / VT_CLIENT_ID: Str<'a> = 8,
    client_host / VT_CLIENT_HOST: Str<'a> = 10,
    subscribed_topic_names / VT_SUBSCRIBED_TOPIC_NAMES: Strs<'a> = 12,
    member_epoch / VT_MEMBER_EPOCH: i32 = 14,
    previous_member_epoch / VT_PREVIOUS_MEMBER_EPOCH: i32 = 16,
    session_timeout_ms / VT_SESSION_TIMEOUT_MS: i32 = 18,
    assigned / VT_ASSIGNED: Tables<'a, TopicPartitions<'a>> = 20,
    target / VT_TARGET: Tables<'a, TopicPartitions<'a>> = 22,
});

table!(ShareGroup {
    group / VT_GROUP: Str<'a> = 4,
    group_epoch / VT_GROUP_EPOCH: i32 = 6,
    assignment_epoch / VT_ASSIGNMENT_EPOCH: i32 = 8,
    subscription_metadata / VT_SUBSCRIPTION_METADATA: Tables<'a, TopicMetadata<'a>> = 10,
    members / VT_MEMBERS: Tables<'a, ShareMember<'a>> = 12,
});

table!(ConfigValue {
    name / VT_NAME: Str<'a> = 4,
    value / VT_VALUE: Str<'a> = 6,
});

table!(GroupConfig {
    group / VT_GROUP: Str<'a> = 4,
    configs / VT_CONFIGS: Tables<'a, ConfigValue<'a>> = 6,
});

table!(GroupDeleted {
    group / VT_GROUP: Str<'a> = 4,
});

table!(TxnOffsetCommit {
    group / VT_GROUP: Str<'a> = 4,
    topic / VT_TOPIC: Str<'a> = 6,
    partition / VT_PARTITION: i32 = 8,
    offset / VT_OFFSET: i64 = 10,
    leader_epoch / VT_LEADER_EPOCH: i32 = 12,
    metadata / VT_METADATA: Str<'a> = 14,
    commit_timestamp_ms / VT_COMMIT_TIMESTAMP_MS: i64 = 16,
    sequence / VT_SEQUENCE: u64 = 18,
    producer_id / VT_PRODUCER_ID: i64 = 20,
    producer_epoch / VT_PRODUCER_EPOCH: i16 = 22,
});

table!(TxnCompleted {
    producer_id / VT_PRODUCER_ID: i64 = 4,
    producer_epoch / VT_PRODUCER_EPOCH: i16 = 6,
    commit / VT_COMMIT: bool = 8,
    timestamp_ms / VT_TIMESTAMP_MS: i64 = 10,
});

table!(TxnProducer {
    producer_id / VT_PRODUCER_ID: i64 = 4,
    producer_epoch / VT_PRODUCER_EPOCH: i16 = 6,
    timestamp_ms / VT_TIMESTAMP_MS: i64 = 8,
});

table!(
    /// The root of every payload.
    RecordBatch {
        records / VT_RECORDS: Tables<'a, RecordEntry<'a>> = 4,
    }
);

/// Values of the `Record` union's type field. 0 is flatbuffers' NONE.
pub(crate) mod record_type {
    pub(crate) const OFFSET_COMMIT: u8 = 1;
    pub(crate) const OFFSET_DELETED: u8 = 2;
    pub(crate) const CLASSIC_GROUP: u8 = 3;
    pub(crate) const CONSUMER_GROUP: u8 = 4;
    pub(crate) const GROUP_DELETED: u8 = 5;
    pub(crate) const TXN_OFFSET_COMMIT: u8 = 6;
    pub(crate) const TXN_COMPLETED: u8 = 7;
    pub(crate) const TXN_PRODUCER: u8 = 8;
    pub(crate) const SHARE_GROUP: u8 = 9;
    pub(crate) const GROUP_CONFIG: u8 = 10;
}

flatbuffer_union!(
    /// `table RecordEntry { record: Record; }`.
    RecordEntry -> RecordRef {
        record_type::OFFSET_COMMIT => OffsetCommit,
        record_type::OFFSET_DELETED => OffsetDeleted,
        record_type::CLASSIC_GROUP => ClassicGroup,
        record_type::CONSUMER_GROUP => ConsumerGroup,
        record_type::GROUP_DELETED => GroupDeleted,
        record_type::TXN_OFFSET_COMMIT => TxnOffsetCommit,
        record_type::TXN_COMPLETED => TxnCompleted,
        record_type::TXN_PRODUCER => TxnProducer,
        record_type::SHARE_GROUP => ShareGroup,
        record_type::GROUP_CONFIG => GroupConfig,
    }
);

/// Verifies `payload` as a `RecordBatch` and returns its root.
pub(crate) fn verified_batch(payload: &[u8]) -> Result<RecordBatch<'_>, InvalidFlatbuffer> {
    verified_root::<RecordBatch>(payload)
}
