//! `stele-loadgen`: a Kafka-protocol throughput and latency benchmark,
//! thread-per-core on glommio, pointed at any Kafka-compatible broker.
//!
//! # Layout
//! - `cli`: the command line and its checks.
//! - `connection`: one broker connection: ApiVersions negotiation,
//!   framing, pipelined requests matched by correlation id.
//! - `cluster`: Metadata discovery, CreateTopics, InitProducerId, ListOffsets.
//! - `batch`: allocation-free v2 batch building, Kafka's partitioners.
//! - `producer` / `consumer` / `committer` / `share_consumer`: the
//!   workload tasks;
//!   `transaction`: a transactional producer's control requests.
//! - `stats`: histograms and counters; `report`: progress lines, the
//!   summary and the JSON result; `clock`: the stamp clock.
//!
//! The main thread finds the topic (on a short-lived executor), starts one
//! executor per `--cores` on the process's CPUs, gives producer i and
//! consumer j to executors i and producers+j (mod cores), and committer k
//! to executor k (mod cores), prints progress every second, stops
//! producers and committers at the deadline, and reports.

mod batch;
mod cli;
mod clock;
mod cluster;
mod committer;
mod connection;
mod consumer;
mod producer;
mod report;
mod share_consumer;
mod stats;
mod transaction;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Parser;
use glommio::{CpuSet, LocalExecutorBuilder, LocalExecutorPoolBuilder, Placement, PoolPlacement};

use crate::cli::{Cli, Workload};
use crate::cluster::Cluster;
use crate::stats::Stats;

// kafka-protocol 0.18 pre-sizes arrays from the counts on the wire; a
// broker's bad answer must not abort the client. mimalloc reserves address
// space without committing it (docs/protocol.md). It is also faster than
// glibc's malloc for the per-request allocations that remain.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// glommio's I/O buffer pool per executor; loadgen does no file I/O.
const IO_MEMORY_BYTES: usize = 1 << 20;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(err) = cli.validate() {
        eprintln!("stele-loadgen: {err}");
        return std::process::ExitCode::from(2);
    }
    match run(cli) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(err) => {
            eprintln!("stele-loadgen: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the workload; Ok(false) when it ran but something failed.
fn run(cli: Cli) -> anyhow::Result<bool> {
    engine::memlock::ensure_memlock(MEMLOCK_BYTES_PER_EXECUTOR * (cli.cores as u64 + 1)).map_err(anyhow::Error::msg)?;
    let cluster = Arc::new(discover(&cli)?);
    let cli = Arc::new(cli);
    let stats = Arc::new(Stats::new((cli.warmup * 1e9) as u64));
    let next_executor = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let handles = {
        let (cli, cluster, stats, finished) = (cli.clone(), cluster.clone(), stats.clone(), finished.clone());
        LocalExecutorPoolBuilder::new(placement(cli.cores)?)
            .name("loadgen")
            .io_memory(IO_MEMORY_BYTES)
            .on_all_shards(move || {
                let executor = next_executor.fetch_add(1, Ordering::AcqRel);
                let (cli, cluster, stats, finished) = (cli.clone(), cluster.clone(), stats.clone(), finished.clone());
                async move {
                    run_executor(executor, cli, cluster, stats).await;
                    finished.fetch_add(1, Ordering::AcqRel);
                }
            })
            .map_err(|err| anyhow!("cannot start the executors: {err} (io_uring and ulimit -l are needed)"))?
    };
    let outcome = report::watch(&cli, &stats, || finished.load(Ordering::Acquire) == cli.cores);
    for result in handles.join_all() {
        if let Err(err) = result {
            stats.fail(format!("an executor crashed: {err}"));
        }
    }
    report::finish(&cli, &cluster, &stats, outcome)
}

/// Finds the topic (creating it when missing) on a short-lived executor.
fn discover(cli: &Cli) -> anyhow::Result<Cluster> {
    let (bootstrap, topic, partitions, client_id) =
        (cli.bootstrap.clone(), cli.topic.clone(), cli.partitions, cli.client_id.clone());
    let configs = cli.topic_configs.clone();
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("loadgen-setup")
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || async move { cluster::discover(&bootstrap, &topic, partitions, &configs, &client_id).await })
        .map_err(|err| anyhow!("cannot start an executor: {err} (io_uring and ulimit -l are needed)"))?
        .join()
        .map_err(|err| anyhow!("the setup executor failed: {err}"))?
        .with_context(|| format!("finding topic {} through {}", cli.topic, cli.bootstrap))
}

/// Locked memory per executor: glommio's rings plus its I/O buffer pool.
const MEMLOCK_BYTES_PER_EXECUTOR: u64 = 2 << 20;

/// One executor per core of the CPUs this process may run on (as `taskset`
/// set them): glommio's own placement would pick among all online CPUs and
/// could pin loadgen onto the broker's core.
fn placement(cores: usize) -> anyhow::Result<PoolPlacement> {
    let allowed = rustix::thread::sched_getaffinity(None).context("sched_getaffinity")?;
    let online = CpuSet::online().map_err(|err| anyhow!("cannot read the CPU topology: {err}"))?;
    let usable = online.filter(|location| allowed.is_set(location.cpu));
    if usable.len() >= cores {
        Ok(PoolPlacement::MaxSpread(cores, Some(usable)))
    } else {
        Ok(PoolPlacement::Unbound(cores))
    }
}

/// Starts this executor's producers, consumers and committers and waits
/// for them.
async fn run_executor(executor: usize, cli: Arc<Cli>, cluster: Arc<Cluster>, stats: Arc<Stats>) {
    let mut tasks = Vec::new();
    let producers = cli.producer_count();
    for index in (0..producers).filter(|i| i % cli.cores == executor) {
        let task = producer::run(cli.clone(), cluster.clone(), stats.clone(), index);
        tasks.push(("producer", glommio::spawn_local(task)));
    }
    for index in (0..cli.consumer_count()).filter(|j| (producers + j) % cli.cores == executor) {
        if cli.workload == Workload::ShareConsume {
            let task = share_consumer::run(cli.clone(), cluster.clone(), stats.clone(), index);
            tasks.push(("share consumer", glommio::spawn_local(task)));
        } else {
            let task = consumer::run(cli.clone(), cluster.clone(), stats.clone(), index);
            tasks.push(("consumer", glommio::spawn_local(task)));
        }
    }
    for index in (0..cli.committer_count()).filter(|k| k % cli.cores == executor) {
        let task = committer::run(cli.clone(), cluster.clone(), stats.clone(), index);
        tasks.push(("committer", glommio::spawn_local(task)));
    }
    for (what, task) in tasks {
        if let Err(err) = task.await {
            stats.fail(format!("{what}: {err:#}"));
        }
    }
}

/// How long to wait between checks of the run's state.
pub const TICK: Duration = Duration::from_millis(20);

pub fn workload_name(workload: Workload) -> &'static str {
    match workload {
        Workload::Produce => "produce",
        Workload::Consume => "consume",
        Workload::E2e => "e2e",
        Workload::Commit => "commit",
        Workload::ShareConsume => "share-consume",
    }
}
