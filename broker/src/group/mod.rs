//! Consumer groups: the coordinator of each group lives on the shard its id
//! hashes to ([`coordinator_shard`]); every shard computes the same answer,
//! so a request for a group arriving anywhere is forwarded there with
//! `invoke_on` and served by that shard's [`GroupCoordinator`].
//!
//! # Layout
//! - [`coordinator`]: one shard's groups, its group log, the timers and
//!   sweeps, the hand-over of groups at start.
//! - [`classic`]: one classic group's state machine (join, sync,
//!   heartbeat, leave).
//! - [`consumer`]: one consumer-protocol (KIP-848) group's state machine;
//!   [`assignor`]: its server-side assignors, `uniform` and `range`.
//! - [`share`]: one share group's (KIP-932) membership state machine, its
//!   `simple` assignor, and the API the share fetch path uses;
//!   [`share_config`]: share groups' GROUP configs.
//! - [`admin`]: ListGroups, DescribeGroups, DeleteGroups, OffsetDelete.
//! - [`offsets`]: committed offsets; OffsetCommit/OffsetFetch on a
//!   coordinator.
//! - [`txn_offsets`]: transactional offsets (TxnOffsetCommit), pending
//!   until their transaction completes ([`txn_offsets::complete_for_producer`]).
//! - [`records`], `schema`: the group log's records and their flatbuffers
//!   encoding (format in docs/groups.md).
//! - [`log_v1`]: the format-1 offsets file of earlier versions, read once to
//!   migrate it.
//! - [`config`]: the `[groups]` settings.

pub mod admin;
pub mod assignor;
pub mod classic;
pub mod config;
pub mod consumer;
pub mod coordinator;
pub mod log_v1;
pub mod offsets;
pub mod records;
mod schema;
pub mod share;
pub mod share_config;
#[cfg(test)]
pub(crate) mod testing;
pub mod txn_offsets;

pub use coordinator::GroupCoordinator;

/// Group ids and topic names are stored with a u16 length.
pub const NAME_BYTES_MAX: usize = u16::MAX as usize;

/// The shard coordinating `group_id` when `shards` shards run. Pure: every
/// shard computes the same owner.
pub fn coordinator_shard(group_id: &str, shards: usize) -> usize {
    assert!(shards > 0, "no shards");
    crc32c::crc32c(group_id.as_bytes()) as usize % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_shard_is_stable_and_spreads_groups() {
        // Proves the owner is deterministic, in range, and that many groups
        // land on every shard.
        let mut seen = [0usize; 4];
        for i in 0..400 {
            let id = format!("group-{i}");
            let owner = coordinator_shard(&id, 4);
            assert_eq!(owner, coordinator_shard(&id, 4));
            seen[owner] += 1;
        }
        assert!(seen.iter().all(|count| *count > 50), "{seen:?}");
        assert_eq!(coordinator_shard("any", 1), 0);
    }
}
