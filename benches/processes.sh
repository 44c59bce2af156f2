# Process handling shared by the end-to-end harnesses that start clusters
# (`e2e-replication.sh`, `e2e-coordinator.sh`); sourced, not run. The
# harness sets `work` (its scratch directory) before sourcing this, and
# appends every process it starts to `pids`.

# Every process started and not yet stopped, and each one's log.
pids=()
declare -A node_log

# Whether PID runs: it is there, and not a zombie (an exited child not yet
# waited for, which `kill -0` still finds).
running() { # pid
    [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null || echo Z)" != Z ]
}

# Stops the given processes: SIGCONT (a stopped process does not act on
# SIGTERM until it runs again), then SIGTERM, a clean shutdown; one still
# running 20 s later gets SIGKILL, so a hung one cannot hang the harness.
stop_nodes() { # pid...
    [ $# -gt 0 ] || return 0
    kill -CONT "$@" 2>/dev/null || true
    kill -TERM "$@" 2>/dev/null || true
    local deadline=$((SECONDS + 20)) pid
    for pid in "$@"; do
        while running "$pid"; do
            if [ "$SECONDS" -ge "$deadline" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
            sleep 0.05
        done
        wait "$pid" 2>/dev/null || true
    done
}
cleanup() {
    stop_nodes "${pids[@]}"
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
