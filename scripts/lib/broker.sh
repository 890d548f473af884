# Shared by the benchmark scripts (source it): a fresh `stele` per
# measurement, pinned to one core, on an empty data directory that is
# deleted afterwards. The caller sets $stele (the binary), $run_dir,
# $broker_cpu, $port and a `say` function.
#
#   start_broker NAME [CONFIG_FILE]    # log in $run_dir/stele-NAME.log; sets $broker_pid
#   stop_broker

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
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
    rm -rf "$run_dir/data"
}
