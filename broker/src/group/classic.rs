//! One classic group's state machine, as Kafka's GroupCoordinator
//! runs it: Empty → PreparingRebalance (join phase) → CompletingRebalance
//! (waiting for the leader's SyncGroup) → Stable, and back to
//! PreparingRebalance when a member joins, leaves, changes its protocols
//! or misses its session timeout.
//!
//! Everything here is synchronous and owned by the coordinator shard: a
//! request that must wait (JoinGroup until the join phase ends, SyncGroup
//! until the leader's assignment arrives) gets a oneshot receiver, and the
//! state completes it. Invariants:
//! - a member has a `join_waiter` only during PreparingRebalance, and a
//!   `sync_waiter` only during CompletingRebalance;
//! - `leader` is a member whenever the group has members and is not Empty;
//! - `generation_id` only grows;
//! - `persist_wanted` is set whenever what [`ClassicGroup::record`] states
//!   changed (a generation got its assignments, the group became empty):
//!   the coordinator then writes the record to the group log.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use protocol::ErrorCode;

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

/// A JoinGroup request's fields that the state machine needs.
#[derive(Clone, Debug)]
pub struct JoinParams {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a member without an id first gets one with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

pub struct Member {
    pub id: String,
    pub client_id: String,
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
}

/// An answer now, or later through a receiver.
pub enum Step<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
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
    /// Member ids handed out with MEMBER_ID_REQUIRED, until when they may
    /// come back with them (their session timeout).
    pub pending_members: HashMap<String, Instant>,
    /// Counts join phases, so a join phase's timer knows whether it is
    /// still the current one.
    pub rebalance_epoch: u64,
    /// Set when a join phase starts: the coordinator arms a timer that ends
    /// it after this long, whoever has not rejoined by then is removed.
    pub timer_wanted: Option<(u64, Duration)>,
    /// The durable view ([`ClassicGroup::record`]) changed since it was
    /// last taken.
    persist_wanted: bool,
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
            pending_members: HashMap::new(),
            rebalance_epoch: 0,
            timer_wanted: None,
            persist_wanted: false,
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
                client_host: String::new(),
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
    /// Kafka) or Empty.
    pub fn restore(record: ClassicGroupRecord, now: Instant) -> ClassicGroup {
        let mut group = ClassicGroup::new(record.group);
        group.generation_id = record.generation_id;
        group.protocol_type = record.protocol_type;
        group.protocol_name = record.protocol_name.clone();
        group.state_timestamp_ms = record.state_timestamp_ms;
        let protocol = record.protocol_name.unwrap_or_default();
        for member in record.members {
            let restored = Member {
                id: member.member_id.clone(),
                client_id: member.client_id,
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
        if !self.protocols_compatible(&params) {
            return Step::Now(JoinResult::error(ErrorCode::InconsistentGroupProtocol, &params.member_id));
        }
        if params.member_id.is_empty() {
            let member_id = new_member_id();
            if params.require_known_member_id {
                let deadline = now + Duration::from_millis(params.session_timeout_ms as u64);
                self.pending_members.insert(member_id.clone(), deadline);
                return Step::Now(JoinResult::error(ErrorCode::MemberIdRequired, &member_id));
            }
            return Step::Wait(self.add_member_and_rebalance(member_id, params, now));
        }
        if self.pending_members.remove(&params.member_id).is_some() {
            let member_id = params.member_id.clone();
            return Step::Wait(self.add_member_and_rebalance(member_id, params, now));
        }
        let is_leader = self.is_leader(&params.member_id);
        let state = self.state;
        let Some(member) = self.members.get_mut(&params.member_id) else {
            return Step::Now(JoinResult::error(ErrorCode::UnknownMemberId, &params.member_id));
        };
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

    /// SyncGroup: the leader hands out assignments; everyone gets theirs.
    pub fn sync(
        &mut self,
        member_id: &str,
        generation_id: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Step<SyncResult> {
        if let Err(code) = self.check_member(member_id, generation_id) {
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
                Step::Wait(receiver)
            }
        }
    }

    pub fn heartbeat(&mut self, member_id: &str, generation_id: i32, now: Instant) -> Result<(), ErrorCode> {
        if self.state == GroupState::Empty {
            return Err(ErrorCode::UnknownMemberId);
        }
        self.check_member(member_id, generation_id)?;
        self.members.get_mut(member_id).expect("checked").last_heartbeat = now;
        match self.state {
            GroupState::PreparingRebalance => Err(ErrorCode::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup for one member.
    pub fn leave(&mut self, member_id: &str, now: Instant) -> Result<(), ErrorCode> {
        if self.pending_members.remove(member_id).is_some() {
            return Ok(());
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        self.remove_member(member_id, now);
        Ok(())
    }

    /// Removes members whose session timed out and forgotten pending ids;
    /// returns the ids of the members removed.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
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
        expired
    }

    /// Ends the join phase `epoch` if it is still running (its timer fired).
    pub fn rebalance_timed_out(&mut self, epoch: u64, now: Instant) {
        if self.state == GroupState::PreparingRebalance && self.rebalance_epoch == epoch {
            self.complete_join(now);
        }
    }

    /// Kafka's checks on a commit: a simple commit (no member, generation
    /// -1) only to a group without members; a member's commit with its
    /// generation, not while the leader's assignment is awaited.
    pub fn validate_commit(&mut self, member_id: &str, generation_id: i32, now: Instant) -> Result<(), ErrorCode> {
        if generation_id < 0 && member_id.is_empty() && self.state == GroupState::Empty {
            return Ok(());
        }
        self.check_member(member_id, generation_id)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        self.members.get_mut(member_id).expect("checked").last_heartbeat = now;
        Ok(())
    }

    fn check_member(&self, member_id: &str, generation_id: i32) -> Result<(), ErrorCode> {
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
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
        let member = Member {
            id: member_id.clone(),
            client_id: params.client_id,
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
        if self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(now);
        } else {
            self.prepare_rebalance(now);
        }
        receiver
    }

    fn remove_member(&mut self, member_id: &str, now: Instant) {
        let Some(mut member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinResult::error(ErrorCode::UnknownMemberId, member_id));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(SyncResult::error(ErrorCode::UnknownMemberId));
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now),
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty => {}
        }
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
        let timeout_ms = self.members.values().map(|member| member.rebalance_timeout_ms).max().unwrap_or(0);
        self.timer_wanted = Some((self.rebalance_epoch, Duration::from_millis(timeout_ms.max(0) as u64)));
        self.maybe_complete_join(now);
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance && self.members.values().all(|m| m.join_waiter.is_some()) {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: members that did not rejoin are removed, a new
    /// generation starts with a protocol every member supports, and every
    /// waiting JoinGroup is answered (the leader with the members).
    fn complete_join(&mut self, now: Instant) {
        assert_eq!(self.state, GroupState::PreparingRebalance, "group {}", self.id);
        self.members.retain(|_, member| member.join_waiter.is_some());
        self.generation_id += 1;
        if self.members.is_empty() {
            self.set_state(GroupState::Empty);
            self.protocol_name = None;
            self.leader = None;
            self.persist_wanted = true;
            return;
        }
        self.protocol_name = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|leader| self.members.contains_key(leader)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance);
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

    fn params(member_id: &str) -> JoinParams {
        JoinParams {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"r")), ("roundrobin".into(), Bytes::new())],
            require_known_member_id: true,
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
        let Step::Wait(mut synced) = group.sync(&id, 1, vec![(id.clone(), Bytes::from_static(b"all"))], now) else {
            panic!("the leader's sync completes through its waiter");
        };
        assert_eq!(synced.try_recv().unwrap().unwrap().assignment, Bytes::from_static(b"all"));
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!(group.heartbeat(&id, 1, now), Ok(()));
        assert_eq!(group.heartbeat(&id, 0, now), Err(ErrorCode::IllegalGeneration));
        assert_eq!(group.heartbeat("nobody", 1, now), Err(ErrorCode::UnknownMemberId));
    }

    #[test]
    fn a_second_member_makes_the_first_rejoin() {
        // Proves a join into a Stable group starts a rebalance that waits for
        // the known member, which learns of it from its heartbeat.
        let now = Instant::now();
        let mut group = ClassicGroup::new("g".into());
        let (a, step) = join_new(&mut group, "a", now);
        now_result(step);
        let _ = group.sync(&a, 1, vec![], now);
        let (_b, step_b) = join_new(&mut group, "b", now);
        let Step::Wait(mut waiting_b) = step_b else { panic!("b waits for a") };
        assert!(waiting_b.try_recv().unwrap().is_none());
        assert_eq!(group.heartbeat(&a, 1, now), Err(ErrorCode::RebalanceInProgress));
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
        let _ = group.sync(&a, 2, vec![], now);
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!(group.leave(&b, now), Ok(()));
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert_eq!(group.leave(&b, now), Err(ErrorCode::UnknownMemberId));
        let later = now + Duration::from_secs(11);
        assert_eq!(group.expire(later), vec![a.clone()]);
        assert_eq!((group.state, group.members.len(), group.generation_id), (GroupState::Empty, 0, 3));
        assert_eq!(group.validate_commit("", -1, later), Ok(()), "simple commits to an empty group");
    }

    #[test]
    fn a_join_phase_times_out_without_the_silent_member() {
        // Proves the rebalance timer ends the join phase and drops members
        // that did not rejoin; a stale timer does nothing.
        let now = Instant::now();
        let mut group = ClassicGroup::new("g".into());
        let (a, step) = join_new(&mut group, "a", now);
        now_result(step);
        let _ = group.sync(&a, 1, vec![], now);
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
        assert_eq!(group.validate_commit(&a, 1, now), Err(ErrorCode::RebalanceInProgress));
        let _ = group.sync(&a, 1, vec![], now);
        assert_eq!(group.validate_commit(&a, 1, now), Ok(()));
        assert_eq!(group.validate_commit(&a, 0, now), Err(ErrorCode::IllegalGeneration));
        assert_eq!(group.validate_commit("", -1, now), Err(ErrorCode::UnknownMemberId));
        assert_eq!(group.validate_commit("x", 1, now), Err(ErrorCode::UnknownMemberId));
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
}
