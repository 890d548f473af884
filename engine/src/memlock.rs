//! glommio's executors lock memory for their io_uring rings and registered
//! buffers (at least 512 KiB each). Processes start with a small
//! RLIMIT_MEMLOCK; this raises it when the process is permitted to, and
//! otherwise says exactly what to set.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Locked memory each glommio executor needs, by glommio's documentation.
pub const MEMLOCK_BYTES_PER_EXECUTOR: u64 = 512 * 1024;

/// Makes sure at least `bytes` of memory may be locked, raising the soft
/// limit (and, when privileged, the hard limit) if needed.
pub fn ensure_memlock(bytes: u64) -> Result<(), String> {
    let limit = getrlimit(Resource::Memlock);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= bytes {
        return Ok(());
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let wanted = Rlimit { current: Some(bytes), maximum: if hard >= bytes { limit.maximum } else { Some(bytes) } };
    setrlimit(Resource::Memlock, wanted).map_err(|err| {
        format!(
            "RLIMIT_MEMLOCK is {current} bytes (hard limit {hard}) but {bytes} bytes of locked memory are needed \
             ({} KiB per shard) and raising it failed: {err}. Run `ulimit -l {}` (or set LimitMEMLOCK= in the \
             systemd unit, or memlock in /etc/security/limits.conf) before starting.",
            MEMLOCK_BYTES_PER_EXECUTOR / 1024,
            bytes.div_ceil(1024)
        )
    })
}
