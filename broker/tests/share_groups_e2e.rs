//! End-to-end tests of share group membership and administration
//! (KIP-932) against the real `stele` binary, in raw requests as
//! librdkafka's share consumer sends them: ShareGroupHeartbeat v1 (join,
//! heartbeat, leave, the `simple` assignor sharing partitions, session
//! timeout eviction, durability across SIGTERM and kill -9),
//! ShareGroupDescribe, ListGroups, DescribeGroups, DeleteGroups,
//! FindCoordinator, the id namespace shared with consumer and classic
//! groups, GROUP configs, and the `group.share.enable` switch.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use protocol::messages::*;
use protocol::StrBytes;

/// Share groups on, with short sessions so that eviction takes seconds.
const SHARE_CONFIG: &str = "[groups]\n\
    \"group.share.enable\" = true\n\
    \"group.share.min.session.timeout.ms\" = 3000\n\
    \"group.share.session.timeout.ms\" = 3000\n\
    \"group.share.min.heartbeat.interval.ms\" = 500\n\
    \"group.share.heartbeat.interval.ms\" = 500\n";

const GROUP_ID_NOT_FOUND: i16 = 69;
const UNKNOWN_MEMBER_ID: i16 = 25;
const NON_EMPTY_GROUP: i16 = 68;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const INVALID_CONFIG: i16 = 40;
const RESOURCE_GROUP: i8 = 32;

fn start_broker() -> (Broker, tempfile::TempDir) {
    let (dir, config) = config_file(SHARE_CONFIG);
    (Broker::start_with(2, &["--config", &config]), dir)
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// A member as librdkafka's share consumer is: a UUID it made itself.
fn new_member_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn share_heartbeat(
    broker: &Broker,
    group: &str,
    member_id: &str,
    member_epoch: i32,
    topics: Option<&[&str]>,
) -> ShareGroupHeartbeatResponse {
    let mut request = ShareGroupHeartbeatRequest::default();
    request.group_id = GroupId(text(group));
    request.member_id = text(member_id);
    request.member_epoch = member_epoch;
    request.subscribed_topic_names = topics.map(|names| names.iter().map(|name| TopicName(text(name))).collect());
    match raw_call(broker, ApiKey::ShareGroupHeartbeat, 1, RequestKind::ShareGroupHeartbeat(request)) {
        ResponseKind::ShareGroupHeartbeat(response) => response,
        other => panic!("{other:?}"),
    }
}

fn join(broker: &Broker, group: &str, member_id: &str, topics: &[&str]) -> ShareGroupHeartbeatResponse {
    let answer = share_heartbeat(broker, group, member_id, 0, Some(topics));
    assert_eq!(answer.error_code, 0, "join: {answer:?}");
    answer
}

fn partitions_of(assignment: &share_group_heartbeat_response::Assignment) -> BTreeSet<i32> {
    assignment.topic_partitions.iter().flat_map(|topic| topic.partitions.iter().copied()).collect()
}

/// A share member that heartbeats at the epoch it was last given and
/// keeps the assignment it was last sent.
struct Member {
    id: String,
    epoch: i32,
    assigned: BTreeSet<i32>,
}

impl Member {
    fn join(broker: &Broker, group: &str, topics: &[&str]) -> Member {
        let id = new_member_id();
        let answer = join(broker, group, &id, topics);
        let assigned = answer.assignment.as_ref().map(partitions_of).unwrap_or_default();
        Member { id, epoch: answer.member_epoch, assigned }
    }

    fn beat(&mut self, broker: &Broker, group: &str) {
        let answer = share_heartbeat(broker, group, &self.id, self.epoch, None);
        assert_eq!(answer.error_code, 0, "heartbeat of {}: {answer:?}", self.id);
        self.epoch = answer.member_epoch;
        if let Some(assignment) = &answer.assignment {
            self.assigned = partitions_of(assignment);
        }
    }
}

/// Heartbeats every member until all are at the group epoch and `done`
/// holds of their assignments.
fn settle(broker: &Broker, group: &str, members: &mut [Member], done: impl Fn(&[Member]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for member in members.iter_mut() {
            member.beat(broker, group);
        }
        let epoch = describe(broker, group).group_epoch;
        if members.iter().all(|member| member.epoch == epoch) && done(members) {
            return;
        }
        assert!(Instant::now() < deadline, "never settled: {:?}", describe(broker, group));
    }
}

fn describe(broker: &Broker, group: &str) -> share_group_describe_response::DescribedGroup {
    let mut request = ShareGroupDescribeRequest::default();
    request.group_ids = vec![GroupId(text(group))];
    request.include_authorized_operations = true;
    match raw_call(broker, ApiKey::ShareGroupDescribe, 1, RequestKind::ShareGroupDescribe(request)) {
        ResponseKind::ShareGroupDescribe(mut response) => response.groups.remove(0),
        other => panic!("{other:?}"),
    }
}

fn api_versions(broker: &Broker) -> Vec<(i16, i16, i16)> {
    match raw_call(broker, ApiKey::ApiVersions, 3, RequestKind::ApiVersions(api_versions_request())) {
        ResponseKind::ApiVersions(response) => {
            response.api_keys.iter().map(|key| (key.api_key, key.min_version, key.max_version)).collect()
        }
        other => panic!("{other:?}"),
    }
}

fn api_versions_request() -> ApiVersionsRequest {
    let mut request = ApiVersionsRequest::default();
    request.client_software_name = text("stele-e2e");
    request.client_software_version = text("1.0");
    request
}

#[test]
fn the_share_apis_are_neither_advertised_nor_served_while_the_switch_is_off() {
    // Proves group.share.enable: set to false, ApiVersions lists neither
    // ShareGroupHeartbeat (76) nor ShareGroupDescribe (77) and a request for
    // one is refused like any API not advertised (the connection closes, no
    // answer); on, every share API is advertised; and on is the default.
    let (off_dir, off_config) = config_file("[groups]\n\"group.share.enable\" = false\n");
    let off = Broker::start_with(2, &["--config", &off_config]);
    let listed: Vec<i16> = api_versions(&off).iter().map(|(key, _, _)| *key).collect();
    assert!(!listed.contains(&76) && !listed.contains(&77), "{listed:?}");
    assert!(listed.contains(&68), "the rest is unchanged");
    let mut request = ShareGroupHeartbeatRequest::default();
    request.group_id = GroupId(text("g"));
    request.member_id = text(&new_member_id());
    request.subscribed_topic_names = Some(vec![TopicName(text("t"))]);
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::ShareGroupHeartbeat as i16;
    header.request_api_version = 1;
    header.correlation_id = 1;
    let mut frame = bytes::BytesMut::new();
    protocol::encode_request(&mut frame, &header, &RequestKind::ShareGroupHeartbeat(request)).unwrap();
    let mut stream = TcpStream::connect(off.bootstrap()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(&frame).unwrap();
    let mut answer = [0u8; 4];
    let read = stream.read(&mut answer);
    assert!(matches!(read, Ok(0) | Err(_)), "no answer, the connection closes: {read:?}");

    let (on, _config) = start_broker();
    let advertised = api_versions(&on);
    assert!(advertised.contains(&(76, 1, 1)) && advertised.contains(&(77, 1, 1)), "{advertised:?}");
    for key in [78, 79, 90, 91, 92] {
        assert!(advertised.iter().any(|(k, _, _)| *k == key), "{key} advertised with the switch on: {advertised:?}");
    }
    drop(off_dir);
    let default = Broker::start();
    let by_default: Vec<i16> = api_versions(&default).iter().map(|(key, _, _)| *key).collect();
    assert!(by_default.contains(&76) && by_default.contains(&78), "share groups are on by default: {by_default:?}");
}

#[test]
fn three_members_of_a_one_partition_topic_all_read_partition_0() {
    // Proves the share assignor's sharing: three members of one
    // partition all get partition 0; ShareGroupDescribe shows them Stable
    // at one epoch with assignor "simple", their subscriptions and
    // assignments by topic name, and every operation authorized; a leave
    // (epoch -1) answers -1 and the group epoch moves on.
    let (broker, _config) = start_broker();
    create_topic(&broker, "one", 1, &[]);
    let mut members: Vec<Member> = (0..3).map(|_| Member::join(&broker, "sg", &["one"])).collect();
    assert_eq!(members[0].epoch, 1, "the first join makes epoch 1");
    settle(&broker, "sg", &mut members, |members| members.iter().all(|m| m.assigned == BTreeSet::from([0])));
    let described = describe(&broker, "sg");
    assert_eq!(described.error_code, 0);
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.assignor_name.as_str(), "simple");
    assert_eq!((described.group_epoch, described.assignment_epoch), (3, 3));
    assert_eq!(described.members.len(), 3);
    assert_ne!(described.authorized_operations, i32::MIN, "asked for, so answered");
    for member in &described.members {
        assert_eq!(member.member_epoch, 3);
        assert_eq!(member.client_id.as_str(), "stele-e2e");
        assert_eq!(member.subscribed_topic_names, vec![TopicName(text("one"))]);
        let topics = &member.assignment.topic_partitions;
        assert_eq!((topics.len(), topics[0].topic_name.as_str(), topics[0].partitions.clone()), (1, "one", vec![0]));
    }
    let leaving = members.pop().unwrap();
    let left = share_heartbeat(&broker, "sg", &leaving.id, -1, None);
    assert_eq!((left.error_code, left.member_epoch, left.heartbeat_interval_ms), (0, -1, 0));
    let described = describe(&broker, "sg");
    assert_eq!((described.members.len(), described.group_epoch), (2, 4));
    let again = share_heartbeat(&broker, "sg", &leaving.id, 3, None);
    assert_eq!(again.error_code, UNKNOWN_MEMBER_ID, "gone: {again:?}");
}

#[test]
fn members_up_to_the_partition_count_split_the_partitions() {
    // Proves that with no more members than partitions each partition is
    // read by exactly one member, evenly, and the answer carries the
    // heartbeat interval; a full request (the subscription named again)
    // is answered with the assignment.
    let (broker, _config) = start_broker();
    create_topic(&broker, "four", 4, &[]);
    let mut members = vec![Member::join(&broker, "split", &["four"]), Member::join(&broker, "split", &["four"])];
    settle(&broker, "split", &mut members, |members| members.iter().all(|m| m.assigned.len() == 2));
    assert!(
        members[0].assigned.is_disjoint(&members[1].assigned),
        "{:?}",
        [&members[0].assigned, &members[1].assigned]
    );
    let full = share_heartbeat(&broker, "split", &members[0].id, members[0].epoch, Some(&["four"]));
    assert_eq!(full.heartbeat_interval_ms, 500);
    assert_eq!(full.assignment.as_ref().map(partitions_of), Some(members[0].assigned.clone()));
}

#[test]
fn a_silent_member_is_evicted_after_its_session_timeout() {
    // Proves eviction: a member that stops heartbeating is removed once its
    // 3 s session times out, and the member still heartbeating takes all
    // the partitions.
    let (broker, _config) = start_broker();
    create_topic(&broker, "evict", 2, &[]);
    let silent = Member::join(&broker, "eviction", &["evict"]);
    let mut staying = Member::join(&broker, "eviction", &["evict"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        staying.beat(&broker, "eviction");
        let described = describe(&broker, "eviction");
        let ids: Vec<String> = described.members.iter().map(|m| m.member_id.to_string()).collect();
        if !ids.contains(&silent.id) && staying.assigned == BTreeSet::from([0, 1]) {
            break;
        }
        assert!(Instant::now() < deadline, "never evicted: {described:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let late = share_heartbeat(&broker, "eviction", &silent.id, silent.epoch, None);
    assert_eq!(late.error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn membership_survives_sigterm_kill_9_and_a_new_shard_count() {
    // Proves share group membership is durable: after a clean stop, after
    // a kill -9, and after a restart with another shard count (the group
    // handed to its new coordinator shard, its GROUP configs with it) the
    // members, their epochs and assignments are described as before, and a
    // member heartbeating at its old epoch is accepted (not fenced) with
    // the same partitions.
    let (mut broker, _config) = start_broker();
    create_topic(&broker, "durable", 3, &[]);
    let mut members =
        vec![Member::join(&broker, "lasting", &["durable"]), Member::join(&broker, "lasting", &["durable"])];
    settle(&broker, "lasting", &mut members, |members| members.iter().map(|m| m.assigned.len()).sum::<usize>() == 3);
    for round in ["sigterm", "kill -9", "3 shards"] {
        let before = describe(&broker, "lasting");
        if round == "kill -9" {
            // An answer that waits for the group log (a GROUP config is
            // answered once durable) is placed after the membership record
            // of the heartbeats before it, so both are durable now.
            let ops = [("share.delivery.count.limit", 0, Some("4"))];
            assert_eq!(incremental_alter_configs(&broker, RESOURCE_GROUP, "lasting", &ops).0, 0);
            broker.kill9();
        } else {
            if round == "3 shards" {
                // "lasting" is coordinated by shard 0 of 2 and shard 2 of 3
                // (CRC32C mod the count): its records must be handed over.
                broker.set_shards(3);
            }
            assert!(broker.stop());
        }
        broker.restart();
        let after = describe(&broker, "lasting");
        assert_eq!((after.group_epoch, after.assignment_epoch), (before.group_epoch, before.assignment_epoch));
        let epochs = |group: &share_group_describe_response::DescribedGroup| {
            let mut members: Vec<(String, i32, Vec<i32>)> = group
                .members
                .iter()
                .map(|m| {
                    let parts = m.assignment.topic_partitions.iter().flat_map(|t| t.partitions.clone()).collect();
                    (m.member_id.to_string(), m.member_epoch, parts)
                })
                .collect();
            members.sort();
            members
        };
        assert_eq!(epochs(&after), epochs(&before), "after {round}");
        let (_, configs) = group_configs(&broker, "lasting");
        if round != "sigterm" {
            assert_eq!(value_of(&configs, "share.delivery.count.limit"), ("4".into(), 8), "after {round}");
        }
        for member in &mut members {
            let assigned = member.assigned.clone();
            member.beat(&broker, "lasting");
            assert_eq!(member.assigned, assigned);
        }
    }
}

#[test]
fn share_groups_and_consumer_groups_share_one_id_namespace() {
    // Proves Kafka's answers across group types: a share heartbeat to a
    // consumer group's id, and a consumer heartbeat to a share group's, are
    // GROUP_ID_NOT_FOUND; a classic JoinGroup to a share group is
    // INCONSISTENT_GROUP_PROTOCOL; each describe API refuses the other's
    // groups; a non-joining heartbeat to no group is GROUP_ID_NOT_FOUND.
    let (broker, _config) = start_broker();
    create_topic(&broker, "ns", 1, &[]);
    let mut consumer = ConsumerGroupHeartbeatRequest::default();
    consumer.group_id = GroupId(text("cg"));
    consumer.member_id = text(&new_member_id());
    consumer.rebalance_timeout_ms = 30_000;
    consumer.subscribed_topic_names = Some(vec![TopicName(text("ns"))]);
    consumer.topic_partitions = Some(vec![]);
    let consumer_heartbeat = |request: ConsumerGroupHeartbeatRequest| match raw_call(
        &broker,
        ApiKey::ConsumerGroupHeartbeat,
        1,
        RequestKind::ConsumerGroupHeartbeat(request),
    ) {
        ResponseKind::ConsumerGroupHeartbeat(response) => response,
        other => panic!("{other:?}"),
    };
    assert_eq!(consumer_heartbeat(consumer.clone()).error_code, 0);
    let refused = share_heartbeat(&broker, "cg", &new_member_id(), 0, Some(&["ns"]));
    assert_eq!(refused.error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(
        refused.error_message.as_ref().map(|m| m.to_string()).as_deref(),
        Some("Group cg is not a share group.")
    );
    let described = describe(&broker, "cg");
    assert_eq!(described.error_code, GROUP_ID_NOT_FOUND);

    join(&broker, "sg", &new_member_id(), &["ns"]);
    let mut to_share = consumer.clone();
    to_share.group_id = GroupId(text("sg"));
    assert_eq!(consumer_heartbeat(to_share).error_code, GROUP_ID_NOT_FOUND);
    let mut describe_consumer = ConsumerGroupDescribeRequest::default();
    describe_consumer.group_ids = vec![GroupId(text("sg"))];
    match raw_call(&broker, ApiKey::ConsumerGroupDescribe, 1, RequestKind::ConsumerGroupDescribe(describe_consumer)) {
        ResponseKind::ConsumerGroupDescribe(response) => assert_eq!(response.groups[0].error_code, GROUP_ID_NOT_FOUND),
        other => panic!("{other:?}"),
    }
    let mut classic = JoinGroupRequest::default();
    classic.group_id = GroupId(text("sg"));
    classic.session_timeout_ms = 10_000;
    classic.rebalance_timeout_ms = 10_000;
    classic.protocol_type = text("consumer");
    let mut protocol = join_group_request::JoinGroupRequestProtocol::default();
    protocol.name = text("range");
    classic.protocols = vec![protocol];
    match raw_call(&broker, ApiKey::JoinGroup, 5, RequestKind::JoinGroup(classic)) {
        ResponseKind::JoinGroup(response) => assert_eq!(response.error_code, INCONSISTENT_GROUP_PROTOCOL),
        other => panic!("{other:?}"),
    }
    assert_eq!(simple_commit(&broker, "sg", "ns", &[(0, 1, None)]), vec![GROUP_ID_NOT_FOUND], "no offsets");
    let nothing = share_heartbeat(&broker, "no-such-group", &new_member_id(), 1, None);
    assert_eq!(nothing.error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(describe(&broker, "no-such-group").error_code, GROUP_ID_NOT_FOUND);
}

fn list_groups(broker: &Broker, types: &[&str]) -> Vec<(String, String, String, String)> {
    let mut request = ListGroupsRequest::default();
    request.types_filter = types.iter().map(|t| text(t)).collect();
    match raw_call(broker, ApiKey::ListGroups, 5, RequestKind::ListGroups(request)) {
        ResponseKind::ListGroups(response) => response
            .groups
            .iter()
            .map(|g| {
                let fields = [&g.group_id.0, &g.protocol_type, &g.group_state, &g.group_type];
                let [id, protocol, state, kind] = fields.map(|f| f.to_string());
                (id, protocol, state, kind)
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn describe_groups(broker: &Broker, version: i16, group: &str) -> describe_groups_response::DescribedGroup {
    let mut request = DescribeGroupsRequest::default();
    request.groups = vec![GroupId(text(group))];
    match raw_call(broker, ApiKey::DescribeGroups, version, RequestKind::DescribeGroups(request)) {
        ResponseKind::DescribeGroups(mut response) => response.groups.remove(0),
        other => panic!("{other:?}"),
    }
}

fn delete_groups(broker: &Broker, group: &str) -> i16 {
    let mut request = DeleteGroupsRequest::default();
    request.groups_names = vec![GroupId(text(group))];
    match raw_call(broker, ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(request)) {
        ResponseKind::DeleteGroups(response) => response.results[0].error_code,
        other => panic!("{other:?}"),
    }
}

#[test]
fn share_groups_are_listed_described_found_and_deleted() {
    // Proves the admin view: ListGroups v5 lists a share group with
    // protocol and type "share" (and the type filter selects it);
    // DescribeGroups answers it as Kafka does for non-classic groups (Dead;
    // GROUP_ID_NOT_FOUND from v6); FindCoordinator (key type 0, what share
    // consumers send) names this broker; DeleteGroups refuses it while it
    // has members and deletes it durably once empty.
    let (mut broker, _config) = start_broker();
    create_topic(&broker, "admin", 1, &[]);
    let member = Member::join(&broker, "listed", &["admin"]);
    let share = ("listed".to_string(), "share".to_string(), "Stable".to_string(), "share".to_string());
    assert!(list_groups(&broker, &[]).contains(&share));
    assert_eq!(list_groups(&broker, &["share"]), vec![share]);
    assert!(list_groups(&broker, &["consumer"]).is_empty());
    let old = describe_groups(&broker, 5, "listed");
    assert_eq!((old.error_code, old.group_state.as_str()), (0, "Dead"));
    let new = describe_groups(&broker, 6, "listed");
    assert_eq!((new.error_code, new.group_state.as_str()), (GROUP_ID_NOT_FOUND, "Dead"));
    let mut find = FindCoordinatorRequest::default();
    find.key_type = 0;
    find.coordinator_keys = vec![text("listed")];
    match raw_call(&broker, ApiKey::FindCoordinator, 4, RequestKind::FindCoordinator(find)) {
        ResponseKind::FindCoordinator(response) => {
            let found = &response.coordinators[0];
            assert_eq!((found.error_code, found.port), (0, i32::from(broker.port)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(delete_groups(&broker, "listed"), NON_EMPTY_GROUP);
    assert_eq!(share_heartbeat(&broker, "listed", &member.id, -1, None).error_code, 0);
    assert_eq!(list_groups(&broker, &["share"])[0].2, "Empty");
    assert_eq!(delete_groups(&broker, "listed"), 0);
    assert_eq!(delete_groups(&broker, "listed"), GROUP_ID_NOT_FOUND);
    broker.kill9();
    broker.restart();
    assert_eq!(describe(&broker, "listed").error_code, GROUP_ID_NOT_FOUND, "the deletion was durable");
    assert!(list_groups(&broker, &["share"]).is_empty());
}

/// DescribeConfigs v4 of a GROUP resource: (name, value, source) per key.
fn group_configs(broker: &Broker, group: &str) -> (i16, Vec<(String, String, i8)>) {
    let mut resource = describe_configs_request::DescribeConfigsResource::default();
    resource.resource_type = RESOURCE_GROUP;
    resource.resource_name = text(group);
    resource.configuration_keys = None;
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    request.include_synonyms = true;
    match raw_call(broker, ApiKey::DescribeConfigs, 4, RequestKind::DescribeConfigs(request)) {
        ResponseKind::DescribeConfigs(mut response) => {
            let result = response.results.remove(0);
            let configs = result
                .configs
                .iter()
                .map(|c| {
                    (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(), c.config_source)
                })
                .collect();
            (result.error_code, configs)
        }
        other => panic!("{other:?}"),
    }
}

fn value_of(configs: &[(String, String, i8)], name: &str) -> (String, i8) {
    let (_, value, source) =
        configs.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("{name}: {configs:?}"));
    (value.clone(), *source)
}

#[test]
fn group_configs_are_set_described_validated_and_durable() {
    // Proves the share GROUP configs: DescribeConfigs shows the broker's
    // values as DEFAULT_CONFIG (5) for any group id; IncrementalAlterConfigs
    // sets values (DYNAMIC_GROUP_CONFIG, 8) and refuses out-of-bounds,
    // malformed and unknown ones with INVALID_CONFIG, changing nothing; a
    // group's share.heartbeat.interval.ms is what its members are told; the
    // values survive a kill -9; DELETE goes back to the broker's.
    let (mut broker, _config) = start_broker();
    create_topic(&broker, "configured", 1, &[]);
    let (code, configs) = group_configs(&broker, "tuned");
    assert_eq!(code, 0);
    assert_eq!(configs.len(), 6, "{configs:?}");
    assert_eq!(value_of(&configs, "share.record.lock.duration.ms"), ("30000".into(), 5));
    assert_eq!(value_of(&configs, "share.session.timeout.ms"), ("3000".into(), 5), "the broker's value");
    assert_eq!(value_of(&configs, "share.auto.offset.reset"), ("latest".into(), 5));
    assert_eq!(value_of(&configs, "share.isolation.level"), ("read_uncommitted".into(), 5));

    let set = [
        ("share.delivery.count.limit", 0, Some("3")),
        ("share.auto.offset.reset", 0, Some("by_duration:PT1H")),
        ("share.isolation.level", 0, Some("read_committed")),
        ("share.heartbeat.interval.ms", 0, Some("1000")),
        ("share.record.lock.duration.ms", 0, Some("20000")),
    ];
    assert_eq!(incremental_alter_configs(&broker, RESOURCE_GROUP, "tuned", &set), (0, None));
    for refused in [
        ("share.session.timeout.ms", 0, Some("999999")),
        ("share.delivery.count.limit", 0, Some("1")),
        ("share.auto.offset.reset", 0, Some("somewhere")),
        ("share.isolation.level", 0, Some("READ_COMMITTED")),
        ("consumer.session.timeout.ms", 0, Some("50000")),
        ("share.heartbeat.interval.ms", 2, Some("1")),
    ] {
        let (code, message) = incremental_alter_configs(&broker, RESOURCE_GROUP, "tuned", &[refused]);
        assert_eq!(code, INVALID_CONFIG, "{refused:?}: {message:?}");
        assert!(message.is_some_and(|m| m.contains(refused.0)), "{refused:?}");
    }
    let (_, configs) = group_configs(&broker, "tuned");
    assert_eq!(value_of(&configs, "share.delivery.count.limit"), ("3".into(), 8));
    assert_eq!(value_of(&configs, "share.auto.offset.reset"), ("by_duration:PT1H".into(), 8));
    let joined = join(&broker, "tuned", &new_member_id(), &["configured"]);
    assert_eq!(joined.heartbeat_interval_ms, 1000, "the group's interval, not the broker's 500");

    broker.kill9();
    broker.restart();
    let (_, configs) = group_configs(&broker, "tuned");
    assert_eq!(value_of(&configs, "share.isolation.level"), ("read_committed".into(), 8));
    assert_eq!(value_of(&configs, "share.record.lock.duration.ms"), ("20000".into(), 8));
    let delete = [("share.delivery.count.limit", 1, None)];
    assert_eq!(incremental_alter_configs(&broker, RESOURCE_GROUP, "tuned", &delete).0, 0);
    let (_, configs) = group_configs(&broker, "tuned");
    assert_eq!(value_of(&configs, "share.delivery.count.limit"), ("5".into(), 5));
    assert_eq!(group_configs(&broker, "").0, 42, "an empty group name is INVALID_REQUEST");
}
