#!/usr/bin/env bash
# End to end with chapter 8's cluster, as processes: `kfs cluster up`
# (three coordinator servers, three brokers) on loopback, measured by
# `cluster-bench` (benches/bin/cluster_bench.rs):
#
# - `kfs perf produce --acks all` of 100 B records to a one-partition
#   topic of replication factor 3, then 1: the ratio, and the cluster's
#   CPU time per record;
# - failover time: from `kill -9` of a partition's leader to the first
#   acknowledged `acks=all` write sent after it, p50 and max over RUNS
#   kills, beside the brokers' session timeout (2 s).
#
#   benches/e2e-cluster.sh [RECORDS [RUNS]]
#       RECORDS of 100 B per throughput run (default 2,000,000);
#       RUNS failovers (default 20).
#
# Prints the report, and writes target/e2e/cluster.tsv (tab-separated, a
# header row) unless a run failed.
set -euo pipefail
cd "$(dirname "$0")/.."

records=${1:-2000000}
runs=${2:-20}
if ! [[ $records =~ ^[0-9]+$ && $records -ge 10 && $runs =~ ^[0-9]+$ && $runs -ge 1 ]]; then
    echo "usage: benches/e2e-cluster.sh [RECORDS (at least 10) [RUNS (at least 1)]]" >&2
    exit 2
fi

cargo build --release --quiet -p kfs -p kfs-benches --bin kfs --bin cluster-bench

mkdir -p target/e2e
report=$(mktemp)
trap 'rm -f "$report"' EXIT
# The brokers' logs go to their files; cluster-bench's own report to
# stdout, kept for the summary.
target/release/cluster-bench target/release/kfs "$records" "$runs" | tee "$report"

summary=target/e2e/cluster.tsv.new
{
    printf 'measure\trf3 records/s\trf1 records/s\tratio\trf3 CPU µs/record\trf1 CPU µs/record\n'
    grep $'^throughput\t' "$report"
    printf 'measure\truns\tp50 ms\tmax ms\tsession timeout ms\n'
    grep $'^failover\t' "$report"
} >"$summary"
mv "$summary" target/e2e/cluster.tsv
echo "target/e2e/cluster.tsv (cargo xtask perf-report e2e-cluster makes the page's tables):"
cat target/e2e/cluster.tsv
