//! Sparse per-segment indexes: the offset index maps a batch's offset
//! (relative to the segment's base offset) to its byte position; the time
//! index maps the largest timestamp seen so far to the batch that raised it.
//!
//! Both are kept in memory while their segment is active and written whole
//! (to a temporary file, fsynced, renamed) when the segment is sealed: at a
//! roll or a clean shutdown. An index file is therefore complete or absent;
//! one that fails its checks is rebuilt by scanning the segment. The file
//! format is specified in docs/storage.md.

/// File magic of the offset index ("SXOI") and the time index ("SXTI").
pub const OFFSET_INDEX_MAGIC: [u8; 4] = *b"SXOI";
pub const TIME_INDEX_MAGIC: [u8; 4] = *b"SXTI";
pub const INDEX_FORMAT_VERSION: u16 = 1;
/// magic (4) + version (2) + entry size (2) + base offset (8).
pub const INDEX_HEADER_BYTES: usize = 16;
pub const INDEX_TRAILER_BYTES: usize = 4;
pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

/// One offset index entry: the batch starting at `relative_offset` (from the
/// segment's base offset) begins at byte `position` of the segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time index entry: every batch up to and including the one starting
/// at `relative_offset` has a max timestamp of at most `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub fn entries(&self) -> &[OffsetEntry] {
        &self.entries
    }

    pub fn push(&mut self, entry: OffsetEntry) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative_offset > last.relative_offset && entry.position > last.position,
                "offset index must grow: last {last:?}, new {entry:?}"
            );
        }
        self.entries.push(entry);
    }

    /// The entry with the largest offset at or below `relative_offset`: the
    /// place to start scanning for the batch holding that offset.
    pub fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let after = self.entries.partition_point(|e| e.relative_offset <= relative_offset);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// Drops entries for batches at or after `position` (after a truncation).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|e| e.position < position);
        self.entries.truncate(keep);
    }

    pub fn encode(&self, base_offset: i64) -> Vec<u8> {
        let mut out = header(OFFSET_INDEX_MAGIC, OFFSET_ENTRY_BYTES, base_offset, self.entries.len());
        for e in &self.entries {
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        finish(out)
    }

    /// Decodes an index file, or `None` if it is not a consistent index for
    /// a segment of `segment_bytes` bytes at `base_offset`.
    pub fn decode(bytes: &[u8], base_offset: i64, segment_bytes: u64) -> Option<Self> {
        let body = check_frame(bytes, OFFSET_INDEX_MAGIC, OFFSET_ENTRY_BYTES, base_offset)?;
        let mut index = OffsetIndex::default();
        for raw in body.chunks_exact(OFFSET_ENTRY_BYTES) {
            let entry = OffsetEntry {
                relative_offset: u32::from_be_bytes(raw[0..4].try_into().ok()?),
                position: u32::from_be_bytes(raw[4..8].try_into().ok()?),
            };
            let grows = index
                .entries
                .last()
                .is_none_or(|l| entry.relative_offset > l.relative_offset && entry.position > l.position);
            if !grows || u64::from(entry.position) >= segment_bytes {
                return None;
            }
            index.entries.push(entry);
        }
        Some(index)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }

    pub fn last_timestamp(&self) -> Option<i64> {
        self.entries.last().map(|e| e.timestamp)
    }

    /// Adds an entry if it raises the indexed timestamp.
    pub fn push(&mut self, entry: TimeEntry) {
        if let Some(last) = self.entries.last() {
            if entry.timestamp <= last.timestamp {
                return;
            }
            assert!(
                entry.relative_offset > last.relative_offset,
                "time index offsets must grow: last {last:?}, new {entry:?}"
            );
        }
        self.entries.push(entry);
    }

    /// The last entry whose timestamp is strictly below `timestamp`: every
    /// batch up to and including that entry's batch is older than the target,
    /// so a search for the first batch at or after it may start there.
    pub fn lookup_before(&self, timestamp: i64) -> Option<TimeEntry> {
        let after = self.entries.partition_point(|e| e.timestamp < timestamp);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|e| e.relative_offset < relative_offset);
        self.entries.truncate(keep);
    }

    pub fn encode(&self, base_offset: i64) -> Vec<u8> {
        let mut out = header(TIME_INDEX_MAGIC, TIME_ENTRY_BYTES, base_offset, self.entries.len());
        for e in &self.entries {
            out.extend_from_slice(&e.timestamp.to_be_bytes());
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        finish(out)
    }

    pub fn decode(bytes: &[u8], base_offset: i64) -> Option<Self> {
        let body = check_frame(bytes, TIME_INDEX_MAGIC, TIME_ENTRY_BYTES, base_offset)?;
        let mut index = TimeIndex::default();
        for raw in body.chunks_exact(TIME_ENTRY_BYTES) {
            let entry = TimeEntry {
                timestamp: i64::from_be_bytes(raw[0..8].try_into().ok()?),
                relative_offset: u32::from_be_bytes(raw[8..12].try_into().ok()?),
            };
            let grows = index
                .entries
                .last()
                .is_none_or(|l| entry.timestamp > l.timestamp && entry.relative_offset > l.relative_offset);
            if !grows {
                return None;
            }
            index.entries.push(entry);
        }
        Some(index)
    }
}

fn header(magic: [u8; 4], entry_bytes: usize, base_offset: i64, entries: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_BYTES + entries * entry_bytes + INDEX_TRAILER_BYTES);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&INDEX_FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&(entry_bytes as u16).to_be_bytes());
    out.extend_from_slice(&base_offset.to_be_bytes());
    out
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Checks magic, version, entry size, base offset and trailing CRC32C and
/// returns the entries' bytes.
fn check_frame(bytes: &[u8], magic: [u8; 4], entry_bytes: usize, base_offset: i64) -> Option<&[u8]> {
    if bytes.len() < INDEX_HEADER_BYTES + INDEX_TRAILER_BYTES {
        return None;
    }
    let (framed, trailer) = bytes.split_at(bytes.len() - INDEX_TRAILER_BYTES);
    if crc32c::crc32c(framed) != u32::from_be_bytes(trailer.try_into().ok()?) {
        return None;
    }
    let ok = framed[0..4] == magic
        && u16::from_be_bytes(framed[4..6].try_into().ok()?) == INDEX_FORMAT_VERSION
        && usize::from(u16::from_be_bytes(framed[6..8].try_into().ok()?)) == entry_bytes
        && i64::from_be_bytes(framed[8..16].try_into().ok()?) == base_offset;
    let body = &framed[INDEX_HEADER_BYTES..];
    (ok && body.len() % entry_bytes == 0).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OffsetIndex {
        let mut index = OffsetIndex::default();
        for (rel, pos) in [(0, 0), (10, 4100), (25, 8300), (40, 12500)] {
            index.push(OffsetEntry { relative_offset: rel, position: pos });
        }
        index
    }

    #[test]
    fn offset_lookup_finds_the_floor_entry() {
        let index = sample();
        assert_eq!(index.lookup(0).unwrap().position, 0);
        assert_eq!(index.lookup(9).unwrap().position, 0);
        assert_eq!(index.lookup(10).unwrap().position, 4100);
        assert_eq!(index.lookup(39).unwrap().position, 8300);
        assert_eq!(index.lookup(u32::MAX).unwrap().position, 12500);
        assert_eq!(OffsetIndex::default().lookup(5), None);
    }

    #[test]
    fn offset_index_round_trips_and_rejects_damage() {
        let index = sample();
        let bytes = index.encode(1000);
        assert_eq!(OffsetIndex::decode(&bytes, 1000, 20_000), Some(index.clone()));
        // Wrong base offset, too small a segment, flipped byte, cut file.
        assert_eq!(OffsetIndex::decode(&bytes, 999, 20_000), None);
        assert_eq!(OffsetIndex::decode(&bytes, 1000, 12_500), None);
        let mut flipped = bytes.clone();
        flipped[20] ^= 0x40;
        assert_eq!(OffsetIndex::decode(&flipped, 1000, 20_000), None);
        assert_eq!(OffsetIndex::decode(&bytes[..bytes.len() - 3], 1000, 20_000), None);
    }

    #[test]
    fn truncation_drops_entries_at_and_after_the_cut() {
        let mut index = sample();
        index.truncate_to_position(8300);
        assert_eq!(index.entries().len(), 2);
        let mut times = TimeIndex::default();
        times.push(TimeEntry { timestamp: 5, relative_offset: 0 });
        times.push(TimeEntry { timestamp: 9, relative_offset: 7 });
        times.truncate_to_offset(7);
        assert_eq!(times.entries().len(), 1);
    }

    #[test]
    fn time_lookup_is_strictly_before_the_target() {
        let mut index = TimeIndex::default();
        index.push(TimeEntry { timestamp: 100, relative_offset: 0 });
        index.push(TimeEntry { timestamp: 90, relative_offset: 3 }); // not a raise: ignored
        index.push(TimeEntry { timestamp: 200, relative_offset: 10 });
        index.push(TimeEntry { timestamp: 300, relative_offset: 20 });
        assert_eq!(index.entries().len(), 3);
        assert_eq!(index.lookup_before(100), None);
        assert_eq!(index.lookup_before(101).unwrap().relative_offset, 0);
        assert_eq!(index.lookup_before(300).unwrap().relative_offset, 10);
        assert_eq!(index.lookup_before(i64::MAX).unwrap().relative_offset, 20);
        let bytes = index.encode(7);
        assert_eq!(TimeIndex::decode(&bytes, 7), Some(index));
    }
}
