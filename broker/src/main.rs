//! `stele`: the broker binary. Parses the command line and configuration,
//! sets up logging, and runs the shards until SIGTERM or SIGINT.

use clap::Parser;

// kafka-protocol 0.18 pre-sizes arrays from the counts on the wire. Under
// glibc's malloc a lying count of billions can abort the process; mimalloc
// reserves address space without committing it, and the decode then fails
// cleanly. See docs/protocol.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = broker::cli::Cli::parse();
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("stele: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if config.prefault_memory {
        keep_freed_memory();
    }
    match broker::server::run(config) {
        Ok(()) => exit_now(0),
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("stele: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// mimalloc's `mi_option_purge_delay` (mimalloc.h); libmimalloc-sys names
/// only some options.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to give freed pages back to the kernel (by default
/// it purges pages that stayed free past its purge delay), so that the
/// memory each shard prefaults at startup stays mapped for the buffers that
/// fill it later instead of being faulted in again on the request path. The
/// budgets bound what the broker holds either way.
fn keep_freed_memory() {
    // Safety: called once, before any other thread exists; mimalloc reads
    // the option when it next decides whether to purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    debug_assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, -1);
}

/// Ends the process after a clean shutdown without running the C library's
/// exit handlers. Every log is closed and durable by now; what those
/// handlers would do is the allocator's process-wide cleanup, which races
/// with what the shards' executors leave behind (io_uring operations the
/// kernel completes after their rings are torn down, into memory already
/// freed): about one clean stop in twenty then ended in a segfault inside
/// mimalloc's exit-time collection, after "stopped cleanly".
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Safety: `_exit` ends the process at once; nothing runs after it.
    unsafe { libc::_exit(code) }
}
