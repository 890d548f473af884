//! Errors of the metadata log. Each variant that comes from the disk names
//! the file and, where one exists, the byte position, so an operator can find
//! the damage with `xxd -s <position>`.

use std::io;
use std::path::PathBuf;

/// Errors of [`super::MetadataLog`].
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A frame that is not the torn tail of the log failed its checks, or a
    /// frame whose CRC matches does not decode: a torn write cannot explain
    /// it, so cutting it away could drop acknowledged metadata.
    #[error("corrupt metadata log {path} at byte {position}: {reason}")]
    Corrupt { path: PathBuf, position: u64, reason: String },
    #[error("metadata log {path} has format version {version}; this broker reads version {supported}")]
    UnsupportedVersion { path: PathBuf, version: u16, supported: u16 },
    /// A record type this broker does not know: the log was written by a
    /// newer broker. Downgrading past a metadata format change is unsupported.
    #[error("metadata log {path} at byte {position} holds record type {record_type}, unknown to this broker (written by a newer version?)")]
    UnknownRecordType { path: PathBuf, position: u64, record_type: u8 },
    #[error("metadata batch of {bytes} bytes exceeds the maximum frame size of {bytes_max} bytes")]
    BatchTooLarge { bytes: usize, bytes_max: usize },
    /// An earlier write or fsync failed; whether its bytes reached the disk
    /// is unknown (a failed fsync cannot be retried safely), so the log
    /// accepts no more appends until the broker restarts and recovers it.
    #[error("metadata log {path} failed after an earlier I/O error and accepts no more appends: {reason}")]
    Failed { path: PathBuf, reason: String },
}

impl MetadataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        MetadataError::Io { path: path.into(), source }
    }
}
