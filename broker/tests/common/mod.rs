//! Helpers for the end-to-end tests: the real `stele` binary started on a
//! free loopback port with a temporary data directory, and librdkafka
//! clients (the `rdkafka` crate) pointed at it.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

/// A running broker. Dropping it kills the process.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    shards: usize,
    extra_args: Vec<String>,
}

/// A free port below the kernel's ephemeral range (32768+). Ports the
/// kernel hands out for port 0 could be given to a parallel test while a
/// broker is down for a restart; these are only handed out here, in order.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ =
        NEXT.compare_exchange(0, 20_000 + (std::process::id() % 600) as u16 * 20, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_768, "ran out of test ports");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Broker {
    /// Starts a broker with 2 shards (so that requests cross shards).
    pub fn start() -> Broker {
        Broker::start_with(2, &[])
    }

    pub fn start_with(shards: usize, extra_args: &[&str]) -> Broker {
        Broker::start_prepared(shards, extra_args, |_| {})
    }

    /// Starts a broker after `prepare` has put files into its (not yet
    /// existing) data directory's path: a data directory an older version
    /// left behind, say.
    pub fn start_prepared(shards: usize, extra_args: &[&str], prepare: impl FnOnce(&Path)) -> Broker {
        let temp = tempfile::Builder::new().prefix("stele-e2e-").tempdir_in(test_tmp_dir()).unwrap();
        let mut broker = Broker {
            child: None,
            port: free_port(),
            data_dir: temp.path().join("data"),
            _temp: Some(temp),
            shards,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        prepare(&broker.data_dir);
        broker.spawn();
        broker
    }

    /// The shard count of the next [`Broker::restart`].
    pub fn set_shards(&mut self, shards: usize) {
        self.shards = shards;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the broker process, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.parent().unwrap().join("stele.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        // Earlier runs' lines stay in the log; readiness is judged on this run's.
        let log_start = self.log().len();
        let child = Command::new(env!("CARGO_BIN_EXE_stele"))
            .arg("--listen")
            .arg(self.bootstrap())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--shards")
            .arg(self.shards.to_string())
            .args(&self.extra_args)
            .args(self.prefault_args())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("stele binary starts");
        self.child = Some(child);
        self.wait_ready(log_start);
    }

    /// Test brokers skip the startup prefault (a second and 320 MiB of
    /// resident memory per shard) unless the test asks for it.
    fn prefault_args(&self) -> &'static [&'static str] {
        if self.extra_args.iter().any(|arg| arg.starts_with("--prefault-memory")) {
            &[]
        } else {
            &["--prefault-memory", "false"]
        }
    }

    fn wait_ready(&mut self, log_start: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("stele exited during startup with {status}:\n{}", self.log());
            }
            let ready = self.log().get(log_start..).is_some_and(|run| run.contains("ready: accepting Kafka clients"));
            if ready && TcpStream::connect(self.bootstrap()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("stele did not become ready in 60 s:\n{}", self.log());
    }

    /// SIGTERM, then waits for exit; returns whether it exited with status 0.
    pub fn stop(&mut self) -> bool {
        let mut child = self.child.take().expect("running");
        rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("stele did not stop within 60 s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9: no flush, no clean shutdown marker.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Temporary directories on the disk the tests run on (not tmpfs), so that
/// O_DIRECT is really exercised.
pub fn test_tmp_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn client_config(broker: &Broker) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", broker.bootstrap()).set("broker.address.family", "v4");
    config
}

/// Records delivery failures, which librdkafka reports only through the
/// producer context: a test that ignored them could not fail.
#[derive(Default)]
pub struct DeliveryTracker {
    failures: std::sync::Mutex<Vec<String>>,
}

impl rdkafka::ClientContext for DeliveryTracker {}

impl rdkafka::producer::ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((err, message)) = result {
            let what = format!("{}[{}]: {err}", message.topic(), message.partition());
            self.failures.lock().unwrap().push(what);
        }
    }
}

pub type TestProducer = BaseProducer<DeliveryTracker>;

impl DeliveryTracker {
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }
}

pub fn producer(broker: &Broker, settings: &[(&str, &str)]) -> TestProducer {
    let mut config = client_config(broker);
    config.set("linger.ms", "5").set("message.timeout.ms", "60000");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config.create_with_context(DeliveryTracker::default()).expect("producer")
}

/// Produces `records` (key, value) to `topic`/`partition` and waits until
/// every one is acknowledged; panics on a delivery error.
pub fn produce_all(
    producer: &TestProducer,
    topic: &str,
    partition: Option<i32>,
    records: &[(Option<Vec<u8>>, Vec<u8>)],
) {
    for (key, value) in records {
        let mut record = BaseRecord::<Vec<u8>, Vec<u8>>::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        let mut pending = record;
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    producer.poll(Duration::from_millis(10));
                    pending = back;
                }
                Err((err, _)) => panic!("send failed: {err}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("all records acknowledged");
    let failures = producer.context().failures();
    assert!(failures.is_empty(), "delivery failed: {failures:?}");
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp: Option<i64>,
}

impl Consumed {
    fn of(message: &rdkafka::message::BorrowedMessage<'_>) -> Consumed {
        Consumed {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().unwrap_or_default().to_vec(),
            timestamp: message.timestamp().to_millis(),
        }
    }
}

pub fn consumer(broker: &Broker, settings: &[(&str, &str)]) -> BaseConsumer {
    let mut config = client_config(broker);
    config
        .set("group.id", "stele-e2e")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config.create().expect("consumer")
}

/// Reads `count` records from the given partitions starting at `offset`
/// (an rdkafka Offset), or panics after `timeout`.
pub fn consume(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    offset: rdkafka::Offset,
    count: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment.add_partition_offset(topic, *partition, offset).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < count {
        assert!(Instant::now() < deadline, "consumed {} of {count} records before the timeout: {out:?}", out.len());
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(err)) => panic!("consume error: {err}"),
            Some(Ok(message)) => out.push(Consumed::of(&message)),
        }
    }
    out
}

/// Polls for `quiet` and returns anything that arrives (to prove no extra
/// records exist).
pub fn drain(consumer: &BaseConsumer, quiet: Duration) -> Vec<Consumed> {
    let mut out = Vec::new();
    let deadline = Instant::now() + quiet;
    while Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            out.push(Consumed::of(&message));
        }
    }
    out
}

/// Creates a topic with the admin client and waits for the answer.
pub fn create_topic(broker: &Broker, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = client_config(broker).create().unwrap();
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = futures::executor::block_on(admin.create_topics([&topic], &AdminOptions::new())).unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
    }
}

/// Sends one request on a fresh connection with the protocol crate's
/// encoder and returns the decoded response body: for checks that a client
/// library cannot express (exact versions, raw batches).
pub fn raw_call(
    broker: &Broker,
    api_key: protocol::messages::ApiKey,
    version: i16,
    body: protocol::messages::RequestKind,
) -> protocol::messages::ResponseKind {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(broker.bootstrap()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut header = protocol::messages::RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.correlation_id = 7;
    header.client_id = Some(protocol::StrBytes::from_static_str("stele-e2e"));
    let mut out = bytes::BytesMut::new();
    protocol::encode_request(&mut out, &header, &body).unwrap();
    stream.write_all(&out).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut frame = vec![0; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame).unwrap();
    let (correlation_id, body) = protocol::decode_response(bytes::Bytes::from(frame), api_key, version).unwrap();
    assert_eq!(correlation_id, 7);
    body
}

/// A config file holding `text`, in a directory the caller keeps alive.
pub fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new().prefix("stele-config-").tempdir_in(test_tmp_dir()).unwrap();
    let path = dir.path().join("stele.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

/// IncrementalAlterConfigs (v1) on one resource (2 topic, 4 broker) with
/// (key, operation, value) triples; returns its (error code, message).
pub fn incremental_alter_configs(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> (i16, Option<String>) {
    use protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use protocol::messages::{ApiKey, IncrementalAlterConfigsRequest, RequestKind, ResponseKind};
    use protocol::StrBytes;
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = resource_type;
    resource.resource_name = StrBytes::from_string(name.to_owned());
    for (key, operation, value) in ops {
        let mut config = AlterableConfig::default();
        config.name = StrBytes::from_string(key.to_string());
        config.config_operation = *operation;
        config.value = value.map(|v| StrBytes::from_string(v.to_owned()));
        resource.configs.push(config);
    }
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    match raw_call(broker, ApiKey::IncrementalAlterConfigs, 1, RequestKind::IncrementalAlterConfigs(request)) {
        ResponseKind::IncrementalAlterConfigs(mut response) => {
            let answer = response.responses.remove(0);
            (answer.error_code, answer.error_message.map(|m| m.to_string()))
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A simple commit (generation -1, no member) of `offsets` (partition,
/// offset, metadata) to `topic`; returns each partition's error code.
pub fn simple_commit(broker: &Broker, group: &str, topic: &str, offsets: &[(i32, i64, Option<&str>)]) -> Vec<i16> {
    use protocol::messages::*;
    use protocol::StrBytes;
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = GroupId(StrBytes::from_string(group.to_owned()));
    commit.generation_id_or_member_epoch = -1;
    let mut wanted = offset_commit_request::OffsetCommitRequestTopic::default();
    wanted.name = TopicName(StrBytes::from_string(topic.to_owned()));
    for (partition, offset, metadata) in offsets {
        let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = *offset;
        p.committed_metadata = metadata.map(|m| StrBytes::from_string(m.to_owned()));
        wanted.partitions.push(p);
    }
    commit.topics = vec![wanted];
    match raw_call(broker, ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit)) {
        ResponseKind::OffsetCommit(r) => r.topics[0].partitions.iter().map(|p| p.error_code).collect(),
        other => panic!("{other:?}"),
    }
}

/// `group`'s committed (offset, metadata) of each of `partitions` of
/// `topic`, by OffsetFetch v1.
pub fn committed(broker: &Broker, group: &str, topic: &str, partitions: &[i32]) -> Vec<(i64, Option<String>)> {
    use protocol::messages::*;
    use protocol::StrBytes;
    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = GroupId(StrBytes::from_string(group.to_owned()));
    let mut wanted = offset_fetch_request::OffsetFetchRequestTopic::default();
    wanted.name = TopicName(StrBytes::from_string(topic.to_owned()));
    wanted.partition_indexes = partitions.to_vec();
    fetch.topics = Some(vec![wanted]);
    match raw_call(broker, ApiKey::OffsetFetch, 1, RequestKind::OffsetFetch(fetch)) {
        ResponseKind::OffsetFetch(r) => r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.committed_offset, p.metadata.as_ref().map(|m| m.to_string()).filter(|m| !m.is_empty())))
            .collect(),
        other => panic!("{other:?}"),
    }
}
