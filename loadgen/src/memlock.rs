//! glommio's executors lock memory for their io_uring rings (at least 512 KiB
//! each). Processes often start with a small RLIMIT_MEMLOCK; this raises the
//! soft limit (and the hard one when privileged), or says what to set. A copy
//! of `engine::memlock`, so that loadgen does not depend on the storage engine.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Locked memory per executor: the rings plus glommio's I/O buffer pool.
pub const MEMLOCK_BYTES_PER_EXECUTOR: u64 = 2 << 20;

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
            "RLIMIT_MEMLOCK is {current} bytes (hard limit {hard}) but {bytes} bytes of locked memory are needed and \
             raising it failed: {err}. Run `ulimit -l {}` first.",
            bytes.div_ceil(1024)
        )
    })
}
