#!/usr/bin/env bash
# Storage engine benchmark: stele-engine-bench beside fio's sequential
# O_DIRECT write bandwidth on the same directory, as one table.
#
#   scripts/bench-engine.sh [DATA_DIR]
#
# DATA_DIR must be on the filesystem to measure (ext4 or xfs: the engine
# writes with O_DIRECT; tmpfs is refused). Default: a fresh directory under
# ./bench-data. Everything the run writes lives in a fresh subdirectory that
# is deleted at the end.
#
# Environment: BENCH_SECONDS (per workload, default 5), FIO_SIZE (bytes per
# fio run, default 4G), BENCH_CPU (core to pin fio and the bench to, default
# the last one; "none" to not pin).
#
# Each engine workload runs right after its own fio run (bs=1M, iodepth 8)
# and is compared with it, so that both see the same disk: on a shared
# machine the disk's speed drifts by tens of percent within minutes. See
# docs/benchmarks.md for what the figures mean.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${BENCH_SECONDS:-5}
fio_size=${FIO_SIZE:-4G}

say() { echo "bench-engine: $*" >&2; }

command -v python3 >/dev/null || { say "python3 is needed to read fio's and the bench's JSON"; exit 1; }

# --- data directory -----------------------------------------------------------
if [ $# -ge 1 ]; then
    mkdir -p "$1"
    base=$(cd "$1" && pwd)
    remove_base=no
else
    remove_base=$([ -d "$root/bench-data" ] && echo no || echo yes)
    mkdir -p "$root/bench-data"
    base="$root/bench-data"
fi
run_dir=$(mktemp -d "$base/engine-bench.XXXXXX")
cleanup() {
    rm -rf "$run_dir"
    if [ "$remove_base" = yes ]; then rmdir "$base" 2>/dev/null || true; fi
}
trap cleanup EXIT
fs_type=$(df --output=fstype "$run_dir" | tail -1)
if [ "$fs_type" = tmpfs ] || [ "$fs_type" = ramfs ]; then
    say "$run_dir is on $fs_type: O_DIRECT figures would be meaningless; pass a directory on a real disk"
    exit 1
fi
device=$(df --output=source "$run_dir" | tail -1)

# --- tools ----------------------------------------------------------------------
say "building stele-engine-bench (release)"
cargo build --release -p stele-engine --features mimalloc --bin stele-engine-bench
bench="$root/target/release/stele-engine-bench"

if ! command -v fio >/dev/null; then
    say "fio not found; installing it with apt-get"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y fio || { $sudo apt-get update && $sudo apt-get install -y fio; }
fi

pin=()
cpu=${BENCH_CPU:-$(($(nproc) - 1))}
if [ "$cpu" != none ] && command -v taskset >/dev/null; then
    pin=(taskset -c "$cpu")
else
    cpu=none
fi

# --- fio ------------------------------------------------------------------------
# Prints the block device's counters (/sys/dev/block/M:m/stat) and the time,
# to compute how busy the device was and how many requests it had in flight.
disk_snapshot() {
    python3 -c 'import os, sys, time
st = os.stat(sys.argv[1])
path = "/sys/dev/block/%d:%d/stat" % (os.major(st.st_dev), os.minor(st.st_dev))
print(time.time(), open(path).read().strip() if os.path.exists(path) else "")' "$run_dir"
}

# Prints fio's write bandwidth in MB/s (10^6 bytes) for block size $1; keeps
# the JSON as $run_dir/$2.fio.json and device counters as $run_dir/$2.fio.disk.
fio_run() {
    local bs=$1 out="$run_dir/$2.fio.json"
    mkdir -p "$run_dir/fio"
    disk_snapshot >"$run_dir/$2.fio.disk"
    ${pin[@]+"${pin[@]}"} fio --name=seqwrite --directory="$run_dir/fio" --rw=write --bs="$bs" --size="$fio_size" \
        --direct=1 --ioengine=io_uring --iodepth=8 --end_fsync=1 --output-format=json --output="$out" >&2
    disk_snapshot >>"$run_dir/$2.fio.disk"
    rm -rf "$run_dir/fio"
    python3 -c 'import json, sys; print("%.1f" % (json.load(open(sys.argv[1]))["jobs"][0]["write"]["bw_bytes"] / 1e6))' "$out"
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- engine/src ':!engine/src/bin' 2>/dev/null; then revision="$revision + uncommitted engine changes"; fi
say "data directory $run_dir ($fs_type on $device), pinned to cpu $cpu, $seconds s per workload"
say "fio reference runs: bs=1M and bs=64k, $fio_size each"
fio_1m_first=$(fio_run 1M ref-1m)
fio_64k_first=$(fio_run 64k ref-64k)
say "fio bs=1M: $fio_1m_first MB/s, bs=64k: $fio_64k_first MB/s"

workloads=$("$bench" --list)
for w in $workloads; do
    fio_mb=$(fio_run 1M "$w")
    say "$w: fio bs=1M $fio_mb MB/s just before; running the engine"
    ${pin[@]+"${pin[@]}"} "$bench" --dir "$run_dir" --seconds "$seconds" --only "$w" --json >"$run_dir/$w.bench.json"
done

# --- table ----------------------------------------------------------------------
python3 - "$run_dir" "$started ($revision)" "$fs_type" "$device" "$cpu" "$seconds" "$fio_size" \
    "$fio_1m_first" "$fio_64k_first" $workloads <<'EOF'
import json, os, sys

run_dir, started, fs_type, device, cpu, seconds, fio_size, fio_1m, fio_64k = sys.argv[1:10]
names = sys.argv[10:]

def fio_mb(tag):
    with open(os.path.join(run_dir, tag + ".fio.json")) as f:
        return json.load(f)["jobs"][0]["write"]["bw_bytes"] / 1e6

def fio_queue_depth(tag):
    """Average requests in flight at the device while fio ran (None if unknown)."""
    with open(os.path.join(run_dir, tag + ".fio.disk")) as f:
        lines = [l.split() for l in f.read().splitlines()]
    if len(lines) != 2 or len(lines[0]) < 12 or len(lines[1]) < 12:
        return None
    seconds = float(lines[1][0]) - float(lines[0][0])
    return (int(lines[1][11]) - int(lines[0][11])) / 1000 / seconds

rows = []
for name in names:
    with open(os.path.join(run_dir, name + ".bench.json")) as f:
        doc = json.load(f)
    (w,) = doc["workloads"]
    rows.append((w, fio_mb(name), fio_queue_depth(name)))

def mib(b):
    return b / 2**20

print()
print(f"Storage engine vs fio, {started}; {fs_type} on {device}; one shard pinned to cpu {cpu}; "
      f"{seconds} s per workload; 1 KiB records; MB = 10^6 bytes; process allocator mimalloc")
print(f"fio reference (--rw=write --direct=1 --ioengine=io_uring --iodepth=8 --size={fio_size} --end_fsync=1): "
      f"bs=1M {float(fio_1m):.0f} MB/s, bs=64k {float(fio_64k):.0f} MB/s. Each workload is compared with "
      f"the bs=1M run made just before it.")
budget = rows[0][0]
print(f"budgets: write buffer {mib(budget['write_buffer_budget_bytes']):.0f} MiB (may exceed by one 1 MiB chunk "
      f"+ 4 KiB per log), tail cache {mib(budget['tail_cache_budget_bytes']):.0f} MiB, sum "
      f"{mib(budget['write_buffer_budget_bytes'] + budget['tail_cache_budget_bytes']):.0f} MiB")
print()
head = ("workload", "MB/s", "fio MB/s", "% fio", "target", "appends/s", "records/s", "fsyncs/s",
        "avg write", "cpu%", "disk%", "qd (fio)", "peak RSS", "wbuf max", "tcache max")
fmt = "{:<16} {:>7} {:>8} {:>6} {:>11} {:>9} {:>9} {:>8} {:>9} {:>4} {:>5} {:>10} {:>8} {:>9} {:>10}"
print(fmt.format(*head))
misses = 0
for w, fio, fio_qd in rows:
    pct = 100.0 * w["mb_per_s"] / fio
    if w["fsync"]:
        target = "report"
    else:
        need = 80 if w["partitions"] == 1 else 60
        ok = pct >= need
        misses += not ok
        target = f">={need}% {'PASS' if ok else 'MISS'}"
    wbuf_ok = w["write_buffer_max_bytes"] <= w["write_buffer_bound_bytes"]
    tcache_ok = w["tail_cache_max_bytes"] <= w["tail_cache_budget_bytes"]
    peak = max(w["rss_max_bytes"], w["vm_hwm_bytes"] if w["vm_hwm_per_workload"] else 0)
    disk = w["disk_busy_pct"]
    qd = "-" if w["disk_queue_depth"] is None else f"{w['disk_queue_depth']:.1f}"
    qd += " (-)" if fio_qd is None else f" ({fio_qd:.1f})"
    print(fmt.format(
        w["name"], f"{w['mb_per_s']:.0f}", f"{fio:.0f}", f"{pct:.0f}%", target,
        f"{w['appends_per_s']:.0f}", f"{w['records_per_s']:.0f}", f"{w['fsyncs_per_s']:.1f}",
        f"{w['avg_write_bytes'] / 1024:.0f} KiB", f"{w['cpu_pct']:.0f}", "-" if disk is None else f"{disk:.0f}",
        qd, f"{mib(peak):.0f} MiB",
        f"{mib(w['write_buffer_max_bytes']):.1f}{'' if wbuf_ok else ' OVER'}",
        f"{mib(w['tail_cache_max_bytes']):.1f}{'' if tcache_ok else ' OVER'}"))
print()
print("targets: >= 80% of fio for 1 partition without fsync, >= 60% for 64 partitions; with fsync "
      "(acks=all, group commit) appends/s and fsyncs/s are reported. wbuf/tcache max: MiB sampled during the run "
      "(OVER = past the documented bound). peak RSS: whole process, max of VmRSS samples and VmHWM. "
      "disk%: time the device had requests in flight; qd: average requests in flight at the device, engine "
      "(and fio's run before it).")
print(f"throughput targets missed: {misses}")
EOF
