//! Backward compatibility of the on-disk format (docs/storage.md): a
//! partition directory written by format version 1 of the segment, index and
//! clean-shutdown files must keep opening and reading the same. A change to
//! any of those layouts bumps its version and adds a fixture here.
//!
//! The fixture was written by `write_v1_fixture` below (run it with
//! `STELE_WRITE_FIXTURES=1 cargo test -p stele-engine --test format_fixtures
//! -- --ignored`) and is committed as bytes.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use engine::{LogConfig, PartitionLog};

const FIXTURE_BATCHES: u64 = 10;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/orders-0")
}

fn fixture_config() -> LogConfig {
    LogConfig { segment_bytes_max: 4096, index_interval_bytes: 1024, ..small_config() }
}

fn copy_fixture(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
#[ignore = "writes the committed fixture; run only when adding a format version"]
fn write_v1_fixture() {
    if std::env::var_os("STELE_WRITE_FIXTURES").is_none() {
        return;
    }
    let dir = fixture_dir();
    let _ = std::fs::remove_dir_all(&dir);
    run(move || async move {
        let log = PartitionLog::open(&dir, fixture_config(), shard()).await.unwrap();
        for tag in 0..FIXTURE_BATCHES {
            log.append(batch(2, 1_600_000_000_000 + tag as i64 * 1000, tag, 1000)).await.unwrap();
        }
        log.close().await.unwrap();
    });
}

#[test]
fn version_1_files_open_and_read_the_same() {
    // Proves: the committed v1 directory opens cleanly (marker trusted) and
    // after a crash (marker removed, recovery scan), with the same offsets,
    // batches, segments and timestamp lookups; and it takes new appends.
    for crashed in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("orders-0");
        copy_fixture(&dir);
        if crashed {
            std::fs::remove_file(dir.join("clean_shutdown")).unwrap();
        }
        run(move || async move {
            let log = PartitionLog::open(&dir, fixture_config(), shard()).await.unwrap();
            assert_eq!(log.log_start_offset(), 0);
            assert_eq!(log.log_end_offset(), 2 * FIXTURE_BATCHES as i64);
            let segments = log.segments();
            assert!(segments.len() >= 3, "{segments:?}");
            assert_eq!(segments[0].base_offset, 0);
            assert_eq!(read_all_tags(&log).await, (0..FIXTURE_BATCHES).collect::<Vec<_>>());
            let found = log.offset_for_timestamp(1_600_000_000_000 + 4500).await.unwrap().unwrap();
            assert_eq!(found.base_offset, 10, "crashed: {crashed}");
            let info = log.append(batch(1, 1_700_000_000_000, 99, 10)).await.unwrap();
            assert_eq!(info.base_offset, 20);
            log.close().await.unwrap();
        });
    }
}
