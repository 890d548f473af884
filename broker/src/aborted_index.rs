//! A partition's aborted-transaction index: Kafka's `.txnindex`, one file per
//! partition (`<partition dir>/aborted_transactions`, format in
//! docs/storage.md), and the small-file helpers the partition's transaction
//! state uses (the producer state snapshot is written with them too).
//!
//! Every ABORT marker that ended a transaction on the partition adds one
//! entry: (producer id, first offset, marker offset, LSO when written).
//! read_committed fetches are answered with the entries overlapping the
//! fetched range, so consumers can drop the aborted batches.
//!
//! Invariants:
//! - `entries` is sorted by marker offset (`last_offset`), strictly
//!   increasing: markers are appended in offset order and each is added here
//!   before any await after its append;
//! - every entry with `last_offset <= synced_through` is in the file and
//!   covered by an fdatasync; the file holds no entry that is not in memory
//!   except ones below the log start (dropped from memory, counted in
//!   `dead_in_file`, removed by the next rewrite);
//! - file writes are serialized by `writing` (FIFO), so an entry is written
//!   only after every earlier one is durable: a crash leaves whole entries
//!   and at most one torn one, at the end.
//!
//! The entries of the retained log are held in memory (36 bytes each; see
//! docs/transactions.md for the bound).

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use engine::EngineError;
use glommio::io::{BufferedFile, Directory, OpenOptions};
use glommio::sync::Semaphore;

/// The index file's name in a partition directory.
pub const ABORTED_INDEX_FILE: &str = "aborted_transactions";
const MAGIC: [u8; 4] = *b"SXAT";
const VERSION: u16 = 1;
/// Magic, version, entry size.
pub const HEADER_BYTES: usize = 8;
/// producer id, first offset, last offset, LSO (i64 each), CRC32C (u32).
pub const ENTRY_BYTES: usize = 36;
/// A rewrite drops the entries below the log start once at least this many
/// are dead (and at least as many as are live), so a rewrite costs no more
/// than the appends that made it due.
const DEAD_ENTRIES_REWRITE_MIN: usize = 256;

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
    /// The LSO when the marker was written (see `CompletedTxn`).
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut out = [0u8; ENTRY_BYTES];
        out[0..8].copy_from_slice(&self.producer_id.to_be_bytes());
        out[8..16].copy_from_slice(&self.first_offset.to_be_bytes());
        out[16..24].copy_from_slice(&self.last_offset.to_be_bytes());
        out[24..32].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        let crc = crc32c::crc32c(&out[..32]);
        out[32..36].copy_from_slice(&crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<AbortedTxn> {
        let field = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let crc = u32::from_be_bytes(bytes[32..36].try_into().expect("4 bytes"));
        (crc32c::crc32c(&bytes[..32]) == crc).then(|| AbortedTxn {
            producer_id: field(0),
            first_offset: field(8),
            last_offset: field(16),
            last_stable_offset: field(24),
        })
    }
}

fn header() -> [u8; HEADER_BYTES] {
    let mut out = [0u8; HEADER_BYTES];
    out[..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_be_bytes());
    out[6..8].copy_from_slice(&(ENTRY_BYTES as u16).to_be_bytes());
    out
}

/// What a read of the index file found.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodedIndex {
    pub entries: Vec<AbortedTxn>,
    /// Bytes after the last whole entry: a torn write to cut off.
    pub torn_bytes: usize,
}

/// Reads an index file's bytes. A damaged entry at the very end is a torn
/// write (reported in `torn_bytes`); a bad header, a damaged entry followed
/// by more bytes, or entries out of order are corruption (`Err`).
pub fn decode_index(bytes: &[u8]) -> Result<DecodedIndex, String> {
    if bytes.len() < HEADER_BYTES {
        // A crash while the file was first created: nothing was in it yet.
        return Ok(DecodedIndex { entries: Vec::new(), torn_bytes: bytes.len() });
    }
    if bytes[..HEADER_BYTES] != header() {
        return Err(format!("bad header {:?}", &bytes[..HEADER_BYTES]));
    }
    let mut entries: Vec<AbortedTxn> = Vec::new();
    let mut position = HEADER_BYTES;
    while position + ENTRY_BYTES <= bytes.len() {
        let Some(entry) = AbortedTxn::decode(&bytes[position..position + ENTRY_BYTES]) else {
            if position + ENTRY_BYTES == bytes.len() {
                return Ok(DecodedIndex { entries, torn_bytes: ENTRY_BYTES });
            }
            return Err(format!("entry at byte {position} fails its CRC and is not the last"));
        };
        if entries.last().is_some_and(|last| last.last_offset >= entry.last_offset)
            || entry.first_offset > entry.last_offset
        {
            return Err(format!("entry at byte {position} is out of order: {entry:?}"));
        }
        entries.push(entry);
        position += ENTRY_BYTES;
    }
    Ok(DecodedIndex { entries, torn_bytes: bytes.len() - position })
}

/// The aborted transactions a read_committed fetch of `[fetch_offset,
/// last_offset]` must report: those ending at or after `fetch_offset` and
/// starting at or before `last_offset` (Kafka's `collectAbortedTxns`).
/// `entries` is sorted by marker offset; the scan stops at the first entry
/// whose recorded LSO is past `last_offset`, since no transaction starting
/// at or before `last_offset` was still open when that marker was written.
pub fn collect(entries: &[AbortedTxn], fetch_offset: i64, last_offset: i64) -> Vec<AbortedTxn> {
    let from = entries.partition_point(|entry| entry.last_offset < fetch_offset);
    let mut found = Vec::new();
    for entry in &entries[from..] {
        if entry.first_offset <= last_offset {
            found.push(*entry);
        }
        if entry.last_stable_offset > last_offset {
            break;
        }
    }
    found
}

/// The index of one partition: entries in memory, durably mirrored in its file.
pub struct AbortedIndex {
    path: PathBuf,
    entries: RefCell<Vec<AbortedTxn>>,
    /// Open for appends once the file exists (it is created by the first abort).
    file: RefCell<Option<Rc<BufferedFile>>>,
    /// Entries in the file, dead ones included: the next append's position.
    file_entries: Cell<usize>,
    dead_in_file: Cell<usize>,
    /// Marker offset of the newest entry known to be durable in the file.
    synced_through: Cell<i64>,
    /// An entry was added out of order (replay) or the file needs cutting:
    /// the next write rewrites the whole file.
    rewrite_due: Cell<bool>,
    /// An earlier write failed: nothing later is durable.
    failed: Cell<bool>,
    writing: Semaphore,
}

impl AbortedIndex {
    /// Loads the index of the partition in `dir` whose log holds
    /// `[log_start_offset, log_end_offset)`. Entries whose marker is at or
    /// past the log end were cut by a crash with the marker (the transaction
    /// is open again and its coordinator writes the marker again); entries
    /// below the log start are dropped. Returns `None` when the file is
    /// damaged beyond a torn tail: the caller then rebuilds it from the log.
    pub async fn open(
        dir: &Path,
        log_start_offset: i64,
        log_end_offset: i64,
    ) -> Result<Option<AbortedIndex>, EngineError> {
        let path = dir.join(ABORTED_INDEX_FILE);
        let index = AbortedIndex::empty(path.clone(), false);
        let Some(bytes) = read_small_file(&path).await? else {
            return Ok(Some(index));
        };
        let decoded = match decode_index(&bytes) {
            Ok(decoded) => decoded,
            Err(reason) => {
                tracing::warn!(path = %path.display(), reason, "aborted-transaction index is damaged; rebuilding it from the log");
                return Ok(None);
            }
        };
        let loaded = decoded.entries.len();
        let entries: Vec<AbortedTxn> = decoded
            .entries
            .into_iter()
            .filter(|entry| entry.last_offset < log_end_offset && entry.last_offset >= log_start_offset)
            .collect();
        if decoded.torn_bytes > 0 || entries.len() != loaded {
            tracing::warn!(
                path = %path.display(),
                torn_bytes = decoded.torn_bytes,
                dropped = loaded - entries.len(),
                "aborted-transaction index cut to the recovered log"
            );
            index.rewrite_due.set(true);
        }
        index.synced_through.set(entries.last().map_or(-1, |entry| entry.last_offset));
        index.file_entries.set(loaded);
        *index.entries.borrow_mut() = entries;
        if index.rewrite_due.get() {
            index.sync_all().await?;
        } else {
            let file =
                OpenOptions::new().write(true).read(true).buffered_open(&path).await.map_err(|err| index.io(err))?;
            *index.file.borrow_mut() = Some(Rc::new(file));
        }
        Ok(Some(index))
    }

    /// An index with no entries. With `replace_existing` (a damaged file is
    /// being rebuilt) the file is rewritten by the next `sync_all`; without,
    /// the file is created by the first entry.
    pub fn empty(path: PathBuf, replace_existing: bool) -> AbortedIndex {
        AbortedIndex {
            path,
            entries: RefCell::new(Vec::new()),
            file: RefCell::new(None),
            file_entries: Cell::new(0),
            dead_in_file: Cell::new(0),
            synced_through: Cell::new(-1),
            rewrite_due: Cell::new(replace_existing),
            failed: Cell::new(false),
            writing: Semaphore::new(1),
        }
    }

    /// Adds the entry of an abort just appended to the log, then makes it
    /// durable. The entry is in memory (and seen by fetches) from the first
    /// poll, before any await: call it right after the marker's append.
    pub async fn append(&self, entry: AbortedTxn) -> Result<(), EngineError> {
        self.insert(entry);
        self.sync_through(entry.last_offset).await
    }

    /// Adds an entry found again by a replay of the log, unless it is
    /// already there (the index and the log are made durable separately);
    /// `sync_all` then writes what was added.
    pub fn add_replayed(&self, entry: AbortedTxn) {
        let known = {
            let entries = self.entries.borrow();
            entries.binary_search_by_key(&entry.last_offset, |known| known.last_offset).is_ok()
        };
        if !known {
            self.insert(entry);
        }
    }

    fn insert(&self, entry: AbortedTxn) {
        let mut entries = self.entries.borrow_mut();
        match entries.last() {
            Some(last) if last.last_offset >= entry.last_offset => {
                // Only a replay finds an older marker missing here (its
                // entry's write failed before a crash): keep the order and
                // rewrite the file.
                let at = entries.partition_point(|known| known.last_offset < entry.last_offset);
                assert!(
                    entries.get(at).is_none_or(|known| known.last_offset != entry.last_offset),
                    "marker offset {} indexed twice",
                    entry.last_offset
                );
                entries.insert(at, entry);
                self.rewrite_due.set(true);
            }
            _ => entries.push(entry),
        }
    }

    /// Waits until every entry with a marker offset up to `last_offset` is
    /// durable, writing whatever is not (one fdatasync for all of them).
    pub async fn sync_through(&self, last_offset: i64) -> Result<(), EngineError> {
        let _turn = self.writing.acquire_permit(1).await.map_err(|_| self.failure("index closed"))?;
        if self.failed.get() {
            return Err(self.failure("an earlier write of the index failed"));
        }
        if self.synced_through.get() >= last_offset && !self.rewrite_due.get() {
            return Ok(());
        }
        let result = self.write_pending().await;
        if result.is_err() {
            self.failed.set(true);
        }
        result
    }

    /// Waits until every entry added so far is durable (the producer state
    /// snapshot relies on it before it may cover their markers).
    pub async fn sync_all(&self) -> Result<(), EngineError> {
        let newest = self.entries.borrow().last().map_or(-1, |entry| entry.last_offset);
        self.sync_through(newest).await
    }

    async fn write_pending(&self) -> Result<(), EngineError> {
        if self.rewrite_due.get() || self.file.borrow().is_none() {
            return self.rewrite().await;
        }
        let (bytes, newest, count) = {
            let entries = self.entries.borrow();
            let from = entries.partition_point(|entry| entry.last_offset <= self.synced_through.get());
            let mut bytes = Vec::with_capacity((entries.len() - from) * ENTRY_BYTES);
            for entry in &entries[from..] {
                bytes.extend_from_slice(&entry.encode());
            }
            (bytes, entries.last().map_or(-1, |entry| entry.last_offset), entries.len() - from)
        };
        if count == 0 {
            return Ok(());
        }
        let file = self.file.borrow().clone().expect("checked above");
        let position = (HEADER_BYTES + self.file_entries.get() * ENTRY_BYTES) as u64;
        let len = bytes.len();
        let written = file.write_at(bytes, position).await.map_err(|err| self.io(err))?;
        if written != len {
            return Err(EngineError::Io { path: self.path.clone(), source: std::io::Error::other("short write") });
        }
        file.fdatasync().await.map_err(|err| self.io(err))?;
        self.file_entries.set(self.file_entries.get() + count);
        self.synced_through.set(newest);
        Ok(())
    }

    /// Writes the live entries to a new file and swaps it in atomically.
    async fn rewrite(&self) -> Result<(), EngineError> {
        let (bytes, newest, count) = {
            let entries = self.entries.borrow();
            let mut bytes = Vec::with_capacity(HEADER_BYTES + entries.len() * ENTRY_BYTES);
            bytes.extend_from_slice(&header());
            for entry in entries.iter() {
                bytes.extend_from_slice(&entry.encode());
            }
            (bytes, entries.last().map_or(-1, |entry| entry.last_offset), entries.len())
        };
        if let Some(old) = self.file.borrow_mut().take() {
            // Appends only ever use the newest handle; the old one closes
            // when dropped.
            drop(old);
        }
        write_file_atomically(&self.path, bytes).await?;
        let file =
            OpenOptions::new().write(true).read(true).buffered_open(&self.path).await.map_err(|err| self.io(err))?;
        *self.file.borrow_mut() = Some(Rc::new(file));
        self.file_entries.set(count);
        self.dead_in_file.set(0);
        self.synced_through.set(newest);
        self.rewrite_due.set(false);
        Ok(())
    }

    /// Drops the entries whose marker lies below the log start (their
    /// segment is gone, as Kafka deletes a `.txnindex` with its segment), and
    /// rewrites the file once enough of it is dead.
    pub async fn remove_below(&self, log_start_offset: i64) -> Result<(), EngineError> {
        let removed = {
            let mut entries = self.entries.borrow_mut();
            let cut = entries.partition_point(|entry| entry.last_offset < log_start_offset);
            entries.drain(..cut);
            cut
        };
        let written_removed = removed.min(self.file_entries.get().saturating_sub(self.dead_in_file.get()));
        self.dead_in_file.set(self.dead_in_file.get() + written_removed);
        let live = self.entries.borrow().len();
        if self.dead_in_file.get() >= DEAD_ENTRIES_REWRITE_MIN.max(live) {
            self.rewrite_due.set(true);
            self.sync_all().await?;
        }
        Ok(())
    }

    /// The entries a read_committed fetch of `[fetch_offset, last_offset]` reports.
    pub fn collect(&self, fetch_offset: i64, last_offset: i64) -> Vec<AbortedTxn> {
        collect(&self.entries.borrow(), fetch_offset, last_offset)
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }

    /// The marker offset of the newest entry, -1 when there is none.
    pub fn newest_last_offset(&self) -> i64 {
        self.entries.borrow().last().map_or(-1, |entry| entry.last_offset)
    }

    fn io(&self, err: glommio::GlommioError<()>) -> EngineError {
        EngineError::Io { path: self.path.clone(), source: err.into() }
    }

    fn failure(&self, reason: &str) -> EngineError {
        EngineError::Failed { path: self.path.clone(), reason: reason.to_string() }
    }
}

/// Replaces `path` with `contents`: written to `<path>.tmp` (which the
/// engine deletes on open if a crash leaves it), fdatasync, rename, fsync of
/// the directory. The file is therefore whole or as before.
pub async fn write_file_atomically(path: &Path, contents: Vec<u8>) -> Result<(), EngineError> {
    let io = |at: &Path, err: glommio::GlommioError<()>| EngineError::Io { path: at.to_path_buf(), source: err.into() };
    let tmp = path.with_extension("tmp");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(&tmp)
        .await
        .map_err(|e| io(&tmp, e))?;
    let len = contents.len();
    let written = file.write_at(contents, 0).await.map_err(|e| io(&tmp, e))?;
    if written != len {
        return Err(EngineError::Io { path: tmp, source: std::io::Error::other("short write") });
    }
    file.fdatasync().await.map_err(|e| io(&tmp, e))?;
    file.close().await.map_err(|e| io(&tmp, e))?;
    glommio::io::rename(&tmp, path).await.map_err(|e| io(path, e))?;
    let dir = path.parent().expect("partition files live in a directory");
    let handle = Directory::open(dir).await.map_err(|e| io(dir, e))?;
    handle.sync().await.map_err(|e| io(dir, e))?;
    handle.close().await.map_err(|e| io(dir, e))
}

/// The whole contents of a small file, `None` when it does not exist.
pub async fn read_small_file(path: &Path) -> Result<Option<Vec<u8>>, EngineError> {
    let io = |err: std::io::Error| EngineError::Io { path: path.to_path_buf(), source: err };
    let file = match BufferedFile::open(path).await {
        Ok(file) => file,
        Err(err) => {
            let err: std::io::Error = err.into();
            if err.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(io(err));
        }
    };
    let size = file.file_size().await.map_err(|e| io(e.into()))?;
    let data = file.read_at(0, size as usize).await.map_err(|e| io(e.into()))?.to_vec();
    file.close().await.map_err(|e| io(e.into()))?;
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(first_offset: i64, last_offset: i64, last_stable_offset: i64) -> AbortedTxn {
        AbortedTxn { producer_id: 7, first_offset, last_offset, last_stable_offset }
    }

    fn file_of(entries: &[AbortedTxn]) -> Vec<u8> {
        let mut bytes = header().to_vec();
        for entry in entries {
            bytes.extend_from_slice(&entry.encode());
        }
        bytes
    }

    #[test]
    fn entries_round_trip_through_the_file_format() {
        // Proves a file of whole entries decodes to the same entries, big-endian at the
        // documented positions, with nothing torn.
        let entries = [txn(0, 5, 6), AbortedTxn { producer_id: -2, ..txn(3, 9, 4) }];
        let bytes = file_of(&entries);
        assert_eq!(bytes.len(), HEADER_BYTES + 2 * ENTRY_BYTES);
        assert_eq!(&bytes[..4], b"SXAT");
        assert_eq!(&bytes[HEADER_BYTES + 16..HEADER_BYTES + 24], &5i64.to_be_bytes());
        assert_eq!(decode_index(&bytes), Ok(DecodedIndex { entries: entries.to_vec(), torn_bytes: 0 }));
    }

    #[test]
    fn a_torn_last_entry_is_cut_and_damage_before_the_end_is_corruption() {
        // Proves a partial or CRC-failing last entry is a torn write (reported, the
        // entries before kept), while a damaged entry followed by another, a bad
        // header, or entries out of order fail the decode.
        let entries = [txn(0, 5, 6), txn(6, 8, 9)];
        let whole = file_of(&entries);
        let partial = &whole[..whole.len() - 10];
        assert_eq!(decode_index(partial), Ok(DecodedIndex { entries: entries[..1].to_vec(), torn_bytes: 26 }));
        let mut bad_crc = whole.clone();
        bad_crc[whole.len() - 1] ^= 1;
        assert_eq!(
            decode_index(&bad_crc),
            Ok(DecodedIndex { entries: entries[..1].to_vec(), torn_bytes: ENTRY_BYTES })
        );
        let mut middle = whole.clone();
        middle[HEADER_BYTES + 3] ^= 1;
        assert!(decode_index(&middle).is_err());
        let mut bad_header = whole.clone();
        bad_header[0] = b'X';
        assert!(decode_index(&bad_header).is_err());
        assert!(decode_index(&file_of(&[txn(6, 8, 9), txn(0, 5, 6)])).is_err());
        assert_eq!(decode_index(&whole[..3]), Ok(DecodedIndex { entries: vec![], torn_bytes: 3 }));
    }

    #[test]
    fn collect_returns_overlapping_transactions_and_stops_at_a_stable_point() {
        // Proves a fetch of [fetch, last] gets the aborted transactions ending at or after
        // the fetch offset and starting at or before the last fetched offset, and that the
        // scan ends at the first entry whose recorded LSO lies past the range.
        let entries = [txn(0, 4, 5), txn(2, 10, 11), txn(12, 15, 16), txn(20, 25, 26), txn(17, 30, 31)];
        assert_eq!(collect(&entries, 0, 3), vec![txn(0, 4, 5)]);
        assert_eq!(collect(&entries, 5, 12), vec![txn(2, 10, 11), txn(12, 15, 16)]);
        assert_eq!(collect(&entries, 11, 11), vec![]);
        // An entry recorded while another transaction (from 17) was open does not stop
        // the scan, so the long transaction ending at 30 is found.
        let open = [txn(20, 25, 17), txn(17, 30, 31)];
        assert_eq!(collect(&open, 18, 19), vec![txn(17, 30, 31)]);
        assert_eq!(collect(&entries, 31, 40), vec![]);
    }

    #[test]
    fn index_persists_cuts_and_rebuilds_on_disk() {
        // Proves appended entries survive a reopen, entries at or past the recovered log
        // end are dropped (their marker was lost), a torn tail is cut, and a damaged file
        // asks the caller to rebuild.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let index = AbortedIndex::open(&path, 0, 100).await.unwrap().unwrap();
                index.append(txn(0, 5, 6)).await.unwrap();
                index.append(txn(6, 9, 10)).await.unwrap();
                index.append(txn(10, 20, 21)).await.unwrap();
                drop(index);
                let reopened = AbortedIndex::open(&path, 0, 100).await.unwrap().unwrap();
                assert_eq!(reopened.collect(0, 100).len(), 3);
                drop(reopened);
                // The log lost its tail below 20: the last entry goes, durably.
                let cut = AbortedIndex::open(&path, 0, 15).await.unwrap().unwrap();
                assert_eq!(cut.collect(0, 100), vec![txn(0, 5, 6), txn(6, 9, 10)]);
                cut.append(txn(12, 14, 15)).await.unwrap();
                drop(cut);
                let file = path.join(ABORTED_INDEX_FILE);
                assert_eq!(std::fs::metadata(&file).unwrap().len() as usize, HEADER_BYTES + 3 * ENTRY_BYTES);
                // A torn append at the end is cut.
                let mut bytes = std::fs::read(&file).unwrap();
                bytes.extend_from_slice(&txn(15, 18, 19).encode()[..20]);
                std::fs::write(&file, &bytes).unwrap();
                let torn = AbortedIndex::open(&path, 0, 100).await.unwrap().unwrap();
                assert_eq!(torn.len(), 3);
                torn.remove_below(7).await.unwrap();
                assert_eq!(torn.collect(0, 100), vec![txn(6, 9, 10), txn(12, 14, 15)]);
                drop(torn);
                let mut damaged = std::fs::read(&file).unwrap();
                damaged[HEADER_BYTES + 1] ^= 0xff;
                std::fs::write(&file, &damaged).unwrap();
                assert!(AbortedIndex::open(&path, 0, 100).await.unwrap().is_none());
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
