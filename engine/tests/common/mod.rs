//! Helpers shared by the engine's integration tests: a glommio executor per
//! test, small limits, and batch builders.

#![allow(dead_code)]

use std::future::Future;
use std::rc::Rc;

use engine::{LogConfig, ShardLimits, ShardResources};

/// Runs `f` on a fresh glommio executor, as a shard would.
pub fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    engine::memlock::ensure_memlock(4 << 20).expect("locked memory for glommio");
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("test body does not panic");
}

pub fn shard() -> Rc<ShardResources> {
    ShardResources::new(ShardLimits {
        write_buffer_bytes_max: 8 << 20,
        tail_cache_bytes_max: 1 << 20,
        writes_in_flight_max: 4,
        write_chunk_bytes_max: 256 << 10,
    })
    .unwrap()
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 64 << 10,
        index_interval_bytes: 1024,
        preallocate_bytes: 32 << 10,
        segment_age_max: None,
        retention_age_max: None,
        ..LogConfig::default()
    }
}

/// A batch of `records` records whose payload encodes `tag`, so tests can
/// tell batches apart when they read them back.
pub fn batch(records: i32, timestamp: i64, tag: u64, payload_bytes: usize) -> bytes::Bytes {
    let mut payload = vec![(tag % 251) as u8; payload_bytes.max(8)];
    payload[..8].copy_from_slice(&tag.to_be_bytes());
    engine::batch::build_test_batch(records, timestamp, &payload).into()
}

/// The tags of the batches a read returned, in order.
pub fn tags(read: &engine::LogRead) -> Vec<u64> {
    let payload = engine::batch::HEADER_BYTES;
    read.records
        .iter()
        .flat_map(|run| {
            engine::batch::run_headers(run)
                .map(|(at, _)| u64::from_be_bytes(run[at + payload..at + payload + 8].try_into().unwrap()))
        })
        .collect()
}

/// Reads the whole log, from its start offset to its end, and returns the
/// tags in order. Each read returns at most one segment's worth.
pub async fn read_all_tags(log: &engine::PartitionLog) -> Vec<u64> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1 << 20, None).await.unwrap();
        let headers = read.batch_headers();
        assert!(!headers.is_empty(), "a read at {offset} below the end returned nothing");
        offset = headers.last().unwrap().last_offset() + 1;
        out.extend(tags(&read));
    }
    out
}
