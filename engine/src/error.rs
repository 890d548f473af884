//! Errors of the storage engine. Each variant carries what an operator needs
//! to find the problem: the file, the byte position and the offset.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Why a record batch handed to [`crate::PartitionLog::append`] was refused;
/// shared with the protocol crate, which maps each to Kafka's error code.
pub use protocol::BatchError;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt data in {path} at byte {position} (offset {offset}): {reason}")]
    Corrupt { path: PathBuf, position: u64, offset: i64, reason: String },
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange { offset: i64, log_start_offset: i64, log_end_offset: i64 },
    #[error("invalid configuration: {key} = {value}: {reason}")]
    Config { key: &'static str, value: String, reason: &'static str },
    #[error("log {path} failed after an earlier I/O error and accepts no more writes: {reason}")]
    Failed { path: PathBuf, reason: String },
    #[error("log {path} is closed")]
    Closed { path: PathBuf },
}

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        EngineError::Io { path: path.into(), source: source.into() }
    }

    pub(crate) fn glommio(path: impl Into<PathBuf>, err: glommio::GlommioError<()>) -> Self {
        EngineError::Io { path: path.into(), source: err.into() }
    }
}
