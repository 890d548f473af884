//! Golden tests: the exact bytes real clients sent (librdkafka through
//! confluent-kafka, kafka-python, aiokafka, kcat), recorded once by
//! `scripts/capture-golden.py` into `tests/fixtures/golden/`, decode to the
//! values the clients were asked to send (`manifest.json`), and encode back
//! to the same bytes.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use protocol::api::ApiKey;
use protocol::frame::FrameDecoder;
use protocol::messages::RequestKind;
use protocol::record_batch::batches;
use protocol::{decode_request, encode_request, DecodeError, Request};
use serde_json::Value;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(golden_dir().join("manifest.json")).expect("manifest.json");
    let manifest: Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    manifest["files"].as_array().expect("files").clone()
}

fn int(entry: &Value, key: &str) -> i64 {
    entry[key].as_i64().unwrap_or_else(|| panic!("{}: {key} is not an integer", entry["path"]))
}

fn string<'a>(entry: &'a Value, key: &str) -> &'a str {
    entry[key].as_str().unwrap_or_else(|| panic!("{}: {key} is not a string", entry["path"]))
}

/// Reads a fixture and cuts its one frame with the frame decoder.
fn frame_of(entry: &Value) -> Bytes {
    let path = golden_dir().join(string(entry, "path"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = FrameDecoder::default().decode(&mut buf).unwrap().expect("a whole frame");
    assert!(buf.is_empty(), "{}: bytes after the frame", path.display());
    frame
}

#[test]
fn every_client_frame_decodes_and_re_encodes_byte_for_byte() {
    let entries = manifest();
    assert!(entries.len() >= 40, "only {} fixtures", entries.len());
    let mut clients = std::collections::BTreeSet::new();
    for entry in &entries {
        let frame = frame_of(entry);
        let path = string(entry, "path");
        let api_key = ApiKey::try_from(int(entry, "api_key") as i16).expect("a known API key");
        let version = int(entry, "api_version") as i16;
        if version > api_key.valid_versions().max {
            // The capture broker offered a version newer than our codecs
            // (kafka-python sends ListOffsets v11): a clean error, not a guess.
            let err = decode_request(frame).unwrap_err();
            assert!(matches!(err, DecodeError::UnsupportedVersion { .. }), "{path}: {err}");
            continue;
        }
        let request = decode_request(frame.clone()).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(request.api_key as i64, int(entry, "api_key"), "{path}");
        assert_eq!(i64::from(request.api_version()), int(entry, "api_version"), "{path}");
        assert_eq!(i64::from(request.correlation_id()), int(entry, "correlation_id"), "{path}");
        assert_eq!(request.header.client_id.as_deref(), entry["client_id"].as_str(), "{path}");
        let mut wire = BytesMut::new();
        encode_request(&mut wire, &request.header, &request.body).unwrap();
        assert_eq!(&wire[4..], &frame[..], "{path}: re-encoding differs");
        check_body(entry, &request);
        clients.insert(string(entry, "client").to_owned());
    }
    assert_eq!(clients.into_iter().collect::<Vec<_>>(), ["aiokafka", "kafka-python", "kcat", "librdkafka"]);
}

fn check_body(entry: &Value, request: &Request) {
    let path = string(entry, "path");
    match &request.body {
        RequestKind::ApiVersions(body) if request.api_version() >= 3 => {
            assert_eq!(body.client_software_name.as_str(), string(entry, "client_software_name"), "{path}");
            assert_eq!(body.client_software_version.as_str(), string(entry, "client_software_version"), "{path}");
        }
        RequestKind::Metadata(body) => {
            let names: Vec<&str> = body
                .topics
                .iter()
                .flatten()
                .filter_map(|topic| topic.name.as_ref().map(|name| name.0.as_str()))
                .collect();
            let expected: Vec<&str> = entry["topics"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
            assert_eq!(names, expected, "{path}");
            if request.api_version() >= 4 {
                assert_eq!(body.allow_auto_topic_creation, entry["allow_auto_topic_creation"].as_bool().unwrap());
            }
        }
        RequestKind::Produce(body) => check_produce(entry, body),
        RequestKind::Fetch(body) => {
            assert_eq!(i64::from(body.max_wait_ms), int(entry, "max_wait_ms"), "{path}");
            assert_eq!(i64::from(body.min_bytes), int(entry, "min_bytes"), "{path}");
            assert_eq!(i64::from(body.max_bytes), int(entry, "max_bytes"), "{path}");
            assert_eq!(i64::from(body.isolation_level), int(entry, "isolation_level"), "{path}");
            assert_eq!(i64::from(body.session_id), int(entry, "session_id"), "{path}");
            assert_eq!(i64::from(body.session_epoch), int(entry, "session_epoch"), "{path}");
            let topic = &body.topics[0];
            if request.api_version() >= 13 {
                assert_eq!(topic.topic_id.to_string(), string(entry, "topic_id"), "{path}");
            } else {
                assert_eq!(topic.topic.0.as_str(), string(entry, "topic"), "{path}");
            }
            let partition = &topic.partitions[0];
            assert_eq!(i64::from(partition.partition), int(entry, "partition"), "{path}");
            assert_eq!(partition.fetch_offset, int(entry, "fetch_offset"), "{path}");
            assert_eq!(i64::from(partition.partition_max_bytes), int(entry, "partition_max_bytes"), "{path}");
        }
        RequestKind::ListOffsets(body) => {
            let topic = &body.topics[0];
            assert_eq!(topic.name.0.as_str(), string(entry, "topic"), "{path}");
            assert_eq!(topic.partitions[0].timestamp, int(entry, "timestamp"), "{path}");
            assert_eq!(i64::from(body.replica_id.0), int(entry, "replica_id"), "{path}");
        }
        RequestKind::InitProducerId(body) => {
            assert_eq!(i64::from(body.transaction_timeout_ms), int(entry, "transaction_timeout_ms"), "{path}");
            assert_eq!(body.transactional_id.as_ref().map(|id| id.0.as_str()), entry["transactional_id"].as_str());
        }
        RequestKind::FindCoordinator(body) => {
            let key = if request.api_version() >= 4 {
                body.coordinator_keys.first().map(|key| key.as_str()).unwrap_or_default()
            } else {
                body.key.as_str()
            };
            assert_eq!(key, string(entry, "key"), "{path}");
        }
        _ => {}
    }
}

fn check_produce(entry: &Value, body: &protocol::messages::ProduceRequest) {
    let path = string(entry, "path");
    assert_eq!(i64::from(body.acks), int(entry, "acks"), "{path}");
    assert_eq!(i64::from(body.timeout_ms), int(entry, "timeout_ms"), "{path}");
    let topic = &body.topic_data[0];
    assert_eq!(topic.name.0.as_str(), string(entry, "topic"), "{path}");
    let partition = &topic.partition_data[0];
    assert_eq!(i64::from(partition.index), int(entry, "partition"), "{path}");
    let records = partition.records.clone().expect("records");
    let split: Vec<_> = batches(records, 1 << 20).collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(split.len(), 1, "{path}");
    let batch = &split[0];
    let summary = batch.validate(1 << 20).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(summary.offset_deltas_consecutive, "{path}");
    assert_eq!(batch.codec().unwrap().name(), string(entry, "codec"), "{path}");
    assert_eq!(batch.producer_id(), int(entry, "producer_id"), "{path}");
    assert_eq!(i64::from(batch.producer_epoch()), int(entry, "producer_epoch"), "{path}");
    assert_eq!(i64::from(batch.base_sequence()), int(entry, "base_sequence"), "{path}");
    assert_eq!(i64::from(batch.crc()), int(entry, "crc"), "{path}");
    let expected = entry["records"].as_array().unwrap();
    assert_eq!(batch.records_count() as usize, expected.len(), "{path}");
    for (record, want) in batch.records(1 << 20).unwrap().zip(expected) {
        let record = record.unwrap();
        let text = |bytes: &Option<Bytes>| bytes.as_ref().map(|b| String::from_utf8(b.to_vec()).unwrap());
        assert_eq!(text(&record.key).as_deref(), want["key"].as_str(), "{path}");
        assert_eq!(text(&record.value).as_deref(), want["value"].as_str(), "{path}");
        // kcat stamps the wall clock, so its manifest has no timestamp.
        if let Some(timestamp) = want["timestamp"].as_i64() {
            assert_eq!(batch.base_timestamp() + record.timestamp_delta, timestamp, "{path}");
        }
        let headers: Vec<(String, Option<String>)> =
            record.headers().map(|h| (String::from_utf8(h.key.to_vec()).unwrap(), text(&h.value))).collect();
        let want_headers: Vec<(String, Option<String>)> = want["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["key"].as_str().unwrap().to_owned(), h["value"].as_str().map(str::to_owned)))
            .collect();
        assert_eq!(headers, want_headers, "{path}");
    }
}

#[test]
fn every_codec_arrived_from_every_python_and_librdkafka_client() {
    // Proves the fixture set covers what it claims: each library sent each
    // codec, so the decompression interop is tested against real producers.
    let entries = manifest();
    for client in ["librdkafka", "kafka-python", "aiokafka"] {
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            assert!(
                entries
                    .iter()
                    .any(|e| e["client"] == client && e["api_key"] == ApiKey::Produce as i64 && e["codec"] == codec),
                "no {codec} Produce from {client}"
            );
        }
    }
}
