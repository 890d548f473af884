//! Share groups (KIP-932), the membership half: one share group's state
//! machine as Kafka 4.2's `GroupMetadataManager.shareGroupHeartbeat` runs
//! it, its server-side assignor (`simple`), and the public API the share
//! fetch path needs of the coordinator. Pure and synchronous like
//! [`super::consumer`]: methods take `now`; the coordinator
//! ([`super::GroupCoordinator`]) owns the group log, the session sweep and
//! the network. Record states, acquisition and acknowledgement are the
//! share-partition part (`crate::share`), not this module.
//!
//! How a group moves:
//! 1. ShareGroupHeartbeat v1 carries a member id the client generated
//!    (a UUID kept for the consumer's lifetime). Epoch 0 joins (and creates
//!    the group), -1 leaves, anything else heartbeats. A new member, a
//!    changed subscription, or changed metadata of the subscribed topics
//!    bumps the *group epoch*.
//! 2. When the group epoch is ahead of the *assignment epoch*, every
//!    member's target assignment is recomputed by [`assign_simple`] and the
//!    assignment epoch catches up.
//! 3. A member heartbeating at an older epoch moves straight to its target
//!    at the assignment epoch: share members revoke nothing, since several
//!    members may read one partition at once (records are locked one by
//!    one by the share partition, not partitions by members).
//!
//! Invariants ([`ShareGroup::check_invariants`], in debug builds after
//! every change): `assignment_epoch <= group_epoch`, equal when the group
//! is empty; the target assignment names only members; `subscribed_names`
//! counts exactly the members' subscriptions; `change_count` moves
//! whenever [`ShareGroup::snapshot`] would differ.
//!
//! # API for the share fetch path (on the coordinator shard)
//! The group's coordinator shard is `super::coordinator_shard(group_id,
//! shard.count)`; reach it with `shard.invoke_on`.
//! - [`share_member_assignment`]`(shard, group_id, member_id) ->
//!   Result<ShareMemberAssignment, ErrorCode>`: the member's epoch and
//!   assigned (topic id, partition)s; GROUP_ID_NOT_FOUND when no share
//!   group has the id (absent, or a consumer/classic group), UNKNOWN_MEMBER_ID
//!   when the member is not in it: the checks Kafka's ShareFetch makes
//!   through `SharePartitionManager`/`ShareSessionCache` before it serves a
//!   member.
//! - Departures: a listener registered with
//!   [`super::GroupCoordinator::add_share_member_gone_listener`] is called
//!   with a [`ShareMemberGone`] whenever a member leaves (epoch -1) or is
//!   evicted (session timeout), on the coordinator shard, after the change
//!   is applied in memory (its record may not be durable yet). A group can
//!   only be deleted once empty, so deletion departs nobody. Share sessions of that member should be dropped and its
//!   acquired records released. Register one listener per shard at start.
//! - [`super::share_config::effective_share_config`]`(shard, group_id) ->
//!   ShareGroupSettings`: record lock duration, delivery count limit,
//!   `share.auto.offset.reset`, isolation level, record-lock limit.
//! - Deletion: [`on_deleted`] is the point where a deleted group's share state is to be
//!   deleted (filled in by the share-partition part).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use protocol::ErrorCode;
use uuid::Uuid;

use super::assignor::TopicPartitions;
use super::consumer::{HeartbeatError, TopicsView};
use crate::shard::Shard;

/// Kafka's `ShareGroup.PROTOCOL_TYPE`, what ListGroups reports.
pub const PROTOCOL_TYPE: &str = "share";
/// Kafka's group type name (ListGroups v5+ type filter).
pub const GROUP_TYPE: &str = "share";
/// The one server-side assignor of share groups (`group.share.assignors`).
pub const ASSIGNOR_NAME: &str = "simple";
/// The member epoch a heartbeat joins with.
pub const JOIN_GROUP_MEMBER_EPOCH: i32 = 0;
/// The member epoch a heartbeat leaves with.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Kafka's share group states.
pub const STATE_EMPTY: &str = "Empty";
pub const STATE_STABLE: &str = "Stable";

/// The broker settings one heartbeat needs: the group's session timeout
/// and heartbeat interval (its `share.*` GROUP configs over the broker's
/// `group.share.*`), and `group.share.max.size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareLimits {
    pub session_timeout_ms: i32,
    pub heartbeat_interval_ms: i32,
    pub max_size: u32,
}

/// A ShareGroupHeartbeat request's fields, plus what the connection knows.
/// `None` means "unchanged since the last heartbeat", as on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareHeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub client_id: String,
    pub client_host: String,
}

/// A successful ShareGroupHeartbeat answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareHeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    /// 0 when the member left.
    pub heartbeat_interval_ms: i32,
    /// Present when the member must (re)learn its assignment.
    pub assignment: Option<TopicPartitions>,
}

/// What [`share_member_assignment`] answers: the member's current epoch
/// and the partitions it may fetch from, sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareMemberAssignment {
    pub member_epoch: i32,
    pub partitions: Vec<(Uuid, i32)>,
}

/// Why a member is gone (see [`ShareMemberGone`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoneReason {
    /// A heartbeat with epoch -1.
    Left,
    /// No heartbeat within its session timeout.
    SessionTimeout,
}

/// A member that left its share group or was evicted, as told to the
/// listeners registered with
/// [`super::GroupCoordinator::add_share_member_gone_listener`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareMemberGone {
    pub group_id: String,
    pub member_id: String,
    pub reason: GoneReason,
}

/// A listener of departed members; runs on the coordinator shard and must
/// not call back into the coordinator's share groups synchronously.
pub type MemberGoneListener = Rc<dyn Fn(&ShareMemberGone)>;

/// The member's epoch and assignment, for the share fetch path; call it on
/// the coordinator shard of `group_id`. GROUP_ID_NOT_FOUND when no share
/// group has that id, UNKNOWN_MEMBER_ID when the member is not in it.
pub fn share_member_assignment(
    shard: &Shard,
    group_id: &str,
    member_id: &str,
) -> Result<ShareMemberAssignment, ErrorCode> {
    let groups = shard.groups.share_groups();
    let group = groups.get(group_id).ok_or(ErrorCode::GroupIdNotFound)?;
    group.member_assignment(member_id)
}

/// Called once a share group's deletion (DeleteGroups) is durable, on its
/// coordinator shard. The share state of the group's partitions (record
/// states, start offsets) belongs to the share-partition part
/// (`crate::share`): its share sessions here are dropped at once, and a
/// task deletes its share-partitions on every shard, durably
/// (`SharePartitions::delete_group`). DeleteGroups answers without
/// waiting for that task; a failure is logged, and the state left behind
/// is deleted by the group's next deletion.
// Filled in by the share-fetch branch (the share-partition part's hook).
pub fn on_deleted(shard: &Rc<Shard>, group_id: &str) {
    shard.share_sessions.borrow_mut().remove_group(group_id);
    let (shard, group_id) = (shard.clone(), group_id.to_owned());
    glommio::spawn_local(async move {
        let deleting = group_id.clone();
        let outcome = shard
            .invoke_on_all(move |owner| {
                let group_id = deleting.clone();
                async move { owner.share.delete_group(&owner, &group_id).await }
            })
            .await;
        match outcome {
            Ok(results) => {
                for result in results {
                    if let Err(error) = result {
                        tracing::warn!(group = %group_id, ?error, "deleting a deleted share group's share-partitions");
                    }
                }
            }
            Err(gone) => tracing::warn!(group = %group_id, shard = gone.shard, "deleting share-partitions: shard gone"),
        }
    })
    .detach();
}

/// Kafka's `throwIfShareGroupHeartbeatRequestIsInvalid`: the checks that
/// need no group state, run before a group is created for a join.
pub fn validate_request(group_id: &str, request: &ShareHeartbeatRequest) -> Result<(), HeartbeatError> {
    let invalid = |message: &str| HeartbeatError { code: ErrorCode::InvalidRequest, message: message.to_owned() };
    let blank = |value: &str| value.trim().is_empty();
    if blank(&request.member_id) {
        return Err(invalid("MemberId can't be empty."));
    }
    if blank(group_id) {
        return Err(invalid("GroupId can't be empty."));
    }
    if request.rack_id.as_deref().is_some_and(blank) {
        return Err(invalid("RackId can't be empty."));
    }
    if request.member_epoch == JOIN_GROUP_MEMBER_EPOCH {
        if request.subscribed_topic_names.as_ref().is_none_or(Vec::is_empty) {
            return Err(invalid("SubscribedTopicNames must be set in first request."));
        }
    } else if request.member_epoch < LEAVE_GROUP_MEMBER_EPOCH {
        return Err(invalid("MemberEpoch is invalid."));
    }
    Ok(())
}

fn error(code: ErrorCode, message: String) -> HeartbeatError {
    HeartbeatError { code, message }
}

fn unknown_member(member_id: &str, group_id: &str) -> HeartbeatError {
    error(ErrorCode::UnknownMemberId, format!("Member {member_id} is not a member of group {group_id}."))
}

/// One member of a share group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareMember {
    pub member_id: String,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: BTreeSet<String>,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// The session timeout the member was last given.
    pub session_timeout_ms: i32,
    pub assigned_partitions: TopicPartitions,
    /// Not persisted: a restored member starts a fresh session.
    pub last_heartbeat: Instant,
}

impl ShareMember {
    fn new(member_id: String, now: Instant) -> ShareMember {
        ShareMember {
            member_id,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed_topic_names: BTreeSet::new(),
            member_epoch: 0,
            previous_member_epoch: 0,
            session_timeout_ms: 0,
            assigned_partitions: TopicPartitions::new(),
            last_heartbeat: now,
        }
    }

    /// Equal in everything [`ShareGroup::snapshot`] keeps.
    fn same_persistent_state(&self, other: &ShareMember) -> bool {
        ShareMember { last_heartbeat: other.last_heartbeat, ..self.clone() } == *other
    }

    fn session_deadline(&self) -> Instant {
        self.last_heartbeat + Duration::from_millis(self.session_timeout_ms.max(0) as u64)
    }
}

/// Kafka's `throwIfShareGroupMemberEpochIsInvalid`: a newer epoch than the
/// coordinator's is fenced, an older one too unless it is the previous one
/// (the answer that moved the member on may have been lost). One
/// deliberate extension, as for consumer groups here (KAFKA-19233): a
/// member may always rejoin with epoch 0; it keeps its member id after
/// FENCED_MEMBER_EPOCH, and refusing it would fence it again until its
/// session times out.
fn check_member_epoch(member: &ShareMember, received: i32) -> Result<(), HeartbeatError> {
    if received == JOIN_GROUP_MEMBER_EPOCH {
        return Ok(());
    }
    if received > member.member_epoch {
        return Err(error(
            ErrorCode::FencedMemberEpoch,
            format!(
                "The share group member has a greater member epoch ({received}) than the one known by the group \
                 coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.member_epoch
            ),
        ));
    }
    if received < member.member_epoch && received != member.previous_member_epoch {
        return Err(error(
            ErrorCode::FencedMemberEpoch,
            format!(
                "The share group member has a smaller member epoch ({received}) than the one known by the group \
                 coordinator ({}), and it does not match the previous member epoch ({}). The member must abandon \
                 all its partitions and rejoin.",
                member.member_epoch, member.previous_member_epoch
            ),
        ));
    }
    Ok(())
}

/// One share group.
#[derive(Clone, Debug)]
pub struct ShareGroup {
    id: String,
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, ShareMember>,
    target_assignment: BTreeMap<String, TopicPartitions>,
    /// How many members subscribe to each topic name.
    subscribed_names: BTreeMap<String, usize>,
    /// The subscribed topics that exist, as last seen: name → (id,
    /// partition count). A change bumps the group epoch.
    subscription_metadata: BTreeMap<String, (Uuid, i32)>,
    change_count: u64,
}

impl ShareGroup {
    /// A new, empty group at epoch 0 (its first member moves it to 1).
    pub fn new(id: String) -> ShareGroup {
        ShareGroup {
            id,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target_assignment: BTreeMap::new(),
            subscribed_names: BTreeMap::new(),
            subscription_metadata: BTreeMap::new(),
            change_count: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    pub fn members(&self) -> &BTreeMap<String, ShareMember> {
        &self.members
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kafka's `ShareGroup.maybeUpdateGroupState`: Empty or Stable.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            STATE_EMPTY
        } else {
            STATE_STABLE
        }
    }

    /// Grows whenever what [`ShareGroup::snapshot`] returns changes.
    pub fn change_count(&self) -> u64 {
        self.change_count
    }

    /// The member's target assignment (empty until one is computed).
    pub fn target_assignment(&self, member_id: &str) -> TopicPartitions {
        self.target_assignment.get(member_id).cloned().unwrap_or_default()
    }

    /// See [`share_member_assignment`].
    pub fn member_assignment(&self, member_id: &str) -> Result<ShareMemberAssignment, ErrorCode> {
        let member = self.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        let partitions = member
            .assigned_partitions
            .iter()
            .flat_map(|(topic_id, set)| set.iter().map(move |partition| (*topic_id, *partition)))
            .collect();
        Ok(ShareMemberAssignment { member_epoch: member.member_epoch, partitions })
    }

    /// ShareGroupHeartbeat: join (epoch 0), heartbeat, or leave (-1). On
    /// `Err` the group is unchanged.
    pub fn heartbeat(
        &mut self,
        request: &ShareHeartbeatRequest,
        topics: &dyn TopicsView,
        limits: &ShareLimits,
        now: Instant,
    ) -> Result<ShareHeartbeatResponse, HeartbeatError> {
        validate_request(&self.id, request)?;
        let result = if request.member_epoch == LEAVE_GROUP_MEMBER_EPOCH {
            self.leave(&request.member_id)
        } else {
            self.member_heartbeat(request, topics, limits, now)
        };
        debug_assert_eq!(self.check_invariants(), Ok(()));
        result
    }

    /// Removes the members whose session timed out; returns their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| now > member.session_deadline())
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in &expired {
            self.fence_member(member_id);
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
        expired
    }

    /// DeleteGroups: only an empty group may be deleted (Kafka's
    /// `validateDeleteGroup`: NON_EMPTY_GROUP).
    pub fn check_deletable(&self) -> Result<(), ErrorCode> {
        if self.members.is_empty() {
            Ok(())
        } else {
            Err(ErrorCode::NonEmptyGroup)
        }
    }

    /// A join or a regular heartbeat.
    fn member_heartbeat(
        &mut self,
        request: &ShareHeartbeatRequest,
        topics: &dyn TopicsView,
        limits: &ShareLimits,
        now: Instant,
    ) -> Result<ShareHeartbeatResponse, HeartbeatError> {
        self.check_not_full(&request.member_id, limits)?;
        let member_id = request.member_id.clone();
        let existing = self.members.get(&member_id).cloned();
        let previous = match existing {
            Some(member) => {
                check_member_epoch(&member, request.member_epoch)?;
                member
            }
            None if request.member_epoch == JOIN_GROUP_MEMBER_EPOCH => ShareMember::new(member_id.clone(), now),
            None => return Err(unknown_member(&member_id, &self.id)),
        };
        // Nothing fails past this point: the group changes.
        let joined = !self.members.contains_key(&member_id);
        let mut updated = previous.clone();
        if let Some(rack_id) = &request.rack_id {
            updated.rack_id = Some(rack_id.clone());
        }
        if let Some(names) = &request.subscribed_topic_names {
            updated.subscribed_topic_names = names.iter().cloned().collect();
        }
        updated.client_id.clone_from(&request.client_id);
        updated.client_host.clone_from(&request.client_host);
        updated.session_timeout_ms = limits.session_timeout_ms;
        let subscription_changed = joined || previous.subscribed_topic_names != updated.subscribed_topic_names;
        if joined || !previous.same_persistent_state(&updated) {
            self.changed();
        }
        self.insert_member(updated);
        let metadata_changed = self.refresh_subscription_metadata(topics);
        if subscription_changed || metadata_changed {
            self.group_epoch += 1;
            self.changed();
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target_assignment();
        }
        self.reconcile(&member_id);
        let member = self.members.get_mut(&member_id).expect("inserted above");
        member.last_heartbeat = now;
        // Kafka sends the assignment on a full request (a join, or any
        // request naming the subscription: what clients send after an
        // error) and whenever it changed.
        let full = request.member_epoch == JOIN_GROUP_MEMBER_EPOCH || request.subscribed_topic_names.is_some();
        let changed = previous.assigned_partitions != member.assigned_partitions;
        Ok(ShareHeartbeatResponse {
            member_id,
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: limits.heartbeat_interval_ms,
            assignment: (full || changed).then(|| member.assigned_partitions.clone()),
        })
    }

    /// Kafka's `throwIfShareGroupIsFull`: only members already in the
    /// group may heartbeat once it is full.
    fn check_not_full(&self, member_id: &str, limits: &ShareLimits) -> Result<(), HeartbeatError> {
        if self.members.len() >= limits.max_size as usize && !self.members.contains_key(member_id) {
            return Err(error(
                ErrorCode::GroupMaxSizeReached,
                format!("The share group has reached its maximum capacity of {} members.", limits.max_size),
            ));
        }
        Ok(())
    }

    /// Kafka's `shareGroupLeave`: the member goes and the group epoch is
    /// bumped so that the others share its partitions.
    fn leave(&mut self, member_id: &str) -> Result<ShareHeartbeatResponse, HeartbeatError> {
        if !self.members.contains_key(member_id) {
            return Err(unknown_member(member_id, &self.id));
        }
        self.fence_member(member_id);
        Ok(ShareHeartbeatResponse {
            member_id: member_id.to_owned(),
            member_epoch: LEAVE_GROUP_MEMBER_EPOCH,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Kafka's `ShareGroupAssignmentBuilder`: a member behind the
    /// assignment epoch takes its whole target at once.
    fn reconcile(&mut self, member_id: &str) {
        let target = self.target_assignment(member_id);
        let assignment_epoch = self.assignment_epoch;
        let member = self.members.get_mut(member_id).expect("a member");
        if member.member_epoch == assignment_epoch && member.assigned_partitions == target {
            return;
        }
        member.previous_member_epoch = member.member_epoch;
        member.member_epoch = assignment_epoch;
        member.assigned_partitions = target;
        self.changed();
    }

    /// Looks up every subscribed topic; returns whether anything changed
    /// (a topic created, deleted or grown), which bumps the group epoch.
    fn refresh_subscription_metadata(&mut self, topics: &dyn TopicsView) -> bool {
        let metadata: BTreeMap<String, (Uuid, i32)> = self
            .subscribed_names
            .keys()
            .filter_map(|name| topics.topic_by_name(name).map(|topic| (name.clone(), topic)))
            .collect();
        if metadata == self.subscription_metadata {
            return false;
        }
        self.subscription_metadata = metadata;
        self.changed();
        true
    }

    /// Every member's new target at the group epoch.
    fn compute_target_assignment(&mut self) {
        let partition_counts: BTreeMap<Uuid, i32> = self.subscription_metadata.values().copied().collect();
        let input: BTreeMap<String, SimpleMember> = self
            .members
            .values()
            .map(|member| {
                let subscribed = member
                    .subscribed_topic_names
                    .iter()
                    .filter_map(|name| self.subscription_metadata.get(name))
                    .map(|(topic_id, _)| *topic_id)
                    .collect();
                let current = self.target_assignment(&member.member_id);
                (member.member_id.clone(), SimpleMember { subscribed_topic_ids: subscribed, current })
            })
            .collect();
        self.target_assignment = assign_simple(&input, &partition_counts);
        self.assignment_epoch = self.group_epoch;
        self.changed();
    }

    /// Removes a member for good (leave, session timeout) and bumps the
    /// group epoch.
    fn fence_member(&mut self, member_id: &str) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        self.uncount_subscription(&member);
        self.target_assignment.remove(member_id);
        self.group_epoch += 1;
        if self.members.is_empty() {
            // As for consumer groups (KAFKA-20442): an empty group has
            // nothing to assign.
            self.assignment_epoch = self.group_epoch;
        }
        let names = &self.subscribed_names;
        self.subscription_metadata.retain(|name, _| names.contains_key(name));
        self.changed();
    }

    /// Inserts or replaces a member, keeping the subscription counts.
    fn insert_member(&mut self, member: ShareMember) {
        if let Some(old) = self.members.remove(&member.member_id) {
            self.uncount_subscription(&old);
        }
        for name in &member.subscribed_topic_names {
            *self.subscribed_names.entry(name.clone()).or_default() += 1;
        }
        self.members.insert(member.member_id.clone(), member);
    }

    fn uncount_subscription(&mut self, member: &ShareMember) {
        for name in &member.subscribed_topic_names {
            let count = self.subscribed_names.get_mut(name).expect("counted when inserted");
            *count -= 1;
            if *count == 0 {
                self.subscribed_names.remove(name);
            }
        }
    }

    fn changed(&mut self) {
        self.change_count += 1;
    }

    /// Checks the invariants; `Err` names the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.assignment_epoch > self.group_epoch {
            return Err(format!("assignment epoch {} > group epoch {}", self.assignment_epoch, self.group_epoch));
        }
        if self.members.is_empty() && self.assignment_epoch != self.group_epoch {
            return Err(format!("empty group at epochs {} / {}", self.group_epoch, self.assignment_epoch));
        }
        if let Some(stray) = self.target_assignment.keys().find(|id| !self.members.contains_key(*id)) {
            return Err(format!("target assignment of non-member {stray}"));
        }
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for name in self.members.values().flat_map(|member| &member.subscribed_topic_names) {
            *counts.entry(name.clone()).or_default() += 1;
        }
        if counts != self.subscribed_names {
            return Err(format!("subscription counts {:?}, members say {counts:?}", self.subscribed_names));
        }
        Ok(())
    }
}

/// ShareGroupDescribe v1: one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareGroupDescription {
    pub group_id: String,
    pub group_state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor_name: &'static str,
    pub members: Vec<ShareMemberDescription>,
}

/// ShareGroupDescribe: one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareMemberDescription {
    pub member_id: String,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub assignment: Vec<super::consumer::DescribedTopicPartitions>,
}

impl ShareGroup {
    /// ShareGroupDescribe. Topics the metadata no longer knows are left
    /// out of the assignments, as Kafka does.
    pub fn describe(&self, topics: &dyn TopicsView) -> ShareGroupDescription {
        let members = self
            .members
            .values()
            .map(|member| ShareMemberDescription {
                member_id: member.member_id.clone(),
                rack_id: member.rack_id.clone(),
                member_epoch: member.member_epoch,
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                subscribed_topic_names: member.subscribed_topic_names.iter().cloned().collect(),
                assignment: member
                    .assigned_partitions
                    .iter()
                    .filter_map(|(topic_id, set)| {
                        let (topic_name, _) = topics.topic_by_id(topic_id)?;
                        Some(super::consumer::DescribedTopicPartitions {
                            topic_id: *topic_id,
                            topic_name,
                            partitions: set.iter().copied().collect(),
                        })
                    })
                    .collect(),
            })
            .collect();
        ShareGroupDescription {
            group_id: self.id.clone(),
            group_state: self.state(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor_name: ASSIGNOR_NAME,
            members,
        }
    }
}

/// What the coordinator persists of a share group (the `ShareGroup` record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareGroupSnapshot {
    pub group_id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// The subscribed topics as last seen, so that a restart does not look
    /// like a metadata change.
    pub subscription_metadata: BTreeMap<String, (Uuid, i32)>,
    /// Sorted by member id.
    pub members: Vec<ShareMemberSnapshot>,
}

/// One member in a [`ShareGroupSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareMemberSnapshot {
    pub member_id: String,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub session_timeout_ms: i32,
    pub assigned_partitions: TopicPartitions,
    pub target_partitions: TopicPartitions,
}

impl ShareGroup {
    /// The persistent part of the group.
    pub fn snapshot(&self) -> ShareGroupSnapshot {
        let members = self
            .members
            .values()
            .map(|member| ShareMemberSnapshot {
                member_id: member.member_id.clone(),
                rack_id: member.rack_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                subscribed_topic_names: member.subscribed_topic_names.iter().cloned().collect(),
                member_epoch: member.member_epoch,
                previous_member_epoch: member.previous_member_epoch,
                session_timeout_ms: member.session_timeout_ms,
                assigned_partitions: member.assigned_partitions.clone(),
                target_partitions: self.target_assignment(&member.member_id),
            })
            .collect();
        ShareGroupSnapshot {
            group_id: self.id.clone(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            subscription_metadata: self.subscription_metadata.clone(),
            members,
        }
    }

    /// Rebuilds a group from its snapshot; every member starts a fresh
    /// session (last heartbeat = `now`), as Kafka reschedules its timers on
    /// load. A snapshot no group could have produced is an error naming
    /// what is wrong.
    pub fn restore(snapshot: ShareGroupSnapshot, now: Instant) -> Result<ShareGroup, String> {
        let id = snapshot.group_id.clone();
        if snapshot.assignment_epoch > snapshot.group_epoch
            || (snapshot.members.is_empty() && snapshot.assignment_epoch != snapshot.group_epoch)
        {
            return Err(format!(
                "share group {id}: epochs out of order (group {}, assignment {})",
                snapshot.group_epoch, snapshot.assignment_epoch
            ));
        }
        let mut group = ShareGroup::new(snapshot.group_id);
        group.group_epoch = snapshot.group_epoch;
        group.assignment_epoch = snapshot.assignment_epoch;
        group.subscription_metadata = snapshot.subscription_metadata;
        for saved in snapshot.members {
            if group.members.contains_key(&saved.member_id) {
                return Err(format!("share group {id}: member {} appears twice", saved.member_id));
            }
            let target = saved.target_partitions;
            let member = ShareMember {
                member_id: saved.member_id,
                rack_id: saved.rack_id,
                client_id: saved.client_id,
                client_host: saved.client_host,
                subscribed_topic_names: saved.subscribed_topic_names.into_iter().collect(),
                member_epoch: saved.member_epoch,
                previous_member_epoch: saved.previous_member_epoch,
                session_timeout_ms: saved.session_timeout_ms,
                assigned_partitions: saved.assigned_partitions,
                last_heartbeat: now,
            };
            group.target_assignment.insert(member.member_id.clone(), target);
            group.insert_member(member);
        }
        debug_assert_eq!(group.check_invariants(), Ok(()));
        Ok(group)
    }
}

/// One member as [`assign_simple`] sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimpleMember {
    pub subscribed_topic_ids: BTreeSet<Uuid>,
    /// Its previous target, to keep what it had where the balance allows.
    pub current: TopicPartitions,
}

/// Kafka's share `SimpleAssignor`, in the shape Stele gives it. When every
/// member subscribes to the same topics, their partitions are assigned
/// together; otherwise each topic among its own subscribers. Either way,
/// among `m` members and `p` partitions:
/// - `m <= p`: every partition goes to exactly one member, each member
///   getting `p / m` or one more;
/// - `m > p`: every member gets exactly one partition, each partition
///   going to `m / p` members or one more (a topic of 1 partition and 3
///   members gives all three partition 0).
///
/// Previous targets are kept where the balance allows, so a member joining
/// or leaving moves few partitions. Deterministic: members and partitions
/// are taken in order.
pub fn assign_simple(
    members: &BTreeMap<String, SimpleMember>,
    partition_counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, TopicPartitions> {
    let mut assignment: BTreeMap<String, TopicPartitions> =
        members.keys().map(|member_id| (member_id.clone(), TopicPartitions::new())).collect();
    let partitions_of = |topic_ids: &mut dyn Iterator<Item = &Uuid>| -> Vec<(Uuid, i32)> {
        topic_ids
            .filter_map(|topic_id| partition_counts.get(topic_id).map(|count| (*topic_id, *count)))
            .flat_map(|(topic_id, count)| (0..count.max(0)).map(move |partition| (topic_id, partition)))
            .collect()
    };
    let first = members.values().next().map(|member| &member.subscribed_topic_ids);
    let homogeneous = members.values().all(|member| Some(&member.subscribed_topic_ids) == first);
    // Who shares which partitions: (member ids, their partitions).
    type Pool<'a> = (Vec<&'a str>, Vec<(Uuid, i32)>);
    let mut groups: Vec<Pool> = Vec::new();
    if homogeneous {
        let ids: Vec<&str> = members.keys().map(String::as_str).collect();
        groups.push((ids, partitions_of(&mut first.into_iter().flatten())));
    } else {
        let topics: BTreeSet<Uuid> =
            members.values().flat_map(|member| member.subscribed_topic_ids.iter()).copied().collect();
        for topic_id in topics {
            let ids: Vec<&str> = members
                .iter()
                .filter(|(_, member)| member.subscribed_topic_ids.contains(&topic_id))
                .map(|(member_id, _)| member_id.as_str())
                .collect();
            groups.push((ids, partitions_of(&mut std::iter::once(&topic_id))));
        }
    }
    for (ids, partitions) in groups {
        let current: Vec<BTreeSet<(Uuid, i32)>> = ids
            .iter()
            .map(|id| {
                let member = &members[*id];
                member.current.iter().flat_map(|(t, set)| set.iter().map(move |p| (*t, *p))).collect()
            })
            .collect();
        for (index, (topic_id, partition)) in spread(ids.len(), &partitions, &current) {
            assignment.get_mut(ids[index]).expect("a member").entry(topic_id).or_default().insert(partition);
        }
    }
    assignment
}

/// Pairs `members` (by index) with `partitions` as [`assign_simple`]
/// describes, keeping pairs of `current` first; returns (member index,
/// partition) pairs.
fn spread(members: usize, partitions: &[(Uuid, i32)], current: &[BTreeSet<(Uuid, i32)>]) -> Vec<(usize, (Uuid, i32))> {
    if members == 0 || partitions.is_empty() {
        return Vec::new();
    }
    let mut pairs = Vec::new();
    if members <= partitions.len() {
        // Each partition once; members hold `base` or `base + 1`.
        let (base, mut extra) = (partitions.len() / members, partitions.len() % members);
        let mut held = vec![0usize; members];
        let mut taken: HashMap<(Uuid, i32), usize> = HashMap::new();
        let wanted: BTreeSet<(Uuid, i32)> = partitions.iter().copied().collect();
        for keep_extra in [false, true] {
            for member in 0..members {
                for partition in current[member].iter().filter(|p| wanted.contains(p)) {
                    let room = if keep_extra { held[member] == base && extra > 0 } else { held[member] < base };
                    if room && !taken.contains_key(partition) {
                        if keep_extra {
                            extra -= 1;
                        }
                        taken.insert(*partition, member);
                        held[member] += 1;
                    }
                }
            }
        }
        for partition in partitions.iter().filter(|p| !taken.contains_key(p)).copied().collect::<Vec<_>>() {
            let member = (0..members).min_by_key(|member| held[*member]).expect("members");
            if held[member] == base {
                assert!(extra > 0, "partition {partition:?} left over with every member at {base}");
                extra -= 1;
            }
            taken.insert(partition, member);
            held[member] += 1;
        }
        pairs.extend(taken.into_iter().map(|(partition, member)| (member, partition)));
    } else {
        // Each member once; partitions go to `base` or `base + 1` members.
        let (base, mut extra) = (members / partitions.len(), members % partitions.len());
        let mut readers: HashMap<(Uuid, i32), usize> = partitions.iter().map(|p| (*p, 0)).collect();
        let mut given: Vec<Option<(Uuid, i32)>> = vec![None; members];
        for keep_extra in [false, true] {
            for member in 0..members {
                if given[member].is_some() {
                    continue;
                }
                let kept = current[member].iter().find(|partition| {
                    readers.get(partition).is_some_and(|count| {
                        if keep_extra {
                            *count == base && extra > 0
                        } else {
                            *count < base
                        }
                    })
                });
                if let Some(partition) = kept.copied() {
                    if keep_extra {
                        extra -= 1;
                    }
                    *readers.get_mut(&partition).expect("wanted") += 1;
                    given[member] = Some(partition);
                }
            }
        }
        for (member, slot) in given.iter_mut().enumerate().filter(|(_, slot)| slot.is_none()) {
            let partition = *partitions.iter().min_by_key(|partition| readers[*partition]).expect("partitions");
            if readers[&partition] == base {
                assert!(extra > 0, "member {member} left over with every partition at {base} readers");
                extra -= 1;
            }
            *readers.get_mut(&partition).expect("wanted") += 1;
            *slot = Some(partition);
        }
        pairs.extend(given.into_iter().enumerate().map(|(member, partition)| (member, partition.expect("given"))));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTreeMap-backed topics view: name → (id, partition count).
    #[derive(Clone, Debug, Default)]
    struct Topics(BTreeMap<String, (Uuid, i32)>);

    impl Topics {
        fn with(topics: &[(&str, i32)]) -> Topics {
            Topics(topics.iter().map(|(name, count)| (name.to_string(), (Uuid::new_v4(), *count))).collect())
        }
    }

    impl TopicsView for Topics {
        fn topic_by_name(&self, name: &str) -> Option<(Uuid, i32)> {
            self.0.get(name).copied()
        }

        fn topic_by_id(&self, topic_id: &Uuid) -> Option<(String, i32)> {
            self.0.iter().find(|(_, (id, _))| id == topic_id).map(|(name, (_, count))| (name.clone(), *count))
        }

        fn topic_names(&self) -> Vec<String> {
            self.0.keys().cloned().collect()
        }
    }

    const LIMITS: ShareLimits = ShareLimits { session_timeout_ms: 45_000, heartbeat_interval_ms: 5_000, max_size: 200 };

    fn join(member_id: &str, topics: &[&str]) -> ShareHeartbeatRequest {
        ShareHeartbeatRequest {
            member_id: member_id.into(),
            member_epoch: 0,
            subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
            client_id: "rdkafka".into(),
            client_host: "/127.0.0.1".into(),
            ..Default::default()
        }
    }

    fn beat(member_id: &str, member_epoch: i32) -> ShareHeartbeatRequest {
        ShareHeartbeatRequest { member_id: member_id.into(), member_epoch, ..Default::default() }
    }

    fn partitions(assignment: &TopicPartitions) -> Vec<i32> {
        assignment.values().flatten().copied().collect()
    }

    /// Heartbeats every member until each is at the assignment epoch.
    fn settle(group: &mut ShareGroup, topics: &Topics, now: Instant) {
        for _ in 0..4 {
            let ids: Vec<(String, i32)> =
                group.members.values().map(|m| (m.member_id.clone(), m.member_epoch)).collect();
            for (id, epoch) in ids {
                group.heartbeat(&beat(&id, epoch), topics, &LIMITS, now).unwrap();
            }
        }
    }

    #[test]
    fn three_members_on_one_partition_all_get_partition_0() {
        // Proves the share assignor's rule for more members than
        // partitions: every member of a one-partition topic reads it.
        let topics = Topics::with(&[("t", 1)]);
        let mut group = ShareGroup::new("g".into());
        let now = Instant::now();
        for id in ["a", "b", "c"] {
            group.heartbeat(&join(id, &["t"]), &topics, &LIMITS, now).unwrap();
        }
        settle(&mut group, &topics, now);
        for member in group.members.values() {
            assert_eq!(partitions(&member.assigned_partitions), vec![0], "{member:?}");
            assert_eq!(member.member_epoch, group.group_epoch());
        }
        assert_eq!(group.group_epoch(), 3);
        assert_eq!(group.assignment_epoch(), 3);
    }

    #[test]
    fn join_heartbeat_leave_move_the_epochs_as_kafka_does() {
        // Proves a join creates the member at the bumped group epoch with
        // its assignment in the answer; a plain heartbeat at the same epoch
        // carries no assignment; a leave answers epoch -1, interval 0, and
        // bumps the group epoch; an empty group has equal epochs.
        let topics = Topics::with(&[("t", 4)]);
        let mut group = ShareGroup::new("g".into());
        let now = Instant::now();
        let joined = group.heartbeat(&join("a", &["t"]), &topics, &LIMITS, now).unwrap();
        assert_eq!((joined.member_epoch, joined.heartbeat_interval_ms), (1, 5_000));
        assert_eq!(partitions(&joined.assignment.unwrap()), vec![0, 1, 2, 3]);
        let again = group.heartbeat(&beat("a", 1), &topics, &LIMITS, now).unwrap();
        assert_eq!((again.member_epoch, again.assignment), (1, None));
        let left = group.heartbeat(&beat("a", -1), &topics, &LIMITS, now).unwrap();
        assert_eq!((left.member_epoch, left.heartbeat_interval_ms, left.assignment), (-1, 0, None));
        assert!(group.is_empty());
        assert_eq!((group.group_epoch(), group.assignment_epoch()), (2, 2));
        assert_eq!(group.state(), STATE_EMPTY);
    }

    #[test]
    fn members_up_to_the_partition_count_split_the_partitions() {
        // Proves that with no more members than partitions each partition
        // is read by exactly one member and the counts differ by at most
        // one; a member that leaves hands its partitions to the others.
        let topics = Topics::with(&[("t", 5)]);
        let mut group = ShareGroup::new("g".into());
        let now = Instant::now();
        for id in ["a", "b"] {
            group.heartbeat(&join(id, &["t"]), &topics, &LIMITS, now).unwrap();
        }
        settle(&mut group, &topics, now);
        let sets: Vec<Vec<i32>> = group.members.values().map(|m| partitions(&m.assigned_partitions)).collect();
        let mut all: Vec<i32> = sets.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4], "{sets:?}");
        assert!(sets.iter().all(|set| set.len() == 2 || set.len() == 3), "{sets:?}");
        let epoch = group.members["b"].member_epoch;
        group.heartbeat(&beat("b", -1), &topics, &LIMITS, now).unwrap();
        let answer = group.heartbeat(&beat("a", epoch), &topics, &LIMITS, now).unwrap();
        assert_eq!(partitions(&answer.assignment.unwrap()), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn wrong_epochs_unknown_members_and_full_groups_are_refused() {
        // Proves Kafka's answers: a newer epoch, or an older one that is not
        // the previous, is FENCED_MEMBER_EPOCH; the previous epoch is
        // accepted; a member not in the group is UNKNOWN_MEMBER_ID; a group
        // at group.share.max.size refuses newcomers; invalid requests are
        // INVALID_REQUEST; errors change nothing.
        let topics = Topics::with(&[("t", 2)]);
        let mut group = ShareGroup::new("g".into());
        let now = Instant::now();
        for id in ["a", "b", "c"] {
            group.heartbeat(&join(id, &["t"]), &topics, &LIMITS, now).unwrap();
        }
        settle(&mut group, &topics, now);
        let epoch = group.members["a"].member_epoch;
        let previous = group.members["a"].previous_member_epoch;
        let before = group.change_count();
        let code = |result: Result<ShareHeartbeatResponse, HeartbeatError>| result.unwrap_err().code;
        assert_eq!(code(group.heartbeat(&beat("a", epoch + 1), &topics, &LIMITS, now)), ErrorCode::FencedMemberEpoch);
        assert!(epoch - 1 > previous, "a skipped an epoch: {epoch} after {previous}");
        assert_eq!(code(group.heartbeat(&beat("a", epoch - 1), &topics, &LIMITS, now)), ErrorCode::FencedMemberEpoch);
        assert_eq!(code(group.heartbeat(&beat("x", 3), &topics, &LIMITS, now)), ErrorCode::UnknownMemberId);
        assert_eq!(code(group.heartbeat(&beat("x", -1), &topics, &LIMITS, now)), ErrorCode::UnknownMemberId);
        let small = ShareLimits { max_size: 3, ..LIMITS };
        assert_eq!(code(group.heartbeat(&join("d", &["t"]), &topics, &small, now)), ErrorCode::GroupMaxSizeReached);
        assert_eq!(code(group.heartbeat(&join("", &["t"]), &topics, &LIMITS, now)), ErrorCode::InvalidRequest);
        assert_eq!(code(group.heartbeat(&join("d", &[]), &topics, &LIMITS, now)), ErrorCode::InvalidRequest);
        assert_eq!(code(group.heartbeat(&beat("a", -2), &topics, &LIMITS, now)), ErrorCode::InvalidRequest);
        assert_eq!(group.change_count(), before, "refusals change nothing");
        assert!(group.heartbeat(&beat("a", previous), &topics, &LIMITS, now).is_ok(), "previous epoch accepted");
        assert!(group.heartbeat(&join("a", &["t"]), &topics, &small, now).is_ok(), "a member may always rejoin");
    }

    #[test]
    fn silent_members_are_evicted_after_their_session_timeout() {
        // Proves eviction: past its session timeout without a heartbeat a
        // member is removed and the group epoch bumped; one that kept
        // heartbeating stays.
        let topics = Topics::with(&[("t", 2)]);
        let mut group = ShareGroup::new("g".into());
        let start = Instant::now();
        group.heartbeat(&join("a", &["t"]), &topics, &LIMITS, start).unwrap();
        group.heartbeat(&join("b", &["t"]), &topics, &LIMITS, start).unwrap();
        let later = start + Duration::from_millis(30_000);
        let epoch = group.members["b"].member_epoch;
        group.heartbeat(&beat("b", epoch), &topics, &LIMITS, later).unwrap();
        let epoch_before = group.group_epoch();
        assert!(group.expire(start + Duration::from_millis(45_000)).is_empty());
        assert_eq!(group.expire(start + Duration::from_millis(45_001)), vec!["a".to_string()]);
        assert_eq!(group.group_epoch(), epoch_before + 1);
        assert_eq!(group.members.keys().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn a_new_topic_or_more_partitions_bump_the_group_epoch() {
        // Proves the subscription metadata: a subscribed topic that appears
        // (or grows) changes the group epoch and the assignment.
        let mut topics = Topics::with(&[]);
        let mut group = ShareGroup::new("g".into());
        let now = Instant::now();
        let joined = group.heartbeat(&join("a", &["later"]), &topics, &LIMITS, now).unwrap();
        assert_eq!(joined.assignment, Some(TopicPartitions::new()));
        topics.0.insert("later".into(), (Uuid::new_v4(), 2));
        let answer = group.heartbeat(&beat("a", 1), &topics, &LIMITS, now).unwrap();
        assert_eq!(answer.member_epoch, 2);
        assert_eq!(partitions(&answer.assignment.unwrap()), vec![0, 1]);
        topics.0.get_mut("later").unwrap().1 = 3;
        let answer = group.heartbeat(&beat("a", 2), &topics, &LIMITS, now).unwrap();
        assert_eq!(partitions(&answer.assignment.unwrap()), vec![0, 1, 2]);
    }

    #[test]
    fn snapshot_restore_round_trip() {
        // Proves a restored group equals the saved one in everything its
        // record keeps, and goes on at the same epochs.
        let topics = Topics::with(&[("t", 3), ("u", 1)]);
        let mut group = ShareGroup::new("g".into());
        let now = Instant::now();
        group.heartbeat(&join("a", &["t"]), &topics, &LIMITS, now).unwrap();
        group.heartbeat(&join("b", &["t", "u"]), &topics, &LIMITS, now).unwrap();
        settle(&mut group, &topics, now);
        let snapshot = group.snapshot();
        let restored = ShareGroup::restore(snapshot.clone(), now).unwrap();
        assert_eq!(restored.snapshot(), snapshot);
        assert_eq!(restored.check_invariants(), Ok(()));
        let mut broken = snapshot.clone();
        broken.assignment_epoch = broken.group_epoch + 1;
        assert!(ShareGroup::restore(broken, now).is_err());
        let mut twice = snapshot;
        twice.members.push(twice.members[0].clone());
        assert!(ShareGroup::restore(twice, now).unwrap_err().contains("twice"));
    }

    fn member(topic_ids: &[Uuid]) -> SimpleMember {
        SimpleMember { subscribed_topic_ids: topic_ids.iter().copied().collect(), current: TopicPartitions::new() }
    }

    #[test]
    fn simple_assignor_balances_and_covers_every_partition() {
        // Proves, for every member count 1..=9 against 1..=7 partitions:
        // every partition is read; with m <= p each exactly once and member
        // loads differ by at most one; with m > p each member reads exactly
        // one and partition loads differ by at most one.
        let topic = Uuid::new_v4();
        for m in 1..=9usize {
            for p in 1..=7i32 {
                let members: BTreeMap<String, SimpleMember> =
                    (0..m).map(|i| (format!("m{i}"), member(&[topic]))).collect();
                let assignment = assign_simple(&members, &[(topic, p)].into());
                let loads: Vec<usize> = assignment.values().map(|a| a.values().map(BTreeSet::len).sum()).collect();
                let mut readers = vec![0usize; p as usize];
                for partition in assignment.values().flat_map(|a| a.values().flatten()) {
                    readers[*partition as usize] += 1;
                }
                assert!(readers.iter().all(|r| *r > 0), "m={m} p={p}: {readers:?}");
                let spread = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap();
                if m <= p as usize {
                    assert!(readers.iter().all(|r| *r == 1), "m={m} p={p}: {readers:?}");
                    assert!(spread(&loads) <= 1, "m={m} p={p}: {loads:?}");
                } else {
                    assert!(loads.iter().all(|l| *l == 1), "m={m} p={p}: {loads:?}");
                    assert!(spread(&readers) <= 1, "m={m} p={p}: {readers:?}");
                }
            }
        }
    }

    #[test]
    fn simple_assignor_keeps_previous_targets_and_splits_by_topic() {
        // Proves stickiness (a third member joining two members of six
        // partitions takes two, the others keep four of theirs) and that
        // members subscribing to different topics are assigned per topic.
        let (t, u) = (Uuid::new_v4(), Uuid::new_v4());
        let mut members: BTreeMap<String, SimpleMember> =
            [("a".to_string(), member(&[t])), ("b".to_string(), member(&[t]))].into();
        let first = assign_simple(&members, &[(t, 6)].into());
        for (id, current) in &first {
            members.get_mut(id).unwrap().current = current.clone();
        }
        members.insert("c".into(), member(&[t]));
        let second = assign_simple(&members, &[(t, 6)].into());
        for id in ["a", "b"] {
            let kept = first[id][&t].intersection(&second[id][&t]).count();
            assert_eq!(kept, 2, "{id}: {first:?} then {second:?}");
        }
        let members: BTreeMap<String, SimpleMember> =
            [("a".to_string(), member(&[t])), ("b".to_string(), member(&[t, u]))].into();
        let split = assign_simple(&members, &[(t, 1), (u, 1)].into());
        assert_eq!(split["a"], [(t, [0].into())].into());
        assert_eq!(split["b"], [(t, [0].into()), (u, [0].into())].into());
    }
}

#[cfg(test)]
mod coordinator_tests {
    use std::cell::RefCell;

    use super::*;
    use crate::group::testing::with_shard;
    use crate::group::GroupCoordinator;

    fn join(member_id: &str, topics: &[&str]) -> ShareHeartbeatRequest {
        ShareHeartbeatRequest {
            member_id: member_id.into(),
            member_epoch: 0,
            subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
            ..Default::default()
        }
    }

    fn heartbeat(
        shard: &Shard,
        group: &str,
        request: ShareHeartbeatRequest,
    ) -> Result<ShareHeartbeatResponse, ErrorCode> {
        shard.groups.share_heartbeat(&shard.metadata(), request, group).map_err(|refused| refused.code)
    }

    #[test]
    fn share_groups_and_their_configs_survive_restarts_and_compaction() {
        // Proves the durable part on a real group log: membership (members,
        // epochs, assignments) and GROUP configs come back after a clean
        // restart and after compaction; configs of an id without a group
        // are kept; departed members are told to the listeners (leave and
        // session timeout); the query API answers as the share fetch path
        // needs.
        let dir = tempfile::tempdir().unwrap();
        let (epoch, assignment) = with_shard(dir.path(), &[("t", 3)], |shard| async move {
            let gone: Rc<RefCell<Vec<ShareMemberGone>>> = Rc::default();
            let seen = gone.clone();
            shard.groups.add_share_member_gone_listener(Rc::new(move |member| seen.borrow_mut().push(member.clone())));
            heartbeat(&shard, "sg", join("m1", &["t"])).unwrap();
            heartbeat(&shard, "sg", join("m2", &["t"])).unwrap();
            heartbeat(&shard, "sg", join("m3", &["t"])).unwrap();
            let left = ShareHeartbeatRequest { member_id: "m2".into(), member_epoch: -1, ..Default::default() };
            assert_eq!(heartbeat(&shard, "sg", left).unwrap().member_epoch, -1);
            let configs: BTreeMap<String, String> =
                [("share.delivery.count.limit".to_string(), "3".to_string())].into();
            let durable = GroupCoordinator::set_group_configs(&shard, "sg", configs).await.unwrap();
            assert!(durable.await.unwrap());
            let elsewhere = [("share.auto.offset.reset".to_string(), "earliest".to_string())].into();
            assert!(GroupCoordinator::set_group_configs(&shard, "no-group-yet", elsewhere)
                .await
                .unwrap()
                .await
                .unwrap());
            let joined = share_member_assignment(&shard, "sg", "m1").unwrap();
            assert_eq!((joined.member_epoch, joined.partitions.len()), (1, 3), "as of its join: {joined:?}");
            let beat = ShareHeartbeatRequest { member_id: "m1".into(), member_epoch: 1, ..Default::default() };
            let answer = heartbeat(&shard, "sg", beat).unwrap();
            let m1 = share_member_assignment(&shard, "sg", "m1").unwrap();
            assert_eq!(m1.member_epoch, answer.member_epoch);
            let answered: Vec<(Uuid, i32)> =
                answer.assignment.unwrap().iter().flat_map(|(t, set)| set.iter().map(move |p| (*t, *p))).collect();
            assert_eq!(m1.partitions, answered);
            assert_eq!(share_member_assignment(&shard, "sg", "m2"), Err(ErrorCode::UnknownMemberId));
            assert_eq!(share_member_assignment(&shard, "other", "m1"), Err(ErrorCode::GroupIdNotFound));
            let now = Instant::now() + Duration::from_millis(60_001);
            GroupCoordinator::expire_sessions(&shard, now);
            heartbeat(&shard, "sg", join("m1", &["t"])).unwrap();
            let reasons: Vec<(String, GoneReason)> =
                gone.borrow().iter().map(|g| (g.member_id.clone(), g.reason)).collect();
            assert_eq!(
                reasons,
                vec![
                    ("m2".to_string(), GoneReason::Left),
                    ("m1".to_string(), GoneReason::SessionTimeout),
                    ("m3".to_string(), GoneReason::SessionTimeout),
                ]
            );
            let group = &shard.groups.share_groups()["sg"];
            (group.group_epoch(), group.members()["m1"].assigned_partitions.clone())
        });
        for compact in [true, false] {
            let assignment = assignment.clone();
            with_shard(dir.path(), &[("t", 3)], move |shard| async move {
                let group = shard.groups.share_groups()["sg"].clone();
                assert_eq!(group.members().keys().collect::<Vec<_>>(), vec!["m1"]);
                assert_eq!(group.group_epoch(), epoch);
                assert_eq!(group.members()["m1"].assigned_partitions, assignment);
                assert_eq!(shard.groups.group_configs("sg")["share.delivery.count.limit"], "3");
                assert_eq!(shard.groups.group_configs("no-group-yet")["share.auto.offset.reset"], "earliest");
                let settings = crate::group::share_config::effective_share_config(&shard, "sg");
                assert_eq!(settings.delivery_count_limit, 3);
                if compact {
                    let log = shard.groups.log().unwrap();
                    assert!(log.compact(|| shard.groups.snapshot()).await.unwrap() > 0);
                }
            });
        }
    }

    #[test]
    fn one_id_names_one_kind_of_group() {
        // Proves Kafka's answers across the shared id namespace: a share
        // group refuses a classic join (INCONSISTENT_GROUP_PROTOCOL), a
        // consumer heartbeat and offset commits/fetches (GROUP_ID_NOT_FOUND);
        // a share heartbeat to a classic or consumer group id is
        // GROUP_ID_NOT_FOUND, and a non-joining heartbeat to no group too.
        let dir = tempfile::tempdir().unwrap();
        with_shard(dir.path(), &[("t", 1)], |shard| async move {
            heartbeat(&shard, "sg", join("m1", &["t"])).unwrap();
            assert_eq!(shard.groups.claim_for_classic("sg"), Err(ErrorCode::InconsistentGroupProtocol));
            let consumer = crate::group::consumer::HeartbeatRequest {
                api_version: 1,
                member_id: "c1".into(),
                rebalance_timeout_ms: 30_000,
                subscribed_topic_names: Some(vec!["t".into()]),
                owned_partitions: Some(Default::default()),
                ..Default::default()
            };
            let refused = shard.groups.consumer_heartbeat(&shard.metadata(), consumer.clone(), "sg").unwrap_err();
            assert_eq!(refused.code, ErrorCode::GroupIdNotFound);
            assert_eq!(
                shard.groups.validate_commit("sg", "", None, -1, 8, Instant::now()),
                Err(ErrorCode::GroupIdNotFound)
            );
            assert_eq!(shard.groups.validate_fetch("sg", None, -1), Err(ErrorCode::GroupIdNotFound));
            assert!(!shard.groups.classic_groups().contains_key("sg"), "no classic group was created for the commit");
            shard.groups.consumer_heartbeat(&shard.metadata(), consumer, "cg").unwrap();
            assert_eq!(heartbeat(&shard, "cg", join("m1", &["t"])), Err(ErrorCode::GroupIdNotFound));
            let beat = ShareHeartbeatRequest { member_id: "m9".into(), member_epoch: 3, ..Default::default() };
            assert_eq!(heartbeat(&shard, "nothing", beat), Err(ErrorCode::GroupIdNotFound));
            assert!(!shard.groups.exists("nothing"));
        });
    }
}
