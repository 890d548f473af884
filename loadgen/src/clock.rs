//! One clock for the whole process: nanoseconds since the Unix epoch, read
//! as a fixed wall-clock base plus a monotonic offset. Stamps written into
//! records stay comparable with another loadgen process on the same machine
//! (both are close to wall time), while within a process the clock never
//! goes backwards, so a latency is never negative because of an NTP step.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Base {
    instant: Instant,
    unix_ns: u64,
}

static BASE: OnceLock<Base> = OnceLock::new();

/// Nanoseconds since the Unix epoch (monotonic within this process).
pub fn now_ns() -> u64 {
    let base = BASE.get_or_init(|| Base {
        instant: Instant::now(),
        unix_ns: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    });
    base.unix_ns + base.instant.elapsed().as_nanos() as u64
}

pub const NS_PER_MS: u64 = 1_000_000;
pub const NS_PER_SEC: u64 = 1_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_near_wall_time() {
        // Proves stamps never go backwards and stay within a second of the
        // system clock, so two processes on one machine can compare them.
        let first = now_ns();
        let second = now_ns();
        assert!(second >= first, "{second} < {first}");
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        assert!(wall.abs_diff(second) < NS_PER_SEC, "wall {wall} vs clock {second}");
    }
}
