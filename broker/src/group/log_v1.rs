//! The offsets log of format 1, which earlier versions of Stele wrote to
//! `<data_dir>/__consumer_offsets/<shard>/offsets.log`: a header followed by
//! CRC32C-framed batches of offset-commit records (format in docs/groups.md,
//! "Format 1"). It is only read now, once, when a shard finds one at start:
//! its commits move into the group log and the file is removed.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

/// One committed offset as format 1 stored it: the fields of today's record.
pub use super::records::OffsetCommitRecord as OffsetRecord;

const LOG_FILE: &str = "offsets.log";
const MAGIC: [u8; 4] = *b"SXCO";
pub const FORMAT_VERSION: u16 = 1;
const FILE_HEADER_BYTES: usize = 8;
const FRAME_HEADER_BYTES: usize = 8;
/// Largest payload of one frame; a length above it is damage.
const FRAME_PAYLOAD_BYTES_MAX: usize = 64 << 20;
/// Record type of an offset commit.
const RECORD_OFFSET_COMMIT: u8 = 1;

const _: () = assert!(FILE_HEADER_BYTES == MAGIC.len() + 2 + 2);

#[derive(Debug, thiserror::Error)]
pub enum OffsetLogError {
    #[error("offsets log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("offsets log {path}: corrupt at byte {position}: {what}")]
    Corrupt { path: PathBuf, position: u64, what: String },
    #[error("offsets log {path}: format version {version} is not {FORMAT_VERSION}")]
    UnsupportedVersion { path: PathBuf, version: u16 },
}

/// The format-1 file in a shard's group log directory.
pub fn legacy_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

/// The records of the format-1 file in `dir`, if there is one. A torn final
/// frame is ignored (it was never acknowledged); damage before the end is
/// an error naming the file and byte.
pub fn read_legacy(dir: &Path) -> Result<Option<Vec<OffsetRecord>>, OffsetLogError> {
    let path = legacy_path(dir);
    match fs::read(&path) {
        Ok(bytes) if bytes.is_empty() => Ok(Some(Vec::new())),
        Ok(bytes) => replay(&path, &bytes).map(Some),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(OffsetLogError::Io { path, source }),
    }
}

/// The records of a whole file.
fn replay(path: &Path, bytes: &[u8]) -> Result<Vec<OffsetRecord>, OffsetLogError> {
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
        tracing::warn!(path = %path.display(), position, len = bytes.len(), "format-1 offsets log has a torn tail");
    }
    Ok(records)
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
        // Format 1 predates sequence numbers: its commits count as placed
        // before every numbered record.
        out.push(OffsetRecord {
            group,
            topic,
            partition,
            offset,
            leader_epoch,
            metadata,
            commit_timestamp_ms,
            sequence: 0,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A format-1 file holding `frames`, each one frame, as the old broker
    /// wrote it (the fixture of the migration tests).
    pub(crate) fn write_legacy(dir: &Path, frames: &[Vec<OffsetRecord>]) {
        let mut file = Vec::new();
        file.extend_from_slice(&MAGIC);
        file.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        file.extend_from_slice(&0u16.to_le_bytes());
        for records in frames {
            let mut payload = Vec::new();
            for r in records {
                payload.push(RECORD_OFFSET_COMMIT);
                for name in [&r.group, &r.topic] {
                    payload.extend_from_slice(&(name.len() as u16).to_le_bytes());
                    payload.extend_from_slice(name.as_bytes());
                }
                payload.extend_from_slice(&r.partition.to_le_bytes());
                payload.extend_from_slice(&r.offset.to_le_bytes());
                payload.extend_from_slice(&r.leader_epoch.to_le_bytes());
                payload.extend_from_slice(&r.commit_timestamp_ms.to_le_bytes());
                match &r.metadata {
                    None => payload.extend_from_slice(&(-1i32).to_le_bytes()),
                    Some(m) => {
                        payload.extend_from_slice(&(m.len() as i32).to_le_bytes());
                        payload.extend_from_slice(m.as_bytes());
                    }
                }
            }
            file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            file.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
            file.extend_from_slice(&payload);
        }
        fs::create_dir_all(dir).unwrap();
        fs::write(legacy_path(dir), file).unwrap();
    }

    pub(crate) fn record(group: &str, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord {
            group: group.into(),
            topic: "t".into(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: (offset % 2 == 0).then(|| format!("m{offset}")),
            commit_timestamp_ms: 1000 + offset,
            sequence: 0,
        }
    }

    #[test]
    fn a_format_1_file_is_read_whole_and_a_torn_tail_ignored() {
        // Proves the records of every whole frame come back in order, a
        // frame cut short by a crash is ignored, and no file means None.
        let dir = tempfile::tempdir().unwrap();
        assert!(read_legacy(dir.path()).unwrap().is_none());
        write_legacy(dir.path(), &[vec![record("g", 0, 5), record("g", 1, 6)], vec![record("h", 0, 7)]]);
        let found = read_legacy(dir.path()).unwrap().unwrap();
        assert_eq!(found, vec![record("g", 0, 5), record("g", 1, 6), record("h", 0, 7)]);
        let path = legacy_path(dir.path());
        let len = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        assert_eq!(read_legacy(dir.path()).unwrap().unwrap(), vec![record("g", 0, 5), record("g", 1, 6)]);
    }

    #[test]
    fn damage_before_the_end_is_an_error_naming_the_file() {
        // Proves a frame whose CRC matches but whose records do not decode
        // stops the start with the file and byte named.
        let dir = tempfile::tempdir().unwrap();
        write_legacy(dir.path(), &[vec![record("g", 0, 1)]]);
        let path = legacy_path(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[FILE_HEADER_BYTES + FRAME_HEADER_BYTES] = 9; // record type 9
        let crc = crc32c::crc32c(&bytes[FILE_HEADER_BYTES + FRAME_HEADER_BYTES..]);
        bytes[FILE_HEADER_BYTES + 4..FILE_HEADER_BYTES + 8].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let message = read_legacy(dir.path()).unwrap_err().to_string();
        assert!(message.contains("offsets.log") && message.contains("unknown record type 9"), "{message}");
    }
}
