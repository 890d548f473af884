//! One segment of a partition log: a file `<base offset, 20 digits>.log`
//! holding whole v2 record batches back to back, and its in-memory state
//! (size, next offset, timestamps, sparse indexes).
//!
//! Invariants: batches are contiguous in offsets and bytes; `size_bytes` is
//! the end of the last appended batch; index entries point at batch starts
//! below `size_bytes`. A segment is *sealed* once its data is written,
//! fsynced, the file truncated to `size_bytes` and its index files written;
//! only sealed segments may be deleted by retention.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HeaderParse};
use crate::error::{EngineError, Result};
use crate::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use crate::storage_file::{self, SegmentFile};

/// Bytes read at a time when scanning a segment.
const SCAN_READ_BYTES: usize = 1 << 20;

pub(crate) fn segment_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

pub(crate) fn offset_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}

pub(crate) fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

/// Writes a segment's two index files: atomically and durably when
/// `durable`, otherwise in place without waiting for the disk (what a roll
/// does). A sealed segment's indexes are a function of its bytes, written
/// once and framed with a CRC32C, and recovery rebuilds any that a crash
/// left missing or torn, so a roll does not need their durability; skipping
/// it saves two fdatasyncs, two renames and two directory syncs per roll,
/// which at a busy disk's rolls stalled acknowledgements
/// (docs/benchmarks.md).
pub(crate) async fn write_index_files(
    dir: &Path,
    base_offset: i64,
    offset_index: &OffsetIndex,
    time_index: &TimeIndex,
    durable: bool,
) -> Result<()> {
    let files = [
        (offset_index_path(dir, base_offset), offset_index.encode(base_offset)),
        (time_index_path(dir, base_offset), time_index.encode(base_offset)),
    ];
    for (path, contents) in files {
        match durable {
            true => storage_file::write_file_atomically(&path, contents).await?,
            false => storage_file::write_file_lazily(&path, contents).await?,
        }
    }
    Ok(())
}

/// Removes a segment's index files, if present.
pub(crate) async fn remove_index_files(dir: &Path, base_offset: i64) -> Result<()> {
    storage_file::remove_file(&offset_index_path(dir, base_offset)).await?;
    storage_file::remove_file(&time_index_path(dir, base_offset)).await
}

/// Removes a segment's files. The log file goes first: an index without its
/// segment is an orphan that recovery removes, while a segment without its
/// index would be rebuilt and come back.
pub(crate) async fn remove_segment_files(dir: &Path, base_offset: i64) -> Result<()> {
    storage_file::remove_file(&dir.join(segment_file_name(base_offset))).await?;
    remove_index_files(dir, base_offset).await
}

/// Parses `00000000000000000123.log` into 123.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) file: Rc<SegmentFile>,
    /// End of the last appended batch (staged or written).
    pub(crate) size_bytes: u64,
    /// Offset after the last appended batch.
    pub(crate) next_offset: i64,
    /// Largest batch max timestamp, -1 when the segment is empty.
    pub(crate) max_timestamp: i64,
    /// The timestamp that `segment.ms` is measured from: the first batch's
    /// max timestamp, as in Kafka, or when that batch has none (-1), the
    /// time the segment was created or opened.
    pub(crate) roll_timestamp: Option<i64>,
    created_ms: i64,
    /// Base offset of the newest batch, `None` when the segment is empty.
    pub(crate) last_batch_offset: Option<i64>,
    pub(crate) offset_index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    /// Bytes the file is preallocated to (its length on disk while active).
    pub(crate) allocated_bytes: u64,
    pub(crate) sealed: bool,
}

impl Segment {
    pub(crate) fn new_empty(base_offset: i64, file: Rc<SegmentFile>) -> Self {
        Segment {
            base_offset,
            file,
            size_bytes: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            roll_timestamp: None,
            created_ms: crate::partition_log::now_ms(),
            last_batch_offset: None,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
            allocated_bytes: 0,
            sealed: false,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    /// Accounts one batch appended at `position` (== `size_bytes`), adding
    /// sparse index entries every `index_interval_bytes`.
    pub(crate) fn record_batch(&mut self, header: &BatchHeader, index_interval_bytes: u32) {
        assert_eq!(header.base_offset, self.next_offset, "batches must be contiguous in offsets");
        let position = self.size_bytes;
        let relative_offset = relative(header.base_offset, self.base_offset);
        let interval = u64::from(index_interval_bytes);
        if self.offset_index.entries().is_empty() || self.bytes_since_offset_entry >= interval {
            self.offset_index.push(OffsetEntry {
                relative_offset,
                position: u32::try_from(position).expect("segment positions fit in 32 bits"),
            });
            self.bytes_since_offset_entry = 0;
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            let first = self.time_index.entries().is_empty();
            if first || self.bytes_since_time_entry >= interval {
                self.time_index.push(TimeEntry { timestamp: self.max_timestamp, relative_offset });
                self.bytes_since_time_entry = 0;
            }
        }
        if self.roll_timestamp.is_none() {
            let stamped = header.max_timestamp >= 0;
            self.roll_timestamp = Some(if stamped { header.max_timestamp } else { self.created_ms });
        }
        self.bytes_since_offset_entry += header.size_bytes as u64;
        self.bytes_since_time_entry += header.size_bytes as u64;
        self.size_bytes += header.size_bytes as u64;
        self.next_offset = header.last_offset() + 1;
        self.last_batch_offset = Some(header.base_offset);
    }

    /// Makes sure the time index's last entry carries the segment's max
    /// timestamp, so that a sealed segment's max timestamp can be read back
    /// from its time index.
    pub(crate) fn finish_time_index(&mut self) {
        let Some(last_batch_offset) = self.last_batch_offset else {
            return;
        };
        if self.max_timestamp > self.time_index.last_timestamp().unwrap_or(i64::MIN) {
            self.time_index.push(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: relative(last_batch_offset, self.base_offset),
            });
        }
    }
}

pub(crate) fn relative(offset: i64, base_offset: i64) -> u32 {
    u32::try_from(offset - base_offset).expect("relative offsets fit in 32 bits")
}

/// Why a scan stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanStop {
    /// Clean end: the next bytes are the end of the data.
    End,
    /// A partial or garbled batch with nothing valid after it: a torn write.
    Torn { position: u64, reason: String },
}

/// Scans `segment`'s file from byte 0 up to `end`, validating every batch
/// (length, magic, CRC32C, contiguous offsets) and rebuilding the segment's
/// size, offsets, timestamps and indexes from what it finds. A damaged batch
/// followed by a valid one is corruption, not a torn write, and is an error:
/// silently cutting the log there would drop acknowledged records.
pub(crate) async fn scan_segment(segment: &mut Segment, end: u64, index_interval_bytes: u32) -> Result<ScanStop> {
    let base = segment.base_offset;
    let file = segment.file.clone();
    *segment = Segment::new_empty(base, file.clone());
    let mut window = Bytes::new();
    let mut window_start = 0u64;
    loop {
        let position = segment.size_bytes;
        if position >= end {
            return Ok(ScanStop::End);
        }
        let in_window = (position - window_start) as usize;
        let available = window.len().saturating_sub(in_window);
        let parsed = if available == 0 {
            HeaderParse::Incomplete { needed: None }
        } else {
            batch::parse_header(&window[in_window..], position as usize, (end - position) as usize)
        };
        match parsed {
            HeaderParse::Complete(header) => {
                let bytes = &window[in_window..in_window + header.size_bytes];
                if let Err(err) = batch::check_crc(bytes, &header, position as usize) {
                    let reason = err.to_string();
                    return torn_or_corrupt(&file, segment, position, header.size_bytes, end, reason).await;
                }
                if header.base_offset != segment.next_offset {
                    return torn_or_corrupt(
                        &file,
                        segment,
                        position,
                        header.size_bytes,
                        end,
                        format!("batch has base offset {}, expected {}", header.base_offset, segment.next_offset),
                    )
                    .await;
                }
                segment.record_batch(&header, index_interval_bytes);
            }
            HeaderParse::Incomplete { needed } => {
                let want = needed.unwrap_or(batch::HEADER_BYTES).max(SCAN_READ_BYTES);
                let len = want.min((end - position) as usize);
                let read = file.read_at(position, len).await?;
                let progressed = read.len() > available;
                window = read;
                window_start = position;
                if !progressed {
                    // The file ends inside this batch.
                    return Ok(ScanStop::Torn {
                        position,
                        reason: format!("file ends inside the batch at byte {position}"),
                    });
                }
            }
            HeaderParse::Invalid(err) => {
                return Ok(ScanStop::Torn { position, reason: err.to_string() });
            }
        }
    }
}

async fn torn_or_corrupt(
    file: &SegmentFile,
    segment: &Segment,
    position: u64,
    size_bytes: usize,
    end: u64,
    reason: String,
) -> Result<ScanStop> {
    let next = position + size_bytes as u64;
    if next < end {
        let probe = file.read_at(next, batch::HEADER_BYTES).await?;
        if let HeaderParse::Complete(_) | HeaderParse::Incomplete { needed: Some(_) } =
            batch::parse_header(&probe, next as usize, (end - next) as usize)
        {
            let after = file.read_at(next, (end - next).min(64 << 20) as usize).await?;
            if let Ok(header) = batch::validate_batch(&after, next as usize, after.len()) {
                if header.base_offset >= segment.next_offset {
                    return Err(EngineError::Corrupt {
                        path: file.path().to_path_buf(),
                        position,
                        offset: segment.next_offset,
                        reason: format!("{reason}; valid batches follow, so this is not a torn write"),
                    });
                }
            }
        }
    }
    Ok(ScanStop::Torn { position, reason })
}
