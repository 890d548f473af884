//! The durable metadata log: `<data dir>/__cluster_metadata/metadata.log`,
//! a header followed by CRC-framed batches of flatbuffers records (format in
//! `docs/metadata.md`). One writer, the controller on shard 0.
//!
//! Invariants:
//! - `file_len` is the end of the last whole frame; every byte before it is
//!   covered by an fdatasync once `append` has returned;
//! - `image` is the replay of every frame before `file_len`;
//! - the file on disk is always either the old log or a complete snapshot:
//!   snapshots are written to `metadata.log.tmp`, fsynced and renamed over.
//!
//! I/O is plain blocking `std::fs` with `File::sync_data`, not glommio DMA
//! files: metadata changes are rare control-plane events (topic creation,
//! config changes, producer id blocks), so an fsync that briefly blocks
//! shard 0's executor costs less than the complexity of async I/O here.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::MetadataError;
use super::image::MetadataImage;
use super::record::{decode_batch, encode_batch, DecodeError, MetadataRecord};

/// Directory of the metadata log inside the data directory. No partition
/// directory can collide with it: those end in `-<partition>`.
pub const METADATA_DIR: &str = "__cluster_metadata";
const LOG_FILE: &str = "metadata.log";
const TMP_FILE: &str = "metadata.log.tmp";

const MAGIC: [u8; 4] = *b"SXMD";
/// Bumped on any change to the header, the frame layout or the meaning of an
/// existing record field. New record types do not bump it: an old broker
/// reports them as unknown by type number.
pub const FORMAT_VERSION: u16 = 1;
const FILE_HEADER_BYTES: usize = 8;
const FRAME_HEADER_BYTES: usize = 8;
/// Largest payload of one frame. Far above any real batch (a topic with a
/// million partitions is ~30 MiB); a length field above it is damage.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 64 << 20;
/// A snapshot splits its records into frames of about this size, so that a
/// large image never needs one huge frame.
const SNAPSHOT_FRAME_BYTES_TARGET: usize = 1 << 20;
/// The log is rewritten as a snapshot once it is larger than both this and
/// `COMPACTION_GROWTH_FACTOR` times the last snapshot: replay stays bounded
/// by a small multiple of the image size.
const COMPACTION_BYTES_MIN: u64 = 1 << 20;
const COMPACTION_GROWTH_FACTOR: u64 = 4;

const _: () = assert!(FILE_HEADER_BYTES == MAGIC.len() + 2 + 2);
const _: () = assert!(FRAME_PAYLOAD_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(SNAPSHOT_FRAME_BYTES_TARGET < FRAME_PAYLOAD_BYTES_MAX);

/// The metadata log, open for appends. Holds its own replayed image, which
/// it needs to write snapshots and which the controller may publish.
#[derive(Debug)]
pub struct MetadataLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// End of the last whole frame: where the next append writes.
    file_len: u64,
    /// Size of the file right after the last snapshot (or of a snapshot of
    /// the image at open): the base of the compaction threshold.
    snapshot_bytes: u64,
    compaction_bytes_min: u64,
    image: MetadataImage,
    /// Set when a write or fsync failed: see [`MetadataError::Failed`].
    failed: Option<String>,
}

impl MetadataLog {
    /// Opens (creating if absent) `<data_dir>/__cluster_metadata/`, replays it
    /// into an image; a fresh directory gets a ClusterCreated record with a
    /// new cluster id. A torn final frame is cut away with a warning; any
    /// other damage is an error naming the file and byte position.
    pub fn open(data_dir: &Path) -> Result<(MetadataLog, MetadataImage), MetadataError> {
        let dir = data_dir.join(METADATA_DIR);
        create_dir_durably(data_dir, &dir)?;
        remove_if_present(&dir.join(TMP_FILE))?;
        let path = dir.join(LOG_FILE);
        let mut log = match fs::read(&path) {
            Ok(bytes) => Self::recover(dir, path, &bytes)?,
            Err(e) if e.kind() == ErrorKind::NotFound => Self::create(dir, path)?,
            Err(e) => return Err(MetadataError::io(&path, e)),
        };
        if log.image.cluster_id.is_empty() {
            // Only a file whose every frame was torn away gets here.
            tracing::warn!(path = %log.path.display(), "metadata log holds no cluster id; generating a new one");
            log.append(&[MetadataRecord::ClusterCreated { cluster_id: new_cluster_id() }])?;
        }
        log.compact_if_due();
        let image = log.image.clone();
        Ok((log, image))
    }

    /// Appends records atomically (all or none survive a crash) and returns
    /// after fdatasync. The log's own image is updated once they are durable.
    /// After a failed write or fsync, every later call fails: restart to
    /// recover.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), MetadataError> {
        self.check_not_failed()?;
        if records.is_empty() {
            return Ok(());
        }
        let frame = encode_frame(records)?;
        self.write_frame_durably(&frame)?;
        for record in records {
            self.image.apply(record);
        }
        self.compact_if_due();
        Ok(())
    }

    /// Rewrites the log as a snapshot of the image (temp file, fsync, rename,
    /// fsync of the directory). Runs by itself when the log grows past its
    /// threshold; public for operators and tests.
    pub fn compact(&mut self) -> Result<(), MetadataError> {
        self.check_not_failed()?;
        let bytes = encode_snapshot(&self.image)?;
        let tmp_path = self.dir.join(TMP_FILE);
        let file = write_synced_file(&tmp_path, &bytes)?;
        fs::rename(&tmp_path, &self.path).map_err(|e| MetadataError::io(&self.path, e))?;
        // From here on the path names the new file. If the rename is not
        // durable, a crash brings back the old log, which must then not
        // miss anything appended to the new one: stop appending.
        if let Err(e) = sync_dir(&self.dir) {
            self.failed = Some(format!("fsync of {} after a snapshot failed: {e}", self.dir.display()));
        }
        self.file = file;
        self.file_len = bytes.len() as u64;
        self.snapshot_bytes = self.file_len;
        tracing::info!(path = %self.path.display(), bytes = self.file_len, "metadata log compacted into a snapshot");
        self.check_not_failed()
    }

    /// The image replayed from everything appended so far.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of whole frames in the log file, header included.
    pub fn file_bytes(&self) -> u64 {
        self.file_len
    }

    /// Lowers the compaction threshold; for tests of compaction.
    #[cfg(test)]
    pub(super) fn set_compaction_bytes_min(&mut self, bytes: u64) {
        self.compaction_bytes_min = bytes;
    }

    fn create(dir: PathBuf, path: PathBuf) -> Result<Self, MetadataError> {
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::ClusterCreated { cluster_id: new_cluster_id() });
        let bytes = encode_snapshot(&image)?;
        let tmp_path = dir.join(TMP_FILE);
        let file = write_synced_file(&tmp_path, &bytes)?;
        fs::rename(&tmp_path, &path).map_err(|e| MetadataError::io(&path, e))?;
        sync_dir(&dir).map_err(|e| MetadataError::io(&dir, e))?;
        tracing::info!(path = %path.display(), cluster_id = image.cluster_id, "created metadata log");
        let file_len = bytes.len() as u64;
        Ok(MetadataLog {
            dir,
            path,
            file,
            file_len,
            snapshot_bytes: file_len,
            compaction_bytes_min: COMPACTION_BYTES_MIN,
            image,
            failed: None,
        })
    }

    /// Replays `bytes`, the whole log file, and truncates a torn tail.
    fn recover(dir: PathBuf, path: PathBuf, bytes: &[u8]) -> Result<Self, MetadataError> {
        check_file_header(&path, bytes)?;
        let scan = scan_frames(bytes);
        let mut image = MetadataImage::default();
        for frame in &scan.frames {
            let records = decode_batch(&bytes[frame.payload.clone()]).map_err(|e| decode_error(&path, frame, e))?;
            for record in &records {
                image.apply(record);
            }
        }
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| MetadataError::io(&path, e))?;
        if let Some(bad) = scan.bad_frame {
            if let Some(next) = first_valid_frame_from(bytes, bad.position as usize + 1) {
                let reason =
                    format!("{}; a valid frame follows at byte {next}, so this is not a torn write", bad.reason);
                return Err(MetadataError::Corrupt { path, position: bad.position, reason });
            }
            tracing::warn!(
                path = %path.display(),
                position = bad.position,
                dropped_bytes = bytes.len() as u64 - bad.position,
                reason = bad.reason,
                "metadata log: torn tail truncated"
            );
            file.set_len(scan.valid_end).map_err(|e| MetadataError::io(&path, e))?;
            file.sync_data().map_err(|e| MetadataError::io(&path, e))?;
        }
        let snapshot_bytes = encode_snapshot(&image).map(|s| s.len() as u64).unwrap_or(scan.valid_end);
        Ok(MetadataLog {
            dir,
            path,
            file,
            file_len: scan.valid_end,
            snapshot_bytes,
            compaction_bytes_min: COMPACTION_BYTES_MIN,
            image,
            failed: None,
        })
    }

    fn write_frame_durably(&mut self, frame: &[u8]) -> Result<(), MetadataError> {
        if let Err(e) = self.file.write_all_at(frame, self.file_len) {
            // Cut the partial frame now: left there, the next append would
            // land behind it and turn a torn tail into corruption.
            if let Err(cut) = self.file.set_len(self.file_len) {
                self.failed = Some(format!("write failed ({e}) and cutting it back failed ({cut})"));
            }
            return Err(MetadataError::io(&self.path, e));
        }
        if let Err(e) = self.file.sync_data() {
            // The kernel may have dropped the dirty pages; a second fsync
            // could succeed without them reaching the disk.
            self.failed = Some(format!("fdatasync failed: {e}"));
            return Err(MetadataError::io(&self.path, e));
        }
        self.file_len += frame.len() as u64;
        Ok(())
    }

    fn compact_if_due(&mut self) {
        let threshold = self.compaction_bytes_min.max(self.snapshot_bytes.saturating_mul(COMPACTION_GROWTH_FACTOR));
        if self.file_len <= threshold || self.failed.is_some() {
            return;
        }
        // The appended records are durable already; a failed snapshot leaves
        // the old log in place and is retried after the next append.
        if let Err(e) = self.compact() {
            tracing::warn!(path = %self.path.display(), error = %e, "metadata log compaction failed");
        }
    }

    fn check_not_failed(&self) -> Result<(), MetadataError> {
        match &self.failed {
            Some(reason) => Err(MetadataError::Failed { path: self.path.clone(), reason: reason.clone() }),
            None => Ok(()),
        }
    }
}

/// A new cluster id as Kafka makes them: a random UUID in unpadded
/// base64url (22 characters), never starting with '-' (command-line tools
/// would read it as an option).
pub fn new_cluster_id() -> String {
    loop {
        let id = base64url(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A frame whose length and CRC checked out.
struct Frame {
    position: u64,
    payload: Range<usize>,
}

/// The first frame that failed its checks.
struct BadFrame {
    position: u64,
    reason: String,
}

struct Scan {
    frames: Vec<Frame>,
    /// End of the last whole frame.
    valid_end: u64,
    bad_frame: Option<BadFrame>,
}

fn check_file_header(path: &Path, bytes: &[u8]) -> Result<(), MetadataError> {
    let corrupt = |reason: String| MetadataError::Corrupt { path: path.to_owned(), position: 0, reason };
    if bytes.len() < FILE_HEADER_BYTES {
        return Err(corrupt(format!(
            "file of {} bytes is shorter than its {FILE_HEADER_BYTES}-byte header",
            bytes.len()
        )));
    }
    if bytes[..4] != MAGIC {
        return Err(corrupt(format!("bad magic {:02x?}, expected \"SXMD\"", &bytes[..4])));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(MetadataError::UnsupportedVersion { path: path.to_owned(), version, supported: FORMAT_VERSION });
    }
    Ok(())
}

fn scan_frames(bytes: &[u8]) -> Scan {
    let mut frames = Vec::new();
    let mut position = FILE_HEADER_BYTES;
    while position < bytes.len() {
        match frame_at(bytes, position) {
            Ok(payload) => {
                let end = payload.end;
                frames.push(Frame { position: position as u64, payload });
                position = end;
            }
            Err(reason) => {
                let bad_frame = Some(BadFrame { position: position as u64, reason });
                return Scan { frames, valid_end: position as u64, bad_frame };
            }
        }
    }
    Scan { frames, valid_end: position as u64, bad_frame: None }
}

/// The payload range of the frame starting at `position`, if its length is
/// plausible and its CRC matches.
fn frame_at(bytes: &[u8], position: usize) -> Result<Range<usize>, String> {
    let rest = &bytes[position..];
    if rest.len() < FRAME_HEADER_BYTES {
        return Err(format!("frame header cut short ({} of {FRAME_HEADER_BYTES} bytes)", rest.len()));
    }
    let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc_stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if length == 0 || length > FRAME_PAYLOAD_BYTES_MAX {
        return Err(format!("frame length {length} outside 1..={FRAME_PAYLOAD_BYTES_MAX}"));
    }
    if length > rest.len() - FRAME_HEADER_BYTES {
        return Err(format!(
            "frame of {length} bytes runs past the end of the file ({} bytes left)",
            rest.len() - FRAME_HEADER_BYTES
        ));
    }
    let payload = position + FRAME_HEADER_BYTES..position + FRAME_HEADER_BYTES + length;
    let crc_computed = crc32c::crc32c(&bytes[payload.clone()]);
    if crc_computed != crc_stored {
        return Err(format!("CRC32C mismatch: stored {crc_stored:#010x}, computed {crc_computed:#010x}"));
    }
    Ok(payload)
}

/// The first byte position at or after `start` where a whole frame with a
/// matching CRC begins. Only run on the failure path of recovery; the file
/// is small (compaction bounds it) and most positions fail the length check
/// before any CRC is computed.
fn first_valid_frame_from(bytes: &[u8], start: usize) -> Option<usize> {
    (start..bytes.len().saturating_sub(FRAME_HEADER_BYTES)).find(|&position| frame_at(bytes, position).is_ok())
}

fn decode_error(path: &Path, frame: &Frame, error: DecodeError) -> MetadataError {
    match error {
        DecodeError::UnknownRecordType(record_type) => {
            MetadataError::UnknownRecordType { path: path.to_owned(), position: frame.position, record_type }
        }
        DecodeError::Invalid(reason) => MetadataError::Corrupt {
            path: path.to_owned(),
            position: frame.position,
            reason: format!("frame CRC matches but its records do not decode: {reason}"),
        },
    }
}

fn encode_frame(records: &[MetadataRecord]) -> Result<Vec<u8>, MetadataError> {
    let payload = encode_batch(records);
    if payload.len() > FRAME_PAYLOAD_BYTES_MAX {
        return Err(MetadataError::BatchTooLarge { bytes: payload.len(), bytes_max: FRAME_PAYLOAD_BYTES_MAX });
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// A whole log file holding `image` as records: the header, then frames of
/// about `SNAPSHOT_FRAME_BYTES_TARGET` bytes each.
fn encode_snapshot(image: &MetadataImage) -> Result<Vec<u8>, MetadataError> {
    let mut bytes = Vec::with_capacity(FILE_HEADER_BYTES + 4096);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    let records = image.to_records();
    let mut chunk_start = 0;
    let mut chunk_bytes = 0;
    for (index, record) in records.iter().enumerate() {
        chunk_bytes += record_bytes_estimate(record);
        let last = index + 1 == records.len();
        if chunk_bytes >= SNAPSHOT_FRAME_BYTES_TARGET || last {
            bytes.extend_from_slice(&encode_frame(&records[chunk_start..=index])?);
            chunk_start = index + 1;
            chunk_bytes = 0;
        }
    }
    Ok(bytes)
}

/// Roughly the encoded size of a record, to split snapshots into frames.
fn record_bytes_estimate(record: &MetadataRecord) -> usize {
    let configs = |c: &std::collections::BTreeMap<String, String>| -> usize {
        c.iter().map(|(k, v)| k.len() + v.len() + 32).sum()
    };
    32 + match record {
        MetadataRecord::ClusterCreated { cluster_id } => cluster_id.len(),
        MetadataRecord::TopicCreated { name, partitions, configs: c, .. } => {
            name.len() + 20 * partitions.len() + configs(c) + 24
        }
        MetadataRecord::PartitionsCreated { partitions, .. } => 20 * partitions.len() + 24,
        MetadataRecord::TopicDeleted { .. } => 24,
        MetadataRecord::TopicConfigsSet { configs: c, .. } | MetadataRecord::BrokerConfigsSet { configs: c } => {
            configs(c) + 24
        }
        MetadataRecord::ProducerIdsAllocated { .. } => 8,
    }
}

/// Creates `path` (truncating any leftover), writes `bytes` and fdatasyncs.
fn write_synced_file(path: &Path, bytes: &[u8]) -> Result<File, MetadataError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| MetadataError::io(path, e))?;
    file.write_all(bytes).and_then(|()| file.sync_data()).map_err(|e| MetadataError::io(path, e))?;
    Ok(file)
}

/// Creates `dir` inside `parent` if absent, and makes its entry durable.
fn create_dir_durably(parent: &Path, dir: &Path) -> Result<(), MetadataError> {
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent).map_err(|e| MetadataError::io(parent, e)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| MetadataError::io(dir, e))?;
            sync_dir(parent).map_err(|e| MetadataError::io(parent, e))
        }
        Err(e) => Err(MetadataError::io(dir, e)),
    }
}

fn remove_if_present(path: &Path) -> Result<(), MetadataError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(MetadataError::io(path, e)),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::super::image::PartitionMeta;
    use super::super::record::tests::{encode_unknown_type, every_record_type};
    use super::*;

    fn log_path(dir: &Path) -> PathBuf {
        dir.join(METADATA_DIR).join(LOG_FILE)
    }

    fn topic(name: &str, partitions: i32) -> MetadataRecord {
        MetadataRecord::TopicCreated {
            name: name.to_owned(),
            topic_id: Uuid::new_v4(),
            partitions: (0..partitions)
                .map(|partition| PartitionMeta { partition, shard: 0, leader_epoch: 0 })
                .collect(),
            configs: BTreeMap::new(),
        }
    }

    /// Appends three single-record batches; returns each frame's start.
    fn three_frames(dir: &Path) -> Vec<u64> {
        let (mut log, _) = MetadataLog::open(dir).unwrap();
        let mut starts = Vec::new();
        for name in ["a", "b", "c"] {
            starts.push(log.file_bytes());
            log.append(&[topic(name, 1)]).unwrap();
        }
        starts
    }

    fn topic_names(image: &MetadataImage) -> Vec<&str> {
        image.topics.keys().map(String::as_str).collect()
    }

    // Proves that every record type, appended in one batch and one at a
    // time, reopens into the same image the writer holds.
    #[test]
    fn every_record_type_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        let records = every_record_type();
        log.append(&records).unwrap();
        for record in &records[1..] {
            log.append(std::slice::from_ref(record)).unwrap();
        }
        let written = log.image().clone();
        assert_eq!(written.cluster_id, "aGVsbG8td29ybGQtMTIzNA");
        assert_eq!(topic_names(&written), vec!["bare"]);
        assert_eq!(written.next_producer_id, 5000);
        assert_eq!(written.broker_configs.get("log.retention.ms").map(String::as_str), Some("1"));
        drop(log);

        let (_, reopened) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(reopened, written);
    }

    // Proves that the cluster id is generated once, Kafka-shaped, and read
    // back unchanged by every later open.
    #[test]
    fn cluster_id_stable_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (_, first) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(first.cluster_id.len(), 22);
        assert!(first.cluster_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let (_, second) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(second.cluster_id, first.cluster_id);
        let (_, other) = MetadataLog::open(tempfile::tempdir().unwrap().path()).unwrap();
        assert_ne!(other.cluster_id, first.cluster_id);
    }

    // Proves that a final frame cut mid-write is dropped, earlier frames
    // survive, and the log accepts and keeps new appends afterwards.
    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let starts = three_frames(dir.path());
        let path = log_path(dir.path());
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(starts[2] + 13).unwrap();

        let (mut log, image) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(topic_names(&image), vec!["a", "b"]);
        assert_eq!(fs::metadata(&path).unwrap().len(), starts[2]);
        log.append(&[topic("d", 1)]).unwrap();
        drop(log);
        let (_, image) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(topic_names(&image), vec!["a", "b", "d"]);
    }

    // Proves that garbage after the last whole frame (a torn write of a
    // frame header, or zeroed blocks) is dropped and nothing before it.
    #[test]
    fn garbage_tail_is_truncated() {
        for garbage in [vec![0xab; 37], vec![0; 4096], vec![7, 0, 0, 0, 1]] {
            let dir = tempfile::tempdir().unwrap();
            let starts = three_frames(dir.path());
            let path = log_path(dir.path());
            let end = fs::metadata(&path).unwrap().len();
            let mut file = OpenOptions::new().append(true).open(&path).unwrap();
            file.write_all(&garbage).unwrap();

            let (log, image) = MetadataLog::open(dir.path()).unwrap();
            assert_eq!(topic_names(&image), vec!["a", "b", "c"]);
            assert_eq!(log.file_bytes(), end);
            assert_eq!(fs::metadata(&path).unwrap().len(), end, "garbage {garbage:?} not cut");
            assert!(starts[2] < end);
        }
    }

    // Proves that a damaged frame followed by a valid one is an error naming
    // the file and the damaged frame's byte position, and nothing is cut.
    #[test]
    fn corrupt_middle_frame_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let starts = three_frames(dir.path());
        let path = log_path(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let length_before = bytes.len();
        bytes[starts[1] as usize + FRAME_HEADER_BYTES + 5] ^= 0x01;
        fs::write(&path, &bytes).unwrap();

        let error = MetadataLog::open(dir.path()).unwrap_err();
        match &error {
            MetadataError::Corrupt { path: error_path, position, .. } => {
                assert_eq!(error_path, &path);
                assert_eq!(*position, starts[1]);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains(&format!("at byte {}", starts[1])), "{message}");
        assert!(message.contains("metadata.log"), "{message}");
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, length_before);

        // A damaged length field hides where the next frame starts; the
        // byte scan still finds it.
        bytes[starts[1] as usize + FRAME_HEADER_BYTES + 5] ^= 0x01;
        bytes[starts[1] as usize] = 0xff;
        fs::write(&path, &bytes).unwrap();
        assert!(
            matches!(MetadataLog::open(dir.path()), Err(MetadataError::Corrupt { position, .. }) if position == starts[1])
        );
    }

    // Proves that an unknown format version, a bad magic and a record type
    // from a newer broker are errors that name the file and what was wrong.
    #[test]
    fn newer_or_foreign_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        three_frames(dir.path());
        let path = log_path(dir.path());
        let good = fs::read(&path).unwrap();

        let mut bytes = good.clone();
        bytes[4..6].copy_from_slice(&2u16.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let error = MetadataLog::open(dir.path()).unwrap_err();
        assert!(matches!(error, MetadataError::UnsupportedVersion { version: 2, .. }), "{error}");

        let mut bytes = good.clone();
        bytes[0] = b'X';
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(MetadataLog::open(dir.path()), Err(MetadataError::Corrupt { position: 0, .. })));

        let mut bytes = good.clone();
        let payload = encode_unknown_type(42);
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        fs::write(&path, &bytes).unwrap();
        let error = MetadataLog::open(dir.path()).unwrap_err();
        assert!(
            matches!(error, MetadataError::UnknownRecordType { record_type: 42, position, .. } if position == good.len() as u64),
            "{error}"
        );
        assert!(error.to_string().contains("record type 42"));
    }

    // Proves that compaction rewrites the log as a snapshot that is smaller
    // than the history it replaces and reopens into the same image, both
    // when called and when the log grows past its threshold by itself.
    #[test]
    fn compaction_preserves_image_and_shrinks_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        for round in 0..50 {
            let name = format!("churn-{round}");
            log.append(&[topic(&name, 3)]).unwrap();
            let topic_id = log.image().topic(&name).unwrap().topic_id;
            log.append(&[MetadataRecord::TopicDeleted { topic_id }]).unwrap();
            log.append(&[MetadataRecord::ProducerIdsAllocated { next_producer_id: 1000 * (round + 1) }]).unwrap();
        }
        log.append(&[topic("kept", 4)]).unwrap();
        let before_bytes = log.file_bytes();
        let image = log.image().clone();
        log.compact().unwrap();
        assert!(log.file_bytes() < before_bytes / 10, "{} vs {before_bytes}", log.file_bytes());
        assert_eq!(fs::metadata(log.path()).unwrap().len(), log.file_bytes());
        log.append(&[topic("after", 1)]).unwrap();
        let expected = log.image().clone();
        drop(log);
        let (mut log, reopened) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(reopened, expected);
        assert_eq!(reopened.next_producer_id, image.next_producer_id);

        // Automatic: with a tiny threshold the file stays near 4x the snapshot.
        log.set_compaction_bytes_min(0);
        for round in 0..200 {
            log.append(&[MetadataRecord::ProducerIdsAllocated { next_producer_id: 100_000 + round }]).unwrap();
            assert!(log.file_bytes() <= 4 * log.snapshot_bytes, "round {round}");
        }
        let expected = log.image().clone();
        drop(log);
        let (_, reopened) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(reopened, expected);
        assert!(!dir.path().join(METADATA_DIR).join(TMP_FILE).exists());
    }

    // Proves that a large image is split into several bounded frames and
    // read back whole.
    #[test]
    fn large_snapshot_spans_frames() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        let batch: Vec<_> = (0..300).map(|i| topic(&format!("topic-{i:04}"), 200)).collect();
        log.append(&batch).unwrap();
        log.compact().unwrap();
        let expected = log.image().clone();
        let bytes = fs::read(log.path()).unwrap();
        let scan = scan_frames(&bytes);
        assert!(scan.frames.len() > 1, "{} frames", scan.frames.len());
        assert!(scan.frames.iter().all(|f| f.payload.len() < 2 * SNAPSHOT_FRAME_BYTES_TARGET));
        drop(log);
        let (_, reopened) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(reopened, expected);
    }

    // Proves the base64url encoding against RFC 4648's test vectors.
    #[test]
    fn base64url_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
