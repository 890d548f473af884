//! `PartitionLog::delete_records_before` (Kafka's DeleteRecords): the log
//! start offset moves up, records below it are unreadable, whole segments
//! below it are deleted, and the new start survives a clean restart and a
//! crash (no close), while a damaged start file is refused.

mod common;

use common::*;
use engine::partition_log::LOG_START_OFFSET_FILE;
use engine::{EngineError, PartitionLog};

fn segment_bases(dir: &std::path::Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_string_lossy().strip_suffix(".log").and_then(|s| s.parse().ok()))
        .collect();
    bases.sort_unstable();
    bases
}

#[test]
fn delete_records_moves_the_start_and_deletes_whole_segments_below_it() {
    // Proves: reads below the new start are out of range, reads from it
    // start with the batch holding it, sealed segments wholly below it are
    // gone from disk, a lower or equal offset changes nothing, and an
    // offset past the log end is refused.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("delete-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        for tag in 0..200u64 {
            log.append(batch(4, 1_000 + tag as i64, tag, 1000)).await.unwrap();
        }
        log.flush().await.unwrap();
        let before = log.segments();
        assert!(before.len() >= 3, "several segments expected: {before:?}");
        let cut = before[2].base_offset + 2;
        assert_eq!(log.delete_records_before(cut).await.unwrap(), cut);
        assert_eq!(log.log_start_offset(), cut);
        assert!(matches!(log.read(cut - 1, 1000, None).await, Err(EngineError::OffsetOutOfRange { .. })));
        let read = log.read(cut, 1, None).await.unwrap();
        assert_eq!(read.batch_headers()[0].base_offset, cut - 2, "the batch holding the start is served whole");
        let bases = segment_bases(&dir);
        assert_eq!(bases.first(), Some(&before[2].base_offset), "segments wholly below the start are deleted");
        assert_eq!(log.delete_records_before(cut - 10).await.unwrap(), cut, "a lower offset is a no-op");
        assert_eq!(log.delete_records_before(cut).await.unwrap(), cut);
        let end = log.log_end_offset();
        assert!(matches!(log.delete_records_before(end + 1).await, Err(EngineError::OffsetOutOfRange { .. })));
        assert_eq!(log.delete_records_before(end).await.unwrap(), end, "everything may be deleted");
        assert_eq!(log.segments().len(), 1, "only the active segment remains");
        log.append(batch(1, 5_000, 999, 100)).await.unwrap();
        assert_eq!(read_all_tags(&log).await, vec![999], "appends continue at the old end");
        log.close().await.unwrap();
    });
}

#[test]
fn the_log_start_offset_survives_restart_and_crash() {
    // Proves: the moved start is durable when the call returns: it is there
    // after a clean close and reopen, and after a crash (the log is never
    // closed, so recovery runs), with records above it intact.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("durable-0");
    let first = dir.clone();
    run(move || async move {
        let log = PartitionLog::open(&first, small_config(), shard()).await.unwrap();
        for tag in 0..100u64 {
            log.append(batch(2, 1_000, tag, 1000)).await.unwrap();
        }
        // Not flushed first: the call must make the data below the start
        // durable before it saves the start.
        assert_eq!(log.delete_records_before(101).await.unwrap(), 101);
        // No close: the executor ends as a kill -9 would leave the files.
    });
    let second = dir.clone();
    run(move || async move {
        let log = PartitionLog::open(&second, small_config(), shard()).await.unwrap();
        assert_eq!(log.log_start_offset(), 101);
        assert_eq!(log.log_end_offset(), 200);
        assert_eq!(read_all_tags(&log).await, (50..100).collect::<Vec<_>>());
        log.close().await.unwrap();
        let log = PartitionLog::open(&second, small_config(), shard()).await.unwrap();
        assert_eq!(log.log_start_offset(), 101, "after a clean restart too");
        log.close().await.unwrap();
    });
}

#[test]
fn retention_removes_segments_left_below_the_start_and_a_damaged_start_file_is_refused() {
    // Proves: a start file written just before a crash that left the
    // segments below it in place is honoured on open and retention deletes
    // those segments; and a start file with a bad CRC fails the open with
    // an error naming the file instead of silently resurrecting records.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("leftover-0");
    let inner = dir.clone();
    run(move || async move {
        let log = PartitionLog::open(&inner, small_config(), shard()).await.unwrap();
        for tag in 0..200u64 {
            log.append(batch(4, 1_000, tag, 1000)).await.unwrap();
        }
        log.close().await.unwrap();
        let segments = log.segments();
        let start = segments[2].base_offset;
        // What delete_records_before writes first: magic, version 1,
        // reserved, offset, CRC32C (big-endian).
        let mut bytes = b"SXLS".to_vec();
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes.extend_from_slice(&0u16.to_be_bytes());
        bytes.extend_from_slice(&start.to_be_bytes());
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        std::fs::write(inner.join(LOG_START_OFFSET_FILE), &bytes).unwrap();
        let log = PartitionLog::open(&inner, small_config(), shard()).await.unwrap();
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(segment_bases(&inner).first(), Some(&0), "not deleted yet");
        log.apply_retention(2_000).await.unwrap();
        assert_eq!(segment_bases(&inner).first(), Some(&start), "retention deletes segments below the start");
        log.close().await.unwrap();
        bytes[10] ^= 1;
        std::fs::write(inner.join(LOG_START_OFFSET_FILE), &bytes).unwrap();
        match PartitionLog::open(&inner, small_config(), shard()).await {
            Err(EngineError::Corrupt { path, .. }) => assert!(path.ends_with(LOG_START_OFFSET_FILE)),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a damaged start file must fail the open"),
        }
    });
}
