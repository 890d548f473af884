#!/usr/bin/env bash
# Share-group consumption (issue 8) beside a plain consumer of the same
# partition, measured in the same run, printed as one table.
#
# One broker, one topic with one partition holding RECORDS records of
# RECORD_SIZE bytes (produced first, acks=all). Then, each reading all
# RECORDS records once from the earliest offset:
#  - reference: `stele-loadgen consume` with one consumer: Fetch from the
#    partition, what the only member of a classic consumer group does (a
#    classic group adds heartbeats and commits, not fetch work);
#  - `stele-loadgen share-consume` with SHARE_COUNTS members of a fresh share
#    group each (group config share.auto.offset.reset=earliest): ShareFetch
#    with piggybacked ACCEPT acknowledgements, every record acquired by one
#    member, accepted, and the share state made durable before each answer.
# Also printed: the broker's resident memory after the share runs.
#
#   scripts/bench-share.sh
#
# Environment (defaults in brackets):
#   RECORDS        records in the partition [1000000]
#   RECORD_SIZE    value bytes per record [1024]
#   SHARE_COUNTS   share consumers per run ["1 4 16"]
#   RECORD_LOCKS   group.share.partition.max.record.locks [2000, Kafka's default]
#   BROKER_CPU     core for the broker [0]
#   CLIENT_CPU     core for loadgen [1]
#   BENCH_DIR      parent of the fresh run directory [./bench-data]; a real disk
#   BENCH_PORT     broker port [19392]
# See docs/benchmarks.md ("Share groups").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

records=${RECORDS:-1000000}
record_size=${RECORD_SIZE:-1024}
share_counts=${SHARE_COUNTS:-"1 4 16"}
record_locks=${RECORD_LOCKS:-2000}
broker_cpu=${BROKER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
port=${BENCH_PORT:-19392}

say() { echo "bench-share: $*" >&2; }

. "$root/scripts/lib/broker.sh"
make_run_dir share
build_release

cat >"$run_dir/stele.toml" <<TOML
[groups]
"group.share.enable" = true
"group.share.partition.max.record.locks" = $record_locks
TOML
start_broker share "$run_dir/stele.toml"
bootstrap="127.0.0.1:$port"
lg() { taskset -c "$client_cpu" "$loadgen" "$@" --bootstrap "$bootstrap" --topic queue --quiet; }

say "producing $records records of $record_size B to one partition"
lg produce --partitions 1 --records "$records" --record-size "$record_size" --json "$run_dir/produce.json" >&2
say "reference: one consumer reads the partition"
lg consume --from earliest --records "$records" --json "$run_dir/consume.json" >&2 || say "reference failed"
for count in $share_counts; do
    say "share-consume: $count share consumers"
    lg share-consume --group "share-bench-$count" --consumers "$count" --records "$records" \
        --json "$run_dir/share-$count.json" >&2 || say "share-consume with $count consumers failed"
done
rss_kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$broker_pid/status")
stop_broker

STELE_ROOT="$root" python3 - "$run_dir" "$share_counts" "$records" "$record_size" "$broker_cpu" "$client_cpu" "$rss_kib" "$record_locks" <<'EOF'
import json, os, sys
sys.path.insert(0, os.path.join(os.environ["STELE_ROOT"], "scripts", "lib"))
from bench_table import machine_line, print_table
run_dir, share_counts, records, record_size, broker_cpu, client_cpu, rss_kib, record_locks = sys.argv[1:]

def load(name):
    try:
        return json.load(open(os.path.join(run_dir, name + ".json")))
    except (OSError, ValueError):
        return None

print(machine_line())
print(f"broker (one shard) on core {broker_cpu}, loadgen on core {client_cpu}; one partition of {records} records "
      f"of {record_size} B, each run reads all of them once; group.share.partition.max.record.locks {record_locks}")
print()
head = ["consumers", "records/s", "MiB/s", "seconds", "vs one plain consumer"]
rows = []
failed = False
reference = load("consume")
ref_rate = reference["aggregatedConsumeRate"] if reference and not reference.get("failures") else None
def row(label, r):
    global failed
    if r is None or r.get("failures") or r["messagesConsumed"] < int(records):
        failed = True
        return [label, "FAILED", "-", "-", "-"]
    rate = r["aggregatedConsumeRate"]
    return [label, f"{rate:.0f}", f"{r['aggregatedConsumeThroughputBytes'] / 2**20:.1f}", f"{r['durationSeconds']:.2f}",
            f"{rate / ref_rate:.2f}" if ref_rate else "-"]
rows.append(row("1 plain consumer (reference)", reference))
for count in share_counts.split():
    rows.append(row(f"{count} share consumer{'s' if count != '1' else ''}", load(f"share-{count}")))
print_table(head, rows)
print()
print(f"broker resident memory after the share runs: {int(rss_kib) / 1024:.1f} MiB")
print(f"results: {run_dir}/*.json")
sys.exit(1 if failed else 0)
EOF
