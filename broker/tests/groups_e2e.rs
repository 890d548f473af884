//! End-to-end tests of consumer groups against the real `stele` binary:
//! librdkafka consumers that `subscribe()` with a `group.id` (classic
//! protocol), committed offsets across SIGTERM and kill -9, partitions split
//! among members and moved when one leaves; raw requests for what a client
//! library cannot express (batched FindCoordinator, simple commits).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;

/// A broker (2 shards) whose groups form at once: these tests are not
/// about `group.initial.rebalance.delay.ms` (3 s by default), which
/// classic_groups_e2e.rs tests. Keep the directory alive with the broker.
fn broker_without_join_delay() -> (tempfile::TempDir, Broker) {
    let (dir, config) = config_file("[groups]\n\"group.initial.rebalance.delay.ms\" = 0\n");
    (dir, Broker::start_with(2, &["--config", &config]))
}

fn group_consumer(broker: &Broker, group: &str) -> BaseConsumer {
    let mut config = client_config(broker);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("topic.metadata.refresh.interval.ms", "1000");
    config.create().expect("consumer")
}

fn values(count: usize, tag: &str) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    (0..count).map(|i| (None, format!("{tag}-{i}").into_bytes())).collect()
}

/// Polls until `count` records arrived (panics after 60 s), returning
/// (partition, offset, value).
fn poll_records(consumer: &BaseConsumer, count: usize) -> Vec<(i32, i64, String)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < count {
        assert!(Instant::now() < deadline, "got {} of {count} records: {out:?}", out.len());
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(err)) => panic!("consume error: {err}"),
            Some(Ok(m)) => out.push((
                m.partition(),
                m.offset(),
                String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
            )),
        }
    }
    out
}

/// Polls for `quiet` and returns the values of anything that arrives.
fn poll_quiet(consumer: &BaseConsumer, quiet: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let deadline = Instant::now() + quiet;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap());
        }
    }
    out
}

fn produce_spread(broker: &Broker, topic: &str, partitions: i32, per_partition: usize, tag: &str) {
    let producer = producer(broker, &[("acks", "all")]);
    for partition in 0..partitions {
        produce_all(&producer, topic, Some(partition), &values(per_partition, &format!("{tag}-p{partition}")));
    }
}

/// Consumes `count` new records in `group`, checks none is older than
/// `tag`'s, commits synchronously and closes (LeaveGroup).
fn consume_and_commit(broker: &Broker, group: &str, topic: &str, count: usize, tag: &str) {
    let consumer = group_consumer(broker, group);
    consumer.subscribe(&[topic]).unwrap();
    let got = poll_records(&consumer, count);
    assert!(got.iter().all(|(_, _, value)| value.starts_with(tag)), "only records after the commit: {got:?}");
    consumer.commit_consumer_state(CommitMode::Sync).expect("sync commit");
    assert!(poll_quiet(&consumer, Duration::from_millis(500)).is_empty(), "nothing beyond what was produced");
}

#[test]
fn committed_offsets_survive_sigterm_and_kill9() {
    // Proves a subscribed consumer gets every partition, its sync commit is
    // durable, and a new consumer of the group resumes exactly after it
    // following a clean restart and a kill -9.
    let (_config, mut broker) = broker_without_join_delay();
    create_topic(&broker, "resume", 3, &[]);
    produce_spread(&broker, "resume", 3, 10, "first");
    consume_and_commit(&broker, "resumers", "resume", 30, "first");

    assert!(broker.stop(), "clean exit");
    broker.restart();
    produce_spread(&broker, "resume", 3, 2, "second");
    consume_and_commit(&broker, "resumers", "resume", 6, "second");

    broker.kill9();
    broker.restart();
    produce_spread(&broker, "resume", 3, 1, "third");
    consume_and_commit(&broker, "resumers", "resume", 3, "third");
}

fn assigned(consumer: &BaseConsumer) -> BTreeSet<i32> {
    consumer.assignment().unwrap().elements().iter().map(|e| e.partition()).collect()
}

#[test]
fn two_members_split_partitions_and_the_survivor_takes_all() {
    // Proves two consumers of one group get disjoint assignments covering
    // every partition, and when one closes (LeaveGroup) the rebalance gives
    // the other all of them.
    let (_config, broker) = broker_without_join_delay();
    create_topic(&broker, "split", 4, &[]);
    produce_spread(&broker, "split", 4, 5, "r");
    let first = group_consumer(&broker, "splitters");
    first.subscribe(&["split"]).unwrap();
    let second = group_consumer(&broker, "splitters");
    second.subscribe(&["split"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        first.poll(Duration::from_millis(50));
        second.poll(Duration::from_millis(50));
        let (a, b) = (assigned(&first), assigned(&second));
        if !a.is_empty() && !b.is_empty() && a.len() + b.len() == 4 {
            assert!(a.is_disjoint(&b), "{a:?} and {b:?} overlap");
            assert_eq!(a.union(&b).copied().collect::<BTreeSet<_>>(), (0..4).collect());
            break;
        }
        assert!(Instant::now() < deadline, "no split assignment: {a:?} / {b:?}");
    }
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(60);
    while assigned(&first).len() != 4 {
        first.poll(Duration::from_millis(50));
        assert!(Instant::now() < deadline, "survivor has {:?}", assigned(&first));
    }
}

#[test]
fn format_1_offsets_are_migrated_and_follow_a_shard_count_change() {
    // Proves the offsets a Stele of format 1 wrote (a fixture from that
    // version, 2 shards) are all there after starting today's broker on
    // them with 3 shards (groups move to other coordinators) and again with
    // 1 shard, and that the format-1 files are removed once migrated.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/offsets-format-1");
    let mut broker = Broker::start_prepared(3, &[], |data_dir| {
        for shard in ["0", "1"] {
            let dir = data_dir.join("__consumer_offsets").join(shard);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(fixture.join(shard).join("offsets.log"), dir.join("offsets.log")).unwrap();
        }
    });
    // confluent-kafka 2.16.1 sent the metadata with a trailing NUL byte,
    // and Stele keeps what clients send.
    let expected = |group: &str, first: i64, second: i64, third: i64| {
        vec![(first, Some(format!("meta-{group}\0"))), (second, None), (third, None)]
    };
    let check = |broker: &Broker| {
        assert_eq!(committed(broker, "legacy-a", "legacy", &[0, 1, 2]), expected("legacy-a", 5, 107, 9));
        assert_eq!(committed(broker, "legacy-b", "legacy", &[0, 1, 2]), expected("legacy-b", 1, 102, 3));
        assert_eq!(committed(broker, "legacy-c", "legacy", &[0, 1, 2]), expected("legacy-c", 10, 100, 4));
    };
    check(&broker);
    for shard in ["0", "1"] {
        let legacy = broker.data_dir.join("__consumer_offsets").join(shard).join("offsets.log");
        assert!(!legacy.exists(), "{} was not removed", legacy.display());
    }
    assert!(broker.stop());
    broker.set_shards(1);
    broker.restart();
    check(&broker);
    broker.kill9();
    broker.set_shards(2);
    broker.restart();
    check(&broker);
}

#[test]
fn the_group_log_is_compacted_and_keeps_the_latest_commits() {
    // Proves a group log that grew past offsets.topic.segment.bytes is
    // compacted (its older segments deleted, so disk use stays bounded by
    // a few segments while 3000 commits are made) and the latest commit of
    // every partition survives a clean restart and a kill -9.
    let (_config_dir, config) = config_file("[groups]\n\"offsets.topic.segment.bytes\" = 65536\n");
    let mut broker = Broker::start_with(1, &["--config", &config]);
    create_topic(&broker, "compacted", 4, &[]);
    let metadata = "m".repeat(100);
    for round in 0..750i64 {
        let offsets: Vec<(i32, i64, Option<&str>)> =
            (0..4).map(|partition| (partition, round * 10 + partition as i64, Some(metadata.as_str()))).collect();
        assert_eq!(simple_commit(&broker, "busy", "compacted", &offsets), vec![0; 4]);
    }
    let log_dir = broker.data_dir.join("__consumer_offsets").join("0");
    let deadline = Instant::now() + Duration::from_secs(30);
    let segments = || {
        std::fs::read_dir(&log_dir)
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log"))
            .count()
    };
    // About 750 appends of ~600 bytes over 64 KiB segments: without
    // compaction some seven segments would stay.
    while segments() > 3 {
        assert!(Instant::now() < deadline, "{} segments remain: no compaction", segments());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(broker.log().contains("compacted internal log"), "{}", broker.log());
    let latest: Vec<(i64, Option<String>)> = (0..4).map(|p| (7490 + p, Some(metadata.clone()))).collect();
    assert_eq!(committed(&broker, "busy", "compacted", &[0, 1, 2, 3]), latest);
    assert!(broker.stop());
    broker.restart();
    assert_eq!(committed(&broker, "busy", "compacted", &[0, 1, 2, 3]), latest);
    assert_eq!(simple_commit(&broker, "busy", "compacted", &[(0, 9999, None)]), vec![0]);
    broker.kill9();
    broker.restart();
    let mut after = latest.clone();
    after[0] = (9999, None);
    assert_eq!(committed(&broker, "busy", "compacted", &[0, 1, 2, 3]), after);
}

#[test]
fn raw_find_coordinator_and_simple_commits() {
    // Proves FindCoordinator v0 and batched v4 name this node, and that a
    // simple commit (generation -1, no member) is fetched back by v1 for
    // listed partitions and by v8 for all partitions (topics null).
    use protocol::messages::*;
    use protocol::StrBytes;
    let broker = Broker::start();
    create_topic(&broker, "simple", 2, &[]);
    let mut find = FindCoordinatorRequest::default();
    find.key = StrBytes::from_static_str("g");
    match raw_call(&broker, ApiKey::FindCoordinator, 0, RequestKind::FindCoordinator(find)) {
        ResponseKind::FindCoordinator(r) => assert_eq!((r.error_code, r.port), (0, broker.port as i32)),
        other => panic!("{other:?}"),
    }
    let mut find = FindCoordinatorRequest::default();
    find.coordinator_keys = vec![StrBytes::from_static_str("a"), StrBytes::from_static_str("b")];
    match raw_call(&broker, ApiKey::FindCoordinator, 4, RequestKind::FindCoordinator(find)) {
        ResponseKind::FindCoordinator(r) => {
            assert_eq!(r.coordinators.len(), 2);
            assert!(r.coordinators.iter().all(|c| c.error_code == 0 && c.port == broker.port as i32));
        }
        other => panic!("{other:?}"),
    }
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = GroupId(StrBytes::from_static_str("simple-group"));
    commit.generation_id_or_member_epoch = -1;
    let mut topic = offset_commit_request::OffsetCommitRequestTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("simple"));
    for (partition, offset) in [(0, 42), (1, 7)] {
        let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
        p.partition_index = partition;
        p.committed_offset = offset;
        p.committed_metadata = Some(StrBytes::from_static_str("meta"));
        topic.partitions.push(p);
    }
    let mut unknown = offset_commit_request::OffsetCommitRequestTopic::default();
    unknown.name = TopicName(StrBytes::from_static_str("nope"));
    unknown.partitions.push(Default::default());
    commit.topics = vec![topic, unknown];
    match raw_call(&broker, ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit)) {
        ResponseKind::OffsetCommit(r) => {
            let codes: Vec<i16> = r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect();
            assert_eq!(codes, vec![0, 0, 3], "unknown topic: UNKNOWN_TOPIC_OR_PARTITION");
        }
        other => panic!("{other:?}"),
    }
    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = GroupId(StrBytes::from_static_str("simple-group"));
    let mut wanted = offset_fetch_request::OffsetFetchRequestTopic::default();
    wanted.name = TopicName(StrBytes::from_static_str("simple"));
    wanted.partition_indexes = vec![1, 0, 5];
    fetch.topics = Some(vec![wanted]);
    match raw_call(&broker, ApiKey::OffsetFetch, 1, RequestKind::OffsetFetch(fetch)) {
        ResponseKind::OffsetFetch(r) => {
            let got: Vec<(i32, i64)> =
                r.topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
            assert_eq!(got, vec![(1, 7), (0, 42), (5, -1)]);
        }
        other => panic!("{other:?}"),
    }
    let mut fetch = OffsetFetchRequest::default();
    let mut group = offset_fetch_request::OffsetFetchRequestGroup::default();
    group.group_id = GroupId(StrBytes::from_static_str("simple-group"));
    group.topics = None;
    let mut empty = offset_fetch_request::OffsetFetchRequestGroup::default();
    empty.group_id = GroupId(StrBytes::from_static_str("never-committed"));
    fetch.groups = vec![group, empty];
    match raw_call(&broker, ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(fetch)) {
        ResponseKind::OffsetFetch(r) => {
            assert_eq!(r.groups.len(), 2);
            let got: Vec<(i32, i64, Option<String>)> = r.groups[0].topics[0]
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset, p.metadata.as_ref().map(|m| m.to_string())))
                .collect();
            assert_eq!(got, vec![(0, 42, Some("meta".into())), (1, 7, Some("meta".into()))]);
            assert!(r.groups[1].topics.is_empty() && r.groups[1].error_code == 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_silent_member_is_evicted_after_its_session_timeout() {
    // Proves a member that joined and then never heartbeats is removed
    // after its session timeout (6 s), so a librdkafka consumer joining the
    // group gets every partition instead of waiting for it forever.
    use protocol::messages::*;
    use protocol::StrBytes;
    let (_config, broker) = broker_without_join_delay();
    create_topic(&broker, "silent", 4, &[]);
    let mut join = JoinGroupRequest::default();
    join.group_id = GroupId(StrBytes::from_static_str("silent-group"));
    join.session_timeout_ms = 6000;
    join.rebalance_timeout_ms = 120_000;
    join.protocol_type = StrBytes::from_static_str("consumer");
    let mut range = join_group_request::JoinGroupRequestProtocol::default();
    range.name = StrBytes::from_static_str("range");
    join.protocols = vec![range];
    // v3: no MEMBER_ID_REQUIRED round trip.
    let joined = match raw_call(&broker, ApiKey::JoinGroup, 3, RequestKind::JoinGroup(join)) {
        ResponseKind::JoinGroup(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    assert_eq!(joined.leader, joined.member_id, "the only member leads");
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_static_str("silent-group"));
    sync.generation_id = 1;
    sync.member_id = joined.member_id.clone();
    match raw_call(&broker, ApiKey::SyncGroup, 3, RequestKind::SyncGroup(sync)) {
        ResponseKind::SyncGroup(r) => assert_eq!(r.error_code, 0),
        other => panic!("{other:?}"),
    }
    let started = Instant::now();
    let consumer = group_consumer(&broker, "silent-group");
    consumer.subscribe(&["silent"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while assigned(&consumer).len() != 4 {
        consumer.poll(Duration::from_millis(50));
        assert!(Instant::now() < deadline, "consumer has {:?}", assigned(&consumer));
    }
    assert!(started.elapsed() >= Duration::from_secs(4), "not before the silent member's session ran out");
    let mut heartbeat = HeartbeatRequest::default();
    heartbeat.group_id = GroupId(StrBytes::from_static_str("silent-group"));
    heartbeat.generation_id = 1;
    heartbeat.member_id = joined.member_id;
    match raw_call(&broker, ApiKey::Heartbeat, 3, RequestKind::Heartbeat(heartbeat)) {
        ResponseKind::Heartbeat(r) => assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID once evicted"),
        other => panic!("{other:?}"),
    }
}
