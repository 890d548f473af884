#!/usr/bin/env bash
# Consumer-group benchmarks (issue 6), each beside a reference measured in
# the same run, printed as one table:
#
#  - OffsetCommit throughput for one group: `stele-loadgen commit` (simple
#    commits, one partition each) with COMMIT_RUNS committers x requests in
#    flight. Each commit is answered once an fdatasync covers it, and
#    concurrent commits share fdatasyncs, so the reference is the disk's
#    fdatasync rate: fio writing 4 KiB blocks with an fdatasync after each
#    (--rw=write --bs=4k --fdatasync=1 --direct=1), run on the broker's
#    fresh data directory just before each commit run.
#  - Rebalance time with real clients: scripts/bench-groups.py (9
#    confluent-kafka consumers over 100 partitions, a 10th joins; time from
#    its subscribe() to a stable assignment), for the classic protocol
#    (client defaults, and heartbeat.interval.ms=500) and KIP-848
#    (group.protocol=consumer, with the broker's heartbeat interval at its
#    default 5000 ms and at 500 ms). The reference is the heartbeat interval
#    in force: members learn of a rebalance from a heartbeat.
#
#   scripts/bench-groups.sh
#
# The broker is the release `stele`, one shard, pinned with taskset to
# BROKER_CPU, a fresh instance on an empty data directory for every
# measurement; loadgen and the Python clients run on CLIENT_CPU.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS       measured seconds per commit run [10]
#   BENCH_WARMUP        warm-up seconds per commit run, not counted [2]
#   COMMIT_RUNS         committers x in-flight per commit run ["1x1 16x8"]
#   FSYNC_SECONDS       seconds of each fio fdatasync run [5]
#   REBALANCE_REPEATS   joins measured per rebalance row [5]
#   BROKER_CPU          core for the broker and fio [0]
#   CLIENT_CPU          core for loadgen and the Python consumers [1]
#   BENCH_DIR           parent of the fresh run directory [./bench-data];
#                       must be a real disk, not tmpfs (O_DIRECT, fdatasync)
#   BENCH_PORT          broker port [19192]
#   BENCH_VENV          Python venv with confluent-kafka==2.16.1, made if
#                       missing [target/bench-groups-venv]
# See docs/benchmarks.md ("Consumer groups").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${BENCH_SECONDS:-10}
warmup=${BENCH_WARMUP:-2}
commit_runs=${COMMIT_RUNS:-"1x1 16x8"}
fsync_seconds=${FSYNC_SECONDS:-5}
repeats=${REBALANCE_REPEATS:-5}
broker_cpu=${BROKER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
port=${BENCH_PORT:-19192}
venv=${BENCH_VENV:-$root/target/bench-groups-venv}
confluent_kafka_version=2.16.1

say() { echo "bench-groups: $*" >&2; }

. "$root/scripts/lib/install.sh"
install_if_missing fio
command -v python3 >/dev/null || { say "python3 is needed"; exit 1; }
command -v taskset >/dev/null || { say "taskset (util-linux) is needed to pin the processes"; exit 1; }

. "$root/scripts/lib/broker.sh"
make_run_dir groups

# --- tools ------------------------------------------------------------------------
say "building stele and stele-loadgen (release)"
cargo build --release -p stele-broker -p stele-loadgen >&2
stele="$root/target/release/stele"
loadgen="$root/target/release/stele-loadgen"

venv_ready() {
    "$venv/bin/python" -c "import confluent_kafka, importlib.metadata as m, sys
sys.exit(m.version('confluent-kafka') != '$confluent_kafka_version')" 2>/dev/null
}
if ! venv_ready; then
    say "making $venv with confluent-kafka==$confluent_kafka_version"
    rm -rf "$venv"
    python3 -m venv "$venv" || { say "'python3 -m venv' failed; install python3-venv (apt-get install python3-venv)"; exit 1; }
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "confluent-kafka==$confluent_kafka_version" >&2
    venv_ready || { say "confluent-kafka $confluent_kafka_version did not install into $venv"; exit 1; }
fi
python="$venv/bin/python"

# --- the broker: a fresh one per measurement (scripts/lib/broker.sh) ------------------

# The disk's fdatasync rate, on the (empty) data directory the broker is
# about to use, on the broker's core.
fsync_reference() {
    rm -rf "$run_dir/data"
    mkdir -p "$run_dir/data/fio"
    say "fio: 4 KiB writes, each followed by fdatasync, for $fsync_seconds s on $run_dir/data"
    taskset -c "$broker_cpu" fio --name=fdatasync --directory="$run_dir/data/fio" --rw=write --bs=4k \
        --fdatasync=1 --direct=1 --size=64M --time_based --runtime="$fsync_seconds" --output-format=json \
        >"$run_dir/$1.fio.json"
    rm -rf "$run_dir/data"
}

# --- OffsetCommit throughput ---------------------------------------------------------
for run in $commit_runs; do
    committers=${run%x*}
    in_flight=${run#*x}
    name="commit-${committers}x${in_flight}"
    fsync_reference "$name"
    start_broker "$name"
    partitions=$((committers > 16 ? committers : 16))
    say "$name: stele-loadgen commit, committers x in flight: $committers x $in_flight, 1 partition per commit"
    taskset -c "$client_cpu" "$loadgen" commit --bootstrap "127.0.0.1:$port" --topic commits \
        --partitions "$partitions" --committers "$committers" --in-flight "$in_flight" --commit-partitions 1 \
        --duration "$seconds" --warmup "$warmup" --json "$run_dir/$name.json" >&2 ||
        say "$name failed (see above)"
    stop_broker
done

# --- rebalance time --------------------------------------------------------------------
# Classic rows and KIP-848 at the broker's default heartbeat interval on one
# broker; KIP-848 at 500 ms on a broker configured for it (the minimum
# bound must allow it too).
start_broker rebalance-default
say "rebalance: classic, classic-hb500, consumer (broker heartbeat 5000 ms), $repeats joins each"
taskset -c "$client_cpu" "$python" "$root/scripts/bench-groups.py" --bootstrap "127.0.0.1:$port" \
    --rows classic,classic-hb500,consumer --consumer-heartbeat-ms 5000 --repeats "$repeats" \
    --json "$run_dir/rebalance-default.json" >&2 || say "rebalance rows failed (see above)"
stop_broker

cat >"$run_dir/heartbeat-500.toml" <<'TOML'
[groups]
"group.consumer.heartbeat.interval.ms" = 500
"group.consumer.min.heartbeat.interval.ms" = 500
TOML
start_broker rebalance-hb500 "$run_dir/heartbeat-500.toml"
say "rebalance: consumer (broker heartbeat 500 ms), $repeats joins"
taskset -c "$client_cpu" "$python" "$root/scripts/bench-groups.py" --bootstrap "127.0.0.1:$port" \
    --rows consumer --consumer-heartbeat-ms 500 --repeats "$repeats" \
    --json "$run_dir/rebalance-hb500.json" >&2 || say "rebalance rows failed (see above)"
stop_broker

# --- the table ---------------------------------------------------------------------------
STELE_ROOT="$root" "$python" - "$run_dir" "$commit_runs" "$seconds" "$warmup" "$broker_cpu" "$client_cpu" <<'EOF'
import json, os, sys
sys.path.insert(0, os.path.join(os.environ["STELE_ROOT"], "scripts", "lib"))
from bench_table import machine_line, print_table
run_dir, commit_runs, seconds, warmup, broker_cpu, client_cpu = sys.argv[1:]

def load(name):
    try:
        return json.load(open(os.path.join(run_dir, name)))
    except (OSError, ValueError):
        return None

print(machine_line())
print(f"broker (one shard) and fio on core {broker_cpu}, loadgen and consumers on core {client_cpu}; "
      f"commit runs {seconds} s after {warmup} s warm-up")
print()
head = ["benchmark", "settings", "result", "spread", "reference (same run)", "result / reference"]
rows = []
failed = False
for run in commit_runs.split():
    committers, in_flight = run.split("x")
    name = f"commit-{committers}x{in_flight}"
    settings = f"{committers} committer{'s' if committers != '1' else ''} x {in_flight} in flight, 1 partition/commit"
    fio = load(name + ".fio.json")
    fsyncs = None
    if fio:
        job = fio["jobs"][0]
        fsyncs = job["sync"]["lat_ns"]["N"] / (job["job_runtime"] / 1000)
    reference = f"{fsyncs:.0f} fsyncs/s (fio 4k fdatasync)" if fsyncs else "fio failed"
    r = load(name + ".json")
    if r is None:
        rows.append(["OffsetCommit FAILED", settings, "no result", "-", reference, "-"])
        failed = True
        continue
    rate = r["aggregatedCommitRate"]
    label = "OffsetCommit" + (" FAILED" if r.get("failures") else "")
    failed = failed or bool(r.get("failures"))
    ms = lambda key: "-" if r.get(key) is None else f"{r[key]:.2f}"
    rows.append([label, settings, f"{rate:.0f} commits/s ({r['aggregatedCommitOffsetRate']:.0f} offsets/s)",
                 f"p50 {ms('aggregatedCommitLatency50pct')} ms, p99 {ms('aggregatedCommitLatency99pct')} ms",
                 reference, f"{rate / fsyncs:.2f} commits per fsync" if fsyncs else "-"])
for results in (load("rebalance-default.json") or [], load("rebalance-hb500.json") or []):
    for g in results:
        protocol = "KIP-848" if g["protocol"] == "consumer" else "classic"
        label = f"rebalance, {protocol}"
        settings = ", ".join(f"{k}={v}" for k, v in g["settings"].items() if k != "group.protocol")
        if protocol == "KIP-848":
            settings = f"broker heartbeat {g['heartbeat_ms']} ms"
        settings = settings or "client defaults"
        reference = f"heartbeat {g['heartbeat_ms']} ms ({g['heartbeat_source']})"
        if not g["supported"]:
            rows.append([label, settings, "not supported by this broker", "-", reference, "-"])
        elif "join_median_s" not in g:
            rows.append([label + " FAILED", settings, g["error"] or "no result", "-", reference, "-"])
            failed = True
        else:
            label += " FAILED" if g["error"] else ""
            failed = failed or bool(g["error"])
            rows.append([label, settings, f"median {g['join_median_s']:.2f} s",
                         f"{g['join_min_s']:.2f}-{g['join_max_s']:.2f} s over {len(g['join_s'])} joins",
                         reference, f"{g['join_median_s'] * 1000 / g['heartbeat_ms']:.2f} heartbeats"])
print_table(head, rows)
print()
print("Rebalance: time from the 10th consumer's subscribe() to a stable assignment of 100 partitions over 10.")
print(f"JSON results and broker logs: {run_dir}")
for name in ("rebalance-default.json", "rebalance-hb500.json"):
    if load(name) is None:
        print(f"{name}: missing (the rebalance script failed before writing it)")
        failed = True
sys.exit(1 if failed else 0)
EOF
