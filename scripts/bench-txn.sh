#!/usr/bin/env bash
# Transactional produce throughput (issue 7) beside non-transactional
# produce measured in the same run, printed as one table.
#
# For each producer count in PRODUCER_COUNTS, two `stele-loadgen produce`
# runs with the same topic settings, records and acks=all, each on a fresh
# broker:
#  - reference: idempotent producers (sequence numbers, no transactions);
#  - transactional: --transaction-records TXN_RECORDS (each producer has
#    its own transactional id; a partition is added before its first batch
#    in a transaction, and after TXN_RECORDS records every batch is
#    acknowledged and the transaction committed with EndTxn).
# The ratio is transactional records/s over reference records/s.
#
#   scripts/bench-txn.sh
#
# The broker is the release `stele`, one shard, pinned with taskset to
# BROKER_CPU; loadgen runs on CLIENT_CPU.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS     measured seconds per run [10]
#   BENCH_WARMUP      warm-up seconds per run, not counted [2]
#   PRODUCER_COUNTS   producers per run pair ["1 4"]
#   TXN_RECORDS       records per transaction [100]
#   PARTITIONS        topic partitions [16]
#   RECORD_SIZE       value bytes per record [1024]
#   BROKER_CPU        core for the broker [0]
#   CLIENT_CPU        core for loadgen [1]
#   BENCH_DIR         parent of the fresh run directory [./bench-data];
#                     must be a real disk, not tmpfs (O_DIRECT, fdatasync)
#   BENCH_PORT        broker port [19292]
# See docs/benchmarks.md ("Transactions").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${BENCH_SECONDS:-10}
warmup=${BENCH_WARMUP:-2}
producer_counts=${PRODUCER_COUNTS:-"1 4"}
txn_records=${TXN_RECORDS:-100}
partitions=${PARTITIONS:-16}
record_size=${RECORD_SIZE:-1024}
broker_cpu=${BROKER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
port=${BENCH_PORT:-19292}

say() { echo "bench-txn: $*" >&2; }

. "$root/scripts/lib/broker.sh"
make_run_dir txn
build_release

for producers in $producer_counts; do
    for mode in reference transactional; do
        name="$mode-$producers"
        case $mode in
            reference) flags=(--idempotent) ;;
            transactional) flags=(--transaction-records "$txn_records") ;;
        esac
        start_broker "$name"
        say "$name: $producers producer(s), ${flags[*]}"
        taskset -c "$client_cpu" "$loadgen" produce --bootstrap "127.0.0.1:$port" --topic txn-bench \
            --partitions "$partitions" --record-size "$record_size" --producers "$producers" --acks all \
            "${flags[@]}" --duration "$seconds" --warmup "$warmup" --json "$run_dir/$name.json" >&2 ||
            say "$name failed (see above)"
        stop_broker
    done
done

STELE_ROOT="$root" python3 - "$run_dir" "$producer_counts" "$txn_records" "$partitions" "$record_size" "$seconds" "$warmup" \
    "$broker_cpu" "$client_cpu" <<'EOF'
import json, os, sys
sys.path.insert(0, os.path.join(os.environ["STELE_ROOT"], "scripts", "lib"))
from bench_table import machine_line, print_table
run_dir, producer_counts, txn_records, partitions, record_size, seconds, warmup, broker_cpu, client_cpu = sys.argv[1:]

def load(name):
    try:
        return json.load(open(os.path.join(run_dir, name + ".json")))
    except (OSError, ValueError):
        return None

print(machine_line())
print(f"broker (one shard) on core {broker_cpu}, loadgen on core {client_cpu}; {partitions} partitions, "
      f"{record_size} B records, acks=all; {seconds} s after {warmup} s warm-up per run")
print()
head = ["producers", "reference: idempotent", "transactional, " + txn_records + " records/txn", "transactions",
        "txn latency (first record to commit)", "transactional / reference"]
rows = []
failed = False
for producers in producer_counts.split():
    reference, transactional = load(f"reference-{producers}"), load(f"transactional-{producers}")
    if reference is None or transactional is None or reference.get("failures") or transactional.get("failures"):
        rows.append([producers, "FAILED" if not reference or reference.get("failures") else "-",
                     "FAILED" if not transactional or transactional.get("failures") else "-", "-", "-", "-"])
        failed = True
        continue
    rate = lambda r: f"{r['aggregatedPublishRate']:.0f} rec/s ({r['aggregatedPublishThroughputBytes'] / 2**20:.1f} MiB/s)"
    ms = lambda key: "-" if transactional.get(key) is None else f"{transactional[key]:.1f}"
    aborted = transactional["transactionsAborted"]
    rows.append([
        producers,
        rate(reference),
        rate(transactional),
        f"{transactional['aggregatedTransactionRate']:.0f}/s" + (f", {aborted} aborted" if aborted else ""),
        f"p50 {ms('aggregatedTransactionLatency50pct')} ms, p99 {ms('aggregatedTransactionLatency99pct')} ms",
        f"{transactional['aggregatedPublishRate'] / reference['aggregatedPublishRate']:.2f}",
    ])
print_table(head, rows)
print()
print(f"results: {run_dir}/*.json")
sys.exit(1 if failed else 0)
EOF
