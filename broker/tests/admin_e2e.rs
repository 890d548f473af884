//! End-to-end tests of the admin and metadata APIs against the real `stele`
//! binary: librdkafka's AdminClient (the `rdkafka` crate) for
//! CreatePartitions, DescribeConfigs, AlterConfigs, DeleteRecords and
//! DeleteTopics; a raw Kafka-protocol client (the `protocol` crate's codecs)
//! for what rdkafka does not expose: IncrementalAlterConfigs,
//! DescribeCluster, DescribeTopicPartitions, OffsetForLeaderEpoch and
//! DescribeLogDirs.

mod common;

use std::time::Duration;

use common::*;
use futures::executor::block_on;
use protocol::api::ApiKey;
use protocol::messages::{self, RequestKind, ResponseKind, TopicName};
use protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// rdkafka's FutureProducer needs an async runtime for its retry delays;
/// without the crate's tokio or naive-runtime features, threads serve.
struct ThreadRuntime;

impl rdkafka::util::AsyncRuntime for ThreadRuntime {
    type Delay = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    fn spawn<T>(task: T)
    where
        T: std::future::Future<Output = ()> + Send + 'static,
    {
        std::thread::spawn(move || block_on(task));
    }

    fn delay_for(duration: Duration) -> Self::Delay {
        let (done, waited) = futures::channel::oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            let _ = done.send(());
        });
        Box::pin(async move {
            let _ = waited.await;
        })
    }
}

fn admin(broker: &Broker) -> AdminClient<DefaultClientContext> {
    client_config(broker).create().expect("admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(TIMEOUT)).operation_timeout(Some(TIMEOUT))
}

fn records(count: usize) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    (0..count).map(|i| (None, format!("value-{i}").into_bytes())).collect()
}

fn partition_count(broker: &Broker, topic: &str) -> Option<usize> {
    let consumer = consumer(broker, &[]);
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT).unwrap();
    let found = metadata.topics().iter().find(|t| t.name() == topic)?;
    found.error().is_none().then(|| found.partitions().len())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

#[test]
fn create_partitions_then_produce_to_them_then_delete_the_topic() {
    // Proves CreatePartitions validate-only changes nothing, a real increase
    // gives partitions that accept and serve records, shrinking is
    // INVALID_PARTITIONS, and a deleted topic is gone with its directories.
    let broker = Broker::start();
    create_topic(&broker, "grow", 1, &[]);
    let admin = admin(&broker);
    let checked = block_on(admin.create_partitions([&NewPartitions::new("grow", 3)], &options().validate_only(true)));
    assert!(checked.unwrap()[0].is_ok());
    assert_eq!(partition_count(&broker, "grow"), Some(1), "validate-only changes nothing");
    let grown = block_on(admin.create_partitions([&NewPartitions::new("grow", 3)], &options())).unwrap();
    assert!(grown[0].is_ok(), "{grown:?}");
    assert_eq!(partition_count(&broker, "grow"), Some(3));
    let producer = producer(&broker, &[("acks", "all")]);
    produce_all(&producer, "grow", Some(2), &records(10));
    let consumer = consumer(&broker, &[]);
    let got = consume(&consumer, "grow", &[2], Offset::Beginning, 10, TIMEOUT);
    assert_eq!(got.last().unwrap().value, b"value-9");
    let shrunk = block_on(admin.create_partitions([&NewPartitions::new("grow", 2)], &options())).unwrap();
    assert!(matches!(&shrunk[0], Err((_, rdkafka::types::RDKafkaErrorCode::InvalidPartitions))), "{shrunk:?}");
    let missing = block_on(admin.create_partitions([&NewPartitions::new("nope", 2)], &options())).unwrap();
    assert!(matches!(&missing[0], Err((_, rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition))));

    assert!(broker.data_dir.join("grow-2").is_dir());
    let deleted = block_on(admin.delete_topics(&["grow"], &options())).unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");
    assert_eq!(partition_count(&broker, "grow"), None, "the topic is gone");
    for partition in 0..3 {
        assert!(!broker.data_dir.join(format!("grow-{partition}")).exists(), "directory of partition {partition}");
    }
}

#[test]
fn describe_and_alter_configs_and_the_new_values_take_effect() {
    // Proves DescribeConfigs shows a topic's override with its source and
    // the broker's settings; AlterConfigs replaces the override set and a
    // lowered max.message.bytes refuses a larger record at once;
    // IncrementalAlterConfigs SETs and DELETEs single keys and refuses
    // APPEND on a non-list key; static broker configs cannot be altered.
    let broker = Broker::start();
    create_topic(&broker, "cfg", 2, &[("retention.ms", "86400000")]);
    let admin = admin(&broker);
    let described = block_on(admin.describe_configs([&ResourceSpecifier::Topic("cfg")], &options())).unwrap();
    let resource = described[0].as_ref().unwrap();
    let retention = resource.get("retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("86400000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    let segment = resource.get("segment.bytes").unwrap();
    assert_ne!(segment.source, ConfigSource::DynamicTopic);

    let node_id = consumer(&broker, &[]).fetch_metadata(None, TIMEOUT).unwrap().brokers()[0].id();
    let described = block_on(admin.describe_configs([&ResourceSpecifier::Broker(node_id)], &options())).unwrap();
    let broker_configs = described[0].as_ref().unwrap();
    let node = broker_configs.get("node.id").unwrap();
    assert_eq!(node.value.as_deref(), Some(node_id.to_string().as_str()));
    assert!(node.is_read_only);
    // rdkafka drops per-resource errors of DescribeConfigs: ask directly.
    let (code, entries) = describe_raw(&broker, "nope");
    assert_eq!(code, protocol::ErrorCode::UnknownTopicOrPartition.code());
    assert!(entries.is_empty());
    let (code, entries) = describe_raw(&broker, "cfg");
    assert_eq!(code, 0);
    let retention = entries.iter().find(|e| e.name.as_str() == "retention.ms").unwrap();
    assert_eq!(retention.config_type, 5, "LONG");
    assert!(retention.documentation.as_ref().is_some_and(|d| !d.is_empty()));
    assert_eq!(retention.synonyms[0].source, 1, "the topic override comes first");

    let alter = AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("max.message.bytes", "2000");
    let altered = block_on(admin.alter_configs([&alter], &options())).unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let described = block_on(admin.describe_configs([&ResourceSpecifier::Topic("cfg")], &options())).unwrap();
    let resource = described[0].as_ref().unwrap();
    assert_eq!(resource.get("max.message.bytes").unwrap().value.as_deref(), Some("2000"));
    assert_ne!(resource.get("retention.ms").unwrap().source, ConfigSource::DynamicTopic, "replaced, not merged");

    let producer: FutureProducer<DefaultClientContext, ThreadRuntime> =
        client_config(&broker).set("linger.ms", "0").create().unwrap();
    let big = vec![b'x'; 5000];
    let refused = block_on(producer.send(FutureRecord::<(), _>::to("cfg").partition(0).payload(&big), TIMEOUT));
    match refused {
        Err((rdkafka::error::KafkaError::MessageProduction(code), _)) => {
            assert_eq!(code, rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge)
        }
        other => panic!("a 5000-byte record must be refused under max.message.bytes 2000: {other:?}"),
    }
    let small = block_on(producer.send(FutureRecord::<(), _>::to("cfg").partition(1).payload("ok"), TIMEOUT));
    assert!(small.is_ok(), "{small:?}");

    // rdkafka reports every AlterConfigs resource as Ok, whatever the
    // broker answered: check the broker's answer directly.
    let mut config = messages::alter_configs_request::AlterableConfig::default();
    config.name = StrBytes::from_static_str("log.dirs");
    config.value = Some(StrBytes::from_static_str("/elsewhere"));
    let mut resource = messages::alter_configs_request::AlterConfigsResource::default();
    resource.resource_type = 4;
    resource.resource_name = StrBytes::from_string(node_id.to_string());
    resource.configs = vec![config];
    let mut request = messages::AlterConfigsRequest::default();
    request.resources = vec![resource];
    let ResponseKind::AlterConfigs(response) =
        raw_call(&broker, ApiKey::AlterConfigs, 2, RequestKind::AlterConfigs(request))
    else {
        panic!("not an AlterConfigs response")
    };
    let refused = &response.responses[0];
    assert_eq!(refused.error_code, protocol::ErrorCode::InvalidRequest.code(), "log.dirs is static");
    assert!(refused.error_message.as_ref().is_some_and(|m| m.contains("log.dirs")));

    // IncrementalAlterConfigs: SET one key, DELETE another, in one change.
    let ops = [("retention.ms", 0, Some("3600000")), ("max.message.bytes", 1, None)];
    let errors = incremental_alter_configs(&broker, 2, "cfg", &ops);
    assert_eq!(errors, (0, None));
    let described = block_on(admin.describe_configs([&ResourceSpecifier::Topic("cfg")], &options())).unwrap();
    let resource = described[0].as_ref().unwrap();
    assert_eq!(resource.get("retention.ms").unwrap().value.as_deref(), Some("3600000"));
    assert_ne!(resource.get("max.message.bytes").unwrap().source, ConfigSource::DynamicTopic);
    let big_again = block_on(producer.send(FutureRecord::<(), _>::to("cfg").partition(0).payload(&big), TIMEOUT));
    assert!(big_again.is_ok(), "back to the default limit: {big_again:?}");
    let errors = incremental_alter_configs(&broker, 2, "cfg", &[("retention.ms", 2, Some("1"))]);
    assert_eq!(errors.0, protocol::ErrorCode::InvalidConfig.code(), "{errors:?}");
}

/// DescribeConfigs v4 of one topic with synonyms and documentation.
fn describe_raw(
    broker: &Broker,
    topic: &str,
) -> (i16, Vec<messages::describe_configs_response::DescribeConfigsResourceResult>) {
    let mut resource = messages::describe_configs_request::DescribeConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_string(topic.to_owned());
    resource.configuration_keys = None;
    let mut request = messages::DescribeConfigsRequest::default();
    request.resources = vec![resource];
    request.include_synonyms = true;
    request.include_documentation = true;
    match raw_call(broker, ApiKey::DescribeConfigs, 4, RequestKind::DescribeConfigs(request)) {
        ResponseKind::DescribeConfigs(mut response) => {
            let result = response.results.remove(0);
            (result.error_code, result.configs)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn delete_records_moves_the_low_watermark_and_survives_a_restart() {
    // Proves DeleteRecords answers the new low watermark, consumers from the
    // beginning start there, an offset past the high watermark is refused,
    // and the new start is still there after a restart.
    let mut broker = Broker::start();
    create_topic(&broker, "trim", 1, &[]);
    produce_all(&producer(&broker, &[("acks", "all")]), "trim", Some(0), &records(100));
    let admin = admin(&broker);
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("trim", 0, Offset::Offset(40)).unwrap();
    let result = block_on(admin.delete_records(&offsets, &options())).unwrap();
    let element = result.find_partition("trim", 0).unwrap();
    assert!(element.error().is_ok(), "{:?}", element.error());
    assert_eq!(element.offset(), Offset::Offset(40));
    let consumer = consumer(&broker, &[]);
    assert_eq!(consumer.fetch_watermarks("trim", 0, TIMEOUT).unwrap(), (40, 100));
    let got = consume(&consumer, "trim", &[0], Offset::Beginning, 60, TIMEOUT);
    assert_eq!(got[0].offset, 40);
    assert_eq!(got[0].value, b"value-40");

    let mut beyond = TopicPartitionList::new();
    beyond.add_partition_offset("trim", 0, Offset::Offset(500)).unwrap();
    let result = block_on(admin.delete_records(&beyond, &options()));
    let refused = match &result {
        Err(_) => true,
        Ok(list) => list.find_partition("trim", 0).unwrap().error().is_err(),
    };
    assert!(refused, "an offset past the high watermark is OFFSET_OUT_OF_RANGE: {result:?}");

    drop(consumer);
    drop(admin);
    assert!(broker.stop(), "clean shutdown");
    broker.restart();
    let consumer = common::consumer(&broker, &[]);
    assert_eq!(consumer.fetch_watermarks("trim", 0, TIMEOUT).unwrap(), (40, 100), "after a restart");
    let got = consume(&consumer, "trim", &[0], Offset::Beginning, 60, TIMEOUT);
    assert_eq!(got[0].offset, 40);
}

#[test]
fn cluster_topic_partitions_leader_epochs_and_log_dirs_over_the_raw_protocol() {
    // Proves DescribeCluster names this broker as broker and controller;
    // DescribeTopicPartitions pages by its limit and resumes at the cursor;
    // OffsetForLeaderEpoch ends epoch 0 at the log end and leaves other
    // epochs undefined; DescribeLogDirs reports the data dir, partition
    // sizes and disk space.
    let broker = Broker::start();
    create_topic(&broker, "paged", 3, &[]);
    create_topic(&broker, "sized", 1, &[]);
    produce_all(&producer(&broker, &[("acks", "all")]), "sized", Some(0), &records(25));

    let mut request = messages::DescribeClusterRequest::default();
    request.endpoint_type = 1;
    let ResponseKind::DescribeCluster(cluster) =
        raw_call(&broker, ApiKey::DescribeCluster, 2, RequestKind::DescribeCluster(request))
    else {
        panic!("not a DescribeCluster response")
    };
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].port, i32::from(broker.port));
    assert_eq!(cluster.controller_id, cluster.brokers[0].broker_id);
    assert!(!cluster.cluster_id.is_empty());

    let mut request = messages::DescribeTopicPartitionsRequest::default();
    request.response_partition_limit = 2;
    let ResponseKind::DescribeTopicPartitions(first) =
        raw_call(&broker, ApiKey::DescribeTopicPartitions, 0, RequestKind::DescribeTopicPartitions(request.clone()))
    else {
        panic!("not a DescribeTopicPartitions response")
    };
    assert_eq!(first.topics.len(), 1);
    assert_eq!(first.topics[0].name.as_ref().unwrap().as_str(), "paged");
    assert_eq!(first.topics[0].partitions.len(), 2);
    let cursor = first.next_cursor.expect("more partitions follow");
    assert_eq!((cursor.topic_name.as_str(), cursor.partition_index), ("paged", 2));
    let mut next = messages::describe_topic_partitions_request::Cursor::default();
    next.topic_name = cursor.topic_name.clone();
    next.partition_index = cursor.partition_index;
    request.cursor = Some(next);
    let ResponseKind::DescribeTopicPartitions(second) =
        raw_call(&broker, ApiKey::DescribeTopicPartitions, 0, RequestKind::DescribeTopicPartitions(request))
    else {
        panic!("not a DescribeTopicPartitions response")
    };
    let seen: Vec<(String, Vec<i32>)> = second
        .topics
        .iter()
        .map(|t| (t.name.as_ref().unwrap().to_string(), t.partitions.iter().map(|p| p.partition_index).collect()))
        .collect();
    assert_eq!(seen, vec![("paged".to_string(), vec![2]), ("sized".to_string(), vec![0])]);
    assert!(second.next_cursor.is_none());

    let epoch_answer = |epoch: i32| {
        use messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
        let mut partition = OffsetForLeaderPartition::default();
        partition.partition = 0;
        partition.current_leader_epoch = -1;
        partition.leader_epoch = epoch;
        let mut topic = OffsetForLeaderTopic::default();
        topic.topic = topic_name("sized");
        topic.partitions = vec![partition];
        let mut request = messages::OffsetForLeaderEpochRequest::default();
        request.replica_id = messages::BrokerId(-1);
        request.topics = vec![topic];
        let ResponseKind::OffsetForLeaderEpoch(response) =
            raw_call(&broker, ApiKey::OffsetForLeaderEpoch, 4, RequestKind::OffsetForLeaderEpoch(request))
        else {
            panic!("not an OffsetForLeaderEpoch response")
        };
        let answer = &response.topics[0].partitions[0];
        (answer.error_code, answer.leader_epoch, answer.end_offset)
    };
    assert_eq!(epoch_answer(0), (0, 0, 25));
    assert_eq!(epoch_answer(3), (0, -1, -1));

    let ResponseKind::DescribeLogDirs(dirs) = raw_call(
        &broker,
        ApiKey::DescribeLogDirs,
        4,
        RequestKind::DescribeLogDirs({
            let mut request = messages::DescribeLogDirsRequest::default();
            request.topics = None; // null: every partition
            request
        }),
    ) else {
        panic!("not a DescribeLogDirs response")
    };
    assert_eq!(dirs.results.len(), 1);
    let dir = &dirs.results[0];
    assert_eq!(dir.error_code, 0);
    assert!(dir.total_bytes > 0 && dir.usable_bytes >= 0, "{} {}", dir.total_bytes, dir.usable_bytes);
    let sized = dir.topics.iter().find(|t| t.name.as_str() == "sized").expect("the topic is listed");
    assert!(sized.partitions[0].partition_size > 0);
    assert_eq!(dir.topics.iter().find(|t| t.name.as_str() == "paged").unwrap().partitions.len(), 3);
}
