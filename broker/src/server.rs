//! Starting and stopping the broker: the checks that must pass before any
//! shard runs (one broker per data directory and port, locked memory,
//! io_uring), the shards themselves, and graceful shutdown.
//!
//! Startup: every shard joins the channel mesh, opens the partitions placed
//! on it, and only when all have done so does any shard accept connections,
//! so that no request is forwarded to a shard that is not ready. Shutdown
//! (SIGTERM/SIGINT) runs in two phases the same way: every shard stops
//! accepting and lets its connections finish the requests they have read;
//! then, when all are idle, every shard closes its logs (flush, clean
//! shutdown marker).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use crate::config::Config;
use crate::controller::{self, Controller};
use crate::metadata::{MetadataImage, MetadataLog};
use crate::shard::{self, Job, Shard, JOB_QUEUE_CAPACITY};

/// Locked memory each shard asks for: glommio's rings (512 KiB) plus the
/// registered I/O buffer pool (`IO_MEMORY_BYTES`) and slack.
const MEMLOCK_BYTES_PER_SHARD: u64 = 2 << 20;
/// glommio's registered DMA buffer pool per shard; buffers beyond it are
/// ordinary aligned allocations, so this only needs to cover the common case.
const IO_MEMORY_BYTES: usize = 1 << 20;
/// How long shutdown waits for connections to finish what they have read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a listener left by a killed process may linger (see
/// `check_port_free`).
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(3);
/// How often a shard looks at the shutdown flag set by the signal handler.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Name of the lock file that keeps a second broker off a data directory.
pub const LOCK_FILE: &str = ".lock";

/// Runs the broker until SIGTERM or SIGINT, then stops it cleanly.
pub fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while stopping exits at once.
        signal_hook::flag::register_conditional_shutdown(signal, 1, shutdown.clone())?;
        signal_hook::flag::register(signal, shutdown.clone())?;
    }
    run_until(config, shutdown)
}

/// Runs the broker until `shutdown` becomes true.
pub fn run_until(mut config: Config, shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    // glommio's file APIs want absolute paths.
    config.data_dir = config
        .data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve data directory {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let port = check_port_free(&config)?;
    if config.listen.port() == 0 {
        // Port 0: pick a free port once, for all shards (each binding port 0
        // would get a different one), and advertise it.
        config.listen.set_port(port);
        if config.advertised_port == 0 {
            config.advertised_port = port;
        }
    }
    engine::memlock::ensure_memlock(MEMLOCK_BYTES_PER_SHARD * config.shards as u64).map_err(anyhow::Error::msg)?;
    raise_open_files_limit();
    let (log, image) = MetadataLog::open(&config.data_dir)
        .with_context(|| format!("cannot load cluster metadata from {}", config.data_dir.display()))?;
    tracing::info!(
        cluster_id = %image.cluster_id,
        topics = image.topics.len(),
        shards = config.shards,
        data_dir = %config.data_dir.display(),
        "starting"
    );
    let shards = config.shards;
    let config = Arc::new(config);
    let image = Arc::new(image);
    let metadata_log = Arc::new(Mutex::new(Some(log)));
    let phases = Arc::new(Phases::default());
    let mesh = MeshBuilder::<Job, _>::full(shards, JOB_QUEUE_CAPACITY);
    let placement = placement(shards)?;
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("stele-shard")
        .io_memory(IO_MEMORY_BYTES)
        .on_all_shards(move || {
            let start = ShardStart {
                config: config.clone(),
                image: image.clone(),
                metadata_log: metadata_log.clone(),
                phases: phases.clone(),
                shutdown: shutdown.clone(),
            };
            let mesh = mesh.clone();
            async move { run_shard(start, mesh).await }
        })
        .map_err(|err| {
            anyhow::anyhow!(
                "cannot start the shards' executors: {err}. Stele needs io_uring (Linux 5.8 or later, not disabled \
                 by the sysctl kernel.io_uring_disabled or a container's seccomp profile) and locked memory \
                 (ulimit -l)"
            )
        })?;
    let mut failures = Vec::new();
    for result in handles.join_all() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => failures.push(err),
            Err(err) => failures.push(format!("a shard crashed: {err}")),
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// One pinned executor per shard on the CPUs this process may run on (as
/// `taskset` or a cgroup set them): glommio's own choice would pick among
/// all online CPUs and could pin a shard onto a core reserved for something
/// else. More shards than allowed CPUs run unpinned.
fn placement(shards: usize) -> anyhow::Result<PoolPlacement> {
    let allowed = rustix::thread::sched_getaffinity(None).context("reading the CPU affinity (sched_getaffinity)")?;
    let online = glommio::CpuSet::online().map_err(|err| anyhow::anyhow!("cannot read the CPU topology: {err}"))?;
    let usable = online.filter(|location| allowed.is_set(location.cpu));
    if usable.len() >= shards {
        Ok(PoolPlacement::MaxSpread(shards, Some(usable)))
    } else {
        tracing::warn!(shards, cpus = usable.len(), "more shards than CPUs this process may use: shards run unpinned");
        Ok(PoolPlacement::Unbound(shards))
    }
}

/// Everything a shard needs to start; cloned into each executor.
struct ShardStart {
    config: Arc<Config>,
    image: Arc<MetadataImage>,
    metadata_log: Arc<Mutex<Option<MetadataLog>>>,
    phases: Arc<Phases>,
    shutdown: Arc<AtomicBool>,
}

/// Counters that let shards wait for each other at startup and shutdown
/// without blocking their executors (they poll with a timer).
#[derive(Default)]
struct Phases {
    opened: AtomicUsize,
    drained: AtomicUsize,
    failed: AtomicBool,
}

async fn wait_for_all(counter: &AtomicUsize, shards: usize, failed: &AtomicBool) -> bool {
    while counter.load(Ordering::Acquire) < shards {
        if failed.load(Ordering::Acquire) {
            return false;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    true
}

async fn run_shard(
    start: ShardStart,
    mesh: MeshBuilder<Job, glommio::channels::channel_mesh::Full>,
) -> Result<(), String> {
    let (senders, receivers) = mesh.join().await.map_err(|err| format!("joining the shard mesh failed: {err}"))?;
    let id = senders.peer_id();
    let fail = |message: String| {
        start.phases.failed.store(true, Ordering::Release);
        // Unblock peers waiting at the startup barrier.
        start.shutdown.store(true, Ordering::Release);
        message
    };
    let limits = start.config.shard_limits[id].clone();
    let resources = engine::ShardResources::new(limits).map_err(|err| fail(format!("shard {id}: {err}")))?;
    if start.config.prefault_memory {
        let started = std::time::Instant::now();
        let bytes = resources.prefault_memory();
        tracing::info!(
            shard = id,
            mib = bytes >> 20,
            ms = started.elapsed().as_millis() as u64,
            "prefaulted the shard's memory budgets (tail cache and write buffers)"
        );
    }
    let controller = if id == shard::CONTROLLER_SHARD {
        let log = start.metadata_log.lock().expect("metadata log handoff").take().expect("shard 0 starts once");
        Some(Controller::new(log))
    } else {
        None
    };
    let shard = Rc::new(Shard::new(start.config.clone(), resources, start.image.clone(), senders, controller));
    let jobs = glommio::spawn_local(shard::serve_jobs(shard.clone(), receivers));
    if id == 0 {
        warn_if_buffered_io(&start.config.data_dir).await;
    }
    if let Err(err) = controller::install(&shard, start.image.clone()).await {
        return Err(fail(format!("shard {id}: opening partitions: {err}")));
    }
    if let Err(err) = crate::group::GroupCoordinator::start(&shard).await {
        return Err(fail(format!("shard {id}: loading consumer groups: {err}")));
    }
    crate::handlers::register_share_member_gone_listener(&shard);
    if let Err(err) = crate::txn::TxnCoordinator::start(&shard).await {
        return Err(fail(format!("shard {id}: loading transactions: {err}")));
    }
    start.phases.opened.fetch_add(1, Ordering::AcqRel);
    if !wait_for_all(&start.phases.opened, shard.count, &start.phases.failed).await {
        shard.share.close().await;
        close_partitions(&shard).await;
        shard.groups.close().await;
        shard.txn.close().await;
        shard::close_job_queues(&shard);
        return Ok(());
    }
    let listener = glommio::net::TcpListener::bind(start.config.listen)
        .map_err(|err| fail(format!("shard {id}: cannot listen on {}: {err}", start.config.listen)))?;
    if id == 0 {
        tracing::info!(
            listen = %start.config.listen,
            advertised = %format!("{}:{}", start.config.advertised_host, start.config.advertised_port),
            "ready: accepting Kafka clients"
        );
    }
    let accepting = glommio::spawn_local(accept(shard.clone(), listener));
    let housekeeping = glommio::spawn_local(housekeep(shard.clone()));
    let sessions = glommio::spawn_local(crate::group::GroupCoordinator::housekeep(shard.clone()));
    // Started only now that every shard runs: completing transactions
    // found prepared writes markers to partitions on any shard.
    let transactions = glommio::spawn_local(crate::txn::TxnCoordinator::housekeep(shard.clone()));
    while !start.shutdown.load(Ordering::Acquire) {
        glommio::timer::sleep(SIGNAL_POLL).await;
    }
    if id == 0 {
        tracing::info!("shutting down: finishing requests in flight");
    }
    shard.stopping.set();
    accepting.await;
    housekeeping.await;
    sessions.await;
    transactions.await;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while shard.connections.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    start.phases.drained.fetch_add(1, Ordering::AcqRel);
    wait_for_all(&start.phases.drained, shard.count, &AtomicBool::new(false)).await;
    // Share-state logs live in partition directories: closed first.
    shard.share.close().await;
    close_partitions(&shard).await;
    shard.groups.close().await;
    shard.txn.close().await;
    shard::close_job_queues(&shard);
    jobs.await;
    Ok(())
}

async fn accept(shard: Rc<Shard>, listener: glommio::net::TcpListener) {
    loop {
        let accepted = {
            let accept = std::pin::pin!(listener.accept());
            let stop = std::pin::pin!(shard.stopping.wait());
            match futures::future::select(accept, stop).await {
                futures::future::Either::Left((accepted, _)) => accepted,
                futures::future::Either::Right(_) => return,
            }
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(shard = shard.id, error = %err, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.connections.get() >= shard.config.connections_per_shard_max {
            tracing::warn!(
                shard = shard.id,
                limit = shard.config.connections_per_shard_max,
                "refusing a connection: connections_per_shard_max reached"
            );
            drop(stream);
            continue;
        }
        shard.connections.set(shard.connections.get() + 1);
        let shard = shard.clone();
        glommio::spawn_local(async move {
            crate::connection::serve(shard.clone(), stream).await;
            shard.connections.set(shard.connections.get() - 1);
        })
        .detach();
    }
}

/// Applies retention (and producer expiry) to this shard's partitions every
/// `log.retention.check.interval.ms`, until the shard stops.
async fn housekeep(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.config.retention_check_interval_ms);
    loop {
        {
            let tick = std::pin::pin!(glommio::timer::sleep(interval));
            let stop = std::pin::pin!(shard.stopping.wait());
            if let futures::future::Either::Right(_) = futures::future::select(tick, stop).await {
                return;
            }
        }
        let now_ms = crate::partition::now_ms();
        for partition in shard.partitions() {
            match partition.housekeep(now_ms).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(
                    topic = %partition.topic,
                    partition = partition.index,
                    deleted,
                    log_start_offset = partition.log.log_start_offset(),
                    "retention deleted segments"
                ),
                Err(err) => {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, error = %err, "retention failed")
                }
            }
        }
    }
}

async fn close_partitions(shard: &Shard) {
    for partition in shard.partitions() {
        if let Err(err) = partition.log.close().await {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %err, "closing log failed");
        }
    }
}

async fn warn_if_buffered_io(dir: &Path) {
    match engine::probe_io_mode(dir).await {
        Ok(engine::IoMode::Direct) => {}
        Ok(mode) => tracing::warn!(
            data_dir = %dir.display(),
            ?mode,
            "the data directory's filesystem does not support O_DIRECT (tmpfs?): falling back to buffered I/O, \
             which is slower and less predictable; put the data directory on ext4 or xfs"
        ),
        Err(err) => tracing::warn!(data_dir = %dir.display(), error = %err, "could not probe O_DIRECT support"),
    }
}

/// Each connection and each segment file is a descriptor; processes start
/// with a soft limit (often 1024) far below the hard one. Raise it to the
/// hard limit, as Kafka's packaging does with `ulimit -n`.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(err) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %err, "could not raise the open files limit (ulimit -n)");
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    tracing::debug!(open_files_max = ?now, "open files limit");
}

/// Holds an exclusive lock on `<data_dir>/.lock` for the life of the
/// process; a second broker on the same directory fails at once, naming the
/// process that holds it.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<File> {
    let path: PathBuf = data_dir.join(LOCK_FILE);
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).with_context(|| {
            format!("data directory {} is not writable (creating {})", data_dir.display(), path.display())
        })?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        bail!(
            "data directory {} is in use by another stele process (pid {}, lock file {})",
            data_dir.display(),
            holder.trim(),
            path.display()
        );
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    file.sync_data()?;
    Ok(file)
}

/// glommio binds with SO_REUSEPORT, so a second broker on the same port
/// would bind successfully and take half the connections. A bind without
/// SO_REUSEPORT first proves nobody else listens there. That bind also
/// fails while connections of a previous run sit in TIME_WAIT (they carry
/// the old listener's SO_REUSEPORT), so a refused bind is confirmed by
/// connecting: only a listener answers. And a listener of a process killed
/// with -9 outlives it briefly (the kernel tears io_uring rings down, and
/// the files they hold, after the process is gone), so a listener must
/// still answer after `PORT_RELEASE_WAIT` to count as another broker.
/// Returns the port bound.
fn check_port_free(config: &Config) -> anyhow::Result<u16> {
    let probe = || -> std::io::Result<u16> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(config.listen), socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        match socket.bind(&config.listen.into()) {
            Ok(()) => Ok(socket.local_addr()?.as_socket().map_or(0, |a| a.port())),
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse && config.listen.port() != 0 => {
                let mut target = config.listen;
                if target.ip().is_unspecified() {
                    target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                match std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                    Ok(_) => Err(err),
                    Err(_) => Ok(config.listen.port()),
                }
            }
            Err(err) => Err(err),
        }
    };
    let deadline = Instant::now() + PORT_RELEASE_WAIT;
    let mut result = probe();
    while result.is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        result = probe();
    }
    match result {
        Ok(port) => Ok(port),
        Err(err) => bail!(
            "cannot listen on {}: {err} (another process, perhaps another stele, is using the port; \
             `ss -ltnp 'sport = :{}'` shows which)",
            config.listen,
            config.listen.port()
        ),
    }
}
