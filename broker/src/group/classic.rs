//! One classic group's state machine, as Kafka's GroupCoordinator
//! runs it: Empty → PreparingRebalance (join phase) → CompletingRebalance
//! (waiting for the leader's SyncGroup) → Stable, and back to
//! PreparingRebalance when a member joins, leaves, changes its protocols
//! or misses its session timeout.
//!
//! Static members (`group.instance.id`, KIP-345) are indexed by instance
//! id: a JoinGroup with a known instance id and no member id takes over the
//! old member (which is fenced with FENCED_INSTANCE_ID) and, in a Stable
//! group whose protocol stays the same, its place in the current
//! generation, with no rebalance. A join phase does not drop static members
//! that did not rejoin: only their session timeout does.
//!
//! Everything here is synchronous and owned by the coordinator shard: a
//! request that must wait (JoinGroup until the join phase ends, SyncGroup
//! until the leader's assignment arrives) gets a oneshot receiver, and the
//! state completes it. Invariants:
//! - a member has a `join_waiter` only during PreparingRebalance, and a
//!   `sync_waiter` only during CompletingRebalance;
//! - `leader` is a member whenever the group has members and is not Empty;
//! - `static_members` maps every member's instance id to its member id,
//!   and nothing else;
//! - `generation_id` only grows;
//! - `initial_delay` is set only during the first join phase of a group
//!   that was Empty;
//! - `persist_wanted` is set whenever what [`ClassicGroup::record`] states
//!   changed (a generation got its assignments, the group became empty, a
//!   static member got a new id): the coordinator then writes the record to
//!   the group log, and answers the [`DeferredJoin`]s once it is durable.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use protocol::ErrorCode;

use super::config::GroupConfig;
use super::offsets::{Committed, TopicPartition};
use super::records::{ClassicGroupRecord, ClassicMemberRecord};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// Kafka's spelling, as ListGroups/DescribeGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup request is answered with.
#[derive(Clone, Debug, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members (id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(code: ErrorCode, member_id: &str) -> JoinResult {
        JoinResult { error: code.code(), generation_id: -1, member_id: member_id.to_owned(), ..Default::default() }
    }
}

/// What a SyncGroup request is answered with.
#[derive(Clone, Debug, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(code: ErrorCode) -> SyncResult {
        SyncResult { error: code.code(), ..Default::default() }
    }
}

/// The broker settings a join is held to (`[groups]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinLimits {
    /// How long the first join phase of an Empty group waits for more
    /// members (`group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: i32,
    /// Members of one group (`group.max.size`).
    pub group_size_max: usize,
}

impl JoinLimits {
    pub fn of(config: &GroupConfig) -> JoinLimits {
        JoinLimits {
            initial_rebalance_delay_ms: config.initial_rebalance_delay_ms,
            group_size_max: config.group_size_max,
        }
    }
}

/// A JoinGroup request's fields that the state machine needs.
#[derive(Clone, Debug)]
pub struct JoinParams {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    /// The connection's peer address as Kafka prints it ("/127.0.0.1").
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a dynamic member without an id first gets one with
    /// MEMBER_ID_REQUIRED (static members join at once).
    pub require_known_member_id: bool,
    pub limits: JoinLimits,
}

pub struct Member {
    pub id: String,
    pub client_id: String,
    pub client_host: String,
    pub group_instance_id: Option<String>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    fn session_expired(&self, now: Instant) -> bool {
        // A member waiting in a join phase is not expected to heartbeat.
        self.join_waiter.is_none()
            && now.duration_since(self.last_heartbeat) > Duration::from_millis(self.session_timeout_ms as u64)
    }

    /// Answers whatever the member still waits for with `code`.
    fn fail_waiters(&mut self, code: ErrorCode) {
        if let Some(waiter) = self.join_waiter.take() {
            let _ = waiter.send(JoinResult::error(code, &self.id));
        }
        if let Some(waiter) = self.sync_waiter.take() {
            let _ = waiter.send(SyncResult::error(code));
        }
    }
}

/// An answer now, or later through a receiver.
pub enum Step<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// A JoinGroup answer that may leave only once the group's record is
/// durable: a static member that took over its old member id without a
/// rebalance. Were the new id lost in a crash, the restored group would
/// fence the live member for good (FENCED_INSTANCE_ID is fatal to
/// clients); unanswered, it simply joins again.
pub struct DeferredJoin {
    sender: oneshot::Sender<JoinResult>,
    result: JoinResult,
}

impl DeferredJoin {
    /// Sends the answer, or NOT_COORDINATOR when the record could not be
    /// made durable (Kafka's answer to a failed write of its offsets log:
    /// the client looks for the coordinator again and rejoins).
    pub fn complete(self, durable: bool) {
        let result = if durable { self.result } else { JoinResult::error(ErrorCode::NotCoordinator, "") };
        let _ = self.sender.send(result);
    }
}

/// The first join phase of a group that was Empty (Kafka's
/// InitialDelayedJoin): it ends when `delay_ms` passes without a new
/// member, and is extended by `delay_ms` while members keep arriving, but
/// never beyond the rebalance timeout.
#[derive(Debug)]
struct InitialDelay {
    delay_ms: u64,
    /// What is left of the rebalance timeout after the delays so far.
    remaining_ms: u64,
    new_member_added: bool,
}

/// What offset retention decided for one group.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OffsetExpiry {
    pub expired: Vec<TopicPartition>,
    /// The group is Empty and no offset is left: it can be deleted.
    pub delete_group: bool,
}

pub struct ClassicGroup {
    pub id: String,
    pub state: GroupState,
    /// When `state` was entered, ms since the epoch (Kafka's
    /// `currentStateTimestamp`): retention of an empty group's offsets
    /// counts from it.
    pub state_timestamp_ms: i64,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member id of each static member, by instance id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until when they may
    /// come back with them (their session timeout).
    pub pending_members: HashMap<String, Instant>,
    /// Counts join phases, so a join phase's timer knows whether it is
    /// still the current one.
    pub rebalance_epoch: u64,
    /// Set when a join phase starts or its initial delay is extended: the
    /// coordinator arms a timer that calls [`ClassicGroup::rebalance_timed_out`]
    /// after this long.
    pub timer_wanted: Option<(u64, Duration)>,
    initial_delay: Option<InitialDelay>,
    /// The durable view ([`ClassicGroup::record`]) changed since it was
    /// last taken.
    persist_wanted: bool,
    /// Answers waiting for the next record of this group to be durable.
    deferred_joins: Vec<DeferredJoin>,
}

impl ClassicGroup {
    pub fn new(id: String) -> ClassicGroup {
        ClassicGroup {
            id,
            state: GroupState::Empty,
            state_timestamp_ms: crate::partition::now_ms(),
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_epoch: 0,
            timer_wanted: None,
            initial_delay: None,
            persist_wanted: false,
            deferred_joins: Vec::new(),
        }
    }

    /// The group as the log keeps it: generation, protocol, leader and
    /// members with their assignments. Written when a generation got its
    /// assignments or the group became empty; a snapshot taken in the
    /// middle of a rebalance states the members as they are, and members
    /// restored from it rejoin (their generation is not the stored one).
    pub fn record(&self) -> ClassicGroupRecord {
        let members = self
            .members
            .values()
            .map(|member| ClassicMemberRecord {
                member_id: member.id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                session_timeout_ms: member.session_timeout_ms,
                rebalance_timeout_ms: member.rebalance_timeout_ms,
                subscription: member.metadata_for(self.protocol_name.as_deref().unwrap_or_default()),
                assignment: member.assignment.clone(),
            })
            .collect();
        ClassicGroupRecord {
            group: self.id.clone(),
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            generation_id: self.generation_id,
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members,
        }
    }

    /// A group rebuilt from its record after a restart: Stable with its
    /// members (each with a fresh session, as after a coordinator move in
    /// Kafka) or Empty. Static members are indexed again, so a restarted
    /// static member takes over its old id without a rebalance.
    pub fn restore(record: ClassicGroupRecord, now: Instant) -> ClassicGroup {
        let mut group = ClassicGroup::new(record.group);
        group.generation_id = record.generation_id;
        group.protocol_type = record.protocol_type;
        group.protocol_name = record.protocol_name.clone();
        group.state_timestamp_ms = record.state_timestamp_ms;
        let protocol = record.protocol_name.unwrap_or_default();
        for member in record.members {
            if let Some(instance_id) = &member.group_instance_id {
                group.static_members.insert(instance_id.clone(), member.member_id.clone());
            }
            let restored = Member {
                id: member.member_id.clone(),
                client_id: member.client_id,
                client_host: member.client_host,
                group_instance_id: member.group_instance_id,
                session_timeout_ms: member.session_timeout_ms,
                rebalance_timeout_ms: member.rebalance_timeout_ms,
                protocols: vec![(protocol.clone(), member.subscription)],
                assignment: member.assignment,
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            };
            group.members.insert(member.member_id, restored);
        }
        if !group.members.is_empty() {
            group.state = GroupState::Stable;
            group.leader = record.leader.filter(|leader| group.members.contains_key(leader));
            if group.leader.is_none() {
                group.leader = group.members.keys().next().cloned();
            }
        }
        group
    }

    /// Whether the durable view changed since the last call.
    pub fn take_persist_wanted(&mut self) -> bool {
        std::mem::take(&mut self.persist_wanted)
    }

    /// The answers to send once the record taken now is durable.
    pub fn take_deferred_joins(&mut self) -> Vec<DeferredJoin> {
        std::mem::take(&mut self.deferred_joins)
    }

    /// The member id of the static member `instance_id`, if any.
    pub fn static_member_id(&self, instance_id: &str) -> Option<&str> {
        self.static_members.get(instance_id).map(String::as_str)
    }

    fn set_state(&mut self, state: GroupState) {
        if self.state != state {
            self.state = state;
            self.state_timestamp_ms = crate::partition::now_ms();
        }
    }

    /// JoinGroup. `new_member_id` makes an id for a member that has none.
    pub fn join(
        &mut self,
        params: JoinParams,
        now: Instant,
        new_member_id: impl FnOnce() -> String,
    ) -> Step<JoinResult> {
        if !self.accepts_joiner(&params) {
            // As Kafka: a known member turned away (one that had not
            // rejoined yet while the limit was lowered) leaves the group.
            self.pending_members.remove(&params.member_id);
            self.remove_member(&params.member_id, now);
            return Step::Now(JoinResult::error(ErrorCode::GroupMaxSizeReached, ""));
        }
        if !self.protocols_compatible(&params) {
            return Step::Now(JoinResult::error(ErrorCode::InconsistentGroupProtocol, &params.member_id));
        }
        if params.member_id.is_empty() {
            return self.join_new_member(params, now, new_member_id);
        }
        self.join_known_member(params, now)
    }

    /// A join without a member id: a static member taking over its old id,
    /// a new static member, or a dynamic member (which first gets an id
    /// with MEMBER_ID_REQUIRED from v4).
    fn join_new_member(
        &mut self,
        params: JoinParams,
        now: Instant,
        new_member_id: impl FnOnce() -> String,
    ) -> Step<JoinResult> {
        let member_id = new_member_id();
        if let Some(instance_id) = &params.group_instance_id {
            if let Some(old_id) = self.static_members.get(instance_id).cloned() {
                return self.replace_static_member(old_id, member_id, params, now);
            }
            return Step::Wait(self.add_member_and_rebalance(member_id, params, now));
        }
        if params.require_known_member_id {
            let deadline = now + Duration::from_millis(params.session_timeout_ms as u64);
            self.pending_members.insert(member_id.clone(), deadline);
            return Step::Now(JoinResult::error(ErrorCode::MemberIdRequired, &member_id));
        }
        Step::Wait(self.add_member_and_rebalance(member_id, params, now))
    }

    /// A join with a member id: a pending member coming back with the id
    /// it was given, or a member of the group rejoining.
    fn join_known_member(&mut self, params: JoinParams, now: Instant) -> Step<JoinResult> {
        // Pending ids are handed to dynamic members only.
        if params.group_instance_id.is_none() && self.pending_members.remove(&params.member_id).is_some() {
            let member_id = params.member_id.clone();
            return Step::Wait(self.add_member_and_rebalance(member_id, params, now));
        }
        if let Err(code) = self.validate_member(&params.member_id, params.group_instance_id.as_deref()) {
            return Step::Now(JoinResult::error(code, &params.member_id));
        }
        let is_leader = self.is_leader(&params.member_id);
        let state = self.state;
        let member = self.members.get_mut(&params.member_id).expect("validated");
        member.last_heartbeat = now;
        member.session_timeout_ms = params.session_timeout_ms;
        member.rebalance_timeout_ms = params.rebalance_timeout_ms;
        let same_protocols = member.protocols == params.protocols;
        match state {
            GroupState::PreparingRebalance => {
                member.protocols = params.protocols;
                let (sender, receiver) = oneshot::channel();
                member.join_waiter = Some(sender);
                self.maybe_complete_join(now);
                Step::Wait(receiver)
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if same_protocols && (state == GroupState::CompletingRebalance || !is_leader) =>
            {
                // Nothing changed (a follower whose join response was lost,
                // say): the current generation stands.
                Step::Now(self.join_result_for(&params.member_id))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.protocols = params.protocols;
                let (sender, receiver) = oneshot::channel();
                member.join_waiter = Some(sender);
                self.prepare_rebalance(now);
                Step::Wait(receiver)
            }
            GroupState::Empty => Step::Now(JoinResult::error(ErrorCode::UnknownMemberId, &params.member_id)),
        }
    }

    /// A static member joined without a member id while its instance id is
    /// known (it restarted): the old member id is fenced and replaced by
    /// `new_id`, keeping the member's assignment. In a Stable group whose
    /// selected protocol stays the same there is no rebalance: the member
    /// gets the current generation, and SyncGroup its old assignment
    /// (Kafka's updateStaticMemberThenRebalanceOrCompleteJoin).
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        params: JoinParams,
        now: Instant,
    ) -> Step<JoinResult> {
        let instance_id = params.group_instance_id.clone().expect("a static member");
        let mut member = self.members.remove(&old_id).expect("the instance index names members");
        member.fail_waiters(ErrorCode::FencedInstanceId);
        let leader_before = self.leader.clone().unwrap_or_default();
        if self.is_leader(&old_id) {
            self.leader = Some(new_id.clone());
        }
        member.id = new_id.clone();
        member.client_id = params.client_id;
        member.client_host = params.client_host;
        member.session_timeout_ms = params.session_timeout_ms;
        member.rebalance_timeout_ms = params.rebalance_timeout_ms;
        member.protocols = params.protocols;
        member.last_heartbeat = now;
        self.members.insert(new_id.clone(), member);
        self.static_members.insert(instance_id.clone(), new_id.clone());
        tracing::info!(group = %self.id, instance = %instance_id, old = %old_id, new = %new_id, state = self.state.name(),
            "static member rejoined: its old member id is fenced");
        let (sender, receiver) = oneshot::channel();
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol_name => {
                // Up to JoinGroup v8 there is no SkipAssignment flag: a
                // restarted leader is named the old leader id, so it acts as
                // a follower and does not assign (Kafka does the same).
                let mut result = self.join_result_for(&new_id);
                result.leader = leader_before;
                result.members.clear();
                self.persist_wanted = true;
                self.deferred_joins.push(DeferredJoin { sender, result });
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                // In CompletingRebalance the leader may be assigning to the
                // old id: only a new generation gives the new id its share.
                self.members.get_mut(&new_id).expect("inserted").join_waiter = Some(sender);
                self.prepare_rebalance(now);
            }
            GroupState::PreparingRebalance => {
                self.members.get_mut(&new_id).expect("inserted").join_waiter = Some(sender);
                self.maybe_complete_join(now);
            }
            GroupState::Empty => unreachable!("group {} is Empty with static member {instance_id}", self.id),
        }
        Step::Wait(receiver)
    }

    /// SyncGroup: the leader hands out assignments; everyone gets theirs.
    pub fn sync(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Step<SyncResult> {
        if let Err(code) = self.check_member(member_id, group_instance_id, generation_id) {
            return Step::Now(SyncResult::error(code));
        }
        match self.state {
            GroupState::Empty => Step::Now(SyncResult::error(ErrorCode::UnknownMemberId)),
            GroupState::PreparingRebalance => Step::Now(SyncResult::error(ErrorCode::RebalanceInProgress)),
            GroupState::Stable => {
                let member = self.members.get_mut(member_id).expect("checked");
                member.last_heartbeat = now;
                let assignment = member.assignment.clone();
                Step::Now(self.sync_result(assignment))
            }
            GroupState::CompletingRebalance => {
                let (sender, receiver) = oneshot::channel();
                let member = self.members.get_mut(member_id).expect("checked");
                member.last_heartbeat = now;
                member.sync_waiter = Some(sender);
                if self.is_leader(member_id) {
                    self.assign(assignments);
                }
                Step::Wait(receiver)
            }
        }
    }

    /// Stores the leader's assignments, makes the group Stable and answers
    /// every waiting SyncGroup.
    fn assign(&mut self, assignments: Vec<(String, Bytes)>) {
        let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
        for member in self.members.values_mut() {
            member.assignment = assignments.remove(&member.id).unwrap_or_default();
        }
        self.set_state(GroupState::Stable);
        self.persist_wanted = true;
        let (protocol_type, protocol_name) = (self.protocol_type.clone(), self.protocol_name.clone());
        for member in self.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResult {
                    error: 0,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: member.assignment.clone(),
                });
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        if self.state == GroupState::Empty {
            return Err(ErrorCode::UnknownMemberId);
        }
        self.check_member(member_id, group_instance_id, generation_id)?;
        self.members.get_mut(member_id).expect("checked").last_heartbeat = now;
        match self.state {
            GroupState::PreparingRebalance => Err(ErrorCode::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup for one member. From v3 a member may be named by its
    /// instance id alone (member id ""), as admin tools remove static
    /// members; a stale member id of a static member is fenced.
    pub fn leave(&mut self, member_id: &str, group_instance_id: Option<&str>, now: Instant) -> Result<(), ErrorCode> {
        if member_id.is_empty() {
            let current = group_instance_id.and_then(|instance_id| self.static_members.get(instance_id)).cloned();
            let Some(current) = current else {
                return Err(ErrorCode::UnknownMemberId);
            };
            self.remove_member(&current, now);
            return Ok(());
        }
        if self.pending_members.remove(member_id).is_some() {
            self.maybe_complete_join(now);
            return Ok(());
        }
        self.validate_member(member_id, group_instance_id)?;
        self.remove_member(member_id, now);
        Ok(())
    }

    /// Removes members whose session timed out and forgotten pending ids;
    /// returns the ids of the members removed.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let pending = self.pending_members.len();
        self.pending_members.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| member.session_expired(now))
            .map(|member| member.id.clone())
            .collect();
        for member_id in &expired {
            self.remove_member(member_id, now);
        }
        if self.pending_members.len() < pending {
            // The join phase may have waited only for those ids.
            self.maybe_complete_join(now);
        }
        expired
    }

    /// The join phase `epoch`'s timer fired: the first join phase of an
    /// Empty group is extended while members keep arriving; otherwise the
    /// phase ends if it is still the current one.
    pub fn rebalance_timed_out(&mut self, epoch: u64, now: Instant) {
        if self.state != GroupState::PreparingRebalance || self.rebalance_epoch != epoch {
            return;
        }
        if let Some(delay) = self.initial_delay.as_mut() {
            if delay.new_member_added && delay.remaining_ms > 0 {
                let next_ms = delay.delay_ms.min(delay.remaining_ms);
                delay.remaining_ms -= next_ms;
                delay.new_member_added = false;
                self.timer_wanted = Some((epoch, Duration::from_millis(next_ms)));
                return;
            }
        }
        self.complete_join(now);
    }

    /// Kafka's checks on a commit: with generation -1 an Empty group takes
    /// any commit (a simple commit, or an admin tool's); otherwise the
    /// member (by id and instance id) with its current generation, and not
    /// while the leader's assignment is awaited.
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id < 0 && member_id.is_empty() && group_instance_id.is_none() {
            // A simple commit to a group with members.
            return Err(ErrorCode::UnknownMemberId);
        }
        self.check_member(member_id, group_instance_id, generation_id)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        self.members.get_mut(member_id).expect("checked").last_heartbeat = now;
        Ok(())
    }

    /// Kafka's `ClassicGroup.validateOffsetCommit` for a transactional
    /// commit: a commit without generation into an Empty group passes; one
    /// naming a generation, member id or instance id must come from a
    /// member of the current generation; one naming none of them passes
    /// whatever the state (TxnOffsetCommit below v3 carries no member), and
    /// so does a member's while the leader's assignment is awaited. The
    /// member's session is not refreshed.
    pub fn validate_txn_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ErrorCode> {
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.check_member(member_id, group_instance_id, generation_id)?;
        }
        Ok(())
    }

    /// Offset retention (KIP-211, Kafka's `offsetExpirationCondition` and
    /// `cleanupExpiredOffsets`): only an Empty group's offsets expire, each
    /// `retention_ms` after the later of its commit and the moment the
    /// group became Empty; a group that never had members (simple commits,
    /// no protocol type) counts from each commit alone. Kafka counts an
    /// Empty group's offsets from the state change only; the later of the
    /// two keeps a commit made into an Empty group (an admin tool resetting
    /// offsets) for a whole retention period. `delete_group` says the group
    /// is Empty with nothing left: no offset, no member id handed out.
    pub fn expire_offsets<'a>(
        &self,
        offsets: impl IntoIterator<Item = (&'a TopicPartition, &'a Committed)>,
        now_ms: i64,
        retention_ms: i64,
    ) -> OffsetExpiry {
        if self.state != GroupState::Empty {
            return OffsetExpiry::default();
        }
        let mut expiry = OffsetExpiry { expired: Vec::new(), delete_group: true };
        for (partition, committed) in offsets {
            let since_ms = match self.protocol_type {
                None => committed.commit_timestamp_ms,
                Some(_) => committed.commit_timestamp_ms.max(self.state_timestamp_ms),
            };
            if now_ms.saturating_sub(since_ms) >= retention_ms {
                expiry.expired.push(partition.clone());
            } else {
                expiry.delete_group = false;
            }
        }
        expiry.delete_group &= self.is_deletable();
        expiry
    }

    /// Empty, with no member id handed out and no answer owed: deleting
    /// the group loses nothing but its offsets.
    pub fn is_deletable(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.deferred_joins.is_empty()
    }

    /// Kafka's validateMember: an instance id must name a static member,
    /// and that member must have this id (else FENCED_INSTANCE_ID: another
    /// process took the instance over); the member id must be a member.
    fn validate_member(&self, member_id: &str, group_instance_id: Option<&str>) -> Result<(), ErrorCode> {
        if let Some(instance_id) = group_instance_id {
            match self.static_members.get(instance_id) {
                None => return Err(ErrorCode::UnknownMemberId),
                Some(current) if current != member_id => return Err(ErrorCode::FencedInstanceId),
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        Ok(())
    }

    fn check_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ErrorCode> {
        self.validate_member(member_id, group_instance_id)?;
        if generation_id != self.generation_id {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Kafka's acceptJoiningMember (`group.max.size`): during a join phase
    /// a member already waiting in it, or any while fewer than the maximum
    /// wait; otherwise a known member (by id, or a static member by
    /// instance id), or any while the group is below the maximum.
    fn accepts_joiner(&self, params: &JoinParams) -> bool {
        let size_max = params.limits.group_size_max;
        let known_id = params
            .group_instance_id
            .as_deref()
            .filter(|_| params.member_id.is_empty())
            .and_then(|instance_id| self.static_members.get(instance_id))
            .map_or(params.member_id.as_str(), String::as_str);
        match self.state {
            GroupState::Empty => true,
            GroupState::PreparingRebalance => {
                let waiting = self.members.values().filter(|member| member.join_waiter.is_some()).count();
                self.members.get(known_id).is_some_and(|member| member.join_waiter.is_some()) || waiting < size_max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(known_id) || self.members.len() < size_max
            }
        }
    }

    /// A joiner must speak the group's protocol type and share at least one
    /// protocol with every member.
    fn protocols_compatible(&self, params: &JoinParams) -> bool {
        if params.protocol_type.is_empty() || params.protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self.members.values().filter(|member| member.id != params.member_id).collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(params.protocol_type.as_str()) {
            return false;
        }
        params.protocols.iter().any(|(name, _)| others.iter().all(|member| member.supports(name)))
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        params: JoinParams,
        now: Instant,
    ) -> oneshot::Receiver<JoinResult> {
        let (sender, receiver) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(params.protocol_type.clone());
        }
        if let Some(instance_id) = &params.group_instance_id {
            let previous = self.static_members.insert(instance_id.clone(), member_id.clone());
            assert!(previous.is_none(), "group {}: instance {instance_id} already had member {previous:?}", self.id);
        }
        let member = Member {
            id: member_id.clone(),
            client_id: params.client_id,
            client_host: params.client_host,
            group_instance_id: params.group_instance_id,
            session_timeout_ms: params.session_timeout_ms,
            rebalance_timeout_ms: params.rebalance_timeout_ms,
            protocols: params.protocols,
            assignment: Bytes::new(),
            last_heartbeat: now,
            join_waiter: Some(sender),
            sync_waiter: None,
        };
        self.members.insert(member_id, member);
        match self.state {
            GroupState::Empty => self.start_first_join(params.limits.initial_rebalance_delay_ms, now),
            GroupState::PreparingRebalance => {
                if let Some(delay) = self.initial_delay.as_mut() {
                    delay.new_member_added = true;
                }
                self.maybe_complete_join(now);
            }
            GroupState::CompletingRebalance | GroupState::Stable => self.prepare_rebalance(now),
        }
        receiver
    }

    fn remove_member(&mut self, member_id: &str, now: Instant) {
        let Some(mut member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance_id) = &member.group_instance_id {
            if self.static_members.get(instance_id).is_some_and(|current| current == member_id) {
                self.static_members.remove(instance_id);
            }
        }
        member.fail_waiters(ErrorCode::UnknownMemberId);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now),
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty => {}
        }
    }

    /// The largest rebalance timeout of the members: how long a join phase
    /// waits for them.
    fn rebalance_timeout_ms(&self) -> i32 {
        self.members.values().map(|member| member.rebalance_timeout_ms).max().unwrap_or(0).max(0)
    }

    /// The first join phase of an Empty group: it waits the initial delay
    /// (capped by the rebalance timeout) for more members before it can
    /// end, however many have joined.
    fn start_first_join(&mut self, initial_rebalance_delay_ms: i32, now: Instant) {
        let timeout_ms = self.rebalance_timeout_ms() as u64;
        let delay_ms = (initial_rebalance_delay_ms.max(0) as u64).min(timeout_ms);
        if delay_ms == 0 {
            return self.prepare_rebalance(now);
        }
        self.set_state(GroupState::PreparingRebalance);
        self.rebalance_epoch += 1;
        self.initial_delay =
            Some(InitialDelay { delay_ms, remaining_ms: timeout_ms - delay_ms, new_member_added: false });
        self.timer_wanted = Some((self.rebalance_epoch, Duration::from_millis(delay_ms)));
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.send(SyncResult::error(ErrorCode::RebalanceInProgress));
                }
            }
        }
        self.set_state(GroupState::PreparingRebalance);
        self.rebalance_epoch += 1;
        let timeout = Duration::from_millis(self.rebalance_timeout_ms() as u64);
        self.timer_wanted = Some((self.rebalance_epoch, timeout));
        self.maybe_complete_join(now);
    }

    /// Ends the join phase once every member and every member id handed
    /// out has joined; never during an initial delay, which only its timer
    /// ends.
    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay.is_none()
            && self.pending_members.is_empty()
            && self.members.values().all(|m| m.join_waiter.is_some())
        {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: dynamic members that did not rejoin are
    /// removed (static ones stay, until their session times out), a new
    /// generation starts with a protocol every member supports, and every
    /// waiting JoinGroup is answered (the leader with the members). With
    /// only absent static members left nobody can be answered: the phase
    /// waits another rebalance timeout, as in Kafka.
    fn complete_join(&mut self, now: Instant) {
        assert_eq!(self.state, GroupState::PreparingRebalance, "group {}", self.id);
        self.initial_delay = None;
        self.members.retain(|_, member| member.join_waiter.is_some() || member.group_instance_id.is_some());
        if !self.members.is_empty() && self.members.values().all(|member| member.join_waiter.is_none()) {
            let timeout = Duration::from_millis(self.rebalance_timeout_ms() as u64);
            self.timer_wanted = Some((self.rebalance_epoch, timeout));
            return;
        }
        self.generation_id += 1;
        if self.members.is_empty() {
            self.set_state(GroupState::Empty);
            self.protocol_name = None;
            self.leader = None;
            self.persist_wanted = true;
            tracing::info!(group = %self.id, generation = self.generation_id, "join phase completed: the group is empty");
            return;
        }
        self.protocol_name = self.select_protocol();
        let leader_rejoined =
            self.leader.as_ref().and_then(|leader| self.members.get(leader)).is_some_and(|m| m.join_waiter.is_some());
        if !leader_rejoined {
            self.leader = self.members.values().find(|member| member.join_waiter.is_some()).map(|m| m.id.clone());
        }
        self.set_state(GroupState::CompletingRebalance);
        tracing::info!(group = %self.id, generation = self.generation_id, members = self.members.len(),
            protocol = self.protocol_name.as_deref().unwrap_or_default(), "join phase completed: new generation");
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result_for(&id);
            let member = self.members.get_mut(&id).expect("listed");
            member.last_heartbeat = now;
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(result);
            }
        }
    }

    fn join_result_for(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|member| (member.id.clone(), member.group_instance_id.clone(), member.metadata_for(&protocol)))
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: 0,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            member_id: member_id.to_owned(),
            members,
        }
    }

    fn sync_result(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    /// Kafka's vote: among the protocols every member supports, each member
    /// votes for the first it lists; most votes wins, ties by name.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| self.members.values().all(|member| member.supports(name)))
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(name, _)| candidates.contains(&name)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        let most = votes.values().copied().max()?;
        votes.into_iter().find(|(_, count)| *count == most).map(|(name, _)| name.clone())
    }
}

impl Member {
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    /// The metadata the member sent for `protocol` (empty if none).
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No initial delay, no size limit: the rules most tests are not about.
    const NO_LIMITS: JoinLimits = JoinLimits { initial_rebalance_delay_ms: 0, group_size_max: i32::MAX as usize };

    fn params(member_id: &str) -> JoinParams {
        JoinParams {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"r")), ("roundrobin".into(), Bytes::new())],
            require_known_member_id: true,
            limits: NO_LIMITS,
        }
    }

    fn now_result(step: Step<JoinResult>) -> JoinResult {
        match step {
            Step::Now(result) => result,
            Step::Wait(mut receiver) => receiver.try_recv().unwrap().expect("answered"),
        }
    }

    /// Joins a new member through MEMBER_ID_REQUIRED; returns its id and
    /// the receiver of its join.
    fn join_new(group: &mut ClassicGroup, name: &str, now: Instant) -> (String, Step<JoinResult>) {
        let first = now_result(group.join(params(""), now, || name.to_owned()));
        assert_eq!(first.error, ErrorCode::MemberIdRequired.code());
        assert_eq!(first.member_id, name);
        (name.to_owned(), group.join(params(name), now, || unreachable!()))
    }

    #[test]
    fn a_lone_member_joins_syncs_and_heartbeats() {
        // Proves the MEMBER_ID_REQUIRED flow, generation 1 with the member as
        // leader, the leader's assignment coming back, and heartbeats.
        let now = Instant::now();
        let mut group = ClassicGroup::new("g".into());
        let (id, step) = join_new(&mut group, "m1", now);
        let joined = now_result(step);
        assert_eq!((joined.error, joined.generation_id, joined.leader.as_str()), (0, 1, "m1"));
        assert_eq!(joined.protocol_name.as_deref(), Some("range"));
        assert_eq!(joined.members.len(), 1);
        let Step::Wait(mut synced) = group.sync(&id, None, 1, vec![(id.clone(), Bytes::from_static(b"all"))], now)
        else {
            panic!("the leader's sync completes through its waiter");
        };
        assert_eq!(synced.try_recv().unwrap().unwrap().assignment, Bytes::from_static(b"all"));
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!(group.heartbeat(&id, None, 1, now), Ok(()));
        assert_eq!(group.heartbeat(&id, None, 0, now), Err(ErrorCode::IllegalGeneration));
        assert_eq!(group.heartbeat("nobody", None, 1, now), Err(ErrorCode::UnknownMemberId));
    }

    #[test]
    fn a_second_member_makes_the_first_rejoin() {
        // Proves a join into a Stable group starts a rebalance that waits for
        // the known member, which learns of it from its heartbeat.
        let now = Instant::now();
        let mut group = ClassicGroup::new("g".into());
        let (a, step) = join_new(&mut group, "a", now);
        now_result(step);
        let _ = group.sync(&a, None, 1, vec![], now);
        let (_b, step_b) = join_new(&mut group, "b", now);
        let Step::Wait(mut waiting_b) = step_b else { panic!("b waits for a") };
        assert!(waiting_b.try_recv().unwrap().is_none());
        assert_eq!(group.heartbeat(&a, None, 1, now), Err(ErrorCode::RebalanceInProgress));
        let rejoined = now_result(group.join(params(&a), now, || unreachable!()));
        assert_eq!((rejoined.generation_id, rejoined.members.len()), (2, 2), "a stays leader");
        let joined_b = waiting_b.try_recv().unwrap().unwrap();
        assert_eq!((joined_b.generation_id, joined_b.leader.as_str(), joined_b.members.len()), (2, "a", 0));
    }

    #[test]
    fn leaving_and_expiring_members_rebalance_the_group() {
        // Proves LeaveGroup and a missed session timeout both remove a
        // member and start a rebalance; the last member leaving empties it.
        let now = Instant::now();
        let mut group = ClassicGroup::new("g".into());
        let (a, step) = join_new(&mut group, "a", now);
        now_result(step);
        let (b, _step_b) = join_new(&mut group, "b", now);
        now_result(group.join(params(&a), now, || unreachable!()));
        let _ = group.sync(&a, None, 2, vec![], now);
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!(group.leave(&b, None, now), Ok(()));
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert_eq!(group.leave(&b, None, now), Err(ErrorCode::UnknownMemberId));
        let later = now + Duration::from_secs(11);
        assert_eq!(group.expire(later), vec![a.clone()]);
        assert_eq!((group.state, group.members.len(), group.generation_id), (GroupState::Empty, 0, 3));
        assert_eq!(group.validate_commit("", None, -1, later), Ok(()), "simple commits to an empty group");
    }

    #[test]
    fn a_join_phase_times_out_without_the_silent_member() {
        // Proves the rebalance timer ends the join phase and drops members
        // that did not rejoin; a stale timer does nothing.
        let now = Instant::now();
        let mut group = ClassicGroup::new("g".into());
        let (a, step) = join_new(&mut group, "a", now);
        now_result(step);
        let _ = group.sync(&a, None, 1, vec![], now);
        let (_b, step_b) = join_new(&mut group, "b", now);
        let Step::Wait(mut waiting_b) = step_b else { panic!("b waits") };
        let (epoch, timeout) = group.timer_wanted.take().unwrap();
        assert_eq!(timeout, Duration::from_secs(30));
        group.rebalance_timed_out(epoch - 1, now);
        assert!(waiting_b.try_recv().unwrap().is_none());
        group.rebalance_timed_out(epoch, now);
        let joined = waiting_b.try_recv().unwrap().unwrap();
        assert_eq!((joined.generation_id, joined.leader.as_str()), (2, "b"));
        assert!(!group.members.contains_key(&a));
    }

    #[test]
    fn commits_are_checked_against_the_generation() {
        // Proves Kafka's commit rules: simple commits only to empty groups,
        // members with their current generation, none while syncing.
        let now = Instant::now();
        let mut group = ClassicGroup::new("g".into());
        let (a, step) = join_new(&mut group, "a", now);
        now_result(step);
        assert_eq!(group.validate_commit(&a, None, 1, now), Err(ErrorCode::RebalanceInProgress));
        let _ = group.sync(&a, None, 1, vec![], now);
        assert_eq!(group.validate_commit(&a, None, 1, now), Ok(()));
        assert_eq!(group.validate_commit(&a, None, 0, now), Err(ErrorCode::IllegalGeneration));
        assert_eq!(group.validate_commit("", None, -1, now), Err(ErrorCode::UnknownMemberId));
        assert_eq!(group.validate_commit("x", None, 1, now), Err(ErrorCode::UnknownMemberId));
    }

    #[test]
    fn transactional_commits_are_checked_as_kafka_checks_them() {
        // Proves Kafka's rules for TxnOffsetCommit in a classic group: one
        // without generation, member or instance id (below v3) passes in
        // any state; a member's must carry the current generation, also
        // passes while the leader's assignment is awaited; strangers and a
        // static member's old id are refused; an Empty group takes one
        // without generation.
        let now = Instant::now();
        let mut group = ClassicGroup::new("g".into());
        assert_eq!(group.validate_txn_commit("", None, -1), Ok(()));
        assert_eq!(group.validate_txn_commit("anyone", None, -1), Ok(()), "an Empty group, generation -1");
        let (a, step) = join_new(&mut group, "a", now);
        now_result(step);
        assert_eq!(group.state, GroupState::CompletingRebalance);
        assert_eq!(group.validate_txn_commit(&a, None, 1), Ok(()), "no REBALANCE_IN_PROGRESS for transactions");
        let _ = group.sync(&a, None, 1, vec![], now);
        assert_eq!(group.validate_txn_commit(&a, None, 1), Ok(()));
        assert_eq!(group.validate_txn_commit("", None, -1), Ok(()), "pre-v3 requests carry no member");
        assert_eq!(group.validate_txn_commit(&a, None, 0), Err(ErrorCode::IllegalGeneration));
        assert_eq!(group.validate_txn_commit(&a, None, -1), Err(ErrorCode::IllegalGeneration));
        assert_eq!(group.validate_txn_commit("x", None, 1), Err(ErrorCode::UnknownMemberId));
        assert_eq!(group.validate_txn_commit("", None, 1), Err(ErrorCode::UnknownMemberId));
        let group = stable_static_pair(now);
        assert_eq!(group.validate_txn_commit("a", Some("ia"), 2), Ok(()));
        assert_eq!(group.validate_txn_commit("b", Some("ia"), 2), Err(ErrorCode::FencedInstanceId));
        assert_eq!(group.validate_txn_commit("a", Some("nobody"), 2), Err(ErrorCode::UnknownMemberId));
    }

    #[test]
    fn incompatible_protocols_are_refused() {
        // Proves a joiner sharing no protocol with the members is refused.
        let now = Instant::now();
        let mut group = ClassicGroup::new("g".into());
        let (_a, step) = join_new(&mut group, "a", now);
        now_result(step);
        let mut other = params("");
        other.protocols = vec![("sticky".into(), Bytes::new())];
        let refused = now_result(group.join(other, now, || "c".into()));
        assert_eq!(refused.error, ErrorCode::InconsistentGroupProtocol.code());
    }

    fn static_params(member_id: &str, instance_id: &str) -> JoinParams {
        JoinParams { group_instance_id: Some(instance_id.into()), ..params(member_id) }
    }

    fn answered<T>(receiver: &mut oneshot::Receiver<T>) -> Option<T> {
        receiver.try_recv().expect("sender kept or answered")
    }

    fn waiting(step: Step<JoinResult>) -> oneshot::Receiver<JoinResult> {
        match step {
            Step::Wait(receiver) => receiver,
            Step::Now(result) => panic!("answered at once: {result:?}"),
        }
    }

    /// A Stable group of static members `a` (instance "ia", the leader,
    /// assigned "A") and `b` (instance "ib", assigned "B"), generation 2.
    fn stable_static_pair(now: Instant) -> ClassicGroup {
        let mut group = ClassicGroup::new("g".into());
        let joined = now_result(group.join(static_params("", "ia"), now, || "a".into()));
        assert_eq!((joined.error, joined.generation_id), (0, 1), "a static member joins at once, even from v4");
        let _ = group.sync("a", Some("ia"), 1, vec![("a".into(), Bytes::from_static(b"A"))], now);
        let mut b = waiting(group.join(static_params("", "ib"), now, || "b".into()));
        let rejoined = now_result(group.join(static_params("a", "ia"), now, || unreachable!()));
        assert_eq!((rejoined.generation_id, rejoined.leader.as_str()), (2, "a"));
        assert_eq!(answered(&mut b).unwrap().generation_id, 2);
        let assignments = vec![("a".into(), Bytes::from_static(b"A")), ("b".into(), Bytes::from_static(b"B"))];
        let _ = group.sync("a", Some("ia"), 2, assignments, now);
        assert_eq!(group.state, GroupState::Stable);
        assert!(group.take_persist_wanted());
        group
    }

    /// Answers the deferred joins as the coordinator does once the
    /// group's record is durable.
    fn persist(group: &mut ClassicGroup) {
        assert!(group.take_persist_wanted(), "the new member id must be written");
        for deferred in group.take_deferred_joins() {
            deferred.complete(true);
        }
    }

    #[test]
    fn a_restarted_static_member_takes_over_without_a_rebalance() {
        // Proves KIP-345's restart: a join with a known instance id and no
        // member id replaces the old id, keeps the generation and the old
        // assignment (SyncGroup returns it), is answered only once the new
        // id is durable, and leaves the other member undisturbed; the old
        // id is fenced on every API that names the instance.
        let now = Instant::now();
        let mut group = stable_static_pair(now);
        let mut b2 = waiting(group.join(static_params("", "ib"), now, || "b2".into()));
        assert!(answered(&mut b2).is_none(), "not before the record is durable");
        persist(&mut group);
        let joined = answered(&mut b2).unwrap();
        assert_eq!((joined.error, joined.generation_id, joined.member_id.as_str()), (0, 2, "b2"));
        assert_eq!((joined.leader.as_str(), joined.members.len()), ("a", 0));
        assert_eq!((group.state, group.generation_id), (GroupState::Stable, 2), "no rebalance");
        assert_eq!(group.static_member_id("ib"), Some("b2"));
        let Step::Now(synced) = group.sync("b2", Some("ib"), 2, vec![], now) else { panic!("Stable answers at once") };
        assert_eq!((synced.error, synced.assignment), (0, Bytes::from_static(b"B")));
        assert_eq!(group.heartbeat("a", Some("ia"), 2, now), Ok(()), "the other member is not asked to rejoin");
        let fenced = Err(ErrorCode::FencedInstanceId);
        assert_eq!(group.heartbeat("b", Some("ib"), 2, now), fenced);
        assert_eq!(group.heartbeat("b", None, 2, now), Err(ErrorCode::UnknownMemberId), "v0-v2 name no instance");
        let Step::Now(sync) = group.sync("b", Some("ib"), 2, vec![], now) else { panic!("refused at once") };
        assert_eq!(sync.error, ErrorCode::FencedInstanceId.code());
        assert_eq!(group.validate_commit("b", Some("ib"), 2, now), fenced);
        assert_eq!(group.leave("b", Some("ib"), now), fenced);
        let rejoin = now_result(group.join(static_params("b", "ib"), now, || unreachable!()));
        assert_eq!(rejoin.error, ErrorCode::FencedInstanceId.code());
        assert_eq!((group.state, group.members.len()), (GroupState::Stable, 2));
    }

    #[test]
    fn a_restarted_static_leader_is_answered_as_a_follower() {
        // Proves a replaced leader stays leader under its new id, but its
        // join answer names the old id as leader and no members, so the
        // client syncs as a follower instead of assigning (JoinGroup < v9
        // has no SkipAssignment).
        let now = Instant::now();
        let mut group = stable_static_pair(now);
        let mut a2 = waiting(group.join(static_params("", "ia"), now, || "a2".into()));
        persist(&mut group);
        let joined = answered(&mut a2).unwrap();
        assert_eq!((joined.member_id.as_str(), joined.leader.as_str(), joined.members.len()), ("a2", "a", 0));
        assert_eq!(group.leader.as_deref(), Some("a2"));
        assert_eq!(group.record().leader.as_deref(), Some("a2"));
        let Step::Now(synced) = group.sync("a2", Some("ia"), 2, vec![], now) else { panic!("Stable answers at once") };
        assert_eq!(synced.assignment, Bytes::from_static(b"A"));
    }

    #[test]
    fn a_static_member_with_changed_protocols_triggers_a_rebalance() {
        // Proves a restarted static member whose protocols change the
        // group's selected protocol starts a rebalance instead of taking
        // over the generation.
        let now = Instant::now();
        let mut group = stable_static_pair(now);
        let mut changed = static_params("", "ib");
        changed.protocols = vec![("roundrobin".into(), Bytes::new())];
        let mut b2 = waiting(group.join(changed, now, || "b2".into()));
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert_eq!(group.heartbeat("a", Some("ia"), 2, now), Err(ErrorCode::RebalanceInProgress));
        let rejoined = now_result(group.join(static_params("a", "ia"), now, || unreachable!()));
        assert_eq!((rejoined.generation_id, rejoined.protocol_name.as_deref()), (3, Some("roundrobin")));
        assert_eq!(answered(&mut b2).unwrap().generation_id, 3);
    }

    #[test]
    fn a_static_rejoin_fences_the_old_incarnations_waiting_join() {
        // Proves that in a join phase the old member id's waiting JoinGroup
        // is answered FENCED_INSTANCE_ID and the new id takes its place in
        // the phase.
        let now = Instant::now();
        let mut group = stable_static_pair(now);
        let (_c, step_c) = join_new(&mut group, "c", now);
        let mut c = waiting(step_c);
        let mut old_a = waiting(group.join(static_params("a", "ia"), now, || unreachable!()));
        let mut a2 = waiting(group.join(static_params("", "ia"), now, || "a2".into()));
        assert_eq!(answered(&mut old_a).unwrap().error, ErrorCode::FencedInstanceId.code());
        assert!(answered(&mut a2).is_none(), "b has not rejoined yet");
        now_result(group.join(static_params("b", "ib"), now, || unreachable!()));
        let joined = answered(&mut a2).unwrap();
        assert_eq!((joined.generation_id, joined.leader.as_str(), joined.members.len()), (3, "a2", 3));
        assert_eq!(answered(&mut c).unwrap().generation_id, 3);
    }

    #[test]
    fn a_join_phase_keeps_static_members_that_did_not_rejoin() {
        // Proves the rebalance timeout drops dynamic members that did not
        // rejoin but keeps static ones (their partitions wait for them);
        // with only absent static members the phase waits another
        // rebalance timeout; their session timeout removes them.
        let now = Instant::now();
        let mut group = stable_static_pair(now);
        let (_d, step_d) = join_new(&mut group, "d", now);
        let mut d = waiting(step_d);
        let (epoch, _) = group.timer_wanted.take().unwrap();
        group.rebalance_timed_out(epoch, now);
        let joined = answered(&mut d).unwrap();
        assert_eq!((joined.generation_id, joined.leader.as_str()), (3, "d"), "a did not rejoin: d leads");
        assert_eq!(joined.members.len(), 3, "the absent static members are in the generation");
        assert_eq!(group.leave("d", None, now), Ok(()));
        let (epoch, _) = group.timer_wanted.take().unwrap();
        group.rebalance_timed_out(epoch, now);
        assert_eq!((group.state, group.generation_id), (GroupState::PreparingRebalance, 3), "nobody to answer");
        assert_eq!(group.timer_wanted.take().map(|(e, t)| (e, t.as_secs())), Some((epoch, 30)));
        let later = now + Duration::from_secs(11);
        let mut expired = group.expire(later);
        expired.sort();
        assert_eq!(expired, vec!["a".to_string(), "b".to_string()]);
        assert_eq!((group.state, group.static_member_id("ia")), (GroupState::Empty, None));
    }

    #[test]
    fn static_members_expire_by_session_timeout() {
        // Proves a silent static member (librdkafka sends no LeaveGroup
        // when one closes) is removed after its session timeout, starting
        // a rebalance, and its instance id is free again afterwards.
        let now = Instant::now();
        let mut group = stable_static_pair(now);
        let later = now + Duration::from_secs(11);
        assert_eq!(group.heartbeat("a", Some("ia"), 2, later), Ok(()));
        assert_eq!(group.expire(later), vec!["b".to_string()]);
        assert_eq!((group.state, group.static_member_id("ib")), (GroupState::PreparingRebalance, None));
        let rejoined = now_result(group.join(static_params("a", "ia"), later, || unreachable!()));
        assert_eq!((rejoined.generation_id, rejoined.members.len()), (3, 1));
        let _ = group.sync("a", Some("ia"), 3, vec![], later);
        let mut b2 = waiting(group.join(static_params("", "ib"), later, || "b2".into()));
        assert_eq!(group.state, GroupState::PreparingRebalance, "a new static member: a rebalance");
        now_result(group.join(static_params("a", "ia"), later, || unreachable!()));
        assert_eq!(answered(&mut b2).unwrap().generation_id, 4);
    }

    #[test]
    fn leave_by_instance_id_removes_a_static_member() {
        // Proves LeaveGroup v3+ naming only an instance id (member id "")
        // removes that static member and starts a rebalance, and an
        // unknown instance id is UNKNOWN_MEMBER_ID.
        let now = Instant::now();
        let mut group = stable_static_pair(now);
        assert_eq!(group.leave("", Some("nobody"), now), Err(ErrorCode::UnknownMemberId));
        assert_eq!(group.leave("", None, now), Err(ErrorCode::UnknownMemberId));
        assert_eq!(group.leave("", Some("ib"), now), Ok(()));
        assert!(!group.members.contains_key("b"));
        assert_eq!((group.state, group.static_member_id("ib")), (GroupState::PreparingRebalance, None));
    }

    #[test]
    fn restore_rebuilds_static_members_and_client_hosts() {
        // Proves the membership record keeps instance ids and client hosts,
        // a group restored from it states the same record, and a static
        // member restarting after the broker restarted takes over its old
        // id without a rebalance.
        let now = Instant::now();
        let group = stable_static_pair(now);
        let record = group.record();
        assert!(record.members.iter().all(|member| member.client_host == "/127.0.0.1"), "{record:?}");
        let mut restored = ClassicGroup::restore(record.clone(), now);
        assert_eq!(restored.record(), record);
        assert_eq!((restored.static_member_id("ia"), restored.static_member_id("ib")), (Some("a"), Some("b")));
        let mut b2 = waiting(restored.join(static_params("", "ib"), now, || "b2".into()));
        persist(&mut restored);
        assert_eq!(answered(&mut b2).unwrap().generation_id, 2);
        assert_eq!((restored.state, restored.generation_id), (GroupState::Stable, 2));
        let Step::Now(synced) = restored.sync("b2", Some("ib"), 2, vec![], now) else { panic!("Stable") };
        assert_eq!(synced.assignment, Bytes::from_static(b"B"));
    }

    #[test]
    fn the_first_join_phase_waits_the_initial_delay_extended_by_new_members() {
        // Proves group.initial.rebalance.delay.ms: the first join phase of
        // an Empty group is not completed when everyone joined, but by its
        // timer; a member arriving meanwhile extends it by the delay.
        let now = Instant::now();
        let limits = JoinLimits { initial_rebalance_delay_ms: 3000, ..NO_LIMITS };
        let mut group = ClassicGroup::new("g".into());
        let mut a = waiting(group.join(JoinParams { limits, ..static_params("", "ia") }, now, || "a".into()));
        assert!(answered(&mut a).is_none(), "the lone member waits for the delay");
        let (epoch, delay) = group.timer_wanted.take().unwrap();
        assert_eq!(delay, Duration::from_millis(3000));
        let mut b = waiting(group.join(JoinParams { limits, ..static_params("", "ib") }, now, || "b".into()));
        assert!(answered(&mut b).is_none());
        group.rebalance_timed_out(epoch, now);
        assert!(answered(&mut a).is_none(), "b arrived: the delay is extended");
        assert_eq!(group.timer_wanted.take(), Some((epoch, Duration::from_millis(3000))));
        group.rebalance_timed_out(epoch, now);
        let joined = answered(&mut a).unwrap();
        assert_eq!((joined.generation_id, joined.members.len()), (1, 2));
        assert_eq!(answered(&mut b).unwrap().generation_id, 1);
        assert!(group.timer_wanted.is_none());
    }

    #[test]
    fn the_initial_delay_never_outlasts_the_rebalance_timeout() {
        // Proves the delays of the first join phase add up to at most the
        // rebalance timeout, however many members keep arriving, and a
        // delay longer than the rebalance timeout is cut to it.
        let now = Instant::now();
        let limits = JoinLimits { initial_rebalance_delay_ms: 3000, ..NO_LIMITS };
        let joiner = |name: &str| JoinParams { rebalance_timeout_ms: 7000, limits, ..static_params("", name) };
        let mut group = ClassicGroup::new("g".into());
        let mut first = waiting(group.join(joiner("i0"), now, || "m0".into()));
        let mut waited = Duration::ZERO;
        for i in 1.. {
            let (epoch, delay) = group.timer_wanted.take().expect("a timer while the phase lasts");
            waited += delay;
            let _ = group.join(joiner(&format!("i{i}")), now, || format!("m{i}"));
            group.rebalance_timed_out(epoch, now);
            if group.state != GroupState::PreparingRebalance {
                break;
            }
        }
        assert_eq!(waited, Duration::from_millis(7000), "3000 + 3000 + 1000");
        assert_eq!(answered(&mut first).unwrap().generation_id, 1);
        let mut group = ClassicGroup::new("g".into());
        let long = JoinLimits { initial_rebalance_delay_ms: 60_000, ..NO_LIMITS };
        let _ = group.join(JoinParams { limits: long, ..joiner("i0") }, now, || "m0".into());
        assert_eq!(group.timer_wanted.map(|(_, delay)| delay), Some(Duration::from_millis(7000)));
    }

    #[test]
    fn group_max_size_refuses_joins_beyond_it() {
        // Proves group.max.size: a new member of a full group gets
        // GROUP_MAX_SIZE_REACHED (without a member id handed out), while
        // members of the group, and a restarting static member, still join;
        // in a join phase the count is of members waiting in it, so a
        // member rejoining after the phase filled up is turned away.
        let now = Instant::now();
        let limits = JoinLimits { group_size_max: 2, ..NO_LIMITS };
        let mut group = stable_static_pair(now);
        let full = now_result(group.join(JoinParams { limits, ..params("") }, now, || "c".into()));
        assert_eq!((full.error, full.member_id.as_str()), (ErrorCode::GroupMaxSizeReached.code(), ""));
        assert!(group.pending_members.is_empty());
        let static_full = now_result(group.join(JoinParams { limits, ..static_params("", "ic") }, now, || "c".into()));
        assert_eq!(static_full.error, ErrorCode::GroupMaxSizeReached.code());
        let _ = group.join(JoinParams { limits, ..static_params("", "ib") }, now, || "b2".into());
        persist(&mut group);
        assert_eq!(group.static_member_id("ib"), Some("b2"), "a restart does not grow the group");
        let mut a = waiting(group.join(JoinParams { limits, ..static_params("a", "ia") }, now, || unreachable!()));
        let required = now_result(group.join(JoinParams { limits, ..params("") }, now, || "c".into()));
        assert_eq!(required.error, ErrorCode::MemberIdRequired.code(), "one member waits in the phase: room for c");
        let mut c = waiting(group.join(JoinParams { limits, ..params("c") }, now, || unreachable!()));
        let late = now_result(group.join(JoinParams { limits, ..static_params("b2", "ib") }, now, || unreachable!()));
        assert_eq!(late.error, ErrorCode::GroupMaxSizeReached.code(), "the phase is full: the last to rejoin is out");
        assert!(!group.members.contains_key("b2"));
        assert_eq!(answered(&mut a).unwrap().generation_id, 3);
        assert_eq!(answered(&mut c).unwrap().members.len(), 0);
    }

    #[test]
    fn a_join_phase_waits_for_member_ids_handed_out() {
        // Proves Kafka's hasAllMembersJoined: a member id handed out with
        // MEMBER_ID_REQUIRED holds the join phase until it joins, or until
        // it expires.
        let now = Instant::now();
        let mut group = ClassicGroup::new("g".into());
        let (a, step) = join_new(&mut group, "a", now);
        now_result(step);
        let _ = group.sync(&a, None, 1, vec![], now);
        let required = now_result(group.join(params(""), now, || "b".into()));
        assert_eq!(required.error, ErrorCode::MemberIdRequired.code());
        let mut leader = waiting(group.join(params(&a), now, || unreachable!()));
        assert!(answered(&mut leader).is_none(), "b may still come");
        now_result(group.join(params("b"), now, || unreachable!()));
        assert_eq!(answered(&mut leader).unwrap().members.len(), 2);
        let _ = group.sync(&a, None, 2, vec![], now);
        let _ = now_result(group.join(params(""), now, || "c".into()));
        let mut leader = waiting(group.join(params(&a), now, || unreachable!()));
        let mut b = waiting(group.join(params("b"), now, || unreachable!()));
        assert!(answered(&mut leader).is_none(), "c may still come");
        assert!(group.expire(now + Duration::from_secs(11)).is_empty(), "a and b wait in the phase");
        assert_eq!(answered(&mut leader).unwrap().generation_id, 3, "c's id expired");
        assert_eq!(answered(&mut b).unwrap().members.len(), 0);
    }

    fn offset(commit_timestamp_ms: i64) -> Committed {
        Committed { offset: 5, leader_epoch: -1, metadata: None, commit_timestamp_ms, sequence: 0 }
    }

    #[test]
    fn offsets_of_an_empty_group_expire_after_the_retention() {
        // Proves KIP-211 retention with injected times: an Empty group's
        // offsets expire once the retention passed since the later of their
        // commit and the group becoming Empty, and the group may be deleted
        // once none is left; a group with members keeps every offset.
        let now = Instant::now();
        let mut group = ClassicGroup::new("g".into());
        let (a, step) = join_new(&mut group, "a", now);
        now_result(step);
        let _ = group.sync(&a, None, 1, vec![], now);
        let offsets: BTreeMap<TopicPartition, Committed> =
            [(("t".to_string(), 0), offset(1_000)), (("t".to_string(), 1), offset(1_500))].into();
        let expired = |group: &ClassicGroup, now_ms| group.expire_offsets(&offsets, now_ms, 10_000);
        assert_eq!(expired(&group, 1_000_000), OffsetExpiry::default(), "Stable: nothing expires");
        assert_eq!(group.leave(&a, None, now), Ok(()));
        assert_eq!(group.state, GroupState::Empty);
        group.state_timestamp_ms = 1_200;
        assert_eq!(expired(&group, 11_199), OffsetExpiry::default());
        let first = OffsetExpiry { expired: vec![("t".to_string(), 0)], delete_group: false };
        assert_eq!(expired(&group, 11_200), first, "counted from the group becoming Empty");
        let both = OffsetExpiry { expired: vec![("t".to_string(), 0), ("t".to_string(), 1)], delete_group: true };
        assert_eq!(expired(&group, 11_500), both, "a commit into the Empty group counts from itself");
        group.pending_members.insert("x".into(), now);
        assert!(!expired(&group, 11_500).delete_group, "a member id handed out keeps the group");
        group.pending_members.clear();
        let none: BTreeMap<TopicPartition, Committed> = BTreeMap::new();
        assert!(group.expire_offsets(&none, 0, 10_000).delete_group, "Empty without offsets");
    }

    #[test]
    fn offsets_of_a_group_without_members_count_from_their_commit() {
        // Proves a group that never had members (simple commits, no
        // protocol type) expires each offset from its commit alone: a
        // restart, which makes such a group anew, does not postpone it.
        let group = ClassicGroup { state_timestamp_ms: 50_000, ..ClassicGroup::new("simple".into()) };
        let offsets: BTreeMap<TopicPartition, Committed> = [(("t".to_string(), 0), offset(1_000))].into();
        let expiry = group.expire_offsets(&offsets, 11_000, 10_000);
        assert_eq!(expiry, OffsetExpiry { expired: vec![("t".to_string(), 0)], delete_group: true });
        assert_eq!(group.expire_offsets(&offsets, 10_999, 10_000).expired.len(), 0);
    }
}
