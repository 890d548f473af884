#!/usr/bin/env bash
# Broker benchmark: the release `stele` pinned to one core and
# `stele-loadgen` pinned to another run the standard workloads of issue 5,
# beside the machine's limits measured in the same run (fio sequential
# O_DIRECT write bandwidth on the data directory, single-stream loopback TCP
# bandwidth with iperf3), printed as one table with ratios.
#
#   scripts/bench.sh
#
# Environment (defaults in brackets):
#   BENCH_SECONDS   measured seconds per throughput workload (1-4) [15]
#   E2E_SECONDS     measured seconds of workload 5 [300: the target is for a
#                   5-minute run]
#   BENCH_WARMUP    warm-up seconds per workload, not counted [3]
#   BROKER_CPU      core for the broker and iperf3's server [0]
#   LOADGEN_CPU     core for loadgen and iperf3's client [1]
#   BENCH_DIR       parent of the fresh data directory [target/bench]; must
#                   be a real disk, not tmpfs (O_DIRECT)
#   BENCH_PORT      broker port [19092]
#   BATCH_BYTES     producer batch size for the throughput workloads [131072]
#   E2E_MIB_S       workload 5's fixed rate in MiB/s of 1 KiB records [50]
#   FIO_SIZE        bytes written by fio [2G]
#   IPERF_SECONDS   iperf3 duration [5]
#   FIO_LAT_SECONDS duration of fio's latency reference for workload 5 [30]
#
# Workloads: (1) 1 topic, 100 partitions, 1 KiB records, max rate,
# acks=all; (2) the same with acks=1; (3) 1 partition, 1 KiB, acks=all;
# (4) 16 partitions, 100 B records, acks=all; (5) end to end at a fixed
# E2E_MIB_S, 16 partitions, 1 KiB. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${BENCH_SECONDS:-15}
e2e_seconds=${E2E_SECONDS:-300}
warmup=${BENCH_WARMUP:-3}
broker_cpu=${BROKER_CPU:-0}
loadgen_cpu=${LOADGEN_CPU:-1}
port=${BENCH_PORT:-19092}
batch_bytes=${BATCH_BYTES:-131072}
e2e_mib_s=${E2E_MIB_S:-50}
fio_size=${FIO_SIZE:-2G}
iperf_seconds=${IPERF_SECONDS:-5}
fio_lat_seconds=${FIO_LAT_SECONDS:-30}

say() { echo "bench: $*" >&2; }

# install_if_missing, shared with scripts/bench-groups.sh.
. "$root/scripts/lib/install.sh"
install_if_missing fio
install_if_missing iperf3
command -v python3 >/dev/null || { say "python3 is needed to read the JSON results"; exit 1; }
command -v taskset >/dev/null || { say "taskset (util-linux) is needed to pin the processes"; exit 1; }

# --- data directory: fresh, on a real disk ------------------------------------
base=${BENCH_DIR:-$root/target/bench}
mkdir -p "$base"
run_dir=$(mktemp -d "$(cd "$base" && pwd)/run.XXXXXX")
fs_type=$(df --output=fstype "$run_dir" | tail -1 | tr -d ' ')
if [ "$fs_type" = tmpfs ] || [ "$fs_type" = ramfs ]; then
    say "$run_dir is on $fs_type: O_DIRECT figures would be meaningless; set BENCH_DIR to a real disk"
    exit 1
fi

broker_pid=""
cleanup() {
    if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
    rm -rf "$run_dir/data" "$run_dir/fio"
}
trap cleanup EXIT

say "building stele and stele-loadgen (release)"
cargo build --release -p stele-broker -p stele-loadgen >&2
stele="$root/target/release/stele"
loadgen="$root/target/release/stele-loadgen"

# --- the machine's limits -------------------------------------------------------
say "fio: sequential O_DIRECT writes of $fio_size in 1 MiB blocks on $run_dir"
mkdir -p "$run_dir/fio"
taskset -c "$broker_cpu" fio --name=seqwrite --directory="$run_dir/fio" --rw=write --bs=1M --direct=1 \
    --ioengine=libaio --iodepth=8 --size="$fio_size" --end_fsync=1 --output-format=json \
    >"$run_dir/fio.json"
rm -rf "$run_dir/fio"

# Workload 5's latency targets are met or missed partly by the disk: its own
# tail latency at that rate, with an fdatasync after every write (what an
# acks=all produce waits for), is the reference printed beside it.
say "fio: 128 KiB O_DIRECT writes at $e2e_mib_s MiB/s, fdatasync after each, for $fio_lat_seconds s"
mkdir -p "$run_dir/fio"
taskset -c "$broker_cpu" fio --name=ratelat --directory="$run_dir/fio" --rw=write --bs=128k --direct=1 \
    --ioengine=psync --fdatasync=1 --rate="${e2e_mib_s}m" --size=1G --runtime="$fio_lat_seconds" --time_based \
    --output-format=json >"$run_dir/fio-lat.json"
rm -rf "$run_dir/fio"

say "iperf3: one TCP stream over loopback for $iperf_seconds s"
iperf_port=$((port + 1))
taskset -c "$broker_cpu" iperf3 -s -1 -p "$iperf_port" >/dev/null 2>&1 &
iperf_server=$!
sleep 0.5
taskset -c "$loadgen_cpu" iperf3 -c 127.0.0.1 -p "$iperf_port" -t "$iperf_seconds" -J >"$run_dir/iperf3.json"
wait "$iperf_server" 2>/dev/null || true

# --- the broker: a fresh one per workload -------------------------------------------
# Each workload gets a new broker on an empty data directory, deleted
# afterwards: no workload reads another's files, and the disk (shared, and
# written at hundreds of MB/s) holds one workload's data at a time. Topics
# use 64 MiB segments, which also bounds the broker's segment preallocation
# (256 MiB steps by default: 25 GB for 100 partitions).
. "$root/scripts/lib/broker.sh"

# Samples the broker's resident memory every 100 ms while a workload runs.
rss_peak_kib() {
    local peak=0 rss
    while kill -0 "$1" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$broker_pid/status" 2>/dev/null || echo 0)
        [ "${rss:-0}" -gt "$peak" ] && peak=$rss
        sleep 0.1
    done
    echo "$peak"
}

run_workload() {
    local name=$1 duration=$2
    shift 2
    start_broker "$name"
    say "workload $name: stele-loadgen $* (stele on core $broker_cpu, loadgen on core $loadgen_cpu)"
    taskset -c "$loadgen_cpu" "$loadgen" "$@" --bootstrap "127.0.0.1:$port" --topic "$name" \
        --topic-config segment.bytes=67108864 --duration "$duration" --warmup "$warmup" \
        --json "$run_dir/$name.json" >&2 &
    local loadgen_pid=$!
    rss_peak_kib "$loadgen_pid" >"$run_dir/$name.rss" &
    local sampler=$!
    wait "$loadgen_pid" || say "workload $name failed (see above)"
    wait "$sampler" || true
    stop_broker
}

e2e_rate=$((e2e_mib_s * 1024))
run_workload w1-100p-acks-all "$seconds" produce --partitions 100 --record-size 1024 --acks all --batch-bytes "$batch_bytes"
run_workload w2-100p-acks-1 "$seconds" produce --partitions 100 --record-size 1024 --acks 1 --batch-bytes "$batch_bytes"
run_workload w3-1p "$seconds" produce --partitions 1 --record-size 1024 --acks all --batch-bytes "$batch_bytes"
run_workload w4-16p-100b "$seconds" produce --partitions 16 --record-size 100 --acks all --batch-bytes "$batch_bytes"
run_workload w5-e2e-"$e2e_mib_s"mib "$e2e_seconds" e2e --partitions 16 --record-size 1024 --acks all --rate "$e2e_rate" \
    --batch-bytes "$batch_bytes"

# --- the table --------------------------------------------------------------------
STELE_ROOT="$root" python3 - "$run_dir" "$seconds" "$e2e_seconds" "$warmup" "$broker_cpu" "$loadgen_cpu" <<'EOF'
import glob, json, os, sys
sys.path.insert(0, os.path.join(os.environ["STELE_ROOT"], "scripts", "lib"))
from bench_table import machine_line, print_table
run_dir, seconds, e2e_seconds, warmup, broker_cpu, loadgen_cpu = sys.argv[1:]
MIB = 1024 * 1024
fio = json.load(open(os.path.join(run_dir, "fio.json")))
fio_bw = fio["jobs"][0]["write"]["bw_bytes"]
iperf = json.load(open(os.path.join(run_dir, "iperf3.json")))
tcp_bw = iperf["end"]["sum_received"]["bits_per_second"] / 8
print(machine_line(load_average=False))
print(f"broker on core {broker_cpu}, loadgen on core {loadgen_cpu}; {seconds} s per throughput workload, "
      f"{e2e_seconds} s of w5, each after {warmup} s warm-up")
print(f"fio sequential O_DIRECT write: {fio_bw / MIB:.0f} MiB/s; iperf3 loopback TCP, one stream: {tcp_bw / MIB:.0f} MiB/s")
lat = json.load(open(os.path.join(run_dir, "fio-lat.json")))["jobs"][0]
def pcts(ns):
    p = ns.get("percentile", {})
    return " / ".join(f"{p.get(k, 0) / 1e6:.2f}" for k in ("99.000000", "99.900000")) + f" / {ns['max'] / 1e6:.2f}"
print(f"fio at the w5 rate (128 KiB O_DIRECT writes, fdatasync after each), p99 / p99.9 / max ms: "
      f"write {pcts(lat['write']['clat_ns'])}, fdatasync {pcts(lat['sync']['lat_ns'])}")
print()
head = ["workload", "records/s", "MiB/s", "% TCP", "% fio", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "broker RSS MiB"]
rows = []
for path in sorted(glob.glob(os.path.join(run_dir, "w*.json"))):
    name = os.path.basename(path)[:-5]
    r = json.load(open(path))
    e2e = r["workload"] == "e2e"
    rate = r["aggregatedConsumeRate"] if e2e else r["aggregatedPublishRate"]
    bw = r["aggregatedConsumeThroughputBytes"] if e2e else r["aggregatedPublishThroughputBytes"]
    prefix = "aggregatedEndToEndLatency" if e2e else "aggregatedPublishLatency"
    ms = lambda key: "-" if r.get(prefix + key) is None else f"{r[prefix + key]:.2f}"
    try:
        rss = f"{int(open(os.path.join(run_dir, name + '.rss')).read().strip() or 0) / 1024:.0f}"
    except (OSError, ValueError):
        rss = "-"
    label = name + (" (e2e latency)" if e2e else "")
    if r.get("failures") or r.get("publishErrors"):
        label += " FAILED"
    rows.append([label, f"{rate:.0f}", f"{bw / MIB:.1f}", f"{100 * bw / tcp_bw:.0f}%", f"{100 * bw / fio_bw:.0f}%",
                 ms("50pct"), ms("99pct"), ms("999pct"), ms("Max"), rss])
print_table(head, rows)
print()
print("Targets (issue 5): w1 >= 35% of TCP, w2 >= 45% of TCP; w5 p99 <= 5 ms, p99.9 <= 20 ms, nothing above 100 ms.")
print(f"JSON results: {run_dir}")
EOF
