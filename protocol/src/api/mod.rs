//! The one table of Kafka APIs Stele implements, with the versions it
//! implements. ApiVersions answers from it and the broker dispatches by it,
//! so an API is advertised exactly when its handler exists.
//!
//! To add an API: add its row to [`SUPPORTED_APIS`] in the same change as its
//! handler in `broker/src/handlers/<api>.rs`, and the same row to the table
//! in `docs/protocol.md` (a test compares the two). A row's range must lie
//! inside what the `kafka-protocol` codecs can decode (also tested).

pub mod api_versions;

pub use kafka_protocol::messages::ApiKey;
pub use kafka_protocol::protocol::VersionRange;

use crate::error::DecodeError;

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub api_key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

const fn api(api_key: ApiKey, min_version: i16, max_version: i16) -> SupportedApi {
    SupportedApi { api_key, min_version, max_version }
}

/// What the broker implements. Versions below a client's need are the
/// client's problem; versions above what we implement must never appear.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    // v3 is the first with v2 record batches; v13 addresses topics by id.
    api(ApiKey::Produce, 3, 12),
    // v4 is Kafka 4's minimum; v13+ address topics by id; v17 adds replica
    // directories that only followers send.
    api(ApiKey::Fetch, 4, 16),
    // -4/-5 (v8/v9) are answered as earliest/latest: no tiered storage.
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 13),
    // Classic groups: generation checks, simple commits; v9 member epochs
    // of consumer-protocol groups (KIP-848).
    api(ApiKey::OffsetCommit, 2, 9),
    // v7 require_stable (KIP-447); v8 asks for several groups; v9 member
    // epochs (KIP-848).
    api(ApiKey::OffsetFetch, 1, 9),
    // GROUP and TRANSACTION keys; v4 batches keys.
    api(ApiKey::FindCoordinator, 0, 4),
    // v4+ MEMBER_ID_REQUIRED; static membership treated as dynamic.
    api(ApiKey::JoinGroup, 0, 7),
    api(ApiKey::Heartbeat, 0, 4),
    // v3+ batched members.
    api(ApiKey::LeaveGroup, 0, 4),
    api(ApiKey::SyncGroup, 0, 5),
    // v6 answers GROUP_ID_NOT_FOUND for an unknown group (KIP-1043).
    api(ApiKey::DescribeGroups, 0, 6),
    // v4+ state filter, v5+ type filter.
    api(ApiKey::ListGroups, 0, 5),
    // 0-2 non-flexible, 3-4 flexible (request header v2, response header v0).
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    // Idempotent and transactional producers; v3+ KIP-360 recovery, v4+
    // PRODUCER_FENCED (v5 adds only TRANSACTION_ABORTABLE, never answered).
    api(ApiKey::InitProducerId, 0, 5),
    // v0-v3 from clients; v4+ the broker's batched form with verify_only
    // (KIP-890), v5 TRANSACTION_ABORTABLE.
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    // v4 adds only TRANSACTION_ABORTABLE, never answered.
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    // Transaction version 1; v5 (epoch bump per transaction, KIP-890 part
    // 2) is not implemented.
    api(ApiKey::EndTxn, 0, 4),
    api(ApiKey::DescribeTransactions, 0, 0),
    // v1 duration filter; v2's transactional id pattern is not implemented.
    api(ApiKey::ListTransactions, 0, 1),
    // Moves log start offsets (durable); -1 is the high watermark.
    api(ApiKey::DeleteRecords, 0, 2),
    // One leader epoch per partition: its end is the log end; others undefined.
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    // TOPIC and BROKER resources; v3+ config types and documentation.
    api(ApiKey::DescribeConfigs, 1, 4),
    // Replaces a topic's overrides; BROKER configs are static (INVALID_REQUEST).
    api(ApiKey::AlterConfigs, 0, 2),
    // One log dir (the data dir); v4+ total/usable bytes.
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    // SET/DELETE/APPEND/SUBTRACT; APPEND/SUBTRACT on list keys only.
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 2),
    // Kafka 3.7+ paged topic description.
    api(ApiKey::DescribeTopicPartitions, 0, 0),
    // KIP-848 consumer groups: server-side assignment; v1 regex
    // subscriptions and client-generated member ids.
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    // Transaction markers from the coordinator (inter-broker); v1 is Kafka
    // 4's baseline. Data partitions; __consumer_offsets is not one here.
    api(ApiKey::WriteTxnMarkers, 1, 1),
    // KIP-664: active producers and their ongoing transactions.
    api(ApiKey::DescribeProducers, 0, 0),
    // KIP-447 group metadata from v3; v4+ (KIP-890 verification with the
    // transaction coordinator, transactions v2) not implemented.
    api(ApiKey::TxnOffsetCommit, 0, 3),
];

/// The versions of `api_key` that the broker implements, if any.
pub fn supported_versions(api_key: ApiKey) -> Option<VersionRange> {
    SUPPORTED_APIS
        .iter()
        .find(|row| row.api_key == api_key)
        .map(|row| VersionRange { min: row.min_version, max: row.max_version })
}

/// Ok when the broker implements `api_key` at `version`.
pub fn check_supported(api_key: ApiKey, version: i16) -> Result<(), DecodeError> {
    let range = supported_versions(api_key).unwrap_or(VersionRange { min: 0, max: -1 });
    if version < range.min || version > range.max {
        return Err(DecodeError::UnsupportedVersion { api_key, version, min: range.min, max: range.max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_decodable_and_listed_once() {
        // Proves the table never advertises a version the codecs cannot
        // decode, and that no API appears twice.
        for (i, row) in SUPPORTED_APIS.iter().enumerate() {
            let codec = row.api_key.valid_versions();
            assert!(
                row.min_version <= row.max_version && codec.min <= row.min_version && row.max_version <= codec.max,
                "{:?} {}..={} is outside the codec's {}..={}",
                row.api_key,
                row.min_version,
                row.max_version,
                codec.min,
                codec.max
            );
            assert!(SUPPORTED_APIS[..i].iter().all(|other| other.api_key != row.api_key), "{:?} twice", row.api_key);
        }
    }

    #[test]
    fn unsupported_versions_name_the_range() {
        // Proves the error for a version outside the table carries the range.
        assert!(check_supported(ApiKey::ApiVersions, 4).is_ok());
        match check_supported(ApiKey::ApiVersions, 5) {
            Err(DecodeError::UnsupportedVersion { version: 5, min: 0, max: 4, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            check_supported(ApiKey::ShareGroupHeartbeat, 0),
            Err(DecodeError::UnsupportedVersion { min: 0, max: -1, .. })
        ));
    }
}
