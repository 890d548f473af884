# Shared by the benchmark scripts (source it): a fresh `stele` per
# measurement, pinned to one core, on an empty data directory that is
# deleted afterwards. The caller sets $root, $stele (the binary),
# $broker_cpu, $port and a `say` function.
#
#   build_release                      # checks python3 and taskset, builds; sets $stele, $loadgen
#   make_run_dir PREFIX                # sets $run_dir; stops the broker on exit
#   start_broker NAME [CONFIG_FILE]    # log in $run_dir/stele-NAME.log; sets $broker_pid
#   stop_broker

# The release broker and loadgen, after checking for what every benchmark
# needs: taskset to pin the processes, python3 for the table.
build_release() {
    command -v python3 >/dev/null || { say "python3 is needed for the table"; exit 1; }
    command -v taskset >/dev/null || { say "taskset (util-linux) is needed to pin the processes"; exit 1; }
    say "building stele and stele-loadgen (release)"
    cargo build --release -p stele-broker -p stele-loadgen >&2
    stele="$root/target/release/stele"
    loadgen="$root/target/release/stele-loadgen"
}

# A fresh $run_dir under $BENCH_DIR (default ./bench-data), refused on
# tmpfs or ramfs, where O_DIRECT and fdatasync figures would mean nothing.
make_run_dir() {
    local base=${BENCH_DIR:-$root/bench-data} fs_type
    mkdir -p "$base"
    run_dir=$(mktemp -d "$(cd "$base" && pwd)/$1.XXXXXX")
    fs_type=$(df --output=fstype "$run_dir" | tail -1 | tr -d ' ')
    if [ "$fs_type" = tmpfs ] || [ "$fs_type" = ramfs ]; then
        say "$run_dir is on $fs_type: disk figures would be meaningless; set BENCH_DIR to a real disk"
        exit 1
    fi
    broker_pid=""
    trap stop_broker EXIT
}

start_broker() {
    local log="$run_dir/stele-$1.log" config=()
    [ -n "${2:-}" ] && config=(--config "$2")
    rm -rf "$run_dir/data"
    mkdir -p "$run_dir/data"
    NO_COLOR=1 taskset -c "$broker_cpu" "$stele" "${config[@]}" --listen "127.0.0.1:$port" \
        --data-dir "$run_dir/data" --shards 1 2>"$log" &
    broker_pid=$!
    for _ in $(seq 200); do
        grep -q "ready: accepting Kafka clients" "$log" 2>/dev/null && return
        kill -0 "$broker_pid" 2>/dev/null || { cat "$log" >&2; say "stele exited"; exit 1; }
        sleep 0.1
    done
    say "stele did not become ready"
    exit 1
}

stop_broker() {
    if [ -n "$broker_pid" ]; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    broker_pid=""
    rm -rf "$run_dir/data"
}
