//! End-to-end tests of dynamic broker configs against the real `stele`
//! binary: Kafka's cluster-wide default (BROKER resource ``) and per-broker
//! values (BROKER resource `<node id>`) for the broker-level names of topic
//! configs, set with IncrementalAlterConfigs (raw protocol) and AlterConfigs
//! (rdkafka), described with DescribeConfigs, applied to running partitions
//! and kept across a restart.

mod common;

use std::time::Duration;

use common::*;
use futures::executor::block_on;
use protocol::messages::{self, ApiKey, RequestKind, ResponseKind};
use protocol::{ErrorCode, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TIMEOUT: Duration = Duration::from_secs(30);
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(TIMEOUT)).operation_timeout(Some(TIMEOUT))
}

/// One described entry: (value, source, synonym sources in order).
type Described = (String, i8, Vec<i8>);

/// DescribeConfigs v4 with synonyms of one resource: name → entry.
fn describe(broker: &Broker, resource_type: i8, name: &str) -> Vec<(String, Described)> {
    let mut resource = messages::describe_configs_request::DescribeConfigsResource::default();
    resource.resource_type = resource_type;
    resource.resource_name = StrBytes::from_string(name.to_owned());
    resource.configuration_keys = None;
    let mut request = messages::DescribeConfigsRequest::default();
    request.resources = vec![resource];
    request.include_synonyms = true;
    match raw_call(broker, ApiKey::DescribeConfigs, 4, RequestKind::DescribeConfigs(request)) {
        ResponseKind::DescribeConfigs(mut response) => {
            let result = response.results.remove(0);
            assert_eq!(result.error_code, 0, "{:?}", result.error_message);
            result
                .configs
                .into_iter()
                .map(|entry| {
                    let synonyms = entry.synonyms.iter().map(|s| s.source).collect();
                    let value = entry.value.map(|v| v.to_string()).unwrap_or_default();
                    (entry.name.to_string(), (value, entry.config_source, synonyms))
                })
                .collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn described(entries: &[(String, Described)], name: &str) -> Option<Described> {
    entries.iter().find(|(entry, _)| entry == name).map(|(_, described)| described.clone())
}

/// Produces one record of `size` bytes to partition 0 and returns the
/// delivery error, if any.
fn produce_one(broker: &Broker, topic: &str, size: usize) -> Option<rdkafka::types::RDKafkaErrorCode> {
    let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let producer: BaseProducer<RecordFailure> = client_config(broker)
        .set("linger.ms", "0")
        .set("message.max.bytes", "10000000")
        .create_with_context(RecordFailure(failed.clone()))
        .unwrap();
    let payload = vec![b'x'; size];
    producer.send(BaseRecord::<(), _>::to(topic).partition(0).payload(&payload)).map_err(|(e, _)| e).unwrap();
    producer.flush(TIMEOUT).unwrap();
    let code = *failed.lock().unwrap();
    code
}

struct RecordFailure(std::sync::Arc<std::sync::Mutex<Option<rdkafka::types::RDKafkaErrorCode>>>);

impl rdkafka::ClientContext for RecordFailure {}

impl rdkafka::producer::ProducerContext for RecordFailure {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((rdkafka::error::KafkaError::MessageProduction(code), _)) = result {
            *self.0.lock().unwrap() = Some(*code);
        }
    }
}

/// A configuration file whose [topics] table sets `log.retention.ms`, so
/// that DELETE can be seen to return to the file's value.
#[test]
fn dynamic_broker_defaults_apply_to_topics_and_survive_a_restart() {
    // Proves the cluster-wide default (BROKER ``) of message.max.bytes and
    // log.retention.ms: described with DYNAMIC_DEFAULT_BROKER_CONFIG on the
    // broker and on a topic without an override, enforced at once on an
    // existing topic (a large record is MESSAGE_TOO_LARGE), ignored by a
    // topic that overrides the key; a per-broker value wins over it; all of
    // it is still there after a restart; DELETE returns to the file's value.
    let (_config_dir, config_path) = config_file("[topics]\n\"log.retention.ms\" = 86400000\n");
    let mut broker = Broker::start_with(2, &["--config", &config_path]);
    create_topic(&broker, "plain", 1, &[]);
    create_topic(&broker, "own", 1, &[("max.message.bytes", "2000000"), ("retention.ms", "1000")]);
    assert_eq!(produce_one(&broker, "plain", 5000), None, "the built-in limit is 1 MiB");

    let set = [("message.max.bytes", 0, Some("2000")), ("log.retention.ms", 0, Some("3600000"))];
    assert_eq!(incremental_alter_configs(&broker, RESOURCE_BROKER, "", &set), (0, None));
    let check_dynamic_default = |broker: &Broker| {
        let cluster = describe(broker, RESOURCE_BROKER, "");
        assert_eq!(cluster.len(), 2, "only what is set on the default resource: {cluster:?}");
        assert_eq!(described(&cluster, "message.max.bytes"), Some(("2000".into(), 7, vec![7])));
        let node = describe(broker, RESOURCE_BROKER, "1");
        assert_eq!(described(&node, "log.retention.ms"), Some(("3600000".into(), 7, vec![7, 4, 5])));
        let plain = describe(broker, RESOURCE_TOPIC, "plain");
        assert_eq!(described(&plain, "max.message.bytes"), Some(("2000".into(), 7, vec![7, 5])));
        assert_eq!(described(&plain, "retention.ms"), Some(("3600000".into(), 7, vec![7, 4, 5])));
        let own = describe(broker, RESOURCE_TOPIC, "own");
        assert_eq!(described(&own, "max.message.bytes"), Some(("2000000".into(), 1, vec![1, 7, 5])));
        assert_eq!(produce_one(broker, "plain", 5000), Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge));
        assert_eq!(produce_one(broker, "plain", 100), None);
        assert_eq!(produce_one(broker, "own", 5000), None, "the topic's own override is unaffected");
    };
    check_dynamic_default(&broker);

    // A per-broker value (BROKER `1`) wins over the cluster default.
    assert_eq!(
        incremental_alter_configs(&broker, RESOURCE_BROKER, "1", &[("message.max.bytes", 0, Some("8000"))]),
        (0, None)
    );
    let plain = describe(&broker, RESOURCE_TOPIC, "plain");
    assert_eq!(described(&plain, "max.message.bytes"), Some(("8000".into(), 2, vec![2, 7, 5])));
    assert_eq!(produce_one(&broker, "plain", 5000), None);
    assert_eq!(incremental_alter_configs(&broker, RESOURCE_BROKER, "1", &[("message.max.bytes", 1, None)]), (0, None));

    assert!(broker.stop(), "clean shutdown");
    broker.restart();
    check_dynamic_default(&broker);

    // DELETE: back to the file's value (STATIC_BROKER_CONFIG) and the
    // built-in default, on the broker and on running partitions.
    let delete = [("message.max.bytes", 1, None), ("log.retention.ms", 1, None)];
    assert_eq!(incremental_alter_configs(&broker, RESOURCE_BROKER, "", &delete), (0, None));
    assert!(describe(&broker, RESOURCE_BROKER, "").is_empty());
    let plain = describe(&broker, RESOURCE_TOPIC, "plain");
    assert_eq!(described(&plain, "retention.ms"), Some(("86400000".into(), 4, vec![4, 5])));
    assert_eq!(described(&plain, "max.message.bytes"), Some(("1048588".into(), 5, vec![5])));
    assert_eq!(produce_one(&broker, "plain", 5000), None);
    assert!(broker.stop(), "clean shutdown");
    broker.restart();
    assert!(describe(&broker, RESOURCE_BROKER, "").is_empty(), "the deletion is durable too");
    assert_eq!(produce_one(&broker, "plain", 5000), None);
}

#[test]
fn broker_config_changes_are_validated_like_topic_configs() {
    // Proves bad dynamic values are INVALID_CONFIG naming the broker key,
    // static settings INVALID_REQUEST naming the key, other broker ids
    // INVALID_REQUEST, validate-only changes nothing, and rdkafka's
    // AlterConfigs on a Broker resource replaces that resource's set.
    let broker = Broker::start();
    let (code, message) =
        incremental_alter_configs(&broker, RESOURCE_BROKER, "", &[("log.retention.ms", 0, Some("-2"))]);
    assert_eq!(code, ErrorCode::InvalidConfig.code());
    assert!(message.as_deref().is_some_and(|m| m.contains("log.retention.ms") && m.contains("-2")), "{message:?}");
    let (code, message) = incremental_alter_configs(&broker, RESOURCE_BROKER, "1", &[("node.id", 0, Some("5"))]);
    assert_eq!(code, ErrorCode::InvalidRequest.code());
    assert!(message.as_deref().is_some_and(|m| m.contains("node.id")), "{message:?}");
    let (code, _) = incremental_alter_configs(&broker, RESOURCE_BROKER, "2", &[("log.retention.ms", 0, Some("1"))]);
    assert_eq!(code, ErrorCode::InvalidRequest.code(), "another broker id");
    let (code, message) = incremental_alter_configs(&broker, RESOURCE_BROKER, "", &[("retention.ms", 0, Some("1"))]);
    assert_eq!(code, ErrorCode::InvalidConfig.code(), "topic-level names are not broker configs");
    assert!(message.as_deref().is_some_and(|m| m.contains("retention.ms")), "{message:?}");
    assert!(describe(&broker, RESOURCE_BROKER, "").is_empty(), "nothing was stored");

    let admin: AdminClient<DefaultClientContext> = client_config(&broker).create().unwrap();
    let alter = AlterConfig::new(ResourceSpecifier::Broker(1))
        .set("log.retention.ms", "7200000")
        .set("log.segment.bytes", "1048576");
    let altered = block_on(admin.alter_configs([&alter], &options())).unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let answer = block_on(admin.describe_configs([&ResourceSpecifier::Broker(1)], &options())).unwrap();
    let entries = answer[0].as_ref().unwrap();
    let retention = entries.get("log.retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("7200000"));
    assert_eq!(retention.source, ConfigSource::DynamicBroker);
    assert!(!retention.is_read_only);
    assert!(entries.get("node.id").unwrap().is_read_only);
    create_topic(&broker, "fresh", 1, &[]);
    let fresh = describe(&broker, RESOURCE_TOPIC, "fresh");
    assert_eq!(described(&fresh, "segment.bytes"), Some(("1048576".into(), 2, vec![2, 5])));

    // AlterConfigs replaces the resource's whole set: keys left out return.
    let alter = AlterConfig::new(ResourceSpecifier::Broker(1)).set("log.retention.ms", "7200000");
    block_on(admin.alter_configs([&alter], &options())).unwrap()[0].as_ref().unwrap();
    let fresh = describe(&broker, RESOURCE_TOPIC, "fresh");
    assert_eq!(described(&fresh, "segment.bytes"), Some(("1073741824".into(), 5, vec![5])));
    assert_eq!(described(&fresh, "retention.ms"), Some(("7200000".into(), 2, vec![2, 5])));
}
