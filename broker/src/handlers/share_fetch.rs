//! ShareFetch (key 78, KIP-932, v1): a share member acquires records of
//! the partitions in its share session, acknowledging what it piggybacks.
//! Served only with `group.share.enable`.
//!
//! One request runs in three places:
//! 1. the group's coordinator shard: the member is checked
//!    (`group::share::share_member_assignment`), the share session stepped
//!    ([`super::share_session`]) and the group's effective settings read,
//!    in one synchronous step;
//! 2. each owner shard of the session's partitions: piggybacked
//!    acknowledgements are applied first (all or nothing per partition,
//!    durable before the answer), then records are acquired
//!    (`SharePartition::acquire`, durable before the answer);
//! 3. back here: when nothing was acquired, the request waits (long poll)
//!    on `SharePartition::wait_for_acquirable` of the session's partitions
//!    until MaxWaitMs passes or shutdown starts, then acquires again.
//!
//! MinBytes: once any record is acquired the request answers (acquired
//! records must be handed out, and a second acquisition could repeat a
//! batch's bytes), so MinBytes only matters as "0 answers at once".
//! MaxBytes is split evenly over the partitions (Kafka's uniform
//! strategy); MaxRecords (soft: whole batches) over the owner shards.
//! BatchSize is accepted and not used: acquired ranges follow the stored
//! batches.

use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{join_all, select, select_all};
use protocol::messages::share_fetch_response::{
    AcquiredRecords, LeaderIdAndEpoch, NodeEndpoint, PartitionData, ShareFetchableTopicResponse,
};
use protocol::messages::{BrokerId, ShareFetchRequest, ShareFetchResponse};
use protocol::ErrorCode;
use uuid::Uuid;

use super::share_session::FetchContext;
use super::str_bytes;
use crate::group::coordinator_shard;
use crate::group::share::{share_member_assignment, GoneReason, ShareMemberGone};
use crate::group::share_config::{self, ShareGroupSettings};
use crate::partition::{now_ms, IsolationLevel};
use crate::shard::{PartitionKey, Shard};
use crate::share::{AckBatch, AutoOffsetReset, ShareFetchPartition, ShareSettings};

/// The longest a ShareFetch may wait, whatever the client asks.
const MAX_WAIT_MS_MAX: i32 = 30_000;

/// The share settings of a group's partitions from its effective config.
pub(super) fn share_settings(group: &ShareGroupSettings) -> ShareSettings {
    ShareSettings {
        record_lock_duration_ms: i64::from(group.record_lock_duration_ms.max(1)),
        delivery_count_limit: group.delivery_count_limit.clamp(1, i32::from(u16::MAX)) as u16,
        partition_max_record_locks: group.partition_max_record_locks.max(1) as usize,
        auto_offset_reset: match group.auto_offset_reset {
            share_config::AutoOffsetReset::Latest => AutoOffsetReset::Latest,
            share_config::AutoOffsetReset::Earliest => AutoOffsetReset::Earliest,
            share_config::AutoOffsetReset::ByDuration(duration) => {
                AutoOffsetReset::ByDuration(duration.as_millis().min(i64::MAX as u128) as i64)
            }
        },
        isolation: match group.isolation_level {
            share_config::IsolationLevel::ReadUncommitted => IsolationLevel::ReadUncommitted,
            share_config::IsolationLevel::ReadCommitted => IsolationLevel::ReadCommitted,
        },
    }
}

/// A request's acknowledgement batches as the share-partition takes them.
pub(super) fn ack_batches(batches: impl Iterator<Item = (i64, i64, Vec<i8>)>) -> Vec<AckBatch> {
    batches
        .map(|(first_offset, last_offset, types)| AckBatch {
            first_offset,
            last_offset,
            // A negative type is no type at all: u8 255 fails validation.
            types: types.into_iter().map(|t| t as u8).collect(),
        })
        .collect()
}

/// What one partition of a ShareFetch or ShareAcknowledge asks of its owner.
#[derive(Clone, Debug)]
pub(super) struct Work {
    pub key: PartitionKey,
    pub acks: Vec<AckBatch>,
    pub acquire: bool,
}

/// What the owner answers for one partition.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub key: PartitionKey,
    /// The acknowledgement's refusal, when it had batches.
    pub ack_error: Option<(ErrorCode, String)>,
    pub fetched: ShareFetchPartition,
}

/// Runs `works` on their owner shards: acknowledgements first, then
/// acquisition within `max_bytes` per partition and `max_records` per
/// shard. Partitions unknown to the metadata answer errors without a trip.
pub(super) async fn run_on_owners(
    shard: &Rc<Shard>,
    group_id: &str,
    member_id: &str,
    works: &[Work],
    settings: ShareSettings,
    max_bytes: usize,
    max_records: usize,
) -> Vec<Outcome> {
    let image = shard.metadata();
    let mut per_owner: BTreeMap<usize, Vec<Work>> = BTreeMap::new();
    let mut outcomes = Vec::new();
    for work in works {
        let placed = image.topic_by_id(&work.key.0).map(|meta| meta.partition(work.key.1).copied());
        match placed {
            Some(Some(placed)) => per_owner.entry(shard.owner_of(placed.shard)).or_default().push(work.clone()),
            unknown => {
                let error =
                    if unknown.is_none() { ErrorCode::UnknownTopicId } else { ErrorCode::UnknownTopicOrPartition };
                let ack_error = (!work.acks.is_empty()).then(|| (error, format!("{error:?}")));
                outcomes.push(Outcome { key: work.key, ack_error, fetched: ShareFetchPartition::error(error) });
            }
        }
    }
    let owners = per_owner.len().max(1);
    let records_per_owner = max_records.div_ceil(owners).max(1);
    let calls = per_owner.into_iter().map(|(owner, works)| {
        let (group_id, member_id) = (group_id.to_owned(), member_id.to_owned());
        shard.invoke_on(owner, move |owner| async move {
            let mut remaining = records_per_owner;
            let mut outcomes = Vec::with_capacity(works.len());
            for work in works {
                let outcome = run_one(&owner, &group_id, &member_id, &work, &settings, max_bytes, remaining).await;
                let acquired: i64 = outcome.fetched.acquired.iter().map(|r| r.last_offset - r.first_offset + 1).sum();
                remaining = remaining.saturating_sub(acquired.max(0) as usize);
                outcomes.push(outcome);
            }
            outcomes
        })
    });
    for (answer, keys) in join_all(calls).await.into_iter().zip(works_by_owner_keys(shard, works)) {
        match answer {
            Ok(answered) => outcomes.extend(answered),
            Err(_) => outcomes.extend(keys.into_iter().map(|key| Outcome {
                key,
                ack_error: None,
                fetched: ShareFetchPartition::error(ErrorCode::NotLeaderOrFollower),
            })),
        }
    }
    outcomes
}

/// The keys of `works` grouped as [`run_on_owners`] sends them (for a
/// shard that is gone).
fn works_by_owner_keys(shard: &Shard, works: &[Work]) -> Vec<Vec<PartitionKey>> {
    let image = shard.metadata();
    let mut per_owner: BTreeMap<usize, Vec<PartitionKey>> = BTreeMap::new();
    for work in works {
        if let Some(placed) = image.topic_by_id(&work.key.0).and_then(|meta| meta.partition(work.key.1)) {
            per_owner.entry(shard.owner_of(placed.shard)).or_default().push(work.key);
        }
    }
    per_owner.into_values().collect()
}

async fn run_one(
    owner: &Rc<Shard>,
    group_id: &str,
    member_id: &str,
    work: &Work,
    settings: &ShareSettings,
    max_bytes: usize,
    max_records: usize,
) -> Outcome {
    let mut outcome = Outcome { key: work.key, ..Outcome::default() };
    let Some(partition) = owner.partition(&work.key) else {
        outcome.fetched = ShareFetchPartition::error(ErrorCode::NotLeaderOrFollower);
        if !work.acks.is_empty() {
            outcome.ack_error = Some((ErrorCode::NotLeaderOrFollower, "partition not on this broker".into()));
        }
        return outcome;
    };
    let share_partition = match owner.share.get_or_open(owner, group_id, &partition, settings).await {
        Ok(found) => found,
        Err(error) => {
            outcome.fetched = ShareFetchPartition::error(error);
            if !work.acks.is_empty() {
                outcome.ack_error = Some((error, format!("{error:?}")));
            }
            return outcome;
        }
    };
    // The acknowledgement is applied and placed first, the acquisition
    // after it; the answer waits for both, which share one fdatasync.
    let mut acknowledged = None;
    if !work.acks.is_empty() {
        match share_partition.acknowledge_placed(member_id, &work.acks, settings, now_ms()).await {
            Ok(durable) => acknowledged = Some(durable),
            Err(refused) => outcome.ack_error = Some((refused.error, refused.message)),
        }
    }
    if work.acquire {
        outcome.fetched = share_partition.acquire(member_id, max_bytes, max_records, settings, now_ms()).await;
    } else {
        outcome.fetched = ShareFetchPartition::default();
    }
    if let Some(Err(refused)) = match acknowledged {
        Some(durable) => Some(durable.await),
        None => None,
    } {
        outcome.ack_error = Some((refused.error, refused.message));
    }
    outcome
}

/// Waits until one of `keys`' share-partitions may have acquirable
/// records, `timeout` passes, or shutdown starts.
async fn wait_for_any(
    shard: &Rc<Shard>,
    group_id: &str,
    keys: &[PartitionKey],
    settings: ShareSettings,
    timeout: Duration,
) {
    let image = shard.metadata();
    let mut per_owner: BTreeMap<usize, Vec<PartitionKey>> = BTreeMap::new();
    for key in keys {
        if let Some(placed) = image.topic_by_id(&key.0).and_then(|meta| meta.partition(key.1)) {
            per_owner.entry(shard.owner_of(placed.shard)).or_default().push(*key);
        }
    }
    let calls: Vec<_> = per_owner
        .into_iter()
        .map(|(owner, keys)| {
            let group_id = group_id.to_owned();
            Box::pin(shard.invoke_on(owner, move |owner| async move {
                let mut share_partitions = Vec::new();
                for key in &keys {
                    let Some(partition) = owner.partition(key) else { continue };
                    if let Ok(Some(found)) = owner.share.get(&owner, &group_id, &partition).await {
                        share_partitions.push(found);
                    }
                }
                if share_partitions.is_empty() {
                    return;
                }
                let waits: Vec<_> =
                    share_partitions.iter().map(|found| Box::pin(found.wait_for_acquirable(&settings))).collect();
                let timer = Box::pin(glommio::timer::sleep(timeout));
                let stop = Box::pin(owner.stopping.wait());
                let _ = select(select_all(waits), select(timer, stop)).await;
            }))
        })
        .collect();
    let timer = Box::pin(glommio::timer::sleep(timeout));
    let stop = Box::pin(shard.stopping.wait());
    if calls.is_empty() {
        let _ = select(timer, stop).await;
        return;
    }
    let _ = select(select_all(calls), select(timer, stop)).await;
}

/// The coordinator's step for a ShareFetch: the member, its session, the
/// group's settings.
fn coordinator_step(
    owner: &Shard,
    group_id: &str,
    member_id: &str,
    epoch: i32,
    named: &[PartitionKey],
    forgotten: &[PartitionKey],
    acknowledges: bool,
) -> Result<(FetchContext, ShareGroupSettings), ErrorCode> {
    // A closing member may already be gone from the group (it left first):
    // its session then is gone too, which the session step says.
    if epoch != super::share_session::FINAL_EPOCH {
        check_member(owner, group_id, member_id)?;
    }
    let context =
        owner.share_sessions.borrow_mut().fetch(group_id, member_id, epoch, named, forgotten, acknowledges)?;
    Ok((context, share_config::effective_share_config(owner, group_id)))
}

/// The member must be in the share group: UNKNOWN_MEMBER_ID otherwise
/// (also when no share group has the id: to the client, its member is
/// unknown, and it rejoins through ShareGroupHeartbeat).
pub(super) fn check_member(owner: &Shard, group_id: &str, member_id: &str) -> Result<(), ErrorCode> {
    match share_member_assignment(owner, group_id, member_id) {
        Ok(_) => Ok(()),
        Err(ErrorCode::GroupIdNotFound) => Err(ErrorCode::UnknownMemberId),
        Err(error) => Err(error),
    }
}

/// Checks the group and member ids of a share request (before any state).
pub(super) fn check_ids(group_id: &str, member_id: &str) -> Result<(), ErrorCode> {
    if group_id.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    if member_id.is_empty() {
        return Err(ErrorCode::UnknownMemberId);
    }
    Ok(())
}

pub async fn handle(shard: &Rc<Shard>, request: ShareFetchRequest) -> ShareFetchResponse {
    let group_id = request.group_id.as_ref().map(|id| id.0.to_string()).unwrap_or_default();
    let member_id = request.member_id.as_ref().map(|id| id.to_string()).unwrap_or_default();
    if let Err(error) = check_ids(&group_id, &member_id) {
        return refused(error);
    }
    let epoch = request.share_session_epoch;
    let mut named: Vec<PartitionKey> = Vec::new();
    let mut acks: BTreeMap<PartitionKey, Vec<AckBatch>> = BTreeMap::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let key = (topic.topic_id, partition.partition_index);
            named.push(key);
            if !partition.acknowledgement_batches.is_empty() {
                let batches = partition
                    .acknowledgement_batches
                    .iter()
                    .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()));
                acks.entry(key).or_default().extend(ack_batches(batches));
            }
        }
    }
    let forgotten: Vec<PartitionKey> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|topic| topic.partitions.iter().map(move |p| (topic.topic_id, *p)))
        .collect();
    let step = {
        let (group_id, member_id, named, acknowledges) =
            (group_id.clone(), member_id.clone(), named.clone(), !acks.is_empty());
        let target = coordinator_shard(&group_id, shard.count);
        shard
            .invoke_on(target, move |owner| async move {
                coordinator_step(&owner, &group_id, &member_id, epoch, &named, &forgotten, acknowledges)
            })
            .await
    };
    let (context, group_settings) = match step {
        Ok(Ok(step)) => step,
        Ok(Err(error)) => return refused(error),
        Err(_) => return refused(ErrorCode::CoordinatorNotAvailable),
    };
    let settings = share_settings(&group_settings);
    let partitions_count = context.partitions.len().max(1);
    let max_bytes = (request.max_bytes.max(1) as usize / partitions_count).max(1);
    let max_records =
        if request.max_records > 0 { request.max_records as usize } else { settings.partition_max_record_locks };
    // First round: every session partition acquires, and every partition
    // with acknowledgements (in the session or not) applies them.
    let mut works: Vec<Work> = context
        .partitions
        .iter()
        .map(|key| Work { key: *key, acks: acks.remove(key).unwrap_or_default(), acquire: true })
        .collect();
    works.extend(acks.into_iter().map(|(key, acks)| Work { key, acks, acquire: false }));
    let max_wait = Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + max_wait;
    let mut outcomes = run_on_owners(shard, &group_id, &member_id, &works, settings, max_bytes, max_records).await;
    let min_bytes = request.min_bytes.max(0);
    loop {
        let acquired = outcomes.iter().any(|o| !o.fetched.acquired.is_empty());
        let failed = outcomes.iter().any(|o| o.fetched.error.is_some());
        let now = Instant::now();
        if acquired
            || failed
            || min_bytes == 0
            || context.closing
            || context.partitions.is_empty()
            || now >= deadline
            || shard.stopping.is_set()
        {
            break;
        }
        wait_for_any(shard, &group_id, &context.partitions, settings, deadline - now).await;
        if shard.stopping.is_set() {
            break;
        }
        let retry: Vec<Work> =
            context.partitions.iter().map(|key| Work { key: *key, acks: Vec::new(), acquire: true }).collect();
        let again = run_on_owners(shard, &group_id, &member_id, &retry, settings, max_bytes, max_records).await;
        // Keep the first round's acknowledgement outcomes.
        let mut by_key: BTreeMap<PartitionKey, Outcome> = again.into_iter().map(|o| (o.key, o)).collect();
        for outcome in &mut outcomes {
            if let Some(newer) = by_key.remove(&outcome.key) {
                outcome.fetched = newer.fetched;
            }
        }
    }
    if context.closing {
        release_member_everywhere(shard, &group_id, &member_id).await;
    }
    let named: std::collections::BTreeSet<PartitionKey> = named.into_iter().collect();
    encode(shard, &group_settings, outcomes, |outcome| {
        context.full
            || named.contains(&outcome.key)
            || !outcome.fetched.acquired.is_empty()
            || outcome.fetched.error.is_some()
    })
}

fn refused(error: ErrorCode) -> ShareFetchResponse {
    let mut response = ShareFetchResponse::default();
    response.error_code = error.code();
    response.error_message = Some(str_bytes(&format!("{error:?}")));
    response
}

fn encode(
    shard: &Shard,
    group_settings: &ShareGroupSettings,
    outcomes: Vec<Outcome>,
    answered: impl Fn(&Outcome) -> bool,
) -> ShareFetchResponse {
    let image = shard.metadata();
    let mut response = ShareFetchResponse::default();
    response.acquisition_lock_timeout_ms = group_settings.record_lock_duration_ms;
    let mut topics: BTreeMap<Uuid, Vec<PartitionData>> = BTreeMap::new();
    let mut leader_moved = false;
    for outcome in outcomes.into_iter().filter(|o| answered(o)) {
        let mut partition = PartitionData::default();
        partition.partition_index = outcome.key.1;
        partition.current_leader = leader_of(shard, &image, &outcome.key);
        if let Some(error) = outcome.fetched.error {
            partition.error_code = error.code();
            partition.error_message = Some(str_bytes(&format!("{error:?}")));
            leader_moved |= error == ErrorCode::NotLeaderOrFollower;
        }
        if let Some((error, message)) = outcome.ack_error {
            partition.acknowledge_error_code = error.code();
            partition.acknowledge_error_message = Some(str_bytes(&message));
        }
        partition.records = Some(outcome.fetched.records.unwrap_or_else(Bytes::new));
        partition.acquired_records = outcome
            .fetched
            .acquired
            .iter()
            .map(|range| {
                let mut acquired = AcquiredRecords::default();
                acquired.first_offset = range.first_offset;
                acquired.last_offset = range.last_offset;
                acquired.delivery_count = range.delivery_count.min(i16::MAX as u16) as i16;
                acquired
            })
            .collect();
        topics.entry(outcome.key.0).or_default().push(partition);
    }
    for (topic_id, mut partitions) in topics {
        partitions.sort_by_key(|p| p.partition_index);
        let mut topic = ShareFetchableTopicResponse::default();
        topic.topic_id = topic_id;
        topic.partitions = partitions;
        response.responses.push(topic);
    }
    if leader_moved {
        let mut node = NodeEndpoint::default();
        node.node_id = BrokerId(shard.config.node_id);
        node.host = str_bytes(&shard.config.advertised_host);
        node.port = i32::from(shard.config.advertised_port);
        response.node_endpoints.push(node);
    }
    response
}

/// This broker leads every partition it has; -1 for one it does not know.
fn leader_of(shard: &Shard, image: &crate::metadata::MetadataImage, key: &PartitionKey) -> LeaderIdAndEpoch {
    let mut leader = LeaderIdAndEpoch::default();
    match image.topic_by_id(&key.0).and_then(|meta| meta.partition(key.1)) {
        Some(placed) => {
            leader.leader_id = shard.config.node_id;
            leader.leader_epoch = placed.leader_epoch;
        }
        None => {
            leader.leader_id = -1;
            leader.leader_epoch = -1;
        }
    }
    leader
}

/// Releases every record `member_id` holds in `group_id`'s share-partitions
/// on every shard (its session closed, it left or was evicted).
pub(super) async fn release_member_everywhere(shard: &Rc<Shard>, group_id: &str, member_id: &str) {
    let (group_id, member_id) = (group_id.to_owned(), member_id.to_owned());
    let _ = shard
        .invoke_on_all(move |owner| async move {
            for share_partition in owner.share.open_share_partitions() {
                if share_partition.group_id() != group_id {
                    continue;
                }
                if let Err(error) = share_partition.release_member(&member_id).await {
                    tracing::warn!(group = %group_id, member = %member_id, ?error, "releasing a share member's records");
                }
            }
        })
        .await;
}

/// How long a member that left (heartbeat at epoch -1) has for its
/// closing ShareAcknowledge or ShareFetch before its session is dropped
/// and its records released anyway.
const LEFT_MEMBER_SESSION_GRACE: Duration = Duration::from_secs(5);

/// Registers, on `shard` (as coordinator), what a departed share member
/// leaves behind: its share session is dropped and its acquired records
/// released on every shard (Kafka's `ShareGroupListener`).
///
/// An evicted member's session and records go at once. A member that left
/// is closing: librdkafka sends the leave heartbeat on the coordinator's
/// connection and its last acknowledgements (ShareAcknowledge at epoch -1)
/// on the leader's, at the same time, in either order. Releasing at the
/// leave refused those acknowledgements, or overtook them while they were
/// applied, and records the consumer had accepted were delivered again.
/// So for a member that left, the closing request does it (it applies the
/// acknowledgements, closes the session and releases the rest); after
/// [`LEFT_MEMBER_SESSION_GRACE`] the session, if still open, is dropped
/// and the records released all the same, unless the member joined again.
pub fn register_member_gone_listener(shard: &Rc<Shard>) {
    let weak: Weak<Shard> = Rc::downgrade(shard);
    shard.groups.add_share_member_gone_listener(Rc::new(move |gone: &ShareMemberGone| {
        let Some(shard) = weak.upgrade() else { return };
        let (group_id, member_id) = (gone.group_id.clone(), gone.member_id.clone());
        let left = gone.reason == GoneReason::Left;
        glommio::spawn_local(async move {
            if left {
                let stop = std::pin::pin!(shard.stopping.wait());
                let _ = select(std::pin::pin!(glommio::timer::sleep(LEFT_MEMBER_SESSION_GRACE)), stop).await;
                // Joined again meanwhile (same member id): nothing is left behind.
                if check_member(&shard, &group_id, &member_id).is_ok() {
                    return;
                }
            }
            let had_session = shard.share_sessions.borrow_mut().remove(&group_id, &member_id);
            // Records are acquired only through a session, and the request
            // that closes one releases them: a member that left without a
            // session left nothing to release.
            if had_session || !left {
                release_member_everywhere(&shard, &group_id, &member_id).await;
            }
        })
        .detach();
    }));
}
