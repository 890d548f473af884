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
    match broker::server::run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("stele: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
