//! Behaviour of a partition log on real files: rolls, retention, timestamp
//! lookup, flush policies and group commit, budgets, truncation, index
//! rebuilds, the tmpfs fallback and input validation.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::*;
use engine::{BatchError, EngineError, FlushPolicy, IoMode, LogConfig, PartitionLog, ShardLimits, ShardResources};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn segments_roll_by_size_and_keep_their_indexes() {
    // Proves: no segment grows past segment.bytes, segments are contiguous,
    // sealed segments get index files, and reads cross segment boundaries.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("roll-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        for tag in 0..200u64 {
            log.append(batch(4, 1_000 + tag as i64, tag, 1000)).await.unwrap();
        }
        log.flush().await.unwrap();
        let segments = log.segments();
        assert!(segments.len() >= 3, "expected several segments, got {segments:?}");
        for pair in segments.windows(2) {
            assert_eq!(pair[0].next_offset, pair[1].base_offset);
            assert!(pair[0].size_bytes <= 64 << 10);
        }
        log.close().await.unwrap();
        let names = file_names(&dir);
        for s in &segments {
            for ext in ["log", "index", "timeindex"] {
                assert!(names.contains(&format!("{:020}.{ext}", s.base_offset)), "{names:?}");
            }
        }
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        assert_eq!(log.segments().len(), segments.len());
        let mut seen = Vec::new();
        let mut offset = 0;
        while offset < log.log_end_offset() {
            let read = log.read(offset, 10_000, None).await.unwrap();
            let headers = read.batch_headers();
            offset = headers.last().unwrap().last_offset() + 1;
            seen.extend(tags(&read));
        }
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        // A read in the middle of a batch starts with that batch.
        let read = log.read(4 * 150 + 2, 1, None).await.unwrap();
        assert_eq!(tags(&read), vec![150]);
        log.close().await.unwrap();
    });
}

#[test]
fn segments_roll_by_age_of_their_first_batch() {
    // Proves: segment.ms is measured on the first batch's timestamp.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("age-0");
    run(move || async move {
        let config = LogConfig { segment_age_max: Some(Duration::from_secs(3600)), ..small_config() };
        let log = PartitionLog::open(&dir, config, shard()).await.unwrap();
        let old = now_ms() - 2 * 3600 * 1000;
        for tag in 0..3 {
            log.append(batch(1, old, tag, 100)).await.unwrap();
        }
        assert_eq!(log.segments().len(), 3, "each old batch rolls the segment it would join");
        let fresh = now_ms();
        log.append(batch(1, fresh, 3, 100)).await.unwrap();
        log.append(batch(1, fresh, 4, 100)).await.unwrap();
        assert_eq!(log.segments().len(), 4, "a fresh segment takes fresh batches");
        log.close().await.unwrap();

        // Batches without a timestamp (-1) count from the segment's creation.
        let untimed_dir = dir.with_file_name("age-1");
        let config = LogConfig { segment_age_max: Some(Duration::from_secs(3600)), ..small_config() };
        let log = PartitionLog::open(&untimed_dir, config, shard()).await.unwrap();
        for tag in 0..3 {
            log.append(batch(1, -1, tag, 100)).await.unwrap();
        }
        assert_eq!(log.segments().len(), 1);
        log.close().await.unwrap();
    });
}

#[test]
fn retention_deletes_whole_segments_by_size_and_by_age() {
    // Proves: retention.bytes and retention.ms delete the oldest sealed
    // segments, advance the log start offset, remove the files, and never
    // touch the active segment.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ret-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        let now = now_ms();
        for tag in 0..150u64 {
            // The first 100 batches are ten days old.
            let ts = if tag < 100 { now - 10 * 86_400_000 } else { now };
            log.append(batch(2, ts, tag, 1000)).await.unwrap();
        }
        log.flush().await.unwrap();
        let before = log.segments();
        let total: u64 = before.iter().map(|s| s.size_bytes).sum();

        // By size: keep at most ~half of the bytes.
        let limit = total / 2;
        log.set_config(LogConfig { retention_bytes_max: Some(limit), ..small_config() }).unwrap();
        let deleted = log.apply_retention(now).await.unwrap();
        assert!(deleted >= 1);
        let after = log.segments();
        assert_eq!(after.len(), before.len() - deleted);
        assert_eq!(log.log_start_offset(), after[0].base_offset);
        let remaining: u64 = after.iter().map(|s| s.size_bytes).sum();
        assert!(remaining <= limit + after[0].size_bytes, "{remaining} bytes left for a limit of {limit}");
        assert!(remaining - after[0].size_bytes < limit);
        for s in &before[..deleted] {
            assert!(!dir.join(format!("{:020}.log", s.base_offset)).exists());
            assert!(!dir.join(format!("{:020}.index", s.base_offset)).exists());
        }
        match log.read(0, 1000, None).await {
            Err(EngineError::OffsetOutOfRange { log_start_offset, .. }) => {
                assert_eq!(log_start_offset, after[0].base_offset)
            }
            other => panic!("expected OffsetOutOfRange, got {other:?}"),
        }
        let read = log.read(log.log_start_offset(), 1, None).await.unwrap();
        assert_eq!(read.batch_headers()[0].base_offset, log.log_start_offset());

        // By age: every sealed segment made only of old batches goes.
        log.set_config(LogConfig { retention_age_max: Some(Duration::from_secs(86_400)), ..small_config() }).unwrap();
        log.apply_retention(now).await.unwrap();
        let first = log.read(log.log_start_offset(), 1, None).await.unwrap();
        let first_tag = tags(&first)[0];
        assert!(first_tag <= 100, "a segment holding fresh batches was deleted (first tag {first_tag})");
        for s in &log.segments()[..log.segments().len() - 1] {
            assert!(s.max_timestamp >= now - 86_400_000 || !s.sealed);
        }
        // Everything old: only the active segment survives, never deleted.
        log.set_config(LogConfig { retention_age_max: Some(Duration::from_millis(1)), ..small_config() }).unwrap();
        log.apply_retention(now + 60_000).await.unwrap();
        assert_eq!(log.segments().len(), 1);
        assert_eq!(log.log_start_offset(), log.segments()[0].base_offset);
        log.close().await.unwrap();
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        assert_eq!(log.log_start_offset(), log.segments()[0].base_offset);
        assert_eq!(log.log_end_offset(), 300);
        log.close().await.unwrap();
    });
}

#[test]
fn timestamp_lookup_finds_the_first_batch_at_or_after() {
    // Proves: lookups use the time index across segments, tolerate
    // timestamps that go backwards, and survive a reopen.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ts-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        // Timestamps 0, 10, 20, ... with every 7th batch going back in time.
        let stamp = |tag: u64| if tag % 7 == 6 { tag as i64 * 10 - 55 } else { tag as i64 * 10 };
        for tag in 0..300u64 {
            log.append(batch(1, stamp(tag), tag, 700)).await.unwrap();
        }
        let check = |log: PartitionLog| async move {
            for target in [-5i64, 0, 1, 10, 995, 1000, 1555, 2990, 2991, 5000] {
                let expected = (0..300u64).find(|t| stamp(*t) >= target);
                let found = log.offset_for_timestamp(target).await.unwrap();
                assert_eq!(found.as_ref().map(|m| m.base_offset as u64), expected, "target {target}");
                if let Some(m) = found {
                    assert_eq!(m.max_timestamp, stamp(m.base_offset as u64));
                    assert_eq!(
                        engine::batch::validate_batch(&m.batch, 0, m.batch.len()).unwrap().base_offset,
                        m.base_offset
                    );
                }
            }
        };
        check(log.clone()).await;
        log.close().await.unwrap();
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        check(log.clone()).await;
        log.close().await.unwrap();
    });
}

#[test]
fn always_policy_shares_fsyncs_between_concurrent_appends() {
    // Proves group commit: many concurrent acks=all appends are all durable
    // after fewer fdatasyncs than appends.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gc-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        let mut tasks = Vec::new();
        for tag in 0..64u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let info = log.append(batch(1, 0, tag, 200)).await.unwrap();
                log.wait_durable(info.last_offset + 1).await.unwrap();
                assert!(log.durable_offset() > info.last_offset);
            }));
        }
        for t in tasks {
            t.await;
        }
        let stats = log.stats();
        assert_eq!(log.durable_offset(), 64);
        assert!(stats.fsyncs >= 1 && stats.fsyncs < 64, "{stats:?}");
        log.close().await.unwrap();
    });
}

#[test]
fn interval_policy_fsyncs_after_n_messages() {
    // Proves flush.messages: below the threshold nothing is fsynced even
    // after the data is written; reaching it makes everything durable.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fm-0");
    run(move || async move {
        let config =
            LogConfig { flush_policy: FlushPolicy::Interval { messages: Some(10), interval: None }, ..small_config() };
        let log = PartitionLog::open(&dir, config, shard()).await.unwrap();
        for tag in 0..3u64 {
            log.append(batch(3, 0, tag, 100)).await.unwrap();
        }
        // Let the flusher write what it has.
        while log.stats().writes == 0 {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert_eq!(log.durable_offset(), 0, "9 messages are below flush.messages=10");
        assert_eq!(log.stats().fsyncs, 0);
        log.append(batch(1, 0, 3, 100)).await.unwrap();
        log.wait_durable(10).await.unwrap();
        assert!(log.stats().fsyncs >= 1);
        log.close().await.unwrap();
    });
}

#[test]
fn interval_policy_fsyncs_after_flush_ms() {
    // Proves flush.ms: a waiter is released by the timer alone.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ft-0");
    run(move || async move {
        let config = LogConfig {
            flush_policy: FlushPolicy::Interval { messages: None, interval: Some(Duration::from_millis(20)) },
            ..small_config()
        };
        let log = PartitionLog::open(&dir, config, shard()).await.unwrap();
        let info = log.append(batch(1, 0, 0, 100)).await.unwrap();
        log.wait_durable(info.last_offset + 1).await.unwrap();
        assert_eq!(log.stats().fsyncs, 1);
        log.close().await.unwrap();
    });
}

#[test]
fn a_full_write_budget_makes_appends_wait_not_grow() {
    // Proves backpressure: with a small write budget shared by two logs,
    // DMA memory (in use plus pooled for reuse) never exceeds the budget plus one write chunk (the
    // buffer an append may allocate after finding room) and one carried
    // block per log, the tail caches stay within theirs (or the unwritten
    // data, if larger), and every append still completes.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let limits = ShardLimits {
            write_buffer_bytes_max: 128 << 10,
            tail_cache_bytes_max: 64 << 10,
            writes_in_flight_max: 2,
            write_chunk_bytes_max: 64 << 10,
        };
        let budget = limits.write_buffer_bytes_max + limits.write_chunk_bytes_max + 2 * engine::BLOCK_BYTES;
        // Unwritten batches stay cached whatever the budget; they are bounded
        // by the write buffers that hold their other copy.
        let cache_budget = limits.tail_cache_bytes_max.max(budget);
        let shard = ShardResources::new(limits).unwrap();
        let config = LogConfig { segment_bytes_max: 1 << 20, ..small_config() };
        let a = PartitionLog::open(root.join("a-0"), config.clone(), shard.clone()).await.unwrap();
        let b = PartitionLog::open(root.join("b-0"), config, shard.clone()).await.unwrap();
        let peak = Rc::new(std::cell::Cell::new((0usize, 0usize)));
        let mut tasks = Vec::new();
        for (log, first_tag) in [(a.clone(), 0u64), (b.clone(), 1000)] {
            for writer in 0..4u64 {
                let (log, shard, peak) = (log.clone(), shard.clone(), peak.clone());
                tasks.push(glommio::spawn_local(async move {
                    for i in 0..40u64 {
                        log.append(batch(8, 0, first_tag + writer * 100 + i, 12_000)).await.unwrap();
                        let (w, c) = peak.get();
                        // Buffers kept for reuse count too: they are memory held.
                        let held = shard.write_buffer_bytes() + shard.pooled_write_buffer_bytes();
                        peak.set((w.max(held), c.max(shard.tail_cache_bytes())));
                    }
                }));
            }
        }
        for t in tasks {
            t.await;
        }
        a.flush().await.unwrap();
        b.flush().await.unwrap();
        let (write_peak, cache_peak) = peak.get();
        assert!(write_peak <= budget, "write buffers peaked at {write_peak} bytes, budget {budget}");
        assert!(cache_peak <= cache_budget, "tail cache peaked at {cache_peak} bytes, budget {cache_budget}");
        assert!(shard.tail_cache_bytes() <= cache_budget);
        assert_eq!(a.log_end_offset(), 4 * 40 * 8);
        assert_eq!(read_all_tags(&a).await.len(), 160);
        assert_eq!(read_all_tags(&b).await.len(), 160);
        a.close().await.unwrap();
        b.close().await.unwrap();
        assert_eq!(shard.write_buffer_bytes(), 0, "closing releases every write buffer");
        assert_eq!(shard.tail_cache_bytes(), 0, "closing releases the tail cache");
    });
}

#[test]
fn truncation_cuts_at_the_batch_holding_the_offset() {
    // Proves truncate_to: later segments go, the batch holding the offset
    // goes, appends continue from the new end, and reopening (clean or not)
    // agrees.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tr-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        for tag in 0..120u64 {
            log.append(batch(5, tag as i64, tag, 900)).await.unwrap();
        }
        let segments_before = log.segments().len();
        let new_end = log.truncate_to(5 * 40 + 3).await.unwrap();
        assert_eq!(new_end, 200);
        assert_eq!(log.log_end_offset(), 200);
        assert!(log.segments().len() < segments_before);
        let read = log.read(190, 1 << 20, None).await.unwrap();
        assert_eq!(tags(&read), vec![38, 39]);
        assert!(matches!(log.read(201, 10, None).await, Err(EngineError::OffsetOutOfRange { .. })));
        let info = log.append(batch(1, 500, 777, 100)).await.unwrap();
        assert_eq!(info.base_offset, 200);
        let found = log.offset_for_timestamp(41).await.unwrap().unwrap();
        assert_eq!(found.base_offset, 200, "timestamps of truncated batches are forgotten");
        log.flush().await.unwrap();
        log.close().await.unwrap();
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        assert_eq!(log.log_end_offset(), 201);
        let read = log.read(195, 1 << 20, None).await.unwrap();
        assert_eq!(tags(&read), vec![39, 777]);
        log.close().await.unwrap();
        std::fs::remove_file(dir.join("clean_shutdown")).unwrap();
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        assert_eq!(log.log_end_offset(), 201);
        log.close().await.unwrap();
    });
}

#[test]
fn missing_or_damaged_index_files_are_rebuilt() {
    // Proves: an index that is absent, empty (what a crash leaves of the
    // index files a roll writes without fsync) or fails its checks is
    // rebuilt from the segment, and lookups give the same answers as before.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        for tag in 0..250u64 {
            log.append(batch(2, tag as i64 * 3, tag, 800)).await.unwrap();
        }
        let segments = log.segments();
        assert!(segments.len() >= 3);
        log.close().await.unwrap();
        let first = segments[0].base_offset;
        let second = segments[1].base_offset;
        std::fs::remove_file(dir.join(format!("{first:020}.index"))).unwrap();
        let time_index = dir.join(format!("{second:020}.timeindex"));
        let mut bytes = std::fs::read(&time_index).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 0x10;
        std::fs::write(&time_index, bytes).unwrap();
        std::fs::write(dir.join(format!("{second:020}.index")), b"").unwrap();
        std::fs::write(dir.join(format!("{:020}.index", 999_999)), b"orphan").unwrap();
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        assert_eq!(
            log.segments(),
            segments
                .iter()
                .map(|s| engine::SegmentInfo {
                    sealed: s.sealed || s.base_offset != segments.last().unwrap().base_offset,
                    ..s.clone()
                })
                .collect::<Vec<_>>()
        );
        assert!(dir.join(format!("{first:020}.index")).exists());
        assert!(!dir.join(format!("{:020}.index", 999_999)).exists(), "orphan index files are removed");
        for tag in [0u64, 33, 34, 70, 149, 249] {
            let found = log.offset_for_timestamp(tag as i64 * 3).await.unwrap().unwrap();
            assert_eq!(found.base_offset, 2 * tag as i64);
            let read = log.read(2 * tag as i64 + 1, 1, None).await.unwrap();
            assert_eq!(tags(&read), vec![tag]);
        }
        log.close().await.unwrap();
    });
}

#[test]
fn bad_batches_are_refused_with_a_specific_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bad-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        let mut damaged = batch(1, 0, 0, 100).to_vec();
        damaged[80] ^= 1;
        assert!(matches!(
            log.append(damaged.into()).await,
            Err(EngineError::InvalidBatch(BatchError::CrcMismatch { position: 0, .. }))
        ));
        let mut v1 = batch(1, 0, 0, 100).to_vec();
        v1[16] = 1;
        assert!(matches!(
            log.append(v1.into()).await,
            Err(EngineError::InvalidBatch(BatchError::UnsupportedMagic { magic: 1, .. }))
        ));
        let huge = batch(1, 0, 0, 70_000);
        assert!(matches!(log.append(huge).await, Err(EngineError::InvalidBatch(BatchError::TooLarge { .. }))));
        // A good batch followed by a truncated one: the whole record set is refused.
        let mut two = batch(1, 0, 1, 100).to_vec();
        two.extend_from_slice(&batch(1, 0, 2, 100)[..50]);
        assert!(matches!(log.append(two.into()).await, Err(EngineError::InvalidBatch(_))));
        assert_eq!(log.log_end_offset(), 0, "nothing of a refused record set is appended");
        // Offsets past the end are out of range; the end itself reads empty.
        assert!(matches!(log.read(1, 100, None).await, Err(EngineError::OffsetOutOfRange { .. })));
        assert!(log.read(0, 100, None).await.unwrap().records.is_empty());
        log.close().await.unwrap();
        assert!(matches!(log.append(batch(1, 0, 0, 10)).await, Err(EngineError::Closed { .. })));
    });
}

#[test]
fn tmpfs_falls_back_to_buffered_io() {
    // Proves: where O_DIRECT is not real (tmpfs), the log still works and
    // stays durable across reopen, using buffered I/O.
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipping: no /dev/shm on this machine");
        return;
    }
    let tmp = tempfile::tempdir_in(shm).unwrap();
    let dir = tmp.path().join("shm-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        assert_eq!(log.io_mode(), IoMode::Buffered);
        for tag in 0..100u64 {
            log.append(batch(1, 0, tag, 900)).await.unwrap();
        }
        log.close().await.unwrap();
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        assert_eq!(read_all_tags(&log).await, (0..100).collect::<Vec<_>>());
        log.close().await.unwrap();
    });
}

#[test]
fn reads_come_from_the_tail_cache_while_it_holds_them() {
    // Proves: a consumer at the tail is served from memory; an old offset
    // evicted from the cache is read from disk with the same bytes.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tc-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        for tag in 0..20u64 {
            log.append(batch(1, 0, tag, 500)).await.unwrap();
        }
        let tail = log.read(15, 1 << 20, None).await.unwrap();
        assert_eq!(log.stats().cache_reads, 1);
        log.close().await.unwrap();
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        let disk = log.read(15, 1 << 20, None).await.unwrap();
        assert_eq!(log.stats().disk_reads, 1);
        let concat = |r: &engine::LogRead| r.records.iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>();
        assert_eq!(concat(&tail), concat(&disk));
        log.close().await.unwrap();
    });
}

#[test]
fn flush_returns_while_appends_keep_coming() {
    // Proves: a flush requested while a write round is in flight is not
    // forgotten when that round's fdatasync completes (it used to hang with
    // flush.messages and flush.ms unset).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fl-0");
    run(move || async move {
        let config = LogConfig {
            segment_bytes_max: 64 << 20,
            flush_policy: FlushPolicy::Interval { messages: None, interval: None },
            ..small_config()
        };
        let log = PartitionLog::open(&dir, config, shard()).await.unwrap();
        let writer = {
            let log = log.clone();
            glommio::spawn_local(async move {
                for tag in 0..400u64 {
                    log.append(batch(16, 0, tag, 64 << 10)).await.unwrap();
                }
            })
        };
        let flushes = async {
            for _ in 0..20 {
                glommio::timer::sleep(Duration::from_millis(1)).await;
                let end = log.log_end_offset();
                log.flush().await.unwrap();
                assert!(log.durable_offset() >= end);
            }
            writer.await;
            log.flush().await.unwrap();
            assert_eq!(log.durable_offset(), log.log_end_offset());
        };
        // A safety net so a regression fails instead of hanging the suite.
        let timeout = async {
            glommio::timer::sleep(Duration::from_secs(120)).await;
            panic!("flush() did not return within two minutes");
        };
        futures_lite::future::or(flushes, timeout).await;
        log.close().await.unwrap();
    });
}

#[test]
fn relative_directories_work() {
    // glommio opens directories with no base descriptor; the log makes paths absolute.
    let tmp = tempfile::tempdir_in(".").unwrap();
    let relative = tmp.path().strip_prefix(std::env::current_dir().unwrap()).unwrap().join("rel-0");
    run(move || async move {
        let log = PartitionLog::open(&relative, small_config(), shard()).await.unwrap();
        log.append(batch(1, 0, 1, 10)).await.unwrap();
        log.close().await.unwrap();
        assert!(log.dir().is_absolute());
    });
}

#[test]
fn the_tail_cache_budget_is_shared_by_the_logs_of_a_shard() {
    // Proves: when one log fills the shard's tail-cache budget, appends to
    // another log evict the first log's written batches too, so the shard's
    // total stays within the budget; evicted batches are read from disk.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let limits = ShardLimits {
            write_buffer_bytes_max: 256 << 10,
            tail_cache_bytes_max: 256 << 10,
            writes_in_flight_max: 2,
            write_chunk_bytes_max: 64 << 10,
        };
        let shard = ShardResources::new(limits).unwrap();
        let config = LogConfig { segment_bytes_max: 8 << 20, ..small_config() };
        let idle = PartitionLog::open(root.join("idle-0"), config.clone(), shard.clone()).await.unwrap();
        for tag in 0..20u64 {
            idle.append(batch(1, 0, tag, 10_000)).await.unwrap();
        }
        idle.flush().await.unwrap();
        let busy = PartitionLog::open(root.join("busy-0"), config, shard.clone()).await.unwrap();
        for tag in 0..200u64 {
            busy.append(batch(1, 0, tag, 10_000)).await.unwrap();
            busy.wait_durable(busy.log_end_offset()).await.unwrap();
            // Nothing is left unwritten here, so the budget holds exactly.
            assert!(shard.tail_cache_bytes() <= 256 << 10, "{} bytes cached", shard.tail_cache_bytes());
        }
        let before = idle.stats().disk_reads;
        assert_eq!(read_all_tags(&idle).await, (0..20).collect::<Vec<_>>());
        assert!(idle.stats().disk_reads > before, "the idle log's batches were evicted to disk");
        idle.close().await.unwrap();
        busy.close().await.unwrap();
        assert_eq!(shard.tail_cache_bytes(), 0);
    });
}

/// `batches` batches of 8 records, tagged `first_tag..`, back to back as one
/// record set (as a producer sends several batches for one partition).
fn record_set(first_tag: u64, batches: u64, payload_bytes: usize) -> bytes::Bytes {
    let mut out = Vec::new();
    for tag in first_tag..first_tag + batches {
        out.extend_from_slice(&batch(8, 0, tag, payload_bytes));
    }
    out.into()
}

#[test]
fn record_sets_larger_than_a_chunk_land_whole_and_in_order() {
    // Proves: record sets several write chunks long (and longer than what
    // appends may copy in one scheduler pass, so appends pace themselves)
    // land whole, contiguous and in order while many appenders and flushes
    // run concurrently; write buffers are reused; and the log reads back
    // the same after a clean reopen.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big-0");
    run(move || async move {
        let limits = ShardLimits {
            write_buffer_bytes_max: 512 << 10,
            tail_cache_bytes_max: 256 << 10,
            writes_in_flight_max: 2,
            write_chunk_bytes_max: 64 << 10,
        };
        let shard = ShardResources::new(limits.clone()).unwrap();
        let config = LogConfig {
            segment_bytes_max: 4 << 20,
            flush_policy: FlushPolicy::Interval { messages: None, interval: None },
            ..small_config()
        };
        let log = PartitionLog::open(&dir, config.clone(), shard.clone()).await.unwrap();
        const WRITERS: u64 = 6;
        const SETS: u64 = 12;
        const BATCHES: u64 = 3;
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                for set in 0..SETS {
                    let first_tag = (writer * SETS + set) * BATCHES;
                    // 3 batches of ~100 KiB: about 300 KiB, nearly five chunks.
                    let info = log.append(record_set(first_tag, BATCHES, 100_000)).await.unwrap();
                    assert_eq!(info.batches, BATCHES as usize);
                    assert_eq!(info.last_offset - info.base_offset + 1, 8 * BATCHES as i64);
                }
            }));
        }
        let flusher = {
            let log = log.clone();
            glommio::spawn_local(async move {
                for _ in 0..10 {
                    glommio::timer::sleep(Duration::from_millis(2)).await;
                    let end = log.log_end_offset();
                    log.flush().await.unwrap();
                    assert!(log.durable_offset() >= end);
                }
            })
        };
        for task in tasks {
            task.await;
        }
        flusher.await;
        log.flush().await.unwrap();
        let held = shard.write_buffer_bytes() + shard.pooled_write_buffer_bytes();
        assert!(
            held <= limits.write_buffer_bytes_max + limits.write_chunk_bytes_max + engine::BLOCK_BYTES,
            "write buffers hold {held} bytes after the flush"
        );
        assert!(shard.pooled_write_buffer_bytes() > 0, "written chunks are kept for reuse");
        let check = |tags: Vec<u64>| {
            assert_eq!(tags.len() as u64, WRITERS * SETS * BATCHES);
            // Each record set's batches are adjacent and in order.
            for set in tags.chunks(BATCHES as usize) {
                assert_eq!(set[0] % BATCHES, 0, "a record set starts at its first batch: {set:?}");
                assert_eq!(set, &[set[0], set[0] + 1, set[0] + 2], "a record set was split: {set:?}");
            }
            let mut sorted = tags;
            sorted.sort_unstable();
            assert_eq!(sorted, (0..WRITERS * SETS * BATCHES).collect::<Vec<_>>());
        };
        let tags = read_all_tags(&log).await;
        check(tags.clone());
        log.close().await.unwrap();
        let log = PartitionLog::open(&dir, config, shard).await.unwrap();
        assert_eq!(read_all_tags(&log).await, tags, "the same records after reopening");
        log.close().await.unwrap();
    });
}

#[test]
fn a_record_set_sharing_its_buffer_is_copied_not_patched_in_place() {
    // Proves: the engine never writes into a buffer someone else still
    // holds. A broker cuts a produce request's frame from its connection's
    // read buffer and the records from the frame; while the read buffer
    // lives, the records share its allocation (`Bytes::try_into_mut`
    // fails), so the engine copies before patching offsets, and the
    // caller's bytes keep the producer's base offset 0.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        log.append(batch(5, 0, 1, 100)).await.unwrap();
        let one = batch(3, 0, 2, 100);
        let mut read_buffer = bytes::BytesMut::with_capacity(4096);
        read_buffer.extend_from_slice(b"frame header");
        read_buffer.extend_from_slice(&one);
        read_buffer.extend_from_slice(b"next frame, partly read");
        let frame = read_buffer.split_to(12 + one.len()).freeze();
        let records = frame.slice(12..);
        drop(frame);
        let probe = records.clone();
        assert!(probe.try_into_mut().is_err(), "the record set shares the live read buffer");
        let info = log.append(records.clone()).await.unwrap();
        assert_eq!(info.base_offset, 5);
        assert_eq!(&records[..8], &0i64.to_be_bytes(), "the caller's buffer was not patched");
        let read = log.read(5, 1 << 20, None).await.unwrap();
        assert_eq!(read.batch_headers()[0].base_offset, 5);
        drop(read_buffer);
        log.close().await.unwrap();
    });
}

#[test]
fn preallocation_starts_small_and_doubles() {
    // Proves a quietly written partition holds a few MiB on disk rather
    // than a whole 256 MiB preallocation step, and that the file grows by
    // doubling as more is written (default LogConfig).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("quiet-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, LogConfig::default(), shard()).await.unwrap();
        log.append(batch(1, now_ms(), 0, 100)).await.unwrap();
        log.flush().await.unwrap();
        let segment = dir.join("00000000000000000000.log");
        let first = std::fs::metadata(&segment).unwrap().len();
        assert_eq!(first, 4 << 20, "first preallocation");
        for tag in 1..=6u64 {
            log.append(batch(1, now_ms(), tag, 1 << 20)).await.unwrap();
        }
        log.flush().await.unwrap();
        let grown = std::fs::metadata(&segment).unwrap().len();
        assert!(log.size_bytes() > 4 << 20, "wrote past the first step: {}", log.size_bytes());
        assert_eq!(grown, 8 << 20, "second preallocation doubles");
        log.close().await.unwrap();
    });
}

#[test]
fn append_verified_skips_only_the_crc() {
    // Proves the broker's produce path (`append_verified`) stores a verified
    // batch like `append`, and still refuses a record set whose headers are
    // not whole batches: only the second hash of the bytes is skipped.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("verified-0");
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(), shard()).await.unwrap();
        let good = batch(3, now_ms(), 1, 100);
        let info = log.append_verified(good.clone()).await.unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 2));
        let cut = good.slice(..good.len() - 1);
        assert!(matches!(log.append_verified(cut).await, Err(EngineError::InvalidBatch(_))));
        log.flush().await.unwrap();
        let read = log.read(0, 1 << 20, None).await.unwrap();
        assert_eq!(read.batch_headers().len(), 1);
        assert_eq!(&read.records[0][16..], &good[16..], "stored as given past the patched offset and leader epoch");
        log.close().await.unwrap();
    });
}
