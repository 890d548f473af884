//! One consumer-protocol group (KIP-848, what clients use with
//! `group.protocol=consumer`), as Kafka 4's
//! `GroupMetadataManager.consumerGroupHeartbeat` and
//! `CurrentAssignmentBuilder` run it. Pure and synchronous, like
//! [`super::state`]: methods take `now` and return results; the coordinator
//! owns the timers, the durable log and the network.
//!
//! How a group moves:
//! 1. A heartbeat creates or updates its member. A new member, a changed
//!    subscription, or changed metadata of the subscribed topics (a topic
//!    created, deleted or grown) bumps the *group epoch*.
//! 2. When the group epoch is ahead of the *assignment epoch*, the target
//!    assignment of every member is recomputed with the group's assignor
//!    ([`super::assignor`]) and the assignment epoch catches up.
//! 3. The heartbeating member reconciles towards its target: first it is
//!    asked to revoke what it must give up and stays at its epoch in
//!    UNREVOKED_PARTITIONS until its heartbeat's owned partitions no longer
//!    hold them; then it moves to the assignment epoch and gets the new
//!    partitions that nobody else still holds (UNRELEASED_PARTITIONS while
//!    some are held); STABLE once it has its whole target.
//!
//! Invariants (checked by [`ConsumerGroup::check_invariants`] in debug
//! builds after every change):
//! - `assignment_epoch <= group_epoch`, and they are equal when the group
//!   has no member;
//! - a partition is held (assigned or pending revocation) by at most one
//!   member; `partition_owners` indexes exactly the members' partitions;
//! - `static_members` maps each instance id to the one member carrying it;
//! - the target assignment only names members of the group;
//! - a member has a revocation deadline only in UNREVOKED_PARTITIONS;
//! - `change_count` moves whenever [`ConsumerGroup::snapshot`] would differ.
//!
//! Every member field is changed through `insert_member`/`remove_member`,
//! which keep the indexes; a request is validated completely before the
//! group is touched, so an error changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use protocol::ErrorCode;
use regex::{Regex, RegexBuilder};
use uuid::Uuid;

use super::assignor::{AssignmentMember, Assignor, TopicPartitions};
use super::classic::OffsetExpiry;
use super::offsets::{Committed, TopicPartition};
use crate::metadata::MetadataImage;

/// Kafka's `ConsumerProtocol.PROTOCOL_TYPE`, what ListGroups reports.
pub const PROTOCOL_TYPE: &str = "consumer";
/// Kafka's group type name for these groups (ListGroups v5+).
pub const GROUP_TYPE: &str = "consumer";
/// The member epoch a heartbeat (re-)joins with.
pub const JOIN_GROUP_MEMBER_EPOCH: i32 = 0;
/// The member epoch a heartbeat leaves with.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// The member epoch a static member leaves with when it will come back
/// within its session timeout (a restart); also the epoch it is kept at.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;
/// From this ConsumerGroupHeartbeat version the client generates its member
/// id (KIP-1082); before it, an empty member id asks the server for one.
pub const CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION: i16 = 1;
/// A consumer-protocol member must commit with OffsetCommit v9 or later.
pub const OFFSET_COMMIT_VERSION_MIN: i16 = 9;
/// From this DescribeGroups version, describing a consumer-protocol group
/// answers GROUP_ID_NOT_FOUND (before it, an empty Dead group).
pub const DESCRIBE_GROUPS_NOT_FOUND_VERSION_MIN: i16 = 6;
/// ConsumerGroupDescribe v1's `MemberType` of a consumer-protocol member.
pub const MEMBER_TYPE_CONSUMER: i8 = 1;
/// Kafka's `REGEX_BATCH_REFRESH_INTERVAL_MS`: regular expressions are
/// resolved against the topic names again at most this often (or when the
/// coordinator asks, see [`ConsumerGroup::request_metadata_refresh`]).
pub const REGEX_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// The most memory one compiled SubscribedTopicRegex may take; a larger one
/// is refused with INVALID_REGULAR_EXPRESSION.
pub const REGEX_COMPILED_BYTES_MAX: usize = 1 << 20;

/// The broker settings a consumer group needs, with Kafka's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms` (Kafka: 45000): a member that
    /// does not heartbeat for this long is removed.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (Kafka: 5000), told to members.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size` (Kafka: Integer.MAX_VALUE): members beyond
    /// it are refused with GROUP_MAX_SIZE_REACHED.
    pub max_size: u32,
    /// `group.consumer.assignors` (Kafka: "uniform,range"): the server-side
    /// assignors members may ask for; the first is the default.
    pub assignors: Vec<Assignor>,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: i32::MAX as u32,
            assignors: vec![Assignor::Uniform, Assignor::Range],
        }
    }
}

impl ConsumerGroupConfig {
    /// The assignor used when no member asks for a supported one.
    pub fn default_assignor(&self) -> Assignor {
        self.assignors.first().copied().unwrap_or(Assignor::Uniform)
    }

    /// The assignor called `name`, if this broker offers it.
    pub fn assignor(&self, name: &str) -> Option<Assignor> {
        Assignor::from_name(name).filter(|assignor| self.assignors.contains(assignor))
    }

    /// Parses a `group.consumer.assignors` value: names separated by commas.
    pub fn parse_assignors(value: &str) -> Result<Vec<Assignor>, String> {
        let names = value.split(',').map(str::trim).filter(|name| !name.is_empty());
        let assignors = names
            .map(|name| Assignor::from_name(name).ok_or_else(|| format!("unknown consumer group assignor '{name}'")))
            .collect::<Result<Vec<_>, _>>()?;
        if assignors.is_empty() {
            return Err("group.consumer.assignors names no assignor".into());
        }
        Ok(assignors)
    }
}

/// Kafka's `ConsumerGroup.ConsumerGroupState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    /// The group epoch moved; the target assignment is not computed yet.
    Assigning,
    /// Some member has not reached its target at the assignment epoch.
    Reconciling,
    Stable,
    /// Deleted.
    Dead,
}

impl ConsumerGroupState {
    /// Kafka's spelling, as ListGroups and ConsumerGroupDescribe report it.
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
            ConsumerGroupState::Dead => "Dead",
        }
    }
}

/// Kafka's `MemberState`, with its persisted byte values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Reconciled with its target assignment.
    Stable,
    /// Must revoke partitions before moving to the next epoch.
    UnrevokedPartitions,
    /// At the latest epoch, waiting for partitions others still hold.
    UnreleasedPartitions,
    /// A state from a newer version; the member is fenced on its next
    /// heartbeat unless it owns nothing.
    Unknown,
}

impl MemberState {
    /// The byte Kafka persists for the state.
    pub fn value(self) -> u8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
            MemberState::Unknown => 127,
        }
    }

    /// The state of a persisted byte; unknown values are [`MemberState::Unknown`].
    pub fn from_value(value: u8) -> MemberState {
        match value {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Unknown,
        }
    }

    /// Kafka's enum name.
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "STABLE",
            MemberState::UnrevokedPartitions => "UNREVOKED_PARTITIONS",
            MemberState::UnreleasedPartitions => "UNRELEASED_PARTITIONS",
            MemberState::Unknown => "UNKNOWN",
        }
    }
}

/// The cluster's topics as a group sees them: implemented by the metadata
/// image, and by small fakes in tests.
pub trait TopicsView {
    /// The topic's id and partition count.
    fn topic_by_name(&self, name: &str) -> Option<(Uuid, i32)>;
    /// The topic's name and partition count.
    fn topic_by_id(&self, topic_id: &Uuid) -> Option<(String, i32)>;
    /// Every topic name, for resolving regular expressions.
    fn topic_names(&self) -> Vec<String>;
}

impl TopicsView for MetadataImage {
    fn topic_by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        self.topic(name).map(|topic| (topic.topic_id, topic.partitions.len() as i32))
    }

    fn topic_by_id(&self, topic_id: &Uuid) -> Option<(String, i32)> {
        MetadataImage::topic_by_id(self, topic_id).map(|topic| (topic.name.clone(), topic.partitions.len() as i32))
    }

    fn topic_names(&self) -> Vec<String> {
        self.topics.keys().cloned().collect()
    }
}

/// A ConsumerGroupHeartbeat request's fields, plus what the connection
/// knows. `None` (and -1 for the rebalance timeout) means "unchanged since
/// the last heartbeat", as on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// The request's API version (0 lets the server generate member ids).
    pub api_version: i16,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    /// v1+; an empty string clears the regex.
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// `TopicPartitions`: what the member owns now; how it acknowledges a
    /// revocation. Empty partition lists are ignored.
    pub owned_partitions: Option<TopicPartitions>,
    pub client_id: String,
    pub client_host: String,
}

/// A successful ConsumerGroupHeartbeat answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    /// 0 when the member left.
    pub heartbeat_interval_ms: i32,
    /// Present only when the member must (re)learn its assignment.
    pub assignment: Option<TopicPartitions>,
}

/// A refused heartbeat: the error code and Kafka's message for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct HeartbeatError {
    pub code: ErrorCode,
    pub message: String,
}

impl HeartbeatError {
    fn new(code: ErrorCode, message: impl Into<String>) -> HeartbeatError {
        HeartbeatError { code, message: message.into() }
    }

    fn invalid(message: &str) -> HeartbeatError {
        HeartbeatError::new(ErrorCode::InvalidRequest, message)
    }
}

/// One member of a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    /// The session timeout the member was last given (the group config's).
    pub session_timeout_ms: i32,
    pub subscribed_topic_names: BTreeSet<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub assigned_partitions: TopicPartitions,
    pub partitions_pending_revocation: TopicPartitions,
    /// Not persisted: a restored member starts a fresh session.
    pub last_heartbeat: Instant,
    /// When a member that owes a revocation is fenced (rebalance timeout).
    pub revocation_deadline: Option<Instant>,
}

impl ConsumerMember {
    fn new(member_id: String, now: Instant) -> ConsumerMember {
        ConsumerMember {
            member_id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: -1,
            session_timeout_ms: 0,
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned_partitions: TopicPartitions::new(),
            partitions_pending_revocation: TopicPartitions::new(),
            last_heartbeat: now,
            revocation_deadline: None,
        }
    }

    /// Kafka's `isReconciledTo`.
    pub fn is_reconciled_to(&self, assignment_epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == assignment_epoch
    }

    /// Kafka's `maybeUpdate*` builder steps: what the heartbeat set.
    fn apply_request(&mut self, request: &HeartbeatRequest, config: &ConsumerGroupConfig) {
        if let Some(instance_id) = &request.instance_id {
            self.instance_id = Some(instance_id.clone());
        }
        if let Some(rack_id) = &request.rack_id {
            self.rack_id = Some(rack_id.clone());
        }
        if request.rebalance_timeout_ms != -1 {
            self.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if let Some(assignor) = &request.server_assignor {
            self.server_assignor = Some(assignor.clone());
        }
        if let Some(names) = &request.subscribed_topic_names {
            self.subscribed_topic_names = names.iter().cloned().collect();
        }
        if let Some(regex) = &request.subscribed_topic_regex {
            self.subscribed_topic_regex = (!regex.is_empty()).then(|| regex.clone());
        }
        self.client_id.clone_from(&request.client_id);
        self.client_host.clone_from(&request.client_host);
        self.session_timeout_ms = config.session_timeout_ms;
    }

    /// Equal in everything [`ConsumerGroup::snapshot`] keeps. Destructured
    /// so that a new field cannot be forgotten here.
    fn same_persistent_state(&self, other: &ConsumerMember) -> bool {
        let ConsumerMember {
            member_id,
            instance_id,
            rack_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscribed_topic_names,
            subscribed_topic_regex,
            server_assignor,
            member_epoch,
            previous_member_epoch,
            state,
            assigned_partitions,
            partitions_pending_revocation,
            last_heartbeat: _,
            revocation_deadline: _,
        } = self;
        (member_id, instance_id, rack_id, client_id, client_host)
            == (&other.member_id, &other.instance_id, &other.rack_id, &other.client_id, &other.client_host)
            && (rebalance_timeout_ms, session_timeout_ms, member_epoch, previous_member_epoch, state)
                == (
                    &other.rebalance_timeout_ms,
                    &other.session_timeout_ms,
                    &other.member_epoch,
                    &other.previous_member_epoch,
                    &other.state,
                )
            && (subscribed_topic_names, subscribed_topic_regex, server_assignor)
                == (&other.subscribed_topic_names, &other.subscribed_topic_regex, &other.server_assignor)
            && (assigned_partitions, partitions_pending_revocation)
                == (&other.assigned_partitions, &other.partitions_pending_revocation)
    }

    fn session_deadline(&self) -> Instant {
        self.last_heartbeat + Duration::from_millis(self.session_timeout_ms.max(0) as u64)
    }

    /// Kafka fences a member whose session timer fires.
    fn session_expired(&self, now: Instant) -> bool {
        now > self.session_deadline()
    }

    /// Kafka fences a member still owing a revocation when its rebalance
    /// timeout fires.
    fn revocation_expired(&self, now: Instant) -> bool {
        self.state == MemberState::UnrevokedPartitions
            && self.revocation_deadline.is_some_and(|deadline| now >= deadline)
    }
}

/// A compiled SubscribedTopicRegex and the topic names it matched when last
/// resolved. Not persisted: resolved again after a restore.
#[derive(Clone, Debug)]
struct ResolvedRegex {
    /// Anchored at both ends (Kafka matches the whole topic name). `None`
    /// for a persisted regex that no longer compiles: it matches nothing.
    matcher: Option<Regex>,
    subscribers: usize,
    topics: BTreeSet<String>,
    resolved: bool,
}

/// One consumer-protocol group.
#[derive(Clone, Debug)]
pub struct ConsumerGroup {
    id: String,
    group_epoch: i32,
    /// The epoch of `target_assignment` (Kafka's target assignment epoch).
    assignment_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    target_assignment: BTreeMap<String, TopicPartitions>,
    /// Instance id → member id of the static members.
    static_members: BTreeMap<String, String>,
    /// Who holds each partition (assigned or pending revocation).
    partition_owners: HashMap<(Uuid, i32), String>,
    /// How many members subscribe to each topic name.
    subscribed_names: BTreeMap<String, usize>,
    regexes: BTreeMap<String, ResolvedRegex>,
    regexes_resolved_at: Option<Instant>,
    regex_refresh_requested: bool,
    /// The subscribed topics that exist, as last seen: name → (id,
    /// partition count). A change bumps the group epoch.
    subscription_metadata: BTreeMap<String, (Uuid, i32)>,
    change_count: u64,
    dead: bool,
}

impl ConsumerGroup {
    /// A new, empty group at epoch 0 (its first member moves it to 1).
    pub fn new(id: String) -> ConsumerGroup {
        ConsumerGroup {
            id,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target_assignment: BTreeMap::new(),
            static_members: BTreeMap::new(),
            partition_owners: HashMap::new(),
            subscribed_names: BTreeMap::new(),
            regexes: BTreeMap::new(),
            regexes_resolved_at: None,
            regex_refresh_requested: false,
            subscription_metadata: BTreeMap::new(),
            change_count: 0,
            dead: false,
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

    pub fn members(&self) -> &BTreeMap<String, ConsumerMember> {
        &self.members
    }

    pub fn member(&self, member_id: &str) -> Option<&ConsumerMember> {
        self.members.get(member_id)
    }

    /// The member's target assignment (empty until one is computed).
    pub fn target_assignment(&self, member_id: &str) -> TopicPartitions {
        self.target_assignment.get(member_id).cloned().unwrap_or_default()
    }

    /// The member id carrying `instance_id`, for static members.
    pub fn static_member_id(&self, instance_id: &str) -> Option<&str> {
        self.static_members.get(instance_id).map(String::as_str)
    }

    /// Grows whenever what [`ConsumerGroup::snapshot`] returns changes: the
    /// coordinator persists the group when this differs from the value it
    /// saw after its last write.
    pub fn change_count(&self) -> u64 {
        self.change_count
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kafka's `maybeUpdateGroupState`, computed on demand.
    pub fn state(&self) -> ConsumerGroupState {
        if self.dead {
            ConsumerGroupState::Dead
        } else if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().any(|member| !member.is_reconciled_to(self.assignment_epoch)) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// ConsumerGroupHeartbeat: join (epoch 0), heartbeat, or leave (-1, or
    /// -2 for a static member that comes back). `new_member_id` makes an id
    /// for a v0 member that sent none. On `Err` the group is unchanged.
    pub fn heartbeat(
        &mut self,
        request: &HeartbeatRequest,
        topics: &dyn TopicsView,
        config: &ConsumerGroupConfig,
        now: Instant,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        if self.dead {
            return Err(HeartbeatError::new(ErrorCode::GroupIdNotFound, format!("Group {} was deleted.", self.id)));
        }
        validate_request(&self.id, request, config)?;
        let result = match request.member_epoch {
            LEAVE_GROUP_MEMBER_EPOCH | LEAVE_GROUP_STATIC_MEMBER_EPOCH => self.leave(request),
            _ => self.member_heartbeat(request, topics, config, now, new_member_id),
        };
        debug_assert_eq!(self.check_invariants(), Ok(()));
        result
    }

    /// Removes the members whose session timed out, and those that still
    /// owe a revocation past their rebalance timeout; returns their ids.
    /// Call it at [`ConsumerGroup::next_deadline`] or on a periodic sweep.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| member.session_expired(now) || member.revocation_expired(now))
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in &expired {
            self.fence_member(member_id);
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
        expired
    }

    /// The earliest moment [`ConsumerGroup::expire`] may remove a member.
    pub fn next_deadline(&self) -> Option<Instant> {
        let sessions = self.members.values().map(ConsumerMember::session_deadline);
        let revocations = self.members.values().filter_map(|member| member.revocation_deadline);
        sessions.chain(revocations).min()
    }

    /// Whether a member subscribes to `topic`, by name or through a regular
    /// expression matching an existing topic (OffsetDelete refuses to delete
    /// such a topic's offsets: GROUP_SUBSCRIBED_TO_TOPIC).
    pub fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        self.subscribed_names.contains_key(topic) || self.subscription_metadata.contains_key(topic)
    }

    /// Offset retention for this group (Kafka's rule for consumer-protocol
    /// groups): offsets of topics no member subscribes to expire
    /// `retention_ms` after their commit; the group may be deleted once it
    /// is empty and none is left.
    pub fn expire_offsets<'a>(
        &self,
        offsets: impl IntoIterator<Item = (&'a TopicPartition, &'a Committed)>,
        now_ms: i64,
        retention_ms: i64,
    ) -> OffsetExpiry {
        let mut expiry = OffsetExpiry { expired: Vec::new(), delete_group: self.members.is_empty() };
        for (partition, committed) in offsets {
            let old = now_ms.saturating_sub(committed.commit_timestamp_ms) >= retention_ms;
            if old && !self.is_subscribed_to_topic(&partition.0) {
                expiry.expired.push(partition.clone());
            } else {
                expiry.delete_group = false;
            }
        }
        expiry
    }

    /// Makes the next heartbeat resolve the regular expressions again: the
    /// coordinator calls it when topics were created or deleted.
    pub fn request_metadata_refresh(&mut self) {
        self.regex_refresh_requested = true;
    }

    /// DeleteGroups: only an empty group may be deleted; it is Dead after.
    pub fn delete(&mut self) -> Result<(), ErrorCode> {
        if !self.members.is_empty() {
            return Err(ErrorCode::NonEmptyGroup);
        }
        self.dead = true;
        self.changed();
        Ok(())
    }

    /// OffsetCommit v9+ from a consumer-protocol client: see
    /// [`ConsumerGroup::validate_offset_commit`].
    pub fn validate_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), ErrorCode> {
        self.validate_offset_commit(member_id, member_epoch, OFFSET_COMMIT_VERSION_MIN, false)
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit`: a commit without a
    /// member epoch (admin clients, manual assignment) only to an empty
    /// group; otherwise the member must exist (UNKNOWN_MEMBER_ID), commit
    /// with OffsetCommit v9+ unless transactional (UNSUPPORTED_VERSION), and
    /// give exactly its current epoch (STALE_MEMBER_EPOCH): the previous
    /// epoch is not accepted.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        api_version: i16,
        is_transactional: bool,
    ) -> Result<(), ErrorCode> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        if !is_transactional && api_version < OFFSET_COMMIT_VERSION_MIN {
            return Err(ErrorCode::UnsupportedVersion);
        }
        if member_epoch != member.member_epoch {
            return Err(ErrorCode::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Kafka's `ConsumerGroup.validateOffsetFetch` (OffsetFetch v9+): no
    /// member id (null) with a negative epoch is always allowed; otherwise
    /// the member must exist with exactly that epoch, as for commits.
    pub fn validate_offset_fetch(&self, member_id: Option<&str>, member_epoch: i32) -> Result<(), ErrorCode> {
        if member_id.is_none() && member_epoch < 0 {
            return Ok(());
        }
        let member = member_id.and_then(|id| self.members.get(id)).ok_or(ErrorCode::UnknownMemberId)?;
        if member_epoch != member.member_epoch {
            return Err(ErrorCode::StaleMemberEpoch);
        }
        Ok(())
    }
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`: the checks that
/// need no group state. Public so that a coordinator can run them before it
/// creates a group for a join.
pub fn validate_request(
    group_id: &str,
    request: &HeartbeatRequest,
    config: &ConsumerGroupConfig,
) -> Result<(), HeartbeatError> {
    let blank = |value: Option<&str>| value.is_some_and(|value| value.trim().is_empty());
    let epoch = request.member_epoch;
    if (request.api_version >= CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION
        || epoch > 0
        || epoch == LEAVE_GROUP_MEMBER_EPOCH)
        && blank(Some(request.member_id.as_str()))
    {
        return Err(HeartbeatError::invalid("MemberId can't be empty."));
    }
    if blank(Some(group_id)) {
        return Err(HeartbeatError::invalid("GroupId can't be empty."));
    }
    if blank(request.instance_id.as_deref()) {
        return Err(HeartbeatError::invalid("InstanceId can't be empty."));
    }
    if blank(request.rack_id.as_deref()) {
        return Err(HeartbeatError::invalid("RackId can't be empty."));
    }
    if epoch == JOIN_GROUP_MEMBER_EPOCH {
        if request.rebalance_timeout_ms == -1 {
            return Err(HeartbeatError::invalid("RebalanceTimeoutMs must be provided in first request."));
        }
        if !request.owned_partitions.as_ref().is_some_and(|owned| normalised(owned).is_empty()) {
            return Err(HeartbeatError::invalid("TopicPartitions must be empty when (re-)joining."));
        }
        // Kafka accepts an empty list of names or an empty regex: such a
        // member belongs to the group but reads nothing.
        if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none() {
            return Err(HeartbeatError::invalid(
                "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
            ));
        }
    } else if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        if request.instance_id.is_none() {
            return Err(HeartbeatError::invalid("InstanceId can't be null."));
        }
    } else if epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        return Err(HeartbeatError::invalid("MemberEpoch is invalid."));
    }
    if let Some(name) = request.server_assignor.as_deref().filter(|name| config.assignor(name).is_none()) {
        let supported: Vec<&str> = config.assignors.iter().map(|assignor| assignor.name()).collect();
        return Err(HeartbeatError::new(
            ErrorCode::UnsupportedAssignor,
            format!("ServerAssignor {name} is not supported. Supported assignors: {}.", supported.join(", ")),
        ));
    }
    Ok(())
}

/// Compiles a SubscribedTopicRegex the way Kafka matches it: against the
/// whole topic name. The pattern is compiled alone first, so that a pattern
/// such as `a)|(b` is refused instead of changing meaning inside the anchors.
fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).size_limit(REGEX_COMPILED_BYTES_MAX).build()?;
    RegexBuilder::new(&format!("^(?:{pattern})$")).size_limit(REGEX_COMPILED_BYTES_MAX).build()
}

/// Drops topics with no partitions, so that `{t: []}` and `{}` compare equal.
fn normalised(partitions: &TopicPartitions) -> TopicPartitions {
    partitions.iter().filter(|(_, set)| !set.is_empty()).map(|(topic_id, set)| (*topic_id, set.clone())).collect()
}

fn contains(partitions: &TopicPartitions, topic_id: &Uuid, partition: i32) -> bool {
    partitions.get(topic_id).is_some_and(|set| set.contains(&partition))
}

fn each_partition(partitions: &TopicPartitions) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    partitions.iter().flat_map(|(topic_id, set)| set.iter().map(move |partition| (*topic_id, *partition)))
}

fn union(a: &TopicPartitions, b: &TopicPartitions) -> TopicPartitions {
    let mut all = normalised(a);
    for (topic_id, partition) in each_partition(b) {
        all.entry(topic_id).or_default().insert(partition);
    }
    all
}

/// Kafka's `isSubset`: a member coming back with its previous epoch is
/// accepted only if it owns nothing outside its current assignment.
fn owns_only(owned: Option<&TopicPartitions>, assigned: &TopicPartitions) -> bool {
    owned.is_some_and(|owned| {
        each_partition(owned).all(|(topic_id, partition)| contains(assigned, &topic_id, partition))
    })
}

/// Kafka's `ownsRevokedPartitions`: a member that did not say what it owns
/// is taken to still own everything it was asked to revoke.
fn owns_any(owned: Option<&TopicPartitions>, revoking: &TopicPartitions) -> bool {
    owned
        .is_none_or(|owned| each_partition(owned).any(|(topic_id, partition)| contains(revoking, &topic_id, partition)))
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`, with KAFKA-19233: a
/// member may always rejoin with epoch 0 (after being fenced it keeps its
/// member id). An older epoch is accepted only if it is the previous one and
/// the member owns nothing it should not: the response that moved it on may
/// have been lost.
fn check_member_epoch(member: &ConsumerMember, request: &HeartbeatRequest) -> Result<(), HeartbeatError> {
    let received = request.member_epoch;
    if received == JOIN_GROUP_MEMBER_EPOCH {
        return Ok(());
    }
    let fenced = |relation: &str| {
        HeartbeatError::new(
            ErrorCode::FencedMemberEpoch,
            format!(
                "The consumer group member has a {relation} member epoch ({received}) than the one known by the \
                 group coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.member_epoch
            ),
        )
    };
    if received > member.member_epoch {
        return Err(fenced("greater"));
    }
    if received < member.member_epoch
        && (received != member.previous_member_epoch
            || !owns_only(request.owned_partitions.as_ref(), &member.assigned_partitions))
    {
        return Err(fenced("smaller"));
    }
    if member.state == MemberState::Unknown
        && !request.owned_partitions.as_ref().is_some_and(|owned| normalised(owned).is_empty())
    {
        return Err(HeartbeatError::new(
            ErrorCode::FencedMemberEpoch,
            "The consumer group member is in a unknown state. The member must abandon all its partitions and rejoin.",
        ));
    }
    Ok(())
}

/// Kafka's `Builder.updateMemberEpoch`: the previous epoch is the one the
/// member had, even when it stays.
fn update_member_epoch(member: &mut ConsumerMember, member_epoch: i32) {
    member.previous_member_epoch = member.member_epoch;
    member.member_epoch = member_epoch;
}

/// Kafka's `CurrentAssignmentBuilder.build`: the member's next step towards
/// `target` at `target_epoch`, or `None` if it cannot move (or is there).
/// `owners` says who holds each partition now.
fn reconcile(
    member: &ConsumerMember,
    target_epoch: i32,
    target: &TopicPartitions,
    subscribed: &BTreeSet<Uuid>,
    owned: Option<&TopicPartitions>,
    owners: &HashMap<(Uuid, i32), String>,
) -> Option<ConsumerMember> {
    if member.is_reconciled_to(target_epoch) {
        return None;
    }
    let stay_epoch = match member.state {
        MemberState::UnrevokedPartitions if owns_any(owned, &member.partitions_pending_revocation) => return None,
        // A state from a newer version: start again from the target epoch
        // (the member was checked to own nothing).
        MemberState::Unknown => target_epoch,
        _ => member.member_epoch,
    };
    let next = next_assignment(member, stay_epoch, target_epoch, target, subscribed, owned, owners);
    (!next.same_persistent_state(member)).then_some(next)
}

/// Kafka's `computeNextAssignment`. Per topic: keep what is both assigned
/// and targeted; revoke the rest of the assignment; the targeted partitions
/// not yet assigned are given now unless another member still holds them.
/// Partitions of topics the member no longer subscribes to are not targeted.
fn next_assignment(
    member: &ConsumerMember,
    stay_epoch: i32,
    target_epoch: i32,
    target: &TopicPartitions,
    subscribed: &BTreeSet<Uuid>,
    owned: Option<&TopicPartitions>,
    owners: &HashMap<(Uuid, i32), String>,
) -> ConsumerMember {
    let empty = BTreeSet::new();
    let mut kept = TopicPartitions::new();
    let mut revoking = TopicPartitions::new();
    let mut given = TopicPartitions::new();
    let mut unreleased = false;
    let topic_ids: BTreeSet<Uuid> = target.keys().chain(member.assigned_partitions.keys()).copied().collect();
    for topic_id in topic_ids {
        let wanted = if subscribed.contains(&topic_id) { target.get(&topic_id).unwrap_or(&empty) } else { &empty };
        let current = member.assigned_partitions.get(&topic_id).unwrap_or(&empty);
        let keep: BTreeSet<i32> = current.intersection(wanted).copied().collect();
        let revoke: BTreeSet<i32> = current.difference(&keep).copied().collect();
        let mut give = BTreeSet::new();
        for &partition in wanted.difference(&keep) {
            // A partition this member still has pending revocation is its
            // own to take back; one held by anybody else is unreleased.
            let held_by_other = owners.get(&(topic_id, partition)).is_some_and(|owner| *owner != member.member_id);
            if held_by_other {
                unreleased = true;
            } else {
                give.insert(partition);
            }
        }
        for (map, set) in [(&mut kept, keep), (&mut revoking, revoke), (&mut given, give)] {
            if !set.is_empty() {
                map.insert(topic_id, set);
            }
        }
    }
    let mut next = member.clone();
    if !revoking.is_empty() && owns_any(owned, &revoking) {
        // Revoke first, at the current epoch.
        next.state = MemberState::UnrevokedPartitions;
        update_member_epoch(&mut next, stay_epoch);
        next.assigned_partitions = kept;
        next.partitions_pending_revocation = revoking;
    } else {
        next.state = if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
        update_member_epoch(&mut next, target_epoch);
        next.assigned_partitions = union(&kept, &given);
        next.partitions_pending_revocation = TopicPartitions::new();
    }
    next
}

// The heartbeat itself, and what it needs.
impl ConsumerGroup {
    /// A join or a regular heartbeat (Kafka's private `consumerGroupHeartbeat`).
    fn member_heartbeat(
        &mut self,
        request: &HeartbeatRequest,
        topics: &dyn TopicsView,
        config: &ConsumerGroupConfig,
        now: Instant,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        self.check_not_full(&request.member_id, config)?;
        let member_id = if request.member_id.is_empty() { new_member_id() } else { request.member_id.clone() };
        let (previous, replaced_member_id) = self.resolve_member(request, &member_id, now)?;
        let mut updated = previous.clone();
        updated.apply_request(request, config);
        let new_regex = self.compile_new_regex(&updated)?;
        // Nothing fails past this point: the group changes.
        let names_changed = previous.subscribed_topic_names != updated.subscribed_topic_names;
        let topics_before = self.effective_topic_names(&previous);
        if let Some(replaced_member_id) = replaced_member_id {
            self.replace_static_member(&replaced_member_id, &member_id);
        }
        if let Some((pattern, matcher)) = new_regex {
            let regex =
                ResolvedRegex { matcher: Some(matcher), subscribers: 0, topics: BTreeSet::new(), resolved: false };
            self.regexes.insert(pattern, regex);
        }
        if !self.members.get(&member_id).is_some_and(|member| member.same_persistent_state(&updated)) {
            self.changed();
        }
        self.insert_member(updated);
        let metadata_changed = self.refresh_subscription_metadata(topics, now);
        let topics_after = self.effective_topic_names(&self.members[&member_id]);
        if self.group_epoch == 0 || names_changed || metadata_changed || topics_before != topics_after {
            self.group_epoch += 1;
            self.changed();
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target_assignment(config);
        }
        self.reconcile_member(&member_id, request.owned_partitions.as_ref(), now);
        let member = self.members.get_mut(&member_id).expect("inserted above");
        member.last_heartbeat = now;
        Ok(self.heartbeat_response(request, &previous, &member_id, config))
    }

    /// Kafka's `throwIfConsumerGroupIsFull`: only members already in the
    /// group may heartbeat once it is full.
    fn check_not_full(&self, member_id: &str, config: &ConsumerGroupConfig) -> Result<(), HeartbeatError> {
        let full = self.members.len() >= config.max_size as usize;
        if full && (member_id.is_empty() || !self.members.contains_key(member_id)) {
            return Err(HeartbeatError::new(
                ErrorCode::GroupMaxSizeReached,
                format!("The consumer group has reached its maximum capacity of {} members.", config.max_size),
            ));
        }
        Ok(())
    }

    /// The member a heartbeat is about, as it is before the heartbeat (a
    /// new one for a join), and the member id a static member replaces.
    fn resolve_member(
        &self,
        request: &HeartbeatRequest,
        member_id: &str,
        now: Instant,
    ) -> Result<(ConsumerMember, Option<String>), HeartbeatError> {
        if let Some(instance_id) = &request.instance_id {
            return self.resolve_static_member(request, instance_id, member_id, now);
        }
        match self.members.get(member_id) {
            Some(member) => {
                check_member_epoch(member, request)?;
                Ok((member.clone(), None))
            }
            None if request.member_epoch == JOIN_GROUP_MEMBER_EPOCH => {
                Ok((ConsumerMember::new(member_id.to_owned(), now), None))
            }
            None => Err(unknown_member(member_id, &self.id)),
        }
    }

    /// Kafka's `getOrMaybeSubscribeStaticConsumerGroupMember`. A static
    /// member joining under a new member id replaces the old one only if
    /// that one left with epoch -2; the newcomer takes over its assignment
    /// and target, so nothing moves. One deliberate extension: the same
    /// member id rejoining with epoch 0 (after FENCED_MEMBER_EPOCH, as
    /// KAFKA-19233 allows dynamic members) is accepted instead of refused
    /// with UNRELEASED_INSTANCE_ID.
    fn resolve_static_member(
        &self,
        request: &HeartbeatRequest,
        instance_id: &str,
        member_id: &str,
        now: Instant,
    ) -> Result<(ConsumerMember, Option<String>), HeartbeatError> {
        let joining = request.member_epoch == JOIN_GROUP_MEMBER_EPOCH;
        let existing = self.static_members.get(instance_id).and_then(|id| self.members.get(id));
        match existing {
            None if joining => {
                let member = self.members.get(member_id).cloned();
                Ok((member.unwrap_or_else(|| ConsumerMember::new(member_id.to_owned(), now)), None))
            }
            None => {
                Err(HeartbeatError::new(ErrorCode::UnknownMemberId, format!("Instance id {instance_id} is unknown.")))
            }
            Some(existing) if joining && existing.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
                let mut member = existing.clone();
                member.member_id = member_id.to_owned();
                member.member_epoch = 0;
                member.previous_member_epoch = 0;
                let replaced = (existing.member_id != member_id).then(|| existing.member_id.clone());
                Ok((member, replaced))
            }
            Some(existing) if joining && existing.member_id != member_id => Err(HeartbeatError::new(
                ErrorCode::UnreleasedInstanceId,
                format!(
                    "Static member {member_id} with instance id {instance_id} cannot join the group because the \
                     instance id is owned by {} member.",
                    existing.member_id
                ),
            )),
            Some(existing) if existing.member_id != member_id => Err(HeartbeatError::new(
                ErrorCode::FencedInstanceId,
                format!(
                    "Static member {member_id} with instance id {instance_id} was fenced by member {}.",
                    existing.member_id
                ),
            )),
            Some(existing) => {
                check_member_epoch(existing, request)?;
                Ok((existing.clone(), None))
            }
        }
    }

    /// A regex nobody in the group uses yet is compiled here, so that an
    /// invalid one is refused before anything changes.
    fn compile_new_regex(&self, member: &ConsumerMember) -> Result<Option<(String, Regex)>, HeartbeatError> {
        let Some(pattern) = member.subscribed_topic_regex.as_ref().filter(|p| !self.regexes.contains_key(*p)) else {
            return Ok(None);
        };
        match compile_regex(pattern) {
            Ok(matcher) => Ok(Some((pattern.clone(), matcher))),
            Err(error) => Err(HeartbeatError::new(
                ErrorCode::InvalidRegularExpression,
                format!("SubscribedTopicRegex `{pattern}` is not a valid regular expression: {error}."),
            )),
        }
    }

    /// Moves a departed static member's target assignment to the member id
    /// that replaces it; the old member goes (its partitions are handed over
    /// when the newcomer is inserted).
    fn replace_static_member(&mut self, old_member_id: &str, new_member_id: &str) {
        let target = self.target_assignment.remove(old_member_id);
        self.remove_member(old_member_id);
        if let Some(target) = target {
            self.target_assignment.insert(new_member_id.to_owned(), target);
        }
        self.changed();
    }

    /// What goes back for a join or a heartbeat. The assignment is sent on a
    /// full request (a join, or every field set: what clients send after an
    /// error), when it changed, or when the member reports owning something
    /// else than it holds (it missed an answer).
    fn heartbeat_response(
        &self,
        request: &HeartbeatRequest,
        previous: &ConsumerMember,
        member_id: &str,
        config: &ConsumerGroupConfig,
    ) -> HeartbeatResponse {
        let member = &self.members[member_id];
        let full = request.member_epoch == JOIN_GROUP_MEMBER_EPOCH
            || (request.rebalance_timeout_ms != -1
                && request.subscribed_topic_names.is_some()
                && request.owned_partitions.is_some());
        let changed = previous.assigned_partitions != member.assigned_partitions;
        let held = union(&member.assigned_partitions, &member.partitions_pending_revocation);
        let owned_differs = request.owned_partitions.as_ref().is_some_and(|owned| normalised(owned) != held);
        HeartbeatResponse {
            member_id: member.member_id.clone(),
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: (full || changed || owned_differs).then(|| member.assigned_partitions.clone()),
        }
    }

    /// A heartbeat with epoch -1 (leave) or -2 (a static member leaving for
    /// a while: kept, at epoch -2, until its session times out).
    fn leave(&mut self, request: &HeartbeatRequest) -> Result<HeartbeatResponse, HeartbeatError> {
        let member_id = match &request.instance_id {
            None if self.members.contains_key(&request.member_id) => request.member_id.clone(),
            None => return Err(unknown_member(&request.member_id, &self.id)),
            Some(instance_id) => {
                let Some(existing) = self.static_members.get(instance_id) else {
                    let message = format!("Instance id {instance_id} is unknown.");
                    return Err(HeartbeatError::new(ErrorCode::UnknownMemberId, message));
                };
                if *existing != request.member_id {
                    return Err(HeartbeatError::new(
                        ErrorCode::FencedInstanceId,
                        format!(
                            "Static member {} with instance id {instance_id} was fenced by member {existing}.",
                            request.member_id
                        ),
                    ));
                }
                existing.clone()
            }
        };
        if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            let mut member = self.members[&member_id].clone();
            member.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
            member.partitions_pending_revocation = TopicPartitions::new();
            member.revocation_deadline = None;
            self.insert_member(member);
            self.changed();
        } else {
            self.fence_member(&member_id);
        }
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }
}

fn unknown_member(member_id: &str, group_id: &str) -> HeartbeatError {
    HeartbeatError::new(ErrorCode::UnknownMemberId, format!("Member {member_id} is not a member of group {group_id}."))
}

// Subscriptions, target assignment and reconciliation.
impl ConsumerGroup {
    /// The topic names a member reads: its names and what its regex matched.
    fn effective_topic_names(&self, member: &ConsumerMember) -> BTreeSet<String> {
        let mut names = member.subscribed_topic_names.clone();
        if let Some(regex) = member.subscribed_topic_regex.as_ref().and_then(|pattern| self.regexes.get(pattern)) {
            names.extend(regex.topics.iter().cloned());
        }
        names
    }

    /// The ids of the existing topics a member reads.
    fn subscribed_topic_ids(&self, member: &ConsumerMember) -> BTreeSet<Uuid> {
        let names = self.effective_topic_names(member);
        names.iter().filter_map(|name| self.subscription_metadata.get(name)).map(|(topic_id, _)| *topic_id).collect()
    }

    /// Resolves the regexes if due, then looks up every subscribed topic;
    /// returns whether anything changed (which bumps the group epoch).
    fn refresh_subscription_metadata(&mut self, topics: &dyn TopicsView, now: Instant) -> bool {
        let regexes_changed = self.resolve_regexes_if_due(topics, now);
        let wanted: BTreeSet<&String> =
            self.subscribed_names.keys().chain(self.regexes.values().flat_map(|regex| regex.topics.iter())).collect();
        let metadata: BTreeMap<String, (Uuid, i32)> = wanted
            .into_iter()
            .filter_map(|name| topics.topic_by_name(name).map(|topic| (name.clone(), topic)))
            .collect();
        if metadata == self.subscription_metadata {
            return regexes_changed;
        }
        self.subscription_metadata = metadata;
        self.changed();
        true
    }

    /// Kafka's regex refresh: when a regex is new, when the coordinator
    /// asked, or every [`REGEX_REFRESH_INTERVAL`]. Returns whether a regex
    /// that was already resolved now matches other topics (its members'
    /// targets change even if the group's topics do not). A regex resolved
    /// for the first time (new, or after a restore) is no such change.
    fn resolve_regexes_if_due(&mut self, topics: &dyn TopicsView, now: Instant) -> bool {
        let due = self.regex_refresh_requested
            || self.regexes.values().any(|regex| !regex.resolved)
            || self.regexes_resolved_at.is_none_or(|at| now.duration_since(at) >= REGEX_REFRESH_INTERVAL);
        if !due || self.regexes.is_empty() {
            return false;
        }
        let names = topics.topic_names();
        let mut changed = false;
        for regex in self.regexes.values_mut() {
            let matcher = regex.matcher.as_ref();
            let matched: BTreeSet<String> =
                names.iter().filter(|name| matcher.is_some_and(|m| m.is_match(name))).cloned().collect();
            changed |= regex.resolved && matched != regex.topics;
            regex.topics = matched;
            regex.resolved = true;
        }
        self.regexes_resolved_at = Some(now);
        self.regex_refresh_requested = false;
        changed
    }

    /// Forgets the metadata of topics nobody subscribes to any more (after a
    /// member left), so that the next heartbeat does not count it as a change.
    fn prune_subscription_metadata(&mut self) {
        let regexes = &self.regexes;
        let names = &self.subscribed_names;
        self.subscription_metadata
            .retain(|name, _| names.contains_key(name) || regexes.values().any(|regex| regex.topics.contains(name)));
    }

    /// Kafka's `preferredServerAssignor`: the assignor most members ask for
    /// (ties go to the one listed first in the config), else the default.
    fn preferred_assignor(&self, config: &ConsumerGroupConfig) -> Assignor {
        let mut best = (config.default_assignor(), 0usize);
        for assignor in &config.assignors {
            let votes = self
                .members
                .values()
                .filter(|member| {
                    member.server_assignor.as_deref().and_then(|name| config.assignor(name)) == Some(*assignor)
                })
                .count();
            if votes > best.1 {
                best = (*assignor, votes);
            }
        }
        best.0
    }

    /// Kafka's TargetAssignmentBuilder: every member's new target, from the
    /// previous targets, at the group epoch.
    fn compute_target_assignment(&mut self, config: &ConsumerGroupConfig) {
        let assignor = self.preferred_assignor(config);
        let partition_counts: BTreeMap<Uuid, i32> = self.subscription_metadata.values().copied().collect();
        let input: BTreeMap<String, AssignmentMember> = self
            .members
            .values()
            .map(|member| {
                let spec = AssignmentMember {
                    instance_id: member.instance_id.clone(),
                    rack_id: member.rack_id.clone(),
                    subscribed_topic_ids: self.subscribed_topic_ids(member),
                    current_assignment: self.target_assignment(&member.member_id),
                };
                (member.member_id.clone(), spec)
            })
            .collect();
        self.target_assignment = assignor.assign(&input, &partition_counts);
        self.assignment_epoch = self.group_epoch;
        self.changed();
    }

    /// One reconciliation step for the heartbeating member. Entering (or
    /// changing within) UNREVOKED_PARTITIONS starts its rebalance timeout;
    /// any other move clears it.
    fn reconcile_member(&mut self, member_id: &str, owned: Option<&TopicPartitions>, now: Instant) {
        let member = &self.members[member_id];
        let target = self.target_assignment(member_id);
        let subscribed = self.subscribed_topic_ids(member);
        let owned = owned.map(normalised);
        let Some(mut next) =
            reconcile(member, self.assignment_epoch, &target, &subscribed, owned.as_ref(), &self.partition_owners)
        else {
            return;
        };
        next.revocation_deadline = (next.state == MemberState::UnrevokedPartitions)
            .then(|| now + Duration::from_millis(next.rebalance_timeout_ms.max(0) as u64));
        self.insert_member(next);
        self.changed();
    }

    /// Removes a member for good (leave, session or rebalance timeout) and
    /// bumps the group epoch so that the others share its partitions.
    fn fence_member(&mut self, member_id: &str) {
        if self.remove_member(member_id).is_none() {
            return;
        }
        self.target_assignment.remove(member_id);
        self.group_epoch += 1;
        if self.members.is_empty() {
            // KAFKA-20442: an empty group has nothing to assign.
            self.assignment_epoch = self.group_epoch;
        }
        self.prune_subscription_metadata();
        self.changed();
    }

    fn changed(&mut self) {
        self.change_count += 1;
    }
}

// The indexes: every member write goes through these two.
impl ConsumerGroup {
    /// Inserts or replaces a member, keeping every index in step. The new
    /// subscription is counted before the old one is forgotten, so that a
    /// regex kept across an update keeps its resolution.
    fn insert_member(&mut self, member: ConsumerMember) {
        self.count_subscription(&member);
        self.remove_member(&member.member_id);
        if let Some(instance_id) = &member.instance_id {
            self.static_members.insert(instance_id.clone(), member.member_id.clone());
        }
        for partitions in [&member.assigned_partitions, &member.partitions_pending_revocation] {
            for (topic_id, partition) in each_partition(partitions) {
                let previous = self.partition_owners.insert((topic_id, partition), member.member_id.clone());
                assert!(
                    previous.is_none(),
                    "group {}: partition {topic_id}-{partition} given to {} while {previous:?} holds it",
                    self.id,
                    member.member_id
                );
            }
        }
        self.members.insert(member.member_id.clone(), member);
    }

    fn count_subscription(&mut self, member: &ConsumerMember) {
        for name in &member.subscribed_topic_names {
            *self.subscribed_names.entry(name.clone()).or_default() += 1;
        }
        if let Some(pattern) = &member.subscribed_topic_regex {
            let regex = self.regexes.entry(pattern.clone()).or_insert_with(|| ResolvedRegex {
                // Only a restored member gets here with a regex not seen
                // before; one that no longer compiles matches nothing.
                matcher: compile_regex(pattern).ok(),
                subscribers: 0,
                topics: BTreeSet::new(),
                resolved: false,
            });
            regex.subscribers += 1;
        }
    }

    /// Removes a member from the members and every index (not from the
    /// target assignment: a replaced static member hands its target over).
    fn remove_member(&mut self, member_id: &str) -> Option<ConsumerMember> {
        let member = self.members.remove(member_id)?;
        self.uncount_subscription(&member);
        if let Some(instance_id) = &member.instance_id {
            if self.static_members.get(instance_id) == Some(&member.member_id) {
                self.static_members.remove(instance_id);
            }
        }
        for partitions in [&member.assigned_partitions, &member.partitions_pending_revocation] {
            for (topic_id, partition) in each_partition(partitions) {
                self.partition_owners.remove(&(topic_id, partition));
            }
        }
        Some(member)
    }

    fn uncount_subscription(&mut self, member: &ConsumerMember) {
        for name in &member.subscribed_topic_names {
            if let Some(count) = self.subscribed_names.get_mut(name) {
                *count -= 1;
                if *count == 0 {
                    self.subscribed_names.remove(name);
                }
            }
        }
        if let Some(pattern) = &member.subscribed_topic_regex {
            if let Some(regex) = self.regexes.get_mut(pattern) {
                regex.subscribers -= 1;
                if regex.subscribers == 0 {
                    self.regexes.remove(pattern);
                }
            }
        }
    }

    /// Checks the module's invariants; `Err` names the first one broken.
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
        let mut owners: HashMap<(Uuid, i32), String> = HashMap::new();
        let mut statics: BTreeMap<String, String> = BTreeMap::new();
        for member in self.members.values() {
            for partitions in [&member.assigned_partitions, &member.partitions_pending_revocation] {
                for key in each_partition(partitions) {
                    if let Some(other) = owners.insert(key, member.member_id.clone()) {
                        return Err(format!("{key:?} held by {other} and {}", member.member_id));
                    }
                }
            }
            if let Some(instance_id) = &member.instance_id {
                statics.insert(instance_id.clone(), member.member_id.clone());
            }
            if member.revocation_deadline.is_some() && member.state != MemberState::UnrevokedPartitions {
                return Err(format!("{} has a revocation deadline in {:?}", member.member_id, member.state));
            }
        }
        if owners != self.partition_owners {
            return Err("partition owner index out of step".into());
        }
        if statics != self.static_members {
            return Err(format!("static member index {:?}, members say {statics:?}", self.static_members));
        }
        Ok(())
    }
}

/// ConsumerGroupDescribe v0-v1: one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    pub group_id: String,
    pub group_state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor_name: &'static str,
    pub members: Vec<MemberDescription>,
}

/// ConsumerGroupDescribe: one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    /// The member's current assignment (without partitions being revoked).
    pub assignment: Vec<DescribedTopicPartitions>,
    pub target_assignment: Vec<DescribedTopicPartitions>,
    /// v1: [`MEMBER_TYPE_CONSUMER`].
    pub member_type: i8,
}

/// A topic's partitions with its name, as ConsumerGroupDescribe lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedTopicPartitions {
    pub topic_id: Uuid,
    pub topic_name: String,
    pub partitions: Vec<i32>,
}

/// ListGroups: one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: &'static str,
    pub group_state: &'static str,
    pub group_type: &'static str,
}

/// DescribeGroups (the classic API) for a consumer-protocol group. Kafka 4
/// describes only classic groups there: any other group is Dead, with
/// GROUP_ID_NOT_FOUND from v6 (clients use ConsumerGroupDescribe instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassicDescription {
    pub error_code: i16,
    pub group_state: &'static str,
}

impl ConsumerGroup {
    /// ConsumerGroupDescribe. Topics the metadata no longer knows are left
    /// out of the assignments, as Kafka does.
    pub fn describe(&self, topics: &dyn TopicsView, config: &ConsumerGroupConfig) -> ConsumerGroupDescription {
        let describe_partitions = |partitions: &TopicPartitions| -> Vec<DescribedTopicPartitions> {
            partitions
                .iter()
                .filter_map(|(topic_id, set)| {
                    let (topic_name, _) = topics.topic_by_id(topic_id)?;
                    Some(DescribedTopicPartitions {
                        topic_id: *topic_id,
                        topic_name,
                        partitions: set.iter().copied().collect(),
                    })
                })
                .collect()
        };
        let members = self
            .members
            .values()
            .map(|member| MemberDescription {
                member_id: member.member_id.clone(),
                instance_id: member.instance_id.clone(),
                rack_id: member.rack_id.clone(),
                member_epoch: member.member_epoch,
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                subscribed_topic_names: member.subscribed_topic_names.iter().cloned().collect(),
                subscribed_topic_regex: member.subscribed_topic_regex.clone(),
                assignment: describe_partitions(&member.assigned_partitions),
                target_assignment: describe_partitions(&self.target_assignment(&member.member_id)),
                member_type: MEMBER_TYPE_CONSUMER,
            })
            .collect();
        ConsumerGroupDescription {
            group_id: self.id.clone(),
            group_state: self.state().name(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor_name: self.preferred_assignor(config).name(),
            members,
        }
    }

    /// ListGroups.
    pub fn listed(&self) -> ListedGroup {
        ListedGroup {
            group_id: self.id.clone(),
            protocol_type: PROTOCOL_TYPE,
            group_state: self.state().name(),
            group_type: GROUP_TYPE,
        }
    }

    /// DescribeGroups at `describe_groups_version`: see [`ClassicDescription`].
    pub fn classic_describe(&self, describe_groups_version: i16) -> ClassicDescription {
        let error_code = if describe_groups_version >= DESCRIBE_GROUPS_NOT_FOUND_VERSION_MIN {
            ErrorCode::GroupIdNotFound.code()
        } else {
            0
        };
        ClassicDescription { error_code, group_state: ConsumerGroupState::Dead.name() }
    }
}

/// What the coordinator persists of a group to rebuild it after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupSnapshot {
    pub group_id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// The subscribed topics as last seen (name → id, partition count), so
    /// that a restart does not look like a metadata change.
    pub subscription_metadata: BTreeMap<String, (Uuid, i32)>,
    /// Sorted by member id.
    pub members: Vec<ConsumerMemberSnapshot>,
}

/// One member in a [`ConsumerGroupSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerMemberSnapshot {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// Persist [`MemberState::value`]; [`MemberState::from_value`] reads it.
    pub state: MemberState,
    pub assigned_partitions: TopicPartitions,
    pub partitions_pending_revocation: TopicPartitions,
    /// The member's target assignment.
    pub target_partitions: TopicPartitions,
}

/// Why a snapshot cannot be restored: it breaks an invariant no group
/// could have had, so it is damaged or not ours.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("consumer group {group_id}: member {member_id} appears twice")]
    DuplicateMember { group_id: String, member_id: String },
    #[error("consumer group {group_id}: instance id {instance_id} is carried by {first} and {second}")]
    DuplicateInstanceId { group_id: String, instance_id: String, first: String, second: String },
    #[error("consumer group {group_id}: partition {topic_id}-{partition} is held by {first} and {second}")]
    PartitionHeldTwice { group_id: String, topic_id: Uuid, partition: i32, first: String, second: String },
    #[error("consumer group {group_id}: assignment epoch {assignment_epoch} is ahead of group epoch {group_epoch}")]
    EpochsOutOfOrder { group_id: String, group_epoch: i32, assignment_epoch: i32 },
}

impl ConsumerGroup {
    /// The persistent part of the group.
    pub fn snapshot(&self) -> ConsumerGroupSnapshot {
        let members = self
            .members
            .values()
            .map(|member| ConsumerMemberSnapshot {
                member_id: member.member_id.clone(),
                instance_id: member.instance_id.clone(),
                rack_id: member.rack_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                subscribed_topic_names: member.subscribed_topic_names.iter().cloned().collect(),
                subscribed_topic_regex: member.subscribed_topic_regex.clone(),
                server_assignor: member.server_assignor.clone(),
                rebalance_timeout_ms: member.rebalance_timeout_ms,
                session_timeout_ms: member.session_timeout_ms,
                member_epoch: member.member_epoch,
                previous_member_epoch: member.previous_member_epoch,
                state: member.state,
                assigned_partitions: member.assigned_partitions.clone(),
                partitions_pending_revocation: member.partitions_pending_revocation.clone(),
                target_partitions: normalised(&self.target_assignment(&member.member_id)),
            })
            .collect();
        ConsumerGroupSnapshot {
            group_id: self.id.clone(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            subscription_metadata: self.subscription_metadata.clone(),
            members,
        }
    }

    /// Rebuilds a group from its snapshot. Every member starts a fresh
    /// session (last heartbeat = `now`), and one that owes a revocation a
    /// fresh rebalance timeout, as Kafka reschedules its timers on load.
    /// Regexes are resolved again on the next heartbeat.
    pub fn restore(snapshot: ConsumerGroupSnapshot, now: Instant) -> Result<ConsumerGroup, SnapshotError> {
        check_snapshot(&snapshot)?;
        let mut group = ConsumerGroup::new(snapshot.group_id);
        group.group_epoch = snapshot.group_epoch;
        group.assignment_epoch = snapshot.assignment_epoch;
        group.subscription_metadata = snapshot.subscription_metadata;
        for saved in snapshot.members {
            let revocation_deadline = (saved.state == MemberState::UnrevokedPartitions
                && saved.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH)
                .then(|| now + Duration::from_millis(saved.rebalance_timeout_ms.max(0) as u64));
            let member = ConsumerMember {
                member_id: saved.member_id,
                instance_id: saved.instance_id,
                rack_id: saved.rack_id,
                client_id: saved.client_id,
                client_host: saved.client_host,
                rebalance_timeout_ms: saved.rebalance_timeout_ms,
                session_timeout_ms: saved.session_timeout_ms,
                subscribed_topic_names: saved.subscribed_topic_names.into_iter().collect(),
                subscribed_topic_regex: saved.subscribed_topic_regex,
                server_assignor: saved.server_assignor,
                member_epoch: saved.member_epoch,
                previous_member_epoch: saved.previous_member_epoch,
                state: saved.state,
                assigned_partitions: normalised(&saved.assigned_partitions),
                partitions_pending_revocation: normalised(&saved.partitions_pending_revocation),
                last_heartbeat: now,
                revocation_deadline,
            };
            group.target_assignment.insert(member.member_id.clone(), normalised(&saved.target_partitions));
            group.insert_member(member);
        }
        debug_assert_eq!(group.check_invariants(), Ok(()));
        Ok(group)
    }
}

/// The checks `restore` needs so that rebuilding the indexes cannot trip
/// an assertion.
fn check_snapshot(snapshot: &ConsumerGroupSnapshot) -> Result<(), SnapshotError> {
    let group_id = || snapshot.group_id.clone();
    if snapshot.assignment_epoch > snapshot.group_epoch
        || (snapshot.members.is_empty() && snapshot.assignment_epoch != snapshot.group_epoch)
    {
        return Err(SnapshotError::EpochsOutOfOrder {
            group_id: group_id(),
            group_epoch: snapshot.group_epoch,
            assignment_epoch: snapshot.assignment_epoch,
        });
    }
    let mut member_ids = BTreeSet::new();
    let mut instances: BTreeMap<&str, &str> = BTreeMap::new();
    let mut owners: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
    for member in &snapshot.members {
        if !member_ids.insert(member.member_id.as_str()) {
            return Err(SnapshotError::DuplicateMember { group_id: group_id(), member_id: member.member_id.clone() });
        }
        if let Some(instance_id) = &member.instance_id {
            if let Some(first) = instances.insert(instance_id, &member.member_id) {
                return Err(SnapshotError::DuplicateInstanceId {
                    group_id: group_id(),
                    instance_id: instance_id.clone(),
                    first: first.to_owned(),
                    second: member.member_id.clone(),
                });
            }
        }
        for partitions in [&member.assigned_partitions, &member.partitions_pending_revocation] {
            for (topic_id, partition) in each_partition(partitions) {
                if let Some(first) = owners.insert((topic_id, partition), &member.member_id) {
                    return Err(SnapshotError::PartitionHeldTwice {
                        group_id: group_id(),
                        topic_id,
                        partition,
                        first: first.to_owned(),
                        second: member.member_id.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A BTreeMap-backed topics view: name → (id, partition count).
    #[derive(Clone, Debug, Default)]
    struct Topics(BTreeMap<String, (Uuid, i32)>);

    impl Topics {
        fn with(mut self, name: &str, partitions: i32) -> Topics {
            self.set(name, partitions);
            self
        }

        fn set(&mut self, name: &str, partitions: i32) {
            self.0.insert(name.to_owned(), (topic_id(name), partitions));
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

    /// A stable id per topic name, so tests can name partitions by topic.
    fn topic_id(name: &str) -> Uuid {
        Uuid::from_u128(name.bytes().fold(0x5eed_u128, |hash, byte| hash.wrapping_mul(131).wrapping_add(byte as u128)))
    }

    fn tp(entries: &[(&str, &[i32])]) -> TopicPartitions {
        entries.iter().map(|(name, partitions)| (topic_id(name), partitions.iter().copied().collect())).collect()
    }

    /// A v1 join: epoch 0, a subscription, a rebalance timeout, nothing owned.
    fn join(member_id: &str, topics: &[&str]) -> HeartbeatRequest {
        HeartbeatRequest {
            api_version: 1,
            member_id: member_id.into(),
            member_epoch: JOIN_GROUP_MEMBER_EPOCH,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(topics.iter().map(|name| name.to_string()).collect()),
            owned_partitions: Some(TopicPartitions::new()),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            ..Default::default()
        }
    }

    fn static_join(member_id: &str, instance_id: &str, topics: &[&str]) -> HeartbeatRequest {
        HeartbeatRequest { instance_id: Some(instance_id.into()), ..join(member_id, topics) }
    }

    /// A regular heartbeat: only the epoch and, if given, what it owns.
    fn beat(member_id: &str, member_epoch: i32, owned: Option<TopicPartitions>) -> HeartbeatRequest {
        HeartbeatRequest {
            api_version: 1,
            member_id: member_id.into(),
            member_epoch,
            rebalance_timeout_ms: -1,
            owned_partitions: owned,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            ..Default::default()
        }
    }

    struct Harness {
        group: ConsumerGroup,
        topics: Topics,
        config: ConsumerGroupConfig,
        now: Instant,
    }

    impl Harness {
        fn new(topics: Topics) -> Harness {
            Harness {
                group: ConsumerGroup::new("group".into()),
                topics,
                config: ConsumerGroupConfig::default(),
                now: Instant::now(),
            }
        }

        fn send(&mut self, request: HeartbeatRequest) -> Result<HeartbeatResponse, HeartbeatError> {
            self.group.heartbeat(&request, &self.topics, &self.config, self.now, || "generated".to_owned())
        }

        fn ok(&mut self, request: HeartbeatRequest) -> HeartbeatResponse {
            let description = format!("{request:?}");
            self.send(request).unwrap_or_else(|error| panic!("{description} refused: {error}"))
        }

        fn refused(&mut self, request: HeartbeatRequest) -> ErrorCode {
            let before = self.group.snapshot();
            let code = self.send(request).expect_err("heartbeat refused").code;
            assert_eq!(self.group.snapshot(), before, "a refused heartbeat changes nothing");
            code
        }

        fn advance_ms(&mut self, ms: u64) {
            self.now += Duration::from_millis(ms);
        }

        fn state_of(&self, member_id: &str) -> (i32, MemberState) {
            let member = self.group.member(member_id).expect("member");
            (member.member_epoch, member.state)
        }

        /// Two members a and b on one topic of 4 partitions, both stable at
        /// epoch 2 (a has 0-1, b has 2-3).
        fn two_stable_members() -> Harness {
            let mut harness = Harness::new(Topics::default().with("t", 4));
            harness.ok(join("a", &["t"]));
            harness.ok(join("b", &["t"]));
            harness.ok(beat("a", 1, Some(tp(&[("t", &[0, 1])]))));
            harness.ok(beat("b", 2, Some(TopicPartitions::new())));
            assert_eq!(harness.group.state(), ConsumerGroupState::Stable);
            harness
        }
    }

    #[test]
    fn a_lone_member_joins_and_gets_every_partition_at_epoch_1() {
        // Proves a first join creates the group's epoch 1, computes the
        // target and hands the whole topic over at once (nobody holds it).
        let mut harness = Harness::new(Topics::default().with("t", 3).with("other", 2));
        assert_eq!(harness.group.state(), ConsumerGroupState::Empty);
        let response = harness.ok(join("a", &["t"]));
        assert_eq!((response.member_id.as_str(), response.member_epoch), ("a", 1));
        assert_eq!(response.heartbeat_interval_ms, 5_000);
        assert_eq!(response.assignment, Some(tp(&[("t", &[0, 1, 2])])));
        assert_eq!((harness.group.group_epoch(), harness.group.assignment_epoch()), (1, 1));
        assert_eq!(harness.group.state(), ConsumerGroupState::Stable);
        // A steady heartbeat neither changes nor resends anything.
        let changes = harness.group.change_count();
        let response = harness.ok(beat("a", 1, None));
        assert_eq!((response.member_epoch, response.assignment), (1, None));
        assert_eq!(harness.group.change_count(), changes);
    }

    #[test]
    fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
        // Proves the KIP-848 reconciliation order: the newcomer moves to the
        // new epoch but waits (UNRELEASED_PARTITIONS) for the partitions the
        // first member still holds; the first is asked to revoke them and
        // stays at its epoch (UNREVOKED_PARTITIONS) until its owned
        // partitions no longer include them.
        let mut harness = Harness::new(Topics::default().with("t", 4));
        harness.ok(join("a", &["t"]));
        let b = harness.ok(join("b", &["t"]));
        assert_eq!((b.member_epoch, b.assignment), (2, Some(TopicPartitions::new())));
        assert_eq!(harness.state_of("b"), (2, MemberState::UnreleasedPartitions));
        assert_eq!(harness.group.state(), ConsumerGroupState::Reconciling);

        let a = harness.ok(beat("a", 1, None));
        assert_eq!((a.member_epoch, a.assignment), (1, Some(tp(&[("t", &[0, 1])]))));
        assert_eq!(harness.state_of("a"), (1, MemberState::UnrevokedPartitions));
        let b = harness.ok(beat("b", 2, None));
        assert_eq!(b.assignment, None, "b still waits");
        // Still owning 2 and 3 is not an acknowledgement.
        harness.ok(beat("a", 1, Some(tp(&[("t", &[0, 1, 2, 3])]))));
        assert_eq!(harness.state_of("a"), (1, MemberState::UnrevokedPartitions));

        let a = harness.ok(beat("a", 1, Some(tp(&[("t", &[0, 1])]))));
        assert_eq!((a.member_epoch, a.assignment), (2, None));
        assert_eq!(harness.state_of("a"), (2, MemberState::Stable));
        let b = harness.ok(beat("b", 2, None));
        assert_eq!(b.assignment, Some(tp(&[("t", &[2, 3])])));
        assert_eq!(harness.state_of("b"), (2, MemberState::Stable));
        assert_eq!(harness.group.state(), ConsumerGroupState::Stable);
    }

    #[test]
    fn a_member_leaving_gives_its_partitions_to_the_rest() {
        // Proves a -1 heartbeat removes the member and bumps the group epoch;
        // the next heartbeat of the other member computes the new target and
        // hands it the freed partitions directly.
        let mut harness = Harness::two_stable_members();
        let left = harness.ok(beat("b", LEAVE_GROUP_MEMBER_EPOCH, None));
        assert_eq!((left.member_id.as_str(), left.member_epoch, left.assignment), ("b", -1, None));
        assert!(harness.group.member("b").is_none());
        assert_eq!((harness.group.group_epoch(), harness.group.assignment_epoch()), (3, 2));
        assert_eq!(harness.group.state(), ConsumerGroupState::Assigning);
        let a = harness.ok(beat("a", 2, None));
        assert_eq!((a.member_epoch, a.assignment), (3, Some(tp(&[("t", &[0, 1, 2, 3])]))));
        assert_eq!(harness.group.state(), ConsumerGroupState::Stable);
        assert_eq!(harness.refused(beat("b", 2, None)), ErrorCode::UnknownMemberId);
        // The last member leaving empties the group at matching epochs.
        harness.ok(beat("a", LEAVE_GROUP_MEMBER_EPOCH, None));
        assert_eq!(harness.group.state(), ConsumerGroupState::Empty);
        assert_eq!((harness.group.group_epoch(), harness.group.assignment_epoch()), (4, 4));
    }

    #[test]
    fn a_member_that_stops_heartbeating_is_evicted_after_its_session_timeout() {
        // Proves expire() removes a member silent for longer than
        // group.consumer.session.timeout.ms, and only that member.
        let mut harness = Harness::two_stable_members();
        for _ in 0..9 {
            harness.advance_ms(5_000);
            harness.ok(beat("a", 2, None));
            assert!(harness.group.expire(harness.now).is_empty());
        }
        assert_eq!(harness.group.next_deadline(), Some(harness.now), "b's session ends now");
        harness.advance_ms(1_000);
        harness.ok(beat("a", 2, None));
        assert_eq!(harness.group.expire(harness.now), vec!["b".to_string()]);
        assert_eq!(harness.group.group_epoch(), 3);
        let a = harness.ok(beat("a", 2, None));
        assert_eq!(a.assignment, Some(tp(&[("t", &[0, 1, 2, 3])])));
    }

    #[test]
    fn a_member_that_never_revokes_is_evicted_after_its_rebalance_timeout() {
        // Proves a member asked to revoke that keeps heartbeating without
        // acknowledging is fenced once its rebalance timeout (30 s here)
        // passes, and its partitions then go to the member that waited.
        let mut harness = Harness::new(Topics::default().with("t", 4));
        harness.ok(join("a", &["t"]));
        harness.ok(join("b", &["t"]));
        harness.ok(beat("a", 1, None));
        assert_eq!(harness.state_of("a"), (1, MemberState::UnrevokedPartitions));
        for _ in 0..5 {
            harness.advance_ms(5_000);
            harness.ok(beat("a", 1, Some(tp(&[("t", &[0, 1, 2, 3])]))));
            harness.ok(beat("b", 2, None));
            assert!(harness.group.expire(harness.now).is_empty(), "not yet at 30 s");
        }
        harness.advance_ms(4_999);
        assert!(harness.group.expire(harness.now).is_empty());
        harness.advance_ms(1);
        assert_eq!(harness.group.expire(harness.now), vec!["a".to_string()]);
        let b = harness.ok(beat("b", 2, None));
        assert_eq!((b.member_epoch, b.assignment), (3, Some(tp(&[("t", &[0, 1, 2, 3])]))));
    }

    #[test]
    fn a_static_member_rejoining_with_its_instance_id_keeps_its_assignment() {
        // Proves a static member that left with -2 and comes back under a new
        // member id takes over the old member's assignment and target at the
        // current epochs, without a rebalance: nothing moves.
        let mut harness = Harness::new(Topics::default().with("t", 4));
        harness.ok(static_join("a", "instance-a", &["t"]));
        harness.ok(join("b", &["t"]));
        harness.ok(beat("a", 1, Some(tp(&[("t", &[0, 1])]))));
        harness.ok(beat("b", 2, None));
        assert_eq!(harness.group.state(), ConsumerGroupState::Stable);
        let epochs = (harness.group.group_epoch(), harness.group.assignment_epoch());

        let left = harness.ok(HeartbeatRequest {
            instance_id: Some("instance-a".into()),
            ..beat("a", LEAVE_GROUP_STATIC_MEMBER_EPOCH, None)
        });
        assert_eq!(left.member_epoch, LEAVE_GROUP_STATIC_MEMBER_EPOCH);
        let back = harness.ok(static_join("a-restarted", "instance-a", &["t"]));
        assert_eq!((back.member_id.as_str(), back.member_epoch), ("a-restarted", 2));
        assert_eq!(back.assignment, Some(tp(&[("t", &[0, 1])])));
        assert!(harness.group.member("a").is_none());
        assert_eq!(harness.group.static_member_id("instance-a"), Some("a-restarted"));
        assert_eq!((harness.group.group_epoch(), harness.group.assignment_epoch()), epochs);
        assert_eq!(harness.ok(beat("b", 2, None)).assignment, None, "b is untouched");
        assert_eq!(harness.group.state(), ConsumerGroupState::Stable);
    }

    #[test]
    fn a_static_member_leaving_with_minus_two_is_kept_for_its_session() {
        // Proves -2 keeps the member (at epoch -2, holding its partitions)
        // without bumping the group epoch, and that the session timeout then
        // removes it like any silent member.
        let mut harness = Harness::new(Topics::default().with("t", 2));
        harness.ok(static_join("a", "instance-a", &["t"]));
        harness.ok(join("b", &["t"]));
        let epoch = harness.group.group_epoch();
        let leave = HeartbeatRequest {
            instance_id: Some("instance-a".into()),
            ..beat("a", LEAVE_GROUP_STATIC_MEMBER_EPOCH, None)
        };
        harness.ok(leave);
        assert_eq!(harness.group.group_epoch(), epoch);
        let member = harness.group.member("a").expect("kept");
        assert_eq!(member.member_epoch, LEAVE_GROUP_STATIC_MEMBER_EPOCH);
        assert!(!member.assigned_partitions.is_empty());
        for _ in 0..10 {
            harness.advance_ms(5_000);
            harness.ok(beat("b", 2, None));
        }
        assert_eq!(harness.group.expire(harness.now), vec!["a".to_string()]);
        assert_eq!(harness.group.group_epoch(), epoch + 1);
    }

    #[test]
    fn heartbeats_with_the_wrong_epoch_or_identity_are_fenced() {
        // Proves Kafka's member checks: an epoch ahead, or behind and not the
        // previous one, is FENCED_MEMBER_EPOCH; the previous epoch with owned
        // partitions inside the assignment is accepted (a lost response);
        // unknown members and instance ids are UNKNOWN_MEMBER_ID; a second
        // instance holder is UNRELEASED_INSTANCE_ID on join and
        // FENCED_INSTANCE_ID otherwise; epoch 0 may always rejoin.
        let mut harness = Harness::two_stable_members();
        assert_eq!(harness.refused(beat("a", 3, None)), ErrorCode::FencedMemberEpoch);
        assert_eq!(harness.refused(beat("b", 1, None)), ErrorCode::FencedMemberEpoch, "b's previous epoch is 0");
        assert_eq!(harness.refused(beat("a", 1, None)), ErrorCode::FencedMemberEpoch, "owned partitions required");
        assert_eq!(harness.refused(beat("a", 1, Some(tp(&[("t", &[2])])))), ErrorCode::FencedMemberEpoch);
        let accepted = harness.ok(beat("a", 1, Some(tp(&[("t", &[0])]))));
        assert_eq!((accepted.member_epoch, accepted.assignment), (2, Some(tp(&[("t", &[0, 1])]))));
        assert_eq!(harness.refused(beat("nobody", 2, None)), ErrorCode::UnknownMemberId);
        let rejoined = harness.ok(join("a", &["t"]));
        assert_eq!((rejoined.member_epoch, rejoined.assignment), (2, Some(tp(&[("t", &[0, 1])]))));

        harness.ok(static_join("s", "instance-s", &["t"]));
        assert_eq!(harness.refused(static_join("s2", "instance-s", &["t"])), ErrorCode::UnreleasedInstanceId);
        let impostor = HeartbeatRequest { instance_id: Some("instance-s".into()), ..beat("s2", 3, None) };
        assert_eq!(harness.refused(impostor), ErrorCode::FencedInstanceId);
        let unknown = HeartbeatRequest { instance_id: Some("instance-x".into()), ..beat("x", 3, None) };
        assert_eq!(harness.refused(unknown), ErrorCode::UnknownMemberId);
        let epoch = harness.group.member("s").unwrap().member_epoch;
        let rejoin = harness.ok(static_join("s", "instance-s", &["t"]));
        assert_eq!(rejoin.member_epoch, epoch, "the same member id may rejoin");
    }

    #[test]
    fn malformed_requests_and_limits_are_refused() {
        // Proves the request checks (INVALID_REQUEST 42 for missing join
        // fields, blank ids, bad epochs), UNSUPPORTED_ASSIGNOR 112,
        // GROUP_MAX_SIZE_REACHED 81 and INVALID_REGULAR_EXPRESSION 128.
        let mut harness = Harness::new(Topics::default().with("t", 2));
        let invalid = [
            HeartbeatRequest { rebalance_timeout_ms: -1, ..join("a", &["t"]) },
            HeartbeatRequest { subscribed_topic_names: None, ..join("a", &["t"]) },
            HeartbeatRequest { owned_partitions: None, ..join("a", &["t"]) },
            HeartbeatRequest { owned_partitions: Some(tp(&[("t", &[0])])), ..join("a", &["t"]) },
            HeartbeatRequest { member_id: " ".into(), ..join("a", &["t"]) },
            HeartbeatRequest { rack_id: Some("".into()), ..join("a", &["t"]) },
            HeartbeatRequest { instance_id: Some(" ".into()), ..join("a", &["t"]) },
            beat("a", -3, None),
            beat("a", LEAVE_GROUP_STATIC_MEMBER_EPOCH, None),
            beat("", 1, None),
        ];
        for request in invalid {
            assert_eq!(harness.refused(request), ErrorCode::InvalidRequest);
        }
        let assignor = HeartbeatRequest { server_assignor: Some("sticky".into()), ..join("a", &["t"]) };
        assert_eq!(harness.refused(assignor), ErrorCode::UnsupportedAssignor);
        let regex = HeartbeatRequest { subscribed_topic_regex: Some("orders-(".into()), ..join("a", &[]) };
        assert_eq!(harness.refused(regex), ErrorCode::InvalidRegularExpression);
        let escaping = HeartbeatRequest { subscribed_topic_regex: Some("a)|(b".into()), ..join("a", &[]) };
        assert_eq!(harness.refused(escaping), ErrorCode::InvalidRegularExpression);

        harness.config.max_size = 1;
        harness.ok(join("a", &["t"]));
        assert_eq!(harness.refused(join("b", &["t"])), ErrorCode::GroupMaxSizeReached);
        harness.ok(beat("a", 1, None));
    }

    #[test]
    fn a_v0_member_without_an_id_gets_one_from_the_server() {
        // Proves ConsumerGroupHeartbeat v0's behaviour: an empty member id on
        // join is replaced by the coordinator's; v1 requires the client's.
        let mut harness = Harness::new(Topics::default().with("t", 1));
        let v0 = HeartbeatRequest { api_version: 0, ..join("", &["t"]) };
        assert_eq!(harness.ok(v0).member_id, "generated");
        assert_eq!(harness.refused(join("", &["t"])), ErrorCode::InvalidRequest);
    }

    #[test]
    fn a_growing_topic_gets_its_new_partitions_assigned() {
        // Proves a partition count growing in the metadata bumps the group
        // epoch at the next heartbeat and assigns the new partitions; a topic
        // created later under a subscribed name is picked up the same way.
        let mut harness = Harness::new(Topics::default().with("t", 2));
        harness.ok(join("a", &["t", "later"]));
        harness.topics.set("t", 4);
        let a = harness.ok(beat("a", 1, None));
        assert_eq!((a.member_epoch, a.assignment), (2, Some(tp(&[("t", &[0, 1, 2, 3])]))));
        harness.topics.set("later", 1);
        let a = harness.ok(beat("a", 2, None));
        assert_eq!((a.member_epoch, a.assignment), (3, Some(tp(&[("later", &[0]), ("t", &[0, 1, 2, 3])]))));
    }

    #[test]
    fn a_regex_subscription_matches_whole_topic_names() {
        // Proves SubscribedTopicRegex matches the whole name (Kafka's
        // matches(), not find()), and that a topic created later is matched
        // once the coordinator asks for a refresh (or 10 s pass).
        let topics =
            Topics::default().with("orders-eu", 2).with("orders-us", 1).with("payments", 1).with("xorders-1", 1);
        let mut harness = Harness::new(topics);
        let request = HeartbeatRequest { subscribed_topic_regex: Some("orders-.*".into()), ..join("a", &[]) };
        let a = harness.ok(request);
        assert_eq!(a.assignment, Some(tp(&[("orders-eu", &[0, 1]), ("orders-us", &[0])])));
        let request = HeartbeatRequest { subscribed_topic_regex: Some("orders".into()), ..join("b", &[]) };
        assert_eq!(harness.ok(request).assignment, Some(TopicPartitions::new()));

        harness.topics.set("orders-asia", 1);
        assert_eq!(harness.ok(beat("a", 1, None)).assignment, None, "not resolved again yet");
        harness.group.request_metadata_refresh();
        let a = harness.ok(beat("a", 1, None));
        assert_eq!(a.assignment, Some(tp(&[("orders-asia", &[0]), ("orders-eu", &[0, 1]), ("orders-us", &[0])])));
        assert_eq!(
            harness.group.describe(&harness.topics, &harness.config).members[0].subscribed_topic_regex.as_deref(),
            Some("orders-.*")
        );
    }

    #[test]
    fn a_regex_matching_a_topic_the_group_already_reads_rebalances() {
        // Proves a periodic regex refresh that widens a member's topics bumps
        // the group epoch even when the group's topics are unchanged (another
        // member already reads the topic by name), so the target follows.
        let mut harness = Harness::new(Topics::default().with("orders-eu", 2));
        let request = HeartbeatRequest { subscribed_topic_regex: Some("orders-.*".into()), ..join("r", &[]) };
        harness.ok(request);
        harness.ok(join("n", &["orders-x"]));
        harness.topics.set("orders-x", 4);
        let n = harness.ok(beat("n", 2, None));
        assert_eq!(n.assignment, Some(tp(&[("orders-x", &[0, 1, 2, 3])])), "r's regex is not resolved again yet");
        let epoch = harness.group.group_epoch();
        harness.advance_ms(10_000);
        // n's heartbeat refreshes the regexes: n's own topics do not change.
        harness.ok(beat("n", n.member_epoch, None));
        assert_eq!(harness.group.group_epoch(), epoch + 1);
        assert_eq!(harness.group.target_assignment("r"), tp(&[("orders-eu", &[0, 1]), ("orders-x", &[3])]));
    }

    #[test]
    fn a_restored_group_accepts_its_members_where_they_were() {
        // Proves snapshot → restore keeps the epochs, assignments, pending
        // revocations and targets (the snapshot of the restored group is the
        // same), and that the members carry on: the revoking member's
        // acknowledgement at its old epoch is accepted and the waiting one
        // then gets its partitions.
        let mut harness = Harness::new(Topics::default().with("t", 4));
        harness.ok(static_join("a", "instance-a", &["t"]));
        harness.ok(join("b", &["t"]));
        harness.ok(beat("a", 1, None));
        let snapshot = harness.group.snapshot();
        assert_eq!(snapshot.members.len(), 2);
        assert_eq!(snapshot.members[0].state, MemberState::UnrevokedPartitions);
        assert_eq!(snapshot.members[0].partitions_pending_revocation, tp(&[("t", &[2, 3])]));

        harness.advance_ms(60_000);
        let restored = ConsumerGroup::restore(snapshot.clone(), harness.now).expect("restores");
        assert_eq!(restored.snapshot(), snapshot);
        assert_eq!(restored.static_member_id("instance-a"), Some("a"));
        assert_eq!(restored.state(), ConsumerGroupState::Reconciling);
        harness.group = restored;
        assert!(harness.group.expire(harness.now).is_empty(), "restored members get a fresh session");
        let changes = harness.group.change_count();
        let a = harness.ok(beat("a", 1, Some(tp(&[("t", &[0, 1])]))));
        assert_eq!((a.member_epoch, harness.group.group_epoch()), (2, 2), "no rebalance from the restart");
        assert!(harness.group.change_count() > changes);
        assert_eq!(harness.ok(beat("b", 2, None)).assignment, Some(tp(&[("t", &[2, 3])])));
    }

    #[test]
    fn a_damaged_snapshot_is_refused() {
        // Proves restore refuses snapshots no group could have produced.
        let mut harness = Harness::two_stable_members();
        harness.ok(beat("a", 2, None));
        let mut snapshot = harness.group.snapshot();
        snapshot.members[1].assigned_partitions = snapshot.members[0].assigned_partitions.clone();
        assert!(matches!(
            ConsumerGroup::restore(snapshot.clone(), harness.now),
            Err(SnapshotError::PartitionHeldTwice { .. })
        ));
        snapshot.members[1] = snapshot.members[0].clone();
        assert!(matches!(ConsumerGroup::restore(snapshot, harness.now), Err(SnapshotError::DuplicateMember { .. })));
    }

    #[test]
    fn commits_are_checked_against_the_member_epoch() {
        // Proves Kafka's OffsetCommit/OffsetFetch checks for consumer groups:
        // simple commits only to an empty group; members commit with exactly
        // their current epoch (STALE_MEMBER_EPOCH otherwise, the previous
        // epoch included) and OffsetCommit v9+; fetches without a member
        // always pass.
        let mut harness = Harness::new(Topics::default().with("t", 2));
        assert_eq!(harness.group.validate_commit("", -1), Ok(()));
        harness.ok(join("a", &["t"]));
        harness.ok(join("b", &["t"]));
        let group = &harness.group;
        assert_eq!(group.validate_commit("", -1), Err(ErrorCode::UnknownMemberId));
        assert_eq!(group.validate_commit("b", 2), Ok(()));
        assert_eq!(group.validate_commit("a", 1), Ok(()), "a is still at epoch 1");
        assert_eq!(group.validate_commit("b", 1), Err(ErrorCode::StaleMemberEpoch));
        assert_eq!(group.validate_commit("b", 3), Err(ErrorCode::StaleMemberEpoch));
        assert_eq!(group.validate_commit("nobody", 2), Err(ErrorCode::UnknownMemberId));
        assert_eq!(group.validate_offset_commit("b", 2, 8, false), Err(ErrorCode::UnsupportedVersion));
        assert_eq!(group.validate_offset_commit("b", 2, 8, true), Ok(()));
        assert_eq!(group.validate_offset_fetch(None, -1), Ok(()));
        assert_eq!(group.validate_offset_fetch(Some("b"), 2), Ok(()));
        assert_eq!(group.validate_offset_fetch(Some("b"), 1), Err(ErrorCode::StaleMemberEpoch));
        assert_eq!(group.validate_offset_fetch(Some("x"), 1), Err(ErrorCode::UnknownMemberId));
        assert_eq!(group.validate_offset_fetch(Some("b"), -1), Err(ErrorCode::StaleMemberEpoch));
        assert_eq!(group.validate_offset_fetch(None, 2), Err(ErrorCode::UnknownMemberId));
    }

    #[test]
    fn describe_and_list_report_kafkas_fields() {
        // Proves ConsumerGroupDescribe's data (state, epochs, the assignor
        // most members ask for, members with current and target
        // assignments), ListGroups' entry and DescribeGroups' Dead answer.
        let mut harness = Harness::new(Topics::default().with("t", 2));
        let range = |id: &str| HeartbeatRequest { server_assignor: Some("range".into()), ..join(id, &["t"]) };
        harness.ok(range("a"));
        harness.ok(range("b"));
        let description = harness.group.describe(&harness.topics, &harness.config);
        assert_eq!(
            (description.group_state, description.group_epoch, description.assignment_epoch),
            ("Reconciling", 2, 2)
        );
        assert_eq!(description.assignor_name, "range");
        let a = &description.members[0];
        assert_eq!((a.member_id.as_str(), a.member_epoch, a.member_type), ("a", 1, MEMBER_TYPE_CONSUMER));
        assert_eq!(a.assignment[0].partitions, vec![0, 1]);
        assert_eq!(a.target_assignment[0].partitions, vec![0]);
        assert_eq!(a.target_assignment[0].topic_name, "t");
        assert_eq!(a.subscribed_topic_names, vec!["t".to_string()]);
        let listed = harness.group.listed();
        assert_eq!(
            (listed.protocol_type, listed.group_state, listed.group_type),
            ("consumer", "Reconciling", "consumer")
        );
        assert_eq!(harness.group.classic_describe(5), ClassicDescription { error_code: 0, group_state: "Dead" });
        assert_eq!(harness.group.classic_describe(6).error_code, ErrorCode::GroupIdNotFound.code());
        assert_eq!(harness.group.delete(), Err(ErrorCode::NonEmptyGroup));
        harness.ok(beat("a", LEAVE_GROUP_MEMBER_EPOCH, None));
        harness.ok(beat("b", LEAVE_GROUP_MEMBER_EPOCH, None));
        assert_eq!(harness.group.delete(), Ok(()));
        assert_eq!(harness.group.state(), ConsumerGroupState::Dead);
        assert_eq!(harness.refused(join("a", &["t"])), ErrorCode::GroupIdNotFound);
    }

    #[test]
    fn the_metadata_image_is_a_topics_view() {
        // Proves the image answers by name and by id with the partition
        // count, and lists its topic names for regexes.
        use crate::metadata::{MetadataRecord, PartitionMeta};
        let topic_id = Uuid::from_u128(7);
        let partitions = (0..3).map(|partition| PartitionMeta { partition, shard: 0, leader_epoch: 0 }).collect();
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::TopicCreated {
            name: "orders".into(),
            topic_id,
            partitions,
            configs: BTreeMap::new(),
        });
        let view: &dyn TopicsView = &image;
        assert_eq!(view.topic_by_name("orders"), Some((topic_id, 3)));
        assert_eq!(view.topic_by_id(&topic_id), Some(("orders".to_string(), 3)));
        assert_eq!((view.topic_by_name("missing"), view.topic_names()), (None, vec!["orders".to_string()]));
    }

    #[test]
    fn config_names_parse_and_the_default_assignor_comes_first() {
        // Proves group.consumer.assignors parsing and Kafka's defaults.
        let config = ConsumerGroupConfig::default();
        assert_eq!((config.session_timeout_ms, config.heartbeat_interval_ms), (45_000, 5_000));
        assert_eq!(config.default_assignor(), Assignor::Uniform);
        assert_eq!(
            ConsumerGroupConfig::parse_assignors("range, uniform"),
            Ok(vec![Assignor::Range, Assignor::Uniform])
        );
        assert!(ConsumerGroupConfig::parse_assignors("sticky").is_err());
        assert!(ConsumerGroupConfig::parse_assignors(" , ").is_err());
        assert_eq!(
            MemberState::from_value(MemberState::UnreleasedPartitions.value()),
            MemberState::UnreleasedPartitions
        );
        assert_eq!(MemberState::from_value(42), MemberState::Unknown);
    }

    /// One step of the simulation below.
    #[derive(Clone, Debug)]
    enum Step {
        /// The client heartbeats (or joins); `acknowledge` reports what it
        /// owns, which is how it confirms revocations.
        Beat {
            client: usize,
            acknowledge: bool,
        },
        /// -1, or -2 for a static client (which then restarts under a new
        /// member id, as a restarted process would).
        Leave {
            client: usize,
        },
        /// A heartbeat with the epoch before the client's (a delayed or
        /// retried request): accepted or fenced, never harmful.
        Stale {
            client: usize,
        },
        Advance {
            seconds: u64,
        },
        Grow {
            topic: usize,
        },
        Expire,
    }

    /// A well-behaved client: it adopts every assignment it is sent at once
    /// (revoking and assigning in its callbacks) and rejoins after an error.
    #[derive(Clone, Debug)]
    struct Client {
        name: String,
        member_id: String,
        instance_id: Option<String>,
        topics: Vec<String>,
        regex: Option<String>,
        member_epoch: i32,
        owned: TopicPartitions,
        joined: bool,
        restarts: u32,
    }

    impl Client {
        fn request(&self, acknowledge: bool) -> HeartbeatRequest {
            if !self.joined {
                let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
                let mut request = join(&self.member_id, &names);
                request.subscribed_topic_regex = self.regex.clone();
                request.instance_id = self.instance_id.clone();
                return request;
            }
            let owned = acknowledge.then(|| self.owned.clone());
            HeartbeatRequest {
                instance_id: self.instance_id.clone(),
                ..beat(&self.member_id, self.member_epoch, owned)
            }
        }

        fn handle(&mut self, result: Result<HeartbeatResponse, HeartbeatError>) {
            match result {
                Ok(response) => {
                    self.joined = true;
                    self.member_epoch = response.member_epoch;
                    if let Some(assignment) = response.assignment {
                        self.owned = assignment;
                    }
                }
                Err(error) => {
                    let expected =
                        [ErrorCode::FencedMemberEpoch, ErrorCode::UnknownMemberId, ErrorCode::UnreleasedInstanceId];
                    assert!(expected.contains(&error.code), "{}: {error}", self.name);
                    self.reset();
                }
            }
        }

        fn leave_request(&mut self) -> HeartbeatRequest {
            let epoch =
                if self.instance_id.is_some() { LEAVE_GROUP_STATIC_MEMBER_EPOCH } else { LEAVE_GROUP_MEMBER_EPOCH };
            let request =
                HeartbeatRequest { instance_id: self.instance_id.clone(), ..beat(&self.member_id, epoch, None) };
            self.reset();
            if self.instance_id.is_some() {
                self.restarts += 1;
                self.member_id = format!("{}-{}", self.name, self.restarts);
            }
            request
        }

        fn reset(&mut self) {
            self.joined = false;
            self.owned.clear();
            self.member_epoch = 0;
        }
    }

    fn any_clients() -> impl Strategy<Value = Vec<Client>> {
        let client = (any::<bool>(), 0usize..4);
        proptest::collection::vec(client, 1..5).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (is_static, subscription))| {
                    let name = format!("client-{i}");
                    let (topics, regex) = match subscription {
                        0 => (vec!["t0".to_string()], None),
                        1 => (vec!["t1".to_string()], None),
                        2 => (vec!["t0".to_string(), "t1".to_string()], None),
                        _ => (Vec::new(), Some("t[01]".to_string())),
                    };
                    Client {
                        member_id: name.clone(),
                        instance_id: is_static.then(|| format!("instance-{i}")),
                        name,
                        topics,
                        regex,
                        member_epoch: 0,
                        owned: TopicPartitions::new(),
                        joined: false,
                        restarts: 0,
                    }
                })
                .collect()
        })
    }

    fn any_steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            6 => (0usize..5, any::<bool>()).prop_map(|(client, acknowledge)| Step::Beat { client, acknowledge }),
            1 => (0usize..5).prop_map(|client| Step::Leave { client }),
            1 => (0usize..5).prop_map(|client| Step::Stale { client }),
            2 => (1u64..20).prop_map(|seconds| Step::Advance { seconds }),
            1 => (0usize..2).prop_map(|topic| Step::Grow { topic }),
            1 => Just(Step::Expire),
        ];
        proptest::collection::vec(step, 0..80)
    }

    fn run_step(harness: &mut Harness, clients: &mut [Client], step: &Step) {
        match *step {
            Step::Beat { client, acknowledge } => {
                let client = &mut clients[client % clients.len()];
                let result = harness.send(client.request(acknowledge));
                client.handle(result);
            }
            Step::Leave { client } => {
                let client = &mut clients[client % clients.len()];
                if client.joined {
                    let request = client.leave_request();
                    if let Err(error) = harness.send(request) {
                        assert_eq!(error.code, ErrorCode::UnknownMemberId, "{error}");
                    }
                }
            }
            Step::Stale { client } => {
                let client = &mut clients[client % clients.len()];
                // Epoch 0 would be a (malformed) join, not a stale heartbeat.
                if client.joined && client.member_epoch > 1 {
                    let mut request = client.request(true);
                    request.member_epoch -= 1;
                    let result = harness.send(request);
                    client.handle(result);
                }
            }
            Step::Advance { seconds } => harness.advance_ms(seconds * 1_000),
            Step::Grow { topic } => {
                let name = format!("t{topic}");
                let count = harness.topics.topic_by_name(&name).map_or(1, |(_, count)| count);
                harness.topics.set(&name, (count + 1).min(8));
            }
            Step::Expire => {
                harness.group.expire(harness.now);
            }
        }
    }

    /// What must hold after every step: the group's own invariants; every
    /// client that is a member owns only what the group lets it hold, so no
    /// two of them own a partition at once; the snapshot restores to itself.
    fn check_step(harness: &Harness, clients: &[Client]) -> Result<(), TestCaseError> {
        prop_assert_eq!(harness.group.check_invariants(), Ok(()));
        let mut owners: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
        for client in clients.iter().filter(|client| client.joined) {
            let Some(member) = harness.group.member(&client.member_id) else { continue };
            let held = union(&member.assigned_partitions, &member.partitions_pending_revocation);
            for (topic_id, partition) in each_partition(&client.owned) {
                prop_assert!(contains(&held, &topic_id, partition), "{} owns {topic_id}-{partition}", client.name);
                let other = owners.insert((topic_id, partition), &client.name);
                prop_assert!(other.is_none(), "{topic_id}-{partition} owned by {other:?} and {}", client.name);
            }
        }
        let snapshot = harness.group.snapshot();
        let restored = ConsumerGroup::restore(snapshot.clone(), harness.now).expect("a group's snapshot restores");
        prop_assert_eq!(restored.snapshot(), snapshot);
        Ok(())
    }

    /// Once every client heartbeats and acknowledges for a while, the group
    /// is Stable: every member holds exactly its target, and every partition
    /// of a subscribed topic is held by one member.
    fn check_converged(harness: &mut Harness, clients: &mut [Client]) -> Result<(), TestCaseError> {
        for _ in 0..20 {
            harness.advance_ms(5_000);
            for client in clients.iter_mut() {
                let result = harness.send(client.request(true));
                client.handle(result);
            }
            harness.group.expire(harness.now);
        }
        let group = &harness.group;
        prop_assert!(
            matches!(group.state(), ConsumerGroupState::Stable | ConsumerGroupState::Empty),
            "{:?}",
            group.state()
        );
        let mut held = BTreeSet::new();
        for member in group.members().values() {
            prop_assert_eq!(&member.assigned_partitions, &normalised(&group.target_assignment(&member.member_id)));
            held.extend(each_partition(&member.assigned_partitions));
        }
        let subscribed: BTreeSet<Uuid> = group.members().values().flat_map(|m| group.subscribed_topic_ids(m)).collect();
        let expected: BTreeSet<(Uuid, i32)> = harness
            .topics
            .0
            .values()
            .filter(|(topic_id, _)| subscribed.contains(topic_id))
            .flat_map(|(topic_id, count)| (0..*count).map(move |partition| (*topic_id, partition)))
            .collect();
        prop_assert_eq!(held, expected);
        for client in clients.iter().filter(|client| client.joined) {
            let member = group.member(&client.member_id).expect("a joined client is a member");
            prop_assert_eq!(&client.owned, &member.assigned_partitions);
        }
        Ok(())
    }

    proptest! {
        // Each case simulates ~100 heartbeats with a snapshot and a restore
        // after every step; fewer cases keep the unit tests quick (runs of
        // a thousand cases pass too).
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random clients (static or not, by names or by regex) joining,
        /// heartbeating with or without acknowledging, leaving, going
        /// silent, while topics grow: no partition is ever owned by two
        /// members, every change to the persistent state moves the change
        /// counter, and once everyone behaves the group converges.
        #[test]
        fn a_group_of_random_clients_stays_safe_and_converges(mut clients in any_clients(), steps in any_steps()) {
            let mut harness = Harness::new(Topics::default().with("t0", 3).with("t1", 2));
            for step in &steps {
                let (before, changes) = (harness.group.snapshot(), harness.group.change_count());
                run_step(&mut harness, &mut clients, step);
                if harness.group.snapshot() != before {
                    prop_assert!(harness.group.change_count() > changes, "{:?} changed the group unannounced", step);
                }
                check_step(&harness, &clients)?;
            }
            check_converged(&mut harness, &mut clients)?;
        }
    }

    #[test]
    fn offsets_of_unsubscribed_topics_expire_by_commit_time() {
        // Proves Kafka's retention rule for consumer-protocol groups: an
        // offset expires once its commit is older than the retention, but
        // not while a member subscribes to its topic; the group may go
        // only when it is empty and every offset expired.
        let mut harness = Harness::new(Topics::default().with("t", 1).with("gone", 1));
        harness.ok(join("a", &["t"]));
        let committed =
            |at: i64| Committed { offset: 1, leader_epoch: -1, metadata: None, commit_timestamp_ms: at, sequence: 0 };
        let offsets = [(("t".to_string(), 0), committed(0)), (("gone".to_string(), 0), committed(0))];
        let entries = || offsets.iter().map(|(key, value)| (key, value));
        let expiry = harness.group.expire_offsets(entries(), 1_000, 1_000);
        assert_eq!(expiry.expired, vec![("gone".to_string(), 0)], "the subscribed topic stays");
        assert!(!expiry.delete_group);
        assert!(harness.group.expire_offsets(entries(), 999, 1_000).expired.is_empty(), "not before the retention");
        harness.ok(beat("a", LEAVE_GROUP_MEMBER_EPOCH, None));
        let expiry = harness.group.expire_offsets(entries(), 1_000, 1_000);
        assert_eq!(expiry.expired.len(), 2);
        assert!(expiry.delete_group, "empty with nothing left");
    }
}
