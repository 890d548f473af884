//! Group administration on a coordinator shard, as Kafka's group
//! coordinator answers it: ListGroups, DescribeGroups, DeleteGroups and
//! OffsetDelete, for classic, consumer-protocol and share groups. Deletions are written to the group log (GroupDeleted,
//! OffsetDeleted) and answered once durable, like commits.

use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;
use protocol::consumer_protocol;
use protocol::ErrorCode;

use super::classic::{ClassicGroup, GroupState, Step};
use super::records::GroupRecord;
use crate::internal_log::OnDurable;
use crate::shard::Shard;

/// Kafka's group type of classic groups, as ListGroups v5 reports it.
pub const GROUP_TYPE_CLASSIC: &str = "classic";
/// The first DescribeGroups version that answers GROUP_ID_NOT_FOUND for a
/// group it cannot describe (KIP-1043).
pub const DESCRIBE_GROUPS_NOT_FOUND_VERSION_MIN: i16 = 6;
/// Kafka's state name of a group that does not exist.
pub const STATE_DEAD: &str = "Dead";
/// What DescribeGroups reports as authorized operations when asked: every
/// operation on a group (READ 3, DELETE 6, DESCRIBE 8), since Stele has no
/// ACLs.
pub const GROUP_OPERATIONS_ALL: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// The authorized operations of a group when they were not asked for.
pub const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// One group as ListGroups reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
    pub group_type: &'static str,
}

/// This shard's groups whose state is in `states` and type in `types`
/// (lowercase names; an empty filter admits all), by group id.
pub fn list(shard: &Shard, states: &[String], types: &[String]) -> Vec<ListedGroup> {
    let admitted =
        |filter: &[String], name: &str| filter.is_empty() || filter.iter().any(|f| f == &name.to_lowercase());
    let mut listed: Vec<ListedGroup> = shard
        .groups
        .classic_groups()
        .values()
        .filter(|group| admitted(states, group.state.name()) && admitted(types, GROUP_TYPE_CLASSIC))
        .map(|group| ListedGroup {
            group_id: group.id.clone(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            state: group.state.name(),
            group_type: GROUP_TYPE_CLASSIC,
        })
        .collect();
    let consumers = shard.groups.consumer_groups();
    let consumer_groups = consumers
        .values()
        .map(|group| group.listed())
        .filter(|group| admitted(states, group.group_state) && admitted(types, group.group_type))
        .map(|group| ListedGroup {
            group_id: group.group_id,
            protocol_type: group.protocol_type.to_owned(),
            state: group.group_state,
            group_type: group.group_type,
        });
    listed.extend(consumer_groups);
    let shares = shard.groups.share_groups();
    let share_groups = shares
        .values()
        .filter(|group| admitted(states, group.state()) && admitted(types, super::share::GROUP_TYPE))
        .map(|group| ListedGroup {
            group_id: group.id().to_owned(),
            protocol_type: super::share::PROTOCOL_TYPE.to_owned(),
            state: group.state(),
            group_type: super::share::GROUP_TYPE,
        });
    listed.extend(share_groups);
    listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    listed
}

/// One member as DescribeGroups reports it.
#[derive(Clone, Debug, Default)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// One group as DescribeGroups reports it; `None` when it does not exist.
#[derive(Clone, Debug, Default)]
pub struct DescribedGroup {
    /// Set for a group DescribeGroups cannot describe (a consumer-protocol
    /// group, from v6).
    pub error_code: i16,
    pub error_message: Option<String>,
    pub state: String,
    pub protocol_type: String,
    /// The group's protocol (assignor) while Stable, else "".
    pub protocol_data: String,
    pub members: Vec<DescribedMember>,
}

/// Describes `group_id` for DescribeGroups at `version`. As in Kafka,
/// members carry their metadata and assignment only while the group is
/// Stable (during a rebalance they are being replaced), and a
/// consumer-protocol group is not described there: it is Dead, with
/// GROUP_ID_NOT_FOUND from v6 (clients use ConsumerGroupDescribe).
pub fn describe(shard: &Shard, group_id: &str, version: i16) -> Option<DescribedGroup> {
    if shard.groups.share_groups().contains_key(group_id) {
        // Kafka answers a share group as it does a consumer-protocol one.
        let not_found = version >= DESCRIBE_GROUPS_NOT_FOUND_VERSION_MIN;
        return Some(DescribedGroup {
            error_code: if not_found { ErrorCode::GroupIdNotFound.code() } else { 0 },
            error_message: not_found.then(|| format!("Group {group_id} is not a classic group.")),
            state: STATE_DEAD.to_owned(),
            ..Default::default()
        });
    }
    if let Some(group) = shard.groups.consumer_groups().get(group_id) {
        let classic = group.classic_describe(version);
        let error_message = (classic.error_code != 0).then(|| format!("Group {group_id} is not a classic group."));
        let (error_code, state) = (classic.error_code, classic.group_state.to_owned());
        return Some(DescribedGroup { error_code, error_message, state, ..Default::default() });
    }
    let groups = shard.groups.classic_groups();
    let group = groups.get(group_id)?;
    let stable = group.state == GroupState::Stable;
    let protocol = group.protocol_name.clone().unwrap_or_default();
    let members = group
        .members
        .values()
        .map(|member| DescribedMember {
            member_id: member.id.clone(),
            group_instance_id: member.group_instance_id.clone(),
            client_id: member.client_id.clone(),
            client_host: member.client_host.clone(),
            metadata: if stable { member.metadata_for(&protocol) } else { Bytes::new() },
            assignment: if stable { member.assignment.clone() } else { Bytes::new() },
        })
        .collect();
    Some(DescribedGroup {
        error_code: 0,
        error_message: None,
        state: group.state.name().to_owned(),
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        protocol_data: if stable { protocol } else { String::new() },
        members,
    })
}

/// Deletes an empty group with its committed offsets and its pending
/// transactional ones (Kafka's rules: GROUP_ID_NOT_FOUND when unknown,
/// NON_EMPTY_GROUP while it has members; an open transaction does not
/// prevent it, and its completion later finds nothing of the group).
/// The group is gone at once; the answer comes once its tombstone is
/// durable, and only then are its offsets dropped.
pub async fn delete_group(shard: &Rc<Shard>, group_id: &str) -> Step<i16> {
    if let Some(deletable) = shard.groups.with_share(group_id, |group| group.check_deletable()) {
        if let Err(code) = deletable {
            return Step::Now(code.code());
        }
        shard.groups.remove_share(group_id);
        let records = vec![GroupRecord::GroupDeleted { group: group_id.to_owned() }];
        return match append_durably(shard, records).await {
            Ok(durable) => {
                let (reply, answer) = oneshot::channel();
                let (owner, group) = (shard.clone(), group_id.to_owned());
                glommio::spawn_local(async move {
                    let code = durable.await.unwrap_or(ErrorCode::CoordinatorNotAvailable.code());
                    if code == 0 {
                        super::share::on_deleted(&owner, &group);
                    }
                    let _ = reply.send(code);
                })
                .detach();
                Step::Wait(answer)
            }
            Err(code) => Step::Now(code),
        };
    }
    if let Some(deletable) = shard.groups.with_consumer(group_id, |group| group.delete()) {
        if let Err(code) = deletable {
            return Step::Now(code.code());
        }
        shard.groups.remove_consumer(group_id);
        return match append_durably(shard, vec![GroupRecord::GroupDeleted { group: group_id.to_owned() }]).await {
            Ok(answer) => Step::Wait(answer),
            Err(code) => Step::Now(code),
        };
    }
    let checked = shard.groups.with_classic(group_id, false, |group| {
        if group.state == GroupState::Empty {
            Ok(())
        } else {
            Err(ErrorCode::NonEmptyGroup)
        }
    });
    match checked {
        None => return Step::Now(ErrorCode::GroupIdNotFound.code()),
        Some(Err(code)) => return Step::Now(code.code()),
        Some(Ok(())) => {}
    }
    shard.groups.remove_classic(group_id);
    let records = vec![GroupRecord::GroupDeleted { group: group_id.to_owned() }];
    match append_durably(shard, records).await {
        Ok(answer) => Step::Wait(answer),
        Err(code) => Step::Now(code),
    }
}

/// Per topic, each partition's error code.
pub type DeletedOffsets = Vec<(String, Vec<(i32, i16)>)>;

/// Deletes committed offsets of `group_id` (OffsetDelete). A group with
/// members may only lose offsets of topics it is not subscribed to
/// (GROUP_SUBSCRIBED_TO_TOPIC), and only if it speaks the consumer protocol
/// (otherwise NON_EMPTY_GROUP for the whole request); unknown topics or
/// partitions get UNKNOWN_TOPIC_OR_PARTITION. Pending transactional
/// offsets of the partitions go too, as in Kafka.
pub async fn delete_offsets(
    shard: &Rc<Shard>,
    group_id: &str,
    topics: Vec<(String, Vec<i32>)>,
) -> Step<Result<DeletedOffsets, i16>> {
    let requested: Vec<String> = topics.iter().map(|(topic, _)| topic.clone()).collect();
    let subscribed = match subscribed_among(shard, group_id, &requested) {
        Ok(subscribed) => subscribed,
        Err(code) => return Step::Now(Err(code.code())),
    };
    let image = shard.metadata();
    let mut records = Vec::new();
    let answers: DeletedOffsets = {
        let store = shard.groups.offsets();
        let offsets = store.group(group_id);
        topics
            .into_iter()
            .map(|(topic, partitions)| {
                let meta = image.topics.get(&topic);
                let codes = partitions
                    .into_iter()
                    .map(|partition| {
                        let code = if !meta.is_some_and(|m| m.partitions.iter().any(|p| p.partition == partition)) {
                            ErrorCode::UnknownTopicOrPartition.code()
                        } else if subscribed.contains(&topic) {
                            ErrorCode::GroupSubscribedToTopic.code()
                        } else {
                            // As in Kafka, a pending transactional offset of
                            // the partition is deleted too (its record is the
                            // same tombstone).
                            let key = (topic.clone(), partition);
                            let committed = offsets.is_some_and(|o| o.contains_key(&key));
                            if committed || shard.groups.has_pending_offset(&store, group_id, &key) {
                                let (group, topic) = (group_id.to_owned(), topic.clone());
                                records.push(GroupRecord::OffsetDeleted { group, topic, partition });
                            }
                            0
                        };
                        (partition, code)
                    })
                    .collect();
                (topic, codes)
            })
            .collect()
    };
    if records.is_empty() {
        return Step::Now(Ok(answers));
    }
    match append_durably(shard, records).await {
        Ok(durable) => {
            let (reply, answer) = oneshot::channel();
            glommio::spawn_local(async move {
                let outcome = match durable.await {
                    Ok(0) => Ok(answers),
                    Ok(code) => Err(code),
                    Err(_) => Err(ErrorCode::CoordinatorNotAvailable.code()),
                };
                let _ = reply.send(outcome);
            })
            .detach();
            Step::Wait(answer)
        }
        Err(code) => Step::Now(Err(code)),
    }
}

/// Which of `topics` the group is actively subscribed to (see
/// [`delete_offsets`]); GROUP_ID_NOT_FOUND for an unknown group.
fn subscribed_among(shard: &Shard, group_id: &str, topics: &[String]) -> Result<Vec<String>, ErrorCode> {
    shard.groups.refuse_share_group(group_id)?;
    if let Some(group) = shard.groups.consumer_groups().get(group_id) {
        return Ok(topics.iter().filter(|topic| group.is_subscribed_to_topic(topic)).cloned().collect());
    }
    let subscribed =
        shard.groups.with_classic(group_id, false, subscribed_topics).ok_or(ErrorCode::GroupIdNotFound)??;
    Ok(match subscribed {
        Some(subscribed) => topics.iter().filter(|topic| subscribed.contains(topic)).cloned().collect(),
        None => topics.to_vec(),
    })
}

/// The topics a classic group with members is subscribed to: `Ok(Some(topics))`
/// when it speaks the consumer protocol and its members' metadata says,
/// `Ok(None)` when that metadata cannot be read (then every topic counts as
/// subscribed), an empty set for an empty group; NON_EMPTY_GROUP for a
/// group with members of another protocol type.
fn subscribed_topics(group: &mut ClassicGroup) -> Result<Option<Vec<String>>, ErrorCode> {
    if group.state == GroupState::Empty {
        return Ok(Some(Vec::new()));
    }
    if group.protocol_type.as_deref() != Some(consumer_protocol::PROTOCOL_TYPE) {
        return Err(ErrorCode::NonEmptyGroup);
    }
    let Some(protocol) = group.protocol_name.clone() else {
        return Ok(None);
    };
    let mut topics = Vec::new();
    for member in group.members.values() {
        let Some(member_topics) = consumer_protocol::subscribed_topics(&member.metadata_for(&protocol)) else {
            return Ok(None);
        };
        topics.extend(member_topics);
    }
    Ok(Some(topics))
}

/// Places `records` in the group log; the receiver gives 0 once they are
/// durable and applied, NOT_COORDINATOR if the write failed.
async fn append_durably(shard: &Rc<Shard>, records: Vec<GroupRecord>) -> Result<oneshot::Receiver<i16>, i16> {
    let payload = super::records::encode_batch(&records);
    let (reply, answer) = oneshot::channel();
    let owner = shard.clone();
    let on_durable: OnDurable = Box::new(move |outcome| {
        let code = match outcome {
            Ok(()) => {
                owner.groups.apply_durable(&records);
                0
            }
            Err(reason) => {
                tracing::error!(shard = owner.id, reason, "a group deletion could not be made durable");
                ErrorCode::NotCoordinator.code()
            }
        };
        let _ = reply.send(code);
    });
    match shard.groups.append(payload, on_durable).await {
        Ok(()) => Ok(answer),
        Err(err) => {
            tracing::error!(shard = shard.id, error = %err, "writing a group deletion failed");
            Err(ErrorCode::NotCoordinator.code())
        }
    }
}
