//! Kafka's two server-side assignors for consumer-protocol groups (KIP-848),
//! as Kafka 4 defines them in `org.apache.kafka.coordinator.group.assignor`:
//! [`Assignor::Uniform`] (`uniform`, the default) and [`Assignor::Range`]
//! (`range`). Pure functions: members and topic partition counts in, the
//! target assignment out.
//!
//! The input's `current_assignment` is each member's previous *target*
//! assignment (Kafka's TargetAssignmentBuilder hands the assignor the last
//! target, not what the members own), so the uniform assignor's stickiness
//! keeps targets steady and the reconciliation in [`super::consumer`] moves
//! only what changed. The range assignor, like Kafka 4's, ignores it.
//!
//! Invariants of every output (checked by [`check_assignment`] in debug
//! builds and by the property tests below):
//! - every member of the input has an entry, possibly empty;
//! - every partition of every topic some member subscribes to (and the
//!   topic metadata knows) is assigned to exactly one member, and only to a
//!   member subscribed to that topic;
//! - the same input always gives the same output: members, topics and
//!   partitions are visited in sorted order, never in hash order.
//!
//! The input is sanitised rather than trusted: a current assignment may name
//! topics the member no longer subscribes to, partitions beyond the topic's
//! count, or a partition another member also claims (the first member in
//! sorted order keeps it). None of these can make an output invalid.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id: one member's assignment, current or target.
pub type TopicPartitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// The target assignment of a whole group: member id → its partitions.
pub type GroupAssignment = BTreeMap<String, TopicPartitions>;

/// How often the heterogeneous uniform assignor sweeps every topic moving
/// partitions from heavier to lighter members. Each move strictly lowers the
/// sum of squared member sizes, so the sweeps end on their own; the bound
/// only caps the cost of a pathological group (its balance is then merely
/// less good, never invalid).
pub const BALANCE_PASSES_MAX: usize = 64;

/// What the assignors need to know about one member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignmentMember {
    /// Static membership id; the range assignor orders members by it.
    pub instance_id: Option<String>,
    /// Carried for rack-aware assignment, which neither assignor does yet.
    pub rack_id: Option<String>,
    /// Topic ids the member subscribes to (names and regex resolved).
    pub subscribed_topic_ids: BTreeSet<Uuid>,
    /// The member's previous target assignment.
    pub current_assignment: TopicPartitions,
}

/// A server-side assignor, by Kafka's name for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assignor {
    Uniform,
    Range,
}

impl Assignor {
    /// Kafka's `UniformAssignor.NAME`.
    pub const UNIFORM_NAME: &'static str = "uniform";
    /// Kafka's `RangeAssignor.RANGE_ASSIGNOR_NAME`.
    pub const RANGE_NAME: &'static str = "range";

    /// The name clients send in ConsumerGroupHeartbeat's `ServerAssignor`.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => Self::UNIFORM_NAME,
            Assignor::Range => Self::RANGE_NAME,
        }
    }

    /// The assignor called `name`, if we implement one by that name.
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            Self::UNIFORM_NAME => Some(Assignor::Uniform),
            Self::RANGE_NAME => Some(Assignor::Range),
            _ => None,
        }
    }

    /// Computes the target assignment. `partition_counts` maps each topic id
    /// that exists to its partition count; subscriptions to other ids are
    /// ignored (the topic does not exist, or not yet).
    pub fn assign(
        self,
        members: &BTreeMap<String, AssignmentMember>,
        partition_counts: &BTreeMap<Uuid, i32>,
    ) -> GroupAssignment {
        let assignment = match self {
            Assignor::Uniform => uniform(members, partition_counts),
            Assignor::Range => range(members, partition_counts),
        };
        debug_assert_eq!(check_assignment(members, partition_counts, &assignment), Ok(()));
        assignment
    }
}

/// Kafka's UniformAssignor: balanced first, sticky second. With homogeneous
/// subscriptions every member ends within one partition of every other and
/// keeps as many of its current partitions as that allows; otherwise every
/// partition goes to a subscriber and sizes are evened out by moves between
/// members that share a topic.
pub fn uniform(
    members: &BTreeMap<String, AssignmentMember>,
    partition_counts: &BTreeMap<Uuid, i32>,
) -> GroupAssignment {
    let input = Sanitised::new(members, partition_counts);
    let assignments = if input.is_homogeneous() { input.uniform_homogeneous() } else { input.uniform_heterogeneous() };
    input.into_group_assignment(assignments)
}

/// Kafka 4's RangeAssignor (rewritten by KAFKA-16944 to recompute every
/// time): per topic, its subscribers in range order (static members by
/// instance id first, then the others by member id) each get one contiguous
/// range, the first `count % subscribers` one partition more. Current
/// assignments are not looked at: the same partition numbers of
/// co-partitioned topics always go to the same member, and static members
/// keep their ranges across restarts because their instance ids keep their
/// place in the order.
pub fn range(members: &BTreeMap<String, AssignmentMember>, partition_counts: &BTreeMap<Uuid, i32>) -> GroupAssignment {
    let input = Sanitised::new(members, partition_counts);
    let mut order: Vec<usize> = (0..input.member_ids.len()).collect();
    order.sort_by(|&a, &b| input.range_order(a, b));
    let mut assignments = vec![TopicPartitions::new(); input.member_ids.len()];
    for (topic_id, &count) in &input.partition_counts {
        let subscribers: Vec<usize> =
            order.iter().copied().filter(|&member| input.subscriptions[member].contains(topic_id)).collect();
        if subscribers.is_empty() || count == 0 {
            continue;
        }
        let quota_min = count as usize / subscribers.len();
        let extra = count as usize % subscribers.len();
        let mut next = 0i32;
        for (position, member) in subscribers.into_iter().enumerate() {
            let quota = (quota_min + usize::from(position < extra)) as i32;
            if quota > 0 {
                assignments[member].insert(*topic_id, (next..next + quota).collect());
            }
            next += quota;
        }
        assert_eq!(next, count, "range assignor covers every partition of {topic_id}");
    }
    input.into_group_assignment(assignments)
}

/// The assignors' input after sanitising, indexed by member position (the
/// members' sorted order).
struct Sanitised<'a> {
    member_ids: Vec<&'a str>,
    instance_ids: Vec<Option<&'a str>>,
    /// Subscribed topic ids that the topic metadata knows.
    subscriptions: Vec<BTreeSet<Uuid>>,
    /// Current partitions that are still valid for the member and not
    /// claimed by a member earlier in sorted order.
    current: Vec<TopicPartitions>,
    /// Partition counts of the topics someone subscribes to.
    partition_counts: BTreeMap<Uuid, i32>,
}

impl<'a> Sanitised<'a> {
    fn new(members: &'a BTreeMap<String, AssignmentMember>, partition_counts: &BTreeMap<Uuid, i32>) -> Sanitised<'a> {
        let mut claimed: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        let mut input = Sanitised {
            member_ids: Vec::with_capacity(members.len()),
            instance_ids: Vec::with_capacity(members.len()),
            subscriptions: Vec::with_capacity(members.len()),
            current: Vec::with_capacity(members.len()),
            partition_counts: BTreeMap::new(),
        };
        for (member_id, member) in members {
            let subscriptions: BTreeSet<Uuid> =
                member.subscribed_topic_ids.iter().copied().filter(|id| partition_counts.contains_key(id)).collect();
            let mut current = TopicPartitions::new();
            for (topic_id, partitions) in &member.current_assignment {
                if !subscriptions.contains(topic_id) {
                    continue;
                }
                let count = partition_counts[topic_id];
                let valid: BTreeSet<i32> = partitions
                    .iter()
                    .copied()
                    .filter(|&partition| (0..count).contains(&partition) && claimed.insert((*topic_id, partition)))
                    .collect();
                if !valid.is_empty() {
                    current.insert(*topic_id, valid);
                }
            }
            for topic_id in &subscriptions {
                input.partition_counts.insert(*topic_id, partition_counts[topic_id].max(0));
            }
            input.member_ids.push(member_id);
            input.instance_ids.push(member.instance_id.as_deref());
            input.subscriptions.push(subscriptions);
            input.current.push(current);
        }
        input
    }

    fn is_homogeneous(&self) -> bool {
        self.subscriptions.windows(2).all(|pair| pair[0] == pair[1])
    }

    /// Kafka's range order (`RangeAssignor.sortMemberIds`): members with an
    /// instance id first, by instance id, then the others by member id.
    fn range_order(&self, a: usize, b: usize) -> Ordering {
        match (self.instance_ids[a], self.instance_ids[b]) {
            (Some(x), Some(y)) => x.cmp(y).then_with(|| self.member_ids[a].cmp(self.member_ids[b])),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => self.member_ids[a].cmp(self.member_ids[b]),
        }
    }

    /// Every member subscribes to the same topics: each gets the minimum
    /// quota `total / members`, and `total % members` of them one more.
    /// The extra slots go first to members that already hold more than the
    /// minimum, which is what keeps the most partitions in place.
    fn uniform_homogeneous(&self) -> Vec<TopicPartitions> {
        let members = self.member_ids.len();
        if members == 0 {
            return Vec::new();
        }
        let total: usize = self.partition_counts.values().map(|&count| count as usize).sum();
        let quota_min = total / members;
        let mut extra_left = total % members;
        let current_sizes: Vec<usize> = self.current.iter().map(size).collect();
        let mut quotas = vec![quota_min; members];
        for member in 0..members {
            if extra_left > 0 && current_sizes[member] > quota_min {
                quotas[member] += 1;
                extra_left -= 1;
            }
        }
        for quota in quotas.iter_mut() {
            if extra_left > 0 && *quota == quota_min {
                *quota += 1;
                extra_left -= 1;
            }
        }
        let mut assignments: Vec<TopicPartitions> = Vec::with_capacity(members);
        let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        for (member, current) in self.current.iter().enumerate() {
            let kept: Vec<(Uuid, i32)> = flatten(current).take(quotas[member]).collect();
            taken.extend(&kept);
            assignments.push(unflatten(kept));
        }
        let mut unassigned = self.all_partitions().filter(|partition| !taken.contains(partition));
        for (member, assignment) in assignments.iter_mut().enumerate() {
            let wanted = quotas[member] - size(assignment);
            for (topic_id, partition) in unassigned.by_ref().take(wanted) {
                assignment.entry(topic_id).or_default().insert(partition);
            }
        }
        assert!(unassigned.next().is_none(), "uniform assignor left partitions unassigned");
        assignments
    }

    /// Members subscribe to different topics: keep every valid current
    /// partition, give each unassigned partition to its least loaded
    /// subscriber (topics with the fewest subscribers first, as they have
    /// the least choice), then even out sizes topic by topic.
    fn uniform_heterogeneous(&self) -> Vec<TopicPartitions> {
        let members = self.member_ids.len();
        let mut assignments: Vec<TopicPartitions> = self.current.clone();
        let mut sizes: Vec<usize> = assignments.iter().map(size).collect();
        let subscribers: BTreeMap<Uuid, Vec<usize>> = self
            .partition_counts
            .keys()
            .map(|topic_id| (*topic_id, (0..members).filter(|&m| self.subscriptions[m].contains(topic_id)).collect()))
            .collect();
        let mut topics: Vec<Uuid> = subscribers.keys().copied().collect();
        topics.sort_by_key(|topic_id| (subscribers[topic_id].len(), *topic_id));
        let taken: BTreeSet<(Uuid, i32)> = self.current.iter().flat_map(flatten).collect();
        for topic_id in &topics {
            for partition in 0..self.partition_counts[topic_id] {
                if taken.contains(&(*topic_id, partition)) {
                    continue;
                }
                let lightest = lightest(&subscribers[topic_id], &sizes);
                assignments[lightest].entry(*topic_id).or_default().insert(partition);
                sizes[lightest] += 1;
            }
        }
        for _ in 0..BALANCE_PASSES_MAX {
            let mut moved = false;
            for topic_id in &topics {
                moved |= self.balance_topic(*topic_id, &subscribers[topic_id], &mut assignments, &mut sizes);
            }
            if !moved {
                break;
            }
        }
        assignments
    }

    /// Moves partitions of `topic_id` from its heaviest holder to its
    /// lightest subscriber while they differ by two or more. Partitions that
    /// were not the holder's before move first: moving them costs nothing.
    /// Returns whether anything moved.
    fn balance_topic(
        &self,
        topic_id: Uuid,
        subscribers: &[usize],
        assignments: &mut [TopicPartitions],
        sizes: &mut [usize],
    ) -> bool {
        let mut moved = false;
        // Each move lowers the sum of squared sizes, so this ends; the
        // bound is the topic's partition count times its subscribers.
        let moves_max = self.partition_counts[&topic_id] as usize * subscribers.len();
        for _ in 0..moves_max {
            let light = lightest(subscribers, sizes);
            let holders = subscribers.iter().copied().filter(|&m| assignments[m].contains_key(&topic_id));
            let Some(heavy) = holders.max_by(|&a, &b| sizes[a].cmp(&sizes[b]).then(b.cmp(&a))) else {
                break;
            };
            if sizes[heavy] < sizes[light] + 2 {
                break;
            }
            let held = &assignments[heavy][&topic_id];
            let previous = self.current[heavy].get(&topic_id);
            let partition = held
                .iter()
                .rev()
                .find(|partition| !previous.is_some_and(|set| set.contains(partition)))
                .or_else(|| held.iter().next_back())
                .copied()
                .expect("a holder holds a partition");
            let held = assignments[heavy].get_mut(&topic_id).expect("holder");
            held.remove(&partition);
            if held.is_empty() {
                assignments[heavy].remove(&topic_id);
            }
            assignments[light].entry(topic_id).or_default().insert(partition);
            sizes[heavy] -= 1;
            sizes[light] += 1;
            moved = true;
        }
        moved
    }

    /// Every partition of every subscribed topic, in (topic id, partition)
    /// order.
    fn all_partitions(&self) -> impl Iterator<Item = (Uuid, i32)> + '_ {
        self.partition_counts.iter().flat_map(|(topic_id, &count)| (0..count).map(move |p| (*topic_id, p)))
    }

    fn into_group_assignment(self, assignments: Vec<TopicPartitions>) -> GroupAssignment {
        if assignments.is_empty() {
            return self.member_ids.iter().map(|id| (id.to_string(), TopicPartitions::new())).collect();
        }
        assert_eq!(assignments.len(), self.member_ids.len(), "one assignment per member");
        self.member_ids.into_iter().map(str::to_owned).zip(assignments).collect()
    }
}

/// The subscriber with the fewest partitions; ties go to the first in
/// sorted member order, which keeps the choice deterministic.
fn lightest(subscribers: &[usize], sizes: &[usize]) -> usize {
    *subscribers.iter().min_by_key(|&&m| (sizes[m], m)).expect("a topic in the input has a subscriber")
}

/// The number of partitions in an assignment.
pub fn size(assignment: &TopicPartitions) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

fn flatten(assignment: &TopicPartitions) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    assignment.iter().flat_map(|(topic_id, partitions)| partitions.iter().map(move |p| (*topic_id, *p)))
}

fn unflatten(partitions: impl IntoIterator<Item = (Uuid, i32)>) -> TopicPartitions {
    let mut assignment = TopicPartitions::new();
    for (topic_id, partition) in partitions {
        assignment.entry(topic_id).or_default().insert(partition);
    }
    assignment
}

/// Why an assignment is not valid for its input: what the property tests
/// and the debug assertion in [`Assignor::assign`] look for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidAssignment {
    MissingMember { member_id: String },
    UnknownMember { member_id: String },
    NotSubscribed { member_id: String, topic_id: Uuid },
    NoSuchPartition { member_id: String, topic_id: Uuid, partition: i32 },
    AssignedTwice { topic_id: Uuid, partition: i32, first: String, second: String },
    Unassigned { topic_id: Uuid, partition: i32 },
}

/// Checks the module's invariants on `assignment` for this input.
pub fn check_assignment(
    members: &BTreeMap<String, AssignmentMember>,
    partition_counts: &BTreeMap<Uuid, i32>,
    assignment: &GroupAssignment,
) -> Result<(), InvalidAssignment> {
    if let Some(member_id) = members.keys().find(|id| !assignment.contains_key(*id)) {
        return Err(InvalidAssignment::MissingMember { member_id: member_id.clone() });
    }
    let mut owners: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
    for (member_id, partitions) in assignment {
        let Some(member) = members.get(member_id) else {
            return Err(InvalidAssignment::UnknownMember { member_id: member_id.clone() });
        };
        for (topic_id, partition) in flatten(partitions) {
            if !member.subscribed_topic_ids.contains(&topic_id) {
                return Err(InvalidAssignment::NotSubscribed { member_id: member_id.clone(), topic_id });
            }
            if !partition_counts.get(&topic_id).is_some_and(|count| (0..*count).contains(&partition)) {
                return Err(InvalidAssignment::NoSuchPartition { member_id: member_id.clone(), topic_id, partition });
            }
            if let Some(first) = owners.insert((topic_id, partition), member_id) {
                let (first, second) = (first.to_owned(), member_id.clone());
                return Err(InvalidAssignment::AssignedTwice { topic_id, partition, first, second });
            }
        }
    }
    let subscribed: BTreeSet<Uuid> = members.values().flat_map(|m| m.subscribed_topic_ids.iter().copied()).collect();
    for (topic_id, &count) in partition_counts.iter().filter(|(id, _)| subscribed.contains(id)) {
        if let Some(partition) = (0..count).find(|p| !owners.contains_key(&(*topic_id, *p))) {
            return Err(InvalidAssignment::Unassigned { topic_id: *topic_id, partition });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn member(topics: &[Uuid], current: &[(Uuid, &[i32])]) -> AssignmentMember {
        AssignmentMember {
            subscribed_topic_ids: topics.iter().copied().collect(),
            current_assignment: current.iter().map(|(t, p)| (*t, p.iter().copied().collect())).collect(),
            ..Default::default()
        }
    }

    impl AssignmentMember {
        fn with_current(mut self, current: &TopicPartitions) -> AssignmentMember {
            self.current_assignment = current.clone();
            self
        }
    }

    fn partitions(assignment: &GroupAssignment, member_id: &str, topic_id: Uuid) -> Vec<i32> {
        assignment[member_id].get(&topic_id).map(|set| set.iter().copied().collect()).unwrap_or_default()
    }

    fn sizes(assignment: &GroupAssignment) -> Vec<usize> {
        assignment.values().map(size).collect()
    }

    #[test]
    fn names_round_trip() {
        // Proves the assignor names are Kafka's and parse back.
        for assignor in [Assignor::Uniform, Assignor::Range] {
            assert_eq!(Assignor::from_name(assignor.name()), Some(assignor));
        }
        assert_eq!((Assignor::Uniform.name(), Assignor::Range.name()), ("uniform", "range"));
        assert_eq!(Assignor::from_name("sticky"), None);
    }

    #[test]
    fn range_lays_out_contiguous_ranges_with_extras_first() {
        // Proves the classic range layout: 7 partitions over 3 members sorted
        // by member id give 0-2, 3-4, 5-6 on every topic alike.
        let (t1, t2) = (topic(1), topic(2));
        let members: BTreeMap<String, AssignmentMember> =
            ["c", "a", "b"].iter().map(|id| (id.to_string(), member(&[t1, t2], &[]))).collect();
        let counts = BTreeMap::from([(t1, 7), (t2, 7)]);
        let assignment = Assignor::Range.assign(&members, &counts);
        for t in [t1, t2] {
            assert_eq!(partitions(&assignment, "a", t), vec![0, 1, 2]);
            assert_eq!(partitions(&assignment, "b", t), vec![3, 4]);
            assert_eq!(partitions(&assignment, "c", t), vec![5, 6]);
        }
    }

    #[test]
    fn range_orders_static_members_by_instance_id() {
        // Proves static members come first, ordered by instance id, so a
        // static member that rejoins under a new member id keeps its range.
        let t = topic(1);
        let mut members = BTreeMap::new();
        members.insert("a".to_string(), member(&[t], &[]));
        let mut z = member(&[t], &[]);
        z.instance_id = Some("instance-1".into());
        members.insert("z".to_string(), z);
        let assignment = range(&members, &BTreeMap::from([(t, 4)]));
        assert_eq!(partitions(&assignment, "z", t), vec![0, 1]);
        assert_eq!(partitions(&assignment, "a", t), vec![2, 3]);
    }

    #[test]
    fn range_recomputes_ranges_when_a_member_joins() {
        // Proves Kafka 4's range assignor is not sticky: a member joining
        // gets its place in member order and the ranges are laid out anew,
        // whatever the members had.
        let t = topic(1);
        let mut members: BTreeMap<String, AssignmentMember> = BTreeMap::new();
        members.insert("a".into(), member(&[t], &[(t, &[0, 1, 2])]));
        members.insert("c".into(), member(&[t], &[(t, &[3, 4, 5])]));
        members.insert("b".into(), member(&[t], &[]));
        let assignment = range(&members, &BTreeMap::from([(t, 6)]));
        assert_eq!(partitions(&assignment, "a", t), vec![0, 1]);
        assert_eq!(partitions(&assignment, "b", t), vec![2, 3]);
        assert_eq!(partitions(&assignment, "c", t), vec![4, 5]);
    }

    #[test]
    fn uniform_spreads_across_topics_and_ignores_unknown_topics() {
        // Proves the uniform assignor balances the total over all topics
        // (3 + 2 partitions over 2 members: 3 and 2) and that a subscription
        // to a topic the metadata lacks is ignored.
        let (t1, t2, missing) = (topic(1), topic(2), topic(9));
        let members: BTreeMap<String, AssignmentMember> =
            ["a", "b"].iter().map(|id| (id.to_string(), member(&[t1, t2, missing], &[]))).collect();
        let assignment = uniform(&members, &BTreeMap::from([(t1, 3), (t2, 2)]));
        assert_eq!(sizes(&assignment), vec![3, 2]);
        assert_eq!(check_assignment(&members, &BTreeMap::from([(t1, 3), (t2, 2)]), &assignment), Ok(()));
    }

    #[test]
    fn uniform_heterogeneous_gives_shared_topics_to_the_lighter_member() {
        // Proves heterogeneous subscriptions still balance where they can:
        // a alone reads t1 (4 partitions); a and b share t2 (4 partitions),
        // so b takes all of t2 and a keeps t1: 4 and 4.
        let (t1, t2) = (topic(1), topic(2));
        let mut members = BTreeMap::new();
        members.insert("a".to_string(), member(&[t1, t2], &[]));
        members.insert("b".to_string(), member(&[t2], &[]));
        let assignment = uniform(&members, &BTreeMap::from([(t1, 4), (t2, 4)]));
        assert_eq!(partitions(&assignment, "a", t1), vec![0, 1, 2, 3]);
        assert_eq!(partitions(&assignment, "b", t2), vec![0, 1, 2, 3]);
    }

    #[test]
    fn conflicting_current_assignments_are_resolved_by_member_order() {
        // Proves a partition claimed by two members' current assignments is
        // kept by the first in sorted order and the output stays valid.
        let t = topic(1);
        let mut members = BTreeMap::new();
        members.insert("a".to_string(), member(&[t], &[(t, &[0, 7, -1])]));
        members.insert("b".to_string(), member(&[t], &[(t, &[0, 1])]));
        let counts = BTreeMap::from([(t, 2)]);
        for assignor in [Assignor::Uniform, Assignor::Range] {
            let assignment = assignor.assign(&members, &counts);
            assert_eq!(check_assignment(&members, &counts, &assignment), Ok(()));
            assert_eq!(partitions(&assignment, "a", t), vec![0], "{assignor:?}");
            assert_eq!(partitions(&assignment, "b", t), vec![1], "{assignor:?}");
        }
    }

    #[test]
    fn no_members_or_no_topics_give_empty_assignments() {
        // Proves the edge cases: no members, and members with nothing to read.
        let counts = BTreeMap::from([(topic(1), 3)]);
        assert!(uniform(&BTreeMap::new(), &counts).is_empty());
        let members = BTreeMap::from([("a".to_string(), member(&[], &[]))]);
        for assignor in [Assignor::Uniform, Assignor::Range] {
            assert_eq!(assignor.assign(&members, &counts), BTreeMap::from([("a".to_string(), TopicPartitions::new())]));
        }
    }

    /// A group of up to 8 members over up to 4 topics of up to 12 partitions,
    /// with arbitrary (possibly invalid or conflicting) current assignments.
    fn any_group(
        homogeneous: bool,
    ) -> impl Strategy<Value = (BTreeMap<String, AssignmentMember>, BTreeMap<Uuid, i32>)> {
        let counts = proptest::collection::vec(0i32..12, 1..5);
        let members = proptest::collection::vec(
            (
                proptest::collection::btree_set(0u8..5, 0..5),
                proptest::collection::vec((0u8..5, -1i32..14), 0..10),
                proptest::option::of(0u8..4),
            ),
            1..9,
        );
        (counts, members).prop_map(move |(counts, specs)| {
            let counts: BTreeMap<Uuid, i32> =
                counts.iter().enumerate().map(|(i, count)| (topic(i as u8), *count)).collect();
            let shared: BTreeSet<u8> = specs[0].0.clone();
            let members = specs
                .into_iter()
                .enumerate()
                .map(|(i, (subscribed, current, instance))| {
                    let subscribed = if homogeneous { shared.clone() } else { subscribed };
                    let mut member = AssignmentMember {
                        subscribed_topic_ids: subscribed.into_iter().map(topic).collect(),
                        instance_id: instance.map(|n| format!("instance-{n}-{i}")),
                        ..Default::default()
                    };
                    for (t, partition) in current {
                        member.current_assignment.entry(topic(t)).or_default().insert(partition);
                    }
                    (format!("member-{i:02}"), member)
                })
                .collect();
            (members, counts)
        })
    }

    fn moved(members: &BTreeMap<String, AssignmentMember>, assignment: &GroupAssignment) -> usize {
        assignment
            .iter()
            .map(|(id, partitions)| {
                flatten(partitions)
                    .filter(|(t, p)| !members[id].current_assignment.get(t).is_some_and(|set| set.contains(p)))
                    .count()
            })
            .sum()
    }

    proptest! {
        /// Every partition of every subscribed topic goes to exactly one
        /// subscribed member, whatever the subscriptions and the (possibly
        /// nonsensical) current assignments, for both assignors.
        #[test]
        fn assignments_are_valid((members, counts) in any_group(false)) {
            for assignor in [Assignor::Uniform, Assignor::Range] {
                let assignment = assignor.assign(&members, &counts);
                prop_assert_eq!(check_assignment(&members, &counts, &assignment), Ok(()));
            }
        }

        /// The same input gives the same output, however the caller built
        /// it: the assignors read no clock, no randomness and no hash order.
        #[test]
        fn assignments_are_deterministic((members, counts) in any_group(false)) {
            let reversed: BTreeMap<String, AssignmentMember> =
                members.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
            for assignor in [Assignor::Uniform, Assignor::Range] {
                prop_assert_eq!(assignor.assign(&members, &counts), assignor.assign(&reversed, &counts));
            }
        }

        /// With homogeneous subscriptions the uniform assignor's member sizes
        /// differ by at most one, and it moves no more partitions than
        /// balance requires: a member keeps min(current, quota) partitions,
        /// with the extra slots going to members that had more than the
        /// minimum (the most any balanced assignment can keep).
        #[test]
        fn uniform_homogeneous_is_balanced_and_minimally_moving((members, counts) in any_group(true)) {
            let assignment = uniform(&members, &counts);
            let sizes = sizes(&assignment);
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{:?}", sizes);
            let input = Sanitised::new(&members, &counts);
            let total: usize = input.partition_counts.values().map(|c| *c as usize).sum();
            let (quota_min, extra) = (total / members.len(), total % members.len());
            let current: Vec<usize> = input.current.iter().map(size).collect();
            let above = current.iter().filter(|&&c| c > quota_min).count();
            let kept_max: usize = current.iter().map(|&c| c.min(quota_min)).sum::<usize>() + extra.min(above);
            // Moves count against the sanitised current assignments: a
            // partition two members claimed was only ever the first one's.
            let sanitised: BTreeMap<String, AssignmentMember> = input
                .member_ids
                .iter()
                .zip(&input.current)
                .map(|(id, current)| (id.to_string(), member(&[], &[]).with_current(current)))
                .collect();
            prop_assert_eq!(moved(&sanitised, &assignment), total - kept_max);
        }

        /// With heterogeneous subscriptions no single move could improve the
        /// uniform assignor's balance: whenever a member holds a partition of
        /// a topic another subscriber reads, their sizes differ by at most one
        /// the other way.
        #[test]
        fn uniform_heterogeneous_leaves_no_improving_move((members, counts) in any_group(false)) {
            let assignment = uniform(&members, &counts);
            for (heavy, held) in &assignment {
                for (light, member) in &members {
                    if held.keys().any(|topic_id| member.subscribed_topic_ids.contains(topic_id)) {
                        prop_assert!(
                            size(held) <= size(&assignment[light]) + 1,
                            "{} holds {} while {} holds {}", heavy, size(held), light, size(&assignment[light])
                        );
                    }
                }
            }
        }

        /// A member joining a balanced uniform group takes partitions only
        /// from the others (none gains, nothing moves between old members),
        /// and the group stays balanced.
        #[test]
        fn uniform_join_moves_only_what_the_new_member_needs((members, counts) in any_group(true)) {
            let settled = uniform(&members, &counts);
            let shared = members.values().next().unwrap().subscribed_topic_ids.clone();
            let mut next: BTreeMap<String, AssignmentMember> = members
                .iter()
                .map(|(id, m)| (id.clone(), AssignmentMember { current_assignment: settled[id].clone(), ..m.clone() }))
                .collect();
            next.insert("member-zz".into(), AssignmentMember { subscribed_topic_ids: shared, ..Default::default() });
            let assignment = uniform(&next, &counts);
            for (id, before) in &settled {
                prop_assert!(flatten(&assignment[id]).all(|(t, p)| before.get(&t).is_some_and(|s| s.contains(&p))));
            }
            prop_assert_eq!(moved(&next, &assignment), size(&assignment["member-zz"]));
            let sizes = sizes(&assignment);
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{:?}", sizes);
        }

        /// Range: per topic, subscribers' counts differ by at most one and
        /// the i-th subscriber in range order holds the i-th contiguous
        /// range, whatever the current assignments were.
        #[test]
        fn range_lays_out_balanced_contiguous_ranges_in_member_order((members, counts) in any_group(false)) {
            let assignment = range(&members, &counts);
            let input = Sanitised::new(&members, &counts);
            for (topic_id, &count) in &input.partition_counts {
                let mut order: Vec<usize> =
                    (0..input.member_ids.len()).filter(|&m| input.subscriptions[m].contains(topic_id)).collect();
                order.sort_by(|&a, &b| input.range_order(a, b));
                let sizes: Vec<usize> =
                    order.iter().map(|&m| partitions(&assignment, input.member_ids[m], *topic_id).len()).collect();
                prop_assert!(sizes.windows(2).all(|pair| pair[0] >= pair[1]), "{:?}", sizes);
                prop_assert!(sizes.first().unwrap_or(&0) - sizes.last().unwrap_or(&0) <= 1, "{:?}", sizes);
                let mut next = 0;
                for m in order {
                    let got = partitions(&assignment, input.member_ids[m], *topic_id);
                    let expected: Vec<i32> = (next..next + got.len() as i32).collect();
                    prop_assert_eq!(&got, &expected);
                    next += got.len() as i32;
                }
                prop_assert_eq!(next, count);
            }
        }
    }
}
