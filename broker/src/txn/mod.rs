//! Transactions (KIP-98): the coordinator of each transactional id lives on
//! the shard its id hashes to ([`coordinator_shard`], the same hash as
//! groups); every shard computes the same answer, so a request for an id
//! arriving anywhere is forwarded there with `invoke_on` and served by that
//! shard's [`TxnCoordinator`]. Kafka's behaviour is the reference
//! throughout (`TransactionCoordinator`, `TransactionMetadata`,
//! `TransactionStateManager`); docs/transactions.md, section "Coordinator".
//!
//! # Layout
//! - [`coordinator`]: one shard's transactional ids, its transaction log,
//!   the tasks that complete transactions, timeouts, expiry, the hand-over
//!   of ids at start.
//! - [`state`]: one transactional id's state machine (pure, synchronous).
//! - [`markers`]: the one function that writes a transaction's markers to
//!   its partitions and groups (the integration points with partitions and
//!   transactional offsets).
//! - [`records`], `schema`: the transaction log's records and their
//!   flatbuffers encoding.
//! - [`config`]: the `[transactions]` settings.

pub mod config;
pub mod coordinator;
pub mod markers;
pub mod records;
mod schema;
pub mod state;

use std::rc::Rc;

pub use coordinator::TxnCoordinator;
use protocol::ErrorCode;

use crate::shard::Shard;

/// The shard coordinating `transactional_id` when `shards` shards run:
/// the groups' hash, so both spread alike. Pure: every shard computes the
/// same owner.
pub fn coordinator_shard(transactional_id: &str, shards: usize) -> usize {
    crate::group::coordinator_shard(transactional_id, shards)
}

/// KIP-890 verification from any shard: whether `topic`-`partition` was
/// added to the ongoing transaction of `transactional_id` by this producer
/// id and epoch, asked of the id's coordinator shard
/// ([`TxnCoordinator::verify_partition`] has the errors). An empty id is
/// INVALID_REQUEST; a coordinator shard that stopped,
/// COORDINATOR_NOT_AVAILABLE.
pub async fn verify_partition(
    shard: &Rc<Shard>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    topic: &str,
    partition: i32,
) -> Result<(), ErrorCode> {
    if transactional_id.is_empty() {
        return Err(ErrorCode::InvalidRequest);
    }
    let (id, topic) = (transactional_id.to_owned(), topic.to_owned());
    let target = coordinator_shard(&id, shard.count);
    shard
        .invoke_on(target, move |owner| async move {
            owner.txn.verify_partition(&id, producer_id, producer_epoch, &topic, partition)
        })
        .await
        .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
}
