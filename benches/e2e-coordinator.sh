#!/usr/bin/env bash
# End to end for chapter 7's coordinator, on loopback: three `kfs
# coordinator` processes (a release build, their data on the build's disk,
# an fsync before every acknowledgement, as shipped), loaded by `kfs perf
# coordinator` from a few sessions, each with many requests in flight (the
# client library pipelines them, as ZooKeeper's does). It measures, in one
# run:
#
# - peak linearizable writes (`setData` of 100 B on each session's own
#   node), requests/s and latency percentiles;
# - peak reads (`getData`, each session on its own server after one
#   `sync`, as ZooKeeper serves reads);
# - writes at half the peak rate, for their p99;
# - the baseline: the disk's cost of one small write + `fdatasync`
#   (`dd oflag=dsync`, 100 B at a time), measured in the same run. A write
#   is acknowledged only after the leader's and a follower's fsync, so
#   without group commit the ensemble could do at most one write per fsync
#   time; writes/s times the fsync time is how many writes share one
#   fsync at the least (the group commit factor);
# - with `--with-etcd` (or KFS_BENCH_ETCD=1): etcd 3.4 (Debian's
#   `etcd-server` and `etcd-client`, installed with apt-get if missing), a
#   three-member cluster on loopback on the same disk, measured by
#   `etcdctl check perf --load=l` (a minute of puts from many clients).
#
#   benches/e2e-coordinator.sh [--with-etcd] [SECONDS]
#       SECONDS of load per run (default 20).
#   KFS_BENCH_SESSIONS: how many sessions (default 3, one on each server),
#   each with KFS_BENCH_IN_FLIGHT requests in flight (default 512).
#
# Prints each run's report, and writes a summary to
# target/e2e/coordinator.tsv (tab-separated, a header row, `-` for an
# empty field), which `cargo xtask perf-report e2e-coordinator` turns into
# the performance page's table. Nothing is written unless every run
# succeeded.
set -euo pipefail
# A failure inside `$(...)` must end the harness too, not just the subshell.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

with_etcd=${KFS_BENCH_ETCD:-0}
if [ "${1:-}" = --with-etcd ]; then
    with_etcd=1
    shift
fi
seconds=${1:-20}
sessions=${KFS_BENCH_SESSIONS:-3}
in_flight=${KFS_BENCH_IN_FLIGHT:-512}
if ! [[ $seconds =~ ^[0-9]+([.][0-9]+)?$ && $sessions =~ ^[1-9][0-9]*$ &&
    $in_flight =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: benches/e2e-coordinator.sh [--with-etcd] [SECONDS]" >&2
    exit 2
fi
bin=target/release

cargo build --release --quiet -p kfs --bin kfs

# On the same disk as the build, not a tmpfs /tmp: the servers' logs and
# the baseline's file must be written to the same kind of storage.
mkdir -p target
work=$(mktemp -d "$PWD/target/e2e-coordinator.XXXXXX")

# `pids`, `node_log`, `running`, `stop_nodes`, `now`, and the cleanup on exit.
source benches/processes.sh

# Whether something listens on 127.0.0.1:PORT.
port_used() { # port
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Sets `ports` to N ports nobody listens on, consecutive from a random
# base below the kernel's range for clients' own ports (usually from
# 32768), so no client connection can hold a server's port (a process that
# takes one between here and its use fails to start, and the harness with
# it: not a wrong figure).
free_ports() { # n
    local n=$1 base i
    for _ in $(seq 50); do
        base=$((10000 + RANDOM % 20000))
        ports=()
        for ((i = 0; i < n; i++)); do
            port_used $((base + i)) && break
            ports+=($((base + i)))
        done
        [ "${#ports[@]}" -eq "$n" ] && return 0
    done
    echo "no $n free ports found" >&2
    exit 1
}

# Fails if a process of the ensemble has exited: a run that lost one did
# not measure what it says.
check_nodes() { # pid...
    local pid
    for pid in "$@"; do
        if ! running "$pid"; then
            echo "a server has exited; the end of its log (${node_log[$pid]}):" >&2
            tail -20 "${node_log[$pid]}" >&2
            exit 1
        fi
    done
}

# The CPU time the given processes have used so far, in clock ticks (user +
# system, /proc/PID/stat's fields 14 and 15).
ticks() { # pid...
    local pid total=0
    for pid in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
hz=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------
# The baseline: how long one small append + fdatasync takes on this disk,
# what the coordinator's log does for every group of writes.
fsync_count=500
echo "== baseline: $fsync_count writes of 100 B, each with fdatasync" >&2
dd_out=$(LC_ALL=C dd if=/dev/zero of="$work/fsync-baseline" bs=100 count="$fsync_count" \
    oflag=dsync 2>&1)
fsync_s=$(echo "$dd_out" | sed -n 's/.* copied, \([0-9.e-]*\) s,.*/\1/p')
fsync_ms=$(awk -v s="$fsync_s" -v n="$fsync_count" 'BEGIN { printf "%.3f", s * 1000 / n }')
fsyncs_per_s=$(awk -v s="$fsync_s" -v n="$fsync_count" 'BEGIN { printf "%.1f", n / s }')
echo "fdatasync: $fsync_ms ms each, $fsyncs_per_s/s" >&2
rm -f "$work/fsync-baseline"

# ---------------------------------------------------------------------------
# Our ensemble.
#
# Starts three `kfs coordinator` processes on fresh ports and data
# directories (attempt NAME), and waits until a session can be opened,
# which takes an elected leader: sets zk_pids and servers. Fails if no
# session opens within 30 s.
start_ensemble() { # name
    local name=$1 id deadline
    free_ports 6
    local ensemble="1=127.0.0.1:${ports[0]}:${ports[1]},2=127.0.0.1:${ports[2]}:${ports[3]}"
    ensemble+=",3=127.0.0.1:${ports[4]}:${ports[5]}"
    servers="127.0.0.1:${ports[0]},127.0.0.1:${ports[2]},127.0.0.1:${ports[4]}"
    zk_pids=()
    for id in 1 2 3; do
        : >"$work/$name-$id.out"
        RUST_LOG=warn "$bin/kfs" coordinator --id "$id" --data-dir "$work/$name-data-$id" \
            --ensemble "$ensemble" >"$work/$name-$id.out" 2>"$work/$name-$id.log" &
        zk_pids+=($!)
        pids+=($!)
        node_log[$!]=$work/$name-$id.log
    done
    for id in 1 2 3; do
        deadline=$((SECONDS + 30))
        until grep -q listening "$work/$name-$id.out"; do
            check_nodes "${zk_pids[@]}"
            if [ "$SECONDS" -ge "$deadline" ]; then
                echo "coordinator $id did not start" >&2
                exit 1
            fi
            sleep 0.05
        done
    done
    deadline=$((SECONDS + 30))
    until "$bin/kfs" zk --server "$servers" stat / >/dev/null 2>&1; do
        check_nodes "${zk_pids[@]}"
        if [ "$SECONDS" -ge "$deadline" ]; then
            # What each server has voted (its hard state: term, then the
            # vote), for the report of a known problem: now and then a
            # fresh ensemble opens no session for a minute or more.
            echo "no session opened within 30 s; hard states (bincode bytes):" >&2
            for id in 1 2 3; do
                echo "  server $id: $(od -An -tu1 "$work/$name-data-$id/hard-state" 2>/dev/null)" >&2
            done
            return 1
        fi
        sleep 0.2
    done
}
# Up to three fresh ensembles: see start_ensemble's note.
for attempt in 1 2 3; do
    if start_ensemble "zk$attempt"; then
        break
    fi
    stop_nodes "${zk_pids[@]}"
    pids=()
    if [ "$attempt" = 3 ]; then
        echo "three fresh ensembles opened no session" >&2
        exit 1
    fi
done
echo "ensemble on $servers" >&2

# Every run is bounded, generously: opening and closing a few hundred
# sessions is a few hundred writes, and a loaded machine is slow.
run_limit=$(awk -v s="$seconds" 'BEGIN { printf "%d", s + 300 }')

# Runs `kfs perf coordinator` against the ensemble; prints its report's
# last line, then "|ensemble CPU s|wall s". The CPU is the three
# servers'; the wall time counts from the first request of the run.
load() { # name op [more flags]
    local name=$1 op=$2
    shift 2
    local c0 w0 line
    c0=$(ticks "${zk_pids[@]}")
    w0=$(now)
    # The report shown as it comes, on stderr, and kept for its last line.
    timeout "$run_limit" "$bin/kfs" perf coordinator --servers "$servers" --op "$op" \
        --sessions "$sessions" --in-flight "$in_flight" --value-size 100 \
        --duration "$seconds" "$@" |
        tee "$work/$name.perf" >&2
    line=$(tail -1 "$work/$name.perf")
    local c1 w1
    w1=$(now)
    c1=$(ticks "${zk_pids[@]}")
    check_nodes "${zk_pids[@]}"
    awk -v l="$line" -v c=$((c1 - c0)) -v hz="$hz" -v w0="$w0" -v w1="$w1" \
        'BEGIN { printf "%s|%.2f|%.2f\n", l, c / hz, w1 - w0 }'
}

# The last line of a report: "N requests sent, R requests/sec (M MB/sec),
# A ms avg latency, X ms max latency, P ms 50th, ...".
sent() { sed -n 's/^\([0-9]*\) requests sent.*/\1/p' | tail -1; }
rate() { sed -n 's/.* \([0-9.]*\) requests\/sec.*/\1/p' | tail -1; }
field() { tr ',' '\n' | sed -n "s/^ *\([0-9.]*\) ms $1.*/\1/p" | tail -1; }
dash() { if [ -n "$1" ]; then echo "$1"; else echo -; fi; }

echo "== peak writes: set, 100 B, $sessions sessions, $in_flight in flight on each" >&2
writes=$(load writes set)
echo "== peak reads: get, 100 B, $sessions sessions, $in_flight in flight on each" >&2
reads=$(load reads get)
half=$(awk -v p="$(echo "$writes" | rate)" 'BEGIN { printf "%d", p / 2 }')
[ "$half" -ge 1 ] || { echo "no writes at peak: no half-peak run" >&2; exit 1; }
echo "== writes at half the peak: $half/s" >&2
writes_half=$(load writes-half set --rate "$half")
stop_nodes "${zk_pids[@]}"
pids=()

# ---------------------------------------------------------------------------
# etcd, when asked: Debian's 3.4, three members on loopback.
etcd_throughput=- etcd_slowest_ms=- etcd_command=-
if [ "$with_etcd" = 1 ]; then
    if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
        echo "== installing etcd-server and etcd-client (apt-get)" >&2
        # The package may try to start its own service; ours use other
        # ports either way.
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            etcd-server etcd-client >&2
    fi
    free_ports 6
    cluster=
    endpoints=
    for i in 0 1 2; do
        cluster+=${cluster:+,}e$i=http://127.0.0.1:${ports[2 * i + 1]}
        endpoints+=${endpoints:+,}http://127.0.0.1:${ports[2 * i]}
    done
    etcd_pids=()
    for i in 0 1 2; do
        client=http://127.0.0.1:${ports[2 * i]} peer=http://127.0.0.1:${ports[2 * i + 1]}
        etcd --name "e$i" --data-dir "$work/etcd-data-$i" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token kfs-bench >"$work/etcd-$i.log" 2>&1 &
        etcd_pids+=($!)
        pids+=($!)
        node_log[$!]=$work/etcd-$i.log
    done
    deadline=$((SECONDS + 60))
    until ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint health >/dev/null 2>&1; do
        check_nodes "${etcd_pids[@]}"
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "etcd did not become healthy within 60 s" >&2
            exit 1
        fi
        sleep 0.2
    done
    etcd_command="etcdctl check perf --load=l"
    echo "== etcd: $etcd_command (endpoints $endpoints)" >&2
    # `check perf` exits non-zero when a figure misses its own bar (FAIL
    # lines), which is a result here, not a failure of the harness.
    etcd_out=$(ETCDCTL_API=3 timeout 600 etcdctl --endpoints="$endpoints" check perf --load=l \
        2>&1) || true
    # Its verdicts, without the progress bar: "PASS: Throughput is N
    # writes/s" (or "FAIL: Throughput too low: N writes/s"), "PASS: Slowest
    # request took Ts", "PASS: Stddev is Ts".
    echo "$etcd_out" | grep -E '^(PASS|FAIL)' >&2
    check_nodes "${etcd_pids[@]}"
    etcd_throughput=$(echo "$etcd_out" |
        sed -n 's/.*Throughput[^0-9]*\([0-9.]*\) writes\/s.*/\1/p')
    etcd_slowest_ms=$(echo "$etcd_out" |
        sed -n 's/.*Slowest request took \([0-9.]*\)s.*/\1/p' |
        awk '{ printf "%.2f", $1 * 1000 }')
    if [ -z "$etcd_throughput" ]; then
        echo "no throughput in etcdctl's report" >&2
        exit 1
    fi
    stop_nodes "${etcd_pids[@]}"
    pids=()
fi

# ---------------------------------------------------------------------------
# One row of the summary (the header is below, where it is written).
row() { # id label op target_rate "report|cpu|wall"
    local id=$1 label=$2 op=$3 target=$4 run=$5
    local line=${run%%|*} numbers=${run#*|}
    local cpu wall count per_s
    IFS='|' read -r cpu wall <<<"$numbers"
    count=$(echo "$line" | sent)
    per_s=$(echo "$line" | rate)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$id" "$label" "$op" "$sessions" "$in_flight" "$target" "$(dash "$count")" \
        "$(dash "$per_s")" \
        "$(dash "$(echo "$line" | field avg)")" "$(dash "$(echo "$line" | field 50th)")" \
        "$(dash "$(echo "$line" | field 99th)")" "$(dash "$(echo "$line" | field max)")" \
        "$cpu" "$wall" \
        "$(awk -v c="$cpu" -v n="$count" 'BEGIN { if (n > 0) printf "%.2f", c * 1e6 / n; else print "-" }')" \
        "$(if [ "$op" = set ]; then
            awk -v r="$per_s" -v f="$fsync_ms" 'BEGIN { printf "%.1f", r * f / 1000 }'
        else echo -; fi)" -
}

summary=$work/coordinator.tsv
{
    printf 'id\tlabel\top\tsessions\tin_flight\ttarget_rate\trequests\trequests_per_s\t'
    printf 'latency_avg_ms\tlatency_p50_ms\tlatency_p99_ms\tlatency_max_ms\t'
    printf 'ensemble_cpu_s\twall_s\tensemble_cpu_us_per_request\twrites_per_fsync\tcommand\n'
    row writes_peak "linearizable writes (set), 100 B" set - "$writes"
    row reads_peak "reads (get) from each server, 100 B" get - "$reads"
    row writes_half_peak "linearizable writes (set), 100 B" set "$half" "$writes_half"
    printf 'fsync_baseline\tdisk: 100 B write + fdatasync (baseline)\t-\t-\t-\t-\t%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t%s\n' \
        "$fsync_count" "$fsyncs_per_s" "$fsync_ms" \
        "dd if=/dev/zero bs=100 count=$fsync_count oflag=dsync"
    if [ "$with_etcd" = 1 ]; then
        printf 'etcd_check_perf\tetcd 3.4, three members: puts\tput\t-\t-\t-\t-\t%s\t-\t-\t-\t%s\t-\t-\t-\t-\t%s\n' \
            "$etcd_throughput" "$(dash "$etcd_slowest_ms")" "$etcd_command"
    fi
} >"$summary"
mkdir -p target/e2e
mv "$summary" target/e2e/coordinator.tsv
echo
echo "target/e2e/coordinator.tsv (cargo xtask perf-report e2e-coordinator makes the page's table):"
column -t -s $'\t' target/e2e/coordinator.tsv 2>/dev/null || cat target/e2e/coordinator.tsv
