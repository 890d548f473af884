//! The durable offsets log of one coordinator shard:
//! `<data_dir>/__consumer_offsets/<shard>/offsets.log`, a header followed by
//! CRC32C-framed batches of offset-commit records (format in docs/groups.md).
//!
//! Invariants:
//! - `file_len` is the end of the last whole frame; every byte before it is
//!   covered by an fdatasync once `append` has returned;
//! - one frame holds one OffsetCommit request's records, so a commit
//!   survives a crash whole or not at all.
//!
//! I/O is blocking `std::fs` with `sync_data`, like the metadata log: a
//! first slice that keeps the format simple. Commits of one shard do not
//! share fsyncs yet (see docs/groups.md, "Left to do").

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Directory of the offsets logs inside the data directory. It cannot
/// collide with a partition directory: those end in `-<partition>`.
pub const OFFSETS_DIR: &str = "__consumer_offsets";
const LOG_FILE: &str = "offsets.log";
const MAGIC: [u8; 4] = *b"SXCO";
pub const FORMAT_VERSION: u16 = 1;
const FILE_HEADER_BYTES: usize = 8;
const FRAME_HEADER_BYTES: usize = 8;
/// Largest payload of one frame; a length above it is damage.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 64 << 20;
/// Record type of an offset commit.
const RECORD_OFFSET_COMMIT: u8 = 1;

const _: () = assert!(FILE_HEADER_BYTES == MAGIC.len() + 2 + 2);

/// One committed offset as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetRecord {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OffsetLogError {
    #[error("offsets log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("offsets log {path}: corrupt at byte {position}: {what}")]
    Corrupt { path: PathBuf, position: u64, what: String },
    #[error("offsets log {path}: format version {version} is not {FORMAT_VERSION}")]
    UnsupportedVersion { path: PathBuf, version: u16 },
    #[error("offsets log {path} failed earlier ({reason}); restart the broker to recover")]
    Failed { path: PathBuf, reason: String },
}

fn io_error(path: &Path, source: io::Error) -> OffsetLogError {
    OffsetLogError::Io { path: path.to_path_buf(), source }
}

/// The offsets log of one shard, open for appends.
#[derive(Debug)]
pub struct OffsetLog {
    path: PathBuf,
    file: File,
    file_len: u64,
    /// Set when a write or fsync failed: the file's state is unknown then.
    failed: Option<String>,
}

/// The offsets log file of shard `shard`.
pub fn log_path(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(OFFSETS_DIR).join(shard.to_string()).join(LOG_FILE)
}

impl OffsetLog {
    /// Opens (creating if absent) this shard's log and returns its records.
    /// A torn final frame is cut away with a warning.
    pub fn open(data_dir: &Path, shard: usize) -> Result<(OffsetLog, Vec<OffsetRecord>), OffsetLogError> {
        let path = log_path(data_dir, shard);
        let dir = path.parent().expect("log path has a directory").to_path_buf();
        let dir = dir.as_path();
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let (records, valid_len) = match fs::read(&path) {
            Ok(bytes) if bytes.is_empty() => (Vec::new(), 0),
            Ok(bytes) => replay(&path, &bytes)?,
            Err(e) if e.kind() == ErrorKind::NotFound => (Vec::new(), 0),
            Err(e) => return Err(io_error(&path, e)),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        let mut log = OffsetLog { path, file, file_len: valid_len, failed: None };
        if valid_len == 0 {
            let mut header = Vec::with_capacity(FILE_HEADER_BYTES);
            header.extend_from_slice(&MAGIC);
            header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            header.extend_from_slice(&0u16.to_le_bytes());
            log.file.set_len(0).map_err(|e| io_error(&log.path, e))?;
            log.write_durably(&header)?;
            // The directory entry of a new file must be durable too.
            if let Ok(dir) = File::open(dir) {
                dir.sync_all().map_err(|e| io_error(dir_path(&log.path), e))?;
            }
        } else {
            let on_disk = log.file.metadata().map_err(|e| io_error(&log.path, e))?.len();
            if on_disk > valid_len {
                tracing::warn!(path = %log.path.display(), valid_len, on_disk, "cutting a torn tail off the offsets log");
                log.file.set_len(valid_len).map_err(|e| io_error(&log.path, e))?;
                log.file.sync_data().map_err(|e| io_error(&log.path, e))?;
            }
        }
        Ok((log, records))
    }

    /// Appends `records` as one frame and returns after fdatasync.
    pub fn append(&mut self, records: &[OffsetRecord]) -> Result<(), OffsetLogError> {
        if let Some(reason) = &self.failed {
            return Err(OffsetLogError::Failed { path: self.path.clone(), reason: reason.clone() });
        }
        if records.is_empty() {
            return Ok(());
        }
        let payload = encode_records(records);
        assert!(payload.len() <= FRAME_PAYLOAD_BYTES_MAX, "frame of {} bytes", payload.len());
        let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        self.write_durably(&frame)
    }

    fn write_durably(&mut self, bytes: &[u8]) -> Result<(), OffsetLogError> {
        let result = self.file.write_all_at(bytes, self.file_len).and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.file_len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e.to_string());
                Err(io_error(&self.path, e))
            }
        }
    }
}

fn dir_path(path: &Path) -> &Path {
    path.parent().unwrap_or(path)
}

/// Reads every offsets log under `<data_dir>/__consumer_offsets/` (other
/// shards' too: with another shard count a group's coordinator moves).
/// Damage in another shard's file is reported and that file skipped.
pub fn read_all(data_dir: &Path, except_shard: usize) -> Vec<OffsetRecord> {
    let root = data_dir.join(OFFSETS_DIR);
    let Ok(entries) = fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(shard) = name.to_str().and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        if shard == except_shard {
            continue;
        }
        let path = log_path(data_dir, shard);
        match fs::read(&path) {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => match replay(&path, &bytes) {
                Ok((mut found, _)) => records.append(&mut found),
                Err(err) => tracing::error!(error = %err, "skipping another shard's offsets log"),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::error!(path = %path.display(), error = %e, "cannot read another shard's offsets log"),
        }
    }
    records
}

/// The records of a whole file and the end of its last whole frame.
fn replay(path: &Path, bytes: &[u8]) -> Result<(Vec<OffsetRecord>, u64), OffsetLogError> {
    let corrupt = |position: usize, what: &str| OffsetLogError::Corrupt {
        path: path.to_path_buf(),
        position: position as u64,
        what: what.to_owned(),
    };
    if bytes.len() < FILE_HEADER_BYTES || bytes[..4] != MAGIC {
        return Err(corrupt(0, "no SXCO header"));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(OffsetLogError::UnsupportedVersion { path: path.to_path_buf(), version });
    }
    let mut records = Vec::new();
    let mut position = FILE_HEADER_BYTES;
    while position + FRAME_HEADER_BYTES <= bytes.len() {
        let length = u32::from_le_bytes(bytes[position..position + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[position + 4..position + 8].try_into().unwrap());
        let start = position + FRAME_HEADER_BYTES;
        if length == 0 || length > FRAME_PAYLOAD_BYTES_MAX || start + length > bytes.len() {
            break; // a torn tail: the frame was never completely written
        }
        let payload = &bytes[start..start + length];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        // A matching CRC with an undecodable payload cannot be a torn write.
        decode_records(payload, &mut records).map_err(|what| corrupt(start, &what))?;
        position = start + length;
    }
    if position < bytes.len() {
        tracing::warn!(path = %path.display(), position, len = bytes.len(), "offsets log has a torn tail");
    }
    Ok((records, position as u64))
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let len = u16::try_from(bytes.len()).expect("names are validated to fit u16");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn encode_records(records: &[OffsetRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 64);
    for record in records {
        out.push(RECORD_OFFSET_COMMIT);
        put_str(&mut out, &record.group);
        put_str(&mut out, &record.topic);
        out.extend_from_slice(&record.partition.to_le_bytes());
        out.extend_from_slice(&record.offset.to_le_bytes());
        out.extend_from_slice(&record.leader_epoch.to_le_bytes());
        out.extend_from_slice(&record.commit_timestamp_ms.to_le_bytes());
        match &record.metadata {
            None => out.extend_from_slice(&(-1i32).to_le_bytes()),
            Some(metadata) => {
                out.extend_from_slice(&(metadata.len() as i32).to_le_bytes());
                out.extend_from_slice(metadata.as_bytes());
            }
        }
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.position.checked_add(n).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| format!("record cut short at payload byte {}", self.position))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }
    fn str(&mut self, len: usize) -> Result<String, String> {
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| format!("invalid UTF-8 before byte {}", self.position))
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
}

fn decode_records(payload: &[u8], out: &mut Vec<OffsetRecord>) -> Result<(), String> {
    let mut reader = Reader { bytes: payload, position: 0 };
    while reader.position < payload.len() {
        let kind = reader.take(1)?[0];
        if kind != RECORD_OFFSET_COMMIT {
            return Err(format!("unknown record type {kind}"));
        }
        let group_len = reader.u16()? as usize;
        let group = reader.str(group_len)?;
        let topic_len = reader.u16()? as usize;
        let topic = reader.str(topic_len)?;
        let partition = reader.i32()?;
        let offset = reader.i64()?;
        let leader_epoch = reader.i32()?;
        let commit_timestamp_ms = reader.i64()?;
        let metadata_len = reader.i32()?;
        let metadata = match metadata_len {
            -1 => None,
            len if len >= 0 => Some(reader.str(len as usize)?),
            len => return Err(format!("metadata length {len}")),
        };
        out.push(OffsetRecord { group, topic, partition, offset, leader_epoch, metadata, commit_timestamp_ms });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(group: &str, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord {
            group: group.into(),
            topic: "t".into(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: (offset % 2 == 0).then(|| format!("m{offset}")),
            commit_timestamp_ms: 1000 + offset,
        }
    }

    #[test]
    fn appended_records_come_back_after_reopen() {
        // Proves records round-trip through the file, frames in order.
        let dir = tempfile::tempdir().unwrap();
        let (mut log, found) = OffsetLog::open(dir.path(), 1).unwrap();
        assert!(found.is_empty());
        log.append(&[record("g", 0, 5), record("g", 1, 6)]).unwrap();
        log.append(&[record("h", 0, 7)]).unwrap();
        drop(log);
        let (_, found) = OffsetLog::open(dir.path(), 1).unwrap();
        assert_eq!(found, vec![record("g", 0, 5), record("g", 1, 6), record("h", 0, 7)]);
        assert_eq!(read_all(dir.path(), 0), found, "other shards read it too");
        assert!(read_all(dir.path(), 1).is_empty());
    }

    #[test]
    fn a_torn_tail_is_cut_and_earlier_frames_kept() {
        // Proves a frame cut short by a crash is dropped whole, the frames
        // before it survive, and appends continue after the cut.
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = OffsetLog::open(dir.path(), 0).unwrap();
        log.append(&[record("g", 0, 1)]).unwrap();
        log.append(&[record("g", 0, 2), record("g", 1, 3)]).unwrap();
        drop(log);
        let path = log_path(dir.path(), 0);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        let (mut log, found) = OffsetLog::open(dir.path(), 0).unwrap();
        assert_eq!(found, vec![record("g", 0, 1)]);
        log.append(&[record("g", 0, 4)]).unwrap();
        drop(log);
        let (_, found) = OffsetLog::open(dir.path(), 0).unwrap();
        assert_eq!(found, vec![record("g", 0, 1), record("g", 0, 4)]);
    }

    #[test]
    fn a_flipped_bit_in_the_last_frame_is_a_torn_tail() {
        // Proves a CRC mismatch ends replay instead of yielding bad offsets.
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = OffsetLog::open(dir.path(), 0).unwrap();
        log.append(&[record("g", 0, 1)]).unwrap();
        log.append(&[record("g", 0, 2)]).unwrap();
        drop(log);
        let path = log_path(dir.path(), 0);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let (_, found) = OffsetLog::open(dir.path(), 0).unwrap();
        assert_eq!(found, vec![record("g", 0, 1)]);
    }
}
