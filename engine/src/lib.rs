//! # Stele storage engine
//!
//! Crash-safe, segmented partition logs for one shard (one glommio
//! executor, one core). A [`PartitionLog`] stores Kafka v2 record batches
//! byte for byte as they are served, writes them with O_DIRECT through
//! 4 KiB-aligned DMA buffers, groups concurrent appends into one fdatasync,
//! serves recent batches from a tail cache and recovers from torn writes.
//!
//! ```no_run
//! use engine::{LogConfig, PartitionLog, ShardLimits, ShardResources};
//! glommio::LocalExecutorBuilder::default().spawn(|| async {
//!     let shard = ShardResources::new(ShardLimits::default()).unwrap();
//!     let log = PartitionLog::open("/var/lib/stele/orders-0", LogConfig::default(), shard).await.unwrap();
//!     let batch = engine::batch::build_test_batch(1, 1_700_000_000_000, b"hello");
//!     let info = log.append(batch.into()).await.unwrap();
//!     log.wait_durable(info.last_offset + 1).await.unwrap();
//!     let read = log.read(info.base_offset, 1 << 20, None).await.unwrap();
//!     assert_eq!(read.batch_headers().len(), 1);
//!     log.close().await.unwrap();
//! }).unwrap().join().unwrap();
//! ```
//!
//! # Layout
//! - [`partition_log`]: the public log API: append, durability waits,
//!   reads, timestamp lookup, retention, truncation, close.
//! - `recovery`: opening a directory, trusting or repairing what is there.
//! - `segment`: one segment's state and the validating scan.
//! - [`index`]: sparse offset and time indexes and their file format.
//! - [`batch`]: the v2 record batch header: validation and patching.
//! - `storage_file`: O_DIRECT/buffered file access, atomic metadata writes.
//! - `budget`: per-shard memory budgets and write slots.
//! - [`config`]: per-log and per-shard settings.
//! - [`memlock`]: raising RLIMIT_MEMLOCK for glommio.

#![deny(unsafe_code)]

pub mod batch;
mod budget;
pub mod config;
pub mod error;
pub mod index;
pub mod memlock;
mod notify;
pub mod partition_log;
pub mod prefault;
mod recovery;
mod segment;
mod storage_file;

/// The alignment and granularity of O_DIRECT writes.
pub const BLOCK_BYTES: usize = 4096;

pub use budget::ShardResources;
pub use config::{FlushPolicy, LogConfig, ShardLimits};
pub use error::{BatchError, EngineError, Result};
pub use partition_log::{AppendInfo, LogRead, LogStats, PartitionLog, SegmentInfo, TimestampMatch};
pub use storage_file::{probe_io_mode, IoMode};
