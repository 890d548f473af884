//! End-to-end tests of group administration against the real `stele`
//! binary: ListGroups (state and type filters), DescribeGroups,
//! DeleteGroups and OffsetDelete, with a librdkafka consumer as a live
//! member, raw requests to see exact versions and codes, and restarts to
//! prove deletions are durable.

mod common;

use std::time::{Duration, Instant};

use common::*;
use protocol::messages::*;
use protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// A broker whose groups form at once (no initial rebalance delay).
fn start_broker() -> (Broker, tempfile::TempDir) {
    let (dir, config) = config_file("[groups]\n\"group.initial.rebalance.delay.ms\" = 0\n");
    (Broker::start_with(2, &["--config", &config]), dir)
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// A librdkafka consumer of `group` subscribed to `topic`, polled until it
/// has every partition (`partitions` of them).
fn stable_member(broker: &Broker, group: &str, topic: &str, partitions: usize) -> BaseConsumer {
    let mut config = client_config(broker);
    config
        .set("group.id", group)
        .set("client.id", "admin-e2e-client")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300");
    let consumer: BaseConsumer = config.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.assignment().unwrap().count() != partitions {
        assert!(Instant::now() < deadline, "no assignment for {group}");
        consumer.poll(Duration::from_millis(50));
    }
    consumer
}

fn list_groups(
    broker: &Broker,
    version: i16,
    states: &[&str],
    types: &[&str],
) -> Vec<(String, String, String, String)> {
    let mut request = ListGroupsRequest::default();
    request.states_filter = states.iter().map(|s| text(s)).collect();
    request.types_filter = types.iter().map(|t| text(t)).collect();
    match raw_call(broker, ApiKey::ListGroups, version, RequestKind::ListGroups(request)) {
        ResponseKind::ListGroups(response) => {
            assert_eq!(response.error_code, 0);
            let mut groups: Vec<_> = response
                .groups
                .iter()
                .map(|g| {
                    let fields = [&g.group_id.0, &g.protocol_type, &g.group_state, &g.group_type];
                    let [id, protocol_type, state, kind] = fields.map(|f| f.to_string());
                    (id, protocol_type, state, kind)
                })
                .collect();
            groups.sort();
            groups
        }
        other => panic!("{other:?}"),
    }
}

fn describe(broker: &Broker, version: i16, group: &str) -> describe_groups_response::DescribedGroup {
    let mut request = DescribeGroupsRequest::default();
    request.groups = vec![GroupId(text(group))];
    request.include_authorized_operations = true;
    match raw_call(broker, ApiKey::DescribeGroups, version, RequestKind::DescribeGroups(request)) {
        ResponseKind::DescribeGroups(mut response) => response.groups.remove(0),
        other => panic!("{other:?}"),
    }
}

fn delete_groups(broker: &Broker, groups: &[&str]) -> Vec<i16> {
    let mut request = DeleteGroupsRequest::default();
    request.groups_names = groups.iter().map(|g| GroupId(text(g))).collect();
    match raw_call(broker, ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(request)) {
        ResponseKind::DeleteGroups(response) => response.results.iter().map(|r| r.error_code).collect(),
        other => panic!("{other:?}"),
    }
}

/// OffsetDelete of `partitions` of `topic`: (top-level code, per-partition codes).
fn offset_delete(broker: &Broker, group: &str, topic: &str, partitions: &[i32]) -> (i16, Vec<i16>) {
    let mut request = OffsetDeleteRequest::default();
    request.group_id = GroupId(text(group));
    let mut wanted = offset_delete_request::OffsetDeleteRequestTopic::default();
    wanted.name = TopicName(text(topic));
    for partition in partitions {
        let mut p = offset_delete_request::OffsetDeleteRequestPartition::default();
        p.partition_index = *partition;
        wanted.partitions.push(p);
    }
    request.topics = vec![wanted];
    match raw_call(broker, ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(request)) {
        ResponseKind::OffsetDelete(response) => {
            let codes = response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect();
            (response.error_code, codes)
        }
        other => panic!("{other:?}"),
    }
}

/// Partition 0's committed offset of `topic` in `group`, -1 for none.
fn committed_offset(broker: &Broker, group: &str, topic: &str) -> i64 {
    committed(broker, group, topic, &[0])[0].0
}

#[test]
fn groups_are_listed_described_and_deleted_durably() {
    // Proves ListGroups sees a live group (Stable) and a commit-only group
    // (Empty) across shards, with both filters; DescribeGroups shows the
    // live member with its client id, metadata and assignment, and Dead
    // (v5) or GROUP_ID_NOT_FOUND (v6) for unknown groups; DeleteGroups
    // refuses the live group and deletes the empty one with its offsets,
    // and the deletion survives SIGTERM and kill -9.
    let (mut broker, _config) = start_broker();
    create_topic(&broker, "watched", 2, &[]);
    let member = stable_member(&broker, "admin-active", "watched", 2);
    assert_eq!(simple_commit(&broker, "admin-idle", "watched", &[(0, 12, None)]), vec![0]);

    let classic = |id: &str, protocol: &str, state: &str| {
        (id.to_string(), protocol.to_string(), state.to_string(), "classic".to_string())
    };
    assert_eq!(
        list_groups(&broker, 5, &[], &[]),
        vec![classic("admin-active", "consumer", "Stable"), classic("admin-idle", "", "Empty")]
    );
    let stable_only = list_groups(&broker, 4, &["STABLE"], &[]);
    assert_eq!(stable_only.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(), vec!["admin-active"]);
    assert_eq!(list_groups(&broker, 5, &[], &["Classic"]).len(), 2);
    assert!(list_groups(&broker, 5, &[], &["consumer"]).is_empty(), "no consumer-protocol groups");
    assert_eq!(list_groups(&broker, 0, &[], &[]).len(), 2, "v0: no filters, every group");

    let active = describe(&broker, 5, "admin-active");
    assert_eq!((active.error_code, active.group_state.as_str()), (0, "Stable"));
    assert_eq!(active.protocol_type.as_str(), "consumer");
    assert!(!active.protocol_data.is_empty(), "the chosen assignor");
    assert_eq!(active.members.len(), 1);
    let described = &active.members[0];
    assert_eq!(described.client_id.as_str(), "admin-e2e-client");
    assert_eq!(described.client_host.as_str(), "/127.0.0.1");
    assert!(!described.member_metadata.is_empty() && !described.member_assignment.is_empty());
    assert_ne!(active.authorized_operations, i32::MIN, "asked for");
    let unknown = describe(&broker, 5, "no-such-group");
    assert_eq!((unknown.error_code, unknown.group_state.as_str()), (0, "Dead"));
    assert_eq!(describe(&broker, 6, "no-such-group").error_code, 69, "GROUP_ID_NOT_FOUND from v6");

    assert_eq!(delete_groups(&broker, &["admin-active", "admin-idle", "no-such-group"]), vec![68, 0, 69]);
    assert_eq!(committed_offset(&broker, "admin-idle", "watched"), -1, "offsets go with the group");
    let names = |broker: &Broker| list_groups(broker, 5, &[], &[]).into_iter().map(|g| g.0).collect::<Vec<_>>();
    assert_eq!(names(&broker), vec!["admin-active"]);
    drop(member);

    assert!(broker.stop());
    broker.restart();
    assert_eq!(committed_offset(&broker, "admin-idle", "watched"), -1);
    assert!(!names(&broker).contains(&"admin-idle".to_string()), "the deletion is durable");
    broker.kill9();
    broker.restart();
    assert_eq!(committed_offset(&broker, "admin-idle", "watched"), -1);
}

#[test]
fn offsets_of_unsubscribed_topics_are_deleted_durably() {
    // Proves OffsetDelete: GROUP_SUBSCRIBED_TO_TOPIC for a topic the live
    // member subscribes to, success (and the offset gone) for one it
    // committed without subscribing, UNKNOWN_TOPIC_OR_PARTITION for an
    // unknown topic, GROUP_ID_NOT_FOUND for an unknown group; the deletion
    // survives a kill -9.
    let (mut broker, _config) = start_broker();
    create_topic(&broker, "subscribed", 1, &[]);
    create_topic(&broker, "elsewhere", 1, &[]);
    let member = stable_member(&broker, "deleter", "subscribed", 1);
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("subscribed", 0, Offset::Offset(3)).unwrap();
    offsets.add_partition_offset("elsewhere", 0, Offset::Offset(5)).unwrap();
    member.commit(&offsets, CommitMode::Sync).unwrap();
    assert_eq!(committed_offset(&broker, "deleter", "elsewhere"), 5);

    assert_eq!(offset_delete(&broker, "deleter", "subscribed", &[0]), (0, vec![86]));
    assert_eq!(offset_delete(&broker, "deleter", "elsewhere", &[0]), (0, vec![0]));
    assert_eq!(offset_delete(&broker, "deleter", "nowhere", &[0]), (0, vec![3]));
    assert_eq!(offset_delete(&broker, "no-such-group", "elsewhere", &[0]).0, 69);
    assert_eq!(committed_offset(&broker, "deleter", "elsewhere"), -1);
    assert_eq!(committed_offset(&broker, "deleter", "subscribed"), 3);
    drop(member);
    broker.kill9();
    broker.restart();
    assert_eq!(committed_offset(&broker, "deleter", "elsewhere"), -1);
    assert_eq!(committed_offset(&broker, "deleter", "subscribed"), 3);
}
