#!/usr/bin/env bash
# End to end on loopback: a `kfs broker` process, and `kfs perf produce` /
# `kfs perf consume` processes against it, beside the baseline a broker
# cannot beat, measured in the same run: the same bytes over a loopback TCP
# connection to a thread that appends them to a file.
#
#   benches/e2e.sh [RECORDS]    # RECORDS of 100 B (default 5,000,000);
#                               # a tenth as many of 1 KiB
#
# Prints each run's report, and writes a summary to target/e2e/results.tsv
# (tab-separated, a header row, `-` for an empty field), which
# `cargo xtask perf-report e2e` turns into the performance page's table and
# plot. Nothing is written unless every run succeeded.
set -euo pipefail
cd "$(dirname "$0")/.."

records=${1:-5000000}
records_1k=$((records / 10))
kfs=target/release/kfs

cargo build --release --quiet -p kfs -p kfs-benches --bin kfs --bin loopback-baseline

# On the same disk as the build, not a tmpfs /tmp: the broker's log and the
# baseline's file must be written to the same kind of storage.
work=$(mktemp -d "$PWD/target/e2e.XXXXXX")
broker_pid=
cleanup() {
    if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$kfs" broker --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/broker.out" 2>"$work/broker.log" &
broker_pid=$!
for _ in $(seq 100); do
    grep -q 'listening on' "$work/broker.out" 2>/dev/null && break
    sleep 0.1
done
addr=$(sed -n 's/^kfs broker listening on \([^ ]*\).*/\1/p' "$work/broker.out")
[ -n "$addr" ] || { echo "the broker did not start:"; cat "$work/broker.log"; exit 1; }
echo "broker on $addr"

# The last line of a perf report: "N records sent, R records/sec (M MB/sec), ..."
rate() { sed -n 's/.* \([0-9.]*\) records\/sec.*/\1/p' | tail -1; }
mbps() { sed -n 's/.*(\([0-9.]*\) MB\/sec).*/\1/p' | tail -1; }
field() { tr ',' '\n' | sed -n "s/^ *\([0-9.]*\) ms $1.*/\1/p" | tail -1; }

# The broker's CPU time so far, in clock ticks (user + system).
ticks() { awk '{ print $14 + $15 }' "/proc/$broker_pid/stat"; }
now() { date +%s.%N; }
# Runs a perf command; prints its report's last line, then "broker CPU
# seconds / wall seconds" of the run. A broker busy for the whole run was
# the bottleneck; on this VM that happens when its page cache lands on
# memory the host has not backed yet (see the performance page).
measured() {
    local t0 w0 line
    t0=$(ticks); w0=$(now)
    line=$("$@" | tee /dev/stderr | tail -1)
    awk -v l="$line" -v t="$(( $(ticks) - t0 ))" -v hz="$(getconf CLK_TCK)" -v w0="$w0" -v w1="$(now)" \
        'BEGIN { printf "%s|%.2f / %.2f\n", l, t / hz, w1 - w0 }'
}
produce() { # topic size records [more kfs perf produce flags]
    local topic=$1 size=$2 count=$3
    shift 3
    "$kfs" topics create "$topic" --bootstrap-server "$addr" >/dev/null
    measured "$kfs" perf produce --topic "$topic" --record-size "$size" --num-records "$count" \
        --bootstrap-server "$addr" "$@"
}
consume() { # topic records
    measured "$kfs" perf consume --topic "$1" --messages "$2" --bootstrap-server "$addr"
}

baseline=$(target/release/loopback-baseline $((records_1k * 1024)) "$work")
echo "baseline: $baseline MB/sec"

p100=$(produce e2e-100 100 "$records")
p1k=$(produce e2e-1k 1024 "$records_1k")
# A throughput run of Kafka's tool would raise batch.size; so does this one.
p1k_big=$(produce e2e-1k-big 1024 "$records_1k" --batch-size 262144)
peak=$(echo "$p100" | rate)
half=$(awk -v p="$peak" 'BEGIN { printf "%d", p / 2 }')
h100=$(produce e2e-half 100 "$records" --throughput "$half")
c100=$(consume e2e-100 "$records")
c1k=$(consume e2e-1k "$records_1k")

# One row of the summary for a perf run: its id and label, the records and
# their size, the rate it was held to (`-` if none), and its report line.
dash() { if [ -n "$1" ]; then echo "$1"; else echo -; fi; }
row() { # id label records size target_rate "report line|cpu / wall"
    local line=${6%|*} cpu=${6##*|}
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" \
        "$(dash "$(echo "$line" | rate)")" "$(dash "$(echo "$line" | mbps)")" \
        "$(dash "$(echo "$line" | field avg)")" "$(dash "$(echo "$line" | field 99th)")" \
        "$(dash "$(echo "$line" | field max)")" "${cpu% / *}" "${cpu#* / }"
}
summary=$work/results.tsv
{
    printf 'id\tlabel\trecords\trecord_bytes\ttarget_rate\trecords_per_s\tmb_per_s\t'
    printf 'latency_avg_ms\tlatency_p99_ms\tlatency_max_ms\tbroker_cpu_s\twall_s\n'
    printf 'baseline\tloopback TCP to a file (baseline)\t-\t-\t-\t-\t%s\t-\t-\t-\t-\t-\n' "$baseline"
    row produce_100B "produce 100 B" "$records" 100 - "$p100"
    row produce_1KiB "produce 1 KiB" "$records_1k" 1024 - "$p1k"
    row produce_1KiB_batch_256KiB "produce 1 KiB, batch.size 256 KiB" "$records_1k" 1024 - "$p1k_big"
    row produce_100B_half_peak "produce 100 B" "$records" 100 "$half" "$h100"
    row consume_100B "consume 100 B" "$records" 100 - "$c100"
    row consume_1KiB "consume 1 KiB" "$records_1k" 1024 - "$c1k"
} >"$summary"
mkdir -p target/e2e
mv "$summary" target/e2e/results.tsv
echo
echo "target/e2e/results.tsv (cargo xtask perf-report e2e makes the page's table):"
cat target/e2e/results.tsv
