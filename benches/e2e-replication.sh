#!/usr/bin/env bash
# End to end with replication, on loopback: chapter 6's cluster as processes
# (a controller-only `replica-node` and three `replica-node` brokers), and
# `kfs perf produce` processes writing to a partition's leader with
# `acks=all` (-1). It measures, in one run:
#
# - replication factor 3 against factor 1, 100 B and 1 KiB records: the
#   records/s, and the CPU time of every node (brokers and controller) per
#   record, since here three brokers share the machine's cores;
# - p99 latency at half the replicated (RF3, 100 B) peak rate;
# - the 1 KiB runs against the loopback baseline (`loopback-baseline`: the
#   same bytes over loopback TCP into a file), once and three times at once;
# - a follower catching up 1 GiB it missed, against the loopback baseline;
# - RF3 again on brokers that sync before acknowledging
#   (`--flush before-ack`), against the default (`--flush os`).
#
#   benches/e2e-replication.sh [RECORDS [CATCHUP_MIB]]
#       RECORDS of 100 B (default 5,000,000), a tenth as many of 1 KiB;
#       CATCHUP_MIB of 1 KiB records for the follower to catch up
#       (default 1024: 1 GiB).
#
# Prints each run's report, and writes a summary to
# target/e2e/replication.tsv (tab-separated, a header row, `-` for an
# empty field), which `cargo xtask perf-report e2e-replication` turns into
# the performance page's table and plot. Nothing is written unless every
# run succeeded.
set -euo pipefail
# A failure inside `$(...)` must end the harness too, not just the subshell.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

records=${1:-5000000}
catchup_mib=${2:-1024}
if ! [[ $records =~ ^[0-9]+$ && $records -ge 10 && $catchup_mib =~ ^[0-9]+$ && $catchup_mib -ge 1 ]]; then
    echo "usage: benches/e2e-replication.sh [RECORDS (at least 10) [CATCHUP_MIB (at least 1)]]" >&2
    exit 2
fi
records_1k=$((records / 10))
bin=target/release

cargo build --release --quiet -p ch06-replication -p kfs -p kfs-benches \
    --bin replica-node --bin kfs --bin loopback-baseline --bin create-replicated-topic

# On the same disk as the build, not a tmpfs /tmp: the brokers' logs and the
# baseline's file must be written to the same kind of storage.
mkdir -p target
work=$(mktemp -d "$PWD/target/e2e-replication.XXXXXX")

# `pids`, `node_log`, `running`, `stop_nodes`, `now`, and the cleanup on exit.
source benches/processes.sh

# Starts a `replica-node` with FLAGS, its stdout in NAME.out and its log in
# NAME.log, and waits for the line that says where it listens (it prints it
# once bound): sets node_pid and node_line.
start_node() { # name flags...
    local name=$1
    shift
    # Made first, so the wait below never reads a file not there yet.
    : >"$work/$name.out"
    "$bin/replica-node" "$@" >"$work/$name.out" 2>"$work/$name.log" &
    node_pid=$!
    pids+=("$node_pid")
    node_log[$node_pid]=$work/$name.log
    local deadline=$((SECONDS + 30))
    until [ "$(wc -l <"$work/$name.out")" -ge 1 ]; do
        if ! running "$node_pid" || [ "$SECONDS" -ge "$deadline" ]; then
            echo "$name did not start:" >&2
            cat "$work/$name.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    node_line=$(head -1 "$work/$name.out")
}

# Starts a cluster: a controller and brokers 1, 2 and 3, with BROKER_FLAGS.
# Sets controller_pid, controller_log, broker_pids (by node id), bootstrap
# (every broker's address) and data (the data directories' prefix).
#
# Heartbeats every 500 ms and a 4 s session (Kafka: 2 s and 9 s) so that
# the stopped follower of the catch-up is fenced, and leaves the ISR, within
# seconds; 4 s is still long enough that a broker starved of CPU on a busy
# machine is not fenced in the middle of a run (each run checks that its
# ISR never changed).
start_cluster() { # name broker-flags...
    local name=$1
    shift
    start_node "$name-controller" --controller-only --session-timeout-ms 4000
    controller_pid=$node_pid
    controller_log=$work/$name-controller.log
    local controller=${node_line#controller }
    data=$work/$name-data
    broker_pids=()
    bootstrap=
    local id
    for id in 1 2 3; do
        start_node "$name-broker-$id" --node-id "$id" --data-dir "$data-$id" \
            --controller "$controller" --heartbeat-interval-ms 500 "$@"
        broker_pids[id]=$node_pid
        local addr=${node_line#broker }
        bootstrap+=${bootstrap:+,}${addr%% *}
    done
    echo "cluster $name: controller $controller, brokers $bootstrap" >&2
}

# Stops the cluster and deletes its data (the next one starts empty).
stop_cluster() {
    stop_nodes "$controller_pid" "${broker_pids[@]}"
    pids=()
    rm -rf "$data"-*
}

# Fails if a node of the cluster has exited: a run that lost one did not
# measure what it says.
check_nodes() {
    local pid
    for pid in "$controller_pid" "${broker_pids[@]}"; do
        if ! running "$pid"; then
            echo "a node has exited; the end of its log (${node_log[$pid]}):" >&2
            tail -20 "${node_log[$pid]}" >&2
            exit 1
        fi
    done
}

# Every run is bounded, generously (the longest run of a full measurement
# takes about a minute on the reference machine): a producer whose leader
# died retries each batch for `delivery.timeout.ms` (2 minutes) and would go
# on for an hour.
run_limit=900

# Creates TOPIC (one partition) with RF replicas, and waits until a first
# `acks=all` write to it is acknowledged (see create_replicated_topic.rs):
# sets leader_id and leader_addr.
create_topic() { # topic rf
    local out
    out=$("$bin/create-replicated-topic" "$bootstrap" 3 "$1" "$2")
    read -r leader_id leader_addr <<<"$out"
}

# The CPU time the given processes have used so far, in clock ticks (user +
# system, /proc/PID/stat's fields 14 and 15); none for a node that has
# exited, which check_nodes then reports.
ticks() { # pid...
    local pid total=0
    for pid in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
hz=$(getconf CLK_TCK)

# Waits until FILE has a line matching the extended regex, for at most
# SECONDS; prints the first such line. Used on the controller's log, which
# records each change of a partition's ISR with its time.
wait_for_line() { # file regex seconds
    local deadline=$((SECONDS + $3))
    until grep -Em1 -- "$2" "$1"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "timed out after $3 s waiting for /$2/ in $1" >&2
            return 1
        fi
        sleep 0.1
    done
}

# The producer's batch.size in every run, RF1 and RF3 alike: LinkedIn's for
# its 3x synchronous replication benchmark (the ratio the goal comes from;
# its ProducerPerformance ran with `acks=-1 batch.size=64000`). With
# `acks=all` a produce request waits for the followers' next fetches, and a
# broker serves a connection's requests in order, so one partition on one
# connection moves one batch per replication round trip: with the default
# 16 KiB batch that, not the brokers' work, is the limit (the performance
# page has both).
batch_size=64000

# Runs `kfs perf produce` with `acks=all` to the leader of a new topic;
# prints its report's last line, then "|cluster CPU s|leader CPU s|wall s".
# The cluster's CPU is every node's, the controller's included.
produce() { # topic rf size records [more kfs perf produce flags]
    local topic=$1 rf=$2 size=$3 count=$4
    shift 4
    create_topic "$topic" "$rf"
    local all=("$controller_pid" "${broker_pids[@]}") leader=${broker_pids[leader_id]}
    local c0 l0 w0 line
    c0=$(ticks "${all[@]}")
    l0=$(ticks "$leader")
    w0=$(now)
    # The report shown as it comes, on stderr (tee writes to the harness's
    # own stderr: `tee /dev/stderr` would open it again, and truncate it
    # when it is a file), and kept for its last line.
    timeout "$run_limit" "$bin/kfs" perf produce --topic "$topic" --record-size "$size" \
        --num-records "$count" --acks -1 --batch-size "$batch_size" \
        --bootstrap-server "$leader_addr" "$@" |
        tee "$work/$topic.perf" >&2
    line=$(tail -1 "$work/$topic.perf")
    local w1 c1 l1
    w1=$(now)
    c1=$(ticks "${all[@]}")
    l1=$(ticks "$leader")
    check_nodes
    # A replicated run must keep every replica in the ISR throughout: with a
    # follower out, `acks=all` waits for fewer, and the run is not RF3.
    if grep -q "ISR changed partition=$topic-0 " "$controller_log"; then
        echo "the ISR of $topic changed during its run:" >&2
        grep "partition=$topic-0 " "$controller_log" >&2
        exit 1
    fi
    awk -v l="$line" -v c=$((c1 - c0)) -v ld=$((l1 - l0)) -v hz="$hz" -v w0="$w0" -v w1="$w1" \
        'BEGIN { printf "%s|%.2f|%.2f|%.2f\n", l, c / hz, ld / hz, w1 - w0 }'
}

# The last line of a perf report: "N records sent, R records/sec (M MB/sec), ..."
rate() { sed -n 's/.* \([0-9.]*\) records\/sec.*/\1/p' | tail -1; }
mbps() { sed -n 's/.*(\([0-9.]*\) MB\/sec).*/\1/p' | tail -1; }
field() { tr ',' '\n' | sed -n "s/^ *\([0-9.]*\) ms $1.*/\1/p" | tail -1; }
dash() { if [ -n "$1" ]; then echo "$1"; else echo -; fi; }

# One row of the summary (the header is below, where it is written).
row() { # id label rf flush records size target_rate "report|cpu|leader cpu|wall"
    local id=$1 label=$2 rf=$3 flush=$4 count=$5 size=$6 target=$7 run=$8
    local line=${run%%|*} numbers=${run#*|}
    local cpu leader wall
    IFS='|' read -r cpu leader wall <<<"$numbers"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$id" "$label" "$rf" "$flush" "$count" "$size" "$target" \
        "$(dash "$(echo "$line" | rate)")" "$(dash "$(echo "$line" | mbps)")" \
        "$(dash "$(echo "$line" | field avg)")" "$(dash "$(echo "$line" | field 99th)")" \
        "$(dash "$(echo "$line" | field max)")" "$cpu" "$leader" "$wall" \
        "$(awk -v c="$cpu" -v n="$count" 'BEGIN { printf "%.2f", c * 1e6 / n }')" \
        "$(awk -v c="$leader" -v n="$count" 'BEGIN { printf "%.2f", c * 1e6 / n }')" -
}

# The size of a replica's log: its segment files (`*.log`), which hold the
# batches as stored.
log_bytes() { # partition-dir
    stat -c %s "$1"/*.log | awk '{ s += $1 } END { print s + 0 }'
}

# ---------------------------------------------------------------------------
# Cluster 1: the default flush (`os`).
start_cluster os

echo "== acks=all, RF1 and RF3, 100 B and 1 KiB" >&2
rf1_100=$(produce rf1-100 1 100 "$records")
rf3_100=$(produce rf3-100 3 100 "$records")
rf1_1k=$(produce rf1-1k 1 1024 "$records_1k")
rf3_1k=$(produce rf3-1k 3 1024 "$records_1k")

# What the machine allows the 1 KiB runs: their payload over loopback into
# a file once (all RF1 must move), and three times at once (all RF3 must
# move: producer to leader, leader to each follower, each into a log, on
# the same cores). Each prints one stream's MB/s.
echo "== loopback baselines for the 1 KiB runs: one stream, and three at once" >&2
loopback_1k=$("$bin/loopback-baseline" $((records_1k * 1024)) "$work")
loopback_1k_x3=$("$bin/loopback-baseline" $((records_1k * 1024)) "$work" 3)
echo "loopback: $loopback_1k MB/sec alone, $loopback_1k_x3 MB/sec each of three" >&2

echo "== RF3, 100 B, at half the RF3 peak" >&2
half=$(awk -v p="$(echo "$rf3_100" | rate)" 'BEGIN { printf "%d", p / 2 }')
rf3_half=$(produce rf3-half 3 100 "$records" --throughput "$half")

# The catch-up. One follower of a new RF3 topic is frozen (SIGSTOP) and
# fenced by the controller when its session expires, which takes it out of
# the ISR; the other two replicas take CATCHUP_MIB of 1 KiB records with
# `acks=all`, so when the producer is done, the leader's high watermark is
# its log end. Then the follower runs again (SIGCONT).
#
# "Caught up" is the moment the controller takes the follower back into
# the ISR, the time its log line carries. The leader asks for that as soon
# as a fetch shows the follower's log end at the leader's high watermark
# (and past the start of its epoch); nothing is written meanwhile, so that
# is when the follower holds every batch the leader has. The time counts
# from SIGCONT, so it also holds the follower's first heartbeat (which
# registers it again: the controller refuses an ISR with a fenced broker)
# and the last fetch's round trip: fixed costs, small beside 1 GiB.
echo "== catch-up of ${catchup_mib} MiB" >&2
catchup_records=$((catchup_mib * 1024))
create_topic catchup 3
follower=1
while [ "$follower" = "$leader_id" ]; do follower=$((follower + 1)); done
catchup_leader=$leader_id
frozen=${broker_pids[follower]}
kill -STOP "$frozen"
wait_for_line "$controller_log" "ISR changed partition=catchup-0 " 30 >/dev/null
timeout "$run_limit" "$bin/kfs" perf produce --topic catchup --record-size 1024 \
    --num-records "$catchup_records" --acks -1 --batch-size "$batch_size" \
    --bootstrap-server "$leader_addr" >&2
leader_dir=$data-$catchup_leader/catchup-0
follower_dir=$data-$follower/catchup-0
moved=$(($(log_bytes "$leader_dir") - $(log_bytes "$follower_dir")))
all=("$controller_pid" "${broker_pids[@]}")
c0=$(ticks "${all[@]}")
l0=$(ticks "${broker_pids[catchup_leader]}")
t0=$(now)
kill -CONT "$frozen"
rejoined=$(wait_for_line "$controller_log" \
    "ISR changed partition=catchup-0 isr=\[[0-9]+, [0-9]+, [0-9]+\]" 600)
t1=$(date -d "${rejoined%% *}" +%s.%N)
c1=$(ticks "${all[@]}")
l1=$(ticks "${broker_pids[catchup_leader]}")
check_nodes
# Batches travel as they are stored: the follower's segments are the
# leader's, byte for byte (no record decoded, re-batched or re-encoded).
for segment in "$leader_dir"/*.log; do
    cmp "$segment" "$follower_dir/${segment##*/}" ||
        { echo "the follower's ${segment##*/} differs from the leader's" >&2; exit 1; }
done
catchup_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
catchup_mbps=$(awk -v b="$moved" -v s="$catchup_s" 'BEGIN { printf "%.2f", b / 1048576 / s }')
echo "caught up $moved bytes in $catchup_s s: $catchup_mbps MB/sec" >&2
baseline=$("$bin/loopback-baseline" "$moved" "$work")
echo "baseline: $baseline MB/sec" >&2
stop_cluster

# ---------------------------------------------------------------------------
# Cluster 2: every broker syncs its log before a write counts.
start_cluster before-ack --flush before-ack
echo "== acks=all, RF3, --flush before-ack" >&2
flush_100=$(produce rf3-100 3 100 "$records")
flush_1k=$(produce rf3-1k 3 1024 "$records_1k")
stop_cluster

# ---------------------------------------------------------------------------
summary=$work/replication.tsv
{
    printf 'id\tlabel\treplication_factor\tflush\trecords\trecord_bytes\ttarget_rate\t'
    printf 'records_per_s\tmb_per_s\tlatency_avg_ms\tlatency_p99_ms\tlatency_max_ms\t'
    printf 'cluster_cpu_s\tleader_cpu_s\twall_s\tcluster_cpu_us_per_record\t'
    printf 'leader_cpu_us_per_record\tbytes\n'
    row rf1_100B "acks=all, RF1, 100 B" 1 os "$records" 100 - "$rf1_100"
    row rf3_100B "acks=all, RF3, 100 B" 3 os "$records" 100 - "$rf3_100"
    row rf1_1KiB "acks=all, RF1, 1 KiB" 1 os "$records_1k" 1024 - "$rf1_1k"
    row rf3_1KiB "acks=all, RF3, 1 KiB" 3 os "$records_1k" 1024 - "$rf3_1k"
    row rf3_100B_half_peak "acks=all, RF3, 100 B" 3 os "$records" 100 "$half" "$rf3_half"
    row rf3_100B_flush "acks=all, RF3, 100 B, flush before ack" 3 before-ack \
        "$records" 100 - "$flush_100"
    row rf3_1KiB_flush "acks=all, RF3, 1 KiB, flush before ack" 3 before-ack \
        "$records_1k" 1024 - "$flush_1k"
    awk -v id=catchup -v records="$catchup_records" -v mbps="$catchup_mbps" -v s="$catchup_s" \
        -v c=$((c1 - c0)) -v l=$((l1 - l0)) -v hz="$hz" -v bytes="$moved" 'BEGIN {
            printf "%s\tfollower catch-up, 1 KiB records\t3\tos\t%s\t1024\t-\t-\t%s\t-\t-\t-\t%.2f\t%.2f\t%s\t-\t-\t%s\n",
                id, records, mbps, c / hz, l / hz, s, bytes }'
    printf 'loopback_1KiB\tloopback TCP to a file, the bytes of the 1 KiB runs\t-\t-\t-\t-\t-\t-\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n' \
        "$loopback_1k" $((records_1k * 1024))
    printf 'loopback_1KiB_x3\tthe same, three streams at once (each)\t-\t-\t-\t-\t-\t-\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n' \
        "$loopback_1k_x3" $((records_1k * 1024))
    printf 'baseline\tloopback TCP to a file (baseline)\t-\t-\t-\t-\t-\t-\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n' \
        "$baseline" "$moved"
} >"$summary"
mkdir -p target/e2e
mv "$summary" target/e2e/replication.tsv
echo
echo "target/e2e/replication.tsv (cargo xtask perf-report e2e-replication makes the page's table):"
cat target/e2e/replication.tsv
