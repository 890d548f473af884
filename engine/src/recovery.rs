//! Opening a partition directory: finds the segments, trusts what a clean
//! shutdown left behind, and otherwise validates and repairs.
//!
//! Rules (see docs/storage.md, "Recovery"):
//! - Stray `*.tmp` files and index files without a segment are removed.
//! - The clean-shutdown marker is removed before anything else, so that a
//!   crash after this open is never mistaken for a clean shutdown.
//! - A sealed segment (any but the last) is trusted if both index files are
//!   present and consistent with its size; otherwise it is scanned and its
//!   indexes rebuilt.
//! - The last segment is trusted only if the marker names it with its exact
//!   size; otherwise every batch in it is validated (length, magic, CRC32C,
//!   contiguous offsets) and the file is cut after the last whole batch.
//! - A torn batch in an earlier segment (a crash in the middle of a roll)
//!   cuts the log there: later segments are deleted, since nothing in them
//!   was durable before that tear was.
//! - Damage followed by valid batches is corruption, not a torn write: open
//!   fails with an error naming the file and byte position.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use crate::batch;
use crate::config::LogConfig;
use crate::error::{EngineError, Result};
use crate::index::{OffsetIndex, TimeIndex};
use crate::partition_log::{decode_clean_shutdown, CLEAN_SHUTDOWN_FILE};
use crate::segment::{self, ScanStop, Segment};
use crate::storage_file::{self, IoMode, SegmentFile};

pub(crate) struct Recovered {
    pub(crate) segments: BTreeMap<i64, Segment>,
}

pub(crate) async fn recover(dir: &Path, io_mode: IoMode, config: &LogConfig) -> Result<Recovered> {
    let bases = list_and_tidy(dir).await?;
    let marker_path = dir.join(CLEAN_SHUTDOWN_FILE);
    let marker_bytes = storage_file::read_small_file(&marker_path).await?;
    let marker = marker_bytes.as_deref().and_then(decode_clean_shutdown);
    if marker_bytes.is_some() {
        storage_file::remove_file(&marker_path).await?;
        storage_file::sync_dir(dir).await?;
    }
    let mut segments = BTreeMap::new();
    if bases.is_empty() {
        let file = SegmentFile::open(dir.join(segment::segment_file_name(0)), io_mode, true).await?;
        segments.insert(0, Segment::new_empty(0, Rc::new(file)));
        storage_file::sync_dir(dir).await?;
        return Ok(Recovered { segments });
    }
    let mut cut_after: Option<usize> = None;
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        let file = Rc::new(SegmentFile::open(dir.join(segment::segment_file_name(base)), io_mode, false).await?);
        let size = file.size().await?;
        let next_base = bases.get(i + 1).copied();
        let trusted_end = match (is_last, marker) {
            (false, _) => next_base,
            (true, Some(m)) if m.active_base == base && m.active_size == size => Some(m.next_offset),
            (true, _) => None,
        };
        if let Some(next_offset) = trusted_end {
            if let Some(seg) = load_with_indexes(dir, base, file.clone(), size, next_offset, is_last).await? {
                segments.insert(base, seg);
                continue;
            }
            tracing::warn!(path = %file.path().display(), "index files missing or inconsistent; rebuilding them from the segment");
        } else if marker.is_none() {
            tracing::info!(path = %file.path().display(), "no clean shutdown; validating the active segment");
        }
        let mut seg = Segment::new_empty(base, file.clone());
        let stop = segment::scan_segment(&mut seg, size, config.index_interval_bytes).await?;
        if let ScanStop::Torn { position, reason } = &stop {
            tracing::warn!(
                path = %file.path().display(),
                position,
                next_offset = seg.next_offset,
                %reason,
                "truncating torn tail"
            );
        }
        if seg.size_bytes != size {
            file.truncate(seg.size_bytes).await?;
            file.fdatasync().await?;
        }
        seg.allocated_bytes = seg.size_bytes;
        let torn = matches!(stop, ScanStop::Torn { .. });
        if !is_last {
            if torn || next_base != Some(seg.next_offset) {
                segments.insert(base, seg);
                cut_after = Some(i);
                break;
            }
            seg.finish_time_index();
            segment::write_index_files(dir, seg.base_offset, &seg.offset_index, &seg.time_index, true).await?;
            seg.sealed = true;
        }
        segments.insert(base, seg);
    }
    if let Some(i) = cut_after {
        for &base in &bases[i + 1..] {
            tracing::warn!(base_offset = base, "deleting segment after a torn write in an earlier segment");
            segment::remove_segment_files(dir, base).await?;
        }
        let (_, last) = segments.iter_mut().next_back().expect("a segment");
        let base = last.base_offset;
        segment::remove_index_files(dir, base).await?;
        storage_file::sync_dir(dir).await?;
    }
    Ok(Recovered { segments })
}

/// Lists segment base offsets in order, removing leftovers of interrupted
/// metadata writes and index files whose segment is gone.
async fn list_and_tidy(dir: &Path) -> Result<Vec<i64>> {
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))? {
        let entry = entry.map_err(|e| EngineError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = segment::parse_segment_file_name(&name) {
            bases.push(base);
        } else if name.ends_with(".tmp") {
            storage_file::remove_file(&entry.path()).await?;
        } else if let Some(stem) = name.strip_suffix(".index").or_else(|| name.strip_suffix(".timeindex")) {
            indexes.push((stem.to_string(), entry.path()));
        }
    }
    bases.sort_unstable();
    for (stem, path) in indexes {
        let owner = segment::parse_segment_file_name(&format!("{stem}.log"));
        if owner.is_none_or(|b| bases.binary_search(&b).is_err()) {
            storage_file::remove_file(&path).await?;
        }
    }
    Ok(bases)
}

/// Loads a segment from its index files if they are present and consistent.
async fn load_with_indexes(
    dir: &Path,
    base: i64,
    file: Rc<SegmentFile>,
    size: u64,
    next_offset: i64,
    is_active: bool,
) -> Result<Option<Segment>> {
    let offset_bytes = storage_file::read_small_file(&segment::offset_index_path(dir, base)).await?;
    let time_bytes = storage_file::read_small_file(&segment::time_index_path(dir, base)).await?;
    let (Some(offset_bytes), Some(time_bytes)) = (offset_bytes, time_bytes) else {
        return Ok(None);
    };
    let (Some(offset_index), Some(time_index)) =
        (OffsetIndex::decode(&offset_bytes, base, size.max(1)), TimeIndex::decode(&time_bytes, base))
    else {
        return Ok(None);
    };
    let empty = size == 0;
    if empty != offset_index.entries().is_empty() || next_offset < base || (empty && next_offset != base) {
        return Ok(None);
    }
    let mut seg = Segment::new_empty(base, file.clone());
    seg.size_bytes = size;
    seg.next_offset = next_offset;
    seg.max_timestamp = time_index.last_timestamp().unwrap_or(-1);
    seg.offset_index = offset_index;
    seg.time_index = time_index;
    seg.allocated_bytes = size;
    seg.sealed = !is_active;
    if is_active && !empty {
        // segment.ms counts from the first batch's timestamp.
        let first = file.read_at(0, batch::HEADER_BYTES).await?;
        let header = batch::peek_header(&first, 0, size as usize).map_err(|err| EngineError::Corrupt {
            path: file.path().to_path_buf(),
            position: 0,
            offset: base,
            reason: err.to_string(),
        })?;
        seg.roll_timestamp =
            header.map(|h| if h.max_timestamp >= 0 { h.max_timestamp } else { crate::partition_log::now_ms() });
    }
    Ok(Some(seg))
}
