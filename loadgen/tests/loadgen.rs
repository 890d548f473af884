//! End-to-end tests: the real `stele` broker started on loopback, and the
//! `stele-loadgen` binary run against it with short workloads (a few
//! hundred records). They prove that every record produced is consumed
//! back, in every mode (acks, idempotence, compression, e2e, fixed rate),
//! and that the JSON result has the fields the docs promise. They assert
//! counts, never timings: the machine is shared.
//!
//! The commit workload is checked against the broker's own state: the
//! offsets read back with OffsetFetch (sent by this file's small raw
//! client, on the protocol crate's codecs) must be the last ones committed.
//!
//! The broker binary is `$STELE_BIN`, or `target/debug/stele` of this
//! workspace: `cargo test --workspace` builds it; alone, run
//! `cargo build -p stele-broker` first.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Broker {
    child: Child,
    bootstrap: String,
    dir: tempfile::TempDir,
}

fn stele_bin() -> PathBuf {
    let path = std::env::var_os("STELE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/stele"));
    assert!(path.exists(), "{} is missing: run `cargo build -p stele-broker` or set STELE_BIN", path.display());
    path
}

impl Broker {
    /// One shard, a free port chosen by the broker, data on the disk the
    /// tests run on (not tmpfs).
    fn start() -> Broker {
        let dir = tempfile::Builder::new().prefix("loadgen-e2e-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let log_path = dir.path().join("stele.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(stele_bin())
            .args(["--listen", "127.0.0.1:0", "--shards", "1", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("stele starts");
        let mut broker = Broker { child, bootstrap: String::new(), dir };
        broker.bootstrap = broker.wait_ready();
        broker
    }

    /// The listen address from the broker's "ready" line.
    fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("stele exited during startup with {status}:\n{}", self.log());
            }
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains("ready: accepting Kafka clients")) {
                let plain = strip_ansi(line);
                let listen = plain.split_whitespace().find_map(|w| w.strip_prefix("listen=")).expect("listen= field");
                return listen.to_owned();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("stele did not become ready in 60 s:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stele.log")).unwrap_or_default()
    }

    /// Runs loadgen with `args`, `--bootstrap` and `--json` added; returns
    /// the exit status, the output and the JSON result.
    fn loadgen(&self, args: &[&str]) -> (bool, String, Option<Value>) {
        let json = self.dir.path().join(format!("result-{}.json", fastrand_suffix()));
        let output = Command::new(env!("CARGO_BIN_EXE_stele-loadgen"))
            .args(args)
            .args(["--bootstrap", &self.bootstrap, "--quiet", "--json"])
            .arg(&json)
            .output()
            .expect("stele-loadgen runs");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let value = std::fs::read_to_string(&json).ok().map(|text| serde_json::from_str(&text).expect("valid JSON"));
        (output.status.success(), text, value)
    }

    /// Runs loadgen and insists that it succeeded.
    fn run(&self, args: &[&str]) -> Value {
        let (ok, text, json) = self.loadgen(args);
        assert!(ok, "stele-loadgen {args:?} failed:\n{text}\nbroker log:\n{}", self.log());
        json.expect("a JSON result")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn fastrand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn count(json: &Value, field: &str) -> u64 {
    json[field].as_u64().unwrap_or_else(|| panic!("{field} missing or not a count in {json:#}"))
}

/// The fields docs/benchmarks.md describes.
const RESULT_FIELDS: &[&str] = &[
    "workload",
    "driver",
    "topic",
    "partitionsPerTopic",
    "messageSize",
    "producersPerTopic",
    "consumersPerTopic",
    "durationSeconds",
    "messagesProduced",
    "bytesProduced",
    "messagesConsumed",
    "bytesConsumed",
    "publishErrors",
    "aggregatedPublishRate",
    "aggregatedPublishThroughputBytes",
    "aggregatedConsumeRate",
    "aggregatedConsumeThroughputBytes",
    "publishRate",
    "consumeRate",
    "publishLatency50pct",
    "publishLatency99pct",
    "endToEndLatency50pct",
    "endToEndLatency99pct",
    "aggregatedPublishLatencyAvg",
    "aggregatedPublishLatency50pct",
    "aggregatedPublishLatency75pct",
    "aggregatedPublishLatency95pct",
    "aggregatedPublishLatency99pct",
    "aggregatedPublishLatency999pct",
    "aggregatedPublishLatency9999pct",
    "aggregatedPublishLatencyMax",
    "aggregatedEndToEndLatencyAvg",
    "aggregatedEndToEndLatency50pct",
    "aggregatedEndToEndLatency99pct",
    "aggregatedEndToEndLatencyMax",
    "failures",
];

#[test]
fn produced_records_are_all_consumed_back_and_the_json_is_complete() {
    // Proves a produce run creates the topic, gets every record
    // acknowledged, and a consume run from the earliest offset reads
    // exactly those records; both JSON results carry every documented field.
    let broker = Broker::start();
    let produced =
        broker.run(&["produce", "--topic", "t", "--partitions", "3", "--records", "500", "--keys", "sequential"]);
    for field in RESULT_FIELDS {
        assert!(produced.get(field).is_some(), "produce result lacks {field}: {produced:#}");
    }
    assert_eq!(produced["workload"], "produce");
    assert_eq!(count(&produced, "messagesProduced"), 500);
    assert_eq!(count(&produced, "bytesProduced"), 500 * (1024 + 8), "value plus 8-byte key per record");
    assert_eq!(count(&produced, "publishErrors"), 0);
    assert_eq!(count(&produced, "partitionsPerTopic"), 3);
    assert!(produced["aggregatedPublishLatency99pct"].as_f64().is_some_and(|ms| ms > 0.0));
    let consumed = broker.run(&["consume", "--topic", "t", "--to-end"]);
    for field in RESULT_FIELDS {
        assert!(consumed.get(field).is_some(), "consume result lacks {field}: {consumed:#}");
    }
    assert_eq!(count(&consumed, "messagesConsumed"), 500);
    assert_eq!(count(&consumed, "bytesConsumed"), 500 * (1024 + 8));
}

#[test]
fn end_to_end_reads_every_record_and_measures_latency() {
    // Proves the e2e workload consumes exactly what it produced and
    // reports end-to-end latency from the stamped send times.
    let broker = Broker::start();
    let result =
        broker.run(&["e2e", "--topic", "e2e", "--partitions", "2", "--records", "400", "--record-size", "100"]);
    assert_eq!(count(&result, "messagesProduced"), 400);
    assert_eq!(count(&result, "messagesConsumed"), 400);
    assert!(result["aggregatedEndToEndLatency50pct"].as_f64().is_some_and(|ms| ms > 0.0), "{result:#}");
    assert!(result["aggregatedEndToEndLatencyMax"].as_f64() >= result["aggregatedEndToEndLatency50pct"].as_f64());
}

#[test]
fn fixed_rate_with_warmup_and_duration_consumes_everything() {
    // Proves the timed, rate-limited path (intended send times, warm-up
    // excluded from the totals) ends on its own and loses nothing.
    let broker = Broker::start();
    let result = broker.run(&[
        "e2e",
        "--topic",
        "rate",
        "--partitions",
        "4",
        "--rate",
        "400",
        "--duration",
        "1",
        "--warmup",
        "0.5",
        "--record-size",
        "64",
        "--keys",
        "random",
    ]);
    assert!(count(&result, "messagesProduced") > 0, "{result:#}");
    assert_eq!(result["failures"], Value::Array(vec![]));
}

#[test]
fn idempotent_producer_writes_each_record_once() {
    // Proves InitProducerId and per-partition sequences are accepted with
    // five requests in flight, and nothing is duplicated or lost.
    let broker = Broker::start();
    let produced = broker.run(&[
        "produce",
        "--topic",
        "idem",
        "--partitions",
        "4",
        "--records",
        "600",
        "--idempotent",
        "--in-flight",
        "5",
        "--keys",
        "random",
        "--batch-bytes",
        "2048",
    ]);
    assert_eq!(count(&produced, "messagesProduced"), 600);
    assert_eq!(count(&produced, "publishErrors"), 0);
    let consumed = broker.run(&["consume", "--topic", "idem", "--to-end"]);
    assert_eq!(count(&consumed, "messagesConsumed"), 600);
}

#[test]
fn every_codec_round_trips() {
    // Proves batches compressed with each codec are accepted by the broker
    // and inflated by the consumer, record for record.
    let broker = Broker::start();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        let produced = broker.run(&[
            "produce",
            "--topic",
            &topic,
            "--partitions",
            "2",
            "--records",
            "200",
            "--compression",
            codec,
        ]);
        assert_eq!(count(&produced, "messagesProduced"), 200, "{codec}");
        let consumed = broker.run(&["consume", "--topic", &topic, "--to-end"]);
        assert_eq!(count(&consumed, "messagesConsumed"), 200, "{codec}");
    }
}

#[test]
fn acks_zero_and_one_deliver_every_record() {
    // Proves the acks=0 (no answers) and acks=1 paths send every record;
    // the consumer waits for them by count, since with acks below all the
    // producer finishes before the records are durable and visible.
    let broker = Broker::start();
    for acks in ["0", "1"] {
        let topic = format!("acks-{acks}");
        let produced =
            broker.run(&["produce", "--topic", &topic, "--partitions", "2", "--records", "300", "--acks", acks]);
        assert_eq!(count(&produced, "messagesProduced"), 300, "acks={acks}");
        let consumed = broker.run(&["consume", "--topic", &topic, "--records", "300", "--duration", "60"]);
        assert_eq!(count(&consumed, "messagesConsumed"), 300, "acks={acks}");
    }
}

/// The latest offset of each of `partitions` at an isolation level (0:
/// read_uncommitted, the high watermark; 1: read_committed, the LSO).
fn latest_offsets(bootstrap: &str, topic: &str, partitions: &[i32], isolation_level: i8) -> Vec<i64> {
    use protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest, RequestKind, ResponseKind, TopicName};
    let mut wanted = ListOffsetsTopic::default();
    wanted.name = TopicName(protocol::StrBytes::from_string(topic.to_owned()));
    wanted.partitions = partitions
        .iter()
        .map(|&index| {
            let mut partition = ListOffsetsPartition::default();
            partition.partition_index = index;
            partition.current_leader_epoch = -1;
            partition.timestamp = -1;
            partition
        })
        .collect();
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.isolation_level = isolation_level;
    request.topics = vec![wanted];
    let ResponseKind::ListOffsets(response) =
        raw_call(bootstrap, ApiKey::ListOffsets, 5, RequestKind::ListOffsets(request))
    else {
        panic!("ListOffsets answered with another API");
    };
    let mut answered: Vec<(i32, i64)> =
        response.topics[0].partitions.iter().map(|p| (p.partition_index, p.offset)).collect();
    answered.sort_unstable();
    answered.into_iter().map(|(_, offset)| offset).collect()
}

#[test]
fn transactional_producers_commit_every_transaction() {
    // Proves --transaction-records: two transactional producers get every
    // record acknowledged in 100-record transactions that all commit (the
    // JSON counts them), nothing is left open (each partition's LSO is its
    // high watermark), the logs hold the COMMIT markers beside the records,
    // and a consumer reads exactly the records back.
    let broker = Broker::start();
    let produced = broker.run(&[
        "produce",
        "--topic",
        "txn",
        "--partitions",
        "4",
        "--records",
        "1000",
        "--producers",
        "2",
        "--transaction-records",
        "100",
        "--keys",
        "random",
        "--batch-bytes",
        "4096",
    ]);
    assert_eq!(count(&produced, "messagesProduced"), 1000);
    assert_eq!(count(&produced, "publishErrors"), 0);
    assert_eq!(count(&produced, "transactions"), 10, "{produced:#}");
    assert_eq!(count(&produced, "transactionsAborted"), 0);
    assert_eq!(count(&produced, "transactionRecords"), 100);
    assert!(produced["aggregatedTransactionLatency50pct"].as_f64().is_some_and(|ms| ms > 0.0), "{produced:#}");
    let partitions = [0, 1, 2, 3];
    let high_watermarks = latest_offsets(&broker.bootstrap, "txn", &partitions, 0);
    assert_eq!(latest_offsets(&broker.bootstrap, "txn", &partitions, 1), high_watermarks, "no open transaction");
    let markers = high_watermarks.iter().sum::<i64>() - 1000;
    // Random keys spread each transaction over all four partitions.
    assert!((10..=40).contains(&markers), "{markers} markers for 10 transactions over 4 partitions");
    let consumed = broker.run(&["consume", "--topic", "txn", "--to-end"]);
    assert_eq!(count(&consumed, "messagesConsumed"), 1000, "control batches are not records");
}

#[test]
fn share_consumers_take_every_record_once_and_accept_it() {
    // Proves the share-consume workload: three share consumers of one
    // partition join the share group, start from the earliest offset (the
    // group config loadgen sets), and together take the 600 records, each
    // once; every record was accepted, so the same group finds nothing left
    // on a second run, while a new group reads them all again.
    let broker = Broker::start();
    let produced = broker.run(&["produce", "--topic", "queue", "--partitions", "1", "--records", "600"]);
    assert_eq!(count(&produced, "messagesProduced"), 600);
    let shared = broker.run(&[
        "share-consume",
        "--topic",
        "queue",
        "--group",
        "q1",
        "--consumers",
        "3",
        "--records",
        "600",
        "--fetch-max-wait-ms",
        "100",
    ]);
    assert_eq!(shared["workload"], "share-consume");
    assert_eq!(count(&shared, "messagesConsumed"), 600, "{shared:#}");
    assert_eq!(count(&shared, "bytesConsumed"), 600 * 1024);
    let again = broker.run(&[
        "share-consume",
        "--topic",
        "queue",
        "--group",
        "q1",
        "--duration",
        "1",
        "--fetch-max-wait-ms",
        "100",
    ]);
    assert_eq!(count(&again, "messagesConsumed"), 0, "all 600 were accepted: {again:#}");
    let fresh = broker.run(&["share-consume", "--topic", "queue", "--group", "q2", "--records", "600"]);
    assert_eq!(count(&fresh, "messagesConsumed"), 600);
}

#[test]
fn contradictory_flags_are_refused_before_connecting() {
    // Proves idempotence or transactions without acks=all are usage errors (exit 2).
    let broker = Broker::start();
    for (flags, message) in [
        (&["--idempotent"][..], "--idempotent needs --acks all"),
        (&["--transaction-records", "100"][..], "--transaction-records needs --acks all"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_stele-loadgen"))
            .args(["produce", "--acks", "1", "--bootstrap", &broker.bootstrap])
            .args(flags)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stderr).contains(message), "{flags:?}");
    }
}

/// The fields the commit workload adds to the JSON result.
const COMMIT_FIELDS: &[&str] = &[
    "group",
    "committers",
    "commitPartitions",
    "inFlight",
    "commits",
    "commitOffsets",
    "aggregatedCommitRate",
    "aggregatedCommitOffsetRate",
    "commitRate",
    "commitOffsetRate",
    "commitLatency50pct",
    "commitLatency99pct",
    "aggregatedCommitLatencyAvg",
    "aggregatedCommitLatency50pct",
    "aggregatedCommitLatency99pct",
    "aggregatedCommitLatencyMax",
    "lastCommittedOffsets",
];

/// Sends one request on a fresh connection and returns the decoded answer.
fn raw_call(
    bootstrap: &str,
    api_key: protocol::messages::ApiKey,
    version: i16,
    body: protocol::messages::RequestKind,
) -> protocol::messages::ResponseKind {
    let mut stream = TcpStream::connect(bootstrap).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut header = protocol::messages::RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.correlation_id = 11;
    header.client_id = Some(protocol::StrBytes::from_static_str("loadgen-test"));
    let mut out = bytes::BytesMut::new();
    protocol::encode_request(&mut out, &header, &body).unwrap();
    stream.write_all(&out).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut frame = vec![0; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame).unwrap();
    let (correlation_id, body) = protocol::decode_response(bytes::Bytes::from(frame), api_key, version).unwrap();
    assert_eq!(correlation_id, 11);
    body
}

/// The committed offset of each of `partitions` of `topic` for `group`
/// (OffsetFetch v7); -1 where none is committed.
fn offset_fetch(bootstrap: &str, group: &str, topic: &str, partitions: &[i32]) -> BTreeMap<i32, i64> {
    use protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, RequestKind, ResponseKind, TopicName};
    use protocol::StrBytes;
    let mut wanted = OffsetFetchRequestTopic::default();
    wanted.name = TopicName(StrBytes::from_string(topic.to_owned()));
    wanted.partition_indexes = partitions.to_vec();
    let mut request = OffsetFetchRequest::default();
    request.group_id = GroupId(StrBytes::from_string(group.to_owned()));
    request.topics = Some(vec![wanted]);
    let ResponseKind::OffsetFetch(response) =
        raw_call(bootstrap, ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(request))
    else {
        panic!("OffsetFetch answered with another API");
    };
    assert_eq!(response.error_code, 0, "OffsetFetch for group {group}: {response:?}");
    let mut offsets = BTreeMap::new();
    for answered in &response.topics {
        for partition in &answered.partitions {
            assert_eq!(partition.error_code, 0, "OffsetFetch {topic}-{}: {partition:?}", partition.partition_index);
            offsets.insert(partition.partition_index, partition.committed_offset);
        }
    }
    offsets
}

/// `lastCommittedOffsets` of a result, as partition -> offset.
fn last_committed(json: &Value) -> BTreeMap<i32, i64> {
    let object =
        json["lastCommittedOffsets"].as_object().unwrap_or_else(|| panic!("no lastCommittedOffsets: {json:#}"));
    object.iter().map(|(partition, offset)| (partition.parse().unwrap(), offset.as_i64().unwrap())).collect()
}

#[test]
fn commits_are_answered_and_the_broker_holds_the_last_offset_sent() {
    // Proves the commit workload gets every OffsetCommit answered without
    // error with several committers pipelining, that its JSON result is
    // complete, and that the offsets the broker holds afterwards (read
    // back with OffsetFetch) are the last ones sent: offset n is the n-th
    // commit of a committer, so 300 commits over 2 committers end at 150;
    // a timed run ends where its JSON says it did.
    let broker = Broker::start();
    let counted = broker.run(&[
        "commit",
        "--topic",
        "commits",
        "--partitions",
        "4",
        "--committers",
        "2",
        "--commit-partitions",
        "2",
        "--in-flight",
        "4",
        "--records",
        "300",
        "--group",
        "counted",
    ]);
    for field in RESULT_FIELDS.iter().chain(COMMIT_FIELDS) {
        assert!(counted.get(field).is_some(), "commit result lacks {field}: {counted:#}");
    }
    assert_eq!(counted["workload"], "commit");
    assert_eq!(counted["group"], "counted");
    assert_eq!(count(&counted, "commits"), 300);
    assert_eq!(count(&counted, "commitOffsets"), 600, "two partitions per commit");
    assert_eq!(count(&counted, "messagesProduced"), 0);
    assert_eq!(counted["failures"], Value::Array(vec![]));
    assert!(counted["aggregatedCommitRate"].as_f64().is_some_and(|rate| rate > 0.0), "{counted:#}");
    assert!(counted["aggregatedCommitLatency50pct"].as_f64().is_some_and(|ms| ms > 0.0), "{counted:#}");
    let expected: BTreeMap<i32, i64> = (0..4).map(|partition| (partition, 150)).collect();
    assert_eq!(last_committed(&counted), expected);
    assert_eq!(offset_fetch(&broker.bootstrap, "counted", "commits", &[0, 1, 2, 3]), expected);

    let timed = broker.run(&[
        "commit",
        "--topic",
        "commits",
        "--committers",
        "3",
        "--in-flight",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--group",
        "timed",
    ]);
    assert_eq!(timed["failures"], Value::Array(vec![]));
    let last = last_committed(&timed);
    assert_eq!(last.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2], "one partition per committer");
    assert!(last.values().all(|&offset| offset > 0), "{timed:#}");
    assert_eq!(offset_fetch(&broker.bootstrap, "timed", "commits", &[0, 1, 2]), last);
}

#[test]
fn a_commit_refused_by_the_broker_fails_the_run_naming_the_code() {
    // Proves a non-zero error code in an OffsetCommit answer fails the
    // run (exit status, message with Kafka's name for the code): a simple
    // commit to a group that has members is refused by the coordinator.
    // The group is given a member with a raw JoinGroup first.
    use protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use protocol::messages::{ApiKey, GroupId, JoinGroupRequest, RequestKind, ResponseKind};
    use protocol::StrBytes;
    let broker = Broker::start();
    let mut join = JoinGroupRequest::default();
    join.group_id = GroupId(StrBytes::from_static_str("has-members"));
    join.session_timeout_ms = 30_000;
    join.rebalance_timeout_ms = 30_000;
    join.member_id = StrBytes::from_static_str("");
    join.protocol_type = StrBytes::from_static_str("consumer");
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata = bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    join.protocols = vec![protocol];
    // v3: joins at once, without the MEMBER_ID_REQUIRED round trip.
    let ResponseKind::JoinGroup(joined) =
        raw_call(&broker.bootstrap, ApiKey::JoinGroup, 3, RequestKind::JoinGroup(join))
    else {
        panic!("JoinGroup answered with another API");
    };
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let (ok, text, json) = broker.loadgen(&[
        "commit",
        "--topic",
        "refused",
        "--partitions",
        "1",
        "--records",
        "5",
        "--group",
        "has-members",
    ]);
    assert!(!ok, "a refused commit must fail the run:\n{text}");
    assert!(text.contains("refused-0"), "names the partition:\n{text}");
    assert!(
        text.contains("IllegalGeneration (22)") || text.contains("UnknownMemberId (25)"),
        "names the code:\n{text}"
    );
    let failures = json.expect("a JSON result")["failures"].as_array().cloned().unwrap_or_default();
    assert!(!failures.is_empty(), "the JSON lists the failure");
}
