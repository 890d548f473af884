//! Transaction markers: the one way the coordinator ends a transaction on
//! its partitions and groups. [`write_markers`] runs on the coordinator's
//! shard once PrepareCommit/PrepareAbort is durable; it fans the markers out
//! to each partition's owner shard and to each group coordinator shard,
//! waits until every one is durable there, and only then returns `Ok`, after
//! which the coordinator writes CompleteCommit/CompleteAbort. It is safe to
//! call again for the same transaction (after an error, or after a restart
//! found the Prepare record): partitions and groups ignore a marker of a
//! producer epoch they already ended.
//!
//! As in Kafka's `TransactionMarkerChannelManager`, a partition whose topic
//! no longer exists is skipped (its marker has nothing left to end).
//!
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use protocol::ErrorCode;
use uuid::Uuid;

use crate::partition::Partition;
use crate::shard::Shard;

/// How long one attempt at a transaction's markers may take before it
/// counts as failed (and is retried): a bound on a shard that does not
/// answer.
pub const MARKER_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The markers that end one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerRequest {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    /// The coordinator's epoch: partitions refuse markers of an older one
    /// (TRANSACTION_COORDINATOR_FENCED), as in Kafka.
    pub coordinator_epoch: i32,
    /// Topic name and partition index of every partition in the transaction.
    pub partitions: Vec<(String, i32)>,
    /// The coordinator shards of the groups added with AddOffsetsToTxn.
    pub group_shards: Vec<usize>,
}

/// One partition's marker, as its owner shard receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Writes every marker of `request` and waits until all are durable.
/// `Err` names each partition or group shard that failed; the caller
/// retries the whole request.
pub async fn write_markers(shard: &Rc<Shard>, request: MarkerRequest) -> Result<(), String> {
    let marker = PartitionMarker {
        producer_id: request.producer_id,
        producer_epoch: request.producer_epoch,
        commit: request.commit,
        coordinator_epoch: request.coordinator_epoch,
    };
    let attempt = async {
        let (partitions, groups) = futures::future::join(
            write_partition_markers(shard, marker, &request.partitions),
            complete_groups(shard, marker, &request.group_shards),
        )
        .await;
        let failures: Vec<String> = partitions.into_iter().chain(groups).collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    };
    let attempt = std::pin::pin!(attempt);
    let timeout = std::pin::pin!(glommio::timer::sleep(MARKER_ATTEMPT_TIMEOUT));
    match futures::future::select(attempt, timeout).await {
        futures::future::Either::Left((outcome, _)) => outcome,
        futures::future::Either::Right(_) => {
            Err(format!("the markers were not all durable within {MARKER_ATTEMPT_TIMEOUT:?}"))
        }
    }
}

/// The partitions of a transaction by owner shard, as (topic id, name,
/// index); partitions of topics that no longer exist are left out.
pub fn by_owner(shard: &Shard, partitions: &[(String, i32)]) -> BTreeMap<usize, Vec<(Uuid, String, i32)>> {
    let image = shard.metadata();
    let mut owners: BTreeMap<usize, Vec<(Uuid, String, i32)>> = BTreeMap::new();
    for (topic, index) in partitions {
        match image.topic(topic).and_then(|meta| meta.partition(*index).map(|p| (meta.topic_id, p.shard))) {
            Some((topic_id, placed)) => {
                owners.entry(shard.owner_of(placed)).or_default().push((topic_id, topic.clone(), *index))
            }
            None => tracing::info!(topic, partition = index, "no marker for a partition that no longer exists"),
        }
    }
    owners
}

/// Writes the partition markers on their owners, concurrently; returns the
/// failures.
async fn write_partition_markers(
    shard: &Rc<Shard>,
    marker: PartitionMarker,
    partitions: &[(String, i32)],
) -> Vec<String> {
    let writes = by_owner(shard, partitions).into_iter().map(|(owner, partitions)| async move {
        shard
            .invoke_on(owner, move |owner_shard| async move { write_on_owner(&owner_shard, marker, partitions).await })
            .await
            .unwrap_or_else(|gone| vec![format!("markers for shard {owner}: {gone}")])
    });
    futures::future::join_all(writes).await.into_iter().flatten().collect()
}

/// On a partition owner: the markers of its partitions, concurrently.
async fn write_on_owner(
    shard: &Rc<Shard>,
    marker: PartitionMarker,
    partitions: Vec<(Uuid, String, i32)>,
) -> Vec<String> {
    let writes = partitions.into_iter().map(|(topic_id, topic, index)| async move {
        // Deleted since the coordinator looked: nothing left to end.
        let partition = shard.partition(&(topic_id, index))?;
        write_partition_marker(&partition, marker).await.err().map(|reason| format!("{topic}-{index}: {reason}"))
    });
    futures::future::join_all(writes).await.into_iter().flatten().collect()
}

/// How a partition's or group's error to a marker is taken: `Ok` when
/// there is nothing left to do, `Err` to retry. Kafka's coordinator treats
/// UNKNOWN_TOPIC_OR_PARTITION of a deleted partition as done, and stops
/// sending on INVALID_PRODUCER_EPOCH and TRANSACTION_COORDINATOR_FENCED (a
/// newer epoch already ended this transaction there, so a retry can never
/// succeed); it retries the rest.
pub fn marker_error(code: ErrorCode) -> Result<(), String> {
    match code {
        ErrorCode::UnknownTopicOrPartition => Ok(()),
        ErrorCode::InvalidProducerEpoch | ErrorCode::TransactionCoordinatorFenced => {
            tracing::warn!(error = ?code, "a newer epoch already ended this transaction; its marker is not retried");
            Ok(())
        }
        code => Err(format!("{code:?} ({})", code.code())),
    }
}

/// Appends the COMMIT or ABORT marker to `partition` and waits until it
/// is durable.
async fn write_partition_marker(partition: &Rc<Partition>, marker: PartitionMarker) -> Result<(), String> {
    match partition
        .write_txn_marker_durably(marker.producer_id, marker.producer_epoch, marker.commit, marker.coordinator_epoch)
        .await
    {
        Ok(_) => Ok(()),
        Err(code) => marker_error(code),
    }
}

/// Completes the transactional offsets of the producer on each group
/// coordinator shard, concurrently; returns the failures.
async fn complete_groups(shard: &Rc<Shard>, marker: PartitionMarker, group_shards: &[usize]) -> Vec<String> {
    let completions = group_shards.iter().map(|group_shard| async move {
        let target = *group_shard;
        shard
            .invoke_on(target, move |owner| async move { complete_group_offsets(&owner, marker).await })
            .await
            .unwrap_or_else(|gone| Err(gone.to_string()))
            .err()
            .map(|reason| format!("group offsets on shard {target}: {reason}"))
    });
    futures::future::join_all(completions).await.into_iter().flatten().collect()
}

/// On a group coordinator shard, commits or drops the producer's pending
/// transactional offsets in every group there, durably.
async fn complete_group_offsets(shard: &Rc<Shard>, marker: PartitionMarker) -> Result<(), String> {
    match crate::group::txn_offsets::complete_for_producer(
        shard,
        marker.producer_id,
        marker.producer_epoch,
        marker.commit,
    )
    .await
    {
        Ok(()) => Ok(()),
        Err(code) => marker_error(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_partition_or_a_newer_epoch_ends_its_marker_and_other_errors_retry() {
        // Proves the marker error mapping: UNKNOWN_TOPIC_OR_PARTITION (the
        // partition was deleted) and a fenced epoch count as done, anything
        // else is retried with the code named.
        assert_eq!(marker_error(ErrorCode::UnknownTopicOrPartition), Ok(()));
        let retried = marker_error(ErrorCode::NotLeaderOrFollower).unwrap_err();
        assert!(retried.contains("NotLeaderOrFollower") && retried.contains("(6)"), "{retried}");
        assert!(marker_error(ErrorCode::KafkaStorageError).is_err());
        assert_eq!(marker_error(ErrorCode::InvalidProducerEpoch), Ok(()), "a newer epoch ended it");
        assert_eq!(marker_error(ErrorCode::TransactionCoordinatorFenced), Ok(()), "a newer coordinator ended it");
    }
}
