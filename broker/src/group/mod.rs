//! Classic consumer groups: the coordinator of each group lives on the
//! shard its id hashes to ([`coordinator_shard`]); every shard computes the
//! same answer, so a request for a group arriving anywhere is forwarded
//! there with `invoke_on` and served by that shard's [`GroupCoordinator`].
//!
//! # Layout
//! - [`coordinator`]: one shard's groups, its offsets log, the timers.
//! - [`state`]: one group's state machine (join, sync, heartbeat, leave).
//! - [`offsets`]: OffsetCommit/OffsetFetch on a coordinator.
//! - [`log`]: the durable offsets log (format in docs/groups.md).
//! - [`assignor`]: KIP-848's server-side assignors, `uniform` and `range`.
//! - [`consumer`]: one consumer-protocol (KIP-848) group's state machine.

pub mod assignor;
pub mod consumer;
pub mod coordinator;
pub mod log;
pub mod offsets;
pub mod state;

pub use coordinator::GroupCoordinator;

/// Kafka's bounds on a member's session timeout
/// (`group.min.session.timeout.ms`, `group.max.session.timeout.ms`).
pub const SESSION_TIMEOUT_MS_MIN: i32 = 6_000;
pub const SESSION_TIMEOUT_MS_MAX: i32 = 1_800_000;
/// Kafka's `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
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
