//! `stele-engine-bench`: append throughput and memory of the storage engine
//! on one shard (one glommio executor).
//!
//! Runs eight workloads, each on fresh partition logs in its own
//! subdirectory of `--dir` (deleted afterwards):
//! 1 KiB records in 64 KiB and 1 MiB batches, on 1 and 64 partitions, with
//! an fdatasync per flush group (`FlushPolicy::Always`, every appender waits
//! for durability of its batch as `acks=all` would) and without
//! (`FlushPolicy::Interval` with no trigger, one `flush()` per log at the end
//! inside the timed run).
//!
//! Appender tasks keep appends pipelined: `append()` returns once the batch
//! is in the write buffer, and backpressure comes from the shard's
//! write-buffer budget. Each workload reports MB/s (1 MB = 10^6 bytes of
//! appended batches), appends/s, records/s, fsyncs/s, the average write size,
//! the process's peak RSS and the peak use of the shard's two memory budgets.
//!
//! `scripts/bench-engine.sh` runs this next to fio on the same directory.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use engine::{FlushPolicy, IoMode, LogConfig, PartitionLog, ShardLimits, ShardResources};

const USAGE: &str = "usage: stele-engine-bench --dir PATH [--seconds N] [--json] [--only NAME[,NAME...]] \
                     [--in-flight-mib N]
       stele-engine-bench --list

  --dir PATH          existing directory on the filesystem to measure (ext4/xfs: O_DIRECT)
  --seconds N         seconds per workload (default 10)
  --json              print one JSON document on stdout (progress lines go to stderr)
  --only NAMES        run only these workloads (comma separated; see --list)
  --in-flight-mib N   appended bytes each workload keeps in flight across its appender tasks
                      (default 32; at least 2 tasks per partition)
  --list              print the workload names and exit

Workload names are p<partitions>-b<batch size>-<fsync|nofsync>. Set STELE_BENCH_DEBUG=1 to print
the first log's offsets, I/O counters and the shard's budgets twice a second while a workload runs.";

const RECORD_BYTES: usize = 1024;
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

struct Args {
    dir: PathBuf,
    seconds: f64,
    json: bool,
    only: Vec<String>,
    in_flight_bytes: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut dir = None;
    let mut seconds = 10.0;
    let mut json = false;
    let mut only = Vec::new();
    let mut in_flight_bytes = 32 << 20;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
            "--seconds" => {
                let v = value("--seconds")?;
                seconds = v.parse::<f64>().map_err(|e| format!("--seconds {v}: {e}"))?;
                if !(seconds > 0.0 && seconds.is_finite()) {
                    return Err(format!("--seconds {v}: must be positive"));
                }
            }
            "--json" => json = true,
            "--only" => only = value("--only")?.split(',').filter(|s| !s.is_empty()).map(String::from).collect(),
            "--in-flight-mib" => {
                let v = value("--in-flight-mib")?;
                let mib = v.parse::<usize>().map_err(|e| format!("--in-flight-mib {v}: {e}"))?;
                in_flight_bytes = mib << 20;
            }
            "--list" => {
                for w in workloads() {
                    println!("{}", w.name());
                }
                std::process::exit(0);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let dir = dir.ok_or_else(|| format!("--dir is required\n{USAGE}"))?;
    if !dir.is_dir() {
        return Err(format!("--dir {}: not an existing directory", dir.display()));
    }
    let dir = std::fs::canonicalize(&dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
    let names: Vec<String> = workloads().iter().map(Workload::name).collect();
    if let Some(unknown) = only.iter().find(|o| !names.contains(o)) {
        return Err(format!("--only: no workload is called {unknown:?}; there are {}", names.join(", ")));
    }
    Ok(Args { dir, seconds, json, only, in_flight_bytes })
}

#[derive(Debug, Clone, Copy)]
struct Workload {
    partitions: usize,
    batch_bytes: usize,
    fsync: bool,
}

impl Workload {
    fn name(&self) -> String {
        let batch = if self.batch_bytes >= 1 << 20 {
            format!("{}m", self.batch_bytes >> 20)
        } else {
            format!("{}k", self.batch_bytes >> 10)
        };
        format!("p{}-b{}-{}", self.partitions, batch, if self.fsync { "fsync" } else { "nofsync" })
    }

    fn records_per_batch(&self) -> usize {
        self.batch_bytes / RECORD_BYTES
    }
}

fn workloads() -> Vec<Workload> {
    let mut out = Vec::new();
    for fsync in [false, true] {
        for partitions in [1, 64] {
            for batch_bytes in [64 << 10, 1 << 20] {
                out.push(Workload { partitions, batch_bytes, fsync });
            }
        }
    }
    out
}

/// What one workload measured.
#[derive(Debug, Clone)]
struct Outcome {
    name: String,
    partitions: usize,
    batch_bytes: usize,
    records_per_batch: usize,
    fsync: bool,
    tasks: usize,
    io_mode: IoMode,
    seconds: f64,
    /// CPU time the process used during the timed run (all threads).
    cpu_seconds: f64,
    /// Block-device counters over the timed run, if the device was found.
    disk: Option<DiskCounters>,
    bytes_appended: u64,
    appends: u64,
    records: u64,
    fsyncs: u64,
    writes: u64,
    bytes_written: u64,
    rss_start_bytes: u64,
    rss_max_bytes: u64,
    /// VmHWM at the end; per workload when `hwm_reset` (the peak was reset
    /// through /proc/self/clear_refs at its start), else the process peak.
    hwm_bytes: u64,
    hwm_reset: bool,
    write_buffer_max: usize,
    tail_cache_max: usize,
    write_buffer_budget: usize,
    /// What the engine documents `write_buffer_bytes()` may reach: the
    /// budget plus one write chunk plus one carried block per log.
    write_buffer_bound: usize,
    tail_cache_budget: usize,
}

impl Outcome {
    fn mb_per_s(&self) -> f64 {
        self.bytes_appended as f64 / self.seconds / 1e6
    }
    fn per_s(&self, n: u64) -> f64 {
        n as f64 / self.seconds
    }
    /// Share of the run the device had requests in flight, in percent.
    fn disk_busy_pct(&self) -> f64 {
        self.disk.map(|d| d.io_ticks_ms as f64 / 10.0 / self.seconds).unwrap_or(f64::NAN)
    }
    /// Average number of requests in flight at the device.
    fn disk_queue_depth(&self) -> f64 {
        self.disk.map(|d| d.time_in_queue_ms as f64 / 1000.0 / self.seconds).unwrap_or(f64::NAN)
    }
    /// Average size of the device's write requests (the kernel may split writes).
    fn disk_request_bytes(&self) -> f64 {
        self.disk
            .filter(|d| d.write_ios > 0)
            .map(|d| d.write_sectors as f64 * 512.0 / d.write_ios as f64)
            .unwrap_or(f64::NAN)
    }
    fn avg_write_bytes(&self) -> f64 {
        if self.writes == 0 {
            0.0
        } else {
            self.bytes_written as f64 / self.writes as f64
        }
    }
}

/// Peaks seen during a workload.
#[derive(Default)]
struct Peaks {
    write_buffer: Cell<usize>,
    tail_cache: Cell<usize>,
    rss: Cell<u64>,
}

impl Peaks {
    fn note_budgets(&self, shard: &ShardResources) {
        self.write_buffer.set(self.write_buffer.get().max(shard.write_buffer_bytes()));
        self.tail_cache.set(self.tail_cache.get().max(shard.tail_cache_bytes()));
    }
    fn note_rss(&self) {
        if let Some(rss) = proc_status_bytes("VmRSS") {
            self.rss.set(self.rss.get().max(rss));
        }
    }
}

/// A field of /proc/self/status given in kB, in bytes.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) of the whole process so far, all threads
/// included (io_uring workers too), from /proc/self/stat (USER_HZ = 100).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    // Fields from the state (field 3) on: utime is field 14, stime field 15.
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Counters of the block device holding a directory, from
/// /sys/dev/block/MAJOR:MINOR/stat (the whole device: other processes'
/// I/O counts too).
#[derive(Debug, Clone, Copy, Default)]
struct DiskCounters {
    write_ios: u64,
    write_sectors: u64,
    /// Milliseconds with at least one request in flight.
    io_ticks_ms: u64,
    /// Milliseconds of requests in flight, summed over requests.
    time_in_queue_ms: u64,
}

fn disk_stat_path(dir: &Path) -> Option<PathBuf> {
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(dir).ok()?);
    let path = PathBuf::from(format!("/sys/dev/block/{}:{}/stat", rustix::fs::major(dev), rustix::fs::minor(dev)));
    path.exists().then_some(path)
}

fn disk_counters(path: Option<&Path>) -> Option<DiskCounters> {
    let text = std::fs::read_to_string(path?).ok()?;
    let f: Vec<u64> = text.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    (f.len() >= 11).then(|| DiskCounters {
        write_ios: f[4],
        write_sectors: f[6],
        io_ticks_ms: f[9],
        time_in_queue_ms: f[10],
    })
}

/// Resets VmHWM to the current RSS (Linux >= 4.0), so that the peak is per
/// workload. Returns whether that worked.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// Hands freed heap memory back to the kernel so that one workload's RSS
/// does not carry into the next one's figures.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and may be called at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn err(context: &str) -> impl Fn(engine::EngineError) -> String + '_ {
    move |e| format!("{context}: {e}")
}

async fn run_workload(args: &Args, w: Workload) -> Result<Outcome, String> {
    let name = w.name();
    let dir = args.dir.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let result = measure(args, w, &dir).await;
    let removed = std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()));
    let outcome = result?;
    removed?;
    Ok(outcome)
}

async fn measure(args: &Args, w: Workload, dir: &Path) -> Result<Outcome, String> {
    trim_heap();
    let limits = ShardLimits::default();
    let shard = ShardResources::new(limits.clone()).map_err(err("shard limits"))?;
    let config = LogConfig {
        segment_bytes_max: 1 << 30,
        flush_policy: if w.fsync {
            FlushPolicy::Always
        } else {
            FlushPolicy::Interval { messages: None, interval: None }
        },
        ..LogConfig::default()
    };
    let mut logs = Vec::with_capacity(w.partitions);
    for p in 0..w.partitions {
        let path = dir.join(format!("bench-{p}"));
        logs.push(PartitionLog::open(&path, config.clone(), shard.clone()).await.map_err(err("opening a log"))?);
    }
    let io_mode = logs[0].io_mode();

    let records = w.records_per_batch();
    let payload: Vec<u8> = (0..w.batch_bytes - engine::batch::HEADER_BYTES).map(|i| (i % 251) as u8).collect();
    let batch: Bytes = engine::batch::build_test_batch(records as i32, now_ms(), &payload).into();
    assert_eq!(batch.len(), w.batch_bytes);

    let tasks_per_log = (args.in_flight_bytes / (w.partitions * w.batch_bytes)).max(2);
    let peaks = Rc::new(Peaks::default());
    let hwm_reset = reset_peak_rss();
    let rss_start = proc_status_bytes("VmRSS").unwrap_or(0);
    peaks.rss.set(rss_start);

    let sampling = Rc::new(Cell::new(true));
    let sampler = {
        let (peaks, shard, sampling) = (peaks.clone(), shard.clone(), sampling.clone());
        glommio::spawn_local(async move {
            while sampling.get() {
                peaks.note_budgets(&shard);
                peaks.note_rss();
                glommio::timer::sleep(SAMPLE_EVERY).await;
            }
        })
    };

    if std::env::var_os("STELE_BENCH_DEBUG").is_some() {
        let (logs, shard, sampling) = (logs.clone(), shard.clone(), sampling.clone());
        glommio::spawn_local(async move {
            let t0 = Instant::now();
            while sampling.get() {
                glommio::timer::sleep(Duration::from_millis(500)).await;
                let l = &logs[0];
                // Runtime: time spent running tasks (since the last call);
                // the rest of the interval the executor polled I/O or slept.
                let executor = glommio::executor().executor_stats();
                eprintln!(
                    "debug {:.1}s: log0 end {} durable {} stats {:?}; wbuf {} pooled {} tcache {}; \
                     executor runtime {:?} scheduler runs {} tasks {}",
                    t0.elapsed().as_secs_f64(),
                    l.log_end_offset(),
                    l.durable_offset(),
                    l.stats(),
                    shard.write_buffer_bytes(),
                    shard.pooled_write_buffer_bytes(),
                    shard.tail_cache_bytes(),
                    executor.executor_runtime(),
                    executor.scheduler_runs(),
                    executor.tasks_executed(),
                );
            }
        })
        .detach();
    }
    let disk_stat = disk_stat_path(dir);
    let disk_start = disk_counters(disk_stat.as_deref());
    let cpu_start = process_cpu_seconds();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let mut appenders = Vec::with_capacity(w.partitions * tasks_per_log);
    for log in &logs {
        for _ in 0..tasks_per_log {
            let (log, batch, peaks, shard) = (log.clone(), batch.clone(), peaks.clone(), shard.clone());
            appenders.push(glommio::spawn_local(async move {
                let mut appends = 0u64;
                while Instant::now() < deadline {
                    let info = log.append(batch.clone()).await.map_err(err("append"))?;
                    appends += 1;
                    peaks.note_budgets(&shard);
                    if w.fsync {
                        log.wait_durable(info.last_offset + 1).await.map_err(err("wait_durable"))?;
                    } else {
                        // As a broker's request handlers would: let the
                        // flushers and the other appenders run.
                        futures_lite::future::yield_now().await;
                    }
                }
                Ok::<u64, String>(appends)
            }));
        }
    }
    let mut appends = 0u64;
    for appender in futures::future::join_all(appenders).await {
        appends += appender?;
    }
    for flushed in futures::future::join_all(logs.iter().map(flush)).await {
        flushed?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let disk = disk_counters(disk_stat.as_deref()).zip(disk_start).map(|(end, start)| DiskCounters {
        write_ios: end.write_ios - start.write_ios,
        write_sectors: end.write_sectors - start.write_sectors,
        io_ticks_ms: end.io_ticks_ms - start.io_ticks_ms,
        time_in_queue_ms: end.time_in_queue_ms - start.time_in_queue_ms,
    });
    let cpu_seconds = process_cpu_seconds().zip(cpu_start).map(|(end, start)| end - start).unwrap_or(f64::NAN);
    sampling.set(false);
    sampler.await;
    peaks.note_budgets(&shard);
    peaks.note_rss();
    let hwm = proc_status_bytes("VmHWM").unwrap_or(0);

    let mut outcome = Outcome {
        name: w.name(),
        partitions: w.partitions,
        batch_bytes: w.batch_bytes,
        records_per_batch: records,
        fsync: w.fsync,
        tasks: w.partitions * tasks_per_log,
        io_mode,
        seconds,
        cpu_seconds,
        disk,
        bytes_appended: appends * w.batch_bytes as u64,
        appends,
        records: appends * records as u64,
        fsyncs: 0,
        writes: 0,
        bytes_written: 0,
        rss_start_bytes: rss_start,
        rss_max_bytes: peaks.rss.get(),
        hwm_bytes: hwm,
        hwm_reset,
        write_buffer_max: peaks.write_buffer.get(),
        tail_cache_max: peaks.tail_cache.get(),
        write_buffer_budget: limits.write_buffer_bytes_max,
        write_buffer_bound: limits.write_buffer_bytes_max
            + limits.write_chunk_bytes_max
            + w.partitions * engine::BLOCK_BYTES,
        tail_cache_budget: limits.tail_cache_bytes_max,
    };
    for log in &logs {
        let stats = log.stats();
        outcome.fsyncs += stats.fsyncs;
        outcome.writes += stats.writes;
        outcome.bytes_written += stats.bytes_written;
    }
    // Every appended record got an offset exactly once.
    let total_end: i64 = logs.iter().map(|l| l.log_end_offset()).sum();
    if total_end != outcome.records as i64 {
        return Err(format!("log end offsets sum to {total_end}, expected {} records", outcome.records));
    }
    for closed in futures::future::join_all(logs.iter().map(|log| log.close())).await {
        closed.map_err(err("close"))?;
    }
    Ok(outcome)
}

/// How long the final `flush()` of a workload may take before the bench
/// reports it as hung instead of waiting forever.
const FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// `log.flush()`, or an error naming the log's offsets if it does not
/// return within [`FLUSH_LIMIT`].
async fn flush(log: &PartitionLog) -> Result<(), String> {
    let flushed = futures_lite::future::or(async { Some(log.flush().await) }, async {
        glommio::timer::sleep(FLUSH_LIMIT).await;
        None
    })
    .await;
    match flushed {
        Some(result) => result.map_err(err("flush")),
        None => Err(format!(
            "flush() of {} did not return within {} s: log end offset {}, durable offset {}, {:?}",
            log.dir().display(),
            FLUSH_LIMIT.as_secs(),
            log.log_end_offset(),
            log.durable_offset(),
            log.stats()
        )),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn header() -> String {
    format!(
        "{:<16} {:>8} {:>9} {:>10} {:>8} {:>9} {:>5} {:>6} {:>5} {:>8} {:>8} {:>13} {:>15}",
        "workload",
        "MB/s",
        "appends/s",
        "records/s",
        "fsyncs/s",
        "avg_write",
        "cpu%",
        "disk%",
        "qd",
        "rss_max",
        "VmHWM",
        "wbuf_max/MiB",
        "tcache_max/MiB"
    )
}

fn line(o: &Outcome) -> String {
    format!(
        "{:<16} {:>8.1} {:>9.0} {:>10.0} {:>8.1} {:>8.0}K {:>5.0} {:>6.0} {:>5.1} {:>7.0}M {:>7.0}M {:>7.1}/{:<5.0} {:>9.1}/{:<5.0}",
        o.name,
        o.mb_per_s(),
        o.per_s(o.appends),
        o.per_s(o.records),
        o.per_s(o.fsyncs),
        o.avg_write_bytes() / 1024.0,
        o.cpu_seconds / o.seconds * 100.0,
        o.disk_busy_pct(),
        o.disk_queue_depth(),
        mib(o.rss_max_bytes),
        mib(o.hwm_bytes),
        mib(o.write_buffer_max as u64),
        mib(o.write_buffer_budget as u64),
        mib(o.tail_cache_max as u64),
        mib(o.tail_cache_budget as u64),
    )
}

fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "null".to_string()
    }
}

fn json(o: &Outcome) -> String {
    let fields: Vec<(&str, String)> = vec![
        ("name", format!("\"{}\"", o.name)),
        ("partitions", o.partitions.to_string()),
        ("batch_bytes", o.batch_bytes.to_string()),
        ("records_per_batch", o.records_per_batch.to_string()),
        ("fsync", o.fsync.to_string()),
        ("tasks", o.tasks.to_string()),
        ("io_mode", format!("\"{:?}\"", o.io_mode)),
        ("seconds", format!("{:.3}", o.seconds)),
        ("cpu_seconds", format!("{:.2}", o.cpu_seconds)),
        ("bytes_appended", o.bytes_appended.to_string()),
        ("appends", o.appends.to_string()),
        ("records", o.records.to_string()),
        ("fsyncs", o.fsyncs.to_string()),
        ("writes", o.writes.to_string()),
        ("bytes_written", o.bytes_written.to_string()),
        ("mb_per_s", format!("{:.2}", o.mb_per_s())),
        ("appends_per_s", format!("{:.1}", o.per_s(o.appends))),
        ("records_per_s", format!("{:.1}", o.per_s(o.records))),
        ("fsyncs_per_s", format!("{:.2}", o.per_s(o.fsyncs))),
        ("avg_write_bytes", format!("{:.0}", o.avg_write_bytes())),
        ("cpu_pct", format!("{:.1}", o.cpu_seconds / o.seconds * 100.0)),
        ("disk_busy_pct", json_number(o.disk_busy_pct())),
        ("disk_queue_depth", json_number(o.disk_queue_depth())),
        ("disk_write_request_bytes", json_number(o.disk_request_bytes())),
        ("rss_start_bytes", o.rss_start_bytes.to_string()),
        ("rss_max_bytes", o.rss_max_bytes.to_string()),
        ("vm_hwm_bytes", o.hwm_bytes.to_string()),
        ("vm_hwm_per_workload", o.hwm_reset.to_string()),
        ("write_buffer_max_bytes", o.write_buffer_max.to_string()),
        ("write_buffer_budget_bytes", o.write_buffer_budget.to_string()),
        ("write_buffer_bound_bytes", o.write_buffer_bound.to_string()),
        ("tail_cache_max_bytes", o.tail_cache_max.to_string()),
        ("tail_cache_budget_bytes", o.tail_cache_budget.to_string()),
    ];
    let body: Vec<String> = fields.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

/// With `--features mimalloc` (as scripts/bench-engine.sh builds it), the
/// process allocator is mimalloc; see engine/Cargo.toml for why.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--raw-glommio") {
        // Diagnostic: glommio's own sequential O_DIRECT write speed, with no
        // engine in between (see docs/benchmarks.md).
        let dir = std::env::args().nth(2).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        if let Err(e) = raw_glommio(&dir) {
            eprintln!("stele-engine-bench --raw-glommio: {e}");
            std::process::exit(1);
        }
        return;
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("stele-engine-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    // glommio locks memory for its rings and registered buffers; keep both
    // small (the hard RLIMIT_MEMLOCK may be as low as 8 MiB).
    engine::memlock::ensure_memlock(4 << 20)?;
    let selected: Vec<Workload> =
        workloads().into_iter().filter(|w| args.only.is_empty() || args.only.contains(&w.name())).collect();
    let json_mode = args.json;
    let seconds = args.seconds;
    let handle = glommio::LocalExecutorBuilder::default()
        .name("stele-engine-bench")
        .io_memory(1 << 20)
        .spawn(move || async move {
            let progress = |s: &str| if args.json { eprintln!("{s}") } else { println!("{s}") };
            let limits = ShardLimits::default();
            progress(&format!(
                "# one shard; {seconds} s per workload; 1 KiB records; MB = 10^6 bytes of appended batches; \
                 budgets: write buffer {} MiB + tail cache {} MiB = {} MiB; {} writes in flight, {} KiB chunks",
                limits.write_buffer_bytes_max >> 20,
                limits.tail_cache_bytes_max >> 20,
                (limits.write_buffer_bytes_max + limits.tail_cache_bytes_max) >> 20,
                limits.writes_in_flight_max,
                limits.write_chunk_bytes_max >> 10,
            ));
            progress(&header());
            let mut outcomes = Vec::new();
            for w in selected {
                let outcome = run_workload(&args, w).await.map_err(|e| format!("{}: {e}", w.name()))?;
                if outcome.io_mode != IoMode::Direct {
                    eprintln!("warning: {} ran with {:?} I/O, not O_DIRECT", outcome.name, outcome.io_mode);
                }
                progress(&line(&outcome));
                outcomes.push(outcome);
            }
            Ok::<Vec<Outcome>, String>(outcomes)
        })
        .map_err(|e| format!("starting the executor: {e}"))?;
    let outcomes = handle.join().map_err(|e| format!("executor: {e}"))??;
    if json_mode {
        let limits = ShardLimits::default();
        let items: Vec<String> = outcomes.iter().map(json).collect();
        println!(
            "{{\"seconds_per_workload\":{seconds},\"record_bytes\":{RECORD_BYTES},\"write_buffer_budget_bytes\":{},\
             \"tail_cache_budget_bytes\":{},\"writes_in_flight_max\":{},\"write_chunk_bytes_max\":{},\
             \"workloads\":[{}]}}",
            limits.write_buffer_bytes_max,
            limits.tail_cache_bytes_max,
            limits.writes_in_flight_max,
            limits.write_chunk_bytes_max,
            items.join(",")
        );
    }
    Ok(())
}

/// Writes 4 GiB sequentially to a fresh file in `dir` with glommio's DmaFile:
/// 1 MiB writes, 32 in flight, preallocated in 256 MiB steps as the engine
/// does, then one fdatasync, and prints MB/s. The engine's write path minus
/// the engine: what glommio alone gets from the disk.
fn raw_glommio(dir: &Path) -> Result<(), String> {
    engine::memlock::ensure_memlock(4 << 20)?;
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("raw-glommio.bench");
    let result = glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            const WRITE: usize = 1 << 20;
            const IN_FLIGHT: usize = 32;
            const TOTAL: u64 = 4 << 30;
            const STEP: u64 = 256 << 20;
            let file = glommio::io::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .dma_open(&path)
                .await
                .map_err(|e| e.to_string())?;
            let file = Rc::new(file);
            let start = Instant::now();
            let next = Rc::new(Cell::new(0u64));
            let allocated = Rc::new(Cell::new(0u64));
            let writers = (0..IN_FLIGHT).map(|_| {
                let (file, next, allocated) = (file.clone(), next.clone(), allocated.clone());
                async move {
                    loop {
                        let position = next.get();
                        if position >= TOTAL {
                            return Ok::<(), String>(());
                        }
                        next.set(position + WRITE as u64);
                        if position + WRITE as u64 > allocated.get() {
                            let target = allocated.get() + STEP;
                            allocated.set(target);
                            file.pre_allocate(target, false).await.map_err(|e| e.to_string())?;
                        }
                        let mut buf = glommio::allocate_dma_buffer(WRITE);
                        buf.as_bytes_mut().fill(0x5a);
                        file.write_at(buf, position).await.map_err(|e| e.to_string())?;
                    }
                }
            });
            for r in futures::future::join_all(writers).await {
                r?;
            }
            file.fdatasync().await.map_err(|e| e.to_string())?;
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "raw-glommio-1m  {:.1} MB/s ({} GiB in {seconds:.2} s)",
                TOTAL as f64 / 1e6 / seconds,
                TOTAL >> 30
            );
            let _ = std::fs::remove_file(&path);
            Ok::<(), String>(())
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|e| format!("{e:?}"))?;
    result
}
