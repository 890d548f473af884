//! The one place that touches files. Segment data goes through glommio's
//! `DmaFile` (O_DIRECT on io_uring) where the filesystem supports it, and
//! through `BufferedFile` plus fdatasync where it does not (tmpfs), with one
//! warning per process. Small metadata files (indexes, markers) are written
//! whole and atomically: temporary file, fdatasync, rename, directory sync.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use glommio::io::{BufferedFile, Directory, DmaBuffer, DmaFile, OpenOptions};

use crate::error::{EngineError, Result};
use crate::BLOCK_BYTES;

/// How segment files of a directory are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// O_DIRECT through DMA buffers: no page cache, 4 KiB aligned writes.
    Direct,
    /// Page-cache I/O plus fdatasync, for filesystems without O_DIRECT.
    Buffered,
}

static BUFFERED_WARNING_GIVEN: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Probe results of this executor, by device id: the probe touches the
    /// disk, and glommio keeps its own per-device state per thread.
    static PROBED: std::cell::RefCell<Vec<(u64, IoMode)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Finds out whether `dir` (which must exist) takes O_DIRECT I/O, by writing
/// a block with O_DIRECT and reading it back through glommio.
///
/// The read-back matters beyond the answer it gives: glommio decides once per
/// device whether to use its polled (IOPOLL) ring by issuing a read on the
/// first file it opens there, and a read of an empty new file succeeds
/// without reaching the device, so it would wrongly pick the polled ring on
/// devices without poll queues (virtio), where every later read then fails
/// with EOPNOTSUPP. Opening a non-empty probe file first makes glommio's own
/// probe reach the device and decide correctly.
///
/// tmpfs accepts O_DIRECT on recent kernels but still goes through the page
/// cache, so it is recognised by its filesystem magic.
pub async fn probe_io_mode(dir: &Path) -> Result<IoMode> {
    let device = std::fs::metadata(dir).map_err(|e| EngineError::io(dir, e))?;
    let device = std::os::unix::fs::MetadataExt::dev(&device);
    if let Some(mode) = PROBED.with(|p| p.borrow().iter().find(|(d, _)| *d == device).map(|(_, m)| *m)) {
        return Ok(mode);
    }
    let reason =
        if is_tmpfs(dir)? { Some("the filesystem is tmpfs".to_string()) } else { probe_direct_io(dir).await? };
    let mode = match reason {
        None => IoMode::Direct,
        Some(reason) => {
            if !BUFFERED_WARNING_GIVEN.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    dir = %dir.display(),
                    "O_DIRECT is not available ({reason}); falling back to buffered I/O with fdatasync. \
                     Durability is unchanged, but writes go through the page cache and throughput figures \
                     will not represent a real disk. Put the data directory on ext4 or xfs for production."
                );
            }
            IoMode::Buffered
        }
    };
    PROBED.with(|p| p.borrow_mut().push((device, mode)));
    Ok(mode)
}

/// `None` if O_DIRECT writes and glommio DMA reads work in `dir`, else why not.
async fn probe_direct_io(dir: &Path) -> Result<Option<String>> {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(".stele-odirect-probe");
    let opened =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(&probe);
    let file = match opened {
        Ok(file) => file,
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            return Ok(Some(format!("opening with O_DIRECT failed: {err}")));
        }
        Err(err) => return Err(EngineError::io(probe, err)),
    };
    drop(file);
    // A plain write is enough to give the file a real block on the device.
    std::fs::write(&probe, [0x5au8; BLOCK_BYTES]).map_err(|e| EngineError::io(&probe, e))?;
    let outcome = match DmaFile::open(&probe).await {
        Ok(file) => {
            let read = file.read_at_aligned(0, BLOCK_BYTES).await;
            let _ = file.close().await;
            match read {
                Ok(data) if data.len() == BLOCK_BYTES && data.iter().all(|b| *b == 0x5a) => None,
                Ok(data) => Some(format!("a DMA read returned {} unexpected bytes", data.len())),
                Err(err) => Some(format!("a DMA read failed: {err}")),
            }
        }
        Err(err) => Some(format!("opening a DMA file failed: {err}")),
    };
    let _ = std::fs::remove_file(&probe);
    Ok(outcome)
}

fn is_tmpfs(dir: &Path) -> Result<bool> {
    let stat = rustix::fs::statfs(dir).map_err(|e| EngineError::io(dir, std::io::Error::from(e)))?;
    Ok(stat.f_type as i64 == libc::TMPFS_MAGIC)
}

/// A disk operation slower than this is logged as a warning naming the
/// file and the operation: every acknowledgement waiting on it stalls, and
/// the log line is how an operator tells a slow disk from a slow broker.
const SLOW_IO: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs `io` and warns when it took [`SLOW_IO`] or more, failed or not.
async fn warn_if_slow<T>(op: &'static str, path: &Path, io: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let outcome = io.await;
    let took = started.elapsed();
    if took >= SLOW_IO {
        tracing::warn!(path = %path.display(), op, ms = took.as_millis() as u64, "slow disk operation");
    }
    outcome
}

/// An open segment file.
pub(crate) struct SegmentFile {
    path: PathBuf,
    inner: Inner,
}

enum Inner {
    Direct(DmaFile),
    Buffered(BufferedFile),
}

impl SegmentFile {
    /// Opens (or with `create`, creates) a segment file for reading and writing.
    pub(crate) async fn open(path: PathBuf, mode: IoMode, create: bool) -> Result<Self> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(create);
        let inner = match mode {
            IoMode::Direct => Inner::Direct(options.dma_open(&path).await.map_err(|e| EngineError::glommio(&path, e))?),
            IoMode::Buffered => {
                Inner::Buffered(options.buffered_open(&path).await.map_err(|e| EngineError::glommio(&path, e))?)
            }
        };
        Ok(SegmentFile { path, inner })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the first `len` bytes of `buf` at `position`. In direct mode
    /// `position` and `len` must be multiples of the block size.
    pub(crate) async fn write_at(&self, mut buf: DmaBuffer, len: usize, position: u64) -> Result<()> {
        let write = async {
            match &self.inner {
                Inner::Direct(file) => {
                    buf.trim_to_size(len);
                    file.write_at(buf, position).await
                }
                Inner::Buffered(file) => file.write_at(buf.as_bytes()[..len].to_vec(), position).await,
            }
        };
        let written =
            warn_if_slow("write", &self.path, write).await.map_err(|e| EngineError::glommio(&self.path, e))?;
        if written != len {
            return Err(EngineError::io(
                &self.path,
                std::io::Error::other(format!("short write at byte {position}: {written} of {len} bytes")),
            ));
        }
        Ok(())
    }

    /// Writes all of `buf` at `position` (block aligned, in direct mode) and
    /// hands the buffer back once the write completed, so that the caller
    /// can fill it again instead of allocating a new one. The buffer is
    /// `None` only if glommio still held a reference to it.
    pub(crate) async fn write_whole_at(&self, buf: DmaBuffer, position: u64) -> (Result<()>, Option<DmaBuffer>) {
        let len = buf.len();
        let write = async {
            match &self.inner {
                Inner::Direct(file) => {
                    let buf = Rc::new(buf);
                    let written = file.write_rc_at(buf.clone(), position).await;
                    (written, Rc::try_unwrap(buf).ok())
                }
                Inner::Buffered(file) => (file.write_at(buf.as_bytes().to_vec(), position).await, Some(buf)),
            }
        };
        let (written, buf) = warn_if_slow("write", &self.path, write).await;
        let result = match written {
            Ok(written) if written == len => Ok(()),
            Ok(written) => Err(EngineError::io(
                &self.path,
                std::io::Error::other(format!("short write at byte {position}: {written} of {len} bytes")),
            )),
            Err(e) => Err(EngineError::glommio(&self.path, e)),
        };
        (result, buf)
    }

    /// Reads up to `len` bytes at `position`; fewer at the end of the file.
    pub(crate) async fn read_at(&self, position: u64, len: usize) -> Result<Bytes> {
        let result = match &self.inner {
            Inner::Direct(file) => file.read_at(position, len).await,
            Inner::Buffered(file) => file.read_at(position, len).await,
        }
        .map_err(|e| EngineError::glommio(&self.path, e))?;
        Ok(Bytes::copy_from_slice(&result))
    }

    pub(crate) async fn fdatasync(&self) -> Result<()> {
        let sync = async {
            match &self.inner {
                Inner::Direct(file) => file.fdatasync().await,
                Inner::Buffered(file) => file.fdatasync().await,
            }
        };
        warn_if_slow("fdatasync", &self.path, sync).await.map_err(|e| EngineError::glommio(&self.path, e))
    }

    pub(crate) async fn truncate(&self, size: u64) -> Result<()> {
        match &self.inner {
            Inner::Direct(file) => file.truncate(size).await,
            Inner::Buffered(file) => file.truncate(size).await,
        }
        .map_err(|e| EngineError::glommio(&self.path, e))
    }

    /// Makes the file `size` bytes long with allocated, zero-reading blocks.
    pub(crate) async fn preallocate(&self, size: u64) -> Result<()> {
        let allocate = async {
            match &self.inner {
                Inner::Direct(file) => file.pre_allocate(size, false).await,
                Inner::Buffered(file) => file.pre_allocate(size, false).await,
            }
        };
        warn_if_slow("fallocate", &self.path, allocate).await.map_err(|e| EngineError::glommio(&self.path, e))
    }

    pub(crate) async fn size(&self) -> Result<u64> {
        match &self.inner {
            Inner::Direct(file) => file.file_size().await,
            Inner::Buffered(file) => file.file_size().await,
        }
        .map_err(|e| EngineError::glommio(&self.path, e))
    }
}

/// Writes `contents` to `path` so that after a crash the file holds either
/// its old contents or all of the new ones.
pub(crate) async fn write_file_atomically(path: &Path, contents: Vec<u8>) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let file = write_whole_file(&tmp, contents).await?;
    file.fdatasync().await.map_err(|e| EngineError::glommio(&tmp, e))?;
    file.close().await.map_err(|e| EngineError::glommio(&tmp, e))?;
    glommio::io::rename(&tmp, path).await.map_err(|e| EngineError::glommio(path, e))?;
    sync_dir(path.parent().expect("metadata files live in a directory")).await
}

/// Writes `contents` to `path`, replacing it, without an fdatasync: after a
/// crash the file may be missing, empty or torn, so only for files whose
/// reader checks them (the CRC-framed index files).
pub(crate) async fn write_file_lazily(path: &Path, contents: Vec<u8>) -> Result<()> {
    let file = write_whole_file(path, contents).await?;
    file.close().await.map_err(|e| EngineError::glommio(path, e))
}

/// Creates (or empties) `path` and writes all of `contents` into it.
async fn write_whole_file(path: &Path, contents: Vec<u8>) -> Result<BufferedFile> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(path)
        .await
        .map_err(|e| EngineError::glommio(path, e))?;
    let len = contents.len();
    let written = file.write_at(contents, 0).await.map_err(|e| EngineError::glommio(path, e))?;
    if written != len {
        return Err(EngineError::io(path, std::io::Error::other("short write")));
    }
    Ok(file)
}

/// Reads a whole small file, or `None` if it does not exist.
pub(crate) async fn read_small_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match BufferedFile::open(path).await {
        Ok(file) => file,
        Err(err) => {
            let err: std::io::Error = err.into();
            if err.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(EngineError::io(path, err));
        }
    };
    let size = file.file_size().await.map_err(|e| EngineError::glommio(path, e))?;
    let data = file.read_at(0, size as usize).await.map_err(|e| EngineError::glommio(path, e))?;
    let data = data.to_vec();
    file.close().await.map_err(|e| EngineError::glommio(path, e))?;
    Ok(Some(data))
}

/// Removes a file; a file that is already gone is not an error.
pub(crate) async fn remove_file(path: &Path) -> Result<()> {
    match glommio::io::remove(path).await {
        Ok(()) => Ok(()),
        Err(err) => {
            let err: std::io::Error = err.into();
            if err.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(EngineError::io(path, err))
            }
        }
    }
}

/// Makes renames, creations and removals in `dir` durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<()> {
    let handle = Directory::open(dir).await.map_err(|e| EngineError::glommio(dir, e))?;
    handle.sync().await.map_err(|e| EngineError::glommio(dir, e))?;
    handle.close().await.map_err(|e| EngineError::glommio(dir, e))
}
