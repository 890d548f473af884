//! Crash safety: torn writes at every byte of the last batch, and corruption
//! in the middle of a segment.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use engine::{EngineError, PartitionLog};

fn segment_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Copies `src` into a fresh `dst` with the segment file replaced by
/// `contents` and no clean-shutdown marker: what a crash leaves behind.
fn lay_out_crashed_copy(src: &Path, dst: &Path, contents: &[u8]) {
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "clean_shutdown" {
            continue;
        }
        std::fs::copy(entry.path(), dst.join(&name)).unwrap();
    }
    std::fs::write(segment_path(dst, 0), contents).unwrap();
}

#[test]
fn a_torn_last_batch_is_cut_at_every_byte_and_appends_continue() {
    // Proves: whatever byte the last write stopped at, reopening keeps
    // exactly the whole batches before it and accepts new appends at the
    // right offset, with the rest of the file zero (preallocated), cut off,
    // or garbage.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let original = root.join("orig");
        let log = PartitionLog::open(&original, small_config(), shard()).await.unwrap();
        for tag in 0..4u64 {
            log.append(batch(2, 1_000 + tag as i64, tag, 700)).await.unwrap();
        }
        let last = log.append(batch(3, 2_000, 99, 150)).await.unwrap();
        log.close().await.unwrap();
        let full = std::fs::read(segment_path(&original, 0)).unwrap();
        let last_size = 61 + 150;
        let last_start = full.len() - last_size;
        let copy = root.join("copy");
        for cut in last_start..full.len() {
            for tail in ["cut", "zeros", "garbage"] {
                let mut contents = full[..cut].to_vec();
                match tail {
                    "zeros" => contents.resize(64 << 10, 0),
                    "garbage" => contents.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)),
                    _ => {}
                }
                lay_out_crashed_copy(&original, &copy, &contents);
                let log = PartitionLog::open(&copy, small_config(), shard())
                    .await
                    .unwrap_or_else(|e| panic!("cut at byte {cut} ({tail}): open failed: {e}"));
                assert_eq!(log.log_end_offset(), last.base_offset, "cut at byte {cut} ({tail})");
                let read = log.read(0, 1 << 20, None).await.unwrap();
                assert_eq!(tags(&read), vec![0, 1, 2, 3], "cut at byte {cut} ({tail})");
                let again = log.append(batch(1, 3_000, 7, 40)).await.unwrap();
                assert_eq!(again.base_offset, last.base_offset, "cut at byte {cut} ({tail})");
                log.flush().await.unwrap();
                let read = log.read(0, 1 << 20, None).await.unwrap();
                assert_eq!(tags(&read), vec![0, 1, 2, 3, 7], "cut at byte {cut} ({tail})");
                log.close().await.unwrap();
                // And the repaired log survives another clean reopen.
                let log = PartitionLog::open(&copy, small_config(), shard()).await.unwrap();
                assert_eq!(log.log_end_offset(), last.base_offset + 1, "cut at byte {cut} ({tail})");
                log.close().await.unwrap();
            }
        }
    });
}

#[test]
fn a_corrupt_middle_batch_is_reported_with_file_and_position() {
    // Proves: a flipped byte inside a middle batch never panics; reads up to
    // it work, reading it names the file and byte position, and an unclean
    // open refuses to silently cut acknowledged data after it.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let dir = root.join("p");
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        let mut bases = Vec::new();
        for tag in 0..10u64 {
            bases.push(log.append(batch(1, 10 + tag as i64, tag, 300)).await.unwrap().base_offset);
        }
        log.close().await.unwrap();
        let batch_size = 61 + 300;
        let corrupt_position = 5 * batch_size;
        let path = segment_path(&dir, 0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[corrupt_position + 100] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();

        // Clean marker present: open trusts the tail; the read finds it.
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        let read = log.read(0, 1 << 20, None).await.unwrap();
        assert_eq!(tags(&read), vec![0, 1, 2, 3, 4]);
        let err = log.read(bases[5], 1 << 20, None).await.unwrap_err();
        match &err {
            EngineError::Corrupt { path: p, position, offset, .. } => {
                assert_eq!(p, &path);
                assert_eq!(*position, corrupt_position as u64);
                assert_eq!(*offset, bases[5]);
            }
            other => panic!("expected a corruption error, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("00000000000000000000.log") && message.contains(&corrupt_position.to_string()),
            "{message}"
        );
        let after = log.read(bases[6], 1 << 20, None).await.unwrap();
        assert_eq!(tags(&after), vec![6, 7, 8, 9]);
        log.close().await.unwrap();

        // No marker: the recovery scan meets the damage with valid batches
        // after it, and refuses to open rather than drop them.
        std::fs::remove_file(dir.join("clean_shutdown")).unwrap();
        let err = PartitionLog::open(&dir, small_config(), shard()).await.err().expect("open must fail");
        match err {
            EngineError::Corrupt { path: p, position, .. } => {
                assert_eq!(p, path);
                assert_eq!(position, corrupt_position as u64);
            }
            other => panic!("expected a corruption error, got {other:?}"),
        }
    });
}
