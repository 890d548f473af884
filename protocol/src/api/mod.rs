//! The one table of Kafka APIs Stele implements, with the versions it
//! implements. ApiVersions answers from it and the broker dispatches by it,
//! so an API is advertised exactly when its handler exists.
//!
//! To add an API: add its row to [`SUPPORTED_APIS`] in the same change as its
//! handler in `broker/src/handlers/<api>.rs`, and the same row to the table
//! in `docs/protocol.md` (a test compares the two). A row's range must lie
//! inside what the `kafka-protocol` codecs can decode (also tested).
//!
//! The share group APIs (KIP-932) have their own list, [`SHARE_GROUP_APIS`],
//! advertised and dispatched only when the broker's `group.share.enable`
//! is set ([`advertised_apis`], [`check_advertised`]): the switch keeps a
//! half-built feature from being advertised. ShareFetch, ShareAcknowledge
//! and the share-offset admin APIs join that list with their handlers.

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

/// The share group APIs (KIP-932), served only with `group.share.enable`.
/// v1 is Kafka 4.1+'s (v0 was 4.0's early access, removed since).
pub const SHARE_GROUP_APIS: &[SupportedApi] = &[
    // Client-generated member ids; `simple` server-side assignment.
    api(ApiKey::ShareGroupHeartbeat, 1, 1),
    api(ApiKey::ShareGroupDescribe, 1, 1),
    // Share sessions keyed by (group, member); piggybacked acknowledgements;
    // long poll on the session's share-partitions.
    api(ApiKey::ShareFetch, 1, 1),
    api(ApiKey::ShareAcknowledge, 1, 1),
    // Start offsets per share-partition; alter/delete only for an empty
    // group. v0: Kafka 4.2's DescribeShareGroupOffsets v1 (lag) is not in
    // the kafka-protocol 0.18 codecs.
    api(ApiKey::DescribeShareGroupOffsets, 0, 0),
    api(ApiKey::AlterShareGroupOffsets, 0, 0),
    api(ApiKey::DeleteShareGroupOffsets, 0, 0),
];

/// Every API when share groups are enabled: [`SUPPORTED_APIS`] then
/// [`SHARE_GROUP_APIS`].
static WITH_SHARE_GROUP_APIS: std::sync::LazyLock<Vec<SupportedApi>> =
    std::sync::LazyLock::new(|| SUPPORTED_APIS.iter().chain(SHARE_GROUP_APIS).copied().collect());

/// What ApiVersions advertises and the broker dispatches: the share group
/// APIs only when `share_groups_enabled` (`group.share.enable`).
pub fn advertised_apis(share_groups_enabled: bool) -> &'static [SupportedApi] {
    if share_groups_enabled {
        &WITH_SHARE_GROUP_APIS
    } else {
        SUPPORTED_APIS
    }
}

/// The versions of `api_key` that the broker implements, if any, with
/// share groups disabled.
pub fn supported_versions(api_key: ApiKey) -> Option<VersionRange> {
    versions_in(SUPPORTED_APIS, api_key)
}

fn versions_in(apis: &[SupportedApi], api_key: ApiKey) -> Option<VersionRange> {
    apis.iter()
        .find(|row| row.api_key == api_key)
        .map(|row| VersionRange { min: row.min_version, max: row.max_version })
}

/// Ok when the broker implements `api_key` at `version` (share groups
/// disabled).
pub fn check_supported(api_key: ApiKey, version: i16) -> Result<(), DecodeError> {
    check_advertised(api_key, version, false)
}

/// Ok when `api_key` at `version` is in [`advertised_apis`] for that
/// setting of `group.share.enable`.
pub fn check_advertised(api_key: ApiKey, version: i16, share_groups_enabled: bool) -> Result<(), DecodeError> {
    let range = versions_in(advertised_apis(share_groups_enabled), api_key).unwrap_or(VersionRange { min: 0, max: -1 });
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
        // Proves the tables never advertise a version the codecs cannot
        // decode, and that no API appears twice, in either list or across.
        let all = advertised_apis(true);
        assert_eq!(all.len(), SUPPORTED_APIS.len() + SHARE_GROUP_APIS.len());
        for (i, row) in all.iter().enumerate() {
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
            assert!(all[..i].iter().all(|other| other.api_key != row.api_key), "{:?} twice", row.api_key);
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
            check_supported(ApiKey::ShareGroupHeartbeat, 1),
            Err(DecodeError::UnsupportedVersion { min: 0, max: -1, .. })
        ));
    }

    #[test]
    fn share_group_apis_only_with_the_switch() {
        // Proves group.share.enable decides whether the share group APIs
        // are advertised and accepted, and that the rest is unchanged.
        assert_eq!(advertised_apis(false), SUPPORTED_APIS);
        assert!(check_advertised(ApiKey::ShareGroupHeartbeat, 1, true).is_ok());
        assert!(check_advertised(ApiKey::ShareGroupDescribe, 1, true).is_ok());
        assert!(check_advertised(ApiKey::ShareGroupHeartbeat, 0, true).is_err(), "v0 was 4.0's early access");
        assert!(check_advertised(ApiKey::ShareGroupHeartbeat, 1, false).is_err());
        // ShareFetch/ShareAcknowledge joined with their handlers (share-fetch branch).
        assert!(check_advertised(ApiKey::ShareFetch, 1, true).is_ok());
        assert!(check_advertised(ApiKey::ShareAcknowledge, 1, false).is_err());
        assert!(check_advertised(ApiKey::Metadata, 13, true).is_ok());
    }
}
