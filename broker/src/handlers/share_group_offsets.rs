//! What DescribeShareGroupOffsets (90), AlterShareGroupOffsets (91) and
//! DeleteShareGroupOffsets (92) share: the group check on the coordinator
//! shard and the per-partition work on owner shards
//! (`SharePartition::offsets`, `alter_start_offset`, `delete`).
//!
//! Alter and delete need a group without members (NON_EMPTY_GROUP, as
//! Kafka's `GroupCoordinatorService`); an id held by a consumer or classic
//! group is GROUP_ID_NOT_FOUND; an id no group holds may be altered (the
//! share-partitions are initialized, then moved) or described (nothing).
//! The check and the change are two steps: a member joining in between is
//! not refused (Kafka serializes them in the coordinator).

use std::rc::Rc;

use protocol::ErrorCode;

use super::share_fetch::share_settings;
use crate::group::{coordinator_shard, share_config};
use crate::shard::{PartitionKey, Shard};
use crate::share::ShareSettings;

/// The group's status for an offsets admin request, from its coordinator;
/// `need_empty` for alter and delete. Returns the group's settings.
pub(super) async fn check_group(
    shard: &Rc<Shard>,
    group_id: &str,
    need_empty: bool,
) -> Result<ShareSettings, ErrorCode> {
    if group_id.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    let group_id = group_id.to_owned();
    let answer = shard
        .invoke_on(coordinator_shard(&group_id, shard.count), move |owner| async move {
            let empty = owner.groups.share_groups().get(&group_id).map(|group| group.is_empty());
            match empty {
                Some(false) if need_empty => return Err(ErrorCode::NonEmptyGroup),
                None if owner.groups.exists(&group_id) => return Err(ErrorCode::GroupIdNotFound),
                _ => {}
            }
            Ok(share_config::effective_share_config(&owner, &group_id))
        })
        .await;
    match answer {
        Ok(Ok(settings)) => Ok(share_settings(&settings)),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

/// What to do to one share-partition.
#[derive(Clone, Copy, Debug)]
pub(super) enum Op {
    /// Its start offset, or -1 when the group has no state there.
    Describe,
    Alter(i64),
    Delete,
}

/// Runs `op` on `key`'s owner shard; `Ok(start offset)` (-1 when none).
pub(super) async fn on_owner(
    shard: &Rc<Shard>,
    group_id: &str,
    key: PartitionKey,
    op: Op,
    settings: ShareSettings,
) -> Result<i64, ErrorCode> {
    let image = shard.metadata();
    let placed = image
        .topic_by_id(&key.0)
        .and_then(|meta| meta.partition(key.1).copied())
        .ok_or(ErrorCode::UnknownTopicOrPartition)?;
    let group_id = group_id.to_owned();
    let answer = shard
        .invoke_on(shard.owner_of(placed.shard), move |owner| async move {
            let partition = owner.partition(&key).ok_or(ErrorCode::NotLeaderOrFollower)?;
            match op {
                Op::Describe => Ok(match owner.share.get(&owner, &group_id, &partition).await? {
                    Some(found) => found.offsets(settings.isolation).start_offset,
                    None => -1,
                }),
                Op::Alter(offset) => {
                    let found = owner.share.get_or_open(&owner, &group_id, &partition, &settings).await?;
                    found.alter_start_offset(offset).await?;
                    Ok(found.start_offset())
                }
                Op::Delete => {
                    if let Some(found) = owner.share.get(&owner, &group_id, &partition).await? {
                        found.delete().await?;
                    }
                    Ok(-1)
                }
            }
        })
        .await;
    answer.unwrap_or(Err(ErrorCode::NotLeaderOrFollower))
}
